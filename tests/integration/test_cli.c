/*  Integration: the strata command line as a user drives it.

    `strata up --detach` / `strata down` manage a real local cluster; `strata gen`
    writes synthetic data with malformed lines, `strata import` sends it (JSONL and CSV)
    and every malformed line must come back as a counted reject; `strata stats` prints
    the counters a user relies on; `strata demo` shows each user recommendations of
    their own. Runs without ../shared/data.
*/
#include <criterion/criterion.h>
#include <czmq.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static int
s_run (const char *const *args)
{
    char *dir = harness_tmpdir ();
    char out[600];
    snprintf (out, sizeof out, "%s/out", dir);
    int st = harness_wait (harness_cli_start (out, args), 120000);
    harness_rmtree (dir);
    free (dir);
    return st;
}

//  Runs `strata stats --dir dir` and parses its (multi-line) JSON.
static json_t *
s_stats (const char *dir)
{
    char out[700];
    snprintf (out, sizeof out, "%s/stats.json", dir);
    const char *args[] = { "stats", "--dir", dir, NULL };
    cr_assert_eq (harness_wait (harness_cli_start (out, args), 30000), 0, "strata stats failed");
    json_t *j = json_load_file (out, 0, NULL);
    cr_assert_not_null (j, "strata stats did not print JSON");
    return j;
}

static char *s_dir;
static char s_cdir[600];

//  Whatever the test's fate, the detached cluster is stopped and its files removed.
static void
s_cleanup (void)
{
    const char *down[] = { "down", "--dir", s_cdir, NULL };
    if (access (s_cdir, F_OK) == 0)
        s_run (down);
    harness_rmtree (s_dir);
    free (s_dir);
}

static void
s_init (void)
{
    s_dir = harness_tmpdir ();
    cr_assert_not_null (s_dir);
    snprintf (s_cdir, sizeof s_cdir, "%s/cluster", s_dir);
}

