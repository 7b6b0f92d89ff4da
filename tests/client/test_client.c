/*  Unit: the request client of strata.h (strata_client_*), its argument checks and its
    error paths.

    The other end is a ROUTER in the test speaking the wire protocol, scripted to do
    what a real broker does only in rare moments and on no cue: answer out of order,
    answer after the client gave up, refuse without naming the request, send a reply
    that does not decode or is of the wrong type. It stands in for no component's
    logic (tests/integration/test_client.c asks a real cluster); it is the fault
    injection for the client's matching of replies to requests. Each test binds its
    own ephemeral port on 127.0.0.1.
*/
#include <criterion/criterion.h>
#include <czmq.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "strata.h"
#include "wire.h"

// ---------------------------------------------------------------- the scripted peer

//  A ROUTER on an ephemeral port; *endpoint gets where to connect.
static zsock_t *
s_peer (char *endpoint, size_t len)
{
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    cr_assert_not_null (router);
    zsock_set_linger (router, 0);
    zsock_set_rcvtimeo (router, 5000);
    int port = zsock_bind (router, "tcp://127.0.0.1:*");
    cr_assert_gt (port, 0);
    snprintf (endpoint, len, "tcp://127.0.0.1:%d", port);
    return router;
}

typedef struct {
    wire_msg_t msg;
    char request_id[64];
} heard_t;

//  Receives one request; false when none came within the router's timeout.
static bool
s_hear (zsock_t *router, heard_t *h)
{
    memset (h, 0, sizeof *h);
    if (wire_recv (router, true, 0, &h->msg) != 0)
        return false;
    ProtobufCMessage *m = NULL;
    const char *id = NULL;
    if (!strcmp (h->msg.type, WIRE_RECOMMEND)) {
        Strata__V1__Recommend *r = (Strata__V1__Recommend *) wire_unpack (&strata__v1__recommend__descriptor,
                                                                          h->msg.payload, NULL);
        m = r ? &r->base : NULL;
        id = r ? r->request_id : NULL;
    }
    else if (!strcmp (h->msg.type, WIRE_SIMILAR)) {
        Strata__V1__Similar *r = (Strata__V1__Similar *) wire_unpack (&strata__v1__similar__descriptor,
                                                                      h->msg.payload, NULL);
        m = r ? &r->base : NULL;
        id = r ? r->request_id : NULL;
    }
    else if (!strcmp (h->msg.type, WIRE_SEARCH)) {
        Strata__V1__Search *r = (Strata__V1__Search *) wire_unpack (&strata__v1__search__descriptor, h->msg.payload,
                                                                    NULL);
        m = r ? &r->base : NULL;
        id = r ? r->request_id : NULL;
    }
    cr_assert_not_null (m, "the client sent a %s that does not decode", h->msg.type);
    snprintf (h->request_id, sizeof h->request_id, "%s", id);
    protobuf_c_message_free_unpacked (m, NULL);
    return true;
}

//  Answers h with a Recommendations of one item, "x-" + its request id, as `type`.
static void
s_answer (zsock_t *router, heard_t *h, const char *type)
{
    char item[80];
    snprintf (item, sizeof item, "x-%s", h->request_id);
    Strata__V1__ScoredItem si = STRATA__V1__SCORED_ITEM__INIT;
    Strata__V1__ScoredItem *sp[] = { &si };
    si.item = item;
    si.score = 0.5f;
    si.title = "a title";
    Strata__V1__Recommendations r = STRATA__V1__RECOMMENDATIONS__INIT;
    r.request_id = h->request_id;
    r.model_version = 7;
    r.items = sp;
    r.n_items = 1;
    r.source = "model";
    r.worker = "peer";
    cr_assert_eq (wire_send (router, h->msg.routing, type, &r.base), 0);
}

static void
s_heard_reset (heard_t *h)
{
    wire_msg_reset (&h->msg);
}

//  The client's id for the request it sent as h (its request_id, in decimal).
static uint64_t
s_id (const heard_t *h)
{
    return strtoull (h->request_id, NULL, 10);
}

// ---------------------------------------------------------------- construction

