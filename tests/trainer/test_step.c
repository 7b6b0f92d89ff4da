/*  Unit: the training schedule and the split of a step between train workers and the
    parameter server. The sampled-softmax shard path is checked against finite
    differences; a step cut into shards gives the gradient of the whole step; the
    schedule and the in-process training are reproducible to the bit; and a model
    trained with sampled candidates still learns a next-item rule.
*/
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "evaluate.h"
#include "harness.h"
#include "model.h"
#include "model_eval.h"
#include "plan.h"
#include "step_session.h"

//  Users walk a cycle of n items, each starting somewhere: item i is followed by i+1.
static dataset_t *
s_cycles (uint32_t users, uint32_t len, uint32_t n_items)
{
    static uint32_t u[8192], it[8192];
    static uint8_t ty[8192];
    size_t n = 0;
    for (uint32_t a = 0; a < users; a++)
        for (uint32_t k = 0; k < len && n < 8192; k++) {
            u[n] = a;
            it[n] = (a * 5 + k) % n_items;
            ty[n] = (uint8_t) (1 + (a + k) % 4);   // views, clicks, carts, purchases
            n++;
        }
    return dataset_from_arrays (users, n_items, n, u, it, ty, NULL);
}

static void
s_small (model_config_t *mc, plan_config_t *pc)
{
    model_config_default (mc);
    mc->dim = 8;
    mc->max_len = 5;
    mc->ffn = 16;
    mc->batch = 8;
    mc->dropout = 0.2f;
    //  A small ranking head: fewer ReLUs, fewer kinks for finite differences to cross.
    mc->rank_widths[0] = 12;
    mc->rank_widths[1] = 8;
    mc->rank_widths[2] = 6;
    plan_config_default (pc);
    pc->batch = 8;
    pc->max_len = 5;
}

//  Loads a shard's rows into a compute model the way step_compute does.
static void
s_load_rows (model_t *local, model_t *master, const model_shard_t *sh)
{
    int d = model_config (master)->dim;
    model_resize_rows (local, sh->n_rows);
    float *dense = malloc (model_dense_size (master) * sizeof *dense);
    model_dense_get (master, dense);
    model_dense_set (local, dense);
    free (dense);
    const float *w = model_row_weights (master, NULL);
    float *lw = model_row_weights (local, NULL);
    for (uint32_t r = 0; r < sh->n_rows; r++)
        memcpy (lw + (size_t) r * d, w + (size_t) sh->rows[r] * d, (size_t) d * sizeof (float));
    const float *f = model_feature_weights (master, NULL);
    float *lf = model_feature_weights (local, NULL);
    for (uint32_t r = 0; r < sh->n_frows; r++)
        memcpy (lf + (size_t) r * d, f + (size_t) sh->frows[r] * d, (size_t) d * sizeof (float));
}

