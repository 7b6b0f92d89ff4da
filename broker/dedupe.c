/*  dedupe: see dedupe.h. */
#include "dedupe.h"

#include <stdlib.h>

#include "util.h"

typedef struct {
    uint64_t hash;
    int64_t ts;
    uint32_t user;
} __attribute__ ((packed)) slot_t;

struct _dedupe_t {
    slot_t *slots;
    size_t mask;
    size_t count;
};

static int
s_alloc (dedupe_t *self, size_t cap)
{
    self->slots = calloc (cap, sizeof (slot_t));
    if (!self->slots)
        return -1;
    self->mask = cap - 1;
    return 0;
}

dedupe_t *
dedupe_new (size_t expected)
{
    dedupe_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    size_t cap = 1024;
    while (cap < expected * 2)
        cap <<= 1;
    if (s_alloc (self, cap) < 0) {
        free (self);
        return NULL;
    }
    return self;
}

void
dedupe_destroy (dedupe_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free ((*self_p)->slots);
    free (*self_p);
    *self_p = NULL;
}

uint64_t
dedupe_hash (const char *event_id, size_t len)
{
    uint64_t h = util_fnv1a64 (event_id, len);
    return h ? h : 1;
}

//  FNV's low bits are well mixed for short ids, but mix once more so that ids that
//  differ only in their last characters do not cluster.
static size_t
s_index (uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (size_t) h;
}

bool
dedupe_find (dedupe_t *self, uint64_t hash, uint32_t *user, int64_t *ts)
{
    for (size_t i = s_index (hash) & self->mask;; i = (i + 1) & self->mask) {
        slot_t *s = &self->slots[i];
        if (s->hash == 0)
            return false;
        if (s->hash == hash) {
            *user = s->user;
            *ts = s->ts;
            return true;
        }
    }
}

static void
s_put (slot_t *slots, size_t mask, uint64_t hash, uint32_t user, int64_t ts)
{
    size_t i = s_index (hash) & mask;
    while (slots[i].hash && slots[i].hash != hash)
        i = (i + 1) & mask;
    if (!slots[i].hash) {
        slots[i].hash = hash;
        slots[i].user = user;
        slots[i].ts = ts;
    }
}

int
dedupe_insert (dedupe_t *self, uint64_t hash, uint32_t user, int64_t ts)
{
    //  Keep the load under 0.7 so probes stay short.
    if ((self->count + 1) * 10 > (self->mask + 1) * 7) {
        size_t cap = (self->mask + 1) * 2;
        slot_t *old = self->slots;
        size_t old_cap = self->mask + 1;
        if (s_alloc (self, cap) < 0) {
            self->slots = old;
            return -1;
        }
        for (size_t i = 0; i < old_cap; i++)
            if (old[i].hash)
                s_put (self->slots, self->mask, old[i].hash, old[i].user, old[i].ts);
        free (old);
    }
    uint32_t u;
    int64_t t;
    if (dedupe_find (self, hash, &u, &t))
        return 0;
    s_put (self->slots, self->mask, hash, user, ts);
    self->count++;
    return 0;
}

size_t
dedupe_size (dedupe_t *self)
{
    return self->count;
}

size_t
dedupe_bytes (dedupe_t *self)
{
    return (self->mask + 1) * sizeof (slot_t);
}
