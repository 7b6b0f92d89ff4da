/*  Unit: the broker as an object, run inside the test process (broker.h).

    Each test starts a broker on ephemeral TCP ports with its store in a temporary
    directory, runs it in a czmq actor, and drives it through its real sockets with
    the protocol's own messages: a producer's DEALER on the ingest endpoint, a client's
    on the api endpoint, and workers' on the worker endpoint. A test worker speaks the
    worker protocol itself (READY, HEARTBEAT, RESULT); the results it returns are the
    job's batch passed through unchanged (the test batches are clean already) with its
    raw records as rejects, so what the store shows afterwards is known exactly.
    Stopping is "$TERM" on the actor's pipe, then broker_destroy: under valgrind that
    is where a leak or a thread left running would show.
*/
#include <criterion/criterion.h>
#include <string.h>

#include "broker.h"
#include "harness.h"
#include "knowledge.h"
#include "log.h"
#include "wire.h"

//  Long enough for valgrind; every wait ends as soon as its answer is there.
#define WAIT_MS 10000

static char *s_dir;
static broker_config_t s_cfg;
static broker_t *s_broker;
static zactor_t *s_actor;
static zsock_t *s_producer, *s_client;
static zsock_t *s_workers[4];   // s_worker's, destroyed by the fixture
static size_t s_nworkers;

//  A DEALER connected to the broker's endpoint `name`.
static zsock_t *
s_connect (const char *name)
{
    const char *endpoint = broker_endpoint (s_broker, name);
    cr_assert_not_null (endpoint, "no %s endpoint", name);
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    cr_assert_not_null (sock);
    zsock_set_rcvtimeo (sock, WAIT_MS);
    zsock_set_linger (sock, 0);
    cr_assert_eq (zsock_connect (sock, "%s", endpoint), 0);
    return sock;
}

//  Parses the broker's flags (NULL-terminated extra ones after the test's own) into
//  s_cfg, as strata-broker does.
static void
s_configure (const char *const *extra)
{
    char *argv[32] = { "test-broker", "--dir", s_dir, "--ingest", "tcp://127.0.0.1:!", "--workers",
                       "tcp://127.0.0.1:!", "--api", "tcp://127.0.0.1:!" };
    int argc = 9;
    for (size_t i = 0; extra && extra[i]; i++)
        argv[argc++] = (char *) extra[i];
    char err[256];
    cr_assert_eq (config_parse (broker_config_keys, &s_cfg, argc, argv, NULL, err, sizeof err), 0, "%s", err);
}

//  Starts a broker with these extra flags (NULL-terminated, may be NULL).
static void
s_start (const char *const *extra)
{
    s_configure (extra);
    s_broker = broker_new (&s_cfg);
    cr_assert_not_null (s_broker, "the broker did not start");
    s_producer = s_connect ("ingest");
    s_client = s_connect ("api");
    s_actor = zactor_new (broker_actor, s_broker);
    cr_assert_not_null (s_actor);
}

//  Stops the broker: the actor's loop ends, then the object is destroyed.
static void
s_stop (void)
{
    zactor_destroy (&s_actor);
    broker_destroy (&s_broker);
}

static void
s_setup (void)
{
    log_set_level (LOG_LEVEL_ERROR);
    s_dir = harness_tmpdir ();
    cr_assert_not_null (s_dir);
}

static void
s_teardown (void)
{
    zsock_destroy (&s_producer);
    zsock_destroy (&s_client);
    for (size_t i = 0; i < s_nworkers; i++)
        zsock_destroy (&s_workers[i]);
    s_stop ();
    config_free (broker_config_keys, &s_cfg);
    harness_rmtree (s_dir);
    free (s_dir);
}

TestSuite (broker, .init = s_setup, .fini = s_teardown, .timeout = 60);

//  The next message on sock (a DEALER) of type `type`, skipping HEARTBEATs when
//  skip_heartbeats, decoded with desc (NULL: its payload is not decoded, NULL is
//  returned). Fails the test when something else or nothing comes. Free with
//  protobuf_c_message_free_unpacked.
static ProtobufCMessage *
s_expect (zsock_t *sock, const char *type, const ProtobufCMessageDescriptor *desc, bool skip_heartbeats)
{
    wire_msg_t msg;
    do {
        cr_assert_eq (wire_recv (sock, false, 0, &msg), 0, "no %s within %d ms", type, WAIT_MS);
        if (skip_heartbeats && !strcmp (msg.type, WIRE_HEARTBEAT))
            wire_msg_reset (&msg);
        else
            break;
    } while (true);
    cr_assert_str_eq (msg.type, type);
    ProtobufCMessage *m = desc ? wire_unpack (desc, msg.payload, NULL) : NULL;
    cr_assert (!desc || m, "%s does not decode", type);
    wire_msg_reset (&msg);
    return m;
}

