/*  Integration: the durable ingestion path with real processes over TCP.

    broker + preprocess workers + the strata CLI as producer, each its own process, on
    127.0.0.1 with ephemeral ports, against the real Amazon Beauty data (skipped with a
    message when ../shared/data is absent). The counts asserted are the dataset's
    published ones; the crash tests kill processes with SIGKILL mid-import and demand
    exact counts afterwards: nothing lost, nothing doubled.
*/
#include <criterion/criterion.h>
#include <czmq.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define BEAUTY_EVENTS 198502
#define BEAUTY_USERS 22363
#define BEAUTY_ITEMS 12101

//  Each test's cluster; stopped after the test whatever its outcome.
static hcluster_t s_c;

static void
s_stop (void)
{
    hcluster_stop (&s_c);   // after a failed assertion; normally s_finish did it
}

//  Ends a test: stops the processes and fails on any sanitizer report in their logs
//  (a fini cannot fail a test, so every test calls this last).
static void
s_finish (void)
{
    cr_expect_eq (hcluster_stop (&s_c), 0, "sanitizer reports in the broker or worker logs");
}

TestSuite (ingest, .fini = s_stop);

static const char *
s_beauty (void)
{
    const char *p = harness_data ("amazon-s3rec/Beauty.txt");
    if (!p)
        cr_skip_test ("../shared/data/amazon-s3rec/Beauty.txt is absent: skipping real-data ingest test");
    return p;
}

static json_t *
s_import (hcluster_t *c, const char *path, const char *format)
{
    char fmt[64];
    snprintf (fmt, sizeof fmt, "--format=%s", format);
    const char *args[] = { "import", "--broker", c->ingest, "--quiet", fmt, path, NULL };
    int status = -1;
    json_t *j = harness_cli_json (args, &status);
    cr_assert_eq (status, 0, "strata import exited with %d", status);
    cr_assert_not_null (j, "strata import printed no JSON summary");
    return j;
}

static uint64_t
s_get (json_t *j, const char *key)
{
    return (uint64_t) json_integer_value (json_object_get (j, key));
}

Test (ingest, beauty_exact_counts_and_idempotent_reimport, .timeout = 300)
{
    const char *beauty = s_beauty ();
    char path[4096];
    snprintf (path, sizeof path, "%s", beauty);
    cr_assert_eq (hcluster_start (&s_c, NULL), 0, "broker did not start");
    hcluster_add_worker (&s_c);
    hcluster_add_worker (&s_c);

    json_t *sum = s_import (&s_c, path, "s3rec");
    cr_expect_eq (s_get (sum, "sent"), BEAUTY_EVENTS);
    cr_expect_eq (s_get (sum, "accepted"), BEAUTY_EVENTS);
    cr_expect_eq (s_get (sum, "duplicates"), 0);
    cr_expect_eq (s_get (sum, "rejected"), 0);
    json_decref (sum);

    json_t *st = hcluster_stats (&s_c);
    cr_assert_not_null (st);
    cr_expect_eq (s_get (st, "events"), BEAUTY_EVENTS);
    cr_expect_eq (s_get (st, "users"), BEAUTY_USERS);
    cr_expect_eq (s_get (st, "items"), BEAUTY_ITEMS);
    cr_expect_eq (s_get (st, "journal_pending"), 0);
    cr_expect_eq (s_get (json_object_get (st, "workers"), "preprocess"), 2);
    json_decref (st);

    //  The same file again: every event is a duplicate, nothing is added.
    sum = s_import (&s_c, path, "s3rec");
    cr_expect_eq (s_get (sum, "accepted"), 0);
    cr_expect_eq (s_get (sum, "duplicates"), BEAUTY_EVENTS);
    json_decref (sum);
    st = hcluster_stats (&s_c);
    cr_expect_eq (s_get (st, "events"), BEAUTY_EVENTS);
    cr_expect_eq (s_get (st, "duplicates"), BEAUTY_EVENTS);
    cr_expect_eq (s_get (st, "users"), BEAUTY_USERS);
    json_decref (st);

    //  Attributes join the same items: no new item ids, every item gets a record.
    const char *attrs = harness_data ("amazon-s3rec/Beauty_item2attributes.json");
    if (attrs) {
        snprintf (path, sizeof path, "%s", attrs);
        sum = s_import (&s_c, path, "s3rec-attrs");
        cr_expect_eq (s_get (sum, "accepted"), BEAUTY_ITEMS);
        json_decref (sum);
        st = hcluster_stats (&s_c);
        cr_expect_eq (s_get (st, "items"), BEAUTY_ITEMS);
        cr_expect_eq (s_get (st, "catalogue_items"), BEAUTY_ITEMS);
        json_decref (st);
    }
    s_finish ();
}

