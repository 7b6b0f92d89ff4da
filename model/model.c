/*  model: see model.h. Configuration, parameters, lifecycle, the optimiser and the
    accessors; the towers are tower.c, the ranking head rank_head.c (model_private.h).
*/
#include "model_private.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"

float
model_uniform (uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (float) ((*s >> 11) * (1.0 / 9007199254740992.0));
}

//  A parameter of n values initialised from a truncated normal (init_std > 0) or to a
//  constant, with gradient and Adam moments unless weights_only.
static int
s_param_init (param_t *p, size_t n, float init_std, float init_const, uint64_t *rng, int weights_only)
{
    p->n = n;
    p->w = malloc ((n ? n : 1) * sizeof *p->w);
    if (!weights_only) {
        p->g = calloc (n ? n : 1, sizeof *p->g);
        p->m = calloc (n ? n : 1, sizeof *p->m);
        p->v = calloc (n ? n : 1, sizeof *p->v);
    }
    if (!p->w || (!weights_only && (!p->g || !p->m || !p->v)))
        return STRATA_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (init_std > 0) {
            //  Box-Muller normal, truncated at 2 sigma.
            float u1 = model_uniform (rng) + 1e-7f, u2 = model_uniform (rng);
            float z = sqrtf (-2.0f * logf (u1)) * cosf (6.2831853f * u2);
            z = z > 2 ? 2 : z < -2 ? -2 : z;
            p->w[i] = z * init_std;
        }
        else
            p->w[i] = init_const;
    }
    return 0;
}

int
model_param (param_t *p, size_t n, float init_std, float init_const, uint64_t *rng)
{
    return s_param_init (p, n, init_std, init_const, rng, 0);
}

void
model_param_free (param_t *p)
{
    free (p->w);
    free (p->g);
    free (p->m);
    free (p->v);
}

void
model_config_default (model_config_t *cfg)
{
    cfg->dim = 64;
    cfg->max_len = 50;
    cfg->blocks = 2;
    cfg->ffn = 128;
    cfg->dropout = 0.3f;
    cfg->lr = 0.001f;
    cfg->weight_decay = 0;
    cfg->batch = 128;
    cfg->feature_rows = 0;
    cfg->seed = 42;
    cfg->rank_negatives = 4;
    cfg->rank_hard = 4;
    cfg->rank_layers = 3;
    cfg->rank_widths[0] = 128;
    cfg->rank_widths[1] = 64;
    cfg->rank_widths[2] = 32;
    cfg->rank_widths[3] = 16;
    cfg->rank_weight = 1.0f;
    cfg->rank_share = 0.0f;
    cfg->inference = 0;
}

