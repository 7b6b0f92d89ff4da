/*  score: see score.h. */
#include "score.h"

#include <stdlib.h>
#include <string.h>

#define LANES 16

typedef float v16 __attribute__ ((vector_size (LANES * sizeof (float))));

struct _score_table_t {
    uint32_t n, blocks;
    int d;
    v16 *t;   // blocks x d vectors: block j, dimension k is t[j * d + k]
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
    size_t bytes = (size_t) (self->blocks ? self->blocks : 1) * (size_t) d * sizeof (v16);
    self->t = aligned_alloc (sizeof (v16), bytes);
    if (!self->t) {
        free (self);
        return NULL;
    }
    memset (self->t, 0, bytes);
    for (uint32_t i = 0; i < n; i++) {
        float *block = (float *) (self->t + (size_t) (i / LANES) * d);
        for (int k = 0; k < d; k++)
            block[(size_t) k * LANES + i % LANES] = vectors[(size_t) i * d + k];
    }
    return self;
}

void
score_table_destroy (score_table_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free ((*self_p)->t);
    free (*self_p);
    *self_p = NULL;
}

static inline void
s_store (float *out, uint32_t i0, uint32_t n, v16 a)
{
    uint32_t lanes = n - i0 < LANES ? n - i0 : LANES;
    memcpy (out + i0, &a, lanes * sizeof (float));
}

//  The kernel: four queries at a time share each block's loads, then one at a time.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__ ((target_clones ("arch=x86-64-v4", "arch=x86-64-v3", "default"), optimize ("fp-contract=fast")))
#endif
void score_kernel (const v16 *t, uint32_t blocks, uint32_t n, int d, const float *q, uint32_t nq, float *out,
                   uint32_t ld);

void
score_kernel (const v16 *t, uint32_t blocks, uint32_t n, int d, const float *q, uint32_t nq, float *out, uint32_t ld)
{
    uint32_t q0 = 0;
    for (; q0 + 4 <= nq; q0 += 4) {
        const float *u0 = q + (size_t) q0 * d, *u1 = u0 + d, *u2 = u1 + d, *u3 = u2 + d;
        float *o0 = out + (size_t) q0 * ld, *o1 = o0 + ld, *o2 = o1 + ld, *o3 = o2 + ld;
        for (uint32_t j = 0; j < blocks; j++) {
            const v16 *b = t + (size_t) j * d;
            //  Two chains per query (even and odd dimensions): an add never waits for
            //  the one before it to finish.
            v16 a0 = { 0 }, a1 = { 0 }, a2 = { 0 }, a3 = { 0 }, c0 = { 0 }, c1 = { 0 }, c2 = { 0 }, c3 = { 0 };
            int k = 0;
            for (; k + 2 <= d; k += 2) {
                v16 x = b[k], y = b[k + 1];
                a0 += x * u0[k];
                a1 += x * u1[k];
                a2 += x * u2[k];
                a3 += x * u3[k];
                c0 += y * u0[k + 1];
                c1 += y * u1[k + 1];
                c2 += y * u2[k + 1];
                c3 += y * u3[k + 1];
            }
            for (; k < d; k++) {
                v16 x = b[k];
                a0 += x * u0[k];
                a1 += x * u1[k];
                a2 += x * u2[k];
                a3 += x * u3[k];
            }
            a0 += c0;
            a1 += c1;
            a2 += c2;
            a3 += c3;
            s_store (o0, j * LANES, n, a0);
            s_store (o1, j * LANES, n, a1);
            s_store (o2, j * LANES, n, a2);
            s_store (o3, j * LANES, n, a3);
        }
    }
    for (; q0 < nq; q0++) {
        const float *u = q + (size_t) q0 * d;
        float *o = out + (size_t) q0 * ld;
        for (uint32_t j = 0; j < blocks; j++) {
            const v16 *b = t + (size_t) j * d;
            v16 a = { 0 }, c = { 0 }, e = { 0 }, f = { 0 };
            int k = 0;
            for (; k + 4 <= d; k += 4) {   // four chains: the adds do not wait on each other
                a += b[k] * u[k];
                c += b[k + 1] * u[k + 1];
                e += b[k + 2] * u[k + 2];
                f += b[k + 3] * u[k + 3];
            }
            for (; k < d; k++)
                a += b[k] * u[k];
            a += e;
            c += f;
            s_store (o, j * LANES, n, a + c);
        }
    }
}

uint32_t
score_table_size (const score_table_t *self)
{
    return self->n;
}

void
score_table_run (const score_table_t *self, const float *queries, uint32_t nq, float *out, uint32_t ld)
{
    score_kernel (self->t, self->blocks, self->n, self->d, queries, nq, out, ld);
}
