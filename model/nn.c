/*  nn: see nn.h. */
#include "nn.h"

#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

//  exp (x) for x <= 0, branch-free so that loops over it vectorise: x = n ln2 + r with
//  |r| <= ln2 / 2, exp (r) by a degree-6 polynomial (relative error < 3e-7), times 2^n
//  built in the exponent bits; below about -87 the result is 0 (expf would underflow
//  to a denormal). Arguments are logit differences, far from int32 overflow.
static inline float
s_exp_neg (float x)
{
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;   // round to nearest
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.16666666f + r * (0.041666668f + r * (0.008333334f + r * 0.0013888889f)))));
    int32_t e = (int32_t) n + 127;
    e &= -(int32_t) (e > 0);
    int32_t bits = e << 23;
    float scale;
    memcpy (&scale, &bits, sizeof scale);
    return p * scale;
}

void
nn_linear_fwd (const float *X, int n, int in, const float *W, const float *b, int out, float *Y)
{
    if (b)
        for (int i = 0; i < n; i++)
            memcpy (Y + (size_t) i * out, b, (size_t) out * sizeof *Y);
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, n, out, in, 1.0f, X, in, W, out, b ? 1.0f : 0.0f, Y, out);
}

void
nn_linear_bwd (const float *X, int n, int in, const float *W, int out, const float *dY, float *dX, float *dW,
               float *db)
{
    if (dX)
        cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, n, in, out, 1.0f, dY, out, W, out, 1.0f, dX, in);
    if (dW)
        cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, in, out, n, 1.0f, X, in, dY, out, 1.0f, dW, out);
    if (db)
        for (int i = 0; i < n; i++) {
            const float *dy = dY + (size_t) i * out;
            for (int k = 0; k < out; k++)
                db[k] += dy[k];
        }
}

void
nn_matmul_nt (const float *X, int n, int k, const float *W, int m, float *Y)
{
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, n, m, k, 1.0f, X, k, W, k, 0.0f, Y, m);
}

void
nn_matmul_nt_ld (const float *X, int ldx, int n, int k, const float *W, int ldw, int m, float *Y, int ldy)
{
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, n, m, k, 1.0f, X, ldx, W, ldw, 0.0f, Y, ldy);
}

void
nn_matvec (const float *W, int m, int k, const float *x, float *y)
{
    cblas_sgemv (CblasRowMajor, CblasNoTrans, m, k, 1.0f, W, k, x, 1, 0.0f, y, 1);
}

float
nn_dot (const float *a, const float *b, int n)
{
    return cblas_sdot (n, a, 1, b, 1);
}

void
nn_axpy (int n, float alpha, const float *x, float *y)
{
    cblas_saxpy (n, alpha, x, 1, y, 1);
}

void
nn_relu_fwd (float *X, size_t n)
{
    for (size_t i = 0; i < n; i++)
        X[i] = X[i] > 0 ? X[i] : 0;
}

void
nn_relu_bwd (const float *Y, float *dY, size_t n)
{
    //  A select rather than a conditional store, so that the loop vectorises.
    for (size_t i = 0; i < n; i++)
        dY[i] = Y[i] > 0 ? dY[i] : 0;
}

//  Sums in 8 explicit lanes: float reductions only vectorise when written so (without
//  -ffast-math, which this file must not use).
static inline float
s_sum8 (const float *x, int n)
{
    float lane[8] = { 0 };
    int k = 0;
    for (; k + 8 <= n; k += 8)
        for (int l = 0; l < 8; l++)
            lane[l] += x[k + l];
    float s = 0;
    for (; k < n; k++)
        s += x[k];
    for (int l = 0; l < 8; l++)
        s += lane[l];
    return s;
}

static inline float
s_sq_dev8 (const float *x, int n, float mu)
{
    float lane[8] = { 0 };
    int k = 0;
    for (; k + 8 <= n; k += 8)
        for (int l = 0; l < 8; l++)
            lane[l] += (x[k + l] - mu) * (x[k + l] - mu);
    float s = 0;
    for (; k < n; k++)
        s += (x[k] - mu) * (x[k] - mu);
    for (int l = 0; l < 8; l++)
        s += lane[l];
    return s;
}

