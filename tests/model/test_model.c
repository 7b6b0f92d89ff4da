/*  Unit: the whole model against finite differences (every parameter tensor, item
    tower with catalogue features, ranking head, dropout on with fixed masks), a small learning check
    (on sequences with a fixed next-item rule the trained model, and its ranking head
    alone, must rank the right next item first almost always), and cold start: an item nobody touched gets its vector
    from the features it shares with items that were.
*/
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "evaluate.h"
#include "harness.h"
#include "model.h"
#include "model_eval.h"
#include "step_session.h"

//  Users walk a cycle of 12 items, each starting somewhere: item i is followed by i+1.
static dataset_t *
s_cycles (uint32_t users, uint32_t len)
{
    static uint32_t u[4096], it[4096];
    size_t n = 0;
    for (uint32_t a = 0; a < users; a++)
        for (uint32_t k = 0; k < len && n < 4096; k++) {
            u[n] = a;
            it[n] = (a * 5 + k) % 12;
            n++;
        }
    return dataset_from_arrays (users, 12, n, u, it, NULL, NULL);
}

Test (model, whole_model_gradient_check)
{
    model_config_t cfg;
    model_config_default (&cfg);
    cfg.dim = 8;
    cfg.max_len = 5;
    cfg.blocks = 2;
    cfg.ffn = 16;
    cfg.batch = 4;
    cfg.dropout = 0.2f;
    cfg.feature_rows = 6;
    //  The ranking head, with three negatives per position.
    cfg.rank_negatives = 3;
    cfg.rank_layers = 3;
    cfg.rank_widths[0] = 12;
    cfg.rank_widths[1] = 8;
    cfg.rank_widths[2] = 6;
    cfg.rank_weight = 0.7f;
    cfg.rank_share = 1;   // every tower tensor gets the head's gradient too
    //  No hard negatives: which items score highest flips under the probes, a step in
    //  the loss no finite difference can follow (their gradient is the negatives' code).
    cfg.rank_hard = 0;
    model_t *m = model_new (&cfg, 12);
    cr_assert_not_null (m);
    cr_assert (model_has_ranker (m));
    //  Catalogue features: most items have one to three of six feature rows, some none.
    uint32_t foff[13] = { 0, 1, 3, 3, 5, 6, 8, 9, 9, 11, 12, 14, 15 };
    uint32_t feat[15] = { 0, 1, 2, 3, 4, 5, 0, 2, 4, 1, 5, 3, 0, 1, 2 };
    features_t *fs = features_from_lists (12, 6, foff, feat);
    cr_assert_not_null (fs);
    model_set_features (m, fs);
    //  Embeddings start tiny (std 0.02), which puts the first layer norm in its most
    //  curved region, where finite differences mislead; check at a typical trained scale.
    for (int t = 0; t < 4; t++) {   // item, (not feature,) position and event-type embeddings
        size_t n;
        float *w = model_tensor (m, t, NULL, &n, NULL);
        if (t == 1)
            continue;
        for (size_t i = 0; i < n; i++)
            w[i] *= 20;
    }
    //  Histories shorter and longer than max_len, so padding and truncation both occur.
    uint32_t u[] = { 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 2, 2 };
    uint32_t it[] = { 3, 4, 5, 1, 2, 3, 4, 5, 6, 7, 9, 10 };
    //  Views, carts and purchases: the event-type embedding is checked too.
    uint8_t ty[] = { 1, 3, 4, 1, 1, 2, 4, 1, 3, 1, 4, 1 };
    dataset_t *d = dataset_from_arrays (3, 12, 12, u, it, ty, NULL);
    uint32_t users[] = { 0, 1, 2 };
    model_zero_grad (m);
    model_batch_loss (m, d, users, 3, 1, 1);
    //  Small enough to stay clear of ReLU kinks, large enough for float losses.
    const float eps = 1e-3f;
    int checked = 0, ranked = 0;
    for (int t = 0; t < model_tensor_count (m); t++) {
        float *g;
        size_t n;
        const char *name;
        float *w = model_tensor (m, t, &g, &n, &name);
        float *grad = malloc (n * sizeof *grad);
        memcpy (grad, g, n * sizeof *grad);
        size_t stride = n > 12 ? n / 12 : 1;
        for (size_t i = 0; i < n; i += stride) {
            float keep = w[i];
            w[i] = keep + eps;
            double up = model_batch_loss (m, d, users, 3, 1, 0);
            w[i] = keep - eps;
            double down = model_batch_loss (m, d, users, 3, 1, 0);
            w[i] = keep;
            double num = (up - down) / (2 * eps);
            double err = fabs (num - grad[i]) / fmax (1e-2, fabs (num) + fabs (grad[i]));
            cr_expect_lt (err, 2e-2, "%s[%zu] (block %d): analytic %g numeric %g", name, i, t < 6 ? -1 : (t - 6) / 12,
                          (double) grad[i], num);
            checked++;
            ranked += !strncmp (name, "rank_", 5);
        }
        free (grad);
    }
    cr_expect_gt (checked, 200);
    cr_expect_gt (ranked, 60, "the ranking head's %d tensors are checked", 2 * (cfg.rank_layers + 1));
    dataset_destroy (&d);
    model_destroy (&m);
    features_destroy (&fs);
}

