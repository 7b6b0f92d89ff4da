/*  strata.h: the Strata client library (libstrata, client/), the one public header
    of the project: plain C in, no protobuf types. It depends on common/ (the wire
    framing and strata_error.h, which it includes) and on nothing of the daemons.

    Two objects. A producer (strata_producer_*) pushes behaviour and catalogue to the
    broker's ingest endpoint; a client (strata_client_*) asks the broker's api endpoint
    for recommendations, similar items and search results.

    A producer pushes behaviour events and catalogue items to a Strata broker. It
    batches records, keeps up to max_inflight batches unacknowledged (blocking the
    caller when that many are out: backpressure), and re-sends any batch that is not
    acknowledged in time with the same batch id, so a broker restart or a lost message
    never loses or doubles data: the broker recognises a batch it has already journaled,
    and deduplicates events by event id.

    A client keeps one DEALER connection and any number of requests in flight on it.
    Each request travels with an id of the client's own in the protocol's request_id,
    which the broker echoes in its reply (or in an Error's ref): replies are matched by
    it, in whatever order they come. Each request has its own deadline; a request whose
    deadline passes is completed with STRATA_ETIMEOUT, and a reply that arrives after
    that is recognised as late and dropped. The synchronous calls (strata_recommend,
    strata_similar, strata_search) are one send and a wait for that one reply on the
    same connection, so they mix freely with requests in flight.

    Plain C structs in, no protobuf in this header: any C program can link it. All
    strings passed in are copied (packed into the request before the call returns);
    none are kept. A producer and a client each belong to one thread: use one per
    thread (they share nothing).
*/
#ifndef STRATA_CLIENT_H
#define STRATA_CLIENT_H

#include <stdbool.h>
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

// ---------------------------------------------------------------- asking

//  What to leave out of an answer, as proto/strata.proto's Filters. All zero (or a NULL
//  filters pointer) means: the broker's default (leave out what the user purchased).
typedef struct {
    bool exclude_all_seen;            // leave out every item in the user's history
    bool include_purchased;           // do not leave out purchased items
    const char *const *exclude;       // item ids to leave out (n_exclude of them, none NULL)
    size_t n_exclude;
    const char *category;             // only items with this category (any level, any case); NULL/"": all
    bool has_min_price;               // only items priced min_price or more
    double min_price;
    bool has_max_price;               // only items priced max_price or less (not below min_price)
    double max_price;
} strata_filters_t;

//  Behaviour of a session that the broker has not stored yet (RecentEvent).
typedef struct {
    const char *item_id;              // required
    const char *type;                 // "view" (also NULL/""), "click", "cart", "purchase", "rate", "search"
} strata_recent_t;

//  RECOMMEND: what should this user see next.
typedef struct {
    const char *user_id;              // may be unknown to the broker (a new visitor); NULL: ""
    uint32_t k;                       // items wanted; 0: 10; at most 1000
    const strata_filters_t *filters;  // NULL: none
    const strata_recent_t *recent;    // n_recent events, oldest first; read with the stored history
    size_t n_recent;
} strata_recommend_t;

//  SIMILAR: items like this one.
typedef struct {
    const char *item_id;              // required
    uint32_t k;                       // 0: 10; at most 1000
    const strata_filters_t *filters;  // NULL: none
} strata_similar_t;

//  SEARCH: items matching a query, optionally for a user.
typedef struct {
    const char *query;                // required, not empty
    const char *user_id;              // optional: blends in this user's model score
    uint32_t k;                       // 0: 10; at most 1000
    const strata_filters_t *filters;  // NULL: none
    const char *const *candidates;    // optional: rank only these items (n_candidates, none NULL)
    size_t n_candidates;
    bool text_only;                   // rank by text relevance alone (BM25F), for comparisons
} strata_search_t;

typedef enum {
    STRATA_ASK_RECOMMEND = 1,
    STRATA_ASK_SIMILAR = 2,
    STRATA_ASK_SEARCH = 3,
} strata_ask_t;

typedef struct {
    const char *item_id;              // external item id
    float score;                      // higher is better; items come best first
    const char *title;                // from the catalogue; "" when it has none
} strata_scored_t;

//  One completed request: the broker's Recommendations, or why there are none. Every
//  string is valid (never NULL) until strata_reply_destroy.
typedef struct {
    uint64_t request_id;              // the id strata_client_send_* gave the request
    strata_ask_t kind;                // what was asked
    int status;                       // STRATA_OK, or a negative code: the request failed
    const char *error;                // status != OK: the broker's Error message, or the library's; else ""
    uint64_t model_version;           // the model version that answered (0: none loaded)
    const char *source;               // "model", "popular", "item", "text", "text+model", ...
    const char *served_by;            // the rank worker that answered
    size_t n_items;
    const strata_scored_t *items;     // best first
} strata_reply_t;

//  Frees a reply from strata_recommend/_similar/_search or strata_client_recv and sets
//  *reply_p to NULL. Accepts NULL and a NULL *reply_p.
void strata_reply_destroy (strata_reply_t **reply_p);

