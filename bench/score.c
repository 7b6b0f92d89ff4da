/*  bench/score: the rank worker's exact retrieval loop, the whole catalogue scored
    against a batch of user vectors, with the packed 8-bit scan (worker/score.c: scores
    within a bound of exact; the worker then rescores the few items near the top) and
    with OpenBLAS sgemm (the reference, measured in the same run), on Beauty's shape
    (12,101 items, d=64) by default. Prints the median of --runs runs of each, per
    query, and the ratio.

    Then the step after the scan, selection: the best 10 of one query's scanned
    scores, leaving out 20 marked items (a user's history), by nn_top_k against a
    binary heap of the best 10 over every score (the textbook selection, the
    reference), median of --runs runs; and the items within a bar of the 10th best
    (those the rank worker rescores exactly), by nn_at_least against a plain loop.

    Last, the cost of items new to the catalogue: half the items packed onto a table
    of the other half (score_table_append, at a rank worker's catalogue refresh),
    against building the whole table again.

    Usage: score [--items N] [--dim D] [--runs R]
*/
#include <cblas.h>
#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "median.h"
#include "nn.h"
#include "score.h"

//  The reference selection: a min-heap of the best k of z[0..m), leaving out marked
//  columns, then sorted best first (ties: lower index first, as nn_top_k).
static bool
s_above (const float *z, int32_t a, int32_t b)
{
    return z[a] > z[b] || (z[a] == z[b] && a < b);
}

static void
s_sift (const float *z, int32_t *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && s_above (z, h[w], h[l]))
            w = l;
        if (r < n && s_above (z, h[w], h[r]))
            w = r;
        if (w == i)
            return;
        int32_t t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

static int
s_heap_top_k (const float *z, int m, const uint8_t *exclude, int32_t *h, int k)
{
    int n = 0;
    for (int32_t j = 0; j < m; j++) {
        if (exclude[j])
            continue;
        if (n < k) {
            h[n++] = j;
            if (n == k)
                for (int i = k / 2 - 1; i >= 0; i--)
                    s_sift (z, h, k, i);
        }
        else if (s_above (z, j, h[0])) {
            h[0] = j;
            s_sift (z, h, k, 0);
        }
    }
    if (n < k)
        for (int i = n / 2 - 1; i >= 0; i--)
            s_sift (z, h, n, i);
    for (int end = n - 1; end > 0; end--) {
        int32_t t = h[0];
        h[0] = h[end];
        h[end] = t;
        s_sift (z, h, end, 0);
    }
    return n;
}

