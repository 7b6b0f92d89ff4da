/*  model: Strata's sequential recommender.

    The user tower reads the user's last L behaviour items in order, as SASRec does:
    item embeddings plus learned position embeddings, then `blocks` pre-norm transformer
    blocks (causal single-head self-attention and a ReLU feed-forward layer, each in a
    residual branch with dropout), then a final layer norm. The state at the last
    position is the user's interest vector; an item's score is its dot product with the
    item's embedding (the same table as the input, tied), so retrieval over the whole
    catalogue is one matrix product. Training predicts every next item of every
    training sequence with a softmax cross-entropy over the whole catalogue, and
    optimises with Adam. All layers come from nn.h.
*/
#ifndef STRATA_MODEL_H
#define STRATA_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"
#include "evaluate.h"

typedef struct {
    int dim;           // embedding width (64)
    int max_len;       // history positions read (50)
    int blocks;        // transformer blocks (2)
    int ffn;           // feed-forward width (dim * 2... )
    float dropout;     // on embeddings and residual branches (0.3)
    float lr;          // Adam learning rate (0.001)
    float weight_decay;
    int batch;         // sequences per step (128)
    uint64_t seed;
} model_config_t;

void model_config_default (model_config_t *cfg);

typedef struct _model_t model_t;

//  A freshly initialised model for n_items items. NULL on no memory.
model_t *model_new (const model_config_t *cfg, uint32_t n_items);
void model_destroy (model_t **self_p);

//  One pass over every training sequence (in a seeded random order); returns the mean
//  cross-entropy per predicted position.
double model_train_epoch (model_t *self, const dataset_t *train);

//  The model as an evaluate.h scorer (inference: no dropout).
scorer_t model_scorer (model_t *self);

//  Number of parameters.
size_t model_parameters (model_t *self);

//  Floating-point operations of the matrix products done in training so far.
double model_flops (model_t *self);

//  For gradient checks and tools: the loss (mean cross-entropy) of one batch of users'
//  training sequences, with gradients accumulated (not applied) when with_grad, and
//  dropout on or off.
double model_batch_loss (model_t *self, const dataset_t *train, const uint32_t *users, int n, int dropout,
                         int with_grad);
void model_zero_grad (model_t *self);

//  Parameter tensor i (0 <= i < model_tensor_count): values, gradient, size, name.
int model_tensor_count (model_t *self);
float *model_tensor (model_t *self, int i, float **grad, size_t *n, const char **name);

#endif