Test (client, new_refuses_bad_endpoints_and_options)
{
    cr_expect_null (strata_client_new (NULL, NULL));
    cr_expect_null (strata_client_new ("", NULL));
    cr_expect_null (strata_client_new ("no-such-transport://x", NULL));
    strata_client_opts_t bad = { .timeout_ms = -1 };
    cr_expect_null (strata_client_new ("tcp://127.0.0.1:5", &bad));
    strata_client_destroy (NULL);
    strata_client_t *c = strata_client_new ("tcp://127.0.0.1:5", NULL);
    cr_assert_not_null (c);
    cr_expect_eq (strata_client_inflight (c), 0u);
    cr_expect_str_eq (strata_client_error (c), "");
    strata_client_destroy (&c);
    cr_expect_null (c);
    strata_client_destroy (&c);
    strata_reply_destroy (NULL);
    strata_reply_t *none = NULL;
    strata_reply_destroy (&none);
    cr_expect_eq (strata_recommend (NULL, &(strata_recommend_t) { 0 }, 0, &none), STRATA_EINVAL);
    cr_expect_eq (strata_client_recv (NULL, 0, &none), STRATA_EINVAL);
    cr_expect_eq (strata_client_cancel (NULL, 1), STRATA_EINVAL);
    cr_expect_str_eq (strata_client_error (NULL), "");
}

// ---------------------------------------------------------------- argument checks

typedef enum { RECOMMEND, SIMILAR, SEARCH } kind_t;

typedef struct {
    const char *name;
    kind_t kind;
    strata_recommend_t rec;
    strata_similar_t sim;
    strata_search_t search;
    const char *says;   // a word the error names
} bad_case_t;

static const char *const s_null_id[] = { "A1", NULL };
static const strata_recent_t s_recent_no_item[] = { { .item_id = NULL } };
static const strata_recent_t s_recent_bad_type[] = { { .item_id = "A1", .type = "teleport" } };
static const strata_filters_t s_exclude_null = { .exclude = NULL, .n_exclude = 2 };
static const strata_filters_t s_exclude_has_null = { .exclude = s_null_id, .n_exclude = 2 };
static const strata_filters_t s_empty_range = { .has_min_price = true, .min_price = 20, .has_max_price = true,
                                                .max_price = 10 };
static const strata_filters_t s_nan_price = { .has_min_price = true, .min_price = NAN };

static const bad_case_t s_bad[] = {
    { "k over 1000", RECOMMEND, .rec = { .user_id = "u", .k = 1001 }, .says = "k" },
    { "recent NULL with n_recent", RECOMMEND, .rec = { .user_id = "u", .n_recent = 1 }, .says = "recent" },
    { "recent event without item", RECOMMEND, .rec = { .recent = s_recent_no_item, .n_recent = 1 }, .says = "item" },
    { "recent event of unknown type", RECOMMEND, .rec = { .recent = s_recent_bad_type, .n_recent = 1 },
      .says = "teleport" },
    { "exclude NULL with n_exclude", RECOMMEND, .rec = { .filters = &s_exclude_null }, .says = "exclude" },
    { "exclude with a NULL id", SIMILAR, .sim = { .item_id = "A1", .filters = &s_exclude_has_null },
      .says = "exclude" },
    { "an empty price range", SEARCH, .search = { .query = "hat", .filters = &s_empty_range }, .says = "price" },
    { "a price that is no number", RECOMMEND, .rec = { .filters = &s_nan_price }, .says = "price" },
    { "similar without item", SIMILAR, .sim = { .k = 3 }, .says = "item" },
    { "similar to the empty item", SIMILAR, .sim = { .item_id = "" }, .says = "item" },
    { "similar k over 1000", SIMILAR, .sim = { .item_id = "A1", .k = 5000 }, .says = "k" },
    { "search without query", SEARCH, .search = { .user_id = "u" }, .says = "query" },
    { "search of the empty query", SEARCH, .search = { .query = "" }, .says = "query" },
    { "search k over 1000", SEARCH, .search = { .query = "hat", .k = 1001 }, .says = "k" },
    { "candidates NULL with n", SEARCH, .search = { .query = "hat", .n_candidates = 3 }, .says = "candidates" },
    { "candidates with a NULL id", SEARCH, .search = { .query = "hat", .candidates = s_null_id, .n_candidates = 2 },
      .says = "candidates" },
};

