/*  broker_private: the broker's state, shared by the files its work is split into.

    broker.c    lifecycle, the poll loop, the slow-turn accounting
    ingest.c    producers' batches: checks, the journal write, acks held for the sync
    jobs.c      the worker endpoint: registration, heartbeats, journal entries handed
                out as jobs and their results applied
    api.c       requests on the client sockets: stats, batch status, rejects, the
                trainer's exports, and serving requests passed on to serve.c

    The pieces are files of one object, not modules of their own: each reads and
    writes the one struct below, from the loop's thread only, so they need no
    interfaces between them beyond these calls. Nothing outside broker/ includes this
    header; the contract is broker.h.
*/
#ifndef STRATA_BROKER_PRIVATE_H
#define STRATA_BROKER_PRIVATE_H

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#include "arena.h"
#include "broker.h"
#include "knowledge.h"
#include "pool.h"
#include "serve.h"
#include "syncer.h"
#include "wire.h"

//  Batches that arrive together are journaled in one write.
#define INGEST_GROUP_MAX 64
//  Reject reasons reported at once (an Ack's, the stats').
#define REASONS_MAX 32

struct _broker_t {
    const broker_config_t *cfg;
    knowledge_t *kb;
    pool_t *pool;
    zsock_t *ingest, *workers, *api;
    zsock_t *pipe;           // broker_actor's, while it runs the broker; else NULL
    zlistx_t *pending;       // journal sequences waiting for a worker, oldest first
    syncer_t *syncer;        // makes the journal durable off the loop (journal-sync)
    zlistx_t *unsynced;      // acks waiting for their batch's sync (ingest.c), oldest first
    serve_t *serve;          // recommend / similar / search requests on their way to rank workers
    arena_t *arena;
    uint64_t protocol_errors;
    uint64_t next_job_id;
    //  Turns of the loop: how many were slow, the slowest, and the slowest message of
    //  the turn in progress (what a slow turn's log line names).
    uint64_t slow_turns, slowest_turn_us, slow_unlogged;
    int64_t slow_logged_ms, worst_us;
    char worst[200];   // the slowest turn not yet logged, described
    char turn_type[24];
    int64_t turn_type_us;
    int64_t started_ms;
    bool fatal;        // the store failed: the loop ends
};

//  broker.c

//  Counts a bad message and answers it with an Error. Returns wire_send_error's result.
int broker_bad_input (broker_t *self, zsock_t *sock, zframe_t *routing, const char *ref, Strata__V1__ErrorCode code,
                      const char *what);

//  Notes how long a message of this type took since t0 (zclock_usecs), for the slow
//  turn's log line.
void broker_timed (broker_t *self, const char *type, int64_t t0);

//  ingest.c

//  A BATCH kept for the group's journal write.
typedef struct {
    zframe_t *routing;
    zframe_t *payload;
    char *batch_id;
    int copy_of;        // index of an earlier entry with the same batch id, or -1
} ingest_batch_t;

typedef struct {
    ingest_batch_t batch[INGEST_GROUP_MAX];
    size_t n;
} ingest_group_t;

//  Checks the BATCH in msg. One that is to be journaled joins the group (taking msg's
//  routing and payload frames); any other is answered now (an error, or the ack of a
//  batch seen before). The group must have room.
void ingest_check (broker_t *self, wire_msg_t *msg, ingest_group_t *group);

//  Journals the group's batches in one write and acks them once durable (at once
//  without journal-sync). Empties the group.
void ingest_journal (broker_t *self, ingest_group_t *group);

//  The syncer finished a sync: acks what it covers, hands the entries to workers.
void ingest_synced (broker_t *self);

//  Waits for the syncs still running and acks their batches (the broker is stopping).
void ingest_drain (broker_t *self);

//  Acks held for a sync (unsynced_t in ingest.c), and their list's destructor.
size_t ingest_unsynced (broker_t *self);
void ingest_unsynced_destroy (void **item);

//  jobs.c

//  Puts a journal sequence at the end of the queue for preprocess workers (a
//  knowledge_journal_each callback: arg is the broker).
void jobs_enqueue (uint64_t seq, void *arg);

//  Takes what is waiting on the worker endpoint: READY, HEARTBEAT, RESULT (applied),
//  SERVE_RESULTS (passed to serve.c), DISCONNECT.
void jobs_handle (broker_t *self);

//  Hands queued journal entries to preprocess workers with free slots.
void jobs_dispatch (broker_t *self);

//  Drops workers that missed their heartbeats (their jobs go to others) and
//  heartbeats the rest.
void jobs_heartbeat (broker_t *self);

//  Tells every worker the broker is going, so that they reconnect at once to the next.
void jobs_farewell (broker_t *self);

//  api.c

//  Answers msg, a request on a client socket (ingest or api) other than a BATCH.
void api_handle (broker_t *self, zsock_t *sock, wire_msg_t *msg);

#endif
