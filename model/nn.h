/*  nn: the layers of Strata's neural recommender, forward and backward, by hand.

    This module owns every BLAS call of the model (OpenBLAS cblas_*), so that speed work
    has one place to happen and every layer has one definition that the gradient checks
    test. Tensors are plain row-major float arrays; shapes are arguments. Backward
    functions ACCUMULATE (+=) into parameter gradients and input gradients, so layers
    compose (a residual branch adds its gradient to the same buffer); callers zero
    gradient buffers once per step.

    Layers:  linear, ReLU, layer normalisation, causal single-head self-attention, row
    gather/scatter of embeddings, softmax cross-entropy over a whole item table (the
    logits H E' are computed in blocks so the full n x items matrix never exists), and
    the Adam optimiser for dense tensors and for the rows of an embedding table that a
    step touched.
*/
#ifndef STRATA_NN_H
#define STRATA_NN_H

#include <stddef.h>
#include <stdint.h>

//  Y[n x out] = X[n x in] W[in x out] (+ b[out] if b).
void nn_linear_fwd (const float *X, int n, int in, const float *W, const float *b, int out, float *Y);

//  dX[n x in] += dY W' (if dX); dW[in x out] += X' dY; db[out] += column sums of dY (if db).
void nn_linear_bwd (const float *X, int n, int in, const float *W, int out, const float *dY, float *dX, float *dW,
                    float *db);

//  Y[n x m] = X[n x k] W[m x k]' (scores of n states against m item embeddings).
void nn_matmul_nt (const float *X, int n, int k, const float *W, int m, float *Y);
//  The same with row strides: X rows ldx apart, W rows ldw apart, Y rows ldy apart.
void nn_matmul_nt_ld (const float *X, int ldx, int n, int k, const float *W, int ldw, int m, float *Y, int ldy);
//  y[m] = W[m x k] x (one state against m rows, W rows k apart).
void nn_matvec (const float *W, int m, int k, const float *x, float *y);
float nn_dot (const float *a, const float *b, int n);
//  y += alpha x.
void nn_axpy (int n, float alpha, const float *x, float *y);

//  Y = max (X, 0) in place; backward masks dY where Y <= 0.
void nn_relu_fwd (float *X, size_t n);
void nn_relu_bwd (const float *Y, float *dY, size_t n);

//  Row-wise layer normalisation with gain g and bias b; mean and rstd (n each) are
//  saved for the backward pass.
void nn_layernorm_fwd (const float *X, int n, int d, const float *g, const float *b, float *Y, float *mean,
                       float *rstd);
void nn_layernorm_bwd (const float *X, int n, int d, const float *g, const float *mean, const float *rstd,
                       const float *dY, float *dX, float *dg, float *db);

//  Causal attention for one sequence of L positions: O = softmax (Q K' / sqrt (d) + mask) V,
//  where position i sees positions j <= i that are valid (valid[j] != 0; NULL: all).
//  P (L x L) keeps the attention weights for the backward pass.
void nn_attention_fwd (const float *Q, const float *K, const float *V, int L, int d, const uint8_t *valid, float *P,
                       float *O);
//  work: L x L floats.
void nn_attention_bwd (const float *Q, const float *K, const float *V, int L, int d, const float *P, const float *dO,
                       float *dQ, float *dK, float *dV, float *work);

//  Softmax cross-entropy of logits = H[n x d] E[m x d]' (+ bias[m], a constant offset
//  per column, if bias) against targets[n] (a target < 0 is skipped). Returns the
//  summed loss; dH[n x d] and dE[m x d] (either may be NULL) accumulate the gradient of
//  the summed loss times `scale`. work needs block * m floats (block rows of logits at
//  a time).
//  With top (n x top_k ints, top_k > 0), row i's top_k highest-scoring columns by H E'
//  (without the bias), its target excluded, best first (-1 where m is too small), are
//  written to top[i * top_k ..]: the hard negatives of a ranking stage.
double nn_softmax_xent (const float *H, int n, int d, const float *E, int m, const float *bias,
                        const int32_t *targets, float scale, float *dH, float *dE, float *work, int block,
                        int32_t *top, int top_k);

//  Candidate-aware attention pooling (DIN's target attention, with a scaled dot
//  product): candidate i (row i of C, n x d) pools the history rows X[lo .. hi[i]]
//  (inclusive; X is L x d) with weights A[i][j] = softmax_j (C_i . X_j / sqrt (d)):
//  out[i] = sum_j A[i][j] X_j. A candidate with hi[i] < lo pools nothing (zeros).
//  A (n x L) keeps the weights for the backward pass.
void nn_target_pool_fwd (const float *C, int n, const float *X, int L, int d, int lo, const int32_t *hi, float *A,
                         float *out);
//  dC[n x d] += ..., dX[L x d] += ... from dout[n x d]; work: n x L floats.
void nn_target_pool_bwd (const float *C, int n, const float *X, int L, int d, const float *A, const float *dout,
                         float *dC, float *dX, float *work);

//  Binary cross-entropy of sigmoid (z[i]) against labels y[i] in [0, 1], computed
//  stably from the logits. Returns the summed loss; dz[i] = scale (sigmoid (z[i]) -
//  y[i]) when dz is not NULL.
double nn_bce_logits (const float *z, const float *y, int n, float scale, float *dz);

//  The indices of the k largest of z[0..m), best first (ties: lower index first),
//  leaving out index `skip` (-1: none) and every j with exclude[j] != 0 (exclude may
//  be NULL). Returns how many were found (fewer than k when m is short).
int nn_top_k (const float *z, int m, int32_t skip, const uint8_t *exclude, int32_t *top, int k);

//  The indices j of z[0..m) with z[j] >= bar, in order, into out (room for m);
//  returns how many.
uint32_t nn_at_least (const float *z, uint32_t m, float bar, uint32_t *out);

//  out[i x d] = table[rows[i] x d]; rows[i] < 0 gives zeros.
void nn_gather (const float *table, int d, const int32_t *rows, int n, float *out);
//  dtable[rows[i]] += dout[i] (rows[i] < 0 skipped).
void nn_scatter_add (float *dtable, int d, const int32_t *rows, int n, const float *dout);

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    int64_t step;   // incremented by the caller before each update round
} adam_t;

//  Dense Adam on n parameters with the gradient scale * g; g is zeroed on the way (one
//  pass over the four arrays: the update is memory-bound).
void nn_adam (const adam_t *opt, float scale, float *w, float *g, float *m, float *v, size_t n);

//  Lazy Adam on the given rows (each of width d) of an embedding table: only rows a
//  step touched are updated, with their own step counts (row_step) for bias correction;
//  their gradients are scaled and zeroed as in nn_adam. rows must be distinct.
void nn_adam_rows (const adam_t *opt, float scale, float *w, float *g, float *m, float *v, int64_t *row_step, int d,
                   const int32_t *rows, int n);

#endif
