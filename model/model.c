/*  model: see model.h.

    Activations of one batch are kept in a workspace sized for (batch x max_len) rows,
    so a training step allocates nothing. Padding positions (left of a short history)
    are zero rows: they attend to nothing, are attended by nothing, predict nothing,
    and their gradients are zeroed.
*/
#include "model.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"

typedef struct {
    float *w, *g, *m, *v;
    size_t n;
} param_t;

typedef struct {
    param_t ln1_g, ln1_b, wq, wk, wv, wo, ln2_g, ln2_b, w1, b1, w2, b2;
} block_t;

//  Per-block activations for a batch of R = batch * max_len rows.
typedef struct {
    float *x;          // block input (R x d)
    float *ln1, *mu1, *rs1;
    float *q, *k, *v, *o, *p;   // p: batch x L x L
    float *a, *adrop;  // attention projection, its dropout mask
    float *x1;         // after the first residual
    float *ln2, *mu2, *rs2;
    float *h;          // R x ffn, after ReLU
    float *f, *fdrop;  // ffn output, its dropout mask
} cache_t;

struct _model_t {
    model_config_t cfg;
    uint32_t n_rows;               // rows of the embedding table
    size_t rows_cap;               // rows allocated
    int64_t *row_step;             // lazy Adam step count per row
    param_t emb, feat, pos, typ, lnf_g, lnf_b;
    int64_t *feat_step;            // lazy Adam step count per feature row
    const features_t *features;    // the catalogue's features (global rows), or NULL
    //  The item tower of the current pass: item k = table row k + the mean of its
    //  feature rows c_feat[c_off[k] .. c_off[k+1]); c_off NULL: item k = row k.
    const uint32_t *c_off, *c_feat;
    uint32_t c_items, c_known;     // items composed; those with a feature list
    float *vbuf, *dvbuf;           // composed item vectors and their gradients
    size_t vcap;
    block_t *blocks;
    cache_t *cache;
    //  Batch workspace.
    int32_t *in_items, *targets;   // R
    uint8_t *in_types;             // R: event type of each input
    uint8_t *valid;                // R
    float *x0, *x0drop;            // embeddings in, dropout mask
    float *xout, *hf, *muf, *rsf;  // last block output, final norm
    float *dx, *dtmp, *dtmp2, *dh; // gradient scratch (R x d, R x d, R x d, R x ffn)
    float *dq, *dk, *dv, *datt;    // R x d each; datt: L x L
    float *logits;                 // block rows x n_items
    int L;                         // positions in the current batch (<= max_len)
    uint32_t n_cand;               // softmax over rows [0, n_cand) of the table
    const float *bias;             // and their logit offsets (NULL: none)
    float *hpack, *dpack;          // rows that predict something, packed (R x d)
    int32_t *tpack;                // their targets
    int32_t *rowpack;              // and where they came from
    int64_t step;
    double flops;                  // dense floating-point work done in training
    uint64_t rng;
    //  Ranking head: layers rw/rb[0 .. rank_layers] (the last is the output), and the
    //  workspace of one group of at most rank_cap (user, candidate) examples.
    param_t rw[MODEL_RANK_MAX_LAYERS + 1], rb[MODEL_RANK_MAX_LAYERS + 1];
    //  The first layer is applied in two parts: [v, u * v, pooled] per example (r_in),
    //  [u, context] once per position (r_U, pre-activation r_pu), as u and the context
    //  are the same for all of a position's candidates.
    int rank_in, rank_cap, rank_wmax;
    float *r_in, *r_act[MODEL_RANK_MAX_LAYERS], *r_z, *r_y, *r_dz, *r_din, *r_dbuf[2];
    float *r_C, *r_P, *r_A, *r_dC, *r_dP, *r_work;
    float *r_U, *r_dU, *r_pu, *r_dpu, *r_plen;
    int32_t *r_row, *r_item, *r_hi, *r_pos, *r_prow;
    float *hist, *dhist;           // the batch's input item vectors (R x d) and gradient
    const uint32_t *rank_neg;      // negatives of the current pass
    uint32_t *neg_buf;             // model_batch_loss's negatives
    int32_t *hard;                 // each predicted position's hard candidates (R x HARD_POOL)
    int rerank_top;                // model_set_rerank's settings
    float rerank_blend;
    uint32_t served;               // users in the last model_user_vectors batch
};

static float
s_uniform (uint64_t *s)
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
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (init_std > 0) {
            //  Box-Muller normal, truncated at 2 sigma.
            float u1 = s_uniform (rng) + 1e-7f, u2 = s_uniform (rng);
            float z = sqrtf (-2.0f * logf (u1)) * cosf (6.2831853f * u2);
            z = z > 2 ? 2 : z < -2 ? -2 : z;
            p->w[i] = z * init_std;
        }
        else
            p->w[i] = init_const;
    }
    return 0;
}

static int
s_param (param_t *p, size_t n, float init_std, float init_const, uint64_t *rng)
{
    return s_param_init (p, n, init_std, init_const, rng, 0);
}

static void
s_param_free (param_t *p)
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

//  Context features of the ranking head: the last event's type (one-hot) and the
//  history's length (fraction of max_len).
#define RANK_CONTEXT (MODEL_EVENT_TYPES + 1)
//  Examples per ranking group (at least one position's worth).
#define RANK_GROUP 2048
//  Hard negatives are rank_hard items spread over a position's HARD_POOL top-scored
//  items (what re-ranking will see: taking the very top ones instead teaches the head
//  that a high retrieval score means a wrong answer), leaving out items anywhere in
//  the user's sequence: items the user saw, or will buy later, are no wrong answers.
#define HARD_POOL 100

static int
s_rank_on (const model_t *m)
{
    return m->cfg.rank_negatives > 0;
}

