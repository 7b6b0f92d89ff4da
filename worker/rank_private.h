/*  rank_private: what the rank worker's files share, and nothing outside them.

    The serving role is split by job, Redis style: the serving core (ranker.c, with
    catalogue.c, rank_index.c and the request files ranker_request.c,
    ranker_retrieve.c, ranker_search.c) answers jobs with no network; the rank worker
    (rank.c) around it owns the sockets and the store, and fetches what the core
    serves: model versions (rank_versions.c) and the catalogue (rank_catalogue.c).
    Their structs live here so that each file reads the fields it works on directly;
    the public contracts stay ranker.h and rank.h.
*/
#ifndef STRATA_RANK_PRIVATE_H
#define STRATA_RANK_PRIVATE_H

#include <czmq.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ivf.h"
#include "model.h"
#include "rank.h"
#include "ranker.h"
#include "score.h"
#include "snapshot.h"
#include "store.h"
#include "user_cache.h"
#include "wire.h"

#define MAX_K 1000
#define CATALOGUE_PAGE 2000   // items per catalogue request
#define POPULAR_KEPT 4096
#define SEARCH_POOL 100       // text candidates a user's model score is blended into

// ---------------------------------------------------------------- scratch

typedef struct {
    void *p;
    size_t cap;               // bytes
} scratch_t;

//  At least `bytes` of scratch (contents not kept when it grows), or NULL.
void *scratch_get (scratch_t *s, size_t bytes);
//  The same, zero when first allocated: the caller keeps it zero between uses.
void *scratch_zeroed (scratch_t *s, size_t bytes);

// ---------------------------------------------------------------- served versions (rank_index.c)

//  The version being served.
typedef struct {
    model_t *m;
    snapshot_info_t info;
    uint32_t rows;            // items served: the version's, then those added since (ranker_extend)
    const float *vectors;     // rows x dim: the model's table
    uint32_t *popular;        // item indices, most popular first
    uint32_t n_popular;
    ivf_t *ivf;               // approximate retrieval (NULL: exact)
    score_table_t *table;     // rows table_base .. table_base + its size packed for the scan:
    uint32_t table_base;      // exact retrieval, every row (0); approximate, those added
                              // since the index was built (its size)
    uint32_t probe;           // its cells scanned per query
    uint32_t ivf_cap;         // most candidates a query gets
    float ivf_recall;         // its recall@10 on the probe queries
    bool ivf_built;           // built or tuned here, not read back as it was: worth storing
} served_t;

//  Stored users' histories (model rows and event types, oldest first), for choosing
//  the approximate index's probe count on the queries serving will see.
typedef struct {
    uint32_t *items;
    uint8_t *types;
    uint32_t *lens;
    uint32_t n;
} sample_t;

void sample_free (sample_t *s);

//  A version loaded from its blob, with its retrieval index: read back from saved
//  (served_index_save's bytes; NULL: none) when it still fits the configuration, else
//  built, its probe count chosen on sample's users (NULL or too few: pairs of items).
//  Touches nothing but its arguments: the loader thread calls it. NULL (logged) when
//  the blob does not load or memory runs out; *rc says which (may be NULL).
served_t *served_new (const ranker_config_t *cfg, const uint8_t *blob, size_t len, const sample_t *sample,
                      const uint8_t *saved, size_t saved_len, int *rc);
void served_destroy (served_t **self_p);

//  The bytes that keep an index built or tuned here (malloc'd), or NULL when there is
//  nothing worth keeping (exact retrieval, or read back as it was) or no memory.
uint8_t *served_index_save (const served_t *s, const ranker_config_t *cfg, size_t *len);

// ---------------------------------------------------------------- the catalogue (catalogue.c)

//  What the broker's catalogue says about each item index.
typedef struct {
    uint32_t n, cap;
    char **ids;
    char **titles;            // NULL entries: no title
    zhashx_t *index;          // id -> index + 1
    float *price;             // NAN: none
    //  Item i's category-level hashes are cat[cat_at[i] .. cat_at[i] + cat_n[i]); an
    //  updated item's are appended, its old ones left unused.
    uint32_t *cat_at;
    uint16_t *cat_n;
    uint32_t *cat;
    size_t n_cat, cap_cat;
    uint64_t change;          // the last catalogue change applied (its sequence)
    bool change_known;        // whether change is set (from the first page fetched)
    //  Feature hashes of the items from fh_base on (those the served version does not
    //  know): item i's are fh[fh_at[k] .. fh_at[k] + fh_n[k]), k = i - fh_base. A record
    //  written again appends its hashes, its old ones left unused until the next trim.
    uint32_t fh_base;
    uint64_t *fh;
    uint32_t *fh_at;
    uint8_t *fh_n;
    size_t n_fh, cap_fh, cap_fh_items;
} catalogue_t;

