/*  Unit: the broker's knowledge store on a real RocksDB in a temporary directory.

    Journal append and replay after a restart (close and reopen, as after a crash:
    entries not yet applied are still there, applied ones are gone), exactly-once
    application (a result applied twice changes nothing; an event id seen in an earlier
    batch is a duplicate), persistent dictionaries and counters, the dead-letter
    store with reasons, and the code each failure of the store answers.
*/
#include <criterion/criterion.h>
#include <string.h>

#include "harness.h"
#include "knowledge.h"

TestSuite (knowledge, .init = harness_dir_setup, .fini = harness_dir_teardown);

static void
s_seq_collect (uint64_t seq, void *arg)
{
    uint64_t *out = arg;
    out[++out[0]] = seq;
}

static uint64_t
s_journal (knowledge_t *kb, const char *batch_id)
{
    const char *ids[] = { batch_id };
    const void *data[] = { "raw" };
    size_t lens[] = { 3 };
    uint64_t seq = 0;
    cr_assert_eq (knowledge_journal_append (kb, 1, ids, data, lens, true, &seq), STRATA_OK);
    return seq;
}

//  A cleaned result with events (user, item, event id) and optional rejects.
typedef struct {
    Strata__V1__JobResult res;
    Strata__V1__Event ev[8];
    Strata__V1__Event *evp[8];
    Strata__V1__Reject rj[4];
    Strata__V1__Reject *rjp[4];
} result_t;

static void
s_result (result_t *r, uint64_t seq, const char *batch_id, const char *const (*events)[3], size_t n)
{
    memset (r, 0, sizeof *r);
    strata__v1__job_result__init (&r->res);
    r->res.sequence = seq;
    r->res.batch_id = (char *) batch_id;
    for (size_t i = 0; i < n; i++) {
        strata__v1__event__init (&r->ev[i]);
        r->ev[i].user_id = (char *) events[i][0];
        r->ev[i].item_id = (char *) events[i][1];
        r->ev[i].event_id = (char *) events[i][2];
        r->ev[i].type = STRATA__V1__EVENT_TYPE__VIEW;
        r->ev[i].timestamp_ms = 1700000000000 + (int64_t) i;
        r->evp[i] = &r->ev[i];
    }
    r->res.n_events = n;
    r->res.events = r->evp;
}

static int
s_apply (knowledge_t *kb, result_t *r, Strata__V1__Ack *ack)
{
    Strata__V1__ReasonCount rc[8], *rcp[8];
    return knowledge_apply (kb, &r->res, ack, rc, rcp, 8);
}

Test (knowledge, journal_survives_restart_until_applied)
{
    knowledge_t *kb = knowledge_open (harness_dir);
    cr_assert_not_null (kb);
    uint64_t a = s_journal (kb, "batch-a");
    uint64_t b = s_journal (kb, "batch-b");
    cr_expect_lt (a, b, "sequences increase");
    cr_expect_eq (knowledge_journal_pending (kb), 2);

    const char *const evs[][3] = { { "u1", "i1", "e1" } };
    result_t r;
    s_result (&r, a, "batch-a", evs, 1);
    Strata__V1__Ack ack;
    cr_assert_eq (s_apply (kb, &r, &ack), 0);
    cr_expect_eq (ack.accepted, 1);
    knowledge_destroy (&kb);

    //  Reopen: only batch-b is left to apply, counters and dictionaries persisted,
    //  sequences continue past the highest ever used.
    kb = knowledge_open (harness_dir);
    cr_assert_not_null (kb);
    uint64_t seqs[8] = { 0 };
    knowledge_journal_each (kb, s_seq_collect, seqs);
    cr_expect_eq (seqs[0], 1);
    cr_expect_eq (seqs[1], b);
    cr_expect_eq (knowledge_journal_pending (kb), 1);
    knowledge_counts_t n;
    knowledge_counts (kb, &n);
    cr_expect_eq (n.events, 1);
    cr_expect_eq (n.users, 1);
    cr_expect_eq (n.items, 1);
    cr_expect_str_eq (knowledge_user_id (kb, 0), "u1");
    cr_expect_str_eq (knowledge_item_id (kb, 0), "i1");
    uint64_t c = s_journal (kb, "batch-c");
    cr_expect_gt (c, b);

    Strata__V1__Ack *known = NULL;
    cr_assert_eq (knowledge_batch_lookup (kb, "batch-a", &known), STRATA_OK);
    cr_expect_eq (known->state, STRATA__V1__BATCH_STATE__APPLIED);
    cr_expect_eq (known->accepted, 1);
    strata__v1__ack__free_unpacked (known, NULL);
    cr_assert_eq (knowledge_batch_lookup (kb, "batch-b", &known), STRATA_OK);
    cr_expect_eq (known->state, STRATA__V1__BATCH_STATE__JOURNALED);
    strata__v1__ack__free_unpacked (known, NULL);
    cr_expect_eq (knowledge_batch_lookup (kb, "never-sent", &known), STRATA_ENOTFOUND);
    knowledge_destroy (&kb);
}

