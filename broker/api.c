/*  api: requests on the broker's client sockets (see broker_private.h).

    The broker answers STATS, batch STATUS, REJECTS and the trainer's exports (HISTORY,
    CATALOGUE) itself, from the knowledge store, on the ingest endpoint as on the api
    endpoint, so that a producer can ask about its batches where it sends them.
    RECOMMEND, SIMILAR, SEARCH and PING are for the api endpoint only and go on to
    serve.c, which routes them to rank workers. Every answer is built and sent within
    one turn of the loop, which is why the export pages are capped (below): the loop
    serves recommendations between two pages.
*/
#define LOG_MODULE "broker"
#include <stdlib.h>
#include <string.h>

#include "broker_private.h"
#include "log.h"
#include "util.h"

//  Page limits for the training export and the catalogue. The broker's loop serves
//  recommendations between two pages, so a page must be built in a few milliseconds:
//  a microsecond or two per stored event read back and decoded, a few per catalogue
//  item. (Pages of up to 200,000 events held serving up for 70-200 ms each while the
//  trainer fetched its data; 2,000 catalogue items took 5-9 ms.) Clients page on; the
//  round trips add little to a fetch.
#define HISTORY_USERS_MAX 4096
#define HISTORY_EVENTS_MAX 4096
#define CATALOGUE_ITEMS_MAX 512
#define REJECTS_PAGE_MAX 1000
#define STATUS_BATCHES_MAX 10000

//  The request of this type in payload, decoded in the broker's arena (reset first)
//  when in_arena, else on the heap (free it with protobuf_c_message_free_unpacked).
//  NULL when it does not decode, after a counted BAD_PAYLOAD Error.
static ProtobufCMessage *
s_request (broker_t *self, zsock_t *sock, zframe_t *routing, const char *type,
           const ProtobufCMessageDescriptor *desc, zframe_t *payload, bool in_arena)
{
    ProtobufCAllocator alloc;
    if (in_arena) {
        arena_reset (self->arena);
        alloc = arena_protobuf (self->arena);
    }
    ProtobufCMessage *req = wire_unpack (desc, payload, in_arena ? &alloc : NULL);
    if (!req) {
        char what[64];
        snprintf (what, sizeof what, "%s payload does not decode", type);
        broker_bad_input (self, sock, routing, NULL, STRATA__V1__ERROR_CODE__BAD_PAYLOAD, what);
    }
    return req;
}

static void
s_send_stats (broker_t *self, zsock_t *sock, zframe_t *routing, zframe_t *payload)
{
    (void) payload;   // StatsRequest has no fields
    knowledge_counts_t n;
    knowledge_counts (self->kb, &n);
    Strata__V1__Stats st = STRATA__V1__STATS__INIT;
    st.events = n.events;
    st.users = n.users;
    st.items = n.items;
    st.catalogue_items = n.catalogue_items;
    st.duplicates = n.duplicates;
    st.rejected = n.rejected;
    st.batches = n.batches;
    st.journal_pending = knowledge_journal_pending (self->kb);
    st.journal_inflight = pool_inflight (self->pool);
    if (self->syncer)
        syncer_counts (self->syncer, &st.journal_syncs, &st.journal_slowest_sync_us);
    st.journal_unsynced = ingest_unsynced (self);
    st.protocol_errors = self->protocol_errors;
    st.uptime_ms = (uint64_t) (util_now_ms () - self->started_ms);
    serve_counts_t sc;
    serve_counts (self->serve, &sc);
    Strata__V1__ServingStats serving = STRATA__V1__SERVING_STATS__INIT;
    serving.served = sc.served;
    serving.failed = sc.failed;
    serving.retried = sc.retried;
    serving.messages = sc.messages;
    serving.hedged = sc.hedged;
    serving.slow_turns = self->slow_turns;
    serving.slowest_turn_us = self->slowest_turn_us;
    knowledge_history_cache_counts (self->kb, &serving.history_cache_hits, &serving.history_cache_misses);
    st.serving = &serving;

    size_t nw = pool_size (self->pool);
    Strata__V1__WorkerInfo *infos = calloc (nw + 1, sizeof *infos);
    Strata__V1__WorkerInfo **ptrs = calloc (nw + 1, sizeof *ptrs);
    size_t i = 0;
    for (pool_worker_t *w = pool_first (self->pool); w && infos && ptrs; w = pool_next (self->pool), i++) {
        strata__v1__worker_info__init (&infos[i]);
        infos[i].worker_id = w->id;
        infos[i].role = w->role;
        infos[i].inflight = w->inflight;
        infos[i].jobs_done = w->jobs_done;
        infos[i].pid = w->pid;
        ptrs[i] = &infos[i];
    }
    st.n_workers = infos && ptrs ? nw : 0;
    st.workers = ptrs;

    const char *reasons[REASONS_MAX];
    uint64_t counts[REASONS_MAX];
    Strata__V1__ReasonCount rc[REASONS_MAX], *rcp[REASONS_MAX];
    size_t nr = knowledge_reject_reasons (self->kb, reasons, counts, REASONS_MAX);
    for (size_t k = 0; k < nr; k++) {
        strata__v1__reason_count__init (&rc[k]);
        rc[k].reason = (char *) reasons[k];
        rc[k].count = counts[k];
        rcp[k] = &rc[k];
    }
    st.n_reject_reasons = nr;
    st.reject_reasons = rcp;
    wire_send (sock, routing, WIRE_STATS_REPLY, &st.base);
    free (infos);
    free (ptrs);
}

