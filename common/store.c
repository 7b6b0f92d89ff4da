/*  store: see store.h. */
#define LOG_MODULE "store"
#include "store.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define STORE_MAX_CF 16

struct _store_t {
    rocksdb_t *db;
    rocksdb_options_t *options;
    rocksdb_env_t *env;       // the process's default environment, its threads lowered
    rocksdb_writeoptions_t *wopt;
    rocksdb_writeoptions_t *wopt_sync;
    rocksdb_writeoptions_t *wopt_nowal;
    rocksdb_readoptions_t *ropt;
    rocksdb_block_based_table_options_t *table;
    rocksdb_cache_t *cache;
    rocksdb_filterpolicy_t *bloom;
    int cf_count;
    rocksdb_column_family_handle_t *cfs[STORE_MAX_CF];
};

store_t *
store_open (const char *path, const char *const *cf_names, int cf_count)
{
    if (cf_count < 1 || cf_count > STORE_MAX_CF)
        return NULL;
    store_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->cf_count = cf_count;
    self->options = rocksdb_options_create ();
    //  Flushes and compactions yield the CPU to the threads that serve: the process's
    //  RocksDB threads run at the lowest priority (nice 19, within the process's own
    //  share of the CPU), each from its first job.
    self->env = rocksdb_create_default_env ();
    rocksdb_env_lower_thread_pool_cpu_priority (self->env);
    rocksdb_env_lower_high_priority_thread_pool_cpu_priority (self->env);
    rocksdb_options_set_env (self->options, self->env);
    rocksdb_options_set_create_if_missing (self->options, 1);
    rocksdb_options_set_create_missing_column_families (self->options, 1);
    rocksdb_options_increase_parallelism (self->options, 2);
    rocksdb_options_set_max_background_jobs (self->options, 2);
    rocksdb_options_set_compression (self->options, rocksdb_lz4_compression);
    rocksdb_options_set_write_buffer_size (self->options, 32 << 20);
    rocksdb_options_set_keep_log_file_num (self->options, 4);
    //  Column families flush together, so that a batch written without the WAL is never
    //  half on disk (see store_write_unlogged).
    rocksdb_options_set_atomic_flush (self->options, 1);

    //  Point lookups (dedupe, dictionaries) dominate reads: bloom filters and a block cache.
    self->table = rocksdb_block_based_options_create ();
    self->bloom = rocksdb_filterpolicy_create_bloom_full (10);
    rocksdb_block_based_options_set_filter_policy (self->table, self->bloom);
    self->cache = rocksdb_cache_create_lru (64 << 20);
    rocksdb_block_based_options_set_block_cache (self->table, self->cache);
    rocksdb_options_set_block_based_table_factory (self->options, self->table);

    const rocksdb_options_t *cf_opts[STORE_MAX_CF];
    for (int i = 0; i < cf_count; i++)
        cf_opts[i] = self->options;
    char *err = NULL;
    self->db = rocksdb_open_column_families (self->options, path, cf_count, (const char **) cf_names,
                                             cf_opts, self->cfs, &err);
    if (err) {
        log_error ("cannot open RocksDB at %s: %s", path, err);
        rocksdb_free (err);
        store_destroy (&self);
        return NULL;
    }
    self->wopt = rocksdb_writeoptions_create ();
    self->wopt_sync = rocksdb_writeoptions_create ();
    rocksdb_writeoptions_set_sync (self->wopt_sync, 1);
    self->wopt_nowal = rocksdb_writeoptions_create ();
    rocksdb_writeoptions_disable_WAL (self->wopt_nowal, 1);
    self->ropt = rocksdb_readoptions_create ();
    return self;
}

