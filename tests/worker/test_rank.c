/*  Unit: the rank worker's serving core, with no network. A small model is built in
    the test (its item table set to chosen vectors: four clusters of three items), a
    snapshot blob made of it and loaded, and a catalogue of twelve items with
    categories, prices and titles added; then packed ServeJobs go through parse,
    filter, score and reply. What a RECOMMEND should return is computed here the long
    way (the same snapshot's user tower for the history, then every item's inner
    product, sorted), what SIMILAR and the popular fallback should return follows from
    the vectors and popularity chosen, and every malformed job gets an Error result.
*/
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "ranker.h"
#include "snapshot.h"
#include "strata_error.h"
#include "wire.h"

#define N 12
#define DIM 8
#define VERSION 3

static const char *s_cats[4] = { "Shoes", "Hats", "Bags", "Socks" };
static const char *s_things[4] = { "leather shoes", "wool hat", "canvas bag", "cotton socks" };
static const char *s_colours[3] = { "red", "blue", "green" };

static ranker_t *core;
static model_t *oracle;       // the same snapshot, loaded apart: the expected answers' model
static snapshot_info_t oinfo;
static uint8_t *blob;
static size_t blob_len;
static float pop[N];

//  Item i is in cluster i / 3, the (i % 3)th of it: a long component along its
//  cluster's axis (3, 2, 1) and small distinct ones elsewhere, so that an item's
//  nearest are its cluster's next members, in order, and no two scores tie.
static void
s_vector (uint32_t i, float *v)
{
    uint32_t c = i / 3, j = i % 3;
    for (int k = 0; k < DIM; k++)
        v[k] = 0.01f * (float) ((i * 7 + (uint32_t) k * 3) % 11);
    v[c] += 3.0f - (float) j;
    v[4 + (c + 1) % 4] += 0.1f * (float) j;
}

static void
s_id (uint32_t i, char *buf, size_t len)
{
    snprintf (buf, len, "item-%u", i);
}

//  Item i's catalogue record: category its cluster's, price 10 + i (item 11 none),
//  title "<colour> <thing>".
static void
s_add_catalogue (ranker_t *r)
{
    Strata__V1__Item items[N], *ptrs[N];
    char ids[N][16], titles[N][64];
    char *cat[N][1];
    for (uint32_t i = 0; i < N; i++) {
        strata__v1__item__init (&items[i]);
        s_id (i, ids[i], sizeof ids[i]);
        snprintf (titles[i], sizeof titles[i], "%s %s", s_colours[i % 3], s_things[i / 3]);
        cat[i][0] = (char *) s_cats[i / 3];
        items[i].item_id = ids[i];
        items[i].title = titles[i];
        items[i].n_category = 1;
        items[i].category = cat[i];
        items[i].has_price = i != 11;
        items[i].price = 10 + i;
        items[i].item_index = i;
        ptrs[i] = &items[i];
    }
    cr_assert_eq (ranker_add_items (r, ptrs, N), 0);
    cr_assert_eq (ranker_add_items (r, ptrs, 2), 0, "a page read again is a repeat");
    cr_assert_eq (ranker_items (r), N);
    ranker_extend (r);
}

static ranker_t *
s_core (void)
{
    ranker_config_t cfg = { .id = "test-rank", .batch = 4, .index = "exact", .user_cache = 64,
                            .search_blend = 0.3, .search_learned = 0.3 };
    ranker_t *r = ranker_new (&cfg);
    cr_assert_not_null (r);
    return r;
}

static void
s_setup (void)
{
    model_config_t mc;
    model_config_default (&mc);
    mc.dim = DIM;
    mc.max_len = 8;
    mc.ffn = 16;
    mc.batch = 4;
    mc.rank_negatives = 0;
    model_t *m = model_new (&mc, N);
    cr_assert_not_null (m);
    float *rows = model_row_weights (m, NULL);
    for (uint32_t i = 0; i < N; i++)
        s_vector (i, rows + (size_t) i * DIM);
    for (uint32_t i = 0; i < N; i++)
        pop[i] = (float) ((i * 5) % N);   // most popular first: 7, 2, 9, 4, 11, 6, ...
    json_t *meta = json_object ();
    blob = snapshot_build (m, VERSION, pop, NULL, meta, &blob_len);
    json_decref (meta);
    model_destroy (&m);
    cr_assert_not_null (blob);
    char err[256];
    oracle = snapshot_load (blob, blob_len, 4, &oinfo, err, sizeof err);
    cr_assert_not_null (oracle, "%s", err);
    core = s_core ();
    cr_assert_eq (ranker_load (core, blob, blob_len), 0);
    cr_assert_eq (ranker_version (core), VERSION);
    s_add_catalogue (core);
}