//  The gradients of every tensor after one batch of s_cycles data.
static float **
s_grads (const model_config_t *cfg, int *tensors)
{
    model_t *m = model_new (cfg, 12);
    dataset_t *d = s_cycles (6, 7);
    uint32_t users[] = { 0, 1, 2, 3, 4, 5 };
    model_zero_grad (m);
    model_batch_loss (m, d, users, 6, 1, 1);
    *tensors = model_tensor_count (m);
    float **out = calloc ((size_t) *tensors, sizeof *out);
    for (int t = 0; t < *tensors; t++) {
        float *g;
        size_t n;
        model_tensor (m, t, &g, &n, NULL);
        out[t] = malloc ((n + 1) * sizeof (float));
        out[t][0] = (float) n;
        memcpy (out[t] + 1, g, n * sizeof (float));
    }
    dataset_destroy (&d);
    model_destroy (&m);
    return out;
}

Test (model, ranking_share_controls_what_reaches_the_towers)
{
    //  With rank-share 0 the towers get exactly the retrieval gradient (as with the
    //  ranking loss weighted 0), while the head itself still learns; with share 1 the
    //  towers' gradients change.
    model_config_t cfg;
    model_config_default (&cfg);
    cfg.dim = 8;
    cfg.max_len = 5;
    cfg.ffn = 16;
    cfg.batch = 8;
    cfg.rank_widths[0] = 12;
    cfg.rank_widths[1] = 8;
    cfg.rank_widths[2] = 6;
    int n0, n1, n2;
    cfg.rank_weight = 0;
    float **off = s_grads (&cfg, &n0);
    cfg.rank_weight = 1;
    cfg.rank_share = 0;
    float **detached = s_grads (&cfg, &n1);
    cfg.rank_share = 1;
    float **joint = s_grads (&cfg, &n2);
    cr_assert (n0 == n1 && n1 == n2);
    for (int t = 0; t < n0; t++) {
        size_t n = (size_t) off[t][0];
        int head = t >= n0 - 2 * (cfg.rank_layers + 1);
        double diff_detached = 0, diff_joint = 0, head_grad = 0;
        for (size_t i = 1; i <= n; i++) {
            diff_detached += fabs ((double) detached[t][i] - off[t][i]);
            diff_joint += fabs ((double) joint[t][i] - off[t][i]);
            head_grad += fabs ((double) detached[t][i]);
        }
        if (head)
            cr_expect_gt (head_grad, 0, "tensor %d of the head gets no gradient", t);
        else {
            cr_expect_eq (diff_detached, 0, "tensor %d: the detached head moved a tower", t);
            if (t == 0 || t == 4)
                cr_expect_gt (diff_joint, 0, "tensor %d: the joint head does not reach the towers", t);
        }
    }
    for (int t = 0; t < n0; t++) {
        free (off[t]);
        free (detached[t]);
        free (joint[t]);
    }
    free (off);
    free (detached);
    free (joint);
}

