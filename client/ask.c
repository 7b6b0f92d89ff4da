/*  ask: see ask.h.

    Arguments are checked here, before anything is sent, with the broker's own rules
    where a caller can break them (k at most 1000, a query that is not empty, a price
    range that is not empty, no NULL among the ids): a bad call costs no round trip and
    says which field is wrong. The broker checks again; what only it can know (an
    unknown item, no rank worker) comes back as its Error. The packed message points
    into the caller's strings (protobuf-c never writes through them), and packing copies
    them, so nothing of the caller's is kept.
*/
#include "ask.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "wire.h"

#define ASK_MAX_K 1000   // the rank worker's limit on k

const char *
ask_type (strata_ask_t kind)
{
    return kind == STRATA_ASK_SIMILAR ? WIRE_SIMILAR : kind == STRATA_ASK_SEARCH ? WIRE_SEARCH : WIRE_RECOMMEND;
}

const char *
ask_reply_type (strata_ask_t kind)
{
    return kind == STRATA_ASK_SIMILAR  ? WIRE_SIMILAR_REPLY
         : kind == STRATA_ASK_SEARCH ? WIRE_SEARCH_REPLY
                                     : WIRE_RECOMMEND_REPLY;
}

int
ask_error_status (Strata__V1__ErrorCode code)
{
    switch (code) {
    case STRATA__V1__ERROR_CODE__BAD_FRAMING: return STRATA_EFRAMING;
    case STRATA__V1__ERROR_CODE__BAD_PAYLOAD: return STRATA_EPROTOCOL;
    case STRATA__V1__ERROR_CODE__TOO_LARGE: return STRATA_ETOOLARGE;
    case STRATA__V1__ERROR_CODE__UNKNOWN_TYPE: return STRATA_EPROTOCOL;
    case STRATA__V1__ERROR_CODE__INVALID: return STRATA_EINVAL;
    case STRATA__V1__ERROR_CODE__UNAVAILABLE: return STRATA_EUNAVAILABLE;
    case STRATA__V1__ERROR_CODE__INTERNAL: return STRATA_EIO;
    case STRATA__V1__ERROR_CODE__NOT_FOUND: return STRATA_ENOTFOUND;
    default: return STRATA_EREJECTED;
    }
}

//  The protocol's event type for a recent event's type name; 0 for an unknown name.
static Strata__V1__EventType
s_event_type (const char *name)
{
    static const struct {
        const char *name;
        Strata__V1__EventType type;
    } types[] = {
        { "view", STRATA__V1__EVENT_TYPE__VIEW },         { "click", STRATA__V1__EVENT_TYPE__CLICK },
        { "cart", STRATA__V1__EVENT_TYPE__CART },         { "purchase", STRATA__V1__EVENT_TYPE__PURCHASE },
        { "search", STRATA__V1__EVENT_TYPE__SEARCH },     { "rate", STRATA__V1__EVENT_TYPE__RATE },
    };
    if (!name || !*name)
        return STRATA__V1__EVENT_TYPE__VIEW;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcasecmp (name, types[i].name))
            return types[i].type;
    return STRATA__V1__EVENT_TYPE__EVENT_TYPE_UNSPECIFIED;
}

static int
s_invalid (char *err, size_t errlen, const char *what)
{
    snprintf (err, errlen, "%s", what);
    return STRATA_EINVAL;
}

//  Checks that a list of n ids is there and holds no NULL.
static bool
s_ids_ok (const char *const *ids, size_t n)
{
    if (n && !ids)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!ids[i])
            return false;
    return true;
}

