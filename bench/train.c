/*  bench/train: training throughput of Strata's model against a PyTorch reference.

    Both train the same model (trainer/model.h; bench/train_torch.py mirrors it) on the
    same samples, the Amazon Beauty training sequences (every user's history without its
    last two events), with the same batch size, batching and optimiser, on the same
    number of threads. Samples are predicted positions; samples/s of each and the ratio
    are printed as medians of --runs runs of --epochs epochs. In the same run it measures
    OpenBLAS's sgemm peak on this machine and prints the GFLOP/s achieved by the model's
    matrix products beside it.

    Usage: train --data Beauty.txt [--epochs N] [--runs R] [--threads T] [--torch SCRIPT]
*/
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "model.h"
#include "step.h"
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

int
main (int argc, char **argv)
{
    const char *data = NULL, *script = NULL;
    int epochs = 1, runs = 3, threads = 2;
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
        else {
            fprintf (stderr, "usage: train --data Beauty.txt [--epochs N] [--runs R] [--threads T] [--torch SCRIPT]\n");
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
    double strata[15], torch[15], gflops[15];
    int torch_runs = 0;
    for (int r = 0; r < runs; r++) {
        cfg.seed = pc.seed = (uint64_t) r + 1;
        step_session_t ss;
        if (step_session_init (&ss, &cfg, &pc, train) < 0) {
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
            snprintf (cmd, sizeof cmd, "/usr/bin/python3 '%s' --data '%s' --items %u --epochs %d --threads %d --seed %d",
                      script, seqs, train->n_items, epochs, threads, r + 1);
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
    unlink (seqs);
    free (val);
    dataset_destroy (&train);
    dataset_destroy (&all);
    return 0;
}
