/*  Integration: bad input against a running broker.

    Every kind of bad input a producer can send, over a real TCP connection: framing
    errors, undecodable protobuf, oversized frames, unknown message types, invalid
    batches, and records that decode but break validation rules. Each must get an error
    reply or a counted reject with its reason, and the broker must keep serving
    afterwards (a valid batch is still acknowledged and applied).
*/
#include <criterion/criterion.h>
#include <czmq.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "wire.h"

static hcluster_t s_cluster;

static void
s_setup (void)
{
    const char *extra[] = { "--max-frame=1M", "--max-batch=5000", NULL };
    cr_assert_eq (hcluster_start (&s_cluster, extra), 0, "broker did not start");
    hcluster_add_worker (&s_cluster);
}

static void
s_teardown (void)
{
    hcluster_stop (&s_cluster);   // after a failed assertion; normally s_finish did it
}

//  Ends a test: stops the processes and fails on any sanitizer report in their logs
//  (a fini cannot fail a test, so every test calls this last).
static void
s_finish (void)
{
    cr_expect_eq (hcluster_stop (&s_cluster), 0, "sanitizer reports in the broker or worker logs");
}

static zsock_t *
s_connect (void)
{
    zsock_t *s = zsock_new (ZMQ_DEALER);
    zsock_set_linger (s, 0);
    zsock_set_rcvtimeo (s, 5000);
    cr_assert_eq (zsock_connect (s, "%s", s_cluster.ingest), 0);
    return s;
}

//  Receives one reply and returns its type; error details into *code/msg.
static char *
s_reply (zsock_t *s, int *code, char *msg, size_t cap)
{
    wire_msg_t m;
    int rc = wire_recv (s, false, 0, &m);
    cr_assert_eq (rc, 0, "no well-formed reply from the broker (rc %d)", rc);
    char *type = strdup (m.type);
    *code = -1;
    if (!strcmp (m.type, WIRE_ERROR)) {
        Strata__V1__Error *e = (Strata__V1__Error *) wire_unpack (&strata__v1__error__descriptor, m.payload, NULL);
        cr_assert_not_null (e, "ERROR reply does not decode");
        *code = (int) e->code;
        snprintf (msg, cap, "%s", e->message);
        strata__v1__error__free_unpacked (e, NULL);
    }
    wire_msg_reset (&m);
    return type;
}

static void
s_expect_error (zsock_t *s, int want_code, const char *want_text)
{
    int code;
    char msg[512] = "";
    char *type = s_reply (s, &code, msg, sizeof msg);
    cr_expect_str_eq (type, WIRE_ERROR);
    cr_expect_eq (code, want_code, "error code %d (%s), wanted %d", code, msg, want_code);
    cr_expect (strstr (msg, want_text) != NULL, "error '%s' does not mention '%s'", msg, want_text);
    free (type);
}

static void
s_send_frames (zsock_t *s, int n, const char *const *frames, const size_t *sizes)
{
    zmsg_t *m = zmsg_new ();
    for (int i = 0; i < n; i++)
        zmsg_addmem (m, frames[i], sizes[i]);
    zmsg_send (&m, s);
}

static void
s_send_batch (zsock_t *s, Strata__V1__EventBatch *b)
{
    cr_assert_eq (wire_send (s, NULL, WIRE_BATCH, &b->base), 0);
}

//  Expects an ACK for the batch; returns its journal sequence.
static uint64_t
s_expect_ack (zsock_t *s, const char *batch_id)
{
    wire_msg_t m;
    cr_assert_eq (wire_recv (s, false, 0, &m), 0, "no reply");
    cr_assert_str_eq (m.type, WIRE_ACK, "wanted ACK, got %s", m.type);
    Strata__V1__Ack *a = (Strata__V1__Ack *) wire_unpack (&strata__v1__ack__descriptor, m.payload, NULL);
    cr_assert_not_null (a);
    cr_expect_str_eq (a->batch_id, batch_id);
    uint64_t seq = a->sequence;
    strata__v1__ack__free_unpacked (a, NULL);
    wire_msg_reset (&m);
    return seq;
}

