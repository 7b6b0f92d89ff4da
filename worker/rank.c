/*  rank: see rank.h. */
#define LOG_MODULE "rank"
#include "rank.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "item_features.h"
#include "ivf.h"
#include "log.h"
#include "model.h"
#include "nn.h"
#include "request.h"
#include "score.h"
#include "user_cache.h"
#include "search_rank.h"
#include "snapshot.h"
#include "store.h"
#include "util.h"
#include "wire.h"

enum { CF_DEFAULT, CF_MODELS, CF_COUNT };
static const char *const s_cfs[CF_COUNT] = { "default", "models" };

#define META_CHUNK 0xFFFFFFFFu
#define INDEX_CHUNK 0xFFFFFFFEu   // a version's approximate index, once built
#define WINDOW 4              // chunk requests in flight
#define CHUNK_TIMEOUT_MS 5000
#define MAX_K 1000
#define CATALOGUE_PAGE 2000   // items per catalogue request
#define CATALOGUE_TIMEOUT_MS 5000   // longest wait for the broker's answer to one
#define POPULAR_KEPT 4096
#define SEARCH_POOL 100       // text candidates a user's model score is blended into

//  The version being served.
typedef struct {
    model_t *m;
    snapshot_info_t info;
    uint32_t rows;            // items served: the version's, then those added since (s_extend)
    const float *vectors;     // rows x dim: the model's table
    uint32_t *popular;        // item indices, most popular first
    uint32_t n_popular;
    ivf_t *ivf;               // approximate retrieval (NULL: exact)
    score_table_t *table;     // rows table_base .. table_base + its size packed for the scan:
    uint32_t table_base;      // exact retrieval, every row (0); approximate, those added
                              // since the index was built (its size)
    uint32_t probe;           // its cells scanned per query
    uint32_t ivf_cap;         // most candidates a query gets
    float ivf_recall;         // its recall@10 on the probe queries
    bool ivf_built;           // built or tuned here, not read back as it was: worth storing
} served_t;

//  Where a catalogue refresh stands: idle, reading pages of items past those known,
//  reading the records written since the last change applied, or reading every page
//  again (the broker's change log no longer reaches back to the last change applied).
typedef enum { SYNC_IDLE, SYNC_PAGES, SYNC_CHANGES, SYNC_RELOAD } sync_t;

//  What the broker's catalogue says about each item index.
typedef struct {
    uint32_t n, cap;
    char **ids;
    char **titles;            // NULL entries: no title
    zhashx_t *index;          // id -> index + 1
    float *price;             // NAN: none
    //  Item i's category-level hashes are cat[cat_at[i] .. cat_at[i] + cat_n[i]); an
    //  updated item's are appended, its old ones left unused.
    uint32_t *cat_at;
    uint16_t *cat_n;
    uint32_t *cat;
    size_t n_cat, cap_cat;
    uint64_t change;          // the last catalogue change applied (its sequence)
    bool change_known;        // whether change is set (from the first page fetched)
    //  Feature hashes of the items from fh_base on (those the served version does not
    //  know): item i's are fh[fh_at[k] .. fh_at[k] + fh_n[k]), k = i - fh_base. A record
    //  written again appends its hashes, its old ones left unused until the next trim.
    uint32_t fh_base;
    uint64_t *fh;
    uint32_t *fh_at;
    uint8_t *fh_n;
    size_t n_fh, cap_fh, cap_fh_items;
} catalogue_t;

//  A version being fetched.
typedef struct {
    uint64_t version, fnv, bytes;
    uint32_t chunks, chunk_bytes, next, received;
    uint8_t *blob;
    uint8_t *have;            // per chunk
    int64_t last_reply;
    char *meta;
} download_t;

typedef struct {
    void *p;
    size_t cap;               // bytes
} scratch_t;

//  Stored users' histories (model rows and event types, oldest first), for choosing
//  the approximate index's probe count on the queries serving will see.
typedef struct {
    uint32_t *items;
    uint8_t *types;
    uint32_t *lens;
    uint32_t n;
} sample_t;

//  A fetched version being stored and loaded (index included) off the serving thread.
typedef struct {
    pthread_t thread;
    bool busy;                // a thread runs, or its result waits to be swapped in
    atomic_bool done;
    download_t dl;            // owned by the thread while it runs
    sample_t sample;          // likewise
    served_t *result;         // NULL: the version did not load
} loader_t;

struct _rank_worker_t {
    rank_config_t cfg;
    store_t *store;
    served_t *cur;
    catalogue_t cat;
    search_index_t *index;    // over the catalogue
    zsock_t *trainer;
    download_t dl;
    loader_t loader;
    int64_t next_poll, next_catalogue;
    //  Catalogue refreshes, never waited on: one request out at a time on its own socket
    //  to the broker's api endpoint, each reply applied as it comes.
    zsock_t *broker;
    sync_t sync;              // what the request out asks for
    int64_t sync_sent;        // when it went
    uint64_t sync_updated;    // records updated in this refresh
    uint32_t reload_at;       // SYNC_RELOAD: the next page's first item
    bool reload_due;          // the next refresh reads every page again
    //  Scratch, grown as needed and kept: serving allocates nothing per request.
    scratch_t scores;         // batch x items
    scratch_t uvec;           // batch x dim
    scratch_t uvec_group;     // the user tower's output for one group of a batch
    user_cache_t *ucache;     // user vectors by history
    scratch_t s_items, s_text, s_drop, s_seen;   // search: per catalogue item
    scratch_t failed;         // items a filter leaves out
    scratch_t cand_items, cand_scores;   // approximate retrieval: per query, its candidates
    scratch_t cand_drop;      // per candidate: excluded for the request at hand
    scratch_t exact;          // one query's scores over the catalogue (fallbacks)
    scratch_t sel, sel_scores; // one request's selected items and their retrieval scores
    scratch_t refine_items, refine_scores;   // exact retrieval: the items scored exactly
    uint8_t *mark;            // per item: excluded for the request at hand
    size_t mark_cap;
    int32_t *top;
    float *logits;
    uint64_t served_jobs;
    //  The results of the jobs being answered, sent together when all are done.
    Strata__V1__ServeResult *results;
    Strata__V1__ServeResult **result_ptrs;
    size_t n_results;
};

static void s_extend (rank_worker_t *self, served_t *s);
static void s_catalogue_trim (catalogue_t *c, uint32_t base);

//  At least `bytes` of scratch (contents not kept when it grows), or NULL.
static void *
s_scratch (scratch_t *s, size_t bytes)
{
    if (s->cap < bytes || !s->p) {
        free (s->p);
        s->p = malloc (bytes ? bytes : 1);
        s->cap = s->p ? bytes : 0;
    }
    return s->p;
}

//  The same, zero when first allocated: the caller keeps it zero between uses.
static void *
s_scratch_zeroed (scratch_t *s, size_t bytes)
{
    if (s->cap < bytes || !s->p) {
        free (s->p);
        s->p = calloc (bytes ? bytes : 1, 1);
        s->cap = s->p ? bytes : 0;
    }
    return s->p;
}

// ---------------------------------------------------------------- served versions

static void
s_served_free (served_t **p)
{
    if (!*p)
        return;
    model_destroy (&(*p)->m);
    ivf_destroy (&(*p)->ivf);
    score_table_destroy (&(*p)->table);
    snapshot_info_free (&(*p)->info);
    free ((*p)->popular);
    free (*p);
    *p = NULL;
}

static const float *s_pop_scores;

static int
s_pop_cmp (const void *a, const void *b)
{
    float x = s_pop_scores[*(const uint32_t *) a], y = s_pop_scores[*(const uint32_t *) b];
    return x > y ? -1 : x < y ? 1 : (*(const uint32_t *) a > *(const uint32_t *) b) - (*(const uint32_t *) a < *(const uint32_t *) b);
}

#define SAMPLE_PAGES 4         // places in the broker's user list sampled
#define SAMPLE_PAGE_USERS 64
#define SAMPLE_EVENTS 200      // newest events kept per sampled user

static void
s_sample_free (sample_t *s)
{
    free (s->items);
    free (s->types);
    free (s->lens);
    memset (s, 0, sizeof *s);
}

//  Histories of up to SAMPLE_PAGES x SAMPLE_PAGE_USERS users from the broker, from
//  evenly spread places of its user list. Empty when the broker does not answer (the
//  index then falls back on item pairs).
static void
s_sample_fetch (rank_worker_t *self, sample_t *out)
{
    memset (out, 0, sizeof *out);
    size_t cap_users = SAMPLE_PAGES * SAMPLE_PAGE_USERS, cap = 4096, w = 0;
    out->lens = malloc (cap_users * sizeof *out->lens);
    out->items = malloc (cap * sizeof *out->items);
    out->types = malloc (cap);
    uint32_t total = 0;
    for (int page = 0; page < SAMPLE_PAGES && out->lens && out->items && out->types; page++) {
        Strata__V1__HistoryRequest req = STRATA__V1__HISTORY_REQUEST__INIT;
        req.start_user = page ? (uint32_t) ((uint64_t) total * (uint64_t) page / SAMPLE_PAGES) : 0;
        req.max_users = SAMPLE_PAGE_USERS;
        char err[256];
        Strata__V1__HistoryReply *r = (Strata__V1__HistoryReply *) client_request (
            self->cfg.broker_api, WIRE_HISTORY, &req.base, WIRE_HISTORY_REPLY, &strata__v1__history_reply__descriptor,
            2000, err, sizeof err);
        if (!r) {
            log_warn ("sample of users from %s: %s", self->cfg.broker_api, err);
            break;
        }
        total = page ? total : r->user_count;
        for (size_t i = 0; i < r->n_users && i < SAMPLE_PAGE_USERS && out->n < cap_users; i++) {
            Strata__V1__UserHistory *h = r->users[i];
            size_t first = h->n_events > SAMPLE_EVENTS ? h->n_events - SAMPLE_EVENTS : 0, len = 0;
            if (w + (h->n_events - first) > cap) {
                size_t nc = (w + (h->n_events - first)) * 2;
                uint32_t *ni = realloc (out->items, nc * sizeof *ni);
                uint8_t *nt = ni ? realloc (out->types, nc) : NULL;
                out->items = ni ? ni : out->items;
                out->types = nt ? nt : out->types;
                if (!ni || !nt)
                    break;
                cap = nc;
            }
            for (size_t k = first; k < h->n_events; k++)
                if (h->events[k]->item != UINT32_MAX) {
                    out->items[w + len] = h->events[k]->item;
                    out->types[w + len++] = (uint8_t) (h->events[k]->type < 256 ? h->events[k]->type : 0);
                }
            if (len) {
                out->lens[out->n++] = (uint32_t) len;
                w += len;
            }
        }
        bool done = r->done || total <= SAMPLE_PAGE_USERS;
        strata__v1__history_reply__free_unpacked (r, NULL);
        if (done)
            break;
    }
}

//  Whether a version about to be loaded may get the approximate index (and so needs
//  a sample of users): by configuration, or by the catalogue's size (unknown yet at
//  start).
static bool
s_wants_sample (rank_worker_t *self)
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
//  ivf-recall on the probe queries (s_probe_queries). 0, or -1 on no memory.
//  Saved with a version (INDEX_CHUNK): uint32 probe, float recall, float the
//  ivf-recall it was chosen for, then ivf_save's bytes.
#define SAVED_HEAD 12

