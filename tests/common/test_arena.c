/*  test_arena: the bump allocator behind batch decoding and cleaning.

    A preprocess worker unpacks each batch into an arena, cleans it there and frees it
    all with one reset, so the arena must hand out aligned, non-overlapping memory across
    block boundaries, give big requests their own block, really reuse its memory after a
    reset, and work as a protobuf-c allocator. Contents are written and read back
    rather than trusted; run under valgrind to see that destroy frees every block.
*/
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "strata.pb-c.h"

static bool
s_aligned (const void *p)
{
    return ((uintptr_t) p & 15) == 0;
}

Test (arena, new_and_destroy)
{
    arena_t *a = arena_new (4096);
    cr_assert_not_null (a);
    cr_assert_eq (arena_used (a), 0);
    arena_destroy (&a);
    cr_assert_null (a);
    arena_destroy (&a);   // a second destroy is harmless
    arena_destroy (NULL);
}

Test (arena, every_allocation_aligned)
{
    arena_t *a = arena_new (1024);
    //  Odd sizes, including 0 and sizes around the chunk and big-block thresholds.
    static const size_t sizes[] = { 1, 0, 3, 15, 16, 17, 31, 33, 100, 255, 256, 257, 1000, 1023, 1024, 1025, 5000 };
    for (int round = 0; round < 8; round++)
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            void *p = arena_alloc (a, sizes[i]);
            cr_assert_not_null (p);
            cr_assert (s_aligned (p), "size %zu gave %p", sizes[i], p);
        }
    cr_assert (s_aligned (arena_strdup (a, "x")));
    cr_assert (s_aligned (arena_strndup (a, "abc", 2)));
    cr_assert (s_aligned (arena_printf (a, "%d", 7)));
    cr_assert (s_aligned (arena_calloc (a, 3, 7)));
    arena_destroy (&a);
}

typedef struct {
    size_t request;
    size_t used;   // arena_used grows by the size rounded up to 16
} used_case_t;

Test (arena, used_counts_rounded_sizes)
{
    static const used_case_t cases[] = {
        { 1, 16 }, { 0, 16 }, { 16, 16 }, { 17, 32 }, { 100, 112 }, { 2000, 2000 }, { 2001, 2016 },
    };
    arena_t *a = arena_new (1024);
    size_t total = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_not_null (arena_alloc (a, cases[i].request));
        total += cases[i].used;
        cr_assert_eq (arena_used (a), total, "after a request of %zu", cases[i].request);
    }
    arena_destroy (&a);
}

Test (arena, allocations_do_not_overlap)
{
    //  Many small blocks across several chunks, each filled with its own byte.
    arena_t *a = arena_new (1024);
    enum { N = 400 };
    unsigned char *p[N];
    size_t len[N];
    for (int i = 0; i < N; i++) {
        len[i] = (size_t) (1 + (i * 37) % 200);
        p[i] = arena_alloc (a, len[i]);
        cr_assert_not_null (p[i]);
        memset (p[i], i & 0xFF, len[i]);
    }
    for (int i = 0; i < N; i++)
        for (size_t k = 0; k < len[i]; k++)
            cr_assert_eq (p[i][k], (unsigned char) (i & 0xFF), "block %d byte %zu was overwritten", i, k);
    arena_destroy (&a);
}

Test (arena, big_allocations)
{
    arena_t *a = arena_new (1024);
    char *small = arena_strdup (a, "before");
    //  Bigger than chunk/4: own block; bigger than the chunk itself too.
    static const size_t bigs[] = { 300, 1024, 4096, 1 << 20 };
    unsigned char *big[4];
    for (size_t i = 0; i < 4; i++) {
        big[i] = arena_alloc (a, bigs[i]);
        cr_assert_not_null (big[i]);
        cr_assert (s_aligned (big[i]));
        memset (big[i], (int) (0xA0 + i), bigs[i]);
    }
    char *after = arena_strdup (a, "after");
    for (size_t i = 0; i < 4; i++)
        for (size_t k = 0; k < bigs[i]; k += 97)
            cr_assert_eq (big[i][k], 0xA0 + i, "big block %zu byte %zu", i, k);
    cr_assert_str_eq (small, "before", "a big block does not disturb the current one");
    cr_assert_str_eq (after, "after");
    cr_assert_geq (arena_used (a), 300 + 1024 + 4096 + (1 << 20));
    arena_destroy (&a);
}

