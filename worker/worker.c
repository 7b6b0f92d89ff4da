/*  worker: see worker.h. */
#define LOG_MODULE "worker"
#include "worker.h"

#include <cblas.h>
#include <czmq.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "endpoints.h"
#include "log.h"
#include "preprocess.h"
#include "rank.h"
#include "train.h"
#include "util.h"
#include "wire.h"

#define OFF(f) offsetof (worker_config_t, f)
const config_key_t worker_config_keys[] = {
    { "broker", CONFIG_STRING, OFF (broker), STRATA_DEFAULT_WORKERS, 0, -1, "broker worker endpoint (preprocess)" },
    { "trainer", CONFIG_STRING, OFF (trainer), STRATA_DEFAULT_TRAINER_WORKERS, 0, -1, "trainer worker endpoint (train)" },
    { "role", CONFIG_STRING, OFF (role), "preprocess", 0, -1, "worker role: preprocess, train or rank" },
    { "trainer-api", CONFIG_STRING, OFF (trainer_api), STRATA_DEFAULT_TRAINER_API, 0, -1,
      "trainer api endpoint (rank: where model versions come from)" },
    { "api", CONFIG_STRING, OFF (api), STRATA_DEFAULT_API, 0, -1, "broker api endpoint (rank: the catalogue)" },
    { "dir", CONFIG_STRING, OFF (dir), "strata-rank", 0, -1, "rank worker's own store (model versions)" },
    { "poll-ms", CONFIG_INT, OFF (poll_ms), "1000", 10, 3600000, "rank: how often to ask the trainer for a newer version" },
    { "catalogue-ms", CONFIG_INT, OFF (catalogue_ms), "5000", 100, 86400000, "rank: how often to look for new and changed catalogue records" },
    { "rerank-top", CONFIG_INT, OFF (rerank_top), "0", 0, 10000,
      "rank: items the ranking head re-ranks (0: retrieval order; the head does not beat it on Beauty yet)" },
    { "rerank-blend", CONFIG_DOUBLE, OFF (rerank_blend), "1", 0, 1000,
      "rank: weight of the retrieval score beside the ranking head's logit" },
    { "search-blend", CONFIG_DOUBLE, OFF (search_blend), "0.3", 0, 1000,
      "rank: weight of the user's model score beside text relevance in search" },
    { "search-learned", CONFIG_DOUBLE, OFF (search_learned), "0.3", 0, 1000,
      "rank: weight in search of what past searchers of the query's terms chose" },
    { "batch", CONFIG_INT, OFF (batch), "32", 1, 256, "rank: users whose vectors are computed together" },
    { "user-cache", CONFIG_INT, OFF (user_cache), "65536", 0, 16777216,
      "rank: user vectors kept by history, so a user who asks again skips the user tower (0: none)" },
    { "index", CONFIG_STRING, OFF (index), "auto", 0, -1,
      "rank: retrieval over the catalogue: exact, ivf (approximate: k-means cells), or auto (ivf from ivf-min-items)" },
    { "ivf-min-items", CONFIG_INT, OFF (ivf_min_items), "200000", 1, 1000000000,
      "rank: catalogue size from which index=auto uses the approximate index" },
    { "ivf-cells", CONFIG_INT, OFF (ivf_cells), "0", 0, 1000000, "rank: k-means cells of the approximate index (0: about sqrt(items))" },
    { "ivf-probe", CONFIG_INT, OFF (ivf_probe), "0", 0, 1000000,
      "rank: cells scanned per query (0: the fewest that reach ivf-recall on the version's own items)" },
    { "ivf-recall", CONFIG_DOUBLE, OFF (ivf_recall), "0.97", 0, 1, "rank: recall@10 the automatic ivf-probe must reach" },
    { "keep-versions", CONFIG_INT, OFF (keep_versions), "2", 1, 100, "rank: model versions kept in its store" },
    { "threads", CONFIG_INT, OFF (threads), "1", 0, 256, "OpenBLAS threads of a train worker (0: all cores)" },
    { "id", CONFIG_STRING, OFF (id), "", 0, -1, "worker id (default: hostname-pid)" },
    { "capacity", CONFIG_INT, OFF (capacity), "0", 0, 64,
      "jobs held at once, one runs and the rest wait (0: 2)" },
    { "heartbeat-ms", CONFIG_INT, OFF (heartbeat_ms), "1000", 50, 60000, "heartbeat interval" },
    { "liveness", CONFIG_INT, OFF (liveness), "3", 2, 100, "missed heartbeats before reconnecting" },
    { "max-frame", CONFIG_INT, OFF (max_frame), "64M", 1024, 1LL << 31, "largest job frame accepted" },
    { "max-id-len", CONFIG_INT, OFF (max_id_len), "256", 8, 65536, "longest accepted id, bytes" },
    { "max-text-len", CONFIG_INT, OFF (max_text_len), "2048", 64, 1 << 20, "longest title/query kept, bytes" },
    { "log-level", CONFIG_STRING, OFF (log_level), "info", 0, -1, "error, warn, info or debug" },
    CONFIG_END,
};

