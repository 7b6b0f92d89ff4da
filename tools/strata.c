/*  strata: the command-line client. Every command talks to a cluster only through the
    public protocol (protobuf over ZeroMQ), like any other client would.

      strata up       start a local cluster (broker + workers) in the foreground, or --detach
      strata down     stop a detached cluster
      strata import   send files of events or items
      strata stats    print the broker's counters as JSON
      strata rejects  print the stored rejects with their reasons
      strata gen      write a synthetic catalogue and event stream
      strata demo     up + gen + import + stats, the quickest look at a running cluster
*/
#define LOG_MODULE "cli"
#include <czmq.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cluster.h"
#include "config.h"
#include "endpoints.h"
#include "eval.h"
#include "gen.h"
#include "importer.h"
#include "log.h"
#include "serve.h"
#include "strata.h"
#include "train.h"
#include "util.h"

//  Options every client command shares, first in each table.
#define CLIENT_OPTS(T)                                                                                   \
    { "broker", CONFIG_STRING, offsetof (T, broker), "", 0, -1, "broker endpoint (default: local)" },   \
    { "dir", CONFIG_STRING, offsetof (T, dir), "", 0, -1, "find the cluster started by strata up --dir" }, \
    { "timeout-ms", CONFIG_INT, offsetof (T, timeout_ms), "5000", 100, 3600000, "how long to wait for answers" }

static int
s_parse (const config_key_t *keys, void *cfg, int argc, char **argv, int *argi, const char *usage)
{
    char err[256];
    int rc = config_parse (keys, cfg, argc, argv, argi, err, sizeof err);
    if (rc == CONFIG_HELP) {
        config_help (keys, stdout, usage);
        return -1;   // help shown: exit 0
    }
    if (rc < 0) {
        fprintf (stderr, "strata: %s\n", err);
        return 2;
    }
    return 0;
}

// ---------------------------------------------------------------- import

typedef struct {
    char *broker, *dir;
    int64_t timeout_ms;
    char *format;
    bool items;
    char *prefix;
    bool latin1;
    int64_t batch;
    int64_t inflight;
    bool quiet;
} import_cfg_t;

static const config_key_t s_import_keys[] = {
    CLIENT_OPTS (import_cfg_t),
    { "format", CONFIG_STRING, offsetof (import_cfg_t, format), "auto", 0, -1,
      "auto, jsonl, csv, s3rec, s3rec-attrs, movielens, homedepot" },
    { "items", CONFIG_BOOL, offsetof (import_cfg_t, items), "false", 0, -1, "jsonl/csv files hold catalogue items" },
    { "prefix", CONFIG_STRING, offsetof (import_cfg_t, prefix), "", 0, -1, "prepend to event, user and item ids (keeps datasets apart)" },
    { "latin1", CONFIG_BOOL, offsetof (import_cfg_t, latin1), "false", 0, -1, "input is ISO-8859-1" },
    { "batch", CONFIG_INT, offsetof (import_cfg_t, batch), "1000", 1, 100000, "records per batch" },
    { "inflight", CONFIG_INT, offsetof (import_cfg_t, inflight), "16", 1, 1024, "unacknowledged batches at once" },
    { "quiet", CONFIG_BOOL, offsetof (import_cfg_t, quiet), "false", 0, -1, "no progress on stderr" },
    CONFIG_END,
};

typedef struct {
    strata_producer_t *producer;
    bool quiet;
    int64_t started, last_report;
    uint64_t records;
} import_state_t;

static void
s_progress (import_state_t *st, bool force)
{
    if (st->quiet)
        return;
    int64_t now = util_mono_ms ();
    if (!force && now - st->last_report < 1000)
        return;
    st->last_report = now;
    strata_summary_t s;
    strata_producer_summary (st->producer, &s);
    double secs = (double) (now - st->started) / 1000.0;
    fprintf (stderr, "\rstrata import: %llu records read, %llu sent in %llu batches (%llu acked), %.0f rec/s   ",
             (unsigned long long) st->records, (unsigned long long) s.sent, (unsigned long long) s.batches,
             (unsigned long long) s.acked, secs > 0 ? (double) s.sent / secs : 0.0);
}

