/*  ivf: see ivf.h. */
#include "ivf.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "score.h"
#include "util.h"

#define BLOCK 4096   // points assigned per matrix product

struct _ivf_t {
    uint32_t n, cells;
    int dim;
    float *centroids;    // cells x (dim + 1), in the augmented space
    float *half;         // cells: half each centroid's squared norm
    uint32_t *off;       // cells + 1: cell c holds positions off[c] .. off[c+1]
    uint32_t *ids;       // position -> item
    score_table_t *table;   // the vectors packed in position order, each cell from a block of its own
    uint32_t *first;     // cells: the table row of each cell's first position
    uint32_t *sizes;     // cell sizes, largest first
    //  Search scratch.
    float *cell_scores;
    size_t cell_scores_cap;
    int32_t *probe_cells;
    uint32_t probe_cap;
};

void
ivf_params_default (ivf_params_t *p)
{
    memset (p, 0, sizeof *p);
    p->sample = 64;
    p->iters = 10;
    p->seed = 42;
}

//  Maximum inner product as nearest neighbour: x -> [x, sqrt(M^2 - |x|^2)] with M the
//  largest norm makes |q' - x'|^2 = |q|^2 + M^2 - 2 q.x for q' = [q, 0], so the cells
//  of Euclidean k-means on the augmented vectors are cells of inner product too, and
//  items with large norms are not crowded out by their cell's centroid.
static void
s_augment (const float *x, uint32_t m, int d, float max2, float *out)
{
    for (uint32_t i = 0; i < m; i++) {
        const float *v = x + (size_t) i * d;
        float *o = out + (size_t) i * (d + 1);
        memcpy (o, v, (size_t) d * sizeof *o);
        float n2 = nn_dot (v, v, d);
        o[d] = max2 > n2 ? sqrtf (max2 - n2) : 0.0f;
    }
}

//  Nearest centroid (Euclidean) of each of m points: the largest x.c - |c|^2 / 2.
static void
s_assign (const float *x, uint32_t m, int d, const float *cent, const float *half_norm, uint32_t k, float *scores,
          uint32_t *out)
{
    for (uint32_t b0 = 0; b0 < m; b0 += BLOCK) {
        uint32_t nb = m - b0 < BLOCK ? m - b0 : BLOCK;
        nn_matmul_nt (x + (size_t) b0 * d, (int) nb, d, cent, (int) k, scores);
        for (uint32_t i = 0; i < nb; i++) {
            const float *s = scores + (size_t) i * k;
            uint32_t best = 0;
            float bv = -FLT_MAX;
            for (uint32_t c = 0; c < k; c++) {
                float v = s[c] - half_norm[c];
                if (v > bv) {
                    bv = v;
                    best = c;
                }
            }
            out[b0 + i] = best;
        }
    }
}

static void
s_half_norms (const float *cent, uint32_t k, int d, float *out)
{
    for (uint32_t c = 0; c < k; c++)
        out[c] = 0.5f * nn_dot (cent + (size_t) c * d, cent + (size_t) c * d, d);
}