//  The Error sent back for a bad message: its code.
static Strata__V1__ErrorCode
s_expect_error (zsock_t *sock)
{
    Strata__V1__Error *e = (Strata__V1__Error *) s_expect (sock, WIRE_ERROR, &strata__v1__error__descriptor, false);
    Strata__V1__ErrorCode code = e->code;
    strata__v1__error__free_unpacked (e, NULL);
    return code;
}

static Strata__V1__Stats *
s_stats (void)
{
    Strata__V1__StatsRequest req = STRATA__V1__STATS_REQUEST__INIT;
    cr_assert_eq (wire_send (s_client, NULL, WIRE_STATS, &req.base), 0);
    return (Strata__V1__Stats *) s_expect (s_client, WIRE_STATS_REPLY, &strata__v1__stats__descriptor, false);
}

//  Waits until the store holds `events` events; the last stats (caller frees).
static Strata__V1__Stats *
s_wait_events (uint64_t events)
{
    int64_t deadline = zclock_mono () + WAIT_MS;
    Strata__V1__Stats *st = s_stats ();
    while (st->events < events && zclock_mono () < deadline) {
        strata__v1__stats__free_unpacked (st, NULL);
        zclock_sleep (10);
        st = s_stats ();
    }
    cr_assert_eq (st->events, events, "%llu events stored, not %llu", (unsigned long long) st->events,
                  (unsigned long long) events);
    return st;
}

//  Waits until the broker knows `workers` workers (their READYs arrive on a socket
//  of their own, in no order with the test's STATS).
static void
s_wait_workers (size_t workers)
{
    int64_t deadline = zclock_mono () + WAIT_MS;
    Strata__V1__Stats *st = s_stats ();
    while (st->n_workers != workers && zclock_mono () < deadline) {
        strata__v1__stats__free_unpacked (st, NULL);
        zclock_sleep (10);
        st = s_stats ();
    }
    cr_assert_eq (st->n_workers, workers, "%zu workers known, not %zu", st->n_workers, workers);
    strata__v1__stats__free_unpacked (st, NULL);
}

//  A batch: events (user, item, event id) on the first n rows, optionally a catalogue
//  item with a title and a raw record that a producer could not parse.
typedef struct {
    Strata__V1__EventBatch batch;
    Strata__V1__Event ev[8], *evp[8];
    Strata__V1__Item item, *itemp[1];
    Strata__V1__RawRecord raw, *rawp[1];
} batch_t;

static void
s_batch (batch_t *b, const char *batch_id, const char *const (*events)[3], size_t n, const char *item_title,
         bool with_raw)
{
    memset (b, 0, sizeof *b);
    strata__v1__event_batch__init (&b->batch);
    b->batch.batch_id = (char *) batch_id;
    for (size_t i = 0; i < n; i++) {
        strata__v1__event__init (&b->ev[i]);
        b->ev[i].user_id = (char *) events[i][0];
        b->ev[i].item_id = (char *) events[i][1];
        b->ev[i].event_id = (char *) events[i][2];
        b->ev[i].type = STRATA__V1__EVENT_TYPE__VIEW;
        b->ev[i].timestamp_ms = 1700000000000 + (int64_t) i;
        b->evp[i] = &b->ev[i];
    }
    b->batch.n_events = n;
    b->batch.events = b->evp;
    if (item_title) {
        strata__v1__item__init (&b->item);
        b->item.item_id = "i1";
        b->item.title = (char *) item_title;
        b->itemp[0] = &b->item;
        b->batch.n_items = 1;
        b->batch.items = b->itemp;
    }
    if (with_raw) {
        strata__v1__raw_record__init (&b->raw);
        b->raw.source = "test.csv";
        b->raw.line = 7;
        b->raw.text = "not,a,record";
        b->raw.reason = "unparseable line";
        b->rawp[0] = &b->raw;
        b->batch.n_raw = 1;
        b->batch.raw = b->rawp;
    }
}

