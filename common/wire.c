/*  wire: see wire.h. */
#define LOG_MODULE "wire"
#include "wire.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#include "log.h"

void
wire_msg_reset (wire_msg_t *msg)
{
    zframe_destroy (&msg->routing);
    zframe_destroy (&msg->payload);
    msg->type[0] = 0;
}

//  Splits a received message into msg (see wire_recv); takes m.
static int
s_parse (zmsg_t *m, bool router, size_t max_payload, wire_msg_t *msg)
{
    if (router)
        msg->routing = zmsg_pop (m);
    int rc = 0;
    size_t n = zmsg_size (m);
    zframe_t *proto = zmsg_pop (m);
    zframe_t *type = zmsg_pop (m);
    if (n != 3 || !proto || !type || zframe_size (proto) != strlen (WIRE_PROTOCOL)
        || memcmp (zframe_data (proto), WIRE_PROTOCOL, strlen (WIRE_PROTOCOL)) != 0
        || zframe_size (type) == 0 || zframe_size (type) >= sizeof msg->type) {
        rc = STRATA_EFRAMING;
    }
    else {
        memcpy (msg->type, zframe_data (type), zframe_size (type));
        msg->type[zframe_size (type)] = 0;
        msg->payload = zmsg_pop (m);
        if (max_payload && zframe_size (msg->payload) > max_payload) {
            zframe_destroy (&msg->payload);
            rc = STRATA_ETOOLARGE;
        }
    }
    zframe_destroy (&proto);
    zframe_destroy (&type);
    zmsg_destroy (&m);
    return rc;
}

int
wire_recv (zsock_t *sock, bool router, size_t max_payload, wire_msg_t *msg)
{
    memset (msg, 0, sizeof *msg);
    zmsg_t *m = zmsg_recv (sock);
    if (!m)
        return STRATA_EINTR;
    return s_parse (m, router, max_payload, msg);
}

int
wire_recv_ready (zsock_t *sock, bool router, size_t max_payload, wire_msg_t *msg)
{
    memset (msg, 0, sizeof *msg);
    zmq_msg_t first;
    zmq_msg_init (&first);
    if (zmq_msg_recv (&first, zsock_resolve (sock), ZMQ_DONTWAIT) < 0) {
        int e = errno;
        zmq_msg_close (&first);
        return e == EAGAIN ? STRATA_EAGAIN : STRATA_EINTR;
    }
    zmsg_t *m = zmsg_new ();
    zframe_t *f = zframe_new (zmq_msg_data (&first), zmq_msg_size (&first));
    bool more = zmq_msg_more (&first);
    zmq_msg_close (&first);
    zmsg_append (m, &f);
    //  The rest of a multipart message is there with its first frame.
    while (more) {
        zframe_t *g = zframe_recv (sock);
        if (!g)
            break;
        more = zframe_more (g);
        zmsg_append (m, &g);
    }
    return s_parse (m, router, max_payload, msg);
}

//  Sends m (destroyed either way). zmq's -1 becomes a code; errno is kept as zmq left
//  it, for a caller that logs why.
static int
s_send (zmsg_t **m, zsock_t *sock)
{
    if (zmsg_send (m, sock) == 0)
        return 0;
    int e = errno;
    zmsg_destroy (m);
    errno = e;
    return e == EAGAIN ? STRATA_EAGAIN : e == EINTR || e == ETERM ? STRATA_EINTR : STRATA_ECONNECT;
}

int
wire_send_bytes (zsock_t *sock, zframe_t *routing, const char *type, const void *data, size_t size)
{
    zmsg_t *m = zmsg_new ();
    if (routing)
        zmsg_append (m, &(zframe_t *) { zframe_dup (routing) });
    zmsg_addstr (m, WIRE_PROTOCOL);
    zmsg_addstr (m, type);
    zmsg_addmem (m, data, size);
    return s_send (&m, sock);
}

int
wire_send (zsock_t *sock, zframe_t *routing, const char *type, const ProtobufCMessage *msg)
{
    zmsg_t *m = zmsg_new ();
    if (routing)
        zmsg_append (m, &(zframe_t *) { zframe_dup (routing) });
    zmsg_addstr (m, WIRE_PROTOCOL);
    zmsg_addstr (m, type);
    size_t size = msg ? protobuf_c_message_get_packed_size (msg) : 0;
    zframe_t *payload = zframe_new (NULL, size);
    if (size)
        protobuf_c_message_pack (msg, zframe_data (payload));
    zmsg_append (m, &payload);
    return s_send (&m, sock);
}

int
wire_send_error (zsock_t *sock, zframe_t *routing, const char *ref, Strata__V1__ErrorCode code,
                 const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (text, sizeof text, fmt, ap);
    va_end (ap);
    Strata__V1__Error err = STRATA__V1__ERROR__INIT;
    err.code = code;
    err.message = text;
    err.ref = (char *) (ref ? ref : "");
    return wire_send (sock, routing, WIRE_ERROR, &err.base);
}

const float *
wire_floats (ProtobufCBinaryData field, size_t n)
{
    static const float none[1];
    if (field.len != n * sizeof (float))
        return NULL;
    if (n == 0)
        return none;
    return (uintptr_t) field.data % _Alignof (float) == 0 ? (const float *) (const void *) field.data : NULL;
}

ProtobufCMessage *
wire_unpack (const ProtobufCMessageDescriptor *desc, zframe_t *payload, ProtobufCAllocator *allocator)
{
    if (!payload)
        return NULL;
    return protobuf_c_message_unpack (desc, allocator, zframe_size (payload), zframe_data (payload));
}

zsock_t *
wire_bind_router (const char *endpoint, int64_t max_frame)
{
    zsock_t *sock = zsock_new (ZMQ_ROUTER);
    if (!sock)
        return NULL;
    zsock_set_linger (sock, 0);
    zsock_set_router_mandatory (sock, 0);
    zsock_set_sndhwm (sock, 100000);
    zsock_set_rcvhwm (sock, 100000);
    //  Hard cap well above the payload limit: an oversized payload still arrives and
    //  gets a TOO_LARGE reply, while an absurd one cannot exhaust memory.
    zsock_set_maxmsgsize (sock, max_frame * 4 + 65536);
    if (zsock_bind (sock, "%s", endpoint) < 0) {
        log_error ("cannot bind %s: %s", endpoint, zmq_strerror (zmq_errno ()));
        zsock_destroy (&sock);
        return NULL;
    }
    return sock;
}