//  Lloyd's k-means over m points into k centroids (initialised from distinct points).
//  An emptied cell takes a point of the largest cell, nudged, so every cell is used.
static int
s_kmeans (const float *x, uint32_t m, int d, uint32_t k, int iters, uint64_t *rng, float *cent)
{
    float *scores = malloc ((size_t) BLOCK * k * sizeof *scores);
    float *half = malloc (k * sizeof *half);
    uint32_t *assign = malloc ((size_t) m * sizeof *assign);
    uint32_t *count = malloc (k * sizeof *count);
    double *sum = malloc ((size_t) k * (size_t) d * sizeof *sum);
    if (!scores || !half || !assign || !count || !sum) {
        free (scores);
        free (half);
        free (assign);
        free (count);
        free (sum);
        return STRATA_ENOMEM;
    }
    for (uint32_t c = 0; c < k; c++)   // the sample is already a random order
        memcpy (cent + (size_t) c * d, x + (size_t) c * d, (size_t) d * sizeof *cent);
    for (int it = 0; it < iters; it++) {
        s_half_norms (cent, k, d, half);
        s_assign (x, m, d, cent, half, k, scores, assign);
        memset (count, 0, k * sizeof *count);
        memset (sum, 0, (size_t) k * (size_t) d * sizeof *sum);
        for (uint32_t i = 0; i < m; i++) {
            count[assign[i]]++;
            double *s = sum + (size_t) assign[i] * d;
            const float *v = x + (size_t) i * d;
            for (int j = 0; j < d; j++)
                s[j] += v[j];
        }
        for (uint32_t c = 0; c < k; c++)
            if (count[c])
                for (int j = 0; j < d; j++)
                    cent[(size_t) c * d + j] = (float) (sum[(size_t) c * d + j] / count[c]);
        for (uint32_t c = 0; c < k; c++) {
            if (count[c])
                continue;
            uint32_t big = 0;
            for (uint32_t j = 1; j < k; j++)
                big = count[j] > count[big] ? j : big;
            //  A random point of the largest cell, and the largest cell's centroid, each
            //  nudged apart: the next assignment splits the cell between them.
            uint32_t pick = (uint32_t) (util_splitmix64 (rng) % m);
            for (uint32_t tries = 0; tries < m && assign[pick] != big; tries++)
                pick = (pick + 1) % m;
            for (int j = 0; j < d; j++) {
                float e = 1e-4f * ((float) (util_splitmix64 (rng) >> 40) / (float) (1 << 24) - 0.5f);
                cent[(size_t) c * d + j] = x[(size_t) pick * d + j] + e;
                cent[(size_t) big * d + j] -= e;
            }
            count[c] = count[big] / 2;
            count[big] -= count[c];
        }
    }
    free (scores);
    free (half);
    free (assign);
    free (count);
    free (sum);
    return 0;
}

static int
s_desc (const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
    return (x < y) - (x > y);
}

//  The packed table searches scan: the items' vectors in position (cell) order, each
//  cell padded to a whole number of blocks with zero rows. 0, or STRATA_ENOMEM.
static int
s_pack (ivf_t *self, const float *vectors)
{
    uint64_t rows = 0;
    self->first = malloc (self->cells * sizeof *self->first);
    for (uint32_t c = 0; self->first && c < self->cells; c++) {
        self->first[c] = (uint32_t) rows;
        uint64_t len = self->off[c + 1] - self->off[c];
        rows += (len + SCORE_TABLE_BLOCK - 1) / SCORE_TABLE_BLOCK * SCORE_TABLE_BLOCK;
    }
    int64_t *map = self->first && rows <= UINT32_MAX ? malloc ((rows ? rows : 1) * sizeof *map) : NULL;
    if (!map)
        return STRATA_ENOMEM;
    for (uint64_t r = 0; r < rows; r++)
        map[r] = -1;
    for (uint32_t c = 0; c < self->cells; c++)
        for (uint32_t pos = self->off[c]; pos < self->off[c + 1]; pos++)
            map[self->first[c] + (pos - self->off[c])] = self->ids[pos];
    self->table = score_table_new_rows (vectors, map, (uint32_t) rows, self->dim);
    free (map);
    return self->table ? 0 : STRATA_ENOMEM;
}