//  Sends the batch and returns its ack (caller frees).
static Strata__V1__Ack *
s_send_batch (batch_t *b)
{
    cr_assert_eq (wire_send (s_producer, NULL, WIRE_BATCH, &b->batch.base), 0);
    Strata__V1__Ack *ack = (Strata__V1__Ack *) s_expect (s_producer, WIRE_ACK, &strata__v1__ack__descriptor, false);
    cr_expect_str_eq (ack->batch_id, b->batch.batch_id);
    return ack;
}

//  A worker of this role and capacity, registered (the fixture destroys it).
static zsock_t *
s_worker (const char *id, Strata__V1__Role role, uint32_t capacity)
{
    zsock_t *w = s_connect ("workers");
    Strata__V1__WorkerHello hello = STRATA__V1__WORKER_HELLO__INIT;
    hello.worker_id = (char *) id;
    hello.role = role;
    hello.capacity = capacity;
    cr_assert_eq (wire_send (w, NULL, WIRE_READY, &hello.base), 0);
    cr_assert_lt (s_nworkers, sizeof s_workers / sizeof s_workers[0]);
    s_workers[s_nworkers++] = w;
    return w;
}

//  The next JOB a worker gets (caller frees), answering the broker's heartbeats
//  meanwhile as strata-worker does, so that it stays alive.
static Strata__V1__Job *
s_next_job (zsock_t *w)
{
    int64_t deadline = zclock_mono () + WAIT_MS;
    while (zclock_mono () < deadline) {
        wire_msg_t msg;
        cr_assert_eq (wire_recv (w, false, 0, &msg), 0, "no JOB within %d ms", WAIT_MS);
        if (!strcmp (msg.type, WIRE_HEARTBEAT)) {
            Strata__V1__Heartbeat hb = STRATA__V1__HEARTBEAT__INIT;
            wire_send (w, NULL, WIRE_HEARTBEAT, &hb.base);
            wire_msg_reset (&msg);
            continue;
        }
        cr_assert_str_eq (msg.type, WIRE_JOB);
        Strata__V1__Job *job = (Strata__V1__Job *) wire_unpack (&strata__v1__job__descriptor, msg.payload, NULL);
        wire_msg_reset (&msg);
        cr_assert_not_null (job, "JOB does not decode");
        return job;
    }
    cr_assert_fail ("no JOB within %d ms", WAIT_MS);
    return NULL;
}

//  The job's result, as a preprocess worker returns it: the journaled batch's events
//  and items, its raw records as rejects with their reasons.
static void
s_answer (zsock_t *w, const Strata__V1__Job *job)
{
    Strata__V1__EventBatch *batch = strata__v1__event_batch__unpack (NULL, job->payload.len, job->payload.data);
    cr_assert_not_null (batch, "the job's payload is not the batch journaled");
    Strata__V1__JobResult res = STRATA__V1__JOB_RESULT__INIT;
    res.job_id = job->job_id;
    res.sequence = job->sequence;
    res.batch_id = batch->batch_id;
    res.n_events = batch->n_events;
    res.events = batch->events;
    res.n_items = batch->n_items;
    res.items = batch->items;
    Strata__V1__Reject rejects[4], *rejectp[4];
    cr_assert_leq (batch->n_raw, 4);
    for (size_t i = 0; i < batch->n_raw; i++) {
        strata__v1__reject__init (&rejects[i]);
        rejects[i].kind = "raw";
        rejects[i].reason = batch->raw[i]->reason;
        rejects[i].text = batch->raw[i]->text;
        rejects[i].batch_id = batch->batch_id;
        rejects[i].line = batch->raw[i]->line;
        rejectp[i] = &rejects[i];
    }
    res.n_rejects = batch->n_raw;
    res.rejects = rejectp;
    cr_assert_eq (wire_send (w, NULL, WIRE_RESULT, &res.base), 0);
    strata__v1__event_batch__free_unpacked (batch, NULL);
}

//  Sends the batch; worker w gets its journal entry as a JOB and answers it.
static void
s_apply (zsock_t *w, batch_t *b)
{
    Strata__V1__Ack *ack = s_send_batch (b);
    uint64_t seq = ack->sequence;
    strata__v1__ack__free_unpacked (ack, NULL);
    Strata__V1__Job *job = s_next_job (w);
    cr_expect_eq (job->sequence, seq, "the job is the batch's journal entry");
    s_answer (w, job);
    strata__v1__job__free_unpacked (job, NULL);
}

