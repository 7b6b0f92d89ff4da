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
    cr_expect_eq (search_index_add (ix, 9, &(Strata__V1__Item) STRATA__V1__ITEM__INIT), -1, "items come in order");
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
