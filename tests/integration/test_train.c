/*  Integration: distributed training over TCP with real processes. A broker holding a
    generated shop, strata-trainer, and train workers. Sync mode is deterministic (same
    bits on every run, whatever the number of workers and whoever dies), a train worker
    killed with SIGKILL mid-run has its shards redone, a trainer killed with SIGKILL
    resumes from its checkpoint to the same bits, new events produce an incremental
    model version, and bad requests get Error replies.
*/
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"
#include "request.h"
#include "wire.h"

static hcluster_t s_c;

static void
s_cleanup (void)
{
    cr_expect_eq (hcluster_stop (&s_c), 0, "sanitizer reports in the cluster's logs");
}

TestSuite (train, .fini = s_cleanup, .timeout = 600);

//  Small model settings so that a run takes seconds, even under sanitizers.
#define MODEL_FLAGS "--dim=16", "--blocks=1", "--max-len=20", "--batch=32", "--negatives=64", "--shards=2"

static void
s_import (hcluster_t *c, const char *name, int events, int users, int items, int seed, const char *prefix)
{
    char gdir[700], items_path[800], events_path[800], n_ev[16], n_us[16], n_it[16], sd[16];
    snprintf (gdir, sizeof gdir, "%s/%s", c->dir, name);
    snprintf (n_ev, sizeof n_ev, "%d", events);
    snprintf (n_us, sizeof n_us, "%d", users);
    snprintf (n_it, sizeof n_it, "%d", items);
    snprintf (sd, sizeof sd, "%d", seed);
    const char *gen[] = { "gen", "--out", gdir, "--events", n_ev, "--users", n_us, "--items", n_it, "--seed", sd,
                          NULL };
    json_decref (harness_cli_json (gen, NULL));
    snprintf (items_path, sizeof items_path, "%s/items.jsonl", gdir);
    snprintf (events_path, sizeof events_path, "%s/events.jsonl", gdir);
    const char *imp_items[] = { "import", "--broker", c->ingest, "--quiet", "--prefix", prefix, "--items", items_path,
                                NULL };
    const char *imp_events[] = { "import", "--broker", c->ingest, "--quiet", "--prefix", prefix, events_path, NULL };
    int status = -1;
    json_t *sum = harness_cli_json (imp_items, &status);
    cr_assert_eq (status, 0, "importing the catalogue failed");
    json_decref (sum);
    sum = harness_cli_json (imp_events, &status);
    cr_assert_not_null (sum);
    char *text = json_dumps (sum, JSON_COMPACT);
    cr_assert_eq (status, 0, "importing the events failed: %s", text);
    cr_assert_eq (json_integer_value (json_object_get (sum, "accepted")), events, "not every event was stored: %s",
                  text);
    free (text);
    json_decref (sum);
}

static void
s_cluster (const char *const *trainer_flags, int train_workers)
{
    cr_assert_eq (hcluster_start (&s_c, NULL), 0);
    hcluster_add_worker (&s_c);
    s_import (&s_c, "gen", 20000, 300, 400, 5, "");
    cr_assert_eq (hcluster_start_trainer (&s_c, trainer_flags), 0);
    for (int i = 0; i < train_workers; i++)
        hcluster_add_train_worker (&s_c);
}

//  Runs `strata train --wait` with the given flags and returns its final JSON.
static json_t *
s_train (const char *epochs, const char *mode)
{
    const char *args[] = { "train", "--trainer", s_c.trainer_api, "--epochs", epochs, "--mode", mode, "--wait",
                           "--wait-ms", "400000", NULL };
    int status = -1;
    json_t *j = harness_cli_json (args, &status);
    cr_assert_not_null (j, "strata train printed no summary");
    cr_expect_eq (status, 0, "strata train failed: %s", json_string_value (json_object_get (j, "message")));
    return j;
}

static const char *
s_str (json_t *j, const char *key)
{
    return json_string_value (json_object_get (j, key));
}

static double
s_num (json_t *j, const char *key)
{
    return json_number_value (json_object_get (j, key));
}

static double
s_ndcg (json_t *j)
{
    return json_number_value (json_object_get (json_object_get (j, "validation"), "ndcg@10"));
}

//  Waits until the trainer's status satisfies key >= value.
static json_t *
s_wait_status (const char *key, double value, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (zclock_mono () < deadline) {
        json_t *st = hcluster_train_status (&s_c);
        if (st && s_num (st, key) >= value)
            return st;
        json_decref (st);
        zclock_sleep (100);
    }
    return NULL;
}

