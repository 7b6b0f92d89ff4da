/*  Unit: the RocksDB wrapper (store.h) on a real RocksDB in a temporary directory:
    its background threads (flushes, compactions) run at the lowest priority, so that
    they yield the CPU to the threads that serve.
*/
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "harness.h"
#include "store.h"

TestSuite (store, .init = harness_dir_setup, .fini = harness_dir_teardown);

//  The nice value of every thread of this process whose name starts with prefix, into
//  nice (at most cap); returns how many.
static int
s_thread_nice (const char *prefix, int *nice, int cap)
{
    DIR *d = opendir ("/proc/self/task");
    cr_assert_not_null (d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir (d)) && n < cap) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], name[64] = "";
        snprintf (path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen (path, "r");
        if (!f)
            continue;
        if (fgets (name, sizeof name, f) && !strncmp (name, prefix, strlen (prefix))) {
            errno = 0;
            int v = getpriority (PRIO_PROCESS, (id_t) atoi (e->d_name));
            if (errno == 0)
                nice[n++] = v;
        }
        fclose (f);
    }
    closedir (d);
    return n;
}

Test (store, background_threads_run_at_the_lowest_priority)
{
    const char *cfs[] = { "default", "other" };
    store_t *st = store_open (harness_dir, cfs, 2);
    cr_assert_not_null (st);
    for (int i = 0; i < 1000; i++) {
        char key[32];
        snprintf (key, sizeof key, "key-%d", i);
        cr_assert_eq (store_put (st, i % 2, key, strlen (key), "value", 5), STRATA_OK);
    }
    //  A flush (the high-priority pool), then a compaction (the low-priority pool): each
    //  thread lowers itself when it takes its first job.
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create ();
    rocksdb_flushoptions_set_wait (fo, 1);
    char *err = NULL;
    rocksdb_flush (store_db (st), fo, &err);
    cr_assert_null (err, "flush: %s", err);
    rocksdb_flushoptions_destroy (fo);
    rocksdb_compact_range_cf (store_db (st), store_cf (st, 0), NULL, 0, NULL, 0);
    int nice[16];
    int high = s_thread_nice ("rocksdb:high", nice, 16);
    cr_assert_gt (high, 0, "no flush thread");
    bool lowered = false;
    for (int i = 0; i < high; i++)
        lowered |= nice[i] == 19;
    cr_expect (lowered, "the flush threads run at nice %d, not 19", nice[0]);
    int low = s_thread_nice ("rocksdb:low", nice, 16);
    cr_assert_gt (low, 0, "no compaction thread");
    lowered = false;
    for (int i = 0; i < low; i++)
        lowered |= nice[i] == 19;
    cr_expect (lowered, "the compaction threads run at nice %d, not 19", nice[0]);
    store_destroy (&st);
}
