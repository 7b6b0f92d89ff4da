/*  Unit: the wire protocol — framing over real ZeroMQ sockets (inproc) and protobuf
    round trips of every message type, including forward compatibility (a message with
    fields this build does not know still decodes).
*/
#include <criterion/criterion.h>
#include <czmq.h>
#include <string.h>

#include "wire.h"

typedef struct {
    zsock_t *router, *dealer;
} pair_t;

static pair_t
s_pair (void)
{
    static int n = 0;
    char ep[64];
    snprintf (ep, sizeof ep, "inproc://wire-%d-%d", getpid (), n++);
    pair_t p = { zsock_new_router (ep), zsock_new_dealer (ep) };
    cr_assert (p.router && p.dealer);
    zsock_set_rcvtimeo (p.router, 2000);
    zsock_set_rcvtimeo (p.dealer, 2000);
    return p;
}

static void
s_pair_destroy (pair_t *p)
{
    zsock_destroy (&p->router);
    zsock_destroy (&p->dealer);
}

Test (wire, batch_round_trip_through_router_and_back)
{
    pair_t p = s_pair ();
    Strata__V1__Attribute attr = STRATA__V1__ATTRIBUTE__INIT, *attrp = &attr;
    attr.key = "material";
    attr.value = "棉 cotton";
    char *cats[] = { "beauty", "skin care" };
    Strata__V1__Item item = STRATA__V1__ITEM__INIT, *itemp = &item;
    item.item_id = "i1";
    item.title = "Rose Serum 玫瑰精华";
    item.brand = "acme";
    item.n_category = 2;
    item.category = cats;
    item.price = 12.5;
    item.has_price = 1;
    item.n_attributes = 1;
    item.attributes = &attrp;
    Strata__V1__Event ev = STRATA__V1__EVENT__INIT, *evp = &ev;
    ev.event_id = "e1";
    ev.user_id = "u1";
    ev.item_id = "i1";
    ev.type = STRATA__V1__EVENT_TYPE__PURCHASE;
    ev.timestamp_ms = 1700000000123;
    ev.value = 2;
    ev.session = "s1";
    Strata__V1__RawRecord raw = STRATA__V1__RAW_RECORD__INIT, *rawp = &raw;
    raw.source = "f.csv";
    raw.line = 9;
    raw.text = "a,\"b";
    raw.reason = "malformed";
    Strata__V1__EventBatch b = STRATA__V1__EVENT_BATCH__INIT;
    b.batch_id = "b-1";
    b.producer = "p";
    b.n_events = 1;
    b.events = &evp;
    b.n_items = 1;
    b.items = &itemp;
    b.n_raw = 1;
    b.raw = &rawp;
    cr_assert_eq (wire_send (p.dealer, NULL, WIRE_BATCH, &b.base), 0);

    wire_msg_t m;
    cr_assert_eq (wire_recv (p.router, true, 0, &m), 0);
    cr_assert_not_null (m.routing);
    cr_assert_str_eq (m.type, WIRE_BATCH);
    Strata__V1__EventBatch *got = (Strata__V1__EventBatch *) wire_unpack (&strata__v1__event_batch__descriptor,
                                                                           m.payload, NULL);
    cr_assert_not_null (got);
    cr_expect_str_eq (got->batch_id, "b-1");
    cr_assert_eq (got->n_events, 1);
    cr_expect_str_eq (got->events[0]->event_id, "e1");
    cr_expect_eq (got->events[0]->type, STRATA__V1__EVENT_TYPE__PURCHASE);
    cr_expect_eq (got->events[0]->timestamp_ms, 1700000000123);
    cr_expect_eq (got->events[0]->value, 2);
    cr_assert_eq (got->n_items, 1);
    cr_expect_str_eq (got->items[0]->title, "Rose Serum 玫瑰精华");
    cr_expect_eq (got->items[0]->n_category, 2);
    cr_expect_str_eq (got->items[0]->category[1], "skin care");
    cr_expect_str_eq (got->items[0]->attributes[0]->value, "棉 cotton");
    cr_expect_eq (got->items[0]->price, 12.5);
    cr_expect_eq (got->raw[0]->line, 9);
    strata__v1__event_batch__free_unpacked (got, NULL);

    //  Reply to the routing id; the dealer sees an Ack.
    Strata__V1__Ack ack = STRATA__V1__ACK__INIT;
    ack.batch_id = "b-1";
    ack.state = STRATA__V1__BATCH_STATE__JOURNALED;
    ack.sequence = 42;
    cr_assert_eq (wire_send (p.router, m.routing, WIRE_ACK, &ack.base), 0);
    wire_msg_reset (&m);
    wire_msg_t r;
    cr_assert_eq (wire_recv (p.dealer, false, 0, &r), 0);
    cr_assert_str_eq (r.type, WIRE_ACK);
    Strata__V1__Ack *a = (Strata__V1__Ack *) wire_unpack (&strata__v1__ack__descriptor, r.payload, NULL);
    cr_assert_not_null (a);
    cr_expect_eq (a->sequence, 42);
    cr_expect_eq (a->state, STRATA__V1__BATCH_STATE__JOURNALED);
    strata__v1__ack__free_unpacked (a, NULL);
    wire_msg_reset (&r);
    s_pair_destroy (&p);
}

