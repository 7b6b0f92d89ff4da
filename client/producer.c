/*  producer: see strata.h.

    Reliability is Lazy-Pirate style on a DEALER socket: every batch stays in memory
    until its ACK arrives; an unacknowledged batch is re-sent after a timeout that
    doubles; when the broker has been silent for two timeouts the socket is replaced
    (a fresh connection) and everything outstanding is re-sent. Batch ids make re-sends
    idempotent on the broker side, event ids make them idempotent in the store.
*/
#include "strata.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "util.h"
#include "wire.h"

typedef struct {
    char *batch_id;
    uint8_t *data;
    size_t len;
    size_t records;
    int64_t sent_at;
    int64_t timeout;
} flight_t;

struct _strata_producer_t {
    char *endpoint;
    strata_producer_opts_t opts;
    char producer_id[64];
    uint64_t batch_seq;
    zsock_t *sock;
    arena_t *arena;
    Strata__V1__EventBatch batch;
    size_t cap;                 // records per batch
    zlistx_t *inflight;         // flight_t *
    char **done;                // ids of journaled batches, for the final status
    size_t n_done, cap_done;
    strata_summary_t sum;
    int64_t last_heard;
    char error[256];
    int failed;                 // a batch was refused for good
};

static void
s_flight_destroy (void **item)
{
    flight_t *f = *item;
    if (f) {
        free (f->batch_id);
        free (f->data);
        free (f);
    }
    *item = NULL;
}

static int
s_connect (strata_producer_t *self)
{
    zsock_destroy (&self->sock);
    self->sock = zsock_new (ZMQ_DEALER);
    if (!self->sock)
        return STRATA_ENOMEM;
    zsock_set_linger (self->sock, 0);
    zsock_set_sndhwm (self->sock, 0);
    if (zsock_connect (self->sock, "%s", self->endpoint) < 0) {
        zsock_destroy (&self->sock);
        return STRATA_ECONNECT;
    }
    return STRATA_OK;
}

static void
s_batch_reset (strata_producer_t *self)
{
    arena_reset (self->arena);
    strata__v1__event_batch__init (&self->batch);
    self->batch.events = arena_calloc (self->arena, self->cap, sizeof (Strata__V1__Event *));
    self->batch.items = arena_calloc (self->arena, self->cap, sizeof (Strata__V1__Item *));
    self->batch.raw = arena_calloc (self->arena, self->cap, sizeof (Strata__V1__RawRecord *));
}

strata_producer_t *
strata_producer_new (const char *endpoint, const strata_producer_opts_t *opts)
{
    if (!endpoint || !*endpoint)
        return NULL;
    strata_producer_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    if (opts)
        self->opts = *opts;
    if (!self->opts.batch_records)
        self->opts.batch_records = 1000;
    if (!self->opts.max_inflight)
        self->opts.max_inflight = 16;
    if (self->opts.ack_timeout_ms <= 0)
        self->opts.ack_timeout_ms = 2000;
    if (self->opts.give_up_ms <= 0)
        self->opts.give_up_ms = 120000;
    if (self->opts.producer_id && *self->opts.producer_id)
        snprintf (self->producer_id, sizeof self->producer_id, "%.48s", self->opts.producer_id);
    else
        util_random_hex (self->producer_id);
    self->opts.producer_id = self->producer_id;
    self->cap = self->opts.batch_records;
    self->endpoint = strdup (endpoint);
    self->arena = arena_new (1 << 20);
    self->inflight = zlistx_new ();
    if (!self->endpoint || !self->arena || !self->inflight || s_connect (self) != STRATA_OK) {
        strata_producer_destroy (&self);
        return NULL;
    }
    zlistx_set_destructor (self->inflight, s_flight_destroy);
    s_batch_reset (self);
    self->last_heard = util_mono_ms ();
    return self;
}

void
strata_producer_destroy (strata_producer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    strata_producer_t *self = *self_p;
    zsock_destroy (&self->sock);
    zlistx_destroy (&self->inflight);
    arena_destroy (&self->arena);
    for (size_t i = 0; i < self->n_done; i++)
        free (self->done[i]);
    free (self->done);
    free (self->endpoint);
    free (self);
    *self_p = NULL;
}

static flight_t *
s_find (strata_producer_t *self, const char *batch_id)
{
    for (flight_t *f = zlistx_first (self->inflight); f; f = zlistx_next (self->inflight))
        if (!strcmp (f->batch_id, batch_id))
            return f;
    return NULL;
}

