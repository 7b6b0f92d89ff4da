/*  client: request/reply calls to a broker (statistics, rejects). See strata.h and
    request.h. */
#include <czmq.h>
#include <jansson.h>
#include <stdio.h>
#include <stdbool.h>
#include <string.h>

#include "request.h"
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

ProtobufCMessage *
client_request (const char *endpoint, const char *type, const ProtobufCMessage *req, const char *reply_type,
           const ProtobufCMessageDescriptor *desc, int timeout_ms, char *err, size_t errlen)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    if (!sock) {
        snprintf (err, errlen, "cannot create socket");
        return NULL;
    }
    zsock_set_linger (sock, 0);
    zsock_set_rcvtimeo (sock, timeout_ms);
    ProtobufCMessage *reply = NULL;
    wire_msg_t msg;
    if (zsock_connect (sock, "%s", endpoint) < 0)
        snprintf (err, errlen, "cannot connect to %s", endpoint);
    else if (wire_send (sock, NULL, type, req) < 0 || wire_recv (sock, false, 0, &msg) < 0)
        snprintf (err, errlen, "no answer from %s within %d ms", endpoint, timeout_ms);
    else {
        if (!strcmp (msg.type, WIRE_ERROR)) {
            Strata__V1__Error *e = (Strata__V1__Error *) wire_unpack (&strata__v1__error__descriptor, msg.payload, NULL);
            snprintf (err, errlen, "%s", e ? e->message : "(undecodable error reply)");
            if (e)
                strata__v1__error__free_unpacked (e, NULL);
        }
        else if (strcmp (msg.type, reply_type) != 0)
            snprintf (err, errlen, "unexpected reply '%s'", msg.type);
        else if (!(reply = wire_unpack (desc, msg.payload, NULL)))
            snprintf (err, errlen, "%s does not decode", reply_type);
        wire_msg_reset (&msg);
    }
    zsock_destroy (&sock);
    return reply;
}

char *
strata_stats_json (const char *endpoint, int timeout_ms, char *err, size_t errlen)
{
    Strata__V1__StatsRequest req = STRATA__V1__STATS_REQUEST__INIT;
    Strata__V1__Stats *st = (Strata__V1__Stats *) client_request (endpoint, WIRE_STATS, &req.base, WIRE_STATS_REPLY,
                                                             &strata__v1__stats__descriptor, timeout_ms, err, errlen);
    if (!st)
        return NULL;
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
    Strata__V1__ServingStats none = STRATA__V1__SERVING_STATS__INIT, *sv = st->serving ? st->serving : &none;
    json_t *serving = json_pack ("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "served", (json_int_t) sv->served,
                                 "failed", (json_int_t) sv->failed, "retried", (json_int_t) sv->retried, "hedged",
                                 (json_int_t) sv->hedged, "history_cache_hits", (json_int_t) sv->history_cache_hits,
                                 "history_cache_misses", (json_int_t) sv->history_cache_misses, "messages",
                                 (json_int_t) sv->messages, "slow_turns", (json_int_t) sv->slow_turns,
                                 "slowest_turn_us", (json_int_t) sv->slowest_turn_us);
    json_t *j = json_pack ("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:o}",
                           "events", (json_int_t) st->events, "users", (json_int_t) st->users, "items",
                           (json_int_t) st->items, "catalogue_items", (json_int_t) st->catalogue_items,
                           "duplicates", (json_int_t) st->duplicates, "rejected", (json_int_t) st->rejected,
                           "journal_pending", (json_int_t) st->journal_pending, "journal_inflight",
                           (json_int_t) st->journal_inflight, "journal_syncs", (json_int_t) st->journal_syncs,
                           "journal_slowest_sync_us", (json_int_t) st->journal_slowest_sync_us, "journal_unsynced",
                           (json_int_t) st->journal_unsynced, "batches", (json_int_t) st->batches,
                           "protocol_errors", (json_int_t) st->protocol_errors, "uptime_ms",
                           (json_int_t) st->uptime_ms, "workers", workers, "worker_list", list,
                           "reject_reasons", reasons, "serving", serving);
    strata__v1__stats__free_unpacked (st, NULL);
    char *out = j ? json_dumps (j, JSON_INDENT (2) | JSON_SORT_KEYS) : NULL;
    json_decref (j);
    if (!out)
        snprintf (err, errlen, "out of memory");
    return out;
}

char *
strata_rejects_json (const char *endpoint, size_t limit, int timeout_ms, char *err, size_t errlen)
{
    json_t *list = json_array ();
    uint8_t cursor[64];
    size_t cursor_len = 0;
    while (list && json_array_size (list) < limit) {
        Strata__V1__RejectsRequest req = STRATA__V1__REJECTS_REQUEST__INIT;
        size_t want = limit - json_array_size (list);
        req.limit = want > 1000 ? 1000 : (uint32_t) want;
        req.after.data = cursor;
        req.after.len = cursor_len;
        Strata__V1__RejectsReply *r = (Strata__V1__RejectsReply *) client_request (
            endpoint, WIRE_REJECTS, &req.base, WIRE_REJECTS_REPLY, &strata__v1__rejects_reply__descriptor,
            timeout_ms, err, errlen);
        if (!r) {
            json_decref (list);
            return NULL;
        }
        for (size_t i = 0; i < r->n_rejects; i++) {
            Strata__V1__Reject *x = r->rejects[i];
            json_array_append_new (list, json_pack ("{s:s, s:s, s:s, s:s, s:s, s:I}", "kind", x->kind, "id", x->id,
                                                    "reason", x->reason, "text", x->text, "batch_id", x->batch_id,
                                                    "line", (json_int_t) x->line));
        }
        bool more = r->next.len > 0 && r->next.len <= sizeof cursor;
        if (more) {
            memcpy (cursor, r->next.data, r->next.len);
            cursor_len = r->next.len;
        }
        strata__v1__rejects_reply__free_unpacked (r, NULL);
        if (!more)
            break;
    }
    char *out = list ? json_dumps (list, JSON_COMPACT) : NULL;
    json_decref (list);
    if (!out)
        snprintf (err, errlen, "out of memory");
    return out;
}