static void
s_send_status (broker_t *self, zsock_t *sock, zframe_t *routing, zframe_t *payload)
{
    Strata__V1__BatchStatusRequest *req = (Strata__V1__BatchStatusRequest *) s_request (
        self, sock, routing, WIRE_STATUS, &strata__v1__batch_status_request__descriptor, payload, false);
    if (!req)
        return;
    if (req->n_batch_ids > STATUS_BATCHES_MAX) {
        broker_bad_input (self, sock, routing, NULL, STRATA__V1__ERROR_CODE__TOO_LARGE,
                          "STATUS asks for over 10000 batches");
        strata__v1__batch_status_request__free_unpacked (req, NULL);
        return;
    }
    Strata__V1__BatchStatusReply reply = STRATA__V1__BATCH_STATUS_REPLY__INIT;
    Strata__V1__Ack **acks = calloc (req->n_batch_ids + 1, sizeof *acks);
    Strata__V1__Ack *unknown = calloc (req->n_batch_ids + 1, sizeof *unknown);
    if (acks && unknown) {
        for (size_t i = 0; i < req->n_batch_ids; i++) {
            if (knowledge_batch_lookup (self->kb, req->batch_ids[i], &acks[i]) != STRATA_OK) {
                strata__v1__ack__init (&unknown[i]);
                unknown[i].batch_id = req->batch_ids[i];
                unknown[i].state = STRATA__V1__BATCH_STATE__BATCH_STATE_UNKNOWN;
                acks[i] = &unknown[i];
            }
        }
        reply.n_acks = req->n_batch_ids;
        reply.acks = acks;
    }
    wire_send (sock, routing, WIRE_STATUS_REPLY, &reply.base);
    for (size_t i = 0; acks && i < req->n_batch_ids; i++)
        if (acks[i] && acks[i] != &unknown[i])
            strata__v1__ack__free_unpacked (acks[i], NULL);
    free (acks);
    free (unknown);
    strata__v1__batch_status_request__free_unpacked (req, NULL);
}

typedef struct {
    Strata__V1__Reject **rejects;
    size_t n;
    unsigned char last[64];
    size_t last_len;
} rejects_page_t;

static void
s_collect_reject (const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    rejects_page_t *page = arg;
    Strata__V1__Reject *r = strata__v1__reject__unpack (NULL, vlen, val);
    if (!r)
        return;
    page->rejects[page->n++] = r;
    page->last_len = klen < sizeof page->last ? klen : sizeof page->last;
    memcpy (page->last, key, page->last_len);
}

static void
s_send_rejects (broker_t *self, zsock_t *sock, zframe_t *routing, zframe_t *payload)
{
    Strata__V1__RejectsRequest *req = (Strata__V1__RejectsRequest *) s_request (
        self, sock, routing, WIRE_REJECTS, &strata__v1__rejects_request__descriptor, payload, false);
    if (!req)
        return;
    size_t limit = req->limit && req->limit < REJECTS_PAGE_MAX ? req->limit : REJECTS_PAGE_MAX;
    rejects_page_t page = { calloc (limit + 1, sizeof (Strata__V1__Reject *)), 0, { 0 }, 0 };
    Strata__V1__RejectsReply reply = STRATA__V1__REJECTS_REPLY__INIT;
    if (page.rejects) {
        size_t visited = knowledge_rejects_each (self->kb, req->after.data, req->after.len, limit, s_collect_reject,
                                                 &page);
        reply.n_rejects = page.n;
        reply.rejects = page.rejects;
        if (visited == limit) {
            reply.next.data = page.last;
            reply.next.len = page.last_len;
        }
    }
    wire_send (sock, routing, WIRE_REJECTS_REPLY, &reply.base);
    for (size_t i = 0; i < page.n; i++)
        strata__v1__reject__free_unpacked (page.rejects[i], NULL);
    free (page.rejects);
    strata__v1__rejects_request__free_unpacked (req, NULL);
}

