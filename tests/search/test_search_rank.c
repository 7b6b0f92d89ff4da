/*  Unit: the learned search ranker. Its features match the definitions by hand; fitting
    finds the feature that decides what searchers chose, ranks a held-out query by it,
    leaves the counts it borrows as they were, and refuses data with nothing chosen;
    choices are recorded per whole query.
*/
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "search_rank.h"

static void
s_add (search_index_t *ix, uint32_t i, const char *title)
{
    Strata__V1__Item it = STRATA__V1__ITEM__INIT;
    it.title = (char *) title;
    cr_assert_eq (search_index_add (ix, i, &it), 0);
}

Test (search_rank, features_by_hand)
{
    search_index_t *ix = search_index_new (NULL);
    s_add (ix, 0, "Cordless Drill Kit");
    s_add (ix, 1, "drill bits set");
    s_add (ix, 2, "cordless saw");
    s_add (ix, 3, "garden hose");
    uint32_t items[4] = { 0, 1, 2, 3 };
    float scores[4] = { 4, 2, 1, 0 }, conv[4] = { 0, 3, 0, 0 }, f[4 * SEARCH_FEATURES];
    //  "ratchet" is in no item: it counts in neither coverage nor first/last.
    search_index_features (ix, "cordless drills ratchet", items, scores, 4, conv, 4, f);
    const float *a = f, *b = f + SEARCH_FEATURES, *c = f + 2 * SEARCH_FEATURES, *d = f + 3 * SEARCH_FEATURES;
    cr_expect_float_eq (a[0], 1.0f, 1e-6);
    cr_expect_float_eq (b[0], 0.5f, 1e-6);
    cr_expect_float_eq (a[1], 1.0f, 1e-6, "coverage of both known terms");
    cr_expect_float_eq (b[1], 0.5f, 1e-6);
    cr_expect_float_eq (d[1], 0.0f, 1e-6);
    cr_expect_eq (a[3], 1.0f);
    cr_expect_eq (b[3], 0.0f);
    //  idf coverage: cordless and drill are both in 2 of 4 items, so half each.
    cr_expect_float_eq (b[2], 0.5f, 1e-6);
    //  Pairs (cordless drill), (drill ratchet): the first is a phrase in item 0's title.
    cr_expect_float_eq (a[4], 0.5f, 1e-6);
    cr_expect_float_eq (c[4], 0.0f, 1e-6);
    cr_expect_eq (c[5], 1.0f, "cordless is the first known term");
    cr_expect_eq (c[6], 0.0f);
    cr_expect_eq (b[5], 0.0f);
    cr_expect_eq (b[6], 1.0f, "drill is the last known term");
    cr_expect_float_eq (a[7], logf (4), 1e-6);
    cr_expect_float_eq (b[8], logf (4), 1e-6);
    cr_expect_eq (a[8], 0.0f);
    search_index_destroy (&ix);
}

//  Pairs of items with the same words in another order; searchers always chose the one
//  whose title has the query as a phrase. Text scores tie: only the phrase tells.
static search_index_t *
s_phrase_shop (uint32_t pairs)
{
    search_index_t *ix = search_index_new (NULL);
    char t[64];
    for (uint32_t k = 0; k < pairs; k++) {
        snprintf (t, sizeof t, "alpha%u beta%u gamma", k, k);
        s_add (ix, 2 * k, t);
        snprintf (t, sizeof t, "beta%u gamma alpha%u", k, k);
        s_add (ix, 2 * k + 1, t);
    }
    return ix;
}

