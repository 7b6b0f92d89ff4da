/*  train: the train worker's one job. A TrainTask carries a shard (sequences over a
    local item table), the dense weights and the shard's table rows; the worker loads
    them into a compute model (kept between tasks only as scratch memory, rebuilt when
    the model's shape changes), runs forward and backward (step.h) and answers with the
    gradient. Nothing survives a task that the next task depends on.
*/
#ifndef STRATA_TRAIN_H
#define STRATA_TRAIN_H

#include "strata.pb-c.h"

typedef struct _train_worker_t train_worker_t;

train_worker_t *train_worker_new (void);
void train_worker_destroy (train_worker_t **self_p);

//  Computes the task's gradient into result (whose byte fields point into memory the
//  worker owns until the next call). On a task that cannot be computed, result->error
//  says why.
void train_worker_compute (train_worker_t *self, const Strata__V1__TrainTask *task, Strata__V1__TrainGradient *result);

#endif
