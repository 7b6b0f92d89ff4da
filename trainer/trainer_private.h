/*  trainer_private: the trainer's state, shared by its modules (trainer.c: lifecycle
    and the loop; trainer_tasks.c: the task queue and gradient aggregation;
    trainer_run.c: the run state machine; trainer_api.c: the api endpoint and version
    publishing). Not for use outside trainer/.
*/
#ifndef STRATA_TRAINER_PRIVATE_H
#define STRATA_TRAINER_PRIVATE_H

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#include "agg.h"
#include "checkpoint.h"
#include "dataset.h"
#include "endpoints.h"
#include "evaluate.h"
#include "features_fetch.h"
#include "item_features.h"
#include "log.h"
#include "model.h"
#include "model_eval.h"
#include "plan.h"
#include "pool.h"
#include "request.h"
#include "search_rank.h"
#include "snapshot.h"
#include "step.h"
#include "trainer.h"
#include "util.h"
#include "wire.h"

typedef enum { TASK_PENDING, TASK_SENT, TASK_DONE } task_state_t;

typedef struct {
    uint64_t task_id;      // 0 while pending
    uint32_t step;
    int shard;
    model_shard_t sh;
    task_state_t state;
    uint64_t version;      // parameter version exported with it
    Strata__V1__TrainGradient *grad;   // sync: arrived before an earlier shard's, kept until added
    int failures;
} task_t;

#define MAX_TASKS 256

struct _trainer_t {
    const trainer_config_t *cfg;
    model_config_t mc;
    plan_config_t pc;
    store_t *store;
    zsock_t *workers, *api;
    pool_t *pool;
    bool fatal;
    //  Data.
    dataset_t *all, *train;
    features_t *features;      // the catalogue's, or NULL when it describes nothing
    uint32_t *val_targets;
    uint32_t val_users;
    uint64_t events;           // events in `all` (items only)
    uint64_t broker_events;    // the broker's count when `all` was fetched
    plan_t *plan;
    int plan_shards;
    //  Model.
    model_t *master;
    agg_t *agg;
    uint64_t param_version;    // updates applied
    uint64_t version;          // published model versions
    uint64_t updates;          // incremental versions since the full run
    uint64_t weights_fnv;      // hash of the weights when last published or loaded
    //  The run in progress.
    const char *state;
    bool running, incremental, resumed;
    Strata__V1__TrainMode mode;
    uint64_t run_id;
    uint32_t epoch, epochs, steps, next_step, steps_done, epoch_base;
    task_t tasks[MAX_TASKS];
    int n_tasks;
    int n_added;               // sync: shards of the step added so far (in shard order)
    uint64_t next_task_id;
    double epoch_loss;
    uint64_t epoch_pos;
    double last_loss;
    metrics_t last_val;
    uint64_t samples, redone, stale;
    uint64_t refused;          // gradients from peers that did not hold their task
    double flops;
    double run_secs;           // time spent in this run's epochs
    int64_t seg_start;         // start of the current timed segment (0: none)
    int64_t last_ckpt, last_poll, last_update;
    step_tensors_t out;        // export scratch
    size_t out_rows, out_feats;
    //  Search: the learned ranker and the choice counts it reads (none without choices).
    search_ranker_t ranker;
    bool has_ranker;
    uint64_t ranker_fnv;       // hash of the choices it was fitted on
    float *conversions;
    uint32_t n_conversions;
    char message[320];
};

//  trainer.c
const char *trainer_mode_name (Strata__V1__TrainMode m);
int trainer_recv (zsock_t *sock, size_t max, const char *what, wire_msg_t *msg);

//  trainer_tasks.c: the queue of the step's shards, their workers, their gradients.
void trainer_tasks_clear (trainer_t *self);
void trainer_dispatch (trainer_t *self);
void trainer_pump (trainer_t *self);
void trainer_handle_workers (trainer_t *self);
void trainer_heartbeat (trainer_t *self);

//  trainer_run.c: data, checkpoints, epochs, continuous updates, resumption.
//  Both: 0, or a negative code with self->message (trainer_load_data:
//  STRATA_EUNAVAILABLE when the broker does not give the data, STRATA_ENOMEM;
//  trainer_start_run: STRATA_ENOMEM).
int trainer_load_data (trainer_t *self, uint32_t **changed, uint32_t *n_changed);
int trainer_start_run (trainer_t *self, bool incremental, uint32_t epochs, Strata__V1__TrainMode mode,
                       const uint32_t *users, uint32_t n_users);
void trainer_end_epoch (trainer_t *self);
void trainer_timer_stop (trainer_t *self);
void trainer_checkpoint (trainer_t *self);
void trainer_poll (trainer_t *self);
void trainer_resume (trainer_t *self);

//  trainer_api.c
void trainer_handle_api (trainer_t *self);

#endif
