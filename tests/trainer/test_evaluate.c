/*  Unit: datasets, the leave-one-out split, the full-catalogue metrics and the three
    baselines, on small data whose right answers are known by hand.
*/
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "baselines.h"
#include "dataset.h"
#include "evaluate.h"

//  Three users: u0 = 0,1,2,3 ; u1 = 4,5 (too short to evaluate) ; u2 = 5,6,7 (given
//  out of time order: the dataset sorts by timestamp).
static dataset_t *
s_small (void)
{
    uint32_t users[] = { 0, 0, 0, 0, 1, 1, 2, 2, 2 };
    uint32_t items[] = { 0, 1, 2, 3, 4, 5, 7, 5, 6 };
    int64_t ts[] = { 10, 20, 30, 40, 10, 20, 30, 10, 20 };
    return dataset_from_arrays (3, 8, 9, users, items, NULL, ts);
}

Test (dataset, sorted_by_user_then_time)
{
    dataset_t *d = s_small ();
    cr_assert_not_null (d);
    cr_expect_eq (d->n_events, 9);
    cr_expect_eq (dataset_len (d, 0), 4);
    cr_expect_eq (dataset_len (d, 2), 3);
    uint32_t want[] = { 0, 1, 2, 3, 4, 5, 5, 6, 7 };
    for (int i = 0; i < 9; i++)
        cr_expect_eq (d->items[i], want[i], "event %d", i);
    dataset_destroy (&d);
    cr_expect_null (d);
}

Test (dataset, holdout_hides_the_last_events_of_long_histories)
{
    dataset_t *d = s_small ();
    uint32_t *test = NULL, *val = NULL;
    dataset_t *t = dataset_holdout (d, 1, &test);
    dataset_t *v = dataset_holdout (d, 2, &val);
    cr_assert (t && v && test && val);
    cr_expect_eq (test[0], 3);
    cr_expect_eq (val[0], 2);
    cr_expect_eq (test[1], DATASET_NO_TARGET, "two events: training only");
    cr_expect_eq (test[2], 7);
    cr_expect_eq (val[2], 6);
    cr_expect_eq (dataset_len (t, 0), 3);
    cr_expect_eq (dataset_len (v, 0), 2);
    cr_expect_eq (dataset_len (t, 1), 2, "short users keep everything");
    for (uint32_t k = t->offsets[0]; k < t->offsets[1]; k++)
        cr_expect_neq (t->items[k], 3, "the test item leaked into training");
    free (test);
    free (val);
    dataset_destroy (&t);
    dataset_destroy (&v);
    dataset_destroy (&d);
}

//  A scorer that knows the answer, one that knows nothing, one that puts the target
//  at a chosen rank.
typedef struct {
    const uint32_t *targets;
    int rank;   // -1: constant scores
} oracle_t;

static void
s_oracle (void *model, const dataset_t *train, const uint32_t *users, size_t n, float *scores)
{
    oracle_t *o = model;
    for (size_t b = 0; b < n; b++) {
        float *s = scores + b * train->n_items;
        for (uint32_t j = 0; j < train->n_items; j++)
            s[j] = o->rank < 0 ? 1.0f : (float) (train->n_items - j);   // item 0 best
        if (o->rank >= 0) {
            //  Move the target to position `rank` among the non-history items.
            uint32_t t = o->targets[users[b]];
            s[t] = (float) train->n_items - (float) o->rank + 0.5f;
        }
    }
}

Test (evaluate, perfect_constant_and_ranked_scorers)
{
    //  20 items, one user per target, no history at all.
    uint32_t users[] = { 0, 0, 0 };
    uint32_t items[] = { 19, 18, 17 };
    dataset_t *d = dataset_from_arrays (1, 40, 3, users, items, NULL, NULL);
    uint32_t *test = NULL;
    dataset_t *t = dataset_holdout (d, 1, &test);   // history {19, 18}, target 17
    oracle_t o = { test, 0 };
    scorer_t sc = { "oracle", s_oracle, &o };
    metrics_t m;
    cr_assert_eq (evaluate (t, test, &sc, &m), 0);
    cr_expect_eq (m.users, 1);
    cr_expect_float_eq (m.hr10, 1.0, 1e-9);
    cr_expect_float_eq (m.ndcg10, 1.0, 1e-9);
    cr_expect_float_eq (m.mrr, 1.0, 1e-9);

    o.rank = 4;   // four items above the target: rank 4
    evaluate (t, test, &sc, &m);
    cr_expect_float_eq (m.ndcg10, 1.0 / log2 (6.0), 1e-9);
    cr_expect_float_eq (m.mrr, 1.0 / 5.0, 1e-9);

    o.rank = 15;
    evaluate (t, test, &sc, &m);
    cr_expect_float_eq (m.hr10, 0.0, 1e-9);
    cr_expect_float_eq (m.hr20, 1.0, 1e-9);

    o.rank = -1;   // every item tied: ties count against, nothing is gained
    evaluate (t, test, &sc, &m);
    cr_expect_float_eq (m.hr20, 0.0, 1e-9);
    free (test);
    dataset_destroy (&t);
    dataset_destroy (&d);
}