Test (model, learns_a_next_item_rule, .timeout = 120)
{
    SKIP_UNDER_VALGRIND ();
    model_config_t cfg;
    model_config_default (&cfg);
    cfg.dim = 16;
    cfg.max_len = 8;
    cfg.ffn = 32;
    cfg.batch = 32;
    cfg.dropout = 0.1f;
    cfg.lr = 0.01f;
    dataset_t *d = s_cycles (200, 8);
    uint32_t *test = NULL;
    dataset_t *t = dataset_holdout (d, 1, &test);
    plan_config_t pc;
    plan_config_default (&pc);
    pc.batch = cfg.batch;
    pc.max_len = cfg.max_len;
    step_session_t ss;
    cr_assert_eq (step_session_init (&ss, &cfg, &pc, t, NULL), 0);
    double first = step_session_epoch (&ss), last = first;
    for (int e = 0; e < 60; e++)
        last = step_session_epoch (&ss);
    cr_expect_lt (last, first * 0.5, "loss did not fall: %f -> %f", first, last);
    scorer_t sc = model_scorer (ss.master);
    metrics_t mt;
    evaluate (t, test, &sc, &mt);
    //  The history excludes 7 of 12 items; the rule leaves one right answer.
    cr_expect_gt (mt.mrr, 0.9, "mrr %f", mt.mrr);
    //  The ranking head learned it too: re-ranking the top 5 by the head alone (blend
    //  0) still puts the right item first.
    cr_assert (model_has_ranker (ss.master));
    scorer_t rk = model_rank_scorer (ss.master, 5, 0.0f);
    metrics_t mr;
    evaluate (t, test, &rk, &mr);
    cr_expect_gt (mr.mrr, 0.9, "ranking head mrr %f", mr.mrr);
    cr_log_info ("retrieval mrr %f, ranking head mrr %f", mt.mrr, mr.mrr);
    //  The serving calls agree with the scorers: user 3's vector dotted with the item
    //  vectors gives the retrieval scores, and the head's logits the re-ranked ones.
    uint32_t u3 = 3, len = dataset_len (t, u3);
    float vec[16], scores[12], ranked[12], logits[12];
    cr_assert_eq (model_user_vectors (ss.master, t->items + t->offsets[u3], t->types + t->offsets[u3], &len, 1, vec), 0);
    sc.score (sc.model, t, &u3, 1, scores);
    const float *iv = model_item_vectors (ss.master);
    for (int i = 0; i < 12; i++) {
        double dot = 0;
        for (int k = 0; k < 16; k++)
            dot += (double) vec[k] * iv[i * 16 + k];
        cr_expect_float_eq (dot, scores[i], 1e-3, "item %d: %f vs %f", i, dot, scores[i]);
    }
    cr_assert_eq (model_user_vectors (ss.master, t->items + t->offsets[u3], t->types + t->offsets[u3], &len, 1, vec), 0);
    uint32_t cands[12];
    for (uint32_t i = 0; i < 12; i++)
        cands[i] = i;
    cr_assert_eq (model_rank_candidates (ss.master, 0, cands, 12, logits), 0);
    rk = model_rank_scorer (ss.master, 12, 0.0f);
    rk.score (rk.model, t, &u3, 1, ranked);
    for (int i = 0; i < 12; i++)
        if (ranked[i] > 1e3f)   // re-ranked (not in the history)
            cr_expect_float_eq (ranked[i] - 1e4f, logits[i], 2e-3, "item %d", i);
    cr_expect_eq (model_rank_candidates (ss.master, 1, cands, 12, logits), STRATA_EINVAL, "only one user was served");
    cands[0] = 12;
    cr_expect_eq (model_rank_candidates (ss.master, 0, cands, 1, logits), STRATA_EINVAL, "an item outside the table");
    step_session_fini (&ss);
    free (test);
    dataset_destroy (&t);
    dataset_destroy (&d);
}

