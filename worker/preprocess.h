/*  preprocess: validation, cleaning, normalisation and in-batch dedupe of one batch.

    Pure and stateless: a batch in, clean events and items plus rejects (each with its
    reason) out. This is the whole of what a preprocess worker computes; the worker
    process around it only moves bytes. Keeping it free of I/O makes every rule testable
    as a table.

    Rules (a failing record becomes a Reject with the reason in quotes):
      events  event_id, user_id non-empty ("empty event_id", "empty user_id"), ids at most
              max_id_len bytes ("id too long"), every string valid UTF-8 ("invalid UTF-8"),
              type known by number or name ("unknown event type 'x'", "missing event
              type"), timestamp present and between min_timestamp_ms and now + max_future_ms
              (seconds are converted to ms) ("missing timestamp", "timestamp out of range"),
              item_id required except for SEARCH ("empty item_id"), SEARCH needs a query
              ("search without query"), RATE value in [0, 10] ("rating out of range"),
              other values finite and >= 0 ("invalid value").
      items   item_id as for events; title whitespace-squeezed and cut at max_text_len on a
              character boundary; brand and category path trimmed and case-folded (a single
              "a > b > c" category is split); price from the number or from text such as
              "$1,299.00" ("invalid price"); attributes trimmed, keys case-folded; title and
              brand tokenised into terms.
      raw     records the producer could not parse are passed on as rejects.
    Events with an event_id seen earlier in the same batch are dropped and counted as
    in-batch duplicates; an item id seen twice keeps its last record.
*/
#ifndef STRATA_PREPROCESS_H
#define STRATA_PREPROCESS_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "strata.pb-c.h"
#include "strata_error.h"

typedef struct {
    size_t max_id_len;          // bytes, default 256
    size_t max_text_len;        // bytes for titles/queries/attributes, default 2048
    int64_t min_timestamp_ms;   // default 1995-01-01
    int64_t max_future_ms;      // allowed clock skew into the future, default 1 day
    int64_t now_ms;             // 0: read the clock
} preprocess_limits_t;

//  Fills lim with the defaults above.
void preprocess_limits_default (preprocess_limits_t *lim);

//  Cleans one batch into out (an initialised JobResult; job_id/sequence are left to the
//  caller). Everything out points to is allocated in arena. Returns 0, or STRATA_ENOMEM
//  when the arena ran out of memory (a bad record is a reject, never an error).
int preprocess_batch (const Strata__V1__EventBatch *batch, const preprocess_limits_t *lim,
                      arena_t *arena, Strata__V1__JobResult *out);

//  One event: fills out (clean copy in arena) and returns NULL, or returns the reject
//  reason (valid for the life of the arena).
const char *preprocess_event (const Strata__V1__Event *in, const preprocess_limits_t *lim,
                              arena_t *arena, Strata__V1__Event *out);

//  One item, likewise.
const char *preprocess_item (const Strata__V1__Item *in, const preprocess_limits_t *lim,
                             arena_t *arena, Strata__V1__Item *out);

//  Maps a type name ("view", "Add_To_Cart", "buy", ...) to an EventType; 0 if unknown.
int preprocess_event_type (const char *name);

//  Parses "12.5", "$1,299.00", "EUR 3,50"; returns 0 and the value, or STRATA_EINVAL
//  (not a price: two numbers, a sign, stray symbols, misplaced separators).
int preprocess_parse_price (const char *text, double *out);

#endif
