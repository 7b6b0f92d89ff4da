/*  query_terms: see query_terms.h. */
#include "query_terms.h"

#include <czmq.h>
#include <stdlib.h>
#include <string.h>

#include "tokenize.h"

struct _qt_builder_t {
    zhashx_t *pairs;       // "term\titem" -> float * (summed weight)
    zhashx_t *choices;     // "query\titem" -> float * (summed weight)
    uint32_t user;
    bool have_user;
    char *query;           // the user's last search, or NULL
    int64_t query_ts;
    int failed;
};

qt_builder_t *
qt_builder_new (void)
{
    qt_builder_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->pairs = zhashx_new ();
    self->choices = zhashx_new ();
    if (!self->pairs || !self->choices) {
        qt_builder_destroy (&self);
        return NULL;
    }
    zhashx_set_destructor (self->pairs, (zhashx_destructor_fn *) zstr_free);
    zhashx_set_destructor (self->choices, (zhashx_destructor_fn *) zstr_free);
    return self;
}

void
qt_builder_destroy (qt_builder_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    qt_builder_t *self = *self_p;
    zhashx_destroy (&self->pairs);
    zhashx_destroy (&self->choices);
    free (self->query);
    free (self);
    *self_p = NULL;
}

typedef struct {
    qt_builder_t *b;
    uint32_t item;
    float w;
} credit_t;

//  Adds weight to the "key\titem" entry of a table.
static void
s_add (qt_builder_t *b, zhashx_t *table, const char *key, size_t len, uint32_t item, float weight)
{
    //  Terms and most queries fit the stack; a longer query takes the heap.
    char buf[256];
    int need = snprintf (buf, sizeof buf, "%.*s\t%u", (int) len, key, item);
    char *k = need >= 0 && (size_t) need < sizeof buf ? buf : zsys_sprintf ("%.*s\t%u", (int) len, key, item);
    if (!k) {
        b->failed = 1;
        return;
    }
    float *w = zhashx_lookup (table, k);
    if (w)
        *w += weight;
    else if ((w = malloc (sizeof *w))) {
        *w = weight;
        zhashx_insert (table, k, w);
    }
    else
        b->failed = 1;
    if (k != buf)
        zstr_free (&k);
}

static void
s_credit (const char *tok, size_t len, void *arg)
{
    credit_t *c = arg;
    s_add (c->b, c->b->pairs, tok, len, c->item, c->w);
}

int
qt_builder_event (qt_builder_t *self, uint32_t user, const Strata__V1__Interaction *x)
{
    if (!self->have_user || user != self->user) {
        free (self->query);
        self->query = NULL;
        self->user = user;
        self->have_user = true;
    }
    if (x->type == STRATA__V1__EVENT_TYPE__SEARCH) {
        free (self->query);
        self->query = x->query && *x->query ? strdup (x->query) : NULL;
        self->query_ts = x->timestamp_ms;
        return 0;
    }
    float w = x->type == STRATA__V1__EVENT_TYPE__PURCHASE ? 3.0f
            : x->type == STRATA__V1__EVENT_TYPE__CART    ? 2.0f
            : x->type == STRATA__V1__EVENT_TYPE__CLICK   ? 1.0f
                                                          : 0.0f;
    if (!self->query || w == 0 || x->item == UINT32_MAX || x->timestamp_ms - self->query_ts > SEARCH_CREDIT_MS)
        return 0;
    credit_t c = { self, x->item, w };
    tokenize (self->query, strlen (self->query), TOKENIZE_STEM, s_credit, &c);
    s_add (self, self->choices, self->query, strlen (self->query), x->item, w);
    return self->failed ? STRATA_ENOMEM : 0;
}

typedef struct {
    const char *term;
    uint32_t item;
    float w;
} triple_t;

static int
s_triple_cmp (const void *a, const void *b)
{
    const triple_t *x = a, *y = b;
    int c = strcmp (x->term, y->term);
    if (c)
        return c;
    return x->item < y->item ? -1 : x->item > y->item;
}

query_terms_t *
query_terms_from (const char *const *terms, const uint32_t *items, const float *weights, size_t n)
{
    query_terms_t *q = calloc (1, sizeof *q);
    triple_t *t = malloc ((n ? n : 1) * sizeof *t);
    if (!q || !t) {
        free (q);
        free (t);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        t[i] = (triple_t) { terms[i], items[i], weights[i] };
    qsort (t, n, sizeof *t, s_triple_cmp);
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++)
        distinct += i == 0 || strcmp (t[i].term, t[i - 1].term);
    q->terms = calloc (distinct ? distinct : 1, sizeof *q->terms);
    q->off = calloc (distinct + 1, sizeof *q->off);
    q->items = malloc ((n ? n : 1) * sizeof *q->items);
    q->weights = malloc ((n ? n : 1) * sizeof *q->weights);
    int bad = !q->terms || !q->off || !q->items || !q->weights;
    size_t w = 0;
    for (size_t i = 0; !bad && i < n; i++) {
        bool new_term = i == 0 || strcmp (t[i].term, t[i - 1].term);
        if (new_term) {
            q->off[q->n] = (uint32_t) w;
            if (!(q->terms[q->n++] = strdup (t[i].term)))
                bad = 1;
        }
        if (!new_term && t[i].item == q->items[w - 1])
            q->weights[w - 1] += t[i].w;
        else {
            q->items[w] = t[i].item;
            q->weights[w++] = t[i].w;
        }
    }
    if (!bad)
        q->off[q->n] = (uint32_t) w;
    free (t);
    if (bad)
        query_terms_destroy (&q);
    return q;
}

//  A "key\titem" -> weight table as associations.
static query_terms_t *
s_finish (qt_builder_t *self, zhashx_t *table)
{
    size_t n = zhashx_size (table);
    char **terms = calloc (n ? n : 1, sizeof *terms);
    uint32_t *items = malloc ((n ? n : 1) * sizeof *items);
    float *weights = malloc ((n ? n : 1) * sizeof *weights);
    query_terms_t *q = NULL;
    size_t i = 0;
    for (float *w = zhashx_first (table); terms && items && weights && w; w = zhashx_next (table)) {
        const char *key = zhashx_cursor (table);
        const char *tab = strrchr (key, '\t');
        terms[i] = strndup (key, (size_t) (tab - key));
        items[i] = (uint32_t) strtoul (tab + 1, NULL, 10);
        weights[i] = *w;
        if (!terms[i])
            break;
        i++;
    }
    if (i == n && !self->failed)
        q = query_terms_from ((const char *const *) terms, items, weights, n);
    for (size_t k = 0; terms && k < i; k++)
        free (terms[k]);
    free (terms);
    free (items);
    free (weights);
    return q;
}

query_terms_t *
qt_builder_finish (qt_builder_t *self)
{
    return s_finish (self, self->pairs);
}

query_terms_t *
qt_builder_choices (qt_builder_t *self)
{
    return s_finish (self, self->choices);
}

void
query_terms_destroy (query_terms_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    query_terms_t *q = *self_p;
    for (uint32_t i = 0; q->terms && i < q->n; i++)
        free (q->terms[i]);
    free (q->terms);
    free (q->off);
    free (q->items);
    free (q->weights);
    free (q);
    *self_p = NULL;
}

int64_t
query_terms_find (const query_terms_t *self, const char *term)
{
    uint32_t lo = 0, hi = self->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = strcmp (self->terms[mid], term);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}