void
store_destroy (store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    store_t *self = *self_p;
    if (self->db) {
        for (int i = 0; i < self->cf_count; i++)
            if (self->cfs[i])
                rocksdb_column_family_handle_destroy (self->cfs[i]);
        rocksdb_close (self->db);
    }
    if (self->wopt)
        rocksdb_writeoptions_destroy (self->wopt);
    if (self->wopt_sync)
        rocksdb_writeoptions_destroy (self->wopt_sync);
    if (self->wopt_nowal)
        rocksdb_writeoptions_destroy (self->wopt_nowal);
    if (self->ropt)
        rocksdb_readoptions_destroy (self->ropt);
    if (self->options)
        rocksdb_options_destroy (self->options);
    if (self->env)
        rocksdb_env_destroy (self->env);   // the wrapper: the default environment stays
    if (self->table)
        rocksdb_block_based_options_destroy (self->table);
    if (self->cache)
        rocksdb_cache_destroy (self->cache);
    free (self);
    *self_p = NULL;
}

rocksdb_t *
store_db (store_t *self)
{
    return self->db;
}

rocksdb_column_family_handle_t *
store_cf (store_t *self, int cf)
{
    return self->cfs[cf];
}

char *
store_get (store_t *self, int cf, const void *key, size_t klen, size_t *len, int *rc)
{
    char *err = NULL;
    size_t vlen = 0;
    char *v = rocksdb_get_cf (self->db, self->ropt, self->cfs[cf], key, klen, &vlen, &err);
    if (err) {
        log_error ("get failed: %s", err);
        rocksdb_free (err);
        if (rc)
            *rc = STRATA_EIO;
        return NULL;
    }
    if (rc)
        *rc = v ? STRATA_OK : STRATA_ENOTFOUND;
    if (len)
        *len = vlen;
    return v;
}

int
store_put (store_t *self, int cf, const void *key, size_t klen, const void *val, size_t vlen)
{
    char *err = NULL;
    rocksdb_put_cf (self->db, self->wopt, self->cfs[cf], key, klen, val, vlen, &err);
    if (err) {
        log_error ("put failed: %s", err);
        rocksdb_free (err);
        return STRATA_EIO;
    }
    return STRATA_OK;
}

int
store_write (store_t *self, rocksdb_writebatch_t *batch, bool sync)
{
    char *err = NULL;
    rocksdb_write (self->db, sync ? self->wopt_sync : self->wopt, batch, &err);
    if (err) {
        log_error ("write failed: %s", err);
        rocksdb_free (err);
        return STRATA_EIO;
    }
    return STRATA_OK;
}

int
store_sync_wal (store_t *self)
{
    char *err = NULL;
    rocksdb_flush_wal (self->db, 1, &err);
    if (err) {
        log_error ("write-ahead log sync failed: %s", err);
        rocksdb_free (err);
        return STRATA_EIO;
    }
    return STRATA_OK;
}

int
store_write_unlogged (store_t *self, rocksdb_writebatch_t *batch)
{
    char *err = NULL;
    rocksdb_write (self->db, self->wopt_nowal, batch, &err);
    if (err) {
        log_error ("write failed: %s", err);
        rocksdb_free (err);
        return STRATA_EIO;
    }
    return STRATA_OK;
}

rocksdb_iterator_t *
store_iter (store_t *self, int cf)
{
    return rocksdb_create_iterator_cf (self->db, self->ropt, self->cfs[cf]);
}

uint64_t
store_get_u64 (store_t *self, int cf, const char *key)
{
    size_t len = 0;
    char *v = store_get (self, cf, key, strlen (key), &len, NULL);
    uint64_t r = (v && len == 8) ? util_get_be64 ((const unsigned char *) v) : 0;
    free (v);
    return r;
}

void
store_batch_put_u64 (store_t *self, rocksdb_writebatch_t *batch, int cf, const char *key, uint64_t value)
{
    unsigned char buf[8];
    util_put_be64 (buf, value);
    rocksdb_writebatch_put_cf (batch, self->cfs[cf], key, strlen (key), (const char *) buf, 8);
}
