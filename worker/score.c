/*  score: see score.h. */
#include "score.h"

#include <math.h>
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
            float acc[4][LANES];
            _mm512_storeu_ps (acc[0], _mm512_mul_ps (a0, sc));
            _mm512_storeu_ps (acc[1], _mm512_mul_ps (a1, sc));
            _mm512_storeu_ps (acc[2], _mm512_mul_ps (a2, sc));
            _mm512_storeu_ps (acc[3], _mm512_mul_ps (a3, sc));
            uint32_t lanes = n - j * LANES < LANES ? n - j * LANES : LANES;
            for (int r = 0; r < 4; r++)
                memcpy (o + (size_t) r * ld + j * LANES, acc[r], lanes * sizeof (float));
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
            float acc[LANES];
            _mm512_storeu_ps (acc, _mm512_mul_ps (sum, _mm512_load_ps (scale + (size_t) j * LANES)));
            uint32_t lanes = n - j * LANES < LANES ? n - j * LANES : LANES;
            memcpy (o + j * LANES, acc, lanes * sizeof (float));
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
            float acc[LANES];
            _mm256_storeu_ps (acc, _mm256_mul_ps (_mm256_add_ps (lo, lo2), _mm256_loadu_ps (sc)));
            _mm256_storeu_ps (acc + 8, _mm256_mul_ps (_mm256_add_ps (hi, hi2), _mm256_loadu_ps (sc + 8)));
            uint32_t lanes = n - j * LANES < LANES ? n - j * LANES : LANES;
            memcpy (o + j * LANES, acc, lanes * sizeof (float));
        }
    }
}
#endif

static scan_fn *
s_scan_for_cpu (void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init ();
    if (__builtin_cpu_supports ("avx512f") && !getenv ("STRATA_SCAN_NO_AVX512"))
        return s_scan_avx512;
    if (__builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma") && !getenv ("STRATA_SCAN_NO_AVX2"))
        return s_scan_avx2;
#endif
    return s_scan_c;
}


struct _score_table_t {
    uint32_t n, blocks;
    int d;
    v16b *t;        // blocks x d: block j, dimension k is t[j * d + k], 16 items' codes
    v16 *scale;     // per block: its 16 items' scales
    float max_scale;
    scan_fn *scan;  // the kernel for this CPU
};

score_table_t *
score_table_new (const float *vectors, uint32_t n, int d)
{
    score_table_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->n = n;
    self->d = d;
    self->blocks = (n + LANES - 1) / LANES;
    self->scan = s_scan_for_cpu ();
    size_t blocks = self->blocks ? self->blocks : 1;
    self->t = aligned_alloc (sizeof (v16), ((blocks * (size_t) d * sizeof (v16b) + sizeof (v16) - 1) / sizeof (v16)) * sizeof (v16));
    self->scale = aligned_alloc (sizeof (v16), blocks * sizeof (v16));
    if (!self->t || !self->scale) {
        score_table_destroy (&self);
        return NULL;
    }
    memset (self->t, 0, blocks * (size_t) d * sizeof (v16b));
    memset (self->scale, 0, blocks * sizeof (v16));
    for (uint32_t i = 0; i < n; i++) {
        const float *v = vectors + (size_t) i * d;
        float top = 0;
        for (int k = 0; k < d; k++)
            top = fabsf (v[k]) > top ? fabsf (v[k]) : top;
        float scale = top / 127.0f;
        int8_t *block = (int8_t *) (self->t + (size_t) (i / LANES) * d);
        for (int k = 0; k < d; k++) {
            long c = scale > 0 ? lrintf (v[k] / scale) : 0;
            block[(size_t) k * LANES + i % LANES] = (int8_t) (c > 127 ? 127 : c < -127 ? -127 : c);
        }
        ((float *) &self->scale[i / LANES])[i % LANES] = scale;
        self->max_scale = scale > self->max_scale ? scale : self->max_scale;
    }
    return self;
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
    double l1 = 0;
    for (int k = 0; k < self->d; k++)
        l1 += fabsf (q[k]);
    double f = 0.5 + 2.0 * self->d * 127.0 * ldexp (1.0, -23);
    return (float) (f * self->max_scale * l1 * (1 + 1e-6));
}

void
score_table_run (const score_table_t *self, const float *queries, uint32_t nq, float *out, uint32_t ld)
{
    self->scan (self->t, (const float *) self->scale, self->blocks, self->n, self->d, queries, nq, out, ld);
}
