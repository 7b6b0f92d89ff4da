/*  The approximate retrieval index: cells partition the catalogue, probing every cell
    is exact, and on clustered vectors a few cells find what exact search finds. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ivf.h"
#include "nn.h"

static uint64_t s_rng;

static double
s_uniform (void)
{
    s_rng = s_rng * 6364136223846793005ull + 1442695040888963407ull;
    return ((double) (s_rng >> 11) + 0.5) / 9007199254740992.0;
}

static float
s_normal (void)
{
    return (float) (sqrt (-2.0 * log (s_uniform ())) * cos (6.283185307179586 * s_uniform ()));
}

//  n points of dim d around `clusters` random centres (spread 1) with noise `noise`,
//  and norms varying by a factor up to 2, as learned item vectors do.
static float *
s_mixture (uint32_t n, int d, uint32_t clusters, float noise, uint64_t seed)
{
    s_rng = seed;
    float *centre = malloc ((size_t) clusters * d * sizeof *centre);
    float *x = malloc ((size_t) n * d * sizeof *x);
    for (size_t i = 0; i < (size_t) clusters * d; i++)
        centre[i] = s_normal ();
    for (uint32_t i = 0; i < n; i++) {
        uint32_t c = (uint32_t) (s_uniform () * clusters) % clusters;
        float scale = 0.5f + (float) s_uniform ();
        for (int j = 0; j < d; j++)
            x[(size_t) i * d + j] = scale * (centre[(size_t) c * d + j] + noise * s_normal ());
    }
    free (centre);
    return x;
}

//  An index of `cells` cells over a mixture (*x: its vectors, d = 16).
static ivf_t *
s_mixture_index (uint32_t n, uint32_t clusters, uint64_t seed, uint32_t cells, float **x)
{
    *x = s_mixture (n, 16, clusters, 0.3f, seed);
    ivf_params_t p;
    ivf_params_default (&p);
    p.cells = cells;
    ivf_t *ix = ivf_build (*x, n, 16, &p);
    cr_assert_not_null (ix);
    return ix;
}

Test (ivf, cells_partition_the_catalogue)
{
    uint32_t n = 5000;
    float *x;
    ivf_t *ix = s_mixture_index (n, 40, 1, 50, &x);
    cr_assert_eq (ivf_cells (ix), 50);
    uint32_t total = 0, empty = 0;
    for (uint32_t c = 0; c < 50; c++) {
        total += ivf_cell_size (ix, c);
        empty += ivf_cell_size (ix, c) == 0;
    }
    cr_assert_eq (total, n);
    cr_assert_eq (empty, 0, "%u cells are empty", empty);
    //  Probing every cell returns every item once, with its inner product within the
    //  index's bound.
    uint32_t cap = ivf_max_candidates (ix, 50);
    cr_assert_eq (cap, n);
    uint32_t *items = malloc (cap * sizeof *items), count;
    float *scores = malloc (cap * sizeof *scores);
    float q[16];
    for (int j = 0; j < 16; j++)
        q[j] = s_normal ();
    cr_assert_eq (ivf_search (ix, q, 1, 50, items, scores, cap, &count), 0);
    cr_assert_eq (count, n);
    uint8_t *seen = calloc (n, 1);
    for (uint32_t i = 0; i < count; i++) {
        cr_assert_lt (items[i], n);
        cr_assert_eq (seen[items[i]], 0, "item %u twice", items[i]);
        seen[items[i]] = 1;
        double dot = 0;
        for (int j = 0; j < 16; j++)
            dot += (double) q[j] * x[(size_t) items[i] * 16 + j];
        cr_assert_leq (fabs (scores[i] - dot), ivf_bound (ix, q), "item %u: %g, exact %g", items[i], scores[i], dot);
    }
    int32_t exact[100 * 10];
    cr_assert_eq (ivf_exact_top (x, n, 16, x, 100, 10, exact), 0);
    cr_assert_float_eq (ivf_recall (ix, x, 100, 50, 10, exact), 1.0, 1e-9, "probing every cell is exact search");
    //  Fewer cells: fewer candidates, within the stated bound.
    uint32_t cap4 = ivf_max_candidates (ix, 4);
    cr_assert_lt (cap4, n);
    cr_assert_eq (ivf_search (ix, q, 1, 4, items, scores, cap4, &count), 0);
    cr_assert_leq (count, cap4);
    cr_assert_gt (count, 0);
    free (seen);
    free (items);
    free (scores);
    ivf_destroy (&ix);
    free (x);
}

Test (ivf, rescoring_near_the_top_gives_the_exact_top)
{
    //  As the rank worker does: the k-th best scanned score less twice the bound is a
    //  bar every item of the exact top k clears; those that clear it, scored exactly,
    //  give the exact top k (probing every cell: the exact search's answer).
    uint32_t n = 3000;
    float *x;
    ivf_t *ix = s_mixture_index (n, 30, 3, 20, &x);
    uint32_t cap = ivf_max_candidates (ix, 20), count;
    uint32_t *items = malloc (cap * sizeof *items);
    float *scores = malloc (cap * sizeof *scores), *exact = malloc (cap * sizeof *exact);
    int32_t top[10], want[10], at[10];
    for (int t = 0; t < 50; t++) {
        const float *q = x + (size_t) (t * 37) * 16;   // catalogue items as queries
        cr_assert_eq (ivf_search (ix, q, 1, 20, items, scores, cap, &count), 0);
        cr_assert_eq (nn_top_k (scores, (int) count, -1, NULL, top, 10), 10);
        float bar = scores[top[9]] - 2 * ivf_bound (ix, q);
        uint32_t m = 0;
        for (uint32_t i = 0; i < count; i++)
            if (scores[i] >= bar) {
                float dot = 0;
                for (int j = 0; j < 16; j++)
                    dot += q[j] * x[(size_t) items[i] * 16 + j];
                exact[m] = dot;
                items[m++] = items[i];
            }
        cr_assert_lt (m, count / 4, "query %d: %u of %u rescored", t, m, count);
        cr_assert_eq (nn_top_k (exact, (int) m, -1, NULL, at, 10), 10);
        cr_assert_eq (ivf_exact_top (x, n, 16, q, 1, 10, want), 0);
        for (int i = 0; i < 10; i++)
            cr_expect_eq ((int32_t) items[at[i]], want[i], "query %d rank %d", t, i);
    }
    free (items);
    free (scores);
    free (exact);
    ivf_destroy (&ix);
    free (x);
}

Test (ivf, clustered_vectors_are_found_probing_few_cells)
{
    uint32_t n = 40000;
    int d = 32;
    float *x = s_mixture (n, d, 200, 0.35f, 7);
    ivf_params_t p;
    ivf_params_default (&p);
    ivf_t *ix = ivf_build (x, n, d, &p);
    cr_assert_not_null (ix);
    cr_assert_eq (ivf_cells (ix), 200, "about sqrt(n) cells by default");
    //  Queries: held-out points from the same mixture (not in the index).
    float *q = s_mixture (300, d, 200, 0.35f, 7 * 7919);
    int32_t *exact = malloc (300 * 10 * sizeof *exact);
    cr_assert_eq (ivf_exact_top (x, n, d, q, 300, 10, exact), 0);
    double r4 = ivf_recall (ix, q, 300, 4, 10, exact), r16 = ivf_recall (ix, q, 300, 16, 10, exact);
    cr_log_info ("recall@10 probing 4 of 200 cells: %.3f; 16: %.3f", r4, r16);
    cr_assert_geq (r16, 0.95, "recall@10 %.3f probing 16 of 200 cells (8%% of the catalogue)", r16);
    cr_assert_geq (r16, r4, "more cells cannot find less");
    //  ... for a small part of the work of exact search.
    uint32_t cap = ivf_max_candidates (ix, 16), *items = malloc ((size_t) 300 * cap * sizeof *items), counts[300];
    float *scores = malloc ((size_t) 300 * cap * sizeof *scores);
    cr_assert_eq (ivf_search (ix, q, 300, 16, items, scores, cap, counts), 0);
    double mean = 0;
    for (int i = 0; i < 300; i++)
        mean += counts[i] / 300.0;
    cr_log_info ("%.0f candidates per query on average", mean);
    cr_assert_lt (mean, n / 8.0, "16 cells hold %.0f of %u items on average", mean, n);
    free (items);
    free (scores);
    free (exact);
    free (q);
    ivf_destroy (&ix);
    free (x);
}

Test (ivf, the_same_vectors_give_the_same_index)
{
    uint32_t n = 3000;
    float *x = s_mixture (n, 8, 20, 0.5f, 3);
    ivf_params_t p;
    ivf_params_default (&p);
    p.cells = 30;
    ivf_t *a = ivf_build (x, n, 8, &p), *b = ivf_build (x, n, 8, &p);
    cr_assert (a && b);
    for (uint32_t c = 0; c < 30; c++)
        cr_assert_eq (ivf_cell_size (a, c), ivf_cell_size (b, c));
    uint32_t cap = ivf_max_candidates (a, 3), ca, cb;
    uint32_t *ia = malloc (cap * sizeof *ia), *ib = malloc (cap * sizeof *ib);
    float *sa = malloc (cap * sizeof *sa), *sb = malloc (cap * sizeof *sb);
    cr_assert_eq (ivf_search (a, x, 1, 3, ia, sa, cap, &ca), 0);
    cr_assert_eq (ivf_search (b, x, 1, 3, ib, sb, cap, &cb), 0);
    cr_assert_eq (ca, cb);
    cr_assert_eq (memcmp (ia, ib, ca * sizeof *ia), 0);
    free (ia);
    free (ib);
    free (sa);
    free (sb);
    ivf_destroy (&a);
    ivf_destroy (&b);
    free (x);
}

Test (ivf, tiny_and_degenerate_catalogues)
{
    float one[4] = { 1, 0, 0, 0 };
    ivf_params_t p;
    ivf_params_default (&p);
    p.cells = 16;   // more cells than items: as many as there are items
    ivf_t *ix = ivf_build (one, 1, 4, &p);
    cr_assert_not_null (ix);
    cr_assert_eq (ivf_cells (ix), 1);
    uint32_t item = 99, count = 0;
    float score;
    cr_assert_eq (ivf_search (ix, one, 1, 8, &item, &score, 1, &count), 0);
    cr_assert_eq (count, 1);
    cr_assert_eq (item, 0);
    cr_assert_float_eq (score, 1.0f, 1e-6);
    ivf_destroy (&ix);
    cr_assert_null (ivf_build (one, 0, 4, &p), "an empty catalogue has no index");
    //  Identical vectors: k-means cannot tell them apart; the index still holds them all.
    float *same = malloc (400 * 4 * sizeof *same);
    for (int i = 0; i < 400 * 4; i++)
        same[i] = (float) (i % 4);
    p.cells = 8;
    ix = ivf_build (same, 400, 4, &p);
    cr_assert_not_null (ix);
    uint32_t total = 0;
    for (uint32_t c = 0; c < 8; c++)
        total += ivf_cell_size (ix, c);
    cr_assert_eq (total, 400);
    int32_t top[5 * 10];
    cr_assert_eq (ivf_exact_top (same, 400, 4, same, 5, 10, top), 0);
    cr_assert_float_eq (ivf_recall (ix, same, 5, 8, 10, top), 1.0, 1e-9);
    ivf_destroy (&ix);
    free (same);
}

Test (ivf, saved_and_loaded_gives_the_same_answers)
{
    uint32_t n = 4000;
    float *x;
    ivf_t *a = s_mixture_index (n, 30, 11, 40, &x);
    size_t len;
    uint8_t *bytes = ivf_save (a, &len);
    cr_assert_not_null (bytes);
    int rc = -99;
    ivf_t *b = ivf_load (bytes, len, x, n, 16, &rc);
    cr_assert_not_null (b, "an index loads from its own bytes");
    cr_assert_eq (rc, STRATA_OK);
    cr_assert_eq (ivf_cells (b), 40);
    uint32_t cap = ivf_max_candidates (a, 5), ca, cb;
    cr_assert_eq (ivf_max_candidates (b, 5), cap);
    uint32_t *ia = malloc (cap * sizeof *ia), *ib = malloc (cap * sizeof *ib);
    float *sa = malloc (cap * sizeof *sa), *sb = malloc (cap * sizeof *sb);
    for (uint32_t q = 0; q < 20; q++) {
        cr_assert_eq (ivf_search (a, x + (size_t) q * 97 * 16, 1, 5, ia, sa, cap, &ca), 0);
        cr_assert_eq (ivf_search (b, x + (size_t) q * 97 * 16, 1, 5, ib, sb, cap, &cb), 0);
        cr_assert_eq (ca, cb);
        cr_assert_eq (memcmp (ia, ib, ca * sizeof *ia), 0);
        cr_assert_eq (memcmp (sa, sb, ca * sizeof *sa), 0);
    }
    //  Bytes of another shape, cut short or with an item twice are refused.
    cr_expect_null (ivf_load (bytes, len, x, n - 1, 16, NULL));
    cr_expect_null (ivf_load (bytes, len, x, n, 8, NULL));
    cr_expect_null (ivf_load (bytes, len - 4, x, n, 16, NULL));
    uint32_t first;
    size_t ids_at = len - (size_t) n * sizeof (uint32_t);
    memcpy (&first, bytes + ids_at, sizeof first);
    memcpy (bytes + ids_at + sizeof first, &first, sizeof first);
    cr_expect_null (ivf_load (bytes, len, x, n, 16, NULL), "an item in two places");
    free (ia);
    free (ib);
    free (sa);
    free (sb);
    free (bytes);
    ivf_destroy (&a);
    ivf_destroy (&b);
    free (x);
}

//  Ways of damaging a saved index (40 cells over 600 vectors of 16 floats): where the
//  damage goes and what it writes, or the shape asked for, or the length read.
typedef enum { AT_NONE, AT_MAGIC, AT_CELLS, AT_OFF, AT_ID_TWICE, AT_ID_RANGE } damage_at_t;

typedef struct {
    const char *what;
    damage_at_t at;
    int n_delta, dim;   // the shape the load asks for: n + n_delta vectors of dim floats
    long extra;         // bytes added to the length read (negative: cut)
    int rc;
} damage_t;

static const damage_t s_damages[] = {
    { "intact", AT_NONE, 0, 16, 0, STRATA_OK },
    { "shorter than its header", AT_NONE, 0, 16, -100000, STRATA_ECORRUPT },
    { "cut short", AT_NONE, 0, 16, -4, STRATA_ECORRUPT },
    { "a byte too many", AT_NONE, 0, 16, 1, STRATA_ECORRUPT },
    { "another magic", AT_MAGIC, 0, 16, 0, STRATA_ECORRUPT },
    { "no cells", AT_CELLS, 0, 16, 0, STRATA_ECORRUPT },
    { "over another number of vectors", AT_NONE, -1, 16, 0, STRATA_ECORRUPT },
    { "over vectors of another dimension", AT_NONE, 0, 8, 0, STRATA_ECORRUPT },
    { "cells out of order", AT_OFF, 0, 16, 0, STRATA_ECORRUPT },
    { "an item in two places", AT_ID_TWICE, 0, 16, 0, STRATA_ECORRUPT },
    { "an item past the catalogue", AT_ID_RANGE, 0, 16, 0, STRATA_ECORRUPT },
};

Test (ivf, damaged_bytes_load_as_corrupt)
{
    uint32_t n = 600, k = 40;
    float *x;
    ivf_t *ix = s_mixture_index (n, 10, 5, k, &x);
    size_t len;
    uint8_t *saved = ivf_save (ix, &len);
    cr_assert_not_null (saved);
    size_t off_at = 16 + ((size_t) k * 17 + k) * sizeof (float), ids_at = len - (size_t) n * sizeof (uint32_t);
    for (size_t c = 0; c < sizeof s_damages / sizeof s_damages[0]; c++) {
        const damage_t *d = &s_damages[c];
        uint8_t *b = calloc (len + 1, 1);
        memcpy (b, saved, len);
        uint32_t v;
        switch (d->at) {
        case AT_MAGIC: b[0] ^= 0xff; break;
        case AT_CELLS: v = 0; memcpy (b + 8, &v, 4); break;
        case AT_OFF: v = n; memcpy (b + off_at + 4, &v, 4); break;   // cell 1 ends before it starts
        case AT_ID_TWICE: memcpy (b + ids_at + 4, b + ids_at, 4); break;
        case AT_ID_RANGE: v = n; memcpy (b + ids_at, &v, 4); break;
        case AT_NONE: break;
        }
        size_t got_len = d->extra < -(long) len ? 3 : (size_t) ((long) len + d->extra);
        int rc = -99;
        ivf_t *l = ivf_load (b, got_len, x, n + (uint32_t) d->n_delta, d->dim, &rc);
        cr_expect_eq (rc, d->rc, "%s: %s, not %s", d->what, strata_strerror (rc), strata_strerror (d->rc));
        if (d->rc == STRATA_OK)
            cr_expect_not_null (l, "%s", d->what);
        else
            cr_expect_null (l, "%s", d->what);
        ivf_destroy (&l);
        free (b);
    }
    free (saved);
    ivf_destroy (&ix);
    free (x);
}
