/*  step_session: see step_session.h. */
#include "step_session.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double
step_session_run (agg_t *self, model_t *local, plan_t *plan, uint32_t epoch)
{
    uint32_t steps = plan_epoch (plan, epoch);
    int shards = plan_config (plan)->shards;
    step_tensors_t p = { 0 };
    size_t pr = 0, pf = 0;
    float *dense_grad = malloc (model_dense_size (agg_master (self)) * sizeof (float));
    double loss = 0;
    uint64_t positions = 0;
    int ok = dense_grad != NULL;
    for (uint32_t s = 0; ok && s < steps; s++) {
        for (int k = 0; ok && k < shards; k++) {
            model_shard_t sh;
            if (plan_shard (plan, s, k, &sh) < 0) {
                ok = 0;
                break;
            }
            ok = step_tensors_fit (&p, &pr, &pf, agg_master (self), &sh) == 0;
            if (ok) {
                uint64_t pos;
                agg_export (self, &sh, &p);
                step_view_t pv = step_view (&p), g;
                double l = step_compute (local, &sh, &pv, dense_grad, &g, &pos);
                ok = !isnan (l);
                if (ok) {
                    agg_add (self, &sh, &g, l, pos);
                    loss += l;
                    positions += pos;
                }
            }
            plan_shard_free (&sh);
        }
        if (ok)
            agg_apply (self);
    }
    step_tensors_free (&p);
    free (dense_grad);
    if (!ok)
        return NAN;
    return positions ? loss / (double) positions : 0;
}

int
step_session_init (step_session_t *self, const model_config_t *mc, const plan_config_t *pc, const dataset_t *train,
                   const features_t *features)
{
    memset (self, 0, sizeof *self);
    self->master = model_new (mc, train->n_items);
    self->local = model_new (mc, 1);
    self->agg = self->master ? agg_new (self->master) : NULL;
    self->plan = plan_new (train, pc);
    if (self->master)
        model_set_features (self->master, features);
    if (self->plan && plan_set_features (self->plan, features) < 0)
        plan_destroy (&self->plan);
    if (!self->master || !self->local || !self->agg || !self->plan) {
        step_session_fini (self);
        return STRATA_ENOMEM;   // model_new says only NULL; configurations are checked before (hyper.h)
    }
    return 0;
}

double
step_session_epoch (step_session_t *self)
{
    return step_session_run (self->agg, self->local, self->plan, self->epoch++);
}

void
step_session_fini (step_session_t *self)
{
    agg_destroy (&self->agg);
    plan_destroy (&self->plan);
    model_destroy (&self->master);
    model_destroy (&self->local);
}
