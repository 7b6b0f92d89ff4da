/*  client: the calls that ask a broker. See strata.h and request.h.

    strata_client_* keeps one DEALER and any number of requests in flight on it. The
    broker answers each request with its request_id (an Error with it in ref), in the
    order its rank workers finish, so replies are matched by id through a hash of the
    requests in flight; those also stay in a list in send order, which gives an Error
    without a ref to the oldest (the broker sends those at once, in the order the
    requests came) and lets deadlines be checked without a timer per request. Completed
    requests wait in a queue until strata_client_recv takes them; a synchronous call is
    a send and a wait for its own id, leaving every other completion in the queue. Ids
    are never reused, so a reply that comes after its request timed out or was
    cancelled finds no request and is dropped, never given to another.

    The one-shot calls below it (statistics, rejects, and client_request for Strata's
    own programs) open a DEALER per request: they are rare and need no matching.
*/
#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ask.h"
#include "request.h"
#include "strata.h"
#include "wire.h"

#define CLIENT_TIMEOUT_MS 5000           // a request's deadline when none is given
#define CLIENT_MAX_REPLY (64u << 20)     // largest reply payload, bytes
#define CLIENT_HWM 100000                // messages queued each way before the socket refuses

//  A request in flight.
typedef struct _pending_t {
    uint64_t id;
    strata_ask_t kind;
    int timeout_ms;
    int64_t deadline;                    // zclock_mono
    struct _pending_t *prev, *next;      // send order
} pending_t;

struct _strata_client_t {
    zsock_t *sock;
    char *endpoint;
    strata_client_opts_t opts;
    uint64_t next_id;
    zhashx_t *by_id;                     // id -> pending_t (owned through the list)
    pending_t *oldest, *newest;
    size_t n_pending;
    int64_t next_deadline;               // no request in flight has an earlier one
    ask_reply_t *done, *done_last;       // completed, not yet received, in completion order
    char dropped[256];                   // the last message that matched nothing and why
    char error[512];
};

//  Ids are the keys themselves (never 0, so never a NULL key).
static size_t
s_id_hash (const void *key)
{
    uint64_t x = (uint64_t) (uintptr_t) key;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    return (size_t) (x ^ (x >> 33));
}

static int
s_id_compare (const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) a, y = (uintptr_t) b;
    return x < y ? -1 : x > y;
}

strata_client_t *
strata_client_new (const char *endpoint, const strata_client_opts_t *opts)
{
    if (!endpoint || !*endpoint || (opts && opts->timeout_ms < 0))
        return NULL;
    strata_client_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    if (opts)
        self->opts = *opts;
    if (!self->opts.timeout_ms)
        self->opts.timeout_ms = CLIENT_TIMEOUT_MS;
    if (!self->opts.max_reply)
        self->opts.max_reply = CLIENT_MAX_REPLY;
    self->next_deadline = INT64_MAX;
    self->endpoint = strdup (endpoint);
    self->by_id = zhashx_new ();
    self->sock = zsock_new (ZMQ_DEALER);
    if (!self->endpoint || !self->by_id || !self->sock)
        goto fail;
    zhashx_set_key_hasher (self->by_id, s_id_hash);
    zhashx_set_key_comparator (self->by_id, s_id_compare);
    zhashx_set_key_duplicator (self->by_id, NULL);
    zhashx_set_key_destructor (self->by_id, NULL);
    zsock_set_linger (self->sock, 0);
    //  Deep queues both ways: many requests in flight must not block a send, and the
    //  broker's ROUTER drops a reply our queue has no room for (it would time out).
    //  A send that still finds the queue full fails at once instead of blocking.
    zsock_set_sndhwm (self->sock, CLIENT_HWM);
    zsock_set_rcvhwm (self->sock, CLIENT_HWM);
    zsock_set_sndtimeo (self->sock, 0);
    if (zsock_connect (self->sock, "%s", endpoint) < 0)
        goto fail;
    return self;
fail:
    strata_client_destroy (&self);
    return NULL;
}

