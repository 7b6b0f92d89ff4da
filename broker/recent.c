/*  recent: see recent.h. */
#include "recent.h"

#include <stdlib.h>
#include <string.h>

//  One cached event, compact: an Interaction is three times its size.
typedef struct {
    int64_t timestamp_ms;
    uint32_t item;
    float value;
    int32_t type;
} event_t;

typedef struct {
    uint32_t user;     // whose history; meaningful when ev is set
    uint32_t max;      // the length it was read for
    uint32_t n;
    event_t *ev;       // NULL: empty slot (a history of no events still has a block)
} slot_t;

struct _recent_t {
    uint32_t slots;
    slot_t *slot;
    uint64_t hits, misses;
};

recent_t *
recent_new (uint32_t slots)
{
    recent_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->slots = slots;
    self->slot = calloc (slots ? slots : 1, sizeof *self->slot);
    if (!self->slot) {
        free (self);
        return NULL;
    }
    return self;
}

void
recent_destroy (recent_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    recent_t *self = *self_p;
    for (uint32_t i = 0; i < self->slots; i++)
        free (self->slot[i].ev);
    free (self->slot);
    free (self);
    *self_p = NULL;
}

static slot_t *
s_slot (recent_t *self, uint32_t user)
{
    return self->slots ? &self->slot[user % self->slots] : NULL;
}

int
recent_get (recent_t *self, uint32_t user, uint32_t max, arena_t *arena, Strata__V1__Interaction ***out)
{
    slot_t *s = s_slot (self, user);
    if (!s || !s->ev || s->user != user || s->max != max) {
        self->misses++;
        return STRATA_ENOTFOUND;
    }
    Strata__V1__Interaction **h = arena_calloc (arena, s->n + 1, sizeof *h);
    Strata__V1__Interaction *x = arena_calloc (arena, s->n + 1, sizeof *x);
    if (!h || !x)
        return STRATA_ENOMEM;
    for (uint32_t i = 0; i < s->n; i++) {
        strata__v1__interaction__init (&x[i]);
        x[i].item = s->ev[i].item;
        x[i].type = (Strata__V1__EventType) s->ev[i].type;
        x[i].timestamp_ms = s->ev[i].timestamp_ms;
        x[i].value = s->ev[i].value;
        h[i] = &x[i];
    }
    *out = h;
    self->hits++;
    return (int) s->n;
}

void
recent_put (recent_t *self, uint32_t user, uint32_t max, Strata__V1__Interaction *const *h, int n)
{
    slot_t *s = s_slot (self, user);
    if (!s || n < 0)
        return;
    event_t *ev = malloc ((size_t) (n ? n : 1) * sizeof *ev);
    if (!ev)
        return;
    for (int i = 0; i < n; i++)
        ev[i] = (event_t) { h[i]->timestamp_ms, h[i]->item, h[i]->value, (int32_t) h[i]->type };
    free (s->ev);
    *s = (slot_t) { user, max, (uint32_t) n, ev };
}

void
recent_drop (recent_t *self, uint32_t user)
{
    slot_t *s = s_slot (self, user);
    if (s && s->ev && s->user == user) {
        free (s->ev);
        s->ev = NULL;
    }
}

void
recent_counts (recent_t *self, uint64_t *hits, uint64_t *misses)
{
    *hits = self->hits;
    *misses = self->misses;
}
