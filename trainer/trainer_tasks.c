/*  trainer_tasks: the trainer's task queue and gradient aggregation.

    A step's shards are tasks; each pending task goes to the least-loaded train worker
    with the parameters its shard needs, and a worker lost mid-task has its tasks given
    again (the rebuilt shard is the same shard). Gradients are added in shard order
    (sync) or as they arrive within the staleness bound (async), see trainer.h.
*/
#define LOG_MODULE "trainer"
#include "trainer_private.h"

#include <cblas.h>
#include <czmq.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void
s_task_free (task_t *t)
{
    plan_shard_free (&t->sh);
    if (t->grad)
        strata__v1__train_gradient__free_unpacked (t->grad, NULL);
    memset (t, 0, sizeof *t);
}

void
trainer_tasks_clear (trainer_t *self)
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

//  Queues a shard of a step. 0, STRATA_ETOOLARGE (the queue is full) or plan_shard's
//  code.
static int
s_add_task (trainer_t *self, uint32_t step, int shard)
{
    if (self->n_tasks == MAX_TASKS)
        return STRATA_ETOOLARGE;
    task_t *t = &self->tasks[self->n_tasks];
    memset (t, 0, sizeof *t);
    int rc = plan_shard (self->plan, step, shard, &t->sh);
    if (rc < 0)
        return rc;
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

void
trainer_dispatch (trainer_t *self)
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
    trainer_tasks_clear (self);
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

void
trainer_pump (trainer_t *self)
{
    while (self->running && !self->fatal) {
        if (self->mode == STRATA__V1__TRAIN_MODE__SYNC) {
            if (self->n_tasks == 0 && self->steps_done < self->steps) {
                //  Between steps nothing is in flight: the moment to checkpoint.
                if (self->steps_done > 0 && util_mono_ms () - self->last_ckpt >= self->cfg->checkpoint_secs * 1000)
                    trainer_checkpoint (self);
                for (int k = 0; k < self->plan_shards; k++) {
                    int rc = s_add_task (self, self->steps_done, k);
                    if (rc < 0) {
                        log_error ("cannot plan step %u: %s", self->steps_done, strata_strerror (rc));
                        self->fatal = true;
                        return;
                    }
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
                trainer_checkpoint (self);
        }
        if (self->steps_done >= self->steps && self->n_tasks == 0) {
            trainer_end_epoch (self);
            continue;
        }
        break;
    }
    trainer_dispatch (self);
}

//  Whether n floats are all finite (a NaN or an infinity would spread through Adam to
//  every weight it touches).
static bool
s_finite (const float *x, size_t n)
{
    float acc = 0;
    for (size_t i = 0; i < n; i++)
        acc += x[i] * 0.0f;   // NaN for a NaN or an infinity, 0 otherwise
    return acc == 0;
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
    //  Only the worker the task was sent to may answer it: a gradient from any other
    //  peer (one that never registered, or guessed a task id) would write into the
    //  model.
    if (!w || !pool_complete_on (self->pool, w, g->task_id)) {
        log_warn ("GRADIENT for task %llu from %s, which does not hold it; ignored", (unsigned long long) g->task_id,
                  w ? w->id : "an unregistered peer");
        self->refused++;
        strata__v1__train_gradient__free_unpacked (g, NULL);
        return;
    }
    task_t *t = s_task_find (self, g->task_id);
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
    else if (!s_finite (wire_floats (g->dense, dn), dn) || !s_finite (wire_floats (g->rows, rn), rn)
             || !s_finite (wire_floats (g->feats, fn), fn))
        bad = "gradient is not finite";
    if (bad) {
        log_warn ("task %llu (step %u shard %d) failed on %s: %s", (unsigned long long) t->task_id, t->step, t->shard,
                  w ? w->id : "?", bad);
        t->state = TASK_PENDING;
        t->task_id = 0;
        if (++t->failures >= 3) {
            snprintf (self->message, sizeof self->message, "a shard failed 3 times: %s", bad);
            log_error ("%s; the run stops", self->message);
            trainer_tasks_clear (self);
            trainer_timer_stop (self);
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

void
trainer_handle_workers (trainer_t *self)
{
    for (int i = 0; i < 64; i++) {
        wire_msg_t msg;
        int rc = trainer_recv (self->workers, (size_t) self->cfg->max_frame, "worker", &msg);
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

void
trainer_heartbeat (trainer_t *self)
{
    pool_expire (self->pool, util_mono_ms (), s_requeue, self);
    Strata__V1__Heartbeat hb = STRATA__V1__HEARTBEAT__INIT;
    for (pool_worker_t *w = pool_first (self->pool); w; w = pool_next (self->pool))
        wire_send (self->workers, w->identity, WIRE_HEARTBEAT, &hb.base);
}
