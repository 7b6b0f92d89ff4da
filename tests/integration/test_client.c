/*  Integration: the request client of strata.h and the examples built on it, against a
    real local cluster (a broker, a preprocess worker, a trainer with a train worker, a
    rank worker) over TCP on 127.0.0.1.

    The shop is generated here: running shoes A0..A11 (priced 50 + i), winter hats
    B0..B11 (10 + i), and Z, a shoe nobody touched; users walk a cycle of one group.
    What is checked does not depend on how well the model learned: filters, sessions,
    candidates and the kind of answer (model, popular, text) are rules of the serving
    path, so a few epochs give a model version and the checks stay exact. Many requests
    in flight each carry a filter of their own (a category or a price), so a reply given
    to the wrong request shows as items of the wrong kind. The examples run as separate
    processes, the Python one from code protoc generates into a temporary directory.
    Runs without ../shared/data.
*/
#include <criterion/criterion.h>
#include <czmq.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "strata.h"

static hcluster_t s_c;

static void
s_cleanup (void)
{
    cr_expect_eq (hcluster_stop (&s_c), 0, "sanitizer reports in the cluster's logs");
}

TestSuite (client, .fini = s_cleanup, .timeout = 600);

#define N HARNESS_SHOP_ITEMS   // items per group

static void
s_write_shop (const char *dir)
{
    FILE *f = harness_shop_write (dir, 120);
    cr_assert_not_null (f);
    fclose (f);
}

static void
s_import (const char *file, bool items)
{
    char path[700];
    snprintf (path, sizeof path, "%s/%s", s_c.dir, file);
    const char *args_items[] = { "import", "--broker", s_c.ingest, "--quiet", "--items", path, NULL };
    const char *args_events[] = { "import", "--broker", s_c.ingest, "--quiet", path, NULL };
    json_t *sum = harness_cli_json (items ? args_items : args_events, NULL);
    cr_assert_not_null (sum, "import of %s failed", file);
    json_decref (sum);
}

//  A broker holding the shop, a trainer that has published a version; no rank worker
//  yet (s_serve starts it).
static void
s_shop (void)
{
    const char *bflags[] = { "--heartbeat-ms=250", NULL };
    cr_assert_eq (hcluster_start (&s_c, bflags), 0);
    hcluster_add_worker (&s_c);
    s_write_shop (s_c.dir);
    s_import ("items.jsonl", true);
    s_import ("events.jsonl", false);
    cr_assert (hcluster_wait_stat (&s_c, "events", 120 * 8, 30000), "events not stored");
    const char *tflags[] = { "--dim=16", "--blocks=1", "--max-len=10", "--batch=32", "--lr=0.01",
                             "--heartbeat-ms=250", "--continuous=false", NULL };
    cr_assert_eq (hcluster_start_trainer (&s_c, tflags), 0);
    hcluster_add_train_worker (&s_c);
    const char *args[] = { "train", "--trainer", s_c.trainer_api, "--epochs", "5", "--wait", "--timeout-ms",
                           "300000", NULL };
    json_t *st = harness_cli_json (args, NULL);
    cr_assert_not_null (st, "training did not finish");
    json_decref (st);
}

//  Starts the rank worker and waits (through the library) until it serves a version.
static void
s_serve (strata_client_t *c)
{
    hcluster_add_rank_worker (&s_c, 1);
    for (int i = 0; i < 300; i++) {
        strata_reply_t *r = NULL;
        int rc = strata_recommend (c, &(strata_recommend_t) { .user_id = "u1", .k = 1 }, 2000, &r);
        bool ok = rc == STRATA_OK && r->model_version >= 1;
        strata_reply_destroy (&r);
        if (ok)
            return;
        zclock_sleep (100);
    }
    cr_assert_fail ("no rank worker served a model version: %s", strata_client_error (c));
}

//  Whether id is one of the shop's items.
static bool
s_real (const char *id)
{
    if (!strcmp (id, "Z"))
        return true;
    char *end;
    long i = (id[0] == 'A' || id[0] == 'B') && id[1] ? strtol (id + 1, &end, 10) : -1;
    return i >= 0 && i < N && !*end;
}