Test (train, sync_runs_are_bit_identical_whatever_the_workers)
{
    const char *flags[] = { MODEL_FLAGS, NULL };
    s_cluster (flags, 2);
    json_t *a = s_train ("10", "sync");
    cr_expect_str_eq (s_str (a, "state"), "continuous");
    cr_expect_eq (s_num (a, "epoch"), 10);
    cr_expect_gt (s_num (a, "version"), 0);
    cr_expect_eq (s_num (a, "workers"), 2);
    cr_expect_gt (s_ndcg (a), 0.02, "the model learned nothing: validation NDCG@10 %f", s_ndcg (a));
    //  The same run again: a fresh model from the same seed on the same data.
    json_t *b = s_train ("10", "sync");
    cr_expect_str_eq (s_str (a, "weights_fnv"), s_str (b, "weights_fnv"), "two sync runs differ");
    cr_expect_eq (s_ndcg (a), s_ndcg (b));
    //  One worker fewer: same shards, same order of summation, same bits.
    kill (s_c.workers[s_c.nworkers - 1], SIGTERM);
    waitpid (s_c.workers[s_c.nworkers - 1], NULL, 0);
    s_c.workers[--s_c.nworkers] = 0;
    json_t *c = s_train ("10", "sync");
    cr_expect_eq (s_num (c, "workers"), 1);
    cr_expect_str_eq (s_str (a, "weights_fnv"), s_str (c, "weights_fnv"), "1 worker and 2 workers differ");
    //  Async: not bit-identical, but it learns as well.
    hcluster_add_train_worker (&s_c);
    json_t *d = s_train ("10", "async");
    cr_expect_str_eq (s_str (d, "mode"), "async");
    cr_expect_gt (s_ndcg (d), s_ndcg (a) * 0.6, "async %f vs sync %f", s_ndcg (d), s_ndcg (a));
    json_decref (a);
    json_decref (b);
    json_decref (c);
    json_decref (d);
}

Test (train, a_killed_train_worker_changes_nothing)
{
    const char *flags[] = { MODEL_FLAGS, NULL };
    s_cluster (flags, 2);
    //  Long enough a run (10 steps an epoch) to kill a worker in the middle of it.
    json_t *ref = s_train ("150", "sync");
    //  Again, and kill -9 a worker while it holds a shard.
    const char *args[] = { "train", "--trainer", s_c.trainer_api, "--epochs", "150", "--mode", "sync", NULL };
    json_t *started = harness_cli_json (args, NULL);
    cr_assert_not_null (started);
    json_t *st = s_wait_status ("epoch", 10, 120000);
    cr_assert_not_null (st, "the run did not get going");
    json_decref (st);
    pid_t victim = s_c.workers[s_c.nworkers - 1];
    kill (victim, SIGKILL);
    waitpid (victim, NULL, 0);
    s_c.workers[--s_c.nworkers] = 0;
    json_t *done = NULL;
    for (int i = 0; i < 3000 && !done; i++) {
        json_t *s = hcluster_train_status (&s_c);
        if (s && s_num (s, "run_id") == s_num (started, "run_id") && !strcmp (s_str (s, "state"), "continuous"))
            done = s;
        else {
            json_decref (s);
            zclock_sleep (100);
        }
    }
    cr_assert_not_null (done, "the run did not finish after its worker died");
    cr_log_info ("killed a train worker: %.0f shards redone; validation NDCG@10 %.4f (undisturbed %.4f)",
            s_num (done, "redone"), s_ndcg (done), s_ndcg (ref));
    cr_expect_eq (s_num (done, "workers"), 1);
    cr_expect_str_eq (s_str (done, "weights_fnv"), s_str (ref, "weights_fnv"),
                      "the redone shards changed the result");
    cr_expect_eq (s_ndcg (done), s_ndcg (ref));
    json_decref (ref);
    json_decref (started);
    json_decref (done);
}

Test (train, a_killed_trainer_resumes_from_its_checkpoint)
{
    const char *flags[] = { MODEL_FLAGS, "--checkpoint-secs=1", NULL };
    s_cluster (flags, 2);
    json_t *ref = s_train ("150", "sync");
    const char *args[] = { "train", "--trainer", s_c.trainer_api, "--epochs", "150", "--mode", "sync", NULL };
    json_decref (harness_cli_json (args, NULL));
    //  Well into the run (a checkpoint at every epoch's end), then kill -9.
    json_t *st = s_wait_status ("epoch", 20, 120000);
    cr_assert_not_null (st, "the run did not get past 20 epochs");
    int64_t before_epoch = (int64_t) s_num (st, "epoch");
    json_decref (st);
    kill (s_c.trainer, SIGKILL);
    waitpid (s_c.trainer, NULL, 0);
    cr_assert_eq (hcluster_restart_trainer (&s_c), 0);
    json_t *resumed = hcluster_train_status (&s_c);
    cr_assert_not_null (resumed);
    cr_log_info ("trainer killed in epoch %lld; restarted at epoch %.0f step %.0f (%s)", (long long) before_epoch + 1,
            s_num (resumed, "epoch"), s_num (resumed, "step"), s_str (resumed, "state"));
    cr_expect_geq (s_num (resumed, "epoch"), before_epoch, "the restart lost finished epochs");
    json_decref (resumed);
    json_t *done = NULL;
    for (int i = 0; i < 3000 && !done; i++) {
        json_t *s = hcluster_train_status (&s_c);
        if (s && !strcmp (s_str (s, "state"), "continuous") && s_num (s, "epoch") == 150)
            done = s;
        else {
            json_decref (s);
            zclock_sleep (100);
        }
    }
    cr_assert_not_null (done, "the resumed run did not finish");
    cr_expect_str_eq (s_str (done, "weights_fnv"), s_str (ref, "weights_fnv"),
                      "the resumed run differs from an undisturbed one");
    json_decref (ref);
    json_decref (done);
}

