/*  recent: the broker's in-memory cache of users' recent histories, the events a
    RECOMMEND (or a SEARCH naming a user) carries to a rank worker.

    Reading a history from the store costs an iterator, a seek and a decode per event;
    a user who asks again (a storefront asks on every page) is answered from memory.
    The cache is direct-mapped by user index (dense indices make neighbours distinct
    up to the slot count) and holds each user's history as it was read for a given
    length. Its owner drops a user's entry whenever it stores an event of theirs, so an
    entry is never stale. One thread owns a recent_t.
*/
#ifndef STRATA_RECENT_H
#define STRATA_RECENT_H

#include <stdint.h>

#include "arena.h"
#include "strata.pb-c.h"
#include "strata_error.h"

typedef struct _recent_t recent_t;

//  A cache of `slots` users (0: a cache that holds nothing). NULL on no memory.
recent_t *recent_new (uint32_t slots);
void recent_destroy (recent_t **self_p);

//  The user's cached history for max events, copied into arena (oldest first): how
//  many events, STRATA_ENOTFOUND when it is not cached (a miss), or STRATA_ENOMEM when
//  arena is out of memory.
int recent_get (recent_t *self, uint32_t user, uint32_t max, arena_t *arena, Strata__V1__Interaction ***out);

//  Caches a history just read for max events (n of them). Quietly keeps nothing when
//  memory runs out.
void recent_put (recent_t *self, uint32_t user, uint32_t max, Strata__V1__Interaction *const *h, int n);

//  Forgets the user's history (an event of theirs is being stored).
void recent_drop (recent_t *self, uint32_t user);

//  Lookups answered from memory and not.
void recent_counts (recent_t *self, uint64_t *hits, uint64_t *misses);

#endif
