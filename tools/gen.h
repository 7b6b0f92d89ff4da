/*  gen: deterministic synthetic shop data behind `strata gen`.

    Writes a product catalogue and a log of user behaviour in Strata's generic import
    formats (JSONL or CSV), so that import, indexing, ranking and recommendation can be
    exercised, benchmarked and demonstrated without customer data. The data is skewed
    the way a real shop is (Zipf item popularity, users with favourite categories,
    view/click/cart/purchase funnels, searches followed by views of matching items,
    English and Chinese titles), because those components only show their behaviour on
    skewed data. The same options and seed always give byte-identical files.
*/
#ifndef STRATA_GEN_H
#define STRATA_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "strata_error.h"

//  Options. A zero count or start_ms means "use the default"; negative values are
//  rejected. Strings are borrowed for the duration of gen_run.
typedef struct {
    const char *out_dir;     // directory to write into; created (mkdir -p) if missing
    const char *format;      // "jsonl" or "csv"; NULL means "jsonl"
    int64_t items;           // catalogue size, default 2000
    int64_t users;           // user population, default 500
    int64_t events;          // number of valid behaviour events, default 20000
    int64_t malformed;       // malformed lines injected into EACH output file, default 0
    uint64_t seed;           // same seed, same output
    int64_t start_ms;        // Unix ms of the first event, default 1735689600000
} gen_opts_t;

//  What was written. Malformed lines are not counted in items or events.
typedef struct {
    int64_t items;           // valid catalogue rows
    int64_t events;          // valid event rows
    int64_t users;           // distinct users that appear in valid events
    int64_t malformed;       // malformed lines, summed over both files
    int64_t purchases;       // purchase events among the valid events
} gen_summary_t;

//  Writes DIR/items.<fmt> and DIR/events.<fmt>, replacing existing files. Events are
//  sorted by timestamp and spread over about 30 days from start_ms. summary may be
//  NULL. Returns 0, or with a message in err (when err is not NULL) STRATA_EINVAL (no
//  output directory, an unknown format, counts out of range, a path that cannot be a
//  directory), STRATA_EIO (cannot create or write the files) or STRATA_ENOMEM.
//  Reentrant: no global state.
int gen_run (const gen_opts_t *opts, gen_summary_t *summary, char *err, size_t errlen);

#endif