Test (search_rank, fitting_learns_what_searchers_chose)
{
    const uint32_t pairs = 40;
    search_index_t *ix = s_phrase_shop (pairs);
    //  The first 30 pairs are the past; the rest are new queries.
    char *q[30];
    uint32_t it[30];
    float w[30];
    for (uint32_t k = 0; k < 30; k++) {
        q[k] = malloc (32);
        snprintf (q[k], 32, "alpha%u beta%u", k, k);
        it[k] = 2 * k;
        w[k] = 3;
    }
    query_terms_t *choices = query_terms_from ((const char *const *) q, it, w, 30);
    cr_assert_not_null (choices);
    float conv[80], before[80];
    search_conversions (choices, 2 * pairs, conv);
    cr_expect_eq (conv[0], 3.0f);
    cr_expect_eq (conv[1], 0.0f);
    memcpy (before, conv, sizeof conv);
    search_ranker_t r;
    cr_assert_eq (search_ranker_fit (ix, choices, conv, 2 * pairs, &r), 0);
    cr_expect_eq (memcmp (before, conv, sizeof conv), 0, "the counts are restored after leaving each query out");
    cr_expect_eq (r.queries, 30u);
    cr_expect_gt (r.w[4], 1.0f, "the phrase feature decides: weight %f", r.w[4]);
    //  The text scores tie here, so they say nothing: their weight stays at the prior's.
    cr_expect_float_eq (r.w[0], 1.0f, 0.05, "text weight %f", r.w[0]);
    cr_expect_lt (r.loss, r.base_loss - 0.3, "fitted %f, text alone %f", r.loss, r.base_loss);
    //  A new query: the phrase item comes first.
    for (uint32_t k = 30; k < pairs; k++) {
        char query[32];
        snprintf (query, sizeof query, "alpha%u beta%u", k, k);
        uint32_t items[2] = { 2 * k + 1, 2 * k };
        float scores[2] = { 1, 1 }, f[2 * SEARCH_FEATURES], z[2];
        search_index_features (ix, query, items, scores, 2, conv, 2 * pairs, f);
        search_ranker_score (r.w, f, 2, z);
        cr_expect_gt (z[1], z[0], "query %u", k);
    }
    //  Nothing chosen among any query's candidates: nothing to fit.
    uint32_t far = 79;
    query_terms_t *none = query_terms_from ((const char *const *) q, &far, w, 1);
    search_ranker_t r2 = { .queries = 7 };
    cr_expect_eq (search_ranker_fit (ix, none, conv, 2 * pairs, &r2), STRATA_ENOTFOUND);
    cr_expect_eq (r2.queries, 7u);
    query_terms_destroy (&none);
    query_terms_destroy (&choices);
    for (uint32_t k = 0; k < 30; k++)
        free (q[k]);
    search_index_destroy (&ix);
}

Test (search_rank, choices_are_kept_per_whole_query)
{
    qt_builder_t *b = qt_builder_new ();
    Strata__V1__Interaction s = STRATA__V1__INTERACTION__INIT, x = STRATA__V1__INTERACTION__INIT;
    s.type = STRATA__V1__EVENT_TYPE__SEARCH;
    s.query = "Red Shoes";
    s.timestamp_ms = 1000;
    x.type = STRATA__V1__EVENT_TYPE__PURCHASE;
    x.item = 5;
    x.timestamp_ms = 2000;
    cr_assert_eq (qt_builder_event (b, 1, &s), 0);
    cr_assert_eq (qt_builder_event (b, 1, &x), 0);
    x.type = STRATA__V1__EVENT_TYPE__CLICK;
    x.item = 6;
    cr_assert_eq (qt_builder_event (b, 1, &x), 0);
    cr_assert_eq (qt_builder_event (b, 2, &s), 0);
    x.item = 5;
    cr_assert_eq (qt_builder_event (b, 2, &x), 0);
    //  A query longer than the keys' stack buffer is kept whole.
    char long_query[301];
    memset (long_query, 'q', 300);
    long_query[300] = 0;
    s.query = long_query;
    cr_assert_eq (qt_builder_event (b, 3, &s), 0);
    cr_assert_eq (qt_builder_event (b, 3, &x), 0);
    query_terms_t *c = qt_builder_choices (b);
    cr_assert_not_null (c);
    cr_assert_eq (c->n, 2u);
    cr_expect_eq (query_terms_find (c, long_query), 1, "the long query, sorted after \"Red Shoes\"");
    cr_expect_str_eq (c->terms[0], "Red Shoes");
    cr_assert_eq (c->off[1], 2u);
    cr_expect_eq (c->items[0], 5u);
    cr_expect_float_eq (c->weights[0], 4.0f, 1e-6, "a purchase (3) and a click (1)");
    cr_expect_eq (c->items[1], 6u);
    cr_expect_float_eq (c->weights[1], 1.0f, 1e-6);
    query_terms_destroy (&c);
    qt_builder_destroy (&b);
}