void
nn_layernorm_fwd (const float *X, int n, int d, const float *g, const float *b, float *Y, float *mean, float *rstd)
{
    for (int i = 0; i < n; i++) {
        const float *x = X + (size_t) i * d;
        float *y = Y + (size_t) i * d;
        float mu = s_sum8 (x, d) / (float) d;
        float var = s_sq_dev8 (x, d, mu) / (float) d;
        float r = 1.0f / sqrtf (var + 1e-5f);
        mean[i] = mu;
        rstd[i] = r;
        for (int k = 0; k < d; k++)
            y[k] = (x[k] - mu) * r * g[k] + b[k];
    }
}

void
nn_layernorm_bwd (const float *X, int n, int d, const float *g, const float *mean, const float *rstd, const float *dY,
                  float *dX, float *dg, float *db)
{
    for (int i = 0; i < n; i++) {
        const float *x = X + (size_t) i * d, *dy = dY + (size_t) i * d;
        float mu = mean[i], r = rstd[i];
        //  xhat = (x - mu) r; y = xhat g + b
        //  dx = r (dxhat - mean (dxhat) - xhat mean (dxhat xhat)), dxhat = dy g
        double s1 = 0, s2 = 0;
        for (int k = 0; k < d; k++) {
            float xhat = (x[k] - mu) * r;
            float dxhat = dy[k] * g[k];
            s1 += dxhat;
            s2 += dxhat * xhat;
            if (dg)
                dg[k] += dy[k] * xhat;
            if (db)
                db[k] += dy[k];
        }
        if (!dX)
            continue;
        float m1 = (float) (s1 / d), m2 = (float) (s2 / d);
        float *dx = dX + (size_t) i * d;
        for (int k = 0; k < d; k++) {
            float xhat = (x[k] - mu) * r;
            dx[k] += r * (dy[k] * g[k] - m1 - xhat * m2);
        }
    }
}

void
nn_attention_fwd (const float *Q, const float *K, const float *V, int L, int d, const uint8_t *valid, float *P,
                  float *O)
{
    float scale = 1.0f / sqrtf ((float) d);
    //  Scores S = Q K' scale, then a masked row softmax in place.
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, L, L, d, scale, Q, d, K, d, 0.0f, P, L);
    for (int i = 0; i < L; i++) {
        float *p = P + (size_t) i * L;
        float mx = -INFINITY;
        for (int j = 0; j <= i; j++)
            if (!valid || valid[j])
                mx = p[j] > mx ? p[j] : mx;
        double sum = 0;
        for (int j = 0; j < L; j++) {
            if (j <= i && (!valid || valid[j]) && mx > -INFINITY) {
                p[j] = expf (p[j] - mx);
                sum += p[j];
            }
            else
                p[j] = 0;
        }
        if (sum > 0)
            for (int j = 0; j <= i; j++)
                p[j] = (float) (p[j] / sum);
    }
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, L, d, L, 1.0f, P, L, V, d, 0.0f, O, d);
}

//  Back through a row softmax P (rows x cols, rows ld apart; every column outside
//  holds P = 0): dS = P (dP - sum_j dP_j P_j), in place on dS (which holds dP, ld
//  apart too). Masked entries have P = 0 and stay 0.
static void
s_softmax_rows_bwd (const float *P, int rows, int cols, int ld, float *dS)
{
    for (int i = 0; i < rows; i++) {
        float *ds = dS + (size_t) i * ld;
        const float *p = P + (size_t) i * ld;
        double dot = 0;
        for (int j = 0; j < cols; j++)
            dot += ds[j] * p[j];
        for (int j = 0; j < cols; j++)
            ds[j] = p[j] * (ds[j] - (float) dot);
    }
}

void
nn_attention_bwd (const float *Q, const float *K, const float *V, int L, int d, const float *P, const float *dO,
                  float *dQ, float *dK, float *dV, float *work)
{
    float scale = 1.0f / sqrtf ((float) d);
    //  O = P V:  dV += P' dO,  dP = dO V'.
    cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, L, d, L, 1.0f, P, L, dO, d, 1.0f, dV, d);
    float *dS = work;
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, L, L, d, 1.0f, dO, d, V, d, 0.0f, dS, L);
    s_softmax_rows_bwd (P, L, L, L, dS);
    //  S = Q K' scale:  dQ += dS K scale,  dK += dS' Q scale.
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, L, d, L, scale, dS, L, K, d, 1.0f, dQ, d);
    cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, L, d, L, scale, dS, L, Q, d, 1.0f, dK, d);
}