//  The group of an item: 'A' for the shoes (Z is one), 'B' for the hats.
static char
s_group (const char *id)
{
    return id[0] == 'B' ? 'B' : 'A';
}

static bool
s_has (const strata_reply_t *r, const char *item)
{
    for (size_t i = 0; i < r->n_items; i++)
        if (!strcmp (r->items[i].item_id, item))
            return true;
    return false;
}

//  Every item of r is real, has the title the shop gave it, and scores come best first.
static void
s_expect_real (const strata_reply_t *r, const char *what)
{
    for (size_t i = 0; i < r->n_items; i++) {
        const strata_scored_t *it = &r->items[i];
        cr_expect (s_real (it->item_id), "%s: %s is no item of the shop", what, it->item_id);
        cr_expect (strstr (it->title, it->item_id[0] == 'B' ? "winter hat" : "running shoe"),
                   "%s: %s has the title '%s'", what, it->item_id, it->title);
        if (i)
            cr_expect_geq (r->items[i - 1].score, it->score, "%s: scores out of order", what);
    }
}

static strata_client_t *
s_client (void)
{
    strata_client_t *c = strata_client_new (s_c.api, NULL);
    cr_assert_not_null (c);
    return c;
}

Test (client, sync_calls_answer_with_filters_sessions_and_errors)
{
    s_shop ();
    strata_client_t *c = s_client ();
    strata_reply_t *r = NULL;
    //  No rank worker yet: the broker refuses at once, without naming the request (it
    //  does not read it), and the message reaches the caller.
    cr_expect_eq (strata_recommend (c, &(strata_recommend_t) { .user_id = "u1" }, 5000, &r), STRATA_EUNAVAILABLE,
                  "%s", strata_client_error (c));
    cr_expect_null (r);
    cr_expect (strstr (strata_client_error (c), "rank worker"), "'%s'", strata_client_error (c));
    s_serve (c);

    //  Recommend: k items, real ones, from the model, by the rank worker.
    cr_assert_eq (strata_recommend (c, &(strata_recommend_t) { .user_id = "u0", .k = 5 }, 5000, &r), STRATA_OK, "%s",
                  strata_client_error (c));
    cr_expect_eq (r->kind, STRATA_ASK_RECOMMEND);
    cr_expect_eq (r->status, STRATA_OK);
    cr_expect_eq (r->n_items, 5u);
    cr_expect_str_eq (r->source, "model");
    cr_expect_str_eq (r->served_by, "rank-1");
    cr_expect_geq (r->model_version, 1u);
    s_expect_real (r, "recommend u0");
    strata_reply_destroy (&r);
    //  Filters: a category, a price range, explicit exclusions.
    strata_filters_t hats = { .category = "hats" };
    cr_assert_eq (strata_recommend (c, &(strata_recommend_t) { .user_id = "u0", .k = 5, .filters = &hats }, 5000, &r),
                  STRATA_OK);
    cr_expect_eq (r->n_items, 5u);
    for (size_t i = 0; i < r->n_items; i++)
        cr_expect_eq (r->items[i].item_id[0], 'B', "the category filter let %s through", r->items[i].item_id);
    strata_reply_destroy (&r);
    //  (u0 bought A3: the purchase is back in, by request.)
    strata_filters_t priced = { .has_min_price = true, .min_price = 52, .has_max_price = true, .max_price = 55.5,
                                .include_purchased = true };
    cr_assert_eq (strata_recommend (c, &(strata_recommend_t) { .user_id = "u0", .k = 10, .filters = &priced }, 5000,
                                    &r),
                  STRATA_OK);
    cr_expect_eq (r->n_items, 4u, "A2..A5 are the items priced 52..55.5");
    for (size_t i = 0; i < r->n_items; i++) {
        int idx = atoi (r->items[i].item_id + 1);
        cr_expect (r->items[i].item_id[0] == 'A' && idx >= 2 && idx <= 5, "the price filter let %s through",
                   r->items[i].item_id);
    }
    strata_reply_destroy (&r);
    const char *const ex[] = { "A4", "A5", "B1" };
    strata_filters_t excluded = { .exclude = ex, .n_exclude = 3, .exclude_all_seen = true };
    cr_assert_eq (strata_recommend (c, &(strata_recommend_t) { .user_id = "u0", .k = 25, .filters = &excluded },
                                    5000, &r),
                  STRATA_OK);
    for (size_t i = 0; i < 3; i++)
        cr_expect (!s_has (r, ex[i]), "the excluded %s came back", ex[i]);
    //  u0 walked A0..A7: all seen, all left out.
    for (int i = 0; i < 8; i++) {
        char id[8];
        snprintf (id, sizeof id, "A%d", i);
        cr_expect (!s_has (r, id), "%s was seen and came back", id);
    }
    strata_reply_destroy (&r);
    //  A new visitor: popular items; with a session of hats not yet stored, the model.
    cr_assert_eq (strata_recommend (c, &(strata_recommend_t) { .user_id = "somebody-new", .k = 4 }, 5000, &r),
                  STRATA_OK);
    cr_expect_str_eq (r->source, "popular");
    cr_expect_eq (r->n_items, 4u);
    strata_reply_destroy (&r);
    strata_recent_t session[] = { { "B5", "view" }, { "B6", "cart" } };
    strata_recommend_t visitor = { .user_id = "somebody-new", .k = 3, .recent = session, .n_recent = 2 };
    cr_assert_eq (strata_recommend (c, &visitor, 5000, &r), STRATA_OK);
    cr_expect_str_eq (r->source, "model", "the session did not reach the model");
    s_expect_real (r, "recommend for a session");
    strata_reply_destroy (&r);

    //  Similar: never the item itself; an item nobody touched is served too.
    cr_assert_eq (strata_similar (c, &(strata_similar_t) { .item_id = "Z", .k = 6 }, 5000, &r), STRATA_OK, "%s",
                  strata_client_error (c));
    cr_expect_eq (r->kind, STRATA_ASK_SIMILAR);
    cr_expect_eq (r->n_items, 6u);
    cr_expect (!s_has (r, "Z"));
    s_expect_real (r, "similar Z");
    strata_reply_destroy (&r);
    cr_assert_eq (strata_similar (c, &(strata_similar_t) { .item_id = "A3", .k = 4, .filters = &hats }, 5000, &r),
                  STRATA_OK);
    for (size_t i = 0; i < r->n_items; i++)
        cr_expect_eq (r->items[i].item_id[0], 'B', "similar's category filter let %s through", r->items[i].item_id);
    strata_reply_destroy (&r);

    //  Search: text relevance finds the hats; candidates restrict it; a user blends in
    //  the model's score.
    cr_assert_eq (strata_search (c, &(strata_search_t) { .query = "winter hats", .k = 5 }, 5000, &r), STRATA_OK,
                  "%s", strata_client_error (c));
    cr_expect_eq (r->kind, STRATA_ASK_SEARCH);
    cr_expect_eq (r->n_items, 5u);
    cr_expect (!strncmp (r->source, "text", 4), "source '%s'", r->source);
    for (size_t i = 0; i < r->n_items; i++)
        cr_expect_eq (r->items[i].item_id[0], 'B', "'winter hats' found %s", r->items[i].item_id);
    s_expect_real (r, "search");
    strata_reply_destroy (&r);
    const char *const cands[] = { "B2", "B9", "A1" };
    cr_assert_eq (strata_search (c, &(strata_search_t) { .query = "winter hat", .k = 5, .candidates = cands,
                                                         .n_candidates = 3 },
                                 5000, &r),
                  STRATA_OK);
    cr_expect_geq (r->n_items, 1u);
    for (size_t i = 0; i < r->n_items; i++)
        cr_expect (!strcmp (r->items[i].item_id, "B2") || !strcmp (r->items[i].item_id, "B9")
                       || !strcmp (r->items[i].item_id, "A1"),
                   "%s is no candidate", r->items[i].item_id);
    strata_reply_destroy (&r);
    cr_assert_eq (strata_search (c, &(strata_search_t) { .query = "running shoe", .user_id = "u0", .k = 3 }, 5000,
                                 &r),
                  STRATA_OK);
    size_t len = strlen (r->source);
    cr_expect (len > 6 && !strcmp (r->source + len - 6, "+model"), "a user's search is '%s'", r->source);
    strata_reply_destroy (&r);

    //  The broker's and the worker's refusals: the code and their own words.
    cr_expect_eq (strata_similar (c, &(strata_similar_t) { .item_id = "no-such-item" }, 5000, &r), STRATA_ENOTFOUND);
    cr_expect_null (r);
    cr_expect_str_eq (strata_client_error (c), "unknown item");
    const char *const nobody[] = { "no-such-item" };
    cr_expect_eq (strata_search (c, &(strata_search_t) { .query = "hat", .candidates = nobody, .n_candidates = 1 },
                                 5000, &r),
                  STRATA_ENOTFOUND);
    cr_expect (strstr (strata_client_error (c), "candidates"), "'%s'", strata_client_error (c));
    strata_client_destroy (&c);
}