struct _worker_t {
    const worker_config_t *cfg;
    zsock_t *pipe;          // its actor's pipe (NULL: run by main)
    bool stopping;          // $TERM came on the pipe
    Strata__V1__Role role;
    char id[128];
    zsock_t *sock;
    arena_t *arena;
    preprocess_limits_t limits;
    train_worker_t *train;
    rank_worker_t *rank;
    const char *endpoint;
    uint32_t capacity;
    uint64_t jobs_done;
};

static zsock_t *
s_connect (worker_t *self)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    if (!sock)
        return NULL;
    zsock_set_linger (sock, 0);
    zsock_set_maxmsgsize (sock, self->cfg->max_frame + 4096);
    if (zsock_connect (sock, "%s", self->endpoint) < 0) {
        log_error ("cannot connect to %s", self->endpoint);
        zsock_destroy (&sock);
        return NULL;
    }
    Strata__V1__WorkerHello hello = STRATA__V1__WORKER_HELLO__INIT;
    hello.worker_id = self->id;
    hello.role = self->role;
    hello.capacity = self->capacity;
    hello.pid = (uint32_t) getpid ();
    hello.version = "0.1.0";
    wire_send (sock, NULL, WIRE_READY, &hello.base);
    return sock;
}

static void
s_handle_job (worker_t *self, zframe_t *payload)
{
    arena_reset (self->arena);
    ProtobufCAllocator alloc = arena_protobuf (self->arena);
    Strata__V1__Job *job = (Strata__V1__Job *) wire_unpack (&strata__v1__job__descriptor, payload, &alloc);
    if (!job) {
        log_warn ("job that does not decode; ignored (the broker will re-dispatch it)");
        return;
    }
    Strata__V1__JobResult result = STRATA__V1__JOB_RESULT__INIT;
    result.job_id = job->job_id;
    result.sequence = job->sequence;
    Strata__V1__EventBatch *batch = strata__v1__event_batch__unpack (&alloc, job->payload.len, job->payload.data);
    if (!batch) {
        //  The broker checks batches before journaling them, so this is a broken journal
        //  entry: keep it as a reject rather than loop on it forever.
        Strata__V1__Reject rej = STRATA__V1__REJECT__INIT;
        Strata__V1__Reject *rp = &rej;
        rej.kind = "raw";
        rej.reason = "journal entry does not decode";
        result.batch_id = "";
        result.n_rejects = 1;
        result.rejects = &rp;
        wire_send (self->sock, NULL, WIRE_RESULT, &result.base);
        return;
    }
    if (preprocess_batch (batch, &self->limits, self->arena, &result) < 0) {
        log_error ("out of memory cleaning batch %s", batch->batch_id);
        return;   // no result: the broker re-dispatches after our heartbeat shows no progress
    }
    wire_send (self->sock, NULL, WIRE_RESULT, &result.base);
    self->jobs_done++;
    log_debug ("job %llu: %zu events, %zu items, %zu rejects", (unsigned long long) job->job_id,
               result.n_events, result.n_items, result.n_rejects);
}

static void
s_handle_task (worker_t *self, zframe_t *payload)
{
    Strata__V1__TrainTask *task = (Strata__V1__TrainTask *) wire_unpack (&strata__v1__train_task__descriptor, payload,
                                                                         NULL);
    if (!task) {
        log_warn ("task that does not decode; ignored (the trainer will give it again)");
        return;
    }
    Strata__V1__TrainGradient g = STRATA__V1__TRAIN_GRADIENT__INIT;
    int64_t t0 = util_mono_ms ();
    train_worker_compute (self->train, task, &g);
    if (g.error && *g.error)
        log_warn ("task %llu: %s", (unsigned long long) task->task_id, g.error);
    else
        log_debug ("task %llu: %zu sequences, %u rows, loss %.3f in %lld ms", (unsigned long long) task->task_id,
                   task->n_lens, task->n_rows, g.positions ? g.loss / (double) g.positions : 0,
                   (long long) (util_mono_ms () - t0));
    wire_send (self->sock, NULL, WIRE_GRADIENT, &g.base);
    self->jobs_done++;
    strata__v1__train_task__free_unpacked (task, NULL);
}