static int
s_sink_event (void *arg, const strata_event_t *e)
{
    import_state_t *st = arg;
    st->records++;
    s_progress (st, false);
    return strata_producer_add_event (st->producer, e);
}

static int
s_sink_item (void *arg, const strata_item_t *it)
{
    import_state_t *st = arg;
    st->records++;
    s_progress (st, false);
    return strata_producer_add_item (st->producer, it);
}

static int
s_sink_raw (void *arg, const char *source, uint64_t line, const char *text, const char *reason)
{
    import_state_t *st = arg;
    st->records++;
    return strata_producer_add_raw (st->producer, source, line, text, reason);
}

static int
s_import_one (import_state_t *st, const import_opts_t *io)
{
    import_sink_t sink = { s_sink_event, s_sink_item, s_sink_raw, st };
    import_counts_t counts;
    char err[512];
    if (import_file (io, &sink, &counts, err, sizeof err) < 0) {
        fprintf (stderr, "\nstrata import: %s: %s (%s)\n", io->path, err, strata_producer_error (st->producer));
        return 1;
    }
    return 0;
}

static int
s_cmd_import (int argc, char **argv)
{
    import_cfg_t cfg = { 0 };
    int argi = 0;
    int rc = s_parse (s_import_keys, &cfg, argc, argv, &argi, "usage: strata import [options] FILE...");
    if (rc)
        goto out;
    if (argi >= argc) {
        fprintf (stderr, "strata import: no file given (see --help)\n");
        rc = 2;
        goto out;
    }
    int format = import_format_parse (cfg.format);
    if (format < 0) {
        fprintf (stderr, "strata import: unknown format '%s'\n", cfg.format);
        rc = 2;
        goto out;
    }
    char err[512];
    cluster_endpoints_t eps;
    if (cluster_resolve (cfg.broker, cfg.dir, &eps, err, sizeof err) < 0) {
        fprintf (stderr, "strata import: %s\n", err);
        rc = 1;
        goto out;
    }
    strata_producer_opts_t popts = { .batch_records = (size_t) cfg.batch, .max_inflight = (size_t) cfg.inflight };
    import_state_t st = { .producer = strata_producer_new (eps.ingest, &popts), .quiet = cfg.quiet };
    st.started = st.last_report = util_mono_ms ();
    if (!st.producer) {
        fprintf (stderr, "strata import: cannot connect to %s\n", eps.ingest);
        rc = 1;
        goto out;
    }
    for (int i = argi; i < argc && rc == 0; i++) {
        import_opts_t io = { .path = argv[i], .format = (import_format_t) format, .items = cfg.items,
                             .prefix = cfg.prefix, .latin1 = cfg.latin1 };
        rc = s_import_one (&st, &io);
    }
    strata_summary_t sum = { 0 };
    if (rc == 0) {
        int r = strata_producer_finish (st.producer, (int) (cfg.timeout_ms > 600000 ? cfg.timeout_ms : 600000), &sum);
        s_progress (&st, true);
        if (!cfg.quiet)
            fputc ('\n', stderr);
        if (r != STRATA_OK) {
            fprintf (stderr, "strata import: %s: %s\n", strata_strerror (r), strata_producer_error (st.producer));
            rc = 1;
        }
        double secs = (double) (util_mono_ms () - st.started) / 1000.0;
        printf ("{\"sent\": %llu, \"accepted\": %llu, \"duplicates\": %llu, \"rejected\": %llu, \"batches\": %llu, "
                "\"resent\": %llu, \"seconds\": %.3f}\n",
                (unsigned long long) sum.sent, (unsigned long long) sum.accepted,
                (unsigned long long) sum.duplicates, (unsigned long long) sum.rejected,
                (unsigned long long) sum.batches, (unsigned long long) sum.resent, secs);
    }
    strata_producer_destroy (&st.producer);
out:
    config_free (s_import_keys, &cfg);
    return rc < 0 ? 0 : rc;
}