//  The request kinds in flight, by index.
typedef struct {
    uint64_t id;
    strata_ask_t kind;
    char want;       // 'A' or 'B': every item must be of that group
    char item[8];    // similar: the item, never in its answer
    int replies;
} sent_t;

#define INFLIGHT 300

Test (client, many_requests_in_flight_each_get_their_own_reply)
{
    s_shop ();
    strata_client_t *c = s_client ();
    s_serve (c);
    static sent_t sent[INFLIGHT];
    strata_filters_t hats = { .category = "Hats" }, shoes = { .category = "shoes" };
    strata_filters_t cheap = { .has_max_price = true, .max_price = 30 }, dear = { .has_min_price = true,
                                                                                  .min_price = 40 };
    for (int i = 0; i < INFLIGHT; i++) {
        sent_t *s = &sent[i];
        char user[16];
        snprintf (user, sizeof user, "u%d", i % 120);
        int rc;
        //  Each request's filter says which group every item of its answer is in.
        s->want = (i / 3) % 2 ? 'B' : 'A';
        if (i % 3 == 0) {
            //  The other group than the user walked: without its filter, the model's.
            s->kind = STRATA_ASK_RECOMMEND;
            s->want = (i % 120) % 2 ? 'A' : 'B';
            strata_recommend_t q = { .user_id = user, .k = 3, .filters = s->want == 'B' ? &hats : &shoes };
            rc = strata_client_send_recommend (c, &q, 30000, &s->id);
        }
        else if (i % 3 == 1) {
            s->kind = STRATA_ASK_SIMILAR;
            snprintf (s->item, sizeof s->item, "%c%d", (i / 2) % 2 ? 'A' : 'B', i % N);
            strata_similar_t q = { .item_id = s->item, .k = 3, .filters = s->want == 'B' ? &cheap : &dear };
            rc = strata_client_send_similar (c, &q, 30000, &s->id);
        }
        else {
            s->kind = STRATA_ASK_SEARCH;
            //  The query names the other group: the filter must win.
            strata_search_t q = { .query = s->want == 'B' ? "fleet running shoe hat" : "crest winter hat shoe",
                                  .k = 3, .filters = s->want == 'B' ? &hats : &shoes };
            rc = strata_client_send_search (c, &q, 30000, &s->id);
        }
        cr_assert_eq (rc, STRATA_OK, "send %d: %s", i, strata_client_error (c));
    }
    cr_expect_eq (strata_client_inflight (c), (size_t) INFLIGHT);
    int64_t t0 = zclock_mono ();
    int got = 0;
    strata_reply_t *r = NULL;
    while (strata_client_recv (c, -1, &r) == STRATA_OK) {
        got++;
        sent_t *s = NULL;
        for (int i = 0; i < INFLIGHT && !s; i++)
            if (sent[i].id == r->request_id)
                s = &sent[i];
        cr_assert_not_null (s, "a reply for request %" PRIu64 ", never sent", r->request_id);
        s->replies++;
        cr_expect_eq (r->status, STRATA_OK, "request %" PRIu64 ": %s", r->request_id, r->error);
        cr_expect_eq (r->kind, s->kind);
        cr_expect_geq (r->n_items, 1u, "request %" PRIu64 " got nothing", r->request_id);
        for (size_t j = 0; j < r->n_items; j++)
            cr_expect_eq (s_group (r->items[j].item_id), s->want, "request %" PRIu64 " (kind %d) got %s: another's reply?",
                          r->request_id, s->kind, r->items[j].item_id);
        if (*s->item)
            cr_expect (!s_has (r, s->item), "similar to %s returned it", s->item);
        s_expect_real (r, "in flight");
        strata_reply_destroy (&r);
    }
    cr_expect_eq (got, INFLIGHT);
    for (int i = 0; i < INFLIGHT; i++)
        cr_expect_eq (sent[i].replies, 1, "request %d completed %d times", i, sent[i].replies);
    cr_log_info ("%d requests in flight answered in %lld ms", INFLIGHT, (long long) (zclock_mono () - t0));
    //  A request that gives up before its answer can come: a timeout, and the answer,
    //  when it comes, is not taken for the next request's.
    strata_client_t *slow = s_client ();
    uint64_t late, next;
    cr_assert_eq (strata_client_send_recommend (slow, &(strata_recommend_t) { .user_id = "u3", .k = 2 }, 1, &late),
                  STRATA_OK);
    zclock_sleep (300);   // the answer is in the socket by now
    cr_assert_eq (strata_client_send_similar (slow, &(strata_similar_t) { .item_id = "B3", .k = 2 }, 5000, &next),
                  STRATA_OK);
    cr_assert_eq (strata_client_recv (slow, 5000, &r), STRATA_OK);
    cr_expect_eq (r->request_id, late);
    cr_expect_eq (r->status, STRATA_ETIMEOUT);
    strata_reply_destroy (&r);
    cr_assert_eq (strata_client_recv (slow, 5000, &r), STRATA_OK);
    cr_expect_eq (r->request_id, next);
    cr_expect_eq (r->status, STRATA_OK, "%s", r->error);
    cr_expect_eq (r->kind, STRATA_ASK_SIMILAR);
    strata_reply_destroy (&r);
    cr_expect_eq (strata_client_recv (slow, 200, &r), STRATA_ESTATE);
    strata_client_destroy (&slow);
    strata_client_destroy (&c);
}

