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
#include "step.h"
#include "train.h"

typedef struct {
    dataset_t *d;
    plan_t *plan;
    model_t *master, *local;
    agg_t *agg;
    model_shard_t sh;
    float *dense, *rows;
    Strata__V1__ModelShape shape;
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
    plan_config_t pc;
    plan_config_default (&pc);
    pc.batch = 16;
    pc.max_len = 6;
    pc.negatives = 10;
    f->plan = plan_new (f->d, &pc);
    f->master = model_new (&mc, 50);
    f->local = model_new (&mc, 1);
    f->agg = agg_new (f->master);
    cr_assert (f->plan && f->master && f->local && f->agg);
    plan_epoch (f->plan, 0);
    cr_assert_eq (plan_shard (f->plan, 0, 0, &f->sh), 0);
    f->dense = malloc (model_dense_size (f->master) * sizeof (float));
    f->rows = malloc ((size_t) f->sh.n_rows * mc.dim * sizeof (float));
    agg_export (f->agg, &f->sh, f->dense, f->rows);
    Strata__V1__ModelShape shape = STRATA__V1__MODEL_SHAPE__INIT;
    shape.dim = 8;
    shape.max_len = 6;
    shape.blocks = (uint32_t) mc.blocks;
    shape.ffn = 16;
    shape.dropout = mc.dropout;
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
    task.dense.data = (uint8_t *) f->dense;
    task.dense.len = model_dense_size (f->master) * sizeof (float);
    task.rows.data = (uint8_t *) f->rows;
    task.rows.len = (size_t) f->sh.n_rows * 8 * sizeof (float);
    f->task = task;
}

static void
s_teardown (fixture_t *f)
{
    plan_shard_free (&f->sh);
    free (f->dense);
    free (f->rows);
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
    size_t dn = model_dense_size (f.master), rn = (size_t) f.sh.n_rows * 8;
    cr_assert_eq (g.dense.len, dn * sizeof (float));
    cr_assert_eq (g.rows.len, rn * sizeof (float));
    float *dg = malloc (dn * sizeof *dg), *rg = malloc (rn * sizeof *rg);
    uint64_t pos;
    double loss = step_compute (f.local, &f.sh, f.dense, f.rows, dg, rg, &pos);
    cr_expect_eq (g.loss, loss);
    cr_expect_eq (g.positions, pos);
    cr_expect_gt (g.flops, 0);
    cr_expect_eq (memcmp (g.dense.data, dg, dn * sizeof *dg), 0, "dense gradients differ");
    cr_expect_eq (memcmp (g.rows.data, rg, rn * sizeof *rg), 0, "row gradients differ");
    free (dg);
    free (rg);
    train_worker_destroy (&w);
    s_teardown (&f);
}

Test (train_worker, malformed_tasks_get_errors)
{
    fixture_t f;
    s_setup (&f);
    train_worker_t *w = train_worker_new ();
    const char *cases[] = { "no shape", "item outside the table", "rows of the wrong size",
                            "lengths that do not add up", "dense of the wrong size", "more candidates than rows" };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Strata__V1__TrainTask t = f.task;
        uint32_t *items = malloc (t.n_items * sizeof *items);
        memcpy (items, t.items, t.n_items * sizeof *items);
        t.items = items;
        switch (i) {
        case 0: t.shape = NULL; break;
        case 1: items[0] = t.n_rows + 5; break;
        case 2: t.rows.len -= 4; break;
        case 3: t.n_items -= 1; break;
        case 4: t.dense.len += 4; break;
        case 5: t.n_candidates = t.n_rows + 1; break;
        }
        Strata__V1__TrainGradient g = STRATA__V1__TRAIN_GRADIENT__INIT;
        train_worker_compute (w, &t, &g);
        cr_expect (g.error && *g.error, "%s: no error", cases[i]);
        cr_expect_eq (g.dense.len, 0u, "%s: a gradient was sent anyway", cases[i]);
        free (items);
    }
    //  And the worker still computes a good task afterwards.
    Strata__V1__TrainGradient g = STRATA__V1__TRAIN_GRADIENT__INIT;
    train_worker_compute (w, &f.task, &g);
    cr_expect (!g.error || !*g.error);
    cr_expect (isfinite (g.loss) && g.positions > 0);
    train_worker_destroy (&w);
    s_teardown (&f);
}
