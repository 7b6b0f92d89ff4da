/*  model: Strata's sequential recommender, the main header of the model library
    (model/: this model, its layers nn.h, the item tower's features item_features.h,
    published versions snapshot.h and their store versions.h, and a train worker's
    gradient step.h). The library is what a rank worker needs to score and a train
    worker to compute a gradient; it may depend on common/ and search/ (a snapshot
    carries the search state), never on the training side (trainer/) or a daemon.

    The user tower reads the user's last L behaviour items in order, as SASRec does:
    item embeddings plus learned position embeddings plus a learned embedding of the
    event type (a purchase is not a view: the attention learns how much each says), then `blocks` pre-norm transformer
    blocks (causal single-head self-attention and a ReLU feed-forward layer, each in a
    residual branch with dropout), then a final layer norm. The state at the last
    position is the user's interest vector; an item's score is its dot product with the
    item's embedding (the same table as the input, tied), so retrieval over the whole
    catalogue is one matrix product. Training predicts every next item of every
    training sequence with a softmax cross-entropy over the whole catalogue (or over
    sampled candidates, trainer/plan.h), and optimises with Adam. All layers come from
    nn.h.

    The ranking head scores one (user, candidate) pair at a time, for re-ranking the
    top of the retrieval: an MLP (ReLU layers of rank_widths, then a sigmoid output)
    over [user vector u, candidate vector v, u * v, candidate-aware attention pooling
    of the history (each history item weighted by its match with v, as in DIN),
    context (the last event's type, the history's length)]. It is trained jointly with
    the retrieval softmax: at every predicted position, binary cross-entropy of the
    true next item (label 1) against rank_negatives sampled items and the rank_hard
    items the retrieval scores highest there (label 0: what the head will have to
    tell apart when it re-ranks), weighted by rank_weight. Its gradient reaches the shared towers scaled by rank_share: 1 is
    plain joint training, 0 trains the head on the towers' outputs without letting it
    move them.
*/
#ifndef STRATA_MODEL_H
#define STRATA_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "item_features.h"
#include "strata_error.h"

typedef struct {
    int dim;           // embedding width (64)
    int max_len;       // history positions read (50)
    int blocks;        // transformer blocks (2)
    int ffn;           // feed-forward width (dim * 2... )
    float dropout;     // on embeddings and residual branches (0.3)
    float lr;          // Adam learning rate (0.001)
    float weight_decay;
    int batch;         // sequences per step (128)
    int feature_rows;  // hashed catalogue-feature rows of the item tower (0: ids only)
    uint64_t seed;
    //  Ranking head.
    int rank_negatives;   // sampled negatives per predicted position (4; 0: no ranking head)
    int rank_hard;        // and hard ones: the position's top-scored wrong items (4)
    int rank_layers;      // hidden layers (3)
    int rank_widths[4];   // their widths (128, 64, 32)
    float rank_weight;    // weight of its loss in the joint objective (1)
    float rank_share;     // share of its gradient that reaches the towers (0; 1: fully joint)
    int inference;        // serving only: the tables get no gradients or optimiser state
} model_config_t;

#define MODEL_RANK_MAX_LAYERS 4

void model_config_default (model_config_t *cfg);

typedef struct _model_t model_t;

//  Event types the model tells apart (strata.v1 EventType values; others count as 0).
#define MODEL_EVENT_TYPES 8

//  A unit of training work (a minibatch, or one shard of it): n sequences written in
//  rows of a local item table. rows[k] is the global item index of local row k; rows
//  [0, n_cand) are the softmax candidates (every target is one), the rest appear only
//  as inputs. bias (n_cand floats, or NULL) is added to the candidates' logits: the
//  sampled softmax's -log Q correction. With the full softmax, rows is every item and
//  bias is NULL. Sequence s is items[sum of lens before s ..][0 .. lens[s]), local row
//  indices in time order; every item but the first is a target.
typedef struct {
    uint64_t id;          // step * shards + shard: names the work, seeds its dropout
    uint64_t seed;
    uint32_t n;
    uint32_t *lens;
    uint32_t *items;
    uint8_t *types;       // event type of each item (NULL: all 0)
    size_t n_items;       // sum of lens
    uint32_t n_rows;
    uint32_t *rows;
    uint32_t n_cand;
    float *bias;
    //  Item tower: local item k's vector is table row k plus the mean of its feature
    //  rows feat[feat_off[k] .. feat_off[k+1]) (rows of a local feature table whose
    //  global rows are frows[0 .. n_frows)). feat_off NULL: no features.
    uint32_t *feat_off;   // n_rows + 1
    uint32_t *feat;
    uint32_t n_frows;
    uint32_t *frows;
    //  Ranking head: the negatives of predicted position p (positions numbered in
    //  sequence order, then time order) are local rows rank_neg[p * rank_negatives ..]
    //  (the model's rank_negatives of them). NULL: no ranking loss for this shard.
    uint32_t *rank_neg;
} model_shard_t;

//  A freshly initialised model with an item table of n_items rows. NULL on no memory.
model_t *model_new (const model_config_t *cfg, uint32_t n_items);
void model_destroy (model_t **self_p);
const model_config_t *model_config (model_t *self);