//  Every bad call is refused with STRATA_EINVAL and a reason, synchronous or not, and
//  nothing reaches the wire: the first request the peer hears is the good one sent
//  after them all.
Test (client, refuses_bad_arguments_before_sending)
{
    char ep[64];
    zsock_t *router = s_peer (ep, sizeof ep);
    strata_client_t *c = strata_client_new (ep, NULL);
    cr_assert_not_null (c);
    for (size_t i = 0; i < sizeof s_bad / sizeof s_bad[0]; i++) {
        const bad_case_t *b = &s_bad[i];
        strata_reply_t *r = (strata_reply_t *) 1;
        uint64_t id = 99;
        int sync = b->kind == RECOMMEND ? strata_recommend (c, &b->rec, 100, &r)
                 : b->kind == SIMILAR   ? strata_similar (c, &b->sim, 100, &r)
                                        : strata_search (c, &b->search, 100, &r);
        cr_expect_eq (sync, STRATA_EINVAL, "%s: %d", b->name, sync);
        cr_expect_null (r, "%s: a reply was left behind", b->name);
        cr_expect (strstr (strata_client_error (c), b->says), "%s: the error '%s' does not name %s", b->name,
                   strata_client_error (c), b->says);
        int async = b->kind == RECOMMEND ? strata_client_send_recommend (c, &b->rec, 100, &id)
                  : b->kind == SIMILAR   ? strata_client_send_similar (c, &b->sim, 100, &id)
                                         : strata_client_send_search (c, &b->search, 100, &id);
        cr_expect_eq (async, STRATA_EINVAL, "%s (send): %d", b->name, async);
        cr_expect_eq (id, 0u, "%s: an id was given", b->name);
        cr_expect_eq (strata_client_inflight (c), 0u, "%s: a request is in flight", b->name);
    }
    strata_reply_t *r = NULL;
    cr_expect_eq (strata_recommend (c, NULL, 100, &r), STRATA_EINVAL);
    cr_expect_eq (strata_client_send_similar (c, NULL, 100, NULL), STRATA_EINVAL);
    cr_expect_eq (strata_recommend (c, &(strata_recommend_t) { .user_id = "u" }, 100, NULL), STRATA_EINVAL);
    cr_expect_eq (strata_recommend (c, &(strata_recommend_t) { .user_id = "u" }, -5, &r), STRATA_EINVAL);
    cr_expect (strstr (strata_client_error (c), "timeout"));
    cr_expect_eq (strata_client_recv (c, 0, NULL), STRATA_EINVAL);
    cr_expect_eq (strata_client_recv (c, 0, &r), STRATA_ESTATE, "nothing is in flight");
    //  The edges that are allowed: k = 1000, a one-price range, a NULL user (a
    //  visitor), every known recent type in any case.
    strata_filters_t one_price = { .has_min_price = true, .min_price = 5, .has_max_price = true, .max_price = 5 };
    strata_recent_t recent[] = { { "A1", NULL }, { "A2", "VIEW" }, { "A3", "click" }, { "A4", "Cart" },
                                 { "A5", "purchase" }, { "A6", "rate" }, { "A7", "search" } };
    strata_recommend_t good = { .k = 1000, .filters = &one_price, .recent = recent, .n_recent = 7 };
    uint64_t id = 0;
    cr_assert_eq (strata_client_send_recommend (c, &good, 1000, &id), STRATA_OK, "%s", strata_client_error (c));
    cr_expect_gt (id, 0u);
    heard_t h;
    cr_assert (s_hear (router, &h), "the good request did not arrive");
    cr_expect_str_eq (h.msg.type, WIRE_RECOMMEND);
    cr_expect_eq (s_id (&h), id, "a refused request reached the wire before the good one");
    Strata__V1__Recommend *q = (Strata__V1__Recommend *) wire_unpack (&strata__v1__recommend__descriptor,
                                                                      h.msg.payload, NULL);
    cr_assert_not_null (q);
    cr_expect_eq (q->k, 1000u);
    cr_expect_str_eq (q->user, "");
    cr_assert_not_null (q->filters);
    cr_expect (q->filters->has_min_price && q->filters->has_max_price && q->filters->min_price == 5);
    cr_assert_eq (q->n_recent, 7u);
    Strata__V1__EventType want[] = { STRATA__V1__EVENT_TYPE__VIEW,  STRATA__V1__EVENT_TYPE__VIEW,
                                     STRATA__V1__EVENT_TYPE__CLICK, STRATA__V1__EVENT_TYPE__CART,
                                     STRATA__V1__EVENT_TYPE__PURCHASE, STRATA__V1__EVENT_TYPE__RATE,
                                     STRATA__V1__EVENT_TYPE__SEARCH };
    for (size_t i = 0; i < 7; i++) {
        cr_expect_str_eq (q->recent[i]->item, recent[i].item_id);
        cr_expect_eq (q->recent[i]->type, want[i], "recent %zu", i);
    }
    strata__v1__recommend__free_unpacked (q, NULL);
    s_heard_reset (&h);
    strata_client_destroy (&c);
    zsock_destroy (&router);
}

