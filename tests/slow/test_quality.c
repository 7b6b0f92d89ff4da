/*  Slow: recommendation quality on real data, through the whole system (import over
    TCP into a real cluster, export, `strata eval`). Asserts the floors the baselines
    reach on Amazon Beauty, and the bar for the model (NDCG@10 >= 0.040,
    HR@10 >= 0.070, above every baseline in the same run), so that a regression in the
    import, the export, the split, the metrics or the model shows up as a number that
    moved. Takes about half an hour on two cores. Run with `tools/dev.sh slow`.
*/
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

static hcluster_t s_c;

static void
s_cleanup (void)
{
    hcluster_stop (&s_c);
}

Test (quality, beauty_baselines_full_catalogue, .fini = s_cleanup, .timeout = 1800)
{
    const char *beauty = harness_data ("amazon-s3rec/Beauty.txt");
    if (!beauty)
        cr_skip_test ("../shared/data/amazon-s3rec/Beauty.txt is absent");
    char path[4096];
    snprintf (path, sizeof path, "%s", beauty);
    cr_assert_eq (hcluster_start (&s_c, NULL), 0);
    hcluster_add_worker (&s_c);
    hcluster_add_worker (&s_c);
    const char *imp[] = { "import", "--broker", s_c.ingest, "--quiet", "--format=s3rec", path, NULL };
    json_t *sum = harness_cli_json (imp, NULL);
    cr_assert_not_null (sum);
    json_decref (sum);

    const char *args[] = { "eval", "--broker", s_c.api, NULL };
    int status = -1;
    json_t *j = harness_cli_json (args, &status);
    cr_assert_eq (status, 0);
    cr_assert_not_null (j);
    json_t *results = json_object_get (j, "results");
    cr_assert_geq (json_array_size (results), 4, "popularity, item-kNN, EASE, the model (then re-ranked)");
    double ndcg[4], hr[4];
    for (size_t i = 0; i < 4; i++) {
        json_t *t = json_object_get (json_array_get (results, i), "test");
        ndcg[i] = json_real_value (json_object_get (t, "ndcg@10"));
        hr[i] = json_real_value (json_object_get (t, "hr@10"));
        cr_log_info ("%s: NDCG@10 %.4f HR@10 %.4f (%s)",
                     json_string_value (json_object_get (json_array_get (results, i), "name")), ndcg[i], hr[i],
                     json_string_value (json_object_get (json_array_get (results, i), "params")));
    }
    cr_expect_lt (ndcg[0], 0.01, "popularity, history excluded, is a floor");
    cr_expect_gt (ndcg[1], 0.040, "tuned item-kNN with recency");
    cr_expect_gt (ndcg[2], 0.038, "tuned EASE");
    cr_expect_gt (hr[2], 0.070);
    //  The model: at least NDCG@10 0.040 / HR@10 0.070, and above every baseline.
    cr_expect_geq (ndcg[3], 0.040);
    cr_expect_geq (hr[3], 0.070);
    for (int i = 0; i < 3; i++)
        cr_expect_gt (ndcg[3], ndcg[i], "the model (%.4f) does not beat baseline %d (%.4f)", ndcg[3], i, ndcg[i]);
    json_decref (j);
    cr_expect_eq (hcluster_stop (&s_c), 0);
}
