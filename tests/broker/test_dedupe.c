/*  Unit: the in-memory event-id index (dedupe.h): lookups, first location kept,
    growth far past the initial size without losing entries, growth spread over the
    inserts that follow it with every entry found meanwhile, the reserved 0 hash, a
    large table in huge pages where the kernel gives them, and a growth into a table
    prepared (faulted in) on a thread of its own beforehand, and a growth that finds no
    memory.
*/
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

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

static uint64_t
s_hash (uint64_t i)
{
    return dedupe_hash ((const char *) &i, sizeof i);
}

Test (dedupe, grows_a_little_at_each_insert_and_finds_everything_meanwhile)
{
    dedupe_t *d = dedupe_new (0);
    uint64_t i = 0;
    while (!dedupe_growing (d) && i < 100000) {
        i++;
        cr_assert_eq (dedupe_insert (d, s_hash (i), (uint32_t) i, (int64_t) i), 0);
    }
    cr_assert (dedupe_growing (d), "the entries move over several inserts, not all in one");
    uint64_t grown_at = i;
    cr_expect_gt (grown_at, 100, "the first table holds 1024 slots");
    //  The insert that started the growth moved a few entries, not all.
    size_t inserts_growing = 0;
    while (dedupe_growing (d)) {
        i++;
        cr_assert_eq (dedupe_insert (d, s_hash (i), (uint32_t) i, (int64_t) i), 0);
        inserts_growing++;
        //  Every entry, moved or not yet, is found, and inserting one again adds nothing.
        for (uint64_t k = 1; k <= i; k++) {
            uint32_t u;
            int64_t ts;
            cr_assert (dedupe_find (d, s_hash (k), &u, &ts), "entry %llu lost while growing", (unsigned long long) k);
            cr_assert_eq (u, (uint32_t) k);
        }
        cr_assert_eq (dedupe_insert (d, s_hash (grown_at / 2), 0, 0), 0);
        cr_assert_eq (dedupe_size (d), i);
    }
    cr_expect_gt (inserts_growing, 10, "the growth was spread over %zu inserts", inserts_growing);
    cr_expect_lt (inserts_growing, grown_at, "and ended well before the new table filled");
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

//  Kilobytes of this process's memory in transparent huge pages.
static long
s_huge_kb (void)
{
    FILE *f = fopen ("/proc/self/smaps_rollup", "r");
    char line[256];
    long kb = -1;
    while (f && fgets (line, sizeof line, f))
        if (sscanf (line, "AnonHugePages: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose (f);
    return kb;
}

Test (dedupe, a_large_table_asks_for_huge_pages)
{
    //  Where the kernel gives huge pages on request (its transparent huge pages set to
    //  `madvise` or `always`), a table of 2 MB or more is in them.
    char mode[128] = "";
    FILE *f = fopen ("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f || !fgets (mode, sizeof mode, f) || strstr (mode, "[never]") || s_huge_kb () < 0) {
        if (f)
            fclose (f);
        cr_skip_test ("this kernel gives no transparent huge pages (%s)", *mode ? mode : "no setting");
    }
    fclose (f);
    long before = s_huge_kb ();
    dedupe_t *d = dedupe_new (200000);   // 524,288 slots: 10 MB
    for (uint64_t i = 1; i <= 200000; i++)
        cr_assert_eq (dedupe_insert (d, s_hash (i), (uint32_t) i, 0), 0);
    long after = s_huge_kb ();
    cr_expect_geq (after - before, 2048, "the table's 10 MB hold %ld kB of huge pages", after - before);
    dedupe_destroy (&d);
}

//  Page faults this thread has taken so far.
static long
s_thread_faults (void)
{
    struct rusage ru;
    getrusage (RUSAGE_THREAD, &ru);
    return ru.ru_minflt + ru.ru_majflt;
}

Test (dedupe, a_growth_takes_a_table_already_faulted_in)
{
    //  A growth into 1,048,576 slots (20 MB): prepared from a load of 0.5, taken at 0.7.
    dedupe_t *d = dedupe_new (200000);   // 524,288 slots
    uint64_t i = 0;
    while (i < 367000) {
        i++;
        cr_assert_eq (dedupe_insert (d, s_hash (i), (uint32_t) i, 0), 0);
    }
    cr_assert (!dedupe_growing (d));
    for (int waited = 0; !dedupe_next_prepared (d) && waited < 30000; waited++)
        usleep (1000);
    cr_assert (dedupe_next_prepared (d), "the next table is prepared ahead of the growth");
    //  The inserts that start the growth and move 320,000 entries into the new table
    //  write all over it: no page fault in this thread (valgrind's own memory aside).
    long before = s_thread_faults ();
    while (i < 377000) {
        i++;
        cr_assert_eq (dedupe_insert (d, s_hash (i), (uint32_t) i, 0), 0);
    }
    long faults = s_thread_faults () - before;
    cr_assert (dedupe_growing (d), "the growth started");
    //  Under valgrind or AddressSanitizer, writing the table also faults in their own
    //  shadow memory: there, the growth is checked for its entries only.
    bool shadowed = getenv ("STRATA_TEST_VALGRIND") != NULL;
#ifdef __SANITIZE_ADDRESS__
    shadowed = true;
#endif
    if (!shadowed)
        cr_expect_lt (faults, 4, "the inserts into the new table took %ld page faults", faults);
    while (dedupe_growing (d)) {
        i++;
        cr_assert_eq (dedupe_insert (d, s_hash (i), (uint32_t) i, 0), 0);
    }
    for (uint64_t k = 1; k <= i; k++) {
        uint32_t u;
        int64_t ts;
        cr_assert (dedupe_find (d, s_hash (k), &u, &ts), "entry %llu lost", (unsigned long long) k);
        cr_assert_eq (u, (uint32_t) k);
    }
    cr_expect_eq (dedupe_size (d), i);
    dedupe_destroy (&d);
}

Test (dedupe, is_destroyed_while_the_next_table_is_prepared)
{
    dedupe_t *d = dedupe_new (200000);
    for (uint64_t i = 1; i <= 270000; i++)   // past a load of 0.5: preparing
        cr_assert_eq (dedupe_insert (d, s_hash (i), (uint32_t) i, 0), 0);
    dedupe_destroy (&d);   // waits for the thread; valgrind sees no leak
    cr_expect_null (d);
}

//  This process's address space, in bytes (VmSize), or 0.
static size_t
s_vm_bytes (void)
{
    FILE *f = fopen ("/proc/self/status", "r");
    char line[256];
    long kb = 0;
    while (f && fgets (line, sizeof line, f))
        if (sscanf (line, "VmSize: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose (f);
    return (size_t) kb * 1024;
}

//  A table due to grow when no memory is given for the bigger one (the address space
//  capped just above what the process holds): the insert says STRATA_ENOMEM, adds
//  nothing and loses nothing, and once memory is there again the growth goes on.
Test (dedupe, a_growth_without_memory_is_enomem_and_loses_nothing)
{
    bool shadowed = getenv ("STRATA_TEST_VALGRIND") != NULL;
#ifdef __SANITIZE_ADDRESS__
    shadowed = true;
#endif
    if (shadowed)
        cr_skip_test ("the sanitizer's or valgrind's own mappings leave no address space to cap");
    dedupe_t *d = dedupe_new (200000);   // 524,288 slots (10 MB); the next table takes 20 MB
    struct rlimit was;
    cr_assert_eq (getrlimit (RLIMIT_AS, &was), 0);
    size_t vm = s_vm_bytes ();
    cr_assert_gt (vm, 0);
    struct rlimit capped = { vm + ((size_t) 6 << 20), was.rlim_max };
    cr_assert_eq (setrlimit (RLIMIT_AS, &capped), 0);
    uint64_t i = 0;
    int rc = 0;
    while (rc == 0 && i < 400000) {
        i++;
        rc = dedupe_insert (d, s_hash (i), (uint32_t) i, 0);
    }
    setrlimit (RLIMIT_AS, &was);
    cr_assert_eq (rc, STRATA_ENOMEM, "the growth at a load of 0.7 found no memory (%llu inserts)",
                  (unsigned long long) i);
    cr_expect_gt (i, 360000, "it failed at the growth, not before");
    cr_expect_eq (dedupe_size (d), i - 1, "the refused hash is not counted");
    uint32_t u;
    int64_t ts;
    cr_expect_not (dedupe_find (d, s_hash (i), &u, &ts), "nor added");
    for (uint64_t k = 1; k < i; k++)
        cr_assert (dedupe_find (d, s_hash (k), &u, &ts), "entry %llu lost", (unsigned long long) k);
    cr_assert_eq (dedupe_insert (d, s_hash (i), (uint32_t) i, 0), 0, "with memory again the insert succeeds");
    cr_expect (dedupe_growing (d), "and the growth starts");
    cr_expect_eq (dedupe_size (d), i);
    dedupe_destroy (&d);
}