ivf_t *
ivf_build (const float *vectors, uint32_t n, int dim, const ivf_params_t *p)
{
    if (!n || dim < 1)
        return NULL;
    uint32_t k = p->cells ? p->cells : (uint32_t) sqrt ((double) n);
    k = k < 1 ? 1 : k > n ? n : k;
    uint64_t per = p->sample ? p->sample : 64;
    uint32_t m = (uint64_t) k * per < n ? (uint32_t) ((uint64_t) k * per) : n;
    ivf_t *self = calloc (1, sizeof *self);
    int da = dim + 1;
    float *train = malloc ((size_t) m * da * sizeof *train);
    float *block = malloc ((size_t) BLOCK * da * sizeof *block);
    uint32_t *perm = malloc ((size_t) n * sizeof *perm);
    if (!self || !train || !block || !perm) {
        free (self);
        free (train);
        free (block);
        free (perm);
        return NULL;
    }
    self->n = n;
    self->cells = k;
    self->dim = dim;
    self->centroids = malloc ((size_t) k * da * sizeof *self->centroids);
    self->half = malloc (k * sizeof *self->half);
    self->off = calloc (k + 1, sizeof *self->off);
    self->ids = malloc ((size_t) n * sizeof *self->ids);
    self->sizes = malloc (k * sizeof *self->sizes);
    float *scores = malloc ((size_t) BLOCK * k * sizeof *scores);
    int ok = self->centroids && self->half && self->off && self->ids && self->sizes && scores;
    float max2 = 0;
    for (uint32_t i = 0; i < n; i++) {
        float n2 = nn_dot (vectors + (size_t) i * dim, vectors + (size_t) i * dim, dim);
        max2 = n2 > max2 ? n2 : max2;
    }
    //  The training sample: the first m of a seeded shuffle.
    uint64_t rng = p->seed;
    for (uint32_t i = 0; ok && i < n; i++)
        perm[i] = i;
    for (uint32_t i = 0; ok && i < m; i++) {
        uint32_t j = i + (uint32_t) (util_splitmix64 (&rng) % (n - i));
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        s_augment (vectors + (size_t) perm[i] * dim, 1, dim, max2, train + (size_t) i * da);
    }
    ok = ok && s_kmeans (train, m, da, k, p->iters > 0 ? p->iters : 1, &rng, self->centroids) == 0;
    free (train);
    //  Every vector to its cell (perm reused as the assignment), then cell order.
    if (ok) {
        s_half_norms (self->centroids, k, da, self->half);
        for (uint32_t b0 = 0; b0 < n; b0 += BLOCK) {
            uint32_t nb = n - b0 < BLOCK ? n - b0 : BLOCK;
            s_augment (vectors + (size_t) b0 * dim, nb, dim, max2, block);
            s_assign (block, nb, da, self->centroids, self->half, k, scores, perm + b0);
        }
        for (uint32_t i = 0; i < n; i++)
            self->off[perm[i] + 1]++;
        for (uint32_t c = 0; c < k; c++)
            self->off[c + 1] += self->off[c];
        uint32_t *fill = malloc (k * sizeof *fill);   // next free position of each cell
        ok = fill != NULL;
        if (ok)
            memcpy (fill, self->off, k * sizeof *fill);
        for (uint32_t i = 0; ok && i < n; i++)
            self->ids[fill[perm[i]]++] = i;
        free (fill);
        for (uint32_t c = 0; c < k; c++)
            self->sizes[c] = self->off[c + 1] - self->off[c];
        qsort (self->sizes, k, sizeof *self->sizes, s_desc);
    }
    free (perm);
    free (block);
    free (scores);
    if (!ok || s_pack (self, vectors) < 0)
        ivf_destroy (&self);
    return self;
}

//  Saved layout: "IVF1", uint32 n, cells, dim; then floats centroids (cells x (dim +
//  1)) and half (cells); then uint32 off (cells + 1) and ids (n). Host byte order.
#define IVF_MAGIC "IVF1"

uint8_t *
ivf_save (const ivf_t *self, size_t *len)
{
    size_t k = self->cells, da = (size_t) self->dim + 1;
    size_t parts[] = { 4 * sizeof (uint32_t), k * da * sizeof (float), k * sizeof (float),
                       (k + 1) * sizeof (uint32_t), (size_t) self->n * sizeof (uint32_t) };
    *len = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        *len += parts[i];
    uint8_t *out = malloc (*len), *p = out;
    if (!out)
        return NULL;
    uint32_t head[4];
    memcpy (head, IVF_MAGIC, 4);
    head[1] = self->n;
    head[2] = self->cells;
    head[3] = (uint32_t) self->dim;
    const void *src[] = { head, self->centroids, self->half, self->off, self->ids };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        memcpy (p, src[i], parts[i]);
        p += parts[i];
    }
    return out;
}