//  What the library puts on the wire for each field of a search and a similar.
Test (client, sends_every_field_of_a_search_and_a_similar)
{
    char ep[64];
    zsock_t *router = s_peer (ep, sizeof ep);
    strata_client_t *c = strata_client_new (ep, NULL);
    const char *const cands[] = { "A1", "B2" };
    const char *const ex[] = { "A3" };
    strata_filters_t f = { .exclude_all_seen = true, .include_purchased = true, .exclude = ex, .n_exclude = 1,
                           .category = "Hats", .has_max_price = true, .max_price = 99.5 };
    strata_search_t s = { .query = "winter hat", .user_id = "u7", .k = 4, .filters = &f, .candidates = cands,
                          .n_candidates = 2, .text_only = true };
    cr_assert_eq (strata_client_send_search (c, &s, 1000, NULL), STRATA_OK);
    cr_assert_eq (strata_client_send_similar (c, &(strata_similar_t) { .item_id = "B2", .k = 2 }, 1000, NULL),
                  STRATA_OK);
    heard_t h;
    cr_assert (s_hear (router, &h));
    cr_assert_str_eq (h.msg.type, WIRE_SEARCH);
    Strata__V1__Search *q = (Strata__V1__Search *) wire_unpack (&strata__v1__search__descriptor, h.msg.payload, NULL);
    cr_assert_not_null (q);
    cr_expect_str_eq (q->query, "winter hat");
    cr_expect_str_eq (q->user, "u7");
    cr_expect_eq (q->k, 4u);
    cr_expect (q->text_only);
    cr_assert_eq (q->n_candidates, 2u);
    cr_expect_str_eq (q->candidates[1], "B2");
    cr_assert_not_null (q->filters);
    cr_expect (q->filters->exclude_all_seen && q->filters->include_purchased);
    cr_expect_str_eq (q->filters->category, "Hats");
    cr_assert_eq (q->filters->n_exclude, 1u);
    cr_expect_str_eq (q->filters->exclude[0], "A3");
    cr_expect (!q->filters->has_min_price && q->filters->has_max_price && q->filters->max_price == 99.5);
    strata__v1__search__free_unpacked (q, NULL);
    s_heard_reset (&h);
    cr_assert (s_hear (router, &h));
    cr_assert_str_eq (h.msg.type, WIRE_SIMILAR);
    Strata__V1__Similar *sq = (Strata__V1__Similar *) wire_unpack (&strata__v1__similar__descriptor, h.msg.payload,
                                                                   NULL);
    cr_assert_not_null (sq);
    cr_expect_str_eq (sq->item, "B2");
    cr_expect_eq (sq->k, 2u);
    cr_expect_null (sq->filters, "no filters given, none sent");
    strata__v1__similar__free_unpacked (sq, NULL);
    s_heard_reset (&h);
    strata_client_destroy (&c);
    zsock_destroy (&router);
}

// ---------------------------------------------------------------- deadlines

