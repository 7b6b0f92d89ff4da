/*  Unit: the train worker's computation. A task built from a plan shard gives exactly
    the gradient the in-process step computes, and a malformed task (bad shape, items
    outside the shard's table, tensors of the wrong size, lengths that do not add up)
    gets an error instead of a crash.
*/
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "plan.h"
#include "agg.h"
#include "step.h"
#include "train.h"

typedef struct {
    dataset_t *d;
    plan_t *plan;
    model_t *master, *local;
    agg_t *agg;
    model_shard_t sh;
    features_t *fs;
    step_tensors_t p;
    size_t pr, pf;
    Strata__V1__ModelShape shape;
    uint32_t widths[MODEL_RANK_MAX_LAYERS];
    Strata__V1__TrainTask task;
} fixture_t;

static void
s_setup (fixture_t *f)
{
    uint32_t u[600], it[600];
    for (uint32_t i = 0; i < 600; i++) {
        u[i] = i / 12;
        it[i] = (i * 7 + i / 12) % 50;
    }
    f->d = dataset_from_arrays (50, 50, 600, u, it, NULL, NULL);
    model_config_t mc;
    model_config_default (&mc);
    mc.dim = 8;
    mc.max_len = 6;
    mc.ffn = 16;
    mc.batch = 16;
    mc.feature_rows = 9;
    plan_config_t pc;
    plan_config_default (&pc);
    pc.batch = 16;
    pc.max_len = 6;
    pc.negatives = 10;
    uint32_t foff[51], feat[100], nf = 0;
    for (uint32_t i = 0; i < 50; i++) {
        foff[i] = nf;
        if (i % 5 != 4)
            feat[nf++] = i % 9;   // some items have no features
    }
    foff[50] = nf;
    f->fs = features_from_lists (50, 9, foff, feat);
    f->plan = plan_new (f->d, &pc);
    plan_set_features (f->plan, f->fs);
    f->master = model_new (&mc, 50);
    f->local = model_new (&mc, 1);
    f->agg = agg_new (f->master);
    cr_assert (f->plan && f->master && f->local && f->agg);
    plan_epoch (f->plan, 0);
    cr_assert_eq (plan_shard (f->plan, 0, 0, &f->sh), 0);
    memset (&f->p, 0, sizeof f->p);
    f->pr = f->pf = 0;
    cr_assert_eq (step_tensors_fit (&f->p, &f->pr, &f->pf, f->master, &f->sh), 0);
    agg_export (f->agg, &f->sh, &f->p);
    Strata__V1__ModelShape shape = STRATA__V1__MODEL_SHAPE__INIT;
    shape.dim = 8;
    shape.max_len = 6;
    shape.blocks = (uint32_t) mc.blocks;
    shape.ffn = 16;
    shape.dropout = mc.dropout;
    shape.feature_rows = 9;
    shape.rank_negatives = (uint32_t) mc.rank_negatives;
    shape.rank_weight = mc.rank_weight;
    shape.rank_share = mc.rank_share;
    shape.rank_hard = (uint32_t) mc.rank_hard;
    shape.n_rank_widths = (size_t) mc.rank_layers;
    for (int k = 0; k < mc.rank_layers; k++)
        f->widths[k] = (uint32_t) mc.rank_widths[k];
    shape.rank_widths = f->widths;
    f->shape = shape;
    Strata__V1__TrainTask task = STRATA__V1__TRAIN_TASK__INIT;
    task.task_id = 7;
    task.shard_id = f->sh.id;
    task.seed = f->sh.seed;
    task.shape = &f->shape;
    task.n_lens = f->sh.n;
    task.lens = f->sh.lens;
    task.n_items = f->sh.n_items;
    task.items = f->sh.items;
    task.n_rows = f->sh.n_rows;
    task.n_candidates = f->sh.n_cand;
    task.bias.data = (uint8_t *) f->sh.bias;
    task.bias.len = f->sh.bias ? f->sh.n_cand * sizeof (float) : 0;
    task.dense.data = (uint8_t *) f->p.dense;
    task.dense.len = model_dense_size (f->master) * sizeof (float);
    task.rows.data = (uint8_t *) f->p.rows;
    task.rows.len = (size_t) f->sh.n_rows * 8 * sizeof (float);
    task.types.data = f->sh.types;
    task.types.len = f->sh.n_items;
    task.n_feat_off = (size_t) f->sh.n_rows + 1;
    task.feat_off = f->sh.feat_off;
    task.n_feat = f->sh.feat_off[f->sh.n_rows];
    task.feat = f->sh.feat;
    task.n_frows = f->sh.n_frows;
    task.feats.data = (uint8_t *) f->p.feats;
    task.feats.len = (size_t) f->sh.n_frows * 8 * sizeof (float);
    cr_assert_not_null (f->sh.rank_neg, "the ranking head's negatives travel with the shard");
    task.n_rank_neg = (f->sh.n_items - f->sh.n) * (size_t) mc.rank_negatives;
    task.rank_neg = f->sh.rank_neg;
    f->task = task;
}

