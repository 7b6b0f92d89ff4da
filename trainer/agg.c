/*  agg: see agg.h. */
#include "agg.h"

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

model_t *
agg_master (agg_t *self)
{
    return self->master;
}

int
agg_resize (agg_t *self)
{
    size_t rows = model_rows (self->master);
    if (rows <= self->cap)
        return 0;
    uint8_t *mark = realloc (self->mark, rows);
    if (!mark)
        return STRATA_ENOMEM;
    self->mark = mark;
    memset (mark + self->cap, 0, rows - self->cap);
    uint32_t *t = realloc (self->touched, rows * sizeof *t);
    if (!t)
        return STRATA_ENOMEM;
    self->touched = t;
    self->cap = rows;
    if (!self->fmark) {
        size_t fr = model_feature_rows (self->master);
        self->fmark = calloc (fr, 1);
        self->ftouched = malloc (fr * sizeof *self->ftouched);
        if (!self->fmark || !self->ftouched)
            return STRATA_ENOMEM;
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
