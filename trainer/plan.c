/*  plan: see plan.h. */
#include "plan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct _plan_t {
    plan_config_t cfg;
    const dataset_t *train;
    uint32_t *order;        // trainable users, in this epoch's order
    uint32_t n_order;
    uint32_t *border;       // batches in visiting order
    uint32_t n_batches;
    uint32_t epoch;
    double *cdf;            // sampling distribution (popularity), n_items
    float *neg_log_q;       // -log Q per item
    int32_t *local;         // global item -> local row while building a shard, else -1
    uint32_t *only;         // plan_set_users, or NULL
    uint32_t n_only;
    const features_t *features;
    int32_t *flocal;        // global feature row -> local while building a shard, else -1
};

static uint64_t
s_mix (uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

//  Uniform in [0, n) from a splitmix stream.
static uint32_t
s_below (uint64_t *state, uint32_t n)
{
    *state = s_mix (*state);
    return (uint32_t) (((*state >> 32) * (uint64_t) n) >> 32);
}

static double
s_unit (uint64_t *state)
{
    *state = s_mix (*state);
    return (double) (*state >> 11) * (1.0 / 9007199254740992.0);
}

void
plan_config_default (plan_config_t *cfg)
{
    cfg->batch = 128;
    cfg->shards = 1;
    cfg->negatives = 0;
    cfg->sampler = PLAN_POPULARITY;
    cfg->alpha = 0.75f;
    cfg->max_len = 50;
    cfg->seed = 42;
    cfg->rank_negatives = 4;
    cfg->rank_sampler = PLAN_POPULARITY;
}

int
plan_sampler_parse (const char *name)
{
    if (!strcmp (name, "uniform"))
        return PLAN_UNIFORM;
    if (!strcmp (name, "popularity"))
        return PLAN_POPULARITY;
    return STRATA_EINVAL;
}

plan_t *
plan_new (const dataset_t *train, const plan_config_t *cfg)
{
    plan_t *p = calloc (1, sizeof *p);
    if (!p)
        return NULL;
    p->cfg = *cfg;
    if (p->cfg.shards < 1)
        p->cfg.shards = 1;
    p->train = train;
    uint32_t n = train->n_items ? train->n_items : 1;
    p->order = malloc ((size_t) (train->n_users ? train->n_users : 1) * sizeof *p->order);
    p->border = malloc ((size_t) (train->n_users ? train->n_users : 1) * sizeof *p->border);
    p->local = malloc ((size_t) n * sizeof *p->local);
    p->cdf = malloc ((size_t) n * sizeof *p->cdf);
    p->neg_log_q = malloc ((size_t) n * sizeof *p->neg_log_q);
    if (!p->order || !p->border || !p->local || !p->cdf || !p->neg_log_q) {
        plan_destroy (&p);
        return NULL;
    }
    for (uint32_t i = 0; i < n; i++)
        p->local[i] = -1;
    //  Q(item) proportional to (count + 1)^alpha, for the popularity sampler (the
    //  uniform one draws from s_below).
    double alpha = cfg->alpha;
    for (uint32_t i = 0; i < n; i++)
        p->cdf[i] = 1;
    for (size_t e = 0; e < train->n_events; e++)
        p->cdf[train->items[e]] += 1;
    double sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        double w = pow (p->cdf[i], alpha);
        p->neg_log_q[i] = (float) -log (w);   // normalised below
        sum += w;
        p->cdf[i] = sum;
    }
    float log_sum = (float) log (sum);
    for (uint32_t i = 0; i < n; i++) {
        p->neg_log_q[i] += log_sum;
        p->cdf[i] /= sum;
    }
    return p;
}

void
plan_destroy (plan_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    plan_t *p = *self_p;
    free (p->order);
    free (p->border);
    free (p->local);
    free (p->cdf);
    free (p->neg_log_q);
    free (p->only);
    free (p->flocal);
    free (p);
    *self_p = NULL;
}

const plan_config_t *
plan_config (plan_t *self)
{
    return &self->cfg;
}

