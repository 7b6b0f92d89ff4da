/*  Unit: the model-version store (versions.h) on a real RocksDB in a temporary
    directory: chunked versions written whole, read back verified, the newest kept,
    damage detected, and the derived blob dropped with its version.
*/
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "util.h"
#include "versions.h"

TestSuite (versions, .init = harness_dir_setup, .fini = harness_dir_teardown);

enum { CF_DEFAULT, CF_MODELS, CF_COUNT };
static const char *const s_cfs[CF_COUNT] = { "default", "models" };

static uint8_t *
s_blob (size_t len, uint8_t seed)
{
    uint8_t *b = malloc (len);
    for (size_t i = 0; i < len; i++)
        b[i] = (uint8_t) (i * 31 + seed);
    return b;
}

Test (versions, a_version_is_read_back_whole_and_verified)
{
    store_t *st = store_open (harness_dir, s_cfs, CF_COUNT);
    cr_assert_not_null (st);
    cr_assert_eq (versions_latest (st, CF_MODELS), 0);
    size_t len = 10000;
    uint8_t *blob = s_blob (len, 1);
    json_t *meta = json_pack ("{s:s}", "note", "first");
    cr_assert_eq (versions_put (st, CF_MODELS, 1, blob, len, 4096, 0, meta, 3), 0);
    json_decref (meta);
    cr_assert_eq (versions_latest (st, CF_MODELS), 1);
    versions_info_t info;
    cr_assert_eq (versions_info (st, CF_MODELS, 1, &info), 0);
    cr_assert_eq (info.bytes, len);
    cr_assert_eq (info.chunks, 3);
    cr_assert_eq (info.chunk_bytes, 4096);
    cr_assert_eq (info.fnv, util_fnv1a64 (blob, len));
    char *text = versions_meta (st, CF_MODELS, 1);
    cr_assert (text && strstr (text, "\"note\":\"first\""), "%s", text ? text : "(none)");
    free (text);
    size_t n;
    char *c = versions_chunk (st, CF_MODELS, 1, 2, &n);
    cr_assert_eq (n, len - 2 * 4096);
    cr_assert_eq (memcmp (c, blob + 2 * 4096, n), 0);
    free (c);
    int rc;
    uint8_t *back = versions_read (st, CF_MODELS, 1, &n, &rc);
    cr_assert_eq (rc, 0);
    cr_assert_eq (n, len);
    cr_assert_eq (memcmp (back, blob, len), 0);
    free (back);
    cr_assert_null (versions_read (st, CF_MODELS, 2, &n, &rc));
    cr_assert_eq (rc, STRATA_ENOTFOUND);
    free (blob);
    store_destroy (&st);
}

Test (versions, only_the_newest_are_kept_with_their_derived_blobs)
{
    store_t *st = store_open (harness_dir, s_cfs, CF_COUNT);
    for (uint64_t v = 1; v <= 5; v++) {
        uint8_t *blob = s_blob (3000, (uint8_t) v);
        cr_assert_eq (versions_put (st, CF_MODELS, v, blob, 3000, 1024, 0, NULL, 2), 0);
        cr_assert_eq (versions_put_extra (st, CF_MODELS, v, "index", 5), 0);
        free (blob);
    }
    cr_assert_eq (versions_latest (st, CF_MODELS), 5);
    size_t n;
    for (uint64_t v = 1; v <= 3; v++) {
        cr_assert_null (versions_meta (st, CF_MODELS, v), "version %llu kept", (unsigned long long) v);
        cr_assert_null (versions_chunk (st, CF_MODELS, v, 0, &n));
    }
    //  Version 4's derived blob was written after version 5's put dropped older ones.
    char *extra = versions_extra (st, CF_MODELS, 5, &n);
    cr_assert (extra && n == 5 && !memcmp (extra, "index", 5));
    free (extra);
    int rc;
    uint8_t *b4 = versions_read (st, CF_MODELS, 4, &n, &rc);
    cr_assert_eq (rc, 0);
    free (b4);
    store_destroy (&st);
}

Test (versions, a_damaged_chunk_is_detected)
{
    store_t *st = store_open (harness_dir, s_cfs, CF_COUNT);
    uint8_t *blob = s_blob (5000, 7);
    cr_assert_eq (versions_put (st, CF_MODELS, 1, blob, 5000, 2048, 0, NULL, 0), 0);
    //  Overwrite chunk 1 with other bytes of the same length.
    unsigned char key[12];
    util_put_be64 (key, 1);
    util_put_be32 (key + 8, 1);
    char zeros[2048] = { 0 };
    cr_assert_eq (store_put (st, CF_MODELS, key, sizeof key, zeros, sizeof zeros), 0);
    size_t n;
    int rc;
    cr_assert_null (versions_read (st, CF_MODELS, 1, &n, &rc));
    cr_assert_eq (rc, STRATA_ECORRUPT);
    cr_assert_eq (versions_put (st, CF_MODELS, 0, blob, 10, 1024, 0, NULL, 0), STRATA_EINVAL);
    free (blob);
    store_destroy (&st);
}