// ---------------------------------------------------------------- stats

typedef struct {
    char *broker, *dir;
    int64_t timeout_ms;
} client_cfg_t;

static const config_key_t s_client_keys[] = { CLIENT_OPTS (client_cfg_t), CONFIG_END };

static int
s_cmd_stats (int argc, char **argv)
{
    client_cfg_t cfg = { 0 };
    int rc = s_parse (s_client_keys, &cfg, argc, argv, NULL, "usage: strata stats [options]");
    if (rc) {
        config_free (s_client_keys, &cfg);
        return rc < 0 ? 0 : rc;
    }
    char err[512];
    cluster_endpoints_t eps;
    char *json = NULL;
    if (cluster_resolve (cfg.broker, cfg.dir, &eps, err, sizeof err) == 0)
        json = strata_stats_json (eps.api, (int) cfg.timeout_ms, err, sizeof err);
    if (json) {
        printf ("%s\n", json);
        free (json);
    }
    else {
        fprintf (stderr, "strata stats: %s\n", err);
        rc = 1;
    }
    config_free (s_client_keys, &cfg);
    return rc;
}

typedef struct {
    char *broker, *dir;
    int64_t timeout_ms;
    int64_t limit;
} rejects_cfg_t;

static const config_key_t s_rejects_keys[] = {
    CLIENT_OPTS (rejects_cfg_t),
    { "limit", CONFIG_INT, offsetof (rejects_cfg_t, limit), "20", 1, 10000000, "print at most this many" },
    CONFIG_END,
};

//  Prints stored rejects (dead letters), oldest first, one JSON object per line.
static int
s_cmd_rejects (int argc, char **argv)
{
    rejects_cfg_t cfg = { 0 };
    int rc = s_parse (s_rejects_keys, &cfg, argc, argv, NULL, "usage: strata rejects [--limit N] [options]");
    if (rc) {
        config_free (s_rejects_keys, &cfg);
        return rc < 0 ? 0 : rc;
    }
    char err[512];
    cluster_endpoints_t eps;
    char *text = NULL;
    if (cluster_resolve (cfg.broker, cfg.dir, &eps, err, sizeof err) == 0)
        text = strata_rejects_json (eps.api, (size_t) cfg.limit, (int) cfg.timeout_ms, err, sizeof err);
    json_t *list = text ? json_loads (text, 0, NULL) : NULL;
    if (!list) {
        fprintf (stderr, "strata rejects: %s\n", text ? "bad reply" : err);
        rc = 1;
    }
    size_t i;
    json_t *r;
    json_array_foreach (list, i, r) {
        char *line = json_dumps (r, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (line)
            printf ("%s\n", line);
        free (line);
    }
    json_decref (list);
    free (text);
    config_free (s_rejects_keys, &cfg);
    return rc;
}

// ---------------------------------------------------------------- up / down

typedef struct {
    char *dir;
    int64_t workers;
    int64_t train_workers;
    int64_t rankers;
    int64_t port;
    bool detach;
    bool journal_sync;
    int64_t batch_nice;
    char *log_level;
} up_cfg_t;

static const config_key_t s_up_keys[] = {
    { "dir", CONFIG_STRING, offsetof (up_cfg_t, dir), "strata-data", 0, -1, "data and log directory" },
    { "workers", CONFIG_INT, offsetof (up_cfg_t, workers), "2", 0, 256, "preprocess workers" },
    { "train-workers", CONFIG_INT, offsetof (up_cfg_t, train_workers), "1", 0, 256,
      "train workers (0: no trainer either)" },
    { "rankers", CONFIG_INT, offsetof (up_cfg_t, rankers), "1", 0, 256,
      "rank workers serving recommend and similar (they need the trainer)" },
    { "port", CONFIG_INT, offsetof (up_cfg_t, port), STRATA_PORT_BASE, 0, 65531,
      "first of five ports (ingest, workers, api, trainer workers, trainer api); 0 picks free ones" },
    { "detach", CONFIG_BOOL, offsetof (up_cfg_t, detach), "false", 0, -1, "run in the background" },
    { "journal-sync", CONFIG_BOOL, offsetof (up_cfg_t, journal_sync), "true", 0, -1, "fsync the journal before acks" },
    { "batch-nice", CONFIG_INT, offsetof (up_cfg_t, batch_nice), "19", 0, 19,
      "nice value of the batch processes (preprocess workers, trainer, train workers), each in a session of its "
      "own so that it also weighs against serving's (0: as the broker and rank workers)" },
    { "log-level", CONFIG_STRING, offsetof (up_cfg_t, log_level), "info", 0, -1, "log level of every process" },
    CONFIG_END,
};

//  Starts the cluster in a detached child; returns once it is ready (0) or failed (-1).
static int
s_detach (const cluster_opts_t *opts)
{
    int fds[2];
    if (pipe (fds) < 0)
        return -1;
    pid_t pid = fork ();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close (fds[0]);
        setsid ();
        if (fork () != 0)
            _exit (0);   // the grandchild is reparented to init
        char log[4200];
        snprintf (log, sizeof log, "%s/logs/supervisor.log", opts->dir);
        zsys_dir_create ("%s/logs", opts->dir);
        //  No standard stream may stay on the caller's terminal or pipe:
        //  a shell reading `strata up --detach | tail` waits for its end.
        if (!freopen (log, "a", stderr) || dup2 (STDERR_FILENO, STDOUT_FILENO) < 0
            || !freopen ("/dev/null", "r", stdin))
            _exit (1);
        zsys_init ();
        _exit (cluster_up (opts, fds[1]) == 0 ? 0 : 1);
    }
    close (fds[1]);
    waitpid (pid, NULL, 0);
    char c;
    ssize_t n = read (fds[0], &c, 1);
    close (fds[0]);
    return n == 1 ? 0 : -1;
}

