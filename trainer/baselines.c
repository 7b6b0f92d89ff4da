/*  baselines: see baselines.h. */
#include "baselines.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"

//  LAPACK from OpenBLAS (Fortran interface; OpenBLAS ships no lapacke.h here).
extern void spotrf_ (const char *uplo, const int *n, float *a, const int *lda, int *info);
extern void spotri_ (const char *uplo, const int *n, float *a, const int *lda, int *info);

typedef enum { POPULARITY, KNN, EASE } kind_t;

struct _baseline_t {
    kind_t kind;
    uint32_t n_items;
    float *pop;          // POPULARITY: counts
    uint32_t *nbr;       // KNN: n_items * k neighbour indices
    float *sim;          // KNN: their similarities
    int k;
    float decay;
    float *B;            // EASE: n_items x n_items, row-major
};

void
baseline_destroy (baseline_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    baseline_t *b = *self_p;
    free (b->pop);
    free (b->nbr);
    free (b->sim);
    free (b->B);
    free (b);
    *self_p = NULL;
}

baseline_t *
baseline_popularity (const dataset_t *train)
{
    baseline_t *b = calloc (1, sizeof *b);
    if (!b)
        return NULL;
    b->kind = POPULARITY;
    b->n_items = train->n_items;
    b->pop = calloc (train->n_items + 1, sizeof *b->pop);
    if (!b->pop) {
        baseline_destroy (&b);
        return NULL;
    }
    for (size_t i = 0; i < train->n_events; i++)
        b->pop[train->items[i]] += 1;
    return b;
}

//  Per-user distinct items (co-occurrence is counted once per user), as CSR.
typedef struct {
    uint32_t *off, *items;
} csr_t;

static int
s_distinct (const dataset_t *d, csr_t *out)
{
    out->off = calloc ((size_t) d->n_users + 1, sizeof *out->off);
    out->items = malloc ((d->n_events + 1) * sizeof *out->items);
    uint8_t *mark = calloc (d->n_items + 1, 1);
    if (!out->off || !out->items || !mark) {
        free (mark);
        return -1;
    }
    size_t w = 0;
    for (uint32_t u = 0; u < d->n_users; u++) {
        for (uint32_t k = d->offsets[u]; k < d->offsets[u + 1]; k++)
            if (!mark[d->items[k]]) {
                mark[d->items[k]] = 1;
                out->items[w++] = d->items[k];
            }
        for (uint32_t k = (uint32_t) out->off[u]; k < w; k++)
            mark[out->items[k]] = 0;
        out->off[u + 1] = (uint32_t) w;
    }
    free (mark);
    return 0;
}

//  The transpose: users of each item.
static int
s_transpose (const csr_t *ui, uint32_t n_users, uint32_t n_items, csr_t *out)
{
    size_t n = ui->off[n_users];
    out->off = calloc ((size_t) n_items + 2, sizeof *out->off);
    out->items = malloc ((n + 1) * sizeof *out->items);
    if (!out->off || !out->items)
        return -1;
    for (size_t k = 0; k < n; k++)
        out->off[ui->items[k] + 2]++;
    for (uint32_t i = 0; i < n_items; i++)
        out->off[i + 2] += out->off[i + 1];
    for (uint32_t u = 0; u < n_users; u++)
        for (uint32_t k = ui->off[u]; k < ui->off[u + 1]; k++)
            out->items[out->off[ui->items[k] + 1]++] = u;
    return 0;
}

typedef struct {
    uint32_t j;
    float s;
} pair_t;

static int
s_pair_desc (const void *a, const void *b)
{
    float x = ((const pair_t *) a)->s, y = ((const pair_t *) b)->s;
    if (x != y)
        return x > y ? -1 : 1;
    return ((const pair_t *) a)->j < ((const pair_t *) b)->j ? -1 : 1;
}

