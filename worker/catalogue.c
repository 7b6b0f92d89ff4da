/*  catalogue: what the broker's catalogue says about each item index, as the serving
    core reads it per request: ids (and the id -> index map), titles, prices, the
    hashes of category levels the filters compare, and the feature hashes that give
    items the served version does not know their vectors.

    Flat arrays indexed by item, grown by doubling: a filter reads an item's price and
    categories in a few loads, for every item of the catalogue when a request filters
    the whole scan. Records written again append (their old category and feature
    hashes left unused) rather than move what others point into.
*/
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "item_features.h"
#include "rank_private.h"
#include "util.h"

int
catalogue_init (catalogue_t *c)
{
    memset (c, 0, sizeof *c);
    c->index = zhashx_new ();
    return c->index ? 0 : STRATA_ENOMEM;
}

void
catalogue_free (catalogue_t *c)
{
    for (uint32_t i = 0; i < c->n; i++) {
        free (c->ids[i]);
        free (c->titles[i]);
    }
    free (c->ids);
    free (c->titles);
    free (c->price);
    free (c->cat_at);
    free (c->cat_n);
    free (c->cat);
    free (c->fh);
    free (c->fh_at);
    free (c->fh_n);
    zhashx_destroy (&c->index);
    memset (c, 0, sizeof *c);
}

uint32_t
catalogue_level_hash (const char *s)
{
    char buf[256];
    size_t n = 0;
    for (; *s && n + 1 < sizeof buf; s++)
        buf[n++] = (char) tolower ((unsigned char) *s);
    return util_fnv1a32 (buf, n);
}

//  Keeps item i's feature hashes (i >= fh_base: the next item, or one known whose
//  record was written again).
int
catalogue_hashes (catalogue_t *c, uint32_t i, const Strata__V1__Item *it)
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
            return STRATA_ENOMEM;
        c->fh_n = nn;
        c->cap_fh_items = cap;
    }
    if (c->n_fh + (size_t) n > c->cap_fh) {
        size_t cap = (c->n_fh + (size_t) n) * 2;
        uint64_t *fh = realloc (c->fh, cap * sizeof *fh);
        if (!fh)
            return STRATA_ENOMEM;
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
void
catalogue_trim (catalogue_t *c, uint32_t base)
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
int
catalogue_describe (catalogue_t *c, uint32_t i, const Strata__V1__Item *it)
{
    if (c->n_cat + it->n_category > c->cap_cat) {
        size_t cap = (c->cap_cat ? c->cap_cat * 2 : 4096) + it->n_category;
        uint32_t *cat = realloc (c->cat, cap * sizeof *cat);
        if (!cat)
            return STRATA_ENOMEM;
        c->cat = cat;
        c->cap_cat = cap;
    }
    char *title = it->title && *it->title ? strdup (it->title) : NULL;
    if (it->title && *it->title && !title)
        return STRATA_ENOMEM;
    free (c->titles[i]);
    c->titles[i] = title;
    c->price[i] = it->has_price ? (float) it->price : NAN;
    size_t levels = it->n_category < UINT16_MAX ? it->n_category : UINT16_MAX;
    c->cat_at[i] = (uint32_t) c->n_cat;
    c->cat_n[i] = (uint16_t) levels;
    for (size_t k = 0; k < levels; k++)
        c->cat[c->n_cat++] = catalogue_level_hash (it->category[k]);
    return 0;
}

int
catalogue_add (catalogue_t *c, const Strata__V1__Item *it)
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
            return STRATA_ENOMEM;
        c->cap = cap;
    }
    c->ids[i] = strdup (it->item_id ? it->item_id : "");
    c->titles[i] = NULL;
    int rc = c->ids[i] ? catalogue_describe (c, i, it) : STRATA_ENOMEM;
    if (rc < 0) {
        free (c->ids[i]);
        return rc;
    }
    if (i >= c->fh_base && (rc = catalogue_hashes (c, i, it)) < 0)
        return rc;
    zhashx_insert (c->index, c->ids[i], (void *) (uintptr_t) (i + 1));
    c->n++;
    return 0;
}


int
catalogue_lookup (const catalogue_t *c, const char *id, uint32_t *index)
{
    void *v = id ? zhashx_lookup (c->index, id) : NULL;
    if (!v)
        return STRATA_ENOTFOUND;
    *index = (uint32_t) ((uintptr_t) v - 1);
    return 0;
}
