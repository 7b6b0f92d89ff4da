/*  serve: see serve.h. */
#define LOG_MODULE "serve"
#include "serve.h"

#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "log.h"
#include "util.h"
#include "wire.h"

typedef struct {
    uint64_t key;          // job id | SERVE_KEY_BIT
    zframe_t *routing;     // the client's
    char type[24];         // RECOMMEND, SIMILAR, SEARCH or PING
    char *request_id;      // the client's, named in an Error
    uint8_t *job;          // the packed ServeJob, sent as is to each worker tried
    size_t len;
    int attempts;          // workers it was sent to
    int holders;           // workers holding it now (two while hedged)
    bool hedged;           // sent to a second worker for taking too long on the first
    int64_t since;         // monotonic ms it started waiting
    int64_t sent;          // monotonic ms it was last sent
} job_t;

//  A send, in the order sent: hedging looks at the oldest.
typedef struct {
    uint64_t key;
    int64_t sent;
} sent_t;

struct _serve_t {
    serve_config_t cfg;
    knowledge_t *kb;
    pool_t *pool;
    zsock_t *api, *workers;
    zhashx_t *jobs;        // key (hex) -> job_t
    zlistx_t *waiting;     // keys, oldest first
    zlistx_t *sent;        // sent_t, oldest first
    int64_t next_hedge;    // when s_hedge has something to look at again (INT64_MAX: nothing)
    arena_t *arena;
    uint64_t next_id;
    serve_counts_t n;
};

static void
s_job_free (void **item)
{
    job_t *j = *item;
    if (j) {
        zframe_destroy (&j->routing);
        free (j->request_id);
        free (j->job);
        free (j);
        *item = NULL;
    }
}

static void
s_sent_free (void **item)
{
    free (*item);
    *item = NULL;
}

serve_t *
serve_new (const serve_config_t *cfg, knowledge_t *kb, pool_t *pool, zsock_t *api, zsock_t *workers)
{
    serve_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = *cfg;
    self->kb = kb;
    self->pool = pool;
    self->api = api;
    self->workers = workers;
    self->jobs = zhashx_new ();
    self->waiting = zlistx_new ();
    self->sent = zlistx_new ();
    self->arena = arena_new (1 << 20);
    if (!self->jobs || !self->waiting || !self->sent || !self->arena) {
        serve_destroy (&self);
        return NULL;
    }
    zhashx_set_destructor (self->jobs, s_job_free);
    zlistx_set_destructor (self->sent, s_sent_free);
    self->next_hedge = INT64_MAX;
    return self;
}

void
serve_destroy (serve_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    serve_t *self = *self_p;
    zhashx_destroy (&self->jobs);
    zlistx_destroy (&self->waiting);
    zlistx_destroy (&self->sent);
    arena_destroy (&self->arena);
    free (self);
    *self_p = NULL;
}

static void
s_key_text (uint64_t key, char out[17])
{
    snprintf (out, 17, "%016llx", (unsigned long long) key);
}

static job_t *
s_job (serve_t *self, uint64_t key)
{
    char k[17];
    s_key_text (key, k);
    return zhashx_lookup (self->jobs, k);
}

static void
s_drop (serve_t *self, job_t *j)
{
    char k[17];
    s_key_text (j->key, k);
    zhashx_delete (self->jobs, k);
}

//  Fails a job with an Error to its client and forgets it.
static void
s_fail (serve_t *self, job_t *j, Strata__V1__ErrorCode code, const char *why)
{
    wire_send_error (self->api, j->routing, j->request_id, code, "%s", why);
    self->n.failed++;
    s_drop (self, j);
}

//  Answers a refused request with an Error; returns rc, what went wrong.
static int
s_refuse (serve_t *self, zframe_t *routing, const char *ref, Strata__V1__ErrorCode code, const char *why, int rc)
{
    log_warn ("refused a request: %s", why);
    wire_send_error (self->api, routing, ref, code, "%s", why);
    self->n.failed++;
    return rc;
}

