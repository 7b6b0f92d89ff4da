/*  Integration: serving over TCP with real processes: a broker, a trainer with a train
    worker, and rank workers. A small shop whose right answers are known (users walk a
    cycle of shoes or of hats, item i followed by item i+1) is trained on; then
    recommend, similar, search and their filters answer as they must, unknown users and an item
    nobody touched are served, bad requests get Error replies while the workers keep
    serving, a new model version is swapped in under load without a failed request, and
    a rank worker killed under load costs no request either.
*/
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"
#include "util.h"
#include "wire.h"

static hcluster_t s_c;

static void
s_cleanup (void)
{
    cr_expect_eq (hcluster_stop (&s_c), 0, "sanitizer reports in the cluster's logs");
}

TestSuite (serve, .fini = s_cleanup, .timeout = 600);

#define N HARNESS_SHOP_ITEMS   // items per group

//  Writes the shop: shoes A0..A11 (brand Fleet, 50 + i), hats B0..B11 (Crest, 10 + i),
//  and Z, a running shoe nobody touched; 240 users each walk 8 steps of one group's
//  cycle (views, every fourth a purchase).
static void
s_write_shop (const char *dir)
{
    FILE *f = harness_shop_write (dir, 240);
    cr_assert_not_null (f);
    long ts = HARNESS_SHOP_TS;
    //  Test users: t-a3 viewed A0..A3; t-buy viewed A0..A3 and bought A4.
    for (int k = 0; k < 4; k++)
        fprintf (f, "{\"event_id\":\"ta%d\",\"user_id\":\"t-a3\",\"item_id\":\"A%d\",\"type\":\"view\",\"timestamp\":%ld}\n", k,
                 k, ts + 60000L * k);
    for (int k = 0; k < 5; k++)
        fprintf (f, "{\"event_id\":\"tb%d\",\"user_id\":\"t-buy\",\"item_id\":\"A%d\",\"type\":\"%s\",\"timestamp\":%ld}\n", k,
                 k, k == 4 ? "purchase" : "view", ts + 60000L * k);
    //  Searchers of "comfy" (a word in no title) bought A7.
    for (int u = 0; u < 20; u++) {
        fprintf (f, "{\"event_id\":\"sq%d\",\"user_id\":\"s%d\",\"type\":\"search\",\"query\":\"comfy\",\"timestamp\":%ld}\n",
                 u, u, ts);
        fprintf (f, "{\"event_id\":\"sp%d\",\"user_id\":\"s%d\",\"item_id\":\"A7\",\"type\":\"purchase\",\"timestamp\":%ld}\n",
                 u, u, ts + 60000L);
    }
    //  Searchers of "winter hat" and of "crest hat" bought B5: what the search ranker
    //  is fitted to (each query learns from the other's choices).
    for (int u = 0; u < 12; u++) {
        fprintf (f, "{\"event_id\":\"hq%d\",\"user_id\":\"h%d\",\"type\":\"search\",\"query\":\"%s\",\"timestamp\":%ld}\n",
                 u, u, u % 2 ? "winter hat" : "crest hat", ts);
        fprintf (f, "{\"event_id\":\"hp%d\",\"user_id\":\"h%d\",\"item_id\":\"B5\",\"type\":\"purchase\",\"timestamp\":%ld}\n",
                 u, u, ts + 60000L);
    }
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

//  Writes text as the file `name` in the cluster's directory and imports it.
static void
s_import_text (const char *name, bool items, const char *text)
{
    char path[700];
    snprintf (path, sizeof path, "%s/%s", s_c.dir, name);
    FILE *f = fopen (path, "w");
    cr_assert_not_null (f);
    fputs (text, f);
    fclose (f);
    s_import (name, items);
}

static void
s_train (const char *epochs)
{
    const char *args[] = { "train", "--trainer", s_c.trainer_api, "--epochs", epochs, "--wait", "--timeout-ms",
                           "300000", NULL };
    json_t *st = harness_cli_json (args, NULL);
    cr_assert_not_null (st, "training did not finish");
    json_decref (st);
}

//  Waits until a RECOMMEND is answered from a model version >= v.
static void s_wait_version (uint64_t v);

//  The shop in a cluster, trained, with `rankers` rank workers serving it; broker_flag
//  (NULL: none) is one more setting for the broker.
static void
s_shop_with (int rankers, const char *broker_flag)
{
    const char *bflags[] = { "--heartbeat-ms=250", "--max-frame=65536", broker_flag, NULL };
    cr_assert_eq (hcluster_start (&s_c, bflags), 0);
    hcluster_add_worker (&s_c);
    s_write_shop (s_c.dir);
    s_import ("items.jsonl", true);
    s_import ("events.jsonl", false);
    cr_assert (hcluster_wait_stat (&s_c, "events", 240 * 8 + 9 + 40, 30000), "events not stored");
    const char *tflags[] = { "--dim=16", "--blocks=1", "--max-len=10", "--batch=32", "--lr=0.01", "--dropout=0.1",
                             "--heartbeat-ms=250", "--continuous=false", NULL };
    cr_assert_eq (hcluster_start_trainer (&s_c, tflags), 0);
    hcluster_add_train_worker (&s_c);
    s_train ("40");
    for (int k = 1; k <= rankers; k++)
        hcluster_add_rank_worker (&s_c, k);
    if (rankers)
        s_wait_version (1);
}

static void
s_shop (int rankers)
{
    s_shop_with (rankers, NULL);
}

// ---------------------------------------------------------------- requests

typedef struct {
    char type[32];
    Strata__V1__Recommendations *rec;
    Strata__V1__Error *err;
} answer_t;

static void
s_answer_free (answer_t *a)
{
    if (a->rec)
        strata__v1__recommendations__free_unpacked (a->rec, NULL);
    if (a->err)
        strata__v1__error__free_unpacked (a->err, NULL);
    memset (a, 0, sizeof *a);
}

//  Decodes one reply from s into a; false on timeout.
static bool
s_read (zsock_t *s, answer_t *a)
{
    memset (a, 0, sizeof *a);
    wire_msg_t msg;
    if (wire_recv (s, false, 64 << 20, &msg) != 0)
        return false;
    snprintf (a->type, sizeof a->type, "%s", msg.type);
    if (!strcmp (msg.type, WIRE_ERROR))
        a->err = (Strata__V1__Error *) wire_unpack (&strata__v1__error__descriptor, msg.payload, NULL);
    else
        a->rec = (Strata__V1__Recommendations *) wire_unpack (&strata__v1__recommendations__descriptor, msg.payload,
                                                              NULL);
    wire_msg_reset (&msg);
    return true;
}

static void
s_send (zsock_t *s, const char *type, const ProtobufCMessage *m)
{
    cr_assert_eq (wire_send (s, NULL, type, m), 0);
}

static zsock_t *
s_client (void)
{
    zsock_t *s = zsock_new_dealer (s_c.api);
    cr_assert_not_null (s);
    zsock_set_rcvtimeo (s, 15000);
    return s;
}

//  One request, one answer (which must come).
static void
s_ask (const char *type, const ProtobufCMessage *m, answer_t *a)
{
    zsock_t *s = s_client ();
    s_send (s, type, m);
    cr_assert (s_read (s, a), "no answer to %s", type);
    zsock_destroy (&s);
}

static void
s_recommend (const char *user, uint32_t k, Strata__V1__Filters *f, answer_t *a)
{
    Strata__V1__Recommend r = STRATA__V1__RECOMMEND__INIT;
    r.request_id = "r1";
    r.user = (char *) user;
    r.k = k;
    r.filters = f;
    s_ask (WIRE_RECOMMEND, &r.base, a);
}

static bool
s_has (const Strata__V1__Recommendations *r, const char *item)
{
    for (size_t i = 0; r && i < r->n_items; i++)
        if (!strcmp (r->items[i]->item, item))
            return true;
    return false;
}

static void
s_wait_version (uint64_t v)
{
    for (int i = 0; i < 300; i++) {
        answer_t a;
        s_recommend ("t-a3", 1, NULL, &a);
        bool ok = a.rec && a.rec->model_version >= v;
        s_answer_free (&a);
        if (ok)
            return;
        zclock_sleep (100);
    }
    cr_assert_fail ("no rank worker served model version %llu", (unsigned long long) v);
}

//  Imports Z2, a running shoe, after the version: once the worker's catalogue refresh
//  sees it, it has a vector from its brand, category and title (the version's feature
//  table), and is similar to the shoes: at least min_shoes of its 6 nearest, answered
//  with `source`.
//  Asks SIMILAR {item, k} until the rank worker knows the item, an item just imported
//  (answered NOT_FOUND meanwhile, for at most 10 s); the answer in *a, a->rec NULL when
//  the item never became known.
static void
s_similar_once_known (const char *item, uint32_t k, answer_t *a)
{
    Strata__V1__Similar sim = STRATA__V1__SIMILAR__INIT;
    sim.item = (char *) item;
    sim.k = k;
    for (int i = 0; i < 100; i++) {
        s_ask (WIRE_SIMILAR, &sim.base, a);
        if (a->rec)
            return;
        cr_assert_not_null (a->err);
        cr_expect_eq (a->err->code, STRATA__V1__ERROR_CODE__NOT_FOUND);
        s_answer_free (a);
        zclock_sleep (100);
    }
}

static void
s_new_item (const char *source, int min_shoes)
{
    answer_t a;
    s_import_text ("new-items.jsonl", true,
                   "{\"item_id\":\"Z2\",\"title\":\"Fleet running shoe\",\"brand\":\"Fleet\",\"category\":"
                   "\"Shoes > Running\",\"price\":\"58.00\"}\n");
    s_similar_once_known ("Z2", 6, &a);
    cr_assert (a.rec, "the new item Z2 never became known to the rank worker");
    cr_expect_str_eq (a.rec->source, source);
    int new_shoes = 0;
    for (size_t i = 0; i < a.rec->n_items; i++) {
        cr_expect_str_neq (a.rec->items[i]->item, "Z2");
        new_shoes += a.rec->items[i]->item[0] == 'A' || a.rec->items[i]->item[0] == 'Z';
    }
    cr_expect_geq (new_shoes, min_shoes, "only %d of the new item's 6 nearest items are shoes", new_shoes);
    cr_expect (a.rec->n_items && strchr ("AZ", a.rec->items[0]->item[0]), "its nearest item is a shoe");
    s_answer_free (&a);
}

//  How many of the answer's items are of a kind: ids starting with A are running
//  shoes, B winter hats.
static int
s_kind_count (const Strata__V1__Recommendations *rec, char kind)
{
    int n = 0;
    for (size_t i = 0; i < rec->n_items; i++)
        n += rec->items[i]->item[0] == kind;
    return n;
}

// ---------------------------------------------------------------- tests

Test (serve, answers_filters_cold_start_and_errors)
{
    s_shop (1);
    answer_t a;
    //  The rule: after A3 comes A4.
    s_recommend ("t-a3", 5, NULL, &a);
    cr_assert_not_null (a.rec, "%s", a.err ? a.err->message : a.type);
    cr_expect_str_eq (a.rec->request_id, "r1");
    cr_expect_str_eq (a.rec->source, "model");
    cr_expect_gt (a.rec->model_version, 0u);
    cr_expect_eq (a.rec->n_items, 5u);
    cr_expect_str_eq (a.rec->items[0]->item, "A4", "after A0..A3 the model says %s", a.rec->items[0]->item);
    for (size_t i = 1; i < a.rec->n_items; i++)
        cr_expect_geq (a.rec->items[i - 1]->score, a.rec->items[i]->score, "scores not in order");
    s_answer_free (&a);
    //  Filters: a category, a price range, explicit exclusions.
    Strata__V1__Filters f = STRATA__V1__FILTERS__INIT;
    f.category = "hats";
    s_recommend ("t-a3", 5, &f, &a);
    cr_assert_not_null (a.rec);
    cr_expect_eq (a.rec->n_items, 5u);
    for (size_t i = 0; i < a.rec->n_items; i++)
        cr_expect_eq (a.rec->items[i]->item[0], 'B', "category filter let %s through", a.rec->items[i]->item);
    s_answer_free (&a);
    strata__v1__filters__init (&f);
    f.has_min_price = f.has_max_price = true;
    f.min_price = 52;
    f.max_price = 55.5;
    s_recommend ("t-a3", 10, &f, &a);
    cr_assert_not_null (a.rec);
    cr_expect_eq (a.rec->n_items, 4u, "A2..A5 are the items priced 52..55");
    for (size_t i = 0; i < a.rec->n_items; i++) {
        int idx = atoi (a.rec->items[i]->item + 1);
        cr_expect (a.rec->items[i]->item[0] == 'A' && idx >= 2 && idx <= 5, "price filter let %s through",
                   a.rec->items[i]->item);
    }
    s_answer_free (&a);
    strata__v1__filters__init (&f);
    char *ex[] = { "A4", "A5" };
    f.exclude = ex;
    f.n_exclude = 2;
    s_recommend ("t-a3", 10, &f, &a);
    cr_assert_not_null (a.rec);
    cr_expect (!s_has (a.rec, "A4") && !s_has (a.rec, "A5"), "excluded items came back");
    s_answer_free (&a);
    //  Purchases are left out by default; views only on request.
    s_recommend ("t-buy", 24, NULL, &a);
    cr_assert_not_null (a.rec);
    cr_expect (!s_has (a.rec, "A4"), "a purchased item was recommended");
    cr_expect (s_has (a.rec, "A3"), "a viewed item was left out without exclude_all_seen");
    s_answer_free (&a);
    strata__v1__filters__init (&f);
    f.exclude_all_seen = true;
    s_recommend ("t-buy", 24, &f, &a);
    cr_assert_not_null (a.rec);
    for (int i = 0; i <= 4; i++) {
        char id[8];
        snprintf (id, sizeof id, "A%d", i);
        cr_expect (!s_has (a.rec, id), "%s was seen and came back", id);
    }
    s_answer_free (&a);
    //  An unknown user: popular items; with a session, the model.
    s_recommend ("somebody-new", 4, NULL, &a);
    cr_assert_not_null (a.rec);
    cr_expect_str_eq (a.rec->source, "popular");
    cr_expect_eq (a.rec->n_items, 4u);
    s_answer_free (&a);
    Strata__V1__Recommend r = STRATA__V1__RECOMMEND__INIT;
    Strata__V1__RecentEvent e1 = STRATA__V1__RECENT_EVENT__INIT, e2 = STRATA__V1__RECENT_EVENT__INIT;
    Strata__V1__RecentEvent *recent[] = { &e1, &e2 };
    e1.item = "B5";
    e1.type = STRATA__V1__EVENT_TYPE__VIEW;
    e2.item = "B6";
    e2.type = STRATA__V1__EVENT_TYPE__VIEW;
    r.user = "somebody-new";
    r.k = 3;
    r.recent = recent;
    r.n_recent = 2;
    s_ask (WIRE_RECOMMEND, &r.base, &a);
    cr_assert_not_null (a.rec);
    cr_expect_str_eq (a.rec->source, "model");
    cr_expect_str_eq (a.rec->items[0]->item, "B7", "after a session B5, B6 the model says %s", a.rec->items[0]->item);
    s_answer_free (&a);
    //  Similar: never the item itself; Z, which nobody touched, sits among the shoes
    //  through its brand, category and title.
    Strata__V1__Similar sim = STRATA__V1__SIMILAR__INIT;
    sim.item = "Z";
    sim.k = 6;
    s_ask (WIRE_SIMILAR, &sim.base, &a);
    cr_assert_not_null (a.rec, "%s", a.err ? a.err->message : a.type);
    cr_expect_str_eq (a.type, WIRE_SIMILAR_REPLY);
    int shoes = 0;
    for (size_t i = 0; i < a.rec->n_items; i++) {
        cr_expect_str_neq (a.rec->items[i]->item, "Z");
        shoes += a.rec->items[i]->item[0] == 'A';
    }
    cr_expect_geq (shoes, 5, "only %d of Z's 6 nearest items are shoes", shoes);
    s_answer_free (&a);
    //  Search: text relevance over titles, brands, categories; candidates restrict it;
    //  a user blends in the model's taste.
    Strata__V1__Search q = STRATA__V1__SEARCH__INIT;
    q.query = "Winter Hats";
    q.k = 5;
    s_ask (WIRE_SEARCH, &q.base, &a);
    cr_assert_not_null (a.rec, "%s", a.err ? a.err->message : a.type);
    cr_expect_str_eq (a.type, WIRE_SEARCH_REPLY);
    cr_expect_str_eq (a.rec->source, "text+learned+ranker", "the version's learned terms and ranker are in use");
    cr_expect_eq (a.rec->n_items, 5u);
    for (size_t i = 0; i < a.rec->n_items; i++)
        cr_expect_eq (a.rec->items[i]->item[0], 'B', "'winter hats' found %s", a.rec->items[i]->item);
    cr_expect_str_eq (a.rec->items[0]->item, "B5", "what hat searchers bought comes first");
    s_answer_free (&a);
    //  Text alone: neither; the hats tie.
    q.text_only = true;
    s_ask (WIRE_SEARCH, &q.base, &a);
    cr_assert_not_null (a.rec);
    cr_expect_str_eq (a.rec->source, "text");
    cr_expect_eq (a.rec->n_items, 5u);
    s_answer_free (&a);
    q.text_only = false;
    char *cands[] = { "B1", "A2", "Z", "no-such-item" };
    q.query = "running";
    q.candidates = cands;
    q.n_candidates = 4;
    s_ask (WIRE_SEARCH, &q.base, &a);
    cr_assert_not_null (a.rec);
    //  Every known candidate comes back; B1, which does not match, last.
    cr_assert_eq (a.rec->n_items, 3u, "the three known candidates");
    cr_expect (s_has (a.rec, "A2") && s_has (a.rec, "Z"));
    cr_expect_str_eq (a.rec->items[2]->item, "B1", "a candidate that matches no term comes last");
    s_answer_free (&a);
    q.candidates = NULL;
    q.n_candidates = 0;
    q.query = "fleet shoe";
    q.user = "t-a3";
    q.k = 3;
    s_ask (WIRE_SEARCH, &q.base, &a);
    cr_assert_not_null (a.rec);
    cr_expect_str_eq (a.rec->source, "text+learned+ranker+model");
    for (size_t i = 0; i < a.rec->n_items; i++)
        cr_expect (a.rec->items[i]->item[0] == 'A' || a.rec->items[i]->item[0] == 'Z');
    s_answer_free (&a);
    //  Learned: "comfy" is in no title, but its searchers bought A7.
    q.query = "comfy";
    q.user = "";
    s_ask (WIRE_SEARCH, &q.base, &a);
    cr_assert_not_null (a.rec);
    cr_expect_str_eq (a.rec->source, "text+learned");
    cr_assert_geq (a.rec->n_items, 1u);
    cr_expect_str_eq (a.rec->items[0]->item, "A7");
    s_answer_free (&a);
    q.text_only = true;
    s_ask (WIRE_SEARCH, &q.base, &a);
    cr_assert_not_null (a.rec);
    cr_expect_eq (a.rec->n_items, 0u, "text alone finds nothing for 'comfy'");
    s_answer_free (&a);
    q.text_only = false;
    q.query = "";
    q.request_id = "empty";
    s_ask (WIRE_SEARCH, &q.base, &a);
    cr_assert_not_null (a.err, "an empty query was answered");
    cr_expect_eq (a.err->code, STRATA__V1__ERROR_CODE__INVALID);
    cr_expect_str_eq (a.err->ref, "empty");
    s_answer_free (&a);
    //  Bad requests get Errors, from the broker or the worker, with a reason.
    sim.item = "no-such-item";
    s_ask (WIRE_SIMILAR, &sim.base, &a);
    cr_assert_not_null (a.err);
    cr_expect_eq (a.err->code, STRATA__V1__ERROR_CODE__NOT_FOUND);
    s_answer_free (&a);
    r.recent = NULL;
    r.n_recent = 0;
    r.k = 5000;
    r.request_id = "big-k";
    s_ask (WIRE_RECOMMEND, &r.base, &a);
    cr_assert_not_null (a.err);
    cr_expect_eq (a.err->code, STRATA__V1__ERROR_CODE__INVALID);
    cr_expect_str_eq (a.err->ref, "big-k");
    s_answer_free (&a);
    strata__v1__filters__init (&f);
    f.has_min_price = f.has_max_price = true;
    f.min_price = 20;
    f.max_price = 10;
    r.k = 5;
    r.filters = &f;
    s_ask (WIRE_RECOMMEND, &r.base, &a);
    cr_assert_not_null (a.err, "an empty price range was accepted");
    s_answer_free (&a);
    zsock_t *s = s_client ();
    wire_send_bytes (s, NULL, WIRE_RECOMMEND, "\xff\xff\xff", 3);
    cr_assert (s_read (s, &a));
    cr_assert_not_null (a.err);
    cr_expect_eq (a.err->code, STRATA__V1__ERROR_CODE__BAD_PAYLOAD);
    s_answer_free (&a);
    char *big = calloc (1, 100000);
    wire_send_bytes (s, NULL, WIRE_SIMILAR, big, 100000);
    free (big);
    cr_assert (s_read (s, &a));
    cr_assert_not_null (a.err);
    cr_expect_eq (a.err->code, STRATA__V1__ERROR_CODE__TOO_LARGE);
    s_answer_free (&a);
    zsock_destroy (&s);
    //  PING takes the same path and comes back at once, its payload echoed.
    s = s_client ();
    wire_send_bytes (s, NULL, WIRE_PING, "ping-7", 6);
    wire_msg_t pm;
    cr_assert_eq (wire_recv (s, false, 0, &pm), 0);
    cr_expect_str_eq (pm.type, WIRE_PING_REPLY);
    cr_expect (zframe_size (pm.payload) == 6 && !memcmp (zframe_data (pm.payload), "ping-7", 6));
    wire_msg_reset (&pm);
    zsock_destroy (&s);
    //  ... and the worker still serves.
    s_recommend ("t-a3", 3, NULL, &a);
    cr_assert_not_null (a.rec);
    cr_expect_str_eq (a.rec->items[0]->item, "A4");
    s_answer_free (&a);
    s_new_item ("item", 5);
    e1.item = "Z2";   //  a session of the new item alone
    r.user = "somebody-else";
    r.request_id = "";
    r.filters = NULL;
    r.recent = recent;
    r.n_recent = 1;
    s_ask (WIRE_RECOMMEND, &r.base, &a);
    cr_assert_not_null (a.rec);
    cr_expect_str_eq (a.rec->source, "model", "a session of one new item is read by the model");
    shoes = s_kind_count (a.rec, 'A');
    cr_expect_gt (2 * shoes, (int) a.rec->n_items, "a session of Z2, a shoe, is recommended %d shoes of %zu", shoes,
                  a.rec->n_items);
    s_answer_free (&a);
    //  Z2's record written again, as a winter hat: its vector follows its new features
    //  (before, it kept those of its first record until the next version).
    s_import_text ("z2-hat.jsonl", true,
                   "{\"item_id\":\"Z2\",\"title\":\"Crest winter hat\",\"brand\":\"Crest\",\"category\":"
                   "\"Hats > Winter\",\"price\":\"12.00\"}\n");
    Strata__V1__Similar z2 = STRATA__V1__SIMILAR__INIT;
    z2.item = "Z2";
    z2.k = 6;
    int hats = 0;
    for (int i = 0; i < 100 && hats < 5; i++) {
        s_ask (WIRE_SIMILAR, &z2.base, &a);
        cr_assert_not_null (a.rec);
        hats = s_kind_count (a.rec, 'B');
        s_answer_free (&a);
        if (hats < 5)
            zclock_sleep (100);
    }
    cr_expect_geq (hats, 5, "Z2, a hat now, has %d hats among its 6 nearest items", hats);
    //  ... and a session of it is recommended hats: the rank worker's vector of that
    //  history (cached since the first ask) was dropped with Z2's old vector.
    s_ask (WIRE_RECOMMEND, &r.base, &a);
    cr_assert_not_null (a.rec);
    hats = s_kind_count (a.rec, 'B');
    cr_expect_gt (2 * hats, (int) a.rec->n_items, "a session of Z2, a hat now, is recommended %d hats of %zu", hats,
                  a.rec->n_items);
    s_answer_free (&a);
    //  Z3, a new hat of Z2's new record, Z2's twin. Z2 is among Z3's 12 nearest items
    //  (12 hats B0..B11 and Z2 are the hats; on the trained vectors Z2 beats several of
    //  them), as the scan reads Z2 now: packed again with its new vector. Scanned as the
    //  shoe it was, it scores below every hat and is left out.
    s_import_text ("z3-hat.jsonl", true,
                   "{\"item_id\":\"Z3\",\"title\":\"Crest winter hat\",\"brand\":\"Crest\",\"category\":"
                   "\"Hats > Winter\",\"price\":\"12.00\"}\n");
    s_similar_once_known ("Z3", 12, &a);
    cr_assert (a.rec, "the new item Z3 never became known to the rank worker");
    bool twin = false;
    for (size_t j = 0; j < a.rec->n_items; j++)
        twin |= !strcmp (a.rec->items[j]->item, "Z2");
    for (size_t j = 0; !twin && j < a.rec->n_items; j++)
        cr_log_error ("Z3's nearest items: %s %g", a.rec->items[j]->item, (double) a.rec->items[j]->score);
    s_answer_free (&a);
    cr_expect (twin, "Z2, Z3's twin, is not among its 12 nearest items");
    //  t-a3's history was asked for many times: the broker holds it in memory. A new
    //  event of theirs replaces it: after A4, the model says A5.
    json_t *st = hcluster_stats (&s_c);
    json_t *serving = json_object_get (st, "serving");
    cr_expect_gt (json_integer_value (json_object_get (serving, "history_cache_hits")), 0);
    cr_expect_gt (json_integer_value (json_object_get (serving, "history_cache_misses")), 0);
    cr_expect_gt (json_integer_value (json_object_get (serving, "served")), 10);
    cr_expect_gt (json_integer_value (json_object_get (serving, "failed")), 3, "the bad requests above");
    json_decref (st);
    uint64_t events = hcluster_stat (&s_c, "events");
    s_import_text ("more.jsonl", false,
                   "{\"event_id\":\"ta4\",\"user_id\":\"t-a3\",\"item_id\":\"A4\",\"type\":\"view\","
                   "\"timestamp\":1700000240000}\n");
    cr_assert (hcluster_wait_stat (&s_c, "events", events + 1, 30000), "the new event was not stored");
    s_recommend ("t-a3", 3, NULL, &a);
    cr_assert_not_null (a.rec);
    cr_expect_str_eq (a.rec->items[0]->item, "A5", "the history sent was not the newest (A4 viewed): %s",
                      a.rec->items[0]->item);
    s_answer_free (&a);
    //  A catalogue update: A2 is now a trail boot at 99. The rank worker follows the
    //  broker's change log: the price filter and the search index see the new record.
    s_import_text ("update.jsonl", true,
                   "{\"item_id\":\"A2\",\"title\":\"Fleet trail boot 2\",\"brand\":\"Fleet\",\"category\":"
                   "\"Shoes > Trail\",\"price\":\"99.00\"}\n");
    Strata__V1__Search boot = STRATA__V1__SEARCH__INIT;
    boot.query = "trail boot";
    boot.k = 3;
    bool updated = false;
    for (int i = 0; i < 100 && !updated; i++) {
        s_ask (WIRE_SEARCH, &boot.base, &a);
        updated = a.rec && a.rec->n_items && !strcmp (a.rec->items[0]->item, "A2");
        if (updated)
            cr_expect_str_eq (a.rec->items[0]->title, "Fleet trail boot 2");
        s_answer_free (&a);
        if (!updated)
            zclock_sleep (100);
    }
    cr_assert (updated, "the updated record never reached the rank worker's search index");
    strata__v1__filters__init (&f);
    f.has_min_price = f.has_max_price = true;
    f.min_price = 52;
    f.max_price = 55.5;
    s_recommend ("t-a3", 10, &f, &a);
    cr_assert_not_null (a.rec);
    cr_expect (!s_has (a.rec, "A2"), "A2 costs 99 now");
    cr_expect_eq (a.rec->n_items, 3u, "A3..A5 are the items priced 52..55 now");
    s_answer_free (&a);
    strata__v1__filters__init (&f);
    f.category = "trail";
    s_recommend ("t-a3", 10, &f, &a);
    cr_assert_not_null (a.rec);
    cr_expect (a.rec->n_items == 1 && s_has (a.rec, "A2"), "only A2 is in Shoes > Trail");
    s_answer_free (&a);
    Strata__V1__Search old = STRATA__V1__SEARCH__INIT;
    old.query = "running shoe 2";
    old.k = 20;
    s_ask (WIRE_SEARCH, &old.base, &a);
    cr_assert_not_null (a.rec);
    for (size_t i = 0; i < a.rec->n_items; i++)
        if (!strcmp (a.rec->items[i]->item, "A2"))
            cr_expect_lt (a.rec->items[i]->score, a.rec->items[0]->score, "A2 still matches its old title best");
    s_answer_free (&a);
}

Test (serve, a_rank_worker_behind_the_change_log_reads_the_catalogue_again)
{
    //  The broker's change log keeps 2 changes. One import writes 3 records: the first
    //  change (B3 becomes a trail boot) is gone from the log before the rank worker asks
    //  for it, and only reading every page again brings it.
    s_shop_with (1, "--catalogue-changes=2");
    s_import_text ("updates.jsonl", true,
                   "{\"item_id\":\"B3\",\"title\":\"Crest trail boot 3\",\"brand\":\"Crest\",\"category\":"
                   "\"Shoes > Trail\",\"price\":\"80.00\"}\n"
                   "{\"item_id\":\"B4\",\"title\":\"Crest winter hat 4\",\"brand\":\"Crest\",\"category\":"
                   "\"Hats > Winter\",\"price\":\"15.00\"}\n"
                   "{\"item_id\":\"B5\",\"title\":\"Crest winter hat 5\",\"brand\":\"Crest\",\"category\":"
                   "\"Hats > Winter\",\"price\":\"16.00\"}\n");
    Strata__V1__Search boot = STRATA__V1__SEARCH__INIT;
    boot.query = "trail boot";
    boot.k = 3;
    answer_t a;
    bool found = false;
    for (int i = 0; i < 100 && !found; i++) {
        s_ask (WIRE_SEARCH, &boot.base, &a);
        found = a.rec && a.rec->n_items && !strcmp (a.rec->items[0]->item, "B3");
        s_answer_free (&a);
        if (!found)
            zclock_sleep (100);
    }
    cr_assert (found, "the record dropped from the change log never reached the rank worker");
    Strata__V1__Filters f = STRATA__V1__FILTERS__INIT;
    f.category = "trail";
    s_recommend ("t-a3", 10, &f, &a);
    cr_assert_not_null (a.rec);
    cr_expect (a.rec->n_items == 1 && s_has (a.rec, "B3"), "only B3 is in Shoes > Trail");
    s_answer_free (&a);
    //  Serving went on throughout, and the worker's log says why it read the pages.
    char log[700], line[1024];
    snprintf (log, sizeof log, "%s/worker-%d.log", s_c.dir, s_c.nworkers);   // the rank worker's
    bool said = false;
    FILE *lf = fopen (log, "r");
    cr_assert_not_null (lf);
    while (fgets (line, sizeof line, lf))
        said |= strstr (line, "no longer in the broker's log") != NULL;
    fclose (lf);
    cr_expect (said, "the rank worker did not say it read the catalogue again (see %s)", log);
}

Test (serve, approximate_index_answers_and_falls_back_to_exact)
{
    //  Five k-means cells, one probed per query: when the probed cell's candidates
    //  cannot fill k (tight filters, large k), the worker goes to exact search.
    s_shop (0);
    const char *flags[] = { "--index=ivf", "--ivf-cells=5", "--ivf-probe=1", NULL };
    hcluster_add_rank_worker_with (&s_c, 1, flags);
    s_wait_version (1);
    answer_t a;
    s_recommend ("t-a3", 5, NULL, &a);
    cr_assert_not_null (a.rec, "%s", a.err ? a.err->message : a.type);
    cr_expect_str_eq (a.rec->source, "model-ivf");
    cr_expect_str_eq (a.rec->items[0]->item, "A4", "after A0..A3 the approximate index says %s", a.rec->items[0]->item);
    for (size_t i = 1; i < a.rec->n_items; i++)
        cr_expect_geq (a.rec->items[i - 1]->score, a.rec->items[i]->score, "scores not in order");
    s_answer_free (&a);
    //  More items than one cell holds (7 at most, says the worker's log): exact search.
    s_recommend ("t-a3", 20, NULL, &a);
    cr_assert_not_null (a.rec);
    cr_expect_eq (a.rec->n_items, 20u, "k beyond the probed cell's candidates still gets k items");
    s_answer_free (&a);
    Strata__V1__Filters f = STRATA__V1__FILTERS__INIT;
    f.category = "hats";
    s_recommend ("t-a3", 5, &f, &a);
    cr_assert_not_null (a.rec);
    cr_expect_eq (a.rec->n_items, 5u, "a filter the probed cell cannot satisfy still gets its k items");
    for (size_t i = 0; i < a.rec->n_items; i++)
        cr_expect_eq (a.rec->items[i]->item[0], 'B', "category filter let %s through", a.rec->items[i]->item);
    s_answer_free (&a);
    Strata__V1__Similar sim = STRATA__V1__SIMILAR__INIT;
    sim.item = "Z";
    sim.k = 6;
    s_ask (WIRE_SIMILAR, &sim.base, &a);
    cr_assert_not_null (a.rec);
    cr_expect_str_eq (a.rec->source, "item-ivf");
    cr_expect_eq (a.rec->n_items, 6u, "k items, from exact search when the probed cell holds fewer");
    for (size_t i = 0; i < a.rec->n_items; i++)
        cr_expect_str_neq (a.rec->items[i]->item, "Z");
    cr_expect_eq (a.rec->items[0]->item[0], 'A', "Z's nearest item is a shoe, not %s", a.rec->items[0]->item);
    s_answer_free (&a);
    //  An item the index was not built with is scored beside the probed cell (one of
    //  five: the approximation shows in the rest of the list).
    s_new_item ("item-ivf", 1);
    //  Z2 shares all of Z's features: Z's nearest item now, though in no cell.
    sim.k = 3;
    s_ask (WIRE_SIMILAR, &sim.base, &a);
    cr_assert_not_null (a.rec);
    cr_expect_str_eq (a.rec->items[0]->item, "Z2", "Z's nearest item is %s, not the new Z2", a.rec->items[0]->item);
    s_answer_free (&a);
    //  A restarted worker reads the version's index back from its store instead of
    //  building it again, and answers as before.
    pid_t first = s_c.workers[s_c.nworkers - 1];
    kill (first, SIGKILL);
    waitpid (first, NULL, 0);
    hcluster_add_rank_worker_with (&s_c, 1, flags);
    char log[700], line[1024];
    snprintf (log, sizeof log, "%s/worker-%d.log", s_c.dir, s_c.nworkers);
    s_recommend ("t-a3", 5, NULL, &a);   // waits for the broker to drop the dead worker
    for (int i = 0; i < 100 && !(a.rec && a.rec->worker); i++) {
        s_answer_free (&a);
        zclock_sleep (100);
        s_recommend ("t-a3", 5, NULL, &a);
    }
    cr_assert_not_null (a.rec);
    cr_expect_str_eq (a.rec->source, "model-ivf");
    cr_expect_str_eq (a.rec->items[0]->item, "A4");
    s_answer_free (&a);
    bool read_back = false, built = false;
    FILE *lf = fopen (log, "r");
    cr_assert_not_null (lf);
    while (fgets (line, sizeof line, lf)) {
        read_back |= strstr (line, "approximate index read back") != NULL;
        built |= strstr (line, "built in") != NULL;
    }
    fclose (lf);
    cr_expect (read_back && !built, "the restarted worker built its index again (see %s)", log);
}

//  Sends RECOMMENDs continuously (8 in flight) for ms milliseconds, calling mid at
//  half time; counts answers, failures, versions and the worst latency.
typedef struct {
    uint64_t answered, failed, lost, v_first, v_last;
    uint64_t by_second;   // answered by rank-2
    int64_t worst_ms;
} load_t;

static void
s_load (int ms, void (*mid) (void), load_t *out)
{
    memset (out, 0, sizeof *out);
    zsock_t *s = s_client ();
    zsock_set_rcvtimeo (s, 100);
    enum { INFLIGHT = 8, MAX_REQUESTS = 1 << 21 };
    int64_t *sent_at = malloc (MAX_REQUESTS * sizeof *sent_at);
    cr_assert_not_null (sent_at);
    uint64_t next = 0;
    int64_t start = util_mono_ms (), last_answer = start;
    bool mid_done = false;
    int inflight = 0;
    while (util_mono_ms () - start < ms || inflight > 0) {
        while (util_mono_ms () - start < ms && inflight < INFLIGHT && next < MAX_REQUESTS) {
            char id[24];
            snprintf (id, sizeof id, "%llu", (unsigned long long) next);
            Strata__V1__Recommend r = STRATA__V1__RECOMMEND__INIT;
            r.request_id = id;
            r.user = next % 3 ? "t-a3" : "t-buy";
            r.k = 5;
            s_send (s, WIRE_RECOMMEND, &r.base);
            sent_at[next] = util_mono_ms ();
            next++;
            inflight++;
        }
        if (!mid_done && util_mono_ms () - start > ms / 2) {
            mid_done = true;
            if (mid)
                mid ();
        }
        answer_t a;
        if (!s_read (s, &a)) {
            if (util_mono_ms () - last_answer > 20000) {
                out->lost = (uint64_t) inflight;
                break;
            }
            continue;
        }
        last_answer = util_mono_ms ();
        inflight--;
        if (a.rec) {
            uint64_t i = strtoull (a.rec->request_id, NULL, 10);
            int64_t lat = i < next ? util_mono_ms () - sent_at[i] : 0;
            if (a.rec->worker && !strcmp (a.rec->worker, "rank-2"))
                out->by_second++;
            out->worst_ms = lat > out->worst_ms ? lat : out->worst_ms;
            if (!out->v_first)
                out->v_first = a.rec->model_version;
            out->v_last = a.rec->model_version;
            out->answered++;
        }
        else {
            out->failed++;
            cr_log_error ("a request failed: %s", a.err ? a.err->message : a.type);
        }
        s_answer_free (&a);
    }
    free (sent_at);
    zsock_destroy (&s);
}

static void
s_retrain (void)
{
    //  A new full run publishes new versions while the load goes on.
    const char *args[] = { "train", "--trainer", s_c.trainer_api, "--epochs", "2", "--timeout-ms", "10000", NULL };
    json_t *st = harness_cli_json (args, NULL);
    json_decref (st);
}

Test (serve, new_version_swapped_in_under_load)
{
    s_shop (1);
    load_t l;
    s_load (8000, s_retrain, &l);
    cr_log_info ("hot swap: %llu answered, %llu failed, versions %llu -> %llu, worst %lld ms",
                 (unsigned long long) l.answered, (unsigned long long) l.failed, (unsigned long long) l.v_first,
                 (unsigned long long) l.v_last, (long long) l.worst_ms);
    cr_expect_gt (l.answered, 100u);
    cr_expect_eq (l.failed, 0u);
    cr_expect_eq (l.lost, 0u);
    cr_expect_gt (l.v_last, l.v_first, "the version in replies did not change");
}

static pid_t s_victim;

static void
s_kill_victim (void)
{
    kill (s_victim, SIGKILL);
}

Test (serve, rank_worker_killed_under_load)
{
    //  The broker presumes a silent worker dead after 3 s (12 heartbeats of 250 ms), as
    //  by default. The jobs the killed worker held go to the other once it has been
    //  silent for serve-hedge-ms (500 by default), long before.
    s_shop_with (2, "--liveness=12");
    s_victim = s_c.workers[s_c.nworkers - 1];
    load_t l;
    s_load (6000, s_kill_victim, &l);
    cr_log_info ("failover: %llu answered (%llu by the worker killed), %llu failed, worst latency %lld ms",
                 (unsigned long long) l.answered, (unsigned long long) l.by_second, (unsigned long long) l.failed,
                 (long long) l.worst_ms);
    cr_expect_gt (l.answered, 100u);
    cr_expect_gt (l.by_second, 10u, "the worker killed had not been serving");
    cr_expect_eq (l.failed, 0u);
    cr_expect_eq (l.lost, 0u);
    cr_expect_lt (l.worst_ms, 2500, "requests waited for the heartbeats (%lld ms) instead of going to the other "
                                    "worker after serve-hedge-ms", (long long) l.worst_ms);
    json_t *st = hcluster_stats (&s_c);
    cr_expect_gt (json_integer_value (json_object_get (json_object_get (st, "serving"), "hedged")), 0);
    json_decref (st);
    //  The survivor still answers afterwards.
    answer_t a;
    s_recommend ("t-a3", 3, NULL, &a);
    cr_expect_not_null (a.rec);
    s_answer_free (&a);
}
