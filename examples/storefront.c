/*  storefront: a small shop front in C asking Strata what to show.

        storefront [API-ENDPOINT [USER [ITEM [QUERY]]]]

    One page of a shop: recommendations for the visitor, items like the one on the
    page, a search, each a synchronous call; then the same page the way a busy server
    would build it, every request in flight at once on the one connection and the
    replies taken as they come, matched by request id. It uses only strata.h (link
    libstrata), as any C program would: plain structs in, plain structs out.

    Output, per answer: a header line `== LABEL: model version V, SOURCE, from WORKER`
    and one line per item `  RANK  ITEM  SCORE  TITLE`; or `== LABEL: error: TEXT`.
*/
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "strata.h"

static void
s_print (const char *label, const strata_reply_t *r)
{
    if (r->status != STRATA_OK) {
        printf ("== %s: error: %s (%s)\n", label, r->error, strata_strerror (r->status));
        return;
    }
    printf ("== %s: model version %" PRIu64 ", %s, from %s\n", label, r->model_version, r->source, r->served_by);
    for (size_t i = 0; i < r->n_items; i++)
        printf ("  %2zu  %-12s %8.4f  %s\n", i + 1, r->items[i].item_id, (double) r->items[i].score, r->items[i].title);
}

//  Prints a synchronous call's outcome; 1 when it failed.
static int
s_show (strata_client_t *client, const char *label, int rc, strata_reply_t *r)
{
    if (rc != STRATA_OK) {
        printf ("== %s: error: %s (%s)\n", label, strata_client_error (client), strata_strerror (rc));
        return 1;
    }
    s_print (label, r);
    return 0;
}

int
main (int argc, char **argv)
{
    const char *endpoint = argc > 1 ? argv[1] : "tcp://127.0.0.1:7703";
    const char *user = argc > 2 ? argv[2] : "u1";
    const char *item = argc > 3 ? argv[3] : "A1";
    const char *query = argc > 4 ? argv[4] : "running shoe";
    if (argc > 5 || (argc > 1 && argv[1][0] == '-')) {
        fprintf (stderr, "usage: storefront [API-ENDPOINT [USER [ITEM [QUERY]]]]\n");
        return 2;
    }
    strata_client_opts_t opts = { .timeout_ms = 5000 };
    strata_client_t *client = strata_client_new (endpoint, &opts);
    if (!client) {
        fprintf (stderr, "storefront: cannot use endpoint %s\n", endpoint);
        return 1;
    }
    int failed = 0, rc;
    char label[256];

    //  The visitor's front page: what they have not bought yet.
    strata_reply_t *r = NULL;
    strata_recommend_t rec = { .user_id = user, .k = 5 };
    snprintf (label, sizeof label, "recommend for %s", user);
    rc = strata_recommend (client, &rec, 0, &r);
    failed += s_show (client, label, rc, r);
    strata_reply_destroy (&r);

    //  The product page: items like this one, not the item itself.
    strata_similar_t sim = { .item_id = item, .k = 5 };
    snprintf (label, sizeof label, "similar to %s", item);
    rc = strata_similar (client, &sim, 0, &r);
    failed += s_show (client, label, rc, r);
    strata_reply_destroy (&r);

    //  The search box, personalised for the visitor.
    strata_search_t search = { .query = query, .user_id = user, .k = 5 };
    snprintf (label, sizeof label, "search \"%s\" for %s", query, user);
    rc = strata_search (client, &search, 0, &r);
    failed += s_show (client, label, rc, r);
    strata_reply_destroy (&r);

    //  A server building many pages at once: every request in flight together, each
    //  reply printed when it comes, found by its request id. A new visitor who has just
    //  looked at `item` (a session the broker has not stored) gets the model's answer
    //  from that alone; the filters leave the item itself out.
    const char *const leave_out[] = { item };
    strata_filters_t not_it = { .exclude = leave_out, .n_exclude = 1 };
    strata_recent_t session[] = { { .item_id = item, .type = "view" } };
    strata_recommend_t visitor = { .user_id = "a-new-visitor", .k = 3, .filters = &not_it, .recent = session,
                                   .n_recent = 1 };
    struct {
        char label[256];
        uint64_t id;
        int rc;
    } flight[4];
    snprintf (flight[0].label, sizeof flight[0].label, "in flight: recommend for %s", user);
    flight[0].rc = strata_client_send_recommend (client, &rec, 0, &flight[0].id);
    snprintf (flight[1].label, sizeof flight[1].label, "in flight: similar to %s", item);
    flight[1].rc = strata_client_send_similar (client, &sim, 0, &flight[1].id);
    snprintf (flight[2].label, sizeof flight[2].label, "in flight: search \"%s\"", query);
    strata_search_t anyone = { .query = query, .k = 3 };
    flight[2].rc = strata_client_send_search (client, &anyone, 0, &flight[2].id);
    snprintf (flight[3].label, sizeof flight[3].label, "in flight: recommend for a new visitor who viewed %s", item);
    flight[3].rc = strata_client_send_recommend (client, &visitor, 0, &flight[3].id);
    for (int i = 0; i < 4; i++)
        if (flight[i].rc != STRATA_OK) {
            printf ("== %s: error: %s\n", flight[i].label, strata_client_error (client));
            failed++;
        }
    printf ("-- %zu requests in flight on one connection\n", strata_client_inflight (client));
    while (strata_client_recv (client, -1, &r) == STRATA_OK) {
        for (int i = 0; i < 4; i++)
            if (flight[i].rc == STRATA_OK && flight[i].id == r->request_id) {
                s_print (flight[i].label, r);
                failed += r->status != STRATA_OK;
            }
        strata_reply_destroy (&r);
    }
    strata_client_destroy (&client);
    return failed ? 1 : 0;
}