//  A page built in the arena (rc < 0: it could not be, for want of memory or a stored
//  record that does not decode) is sent as type.
static void
s_send_page (zsock_t *sock, zframe_t *routing, int rc, const char *type, const ProtobufCMessage *reply)
{
    if (rc < 0) {
        log_warn ("cannot build a %s page: %s", type, strata_strerror (rc));
        wire_send_error (sock, routing, NULL, STRATA__V1__ERROR_CODE__INTERNAL, "%s building the page",
                         strata_strerror (rc));
    }
    else
        wire_send (sock, routing, type, reply);
}

static void
s_send_history (broker_t *self, zsock_t *sock, zframe_t *routing, zframe_t *payload)
{
    Strata__V1__HistoryRequest *req = (Strata__V1__HistoryRequest *) s_request (
        self, sock, routing, WIRE_HISTORY, &strata__v1__history_request__descriptor, payload, true);
    if (!req)
        return;
    uint32_t users = req->max_users && req->max_users < HISTORY_USERS_MAX ? req->max_users : HISTORY_USERS_MAX;
    uint32_t events = req->max_events && req->max_events < HISTORY_EVENTS_MAX ? req->max_events : HISTORY_EVENTS_MAX;
    Strata__V1__HistoryReply reply;
    int rc = knowledge_history_page (self->kb, req->start_user, users, events, req->with_ids, self->arena, &reply);
    s_send_page (sock, routing, rc, WIRE_HISTORY_REPLY, &reply.base);
}

static void
s_send_catalogue (broker_t *self, zsock_t *sock, zframe_t *routing, zframe_t *payload)
{
    Strata__V1__CatalogueRequest *req = (Strata__V1__CatalogueRequest *) s_request (
        self, sock, routing, WIRE_CATALOGUE, &strata__v1__catalogue_request__descriptor, payload, true);
    if (!req)
        return;
    uint32_t n = req->max_items && req->max_items < CATALOGUE_ITEMS_MAX ? req->max_items : CATALOGUE_ITEMS_MAX;
    Strata__V1__CatalogueReply reply;
    int rc = req->changes ? knowledge_catalogue_changes (self->kb, req->after_change, n, self->arena, &reply)
                          : knowledge_catalogue_page (self->kb, req->start_item, n, self->arena, &reply);
    s_send_page (sock, routing, rc, WIRE_CATALOGUE_REPLY, &reply.base);
}

//  What the broker answers itself, on either client socket.
static const struct {
    const char *type;
    void (*send) (broker_t *self, zsock_t *sock, zframe_t *routing, zframe_t *payload);
} s_requests[] = {
    { WIRE_STATS, s_send_stats },         { WIRE_STATUS, s_send_status },
    { WIRE_REJECTS, s_send_rejects },     { WIRE_HISTORY, s_send_history },
    { WIRE_CATALOGUE, s_send_catalogue },
};

//  What rank workers answer, through serve.c: the api endpoint's alone.
static const char *const s_served[] = { WIRE_RECOMMEND, WIRE_SIMILAR, WIRE_SEARCH, WIRE_PING };

void
api_handle (broker_t *self, zsock_t *sock, wire_msg_t *msg)
{
    for (size_t i = 0; i < sizeof s_requests / sizeof s_requests[0]; i++)
        if (!strcmp (msg->type, s_requests[i].type)) {
            s_requests[i].send (self, sock, msg->routing, msg->payload);
            return;
        }
    for (size_t i = 0; sock == self->api && i < sizeof s_served / sizeof s_served[0]; i++)
        if (!strcmp (msg->type, s_served[i])) {
            //  serve.c has sent the Error of a refused request; it is counted here.
            if (serve_request (self->serve, msg->routing, msg->type, msg->payload) < 0)
                self->protocol_errors++;
            return;
        }
    char what[96];
    snprintf (what, sizeof what, "unknown message type '%.24s' on this endpoint", msg->type);
    broker_bad_input (self, sock, msg->routing, NULL, STRATA__V1__ERROR_CODE__UNKNOWN_TYPE, what);
}