Test (step, sampled_shard_gradient_check)
{
    model_config_t mc;
    plan_config_t pc;
    s_small (&mc, &pc);
    pc.negatives = 6;
    pc.sampler = PLAN_POPULARITY;
    pc.shards = 4;   // two sequences: a small summed loss keeps float differences exact enough
    mc.feature_rows = 7;
    mc.rank_share = 1;   // the head's gradient reaches the towers: checked too
    mc.rank_hard = 0;    // see test_model.c
    dataset_t *d = s_cycles (20, 7, 40);
    //  Every item has one or two of seven features: the item tower is checked too.
    uint32_t foff[41], feat[80], nf = 0;
    for (uint32_t i = 0; i < 40; i++) {
        foff[i] = nf;
        feat[nf++] = i % 7;
        if (i % 3 == 0)
            feat[nf++] = (i / 3) % 7 == i % 7 ? (i + 1) % 7 : (i / 3) % 7;
    }
    foff[40] = nf;
    features_t *fs = features_from_lists (40, 7, foff, feat);
    plan_t *plan = plan_new (d, &pc);
    model_t *master = model_new (&mc, 40), *local = model_new (&mc, 1);
    cr_assert (plan && master && local && fs);
    cr_assert_eq (plan_set_features (plan, fs), 0);
    plan_epoch (plan, 0);
    model_shard_t sh;
    cr_assert_eq (plan_shard (plan, 0, 0, &sh), 0);
    cr_expect_lt (sh.n_rows, 40u, "a sampled shard needs only some rows");
    cr_expect_gt (sh.n_cand, 6u);
    cr_expect_not_null (sh.bias, "popularity sampling carries the log-Q correction");
    cr_expect_not_null (sh.feat_off);
    cr_expect_gt (sh.n_frows, 0u);
    s_load_rows (local, master, &sh);
    //  Check at a trained scale (see test_model.c).
    for (int t = 0; t < 4; t++) {
        size_t n;
        float *w = model_tensor (local, t, NULL, &n, NULL);
        if (t == 1)
            continue;   // feature rows stay small: items sum them onto their own rows
        for (size_t i = 0; i < n; i++)
            w[i] *= 20;
    }
    model_zero_grad (local);
    uint64_t pos;
    double loss = model_shard_grad (local, &sh, &pos);
    cr_expect_gt (pos, 0u);
    cr_expect (isfinite (loss));
    //  Every gradient is kept before the probes below accumulate more.
    int tensors = model_tensor_count (local);
    float **grads = calloc ((size_t) tensors, sizeof *grads);
    for (int t = 0; t < tensors; t++) {
        float *g;
        size_t n;
        model_tensor (local, t, &g, &n, NULL);
        grads[t] = malloc (n * sizeof (float));
        memcpy (grads[t], g, n * sizeof (float));
    }
    const float eps = 5e-4f;
    int checked = 0;
    for (int t = 0; t < tensors; t++) {
        size_t n;
        const char *name;
        float *w = model_tensor (local, t, NULL, &n, &name);
        if (t == 0)
            n = (size_t) sh.n_rows * mc.dim;
        if (t == 1)
            n = (size_t) sh.n_frows * mc.dim;
        float *grad = grads[t];
        size_t stride = n > 10 ? n / 10 : 1;
        for (size_t i = 0; i < n; i += stride) {
            float keep = w[i];
            uint64_t p;
            w[i] = keep + eps;
            double up = model_shard_grad (local, &sh, &p);
            w[i] = keep - eps;
            double down = model_shard_grad (local, &sh, &p);
            w[i] = keep;
            double num = (up - down) / (2 * eps);
            double err = fabs (num - grad[i]) / fmax (1e-1, fabs (num) + fabs (grad[i]));
            cr_expect_lt (err, 2e-2, "%s[%zu]: analytic %g numeric %g", name, i, (double) grad[i], num);
            checked++;
        }
        free (grad);
    }
    free (grads);
    cr_expect_gt (checked, 150);
    plan_shard_free (&sh);
    model_destroy (&master);
    model_destroy (&local);
    plan_destroy (&plan);
    dataset_destroy (&d);
    features_destroy (&fs);
}

//  The gradient of step 0 accumulated into the master, for the given shard count.
static void
s_step_grad (const dataset_t *d, int shards, int negatives, float *dense_out, float *rows_out)
{
    model_config_t mc;
    plan_config_t pc;
    s_small (&mc, &pc);
    mc.dropout = 0;   // shards differ in dropout masks; without dropout they must agree
    pc.shards = shards;
    pc.negatives = negatives;
    plan_t *plan = plan_new (d, &pc);
    model_t *master = model_new (&mc, d->n_items), *local = model_new (&mc, 1);
    agg_t *agg = agg_new (master);
    cr_assert (plan && master && local && agg);
    plan_epoch (plan, 0);
    step_tensors_t p = { 0 };
    size_t pr = 0, pf = 0;
    float *dense = malloc (model_dense_size (master) * sizeof (float));
    cr_assert_not_null (dense);
    for (int k = 0; k < shards; k++) {
        model_shard_t sh;
        cr_assert_eq (plan_shard (plan, 0, k, &sh), 0);
        cr_assert_eq (step_tensors_fit (&p, &pr, &pf, master, &sh), 0);
        uint64_t pos;
        agg_export (agg, &sh, &p);
        step_view_t pv = step_view (&p), g;
        double l = step_compute (local, &sh, &pv, dense, &g, &pos);
        cr_assert (isfinite (l));
        agg_add (agg, &sh, &g, l, pos);
        plan_shard_free (&sh);
    }
    model_dense_grad_get (master, dense_out);
    float *gw;
    model_row_weights (master, &gw);
    memcpy (rows_out, gw, (size_t) d->n_items * mc.dim * sizeof (float));
    step_tensors_free (&p);
    free (dense);
    agg_destroy (&agg);
    model_destroy (&master);
    model_destroy (&local);
    plan_destroy (&plan);
}