//  0 or STRATA_ENOMEM.
int catalogue_init (catalogue_t *c);
void catalogue_free (catalogue_t *c);
//  Adds the record when it is the next item (a repeat otherwise: nothing done). 0 or
//  STRATA_ENOMEM.
int catalogue_add (catalogue_t *c, const Strata__V1__Item *it);
//  Sets item i's title, price and categories from its record. 0 or STRATA_ENOMEM.
int catalogue_describe (catalogue_t *c, uint32_t i, const Strata__V1__Item *it);
//  Keeps item i's feature hashes (i >= fh_base). 0 or STRATA_ENOMEM.
int catalogue_hashes (catalogue_t *c, uint32_t i, const Strata__V1__Item *it);
//  Forgets the feature hashes of items below base (a version knows them now).
void catalogue_trim (catalogue_t *c, uint32_t base);
//  The index of item id into *index: 0, or STRATA_ENOTFOUND when the catalogue does
//  not have it.
int catalogue_lookup (const catalogue_t *c, const char *id, uint32_t *index);
//  A category level's hash, as filters compare them (case-insensitive).
uint32_t catalogue_level_hash (const char *s);

// ---------------------------------------------------------------- the serving core

//  A request being answered.
typedef struct {
    uint64_t job_id;
    bool similar;                 // SIMILAR
    bool search;                  // SEARCH (neither: RECOMMEND)
    const char *query;
    bool text_only;               // SEARCH: text relevance alone
    uint32_t *only;               // SEARCH: rank only these items (NULL: all)
    uint32_t n_only;
    const char *request_id;
    uint32_t k;
    const Strata__V1__Filters *filters;
    uint32_t cat_hash;            // the category filter's hash (0: none)
    uint32_t *hist;               // model rows, oldest first (RECOMMEND)
    uint8_t *hist_types;
    uint32_t n_hist;
    uint32_t *seen;               // items to leave out (history as the filters say, exclusions)
    uint32_t n_seen;
    int32_t item;                 // SIMILAR: the item's row
    const char *error;            // set: answer with an Error
    Strata__V1__ErrorCode code;
    int slot;                     // RECOMMEND with history: index in the vector batch
} req_t;

//  Retrieval results for one query: the whole catalogue's scores (items NULL: item i
//  scored scores[i]) or m candidates of the approximate index.
typedef struct {
    const uint32_t *items;
    const float *scores;
    uint32_t m;
} cands_t;

struct _ranker_t {
    ranker_config_t cfg;
    served_t *cur;
    catalogue_t cat;
    search_index_t *index;    // over the catalogue
    user_cache_t *ucache;     // user vectors by history
    //  Scratch, grown as needed and kept: serving allocates nothing per request.
    scratch_t scores;         // batch x items
    scratch_t uvec;           // batch x dim
    scratch_t uvec_group;     // the user tower's output for one group of a batch
    scratch_t s_items, s_text, s_drop, s_seen;   // search: per catalogue item
    scratch_t failed;         // items a filter leaves out
    scratch_t cand_items, cand_scores;   // approximate retrieval: per query, its candidates
    scratch_t cand_drop;      // per candidate: excluded for the request at hand
    scratch_t exact;          // one query's scores over the catalogue (fallbacks)
    scratch_t sel, sel_scores; // one request's selected items and their retrieval scores
    scratch_t refine_items, refine_scores;   // exact retrieval: the items scored exactly
    uint8_t *mark;            // per item: excluded for the request at hand
    size_t mark_cap;
    int32_t *top;
    float *logits;
    uint64_t served_jobs;
    //  The results of the jobs being answered, returned together when all are done.
    Strata__V1__ServeResult *results;
    Strata__V1__ServeResult **result_ptrs;
    size_t n_results;
};

//  ranker.c: swaps in a loaded version (taking it), between two batches of jobs.
void ranker_swap (ranker_t *self, served_t *next);
//  ranker.c: the records of items already known replace theirs, in the catalogue, the
//  search index and (items the version does not know) their vectors; *known says how
//  many there were. 0, or STRATA_ENOMEM.
int ranker_replace_items (ranker_t *self, Strata__V1__Item *const *items, size_t n, uint32_t *known);
//  rank_index.c: whether a version about to be loaded may get the approximate index,
//  and so wants a sample of users.
bool ranker_wants_sample (const ranker_t *self);
//  ranker.c: the reply to r (an Error when r->error is set), kept with the batch's.
void ranker_reply (ranker_t *self, const req_t *r, const uint32_t *items, const float *scores, int n,
                   const char *source);
//  ranker.c: an Error reply for r.
void ranker_fail (ranker_t *self, req_t *r, const char *error, Strata__V1__ErrorCode code);
//  ranker.c: sorts items by score, best first.
void ranker_sort (uint32_t *items, float *scores, int n);

