/*  train: see train.h. */
#include "train.h"

#include <czmq.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "config.h"
#include "request.h"
#include "util.h"
#include "wire.h"

typedef struct {
    char *trainer, *dir, *mode;
    int64_t timeout_ms, epochs, wait_ms;
    bool wait, status;
} train_cfg_t;

#define OFF(f) offsetof (train_cfg_t, f)
static const config_key_t s_keys[] = {
    { "trainer", CONFIG_STRING, OFF (trainer), "", 0, -1, "trainer api endpoint (default: the cluster's, or local)" },
    { "dir", CONFIG_STRING, OFF (dir), "", 0, -1, "find the cluster started by strata up --dir" },
    { "timeout-ms", CONFIG_INT, OFF (timeout_ms), "60000", 100, 3600000, "how long to wait for each answer" },
    { "epochs", CONFIG_INT, OFF (epochs), "0", 0, 100000, "epochs (0: the trainer's default)" },
    { "mode", CONFIG_STRING, OFF (mode), "", 0, -1, "sync or async (default: the trainer's)" },
    { "wait", CONFIG_BOOL, OFF (wait), "false", 0, -1, "follow the run to its end and print a summary" },
    { "wait-ms", CONFIG_INT, OFF (wait_ms), "0", 0, 1LL << 40, "with --wait, give up after this long (0: never)" },
    { "status", CONFIG_BOOL, OFF (status), "false", 0, -1, "print the trainer's state and exit" },
    CONFIG_END,
};

static const char *
s_mode (Strata__V1__TrainMode m)
{
    return m == STRATA__V1__TRAIN_MODE__ASYNC ? "async" : "sync";
}

static json_t *
s_status_json (const Strata__V1__TrainStatus *st)
{
    char fnv[24];
    snprintf (fnv, sizeof fnv, "%016llx", (unsigned long long) st->weights_fnv);
    return json_pack ("{s:s, s:I, s:I, s:s, s:i, s:i, s:I, s:I, s:f, s:{s:f, s:f, s:i}, s:f, s:f, s:f, s:i, s:I, "
                      "s:I, s:I, s:I, s:I, s:I, s:i, s:i, s:s, s:s}",
                      "state", st->state, "run_id", (json_int_t) st->run_id, "version", (json_int_t) st->version,
                      "mode", s_mode (st->mode), "epoch", (int) st->epoch, "epochs", (int) st->epochs, "step",
                      (json_int_t) st->step, "steps", (json_int_t) st->steps, "loss", st->loss, "validation",
                      "ndcg@10", st->valid_ndcg10, "hr@10", st->valid_hr10, "users", (int) st->valid_users,
                      "samples_per_second", st->samples_per_second, "seconds", st->seconds, "eta_seconds",
                      st->eta_seconds, "workers", (int) st->workers, "events", (json_int_t) st->events, "samples",
                      (json_int_t) st->samples, "redone", (json_int_t) st->redone, "stale", (json_int_t) st->stale,
                      "refused", (json_int_t) st->refused,
                      "updates", (json_int_t) st->updates, "items", (int) st->items, "users", (int) st->users,
                      "weights_fnv", fnv, "message", st->message ? st->message : "");
}

static Strata__V1__TrainStatus *
s_status (const char *endpoint, int timeout_ms, char *err, size_t errlen)
{
    Strata__V1__TrainStatusRequest req = STRATA__V1__TRAIN_STATUS_REQUEST__INIT;
    return (Strata__V1__TrainStatus *) client_request (endpoint, WIRE_TRAIN_STATUS, &req.base, WIRE_TRAIN_REPLY,
                                                       &strata__v1__train_status__descriptor, timeout_ms, err, errlen);
}

