/*  Unit: the whole model against finite differences (every parameter tensor, dropout
    on with fixed masks), and a small learning check: on sequences with a fixed next-item
    rule the trained model must rank the right next item first almost always.
*/
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "evaluate.h"
#include "model.h"
#include "step.h"

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
    model_t *m = model_new (&cfg, 12);
    cr_assert_not_null (m);
    //  Embeddings start tiny (std 0.02), which puts the first layer norm in its most
    //  curved region, where finite differences mislead; check at a typical trained scale.
    for (int t = 0; t < 3; t++) {   // item, position and event-type embeddings
        size_t n;
        float *w = model_tensor (m, t, NULL, &n, NULL);
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
    const float eps = 5e-4f;
    int checked = 0;
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
            cr_expect_lt (err, 2e-2, "%s[%zu] (block %d): analytic %g numeric %g", name, i, t < 5 ? -1 : (t - 5) / 12,
                          (double) grad[i], num);
            checked++;
        }
        free (grad);
    }
    cr_expect_gt (checked, 200);
    dataset_destroy (&d);
    model_destroy (&m);
}

Test (model, learns_a_next_item_rule, .timeout = 120)
{
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
    cr_assert_eq (step_session_init (&ss, &cfg, &pc, t), 0);
    double first = step_session_epoch (&ss), last = first;
    for (int e = 0; e < 60; e++)
        last = step_session_epoch (&ss);
    cr_expect_lt (last, first * 0.5, "loss did not fall: %f -> %f", first, last);
    scorer_t sc = model_scorer (ss.master);
    metrics_t mt;
    evaluate (t, test, &sc, &mt);
    //  The history excludes 7 of 12 items; the rule leaves one right answer.
    cr_expect_gt (mt.mrr, 0.9, "mrr %f", mt.mrr);
    step_session_fini (&ss);
    free (test);
    dataset_destroy (&t);
    dataset_destroy (&d);
}