//  Starts an import in the background and returns its pid; out receives the summary.
static pid_t
s_import_bg (hcluster_t *c, const char *path, char *out, size_t cap)
{
    snprintf (out, cap, "%s/import.json", c->dir);
    //  Small batches and a short ack timeout make the import long enough to be
    //  interrupted and the producer quick to re-send after a broker restart.
    const char *args[] = { "import", "--broker", c->ingest, "--quiet", "--format=s3rec", "--batch=200", path, NULL };
    return harness_cli_start (out, args);
}

Test (ingest, kill9_worker_mid_import_loses_nothing, .timeout = 300)
{
    const char *beauty = s_beauty ();
    char path[4096], out[700];
    snprintf (path, sizeof path, "%s", beauty);
    cr_assert_eq (hcluster_start (&s_c, NULL), 0);
    pid_t victim = hcluster_add_worker (&s_c);
    hcluster_add_worker (&s_c);
    pid_t importer = s_import_bg (&s_c, path, out, sizeof out);

    //  Kill a worker once the import is under way (some events applied, most not).
    cr_assert (hcluster_wait_stat (&s_c, "events", 1000, 60000), "import did not start");
    uint64_t at_kill = hcluster_stat (&s_c, "events");
    kill (victim, SIGKILL);
    waitpid (victim, NULL, 0);
    cr_log_info ("killed worker %d with %llu of %d events applied", (int) victim, (unsigned long long) at_kill,
                 BEAUTY_EVENTS);
    cr_expect_lt (at_kill, BEAUTY_EVENTS, "the import finished before the kill; the test proves nothing");

    cr_assert_eq (harness_wait (importer, 240000), 0, "import did not complete");
    json_t *sum = harness_json_file (out);
    cr_assert_not_null (sum);
    cr_expect_eq (s_get (sum, "accepted"), BEAUTY_EVENTS);
    json_decref (sum);
    json_t *st = hcluster_stats (&s_c);
    cr_expect_eq (s_get (st, "events"), BEAUTY_EVENTS, "events lost or doubled");
    cr_expect_eq (s_get (st, "duplicates"), 0, "a re-dispatched shard was counted twice");
    cr_expect_eq (s_get (st, "users"), BEAUTY_USERS);
    cr_expect_eq (s_get (st, "items"), BEAUTY_ITEMS);
    cr_expect_eq (s_get (json_object_get (st, "workers"), "preprocess"), 1, "dead worker still listed");
    json_decref (st);
    s_finish ();
}

