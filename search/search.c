/*  search: see search.h. */
#include "search.h"

#include <czmq.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tokenize.h"
#include "util.h"

typedef struct {
    uint32_t *items;       // in index order
    uint16_t *tf;          // SEARCH_FIELDS per entry
    uint32_t n, cap;
    bool unsorted;         // entries were appended out of order (an update)
} posting_t;

struct _search_index_t {
    search_params_t p;
    zhashx_t *terms;       // term -> posting_t
    uint16_t *len;         // SEARCH_FIELDS per item
    double sum_len[SEARCH_FIELDS];
    uint32_t n, cap;
    float *acc;            // per item, zero between queries
    float *x;              // per item: a term's combined frequency, zero between terms
    uint32_t *touched;     // the items a term touched
    uint8_t *allowed;      // per item, zero between queries
    uint32_t acc_cap;
    const query_terms_t *learned;
    float *qlen;           // per item: length of its queries field
    double sum_qlen;
    //  Every item's title as a sequence of token hashes (for the ranker's bigrams): item
    //  i's are title_tok[title_at[i] .. title_at[i] + title_n[i]); an updated title's
    //  are appended.
    uint32_t *title_at;
    uint16_t *title_n;
    uint32_t *title_tok;
    size_t n_tok, cap_tok;
    uint32_t qlen_n;
};

void
search_params_default (search_params_t *p)
{
    p->k1 = 1.2f;
    p->b = 0.75f;
    p->weight[SEARCH_TITLE] = 2.0f;
    p->weight[SEARCH_BRAND] = 1.5f;
    p->weight[SEARCH_CATEGORY] = 1.0f;
    p->weight[SEARCH_ATTRIBUTES] = 1.0f;
    p->queries_weight = 1.0f;
}

static void
s_posting_free (void **item)
{
    posting_t *p = *item;
    if (p) {
        free (p->items);
        free (p->tf);
        free (p);
        *item = NULL;
    }
}

search_index_t *
search_index_new (const search_params_t *params)
{
    search_index_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    if (params)
        self->p = *params;
    else
        search_params_default (&self->p);
    self->terms = zhashx_new ();
    if (!self->terms) {
        free (self);
        return NULL;
    }
    zhashx_set_destructor (self->terms, s_posting_free);
    return self;
}

void
search_index_destroy (search_index_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    search_index_t *self = *self_p;
    zhashx_destroy (&self->terms);
    free (self->len);
    free (self->acc);
    free (self->x);
    free (self->touched);
    free (self->allowed);
    free (self->qlen);
    free (self->title_at);
    free (self->title_n);
    free (self->title_tok);
    free (self);
    *self_p = NULL;
}

uint32_t
search_index_size (search_index_t *self)
{
    return self->n;
}

//  One item's terms with their frequency per field, while it is being added.
typedef struct {
    char (*term)[TOKENIZE_MAX_TOKEN + 1];
    uint16_t (*tf)[SEARCH_FIELDS];
    uint32_t n, cap;
    int field;
    uint16_t len[SEARCH_FIELDS];
    int failed;
    search_index_t *index; // whose title sequence grows with the title's tokens
} bag_t;

//  Appends a title token's hash to the index's title sequences.
static int
s_title_token (search_index_t *self, const char *tok, size_t len)
{
    if (self->n_tok == self->cap_tok) {
        size_t cap = self->cap_tok ? self->cap_tok * 2 : 4096;
        uint32_t *t = realloc (self->title_tok, cap * sizeof *t);
        if (!t)
            return -1;
        self->title_tok = t;
        self->cap_tok = cap;
    }
    self->title_tok[self->n_tok++] = util_fnv1a32 (tok, len);
    return 0;
}

static void
s_bag_add (const char *tok, size_t len, void *arg)
{
    bag_t *b = arg;
    if (b->field == SEARCH_TITLE && s_title_token (b->index, tok, len) < 0)
        b->failed = 1;
    if (b->len[b->field] < UINT16_MAX)
        b->len[b->field]++;
    for (uint32_t i = 0; i < b->n; i++)
        if (!strcmp (b->term[i], tok)) {
            if (b->tf[i][b->field] < UINT16_MAX)
                b->tf[i][b->field]++;
            return;
        }
    if (b->n == b->cap) {
        uint32_t cap = b->cap ? b->cap * 2 : 32;
        void *t = realloc (b->term, cap * sizeof *b->term), *f = t ? realloc (b->tf, cap * sizeof *b->tf) : NULL;
        if (t)
            b->term = t;
        if (f)
            b->tf = f;
        if (!t || !f) {
            b->failed = 1;
            return;
        }
        b->cap = cap;
    }
    memcpy (b->term[b->n], tok, len + 1);
    memset (b->tf[b->n], 0, sizeof b->tf[b->n]);
    b->tf[b->n][b->field] = 1;
    b->n++;
}

