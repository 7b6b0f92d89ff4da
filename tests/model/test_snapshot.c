/*  Unit: model snapshots. A trained model's snapshot loads into a serving model that
    gives the same interest vectors, item vectors, ranking logits and popularity, in a
    fraction of the training model's memory; a damaged blob is refused with a reason.
*/
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot.h"
#include "step_session.h"

static dataset_t *
s_cycles (uint32_t users, uint32_t len)
{
    static uint32_t u[4096], it[4096];
    static int64_t ts[4096];
    size_t n = 0;
    for (uint32_t a = 0; a < users; a++)
        for (uint32_t k = 0; k < len && n < 4096; k++) {
            u[n] = a;
            it[n] = (a * 5 + k) % 12;
            ts[n] = 1000 * (int64_t) (a + k);
            n++;
        }
    return dataset_from_arrays (users, 12, n, u, it, NULL, ts);
}

typedef struct {
    dataset_t *d;
    step_session_t ss;
    uint8_t *blob, *plain;
    size_t len, plain_len;
    float pop[12], conv[12], ranker[SEARCH_FEATURES];
    features_t *fs;
} fixture_t;

static void
s_setup (fixture_t *f)
{
    model_config_t mc;
    model_config_default (&mc);
    mc.dim = 16;
    mc.max_len = 8;
    mc.ffn = 32;
    mc.batch = 16;
    mc.feature_rows = 5;
    plan_config_t pc;
    plan_config_default (&pc);
    pc.batch = 16;
    pc.max_len = 8;
    f->d = s_cycles (40, 6);
    uint32_t foff[13], feat[12];
    for (uint32_t i = 0; i <= 12; i++)
        foff[i] = i;
    for (uint32_t i = 0; i < 12; i++)
        feat[i] = i % 5;
    f->fs = features_from_lists (12, 5, foff, feat);
    cr_assert_eq (step_session_init (&f->ss, &mc, &pc, f->d, f->fs), 0);
    for (int e = 0; e < 3; e++)
        step_session_epoch (&f->ss);
    dataset_popularity (f->d, 12, 10000.0, f->pop);
    json_t *meta = json_pack ("{s:s}", "note", "test");
    const char *terms[] = { "drill", "cordless", "drill", "hat" };
    uint32_t items[] = { 3, 3, 3, 9 };
    float weights[] = { 3, 1, 2, 1 };
    query_terms_t *qt = query_terms_from (terms, items, weights, 4);
    cr_assert_not_null (qt);
    for (int k = 0; k < SEARCH_FEATURES; k++)
        f->ranker[k] = 0.25f * (float) (k + 1);
    for (int i = 0; i < 12; i++)
        f->conv[i] = (float) (i % 3);
    snapshot_search_t search = { qt, f->ranker, f->conv };
    f->blob = snapshot_build (f->ss.master, 7, f->pop, &search, meta, &f->len);
    //  As a version without the search ranker's parts was written.
    snapshot_search_t terms_only = { qt, NULL, NULL };
    f->plain = snapshot_build (f->ss.master, 8, f->pop, &terms_only, meta, &f->plain_len);
    query_terms_destroy (&qt);
    json_decref (meta);
    cr_assert_not_null (f->blob);
}

static void
s_teardown (fixture_t *f)
{
    free (f->blob);
    free (f->plain);
    step_session_fini (&f->ss);
    features_destroy (&f->fs);
    dataset_destroy (&f->d);
}