static int
s_cmd_up (int argc, char **argv)
{
    up_cfg_t cfg = { 0 };
    int rc = s_parse (s_up_keys, &cfg, argc, argv, NULL, "usage: strata up [--dir DIR] [--workers N] [--detach]");
    if (rc) {
        config_free (s_up_keys, &cfg);
        return rc < 0 ? 0 : rc;
    }
    cluster_opts_t opts = { cfg.dir,          (int) cfg.workers, (int) cfg.train_workers, (int) cfg.port,
                            cfg.journal_sync, cfg.log_level,     (int) cfg.rankers,       (int) cfg.batch_nice };
    if (cfg.detach) {
        rc = s_detach (&opts) == 0 ? 0 : 1;
        if (rc == 0) {
            cluster_endpoints_t eps;
            char err[256];
            cluster_resolve (NULL, cfg.dir, &eps, err, sizeof err);
            printf ("{\"dir\": \"%s\", \"ingest\": \"%s\", \"workers\": \"%s\", \"api\": \"%s\", \"trainer\": \"%s\"}\n",
                    cfg.dir, eps.ingest, eps.workers, eps.api, cfg.train_workers ? eps.trainer : "");
        }
        else
            fprintf (stderr, "strata up: cluster did not start; see %s/logs\n", cfg.dir);
    }
    else
        rc = cluster_up (&opts, -1) == 0 ? 0 : 1;
    config_free (s_up_keys, &cfg);
    return rc;
}

typedef struct {
    char *dir;
    int64_t timeout_ms;
} down_cfg_t;

static const config_key_t s_down_keys[] = {
    { "dir", CONFIG_STRING, offsetof (down_cfg_t, dir), "strata-data", 0, -1, "directory of the cluster" },
    { "timeout-ms", CONFIG_INT, offsetof (down_cfg_t, timeout_ms), "30000", 100, 600000, "wait this long" },
    CONFIG_END,
};

static int
s_cmd_down (int argc, char **argv)
{
    down_cfg_t cfg = { 0 };
    int rc = s_parse (s_down_keys, &cfg, argc, argv, NULL, "usage: strata down --dir DIR");
    if (rc == 0) {
        char err[512];
        if (cluster_down (cfg.dir, (int) cfg.timeout_ms, err, sizeof err) < 0) {
            fprintf (stderr, "strata down: %s\n", err);
            rc = 1;
        }
    }
    config_free (s_down_keys, &cfg);
    return rc < 0 ? 0 : rc;
}

