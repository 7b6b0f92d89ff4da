/*  zmtp: see zmtp.h. */
#include "zmtp.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FLAG_MORE 0x01
#define FLAG_LONG 0x02
#define FLAG_COMMAND 0x04
#define GREETING 64
#define MAX_FRAME ((size_t) 64 << 20)

typedef struct {
    uint8_t *data;
    size_t start, end, cap;
} buf_t;

struct _zmtp_t {
    int fd;
    buf_t in, out;
    bool broken;
};

static int
s_reserve (buf_t *b, size_t more)
{
    if (b->start > 0 && b->end + more > b->cap) {
        memmove (b->data, b->data + b->start, b->end - b->start);
        b->end -= b->start;
        b->start = 0;
    }
    if (b->end + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->end + more)
        cap *= 2;
    uint8_t *d = realloc (b->data, cap);
    if (!d)
        return -1;
    b->data = d;
    b->cap = cap;
    return 0;
}

static int
s_append (buf_t *b, const void *p, size_t n)
{
    if (s_reserve (b, n) < 0)
        return -1;
    memcpy (b->data + b->end, p, n);
    b->end += n;
    return 0;
}

static int64_t
s_ms (void)
{
    struct timespec t;
    clock_gettime (CLOCK_MONOTONIC, &t);
    return (int64_t) t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

//  Reads what the socket has into self->in, waiting up to wait_ms for something
//  (0: not at all). 1 (read), 0 (nothing), -1 (closed or failed).
static int
s_fill (zmtp_t *self, int wait_ms)
{
    if (wait_ms > 0) {
        struct pollfd p = { self->fd, POLLIN, 0 };
        if (poll (&p, 1, wait_ms) <= 0)
            return 0;
    }
    if (s_reserve (&self->in, 65536) < 0)
        return -1;
    ssize_t n = recv (self->fd, self->in.data + self->in.end, self->in.cap - self->in.end, 0);
    if (n > 0) {
        self->in.end += (size_t) n;
        return 1;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    self->broken = true;
    return -1;
}

//  The frame at the front of the input, from offset at: its flags, body and total
//  length, or false when it has not all arrived. Sets broken on a bad size.
static bool
s_frame (zmtp_t *self, size_t at, uint8_t *flags, const uint8_t **body, size_t *len, size_t *total)
{
    const uint8_t *p = self->in.data + self->in.start + at;
    size_t have = self->in.end - self->in.start - at;
    if (have < 2)
        return false;
    size_t head = p[0] & FLAG_LONG ? 9 : 2;
    if (have < head)
        return false;
    uint64_t size = 0;
    if (p[0] & FLAG_LONG)
        for (int i = 1; i < 9; i++)
            size = size << 8 | p[i];
    else
        size = p[1];
    if (size > MAX_FRAME) {
        self->broken = true;
        return false;
    }
    if (have < head + size)
        return false;
    *flags = p[0];
    *body = p + head;
    *len = (size_t) size;
    *total = head + (size_t) size;
    return true;
}

static int
s_frame_out (zmtp_t *self, uint8_t flags, const void *data, size_t len)
{
    uint8_t head[9];
    size_t hn;
    if (len > 255) {
        head[0] = flags | FLAG_LONG;
        for (int i = 0; i < 8; i++)
            head[1 + i] = (uint8_t) ((uint64_t) len >> (56 - 8 * i));
        hn = 9;
    }
    else {
        head[0] = flags;
        head[1] = (uint8_t) len;
        hn = 2;
    }
    return s_append (&self->out, head, hn) < 0 || s_append (&self->out, data, len) < 0 ? -1 : 0;
}

//  A command's name ("READY", "PING", ...) is its body's first, length-prefixed field.
static bool
s_command_is (const uint8_t *body, size_t len, const char *name)
{
    size_t n = strlen (name);
    return len >= 1 + n && body[0] == n && memcmp (body + 1, name, n) == 0;
}

int
zmtp_flush (zmtp_t *self)
{
    while (self->out.end > self->out.start) {
        ssize_t n = send (self->fd, self->out.data + self->out.start, self->out.end - self->out.start, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return 0;
        if (n <= 0) {
            self->broken = true;
            return -1;
        }
        self->out.start += (size_t) n;
    }
    self->out.start = self->out.end = 0;
    return 0;
}

size_t
zmtp_pending (zmtp_t *self)
{
    return self->out.end - self->out.start;
}

int
zmtp_send (zmtp_t *self, const void *const *frames, const size_t *lens, int n)
{
    if (self->broken)
        return -1;
    for (int i = 0; i < n; i++)
        if (s_frame_out (self, i + 1 < n ? FLAG_MORE : 0, frames[i], lens[i]) < 0)
            return -1;
    return zmtp_flush (self);
}

int
zmtp_recv (zmtp_t *self, zmtp_msg_t *msg)
{
    for (;;) {
        if (self->broken)
            return -1;
        //  A whole message (or a command) at the front of the input?
        size_t at = 0;
        int n = 0;
        bool whole = false;
        uint8_t flags;
        const uint8_t *body;
        size_t len, total;
        while (s_frame (self, at, &flags, &body, &len, &total)) {
            if (flags & FLAG_COMMAND) {
                if (n > 0) {
                    self->broken = true;   // a command inside a message
                    return -1;
                }
                //  PING (ZMTP 3.1 heartbeat): PONG with its context; others ignored.
                if (s_command_is (body, len, "PING") && len >= 7) {
                    uint8_t pong[5 + 16];
                    size_t ctx = len - 7 > 16 ? 16 : len - 7;
                    memcpy (pong, "\4PONG", 5);
                    memcpy (pong + 5, body + 7, ctx);
                    if (s_frame_out (self, FLAG_COMMAND, pong, 5 + ctx) < 0 || zmtp_flush (self) < 0)
                        return -1;
                }
                self->in.start += total;
                continue;
            }
            if (n == ZMTP_MAX_FRAMES) {
                self->broken = true;
                return -1;
            }
            msg->data[n] = body;
            msg->len[n] = len;
            n++;
            at += total;
            if (!(flags & FLAG_MORE)) {
                whole = true;
                break;
            }
        }
        if (whole) {
            msg->n = n;
            self->in.start += at;
            if (self->in.start == self->in.end)
                self->in.start = self->in.end = 0;
            return 1;
        }
        if (self->broken)
            return -1;
        int r = s_fill (self, 0);
        if (r <= 0)
            return r;
    }
}

int
zmtp_fd (zmtp_t *self)
{
    return self->fd;
}

void
zmtp_destroy (zmtp_t **self_p)
{
    zmtp_t *self = *self_p;
    if (!self)
        return;
    if (self->fd >= 0)
        close (self->fd);
    free (self->in.data);
    free (self->out.data);
    free (self);
    *self_p = NULL;
}

//  Reads until the input holds n bytes (handshake), by the deadline.
static int
s_wait_bytes (zmtp_t *self, size_t n, int64_t deadline)
{
    while (self->in.end - self->in.start < n) {
        int64_t left = deadline - s_ms ();
        if (left <= 0 || s_fill (self, (int) left) < 0)
            return -1;
    }
    return 0;
}

zmtp_t *
zmtp_connect (const char *endpoint, int timeout_ms, char *err, size_t err_len)
{
    int64_t deadline = s_ms () + timeout_ms;
    char host[256];
    const char *colon = strrchr (endpoint, ':');
    if (strncmp (endpoint, "tcp://", 6) != 0 || !colon || (size_t) (colon - endpoint - 6) >= sizeof host) {
        snprintf (err, err_len, "not a tcp://host:port endpoint: %s", endpoint);
        return NULL;
    }
    memcpy (host, endpoint + 6, (size_t) (colon - endpoint - 6));
    host[colon - endpoint - 6] = 0;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai = NULL;
    int g = getaddrinfo (host, colon + 1, &hints, &ai);
    if (g != 0) {
        snprintf (err, err_len, "%s: %s", endpoint, gai_strerror (g));
        return NULL;
    }
    zmtp_t *self = calloc (1, sizeof *self);
    if (!self) {
        freeaddrinfo (ai);
        snprintf (err, err_len, "out of memory");
        return NULL;
    }
    self->fd = socket (ai->ai_family, SOCK_STREAM, 0);
    if (self->fd < 0 || connect (self->fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        snprintf (err, err_len, "%s: %s", endpoint, strerror (errno));
        freeaddrinfo (ai);
        zmtp_destroy (&self);
        return NULL;
    }
    freeaddrinfo (ai);
    int one = 1;
    setsockopt (self->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl (self->fd, F_SETFL, fcntl (self->fd, F_GETFL) | O_NONBLOCK);
    //  Greeting: signature, version 3.0, the NULL mechanism, as a client.
    uint8_t greeting[GREETING] = { 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, 0, 'N', 'U', 'L', 'L' };
    static const uint8_t ready[] = { 5,   'R', 'E', 'A', 'D', 'Y', 11,  'S', 'o', 'c', 'k', 'e', 't', '-', 'T',
                                     'y', 'p', 'e', 0,   0,   0,   6,   'D', 'E', 'A', 'L', 'E', 'R' };
    if (s_append (&self->out, greeting, sizeof greeting) < 0 || zmtp_flush (self) < 0
        || s_wait_bytes (self, GREETING, deadline) < 0) {
        snprintf (err, err_len, "%s: no ZMTP greeting", endpoint);
        zmtp_destroy (&self);
        return NULL;
    }
    const uint8_t *peer = self->in.data + self->in.start;
    if (peer[0] != 0xFF || peer[9] != 0x7F || peer[10] < 3 || memcmp (peer + 12, "NULL", 5) != 0) {
        snprintf (err, err_len, "%s: not a ZMTP 3 peer with NULL security", endpoint);
        zmtp_destroy (&self);
        return NULL;
    }
    self->in.start += GREETING;
    if (s_frame_out (self, FLAG_COMMAND, ready, sizeof ready) < 0 || zmtp_flush (self) < 0) {
        snprintf (err, err_len, "%s: cannot send READY", endpoint);
        zmtp_destroy (&self);
        return NULL;
    }
    //  The peer's READY.
    for (;;) {
        uint8_t flags;
        const uint8_t *body;
        size_t len, total;
        if (s_frame (self, 0, &flags, &body, &len, &total)) {
            bool ok = (flags & FLAG_COMMAND) && s_command_is (body, len, "READY");
            self->in.start += total;
            if (ok)
                return self;
            snprintf (err, err_len, "%s: expected READY", endpoint);
            break;
        }
        int64_t left = deadline - s_ms ();
        if (self->broken || left <= 0 || s_fill (self, (int) left) < 0) {
            snprintf (err, err_len, "%s: no READY", endpoint);
            break;
        }
    }
    zmtp_destroy (&self);
    return NULL;
}