void
strata_client_destroy (strata_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    strata_client_t *self = *self_p;
    for (pending_t *p = self->oldest, *next; p; p = next) {
        next = p->next;
        free (p);
    }
    for (ask_reply_t *r = self->done, *next; r; r = next) {
        next = r->next;
        strata_reply_t *pub = &r->pub;
        strata_reply_destroy (&pub);
    }
    zhashx_destroy (&self->by_id);
    zsock_destroy (&self->sock);
    free (self->endpoint);
    free (self);
    *self_p = NULL;
}

const char *
strata_client_error (strata_client_t *self)
{
    return self ? self->error : "";
}

size_t
strata_client_inflight (strata_client_t *self)
{
    return self ? self->n_pending : 0;
}

static void
s_unlink (strata_client_t *self, pending_t *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        self->oldest = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        self->newest = p->prev;
    zhashx_delete (self->by_id, (void *) (uintptr_t) p->id);
    self->n_pending--;
    free (p);
}

static void
s_queue (strata_client_t *self, ask_reply_t *r)
{
    r->next = NULL;
    if (self->done_last)
        self->done_last->next = r;
    else
        self->done = r;
    self->done_last = r;
}

//  Takes the completed request `id` out of the queue, or returns NULL.
static ask_reply_t *
s_take (strata_client_t *self, uint64_t id)
{
    for (ask_reply_t **at = &self->done, *prev = NULL; *at; prev = *at, at = &(*at)->next) {
        ask_reply_t *r = *at;
        if (id && r->pub.request_id != id)
            continue;
        *at = r->next;
        if (self->done_last == r)
            self->done_last = prev;
        r->next = NULL;
        return r;
    }
    return NULL;
}

//  Completes p with a failure; the request leaves the flight either way (with no
//  memory for the reply, it is lost, and said so).
static void
s_fail (strata_client_t *self, pending_t *p, int status, const char *text)
{
    ask_reply_t *r = ask_reply_failed (p->id, p->kind, status, text);
    if (r)
        s_queue (self, r);
    else
        snprintf (self->dropped, sizeof self->dropped, "out of memory: request %" PRIu64 " lost", p->id);
    s_unlink (self, p);
}

//  Completes every request whose deadline has passed with STRATA_ETIMEOUT.
static void
s_expire (strata_client_t *self, int64_t now)
{
    if (now < self->next_deadline)
        return;
    int64_t next = INT64_MAX;
    for (pending_t *p = self->oldest, *following; p; p = following) {
        following = p->next;
        if (p->deadline <= now) {
            char text[400];
            snprintf (text, sizeof text, "no answer from %s within %d ms%s%s%s", self->endpoint, p->timeout_ms,
                      *self->dropped ? " (the last message that matched no request: " : "", self->dropped,
                      *self->dropped ? ")" : "");
            s_fail (self, p, STRATA_ETIMEOUT, text);
        }
        else if (p->deadline < next)
            next = p->deadline;
    }
    self->next_deadline = next;
}

//  The request a reply names by its request_id or ref; NULL for one we did not send or
//  no longer wait for.
static pending_t *
s_named (strata_client_t *self, const char *text)
{
    char *end = NULL;
    errno = 0;
    unsigned long long id = text && *text ? strtoull (text, &end, 10) : 0;
    if (!id || errno || *end)
        return NULL;
    return zhashx_lookup (self->by_id, (void *) (uintptr_t) id);
}

static void
s_drop (strata_client_t *self, const char *type, const char *why)
{
    snprintf (self->dropped, sizeof self->dropped, "%s %s", type, why);
}