//  A peer that hears and never answers: each request completes as STRATA_ETIMEOUT at
//  its own deadline, in deadline order, not send order.
Test (client, times_out_each_request_at_its_own_deadline)
{
    char ep[64];
    zsock_t *router = s_peer (ep, sizeof ep);
    strata_client_t *c = strata_client_new (ep, NULL);
    strata_recommend_t q = { .user_id = "u" };
    uint64_t slow, fast, middle;
    int64_t t0 = zclock_mono ();
    cr_assert_eq (strata_client_send_recommend (c, &q, 600, &slow), STRATA_OK);
    cr_assert_eq (strata_client_send_recommend (c, &q, 200, &fast), STRATA_OK);
    cr_assert_eq (strata_client_send_recommend (c, &q, 400, &middle), STRATA_OK);
    cr_expect (slow < fast && fast < middle, "ids are given in send order");
    cr_expect_eq (strata_client_inflight (c), 3u);
    strata_reply_t *r = NULL;
    cr_expect_eq (strata_client_recv (c, 0, &r), STRATA_ETIMEOUT, "nothing has completed yet");
    cr_expect_null (r);
    uint64_t order[3];
    for (int i = 0; i < 3; i++) {
        cr_assert_eq (strata_client_recv (c, -1, &r), STRATA_OK);
        order[i] = r->request_id;
        cr_expect_eq (r->status, STRATA_ETIMEOUT);
        cr_expect_eq (r->kind, STRATA_ASK_RECOMMEND);
        cr_expect (strstr (r->error, "within"), "'%s'", r->error);
        cr_expect_eq (r->n_items, 0u);
        cr_expect_str_eq (r->source, "");
        strata_reply_destroy (&r);
        cr_expect_null (r);
    }
    int64_t took = zclock_mono () - t0;
    cr_expect (order[0] == fast && order[1] == middle && order[2] == slow, "completed in order %" PRIu64
               ", %" PRIu64 ", %" PRIu64, order[0], order[1], order[2]);
    cr_expect (took >= 600 && took < 3000, "the last deadline was 600 ms, completed after %lld", (long long) took);
    cr_expect_eq (strata_client_recv (c, -1, &r), STRATA_ESTATE, "nothing is left to wait for");
    //  Synchronous: the same deadline, and a NULL reply.
    t0 = zclock_mono ();
    r = (strata_reply_t *) 1;
    cr_expect_eq (strata_recommend (c, &q, 150, &r), STRATA_ETIMEOUT);
    took = zclock_mono () - t0;
    cr_expect_null (r);
    cr_expect (took >= 150 && took < 2000, "took %lld ms", (long long) took);
    cr_expect (strstr (strata_client_error (c), "150 ms"), "'%s'", strata_client_error (c));
    cr_expect_eq (strata_client_inflight (c), 0u);
    strata_client_destroy (&c);
    zsock_destroy (&router);
}

// ---------------------------------------------------------------- matching