//  The approximate index saved with the version, if it was built with as many cells
//  as asked: loaded (no k-means). Returns 0 (none to use), 1 (loaded, and its probe
//  count still right: the one configured, or the one chosen for the same ivf-recall)
//  or 2 (loaded, probe count to choose again).
static int
s_index_saved (rank_worker_t *self, served_t *s, const uint8_t *saved, size_t len)
{
    uint32_t probe;
    float recall, target;
    if (!saved || len < SAVED_HEAD)
        return 0;
    memcpy (&probe, saved, 4);
    memcpy (&recall, saved + 4, 4);
    memcpy (&target, saved + 8, 4);
    s->ivf = ivf_load (saved + SAVED_HEAD, len - SAVED_HEAD, s->vectors, s->info.items, s->info.dim);
    if (!s->ivf || (self->cfg.ivf_cells > 0 && ivf_cells (s->ivf) != (uint32_t) self->cfg.ivf_cells)
        || probe < 1 || probe > ivf_cells (s->ivf)) {
        ivf_destroy (&s->ivf);
        return 0;
    }
    bool same = self->cfg.ivf_probe > 0 ? probe == (uint32_t) self->cfg.ivf_probe : target == (float) self->cfg.ivf_recall;
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
s_index (rank_worker_t *self, served_t *s, const sample_t *sample, const uint8_t *saved, size_t saved_len)
{
    uint32_t n = s->info.items;
    int d = s->info.dim;
    const char *how = self->cfg.index ? self->cfg.index : "auto";
    s->table_base = 0;
    if (n == 0 || !strcmp (how, "exact") || (!strcmp (how, "auto") && n < (uint64_t) self->cfg.ivf_min_items)) {
        s->table = n ? score_table_new (s->vectors, n, d) : NULL;
        return n && !s->table ? -1 : 0;
    }
    s->table_base = n;   // the items added later are scanned apart from the index
    int64_t t0 = zclock_mono ();
    int had = s_index_saved (self, s, saved, saved_len);
    if (had == 1)
        return 0;
    if (!had) {
        ivf_params_t p;
        ivf_params_default (&p);
        p.cells = (uint32_t) self->cfg.ivf_cells;
        s->ivf = ivf_build (s->vectors, n, d, &p);
        if (!s->ivf)
            return -1;
    }
    uint32_t cells = ivf_cells (s->ivf), nq = 0;
    const char *kind = "";
    float *q = s_probe_queries (s, sample, 256, &nq, &kind);
    if (!q)
        return -1;
    double recall = -1;
    int32_t *exact = malloc ((size_t) nq * 10 * sizeof *exact);
    if (exact && ivf_exact_top (s->vectors, n, d, q, nq, 10, exact) == 0) {
        if (self->cfg.ivf_probe > 0) {
            s->probe = (uint32_t) self->cfg.ivf_probe < cells ? (uint32_t) self->cfg.ivf_probe : cells;
            recall = ivf_recall (s->ivf, q, nq, s->probe, 10, exact);
        }
        else
            for (s->probe = 1;; s->probe = s->probe * 2 < cells ? s->probe * 2 : cells) {
                recall = ivf_recall (s->ivf, q, nq, s->probe, 10, exact);
                if (recall < 0 || recall >= self->cfg.ivf_recall || s->probe == cells)
                    break;
            }
    }
    free (exact);
    free (q);
    if (recall < 0)
        return -1;
    s->ivf_cap = ivf_max_candidates (s->ivf, s->probe);
    s->ivf_recall = (float) recall;
    s->ivf_built = true;   // or its probe count chosen anew: kept either way
    log_info ("version %llu: approximate index, %u cells, %u probed (at most %u of %u items per query), recall@10 "
              "%.3f against exact on %u queries (%s); %s in %lld ms",
              (unsigned long long) s->info.version, cells, s->probe, s->ivf_cap, n, recall, nq, kind,
              had ? "probe count chosen" : "built", (long long) (zclock_mono () - t0));
    return 0;
}

static served_t *
s_served_load (rank_worker_t *self, const uint8_t *blob, size_t len, const sample_t *sample, const uint8_t *saved,
               size_t saved_len)
{
    served_t *s = calloc (1, sizeof *s);
    if (!s)
        return NULL;
    char err[256];
    s->m = snapshot_load (blob, len, (int) self->cfg.batch, &s->info, err, sizeof err);
    if (!s->m) {
        log_error ("cannot load a model snapshot: %s", err);
        free (s);
        return NULL;
    }
    s->vectors = model_row_weights (s->m, NULL);
    s->rows = s->info.items;
    uint32_t n = s->info.items;
    s->popular = malloc ((n ? n : 1) * sizeof *s->popular);
    if (!s->popular) {
        s_served_free (&s);
        return NULL;
    }
    for (uint32_t i = 0; i < n; i++)
        s->popular[i] = i;
    s_pop_scores = s->info.popularity;
    qsort (s->popular, n, sizeof *s->popular, s_pop_cmp);
    s->n_popular = n < POPULAR_KEPT ? n : POPULAR_KEPT;
    if (s_index (self, s, sample, saved, saved_len) < 0) {
        s_served_free (&s);
        return NULL;
    }
    return s;
}

static void
s_swap (rank_worker_t *self, served_t *next)
{
    uint64_t was = self->cur ? self->cur->info.version : 0;
    s_extend (self, next);
    s_catalogue_trim (&self->cat, next->info.items);
    search_index_set_learned (self->index, next->info.terms);
    s_served_free (&self->cur);
    self->cur = next;
    user_cache_clear (self->ucache, next->info.dim);   // vectors of the previous version
    log_info ("serving model version %llu (%u items; was %llu)", (unsigned long long) next->info.version,
              next->info.items, (unsigned long long) was);
}

// ---------------------------------------------------------------- the worker's store

static size_t
s_key (char *key, uint64_t version, uint32_t chunk)
{
    util_put_be64 ((unsigned char *) key, version);
    util_put_be32 ((unsigned char *) key + 8, chunk);
    return 12;
}

static int
s_store_version (rank_worker_t *self, const download_t *d)
{
    rocksdb_writebatch_t *b = rocksdb_writebatch_create ();
    rocksdb_column_family_handle_t *cf = store_cf (self->store, CF_MODELS);
    char key[12];
    for (uint32_t c = 0; c < d->chunks; c++) {
        size_t off = (size_t) c * d->chunk_bytes, n = d->bytes - off < d->chunk_bytes ? d->bytes - off : d->chunk_bytes;
        s_key (key, d->version, c);
        rocksdb_writebatch_put_cf (b, cf, key, sizeof key, (const char *) d->blob + off, n);
    }
    char meta[160];
    int ml = snprintf (meta, sizeof meta, "{\"bytes\":%llu,\"chunks\":%u,\"chunk_bytes\":%u,\"fnv\":\"%016llx\"}",
                       (unsigned long long) d->bytes, d->chunks, d->chunk_bytes, (unsigned long long) d->fnv);
    s_key (key, d->version, META_CHUNK);
    rocksdb_writebatch_put_cf (b, cf, key, sizeof key, meta, (size_t) ml);
    uint64_t keep = (uint64_t) self->cfg.keep_versions;
    if (d->version > keep) {
        char from[12], to[12];
        s_key (from, 0, 0);
        s_key (to, d->version - keep + 1, 0);
        rocksdb_writebatch_delete_range_cf (b, cf, from, sizeof from, to, sizeof to);
    }
    int rc = store_write (self->store, b, true);
    rocksdb_writebatch_destroy (b);
    return rc < 0 ? -1 : 0;
}

//  Keeps an approximate index built for a version beside it, so that a restart reads
//  it back instead of building it again (dropped with the version).
static void
s_store_index (rank_worker_t *self, served_t *s)
{
    if (!s || !s->ivf || !s->ivf_built)
        return;
    size_t len;
    uint8_t *bytes = ivf_save (s->ivf, &len);
    uint8_t *v = bytes ? malloc (SAVED_HEAD + len) : NULL;
    if (v) {
        float target = (float) self->cfg.ivf_recall;
        memcpy (v, &s->probe, 4);
        memcpy (v + 4, &s->ivf_recall, 4);
        memcpy (v + 8, &target, 4);
        memcpy (v + SAVED_HEAD, bytes, len);
        char key[12];
        s_key (key, s->info.version, INDEX_CHUNK);
        if (store_put (self->store, CF_MODELS, key, sizeof key, (const char *) v, SAVED_HEAD + len) < 0)
            log_warn ("cannot keep the approximate index of version %llu", (unsigned long long) s->info.version);
    }
    free (bytes);
    free (v);
}

//  The newest complete version in the store, loaded; NULL when there is none.
static served_t *
s_load_stored (rank_worker_t *self)
{
    rocksdb_iterator_t *it = store_iter (self->store, CF_MODELS);
    uint64_t version = 0;
    for (rocksdb_iter_seek_to_last (it); rocksdb_iter_valid (it) && !version; rocksdb_iter_prev (it)) {
        size_t kl;
        const char *k = rocksdb_iter_key (it, &kl);
        if (kl == 12 && util_get_be32 ((const unsigned char *) k + 8) == META_CHUNK)
            version = util_get_be64 ((const unsigned char *) k);
    }
    rocksdb_iter_destroy (it);
    if (!version)
        return NULL;
    char key[12];
    size_t ml;
    int rc;
    s_key (key, version, META_CHUNK);
    char *meta = store_get (self->store, CF_MODELS, key, sizeof key, &ml, &rc);
    json_t *j = meta ? json_loadb (meta, ml, 0, NULL) : NULL;
    free (meta);
    uint64_t bytes = (uint64_t) json_integer_value (json_object_get (j, "bytes"));
    uint32_t chunks = (uint32_t) json_integer_value (json_object_get (j, "chunks"));
    const char *fnv_hex = json_string_value (json_object_get (j, "fnv"));
    uint64_t fnv = fnv_hex ? strtoull (fnv_hex, NULL, 16) : 0;
    json_decref (j);
    uint8_t *blob = bytes ? malloc (bytes) : NULL;
    size_t off = 0;
    for (uint32_t c = 0; blob && c < chunks; c++) {
        size_t n;
        s_key (key, version, c);
        char *v = store_get (self->store, CF_MODELS, key, sizeof key, &n, &rc);
        if (!v || off + n > bytes) {
            free (v);
            break;
        }
        memcpy (blob + off, v, n);
        off += n;
        free (v);
    }
    served_t *s = NULL;
    sample_t sample = { 0 };
    if (blob && off == bytes && util_fnv1a64 (blob, bytes) == fnv) {
        size_t saved_len = 0;
        s_key (key, version, INDEX_CHUNK);
        char *saved = store_get (self->store, CF_MODELS, key, sizeof key, &saved_len, &rc);
        if (!saved && s_wants_sample (self))
            s_sample_fetch (self, &sample);
        s = s_served_load (self, blob, bytes, &sample, (const uint8_t *) saved, saved_len);
        s_sample_free (&sample);
        free (saved);
        s_store_index (self, s);
    }
    else
        log_error ("stored model version %llu is damaged; waiting for the trainer", (unsigned long long) version);
    free (blob);
    return s;
}

// ---------------------------------------------------------------- catalogue

static uint32_t
s_level_hash (const char *s)
{
    char buf[256];
    size_t n = 0;
    for (; *s && n + 1 < sizeof buf; s++)
        buf[n++] = (char) tolower ((unsigned char) *s);
    return util_fnv1a32 (buf, n);
}

//  Keeps item i's feature hashes (i >= fh_base: the next item, or one known whose
//  record was written again).
static int
s_catalogue_hashes (catalogue_t *c, uint32_t i, const Strata__V1__Item *it)
{
    uint64_t h[2 * FEATURES_PER_ITEM];
    int n = features_hashes (it, h, 2 * FEATURES_PER_ITEM);
    n = n < UINT8_MAX ? n : UINT8_MAX;
    size_t k = i - c->fh_base;
    if (k >= c->cap_fh_items) {
        size_t cap = (k + 1) * 2;
        uint32_t *at = realloc (c->fh_at, cap * sizeof *at);
        if (at)
            c->fh_at = at;
        uint8_t *nn = at ? realloc (c->fh_n, cap * sizeof *nn) : NULL;
        if (!nn)
            return -1;
        c->fh_n = nn;
        c->cap_fh_items = cap;
    }
    if (c->n_fh + (size_t) n > c->cap_fh) {
        size_t cap = (c->n_fh + (size_t) n) * 2;
        uint64_t *fh = realloc (c->fh, cap * sizeof *fh);
        if (!fh)
            return -1;
        c->fh = fh;
        c->cap_fh = cap;
    }
    memcpy (c->fh + c->n_fh, h, (size_t) n * sizeof *h);
    c->fh_at[k] = (uint32_t) c->n_fh;
    c->fh_n[k] = (uint8_t) n;
    c->n_fh += (size_t) n;
    return 0;
}

//  Forgets the feature hashes of items below base (a version knows them now), and those
//  of records written again since. Left as it was when memory runs out.
static void
s_catalogue_trim (catalogue_t *c, uint32_t base)
{
    if (base <= c->fh_base)
        return;
    uint32_t have = c->n > c->fh_base ? c->n - c->fh_base : 0;
    uint32_t drop = base - c->fh_base < have ? base - c->fh_base : have;
    size_t live = 0;
    for (uint32_t k = drop; k < have; k++)
        live += c->fh_n[k];
    uint64_t *fh = malloc ((live ? live : 1) * sizeof *fh);
    if (!fh)
        return;
    size_t w = 0;
    for (uint32_t k = drop; k < have; k++) {
        memcpy (fh + w, c->fh + c->fh_at[k], c->fh_n[k] * sizeof *fh);
        c->fh_at[k - drop] = (uint32_t) w;
        c->fh_n[k - drop] = c->fh_n[k];
        w += c->fh_n[k];
    }
    free (c->fh);
    c->fh = fh;
    c->n_fh = c->cap_fh = live;
    c->fh_base = base;
}

//  Sets item i's title, price and categories from its record.
static int
s_catalogue_describe (catalogue_t *c, uint32_t i, const Strata__V1__Item *it)
{
    if (c->n_cat + it->n_category > c->cap_cat) {
        size_t cap = (c->cap_cat ? c->cap_cat * 2 : 4096) + it->n_category;
        uint32_t *cat = realloc (c->cat, cap * sizeof *cat);
        if (!cat)
            return -1;
        c->cat = cat;
        c->cap_cat = cap;
    }
    char *title = it->title && *it->title ? strdup (it->title) : NULL;
    if (it->title && *it->title && !title)
        return -1;
    free (c->titles[i]);
    c->titles[i] = title;
    c->price[i] = it->has_price ? (float) it->price : NAN;
    size_t levels = it->n_category < UINT16_MAX ? it->n_category : UINT16_MAX;
    c->cat_at[i] = (uint32_t) c->n_cat;
    c->cat_n[i] = (uint16_t) levels;
    for (size_t k = 0; k < levels; k++)
        c->cat[c->n_cat++] = s_level_hash (it->category[k]);
    return 0;
}

static int
s_catalogue_add (catalogue_t *c, const Strata__V1__Item *it)
{
    uint32_t i = it->item_index;
    if (i != c->n)
        return 0;   // pages come in order; anything else is a repeat
    if (c->n == c->cap) {
        uint32_t cap = c->cap ? c->cap * 2 : 1024;
        char **ids = realloc (c->ids, cap * sizeof *ids);
        char **titles = ids ? realloc (c->titles, cap * sizeof *titles) : NULL;
        float *price = titles ? realloc (c->price, cap * sizeof *price) : NULL;
        uint32_t *at = price ? realloc (c->cat_at, cap * sizeof *at) : NULL;
        uint16_t *nc = at ? realloc (c->cat_n, cap * sizeof *nc) : NULL;
        if (ids)
            c->ids = ids;
        if (titles)
            c->titles = titles;
        if (price)
            c->price = price;
        if (at)
            c->cat_at = at;
        if (nc)
            c->cat_n = nc;
        if (!nc)
            return -1;
        c->cap = cap;
    }
    c->ids[i] = strdup (it->item_id ? it->item_id : "");
    c->titles[i] = NULL;
    if (!c->ids[i] || s_catalogue_describe (c, i, it) < 0) {
        free (c->ids[i]);
        return -1;
    }
    if (i >= c->fh_base && s_catalogue_hashes (c, i, it) < 0)
        return -1;
    zhashx_insert (c->index, c->ids[i], (void *) (uintptr_t) (i + 1));
    c->n++;
    return 0;
}

//  A socket for catalogue requests to the broker's api endpoint, or NULL (logged).
static zsock_t *
s_broker_socket (const char *endpoint)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    if (!sock)
        return NULL;
    zsock_set_linger (sock, 0);
    zsock_set_maxmsgsize (sock, 256 << 20);
    if (zsock_connect (sock, "%s", endpoint) < 0) {
        log_error ("cannot connect to the broker at %s", endpoint);
        zsock_destroy (&sock);
    }
    return sock;
}

