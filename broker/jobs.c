/*  jobs: the broker's worker endpoint (see broker_private.h).

    Majordomo / Paranoid Pirate style: a worker announces its role and capacity
    (READY), both sides heartbeat, and a worker that misses `liveness` heartbeats, or
    says DISCONNECT, is dropped with its jobs handed back. Journal entries are the
    preprocess workers' jobs: each goes to the least loaded worker, and its RESULT is
    applied to the knowledge store in one atomic write that also deletes the entry, so
    a job given out twice (its first worker presumed dead) changes the store once.
    Rank workers share the pool and the heartbeats; their SERVE_RESULTS go to serve.c,
    and the jobs of theirs that the pool hands back (SERVE_KEY_BIT) go there too.
*/
#define LOG_MODULE "broker"
#include <stdlib.h>
#include <string.h>

#include "broker_private.h"
#include "log.h"

//  A job key the pool handed back (its worker left or died).
static void
s_requeue (uint64_t seq, void *arg)
{
    broker_t *self = arg;
    if (seq & SERVE_KEY_BIT) {
        serve_requeue (self->serve, seq);
        return;
    }
    //  Jobs that were in flight are older than anything waiting: put them first.
    zlistx_add_start (self->pending, (void *) (uintptr_t) seq);
}

void
jobs_enqueue (uint64_t seq, void *arg)
{
    broker_t *self = arg;
    zlistx_add_end (self->pending, (void *) (uintptr_t) seq);
}

void
jobs_dispatch (broker_t *self)
{
    while (zlistx_size (self->pending)) {
        pool_worker_t *w = pool_least_loaded (self->pool, STRATA__V1__ROLE__PREPROCESS);
        if (!w)
            return;
        uint64_t seq = (uint64_t) (uintptr_t) zlistx_first (self->pending);
        zlistx_delete (self->pending, zlistx_cursor (self->pending));
        size_t len = 0;
        char *payload = knowledge_journal_get (self->kb, seq, &len);
        if (!payload)
            continue;   // applied meanwhile (a late result from a worker presumed dead)
        Strata__V1__Job job = STRATA__V1__JOB__INIT;
        job.job_id = ++self->next_job_id;
        job.sequence = seq;
        job.payload.data = (uint8_t *) payload;
        job.payload.len = len;
        if (wire_send (self->workers, w->identity, WIRE_JOB, &job.base) == 0)
            pool_assign (self->pool, w, seq);
        else
            s_requeue (seq, self);
        free (payload);
    }
}

static void
s_handle_result (broker_t *self, pool_worker_t *w, zframe_t *routing, zframe_t *payload)
{
    arena_reset (self->arena);
    ProtobufCAllocator alloc = arena_protobuf (self->arena);
    Strata__V1__JobResult *res = (Strata__V1__JobResult *) wire_unpack (&strata__v1__job_result__descriptor, payload,
                                                                     &alloc);
    if (!res) {
        broker_bad_input (self, self->workers, routing, NULL, STRATA__V1__ERROR_CODE__BAD_PAYLOAD,
                          "RESULT payload does not decode");
        return;
    }
    //  Only the worker holding a job may answer it: a RESULT from any other peer (one
    //  that never registered, or one whose job went to another when it fell silent)
    //  would write events and delete the journal entry it names. The job's holder
    //  answers it, or it is given to another.
    if (!w) {
        //  Counted and logged; the caller tells the peer to register again.
        self->protocol_errors++;
        log_warn ("RESULT for journal entry %llu (%s) from an unregistered peer; refused",
                  (unsigned long long) res->sequence, res->batch_id);
        return;
    }
    if (pool_holder (self->pool, res->sequence) != w) {
        log_warn ("RESULT for journal entry %llu (%s) from %s, which does not hold it; refused",
                  (unsigned long long) res->sequence, res->batch_id, w->id);
        broker_bad_input (self, self->workers, routing, res->batch_id, STRATA__V1__ERROR_CODE__INVALID,
                          "RESULT for a journal entry that is not this worker's job");
        return;
    }
    Strata__V1__Ack ack;
    Strata__V1__ReasonCount reasons[REASONS_MAX], *rptrs[REASONS_MAX];
    int rc = knowledge_apply (self->kb, res, &ack, reasons, rptrs, REASONS_MAX);
    if (rc < 0) {
        log_error ("cannot apply journal entry %llu (%s); stopping so that a restart replays it",
                   (unsigned long long) res->sequence, strata_strerror (rc));
        self->fatal = true;
        return;
    }
    pool_complete (self->pool, res->sequence);
    if (rc == 0)
        log_debug ("applied %llu (%s): %llu accepted, %llu duplicates, %llu rejected by %s",
                   (unsigned long long) res->sequence, res->batch_id, (unsigned long long) ack.accepted,
                   (unsigned long long) ack.duplicates, (unsigned long long) ack.rejected, w ? w->id : "?");
}

