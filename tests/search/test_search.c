/*  Unit: the rank worker's BM25F index. Scores match the formula by hand, rarer terms
    weigh more, a brand match counts, plurals meet singulars, Chinese matches through
    character bigrams, and a candidate list restricts what is scored.
*/
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "search.h"

static void
s_add (search_index_t *ix, uint32_t i, const char *title, const char *brand, const char *cat)
{
    Strata__V1__Item it = STRATA__V1__ITEM__INIT;
    it.title = (char *) title;
    it.brand = (char *) brand;
    char *c[1] = { (char *) cat };
    it.category = c;
    it.n_category = cat ? 1 : 0;
    cr_assert_eq (search_index_add (ix, i, &it), 0);
}

static float
s_score_of (search_index_t *ix, const char *q, uint32_t item)
{
    uint32_t items[16];
    float scores[16];
    uint32_t n = search_index_query (ix, q, NULL, 0, false, items, scores, 16);
    for (uint32_t i = 0; i < n; i++)
        if (items[i] == item)
            return scores[i];
    return 0;
}

Test (search, bm25f_by_hand_and_what_matches)
{
    search_params_t p;
    search_params_default (&p);
    search_index_t *ix = search_index_new (&p);
    s_add (ix, 0, "red running shoe", "Fleet", "Shoes");
    s_add (ix, 1, "blue running shorts", "Dune", "Clothing");
    s_add (ix, 2, "winter hat", "Crest", "Headwear");
    s_add (ix, 3, "红色 露营椅", "", NULL);
    cr_expect_eq (search_index_size (ix), 4u);
    cr_expect_eq (search_index_add (ix, 9, &(Strata__V1__Item) STRATA__V1__ITEM__INIT), STRATA_EINVAL, "items come in order");
    cr_expect_eq (search_index_add (ix, 2, &(Strata__V1__Item) STRATA__V1__ITEM__INIT), STRATA_EINVAL,
                  "an index already indexed");
    cr_expect_eq (search_index_size (ix), 4u, "a refused item is not counted");
    //  "hat": one item, in its title only (2 terms; titles average 2.75 terms).
    float idf = logf (1.0f + (4 - 1 + 0.5f) / (1 + 0.5f));
    float avg = (3 + 3 + 2 + 3) / 4.0f;   // 红色 露营椅 -> 红色, 露营, 营椅
    float x = p.weight[SEARCH_TITLE] * 1 / (1 - p.b + p.b * 2 / avg);
    float want = idf * x * (p.k1 + 1) / (p.k1 + x);
    cr_expect_float_eq (s_score_of (ix, "hat", 2), want, 1e-4, "hat: %f, by hand %f", s_score_of (ix, "hat", 2), want);
    //  Plurals meet singulars; a brand counts; no match scores nothing.
    cr_expect_gt (s_score_of (ix, "shoes", 0), 0.0f);
    cr_expect_gt (s_score_of (ix, "fleet", 0), 0.0f);
    cr_expect_eq (s_score_of (ix, "fleet", 1), 0.0f);
    //  A rarer term weighs more: "shoe" (1 item) beats "running" (2 items).
    cr_expect_gt (s_score_of (ix, "shoe", 0), s_score_of (ix, "running", 0));
    //  Two matching terms beat one.
    cr_expect_gt (s_score_of (ix, "running shoe", 0), s_score_of (ix, "running shoe", 1));
    //  Chinese through bigrams: 露营 matches 露营椅.
    cr_expect_gt (s_score_of (ix, "露营", 3), 0.0f);
    //  Candidates restrict what is scored.
    uint32_t only[1] = { 1 }, items[4];
    float scores[4];
    uint32_t n = search_index_query (ix, "running", only, 1, false, items, scores, 4);
    cr_expect_eq (n, 1u);
    cr_expect_eq (items[0], 1u);
    //  ... and leave nothing behind for the next query.
    n = search_index_query (ix, "running", NULL, 0, false, items, scores, 4);
    cr_expect_eq (n, 2u);
    cr_expect_eq (search_index_query (ix, "", NULL, 0, false, items, scores, 4), 0u);
    //  The learned field: "comfy" is in no title, but searchers of it chose item 2 (and
    //  item 1 once); text_only leaves it out.
    const char *terms[] = { "comfy", "comfy", "comfy" };
    uint32_t lit[] = { 2, 2, 1 };
    float lw[] = { 3, 3, 1 };
    query_terms_t *qt = query_terms_from (terms, lit, lw, 3);
    search_index_set_learned (ix, qt);
    n = search_index_query (ix, "comfy", NULL, 0, false, items, scores, 4);
    cr_expect_eq (n, 2u);
    float s1 = 0, s2 = 0;
    for (uint32_t i = 0; i < n; i++)
        *(items[i] == 2 ? &s2 : &s1) = scores[i];
    cr_expect_gt (s2, s1, "more credit, more weight");
    cr_expect_eq (search_index_query (ix, "comfy", NULL, 0, true, items, scores, 4), 0u);
    //  It adds to text matches of the same term before saturation.
    cr_expect_gt (s_score_of (ix, "hat comfy", 2), s_score_of (ix, "hat", 2));
    search_index_set_learned (ix, NULL);
    query_terms_destroy (&qt);
    search_index_destroy (&ix);
}

