/*  step: see step.h. */
#include "step.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct _agg_t {
    model_t *master;
    uint8_t *mark;          // per table row: touched in this step
    uint32_t *touched;
    size_t n_touched, cap;
    uint8_t *fmark;         // per feature row
    uint32_t *ftouched;
    size_t n_ftouched;
    uint64_t positions;     // this step
    double loss;
};

double
step_compute (model_t *local, const model_shard_t *sh, const step_view_t *p, float *dense_grad, step_view_t *g,
              uint64_t *positions)
{
    *positions = 0;
    if (model_rows (local) < sh->n_rows && model_resize_rows (local, sh->n_rows) < 0)
        return NAN;
    if (sh->n_frows > model_feature_rows (local))
        return NAN;
    size_t d = (size_t) model_config (local)->dim;
    model_dense_set (local, p->dense);
    float *rg, *fg;
    memcpy (model_row_weights (local, &rg), p->rows, sh->n_rows * d * sizeof (float));
    memcpy (model_feature_weights (local, &fg), p->feats, sh->n_frows * d * sizeof (float));
    model_zero_grad_rows (local, sh->n_rows, sh->n_frows);
    double loss = model_shard_grad (local, sh, positions);
    model_dense_grad_get (local, dense_grad);
    *g = (step_view_t) { dense_grad, rg, fg };
    return loss;
}

int
step_tensors_fit (step_tensors_t *t, size_t *cap_rows, size_t *cap_feats, model_t *m, const model_shard_t *sh)
{
    size_t d = (size_t) model_config (m)->dim;
    if (!t->dense && !(t->dense = malloc (model_dense_size (m) * sizeof (float))))
        return -1;
    if (sh->n_rows > *cap_rows || !t->rows) {
        free (t->rows);
        *cap_rows = sh->n_rows > *cap_rows ? sh->n_rows : *cap_rows;
        if (!(t->rows = malloc ((*cap_rows ? *cap_rows : 1) * d * sizeof (float))))
            return -1;
    }
    if (sh->n_frows > *cap_feats || !t->feats) {
        free (t->feats);
        *cap_feats = sh->n_frows > *cap_feats ? sh->n_frows : *cap_feats;
        if (!(t->feats = malloc ((*cap_feats ? *cap_feats : 1) * d * sizeof (float))))
            return -1;
    }
    return 0;
}

void
step_tensors_free (step_tensors_t *t)
{
    free (t->dense);
    free (t->rows);
    free (t->feats);
    memset (t, 0, sizeof *t);
}

agg_t *
agg_new (model_t *master)
{
    agg_t *a = calloc (1, sizeof *a);
    if (!a)
        return NULL;
    a->master = master;
    if (agg_resize (a) < 0) {
        agg_destroy (&a);
        return NULL;
    }
    return a;
}

void
agg_destroy (agg_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free ((*self_p)->mark);
    free ((*self_p)->touched);
    free ((*self_p)->fmark);
    free ((*self_p)->ftouched);
    free (*self_p);
    *self_p = NULL;
}

int
agg_resize (agg_t *self)
{
    size_t rows = model_rows (self->master);
    if (rows <= self->cap)
        return 0;
    uint8_t *mark = realloc (self->mark, rows);
    if (!mark)
        return -1;
    self->mark = mark;
    memset (mark + self->cap, 0, rows - self->cap);
    uint32_t *t = realloc (self->touched, rows * sizeof *t);
    if (!t)
        return -1;
    self->touched = t;
    self->cap = rows;
    if (!self->fmark) {
        size_t fr = model_feature_rows (self->master);
        self->fmark = calloc (fr, 1);
        self->ftouched = malloc (fr * sizeof *self->ftouched);
        if (!self->fmark || !self->ftouched)
            return -1;
    }
    return 0;
}

void
agg_export (agg_t *self, const model_shard_t *sh, step_tensors_t *out)
{
    model_dense_get (self->master, out->dense);
    size_t d = (size_t) model_config (self->master)->dim;
    const float *w = model_row_weights (self->master, NULL);
    for (uint32_t r = 0; r < sh->n_rows; r++)
        memcpy (out->rows + r * d, w + (size_t) sh->rows[r] * d, d * sizeof (float));
    const float *f = model_feature_weights (self->master, NULL);
    for (uint32_t r = 0; r < sh->n_frows; r++)
        memcpy (out->feats + r * d, f + (size_t) sh->frows[r] * d, d * sizeof (float));
}

//  Adds n rows of gradient into a table's gradient at the given global rows, marking
//  them touched.
static void
s_add_rows (float *g, size_t d, const uint32_t *rows, uint32_t n, const float *src, uint8_t *mark, uint32_t *touched,
            size_t *n_touched)
{
    for (uint32_t r = 0; r < n; r++) {
        float *dst = g + (size_t) rows[r] * d;
        const float *s = src + (size_t) r * d;
        for (size_t k = 0; k < d; k++)
            dst[k] += s[k];
        if (!mark[rows[r]]) {
            mark[rows[r]] = 1;
            touched[(*n_touched)++] = rows[r];
        }
    }
}

void
agg_add (agg_t *self, const model_shard_t *sh, const step_view_t *grads, double loss, uint64_t positions)
{
    model_dense_grad_add (self->master, grads->dense);
    size_t d = (size_t) model_config (self->master)->dim;
    float *g, *fg;
    model_row_weights (self->master, &g);
    model_feature_weights (self->master, &fg);
    s_add_rows (g, d, sh->rows, sh->n_rows, grads->rows, self->mark, self->touched, &self->n_touched);
    s_add_rows (fg, d, sh->frows, sh->n_frows, grads->feats, self->fmark, self->ftouched, &self->n_ftouched);
    self->positions += positions;
    self->loss += loss;
}

double
agg_apply (agg_t *self)
{
    double mean = self->positions ? self->loss / (double) self->positions : 0;
    if (self->positions)
        model_apply (self->master, 1.0f / (float) self->positions, self->touched, self->n_touched, self->ftouched,
                     self->n_ftouched);
    else
        model_zero_grad (self->master);
    for (size_t i = 0; i < self->n_touched; i++)
        self->mark[self->touched[i]] = 0;
    for (size_t i = 0; i < self->n_ftouched; i++)
        self->fmark[self->ftouched[i]] = 0;
    self->n_touched = 0;
    self->n_ftouched = 0;
    self->positions = 0;
    self->loss = 0;
    return mean;
}

double
step_local_epoch (agg_t *self, model_t *local, plan_t *plan, uint32_t epoch)
{
    uint32_t steps = plan_epoch (plan, epoch);
    int shards = plan_config (plan)->shards;
    step_tensors_t p = { 0 };
    size_t pr = 0, pf = 0;
    float *dense_grad = malloc (model_dense_size (self->master) * sizeof (float));
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
            ok = step_tensors_fit (&p, &pr, &pf, self->master, &sh) == 0;
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
        return -1;
    }
    return 0;
}

double
step_session_epoch (step_session_t *self)
{
    return step_local_epoch (self->agg, self->local, self->plan, self->epoch++);
}

void
step_session_fini (step_session_t *self)
{
    agg_destroy (&self->agg);
    plan_destroy (&self->plan);
    model_destroy (&self->master);
    model_destroy (&self->local);
}
