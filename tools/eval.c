/*  eval: see eval.h.

    Tuning is honest: each baseline's parameters are chosen by NDCG@10 on the validation
    targets (the second-to-last event) with the model fitted on everything before them;
    the chosen setting is then refitted on everything before the test targets (the last
    event) and measured once. The table goes to stderr, one JSON object to stdout.
*/
#include "eval.h"

#include <czmq.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baselines.h"
#include "cluster.h"
#include "config.h"
#include "dataset.h"
#include "evaluate.h"
#include "features_fetch.h"
#include "item_features.h"
#include "hyper.h"
#include "model.h"
#include "model_eval.h"
#include "step_session.h"
#include "util.h"

typedef struct {
    char *broker, *dir;
    int64_t timeout_ms;
    char *knn_k, *knn_decay, *knn_shrink, *ease_lambda;
    int64_t ease_max_mb;
    bool model;
    int64_t epochs, patience, rerank_top;
    char *rerank_blend;
    hyper_t hyper;
} eval_cfg_t;

#define OFF(f) offsetof (eval_cfg_t, f)
static const config_key_t s_keys[] = {
    { "broker", CONFIG_STRING, OFF (broker), "", 0, -1, "broker api endpoint (default: local)" },
    { "dir", CONFIG_STRING, OFF (dir), "", 0, -1, "find the cluster started by strata up --dir" },
    { "timeout-ms", CONFIG_INT, OFF (timeout_ms), "60000", 100, 3600000, "how long to wait for each page" },
    { "knn-k", CONFIG_STRING, OFF (knn_k), "20,50,100,200", 0, -1, "item-kNN neighbourhood sizes to try" },
    { "knn-decay", CONFIG_STRING, OFF (knn_decay), "1,0.8,0.6,0.4", 0, -1, "item-kNN recency decays to try" },
    { "knn-shrink", CONFIG_STRING, OFF (knn_shrink), "0,10", 0, -1, "item-kNN shrinkage values to try" },
    { "ease-lambda", CONFIG_STRING, OFF (ease_lambda), "10,25,50,150,400", 0, -1, "EASE L2 weights to try" },
    { "ease-max-mb", CONFIG_INT, OFF (ease_max_mb), "4096", 0, 1 << 20,
      "skip EASE when its dense item x item matrix exceeds this" },
    { "model", CONFIG_BOOL, OFF (model), "true", 0, -1, "train and evaluate Strata's model (--no-model: baselines only)" },
    { "epochs", CONFIG_INT, OFF (epochs), "200", 1, 100000, "most training epochs" },
    { "patience", CONFIG_INT, OFF (patience), "8", 1, 1000, "stop after this many epochs without a better validation NDCG@10" },
    { "rerank-top", CONFIG_INT, OFF (rerank_top), "100", 1, 100000, "items the ranking head re-ranks per user" },
    { "rerank-blend", CONFIG_STRING, OFF (rerank_blend), "0,0.5,1,2", 0, -1,
      "weights of the retrieval score in the re-ranked score to try (chosen on validation)" },
    HYPER_CONFIG_KEYS (eval_cfg_t, hyper),
    CONFIG_END,
};

//  Parses "1,2.5,3" into at most cap numbers; returns how many.
static int
s_list (const char *text, double *out, int cap)
{
    int n = 0;
    const char *p = text;
    while (*p && n < cap) {
        char *end;
        double v = strtod (p, &end);
        if (end == p)
            return -1;
        out[n++] = v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -1;
    }
    return n;
}

static json_t *
s_metrics_json (const metrics_t *m)
{
    return json_pack ("{s:f, s:f, s:f, s:f, s:f, s:i, s:i}", "hr@10", m->hr10, "ndcg@10", m->ndcg10, "hr@20", m->hr20,
                      "ndcg@20", m->ndcg20, "mrr", m->mrr, "users", (int) m->users, "target_in_history",
                      (int) m->target_in_history);
}

static void
s_row (const char *name, const char *params, const metrics_t *m, double secs)
{
    fprintf (stderr, "  %-12s %-26s %8.4f %8.4f %8.4f %8.4f %8.4f %7.1fs\n", name, params, m->hr10, m->ndcg10, m->hr20,
             m->ndcg20, m->mrr, secs);
}

typedef struct {
    const dataset_t *train_v, *train_t;
    const uint32_t *val, *test;
    json_t *results;
} run_t;

