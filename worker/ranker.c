/*  ranker: see ranker.h.

    This file is the core's lifecycle, what changes what it serves (a version swapped
    in, catalogue records added or replaced, new items' vectors), the batch loop of
    ranker_serve and the replies. The requests themselves are answered in
    ranker_request.c (parse, filters), ranker_retrieve.c (RECOMMEND, SIMILAR) and
    ranker_search.c (SEARCH).

    RECOMMENDs with a history are answered a batch at a time: their user vectors
    together, then one matrix product over the catalogue (or the approximate index's
    candidates) for the whole batch, which is what makes many concurrent users cheap.
    Every result of a call travels together in one ServeResults.
*/
#define LOG_MODULE "rank"
#include "ranker.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "item_features.h"
#include "log.h"
#include "nn.h"
#include "rank_private.h"
#include "search.h"

void *
scratch_get (scratch_t *s, size_t bytes)
{
    if (s->cap < bytes || !s->p) {
        free (s->p);
        s->p = malloc (bytes ? bytes : 1);
        s->cap = s->p ? bytes : 0;
    }
    return s->p;
}

void *
scratch_zeroed (scratch_t *s, size_t bytes)
{
    if (s->cap < bytes || !s->p) {
        free (s->p);
        s->p = calloc (bytes ? bytes : 1, 1);
        s->cap = s->p ? bytes : 0;
    }
    return s->p;
}

ranker_t *
ranker_new (const ranker_config_t *cfg)
{
    if (cfg->index && strcmp (cfg->index, "exact") && strcmp (cfg->index, "ivf") && strcmp (cfg->index, "auto")) {
        log_error ("index '%s': expected exact, ivf or auto", cfg->index);
        return NULL;
    }
    ranker_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = *cfg;
    if (self->cfg.ivf_recall <= 0)
        self->cfg.ivf_recall = 0.97;
    if (self->cfg.ivf_min_items < 1)
        self->cfg.ivf_min_items = 200000;
    if (self->cfg.batch < 1)
        self->cfg.batch = 32;
    search_params_t sp;
    search_params_default (&sp);
    sp.queries_weight = (float) cfg->search_learned;
    self->index = search_index_new (&sp);
    self->ucache = user_cache_new ((uint32_t) (self->cfg.user_cache > 0 ? self->cfg.user_cache : 0), 0);
    size_t top = (size_t) (self->cfg.rerank_top > MAX_K ? self->cfg.rerank_top : MAX_K);
    self->top = malloc (top * sizeof *self->top);
    self->logits = malloc (top * sizeof *self->logits);
    if (catalogue_init (&self->cat) < 0 || !self->index || !self->ucache || !self->top || !self->logits) {
        log_error ("no memory for the serving core");
        ranker_destroy (&self);
    }
    return self;
}

//  Frees the results of the last call.
static void
s_results_free (ranker_t *self)
{
    for (size_t i = 0; i < self->n_results; i++)
        free (self->results[i].reply.data);
    free (self->results);
    free (self->result_ptrs);
    self->results = NULL;
    self->result_ptrs = NULL;
    self->n_results = 0;
}

void
ranker_destroy (ranker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ranker_t *self = *self_p;
    if (self->ucache) {
        uint64_t hits, misses;
        user_cache_counts (self->ucache, &hits, &misses);
        if (hits + misses)
            log_info ("user vectors: %llu from the cache, %llu from the user tower", (unsigned long long) hits,
                      (unsigned long long) misses);
    }
    s_results_free (self);
    served_destroy (&self->cur);
    catalogue_free (&self->cat);
    search_index_destroy (&self->index);
    user_cache_destroy (&self->ucache);
    scratch_t *scr[] = { &self->scores,      &self->uvec,       &self->uvec_group,  &self->s_items,
                         &self->s_text,      &self->s_drop,     &self->s_seen,      &self->failed,
                         &self->cand_items,  &self->cand_scores, &self->cand_drop,  &self->exact,
                         &self->sel,         &self->sel_scores, &self->refine_items, &self->refine_scores };
    for (size_t i = 0; i < sizeof scr / sizeof scr[0]; i++)
        free (scr[i]->p);
    free (self->mark);
    free (self->top);
    free (self->logits);
    free (self);
    *self_p = NULL;
}

uint64_t
ranker_version (ranker_t *self)
{
    return self->cur ? self->cur->info.version : 0;
}

