/*  ranker: the rank worker's serving core. It holds one served model version and the
    catalogue (ids, titles, categories, prices, the search index over them) and answers
    packed ServeJobs (RECOMMEND, SIMILAR, SEARCH, PING) with ServeResults.

    It owns no socket, thread or store: the rank worker (rank.h) fetches versions and
    catalogue records and hands them in, receives the broker's SERVE_JOBS and sends
    what ranker_serve returns. Kept apart so that every answer the broker can get (the
    filters, the batching of users, the fallbacks, the error replies) is decided here
    and can be driven by a test in one process, from a snapshot blob (snapshot.h) and
    catalogue records, with no network. What RECOMMEND, SIMILAR and SEARCH return is
    described in rank.h.

    One thread: a ranker belongs to the thread that calls it.
*/
#ifndef STRATA_RANKER_H
#define STRATA_RANKER_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "strata.pb-c.h"

typedef struct {
    const char *id;            // named in replies (borrowed: outlives the ranker)
    int64_t rerank_top;        // items the ranking head re-ranks
    double rerank_blend;       // weight of the retrieval score in the re-ranked score
    int64_t batch;             // users whose vectors are computed together
    double search_blend;       // weight of the user's model score beside text relevance
    double search_learned;     // weight of the learned query-term associations
    const char *index;         // retrieval: exact, ivf, or auto (ivf from ivf_min_items items)
    int64_t ivf_min_items;
    int64_t ivf_cells;         // 0: about sqrt(items)
    int64_t ivf_probe;         // cells scanned per query (0: the fewest reaching ivf_recall)
    double ivf_recall;         // recall@10 the automatic probe count must reach
    int64_t user_cache;        // user vectors kept by history (user_cache.h); 0: none
} ranker_config_t;

typedef struct _ranker_t ranker_t;

//  An empty core: no version, no catalogue. cfg is copied (its strings borrowed);
//  unset numbers take their defaults. NULL (logged) on an unknown index kind or no
//  memory.
ranker_t *ranker_new (const ranker_config_t *cfg);
void ranker_destroy (ranker_t **self_p);

//  Loads a snapshot blob (snapshot.h; borrowed, not kept) as the version served, its
//  retrieval index built as the configuration says (probe count tuned on pairs of
//  items: a core has no users to sample), replacing any version served before.
//  0, STRATA_ECORRUPT (the blob does not parse; logged) or STRATA_ENOMEM.
int ranker_load (ranker_t *self, const uint8_t *blob, size_t len);

//  Adds catalogue records (borrowed), as the broker's catalogue pages give them: those
//  whose item_index is the next index are added, to the catalogue and the search
//  index; the rest are repeats and ignored. Items beyond the served version's get
//  vectors at the next ranker_extend. 0, or STRATA_ENOMEM (logged; the records after
//  the one that failed are still tried).
int ranker_add_items (ranker_t *self, Strata__V1__Item *const *items, size_t n);

//  Items of the catalogue beyond the served version's rows get vectors from their
//  features (see rank.h), once they are all in: called after a refresh, not per page,
//  since each call grows the version's table.
void ranker_extend (ranker_t *self);

//  Answers n jobs, each a packed ServeJob (borrowed), into out (its results and
//  n_results; messages left as it was). The results are the core's, valid until the
//  next ranker_serve or ranker_destroy. A job that does not decode gets no result; a
//  job that decodes gets one, an Error for a bad request. 0, or STRATA_ENOMEM (no
//  results at all: the broker retries the jobs elsewhere).
int ranker_serve (ranker_t *self, const ProtobufCBinaryData *jobs, size_t n, Strata__V1__ServeResults *out);

//  The version served (0: none) and the catalogue's size.
uint64_t ranker_version (ranker_t *self);
uint32_t ranker_items (ranker_t *self);

#endif