static void
s_handle_ready (broker_t *self, zframe_t *routing, zframe_t *payload)
{
    Strata__V1__WorkerHello *hello = (Strata__V1__WorkerHello *) wire_unpack (&strata__v1__worker_hello__descriptor,
                                                                           payload, NULL);
    if (!hello || hello->role == STRATA__V1__ROLE__ROLE_UNSPECIFIED)
        broker_bad_input (self, self->workers, routing, NULL, STRATA__V1__ERROR_CODE__INVALID,
                          "READY needs a WorkerHello with a role");
    else {
        pool_worker_t *w = pool_register (self->pool, routing, hello, s_requeue, self);
        if (w)
            log_info ("worker %s (pid %u) ready: role %d, capacity %u", w->id, w->pid, w->role, w->capacity);
    }
    if (hello)
        strata__v1__worker_hello__free_unpacked (hello, NULL);
}

void
jobs_handle (broker_t *self)
{
    //  A bounded round, so that a flood of worker messages cannot starve the other
    //  sockets.
    for (int i = 0; i < 256; i++) {
        wire_msg_t msg;
        int rc = wire_recv_ready (self->workers, true, 0, &msg);
        if (rc == STRATA_EINTR || rc == STRATA_EAGAIN)
            break;
        if (rc < 0) {
            broker_bad_input (self, self->workers, msg.routing, NULL, STRATA__V1__ERROR_CODE__BAD_FRAMING,
                              "bad framing on worker endpoint");
            wire_msg_reset (&msg);
            continue;
        }
        int64_t t0 = zclock_usecs ();
        pool_worker_t *w = pool_lookup (self->pool, msg.routing);
        if (w)
            pool_touch (self->pool, w);
        //  RESULT, SERVE_RESULTS and HEARTBEAT come from registered workers: one the
        //  pool does not know (dropped as dead, or the broker restarted) is told to
        //  register again, and its RESULT is refused (the job is, or will be, another's).
        bool registered_only = !strcmp (msg.type, WIRE_RESULT) || !strcmp (msg.type, WIRE_SERVE_RESULTS)
                               || !strcmp (msg.type, WIRE_HEARTBEAT);
        if (!strcmp (msg.type, WIRE_READY))
            s_handle_ready (self, msg.routing, msg.payload);
        else if (!strcmp (msg.type, WIRE_RESULT))
            s_handle_result (self, w, msg.routing, msg.payload);
        else if (!strcmp (msg.type, WIRE_SERVE_RESULTS))
            serve_results (self->serve, w, msg.payload);
        else if (!strcmp (msg.type, WIRE_DISCONNECT)) {
            if (w) {
                log_info ("worker %s left", w->id);
                pool_remove (self->pool, w, s_requeue, self);
            }
        }
        else if (!registered_only)
            broker_bad_input (self, self->workers, msg.routing, NULL, STRATA__V1__ERROR_CODE__UNKNOWN_TYPE,
                              "unknown message type on worker endpoint");
        //  A HEARTBEAT asks for nothing but the pool_touch above.
        if (registered_only && !w)
            wire_send (self->workers, msg.routing, WIRE_DISCONNECT, NULL);
        broker_timed (self, msg.type, t0);
        wire_msg_reset (&msg);
        if (self->fatal)
            return;
    }
}

void
jobs_heartbeat (broker_t *self)
{
    pool_expire (self->pool, zclock_mono (), s_requeue, self);
    Strata__V1__Heartbeat hb = STRATA__V1__HEARTBEAT__INIT;
    for (pool_worker_t *w = pool_first (self->pool); w; w = pool_next (self->pool))
        wire_send (self->workers, w->identity, WIRE_HEARTBEAT, &hb.base);
}

void
jobs_farewell (broker_t *self)
{
    for (pool_worker_t *w = pool_first (self->pool); w; w = pool_next (self->pool))
        wire_send (self->workers, w->identity, WIRE_DISCONNECT, NULL);
}
