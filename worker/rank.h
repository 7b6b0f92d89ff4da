/*  rank: the serving role. A rank worker answers the RECOMMEND, SIMILAR and SEARCH jobs the
    broker routes to it, from the newest model version it holds.

    Model versions: it asks the trainer's api endpoint for the newest version every
    poll-ms (MODEL_INFO); a newer one is fetched chunk by chunk (a few chunks in flight,
    each checked against its hash, the whole against the version's), written to the
    worker's own RocksDB in one synced write, loaded, and swapped in between two jobs:
    no job waits for a download or fails because of one. On start it serves the
    version in its RocksDB at once, before the trainer is even reachable; a worker with
    no version yet registers with the broker only once it has one.

    The catalogue (external ids, categories, prices) comes from the broker's api
    endpoint (CATALOGUE pages) at start and, for new items, every catalogue-ms.

    RECOMMEND: the user's history (sent by the broker) plus the request's recent events
    give the user vector (model_user_vectors, batched across the jobs that arrived
    together, in groups of like history length; a history seen before since the last
    version takes its vector from user_cache.h); the whole catalogue is scored at once
    for the batch (score.h); the best items that pass
    the filters are returned, or, with rerank-top > 0, the best rerank-top of them are
    re-ranked by the ranking head (its logit plus rerank-blend times the retrieval
    score); a user with no usable history gets the
    most popular items (time-decayed) that pass the filters. SIMILAR: the items whose
    vectors score highest against the item's. SEARCH: BM25F over the catalogue's text
    (search.h) plus what past searchers of the query's terms chose (query_terms.h,
    weighted by search-learned), the best 100 that pass the filters blended, when the
    request names a user with a history, with that user's retrieval score (both scaled
    to [0, 1] among the candidates; search-blend weighs the model's); a request may
    restrict the ranking to a list of candidate items.
*/
#ifndef STRATA_RANK_H
#define STRATA_RANK_H

#include <czmq.h>
#include <protobuf-c/protobuf-c.h>
#include <stdint.h>

#include "ranker.h"

typedef struct {
    const char *trainer_api;   // where model versions come from
    const char *broker_api;    // where the catalogue comes from
    const char *dir;           // the worker's RocksDB
    int64_t poll_ms;           // how often to ask for a newer version
    int64_t catalogue_ms;      // how often to look for new catalogue items
    int64_t keep_versions;     // versions kept in the worker's RocksDB
    ranker_config_t serve;     // how the serving core answers (ranker.h)
} rank_config_t;

typedef struct _rank_worker_t rank_worker_t;

//  Opens the store (serving its newest version, if any) and fetches the catalogue.
//  NULL (logged) on failure.
rank_worker_t *rank_worker_new (const rank_config_t *cfg);
void rank_worker_destroy (rank_worker_t **self_p);

//  The rank worker's own sockets (the trainer's, for model versions; the broker's api
//  endpoint, for catalogue refreshes, which never make serving wait): fills
//  RANK_POLL_ITEMS poll items; after a poll, rank_worker_input reads what came.
#define RANK_POLL_ITEMS 2
void rank_worker_poll_items (rank_worker_t *self, zmq_pollitem_t *items);
void rank_worker_input (rank_worker_t *self, const zmq_pollitem_t *items);

//  Periodic work (version polls, catalogue refresh, download timeouts); call at least
//  every poll-ms.
void rank_worker_tick (rank_worker_t *self);

//  Answers n jobs (each a packed ServeJob), from `messages` SERVE_JOBS messages, sending
//  their results together, one ServeResults (SERVE_RESULTS) that says it answers those
//  messages, on sock. A version the loader has finished is swapped in first; the
//  answers are the serving core's (ranker_serve).
void rank_worker_serve (rank_worker_t *self, const ProtobufCBinaryData *jobs, size_t n, uint32_t messages,
                        zsock_t *sock);

//  The version being served (0: none).
uint64_t rank_worker_version (rank_worker_t *self);

#endif