Test (arena, reset_reuses_memory)
{
    arena_t *a = arena_new (1024);
    unsigned char *first = arena_alloc (a, 64);
    //  Spill into several more chunks.
    for (int i = 0; i < 100; i++)
        memset (arena_alloc (a, 100), 0xAB, 100);
    cr_assert_gt (arena_used (a), 10000);

    arena_reset (a);
    cr_assert_eq (arena_used (a), 0);
    //  The first block is kept: the next allocation starts where the first one did.
    unsigned char *again = arena_alloc (a, 64);
    cr_assert_eq (again, first);
    cr_assert_eq (arena_used (a), 64);

    //  Reset, then calloc over dirty memory: zeroes.
    memset (again, 0xCD, 64);
    arena_reset (a);
    unsigned char *z = arena_calloc (a, 16, 4);
    cr_assert_not_null (z);
    for (int i = 0; i < 64; i++)
        cr_assert_eq (z[i], 0, "calloc byte %d", i);

    //  And the arena keeps working through more cycles.
    for (int cycle = 0; cycle < 20; cycle++) {
        for (int i = 0; i < 50; i++)
            cr_assert_not_null (arena_alloc (a, 200));
        arena_reset (a);
        cr_assert_eq (arena_used (a), 0);
    }
    arena_destroy (&a);
}

Test (arena, calloc_overflow_rejected)
{
    arena_t *a = arena_new (1024);
    cr_assert_null (arena_calloc (a, SIZE_MAX / 2, 4));
    cr_assert_null (arena_calloc (a, SIZE_MAX, SIZE_MAX));
    cr_assert_eq (arena_used (a), 0, "a refused request uses nothing");
    unsigned char *z = arena_calloc (a, 0, 8);
    cr_assert_not_null (z, "zero elements is a valid, empty allocation");
    arena_destroy (&a);
}

Test (arena, string_helpers)
{
    arena_t *a = arena_new (1024);
    const char *src = "hello arena";
    char *d = arena_strdup (a, src);
    cr_assert_str_eq (d, src);
    cr_assert_neq ((void *) d, (void *) src, "a copy, not the same pointer");

    cr_assert_str_eq (arena_strndup (a, "abcdef", 3), "abc");
    cr_assert_str_eq (arena_strndup (a, "abc", 0), "");
    cr_assert_str_eq (arena_strdup (a, ""), "");
    //  strndup copies exactly len bytes: a multi-byte character may be split by the caller.
    cr_assert_eq (strlen (arena_strndup (a, "\xe4\xbf\x9d\xe6\xb9\xbf", 3)), 3);

    cr_assert_str_eq (arena_printf (a, "%s-%d-%.2f", "x", 42, 3.14159), "x-42-3.14");
    cr_assert_str_eq (arena_printf (a, "%s", ""), "");

    //  Longer than a chunk: printf and strdup still produce the whole text.
    char big[3000];
    memset (big, 'q', sizeof big - 1);
    big[sizeof big - 1] = 0;
    char *p = arena_printf (a, "<%s>", big);
    cr_assert_eq (strlen (p), sizeof big + 1);
    cr_assert_eq (p[0], '<');
    cr_assert_eq (p[sizeof big], '>');
    cr_assert_str_eq (arena_strdup (a, big), big);
    arena_destroy (&a);
}

Test (arena, minimum_chunk)
{
    //  A tiny chunk size is raised to a workable minimum.
    arena_t *a = arena_new (0);
    cr_assert_not_null (a);
    for (int i = 0; i < 100; i++) {
        char *s = arena_printf (a, "item-%d", i);
        char want[16];
        snprintf (want, sizeof want, "item-%d", i);
        cr_assert_str_eq (s, want);
    }
    arena_destroy (&a);
}

// ---------------------------------------------------------------- protobuf-c

Test (arena, protobuf_unpack_event)
{
    Strata__V1__Event ev = STRATA__V1__EVENT__INIT;
    ev.event_id = "ev-0001";
    ev.user_id = "user-42";
    ev.item_id = "sku-\xe4\xbf\x9d";
    ev.type = STRATA__V1__EVENT_TYPE__RATE;
    ev.timestamp_ms = 1714557600123LL;
    ev.query = "";
    ev.value = 4.5;
    ev.session = "s-9";
    ev.type_name = "rating";
    size_t len = strata__v1__event__get_packed_size (&ev);
    uint8_t buf[256];
    cr_assert_lt (len, sizeof buf);
    cr_assert_eq (strata__v1__event__pack (&ev, buf), len);

    arena_t *a = arena_new (4096);
    ProtobufCAllocator alloc = arena_protobuf (a);
    Strata__V1__Event *out = strata__v1__event__unpack (&alloc, len, buf);
    cr_assert_not_null (out);
    cr_assert_gt (arena_used (a), 0, "the message lives in the arena");
    cr_assert (s_aligned (out));
    cr_assert_str_eq (out->event_id, "ev-0001");
    cr_assert_str_eq (out->user_id, "user-42");
    cr_assert_str_eq (out->item_id, "sku-\xe4\xbf\x9d");
    cr_assert_eq (out->type, STRATA__V1__EVENT_TYPE__RATE);
    cr_assert_eq (out->timestamp_ms, 1714557600123LL);
    cr_assert_float_eq (out->value, 4.5, 1e-12);
    cr_assert_str_eq (out->session, "s-9");
    cr_assert_str_eq (out->type_name, "rating");
    //  Freeing through the arena allocator is a no-op; the arena owns the memory.
    strata__v1__event__free_unpacked (out, &alloc);
    arena_destroy (&a);
}

