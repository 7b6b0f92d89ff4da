/*  Unit: gradient checks of every layer against central finite differences.

    Each layer is wrapped as loss = sum (Y * R) for a fixed random R, so dL/dY = R; the
    analytic gradients from the backward pass are compared with (L(x+e) - L(x-e)) / 2e
    for every input and parameter element, in double-precision loss accumulation.
*/
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"

static uint64_t s_seed = 88172645463325252ULL;
static float
s_rand (void)
{
    s_seed ^= s_seed << 13;
    s_seed ^= s_seed >> 7;
    s_seed ^= s_seed << 17;
    return (float) ((s_seed >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void
s_fill (float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = s_rand ();
}

typedef double (loss_fn) (void *ctx);

//  Compares analytic gradient g of loss wrt x (n elements) with finite differences.
static void
s_check (const char *what, loss_fn *loss, void *ctx, float *x, const float *g, size_t n)
{
    const float eps = 1e-2f;
    for (size_t i = 0; i < n; i++) {
        float keep = x[i];
        x[i] = keep + eps;
        double up = loss (ctx);
        x[i] = keep - eps;
        double down = loss (ctx);
        x[i] = keep;
        double num = (up - down) / (2.0 * eps);
        double err = fabs (num - g[i]) / fmax (1.0, fabs (num) + fabs (g[i]));
        cr_expect_lt (err, 2e-3, "%s[%zu]: analytic %g, numeric %g", what, i, (double) g[i], num);
    }
}

static double
s_dot (const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double) a[i] * b[i];
    return s;
}

// ---------------------------------------------------------------- linear

typedef struct {
    float X[3 * 4], W[4 * 5], b[5], R[3 * 5], Y[3 * 5];
} lin_t;

static double
s_lin_loss (void *p)
{
    lin_t *c = p;
    nn_linear_fwd (c->X, 3, 4, c->W, c->b, 5, c->Y);
    return s_dot (c->Y, c->R, 15);
}

Test (nn, linear_gradients)
{
    lin_t c;
    s_fill (c.X, 12);
    s_fill (c.W, 20);
    s_fill (c.b, 5);
    s_fill (c.R, 15);
    float dX[12] = { 0 }, dW[20] = { 0 }, db[5] = { 0 };
    s_lin_loss (&c);
    nn_linear_bwd (c.X, 3, 4, c.W, 5, c.R, dX, dW, db);
    s_check ("dX", s_lin_loss, &c, c.X, dX, 12);
    s_check ("dW", s_lin_loss, &c, c.W, dW, 20);
    s_check ("db", s_lin_loss, &c, c.b, db, 5);
    //  Backward accumulates: a second call doubles the gradient.
    nn_linear_bwd (c.X, 3, 4, c.W, 5, c.R, NULL, dW, NULL);
    float dW1[20] = { 0 };
    nn_linear_bwd (c.X, 3, 4, c.W, 5, c.R, NULL, dW1, NULL);
    for (int i = 0; i < 20; i++)
        cr_expect_float_eq (dW[i], 2 * dW1[i], 1e-5);
}

// ---------------------------------------------------------------- layer norm

typedef struct {
    float X[3 * 6], g[6], b[6], R[3 * 6], Y[3 * 6], mean[3], rstd[3];
} ln_t;

static double
s_ln_loss (void *p)
{
    ln_t *c = p;
    nn_layernorm_fwd (c->X, 3, 6, c->g, c->b, c->Y, c->mean, c->rstd);
    return s_dot (c->Y, c->R, 18);
}

Test (nn, layernorm_gradients_and_normalisation)
{
    ln_t c;
    s_fill (c.X, 18);
    s_fill (c.g, 6);
    s_fill (c.b, 6);
    s_fill (c.R, 18);
    float dX[18] = { 0 }, dg[6] = { 0 }, db[6] = { 0 };
    s_ln_loss (&c);
    nn_layernorm_bwd (c.X, 3, 6, c.g, c.mean, c.rstd, c.R, dX, dg, db);
    s_check ("dX", s_ln_loss, &c, c.X, dX, 18);
    s_check ("dg", s_ln_loss, &c, c.g, dg, 6);
    s_check ("db", s_ln_loss, &c, c.b, db, 6);
    //  With unit gain and zero bias each row has mean 0 and variance 1.
    float one[6] = { 1, 1, 1, 1, 1, 1 }, zero[6] = { 0 };
    nn_layernorm_fwd (c.X, 3, 6, one, zero, c.Y, c.mean, c.rstd);
    double mu = 0, var = 0;
    for (int k = 0; k < 6; k++)
        mu += c.Y[k];
    for (int k = 0; k < 6; k++)
        var += (c.Y[k] - mu / 6) * (c.Y[k] - mu / 6);
    cr_expect_float_eq (mu / 6, 0.0, 1e-5);
    cr_expect_float_eq (var / 6, 1.0, 1e-3);
}

// ---------------------------------------------------------------- attention

enum { L = 5, D = 4 };

typedef struct {
    float Q[L * D], K[L * D], V[L * D], R[L * D], O[L * D], P[L * L];
    uint8_t valid[L];
} att_t;

static double
s_att_loss (void *p)
{
    att_t *c = p;
    nn_attention_fwd (c->Q, c->K, c->V, L, D, c->valid, c->P, c->O);
    return s_dot (c->O, c->R, L * D);
}

Test (nn, causal_attention_gradients_and_mask)
{
    att_t c;
    s_fill (c.Q, L * D);
    s_fill (c.K, L * D);
    s_fill (c.V, L * D);
    s_fill (c.R, L * D);
    uint8_t valid[L] = { 0, 1, 1, 0, 1 };   // left padding and a hole
    memcpy (c.valid, valid, L);
    float dQ[L * D] = { 0 }, dK[L * D] = { 0 }, dV[L * D] = { 0 }, work[L * L];
    s_att_loss (&c);
    //  Causality and masking: row i puts no weight on j > i or on invalid j.
    for (int i = 0; i < L; i++) {
        double sum = 0;
        for (int j = 0; j < L; j++) {
            if (j > i || !valid[j])
                cr_expect_eq (c.P[i * L + j], 0.0f, "P[%d][%d] leaks", i, j);
            sum += c.P[i * L + j];
        }
        if (i >= 1)
            cr_expect_float_eq (sum, 1.0, 1e-5, "row %d sums to %f", i, sum);
    }
    nn_attention_bwd (c.Q, c.K, c.V, L, D, c.P, c.R, dQ, dK, dV, work);
    s_check ("dQ", s_att_loss, &c, c.Q, dQ, L * D);
    s_check ("dK", s_att_loss, &c, c.K, dK, L * D);
    s_check ("dV", s_att_loss, &c, c.V, dV, L * D);
}

// ---------------------------------------------------------------- target attention pooling

enum { TN = 6 };

typedef struct {
    float C[TN * D], X[L * D], R[TN * D], out[TN * D], A[TN * L];
    int32_t hi[TN];
} pool_t;

static double
s_pool_loss (void *p)
{
    pool_t *c = p;
    nn_target_pool_fwd (c->C, TN, c->X, L, D, 1, c->hi, c->A, c->out);
    return s_dot (c->out, c->R, TN * D);
}

Test (nn, target_attention_pooling_gradients_and_range)
{
    pool_t c;
    s_fill (c.C, TN * D);
    s_fill (c.X, L * D);
    s_fill (c.R, TN * D);
    //  History rows 1..hi[i]; a candidate with hi < lo (no history yet) pools nothing.
    int32_t hi[TN] = { 1, 2, 4, 3, 0, 4 };
    memcpy (c.hi, hi, sizeof hi);
    s_pool_loss (&c);
    for (int i = 0; i < TN; i++) {
        double sum = 0;
        for (int j = 0; j < L; j++) {
            if (j < 1 || j > hi[i])
                cr_expect_eq (c.A[i * L + j], 0.0f, "A[%d][%d] outside the history", i, j);
            sum += c.A[i * L + j];
        }
        cr_expect_float_eq (sum, hi[i] >= 1 ? 1.0 : 0.0, 1e-5, "row %d sums to %f", i, sum);
    }
    for (int k = 0; k < D; k++)
        cr_expect_eq (c.out[4 * D + k], 0.0f, "no history, no pooled vector");
    //  One history item: the pooled vector is that item.
    for (int k = 0; k < D; k++)
        cr_expect_float_eq (c.out[k], c.X[D + k], 1e-6);
    float dC[TN * D] = { 0 }, dX[L * D] = { 0 }, work[TN * L];
    nn_target_pool_bwd (c.C, TN, c.X, L, D, c.A, c.R, dC, dX, work);
    for (int k = 0; k < D; k++)
        cr_expect_eq (dX[k], 0.0f, "row 0 is outside every range");
    s_check ("dC", s_pool_loss, &c, c.C, dC, TN * D);
    s_check ("dX", s_pool_loss, &c, c.X, dX, L * D);
}

// ---------------------------------------------------------------- binary cross-entropy

typedef struct {
    float z[6], y[6];
} bce_t;

static double
s_bce_loss (void *p)
{
    bce_t *c = p;
    return nn_bce_logits (c->z, c->y, 6, 1.0f, NULL);
}

Test (nn, bce_with_logits_loss_gradients_and_extremes)
{
    bce_t c = { { 0.3f, -1.2f, 2.0f, 0.0f, -0.4f, 1.1f }, { 1, 0, 0, 1, 1, 0 } };
    float dz[6];
    double loss = nn_bce_logits (c.z, c.y, 6, 1.0f, dz);
    double want = 0;
    for (int i = 0; i < 6; i++) {
        double s = 1.0 / (1.0 + exp (-(double) c.z[i]));
        want += c.y[i] > 0 ? -log (s) : -log (1 - s);
    }
    cr_expect_float_eq (loss, want, 1e-6, "loss %f, by hand %f", loss, want);
    s_check ("dz", s_bce_loss, &c, c.z, dz, 6);
    //  Far-out logits stay finite: a confident right answer costs ~0, a wrong one ~|z|.
    float z2[2] = { 200.0f, -200.0f }, y2[2] = { 1, 1 }, d2[2];
    double l2 = nn_bce_logits (z2, y2, 2, 1.0f, d2);
    cr_expect_float_eq (l2, 200.0, 1e-3);
    cr_expect_float_eq (d2[0], 0.0f, 1e-6);
    cr_expect_float_eq (d2[1], -1.0f, 1e-6);
}

// ---------------------------------------------------------------- softmax cross-entropy

typedef struct {
    float H[5 * 3], E[7 * 3], work[2 * 7];
    float *bias;   // NULL, or bias_store
    float bias_store[7];
    int32_t t[5];
} xent_t;

static double
s_xent_loss (void *p)
{
    xent_t *c = p;
    return nn_softmax_xent (c->H, 5, 3, c->E, 7, c->bias, c->t, 1.0f, NULL, NULL, c->work, 2, NULL, 0);
}

Test (nn, softmax_xent_gradients_loss_and_skips)
{
    xent_t c;
    c.bias = NULL;
    s_fill (c.H, 15);
    s_fill (c.E, 21);
    int32_t t[5] = { 3, -1, 0, 6, 3 };
    memcpy (c.t, t, sizeof t);
    float dH[15] = { 0 }, dE[21] = { 0 };
    double loss = nn_softmax_xent (c.H, 5, 3, c.E, 7, c.bias, c.t, 1.0f, dH, dE, c.work, 2, NULL, 0);
    //  The loss by hand for row 0.
    double z[7], mx = -1e9, sum = 0;
    for (int j = 0; j < 7; j++) {
        z[j] = c.H[0] * c.E[j * 3] + c.H[1] * c.E[j * 3 + 1] + c.H[2] * c.E[j * 3 + 2];
        mx = fmax (mx, z[j]);
    }
    for (int j = 0; j < 7; j++)
        sum += exp (z[j] - mx);
    double row0 = -(z[3] - mx - log (sum));
    cr_expect_gt (loss, row0);
    for (int k = 0; k < 3; k++)
        cr_expect_eq (dH[3 + k], 0.0f, "a skipped row has no gradient");
    s_check ("dH", s_xent_loss, &c, c.H, dH, 15);
    s_check ("dE", s_xent_loss, &c, c.E, dE, 21);
}

Test (nn, softmax_xent_reports_the_hardest_negatives)
{
    //  Each row's 3 best-scoring columns by H E' (bias ignored), target excluded, best
    //  first; a skipped row gets none.
    xent_t c;
    s_fill (c.H, 15);
    s_fill (c.E, 21);
    s_fill (c.bias_store, 7);
    int32_t t[5] = { 3, -1, 0, 6, 3 }, top[5 * 3];
    nn_softmax_xent (c.H, 5, 3, c.E, 7, c.bias_store, t, 1.0f, NULL, NULL, c.work, 2, top, 3);
    for (int i = 0; i < 5; i++) {
        if (t[i] < 0) {
            for (int p = 0; p < 3; p++)
                cr_expect_eq (top[i * 3 + p], -1);
            continue;
        }
        float z[7];
        for (int j = 0; j < 7; j++)
            z[j] = c.H[i * 3] * c.E[j * 3] + c.H[i * 3 + 1] * c.E[j * 3 + 1] + c.H[i * 3 + 2] * c.E[j * 3 + 2];
        for (int p = 0; p < 3; p++) {
            //  Exactly p columns (target excluded) score above the p-th reported.
            int above = 0, j = top[i * 3 + p];
            cr_assert (j >= 0 && j < 7 && j != t[i], "row %d: %d", i, j);
            for (int q = 0; q < 7; q++)
                above += q != t[i] && z[q] > z[j];
            cr_expect_eq (above, p, "row %d: rank %d holds column %d", i, p, j);
        }
    }
}

//  The order nn_top_k reports: higher score, then lower index.
static const float *s_sort_z;

static int
s_rank_cmp (const void *a, const void *b)
{
    int32_t x = *(const int32_t *) a, y = *(const int32_t *) b;
    float zx = s_sort_z[x], zy = s_sort_z[y];
    return zx > zy ? -1 : zx < zy ? 1 : (x > y) - (x < y);
}

//  nn_top_k's answer for each k is the first k of a full sort of the eligible columns.
static void
s_check_top_k (const float *z, int m, int32_t skip, const uint8_t *ex, const int *ks, int nk)
{
    int32_t *want = malloc ((size_t) m * sizeof *want), *got = malloc ((size_t) m * sizeof *got);
    cr_assert (want && got);
    int nw = 0;
    for (int j = 0; j < m; j++)
        if (j != skip && !(ex && ex[j]))
            want[nw++] = j;
    s_sort_z = z;
    qsort (want, (size_t) nw, sizeof *want, s_rank_cmp);
    for (int i = 0; i < nk; i++) {
        int n = nn_top_k (z, m, skip, ex, got, ks[i]);
        cr_expect_eq (n, ks[i] < nw ? ks[i] : nw, "m=%d k=%d", m, ks[i]);
        for (int j = 0; j < n; j++)
            cr_expect_eq (got[j], want[j], "m=%d k=%d: rank %d holds %d, want %d", m, ks[i], j, got[j], want[j]);
    }
    free (want);
    free (got);
}

Test (nn, top_k_matches_a_full_sort)
{
    //  Random scores with ties, a skipped column and excluded ones: the heap's answer
    //  is the first k of a full sort (higher score, then lower index).
    enum { M = 500 };
    float z[M];
    uint8_t ex[M];
    for (int j = 0; j < M; j++) {
        z[j] = (float) (int) (s_rand () * 50);   // many ties
        ex[j] = j % 7 == 3;
    }
    int ks[] = { 1, 5, 100, 499 };
    s_check_top_k (z, M, 11, ex, ks, 4);
}

Test (nn, top_k_on_long_rows)
{
    //  Rows long enough that only the best column groups reach the heap: ties, a
    //  skipped column, exclusions, groups of several sizes, scores that rise along the
    //  row (every column would beat the heap's worst) and a row with too few columns.
    int ms[] = { 3000, 12101, 40000 };
    int ks[] = { 1, 7, 100, 1000 };
    for (int t = 0; t < 3; t++) {
        int m = ms[t];
        float *z = malloc ((size_t) m * sizeof *z);
        uint8_t *ex = malloc ((size_t) m);
        cr_assert (z && ex);
        for (int j = 0; j < m; j++) {
            z[j] = (float) (int) (s_rand () * 200);
            ex[j] = j % 11 == 5;
        }
        s_check_top_k (z, m, m / 3, ex, ks, 4);
        s_check_top_k (z, m, -1, NULL, ks, 4);
        for (int j = 0; j < m; j++)
            z[j] = (float) j * 1e-3f + s_rand ();
        s_check_top_k (z, m, 17, NULL, ks, 4);
        for (int j = 0; j < m; j++)
            ex[j] = j % 1000 != 0;   // m / 1000 eligible columns: fewer than most k
        s_check_top_k (z, m, 0, ex, ks, 4);
        free (z);
        free (ex);
    }
}

Test (nn, top_k_with_few_exclusions_and_wide_blocks)
{
    //  A user's history left out: a few columns, the best ones among them, so the
    //  blocks that hold them are looked at again without them. Rows past 2048 blocks
    //  of 64 get wider blocks, of a width that is not a multiple of 4.
    int ms[] = { 12101, 200003 };
    int ks[] = { 1, 10, 100 };
    for (int t = 0; t < 2; t++) {
        int m = ms[t];
        float *z = malloc ((size_t) m * sizeof *z);
        uint8_t *ex = calloc ((size_t) m, 1);
        cr_assert (z && ex);
        for (int j = 0; j < m; j++)
            z[j] = s_rand ();
        for (int i = 0; i < 20; i++) {
            int j = (int) (((uint64_t) i * 2654435761u) % (uint64_t) m);
            z[j] = 2.0f + (float) i;   // above every other column
            ex[j] = 1;
        }
        ex[m - 1] = 1;   // in the last, short block
        s_check_top_k (z, m, -1, ex, ks, 3);
        s_check_top_k (z, m, m - 2, ex, ks, 3);
        free (z);
        free (ex);
    }
}

Test (nn, at_least_lists_every_column_at_or_above_the_bar)
{
    //  Lengths that do and do not fill the last group of 4, a bar met exactly, and
    //  -inf, which every column clears.
    float z[23];
    for (int j = 0; j < 23; j++)
        z[j] = (float) ((j * 7) % 23);
    uint32_t out[23];
    for (uint32_t m = 0; m <= 23; m++)
        for (float bar = -1; bar <= 23; bar += 3) {
            uint32_t n = nn_at_least (z, m, bar, out), want = 0;
            for (uint32_t j = 0; j < m; j++)
                if (z[j] >= bar) {
                    cr_assert (want < n && out[want] == j, "m=%u bar=%g: #%u", m, (double) bar, want);
                    want++;
                }
            cr_expect_eq (n, want, "m=%u bar=%g", m, (double) bar);
        }
    cr_expect_eq (nn_at_least (z, 23, -INFINITY, out), 23);
}

Test (nn, softmax_xent_with_column_bias)
{
    //  A per-column bias (the sampled softmax's log-Q correction) shifts the logits: the
    //  loss by hand, and the gradients, still match.
    xent_t c;
    s_fill (c.H, 15);
    s_fill (c.E, 21);
    s_fill (c.bias_store, 7);
    c.bias = c.bias_store;
    int32_t t[5] = { 3, 1, 0, 6, -1 };
    memcpy (c.t, t, sizeof t);
    float dH[15] = { 0 }, dE[21] = { 0 };
    double loss = nn_softmax_xent (c.H, 5, 3, c.E, 7, c.bias, c.t, 1.0f, dH, dE, c.work, 2, NULL, 0);
    double want = 0;
    for (int i = 0; i < 4; i++) {
        double z[7], mx = -1e9, sum = 0;
        for (int j = 0; j < 7; j++) {
            z[j] = c.bias[j];
            for (int k = 0; k < 3; k++)
                z[j] += c.H[i * 3 + k] * c.E[j * 3 + k];
            mx = fmax (mx, z[j]);
        }
        for (int j = 0; j < 7; j++)
            sum += exp (z[j] - mx);
        want += -(z[t[i]] - mx - log (sum));
    }
    cr_expect_float_eq (loss, want, 1e-4, "loss %f, by hand %f", loss, want);
    s_check ("dH", s_xent_loss, &c, c.H, dH, 15);
    s_check ("dE", s_xent_loss, &c, c.E, dE, 21);
}

Test (nn, gather_scatter_and_relu)
{
    float table[4 * 2] = { 1, 2, 3, 4, 5, 6, 7, 8 }, out[3 * 2];
    int32_t rows[3] = { 2, -1, 0 };
    nn_gather (table, 2, rows, 3, out);
    float want[6] = { 5, 6, 0, 0, 1, 2 };
    for (int i = 0; i < 6; i++)
        cr_expect_eq (out[i], want[i]);
    float dt[8] = { 0 }, dout[6] = { 1, 1, 9, 9, 2, 3 };
    nn_scatter_add (dt, 2, rows, 3, dout);
    float wantd[8] = { 2, 3, 0, 0, 1, 1, 0, 0 };
    for (int i = 0; i < 8; i++)
        cr_expect_eq (dt[i], wantd[i]);
    float x[4] = { -1, 2, 0, 3 }, dx[4] = { 1, 1, 1, 1 };
    nn_relu_fwd (x, 4);
    nn_relu_bwd (x, dx, 4);
    cr_expect_eq (x[0], 0);
    cr_expect_eq (dx[0], 0);
    cr_expect_eq (dx[1], 1);
    cr_expect_eq (dx[2], 0);
}

Test (nn, adam_first_step_moves_by_lr)
{
    //  With bias correction the first Adam step is lr * sign (g) (for |g| >> eps).
    adam_t opt = { 0.01f, 0.9f, 0.999f, 1e-8f, 0, 1 };
    float w[3] = { 1, 1, 1 }, g[3] = { 0.5f, -2, 0 }, m[3] = { 0 }, v[3] = { 0 };
    nn_adam (&opt, 1.0f, w, g, m, v, 3);
    cr_expect_float_eq (w[0], 0.99f, 1e-5);
    cr_expect_float_eq (w[1], 1.01f, 1e-5);
    cr_expect_float_eq (w[2], 1.0f, 1e-6);
    //  Lazy rows: untouched rows stay, touched rows take a first step each.
    float tw[3 * 2] = { 1, 1, 1, 1, 1, 1 }, tg[6] = { 1, 1, 1, 1, 1, 1 }, tm[6] = { 0 }, tv[6] = { 0 };
    int64_t steps[3] = { 0 };
    int32_t rows[1] = { 1 };
    nn_adam_rows (&opt, 1.0f, tw, tg, tm, tv, steps, 2, rows, 1);
    cr_expect_float_eq (tw[0], 1.0f, 1e-6);
    cr_expect_float_eq (tw[2], 0.99f, 1e-5);
    cr_expect_eq (steps[1], 1);
    cr_expect_eq (steps[0], 0);
    //  The gradients applied are zeroed; the untouched row's are not.
    cr_expect_eq (g[0], 0);
    cr_expect_eq (tg[2], 0);
    cr_expect_eq (tg[0], 1);
}