static void
s_teardown (fixture_t *f)
{
    plan_shard_free (&f->sh);
    step_tensors_free (&f->p);
    features_destroy (&f->fs);
    agg_destroy (&f->agg);
    model_destroy (&f->master);
    model_destroy (&f->local);
    plan_destroy (&f->plan);
    dataset_destroy (&f->d);
}

Test (train_worker, computes_what_the_step_computes)
{
    fixture_t f;
    s_setup (&f);
    train_worker_t *w = train_worker_new ();
    Strata__V1__TrainGradient g = STRATA__V1__TRAIN_GRADIENT__INIT;
    train_worker_compute (w, &f.task, &g);
    cr_assert (!g.error || !*g.error, "%s", g.error);
    cr_expect_eq (g.task_id, 7u);
    size_t dn = model_dense_size (f.master), rn = (size_t) f.sh.n_rows * 8, fn = (size_t) f.sh.n_frows * 8;
    cr_assert_gt (f.sh.n_frows, 0u);
    cr_assert_eq (g.dense.len, dn * sizeof (float));
    cr_assert_eq (g.rows.len, rn * sizeof (float));
    cr_assert_eq (g.feats.len, fn * sizeof (float));
    float *dense = malloc (dn * sizeof (float));
    cr_assert_not_null (dense);
    step_view_t pv = step_view (&f.p), gt;
    uint64_t pos;
    double loss = step_compute (f.local, &f.sh, &pv, dense, &gt, &pos);
    cr_expect_eq (g.loss, loss);
    cr_expect_eq (g.positions, pos);
    cr_expect_gt (g.flops, 0);
    cr_expect_eq (memcmp (g.dense.data, gt.dense, dn * sizeof (float)), 0, "dense gradients differ");
    cr_expect_eq (memcmp (g.rows.data, gt.rows, rn * sizeof (float)), 0, "row gradients differ");
    cr_expect_eq (memcmp (g.feats.data, gt.feats, fn * sizeof (float)), 0, "feature gradients differ");
    free (dense);
    train_worker_destroy (&w);
    s_teardown (&f);
}

Test (train_worker, malformed_tasks_get_errors)
{
    fixture_t f;
    s_setup (&f);
    train_worker_t *w = train_worker_new ();
    const char *cases[] = { "no shape", "item outside the table", "rows of the wrong size",
                            "lengths that do not add up", "dense of the wrong size", "more candidates than rows",
                            "a feature outside the feature table", "feature lists that do not match the rows",
                            "event types of the wrong size", "a ranking negative outside the table",
                            "ranking negatives that do not match the positions", "ranking head too deep" };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Strata__V1__TrainTask t = f.task;
        uint32_t *items = malloc (t.n_items * sizeof *items);
        memcpy (items, t.items, t.n_items * sizeof *items);
        t.items = items;
        uint32_t *feat = malloc ((t.n_feat + 1) * sizeof *feat);
        memcpy (feat, t.feat, t.n_feat * sizeof *feat);
        t.feat = feat;
        uint32_t *neg = malloc (t.n_rank_neg * sizeof *neg);
        memcpy (neg, t.rank_neg, t.n_rank_neg * sizeof *neg);
        t.rank_neg = neg;
        Strata__V1__ModelShape shape = *t.shape;
        t.shape = &shape;
        switch (i) {
        case 0: t.shape = NULL; break;
        case 1: items[0] = t.n_rows + 5; break;
        case 2: t.rows.len -= 4; break;
        case 3: t.n_items -= 1; break;
        case 4: t.dense.len += 4; break;
        case 5: t.n_candidates = t.n_rows + 1; break;
        case 6: feat[0] = t.n_frows; break;
        case 7: t.n_feat_off -= 1; break;
        case 8: t.types.len -= 1; break;
        case 9: neg[t.n_rank_neg - 1] = t.n_rows; break;
        case 10: t.n_rank_neg -= 1; break;
        case 11: shape.n_rank_widths = MODEL_RANK_MAX_LAYERS + 1; break;
        }
        Strata__V1__TrainGradient g = STRATA__V1__TRAIN_GRADIENT__INIT;
        train_worker_compute (w, &t, &g);
        cr_expect (g.error && *g.error, "%s: no error", cases[i]);
        cr_expect_eq (g.dense.len, 0u, "%s: a gradient was sent anyway", cases[i]);
        free (items);
        free (feat);
        free (neg);
    }
    //  And the worker still computes a good task afterwards.
    Strata__V1__TrainGradient g = STRATA__V1__TRAIN_GRADIENT__INIT;
    train_worker_compute (w, &f.task, &g);
    cr_expect (!g.error || !*g.error);
    cr_expect (isfinite (g.loss) && g.positions > 0);
    train_worker_destroy (&w);
    s_teardown (&f);
}
