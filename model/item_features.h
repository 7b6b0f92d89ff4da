/*  item_features: what the catalogue says about each item, as rows of a hashed feature
    table, for the model's item tower.

    An item's features are its brand, each level of its category path, its price bucket
    (half-octaves of the price), each attribute key=value, and its title tokens, each
    hashed (FNV-1a with a kind prefix) into `rows` rows; at most FEATURES_PER_ITEM per
    item, duplicates dropped. An item the catalogue never described has none. Built from
    catalogue items (the trainer reads the broker's CATALOGUE export, a rank worker its
    catalogue sync), or from lists (tests).
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
typedef struct _features_builder_t features_builder_t;

//  Builds a feature table of `rows` rows from catalogue items given in index order
//  (trainer/features_fetch.h reads them from the broker): n_items is how many the
//  caller expects (more may come). NULL on no memory.
features_builder_t *features_builder_new (uint32_t rows, uint32_t n_items);
void features_builder_destroy (features_builder_t **self_p);

//  The catalogue says it holds `items` items: room for them. 0 or STRATA_ENOMEM.
int features_builder_expect (features_builder_t *self, uint32_t items);

//  Adds an item's features (indices the items skip have none). 0, 1 when the item is
//  out of order or beyond what was expected (ignored), or STRATA_ENOMEM.
int features_builder_add (features_builder_t *self, const struct Strata__V1__Item *it);

//  The table over n_items items (at least those added); destroys the builder. NULL on
//  no memory.
features_t *features_builder_finish (features_builder_t **self_p, uint32_t n_items);

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
