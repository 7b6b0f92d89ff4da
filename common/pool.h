/*  pool: a registry of connected workers and the jobs each one holds (the broker's
    preprocess workers, the trainer's train workers).

    A worker is known by its ZeroMQ routing id. It announced a role and a capacity; the
    pool tracks which jobs it is working on (by a nonzero 64-bit job key: a journal
    sequence, a task id), when it was last heard from, and hands back its jobs when it
    leaves or misses heartbeats so they can be given to another. Only the owning
    process's main thread touches a pool.
*/
#ifndef STRATA_POOL_H
#define STRATA_POOL_H

#include <czmq.h>
#include <stdint.h>

#include "strata.pb-c.h"

typedef struct _pool_t pool_t;

typedef struct {
    zframe_t *identity;     // routing id (owned)
    char *id;               // worker's own id (owned)
    Strata__V1__Role role;
    uint32_t capacity;
    uint32_t inflight;
    uint32_t pid;
    uint64_t jobs_done;
    int64_t expiry;         // monotonic ms after which it is presumed dead
    int64_t heard;          // monotonic ms it was last heard from
    uint64_t *slots;        // capacity entries; 0 = free
    uint64_t last_assigned; // the pool's assignment count when it last got a job
    uint32_t messages;      // messages holding its jobs not answered yet (its owner counts them)
} pool_worker_t;

//  Called with each job key a departing worker held.
typedef void (pool_requeue_fn) (uint64_t seq, void *arg);

pool_t *pool_new (int64_t heartbeat_ms, int64_t liveness);
void pool_destroy (pool_t **self_p);

//  The worker with this routing id, or NULL.
pool_worker_t *pool_lookup (pool_t *self, zframe_t *identity);

//  Registers (or re-registers) a worker. A re-registering worker's jobs are requeued.
pool_worker_t *pool_register (pool_t *self, zframe_t *identity, const Strata__V1__WorkerHello *hello,
                              pool_requeue_fn *requeue, void *arg);

//  Marks a worker as alive now.
void pool_touch (pool_t *self, pool_worker_t *w);

//  The worker of this role with the fewest jobs and a free slot (ties: the one given a
//  job longest ago, so idle workers take turns), or NULL.
pool_worker_t *pool_least_loaded (pool_t *self, Strata__V1__Role role);

//  The same among workers holding fewer than max_messages unanswered messages (0: no
//  limit), other than except (NULL: any). A worker with no job in flight is taken
//  whatever its count says: nothing of its can be unanswered, and the count starts
//  again from 0.
pool_worker_t *pool_least_loaded_within (pool_t *self, Strata__V1__Role role, uint32_t max_messages,
                                         const pool_worker_t *except);

void pool_assign (pool_t *self, pool_worker_t *w, uint64_t seq);

//  Frees the slot holding seq, whichever worker has it. Returns that worker or NULL.
pool_worker_t *pool_complete (pool_t *self, uint64_t seq);

//  Frees w's slot holding seq (a job two workers hold: the one that answered). Returns
//  whether w held it.
bool pool_complete_on (pool_t *self, pool_worker_t *w, uint64_t seq);

//  A worker holding seq, or NULL.
pool_worker_t *pool_holder (pool_t *self, uint64_t seq);

//  Removes a worker, requeueing its jobs.
void pool_remove (pool_t *self, pool_worker_t *w, pool_requeue_fn *requeue, void *arg);

//  Removes every worker whose expiry is before now. Returns how many.
size_t pool_expire (pool_t *self, int64_t now, pool_requeue_fn *requeue, void *arg);

//  Iteration (no removal while iterating).
pool_worker_t *pool_first (pool_t *self);
pool_worker_t *pool_next (pool_t *self);
size_t pool_size (pool_t *self);
//  Workers of a role.
size_t pool_count (pool_t *self, Strata__V1__Role role);
size_t pool_inflight (pool_t *self);

#endif