//  One message from the broker.
static void
s_handle (strata_client_t *self, wire_msg_t *msg)
{
    if (!strcmp (msg->type, WIRE_ERROR)) {
        Strata__V1__Error *e = (Strata__V1__Error *) wire_unpack (&strata__v1__error__descriptor, msg->payload, NULL);
        if (!e) {
            s_drop (self, msg->type, "that does not decode");
            return;
        }
        //  No ref: refused before it was read (see strata.h), so the oldest in flight.
        pending_t *p = e->ref && *e->ref ? s_named (self, e->ref) : self->oldest;
        if (p)
            s_fail (self, p, ask_error_status (e->code), e->message);
        else
            s_drop (self, msg->type, "for no request in flight (late)");
        strata__v1__error__free_unpacked (e, NULL);
        return;
    }
    if (strcmp (msg->type, WIRE_RECOMMEND_REPLY) && strcmp (msg->type, WIRE_SIMILAR_REPLY)
        && strcmp (msg->type, WIRE_SEARCH_REPLY)) {
        s_drop (self, msg->type, "that this client never asks for");
        return;
    }
    Strata__V1__Recommendations *rec = (Strata__V1__Recommendations *) wire_unpack (
        &strata__v1__recommendations__descriptor, msg->payload, NULL);
    if (!rec) {
        //  Whose it was cannot be read: that request times out rather than another
        //  being given a failure that is not its own.
        s_drop (self, msg->type, "that does not decode");
        return;
    }
    pending_t *p = s_named (self, rec->request_id);
    ask_reply_t *r = NULL;
    if (!p)
        s_drop (self, msg->type, "for no request in flight (late)");
    else if (strcmp (msg->type, ask_reply_type (p->kind)) != 0) {
        char text[96];
        snprintf (text, sizeof text, "a %s answered a %s request", msg->type, ask_type (p->kind));
        s_fail (self, p, STRATA_EPROTOCOL, text);
    }
    else if ((r = ask_reply_new (p->id, p->kind, rec))) {
        rec = NULL;   // the reply holds it now
        s_queue (self, r);
        s_unlink (self, p);
    }
    else
        s_fail (self, p, STRATA_ENOMEM, "out of memory for the reply");
    if (rec)
        strata__v1__recommendations__free_unpacked (rec, NULL);
}

//  Receives and matches replies until a request completes (want: that one; 0: any)
//  or `until` (zclock_mono) passes. STRATA_OK with *got (want) or a non-empty queue;
//  STRATA_ESTATE when nothing is in flight and nothing waits; STRATA_ETIMEOUT;
//  STRATA_EINTR on a signal. What has already arrived is always read first, so a
//  wait of 0 still sees it.
static int
s_pump (strata_client_t *self, int64_t until, uint64_t want, ask_reply_t **got)
{
    for (bool first = true;; first = false) {
        int64_t now = zclock_mono ();
        s_expire (self, now);
        if (want ? (*got = s_take (self, want)) != NULL : self->done != NULL)
            return STRATA_OK;
        if (!self->n_pending)
            return STRATA_ESTATE;
        if (!first && now >= until)
            return STRATA_ETIMEOUT;
        int64_t wake = until < self->next_deadline ? until : self->next_deadline;
        int64_t wait = wake > now ? wake - now : 0;
        zmq_pollitem_t item = { zsock_resolve (self->sock), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, (long) (wait < 3600000 ? wait : 3600000)) < 0) {
            snprintf (self->error, sizeof self->error, "waiting for replies: %s", zmq_strerror (zmq_errno ()));
            return zmq_errno () == EINTR ? STRATA_EINTR : STRATA_ECONNECT;
        }
        for (;;) {
            wire_msg_t msg;
            int rc = wire_recv_ready (self->sock, false, self->opts.max_reply, &msg);
            if (rc == STRATA_OK)
                s_handle (self, &msg);
            else if (rc == STRATA_EFRAMING || rc == STRATA_ETOOLARGE)
                s_drop (self, "a message", rc == STRATA_EFRAMING ? "with bad framing" : "over max_reply");
            wire_msg_reset (&msg);
            if (rc != STRATA_OK && rc != STRATA_EFRAMING && rc != STRATA_ETOOLARGE)
                break;
        }
    }
}