uint32_t
ranker_items (ranker_t *self)
{
    return self->cat.n;
}

void
ranker_swap (ranker_t *self, served_t *next)
{
    uint64_t was = ranker_version (self);
    served_destroy (&self->cur);
    self->cur = next;
    ranker_extend (self);
    catalogue_trim (&self->cat, next->info.items);
    search_index_set_learned (self->index, next->info.terms);
    user_cache_clear (self->ucache, next->info.dim);   // vectors of the previous version
    log_info ("serving model version %llu (%u items; was %llu)", (unsigned long long) next->info.version,
              next->info.items, (unsigned long long) was);
}

int
ranker_load (ranker_t *self, const uint8_t *blob, size_t len)
{
    int rc;
    served_t *s = served_new (&self->cfg, blob, len, NULL, NULL, 0, &rc);
    if (s)
        ranker_swap (self, s);
    return rc;
}

int
ranker_add_items (ranker_t *self, Strata__V1__Item *const *items, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t before = self->cat.n;
        int e = catalogue_add (&self->cat, items[i]);
        if (e < 0)
            log_error ("cannot add an item to the catalogue: %s", strata_strerror (e));
        else if (self->cat.n > before && (e = search_index_add (self->index, before, items[i])) < 0)
            log_error ("cannot add an item to the search index: %s", strata_strerror (e));
        rc = e < 0 ? e : rc;
    }
    return rc;
}

//  Item i's vector (an item the version does not know, i >= fh_base) from its features:
//  the mean of their rows in the version's feature table.
static void
s_feature_vector (ranker_t *self, served_t *s, uint32_t i)
{
    catalogue_t *c = &self->cat;
    int d = s->info.dim;
    float *v = model_row_weights (s->m, NULL) + (size_t) i * d;   // s->vectors, writable
    memset (v, 0, (size_t) d * sizeof *v);
    uint32_t k = i - c->fh_base, rows[FEATURES_PER_ITEM];
    int m = features_rows_of (c->fh + c->fh_at[k], c->fh_n[k], s->info.feature_rows, rows);
    for (int j = 0; j < m; j++)
        nn_axpy (d, 1.0f / (float) m, s->info.features + (size_t) rows[j] * d, v);
    if (s->table && i >= s->table_base)
        score_table_set (s->table, i - s->table_base, v);   // packed already (ranker_extend): scanned as it is now
    user_cache_clear (self->ucache, d);   // a history with item i has a new vector
}

int
ranker_replace_items (ranker_t *self, Strata__V1__Item *const *records, size_t count, uint32_t *known)
{
    const Strata__V1__Item *items[CATALOGUE_PAGE];
    uint32_t at[CATALOGUE_PAGE], n = 0;
    for (size_t i = 0; i < count && n < CATALOGUE_PAGE; i++)
        if (records[i]->item_index < self->cat.n) {
            items[n] = records[i];
            at[n++] = records[i]->item_index;
        }
    int rc = 0;
    served_t *s = self->cur;
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        rc = catalogue_describe (&self->cat, at[i], items[i]);
        if (rc == 0 && at[i] >= self->cat.fh_base) {
            //  An item the version does not know: its vector follows its features.
            rc = catalogue_hashes (&self->cat, at[i], items[i]);
            if (rc == 0 && s && s->info.features && at[i] < s->rows && s->rows >= self->cat.fh_base)
                s_feature_vector (self, s, at[i]);
        }
    }
    if (rc == 0 && n)
        rc = search_index_update (self->index, n, at, items);
    if (rc < 0) {
        log_error ("cannot apply catalogue records (%s); trying again later", strata_strerror (rc));
        return rc;
    }
    *known = n;
    return 0;
}