static void
s_teardown (void)
{
    ranker_destroy (&core);
    model_destroy (&oracle);
    snapshot_info_free (&oinfo);
    free (blob);
    blob = NULL;
}

TestSuite (rank, .init = s_setup, .fini = s_teardown, .timeout = 60);

// ---------------------------------------------------------------- jobs and answers

typedef struct {
    const uint32_t *items;
    const uint8_t *types;
    size_t n;
} hist_t;

//  A packed ServeJob (malloc'd) carrying req (packed; NULL: raw bytes junk).
static ProtobufCBinaryData
s_job (uint64_t id, const char *type, const ProtobufCMessage *req, const char *junk, hist_t h)
{
    Strata__V1__ServeJob job = STRATA__V1__SERVE_JOB__INIT;
    job.job_id = id;
    job.type = (char *) type;
    uint8_t *inner = NULL;
    if (req) {
        job.request.len = protobuf_c_message_get_packed_size (req);
        inner = malloc (job.request.len + 1);
        protobuf_c_message_pack (req, inner);
        job.request.data = inner;
    }
    else if (junk) {
        job.request.len = strlen (junk);
        job.request.data = (uint8_t *) junk;
    }
    Strata__V1__Interaction ev[16], *evp[16];
    cr_assert (h.n <= 16);
    for (size_t i = 0; i < h.n; i++) {
        strata__v1__interaction__init (&ev[i]);
        ev[i].item = h.items[i];
        ev[i].type = h.types ? (Strata__V1__EventType) h.types[i] : STRATA__V1__EVENT_TYPE__VIEW;
        evp[i] = &ev[i];
    }
    job.n_history = h.n;
    job.history = evp;
    ProtobufCBinaryData out;
    out.len = strata__v1__serve_job__get_packed_size (&job);
    out.data = malloc (out.len + 1);
    strata__v1__serve_job__pack (&job, out.data);
    free (inner);
    return out;
}

//  One job's answer: its reply type, and the reply decoded (rec or err).
typedef struct {
    uint64_t job_id;
    char type[32];
    Strata__V1__Recommendations *rec;
    Strata__V1__Error *err;
} answer_t;

static void
s_answer_free (answer_t *a)
{
    ProtobufCMessage *m = a->rec ? &a->rec->base : a->err ? &a->err->base : NULL;
    if (m)
        protobuf_c_message_free_unpacked (m, NULL);
    memset (a, 0, sizeof *a);
}

//  Serves n jobs (freeing them) in one call; the answers in result order. Returns how
//  many results came.
static size_t
s_serve (ranker_t *r, ProtobufCBinaryData *jobs, size_t n, answer_t *out)
{
    Strata__V1__ServeResults res = STRATA__V1__SERVE_RESULTS__INIT;
    cr_assert_eq (ranker_serve (r, jobs, n, &res), 0);
    for (size_t i = 0; i < n; i++)
        free (jobs[i].data);
    for (size_t i = 0; i < res.n_results; i++) {
        const Strata__V1__ServeResult *x = res.results[i];
        memset (&out[i], 0, sizeof out[i]);
        out[i].job_id = x->job_id;
        snprintf (out[i].type, sizeof out[i].type, "%s", x->type);
        if (!strcmp (x->type, WIRE_ERROR))
            out[i].err = strata__v1__error__unpack (NULL, x->reply.len, x->reply.data);
        else if (strcmp (x->type, WIRE_PING_REPLY))
            out[i].rec = strata__v1__recommendations__unpack (NULL, x->reply.len, x->reply.data);
        cr_assert (out[i].err || out[i].rec || !strcmp (x->type, WIRE_PING_REPLY), "result %zu does not decode", i);
    }
    return res.n_results;
}

static answer_t
s_ask (ProtobufCBinaryData job)
{
    answer_t a;
    cr_assert_eq (s_serve (core, &job, 1, &a), 1);
    return a;
}