//  Allocates the ranking head's parameters and workspace.
static int
s_rank_new (model_t *m)
{
    const model_config_t *cfg = &m->cfg;
    if (!s_rank_on (m))
        return 0;
    if (cfg->rank_layers < 1 || cfg->rank_layers > MODEL_RANK_MAX_LAYERS)
        return -1;
    int d = cfg->dim, L = cfg->max_len, S = cfg->rank_negatives, K = cfg->rank_hard;
    if (K < 0 || K > 64 || S > 256)
        return -1;
    m->rank_in = 4 * d + RANK_CONTEXT;
    m->rank_cap = L * (S + K + 1) > RANK_GROUP ? L * (S + K + 1) : RANK_GROUP;
    size_t G = (size_t) m->rank_cap, R = (size_t) cfg->batch * L;
    int bad = 0, in = m->rank_in;
    m->rank_wmax = in;
    for (int k = 0; k <= cfg->rank_layers; k++) {
        int out = k < cfg->rank_layers ? cfg->rank_widths[k] : 1;
        if (out < 1)
            return -1;
        bad |= s_param (&m->rw[k], (size_t) in * out, sqrtf (2.0f / (float) in), 0, &m->rng)
             | s_param (&m->rb[k], (size_t) out, 0, 0, &m->rng);
        if (k < cfg->rank_layers)
            bad |= !(m->r_act[k] = calloc (G * out, sizeof (float)));
        m->rank_wmax = out > m->rank_wmax ? out : m->rank_wmax;
        in = out;
    }
    int w0 = cfg->rank_widths[0];
    bad |= !(m->r_in = calloc (G * 3 * d, sizeof (float))) | !(m->r_din = calloc (G * 3 * d, sizeof (float)));
    bad |= !(m->r_U = calloc (G * d, sizeof (float))) | !(m->r_dU = calloc (G * d, sizeof (float)))
         | !(m->r_pu = calloc (G * w0, sizeof (float))) | !(m->r_dpu = calloc (G * w0, sizeof (float)))
         | !(m->r_plen = calloc (G, sizeof (float)));
    bad |= !(m->r_pos = calloc (G, sizeof (int32_t))) | !(m->r_prow = calloc (G, sizeof (int32_t)));
    bad |= !(m->r_dbuf[0] = calloc (G * m->rank_wmax, sizeof (float)))
         | !(m->r_dbuf[1] = calloc (G * m->rank_wmax, sizeof (float)));
    bad |= !(m->r_z = calloc (G, sizeof (float))) | !(m->r_y = calloc (G, sizeof (float)))
         | !(m->r_dz = calloc (G, sizeof (float)));
    bad |= !(m->r_C = calloc (G * d, sizeof (float))) | !(m->r_P = calloc (G * d, sizeof (float)))
         | !(m->r_dC = calloc (G * d, sizeof (float))) | !(m->r_dP = calloc (G * d, sizeof (float)));
    bad |= !(m->r_A = calloc (G * L, sizeof (float))) | !(m->r_work = calloc (G * L, sizeof (float)));
    bad |= !(m->r_row = calloc (G, sizeof (int32_t))) | !(m->r_item = calloc (G, sizeof (int32_t)))
         | !(m->r_hi = calloc (G, sizeof (int32_t)));
    bad |= !(m->hist = calloc (R * d, sizeof (float))) | !(m->dhist = calloc (R * d, sizeof (float)));
    bad |= !(m->neg_buf = calloc (R * S, sizeof (uint32_t)));
    bad |= !(m->hard = calloc (R * (size_t) (K ? HARD_POOL : 1), sizeof (int32_t)));
    return bad ? -1 : 0;
}

static void
s_rank_free (model_t *m)
{
    for (int k = 0; k <= MODEL_RANK_MAX_LAYERS; k++) {
        s_param_free (&m->rw[k]);
        s_param_free (&m->rb[k]);
    }
    for (int k = 0; k < MODEL_RANK_MAX_LAYERS; k++)
        free (m->r_act[k]);
    float *bufs[] = { m->r_in, m->r_z, m->r_y, m->r_dz, m->r_din, m->r_dbuf[0], m->r_dbuf[1], m->r_C, m->r_P,
                      m->r_A, m->r_dC, m->r_dP, m->r_work, m->hist, m->dhist, m->r_U, m->r_dU, m->r_pu,
                      m->r_dpu, m->r_plen };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free (bufs[i]);
    free (m->r_row);
    free (m->r_item);
    free (m->r_hi);
    free (m->r_pos);
    free (m->r_prow);
    free (m->neg_buf);
    free (m->hard);
}