Test (step, shards_add_up_to_the_whole_step)
{
    dataset_t *d = s_cycles (30, 6, 24);
    model_config_t mc;
    plan_config_t pc;
    s_small (&mc, &pc);
    model_t *probe = model_new (&mc, 24);
    size_t dn = model_dense_size (probe), rn = (size_t) 24 * mc.dim;
    model_destroy (&probe);
    for (int negatives = 0; negatives <= 5; negatives += 5) {
        float *d1 = malloc (dn * sizeof *d1), *d3 = malloc (dn * sizeof *d3);
        float *r1 = malloc (rn * sizeof *r1), *r3 = malloc (rn * sizeof *r3);
        s_step_grad (d, 1, negatives, d1, r1);
        s_step_grad (d, 3, negatives, d3, r3);
        double worst = 0, norm = 0;
        for (size_t i = 0; i < dn; i++) {
            worst = fmax (worst, fabs (d1[i] - d3[i]));
            norm = fmax (norm, fabs (d1[i]));
        }
        for (size_t i = 0; i < rn; i++) {
            worst = fmax (worst, fabs (r1[i] - r3[i]));
            norm = fmax (norm, fabs (r1[i]));
        }
        cr_expect_gt (norm, 1e-3, "the step has a gradient");
        cr_expect_lt (worst, 1e-4 * fmax (1, norm), "negatives %d: 1 shard vs 3 differ by %g", negatives, worst);
        free (d1);
        free (d3);
        free (r1);
        free (r3);
    }
    dataset_destroy (&d);
}

Test (step, same_seed_same_bits)
{
    dataset_t *d = s_cycles (60, 7, 30);
    model_config_t mc;
    plan_config_t pc;
    s_small (&mc, &pc);
    pc.shards = 2;
    pc.negatives = 8;
    step_session_t a, b;
    cr_assert_eq (step_session_init (&a, &mc, &pc, d, NULL), 0);
    cr_assert_eq (step_session_init (&b, &mc, &pc, d, NULL), 0);
    for (int e = 0; e < 2; e++) {
        double la = step_session_epoch (&a), lb = step_session_epoch (&b);
        cr_expect_eq (la, lb);
    }
    for (int t = 0; t < model_tensor_count (a.master); t++) {
        size_t n;
        const char *name;
        float *wa = model_tensor (a.master, t, NULL, &n, &name);
        float *wb = model_tensor (b.master, t, NULL, NULL, NULL);
        cr_expect_eq (memcmp (wa, wb, n * sizeof (float)), 0, "%s differs", name);
    }
    //  A shard rebuilt (as for a dead worker) is the same shard.
    model_shard_t s1, s2;
    plan_epoch (a.plan, 5);
    cr_assert_eq (plan_shard (a.plan, 1, 1, &s1), 0);
    plan_shard (a.plan, 0, 0, &s2);
    plan_shard_free (&s2);
    cr_assert_eq (plan_shard (a.plan, 1, 1, &s2), 0);
    cr_expect_eq (s1.seed, s2.seed);
    cr_expect_eq (s1.n_rows, s2.n_rows);
    cr_expect_eq (memcmp (s1.rows, s2.rows, s1.n_rows * sizeof *s1.rows), 0);
    cr_expect_eq (memcmp (s1.items, s2.items, s1.n_items * sizeof *s1.items), 0);
    plan_shard_free (&s1);
    plan_shard_free (&s2);
    step_session_fini (&a);
    step_session_fini (&b);
    dataset_destroy (&d);
}

Test (step, ranking_negatives_are_sampled_per_position)
{
    dataset_t *d = s_cycles (40, 6, 30);
    for (int sampler = PLAN_UNIFORM; sampler <= PLAN_POPULARITY; sampler++) {
        for (int negatives = 0; negatives <= 8; negatives += 8) {
            model_config_t mc;
            plan_config_t pc;
            s_small (&mc, &pc);
            pc.negatives = negatives;
            pc.rank_negatives = 3;
            pc.rank_sampler = (plan_sampler_t) sampler;
            plan_t *plan = plan_new (d, &pc);
            plan_epoch (plan, 0);
            model_shard_t a, b;
            cr_assert_eq (plan_shard (plan, 1, 0, &a), 0);
            cr_assert_eq (plan_shard (plan, 1, 0, &b), 0);
            cr_assert_not_null (a.rank_neg);
            size_t positions = a.n_items - a.n, p = 0, w = 0;
            cr_expect_eq (memcmp (a.rank_neg, b.rank_neg, positions * 3 * sizeof (uint32_t)), 0,
                          "a rebuilt shard has the same negatives");
            for (uint32_t s = 0; s < a.n; w += a.lens[s], s++)
                for (uint32_t k = 1; k < a.lens[s]; k++, p++) {
                    uint32_t target = a.rows[a.items[w + k]];
                    for (int c = 0; c < 3; c++) {
                        uint32_t r = a.rank_neg[p * 3 + (size_t) c];
                        cr_assert_lt (r, a.n_rows, "a negative outside the shard's table");
                        cr_expect_neq (a.rows[r], target, "a negative equals its position's target");
                    }
                }
            cr_expect_eq (p, positions);
            plan_shard_free (&a);
            plan_shard_free (&b);
            plan_destroy (&plan);
        }
    }
    dataset_destroy (&d);
}