static int
s_len_cmp (const void *a, const void *b, void *arg)
{
    const dataset_t *d = arg;
    uint32_t x = dataset_len (d, *(const uint32_t *) a), y = dataset_len (d, *(const uint32_t *) b);
    return x < y ? -1 : x > y;
}

uint32_t
plan_epoch (plan_t *self, uint32_t epoch)
{
    const dataset_t *t = self->train;
    uint64_t rng = s_mix (self->cfg.seed ^ s_mix (epoch + 1));
    uint32_t n = 0;
    if (self->only) {
        for (uint32_t i = 0; i < self->n_only; i++)
            if (self->only[i] < t->n_users && dataset_len (t, self->only[i]) >= 2)
                self->order[n++] = self->only[i];
    }
    else
        for (uint32_t u = 0; u < t->n_users; u++)
            if (dataset_len (t, u) >= 2)
                self->order[n++] = u;
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = s_below (&rng, i);
        uint32_t x = self->order[i - 1];
        self->order[i - 1] = self->order[j];
        self->order[j] = x;
    }
    size_t window = (size_t) self->cfg.batch * 32;
    for (size_t w0 = 0; w0 < n; w0 += window) {
        size_t wn = n - w0 < window ? n - w0 : window;
        qsort_r (self->order + w0, wn, sizeof *self->order, s_len_cmp, (void *) t);
    }
    uint32_t nb = (n + (uint32_t) self->cfg.batch - 1) / (uint32_t) self->cfg.batch;
    for (uint32_t b = 0; b < nb; b++)
        self->border[b] = b;
    for (uint32_t b = nb; b > 1; b--) {
        uint32_t j = s_below (&rng, b);
        uint32_t x = self->border[b - 1];
        self->border[b - 1] = self->border[j];
        self->border[j] = x;
    }
    self->n_order = n;
    self->n_batches = nb;
    self->epoch = epoch;
    return nb;
}

int
plan_set_features (plan_t *self, const features_t *features)
{
    free (self->flocal);
    self->flocal = NULL;
    self->features = features;
    if (!features)
        return 0;
    self->flocal = malloc ((features->rows ? features->rows : 1) * sizeof *self->flocal);
    if (!self->flocal)
        return STRATA_ENOMEM;
    for (uint32_t i = 0; i < features->rows; i++)
        self->flocal[i] = -1;
    return 0;
}

//  The shard's item tower: each local item's feature rows, as local feature rows.
static int
s_shard_features (plan_t *self, model_shard_t *out)
{
    const features_t *f = self->features;
    size_t total = 0;
    for (uint32_t k = 0; k < out->n_rows; k++) {
        uint32_t i = out->rows[k];
        total += i < f->n_items ? f->offsets[i + 1] - f->offsets[i] : 0;
    }
    out->feat_off = malloc (((size_t) out->n_rows + 1) * sizeof *out->feat_off);
    out->feat = malloc ((total ? total : 1) * sizeof *out->feat);
    out->frows = malloc ((total ? total : 1) * sizeof *out->frows);
    if (!out->feat_off || !out->feat || !out->frows)
        return STRATA_ENOMEM;
    size_t w = 0;
    for (uint32_t k = 0; k < out->n_rows; k++) {
        out->feat_off[k] = (uint32_t) w;
        uint32_t i = out->rows[k];
        if (i >= f->n_items)
            continue;
        for (uint32_t j = f->offsets[i]; j < f->offsets[i + 1]; j++) {
            uint32_t row = f->feats[j];
            if (self->flocal[row] < 0) {
                self->flocal[row] = (int32_t) out->n_frows;
                out->frows[out->n_frows++] = row;
            }
            out->feat[w++] = (uint32_t) self->flocal[row];
        }
    }
    out->feat_off[out->n_rows] = (uint32_t) w;
    for (uint32_t r = 0; r < out->n_frows; r++)
        self->flocal[out->frows[r]] = -1;
    return 0;
}

int
plan_set_users (plan_t *self, const uint32_t *users, uint32_t n)
{
    free (self->only);
    self->only = NULL;
    self->n_only = 0;
    if (!users)
        return 0;
    if (n > self->train->n_users)
        n = self->train->n_users;
    self->only = malloc ((n ? n : 1) * sizeof *users);
    if (!self->only)
        return STRATA_ENOMEM;
    memcpy (self->only, users, n * sizeof *users);
    self->n_only = n;
    return 0;
}