//  One catalogue request to the broker: a page from start_item, or (changes) the
//  records written after change `after`. NULL (logged) when the broker does not answer.
static Strata__V1__CatalogueReply *
s_catalogue_request (rank_worker_t *self, uint32_t start_item, bool changes, uint64_t after)
{
    Strata__V1__CatalogueRequest req = STRATA__V1__CATALOGUE_REQUEST__INIT;
    req.start_item = start_item;
    req.max_items = CATALOGUE_PAGE;
    req.changes = changes;
    req.after_change = after;
    char err[256];
    Strata__V1__CatalogueReply *r = (Strata__V1__CatalogueReply *) client_request (
        self->cfg.broker_api, WIRE_CATALOGUE, &req.base, WIRE_CATALOGUE_REPLY, &strata__v1__catalogue_reply__descriptor,
        5000, err, sizeof err);
    if (!r)
        log_warn ("catalogue from %s: %s", self->cfg.broker_api, err);
    return r;
}

//  Adds a page's items past those known. Returns whether the pages are done.
static bool
s_catalogue_page (rank_worker_t *self, const Strata__V1__CatalogueReply *r)
{
    catalogue_t *c = &self->cat;
    if (!c->change_known) {
        //  Every record written up to this change is in the pages (as it stands).
        c->change = r->last_change;
        c->change_known = true;
    }
    for (size_t i = 0; i < r->n_items; i++) {
        uint32_t before = c->n;
        if (s_catalogue_add (c, r->items[i]) < 0)
            log_error ("out of memory for the catalogue");
        else if (c->n > before && search_index_add (self->index, before, r->items[i]) < 0)
            log_error ("out of memory for the search index");
    }
    return r->done || r->n_items == 0;
}

//  Item i's vector (an item the version does not know, i >= fh_base) from its features:
//  the mean of their rows in the version's feature table.
static void
s_feature_vector (rank_worker_t *self, served_t *s, uint32_t i)
{
    catalogue_t *c = &self->cat;
    int d = s->info.dim;
    float *v = model_row_weights (s->m, NULL) + (size_t) i * d;   // s->vectors, writable
    memset (v, 0, (size_t) d * sizeof *v);
    uint32_t k = i - c->fh_base, rows[FEATURES_PER_ITEM];
    int m = features_rows_of (c->fh + c->fh_at[k], c->fh_n[k], s->info.feature_rows, rows);
    for (int j = 0; j < m; j++)
        nn_axpy (d, 1.0f / (float) m, s->info.features + (size_t) rows[j] * d, v);
    if (s->table && i >= s->table_base)
        score_table_set (s->table, i - s->table_base, v);   // packed already (s_extend): scanned as it is now
    user_cache_clear (self->ucache, d);   // a history with item i has a new vector
}

//  The records in r of items already known replace theirs here and in the search
//  index (and, for items the served version does not know, their feature vectors);
//  *known says how many there were. 0, or -1 when memory ran out.
static int
s_catalogue_replace (rank_worker_t *self, const Strata__V1__CatalogueReply *r, uint32_t *known)
{
    const Strata__V1__Item *items[CATALOGUE_PAGE];
    uint32_t at[CATALOGUE_PAGE], n = 0;
    for (size_t i = 0; i < r->n_items && n < CATALOGUE_PAGE; i++)
        if (r->items[i]->item_index < self->cat.n) {
            items[n] = r->items[i];
            at[n++] = r->items[i]->item_index;
        }
    int rc = 0;
    served_t *s = self->cur;
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        rc = s_catalogue_describe (&self->cat, at[i], items[i]);
        if (rc == 0 && at[i] >= self->cat.fh_base) {
            //  An item the version does not know: its vector follows its features.
            rc = s_catalogue_hashes (&self->cat, at[i], items[i]);
            if (rc == 0 && s && s->info.features && at[i] < s->rows && s->rows >= self->cat.fh_base)
                s_feature_vector (self, s, at[i]);
        }
    }
    if (rc == 0 && n)
        rc = search_index_update (self->index, n, at, items);
    if (rc < 0) {
        log_error ("out of memory applying catalogue records; trying again later");
        return -1;
    }
    self->sync_updated += n;
    *known = n;
    return 0;
}

//  Applies a reply of changes: the records of known items written since the last
//  change applied (a new price, title or category) replace theirs; items past the
//  catalogue come with the next pages, as they stand then. Returns 1 when no more
//  changes wait, 0 when more do, -1 when the reply is not a list of changes (a broker
//  without a change log answers with a page) or memory ran out (the changes are asked
//  for again by the next refresh).
static int
s_catalogue_changes (rank_worker_t *self, const Strata__V1__CatalogueReply *r)
{
    uint32_t known;
    if ((r->n_items && r->last_change <= self->cat.change) || s_catalogue_replace (self, r, &known) < 0)
        return -1;
    self->cat.change = r->last_change;
    return r->done || r->n_items == 0 ? 1 : 0;
}

//  Applies a page read again (SYNC_RELOAD): its known items' records replace theirs,
//  the others are added. Every record written up to the first page's change is in the
//  pages, as it stands. Returns whether the pages are done, or -1 when memory ran out.
static int
s_catalogue_reload_page (rank_worker_t *self, const Strata__V1__CatalogueReply *r)
{
    if (self->reload_at == 0)
        self->cat.change = r->last_change;
    uint32_t known;
    if (s_catalogue_replace (self, r, &known) < 0)
        return -1;
    Strata__V1__CatalogueReply rest = *r;
    rest.n_items = r->n_items - known;
    rest.items = r->items + known;   // pages are in item order: the known items come first
    rest.done = false;
    s_catalogue_page (self, &rest);
    self->reload_at = r->next_item;
    return r->done || r->n_items == 0;
}

//  The whole catalogue at start-up, waiting for each reply: pages, then the changes
//  written meanwhile.
static void
s_catalogue_load (rank_worker_t *self)
{
    for (int pages = 0; pages < 100000; pages++) {
        Strata__V1__CatalogueReply *r = s_catalogue_request (self, self->cat.n, false, 0);
        if (!r)
            return;
        bool done = s_catalogue_page (self, r);
        strata__v1__catalogue_reply__free_unpacked (r, NULL);
        if (done)
            break;
    }
    for (int pages = 0; self->cat.change_known && pages < 100000; pages++) {
        Strata__V1__CatalogueReply *r = s_catalogue_request (self, 0, true, self->cat.change);
        if (!r)
            return;
        self->reload_due = r->changes_lost;   // trimmed since the pages: the first refresh reads them again
        int rc = r->changes_lost ? 1 : s_catalogue_changes (self, r);
        strata__v1__catalogue_reply__free_unpacked (r, NULL);
        if (rc != 0)
            break;
    }
}