char *
train_status_json (const char *endpoint, int timeout_ms, char *err, size_t errlen)
{
    Strata__V1__TrainStatus *st = s_status (endpoint, timeout_ms, err, errlen);
    if (!st)
        return NULL;
    json_t *j = s_status_json (st);
    strata__v1__train_status__free_unpacked (st, NULL);
    //  One line, so that scripts can read it line by line.
    char *out = j ? json_dumps (j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref (j);
    if (!out)
        snprintf (err, errlen, "out of memory");
    return out;
}

static void
s_duration (double secs, char *out, size_t cap)
{
    long s = (long) (secs + 0.5);
    if (s >= 3600)
        snprintf (out, cap, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else if (s >= 60)
        snprintf (out, cap, "%ldm%02lds", s / 60, s % 60);
    else
        snprintf (out, cap, "%lds", s);
}

static void
s_print (const char *text)
{
    printf ("%s\n", text);
    fflush (stdout);
}

int
train_main (int argc, char **argv)
{
    train_cfg_t cfg = { 0 };
    char err[512];
    int rc = config_parse (s_keys, &cfg, argc, argv, NULL, err, sizeof err);
    if (rc == CONFIG_HELP) {
        config_help (s_keys, stdout, "usage: strata train [--epochs N] [--mode sync|async] [--wait] [--status]");
        config_free (s_keys, &cfg);
        return 0;
    }
    if (rc < 0) {
        fprintf (stderr, "strata train: %s\n", err);
        config_free (s_keys, &cfg);
        return 2;
    }
    Strata__V1__TrainMode mode = STRATA__V1__TRAIN_MODE__TRAIN_MODE_UNSPECIFIED;
    if (!strcmp (cfg.mode, "sync"))
        mode = STRATA__V1__TRAIN_MODE__SYNC;
    else if (!strcmp (cfg.mode, "async"))
        mode = STRATA__V1__TRAIN_MODE__ASYNC;
    else if (*cfg.mode) {
        fprintf (stderr, "strata train: --mode is sync or async\n");
        config_free (s_keys, &cfg);
        return 2;
    }
    cluster_endpoints_t eps;
    if (cluster_resolve (NULL, cfg.dir, &eps, err, sizeof err) < 0) {
        fprintf (stderr, "strata train: %s\n", err);
        config_free (s_keys, &cfg);
        return 1;
    }
    const char *ep = *cfg.trainer ? cfg.trainer : eps.trainer;
    int timeout = (int) cfg.timeout_ms;
    if (cfg.status) {
        char *json = train_status_json (ep, timeout, err, sizeof err);
        if (json)
            s_print (json);
        else
            fprintf (stderr, "strata train: %s\n", err);
        free (json);
        config_free (s_keys, &cfg);
        return json ? 0 : 1;
    }
    Strata__V1__TrainRequest req = STRATA__V1__TRAIN_REQUEST__INIT;
    req.epochs = (uint32_t) cfg.epochs;
    req.mode = mode;
    Strata__V1__TrainStatus *st = (Strata__V1__TrainStatus *) client_request (
        ep, WIRE_TRAIN, &req.base, WIRE_TRAIN_REPLY, &strata__v1__train_status__descriptor, timeout, err, sizeof err);
    if (!st) {
        fprintf (stderr, "strata train: %s\n", err);
        config_free (s_keys, &cfg);
        return 1;
    }
    uint64_t run = st->run_id;
    fprintf (stderr, "strata train: run %llu started: %u epochs, %s, %u users, %u items, %llu events, %u workers\n",
             (unsigned long long) run, st->epochs, s_mode (st->mode), st->users, st->items,
             (unsigned long long) st->events, st->workers);
    int64_t started = util_mono_ms ();
    while (cfg.wait && !zsys_interrupted) {
        bool training = !strcmp (st->state, "training") && st->run_id == run;
        if (!training)
            break;
        char eta[32], loss[64] = "-";
        s_duration (st->eta_seconds, eta, sizeof eta);
        //  Loss and validation are those of the last finished epoch: none yet in the first.
        if (st->epoch > 0)
            snprintf (loss, sizeof loss, "%.4f  validation NDCG@10 %.4f", st->loss, st->valid_ndcg10);
        fprintf (stderr, "\r  epoch %u/%u  step %llu/%llu  loss %s  %.0f samples/s  ETA %s  workers %u   ",
                 st->epoch + 1 > st->epochs ? st->epochs : st->epoch + 1, st->epochs, (unsigned long long) st->step,
                 (unsigned long long) st->steps, loss, st->samples_per_second, eta, st->workers);
        if (cfg.wait_ms && util_mono_ms () - started > cfg.wait_ms) {
            fprintf (stderr, "\nstrata train: still training after %lld ms\n", (long long) cfg.wait_ms);
            rc = 1;
            break;
        }
        zclock_sleep (500);
        Strata__V1__TrainStatus *next = s_status (ep, timeout, err, sizeof err);
        if (!next) {
            fprintf (stderr, "\nstrata train: %s (the trainer resumes from its checkpoint; retrying)\n", err);
            zclock_sleep (1000);
            continue;
        }
        strata__v1__train_status__free_unpacked (st, NULL);
        st = next;
    }
    if (cfg.wait)
        fputc ('\n', stderr);
    if (cfg.wait && !strcmp (st->state, "failed")) {
        fprintf (stderr, "strata train: run failed: %s\n", st->message);
        rc = 1;
    }
    json_t *j = s_status_json (st);
    char *text = j ? json_dumps (j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (text)
        s_print (text);
    free (text);
    json_decref (j);
    strata__v1__train_status__free_unpacked (st, NULL);
    config_free (s_keys, &cfg);
    return rc;
}