Test (ingest, kill9_broker_mid_import_then_restart, .timeout = 300)
{
    const char *beauty = s_beauty ();
    char path[4096], out[700];
    snprintf (path, sizeof path, "%s", beauty);
    cr_assert_eq (hcluster_start (&s_c, NULL), 0);
    hcluster_add_worker (&s_c);
    hcluster_add_worker (&s_c);
    pid_t importer = s_import_bg (&s_c, path, out, sizeof out);

    cr_assert (hcluster_wait_stat (&s_c, "events", 1000, 60000), "import did not start");
    kill (s_c.broker, SIGKILL);
    waitpid (s_c.broker, NULL, 0);
    cr_assert_eq (hcluster_restart_broker (&s_c), 0, "broker did not restart");
    uint64_t pending = hcluster_stat (&s_c, "journal_pending");
    cr_log_info ("broker restarted with %llu journal entries to replay", (unsigned long long) pending);

    cr_assert_eq (harness_wait (importer, 240000), 0, "import did not complete after the broker restart");
    json_t *sum = harness_json_file (out);
    cr_assert_not_null (sum);
    cr_expect_eq (s_get (sum, "sent"), BEAUTY_EVENTS);
    cr_expect_eq (s_get (sum, "accepted") + s_get (sum, "duplicates"), BEAUTY_EVENTS);
    json_decref (sum);
    cr_assert (hcluster_wait_stat (&s_c, "events", BEAUTY_EVENTS, 30000));
    json_t *st = hcluster_stats (&s_c);
    cr_expect_eq (s_get (st, "events"), BEAUTY_EVENTS, "events lost or doubled across the broker crash");
    cr_expect_eq (s_get (st, "users"), BEAUTY_USERS);
    cr_expect_eq (s_get (st, "items"), BEAUTY_ITEMS);
    cr_expect_eq (s_get (st, "journal_pending"), 0);
    cr_expect_eq (s_get (json_object_get (st, "workers"), "preprocess"), 2, "workers did not re-register");
    json_decref (st);
    s_finish ();
}

Test (ingest, movielens_with_titles, .timeout = 120)
{
    const char *udata = harness_data ("movielens-100k/u.data");
    if (!udata)
        cr_skip_test ("../shared/data/movielens-100k is absent");
    char path[4096];
    snprintf (path, sizeof path, "%s", udata);
    cr_assert_eq (hcluster_start (&s_c, NULL), 0);
    hcluster_add_worker (&s_c);
    json_t *sum = s_import (&s_c, path, "movielens");
    cr_expect_eq (s_get (sum, "accepted"), 100000 + 1682);
    cr_expect_eq (s_get (sum, "rejected"), 0);
    json_decref (sum);
    json_t *st = hcluster_stats (&s_c);
    cr_expect_eq (s_get (st, "events"), 100000);
    cr_expect_eq (s_get (st, "users"), 943);
    cr_expect_eq (s_get (st, "items"), 1682);
    cr_expect_eq (s_get (st, "catalogue_items"), 1682);
    json_decref (st);
    s_finish ();
}

Test (ingest, homedepot_products_as_catalogue, .timeout = 120)
{
    const char *train = harness_data ("homedepot-search-relevance/train.csv");
    if (!train)
        cr_skip_test ("../shared/data/homedepot-search-relevance is absent");
    char path[4096];
    snprintf (path, sizeof path, "%s", train);
    cr_assert_eq (hcluster_start (&s_c, NULL), 0);
    hcluster_add_worker (&s_c);
    json_t *sum = s_import (&s_c, path, "homedepot");
    cr_expect_eq (s_get (sum, "accepted"), 54667, "distinct product_uids");
    cr_expect_eq (s_get (sum, "rejected"), 0, "a Latin-1 title did not arrive as valid UTF-8");
    json_decref (sum);
    cr_expect_eq (hcluster_stat (&s_c, "catalogue_items"), 54667);
    s_finish ();
}

Test (ingest, backpressure_without_workers_then_recovery, .timeout = 180)
{
    //  No worker at first and room for only 3 waiting batches: the broker journals 3,
    //  tells the producer to back off (UNAVAILABLE) for the rest, and the producer keeps
    //  them until a worker appears. Nothing is lost, nothing is doubled.
    const char *extra[] = { "--max-pending=3", NULL };
    cr_assert_eq (hcluster_start (&s_c, extra), 0);
    char gdir[700], events[800], out[700];
    snprintf (gdir, sizeof gdir, "%s/gen", s_c.dir);
    const char *gen[] = { "gen", "--out", gdir, "--events", "20000", "--users", "300", "--items", "500", NULL };
    json_t *g = harness_cli_json (gen, NULL);
    cr_assert_not_null (g);
    json_decref (g);
    snprintf (events, sizeof events, "%s/events.jsonl", gdir);
    snprintf (out, sizeof out, "%s/import.json", s_c.dir);
    const char *args[] = { "import", "--broker", s_c.ingest, "--quiet", "--batch=500", events, NULL };
    pid_t importer = harness_cli_start (out, args);

    cr_assert (hcluster_wait_stat (&s_c, "journal_pending", 3, 30000), "journal did not fill");
    zclock_sleep (500);
    cr_expect_eq (hcluster_stat (&s_c, "journal_pending"), 3, "the broker took more than max-pending");
    cr_expect_eq (hcluster_stat (&s_c, "events"), 0);
    cr_expect_eq (waitpid (importer, NULL, WNOHANG), 0, "the producer gave up instead of waiting");

    hcluster_add_worker (&s_c);
    cr_assert_eq (harness_wait (importer, 120000), 0, "import did not complete once a worker joined");
    json_t *sum = harness_json_file (out);
    cr_assert_not_null (sum);
    cr_expect_eq (s_get (sum, "accepted"), 20000);
    cr_expect_eq (s_get (sum, "duplicates"), 0);
    json_decref (sum);
    cr_expect_eq (hcluster_stat (&s_c, "events"), 20000);
    s_finish ();
}