//  Answers a SERVE_JOBS message's jobs and those of every other one already waiting
//  (up to the capacity), so that users who arrive together are scored together and
//  their results travel together, in one SERVE_RESULTS that tells the broker how many
//  messages it answers (undecodable ones too: the broker counts what it sent). A
//  heartbeat met on the way needs no answer. Returns true when a DISCONNECT was met:
//  the caller registers again.
static bool
s_handle_serve (worker_t *self, wire_msg_t *first)
{
    enum { MESSAGES = 64, JOBS = 256 };
    Strata__V1__ServeJobs *batches[MESSAGES];
    ProtobufCBinaryData jobs[JOBS];
    size_t nb = 0, n = 0;
    uint32_t messages = 0;
    bool disconnect = false;
    wire_msg_t msg = *first;
    first->routing = first->payload = NULL;
    for (;;) {
        if (!strcmp (msg.type, WIRE_SERVE_JOBS)) {
            messages++;
            Strata__V1__ServeJobs *b = (Strata__V1__ServeJobs *) wire_unpack (&strata__v1__serve_jobs__descriptor,
                                                                               msg.payload, NULL);
            if (!b)
                log_warn ("SERVE_JOBS payload does not decode; ignored");
            else {
                batches[nb++] = b;
                size_t take = b->n_jobs < JOBS - n ? b->n_jobs : JOBS - n;
                for (size_t i = 0; i < take; i++)
                    jobs[n++] = b->jobs[i];
                if (take < b->n_jobs)   // a broker never sends more than the capacity announced
                    log_warn ("%zu jobs past %d at once ignored", b->n_jobs - take, JOBS);
            }
        }
        disconnect = !strcmp (msg.type, WIRE_DISCONNECT);
        wire_msg_reset (&msg);
        if (disconnect || messages == MESSAGES || n >= self->capacity || n == JOBS)
            break;
        int r = wire_recv_ready (self->sock, false, (size_t) self->cfg->max_frame, &msg);
        if (r == STRATA_EINTR || r == STRATA_EAGAIN)
            break;
    }
    rank_worker_serve (self->rank, jobs, n, messages, self->sock);
    self->jobs_done += n;
    for (size_t i = 0; i < nb; i++)
        strata__v1__serve_jobs__free_unpacked (batches[i], NULL);
    return disconnect;
}

worker_t *
worker_new (const worker_config_t *cfg)
{
    worker_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = cfg;
    if (!strcmp (cfg->role, "preprocess")) {
        self->role = STRATA__V1__ROLE__PREPROCESS;
        self->endpoint = cfg->broker;
        self->capacity = cfg->capacity ? (uint32_t) cfg->capacity : 2;
    }
    else if (!strcmp (cfg->role, "train")) {
        self->role = STRATA__V1__ROLE__TRAIN;
        self->endpoint = cfg->trainer;
        //  Two: the next task waits at the worker while one runs (async pipelining).
        self->capacity = cfg->capacity ? (uint32_t) cfg->capacity : 2;
        if (cfg->threads > 0)
            openblas_set_num_threads ((int) cfg->threads);
        self->train = train_worker_new ();
        if (!self->train) {
            worker_destroy (&self);
            return NULL;
        }
    }
    else if (!strcmp (cfg->role, "rank")) {
        self->role = STRATA__V1__ROLE__RANK;
        self->endpoint = cfg->broker;
        self->capacity = cfg->capacity ? (uint32_t) cfg->capacity : 64;
        openblas_set_num_threads (cfg->threads > 0 ? (int) cfg->threads : 1);
    }
    else {
        log_error ("unknown role '%s' (roles: preprocess, train, rank)", cfg->role);
        worker_destroy (&self);
        return NULL;
    }
    if (cfg->id && *cfg->id)
        snprintf (self->id, sizeof self->id, "%s", cfg->id);
    else {
        char host[64] = "host";
        gethostname (host, sizeof host - 1);
        snprintf (self->id, sizeof self->id, "%s-%d", host, (int) getpid ());
    }
    preprocess_limits_default (&self->limits);
    self->limits.max_id_len = (size_t) cfg->max_id_len;
    self->limits.max_text_len = (size_t) cfg->max_text_len;
    self->arena = arena_new (1 << 20);
    if (!self->arena) {
        worker_destroy (&self);
        return NULL;
    }
    if (self->role == STRATA__V1__ROLE__RANK) {
        rank_config_t rc = { .trainer_api = cfg->trainer_api,
                             .broker_api = cfg->api,
                             .dir = cfg->dir,
                             .poll_ms = cfg->poll_ms,
                             .catalogue_ms = cfg->catalogue_ms,
                             .keep_versions = cfg->keep_versions,
                             .serve = { .id = self->id,
                                        .rerank_top = cfg->rerank_top,
                                        .rerank_blend = cfg->rerank_blend,
                                        .batch = cfg->batch,
                                        .search_blend = cfg->search_blend,
                                        .search_learned = cfg->search_learned,
                                        .index = cfg->index,
                                        .ivf_min_items = cfg->ivf_min_items,
                                        .ivf_cells = cfg->ivf_cells,
                                        .ivf_probe = cfg->ivf_probe,
                                        .ivf_recall = cfg->ivf_recall,
                                        .user_cache = cfg->user_cache } };
        self->rank = rank_worker_new (&rc);
        if (!self->rank) {
            worker_destroy (&self);
            return NULL;
        }
    }
    return self;
}