int
serve_request (serve_t *self, zframe_t *routing, const char *type, zframe_t *payload)
{
    if (!pool_count (self->pool, STRATA__V1__ROLE__RANK))
        return s_refuse (self, routing, NULL, STRATA__V1__ERROR_CODE__UNAVAILABLE,
                         "no rank worker is connected (start one: strata-worker --role rank)", STRATA_EUNAVAILABLE);
    arena_reset (self->arena);
    ProtobufCAllocator alloc = arena_protobuf (self->arena);
    Strata__V1__ServeJob job = STRATA__V1__SERVE_JOB__INIT;
    job.job_id = ++self->next_id;
    job.type = (char *) type;
    job.request.data = zframe_data (payload);
    job.request.len = zframe_size (payload);
    const char *request_id = NULL;
    if (!strcmp (type, WIRE_RECOMMEND)) {
        Strata__V1__Recommend *r = (Strata__V1__Recommend *) wire_unpack (&strata__v1__recommend__descriptor,
                                                                          payload, &alloc);
        if (!r)
            return s_refuse (self, routing, NULL, STRATA__V1__ERROR_CODE__BAD_PAYLOAD, "RECOMMEND needs a Recommend",
                             STRATA_EPROTOCOL);
        request_id = r->request_id;
        uint32_t user;
        if (knowledge_user_index (self->kb, r->user, &user) == 0) {
            Strata__V1__Interaction **h = NULL;
            int n = knowledge_user_recent (self->kb, user, self->cfg.history_len, self->arena, &h);
            if (n < 0)
                return s_refuse (self, routing, request_id, STRATA__V1__ERROR_CODE__INTERNAL,
                                 "cannot read the user's history", n);
            job.known_user = true;
            job.n_history = (size_t) n;
            job.history = h;
        }
    }
    else if (!strcmp (type, WIRE_SEARCH)) {
        Strata__V1__Search *r = (Strata__V1__Search *) wire_unpack (&strata__v1__search__descriptor, payload, &alloc);
        if (!r)
            return s_refuse (self, routing, NULL, STRATA__V1__ERROR_CODE__BAD_PAYLOAD, "SEARCH needs a Search",
                             STRATA_EPROTOCOL);
        request_id = r->request_id;
        uint32_t user;
        if (r->user && *r->user && knowledge_user_index (self->kb, r->user, &user) == 0) {
            Strata__V1__Interaction **h = NULL;
            int n = knowledge_user_recent (self->kb, user, self->cfg.history_len, self->arena, &h);
            if (n > 0) {
                job.known_user = true;
                job.n_history = (size_t) n;
                job.history = h;
            }
        }
    }
    else if (!strcmp (type, WIRE_PING))
        ;   // nothing to check: it measures the path itself
    else {
        Strata__V1__Similar *r = (Strata__V1__Similar *) wire_unpack (&strata__v1__similar__descriptor, payload,
                                                                      &alloc);
        if (!r)
            return s_refuse (self, routing, NULL, STRATA__V1__ERROR_CODE__BAD_PAYLOAD, "SIMILAR needs a Similar",
                             STRATA_EPROTOCOL);
        request_id = r->request_id;
    }
    job_t *j = calloc (1, sizeof *j);
    size_t len = strata__v1__serve_job__get_packed_size (&job);
    uint8_t *buf = j ? malloc (len ? len : 1) : NULL;
    if (!buf) {
        free (j);
        return s_refuse (self, routing, request_id, STRATA__V1__ERROR_CODE__INTERNAL, "out of memory", STRATA_ENOMEM);
    }
    strata__v1__serve_job__pack (&job, buf);
    j->key = job.job_id | SERVE_KEY_BIT;
    j->routing = zframe_dup (routing);
    j->request_id = request_id && *request_id ? strdup (request_id) : NULL;
    snprintf (j->type, sizeof j->type, "%s", type);
    j->job = buf;
    j->len = len;
    j->since = zclock_mono ();
    char k[17];
    s_key_text (j->key, k);
    zhashx_insert (self->jobs, k, j);
    zlistx_add_end (self->waiting, (void *) (uintptr_t) j->key);
    return 0;
}

