/*  cluster: finding and running a local Strata cluster.

    Every client command finds the broker the same way: --broker ENDPOINT if given, else
    the cluster.json of --dir DIR (written by `strata up`), else the default local
    endpoints. `strata up` runs a small supervisor: it starts the broker, N preprocess
    workers, the trainer, M train workers and R rank workers (each with its store in
    DIR/rank-K) as separate processes on 127.0.0.1, writes DIR/cluster.json, restarts
    any process that dies, and on SIGINT/SIGTERM stops them all in order (rank workers,
    train workers, trainer, workers, then broker).
*/
#ifndef STRATA_CLUSTER_H
#define STRATA_CLUSTER_H

#include "strata_error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>


typedef struct {
    char ingest[256];
    char workers[256];
    char api[256];
    char trainer[256];   // the trainer's api endpoint
    int supervisor_pid;
} cluster_endpoints_t;

//  Resolves endpoints from --broker (ingest endpoint) / --dir / defaults. Returns 0,
//  or with a message in err STRATA_ENOTFOUND (a --dir without a cluster.json),
//  STRATA_ECORRUPT (one that does not parse) or STRATA_EIO (one that cannot be read).
int cluster_resolve (const char *broker, const char *dir, cluster_endpoints_t *out, char *err, size_t errlen);

typedef struct {
    const char *dir;
    int workers;          // preprocess workers
    int train_workers;    // train workers; 0: no trainer either
    int port;             // first of five ports (ingest, workers, api, trainer workers, trainer api); 0 = any free
    bool journal_sync;
    const char *log_level;
    int rankers;          // rank workers (with a trainer only)
    int batch_nice;       // how far batch work (cleaning, training) yields the CPU to serving
} cluster_opts_t;

//  Runs the cluster in the foreground until SIGINT/SIGTERM. If ready_fd >= 0, writes
//  one byte to it once cluster.json exists (for --detach). Returns 0 (stopped by a
//  signal), STRATA_EIO (cannot create DIR/logs or write cluster.json),
//  STRATA_EUNAVAILABLE (the broker or the trainer did not start) or STRATA_ENOMEM.
int cluster_up (const cluster_opts_t *opts, int ready_fd);

//  Stops the cluster whose cluster.json is in dir. Returns 0, or with err
//  cluster_resolve's code, STRATA_ESTATE (its supervisor is not running) or
//  STRATA_ETIMEOUT (it did not stop within timeout_ms).
int cluster_down (const char *dir, int timeout_ms, char *err, size_t errlen);

//  Path of a sibling program (strata-broker, strata-worker) next to this executable or
//  in the build tree; falls back to the bare name (PATH). Writes into out.
void cluster_program (const char *name, char *out, size_t cap);

#endif