uint32_t
plan_users (plan_t *self)
{
    return self->n_order;
}

//  An item from the sampler.
static uint32_t
s_draw (plan_t *self, uint64_t *rng, plan_sampler_t sampler)
{
    uint32_t n = self->train->n_items;
    if (sampler == PLAN_UNIFORM)
        return s_below (rng, n);
    double x = s_unit (rng);
    uint32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (self->cdf[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

//  The local row of a global item, appending it to rows when new.
static uint32_t
s_local (plan_t *self, model_shard_t *sh, uint32_t item)
{
    if (self->local[item] < 0) {
        self->local[item] = (int32_t) sh->n_rows;
        sh->rows[sh->n_rows++] = item;
    }
    return (uint32_t) self->local[item];
}

//  The ranking head's negatives of every predicted position of a built shard whose
//  first user is order[from] (full: local rows are global items; else new items are
//  appended to the table). 0 or STRATA_ENOMEM.
static int
s_rank_negatives (plan_t *self, model_shard_t *out, uint32_t from, int full)
{
    int S = self->cfg.rank_negatives;
    if (S <= 0 || self->train->n_items < 2)
        return 0;
    size_t positions = out->n_items - out->n, p = 0, w = 0;
    out->rank_neg = malloc ((positions ? positions : 1) * (size_t) S * sizeof *out->rank_neg);
    if (!out->rank_neg)
        return STRATA_ENOMEM;
    for (uint32_t s = 0; s < out->n; s++) {
        //  Drawn per user of the epoch, so that a step's negatives do not depend on
        //  how it is cut into shards.
        uint64_t rng = s_mix (self->cfg.seed ^ s_mix (((uint64_t) self->epoch << 32 | (from + s)) + 29));
        for (uint32_t k = 1; k < out->lens[s]; k++, p++) {
            uint32_t target = out->rows[out->items[w + k]];
            for (int c = 0; c < S; c++) {
                uint32_t g = s_draw (self, &rng, self->cfg.rank_sampler);
                for (int tries = 0; g == target && tries < 16; tries++)
                    g = s_draw (self, &rng, self->cfg.rank_sampler);
                if (g == target)
                    g = (target + 1) % self->train->n_items;
                out->rank_neg[p * (size_t) S + (size_t) c] = full ? g : s_local (self, out, g);
            }
        }
        w += out->lens[s];
    }
    return 0;
}

int
plan_shard (plan_t *self, uint32_t step, int shard, model_shard_t *out)
{
    memset (out, 0, sizeof *out);
    if (step >= self->n_batches || shard < 0 || shard >= self->cfg.shards)
        return STRATA_EINVAL;
    const dataset_t *t = self->train;
    uint32_t first = self->border[step] * (uint32_t) self->cfg.batch;
    uint32_t nb = self->n_order - first < (uint32_t) self->cfg.batch ? self->n_order - first : (uint32_t) self->cfg.batch;
    uint32_t S = (uint32_t) self->cfg.shards;
    uint32_t from = first + nb * (uint32_t) shard / S, to = first + nb * (uint32_t) (shard + 1) / S;
    uint32_t tail = (uint32_t) self->cfg.max_len + 1;
    out->id = ((uint64_t) self->epoch << 40) | ((uint64_t) step << 8) | (uint64_t) shard;
    out->seed = s_mix (self->cfg.seed ^ s_mix (out->id + 17));
    out->n = to - from;
    size_t total = 0;
    for (uint32_t i = from; i < to; i++) {
        uint32_t len = dataset_len (t, self->order[i]);
        total += len < tail ? len : tail;
    }
    out->n_items = total;
    int full = self->cfg.negatives <= 0;
    size_t step_total = 0;
    for (uint32_t i = first; i < first + nb; i++) {
        uint32_t len = dataset_len (t, self->order[i]);
        step_total += len < tail ? len : tail;
    }
    size_t positions = total - out->n;   // every item of a sequence but its first
    size_t rank_total = positions * (size_t) (self->cfg.rank_negatives > 0 ? self->cfg.rank_negatives : 0);
    size_t max_rows = full ? t->n_items : step_total + (size_t) self->cfg.negatives + rank_total;
    if (max_rows > t->n_items)
        max_rows = t->n_items;
    out->lens = malloc ((out->n ? out->n : 1) * sizeof *out->lens);
    out->items = malloc ((total ? total : 1) * sizeof *out->items);
    out->types = malloc (total ? total : 1);
    out->rows = malloc ((max_rows ? max_rows : 1) * sizeof *out->rows);
    if (!out->lens || !out->items || !out->types || !out->rows) {
        plan_shard_free (out);
        return STRATA_ENOMEM;
    }
    if (full) {
        for (uint32_t i = 0; i < t->n_items; i++)
            out->rows[i] = i;
        out->n_rows = out->n_cand = t->n_items;
        size_t w = 0;
        for (uint32_t i = from; i < to; i++) {
            uint32_t u = self->order[i], len = dataset_len (t, u), take = len < tail ? len : tail;
            out->lens[i - from] = take;
            memcpy (out->items + w, t->items + t->offsets[u] + (len - take), take * sizeof *out->items);
            memcpy (out->types + w, t->types + t->offsets[u] + (len - take), take);
            w += take;
        }
        if (s_rank_negatives (self, out, from, 1) < 0 || (self->features && s_shard_features (self, out) < 0)) {
            plan_shard_free (out);
            return STRATA_ENOMEM;
        }
        return 0;
    }
    //  Candidates first: the step's targets (of every shard, so that the shards of a
    //  step compute parts of one loss), then the step's sampled items.
    for (uint32_t i = first; i < first + nb; i++) {
        uint32_t u = self->order[i], len = dataset_len (t, u), take = len < tail ? len : tail;
        const uint32_t *seq = t->items + t->offsets[u] + (len - take);
        for (uint32_t k = 1; k < take; k++)
            s_local (self, out, seq[k]);
    }
    uint64_t rng = s_mix (self->cfg.seed ^ s_mix (((uint64_t) self->epoch << 32 | step) + 5));
    for (int k = 0; k < self->cfg.negatives && out->n_rows < max_rows; k++)
        s_local (self, out, s_draw (self, &rng, self->cfg.sampler));
    out->n_cand = out->n_rows;
    //  Then the inputs that are not candidates.
    size_t w = 0;
    for (uint32_t i = from; i < to; i++) {
        uint32_t u = self->order[i], len = dataset_len (t, u), take = len < tail ? len : tail;
        const uint32_t *seq = t->items + t->offsets[u] + (len - take);
        out->lens[i - from] = take;
        memcpy (out->types + w, t->types + t->offsets[u] + (len - take), take);
        for (uint32_t k = 0; k < take; k++)
            out->items[w++] = s_local (self, out, seq[k]);
    }
    int bad = s_rank_negatives (self, out, from, 0) < 0;
    if (!bad && self->cfg.sampler == PLAN_POPULARITY) {
        out->bias = malloc ((out->n_cand ? out->n_cand : 1) * sizeof *out->bias);
        bad = !out->bias;
    }
    if (bad) {
        for (uint32_t r = 0; r < out->n_rows; r++)
            self->local[out->rows[r]] = -1;
        plan_shard_free (out);
        return STRATA_ENOMEM;
    }
    if (out->bias)
        for (uint32_t r = 0; r < out->n_cand; r++)
            out->bias[r] = self->neg_log_q[out->rows[r]];
    for (uint32_t r = 0; r < out->n_rows; r++)
        self->local[out->rows[r]] = -1;
    if (self->features && s_shard_features (self, out) < 0) {
        plan_shard_free (out);
        return STRATA_ENOMEM;
    }
    return 0;
}

void
plan_shard_free (model_shard_t *shard)
{
    free (shard->lens);
    free (shard->items);
    free (shard->types);
    free (shard->rows);
    free (shard->bias);
    free (shard->feat_off);
    free (shard->feat);
    free (shard->frows);
    free (shard->rank_neg);
    memset (shard, 0, sizeof *shard);
}