ivf_t *
ivf_load (const uint8_t *bytes, size_t len, const float *vectors, uint32_t n, int dim, int *rc)
{
    int dummy;
    rc = rc ? rc : &dummy;
    *rc = STRATA_ECORRUPT;
    uint32_t head[4];
    if (len < sizeof head)
        return NULL;
    memcpy (head, bytes, sizeof head);
    size_t k = head[2], da = (size_t) dim + 1;
    if (memcmp (head, IVF_MAGIC, 4) || head[1] != n || head[3] != (uint32_t) dim || k < 1 || k > n
        || len != sizeof head + (k * da + k) * sizeof (float) + (k + 1 + n) * sizeof (uint32_t))
        return NULL;
    *rc = STRATA_ENOMEM;
    ivf_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->n = n;
    self->cells = (uint32_t) k;
    self->dim = dim;
    self->centroids = malloc (k * da * sizeof *self->centroids);
    self->half = malloc (k * sizeof *self->half);
    self->off = malloc ((k + 1) * sizeof *self->off);
    self->ids = malloc ((size_t) n * sizeof *self->ids);
    self->sizes = malloc (k * sizeof *self->sizes);
    if (!self->centroids || !self->half || !self->off || !self->ids || !self->sizes) {
        ivf_destroy (&self);
        return NULL;
    }
    const uint8_t *p = bytes + sizeof head;
    memcpy (self->centroids, p, k * da * sizeof (float));
    p += k * da * sizeof (float);
    memcpy (self->half, p, k * sizeof (float));
    p += k * sizeof (float);
    memcpy (self->off, p, (k + 1) * sizeof (uint32_t));
    p += (k + 1) * sizeof (uint32_t);
    memcpy (self->ids, p, (size_t) n * sizeof (uint32_t));
    //  Every position in range, every item once, cells in order: or it is not an index.
    bool ok = self->off[0] == 0 && self->off[k] == n;
    for (size_t c = 0; ok && c < k; c++)
        ok = self->off[c] <= self->off[c + 1];
    uint8_t *seen = ok ? calloc (n, 1) : NULL;
    for (uint32_t i = 0; ok && seen && i < n; i++) {
        ok = self->ids[i] < n && !seen[self->ids[i]];
        if (ok)
            seen[self->ids[i]] = 1;
    }
    if (!ok || !seen) {
        *rc = ok ? STRATA_ENOMEM : STRATA_ECORRUPT;
        free (seen);
        ivf_destroy (&self);
        return NULL;
    }
    free (seen);
    for (size_t c = 0; c < k; c++)
        self->sizes[c] = self->off[c + 1] - self->off[c];
    qsort (self->sizes, k, sizeof *self->sizes, s_desc);
    if ((*rc = s_pack (self, vectors)) < 0)
        ivf_destroy (&self);
    return self;
}

void
ivf_destroy (ivf_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ivf_t *self = *self_p;
    free (self->centroids);
    free (self->half);
    free (self->off);
    free (self->ids);
    score_table_destroy (&self->table);
    free (self->first);
    free (self->sizes);
    free (self->cell_scores);
    free (self->probe_cells);
    free (self);
    *self_p = NULL;
}

uint32_t
ivf_cells (const ivf_t *self)
{
    return self->cells;
}

uint32_t
ivf_size (const ivf_t *self)
{
    return self->n;
}

uint32_t
ivf_cell_size (const ivf_t *self, uint32_t c)
{
    return c < self->cells ? self->off[c + 1] - self->off[c] : 0;
}

uint32_t
ivf_max_candidates (const ivf_t *self, uint32_t probe)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < probe && i < self->cells; i++)
        total += self->sizes[i];
    return (uint32_t) total;
}