//  Whether column a ranks above column b: higher score, then lower index.
static inline int
s_above (const float *z, int32_t a, int32_t b)
{
    return z[a] > z[b] || (z[a] == z[b] && a < b);
}

//  Restores the min-heap (the lowest-ranked column at the root) below slot i.
static void
s_sift_down (const float *z, int32_t *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, low = i;
        if (l < n && s_above (z, h[low], h[l]))
            low = l;
        if (r < n && s_above (z, h[low], h[r]))
            low = r;
        if (low == i)
            return;
        int32_t t = h[i];
        h[i] = h[low];
        h[low] = t;
        i = low;
    }
}

//  Order-preserving keys of scores: as unsigned integers they compare as the floats
//  do (-0 taken as +0, as the floats tie). A column's rank key appends the complement
//  of its index, so that one integer comparison orders by score, then lower index.
static inline uint32_t
s_score_key (float v)
{
    uint32_t b;
    v = v == 0 ? 0.0f : v;
    memcpy (&b, &v, sizeof b);
    return b ^ (b >> 31 ? 0xFFFFFFFFu : 0x80000000u);
}

static inline float
s_key_score (uint32_t b)
{
    b ^= b >> 31 ? 0x80000000u : 0xFFFFFFFFu;
    float v;
    memcpy (&v, &b, sizeof v);
    return v;
}

static inline uint64_t
s_rank_key (const float *z, int32_t j)
{
    return (uint64_t) s_score_key (z[j]) << 32 | (uint32_t) (UINT32_MAX - (uint32_t) j);
}

//  The k-th largest (k from 1) of a[0..n), k <= n, by quickselect; a is reordered so
//  that a[0..k) are the k largest. The partitions are branch-free (Lomuto with the
//  swap always done): the keys are in no order, so a branch on each would be a coin
//  toss.
static uint64_t
s_kth_largest (uint64_t *a, int n, int k)
{
    int lo = 0, hi = n, want = k - 1;
    for (;;) {
        uint64_t x = a[lo], y = a[lo + (hi - lo) / 2], w = a[hi - 1];
        uint64_t p = x > y ? (y > w ? y : (x > w ? w : x)) : (x > w ? x : (y > w ? w : y));
        //  [lo, i) above the pivot, then [i, e) equal to it, [e, hi) below.
        int i = lo;
        for (int j = lo; j < hi; j++) {
            uint64_t v = a[j];
            a[j] = a[i];
            a[i] = v;
            i += v > p;
        }
        if (want < i) {
            hi = i;
            continue;
        }
        int e = i;
        for (int j = i; j < hi; j++) {
            uint64_t v = a[j];
            a[j] = a[e];
            a[e] = v;
            e += v == p;
        }
        if (want < e)
            return p;
        lo = e;
    }
}

//  Sorts a[0..n) in descending order (tmp: n more), by a bottom-up merge whose merge
//  step does not branch on the keys.
static void
s_sort_keys (uint64_t *a, uint64_t *tmp, int n)
{
    uint64_t *src = a, *dst = tmp;
    for (int w = 1; w < n; w *= 2) {
        for (int lo = 0; lo < n; lo += 2 * w) {
            int mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n, i = lo, j = mid, o = lo;
            while (i < mid && j < hi) {
                uint64_t x = src[i], y = src[j];
                int t = x > y;
                dst[o++] = t ? x : y;
                i += t;
                j += 1 - t;
            }
            while (i < mid)
                dst[o++] = src[i++];
            while (j < hi)
                dst[o++] = src[j++];
        }
        uint64_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a)
        memcpy (a, src, (size_t) n * sizeof *a);
}

//  Adds column j to the min-heap top[0..*n) of at most k columns.
static inline void
s_heap_offer (const float *z, int32_t *top, int *n, int k, int32_t j)
{
    if (*n < k) {
        int i = (*n)++;
        top[i] = j;
        while (i > 0 && s_above (z, top[(i - 1) / 2], top[i])) {
            int32_t t = top[i];
            top[i] = top[(i - 1) / 2];
            top[(i - 1) / 2] = t;
            i = (i - 1) / 2;
        }
    }
    else if (s_above (z, j, top[0])) {
        top[0] = j;
        s_sift_down (z, top, *n, 0);
    }
}