//  ranker_request.c: decodes a job into r (r's arrays malloc'd, its strings owned by
//  *inner, the unpacked request, both freed by the caller); sets r->error on a bad one.
void ranker_parse (ranker_t *self, const Strata__V1__ServeJob *job, req_t *r, void **inner);
//  ranker_request.c: whether item passes the request's filters (price, category).
bool ranker_passes (const ranker_t *self, const req_t *r, uint32_t item);
//  ranker_request.c: the best `want` items of scores (n items) that pass the filters
//  and are not marked, into self->top; returns how many.
int ranker_select (ranker_t *self, const req_t *r, const float *scores, uint32_t n, int want);
//  ranker_request.c: marks (v 1) or unmarks (v 0) what r leaves out.
void ranker_mark (ranker_t *self, const req_t *r, uint8_t v);

//  ranker_retrieve.c: every row's score for nq queries (nq x dim) into scores (nq x rows).
void ranker_exact_scores (served_t *s, const float *q, uint32_t nq, float *scores);
//  ranker_retrieve.c: the approximate index's candidates for nq queries, and every row
//  it does not cover: query k's are (*items, *scores) + k * *stride, counts[k] of them.
//  0, or STRATA_ENOMEM.
int ranker_ivf_candidates (ranker_t *self, served_t *s, const float *q, uint32_t nq, uint32_t **items,
                           float **scores, uint32_t *counts, uint32_t *stride);
//  ranker_retrieve.c: answers a RECOMMEND from its candidates (user vector vec, row
//  r->slot of the last batch), or from popularity when r->slot < 0.
void ranker_recommend (ranker_t *self, req_t *r, const cands_t *c, const float *vec);
//  ranker_retrieve.c: answers a SIMILAR.
void ranker_similar (ranker_t *self, req_t *r);
//  ranker_search.c: answers a SEARCH.
void ranker_search (ranker_t *self, req_t *r);

// ---------------------------------------------------------------- the rank worker

//  Where a catalogue refresh stands: idle, reading pages of items past those known,
//  reading the records written since the last change applied, or reading every page
//  again (the broker's change log no longer reaches back to the last change applied).
typedef enum { SYNC_IDLE, SYNC_PAGES, SYNC_CHANGES, SYNC_RELOAD } sync_t;

//  A version being fetched.
typedef struct {
    uint64_t version, fnv, bytes;
    uint32_t chunks, chunk_bytes, next, received;
    uint8_t *blob;
    uint8_t *have;            // per chunk
    int64_t last_reply;
    char *meta;
} download_t;

//  A fetched version being stored and loaded (index included) off the serving thread.
typedef struct {
    pthread_t thread;
    bool busy;                // a thread runs, or its result waits to be swapped in
    atomic_bool done;
    download_t dl;            // owned by the thread while it runs
    sample_t sample;          // likewise
    served_t *result;         // NULL: the version did not load
} loader_t;

struct _rank_worker_t {
    rank_config_t cfg;
    ranker_t *core;
    store_t *store;
    zsock_t *trainer;
    download_t dl;
    loader_t loader;
    int64_t next_poll, next_catalogue;
    //  Catalogue refreshes, never waited on: one request out at a time on its own socket
    //  to the broker's api endpoint, each reply applied as it comes.
    zsock_t *broker;
    sync_t sync;              // what the request out asks for
    int64_t sync_sent;        // when it went
    uint64_t sync_updated;    // records updated in this refresh
    uint32_t reload_at;       // SYNC_RELOAD: the next page's first item
    bool reload_due;          // the next refresh reads every page again
};

//  rank_versions.c: the worker's RocksDB (NULL: logged by the store).
store_t *rank_versions_open (const char *dir);
//  rank_versions.c: the newest complete version in the worker's store, loaded into
//  the core; nothing when there is none (or it is damaged: logged).
void rank_versions_load_stored (rank_worker_t *self);
//  rank_versions.c: reads what the trainer sent (version info, chunks, errors).
void rank_versions_input (rank_worker_t *self);
//  rank_versions.c: version polls and download timeouts.
void rank_versions_tick (rank_worker_t *self, int64_t now);
//  rank_versions.c: swaps in what the loader has finished, if anything; with wait,
//  waits for it first.
void rank_versions_swap_loaded (rank_worker_t *self, bool wait);
//  rank_versions.c: drops a download in progress (the loader is waited for first).
void rank_versions_stop (rank_worker_t *self);

//  rank_catalogue.c: a socket for requests to the broker's api endpoint, or NULL (logged).
zsock_t *rank_catalogue_socket (const char *endpoint);
//  rank_catalogue.c: the whole catalogue at start-up, waiting for each reply.
void rank_catalogue_load (rank_worker_t *self);
//  rank_catalogue.c: reads the broker's replies to catalogue refreshes.
void rank_catalogue_input (rank_worker_t *self);
//  rank_catalogue.c: starts a refresh when one is due, gives up on one not answered.
void rank_catalogue_tick (rank_worker_t *self, int64_t now);
//  rank_catalogue.c: a sample of users' histories from the broker (empty when it does
//  not answer), for tuning a version's approximate index.
void rank_catalogue_sample (rank_worker_t *self, sample_t *out);

#endif