static void
s_bag_text (bag_t *b, int field, const char *text)
{
    if (!text || !*text)
        return;
    b->field = field;
    tokenize (text, strlen (text), TOKENIZE_STEM, s_bag_add, b);
}

//  Item i's terms (its title's tokens appended to the title sequences) into b; 0 or
//  STRATA_ENOMEM.
static int
s_bag_item (search_index_t *self, uint32_t i, const Strata__V1__Item *item, bag_t *b)
{
    *b = (bag_t) { .index = self };
    size_t first = self->n_tok;
    s_bag_text (b, SEARCH_TITLE, item->title);
    s_bag_text (b, SEARCH_BRAND, item->brand);
    for (size_t k = 0; k < item->n_category; k++)
        s_bag_text (b, SEARCH_CATEGORY, item->category[k]);
    for (size_t k = 0; k < item->n_attributes; k++) {
        s_bag_text (b, SEARCH_ATTRIBUTES, item->attributes[k]->key);
        s_bag_text (b, SEARCH_ATTRIBUTES, item->attributes[k]->value);
    }
    self->title_at[i] = (uint32_t) first;
    self->title_n[i] = (uint16_t) (self->n_tok - first < UINT16_MAX ? self->n_tok - first : UINT16_MAX);
    return b->failed ? STRATA_ENOMEM : 0;
}

//  Posts a bag's terms for item i (at the end of each term's list); its lengths count.
static int
s_post (search_index_t *self, uint32_t i, bag_t *b)
{
    for (uint32_t t = 0; t < b->n; t++) {
        posting_t *p = zhashx_lookup (self->terms, b->term[t]);
        if (!p) {
            p = calloc (1, sizeof *p);
            if (!p)
                return STRATA_ENOMEM;
            zhashx_insert (self->terms, b->term[t], p);
        }
        if (p->n == p->cap) {
            uint32_t cap = p->cap ? p->cap * 2 : 4;
            uint32_t *items = realloc (p->items, cap * sizeof *items);
            uint16_t *tf = items ? realloc (p->tf, (size_t) cap * SEARCH_FIELDS * sizeof *tf) : NULL;
            if (items)
                p->items = items;
            if (tf)
                p->tf = tf;
            if (!items || !tf)
                return STRATA_ENOMEM;
            p->cap = cap;
        }
        p->unsorted |= p->n && p->items[p->n - 1] > i;
        p->items[p->n] = i;
        memcpy (p->tf + (size_t) p->n * SEARCH_FIELDS, b->tf[t], sizeof b->tf[t]);
        p->n++;
    }
    memcpy (self->len + (size_t) i * SEARCH_FIELDS, b->len, sizeof b->len);
    for (int f = 0; f < SEARCH_FIELDS; f++)
        self->sum_len[f] += b->len[f];
    return 0;
}

static void
s_bag_free (bag_t *b)
{
    free (b->term);
    free (b->tf);
}

int
search_index_add (search_index_t *self, uint32_t index, const Strata__V1__Item *item)
{
    if (index != self->n)
        return STRATA_EINVAL;   // items come in order
    if (self->n == self->cap) {
        uint32_t cap = self->cap ? self->cap * 2 : 1024;
        uint16_t *len = realloc (self->len, (size_t) cap * SEARCH_FIELDS * sizeof *len);
        if (len)
            self->len = len;
        uint32_t *at = len ? realloc (self->title_at, cap * sizeof *at) : NULL;
        if (at)
            self->title_at = at;
        uint16_t *tn = at ? realloc (self->title_n, cap * sizeof *tn) : NULL;
        if (tn)
            self->title_n = tn;
        if (!tn)
            return STRATA_ENOMEM;
        self->cap = cap;
    }
    bag_t b;
    int rc = s_bag_item (self, index, item, &b);
    if (rc == 0)
        rc = s_post (self, index, &b);
    self->n++;
    s_bag_free (&b);
    return rc;
}

