/*  search_rank: see search_rank.h. */
#include "search_rank.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define F SEARCH_FEATURES
//  The prior: the text score alone (w = e0), worth PRIOR_QUERIES past queries of
//  evidence. Little data moves the ranker little; it cannot turn text relevance upside
//  down on a handful of queries that say nothing about it.
#define PRIOR_QUERIES 1.0

void
search_conversions (const query_terms_t *choices, uint32_t n_items, float *out)
{
    memset (out, 0, (size_t) n_items * sizeof *out);
    for (uint32_t k = 0; choices && k < choices->n; k++)
        for (uint32_t j = choices->off[k]; j < choices->off[k + 1]; j++)
            if (choices->items[j] < n_items)
                out[choices->items[j]] += choices->weights[j];
}

void
search_ranker_score (const float *w, const float *features, uint32_t n, float *out)
{
    for (uint32_t i = 0; i < n; i++) {
        float z = 0;
        for (int k = 0; k < F; k++)
            z += w[k] * features[(size_t) i * F + k];
        out[i] = z;
    }
}

//  The fitting data: groups of candidates, their features and target shares.
typedef struct {
    float *x;          // rows x F
    double *t;         // rows: the share of the group's credit
    uint32_t *start;   // groups + 1
    size_t rows, cap;
    uint32_t groups, gcap;
} fitset_t;

static int
s_grow (fitset_t *s, size_t rows)
{
    if (s->rows + rows > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->rows + rows)
            cap *= 2;
        float *x = realloc (s->x, cap * F * sizeof *x);
        if (x)
            s->x = x;
        double *t = x ? realloc (s->t, cap * sizeof *t) : NULL;
        if (!t)
            return -1;
        s->t = t;
        s->cap = cap;
    }
    if (s->groups + 2 > s->gcap) {
        uint32_t cap = s->gcap ? s->gcap * 2 : 1024;
        uint32_t *st = realloc (s->start, cap * sizeof *st);
        if (!st)
            return -1;
        s->start = st;
        s->gcap = cap;
    }
    return 0;
}

//  Candidate order: score descending, then item ascending (deterministic).
typedef struct {
    float score;
    uint32_t item;
} cand_t;

static int
s_cand_cmp (const void *a, const void *b)
{
    const cand_t *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->item < y->item ? -1 : x->item > y->item;
}