//  A process's session and nice value, from /proc/PID/stat. False when it is gone.
static bool
s_proc_sched (int pid, long *session, long *nice)
{
    char path[64], buf[1024];
    snprintf (path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen (path, "r");
    size_t n = f ? fread (buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose (f);
    buf[n] = 0;
    char *p = strrchr (buf, ')');   // the command name may hold spaces
    //  After the name: state ppid pgrp session ... priority (16th) nice (17th).
    long v[17];
    int got = p ? sscanf (p + 1, " %*c %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld", &v[0], &v[1],
                          &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10], &v[11], &v[12], &v[13],
                          &v[14], &v[15])
                : 0;
    if (got < 16)
        return false;
    *session = v[2];
    *nice = v[15];
    return true;
}

//  Batch processes (preprocess workers, trainer, train workers) run at the lowest
//  priority, each in a session of its own; the broker and rank workers as started.
static void
s_expect_batch_yields (const char *cdir)
{
    char cj[700];
    snprintf (cj, sizeof cj, "%s/cluster.json", cdir);
    json_t *c = json_load_file (cj, 0, NULL);
    cr_assert_not_null (c);
    long mine = getpriority (PRIO_PROCESS, 0), broker_session = -1;
    size_t i, batch = 0;
    json_t *p;
    json_array_foreach (json_object_get (c, "processes"), i, p) {
        const char *name = json_string_value (json_object_get (p, "name"));
        int pid = (int) json_integer_value (json_object_get (p, "pid"));
        long session, nice;
        cr_assert (s_proc_sched (pid, &session, &nice), "%s (pid %d) is not running", name, pid);
        bool is_batch = !strncmp (name, "worker-", 7) || !strcmp (name, "trainer") || !strncmp (name, "train-", 6);
        if (is_batch) {
            cr_expect_eq (nice, 19, "%s runs at nice %ld", name, nice);
            cr_expect_eq (session, pid, "%s is not in a session of its own", name);
            batch++;
        }
        else {
            cr_expect_eq (nice, mine, "%s runs at nice %ld, not as started (%ld)", name, nice, mine);
            if (!strcmp (name, "broker"))
                broker_session = session;
            else
                cr_expect_eq (session, broker_session, "%s is not in the broker's session", name);
        }
    }
    cr_expect_eq (batch, 4, "2 preprocess workers, the trainer and a train worker");
    json_decref (c);
}

Test (cli, up_import_generated_data_stats_down, .init = s_init, .fini = s_cleanup, .timeout = 300)
{
    char *dir = s_dir;
    char *cdir = s_cdir;
    char gdir[600];
    snprintf (gdir, sizeof gdir, "%s/gen", dir);

    const char *up[] = { "up", "--detach", "--dir", cdir, "--port", "0", "--workers", "2", NULL };
    cr_assert_eq (s_run (up), 0, "strata up --detach failed");
    char cj[700];
    snprintf (cj, sizeof cj, "%s/cluster.json", cdir);
    cr_assert_eq (access (cj, R_OK), 0, "no cluster.json");
    s_expect_batch_yields (cdir);

    const char *gen_jsonl[] = { "gen", "--out", gdir, "--items", "300", "--users", "100", "--events", "5000",
                                "--malformed", "4", "--seed", "7", NULL };
    json_t *g = harness_cli_json (gen_jsonl, NULL);
    cr_assert_not_null (g);
    int64_t gen_events = json_integer_value (json_object_get (g, "events"));
    int64_t gen_items = json_integer_value (json_object_get (g, "items"));
    int64_t gen_bad = json_integer_value (json_object_get (g, "malformed"));
    json_decref (g);
    cr_assert_eq (gen_bad, 8, "4 malformed lines in each of the 2 files");

    char items[700], events[700];
    snprintf (items, sizeof items, "%s/items.jsonl", gdir);
    snprintf (events, sizeof events, "%s/events.jsonl", gdir);
    const char *imp_items[] = { "import", "--dir", cdir, "--quiet", "--items", items, NULL };
    json_t *s1 = harness_cli_json (imp_items, NULL);
    const char *imp_events[] = { "import", "--dir", cdir, "--quiet", events, NULL };
    json_t *s2 = harness_cli_json (imp_events, NULL);
    cr_assert_not_null (s1);
    cr_assert_not_null (s2);
    cr_expect_eq (json_integer_value (json_object_get (s1, "accepted")), gen_items);
    cr_expect_eq (json_integer_value (json_object_get (s2, "accepted")), gen_events);
    cr_expect_eq (json_integer_value (json_object_get (s1, "rejected")) + json_integer_value (json_object_get (s2, "rejected")),
                  gen_bad, "every malformed line is a counted reject");
    json_decref (s1);
    json_decref (s2);

    json_t *st = s_stats (cdir);
    const char *keys[] = { "events", "users", "items", "duplicates", "rejected", "journal_pending", "workers",
                           "journal_slowest_sync_us" };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        cr_expect_not_null (json_object_get (st, keys[i]), "stats lacks '%s'", keys[i]);
    cr_expect_eq (json_integer_value (json_object_get (st, "events")), gen_events);
    cr_expect_eq (json_integer_value (json_object_get (st, "catalogue_items")), gen_items);
    cr_expect_eq (json_integer_value (json_object_get (st, "rejected")), gen_bad);
    //  Every batch was acked after a sync of the journal; none waits for one now.
    cr_expect_gt (json_integer_value (json_object_get (st, "journal_syncs")), 0);
    cr_expect_leq (json_integer_value (json_object_get (st, "journal_syncs")),
                   json_integer_value (json_object_get (st, "batches")), "more syncs than batches");
    cr_expect_eq (json_integer_value (json_object_get (st, "journal_unsynced")), 0);
    cr_expect_eq (json_integer_value (json_object_get (json_object_get (st, "workers"), "preprocess")), 2);
    json_t *reasons = json_object_get (st, "reject_reasons");
    cr_expect_gt (json_object_size (reasons), 2, "reject reasons are itemised");
    json_decref (st);

    //  Every reject is kept with its reason and can be read back.
    char rj[700];
    snprintf (rj, sizeof rj, "%s/rejects.jsonl", dir);
    const char *rejects[] = { "rejects", "--dir", cdir, "--limit", "100", NULL };
    cr_assert_eq (harness_wait (harness_cli_start (rj, rejects), 30000), 0, "strata rejects failed");
    FILE *f = fopen (rj, "r");
    cr_assert_not_null (f);
    char line[4096];
    int nrej = 0;
    while (fgets (line, sizeof line, f)) {
        json_t *r = json_loads (line, 0, NULL);
        cr_assert_not_null (r, "not a JSON line: %s", line);
        cr_expect_gt (strlen (json_string_value (json_object_get (r, "reason"))), 0, "a reject without a reason");
        json_decref (r);
        nrej++;
    }
    fclose (f);
    cr_expect_eq (nrej, gen_bad);

    //  The same data as CSV: the events dedupe against the JSONL import (same event
    //  ids), the malformed CSV lines are rejected with reasons.
    const char *gen_csv[] = { "gen", "--out", gdir, "--items", "300", "--users", "100", "--events", "5000",
                              "--malformed", "4", "--seed", "7", "--format", "csv", NULL };
    json_decref (harness_cli_json (gen_csv, NULL));
    snprintf (events, sizeof events, "%s/events.csv", gdir);
    const char *imp_csv[] = { "import", "--dir", cdir, "--quiet", events, NULL };
    json_t *s3 = harness_cli_json (imp_csv, NULL);
    cr_assert_not_null (s3);
    cr_expect_eq (json_integer_value (json_object_get (s3, "duplicates")), gen_events);
    cr_expect_eq (json_integer_value (json_object_get (s3, "accepted")), 0);
    cr_expect_eq (json_integer_value (json_object_get (s3, "rejected")), 4);
    json_decref (s3);

    const char *down[] = { "down", "--dir", cdir, NULL };
    cr_assert_eq (s_run (down), 0, "strata down failed");
    cr_expect_neq (access (cj, R_OK), 0, "cluster.json left behind");
    const char *stats_after[] = { "stats", "--dir", cdir, "--timeout-ms", "300", NULL };
    cr_expect_neq (s_run (stats_after), 0, "cluster still answering after down");
}

Test (cli, detached_up_returns_and_closes_its_output, .init = s_init, .fini = s_cleanup, .timeout = 180)
{
    //  `strata up --detach | tail` must end: the cluster it leaves running keeps none of
    //  the caller's standard streams open. Its output goes to a FIFO here, read until
    //  every writer has closed it.
    char fifo[700];
    snprintf (fifo, sizeof fifo, "%s/up.out", s_dir);
    cr_assert_eq (mkfifo (fifo, 0600), 0);
    int fd = open (fifo, O_RDONLY | O_NONBLOCK);
    cr_assert_geq (fd, 0);
    const char *up[] = { "up", "--detach", "--dir", s_cdir, "--port", "0", "--workers", "1", NULL };
    pid_t pid = harness_cli_start (fifo, up);
    char buf[4096];
    size_t got = 0;
    bool eof = false;
    for (int64_t until = zclock_mono () + 90000; !eof && zclock_mono () < until;) {
        struct pollfd p = { fd, POLLIN, 0 };
        poll (&p, 1, 200);
        ssize_t n = read (fd, buf + got, sizeof buf - 1 - got);
        if (n > 0)
            got += (size_t) n;
        else if (n == 0 && got > 0)
            eof = true;   // (before the first byte, no writer may have opened it yet)
        else if (n == 0)
            zclock_sleep (20);
    }
    close (fd);
    cr_assert_eq (harness_wait (pid, 60000), 0, "strata up --detach failed");
    buf[got] = 0;
    cr_expect_not_null (strstr (buf, "\"api\""), "strata up printed: %s", buf);
    cr_expect (eof, "the detached cluster still holds the caller's standard output");
}

Test (cli, bad_usage_is_an_error_not_a_crash)
{
    const char *a[] = { "import", NULL };
    cr_expect_eq (s_run (a), 2, "import without a file");
    const char *b[] = { "frobnicate", NULL };
    cr_expect_eq (s_run (b), 2, "unknown command");
    const char *c[] = { "import", "--batch", "0", "x.jsonl", NULL };
    cr_expect_eq (s_run (c), 2, "batch out of range");
    const char *d[] = { "import", "--format", "xml", "x", NULL };
    cr_expect_eq (s_run (d), 2, "unknown format");
    const char *e[] = { "stats", "--dir", "/nonexistent/strata", NULL };
    cr_expect_eq (s_run (e), 1, "no cluster there");
    const char *f[] = { "up", "--help", NULL };
    cr_expect_eq (s_run (f), 0, "help");
}

//  One `# recommend USER: model version V, SOURCE, from WORKER` block of the demo's
//  output: its user, version, source and items.
typedef struct {
    char user[64], source[32];
    unsigned long long version;
    char items[5][32];
    int n;
} demo_block_t;

Test (cli, demo_shows_each_user_recommendations_of_their_own, .init = s_init, .fini = s_cleanup, .timeout = 1200)
{
    //  The README's first command: the demo trains on a synthetic shop whose users have
    //  favourite categories, then asks for three users' recommendations and a new
    //  visitor's. Each user gets items of their own (at most 2 of their 5 among the 5
    //  most popular, which the new visitor gets), from the version training finished.
    char out[700];
    snprintf (out, sizeof out, "%s/demo.out", s_dir);
    //  One preprocess worker: results are then applied in journal order, so the dense
    //  indices, and with them the seeded training, are the same every run. With two,
    //  the order (and a user's answers) varies with the workers' timing.
    const char *args[] = { "demo", "--dir", s_cdir, "--workers", "1", NULL };
    cr_assert_eq (harness_wait (harness_cli_start (out, args), 1150000), 0, "strata demo failed");
    FILE *f = fopen (out, "r");
    cr_assert_not_null (f);
    demo_block_t b[8], *cur = NULL;
    int nb = 0;
    unsigned long long trained = 0;
    char line[4096];
    while (fgets (line, sizeof line, f)) {
        const char *v = strstr (line, "\"version\":");
        if (line[0] == '{' && v)
            trained = strtoull (v + 10, NULL, 10);   // the final training status
        if (!strncmp (line, "# recommend ", 12) && nb < 8) {
            cur = &b[nb++];
            memset (cur, 0, sizeof *cur);
            cr_assert_eq (sscanf (line, "# recommend %63[^:]: model version %llu, %31[^,]", cur->user, &cur->version,
                                  cur->source),
                          3, "%s", line);
        }
        else if (!strncmp (line, "# ", 2))
            cur = NULL;   // another command's answer
        else if (cur && cur->n < 5 && sscanf (line, " %*d %31s", cur->items[cur->n]) == 1)
            cur->n++;
    }
    fclose (f);
    cr_assert_eq (nb, 4, "three users and a new visitor: %d blocks", nb);
    cr_assert_gt (trained, 1, "no training status in the demo's output");
    cr_expect_str_eq (b[3].source, "popular", "the new visitor gets %s", b[3].source);
    for (int i = 0; i < 3; i++) {
        cr_expect_str_eq (b[i].source, "model", "%s: %s", b[i].user, b[i].source);
        cr_expect_eq (b[i].version, trained, "%s: served version %llu, trained %llu", b[i].user, b[i].version,
                      trained);
        cr_assert_eq (b[i].n, 5, "%s: %d items", b[i].user, b[i].n);
        int popular = 0;
        for (int j = 0; j < 5; j++)
            for (int k = 0; k < b[3].n; k++)
                popular += !strcmp (b[i].items[j], b[3].items[k]);
        cr_expect_leq (popular, 2, "%s: %d of the 5 most popular items in its 5", b[i].user, popular);
    }
}
