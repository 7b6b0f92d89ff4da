/*  model_private: the model's state, shared by its modules: model.c (configuration,
    parameters, lifecycle, the optimiser and the accessors), tower.c (the item and user
    towers forward and backward, training passes and serving), rank_head.c (the ranking
    head). Not for use outside model/.

    Activations of one batch are kept in a workspace sized for (batch x max_len) rows,
    so a training step allocates nothing. Padding positions (left of a short history)
    are zero rows: they attend to nothing, are attended by nothing, predict nothing,
    and their gradients are zeroed.
*/
#ifndef STRATA_MODEL_PRIVATE_H
#define STRATA_MODEL_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct {
    float *w, *g, *m, *v;
    size_t n;
} param_t;

typedef struct {
    param_t ln1_g, ln1_b, wq, wk, wv, wo, ln2_g, ln2_b, w1, b1, w2, b2;
} block_t;

//  Per-block activations for a batch of R = batch * max_len rows.
typedef struct {
    float *x;          // block input (R x d)
    float *ln1, *mu1, *rs1;
    float *q, *k, *v, *o, *p;   // p: batch x L x L
    float *a, *adrop;  // attention projection, its dropout mask
    float *x1;         // after the first residual
    float *ln2, *mu2, *rs2;
    float *h;          // R x ffn, after ReLU
    float *f, *fdrop;  // ffn output, its dropout mask
} cache_t;

struct _model_t {
    model_config_t cfg;
    uint32_t n_rows;               // rows of the embedding table
    size_t rows_cap;               // rows allocated
    int64_t *row_step;             // lazy Adam step count per row
    param_t emb, feat, pos, typ, lnf_g, lnf_b;
    int64_t *feat_step;            // lazy Adam step count per feature row
    const features_t *features;    // the catalogue's features (global rows), or NULL
    //  The item tower of the current pass: item k = table row k + the mean of its
    //  feature rows c_feat[c_off[k] .. c_off[k+1]); c_off NULL: item k = row k.
    const uint32_t *c_off, *c_feat;
    uint32_t c_items, c_known;     // items composed; those with a feature list
    float *vbuf, *dvbuf;           // composed item vectors and their gradients
    size_t vcap;
    block_t *blocks;
    cache_t *cache;
    //  Batch workspace.
    int32_t *in_items, *targets;   // R
    uint8_t *in_types;             // R: event type of each input
    uint8_t *valid;                // R
    float *x0, *x0drop;            // embeddings in, dropout mask
    float *xout, *hf, *muf, *rsf;  // last block output, final norm
    float *dx, *dtmp, *dtmp2, *dh; // gradient scratch (R x d, R x d, R x d, R x ffn)
    float *dq, *dk, *dv, *datt;    // R x d each; datt: L x L
    float *logits;                 // block rows x n_items
    int L;                         // positions in the current batch (<= max_len)
    uint32_t n_cand;               // softmax over rows [0, n_cand) of the table
    const float *bias;             // and their logit offsets (NULL: none)
    float *hpack, *dpack;          // rows that predict something, packed (R x d)
    int32_t *tpack;                // their targets
    int32_t *rowpack;              // and where they came from
    int64_t step;
    double flops;                  // dense floating-point work done in training
    uint64_t rng;
    //  Ranking head: layers rw/rb[0 .. rank_layers] (the last is the output), and the
    //  workspace of one group of at most rank_cap (user, candidate) examples.
    param_t rw[MODEL_RANK_MAX_LAYERS + 1], rb[MODEL_RANK_MAX_LAYERS + 1];
    //  The first layer is applied in two parts: [v, u * v, pooled] per example (r_in),
    //  [u, context] once per position (r_U, pre-activation r_pu), as u and the context
    //  are the same for all of a position's candidates.
    int rank_in, rank_cap, rank_wmax;
    float *r_in, *r_act[MODEL_RANK_MAX_LAYERS], *r_z, *r_y, *r_dz, *r_din, *r_dbuf[2];
    float *r_C, *r_P, *r_A, *r_dC, *r_dP, *r_work;
    float *r_U, *r_dU, *r_pu, *r_dpu, *r_plen;
    int32_t *r_row, *r_item, *r_hi, *r_pos, *r_prow;
    float *hist, *dhist;           // the batch's input item vectors (R x d) and gradient
    const uint32_t *rank_neg;      // negatives of the current pass
    uint32_t *neg_buf;             // model_batch_loss's negatives
    int32_t *hard;                 // each predicted position's hard candidates (R x HARD_POOL)
    int rerank_top;                // model_set_rerank's settings
    float rerank_blend;
    uint32_t served;               // users in the last model_user_vectors batch
};

//  Context features of the ranking head: the last event's type (one-hot) and the
//  history's length (fraction of max_len).
#define RANK_CONTEXT (MODEL_EVENT_TYPES + 1)
//  Examples per ranking group (at least one position's worth).
#define RANK_GROUP 2048
//  Hard negatives are rank_hard items spread over a position's HARD_POOL top-scored
//  items (what re-ranking will see: taking the very top ones instead teaches the head
//  that a high retrieval score means a wrong answer), leaving out items anywhere in
//  the user's sequence: items the user saw, or will buy later, are no wrong answers.
#define HARD_POOL 100

#define XENT_BLOCK 256

#define BLOCK_PARAMS 12
#define TOP_PARAMS 6
#define FIRST_DENSE 2   // tensors 0 (items) and 1 (features) are tables

//  model.c
float model_uniform (uint64_t *s);
//  A parameter with gradient and Adam moments. 0 or STRATA_ENOMEM.
int model_param (param_t *p, size_t n, float init_std, float init_const, uint64_t *rng);
void model_param_free (param_t *p);

//  tower.c
const float *tower_items_w (model_t *m);
float *tower_items_g (model_t *m);
int tower_first_valid (const model_t *m, int s);
//  Composes the item tower over the whole table. 0 or STRATA_ENOMEM.
int tower_global_items (model_t *self);

//  rank_head.c
int rank_head_on (const model_t *m);
//  The head's parameters and workspace. 0, STRATA_EINVAL (a configuration out of its
//  range) or STRATA_ENOMEM.
int rank_head_new (model_t *m);
void rank_head_free (model_t *m);
void rank_head_history (model_t *m, size_t R, int grad);
double rank_head_pass (model_t *m, int nb, float scale, int grad);
void rank_head_logits (model_t *m, int row, const uint32_t *cands, uint32_t n, float *out);
void rank_head_rerank (model_t *m, int s, float *sc, const uint8_t *seen, uint32_t *top, float *logits);

#endif
