/*  bench/train: training throughput of Strata's model against a PyTorch reference.

    Both train the same model (trainer/model.h; bench/train_torch.py mirrors it) on the
    same samples, the Amazon Beauty training sequences (every user's history without its
    last two events), with the same batch size, batching and optimiser, on the same
    number of threads. Samples are predicted positions; samples/s of each and the ratio
    are printed as medians of --runs runs of --epochs epochs. In the same run it measures
    OpenBLAS's sgemm peak on this machine and prints the GFLOP/s achieved by the model's
    matrix products beside it.

    Then the same model on the same data through the cluster: a broker holding Beauty,
    strata-trainer and 1 or 2 train workers over TCP, in sync and async mode, timed by
    the trainer (samples/s over the run's epochs, validation excluded), each against the
    PyTorch figure.

    Usage: train --data Beauty.txt [--epochs N] [--runs R] [--threads T] [--torch SCRIPT] [--no-cluster]
           [--rank-negatives N] [--rank-hard N]   (the ranking head's negatives; defaults as the trainer's)
                 [--no-cluster]
*/
#include <cblas.h>
#include <czmq.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cluster.h"
#include "dataset.h"
#include "model.h"
#include "step_session.h"
#include "median.h"
#include "util.h"


//  Reads S3-Rec lines ("user item item ...") into a dataset with dense item indices.
static dataset_t *
s_load (const char *path)
{
    FILE *f = fopen (path, "r");
    if (!f)
        return NULL;
    size_t cap = 1 << 18, n = 0;
    uint32_t *users = malloc (cap * sizeof *users), *items = malloc (cap * sizeof *items);
    uint32_t n_users = 0, n_items = 0;
    //  Item ids are small integers in these files; map them densely in order of appearance.
    uint32_t map_cap = 1 << 20;
    uint32_t *map = calloc (map_cap, sizeof *map);
    char line[1 << 16];
    while (fgets (line, sizeof line, f)) {
        char *save = NULL, *tok = strtok_r (line, " \t\r\n", &save);
        if (!tok)
            continue;
        uint32_t u = n_users++;
        while ((tok = strtok_r (NULL, " \t\r\n", &save))) {
            uint32_t raw = (uint32_t) strtoul (tok, NULL, 10);
            if (raw >= map_cap)
                continue;
            if (!map[raw])
                map[raw] = ++n_items;
            if (n == cap) {
                cap *= 2;
                users = realloc (users, cap * sizeof *users);
                items = realloc (items, cap * sizeof *items);
            }
            users[n] = u;
            items[n] = map[raw] - 1;
            n++;
        }
    }
    fclose (f);
    dataset_t *d = dataset_from_arrays (n_users, n_items, n, users, items, NULL, NULL);
    free (users);
    free (items);
    free (map);
    return d;
}

static double
s_sgemm_peak (void)
{
    int n = 1536;
    float *a = malloc ((size_t) n * n * sizeof *a), *b = malloc ((size_t) n * n * sizeof *b),
          *c = malloc ((size_t) n * n * sizeof *c);
    for (size_t i = 0; i < (size_t) n * n; i++)
        a[i] = b[i] = 0.5f;
    double best = 0;
    for (int r = 0; r < 5; r++) {
        int64_t t0 = util_mono_ms ();
        cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        double secs = (double) (util_mono_ms () - t0) / 1000;
        double g = 2.0 * n * n * n / (secs > 0 ? secs : 1e-3) / 1e9;
        best = g > best ? g : best;
    }
    free (a);
    free (b);
    free (c);
    return best;
}

// ---------------------------------------------------------------- through the cluster

static pid_t
s_spawn (char *const argv[], const char *log)
{
    pid_t pid = fork ();
    if (pid == 0) {
        FILE *f = freopen (log, "a", stderr);
        (void) f;
        execv (argv[0], argv);
        _exit (127);
    }
    return pid;
}

static void
s_stop (pid_t pid)
{
    if (pid > 0) {
        kill (pid, SIGTERM);
        waitpid (pid, NULL, 0);
    }
}

//  Reads a string field of a JSON file a process writes once it has bound its
//  endpoints; waits up to 15 s.
static int
s_endpoint (const char *path, const char *key, char *out, size_t cap)
{
    for (int i = 0; i < 1500; i++) {
        json_t *j = json_load_file (path, 0, NULL);
        const char *v = j ? json_string_value (json_object_get (j, key)) : NULL;
        if (v)
            snprintf (out, cap, "%s", v);
        json_decref (j);
        if (v)
            return 0;
        zclock_sleep (10);
    }
    return -1;
}