TestSuite (malformed, .init = s_setup, .fini = s_teardown, .timeout = 120);

Test (malformed, framing_errors_get_error_replies)
{
    zsock_t *s = s_connect ();
    //  Two frames instead of three.
    const char *f2[] = { WIRE_PROTOCOL, WIRE_BATCH };
    size_t z2[] = { strlen (WIRE_PROTOCOL), strlen (WIRE_BATCH) };
    s_send_frames (s, 2, f2, z2);
    s_expect_error (s, STRATA__V1__ERROR_CODE__BAD_FRAMING, "expected frames");
    //  Wrong protocol frame.
    const char *f3[] = { "HTTP/1.1", WIRE_BATCH, "x" };
    size_t z3[] = { 8, strlen (WIRE_BATCH), 1 };
    s_send_frames (s, 3, f3, z3);
    s_expect_error (s, STRATA__V1__ERROR_CODE__BAD_FRAMING, "expected frames");
    //  Unknown message type.
    const char *f4[] = { WIRE_PROTOCOL, "TELEPORT", "" };
    size_t z4[] = { strlen (WIRE_PROTOCOL), 8, 0 };
    s_send_frames (s, 3, f4, z4);
    s_expect_error (s, STRATA__V1__ERROR_CODE__UNKNOWN_TYPE, "TELEPORT");
    zsock_destroy (&s);
    cr_expect_geq (hcluster_stat (&s_cluster, "protocol_errors"), 3);
    s_finish ();
}

Test (malformed, garbage_and_truncated_protobuf)
{
    zsock_t *s = s_connect ();
    const char garbage[] = "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01 this is not protobuf";
    cr_assert_eq (wire_send_bytes (s, NULL, WIRE_BATCH, garbage, sizeof garbage - 1), 0);
    s_expect_error (s, STRATA__V1__ERROR_CODE__BAD_PAYLOAD, "not a valid EventBatch");

    //  A valid batch cut in half.
    Strata__V1__Event ev = STRATA__V1__EVENT__INIT;
    Strata__V1__Event *evp = &ev;
    ev.event_id = "e1";
    ev.user_id = "u1";
    ev.item_id = "i1";
    ev.type = STRATA__V1__EVENT_TYPE__VIEW;
    ev.timestamp_ms = 1700000000000;
    Strata__V1__EventBatch b = STRATA__V1__EVENT_BATCH__INIT;
    b.batch_id = "truncated-batch";
    b.n_events = 1;
    b.events = &evp;
    size_t len = strata__v1__event_batch__get_packed_size (&b);
    uint8_t buf[256];
    strata__v1__event_batch__pack (&b, buf);
    cr_assert_eq (wire_send_bytes (s, NULL, WIRE_BATCH, buf, len - 5), 0);
    s_expect_error (s, STRATA__V1__ERROR_CODE__BAD_PAYLOAD, "not a valid EventBatch");
    zsock_destroy (&s);
    s_finish ();
}

Test (malformed, oversized_frame_and_batch)
{
    zsock_t *s = s_connect ();
    size_t big = 2u << 20;   // broker runs with --max-frame=1M
    char *blob = calloc (1, big);
    cr_assert_eq (wire_send_bytes (s, NULL, WIRE_BATCH, blob, big), 0);
    free (blob);
    s_expect_error (s, STRATA__V1__ERROR_CODE__TOO_LARGE, "limit");

    //  Small in bytes but over --max-batch records.
    size_t n = 6000;
    Strata__V1__RawRecord *raw = calloc (n, sizeof *raw);
    Strata__V1__RawRecord **rawp = calloc (n, sizeof *rawp);
    for (size_t i = 0; i < n; i++) {
        strata__v1__raw_record__init (&raw[i]);
        rawp[i] = &raw[i];
    }
    Strata__V1__EventBatch b = STRATA__V1__EVENT_BATCH__INIT;
    b.batch_id = "too-many";
    b.n_raw = n;
    b.raw = rawp;
    s_send_batch (s, &b);
    s_expect_error (s, STRATA__V1__ERROR_CODE__TOO_LARGE, "limit is 5000");
    free (raw);
    free (rawp);

    //  Empty batch id and empty batch.
    Strata__V1__EventBatch e = STRATA__V1__EVENT_BATCH__INIT;
    e.batch_id = "";
    s_send_batch (s, &e);
    s_expect_error (s, STRATA__V1__ERROR_CODE__INVALID, "batch_id");
    e.batch_id = "empty";
    s_send_batch (s, &e);
    s_expect_error (s, STRATA__V1__ERROR_CODE__INVALID, "no records");
    zsock_destroy (&s);
    s_finish ();
}