static int
s_send (strata_client_t *self, strata_ask_t kind, const void *req, int timeout_ms, uint64_t *request_id)
{
    if (request_id)
        *request_id = 0;
    if (!self)
        return STRATA_EINVAL;
    self->error[0] = 0;
    if (timeout_ms < 0) {
        snprintf (self->error, sizeof self->error, "timeout_ms is negative");
        return STRATA_EINVAL;
    }
    char id_text[24];
    uint64_t id = self->next_id + 1;
    snprintf (id_text, sizeof id_text, "%" PRIu64, id);
    uint8_t *buf;
    size_t len;
    int rc = ask_pack (kind, req, id_text, &buf, &len, self->error, sizeof self->error);
    if (rc)
        return rc;
    pending_t *p = calloc (1, sizeof *p);
    if (!p) {
        free (buf);
        snprintf (self->error, sizeof self->error, "out of memory");
        return STRATA_ENOMEM;
    }
    if (wire_send_bytes (self->sock, NULL, ask_type (kind), buf, len) < 0) {
        snprintf (self->error, sizeof self->error, "cannot queue the request for %s: %s", self->endpoint,
                  zmq_strerror (zmq_errno ()));
        free (buf);
        free (p);
        return STRATA_ECONNECT;
    }
    free (buf);
    self->next_id = id;
    p->id = id;
    p->kind = kind;
    p->timeout_ms = timeout_ms ? timeout_ms : self->opts.timeout_ms;
    p->deadline = zclock_mono () + p->timeout_ms;
    p->prev = self->newest;
    if (self->newest)
        self->newest->next = p;
    else
        self->oldest = p;
    self->newest = p;
    self->n_pending++;
    zhashx_insert (self->by_id, (void *) (uintptr_t) id, p);
    if (p->deadline < self->next_deadline)
        self->next_deadline = p->deadline;
    if (request_id)
        *request_id = id;
    return STRATA_OK;
}

//  A synchronous call: a send, then a wait for that request alone.
static int
s_ask (strata_client_t *self, strata_ask_t kind, const void *req, int timeout_ms, strata_reply_t **reply_p)
{
    if (reply_p)
        *reply_p = NULL;
    if (self && !reply_p) {
        snprintf (self->error, sizeof self->error, "no reply_p given");
        return STRATA_EINVAL;
    }
    uint64_t id;
    int rc = s_send (self, kind, req, timeout_ms, &id);
    if (rc)
        return rc;
    ask_reply_t *got = NULL;
    //  The request's own deadline ends the wait: it completes, if only as a timeout.
    rc = s_pump (self, INT64_MAX, id, &got);
    if (rc != STRATA_OK) {
        strata_client_cancel (self, id);
        return rc;
    }
    if (got->pub.status != STRATA_OK) {
        snprintf (self->error, sizeof self->error, "%s", got->pub.error);
        rc = got->pub.status;
        strata_reply_t *pub = &got->pub;
        strata_reply_destroy (&pub);
        return rc;
    }
    *reply_p = &got->pub;
    return STRATA_OK;
}

int
strata_recommend (strata_client_t *self, const strata_recommend_t *req, int timeout_ms, strata_reply_t **reply_p)
{
    return s_ask (self, STRATA_ASK_RECOMMEND, req, timeout_ms, reply_p);
}

int
strata_similar (strata_client_t *self, const strata_similar_t *req, int timeout_ms, strata_reply_t **reply_p)
{
    return s_ask (self, STRATA_ASK_SIMILAR, req, timeout_ms, reply_p);
}

int
strata_search (strata_client_t *self, const strata_search_t *req, int timeout_ms, strata_reply_t **reply_p)
{
    return s_ask (self, STRATA_ASK_SEARCH, req, timeout_ms, reply_p);
}

int
strata_client_send_recommend (strata_client_t *self, const strata_recommend_t *req, int timeout_ms,
                              uint64_t *request_id)
{
    return s_send (self, STRATA_ASK_RECOMMEND, req, timeout_ms, request_id);
}

int
strata_client_send_similar (strata_client_t *self, const strata_similar_t *req, int timeout_ms, uint64_t *request_id)
{
    return s_send (self, STRATA_ASK_SIMILAR, req, timeout_ms, request_id);
}

int
strata_client_send_search (strata_client_t *self, const strata_search_t *req, int timeout_ms, uint64_t *request_id)
{
    return s_send (self, STRATA_ASK_SEARCH, req, timeout_ms, request_id);
}

