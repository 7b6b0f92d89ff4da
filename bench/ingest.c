/*  bench/ingest: end-to-end durable ingest against the two ceilings of this machine.

    Measured in one run, each as the median of --runs repetitions:
      1. RocksDB ceiling: WriteBatch puts (1000 per batch, WAL on, no fsync) of
         event-sized records into a fresh database with Strata's store options.
      2. ZeroMQ ceiling: PUSH/PULL over TCP on 127.0.0.1 between two processes, with
         messages the size of one packed 1000-event batch.
      3. Strata: a producer (this process) sends N synthetic events through the broker
         (its own process) to 1 and then 2 preprocess workers (their own processes) and
         waits until every batch is applied in the knowledge store; events/s is N over
         that whole time. Run with the default journal fsync and with it off.
    The ratio printed is ingest events/s over the RocksDB ceiling's puts/s; the target
    is >= 0.5. Usage: ingest [--events N] [--runs R]
*/
#include <czmq.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cluster.h"
#include "store.h"
#include "strata.h"
#include "median.h"
#include "util.h"
#include "wire.h"

static int64_t s_events = 300000;
static int s_runs = 3;

static uint64_t s_rng = 0x9e3779b97f4a7c15ULL;
static uint64_t
s_rand (void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return s_rng;
}


static char *
s_tmpdir (void)
{
    char tmpl[] = "/tmp/strata-bench-XXXXXX";
    return strdup (mkdtemp (tmpl));
}

static void
s_rmtree (const char *dir)
{
    char cmd[600];
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system (cmd) != 0)
        fprintf (stderr, "could not remove %s\n", dir);
}

// ---------------------------------------------------------------- RocksDB ceiling

static double
s_rocksdb_ceiling (void)
{
    char *dir = s_tmpdir ();
    const char *cfs[] = { "default" };
    store_t *st = store_open (dir, cfs, 1);
    if (!st) {
        fprintf (stderr, "cannot open RocksDB in %s\n", dir);
        exit (1);
    }
    int64_t n = s_events;
    char value[48];
    memset (value, 'v', sizeof value);
    int64_t t0 = util_mono_ms ();
    for (int64_t i = 0; i < n; i += 1000) {
        rocksdb_writebatch_t *wb = rocksdb_writebatch_create ();
        for (int64_t k = i; k < i + 1000 && k < n; k++) {
            unsigned char key[20];
            util_put_be32 (key, (uint32_t) (s_rand () % 50000));
            util_put_be64 (key + 4, (uint64_t) k);
            util_put_be64 (key + 12, s_rand ());
            rocksdb_writebatch_put (wb, (const char *) key, sizeof key, value, sizeof value);
        }
        store_write (st, wb, false);
        rocksdb_writebatch_destroy (wb);
    }
    double secs = (double) (util_mono_ms () - t0) / 1000.0;
    store_destroy (&st);
    s_rmtree (dir);
    free (dir);
    return (double) n / secs;
}

// ---------------------------------------------------------------- ZeroMQ ceiling

static size_t
s_batch_bytes (void)
{
    //  The packed size of a typical 1000-event batch.
    Strata__V1__Event ev[1000], *evp[1000];
    char ids[1000][3][24];
    for (int i = 0; i < 1000; i++) {
        strata__v1__event__init (&ev[i]);
        snprintf (ids[i][0], 24, "e%012d", i);
        snprintf (ids[i][1], 24, "u%06d", (int) (s_rand () % 50000));
        snprintf (ids[i][2], 24, "i%06d", (int) (s_rand () % 20000));
        ev[i].event_id = ids[i][0];
        ev[i].user_id = ids[i][1];
        ev[i].item_id = ids[i][2];
        ev[i].type_name = "view";
        ev[i].timestamp_ms = 1700000000000 + i;
        evp[i] = &ev[i];
    }
    Strata__V1__EventBatch b = STRATA__V1__EVENT_BATCH__INIT;
    b.batch_id = "0123456789abcdef-1";
    b.n_events = 1000;
    b.events = evp;
    return strata__v1__event_batch__get_packed_size (&b);
}