Test (wire, every_message_type_round_trips)
{
    //  Pack and unpack one populated instance of each cluster message.
    Strata__V1__WorkerHello hello = STRATA__V1__WORKER_HELLO__INIT;
    hello.worker_id = "w1";
    hello.role = STRATA__V1__ROLE__PREPROCESS;
    hello.capacity = 3;
    hello.pid = 77;
    Strata__V1__Job job = STRATA__V1__JOB__INIT;
    job.job_id = 5;
    job.sequence = 6;
    job.payload.data = (uint8_t *) "abc";
    job.payload.len = 3;
    Strata__V1__Reject rej = STRATA__V1__REJECT__INIT, *rejp = &rej;
    rej.kind = "event";
    rej.reason = "empty user_id";
    Strata__V1__JobResult res = STRATA__V1__JOB_RESULT__INIT;
    res.job_id = 5;
    res.sequence = 6;
    res.batch_id = "b";
    res.n_rejects = 1;
    res.rejects = &rejp;
    res.in_batch_duplicates = 2;
    Strata__V1__Error err = STRATA__V1__ERROR__INIT;
    err.code = STRATA__V1__ERROR_CODE__TOO_LARGE;
    err.message = "too big";
    err.ref = "b";
    Strata__V1__Stats st = STRATA__V1__STATS__INIT;
    st.events = 10;
    st.journal_pending = 3;

    const ProtobufCMessage *msgs[] = { &hello.base, &job.base, &res.base, &err.base, &st.base };
    for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
        size_t len = protobuf_c_message_get_packed_size (msgs[i]);
        uint8_t buf[512];
        cr_assert_lt (len, sizeof buf);
        protobuf_c_message_pack (msgs[i], buf);
        ProtobufCMessage *back = protobuf_c_message_unpack (msgs[i]->descriptor, NULL, len, buf);
        cr_assert_not_null (back, "%s does not round-trip", msgs[i]->descriptor->name);
        uint8_t buf2[512];
        size_t len2 = protobuf_c_message_pack (back, buf2);
        cr_expect_eq (len2, len);
        cr_expect_eq (memcmp (buf, buf2, len), 0, "%s changed in a round trip", msgs[i]->descriptor->name);
        protobuf_c_message_free_unpacked (back, NULL);
    }
}

Test (wire, unknown_fields_from_a_newer_peer_are_skipped)
{
    Strata__V1__Event ev = STRATA__V1__EVENT__INIT;
    ev.event_id = "e1";
    ev.user_id = "u1";
    uint8_t buf[256];
    size_t len = strata__v1__event__pack (&ev, buf);
    //  Append field 99 (varint 7) and field 100 (length-delimited "new"), as a later
    //  version of the protocol might send.
    const uint8_t extra[] = { 0x98, 0x06, 0x07, 0xa2, 0x06, 0x03, 'n', 'e', 'w' };
    memcpy (buf + len, extra, sizeof extra);
    Strata__V1__Event *back = strata__v1__event__unpack (NULL, len + sizeof extra, buf);
    cr_assert_not_null (back, "a message with unknown fields must still decode");
    cr_expect_str_eq (back->event_id, "e1");
    cr_expect_str_eq (back->user_id, "u1");
    strata__v1__event__free_unpacked (back, NULL);
}