//  Replies in the reverse order of the requests are each given to their own request;
//  a reply that comes after its request timed out is dropped, never given to another.
Test (client, matches_replies_by_id_and_drops_late_ones)
{
    char ep[64];
    zsock_t *router = s_peer (ep, sizeof ep);
    strata_client_t *c = strata_client_new (ep, NULL);
    uint64_t ids[3];
    cr_assert_eq (strata_client_send_recommend (c, &(strata_recommend_t) { .user_id = "u" }, 2000, &ids[0]), 0);
    cr_assert_eq (strata_client_send_similar (c, &(strata_similar_t) { .item_id = "A1" }, 2000, &ids[1]), 0);
    cr_assert_eq (strata_client_send_search (c, &(strata_search_t) { .query = "hat" }, 2000, &ids[2]), 0);
    heard_t h[3];
    for (int i = 0; i < 3; i++)
        cr_assert (s_hear (router, &h[i]));
    const char *types[] = { WIRE_RECOMMEND_REPLY, WIRE_SIMILAR_REPLY, WIRE_SEARCH_REPLY };
    for (int i = 2; i >= 0; i--)
        s_answer (router, &h[i], types[i]);
    strata_ask_t kinds[] = { STRATA_ASK_RECOMMEND, STRATA_ASK_SIMILAR, STRATA_ASK_SEARCH };
    for (int n = 0; n < 3; n++) {
        strata_reply_t *r = NULL;
        cr_assert_eq (strata_client_recv (c, 2000, &r), STRATA_OK);
        cr_assert_eq (r->status, STRATA_OK, "%s", r->error);
        int i = r->request_id == ids[0] ? 0 : r->request_id == ids[1] ? 1 : r->request_id == ids[2] ? 2 : -1;
        cr_assert_geq (i, 0, "a reply for request %" PRIu64 ", never sent", r->request_id);
        char want[80];
        snprintf (want, sizeof want, "x-%" PRIu64, ids[i]);
        cr_assert_eq (r->n_items, 1u);
        cr_expect_str_eq (r->items[0].item_id, want, "request %d got another's reply", i);
        cr_expect_str_eq (r->items[0].title, "a title");
        cr_expect_eq (r->items[0].score, 0.5f);
        cr_expect_eq (r->kind, kinds[i]);
        cr_expect_eq (r->model_version, 7u);
        cr_expect_str_eq (r->source, "model");
        cr_expect_str_eq (r->served_by, "peer");
        cr_expect_str_eq (r->error, "");
        strata_reply_destroy (&r);
    }
    for (int i = 0; i < 3; i++)
        s_heard_reset (&h[i]);
    //  Late: the request times out first, then its answer comes, then the next
    //  request's: only the next one's is a reply, and it is the right one.
    uint64_t late, next;
    cr_assert_eq (strata_client_send_similar (c, &(strata_similar_t) { .item_id = "A1" }, 100, &late), 0);
    strata_reply_t *r = NULL;
    cr_assert_eq (strata_client_recv (c, -1, &r), STRATA_OK);
    cr_expect_eq (r->request_id, late);
    cr_expect_eq (r->status, STRATA_ETIMEOUT);
    strata_reply_destroy (&r);
    heard_t hl, hn;
    cr_assert (s_hear (router, &hl));
    s_answer (router, &hl, WIRE_SIMILAR_REPLY);
    cr_assert_eq (strata_client_send_similar (c, &(strata_similar_t) { .item_id = "A2" }, 2000, &next), 0);
    cr_assert (s_hear (router, &hn));
    s_answer (router, &hn, WIRE_SIMILAR_REPLY);
    cr_assert_eq (strata_client_recv (c, 2000, &r), STRATA_OK);
    cr_expect_eq (r->request_id, next);
    cr_expect_eq (r->status, STRATA_OK);
    char want[80];
    snprintf (want, sizeof want, "x-%" PRIu64, next);
    cr_expect_str_eq (r->items[0].item_id, want);
    strata_reply_destroy (&r);
    cr_expect_eq (strata_client_recv (c, 200, &r), STRATA_ESTATE, "the late reply came back as a reply");
    //  A cancelled request: its answer is dropped too; one completed and not received
    //  is freed by cancel; an id never sent is not found.
    uint64_t gone;
    cr_assert_eq (strata_client_send_similar (c, &(strata_similar_t) { .item_id = "A1" }, 2000, &gone), 0);
    cr_expect_eq (strata_client_cancel (c, gone), STRATA_OK);
    cr_expect_eq (strata_client_inflight (c), 0u);
    cr_expect_eq (strata_client_cancel (c, gone), STRATA_ENOTFOUND);
    cr_expect_eq (strata_client_cancel (c, 12345), STRATA_ENOTFOUND);
    heard_t hg;
    cr_assert (s_hear (router, &hg));
    s_answer (router, &hg, WIRE_SIMILAR_REPLY);
    cr_expect_eq (strata_client_recv (c, 200, &r), STRATA_ESTATE, "a cancelled request was answered");
    uint64_t done;
    cr_assert_eq (strata_client_send_similar (c, &(strata_similar_t) { .item_id = "A1" }, 50, &done), 0);
    zclock_sleep (80);
    cr_expect_eq (strata_client_recv (c, 0, &r), STRATA_OK);   // completes it (a timeout)...
    cr_expect_eq (r->request_id, done);
    strata_reply_destroy (&r);
    cr_assert_eq (strata_client_send_similar (c, &(strata_similar_t) { .item_id = "A1" }, 50, &done), 0);
    uint64_t other;
    cr_assert_eq (strata_client_send_similar (c, &(strata_similar_t) { .item_id = "A1" }, 2000, &other), 0);
    zclock_sleep (80);
    cr_expect_eq (strata_client_cancel (c, other), STRATA_OK);
    cr_expect_eq (strata_client_recv (c, 500, &r), STRATA_OK);
    cr_expect_eq (r->request_id, done);
    strata_reply_destroy (&r);
    s_heard_reset (&hl);
    s_heard_reset (&hn);
    s_heard_reset (&hg);
    strata_client_destroy (&c);
    zsock_destroy (&router);
}

