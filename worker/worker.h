/*  worker: the stateless worker process's connection to the broker.

    Paranoid-Pirate style: the worker connects a DEALER to the broker's worker endpoint
    (roles preprocess and rank) or the trainer's (role train), announces itself (READY
    with role and capacity), and then answers JOBs with RESULTs (TASKs with GRADIENTs,
    SERVE_JOBS with SERVE_RESULTS, see rank.h) while heartbeats flow both ways. If the
    broker goes silent for `liveness` heartbeats the worker drops its socket and
    reconnects with backoff, so a broker restart needs no
    operator. The worker holds no state between jobs: kill it at any time and the broker
    gives its jobs to another.

    The process is an object (new, run, destroy) and can run as a czmq actor stopped by
    "$TERM", like zauth and zproxy: strata-worker's main is new/run/destroy, and a test
    can run a worker on a thread of its own process.

    The main header of the worker library (worker/: this process, the preprocess role
    preprocess.h, the train role train.h, and the rank role, serving, rank.h with its
    core ranker.h). It may depend on common/, the model library (model/), the search
    library (search/) and the client library's requests; never on the training side
    (trainer/).
*/
#ifndef STRATA_WORKER_H
#define STRATA_WORKER_H

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"

typedef struct {
    char *broker;           // worker endpoint of the broker (preprocess)
    char *trainer;          // worker endpoint of the trainer (train)
    char *trainer_api;      // api endpoint of the trainer (rank: model versions)
    char *api;              // api endpoint of the broker (rank: the catalogue)
    char *dir;              // the rank worker's RocksDB
    int64_t poll_ms, catalogue_ms, rerank_top, batch, keep_versions;
    double rerank_blend, search_blend, search_learned;
    char *index;
    int64_t ivf_min_items, ivf_cells, ivf_probe;
    double ivf_recall;
    int64_t user_cache;
    char *role;             // "preprocess", "train" or "rank"
    int64_t threads;        // OpenBLAS threads (train)
    char *id;               // worker id (default: host-pid)
    int64_t capacity;       // jobs in flight at once
    int64_t heartbeat_ms;
    int64_t liveness;       // missed heartbeats before reconnecting
    int64_t max_frame;      // largest job accepted, bytes
    int64_t max_id_len;
    int64_t max_text_len;
    char *log_level;
} worker_config_t;

extern const config_key_t worker_config_keys[];

typedef struct _worker_t worker_t;

//  A worker of cfg's role (cfg borrowed: it must outlive the worker): checks the role,
//  and for the rank role opens its store, serves the version stored there and reads
//  the catalogue (rank.h). Connects nothing else yet. NULL (logged) on an unknown role
//  or a worker that cannot start.
worker_t *worker_new (const worker_config_t *cfg);
void worker_destroy (worker_t **self_p);

//  Runs the worker: a rank worker first waits for a model version; then it registers
//  with the broker (or trainer) and answers jobs until interrupted (SIGINT/SIGTERM),
//  stopped ($TERM, worker_actor), or a fatal error. 0, or STRATA_ECONNECT when it
//  cannot connect at all.
int worker_run (worker_t *self);

//  A zactor running worker_run on args, a worker_t from worker_new, until "$TERM" (as
//  zauth and zproxy stop), for running a worker inside another process:
//      worker_t *worker = worker_new (&cfg);
//      zactor_t *actor = zactor_new (worker_actor, worker);
//      ...
//      zactor_destroy (&actor);    // the worker says DISCONNECT on the way out
//      worker_destroy (&worker);
//  The worker belongs to the actor's thread from zactor_new until zactor_destroy
//  returns. The broker's and the trainer's actors work the same way.
void worker_actor (zsock_t *pipe, void *args);

#endif