//  Blocks of consecutive columns whose best scores bound the top k from below: at
//  least this many columns each, and at most this many blocks (on the stack).
#define TOP_K_BLOCK 64
#define TOP_K_BLOCKS 2048
//  Columns at or above the bar that are ranked in a buffer on the stack.
#define TOP_K_CANDIDATES 512

//  The largest of z[0..n), 4 lanes at a time in four accumulators (four chains of
//  dependent maxima run side by side).
typedef float v4f __attribute__ ((vector_size (4 * sizeof (float))));

static inline v4f
s_max4 (v4f a, v4f b)
{
#if defined(__SSE__)
    return (v4f) _mm_max_ps ((__m128) a, (__m128) b);   // a > b ? a : b, lane by lane
#else
    v4f r;
    for (int k = 0; k < 4; k++)
        r[k] = a[k] > b[k] ? a[k] : b[k];
    return r;
#endif
}

static inline float
s_max_run (const float *z, int n)
{
    v4f m0 = { -INFINITY, -INFINITY, -INFINITY, -INFINITY }, m1 = m0, m2 = m0, m3 = m0;
    int j;
    for (j = 0; j + 16 <= n; j += 16) {
        v4f a, b, c, d;
        memcpy (&a, z + j, sizeof a);
        memcpy (&b, z + j + 4, sizeof b);
        memcpy (&c, z + j + 8, sizeof c);
        memcpy (&d, z + j + 12, sizeof d);
        m0 = s_max4 (a, m0);
        m1 = s_max4 (b, m1);
        m2 = s_max4 (c, m2);
        m3 = s_max4 (d, m3);
    }
    m0 = s_max4 (s_max4 (m0, m1), s_max4 (m2, m3));
    float best = -INFINITY;
    for (int k = 0; k < 4; k++)
        best = m0[k] > best ? m0[k] : best;
    for (; j < n; j++)
        best = z[j] > best ? z[j] : best;
    return best;
}

//  Bit k set: z[k] >= bar, for k < n <= 4.
static inline int
s_at_least4 (const float *z, int n, float bar)
{
#if defined(__SSE__)
    if (n == 4)
        return _mm_movemask_ps (_mm_cmpge_ps (_mm_loadu_ps (z), _mm_set1_ps (bar)));
#endif
    int bits = 0;
    for (int k = 0; k < n; k++)
        bits |= (z[k] >= bar) << k;
    return bits;
}

//  Whether any of z[0..16) >= bar.
static inline bool
s_any_at_least16 (const float *z, float bar)
{
#if defined(__SSE__)
    __m128 b = _mm_set1_ps (bar);
    __m128 x = _mm_or_ps (_mm_or_ps (_mm_cmpge_ps (_mm_loadu_ps (z), b), _mm_cmpge_ps (_mm_loadu_ps (z + 4), b)),
                          _mm_or_ps (_mm_cmpge_ps (_mm_loadu_ps (z + 8), b), _mm_cmpge_ps (_mm_loadu_ps (z + 12), b)));
    return _mm_movemask_ps (x) != 0;
#else
    bool any = false;
    for (int k = 0; k < 16; k++)
        any |= z[k] >= bar;
    return any;
#endif
}

uint32_t
nn_at_least (const float *z, uint32_t m, float bar, uint32_t *out)
{
    //  Sixteen columns at a time are passed over with one test (most do not clear the
    //  bar), then four at a time.
    uint32_t n = 0;
    for (uint32_t j0 = 0; j0 < m; j0 += 4) {
        if (j0 % 16 == 0 && j0 + 16 <= m && !s_any_at_least16 (z + j0, bar)) {
            j0 += 12;
            continue;
        }
        for (int bits = s_at_least4 (z + j0, m - j0 < 4 ? (int) (m - j0) : 4, bar); bits; bits &= bits - 1)
            out[n++] = j0 + (uint32_t) __builtin_ctz ((unsigned) bits);
    }
    return n;
}

//  Whether any of p[0..n) is not zero.
static inline bool
s_any (const uint8_t *p, int n)
{
    uint64_t acc = 0;
    int j;
    for (j = 0; j + 8 <= n; j += 8) {
        uint64_t w;
        memcpy (&w, p + j, sizeof w);
        acc |= w;
    }
    for (; j < n; j++)
        acc |= p[j];
    return acc != 0;
}