//  The state the broker reports for a batch id (STATUS).
static Strata__V1__BatchState
s_status (const char *batch_id, uint64_t *accepted)
{
    Strata__V1__BatchStatusRequest req = STRATA__V1__BATCH_STATUS_REQUEST__INIT;
    char *ids[] = { (char *) batch_id };
    req.n_batch_ids = 1;
    req.batch_ids = ids;
    cr_assert_eq (wire_send (s_producer, NULL, WIRE_STATUS, &req.base), 0);
    Strata__V1__BatchStatusReply *reply = (Strata__V1__BatchStatusReply *) s_expect (
        s_producer, WIRE_STATUS_REPLY, &strata__v1__batch_status_reply__descriptor, false);
    cr_assert_eq (reply->n_acks, 1);
    Strata__V1__BatchState state = reply->acks[0]->state;
    if (accepted)
        *accepted = reply->acks[0]->accepted;
    strata__v1__batch_status_reply__free_unpacked (reply, NULL);
    return state;
}

static const char *const s_three[][3] = { { "u1", "i1", "e1" }, { "u1", "i2", "e2" }, { "u2", "i1", "e3" } };

//  A broker with one preprocess worker, which has applied "batch-1": s_three's
//  events, the catalogue item i1, and a raw record when with_raw. The stats once
//  its events are stored (caller frees).
static Strata__V1__Stats *
s_start_applied (bool with_raw)
{
    s_start (NULL);
    zsock_t *w = s_worker ("pre-1", STRATA__V1__ROLE__PREPROCESS, 4);
    batch_t b;
    s_batch (&b, "batch-1", s_three, 3, "Rose Face Cream", with_raw);
    s_apply (w, &b);
    return s_wait_events (3);
}

Test (broker, binds_ephemeral_ports_and_names_them)
{
    s_start (NULL);
    const char *names[] = { "ingest", "workers", "api" };
    for (size_t i = 0; i < 3; i++) {
        const char *ep = broker_endpoint (s_broker, names[i]);
        cr_assert_not_null (ep);
        cr_expect (!strncmp (ep, "tcp://127.0.0.1:", 16) && !strchr (ep, '!') && atoi (ep + 16) > 0,
                   "%s endpoint %s is not a bound port", names[i], ep);
    }
    cr_expect_null (broker_endpoint (s_broker, "trainer"));
    Strata__V1__Stats *st = s_stats ();
    cr_expect_eq (st->events, 0);
    cr_expect_eq (st->n_workers, 0);
    strata__v1__stats__free_unpacked (st, NULL);
}

Test (broker, a_batch_is_acked_once_journaled_and_a_resent_id_is_known)
{
    s_start (NULL);
    batch_t b;
    s_batch (&b, "batch-1", s_three, 3, NULL, false);
    Strata__V1__Ack *ack = s_send_batch (&b);
    cr_expect_eq (ack->state, STRATA__V1__BATCH_STATE__JOURNALED);
    uint64_t seq = ack->sequence;
    cr_expect_gt (seq, 0);
    strata__v1__ack__free_unpacked (ack, NULL);

    //  The ack waited for the journal's sync: nothing is left unsynced, one sync ran,
    //  and with no worker the entry waits in the journal.
    Strata__V1__Stats *st = s_stats ();
    cr_expect_eq (st->journal_pending, 1);
    cr_expect_geq (st->journal_syncs, 1);
    cr_expect_eq (st->journal_unsynced, 0);
    cr_expect_eq (st->batches, 0, "nothing applied without a worker");
    strata__v1__stats__free_unpacked (st, NULL);
    cr_expect_eq (s_status ("batch-1", NULL), STRATA__V1__BATCH_STATE__JOURNALED);
    cr_expect_eq (s_status ("never-sent", NULL), STRATA__V1__BATCH_STATE__BATCH_STATE_UNKNOWN);

    //  Sent again (its producer missed the ack): known, not journaled twice.
    ack = s_send_batch (&b);
    cr_expect_eq (ack->state, STRATA__V1__BATCH_STATE__JOURNALED);
    cr_expect_eq (ack->sequence, seq);
    strata__v1__ack__free_unpacked (ack, NULL);
    st = s_stats ();
    cr_expect_eq (st->journal_pending, 1);
    strata__v1__stats__free_unpacked (st, NULL);

    //  What was acked is in the store once the broker is gone.
    s_stop ();
    knowledge_t *kb = knowledge_open (s_dir);
    cr_assert_not_null (kb);
    cr_expect_eq (knowledge_journal_pending (kb), 1);
    knowledge_destroy (&kb);
}