//  Items the catalogue has beyond the served rows get vectors from their features (the
//  mean of their rows in the version's feature table, as the item tower composes an
//  item nobody has touched), so that they are recommended, found similar and read in
//  histories before a version knows them. Without a feature table they wait for one.
void
ranker_extend (ranker_t *self)
{
    catalogue_t *c = &self->cat;
    served_t *s = self->cur;
    if (!s || !s->info.features || c->n <= s->rows || s->rows < c->fh_base)
        return;
    uint32_t from = s->rows, to = c->n;
    if (model_resize_rows (s->m, to) < 0) {
        log_error ("no memory for %u new items' vectors", to - from);
        return;
    }
    s->vectors = model_row_weights (s->m, NULL);
    for (uint32_t i = from; i < to; i++)
        s_feature_vector (self, s, i);
    s->rows = to;
    //  They are scanned packed, after the version's own items in exact retrieval's table,
    //  or in a table of their own beside the approximate index; without room they are
    //  scored exactly, at the cost of a matrix product per request.
    if (!s->table && s->ivf)
        s->table = score_table_new (s->vectors, 0, s->info.dim);
    if (s->table && score_table_append (s->table, s->vectors + (size_t) s->table_base * s->info.dim,
                                        to - s->table_base) < 0)
        log_warn ("no memory to pack %u new items' vectors; scoring them exactly", to - from);
    log_info ("items added since model version %llu: %u, with vectors from their features",
              (unsigned long long) s->info.version, to - s->info.items);
}

//  Keeps a job's result (taking its reply buffer) to send with the batch's. A reply
//  that could not be packed for want of memory is left out: the broker tries the job
//  on another worker when this one's slot times out.
static void
s_result_add (ranker_t *self, const Strata__V1__ServeResult *res)
{
    if (!res->reply.data && res->reply.len)
        return;
    self->results[self->n_results] = *res;
    self->result_ptrs[self->n_results] = &self->results[self->n_results];
    self->n_results++;
    self->served_jobs++;
}

void
ranker_reply (ranker_t *self, const req_t *r, const uint32_t *items, const float *scores, int n, const char *source)
{
    Strata__V1__ServeResult res = STRATA__V1__SERVE_RESULT__INIT;
    res.job_id = r->job_id;
    uint8_t *buf = NULL;
    if (r->error) {
        Strata__V1__Error e = STRATA__V1__ERROR__INIT;
        e.code = r->code;
        e.message = (char *) r->error;
        e.ref = (char *) (r->request_id ? r->request_id : "");
        res.type = WIRE_ERROR;
        res.reply.len = strata__v1__error__get_packed_size (&e);
        buf = malloc (res.reply.len ? res.reply.len : 1);
        if (buf)
            strata__v1__error__pack (&e, buf);
    }
    else {
        Strata__V1__Recommendations out = STRATA__V1__RECOMMENDATIONS__INIT;
        Strata__V1__ScoredItem *si = calloc ((size_t) (n ? n : 1), sizeof *si);
        Strata__V1__ScoredItem **sp = calloc ((size_t) (n ? n : 1), sizeof *sp);
        for (int i = 0; si && sp && i < n; i++) {
            strata__v1__scored_item__init (&si[i]);
            si[i].item = items[i] < self->cat.n ? self->cat.ids[items[i]] : "";
            si[i].title = items[i] < self->cat.n && self->cat.titles[items[i]] ? self->cat.titles[items[i]] : "";
            si[i].score = scores[i];
            sp[i] = &si[i];
        }
        out.request_id = (char *) (r->request_id ? r->request_id : "");
        out.model_version = ranker_version (self);
        out.n_items = si && sp ? (size_t) n : 0;
        out.items = sp;
        out.source = (char *) source;
        out.worker = (char *) (self->cfg.id ? self->cfg.id : "");
        res.type = r->similar ? WIRE_SIMILAR_REPLY : r->search ? WIRE_SEARCH_REPLY : WIRE_RECOMMEND_REPLY;
        res.reply.len = strata__v1__recommendations__get_packed_size (&out);
        buf = malloc (res.reply.len ? res.reply.len : 1);
        if (buf)
            strata__v1__recommendations__pack (&out, buf);
        free (si);
        free (sp);
    }
    res.reply.data = buf;
    s_result_add (self, &res);
}

//  Sorts items by score, best first (insertion: n is small).
void
ranker_sort (uint32_t *items, float *scores, int n)
{
    for (int i = 1; i < n; i++) {
        uint32_t it = items[i];
        float sc = scores[i];
        int j = i;
        while (j > 0 && scores[j - 1] < sc) {
            items[j] = items[j - 1];
            scores[j] = scores[j - 1];
            j--;
        }
        items[j] = it;
        scores[j] = sc;
    }
}

void
ranker_fail (ranker_t *self, req_t *r, const char *error, Strata__V1__ErrorCode code)
{
    r->error = error;
    r->code = code;
    ranker_reply (self, r, NULL, NULL, 0, "");
}

