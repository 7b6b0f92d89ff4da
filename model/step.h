/*  step: the part of one optimisation step that a train worker does, so that in-process
    training and the cluster run the same code.

    step_compute loads a shard's parameters (the dense vector and the shard's table
    rows) into a compute model and returns the gradient of the summed loss over the
    shard. The parameter server's side (exporting those parameters from the master
    model, adding the shards' gradients, applying the optimiser) is trainer/agg.h.

    Depends on model.h only.
*/
#ifndef STRATA_STEP_H
#define STRATA_STEP_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

//  A shard's parameters: the dense vector (model_dense_size floats), the shard's item
//  rows (n_rows x dim) and its feature rows (n_frows x dim).
typedef struct {
    float *dense, *rows, *feats;
} step_tensors_t;

//  The same tensors read in place (parameters or gradients): in a received message, in
//  the model that computed them, or in a step_tensors_t.
typedef struct {
    const float *dense, *rows, *feats;
} step_view_t;

static inline step_view_t
step_view (const step_tensors_t *t)
{
    return (step_view_t) { t->dense, t->rows, t->feats };
}

//  Worker side: the gradient of the summed loss over the shard, given its parameters.
//  Returns that loss (NAN if the shard does not fit) and the predicted positions. The
//  dense gradient is written to dense_grad (model_dense_size floats) and grads points
//  at it and at local's own gradient rows, valid until the next call on local: the
//  table's gradient is not copied.
double step_compute (model_t *local, const model_shard_t *shard, const step_view_t *params, float *dense_grad,
                     step_view_t *grads, uint64_t *positions);

//  Allocates (or grows) tensors for a shard of this model. 0 or STRATA_ENOMEM.
int step_tensors_fit (step_tensors_t *t, size_t *cap_rows, size_t *cap_feats, model_t *m, const model_shard_t *shard);
void step_tensors_free (step_tensors_t *t);

#endif