Test (knowledge, exactly_once_application)
{
    knowledge_t *kb = knowledge_open (harness_dir);
    cr_assert_not_null (kb);
    uint64_t a = s_journal (kb, "a");
    uint64_t b = s_journal (kb, "b");
    const char *const first[][3] = { { "u1", "i1", "e1" }, { "u1", "i2", "e2" }, { "u2", "i1", "e3" } };
    const char *const second[][3] = { { "u2", "i2", "e3" }, { "u3", "i3", "e4" } };   // e3 seen before
    result_t r;
    Strata__V1__Ack ack;
    s_result (&r, a, "a", first, 3);
    cr_assert_eq (s_apply (kb, &r, &ack), 0);
    cr_expect_eq (ack.accepted, 3);
    cr_expect_eq (ack.duplicates, 0);
    //  The same result again (a re-dispatched job): nothing happens.
    cr_expect_eq (s_apply (kb, &r, &ack), 1);
    s_result (&r, b, "b", second, 2);
    r.res.in_batch_duplicates = 4;
    cr_assert_eq (s_apply (kb, &r, &ack), 0);
    cr_expect_eq (ack.accepted, 1);
    cr_expect_eq (ack.duplicates, 5, "1 cross-batch + 4 in-batch");
    knowledge_counts_t n;
    knowledge_counts (kb, &n);
    cr_expect_eq (n.events, 4);
    cr_expect_eq (n.duplicates, 5);
    cr_expect_eq (n.users, 3);
    cr_expect_eq (n.items, 3);
    cr_expect_eq (n.batches, 2);
    cr_expect_eq (knowledge_journal_pending (kb), 0);

    //  Events are stored by user then time; the stored event refers to indices.
    rocksdb_iterator_t *it = store_iter (knowledge_store (kb), KCF_EVENTS);
    size_t count = 0;
    for (rocksdb_iter_seek_to_first (it); rocksdb_iter_valid (it); rocksdb_iter_next (it)) {
        size_t klen, vlen;
        rocksdb_iter_key (it, &klen);
        const char *v = rocksdb_iter_value (it, &vlen);
        cr_expect_eq (klen, 20);
        Strata__V1__Event *e = strata__v1__event__unpack (NULL, vlen, (const uint8_t *) v);
        cr_assert_not_null (e);
        cr_expect_str_eq (e->user_id, "", "external ids live in the dictionary only");
        cr_expect_lt (e->user_index, 3);
        strata__v1__event__free_unpacked (e, NULL);
        count++;
    }
    rocksdb_iter_destroy (it);
    cr_expect_eq (count, 4);
    knowledge_destroy (&kb);

    //  After a restart the event-id index is rebuilt from the store: e1 is still a
    //  duplicate, e5 is new.
    kb = knowledge_open (harness_dir);
    cr_assert_not_null (kb);
    uint64_t c = s_journal (kb, "c");
    const char *const third[][3] = { { "u9", "i9", "e1" }, { "u1", "i1", "e5" } };
    s_result (&r, c, "c", third, 2);
    cr_assert_eq (s_apply (kb, &r, &ack), 0);
    cr_expect_eq (ack.duplicates, 1, "e1 was stored before the restart");
    cr_expect_eq (ack.accepted, 1);
    knowledge_counts (kb, &n);
    cr_expect_eq (n.events, 5);
    cr_expect_eq (n.users, 3, "a duplicate does not create its user");
    knowledge_destroy (&kb);
}