Test (broker, a_preprocess_worker_gets_the_job_and_its_result_is_stored)
{
    Strata__V1__Stats *st = s_start_applied (true);
    cr_expect_eq (st->users, 2);
    cr_expect_eq (st->items, 2);
    cr_expect_eq (st->catalogue_items, 1);
    cr_expect_eq (st->rejected, 1);
    cr_expect_eq (st->batches, 1);
    cr_expect_eq (st->journal_pending, 0);
    cr_assert_eq (st->n_reject_reasons, 1);
    cr_expect_str_eq (st->reject_reasons[0]->reason, "unparseable line");
    cr_assert_eq (st->n_workers, 1);
    cr_expect_str_eq (st->workers[0]->worker_id, "pre-1");
    cr_expect_eq (st->workers[0]->role, STRATA__V1__ROLE__PREPROCESS);
    cr_expect_eq (st->workers[0]->inflight, 0);
    strata__v1__stats__free_unpacked (st, NULL);
    uint64_t accepted = 0;
    cr_expect_eq (s_status ("batch-1", &accepted), STRATA__V1__BATCH_STATE__APPLIED);
    cr_expect_eq (accepted, 4, "three events and one item");

    //  The dead letter, with where it came from.
    Strata__V1__RejectsRequest rq = STRATA__V1__REJECTS_REQUEST__INIT;
    cr_assert_eq (wire_send (s_client, NULL, WIRE_REJECTS, &rq.base), 0);
    Strata__V1__RejectsReply *rr = (Strata__V1__RejectsReply *) s_expect (
        s_client, WIRE_REJECTS_REPLY, &strata__v1__rejects_reply__descriptor, false);
    cr_assert_eq (rr->n_rejects, 1);
    cr_expect_str_eq (rr->rejects[0]->batch_id, "batch-1");
    cr_expect_eq (rr->rejects[0]->line, 7);
    strata__v1__rejects_reply__free_unpacked (rr, NULL);
}

//  A bad message on one of the broker's sockets, and the Error it must get.
typedef struct {
    const char *socket;    // "ingest", "api" or "workers"
    const char *frames[3];
    size_t nframes;
    Strata__V1__ErrorCode code;
} bad_message_t;

static const bad_message_t s_bad[] = {
    { "ingest", { WIRE_PROTOCOL, WIRE_BATCH }, 2, STRATA__V1__ERROR_CODE__BAD_FRAMING },
    { "ingest", { "STRATA0", WIRE_BATCH, "" }, 3, STRATA__V1__ERROR_CODE__BAD_FRAMING },
    { "ingest", { WIRE_PROTOCOL, WIRE_BATCH, "\xff\xff\xff" }, 3, STRATA__V1__ERROR_CODE__BAD_PAYLOAD },
    { "ingest", { WIRE_PROTOCOL, WIRE_BATCH, "" }, 3, STRATA__V1__ERROR_CODE__INVALID },   // no batch id
    { "ingest", { WIRE_PROTOCOL, "NOPE", "" }, 3, STRATA__V1__ERROR_CODE__UNKNOWN_TYPE },
    { "api", { WIRE_PROTOCOL, WIRE_BATCH, "" }, 3, STRATA__V1__ERROR_CODE__UNKNOWN_TYPE },  // batches go to ingest
    { "api", { WIRE_PROTOCOL, WIRE_HISTORY, "\xff\xff\xff" }, 3, STRATA__V1__ERROR_CODE__BAD_PAYLOAD },
    { "api", { WIRE_PROTOCOL, WIRE_CATALOGUE, "\xff\xff\xff" }, 3, STRATA__V1__ERROR_CODE__BAD_PAYLOAD },
    { "api", { WIRE_PROTOCOL, WIRE_STATUS, "\xff\xff\xff" }, 3, STRATA__V1__ERROR_CODE__BAD_PAYLOAD },
    { "workers", { WIRE_PROTOCOL, WIRE_READY, "" }, 3, STRATA__V1__ERROR_CODE__INVALID },   // no role
    { "workers", { WIRE_PROTOCOL, WIRE_RESULT, "\xff\xff\xff" }, 3, STRATA__V1__ERROR_CODE__BAD_PAYLOAD },
    { "workers", { WIRE_PROTOCOL, "NOPE", "" }, 3, STRATA__V1__ERROR_CODE__UNKNOWN_TYPE },
};