int
strata_client_recv (strata_client_t *self, int timeout_ms, strata_reply_t **reply_p)
{
    if (reply_p)
        *reply_p = NULL;
    if (!self)
        return STRATA_EINVAL;
    self->error[0] = 0;
    if (!reply_p) {
        snprintf (self->error, sizeof self->error, "no reply_p given");
        return STRATA_EINVAL;
    }
    int64_t until = timeout_ms < 0 ? INT64_MAX : zclock_mono () + timeout_ms;
    ask_reply_t *got = NULL;
    int rc = s_pump (self, until, 0, &got);
    if (rc == STRATA_OK)
        got = s_take (self, 0);
    else if (rc == STRATA_ESTATE)
        snprintf (self->error, sizeof self->error, "no request in flight");
    else if (rc == STRATA_ETIMEOUT)
        snprintf (self->error, sizeof self->error, "no request completed within %d ms", timeout_ms);
    if (!got)
        return rc;
    if (got->pub.status != STRATA_OK)
        snprintf (self->error, sizeof self->error, "%s", got->pub.error);
    *reply_p = &got->pub;
    return STRATA_OK;
}

int
strata_client_cancel (strata_client_t *self, uint64_t request_id)
{
    if (!self)
        return STRATA_EINVAL;
    pending_t *p = request_id ? zhashx_lookup (self->by_id, (void *) (uintptr_t) request_id) : NULL;
    if (p) {
        s_unlink (self, p);
        return STRATA_OK;
    }
    ask_reply_t *r = request_id ? s_take (self, request_id) : NULL;
    if (!r)
        return STRATA_ENOTFOUND;
    strata_reply_t *pub = &r->pub;
    strata_reply_destroy (&pub);
    return STRATA_OK;
}

static const char *
s_role_name (Strata__V1__Role role)
{
    switch (role) {
    case STRATA__V1__ROLE__PREPROCESS: return "preprocess";
    case STRATA__V1__ROLE__TRAIN: return "train";
    case STRATA__V1__ROLE__RANK: return "rank";
    default: return "unknown";
    }
}

ProtobufCMessage *
client_request (const char *endpoint, const char *type, const ProtobufCMessage *req, const char *reply_type,
           const ProtobufCMessageDescriptor *desc, int timeout_ms, char *err, size_t errlen)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    if (!sock) {
        snprintf (err, errlen, "cannot create socket");
        return NULL;
    }
    zsock_set_linger (sock, 0);
    zsock_set_rcvtimeo (sock, timeout_ms);
    ProtobufCMessage *reply = NULL;
    wire_msg_t msg;
    if (zsock_connect (sock, "%s", endpoint) < 0)
        snprintf (err, errlen, "cannot connect to %s", endpoint);
    else if (wire_send (sock, NULL, type, req) < 0 || wire_recv (sock, false, 0, &msg) < 0)
        snprintf (err, errlen, "no answer from %s within %d ms", endpoint, timeout_ms);
    else {
        if (!strcmp (msg.type, WIRE_ERROR)) {
            Strata__V1__Error *e = (Strata__V1__Error *) wire_unpack (&strata__v1__error__descriptor, msg.payload, NULL);
            snprintf (err, errlen, "%s", e ? e->message : "(undecodable error reply)");
            if (e)
                strata__v1__error__free_unpacked (e, NULL);
        }
        else if (strcmp (msg.type, reply_type) != 0)
            snprintf (err, errlen, "unexpected reply '%s'", msg.type);
        else if (!(reply = wire_unpack (desc, msg.payload, NULL)))
            snprintf (err, errlen, "%s does not decode", reply_type);
        wire_msg_reset (&msg);
    }
    zsock_destroy (&sock);
    return reply;
}