//  The serving calls' codes: a rank worker splits a batch that is too large, refuses a
//  request naming an unknown item, and scores by retrieval alone without a head.
Test (model, serving_call_codes)
{
    model_config_t cfg;
    model_config_default (&cfg);
    cfg.dim = 8;
    cfg.max_len = 4;
    cfg.blocks = 1;
    cfg.ffn = 16;
    cfg.batch = 2;
    cfg.rank_negatives = 0;   // no ranking head
    cfg.inference = 1;
    model_t *m = model_new (&cfg, 6);
    cr_assert_not_null (m);
    static const struct {
        const char *label;
        uint32_t items[6];
        uint32_t lens[3];
        uint32_t n;
        int code;
    } cases[] = {
        { "two users", { 0, 1, 2, 3 }, { 2, 2 }, 2, 0 },
        { "more users than the batch", { 0, 1, 2 }, { 1, 1, 1 }, 3, STRATA_ETOOLARGE },
        { "an item outside the table", { 0, 6 }, { 2 }, 1, STRATA_EINVAL },
        { "one user", { 5 }, { 1 }, 1, 0 },
    };
    float out[3 * 8], logits[2];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        cr_expect_eq (model_user_vectors (m, cases[c].items, NULL, cases[c].lens, cases[c].n, out), cases[c].code,
                      "%s", cases[c].label);
    uint32_t cands[2] = { 0, 1 };
    cr_expect_eq (model_rank_candidates (m, 0, cands, 2, logits), STRATA_ESTATE, "no ranking head");
    model_destroy (&m);
}

Test (model, untouched_items_get_vectors_from_their_features, .timeout = 120)
{
    SKIP_UNDER_VALGRIND ();
    //  Items 0..19 are bought in a cycle; items 20..39 never appear, but item 20 + k
    //  shares its catalogue features with item k.
    enum { N = 20 };
    uint32_t foff[2 * N + 1], feat[2 * N];
    for (uint32_t i = 0; i <= 2 * N; i++)
        foff[i] = i;
    for (uint32_t i = 0; i < 2 * N; i++)
        feat[i] = i % N;
    features_t *fs = features_from_lists (2 * N, N, foff, feat);
    static uint32_t u[4000], it[4000];
    size_t n = 0;
    for (uint32_t a = 0; a < 400; a++)
        for (uint32_t k = 0; k < 8; k++) {
            u[n] = a;
            it[n] = (a * 3 + k) % N;
            n++;
        }
    dataset_t *d = dataset_from_arrays (400, 2 * N, n, u, it, NULL, NULL);
    model_config_t cfg;
    model_config_default (&cfg);
    cfg.dim = 16;
    cfg.max_len = 8;
    cfg.ffn = 32;
    cfg.batch = 32;
    cfg.dropout = 0.1f;
    cfg.lr = 0.01f;
    cfg.feature_rows = N;
    plan_config_t pc;
    plan_config_default (&pc);
    pc.batch = 32;
    pc.max_len = 8;
    step_session_t ss;
    cr_assert_eq (step_session_init (&ss, &cfg, &pc, d, fs), 0);
    for (int e = 0; e < 30; e++)
        step_session_epoch (&ss);
    const float *v = model_item_vectors (ss.master);
    cr_assert_not_null (v);
    int right = 0;
    for (int k = 0; k < N; k++) {
        const float *x = v + (size_t) (N + k) * cfg.dim;
        int best = -1;
        double best_cos = -2;
        for (int j = 0; j < N; j++) {
            const float *y = v + (size_t) j * cfg.dim;
            double dot = 0, nx = 0, ny = 0;
            for (int q = 0; q < cfg.dim; q++) {
                dot += x[q] * y[q];
                nx += x[q] * x[q];
                ny += y[q] * y[q];
            }
            double c = dot / sqrt (nx * ny + 1e-12);
            if (c > best_cos) {
                best_cos = c;
                best = j;
            }
        }
        right += best == k;
    }
    cr_expect_geq (right, 18, "only %d of %d untouched items sit next to their feature twin", right, N);
    step_session_fini (&ss);
    dataset_destroy (&d);
    features_destroy (&fs);
}