Test (knowledge, rejects_are_kept_with_reasons_and_items_upsert)
{
    knowledge_t *kb = knowledge_open (harness_dir);
    cr_assert_not_null (kb);
    uint64_t a = s_journal (kb, "a");
    result_t r;
    s_result (&r, a, "a", NULL, 0);
    const char *reasons[] = { "unknown event type 'teleport'", "unknown event type 'fly'", "empty user_id" };
    for (int i = 0; i < 3; i++) {
        strata__v1__reject__init (&r.rj[i]);
        r.rj[i].kind = "event";
        r.rj[i].reason = (char *) reasons[i];
        r.rj[i].text = "user_id= item_id=i1";
        r.rjp[i] = &r.rj[i];
    }
    r.res.n_rejects = 3;
    r.res.rejects = r.rjp;
    Strata__V1__Item item = STRATA__V1__ITEM__INIT, *itemp = &item;
    item.item_id = "i9";
    item.title = "first title";
    r.res.n_items = 1;
    r.res.items = &itemp;
    Strata__V1__Ack ack;
    cr_assert_eq (s_apply (kb, &r, &ack), 0);
    cr_expect_eq (ack.rejected, 3);
    cr_expect_eq (ack.accepted, 1);
    cr_expect_eq (ack.n_reasons, 3);

    //  The same item again in a later batch replaces the record, no new item.
    uint64_t b = s_journal (kb, "b");
    s_result (&r, b, "b", NULL, 0);
    item.title = "second title";
    r.res.n_items = 1;
    r.res.items = &itemp;
    cr_assert_eq (s_apply (kb, &r, &ack), 0);
    knowledge_counts_t n;
    knowledge_counts (kb, &n);
    cr_expect_eq (n.items, 1);
    cr_expect_eq (n.catalogue_items, 1);
    cr_expect_eq (n.rejected, 3);
    knowledge_destroy (&kb);

    //  Reason classes survive a restart: "unknown event type" counts both.
    kb = knowledge_open (harness_dir);
    const char *names[8];
    uint64_t counts[8];
    size_t k = knowledge_reject_reasons (kb, names, counts, 8);
    cr_expect_eq (k, 2);
    for (size_t i = 0; i < k; i++) {
        if (!strcmp (names[i], "unknown event type"))
            cr_expect_eq (counts[i], 2);
        else
            cr_expect_str_eq (names[i], "empty user_id");
    }
    //  Dead letters are stored, one per reject.
    rocksdb_iterator_t *it = store_iter (knowledge_store (kb), KCF_REJECTS);
    size_t stored = 0;
    for (rocksdb_iter_seek_to_first (it); rocksdb_iter_valid (it); rocksdb_iter_next (it))
        stored++;
    rocksdb_iter_destroy (it);
    cr_expect_eq (stored, 3);
    size_t len;
    unsigned char key[4] = { 0, 0, 0, 0 };
    char *v = store_get (knowledge_store (kb), KCF_ITEMS, key, 4, &len, NULL);
    cr_assert_not_null (v);
    Strata__V1__Item *got = strata__v1__item__unpack (NULL, len, (const uint8_t *) v);
    cr_expect_str_eq (got->title, "second title");
    strata__v1__item__free_unpacked (got, NULL);
    free (v);
    knowledge_destroy (&kb);
}

Test (knowledge, open_fails_cleanly_on_a_bad_path)
{
    cr_expect_null (knowledge_open ("/proc/strata-cannot-be-here"));
}