void
serve_results (serve_t *self, pool_worker_t *w, zframe_t *payload)
{
    //  Decoded into the arena: one reset instead of a free per result and per reply.
    arena_reset (self->arena);
    ProtobufCAllocator alloc = arena_protobuf (self->arena);
    Strata__V1__ServeResults *rs = (Strata__V1__ServeResults *) wire_unpack (&strata__v1__serve_results__descriptor,
                                                                              payload, &alloc);
    if (!rs) {
        log_warn ("SERVE_RESULTS payload does not decode; ignored");
        return;
    }
    if (w)
        w->messages -= rs->messages < w->messages ? rs->messages : w->messages;
    for (size_t i = 0; i < rs->n_results; i++) {
        const Strata__V1__ServeResult *r = rs->results[i];
        uint64_t key = r->job_id | SERVE_KEY_BIT;
        if (w)
            pool_complete_on (self->pool, w, key);
        else
            pool_complete (self->pool, key);
        job_t *j = s_job (self, key);
        if (!j)
            continue;   // answered already by another worker (it was hedged, or presumed lost)
        wire_send_bytes (self->api, j->routing, r->type && *r->type ? r->type : WIRE_ERROR, r->reply.data,
                         r->reply.len);
        self->n.served++;
        s_drop (self, j);
    }
}

void
serve_requeue (serve_t *self, uint64_t key)
{
    job_t *j = s_job (self, key);
    if (!j || --j->holders > 0)
        return;   // answered, or another worker holds it (hedged)
    self->n.retried++;
    log_info ("%s job %llu lost with its worker; trying another", j->type,
              (unsigned long long) (key & ~SERVE_KEY_BIT));
    zlistx_add_start (self->waiting, (void *) (uintptr_t) key);
}

//  The jobs one worker gets from one dispatch, sent as one message.
#define OUTBOX_JOBS 64
#define OUTBOXES 8

typedef struct {
    pool_worker_t *w;
    size_t n;
    job_t *jobs[OUTBOX_JOBS];
} outbox_t;

//  Sends an outbox's jobs to its worker. If the socket refuses them, they wait again at
//  the head of the queue, their slots freed, and -1 says so.
static int
s_flush (serve_t *self, outbox_t *o)
{
    if (!o->n)
        return 0;
    ProtobufCBinaryData jobs[OUTBOX_JOBS];
    for (size_t i = 0; i < o->n; i++)
        jobs[i] = (ProtobufCBinaryData) { o->jobs[i]->len, o->jobs[i]->job };
    Strata__V1__ServeJobs m = STRATA__V1__SERVE_JOBS__INIT;
    m.n_jobs = o->n;
    m.jobs = jobs;
    int rc = wire_send (self->workers, o->w->identity, WIRE_SERVE_JOBS, &m.base);
    if (rc == 0) {
        o->w->messages++;
        self->n.messages++;
    }
    else
        for (size_t i = o->n; i-- > 0;) {
            job_t *j = o->jobs[i];
            pool_complete_on (self->pool, o->w, j->key);
            j->holders--;
            j->attempts--;
            zlistx_add_start (self->waiting, (void *) (uintptr_t) j->key);
        }
    o->n = 0;
    return rc;
}

//  Jobs sent hedge_ms ago or more to a worker that has been silent as long (dead, or
//  stuck) go back to the head of the queue, once each, for another worker to answer
//  too: the first answer is the reply. Entries for jobs answered, lost or sent again
//  since are dropped on the way.
static void
s_hedge (serve_t *self, int64_t now)
{
    self->next_hedge = INT64_MAX;
    while (self->cfg.hedge_ms > 0 && zlistx_size (self->sent)) {
        sent_t *e = zlistx_first (self->sent);
        job_t *j = s_job (self, e->key);
        if (j && j->holders && !j->hedged && j->sent == e->sent) {
            if (now - e->sent < self->cfg.hedge_ms) {
                self->next_hedge = e->sent + self->cfg.hedge_ms;
                break;
            }
            pool_worker_t *holder = pool_holder (self->pool, e->key);
            if (holder && now - holder->heard < self->cfg.hedge_ms) {
                //  It answers other jobs: this one comes in its turn. Looked at again
                //  when the worker could have been silent long enough.
                self->next_hedge = holder->heard + self->cfg.hedge_ms;
                break;
            }
            j->hedged = true;
            self->n.hedged++;
            log_info ("%s job %llu: no answer in %lld ms from a silent worker; asking another too", j->type,
                      (unsigned long long) (e->key & ~SERVE_KEY_BIT), (long long) (now - e->sent));
            zlistx_add_start (self->waiting, (void *) (uintptr_t) e->key);
        }
        zlistx_delete (self->sent, zlistx_cursor (self->sent));
    }
}

