/*  Unit: the load generator's ZMTP client (bench/zmtp.c) against a real libzmq ROUTER
    over TCP: messages both ways, short and long frames, heartbeats answered, and a peer
    that does not speak ZMTP refused with a reason.
*/
#include <criterion/criterion.h>
#include <czmq.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "zmtp.h"

static zsock_t *
s_router (int heartbeat_ms)
{
    zsock_t *r = zsock_new (ZMQ_ROUTER);
    cr_assert (r);
    if (heartbeat_ms) {
        zsock_set_heartbeat_ivl (r, heartbeat_ms);
        zsock_set_heartbeat_timeout (r, 3 * heartbeat_ms);
    }
    zsock_set_rcvtimeo (r, 3000);
    cr_assert (zsock_bind (r, "tcp://127.0.0.1:*") > 0);
    return r;
}

//  The next message from the client, waiting up to 3 s.
static int
s_next (zmtp_t *c, zmtp_msg_t *m)
{
    for (int i = 0; i < 300; i++) {
        int rc = zmtp_recv (c, m);
        if (rc != 0)
            return rc;
        struct pollfd p = { zmtp_fd (c), POLLIN, 0 };
        poll (&p, 1, 10);
    }
    return 0;
}

Test (zmtp, messages_both_ways_with_short_and_long_frames)
{
    zsock_t *r = s_router (0);
    char err[256];
    zmtp_t *c = zmtp_connect (zsock_endpoint (r), 3000, err, sizeof err);
    cr_assert (c, "connect: %s", err);
    //  Client to ROUTER: three frames, one longer than a short frame holds.
    char big[300];
    memset (big, 'x', sizeof big);
    const void *frames[3] = { "STRATA1", "PING", big };
    size_t lens[3] = { 7, 4, sizeof big };
    cr_assert_eq (zmtp_send (c, frames, lens, 3), 0);
    zmsg_t *in = zmsg_recv (r);
    cr_assert (in, "the ROUTER got nothing");
    cr_assert_eq (zmsg_size (in), 4);   // the ROUTER's routing id first
    zframe_t *id = zmsg_pop (in);
    char *a = zmsg_popstr (in), *b = zmsg_popstr (in);
    zframe_t *third = zmsg_pop (in);
    cr_expect_str_eq (a, "STRATA1");
    cr_expect_str_eq (b, "PING");
    cr_assert_eq (zframe_size (third), sizeof big);
    cr_expect (memcmp (zframe_data (third), big, sizeof big) == 0);
    //  ROUTER to client: two replies, the second with a 70,000-byte frame (arrives
    //  over several reads).
    size_t n = 70000;
    char *payload = malloc (n);
    for (size_t i = 0; i < n; i++)
        payload[i] = (char) (i * 7);
    for (int k = 0; k < 2; k++) {
        zmsg_t *out = zmsg_new ();
        zmsg_append (out, &(zframe_t *) { zframe_dup (id) });
        zmsg_addstr (out, "STRATA1");
        zmsg_addmem (out, k ? payload : "short", k ? n : 5);
        cr_assert_eq (zmsg_send (&out, r), 0);
    }
    zmtp_msg_t m;
    cr_assert_eq (s_next (c, &m), 1);
    cr_assert_eq (m.n, 2);
    cr_expect (m.len[1] == 5 && !memcmp (m.data[1], "short", 5));
    cr_assert_eq (s_next (c, &m), 1);
    cr_assert_eq (m.n, 2);
    cr_assert_eq (m.len[1], n);
    cr_expect (memcmp (m.data[1], payload, n) == 0);
    cr_expect_eq (zmtp_recv (c, &m), 0, "nothing more");
    free (payload);
    free (a);
    free (b);
    zframe_destroy (&third);
    zframe_destroy (&id);
    zmsg_destroy (&in);
    zmtp_destroy (&c);
    zsock_destroy (&r);
}

Test (zmtp, heartbeats_are_answered_and_keep_the_connection)
{
    //  The ROUTER pings every 50 ms and drops a peer silent for 150 ms after a ping.
    zsock_t *r = s_router (50);
    char err[256];
    zmtp_t *c = zmtp_connect (zsock_endpoint (r), 3000, err, sizeof err);
    cr_assert (c, "connect: %s", err);
    zmtp_msg_t m;
    for (int i = 0; i < 60; i++) {   // 600 ms of pings, each answered
        cr_assert_geq (zmtp_recv (c, &m), 0, "the connection broke");
        struct pollfd p = { zmtp_fd (c), POLLIN, 0 };
        poll (&p, 1, 10);
    }
    const void *frames[1] = { "still here" };
    size_t lens[1] = { 10 };
    cr_assert_eq (zmtp_send (c, frames, lens, 1), 0);
    zmsg_t *in = zmsg_recv (r);
    cr_assert (in, "the ROUTER dropped the connection");
    cr_expect_eq (zmsg_size (in), 2);
    zmsg_destroy (&in);
    zmtp_destroy (&c);
    zsock_destroy (&r);
}

Test (zmtp, a_peer_that_does_not_speak_zmtp_is_refused)
{
    //  A listener that answers with HTTP.
    int l = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    socklen_t al = sizeof a;
    cr_assert (bind (l, (struct sockaddr *) &a, sizeof a) == 0 && listen (l, 1) == 0);
    getsockname (l, (struct sockaddr *) &a, &al);
    char ep[64];
    snprintf (ep, sizeof ep, "tcp://127.0.0.1:%d", ntohs (a.sin_port));
    pid_t pid = fork ();
    if (pid == 0) {
        int s = accept (l, NULL, NULL);
        const char reply[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                             "padding to make sixty-four bytes and more";
        if (s >= 0 && write (s, reply, sizeof reply - 1) < 0)
            _exit (1);
        sleep (1);
        _exit (0);
    }
    char err[256] = "";
    zmtp_t *c = zmtp_connect (ep, 2000, err, sizeof err);
    cr_expect_null (c);
    cr_expect (strstr (err, "not a ZMTP 3 peer"), "reason: %s", err);
    zmtp_destroy (&c);
    c = zmtp_connect ("ipc:///tmp/x", 100, err, sizeof err);
    cr_expect_null (c);
    cr_expect (strstr (err, "not a tcp://"), "reason: %s", err);
    close (l);
}
