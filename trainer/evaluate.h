/*  evaluate: offline ranking quality under the full-catalogue protocol.

    For every user with a target, the scorer scores every item; items in the user's
    training history are excluded; the rank of the target is the number of remaining
    items scored above it, plus those tied with it (ties count against the model, so a
    scorer that cannot tell items apart gains nothing). HR@K counts targets ranked in the
    top K, NDCG@K weighs them by 1 / log2(rank + 2), MRR averages 1 / (rank + 1). A target
    that is itself in the history cannot be ranked and counts as a miss (reported).
*/
#ifndef STRATA_EVALUATE_H
#define STRATA_EVALUATE_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"

typedef struct {
    double hr10, ndcg10, hr20, ndcg20, mrr;
    uint32_t users;              // users evaluated
    uint32_t target_in_history;  // of those, targets already in the history (misses)
} metrics_t;

//  A recommender as evaluation sees it: scores[n * n_items] for users[0..n), given the
//  training view the model was fitted on.
typedef struct {
    const char *name;
    void (*score) (void *model, const dataset_t *train, const uint32_t *users, size_t n, float *scores);
    void *model;
} scorer_t;

//  Evaluates scorer on targets (n_users entries, DATASET_NO_TARGET to skip). Returns 0 or
//  STRATA_ENOMEM.
int evaluate (const dataset_t *train, const uint32_t *targets, const scorer_t *scorer, metrics_t *out);

#endif