// ---------------------------------------------------------------- gen

typedef struct {
    char *out, *format;
    int64_t items, users, events, malformed, seed;
} gen_cfg_t;

static const config_key_t s_gen_keys[] = {
    { "out", CONFIG_STRING, offsetof (gen_cfg_t, out), "strata-gen", 0, -1, "output directory" },
    { "format", CONFIG_STRING, offsetof (gen_cfg_t, format), "jsonl", 0, -1, "jsonl or csv" },
    { "items", CONFIG_INT, offsetof (gen_cfg_t, items), "2000", 1, 100000000, "catalogue size" },
    { "users", CONFIG_INT, offsetof (gen_cfg_t, users), "500", 1, 100000000, "users" },
    { "events", CONFIG_INT, offsetof (gen_cfg_t, events), "20000", 1, 2000000000, "behaviour events" },
    { "malformed", CONFIG_INT, offsetof (gen_cfg_t, malformed), "0", 0, 1000000, "malformed lines per file" },
    { "seed", CONFIG_INT, offsetof (gen_cfg_t, seed), "1", 0, -1, "random seed" },
    CONFIG_END,
};

static int
s_cmd_gen (int argc, char **argv)
{
    gen_cfg_t cfg = { 0 };
    int rc = s_parse (s_gen_keys, &cfg, argc, argv, NULL, "usage: strata gen [--out DIR] [options]");
    if (rc == 0) {
        gen_opts_t o = { cfg.out, cfg.format, cfg.items, cfg.users, cfg.events, cfg.malformed, (uint64_t) cfg.seed, 0 };
        gen_summary_t s;
        char err[256];
        if (gen_run (&o, &s, err, sizeof err) < 0) {
            fprintf (stderr, "strata gen: %s\n", err);
            rc = 1;
        }
        else
            printf ("{\"dir\": \"%s\", \"items\": %lld, \"events\": %lld, \"users\": %lld, \"purchases\": %lld, "
                    "\"malformed\": %lld}\n",
                    cfg.out, (long long) s.items, (long long) s.events, (long long) s.users,
                    (long long) s.purchases, (long long) s.malformed);
    }
    config_free (s_gen_keys, &cfg);
    return rc < 0 ? 0 : rc;
}

// ---------------------------------------------------------------- main

static void
s_usage (FILE *out)
{
    fprintf (out, "usage: strata COMMAND [options]   (strata COMMAND --help for its options)\n\n"
                  "  up       start a local cluster (broker + workers) on 127.0.0.1\n"
                  "  down     stop a cluster started with up --detach\n"
                  "  import   send events or items from files (jsonl, csv, s3rec, movielens, homedepot)\n"
                  "  stats    print the cluster's counters as JSON\n"
                  "  rejects  print stored rejects (records refused, with the reason) as JSON lines\n"
                  "  eval     offline evaluation: leave-one-out, full catalogue, tuned baselines\n"
                  "  train    train the model on the cluster's data (--wait follows the run)\n"
                  "  recommend  recommendations for a user (--user U) or many (--users FILE)\n"
                  "  similar  items like an item (--item I) or many (--items FILE)\n"
                  "  search   items matching a query (\"QUERY\" [--user U]) or many (--queries FILE)\n"
                  "  gen      write a synthetic catalogue and event stream\n"
                  "  demo     start a cluster, import synthetic data and show what it holds\n");
}

// ---------------------------------------------------------------- demo

typedef struct {
    char *dir;
    int64_t workers, train_workers, epochs, events, items, users;
    bool keep;
} demo_cfg_t;