//  Sends the request for where the refresh stands (sync: pages or changes).
static void
s_sync_send (rank_worker_t *self, sync_t sync)
{
    Strata__V1__CatalogueRequest req = STRATA__V1__CATALOGUE_REQUEST__INIT;
    req.max_items = CATALOGUE_PAGE;
    if (sync == SYNC_PAGES)
        req.start_item = self->cat.n;
    else if (sync == SYNC_RELOAD)
        req.start_item = self->reload_at;
    else {
        req.changes = true;
        req.after_change = self->cat.change;
    }
    self->sync = sync;
    self->sync_sent = zclock_mono ();
    if (wire_send (self->broker, NULL, WIRE_CATALOGUE, &req.base) < 0)
        self->sync_sent = 0;   // refused: the timeout starts the refresh again
}

static void s_extend (rank_worker_t *self, served_t *s);

//  Ends a refresh (the next one after catalogue-ms).
static void
s_sync_end (rank_worker_t *self)
{
    if (self->sync_updated)
        log_info ("catalogue: %llu records updated (up to change %llu)", (unsigned long long) self->sync_updated,
                  (unsigned long long) self->cat.change);
    self->sync_updated = 0;
    self->sync = SYNC_IDLE;
    s_extend (self, self->cur);
    self->next_catalogue = zclock_mono () + self->cfg.catalogue_ms;
}

//  A reply from the broker's api endpoint: applied, and the next request sent.
static void
s_sync_reply (rank_worker_t *self, wire_msg_t *msg)
{
    Strata__V1__CatalogueReply *r = NULL;
    if (strcmp (msg->type, WIRE_CATALOGUE_REPLY)
        || !(r = (Strata__V1__CatalogueReply *) wire_unpack (&strata__v1__catalogue_reply__descriptor, msg->payload,
                                                             NULL))) {
        log_warn ("catalogue from %s: unexpected reply '%s'", self->cfg.broker_api, msg->type);
        s_sync_end (self);
        return;
    }
    if (self->sync == SYNC_PAGES) {
        if (!s_catalogue_page (self, r))
            s_sync_send (self, SYNC_PAGES);
        else if (self->cat.change_known)
            s_sync_send (self, SYNC_CHANGES);
        else
            s_sync_end (self);
    }
    else if (self->sync == SYNC_CHANGES && r->changes_lost) {
        log_warn ("catalogue: changes after %llu are no longer in the broker's log; reading every page again",
                  (unsigned long long) self->cat.change);
        self->reload_at = 0;
        s_sync_send (self, SYNC_RELOAD);
    }
    else if (self->sync == SYNC_CHANGES) {
        if (s_catalogue_changes (self, r) == 0)
            s_sync_send (self, SYNC_CHANGES);
        else
            s_sync_end (self);
    }
    else if (self->sync == SYNC_RELOAD) {
        int rc = s_catalogue_reload_page (self, r);
        if (rc == 0)
            s_sync_send (self, SYNC_RELOAD);
        else if (rc == 1)
            s_sync_send (self, SYNC_CHANGES);
        else {
            self->reload_due = true;   // out of memory: again next time
            s_sync_end (self);
        }
    }
    strata__v1__catalogue_reply__free_unpacked (r, NULL);
}

//  Starts a refresh when one is due; gives up on a request the broker has not answered
//  in time (a new socket: its answer, if it comes, is not taken for a later one's).
static void
s_sync_tick (rank_worker_t *self, int64_t now)
{
    if (self->sync == SYNC_IDLE && now >= self->next_catalogue) {
        self->reload_at = 0;
        s_sync_send (self, self->reload_due ? SYNC_RELOAD : SYNC_PAGES);
        self->reload_due = false;
    }
    else if (self->sync != SYNC_IDLE && now - self->sync_sent > CATALOGUE_TIMEOUT_MS) {
        log_warn ("catalogue from %s: no answer in %d ms; trying again later", self->cfg.broker_api,
                  CATALOGUE_TIMEOUT_MS);
        zsock_t *fresh = s_broker_socket (self->cfg.broker_api);
        if (fresh) {
            zsock_destroy (&self->broker);
            self->broker = fresh;
        }
        s_sync_end (self);
    }
}

//  Items the catalogue has beyond the served rows get vectors from their features (the
//  mean of their rows in the version's feature table, as the item tower composes an
//  item nobody has touched), so that they are recommended, found similar and read in
//  histories before a version knows them. Without a feature table they wait for one.
static void
s_extend (rank_worker_t *self, served_t *s)
{
    catalogue_t *c = &self->cat;
    if (!s || !s->info.features || c->n <= s->rows || s->rows < c->fh_base)
        return;
    uint32_t from = s->rows, to = c->n;
    if (model_resize_rows (s->m, to) < 0) {
        log_error ("no memory for %u new items' vectors", to - from);
        return;
    }
    s->vectors = model_row_weights (s->m, NULL);
    for (uint32_t i = from; i < to; i++)
        s_feature_vector (self, s, i);
    s->rows = to;
    //  They are scanned packed, after the version's own items in exact retrieval's table,
    //  or in a table of their own beside the approximate index; without room they are
    //  scored exactly, at the cost of a matrix product per request.
    if (!s->table && s->ivf)
        s->table = score_table_new (s->vectors, 0, s->info.dim);
    if (s->table && score_table_append (s->table, s->vectors + (size_t) s->table_base * s->info.dim,
                                        to - s->table_base) < 0)
        log_warn ("no memory to pack %u new items' vectors; scoring them exactly", to - from);
    log_info ("items added since model version %llu: %u, with vectors from their features",
              (unsigned long long) s->info.version, to - s->info.items);
}

static int
s_item_index (rank_worker_t *self, const char *id, uint32_t *index)
{
    void *v = id ? zhashx_lookup (self->cat.index, id) : NULL;
    if (!v)
        return -1;
    *index = (uint32_t) ((uintptr_t) v - 1);
    return 0;
}

// ---------------------------------------------------------------- loading versions

static void
s_download_reset (download_t *d)
{
    free (d->blob);
    free (d->have);
    free (d->meta);
    memset (d, 0, sizeof *d);
}

static void *
s_loader_run (void *arg)
{
    rank_worker_t *self = arg;
    loader_t *l = &self->loader;
    if (s_store_version (self, &l->dl) < 0)
        log_error ("cannot store model version %llu (serving it anyway)", (unsigned long long) l->dl.version);
    l->result = s_served_load (self, l->dl.blob, l->dl.bytes, &l->sample, NULL, 0);
    s_store_index (self, l->result);
    s_download_reset (&l->dl);
    s_sample_free (&l->sample);
    atomic_store (&l->done, true);
    return NULL;
}

//  Swaps in what the loader has finished, if anything; with wait, waits for it first.
static void
s_loader_poll (rank_worker_t *self, bool wait)
{
    loader_t *l = &self->loader;
    if (!l->busy || (!wait && !atomic_load (&l->done)))
        return;
    if (!pthread_equal (l->thread, pthread_self ()))
        pthread_join (l->thread, NULL);
    l->busy = false;
    if (l->result)
        s_swap (self, l->result);
    l->result = NULL;
}

// ---------------------------------------------------------------- lifecycle

rank_worker_t *
rank_worker_new (const rank_config_t *cfg)
{
    rank_worker_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = *cfg;
    if (self->cfg.index && strcmp (self->cfg.index, "exact") && strcmp (self->cfg.index, "ivf")
        && strcmp (self->cfg.index, "auto")) {
        log_error ("index '%s': expected exact, ivf or auto", self->cfg.index);
        free (self);
        return NULL;
    }
    if (self->cfg.ivf_recall <= 0)
        self->cfg.ivf_recall = 0.97;
    if (self->cfg.ivf_min_items < 1)
        self->cfg.ivf_min_items = 200000;
    if (self->cfg.batch < 1)
        self->cfg.batch = 32;
    if (self->cfg.keep_versions < 1)
        self->cfg.keep_versions = 2;
    self->cat.index = zhashx_new ();
    search_params_t sp;
    search_params_default (&sp);
    sp.queries_weight = (float) cfg->search_learned;
    self->index = search_index_new (&sp);
    self->ucache = user_cache_new ((uint32_t) (self->cfg.user_cache > 0 ? self->cfg.user_cache : 0), 0);
    self->top = malloc ((size_t) (self->cfg.rerank_top > MAX_K ? self->cfg.rerank_top : MAX_K) * sizeof *self->top);
    self->logits = malloc ((size_t) (self->cfg.rerank_top > MAX_K ? self->cfg.rerank_top : MAX_K) * sizeof (float));
    self->store = store_open (cfg->dir, s_cfs, CF_COUNT);
    self->trainer = zsock_new (ZMQ_DEALER);
    self->broker = s_broker_socket (cfg->broker_api);
    if (!self->cat.index || !self->index || !self->ucache || !self->top || !self->logits || !self->store
        || !self->trainer || !self->broker) {
        log_error ("cannot start the rank worker (store %s)", cfg->dir);
        rank_worker_destroy (&self);
        return NULL;
    }
    zsock_set_linger (self->trainer, 0);
    zsock_set_maxmsgsize (self->trainer, 64 << 20);
    if (zsock_connect (self->trainer, "%s", cfg->trainer_api) < 0) {
        log_error ("cannot connect to the trainer at %s", cfg->trainer_api);
        rank_worker_destroy (&self);
        return NULL;
    }
    served_t *s = s_load_stored (self);
    if (s)
        s_swap (self, s);
    s_catalogue_load (self);
    s_extend (self, self->cur);
    self->next_catalogue = zclock_mono () + self->cfg.catalogue_ms;
    log_info ("catalogue: %u items", self->cat.n);
    return self;
}

void
rank_worker_destroy (rank_worker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rank_worker_t *self = *self_p;
    if (self->ucache) {
        uint64_t hits, misses;
        user_cache_counts (self->ucache, &hits, &misses);
        if (hits + misses)
            log_info ("user vectors: %llu from the cache, %llu from the user tower", (unsigned long long) hits,
                      (unsigned long long) misses);
    }
    s_loader_poll (self, true);
    s_served_free (&self->cur);
    s_download_reset (&self->dl);
    for (uint32_t i = 0; i < self->cat.n; i++) {
        free (self->cat.ids[i]);
        free (self->cat.titles[i]);
    }
    free (self->cat.ids);
    free (self->cat.titles);
    free (self->cat.price);
    free (self->cat.cat_at);
    free (self->cat.cat_n);
    free (self->cat.cat);
    free (self->cat.fh);
    free (self->cat.fh_at);
    free (self->cat.fh_n);
    zhashx_destroy (&self->cat.index);
    search_index_destroy (&self->index);
    user_cache_destroy (&self->ucache);
    zsock_destroy (&self->trainer);
    zsock_destroy (&self->broker);
    store_destroy (&self->store);
    scratch_t *scr[] = { &self->scores,      &self->uvec,       &self->uvec_group,  &self->s_items,
                         &self->s_text,      &self->s_drop,     &self->s_seen,      &self->failed,
                         &self->cand_items,  &self->cand_scores, &self->cand_drop,  &self->exact,
                         &self->sel,         &self->sel_scores, &self->refine_items, &self->refine_scores };
    for (size_t i = 0; i < sizeof scr / sizeof scr[0]; i++)
        free (scr[i]->p);
    free (self->mark);
    free (self->top);
    free (self->logits);
    free (self);
    *self_p = NULL;
}

static void s_model_input (rank_worker_t *self);