//  Fills out from f (NULL: leaves out as it is, the broker's defaults).
static int
s_filters (const strata_filters_t *f, Strata__V1__Filters *out, char *err, size_t errlen)
{
    strata__v1__filters__init (out);
    if (!f)
        return STRATA_OK;
    if (!s_ids_ok (f->exclude, f->n_exclude))
        return s_invalid (err, errlen, "filters: exclude has a NULL id (or is NULL with n_exclude > 0)");
    if ((f->has_min_price && !isfinite (f->min_price)) || (f->has_max_price && !isfinite (f->max_price)))
        return s_invalid (err, errlen, "filters: a price bound is not a finite number");
    if (f->has_min_price && f->has_max_price && f->min_price > f->max_price)
        return s_invalid (err, errlen, "filters: min_price is above max_price (an empty range)");
    out->exclude_all_seen = f->exclude_all_seen;
    out->include_purchased = f->include_purchased;
    out->exclude = (char **) f->exclude;
    out->n_exclude = f->n_exclude;
    out->category = (char *) (f->category ? f->category : "");
    out->has_min_price = f->has_min_price;
    out->min_price = f->has_min_price ? f->min_price : 0;
    out->has_max_price = f->has_max_price;
    out->max_price = f->has_max_price ? f->max_price : 0;
    return STRATA_OK;
}

//  Packs any message into a malloc'd buffer.
static int
s_pack_message (const ProtobufCMessage *m, uint8_t **buf, size_t *len)
{
    *len = protobuf_c_message_get_packed_size (m);
    *buf = malloc (*len ? *len : 1);
    if (!*buf)
        return STRATA_ENOMEM;
    protobuf_c_message_pack (m, *buf);
    return STRATA_OK;
}

static int
s_pack_recommend (const strata_recommend_t *req, const char *request_id, uint8_t **buf, size_t *len, char *err,
                  size_t errlen)
{
    Strata__V1__Recommend q = STRATA__V1__RECOMMEND__INIT;
    Strata__V1__Filters f;
    if (req->k > ASK_MAX_K)
        return s_invalid (err, errlen, "recommend: k is at most 1000");
    if (req->n_recent && !req->recent)
        return s_invalid (err, errlen, "recommend: recent is NULL with n_recent > 0");
    int rc = s_filters (req->filters, &f, err, errlen);
    if (rc)
        return rc;
    Strata__V1__RecentEvent *events = NULL, **pointers = NULL;
    if (req->n_recent) {
        events = calloc (req->n_recent, sizeof *events);
        pointers = calloc (req->n_recent, sizeof *pointers);
        if (!events || !pointers) {
            rc = STRATA_ENOMEM;
            goto out;
        }
    }
    for (size_t i = 0; i < req->n_recent; i++) {
        strata__v1__recent_event__init (&events[i]);
        events[i].type = s_event_type (req->recent[i].type);
        if (!req->recent[i].item_id || !*req->recent[i].item_id) {
            snprintf (err, errlen, "recommend: recent event %zu has no item_id", i);
            rc = STRATA_EINVAL;
            goto out;
        }
        if (events[i].type == STRATA__V1__EVENT_TYPE__EVENT_TYPE_UNSPECIFIED) {
            snprintf (err, errlen, "recommend: recent event %zu has an unknown type '%s'", i, req->recent[i].type);
            rc = STRATA_EINVAL;
            goto out;
        }
        events[i].item = (char *) req->recent[i].item_id;
        pointers[i] = &events[i];
    }
    q.request_id = (char *) request_id;
    q.user = (char *) (req->user_id ? req->user_id : "");
    q.k = req->k;
    q.filters = req->filters ? &f : NULL;
    q.recent = pointers;
    q.n_recent = req->n_recent;
    rc = s_pack_message (&q.base, buf, len);
out:
    free (events);
    free (pointers);
    return rc;
}

static int
s_pack_similar (const strata_similar_t *req, const char *request_id, uint8_t **buf, size_t *len, char *err,
                size_t errlen)
{
    Strata__V1__Similar q = STRATA__V1__SIMILAR__INIT;
    Strata__V1__Filters f;
    if (!req->item_id || !*req->item_id)
        return s_invalid (err, errlen, "similar: item_id is required");
    if (req->k > ASK_MAX_K)
        return s_invalid (err, errlen, "similar: k is at most 1000");
    int rc = s_filters (req->filters, &f, err, errlen);
    if (rc)
        return rc;
    q.request_id = (char *) request_id;
    q.item = (char *) req->item_id;
    q.k = req->k;
    q.filters = req->filters ? &f : NULL;
    return s_pack_message (&q.base, buf, len);
}