void
worker_destroy (worker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    worker_t *self = *self_p;
    zsock_destroy (&self->sock);
    arena_destroy (&self->arena);
    train_worker_destroy (&self->train);
    rank_worker_destroy (&self->rank);
    free (self);
    *self_p = NULL;
}

//  Reads a command from the actor's pipe: $TERM stops the worker (anything else is
//  not a command of ours and is dropped).
static void
s_pipe_input (worker_t *self)
{
    char *cmd = zstr_recv (self->pipe);
    if (!cmd || !strcmp (cmd, "$TERM"))
        self->stopping = true;
    zstr_free (&cmd);
}

//  Whether the worker goes on: not interrupted by a signal, not told to stop.
static bool
s_running (worker_t *self)
{
    return !zsys_interrupted && !self->stopping;
}

//  Polls items, and the actor's pipe after them when there is one (its command read
//  here). What zmq_poll returns.
static int
s_poll (worker_t *self, zmq_pollitem_t *items, int n, long timeout)
{
    if (self->pipe)
        items[n++] = (zmq_pollitem_t) { zsock_resolve (self->pipe), 0, ZMQ_POLLIN, 0 };
    int rc = zmq_poll (items, n, timeout);
    if (rc > 0 && self->pipe && (items[n - 1].revents & ZMQ_POLLIN))
        s_pipe_input (self);
    return rc;
}

//  Waits ms, on the actor's pipe when there is one: a stop is not kept waiting.
static void
s_pause (worker_t *self, int64_t ms)
{
    zmq_pollitem_t none[1];
    if (self->pipe)
        s_poll (self, none, 0, (long) ms);
    else
        zclock_sleep ((int) ms);
}