Test (snapshot, serving_model_answers_like_the_trained_one)
{
    fixture_t f;
    s_setup (&f);
    snapshot_info_t info;
    char err[256];
    model_t *serve = snapshot_load (f.blob, f.len, 4, &info, err, sizeof err);
    cr_assert_not_null (serve, "%s", err);
    cr_expect_eq (info.version, 7u);
    cr_expect_eq (info.items, 12u);
    cr_expect_str_eq (json_string_value (json_object_get (info.meta, "note")), "test");
    //  The learned search terms travel with the version, repeats summed.
    cr_assert_not_null (info.terms);
    cr_expect_eq (info.terms->n, 3u);
    int64_t t = query_terms_find (info.terms, "drill");
    cr_assert_geq (t, 0);
    cr_expect_eq (info.terms->off[t + 1] - info.terms->off[t], 1u);
    cr_expect_eq (info.terms->items[info.terms->off[t]], 3u);
    cr_expect_float_eq (info.terms->weights[info.terms->off[t]], 5.0f, 1e-6);
    cr_expect_eq (query_terms_find (info.terms, "saw"), -1);
    for (int i = 0; i < 12; i++)
        cr_expect_eq (info.popularity[i], f.pop[i]);
    //  So do the search ranker's weights and the choice counts.
    cr_expect (info.has_ranker);
    cr_expect_eq (memcmp (info.ranker, f.ranker, sizeof f.ranker), 0, "ranker weights differ");
    cr_assert_not_null (info.conversions);
    cr_expect_eq (memcmp (info.conversions, f.conv, sizeof f.conv), 0, "conversions differ");
    snapshot_info_t plain;
    model_t *pm = snapshot_load (f.plain, f.plain_len, 4, &plain, err, sizeof err);
    cr_assert_not_null (pm, "%s", err);
    cr_expect (!plain.has_ranker);
    cr_expect_null (plain.conversions);
    cr_expect_eq (memcmp (model_row_weights (pm, NULL), model_item_vectors (f.ss.master), 12 * 16 * sizeof (float)),
                  0, "item vectors differ without the ranker");
    model_destroy (&pm);
    snapshot_info_free (&plain);
    //  The newest events weigh most: popularity is not a plain count.
    double total = 0;
    for (int i = 0; i < 12; i++)
        total += f.pop[i];
    cr_expect_lt (total, 240.0 - 1);
    cr_expect_gt (total, 0.0);
    const float *want = model_item_vectors (f.ss.master);
    const float *got = model_row_weights (serve, NULL);
    cr_expect_eq (memcmp (want, got, 12 * 16 * sizeof (float)), 0, "item vectors differ");
    //  The feature table travels too: an item added later gets its vector from it.
    cr_assert_eq (info.feature_rows, 5u);
    cr_assert_not_null (info.features);
    cr_expect_eq (memcmp (info.features, model_feature_weights (f.ss.master, NULL), 5 * 16 * sizeof (float)), 0,
                  "feature table differs");
    uint32_t items[3 + 5] = { 1, 2, 3, 7, 8, 9, 10, 11 }, lens[2] = { 3, 5 };
    float a[2 * 16], b[2 * 16], la[12], lb[12];
    uint32_t cands[12];
    for (uint32_t i = 0; i < 12; i++)
        cands[i] = i;
    cr_assert_eq (model_user_vectors (f.ss.master, items, NULL, lens, 2, a), 0);
    cr_assert_eq (model_rank_candidates (f.ss.master, 1, cands, 12, la), 0);
    cr_assert_eq (model_user_vectors (serve, items, NULL, lens, 2, b), 0);
    cr_assert_eq (model_rank_candidates (serve, 1, cands, 12, lb), 0);
    for (int k = 0; k < 32; k++)
        cr_expect_float_eq (a[k], b[k], 1e-5, "user vector %d: %f vs %f", k, a[k], b[k]);
    for (int k = 0; k < 12; k++)
        cr_expect_float_eq (la[k], lb[k], 1e-4, "ranking logit %d: %f vs %f", k, la[k], lb[k]);
    //  Serving batches are capped; the tables carry no training state.
    uint32_t five[5] = { 1, 1, 1, 1, 1 };
    float out[5 * 16];
    cr_expect_eq (model_user_vectors (serve, items, NULL, five, 5, out), STRATA_ETOOLARGE);
    float *g = (float *) 1;
    model_row_weights (serve, &g);
    cr_expect_null (g);
    model_destroy (&serve);
    snapshot_info_free (&info);
    s_teardown (&f);
}

Test (snapshot, damaged_blobs_are_refused)
{
    fixture_t f;
    s_setup (&f);
    snapshot_info_t info;
    char err[256];
    uint8_t *copy = malloc (f.len);
    const char *cases[] = { "bad magic", "truncated", "header length past the end", "header says more items",
                            "empty" };
    for (int i = 0; i < 5; i++) {
        memcpy (copy, f.blob, f.len);
        size_t len = f.len;
        switch (i) {
        case 0: copy[0] = 'X'; break;
        case 1: len -= 4; break;
        case 2: copy[12] = 0xFF; copy[13] = 0xFF; copy[14] = 0xFF; break;
        case 3: {
            char *p = memmem (copy, 600, "\"items\":12", 10);
            cr_assert_not_null (p);
            p[9] = '3';
            break;
        }
        case 4: len = 0; break;
        }
        err[0] = 0;
        model_t *m = snapshot_load (copy, len, 4, &info, err, sizeof err);
        cr_expect_null (m, "%s: loaded", cases[i]);
        cr_expect_neq (err[0], 0, "%s: no reason", cases[i]);
        cr_log_info ("%s: %s", cases[i], err);
        model_destroy (&m);
    }
    free (copy);
    s_teardown (&f);
}