Test (broker, a_malformed_message_gets_an_error_and_is_counted)
{
    s_start (NULL);
    size_t n = sizeof s_bad / sizeof s_bad[0];
    for (size_t i = 0; i < n; i++) {
        const bad_message_t *bad = &s_bad[i];
        zsock_t *sock = s_connect (bad->socket);
        zmsg_t *m = zmsg_new ();
        for (size_t f = 0; f < bad->nframes; f++)
            zmsg_addmem (m, bad->frames[f], strlen (bad->frames[f]));
        cr_assert_eq (zmsg_send (&m, sock), 0);
        cr_expect_eq (s_expect_error (sock), bad->code, "case %zu (%s %s)", i, bad->socket, bad->frames[1]);
        zsock_destroy (&sock);
    }
    Strata__V1__Stats *st = s_stats ();
    cr_expect_eq (st->protocol_errors, n);
    strata__v1__stats__free_unpacked (st, NULL);

    //  And it still takes a good batch.
    batch_t b;
    s_batch (&b, "after-abuse", s_three, 1, NULL, false);
    Strata__V1__Ack *ack = s_send_batch (&b);
    cr_expect_eq (ack->state, STRATA__V1__BATCH_STATE__JOURNALED);
    strata__v1__ack__free_unpacked (ack, NULL);
}

Test (broker, a_worker_that_stops_heartbeating_has_its_job_given_to_another)
{
    const char *fast[] = { "--heartbeat-ms=100", "--liveness=2", NULL };
    s_start (fast);
    zsock_t *silent = s_worker ("silent", STRATA__V1__ROLE__PREPROCESS, 1);
    batch_t b;
    s_batch (&b, "batch-1", s_three, 3, NULL, false);
    Strata__V1__Ack *ack = s_send_batch (&b);
    strata__v1__ack__free_unpacked (ack, NULL);
    Strata__V1__Job *first = s_next_job (silent);

    //  From now on `silent` answers nothing; `alive` answers heartbeats and gets the
    //  same journal entry once the broker gives up on the first.
    zsock_t *alive = s_worker ("alive", STRATA__V1__ROLE__PREPROCESS, 1);
    Strata__V1__Job *second = s_next_job (alive);
    cr_expect_eq (second->sequence, first->sequence);
    s_answer (alive, second);
    Strata__V1__Stats *st = s_wait_events (3);
    cr_assert_eq (st->n_workers, 1, "the silent worker is dropped");
    cr_expect_str_eq (st->workers[0]->worker_id, "alive");
    strata__v1__stats__free_unpacked (st, NULL);

    //  The first worker's late result changes nothing, and it is told to register again.
    s_answer (silent, first);
    s_expect (silent, WIRE_DISCONNECT, NULL, true);
    st = s_stats ();
    cr_expect_eq (st->events, 3);
    cr_expect_eq (st->duplicates, 0);
    cr_expect_eq (st->batches, 1);
    strata__v1__stats__free_unpacked (st, NULL);
    strata__v1__job__free_unpacked (first, NULL);
    strata__v1__job__free_unpacked (second, NULL);
}

Test (broker, a_result_is_taken_only_from_the_worker_holding_the_job)
{
    s_start (NULL);
    zsock_t *holder = s_worker ("holder", STRATA__V1__ROLE__PREPROCESS, 1);
    batch_t b;
    s_batch (&b, "batch-1", s_three, 3, NULL, false);
    Strata__V1__Ack *ack = s_send_batch (&b);
    strata__v1__ack__free_unpacked (ack, NULL);
    Strata__V1__Job *job = s_next_job (holder);
    //  Another registered worker and a peer that never registered answer the holder's
    //  job: neither is applied, and the journal entry stays.
    zsock_t *other = s_worker ("other", STRATA__V1__ROLE__PREPROCESS, 1);
    s_wait_workers (2);
    s_answer (other, job);
    cr_expect_eq (s_expect_error (other), STRATA__V1__ERROR_CODE__INVALID);
    zsock_t *stranger = s_connect ("workers");
    s_answer (stranger, job);
    s_expect (stranger, WIRE_DISCONNECT, NULL, true);
    Strata__V1__Stats *st = s_stats ();
    cr_expect_eq (st->events, 0, "a result from a peer not holding the job was applied");
    cr_expect_eq (st->journal_pending, 1);
    cr_expect_eq (st->protocol_errors, 2);
    strata__v1__stats__free_unpacked (st, NULL);
    //  The holder's answer is.
    s_answer (holder, job);
    st = s_wait_events (3);
    cr_expect_eq (st->journal_pending, 0);
    strata__v1__stats__free_unpacked (st, NULL);
    strata__v1__job__free_unpacked (job, NULL);
    zsock_destroy (&stranger);
}