//  An Error reaches its request with the broker's message; one without a ref goes to
//  the oldest request in flight; a reply of the wrong type fails its request; one that
//  does not decode is dropped (its request times out, saying why).
Test (client, gives_errors_to_their_requests)
{
    char ep[64];
    zsock_t *router = s_peer (ep, sizeof ep);
    strata_client_t *c = strata_client_new (ep, NULL);
    uint64_t a, b, d;
    cr_assert_eq (strata_client_send_similar (c, &(strata_similar_t) { .item_id = "nope" }, 2000, &a), 0);
    cr_assert_eq (strata_client_send_recommend (c, &(strata_recommend_t) { .user_id = "u" }, 2000, &b), 0);
    cr_assert_eq (strata_client_send_search (c, &(strata_search_t) { .query = "hat" }, 2000, &d), 0);
    heard_t ha, hb, hd;
    cr_assert (s_hear (router, &ha) && s_hear (router, &hb) && s_hear (router, &hd));
    //  b's error names it; then one without a ref (a's, the oldest); then d is answered
    //  with the wrong type.
    cr_assert_eq (wire_send_error (router, hb.msg.routing, hb.request_id, STRATA__V1__ERROR_CODE__INVALID,
                                   "k is at most 1000"), 0);
    cr_assert_eq (wire_send_error (router, ha.msg.routing, NULL, STRATA__V1__ERROR_CODE__UNAVAILABLE,
                                   "no rank worker is connected"), 0);
    s_answer (router, &hd, WIRE_RECOMMEND_REPLY);
    strata_reply_t *r = NULL;
    cr_assert_eq (strata_client_recv (c, 2000, &r), STRATA_OK);
    cr_expect_eq (r->request_id, b);
    cr_expect_eq (r->status, STRATA_EINVAL);
    cr_expect_str_eq (r->error, "k is at most 1000");
    cr_expect_str_eq (strata_client_error (c), "k is at most 1000", "the broker's message reaches the caller");
    strata_reply_destroy (&r);
    cr_assert_eq (strata_client_recv (c, 2000, &r), STRATA_OK);
    cr_expect_eq (r->request_id, a, "an Error without a ref goes to the oldest request");
    cr_expect_eq (r->status, STRATA_EUNAVAILABLE);
    cr_expect_str_eq (r->error, "no rank worker is connected");
    strata_reply_destroy (&r);
    cr_assert_eq (strata_client_recv (c, 2000, &r), STRATA_OK);
    cr_expect_eq (r->request_id, d);
    cr_expect_eq (r->status, STRATA_EPROTOCOL, "a RECOMMEND_REPLY to a SEARCH");
    strata_reply_destroy (&r);
    s_heard_reset (&ha);
    s_heard_reset (&hb);
    s_heard_reset (&hd);
    //  Every protocol code has its own meaning.
    struct {
        Strata__V1__ErrorCode code;
        int status;
    } map[] = {
        { STRATA__V1__ERROR_CODE__NOT_FOUND, STRATA_ENOTFOUND },
        { STRATA__V1__ERROR_CODE__INTERNAL, STRATA_EIO },
        { STRATA__V1__ERROR_CODE__TOO_LARGE, STRATA_ETOOLARGE },
        { STRATA__V1__ERROR_CODE__BAD_PAYLOAD, STRATA_EPROTOCOL },
        { STRATA__V1__ERROR_CODE__UNKNOWN_TYPE, STRATA_EPROTOCOL },
        { STRATA__V1__ERROR_CODE__BAD_FRAMING, STRATA_EFRAMING },
        { STRATA__V1__ERROR_CODE__ERROR_CODE_UNSPECIFIED, STRATA_EREJECTED },
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        cr_assert_eq (strata_client_send_similar (c, &(strata_similar_t) { .item_id = "x" }, 2000, &a), 0);
        cr_assert (s_hear (router, &ha));
        cr_assert_eq (wire_send_error (router, ha.msg.routing, ha.request_id, map[i].code, "because"), 0);
        cr_assert_eq (strata_client_recv (c, 2000, &r), STRATA_OK);
        cr_expect_eq (r->status, map[i].status, "code %d", map[i].code);
        strata_reply_destroy (&r);
        s_heard_reset (&ha);
    }
    //  Undecodable: dropped, and the request's timeout says what was seen.
    cr_assert_eq (strata_client_send_search (c, &(strata_search_t) { .query = "hat" }, 300, &a), 0);
    cr_assert (s_hear (router, &ha));
    cr_assert_eq (wire_send_bytes (router, ha.msg.routing, WIRE_SEARCH_REPLY, "\xff\xff\xff", 3), 0);
    cr_assert_eq (strata_client_recv (c, -1, &r), STRATA_OK);
    cr_expect_eq (r->request_id, a);
    cr_expect_eq (r->status, STRATA_ETIMEOUT);
    cr_expect (strstr (r->error, "does not decode"), "'%s'", r->error);
    strata_reply_destroy (&r);
    s_heard_reset (&ha);
    strata_client_destroy (&c);
    zsock_destroy (&router);
}

