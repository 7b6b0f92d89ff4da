/*  score: see score.h. */
#include "score.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define LANES 16

typedef float v16 __attribute__ ((vector_size (LANES * sizeof (float))));
typedef int8_t v16b __attribute__ ((vector_size (LANES)));

//  The scan: for each query and each block of 16 items, item l's sum over k of its code
//  times u[k], times its scale. Three versions, chosen once by the CPU: AVX-512 (codes
//  widened to 16 floats in two instructions), AVX2 + FMA, and portable C (also used
//  when STRATA_SCAN_NO_AVX512 / STRATA_SCAN_NO_AVX2 are set, which is how the tests
//  check every version against the others).
typedef void (scan_fn) (const v16b *t, const float *scale, uint32_t blocks, uint32_t n, int d, const float *q,
                        uint32_t nq, float *out, uint32_t ld);

static inline void
s_store_scaled (float *out, uint32_t i0, uint32_t n, const float *acc, const float *scale)
{
    uint32_t lanes = n - i0 < LANES ? n - i0 : LANES;
    for (uint32_t l = 0; l < lanes; l++)
        out[i0 + l] = acc[l] * scale[l];
}

static void
s_scan_c (const v16b *t, const float *scale, uint32_t blocks, uint32_t n, int d, const float *q, uint32_t nq,
          float *out, uint32_t ld)
{
    for (uint32_t b = 0; b < nq; b++) {
        const float *u = q + (size_t) b * d;
        for (uint32_t j = 0; j < blocks; j++) {
            const int8_t *c = (const int8_t *) (t + (size_t) j * d);
            float acc[LANES] = { 0 };
            for (int k = 0; k < d; k++)
                for (int l = 0; l < LANES; l++)
                    acc[l] += (float) c[k * LANES + l] * u[k];
            s_store_scaled (out + (size_t) b * ld, j * LANES, n, acc, scale + (size_t) j * LANES);
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

//  The lanes of block j that hold items (all 16 but in the last block).
static inline __mmask16
s_lanes (uint32_t n, uint32_t j)
{
    uint32_t lanes = n - j * LANES < LANES ? n - j * LANES : LANES;
    return (__mmask16) ((1u << lanes) - 1);
}

__attribute__ ((target ("avx512f"))) static void
s_scan_avx512 (const v16b *t, const float *scale, uint32_t blocks, uint32_t n, int d, const float *q, uint32_t nq,
               float *out, uint32_t ld)
{
    uint32_t q0 = 0;
    //  Four queries at a time share each block's loads and widening.
    for (; q0 + 4 <= nq; q0 += 4) {
        const float *u0 = q + (size_t) q0 * d, *u1 = u0 + d, *u2 = u1 + d, *u3 = u2 + d;
        float *o = out + (size_t) q0 * ld;
        for (uint32_t j = 0; j < blocks; j++) {
            const __m128i *b = (const __m128i *) (t + (size_t) j * d);
            __m512 a0 = _mm512_setzero_ps (), a1 = a0, a2 = a0, a3 = a0;
            for (int k = 0; k < d; k++) {
                __m512 x = _mm512_cvtepi32_ps (_mm512_cvtepi8_epi32 (_mm_load_si128 (b + k)));
                a0 = _mm512_fmadd_ps (x, _mm512_set1_ps (u0[k]), a0);
                a1 = _mm512_fmadd_ps (x, _mm512_set1_ps (u1[k]), a1);
                a2 = _mm512_fmadd_ps (x, _mm512_set1_ps (u2[k]), a2);
                a3 = _mm512_fmadd_ps (x, _mm512_set1_ps (u3[k]), a3);
            }
            __m512 sc = _mm512_load_ps (scale + (size_t) j * LANES);
            __mmask16 lanes = s_lanes (n, j);
            _mm512_mask_storeu_ps (o + j * LANES, lanes, _mm512_mul_ps (a0, sc));
            _mm512_mask_storeu_ps (o + ld + j * LANES, lanes, _mm512_mul_ps (a1, sc));
            _mm512_mask_storeu_ps (o + 2 * (size_t) ld + j * LANES, lanes, _mm512_mul_ps (a2, sc));
            _mm512_mask_storeu_ps (o + 3 * (size_t) ld + j * LANES, lanes, _mm512_mul_ps (a3, sc));
        }
    }
    for (; q0 < nq; q0++) {
        const float *u = q + (size_t) q0 * d;
        float *o = out + (size_t) q0 * ld;
        for (uint32_t j = 0; j < blocks; j++) {
            const __m128i *b = (const __m128i *) (t + (size_t) j * d);
            //  Four chains: the adds do not wait on each other.
            __m512 a = _mm512_setzero_ps (), c = a, e = a, f = a;
            int k = 0;
            for (; k + 4 <= d; k += 4) {
                a = _mm512_fmadd_ps (_mm512_cvtepi32_ps (_mm512_cvtepi8_epi32 (_mm_load_si128 (b + k))),
                                     _mm512_set1_ps (u[k]), a);
                c = _mm512_fmadd_ps (_mm512_cvtepi32_ps (_mm512_cvtepi8_epi32 (_mm_load_si128 (b + k + 1))),
                                     _mm512_set1_ps (u[k + 1]), c);
                e = _mm512_fmadd_ps (_mm512_cvtepi32_ps (_mm512_cvtepi8_epi32 (_mm_load_si128 (b + k + 2))),
                                     _mm512_set1_ps (u[k + 2]), e);
                f = _mm512_fmadd_ps (_mm512_cvtepi32_ps (_mm512_cvtepi8_epi32 (_mm_load_si128 (b + k + 3))),
                                     _mm512_set1_ps (u[k + 3]), f);
            }
            for (; k < d; k++)
                a = _mm512_fmadd_ps (_mm512_cvtepi32_ps (_mm512_cvtepi8_epi32 (_mm_load_si128 (b + k))),
                                     _mm512_set1_ps (u[k]), a);
            __m512 sum = _mm512_add_ps (_mm512_add_ps (a, e), _mm512_add_ps (c, f));
            _mm512_mask_storeu_ps (o + j * LANES, s_lanes (n, j), _mm512_mul_ps (sum, _mm512_load_ps (scale + (size_t) j * LANES)));
        }
    }
}

__attribute__ ((target ("avx2,fma"))) static void
s_scan_avx2 (const v16b *t, const float *scale, uint32_t blocks, uint32_t n, int d, const float *q, uint32_t nq,
             float *out, uint32_t ld)
{
    for (uint32_t b = 0; b < nq; b++) {
        const float *u = q + (size_t) b * d;
        float *o = out + (size_t) b * ld;
        for (uint32_t j = 0; j < blocks; j++) {
            const int8_t *c = (const int8_t *) (t + (size_t) j * d);
            //  Items 0-7 and 8-15 of the block, two chains each.
            __m256 lo = _mm256_setzero_ps (), hi = lo, lo2 = lo, hi2 = lo;
            int k = 0;
            for (; k + 2 <= d; k += 2) {
                __m256 x = _mm256_set1_ps (u[k]), y = _mm256_set1_ps (u[k + 1]);
                const int8_t *c0 = c + (size_t) k * LANES, *c1 = c0 + LANES;
                lo = _mm256_fmadd_ps (_mm256_cvtepi32_ps (_mm256_cvtepi8_epi32 (_mm_loadl_epi64 ((const __m128i *) c0))), x, lo);
                hi = _mm256_fmadd_ps (_mm256_cvtepi32_ps (_mm256_cvtepi8_epi32 (_mm_loadl_epi64 ((const __m128i *) (c0 + 8)))), x, hi);
                lo2 = _mm256_fmadd_ps (_mm256_cvtepi32_ps (_mm256_cvtepi8_epi32 (_mm_loadl_epi64 ((const __m128i *) c1))), y, lo2);
                hi2 = _mm256_fmadd_ps (_mm256_cvtepi32_ps (_mm256_cvtepi8_epi32 (_mm_loadl_epi64 ((const __m128i *) (c1 + 8)))), y, hi2);
            }
            for (; k < d; k++) {
                __m256 x = _mm256_set1_ps (u[k]);
                const int8_t *c0 = c + (size_t) k * LANES;
                lo = _mm256_fmadd_ps (_mm256_cvtepi32_ps (_mm256_cvtepi8_epi32 (_mm_loadl_epi64 ((const __m128i *) c0))), x, lo);
                hi = _mm256_fmadd_ps (_mm256_cvtepi32_ps (_mm256_cvtepi8_epi32 (_mm_loadl_epi64 ((const __m128i *) (c0 + 8)))), x, hi);
            }
            const float *sc = scale + (size_t) j * LANES;
            uint32_t lanes = n - j * LANES < LANES ? n - j * LANES : LANES;
            float acc[LANES], *to = lanes == LANES ? o + j * LANES : acc;   // the last block: through acc
            _mm256_storeu_ps (to, _mm256_mul_ps (_mm256_add_ps (lo, lo2), _mm256_loadu_ps (sc)));
            _mm256_storeu_ps (to + 8, _mm256_mul_ps (_mm256_add_ps (hi, hi2), _mm256_loadu_ps (sc + 8)));
            if (to == acc)
                memcpy (o + j * LANES, acc, lanes * sizeof (float));
        }
    }
}
//  AVX-512 VNNI: the query too in 8 bits (u_k = its code p_k times its scale sq), and
//  the table in the layout vpdpbusd reads: per block, groups of 4 dimensions, 64 bytes
//  each (item l's 4 codes in lane l), every code stored plus 128 (unsigned). One
//  instruction adds 4 products for 16 items: sum_k (c_ik + 128) p_k = sum_k c_ik p_k +
//  128 sum_k p_k, exact in 32-bit integers; the second term, the same for every item, is
//  taken off before scaling by s_i * sq.
#define VNNI_MAX_DIM 512
#define VNNI_QUERIES 4

typedef struct {
    int32_t groups[VNNI_MAX_DIM / 4];   // the codes p_k, 4 to an int
    float offset;                       // 128 * sum_k p_k
    float scale;                        // sq
} vnni_query_t;

static void
s_vnni_query (const float *u, int d, vnni_query_t *out)
{
    float top = 0;
    for (int k = 0; k < d; k++)
        top = fabsf (u[k]) > top ? fabsf (u[k]) : top;
    out->scale = top / 127.0f;
    int8_t *p = (int8_t *) out->groups;
    int sum = 0, d4 = (d + 3) & ~3;
    for (int k = 0; k < d4; k++) {
        long c = k < d && out->scale > 0 ? lrintf (u[k] / out->scale) : 0;
        p[k] = (int8_t) (c > 127 ? 127 : c < -127 ? -127 : c);
        sum += p[k];
    }
    out->offset = 128.0f * (float) sum;
}

//  A block's 16 scores, (acc - offset) * s_i * sq, into o (the lanes that hold items).
__attribute__ ((target ("avx512f"))) static inline void
s_vnni_store (float *o, __mmask16 lanes, __m512i acc, __m512 sc, const vnni_query_t *q)
{
    __m512 v = _mm512_mul_ps (_mm512_sub_ps (_mm512_cvtepi32_ps (acc), _mm512_set1_ps (q->offset)),
                              _mm512_mul_ps (sc, _mm512_set1_ps (q->scale)));
    _mm512_mask_storeu_ps (o, lanes, v);
}

__attribute__ ((target ("avx512f,avx512vnni"))) static void
s_scan_vnni (const v16b *t, const float *scale, uint32_t blocks, uint32_t n, int d, const float *q, uint32_t nq,
             float *out, uint32_t ld)
{
    int g4 = (d + 3) / 4;   // 64-byte groups per block
    vnni_query_t qs[VNNI_QUERIES];
    for (uint32_t q0 = 0; q0 < nq; q0 += VNNI_QUERIES) {
        uint32_t m = nq - q0 < VNNI_QUERIES ? nq - q0 : VNNI_QUERIES;
        for (uint32_t r = 0; r < m; r++)
            s_vnni_query (q + (size_t) (q0 + r) * d, d, &qs[r]);
        for (uint32_t j = 0; j < blocks; j++) {
            const __m512i *b = (const __m512i *) (t + (size_t) j * g4 * 4);
            __m512 sc = _mm512_load_ps (scale + (size_t) j * LANES);
            __mmask16 lanes = s_lanes (n, j);
            if (m == VNNI_QUERIES) {
                __m512i a0 = _mm512_setzero_si512 (), a1 = a0, a2 = a0, a3 = a0;
                for (int g = 0; g < g4; g++) {
                    __m512i x = _mm512_load_si512 (b + g);
                    a0 = _mm512_dpbusd_epi32 (a0, x, _mm512_set1_epi32 (qs[0].groups[g]));
                    a1 = _mm512_dpbusd_epi32 (a1, x, _mm512_set1_epi32 (qs[1].groups[g]));
                    a2 = _mm512_dpbusd_epi32 (a2, x, _mm512_set1_epi32 (qs[2].groups[g]));
                    a3 = _mm512_dpbusd_epi32 (a3, x, _mm512_set1_epi32 (qs[3].groups[g]));
                }
                __m512i acc[VNNI_QUERIES] = { a0, a1, a2, a3 };
                for (uint32_t r = 0; r < m; r++)
                    s_vnni_store (out + (size_t) (q0 + r) * ld + j * LANES, lanes, acc[r], sc, &qs[r]);
                continue;
            }
            for (uint32_t r = 0; r < m; r++) {
                //  Four chains: the adds do not wait on each other.
                __m512i a = _mm512_setzero_si512 (), c = a, e = a, f = a;
                int g = 0;
                for (; g + 4 <= g4; g += 4) {
                    a = _mm512_dpbusd_epi32 (a, _mm512_load_si512 (b + g), _mm512_set1_epi32 (qs[r].groups[g]));
                    c = _mm512_dpbusd_epi32 (c, _mm512_load_si512 (b + g + 1), _mm512_set1_epi32 (qs[r].groups[g + 1]));
                    e = _mm512_dpbusd_epi32 (e, _mm512_load_si512 (b + g + 2), _mm512_set1_epi32 (qs[r].groups[g + 2]));
                    f = _mm512_dpbusd_epi32 (f, _mm512_load_si512 (b + g + 3), _mm512_set1_epi32 (qs[r].groups[g + 3]));
                }
                for (; g < g4; g++)
                    a = _mm512_dpbusd_epi32 (a, _mm512_load_si512 (b + g), _mm512_set1_epi32 (qs[r].groups[g]));
                __m512i sum = _mm512_add_epi32 (_mm512_add_epi32 (a, c), _mm512_add_epi32 (e, f));
                s_vnni_store (out + (size_t) (q0 + r) * ld + j * LANES, lanes, sum, sc, &qs[r]);
            }
        }
    }
}
#endif

static scan_fn *
s_scan_for_cpu (int d)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init ();
    if (__builtin_cpu_supports ("avx512vnni") && d <= VNNI_MAX_DIM && !getenv ("STRATA_SCAN_NO_VNNI"))
        return s_scan_vnni;
    if (__builtin_cpu_supports ("avx512f") && !getenv ("STRATA_SCAN_NO_AVX512"))
        return s_scan_avx512;
    if (__builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma") && !getenv ("STRATA_SCAN_NO_AVX2"))
        return s_scan_avx2;
#else
    (void) d;
#endif
    return s_scan_c;
}


struct _score_table_t {
    uint32_t n, blocks;
    uint32_t cap;     // blocks allocated (score_table_append grows them)
    int d;
    v16b *t;          // the codes: blocks x d, block j, dimension k is t[j * d + k], 16 items'
                      // codes; or for the VNNI kernel, blocks x groups of 4 dimensions (see there)
    v16 *scale;       // per block: its 16 items' scales
    float max_scale;
    float max_l1;     // VNNI: the largest s_i * sum_k |c_ik|, which bounds the query's rounding
    bool vnni;
    scan_fn *scan;    // the kernel for this CPU
};

//  A block's entries (of 16 codes) in t: one per dimension, or for VNNI, dimensions in
//  groups of 4 with the last group padded.
static int
s_block_dims (const score_table_t *self)
{
    return self->vnni ? (self->d + 3) & ~3 : self->d;
}

//  Room for cap blocks, the new ones empty (every code 0, stored as 128 for VNNI, and
//  every scale 0: items that score 0). 0, or STRATA_ENOMEM (the table as it was).
static int
s_reserve (score_table_t *self, uint32_t cap)
{
    if (cap <= self->cap && self->t)
        return 0;
    cap = cap ? cap : 1;
    size_t dims = (size_t) s_block_dims (self), bytes = (size_t) cap * dims * sizeof (v16b),
           had = (size_t) self->cap * dims * sizeof (v16b);
    v16b *t = aligned_alloc (sizeof (v16), (bytes + sizeof (v16) - 1) / sizeof (v16) * sizeof (v16));
    v16 *scale = aligned_alloc (sizeof (v16), (size_t) cap * sizeof (v16));
    if (!t || !scale) {
        free (t);
        free (scale);
        return STRATA_ENOMEM;
    }
    if (self->t) {
        memcpy (t, self->t, had);
        memcpy (scale, self->scale, (size_t) self->cap * sizeof (v16));
    }
    memset ((uint8_t *) t + had, self->vnni ? 128 : 0, bytes - had);
    memset (scale + self->cap, 0, (size_t) (cap - self->cap) * sizeof (v16));
    free (self->t);
    free (self->scale);
    self->t = t;
    self->scale = scale;
    self->cap = cap;
    return 0;
}

//  Item i's codes and scale from its d floats v.
static void
s_pack (score_table_t *self, uint32_t i, const float *v)
{
    int d = self->d, dims = s_block_dims (self);
    float top = 0;
    for (int k = 0; k < d; k++)
        top = fabsf (v[k]) > top ? fabsf (v[k]) : top;
    float scale = top / 127.0f;
    int8_t *block = (int8_t *) (self->t + (size_t) (i / LANES) * dims);
    long l1 = 0;
    for (int k = 0; k < d; k++) {
        long c = scale > 0 ? lrintf (v[k] / scale) : 0;
        c = c > 127 ? 127 : c < -127 ? -127 : c;
        l1 += labs (c);
        if (self->vnni)
            ((uint8_t *) block)[(size_t) (k / 4) * 64 + (i % LANES) * 4 + k % 4] = (uint8_t) (c + 128);
        else
            block[(size_t) k * LANES + i % LANES] = (int8_t) c;
    }
    ((float *) &self->scale[i / LANES])[i % LANES] = scale;
    self->max_scale = scale > self->max_scale ? scale : self->max_scale;
    self->max_l1 = scale * (float) l1 > self->max_l1 ? scale * (float) l1 : self->max_l1;
}

score_table_t *
score_table_new (const float *vectors, uint32_t n, int d)
{
    return score_table_new_rows (vectors, NULL, n, d);
}

score_table_t *
score_table_new_rows (const float *vectors, const int64_t *rows, uint32_t n, int d)
{
    score_table_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->n = n;
    self->d = d;
    self->blocks = (n + LANES - 1) / LANES;
    self->scan = s_scan_for_cpu (d);
#if defined(__x86_64__) && defined(__GNUC__)
    self->vnni = self->scan == s_scan_vnni;
#endif
    if (s_reserve (self, self->blocks) < 0) {
        score_table_destroy (&self);
        return NULL;
    }
    for (uint32_t i = 0; i < n; i++)
        if (!rows || rows[i] >= 0)   // else zeros: codes 0 (stored as such), scale 0
            s_pack (self, i, vectors + (size_t) (rows ? (uint64_t) rows[i] : i) * d);
    return self;
}

int
score_table_append (score_table_t *self, const float *vectors, uint32_t n)
{
    if (n <= self->n)
        return 0;
    uint32_t blocks = (n + LANES - 1) / LANES;
    int rc = blocks > self->cap
                 ? s_reserve (self, blocks > self->cap + self->cap / 2 ? blocks : self->cap + self->cap / 2)
                 : 0;
    if (rc < 0)
        return rc;
    for (uint32_t i = self->n; i < n; i++)
        s_pack (self, i, vectors + (size_t) i * self->d);
    self->n = n;
    self->blocks = blocks;
    return 0;
}

void
score_table_set (score_table_t *self, uint32_t i, const float *v)
{
    if (i < self->n)
        s_pack (self, i, v);
}

void
score_table_destroy (score_table_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free ((*self_p)->t);
    free ((*self_p)->scale);
    free (*self_p);
    *self_p = NULL;
}

uint32_t
score_table_size (const score_table_t *self)
{
    return self->n;
}

float
score_table_bound (const score_table_t *self, const float *q)
{
    //  Each value is off by at most half its item's scale: at most max_scale / 2 * |q|_1
    //  in all. Then the sum's rounding: d products of codes (|c| <= 127) and query
    //  values, added in float, err by less than d * 2^-23 of 127 * max_scale * |q|_1;
    //  twice that covers the exact score's own rounding.
    double l1 = 0, top = 0;
    for (int k = 0; k < self->d; k++) {
        l1 += fabsf (q[k]);
        top = fabsf (q[k]) > top ? fabsf (q[k]) : top;
    }
    double f = 0.5 + 2.0 * self->d * 127.0 * ldexp (1.0, -23);
    double bound = f * self->max_scale * l1;
    if (self->vnni) {
        //  The query's values too are off by at most half its scale sq each: at most
        //  s_i * sum_k |c_ik| * sq / 2 for item i. The integer sums are exact; their
        //  scaling rounds three times, each within 2^-24 of a score no larger than
        //  max_scale * 127 * (|q|_1 + d * sq / 2).
        double sq = top / 127.0;
        bound += self->max_l1 * sq / 2 + 3.0 * ldexp (1.0, -24) * self->max_scale * 127.0 * (l1 + self->d * sq / 2);
    }
    return (float) (bound * (1 + 1e-6));
}

void
score_table_run (const score_table_t *self, const float *queries, uint32_t nq, float *out, uint32_t ld)
{
    self->scan (self->t, (const float *) self->scale, self->blocks, self->n, self->d, queries, nq, out, ld);
}

void
score_table_run_range (const score_table_t *self, const float *query, uint32_t first, uint32_t n, float *out)
{
    if (!n || first % LANES || first >= self->n)
        return;
    n = n < self->n - first ? n : self->n - first;
    uint32_t block = first / LANES;
    self->scan (self->t + (size_t) block * (size_t) s_block_dims (self), (const float *) (self->scale + block),
                (n + LANES - 1) / LANES, n, self->d, query, 1, out, n);
}
