/*  rank_head: the model's ranking head (model.h): an MLP over (user, candidate,
    user * candidate, the candidate-aware pooled history, context), trained jointly
    with retrieval on sampled and hard negatives, and used to re-rank retrieval's top.
*/
#include "model_private.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"

int
rank_head_on (const model_t *m)
{
    return m->cfg.rank_negatives > 0;
}

//  Allocates the ranking head's parameters and workspace.
int
rank_head_new (model_t *m)
{
    const model_config_t *cfg = &m->cfg;
    if (!rank_head_on (m))
        return 0;
    if (cfg->rank_layers < 1 || cfg->rank_layers > MODEL_RANK_MAX_LAYERS)
        return STRATA_EINVAL;
    int d = cfg->dim, L = cfg->max_len, S = cfg->rank_negatives, K = cfg->rank_hard;
    if (K < 0 || K > 64 || S > 256)
        return STRATA_EINVAL;
    m->rank_in = 4 * d + RANK_CONTEXT;
    m->rank_cap = L * (S + K + 1) > RANK_GROUP ? L * (S + K + 1) : RANK_GROUP;
    size_t G = (size_t) m->rank_cap, R = (size_t) cfg->batch * L;
    int bad = 0, in = m->rank_in;
    m->rank_wmax = in;
    for (int k = 0; k <= cfg->rank_layers; k++) {
        int out = k < cfg->rank_layers ? cfg->rank_widths[k] : 1;
        if (out < 1)
            return STRATA_EINVAL;
        bad |= model_param (&m->rw[k], (size_t) in * out, sqrtf (2.0f / (float) in), 0, &m->rng)
             | model_param (&m->rb[k], (size_t) out, 0, 0, &m->rng);
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

void
rank_head_free (model_t *m)
{
    for (int k = 0; k <= MODEL_RANK_MAX_LAYERS; k++) {
        model_param_free (&m->rw[k]);
        model_param_free (&m->rb[k]);
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
    const float *V = tower_items_w (m);
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
        int s = m->r_row[e0] / L, lo = tower_first_valid (m, s);
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
        m->r_plen[p] = (float) (r % L - tower_first_valid (m, r / L) + 1) * inv_len;
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
    nn_scatter_add (tower_items_g (m), d, m->r_item, n, m->r_dC);
    return loss;
}

//  The history item vectors of a laid-out batch of R rows, for the pooling.
void
rank_head_history (model_t *m, size_t R, int grad)
{
    nn_gather (tower_items_w (m), m->cfg.dim, m->in_items, (int) R, m->hist);
    if (grad)
        memset (m->dhist, 0, R * m->cfg.dim * sizeof (float));
}

//  The ranking loss of a laid-out, forwarded batch of nb sequences: at every predicted
//  position, the true next item (label 1) against the position's rank_negatives
//  negatives, read from m->rank_neg, which this consumes (it then points at the next
//  batch's). Returns rank_weight times the summed BCE; with grad, its gradient times
//  scale is accumulated.
double
rank_head_pass (model_t *m, int nb, float scale, int grad)
{
    if (!rank_head_on (m) || !m->rank_neg)
        return 0;
    int S = m->cfg.rank_negatives;
    size_t R = (size_t) nb * m->L, p = 0;
    float w = m->cfg.rank_weight;
    rank_head_history (m, R, grad);
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
        nn_scatter_add (tower_items_g (m), m->cfg.dim, m->in_items, (int) R, m->dhist);
    m->rank_neg += p * (size_t) S;
    return w * loss;
}

//  The ranking head's logits (out) of n candidates for the state at batch row `row`.
void
rank_head_logits (model_t *m, int row, const uint32_t *cands, uint32_t n, float *out)
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
void
rank_head_rerank (model_t *m, int s, float *sc, const uint8_t *seen, uint32_t *top, float *logits)
{
    int n = nn_top_k (sc, (int) m->n_rows, -1, seen, (int32_t *) top, m->rerank_top);
    rank_head_logits (m, s * m->L + m->L - 1, top, (uint32_t) n, logits);
    for (int e = 0; e < n; e++)
        sc[top[e]] = 1e4f + logits[e] + m->rerank_blend * sc[top[e]];
}
