/*  client: request/reply calls to a broker (statistics). See strata.h. */
#include <czmq.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "strata.h"
#include "wire.h"

static const char *
s_role_name (Strata__V1__Role role)
{
    switch (role) {
    case STRATA__V1__ROLE__PREPROCESS: return "preprocess";
    case STRATA__V1__ROLE__TRAIN: return "train";
    case STRATA__V1__ROLE__RANK: return "rank";
    default: return "unknown";
    }
}

char *
strata_stats_json (const char *endpoint, int timeout_ms, char *err, size_t errlen)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    if (!sock) {
        snprintf (err, errlen, "cannot create socket");
        return NULL;
    }
    zsock_set_linger (sock, 0);
    zsock_set_rcvtimeo (sock, timeout_ms);
    char *out = NULL;
    if (zsock_connect (sock, "%s", endpoint) < 0) {
        snprintf (err, errlen, "cannot connect to %s", endpoint);
        goto done;
    }
    Strata__V1__StatsRequest req = STRATA__V1__STATS_REQUEST__INIT;
    wire_send (sock, NULL, WIRE_STATS, &req.base);
    wire_msg_t msg;
    if (wire_recv (sock, false, 0, &msg) < 0) {
        snprintf (err, errlen, "no answer from %s within %d ms", endpoint, timeout_ms);
        goto done;
    }
    if (strcmp (msg.type, WIRE_STATS_REPLY) != 0) {
        snprintf (err, errlen, "unexpected reply '%s'", msg.type);
        wire_msg_reset (&msg);
        goto done;
    }
    Strata__V1__Stats *st = (Strata__V1__Stats *) wire_unpack (&strata__v1__stats__descriptor, msg.payload, NULL);
    wire_msg_reset (&msg);
    if (!st) {
        snprintf (err, errlen, "stats reply does not decode");
        goto done;
    }
    json_t *workers = json_object ();
    json_t *list = json_array ();
    for (size_t i = 0; i < st->n_workers; i++) {
        Strata__V1__WorkerInfo *w = st->workers[i];
        const char *role = s_role_name (w->role);
        json_object_set_new (workers, role, json_integer (json_integer_value (json_object_get (workers, role)) + 1));
        json_array_append_new (list, json_pack ("{s:s, s:s, s:I, s:I, s:I}", "id", w->worker_id, "role", role,
                                                "pid", (json_int_t) w->pid, "inflight", (json_int_t) w->inflight,
                                                "jobs_done", (json_int_t) w->jobs_done));
    }
    json_t *reasons = json_object ();
    for (size_t i = 0; i < st->n_reject_reasons; i++)
        json_object_set_new (reasons, st->reject_reasons[i]->reason, json_integer ((json_int_t) st->reject_reasons[i]->count));
    json_t *j = json_pack ("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:o}",
                           "events", (json_int_t) st->events, "users", (json_int_t) st->users, "items",
                           (json_int_t) st->items, "catalogue_items", (json_int_t) st->catalogue_items,
                           "duplicates", (json_int_t) st->duplicates, "rejected", (json_int_t) st->rejected,
                           "journal_pending", (json_int_t) st->journal_pending, "journal_inflight",
                           (json_int_t) st->journal_inflight, "batches", (json_int_t) st->batches,
                           "protocol_errors", (json_int_t) st->protocol_errors, "uptime_ms",
                           (json_int_t) st->uptime_ms, "workers", workers, "worker_list", list,
                           "reject_reasons", reasons);
    strata__v1__stats__free_unpacked (st, NULL);
    out = j ? json_dumps (j, JSON_INDENT (2) | JSON_SORT_KEYS) : NULL;
    json_decref (j);
    if (!out)
        snprintf (err, errlen, "out of memory");
done:
    zsock_destroy (&sock);
    return out;
}