//  The newest `max` events of a user that name an item, in time order: for a short
//  history (read forwards), one that wraps the forward reader's ring, and one long
//  enough to be read backwards from its end; searches without an item are skipped.
Test (knowledge, user_recent_is_the_newest_in_time_order)
{
    knowledge_t *kb = knowledge_open (harness_dir);
    cr_assert_not_null (kb);
    enum { N = 40, MAX = 5 };
    static const struct {
        const char *user;
        int events;
    } users[] = { { "short", 3 }, { "ring", 12 }, { "long", 30 } };
    Strata__V1__Event ev[N], *evp[N];
    char ids[N][32], items[N][32];
    arena_t *arena = arena_new (1 << 16);
    cr_assert_not_null (arena);
    for (size_t u = 0; u < sizeof users / sizeof users[0]; u++) {
        size_t n = (size_t) users[u].events + 1;
        for (size_t i = 0; i < n; i++) {
            strata__v1__event__init (&ev[i]);
            snprintf (ids[i], sizeof ids[i], "%s-%d", users[u].user, (int) i);
            snprintf (items[i], sizeof items[i], "item-%d", (int) i);
            ev[i].event_id = ids[i];
            ev[i].user_id = (char *) users[u].user;
            //  Sent newest first: the store orders by time, not by arrival.
            ev[i].timestamp_ms = 1700000000000 + (int64_t) (n - i) * 1000;
            ev[i].type = STRATA__V1__EVENT_TYPE__VIEW;
            ev[i].item_id = items[n - 1 - i];
            if (i == 0) {
                //  The newest event: a search without an item.
                ev[i].type = STRATA__V1__EVENT_TYPE__SEARCH;
                ev[i].item_id = "";
                ev[i].query = "shampoo";
            }
            evp[i] = &ev[i];
        }
        Strata__V1__JobResult res = STRATA__V1__JOB_RESULT__INIT;
        res.sequence = s_journal (kb, users[u].user);
        res.batch_id = (char *) users[u].user;
        res.n_events = n;
        res.events = evp;
        Strata__V1__Ack ack;
        Strata__V1__ReasonCount rc[8], *rcp[8];
        cr_assert_eq (knowledge_apply (kb, &res, &ack, rc, rcp, 8), 0);
        cr_assert_eq (ack.accepted, n);
    }
    for (size_t u = 0; u < sizeof users / sizeof users[0]; u++) {
        uint32_t index;
        cr_assert_eq (knowledge_user_index (kb, users[u].user, &index), 0);
        arena_reset (arena);
        Strata__V1__Interaction **h = NULL;
        int n = knowledge_user_recent (kb, index, MAX, arena, &h);
        int want = users[u].events < MAX ? users[u].events : MAX;
        cr_assert_eq (n, want, "%s: %d events, want %d", users[u].user, n, want);
        for (int i = 0; i < n; i++) {
            //  Items item-(events - n) .. item-(events - 1), oldest first.
            char expect[32];
            snprintf (expect, sizeof expect, "item-%d", users[u].events - n + i);
            cr_expect_str_eq (knowledge_item_id (kb, h[i]->item), expect, "%s, position %d", users[u].user, i);
            if (i)
                cr_expect_lt (h[i - 1]->timestamp_ms, h[i]->timestamp_ms);
        }
    }
    arena_destroy (&arena);
    knowledge_destroy (&kb);
}

