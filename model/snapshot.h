/*  snapshot: a published model version as one self-describing blob: what the trainer
    stores per version and rank workers fetch (in chunks, verified by hash), keep in
    their own RocksDB and serve from.

    Layout: the magic "STRATASNAP1\n"; a little-endian uint32 n and n bytes of header
    JSON {"version", "dim", "max_len", "blocks", "ffn", "rank_negatives",
    "rank_widths": [..], "items", "dense", "feature_rows", "meta": {...}}, zero-padded
    to a multiple of 4 bytes; then floats (host order, little-endian on every supported
    machine): the dense tensors (model_dense_get order), every item's vector (items x
    dim, already composed from its row and catalogue features), every item's
    popularity (items floats, the time-decayed event count that serves users with no
    history), and the item tower's feature table (feature_rows x dim; absent when 0:
    what gives an item added after the version a vector, item_features.h), and, when
    the header says "conversions": true, how often searchers chose each item (items
    floats); then "terms_bytes" bytes of learned search associations (query_terms.h):
    per term, a length byte, the term, a uint32 count and count (uint32 item, float
    weight). The header's optional "search_ranker" holds the learned search ranker's
    SEARCH_FEATURES weights (search_rank.h).
*/
#ifndef STRATA_SNAPSHOT_H
#define STRATA_SNAPSHOT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "query_terms.h"
#include "search.h"

#define SNAPSHOT_MAGIC "STRATASNAP1\n"

//  What a version carries for search, each part optional (NULL).
typedef struct {
    const query_terms_t *terms;   // learned (term, item) associations
    const float *ranker;          // SEARCH_FEATURES weights of the search ranker
    const float *conversions;     // model_rows floats: how often searchers chose each item
} snapshot_search_t;

//  The blob of model m (its features set, if any) as `version`, with popularity
//  (model_rows floats), what it carries for search (may be NULL) and meta (borrowed,
//  embedded as "meta"). malloc'd; NULL on no memory.
uint8_t *snapshot_build (model_t *m, uint64_t version, const float *popularity, const snapshot_search_t *search,
                         json_t *meta, size_t *len);

typedef struct {
    uint64_t version;
    uint32_t items;
    int dim;
    float *popularity;   // items floats (owned)
    float *features;     // the item tower's feature table, feature_rows x dim (owned; NULL: none)
    uint32_t feature_rows;
    query_terms_t *terms; // learned search terms (owned; empty when none)
    float ranker[SEARCH_FEATURES]; // the search ranker's weights, when has_ranker
    bool has_ranker;
    float *conversions;  // items floats: how often searchers chose each item (owned; NULL: none)
    json_t *meta;        // the version's meta (owned)
} snapshot_info_t;

//  Parses a blob into a serving model (inference, `batch` users per call; its table
//  holds the item vectors, no features) and info. NULL with err on a malformed blob.
model_t *snapshot_load (const uint8_t *blob, size_t len, int batch, snapshot_info_t *info, char *err, size_t errlen);
void snapshot_info_free (snapshot_info_t *info);

#endif
