/*  checkpoint: see checkpoint.h. */
#define LOG_MODULE "checkpoint"
#include "checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

static const char *const s_cfs[CKPT_CF_COUNT] = { "default", "checkpoint", "models" };

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
    return rc < 0 ? rc : 0;
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

//  Reads key into dst, which must be exactly size bytes. 0, STRATA_ENOTFOUND,
//  STRATA_EIO, or STRATA_ECORRUPT for a value of another size (another model's).
static int
s_read_exact (store_t *st, const char *key, size_t kl, void *dst, size_t size)
{
    size_t len;
    int rc = STRATA_ENOTFOUND;
    char *v = store_get (st, CKPT_CF_CHECKPOINT, key, kl, &len, &rc);
    if (!v)
        return rc < 0 ? rc : STRATA_ENOTFOUND;
    if (len != size) {
        free (v);
        return STRATA_ECORRUPT;
    }
    memcpy (dst, v, size);
    free (v);
    return 0;
}

int
checkpoint_load (store_t *st, model_t *m)
{
    uint32_t rows;
    int rc = s_read_exact (st, "rows", 4, &rows, sizeof rows);
    if (rc == 0)
        rc = model_resize_rows (m, rows);
    if (rc < 0)
        return rc;
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
            if ((rc = s_read_exact (st, key, kl, parts[p], n * sizeof (float))) < 0) {
                log_warn ("checkpoint tensor %d does not match the configured model", i);
                return rc;
            }
        }
    }
    if ((rc = s_read_exact (st, "row_step", 8, model_row_steps (m), rows * sizeof (int64_t))) < 0
        || (rc = s_read_exact (st, "feat_step", 9, model_feature_steps (m), model_feature_rows (m) * sizeof (int64_t))) < 0
        || (rc = s_read_exact (st, "step", 4, model_step (m), sizeof (int64_t))) < 0)
        return rc;
    return 0;
}
