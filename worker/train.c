/*  train: see train.h. */
#define LOG_MODULE "train"
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "model.h"
#include "step.h"
#include "wire.h"

struct _train_worker_t {
    model_t *model;
    Strata__V1__ModelShape shape;   // of the model below (rank_widths in widths)
    uint32_t widths[MODEL_RANK_MAX_LAYERS];
    float *dense_grad;              // the dense gradient sent back (the rows are the model's)
    size_t dense_cap;
    model_shard_t sh;
};

train_worker_t *
train_worker_new (void)
{
    return calloc (1, sizeof (train_worker_t));
}

void
train_worker_destroy (train_worker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    train_worker_t *self = *self_p;
    model_destroy (&self->model);
    free (self->dense_grad);
    free (self);
    *self_p = NULL;
}

//  Whether two shapes have the same ranking head.
static int
s_same_ranker (const Strata__V1__ModelShape *a, const Strata__V1__ModelShape *b)
{
    if (a->rank_negatives != b->rank_negatives || a->rank_weight != b->rank_weight || a->rank_share != b->rank_share || a->rank_hard != b->rank_hard
        || a->n_rank_widths != b->n_rank_widths)
        return 0;
    for (size_t k = 0; k < a->n_rank_widths; k++)
        if (a->rank_widths[k] != b->rank_widths[k])
            return 0;
    return 1;
}

static const char *
s_check (train_worker_t *self, const Strata__V1__TrainTask *t)
{
    const Strata__V1__ModelShape *s = t->shape;
    if (!s || s->dim < 1 || s->dim > 4096 || s->max_len < 1 || s->max_len > 10000 || s->blocks > 64 || s->ffn < 1
        || s->ffn > 65536 || !(s->dropout >= 0 && s->dropout < 1))
        return "model shape missing or out of range";
    size_t total = 0;
    for (size_t i = 0; i < t->n_lens; i++) {
        if (t->lens[i] > s->max_len + 1)
            return "a sequence is longer than max_len + 1";
        total += t->lens[i];
    }
    if (total != t->n_items)
        return "sequence lengths do not add up to the items";
    for (size_t i = 0; i < t->n_items; i++)
        if (t->items[i] >= t->n_rows)
            return "an item names a row outside the shard's table";
    if (t->n_candidates > t->n_rows)
        return "more candidates than rows";
    if (!wire_floats (t->rows, (size_t) t->n_rows * s->dim))
        return "row tensor of the wrong size";
    if (t->bias.len && !wire_floats (t->bias, t->n_candidates))
        return "bias of the wrong size";
    if (t->types.len && t->types.len != t->n_items)
        return "event types of the wrong size";
    if (t->n_feat_off) {
        if (t->n_feat_off != (size_t) t->n_rows + 1 || t->feat_off[0] != 0 || t->feat_off[t->n_rows] != t->n_feat)
            return "item feature lists do not match the rows";
        for (size_t k = 0; k < t->n_rows; k++)
            if (t->feat_off[k] > t->feat_off[k + 1])
                return "item feature lists out of order";
        for (size_t i = 0; i < t->n_feat; i++)
            if (t->feat[i] >= t->n_frows)
                return "a feature names a row outside the shard's feature table";
    }
    else if (t->n_feat || t->n_frows)
        return "features without their lists";
    if (t->n_frows > s->feature_rows + (s->feature_rows == 0))
        return "more feature rows than the model has";
    if (!wire_floats (t->feats, (size_t) t->n_frows * s->dim))
        return "feature tensor of the wrong size";
    if (s->rank_negatives > 256 || s->rank_hard > 64 || s->n_rank_widths > MODEL_RANK_MAX_LAYERS || (s->rank_negatives && s->n_rank_widths < 1)
        || !(s->rank_weight >= 0 && s->rank_weight <= 100) || !(s->rank_share >= 0 && s->rank_share <= 1))
        return "ranking head shape out of range";
    for (size_t k = 0; k < s->n_rank_widths; k++)
        if (s->rank_widths[k] < 1 || s->rank_widths[k] > 4096)
            return "ranking head width out of range";
    if (t->n_rank_neg) {
        size_t positions = 0;
        for (size_t i = 0; i < t->n_lens; i++)
            positions += t->lens[i] ? t->lens[i] - 1 : 0;
        if (t->n_rank_neg != positions * s->rank_negatives)
            return "ranking negatives do not match the predicted positions";
        for (size_t i = 0; i < t->n_rank_neg; i++)
            if (t->rank_neg[i] >= t->n_rows)
                return "a ranking negative names a row outside the shard's table";
    }
    return NULL;
}