Test (arena, protobuf_unpack_batch)
{
    //  Nested and repeated fields: a batch with events, an item with attributes, raw.
    Strata__V1__Attribute attr[2] = { STRATA__V1__ATTRIBUTE__INIT, STRATA__V1__ATTRIBUTE__INIT };
    attr[0].key = "color";
    attr[0].value = "red";
    attr[1].key = "size";
    attr[1].value = "50ml";
    Strata__V1__Attribute *attrs[2] = { &attr[0], &attr[1] };
    char *cats[3] = { "beauty", "skin care", "face" };
    Strata__V1__Item item = STRATA__V1__ITEM__INIT;
    item.item_id = "sku-1";
    item.title = "Vitamin C Serum";
    item.n_category = 3;
    item.category = cats;
    item.n_attributes = 2;
    item.attributes = attrs;
    item.has_price = true;
    item.price = 12.5;
    Strata__V1__Item *items[1] = { &item };

    enum { NEV = 50 };
    Strata__V1__Event ev[NEV];
    Strata__V1__Event *evp[NEV];
    char ids[NEV][16];
    for (int i = 0; i < NEV; i++) {
        strata__v1__event__init (&ev[i]);
        snprintf (ids[i], sizeof ids[i], "ev-%d", i);
        ev[i].event_id = ids[i];
        ev[i].user_id = "u";
        ev[i].timestamp_ms = 1714557600000LL + i;
        evp[i] = &ev[i];
    }
    Strata__V1__RawRecord raw = STRATA__V1__RAW_RECORD__INIT;
    raw.source = "events.jsonl";
    raw.line = 7;
    raw.text = "{broken";
    raw.reason = "invalid JSON";
    Strata__V1__RawRecord *raws[1] = { &raw };

    Strata__V1__EventBatch batch = STRATA__V1__EVENT_BATCH__INIT;
    batch.batch_id = "b-1";
    batch.n_events = NEV;
    batch.events = evp;
    batch.n_items = 1;
    batch.items = items;
    batch.n_raw = 1;
    batch.raw = raws;
    size_t len = strata__v1__event_batch__get_packed_size (&batch);
    uint8_t *buf = malloc (len);
    cr_assert_eq (strata__v1__event_batch__pack (&batch, buf), len);

    //  A small chunk forces the unpacked message across many blocks.
    arena_t *a = arena_new (1024);
    ProtobufCAllocator alloc = arena_protobuf (a);
    Strata__V1__EventBatch *out = strata__v1__event_batch__unpack (&alloc, len, buf);
    free (buf);
    cr_assert_not_null (out);
    cr_assert_str_eq (out->batch_id, "b-1");
    cr_assert_eq (out->n_events, NEV);
    for (int i = 0; i < NEV; i++) {
        cr_assert_str_eq (out->events[i]->event_id, ids[i]);
        cr_assert_eq (out->events[i]->timestamp_ms, 1714557600000LL + i);
    }
    cr_assert_eq (out->n_items, 1);
    const Strata__V1__Item *it = out->items[0];
    cr_assert_str_eq (it->title, "Vitamin C Serum");
    cr_assert_eq (it->n_category, 3);
    cr_assert_str_eq (it->category[1], "skin care");
    cr_assert_eq (it->n_attributes, 2);
    cr_assert_str_eq (it->attributes[1]->key, "size");
    cr_assert_str_eq (it->attributes[1]->value, "50ml");
    cr_assert (it->has_price);
    cr_assert_float_eq (it->price, 12.5, 1e-12);
    cr_assert_eq (out->n_raw, 1);
    cr_assert_eq (out->raw[0]->line, 7);
    cr_assert_str_eq (out->raw[0]->reason, "invalid JSON");

    //  Reset drops it all at once; the arena is ready for the next batch.
    arena_reset (a);
    cr_assert_eq (arena_used (a), 0);
    arena_destroy (&a);
}

Test (arena, protobuf_garbage_rejected)
{
    arena_t *a = arena_new (1024);
    ProtobufCAllocator alloc = arena_protobuf (a);
    //  Field 1, length-delimited, claims 100 bytes but only 3 follow.
    const uint8_t junk[] = { 0x0A, 0x64, 'a', 'b', 'c' };
    cr_assert_null (strata__v1__event__unpack (&alloc, sizeof junk, junk));
    arena_destroy (&a);
}
