/*  trainer: see trainer.h. Lifecycle and the loop; the task queue is trainer_tasks.c,
    the run state machine trainer_run.c, the api endpoint trainer_api.c.
*/
#define LOG_MODULE "trainer"
#include "trainer_private.h"

#include <cblas.h>
#include <czmq.h>
#include <stdlib.h>
#include <string.h>

#define OFF(f) offsetof (trainer_config_t, f)
const config_key_t trainer_config_keys[] = {
    { "dir", CONFIG_STRING, OFF (dir), "strata-data", 0, -1, "data directory (the trainer's store is DIR/trainer)" },
    { "broker", CONFIG_STRING, OFF (broker), STRATA_DEFAULT_API, 0, -1, "broker api endpoint (training data)" },
    { "workers", CONFIG_STRING, OFF (workers), STRATA_DEFAULT_TRAINER_WORKERS, 0, -1, "endpoint train workers connect to" },
    { "api", CONFIG_STRING, OFF (api), STRATA_DEFAULT_TRAINER_API, 0, -1, "endpoint for train and status requests" },
    { "endpoints-file", CONFIG_STRING, OFF (endpoints_file), "", 0, -1, "write bound endpoints here as JSON" },
    { "mode", CONFIG_STRING, OFF (mode), "sync", 0, -1, "sync (deterministic) or async (bounded staleness)" },
    { "epochs", CONFIG_INT, OFF (epochs), "20", 1, 100000, "epochs of a full run" },
    { "shards", CONFIG_INT, OFF (hyper.shards), "2", 1, 256, "shards per step in sync mode" },
    { "staleness", CONFIG_INT, OFF (staleness), "4", 0, 1000, "async: most updates a gradient may lag behind" },
    { "validation-users", CONFIG_INT, OFF (validation_users), "1000", 0, 1 << 30,
      "users whose last event is held out to measure each epoch" },
    { "checkpoint-secs", CONFIG_INT, OFF (checkpoint_secs), "30", 1, 86400, "checkpoint at least this often" },
    { "keep-versions", CONFIG_INT, OFF (keep_versions), "3", 1, 1000, "published model versions kept" },
    { "popularity-half-life-days", CONFIG_DOUBLE, OFF (popularity_half_life_days), "7", 0, 36500,
      "half-life of an event's weight in the popularity that serves users without history (0: plain counts)" },
    { "continuous", CONFIG_BOOL, OFF (continuous), "true", 0, -1, "after a full run, keep training on new events" },
    { "retrain-events", CONFIG_INT, OFF (retrain_events), "1000", 1, 1LL << 40, "new events that trigger an update" },
    { "retrain-secs", CONFIG_INT, OFF (retrain_secs), "60", 1, 86400, "or any new event after this long" },
    { "incremental-epochs", CONFIG_INT, OFF (incremental_epochs), "2", 1, 1000,
      "passes over the users with new events per update" },
    { "poll-ms", CONFIG_INT, OFF (poll_ms), "2000", 50, 3600000, "how often to ask the broker for new events" },
    { "auto-train", CONFIG_BOOL, OFF (auto_train), "false", 0, -1, "start a full run once the store has events" },
    { "heartbeat-ms", CONFIG_INT, OFF (heartbeat_ms), "1000", 50, 60000, "heartbeat interval" },
    { "liveness", CONFIG_INT, OFF (liveness), "3", 2, 100, "missed heartbeats before a worker is dropped" },
    { "max-frame", CONFIG_INT, OFF (max_frame), "256M", 1024, 1LL << 31, "largest message accepted" },
    { "timeout-ms", CONFIG_INT, OFF (timeout_ms), "60000", 100, 3600000, "broker request timeout" },
    { "threads", CONFIG_INT, OFF (threads), "1", 0, 256, "OpenBLAS threads for evaluation (0: all cores)" },
    { "log-level", CONFIG_STRING, OFF (log_level), "info", 0, -1, "error, warn, info or debug" },
    HYPER_CONFIG_KEYS (trainer_config_t, hyper),
    CONFIG_END,
};

const char *
trainer_mode_name (Strata__V1__TrainMode m)
{
    return m == STRATA__V1__TRAIN_MODE__ASYNC ? "async" : "sync";
}

//  Receives one message waiting on a ROUTER; a bad frame gets an Error reply (rc < 0,
//  msg reset). STRATA_EINTR: nothing (more) to do.
int
trainer_recv (zsock_t *sock, size_t max, const char *what, wire_msg_t *msg)
{
    int rc = wire_recv_ready (sock, true, max, msg);
    if (rc == STRATA_EAGAIN)
        rc = STRATA_EINTR;
    if (rc < 0 && rc != STRATA_EINTR) {
        wire_send_error (sock, msg->routing, NULL,
                         rc == STRATA_ETOOLARGE ? STRATA__V1__ERROR_CODE__TOO_LARGE : STRATA__V1__ERROR_CODE__BAD_FRAMING,
                         "bad message on the trainer's %s endpoint", what);
        wire_msg_reset (msg);
    }
    return rc;
}