#define XENT_BLOCK 256

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
            | s_param (&m->pos, (size_t) L * d, std, 0, &m->rng)
            | s_param (&m->typ, (size_t) MODEL_EVENT_TYPES * d, std, 0, &m->rng)
            | s_param (&m->lnf_g, d, 0, 1, &m->rng) | s_param (&m->lnf_b, d, 0, 0, &m->rng);
    m->blocks = calloc ((size_t) cfg->blocks, sizeof *m->blocks);
    m->cache = calloc ((size_t) cfg->blocks, sizeof *m->cache);
    if (!m->blocks || !m->cache) {
        model_destroy (&m);
        return NULL;
    }
    float wstd = 1.0f / sqrtf ((float) d);
    for (int b = 0; b < cfg->blocks; b++) {
        block_t *k = &m->blocks[b];
        bad |= s_param (&k->ln1_g, d, 0, 1, &m->rng) | s_param (&k->ln1_b, d, 0, 0, &m->rng)
             | s_param (&k->wq, (size_t) d * d, wstd, 0, &m->rng) | s_param (&k->wk, (size_t) d * d, wstd, 0, &m->rng)
             | s_param (&k->wv, (size_t) d * d, wstd, 0, &m->rng) | s_param (&k->wo, (size_t) d * d, wstd, 0, &m->rng)
             | s_param (&k->ln2_g, d, 0, 1, &m->rng) | s_param (&k->ln2_b, d, 0, 0, &m->rng)
             | s_param (&k->w1, (size_t) d * f, wstd, 0, &m->rng) | s_param (&k->b1, f, 0, 0, &m->rng)
             | s_param (&k->w2, (size_t) f * d, 1.0f / sqrtf ((float) f), 0, &m->rng)
             | s_param (&k->b2, d, 0, 0, &m->rng);
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
    bad |= s_rank_new (m);
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

#define BLOCK_PARAMS 12
#define TOP_PARAMS 6
#define FIRST_DENSE 2   // tensors 0 (items) and 1 (features) are tables

void
model_destroy (model_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    model_t *m = *self_p;
    s_param_free (&m->emb);
    s_param_free (&m->feat);
    s_param_free (&m->pos);
    s_param_free (&m->typ);
    s_param_free (&m->lnf_g);
    s_param_free (&m->lnf_b);
    for (int b = 0; m->blocks && b < m->cfg.blocks; b++) {
        param_t *ps[BLOCK_PARAMS];
        s_block_params (&m->blocks[b], ps);
        for (int i = 0; i < BLOCK_PARAMS; i++)
            s_param_free (ps[i]);
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
    s_rank_free (m);
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

//  Fills a dropout mask (0 or 1/(1-p)) and applies it to x.
static void
s_dropout (model_t *m, float *x, float *mask, size_t n, float p, int train)
{
    if (!train || p <= 0) {
        for (size_t i = 0; i < n; i++)
            mask[i] = 1;
        return;
    }
    float keep = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) {
        mask[i] = s_uniform (&m->rng) < p ? 0 : keep;
        x[i] *= mask[i];
    }
}

static void
s_zero_padding (const uint8_t *valid, float *x, size_t rows, int width)
{
    for (size_t r = 0; r < rows; r++)
        if (!valid[r])
            memset (x + r * width, 0, (size_t) width * sizeof *x);
}

//  Sets the item tower of the next passes (off NULL: items are plain table rows).
static int
s_set_items (model_t *m, const uint32_t *off, const uint32_t *feat, uint32_t items, uint32_t known)
{
    m->c_off = off;
    m->c_feat = feat;
    m->c_items = items;
    m->c_known = known < items ? known : items;
    if (!off)
        return 0;
    size_t need = (size_t) (items ? items : 1) * m->cfg.dim;
    if (need > m->vcap) {
        free (m->vbuf);
        free (m->dvbuf);
        m->vbuf = malloc (need * sizeof (float));
        m->dvbuf = malloc (need * sizeof (float));
        m->vcap = m->vbuf && m->dvbuf ? need : 0;
        if (!m->vcap)
            return -1;
    }
    return 0;
}

//  Item vectors: V[k] = E[k] + mean of k's feature rows.
static void
s_compose (model_t *m)
{
    int d = m->cfg.dim;
    for (uint32_t k = 0; k < m->c_items; k++) {
        float *v = m->vbuf + (size_t) k * d;
        memcpy (v, m->emb.w + (size_t) k * d, (size_t) d * sizeof (float));
        if (k >= m->c_known)
            continue;
        uint32_t a = m->c_off[k], b = m->c_off[k + 1];
        if (a == b)
            continue;
        float inv = 1.0f / (float) (b - a);
        for (uint32_t j = a; j < b; j++) {
            const float *f = m->feat.w + (size_t) m->c_feat[j] * d;
            for (int x = 0; x < d; x++)
                v[x] += inv * f[x];
        }
    }
    memset (m->dvbuf, 0, (size_t) m->c_items * d * sizeof (float));
}

//  Gradients of the item vectors back to the table and feature rows.
static void
s_decompose (model_t *m)
{
    int d = m->cfg.dim;
    for (uint32_t k = 0; k < m->c_items; k++) {
        const float *g = m->dvbuf + (size_t) k * d;
        float *eg = m->emb.g + (size_t) k * d;
        for (int x = 0; x < d; x++)
            eg[x] += g[x];
        if (k >= m->c_known)
            continue;
        uint32_t a = m->c_off[k], b = m->c_off[k + 1];
        if (a == b)
            continue;
        float inv = 1.0f / (float) (b - a);
        for (uint32_t j = a; j < b; j++) {
            float *fg = m->feat.g + (size_t) m->c_feat[j] * d;
            for (int x = 0; x < d; x++)
                fg[x] += inv * g[x];
        }
    }
}

//  The item vectors of the current pass (composed, or the table itself).
static const float *
s_items_w (model_t *m)
{
    return m->c_off ? m->vbuf : m->emb.w;
}

static float *
s_items_g (model_t *m)
{
    return m->c_off ? m->dvbuf : m->emb.g;
}

//  Forward over nb sequences already laid out in in_items/valid. Leaves the final
//  states in m->hf.
static void
s_forward (model_t *m, int nb, int train)
{
    int d = m->cfg.dim, L = m->L, f = m->cfg.ffn;
    //  A batch shorter than max_len uses the last L position embeddings, so the newest
    //  item always sits at the same position.
    int pos0 = m->cfg.max_len - L;
    size_t R = (size_t) nb * L;
    float p = m->cfg.dropout;
    float scale = sqrtf ((float) d);
    m->served = 0;   // the workspace no longer holds a model_user_vectors batch
    nn_gather (s_items_w (m), d, m->in_items, (int) R, m->x0);
    for (size_t r = 0; r < R; r++) {
        if (!m->valid[r])
            continue;
        float *x = m->x0 + r * d;
        const float *pe = m->pos.w + (size_t) (pos0 + (int) (r % (size_t) L)) * d;
        const float *te = m->typ.w + (size_t) m->in_types[r] * d;
        for (int k = 0; k < d; k++)
            x[k] = x[k] * scale + pe[k] + te[k];
    }
    s_dropout (m, m->x0, m->x0drop, R * d, p, train);
    const float *x = m->x0;
    for (int b = 0; b < m->cfg.blocks; b++) {
        block_t *k = &m->blocks[b];
        cache_t *c = &m->cache[b];
        if (c->x != x)
            memcpy (c->x, x, R * d * sizeof (float));
        nn_layernorm_fwd (c->x, (int) R, d, k->ln1_g.w, k->ln1_b.w, c->ln1, c->mu1, c->rs1);
        nn_linear_fwd (c->ln1, (int) R, d, k->wq.w, NULL, d, c->q);
        nn_linear_fwd (c->ln1, (int) R, d, k->wk.w, NULL, d, c->k);
        nn_linear_fwd (c->ln1, (int) R, d, k->wv.w, NULL, d, c->v);
        for (int s = 0; s < nb; s++) {
            size_t off = (size_t) s * L * d;
            nn_attention_fwd (c->q + off, c->k + off, c->v + off, L, d, m->valid + (size_t) s * L,
                              c->p + (size_t) s * L * L, c->o + off);
        }
        nn_linear_fwd (c->o, (int) R, d, k->wo.w, NULL, d, c->a);
        s_dropout (m, c->a, c->adrop, R * d, p, train);
        for (size_t i = 0; i < R * d; i++)
            c->x1[i] = c->x[i] + c->a[i];
        nn_layernorm_fwd (c->x1, (int) R, d, k->ln2_g.w, k->ln2_b.w, c->ln2, c->mu2, c->rs2);
        nn_linear_fwd (c->ln2, (int) R, d, k->w1.w, k->b1.w, f, c->h);
        nn_relu_fwd (c->h, R * f);
        nn_linear_fwd (c->h, (int) R, f, k->w2.w, k->b2.w, d, c->f);
        s_dropout (m, c->f, c->fdrop, R * d, p, train);
        float *out = b + 1 < m->cfg.blocks ? m->cache[b + 1].x : m->xout;
        for (size_t i = 0; i < R * d; i++)
            out[i] = c->x1[i] + c->f[i];
        s_zero_padding (m->valid, out, R, d);
        x = out;
    }
    if (m->cfg.blocks == 0)
        memcpy (m->xout, m->x0, R * d * sizeof (float));
    nn_layernorm_fwd (m->xout, (int) R, d, m->lnf_g.w, m->lnf_b.w, m->hf, m->muf, m->rsf);
    s_zero_padding (m->valid, m->hf, R, d);
}

//  Inference for the newest position of each of nb sequences only (what serving
//  needs): every block but the last runs on all positions (the last one's keys and
//  values need them), the last block and the final norm on the newest position only.
//  Leaves the states in m->hf at rows s * L + L - 1 (other rows are not valid).
static void
s_forward_last (model_t *m, int nb)
{
    int d = m->cfg.dim, L = m->L, f = m->cfg.ffn, B = m->cfg.blocks;
    if (B == 0) {
        s_forward (m, nb, 0);
        return;
    }
    //  All blocks but the last, on every position: s_forward with the last block cut.
    m->cfg.blocks = B - 1;
    s_forward (m, nb, 0);
    m->cfg.blocks = B;
    size_t R = (size_t) nb * L;
    const float *x = m->xout;   // the last block's input (s_forward's output with one block fewer)
    block_t *k = &m->blocks[B - 1];
    cache_t *c = &m->cache[B - 1];
    nn_layernorm_fwd (x, (int) R, d, k->ln1_g.w, k->ln1_b.w, c->ln1, c->mu1, c->rs1);
    nn_linear_fwd (c->ln1, (int) R, d, k->wk.w, NULL, d, c->k);
    nn_linear_fwd (c->ln1, (int) R, d, k->wv.w, NULL, d, c->v);
    //  The newest position of each sequence: its input row, normed row and query.
    float *xl = m->dq, *ql = m->dk, *ol = m->dv, *al = m->dtmp, *x1 = m->dtmp2, *hl = m->dh;
    for (int s = 0; s < nb; s++) {
        size_t r = (size_t) s * L + (size_t) (L - 1);
        memcpy (xl + (size_t) s * d, x + r * d, (size_t) d * sizeof (float));
        memcpy (al + (size_t) s * d, c->ln1 + r * d, (size_t) d * sizeof (float));
    }
    nn_linear_fwd (al, nb, d, k->wq.w, NULL, d, ql);
    float scale = 1.0f / sqrtf ((float) d);
    for (int s = 0; s < nb; s++) {
        const float *q = ql + (size_t) s * d;
        const uint8_t *valid = m->valid + (size_t) s * L;
        float *p = m->datt;   // L scores
        float mx = -INFINITY;
        for (int j = 0; j < L; j++) {
            p[j] = -INFINITY;
            if (!valid[j])
                continue;
            const float *kj = c->k + ((size_t) s * L + (size_t) j) * d;
            float dot = 0;
            for (int t = 0; t < d; t++)
                dot += q[t] * kj[t];
            p[j] = dot * scale;
            mx = p[j] > mx ? p[j] : mx;
        }
        float *o = ol + (size_t) s * d;
        memset (o, 0, (size_t) d * sizeof (float));
        if (mx == -INFINITY)
            continue;
        double sum = 0;
        for (int j = 0; j < L; j++) {
            p[j] = valid[j] ? expf (p[j] - mx) : 0;
            sum += p[j];
        }
        for (int j = 0; j < L; j++) {
            if (p[j] == 0)
                continue;
            float w = (float) (p[j] / sum);
            const float *vj = c->v + ((size_t) s * L + (size_t) j) * d;
            for (int t = 0; t < d; t++)
                o[t] += w * vj[t];
        }
    }
    nn_linear_fwd (ol, nb, d, k->wo.w, NULL, d, al);
    for (size_t i = 0; i < (size_t) nb * d; i++)
        x1[i] = xl[i] + al[i];
    nn_layernorm_fwd (x1, nb, d, k->ln2_g.w, k->ln2_b.w, ol, m->muf, m->rsf);
    nn_linear_fwd (ol, nb, d, k->w1.w, k->b1.w, f, hl);
    nn_relu_fwd (hl, (size_t) nb * f);
    nn_linear_fwd (hl, nb, f, k->w2.w, k->b2.w, d, al);
    for (size_t i = 0; i < (size_t) nb * d; i++)
        x1[i] += al[i];
    nn_layernorm_fwd (x1, nb, d, m->lnf_g.w, m->lnf_b.w, ol, m->muf, m->rsf);
    for (int s = 0; s < nb; s++) {
        size_t r = (size_t) s * L + (size_t) (L - 1);
        if (m->valid[r])
            memcpy (m->hf + r * d, ol + (size_t) s * d, (size_t) d * sizeof (float));
        else
            memset (m->hf + r * d, 0, (size_t) d * sizeof (float));
    }
}

//  Backward from the loss on targets; accumulates parameter gradients.
//  Packs the rows that predict an item (most rows of a batch of short histories are
//  padding): the catalogue-wide softmax then costs only what it must.
static int
s_pack (model_t *m, size_t R)
{
    int d = m->cfg.dim, n = 0;
    for (size_t r = 0; r < R; r++)
        if (m->targets[r] >= 0) {
            memcpy (m->hpack + (size_t) n * d, m->hf + r * d, (size_t) d * sizeof (float));
            m->tpack[n] = m->targets[r];
            m->rowpack[n] = (int32_t) r;
            n++;
        }
    return n;
}

//  ---------------------------------------------------------------- ranking head

//  The first valid (non-padding) position of sequence slot s.
static int
s_first_valid (const model_t *m, int s)
{
    const uint8_t *valid = m->valid + (size_t) s * m->L;
    int t = 0;
    while (t < m->L && !valid[t])
        t++;
    return t;
}

//  One group of n examples: example e pairs the state at batch row r_row[e] (sequence
//  r_row / L, position r_row % L) with item r_item[e] (a row of the current item
//  vectors), label r_y[e]; a position's examples are consecutive. Leaves the logits in
//  r_z. With grad, accumulates the gradient of scale times the summed BCE into the
//  head, the states (m->dx), the candidates' item vectors and the history's
//  (m->dhist). Returns the summed BCE.
static double
s_rank_group (model_t *m, int n, float scale, int grad)
{
    int d = m->cfg.dim, L = m->L, nl = m->cfg.rank_layers, w0 = m->cfg.rank_widths[0];
    const float *V = s_items_w (m);
    //  The first layer's weight by input block: rows [0, d) read u, [d, 4d) the
    //  per-example [v, u * v, pooled], then the context.
    const float *Wu = m->rw[0].w, *Wx = Wu + (size_t) d * w0, *Wc = Wu + (size_t) 4 * d * w0;
    int np = 0;
    for (int e = 0; e < n; e++) {
        memcpy (m->r_C + (size_t) e * d, V + (size_t) m->r_item[e] * d, (size_t) d * sizeof (float));
        m->r_hi[e] = m->r_row[e] % L;
        if (e == 0 || m->r_row[e] != m->r_row[e - 1])
            m->r_prow[np++] = m->r_row[e];
        m->r_pos[e] = np - 1;
    }
    //  Each run of examples from one sequence pools over that sequence's history, then
    //  the examples' inputs are laid out.
    for (int e0 = 0, e1; e0 < n; e0 = e1) {
        int s = m->r_row[e0] / L, lo = s_first_valid (m, s);
        for (e1 = e0 + 1; e1 < n && m->r_row[e1] / L == s; e1++)
            ;
        nn_target_pool_fwd (m->r_C + (size_t) e0 * d, e1 - e0, m->hist + (size_t) s * L * d, L, d, lo,
                            m->r_hi + e0, m->r_A + (size_t) e0 * L, m->r_P + (size_t) e0 * d);
        for (int e = e0; e < e1; e++) {
            float *x = m->r_in + (size_t) e * 3 * d;
            const float *u = m->hf + (size_t) m->r_row[e] * d, *v = m->r_C + (size_t) e * d;
            memcpy (x, v, (size_t) d * sizeof (float));
            for (int k = 0; k < d; k++)
                x[d + k] = u[k] * v[k];
            memcpy (x + 2 * d, m->r_P + (size_t) e * d, (size_t) d * sizeof (float));
        }
    }
    //  The positions' part of the first layer: u Wu + bias + the context's rows (the
    //  last event's type, one-hot, and the history's length as a fraction of max_len).
    float inv_len = 1.0f / (float) m->cfg.max_len;
    for (int p = 0; p < np; p++) {
        int r = m->r_prow[p];
        memcpy (m->r_U + (size_t) p * d, m->hf + (size_t) r * d, (size_t) d * sizeof (float));
        m->r_plen[p] = (float) (r % L - s_first_valid (m, r / L) + 1) * inv_len;
    }
    nn_linear_fwd (m->r_U, np, d, Wu, m->rb[0].w, w0, m->r_pu);
    for (int p = 0; p < np; p++) {
        float *pu = m->r_pu + (size_t) p * w0, len = m->r_plen[p];
        const float *wt = Wc + (size_t) m->in_types[m->r_prow[p]] * w0, *wl = Wc + (size_t) MODEL_EVENT_TYPES * w0;
        for (int k = 0; k < w0; k++)
            pu[k] += wt[k] + len * wl[k];
    }
    nn_linear_fwd (m->r_in, n, 3 * d, Wx, NULL, w0, m->r_act[0]);
    for (int e = 0; e < n; e++) {
        float *y = m->r_act[0] + (size_t) e * w0;
        const float *pu = m->r_pu + (size_t) m->r_pos[e] * w0;
        for (int k = 0; k < w0; k++)
            y[k] += pu[k];
    }
    nn_relu_fwd (m->r_act[0], (size_t) n * w0);
    const float *x = m->r_act[0];
    int w = w0;
    double macs = 0;   // per example, in the layers after the first
    for (int k = 1; k < nl; k++) {
        int out = m->cfg.rank_widths[k];
        nn_linear_fwd (x, n, w, m->rw[k].w, m->rb[k].w, out, m->r_act[k]);
        nn_relu_fwd (m->r_act[k], (size_t) n * out);
        macs += (double) w * out;
        x = m->r_act[k];
        w = out;
    }
    nn_linear_fwd (x, n, w, m->rw[nl].w, m->rb[nl].w, 1, m->r_z);
    macs += w;
    double loss = nn_bce_logits (m->r_z, m->r_y, n, scale, grad ? m->r_dz : NULL);
    if (!grad)
        return loss;
    float share = m->cfg.rank_share;
    //  Matrix products: forward, then the weight gradients, then (with share) the
    //  input gradients, the pooling's among them.
    double first = 3.0 * d * w0 * n + (double) d * w0 * np, pool = 2.0 * L * d * n;
    m->flops += 2 * (2 * (first + macs * n) + macs * n + pool + (share != 0 ? first + 2 * pool : 0));
    //  Back through the MLP to the first layer's output.
    const float *dy = m->r_dz;
    int out = 1;
    for (int k = nl; k >= 1; k--) {
        int win = m->cfg.rank_widths[k - 1];
        float *dx = m->r_dbuf[k % 2];
        memset (dx, 0, (size_t) n * win * sizeof (float));
        nn_linear_bwd (m->r_act[k - 1], n, win, m->rw[k].w, out, dy, dx, m->rw[k].g, m->rb[k].g);
        nn_relu_bwd (m->r_act[k - 1], dx, (size_t) n * win);
        dy = dx;
        out = win;
    }
    //  The first layer's two parts; the positions' gradient is the sum of their examples'.
    float *gu = m->rw[0].g, *gx = gu + (size_t) d * w0, *gc = gu + (size_t) 4 * d * w0;
    if (share != 0) {
        memset (m->r_din, 0, (size_t) n * 3 * d * sizeof (float));
        memset (m->r_dU, 0, (size_t) np * d * sizeof (float));
    }
    nn_linear_bwd (m->r_in, n, 3 * d, Wx, w0, dy, share != 0 ? m->r_din : NULL, gx, NULL);
    memset (m->r_dpu, 0, (size_t) np * w0 * sizeof (float));
    for (int e = 0; e < n; e++) {
        float *dpu = m->r_dpu + (size_t) m->r_pos[e] * w0;
        const float *g = dy + (size_t) e * w0;
        for (int k = 0; k < w0; k++)
            dpu[k] += g[k];
    }
    nn_linear_bwd (m->r_U, np, d, Wu, w0, m->r_dpu, share != 0 ? m->r_dU : NULL, gu, m->rb[0].g);
    for (int p = 0; p < np; p++) {
        const float *g = m->r_dpu + (size_t) p * w0;
        float *gt = gc + (size_t) m->in_types[m->r_prow[p]] * w0, *gl = gc + (size_t) MODEL_EVENT_TYPES * w0;
        for (int k = 0; k < w0; k++) {
            gt[k] += g[k];
            gl[k] += m->r_plen[p] * g[k];
        }
    }
    //  To the state, the candidate and the pool, scaled by the share that reaches the
    //  towers.
    if (share == 0)
        return loss;
    for (int p = 0; p < np; p++) {
        float *du = m->dx + (size_t) m->r_prow[p] * d;
        const float *g = m->r_dU + (size_t) p * d;
        for (int k = 0; k < d; k++)
            du[k] += share * g[k];
    }
    for (int e = 0; e < n; e++) {
        const float *g = m->r_din + (size_t) e * 3 * d;
        const float *u = m->hf + (size_t) m->r_row[e] * d, *v = m->r_C + (size_t) e * d;
        float *du = m->dx + (size_t) m->r_row[e] * d, *dv = m->r_dC + (size_t) e * d;
        float *dp = m->r_dP + (size_t) e * d;
        for (int k = 0; k < d; k++) {
            du[k] += share * g[d + k] * v[k];
            dv[k] = share * (g[k] + g[d + k] * u[k]);
            dp[k] = share * g[2 * d + k];
        }
    }
    for (int e0 = 0, e1; e0 < n; e0 = e1) {
        int s = m->r_row[e0] / L;
        for (e1 = e0 + 1; e1 < n && m->r_row[e1] / L == s; e1++)
            ;
        nn_target_pool_bwd (m->r_C + (size_t) e0 * d, e1 - e0, m->hist + (size_t) s * L * d, L, d,
                            m->r_A + (size_t) e0 * L, m->r_dP + (size_t) e0 * d, m->r_dC + (size_t) e0 * d,
                            m->dhist + (size_t) s * L * d, m->r_work);
    }
    nn_scatter_add (s_items_g (m), d, m->r_item, n, m->r_dC);
    return loss;
}

//  The history item vectors of a laid-out batch of R rows, for the pooling.
static void
s_rank_history (model_t *m, size_t R, int grad)
{
    nn_gather (s_items_w (m), m->cfg.dim, m->in_items, (int) R, m->hist);
    if (grad)
        memset (m->dhist, 0, R * m->cfg.dim * sizeof (float));
}

//  The ranking loss of a laid-out, forwarded batch of nb sequences: at every predicted
//  position, the true next item (label 1) against the position's rank_negatives
//  negatives, read from m->rank_neg, which this consumes (it then points at the next
//  batch's). Returns rank_weight times the summed BCE; with grad, its gradient times
//  scale is accumulated.
static double
s_rank_pass (model_t *m, int nb, float scale, int grad)
{
    if (!s_rank_on (m) || !m->rank_neg)
        return 0;
    int S = m->cfg.rank_negatives;
    size_t R = (size_t) nb * m->L, p = 0;
    float w = m->cfg.rank_weight;
    s_rank_history (m, R, grad);
    double loss = 0;
    int n = 0;
    int K = m->cfg.rank_hard, L = m->L;
    for (size_t r = 0; r < R; r++) {
        if (m->targets[r] < 0)
            continue;
        //  The position's negatives: sampled, then hard ones from outside the sequence.
        int32_t items[1 + 256 + 64];
        int ni = 0;
        items[ni++] = m->targets[r];
        for (int c = 0; c < S; c++)
            items[ni++] = (int32_t) m->rank_neg[p * (size_t) S + (size_t) c];
        const int32_t *seq_in = m->in_items + (r / (size_t) L) * (size_t) L;
        const int32_t *seq_tg = m->targets + (r / (size_t) L) * (size_t) L;
        const int32_t *pool = m->hard + p * (size_t) HARD_POOL;
        int np = 0;
        while (K && np < HARD_POOL && pool[np] >= 0)
            np++;
        //  Spread evenly over the pool (strata of np / K ranks), the first usable item of
        //  each stratum: deterministic, so a step cut into shards draws the same ones.
        for (int c = 0, at = 0; np && c < K; c++) {
            int from = (int) ((int64_t) c * np / K), to = (int) ((int64_t) (c + 1) * np / K);
            at = at > from ? at : from;
            int32_t h = -1;
            for (; at < to && h < 0; at++) {
                int32_t cand = pool[at];
                bool skip = false;
                for (int t = 0; t < L && !skip; t++)
                    skip = seq_in[t] == cand || seq_tg[t] == cand;
                if (!skip)
                    h = cand;
            }
            if (h >= 0)
                items[ni++] = h;
        }
        for (int c = 0; c < ni; c++) {
            if (n == m->rank_cap) {
                loss += s_rank_group (m, n, scale * w, grad);
                n = 0;
            }
            m->r_row[n] = (int32_t) r;
            m->r_item[n] = items[c];
            m->r_y[n] = c ? 0.0f : 1.0f;
            n++;
        }
        p++;
    }
    if (n)
        loss += s_rank_group (m, n, scale * w, grad);
    if (grad)
        nn_scatter_add (s_items_g (m), m->cfg.dim, m->in_items, (int) R, m->dhist);
    m->rank_neg += p * (size_t) S;
    return w * loss;
}

static double
s_backward (model_t *m, int nb, int mean)
{
    int d = m->cfg.dim, L = m->L, f = m->cfg.ffn;
    int pos0 = m->cfg.max_len - L;
    size_t R = (size_t) nb * L;
    int predicted = s_pack (m, R);
    if (predicted == 0)
        return 0;
    float scale = mean ? 1.0f / (float) predicted : 1.0f;
    //  dhf: gradient wrt the final states (dx holds it).
    memset (m->dx, 0, R * d * sizeof (float));
    memset (m->dpack, 0, (size_t) predicted * d * sizeof (float));
    int hard = s_rank_on (m) && m->rank_neg && m->cfg.rank_hard ? HARD_POOL : 0;
    double loss = nn_softmax_xent (m->hpack, predicted, d, s_items_w (m), (int) m->n_cand, m->bias, m->tpack, scale,
                                   m->dpack, s_items_g (m), m->logits, XENT_BLOCK, hard ? m->hard : NULL, hard);
    for (int i = 0; i < predicted; i++)
        memcpy (m->dx + (size_t) m->rowpack[i] * d, m->dpack + (size_t) i * d, (size_t) d * sizeof (float));
    //  The ranking head reads the same final states.
    loss += s_rank_pass (m, nb, scale, 1);
    //  Final norm.
    memset (m->dtmp, 0, R * d * sizeof (float));
    nn_layernorm_bwd (m->xout, (int) R, d, m->lnf_g.w, m->muf, m->rsf, m->dx, m->dtmp, m->lnf_g.g, m->lnf_b.g);
    //  m->dtmp: gradient wrt the last block's output.
    float *dout = m->dtmp, *dnext = m->dtmp2;
    for (int b = m->cfg.blocks - 1; b >= 0; b--) {
        block_t *k = &m->blocks[b];
        cache_t *c = &m->cache[b];
        s_zero_padding (m->valid, dout, R, d);
        //  out = x1 + drop (ffn (ln2 (x1))): dx1 = dout + ffn branch.
        float *dx1 = dnext;
        memcpy (dx1, dout, R * d * sizeof (float));
        float *df = m->dq;   // reuse as scratch: d (ffn output before dropout)
        for (size_t i = 0; i < R * d; i++)
            df[i] = dout[i] * c->fdrop[i];
        memset (m->dh, 0, R * f * sizeof (float));
        nn_linear_bwd (c->h, (int) R, f, k->w2.w, d, df, m->dh, k->w2.g, k->b2.g);
        nn_relu_bwd (c->h, m->dh, R * f);
        float *dln2 = m->dk;
        memset (dln2, 0, R * d * sizeof (float));
        nn_linear_bwd (c->ln2, (int) R, d, k->w1.w, f, m->dh, dln2, k->w1.g, k->b1.g);
        nn_layernorm_bwd (c->x1, (int) R, d, k->ln2_g.w, c->mu2, c->rs2, dln2, dx1, k->ln2_g.g, k->ln2_b.g);
        //  x1 = x + drop (attn (ln1 (x)) Wo): dx = dx1 + attention branch.
        float *da = m->dv;
        for (size_t i = 0; i < R * d; i++)
            da[i] = dx1[i] * c->adrop[i];
        float *dO = m->dq;
        memset (dO, 0, R * d * sizeof (float));
        nn_linear_bwd (c->o, (int) R, d, k->wo.w, d, da, dO, k->wo.g, NULL);
        float *dQ = m->dk, *dK = m->dv, *dV = m->dx;
        memset (dQ, 0, R * d * sizeof (float));
        memset (dK, 0, R * d * sizeof (float));
        memset (dV, 0, R * d * sizeof (float));
        for (int s = 0; s < nb; s++) {
            size_t off = (size_t) s * L * d;
            nn_attention_bwd (c->q + off, c->k + off, c->v + off, L, d, c->p + (size_t) s * L * L, dO + off,
                              dQ + off, dK + off, dV + off, m->datt);
        }
        //  ln1 output feeds Q, K and V.
        float *dln1 = dout;   // dout is consumed: reuse it
        memset (dln1, 0, R * d * sizeof (float));
        nn_linear_bwd (c->ln1, (int) R, d, k->wq.w, d, dQ, dln1, k->wq.g, NULL);
        nn_linear_bwd (c->ln1, (int) R, d, k->wk.w, d, dK, dln1, k->wk.g, NULL);
        nn_linear_bwd (c->ln1, (int) R, d, k->wv.w, d, dV, dln1, k->wv.g, NULL);
        nn_layernorm_bwd (c->x, (int) R, d, k->ln1_g.w, c->mu1, c->rs1, dln1, dx1, k->ln1_g.g, k->ln1_b.g);
        //  dx1 now holds the gradient wrt this block's input.
        float *t = dout;
        dout = dx1;
        dnext = t;
    }
    //  Embedding input: x0 = drop (emb * sqrt (d) + pos + type).
    scale = sqrtf ((float) d);
    for (size_t r = 0; r < R; r++) {
        float *g = dout + r * d;
        const float *mask = m->x0drop + r * d;
        if (!m->valid[r])
            continue;
        float *pg = m->pos.g + (size_t) (pos0 + (int) (r % (size_t) L)) * d;
        float *tg = m->typ.g + (size_t) m->in_types[r] * d;
        for (int k = 0; k < d; k++) {
            g[k] *= mask[k];
            pg[k] += g[k];
            tg[k] += g[k];
            g[k] *= scale;
        }
    }
    nn_scatter_add (s_items_g (m), d, m->in_items, (int) R, dout);
    return loss;
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
    return TOP_PARAMS + BLOCK_PARAMS * self->cfg.blocks + (s_rank_on (self) ? 2 * (self->cfg.rank_layers + 1) : 0);
}

int
model_has_ranker (model_t *self)
{
    return s_rank_on (self);
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

//  Lays out sequence slot s from a user's items[from..to): the last L inputs
//  right-aligned, each predicting its successor (train) or nothing (inference).
static void
s_layout (model_t *m, int s, const uint32_t *items, const uint8_t *types, uint32_t len, int train)
{
    int L = m->L;
    int32_t *in = m->in_items + (size_t) s * L, *tg = m->targets + (size_t) s * L;
    uint8_t *valid = m->valid + (size_t) s * L, *ty = m->in_types + (size_t) s * L;
    //  Inputs are items[0..n) with n = len - 1 when training (the last has no successor).
    uint32_t n = train ? (len > 0 ? len - 1 : 0) : len;
    uint32_t take = n < (uint32_t) L ? n : (uint32_t) L;
    uint32_t first = n - take;
    for (int t = 0; t < L; t++) {
        int idx = t - (L - (int) take);
        if (idx < 0) {
            in[t] = -1;
            tg[t] = -1;
            valid[t] = 0;
            ty[t] = 0;
        }
        else {
            in[t] = (int32_t) items[first + (uint32_t) idx];
            ty[t] = types && types[first + (uint32_t) idx] < MODEL_EVENT_TYPES ? types[first + (uint32_t) idx] : 0;
            tg[t] = train ? (int32_t) items[first + (uint32_t) idx + 1] : -1;
            valid[t] = 1;
        }
    }
}

//  Positions needed by a batch: its longest (truncated) history.
static int
s_batch_len (model_t *m, const model_histories_t *h, const uint32_t *users, int nb, int training)
{
    uint32_t L = 1;
    for (int s = 0; s < nb; s++) {
        uint32_t len = h->offsets[users[s] + 1] - h->offsets[users[s]];
        uint32_t n = training ? (len > 0 ? len - 1 : 0) : len;
        L = n > L ? n : L;
    }
    return L > (uint32_t) m->cfg.max_len ? m->cfg.max_len : (int) L;
}

//  The catalogue's item tower over the whole table (items beyond the features' have
//  none), composed.
static int
s_global_items (model_t *self)
{
    const features_t *f = self->features;
    if (s_set_items (self, f ? f->offsets : NULL, f ? f->feats : NULL, self->n_rows, f ? f->n_items : 0) < 0)
        return -1;
    if (f)
        s_compose (self);
    return 0;
}

double
model_histories_loss (model_t *self, const model_histories_t *h, const uint32_t *users, int n, int dropout,
                      int with_grad)
{
    if (self->cfg.inference)
        return NAN;
    if (n > self->cfg.batch)
        n = self->cfg.batch;
    self->L = s_batch_len (self, h, users, n, 1);
    for (int s = 0; s < n; s++)
        s_layout (self, s, h->items + h->offsets[users[s]], h->types ? h->types + h->offsets[users[s]] : NULL,
                  h->offsets[users[s] + 1] - h->offsets[users[s]], 1);
    self->n_cand = self->n_rows;
    self->bias = NULL;
    if (s_global_items (self) < 0)
        return NAN;
    //  Same dropout masks on every call: reseed from the configuration.
    self->rng = self->cfg.seed * 0x9E3779B97F4A7C15ULL + 7;
    size_t R = (size_t) n * self->L, pos = 0;
    //  The ranking head's negatives: uniform over the table, never the target.
    int S = self->cfg.rank_negatives;
    for (size_t r = 0; r < R; r++) {
        if (self->targets[r] < 0)
            continue;
        for (int c = 0; c < S && self->n_rows > 1; c++) {
            uint32_t x;
            do
                x = (uint32_t) (s_uniform (&self->rng) * (float) self->n_rows) % self->n_rows;
            while (x == (uint32_t) self->targets[r]);
            self->neg_buf[pos * (size_t) S + (size_t) c] = x;
        }
        pos++;
    }
    self->rank_neg = self->n_rows > 1 ? self->neg_buf : NULL;
    s_forward (self, n, dropout);
    double loss;
    if (with_grad) {
        loss = s_backward (self, n, 1);
        if (self->c_off)
            s_decompose (self);
    }
    else {
        int packed = s_pack (self, R);
        int hard = s_rank_on (self) && self->rank_neg && self->cfg.rank_hard ? HARD_POOL : 0;
        loss = nn_softmax_xent (self->hpack, packed, self->cfg.dim, s_items_w (self), (int) self->n_rows, NULL,
                                self->tpack, 1.0f, NULL, NULL, self->logits, XENT_BLOCK, hard ? self->hard : NULL, hard);
        loss += s_rank_pass (self, n, 1.0f, 0);
    }
    return pos ? loss / (double) pos : 0;
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
                return -1;
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
            return -1;
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
            return -1;
        memcpy (self->emb.w + off, row.w, (size_t) d * sizeof (float));
        s_param_free (&row);
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

double
model_shard_grad (model_t *self, const model_shard_t *sh, uint64_t *positions)
{
    *positions = 0;
    if (self->cfg.inference || sh->n_rows > self->n_rows || sh->n_cand > sh->n_rows || sh->n_frows > self->feat.n / (size_t) self->cfg.dim)
        return NAN;
    self->n_cand = sh->n_cand;
    self->bias = sh->bias;
    self->rank_neg = sh->rank_neg;
    self->rng = sh->seed * 0x9E3779B97F4A7C15ULL + 3;
    if (s_set_items (self, sh->feat_off, sh->feat, sh->n_rows, sh->n_rows) < 0)
        return NAN;
    if (self->c_off)
        s_compose (self);
    double loss = 0;
    size_t off = 0;
    for (uint32_t i = 0; i < sh->n; i += (uint32_t) self->cfg.batch) {
        int nb = (int) (sh->n - i < (uint32_t) self->cfg.batch ? sh->n - i : (uint32_t) self->cfg.batch);
        uint32_t L = 1;
        for (int s = 0; s < nb; s++)
            L = sh->lens[i + (uint32_t) s] - 1 > L ? sh->lens[i + (uint32_t) s] - 1 : L;
        self->L = L > (uint32_t) self->cfg.max_len ? self->cfg.max_len : (int) L;
        for (int s = 0; s < nb; s++) {
            uint32_t len = sh->lens[i + (uint32_t) s];
            s_layout (self, s, sh->items + off, sh->types ? sh->types + off : NULL, len, 1);
            off += len;
        }
        size_t R = (size_t) nb * self->L, pos = 0;
        for (size_t r = 0; r < R; r++)
            pos += self->targets[r] >= 0;
        s_forward (self, nb, 1);
        loss += s_backward (self, nb, 0);
        *positions += pos;
        //  Matrix products: per block 4 d x d and 2 d x ffn linears and the attention
        //  (Q K', P V), forward once and backward twice; the softmax over the candidates
        //  (logits, dH, dE) on the predicting rows.
        double d = self->cfg.dim, f = self->cfg.ffn, Ld = self->L;
        double per_row = self->cfg.blocks * (2 * (4 * d * d + 2 * d * f) + 2 * 2 * Ld * d);
        self->flops += 3 * per_row * (double) R + 3 * 2.0 * (double) pos * sh->n_cand * d;
    }
    if (self->c_off)
        s_decompose (self);
    return loss;
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
    if (s_global_items (self) < 0)
        return NULL;
    return s_items_w (self);
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

//  The ranking head's logits (out) of n candidates for the state at batch row `row`.
static void
s_rank_logits (model_t *m, int row, const uint32_t *cands, uint32_t n, float *out)
{
    for (uint32_t e0 = 0; e0 < n; e0 += (uint32_t) m->rank_cap) {
        int g = n - e0 < (uint32_t) m->rank_cap ? (int) (n - e0) : m->rank_cap;
        for (int e = 0; e < g; e++) {
            m->r_row[e] = row;
            m->r_item[e] = (int32_t) cands[e0 + (uint32_t) e];
            m->r_y[e] = 0;
        }
        s_rank_group (m, g, 1.0f, 0);
        memcpy (out + e0, m->r_z, (size_t) g * sizeof (float));
    }
}

//  Re-ranks the top rerank_top of slot s's retrieval scores (sc, over the whole table)
//  with the ranking head; seen marks the user's history, which is never a candidate.
//  top and logits: rerank_top of scratch each.
static void
s_rerank (model_t *m, int s, float *sc, const uint8_t *seen, uint32_t *top, float *logits)
{
    int n = nn_top_k (sc, (int) m->n_rows, -1, seen, (int32_t *) top, m->rerank_top);
    s_rank_logits (m, s * m->L + m->L - 1, top, (uint32_t) n, logits);
    for (int e = 0; e < n; e++)
        sc[top[e]] = 1e4f + logits[e] + m->rerank_blend * sc[top[e]];
}

void
model_set_rerank (model_t *self, int top, float blend)
{
    self->rerank_top = top;
    self->rerank_blend = blend;
}

void
model_score_users (model_t *m, const model_histories_t *hist, const uint32_t *users, size_t n, float *scores,
                   int rerank)
{
    int d = m->cfg.dim;
    if (s_global_items (m) < 0)
        return;
    size_t cap = (size_t) (m->rerank_top > 0 ? m->rerank_top : 1);
    uint8_t *seen = rerank ? calloc (m->n_rows ? m->n_rows : 1, 1) : NULL;
    uint32_t *top = rerank ? malloc (cap * sizeof *top) : NULL;
    float *logits = rerank ? malloc (cap * sizeof *logits) : NULL;
    if (rerank && (!seen || !top || !logits || !s_rank_on (m)))
        rerank = 0;
    for (size_t i = 0; i < n; i += (size_t) m->cfg.batch) {
        int nb = (int) (n - i < (size_t) m->cfg.batch ? n - i : (size_t) m->cfg.batch);
        m->L = s_batch_len (m, hist, users + i, nb, 0);
        int L = m->L;
        for (int s = 0; s < nb; s++) {
            uint32_t u = users[i + (size_t) s];
            s_layout (m, s, hist->items + hist->offsets[u], hist->types ? hist->types + hist->offsets[u] : NULL,
                      hist->offsets[u + 1] - hist->offsets[u], 0);
        }
        s_forward (m, nb, 0);
        //  The interest vector is the state at the last position of each sequence.
        for (int s = 0; s < nb; s++)
            memcpy (m->dtmp + (size_t) s * d, m->hf + ((size_t) s * L + (size_t) (L - 1)) * d, (size_t) d * sizeof (float));
        nn_matmul_nt (m->dtmp, nb, d, s_items_w (m), (int) m->n_rows, scores + i * m->n_rows);
        if (!rerank)
            continue;
        s_rank_history (m, (size_t) nb * L, 0);
        for (int s = 0; s < nb; s++) {
            uint32_t u = users[i + (size_t) s];
            const uint32_t *h = hist->items + hist->offsets[u];
            uint32_t len = hist->offsets[u + 1] - hist->offsets[u];
            for (uint32_t j = 0; j < len; j++)
                if (h[j] < m->n_rows)
                    seen[h[j]] = 1;
            s_rerank (m, s, scores + (i + (size_t) s) * m->n_rows, seen, top, logits);
            for (uint32_t j = 0; j < len; j++)
                if (h[j] < m->n_rows)
                    seen[h[j]] = 0;
        }
    }
    free (seen);
    free (top);
    free (logits);
}

int
model_user_vectors (model_t *self, const uint32_t *items, const uint8_t *types, const uint32_t *lens, uint32_t n,
                    float *out)
{
    if (n > (uint32_t) self->cfg.batch || s_global_items (self) < 0)
        return -1;
    size_t total = 0;
    uint32_t L = 1;
    for (uint32_t k = 0; k < n; k++) {
        total += lens[k];
        L = lens[k] > L ? lens[k] : L;
    }
    for (size_t i = 0; i < total; i++)
        if (items[i] >= self->n_rows)
            return -1;
    self->L = L > (uint32_t) self->cfg.max_len ? self->cfg.max_len : (int) L;
    size_t off = 0;
    for (uint32_t k = 0; k < n; k++) {
        s_layout (self, (int) k, items + off, types ? types + off : NULL, lens[k], 0);
        off += lens[k];
    }
    s_forward_last (self, (int) n);
    int d = self->cfg.dim, Lb = self->L;
    for (uint32_t k = 0; k < n; k++)
        memcpy (out + (size_t) k * d, self->hf + ((size_t) k * Lb + (size_t) (Lb - 1)) * d, (size_t) d * sizeof (float));
    self->served = n;
    if (s_rank_on (self))
        s_rank_history (self, (size_t) n * Lb, 0);
    return 0;
}

int
model_rank_candidates (model_t *self, uint32_t k, const uint32_t *cands, uint32_t n, float *logits)
{
    if (!s_rank_on (self) || k >= self->served)
        return -1;
    for (uint32_t i = 0; i < n; i++)
        if (cands[i] >= self->n_rows)
            return -1;
    s_rank_logits (self, (int) k * self->L + self->L - 1, cands, n, logits);
    return 0;
}
