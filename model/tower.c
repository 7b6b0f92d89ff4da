/*  tower: the model's item and user towers, forward and backward (model.h): composing
    item vectors from their rows and catalogue features, the transformer blocks over a
    batch of histories, the softmax over candidates, a shard's gradient, a batch's loss,
    and serving's user vectors and whole-catalogue scores.
*/
#include "model_private.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"

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
        mask[i] = model_uniform (&m->rng) < p ? 0 : keep;
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
            return STRATA_ENOMEM;
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
const float *
tower_items_w (model_t *m)
{
    return m->c_off ? m->vbuf : m->emb.w;
}

float *
tower_items_g (model_t *m)
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
    nn_gather (tower_items_w (m), d, m->in_items, (int) R, m->x0);
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
int
tower_first_valid (const model_t *m, int s)
{
    const uint8_t *valid = m->valid + (size_t) s * m->L;
    int t = 0;
    while (t < m->L && !valid[t])
        t++;
    return t;
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
    int hard = rank_head_on (m) && m->rank_neg && m->cfg.rank_hard ? HARD_POOL : 0;
    double loss = nn_softmax_xent (m->hpack, predicted, d, tower_items_w (m), (int) m->n_cand, m->bias, m->tpack, scale,
                                   m->dpack, tower_items_g (m), m->logits, XENT_BLOCK, hard ? m->hard : NULL, hard);
    for (int i = 0; i < predicted; i++)
        memcpy (m->dx + (size_t) m->rowpack[i] * d, m->dpack + (size_t) i * d, (size_t) d * sizeof (float));
    //  The ranking head reads the same final states.
    loss += rank_head_pass (m, nb, scale, 1);
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
    nn_scatter_add (tower_items_g (m), d, m->in_items, (int) R, dout);
    return loss;
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
int
tower_global_items (model_t *self)
{
    const features_t *f = self->features;
    int rc = s_set_items (self, f ? f->offsets : NULL, f ? f->feats : NULL, self->n_rows, f ? f->n_items : 0);
    if (rc < 0)
        return rc;
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
    if (tower_global_items (self) < 0)
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
                x = (uint32_t) (model_uniform (&self->rng) * (float) self->n_rows) % self->n_rows;
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
        int hard = rank_head_on (self) && self->rank_neg && self->cfg.rank_hard ? HARD_POOL : 0;
        loss = nn_softmax_xent (self->hpack, packed, self->cfg.dim, tower_items_w (self), (int) self->n_rows, NULL,
                                self->tpack, 1.0f, NULL, NULL, self->logits, XENT_BLOCK, hard ? self->hard : NULL, hard);
        loss += rank_head_pass (self, n, 1.0f, 0);
    }
    return pos ? loss / (double) pos : 0;
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
    if (tower_global_items (m) < 0)
        return;
    size_t cap = (size_t) (m->rerank_top > 0 ? m->rerank_top : 1);
    uint8_t *seen = rerank ? calloc (m->n_rows ? m->n_rows : 1, 1) : NULL;
    uint32_t *top = rerank ? malloc (cap * sizeof *top) : NULL;
    float *logits = rerank ? malloc (cap * sizeof *logits) : NULL;
    if (rerank && (!seen || !top || !logits || !rank_head_on (m)))
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
        nn_matmul_nt (m->dtmp, nb, d, tower_items_w (m), (int) m->n_rows, scores + i * m->n_rows);
        if (!rerank)
            continue;
        rank_head_history (m, (size_t) nb * L, 0);
        for (int s = 0; s < nb; s++) {
            uint32_t u = users[i + (size_t) s];
            const uint32_t *h = hist->items + hist->offsets[u];
            uint32_t len = hist->offsets[u + 1] - hist->offsets[u];
            for (uint32_t j = 0; j < len; j++)
                if (h[j] < m->n_rows)
                    seen[h[j]] = 1;
            rank_head_rerank (m, s, scores + (i + (size_t) s) * m->n_rows, seen, top, logits);
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
    //  More users than the batch the model was built for: the caller splits them.
    if (n > (uint32_t) self->cfg.batch)
        return STRATA_ETOOLARGE;
    int rc = tower_global_items (self);
    if (rc < 0)
        return rc;
    size_t total = 0;
    uint32_t L = 1;
    for (uint32_t k = 0; k < n; k++) {
        total += lens[k];
        L = lens[k] > L ? lens[k] : L;
    }
    for (size_t i = 0; i < total; i++)
        if (items[i] >= self->n_rows)
            return STRATA_EINVAL;
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
    if (rank_head_on (self))
        rank_head_history (self, (size_t) n * Lb, 0);
    return 0;
}

int
model_rank_candidates (model_t *self, uint32_t k, const uint32_t *cands, uint32_t n, float *logits)
{
    if (!rank_head_on (self))
        return STRATA_ESTATE;   // a model built without the head (rank_negatives 0)
    if (k >= self->served)
        return STRATA_EINVAL;
    for (uint32_t i = 0; i < n; i++)
        if (cands[i] >= self->n_rows)
            return STRATA_EINVAL;
    rank_head_logits (self, (int) k * self->L + self->L - 1, cands, n, logits);
    return 0;
}