//  Reads a whole file (malloc'd, NUL-terminated), or NULL.
static char *
s_slurp (const char *path)
{
    FILE *f = fopen (path, "r");
    if (!f)
        return NULL;
    fseek (f, 0, SEEK_END);
    long n = ftell (f);
    fseek (f, 0, SEEK_SET);
    char *buf = malloc ((size_t) (n > 0 ? n : 0) + 1);
    size_t got = buf ? fread (buf, 1, (size_t) (n > 0 ? n : 0), f) : 0;
    fclose (f);
    if (buf)
        buf[got] = 0;
    return buf;
}

Test (ingest, slow_turns_are_counted_and_logged, .timeout = 120)
{
    //  Applying a batch of 20,000 events holds the broker's loop for well over a
    //  millisecond: with slow-turn-ms 1 that turn is counted, and logged with the
    //  message that took it.
    const char *extra[] = { "--slow-turn-ms=1", NULL };
    cr_assert_eq (hcluster_start (&s_c, extra), 0);
    hcluster_add_worker (&s_c);
    char gdir[700], events[800], log[700];
    snprintf (gdir, sizeof gdir, "%s/gen", s_c.dir);
    const char *gen[] = { "gen", "--out", gdir, "--events", "20000", "--users", "300", "--items", "500", NULL };
    json_decref (harness_cli_json (gen, NULL));
    snprintf (events, sizeof events, "%s/events.jsonl", gdir);
    const char *args[] = { "import", "--broker", s_c.ingest, "--quiet", "--batch=20000", events, NULL };
    json_t *sum = harness_cli_json (args, NULL);
    cr_assert_not_null (sum);
    cr_expect_eq (s_get (sum, "accepted"), 20000);
    json_decref (sum);

    json_t *st = hcluster_stats (&s_c);
    cr_assert_not_null (st);
    json_t *serving = json_object_get (st, "serving");
    uint64_t slow = (uint64_t) json_integer_value (json_object_get (serving, "slow_turns"));
    uint64_t slowest = (uint64_t) json_integer_value (json_object_get (serving, "slowest_turn_us"));
    json_decref (st);
    cr_expect_gt (slow, 0, "no slow turn counted");
    cr_expect_gt (slowest, 1000, "the slowest turn (%llu us) is under slow-turn-ms", (unsigned long long) slowest);

    //  Slow turns are logged at most once a second: the one that names the batch may
    //  come a second after an earlier report (the worker's READY, under a sanitizer).
    snprintf (log, sizeof log, "%s/broker.log", s_c.dir);
    char *text = NULL;
    for (int i = 0; i < 50; i++) {
        free (text);
        text = s_slurp (log);
        if (text && (strstr (text, "its slowest message RESULT") || strstr (text, "its slowest message journal write")
                     || strstr (text, "its slowest message BATCH")))
            break;
        zclock_sleep (100);
    }
    cr_assert_not_null (text);
    cr_expect_not_null (strstr (text, "slow turn"), "no slow turn in the broker's log");
    cr_expect (strstr (text, "its slowest message RESULT") || strstr (text, "its slowest message journal write")
                   || strstr (text, "its slowest message BATCH"),
               "the log does not name the message that took the turn");
    free (text);
    s_finish ();
}