static const config_key_t s_demo_keys[] = {
    { "dir", CONFIG_STRING, offsetof (demo_cfg_t, dir), "strata-demo", 0, -1, "data directory" },
    { "workers", CONFIG_INT, offsetof (demo_cfg_t, workers), "2", 1, 64, "preprocess workers" },
    { "events", CONFIG_INT, offsetof (demo_cfg_t, events), "50000", 1, 100000000, "synthetic events" },
    { "items", CONFIG_INT, offsetof (demo_cfg_t, items), "2000", 1, 10000000, "synthetic items" },
    { "users", CONFIG_INT, offsetof (demo_cfg_t, users), "1000", 1, 10000000, "synthetic users" },
    { "train-workers", CONFIG_INT, offsetof (demo_cfg_t, train_workers), "1", 1, 64, "train workers" },
    { "epochs", CONFIG_INT, offsetof (demo_cfg_t, epochs), "20", 1, 1000, "training epochs" },
    { "keep", CONFIG_BOOL, offsetof (demo_cfg_t, keep), "false", 0, -1, "leave the cluster running afterwards" },
    CONFIG_END,
};

//  The first few distinct users of an events file.
static int
s_demo_users (const char *events, char users[][64], int max)
{
    FILE *f = fopen (events, "r");
    int n = 0;
    char line[4096];
    while (f && n < max && fgets (line, sizeof line, f)) {
        json_t *e = json_loads (line, 0, NULL);
        const char *u = json_string_value (json_object_get (e, "user_id"));
        bool seen = !u;
        for (int i = 0; i < n && !seen; i++)
            seen = !strcmp (users[i], u);
        if (!seen)
            snprintf (users[n++], 64, "%s", u);
        json_decref (e);
    }
    if (f)
        fclose (f);
    return n;
}

//  Step 7: recommendations for a few real users and items like one of them, once a
//  rank worker serves the trained model.
static int
s_demo_serve (const char *dir, const char *events)
{
    char users[3][64];
    int n = s_demo_users (events, users, 3);
    if (n == 0)
        return 1;
    fprintf (stderr, "== 7. recommendations from the rank worker (strata recommend --dir %s --user %s)\n", dir,
             users[0]);
    fflush (stdout);
    //  The rank worker fetches the newest version within a second of its publication:
    //  the demo shows the one training just finished.
    cluster_endpoints_t eps;
    char err[256] = "";
    int ok = cluster_resolve (NULL, dir, &eps, err, sizeof err) == 0 ? -1 : -2;
    uint64_t trained = 0;
    char *status = ok == -1 ? train_status_json (eps.trainer, 5000, err, sizeof err) : NULL;
    json_t *st = status ? json_loads (status, 0, NULL) : NULL;
    trained = (uint64_t) json_integer_value (json_object_get (st, "version"));
    json_decref (st);
    free (status);
    strata_client_t *client = ok == -1 ? strata_client_new (eps.api, NULL) : NULL;
    for (int64_t until = util_mono_ms () + 30000; client && ok == -1 && util_mono_ms () < until;) {
        strata_recommend_t q = { .user_id = users[0], .k = 1 };
        strata_reply_t *r = NULL;
        if (strata_recommend (client, &q, 5000, &r) != STRATA_OK)
            snprintf (err, sizeof err, "%s", strata_client_error (client));
        if (r && (r->model_version >= trained || util_mono_ms () + 500 >= until))
            ok = 0;   // the trained version (or, at the deadline, the version served)
        strata_reply_destroy (&r);
        if (ok)
            zclock_sleep (200);
    }
    strata_client_destroy (&client);
    if (ok != 0) {
        fprintf (stderr, "strata demo: no rank worker answered (%s); see %s/logs\n", err, dir);
        return 1;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        char *args[] = { "recommend", "--dir", (char *) dir, "--user", users[i], "-k", "5", NULL };
        rc |= recommend_main (7, args);
    }
    char *unknown[] = { "recommend", "--dir", (char *) dir, "--user", "a-new-visitor", "-k", "5", NULL };
    rc |= recommend_main (7, unknown);
    fprintf (stderr, "== 8. items like one a user touched (strata similar --dir %s --item ...)\n", dir);
    char item[64] = "";
    FILE *f = fopen (events, "r");
    char line[4096];
    while (f && !*item && fgets (line, sizeof line, f)) {
        json_t *e = json_loads (line, 0, NULL);
        const char *it = json_string_value (json_object_get (e, "item_id"));
        if (it && *it)
            snprintf (item, sizeof item, "%s", it);
        json_decref (e);
    }
    if (f)
        fclose (f);
    char *sargs[] = { "similar", "--dir", (char *) dir, "--item", item, "-k", "5", NULL };
    rc |= similar_main (7, sargs);
    //  A query from the catalogue's words: the last two words of the first title.
    char query[128] = "", items_path[4200];
    snprintf (items_path, sizeof items_path, "%s/synthetic/items.jsonl", dir);
    f = fopen (items_path, "r");
    if (f && fgets (line, sizeof line, f)) {
        json_t *it = json_loads (line, 0, NULL);
        const char *title = json_string_value (json_object_get (it, "title"));
        const char *cut = title ? strrchr (title, ' ') : NULL;
        while (cut && cut > title && cut[-1] != ' ')
            cut--;
        const char *prev = cut && cut > title ? cut - 1 : NULL;
        while (prev && prev > title && prev[-1] != ' ')
            prev--;
        snprintf (query, sizeof query, "%s", prev ? prev : title ? title : "");
        json_decref (it);
    }
    if (f)
        fclose (f);
    fprintf (stderr, "== 9. search (strata search --dir %s \"%s\", then for user %s)\n", dir, query, users[0]);
    fflush (stdout);
    char *q1[] = { "search", "--dir", (char *) dir, query, "-k", "5", NULL };
    rc |= search_main (6, q1);
    char *q2[] = { "search", "--dir", (char *) dir, query, "--user", users[0], "-k", "5", NULL };
    rc |= search_main (8, q2);
    fflush (stdout);
    return rc ? 1 : 0;
}

