/*  user_cache: a rank worker's user vectors, by history.

    A storefront asks for a user's recommendations on every page they open, and a
    user's vector depends only on their history (items and event types, oldest first)
    and on the model: between two events of theirs, every request would run the user
    tower again on the same input. This cache keeps the vector under a 64-bit hash of
    the history. It is direct-mapped (one slot per hash value modulo the slot count; a
    new history takes the slot) and is cleared in O(1) by its owner whenever the vectors
    the tower reads change: a new model version, or a new item's features. One thread
    owns a user_cache_t.
*/
#ifndef STRATA_USER_CACHE_H
#define STRATA_USER_CACHE_H

#include <stdbool.h>
#include <stdint.h>

typedef struct _user_cache_t user_cache_t;

//  A cache of `slots` vectors of dim floats (0 slots: one that keeps nothing). NULL on
//  no memory.
user_cache_t *user_cache_new (uint32_t slots, int dim);
void user_cache_destroy (user_cache_t **self_p);

//  A history's key: its n items and their event types (types may be NULL: all 0).
uint64_t user_cache_key (const uint32_t *items, const uint8_t *types, uint32_t n);

//  The vector cached under key into out (dim floats): true, or false (a miss).
bool user_cache_get (user_cache_t *self, uint64_t key, float *out);

//  Keeps vec under key.
void user_cache_put (user_cache_t *self, uint64_t key, const float *vec);

//  Forgets every vector; a cache for vectors of dim floats from now on.
void user_cache_clear (user_cache_t *self, int dim);

void user_cache_counts (const user_cache_t *self, uint64_t *hits, uint64_t *misses);

#endif
