/*  versions: see versions.h. */
#include "versions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata_error.h"
#include "util.h"

static size_t
s_key (char *key, uint64_t version, uint32_t chunk)
{
    util_put_be64 ((unsigned char *) key, version);
    util_put_be32 ((unsigned char *) key + 8, chunk);
    return 12;
}

int
versions_put (store_t *st, int cf, uint64_t version, const uint8_t *blob, size_t len, uint32_t chunk_bytes,
              uint64_t fnv, json_t *meta, int keep)
{
    if (!version || !chunk_bytes || (!blob && len))
        return STRATA_EINVAL;
    char fnv_hex[17];
    snprintf (fnv_hex, sizeof fnv_hex, "%016llx", (unsigned long long) (fnv ? fnv : util_fnv1a64 (blob, len)));
    json_t *m = meta ? json_incref (meta) : json_object ();
    if (!m)
        return STRATA_ENOMEM;
    uint32_t chunks = (uint32_t) ((len + chunk_bytes - 1) / chunk_bytes);
    json_object_set_new (m, "bytes", json_integer ((json_int_t) len));
    json_object_set_new (m, "chunk_bytes", json_integer ((json_int_t) chunk_bytes));
    json_object_set_new (m, "chunks", json_integer ((json_int_t) chunks));
    json_object_set_new (m, "fnv", json_string (fnv_hex));
    char *meta_json = json_dumps (m, JSON_COMPACT);
    json_decref (m);
    if (!meta_json)
        return STRATA_ENOMEM;
    rocksdb_writebatch_t *b = rocksdb_writebatch_create ();
    rocksdb_column_family_handle_t *h = store_cf (st, cf);
    char key[12];
    for (uint32_t c = 0; c < chunks; c++) {
        size_t off = (size_t) c * chunk_bytes, n = len - off < chunk_bytes ? len - off : chunk_bytes;
        s_key (key, version, c);
        rocksdb_writebatch_put_cf (b, h, key, sizeof key, (const char *) blob + off, n);
    }
    s_key (key, version, VERSIONS_META);
    rocksdb_writebatch_put_cf (b, h, key, sizeof key, meta_json, strlen (meta_json));
    if (keep > 0 && version > (uint64_t) keep) {
        char from[12], to[12];
        s_key (from, 0, 0);
        s_key (to, version - (uint64_t) keep + 1, 0);
        rocksdb_writebatch_delete_range_cf (b, h, from, sizeof from, to, sizeof to);
    }
    int rc = store_write (st, b, true);
    rocksdb_writebatch_destroy (b);
    free (meta_json);
    return rc < 0 ? STRATA_EIO : 0;
}

uint64_t
versions_latest (store_t *st, int cf)
{
    rocksdb_iterator_t *it = store_iter (st, cf);
    uint64_t version = 0;
    for (rocksdb_iter_seek_to_last (it); rocksdb_iter_valid (it) && !version; rocksdb_iter_prev (it)) {
        size_t kl;
        const char *k = rocksdb_iter_key (it, &kl);
        if (kl == 12 && util_get_be32 ((const unsigned char *) k + 8) == VERSIONS_META)
            version = util_get_be64 ((const unsigned char *) k);
    }
    rocksdb_iter_destroy (it);
    return version;
}

char *
versions_meta (store_t *st, int cf, uint64_t version)
{
    char key[12];
    size_t len;
    int rc;
    s_key (key, version, VERSIONS_META);
    char *v = store_get (st, cf, key, sizeof key, &len, &rc);
    char *text = v ? realloc (v, len + 1) : NULL;
    if (!text) {
        free (v);
        return NULL;
    }
    text[len] = 0;
    return text;
}

int
versions_info (store_t *st, int cf, uint64_t version, versions_info_t *out)
{
    memset (out, 0, sizeof *out);
    char *meta = versions_meta (st, cf, version);
    if (!meta)
        return STRATA_ENOTFOUND;
    json_t *j = json_loads (meta, 0, NULL);
    free (meta);
    json_t *bytes = json_object_get (j, "bytes"), *chunks = json_object_get (j, "chunks");
    json_t *chunk_bytes = json_object_get (j, "chunk_bytes");
    const char *fnv = json_string_value (json_object_get (j, "fnv"));
    int rc = STRATA_ECORRUPT;
    if (json_is_integer (bytes) && json_is_integer (chunks) && json_is_integer (chunk_bytes) && fnv
        && json_integer_value (bytes) >= 0 && json_integer_value (chunk_bytes) > 0) {
        out->version = version;
        out->bytes = (uint64_t) json_integer_value (bytes);
        out->chunks = (uint32_t) json_integer_value (chunks);
        out->chunk_bytes = (uint32_t) json_integer_value (chunk_bytes);
        out->fnv = strtoull (fnv, NULL, 16);
        rc = 0;
    }
    json_decref (j);
    return rc;
}

char *
versions_chunk (store_t *st, int cf, uint64_t version, uint32_t index, size_t *len)
{
    char key[12];
    int rc;
    s_key (key, version, index);
    return store_get (st, cf, key, sizeof key, len, &rc);
}

uint8_t *
versions_read (store_t *st, int cf, uint64_t version, size_t *len, int *rc)
{
    versions_info_t info;
    *len = 0;
    if ((*rc = versions_info (st, cf, version, &info)) < 0)
        return NULL;
    uint8_t *blob = malloc (info.bytes ? info.bytes : 1);
    if (!blob) {
        *rc = STRATA_ENOMEM;
        return NULL;
    }
    size_t off = 0;
    for (uint32_t c = 0; c < info.chunks; c++) {
        size_t n;
        char *v = versions_chunk (st, cf, version, c, &n);
        if (!v || off + n > info.bytes) {
            free (v);
            break;
        }
        memcpy (blob + off, v, n);
        off += n;
        free (v);
    }
    if (off != info.bytes || util_fnv1a64 (blob, info.bytes) != info.fnv) {
        free (blob);
        *rc = STRATA_ECORRUPT;
        return NULL;
    }
    *len = (size_t) info.bytes;
    *rc = 0;
    return blob;
}

int
versions_put_extra (store_t *st, int cf, uint64_t version, const void *data, size_t len)
{
    char key[12];
    s_key (key, version, VERSIONS_EXTRA);
    return store_put (st, cf, key, sizeof key, data, len) < 0 ? STRATA_EIO : 0;
}

char *
versions_extra (store_t *st, int cf, uint64_t version, size_t *len)
{
    return versions_chunk (st, cf, version, VERSIONS_EXTRA, len);
}
