/*  Slow: recommendation quality on real data, through the whole system (import over
    TCP into a real cluster, export, `strata eval`). Asserts the floors the baselines
    reach on Amazon Beauty, and the bar for the model (NDCG@10 >= 0.040,
    HR@10 >= 0.070, above every baseline in the same run), so that a regression in the
    import, the export, the split, the metrics or the model shows up as a number that
    moved. Takes about half an hour on two cores. Run with `tools/dev.sh slow`.

    Then the same model through the serving path: Beauty minus each user's last item
    imported into a cluster, trained by the trainer and a train worker, and every
    user's top 10 asked of a rank worker (`strata recommend --users FILE
    --exclude-seen`), scored against the held-out items over the full catalogue; it
    must be within noise of what `strata eval` reports for the same model and epochs.
*/
#include <criterion/criterion.h>
#include <czmq.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
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
    json_t *j = harness_cli_json_within (args, &status, 3600000);
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

// ---------------------------------------------------------------- through the serving path

#define SERVE_EPOCHS "10"

//  Beauty.txt's users ("user item item ..."): writes them minus their last item to
//  train_path, the user ids to users_path, and keeps the held-out items (keyed by user).
static size_t
s_split (const char *beauty, const char *train_path, const char *users_path, zhashx_t *held)
{
    FILE *in = fopen (beauty, "r"), *tr = fopen (train_path, "w"), *us = fopen (users_path, "w");
    cr_assert (in && tr && us);
    static char line[1 << 20];
    size_t n = 0;
    while (fgets (line, sizeof line, in)) {
        line[strcspn (line, "\r\n")] = 0;
        char *last = strrchr (line, ' ');
        char *first = strchr (line, ' ');
        if (!last || last == first)
            continue;   // fewer than 2 items: nothing to hold out and train on
        *last = 0;
        fprintf (tr, "%s\n", line);
        *first = 0;
        fprintf (us, "%s\n", line);
        zhashx_insert (held, line, strdup (last + 1));
        n++;
    }
    fclose (in);
    fclose (tr);
    fclose (us);
    return n;
}

//  HR@10 and NDCG@10 of the TSV answers against the held-out items.
static void
s_score (const char *tsv, zhashx_t *held, size_t users, double *hr, double *ndcg, size_t *answered)
{
    FILE *f = fopen (tsv, "r");
    cr_assert_not_null (f);
    static char line[1 << 16];
    double h = 0, g = 0;
    *answered = 0;
    while (fgets (line, sizeof line, f)) {
        line[strcspn (line, "\r\n")] = 0;
        char *tab = strchr (line, '\t');
        if (!tab)
            continue;
        *tab = 0;
        const char *target = zhashx_lookup (held, line);
        if (!target)
            continue;
        (*answered)++;
        int rank = 0;
        for (char *save = NULL, *t = strtok_r (tab + 1, ",", &save); t && rank < 10; t = strtok_r (NULL, ",", &save), rank++)
            if (!strcmp (t, target)) {
                h += 1;
                g += 1.0 / log2 (rank + 2.0);
                break;
            }
    }
    fclose (f);
    *hr = h / (double) users;
    *ndcg = g / (double) users;
}