void
rank_worker_poll_items (rank_worker_t *self, zmq_pollitem_t *items)
{
    items[0] = (zmq_pollitem_t) { zsock_resolve (self->trainer), 0, ZMQ_POLLIN, 0 };
    items[1] = (zmq_pollitem_t) { zsock_resolve (self->broker), 0, ZMQ_POLLIN, 0 };
}

void
rank_worker_input (rank_worker_t *self, const zmq_pollitem_t *items)
{
    if (items[0].revents & ZMQ_POLLIN)
        s_model_input (self);
    for (int i = 0; i < 64 && (items[1].revents & ZMQ_POLLIN); i++) {
        wire_msg_t msg;
        int rc = wire_recv_ready (self->broker, false, 0, &msg);
        if (rc == STRATA_EAGAIN || rc == STRATA_EINTR)
            break;
        if (rc < 0)
            log_warn ("bad message from the broker (%d)", rc);
        else if (self->sync != SYNC_IDLE)
            s_sync_reply (self, &msg);
        wire_msg_reset (&msg);
    }
}

uint64_t
rank_worker_version (rank_worker_t *self)
{
    return self->cur ? self->cur->info.version : 0;
}

// ---------------------------------------------------------------- fetching versions

static void
s_request_chunk (rank_worker_t *self, uint32_t index)
{
    Strata__V1__ModelChunkRequest req = STRATA__V1__MODEL_CHUNK_REQUEST__INIT;
    req.version = self->dl.version;
    req.index = index;
    wire_send (self->trainer, NULL, WIRE_MODEL_CHUNK, &req.base);
}

static void
s_on_info (rank_worker_t *self, const Strata__V1__ModelInfo *info)
{
    if (!info->version || info->version <= rank_worker_version (self) || self->dl.version || self->loader.busy)
        return;
    if (!info->bytes || !info->chunk_bytes || info->chunks != (info->bytes + info->chunk_bytes - 1) / info->chunk_bytes) {
        log_warn ("model version %llu: inconsistent info; ignored", (unsigned long long) info->version);
        return;
    }
    download_t *d = &self->dl;
    d->blob = malloc (info->bytes);
    d->have = calloc (info->chunks, 1);
    if (!d->blob || !d->have) {
        log_error ("no memory to fetch model version %llu (%llu bytes)", (unsigned long long) info->version,
                   (unsigned long long) info->bytes);
        s_download_reset (d);
        return;
    }
    d->version = info->version;
    d->bytes = info->bytes;
    d->chunks = info->chunks;
    d->chunk_bytes = info->chunk_bytes;
    d->fnv = info->fnv;
    d->last_reply = zclock_mono ();
    log_info ("fetching model version %llu: %llu bytes in %u chunks", (unsigned long long) d->version,
              (unsigned long long) d->bytes, d->chunks);
    for (d->next = 0; d->next < d->chunks && d->next < WINDOW; d->next++)
        s_request_chunk (self, d->next);
}

static void
s_on_chunk (rank_worker_t *self, const Strata__V1__ModelChunk *c)
{
    download_t *d = &self->dl;
    if (!d->version || c->version != d->version || c->index >= d->chunks || d->have[c->index])
        return;   // a late answer for something we no longer want
    size_t off = (size_t) c->index * d->chunk_bytes;
    size_t want = d->bytes - off < d->chunk_bytes ? d->bytes - off : d->chunk_bytes;
    if (c->data.len != want || util_fnv1a64 (c->data.data, c->data.len) != c->fnv) {
        log_warn ("model version %llu chunk %u is damaged; asking again", (unsigned long long) d->version, c->index);
        s_request_chunk (self, c->index);
        return;
    }
    memcpy (d->blob + off, c->data.data, want);
    d->have[c->index] = 1;
    d->received++;
    d->last_reply = zclock_mono ();
    if (d->next < d->chunks)
        s_request_chunk (self, d->next++);
    if (d->received < d->chunks)
        return;
    if (util_fnv1a64 (d->blob, d->bytes) != d->fnv) {
        log_error ("model version %llu does not match its hash; dropped", (unsigned long long) d->version);
        s_download_reset (d);
        return;
    }
    //  Stored and loaded (its index built) on a thread of its own: serving goes on.
    loader_t *l = &self->loader;
    l->dl = *d;
    memset (d, 0, sizeof *d);
    if (s_wants_sample (self))
        s_sample_fetch (self, &l->sample);
    l->result = NULL;
    atomic_store (&l->done, false);
    l->busy = true;
    if (pthread_create (&l->thread, NULL, s_loader_run, self) != 0) {
        s_loader_run (self);   // no thread to be had: here, then
        l->thread = pthread_self ();
    }
}

static void
s_model_input (rank_worker_t *self)
{
    for (int i = 0; i < 64; i++) {
        wire_msg_t msg;
        int rc = wire_recv_ready (self->trainer, false, 64 << 20, &msg);
        if (rc == STRATA_EINTR || rc == STRATA_EAGAIN)
            return;
        if (rc < 0) {
            log_warn ("bad message from the trainer (%d)", rc);
            wire_msg_reset (&msg);
            continue;
        }
        if (!strcmp (msg.type, WIRE_MODEL_INFO_REPLY)) {
            Strata__V1__ModelInfo *info = (Strata__V1__ModelInfo *) wire_unpack (&strata__v1__model_info__descriptor,
                                                                                 msg.payload, NULL);
            if (info) {
                s_on_info (self, info);
                strata__v1__model_info__free_unpacked (info, NULL);
            }
        }
        else if (!strcmp (msg.type, WIRE_MODEL_CHUNK_REPLY)) {
            Strata__V1__ModelChunk *c = (Strata__V1__ModelChunk *) wire_unpack (&strata__v1__model_chunk__descriptor,
                                                                                msg.payload, NULL);
            if (c) {
                s_on_chunk (self, c);
                strata__v1__model_chunk__free_unpacked (c, NULL);
            }
        }
        else if (!strcmp (msg.type, WIRE_ERROR)) {
            Strata__V1__Error *e = (Strata__V1__Error *) wire_unpack (&strata__v1__error__descriptor, msg.payload, NULL);
            if (e && e->code == STRATA__V1__ERROR_CODE__NOT_FOUND && self->dl.version) {
                log_info ("model version %llu is gone from the trainer; starting over",
                          (unsigned long long) self->dl.version);
                s_download_reset (&self->dl);
            }
            else
                log_warn ("trainer: %s", e ? e->message : "(undecodable error)");
            if (e)
                strata__v1__error__free_unpacked (e, NULL);
        }
        wire_msg_reset (&msg);
    }
}

void
rank_worker_tick (rank_worker_t *self)
{
    s_loader_poll (self, false);
    int64_t now = zclock_mono ();
    download_t *d = &self->dl;
    if (d->version && now - d->last_reply > CHUNK_TIMEOUT_MS) {
        //  The trainer went quiet mid-download (restarted?): ask again for what is missing.
        log_warn ("model version %llu: no chunk for %d ms; asking again", (unsigned long long) d->version,
                  CHUNK_TIMEOUT_MS);
        d->last_reply = now;
        int asked = 0;
        for (uint32_t c = 0; c < d->next && asked < WINDOW; c++)
            if (!d->have[c]) {
                s_request_chunk (self, c);
                asked++;
            }
    }
    if (now >= self->next_poll) {
        if (!d->version) {
            Strata__V1__ModelInfoRequest req = STRATA__V1__MODEL_INFO_REQUEST__INIT;
            wire_send (self->trainer, NULL, WIRE_MODEL_INFO, &req.base);
        }
        self->next_poll = now + self->cfg.poll_ms;
    }
    s_sync_tick (self, now);
}

// ---------------------------------------------------------------- serving

//  A request being answered.
typedef struct {
    uint64_t job_id;
    bool similar;                 // SIMILAR
    bool search;                  // SEARCH (neither: RECOMMEND)
    const char *query;
    bool text_only;               // SEARCH: text relevance alone
    uint32_t *only;               // SEARCH: rank only these items (NULL: all)
    uint32_t n_only;
    const char *request_id;
    uint32_t k;
    const Strata__V1__Filters *filters;
    uint32_t *hist;               // model rows, oldest first (RECOMMEND)
    uint8_t *hist_types;
    uint32_t n_hist;
    uint32_t *seen;               // items to leave out (history as the filters say, exclusions)
    uint32_t n_seen;
    int32_t item;                 // SIMILAR: the item's row
    const char *error;            // set: answer with an Error
    Strata__V1__ErrorCode code;
    int slot;                     // RECOMMEND with history: index in the vector batch
} req_t;

static bool
s_passes (rank_worker_t *self, const Strata__V1__Filters *f, uint32_t item, uint32_t cat_hash)
{
    if (!f)
        return true;
    if (item >= self->cat.n)
        return !(f->category && *f->category) && !f->has_min_price && !f->has_max_price;
    if (f->category && *f->category) {
        bool found = false;
        for (uint32_t j = self->cat.cat_at[item]; j < self->cat.cat_at[item] + self->cat.cat_n[item] && !found; j++)
            found = self->cat.cat[j] == cat_hash;
        if (!found)
            return false;
    }
    float p = self->cat.price[item];
    if ((f->has_min_price || f->has_max_price) && isnan (p))
        return false;
    if (f->has_min_price && p < f->min_price)
        return false;
    if (f->has_max_price && p > f->max_price)
        return false;
    return true;
}

//  The best `want` items of scores (n items) that pass the request's filters and are
//  not marked, into top; returns how many.
static int
s_select (rank_worker_t *self, const req_t *r, const float *scores, uint32_t n, int want)
{
    const Strata__V1__Filters *f = r->filters;
    bool plain = !f || (!(f->category && *f->category) && !f->has_min_price && !f->has_max_price);
    if (plain)
        return nn_top_k (scores, (int) n, -1, self->mark, self->top, want);
    uint32_t h = f->category && *f->category ? s_level_hash (f->category) : 0;
    //  Filters out of the selection's way: mark what fails them, select, unmark.
    uint32_t *failed = s_scratch (&self->failed, (size_t) n * sizeof *failed);
    uint32_t nf = 0;
    for (uint32_t i = 0; failed && i < n; i++)
        if (!self->mark[i] && !s_passes (self, f, i, h)) {
            self->mark[i] = 1;
            failed[nf++] = i;
        }
    int got = nn_top_k (scores, (int) n, -1, self->mark, self->top, want);
    for (uint32_t i = 0; i < nf; i++)
        self->mark[failed[i]] = 0;
    return got;
}

//  Every row's score for nq queries (nq x dim) into scores (nq x rows): the packed
//  table's scan for the rows it holds (within its bound of exact: s_refine finishes
//  the job), the others exactly (an approximate index's items, when a query falls back
//  to exact search, and new items that found no room in the table).
static void
s_exact_scores (served_t *s, const float *q, uint32_t nq, float *scores)
{
    int d = s->info.dim;
    uint32_t base = s->table_base, packed = s->table ? score_table_size (s->table) : 0, rest = base + packed;
    if (base)
        nn_matmul_nt_ld (q, d, (int) nq, d, s->vectors, d, (int) base, scores, (int) s->rows);
    if (packed)
        score_table_run (s->table, q, nq, scores + base, s->rows);
    if (rest < s->rows)
        nn_matmul_nt_ld (q, d, (int) nq, d, s->vectors + (size_t) rest * d, d, (int) (s->rows - rest), scores + rest,
                         (int) s->rows);
}

//  The largest difference between a candidate's score and its exact inner product with
//  q: the approximate index's and the packed table's, whichever is used (-1: exact).
static float
s_bound (const served_t *s, const float *q)
{
    float b = s->ivf ? ivf_bound (s->ivf, q) : -1, t = s->table ? score_table_bound (s->table, q) : -1;
    return b > t ? b : t;
}

