/*  ingest: the broker's side of the producers' BATCHes (see broker_private.h).

    A batch is checked (it decodes, has an id and records within the limits, and the
    journal has room), then journaled together with the batches that arrived in the
    same turn of the loop: one write for the group. The producer's ACK waits until the
    journal entry is durable. With journal-sync the fsync runs on the syncer's thread
    and the acks are held here, oldest first, until the sync that covers them is done;
    the loop goes on serving meanwhile. A batch id seen before is answered with what is
    known of it and journaled no more, but not before its first copy is durable: an ack
    always means the batch survives a power loss.
*/
#define LOG_MODULE "broker"
#include <stdlib.h>
#include <string.h>

#include "broker_private.h"
#include "log.h"
#include "util.h"

//  An ack held until the journal write it reports is on disk.
typedef struct {
    uint64_t ticket;     // the sync that covers it (syncer.h)
    zframe_t *routing;
    char *batch_id;
    uint64_t sequence;
    bool dispatch;       // the first copy of the batch: hand its journal entry to workers
} unsynced_t;

void
ingest_unsynced_destroy (void **item)
{
    unsynced_t *u = *item;
    if (!u)
        return;
    zframe_destroy (&u->routing);
    free (u->batch_id);
    free (u);
    *item = NULL;
}

size_t
ingest_unsynced (broker_t *self)
{
    return zlistx_size (self->unsynced);
}

static void
s_send_ack (broker_t *self, zframe_t *routing, char *batch_id, uint64_t sequence)
{
    Strata__V1__Ack ack = STRATA__V1__ACK__INIT;
    ack.batch_id = batch_id;
    ack.state = STRATA__V1__BATCH_STATE__JOURNALED;
    ack.sequence = sequence;
    wire_send (self->ingest, routing, WIRE_ACK, &ack.base);
}

//  Holds an ack until sync `ticket` is done. Returns 0, or STRATA_ENOMEM (nothing
//  held, routing and batch_id still the caller's).
static int
s_hold_ack (broker_t *self, uint64_t ticket, zframe_t **routing, char **batch_id, uint64_t sequence, bool dispatch)
{
    unsynced_t *u = calloc (1, sizeof *u);
    if (!u)
        return STRATA_ENOMEM;
    *u = (unsynced_t) { ticket, *routing, *batch_id, sequence, dispatch };
    zlistx_add_end (self->unsynced, u);
    *routing = NULL;
    *batch_id = NULL;
    return STRATA_OK;
}

//  The batch's ack still waiting for its sync, if any.
static unsynced_t *
s_unsynced_find (broker_t *self, const char *batch_id)
{
    for (unsynced_t *u = zlistx_first (self->unsynced); u; u = zlistx_next (self->unsynced))
        if (!strcmp (u->batch_id, batch_id))
            return u;
    return NULL;
}

//  Holds the ack of a copy of a batch whose first copy's ack is held.
static void
s_hold_copy (broker_t *self, const unsynced_t *first, zframe_t *routing)
{
    zframe_t *dup = zframe_dup (routing);
    char *batch_id = strdup (first->batch_id);
    if (!dup || !batch_id || s_hold_ack (self, first->ticket, &dup, &batch_id, first->sequence, false) < 0)
        wire_send_error (self->ingest, routing, first->batch_id, STRATA__V1__ERROR_CODE__INTERNAL,
                         "out of memory; retry");
    zframe_destroy (&dup);
    free (batch_id);
}

//  A failed sync stops the broker: what the store holds can no longer be told from
//  what it was asked to hold, and a restart replays the journal as it is on disk
//  (producers not acked send again).
void
ingest_synced (broker_t *self)
{
    uint64_t ticket = 0;
    if (syncer_synced (self->syncer, &ticket) != STRATA_OK) {
        log_error ("the journal could not be made durable; stopping so that a restart recovers from the disk");
        self->fatal = true;
        return;
    }
    unsynced_t *u;
    while ((u = zlistx_first (self->unsynced)) && u->ticket <= ticket) {
        s_send_ack (self, u->routing, u->batch_id, u->sequence);
        if (u->dispatch)
            jobs_enqueue (u->sequence, self);
        zlistx_delete (self->unsynced, zlistx_cursor (self->unsynced));
    }
}

//  Batches journaled and not yet acked are acked once durable, so that their
//  producers need not send them again.
void
ingest_drain (broker_t *self)
{
    if (self->syncer && !self->fatal && zlistx_size (self->unsynced)) {
        uint64_t synced;
        syncer_wait (self->syncer, &synced);
        ingest_synced (self);
    }
}