static answer_t
s_recommend (uint32_t k, Strata__V1__Filters *f, hist_t h)
{
    Strata__V1__Recommend q = STRATA__V1__RECOMMEND__INIT;
    q.request_id = "r1";
    q.k = k;
    q.filters = f;
    answer_t a = s_ask (s_job (1, WIRE_RECOMMEND, &q.base, NULL, h));
    cr_assert_str_eq (a.type, WIRE_RECOMMEND_REPLY, "%s", a.err ? a.err->message : a.type);
    cr_assert_str_eq (a.rec->request_id, "r1");
    cr_assert_eq (a.rec->model_version, VERSION);
    cr_assert_str_eq (a.rec->worker, "test-rank");
    return a;
}

static answer_t
s_error (ProtobufCBinaryData job, Strata__V1__ErrorCode code)
{
    answer_t a = s_ask (job);
    cr_assert_str_eq (a.type, WIRE_ERROR);
    cr_assert_eq (a.err->code, code, "code %d (%s), not %d", a.err->code, a.err->message, code);
    cr_assert (a.err->message && *a.err->message);
    return a;
}

static uint32_t
s_index_of (const char *id)
{
    cr_assert (!strncmp (id, "item-", 5), "'%s'", id);
    return (uint32_t) atoi (id + 5);
}

//  What a RECOMMEND for h should answer: the items, best first, by inner product with
//  the user vector of h, leaving out those skip marks; k at most. Returns how many.
static size_t
s_expect (hist_t h, const uint8_t *skip, size_t k, uint32_t *items, float *scores)
{
    float u[DIM], all[N];
    uint32_t lens = (uint32_t) h.n;
    cr_assert_eq (model_user_vectors (oracle, h.items, h.types, &lens, 1, u), 0);
    const float *rows = model_row_weights (oracle, NULL);
    size_t n = 0;
    for (uint32_t i = 0; i < N; i++)
        all[i] = nn_dot (u, rows + (size_t) i * DIM, DIM);
    while (n < k) {
        int best = -1;
        for (uint32_t i = 0; i < N; i++) {
            bool taken = false;
            for (size_t j = 0; j < n && !taken; j++)
                taken = items[j] == i;
            if (!taken && !skip[i] && (best < 0 || all[i] > all[best]))
                best = (int) i;
        }
        if (best < 0)
            break;
        items[n] = (uint32_t) best;
        scores[n++] = all[best];
    }
    return n;
}

//  The answer's items are exactly want[0 .. n), in order, with their scores.
static void
s_assert_items (const answer_t *a, const uint32_t *want, const float *scores, size_t n)
{
    cr_assert_eq (a->rec->n_items, n, "%zu items, not %zu", a->rec->n_items, n);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq (s_index_of (a->rec->items[i]->item), want[i], "place %zu: %s, not item-%u", i,
                      a->rec->items[i]->item, want[i]);
        if (scores)
            cr_assert_float_eq (a->rec->items[i]->score, scores[i], 1e-3, "place %zu", i);
    }
}

static const uint32_t s_hist_items[] = { 0, 4, 5 };
static const uint8_t s_hist_types[] = { STRATA__V1__EVENT_TYPE__PURCHASE, STRATA__V1__EVENT_TYPE__PURCHASE,
                                        STRATA__V1__EVENT_TYPE__VIEW };
static const hist_t s_hist = { s_hist_items, s_hist_types, 3 };

//  The expected answer for s_hist with the purchases left out, and those of `also`.
static size_t
s_expect_hist (const uint8_t *also, size_t k, uint32_t *items, float *scores)
{
    uint8_t skip[N] = { 0 };
    skip[0] = skip[4] = 1;
    for (uint32_t i = 0; also && i < N; i++)
        skip[i] |= also[i];
    return s_expect (s_hist, skip, k, items, scores);
}

// ---------------------------------------------------------------- RECOMMEND