//  With the history cache on, a history asked for again comes from memory and is the
//  same; storing an event of the user's drops it (the next read has the event); a user
//  on the same slot, or another length, is a miss.
Test (knowledge, history_cache_is_dropped_when_the_user_acts)
{
    knowledge_t *kb = knowledge_open (harness_dir);
    cr_assert_not_null (kb);
    cr_assert_eq (knowledge_history_cache (kb, 4), 0);
    const char *const first[][3] = { { "u0", "i1", "e1" }, { "u0", "i2", "e2" }, { "u1", "i3", "e3" },
                                     { "u2", "i1", "e4" }, { "u3", "i1", "e5" }, { "u4", "i2", "e6" } };
    result_t r;
    Strata__V1__Ack ack;
    s_result (&r, s_journal (kb, "a"), "a", first, 6);
    cr_assert_eq (s_apply (kb, &r, &ack), 0);
    arena_t *arena = arena_new (1 << 16);
    Strata__V1__Interaction **h = NULL;
    uint32_t u0, u4;
    cr_assert_eq (knowledge_user_index (kb, "u0", &u0), 0);
    cr_assert_eq (knowledge_user_index (kb, "u4", &u4), 0);
    cr_assert_eq (u4 % 4, u0 % 4, "u4 shares u0's slot");
    uint64_t hits, misses;
    cr_assert_eq (knowledge_user_recent (kb, u0, 10, arena, &h), 2);
    knowledge_history_cache_counts (kb, &hits, &misses);
    cr_expect (hits == 0 && misses == 1);
    cr_assert_eq (knowledge_user_recent (kb, u0, 10, arena, &h), 2);
    cr_expect_str_eq (knowledge_item_id (kb, h[0]->item), "i1");
    cr_expect_str_eq (knowledge_item_id (kb, h[1]->item), "i2");
    cr_expect_eq (h[1]->timestamp_ms, 1700000000001);
    cr_expect_eq (h[1]->type, STRATA__V1__EVENT_TYPE__VIEW);
    knowledge_history_cache_counts (kb, &hits, &misses);
    cr_expect (hits == 1 && misses == 1);
    //  Another length is another history.
    cr_assert_eq (knowledge_user_recent (kb, u0, 1, arena, &h), 1);
    cr_expect_str_eq (knowledge_item_id (kb, h[0]->item), "i2");
    knowledge_history_cache_counts (kb, &hits, &misses);
    cr_expect (hits == 1 && misses == 2);
    //  A new event of u0's: read again, with it.
    cr_assert_eq (knowledge_user_recent (kb, u0, 10, arena, &h), 2);
    const char *const second[][3] = { { "u1", "i1", "e7" }, { "u1", "i1", "e8" }, { "u1", "i1", "e9" },
                                      { "u0", "i3", "e10" } };
    s_result (&r, s_journal (kb, "b"), "b", second, 4);
    cr_assert_eq (s_apply (kb, &r, &ack), 0);
    cr_assert_eq (knowledge_user_recent (kb, u0, 10, arena, &h), 3, "the new event is in the history");
    cr_expect_str_eq (knowledge_item_id (kb, h[2]->item), "i3");
    //  u4 takes u0's slot; u0 is read from the store again.
    cr_assert_eq (knowledge_user_recent (kb, u4, 10, arena, &h), 1);
    knowledge_history_cache_counts (kb, &hits, &misses);
    uint64_t before = misses;
    cr_assert_eq (knowledge_user_recent (kb, u0, 10, arena, &h), 3);
    knowledge_history_cache_counts (kb, &hits, &misses);
    cr_expect_eq (misses, before + 1);
    arena_destroy (&arena);
    knowledge_destroy (&kb);
}

//  Every record written is a catalogue change: a page tells the newest change, and the
//  changes after it are the records written since, as they stand, in order; the log
//  survives a restart.
Test (knowledge, catalogue_changes_follow_every_record_written)
{
    knowledge_t *kb = knowledge_open (harness_dir);
    cr_assert_not_null (kb);
    arena_t *arena = arena_new (1 << 16);
    Strata__V1__CatalogueReply page;
    cr_assert_eq (knowledge_catalogue_page (kb, 0, 10, arena, &page), 0);
    cr_expect_eq (page.last_change, 0);
    //  Three items, then one of them again with a new price.
    Strata__V1__Item it[3], *itp[3];
    const char *ids[3] = { "shoe", "hat", "coat" };
    for (int i = 0; i < 3; i++) {
        strata__v1__item__init (&it[i]);
        it[i].item_id = (char *) ids[i];
        it[i].title = (char *) ids[i];
        it[i].has_price = true;
        it[i].price = 10 + i;
        itp[i] = &it[i];
    }
    result_t r;
    Strata__V1__Ack ack;
    s_result (&r, s_journal (kb, "a"), "a", NULL, 0);
    r.res.n_items = 3;
    r.res.items = itp;
    cr_assert_eq (s_apply (kb, &r, &ack), 0);
    arena_reset (arena);
    cr_assert_eq (knowledge_catalogue_page (kb, 0, 10, arena, &page), 0);
    uint64_t after_three = page.last_change;
    cr_expect_eq (after_three, 3);
    it[1].price = 99;
    s_result (&r, s_journal (kb, "b"), "b", NULL, 0);
    r.res.n_items = 1;
    r.res.items = &itp[1];
    cr_assert_eq (s_apply (kb, &r, &ack), 0);
    knowledge_destroy (&kb);
    kb = knowledge_open (harness_dir);
    cr_assert_not_null (kb);
    arena_reset (arena);
    Strata__V1__CatalogueReply ch;
    cr_assert_eq (knowledge_catalogue_changes (kb, after_three, 10, arena, &ch), 0);
    cr_assert_eq (ch.n_items, 1);
    cr_expect_str_eq (ch.items[0]->item_id, "hat");
    cr_expect_eq (ch.items[0]->item_index, 1);
    cr_expect_float_eq (ch.items[0]->price, 99.0, 1e-9);
    cr_expect_eq (ch.last_change, 4);
    cr_expect (ch.done);
    //  From the start, two at a time: shoe, hat; then coat, hat (as it stands: 99).
    arena_reset (arena);
    cr_assert_eq (knowledge_catalogue_changes (kb, 0, 2, arena, &ch), 0);
    cr_assert_eq (ch.n_items, 2);
    cr_expect (!ch.done);
    cr_expect_str_eq (ch.items[0]->item_id, "shoe");
    cr_expect_float_eq (ch.items[1]->price, 99.0, 1e-9);
    cr_assert_eq (knowledge_catalogue_changes (kb, ch.last_change, 2, arena, &ch), 0);
    cr_assert_eq (ch.n_items, 2);
    cr_expect_str_eq (ch.items[0]->item_id, "coat");
    cr_expect_str_eq (ch.items[1]->item_id, "hat");
    cr_assert_eq (knowledge_catalogue_changes (kb, ch.last_change, 2, arena, &ch), 0);
    cr_expect_eq (ch.n_items, 0);
    cr_expect (ch.done);
    cr_expect_eq (ch.last_change, 4, "nothing after: it stays where it was asked from");
    arena_destroy (&arena);
    knowledge_destroy (&kb);
}

