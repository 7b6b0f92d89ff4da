/*  Unit: the journal's sync thread (syncer.h) on a real RocksDB in a temporary
    directory: tickets are answered in order, the descriptor wakes a poller when a sync
    ends, requests made together are covered by one sync, waiting covers every ticket,
    and what was written before a request is in the store after it is durable.
*/
#include <criterion/criterion.h>
#include <poll.h>
#include <string.h>

#include "harness.h"
#include "knowledge.h"
#include "syncer.h"

TestSuite (syncer, .init = harness_dir_setup, .fini = harness_dir_teardown);

static uint64_t
s_append (knowledge_t *kb, const char *batch_id)
{
    const char *ids[] = { batch_id };
    const void *data[] = { "raw" };
    size_t lens[] = { 3 };
    uint64_t seq = 0;
    cr_assert_eq (knowledge_journal_append (kb, 1, ids, data, lens, false, &seq), STRATA_OK);
    return seq;
}

//  Polls the syncer until it says `want` is durable (at most 10 s).
static uint64_t
s_until_synced (syncer_t *sy, uint64_t want)
{
    uint64_t synced = 0;
    for (int i = 0; i < 100 && synced < want; i++) {
        struct pollfd p = { syncer_fd (sy), POLLIN, 0 };
        if (poll (&p, 1, 100) == 1)
            cr_assert_eq (syncer_synced (sy, &synced), STRATA_OK);
    }
    return synced;
}

Test (syncer, tickets_are_answered_in_order_through_the_descriptor)
{
    knowledge_t *kb = knowledge_open (harness_dir);
    cr_assert_not_null (kb);
    syncer_t *sy = syncer_new (knowledge_store (kb));
    cr_assert_not_null (sy);
    uint64_t synced = 99;
    cr_assert_eq (syncer_synced (sy, &synced), STRATA_OK);
    cr_expect_eq (synced, 0, "nothing asked, nothing synced");

    s_append (kb, "b1");
    uint64_t t1 = syncer_request (sy);
    cr_expect_eq (t1, 1);
    cr_expect_geq (s_until_synced (sy, t1), t1);

    //  Asked together: a sync that starts after the last covers them all, and the
    //  descriptor is readable until then.
    uint64_t last = 0;
    for (int i = 0; i < 50; i++) {
        char id[16];
        snprintf (id, sizeof id, "c%d", i);
        s_append (kb, id);
        last = syncer_request (sy);
    }
    cr_expect_eq (last, t1 + 50);
    cr_expect_eq (s_until_synced (sy, last), last);
    uint64_t syncs = 0, slowest = 0;
    syncer_counts (sy, &syncs, &slowest);
    cr_expect_geq (syncs, 2, "the first ticket and the fifty had a sync each at least");
    cr_expect_leq (syncs, 51, "%llu syncs for 51 tickets", (unsigned long long) syncs);
    cr_expect_gt (slowest, 0, "a sync takes some time");

    //  Waiting covers every ticket issued.
    s_append (kb, "d");
    uint64_t t = syncer_request (sy);
    cr_assert_eq (syncer_wait (sy, &synced), STRATA_OK);
    cr_expect_eq (synced, t);
    syncer_destroy (&sy);
    cr_expect_null (sy);
    syncer_destroy (&sy);
    knowledge_destroy (&kb);

    //  The journal written without sync and then synced is there after a reopen.
    kb = knowledge_open (harness_dir);
    cr_assert_not_null (kb);
    cr_expect_eq (knowledge_journal_pending (kb), 52);
    knowledge_destroy (&kb);
}

Test (syncer, stops_with_requests_outstanding)
{
    knowledge_t *kb = knowledge_open (harness_dir);
    cr_assert_not_null (kb);
    syncer_t *sy = syncer_new (knowledge_store (kb));
    cr_assert_not_null (sy);
    for (int i = 0; i < 20; i++) {
        s_append (kb, i % 2 ? "x" : "y");
        syncer_request (sy);
    }
    syncer_destroy (&sy);   // must neither hang nor leak
    knowledge_destroy (&kb);
}