Test (rank, recommend_scores_the_history_and_leaves_out_purchases)
{
    uint32_t want[N];
    float ws[N];
    size_t n = s_expect_hist (NULL, 5, want, ws);
    cr_assert_eq (n, 5);
    answer_t a = s_recommend (5, NULL, s_hist);
    cr_assert_str_eq (a.rec->source, "model");
    s_assert_items (&a, want, ws, n);
    for (size_t i = 0; i < a.rec->n_items; i++) {
        uint32_t it = s_index_of (a.rec->items[i]->item);
        cr_assert (it != 0 && it != 4, "purchased item-%u recommended", it);
        char title[64];
        snprintf (title, sizeof title, "%s %s", s_colours[it % 3], s_things[it / 3]);
        cr_assert_str_eq (a.rec->items[i]->title, title);
    }
    s_answer_free (&a);
}

Test (rank, exclude_all_seen_leaves_out_the_whole_history)
{
    Strata__V1__Filters f = STRATA__V1__FILTERS__INIT;
    f.exclude_all_seen = true;
    uint8_t also[N] = { [5] = 1 };
    uint32_t want[N];
    float ws[N];
    size_t n = s_expect_hist (also, N, want, ws);
    cr_assert_eq (n, N - 3);
    answer_t a = s_recommend (N, &f, s_hist);
    s_assert_items (&a, want, ws, n);
    s_answer_free (&a);
    //  And with include_purchased, nothing of the history is left out.
    f.exclude_all_seen = false;
    f.include_purchased = true;
    a = s_recommend (N, &f, s_hist);
    cr_assert_eq (a.rec->n_items, N);
    s_answer_free (&a);
}

Test (rank, k_is_respected_and_defaults_to_ten)
{
    uint32_t want[N];
    float ws[N];
    answer_t a = s_recommend (3, NULL, s_hist);
    cr_assert_eq (a.rec->n_items, 3);
    s_expect_hist (NULL, 3, want, ws);
    s_assert_items (&a, want, ws, 3);
    s_answer_free (&a);
    a = s_recommend (0, NULL, s_hist);
    cr_assert_eq (a.rec->n_items, 10);   // 12 items less the 2 purchased
    s_answer_free (&a);
    a = s_recommend (1000, NULL, s_hist);
    cr_assert_eq (a.rec->n_items, 10, "no more than there are");
    s_answer_free (&a);
}

Test (rank, category_filter_keeps_only_that_category)
{
    Strata__V1__Filters f = STRATA__V1__FILTERS__INIT;
    f.category = "hATS";   // case-insensitive
    uint8_t also[N];
    for (uint32_t i = 0; i < N; i++)
        also[i] = i / 3 != 1;
    uint32_t want[N];
    float ws[N];
    size_t n = s_expect_hist (also, N, want, ws);
    cr_assert_eq (n, 2, "items 3 and 5: item 4 is purchased");
    answer_t a = s_recommend (10, &f, s_hist);
    s_assert_items (&a, want, ws, n);
    s_answer_free (&a);
    f.category = "gloves";
    a = s_recommend (10, &f, s_hist);
    cr_assert_eq (a.rec->n_items, 0);
    s_answer_free (&a);
}

Test (rank, price_range_keeps_only_priced_items_inside_it)
{
    Strata__V1__Filters f = STRATA__V1__FILTERS__INIT;
    f.has_min_price = f.has_max_price = true;
    f.min_price = 12;
    f.max_price = 16;   // items 2 .. 6
    uint8_t also[N];
    for (uint32_t i = 0; i < N; i++)
        also[i] = i < 2 || i > 6;
    uint32_t want[N];
    float ws[N];
    size_t n = s_expect_hist (also, N, want, ws);
    cr_assert_eq (n, 4);
    answer_t a = s_recommend (10, &f, s_hist);
    s_assert_items (&a, want, ws, n);
    s_answer_free (&a);
    //  An item without a price passes no price filter.
    f.has_max_price = false;
    f.min_price = 20;
    a = s_recommend (10, &f, s_hist);
    cr_assert_eq (a.rec->n_items, 1);
    cr_assert_str_eq (a.rec->items[0]->item, "item-10");
    s_answer_free (&a);
}

Test (rank, exclude_list_leaves_out_its_items)
{
    uint32_t first[N];
    float ws[N];
    s_expect_hist (NULL, 2, first, ws);
    char a0[16], a1[16];
    s_id (first[0], a0, sizeof a0);
    s_id (first[1], a1, sizeof a1);
    char *exclude[] = { a0, a1, "no-such-item" };
    Strata__V1__Filters f = STRATA__V1__FILTERS__INIT;
    f.n_exclude = 3;
    f.exclude = exclude;
    uint8_t also[N] = { 0 };
    also[first[0]] = also[first[1]] = 1;
    uint32_t want[N];
    size_t n = s_expect_hist (also, 5, want, ws);
    answer_t a = s_recommend (5, &f, s_hist);
    s_assert_items (&a, want, ws, n);
    s_answer_free (&a);
}

