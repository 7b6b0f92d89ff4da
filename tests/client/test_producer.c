/*  Unit: the producer (strata.h) against a broker and a preprocess worker run inside
    the test process (broker_actor, worker_actor) on ephemeral ports: records are
    journaled and applied with exact counts, re-sent events are counted as duplicates,
    a producer that starts before its broker has every record stored once it comes, and
    one whose broker never answers gives up with STRATA_ETIMEOUT.
*/
#include <criterion/criterion.h>
#include <czmq.h>
#include <stdio.h>
#include <string.h>

#include "broker.h"
#include "harness.h"
#include "log.h"
#include "strata.h"
#include "worker.h"

static broker_config_t s_bcfg;
static worker_config_t s_wcfg;
static broker_t *s_broker;
static worker_t *s_worker;
static zactor_t *s_broker_actor, *s_worker_actor;
static char s_ingest[128];

//  A broker on `ingest` (an ephemeral port, or the port of an earlier one), with a
//  preprocess worker.
static void
s_start (const char *ingest)
{
    char dir[600];
    snprintf (dir, sizeof dir, "%s/broker", harness_dir);
    char *argv[] = { "broker", "--dir", dir, "--ingest", (char *) ingest, "--workers", "tcp://127.0.0.1:!", "--api",
                     "tcp://127.0.0.1:!", "--log-level", "warn", NULL };
    char err[256];
    cr_assert_eq (config_parse (broker_config_keys, &s_bcfg, 11, argv, NULL, err, sizeof err), 0, "%s", err);
    log_set_level_name ("warn");
    s_broker = broker_new (&s_bcfg);
    cr_assert_not_null (s_broker);
    snprintf (s_ingest, sizeof s_ingest, "%s", broker_endpoint (s_broker, "ingest"));
    char workers[128];
    snprintf (workers, sizeof workers, "%s", broker_endpoint (s_broker, "workers"));
    s_broker_actor = zactor_new (broker_actor, s_broker);
    char *wargv[] = { "worker", "--role", "preprocess", "--broker", workers, "--heartbeat-ms", "100", NULL };
    cr_assert_eq (config_parse (worker_config_keys, &s_wcfg, 7, wargv, NULL, err, sizeof err), 0, "%s", err);
    s_worker = worker_new (&s_wcfg);
    cr_assert_not_null (s_worker);
    s_worker_actor = zactor_new (worker_actor, s_worker);
}

static void
s_stop (void)
{
    zactor_destroy (&s_worker_actor);
    worker_destroy (&s_worker);
    config_free (worker_config_keys, &s_wcfg);
    zactor_destroy (&s_broker_actor);
    broker_destroy (&s_broker);
    config_free (broker_config_keys, &s_bcfg);
}

static void
s_fini (void)
{
    s_stop ();
    harness_dir_teardown ();
}

TestSuite (producer, .init = harness_dir_setup, .fini = s_fini, .timeout = 60);

static void
s_add (strata_producer_t *p, int from, int to)
{
    for (int i = from; i < to; i++) {
        char eid[32], user[32], item[32];
        snprintf (eid, sizeof eid, "e%05d", i);
        snprintf (user, sizeof user, "u%d", i % 17);
        snprintf (item, sizeof item, "sku-%d", i % 23);
        strata_event_t e = { .event_id = eid, .user_id = user, .item_id = item, .type = "view",
                             .timestamp_ms = 1735689600000 + i };
        cr_assert_eq (strata_producer_add_event (p, &e), STRATA_OK, "%s", strata_producer_error (p));
    }
}

Test (producer, records_are_applied_with_exact_counts)
{
    s_start ("tcp://127.0.0.1:!");
    strata_producer_opts_t opts = { .batch_records = 100 };
    strata_producer_t *p = strata_producer_new (s_ingest, &opts);
    cr_assert_not_null (p);
    s_add (p, 0, 1000);
    strata_item_t it = { .item_id = "sku-1", .title = "Two-person tent", .category = "Tents", .price = "$129.00" };
    cr_assert_eq (strata_producer_add_item (p, &it), STRATA_OK);
    cr_assert_eq (strata_producer_add_raw (p, "feed.csv", 7, "garbage,,", "unparseable line"), STRATA_OK);
    strata_summary_t sum;
    cr_assert_eq (strata_producer_finish (p, 20000, &sum), STRATA_OK, "%s", strata_producer_error (p));
    cr_assert_eq (sum.sent, 1002);
    cr_assert_eq (sum.batches, 11);
    cr_assert_eq (sum.acked, 11);
    cr_assert_eq (sum.accepted, 1001);
    cr_assert_eq (sum.rejected, 1);
    cr_assert_eq (sum.duplicates, 0);
    strata_producer_destroy (&p);

    //  The same event ids again, from another producer: duplicates, nothing stored twice.
    p = strata_producer_new (s_ingest, &opts);
    s_add (p, 500, 700);
    cr_assert_eq (strata_producer_finish (p, 20000, &sum), STRATA_OK, "%s", strata_producer_error (p));
    cr_assert_eq (sum.accepted, 0);
    cr_assert_eq (sum.duplicates, 200);
    strata_producer_destroy (&p);
}

Test (producer, a_late_broker_gets_every_record_once)
{
    //  Learn a free port from a broker, stop it, and produce to that port before the
    //  next one starts there.
    s_start ("tcp://127.0.0.1:!");
    char ingest[128];
    snprintf (ingest, sizeof ingest, "%s", s_ingest);
    s_stop ();
    strata_producer_opts_t opts = { .batch_records = 50, .ack_timeout_ms = 100 };
    strata_producer_t *p = strata_producer_new (ingest, &opts);
    cr_assert_not_null (p);
    s_add (p, 0, 120);
    zclock_sleep (300);
    s_start (ingest);
    strata_summary_t sum;
    cr_assert_eq (strata_producer_finish (p, 20000, &sum), STRATA_OK, "%s", strata_producer_error (p));
    //  Whether a batch was re-sent or waited in the socket's queue until the broker
    //  came, each record is stored once.
    cr_assert_eq (sum.accepted, 120);
    cr_assert_eq (sum.duplicates, 0);
    cr_assert_eq (sum.acked, sum.batches);
    strata_producer_destroy (&p);
}

Test (producer, gives_up_on_a_broker_that_never_answers)
{
    strata_producer_opts_t opts = { .batch_records = 10, .ack_timeout_ms = 50, .give_up_ms = 400 };
    strata_producer_t *p = strata_producer_new ("tcp://127.0.0.1:9", &opts);
    cr_assert_not_null (p);
    s_add (p, 0, 5);
    int64_t t0 = zclock_mono ();
    cr_assert_eq (strata_producer_flush (p), STRATA_ETIMEOUT);
    cr_assert_lt (zclock_mono () - t0, 5000);
    strata_producer_destroy (&p);
    cr_assert_null (strata_producer_new (NULL, NULL));
}
