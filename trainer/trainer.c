/*  trainer: see trainer.h. */
#define LOG_MODULE "trainer"
#include "trainer.h"

#include <cblas.h>
#include <czmq.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "dataset.h"
#include "endpoints.h"
#include "evaluate.h"
#include "features_fetch.h"
#include "item_features.h"
#include "log.h"
#include "model.h"
#include "model_eval.h"
#include "plan.h"
#include "pool.h"
#include "request.h"
#include "search_rank.h"
#include "snapshot.h"
#include "agg.h"
#include "util.h"
#include "wire.h"

#define OFF(f) offsetof (trainer_config_t, f)
const config_key_t trainer_config_keys[] = {
    { "dir", CONFIG_STRING, OFF (dir), "strata-data", 0, -1, "data directory (the trainer's store is DIR/trainer)" },
    { "broker", CONFIG_STRING, OFF (broker), STRATA_DEFAULT_API, 0, -1, "broker api endpoint (training data)" },
    { "workers", CONFIG_STRING, OFF (workers), STRATA_DEFAULT_TRAINER_WORKERS, 0, -1, "endpoint train workers connect to" },
    { "api", CONFIG_STRING, OFF (api), STRATA_DEFAULT_TRAINER_API, 0, -1, "endpoint for train and status requests" },
    { "endpoints-file", CONFIG_STRING, OFF (endpoints_file), "", 0, -1, "write bound endpoints here as JSON" },
    { "mode", CONFIG_STRING, OFF (mode), "sync", 0, -1, "sync (deterministic) or async (bounded staleness)" },
    { "epochs", CONFIG_INT, OFF (epochs), "20", 1, 100000, "epochs of a full run" },
    { "shards", CONFIG_INT, OFF (hyper.shards), "2", 1, 256, "shards per step in sync mode" },
    { "staleness", CONFIG_INT, OFF (staleness), "4", 0, 1000, "async: most updates a gradient may lag behind" },
    { "validation-users", CONFIG_INT, OFF (validation_users), "1000", 0, 1 << 30,
      "users whose last event is held out to measure each epoch" },
    { "checkpoint-secs", CONFIG_INT, OFF (checkpoint_secs), "30", 1, 86400, "checkpoint at least this often" },
    { "keep-versions", CONFIG_INT, OFF (keep_versions), "3", 1, 1000, "published model versions kept" },
    { "popularity-half-life-days", CONFIG_DOUBLE, OFF (popularity_half_life_days), "7", 0, 36500,
      "half-life of an event's weight in the popularity that serves users without history (0: plain counts)" },
    { "continuous", CONFIG_BOOL, OFF (continuous), "true", 0, -1, "after a full run, keep training on new events" },
    { "retrain-events", CONFIG_INT, OFF (retrain_events), "1000", 1, 1LL << 40, "new events that trigger an update" },
    { "retrain-secs", CONFIG_INT, OFF (retrain_secs), "60", 1, 86400, "or any new event after this long" },
    { "incremental-epochs", CONFIG_INT, OFF (incremental_epochs), "2", 1, 1000,
      "passes over the users with new events per update" },
    { "poll-ms", CONFIG_INT, OFF (poll_ms), "2000", 50, 3600000, "how often to ask the broker for new events" },
    { "auto-train", CONFIG_BOOL, OFF (auto_train), "false", 0, -1, "start a full run once the store has events" },
    { "heartbeat-ms", CONFIG_INT, OFF (heartbeat_ms), "1000", 50, 60000, "heartbeat interval" },
    { "liveness", CONFIG_INT, OFF (liveness), "3", 2, 100, "missed heartbeats before a worker is dropped" },
    { "max-frame", CONFIG_INT, OFF (max_frame), "256M", 1024, 1LL << 31, "largest message accepted" },
    { "timeout-ms", CONFIG_INT, OFF (timeout_ms), "60000", 100, 3600000, "broker request timeout" },
    { "threads", CONFIG_INT, OFF (threads), "1", 0, 256, "OpenBLAS threads for evaluation (0: all cores)" },
    { "log-level", CONFIG_STRING, OFF (log_level), "info", 0, -1, "error, warn, info or debug" },
    HYPER_CONFIG_KEYS (trainer_config_t, hyper),
    CONFIG_END,
};

typedef enum { TASK_PENDING, TASK_SENT, TASK_DONE } task_state_t;

typedef struct {
    uint64_t task_id;      // 0 while pending
    uint32_t step;
    int shard;
    model_shard_t sh;
    task_state_t state;
    uint64_t version;      // parameter version exported with it
    Strata__V1__TrainGradient *grad;   // sync: arrived before an earlier shard's, kept until added
    int failures;
} task_t;

#define MAX_TASKS 256

typedef struct {
    const trainer_config_t *cfg;
    model_config_t mc;
    plan_config_t pc;
    store_t *store;
    zsock_t *workers, *api;
    pool_t *pool;
    bool fatal;
    //  Data.
    dataset_t *all, *train;
    features_t *features;      // the catalogue's, or NULL when it describes nothing
    uint32_t *val_targets;
    uint32_t val_users;
    uint64_t events;           // events in `all` (items only)
    uint64_t broker_events;    // the broker's count when `all` was fetched
    plan_t *plan;
    int plan_shards;
    //  Model.
    model_t *master;
    agg_t *agg;
    uint64_t param_version;    // updates applied
    uint64_t version;          // published model versions
    uint64_t updates;          // incremental versions since the full run
    uint64_t weights_fnv;      // hash of the weights when last published or loaded
    //  The run in progress.
    const char *state;
    bool running, incremental, resumed;
    Strata__V1__TrainMode mode;
    uint64_t run_id;
    uint32_t epoch, epochs, steps, next_step, steps_done, epoch_base;
    task_t tasks[MAX_TASKS];
    int n_tasks;
    int n_added;               // sync: shards of the step added so far (in shard order)
    uint64_t next_task_id;
    double epoch_loss;
    uint64_t epoch_pos;
    double last_loss;
    metrics_t last_val;
    uint64_t samples, redone, stale;
    double flops;
    double run_secs;           // time spent in this run's epochs
    int64_t seg_start;         // start of the current timed segment (0: none)
    int64_t last_ckpt, last_poll, last_update;
    step_tensors_t out;        // export scratch
    size_t out_rows, out_feats;
    //  Search: the learned ranker and the choice counts it reads (none without choices).
    search_ranker_t ranker;
    bool has_ranker;
    uint64_t ranker_fnv;       // hash of the choices it was fitted on
    float *conversions;
    uint32_t n_conversions;
    char message[320];
} trainer_t;

static const char *
s_mode_name (Strata__V1__TrainMode m)
{
    return m == STRATA__V1__TRAIN_MODE__ASYNC ? "async" : "sync";
}

// ---------------------------------------------------------------- tasks

static void
s_task_free (task_t *t)
{
    plan_shard_free (&t->sh);
    if (t->grad)
        strata__v1__train_gradient__free_unpacked (t->grad, NULL);
    memset (t, 0, sizeof *t);
}

static void
s_tasks_clear (trainer_t *self)
{
    for (int i = 0; i < self->n_tasks; i++)
        s_task_free (&self->tasks[i]);
    self->n_tasks = 0;
    self->n_added = 0;
}

