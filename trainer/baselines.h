/*  baselines: the reference recommenders every model is measured against.

      popularity  items by how often they occur in training (the floor).
      item-kNN    cosine similarity of items over the users who touched them, shrunk
                  for rare pairs, each item's k nearest kept; a user's score for j is the
                  similarity-weighted sum over the history, recent items weighted up by
                  decay^(age) (decay 1 = plain item-kNN).
      EASE        closed-form item-item regression (Steck, 2019): B = I - P diag(1/P_jj)
                  with P = (X'X + lambda I)^-1, zero diagonal; score = x_u B. The inverse
                  is a Cholesky factorisation and inversion in OpenBLAS's LAPACK.
    Each is an evaluate.h scorer. Fitting is on a training view; tuning (choosing k,
    decay, lambda on the validation split) is the caller's.
*/
#ifndef STRATA_BASELINES_H
#define STRATA_BASELINES_H

#include <stddef.h>

#include "dataset.h"
#include "evaluate.h"

typedef struct _baseline_t baseline_t;

baseline_t *baseline_popularity (const dataset_t *train);

typedef struct {
    int k;           // neighbours kept per item
    float shrink;    // added to the cosine denominator
    float decay;     // weight of a history item = decay^(number of later items)
} knn_params_t;

baseline_t *baseline_knn (const dataset_t *train, const knn_params_t *params);

//  NULL if the item count makes the dense n x n matrix too large (over max_bytes) or
//  the factorisation fails.
baseline_t *baseline_ease (const dataset_t *train, float lambda, size_t max_bytes);

scorer_t baseline_scorer (baseline_t *self);

void baseline_destroy (baseline_t **self_p);

#endif
