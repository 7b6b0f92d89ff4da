/*  The packed catalogue scorer agrees with plain inner products within its bound, for
    any number of queries and catalogue sizes that do not fill the last block; the bound
    is not loose (the largest error seen is a fair share of it) and an all-zero item
    scores exactly 0; a table of runs of rows scores each run alone. Every version of
    the kernel is checked: the one this CPU gets, then
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

static void
s_check_runs (void)
{
    //  A table of gathered rows with zero rows between runs (as the approximate index
    //  lays out its cells): each run scored alone agrees with the exact inner products
    //  within the bound, writes nothing past its end, and the zero rows score 0.
    enum { N = 70, D = 64 };
    unsigned seed = 5;
    float *v = malloc ((size_t) N * D * sizeof *v), q[D];
    for (size_t i = 0; i < (size_t) N * D; i++)
        v[i] = (float) rand_r (&seed) / RAND_MAX - 0.5f;
    for (int k = 0; k < D; k++)
        q[k] = (float) rand_r (&seed) / RAND_MAX - 0.5f;
    //  Runs of 21, 16, 1 and 32 items (of v, backwards), each from a block of its own.
    uint32_t lens[] = { 21, 16, 1, 32 }, firsts[4], rows = 0;
    int64_t map[160];
    int64_t next = N - 1;
    for (int r = 0; r < 4; r++) {
        firsts[r] = rows;
        for (uint32_t i = 0; i < (lens[r] + 15) / 16 * 16; i++)
            map[rows++] = i < lens[r] ? next-- : -1;
    }
    score_table_t *t = score_table_new_rows (v, map, rows, D);
    cr_assert_not_null (t);
    cr_assert_eq (score_table_size (t), rows);
    float bound = score_table_bound (t, q), out[33];
    for (int r = 0; r < 4; r++) {
        for (int i = 0; i < 33; i++)
            out[i] = 12345.0f;
        score_table_run_range (t, q, firsts[r], lens[r], out);
        for (uint32_t i = 0; i < lens[r]; i++) {
            const float *x = v + (size_t) map[firsts[r] + i] * D;
            double want = 0;
            for (int k = 0; k < D; k++)
                want += (double) q[k] * x[k];
            cr_assert_leq (fabs (out[i] - want), bound, "run %d row %u", r, i);
        }
        cr_assert_eq (out[lens[r]], 12345.0f, "run %d: written past its end", r);
    }
    //  A zero row, scored as a run of its own block.
    score_table_run_range (t, q, firsts[2], 16, out);
    for (int i = 1; i < 16; i++)
        cr_assert_eq (out[i], 0.0f, "padding row %d scores %g", i, (double) out[i]);
    score_table_destroy (&t);
    free (v);
}

static void
s_check_append (void)
{
    //  A table of 5 items grown to 1,000 in steps that end inside blocks and cross
    //  several (the room grows as it goes), larger items last (the bound follows them);
    //  then item 2 changed and packed again. After each step every item scores within
    //  the bound, as the table built from scratch does, and nothing is written past the
    //  rows it holds.
    enum { N = 1000, D = 64 };
    unsigned seed = 9;
    float *v = malloc ((size_t) N * D * sizeof *v), q[D], *out = malloc ((N + 1) * sizeof *out);
    for (size_t i = 0; i < (size_t) N * D; i++)
        v[i] = ((float) rand_r (&seed) / RAND_MAX - 0.5f) * (float) (1 + i / (D * 100));
    for (int k = 0; k < D; k++)
        q[k] = (float) rand_r (&seed) / RAND_MAX - 0.5f;
    score_table_t *t = score_table_new (v, 5, D);
    cr_assert_not_null (t);
    uint32_t steps[] = { 5, 6, 16, 17, 40, 333, 999, 1000 };
    for (size_t s = 0; s <= sizeof steps / sizeof steps[0]; s++) {
        uint32_t n = s < sizeof steps / sizeof steps[0] ? steps[s] : N;
        if (s < sizeof steps / sizeof steps[0])
            cr_assert_eq (score_table_append (t, v, n), 0);
        else {
            for (int k = 0; k < D; k++)
                v[2 * D + k] = -3.0f * v[2 * D + k];   // item 2 changes
            score_table_set (t, 2, v + 2 * D);
        }
        cr_assert_eq (score_table_size (t), n);
        score_table_t *whole = score_table_new (v, n, D);
        cr_assert_not_null (whole);
        float bound = score_table_bound (t, q);
        cr_assert_geq (bound, score_table_bound (whole, q), "step %zu: the bound does not cover the items added", s);
        for (uint32_t i = 0; i <= n; i++)
            out[i] = 12345.0f;
        score_table_run (t, q, 1, out, n);
        cr_assert_eq (out[n], 12345.0f, "step %zu: written past the rows held", s);
        for (uint32_t i = 0; i < n; i++) {
            double want = 0;
            for (int k = 0; k < D; k++)
                want += (double) q[k] * v[(size_t) i * D + k];
            cr_assert_leq (fabs (out[i] - want), bound, "step %zu: item %u off by %g (bound %g)", s, i,
                           fabs (out[i] - want), bound);
        }
        score_table_destroy (&whole);
    }
    score_table_destroy (&t);
    free (out);
    free (v);
}

//  check, with the kernel this CPU gets, then with each narrower one it has.
static void
s_each_kernel (void (*check) (void))
{
    unsetenv ("STRATA_SCAN_NO_VNNI");
    unsetenv ("STRATA_SCAN_NO_AVX512");
    unsetenv ("STRATA_SCAN_NO_AVX2");
    check ();
    setenv ("STRATA_SCAN_NO_VNNI", "1", 1);
    check ();
    setenv ("STRATA_SCAN_NO_AVX512", "1", 1);
    check ();
    setenv ("STRATA_SCAN_NO_AVX2", "1", 1);
    check ();
    unsetenv ("STRATA_SCAN_NO_VNNI");
    unsetenv ("STRATA_SCAN_NO_AVX512");
    unsetenv ("STRATA_SCAN_NO_AVX2");
}

Test (score, agrees_with_inner_products_within_its_bound)
{
    s_each_kernel (s_check_kernel);
}

Test (score, runs_of_rows_score_as_the_whole_table)
{
    s_each_kernel (s_check_runs);
}

Test (score, items_appended_or_changed_score_as_a_table_built_at_once)
{
    s_each_kernel (s_check_append);
}