Test (knowledge, change_log_keeps_the_newest_and_tells_who_fell_behind)
{
    knowledge_t *kb = knowledge_open (harness_dir);
    cr_assert_not_null (kb);
    knowledge_change_log_limit (kb, 3);
    arena_t *arena = arena_new (1 << 16);
    Strata__V1__Item it[5], *itp[5];
    const char *ids[5] = { "a", "b", "c", "d", "e" };
    for (int i = 0; i < 5; i++) {
        strata__v1__item__init (&it[i]);
        it[i].item_id = (char *) ids[i];
        it[i].title = (char *) ids[i];
        itp[i] = &it[i];
    }
    result_t r;
    Strata__V1__Ack ack;
    //  Two records, then three more: changes 1..5, of which the log keeps 3..5.
    s_result (&r, s_journal (kb, "x"), "x", NULL, 0);
    r.res.n_items = 2;
    r.res.items = itp;
    cr_assert_eq (s_apply (kb, &r, &ack), 0);
    Strata__V1__CatalogueReply ch;
    cr_assert_eq (knowledge_catalogue_changes (kb, 0, 10, arena, &ch), 0);
    cr_expect (!ch.changes_lost && ch.n_items == 2, "two changes, under the limit");
    s_result (&r, s_journal (kb, "y"), "y", NULL, 0);
    r.res.n_items = 3;
    r.res.items = itp + 2;
    cr_assert_eq (s_apply (kb, &r, &ack), 0);
    for (int reopen = 0; reopen < 2; reopen++) {
        arena_reset (arena);
        cr_assert_eq (knowledge_catalogue_changes (kb, 1, 10, arena, &ch), 0);
        cr_expect (ch.changes_lost, "change 2 was dropped: a reader at 1 must read the pages again");
        cr_expect_eq (ch.n_items, 0);
        cr_assert_eq (knowledge_catalogue_changes (kb, 2, 10, arena, &ch), 0);
        cr_expect (!ch.changes_lost, "a reader at 2 misses nothing");
        cr_assert_eq (ch.n_items, 3);
        cr_expect_str_eq (ch.items[0]->item_id, "c");
        cr_expect_str_eq (ch.items[2]->item_id, "e");
        cr_assert_eq (knowledge_catalogue_changes (kb, 5, 10, arena, &ch), 0);
        cr_expect (!ch.changes_lost && ch.n_items == 0 && ch.done, "up to date");
        //  The log's first change is read back from the store.
        knowledge_destroy (&kb);
        kb = knowledge_open (harness_dir);
        cr_assert_not_null (kb);
    }
    //  A lower limit trims on the next write.
    knowledge_change_log_limit (kb, 1);
    it[0].title = "a again";
    s_result (&r, s_journal (kb, "z"), "z", NULL, 0);
    r.res.n_items = 1;
    r.res.items = itp;
    cr_assert_eq (s_apply (kb, &r, &ack), 0);
    arena_reset (arena);
    cr_assert_eq (knowledge_catalogue_changes (kb, 4, 10, arena, &ch), 0);
    cr_expect (ch.changes_lost, "change 5 went when the limit became 1");
    cr_assert_eq (knowledge_catalogue_changes (kb, 5, 10, arena, &ch), 0);
    cr_assert_eq (ch.n_items, 1);
    cr_expect_str_eq (ch.items[0]->title, "a again");
    arena_destroy (&arena);
    knowledge_destroy (&kb);
}

