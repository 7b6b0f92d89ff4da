/*  checkpoint: see checkpoint.h. */
#define LOG_MODULE "checkpoint"
#include "checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

static const char *const s_cfs[CKPT_CF_COUNT] = { "default", "checkpoint", "models" };

#define META_TENSOR 0xFFFFFFFFu

store_t *
checkpoint_open (const char *path)
{
    return store_open (path, s_cfs, CKPT_CF_COUNT);
}

//  Key of tensor i's part ('w', 'm' or 'v').
static size_t
s_tensor_key (char *key, int i, char part)
{
    key[0] = 'T';
    util_put_be32 ((unsigned char *) key + 1, (uint32_t) i);
    key[5] = part;
    return 6;
}

int
checkpoint_save (store_t *st, model_t *m, const char *state_json)
{
    rocksdb_writebatch_t *b = rocksdb_writebatch_create ();
    rocksdb_column_family_handle_t *cf = store_cf (st, CKPT_CF_CHECKPOINT);
    for (int i = 0; i < model_tensor_count (m); i++) {
        size_t n;
        float *mom, *var;
        float *w = model_tensor (m, i, NULL, &n, NULL);
        model_tensor_state (m, i, &mom, &var);
        const float *parts[3] = { w, mom, var };
        const char names[3] = { 'w', 'm', 'v' };
        for (int p = 0; p < 3; p++) {
            char key[8];
            size_t kl = s_tensor_key (key, i, names[p]);
            rocksdb_writebatch_put_cf (b, cf, key, kl, (const char *) parts[p], n * sizeof (float));
        }
    }
    uint32_t rows = model_rows (m);
    rocksdb_writebatch_put_cf (b, cf, "rows", 4, (const char *) &rows, sizeof rows);
    rocksdb_writebatch_put_cf (b, cf, "row_step", 8, (const char *) model_row_steps (m), rows * sizeof (int64_t));
    rocksdb_writebatch_put_cf (b, cf, "feat_step", 9, (const char *) model_feature_steps (m),
                               model_feature_rows (m) * sizeof (int64_t));
    rocksdb_writebatch_put_cf (b, cf, "step", 4, (const char *) model_step (m), sizeof (int64_t));
    rocksdb_writebatch_put_cf (b, cf, "state", 5, state_json, strlen (state_json));
    int rc = store_write (st, b, true);
    rocksdb_writebatch_destroy (b);
    return rc < 0 ? -1 : 0;
}

//  A value as a NUL-terminated string (malloc'd), or NULL.
static char *
s_get_text (store_t *st, int cf, const void *key, size_t klen)
{
    size_t len;
    int rc;
    char *v = store_get (st, cf, key, klen, &len, &rc);
    if (!v)
        return NULL;
    char *s = realloc (v, len + 1);
    if (!s) {
        free (v);
        return NULL;
    }
    s[len] = 0;
    return s;
}

char *
checkpoint_state (store_t *st)
{
    return s_get_text (st, CKPT_CF_CHECKPOINT, "state", 5);
}

//  Reads key into dst, which must be exactly size bytes. 0 or -1.
static int
s_read_exact (store_t *st, const char *key, size_t kl, void *dst, size_t size)
{
    size_t len;
    int rc;
    char *v = store_get (st, CKPT_CF_CHECKPOINT, key, kl, &len, &rc);
    if (!v || len != size) {
        free (v);
        return -1;
    }
    memcpy (dst, v, size);
    free (v);
    return 0;
}

