/*  The packed catalogue scorer agrees with plain inner products within its bound, for
    any number of queries and catalogue sizes that do not fill the last block; the bound
    is not loose (the largest error seen is a fair share of it) and an all-zero item
    scores exactly 0. Every version of the kernel is checked: the one this CPU gets, then
    (where the CPU has them) AVX-512 with float queries, AVX2 and portable C, by turning
    the wider ones off. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "score.h"

static void
s_check_kernel (void)
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
                v[i] = ((float) rand_r (&seed) / RAND_MAX - 0.5f) * (float) (1 + i / (size_t) d % 3);   // norms vary
            for (int k = 0; n > 3 && k < d; k++)
                v[(size_t) 3 * d + k] = 0;   // item 3 is all zeros
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
                    float bound = score_table_bound (t, q + b * d);
                    double worst = 0;
                    for (uint32_t i = 0; i < n; i++) {
                        double want = 0;
                        for (int k = 0; k < d; k++)
                            want += (double) q[b * d + k] * v[(size_t) i * d + k];
                        double err = fabs (out[(size_t) b * ld + i] - want);
                        worst = err > worst ? err : worst;
                        cr_assert_leq (err, bound, "n %u d %d queries %u: query %u item %u off by %g (bound %g)", n, d,
                                       nq, b, i, err, bound);
                        if (i == 3)
                            cr_assert_eq (out[(size_t) b * ld + i], 0.0f);
                    }
                    //  Worst case: every value off by half a step, all the same way. Random
                    //  errors cancel, but over many items the largest comes within a
                    //  twentieth of it.
                    if (n >= 1000 && d == 64)
                        cr_expect_gt (worst, bound / 20, "n %u: the bound %g is loose (worst %g)", n, bound, worst);
                }
                cr_assert_eq (out[(size_t) nq * ld], 12345.0f);
                free (out);
            }
            score_table_destroy (&t);
            free (v);
        }
}

Test (score, agrees_with_inner_products_within_its_bound)
{
    unsetenv ("STRATA_SCAN_NO_VNNI");
    unsetenv ("STRATA_SCAN_NO_AVX512");
    unsetenv ("STRATA_SCAN_NO_AVX2");
    s_check_kernel ();
    setenv ("STRATA_SCAN_NO_VNNI", "1", 1);
    s_check_kernel ();
    setenv ("STRATA_SCAN_NO_AVX512", "1", 1);
    s_check_kernel ();
    setenv ("STRATA_SCAN_NO_AVX2", "1", 1);
    s_check_kernel ();
    unsetenv ("STRATA_SCAN_NO_VNNI");
    unsetenv ("STRATA_SCAN_NO_AVX512");
    unsetenv ("STRATA_SCAN_NO_AVX2");
}
