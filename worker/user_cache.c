/*  user_cache: see user_cache.h. */
#include "user_cache.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef struct {
    uint64_t key;
    uint32_t generation;   // valid only when the cache's
} slot_t;

struct _user_cache_t {
    uint32_t slots, generation;
    int dim, cap_dim;      // dimensions now; the most the vectors' memory holds
    slot_t *slot;
    float *vectors;        // slots x cap_dim
    uint64_t hits, misses;
};

user_cache_t *
user_cache_new (uint32_t slots, int dim)
{
    user_cache_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->slots = slots;
    self->dim = self->cap_dim = dim;
    self->generation = 1;   // slots start at 0: empty
    if (slots) {
        self->slot = calloc (slots, sizeof *self->slot);
        self->vectors = malloc ((size_t) slots * (size_t) (dim > 0 ? dim : 1) * sizeof *self->vectors);
        if (!self->slot || !self->vectors)
            user_cache_destroy (&self);
    }
    return self;
}

void
user_cache_destroy (user_cache_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free ((*self_p)->slot);
    free ((*self_p)->vectors);
    free (*self_p);
    *self_p = NULL;
}

uint64_t
user_cache_key (const uint32_t *items, const uint8_t *types, uint32_t n)
{
    uint64_t h = util_fnv1a64 (&n, sizeof n);
    h = util_fnv1a64_add (h, items, (size_t) n * sizeof *items);
    if (types)
        h = util_fnv1a64_add (h, types, n);
    return h;
}

//  The slot of key: its bits mixed again (FNV's low bits vary little for short inputs).
static slot_t *
s_slot (user_cache_t *self, uint64_t key, size_t *index)
{
    uint64_t x = key ^ (key >> 31);
    x *= 0x9E3779B97F4A7C15ull;
    *index = (size_t) ((x >> 32) % self->slots);
    return &self->slot[*index];
}

bool
user_cache_get (user_cache_t *self, uint64_t key, float *out)
{
    if (!self->slots || self->dim <= 0) {
        self->misses++;
        return false;
    }
    size_t i;
    slot_t *s = s_slot (self, key, &i);
    if (s->generation != self->generation || s->key != key) {
        self->misses++;
        return false;
    }
    memcpy (out, self->vectors + i * (size_t) self->cap_dim, (size_t) self->dim * sizeof *out);
    self->hits++;
    return true;
}

void
user_cache_put (user_cache_t *self, uint64_t key, const float *vec)
{
    if (!self->slots || self->dim <= 0)
        return;
    size_t i;
    slot_t *s = s_slot (self, key, &i);
    s->key = key;
    s->generation = self->generation;
    memcpy (self->vectors + i * (size_t) self->cap_dim, vec, (size_t) self->dim * sizeof *vec);
}

void
user_cache_clear (user_cache_t *self, int dim)
{
    if (!self->slots)
        return;
    if (dim > self->cap_dim) {
        float *v = realloc (self->vectors, (size_t) self->slots * (size_t) dim * sizeof *v);
        if (!v) {
            self->dim = 0;   // keeps nothing until a dimension it has room for
            self->generation++;
            return;
        }
        self->vectors = v;
        self->cap_dim = dim;
    }
    self->dim = dim;
    if (++self->generation == 0) {
        //  Generations wrapped: every slot is empty again.
        memset (self->slot, 0, (size_t) self->slots * sizeof *self->slot);
        self->generation = 1;
    }
}

void
user_cache_counts (const user_cache_t *self, uint64_t *hits, uint64_t *misses)
{
    *hits = self->hits;
    *misses = self->misses;
}
