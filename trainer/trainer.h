/*  trainer: strata-trainer, the parameter server and training coordinator.

    It pulls user histories from the broker's api endpoint, holds the master model (all
    weights, Adam moments) and hands the shards of each step (plan.h) to train workers
    on its worker endpoint, sending each worker the dense weights and only the item rows
    its shard touches (step.h). Workers connect, heartbeat and leave as the broker's do
    (Paranoid Pirate); a worker lost mid-shard has its shard given to another, and the
    rebuilt shard is the same shard.

    Modes. sync: a step's shards are summed in shard order once all have arrived, then
    applied; the arithmetic is a function of the seed and the shard count only, so two
    runs give the same bits whatever the number of workers or their timing. async: each
    step is one task, applied as soon as its gradient arrives (stale synchronous
    parallel): tasks are handed out only while no task in flight can see more than
    `staleness` updates between its export and its arrival, so fast workers wait for
    slow ones rather than compute on parameters too old; a gradient that is staler
    anyway (a redone shard) is computed again on fresh parameters.

    State. The trainer checkpoints to its own RocksDB (checkpoint.h) every
    `checkpoint-secs` and at each epoch's end, and resumes an interrupted run from there
    after a crash (in sync mode, to the same bits as an undisturbed run). After each
    epoch it evaluates on held-out validation users (the last event of up to
    `validation-users` users is kept out of training) and publishes a model version.

    Continuous training. After the first full run the trainer polls the broker; when
    `retrain-events` new events have arrived, or any new event and `retrain-secs` have
    passed, it fetches the data again, grows the item table for new items, trains
    `incremental-epochs` passes over the users with new events, warm from the current
    weights, and publishes a new version.

    Its api endpoint answers TRAIN (start a full run) and TRAIN_STATUS with a
    TrainStatus, and publishes model versions to rank workers (MODEL_INFO,
    MODEL_CHUNK).

    The training side of Strata: depends on the model library (model/), the search
    library (search/), the client library's requests (client/request.h) and common/;
    nothing in serving depends on it.
*/
#ifndef STRATA_TRAINER_H
#define STRATA_TRAINER_H

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "hyper.h"

typedef struct {
    char *dir;                 // the trainer's RocksDB lives in DIR/trainer
    char *broker;              // broker api endpoint (training data)
    char *workers;             // endpoint train workers connect to
    char *api;                 // endpoint for TRAIN / TRAIN_STATUS
    char *endpoints_file;
    char *mode;                // sync or async
    int64_t epochs;
    int64_t staleness;
    int64_t validation_users;
    int64_t checkpoint_secs;
    int64_t keep_versions;
    double popularity_half_life_days;
    bool continuous;
    int64_t retrain_events, retrain_secs, incremental_epochs, poll_ms;
    bool auto_train;           // start a full run when there is data and no model
    int64_t heartbeat_ms, liveness, max_frame, timeout_ms, threads;
    char *log_level;
    hyper_t hyper;
} trainer_config_t;

extern const config_key_t trainer_config_keys[];

typedef struct _trainer_t trainer_t;

//  Opens the trainer's store (DIR/trainer), binds its endpoints (ephemeral ports such
//  as "tcp://127.0.0.1:!" are fine: trainer_endpoint tells them) and resumes from the
//  checkpoint. cfg is borrowed and must outlive the trainer. NULL (logged) on failure.
trainer_t *trainer_new (const trainer_config_t *cfg);

//  Checkpoints a model it holds, then frees everything; safe on NULL and twice.
void trainer_destroy (trainer_t **self_p);

//  The bound endpoint "workers" or "api" (valid while the trainer lives), or NULL.
const char *trainer_endpoint (trainer_t *self, const char *name);

//  Serves until interrupted (SIGINT/SIGTERM). 0, or STRATA_EIO after a fatal error.
int trainer_run (trainer_t *self);

//  A zactor running trainer_run's loop on args, a trainer_t from trainer_new, until
//  "$TERM" (as zauth and zproxy stop), for running a trainer inside another process:
//      trainer_t *trainer = trainer_new (&cfg);
//      const char *api = trainer_endpoint (trainer, "api");
//      zactor_t *actor = zactor_new (trainer_actor, trainer);
//      ...
//      zactor_destroy (&actor);    // returns once the loop has ended
//      trainer_destroy (&trainer);
//  The trainer belongs to the actor's thread from zactor_new until zactor_destroy
//  returns.
void trainer_actor (zsock_t *pipe, void *args);

#endif