model_t *
model_new (const model_config_t *cfg, uint32_t n_items)
{
    model_t *m = calloc (1, sizeof *m);
    if (!m)
        return NULL;
    m->cfg = *cfg;
    m->n_rows = n_items;
    m->rows_cap = n_items;
    m->rng = cfg->seed * 0x9E3779B97F4A7C15ULL + 1;
    int d = cfg->dim, L = cfg->max_len, f = cfg->ffn, B = cfg->batch;
    size_t R = (size_t) B * L;
    float std = 0.02f;
    size_t frows = cfg->feature_rows > 0 ? (size_t) cfg->feature_rows : 1;
    int tables_only_w = cfg->inference;
    int bad = s_param_init (&m->emb, (size_t) n_items * d, std, 0, &m->rng, tables_only_w)
            | s_param_init (&m->feat, frows * d, std, 0, &m->rng, tables_only_w)
            | model_param (&m->pos, (size_t) L * d, std, 0, &m->rng)
            | model_param (&m->typ, (size_t) MODEL_EVENT_TYPES * d, std, 0, &m->rng)
            | model_param (&m->lnf_g, d, 0, 1, &m->rng) | model_param (&m->lnf_b, d, 0, 0, &m->rng);
    m->blocks = calloc ((size_t) cfg->blocks, sizeof *m->blocks);
    m->cache = calloc ((size_t) cfg->blocks, sizeof *m->cache);
    if (!m->blocks || !m->cache) {
        model_destroy (&m);
        return NULL;
    }
    float wstd = 1.0f / sqrtf ((float) d);
    for (int b = 0; b < cfg->blocks; b++) {
        block_t *k = &m->blocks[b];
        bad |= model_param (&k->ln1_g, d, 0, 1, &m->rng) | model_param (&k->ln1_b, d, 0, 0, &m->rng)
             | model_param (&k->wq, (size_t) d * d, wstd, 0, &m->rng) | model_param (&k->wk, (size_t) d * d, wstd, 0, &m->rng)
             | model_param (&k->wv, (size_t) d * d, wstd, 0, &m->rng) | model_param (&k->wo, (size_t) d * d, wstd, 0, &m->rng)
             | model_param (&k->ln2_g, d, 0, 1, &m->rng) | model_param (&k->ln2_b, d, 0, 0, &m->rng)
             | model_param (&k->w1, (size_t) d * f, wstd, 0, &m->rng) | model_param (&k->b1, f, 0, 0, &m->rng)
             | model_param (&k->w2, (size_t) f * d, 1.0f / sqrtf ((float) f), 0, &m->rng)
             | model_param (&k->b2, d, 0, 0, &m->rng);
        cache_t *c = &m->cache[b];
        float **bufs[] = { &c->x, &c->ln1, &c->q, &c->k, &c->v, &c->o, &c->a, &c->adrop, &c->x1, &c->ln2, &c->f,
                           &c->fdrop };
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            bad |= !(*bufs[i] = calloc (R * d, sizeof (float)));
        bad |= !(c->mu1 = calloc (R, sizeof (float))) | !(c->rs1 = calloc (R, sizeof (float)));
        bad |= !(c->mu2 = calloc (R, sizeof (float))) | !(c->rs2 = calloc (R, sizeof (float)));
        bad |= !(c->p = calloc ((size_t) B * L * L, sizeof (float)));
        bad |= !(c->h = calloc (R * f, sizeof (float)));
    }
    float **ws[] = { &m->x0, &m->x0drop, &m->xout, &m->hf, &m->dx, &m->dtmp, &m->dtmp2, &m->dq, &m->dk, &m->dv };
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
        bad |= !(*ws[i] = calloc (R * d, sizeof (float)));
    bad |= !(m->muf = calloc (R, sizeof (float))) | !(m->rsf = calloc (R, sizeof (float)));
    bad |= !(m->dh = calloc (R * f, sizeof (float)));
    bad |= !(m->datt = calloc ((size_t) L * L, sizeof (float)));
    bad |= !(m->logits = calloc (cfg->inference ? 1 : (size_t) XENT_BLOCK * (n_items ? n_items : 1), sizeof (float)));
    bad |= !(m->row_step = calloc (n_items ? n_items : 1, sizeof (int64_t)));
    bad |= !(m->feat_step = calloc (frows, sizeof (int64_t)));
    bad |= !(m->in_items = calloc (R, sizeof (int32_t))) | !(m->targets = calloc (R, sizeof (int32_t)));
    bad |= !(m->valid = calloc (R, 1)) | !(m->in_types = calloc (R, 1));
    bad |= !(m->hpack = calloc (R * d, sizeof (float))) | !(m->dpack = calloc (R * d, sizeof (float)));
    bad |= !(m->tpack = calloc (R, sizeof (int32_t))) | !(m->rowpack = calloc (R, sizeof (int32_t)));
    m->L = L;
    bad |= rank_head_new (m);
    if (bad) {
        model_destroy (&m);
        return NULL;
    }
    return m;
}

static void
s_block_params (block_t *k, param_t **out)
{
    param_t *all[] = { &k->ln1_g, &k->ln1_b, &k->wq, &k->wk, &k->wv, &k->wo,
                       &k->ln2_g, &k->ln2_b, &k->w1, &k->b1, &k->w2, &k->b2 };
    memcpy (out, all, sizeof all);
}

void
model_destroy (model_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    model_t *m = *self_p;
    model_param_free (&m->emb);
    model_param_free (&m->feat);
    model_param_free (&m->pos);
    model_param_free (&m->typ);
    model_param_free (&m->lnf_g);
    model_param_free (&m->lnf_b);
    for (int b = 0; m->blocks && b < m->cfg.blocks; b++) {
        param_t *ps[BLOCK_PARAMS];
        s_block_params (&m->blocks[b], ps);
        for (int i = 0; i < BLOCK_PARAMS; i++)
            model_param_free (ps[i]);
    }
    for (int b = 0; m->cache && b < m->cfg.blocks; b++) {
        cache_t *c = &m->cache[b];
        float *bufs[] = { c->x, c->ln1, c->q, c->k, c->v, c->o, c->a, c->adrop, c->x1, c->ln2, c->f, c->fdrop,
                          c->mu1, c->rs1, c->mu2, c->rs2, c->p, c->h };
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            free (bufs[i]);
    }
    free (m->blocks);
    free (m->cache);
    float *ws[] = { m->x0, m->x0drop, m->xout, m->hf, m->muf, m->rsf, m->dx, m->dtmp, m->dtmp2, m->dh,
                    m->dq, m->dk, m->dv, m->datt, m->logits };
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
        free (ws[i]);
    free (m->hpack);
    free (m->dpack);
    free (m->tpack);
    free (m->rowpack);
    free (m->in_items);
    free (m->targets);
    free (m->valid);
    free (m->in_types);
    free (m->row_step);
    free (m->feat_step);
    free (m->vbuf);
    free (m->dvbuf);
    rank_head_free (m);
    free (m);
    *self_p = NULL;
}

