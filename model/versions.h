/*  versions: published model versions (snapshot.h blobs) kept in one column family of
    a store, the one implementation used by the trainer, which publishes them, and by
    rank workers, which keep what they fetched.

    A version is cut into chunks of chunk_bytes: key (version BE64, chunk BE32) ->
    bytes, and (version, VERSIONS_META) -> the version's JSON meta, to which the store
    adds what a reader needs to fetch and verify it: "bytes", "chunk_bytes", "chunks"
    and "fnv" (FNV-1a 64 of the whole blob, in hex). A version is written in one synced
    WriteBatch, so a crash leaves it whole or absent, and only the newest `keep`
    versions are kept. Beside a version one derived blob may be kept (VERSIONS_EXTRA:
    a rank worker's built approximate index), dropped with it.

    Depends on common/ (store.h) only.
*/
#ifndef STRATA_VERSIONS_H
#define STRATA_VERSIONS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define VERSIONS_CHUNK_BYTES (1u << 20)   // the trainer's chunk size
#define VERSIONS_META 0xFFFFFFFFu         // chunk index of a version's meta
#define VERSIONS_EXTRA 0xFFFFFFFEu        // chunk index of its derived blob

//  What a version's meta says of its blob.
typedef struct {
    uint64_t version;
    uint64_t bytes;
    uint32_t chunks;
    uint32_t chunk_bytes;
    uint64_t fnv;
} versions_info_t;

//  Stores blob as `version` of the store's column family cf, in chunks of chunk_bytes,
//  with meta (borrowed, may be NULL; the blob's sizes and hash are added to it); fnv is
//  the blob's FNV-1a 64 if known (0: computed here). One synced write, which also drops
//  the versions older than the newest `keep` (0: keeps all). 0, STRATA_EINVAL,
//  STRATA_ENOMEM or STRATA_EIO.
int versions_put (store_t *st, int cf, uint64_t version, const uint8_t *blob, size_t len, uint32_t chunk_bytes,
                  uint64_t fnv, json_t *meta, int keep);

//  The newest complete version (0: none).
uint64_t versions_latest (store_t *st, int cf);

//  A version's meta as JSON text (malloc'd, NUL-terminated), or NULL when absent.
char *versions_meta (store_t *st, int cf, uint64_t version);

//  A version's meta parsed. 0, STRATA_ENOTFOUND, or STRATA_ECORRUPT.
int versions_info (store_t *st, int cf, uint64_t version, versions_info_t *out);

//  Chunk `index` of a version (malloc'd, *len bytes), or NULL when absent.
char *versions_chunk (store_t *st, int cf, uint64_t version, uint32_t index, size_t *len);

//  The whole blob of a version, checked against its meta's size and hash (malloc'd,
//  *len bytes), or NULL with *rc STRATA_ENOTFOUND, STRATA_ECORRUPT or STRATA_ENOMEM.
uint8_t *versions_read (store_t *st, int cf, uint64_t version, size_t *len, int *rc);

//  Keeps a derived blob beside a version (not synced: it can be made again). 0 or
//  STRATA_EIO.
int versions_put_extra (store_t *st, int cf, uint64_t version, const void *data, size_t len);

//  The derived blob kept beside a version (malloc'd, *len bytes), or NULL.
char *versions_extra (store_t *st, int cf, uint64_t version, size_t *len);

#endif