typedef struct {
    int timeout_ms;                   // a request's deadline when a call passes 0 (default 5000)
    size_t max_reply;                 // largest reply payload accepted, bytes (default 64 MB)
} strata_client_opts_t;

typedef struct _strata_client_t strata_client_t;

//  Connects to the broker's api endpoint (e.g. "tcp://127.0.0.1:7703"); ZeroMQ
//  connects in the background and reconnects by itself, so a broker that is not up yet
//  shows as requests that time out, not as a failure here. opts may be NULL for the
//  defaults. Returns NULL on a bad endpoint or option, or no memory. The client and
//  the replies it returns belong to the calling thread: use one client per thread
//  (they share nothing, so several may run side by side).
strata_client_t *strata_client_new (const char *endpoint, const strata_client_opts_t *opts);

//  Destroys the client and sets *self_p to NULL; requests still in flight and replies
//  not yet received are dropped. Accepts NULL and a NULL *self_p.
void strata_client_destroy (strata_client_t **self_p);

//  Synchronous calls: send one request and wait for its reply, up to timeout_ms (0:
//  the client's default; negative: STRATA_EINVAL). On STRATA_OK, *reply_p is the reply
//  (its status STRATA_OK); the caller owns it and frees it with strata_reply_destroy.
//  Otherwise *reply_p is NULL and the code says why:
//    STRATA_EINVAL        a bad argument (checked before anything is sent), or the
//                         broker found the request invalid
//    STRATA_ETIMEOUT      no reply within timeout_ms (a late reply is dropped)
//    STRATA_ENOTFOUND     the broker does not know the item (similar, candidates)
//    STRATA_EUNAVAILABLE  no rank worker, or no model version, can answer now
//    STRATA_EIO, STRATA_ETOOLARGE, STRATA_EFRAMING, STRATA_EPROTOCOL, STRATA_EREJECTED
//                         other Error replies (INTERNAL, TOO_LARGE, BAD_FRAMING,
//                         BAD_PAYLOAD or UNKNOWN_TYPE, unspecified)
//    STRATA_ECONNECT      the request could not be queued on the socket
//    STRATA_EINTR         a signal interrupted the wait (the request is forgotten)
//  and strata_client_error gives the text: the broker's own message for an Error reply.
//  Replies of requests in flight (strata_client_send_*) that arrive meanwhile are kept
//  for strata_client_recv.
int strata_recommend (strata_client_t *self, const strata_recommend_t *req, int timeout_ms, strata_reply_t **reply_p);
int strata_similar (strata_client_t *self, const strata_similar_t *req, int timeout_ms, strata_reply_t **reply_p);
int strata_search (strata_client_t *self, const strata_search_t *req, int timeout_ms, strata_reply_t **reply_p);

//  Many in flight: send a request without waiting. On STRATA_OK, *request_id (may be
//  NULL) gets its id, unique for the client's life and never 0; the request is then
//  completed exactly once, by a reply that strata_client_recv returns with that id (its
//  status STRATA_ETIMEOUT if no answer came within timeout_ms: 0 is the client's
//  default, negative is STRATA_EINVAL). Errors: STRATA_EINVAL (bad argument, nothing
//  sent), STRATA_ECONNECT (the socket refused it), STRATA_ENOMEM.
int strata_client_send_recommend (strata_client_t *self, const strata_recommend_t *req, int timeout_ms,
                                  uint64_t *request_id);
int strata_client_send_similar (strata_client_t *self, const strata_similar_t *req, int timeout_ms,
                                uint64_t *request_id);
int strata_client_send_search (strata_client_t *self, const strata_search_t *req, int timeout_ms,
                               uint64_t *request_id);

//  The next completed request, in completion order, waiting up to timeout_ms for one
//  (0: do not wait; negative: until one completes, which every request does by its
//  deadline). On STRATA_OK, *reply_p is the reply, owned by the caller (free with
//  strata_reply_destroy): its request_id says which request it completes, its status
//  whether the request succeeded, with the broker's message in error when not.
//  Returns STRATA_ESTATE when no request is in flight or waiting to be received,
//  STRATA_ETIMEOUT when none completed in time, STRATA_EINTR on a signal; *reply_p is
//  then NULL. An Error that names no request (some are refused before they are read:
//  no rank worker connected, no model version loaded yet) is given to the oldest
//  request in flight: such refusals come in the order the requests did.
int strata_client_recv (strata_client_t *self, int timeout_ms, strata_reply_t **reply_p);

//  Gives up on a request: no reply will be returned for it (one already completed and
//  not yet received is freed), and its answer, if one comes, is dropped. Returns
//  STRATA_OK, or STRATA_ENOTFOUND when there is no such request (already received, or
//  never sent).
int strata_client_cancel (strata_client_t *self, uint64_t request_id);

//  Requests sent and not yet completed (replies waiting for strata_client_recv are not
//  counted).
size_t strata_client_inflight (strata_client_t *self);

//  Why the last call on this client failed, or why the reply it returned failed (the
//  broker's message for an Error reply); "" when it did not. Valid until the next call
//  on the client.
const char *strata_client_error (strata_client_t *self);

#ifdef __cplusplus
}
#endif

#endif