//  The user vectors of nb RECOMMENDs (reqs[idx[b]], each with a history) into uvec's
//  rows: a history seen since the version came, from the cache; the others through
//  the user tower, shortest first, in groups that waste at most half their rows on
//  padding (a batch is as long as its longest history). With the ranking head on, all
//  of them go through the tower in one batch, in order: the head reads the tower's
//  state by row. 0, or STRATA_ENOMEM (or the tower's code, model.h).
static int
s_user_vectors (ranker_t *self, served_t *s, req_t *reqs, const size_t *idx, size_t nb, float *uvec)
{
    int d = s->info.dim;
    bool head = self->cfg.rerank_top > 0 && model_has_ranker (s->m);
    uint64_t keys[256];
    size_t miss[256], nm = 0;
    for (size_t b = 0; b < nb; b++) {
        const req_t *r = &reqs[idx[b]];
        keys[b] = user_cache_key (r->hist, r->hist_types, r->n_hist);
        if (head || !user_cache_get (self->ucache, keys[b], uvec + b * (size_t) d))
            miss[nm++] = b;
    }
    for (size_t i = 1; !head && i < nm; i++)
        for (size_t j = i; j > 0 && reqs[idx[miss[j - 1]]].n_hist > reqs[idx[miss[j]]].n_hist; j--) {
            size_t t = miss[j];
            miss[j] = miss[j - 1];
            miss[j - 1] = t;
        }
    int rc = 0;
    for (size_t g0 = 0, g1; rc == 0 && g0 < nm; g0 = g1) {
        //  The group grows while its rows (members x the longest history, the newest
        //  member's) stay within twice its events.
        size_t events = reqs[idx[miss[g0]]].n_hist;
        for (g1 = g0 + 1; g1 < nm; g1++) {
            size_t len = reqs[idx[miss[g1]]].n_hist;
            if (!head && (g1 - g0 + 1) * len > 2 * (events + len))
                break;
            events += len;
        }
        uint32_t lens[256];
        uint32_t *all = malloc (events * sizeof *all);
        uint8_t *types = malloc (events);
        float *out = scratch_get (&self->uvec_group, (g1 - g0) * (size_t) d * sizeof *out);
        size_t w = 0;
        for (size_t m = g0; all && types && m < g1; m++) {
            const req_t *r = &reqs[idx[miss[m]]];
            lens[m - g0] = r->n_hist;
            memcpy (all + w, r->hist, r->n_hist * sizeof *all);
            memcpy (types + w, r->hist_types, r->n_hist);
            w += r->n_hist;
        }
        rc = !all || !types || !out ? STRATA_ENOMEM
                                    : model_user_vectors (s->m, all, types, lens, (uint32_t) (g1 - g0), out);
        for (size_t m = g0; rc == 0 && m < g1; m++) {
            memcpy (uvec + miss[m] * (size_t) d, out + (m - g0) * (size_t) d, (size_t) d * sizeof *out);
            user_cache_put (self->ucache, keys[miss[m]], out + (m - g0) * (size_t) d);
        }
        free (all);
        free (types);
    }
    return rc;
}

//  A PING's result: the request echoed (the client matches it).
static void
s_ping (ranker_t *self, const Strata__V1__ServeJob *job)
{
    Strata__V1__ServeResult res = STRATA__V1__SERVE_RESULT__INIT;
    res.job_id = job->job_id;
    res.type = WIRE_PING_REPLY;
    res.reply.len = job->request.len;
    res.reply.data = malloc (res.reply.len ? res.reply.len : 1);
    if (res.reply.data && res.reply.len)
        memcpy (res.reply.data, job->request.data, res.reply.len);
    s_result_add (self, &res);
}