double
model_flops (model_t *self)
{
    return self->flops;
}

static param_t *s_tensor (model_t *m, int i, const char **name);

size_t
model_parameters (model_t *self)
{
    size_t n = 0;
    for (int i = 0; i < model_tensor_count (self); i++)
        n += s_tensor (self, i, NULL)->n;
    return n;
}

static param_t *
s_tensor (model_t *m, int i, const char **name)
{
    static const char *top_names[] = { "item_embedding", "feature_embedding", "position_embedding",
                                       "event_type_embedding", "final_norm_gain", "final_norm_bias" };
    static const char *block_names[] = { "ln1_gain", "ln1_bias", "wq", "wk", "wv", "wo",
                                         "ln2_gain", "ln2_bias", "w1", "b1", "w2", "b2" };
    param_t *top[] = { &m->emb, &m->feat, &m->pos, &m->typ, &m->lnf_g, &m->lnf_b };
    if (i < TOP_PARAMS) {
        if (name)
            *name = top_names[i];
        return top[i];
    }
    i -= TOP_PARAMS;
    if (i < BLOCK_PARAMS * m->cfg.blocks) {
        param_t *ps[BLOCK_PARAMS];
        s_block_params (&m->blocks[i / BLOCK_PARAMS], ps);
        if (name)
            *name = block_names[i % BLOCK_PARAMS];
        return ps[i % BLOCK_PARAMS];
    }
    i -= BLOCK_PARAMS * m->cfg.blocks;
    static const char *rank_names[] = { "rank_w1", "rank_b1", "rank_w2", "rank_b2", "rank_w3",
                                        "rank_b3", "rank_w4", "rank_b4", "rank_w5", "rank_b5" };
    int k = i / 2;
    if (name)
        *name = k == m->cfg.rank_layers ? (i % 2 ? "rank_out_b" : "rank_out_w") : rank_names[i];
    return i % 2 ? &m->rb[k] : &m->rw[k];
}

int
model_tensor_count (model_t *self)
{
    return TOP_PARAMS + BLOCK_PARAMS * self->cfg.blocks + (rank_head_on (self) ? 2 * (self->cfg.rank_layers + 1) : 0);
}

int
model_has_ranker (model_t *self)
{
    return rank_head_on (self);
}

float *
model_tensor (model_t *self, int i, float **grad, size_t *n, const char **name)
{
    param_t *p = s_tensor (self, i, name);
    if (grad)
        *grad = p->g;
    if (n)
        *n = p->n;
    return p->w;
}

void
model_zero_grad_rows (model_t *self, uint32_t rows, uint32_t frows)
{
    size_t d = (size_t) self->cfg.dim;
    for (int i = FIRST_DENSE; i < model_tensor_count (self); i++) {
        param_t *p = s_tensor (self, i, NULL);
        memset (p->g, 0, p->n * sizeof (float));
    }
    if (self->cfg.inference)
        return;
    memset (self->emb.g, 0, (size_t) rows * d * sizeof (float));
    memset (self->feat.g, 0, (size_t) frows * d * sizeof (float));
}

void
model_zero_grad (model_t *self)
{
    for (int i = 0; i < model_tensor_count (self); i++) {
        param_t *p = s_tensor (self, i, NULL);
        if (p->g)
            memset (p->g, 0, p->n * sizeof (float));
    }
}

int
model_resize_rows (model_t *self, uint32_t rows)
{
    int d = self->cfg.dim;
    if (rows > self->rows_cap) {
        size_t cap = self->rows_cap * 2 > rows ? self->rows_cap * 2 : rows;
        param_t *e = &self->emb;
        float *bufs[4] = { e->w, e->g, e->m, e->v };
        for (int i = 0; i < (self->cfg.inference ? 1 : 4); i++) {
            float *p = realloc (bufs[i], cap * d * sizeof (float));
            if (!p)
                return STRATA_ENOMEM;
            bufs[i] = p;
        }
        e->w = bufs[0], e->g = bufs[1], e->m = bufs[2], e->v = bufs[3];
        int64_t *steps = realloc (self->row_step, cap * sizeof *steps);
        float *logits = realloc (self->logits, (self->cfg.inference ? 1 : (size_t) XENT_BLOCK * cap) * sizeof (float));
        if (steps)
            self->row_step = steps;
        if (logits)
            self->logits = logits;
        if (!steps || !logits)
            return STRATA_ENOMEM;
        self->rows_cap = cap;
    }
    //  New rows start as model_new's do (state zero, weights small and random).
    for (size_t r = self->n_rows; r < rows; r++) {
        param_t row = { 0 };
        size_t off = r * (size_t) d;
        if (!self->cfg.inference) {
            memset (self->emb.g + off, 0, (size_t) d * sizeof (float));
            memset (self->emb.m + off, 0, (size_t) d * sizeof (float));
            memset (self->emb.v + off, 0, (size_t) d * sizeof (float));
        }
        self->row_step[r] = 0;
        if (s_param_init (&row, (size_t) d, 0.02f, 0, &self->rng, 1) < 0)
            return STRATA_ENOMEM;
        memcpy (self->emb.w + off, row.w, (size_t) d * sizeof (float));
        model_param_free (&row);
    }
    self->n_rows = rows;
    self->emb.n = (size_t) rows * d;
    return 0;
}