//  The best eligible score of columns [lo, hi) (-inf: none).
static float
s_max_eligible (const float *z, int lo, int hi, int32_t skip, const uint8_t *exclude)
{
    float mx = -INFINITY;
    for (int j = lo; j < hi; j++)
        if (j != skip && (!exclude || !exclude[j]))
            mx = z[j] > mx ? z[j] : mx;
    return mx;
}

int
nn_top_k (const float *z, int m, int32_t skip, const uint8_t *exclude, int32_t *top, int k)
{
    //  A heap of the best k alone is O(m + insertions * log k), but insertions grow
    //  with m when the scores trend upwards along the row. So first a bar: with the
    //  columns cut into blocks, the k-th best block maximum over eligible columns is
    //  reached by at least k eligible columns, hence by every one of the top k. Only
    //  the blocks at or above the bar are looked at again.
    if (k <= 0 || m <= 0)
        return 0;
    int size = (m + TOP_K_BLOCKS - 1) / TOP_K_BLOCKS;
    size = size < TOP_K_BLOCK ? TOP_K_BLOCK : size;
    int nb = (m + size - 1) / size;
    float bmax[TOP_K_BLOCKS];
    uint64_t sel[TOP_K_BLOCKS];
    //  Each block's best: without a branch per column, unless the block holds a
    //  left-out column (few do: a user's history), found eight bytes of the mask at
    //  a time.
    for (int b = 0; b < nb; b++) {
        int lo = b * size, hi = lo + size < m ? lo + size : m;
        if ((skip >= lo && skip < hi) || (exclude && s_any (exclude + lo, hi - lo)))
            bmax[b] = s_max_eligible (z, lo, hi, skip, exclude);
        else
            bmax[b] = s_max_run (z + lo, hi - lo);
    }
    float bar = -INFINITY;
    if (k < nb) {
        for (int b = 0; b < nb; b++)
            sel[b] = (uint64_t) s_score_key (bmax[b]) << 32;
        bar = s_key_score ((uint32_t) (s_kth_largest (sel, nb, k) >> 32));
    }
    //  The columns at or above the bar, as rank keys: the best k of them by a
    //  quickselect, sorted.
    uint64_t cand[TOP_K_CANDIDATES], tmp[TOP_K_CANDIDATES];
    int nc = 0;
    for (int b = 0; b < nb; b++) {
        if (!(bmax[b] >= bar))
            continue;
        int hi = (b + 1) * size < m ? (b + 1) * size : m;
        for (int j0 = b * size; j0 < hi; j0 += 4)
            for (int bits = s_at_least4 (z + j0, hi - j0 < 4 ? hi - j0 : 4, bar); bits; bits &= bits - 1) {
                int j = j0 + __builtin_ctz ((unsigned) bits);
                if (j == skip || (exclude && exclude[j]))
                    continue;
                if (nc < TOP_K_CANDIDATES)
                    cand[nc] = s_rank_key (z, j);
                nc++;
            }
    }
    if (nc <= TOP_K_CANDIDATES) {
        int n = nc < k ? nc : k;
        if (nc > k)
            s_kth_largest (cand, nc, k);
        s_sort_keys (cand, tmp, n);
        for (int i = 0; i < n; i++)
            top[i] = (int32_t) (UINT32_MAX - (uint32_t) cand[i]);
        return n;
    }
    //  More than the buffer holds (a large k, or many ties at the bar): a heap of the
    //  best k, then a heap sort, the root (worst) to the end each time.
    int n = 0;
    for (int b = 0; b < nb; b++) {
        if (!(bmax[b] >= bar))
            continue;
        int hi = (b + 1) * size < m ? (b + 1) * size : m;
        for (int j = b * size; j < hi; j++)
            if (z[j] >= bar && j != skip && (!exclude || !exclude[j]))
                s_heap_offer (z, top, &n, k, j);
    }
    for (int end = n - 1; end > 0; end--) {
        int32_t t = top[0];
        top[0] = top[end];
        top[end] = t;
        s_sift_down (z, top, end, 0);
    }
    return n;
}