static void
s_send (strata_producer_t *self, flight_t *f)
{
    wire_send_bytes (self->sock, NULL, WIRE_BATCH, f->data, f->len);
    f->sent_at = util_mono_ms ();
}

static int
s_remember (strata_producer_t *self, const char *batch_id)
{
    if (self->n_done == self->cap_done) {
        size_t cap = self->cap_done ? self->cap_done * 2 : 256;
        char **d = realloc (self->done, cap * sizeof *d);
        if (!d)
            return STRATA_ENOMEM;
        self->done = d;
        self->cap_done = cap;
    }
    self->done[self->n_done] = strdup (batch_id);
    if (!self->done[self->n_done])
        return STRATA_ENOMEM;
    self->n_done++;
    return STRATA_OK;
}

//  Handles one message from the broker. status_reply (may be NULL) receives a
//  STATUS_REPLY if one arrives.
static void
s_handle (strata_producer_t *self, wire_msg_t *msg, Strata__V1__BatchStatusReply **status_reply)
{
    self->last_heard = util_mono_ms ();
    if (!strcmp (msg->type, WIRE_ACK)) {
        Strata__V1__Ack *ack = (Strata__V1__Ack *) wire_unpack (&strata__v1__ack__descriptor, msg->payload, NULL);
        if (!ack)
            return;
        flight_t *f = s_find (self, ack->batch_id);
        if (f) {
            s_remember (self, f->batch_id);
            self->sum.acked++;
            zlistx_delete (self->inflight, zlistx_cursor (self->inflight));
        }
        strata__v1__ack__free_unpacked (ack, NULL);
    }
    else if (!strcmp (msg->type, WIRE_ERROR)) {
        Strata__V1__Error *e = (Strata__V1__Error *) wire_unpack (&strata__v1__error__descriptor, msg->payload, NULL);
        if (!e)
            return;
        snprintf (self->error, sizeof self->error, "%s", e->message);
        flight_t *f = *e->ref ? s_find (self, e->ref) : NULL;
        if (f) {
            if (e->code == STRATA__V1__ERROR_CODE__UNAVAILABLE || e->code == STRATA__V1__ERROR_CODE__INTERNAL)
                f->sent_at = util_mono_ms ();   // back off, the retry timer re-sends it
            else {
                //  Refused for good (too large, invalid): nothing a re-send would fix.
                self->sum.rejected += f->records;
                self->failed = 1;
                zlistx_delete (self->inflight, zlistx_cursor (self->inflight));
            }
        }
        strata__v1__error__free_unpacked (e, NULL);
    }
    else if (!strcmp (msg->type, WIRE_STATUS_REPLY) && status_reply) {
        *status_reply = (Strata__V1__BatchStatusReply *) wire_unpack (&strata__v1__batch_status_reply__descriptor,
                                                                       msg->payload, NULL);
    }
}

//  Waits up to wait_ms for messages and re-sends what timed out. Returns STRATA_OK or
//  STRATA_ETIMEOUT when the broker has been silent for give_up_ms with work outstanding.
static int
s_pump (strata_producer_t *self, int wait_ms, Strata__V1__BatchStatusReply **status_reply)
{
    zmq_pollitem_t item = { zsock_resolve (self->sock), 0, ZMQ_POLLIN, 0 };
    if (zmq_poll (&item, 1, wait_ms) > 0) {
        for (;;) {
            wire_msg_t msg;
            int rc = wire_recv_ready (self->sock, false, 0, &msg);
            if (rc == STRATA_EAGAIN || rc == STRATA_EINTR)
                break;
            if (rc == 0)
                s_handle (self, &msg, status_reply);
            wire_msg_reset (&msg);
            if (status_reply && *status_reply)
                break;
        }
    }
    int64_t now = util_mono_ms ();
    if (zlistx_size (self->inflight) == 0 && !status_reply)
        return STRATA_OK;
    if (now - self->last_heard > self->opts.give_up_ms)
        return STRATA_ETIMEOUT;
    //  Silent for two timeouts: assume the connection is gone and start a new one.
    if (now - self->last_heard > 2 * (int64_t) self->opts.ack_timeout_ms && zlistx_size (self->inflight)) {
        bool stale = true;
        for (flight_t *f = zlistx_first (self->inflight); f; f = zlistx_next (self->inflight))
            stale &= now - f->sent_at > 2 * (int64_t) self->opts.ack_timeout_ms;
        if (stale) {
            if (s_connect (self) != STRATA_OK)
                return STRATA_ECONNECT;
            for (flight_t *f = zlistx_first (self->inflight); f; f = zlistx_next (self->inflight)) {
                s_send (self, f);
                self->sum.resent++;
            }
            return STRATA_OK;
        }
    }
    for (flight_t *f = zlistx_first (self->inflight); f; f = zlistx_next (self->inflight))
        if (now - f->sent_at > f->timeout) {
            s_send (self, f);
            self->sum.resent++;
            if (f->timeout < 16 * (int64_t) self->opts.ack_timeout_ms)
                f->timeout *= 2;
        }
    return STRATA_OK;
}