static task_t *
s_task_find (trainer_t *self, uint64_t task_id)
{
    for (int i = 0; i < self->n_tasks; i++)
        if (self->tasks[i].task_id == task_id && task_id)
            return &self->tasks[i];
    return NULL;
}

static void
s_task_remove (trainer_t *self, task_t *t)
{
    s_task_free (t);
    int i = (int) (t - self->tasks);
    memmove (&self->tasks[i], &self->tasks[i + 1], (size_t) (self->n_tasks - i - 1) * sizeof *t);
    self->n_tasks--;
    memset (&self->tasks[self->n_tasks], 0, sizeof *t);
}

//  A worker left or went silent: its tasks are given again.
static void
s_requeue (uint64_t task_id, void *arg)
{
    trainer_t *self = arg;
    task_t *t = s_task_find (self, task_id);
    if (t && t->state == TASK_SENT) {
        t->state = TASK_PENDING;
        t->task_id = 0;
        self->redone++;
        log_info ("shard %llx (step %u) lost with its worker; given again", (unsigned long long) t->sh.id, t->step);
    }
}

static int
s_add_task (trainer_t *self, uint32_t step, int shard)
{
    if (self->n_tasks == MAX_TASKS)
        return -1;
    task_t *t = &self->tasks[self->n_tasks];
    memset (t, 0, sizeof *t);
    if (plan_shard (self->plan, step, shard, &t->sh) < 0)
        return -1;
    t->step = step;
    t->shard = shard;
    t->state = TASK_PENDING;
    self->n_tasks++;
    return 0;
}

static void
s_send_task (trainer_t *self, task_t *t, pool_worker_t *w)
{
    if (step_tensors_fit (&self->out, &self->out_rows, &self->out_feats, self->master, &t->sh) < 0) {
        log_error ("out of memory exporting a shard of %u rows", t->sh.n_rows);
        self->fatal = true;
        return;
    }
    agg_export (self->agg, &t->sh, &self->out);
    size_t d = (size_t) self->mc.dim;
    Strata__V1__ModelShape shape = STRATA__V1__MODEL_SHAPE__INIT;
    shape.dim = (uint32_t) self->mc.dim;
    shape.max_len = (uint32_t) self->mc.max_len;
    shape.blocks = (uint32_t) self->mc.blocks;
    shape.ffn = (uint32_t) self->mc.ffn;
    shape.dropout = self->mc.dropout;
    shape.feature_rows = (uint32_t) self->mc.feature_rows;
    uint32_t widths[MODEL_RANK_MAX_LAYERS];
    if (self->mc.rank_negatives > 0) {
        shape.rank_negatives = (uint32_t) self->mc.rank_negatives;
        shape.rank_weight = self->mc.rank_weight;
        shape.rank_share = self->mc.rank_share;
        shape.rank_hard = (uint32_t) self->mc.rank_hard;
        shape.n_rank_widths = (size_t) self->mc.rank_layers;
        for (int k = 0; k < self->mc.rank_layers; k++)
            widths[k] = (uint32_t) self->mc.rank_widths[k];
        shape.rank_widths = widths;
    }
    Strata__V1__TrainTask task = STRATA__V1__TRAIN_TASK__INIT;
    t->task_id = ++self->next_task_id;
    t->version = self->param_version;
    task.task_id = t->task_id;
    task.shard_id = t->sh.id;
    task.seed = t->sh.seed;
    task.version = t->version;
    task.shape = &shape;
    task.n_lens = t->sh.n;
    task.lens = t->sh.lens;
    task.n_items = t->sh.n_items;
    task.items = t->sh.items;
    if (t->sh.types) {
        task.types.data = t->sh.types;
        task.types.len = t->sh.n_items;
    }
    task.n_rows = t->sh.n_rows;
    task.n_candidates = t->sh.n_cand;
    if (t->sh.bias) {
        task.bias.data = (uint8_t *) t->sh.bias;
        task.bias.len = t->sh.n_cand * sizeof (float);
    }
    task.dense.data = (uint8_t *) self->out.dense;
    task.dense.len = model_dense_size (self->master) * sizeof (float);
    task.rows.data = (uint8_t *) self->out.rows;
    task.rows.len = t->sh.n_rows * d * sizeof (float);
    if (t->sh.feat_off) {
        task.n_feat_off = (size_t) t->sh.n_rows + 1;
        task.feat_off = t->sh.feat_off;
        task.n_feat = t->sh.feat_off[t->sh.n_rows];
        task.feat = t->sh.feat;
        task.n_frows = t->sh.n_frows;
        task.feats.data = (uint8_t *) self->out.feats;
        task.feats.len = t->sh.n_frows * d * sizeof (float);
    }
    if (t->sh.rank_neg) {
        task.n_rank_neg = (t->sh.n_items - t->sh.n) * (size_t) self->mc.rank_negatives;
        task.rank_neg = t->sh.rank_neg;
    }
    if (wire_send (self->workers, w->identity, WIRE_TASK, &task.base) < 0) {
        log_warn ("cannot send a task to %s", w->id);
        t->task_id = 0;
        return;
    }
    pool_assign (self->pool, w, t->task_id);
    t->state = TASK_SENT;
    log_debug ("task %llu (step %u shard %d, %u rows) to %s", (unsigned long long) t->task_id, t->step, t->shard,
               t->sh.n_rows, w->id);
}

static void
s_dispatch (trainer_t *self)
{
    for (int i = 0; i < self->n_tasks && !self->fatal; i++) {
        task_t *t = &self->tasks[i];
        if (t->state != TASK_PENDING)
            continue;
        pool_worker_t *w = pool_least_loaded (self->pool, STRATA__V1__ROLE__TRAIN);
        if (!w)
            return;
        s_send_task (self, t, w);
    }
}

// ---------------------------------------------------------------- data

