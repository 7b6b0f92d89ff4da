/*  rank_index: a served model version, from its snapshot blob to what retrieval scans:
    the model (user tower, item table), the popularity order of users without a
    history, and the retrieval structure, the packed table of exact search (score.h)
    or the approximate index (ivf.h) with its probe count.

    Everything here works on its arguments alone, never on a worker or a core: the
    loader thread builds a version here while serving goes on with the previous one,
    and the core swaps it in between two batches of jobs. An approximate index costs a
    k-means and a probe-count search, so what was built is saved beside the version
    (served_index_save) and read back at the next start when the configuration it was
    built for still holds.
*/
#define LOG_MODULE "rank"
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rank_private.h"
#include "util.h"

void
served_destroy (served_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    served_t *s = *self_p;
    model_destroy (&s->m);
    ivf_destroy (&s->ivf);
    score_table_destroy (&s->table);
    snapshot_info_free (&s->info);
    free (s->popular);
    free (s);
    *self_p = NULL;
}

void
sample_free (sample_t *s)
{
    free (s->items);
    free (s->types);
    free (s->lens);
    memset (s, 0, sizeof *s);
}

//  The popularity order: score, best first, then index (the sort needs both at hand).
typedef struct {
    float score;
    uint32_t item;
} pop_t;

static int
s_pop_cmp (const void *a, const void *b)
{
    const pop_t *x = a, *y = b;
    return x->score > y->score ? -1 : x->score < y->score ? 1 : (x->item > y->item) - (x->item < y->item);
}

bool
ranker_wants_sample (const ranker_t *self)
{
    const char *how = self->cfg.index ? self->cfg.index : "auto";
    return !strcmp (how, "ivf")
           || (!strcmp (how, "auto") && (self->cat.n == 0 || self->cat.n >= (uint64_t) self->cfg.ivf_min_items));
}

//  The queries the probe count is chosen on (nq x dim, malloc'd): the user vectors of
//  the sampled users, as serving will compute them; without enough of them (a store
//  without users yet), each the sum of two random items' vectors, a user of two
//  tastes. NULL on no memory.
static float *
s_probe_queries (served_t *s, const sample_t *sample, uint32_t want, uint32_t *nq, const char **kind)
{
    uint32_t n = s->info.items, batch = (uint32_t) model_config (s->m)->batch;
    int d = s->info.dim;
    float *q = malloc ((size_t) want * d * sizeof *q);
    if (!q)
        return NULL;
    *nq = 0;
    size_t off = 0;
    for (uint32_t u0 = 0; sample && u0 < sample->n && *nq < want; u0 += batch) {
        uint32_t nb = sample->n - u0 < batch ? sample->n - u0 : batch;
        nb = nb < want - *nq ? nb : want - *nq;
        size_t len = 0;
        bool ok = true;
        for (uint32_t k = 0; k < nb; k++) {
            for (uint32_t j = 0; j < sample->lens[u0 + k]; j++)
                ok = ok && sample->items[off + len + j] < n;   // rows of this version's table
            len += sample->lens[u0 + k];
        }
        if (ok && model_user_vectors (s->m, sample->items + off, sample->types + off, sample->lens + u0, nb,
                                      q + (size_t) *nq * d) == 0)
            *nq += nb;
        off += len;
    }
    *kind = "sampled users";
    if (*nq >= want / 2)
        return q;
    *kind = "pairs of items";
    uint64_t rng = 0x5EED ^ s->info.version;
    for (*nq = 0; *nq < want; (*nq)++) {
        uint32_t a = (uint32_t) (util_splitmix64 (&rng) % n), b = (uint32_t) (util_splitmix64 (&rng) % n);
        for (int j = 0; j < d; j++)
            q[(size_t) *nq * d + j] = s->vectors[(size_t) a * d + j] + s->vectors[(size_t) b * d + j];
    }
    return q;
}

//  A version's retrieval structure: the packed table of exact search (score.h), or,
//  when the configuration asks for it, the approximate index, its probe count chosen
//  as the fewest cells (doubling) whose recall@10 against exact search reaches
//  ivf-recall on the probe queries (s_probe_queries). 0, or STRATA_ENOMEM.
//  Saved with a version (its VERSIONS_EXTRA blob): uint32 probe, float recall, float the
//  ivf-recall it was chosen for, then ivf_save's bytes.
#define SAVED_HEAD 12

//  The approximate index saved with the version, if it was built with as many cells
//  as asked: loaded (no k-means). Returns 0 (none to use), 1 (loaded, and its probe
//  count still right: the one configured, or the one chosen for the same ivf-recall)
//  or 2 (loaded, probe count to choose again).
static int
s_index_saved (const ranker_config_t *cfg, served_t *s, const uint8_t *saved, size_t len)
{
    uint32_t probe;
    float recall, target;
    if (!saved || len < SAVED_HEAD)
        return 0;
    memcpy (&probe, saved, 4);
    memcpy (&recall, saved + 4, 4);
    memcpy (&target, saved + 8, 4);
    int rc;
    s->ivf = ivf_load (saved + SAVED_HEAD, len - SAVED_HEAD, s->vectors, s->info.items, s->info.dim, &rc);
    if (!s->ivf)
        log_warn ("version %llu: the saved approximate index does not load (%s); building it again",
                  (unsigned long long) s->info.version, strata_strerror (rc));
    if (!s->ivf || (cfg->ivf_cells > 0 && ivf_cells (s->ivf) != (uint32_t) cfg->ivf_cells)
        || probe < 1 || probe > ivf_cells (s->ivf)) {
        ivf_destroy (&s->ivf);
        return 0;
    }
    bool same = cfg->ivf_probe > 0 ? probe == (uint32_t) cfg->ivf_probe : target == (float) cfg->ivf_recall;
    log_info ("version %llu: approximate index read back, %u cells%s", (unsigned long long) s->info.version,
              ivf_cells (s->ivf), same ? "" : "; its probe count was chosen for other settings");
    if (!same)
        return 2;
    s->probe = probe;
    s->ivf_recall = recall;
    s->ivf_cap = ivf_max_candidates (s->ivf, probe);
    log_info ("version %llu: %u cells probed (at most %u of %u items per query), recall@10 %.3f",
              (unsigned long long) s->info.version, probe, s->ivf_cap, s->info.items, recall);
    return 1;
}