//  An index whose items' text was replaced answers every query as an index built from
//  the new records does: same items, same scores, same ranker features.
Test (search, update_is_as_if_built_from_the_new_records)
{
    static const char *titles[] = { "red running shoe",     "blue running shorts", "winter hat",
                                    "wool winter hat",      "trail running shoe",  "rain jacket",
                                    "running jacket light", "hat for the rain" };
    static const char *brands[] = { "Fleet", "Dune", "Crest", "Crest", "Fleet", "Dune", "Fleet", "Crest" };
    enum { N = 8 };
    search_index_t *old = search_index_new (NULL), *fresh = search_index_new (NULL);
    //  Items 1, 4 and 6 change (6 twice: the last record counts); item 2 loses its brand.
    const char *now[N];
    memcpy (now, titles, sizeof now);
    now[1] = "blue swim shorts";
    now[4] = "trail boot waterproof";
    now[6] = "running vest";
    for (uint32_t i = 0; i < N; i++) {
        s_add (old, i, titles[i], brands[i], i % 2 ? "Clothing" : "Shoes");
        s_add (fresh, i, now[i], i == 2 ? "" : brands[i], i % 2 ? "Clothing" : "Shoes");
    }
    Strata__V1__Item it[5];
    char *cat[5][1];
    const char *what[5] = { now[1], now[4], "running jacket heavy", now[6], now[2] };
    uint32_t at[5] = { 1, 4, 6, 6, 2 };
    for (int k = 0; k < 5; k++) {
        strata__v1__item__init (&it[k]);
        it[k].title = (char *) what[k];
        it[k].brand = at[k] == 2 ? "" : (char *) brands[at[k]];
        cat[k][0] = at[k] % 2 ? "Clothing" : "Shoes";
        it[k].category = cat[k];
        it[k].n_category = 1;
    }
    const Strata__V1__Item *items[5] = { &it[0], &it[1], &it[2], &it[3], &it[4] };
    cr_assert_eq (search_index_update (old, 5, at, items), 0);
    const char *queries[] = { "running shoe", "shorts", "swim", "trail boot", "running vest", "jacket",
                              "hat", "crest hat", "fleet running", "blue" };
    for (size_t q = 0; q < sizeof queries / sizeof queries[0]; q++) {
        uint32_t ia[N], ib[N];
        float sa[N], sb[N];
        uint32_t na = search_index_query (old, queries[q], NULL, 0, false, ia, sa, N);
        uint32_t nb = search_index_query (fresh, queries[q], NULL, 0, false, ib, sb, N);
        cr_assert_eq (na, nb, "'%s': %u items after the update, %u built fresh", queries[q], na, nb);
        for (uint32_t i = 0; i < nb; i++) {
            float found = -1;
            for (uint32_t j = 0; j < na; j++)
                if (ia[j] == ib[i])
                    found = sa[j];
            cr_expect_float_eq (found, sb[i], 1e-5, "'%s', item %u: %f after the update, %f built fresh", queries[q],
                                ib[i], found, sb[i]);
        }
        float fa[N * SEARCH_FEATURES], fb[N * SEARCH_FEATURES];
        search_index_features (old, queries[q], ib, sb, nb, NULL, 0, fa);
        search_index_features (fresh, queries[q], ib, sb, nb, NULL, 0, fb);
        for (uint32_t i = 0; i < nb * SEARCH_FEATURES; i++)
            cr_expect_float_eq (fa[i], fb[i], 1e-5, "'%s': feature %u differs", queries[q], i % SEARCH_FEATURES);
    }
    cr_expect_eq (s_score_of (old, "boot", 4) > 0, 1, "the new title is found");
    cr_expect_eq (s_score_of (old, "running", 4), 0.0f, "the old title is gone");
    search_index_destroy (&old);
    search_index_destroy (&fresh);
}