double
nn_softmax_xent (const float *H, int n, int d, const float *E, int m, const float *bias, const int32_t *targets,
                 float scale, float *dH, float *dE, float *work, int block, int32_t *top, int top_k)
{
    double loss = 0;
    for (int r0 = 0; r0 < n; r0 += block) {
        int rows = n - r0 < block ? n - r0 : block;
        const float *h = H + (size_t) r0 * d;
        //  logits[rows x m] = h E'
        cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, rows, m, d, 1.0f, h, d, E, d, 0.0f, work, m);
        for (int i = 0; i < rows; i++) {
            float *z = work + (size_t) i * m;
            int32_t t = targets[r0 + i];
            if (t < 0 || t >= m) {
                memset (z, 0, (size_t) m * sizeof *z);   // no gradient from a skipped row
                for (int p = 0; top && p < top_k; p++)
                    top[(size_t) (r0 + i) * top_k + (size_t) p] = -1;
                continue;
            }
            if (top) {
                int32_t *row = top + (size_t) (r0 + i) * top_k;
                for (int p = nn_top_k (z, m, t, NULL, row, top_k); p < top_k; p++)
                    row[p] = -1;
            }
            if (bias)
                for (int j = 0; j < m; j++)
                    z[j] += bias[j];
            //  Max and sum in 8 explicit lanes: float reductions only vectorise when
            //  written so (without -ffast-math, which this file must not use).
            float lane[8];
            int j;
            for (int k = 0; k < 8; k++)
                lane[k] = z[0];
            for (j = 0; j + 8 <= m; j += 8)
                for (int k = 0; k < 8; k++)
                    lane[k] = z[j + k] > lane[k] ? z[j + k] : lane[k];
            float mx = lane[0];
            for (int k = 1; k < 8; k++)
                mx = lane[k] > mx ? lane[k] : mx;
            for (; j < m; j++)
                mx = z[j] > mx ? z[j] : mx;
            for (j = 0; j < m; j++)
                z[j] = s_exp_neg (z[j] - mx);
            for (int k = 0; k < 8; k++)
                lane[k] = 0;
            for (j = 0; j + 8 <= m; j += 8)
                for (int k = 0; k < 8; k++)
                    lane[k] += z[j + k];
            double sum = 0;
            for (; j < m; j++)
                sum += z[j];
            for (int k = 0; k < 8; k++)
                sum += lane[k];
            loss += -(log (z[t] / sum));
            //  d loss / d logits = softmax - onehot, times scale.
            float inv = (float) (1.0 / sum) * scale;
            for (j = 0; j < m; j++)
                z[j] *= inv;
            z[t] -= scale;
        }
        //  dh += dlogits E ; dE += dlogits' h
        if (dH)
            cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, d, m, 1.0f, work, m, E, d, 1.0f,
                         dH + (size_t) r0 * d, d);
        if (dE)
            cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, m, d, rows, 1.0f, work, m, h, d, 1.0f, dE, d);
    }
    return loss;
}

void
nn_target_pool_fwd (const float *C, int n, const float *X, int L, int d, int lo, const int32_t *hi, float *A,
                    float *out)
{
    float scale = 1.0f / sqrtf ((float) d);
    //  Only the history columns some candidate reads, [lo, max hi], are multiplied (a
    //  short history in a batch of long ones is mostly padding).
    int end = lo - 1;
    for (int i = 0; i < n; i++)
        end = hi[i] > end ? hi[i] : end;
    end = end < L ? end : L - 1;
    if (end < lo) {
        memset (A, 0, (size_t) n * L * sizeof *A);
        memset (out, 0, (size_t) n * d * sizeof *out);
        return;
    }
    int w = end - lo + 1;
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, n, w, d, scale, C, d, X + (size_t) lo * d, d, 0.0f, A + lo,
                 L);
    for (int i = 0; i < n; i++) {
        float *a = A + (size_t) i * L;
        int top = hi[i] < L ? hi[i] : L - 1;
        float mx = -INFINITY;
        for (int j = lo; j <= top; j++)
            mx = a[j] > mx ? a[j] : mx;
        double sum = 0;
        for (int j = 0; j < L; j++) {
            if (j >= lo && j <= top) {
                a[j] = expf (a[j] - mx);
                sum += a[j];
            }
            else
                a[j] = 0;
        }
        for (int j = lo; j <= top; j++)
            a[j] = (float) (a[j] / sum);
    }
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, w, 1.0f, A + lo, L, X + (size_t) lo * d, d, 0.0f,
                 out, d);
}

