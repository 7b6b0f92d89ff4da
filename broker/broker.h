/*  broker: the one address producers, clients and workers need.

    A single thread polls three ROUTER sockets:
      ingest   producers send BATCHes; each is checked and journaled (batches that
               arrived together in one write), and ACKed once the journal is durable
               (syncer.h: the fsync runs on a thread of its own, never in the loop).
      workers  workers register (READY), heartbeat, receive JOBs (journal entries) and
               return RESULTs, which are applied to the knowledge store atomically;
               rank workers return the answers to requests (serve.h).
      api      clients ask for recommendations, similar items and searches (routed to
               rank workers), STATS, batch STATUS, rejects, and the trainer's exports.
    One thread owning the store and the pool means no locks anywhere on the write path;
    the heavy lifting (parsing, cleaning, ranking) is in the workers, which scale by
    adding processes.

    The broker is an object, czmq style: broker_new opens the store and binds the
    sockets, broker_run is the loop, broker_destroy closes everything. strata-broker is
    those three calls; a test runs the same object inside its own process, on ephemeral
    ports ("tcp://127.0.0.1:!") that broker_endpoint names, and stops it through
    broker_actor's pipe, as it would stop zauth or zproxy.

    The main header of the broker library (broker/: ingest, jobs, api, the knowledge
    store knowledge.h, the event-id index dedupe.h, request routing serve.h, the journal
    syncer syncer.h). It depends on common/ only: the broker neither scores nor trains.
*/
#ifndef STRATA_BROKER_H
#define STRATA_BROKER_H

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "strata_error.h"

typedef struct {
    char *dir;
    char *ingest;
    char *workers;
    char *api;
    char *endpoints_file;
    int64_t heartbeat_ms;
    int64_t liveness;
    int64_t max_frame;
    int64_t max_batch;
    int64_t max_pending;
    int64_t history_len, history_cache, serve_attempts, serve_timeout_ms, serve_pipeline, serve_hedge_ms;
    int64_t catalogue_changes;
    int64_t slow_turn_ms;
    bool journal_sync;
    char *log_level;
} broker_config_t;

extern const config_key_t broker_config_keys[];

typedef struct _broker_t broker_t;

//  Opens the knowledge store in cfg->dir, binds the three endpoints, writes the
//  endpoints file (when cfg names one) and queues the journal entries a previous run
//  left unapplied. cfg is borrowed and must outlive the broker. NULL when it cannot
//  start (the reason is logged).
broker_t *broker_new (const broker_config_t *cfg);

//  Closes the sockets and the store. Accepts NULL; sets *self_p to NULL.
void broker_destroy (broker_t **self_p);

//  Runs the loop until SIGINT/SIGTERM, or "$TERM" on the actor's pipe (broker_actor).
//  On the way out, acks the batches whose sync was still running and tells the workers
//  to go. Returns 0, or STRATA_EIO when the store failed (the broker stopped so that a
//  restart recovers from what is on disk). Call it once.
int broker_run (broker_t *self);

//  The endpoint bound for "ingest", "workers" or "api" (the real port where a wildcard
//  was asked for), or NULL for another name. Valid until broker_destroy.
const char *broker_endpoint (broker_t *self, const char *name);

//  A zactor running broker_run on args, a broker_t from broker_new:
//      broker_t *broker = broker_new (&cfg);
//      zactor_t *actor = zactor_new (broker_actor, broker);
//      ...
//      zactor_destroy (&actor);    // sends "$TERM"; returns once the loop has ended
//      broker_destroy (&broker);
//  The broker belongs to the actor's thread from zactor_new until zactor_destroy
//  returns: the caller reads its endpoints before, and destroys it after.
void broker_actor (zsock_t *pipe, void *args);

#endif