uint32_t
model_rows (model_t *self)
{
    return self->n_rows;
}

float *
model_row_weights (model_t *self, float **grad)
{
    if (grad)
        *grad = self->emb.g;
    return self->emb.w;
}

size_t
model_dense_size (model_t *self)
{
    size_t n = 0;
    for (int i = FIRST_DENSE; i < model_tensor_count (self); i++)
        n += s_tensor (self, i, NULL)->n;
    return n;
}

//  Copies the dense tensors (every tensor but the item table, in tensor order) or their
//  gradients between the model and a flat buffer.
static void
s_dense_copy (model_t *self, float *flat, int grad, int out)
{
    size_t off = 0;
    for (int i = FIRST_DENSE; i < model_tensor_count (self); i++) {
        param_t *p = s_tensor (self, i, NULL);
        float *t = grad ? p->g : p->w;
        if (out)
            memcpy (flat + off, t, p->n * sizeof (float));
        else
            memcpy (t, flat + off, p->n * sizeof (float));
        off += p->n;
    }
}

void
model_dense_get (model_t *self, float *out)
{
    s_dense_copy (self, out, 0, 1);
}

void
model_dense_set (model_t *self, const float *in)
{
    s_dense_copy (self, (float *) in, 0, 0);
}

void
model_dense_grad_get (model_t *self, float *out)
{
    s_dense_copy (self, out, 1, 1);
}

void
model_dense_grad_add (model_t *self, const float *in)
{
    size_t off = 0;
    for (int i = FIRST_DENSE; i < model_tensor_count (self); i++) {
        param_t *p = s_tensor (self, i, NULL);
        for (size_t k = 0; k < p->n; k++)
            p->g[k] += in[off + k];
        off += p->n;
    }
}

void
model_apply (model_t *self, float scale, const uint32_t *rows, size_t n, const uint32_t *frows, size_t nf)
{
    if (self->cfg.inference)
        return;
    adam_t opt = { self->cfg.lr, 0.9f, 0.98f, 1e-9f, self->cfg.weight_decay, ++self->step };
    for (int i = FIRST_DENSE; i < model_tensor_count (self); i++) {
        param_t *p = s_tensor (self, i, NULL);
        nn_adam (&opt, scale, p->w, p->g, p->m, p->v, p->n);
    }
    //  Only the rows this step touched (lazy Adam); rows are indices (< 2^31).
    int d = self->cfg.dim;
    nn_adam_rows (&opt, scale, self->emb.w, self->emb.g, self->emb.m, self->emb.v, self->row_step, d,
                  (const int32_t *) rows, (int) n);
    nn_adam_rows (&opt, scale, self->feat.w, self->feat.g, self->feat.m, self->feat.v, self->feat_step, d,
                  (const int32_t *) frows, (int) nf);
}

void
model_set_features (model_t *self, const features_t *features)
{
    self->features = features;
}

uint32_t
model_feature_rows (model_t *self)
{
    return (uint32_t) (self->feat.n / (size_t) self->cfg.dim);
}

float *
model_feature_weights (model_t *self, float **grad)
{
    if (grad)
        *grad = self->feat.g;
    return self->feat.w;
}

int64_t *
model_feature_steps (model_t *self)
{
    return self->feat_step;
}

const float *
model_item_vectors (model_t *self)
{
    if (tower_global_items (self) < 0)
        return NULL;
    return tower_items_w (self);
}

float *
model_tensor_state (model_t *self, int i, float **mom, float **var)
{
    param_t *p = s_tensor (self, i, NULL);
    *mom = p->m;
    *var = p->v;
    return p->w;
}

int64_t *
model_row_steps (model_t *self)
{
    return self->row_step;
}

int64_t *
model_step (model_t *self)
{
    return &self->step;
}

const model_config_t *
model_config (model_t *self)
{
    return &self->cfg;
}