static int
s_pack_search (const strata_search_t *req, const char *request_id, uint8_t **buf, size_t *len, char *err,
               size_t errlen)
{
    Strata__V1__Search q = STRATA__V1__SEARCH__INIT;
    Strata__V1__Filters f;
    if (!req->query || !*req->query)
        return s_invalid (err, errlen, "search: query is required (and not empty)");
    if (req->k > ASK_MAX_K)
        return s_invalid (err, errlen, "search: k is at most 1000");
    if (!s_ids_ok (req->candidates, req->n_candidates))
        return s_invalid (err, errlen, "search: candidates has a NULL id (or is NULL with n_candidates > 0)");
    int rc = s_filters (req->filters, &f, err, errlen);
    if (rc)
        return rc;
    q.request_id = (char *) request_id;
    q.query = (char *) req->query;
    q.user = (char *) (req->user_id ? req->user_id : "");
    q.k = req->k;
    q.filters = req->filters ? &f : NULL;
    q.candidates = (char **) req->candidates;
    q.n_candidates = req->n_candidates;
    q.text_only = req->text_only;
    return s_pack_message (&q.base, buf, len);
}

int
ask_pack (strata_ask_t kind, const void *req, const char *request_id, uint8_t **buf, size_t *len, char *err,
          size_t errlen)
{
    *buf = NULL;
    *len = 0;
    if (!req)
        return s_invalid (err, errlen, "no request given");
    switch (kind) {
    case STRATA_ASK_RECOMMEND: return s_pack_recommend (req, request_id, buf, len, err, errlen);
    case STRATA_ASK_SIMILAR: return s_pack_similar (req, request_id, buf, len, err, errlen);
    case STRATA_ASK_SEARCH: return s_pack_search (req, request_id, buf, len, err, errlen);
    }
    return s_invalid (err, errlen, "unknown kind of request");
}

//  Protobuf-c gives a proto3 string field that was absent as "" (its default), never
//  NULL; the guard keeps the promise of strata_reply_t even for a peer that breaks it.
static const char *
s_text (const char *s)
{
    return s ? s : "";
}

ask_reply_t *
ask_reply_new (uint64_t request_id, strata_ask_t kind, Strata__V1__Recommendations *pb)
{
    ask_reply_t *r = calloc (1, sizeof *r + pb->n_items * sizeof r->items[0]);
    if (!r)
        return NULL;
    r->pb = pb;
    for (size_t i = 0; i < pb->n_items; i++) {
        r->items[i].item_id = s_text (pb->items[i]->item);
        r->items[i].score = pb->items[i]->score;
        r->items[i].title = s_text (pb->items[i]->title);
    }
    r->pub.request_id = request_id;
    r->pub.kind = kind;
    r->pub.status = STRATA_OK;
    r->pub.error = "";
    r->pub.model_version = pb->model_version;
    r->pub.source = s_text (pb->source);
    r->pub.served_by = s_text (pb->worker);
    r->pub.n_items = pb->n_items;
    r->pub.items = r->items;
    return r;
}

ask_reply_t *
ask_reply_failed (uint64_t request_id, strata_ask_t kind, int status, const char *error)
{
    ask_reply_t *r = calloc (1, sizeof *r);
    char *text = strdup (error && *error ? error : strata_strerror (status));
    if (!r || !text) {
        free (r);
        free (text);
        return NULL;
    }
    r->error = text;
    r->pub.request_id = request_id;
    r->pub.kind = kind;
    r->pub.status = status;
    r->pub.error = text;
    r->pub.source = "";
    r->pub.served_by = "";
    r->pub.items = r->items;
    return r;
}

void
strata_reply_destroy (strata_reply_t **reply_p)
{
    if (!reply_p || !*reply_p)
        return;
    ask_reply_t *r = (ask_reply_t *) *reply_p;
    if (r->pb)
        strata__v1__recommendations__free_unpacked (r->pb, NULL);
    free (r->error);
    free (r);
    *reply_p = NULL;
}
