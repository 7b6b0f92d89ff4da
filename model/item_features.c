/*  item_features: see item_features.h. */
#include "item_features.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata.pb-c.h"
#include "strata_error.h"
#include "util.h"

static uint64_t
s_hash (const char *kind, const char *value)
{
    uint64_t h = util_fnv1a64 (kind, strlen (kind));
    h = util_fnv1a64_add (h, ":", 1);
    return util_fnv1a64_add (h, value, strlen (value));
}

static void
s_add (uint64_t *out, int cap, int *n, uint64_t h)
{
    for (int k = 0; k < *n; k++)
        if (out[k] == h)
            return;
    if (*n < cap)
        out[(*n)++] = h;
}

int
features_hashes (const Strata__V1__Item *it, uint64_t *out, int cap)
{
    int n = 0;
    if (it->brand && *it->brand)
        s_add (out, cap, &n, s_hash ("b", it->brand));
    char path[1024] = "";
    for (size_t i = 0; i < it->n_category; i++) {
        size_t len = strlen (path);
        snprintf (path + len, sizeof path - len, "%s%s", i ? " > " : "", it->category[i]);
        s_add (out, cap, &n, s_hash ("c", path));
    }
    if (it->has_price && it->price > 0) {
        char bucket[16];
        snprintf (bucket, sizeof bucket, "%d", (int) floor (2 * log2 (1 + it->price)));
        s_add (out, cap, &n, s_hash ("p", bucket));
    }
    for (size_t i = 0; i < it->n_attributes; i++) {
        char kv[1024];
        snprintf (kv, sizeof kv, "%s=%s", it->attributes[i]->key, it->attributes[i]->value);
        s_add (out, cap, &n, s_hash ("a", kv));
    }
    for (size_t i = 0; i < it->n_tokens; i++)
        s_add (out, cap, &n, s_hash ("t", it->tokens[i]));
    return n;
}

typedef struct {
    uint32_t *offsets, *feats;
    size_t n, cap;
    uint32_t items;
} builder_t;

static int
s_append (builder_t *b, uint32_t row)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1 << 16;
        uint32_t *f = realloc (b->feats, cap * sizeof *f);
        if (!f)
            return -1;
        b->feats = f;
        b->cap = cap;
    }
    b->feats[b->n++] = row;
    return 0;
}

int
features_rows_of (const uint64_t *hashes, int n, uint32_t rows, uint32_t *out)
{
    int m = 0;
    for (int k = 0; k < n && rows && m < FEATURES_PER_ITEM; k++) {
        uint32_t r = (uint32_t) (hashes[k] % rows);
        int seen = 0;
        for (int j = 0; j < m && !seen; j++)
            seen = out[j] == r;
        if (!seen)
            out[m++] = r;
    }
    return m;
}

//  Appends item's features (the item's row in offsets must be the next one).
static int
s_item (builder_t *b, uint32_t rows, const Strata__V1__Item *it)
{
    uint64_t h[2 * FEATURES_PER_ITEM];
    uint32_t r[FEATURES_PER_ITEM];
    int m = features_rows_of (h, features_hashes (it, h, 2 * FEATURES_PER_ITEM), rows, r);
    for (int k = 0; k < m; k++)
        if (s_append (b, r[k]) < 0)
            return -1;
    return 0;
}

struct _features_builder_t {
    builder_t b;
    uint32_t rows;
    uint32_t cap_items;   // offsets has room for cap_items + 1 entries
    uint32_t next;        // next item index whose offset is not yet written
    size_t described;
};

features_builder_t *
features_builder_new (uint32_t rows, uint32_t n_items)
{
    features_builder_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->rows = rows;
    self->cap_items = n_items + 1;
    self->b.offsets = calloc ((size_t) self->cap_items + 1, sizeof *self->b.offsets);
    if (!self->b.offsets)
        features_builder_destroy (&self);
    return self;
}

void
features_builder_destroy (features_builder_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free ((*self_p)->b.offsets);
    free ((*self_p)->b.feats);
    free (*self_p);
    *self_p = NULL;
}

//  Room for the offsets of items up to `items`. 0 or -1.
static int
s_reserve (features_builder_t *self, uint32_t items)
{
    if (items + 1 <= self->cap_items)
        return 0;
    uint32_t *o = realloc (self->b.offsets, ((size_t) items + 2) * sizeof *o);
    if (!o)
        return -1;
    self->b.offsets = o;
    self->cap_items = items + 1;
    return 0;
}

int
features_builder_expect (features_builder_t *self, uint32_t items)
{
    return s_reserve (self, items) < 0 ? STRATA_ENOMEM : 0;
}

int
features_builder_add (features_builder_t *self, const Strata__V1__Item *it)
{
    if (it->item_index < self->next || it->item_index >= self->cap_items)
        return 1;
    while (self->next <= it->item_index)
        self->b.offsets[self->next++] = (uint32_t) self->b.n;
    size_t before = self->b.n;
    if (s_item (&self->b, self->rows, it) < 0)
        return STRATA_ENOMEM;
    self->described += self->b.n > before;
    return 0;
}

features_t *
features_builder_finish (features_builder_t **self_p, uint32_t n_items)
{
    features_builder_t *self = *self_p;
    features_t *f = calloc (1, sizeof *f);
    if (!f || s_reserve (self, n_items) < 0) {
        free (f);
        features_builder_destroy (self_p);
        return NULL;
    }
    while (self->next <= n_items)
        self->b.offsets[self->next++] = (uint32_t) self->b.n;
    f->n_items = n_items;
    f->rows = self->rows;
    f->offsets = self->b.offsets;
    f->feats = self->b.feats ? self->b.feats : calloc (1, sizeof *f->feats);
    f->n_described = self->described;
    self->b.offsets = NULL;
    self->b.feats = NULL;
    features_builder_destroy (self_p);
    if (!f->feats)
        features_destroy (&f);
    return f;
}

features_t *
features_from_lists (uint32_t n_items, uint32_t rows, const uint32_t *offsets, const uint32_t *feats)
{
    features_t *f = calloc (1, sizeof *f);
    if (!f)
        return NULL;
    size_t n = offsets[n_items];
    f->n_items = n_items;
    f->rows = rows;
    f->offsets = malloc (((size_t) n_items + 1) * sizeof *f->offsets);
    f->feats = malloc ((n ? n : 1) * sizeof *f->feats);
    if (!f->offsets || !f->feats) {
        features_destroy (&f);
        return NULL;
    }
    memcpy (f->offsets, offsets, ((size_t) n_items + 1) * sizeof *offsets);
    memcpy (f->feats, feats, n * sizeof *feats);
    for (uint32_t i = 0; i < n_items; i++)
        f->n_described += offsets[i + 1] > offsets[i];
    return f;
}

void
features_destroy (features_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free ((*self_p)->offsets);
    free ((*self_p)->feats);
    free (*self_p);
    *self_p = NULL;
}