static int
s_ship (strata_producer_t *self)
{
    size_t records = self->batch.n_events + self->batch.n_items + self->batch.n_raw;
    if (records == 0)
        return STRATA_OK;
    //  Backpressure: wait for room before adding another batch to the air.
    while (zlistx_size (self->inflight) >= self->opts.max_inflight) {
        int rc = s_pump (self, 50, NULL);
        if (rc != STRATA_OK)
            return rc;
    }
    char id[96];
    snprintf (id, sizeof id, "%s-%llu", self->producer_id, (unsigned long long) ++self->batch_seq);
    self->batch.batch_id = id;
    self->batch.producer = self->producer_id;
    flight_t *f = calloc (1, sizeof *f);
    if (!f)
        return STRATA_ENOMEM;
    f->len = strata__v1__event_batch__get_packed_size (&self->batch);
    f->data = malloc (f->len ? f->len : 1);
    f->batch_id = strdup (id);
    if (!f->data || !f->batch_id) {
        void *p = f;
        s_flight_destroy (&p);
        return STRATA_ENOMEM;
    }
    strata__v1__event_batch__pack (&self->batch, f->data);
    f->records = records;
    f->timeout = self->opts.ack_timeout_ms;
    zlistx_add_end (self->inflight, f);
    if (zlistx_size (self->inflight) == 1)
        self->last_heard = util_mono_ms ();   // the silence clock starts with work outstanding
    s_send (self, f);
    self->sum.sent += records;
    self->sum.batches++;
    s_batch_reset (self);
    return STRATA_OK;
}

static int
s_room (strata_producer_t *self)
{
    if (self->batch.n_events + self->batch.n_items + self->batch.n_raw >= self->cap)
        return s_ship (self);
    //  Opportunistically read acks so that the window drains while we add.
    return s_pump (self, 0, NULL);
}

static char *
s_dup (strata_producer_t *self, const char *s)
{
    return arena_strdup (self->arena, s ? s : "");
}

int
strata_producer_add_event (strata_producer_t *self, const strata_event_t *ev)
{
    int rc = s_room (self);
    if (rc != STRATA_OK)
        return rc;
    Strata__V1__Event *e = arena_alloc (self->arena, sizeof *e);
    if (!e)
        return STRATA_ENOMEM;
    strata__v1__event__init (e);
    e->user_id = s_dup (self, ev->user_id);
    e->item_id = s_dup (self, ev->item_id);
    e->type_name = s_dup (self, ev->type);
    e->timestamp_ms = ev->timestamp_ms;
    e->query = s_dup (self, ev->query);
    e->value = ev->value;
    e->session = s_dup (self, ev->session);
    if (ev->event_id && *ev->event_id)
        e->event_id = s_dup (self, ev->event_id);
    else {
        //  Derived ids make re-importing the same data idempotent.
        uint64_t h = UTIL_FNV64_INIT;
        const char *parts[] = { e->user_id, e->item_id, e->type_name, e->query, e->session };
        for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
            h = util_fnv1a64_add (h, parts[i], strlen (parts[i]) + 1);
        h = util_fnv1a64_add (h, &ev->timestamp_ms, sizeof ev->timestamp_ms);
        e->event_id = arena_printf (self->arena, "h%016llx", (unsigned long long) h);
    }
    if (!e->user_id || !e->item_id || !e->type_name || !e->query || !e->session || !e->event_id)
        return STRATA_ENOMEM;
    self->batch.events[self->batch.n_events++] = e;
    return STRATA_OK;
}