//  Evaluates a fitted baseline and records it; consumes b.
static void
s_record (run_t *r, baseline_t *b, const char *params, const metrics_t *val, double secs)
{
    scorer_t sc = baseline_scorer (b);
    metrics_t test;
    evaluate (r->train_t, r->test, &sc, &test);
    s_row (sc.name, params, &test, secs);
    json_array_append_new (r->results, json_pack ("{s:s, s:s, s:o, s:o, s:f}", "name", sc.name, "params", params,
                                                  "validation", s_metrics_json (val), "test", s_metrics_json (&test),
                                                  "seconds", secs));
    baseline_destroy (&b);
}

int
eval_main (int argc, char **argv)
{
    eval_cfg_t cfg = { 0 };
    char err[512];
    int rc = config_parse (s_keys, &cfg, argc, argv, NULL, err, sizeof err);
    if (rc == CONFIG_HELP) {
        config_help (s_keys, stdout, "usage: strata eval [options]");
        config_free (s_keys, &cfg);
        return 0;
    }
    if (rc < 0) {
        fprintf (stderr, "strata eval: %s\n", err);
        config_free (s_keys, &cfg);
        return 2;
    }
    double ks[16], decays[16], shrinks[16], lambdas[16], blends[16];
    int nk = s_list (cfg.knn_k, ks, 16), nd = s_list (cfg.knn_decay, decays, 16);
    int ns = s_list (cfg.knn_shrink, shrinks, 16), nl = s_list (cfg.ease_lambda, lambdas, 16);
    int nblend = s_list (cfg.rerank_blend, blends, 16);
    if (nk < 1 || nd < 1 || ns < 1 || nl < 0 || nblend < 1) {
        fprintf (stderr, "strata eval: parameter lists are comma-separated numbers\n");
        config_free (s_keys, &cfg);
        return 2;
    }
    cluster_endpoints_t eps;
    if (cluster_resolve (cfg.broker, cfg.dir, &eps, err, sizeof err) < 0) {
        fprintf (stderr, "strata eval: %s\n", err);
        config_free (s_keys, &cfg);
        return 1;
    }
    int64_t t0 = util_mono_ms ();
    dataset_t *all = dataset_fetch (eps.api, (int) cfg.timeout_ms, err, sizeof err);
    if (!all) {
        fprintf (stderr, "strata eval: %s\n", err);
        config_free (s_keys, &cfg);
        return 1;
    }
    uint32_t *val = NULL, *test = NULL;
    dataset_t *train_v = dataset_holdout (all, 2, &val);
    dataset_t *train_t = dataset_holdout (all, 1, &test);
    uint32_t eval_users = 0;
    for (uint32_t u = 0; u < all->n_users; u++)
        eval_users += test[u] != DATASET_NO_TARGET;
    fprintf (stderr, "strata eval: %u users, %u items, %zu events; %u users with >= 3 events evaluated "
             "(leave-one-out, full catalogue, history excluded); data fetched in %.1fs\n",
             all->n_users, all->n_items, all->n_events, eval_users, (double) (util_mono_ms () - t0) / 1000);
    fprintf (stderr, "  %-12s %-26s %8s %8s %8s %8s %8s %8s\n", "model", "chosen on validation", "HR@10", "NDCG@10",
             "HR@20", "NDCG@20", "MRR", "time");
    run_t r = { train_v, train_t, val, test, json_array () };

    //  Popularity: nothing to tune.
    int64_t t = util_mono_ms ();
    baseline_t *pop = baseline_popularity (train_v);
    scorer_t sc = baseline_scorer (pop);
    metrics_t mv;
    evaluate (train_v, val, &sc, &mv);
    baseline_destroy (&pop);
    s_record (&r, baseline_popularity (train_t), "-", &mv, (double) (util_mono_ms () - t) / 1000);

    //  item-kNN: grid on validation.
    t = util_mono_ms ();
    knn_params_t best = { 0 };
    metrics_t best_m = { 0 };
    for (int a = 0; a < nk; a++)
        for (int b = 0; b < nd; b++)
            for (int c = 0; c < ns; c++) {
                knn_params_t p = { (int) ks[a], (float) shrinks[c], (float) decays[b] };
                baseline_t *knn = baseline_knn (train_v, &p);
                if (!knn)
                    continue;
                sc = baseline_scorer (knn);
                evaluate (train_v, val, &sc, &mv);
                if (mv.ndcg10 > best_m.ndcg10) {
                    best_m = mv;
                    best = p;
                }
                baseline_destroy (&knn);
            }
    char params[64];
    snprintf (params, sizeof params, "k=%d decay=%g shrink=%g", best.k, best.decay, best.shrink);
    baseline_t *knn = best.k ? baseline_knn (train_t, &best) : NULL;
    if (knn)
        s_record (&r, knn, params, &best_m, (double) (util_mono_ms () - t) / 1000);

    //  EASE: lambda on validation.
    t = util_mono_ms ();
    size_t max_bytes = (size_t) cfg.ease_max_mb << 20;
    double best_l = 0;
    best_m = (metrics_t) { 0 };
    for (int a = 0; a < nl; a++) {
        baseline_t *ease = baseline_ease (train_v, (float) lambdas[a], max_bytes);
        if (!ease)
            break;
        sc = baseline_scorer (ease);
        evaluate (train_v, val, &sc, &mv);
        if (mv.ndcg10 > best_m.ndcg10) {
            best_m = mv;
            best_l = lambdas[a];
        }
        baseline_destroy (&ease);
    }
    if (best_l > 0) {
        snprintf (params, sizeof params, "lambda=%g", best_l);
        baseline_t *ease = baseline_ease (train_t, (float) best_l, max_bytes);
        if (ease)
            s_record (&r, ease, params, &best_m, (double) (util_mono_ms () - t) / 1000);
    }
    else if (nl > 0)
        fprintf (stderr, "  %-12s skipped: %u items need a %.0f MB matrix (--ease-max-mb %lld)\n", "EASE",
                 all->n_items, (double) all->n_items * all->n_items * 4 / 1048576, (long long) cfg.ease_max_mb);

    if (cfg.model) {
        //  Model selection: trained on everything before the validation targets, the
        //  number of epochs is chosen by validation NDCG@10 (early stopping). The test
        //  figures come from a fresh fit on everything before the test targets for that
        //  many epochs, exactly as the baselines are refitted.
        model_config_t mc;
        plan_config_t pc;
        if (hyper_configs (&cfg.hyper, &mc, &pc, err, sizeof err) < 0) {
            fprintf (stderr, "strata eval: %s\n", err);
            cfg.epochs = 0;
        }
        //  The catalogue's features for the item tower, if it describes any item.
        features_t *feats = NULL;
        if (mc.feature_rows > 0) {
            feats = features_fetch (eps.api, (uint32_t) mc.feature_rows, all->n_items, (int) cfg.timeout_ms, NULL, NULL,
                                    err, sizeof err);
            if (!feats)
                fprintf (stderr, "strata eval: catalogue: %s (training on ids only)\n", err);
            else if (feats->n_described == 0)
                features_destroy (&feats);
            else
                fprintf (stderr, "  item tower: %zu of %u items described by the catalogue\n", feats->n_described,
                         all->n_items);
        }
        step_session_t ss;
        int ok = cfg.epochs > 0 && step_session_init (&ss, &mc, &pc, train_v, feats) == 0;
        if (!ok && cfg.epochs > 0)
            fprintf (stderr, "strata eval: out of memory for the model\n");
        t = util_mono_ms ();
        metrics_t best_v = { 0 }, best_t = { 0 };
        int best_epoch = 0;
        double train_secs = 0;
        for (int e = 1; ok && e <= cfg.epochs && !zsys_interrupted; e++) {
            int64_t te = util_mono_ms ();
            double loss = step_session_epoch (&ss);
            train_secs += (double) (util_mono_ms () - te) / 1000;
            scorer_t ms = model_scorer (ss.master);
            metrics_t v;
            evaluate (train_v, val, &ms, &v);
            fprintf (stderr, "\r  epoch %3d  loss %.4f  validation NDCG@10 %.4f  (best %.4f at %d)  %.1fs/epoch   ", e,
                     loss, v.ndcg10, best_v.ndcg10 > v.ndcg10 ? best_v.ndcg10 : v.ndcg10,
                     v.ndcg10 > best_v.ndcg10 ? e : best_epoch, (double) (util_mono_ms () - te) / 1000);
            if (v.ndcg10 > best_v.ndcg10) {
                best_v = v;
                best_epoch = e;
            }
            else if (e - best_epoch >= cfg.patience)
                break;
        }
        fputc ('\n', stderr);
        //  The ranking head's blend with the retrieval score, chosen on validation.
        double best_blend = blends[0];
        metrics_t rank_v = { 0 };
        if (ok && model_has_ranker (ss.master))
            for (int i = 0; i < nblend; i++) {
                scorer_t rs = model_rank_scorer (ss.master, (int) cfg.rerank_top, (float) blends[i]);
                metrics_t v;
                evaluate (train_v, val, &rs, &v);
                fprintf (stderr, "  ranking head, top %lld, blend %g: validation NDCG@10 %.4f\n",
                         (long long) cfg.rerank_top, blends[i], v.ndcg10);
                if (i == 0 || v.ndcg10 > rank_v.ndcg10) {
                    rank_v = v;
                    best_blend = blends[i];
                }
            }
        if (ok)
            step_session_fini (&ss);
        //  The final fit, like the baselines': everything before the test targets, for
        //  the number of epochs validation chose, from the same seed.
        double final_secs = 0;
        ok = best_epoch > 0 && step_session_init (&ss, &mc, &pc, train_t, feats) == 0;
        if (ok) {
            int64_t tf = util_mono_ms ();
            for (int e = 1; e <= best_epoch && !zsys_interrupted; e++) {
                double loss = step_session_epoch (&ss);
                fprintf (stderr, "\r  final fit: epoch %3d of %d, loss %.4f   ", e, best_epoch, loss);
            }
            fputc ('\r', stderr);
            final_secs = (double) (util_mono_ms () - tf) / 1000;
            scorer_t ms = model_scorer (ss.master);
            evaluate (train_t, test, &ms, &best_t);
            snprintf (params, sizeof params, "epochs=%d d=%d blocks=%d%s%s", best_epoch, mc.dim, mc.blocks,
                      pc.negatives ? " sampled" : "", feats ? " +features" : "");
            double secs = (double) (util_mono_ms () - t) / 1000;
            s_row ("strata", params, &best_t, secs);
            json_array_append_new (r.results,
                                   json_pack ("{s:s, s:s, s:o, s:o, s:f, s:f, s:f, s:I, s:i}", "name", "strata",
                                              "params", params, "validation", s_metrics_json (&best_v), "test",
                                              s_metrics_json (&best_t), "seconds", secs, "selection_train_seconds",
                                              train_secs, "final_train_seconds", final_secs, "parameters",
                                              (json_int_t) model_parameters (ss.master), "negatives", pc.negatives));
            if (model_has_ranker (ss.master)) {
                //  The same fit, its top re-ranked by the ranking head.
                int64_t tr = util_mono_ms ();
                scorer_t rs = model_rank_scorer (ss.master, (int) cfg.rerank_top, (float) best_blend);
                metrics_t rank_t;
                evaluate (train_t, test, &rs, &rank_t);
                char rparams[160];
                snprintf (rparams, sizeof rparams, "top=%lld blend=%g", (long long) cfg.rerank_top, best_blend);
                double rsecs = (double) (util_mono_ms () - tr) / 1000;
                s_row ("strata+rank", rparams, &rank_t, rsecs);
                json_array_append_new (r.results, json_pack ("{s:s, s:s, s:o, s:o, s:f, s:f, s:i}", "name",
                                                             "strata+rank", "params", rparams, "validation",
                                                             s_metrics_json (&rank_v), "test",
                                                             s_metrics_json (&rank_t), "seconds", rsecs, "blend",
                                                             best_blend, "top", (int) cfg.rerank_top));
            }
            step_session_fini (&ss);
        }
        features_destroy (&feats);
    }

    int status = 0;
    if (zsys_interrupted) {
        fprintf (stderr, "strata eval: interrupted; no results\n");
        json_decref (r.results);
        status = 130;
    }
    else {
        json_t *out = json_pack ("{s:{s:i, s:i, s:I, s:i}, s:s, s:o}", "dataset", "users", (int) all->n_users, "items",
                                 (int) all->n_items, "events", (json_int_t) all->n_events, "evaluated_users",
                                 (int) eval_users, "protocol",
                                 "leave-one-out (last event test, second-to-last validation), full-catalogue ranking, "
                                 "history items excluded, ties count against",
                                 "results", r.results);
        char *text = json_dumps (out, JSON_COMPACT);
        printf ("%s\n", text);
        free (text);
        json_decref (out);
    }
    free (val);
    free (test);
    dataset_destroy (&train_v);
    dataset_destroy (&train_t);
    dataset_destroy (&all);
    config_free (s_keys, &cfg);
    return status;
}
