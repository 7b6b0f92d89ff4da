/*  Integration: the training export (HISTORY, CATALOGUE) and `strata eval`, against a
    real broker over TCP with synthetic data imported through the normal path.
*/
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "dataset.h"
#include "harness.h"
#include "request.h"
#include "wire.h"

static hcluster_t s_c;

static void
s_cleanup (void)
{
    hcluster_stop (&s_c);
}

//  A cluster holding a generated shop: returns the events file's event count.
static void
s_load (void)
{
    cr_assert_eq (hcluster_start (&s_c, NULL), 0);
    hcluster_add_worker (&s_c);
    char gdir[700], items[800], events[800];
    snprintf (gdir, sizeof gdir, "%s/gen", s_c.dir);
    const char *gen[] = { "gen", "--out", gdir, "--events", "30000", "--users", "400", "--items", "600", "--seed", "3",
                          NULL };
    json_decref (harness_cli_json (gen, NULL));
    snprintf (items, sizeof items, "%s/items.jsonl", gdir);
    snprintf (events, sizeof events, "%s/events.jsonl", gdir);
    const char *imp_items[] = { "import", "--broker", s_c.ingest, "--quiet", "--items", items, NULL };
    const char *imp_events[] = { "import", "--broker", s_c.ingest, "--quiet", events, NULL };
    json_decref (harness_cli_json (imp_items, NULL));
    json_t *sum = harness_cli_json (imp_events, NULL);
    cr_assert_not_null (sum);
    cr_assert_eq (json_integer_value (json_object_get (sum, "accepted")), 30000);
    json_decref (sum);
}

TestSuite (export, .fini = s_cleanup, .timeout = 240);

Test (export, histories_and_catalogue_match_the_store)
{
    s_load ();
    json_t *st = hcluster_stats (&s_c);
    uint32_t users = (uint32_t) json_integer_value (json_object_get (st, "users"));
    uint32_t items = (uint32_t) json_integer_value (json_object_get (st, "items"));
    json_decref (st);

    char err[256];
    dataset_t *d = dataset_fetch (s_c.api, 10000, err, sizeof err);
    cr_assert_not_null (d, "%s", err);
    cr_expect_eq (d->n_users, users);
    cr_expect_eq (d->n_items, items);
    //  Every event with an item is exported (searches without a click have none).
    cr_expect_gt (d->n_events, 25000);
    cr_expect_leq (d->n_events, 30000);
    for (uint32_t u = 0; u < d->n_users; u++)
        for (uint32_t k = d->offsets[u] + 1; k < d->offsets[u + 1]; k++)
            cr_assert_leq (d->ts[k - 1], d->ts[k], "user %u's events out of time order", u);

    //  Small pages give the same result as the default ones.
    Strata__V1__HistoryRequest req = STRATA__V1__HISTORY_REQUEST__INIT;
    req.max_users = 7;
    req.with_ids = true;
    Strata__V1__HistoryReply *r = (Strata__V1__HistoryReply *) client_request (
        s_c.api, WIRE_HISTORY, &req.base, WIRE_HISTORY_REPLY, &strata__v1__history_reply__descriptor, 5000, err,
        sizeof err);
    cr_assert_not_null (r, "%s", err);
    cr_expect_eq (r->n_users, 7);
    cr_expect_eq (r->done, false);
    cr_expect_eq (r->next_user, r->users[6]->user + 1);
    cr_expect_gt (strlen (r->users[0]->user_id), 0, "external ids on request");
    strata__v1__history_reply__free_unpacked (r, NULL);

    //  However much is asked for, a page is small enough to be built between two
    //  recommendations (the broker caps it: 4,096 events, 512 catalogue items), and
    //  the pages cover everything.
    Strata__V1__HistoryRequest all = STRATA__V1__HISTORY_REQUEST__INIT;
    all.max_users = 1000000;
    all.max_events = 1000000;
    r = (Strata__V1__HistoryReply *) client_request (s_c.api, WIRE_HISTORY, &all.base, WIRE_HISTORY_REPLY,
                                                     &strata__v1__history_reply__descriptor, 5000, err, sizeof err);
    cr_assert_not_null (r, "%s", err);
    size_t page_events = 0, longest = 0;
    for (size_t u = 0; u < r->n_users; u++) {
        page_events += r->users[u]->n_events;
        longest = r->users[u]->n_events > longest ? r->users[u]->n_events : longest;
    }
    cr_expect_eq (r->done, false, "%zu events in one page", page_events);
    cr_expect_leq (page_events, 4096 + longest, "a page ends at the first user past 4,096 events");
    cr_expect_geq (page_events, 4096);
    strata__v1__history_reply__free_unpacked (r, NULL);

    uint32_t seen = 0, start = 0, pages = 0;
    size_t titled = 0;
    bool done = false;
    while (!done) {
        Strata__V1__CatalogueRequest creq = STRATA__V1__CATALOGUE_REQUEST__INIT;
        creq.start_item = start;
        creq.max_items = 100000;
        Strata__V1__CatalogueReply *c = (Strata__V1__CatalogueReply *) client_request (
            s_c.api, WIRE_CATALOGUE, &creq.base, WIRE_CATALOGUE_REPLY, &strata__v1__catalogue_reply__descriptor, 5000,
            err, sizeof err);
        cr_assert_not_null (c, "%s", err);
        cr_assert_leq (c->n_items, 512);
        for (size_t i = 0; i < c->n_items; i++) {
            cr_expect_eq (c->items[i]->item_index, seen + i);
            cr_expect_gt (strlen (c->items[i]->item_id), 0);
            titled += strlen (c->items[i]->title) > 0 && c->items[i]->n_tokens > 0;
        }
        seen += (uint32_t) c->n_items;
        done = c->done;
        cr_assert (done || c->next_item > start, "the pages move on");
        start = c->next_item;
        pages++;
        strata__v1__catalogue_reply__free_unpacked (c, NULL);
    }
    cr_expect_eq (seen, items);
    cr_expect_geq (pages, 2);
    cr_expect_eq (titled, 600, "every catalogue item arrives with its title and tokens");

    //  A bad request is an error reply, and the broker keeps serving.
    zsock_t *s = zsock_new_dealer (s_c.api);
    zsock_set_rcvtimeo (s, 5000);
    wire_send_bytes (s, NULL, WIRE_HISTORY, "\xff\xff\xff", 3);
    wire_msg_t m;
    cr_assert_eq (wire_recv (s, false, 0, &m), 0);
    cr_expect_str_eq (m.type, WIRE_ERROR);
    wire_msg_reset (&m);
    zsock_destroy (&s);
    dataset_destroy (&d);
    cr_expect_eq (hcluster_stop (&s_c), 0, "sanitizer reports in the broker or worker logs");
}

