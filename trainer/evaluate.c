/*  evaluate: see evaluate.h. */
#include "evaluate.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define EVAL_BATCH 256

int
evaluate (const dataset_t *train, const uint32_t *targets, const scorer_t *scorer, metrics_t *out)
{
    memset (out, 0, sizeof *out);
    size_t ni = train->n_items;
    float *scores = malloc (EVAL_BATCH * ni * sizeof *scores);
    uint32_t *batch = malloc (EVAL_BATCH * sizeof *batch);
    if (!scores || !batch) {
        free (scores);
        free (batch);
        return STRATA_ENOMEM;
    }
    double hr10 = 0, ndcg10 = 0, hr20 = 0, ndcg20 = 0, mrr = 0;
    uint32_t u = 0;
    while (u < train->n_users) {
        size_t n = 0;
        for (; u < train->n_users && n < EVAL_BATCH; u++)
            if (targets[u] != DATASET_NO_TARGET && targets[u] < ni)
                batch[n++] = u;
        if (n == 0)
            continue;
        scorer->score (scorer->model, train, batch, n, scores);
        for (size_t b = 0; b < n; b++) {
            uint32_t user = batch[b], target = targets[user];
            float *s = scores + b * ni;
            bool in_history = false;
            for (uint32_t k = train->offsets[user]; k < train->offsets[user + 1]; k++) {
                in_history |= train->items[k] == target;
                s[train->items[k]] = -INFINITY;
            }
            out->users++;
            if (in_history) {
                out->target_in_history++;
                continue;
            }
            float t = s[target];
            size_t rank = 0;
            for (size_t j = 0; j < ni; j++)
                rank += (s[j] > t) || (s[j] == t && j != target);
            if (isnan (t))
                rank = ni;
            mrr += 1.0 / (double) (rank + 1);
            if (rank < 20) {
                hr20 += 1;
                ndcg20 += 1.0 / log2 ((double) rank + 2);
                if (rank < 10) {
                    hr10 += 1;
                    ndcg10 += 1.0 / log2 ((double) rank + 2);
                }
            }
        }
    }
    if (out->users) {
        out->hr10 = hr10 / out->users;
        out->ndcg10 = ndcg10 / out->users;
        out->hr20 = hr20 / out->users;
        out->ndcg20 = ndcg20 / out->users;
        out->mrr = mrr / out->users;
    }
    free (scores);
    free (batch);
    return 0;
}