baseline_t *
baseline_knn (const dataset_t *train, const knn_params_t *params)
{
    baseline_t *b = calloc (1, sizeof *b);
    csr_t ui = { 0 }, iu = { 0 };
    float *acc = NULL;
    uint32_t *touched = NULL;
    pair_t *pairs = NULL;
    uint32_t ni = train->n_items;
    if (!b || s_distinct (train, &ui) < 0 || s_transpose (&ui, train->n_users, ni, &iu) < 0)
        goto fail;
    b->kind = KNN;
    b->n_items = ni;
    b->k = params->k > 0 ? params->k : 50;
    b->decay = params->decay > 0 ? params->decay : 1;
    b->nbr = malloc ((size_t) ni * (size_t) b->k * sizeof *b->nbr);
    b->sim = calloc ((size_t) ni * (size_t) b->k, sizeof *b->sim);
    acc = calloc (ni + 1, sizeof *acc);
    touched = malloc ((ni + 1) * sizeof *touched);
    pairs = malloc ((ni + 1) * sizeof *pairs);
    if (!b->nbr || !b->sim || !acc || !touched || !pairs)
        goto fail;
    for (uint32_t i = 0; i < ni; i++) {
        size_t nt = 0;
        for (uint32_t a = iu.off[i]; a < iu.off[i + 1]; a++) {
            uint32_t u = iu.items[a];
            for (uint32_t k = ui.off[u]; k < ui.off[u + 1]; k++) {
                uint32_t j = ui.items[k];
                if (j == i)
                    continue;
                if (acc[j] == 0)
                    touched[nt++] = j;
                acc[j] += 1;
            }
        }
        float ci = (float) (iu.off[i + 1] - iu.off[i]);
        for (size_t t = 0; t < nt; t++) {
            uint32_t j = touched[t];
            float cj = (float) (iu.off[j + 1] - iu.off[j]);
            pairs[t] = (pair_t) { j, acc[j] / (sqrtf (ci * cj) + params->shrink) };
            acc[j] = 0;
        }
        qsort (pairs, nt, sizeof *pairs, s_pair_desc);
        for (int k = 0; k < b->k; k++) {
            b->nbr[(size_t) i * b->k + k] = k < (int) nt ? pairs[k].j : 0;
            b->sim[(size_t) i * b->k + k] = k < (int) nt ? pairs[k].s : 0;
        }
    }
    free (ui.off);
    free (ui.items);
    free (iu.off);
    free (iu.items);
    free (acc);
    free (touched);
    free (pairs);
    return b;
fail:
    free (ui.off);
    free (ui.items);
    free (iu.off);
    free (iu.items);
    free (acc);
    free (touched);
    free (pairs);
    baseline_destroy (&b);
    return NULL;
}

baseline_t *
baseline_ease (const dataset_t *train, float lambda, size_t max_bytes)
{
    size_t n = train->n_items;
    if (n == 0 || n * n * sizeof (float) > max_bytes)
        return NULL;
    baseline_t *b = calloc (1, sizeof *b);
    csr_t ui = { 0 };
    if (!b || s_distinct (train, &ui) < 0)
        goto fail;
    b->kind = EASE;
    b->n_items = (uint32_t) n;
    b->B = calloc (n * n, sizeof *b->B);
    if (!b->B)
        goto fail;
    //  Gram matrix G = X'X (X binary users x items), only the upper triangle in
    //  column-major terms is needed by spotrf('U'); we fill it fully, it is symmetric.
    float *G = b->B;
    for (uint32_t u = 0; u < train->n_users; u++)
        for (uint32_t a = ui.off[u]; a < ui.off[u + 1]; a++)
            for (uint32_t c = ui.off[u]; c < ui.off[u + 1]; c++)
                G[(size_t) ui.items[a] * n + ui.items[c]] += 1;
    for (size_t i = 0; i < n; i++)
        G[i * n + i] += lambda;
    int nn = (int) n, info = 0;
    spotrf_ ("U", &nn, G, &nn, &info);
    if (info == 0)
        spotri_ ("U", &nn, G, &nn, &info);
    if (info != 0)
        goto fail;
    //  spotri filled one triangle (column-major 'U' = row-major lower); mirror it.
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            G[i * n + j] = G[j * n + i];
    //  B_ij = -P_ij / P_jj, B_jj = 0.
    float *diag = malloc (n * sizeof *diag);
    if (!diag)
        goto fail;
    for (size_t j = 0; j < n; j++)
        diag[j] = G[j * n + j];
    for (size_t i = 0; i < n; i++) {
        float *row = G + i * n;
        for (size_t j = 0; j < n; j++)
            row[j] = -row[j] / diag[j];
        row[i] = 0;
    }
    free (diag);
    free (ui.off);
    free (ui.items);
    return b;
fail:
    free (ui.off);
    free (ui.items);
    baseline_destroy (&b);
    return NULL;
}

static void
s_score (void *model, const dataset_t *train, const uint32_t *users, size_t n, float *scores)
{
    baseline_t *b = model;
    size_t ni = b->n_items;
    for (size_t x = 0; x < n; x++) {
        float *s = scores + x * ni;
        uint32_t u = users[x];
        uint32_t from = train->offsets[u], to = train->offsets[u + 1];
        switch (b->kind) {
        case POPULARITY:
            memcpy (s, b->pop, ni * sizeof *s);
            break;
        case KNN: {
            memset (s, 0, ni * sizeof *s);
            float w = 1;
            for (uint32_t k = to; k-- > from; w *= b->decay) {
                const uint32_t *nb = b->nbr + (size_t) train->items[k] * b->k;
                const float *sm = b->sim + (size_t) train->items[k] * b->k;
                for (int q = 0; q < b->k; q++)
                    s[nb[q]] += w * sm[q];
            }
            break;
        }
        case EASE: {
            //  x_u B: the sum of the rows of B of the user's distinct items.
            memset (s, 0, ni * sizeof *s);
            for (uint32_t k = from; k < to; k++) {
                bool seen = false;
                for (uint32_t q = from; q < k && !seen; q++)
                    seen = train->items[q] == train->items[k];
                if (!seen)
                    nn_axpy ((int) ni, 1.0f, b->B + (size_t) train->items[k] * ni, s);
            }
            break;
        }
        }
    }
}

scorer_t
baseline_scorer (baseline_t *self)
{
    static const char *names[] = { "popularity", "item-kNN", "EASE" };
    scorer_t s = { names[self->kind], s_score, self };
    return s;
}
