/*  ranker_request: a ServeJob read into a request, and the filters it carries.

    Everything a request can get wrong is found here, before any scoring: an
    undecodable payload, an unknown or too new item, k over the limit, a price range
    upside down, no version to serve from. The request then holds model rows, not
    ids, and the items it leaves out (its history as the filters say, its exclusions),
    which the answering marks in one byte per item so that every scan skips them
    without a lookup.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "rank_private.h"

bool
ranker_passes (const ranker_t *self, const req_t *r, uint32_t item)
{
    const Strata__V1__Filters *f = r->filters;
    if (!f)
        return true;
    if (item >= self->cat.n)
        return !(f->category && *f->category) && !f->has_min_price && !f->has_max_price;
    if (f->category && *f->category) {
        bool found = false;
        for (uint32_t j = self->cat.cat_at[item]; j < self->cat.cat_at[item] + self->cat.cat_n[item] && !found; j++)
            found = self->cat.cat[j] == r->cat_hash;
        if (!found)
            return false;
    }
    float p = self->cat.price[item];
    if ((f->has_min_price || f->has_max_price) && isnan (p))
        return false;
    if (f->has_min_price && p < f->min_price)
        return false;
    if (f->has_max_price && p > f->max_price)
        return false;
    return true;
}

int
ranker_select (ranker_t *self, const req_t *r, const float *scores, uint32_t n, int want)
{
    const Strata__V1__Filters *f = r->filters;
    bool plain = !f || (!(f->category && *f->category) && !f->has_min_price && !f->has_max_price);
    if (plain)
        return nn_top_k (scores, (int) n, -1, self->mark, self->top, want);
    //  Filters out of the selection's way: mark what fails them, select, unmark.
    uint32_t *failed = scratch_get (&self->failed, (size_t) n * sizeof *failed);
    uint32_t nf = 0;
    for (uint32_t i = 0; failed && i < n; i++)
        if (!self->mark[i] && !ranker_passes (self, r, i)) {
            self->mark[i] = 1;
            failed[nf++] = i;
        }
    int got = nn_top_k (scores, (int) n, -1, self->mark, self->top, want);
    for (uint32_t i = 0; i < nf; i++)
        self->mark[failed[i]] = 0;
    return got;
}

//  Every row's score for nq queries (nq x dim) into scores (nq x rows): the packed
//  table's scan for the rows it holds (within its bound of exact: s_refine finishes
//  the job), the others exactly (an approximate index's items, when a query falls back

void
ranker_mark (ranker_t *self, const req_t *r, uint8_t v)
{
    uint32_t n = self->cur ? self->cur->rows : 0;
    for (uint32_t i = 0; i < r->n_seen; i++)
        if (r->seen[i] < n)
            self->mark[r->seen[i]] = v;
    if (r->item >= 0 && (uint32_t) r->item < n)
        self->mark[r->item] = v;
}


//  Marks r bad (answered with an Error); returns false, for the caller to return.
static bool
s_bad (req_t *r, const char *error, Strata__V1__ErrorCode code)
{
    r->error = error;
    r->code = code;
    return false;
}

//  The job's request as descriptor d says, into *inner (owned by the caller), its
//  request id, k and filters into r; NULL (r bad) when it does not decode.
static void *
s_unpack (const ProtobufCMessageDescriptor *d, const Strata__V1__ServeJob *job, req_t *r, void **inner,
          const char *error)
{
    ProtobufCMessage *q = protobuf_c_message_unpack (d, NULL, job->request.len, job->request.data);
    *inner = q;
    if (!q)
        s_bad (r, error, STRATA__V1__ERROR_CODE__BAD_PAYLOAD);
    return q;
}

//  The stored history the broker sent (rows of the version, oldest first), with room
//  for `extra` events after it. false (r bad) on no memory.
static bool
s_history (req_t *r, const Strata__V1__ServeJob *job, size_t extra, uint32_t n_model)
{
    size_t cap = job->n_history + extra;
    r->hist = malloc ((cap ? cap : 1) * sizeof *r->hist);
    r->hist_types = malloc (cap ? cap : 1);
    if (!r->hist || !r->hist_types)
        return s_bad (r, "out of memory", STRATA__V1__ERROR_CODE__INTERNAL);
    for (size_t i = 0; i < job->n_history; i++)
        if (job->history[i]->item < n_model) {
            r->hist[r->n_hist] = job->history[i]->item;
            r->hist_types[r->n_hist++] = (uint8_t) (job->history[i]->type < MODEL_EVENT_TYPES ? job->history[i]->type : 0);
        }
    return true;
}

static const Strata__V1__Filters *
s_parse_similar (ranker_t *self, const Strata__V1__ServeJob *job, req_t *r, void **inner, uint32_t n_model)
{
    Strata__V1__Similar *q = s_unpack (&strata__v1__similar__descriptor, job, r, inner, "SIMILAR needs a Similar");
    if (!q)
        return NULL;
    r->request_id = q->request_id;
    r->k = q->k;
    uint32_t idx;
    if (catalogue_lookup (&self->cat, q->item, &idx) < 0)
        s_bad (r, "unknown item", STRATA__V1__ERROR_CODE__NOT_FOUND);
    else if (idx >= n_model)
        s_bad (r, "the item is newer than the model version being served", STRATA__V1__ERROR_CODE__NOT_FOUND);
    else
        r->item = (int32_t) idx;
    return q->filters;
}

static const Strata__V1__Filters *
s_parse_search (ranker_t *self, const Strata__V1__ServeJob *job, req_t *r, void **inner, uint32_t n_model)
{
    Strata__V1__Search *q = s_unpack (&strata__v1__search__descriptor, job, r, inner, "SEARCH needs a Search");
    if (!q)
        return NULL;
    r->request_id = q->request_id;
    r->k = q->k;
    r->query = q->query;
    r->text_only = q->text_only;
    if (!q->query || !*q->query) {
        s_bad (r, "empty query", STRATA__V1__ERROR_CODE__INVALID);
        return NULL;
    }
    if (q->n_candidates) {
        r->only = malloc (q->n_candidates * sizeof *r->only);
        if (!r->only) {
            s_bad (r, "out of memory", STRATA__V1__ERROR_CODE__INTERNAL);
            return NULL;
        }
        for (size_t i = 0; i < q->n_candidates; i++) {
            uint32_t idx;
            if (catalogue_lookup (&self->cat, q->candidates[i], &idx) == 0)
                r->only[r->n_only++] = idx;
        }
        if (r->n_only == 0) {
            s_bad (r, "none of the candidates is a known item", STRATA__V1__ERROR_CODE__NOT_FOUND);
            return NULL;
        }
    }
    s_history (r, job, 0, n_model);
    return q->filters;
}

static const Strata__V1__Filters *
s_parse_recommend (ranker_t *self, const Strata__V1__ServeJob *job, req_t *r, void **inner, uint32_t n_model)
{
    Strata__V1__Recommend *q = s_unpack (&strata__v1__recommend__descriptor, job, r, inner,
                                         "RECOMMEND needs a Recommend");
    if (!q)
        return NULL;
    r->request_id = q->request_id;
    r->k = q->k;
    if (!s_history (r, job, q->n_recent, n_model))
        return NULL;
    //  The request's recent events (a session not yet ingested) follow the stored ones.
    for (size_t i = 0; i < q->n_recent; i++) {
        uint32_t idx;
        if (catalogue_lookup (&self->cat, q->recent[i]->item, &idx) == 0 && idx < n_model) {
            r->hist[r->n_hist] = idx;
            r->hist_types[r->n_hist++] = (uint8_t) (q->recent[i]->type < MODEL_EVENT_TYPES ? q->recent[i]->type : 0);
        }
    }
    return q->filters;
}

void
ranker_parse (ranker_t *self, const Strata__V1__ServeJob *job, req_t *r, void **inner)
{
    memset (r, 0, sizeof *r);
    r->job_id = job->job_id;
    r->similar = job->type && !strcmp (job->type, WIRE_SIMILAR);
    r->search = job->type && !strcmp (job->type, WIRE_SEARCH);
    r->item = -1;
    r->slot = -1;
    uint32_t n_model = self->cur ? self->cur->rows : 0;
    if (!self->cur && !r->search) {
        //  (Search works from the catalogue alone; it learns once a version arrives.)
        s_bad (r, "no model version loaded yet (is the trainer up and has it published?)",
               STRATA__V1__ERROR_CODE__UNAVAILABLE);
        return;
    }
    const Strata__V1__Filters *f = r->similar  ? s_parse_similar (self, job, r, inner, n_model)
                                 : r->search ? s_parse_search (self, job, r, inner, n_model)
                                             : s_parse_recommend (self, job, r, inner, n_model);
    if (r->error)
        return;
    size_t n_exclude = 0;
    char **exclude = NULL;
    if (r->k == 0)
        r->k = 10;
    if (r->k > MAX_K) {
        s_bad (r, "k is over 1000", STRATA__V1__ERROR_CODE__INVALID);
        return;
    }
    if (f && f->has_min_price && f->has_max_price && f->min_price > f->max_price) {
        s_bad (r, "min_price is above max_price", STRATA__V1__ERROR_CODE__INVALID);
        return;
    }
    r->filters = f;
    r->cat_hash = f && f->category && *f->category ? catalogue_level_hash (f->category) : 0;
    if (f) {
        n_exclude = f->n_exclude;
        exclude = f->exclude;
    }
    //  What to leave out: the history (purchases, or all of it), and the exclusions.
    size_t cap = r->n_hist + n_exclude;
    r->seen = malloc ((cap ? cap : 1) * sizeof *r->seen);
    if (!r->seen) {
        s_bad (r, "out of memory", STRATA__V1__ERROR_CODE__INTERNAL);
        return;
    }
    bool all = f && f->exclude_all_seen, none = (f && f->include_purchased && !all) || r->search;
    for (uint32_t i = 0; i < r->n_hist && (all || !r->search); i++)
        if (all || (!none && r->hist_types[i] == STRATA__V1__EVENT_TYPE__PURCHASE))
            r->seen[r->n_seen++] = r->hist[i];
    for (size_t i = 0; i < n_exclude; i++) {
        uint32_t idx;
        if (catalogue_lookup (&self->cat, exclude[i], &idx) == 0)
            r->seen[r->n_seen++] = idx;
    }
}
