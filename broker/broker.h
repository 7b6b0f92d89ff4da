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
*/
#ifndef STRATA_BROKER_H
#define STRATA_BROKER_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

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

//  Runs until SIGINT/SIGTERM. Returns 0, or -1 if it could not start.
int broker_run (const broker_config_t *cfg);

#endif