Test (evaluate, target_in_history_is_a_counted_miss)
{
    uint32_t users[] = { 0, 0, 0 };
    uint32_t items[] = { 1, 2, 1 };   // the test item 1 was bought before
    dataset_t *d = dataset_from_arrays (1, 5, 3, users, items, NULL, NULL);
    uint32_t *test = NULL;
    dataset_t *t = dataset_holdout (d, 1, &test);
    oracle_t o = { test, 0 };
    scorer_t sc = { "oracle", s_oracle, &o };
    metrics_t m;
    evaluate (t, test, &sc, &m);
    cr_expect_eq (m.target_in_history, 1);
    cr_expect_float_eq (m.hr10, 0.0, 1e-9);
    free (test);
    dataset_destroy (&t);
    dataset_destroy (&d);
}

//  Users buy items in fixed pairs (2k then 2k+1): a good model learns "after 2k comes
//  2k+1"; popularity cannot. 200 users over 10 pairs, each user takes 3 pairs.
static dataset_t *
s_pairs (void)
{
    enum { USERS = 200, PAIRS = 10 };
    static uint32_t u[USERS * 6], it[USERS * 6];
    static int64_t ts[USERS * 6];
    size_t n = 0;
    for (uint32_t user = 0; user < USERS; user++)
        for (uint32_t p = 0; p < 3; p++) {
            uint32_t pair = (user * 7 + p * 3) % PAIRS;
            for (uint32_t k = 0; k < 2; k++) {
                u[n] = user;
                it[n] = 2 * pair + k;
                ts[n] = (int64_t) (p * 2 + k);
                n++;
            }
        }
    return dataset_from_arrays (USERS, 2 * PAIRS, n, u, it, NULL, ts);
}

Test (baselines, item_relations_beat_popularity)
{
    dataset_t *d = s_pairs ();
    uint32_t *test = NULL;
    dataset_t *t = dataset_holdout (d, 1, &test);
    metrics_t pop_m, knn_m, ease_m;

    baseline_t *pop = baseline_popularity (t);
    scorer_t sc = baseline_scorer (pop);
    cr_expect_str_eq (sc.name, "popularity");
    evaluate (t, test, &sc, &pop_m);

    knn_params_t kp = { 5, 0, 0.5f };
    baseline_t *knn = baseline_knn (t, &kp);
    cr_assert_not_null (knn);
    sc = baseline_scorer (knn);
    evaluate (t, test, &sc, &knn_m);

    baseline_t *ease = baseline_ease (t, 1.0f, 1 << 20);
    cr_assert_not_null (ease);
    sc = baseline_scorer (ease);
    evaluate (t, test, &sc, &ease_m);

    cr_expect_gt (knn_m.mrr, 0.9, "item-kNN should find the partner item (mrr %f)", knn_m.mrr);
    //  EASE has no notion of order, and pairs co-occur across users too (a user's pairs
    //  are p, p+3, p+6): it ranks the partner first most of the time, not always.
    cr_expect_gt (ease_m.mrr, 0.6, "EASE should find the partner item (mrr %f)", ease_m.mrr);
    cr_expect_gt (ease_m.mrr, pop_m.mrr + 0.3);
    cr_expect_lt (pop_m.mrr, 0.5, "popularity knows nothing of pairs (mrr %f)", pop_m.mrr);
    baseline_destroy (&pop);
    baseline_destroy (&knn);
    baseline_destroy (&ease);
    free (test);
    dataset_destroy (&t);
    dataset_destroy (&d);
}

Test (baselines, ease_matches_the_closed_form)
{
    //  Three items, X rows: {0,1}, {1,2}, {0,1,2}. G = X'X = [[2,2,1],[2,3,2],[1,2,2]],
    //  P = (G + I)^-1, B_ij = -P_ij / P_jj. Check a user with history {0} scores row 0
    //  of B, computed here in double precision by the adjugate.
    uint32_t u[] = { 0, 0, 1, 1, 2, 2, 2 };
    uint32_t it[] = { 0, 1, 1, 2, 0, 1, 2 };
    dataset_t *d = dataset_from_arrays (3, 3, 7, u, it, NULL, NULL);
    baseline_t *ease = baseline_ease (d, 1.0f, 1 << 20);
    cr_assert_not_null (ease);
    double a[3][3] = { { 3, 2, 1 }, { 2, 4, 2 }, { 1, 2, 3 } };
    double det = a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
               + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
    double p[3][3];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            int r0 = (j + 1) % 3, r1 = (j + 2) % 3, c0 = (i + 1) % 3, c1 = (i + 2) % 3;
            p[i][j] = (a[r0][c0] * a[r1][c1] - a[r0][c1] * a[r1][c0]) / det;
        }
    uint32_t one[] = { 0 };
    uint32_t hist_u[] = { 0 }, hist_i[] = { 0 };
    dataset_t *h = dataset_from_arrays (1, 3, 1, hist_u, hist_i, NULL, NULL);
    float scores[3];
    scorer_t sc = baseline_scorer (ease);
    sc.score (sc.model, h, one, 1, scores);
    cr_expect_float_eq (scores[0], 0.0, 1e-6, "zero diagonal");
    cr_expect_float_eq (scores[1], -p[0][1] / p[1][1], 1e-4);
    cr_expect_float_eq (scores[2], -p[0][2] / p[2][2], 1e-4);
    cr_expect_null (baseline_ease (d, 1.0f, 8), "a matrix over the byte limit is refused");
    baseline_destroy (&ease);
    dataset_destroy (&h);
    dataset_destroy (&d);
}