Test (broker, history_and_catalogue_exports_return_what_was_applied)
{
    strata__v1__stats__free_unpacked (s_start_applied (false), NULL);

    Strata__V1__HistoryRequest hq = STRATA__V1__HISTORY_REQUEST__INIT;
    hq.with_ids = true;
    cr_assert_eq (wire_send (s_client, NULL, WIRE_HISTORY, &hq.base), 0);
    Strata__V1__HistoryReply *h = (Strata__V1__HistoryReply *) s_expect (
        s_client, WIRE_HISTORY_REPLY, &strata__v1__history_reply__descriptor, false);
    cr_expect (h->done);
    cr_expect_eq (h->user_count, 2);
    cr_expect_eq (h->item_count, 2);
    cr_assert_eq (h->n_users, 2);
    for (size_t i = 0; i < h->n_users; i++) {
        const Strata__V1__UserHistory *u = h->users[i];
        bool u1 = !strcmp (u->user_id, "u1");
        cr_expect (u1 || !strcmp (u->user_id, "u2"), "unknown user %s", u->user_id);
        cr_expect_eq (u->n_events, u1 ? 2u : 1u, "%s's history", u->user_id);
        for (size_t k = 0; k < u->n_events; k++)
            cr_expect_eq (u->events[k]->type, STRATA__V1__EVENT_TYPE__VIEW);
    }
    strata__v1__history_reply__free_unpacked (h, NULL);

    Strata__V1__CatalogueRequest cq = STRATA__V1__CATALOGUE_REQUEST__INIT;
    cr_assert_eq (wire_send (s_client, NULL, WIRE_CATALOGUE, &cq.base), 0);
    Strata__V1__CatalogueReply *c = (Strata__V1__CatalogueReply *) s_expect (
        s_client, WIRE_CATALOGUE_REPLY, &strata__v1__catalogue_reply__descriptor, false);
    cr_expect (c->done);
    cr_expect_eq (c->item_count, 2);
    size_t described = 0;
    for (size_t i = 0; i < c->n_items; i++)
        if (!strcmp (c->items[i]->item_id, "i1")) {
            cr_expect_str_eq (c->items[i]->title, "Rose Face Cream");
            described++;
        }
    cr_expect_eq (described, 1, "the catalogue item i1 is exported with its title");
    strata__v1__catalogue_reply__free_unpacked (c, NULL);
}

Test (broker, stops_cleanly_and_tells_its_workers)
{
    s_start (NULL);
    zsock_t *w = s_worker ("pre-1", STRATA__V1__ROLE__PREPROCESS, 4);
    s_wait_workers (1);
    int64_t t0 = zclock_mono ();
    s_stop ();
    cr_expect_lt (zclock_mono () - t0, 5000, "the loop ends at once on $TERM");
    s_expect (w, WIRE_DISCONNECT, NULL, true);
}

Test (broker, does_not_start_on_an_endpoint_in_use)
{
    s_start (NULL);
    //  A second broker on the first one's ingest port: NULL, and nothing left behind.
    char *second_dir = harness_tmpdir ();
    cr_assert_not_null (second_dir);
    broker_config_t cfg = s_cfg;
    cfg.dir = second_dir;
    cfg.ingest = (char *) broker_endpoint (s_broker, "ingest");
    broker_t *second = broker_new (&cfg);
    cr_expect_null (second);
    broker_destroy (&second);
    harness_rmtree (second_dir);
    free (second_dir);
    Strata__V1__Stats *st = s_stats ();   // the first one still serves
    strata__v1__stats__free_unpacked (st, NULL);
}