static double
s_zmq_ceiling (size_t msg_size)
{
    int msgs = (int) (s_events / 1000) * 4;
    if (msgs < 200)
        msgs = 200;
    zsock_t *pull = zsock_new (ZMQ_PULL);
    int port = zsock_bind (pull, "tcp://127.0.0.1:!");
    //  The sender is a separate process (this program re-executed): a ZeroMQ context
    //  must not be used across fork.
    char ep[64], size[32], count[32];
    snprintf (ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    snprintf (size, sizeof size, "%zu", msg_size);
    snprintf (count, sizeof count, "%d", msgs);
    pid_t pid = fork ();
    if (pid == 0) {
        execl ("/proc/self/exe", "ingest", "--push", ep, size, count, (char *) NULL);
        _exit (127);
    }
    zframe_t *first = zframe_recv (pull);
    zframe_destroy (&first);
    int64_t t0 = util_mono_ms ();
    for (int i = 1; i < msgs; i++) {
        zframe_t *f = zframe_recv (pull);
        zframe_destroy (&f);
    }
    double secs = (double) (util_mono_ms () - t0) / 1000.0;
    waitpid (pid, NULL, 0);
    zsock_destroy (&pull);
    return (double) (msgs - 1) / secs;
}

// ---------------------------------------------------------------- Strata end to end

static pid_t
s_spawn (const char *prog, char *const argv[], const char *log)
{
    pid_t pid = fork ();
    if (pid == 0) {
        FILE *f = freopen (log, "a", stderr);
        (void) f;
        execv (prog, argv);
        _exit (127);
    }
    return pid;
}

static double
s_strata (int workers, bool sync)
{
    char *dir = s_tmpdir ();
    char broker[4096], worker[4096], log[700], eps[700], ddir[700], sync_arg[64];
    cluster_program ("strata-broker", broker, sizeof broker);
    cluster_program ("strata-worker", worker, sizeof worker);
    snprintf (log, sizeof log, "%s/bench.log", dir);
    snprintf (eps, sizeof eps, "--endpoints-file=%s/eps.json", dir);
    snprintf (ddir, sizeof ddir, "--dir=%s/kb", dir);
    snprintf (sync_arg, sizeof sync_arg, "--journal-sync=%s", sync ? "true" : "false");
    char *bargv[] = { broker, ddir, eps, "--ingest=tcp://127.0.0.1:!", "--workers=tcp://127.0.0.1:!",
                      "--api=tcp://127.0.0.1:!", sync_arg, "--log-level=warn", NULL };
    pid_t bpid = s_spawn (broker, bargv, log);
    char path[700];
    snprintf (path, sizeof path, "%s/eps.json", dir);
    char ingest[256] = "", wep[256] = "";
    for (int i = 0; i < 500 && !*ingest; i++) {
        FILE *f = fopen (path, "r");
        if (f) {
            char text[2048];
            size_t n = fread (text, 1, sizeof text - 1, f);
            text[n] = 0;
            fclose (f);
            char *a = strstr (text, "\"ingest\": \"");
            char *w = strstr (text, "\"workers\": \"");
            if (a && w) {
                sscanf (a + 11, "%255[^\"]", ingest);
                sscanf (w + 12, "%255[^\"]", wep);
            }
        }
        if (!*ingest)
            zclock_sleep (10);
    }
    if (!*ingest) {
        fprintf (stderr, "broker did not start (see %s)\n", log);
        exit (1);
    }
    pid_t wpids[8];
    char wbroker[300];
    snprintf (wbroker, sizeof wbroker, "--broker=%s", wep);
    char *wargv[] = { worker, "--role=preprocess", wbroker, "--log-level=warn", NULL };
    for (int i = 0; i < workers; i++)
        wpids[i] = s_spawn (worker, wargv, log);
    zclock_sleep (300);   // let the workers register

    strata_producer_opts_t opts = { .batch_records = 1000, .max_inflight = 16 };
    strata_producer_t *p = strata_producer_new (ingest, &opts);
    char id[32], user[16], item[16];
    int64_t t0 = util_mono_ms ();
    for (int64_t i = 0; i < s_events; i++) {
        snprintf (id, sizeof id, "e%012lld", (long long) i);
        snprintf (user, sizeof user, "u%06d", (int) (s_rand () % 50000));
        snprintf (item, sizeof item, "i%06d", (int) (s_rand () % 20000));
        strata_event_t e = { .event_id = id, .user_id = user, .item_id = item, .type = "view",
                             .timestamp_ms = 1700000000000 + i };
        strata_producer_add_event (p, &e);
    }
    strata_summary_t sum;
    int rc = strata_producer_finish (p, 600000, &sum);
    double secs = (double) (util_mono_ms () - t0) / 1000.0;
    strata_producer_destroy (&p);
    if (rc != STRATA_OK || sum.accepted != (uint64_t) s_events)
        fprintf (stderr, "warning: run ended with %s, %llu of %lld accepted\n", strata_strerror (rc),
                 (unsigned long long) sum.accepted, (long long) s_events);
    for (int i = 0; i < workers; i++)
        kill (wpids[i], SIGTERM);
    kill (bpid, SIGTERM);
    for (int i = 0; i < workers; i++)
        waitpid (wpids[i], NULL, 0);
    waitpid (bpid, NULL, 0);
    s_rmtree (dir);
    free (dir);
    return (double) s_events / secs;
}

//  The PUSH side of the ZeroMQ ceiling, run as its own process.
static int
s_push (const char *endpoint, size_t size, int count)
{
    zsock_t *push = zsock_new (ZMQ_PUSH);
    if (!push || zsock_connect (push, "%s", endpoint) < 0)
        return 1;
    char *buf = calloc (1, size);
    for (int i = 0; i < count; i++) {
        zframe_t *f = zframe_new (buf, size);
        zframe_send (&f, push, 0);
    }
    free (buf);
    zsock_set_linger (push, 10000);
    zsock_destroy (&push);
    return 0;
}

int
main (int argc, char **argv)
{
    if (argc == 5 && !strcmp (argv[1], "--push"))
        return s_push (argv[2], (size_t) atoll (argv[3]), atoi (argv[4]));
    for (int i = 1; i < argc; i++) {
        if (!strcmp (argv[i], "--events") && i + 1 < argc)
            s_events = atoll (argv[++i]);
        else if (!strcmp (argv[i], "--runs") && i + 1 < argc)
            s_runs = atoi (argv[++i]);
        else {
            fprintf (stderr, "usage: ingest [--events N] [--runs R]\n");
            return 2;
        }
    }
    if (s_runs < 1 || s_runs > 15 || s_events < 1000) {
        fprintf (stderr, "ingest: --runs 1..15, --events >= 1000\n");
        return 2;
    }
    zsys_init ();
    zsys_set_logstream (NULL);
    size_t msg_size = s_batch_bytes ();
    double rdb[15], zmq[15], e1[15], e2[15], e1s[15], e2s[15];
    for (int r = 0; r < s_runs; r++) {
        rdb[r] = s_rocksdb_ceiling ();
        zmq[r] = s_zmq_ceiling (msg_size);
        e1s[r] = s_strata (1, true);
        e2s[r] = s_strata (2, true);
        e1[r] = s_strata (1, false);
        e2[r] = s_strata (2, false);
        fprintf (stderr, "run %d: rocksdb %.0f puts/s, zmq %.0f msg/s, strata 1w %.0f / 2w %.0f ev/s (fsync), "
                 "1w %.0f / 2w %.0f ev/s (no fsync)\n", r + 1, rdb[r], zmq[r], e1s[r], e2s[r], e1[r], e2[r]);
    }
    double R = bench_median (rdb, s_runs), Z = bench_median (zmq, s_runs);
    printf ("ingest benchmark: %lld events per run, median of %d runs, %ld cores\n", (long long) s_events, s_runs,
            sysconf (_SC_NPROCESSORS_ONLN));
    printf ("  %-52s %12.0f puts/s\n", "reference: RocksDB WriteBatch put ceiling", R);
    printf ("  %-52s %12.0f msg/s (%zu-byte messages = %.0f events/s)\n", "reference: ZeroMQ PUSH/PULL over TCP", Z,
            msg_size, Z * 1000);
    struct {
        const char *name;
        double *v;
    } rows[] = {
        { "strata ingest, 1 worker, journal fsync (default)", e1s },
        { "strata ingest, 2 workers, journal fsync (default)", e2s },
        { "strata ingest, 1 worker, no journal fsync", e1 },
        { "strata ingest, 2 workers, no journal fsync", e2 },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        double m = bench_median (rows[i].v, s_runs);
        printf ("  %-52s %12.0f events/s  ratio to RocksDB ceiling %.2f\n", rows[i].name, m, m / R);
    }
    return 0;
}