// ---------------------------------------------------------------- synchronous among many

//  Answers every request that comes on its ROUTER after it has heard `hold` of them,
//  in the order they came; with `error` set, each with an Error NOT_FOUND naming it.
typedef struct {
    int hold;
    bool error;
} script_t;

static void
s_script_actor (zsock_t *pipe, void *args)
{
    script_t *script = args;
    char ep[64];
    zsock_t *router = s_peer (ep, sizeof ep);
    zsock_set_rcvtimeo (router, 100);
    zsock_signal (pipe, 0);
    zstr_send (pipe, ep);
    heard_t h[8];
    int n = 0;
    while (!zsys_interrupted) {
        char *cmd = zstr_recv_nowait (pipe);
        bool term = cmd && !strcmp (cmd, "$TERM");
        zstr_free (&cmd);
        if (term)
            break;
        if (n < 8 && s_hear (router, &h[n]))
            n++;
        if (n < script->hold)
            continue;
        for (int i = 0; i < n; i++) {
            if (script->error)
                wire_send_error (router, h[i].msg.routing, h[i].request_id, STRATA__V1__ERROR_CODE__NOT_FOUND,
                                 "unknown item");
            else
                s_answer (router, &h[i], !strcmp (h[i].msg.type, WIRE_SIMILAR) ? WIRE_SIMILAR_REPLY
                                         : !strcmp (h[i].msg.type, WIRE_SEARCH) ? WIRE_SEARCH_REPLY
                                                                                : WIRE_RECOMMEND_REPLY);
            s_heard_reset (&h[i]);
        }
        n = 0;
        script->hold = 1;
    }
    for (int i = 0; i < n; i++)
        s_heard_reset (&h[i]);
    zsock_destroy (&router);
}

//  A synchronous call while another request is in flight: both replies come together,
//  the other's first (the peer holds it until it hears the second); the call takes its
//  own and leaves the other for strata_client_recv. Then an Error to a synchronous call: its
//  code, no reply, and the broker's message from strata_client_error.
Test (client, sync_calls_leave_other_replies_for_recv)
{
    script_t script = { .hold = 2 };
    zactor_t *peer = zactor_new (s_script_actor, &script);
    cr_assert_not_null (peer);
    char *ep = zstr_recv (peer);
    strata_client_t *c = strata_client_new (ep, NULL);
    uint64_t first;
    cr_assert_eq (strata_client_send_similar (c, &(strata_similar_t) { .item_id = "A1" }, 3000, &first), 0);
    strata_reply_t *r = NULL;
    cr_assert_eq (strata_search (c, &(strata_search_t) { .query = "hat" }, 3000, &r), STRATA_OK, "%s",
                  strata_client_error (c));
    cr_expect_neq (r->request_id, first);
    cr_expect_eq (r->kind, STRATA_ASK_SEARCH);
    char want[80];
    snprintf (want, sizeof want, "x-%" PRIu64, r->request_id);
    cr_expect_str_eq (r->items[0].item_id, want);
    strata_reply_destroy (&r);
    cr_expect_eq (strata_client_inflight (c), 0u, "the first reply has arrived too");
    cr_assert_eq (strata_client_recv (c, 0, &r), STRATA_OK, "the first reply was lost by the synchronous call");
    cr_expect_eq (r->request_id, first);
    cr_expect_eq (r->kind, STRATA_ASK_SIMILAR);
    strata_reply_destroy (&r);
    zactor_destroy (&peer);
    zstr_free (&ep);

    script = (script_t) { .hold = 1, .error = true };
    peer = zactor_new (s_script_actor, &script);
    ep = zstr_recv (peer);
    strata_client_destroy (&c);
    c = strata_client_new (ep, NULL);
    r = (strata_reply_t *) 1;
    cr_expect_eq (strata_similar (c, &(strata_similar_t) { .item_id = "nope" }, 3000, &r), STRATA_ENOTFOUND);
    cr_expect_null (r);
    cr_expect_str_eq (strata_client_error (c), "unknown item");
    cr_expect_str_eq (strata_strerror (STRATA_ENOTFOUND), "not found");
    strata_client_destroy (&c);
    zactor_destroy (&peer);
    zstr_free (&ep);
}