// ---------------------------------------------------------------- the examples

//  Reads an example's output: every `== LABEL: ...` header must be an answer (not an
//  error) and every item line a real item; returns the number of item lines and
//  counts the headers that start with `in flight:`.
static int
s_check_output (const char *path, const char *who, int *headers, int *inflight)
{
    FILE *f = fopen (path, "r");
    cr_assert_not_null (f, "%s wrote no output", who);
    char line[1024];
    int items = 0;
    *headers = *inflight = 0;
    bool in_search = false, not_a3 = false;
    while (fgets (line, sizeof line, f)) {
        line[strcspn (line, "\n")] = 0;
        if (!strncmp (line, "== ", 3)) {
            (*headers)++;
            *inflight += !strncmp (line + 3, "in flight:", 10);
            cr_expect (!strstr (line, ": error:"), "%s: %s", who, line);
            cr_expect (strstr (line, "model version"), "%s: %s", who, line);
            in_search = strstr (line, "search \"winter hat\"") != NULL;
            //  Items like A3, and for a visitor who viewed it (it is excluded): never A3.
            not_a3 = strstr (line, "similar to A3") || strstr (line, "viewed A3");
            continue;
        }
        int rank;
        char id[64];
        double score;
        if (sscanf (line, " %d %63s %lf", &rank, id, &score) == 3) {
            items++;
            cr_expect (s_real (id), "%s printed %s, no item of the shop: %s", who, id, line);
            cr_expect (strstr (line, id[0] == 'B' ? "winter hat" : "running shoe"), "%s: no title: %s", who, line);
            cr_expect (!not_a3 || strcmp (id, "A3"), "%s: A3 in an answer that must leave it out", who);
            if (in_search)
                cr_expect_eq (id[0], 'B', "%s: searching 'winter hat' found %s", who, id);
        }
    }
    fclose (f);
    return items;
}