Test (malformed, invalid_records_are_counted_rejects_with_reasons)
{
    zsock_t *s = s_connect ();
    struct {
        const char *id, *user, *item, *type_name;
        int type;
        int64_t ts;
    } cases[] = {
        { "ok-1", "u1", "i1", "", STRATA__V1__EVENT_TYPE__VIEW, 1700000000000 },      // valid
        { "ok-2", "u2", "i1", "add_to_cart", 0, 1700000000 },                         // valid, seconds
        { "bad-type", "u1", "i1", "teleport", 0, 1700000000000 },                     // unknown type name
        { "bad-type-num", "u1", "i1", "", 42, 1700000000000 },                        // unknown type number
        { "bad-user", "", "i1", "view", 0, 1700000000000 },                           // empty user id
        { "bad-item", "u1", "", "view", 0, 1700000000000 },                           // empty item id
        { "", "u1", "i1", "view", 0, 1700000000000 },                                 // empty event id
        { "bad-ts", "u1", "i1", "view", 0, -5 },                                      // timestamp
    };
    size_t n = sizeof cases / sizeof cases[0];
    Strata__V1__Event ev[8], *evp[8];
    for (size_t i = 0; i < n; i++) {
        strata__v1__event__init (&ev[i]);
        ev[i].event_id = (char *) cases[i].id;
        ev[i].user_id = (char *) cases[i].user;
        ev[i].item_id = (char *) cases[i].item;
        ev[i].type_name = (char *) cases[i].type_name;
        ev[i].type = (Strata__V1__EventType) cases[i].type;
        ev[i].timestamp_ms = cases[i].ts;
        evp[i] = &ev[i];
    }
    Strata__V1__RawRecord raw = STRATA__V1__RAW_RECORD__INIT;
    Strata__V1__RawRecord *rawp = &raw;
    raw.source = "events.csv";
    raw.line = 17;
    raw.text = "\"unterminated,quote";
    raw.reason = "unterminated quoted CSV field";
    Strata__V1__EventBatch b = STRATA__V1__EVENT_BATCH__INIT;
    b.batch_id = "mixed";
    b.n_events = n;
    b.events = evp;
    b.n_raw = 1;
    b.raw = &rawp;
    s_send_batch (s, &b);
    s_expect_ack (s, "mixed");
    zsock_destroy (&s);

    cr_assert (hcluster_wait_stat (&s_cluster, "batches", 1, 20000), "batch was not applied");
    json_t *st = hcluster_stats (&s_cluster);
    cr_expect_eq (json_integer_value (json_object_get (st, "events")), 2);
    cr_expect_eq (json_integer_value (json_object_get (st, "rejected")), 7);
    json_t *reasons = json_object_get (st, "reject_reasons");
    cr_expect_eq (json_integer_value (json_object_get (reasons, "unknown event type")), 2);
    cr_expect_eq (json_integer_value (json_object_get (reasons, "empty user_id")), 1);
    cr_expect_eq (json_integer_value (json_object_get (reasons, "empty item_id")), 1);
    cr_expect_eq (json_integer_value (json_object_get (reasons, "empty event_id")), 1);
    cr_expect_eq (json_integer_value (json_object_get (reasons, "timestamp out of range")), 1);
    cr_expect_eq (json_integer_value (json_object_get (reasons, "unterminated quoted CSV field")), 1);
    json_decref (st);
    s_finish ();
}