//  A store that fails, without mocks: a column family dropped under the knowledge store
//  (RocksDB refuses every write that names it, and has nothing to read in it), or a
//  stored event overwritten with bytes that do not decode. Each row says what breaks,
//  what is asked, and the code that must come back.
typedef enum { BREAK_NONE, BREAK_DROP_JOURNAL, BREAK_DROP_EVENTS, BREAK_DROP_BATCHES, BREAK_GARBLE_EVENT } break_t;
typedef enum {
    ASK_APPEND,          // knowledge_journal_append
    ASK_APPLY,           // knowledge_apply of the journaled batch
    ASK_LOOKUP,          // knowledge_batch_lookup of the journaled batch
    ASK_LOOKUP_UNKNOWN,  // knowledge_batch_lookup of a batch never sent
    ASK_USER_UNKNOWN,    // knowledge_user_index of a user never seen
    ASK_ITEM_UNKNOWN,    // knowledge_item_index of an item never seen
    ASK_HISTORY,         // knowledge_history_page from user 0
    ASK_RECENT,          // knowledge_user_recent of user 0
    ASK_CATALOGUE,       // knowledge_catalogue_page from item 0
} ask_t;

typedef struct {
    const char *what;
    break_t brk;
    ask_t ask;
    int rc;
} store_case_t;

static const store_case_t s_store_cases[] = {
    { "a journal that takes no writes", BREAK_DROP_JOURNAL, ASK_APPEND, STRATA_EIO },
    { "a batch record that takes no writes", BREAK_DROP_BATCHES, ASK_APPEND, STRATA_EIO },
    { "an events family that takes no writes", BREAK_DROP_EVENTS, ASK_APPLY, STRATA_EIO },
    { "a batch never sent", BREAK_NONE, ASK_LOOKUP_UNKNOWN, STRATA_ENOTFOUND },
    { "a user never seen", BREAK_NONE, ASK_USER_UNKNOWN, STRATA_ENOTFOUND },
    { "an item never seen", BREAK_NONE, ASK_ITEM_UNKNOWN, STRATA_ENOTFOUND },
    { "an intact store's history", BREAK_NONE, ASK_HISTORY, STRATA_OK },
    { "a history with an event that does not decode", BREAK_GARBLE_EVENT, ASK_HISTORY, STRATA_ECORRUPT },
    { "recent events with one that does not decode", BREAK_GARBLE_EVENT, ASK_RECENT, STRATA_ECORRUPT },
    { "a catalogue beside an event that does not decode", BREAK_GARBLE_EVENT, ASK_CATALOGUE, STRATA_OK },
    { "a batch journaled", BREAK_NONE, ASK_LOOKUP, STRATA_OK },
};

static void
s_drop (knowledge_t *kb, int cf)
{
    char *err = NULL;
    store_t *st = knowledge_store (kb);
    rocksdb_drop_column_family (store_db (st), store_cf (st, cf), &err);
    cr_assert_null (err, "drop: %s", err);
}

