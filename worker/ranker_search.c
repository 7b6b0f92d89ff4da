/*  ranker_search: SEARCH, text relevance over the catalogue (search.h) re-ranked by
    what the served version learned and blended with the user's model score.

    Search answers from the catalogue alone when no version is served yet; each part
    a version brings (learned query terms, the search ranker, the user tower) joins in
    when it is there, and the reply's source names the parts that took part, so a
    client (and a quality test) can tell which answer it got.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "rank_private.h"
#include "search.h"
#include "search_rank.h"

//  search ranker: their scores become the ranker's, scaled to [0, 1] among them; any
//  candidates past SEARCH_RANK_CANDIDATES stay below, in text order.
static void
s_search_rerank (ranker_t *self, const char *query, uint32_t *items, float *scores, int m)
{
    served_t *s = self->cur;
    int n = m < SEARCH_RANK_CANDIDATES ? m : SEARCH_RANK_CANDIDATES;
    float f[SEARCH_RANK_CANDIDATES * SEARCH_FEATURES], z[SEARCH_RANK_CANDIDATES];
    search_index_features (self->index, query, items, scores, (uint32_t) n, s->info.conversions,
                           s->info.conversions ? s->info.items : 0, f);
    search_ranker_score (s->info.ranker, f, (uint32_t) n, z);
    float lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        lo = z[i] < lo ? z[i] : lo;
        hi = z[i] > hi ? z[i] : hi;
    }
    for (int i = 0; i < n; i++)
        scores[i] = hi > lo ? (z[i] - lo) / (hi - lo) : 1;
    for (int i = n; i < m; i++)
        scores[i] -= 1;   // text scores are in [0, 1]: below every re-ranked one
}

//  Text matches (BM25F, with the learned "queries" field unless text_only), scaled by
//  the best; the best SEARCH_POOL that pass the filters are re-ranked by the version's
//  learned search ranker (unless text_only), then blended, when the request names a
//  user with a history, with that user's retrieval score (scaled to [0, 1] among
//  them).
void
ranker_search (ranker_t *self, req_t *r)
{
    served_t *s = self->cur;
    uint32_t n = self->cat.n;
    uint32_t *items = scratch_get (&self->s_items, (size_t) n * sizeof *items);
    float *text = scratch_get (&self->s_text, (size_t) n * sizeof *text);
    uint8_t *drop = scratch_get (&self->s_drop, n);
    if (!items || !text || !drop) {
        ranker_fail (self, r, "out of memory", STRATA__V1__ERROR_CODE__INTERNAL);
        return;
    }
    uint32_t found = search_index_query (self->index, r->query, r->only, r->n_only, r->text_only, items, text, n);
    if (r->only) {
        //  Re-ranking a given set: every candidate comes back, those that match no term
        //  of the query after those that do, in the order given.
        uint8_t *seen = scratch_zeroed (&self->s_seen, n);
        if (!seen) {
            ranker_fail (self, r, "out of memory", STRATA__V1__ERROR_CODE__INTERNAL);
            return;
        }
        for (uint32_t i = 0; i < found; i++)
            seen[items[i]] = 1;
        for (uint32_t i = 0; i < r->n_only && found < n; i++)
            if (r->only[i] < n && !seen[r->only[i]]) {
                seen[r->only[i]] = 1;
                items[found] = r->only[i];
                text[found++] = 0;
            }
        for (uint32_t i = 0; i < found; i++)
            seen[items[i]] = 0;
    }
    uint32_t n_model = s ? s->rows : 0;
    const char *source = !r->text_only && s && s->info.terms && s->info.terms->n ? "text+learned" : "text";
    float tmax = 0;
    for (uint32_t i = 0; i < found; i++)
        tmax = text[i] > tmax ? text[i] : tmax;
    for (uint32_t i = 0; i < found; i++) {
        bool excluded = false;
        for (uint32_t j = 0; j < r->n_seen && !excluded; j++)
            excluded = r->seen[j] == items[i];
        drop[i] = excluded || !ranker_passes (self, r, items[i]);
        text[i] = tmax > 0 ? text[i] / tmax : 0;
    }
    int want = (int) (r->k > SEARCH_POOL ? r->k : SEARCH_POOL);
    int got = nn_top_k (text, (int) found, -1, drop, self->top, want);
    uint32_t out_items[MAX_K > 4096 ? MAX_K : 4096];
    float out[MAX_K > 4096 ? MAX_K : 4096];
    int m = got < (int) (sizeof out / sizeof out[0]) ? got : (int) (sizeof out / sizeof out[0]);
    for (int i = 0; i < m; i++) {
        out_items[i] = items[self->top[i]];
        out[i] = text[self->top[i]];
    }
    if (s && s->info.has_ranker && !r->text_only && m > 1) {
        s_search_rerank (self, r->query, out_items, out, m);
        source = strcmp (source, "text") ? "text+learned+ranker" : "text+ranker";
    }
    float *uvec = s && r->n_hist && !r->text_only ? scratch_get (&self->uvec, (size_t) s->info.dim * sizeof *uvec) : NULL;
    if (uvec && model_user_vectors (s->m, r->hist, r->hist_types, &r->n_hist, 1, uvec) == 0 && m > 1) {
        //  The user's retrieval score of each candidate, scaled to [0, 1] among them.
        float lo = INFINITY, hi = -INFINITY;
        for (int i = 0; i < m; i++) {
            float d = out_items[i] < n_model
                          ? nn_dot (uvec, s->vectors + (size_t) out_items[i] * s->info.dim, s->info.dim)
                          : NAN;
            self->logits[i] = d;
            if (!isnan (d)) {
                lo = d < lo ? d : lo;
                hi = d > hi ? d : hi;
            }
        }
        for (int i = 0; i < m && hi > lo; i++)
            out[i] += (float) self->cfg.search_blend * (isnan (self->logits[i]) ? 0 : (self->logits[i] - lo) / (hi - lo));
        source = !strcmp (source, "text")           ? "text+model"
               : !strcmp (source, "text+learned") ? "text+learned+model"
               : !strcmp (source, "text+ranker")  ? "text+ranker+model"
                                                  : "text+learned+ranker+model";
    }
    ranker_sort (out_items, out, m);
    ranker_reply (self, r, out_items, out, m < (int) r->k ? m : (int) r->k, source);
}
