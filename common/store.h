/*  store: a RocksDB database with named column families, as every durable Strata
    component uses it (the broker's knowledge store, later the trainer's checkpoints and
    the rank workers' embeddings).

    Thin on purpose: callers build rocksdb_writebatch_t themselves, because applying a
    unit of work atomically in one WriteBatch is the point. What the wrapper adds is one
    way to open with sane options, error conversion at the boundary (RocksDB's errptr
    becomes a negative code and a logged message, and is freed), and the small helpers
    every caller would otherwise write twice.
*/
#ifndef STRATA_STORE_H
#define STRATA_STORE_H

#include <rocksdb/c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "strata_error.h"

typedef struct _store_t store_t;

//  Codes: STRATA_OK, STRATA_ENOTFOUND, STRATA_EIO (strata_error.h).

//  Opens (creating if needed) the database at path with the given column families
//  (cf_names[0] must be "default"). Returns NULL and logs the reason on failure.
store_t *store_open (const char *path, const char *const *cf_names, int cf_count);

//  Flushes and closes; safe on NULL and twice.
void store_destroy (store_t **self_p);

rocksdb_t *store_db (store_t *self);
rocksdb_column_family_handle_t *store_cf (store_t *self, int cf);

//  Reads a value. Returns a malloc'd buffer (caller frees with free()) and its length in
//  *len, or NULL when absent (rc STRATA_ENOTFOUND) or on error (STRATA_EIO), via *rc.
char *store_get (store_t *self, int cf, const void *key, size_t klen, size_t *len, int *rc);

//  Point write / delete, not synced.
int store_put (store_t *self, int cf, const void *key, size_t klen, const void *val, size_t vlen);

//  Applies a batch atomically; sync forces the WAL to disk before returning.
int store_write (store_t *self, rocksdb_writebatch_t *batch, bool sync);

//  Makes every write so far (written with sync false) durable: fsyncs the write-ahead
//  log. Safe to call from another thread while writes go on; they do not wait for it.
int store_sync_wal (store_t *self);

//  Applies a batch atomically without writing it to the WAL. Only for writes that can
//  be redone from something logged (the store flushes all column families atomically,
//  so an unlogged batch is either wholly on disk after a crash or wholly absent).
int store_write_unlogged (store_t *self, rocksdb_writebatch_t *batch);

//  A new iterator over one column family; destroy with rocksdb_iter_destroy.
rocksdb_iterator_t *store_iter (store_t *self, int cf);

//  Counter helpers: a u64 stored big-endian under key in cf; 0 when absent.
uint64_t store_get_u64 (store_t *self, int cf, const char *key);
void store_batch_put_u64 (store_t *self, rocksdb_writebatch_t *batch, int cf, const char *key,
                          uint64_t value);

#endif