Test (quality, beauty_through_serving, .fini = s_cleanup, .timeout = 3600)
{
    const char *found = harness_data ("amazon-s3rec/Beauty.txt");
    if (!found)
        cr_skip_test ("../shared/data/amazon-s3rec/Beauty.txt is absent");
    char beauty[4096], attrs[4096];
    snprintf (beauty, sizeof beauty, "%s", found);
    found = harness_data ("amazon-s3rec/Beauty_item2attributes.json");
    snprintf (attrs, sizeof attrs, "%s", found ? found : "");
    //  What strata eval reports for the model, trained the same number of epochs
    //  (the ranking head left out on both sides: serving ranks by retrieval).
    cr_assert_eq (hcluster_start (&s_c, NULL), 0);
    hcluster_add_worker (&s_c);
    hcluster_add_worker (&s_c);
    const char *imp[] = { "import", "--broker", s_c.ingest, "--quiet", beauty, *attrs ? attrs : NULL, NULL };
    json_decref (harness_cli_json (imp, NULL));
    const char *ev[] = { "eval", "--broker", s_c.api, "--epochs", SERVE_EPOCHS, "--patience", SERVE_EPOCHS,
                         "--rank-negatives", "0", "--knn-k", "100", "--knn-decay", "0.6", "--knn-shrink", "0",
                         "--ease-lambda", "150", NULL };
    int status = -1;
    json_t *j = harness_cli_json_within (ev, &status, 3600000);
    cr_assert (j && status == 0, "strata eval failed");
    json_t *model = json_array_get (json_object_get (j, "results"), 3);
    cr_assert_str_eq (json_string_value (json_object_get (model, "name")), "strata");
    double eval_ndcg = json_real_value (json_object_get (json_object_get (model, "test"), "ndcg@10"));
    double eval_hr = json_real_value (json_object_get (json_object_get (model, "test"), "hr@10"));
    json_decref (j);
    cr_assert_eq (hcluster_stop (&s_c), 0);

    //  The serving path, on the data minus the held-out items.
    memset (&s_c, 0, sizeof s_c);
    cr_assert_eq (hcluster_start (&s_c, NULL), 0);
    hcluster_add_worker (&s_c);
    hcluster_add_worker (&s_c);
    char train[700], users[700], out[700];
    snprintf (train, sizeof train, "%s/beauty-train.txt", s_c.dir);
    snprintf (users, sizeof users, "%s/users.txt", s_c.dir);
    snprintf (out, sizeof out, "%s/recommendations.tsv", s_c.dir);
    zhashx_t *held = zhashx_new ();
    zhashx_set_destructor (held, (zhashx_destructor_fn *) zstr_free);
    size_t n = s_split (beauty, train, users, held);
    cr_assert_gt (n, 20000u);
    const char *imp2[] = { "import", "--broker", s_c.ingest, "--quiet", train,
                           *attrs ? attrs : NULL, NULL };
    json_decref (harness_cli_json (imp2, NULL));
    const char *tflags[] = { "--continuous=false", "--rank-negatives=0", NULL };
    cr_assert_eq (hcluster_start_trainer (&s_c, tflags), 0);
    hcluster_add_train_worker (&s_c);
    int64_t t0 = zclock_mono ();
    const char *tr[] = { "train", "--trainer", s_c.trainer_api, "--epochs", SERVE_EPOCHS, "--wait", "--timeout-ms",
                         "3000000", NULL };
    j = harness_cli_json_within (tr, &status, 3600000);
    cr_assert (j && status == 0, "training failed");
    json_decref (j);
    cr_log_info ("cluster training, %s epochs: %.0f s", SERVE_EPOCHS, (double) (zclock_mono () - t0) / 1000.0);
    hcluster_add_rank_worker (&s_c, 1);
    const char *probe[] = { "recommend", "--broker", s_c.api, "--user", "1", "--json", NULL };
    cr_assert (harness_cli_until_served (probe, 120000), "no rank worker served a model version");
    t0 = zclock_mono ();
    const char *rec[] = { "recommend", "--broker", s_c.api, "--users", users, "-k", "10", "--exclude-seen",
                          "--timeout-ms", "60000", NULL };
    pid_t pid = harness_cli_start (out, rec);
    cr_assert_eq (harness_wait (pid, 900000), 0, "batch recommend failed");
    double hr, ndcg;
    size_t answered;
    s_score (out, held, n, &hr, &ndcg, &answered);
    cr_log_info ("%zu users in %.1f s through the serving path: HR@10 %.4f NDCG@10 %.4f; strata eval: HR@10 %.4f "
                 "NDCG@10 %.4f",
                 answered, (double) (zclock_mono () - t0) / 1000.0, hr, ndcg, eval_hr, eval_ndcg);
    cr_expect_eq (answered, n, "every user answered");
    //  Within noise: one standard error of NDCG@10 over 22k users is about 0.0013, and
    //  two training runs differ by about as much again.
    cr_expect_geq (ndcg, 0.88 * eval_ndcg, "serving NDCG@10 %.4f, eval %.4f", ndcg, eval_ndcg);
    cr_expect_leq (ndcg, 1.12 * eval_ndcg, "serving NDCG@10 %.4f, eval %.4f", ndcg, eval_ndcg);
    cr_expect_geq (hr, 0.88 * eval_hr, "serving HR@10 %.4f, eval %.4f", hr, eval_hr);
    cr_expect_leq (hr, 1.12 * eval_hr, "serving HR@10 %.4f, eval %.4f", hr, eval_hr);
    zhashx_destroy (&held);
    cr_expect_eq (hcluster_stop (&s_c), 0);
}