static int
s_u64_cmp (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

//  Up to validation_users users with >= 3 events, chosen by a seeded hash (stable as
//  the data grows), have their last event held out.
static uint8_t *
s_validation_mask (trainer_t *self, uint32_t *chosen)
{
    const dataset_t *d = self->all;
    uint8_t *mask = calloc (d->n_users ? d->n_users : 1, 1);
    uint64_t *keys = malloc ((d->n_users ? d->n_users : 1) * sizeof *keys);
    *chosen = 0;
    if (!mask || !keys) {
        free (keys);
        return mask;
    }
    uint32_t n = 0;
    for (uint32_t u = 0; u < d->n_users; u++)
        if (dataset_len (d, u) >= 3) {
            uint64_t h = util_fnv1a64_add (util_fnv1a64 (&u, sizeof u), &self->pc.seed, sizeof self->pc.seed);
            keys[n++] = (h & ~0xFFFFFFFFULL) | u;
        }
    //  The smallest hashes win; keys carry the user in their low bits.
    qsort (keys, n, sizeof *keys, s_u64_cmp);
    uint64_t want = (uint64_t) self->cfg->validation_users < n ? (uint64_t) self->cfg->validation_users : n;
    for (uint64_t i = 0; i < want; i++)
        mask[keys[i] & 0xFFFFFFFFULL] = 1;
    *chosen = (uint32_t) want;
    free (keys);
    return mask;
}

//  Asks the broker how many events it holds.
static int
s_broker_events (trainer_t *self, uint64_t *events, char *err, size_t errlen)
{
    Strata__V1__StatsRequest req = STRATA__V1__STATS_REQUEST__INIT;
    Strata__V1__Stats *st = (Strata__V1__Stats *) client_request (self->cfg->broker, WIRE_STATS, &req.base,
                                                                 WIRE_STATS_REPLY, &strata__v1__stats__descriptor,
                                                                 (int) self->cfg->timeout_ms, err, errlen);
    if (!st)
        return -1;
    *events = st->events;
    strata__v1__stats__free_unpacked (st, NULL);
    return 0;
}

//  Builds the plan for the current training view with the given shard count.
static int
s_build_plan (trainer_t *self, int shards)
{
    plan_destroy (&self->plan);
    plan_config_t pc = self->pc;
    pc.shards = shards;
    self->plan = plan_new (self->train, &pc);
    self->plan_shards = shards;
    if (self->plan && plan_set_features (self->plan, self->features) < 0)
        plan_destroy (&self->plan);
    return self->plan ? 0 : -1;
}

//  Fetches the broker's data; changed (when not NULL) receives the users whose
//  histories grew since the previous fetch. 0 or -1 with self->message.
//  The search index the ranker is fitted over, as the catalogue arrives.
typedef struct {
    search_index_t *index;
} index_build_t;

static int
s_index_item (const Strata__V1__Item *item, void *arg)
{
    index_build_t *b = arg;
    //  Indices the catalogue skips are empty items.
    Strata__V1__Item empty = STRATA__V1__ITEM__INIT;
    while (search_index_size (b->index) < item->item_index)
        if (search_index_add (b->index, search_index_size (b->index), &empty) < 0)
            return -1;
    return search_index_add (b->index, item->item_index, item);
}

//  A hash of the searchers' choices (0: none).
static uint64_t
s_choices_fnv (const query_terms_t *c)
{
    if (!c || !c->n)
        return 0;
    uint64_t h = util_fnv1a64 (&c->n, sizeof c->n);
    for (uint32_t k = 0; k < c->n; k++)
        h = util_fnv1a64_add (h, c->terms[k], strlen (c->terms[k]) + 1);
    h = util_fnv1a64_add (h, c->off, ((size_t) c->n + 1) * sizeof *c->off);
    h = util_fnv1a64_add (h, c->items, c->off[c->n] * sizeof *c->items);
    return util_fnv1a64_add (h, c->weights, c->off[c->n] * sizeof *c->weights);
}

//  Counts the searchers' choices and fits the search ranker to them (search_rank.h)
//  over index; with keep, the ranker fitted last still describes them (no new
//  searches since) and stays. Without choices, versions carry neither.
static void
s_fit_search (trainer_t *self, search_index_t *index, bool keep, uint64_t choices_fnv)
{
    uint32_t n = self->all->n_items;
    const query_terms_t *choices = self->all->choices;
    free (self->conversions);
    self->conversions = NULL;
    self->n_conversions = 0;
    self->has_ranker = false;
    if ((!keep && !index) || !choices || !choices->n)
        return;
    self->conversions = malloc ((n ? n : 1) * sizeof *self->conversions);
    if (!self->conversions) {
        log_warn ("out of memory counting search choices");
        return;
    }
    self->n_conversions = n;
    search_conversions (choices, n, self->conversions);
    if (keep) {
        self->has_ranker = true;
        log_debug ("search ranker: no new searches since it was fitted; kept");
        return;
    }
    int64_t t0 = util_mono_ms ();
    if (search_ranker_fit (index, choices, self->conversions, n, &self->ranker) < 0) {
        log_info ("search ranker: none of %u past queries has a chosen item among its candidates", choices->n);
        return;
    }
    self->has_ranker = true;
    self->ranker_fnv = choices_fnv;
    log_info ("search ranker: fitted on %u of %u past queries in %.1fs, cross-entropy %.3f (text score alone %.3f)",
              self->ranker.queries, choices->n, (double) (util_mono_ms () - t0) / 1000, self->ranker.loss,
              self->ranker.base_loss);
}

static int
s_load_data (trainer_t *self, uint32_t **changed, uint32_t *n_changed)
{
    char err[256];
    uint64_t before = 0;
    if (s_broker_events (self, &before, err, sizeof err) < 0) {
        snprintf (self->message, sizeof self->message, "broker: %s", err);
        return -1;
    }
    int64_t t0 = util_mono_ms ();
    dataset_t *all = dataset_fetch (self->cfg->broker, (int) self->cfg->timeout_ms, err, sizeof err);
    if (!all) {
        snprintf (self->message, sizeof self->message, "broker: %s", err);
        return -1;
    }
    if (changed) {
        uint32_t n = 0, *list = malloc ((all->n_users ? all->n_users : 1) * sizeof *list);
        for (uint32_t u = 0; list && u < all->n_users; u++)
            if (!self->all || u >= self->all->n_users || dataset_len (all, u) > dataset_len (self->all, u))
                list[n++] = u;
        *changed = list;
        *n_changed = list ? n : 0;
    }
    dataset_destroy (&self->all);
    dataset_destroy (&self->train);
    free (self->val_targets);
    self->val_targets = NULL;
    self->all = all;
    self->events = all->n_events;
    self->broker_events = before;
    uint8_t *mask = s_validation_mask (self, &self->val_users);
    self->train = mask ? dataset_holdout_some (all, 1, mask, &self->val_targets) : NULL;
    free (mask);
    if (!self->train) {
        snprintf (self->message, sizeof self->message, "out of memory for the training view");
        return -1;
    }
    features_destroy (&self->features);
    //  One pass over the catalogue gives the item tower its features and, when
    //  searchers chose items, the search ranker its index.
    uint64_t choices_fnv = s_choices_fnv (all->choices);
    bool keep = self->has_ranker && self->ranker_fnv == choices_fnv;
    index_build_t ib = { choices_fnv && !keep ? search_index_new (NULL) : NULL };
    if (self->mc.feature_rows > 0 || ib.index) {
        self->features = features_fetch (self->cfg->broker, (uint32_t) self->mc.feature_rows, all->n_items,
                                         (int) self->cfg->timeout_ms, ib.index ? s_index_item : NULL, &ib, err,
                                         sizeof err);
        if (!self->features) {
            snprintf (self->message, sizeof self->message, "broker: %s", err);
            search_index_destroy (&ib.index);
            return -1;
        }
        if (self->features->n_described == 0)
            features_destroy (&self->features);
    }
    s_fit_search (self, ib.index, keep, choices_fnv);
    search_index_destroy (&ib.index);
    if (self->master)
        model_set_features (self->master, self->features);
    if (self->master && model_rows (self->master) < all->n_items) {
        if (model_resize_rows (self->master, all->n_items) < 0 || agg_resize (self->agg) < 0) {
            snprintf (self->message, sizeof self->message, "out of memory growing the item table");
            return -1;
        }
    }
    log_info ("data: %u users, %u items (%zu described by the catalogue), %zu events (%u validation users held out), "
              "fetched in %.1fs",
              all->n_users, all->n_items, self->features ? self->features->n_described : 0, all->n_events,
              self->val_users, (double) (util_mono_ms () - t0) / 1000);
    return 0;
}

// ---------------------------------------------------------------- state

static void
s_timer_stop (trainer_t *self)
{
    if (self->seg_start) {
        self->run_secs += (double) (util_mono_ms () - self->seg_start) / 1000;
        self->seg_start = 0;
    }
}

static uint64_t
s_weights_hash (trainer_t *self)
{
    uint64_t h = util_fnv1a64 ("", 0);
    for (int i = 0; self->master && i < model_tensor_count (self->master); i++) {
        size_t n;
        const float *w = model_tensor (self->master, i, NULL, &n, NULL);
        h = util_fnv1a64_add (h, w, n * sizeof (float));
    }
    return h;
}

static char *
s_state_json (trainer_t *self)
{
    json_t *j = json_pack (
        "{s:I, s:b, s:b, s:s, s:i, s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:i, s:i, s:i, s:i, s:i, "
        "s:I, s:I, s:I}",
        "run_id", (json_int_t) self->run_id, "running", self->running, "incremental", self->incremental, "mode",
        s_mode_name (self->mode), "epoch", (int) self->epoch, "epochs", (int) self->epochs, "steps_done",
        (int) self->steps_done, "version", (json_int_t) self->version, "param_version",
        (json_int_t) self->param_version, "updates", (json_int_t) self->updates, "events", (json_int_t) self->events,
        "samples", (json_int_t) self->samples, "seconds", self->run_secs, "loss", self->last_loss, "valid_ndcg10",
        self->last_val.ndcg10, "valid_hr10", self->last_val.hr10, "dim", self->mc.dim, "blocks", self->mc.blocks,
        "max_len", self->mc.max_len, "shards", self->plan_shards, "negatives", self->pc.negatives, "seed",
        (json_int_t) self->pc.seed, "broker_events", (json_int_t) self->broker_events, "epoch_base",
        (json_int_t) self->epoch_base);
    char *s = j ? json_dumps (j, JSON_COMPACT) : NULL;
    json_decref (j);
    return s;
}

static void
s_checkpoint (trainer_t *self)
{
    if (!self->master)
        return;
    char *state = s_state_json (self);
    if (!state || checkpoint_save (self->store, self->master, state) < 0)
        log_error ("checkpoint failed");
    else
        log_debug ("checkpoint at epoch %u step %u", self->epoch, self->steps_done);
    free (state);
    self->last_ckpt = util_mono_ms ();
}

static void
s_publish (trainer_t *self)
{
    self->version++;
    self->weights_fnv = s_weights_hash (self);
    char fnv_hex[17];
    snprintf (fnv_hex, sizeof fnv_hex, "%016llx", (unsigned long long) self->weights_fnv);
    json_t *meta = json_pack ("{s:I, s:I, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:I, s:s, s:b}", "version",
                              (json_int_t) self->version, "created_ms", (json_int_t) util_now_ms (), "dim",
                              self->mc.dim, "blocks", self->mc.blocks, "max_len", self->mc.max_len, "ffn",
                              self->mc.ffn, "items", (int) model_rows (self->master), "loss", self->last_loss,
                              "valid_ndcg10", self->last_val.ndcg10, "valid_hr10", self->last_val.hr10, "events",
                              (json_int_t) self->events, "weights_fnv", fnv_hex, "incremental", self->incremental);
    uint32_t items = model_rows (self->master);
    float *pop = malloc ((items ? items : 1) * sizeof *pop);
    size_t len = 0;
    uint8_t *blob = NULL;
    if (meta && pop) {
        dataset_popularity (self->all, items, self->cfg->popularity_half_life_days * 86400000.0, pop);
        //  The choice counts, one per item of the table (items past the counts: none).
        float *conv = self->conversions ? calloc (items ? items : 1, sizeof *conv) : NULL;
        if (conv)
            memcpy (conv, self->conversions, (self->n_conversions < items ? self->n_conversions : items) * sizeof *conv);
        snapshot_search_t search = { self->all ? self->all->terms : NULL, self->has_ranker ? self->ranker.w : NULL,
                                     conv };
        blob = snapshot_build (self->master, self->version, pop, &search, meta, &len);
        free (conv);
    }
    if (!blob || checkpoint_publish (self->store, self->version, blob, len, meta, (int) self->cfg->keep_versions) < 0)
        log_error ("cannot publish model version %llu", (unsigned long long) self->version);
    else
        log_info ("published model version %llu (%zu bytes)", (unsigned long long) self->version, len);
    free (blob);
    free (pop);
    json_decref (meta);
}

static void
s_validate (trainer_t *self)
{
    memset (&self->last_val, 0, sizeof self->last_val);
    if (!self->val_users)
        return;
    scorer_t sc = model_scorer (self->master);
    evaluate (self->train, self->val_targets, &sc, &self->last_val);
}

// ---------------------------------------------------------------- runs

static int
s_begin_epoch (trainer_t *self)
{
    self->steps = plan_epoch (self->plan, self->epoch_base + self->epoch);
    self->epoch_loss = 0;
    self->epoch_pos = 0;
    if (!self->resumed)
        self->steps_done = 0;
    self->next_step = self->steps_done;
    self->resumed = false;
    return 0;
}

//  Starts a run over the current data: a full run from fresh weights, or an
//  incremental one (users: those with new events) from the current weights.
static int
s_start_run (trainer_t *self, bool incremental, uint32_t epochs, Strata__V1__TrainMode mode, const uint32_t *users,
             uint32_t n_users)
{
    s_tasks_clear (self);
    self->mode = mode;
    int shards = mode == STRATA__V1__TRAIN_MODE__ASYNC ? 1 : (int) self->cfg->hyper.shards;
    if (s_build_plan (self, shards) < 0 || plan_set_users (self->plan, users, n_users) < 0) {
        snprintf (self->message, sizeof self->message, "out of memory for the plan");
        return -1;
    }
    if (!incremental) {
        agg_destroy (&self->agg);
        model_destroy (&self->master);
        self->master = model_new (&self->mc, self->all->n_items);
        self->agg = self->master ? agg_new (self->master) : NULL;
        if (self->master)
            model_set_features (self->master, self->features);
        if (!self->agg) {
            snprintf (self->message, sizeof self->message, "out of memory for the model");
            return -1;
        }
        self->param_version = 0;
        self->updates = 0;
        self->epoch_base = 0;
        self->run_id++;
    }
    else
        self->epoch_base = 1000000u + (uint32_t) self->updates * 1000u;
    self->incremental = incremental;
    self->running = true;
    self->state = "training";
    self->epoch = 0;
    self->epochs = epochs;
    self->samples = 0;
    self->flops = 0;
    self->run_secs = 0;
    self->redone = self->stale = 0;
    self->seg_start = util_mono_ms ();
    self->message[0] = 0;
    s_begin_epoch (self);
    log_info ("%s run %llu: %u epochs, %s, %u users, %u steps per epoch", incremental ? "incremental" : "full",
              (unsigned long long) self->run_id, epochs, s_mode_name (mode), plan_users (self->plan), self->steps);
    s_checkpoint (self);
    return 0;
}

static void
s_end_epoch (trainer_t *self)
{
    s_timer_stop (self);
    self->last_loss = self->epoch_pos ? self->epoch_loss / (double) self->epoch_pos : 0;
    s_validate (self);
    self->epoch++;
    log_info ("epoch %u/%u: loss %.4f, validation NDCG@10 %.4f HR@10 %.4f (%u users), %.0f samples/s", self->epoch,
              self->epochs, self->last_loss, self->last_val.ndcg10, self->last_val.hr10, self->last_val.users,
              self->run_secs > 0 ? (double) self->samples / self->run_secs : 0);
    s_publish (self);
    if (self->epoch >= self->epochs) {
        self->running = false;
        if (self->incremental)
            self->updates++;
        self->state = self->cfg->continuous ? "continuous" : "idle";
        self->last_update = util_mono_ms ();
        log_info ("%s run %llu done: version %llu in %.1fs (%llu shards redone, %llu stale)",
                  self->incremental ? "incremental" : "full", (unsigned long long) self->run_id,
                  (unsigned long long) self->version, self->run_secs, (unsigned long long) self->redone,
                  (unsigned long long) self->stale);
        self->steps_done = 0;
    }
    else {
        s_begin_epoch (self);
        self->seg_start = util_mono_ms ();
    }
    s_checkpoint (self);
}

//  Adds a shard's gradient, read where its message holds it, to the step.
static void
s_add_gradient (trainer_t *self, task_t *t, const Strata__V1__TrainGradient *g)
{
    size_t d = (size_t) self->mc.dim;
    step_view_t v = { wire_floats (g->dense, model_dense_size (self->master)),
                      wire_floats (g->rows, (size_t) t->sh.n_rows * d), wire_floats (g->feats, (size_t) t->sh.n_frows * d) };
    agg_add (self->agg, &t->sh, &v, g->loss, g->positions);
    self->epoch_loss += g->loss;
    self->epoch_pos += g->positions;
}

//  Sync: adds the step's gradients that are ready, in shard order (so that the sum does
//  not depend on which worker finished first), and applies the step once all are in.
//  A shard that arrives before an earlier one keeps its message until its turn; the
//  others are added as they come, while the workers still compute the rest.
static void
s_add_ready (trainer_t *self)
{
    while (self->n_added < self->n_tasks && self->tasks[self->n_added].grad) {
        task_t *t = &self->tasks[self->n_added++];
        s_add_gradient (self, t, t->grad);
        strata__v1__train_gradient__free_unpacked (t->grad, NULL);
        t->grad = NULL;
    }
    if (self->n_tasks == 0 || self->n_added < self->n_tasks)
        return;
    agg_apply (self->agg);
    self->param_version++;
    self->steps_done++;
    s_tasks_clear (self);
}

//  Whether one more async task keeps every task in flight within the staleness bound.
static bool
s_async_may_add (trainer_t *self)
{
    uint64_t oldest = self->param_version;
    for (int i = 0; i < self->n_tasks; i++)
        if (self->tasks[i].state == TASK_SENT && self->tasks[i].version < oldest)
            oldest = self->tasks[i].version;
    return (self->param_version - oldest) + (uint64_t) self->n_tasks + 1 <= (uint64_t) self->cfg->staleness + 1;
}

static void
s_pump (trainer_t *self)
{
    while (self->running && !self->fatal) {
        if (self->mode == STRATA__V1__TRAIN_MODE__SYNC) {
            if (self->n_tasks == 0 && self->steps_done < self->steps) {
                //  Between steps nothing is in flight: the moment to checkpoint.
                if (self->steps_done > 0 && util_mono_ms () - self->last_ckpt >= self->cfg->checkpoint_secs * 1000)
                    s_checkpoint (self);
                for (int k = 0; k < self->plan_shards; k++)
                    if (s_add_task (self, self->steps_done, k) < 0) {
                        log_error ("out of memory planning a step");
                        self->fatal = true;
                        return;
                    }
            }
        }
        else {
            //  Keep worker slots busy, but only as far as the staleness bound allows
            //  (stale synchronous parallel): a new task could complete before the
            //  oldest one in flight, as could every other, so one is added only while
            //  the updates the oldest may yet see stay within the bound. Fast workers
            //  wait for slow ones instead of computing on parameters too old to use.
            int slots = 0;
            for (pool_worker_t *w = pool_first (self->pool); w; w = pool_next (self->pool))
                slots += w->role == STRATA__V1__ROLE__TRAIN ? (int) w->capacity : 0;
            while (self->n_tasks < (slots < 1 ? 1 : slots) && self->next_step < self->steps
                   && s_async_may_add (self))
                if (s_add_task (self, self->next_step++, 0) < 0) {
                    self->fatal = true;
                    return;
                }
            if (util_mono_ms () - self->last_ckpt >= self->cfg->checkpoint_secs * 1000)
                s_checkpoint (self);
        }
        if (self->steps_done >= self->steps && self->n_tasks == 0) {
            s_end_epoch (self);
            continue;
        }
        break;
    }
    s_dispatch (self);
}

static void
s_handle_gradient (trainer_t *self, pool_worker_t *w, zframe_t *payload)
{
    Strata__V1__TrainGradient *g = (Strata__V1__TrainGradient *) wire_unpack (
        &strata__v1__train_gradient__descriptor, payload, NULL);
    if (!g) {
        log_warn ("GRADIENT that does not decode from %s", w ? w->id : "an unknown worker");
        return;
    }
    task_t *t = s_task_find (self, g->task_id);
    pool_complete (self->pool, g->task_id);
    if (!t || t->state != TASK_SENT) {
        log_debug ("late gradient for task %llu ignored", (unsigned long long) g->task_id);
        strata__v1__train_gradient__free_unpacked (g, NULL);
        return;
    }
    size_t d = (size_t) self->mc.dim;
    size_t dn = model_dense_size (self->master), rn = (size_t) t->sh.n_rows * d, fn = (size_t) t->sh.n_frows * d;
    const char *bad = NULL;
    if (g->error && *g->error)
        bad = g->error;
    else if (!wire_floats (g->dense, dn) || !wire_floats (g->rows, rn) || !wire_floats (g->feats, fn))
        bad = "gradient of the wrong size";
    else if (!isfinite (g->loss))
        bad = "loss is not finite";
    if (bad) {
        log_warn ("task %llu (step %u shard %d) failed on %s: %s", (unsigned long long) t->task_id, t->step, t->shard,
                  w ? w->id : "?", bad);
        t->state = TASK_PENDING;
        t->task_id = 0;
        if (++t->failures >= 3) {
            snprintf (self->message, sizeof self->message, "a shard failed 3 times: %s", bad);
            log_error ("%s; the run stops", self->message);
            s_tasks_clear (self);
            s_timer_stop (self);
            self->running = false;
            self->state = "failed";
        }
        strata__v1__train_gradient__free_unpacked (g, NULL);
        return;
    }
    self->samples += g->positions;
    self->flops += g->flops;
    if (self->mode == STRATA__V1__TRAIN_MODE__SYNC) {
        t->state = TASK_DONE;
        t->grad = g;
        s_add_ready (self);
        return;
    }
    if (self->param_version - t->version > (uint64_t) self->cfg->staleness) {
        //  Too stale: compute it again on fresh parameters.
        self->stale++;
        self->samples -= g->positions;
        t->state = TASK_PENDING;
        t->task_id = 0;
    }
    else {
        s_add_gradient (self, t, g);
        agg_apply (self->agg);
        self->param_version++;
        self->steps_done++;
        s_task_remove (self, t);
    }
    strata__v1__train_gradient__free_unpacked (g, NULL);
}

// ---------------------------------------------------------------- sockets

//  Receives one message waiting on a ROUTER; a bad frame gets an Error reply (rc < 0,
//  msg reset). STRATA_EINTR: nothing (more) to do.
static int
s_recv (zsock_t *sock, size_t max, const char *what, wire_msg_t *msg)
{
    int rc = wire_recv_ready (sock, true, max, msg);
    if (rc == STRATA_EAGAIN)
        rc = STRATA_EINTR;
    if (rc < 0 && rc != STRATA_EINTR) {
        wire_send_error (sock, msg->routing, NULL,
                         rc == STRATA_ETOOLARGE ? STRATA__V1__ERROR_CODE__TOO_LARGE : STRATA__V1__ERROR_CODE__BAD_FRAMING,
                         "bad message on the trainer's %s endpoint", what);
        wire_msg_reset (msg);
    }
    return rc;
}

static void
s_handle_workers (trainer_t *self)
{
    for (int i = 0; i < 64; i++) {
        wire_msg_t msg;
        int rc = s_recv (self->workers, (size_t) self->cfg->max_frame, "worker", &msg);
        if (rc == STRATA_EINTR)
            break;
        if (rc < 0)
            continue;
        pool_worker_t *w = pool_lookup (self->pool, msg.routing);
        if (w)
            pool_touch (self->pool, w);
        if (!strcmp (msg.type, WIRE_READY)) {
            Strata__V1__WorkerHello *hello = (Strata__V1__WorkerHello *) wire_unpack (
                &strata__v1__worker_hello__descriptor, msg.payload, NULL);
            if (!hello || hello->role != STRATA__V1__ROLE__TRAIN)
                wire_send_error (self->workers, msg.routing, NULL, STRATA__V1__ERROR_CODE__INVALID,
                                 "the trainer takes train workers only (READY with role TRAIN)");
            else if ((w = pool_register (self->pool, msg.routing, hello, s_requeue, self)))
                log_info ("train worker %s (pid %u) ready, capacity %u", w->id, w->pid, w->capacity);
            if (hello)
                strata__v1__worker_hello__free_unpacked (hello, NULL);
        }
        else if (!strcmp (msg.type, WIRE_GRADIENT)) {
            s_handle_gradient (self, w, msg.payload);
            if (!w)
                wire_send (self->workers, msg.routing, WIRE_DISCONNECT, NULL);
        }
        else if (!strcmp (msg.type, WIRE_HEARTBEAT)) {
            if (!w)
                wire_send (self->workers, msg.routing, WIRE_DISCONNECT, NULL);
        }
        else if (!strcmp (msg.type, WIRE_DISCONNECT)) {
            if (w) {
                log_info ("train worker %s left", w->id);
                pool_remove (self->pool, w, s_requeue, self);
            }
        }
        else
            wire_send_error (self->workers, msg.routing, NULL, STRATA__V1__ERROR_CODE__UNKNOWN_TYPE,
                             "unknown message type '%s' on the trainer's worker endpoint", msg.type);
        wire_msg_reset (&msg);
    }
}

static void
s_fill_status (trainer_t *self, Strata__V1__TrainStatus *st)
{
    st->state = (char *) self->state;
    st->run_id = self->run_id;
    st->version = self->version;
    st->mode = self->mode;
    st->epoch = self->epoch;
    st->epochs = self->epochs;
    st->step = self->steps_done;
    st->steps = self->steps;
    st->loss = self->last_loss;
    st->valid_ndcg10 = self->last_val.ndcg10;
    st->valid_hr10 = self->last_val.hr10;
    st->valid_users = self->last_val.users;
    double secs = self->run_secs + (self->seg_start ? (double) (util_mono_ms () - self->seg_start) / 1000 : 0);
    st->seconds = secs;
    st->samples = self->samples;
    st->samples_per_second = secs > 0 ? (double) self->samples / secs : 0;
    double done = (double) self->epoch * self->steps + self->steps_done, total = (double) self->epochs * self->steps;
    st->eta_seconds = self->running && done > 0 ? secs / done * (total - done) : 0;
    size_t nw = 0;
    for (pool_worker_t *w = pool_first (self->pool); w; w = pool_next (self->pool))
        nw += w->role == STRATA__V1__ROLE__TRAIN;
    st->workers = (uint32_t) nw;
    st->events = self->events;
    st->redone = self->redone;
    st->stale = self->stale;
    st->message = self->message;
    st->updates = self->updates;
    st->items = self->all ? self->all->n_items : 0;
    st->users = self->all ? self->all->n_users : 0;
    st->weights_fnv = self->weights_fnv;   // hashing every weight per request would stall training
}

// ---------------------------------------------------------------- model versions

static void
s_model_info (trainer_t *self, wire_msg_t *msg)
{
    Strata__V1__ModelInfo info = STRATA__V1__MODEL_INFO__INIT;
    uint64_t v = checkpoint_latest (self->store);
    char *meta = v ? checkpoint_version_meta (self->store, v) : NULL;
    json_t *j = meta ? json_loads (meta, 0, NULL) : NULL;
    if (j) {
        info.version = v;
        info.bytes = (uint64_t) json_integer_value (json_object_get (j, "bytes"));
        info.chunk_bytes = (uint32_t) json_integer_value (json_object_get (j, "chunk_bytes"));
        info.chunks = (uint32_t) json_integer_value (json_object_get (j, "chunks"));
        const char *fnv = json_string_value (json_object_get (j, "fnv"));
        info.fnv = fnv ? strtoull (fnv, NULL, 16) : 0;
        info.meta = meta;
    }
    wire_send (self->api, msg->routing, WIRE_MODEL_INFO_REPLY, &info.base);
    json_decref (j);
    free (meta);
}

static void
s_model_chunk (trainer_t *self, wire_msg_t *msg)
{
    Strata__V1__ModelChunkRequest *req = (Strata__V1__ModelChunkRequest *) wire_unpack (
        &strata__v1__model_chunk_request__descriptor, msg->payload, NULL);
    if (!req) {
        wire_send_error (self->api, msg->routing, NULL, STRATA__V1__ERROR_CODE__BAD_PAYLOAD,
                         "MODEL_CHUNK needs a ModelChunkRequest");
        return;
    }
    size_t len;
    char *data = checkpoint_chunk (self->store, req->version, req->index, &len);
    if (!data)
        wire_send_error (self->api, msg->routing, NULL, STRATA__V1__ERROR_CODE__NOT_FOUND,
                         "model version %llu has no chunk %u (dropped, or never published)",
                         (unsigned long long) req->version, req->index);
    else {
        Strata__V1__ModelChunk c = STRATA__V1__MODEL_CHUNK__INIT;
        c.version = req->version;
        c.index = req->index;
        c.data.data = (uint8_t *) data;
        c.data.len = len;
        c.fnv = util_fnv1a64 (data, len);
        wire_send (self->api, msg->routing, WIRE_MODEL_CHUNK_REPLY, &c.base);
    }
    free (data);
    strata__v1__model_chunk_request__free_unpacked (req, NULL);
}

static void
s_handle_api (trainer_t *self)
{
    for (int i = 0; i < 64; i++) {
        wire_msg_t msg;
        int rc = s_recv (self->api, 1 << 20, "api", &msg);
        if (rc == STRATA_EINTR)
            break;
        if (rc < 0)
            continue;
        if (!strcmp (msg.type, WIRE_TRAIN)) {
            Strata__V1__TrainRequest *req = (Strata__V1__TrainRequest *) wire_unpack (
                &strata__v1__train_request__descriptor, msg.payload, NULL);
            if (!req)
                wire_send_error (self->api, msg.routing, NULL, STRATA__V1__ERROR_CODE__BAD_PAYLOAD,
                                 "TRAIN needs a TrainRequest");
            else if (self->running && !self->incremental)
                wire_send_error (self->api, msg.routing, NULL, STRATA__V1__ERROR_CODE__UNAVAILABLE,
                                 "a full run is in progress (run %llu, epoch %u of %u)",
                                 (unsigned long long) self->run_id, self->epoch, self->epochs);
            else {
                Strata__V1__TrainMode mode = req->mode;
                if (mode == STRATA__V1__TRAIN_MODE__TRAIN_MODE_UNSPECIFIED)
                    mode = strcmp (self->cfg->mode, "async") ? STRATA__V1__TRAIN_MODE__SYNC
                                                             : STRATA__V1__TRAIN_MODE__ASYNC;
                uint32_t epochs = req->epochs ? req->epochs : (uint32_t) self->cfg->epochs;
                self->state = "fetching";
                if (s_load_data (self, NULL, NULL) < 0 || self->all->n_events == 0) {
                    if (self->all && self->all->n_events == 0)
                        snprintf (self->message, sizeof self->message, "the store holds no events to train on");
                    self->state = self->version ? (self->cfg->continuous ? "continuous" : "idle") : "idle";
                    self->running = false;
                    wire_send_error (self->api, msg.routing, NULL, STRATA__V1__ERROR_CODE__UNAVAILABLE, "%s",
                                     self->message);
                }
                else if (s_start_run (self, false, epochs, mode, NULL, 0) < 0) {
                    self->state = "failed";
                    wire_send_error (self->api, msg.routing, NULL, STRATA__V1__ERROR_CODE__INTERNAL, "%s",
                                     self->message);
                }
                else {
                    Strata__V1__TrainStatus st = STRATA__V1__TRAIN_STATUS__INIT;
                    s_fill_status (self, &st);
                    wire_send (self->api, msg.routing, WIRE_TRAIN_REPLY, &st.base);
                }
            }
            if (req)
                strata__v1__train_request__free_unpacked (req, NULL);
        }
        else if (!strcmp (msg.type, WIRE_TRAIN_STATUS)) {
            Strata__V1__TrainStatus st = STRATA__V1__TRAIN_STATUS__INIT;
            s_fill_status (self, &st);
            wire_send (self->api, msg.routing, WIRE_TRAIN_REPLY, &st.base);
        }
        else if (!strcmp (msg.type, WIRE_MODEL_INFO))
            s_model_info (self, &msg);
        else if (!strcmp (msg.type, WIRE_MODEL_CHUNK))
            s_model_chunk (self, &msg);
        else
            wire_send_error (self->api, msg.routing, NULL, STRATA__V1__ERROR_CODE__UNKNOWN_TYPE,
                             "unknown message type '%s' on the trainer's api endpoint", msg.type);
        wire_msg_reset (&msg);
    }
}

static void
s_heartbeat (trainer_t *self)
{
    pool_expire (self->pool, util_mono_ms (), s_requeue, self);
    Strata__V1__Heartbeat hb = STRATA__V1__HEARTBEAT__INIT;
    for (pool_worker_t *w = pool_first (self->pool); w; w = pool_next (self->pool))
        wire_send (self->workers, w->identity, WIRE_HEARTBEAT, &hb.base);
}

//  Continuous training: new events since the model's data start an incremental run.
static void
s_poll (trainer_t *self)
{
    int64_t now = util_mono_ms ();
    if (self->running || now - self->last_poll < self->cfg->poll_ms)
        return;
    self->last_poll = now;
    bool want_full = self->cfg->auto_train && self->version == 0 && strcmp (self->state, "failed");
    if (!want_full && !(self->cfg->continuous && self->version > 0))
        return;
    char err[256];
    uint64_t events;
    if (s_broker_events (self, &events, err, sizeof err) < 0) {
        log_debug ("poll: %s", err);
        return;
    }
    if (want_full) {
        if (events == 0)
            return;
        Strata__V1__TrainMode mode = strcmp (self->cfg->mode, "async") ? STRATA__V1__TRAIN_MODE__SYNC
                                                                        : STRATA__V1__TRAIN_MODE__ASYNC;
        if (s_load_data (self, NULL, NULL) == 0 && self->all->n_events > 0)
            s_start_run (self, false, (uint32_t) self->cfg->epochs, mode, NULL, 0);
        return;
    }
    if (events <= self->broker_events)
        return;
    if (events - self->broker_events < (uint64_t) self->cfg->retrain_events
        && now - self->last_update < self->cfg->retrain_secs * 1000)
        return;
    uint32_t *changed = NULL, n_changed = 0;
    uint64_t fresh = events - self->broker_events;
    if (s_load_data (self, &changed, &n_changed) < 0) {
        log_warn ("incremental update: %s", self->message);
        free (changed);
        return;
    }
    if (n_changed == 0) {
        free (changed);
        self->last_update = now;
        return;
    }
    log_info ("%llu new events: updating the model on %u users", (unsigned long long) fresh, n_changed);
    s_start_run (self, true, (uint32_t) self->cfg->incremental_epochs, self->mode ? self->mode : STRATA__V1__TRAIN_MODE__SYNC,
                 changed, n_changed);
    free (changed);
}

// ---------------------------------------------------------------- start-up

//  Resumes from the checkpoint, if any: the model, and an interrupted full run.
static void
s_resume (trainer_t *self)
{
    char *text = checkpoint_state (self->store);
    if (!text)
        return;
    json_error_t jerr;
    json_t *j = json_loads (text, 0, &jerr);
    free (text);
    if (!j) {
        log_warn ("checkpoint state does not parse (%s); starting afresh", jerr.text);
        return;
    }
    int dim = 0, blocks = 0, max_len = 0, shards = 0, negatives = 0, epoch = 0, epochs = 0, steps_done = 0;
    int running = 0, incremental = 0;
    json_int_t run_id = 0, version = 0, param_version = 0, updates = 0, samples = 0, seed = 0, broker_events = 0;
    json_int_t epoch_base = 0;
    const char *mode = "sync";
    double seconds = 0, loss = 0;
    json_unpack (j,
                 "{s?I, s?b, s?b, s?s, s?i, s?i, s?i, s?I, s?I, s?I, s?I, s?f, s?f, s?i, s?i, s?i, s?i, s?i, s?I, s?I, "
                 "s?I}",
                 "run_id", &run_id, "running", &running, "incremental", &incremental, "mode", &mode, "epoch", &epoch,
                 "epochs", &epochs, "steps_done", &steps_done, "version", &version, "param_version", &param_version,
                 "updates", &updates, "samples", &samples, "seconds", &seconds, "loss", &loss, "dim", &dim, "blocks",
                 &blocks, "max_len", &max_len, "shards", &shards, "negatives", &negatives, "seed", &seed,
                 "broker_events", &broker_events, "epoch_base", &epoch_base);
    self->mode = strcmp (mode, "async") ? STRATA__V1__TRAIN_MODE__SYNC : STRATA__V1__TRAIN_MODE__ASYNC;
    json_decref (j);
    if (dim != self->mc.dim || blocks != self->mc.blocks || max_len != self->mc.max_len
        || negatives != self->pc.negatives || (uint64_t) seed != self->pc.seed) {
        log_warn ("the checkpoint was made with other model settings; starting afresh");
        return;
    }
    self->run_id = (uint64_t) run_id;
    self->version = (uint64_t) version;
    self->updates = (uint64_t) updates;
    if (version == 0 && !running)
        return;
    //  The model needs the data's catalogue size before loading; fetch it (waiting for the
    //  broker if it is not up yet).
    for (int tries = 0; s_load_data (self, NULL, NULL) < 0; tries++) {
        if (zsys_interrupted)
            return;
        if (tries % 10 == 0)
            log_warn ("resume: waiting for the broker (%s)", self->message);
        zclock_sleep (1000);
    }
    self->master = model_new (&self->mc, 1);
    self->agg = NULL;
    if (!self->master || checkpoint_load (self->store, self->master) < 0) {
        log_warn ("checkpoint unreadable; starting afresh");
        model_destroy (&self->master);
        self->version = 0;
        return;
    }
    if (model_rows (self->master) < self->all->n_items)
        model_resize_rows (self->master, self->all->n_items);
    model_set_features (self->master, self->features);
    self->weights_fnv = s_weights_hash (self);
    self->agg = agg_new (self->master);
    self->param_version = (uint64_t) param_version;
    self->last_loss = loss;
    self->broker_events = (uint64_t) broker_events;
    self->state = self->cfg->continuous && version ? "continuous" : "idle";
    self->last_update = util_mono_ms ();
    if (running && !incremental && self->agg) {
        //  Carry on where the checkpoint left off: same epoch, same step.
        int sh = self->mode == STRATA__V1__TRAIN_MODE__ASYNC ? 1 : (shards ? shards : 1);
        if (s_build_plan (self, sh) < 0)
            return;
        self->running = true;
        self->incremental = false;
        self->state = "training";
        self->epoch = (uint32_t) epoch;
        self->epochs = (uint32_t) epochs;
        self->epoch_base = (uint32_t) epoch_base;
        self->steps_done = (uint32_t) steps_done;
        self->samples = (uint64_t) samples;
        self->run_secs = seconds;
        self->resumed = true;
        s_begin_epoch (self);
        self->seg_start = util_mono_ms ();
        log_info ("resumed run %llu at epoch %u step %u of %u (%s)", (unsigned long long) self->run_id, self->epoch,
                  self->steps_done, self->steps, s_mode_name (self->mode));
    }
    else
        log_info ("loaded model version %llu from the checkpoint", (unsigned long long) self->version);
}

int
trainer_run (const trainer_config_t *cfg)
{
    trainer_t self = { .cfg = cfg, .state = "idle" };
    char err[256];
    if (hyper_configs (&cfg->hyper, &self.mc, &self.pc, err, sizeof err) < 0) {
        log_error ("%s", err);
        return -1;
    }
    if (strcmp (cfg->mode, "sync") && strcmp (cfg->mode, "async")) {
        log_error ("unknown mode '%s' (sync or async)", cfg->mode);
        return -1;
    }
    self.mode = strcmp (cfg->mode, "async") ? STRATA__V1__TRAIN_MODE__SYNC : STRATA__V1__TRAIN_MODE__ASYNC;
    if (cfg->threads > 0)
        openblas_set_num_threads ((int) cfg->threads);
    char path[4096];
    snprintf (path, sizeof path, "%s/trainer", cfg->dir);
    zsys_dir_create ("%s", cfg->dir);
    int rc = -1;
    self.store = checkpoint_open (path);
    self.pool = pool_new (cfg->heartbeat_ms, cfg->liveness);
    if (!self.store || !self.pool)
        goto out;
    self.workers = wire_bind_router (cfg->workers, cfg->max_frame);
    self.api = wire_bind_router (cfg->api, 1 << 20);
    const char *names[] = { "workers", "api" };
    zsock_t *socks[] = { self.workers, self.api };
    if (!self.workers || !self.api || endpoints_write (cfg->endpoints_file, names, socks, 2, NULL) < 0)
        goto out;
    log_info ("trainer up: workers %s, api %s, data from %s, store %s", zsock_endpoint (self.workers),
              zsock_endpoint (self.api), cfg->broker, path);
    s_resume (&self);
    self.last_ckpt = util_mono_ms ();
    zpoller_t *poller = zpoller_new (self.workers, self.api, NULL);
    int64_t next_beat = util_mono_ms () + cfg->heartbeat_ms;
    while (!zsys_interrupted && !self.fatal) {
        int64_t now = util_mono_ms ();
        int timeout = (int) (next_beat > now ? next_beat - now : 0);
        if (timeout > 100)
            timeout = 100;
        zpoller_wait (poller, timeout);
        if (zpoller_terminated (poller))
            break;
        s_handle_workers (&self);
        s_handle_api (&self);
        s_pump (&self);
        if (util_mono_ms () >= next_beat) {
            s_heartbeat (&self);
            s_dispatch (&self);
            next_beat = util_mono_ms () + cfg->heartbeat_ms;
        }
        s_poll (&self);
    }
    zpoller_destroy (&poller);
    for (pool_worker_t *w = pool_first (self.pool); w; w = pool_next (self.pool))
        wire_send (self.workers, w->identity, WIRE_DISCONNECT, NULL);
    if (self.master && !self.fatal)
        s_checkpoint (&self);
    rc = self.fatal ? -1 : 0;
    log_info ("trainer stopping");
out:
    s_tasks_clear (&self);
    zsock_destroy (&self.workers);
    zsock_destroy (&self.api);
    pool_destroy (&self.pool);
    agg_destroy (&self.agg);
    model_destroy (&self.master);
    plan_destroy (&self.plan);
    dataset_destroy (&self.all);
    dataset_destroy (&self.train);
    free (self.val_targets);
    features_destroy (&self.features);
    free (self.conversions);
    step_tensors_free (&self.out);
    store_destroy (&self.store);
    return rc;
}
