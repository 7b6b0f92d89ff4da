/*  dataset: user behaviour sequences in memory, for training and offline evaluation.

    Compressed rows: the events of user u are items[offsets[u] .. offsets[u+1]), in time
    order, with their types and timestamps beside them. Only events that name an item
    are kept (a search without a clicked item has nothing to learn an item from yet).
    Built from the broker's HISTORY export, or from arrays (tests, synthetic data).

    Leave-one-out: for a user with at least 3 events the last is the test target, the one
    before it the validation target, the rest training; users with fewer events are
    training data only. dataset_holdout gives the training view that hides the last
    `hide` events of each such user, and the targets.
*/
#ifndef STRATA_DATASET_H
#define STRATA_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "query_terms.h"

#define DATASET_NO_TARGET UINT32_MAX

typedef struct {
    uint32_t n_users;
    uint32_t n_items;
    size_t n_events;
    uint32_t *offsets;   // n_users + 1
    uint32_t *items;     // n_events
    uint8_t *types;      // n_events (EventType)
    int64_t *ts;         // n_events
    query_terms_t *terms; // what searchers chose, per query term (dataset_fetch), or NULL
    query_terms_t *choices; // the same per whole query (dataset_fetch), or NULL
} dataset_t;

//  Fetches every user's history from a broker's api endpoint, and from its searches the
//  terms' associations with what followed them (query_terms.h). NULL with err on
//  failure.
dataset_t *dataset_fetch (const char *endpoint, int timeout_ms, char *err, size_t errlen);

//  Builds a dataset from parallel arrays of n events (any order; sorted here by user,
//  then timestamp, keeping the given order for equal timestamps).
dataset_t *dataset_from_arrays (uint32_t n_users, uint32_t n_items, size_t n, const uint32_t *users,
                                const uint32_t *items, const uint8_t *types, const int64_t *ts);

void dataset_destroy (dataset_t **self_p);

//  The training view with the last `hide` events of every user with >= 3 events removed;
//  targets (n_users entries, caller frees) gets the event at position len - hide for
//  those users, DATASET_NO_TARGET for the others. hide is 1 (test) or 2 (validation).
dataset_t *dataset_holdout (const dataset_t *self, int hide, uint32_t **targets);

//  The same for only the users u with only[u] != 0 (NULL: all).
dataset_t *dataset_holdout_some (const dataset_t *self, int hide, const uint8_t *only, uint32_t **targets);

//  Time-decayed popularity: each event counts 2^(-age / half_life), its age taken from
//  the newest event (events without timestamps count 1). out: n_items floats. What a
//  snapshot carries (snapshot.h) to serve users with no history.
void dataset_popularity (const dataset_t *data, uint32_t n_items, double half_life_ms, float *out);

static inline uint32_t
dataset_len (const dataset_t *d, uint32_t user)
{
    return d->offsets[user + 1] - d->offsets[user];
}

#endif