static int
s_cmd_demo (int argc, char **argv)
{
    demo_cfg_t cfg = { 0 };
    int rc = s_parse (s_demo_keys, &cfg, argc, argv, NULL, "usage: strata demo [--dir DIR] [options]");
    if (rc) {
        config_free (s_demo_keys, &cfg);
        return rc < 0 ? 0 : rc;
    }
    char gendir[4200], err[512];
    snprintf (gendir, sizeof gendir, "%s/synthetic", cfg.dir);
    fprintf (stderr, "== 1. synthetic shop data (%lld items, %lld users, %lld events, a few malformed lines)\n",
             (long long) cfg.items, (long long) cfg.users, (long long) cfg.events);
    gen_opts_t go = { gendir, "jsonl", cfg.items, cfg.users, cfg.events, 5, 42, 0 };
    gen_summary_t gs;
    if (gen_run (&go, &gs, err, sizeof err) < 0) {
        fprintf (stderr, "strata demo: %s\n", err);
        config_free (s_demo_keys, &cfg);
        return 1;
    }
    fprintf (stderr, "== 2. local cluster: broker + %lld preprocess workers, trainer + %lld train workers on 127.0.0.1\n",
             (long long) cfg.workers, (long long) cfg.train_workers);
    cluster_opts_t co = { cfg.dir, (int) cfg.workers, (int) cfg.train_workers, 0, true, "info", 1, 19 };
    if (s_detach (&co) < 0) {
        fprintf (stderr, "strata demo: cluster did not start; see %s/logs\n", cfg.dir);
        config_free (s_demo_keys, &cfg);
        return 1;
    }
    cluster_endpoints_t eps;
    cluster_resolve (NULL, cfg.dir, &eps, err, sizeof err);
    fprintf (stderr, "== 3. import catalogue and behaviour\n");
    import_state_t st = { .producer = strata_producer_new (eps.ingest, NULL) };
    st.started = st.last_report = util_mono_ms ();
    char items[4300], events[4300];
    snprintf (items, sizeof items, "%s/items.jsonl", gendir);
    snprintf (events, sizeof events, "%s/events.jsonl", gendir);
    import_opts_t io_items = { .path = items, .format = IMPORT_JSONL, .items = true };
    import_opts_t io_events = { .path = events, .format = IMPORT_JSONL };
    strata_summary_t sum = { 0 };
    rc = !st.producer || s_import_one (&st, &io_items) || s_import_one (&st, &io_events)
      || strata_producer_finish (st.producer, 600000, &sum) != STRATA_OK;
    s_progress (&st, true);
    fputc ('\n', stderr);
    strata_producer_destroy (&st.producer);
    if (!rc) {
        printf ("import: {\"sent\": %llu, \"accepted\": %llu, \"duplicates\": %llu, \"rejected\": %llu}\n",
                (unsigned long long) sum.sent, (unsigned long long) sum.accepted,
                (unsigned long long) sum.duplicates, (unsigned long long) sum.rejected);
        fprintf (stderr, "== 4. what the knowledge store holds (strata stats --dir %s)\n", cfg.dir);
        char *json = strata_stats_json (eps.api, 5000, err, sizeof err);
        if (json) {
            printf ("%s\n", json);
            free (json);
        }
        else
            rc = 1;
        fprintf (stderr, "== 5. the records it refused, with reasons (strata rejects --dir %s)\n", cfg.dir);
        json = strata_rejects_json (eps.api, 5, 5000, err, sizeof err);
        json_t *list = json ? json_loads (json, 0, NULL) : NULL;
        size_t i;
        json_t *r;
        json_array_foreach (list, i, r) {
            printf ("  %-28s %s\n", json_string_value (json_object_get (r, "reason")),
                    json_string_value (json_object_get (r, "text")));
        }
        json_decref (list);
        free (json);
        fprintf (stderr, "== 6. train the model on it (strata train --dir %s --epochs %lld --wait)\n", cfg.dir,
                 (long long) cfg.epochs);
        fflush (stdout);
        char epochs[24];
        snprintf (epochs, sizeof epochs, "%lld", (long long) cfg.epochs);
        char *targs[] = { "train", "--dir", cfg.dir, "--epochs", epochs, "--wait", NULL };
        if (train_main (6, targs) != 0)
            rc = 1;
        else
            rc = s_demo_serve (cfg.dir, events);
    }
    if (cfg.keep)
        fprintf (stderr, "== cluster left running; stop it with: strata down --dir %s\n", cfg.dir);
    else if (cluster_down (cfg.dir, 30000, err, sizeof err) < 0) {
        fprintf (stderr, "strata demo: %s\n", err);
        rc = 1;
    }
    config_free (s_demo_keys, &cfg);
    return rc ? 1 : 0;
}