Test (rank, recent_events_of_the_request_count_as_history)
{
    Strata__V1__RecentEvent ev[2] = { STRATA__V1__RECENT_EVENT__INIT, STRATA__V1__RECENT_EVENT__INIT };
    Strata__V1__RecentEvent *evp[2] = { &ev[0], &ev[1] };
    ev[0].item = "item-4";
    ev[0].type = STRATA__V1__EVENT_TYPE__PURCHASE;
    ev[1].item = "item-5";
    ev[1].type = STRATA__V1__EVENT_TYPE__VIEW;
    Strata__V1__Recommend q = STRATA__V1__RECOMMEND__INIT;
    q.k = 5;
    q.n_recent = 2;
    q.recent = evp;
    uint32_t stored[] = { 0 };
    uint8_t stored_types[] = { STRATA__V1__EVENT_TYPE__PURCHASE };
    answer_t a = s_ask (s_job (9, WIRE_RECOMMEND, &q.base, NULL, (hist_t) { stored, stored_types, 1 }));
    cr_assert_str_eq (a.type, WIRE_RECOMMEND_REPLY);
    uint32_t want[N];
    float ws[N];
    size_t n = s_expect_hist (NULL, 5, want, ws);   // the same history as s_hist
    s_assert_items (&a, want, ws, n);
    s_answer_free (&a);
}

Test (rank, a_user_with_no_history_gets_the_popular_items)
{
    uint32_t want[] = { 7, 2, 9, 4 };
    answer_t a = s_recommend (4, NULL, (hist_t) { 0 });
    cr_assert_str_eq (a.rec->source, "popular");
    s_assert_items (&a, want, NULL, 4);
    for (size_t i = 0; i < 4; i++)
        cr_assert_float_eq (a.rec->items[i]->score, pop[want[i]], 1e-6);
    s_answer_free (&a);
    //  Filters hold for them too.
    Strata__V1__Filters f = STRATA__V1__FILTERS__INIT;
    f.category = "bags";
    uint32_t bags[] = { 7, 6, 8 };
    a = s_recommend (10, &f, (hist_t) { 0 });
    cr_assert_str_eq (a.rec->source, "popular");
    s_assert_items (&a, bags, NULL, 3);
    s_answer_free (&a);
    //  A history of items the version does not know is no history.
    uint32_t unknown[] = { 500 };
    a = s_recommend (2, NULL, (hist_t) { unknown, NULL, 1 });
    cr_assert_str_eq (a.rec->source, "popular");
    s_answer_free (&a);
}

Test (rank, users_answered_together_each_get_their_own_answer)
{
    //  More users than a batch (4), with histories of different lengths: grouped
    //  for the user tower, scored together, each answer its own.
    enum { USERS = 7 };
    uint32_t items[USERS][4];
    uint8_t types[USERS][4];
    ProtobufCBinaryData jobs[USERS];
    hist_t h[USERS];
    for (uint32_t u = 0; u < USERS; u++) {
        size_t len = 1 + u % 4;
        for (size_t j = 0; j < len; j++) {
            items[u][j] = (u * 5 + (uint32_t) j * 3) % N;
            types[u][j] = STRATA__V1__EVENT_TYPE__VIEW;
        }
        h[u] = (hist_t) { items[u], types[u], len };
        Strata__V1__Recommend q = STRATA__V1__RECOMMEND__INIT;
        q.k = 4;
        jobs[u] = s_job (100 + u, WIRE_RECOMMEND, &q.base, NULL, h[u]);
    }
    answer_t a[USERS];
    cr_assert_eq (s_serve (core, jobs, USERS, a), USERS);
    for (uint32_t u = 0; u < USERS; u++) {
        uint32_t user = (uint32_t) (a[u].job_id - 100);
        cr_assert (user < USERS);
        uint8_t skip[N] = { 0 };
        uint32_t want[N];
        float ws[N];
        size_t n = s_expect (h[user], skip, 4, want, ws);
        s_assert_items (&a[u], want, ws, n);
        s_answer_free (&a[u]);
    }
}

