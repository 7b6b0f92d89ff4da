/*  model_eval: see model_eval.h. */
#include "model_eval.h"

model_histories_t
model_eval_histories (const dataset_t *train)
{
    return (model_histories_t) { train->offsets, train->items, train->types };
}

static void
s_score (void *model, const dataset_t *train, const uint32_t *users, size_t n, float *scores)
{
    model_histories_t h = model_eval_histories (train);
    model_score_users (model, &h, users, n, scores, 0);
}

static void
s_score_ranked (void *model, const dataset_t *train, const uint32_t *users, size_t n, float *scores)
{
    model_histories_t h = model_eval_histories (train);
    model_score_users (model, &h, users, n, scores, 1);
}

scorer_t
model_scorer (model_t *self)
{
    scorer_t s = { "strata", s_score, self };
    return s;
}

scorer_t
model_rank_scorer (model_t *self, int top, float blend)
{
    model_set_rerank (self, top, blend);
    scorer_t s = { "strata+rank", model_has_ranker (self) ? s_score_ranked : s_score, self };
    return s;
}

double
model_batch_loss (model_t *self, const dataset_t *train, const uint32_t *users, int n, int dropout, int with_grad)
{
    model_histories_t h = model_eval_histories (train);
    return model_histories_loss (self, &h, users, n, dropout, with_grad);
}
