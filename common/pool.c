/*  pool: see pool.h. */
#define LOG_MODULE "pool"
#include "pool.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

struct _pool_t {
    zhashx_t *workers;   // hex(routing id) -> pool_worker_t
    int64_t heartbeat_ms;
    int64_t liveness;
    uint64_t assigned;   // jobs assigned so far
};

static void
s_worker_free (void **item)
{
    pool_worker_t *w = *item;
    if (!w)
        return;
    zframe_destroy (&w->identity);
    free (w->id);
    free (w->slots);
    free (w);
    *item = NULL;
}

static void
s_key (zframe_t *identity, char *out, size_t cap)
{
    const unsigned char *d = zframe_data (identity);
    size_t n = zframe_size (identity);
    size_t o = 0;
    for (size_t i = 0; i < n && o + 2 < cap; i++)
        o += (size_t) snprintf (out + o, cap - o, "%02x", d[i]);
    out[o] = 0;
}

pool_t *
pool_new (int64_t heartbeat_ms, int64_t liveness)
{
    pool_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->workers = zhashx_new ();
    zhashx_set_destructor (self->workers, s_worker_free);
    self->heartbeat_ms = heartbeat_ms;
    self->liveness = liveness;
    return self;
}

void
pool_destroy (pool_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zhashx_destroy (&(*self_p)->workers);
    free (*self_p);
    *self_p = NULL;
}

pool_worker_t *
pool_lookup (pool_t *self, zframe_t *identity)
{
    char key[600];
    s_key (identity, key, sizeof key);
    return zhashx_lookup (self->workers, key);
}

static void
s_requeue_all (pool_worker_t *w, pool_requeue_fn *requeue, void *arg)
{
    for (uint32_t i = 0; i < w->capacity; i++)
        if (w->slots[i]) {
            if (requeue)
                requeue (w->slots[i], arg);
            w->slots[i] = 0;
        }
    w->inflight = 0;
    w->messages = 0;
}

pool_worker_t *
pool_register (pool_t *self, zframe_t *identity, const Strata__V1__WorkerHello *hello, pool_requeue_fn *requeue,
               void *arg)
{
    char key[600];
    s_key (identity, key, sizeof key);
    pool_worker_t *old = zhashx_lookup (self->workers, key);
    if (old) {
        s_requeue_all (old, requeue, arg);
        zhashx_delete (self->workers, key);
    }
    //  The same process on a new connection (it reconnected): what it held on the old
    //  one will not be answered there, and need not wait for the old one to expire.
    zlist_t *stale = zlist_new ();
    for (pool_worker_t *w = zhashx_first (self->workers); w && stale; w = zhashx_next (self->workers))
        if (hello->pid && w->pid == hello->pid && !strcmp (w->id, hello->worker_id ? hello->worker_id : ""))
            zlist_append (stale, w);
    for (pool_worker_t *w = stale ? zlist_first (stale) : NULL; w; w = zlist_next (stale)) {
        log_info ("worker %s (pid %u) reconnected; requeueing the %u jobs of its old connection", w->id, w->pid,
                  w->inflight);
        pool_remove (self, w, requeue, arg);
    }
    zlist_destroy (&stale);
    pool_worker_t *w = calloc (1, sizeof *w);
    if (!w)
        return NULL;
    w->identity = zframe_dup (identity);
    w->id = strdup (hello->worker_id ? hello->worker_id : "");
    w->role = hello->role;
    w->capacity = hello->capacity ? hello->capacity : 1;
    if (w->capacity > 64)
        w->capacity = 64;
    w->pid = hello->pid;
    w->slots = calloc (w->capacity, sizeof *w->slots);
    if (!w->id || !w->slots) {
        void *p = w;
        s_worker_free (&p);
        return NULL;
    }
    zhashx_insert (self->workers, key, w);
    pool_touch (self, w);
    return w;
}

void
pool_touch (pool_t *self, pool_worker_t *w)
{
    w->heard = zclock_mono ();
    w->expiry = w->heard + self->heartbeat_ms * self->liveness;
}