int
worker_run (worker_t *self)
{
    const worker_config_t *cfg = self->cfg;
    //  A rank worker takes requests only once it has a model version to serve them
    //  with (from its store, at once, or from the trainer): a broker would otherwise
    //  send it work it can only refuse.
    if (self->rank && !rank_worker_version (self->rank))
        log_info ("rank worker %s waiting for a model version from %s", self->id, cfg->trainer_api);
    while (self->rank && !rank_worker_version (self->rank) && s_running (self)) {
        zmq_pollitem_t items[RANK_POLL_ITEMS + 1];
        rank_worker_poll_items (self->rank, items);
        if (s_poll (self, items, RANK_POLL_ITEMS, 100) < 0)
            break;
        rank_worker_input (self->rank, items);
        rank_worker_tick (self->rank);
    }
    self->sock = s_running (self) ? s_connect (self) : NULL;
    if (!self->sock)
        return s_running (self) ? STRATA_ECONNECT : 0;
    log_info ("%s worker %s connected to %s", cfg->role, self->id, self->endpoint);

    int64_t interval = cfg->heartbeat_ms;
    int64_t reconnect_delay = interval;
    int64_t last_heard = util_mono_ms ();
    int64_t next_beat = last_heard + interval;
    while (s_running (self)) {
        zmq_pollitem_t items[1 + RANK_POLL_ITEMS + 1] = { { zsock_resolve (self->sock), 0, ZMQ_POLLIN, 0 } };
        if (self->rank)
            rank_worker_poll_items (self->rank, items + 1);
        int64_t now = util_mono_ms ();
        long timeout = (long) (next_beat > now ? next_beat - now : 0);
        if (self->rank && timeout > 100)
            timeout = 100;   // model downloads, version polls and catalogue refreshes need the loop to turn
        int rc = s_poll (self, items, self->rank ? 1 + RANK_POLL_ITEMS : 1, timeout);
        if (rc < 0)
            break;   // interrupted
        if (self->stopping)
            break;
        now = util_mono_ms ();
        if (self->rank) {
            rank_worker_input (self->rank, items + 1);
            rank_worker_tick (self->rank);
        }
        zmq_pollitem_t item = items[0];
        if (item.revents & ZMQ_POLLIN) {
            wire_msg_t msg;
            int r = wire_recv (self->sock, false, (size_t) cfg->max_frame, &msg);
            if (r == STRATA_EINTR)
                break;
            bool reregister = false;
            last_heard = now;
            reconnect_delay = interval;
            if (r < 0)
                log_warn ("bad message from %s (%d); ignored", self->endpoint, r);
            else if (!strcmp (msg.type, WIRE_JOB) && self->role == STRATA__V1__ROLE__PREPROCESS)
                s_handle_job (self, msg.payload);
            else if (!strcmp (msg.type, WIRE_TASK) && self->role == STRATA__V1__ROLE__TRAIN)
                s_handle_task (self, msg.payload);
            else if (!strcmp (msg.type, WIRE_SERVE_JOBS) && self->role == STRATA__V1__ROLE__RANK) {
                reregister = s_handle_serve (self, &msg);
                last_heard = util_mono_ms ();
            }
            else if (!strcmp (msg.type, WIRE_DISCONNECT))
                reregister = true;
            else if (!strcmp (msg.type, WIRE_ERROR)) {
                Strata__V1__Error *e = (Strata__V1__Error *) wire_unpack (&strata__v1__error__descriptor, msg.payload, NULL);
                log_warn ("error from %s: %s", self->endpoint, e ? e->message : "(undecodable)");
                if (e)
                    strata__v1__error__free_unpacked (e, NULL);
            }
            wire_msg_reset (&msg);
            if (reregister) {
                //  The broker does not know us (it restarted) or is stopping: register again.
                log_info ("%s asked us to re-register", self->endpoint);
                zsock_destroy (&self->sock);
                self->sock = s_connect (self);
                if (!self->sock)
                    break;
                continue;
            }
        }
        else if (now - last_heard > interval * cfg->liveness) {
            log_warn ("%s silent for %lld ms; reconnecting in %lld ms", self->endpoint, (long long) (now - last_heard),
                      (long long) reconnect_delay);
            zsock_destroy (&self->sock);
            s_pause (self, reconnect_delay);
            if (!s_running (self))
                break;
            if (reconnect_delay < 16 * interval)
                reconnect_delay *= 2;
            self->sock = s_connect (self);
            if (!self->sock)
                break;
            last_heard = util_mono_ms ();
        }
        if (util_mono_ms () >= next_beat) {
            Strata__V1__Heartbeat hb = STRATA__V1__HEARTBEAT__INIT;
            hb.jobs_done = self->jobs_done;
            wire_send (self->sock, NULL, WIRE_HEARTBEAT, &hb.base);
            next_beat = util_mono_ms () + interval;
        }
    }
    if (self->sock) {
        wire_send (self->sock, NULL, WIRE_DISCONNECT, NULL);
        zsock_destroy (&self->sock);
    }
    log_info ("worker %s stopped after %llu jobs", self->id, (unsigned long long) self->jobs_done);
    return 0;
}

void
worker_actor (zsock_t *pipe, void *args)
{
    worker_t *self = args;
    zsock_signal (pipe, 0);
    self->pipe = pipe;
    worker_run (self);
    //  Stopped by itself (a fatal error): the owner's $TERM is still to come.
    while (!self->stopping && !zsys_interrupted)
        s_pause (self, 1000);
    self->pipe = NULL;
}