//  The approximate index's candidates for nq queries (nq x dim), scored within
//  ivf_bound of exact, and every row the index does not cover (items added since it
//  was built), scanned in their own table (the rest, without room there, exactly):
//  query k's are (*items, *scores) + k * *stride, counts[k] of them. 0, or -1 on no
//  memory.
static int
s_ivf_candidates (rank_worker_t *self, served_t *s, const float *q, uint32_t nq, uint32_t **items, float **scores,
                  uint32_t *counts, uint32_t *stride)
{
    int d = s->info.dim;
    uint32_t indexed = ivf_size (s->ivf), tail = s->rows > indexed ? s->rows - indexed : 0;
    *stride = s->ivf_cap + tail;
    *items = s_scratch (&self->cand_items, (size_t) nq * *stride * sizeof **items);
    *scores = s_scratch (&self->cand_scores, (size_t) nq * *stride * sizeof **scores);
    if (!*items || !*scores || ivf_search (s->ivf, q, nq, s->probe, *items, *scores, *stride, counts) < 0)
        return -1;
    uint32_t packed = s->table ? score_table_size (s->table) : 0;
    packed = packed < tail ? packed : tail;
    for (uint32_t k = 0; tail && k < nq; k++) {
        uint32_t *it = *items + (size_t) k * *stride + counts[k];
        float *sc = *scores + (size_t) k * *stride + counts[k];
        if (packed)
            score_table_run (s->table, q + (size_t) k * d, 1, sc, packed);
        if (packed < tail)
            nn_matvec (s->vectors + (size_t) (indexed + packed) * d, (int) (tail - packed), d, q + (size_t) k * d,
                       sc + packed);
        for (uint32_t j = 0; j < tail; j++)
            it[j] = indexed + j;
        counts[k] += tail;
    }
    return 0;
}

//  Retrieval results for one query: the whole catalogue's scores (items NULL: item i
//  scored scores[i]) or m candidates of the approximate index.
typedef struct {
    const uint32_t *items;
    const float *scores;
    uint32_t m;
} cands_t;

//  Retrieval's last step. scanned holds n candidates' scores, candidate i being item
//  ids[i] (ids NULL: item i), each within bound of its exact inner product with vec
//  (bound < 0: exact already), and self->top the best `got` eligible candidates by
//  scanned score (`want` asked). When got == want, their lowest scanned score less
//  twice the bound is a bar every item of the exact best `want` clears; the eligible
//  candidates that clear it (all of them when fewer than want are eligible) are
//  scored exactly, and the best `want` of them go to sel / sel_scores. Returns how
//  many.
static int
s_refine (rank_worker_t *self, const req_t *r, const float *scanned, const uint32_t *ids, uint32_t n, float bound,
          const float *vec, int want, int got, uint32_t *sel, float *sel_scores)
{
    served_t *s = self->cur;
    int d = s->info.dim;
    uint32_t m = 0, cap = (uint32_t) got;
    uint32_t *at;   // candidates, as indices into scanned
    if (got < want || bound < 0) {
        //  Every eligible item is among them (or the scores were exact already).
        at = s_scratch (&self->refine_items, (size_t) (got ? got : 1) * sizeof *at);
        for (int i = 0; at && i < got; i++)
            at[m++] = (uint32_t) self->top[i];
    }
    else {
        float bar = scanned[self->top[got - 1]] - 2 * bound;
        const Strata__V1__Filters *f = r->filters;
        uint32_t h = f && f->category && *f->category ? s_level_hash (f->category) : 0;
        //  The candidates that clear the bar (few), then those of them that are eligible.
        at = s_scratch (&self->refine_items, ((size_t) n + 1) * sizeof *at);
        uint32_t k = at ? nn_at_least (scanned, n, bar, at) : 0;
        for (uint32_t j = 0; j < k; j++) {
            uint32_t item = ids ? ids[at[j]] : at[j];
            if (!self->mark[item] && s_passes (self, f, item, h))
                at[m++] = at[j];
        }
        cap = m;
    }
    float *exact = s_scratch (&self->refine_scores, (size_t) (cap ? cap : 1) * sizeof *exact);
    if (!at || !exact)
        return 0;
    for (uint32_t i = 0; i < m; i++)
        exact[i] = nn_dot (vec, s->vectors + (size_t) (ids ? ids[at[i]] : at[i]) * d, d);
    got = nn_top_k (exact, (int) m, -1, NULL, self->top, want);
    for (int i = 0; i < got; i++) {
        uint32_t j = at[self->top[i]];
        sel[i] = ids ? ids[j] : j;
        sel_scores[i] = exact[self->top[i]];
    }
    return got;
}

//  The best `want` of the candidates that pass the filters and are not marked, best
//  first, into sel / sel_scores; returns how many. Candidates are the whole catalogue's
//  scan (items NULL) or an approximate index's list, refined to exact scores against
//  vec, the query vector; the list gives way to exact search for this query when it
//  leaves fewer than want (tight filters, many exclusions).
static int
s_pick (rank_worker_t *self, const req_t *r, const cands_t *c, const float *vec, int want, uint32_t *sel,
        float *sel_scores)
{
    served_t *s = self->cur;
    int got;
    if (c->items) {
        uint8_t *drop = s_scratch (&self->cand_drop, c->m ? c->m : 1);
        if (!drop)
            return 0;
        const Strata__V1__Filters *f = r->filters;
        uint32_t h = f && f->category && *f->category ? s_level_hash (f->category) : 0;
        for (uint32_t i = 0; i < c->m; i++)
            drop[i] = self->mark[c->items[i]] || !s_passes (self, f, c->items[i], h);
        got = nn_top_k (c->scores, (int) c->m, -1, drop, self->top, want);
        if (got == want)
            return s_refine (self, r, c->scores, c->items, c->m, s_bound (s, vec), vec, want, got, sel, sel_scores);
        float *all = s_scratch (&self->exact, (size_t) s->rows * sizeof *all);
        if (!all)
            return 0;
        s_exact_scores (s, vec, 1, all);
        cands_t exact = { NULL, all, s->rows };
        return s_pick (self, r, &exact, vec, want, sel, sel_scores);
    }
    got = s_select (self, r, c->scores, c->m, want);
    float bound = s->table ? score_table_bound (s->table, vec) : -1;   // the rest is exact
    return got ? s_refine (self, r, c->scores, NULL, c->m, bound, vec, want, got, sel, sel_scores) : 0;
}

static void
s_mark (rank_worker_t *self, const req_t *r, uint8_t v)
{
    uint32_t n = self->cur ? self->cur->rows : 0;
    for (uint32_t i = 0; i < r->n_seen; i++)
        if (r->seen[i] < n)
            self->mark[r->seen[i]] = v;
    if (r->item >= 0 && (uint32_t) r->item < n)
        self->mark[r->item] = v;
}

//  Keeps a job's result (taking its reply buffer) to send with the batch's. A reply
//  that could not be packed for want of memory is left out: the broker tries the job
//  on another worker when this one's slot times out.
static void
s_result_add (rank_worker_t *self, const Strata__V1__ServeResult *res)
{
    if (!res->reply.data && res->reply.len)
        return;
    self->results[self->n_results] = *res;
    self->result_ptrs[self->n_results] = &self->results[self->n_results];
    self->n_results++;
    self->served_jobs++;
}

static void
s_reply (rank_worker_t *self, const req_t *r, const uint32_t *items, const float *scores, int n, const char *source)
{
    Strata__V1__ServeResult res = STRATA__V1__SERVE_RESULT__INIT;
    res.job_id = r->job_id;
    uint8_t *buf = NULL;
    if (r->error) {
        Strata__V1__Error e = STRATA__V1__ERROR__INIT;
        e.code = r->code;
        e.message = (char *) r->error;
        e.ref = (char *) (r->request_id ? r->request_id : "");
        res.type = WIRE_ERROR;
        res.reply.len = strata__v1__error__get_packed_size (&e);
        buf = malloc (res.reply.len ? res.reply.len : 1);
        if (buf)
            strata__v1__error__pack (&e, buf);
    }
    else {
        Strata__V1__Recommendations out = STRATA__V1__RECOMMENDATIONS__INIT;
        Strata__V1__ScoredItem *si = calloc ((size_t) (n ? n : 1), sizeof *si);
        Strata__V1__ScoredItem **sp = calloc ((size_t) (n ? n : 1), sizeof *sp);
        for (int i = 0; si && sp && i < n; i++) {
            strata__v1__scored_item__init (&si[i]);
            si[i].item = items[i] < self->cat.n ? self->cat.ids[items[i]] : "";
            si[i].title = items[i] < self->cat.n && self->cat.titles[items[i]] ? self->cat.titles[items[i]] : "";
            si[i].score = scores[i];
            sp[i] = &si[i];
        }
        out.request_id = (char *) (r->request_id ? r->request_id : "");
        out.model_version = rank_worker_version (self);
        out.n_items = si && sp ? (size_t) n : 0;
        out.items = sp;
        out.source = (char *) source;
        out.worker = (char *) (self->cfg.id ? self->cfg.id : "");
        res.type = r->similar ? WIRE_SIMILAR_REPLY : r->search ? WIRE_SEARCH_REPLY : WIRE_RECOMMEND_REPLY;
        res.reply.len = strata__v1__recommendations__get_packed_size (&out);
        buf = malloc (res.reply.len ? res.reply.len : 1);
        if (buf)
            strata__v1__recommendations__pack (&out, buf);
        free (si);
        free (sp);
    }
    res.reply.data = buf;
    s_result_add (self, &res);
}

//  Sorts items by score, best first (insertion: n is small).
static void
s_sort (uint32_t *items, float *scores, int n)
{
    for (int i = 1; i < n; i++) {
        uint32_t it = items[i];
        float sc = scores[i];
        int j = i;
        while (j > 0 && scores[j - 1] < sc) {
            items[j] = items[j - 1];
            scores[j] = scores[j - 1];
            j--;
        }
        items[j] = it;
        scores[j] = sc;
    }
}

//  Answers a RECOMMEND: from its retrieval candidates (its user vector vec, row `slot`
//  of the last batch), or from popularity when slot < 0.
static void
s_recommend (rank_worker_t *self, req_t *r, const cands_t *c, const float *vec)
{
    served_t *s = self->cur;
    s_mark (self, r, 1);
    uint32_t items[MAX_K];
    float out[MAX_K];
    int got;
    const char *source;
    if (r->slot < 0) {
        //  No usable history: the most popular items that pass the filters.
        got = 0;
        const Strata__V1__Filters *f = r->filters;
        uint32_t h = f && f->category && *f->category ? s_level_hash (f->category) : 0;
        for (uint32_t i = 0; i < s->n_popular && got < (int) r->k; i++) {
            uint32_t it = s->popular[i];
            if (self->mark[it] || !s_passes (self, f, it, h))
                continue;
            items[got] = it;
            out[got++] = s->info.popularity[it];
        }
        source = "popular";
    }
    else {
        int want = (int) ((uint32_t) self->cfg.rerank_top > r->k ? (uint32_t) self->cfg.rerank_top : r->k);
        uint32_t *sel = s_scratch (&self->sel, (size_t) want * sizeof *sel);
        float *retrieval = s_scratch (&self->sel_scores, (size_t) want * sizeof *retrieval);
        got = sel && retrieval ? s_pick (self, r, c, vec, want, sel, retrieval) : 0;
        if (self->cfg.rerank_top > 0 && model_has_ranker (s->m) && got > 0
            && model_rank_candidates (s->m, (uint32_t) r->slot, sel, (uint32_t) got, self->logits) == 0) {
            for (int i = 0; i < got; i++)
                self->logits[i] += (float) self->cfg.rerank_blend * retrieval[i];
            s_sort (sel, self->logits, got);
            memcpy (retrieval, self->logits, (size_t) got * sizeof *retrieval);
        }
        got = got < (int) r->k ? got : (int) r->k;
        if (got > 0) {
            memcpy (items, sel, (size_t) got * sizeof *items);
            memcpy (out, retrieval, (size_t) got * sizeof *out);
        }
        source = s->ivf ? "model-ivf" : "model";
    }
    s_mark (self, r, 0);
    s_reply (self, r, items, out, got, source);
}