//  Runs a command and returns the last line of its stdout parsed as JSON.
static json_t *
s_run_json (const char *cmd)
{
    FILE *p = popen (cmd, "r");
    if (!p)
        return NULL;
    char line[8192];
    json_t *last = NULL;
    while (fgets (line, sizeof line, p)) {
        json_t *j = json_loads (line, 0, NULL);
        if (j) {
            json_decref (last);
            last = j;
        }
    }
    pclose (p);
    return last;
}

typedef struct {
    char dir[64];
    char api[256];
    pid_t broker, worker;
} bench_cluster_t;

static int
s_cluster_up (bench_cluster_t *c, const char *data)
{
    snprintf (c->dir, sizeof c->dir, "/tmp/strata-bench-XXXXXX");
    if (!mkdtemp (c->dir))
        return -1;
    char broker[4096], worker[4096], cli[4096], log[300], dir[300], eps[300], path[300], wep[256], ingest[256];
    cluster_program ("strata-broker", broker, sizeof broker);
    cluster_program ("strata-worker", worker, sizeof worker);
    cluster_program ("strata", cli, sizeof cli);
    snprintf (log, sizeof log, "%s/bench.log", c->dir);
    snprintf (dir, sizeof dir, "--dir=%s/kb", c->dir);
    snprintf (eps, sizeof eps, "--endpoints-file=%s/broker.json", c->dir);
    snprintf (path, sizeof path, "%s/broker.json", c->dir);
    char *bargv[] = { broker, dir, eps, "--ingest=tcp://127.0.0.1:!", "--workers=tcp://127.0.0.1:!",
                      "--api=tcp://127.0.0.1:!", "--journal-sync=false", "--log-level=warn", NULL };
    c->broker = s_spawn (bargv, log);
    if (s_endpoint (path, "api", c->api, sizeof c->api) < 0 || s_endpoint (path, "workers", wep, sizeof wep) < 0
        || s_endpoint (path, "ingest", ingest, sizeof ingest) < 0)
        return -1;
    char wflag[300];
    snprintf (wflag, sizeof wflag, "--broker=%s", wep);
    char *wargv[] = { worker, "--role=preprocess", wflag, "--log-level=warn", NULL };
    c->worker = s_spawn (wargv, log);
    char cmd[8192];
    snprintf (cmd, sizeof cmd, "'%s' import --broker '%s' --quiet '%s'", cli, ingest, data);
    json_t *sum = s_run_json (cmd);
    json_int_t accepted = sum ? json_integer_value (json_object_get (sum, "accepted")) : 0;
    json_decref (sum);
    return accepted > 0 ? 0 : -1;
}

static void
s_cluster_down (bench_cluster_t *c)
{
    s_stop (c->worker);
    s_stop (c->broker);
    char cmd[200];
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", c->dir);
    if (system (cmd) != 0)
        fprintf (stderr, "could not remove %s\n", c->dir);
}

//  One training run through a fresh trainer and `workers` train workers; returns the
//  trainer's samples/s (0 on failure).
static double
s_cluster_train (bench_cluster_t *c, int workers, const char *mode, int epochs, int run)
{
    static int n;
    char trainer[4096], worker[4096], cli[4096], log[300], dir[300], eps[300], path[300], broker[300];
    cluster_program ("strata-trainer", trainer, sizeof trainer);
    cluster_program ("strata-worker", worker, sizeof worker);
    cluster_program ("strata", cli, sizeof cli);
    snprintf (log, sizeof log, "%s/bench.log", c->dir);
    snprintf (dir, sizeof dir, "--dir=%s/run-%d", c->dir, ++n);
    snprintf (eps, sizeof eps, "--endpoints-file=%s/trainer-%d.json", c->dir, n);
    snprintf (path, sizeof path, "%s/trainer-%d.json", c->dir, n);
    snprintf (broker, sizeof broker, "--broker=%s", c->api);
    char seed[32];
    snprintf (seed, sizeof seed, "--seed=%d", run + 1);
    char *targv[] = { trainer, dir, eps, broker, "--workers=tcp://127.0.0.1:!", "--api=tcp://127.0.0.1:!",
                      "--validation-users=0", "--no-continuous", seed, "--log-level=warn", NULL };
    pid_t tpid = s_spawn (targv, log);
    char api[256], wep[256];
    if (s_endpoint (path, "api", api, sizeof api) < 0 || s_endpoint (path, "workers", wep, sizeof wep) < 0) {
        s_stop (tpid);
        return 0;
    }
    long cores = sysconf (_SC_NPROCESSORS_ONLN);
    char threads[32], tflag[300];
    snprintf (threads, sizeof threads, "--threads=%ld", cores / workers > 1 ? cores / workers : 1L);
    snprintf (tflag, sizeof tflag, "--trainer=%s", wep);
    char *wargv[] = { worker, "--role=train", tflag, threads, "--log-level=warn", NULL };
    pid_t wpids[8];
    for (int i = 0; i < workers; i++)
        wpids[i] = s_spawn (wargv, log);
    char cmd[8192];
    snprintf (cmd, sizeof cmd, "'%s' train --trainer '%s' --epochs %d --mode %s --wait 2>/dev/null", cli, api, epochs,
              mode);
    json_t *j = s_run_json (cmd);
    double sps = j ? json_number_value (json_object_get (j, "samples_per_second")) : 0;
    json_decref (j);
    for (int i = 0; i < workers; i++)
        s_stop (wpids[i]);
    s_stop (tpid);
    return sps;
}

