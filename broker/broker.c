/*  broker: see broker.h.

    broker_new does everything that can fail before the first message (store, syncer,
    sockets, the endpoints file), so that a broker that started runs; broker_run is one
    thread polling the three sockets, the syncer and, in an actor, its pipe.
*/
#define LOG_MODULE "broker"
#include "broker.h"

#include <czmq.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "endpoints.h"
#include "knowledge.h"
#include "log.h"
#include "pool.h"
#include "serve.h"
#include "syncer.h"
#include "util.h"
#include "wire.h"

#define OFF(f) offsetof (broker_config_t, f)
const config_key_t broker_config_keys[] = {
    { "dir", CONFIG_STRING, OFF (dir), "strata-data", 0, -1, "data directory (knowledge store)" },
    { "ingest", CONFIG_STRING, OFF (ingest), STRATA_DEFAULT_INGEST, 0, -1, "ingest endpoint (producers)" },
    { "workers", CONFIG_STRING, OFF (workers), STRATA_DEFAULT_WORKERS, 0, -1, "worker endpoint" },
    { "api", CONFIG_STRING, OFF (api), STRATA_DEFAULT_API, 0, -1, "api endpoint (clients)" },
    { "endpoints-file", CONFIG_STRING, OFF (endpoints_file), "", 0, -1,
      "write the bound endpoints as JSON here (useful with port '*' or '!', czmq's first free and random free port)" },
    { "heartbeat-ms", CONFIG_INT, OFF (heartbeat_ms), "1000", 50, 60000, "worker heartbeat interval" },
    { "liveness", CONFIG_INT, OFF (liveness), "3", 2, 100, "missed heartbeats before a worker is dropped" },
    { "max-frame", CONFIG_INT, OFF (max_frame), "16M", 1024, 1LL << 30, "largest accepted payload, bytes" },
    { "max-batch", CONFIG_INT, OFF (max_batch), "100000", 1, 10000000, "most records in one batch" },
    { "max-pending", CONFIG_INT, OFF (max_pending), "100000", 1, 100000000,
      "journal entries waiting for workers before producers are told to back off" },
    { "history-len", CONFIG_INT, OFF (history_len), "50", 1, 10000,
      "stored events of a user sent with each recommend request to the rank workers" },
    { "history-cache", CONFIG_INT, OFF (history_cache), "65536", 0, 1 << 26,
      "users whose recent history is kept in memory (0: read every request's from the store)" },
    { "serve-attempts", CONFIG_INT, OFF (serve_attempts), "3", 1, 100,
      "rank workers tried for one request before it fails" },
    { "serve-timeout-ms", CONFIG_INT, OFF (serve_timeout_ms), "2000", 10, 600000,
      "longest a request waits for a free rank worker" },
    { "serve-hedge-ms", CONFIG_INT, OFF (serve_hedge_ms), "500", 0, 600000,
      "a request a rank worker has held this long, silent all that time, goes to another one too (0: never)" },
    { "serve-pipeline", CONFIG_INT, OFF (serve_pipeline), "2", 0, 64,
      "messages of requests a rank worker may hold unanswered; requests arriving meanwhile wait and go "
      "together in the next (0: send each at once)" },
    { "catalogue-changes", CONFIG_INT, OFF (catalogue_changes), "1000000", 1, 1LL << 40,
      "catalogue changes the change log keeps for rank workers (12 bytes each); one behind them reads the "
      "whole catalogue again" },
    { "slow-turn-ms", CONFIG_INT, OFF (slow_turn_ms), "20", 0, 600000,
      "a turn of the loop longer than this (every request arriving meanwhile waits for it) is counted and "
      "logged, at most once a second, with what took it (0: never)" },
    { "journal-sync", CONFIG_BOOL, OFF (journal_sync), "true", 0, -1,
      "fsync the journal before acking (off: survive process crashes, not power loss)" },
    { "log-level", CONFIG_STRING, OFF (log_level), "info", 0, -1, "error, warn, info or debug" },
    CONFIG_END,
};

//  Batches that arrive together are journaled in one write.
#define GROUP_MAX 64
#define REASONS_MAX 32

struct _broker_t {
    const broker_config_t *cfg;
    knowledge_t *kb;
    pool_t *pool;
    zsock_t *ingest, *workers, *api;
    zsock_t *pipe;           // broker_actor's, while it runs the broker; else NULL
    zlistx_t *pending;       // journal sequences waiting for a worker, oldest first
    syncer_t *syncer;        // makes the journal durable off the loop (journal-sync)
    zlistx_t *unsynced;      // acks waiting for their batch's sync (unsynced_t), oldest first
    serve_t *serve;          // recommend / similar / search requests on their way to rank workers
    arena_t *arena;
    uint64_t protocol_errors;
    uint64_t next_job_id;
    //  Turns of the loop: how many were slow, the slowest, and the slowest message of
    //  the turn in progress (what a slow turn's log line names).
    uint64_t slow_turns, slowest_turn_us, slow_unlogged;
    int64_t slow_logged_ms, worst_us;
    char worst[200];   // the slowest turn not yet logged, described
    char turn_type[24];
    int64_t turn_type_us;
    int64_t started_ms;
    bool fatal;
};