int
ivf_search (ivf_t *self, const float *queries, uint32_t nq, uint32_t probe, uint32_t *items, float *scores,
            uint32_t cap, uint32_t *counts)
{
    uint32_t k = self->cells;
    int d = self->dim;
    probe = probe < 1 ? 1 : probe > k ? k : probe;
    if (self->cell_scores_cap < (size_t) nq * k) {
        free (self->cell_scores);
        self->cell_scores = malloc ((size_t) nq * k * sizeof *self->cell_scores);
        self->cell_scores_cap = self->cell_scores ? (size_t) nq * k : 0;
    }
    if (self->probe_cap < probe) {
        free (self->probe_cells);
        self->probe_cells = malloc (probe * sizeof *self->probe_cells);
        self->probe_cap = self->probe_cells ? probe : 0;
    }
    if (!self->cell_scores || !self->probe_cells)
        return STRATA_ENOMEM;
    //  Nearest cells of q' = [q, 0]: the largest q.c - |c'|^2 / 2.
    nn_matmul_nt_ld (queries, d, (int) nq, d, self->centroids, d + 1, (int) k, self->cell_scores, (int) k);
    for (uint32_t q = 0; q < nq; q++) {
        float *cs = self->cell_scores + (size_t) q * k;
        for (uint32_t c = 0; c < k; c++)
            cs[c] -= self->half[c];
        int got = nn_top_k (self->cell_scores + (size_t) q * k, (int) k, -1, NULL, self->probe_cells, (int) probe);
        uint32_t *it = items + (size_t) q * cap;
        float *sc = scores + (size_t) q * cap;
        uint32_t w = 0;
        for (int i = 0; i < got; i++) {
            uint32_t c = (uint32_t) self->probe_cells[i];
            uint32_t lo = self->off[c], len = self->off[c + 1] - lo;
            if (len > cap - w)
                len = cap - w;
            if (!len)
                continue;
            score_table_run_range (self->table, queries + (size_t) q * d, self->first[c], len, sc + w);
            memcpy (it + w, self->ids + lo, len * sizeof *it);
            w += len;
        }
        counts[q] = w;
    }
    return 0;
}

float
ivf_bound (const ivf_t *self, const float *q)
{
    return score_table_bound (self->table, q);
}

int
ivf_exact_top (const float *vectors, uint32_t n, int dim, const float *queries, uint32_t nq, int k, int32_t *out)
{
    enum { CHUNK = 16 };   // queries scored together: one pass over the vectors each
    float *all = malloc ((size_t) CHUNK * n * sizeof *all);
    int32_t *top = malloc ((size_t) (k > 0 ? k : 1) * sizeof *top);
    if (!all || !top) {
        free (all);
        free (top);
        return STRATA_ENOMEM;
    }
    for (uint32_t q0 = 0; q0 < nq; q0 += CHUNK) {
        uint32_t m = nq - q0 < CHUNK ? nq - q0 : CHUNK;
        nn_matmul_nt (queries + (size_t) q0 * dim, (int) m, dim, vectors, (int) n, all);
        for (uint32_t q = 0; q < m; q++) {
            int got = nn_top_k (all + (size_t) q * n, (int) n, -1, NULL, top, k);
            for (int i = 0; i < k; i++)
                out[(size_t) (q0 + q) * k + i] = i < got ? top[i] : -1;
        }
    }
    free (all);
    free (top);
    return 0;
}

double
ivf_recall (ivf_t *self, const float *queries, uint32_t nq, uint32_t probe, int k, const int32_t *exact)
{
    uint32_t n = self->n, cap = ivf_max_candidates (self, probe);
    uint32_t *items = malloc ((size_t) (cap ? cap : 1) * sizeof *items);
    float *scores = malloc ((size_t) (cap ? cap : 1) * sizeof *scores);
    uint8_t *found = calloc (n, 1);
    double hits = 0, total = 0;
    int ok = items && scores && found;
    for (uint32_t q = 0; ok && q < nq; q++) {
        uint32_t count;
        ok = ivf_search (self, queries + (size_t) q * self->dim, 1, probe, items, scores, cap, &count) == 0;
        for (uint32_t i = 0; ok && i < count; i++)
            found[items[i]] = 1;
        for (int i = 0; ok && i < k; i++)
            if (exact[(size_t) q * k + i] >= 0) {
                hits += found[exact[(size_t) q * k + i]];
                total++;
            }
        for (uint32_t i = 0; ok && i < count; i++)
            found[items[i]] = 0;
    }
    free (items);
    free (scores);
    free (found);
    return ok ? (total > 0 ? hits / total : 1.0) : -1.0;
}