// ---------------------------------------------------------------- SIMILAR, SEARCH, PING

Test (rank, similar_returns_the_nearest_items)
{
    Strata__V1__Similar q = STRATA__V1__SIMILAR__INIT;
    q.item = "item-3";
    q.k = 2;
    answer_t a = s_ask (s_job (2, WIRE_SIMILAR, &q.base, NULL, (hist_t) { 0 }));
    cr_assert_str_eq (a.type, WIRE_SIMILAR_REPLY);
    cr_assert_str_eq (a.rec->source, "item");
    uint32_t want[] = { 4, 5 };   // its cluster's next members, nearest first; never itself
    s_assert_items (&a, want, NULL, 2);
    const float *rows = model_row_weights (oracle, NULL);
    cr_assert_float_eq (a.rec->items[0]->score, nn_dot (rows + 3 * DIM, rows + 4 * DIM, DIM), 1e-3);
    s_answer_free (&a);
    //  With a filter: the nearest priced under 13.
    Strata__V1__Filters f = STRATA__V1__FILTERS__INIT;
    f.has_max_price = true;
    f.max_price = 12;
    q.filters = &f;
    q.k = 10;
    a = s_ask (s_job (2, WIRE_SIMILAR, &q.base, NULL, (hist_t) { 0 }));
    cr_assert_eq (a.rec->n_items, 3, "items 0, 1, 2");
    for (size_t i = 0; i < 3; i++)
        cr_assert (s_index_of (a.rec->items[i]->item) <= 2);
    s_answer_free (&a);
}

static answer_t
s_search (const char *query, Strata__V1__Filters *f, uint32_t k)
{
    Strata__V1__Search q = STRATA__V1__SEARCH__INIT;
    q.query = (char *) query;
    q.k = k;
    q.filters = f;
    answer_t a = s_ask (s_job (3, WIRE_SEARCH, &q.base, NULL, (hist_t) { 0 }));
    cr_assert_str_eq (a.type, WIRE_SEARCH_REPLY, "%s", a.err ? a.err->message : a.type);
    return a;
}

Test (rank, search_finds_titles_by_their_terms)
{
    answer_t a = s_search ("wool", NULL, 10);
    cr_assert_str_eq (a.rec->source, "text");
    cr_assert_eq (a.rec->n_items, 3);
    for (size_t i = 0; i < 3; i++)
        cr_assert (strstr (a.rec->items[i]->title, "wool"), "'%s'", a.rec->items[i]->title);
    s_answer_free (&a);
    //  Both terms beat one.
    a = s_search ("green wool", NULL, 10);
    cr_assert_str_eq (a.rec->items[0]->item, "item-5");
    cr_assert_str_eq (a.rec->items[0]->title, "green wool hat");
    s_answer_free (&a);
    //  Filters apply; k holds; an unknown term finds nothing.
    Strata__V1__Filters f = STRATA__V1__FILTERS__INIT;
    f.has_min_price = true;
    f.min_price = 14;
    a = s_search ("green", &f, 10);
    cr_assert_eq (a.rec->n_items, 2, "items 5 and 8");
    s_answer_free (&a);
    a = s_search ("red blue green", NULL, 4);
    cr_assert_eq (a.rec->n_items, 4);
    s_answer_free (&a);
    a = s_search ("umbrella", NULL, 10);
    cr_assert_eq (a.rec->n_items, 0);
    s_answer_free (&a);
}

Test (rank, ping_is_echoed)
{
    answer_t a = s_ask (s_job (77, WIRE_PING, NULL, "hello", (hist_t) { 0 }));
    cr_assert_str_eq (a.type, WIRE_PING_REPLY);
    cr_assert_eq (a.job_id, 77);
    s_answer_free (&a);
}

// ---------------------------------------------------------------- bad jobs

