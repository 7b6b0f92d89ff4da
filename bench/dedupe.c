/*  bench/dedupe: the broker's event-id index (broker/dedupe.c) as ingest uses it. A
    table of N entries takes batches of 1,000 new event ids, each looked up and then
    added, as the broker applies a preprocess worker's result: first plainly (the
    reference), then with each event's place in the table asked for 8 events before
    its turn (dedupe_prefetch, as the broker does), on tables of the same size filled
    the same way. Nanoseconds per event, median of --runs runs, at several sizes (the
    table far larger than the caches from about 200,000 entries on; at 3,000,000 it is
    growing meanwhile, its entries moving to a table twice the size with the inserts).

    Usage: dedupe [--runs R]
*/
#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dedupe.h"
#include "median.h"

#define BATCH 1000
#define BATCHES 100
#define AHEAD 8

static uint64_t
s_next (uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x | 1;   // never 0, as dedupe_hash
}

//  One run: a table of n entries, then BATCHES batches of new ids; ns per new id.
static double
s_run (size_t n, bool prefetch, uint64_t seed)
{
    dedupe_t *d = dedupe_new (1024);
    if (!d)
        return -1;
    uint64_t x = seed;
    for (size_t i = 0; i < n; i++)
        if (dedupe_insert (d, s_next (&x), (uint32_t) i, (int64_t) i) < 0) {
            dedupe_destroy (&d);
            return -1;
        }
    uint64_t h[BATCH];
    int64_t spent = 0;
    for (int b = 0; b < BATCHES; b++) {
        for (int i = 0; i < BATCH; i++)
            h[i] = s_next (&x);
        int64_t t0 = zclock_usecs ();
        for (int i = 0; prefetch && i < AHEAD; i++)
            dedupe_prefetch (d, h[i]);
        for (int i = 0; i < BATCH; i++) {
            if (prefetch && i + AHEAD < BATCH)
                dedupe_prefetch (d, h[i + AHEAD]);
            uint32_t user;
            int64_t ts;
            if (!dedupe_find (d, h[i], &user, &ts))
                dedupe_insert (d, h[i], (uint32_t) i, (int64_t) i);
        }
        spent += zclock_usecs () - t0;
    }
    dedupe_destroy (&d);
    return (double) spent * 1000.0 / (BATCH * BATCHES);
}

int
main (int argc, char **argv)
{
    int runs = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp (argv[i], "--runs") && i + 1 < argc)
            runs = atoi (argv[++i]);
        else {
            fprintf (stderr, "usage: dedupe [--runs R]\n");
            return 2;
        }
    }
    runs = runs < 1 ? 1 : runs > 64 ? 64 : runs;
    printf ("dedupe benchmark: %d batches of %d new event ids per run, looked up and added, median of %d runs "
            "(nanoseconds per event)\n",
            BATCHES, BATCH, runs);
    printf ("  %10s  %12s  %12s  %7s\n", "entries", "plain", "prefetched", "ratio");
    size_t sizes[] = { 10000, 200000, 1000000, 3000000 };
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        double plain[64], ahead[64];
        for (int r = 0; r < runs; r++) {
            //  Alternating, each pair on the same ids: the machine's noise falls on both.
            plain[r] = s_run (sizes[si], false, 88172645463325252ULL + (uint64_t) r);
            ahead[r] = s_run (sizes[si], true, 88172645463325252ULL + (uint64_t) r);
            if (plain[r] < 0 || ahead[r] < 0) {
                fprintf (stderr, "dedupe: out of memory\n");
                return 1;
            }
        }
        double a = bench_median (plain, runs), b = bench_median (ahead, runs);
        printf ("  %10zu  %12.1f  %12.1f  %6.2fx\n", sizes[si], a, b, a / b);
    }
    return 0;
}
