/*  features_fetch: the catalogue's item-tower features (model/item_features.h), read
    from a broker's api endpoint (CATALOGUE pages, in item order) for training.
*/
#ifndef STRATA_FEATURES_FETCH_H
#define STRATA_FEATURES_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "item_features.h"

struct Strata__V1__Item;
//  Called with each catalogue item, in index order; 0, or a negative STRATA_E... code
//  to stop (STRATA_ENOMEM).
typedef int (features_item_fn) (const struct Strata__V1__Item *item, void *arg);

//  Fetches the catalogue from a broker's api endpoint; items up to at least n_items
//  (the dataset's). rows 0: no features, only the items given to each (may be NULL).
//  NULL with err on failure.
features_t *features_fetch (const char *endpoint, uint32_t rows, uint32_t n_items, int timeout_ms,
                            features_item_fn *each, void *arg, char *err, size_t errlen);

#endif