static int
s_index (const ranker_config_t *cfg, served_t *s, const sample_t *sample, const uint8_t *saved, size_t saved_len)
{
    uint32_t n = s->info.items;
    int d = s->info.dim;
    const char *how = cfg->index ? cfg->index : "auto";
    s->table_base = 0;
    if (n == 0 || !strcmp (how, "exact") || (!strcmp (how, "auto") && n < (uint64_t) cfg->ivf_min_items)) {
        s->table = n ? score_table_new (s->vectors, n, d) : NULL;
        return n && !s->table ? STRATA_ENOMEM : 0;
    }
    s->table_base = n;   // the items added later are scanned apart from the index
    int64_t t0 = zclock_mono ();
    int had = s_index_saved (cfg, s, saved, saved_len);
    if (had == 1)
        return 0;
    if (!had) {
        ivf_params_t p;
        ivf_params_default (&p);
        p.cells = (uint32_t) cfg->ivf_cells;
        s->ivf = ivf_build (s->vectors, n, d, &p);
        if (!s->ivf)
            return STRATA_ENOMEM;
    }
    uint32_t cells = ivf_cells (s->ivf), nq = 0;
    const char *kind = "";
    float *q = s_probe_queries (s, sample, 256, &nq, &kind);
    if (!q)
        return STRATA_ENOMEM;
    double recall = -1;
    int32_t *exact = malloc ((size_t) nq * 10 * sizeof *exact);
    if (exact && ivf_exact_top (s->vectors, n, d, q, nq, 10, exact) == 0) {
        if (cfg->ivf_probe > 0) {
            s->probe = (uint32_t) cfg->ivf_probe < cells ? (uint32_t) cfg->ivf_probe : cells;
            recall = ivf_recall (s->ivf, q, nq, s->probe, 10, exact);
        }
        else
            for (s->probe = 1;; s->probe = s->probe * 2 < cells ? s->probe * 2 : cells) {
                recall = ivf_recall (s->ivf, q, nq, s->probe, 10, exact);
                if (recall < 0 || recall >= cfg->ivf_recall || s->probe == cells)
                    break;
            }
    }
    free (exact);
    free (q);
    if (recall < 0)
        return STRATA_ENOMEM;
    s->ivf_cap = ivf_max_candidates (s->ivf, s->probe);
    s->ivf_recall = (float) recall;
    s->ivf_built = true;   // or its probe count chosen anew: kept either way
    log_info ("version %llu: approximate index, %u cells, %u probed (at most %u of %u items per query), recall@10 "
              "%.3f against exact on %u queries (%s); %s in %lld ms",
              (unsigned long long) s->info.version, cells, s->probe, s->ivf_cap, n, recall, nq, kind,
              had ? "probe count chosen" : "built", (long long) (zclock_mono () - t0));
    return 0;
}


served_t *
served_new (const ranker_config_t *cfg, const uint8_t *blob, size_t len, const sample_t *sample,
            const uint8_t *saved, size_t saved_len, int *rc)
{
    int dummy;
    rc = rc ? rc : &dummy;
    *rc = STRATA_ENOMEM;
    served_t *s = calloc (1, sizeof *s);
    if (!s)
        return NULL;
    char err[256];
    s->m = snapshot_load (blob, len, (int) cfg->batch, &s->info, err, sizeof err);
    if (!s->m) {
        log_error ("cannot load a model snapshot: %s", err);
        *rc = STRATA_ECORRUPT;
        free (s);
        return NULL;
    }
    s->vectors = model_row_weights (s->m, NULL);
    s->rows = s->info.items;
    uint32_t n = s->info.items;
    s->popular = malloc ((n ? n : 1) * sizeof *s->popular);
    pop_t *order = malloc ((n ? n : 1) * sizeof *order);
    if (!s->popular || !order) {
        free (order);
        served_destroy (&s);
        return NULL;
    }
    for (uint32_t i = 0; i < n; i++)
        order[i] = (pop_t) { s->info.popularity[i], i };
    qsort (order, n, sizeof *order, s_pop_cmp);
    for (uint32_t i = 0; i < n; i++)
        s->popular[i] = order[i].item;
    free (order);
    s->n_popular = n < POPULAR_KEPT ? n : POPULAR_KEPT;
    if ((*rc = s_index (cfg, s, sample, saved, saved_len)) < 0) {
        served_destroy (&s);
        return NULL;
    }
    return s;
}

uint8_t *
served_index_save (const served_t *s, const ranker_config_t *cfg, size_t *len)
{
    if (!s || !s->ivf || !s->ivf_built)
        return NULL;
    size_t n;
    uint8_t *bytes = ivf_save (s->ivf, &n);
    uint8_t *v = bytes ? malloc (SAVED_HEAD + n) : NULL;
    if (v) {
        float target = (float) cfg->ivf_recall;
        memcpy (v, &s->probe, 4);
        memcpy (v + 4, &s->ivf_recall, 4);
        memcpy (v + 8, &target, 4);
        memcpy (v + SAVED_HEAD, bytes, n);
        *len = SAVED_HEAD + n;
    }
    free (bytes);
    return v;
}