static void
s_dump (const char *path)
{
    char err[700], text[4096] = "";
    snprintf (err, sizeof err, "%s.err", path);
    FILE *f = fopen (err, "r");
    if (f) {
        text[fread (text, 1, sizeof text - 1, f)] = 0;
        fclose (f);
    }
    cr_log_error ("%s stderr:\n%s", path, text);
}

Test (client, c_and_python_storefronts_name_real_items, .timeout = 900)
{
    const char *storefront = getenv ("STRATA_TEST_STOREFRONT");
    const char *source = getenv ("STRATA_TEST_SOURCE");
    cr_assert (storefront && source, "run through meson test (STRATA_TEST_STOREFRONT, STRATA_TEST_SOURCE)");
    cr_assert (access ("/usr/bin/protoc", X_OK) == 0, "protoc is missing: install protobuf-compiler (tools/dev.sh deps)");
    s_shop ();
    strata_client_t *c = s_client ();
    s_serve (c);
    strata_client_destroy (&c);

    char out[700];
    snprintf (out, sizeof out, "%s/storefront-c.out", s_c.dir);
    const char *cargs[] = { storefront, s_c.api, "u0", "A3", "winter hat", NULL };
    int st = harness_wait (harness_exec_start (out, cargs), 60000);
    if (st != 0)
        s_dump (out);
    cr_expect_eq (st, 0, "storefront exited %d", st);
    int headers, inflight;
    int items = s_check_output (out, "storefront", &headers, &inflight);
    cr_expect_eq (headers, 7, "three answers, then four in flight");
    cr_expect_eq (inflight, 4);
    cr_expect_geq (items, 20, "storefront printed %d items", items);

    //  Python: code generated from proto/strata.proto alone, into a temporary directory.
    char gen[700], proto_dir[700], proto[700], py[700], python_path[800];
    snprintf (gen, sizeof gen, "%s/python", s_c.dir);
    cr_assert_eq (mkdir (gen, 0755), 0);
    snprintf (proto_dir, sizeof proto_dir, "-I%s/proto", source);
    snprintf (proto, sizeof proto, "%s/proto/strata.proto", source);
    snprintf (python_path, sizeof python_path, "--python_out=%s", gen);
    const char *pargs[] = { "/usr/bin/protoc", proto_dir, python_path, proto, NULL };
    snprintf (out, sizeof out, "%s/protoc.out", s_c.dir);
    st = harness_wait (harness_exec_start (out, pargs), 60000);
    if (st != 0)
        s_dump (out);
    cr_assert_eq (st, 0, "protoc --python_out failed");
    cr_assert_eq (setenv ("PYTHONPATH", gen, 1), 0);
    snprintf (py, sizeof py, "%s/examples/storefront.py", source);
    snprintf (out, sizeof out, "%s/storefront-py.out", s_c.dir);
    const char *yargs[] = { "/usr/bin/python3", py, s_c.api, "u0", "A3", "winter hat", NULL };
    st = harness_wait (harness_exec_start (out, yargs), 60000);
    if (st != 0)
        s_dump (out);
    cr_expect_eq (st, 0, "storefront.py exited %d (python3-zmq and python3-protobuf: tools/dev.sh deps)", st);
    items = s_check_output (out, "storefront.py", &headers, &inflight);
    cr_expect_eq (headers, 7, "three answers, then four in flight");
    cr_expect_eq (inflight, 4);
    cr_expect_geq (items, 20, "storefront.py printed %d items", items);
}