pool_worker_t *
pool_least_loaded_within (pool_t *self, Strata__V1__Role role, uint32_t max_messages, const pool_worker_t *except)
{
    pool_worker_t *best = NULL;
    for (pool_worker_t *w = zhashx_first (self->workers); w; w = zhashx_next (self->workers)) {
        if (w->role != role || w->inflight >= w->capacity || w == except)
            continue;
        if (!w->inflight)
            w->messages = 0;
        if (max_messages && w->messages >= max_messages)
            continue;
        if (!best || w->inflight < best->inflight
            || (w->inflight == best->inflight && w->last_assigned < best->last_assigned))
            best = w;   // ties: the one served longest ago, so idle workers take turns
    }
    return best;
}

pool_worker_t *
pool_least_loaded (pool_t *self, Strata__V1__Role role)
{
    return pool_least_loaded_within (self, role, 0, NULL);
}

void
pool_assign (pool_t *self, pool_worker_t *w, uint64_t seq)
{
    w->last_assigned = ++self->assigned;
    for (uint32_t i = 0; i < w->capacity; i++)
        if (!w->slots[i]) {
            w->slots[i] = seq;
            w->inflight++;
            return;
        }
}

pool_worker_t *
pool_complete (pool_t *self, uint64_t seq)
{
    for (pool_worker_t *w = zhashx_first (self->workers); w; w = zhashx_next (self->workers))
        if (pool_complete_on (self, w, seq))
            return w;
    return NULL;
}

bool
pool_complete_on (pool_t *self, pool_worker_t *w, uint64_t seq)
{
    (void) self;
    for (uint32_t i = 0; i < w->capacity; i++)
        if (w->slots[i] == seq) {
            w->slots[i] = 0;
            w->inflight--;
            w->jobs_done++;
            return true;
        }
    return false;
}

pool_worker_t *
pool_holder (pool_t *self, uint64_t seq)
{
    for (pool_worker_t *w = zhashx_first (self->workers); w; w = zhashx_next (self->workers))
        for (uint32_t i = 0; i < w->capacity; i++)
            if (w->slots[i] == seq)
                return w;
    return NULL;
}

void
pool_remove (pool_t *self, pool_worker_t *w, pool_requeue_fn *requeue, void *arg)
{
    char key[600];
    s_key (w->identity, key, sizeof key);
    s_requeue_all (w, requeue, arg);
    zhashx_delete (self->workers, key);
}

size_t
pool_expire (pool_t *self, int64_t now, pool_requeue_fn *requeue, void *arg)
{
    size_t n = 0;
    //  Collect first: deleting while iterating a zhashx is not allowed.
    zlist_t *dead = zlist_new ();
    for (pool_worker_t *w = zhashx_first (self->workers); w; w = zhashx_next (self->workers))
        if (w->expiry < now)
            zlist_append (dead, w);
    for (pool_worker_t *w = zlist_first (dead); w; w = zlist_next (dead)) {
        log_warn ("worker %s (pid %u) missed its heartbeats; requeueing %u jobs", w->id, w->pid, w->inflight);
        pool_remove (self, w, requeue, arg);
        n++;
    }
    zlist_destroy (&dead);
    return n;
}

pool_worker_t *
pool_first (pool_t *self)
{
    return zhashx_first (self->workers);
}

pool_worker_t *
pool_next (pool_t *self)
{
    return zhashx_next (self->workers);
}

size_t
pool_size (pool_t *self)
{
    return zhashx_size (self->workers);
}

size_t
pool_inflight (pool_t *self)
{
    size_t n = 0;
    for (pool_worker_t *w = zhashx_first (self->workers); w; w = zhashx_next (self->workers))
        n += w->inflight;
    return n;
}

size_t
pool_count (pool_t *self, Strata__V1__Role role)
{
    size_t n = 0;
    for (pool_worker_t *w = pool_first (self); w; w = pool_next (self))
        n += w->role == role;
    return n;
}
