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
    uint64_t positions;     // this step
    double loss;
};

double
step_compute (model_t *local, const model_shard_t *sh, const float *dense, const float *rows, float *dense_g,
              float *rows_g, uint64_t *positions)
{
    *positions = 0;
    if (model_rows (local) < sh->n_rows && model_resize_rows (local, sh->n_rows) < 0)
        return NAN;
    int d = model_config (local)->dim;
    model_dense_set (local, dense);
    float *g;
    float *w = model_row_weights (local, &g);
    memcpy (w, rows, (size_t) sh->n_rows * d * sizeof (float));
    model_zero_grad (local);
    double loss = model_shard_grad (local, sh, positions);
    model_dense_grad_get (local, dense_g);
    memcpy (rows_g, g, (size_t) sh->n_rows * d * sizeof (float));
    return loss;
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
    return 0;
}

void
agg_export (agg_t *self, const model_shard_t *sh, float *dense, float *rows)
{
    model_dense_get (self->master, dense);
    int d = model_config (self->master)->dim;
    const float *w = model_row_weights (self->master, NULL);
    for (uint32_t r = 0; r < sh->n_rows; r++)
        memcpy (rows + (size_t) r * d, w + (size_t) sh->rows[r] * d, (size_t) d * sizeof (float));
}

void
agg_add (agg_t *self, const model_shard_t *sh, const float *dense_g, const float *rows_g, double loss,
         uint64_t positions)
{
    model_dense_grad_add (self->master, dense_g);
    int d = model_config (self->master)->dim;
    float *g;
    model_row_weights (self->master, &g);
    for (uint32_t r = 0; r < sh->n_rows; r++) {
        uint32_t row = sh->rows[r];
        float *dst = g + (size_t) row * d;
        const float *src = rows_g + (size_t) r * d;
        for (int k = 0; k < d; k++)
            dst[k] += src[k];
        if (!self->mark[row]) {
            self->mark[row] = 1;
            self->touched[self->n_touched++] = row;
        }
    }
    self->positions += positions;
    self->loss += loss;
}

double
agg_apply (agg_t *self)
{
    double mean = self->positions ? self->loss / (double) self->positions : 0;
    if (self->positions)
        model_apply (self->master, 1.0f / (float) self->positions, self->touched, self->n_touched);
    else
        model_zero_grad (self->master);
    for (size_t i = 0; i < self->n_touched; i++)
        self->mark[self->touched[i]] = 0;
    self->n_touched = 0;
    self->positions = 0;
    self->loss = 0;
    return mean;
}

double
step_local_epoch (agg_t *self, model_t *local, plan_t *plan, uint32_t epoch)
{
    uint32_t steps = plan_epoch (plan, epoch);
    int d = model_config (self->master)->dim, shards = plan_config (plan)->shards;
    size_t dn = model_dense_size (self->master);
    float *dense = malloc (dn * sizeof *dense), *dense_g = malloc (dn * sizeof *dense_g);
    float *rows = NULL, *rows_g = NULL;
    size_t rows_cap = 0;
    double loss = 0;
    uint64_t positions = 0;
    int ok = dense && dense_g;
    for (uint32_t s = 0; ok && s < steps; s++) {
        double step_loss = 0;
        uint64_t step_pos = 0;
        for (int k = 0; ok && k < shards; k++) {
            model_shard_t sh;
            if (plan_shard (plan, s, k, &sh) < 0) {
                ok = 0;
                break;
            }
            if (sh.n_rows > rows_cap) {
                free (rows);
                free (rows_g);
                rows_cap = sh.n_rows;
                rows = malloc (rows_cap * d * sizeof *rows);
                rows_g = malloc (rows_cap * d * sizeof *rows_g);
                ok = rows && rows_g;
            }
            if (ok) {
                uint64_t pos;
                agg_export (self, &sh, dense, rows);
                double l = step_compute (local, &sh, dense, rows, dense_g, rows_g, &pos);
                ok = !isnan (l);
                if (ok) {
                    agg_add (self, &sh, dense_g, rows_g, l, pos);
                    step_loss += l;
                    step_pos += pos;
                }
            }
            plan_shard_free (&sh);
        }
        if (ok) {
            agg_apply (self);
            loss += step_loss;
            positions += step_pos;
        }
    }
    free (dense);
    free (dense_g);
    free (rows);
    free (rows_g);
    if (!ok)
        return NAN;
    return positions ? loss / (double) positions : 0;
}

int
step_session_init (step_session_t *self, const model_config_t *mc, const plan_config_t *pc, const dataset_t *train)
{
    memset (self, 0, sizeof *self);
    self->master = model_new (mc, train->n_items);
    self->local = model_new (mc, 1);
    self->agg = self->master ? agg_new (self->master) : NULL;
    self->plan = plan_new (train, pc);
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