Test (step, sampled_softmax_learns_a_next_item_rule, .timeout = 120)
{
    SKIP_UNDER_VALGRIND ();
    model_config_t mc;
    plan_config_t pc;
    model_config_default (&mc);
    mc.dim = 16;
    mc.max_len = 8;
    mc.ffn = 32;
    mc.batch = 32;
    mc.dropout = 0.1f;
    mc.lr = 0.01f;
    plan_config_default (&pc);
    pc.batch = 32;
    pc.max_len = 8;
    pc.negatives = 10;
    dataset_t *d = s_cycles (300, 8, 60);
    uint32_t *test = NULL;
    dataset_t *t = dataset_holdout (d, 1, &test);
    step_session_t ss;
    cr_assert_eq (step_session_init (&ss, &mc, &pc, t, NULL), 0);
    for (int e = 0; e < 35; e++)
        step_session_epoch (&ss);
    scorer_t sc = model_scorer (ss.master);
    metrics_t mt;
    evaluate (t, test, &sc, &mt);
    cr_expect_gt (mt.mrr, 0.8, "mrr %f over 60 items with 10 sampled candidates per step", mt.mrr);
    cr_log_info ("sampled softmax: mrr %f", mt.mrr);
    step_session_fini (&ss);
    free (test);
    dataset_destroy (&t);
    dataset_destroy (&d);
}

Test (step, event_types_change_the_prediction, .timeout = 120)
{
    SKIP_UNDER_VALGRIND ();
    //  After a purchase of item p the next item is p+1, after a view of p it is p+10:
    //  only a model that reads event types can get both right.
    enum { N = 20, USERS = 1200 };
    static uint32_t u[2 * USERS], it[2 * USERS];
    static uint8_t ty[2 * USERS];
    uint32_t *targets = malloc (USERS * sizeof *targets);
    uint32_t hu[USERS], hi[USERS];
    uint8_t ht[USERS];
    for (uint32_t a = 0; a < USERS; a++) {
        uint32_t p = a % N;
        uint8_t t = (a / N) % 2 ? 4 : 1;   // purchase or view
        uint32_t next = t == 4 ? (p + 1) % N : (p + 10) % N;
        u[2 * a] = u[2 * a + 1] = a;
        it[2 * a] = p;
        it[2 * a + 1] = next;
        ty[2 * a] = t;
        ty[2 * a + 1] = 1;
        hu[a] = a;
        hi[a] = p;
        ht[a] = t;
        targets[a] = next;
    }
    dataset_t *train = dataset_from_arrays (USERS, N, 2 * USERS, u, it, ty, NULL);
    dataset_t *hist = dataset_from_arrays (USERS, N, USERS, hu, hi, ht, NULL);
    model_config_t mc;
    plan_config_t pc;
    model_config_default (&mc);
    mc.dim = 16;
    mc.max_len = 4;
    mc.ffn = 32;
    mc.batch = 64;
    mc.dropout = 0;
    mc.lr = 0.01f;
    plan_config_default (&pc);
    pc.batch = 64;
    pc.max_len = 4;
    step_session_t ss;
    cr_assert_eq (step_session_init (&ss, &mc, &pc, train, NULL), 0);
    for (int e = 0; e < 30; e++)
        step_session_epoch (&ss);
    scorer_t sc = model_scorer (ss.master);
    metrics_t mt;
    evaluate (hist, targets, &sc, &mt);
    cr_expect_gt (mt.mrr, 0.95, "mrr %f: the event type was not used", mt.mrr);
    step_session_fini (&ss);
    dataset_destroy (&train);
    dataset_destroy (&hist);
    free (targets);
}