int64_t
serve_next_wake (serve_t *self)
{
    return self->next_hedge;
}

void
serve_dispatch (serve_t *self)
{
    int64_t now = zclock_mono ();
    s_hedge (self, now);
    outbox_t out[OUTBOXES];
    size_t nout = 0;
    while (zlistx_size (self->waiting)) {
        uint64_t key = (uint64_t) (uintptr_t) zlistx_first (self->waiting);
        job_t *j = s_job (self, key);
        if (!j) {
            zlistx_delete (self->waiting, zlistx_cursor (self->waiting));
            continue;
        }
        //  A hedge goes to another worker than the one holding the job, or nowhere: that
        //  one answers, or its loss brings the job back.
        pool_worker_t *holder = j->holders ? pool_holder (self->pool, key) : NULL;
        if (j->attempts >= self->cfg.attempts) {
            zlistx_delete (self->waiting, zlistx_cursor (self->waiting));
            if (!j->holders)
                s_fail (self, j, STRATA__V1__ERROR_CODE__UNAVAILABLE, "the rank workers tried were lost; retry");
            continue;
        }
        pool_worker_t *w = pool_least_loaded_within (self->pool, STRATA__V1__ROLE__RANK, self->cfg.pipeline, holder);
        if (!w && j->holders) {
            if (pool_count (self->pool, STRATA__V1__ROLE__RANK) > 1 && now - j->sent <= self->cfg.timeout_ms)
                break;   // the others are busy: the hedge waits for room, as a new job would
            zlistx_delete (self->waiting, zlistx_cursor (self->waiting));
            continue;
        }
        if (!w) {
            if (now - j->since > self->cfg.timeout_ms || !pool_count (self->pool, STRATA__V1__ROLE__RANK)) {
                zlistx_delete (self->waiting, zlistx_cursor (self->waiting));
                s_fail (self, j, STRATA__V1__ERROR_CODE__UNAVAILABLE, "no rank worker took the request in time");
                continue;
            }
            break;   // all busy or their pipelines full: wait for a result or the next heartbeat
        }
        zlistx_delete (self->waiting, zlistx_cursor (self->waiting));
        outbox_t *o = NULL;
        for (size_t i = 0; i < nout && !o; i++)
            if (out[i].w == w)
                o = &out[i];
        if (!o) {
            int rc = 0;
            for (size_t i = 0; nout == OUTBOXES && i < nout; i++)
                rc |= s_flush (self, &out[i]);
            if (nout == OUTBOXES)
                nout = 0;
            o = &out[nout++];
            o->w = w;
            o->n = 0;
            if (rc < 0) {
                zlistx_add_start (self->waiting, (void *) (uintptr_t) key);
                break;   // a socket refuses: try again on the next call
            }
        }
        pool_assign (self->pool, w, key);
        j->attempts++;
        j->holders++;
        j->sent = now;
        sent_t *e = malloc (sizeof *e);
        if (e) {
            *e = (sent_t) { key, now };
            zlistx_add_end (self->sent, e);
            if (self->cfg.hedge_ms > 0 && self->next_hedge == INT64_MAX)
                self->next_hedge = now + self->cfg.hedge_ms;
        }
        o->jobs[o->n++] = j;
        if (o->n == OUTBOX_JOBS && s_flush (self, o) < 0)
            break;
    }
    for (size_t i = 0; i < nout; i++)
        s_flush (self, &out[i]);
}

void
serve_counts (serve_t *self, serve_counts_t *out)
{
    *out = self->n;
}
