/*  bench/score: the rank worker's exact retrieval loop, the whole catalogue scored
    against a batch of user vectors, with the packed 8-bit scan (worker/score.c: scores
    within a bound of exact; the worker then rescores the few items near the top) and
    with OpenBLAS sgemm (the reference, measured in the same run), on Beauty's shape
    (12,101 items, d=64) by default. Prints the median of --runs runs of each, per
    query, and the ratio.

    Usage: score [--items N] [--dim D] [--runs R]
*/
#include <cblas.h>
#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "median.h"
#include "score.h"

int
main (int argc, char **argv)
{
    uint32_t n = 12101;
    int d = 64, runs = 7;
    for (int i = 1; i < argc; i++) {
        if (!strcmp (argv[i], "--items") && i + 1 < argc)
            n = (uint32_t) atol (argv[++i]);
        else if (!strcmp (argv[i], "--dim") && i + 1 < argc)
            d = atoi (argv[++i]);
        else if (!strcmp (argv[i], "--runs") && i + 1 < argc)
            runs = atoi (argv[++i]);
        else {
            fprintf (stderr, "usage: score [--items N] [--dim D] [--runs R]\n");
            return 2;
        }
    }
    openblas_set_num_threads (1);   // as in a rank worker
    float *v = malloc ((size_t) n * d * sizeof *v), *q = malloc ((size_t) 64 * d * sizeof *q);
    float *out = malloc ((size_t) 64 * n * sizeof *out);
    unsigned seed = 7;
    for (size_t i = 0; i < (size_t) n * d; i++)
        v[i] = (float) rand_r (&seed) / RAND_MAX - 0.5f;
    for (int i = 0; i < 64 * d; i++)
        q[i] = (float) rand_r (&seed) / RAND_MAX - 0.5f;
    score_table_t *t = score_table_new (v, n, d);
    if (!v || !q || !out || !t)
        return 1;
    printf ("score benchmark: %u items, d=%d, one thread, median of %d runs (microseconds per query)\n", n, d, runs);
    printf ("  %7s  %12s  %12s  %7s\n", "queries", "sgemm", "packed", "ratio");
    uint32_t batches[] = { 1, 2, 4, 8, 16, 32 };
    for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
        uint32_t nq = batches[bi];
        int reps = (int) (2000 / nq) + 1;
        double ref[64], mine[64];
        for (int r = 0; r < runs && r < 64; r++) {
            int64_t t0 = zclock_usecs ();
            for (int k = 0; k < reps; k++)
                cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) nq, (int) n, d, 1.0f, q, d, v, d, 0.0f, out,
                             (int) n);
            int64_t t1 = zclock_usecs ();
            for (int k = 0; k < reps; k++)
                score_table_run (t, q, nq, out, n);
            int64_t t2 = zclock_usecs ();
            ref[r] = (double) (t1 - t0) / reps / nq;
            mine[r] = (double) (t2 - t1) / reps / nq;
        }
        double a = bench_median (ref, runs), b = bench_median (mine, runs);
        printf ("  %7u  %12.2f  %12.2f  %6.2fx\n", nq, a, b, a / b);
    }
    score_table_destroy (&t);
    free (v);
    free (q);
    free (out);
    return 0;
}