//  Selection after the scan: microseconds per query, nn_top_k against the heap.
static int
s_bench_select (score_table_t *t, const float *q, float *out, uint32_t n, int runs)
{
    enum { K = 10, MARKED = 20, QUERIES = 8 };   // a batch's scores: in cache, as in the worker
    uint8_t *mark = calloc (n, 1);
    if (!mark)
        return -1;
    for (int i = 0; i < MARKED; i++)
        mark[((uint64_t) i * 2654435761u) % n] = 1;
    score_table_run (t, q, QUERIES, out, n);
    int32_t mine[K], ref[K];
    for (int qi = 0; qi < QUERIES; qi++) {
        const float *z = out + (size_t) qi * n;
        int a = nn_top_k (z, (int) n, -1, mark, mine, K), b = s_heap_top_k (z, (int) n, mark, ref, K);
        if (a != b || memcmp (mine, ref, (size_t) a * sizeof *mine)) {
            fprintf (stderr, "selection: nn_top_k and the heap disagree on query %d\n", qi);
            free (mark);
            return -1;
        }
    }
    double tr[64], tm[64];
    int reps = 160;
    for (int r = 0; r < runs && r < 64; r++) {
        int64_t t0 = zclock_usecs ();
        for (int k = 0; k < reps; k++)
            for (int qi = 0; qi < QUERIES; qi++)
                s_heap_top_k (out + (size_t) qi * n, (int) n, mark, ref, K);
        int64_t t1 = zclock_usecs ();
        for (int k = 0; k < reps; k++)
            for (int qi = 0; qi < QUERIES; qi++)
                nn_top_k (out + (size_t) qi * n, (int) n, -1, mark, mine, K);
        int64_t t2 = zclock_usecs ();
        tr[r] = (double) (t1 - t0) / reps / QUERIES;
        tm[r] = (double) (t2 - t1) / reps / QUERIES;
    }
    double a = bench_median (tr, runs), b = bench_median (tm, runs);
    printf ("selection: best %d of %u scanned scores, %d marked, median of %d runs (microseconds per query)\n", K, n,
            MARKED, runs);
    printf ("  %12s  %12s  %7s\n", "heap", "nn_top_k", "ratio");
    printf ("  %12.2f  %12.2f  %6.2fx\n", a, b, a / b);
    //  Then the items to rescore: those within a bar of the best (here the 10th best
    //  less 2% of the spread: a few dozen), by nn_at_least against a loop that keeps
    //  each index and advances past it when it clears the bar (no branch per item).
    uint32_t *idx = malloc ((size_t) (n + 1) * sizeof *idx);
    if (!idx) {
        free (mark);
        return -1;
    }
    float bars[QUERIES];
    for (int qi = 0; qi < QUERIES; qi++) {
        const float *z = out + (size_t) qi * n;
        nn_top_k (z, (int) n, -1, NULL, mine, K);
        bars[qi] = z[mine[K - 1]] - 0.02f * (z[mine[0]] - z[mine[K - 1]]);
    }
    for (int r = 0; r < runs && r < 64; r++) {
        uint64_t found = 0;
        int64_t t0 = zclock_usecs ();
        for (int k = 0; k < reps; k++)
            for (int qi = 0; qi < QUERIES; qi++) {
                const float *z = out + (size_t) qi * n;
                uint32_t m = 0;
                for (uint32_t i = 0; i < n; i++) {
                    idx[m] = i;
                    m += z[i] >= bars[qi];
                }
                found += m;
            }
        int64_t t1 = zclock_usecs ();
        for (int k = 0; k < reps; k++)
            for (int qi = 0; qi < QUERIES; qi++)
                found -= nn_at_least (out + (size_t) qi * n, n, bars[qi], idx);
        int64_t t2 = zclock_usecs ();
        if (found) {
            fprintf (stderr, "selection: nn_at_least and the loop found different counts\n");
            free (idx);
            free (mark);
            return -1;
        }
        tr[r] = (double) (t1 - t0) / reps / QUERIES;
        tm[r] = (double) (t2 - t1) / reps / QUERIES;
    }
    a = bench_median (tr, runs);
    double c = bench_median (tm, runs);
    printf ("items within a bar of the 10th best, median of %d runs (microseconds per query)\n", runs);
    printf ("  %12s  %12s  %7s\n", "loop", "nn_at_least", "ratio");
    printf ("  %12.2f  %12.2f  %6.2fx\n", a, c, a / c);
    free (idx);
    free (mark);
    return 0;
}

//  Items added to the catalogue since the version (as many again as it has): packed
//  onto its table (score_table_append, what a rank worker does at a catalogue refresh)
//  against the table built again whole; milliseconds, median of runs.
static int
s_bench_append (const float *v, uint32_t n, int d, int runs)
{
    uint32_t half = n / 2;
    double tr[64], tm[64];
    for (int r = 0; r < runs && r < 64; r++) {
        score_table_t *t = score_table_new (v, half, d);
        int64_t t0 = zclock_usecs ();
        score_table_t *whole = score_table_new (v, n, d);
        int64_t t1 = zclock_usecs ();
        int rc = t && whole ? score_table_append (t, v, n) : -1;
        int64_t t2 = zclock_usecs ();
        score_table_destroy (&t);
        score_table_destroy (&whole);
        if (rc < 0)
            return -1;
        tr[r] = (double) (t1 - t0) / 1000.0;
        tm[r] = (double) (t2 - t1) / 1000.0;
    }
    double a = bench_median (tr, runs), b = bench_median (tm, runs);
    printf ("%u new items on a table of %u, median of %d runs (milliseconds)\n", n - half, half, runs);
    printf ("  %12s  %12s  %7s\n", "built whole", "appended", "ratio");
    printf ("  %12.2f  %12.2f  %6.2fx\n", a, b, a / b);
    return 0;
}

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
    int rc = s_bench_select (t, q, out, n, runs);
    if (rc == 0)
        rc = s_bench_append (v, n, d, runs);
    score_table_destroy (&t);
    free (v);
    free (q);
    free (out);
    return rc ? 1 : 0;
}