int
main (int argc, char **argv)
{
    log_set_process ("strata");
    if (argc < 2 || !strcmp (argv[1], "-h") || !strcmp (argv[1], "--help") || !strcmp (argv[1], "help")) {
        s_usage (stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    argc--;
    argv++;
    if (!strcmp (cmd, "import"))
        return s_cmd_import (argc, argv);
    if (!strcmp (cmd, "stats"))
        return s_cmd_stats (argc, argv);
    if (!strcmp (cmd, "eval"))
        return eval_main (argc, argv);
    if (!strcmp (cmd, "train"))
        return train_main (argc, argv);
    if (!strcmp (cmd, "recommend"))
        return recommend_main (argc, argv);
    if (!strcmp (cmd, "similar"))
        return similar_main (argc, argv);
    if (!strcmp (cmd, "search"))
        return search_main (argc, argv);
    if (!strcmp (cmd, "rejects"))
        return s_cmd_rejects (argc, argv);
    if (!strcmp (cmd, "up"))
        return s_cmd_up (argc, argv);
    if (!strcmp (cmd, "down"))
        return s_cmd_down (argc, argv);
    if (!strcmp (cmd, "gen"))
        return s_cmd_gen (argc, argv);
    if (!strcmp (cmd, "demo"))
        return s_cmd_demo (argc, argv);
    fprintf (stderr, "strata: unknown command '%s'\n\n", cmd);
    s_usage (stderr);
    return 2;
}