//  Notes how long a message of this type took since t0 (zclock_usecs), for the slow
//  turn's log line.
static void
s_timed (broker_t *self, const char *type, int64_t t0)
{
    int64_t us = zclock_usecs () - t0;
    if (us > self->turn_type_us) {
        self->turn_type_us = us;
        snprintf (self->turn_type, sizeof self->turn_type, "%s", type);
    }
}

static void
s_requeue (uint64_t seq, void *arg)
{
    broker_t *self = arg;
    if (seq & SERVE_KEY_BIT) {
        serve_requeue (self->serve, seq);
        return;
    }
    //  Jobs that were in flight are older than anything waiting: put them first.
    zlistx_add_start (self->pending, (void *) (uintptr_t) seq);
}

static void
s_enqueue (uint64_t seq, void *arg)
{
    broker_t *self = arg;
    zlistx_add_end (self->pending, (void *) (uintptr_t) seq);
}

//  An ack held until the journal write it reports is on disk.
typedef struct {
    uint64_t ticket;     // the sync that covers it (syncer.h)
    zframe_t *routing;
    char *batch_id;
    uint64_t sequence;
    bool dispatch;       // the first copy of the batch: hand its journal entry to workers
} unsynced_t;

static void
s_unsynced_destroy (void **item)
{
    unsynced_t *u = *item;
    if (!u)
        return;
    zframe_destroy (&u->routing);
    free (u->batch_id);
    free (u);
    *item = NULL;
}

static void
s_send_ack (broker_t *self, zframe_t *routing, char *batch_id, uint64_t sequence)
{
    Strata__V1__Ack ack = STRATA__V1__ACK__INIT;
    ack.batch_id = batch_id;
    ack.state = STRATA__V1__BATCH_STATE__JOURNALED;
    ack.sequence = sequence;
    wire_send (self->ingest, routing, WIRE_ACK, &ack.base);
}

//  Holds an ack until sync `ticket` is done. Returns 0, or -1 (no memory: nothing held,
//  routing and batch_id still the caller's).
static int
s_hold_ack (broker_t *self, uint64_t ticket, zframe_t **routing, char **batch_id, uint64_t sequence, bool dispatch)
{
    unsynced_t *u = calloc (1, sizeof *u);
    if (!u)
        return -1;
    *u = (unsynced_t) { ticket, *routing, *batch_id, sequence, dispatch };
    zlistx_add_end (self->unsynced, u);
    *routing = NULL;
    *batch_id = NULL;
    return 0;
}

//  The batch's ack still waiting for its sync, if any.
static unsynced_t *
s_unsynced_find (broker_t *self, const char *batch_id)
{
    for (unsynced_t *u = zlistx_first (self->unsynced); u; u = zlistx_next (self->unsynced))
        if (!strcmp (u->batch_id, batch_id))
            return u;
    return NULL;
}

//  Holds the ack of a copy of a batch whose first copy's ack is held.
static void
s_hold_copy (broker_t *self, const unsynced_t *first, zframe_t *routing)
{
    zframe_t *dup = zframe_dup (routing);
    char *batch_id = strdup (first->batch_id);
    if (!dup || !batch_id || s_hold_ack (self, first->ticket, &dup, &batch_id, first->sequence, false) < 0)
        wire_send_error (self->ingest, routing, first->batch_id, STRATA__V1__ERROR_CODE__INTERNAL,
                         "out of memory; retry");
    zframe_destroy (&dup);
    free (batch_id);
}

//  A sync finished: the batches it covers are durable. Acks their producers and hands
//  the journal entries to workers. A failed sync stops the broker: what the store holds
//  can no longer be told from what it was asked to hold, and a restart replays the
//  journal as it is on disk (producers not acked send again).
static void
s_synced (broker_t *self)
{
    uint64_t ticket = 0;
    if (syncer_synced (self->syncer, &ticket) != STRATA_OK) {
        log_error ("the journal could not be made durable; stopping so that a restart recovers from the disk");
        self->fatal = true;
        return;
    }
    unsynced_t *u;
    while ((u = zlistx_first (self->unsynced)) && u->ticket <= ticket) {
        s_send_ack (self, u->routing, u->batch_id, u->sequence);
        if (u->dispatch)
            s_enqueue (u->sequence, self);
        zlistx_delete (self->unsynced, zlistx_cursor (self->unsynced));
    }
}

