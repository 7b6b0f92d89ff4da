/*  The rank worker's cache of user vectors by history: a vector comes back under its
    history's key only; a clear forgets everything (and may change the dimension); a
    history that lands on a taken slot replaces it; a cache of 0 slots keeps nothing. */
#include <criterion/criterion.h>

#include "user_cache.h"

Test (user_cache, keeps_vectors_by_history_until_cleared)
{
    user_cache_t *c = user_cache_new (1024, 0);
    cr_assert_not_null (c);
    float v[8], out[8];
    cr_expect_not (user_cache_get (c, 1, out), "a cache with no dimension yet keeps nothing");
    user_cache_clear (c, 4);
    uint32_t h1[] = { 3, 1, 4 }, h2[] = { 3, 1, 5 };
    uint8_t t1[] = { 0, 0, 2 }, t2[] = { 0, 0, 1 };
    uint64_t k1 = user_cache_key (h1, t1, 3), k2 = user_cache_key (h2, t1, 3), k3 = user_cache_key (h1, t2, 3);
    cr_expect_neq (k1, k2, "another item");
    cr_expect_neq (k1, k3, "another event type");
    cr_expect_neq (k1, user_cache_key (h1, t1, 2), "a shorter history");
    cr_expect_eq (k1, user_cache_key (h1, t1, 3));
    for (int i = 0; i < 4; i++)
        v[i] = (float) i + 0.5f;
    cr_expect_not (user_cache_get (c, k1, out));
    user_cache_put (c, k1, v);
    cr_assert (user_cache_get (c, k1, out));
    for (int i = 0; i < 4; i++)
        cr_expect_eq (out[i], v[i]);
    cr_expect_not (user_cache_get (c, k2, out));
    //  A new model version: everything goes, and vectors may grow.
    user_cache_clear (c, 8);
    cr_expect_not (user_cache_get (c, k1, out));
    for (int i = 0; i < 8; i++)
        v[i] = (float) -i;
    user_cache_put (c, k2, v);
    cr_assert (user_cache_get (c, k2, out));
    for (int i = 0; i < 8; i++)
        cr_expect_eq (out[i], v[i]);
    uint64_t hits, misses;
    user_cache_counts (c, &hits, &misses);
    cr_expect_eq (hits, 2);
    cr_expect_eq (misses, 4);
    user_cache_destroy (&c);
    cr_expect_null (c);
}

Test (user_cache, a_history_on_a_taken_slot_replaces_it)
{
    user_cache_t *c = user_cache_new (1, 2);   // one slot: every key lands on it
    float a[2] = { 1, 2 }, b[2] = { 3, 4 }, out[2];
    user_cache_put (c, 10, a);
    user_cache_put (c, 20, b);
    cr_expect_not (user_cache_get (c, 10, out));
    cr_assert (user_cache_get (c, 20, out));
    cr_expect (out[0] == 3 && out[1] == 4);
    user_cache_destroy (&c);
}

Test (user_cache, zero_slots_keep_nothing)
{
    user_cache_t *c = user_cache_new (0, 2);
    cr_assert_not_null (c);
    float a[2] = { 1, 2 }, out[2];
    user_cache_put (c, 10, a);
    cr_expect_not (user_cache_get (c, 10, out));
    user_cache_clear (c, 4);
    user_cache_destroy (&c);
}
