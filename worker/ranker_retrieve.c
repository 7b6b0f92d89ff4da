/*  ranker_retrieve: RECOMMEND and SIMILAR, the best items by inner product with a
    query vector (a user's, an item's) that pass the request's filters.

    Retrieval scans approximately and finishes exactly: the packed table (score.h) and
    the approximate index (ivf.h) each score within a known bound of the exact inner
    product, so the candidates that could still be in the exact best k are few and are
    scored exactly (s_refine). A list of approximate candidates that filters leave too
    short gives way to an exact scan for that query alone, so a tight filter never
    returns fewer items than it should.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "rank_private.h"

//  Every row's score for nq queries (nq x dim) into scores (nq x rows): the packed
//  table's scan for the rows it holds (within its bound of exact: s_refine finishes
//  the job), the others exactly (an approximate index's items, when a query falls back
//  to exact search, and new items that found no room in the table).
void
ranker_exact_scores (served_t *s, const float *q, uint32_t nq, float *scores)
{
    int d = s->info.dim;
    uint32_t base = s->table_base, packed = s->table ? score_table_size (s->table) : 0, rest = base + packed;
    if (base)
        nn_matmul_nt_ld (q, d, (int) nq, d, s->vectors, d, (int) base, scores, (int) s->rows);
    if (packed)
        score_table_run (s->table, q, nq, scores + base, s->rows);
    if (rest < s->rows)
        nn_matmul_nt_ld (q, d, (int) nq, d, s->vectors + (size_t) rest * d, d, (int) (s->rows - rest), scores + rest,
                         (int) s->rows);
}

//  The largest difference between a candidate's score and its exact inner product with
//  q: the approximate index's and the packed table's, whichever is used (-1: exact).
static float
s_bound (const served_t *s, const float *q)
{
    float b = s->ivf ? ivf_bound (s->ivf, q) : -1, t = s->table ? score_table_bound (s->table, q) : -1;
    return b > t ? b : t;
}

//  The approximate index's candidates for nq queries (nq x dim), scored within
//  ivf_bound of exact, and every row the index does not cover (items added since it
//  was built), scanned in their own table (the rest, without room there, exactly):
//  query k's are (*items, *scores) + k * *stride, counts[k] of them. 0, or
//  STRATA_ENOMEM.
int
ranker_ivf_candidates (ranker_t *self, served_t *s, const float *q, uint32_t nq, uint32_t **items, float **scores,
                  uint32_t *counts, uint32_t *stride)
{
    int d = s->info.dim;
    uint32_t indexed = ivf_size (s->ivf), tail = s->rows > indexed ? s->rows - indexed : 0;
    *stride = s->ivf_cap + tail;
    *items = scratch_get (&self->cand_items, (size_t) nq * *stride * sizeof **items);
    *scores = scratch_get (&self->cand_scores, (size_t) nq * *stride * sizeof **scores);
    if (!*items || !*scores)
        return STRATA_ENOMEM;
    int rc = ivf_search (s->ivf, q, nq, s->probe, *items, *scores, *stride, counts);
    if (rc < 0)
        return rc;
    uint32_t packed = s->table ? score_table_size (s->table) : 0;
    packed = packed < tail ? packed : tail;
    for (uint32_t k = 0; tail && k < nq; k++) {
        uint32_t *it = *items + (size_t) k * *stride + counts[k];
        float *sc = *scores + (size_t) k * *stride + counts[k];
        if (packed)
            score_table_run (s->table, q + (size_t) k * d, 1, sc, packed);
        if (packed < tail)
            nn_matvec (s->vectors + (size_t) (indexed + packed) * d, (int) (tail - packed), d, q + (size_t) k * d,
                       sc + packed);
        for (uint32_t j = 0; j < tail; j++)
            it[j] = indexed + j;
        counts[k] += tail;
    }
    return 0;
}

//  Retrieval's last step. scanned holds n candidates' scores, candidate i being item
//  ids[i] (ids NULL: item i), each within bound of its exact inner product with vec
//  (bound < 0: exact already), and self->top the best `got` eligible candidates by
//  scanned score (`want` asked). When got == want, their lowest scanned score less
//  twice the bound is a bar every item of the exact best `want` clears; the eligible
//  candidates that clear it (all of them when fewer than want are eligible) are
//  scored exactly, and the best `want` of them go to sel / sel_scores. Returns how
//  many.
static int
s_refine (ranker_t *self, const req_t *r, const float *scanned, const uint32_t *ids, uint32_t n, float bound,
          const float *vec, int want, int got, uint32_t *sel, float *sel_scores)
{
    served_t *s = self->cur;
    int d = s->info.dim;
    uint32_t m = 0, cap = (uint32_t) got;
    uint32_t *at;   // candidates, as indices into scanned
    if (got < want || bound < 0) {
        //  Every eligible item is among them (or the scores were exact already).
        at = scratch_get (&self->refine_items, (size_t) (got ? got : 1) * sizeof *at);
        for (int i = 0; at && i < got; i++)
            at[m++] = (uint32_t) self->top[i];
    }
    else {
        float bar = scanned[self->top[got - 1]] - 2 * bound;
        //  The candidates that clear the bar (few), then those of them that are eligible.
        at = scratch_get (&self->refine_items, ((size_t) n + 1) * sizeof *at);
        uint32_t k = at ? nn_at_least (scanned, n, bar, at) : 0;
        for (uint32_t j = 0; j < k; j++) {
            uint32_t item = ids ? ids[at[j]] : at[j];
            if (!self->mark[item] && ranker_passes (self, r, item))
                at[m++] = at[j];
        }
        cap = m;
    }
    float *exact = scratch_get (&self->refine_scores, (size_t) (cap ? cap : 1) * sizeof *exact);
    if (!at || !exact)
        return 0;
    for (uint32_t i = 0; i < m; i++)
        exact[i] = nn_dot (vec, s->vectors + (size_t) (ids ? ids[at[i]] : at[i]) * d, d);
    got = nn_top_k (exact, (int) m, -1, NULL, self->top, want);
    for (int i = 0; i < got; i++) {
        uint32_t j = at[self->top[i]];
        sel[i] = ids ? ids[j] : j;
        sel_scores[i] = exact[self->top[i]];
    }
    return got;
}

//  The best `want` of the candidates that pass the filters and are not marked, best
//  first, into sel / sel_scores; returns how many. Candidates are the whole catalogue's
//  scan (items NULL) or an approximate index's list, refined to exact scores against
//  vec, the query vector; the list gives way to exact search for this query when it
//  leaves fewer than want (tight filters, many exclusions).
static int
s_pick (ranker_t *self, const req_t *r, const cands_t *c, const float *vec, int want, uint32_t *sel,
        float *sel_scores)
{
    served_t *s = self->cur;
    int got;
    if (c->items) {
        uint8_t *drop = scratch_get (&self->cand_drop, c->m ? c->m : 1);
        if (!drop)
            return 0;
        for (uint32_t i = 0; i < c->m; i++)
            drop[i] = self->mark[c->items[i]] || !ranker_passes (self, r, c->items[i]);
        got = nn_top_k (c->scores, (int) c->m, -1, drop, self->top, want);
        if (got == want)
            return s_refine (self, r, c->scores, c->items, c->m, s_bound (s, vec), vec, want, got, sel, sel_scores);
        float *all = scratch_get (&self->exact, (size_t) s->rows * sizeof *all);
        if (!all)
            return 0;
        ranker_exact_scores (s, vec, 1, all);
        cands_t exact = { NULL, all, s->rows };
        return s_pick (self, r, &exact, vec, want, sel, sel_scores);
    }
    got = ranker_select (self, r, c->scores, c->m, want);
    float bound = s->table ? score_table_bound (s->table, vec) : -1;   // the rest is exact
    return got ? s_refine (self, r, c->scores, NULL, c->m, bound, vec, want, got, sel, sel_scores) : 0;
}


//  Answers a RECOMMEND: from its retrieval candidates (its user vector vec, row `slot`
//  of the last batch), or from popularity when slot < 0.
void
ranker_recommend (ranker_t *self, req_t *r, const cands_t *c, const float *vec)
{
    served_t *s = self->cur;
    ranker_mark (self, r, 1);
    uint32_t items[MAX_K];
    float out[MAX_K];
    int got;
    const char *source;
    if (r->slot < 0) {
        //  No usable history: the most popular items that pass the filters.
        got = 0;
        for (uint32_t i = 0; i < s->n_popular && got < (int) r->k; i++) {
            uint32_t it = s->popular[i];
            if (self->mark[it] || !ranker_passes (self, r, it))
                continue;
            items[got] = it;
            out[got++] = s->info.popularity[it];
        }
        source = "popular";
    }
    else {
        int want = (int) ((uint32_t) self->cfg.rerank_top > r->k ? (uint32_t) self->cfg.rerank_top : r->k);
        uint32_t *sel = scratch_get (&self->sel, (size_t) want * sizeof *sel);
        float *retrieval = scratch_get (&self->sel_scores, (size_t) want * sizeof *retrieval);
        got = sel && retrieval ? s_pick (self, r, c, vec, want, sel, retrieval) : 0;
        if (self->cfg.rerank_top > 0 && model_has_ranker (s->m) && got > 0
            && model_rank_candidates (s->m, (uint32_t) r->slot, sel, (uint32_t) got, self->logits) == 0) {
            for (int i = 0; i < got; i++)
                self->logits[i] += (float) self->cfg.rerank_blend * retrieval[i];
            ranker_sort (sel, self->logits, got);
            memcpy (retrieval, self->logits, (size_t) got * sizeof *retrieval);
        }
        got = got < (int) r->k ? got : (int) r->k;
        if (got > 0) {
            memcpy (items, sel, (size_t) got * sizeof *items);
            memcpy (out, retrieval, (size_t) got * sizeof *out);
        }
        source = s->ivf ? "model-ivf" : "model";
    }
    ranker_mark (self, r, 0);
    ranker_reply (self, r, items, out, got, source);
}

void
ranker_similar (ranker_t *self, req_t *r)
{
    served_t *s = self->cur;
    uint32_t n = s->rows;
    int d = s->info.dim;
    const float *vec = s->vectors + (size_t) r->item * d;
    cands_t c = { NULL, NULL, n };
    uint32_t counts, stride;
    uint32_t *ci;
    float *cs;
    if (s->ivf && ranker_ivf_candidates (self, s, vec, 1, &ci, &cs, &counts, &stride) == 0)
        c = (cands_t) { ci, cs, counts };
    if (!c.items) {
        float *scores = scratch_get (&self->scores, (size_t) n * sizeof *scores);
        if (scores)
            ranker_exact_scores (s, vec, 1, scores);
        c.scores = scores;
    }
    if (!c.scores) {
        ranker_fail (self, r, "out of memory", STRATA__V1__ERROR_CODE__INTERNAL);
        return;
    }
    ranker_mark (self, r, 1);
    uint32_t items[MAX_K];
    float out[MAX_K];
    int got = s_pick (self, r, &c, vec, (int) r->k, items, out);
    ranker_mark (self, r, 0);
    ranker_reply (self, r, items, out, got, s->ivf ? "item-ivf" : "item");
}

//  Re-ranks the best of m text candidates (in text order) with the version's learned
