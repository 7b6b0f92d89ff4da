/*  item_features: see item_features.h. */
#include "item_features.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"
#include "util.h"
#include "wire.h"

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

features_t *
features_fetch (const char *endpoint, uint32_t rows, uint32_t n_items, int timeout_ms, features_item_fn *each,
                void *arg, char *err, size_t errlen)
{
    builder_t b = { 0 };
    uint32_t start = 0, count = 0;
    size_t described = 0;
    int ok = 1;
    //  Items arrive in index order; an index the pages skip has no features.
    uint32_t cap_items = n_items + 1;
    b.offsets = calloc ((size_t) cap_items + 1, sizeof *b.offsets);
    ok = b.offsets != NULL;
    uint32_t next = 0;   // next item index whose offset is not yet written
    for (bool done = false; ok && !done;) {
        Strata__V1__CatalogueRequest req = STRATA__V1__CATALOGUE_REQUEST__INIT;
        req.start_item = start;
        Strata__V1__CatalogueReply *r = (Strata__V1__CatalogueReply *) client_request (
            endpoint, WIRE_CATALOGUE, &req.base, WIRE_CATALOGUE_REPLY, &strata__v1__catalogue_reply__descriptor,
            timeout_ms, err, errlen);
        if (!r) {
            ok = 0;
            break;
        }
        count = r->item_count;
        if (count + 1 > cap_items) {
            uint32_t *o = realloc (b.offsets, ((size_t) count + 2) * sizeof *o);
            if (!o) {
                strata__v1__catalogue_reply__free_unpacked (r, NULL);
                ok = 0;
                break;
            }
            b.offsets = o;
            cap_items = count + 1;
        }
        for (size_t i = 0; ok && i < r->n_items; i++) {
            const Strata__V1__Item *it = r->items[i];
            if (it->item_index < next || it->item_index >= cap_items)
                continue;
            while (next <= it->item_index)
                b.offsets[next++] = (uint32_t) b.n;
            size_t before = b.n;
            ok = s_item (&b, rows, it) == 0 && (!each || each (it, arg) == 0);
            described += b.n > before;
        }
        done = r->done || r->next_item <= start;
        start = r->next_item;
        strata__v1__catalogue_reply__free_unpacked (r, NULL);
    }
    if (!ok) {
        free (b.offsets);
        free (b.feats);
        if (!*err)
            snprintf (err, errlen, "out of memory");
        return NULL;
    }
    uint32_t total = count > n_items ? count : n_items;
    if (total + 1 > cap_items) {
        uint32_t *o = realloc (b.offsets, ((size_t) total + 2) * sizeof *o);
        if (!o) {
            free (b.offsets);
            free (b.feats);
            snprintf (err, errlen, "out of memory");
            return NULL;
        }
        b.offsets = o;
    }
    while (next <= total)
        b.offsets[next++] = (uint32_t) b.n;
    features_t *f = calloc (1, sizeof *f);
    if (!f) {
        free (b.offsets);
        free (b.feats);
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    f->n_items = total;
    f->rows = rows;
    f->offsets = b.offsets;
    f->feats = b.feats ? b.feats : calloc (1, sizeof *f->feats);
    f->n_described = described;
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
