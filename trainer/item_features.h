/*  item_features: what the catalogue says about each item, as rows of a hashed feature
    table, for the model's item tower.

    An item's features are its brand, each level of its category path, its price bucket
    (half-octaves of the price), each attribute key=value, and its title tokens, each
    hashed (FNV-1a with a kind prefix) into `rows` rows; at most FEATURES_PER_ITEM per
    item, duplicates dropped. An item the catalogue never described has none. Built from
    the broker's CATALOGUE export, or from lists (tests).
*/
#ifndef STRATA_ITEM_FEATURES_H
#define STRATA_ITEM_FEATURES_H

#include <stddef.h>
#include <stdint.h>

#define FEATURES_PER_ITEM 32

typedef struct {
    uint32_t n_items;
    uint32_t rows;        // hashed feature rows
    uint32_t *offsets;    // n_items + 1
    uint32_t *feats;      // feature rows of item i: feats[offsets[i] .. offsets[i+1])
    size_t n_described;   // items with at least one feature
} features_t;

struct Strata__V1__Item;
//  Called with each catalogue item, in index order; 0, or -1 to stop (no memory).
typedef int (features_item_fn) (const struct Strata__V1__Item *item, void *arg);

//  Fetches the catalogue from a broker's api endpoint; items up to at least n_items
//  (the dataset's). rows 0: no features, only the items given to each (may be NULL).
//  NULL with err on failure.
features_t *features_fetch (const char *endpoint, uint32_t rows, uint32_t n_items, int timeout_ms,
                            features_item_fn *each, void *arg, char *err, size_t errlen);

//  From per-item lists (copied); feats values must be < rows.
features_t *features_from_lists (uint32_t n_items, uint32_t rows, const uint32_t *offsets, const uint32_t *feats);

void features_destroy (features_t **self_p);

//  The feature hashes of a catalogue item, in order (brand, category levels, price
//  bucket, attributes, title tokens), duplicates dropped: at most cap of them into
//  out; returns how many. Feature h is row h % rows of a table of `rows` rows; an
//  item's rows are the first FEATURES_PER_ITEM distinct ones.
int features_hashes (const struct Strata__V1__Item *it, uint64_t *out, int cap);

//  The rows of n feature hashes in a table of `rows` rows: the first FEATURES_PER_ITEM
//  distinct ones, into out; returns how many.
int features_rows_of (const uint64_t *hashes, int n, uint32_t rows, uint32_t *out);

#endif