int
checkpoint_load (store_t *st, model_t *m)
{
    uint32_t rows;
    if (s_read_exact (st, "rows", 4, &rows, sizeof rows) < 0 || model_resize_rows (m, rows) < 0)
        return -1;
    for (int i = 0; i < model_tensor_count (m); i++) {
        size_t n;
        float *mom, *var;
        float *w = model_tensor (m, i, NULL, &n, NULL);
        model_tensor_state (m, i, &mom, &var);
        float *parts[3] = { w, mom, var };
        const char names[3] = { 'w', 'm', 'v' };
        for (int p = 0; p < 3; p++) {
            char key[8];
            size_t kl = s_tensor_key (key, i, names[p]);
            if (s_read_exact (st, key, kl, parts[p], n * sizeof (float)) < 0) {
                log_warn ("checkpoint tensor %d does not match the configured model", i);
                return -1;
            }
        }
    }
    if (s_read_exact (st, "row_step", 8, model_row_steps (m), rows * sizeof (int64_t)) < 0
        || s_read_exact (st, "feat_step", 9, model_feature_steps (m), model_feature_rows (m) * sizeof (int64_t)) < 0
        || s_read_exact (st, "step", 4, model_step (m), sizeof (int64_t)) < 0)
        return -1;
    return 0;
}

static size_t
s_model_key (char *key, uint64_t version, uint32_t tensor)
{
    util_put_be64 ((unsigned char *) key, version);
    util_put_be32 ((unsigned char *) key + 8, tensor);
    return 12;
}

int
checkpoint_publish (store_t *st, uint64_t version, const uint8_t *blob, size_t len, json_t *meta, int keep)
{
    char blob_hex[17];
    snprintf (blob_hex, sizeof blob_hex, "%016llx", (unsigned long long) util_fnv1a64 (blob, len));
    json_object_set_new (meta, "bytes", json_integer ((json_int_t) len));
    json_object_set_new (meta, "chunk_bytes", json_integer (CHECKPOINT_CHUNK_BYTES));
    json_object_set_new (meta, "chunks",
                         json_integer ((json_int_t) ((len + CHECKPOINT_CHUNK_BYTES - 1) / CHECKPOINT_CHUNK_BYTES)));
    json_object_set_new (meta, "fnv", json_string (blob_hex));
    char *meta_json = json_dumps (meta, JSON_COMPACT);
    if (!meta_json)
        return -1;
    rocksdb_writebatch_t *b = rocksdb_writebatch_create ();
    rocksdb_column_family_handle_t *cf = store_cf (st, CKPT_CF_MODELS);
    char key[12];
    uint32_t chunk = 0;
    for (size_t off = 0; off < len; off += CHECKPOINT_CHUNK_BYTES, chunk++) {
        size_t n = len - off < CHECKPOINT_CHUNK_BYTES ? len - off : CHECKPOINT_CHUNK_BYTES;
        s_model_key (key, version, chunk);
        rocksdb_writebatch_put_cf (b, cf, key, sizeof key, (const char *) blob + off, n);
    }
    s_model_key (key, version, META_TENSOR);
    rocksdb_writebatch_put_cf (b, cf, key, sizeof key, meta_json, strlen (meta_json));
    if (keep > 0 && version > (uint64_t) keep) {
        char from[12], to[12];
        s_model_key (from, 0, 0);
        s_model_key (to, version - (uint64_t) keep + 1, 0);
        rocksdb_writebatch_delete_range_cf (b, cf, from, sizeof from, to, sizeof to);
    }
    int rc = store_write (st, b, true);
    rocksdb_writebatch_destroy (b);
    free (meta_json);
    return rc < 0 ? -1 : 0;
}

uint64_t
checkpoint_latest (store_t *st)
{
    rocksdb_iterator_t *it = store_iter (st, CKPT_CF_MODELS);
    uint64_t v = 0;
    rocksdb_iter_seek_to_last (it);
    if (rocksdb_iter_valid (it)) {
        size_t kl;
        const char *k = rocksdb_iter_key (it, &kl);
        if (kl == 12)
            v = util_get_be64 ((const unsigned char *) k);
    }
    rocksdb_iter_destroy (it);
    return v;
}

char *
checkpoint_chunk (store_t *st, uint64_t version, uint32_t index, size_t *len)
{
    char key[12];
    s_model_key (key, version, index);
    int rc;
    return store_get (st, CKPT_CF_MODELS, key, sizeof key, len, &rc);
}

char *
checkpoint_version_meta (store_t *st, uint64_t version)
{
    char key[12];
    s_model_key (key, version, META_TENSOR);
    return s_get_text (st, CKPT_CF_MODELS, key, sizeof key);
}
