/*  dedupe: the broker's in-memory index of every stored event id.

    Each stored event is found by the 64-bit hash of its event id, which maps to the
    event's place in the events column family (user index, timestamp). A new event whose
    hash is absent is new for certain, with no storage read; a hash that is present is
    verified by reading that one stored event and comparing ids, so a hash collision
    never drops an event silently. Keeping this index in memory instead of a dedupe
    column family halves the RocksDB writes per event (the events key already carries
    the hash), which is most of the broker's ingest cost. It costs about 32 bytes per
    stored event and is rebuilt at start-up from the keys of the events column family
    alone.

    Open addressing with linear probing, grown incrementally (no insert moves more than
    a few dozen entries); hash 0 is reserved as the empty marker (a real 0 is stored
    as 1). A table of megabytes has its successor mapped and faulted in by a thread of
    its own while it fills, so that no insert waits on the kernel for new memory. One
    thread owns a dedupe_t.
*/
#ifndef STRATA_DEDUPE_H
#define STRATA_DEDUPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "strata_error.h"

typedef struct _dedupe_t dedupe_t;

dedupe_t *dedupe_new (size_t expected);
void dedupe_destroy (dedupe_t **self_p);

//  Normalised hash of an event id (never 0).
uint64_t dedupe_hash (const char *event_id, size_t len);

//  Starts fetching the memory that finding or adding hash reads, without waiting for
//  it: called a few events ahead of dedupe_find, the fetches of several lookups
//  overlap (the table is far larger than the caches).
void dedupe_prefetch (const dedupe_t *self, uint64_t hash);

//  Finds a hash; fills the stored event's user and timestamp. False when absent.
bool dedupe_find (dedupe_t *self, uint64_t hash, uint32_t *user, int64_t *ts);

//  Adds a hash (a present hash keeps its first location). Returns 0, or STRATA_ENOMEM
//  when the table is due to grow and no memory is given for the bigger one (nothing
//  added; every entry is still found, and the next insert tries again).
int dedupe_insert (dedupe_t *self, uint64_t hash, uint32_t user, int64_t ts);

//  True while the entries move to a bigger table (a few with each insert; lookups see
//  them all meanwhile).
bool dedupe_growing (dedupe_t *self);

//  True once the next table is ready, mapped and faulted in, ahead of the growth that
//  takes it (from a load of 0.5 on tables of 1 MB or more).
bool dedupe_next_prepared (dedupe_t *self);

size_t dedupe_size (dedupe_t *self);
size_t dedupe_bytes (dedupe_t *self);

#endif
