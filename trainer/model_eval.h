/*  model_eval: the model as offline evaluation and gradient checks see it, over a
    training dataset (dataset.h) and as an evaluate.h scorer.

    The model library (model/model.h) knows histories only as compressed rows and knows
    nothing of datasets or evaluation protocols: serving never compiles against them.
    These wrappers are the bridge, on the training side.
*/
#ifndef STRATA_MODEL_EVAL_H
#define STRATA_MODEL_EVAL_H

#include "dataset.h"
#include "evaluate.h"
#include "model.h"

//  The dataset's histories as the model reads them (borrowed from train).
model_histories_t model_eval_histories (const dataset_t *train);

//  The model as an evaluate.h scorer (inference: no dropout): retrieval only.
scorer_t model_scorer (model_t *self);

//  Retrieval, then the ranking head re-ranks each user's top `top` items not in the
//  history (model_score_users). Needs the ranking head (rank_negatives > 0); without it
//  the scorer is retrieval only. The returned scorer uses the model and these settings.
scorer_t model_rank_scorer (model_t *self, int top, float blend);

//  model_histories_loss over the dataset's training sequences of n users.
double model_batch_loss (model_t *self, const dataset_t *train, const uint32_t *users, int n, int dropout,
                         int with_grad);

#endif