int
main (int argc, char **argv)
{
    const char *data = NULL, *script = NULL;
    int epochs = 1, runs = 3, threads = 2, cluster = 1, rank_neg = -1, rank_hard = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp (argv[i], "--data") && i + 1 < argc)
            data = argv[++i];
        else if (!strcmp (argv[i], "--torch") && i + 1 < argc)
            script = argv[++i];
        else if (!strcmp (argv[i], "--epochs") && i + 1 < argc)
            epochs = atoi (argv[++i]);
        else if (!strcmp (argv[i], "--runs") && i + 1 < argc)
            runs = atoi (argv[++i]);
        else if (!strcmp (argv[i], "--threads") && i + 1 < argc)
            threads = atoi (argv[++i]);
        else if (!strcmp (argv[i], "--no-cluster"))
            cluster = 0;
        else if (!strcmp (argv[i], "--rank-negatives") && i + 1 < argc)
            rank_neg = atoi (argv[++i]);
        else if (!strcmp (argv[i], "--rank-hard") && i + 1 < argc)
            rank_hard = atoi (argv[++i]);
        else {
            fprintf (stderr, "usage: train --data Beauty.txt [--epochs N] [--runs R] [--threads T] [--torch SCRIPT] "
                             "[--no-cluster] [--rank-negatives N] [--rank-hard N]\n");
            return 2;
        }
    }
    if (!data || access (data, R_OK) != 0) {
        printf ("train benchmark skipped: the Beauty data (%s) is absent\n", data ? data : "--data");
        return 0;
    }
    if (runs < 1 || runs > 15 || epochs < 1) {
        fprintf (stderr, "train: --runs 1..15, --epochs >= 1\n");
        return 2;
    }
    openblas_set_num_threads (threads);
    dataset_t *all = s_load (data);
    uint32_t *val = NULL;
    dataset_t *train = all ? dataset_holdout (all, 2, &val) : NULL;
    if (!train) {
        fprintf (stderr, "train: cannot read %s\n", data);
        return 1;
    }
    char seqs[] = "/tmp/strata-train-bench-XXXXXX";
    int fd = mkstemp (seqs);
    FILE *f = fd >= 0 ? fdopen (fd, "w") : NULL;
    for (uint32_t u = 0; f && u < train->n_users; u++) {
        for (uint32_t k = train->offsets[u]; k < train->offsets[u + 1]; k++)
            fprintf (f, k == train->offsets[u] ? "%u" : " %u", train->items[k]);
        fputc ('\n', f);
    }
    if (f)
        fclose (f);

    double peak = s_sgemm_peak ();
    model_config_t cfg;
    model_config_default (&cfg);
    plan_config_t pc;
    plan_config_default (&pc);
    if (rank_neg >= 0)
        cfg.rank_negatives = pc.rank_negatives = rank_neg;
    if (rank_hard >= 0)
        cfg.rank_hard = rank_hard;
    double strata[15], torch[15], gflops[15];
    int torch_runs = 0;
    for (int r = 0; r < runs; r++) {
        cfg.seed = pc.seed = (uint64_t) r + 1;
        step_session_t ss;
        if (step_session_init (&ss, &cfg, &pc, train, NULL) < 0) {
            fprintf (stderr, "train: out of memory\n");
            return 1;
        }
        //  Samples per epoch: predicted positions (every event after the first, within
        //  the last max_len + 1 of a history).
        double samples = 0;
        for (uint32_t u = 0; u < train->n_users; u++) {
            uint32_t len = dataset_len (train, u);
            samples += len < 2 ? 0 : (len - 1 < (uint32_t) cfg.max_len ? len - 1 : (uint32_t) cfg.max_len);
        }
        int64_t t0 = util_mono_ms ();
        for (int e = 0; e < epochs; e++)
            step_session_epoch (&ss);
        double secs = (double) (util_mono_ms () - t0) / 1000;
        strata[r] = samples * epochs / secs;
        gflops[r] = model_flops (ss.local) / secs / 1e9;
        step_session_fini (&ss);

        if (script) {
            char cmd[2048];
            snprintf (cmd, sizeof cmd,
                      "/usr/bin/python3 '%s' --data '%s' --items %u --epochs %d --threads %d --seed %d "
                      "--rank-negatives %d --rank-hard %d",
                      script, seqs, train->n_items, epochs, threads, r + 1, cfg.rank_negatives, cfg.rank_hard);
            FILE *p = popen (cmd, "r");
            char out[512] = "";
            double sps = 0;
            if (p) {
                while (fgets (out, sizeof out, p))
                    if (sscanf (out, "samples_per_second=%lf", &sps) == 1)
                        break;
                pclose (p);
            }
            if (sps > 0)
                torch[torch_runs++] = sps;
        }
        fprintf (stderr, "run %d: strata %.0f samples/s (%.1f GFLOP/s)%s\n", r + 1, strata[r], gflops[r],
                 torch_runs > 0 && script ? "" : "");
    }
    double S = bench_median (strata, runs), G = bench_median (gflops, runs);
    printf ("train benchmark: Amazon Beauty training sequences, %u items, d=%d, L=%d, %d blocks, batch %d, %d threads, "
            "median of %d runs of %d epoch(s)\n",
            train->n_items, cfg.dim, cfg.max_len, cfg.blocks, cfg.batch, threads, runs, epochs);
    if (torch_runs) {
        double T = bench_median (torch, torch_runs);
        printf ("  %-50s %10.0f samples/s\n", "reference: PyTorch, same model and batches", T);
        printf ("  %-50s %10.0f samples/s   ratio %.2f\n", "strata, one process", S, S / T);
    }
    else {
        printf ("  reference: PyTorch not run (python3-torch missing or --torch not given)\n");
        printf ("  %-50s %10.0f samples/s\n", "strata, one process", S);
    }
    printf ("  %-50s %10.1f GFLOP/s\n", "reference: OpenBLAS sgemm peak (1536^3)", peak);
    printf ("  %-50s %10.1f GFLOP/s   ratio %.2f\n", "strata, matrix products while training", G, G / peak);
    fflush (stdout);
    bench_cluster_t bc = { 0 };
    if (cluster && s_cluster_up (&bc, data) < 0) {
        printf ("  cluster runs skipped: could not start a broker with the data\n");
        s_cluster_down (&bc);
        cluster = 0;
    }
    for (int workers = 1; cluster && workers <= 2; workers++)
        for (int m = 0; m < 2; m++) {
            const char *mode = m ? "async" : "sync";
            double v[15];
            int ok = 0;
            for (int r = 0; r < runs; r++) {
                double x = s_cluster_train (&bc, workers, mode, epochs, r);
                if (x > 0)
                    v[ok++] = x;
                fprintf (stderr, "cluster run %d: %d worker(s), %s: %.0f samples/s\n", r + 1, workers, mode, x);
            }
            char label[80];
            snprintf (label, sizeof label, "strata cluster, %d train worker%s, %s", workers, workers > 1 ? "s" : "",
                      mode);
            if (!ok)
                printf ("  %-50s failed (see %s/bench.log)\n", label, bc.dir);
            else if (torch_runs) {
                double T = bench_median (torch, torch_runs), C = bench_median (v, ok);
                printf ("  %-50s %10.0f samples/s   ratio %.2f\n", label, C, C / T);
            }
            else
                printf ("  %-50s %10.0f samples/s\n", label, bench_median (v, ok));
            fflush (stdout);
        }
    if (cluster)
        s_cluster_down (&bc);
    unlink (seqs);
    free (val);
    dataset_destroy (&train);
    dataset_destroy (&all);
    return 0;
}