static void
s_similar (rank_worker_t *self, req_t *r)
{
    served_t *s = self->cur;
    uint32_t n = s->rows;
    int d = s->info.dim;
    const float *vec = s->vectors + (size_t) r->item * d;
    cands_t c = { NULL, NULL, n };
    uint32_t counts, stride;
    uint32_t *ci;
    float *cs;
    if (s->ivf && s_ivf_candidates (self, s, vec, 1, &ci, &cs, &counts, &stride) == 0)
        c = (cands_t) { ci, cs, counts };
    if (!c.items) {
        float *scores = s_scratch (&self->scores, (size_t) n * sizeof *scores);
        if (scores)
            s_exact_scores (s, vec, 1, scores);
        c.scores = scores;
    }
    if (!c.scores) {
        r->error = "out of memory";
        r->code = STRATA__V1__ERROR_CODE__INTERNAL;
        s_reply (self, r, NULL, NULL, 0, "");
        return;
    }
    s_mark (self, r, 1);
    uint32_t items[MAX_K];
    float out[MAX_K];
    int got = s_pick (self, r, &c, vec, (int) r->k, items, out);
    s_mark (self, r, 0);
    s_reply (self, r, items, out, got, s->ivf ? "item-ivf" : "item");
}

//  Re-ranks the best of m text candidates (in text order) with the version's learned
//  search ranker: their scores become the ranker's, scaled to [0, 1] among them; any
//  candidates past SEARCH_RANK_CANDIDATES stay below, in text order.
static void
s_search_rerank (rank_worker_t *self, const char *query, uint32_t *items, float *scores, int m)
{
    served_t *s = self->cur;
    int n = m < SEARCH_RANK_CANDIDATES ? m : SEARCH_RANK_CANDIDATES;
    float f[SEARCH_RANK_CANDIDATES * SEARCH_FEATURES], z[SEARCH_RANK_CANDIDATES];
    search_index_features (self->index, query, items, scores, (uint32_t) n, s->info.conversions,
                           s->info.conversions ? s->info.items : 0, f);
    search_ranker_score (s->info.ranker, f, (uint32_t) n, z);
    float lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        lo = z[i] < lo ? z[i] : lo;
        hi = z[i] > hi ? z[i] : hi;
    }
    for (int i = 0; i < n; i++)
        scores[i] = hi > lo ? (z[i] - lo) / (hi - lo) : 1;
    for (int i = n; i < m; i++)
        scores[i] -= 1;   // text scores are in [0, 1]: below every re-ranked one
}

//  Text matches (BM25F, with the learned "queries" field unless text_only), scaled by
//  the best; the best SEARCH_POOL that pass the filters are re-ranked by the version's
//  learned search ranker (unless text_only), then blended, when the request names a
//  user with a history, with that user's retrieval score (scaled to [0, 1] among
//  them).
static void
s_search (rank_worker_t *self, req_t *r)
{
    served_t *s = self->cur;
    uint32_t n = self->cat.n;
    uint32_t *items = s_scratch (&self->s_items, (size_t) n * sizeof *items);
    float *text = s_scratch (&self->s_text, (size_t) n * sizeof *text);
    uint8_t *drop = s_scratch (&self->s_drop, n);
    if (!items || !text || !drop) {
        r->error = "out of memory";
        r->code = STRATA__V1__ERROR_CODE__INTERNAL;
        s_reply (self, r, NULL, NULL, 0, "");
        return;
    }
    uint32_t found = search_index_query (self->index, r->query, r->only, r->n_only, r->text_only, items, text, n);
    if (r->only) {
        //  Re-ranking a given set: every candidate comes back, those that match no term
        //  of the query after those that do, in the order given.
        uint8_t *seen = s_scratch_zeroed (&self->s_seen, n);
        if (!seen) {
            r->error = "out of memory";
            r->code = STRATA__V1__ERROR_CODE__INTERNAL;
            s_reply (self, r, NULL, NULL, 0, "");
            return;
        }
        for (uint32_t i = 0; i < found; i++)
            seen[items[i]] = 1;
        for (uint32_t i = 0; i < r->n_only && found < n; i++)
            if (r->only[i] < n && !seen[r->only[i]]) {
                seen[r->only[i]] = 1;
                items[found] = r->only[i];
                text[found++] = 0;
            }
        for (uint32_t i = 0; i < found; i++)
            seen[items[i]] = 0;
    }
    uint32_t n_model = s ? s->rows : 0;
    const char *source = !r->text_only && s && s->info.terms && s->info.terms->n ? "text+learned" : "text";
    float tmax = 0;
    for (uint32_t i = 0; i < found; i++)
        tmax = text[i] > tmax ? text[i] : tmax;
    const Strata__V1__Filters *f = r->filters;
    uint32_t h = f && f->category && *f->category ? s_level_hash (f->category) : 0;
    for (uint32_t i = 0; i < found; i++) {
        bool excluded = false;
        for (uint32_t j = 0; j < r->n_seen && !excluded; j++)
            excluded = r->seen[j] == items[i];
        drop[i] = excluded || !s_passes (self, f, items[i], h);
        text[i] = tmax > 0 ? text[i] / tmax : 0;
    }
    int want = (int) (r->k > SEARCH_POOL ? r->k : SEARCH_POOL);
    int got = nn_top_k (text, (int) found, -1, drop, self->top, want);
    uint32_t out_items[MAX_K > 4096 ? MAX_K : 4096];
    float out[MAX_K > 4096 ? MAX_K : 4096];
    int m = got < (int) (sizeof out / sizeof out[0]) ? got : (int) (sizeof out / sizeof out[0]);
    for (int i = 0; i < m; i++) {
        out_items[i] = items[self->top[i]];
        out[i] = text[self->top[i]];
    }
    if (s && s->info.has_ranker && !r->text_only && m > 1) {
        s_search_rerank (self, r->query, out_items, out, m);
        source = strcmp (source, "text") ? "text+learned+ranker" : "text+ranker";
    }
    float *uvec = s && r->n_hist && !r->text_only ? s_scratch (&self->uvec, (size_t) s->info.dim * sizeof *uvec) : NULL;
    if (uvec && model_user_vectors (s->m, r->hist, r->hist_types, &r->n_hist, 1, uvec) == 0 && m > 1) {
        //  The user's retrieval score of each candidate, scaled to [0, 1] among them.
        float lo = INFINITY, hi = -INFINITY;
        for (int i = 0; i < m; i++) {
            float d = out_items[i] < n_model
                          ? nn_dot (uvec, s->vectors + (size_t) out_items[i] * s->info.dim, s->info.dim)
                          : NAN;
            self->logits[i] = d;
            if (!isnan (d)) {
                lo = d < lo ? d : lo;
                hi = d > hi ? d : hi;
            }
        }
        for (int i = 0; i < m && hi > lo; i++)
            out[i] += (float) self->cfg.search_blend * (isnan (self->logits[i]) ? 0 : (self->logits[i] - lo) / (hi - lo));
        source = !strcmp (source, "text")           ? "text+model"
               : !strcmp (source, "text+learned") ? "text+learned+model"
               : !strcmp (source, "text+ranker")  ? "text+ranker+model"
                                                  : "text+learned+ranker+model";
    }
    s_sort (out_items, out, m);
    s_reply (self, r, out_items, out, m < (int) r->k ? m : (int) r->k, source);
}

//  Decodes a job into r (allocations in the arena-free way: owned by the unpacked
//  messages and freed by the caller).
static void
s_parse (rank_worker_t *self, const Strata__V1__ServeJob *job, req_t *r, void **inner)
{
    memset (r, 0, sizeof *r);
    r->job_id = job->job_id;
    r->similar = job->type && !strcmp (job->type, WIRE_SIMILAR);
    r->search = job->type && !strcmp (job->type, WIRE_SEARCH);
    r->item = -1;
    r->slot = -1;
    r->code = STRATA__V1__ERROR_CODE__INVALID;
    uint32_t n_model = self->cur ? self->cur->rows : 0;
    if (!self->cur && !r->search) {
        //  (Search works from the catalogue alone; it learns once a version arrives.)
        r->error = "no model version loaded yet (is the trainer up and has it published?)";
        r->code = STRATA__V1__ERROR_CODE__UNAVAILABLE;
        return;
    }
    const Strata__V1__Filters *f = NULL;
    size_t n_exclude = 0;
    char **exclude = NULL;
    if (r->similar) {
        Strata__V1__Similar *q = strata__v1__similar__unpack (NULL, job->request.len, job->request.data);
        *inner = q;
        if (!q) {
            r->error = "SIMILAR needs a Similar";
            r->code = STRATA__V1__ERROR_CODE__BAD_PAYLOAD;
            return;
        }
        r->request_id = q->request_id;
        r->k = q->k;
        f = q->filters;
        uint32_t idx;
        if (s_item_index (self, q->item, &idx) < 0) {
            r->error = "unknown item";
            r->code = STRATA__V1__ERROR_CODE__NOT_FOUND;
            return;
        }
        if (idx >= n_model) {
            r->error = "the item is newer than the model version being served";
            r->code = STRATA__V1__ERROR_CODE__NOT_FOUND;
            return;
        }
        r->item = (int32_t) idx;
    }
    else if (r->search) {
        Strata__V1__Search *q = strata__v1__search__unpack (NULL, job->request.len, job->request.data);
        *inner = q;
        if (!q) {
            r->error = "SEARCH needs a Search";
            r->code = STRATA__V1__ERROR_CODE__BAD_PAYLOAD;
            return;
        }
        r->request_id = q->request_id;
        r->k = q->k;
        f = q->filters;
        r->query = q->query;
        r->text_only = q->text_only;
        if (!q->query || !*q->query) {
            r->error = "empty query";
            return;
        }
        if (q->n_candidates) {
            r->only = malloc (q->n_candidates * sizeof *r->only);
            if (!r->only) {
                r->error = "out of memory";
                r->code = STRATA__V1__ERROR_CODE__INTERNAL;
                return;
            }
            for (size_t i = 0; i < q->n_candidates; i++) {
                uint32_t idx;
                if (s_item_index (self, q->candidates[i], &idx) == 0)
                    r->only[r->n_only++] = idx;
            }
            if (r->n_only == 0) {
                r->error = "none of the candidates is a known item";
                r->code = STRATA__V1__ERROR_CODE__NOT_FOUND;
                return;
            }
        }
        r->hist = malloc ((job->n_history ? job->n_history : 1) * sizeof *r->hist);
        r->hist_types = malloc (job->n_history ? job->n_history : 1);
        for (size_t i = 0; r->hist && r->hist_types && i < job->n_history; i++)
            if (job->history[i]->item < n_model) {
                r->hist[r->n_hist] = job->history[i]->item;
                r->hist_types[r->n_hist++] = (uint8_t) (job->history[i]->type < MODEL_EVENT_TYPES ? job->history[i]->type : 0);
            }
    }
    else {
        Strata__V1__Recommend *q = strata__v1__recommend__unpack (NULL, job->request.len, job->request.data);
        *inner = q;
        if (!q) {
            r->error = "RECOMMEND needs a Recommend";
            r->code = STRATA__V1__ERROR_CODE__BAD_PAYLOAD;
            return;
        }
        r->request_id = q->request_id;
        r->k = q->k;
        f = q->filters;
        size_t cap = job->n_history + q->n_recent;
        r->hist = malloc ((cap ? cap : 1) * sizeof *r->hist);
        r->hist_types = malloc (cap ? cap : 1);
        if (!r->hist || !r->hist_types) {
            r->error = "out of memory";
            r->code = STRATA__V1__ERROR_CODE__INTERNAL;
            return;
        }
        for (size_t i = 0; i < job->n_history; i++)
            if (job->history[i]->item < n_model) {
                r->hist[r->n_hist] = job->history[i]->item;
                r->hist_types[r->n_hist++] = (uint8_t) (job->history[i]->type < MODEL_EVENT_TYPES ? job->history[i]->type : 0);
            }
        for (size_t i = 0; i < q->n_recent; i++) {
            uint32_t idx;
            if (s_item_index (self, q->recent[i]->item, &idx) == 0 && idx < n_model) {
                r->hist[r->n_hist] = idx;
                r->hist_types[r->n_hist++] = (uint8_t) (q->recent[i]->type < MODEL_EVENT_TYPES ? q->recent[i]->type : 0);
            }
        }
    }
    if (r->k == 0)
        r->k = 10;
    if (r->k > MAX_K) {
        r->error = "k is over 1000";
        return;
    }
    if (f && f->has_min_price && f->has_max_price && f->min_price > f->max_price) {
        r->error = "min_price is above max_price";
        return;
    }
    r->filters = f;
    if (f) {
        n_exclude = f->n_exclude;
        exclude = f->exclude;
    }
    //  What to leave out: the history (purchases, or all of it), and the exclusions.
    size_t cap = r->n_hist + n_exclude;
    r->seen = malloc ((cap ? cap : 1) * sizeof *r->seen);
    if (!r->seen) {
        r->error = "out of memory";
        r->code = STRATA__V1__ERROR_CODE__INTERNAL;
        return;
    }
    bool all = f && f->exclude_all_seen, none = (f && f->include_purchased && !all) || r->search;
    for (uint32_t i = 0; i < r->n_hist && (all || !r->search); i++)
        if (all || (!none && r->hist_types[i] == STRATA__V1__EVENT_TYPE__PURCHASE))
            r->seen[r->n_seen++] = r->hist[i];
    for (size_t i = 0; i < n_exclude; i++) {
        uint32_t idx;
        if (s_item_index (self, exclude[i], &idx) == 0)
            r->seen[r->n_seen++] = idx;
    }
}

