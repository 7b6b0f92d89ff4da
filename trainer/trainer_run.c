/*  trainer_run: the trainer's run state machine.

    Data (the broker's histories and catalogue, the validation split, the search
    ranker's fit), the run's state (checkpoints, publishing a version, validation), a
    run's epochs from start to end, continuous training's polls of the broker, and the
    resumption of an interrupted run from the checkpoint after a restart.
*/
#define LOG_MODULE "trainer"
#include "trainer_private.h"

#include <cblas.h>
#include <czmq.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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

//  Asks the broker how many events it holds. 0, or STRATA_EUNAVAILABLE with err:
//  client_request says only NULL (no answer in time, a refusal, a reply that does not
//  decode), and for the trainer each means the broker cannot tell it now.
static int
s_broker_events (trainer_t *self, uint64_t *events, char *err, size_t errlen)
{
    Strata__V1__StatsRequest req = STRATA__V1__STATS_REQUEST__INIT;
    Strata__V1__Stats *st = (Strata__V1__Stats *) client_request (self->cfg->broker, WIRE_STATS, &req.base,
                                                                 WIRE_STATS_REPLY, &strata__v1__stats__descriptor,
                                                                 (int) self->cfg->timeout_ms, err, errlen);
    if (!st)
        return STRATA_EUNAVAILABLE;
    *events = st->events;
    strata__v1__stats__free_unpacked (st, NULL);
    return 0;
}

//  Builds the plan for the current training view with the given shard count. 0 or
//  STRATA_ENOMEM.
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
    return self->plan ? 0 : STRATA_ENOMEM;
}

//  Fetches the broker's data; changed (when not NULL) receives the users whose
//  histories grew since the previous fetch. 0, or with self->message
//  STRATA_EUNAVAILABLE (the broker did not give the data) or STRATA_ENOMEM.
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
    while (search_index_size (b->index) < item->item_index) {
        int rc = search_index_add (b->index, search_index_size (b->index), &empty);
        if (rc < 0)
            return rc;
    }
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
    int rc = search_ranker_fit (index, choices, self->conversions, n, &self->ranker);
    if (rc == STRATA_ENOTFOUND) {
        log_info ("search ranker: none of %u past queries has a chosen item among its candidates", choices->n);
        return;
    }
    if (rc < 0) {
        log_warn ("search ranker: %s; none this version", strata_strerror (rc));
        return;
    }
    self->has_ranker = true;
    self->ranker_fnv = choices_fnv;
    log_info ("search ranker: fitted on %u of %u past queries in %.1fs, cross-entropy %.3f (text score alone %.3f)",
              self->ranker.queries, choices->n, (double) (util_mono_ms () - t0) / 1000, self->ranker.loss,
              self->ranker.base_loss);
}

int
trainer_load_data (trainer_t *self, uint32_t **changed, uint32_t *n_changed)
{
    char err[256];
    uint64_t before = 0;
    int rc = s_broker_events (self, &before, err, sizeof err);
    if (rc < 0) {
        snprintf (self->message, sizeof self->message, "broker: %s", err);
        return rc;
    }
    int64_t t0 = util_mono_ms ();
    dataset_t *all = dataset_fetch (self->cfg->broker, (int) self->cfg->timeout_ms, err, sizeof err);
    if (!all) {
        snprintf (self->message, sizeof self->message, "broker: %s", err);
        return STRATA_EUNAVAILABLE;   // as s_broker_events: the broker cannot give it now
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
        return STRATA_ENOMEM;
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
            return STRATA_EUNAVAILABLE;
        }
        if (self->features->n_described == 0)
            features_destroy (&self->features);
    }
    s_fit_search (self, ib.index, keep, choices_fnv);
    search_index_destroy (&ib.index);
    if (self->master)
        model_set_features (self->master, self->features);
    if (self->master && model_rows (self->master) < all->n_items) {
        if ((rc = model_resize_rows (self->master, all->n_items)) < 0 || (rc = agg_resize (self->agg)) < 0) {
            snprintf (self->message, sizeof self->message, "out of memory growing the item table");
            return rc;
        }
    }
    log_info ("data: %u users, %u items (%zu described by the catalogue), %zu events (%u validation users held out), "
              "fetched in %.1fs",
              all->n_users, all->n_items, self->features ? self->features->n_described : 0, all->n_events,
              self->val_users, (double) (util_mono_ms () - t0) / 1000);
    return 0;
}

void
trainer_timer_stop (trainer_t *self)
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
        trainer_mode_name (self->mode), "epoch", (int) self->epoch, "epochs", (int) self->epochs, "steps_done",
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

void
trainer_checkpoint (trainer_t *self)
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
    if (!blob
        || versions_put (self->store, CKPT_CF_MODELS, self->version, blob, len, VERSIONS_CHUNK_BYTES, 0, meta,
                         (int) self->cfg->keep_versions)
               < 0)
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
int
trainer_start_run (trainer_t *self, bool incremental, uint32_t epochs, Strata__V1__TrainMode mode,
                   const uint32_t *users, uint32_t n_users)
{
    trainer_tasks_clear (self);
    self->mode = mode;
    int shards = mode == STRATA__V1__TRAIN_MODE__ASYNC ? 1 : (int) self->cfg->hyper.shards;
    int rc = s_build_plan (self, shards);
    if (rc == 0)
        rc = plan_set_users (self->plan, users, n_users);
    if (rc < 0) {
        snprintf (self->message, sizeof self->message, "out of memory for the plan");
        return rc;
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
            return STRATA_ENOMEM;
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
              (unsigned long long) self->run_id, epochs, trainer_mode_name (mode), plan_users (self->plan), self->steps);
    trainer_checkpoint (self);
    return 0;
}

void
trainer_end_epoch (trainer_t *self)
{
    trainer_timer_stop (self);
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
    trainer_checkpoint (self);
}

//  Continuous training: new events since the model's data start an incremental run.
void
trainer_poll (trainer_t *self)
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
        if (trainer_load_data (self, NULL, NULL) == 0 && self->all->n_events > 0)
            trainer_start_run (self, false, (uint32_t) self->cfg->epochs, mode, NULL, 0);
        return;
    }
    if (events <= self->broker_events)
        return;
    if (events - self->broker_events < (uint64_t) self->cfg->retrain_events
        && now - self->last_update < self->cfg->retrain_secs * 1000)
        return;
    uint32_t *changed = NULL, n_changed = 0;
    uint64_t fresh = events - self->broker_events;
    if (trainer_load_data (self, &changed, &n_changed) < 0) {
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
    trainer_start_run (self, true, (uint32_t) self->cfg->incremental_epochs, self->mode ? self->mode : STRATA__V1__TRAIN_MODE__SYNC,
                 changed, n_changed);
    free (changed);
}

//  Resumes from the checkpoint, if any: the model, and an interrupted full run.
void
trainer_resume (trainer_t *self)
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
    for (int tries = 0; trainer_load_data (self, NULL, NULL) < 0; tries++) {
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
                  self->steps_done, self->steps, trainer_mode_name (self->mode));
    }
    else
        log_info ("loaded model version %llu from the checkpoint", (unsigned long long) self->version);
}
