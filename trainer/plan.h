/*  plan: the training schedule, deterministic from a seed.

    An epoch visits every user with at least two events once, in a seeded random order:
    users are shuffled, sorted by history length within windows of 32 batches (so a
    batch wastes little on padding), and the batches are visited in random order. Step s
    of epoch e is one minibatch of `batch` users, cut into `shards` contiguous shards.

    A shard carries what a train worker needs and nothing else: each user's last
    max_len + 1 events (max_len inputs, each predicting its successor), written as
    rows of a local item table, and that table's global item indices. With
    `negatives` = 0 the softmax runs over the whole catalogue, so every row is needed.
    With negatives = K the softmax runs over the step's targets plus K items sampled
    (shared by the step's shards) uniformly or from the popularity distribution
    smoothed by an exponent (count^alpha); popularity sampling adds -log Q(item) to the
    logits, the usual correction that keeps the sampled softmax an estimate of the full
    one. Then a shard touches a few thousand rows, however large the catalogue.

    For the ranking head (model.h), every predicted position also gets rank_negatives
    items sampled uniformly or from the smoothed popularity (never the position's
    target), appended to the shard's table as rows that are not softmax candidates.

    Everything here is a function of (seed, epoch, step, shard): a shard lost with a
    dead worker is rebuilt identically, and a run with the same seed and shard count
    does the same arithmetic in the same order.
*/
#ifndef STRATA_PLAN_H
#define STRATA_PLAN_H

#include <stdint.h>

#include "dataset.h"
#include "item_features.h"
#include "model.h"

typedef enum { PLAN_UNIFORM = 0, PLAN_POPULARITY = 1 } plan_sampler_t;

typedef struct {
    int batch;              // users per step
    int shards;             // shards per step
    int negatives;          // 0: full softmax; K: sampled candidates per step
    plan_sampler_t sampler;
    float alpha;            // popularity smoothing exponent
    int max_len;            // inputs per sequence
    uint64_t seed;
    int rank_negatives;     // ranking-head negatives per predicted position (0: none)
    plan_sampler_t rank_sampler;
} plan_config_t;

void plan_config_default (plan_config_t *cfg);
//  "uniform" or "popularity" (a plan_sampler_t); STRATA_EINVAL for anything else.
int plan_sampler_parse (const char *name);

typedef struct _plan_t plan_t;

//  A plan over train (borrowed: it must outlive the plan). NULL on no memory.
plan_t *plan_new (const dataset_t *train, const plan_config_t *cfg);
void plan_destroy (plan_t **self_p);
const plan_config_t *plan_config (plan_t *self);

//  The catalogue's features (borrowed; NULL: none): shards then carry, for each of
//  their items, its feature rows, and the feature table rows they touch. 0 or
//  STRATA_ENOMEM.
int plan_set_features (plan_t *self, const features_t *features);

//  Restricts the epochs to these users (copied; NULL: every user), as incremental
//  training does with the users who have new events. 0 or STRATA_ENOMEM.
int plan_set_users (plan_t *self, const uint32_t *users, uint32_t n);

//  Orders the users for epoch (numbered from 0); returns the number of steps.
uint32_t plan_epoch (plan_t *self, uint32_t epoch);

//  Users in the training order of the current epoch.
uint32_t plan_users (plan_t *self);

//  Builds shard `shard` of step `step` of the current epoch into out (owned by the
//  caller: free with plan_shard_free). 0, STRATA_EINVAL (no such step or shard this
//  epoch) or STRATA_ENOMEM.
int plan_shard (plan_t *self, uint32_t step, int shard, model_shard_t *out);
void plan_shard_free (model_shard_t *shard);

#endif