void
ingest_check (broker_t *self, wire_msg_t *msg, ingest_group_t *group)
{
    assert (group->n < INGEST_GROUP_MAX);
    zframe_t *routing = msg->routing;
    Strata__V1__EventBatch *batch = (Strata__V1__EventBatch *) wire_unpack (&strata__v1__event_batch__descriptor,
                                                                         msg->payload, NULL);
    if (!batch) {
        broker_bad_input (self, self->ingest, routing, NULL, STRATA__V1__ERROR_CODE__BAD_PAYLOAD,
                          "BATCH payload is not a valid EventBatch");
        return;
    }
    size_t records = batch->n_events + batch->n_items + batch->n_raw;
    const char *id = batch->batch_id ? batch->batch_id : "";
    if (!*id || strlen (id) > 256 || !util_utf8_valid (id, strlen (id)))
        broker_bad_input (self, self->ingest, routing, NULL, STRATA__V1__ERROR_CODE__INVALID,
                          "batch_id must be 1..256 bytes of UTF-8");
    else if (records == 0)
        broker_bad_input (self, self->ingest, routing, id, STRATA__V1__ERROR_CODE__INVALID, "batch has no records");
    else if (records > (size_t) self->cfg->max_batch) {
        char what[128];
        snprintf (what, sizeof what, "batch has %zu records; the limit is %lld", records,
                  (long long) self->cfg->max_batch);
        broker_bad_input (self, self->ingest, routing, id, STRATA__V1__ERROR_CODE__TOO_LARGE, what);
    }
    else {
        Strata__V1__Ack *known = NULL;
        int rc = knowledge_batch_lookup (self->kb, id, &known);
        if (rc == STRATA_OK) {
            //  A re-sent batch: answer with what we know, journal nothing; but not before
            //  the first copy's journal entry is durable.
            unsynced_t *first = s_unsynced_find (self, id);
            if (first)
                s_hold_copy (self, first, routing);
            else
                wire_send (self->ingest, routing, WIRE_ACK, &known->base);
            strata__v1__ack__free_unpacked (known, NULL);
        }
        else if (rc == STRATA_EIO)
            wire_send_error (self->ingest, routing, id, STRATA__V1__ERROR_CODE__INTERNAL, "store read failed; retry");
        else {
            //  Sent twice in quick succession: journal once, ack both copies.
            int copy_of = -1;
            for (size_t i = 0; i < group->n; i++)
                if (!strcmp (group->batch[i].batch_id, id))
                    copy_of = (int) i;
            char *batch_id = NULL;
            if (knowledge_journal_pending (self->kb) + group->n >= (uint64_t) self->cfg->max_pending)
                wire_send_error (self->ingest, routing, id, STRATA__V1__ERROR_CODE__UNAVAILABLE,
                                 "journal has %llu batches waiting for workers; retry later",
                                 (unsigned long long) knowledge_journal_pending (self->kb));
            else if (!(batch_id = strdup (id)))
                wire_send_error (self->ingest, routing, id, STRATA__V1__ERROR_CODE__INTERNAL, "out of memory; retry");
            else {
                group->batch[group->n++] = (ingest_batch_t) { msg->routing, msg->payload, batch_id, copy_of };
                msg->routing = msg->payload = NULL;
            }
        }
    }
    strata__v1__event_batch__free_unpacked (batch, NULL);
}

void
ingest_journal (broker_t *self, ingest_group_t *group)
{
    size_t n = group->n;
    if (n == 0)
        return;
    ingest_batch_t *b = group->batch;
    const char *ids[INGEST_GROUP_MAX];
    const void *data[INGEST_GROUP_MAX];
    size_t lens[INGEST_GROUP_MAX];
    uint64_t seqs[INGEST_GROUP_MAX];
    size_t slot[INGEST_GROUP_MAX];
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (b[i].copy_of >= 0) {
            slot[i] = slot[b[i].copy_of];
            continue;
        }
        ids[m] = b[i].batch_id;
        data[m] = zframe_data (b[i].payload);
        lens[m] = zframe_size (b[i].payload);
        slot[i] = m++;
    }
    int64_t t0 = zclock_usecs ();
    //  Written without sync: the syncer makes it durable off the loop (journal-sync),
    //  and the producers are acked then.
    int rc = knowledge_journal_append (self->kb, m, ids, data, lens, false, seqs);
    uint64_t ticket = rc == STRATA_OK && self->syncer ? syncer_request (self->syncer) : 0;
    broker_timed (self, "journal write", t0);
    for (size_t i = 0; i < n; i++) {
        uint64_t seq = seqs[slot[i]];
        bool dispatch = b[i].copy_of < 0;
        if (rc != STRATA_OK)
            wire_send_error (self->ingest, b[i].routing, b[i].batch_id, STRATA__V1__ERROR_CODE__INTERNAL,
                             "journal write failed; retry");
        else if (!self->syncer || s_hold_ack (self, ticket, &b[i].routing, &b[i].batch_id, seq, dispatch) < 0) {
            uint64_t synced;
            //  No syncer (journal-sync off), or no memory to hold the ack: acked now,
            //  after waiting for the sync if there is one.
            if (self->syncer && syncer_wait (self->syncer, &synced) != STRATA_OK)
                ingest_synced (self);   // says so, and stops the broker
            else {
                s_send_ack (self, b[i].routing, b[i].batch_id, seq);
                if (dispatch)
                    jobs_enqueue (seq, self);
            }
        }
        zframe_destroy (&b[i].routing);
        zframe_destroy (&b[i].payload);
        free (b[i].batch_id);
    }
    group->n = 0;
}