void
nn_target_pool_bwd (const float *C, int n, const float *X, int L, int d, const float *A, const float *dout,
                    float *dC, float *dX, float *work)
{
    float scale = 1.0f / sqrtf ((float) d);
    //  Columns where every weight is 0 pass no gradient: only [c0, c1] is multiplied.
    int c0 = L, c1 = -1;
    for (int i = 0; i < n; i++) {
        const float *a = A + (size_t) i * L;
        for (int j = 0; j < c0; j++)
            if (a[j] != 0) {
                c0 = j;
                break;
            }
        for (int j = L - 1; j > c1; j--)
            if (a[j] != 0) {
                c1 = j;
                break;
            }
    }
    if (c1 < c0)
        return;
    int w = c1 - c0 + 1;
    const float *Ac = A + c0, *Xc = X + (size_t) c0 * d;
    float *dXc = dX + (size_t) c0 * d, *dS = work + c0;
    //  out = A X:  dX += A' dout,  dA = dout X'.
    cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, w, d, n, 1.0f, Ac, L, dout, d, 1.0f, dXc, d);
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, n, w, d, 1.0f, dout, d, Xc, d, 0.0f, dS, L);
    s_softmax_rows_bwd (Ac, n, w, L, dS);
    //  S = C X' scale:  dC += dS X scale,  dX += dS' C scale.
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, w, scale, dS, L, Xc, d, 1.0f, dC, d);
    cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, w, d, n, scale, dS, L, C, d, 1.0f, dXc, d);
}

double
nn_bce_logits (const float *z, const float *y, int n, float scale, float *dz)
{
    double loss = 0;
    for (int i = 0; i < n; i++) {
        //  -y log s (z) - (1 - y) log (1 - s (z)) = max (z, 0) - z y + log (1 + exp (-|z|))
        float a = fabsf (z[i]);
        loss += (z[i] > 0 ? z[i] : 0) - z[i] * y[i] + log1p (exp (-(double) a));
        if (dz) {
            float e = expf (-a), s = z[i] >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
            dz[i] = scale * (s - y[i]);
        }
    }
    return loss;
}

void
nn_gather (const float *table, int d, const int32_t *rows, int n, float *out)
{
    for (int i = 0; i < n; i++) {
        if (rows[i] < 0)
            memset (out + (size_t) i * d, 0, (size_t) d * sizeof *out);
        else
            memcpy (out + (size_t) i * d, table + (size_t) rows[i] * d, (size_t) d * sizeof *out);
    }
}

void
nn_scatter_add (float *dtable, int d, const int32_t *rows, int n, const float *dout)
{
    for (int i = 0; i < n; i++)
        if (rows[i] >= 0)
            cblas_saxpy (d, 1.0f, dout + (size_t) i * d, 1, dtable + (size_t) rows[i] * d, 1);
}

void
nn_adam (const adam_t *opt, float scale, float *w, float *g, float *m, float *v, size_t n)
{
    float b1 = opt->beta1, b2 = opt->beta2;
    float c1 = 1.0f - powf (b1, (float) opt->step), c2 = 1.0f - powf (b2, (float) opt->step);
    float lr = opt->lr * sqrtf (c2) / c1;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * scale + opt->weight_decay * w[i];
        g[i] = 0;
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        w[i] -= lr * m[i] / (sqrtf (v[i]) + opt->eps);
    }
}

void
nn_adam_rows (const adam_t *opt, float scale, float *w, float *g, float *m, float *v, int64_t *row_step, int d,
              const int32_t *rows, int n)
{
    float b1 = opt->beta1, b2 = opt->beta2, lr = 0;
    int64_t lr_step = -1;   // the step lr was computed for: rows touched together share it
    for (int r = 0; r < n; r++) {
        if (rows[r] < 0)
            continue;
        size_t off = (size_t) rows[r] * d;
        int64_t t = ++row_step[rows[r]];
        if (t != lr_step) {
            float c1 = 1.0f - powf (b1, (float) t), c2 = 1.0f - powf (b2, (float) t);
            lr = opt->lr * sqrtf (c2) / c1;
            lr_step = t;
        }
        for (int k = 0; k < d; k++) {
            float gi = g[off + k] * scale + opt->weight_decay * w[off + k];
            g[off + k] = 0;
            m[off + k] = b1 * m[off + k] + (1 - b1) * gi;
            v[off + k] = b2 * v[off + k] + (1 - b2) * gi * gi;
            w[off + k] -= lr * m[off + k] / (sqrtf (v[off + k]) + opt->eps);
        }
    }
}