trainer_t *
trainer_new (const trainer_config_t *cfg)
{
    trainer_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = cfg;
    self->state = "idle";
    char err[256];
    if (hyper_configs (&cfg->hyper, &self->mc, &self->pc, err, sizeof err) < 0) {
        log_error ("%s", err);
        trainer_destroy (&self);
        return NULL;
    }
    if (strcmp (cfg->mode, "sync") && strcmp (cfg->mode, "async")) {
        log_error ("unknown mode '%s' (sync or async)", cfg->mode);
        trainer_destroy (&self);
        return NULL;
    }
    self->mode = strcmp (cfg->mode, "async") ? STRATA__V1__TRAIN_MODE__SYNC : STRATA__V1__TRAIN_MODE__ASYNC;
    if (cfg->threads > 0)
        openblas_set_num_threads ((int) cfg->threads);
    char path[4096];
    snprintf (path, sizeof path, "%s/trainer", cfg->dir);
    zsys_dir_create ("%s", cfg->dir);
    self->store = checkpoint_open (path);
    self->pool = pool_new (cfg->heartbeat_ms, cfg->liveness);
    if (self->store && self->pool) {
        self->workers = wire_bind_router (cfg->workers, cfg->max_frame);
        self->api = wire_bind_router (cfg->api, 1 << 20);
    }
    const char *names[] = { "workers", "api" };
    zsock_t *socks[] = { self->workers, self->api };
    if (!self->workers || !self->api || endpoints_write (cfg->endpoints_file, names, socks, 2, NULL) < 0) {
        trainer_destroy (&self);
        return NULL;
    }
    log_info ("trainer up: workers %s, api %s, data from %s, store %s", zsock_endpoint (self->workers),
              zsock_endpoint (self->api), cfg->broker, path);
    trainer_resume (self);
    self->last_ckpt = util_mono_ms ();
    return self;
}

void
trainer_destroy (trainer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    trainer_t *self = *self_p;
    trainer_tasks_clear (self);
    zsock_destroy (&self->workers);
    zsock_destroy (&self->api);
    pool_destroy (&self->pool);
    agg_destroy (&self->agg);
    model_destroy (&self->master);
    plan_destroy (&self->plan);
    dataset_destroy (&self->all);
    dataset_destroy (&self->train);
    free (self->val_targets);
    features_destroy (&self->features);
    free (self->conversions);
    step_tensors_free (&self->out);
    store_destroy (&self->store);
    free (self);
    *self_p = NULL;
}

const char *
trainer_endpoint (trainer_t *self, const char *name)
{
    if (!strcmp (name, "workers"))
        return zsock_endpoint (self->workers);
    if (!strcmp (name, "api"))
        return zsock_endpoint (self->api);
    return NULL;
}

//  The loop, until interrupted, a fatal error, or "$TERM" on pipe (may be NULL).
static int
s_loop (trainer_t *self, zsock_t *pipe)
{
    zpoller_t *poller = zpoller_new (self->workers, self->api, pipe, NULL);
    if (!poller)
        return STRATA_ENOMEM;
    bool stop = false;
    int64_t next_beat = util_mono_ms () + self->cfg->heartbeat_ms;
    while (!zsys_interrupted && !self->fatal && !stop) {
        int64_t now = util_mono_ms ();
        int timeout = (int) (next_beat > now ? next_beat - now : 0);
        if (timeout > 100)
            timeout = 100;
        void *which = zpoller_wait (poller, timeout);
        if (zpoller_terminated (poller))
            break;
        if (pipe && which == pipe) {
            char *command = zstr_recv (pipe);
            stop = !command || !strcmp (command, "$TERM");
            zstr_free (&command);
        }
        trainer_handle_workers (self);
        trainer_handle_api (self);
        trainer_pump (self);
        if (util_mono_ms () >= next_beat) {
            trainer_heartbeat (self);
            trainer_dispatch (self);
            next_beat = util_mono_ms () + self->cfg->heartbeat_ms;
        }
        trainer_poll (self);
    }
    zpoller_destroy (&poller);
    for (pool_worker_t *w = pool_first (self->pool); w; w = pool_next (self->pool))
        wire_send (self->workers, w->identity, WIRE_DISCONNECT, NULL);
    if (self->master && !self->fatal)
        trainer_checkpoint (self);
    log_info ("trainer stopping");
    return self->fatal ? STRATA_EIO : 0;
}

int
trainer_run (trainer_t *self)
{
    return s_loop (self, NULL);
}

void
trainer_actor (zsock_t *pipe, void *args)
{
    zsock_signal (pipe, 0);
    s_loop ((trainer_t *) args, pipe);
}
