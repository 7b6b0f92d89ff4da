/*  serve: the broker's routing of RECOMMEND, SIMILAR and SEARCH requests to rank workers.

    A request from a client on the api endpoint is checked (it must decode), becomes a
    ServeJob (for RECOMMEND, and SEARCH naming a user, with the user's stored recent
    behaviour attached, so rank workers need no access to the store) and goes to the
    rank worker with the fewest jobs. Jobs given out together travel together: one
    SERVE_JOBS message per worker, and a worker sends the results of the jobs it
    answered together in one SERVE_RESULTS; each result goes back to its client as the
    reply it carries. A worker holds at most `pipeline` SERVE_JOBS messages unanswered
    (one it works on, one waiting for it, with the default 2): requests that arrive
    meanwhile wait here and go together in the next message. At low load a message
    carries one request and adds no wait; under load, many, and the cost per request
    (messages, context switches, the workers' scans) falls as the load rises. A
    job held by a worker that leaves or misses its heartbeats is given to another
    worker, up to `attempts` times; one that a worker has held for `hedge_ms` while
    saying nothing at all (dead before its heartbeats tell, or stuck) is given to
    another as well, without waiting for the heartbeats, and the first answer wins; a
    job that no worker takes within `timeout_ms`, or a request when no rank worker is
    connected, gets an UNAVAILABLE Error. PING takes the same path with an empty
    payload, answered at once by the rank worker: the floor that serving latencies are
    measured against.

    Job keys in the shared worker pool carry SERVE_KEY_BIT, which tells them from
    journal sequences when the pool hands back a lost worker's jobs.
*/
#ifndef STRATA_SERVE_H
#define STRATA_SERVE_H

#include <czmq.h>
#include <stdint.h>

#include "knowledge.h"
#include "pool.h"

#define SERVE_KEY_BIT (1ULL << 63)

typedef struct _serve_t serve_t;

typedef struct {
    uint32_t history_len;   // stored events attached to a RECOMMEND
    int attempts;           // workers tried before giving up
    int64_t timeout_ms;     // longest wait for a free rank worker
    uint32_t pipeline;      // SERVE_JOBS messages a worker may hold unanswered (0: no limit)
    int64_t hedge_ms;       // a job unanswered this long by a worker silent this long goes to another too (0: never)
} serve_config_t;

//  Borrows everything: the store, the pool, the api (clients) and workers sockets.
serve_t *serve_new (const serve_config_t *cfg, knowledge_t *kb, pool_t *pool, zsock_t *api, zsock_t *workers);
void serve_destroy (serve_t **self_p);

//  A RECOMMEND, SIMILAR or SEARCH from a client, queued for serve_dispatch. Returns 0,
//  or, when it was refused (an Error was sent), STRATA_EUNAVAILABLE (no rank worker
//  connected), STRATA_EPROTOCOL (the payload does not decode), STRATA_ENOMEM or the code
//  of the user's history read (knowledge_user_recent).
int serve_request (serve_t *self, zframe_t *routing, const char *type, zframe_t *payload);

//  A SERVE_RESULTS message from rank worker w (NULL: one the pool does not know): each
//  result goes to its client.
void serve_results (serve_t *self, pool_worker_t *w, zframe_t *payload);

//  A job key handed back by the pool (a lost worker's): give it to another.
void serve_requeue (serve_t *self, uint64_t key);

//  Gives waiting jobs to rank workers with free slots, those for one worker in one
//  SERVE_JOBS message (under load, many requests arrive between two calls); fails jobs
//  that waited too long. Call it after each round of requests and results.
void serve_dispatch (serve_t *self);

//  When serve_dispatch has a job to hedge next (monotonic ms; INT64_MAX: none): the
//  caller's poll wakes by then.
int64_t serve_next_wake (serve_t *self);

//  Requests answered, failed, retried on another worker (theirs lost), hedged (sent to
//  a second worker while the first was silent); SERVE_JOBS messages sent.
typedef struct {
    uint64_t served, failed, retried, hedged, messages;
} serve_counts_t;
void serve_counts (serve_t *self, serve_counts_t *out);

#endif