void
train_worker_compute (train_worker_t *self, const Strata__V1__TrainTask *t, Strata__V1__TrainGradient *out)
{
    out->task_id = t->task_id;
    out->shard_id = t->shard_id;
    const char *bad = s_check (self, t);
    if (bad) {
        out->error = (char *) bad;
        return;
    }
    const Strata__V1__ModelShape *s = t->shape;
    if (!self->model || self->shape.dim != s->dim || self->shape.max_len != s->max_len
        || self->shape.blocks != s->blocks || self->shape.ffn != s->ffn || self->shape.dropout != s->dropout
        || self->shape.feature_rows != s->feature_rows || !s_same_ranker (&self->shape, s)) {
        model_destroy (&self->model);
        model_config_t mc;
        model_config_default (&mc);
        mc.dim = (int) s->dim;
        mc.max_len = (int) s->max_len;
        mc.blocks = (int) s->blocks;
        mc.ffn = (int) s->ffn;
        mc.dropout = s->dropout;
        mc.feature_rows = (int) s->feature_rows;
        mc.rank_negatives = (int) s->rank_negatives;
        mc.rank_layers = (int) s->n_rank_widths;
        for (size_t k = 0; k < s->n_rank_widths; k++)
            mc.rank_widths[k] = (int) s->rank_widths[k];
        mc.rank_weight = s->rank_weight;
        mc.rank_share = s->rank_share;
        mc.rank_hard = (int) s->rank_hard;
        mc.batch = 128;
        self->model = model_new (&mc, t->n_rows ? t->n_rows : 1);
        self->shape = *s;
        self->shape.rank_widths = self->widths;
        memcpy (self->widths, s->rank_widths, s->n_rank_widths * sizeof *s->rank_widths);
        if (!self->model) {
            out->error = "out of memory for the model";
            return;
        }
        log_info ("model shape d=%u L=%u blocks=%u ffn=%u", s->dim, s->max_len, s->blocks, s->ffn);
    }
    size_t dn = model_dense_size (self->model), rn = (size_t) t->n_rows * s->dim, fn = (size_t) t->n_frows * s->dim;
    //  The tensors are read where the message holds them.
    step_view_t params = { wire_floats (t->dense, dn), wire_floats (t->rows, rn), wire_floats (t->feats, fn) };
    if (!params.dense) {
        out->error = "dense tensor of the wrong size";
        return;
    }
    if (dn > self->dense_cap) {
        free (self->dense_grad);
        self->dense_cap = 0;
        if (!(self->dense_grad = malloc (dn * sizeof (float)))) {
            out->error = "out of memory";
            return;
        }
        self->dense_cap = dn;
    }
    memset (&self->sh, 0, sizeof self->sh);
    self->sh.id = t->shard_id;
    self->sh.seed = t->seed;
    self->sh.n = (uint32_t) t->n_lens;
    self->sh.lens = t->lens;
    self->sh.items = t->items;
    self->sh.types = t->types.len ? t->types.data : NULL;
    self->sh.n_items = t->n_items;
    self->sh.n_rows = t->n_rows;
    self->sh.n_cand = t->n_candidates;
    self->sh.feat_off = t->n_feat_off ? t->feat_off : NULL;
    self->sh.feat = t->feat;
    self->sh.n_frows = t->n_frows;
    self->sh.rank_neg = t->n_rank_neg ? t->rank_neg : NULL;
    self->sh.bias = t->bias.len ? (float *) wire_floats (t->bias, t->n_candidates) : NULL;
    double flops0 = model_flops (self->model);
    uint64_t pos = 0;
    step_view_t grads;
    double loss = step_compute (self->model, &self->sh, &params, self->dense_grad, &grads, &pos);
    if (isnan (loss)) {
        out->error = "the shard does not fit the model";
        return;
    }
    out->loss = loss;
    out->positions = pos;
    out->flops = model_flops (self->model) - flops0;
    out->dense.data = (uint8_t *) grads.dense;
    out->dense.len = dn * sizeof (float);
    out->rows.data = (uint8_t *) grads.rows;
    out->rows.len = rn * sizeof (float);
    out->feats.data = (uint8_t *) grads.feats;
    out->feats.len = fn * sizeof (float);
}
