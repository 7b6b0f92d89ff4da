/*  broker: the daemon's lifecycle and its poll loop (see broker.h).

    broker_new does everything that can fail before the first message (store, syncer,
    sockets, the endpoints file), so that a broker that started runs; broker_run is one
    thread polling the three sockets and the syncer, and handing each socket's messages
    to the file that owns them (broker_private.h says which). The loop also measures
    itself: a turn that holds up the requests behind it is counted and logged with
    what took it, because a single-threaded server's latency is its slowest turn.
*/
#define LOG_MODULE "broker"
#include <stdlib.h>
#include <string.h>

#include "broker_private.h"
#include "endpoints.h"
#include "log.h"
#include "util.h"

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

int
broker_bad_input (broker_t *self, zsock_t *sock, zframe_t *routing, const char *ref, Strata__V1__ErrorCode code,
                  const char *what)
{
    self->protocol_errors++;
    log_warn ("rejected message: %s", what);
    return wire_send_error (sock, routing, ref, code, "%s", what);
}

void
broker_timed (broker_t *self, const char *type, int64_t t0)
{
    int64_t us = zclock_usecs () - t0;
    if (us > self->turn_type_us) {
        self->turn_type_us = us;
        snprintf (self->turn_type, sizeof self->turn_type, "%s", type);
    }
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

//  Serves what is waiting on a client socket (ingest or api): batches are checked and
//  collected, then journaled together and acked; requests are answered at once.
static void
s_serve_clients (broker_t *self, zsock_t *sock)
{
    ingest_group_t group;
    group.n = 0;
    while (group.n < INGEST_GROUP_MAX) {
        wire_msg_t msg;
        int rc = wire_recv_ready (sock, true, (size_t) self->cfg->max_frame, &msg);
        if (rc == STRATA_EINTR || rc == STRATA_EAGAIN)
            break;
        int64_t t0 = zclock_usecs ();
        if (rc == STRATA_EFRAMING)
            broker_bad_input (self, sock, msg.routing, NULL, STRATA__V1__ERROR_CODE__BAD_FRAMING,
                              "expected frames: \"" WIRE_PROTOCOL "\", type, payload");
        else if (rc == STRATA_ETOOLARGE) {
            char what[96];
            snprintf (what, sizeof what, "payload over the %lld-byte limit", (long long) self->cfg->max_frame);
            broker_bad_input (self, sock, msg.routing, NULL, STRATA__V1__ERROR_CODE__TOO_LARGE, what);
        }
        else if (sock == self->ingest && !strcmp (msg.type, WIRE_BATCH))
            ingest_check (self, &msg, &group);
        else
            api_handle (self, sock, &msg);
        broker_timed (self, msg.type, t0);
        wire_msg_reset (&msg);
    }
    ingest_journal (self, &group);
}

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
        zlistx_set_destructor (self->unsynced, ingest_unsynced_destroy);
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
    knowledge_journal_each (self->kb, jobs_enqueue, self);
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
            jobs_handle (self);
        t[1] = zclock_usecs ();
        if (synced_item >= 0 && (items[synced_item].revents & ZMQ_POLLIN))
            ingest_synced (self);
        if (items[1].revents & ZMQ_POLLIN)
            s_serve_clients (self, self->ingest);
        t[2] = zclock_usecs ();
        if (items[2].revents & ZMQ_POLLIN)
            s_serve_clients (self, self->api);
        t[3] = zclock_usecs ();
        jobs_dispatch (self);
        serve_dispatch (self->serve);
        if (zclock_mono () >= next_beat) {
            jobs_heartbeat (self);
            jobs_dispatch (self);
            serve_dispatch (self->serve);
            next_beat = zclock_mono () + cfg->heartbeat_ms;
        }
        t[4] = zclock_usecs ();
        s_turn_done (self, t);
    }
    ingest_drain (self);
    jobs_farewell (self);
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
