/*  dataset: see dataset.h. */
#include "dataset.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"
#include "wire.h"

static dataset_t *
s_alloc (uint32_t n_users, uint32_t n_items, size_t n_events)
{
    dataset_t *d = calloc (1, sizeof *d);
    if (!d)
        return NULL;
    d->n_users = n_users;
    d->n_items = n_items;
    d->n_events = n_events;
    d->offsets = calloc ((size_t) n_users + 1, sizeof *d->offsets);
    d->items = malloc ((n_events + 1) * sizeof *d->items);
    d->types = malloc (n_events + 1);
    d->ts = malloc ((n_events + 1) * sizeof *d->ts);
    if (!d->offsets || !d->items || !d->types || !d->ts)
        dataset_destroy (&d);
    return d;
}

void
dataset_destroy (dataset_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dataset_t *d = *self_p;
    free (d->offsets);
    free (d->items);
    free (d->types);
    free (d->ts);
    query_terms_destroy (&d->terms);
    query_terms_destroy (&d->choices);
    free (d);
    *self_p = NULL;
}

typedef struct {
    uint32_t user, item;
    uint8_t type;
    int64_t ts;
    size_t order;
} row_t;

static int
s_row_cmp (const void *a, const void *b)
{
    const row_t *x = a, *y = b;
    if (x->user != y->user)
        return x->user < y->user ? -1 : 1;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

dataset_t *
dataset_from_arrays (uint32_t n_users, uint32_t n_items, size_t n, const uint32_t *users, const uint32_t *items,
                     const uint8_t *types, const int64_t *ts)
{
    row_t *rows = malloc ((n + 1) * sizeof *rows);
    if (!rows)
        return NULL;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (users[i] < n_users && items[i] < n_items)
            rows[m++] = (row_t) { users[i], items[i], types ? types[i] : 0, ts ? ts[i] : (int64_t) i, i };
    qsort (rows, m, sizeof *rows, s_row_cmp);
    dataset_t *d = s_alloc (n_users, n_items, m);
    if (d) {
        for (size_t i = 0; i < m; i++) {
            d->items[i] = rows[i].item;
            d->types[i] = rows[i].type;
            d->ts[i] = rows[i].ts;
            d->offsets[rows[i].user + 1]++;
        }
        for (uint32_t u = 0; u < n_users; u++)
            d->offsets[u + 1] += d->offsets[u];
    }
    free (rows);
    return d;
}

dataset_t *
dataset_fetch (const char *endpoint, int timeout_ms, char *err, size_t errlen)
{
    //  Pages arrive in user order; collect them as rows, then build once.
    size_t cap = 1 << 16, n = 0;
    uint32_t *users = malloc (cap * sizeof *users), *items = malloc (cap * sizeof *items);
    uint8_t *types = malloc (cap);
    int64_t *ts = malloc (cap * sizeof *ts);
    uint32_t n_users = 0, n_items = 0, start = 0;
    qt_builder_t *qt = qt_builder_new ();
    bool done = false, ok = users && items && types && ts && qt;
    while (ok && !done) {
        Strata__V1__HistoryRequest req = STRATA__V1__HISTORY_REQUEST__INIT;
        req.start_user = start;
        Strata__V1__HistoryReply *r = (Strata__V1__HistoryReply *) client_request (
            endpoint, WIRE_HISTORY, &req.base, WIRE_HISTORY_REPLY, &strata__v1__history_reply__descriptor, timeout_ms,
            err, errlen);
        if (!r) {
            ok = false;
            break;
        }
        n_users = r->user_count;
        n_items = r->item_count;
        for (size_t i = 0; ok && i < r->n_users; i++) {
            Strata__V1__UserHistory *h = r->users[i];
            for (size_t k = 0; k < h->n_events; k++) {
                Strata__V1__Interaction *x = h->events[k];
                if (qt_builder_event (qt, h->user, x) < 0) {
                    snprintf (err, errlen, "out of memory");
                    ok = false;
                    break;
                }
                if (x->item == DATASET_NO_TARGET)
                    continue;
                if (n == cap) {
                    cap *= 2;
                    uint32_t *nu = realloc (users, cap * sizeof *users);
                    users = nu ? nu : users;
                    uint32_t *ni = realloc (items, cap * sizeof *items);
                    items = ni ? ni : items;
                    uint8_t *nt = realloc (types, cap);
                    types = nt ? nt : types;
                    int64_t *ns = realloc (ts, cap * sizeof *ts);
                    ts = ns ? ns : ts;
                    if (!nu || !ni || !nt || !ns) {
                        snprintf (err, errlen, "out of memory");
                        ok = false;
                        break;
                    }
                }
                users[n] = h->user;
                items[n] = x->item;
                types[n] = (uint8_t) x->type;
                ts[n] = x->timestamp_ms;
                n++;
            }
        }
        done = r->done;
        if (!done && r->next_user <= start) {
            snprintf (err, errlen, "history pages do not advance");
            ok = false;
        }
        start = r->next_user;
        strata__v1__history_reply__free_unpacked (r, NULL);
    }
    dataset_t *d = ok ? dataset_from_arrays (n_users, n_items, n, users, items, types, ts) : NULL;
    if (d && (!(d->terms = qt_builder_finish (qt)) || !(d->choices = qt_builder_choices (qt))))
        dataset_destroy (&d);
    if (ok && !d)
        snprintf (err, errlen, "out of memory");
    qt_builder_destroy (&qt);
    free (users);
    free (items);
    free (types);
    free (ts);
    return d;
}

dataset_t *
dataset_holdout (const dataset_t *self, int hide, uint32_t **targets)
{
    return dataset_holdout_some (self, hide, NULL, targets);
}

dataset_t *
dataset_holdout_some (const dataset_t *self, int hide, const uint8_t *only, uint32_t **targets)
{
    uint32_t *t = malloc ((size_t) (self->n_users ? self->n_users : 1) * sizeof *t);
    size_t n = 0;
    for (uint32_t u = 0; u < self->n_users; u++) {
        uint32_t len = dataset_len (self, u);
        n += len >= 3 && (!only || only[u]) ? len - (uint32_t) hide : len;
    }
    dataset_t *d = s_alloc (self->n_users, self->n_items, n);
    if (!d || !t) {
        free (t);
        dataset_destroy (&d);
        return NULL;
    }
    size_t w = 0;
    for (uint32_t u = 0; u < self->n_users; u++) {
        uint32_t len = dataset_len (self, u), off = self->offsets[u];
        bool held = len >= 3 && (!only || only[u]);
        uint32_t keep = held ? len - (uint32_t) hide : len;
        t[u] = held ? self->items[off + keep] : DATASET_NO_TARGET;
        memcpy (d->items + w, self->items + off, keep * sizeof *d->items);
        memcpy (d->types + w, self->types + off, keep);
        memcpy (d->ts + w, self->ts + off, keep * sizeof *d->ts);
        w += keep;
        d->offsets[u + 1] = (uint32_t) w;
    }
    *targets = t;
    return d;
}

void
dataset_popularity (const dataset_t *data, uint32_t n_items, double half_life_ms, float *out)
{
    memset (out, 0, n_items * sizeof *out);
    int64_t newest = 0;
    for (size_t e = 0; data && data->ts && e < data->n_events; e++)
        newest = data->ts[e] > newest ? data->ts[e] : newest;
    for (size_t e = 0; data && e < data->n_events; e++) {
        uint32_t i = data->items[e];
        if (i >= n_items)
            continue;
        double age = data->ts && data->ts[e] > 0 ? (double) (newest - data->ts[e]) : 0;
        out[i] += (float) (half_life_ms > 0 ? exp2 (-age / half_life_ms) : 1.0);
    }
}