Test (rank, bad_jobs_get_error_results)
{
    Strata__V1__Similar sim = STRATA__V1__SIMILAR__INIT;
    sim.item = "no-such-item";
    answer_t a = s_error (s_job (4, WIRE_SIMILAR, &sim.base, NULL, (hist_t) { 0 }), STRATA__V1__ERROR_CODE__NOT_FOUND);
    s_answer_free (&a);
    Strata__V1__Recommend rec = STRATA__V1__RECOMMEND__INIT;
    rec.k = 1001;
    a = s_error (s_job (5, WIRE_RECOMMEND, &rec.base, NULL, s_hist), STRATA__V1__ERROR_CODE__INVALID);
    s_answer_free (&a);
    Strata__V1__Filters f = STRATA__V1__FILTERS__INIT;
    f.has_min_price = f.has_max_price = true;
    f.min_price = 20;
    f.max_price = 10;
    rec.k = 5;
    rec.filters = &f;
    a = s_error (s_job (6, WIRE_RECOMMEND, &rec.base, NULL, s_hist), STRATA__V1__ERROR_CODE__INVALID);
    s_answer_free (&a);
    const char *types[] = { WIRE_RECOMMEND, WIRE_SIMILAR, WIRE_SEARCH };
    for (size_t i = 0; i < 3; i++) {
        a = s_error (s_job (7, types[i], NULL, "\xff\xff\xff\xff garbage", s_hist), STRATA__V1__ERROR_CODE__BAD_PAYLOAD);
        cr_assert_eq (a.job_id, 7);
        s_answer_free (&a);
    }
    Strata__V1__Search se = STRATA__V1__SEARCH__INIT;
    se.query = "";
    a = s_error (s_job (8, WIRE_SEARCH, &se.base, NULL, (hist_t) { 0 }), STRATA__V1__ERROR_CODE__INVALID);
    s_answer_free (&a);
    char *cands[] = { "nope", "neither" };
    se.query = "wool";
    se.n_candidates = 2;
    se.candidates = cands;
    a = s_error (s_job (8, WIRE_SEARCH, &se.base, NULL, (hist_t) { 0 }), STRATA__V1__ERROR_CODE__NOT_FOUND);
    s_answer_free (&a);
}

Test (rank, a_job_that_does_not_decode_gets_no_result_and_its_batch_goes_on)
{
    Strata__V1__Recommend q = STRATA__V1__RECOMMEND__INIT;
    q.k = 2;
    ProtobufCBinaryData jobs[2];
    jobs[0].len = 6;
    jobs[0].data = malloc (6);
    memcpy (jobs[0].data, "\xff\xff\xff\xff\xff\xff", 6);
    jobs[1] = s_job (11, WIRE_RECOMMEND, &q.base, NULL, s_hist);
    answer_t a[2];
    cr_assert_eq (s_serve (core, jobs, 2, a), 1);
    cr_assert_eq (a[0].job_id, 11);
    cr_assert_str_eq (a[0].type, WIRE_RECOMMEND_REPLY);
    s_answer_free (&a[0]);
}

Test (rank, without_a_version_only_search_answers)
{
    ranker_t *bare = s_core ();
    s_add_catalogue (bare);
    Strata__V1__Recommend q = STRATA__V1__RECOMMEND__INIT;
    Strata__V1__Search se = STRATA__V1__SEARCH__INIT;
    se.query = "canvas";
    ProtobufCBinaryData jobs[2] = { s_job (1, WIRE_RECOMMEND, &q.base, NULL, s_hist),
                                    s_job (2, WIRE_SEARCH, &se.base, NULL, (hist_t) { 0 }) };
    answer_t a[2];
    cr_assert_eq (s_serve (bare, jobs, 2, a), 2);
    cr_assert_str_eq (a[0].type, WIRE_ERROR);
    cr_assert_eq (a[0].err->code, STRATA__V1__ERROR_CODE__UNAVAILABLE);
    cr_assert_str_eq (a[1].type, WIRE_SEARCH_REPLY);
    cr_assert_eq (a[1].rec->n_items, 3);
    cr_assert_eq (a[1].rec->model_version, 0);
    s_answer_free (&a[0]);
    s_answer_free (&a[1]);
    //  A damaged blob is refused, and the core still serves what it did.
    uint8_t junk[64] = "STRATASNAP1\n";
    cr_assert_eq (ranker_load (bare, junk, sizeof junk), STRATA_ECORRUPT);
    cr_assert_eq (ranker_version (bare), 0);
    ranker_destroy (&bare);
    ranker_destroy (&bare);   // safe twice
}

Test (rank, an_unknown_index_kind_is_refused)
{
    ranker_config_t cfg = { .index = "fast" };
    cr_assert_null (ranker_new (&cfg));
}