int
strata_producer_add_item (strata_producer_t *self, const strata_item_t *src)
{
    int rc = s_room (self);
    if (rc != STRATA_OK)
        return rc;
    Strata__V1__Item *it = arena_alloc (self->arena, sizeof *it);
    if (!it)
        return STRATA_ENOMEM;
    strata__v1__item__init (it);
    it->item_id = s_dup (self, src->item_id);
    it->title = s_dup (self, src->title);
    it->brand = s_dup (self, src->brand);
    it->price_text = s_dup (self, src->price);
    if (src->category && *src->category) {
        it->n_category = 1;
        it->category = arena_alloc (self->arena, sizeof (char *));
        if (!it->category)
            return STRATA_ENOMEM;
        it->category[0] = s_dup (self, src->category);
    }
    if (src->n_attrs) {
        it->attributes = arena_calloc (self->arena, src->n_attrs, sizeof *it->attributes);
        if (!it->attributes)
            return STRATA_ENOMEM;
        for (size_t i = 0; i < src->n_attrs; i++) {
            Strata__V1__Attribute *a = arena_alloc (self->arena, sizeof *a);
            if (!a)
                return STRATA_ENOMEM;
            strata__v1__attribute__init (a);
            a->key = s_dup (self, src->attr_keys[i]);
            a->value = s_dup (self, src->attr_values[i]);
            it->attributes[i] = a;
        }
        it->n_attributes = src->n_attrs;
    }
    self->batch.items[self->batch.n_items++] = it;
    return STRATA_OK;
}

int
strata_producer_add_raw (strata_producer_t *self, const char *source, uint64_t line, const char *text,
                         const char *reason)
{
    int rc = s_room (self);
    if (rc != STRATA_OK)
        return rc;
    Strata__V1__RawRecord *r = arena_alloc (self->arena, sizeof *r);
    if (!r)
        return STRATA_ENOMEM;
    strata__v1__raw_record__init (r);
    r->source = s_dup (self, source);
    r->line = line;
    //  Raw text may be anything; keep a bounded prefix and let the worker sanitise it.
    size_t len = strlen (text ? text : "");
    r->text = arena_strndup (self->arena, text ? text : "", len > 1024 ? 1024 : len);
    r->reason = s_dup (self, reason);
    self->batch.raw[self->batch.n_raw++] = r;
    return STRATA_OK;
}

int
strata_producer_flush (strata_producer_t *self)
{
    int rc = s_ship (self);
    while (rc == STRATA_OK && zlistx_size (self->inflight))
        rc = s_pump (self, 50, NULL);
    if (rc == STRATA_OK && self->failed)
        rc = STRATA_EREJECTED;
    return rc;
}

int
strata_producer_finish (strata_producer_t *self, int timeout_ms, strata_summary_t *summary)
{
    int rc = strata_producer_flush (self);
    if (rc != STRATA_OK && rc != STRATA_EREJECTED)
        return rc;
    int final = rc;
    int64_t deadline = util_mono_ms () + timeout_ms;
    uint64_t accepted = 0, duplicates = 0, rejected = 0;
    size_t next = 0;   // batches before this index are known applied
    while (next < self->n_done) {
        if (util_mono_ms () > deadline)
            return STRATA_ETIMEOUT;
        size_t n = self->n_done - next > 1000 ? 1000 : self->n_done - next;
        Strata__V1__BatchStatusRequest req = STRATA__V1__BATCH_STATUS_REQUEST__INIT;
        req.n_batch_ids = n;
        req.batch_ids = self->done + next;
        wire_send (self->sock, NULL, WIRE_STATUS, &req.base);
        Strata__V1__BatchStatusReply *reply = NULL;
        int64_t asked = util_mono_ms ();
        while (!reply && util_mono_ms () - asked < self->opts.ack_timeout_ms * 2)
            s_pump (self, 100, &reply);
        if (!reply) {
            s_connect (self);   // silent broker: reconnect and ask again
            continue;
        }
        size_t applied = 0;
        for (size_t i = 0; i < reply->n_acks && i < n; i++) {
            Strata__V1__Ack *a = reply->acks[i];
            if (a->state != STRATA__V1__BATCH_STATE__APPLIED)
                break;
            accepted += a->accepted;
            duplicates += a->duplicates;
            rejected += a->rejected;
            applied++;
        }
        strata__v1__batch_status_reply__free_unpacked (reply, NULL);
        next += applied;
        if (applied < n)
            zclock_sleep (50);   // the rest are still being cleaned
    }
    self->sum.accepted = accepted;
    self->sum.duplicates = duplicates;
    self->sum.rejected += rejected;
    if (summary)
        *summary = self->sum;
    return final;
}

void
strata_producer_summary (strata_producer_t *self, strata_summary_t *summary)
{
    *summary = self->sum;
}

const char *
strata_producer_error (strata_producer_t *self)
{
    return self->error;
}