static int
s_key_cmp (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

//  Puts a list back in index order (entries appended by an update).
static int
s_posting_sort (posting_t *p)
{
    //  Sorted as (item << 32 | entry) keys, then both arrays permuted.
    uint64_t *key = malloc ((size_t) (p->n ? p->n : 1) * sizeof *key);
    uint16_t *tf = malloc ((size_t) (p->n ? p->n : 1) * SEARCH_FIELDS * sizeof *tf);
    if (!key || !tf) {
        free (key);
        free (tf);
        return STRATA_ENOMEM;
    }
    for (uint32_t j = 0; j < p->n; j++)
        key[j] = (uint64_t) p->items[j] << 32 | j;
    qsort (key, p->n, sizeof *key, s_key_cmp);
    memcpy (tf, p->tf, (size_t) p->n * SEARCH_FIELDS * sizeof *tf);
    for (uint32_t j = 0; j < p->n; j++) {
        uint32_t from = (uint32_t) key[j];
        p->items[j] = (uint32_t) (key[j] >> 32);
        memcpy (p->tf + (size_t) j * SEARCH_FIELDS, tf + (size_t) from * SEARCH_FIELDS, SEARCH_FIELDS * sizeof *tf);
    }
    p->unsorted = false;
    free (key);
    free (tf);
    return 0;
}

int
search_index_update (search_index_t *self, uint32_t n, const uint32_t *indices, const Strata__V1__Item *const *items)
{
    uint8_t *gone = calloc (self->n ? self->n : 1, 1);
    if (!gone)
        return STRATA_ENOMEM;
    for (uint32_t k = 0; k < n; k++)
        if (indices[k] < self->n)
            gone[indices[k]] = 1;
    //  The items' entries out of every list, and their lengths out of the sums.
    for (posting_t *p = zhashx_first (self->terms); p; p = zhashx_next (self->terms)) {
        uint32_t w = 0;
        for (uint32_t j = 0; j < p->n; j++) {
            if (gone[p->items[j]])
                continue;
            if (w != j) {
                p->items[w] = p->items[j];
                memcpy (p->tf + (size_t) w * SEARCH_FIELDS, p->tf + (size_t) j * SEARCH_FIELDS,
                        SEARCH_FIELDS * sizeof *p->tf);
            }
            w++;
        }
        p->n = w;
    }
    for (uint32_t i = 0; i < self->n; i++)
        if (gone[i]) {
            for (int f = 0; f < SEARCH_FIELDS; f++)
                self->sum_len[f] -= self->len[(size_t) i * SEARCH_FIELDS + f];
            memset (self->len + (size_t) i * SEARCH_FIELDS, 0, SEARCH_FIELDS * sizeof *self->len);
            self->title_n[i] = 0;
        }
    //  Their new terms, each item once (the last record given wins).
    int rc = 0;
    for (uint32_t k = n; k-- > 0 && rc == 0;) {
        uint32_t i = indices[k];
        if (i >= self->n || !gone[i])
            continue;
        gone[i] = 0;
        bag_t b;
        rc = s_bag_item (self, i, items[k], &b);
        if (rc == 0)
            rc = s_post (self, i, &b);
        s_bag_free (&b);
    }
    free (gone);
    for (posting_t *p = zhashx_first (self->terms); rc == 0 && p; p = zhashx_next (self->terms))
        if (p->unsorted)
            rc = s_posting_sort (p);
    return rc;
}

void
search_index_set_learned (search_index_t *self, const query_terms_t *terms)
{
    self->learned = terms;
    free (self->qlen);
    self->qlen = NULL;
    self->sum_qlen = 0;
    self->qlen_n = 0;
    if (!terms)
        return;
    self->qlen = calloc (self->n ? self->n : 1, sizeof *self->qlen);
    if (!self->qlen) {
        self->learned = NULL;
        return;
    }
    self->qlen_n = self->n;
    for (uint32_t k = 0; k < terms->n; k++)
        for (uint32_t j = terms->off[k]; j < terms->off[k + 1]; j++)
            if (terms->items[j] < self->qlen_n) {
                float tf = log2f (1.0f + terms->weights[j]);
                self->qlen[terms->items[j]] += tf;
                self->sum_qlen += tf;
            }
}

typedef struct {
    char (*term)[TOKENIZE_MAX_TOKEN + 1];
    uint32_t n, cap;
} terms_t;

static void
s_query_term (const char *tok, size_t len, void *arg)
{
    terms_t *t = arg;
    for (uint32_t i = 0; i < t->n; i++)
        if (!strcmp (t->term[i], tok))
            return;
    if (t->n == t->cap)
        return;
    memcpy (t->term[t->n++], tok, len + 1);
}

//  Adds item it's frequency x of the current term, registering the item when new.
static void
s_touch (search_index_t *self, uint32_t it, float x, uint32_t *touched, uint32_t *nt)
{
    if (self->x[it] == 0)
        touched[(*nt)++] = it;
    self->x[it] += x;
}

uint32_t
search_index_query (search_index_t *self, const char *query, const uint32_t *only, uint32_t n_only, bool text_only,
                    uint32_t *items, float *scores, uint32_t cap)
{
    if (!query || !self->n)
        return 0;
    if (self->acc_cap < self->n) {
        free (self->acc);
        free (self->x);
        free (self->touched);
        free (self->allowed);
        self->acc = calloc (self->cap, sizeof *self->acc);
        self->x = calloc (self->cap, sizeof *self->x);
        self->touched = malloc (self->cap * sizeof *self->touched);
        self->allowed = calloc (self->cap, 1);
        self->acc_cap = self->acc && self->x && self->touched && self->allowed ? self->cap : 0;
        if (!self->acc_cap)
            return 0;
    }
    char buf[64][TOKENIZE_MAX_TOKEN + 1];
    terms_t t = { buf, 0, 64 };
    tokenize (query, strlen (query), TOKENIZE_STEM, s_query_term, &t);
    for (uint32_t i = 0; only && i < n_only; i++)
        if (only[i] < self->n)
            self->allowed[only[i]] = 1;
    float avg[SEARCH_FIELDS];
    for (int f = 0; f < SEARCH_FIELDS; f++)
        avg[f] = self->sum_len[f] > 0 ? (float) (self->sum_len[f] / self->n) : 1.0f;
    const query_terms_t *qt = text_only ? NULL : self->learned;
    float qavg = qt && self->sum_qlen > 0 ? (float) (self->sum_qlen / self->qlen_n) : 1.0f;
    const search_params_t *p = &self->p;
    uint32_t *touched = self->touched;
    uint32_t found = 0;
    for (uint32_t q = 0; q < t.n; q++) {
        posting_t *post = zhashx_lookup (self->terms, t.term[q]);
        int64_t lk = qt ? query_terms_find (qt, t.term[q]) : -1;
        uint32_t la = lk >= 0 ? qt->off[lk] : 0, lb = lk >= 0 ? qt->off[lk + 1] : 0;
        uint32_t df = (post ? post->n : 0) + (lb - la);
        if (!df)
            continue;
        float idf = logf (1.0f + ((float) self->n - (float) df + 0.5f) / ((float) df + 0.5f));
        if (idf < 1e-3f)
            idf = 1e-3f;
        //  The term's frequency in every field of every item that has it, combined...
        uint32_t nt = 0;
        for (uint32_t k = 0; post && k < post->n; k++) {
            uint32_t it = post->items[k];
            if (only && !self->allowed[it])
                continue;
            const uint16_t *tf = post->tf + (size_t) k * SEARCH_FIELDS;
            const uint16_t *len = self->len + (size_t) it * SEARCH_FIELDS;
            float x = 0;
            for (int f = 0; f < SEARCH_FIELDS; f++)
                if (tf[f])
                    x += p->weight[f] * tf[f] / (1.0f - p->b + p->b * len[f] / avg[f]);
            s_touch (self, it, x, touched, &nt);
        }
        for (uint32_t j = la; j < lb; j++) {
            uint32_t it = qt->items[j];
            if (it >= self->qlen_n || (only && !self->allowed[it]))
                continue;
            float tf = log2f (1.0f + qt->weights[j]);
            s_touch (self, it, p->queries_weight * tf / (1.0f - p->b + p->b * self->qlen[it] / qavg), touched, &nt);
        }
        //  ... then saturated once.
        for (uint32_t i = 0; i < nt; i++) {
            uint32_t it = touched[i];
            float x = self->x[it];
            self->x[it] = 0;
            if (self->acc[it] == 0 && found < cap)
                items[found++] = it;
            self->acc[it] += idf * x * (p->k1 + 1) / (p->k1 + x);
        }
    }
    for (uint32_t i = 0; i < found; i++)
        scores[i] = self->acc[items[i]];
    //  Clear what this query touched (the accumulator of items past cap too).
    for (uint32_t q = 0; q < t.n; q++) {
        posting_t *post = zhashx_lookup (self->terms, t.term[q]);
        for (uint32_t k = 0; post && k < post->n; k++)
            self->acc[post->items[k]] = 0;
        int64_t lk = qt ? query_terms_find (qt, t.term[q]) : -1;
        for (uint32_t j = lk >= 0 ? qt->off[lk] : 0; lk >= 0 && j < qt->off[lk + 1]; j++)
            if (qt->items[j] < self->qlen_n)
                self->acc[qt->items[j]] = 0;
    }
    for (uint32_t i = 0; only && i < n_only; i++)
        if (only[i] < self->n)
            self->allowed[only[i]] = 0;
    return found;
}

// ---------------------------------------------------------------- ranker features

//  Whether an item has a term in a text field: postings list items in index order.
static bool
s_has (const posting_t *p, uint32_t item)
{
    uint32_t lo = 0, hi = p ? p->n : 0;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (p->items[mid] == item)
            return true;
        if (p->items[mid] < item)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

//  A query read once for the ranker: its distinct terms and its token hashes in order.
typedef struct {
    terms_t terms;
    uint32_t hash[64];
    uint32_t n;
} query_view_t;

static void
s_view_token (const char *tok, size_t len, void *arg)
{
    query_view_t *q = arg;
    s_query_term (tok, len, &q->terms);
    if (q->n < 64)
        q->hash[q->n++] = util_fnv1a32 (tok, len);
}

const char *const search_feature_names[SEARCH_FEATURES] = { "text",      "coverage",      "idf_coverage",
                                                            "all_terms", "title_bigrams", "first_term",
                                                            "last_term", "title_length",  "conversions" };

void
search_index_features (search_index_t *self, const char *query, const uint32_t *items, const float *scores,
                       uint32_t n, const float *conversions, uint32_t n_conv, float *out)
{
    //  The query's distinct terms that some item has, in query order, with their idf.
    char buf[64][TOKENIZE_MAX_TOKEN + 1];
    query_view_t seq = { { buf, 0, 64 }, { 0 }, 0 };
    if (query)
        tokenize (query, strlen (query), TOKENIZE_STEM, s_view_token, &seq);
    const terms_t *t = &seq.terms;
    const posting_t *post[64];
    float idf[64], idf_sum = 0;
    uint32_t known = 0;
    for (uint32_t q = 0; q < t->n; q++) {
        posting_t *p = zhashx_lookup (self->terms, t->term[q]);
        if (!p)
            continue;
        post[known] = p;
        idf[known] = logf (1.0f + ((float) self->n - (float) p->n + 0.5f) / ((float) p->n + 0.5f));
        idf_sum += idf[known++];
    }
    //  Its adjacent token pairs, for phrase matches in titles.
    uint32_t pairs = seq.n > 1 ? seq.n - 1 : 0;
    float top = 0;
    for (uint32_t i = 0; i < n; i++)
        top = scores[i] > top ? scores[i] : top;
    for (uint32_t i = 0; i < n; i++) {
        float *f = out + (size_t) i * SEARCH_FEATURES;
        uint32_t it = items[i];
        memset (f, 0, SEARCH_FEATURES * sizeof *f);
        f[0] = top > 0 ? scores[i] / top : 0;
        if (it >= self->n)
            continue;
        uint32_t matched = 0;
        float idf_matched = 0;
        bool first = false, last = false;
        for (uint32_t k = 0; k < known; k++)
            if (s_has (post[k], it)) {
                matched++;
                idf_matched += idf[k];
                first |= k == 0;
                last |= k == known - 1;
            }
        const uint32_t *title = self->title_tok + self->title_at[it];
        uint32_t tl = self->title_n[it], phrase = 0;
        for (uint32_t k = 0; k < pairs; k++)
            for (uint32_t j = 0; j + 1 < tl; j++)
                if (title[j] == seq.hash[k] && title[j + 1] == seq.hash[k + 1]) {
                    phrase++;
                    break;
                }
        f[1] = known ? (float) matched / (float) known : 0;
        f[2] = idf_sum > 0 ? idf_matched / idf_sum : 0;
        f[3] = known && matched == known;
        f[4] = pairs ? (float) phrase / (float) pairs : 0;
        f[5] = first;
        f[6] = last;
        f[7] = logf (1.0f + (float) tl);
        f[8] = conversions && it < n_conv && conversions[it] > 0 ? logf (1.0f + conversions[it]) : 0;
    }
}
