/*  syncer: makes the knowledge store's writes durable on a thread of its own, so that
    the broker's loop never waits for the disk's fsync while it serves.

    The loop writes journal batches without sync (quick: the log is appended, not
    flushed to the device), asks for a sync, and goes on serving; when the sync is done
    it acks the producers. Requests that arrive while a sync runs are covered together
    by the next one (group commit), so a slow disk costs latency to producers, not
    throughput, and never delays a recommendation.

    Tickets order the requests: syncer_request returns one, and syncer_synced, after
    syncer_fd polls readable, says up to which ticket every write is on disk. One thread
    (the loop) calls everything but the syncer's own thread.
*/
#ifndef STRATA_SYNCER_H
#define STRATA_SYNCER_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

typedef struct _syncer_t syncer_t;

//  Starts the thread. NULL (logged) on failure.
syncer_t *syncer_new (store_t *store);

//  Waits for the sync in progress, if any, and stops the thread. Requests made and not
//  yet begun are dropped: call syncer_wait first to have them done.
void syncer_destroy (syncer_t **self_p);

//  Asks for every write made so far to be made durable. Returns the request's ticket
//  (1, 2, ...).
uint64_t syncer_request (syncer_t *self);

//  Readable (for poll) when a sync has finished since the last syncer_synced.
int syncer_fd (syncer_t *self);

//  The highest ticket whose writes are durable (0: none yet); clears syncer_fd's
//  readiness. Returns 0, or STRATA_EIO when a sync failed (the store can no longer be
//  trusted to have what it acknowledged: the caller stops, and a restart recovers from
//  what is on disk).
int syncer_synced (syncer_t *self, uint64_t *ticket);

//  Syncs done so far, and the longest one, in µs.
void syncer_counts (syncer_t *self, uint64_t *syncs, uint64_t *slowest_us);

//  Waits until every ticket issued is durable (or a sync failed); then as syncer_synced.
int syncer_wait (syncer_t *self, uint64_t *ticket);

#endif