Test (malformed, broker_keeps_serving_after_abuse)
{
    zsock_t *s = s_connect ();
    for (int i = 0; i < 50; i++) {
        char junk[64];
        snprintf (junk, sizeof junk, "junk %d \x80\x81", i);
        wire_send_bytes (s, NULL, WIRE_BATCH, junk, strlen (junk));
        s_expect_error (s, STRATA__V1__ERROR_CODE__BAD_PAYLOAD, "EventBatch");
    }
    Strata__V1__Event ev = STRATA__V1__EVENT__INIT;
    Strata__V1__Event *evp = &ev;
    ev.event_id = "after-abuse";
    ev.user_id = "u9";
    ev.item_id = "i9";
    ev.type = STRATA__V1__EVENT_TYPE__PURCHASE;
    ev.timestamp_ms = 1700000000000;
    Strata__V1__EventBatch b = STRATA__V1__EVENT_BATCH__INIT;
    b.batch_id = "still-serving";
    b.n_events = 1;
    b.events = &evp;
    s_send_batch (s, &b);
    s_expect_ack (s, "still-serving");
    //  Re-sending the same batch id gets an ack and adds nothing.
    s_send_batch (s, &b);
    s_expect_ack (s, "still-serving");
    zsock_destroy (&s);
    cr_assert (hcluster_wait_stat (&s_cluster, "events", 1, 20000));
    cr_expect_eq (hcluster_stat (&s_cluster, "events"), 1);
    cr_expect_eq (hcluster_stat (&s_cluster, "batches"), 1, "a re-sent batch was journaled twice");
    cr_expect_geq (hcluster_stat (&s_cluster, "protocol_errors"), 50);
    s_finish ();
}

Test (malformed, a_batch_sent_again_before_its_ack_is_journaled_once)
{
    //  A producer that times out and sends again on a new connection: the copies arrive
    //  while the first is being journaled (its ack waits for the sync), after, or in the
    //  same read. Every copy gets the same ack; the events are stored once.
    enum { COPIES = 24 };
    zsock_t *s[COPIES];
    Strata__V1__Event ev[3];
    Strata__V1__Event *evp[3];
    char ids[3][16];
    for (int i = 0; i < 3; i++) {
        strata__v1__event__init (&ev[i]);
        snprintf (ids[i], sizeof ids[i], "again-%d", i);
        ev[i].event_id = ids[i];
        ev[i].user_id = "u1";
        ev[i].item_id = "i1";
        ev[i].type = STRATA__V1__EVENT_TYPE__VIEW;
        ev[i].timestamp_ms = 1700000000000 + i;
        evp[i] = &ev[i];
    }
    Strata__V1__EventBatch b = STRATA__V1__EVENT_BATCH__INIT;
    b.batch_id = "sent-again";
    b.n_events = 3;
    b.events = evp;
    for (int i = 0; i < COPIES; i++)
        s[i] = s_connect ();
    zclock_sleep (100);   // all connected
    //  Two at once, then one every 0.2 ms: a sync takes longer than that on a disk.
    for (int i = 0; i < COPIES; i++) {
        s_send_batch (s[i], &b);
        if (i > 0)
            usleep (200);
    }
    uint64_t first = s_expect_ack (s[0], "sent-again");
    for (int i = 1; i < COPIES; i++)
        cr_expect_eq (s_expect_ack (s[i], "sent-again"), first, "copy %d got another journal sequence", i);
    for (int i = 0; i < COPIES; i++)
        zsock_destroy (&s[i]);
    cr_assert (hcluster_wait_stat (&s_cluster, "events", 3, 20000));
    zclock_sleep (200);
    cr_expect_eq (hcluster_stat (&s_cluster, "events"), 3);
    cr_expect_eq (hcluster_stat (&s_cluster, "batches"), 1, "a batch sent again was journaled twice");
    cr_expect_eq (hcluster_stat (&s_cluster, "duplicates"), 0);
    s_finish ();
}