char *
strata_stats_json (const char *endpoint, int timeout_ms, char *err, size_t errlen)
{
    Strata__V1__StatsRequest req = STRATA__V1__STATS_REQUEST__INIT;
    Strata__V1__Stats *st = (Strata__V1__Stats *) client_request (endpoint, WIRE_STATS, &req.base, WIRE_STATS_REPLY,
                                                             &strata__v1__stats__descriptor, timeout_ms, err, errlen);
    if (!st)
        return NULL;
    json_t *workers = json_object ();
    json_t *list = json_array ();
    for (size_t i = 0; i < st->n_workers; i++) {
        Strata__V1__WorkerInfo *w = st->workers[i];
        const char *role = s_role_name (w->role);
        json_object_set_new (workers, role, json_integer (json_integer_value (json_object_get (workers, role)) + 1));
        json_array_append_new (list, json_pack ("{s:s, s:s, s:I, s:I, s:I}", "id", w->worker_id, "role", role,
                                                "pid", (json_int_t) w->pid, "inflight", (json_int_t) w->inflight,
                                                "jobs_done", (json_int_t) w->jobs_done));
    }
    json_t *reasons = json_object ();
    for (size_t i = 0; i < st->n_reject_reasons; i++)
        json_object_set_new (reasons, st->reject_reasons[i]->reason, json_integer ((json_int_t) st->reject_reasons[i]->count));
    Strata__V1__ServingStats none = STRATA__V1__SERVING_STATS__INIT, *sv = st->serving ? st->serving : &none;
    json_t *serving = json_pack ("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "served", (json_int_t) sv->served,
                                 "failed", (json_int_t) sv->failed, "retried", (json_int_t) sv->retried, "hedged",
                                 (json_int_t) sv->hedged, "history_cache_hits", (json_int_t) sv->history_cache_hits,
                                 "history_cache_misses", (json_int_t) sv->history_cache_misses, "messages",
                                 (json_int_t) sv->messages, "slow_turns", (json_int_t) sv->slow_turns,
                                 "slowest_turn_us", (json_int_t) sv->slowest_turn_us);
    json_t *j = json_pack ("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:o}",
                           "events", (json_int_t) st->events, "users", (json_int_t) st->users, "items",
                           (json_int_t) st->items, "catalogue_items", (json_int_t) st->catalogue_items,
                           "duplicates", (json_int_t) st->duplicates, "rejected", (json_int_t) st->rejected,
                           "journal_pending", (json_int_t) st->journal_pending, "journal_inflight",
                           (json_int_t) st->journal_inflight, "journal_syncs", (json_int_t) st->journal_syncs,
                           "journal_slowest_sync_us", (json_int_t) st->journal_slowest_sync_us, "journal_unsynced",
                           (json_int_t) st->journal_unsynced, "batches", (json_int_t) st->batches,
                           "protocol_errors", (json_int_t) st->protocol_errors, "uptime_ms",
                           (json_int_t) st->uptime_ms, "workers", workers, "worker_list", list,
                           "reject_reasons", reasons, "serving", serving);
    strata__v1__stats__free_unpacked (st, NULL);
    char *out = j ? json_dumps (j, JSON_INDENT (2) | JSON_SORT_KEYS) : NULL;
    json_decref (j);
    if (!out)
        snprintf (err, errlen, "out of memory");
    return out;
}

char *
strata_rejects_json (const char *endpoint, size_t limit, int timeout_ms, char *err, size_t errlen)
{
    json_t *list = json_array ();
    uint8_t cursor[64];
    size_t cursor_len = 0;
    while (list && json_array_size (list) < limit) {
        Strata__V1__RejectsRequest req = STRATA__V1__REJECTS_REQUEST__INIT;
        size_t want = limit - json_array_size (list);
        req.limit = want > 1000 ? 1000 : (uint32_t) want;
        req.after.data = cursor;
        req.after.len = cursor_len;
        Strata__V1__RejectsReply *r = (Strata__V1__RejectsReply *) client_request (
            endpoint, WIRE_REJECTS, &req.base, WIRE_REJECTS_REPLY, &strata__v1__rejects_reply__descriptor,
            timeout_ms, err, errlen);
        if (!r) {
            json_decref (list);
            return NULL;
        }
        for (size_t i = 0; i < r->n_rejects; i++) {
            Strata__V1__Reject *x = r->rejects[i];
            json_array_append_new (list, json_pack ("{s:s, s:s, s:s, s:s, s:s, s:I}", "kind", x->kind, "id", x->id,
                                                    "reason", x->reason, "text", x->text, "batch_id", x->batch_id,
                                                    "line", (json_int_t) x->line));
        }
        bool more = r->next.len > 0 && r->next.len <= sizeof cursor;
        if (more) {
            memcpy (cursor, r->next.data, r->next.len);
            cursor_len = r->next.len;
        }
        strata__v1__rejects_reply__free_unpacked (r, NULL);
        if (!more)
            break;
    }
    char *out = list ? json_dumps (list, JSON_COMPACT) : NULL;
    json_decref (list);
    if (!out)
        snprintf (err, errlen, "out of memory");
    return out;
}