//  The credit query k gave to item, or 0 (its items are sorted).
static float
s_credit (const query_terms_t *c, uint32_t k, uint32_t item)
{
    uint32_t lo = c->off[k], hi = c->off[k + 1];
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (c->items[mid] == item)
            return c->weights[mid];
        if (c->items[mid] < item)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

//  Mean cross-entropy over the groups plus the prior's pull towards e0, and with
//  grad/hess non-NULL their gradient and Hessian (F, F x F).
static double
s_objective (const fitset_t *s, const double *w, double *grad, double *hess)
{
    double loss = 0;
    if (grad) {
        memset (grad, 0, F * sizeof *grad);
        memset (hess, 0, F * F * sizeof *hess);
    }
    double *z = malloc ((SEARCH_RANK_CANDIDATES + 1) * sizeof *z);
    if (!z)
        return INFINITY;
    for (uint32_t g = 0; g < s->groups; g++) {
        uint32_t a = s->start[g], n = s->start[g + 1] - a;
        double top = -INFINITY;
        for (uint32_t i = 0; i < n; i++) {
            const float *x = s->x + (size_t) (a + i) * F;
            double v = 0;
            for (int k = 0; k < F; k++)
                v += w[k] * x[k];
            z[i] = v;
            top = v > top ? v : top;
        }
        double sum = 0;
        for (uint32_t i = 0; i < n; i++)
            sum += exp (z[i] - top);
        double lse = top + log (sum);
        for (uint32_t i = 0; i < n; i++)
            loss -= s->t[a + i] * (z[i] - lse);
        if (!grad)
            continue;
        double mu[F] = { 0 };
        for (uint32_t i = 0; i < n; i++) {
            const float *x = s->x + (size_t) (a + i) * F;
            double p = exp (z[i] - lse), d = p - s->t[a + i];
            for (int k = 0; k < F; k++) {
                grad[k] += d * x[k];
                mu[k] += p * x[k];
                for (int l = 0; l <= k; l++)
                    hess[k * F + l] += p * x[k] * x[l];
            }
        }
        for (int k = 0; k < F; k++)
            for (int l = 0; l <= k; l++)
                hess[k * F + l] -= mu[k] * mu[l];
    }
    free (z);
    double G = s->groups ? s->groups : 1, lambda = PRIOR_QUERIES / G, reg = 0;
    for (int k = 0; k < F; k++)
        reg += (w[k] - (k == 0)) * (w[k] - (k == 0));
    if (grad) {
        for (int k = 0; k < F; k++) {
            grad[k] = grad[k] / G + lambda * (w[k] - (k == 0));
            for (int l = 0; l <= k; l++) {
                hess[k * F + l] = hess[k * F + l] / G + (k == l ? lambda : 0);
                hess[l * F + k] = hess[k * F + l];
            }
        }
    }
    return loss / G + 0.5 * lambda * reg;
}

//  Solves H d = g for a symmetric positive definite H (Cholesky). 0, or -1 when H is
//  not positive definite.
static int
s_solve (const double *H, const double *g, double *d)
{
    double Lm[F * F] = { 0 }, y[F];
    for (int i = 0; i < F; i++)
        for (int j = 0; j <= i; j++) {
            double v = H[i * F + j];
            for (int k = 0; k < j; k++)
                v -= Lm[i * F + k] * Lm[j * F + k];
            if (i == j) {
                if (v <= 0)
                    return -1;
                Lm[i * F + i] = sqrt (v);
            }
            else
                Lm[i * F + j] = v / Lm[j * F + j];
        }
    for (int i = 0; i < F; i++) {
        double v = g[i];
        for (int k = 0; k < i; k++)
            v -= Lm[i * F + k] * y[k];
        y[i] = v / Lm[i * F + i];
    }
    for (int i = F - 1; i >= 0; i--) {
        double v = y[i];
        for (int k = i + 1; k < F; k++)
            v -= Lm[k * F + i] * d[k];
        d[i] = v / Lm[i * F + i];
    }
    return 0;
}

//  Queries by credit, most first (then in query order).
typedef struct {
    double credit;
    uint32_t k;
} ranked_query_t;

static int
s_query_cmp (const void *a, const void *b)
{
    const ranked_query_t *x = a, *y = b;
    if (x->credit != y->credit)
        return x->credit > y->credit ? -1 : 1;
    return x->k < y->k ? -1 : x->k > y->k;
}

//  The past queries to fit on: all of them, or the SEARCH_RANK_MAX_QUERIES most
//  credited, in query order. NULL on no memory.
static uint32_t *
s_queries (const query_terms_t *choices, uint32_t *n)
{
    ranked_query_t *q = malloc ((choices->n ? choices->n : 1) * sizeof *q);
    uint32_t *out = malloc ((choices->n ? choices->n : 1) * sizeof *out);
    if (!q || !out) {
        free (q);
        free (out);
        return NULL;
    }
    for (uint32_t k = 0; k < choices->n; k++) {
        q[k] = (ranked_query_t) { 0, k };
        for (uint32_t j = choices->off[k]; j < choices->off[k + 1]; j++)
            q[k].credit += choices->weights[j];
    }
    *n = choices->n;
    if (*n > SEARCH_RANK_MAX_QUERIES) {
        qsort (q, choices->n, sizeof *q, s_query_cmp);
        *n = SEARCH_RANK_MAX_QUERIES;
    }
    for (uint32_t i = 0; i < *n; i++)
        out[i] = q[i].k;
    free (q);
    return out;
}

//  Builds the fitting data: each past query's candidates, features and credit shares.
static int
s_collect (search_index_t *index, const query_terms_t *choices, float *conversions, uint32_t n_items, fitset_t *s)
{
    uint32_t cap = search_index_size (index);
    uint32_t *items = malloc ((cap ? cap : 1) * sizeof *items);
    float *scores = malloc ((cap ? cap : 1) * sizeof *scores);
    cand_t *cand = malloc ((cap ? cap : 1) * sizeof *cand);
    uint32_t top_items[SEARCH_RANK_CANDIDATES];
    float top_scores[SEARCH_RANK_CANDIDATES];
    uint32_t n_queries = 0, *queries = choices ? s_queries (choices, &n_queries) : NULL;
    int rc = items && scores && cand && queries ? 0 : STRATA_ENOMEM;
    for (uint32_t qi = 0; rc == 0 && qi < n_queries; qi++) {
        uint32_t k = queries[qi];
        uint32_t found = search_index_query (index, choices->terms[k], NULL, 0, true, items, scores, cap);
        for (uint32_t i = 0; i < found; i++)
            cand[i] = (cand_t) { scores[i], items[i] };
        qsort (cand, found, sizeof *cand, s_cand_cmp);
        uint32_t n = found < SEARCH_RANK_CANDIDATES ? found : SEARCH_RANK_CANDIDATES;
        double credit = 0;
        for (uint32_t i = 0; i < n; i++) {
            top_items[i] = cand[i].item;
            top_scores[i] = cand[i].score;
            credit += s_credit (choices, k, cand[i].item);
        }
        if (credit <= 0)
            continue;
        if (s_grow (s, n) < 0) {
            rc = STRATA_ENOMEM;
            break;
        }
        //  Leave this query's own choices out of the counts while it is described.
        for (uint32_t j = choices->off[k]; j < choices->off[k + 1]; j++)
            if (choices->items[j] < n_items)
                conversions[choices->items[j]] -= choices->weights[j];
        search_index_features (index, choices->terms[k], top_items, top_scores, n, conversions, n_items,
                               s->x + s->rows * F);
        for (uint32_t j = choices->off[k]; j < choices->off[k + 1]; j++)
            if (choices->items[j] < n_items)
                conversions[choices->items[j]] += choices->weights[j];
        for (uint32_t i = 0; i < n; i++)
            s->t[s->rows + i] = s_credit (choices, k, top_items[i]) / credit;
        s->start[s->groups++] = (uint32_t) s->rows;
        s->rows += n;
        s->start[s->groups] = (uint32_t) s->rows;
    }
    free (items);
    free (scores);
    free (cand);
    free (queries);
    return rc;
}

int
search_ranker_fit (search_index_t *index, const query_terms_t *choices, float *conversions, uint32_t n_items,
                   search_ranker_t *out)
{
    fitset_t s = { 0 };
    int rc = s_collect (index, choices, conversions, n_items, &s);
    if (rc == 0 && s.groups == 0)
        rc = STRATA_ENOTFOUND;   // nothing to fit on
    if (rc == 0) {
        double w[F] = { 1 }, grad[F], hess[F * F], d[F];
        double base = s_objective (&s, w, NULL, NULL);
        double cur = s_objective (&s, w, grad, hess);
        for (int it = 0; it < 30; it++) {
            if (s_solve (hess, grad, d) < 0)
                break;
            double next = cur, a = 1, nw[F];
            for (; a > 1e-6; a /= 2) {
                for (int k = 0; k < F; k++)
                    nw[k] = w[k] - a * d[k];
                if ((next = s_objective (&s, nw, NULL, NULL)) < cur)
                    break;
            }
            if (!(next < cur))
                break;
            memcpy (w, nw, sizeof w);
            bool done = cur - next < 1e-9;
            cur = s_objective (&s, w, grad, hess);
            if (done)
                break;
        }
        for (int k = 0; k < F; k++)
            out->w[k] = (float) w[k];
        out->queries = s.groups;
        out->loss = cur;
        out->base_loss = base;
    }
    free (s.x);
    free (s.t);
    free (s.start);
    return rc;
}
