/*  step: one optimisation step, split into the part a train worker does and the part
    the parameter server does, so that in-process training and the cluster run the same
    code.

    Worker side: step_compute loads a shard's parameters (the dense vector and the
    shard's table rows) into a compute model and returns the gradient of the summed loss
    over the shard.

    Server side: an aggregator exports the parameters a shard needs from the master
    model, adds the shards' gradients into the master's gradient buffers (in whatever
    order the caller gives, which synchronous training fixes to shard order), remembers
    which table rows were touched, and applies the step: the mean gradient over every
    predicted position of the step, Adam on the dense tensors, lazy Adam on the touched
    rows.
*/
#ifndef STRATA_STEP_H
#define STRATA_STEP_H

#include <stdint.h>

#include "model.h"
#include "plan.h"

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

//  Allocates (or grows) tensors for a shard of this model. 0 or -1.
int step_tensors_fit (step_tensors_t *t, size_t *cap_rows, size_t *cap_feats, model_t *m, const model_shard_t *shard);
void step_tensors_free (step_tensors_t *t);

typedef struct _agg_t agg_t;

agg_t *agg_new (model_t *master);
void agg_destroy (agg_t **self_p);

//  Call after the master's table grew.
int agg_resize (agg_t *self);

//  The parameters a shard needs.
void agg_export (agg_t *self, const model_shard_t *shard, step_tensors_t *out);

//  Adds one shard's gradient.
void agg_add (agg_t *self, const model_shard_t *shard, const step_view_t *grads, double loss, uint64_t positions);

//  Applies the accumulated step (nothing if no position was predicted) and starts the
//  next. Returns the step's mean loss per predicted position.
double agg_apply (agg_t *self);

//  One epoch in process: every step's shards computed in turn on `local`, then
//  applied to the master. Returns the mean loss per predicted position (NAN on no
//  memory).
double step_local_epoch (agg_t *self, model_t *local, plan_t *plan, uint32_t epoch);

//  In-process training as a whole (offline evaluation, benchmarks, tests): a master
//  model, a compute model, an aggregator and a plan over train (borrowed).
typedef struct {
    model_t *master;
    model_t *local;
    agg_t *agg;
    plan_t *plan;
    uint32_t epoch;   // epochs done
} step_session_t;

//  features (borrowed, may be NULL): the catalogue's, for the item tower.
int step_session_init (step_session_t *self, const model_config_t *mc, const plan_config_t *pc,
                       const dataset_t *train, const features_t *features);
double step_session_epoch (step_session_t *self);
void step_session_fini (step_session_t *self);

#endif