Test (train, new_events_make_a_new_version)
{
    const char *flags[] = { MODEL_FLAGS, "--retrain-events=500", "--retrain-secs=1", NULL };
    s_cluster (flags, 1);
    json_t *first = s_train ("2", "sync");
    double version = s_num (first, "version"), events = s_num (first, "events"), items = s_num (first, "items");
    //  New behaviour arrives: new users and items too.
    s_import (&s_c, "more", 3000, 60, 460, 11, "b-");
    json_t *st = s_wait_status ("updates", 1, 120000);
    cr_assert_not_null (st, "no incremental update after 3000 new events");
    json_t *now = NULL;
    for (int i = 0; i < 600 && !now; i++) {
        json_t *s = hcluster_train_status (&s_c);
        if (s && !strcmp (s_str (s, "state"), "continuous"))
            now = s;
        else {
            json_decref (s);
            zclock_sleep (100);
        }
    }
    cr_assert_not_null (now);
    cr_expect_gt (s_num (now, "version"), version);
    cr_expect_gt (s_num (now, "events"), events);
    cr_expect_gt (s_num (now, "items"), items, "the item table did not grow for new items");
    cr_expect_gt (s_ndcg (now), 0.0);
    json_decref (first);
    json_decref (st);
    json_decref (now);
}

static Strata__V1__Error *
s_expect_error (const char *endpoint, const char *type, const void *data, size_t len)
{
    zsock_t *s = zsock_new_dealer (endpoint);
    cr_assert_not_null (s);
    wire_send_bytes (s, NULL, type, data, len);
    zsock_set_rcvtimeo (s, 5000);
    wire_msg_t msg;
    int rc = wire_recv (s, false, 0, &msg);
    cr_assert_eq (rc, 0, "no reply to a bad %s", type);
    cr_expect_str_eq (msg.type, WIRE_ERROR);
    Strata__V1__Error *e = (Strata__V1__Error *) wire_unpack (&strata__v1__error__descriptor, msg.payload, NULL);
    wire_msg_reset (&msg);
    zsock_destroy (&s);
    cr_assert_not_null (e);
    return e;
}

Test (train, bad_requests_get_errors)
{
    cr_assert_eq (hcluster_start (&s_c, NULL), 0);
    const char *flags[] = { MODEL_FLAGS, NULL };
    cr_assert_eq (hcluster_start_trainer (&s_c, flags), 0);
    //  Nothing to train on yet.
    const char *args[] = { "train", "--trainer", s_c.trainer_api, NULL };
    int status = 0;
    json_decref (harness_cli_json (args, &status));
    cr_expect_neq (status, 0, "training an empty store succeeded");
    Strata__V1__Error *e = s_expect_error (s_c.trainer_api, WIRE_TRAIN, "\xff\xff\xff", 3);
    cr_expect_eq (e->code, STRATA__V1__ERROR_CODE__BAD_PAYLOAD);
    strata__v1__error__free_unpacked (e, NULL);
    e = s_expect_error (s_c.trainer_api, "RECOMMEND?", "", 0);
    cr_expect_eq (e->code, STRATA__V1__ERROR_CODE__UNKNOWN_TYPE);
    strata__v1__error__free_unpacked (e, NULL);
    //  A preprocess worker on the trainer's endpoint is turned away.
    Strata__V1__WorkerHello hello = STRATA__V1__WORKER_HELLO__INIT;
    hello.worker_id = "wrong-role";
    hello.role = STRATA__V1__ROLE__PREPROCESS;
    uint8_t buf[64];
    size_t n = strata__v1__worker_hello__pack (&hello, buf);
    e = s_expect_error (s_c.trainer_workers, WIRE_READY, buf, n);
    cr_expect_eq (e->code, STRATA__V1__ERROR_CODE__INVALID);
    strata__v1__error__free_unpacked (e, NULL);
    //  Still serving.
    json_t *st = hcluster_train_status (&s_c);
    cr_assert_not_null (st);
    cr_expect_str_eq (s_str (st, "state"), "idle");
    json_decref (st);
}