static int
s_bad_input (broker_t *self, zsock_t *sock, zframe_t *routing, const char *ref, Strata__V1__ErrorCode code,
             const char *what)
{
    self->protocol_errors++;
    log_warn ("rejected message: %s", what);
    return wire_send_error (sock, routing, ref, code, "%s", what);
}

// ---------------------------------------------------------------- stats and status

static void
s_send_stats (broker_t *self, zsock_t *sock, zframe_t *routing)
{
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
    st.journal_unsynced = zlistx_size (self->unsynced);
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
    Strata__V1__BatchStatusRequest *req = (Strata__V1__BatchStatusRequest *) wire_unpack (
        &strata__v1__batch_status_request__descriptor, payload, NULL);
    if (!req) {
        s_bad_input (self, sock, routing, NULL, STRATA__V1__ERROR_CODE__BAD_PAYLOAD, "STATUS payload does not decode");
        return;
    }
    if (req->n_batch_ids > 10000) {
        s_bad_input (self, sock, routing, NULL, STRATA__V1__ERROR_CODE__TOO_LARGE, "STATUS asks for over 10000 batches");
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

#define REJECTS_PAGE_MAX 1000

static void
s_send_rejects (broker_t *self, zsock_t *sock, zframe_t *routing, zframe_t *payload)
{
    Strata__V1__RejectsRequest *req = (Strata__V1__RejectsRequest *) wire_unpack (
        &strata__v1__rejects_request__descriptor, payload, NULL);
    if (!req) {
        s_bad_input (self, sock, routing, NULL, STRATA__V1__ERROR_CODE__BAD_PAYLOAD, "REJECTS payload does not decode");
        return;
    }
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

//  Page limits for the training export and the catalogue. The broker's loop serves
//  recommendations between two pages, so a page must be built in a few milliseconds:
//  a microsecond or two per stored event read back and decoded, a few per catalogue
//  item. (Pages of up to 200,000 events held serving up for 70-200 ms each while the
//  trainer fetched its data; 2,000 catalogue items took 5-9 ms.) Clients page on; the
//  round trips add little to a fetch.
#define HISTORY_USERS_MAX 4096
#define HISTORY_EVENTS_MAX 4096
#define CATALOGUE_ITEMS_MAX 512

static void
s_send_history (broker_t *self, zsock_t *sock, zframe_t *routing, zframe_t *payload)
{
    arena_reset (self->arena);
    ProtobufCAllocator alloc = arena_protobuf (self->arena);
    Strata__V1__HistoryRequest *req = (Strata__V1__HistoryRequest *) wire_unpack (
        &strata__v1__history_request__descriptor, payload, &alloc);
    if (!req) {
        s_bad_input (self, sock, routing, NULL, STRATA__V1__ERROR_CODE__BAD_PAYLOAD, "HISTORY payload does not decode");
        return;
    }
    uint32_t users = req->max_users && req->max_users < HISTORY_USERS_MAX ? req->max_users : HISTORY_USERS_MAX;
    uint32_t events = req->max_events && req->max_events < HISTORY_EVENTS_MAX ? req->max_events : HISTORY_EVENTS_MAX;
    Strata__V1__HistoryReply reply;
    if (knowledge_history_page (self->kb, req->start_user, users, events, req->with_ids, self->arena, &reply) < 0)
        wire_send_error (sock, routing, NULL, STRATA__V1__ERROR_CODE__INTERNAL, "out of memory building the page");
    else
        wire_send (sock, routing, WIRE_HISTORY_REPLY, &reply.base);
}

static void
s_send_catalogue (broker_t *self, zsock_t *sock, zframe_t *routing, zframe_t *payload)
{
    arena_reset (self->arena);
    ProtobufCAllocator alloc = arena_protobuf (self->arena);
    Strata__V1__CatalogueRequest *req = (Strata__V1__CatalogueRequest *) wire_unpack (
        &strata__v1__catalogue_request__descriptor, payload, &alloc);
    if (!req) {
        s_bad_input (self, sock, routing, NULL, STRATA__V1__ERROR_CODE__BAD_PAYLOAD,
                     "CATALOGUE payload does not decode");
        return;
    }
    uint32_t n = req->max_items && req->max_items < CATALOGUE_ITEMS_MAX ? req->max_items : CATALOGUE_ITEMS_MAX;
    Strata__V1__CatalogueReply reply;
    int rc = req->changes ? knowledge_catalogue_changes (self->kb, req->after_change, n, self->arena, &reply)
                          : knowledge_catalogue_page (self->kb, req->start_item, n, self->arena, &reply);
    if (rc < 0)
        wire_send_error (sock, routing, NULL, STRATA__V1__ERROR_CODE__INTERNAL, "out of memory building the page");
    else
        wire_send (sock, routing, WIRE_CATALOGUE_REPLY, &reply.base);
}

// ---------------------------------------------------------------- ingest

typedef struct {
    zframe_t *routing;
    zframe_t *payload;
    char *batch_id;
    int copy_of;        // index of an earlier entry with the same batch id, or -1
} pending_batch_t;

//  Checks one BATCH. Returns 1 if it joins the group to journal (batch_id and copy_of
//  filled), 0 if it was answered already (error, or a batch seen before).
static int
s_check_batch (broker_t *self, zframe_t *routing, zframe_t *payload, pending_batch_t *group, size_t ngroup,
               char **batch_id_out, int *copy_of)
{
    Strata__V1__EventBatch *batch = (Strata__V1__EventBatch *) wire_unpack (&strata__v1__event_batch__descriptor,
                                                                         payload, NULL);
    if (!batch) {
        s_bad_input (self, self->ingest, routing, NULL, STRATA__V1__ERROR_CODE__BAD_PAYLOAD,
                     "BATCH payload is not a valid EventBatch");
        return 0;
    }
    int keep = 0;
    size_t records = batch->n_events + batch->n_items + batch->n_raw;
    const char *id = batch->batch_id ? batch->batch_id : "";
    if (!*id || strlen (id) > 256 || !util_utf8_valid (id, strlen (id)))
        s_bad_input (self, self->ingest, routing, NULL, STRATA__V1__ERROR_CODE__INVALID,
                     "batch_id must be 1..256 bytes of UTF-8");
    else if (records == 0)
        s_bad_input (self, self->ingest, routing, id, STRATA__V1__ERROR_CODE__INVALID, "batch has no records");
    else if (records > (size_t) self->cfg->max_batch) {
        char what[128];
        snprintf (what, sizeof what, "batch has %zu records; the limit is %lld", records,
                  (long long) self->cfg->max_batch);
        s_bad_input (self, self->ingest, routing, id, STRATA__V1__ERROR_CODE__TOO_LARGE, what);
    }
    else {
        Strata__V1__Ack *known = NULL;
        int rc = knowledge_batch_lookup (self->kb, id, &known);
        if (rc == STRATA_OK) {
            //  A re-sent batch: answer with what we know, journal nothing; but not before
            //  the first copy's journal entry is durable.
            unsynced_t *first = s_unsynced_find (self, id);
            if (first)
                s_hold_copy (self, first, routing);
            else
                wire_send (self->ingest, routing, WIRE_ACK, &known->base);
            strata__v1__ack__free_unpacked (known, NULL);
        }
        else if (rc == STRATA_EIO)
            wire_send_error (self->ingest, routing, id, STRATA__V1__ERROR_CODE__INTERNAL, "store read failed; retry");
        else {
            //  Sent twice in quick succession: journal once, ack both copies.
            *copy_of = -1;
            for (size_t i = 0; i < ngroup; i++)
                if (!strcmp (group[i].batch_id, id))
                    *copy_of = (int) i;
            if (knowledge_journal_pending (self->kb) + ngroup >= (uint64_t) self->cfg->max_pending)
                wire_send_error (self->ingest, routing, id, STRATA__V1__ERROR_CODE__UNAVAILABLE,
                                 "journal has %llu batches waiting for workers; retry later",
                                 (unsigned long long) knowledge_journal_pending (self->kb));
            else {
                *batch_id_out = strdup (id);
                keep = *batch_id_out != NULL;
            }
        }
    }
    strata__v1__event_batch__free_unpacked (batch, NULL);
    return keep;
}

//  Serves what is waiting on a client socket (ingest or api): batches are checked and
//  collected, then journaled together and acked; requests are answered at once.
static void
s_serve (broker_t *self, zsock_t *sock)
{
    pending_batch_t group[GROUP_MAX];
    size_t n = 0;
    while (n < GROUP_MAX) {
        wire_msg_t msg;
        int rc = wire_recv_ready (sock, true, (size_t) self->cfg->max_frame, &msg);
        if (rc == STRATA_EINTR || rc == STRATA_EAGAIN)
            break;
        int64_t t0 = zclock_usecs ();
        if (rc == STRATA_EFRAMING)
            s_bad_input (self, sock, msg.routing, NULL, STRATA__V1__ERROR_CODE__BAD_FRAMING,
                         "expected frames: \"" WIRE_PROTOCOL "\", type, payload");
        else if (rc == STRATA_ETOOLARGE) {
            char what[96];
            snprintf (what, sizeof what, "payload over the %lld-byte limit", (long long) self->cfg->max_frame);
            s_bad_input (self, sock, msg.routing, NULL, STRATA__V1__ERROR_CODE__TOO_LARGE, what);
        }
        else if (sock == self->ingest && !strcmp (msg.type, WIRE_BATCH)) {
            char *id = NULL;
            int copy_of = -1;
            if (s_check_batch (self, msg.routing, msg.payload, group, n, &id, &copy_of)) {
                group[n].routing = msg.routing;
                group[n].payload = msg.payload;
                group[n].batch_id = id;
                group[n].copy_of = copy_of;
                msg.routing = msg.payload = NULL;
                n++;
            }
        }
        else if (!strcmp (msg.type, WIRE_STATS))
            s_send_stats (self, sock, msg.routing);
        else if (!strcmp (msg.type, WIRE_STATUS))
            s_send_status (self, sock, msg.routing, msg.payload);
        else if (!strcmp (msg.type, WIRE_REJECTS))
            s_send_rejects (self, sock, msg.routing, msg.payload);
        else if (!strcmp (msg.type, WIRE_HISTORY))
            s_send_history (self, sock, msg.routing, msg.payload);
        else if (!strcmp (msg.type, WIRE_CATALOGUE))
            s_send_catalogue (self, sock, msg.routing, msg.payload);
        else if (sock == self->api && (!strcmp (msg.type, WIRE_RECOMMEND) || !strcmp (msg.type, WIRE_SIMILAR)
                                       || !strcmp (msg.type, WIRE_SEARCH) || !strcmp (msg.type, WIRE_PING))) {
            if (serve_request (self->serve, msg.routing, msg.type, msg.payload) < 0)
                self->protocol_errors++;
        }
        else {
            char what[96];
            snprintf (what, sizeof what, "unknown message type '%.24s' on this endpoint", msg.type);
            s_bad_input (self, sock, msg.routing, NULL, STRATA__V1__ERROR_CODE__UNKNOWN_TYPE, what);
        }
        s_timed (self, msg.type, t0);
        wire_msg_reset (&msg);
    }
    if (n == 0)
        return;

    const char *ids[GROUP_MAX];
    const void *data[GROUP_MAX];
    size_t lens[GROUP_MAX];
    uint64_t seqs[GROUP_MAX];
    size_t slot[GROUP_MAX];
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (group[i].copy_of >= 0) {
            slot[i] = slot[group[i].copy_of];
            continue;
        }
        ids[m] = group[i].batch_id;
        data[m] = zframe_data (group[i].payload);
        lens[m] = zframe_size (group[i].payload);
        slot[i] = m++;
    }
    int64_t t0 = zclock_usecs ();
    //  Written without sync: the syncer makes it durable off the loop (journal-sync),
    //  and the producers are acked then.
    int rc = knowledge_journal_append (self->kb, m, ids, data, lens, false, seqs);
    uint64_t ticket = rc == STRATA_OK && self->syncer ? syncer_request (self->syncer) : 0;
    s_timed (self, "journal write", t0);
    for (size_t i = 0; i < n; i++) {
        uint64_t seq = seqs[slot[i]];
        bool dispatch = group[i].copy_of < 0;
        if (rc != STRATA_OK)
            wire_send_error (sock, group[i].routing, group[i].batch_id, STRATA__V1__ERROR_CODE__INTERNAL,
                             "journal write failed; retry");
        else if (!self->syncer
                 || s_hold_ack (self, ticket, &group[i].routing, &group[i].batch_id, seq, dispatch) < 0) {
            uint64_t synced;
            //  No syncer (journal-sync off), or no memory to hold the ack: acked now,
            //  after waiting for the sync if there is one.
            if (self->syncer && syncer_wait (self->syncer, &synced) != STRATA_OK)
                s_synced (self);   // says so, and stops the broker
            else {
                s_send_ack (self, group[i].routing, group[i].batch_id, seq);
                if (dispatch)
                    s_enqueue (seq, self);
            }
        }
        zframe_destroy (&group[i].routing);
        zframe_destroy (&group[i].payload);
        free (group[i].batch_id);
    }
}

// ---------------------------------------------------------------- workers

static void
s_dispatch (broker_t *self)
{
    while (zlistx_size (self->pending)) {
        pool_worker_t *w = pool_least_loaded (self->pool, STRATA__V1__ROLE__PREPROCESS);
        if (!w)
            return;
        uint64_t seq = (uint64_t) (uintptr_t) zlistx_first (self->pending);
        zlistx_delete (self->pending, zlistx_cursor (self->pending));
        size_t len = 0;
        char *payload = knowledge_journal_get (self->kb, seq, &len);
        if (!payload)
            continue;   // applied meanwhile (a late result from a worker presumed dead)
        Strata__V1__Job job = STRATA__V1__JOB__INIT;
        job.job_id = ++self->next_job_id;
        job.sequence = seq;
        job.payload.data = (uint8_t *) payload;
        job.payload.len = len;
        if (wire_send (self->workers, w->identity, WIRE_JOB, &job.base) == 0)
            pool_assign (self->pool, w, seq);
        else
            s_requeue (seq, self);
        free (payload);
    }
}

static void
s_handle_result (broker_t *self, pool_worker_t *w, zframe_t *routing, zframe_t *payload)
{
    arena_reset (self->arena);
    ProtobufCAllocator alloc = arena_protobuf (self->arena);
    Strata__V1__JobResult *res = (Strata__V1__JobResult *) wire_unpack (&strata__v1__job_result__descriptor, payload,
                                                                     &alloc);
    if (!res) {
        s_bad_input (self, self->workers, routing, NULL, STRATA__V1__ERROR_CODE__BAD_PAYLOAD,
                     "RESULT payload does not decode");
        return;
    }
    Strata__V1__Ack ack;
    Strata__V1__ReasonCount reasons[REASONS_MAX], *rptrs[REASONS_MAX];
    int rc = knowledge_apply (self->kb, res, &ack, reasons, rptrs, REASONS_MAX);
    if (rc == STRATA_EIO) {
        log_error ("cannot apply journal entry %llu; stopping so that a restart replays it",
                   (unsigned long long) res->sequence);
        self->fatal = true;
        return;
    }
    pool_complete (self->pool, res->sequence);
    if (rc == 0)
        log_debug ("applied %llu (%s): %llu accepted, %llu duplicates, %llu rejected by %s",
                   (unsigned long long) res->sequence, res->batch_id, (unsigned long long) ack.accepted,
                   (unsigned long long) ack.duplicates, (unsigned long long) ack.rejected, w ? w->id : "?");
}

static void
s_handle_workers (broker_t *self)
{
    for (int i = 0; i < 256; i++) {
        wire_msg_t msg;
        int rc = wire_recv_ready (self->workers, true, 0, &msg);
        if (rc == STRATA_EINTR || rc == STRATA_EAGAIN)
            break;
        if (rc < 0) {
            s_bad_input (self, self->workers, msg.routing, NULL, STRATA__V1__ERROR_CODE__BAD_FRAMING,
                         "bad framing on worker endpoint");
            wire_msg_reset (&msg);
            continue;
        }
        int64_t t0 = zclock_usecs ();
        pool_worker_t *w = pool_lookup (self->pool, msg.routing);
        if (w)
            pool_touch (self->pool, w);
        if (!strcmp (msg.type, WIRE_READY)) {
            Strata__V1__WorkerHello *hello = (Strata__V1__WorkerHello *) wire_unpack (
                &strata__v1__worker_hello__descriptor, msg.payload, NULL);
            if (!hello || hello->role == STRATA__V1__ROLE__ROLE_UNSPECIFIED)
                s_bad_input (self, self->workers, msg.routing, NULL, STRATA__V1__ERROR_CODE__INVALID,
                             "READY needs a WorkerHello with a role");
            else {
                w = pool_register (self->pool, msg.routing, hello, s_requeue, self);
                if (w)
                    log_info ("worker %s (pid %u) ready: role %d, capacity %u", w->id, w->pid, w->role,
                              w->capacity);
            }
            if (hello)
                strata__v1__worker_hello__free_unpacked (hello, NULL);
        }
        else if (!strcmp (msg.type, WIRE_RESULT)) {
            //  Apply even from an unknown worker: the work is valid, and applying twice
            //  is harmless. Then tell it to register again.
            s_handle_result (self, w, msg.routing, msg.payload);
            if (!w)
                wire_send (self->workers, msg.routing, WIRE_DISCONNECT, NULL);
        }
        else if (!strcmp (msg.type, WIRE_SERVE_RESULTS)) {
            serve_results (self->serve, w, msg.payload);
            if (!w)
                wire_send (self->workers, msg.routing, WIRE_DISCONNECT, NULL);
        }
        else if (!strcmp (msg.type, WIRE_HEARTBEAT)) {
            if (!w)
                wire_send (self->workers, msg.routing, WIRE_DISCONNECT, NULL);
        }
        else if (!strcmp (msg.type, WIRE_DISCONNECT)) {
            if (w) {
                log_info ("worker %s left", w->id);
                pool_remove (self->pool, w, s_requeue, self);
            }
        }
        else
            s_bad_input (self, self->workers, msg.routing, NULL, STRATA__V1__ERROR_CODE__UNKNOWN_TYPE,
                         "unknown message type on worker endpoint");
        s_timed (self, msg.type, t0);
        wire_msg_reset (&msg);
        if (self->fatal)
            return;
    }
}

static void
s_heartbeat (broker_t *self)
{
    pool_expire (self->pool, zclock_mono (), s_requeue, self);
    Strata__V1__Heartbeat hb = STRATA__V1__HEARTBEAT__INIT;
    for (pool_worker_t *w = pool_first (self->pool); w; w = pool_next (self->pool))
        wire_send (self->workers, w->identity, WIRE_HEARTBEAT, &hb.base);
}

//  Counts a turn of the loop that took longer than slow-turn-ms (t: its start and the
//  end of the workers', the ingest's, the api's and the dispatching's parts, in µs).
//  Slow turns are logged at most once a second: how many, and the slowest of them
//  with its parts and its slowest message.
static void
s_turn_done (broker_t *self, const int64_t t[5])
{
    int64_t us = t[4] - t[0];
    if (self->cfg->slow_turn_ms > 0 && us > self->cfg->slow_turn_ms * 1000) {
        self->slow_turns++;
        self->slow_unlogged++;
        if ((uint64_t) us > self->slowest_turn_us)
            self->slowest_turn_us = (uint64_t) us;
        if (us > self->worst_us) {
            self->worst_us = us;
            snprintf (self->worst, sizeof self->worst,
                      "took %.1f ms (workers %.1f, ingest %.1f, api %.1f, dispatch %.1f), its slowest message %s, "
                      "%.1f ms",
                      (double) us / 1000, (double) (t[1] - t[0]) / 1000, (double) (t[2] - t[1]) / 1000,
                      (double) (t[3] - t[2]) / 1000, (double) (t[4] - t[3]) / 1000,
                      self->turn_type[0] ? self->turn_type : "none", (double) self->turn_type_us / 1000);
        }
    }
    int64_t now = zclock_mono ();
    if (self->slow_unlogged && now - self->slow_logged_ms >= 1000) {
        log_warn ("%llu slow turn%s of the loop (over %lld ms; requests arriving meanwhile wait); the slowest %s",
                  (unsigned long long) self->slow_unlogged, self->slow_unlogged > 1 ? "s" : "",
                  (long long) self->cfg->slow_turn_ms, self->worst);
        self->slow_logged_ms = now;
        self->slow_unlogged = 0;
        self->worst_us = 0;
    }
    self->turn_type[0] = 0;
    self->turn_type_us = 0;
}

// ---------------------------------------------------------------- lifecycle

//  The actor's pipe: whether the broker is told to stop.
static bool
s_pipe_says_stop (broker_t *self)
{
    zmsg_t *msg = zmsg_recv (self->pipe);
    if (!msg)
        return true;   // interrupted
    char *command = zmsg_popstr (msg);
    bool stop = command && !strcmp (command, "$TERM");
    if (!stop)
        log_warn ("unknown command '%s' on the broker's pipe", command ? command : "");
    zstr_free (&command);
    zmsg_destroy (&msg);
    return stop;
}

broker_t *
broker_new (const broker_config_t *cfg)
{
    assert (cfg);
    broker_t *self = calloc (1, sizeof *self);
    if (!self) {
        log_error ("cannot start: out of memory");
        return NULL;
    }
    self->cfg = cfg;
    self->started_ms = util_now_ms ();
    const char *why = "out of memory";
    self->kb = knowledge_open (cfg->dir);
    if (!self->kb) {
        why = "cannot open the knowledge store";
        goto fail;
    }
    if (knowledge_history_cache (self->kb, (uint32_t) cfg->history_cache) < 0)
        goto fail;
    knowledge_change_log_limit (self->kb, (uint64_t) cfg->catalogue_changes);
    self->pool = pool_new (cfg->heartbeat_ms, cfg->liveness);
    self->pending = zlistx_new ();
    self->unsynced = zlistx_new ();
    if (self->unsynced)
        zlistx_set_destructor (self->unsynced, s_unsynced_destroy);
    self->arena = arena_new (4 << 20);
    if (!self->pool || !self->pending || !self->unsynced || !self->arena)
        goto fail;
    if (cfg->journal_sync && !(self->syncer = syncer_new (knowledge_store (self->kb)))) {
        why = "cannot start the journal's syncer";
        goto fail;
    }
    self->ingest = wire_bind_router (cfg->ingest, cfg->max_frame);
    self->workers = wire_bind_router (cfg->workers, cfg->max_frame);
    self->api = wire_bind_router (cfg->api, cfg->max_frame);
    if (!self->ingest || !self->workers || !self->api) {
        why = "cannot bind an endpoint";
        goto fail;
    }
    serve_config_t sc = { (uint32_t) cfg->history_len, (int) cfg->serve_attempts, cfg->serve_timeout_ms,
                          (uint32_t) cfg->serve_pipeline, cfg->serve_hedge_ms };
    self->serve = serve_new (&sc, self->kb, self->pool, self->api, self->workers);
    if (!self->serve)
        goto fail;
    //  Restart safety: whatever was journaled but not applied is work to do.
    knowledge_journal_each (self->kb, s_enqueue, self);
    const char *names[] = { "ingest", "workers", "api" };
    zsock_t *socks[] = { self->ingest, self->workers, self->api };
    if (endpoints_write (cfg->endpoints_file, names, socks, 3, cfg->dir) < 0) {
        why = "cannot write the endpoints file";
        goto fail;
    }
    log_info ("broker up: ingest %s, workers %s, api %s, data %s (%zu journal entries to apply)",
              zsock_endpoint (self->ingest), zsock_endpoint (self->workers), zsock_endpoint (self->api), cfg->dir,
              zlistx_size (self->pending));
    return self;
fail:
    log_error ("cannot start: %s (data %s)", why, cfg->dir);
    broker_destroy (&self);
    return NULL;
}

void
broker_destroy (broker_t **self_p)
{
    assert (self_p);
    broker_t *self = *self_p;
    if (!self)
        return;
    serve_destroy (&self->serve);
    zsock_destroy (&self->ingest);
    zsock_destroy (&self->workers);
    zsock_destroy (&self->api);
    zlistx_destroy (&self->pending);
    zlistx_destroy (&self->unsynced);
    syncer_destroy (&self->syncer);
    arena_destroy (&self->arena);
    pool_destroy (&self->pool);
    knowledge_destroy (&self->kb);
    free (self);
    *self_p = NULL;
}

const char *
broker_endpoint (broker_t *self, const char *name)
{
    assert (self && name);
    zsock_t *sock = !strcmp (name, "ingest")    ? self->ingest
                    : !strcmp (name, "workers") ? self->workers
                    : !strcmp (name, "api")     ? self->api
                                                : NULL;
    return sock ? zsock_endpoint (sock) : NULL;
}

int
broker_run (broker_t *self)
{
    assert (self);
    const broker_config_t *cfg = self->cfg;
    //  zmq_poll's answer says which sockets have messages; each is drained until it has
    //  none (wire_recv_ready), with no further question to the sockets. The syncer and
    //  the actor's pipe, when there are, take the slots after the sockets.
    zmq_pollitem_t items[5] = { { zsock_resolve (self->workers), 0, ZMQ_POLLIN, 0 },
                                { zsock_resolve (self->ingest), 0, ZMQ_POLLIN, 0 },
                                { zsock_resolve (self->api), 0, ZMQ_POLLIN, 0 } };
    int nitems = 3, synced_item = -1, pipe_item = -1;
    if (self->syncer) {
        synced_item = nitems++;
        items[synced_item] = (zmq_pollitem_t) { NULL, syncer_fd (self->syncer), ZMQ_POLLIN, 0 };
    }
    if (self->pipe) {
        pipe_item = nitems++;
        items[pipe_item] = (zmq_pollitem_t) { zsock_resolve (self->pipe), 0, ZMQ_POLLIN, 0 };
    }
    int64_t next_beat = zclock_mono () + cfg->heartbeat_ms;
    while (!zsys_interrupted && !self->fatal) {
        int64_t now = zclock_mono (), wake = serve_next_wake (self->serve);
        wake = wake < next_beat ? wake : next_beat;
        long timeout = (long) (wake > now ? wake - now : 0);
        if (zmq_poll (items, nitems, timeout) < 0)
            break;   // interrupted
        if (pipe_item >= 0 && (items[pipe_item].revents & ZMQ_POLLIN) && s_pipe_says_stop (self))
            break;
        //  Serve everything that is ready on every socket, workers first: applying
        //  results frees capacity and shortens the journal.
        int64_t t[5];
        t[0] = zclock_usecs ();
        if (items[0].revents & ZMQ_POLLIN)
            s_handle_workers (self);
        t[1] = zclock_usecs ();
        if (synced_item >= 0 && (items[synced_item].revents & ZMQ_POLLIN))
            s_synced (self);
        if (items[1].revents & ZMQ_POLLIN)
            s_serve (self, self->ingest);
        t[2] = zclock_usecs ();
        if (items[2].revents & ZMQ_POLLIN)
            s_serve (self, self->api);
        t[3] = zclock_usecs ();
        s_dispatch (self);
        serve_dispatch (self->serve);
        if (zclock_mono () >= next_beat) {
            s_heartbeat (self);
            s_dispatch (self);
            serve_dispatch (self->serve);
            next_beat = zclock_mono () + cfg->heartbeat_ms;
        }
        t[4] = zclock_usecs ();
        s_turn_done (self, t);
    }
    //  Batches journaled and not yet acked: acked once durable, so that their producers
    //  need not send them again.
    if (self->syncer && !self->fatal && zlistx_size (self->unsynced)) {
        uint64_t synced;
        syncer_wait (self->syncer, &synced);
        s_synced (self);
    }
    //  Tell workers we are going so they reconnect at once to the next broker.
    for (pool_worker_t *w = pool_first (self->pool); w; w = pool_next (self->pool))
        wire_send (self->workers, w->identity, WIRE_DISCONNECT, NULL);
    log_info ("broker stopping");
    return self->fatal ? STRATA_EIO : STRATA_OK;
}

void
broker_actor (zsock_t *pipe, void *args)
{
    broker_t *self = args;
    assert (self);
    self->pipe = pipe;
    zsock_signal (pipe, 0);
    broker_run (self);
    self->pipe = NULL;
}
