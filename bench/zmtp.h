/*  zmtp: the load generator's DEALER, one thread over a plain TCP socket.

    A libzmq socket hands every message to its I/O thread and back: a load generator
    built on one costs two extra thread wake-ups per request, on the same two cores as
    the cluster it measures (on this project's reference machine, a nested virtual
    machine, a wake-up across cores costs 50-150 us). This client speaks ZMTP 3.0 (RFC
    23, NULL security) itself: the caller's thread writes each request to the socket
    and reads replies from it, so the generator's footprint is a system call per send
    and per read.

    Only what a DEALER talking to the broker's ROUTER needs: the greeting, the READY
    handshake, multipart messages of any size, PING answered with PONG. Not a general
    ZeroMQ implementation: the cluster and the client library use libzmq.
*/
#ifndef STRATA_ZMTP_H
#define STRATA_ZMTP_H

#include <stddef.h>
#include <stdint.h>

typedef struct _zmtp_t zmtp_t;

#define ZMTP_MAX_FRAMES 8

//  A received message: its frames point into the connection's buffer and stay valid
//  until the next zmtp_recv.
typedef struct {
    int n;
    const uint8_t *data[ZMTP_MAX_FRAMES];
    size_t len[ZMTP_MAX_FRAMES];
} zmtp_msg_t;

//  Connects to "tcp://host:port" and completes the handshake as a DEALER, within
//  timeout_ms. NULL on failure (err says why).
zmtp_t *zmtp_connect (const char *endpoint, int timeout_ms, char *err, size_t err_len);
void zmtp_destroy (zmtp_t **self_p);

//  The socket's descriptor, to poll for POLLIN (and POLLOUT while zmtp_pending).
int zmtp_fd (zmtp_t *self);

//  Sends a message of n frames (queued when the socket's buffer is full; see
//  zmtp_flush). 0, or -1 when the connection is broken.
int zmtp_send (zmtp_t *self, const void *const *frames, const size_t *lens, int n);

//  Bytes queued and not yet written; zmtp_flush writes what the socket takes.
size_t zmtp_pending (zmtp_t *self);
int zmtp_flush (zmtp_t *self);

//  The next whole message, reading what the socket has without waiting: 1 (msg
//  filled), 0 (none complete yet), -1 (connection closed or protocol error).
int zmtp_recv (zmtp_t *self, zmtp_msg_t *msg);

#endif
