/*  The packed catalogue scorer agrees with plain inner products, for any number of
    queries and catalogue sizes that do not fill the last block. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "score.h"

Test (score, agrees_with_inner_products)
{
    uint32_t sizes[] = { 1, 15, 16, 17, 1000, 12101 };
    int dims[] = { 1, 7, 64 };
    uint32_t queries[] = { 1, 3, 4, 5, 9 };
    unsigned seed = 1;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
            uint32_t n = sizes[si];
            int d = dims[di];
            float *v = malloc ((size_t) n * d * sizeof *v), q[9 * 64];
            for (size_t i = 0; i < (size_t) n * d; i++)
                v[i] = (float) rand_r (&seed) / RAND_MAX - 0.5f;
            for (int i = 0; i < 9 * 64; i++)
                q[i] = (float) rand_r (&seed) / RAND_MAX - 0.5f;
            score_table_t *t = score_table_new (v, n, d);
            cr_assert_not_null (t);
            for (size_t qi = 0; qi < sizeof queries / sizeof queries[0]; qi++) {
                uint32_t nq = queries[qi], ld = n + (uint32_t) qi;   // rows of out may be longer
                float *out = malloc ((size_t) nq * ld * sizeof *out + sizeof (float));
                for (size_t i = 0; i <= (size_t) nq * ld; i++)
                    out[i] = 12345.0f;   // guards: nothing written past each row or the end
                score_table_run (t, q, nq, out, ld);
                for (uint32_t b = 0; b < nq; b++) {
                    for (uint32_t i = n; i < ld; i++)
                        cr_assert_eq (out[(size_t) b * ld + i], 12345.0f);
                    for (uint32_t i = 0; i < n; i++) {
                        double want = 0;
                        for (int k = 0; k < d; k++)
                            want += (double) q[b * d + k] * v[(size_t) i * d + k];
                        cr_assert_float_eq (out[(size_t) b * ld + i], want, 1e-4,
                                            "n %u d %d queries %u: query %u item %u", n, d, nq, b, i);
                    }
                }
                cr_assert_eq (out[(size_t) nq * ld], 12345.0f);
                free (out);
            }
            score_table_destroy (&t);
            free (v);
        }
}
