/*  step: see step.h. */
#include "step.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
        return STRATA_ENOMEM;
    if (sh->n_rows > *cap_rows || !t->rows) {
        free (t->rows);
        *cap_rows = sh->n_rows > *cap_rows ? sh->n_rows : *cap_rows;
        if (!(t->rows = malloc ((*cap_rows ? *cap_rows : 1) * d * sizeof (float))))
            return STRATA_ENOMEM;
    }
    if (sh->n_frows > *cap_feats || !t->feats) {
        free (t->feats);
        *cap_feats = sh->n_frows > *cap_feats ? sh->n_frows : *cap_feats;
        if (!(t->feats = malloc ((*cap_feats ? *cap_feats : 1) * d * sizeof (float))))
            return STRATA_ENOMEM;
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