//  The RECOMMENDs with a history (reqs[pending[..np]]), a batch of users at a time:
//  their vectors, then the whole catalogue scored in one matrix product.
static void
s_recommend_batches (ranker_t *self, req_t *reqs, const size_t *pending, size_t np)
{
    served_t *s = self->cur;
    uint32_t items = s->rows;
    size_t B = (size_t) self->cfg.batch;
    int d = s->info.dim;
    float *uvec = scratch_get (&self->uvec, B * (size_t) d * sizeof *uvec);
    float *scores = s->ivf ? NULL : scratch_get (&self->scores, B * items * sizeof *scores);
    uint32_t *ci = NULL, counts[256], stride = 0;
    for (size_t p0 = 0; p0 < np; p0 += B) {
        size_t nb = np - p0 < B ? np - p0 : B;
        int ok = (scores || s->ivf) && uvec && s_user_vectors (self, s, reqs, pending + p0, nb, uvec) == 0;
        //  Retrieval for the whole batch: one matrix product over the catalogue, or
        //  the approximate index's candidates.
        if (ok && s->ivf)
            ok = ranker_ivf_candidates (self, s, uvec, (uint32_t) nb, &ci, &scores, counts, &stride) == 0;
        else if (ok)
            ranker_exact_scores (s, uvec, (uint32_t) nb, scores);
        for (size_t b = 0; b < nb; b++) {
            req_t *r = &reqs[pending[p0 + b]];
            if (!ok) {
                ranker_fail (self, r, "out of memory", STRATA__V1__ERROR_CODE__INTERNAL);
                continue;
            }
            r->slot = (int) b;
            cands_t c = s->ivf ? (cands_t) { ci + b * stride, scores + b * stride, counts[b] }
                               : (cands_t) { NULL, scores + b * items, items };
            ranker_recommend (self, r, &c, uvec + b * (size_t) d);
        }
    }
}

int
ranker_serve (ranker_t *self, const ProtobufCBinaryData *jobs, size_t n, Strata__V1__ServeResults *out)
{
    s_results_free (self);
    out->n_results = 0;
    out->results = NULL;
    req_t *reqs = calloc (n ? n : 1, sizeof *reqs);
    void **inner = calloc (n ? n : 1, sizeof *inner);
    Strata__V1__ServeJob **outer = calloc (n ? n : 1, sizeof *outer);
    size_t *pending = malloc ((n ? n : 1) * sizeof *pending);
    self->results = calloc (n ? n : 1, sizeof *self->results);
    self->result_ptrs = calloc (n ? n : 1, sizeof *self->result_ptrs);
    if (!reqs || !inner || !outer || !pending || !self->results || !self->result_ptrs) {
        free (reqs);
        free (inner);
        free (outer);
        free (pending);
        s_results_free (self);
        log_error ("out of memory for %zu jobs; they are lost (their clients time out)", n);
        return STRATA_ENOMEM;
    }
    served_t *s = self->cur;
    uint32_t items = s ? s->rows : 0;
    if (self->mark_cap < items) {
        free (self->mark);
        self->mark = calloc (items, 1);
        self->mark_cap = self->mark ? items : 0;
    }
    for (size_t i = 0; i < n; i++) {
        outer[i] = strata__v1__serve_job__unpack (NULL, jobs[i].len, jobs[i].data);
        if (!outer[i]) {
            log_warn ("a SERVE_JOBS job does not decode; ignored");
            continue;
        }
        if (outer[i]->type && !strcmp (outer[i]->type, WIRE_PING)) {
            s_ping (self, outer[i]);
            strata__v1__serve_job__free_unpacked (outer[i], NULL);
            outer[i] = NULL;
            continue;
        }
        ranker_parse (self, outer[i], &reqs[i], &inner[i]);
        if (!reqs[i].error && s && !self->mark) {
            reqs[i].error = "out of memory";
            reqs[i].code = STRATA__V1__ERROR_CODE__INTERNAL;
        }
    }
    size_t np = 0;
    for (size_t i = 0; i < n; i++) {
        req_t *r = &reqs[i];
        if (!outer[i])
            continue;
        if (r->error)
            ranker_reply (self, r, NULL, NULL, 0, "");
        else if (r->similar)
            ranker_similar (self, r);
        else if (r->search)
            ranker_search (self, r);
        else if (r->n_hist == 0)
            ranker_recommend (self, r, NULL, NULL);
        else
            pending[np++] = i;
    }
    if (s && np)
        s_recommend_batches (self, reqs, pending, np);
    for (size_t i = 0; i < n; i++) {
        free (reqs[i].hist);
        free (reqs[i].hist_types);
        free (reqs[i].seen);
        free (reqs[i].only);
        if (inner[i])
            protobuf_c_message_free_unpacked ((ProtobufCMessage *) inner[i], NULL);
        if (outer[i])
            strata__v1__serve_job__free_unpacked (outer[i], NULL);
    }
    free (pending);
    free (reqs);
    free (inner);
    free (outer);
    out->n_results = self->n_results;
    out->results = self->result_ptrs;
    return 0;
}
