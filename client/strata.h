/*  strata.h: the Strata client library.

    A producer pushes behaviour events and catalogue items to a Strata broker. It
    batches records, keeps up to max_inflight batches unacknowledged (blocking the
    caller when that many are out: backpressure), and re-sends any batch that is not
    acknowledged in time with the same batch id, so a broker restart or a lost message
    never loses or doubles data: the broker recognises a batch it has already journaled,
    and deduplicates events by event id.

    Plain C structs in, no protobuf in this header: any C program can link it. All
    strings passed in are copied; none are kept. A producer belongs to one thread.
*/
#ifndef STRATA_CLIENT_H
#define STRATA_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "strata_error.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Every call returns STRATA_OK or a negative STRATA_E... code (strata_error.h);
//  strata_strerror gives its text.

typedef struct {
    const char *event_id;      // unique id; NULL/"" derives one from the other fields
    const char *user_id;
    const char *item_id;
    const char *type;          // "view", "click", "cart", "purchase", "search", "rate", ...
    int64_t timestamp_ms;      // Unix ms (seconds are accepted too)
    const char *query;         // search text
    double value;              // rating, quantity
    const char *session;
} strata_event_t;

typedef struct {
    const char *item_id;
    const char *title;
    const char *brand;
    const char *category;      // path "a > b > c"
    const char *price;         // as text ("12.99", "$1,299.00"); NULL if unknown
    size_t n_attrs;
    const char *const *attr_keys;
    const char *const *attr_values;
} strata_item_t;

typedef struct {
    size_t batch_records;      // records per batch (default 1000)
    size_t max_inflight;       // unacknowledged batches before add blocks (default 16)
    int ack_timeout_ms;        // first re-send after this (default 2000; doubles up to 16x)
    int give_up_ms;            // fail after this long without any acknowledgement (default 120000)
    const char *producer_id;   // prefix of batch ids (default: random)
} strata_producer_opts_t;

typedef struct {
    uint64_t sent;             // records handed to the broker (events, items, raw lines)
    uint64_t batches;
    uint64_t acked;            // batches journaled by the broker
    uint64_t accepted;         // records stored (after strata_producer_finish)
    uint64_t duplicates;
    uint64_t rejected;
    uint64_t resent;           // batch re-sends
} strata_summary_t;

typedef struct _strata_producer_t strata_producer_t;

//  Connects to the broker's ingest endpoint (e.g. "tcp://127.0.0.1:7701"). opts may be
//  NULL for defaults. Returns NULL on bad arguments or no memory.
strata_producer_t *strata_producer_new (const char *endpoint, const strata_producer_opts_t *opts);

//  Destroys the producer; batches not yet acknowledged are abandoned (call finish first).
void strata_producer_destroy (strata_producer_t **self_p);

//  Queue a record. May block while max_inflight batches wait for acknowledgement.
//  Returns STRATA_OK or a negative code.
int strata_producer_add_event (strata_producer_t *self, const strata_event_t *event);
int strata_producer_add_item (strata_producer_t *self, const strata_item_t *item);

//  Queue a record the caller could not parse, so that the broker keeps it with its
//  reason among the rejects (source: file name; line: 1-based line number).
int strata_producer_add_raw (strata_producer_t *self, const char *source, uint64_t line, const char *text,
                             const char *reason);

//  Sends the partial batch and waits until every batch is journaled.
int strata_producer_flush (strata_producer_t *self);

//  Flushes, then waits (up to timeout_ms) until the broker has applied every batch and
//  fills summary with the final counts. Returns STRATA_OK or STRATA_ETIMEOUT.
int strata_producer_finish (strata_producer_t *self, int timeout_ms, strata_summary_t *summary);

//  Counts so far (accepted/duplicates/rejected are filled only by finish).
void strata_producer_summary (strata_producer_t *self, strata_summary_t *summary);

//  Text of the last error the broker sent, or "". Valid until the next call.
const char *strata_producer_error (strata_producer_t *self);

//  Asks a broker (ingest or api endpoint) for its statistics. Returns a malloc'd JSON
//  object text (caller frees), or NULL with a message in err.
char *strata_stats_json (const char *endpoint, int timeout_ms, char *err, size_t errlen);

//  The oldest stored rejects (dead letters), at most limit, as a JSON array of objects
//  {kind, id, reason, text, batch_id, line}. malloc'd text (caller frees), or NULL with
//  a message in err.
char *strata_rejects_json (const char *endpoint, size_t limit, int timeout_ms, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