Test (knowledge, store_failures_have_their_codes)
{
    for (size_t c = 0; c < sizeof s_store_cases / sizeof s_store_cases[0]; c++) {
        const store_case_t *tc = &s_store_cases[c];
        char dir[4096];
        snprintf (dir, sizeof dir, "%s/case-%zu", harness_dir, c);
        knowledge_t *kb = knowledge_open (dir);
        cr_assert_not_null (kb);
        //  One batch applied (user u1 and item i1 stored), one journaled.
        const char *const evs[][3] = { { "u1", "i1", "e1" } }, *const more[][3] = { { "u1", "i1", "e2" } };
        result_t r;
        s_result (&r, s_journal (kb, "applied"), "applied", evs, 1);
        Strata__V1__Ack ack;
        cr_assert_eq (s_apply (kb, &r, &ack), 0);
        uint64_t seq = s_journal (kb, "journaled");
        s_result (&r, seq, "journaled", more, 1);
        if (tc->brk == BREAK_DROP_JOURNAL)
            s_drop (kb, KCF_JOURNAL);
        else if (tc->brk == BREAK_DROP_EVENTS)
            s_drop (kb, KCF_EVENTS);
        else if (tc->brk == BREAK_DROP_BATCHES)
            s_drop (kb, KCF_BATCHES);
        else if (tc->brk == BREAK_GARBLE_EVENT) {
            //  The one stored event's key, its value replaced.
            rocksdb_iterator_t *it = store_iter (knowledge_store (kb), KCF_EVENTS);
            rocksdb_iter_seek_to_first (it);
            cr_assert (rocksdb_iter_valid (it));
            size_t klen;
            const char *k = rocksdb_iter_key (it, &klen);
            char key[20];
            cr_assert_eq (klen, sizeof key);
            memcpy (key, k, klen);
            rocksdb_iter_destroy (it);
            cr_assert_eq (store_put (knowledge_store (kb), KCF_EVENTS, key, sizeof key, "\xff\xff\xff", 3), STRATA_OK);
        }
        arena_t *arena = arena_new (4096);
        const char *ids[] = { "another" };
        const void *data[] = { "raw" };
        size_t lens[] = { 3 };
        uint64_t got_seq;
        Strata__V1__Ack *known = NULL;
        Strata__V1__Interaction **h = NULL;
        Strata__V1__HistoryReply page;
        Strata__V1__CatalogueReply cat;
        uint32_t index;
        int rc = -99;
        switch (tc->ask) {
        case ASK_APPEND: rc = knowledge_journal_append (kb, 1, ids, data, lens, true, &got_seq); break;
        case ASK_APPLY: rc = s_apply (kb, &r, &ack); break;
        case ASK_LOOKUP: rc = knowledge_batch_lookup (kb, "journaled", &known); break;
        case ASK_LOOKUP_UNKNOWN: rc = knowledge_batch_lookup (kb, "never-sent", &known); break;
        case ASK_USER_UNKNOWN: rc = knowledge_user_index (kb, "nobody", &index); break;
        case ASK_ITEM_UNKNOWN: rc = knowledge_item_index (kb, "nothing", &index); break;
        case ASK_HISTORY: rc = knowledge_history_page (kb, 0, 10, 100, true, arena, &page); break;
        case ASK_RECENT:
            rc = knowledge_user_recent (kb, 0, 10, arena, &h);
            rc = rc > 0 ? STRATA_OK : rc;
            break;
        case ASK_CATALOGUE: rc = knowledge_catalogue_page (kb, 0, 10, arena, &cat); break;
        }
        cr_expect_eq (rc, tc->rc, "%s: %s, not %s", tc->what, strata_strerror (rc), strata_strerror (tc->rc));
        if (tc->ask == ASK_APPEND && rc < 0)
            cr_expect_eq (knowledge_journal_pending (kb), 1, "%s: a failed append is not pending", tc->what);
        if (tc->ask == ASK_APPLY && rc < 0) {
            knowledge_counts_t n;
            knowledge_counts (kb, &n);
            cr_expect_eq (n.events, 1, "%s: the counters stay those of the store", tc->what);
            cr_expect_eq (knowledge_journal_pending (kb), 1, "%s: the entry is still to apply", tc->what);
        }
        if (known)
            strata__v1__ack__free_unpacked (known, NULL);
        arena_destroy (&arena);
        knowledge_destroy (&kb);
    }
}