//  The user vectors of nb RECOMMENDs (reqs[idx[b]], each with a history) into uvec's
//  rows: a history seen since the version came, from the cache; the others through
//  the user tower, shortest first, in groups that waste at most half their rows on
//  padding (a batch is as long as its longest history). With the ranking head on, all
//  of them go through the tower in one batch, in order: the head reads the tower's
//  state by row. 0, or -1 when memory ran out.
static int
s_user_vectors (rank_worker_t *self, served_t *s, req_t *reqs, const size_t *idx, size_t nb, float *uvec)
{
    int d = s->info.dim;
    bool head = self->cfg.rerank_top > 0 && model_has_ranker (s->m);
    uint64_t keys[256];
    size_t miss[256], nm = 0;
    for (size_t b = 0; b < nb; b++) {
        const req_t *r = &reqs[idx[b]];
        keys[b] = user_cache_key (r->hist, r->hist_types, r->n_hist);
        if (head || !user_cache_get (self->ucache, keys[b], uvec + b * (size_t) d))
            miss[nm++] = b;
    }
    for (size_t i = 1; !head && i < nm; i++)
        for (size_t j = i; j > 0 && reqs[idx[miss[j - 1]]].n_hist > reqs[idx[miss[j]]].n_hist; j--) {
            size_t t = miss[j];
            miss[j] = miss[j - 1];
            miss[j - 1] = t;
        }
    int rc = 0;
    for (size_t g0 = 0, g1; rc == 0 && g0 < nm; g0 = g1) {
        //  The group grows while its rows (members x the longest history, the newest
        //  member's) stay within twice its events.
        size_t events = reqs[idx[miss[g0]]].n_hist;
        for (g1 = g0 + 1; g1 < nm; g1++) {
            size_t len = reqs[idx[miss[g1]]].n_hist;
            if (!head && (g1 - g0 + 1) * len > 2 * (events + len))
                break;
            events += len;
        }
        uint32_t lens[256];
        uint32_t *all = malloc (events * sizeof *all);
        uint8_t *types = malloc (events);
        float *out = s_scratch (&self->uvec_group, (g1 - g0) * (size_t) d * sizeof *out);
        size_t w = 0;
        for (size_t m = g0; all && types && m < g1; m++) {
            const req_t *r = &reqs[idx[miss[m]]];
            lens[m - g0] = r->n_hist;
            memcpy (all + w, r->hist, r->n_hist * sizeof *all);
            memcpy (types + w, r->hist_types, r->n_hist);
            w += r->n_hist;
        }
        if (!all || !types || !out || model_user_vectors (s->m, all, types, lens, (uint32_t) (g1 - g0), out) < 0)
            rc = -1;
        for (size_t m = g0; rc == 0 && m < g1; m++) {
            memcpy (uvec + miss[m] * (size_t) d, out + (m - g0) * (size_t) d, (size_t) d * sizeof *out);
            user_cache_put (self->ucache, keys[miss[m]], out + (m - g0) * (size_t) d);
        }
        free (all);
        free (types);
    }
    return rc;
}

void
rank_worker_serve (rank_worker_t *self, const ProtobufCBinaryData *jobs, size_t n, uint32_t messages,
                   zsock_t *sock)
{
    req_t *reqs = calloc (n ? n : 1, sizeof *reqs);
    void **inner = calloc (n ? n : 1, sizeof *inner);
    Strata__V1__ServeJob **outer = calloc (n ? n : 1, sizeof *outer);
    self->results = calloc (n ? n : 1, sizeof *self->results);
    self->result_ptrs = calloc (n ? n : 1, sizeof *self->result_ptrs);
    self->n_results = 0;
    if (!reqs || !inner || !outer || !self->results || !self->result_ptrs) {
        free (reqs);
        free (inner);
        free (outer);
        free (self->results);
        free (self->result_ptrs);
        self->results = NULL;
        self->result_ptrs = NULL;
        log_error ("out of memory for %zu jobs; they are lost (their clients time out)", n);
        Strata__V1__ServeResults none = STRATA__V1__SERVE_RESULTS__INIT;
        none.messages = messages;   // the broker's count of what this worker holds stays right
        wire_send (sock, NULL, WIRE_SERVE_RESULTS, &none.base);
        return;
    }
    s_loader_poll (self, false);
    served_t *s = self->cur;
    uint32_t items = s ? s->rows : 0;
    if (self->mark_cap < items) {
        free (self->mark);
        self->mark = calloc (items, 1);
        self->mark_cap = self->mark ? items : 0;
    }
    for (size_t i = 0; i < n; i++) {
        outer[i] = strata__v1__serve_job__unpack (NULL, jobs[i].len, jobs[i].data);
        if (!outer[i]) {
            log_warn ("a SERVE_JOBS job does not decode; ignored");
            continue;
        }
        if (outer[i]->type && !strcmp (outer[i]->type, WIRE_PING)) {
            //  The request is echoed (the client matches it); its buffer is the job's,
            //  so the job is kept until the results are sent.
            Strata__V1__ServeResult res = STRATA__V1__SERVE_RESULT__INIT;
            res.job_id = outer[i]->job_id;
            res.type = WIRE_PING_REPLY;
            res.reply.len = outer[i]->request.len;
            res.reply.data = malloc (res.reply.len ? res.reply.len : 1);
            if (res.reply.data && res.reply.len)
                memcpy (res.reply.data, outer[i]->request.data, res.reply.len);
            s_result_add (self, &res);
            strata__v1__serve_job__free_unpacked (outer[i], NULL);
            outer[i] = NULL;
            continue;
        }
        s_parse (self, outer[i], &reqs[i], &inner[i]);
        if (!reqs[i].error && s && !self->mark) {
            reqs[i].error = "out of memory";
            reqs[i].code = STRATA__V1__ERROR_CODE__INTERNAL;
        }
    }
    //  RECOMMENDs with a history, a batch of users at a time: their vectors, then the
    //  whole catalogue scored in one matrix product.
    size_t B = (size_t) self->cfg.batch;
    size_t *pending = malloc ((n ? n : 1) * sizeof *pending);
    size_t np = 0;
    for (size_t i = 0; i < n; i++) {
        req_t *r = &reqs[i];
        if (!outer[i])
            continue;
        if (r->error)
            s_reply (self, r, NULL, NULL, 0, "");
        else if (r->similar)
            s_similar (self, r);
        else if (r->search)
            s_search (self, r);
        else if (r->n_hist == 0)
            s_recommend (self, r, NULL, NULL);
        else if (pending)
            pending[np++] = i;
    }
    if (s && np) {
        int d = s->info.dim;
        float *uvec = s_scratch (&self->uvec, B * (size_t) d * sizeof *uvec);
        float *scores = s->ivf ? NULL : s_scratch (&self->scores, B * items * sizeof *scores);
        uint32_t *ci = NULL, counts[256], stride = 0;
        for (size_t p0 = 0; p0 < np; p0 += B) {
            size_t nb = np - p0 < B ? np - p0 : B;
            int ok = (scores || s->ivf) && uvec && s_user_vectors (self, s, reqs, pending + p0, nb, uvec) == 0;
            //  Retrieval for the whole batch: one matrix product over the catalogue, or
            //  the approximate index's candidates.
            if (ok && s->ivf)
                ok = s_ivf_candidates (self, s, uvec, (uint32_t) nb, &ci, &scores, counts, &stride) == 0;
            else if (ok)
                s_exact_scores (s, uvec, (uint32_t) nb, scores);
            for (size_t b = 0; b < nb; b++) {
                req_t *r = &reqs[pending[p0 + b]];
                if (!ok) {
                    r->error = "out of memory";
                    r->code = STRATA__V1__ERROR_CODE__INTERNAL;
                    s_reply (self, r, NULL, NULL, 0, "");
                    continue;
                }
                r->slot = (int) b;
                cands_t c = s->ivf ? (cands_t) { ci + b * stride, scores + b * stride, counts[b] }
                                   : (cands_t) { NULL, scores + b * items, items };
                s_recommend (self, r, &c, uvec + b * (size_t) d);
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        free (reqs[i].hist);
        free (reqs[i].hist_types);
        free (reqs[i].seen);
        free (reqs[i].only);
        if (inner[i])
            protobuf_c_message_free_unpacked ((ProtobufCMessage *) inner[i], NULL);
        if (outer[i])
            strata__v1__serve_job__free_unpacked (outer[i], NULL);
    }
    free (pending);
    free (reqs);
    free (inner);
    free (outer);
    //  Every result of the batch in one message.
    Strata__V1__ServeResults out = STRATA__V1__SERVE_RESULTS__INIT;
    out.n_results = self->n_results;
    out.results = self->result_ptrs;
    out.messages = messages;
    if (self->n_results || messages)
        wire_send (sock, NULL, WIRE_SERVE_RESULTS, &out.base);
    for (size_t i = 0; i < self->n_results; i++)
        free (self->results[i].reply.data);
    free (self->results);
    free (self->result_ptrs);
    self->results = NULL;
    self->result_ptrs = NULL;
    self->n_results = 0;
}
