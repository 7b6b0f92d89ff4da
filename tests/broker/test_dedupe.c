/*  Unit: the in-memory event-id index (dedupe.h): lookups, first location kept,
    growth far past the initial size without losing entries, the reserved 0 hash.
*/
#include <criterion/criterion.h>

#include "dedupe.h"

Test (dedupe, insert_find_and_keep_first_location)
{
    dedupe_t *d = dedupe_new (0);
    cr_assert_not_null (d);
    uint32_t u;
    int64_t ts;
    cr_expect_not (dedupe_find (d, 42, &u, &ts));
    cr_assert_eq (dedupe_insert (d, 42, 7, 1000), 0);
    cr_assert (dedupe_find (d, 42, &u, &ts));
    cr_expect_eq (u, 7);
    cr_expect_eq (ts, 1000);
    cr_assert_eq (dedupe_insert (d, 42, 9, 2000), 0);
    cr_assert (dedupe_find (d, 42, &u, &ts));
    cr_expect_eq (u, 7, "a present hash keeps its first location");
    cr_expect_eq (dedupe_size (d), 1);
    dedupe_destroy (&d);
    cr_expect_null (d);
    dedupe_destroy (&d);
}

Test (dedupe, grows_without_losing_entries)
{
    dedupe_t *d = dedupe_new (10);
    const uint64_t n = 300000;
    for (uint64_t i = 1; i <= n; i++)
        cr_assert_eq (dedupe_insert (d, dedupe_hash ((const char *) &i, sizeof i), (uint32_t) i, (int64_t) i * 3), 0);
    cr_expect_eq (dedupe_size (d), n);
    for (uint64_t i = 1; i <= n; i++) {
        uint32_t u;
        int64_t ts;
        cr_assert (dedupe_find (d, dedupe_hash ((const char *) &i, sizeof i), &u, &ts), "entry %llu lost",
                   (unsigned long long) i);
        cr_assert_eq (u, (uint32_t) i);
        cr_assert_eq (ts, (int64_t) i * 3);
    }
    cr_expect_leq (dedupe_bytes (d), 64 * n, "about 32 bytes per entry, never runaway growth");
    dedupe_destroy (&d);
}

Test (dedupe, hash_is_never_zero)
{
    //  FNV-1a of the empty string is the offset basis, not 0, but the contract holds
    //  for any input: 0 marks an empty slot.
    cr_expect_neq (dedupe_hash ("", 0), 0);
    cr_expect_neq (dedupe_hash ("e1", 2), dedupe_hash ("e2", 2));
    cr_expect_eq (dedupe_hash ("same", 4), dedupe_hash ("same", 4));
}