Test (wire, framing_errors_keep_the_routing_id)
{
    pair_t p = s_pair ();
    //  Wrong protocol frame.
    zstr_sendm (p.dealer, "NOTSTRATA");
    zstr_sendm (p.dealer, WIRE_BATCH);
    zstr_send (p.dealer, "x");
    wire_msg_t m;
    cr_expect_eq (wire_recv (p.router, true, 0, &m), STRATA_EFRAMING);
    cr_expect_not_null (m.routing, "the routing id is kept so the sender gets an error");
    wire_msg_reset (&m);
    //  Too few frames.
    zstr_send (p.dealer, WIRE_PROTOCOL);
    cr_expect_eq (wire_recv (p.router, true, 0, &m), STRATA_EFRAMING);
    wire_msg_reset (&m);
    //  Too many frames.
    zstr_sendm (p.dealer, WIRE_PROTOCOL);
    zstr_sendm (p.dealer, WIRE_BATCH);
    zstr_sendm (p.dealer, "a");
    zstr_send (p.dealer, "b");
    cr_expect_eq (wire_recv (p.router, true, 0, &m), STRATA_EFRAMING);
    wire_msg_reset (&m);
    //  Payload over the limit.
    char big[2048] = { 0 };
    wire_send_bytes (p.dealer, NULL, WIRE_BATCH, big, sizeof big);
    cr_expect_eq (wire_recv (p.router, true, 1024, &m), STRATA_ETOOLARGE);
    cr_expect_not_null (m.routing);
    cr_expect_null (m.payload, "an oversized payload is dropped at once");
    wire_msg_reset (&m);
    //  An over-long type frame.
    zstr_sendm (p.dealer, WIRE_PROTOCOL);
    zstr_sendm (p.dealer, "A_MESSAGE_TYPE_THAT_IS_FAR_TOO_LONG");
    zstr_send (p.dealer, "");
    cr_expect_eq (wire_recv (p.router, true, 0, &m), STRATA_EFRAMING);
    wire_msg_reset (&m);
    s_pair_destroy (&p);
}

Test (wire, error_reply_carries_code_message_and_ref)
{
    pair_t p = s_pair ();
    zstr_send (p.dealer, "hello");
    zmsg_t *in = zmsg_recv (p.router);
    zframe_t *id = zmsg_pop (in);
    zmsg_destroy (&in);
    cr_assert_eq (wire_send_error (p.router, id, "batch-7", STRATA__V1__ERROR_CODE__INVALID, "bad %s %d", "thing", 3), 0);
    zframe_destroy (&id);
    wire_msg_t r;
    cr_assert_eq (wire_recv (p.dealer, false, 0, &r), 0);
    cr_assert_str_eq (r.type, WIRE_ERROR);
    Strata__V1__Error *e = (Strata__V1__Error *) wire_unpack (&strata__v1__error__descriptor, r.payload, NULL);
    cr_assert_not_null (e);
    cr_expect_eq (e->code, STRATA__V1__ERROR_CODE__INVALID);
    cr_expect_str_eq (e->message, "bad thing 3");
    cr_expect_str_eq (e->ref, "batch-7");
    strata__v1__error__free_unpacked (e, NULL);
    wire_msg_reset (&r);
    s_pair_destroy (&p);
}

Test (wire, garbage_payload_does_not_decode)
{
    zframe_t *f = zframe_new ("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11);
    cr_expect_null (wire_unpack (&strata__v1__event_batch__descriptor, f, NULL));
    zframe_destroy (&f);
    cr_expect_null (wire_unpack (&strata__v1__event_batch__descriptor, NULL, NULL));
}