Test (export, eval_prints_tuned_baselines)
{
    s_load ();
    const char *args[] = { "eval", "--broker", s_c.api, "--knn-k", "20,50", "--knn-decay", "1,0.6",
                           "--ease-lambda", "10,100", "--epochs", "40", "--dim", "32", "--batch", "32", "--lr", "0.005",
                           NULL };
    int status = -1;
    json_t *j = harness_cli_json (args, &status);
    cr_assert_eq (status, 0);
    cr_assert_not_null (j);
    json_t *results = json_object_get (j, "results");
    cr_assert_eq (json_array_size (results), 5, "popularity, item-kNN, EASE, the model, re-ranked");
    json_t *rr = json_array_get (results, 4);
    cr_expect_str_eq (json_string_value (json_object_get (rr, "name")), "strata+rank");
    cr_expect_gt (json_integer_value (json_object_get (json_object_get (rr, "test"), "users")), 300);
    cr_expect (json_is_real (json_object_get (rr, "blend")), "the blend chosen on validation is reported");
    double ndcg[4];
    const char *names[] = { "popularity", "item-kNN", "EASE", "strata" };
    for (size_t i = 0; i < 4; i++) {
        json_t *r = json_array_get (results, i);
        cr_expect_str_eq (json_string_value (json_object_get (r, "name")), names[i]);
        ndcg[i] = json_real_value (json_object_get (json_object_get (r, "test"), "ndcg@10"));
        cr_expect_gt (json_integer_value (json_object_get (json_object_get (r, "test"), "users")), 300);
    }
    cr_expect_gt (ndcg[1], ndcg[0], "item-kNN (%f) should beat popularity (%f) on funnel data", ndcg[1], ndcg[0]);
    cr_expect_gt (ndcg[2], ndcg[0], "EASE (%f) should beat popularity (%f)", ndcg[2], ndcg[0]);
    cr_expect_gt (ndcg[3], ndcg[0], "the model (%f) should beat popularity (%f)", ndcg[3], ndcg[0]);
    json_t *model = json_array_get (results, 3);
    cr_expect_gt (json_integer_value (json_object_get (model, "parameters")), 600 * 32, "item table at least");
    json_decref (j);
    cr_expect_eq (hcluster_stop (&s_c), 0, "sanitizer reports in the broker or worker logs");
}