//  The item table: rows, weights (rows x dim) and their gradients.
uint32_t model_rows (model_t *self);
float *model_row_weights (model_t *self, float **grad);
//  Grows (new rows initialised as model_new does) or shrinks the table. 0 or
//  STRATA_ENOMEM.
int model_resize_rows (model_t *self, uint32_t rows);

//  The dense parameters (every tensor but the item table) as one flat vector.
size_t model_dense_size (model_t *self);
void model_dense_get (model_t *self, float *out);
void model_dense_set (model_t *self, const float *in);
void model_dense_grad_get (model_t *self, float *out);
void model_dense_grad_add (model_t *self, const float *in);

//  Forward and backward over a shard whose local table is loaded in the first n_rows
//  rows (the table must have at least that many): accumulates the gradient of the
//  SUMMED cross-entropy into the gradients, returns that sum and the number of
//  predicted positions. Dropout masks come from the shard's seed, so the same shard on
//  the same parameters gives the same gradient wherever it runs. NAN if the shard does
//  not fit.
double model_shard_grad (model_t *self, const model_shard_t *shard, uint64_t *positions);

//  One optimiser step: gradients are multiplied by scale (1 / predicted positions for a
//  mean), then Adam updates the dense tensors and lazy Adam the n given item rows and
//  the nf given feature rows (each list distinct), and those gradients are zeroed.
void model_apply (model_t *self, float scale, const uint32_t *rows, size_t n, const uint32_t *frows, size_t nf);

//  The catalogue's features (borrowed; NULL: none), used wherever the model scores the
//  whole table: item i's vector is its row plus the mean of its feature rows, so an
//  item nobody has touched still has a vector.
void model_set_features (model_t *self, const features_t *features);

//  The feature table: rows, weights, gradients, lazy Adam step counts.
uint32_t model_feature_rows (model_t *self);
float *model_feature_weights (model_t *self, float **grad);
int64_t *model_feature_steps (model_t *self);

//  Every item's vector (model_rows x dim), composed from its row and features; valid
//  until the next call into the model. NULL on no memory.
const float *model_item_vectors (model_t *self);

//  Users' histories in compressed rows (trainer/dataset.h's layout, borrowed): user u's
//  events are items[offsets[u] .. offsets[u+1]) in time order (rows of the item table),
//  with their event types beside them (types NULL: all 0).
typedef struct {
    const uint32_t *offsets;
    const uint32_t *items;
    const uint8_t *types;
} model_histories_t;

//  Scores the whole table (n x model_rows, to scores) for n users (inference: no
//  dropout). With rerank and a ranking head, the head then re-ranks each user's top
//  items not in the history as model_set_rerank says: their score becomes a big
//  constant plus the head's logit plus blend times the retrieval logit, so they stay on
//  top, in the head's order.
void model_score_users (model_t *self, const model_histories_t *h, const uint32_t *users, size_t n, float *scores,
                        int rerank);
void model_set_rerank (model_t *self, int top, float blend);

//  Whether the model has a ranking head.
int model_has_ranker (model_t *self);

//  Serving. The interest vectors (n x dim, to out) of n <= batch users whose histories
//  are given in time order: user k's events are items[off .. off + lens[k]) (rows of
//  the item table; only the last max_len are read) with their event types (NULL: all
//  0), off the sum of the lengths before k. Keeps the batch's states for
//  model_rank_candidates. 0, STRATA_ETOOLARGE (n > batch), STRATA_EINVAL (an item
//  outside the table) or STRATA_ENOMEM.
int model_user_vectors (model_t *self, const uint32_t *items, const uint8_t *types, const uint32_t *lens, uint32_t n,
                        float *out);

//  The ranking head's logits (higher: more likely next) of n candidate items (table
//  rows) for user k of the last model_user_vectors call. 0, STRATA_ESTATE (no ranking
//  head) or STRATA_EINVAL (k or an item out of range).
int model_rank_candidates (model_t *self, uint32_t k, const uint32_t *cands, uint32_t n, float *logits);

//  Number of parameters.
size_t model_parameters (model_t *self);

//  Floating-point operations of the matrix products done in training so far.
double model_flops (model_t *self);

//  For gradient checks: the mean cross-entropy of one batch of users' training
//  sequences over the whole table, with gradients accumulated (not applied) when
//  with_grad, and dropout on or off (fixed masks).
double model_histories_loss (model_t *self, const model_histories_t *h, const uint32_t *users, int n, int dropout,
                             int with_grad);
void model_zero_grad (model_t *self);
//  The same for the dense tensors and only the first rows / frows table rows.
void model_zero_grad_rows (model_t *self, uint32_t rows, uint32_t frows);

//  Parameter tensor i (0 <= i < model_tensor_count; 0 is the item table, 1 the feature
//  table): values,
//  gradient, size, name; and its optimiser state. For checkpoints.
int model_tensor_count (model_t *self);
float *model_tensor (model_t *self, int i, float **grad, size_t *n, const char **name);
float *model_tensor_state (model_t *self, int i, float **mom, float **var);
int64_t *model_row_steps (model_t *self);   // per table row
int64_t *model_step (model_t *self);        // optimiser steps taken

#endif
