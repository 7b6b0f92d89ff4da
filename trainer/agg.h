/*  agg: the parameter server's side of one optimisation step.

    An aggregator exports the parameters a shard needs from the master model, adds the
    shards' gradients into the master's gradient buffers (in whatever order the caller
    gives, which synchronous training fixes to shard order), remembers which table rows
    were touched, and applies the step: the mean gradient over every predicted position
    of the step, Adam on the dense tensors, lazy Adam on the touched rows. The worker's
    side, computing a shard's gradient, is model/step.h.
*/
#ifndef STRATA_AGG_H
#define STRATA_AGG_H

#include <stdint.h>

#include "model.h"
#include "step.h"

typedef struct _agg_t agg_t;

agg_t *agg_new (model_t *master);
void agg_destroy (agg_t **self_p);

//  The master model (borrowed, as given to agg_new).
model_t *agg_master (agg_t *self);

//  Call after the master's table grew. 0 or STRATA_ENOMEM.
int agg_resize (agg_t *self);

//  The parameters a shard needs.
void agg_export (agg_t *self, const model_shard_t *shard, step_tensors_t *out);

//  Adds one shard's gradient.
void agg_add (agg_t *self, const model_shard_t *shard, const step_view_t *grads, double loss, uint64_t positions);

//  Applies the accumulated step (nothing if no position was predicted) and starts the
//  next. Returns the step's mean loss per predicted position.
double agg_apply (agg_t *self);

#endif
