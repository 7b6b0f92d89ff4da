/*  bench/serve: serving latency under an open-loop load, through the broker.

    A local cluster (`strata up`: broker, preprocess worker, trainer, train worker, rank
    workers) imports Amazon Beauty and trains one epoch, so that a model version with
    all 12,101 items is served. Then, for 1 and then 2 rank workers, a load generator
    sends requests at a fixed rate, whatever the answers do (open loop: a slow server
    cannot slow the clock down), and measures each request's latency from its send to
    its reply: p50, p99 and p99.9 at each rate, doubling the rate until p99 passes
    10 ms or requests go unanswered; the highest rate with p99 under 10 ms is the
    sustained rate. In the same run it measures the floor: PING, an empty request that
    takes the same path (client -> broker -> rank worker -> broker -> client) and is
    answered at once, and prints every latency as a ratio of the floor's.

    Beside each window it prints the requests per SERVE_JOBS message (the broker's
    stats: batching under load), the steal: the share of the machine's CPU time the
    host of this virtual machine took during the window (/proc/stat), and the stall:
    the latest wake-up of a thread that sleeps 1 ms at a time through the window, at
    real-time priority (the machine's own pauses, which steal, an average, can hide).
    A rate that misses in a window where steal passed 10% or the machine stalled for
    more than 5 ms is measured again, up to three windows. When the kernel's memory
    monitor (DAMON) runs, a first line says so: on this kind of virtual machine its
    samples stall the cluster's processes twice a second.
    And the CPU time per request of the broker, of the rank workers (/proc/PID/stat:
    every thread, user and system) and of the load generator itself.
    On a nested virtual machine each switch between processes costs the host work
    that shows as steal (a bare ping-pong of two processes over pipes: about 8%), and
    this cluster's own load stays within a few percent; beyond 10%, the window mostly
    measures the host's other tenants.

    Then the same on a synthetic catalogue of --items items (1,000,000), d=64: items
    scattered around 2,000 "product type" centres (norms varying by a factor of 3, as
    learned vectors do), users who viewed a few items of one or two types. The model
    version (the default user tower, whose blocks run but add nothing: the user vector
    is the newest item's, normalised, as a trained session model's mostly is; over
    these item vectors) is written into the trainer's store and fetched by the rank
    workers as any version is. Rank
    workers with exact retrieval, then with the approximate index (index=ivf, its probe
    count chosen by the worker), answer the same 1,000 users: the approximate
    answers' recall@10 against the exact ones is printed, then the sweeps, with 1 and 2
    rank workers.

    Usage: serve --data Beauty.txt [--items N] [--seconds S] [--start-rate R] [--cluster DIR [--import]]
                 [--rate R] [--trace FILE]
*/
#include <czmq.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "cluster.h"
#include "model.h"
#include "snapshot.h"
#include "strata.h"
#include "strata.pb-c.h"
#include "util.h"
#include "wire.h"
#include "zmtp.h"

static char s_cli[4096], s_dir[256];
static FILE *s_trace;   // --trace: every request of every window, for finding stalls
static double s_rate;   // --rate: windows at this rate instead of the sweep
static bool s_import_only;   // --import (with --cluster): serving during an import only

static int
s_run (const char *cmd)
{
    int rc = system (cmd);
    return rc == 0 ? 0 : -1;
}

typedef struct {
    double p50, p99, p999;
    uint64_t sent, answered, errors;
    double per_message;   // requests per SERVE_JOBS message the broker sent (its stats), 0: unknown
    double steal;         // share of the machine's CPU time the host took (virtual machines), in %
    double client_us;     // the load generator's CPU time per request
    double broker_us;     // the broker's CPU time per request
    double rank_us;       // the rank workers' CPU time per request
    double stall_ms;      // the machine's longest stall (the probe's latest wake-up)
} result_t;

//  The machine's CPU time so far and the part of it its host took from this virtual
//  machine (steal), in seconds, from /proc/stat. (Its busy time is not used: on this
//  kind of virtual machine it came out below the load generator's own CPU time in
//  windows at 1,000/s, so CPU per request is read per process instead.)
static void
s_cpu_ticks (double *total, double *steal)
{
    *total = *steal = 0;
    FILE *f = fopen ("/proc/stat", "r");
    unsigned long long v[8] = { 0 };
    if (f && fscanf (f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                     &v[6], &v[7])
                 == 8) {
        double tick = 1.0 / (double) sysconf (_SC_CLK_TCK);
        for (int i = 0; i < 8; i++)
            *total += (double) v[i] * tick;
        *steal = (double) v[7] * tick;
    }
    if (f)
        fclose (f);
}

//  This process's CPU time so far, in seconds.
static double
s_self_cpu (void)
{
    struct rusage u;
    getrusage (RUSAGE_SELF, &u);
    return (double) (u.ru_utime.tv_sec + u.ru_stime.tv_sec) + (double) (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// ---------------------------------------------------------------- the machine's stalls

//  Says so when the kernel's memory monitor (DAMON) runs on this machine. Each of its
//  samples checks and clears the accessed bits of pages all over memory; on this kind
//  of virtual machine that stalls every process for a few milliseconds, at every
//  sample (every 0.5 s here), and shows in the latencies' tail. (Measured here, 5,000
//  recommend/s on Beauty: p99 2.4-5.3 ms with it, 1.1-1.6 ms with it switched off.)
static void
s_print_damon (void)
{
    for (int k = 0; k < 16; k++) {
        char path[128], state[16] = "";
        snprintf (path, sizeof path, "/sys/kernel/mm/damon/admin/kdamonds/%d/state", k);
        FILE *f = fopen (path, "r");
        if (!f)
            break;
        bool on = fgets (state, sizeof state, f) && !strncmp (state, "on", 2);
        fclose (f);
        if (!on)
            continue;
        long long sample_us = 0;
        snprintf (path, sizeof path,
                  "/sys/kernel/mm/damon/admin/kdamonds/%d/contexts/0/monitoring_attrs/intervals/sample_us", k);
        f = fopen (path, "r");
        if (f && fscanf (f, "%lld", &sample_us) != 1)
            sample_us = 0;
        if (f)
            fclose (f);
        printf ("machine: the kernel's memory monitor (DAMON, kdamond %d) is on, sampling every %.0f ms: on a "
                "virtual machine each sample can stall every process for milliseconds (README, Operations)\n",
                k, (double) sample_us / 1000);
    }
}

//  How late a thread wakes from a 1 ms sleep, through a window: the machine's own
//  stalls, beside the engine's latencies. A host that takes this virtual machine's CPUs
//  away for milliseconds stalls every process on it, the cluster's and the load
//  generator's alike, and /proc/stat's steal, an average over the window, can hide a
//  short spell. The probe runs at real-time priority where it may (root), so that the
//  cluster's own load does not delay it (only the kernel's own work can, as under
//  overload); its CPU time is left out of the generator's. Stalls of memory management
//  (DAMON's samples, above) hit the processes whose memory is touched, not a sleeper,
//  and do not show here.
#define PROBE_SLEEP_NS 1000000L

typedef struct {
    pthread_t thread;
    atomic_bool stop;
    bool started;
    double late_max_ms;   // the latest wake-up beyond the sleep asked for
    double cpu_s;         // the probe thread's own CPU time
} probe_t;

static void *
s_probe_run (void *arg)
{
    probe_t *p = arg;
    struct sched_param sp = { .sched_priority = 1 };
    pthread_setschedparam (pthread_self (), SCHED_FIFO, &sp);   // best effort: as it is otherwise
    while (!atomic_load (&p->stop)) {
        int64_t t0 = zclock_usecs ();
        struct timespec d = { 0, PROBE_SLEEP_NS };
        nanosleep (&d, NULL);
        double late = (double) (zclock_usecs () - t0) / 1e3 - (double) PROBE_SLEEP_NS / 1e6;
        if (late > p->late_max_ms)
            p->late_max_ms = late;
    }
    struct rusage u;
    getrusage (RUSAGE_THREAD, &u);
    p->cpu_s = (double) (u.ru_utime.tv_sec + u.ru_stime.tv_sec) + (double) (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
    return NULL;
}

static void
s_probe_start (probe_t *p)
{
    memset (p, 0, sizeof *p);
    p->started = pthread_create (&p->thread, NULL, s_probe_run, p) == 0;
}

static void
s_probe_stop (probe_t *p)
{
    atomic_store (&p->stop, true);
    if (p->started)
        pthread_join (p->thread, NULL);
}

//  The serving path's processes: the broker and every rank worker, the cluster's own
//  (its cluster.json) and those this benchmark starts.
#define MAX_SERVING 16
static int s_serving[MAX_SERVING];   // [0]: the broker
static int s_n_serving = 1;

static void
s_serving_add (int pid)
{
    if (pid > 0 && s_n_serving < MAX_SERVING)
        s_serving[s_n_serving++] = pid;
}

static void
s_serving_remove (int pid)
{
    for (int i = 1; i < s_n_serving; i++)
        if (s_serving[i] == pid)
            s_serving[i--] = s_serving[--s_n_serving];
}

//  The broker and the rank workers of the cluster in s_dir.
static void
s_serving_from_cluster (void)
{
    char path[512];
    snprintf (path, sizeof path, "%s/cluster.json", s_dir);
    json_t *j = json_load_file (path, 0, NULL);
    json_t *procs = json_object_get (j, "processes"), *p;
    size_t i;
    s_n_serving = 1;
    s_serving[0] = 0;
    json_array_foreach (procs, i, p) {
        const char *name = json_string_value (json_object_get (p, "name"));
        int pid = (int) json_integer_value (json_object_get (p, "pid"));
        if (name && !strcmp (name, "broker"))
            s_serving[0] = pid;
        else if (name && !strncmp (name, "rank-", 5))
            s_serving_add (pid);
    }
    json_decref (j);
}

//  The broker's and the rank workers' CPU time so far (user and system, every
//  thread), in seconds.
static void
s_serving_cpu (double *broker, double *rank)
{
    *broker = *rank = 0;
    for (int i = 0; i < s_n_serving; i++) {
        char path[64], text[1024];
        snprintf (path, sizeof path, "/proc/%d/stat", s_serving[i]);
        FILE *f = s_serving[i] > 0 ? fopen (path, "r") : NULL;
        size_t n = f ? fread (text, 1, sizeof text - 1, f) : 0;
        if (f)
            fclose (f);
        text[n] = 0;
        //  After the command's closing parenthesis: state (field 3) ... utime (14), stime (15).
        char *at = strrchr (text, ')');
        unsigned long long ut, st;
        if (at && sscanf (at + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2)
            *(i ? rank : broker) += (double) (ut + st) / (double) sysconf (_SC_CLK_TCK);
    }
}

//  The broker's serving counters: requests served and SERVE_JOBS messages sent.
static int
s_serving_counts (const char *api, double *served, double *messages)
{
    char err[256];
    char *text = strata_stats_json (api, 5000, err, sizeof err);
    json_t *j = text ? json_loads (text, 0, NULL) : NULL;
    free (text);
    json_t *sv = json_object_get (j, "serving");
    *served = (double) json_integer_value (json_object_get (sv, "served"));
    *messages = (double) json_integer_value (json_object_get (sv, "messages"));
    int rc = sv ? 0 : -1;
    json_decref (j);
    return rc;
}

static int
s_cmp (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

//  The load generator's connection to the broker's api endpoint: by default a
//  single-threaded ZMTP client (zmtp.h: no I/O thread to wake per request), or with
//  --client zmq a libzmq DEALER, as the client library uses.
static bool s_libzmq;

typedef struct {
    zsock_t *zs;
    zmtp_t *raw;
    wire_msg_t held;   // the libzmq reply last returned
} client_t;

//  A reply: its type and payload (valid until the next s_client_recv).
typedef struct {
    char type[32];
    const uint8_t *data;
    size_t len;
} reply_t;

static int
s_client_open (client_t *c, const char *api)
{
    memset (c, 0, sizeof *c);
    if (s_libzmq) {
        c->zs = zsock_new_dealer (api);
        if (c->zs) {
            zsock_set_sndhwm (c->zs, 0);
            zsock_set_rcvhwm (c->zs, 0);
        }
        return c->zs ? 0 : -1;
    }
    char err[256];
    c->raw = zmtp_connect (api, 5000, err, sizeof err);
    if (!c->raw)
        fprintf (stderr, "serve: %s\n", err);
    return c->raw ? 0 : -1;
}

static void
s_client_close (client_t *c)
{
    wire_msg_reset (&c->held);
    zsock_destroy (&c->zs);
    zmtp_destroy (&c->raw);
}

static int
s_client_send (client_t *c, const char *type, const void *data, size_t len)
{
    if (c->zs)
        return wire_send_bytes (c->zs, NULL, type, data, len);
    const void *frames[3] = { WIRE_PROTOCOL, type, data };
    size_t lens[3] = { strlen (WIRE_PROTOCOL), strlen (type), len };
    return zmtp_send (c->raw, frames, lens, 3);
}

//  The next reply without waiting: 1, 0 (none yet), -1 (a broken connection).
//  Undecodable replies come back with an empty type.
static int
s_client_recv (client_t *c, reply_t *r)
{
    r->type[0] = 0;
    r->data = NULL;
    r->len = 0;
    if (c->zs) {
        wire_msg_reset (&c->held);
        int rc = wire_recv_ready (c->zs, false, 64 << 20, &c->held);
        if (rc == STRATA_EAGAIN || rc == STRATA_EINTR)
            return rc == STRATA_EAGAIN ? 0 : -1;
        if (rc == 0) {
            snprintf (r->type, sizeof r->type, "%s", c->held.type);
            r->data = zframe_data (c->held.payload);
            r->len = zframe_size (c->held.payload);
        }
        return 1;
    }
    zmtp_msg_t m;
    int rc = zmtp_recv (c->raw, &m);
    if (rc <= 0)
        return rc;
    if (m.n == 3 && m.len[0] == strlen (WIRE_PROTOCOL) && !memcmp (m.data[0], WIRE_PROTOCOL, m.len[0])
        && m.len[1] < sizeof r->type) {
        memcpy (r->type, m.data[1], m.len[1]);
        r->type[m.len[1]] = 0;
        r->data = m.data[2];
        r->len = m.len[2];
    }
    return 1;
}

//  Sleeps until a reply may be waiting or `us` have passed, to the microsecond.
static void
s_client_wait (client_t *c, int64_t us)
{
    struct pollfd pfd = { c->zs ? zsock_fd (c->zs) : zmtp_fd (c->raw), POLLIN, 0 };
    if (c->raw && zmtp_pending (c->raw))
        pfd.events |= POLLOUT;
    struct timespec ts = { (time_t) (us / 1000000), (long) (us % 1000000) * 1000 };
    ppoll (&pfd, 1, &ts, NULL);
    if (c->raw && (pfd.revents & POLLOUT))
        zmtp_flush (c->raw);
}

//  Sends `rate` requests per second for `seconds` and waits up to 2 s for stragglers.
static void
s_load (const char *api, const char *type, char **users, size_t n_users, double rate, double seconds, result_t *out)
{
    memset (out, 0, sizeof *out);
    double served0 = 0, messages0 = 0, served1 = 0, messages1 = 0;
    int counted = s_serving_counts (api, &served0, &messages0);
    double ticks0, steal0, ticks1, steal1, self0 = s_self_cpu (), broker0, rank0, broker1, rank1;
    s_serving_cpu (&broker0, &rank0);
    s_cpu_ticks (&ticks0, &steal0);
    client_t c;
    if (s_client_open (&c, api) < 0)
        return;
    probe_t probe;
    s_probe_start (&probe);
    size_t total = (size_t) (rate * seconds);
    int64_t *sent_us = calloc (total + 1, sizeof *sent_us);
    double *lat = calloc (total + 1, sizeof *lat);
    uint8_t *done = calloc (total + 1, 1);
    double *lat_of = s_trace ? calloc (total + 1, sizeof *lat_of) : NULL;   // by request, for the trace
    size_t nl = 0;
    int64_t start = zclock_usecs ();
    size_t next = 0;
    bool broken = false;
    uint64_t pick = 0x5E12E ^ (uint64_t) rate;   // users drawn at random, the same draws in every run
    while (!broken
           && (next < total
               || (out->answered + out->errors < total && zclock_usecs () - start < (int64_t) ((seconds + 2) * 1e6)))) {
        int64_t now = zclock_usecs ();
        while (next < total && now >= start + (int64_t) ((double) next * 1e6 / rate)) {
            char id[24];
            snprintf (id, sizeof id, "%zu", next);
            uint8_t buf[256];
            size_t len = 0;
            if (!strcmp (type, WIRE_RECOMMEND)) {
                Strata__V1__Recommend q = STRATA__V1__RECOMMEND__INIT;
                q.request_id = id;
                q.user = users[util_splitmix64 (&pick) % n_users];
                q.k = 10;
                len = strata__v1__recommend__pack (&q, buf);
            }
            else {
                //  PING carries the request number in its frame for matching.
                memcpy (buf, &next, sizeof next);
                len = sizeof next;
            }
            sent_us[next] = zclock_usecs ();
            if (s_client_send (&c, type, buf, len) < 0)
                broken = true;
            next++;
            out->sent++;
        }
        //  Every reply waiting, then sleep until the next send or a reply: never spin
        //  (on two cores a busy client would take a core from the cluster it measures),
        //  never oversleep a reply.
        size_t got = 0;
        reply_t r;
        int rc;
        while ((rc = s_client_recv (&c, &r)) == 1) {
            got++;
            int64_t t = zclock_usecs ();
            size_t i = total;
            if (!strcmp (r.type, WIRE_RECOMMEND_REPLY)) {
                Strata__V1__Recommendations *rec = (Strata__V1__Recommendations *) protobuf_c_message_unpack (
                    &strata__v1__recommendations__descriptor, NULL, r.len, r.data);
                if (rec) {
                    i = strtoull (rec->request_id, NULL, 10);
                    strata__v1__recommendations__free_unpacked (rec, NULL);
                }
            }
            else if (!strcmp (r.type, WIRE_PING_REPLY) && r.len == sizeof i)
                memcpy (&i, r.data, sizeof i);   // the echoed request number
            else
                out->errors++;
            if (i < total && !done[i]) {
                done[i] = 1;
                lat[nl++] = (double) (t - sent_us[i]) / 1000.0;
                if (lat_of)
                    lat_of[i] = lat[nl - 1];
                out->answered++;
            }
        }
        broken |= rc < 0;
        int64_t wait_us = next < total ? start + (int64_t) ((double) next * 1e6 / rate) - zclock_usecs () : 10000;
        if (!got && wait_us > 0)
            s_client_wait (&c, wait_us);
    }
    if (broken)
        fprintf (stderr, "serve: the connection to %s broke\n", api);
    if (s_trace) {
        //  One line per request: the window's rate, its send time from the window's
        //  start and its latency (ms; -1: unanswered).
        for (size_t i = 0; i < total; i++)
            fprintf (s_trace, "%s %.0f %.3f %.3f\n", type, rate, (double) (sent_us[i] - start) / 1000.0,
                     done[i] ? lat_of[i] : -1.0);
        fflush (s_trace);
    }
    qsort (lat, nl, sizeof *lat, s_cmp);
    out->p50 = nl ? lat[nl / 2] : 0;
    out->p99 = nl ? lat[(size_t) ((double) nl * 0.99)] : 0;
    out->p999 = nl ? lat[(size_t) ((double) nl * 0.999)] : 0;
    free (sent_us);
    free (lat);
    free (done);
    free (lat_of);
    s_client_close (&c);
    s_probe_stop (&probe);
    out->stall_ms = probe.late_max_ms;
    s_cpu_ticks (&ticks1, &steal1);
    s_serving_cpu (&broker1, &rank1);
    out->steal = ticks1 > ticks0 ? 100.0 * (steal1 - steal0) / (ticks1 - ticks0) : 0;
    if (out->sent) {
        out->client_us = (s_self_cpu () - self0 - probe.cpu_s) * 1e6 / (double) out->sent;
        out->broker_us = (broker1 - broker0) * 1e6 / (double) out->sent;
        out->rank_us = (rank1 - rank0) * 1e6 / (double) out->sent;
    }
    if (counted == 0 && s_serving_counts (api, &served1, &messages1) == 0 && messages1 > messages0)
        out->per_message = (served1 - served0) / (messages1 - messages0);
}

static void
s_print (const char *label, double rate, const result_t *r, const result_t *floor_r)
{
    printf ("  %-34s %7.0f/s  p50 %6.2f ms (x%4.1f)  p99 %6.2f ms (x%4.1f)  p99.9 %6.2f ms  %llu/%llu answered"
            "  %.1f req/msg  cpu/req: broker %.0f us, rank %.0f, client %.0f  steal %.0f%%  stall %.1f ms\n",
            label, rate, r->p50, floor_r && floor_r->p50 > 0 ? r->p50 / floor_r->p50 : 1.0, r->p99,
            floor_r && floor_r->p99 > 0 ? r->p99 / floor_r->p99 : 1.0, r->p999, (unsigned long long) r->answered,
            (unsigned long long) r->sent, r->per_message, r->broker_us, r->rank_us, r->client_us,
            r->steal, r->stall_ms);
    fflush (stdout);
}

//  A window in which the host took more than this share of the machine's CPU (steal,
//  in %), or in which the machine itself stalled for longer than STALL_MAX (the aim's
//  p99: no latency under it can be promised through such a stall), says little about
//  the engine: a rate that misses in one is measured again, up to WINDOWS in all, and
//  every window is printed with its steal and its longest stall.
#define STEAL_MAX 10.0
#define STALL_MAX 5.0
#define WINDOWS 3

static bool
s_quiet (const result_t *r)
{
    return r->steal <= STEAL_MAX && r->stall_ms <= STALL_MAX;
}

//  The aims: Beauty, 5,000 recommend/s with p99 at most 5 ms; the synthetic catalogue
//  with the approximate index, 500/s with p99 at most 10 ms.
#define BEAUTY_AIM_RATE 5000.0
#define BEAUTY_AIM_P99 5.0
#define SYN_AIM_RATE 500.0
#define SYN_AIM_P99 10.0

//  Whether RECOMMENDs at `rate` are all answered with p99 under 10 ms (printed).
static bool
s_rate_holds (const char *api, char **users, size_t n, double rate, double seconds, const char *label,
              const result_t *floor_r)
{
    for (int w = 0; w < WINDOWS; w++) {
        result_t r;
        s_load (api, WIRE_RECOMMEND, users, n, rate, seconds, &r);
        s_print (label, rate, &r, floor_r);
        if (r.answered == r.sent && r.p99 < 10.0)
            return true;
        if (s_quiet (&r))
            return false;
    }
    return false;
}

//  The serving sweep for the rank workers running now: the floor, then doubling rates.
static void
s_sweep (const char *api, char **users, size_t n, const char *what, int rankers, double seconds, double start_rate,
         double target_rate, double target_p99)
{
    result_t fl;
    for (int w = 0; w < WINDOWS; w++) {
        s_load (api, WIRE_PING, users, n, 1000, seconds, &fl);
        if (s_quiet (&fl))
            break;
    }
    char label[160], who[40];
    if (rankers > 0)
        snprintf (who, sizeof who, "%d rank worker%s", rankers, rankers > 1 ? "s" : "");
    else
        snprintf (who, sizeof who, "the cluster's rank workers");
    snprintf (label, sizeof label, "floor: PING, %s", who);
    s_print (label, 1000, &fl, NULL);
    snprintf (label, sizeof label, "recommend k=10, %s, %s", what, who);
    if (s_rate > 0) {
        //  A fixed rate, WINDOWS windows: for comparing settings and for profiles.
        for (int w = 0; w < WINDOWS; w++) {
            result_t r;
            s_load (api, WIRE_RECOMMEND, users, n, s_rate, seconds, &r);
            s_print (label, s_rate, &r, &fl);
        }
        return;
    }
    //  Doubling until p99 passes 10 ms, then two halvings of the last interval.
    double best = 0, bad = 0;
    for (double rate = start_rate; rate <= 64000 && !bad; rate *= 2)
        if (s_rate_holds (api, users, n, rate, seconds, label, &fl))
            best = rate;
        else
            bad = rate;
    for (int k = 0; k < 2 && bad > 0 && best > 0; k++) {
        double rate = (best + bad) / 2;
        if (s_rate_holds (api, users, n, rate, seconds, label, &fl))
            best = rate;
        else
            bad = rate;
    }
    printf ("  highest rate with p99 under 10 ms, %s, %s: %.0f recommend/s\n", what, who, best);
    fflush (stdout);
    if (target_rate > 0) {
        //  The aim, measured at its own rate (the sweep's rates may pass it by), again
        //  after a window that was not quiet.
        bool met = false;
        for (int w = 0; w < WINDOWS && !met; w++) {
            result_t r;
            s_load (api, WIRE_RECOMMEND, users, n, target_rate, seconds, &r);
            s_print (label, target_rate, &r, &fl);
            met = r.answered == r.sent && r.p99 <= target_p99;
            if (!met && s_quiet (&r))
                break;
        }
        printf ("  aim, %s, %s: %.0f recommend/s with p99 <= %.0f ms: %s\n", what, who, target_rate, target_p99,
                met ? "met" : "missed");
        fflush (stdout);
    }
}

//  Serving while the broker ingests: a window at IMPORT_RATE with no other load, then
//  one of IMPORT_SECONDS while `strata import` sends the Beauty events again under new
//  ids (--prefix) as fast as the cluster takes them (the preprocess worker cleans them,
//  the broker stores them, the trainer then updates the model on them). Latencies are
//  printed as ratios of the quiet window's. The importer stands for producers on other
//  machines: it runs at the lowest priority, so that its parsing does not delay the
//  load generator's own sends and receipts (both are in this process's session, where
//  the kernel weighs them against each other by nice value).
#define IMPORT_RATE 2000.0
#define IMPORT_SECONDS 8.0

static void
s_during_import (const char *api, char **users, size_t n, const char *data, double seconds, const char *who)
{
    char label[160], cmd[9000], out[300];
    result_t quiet, busy;
    snprintf (label, sizeof label, "recommend k=10, no import, %s", who);
    s_load (api, WIRE_RECOMMEND, users, n, IMPORT_RATE, seconds, &quiet);
    s_print (label, IMPORT_RATE, &quiet, NULL);
    snprintf (out, sizeof out, "%s/import-during-serving.json", s_dir);
    //  New ids on every run: a cluster measured twice (--cluster --import) stores them anew.
    snprintf (cmd, sizeof cmd, "nice -n 19 '%s' import --dir '%s' --quiet --prefix again%lld: '%s' > '%s' 2>&1 &",
              s_cli, s_dir, (long long) zclock_time (), data, out);
    if (s_run (cmd) < 0)
        return;
    snprintf (label, sizeof label, "recommend k=10, during an import, %s", who);
    s_load (api, WIRE_RECOMMEND, users, n, IMPORT_RATE, IMPORT_SECONDS, &busy);
    s_print (label, IMPORT_RATE, &busy, &quiet);
    //  The import's own figures (it is done by now, or the window says why not).
    json_t *j = NULL;
    for (int i = 0; i < 600 && !(j = json_load_file (out, 0, NULL)); i++)
        zclock_sleep (100);
    if (j) {
        double events = (double) json_integer_value (json_object_get (j, "accepted"));
        double secs = json_real_value (json_object_get (j, "seconds"));
        printf ("  the import: %.0f events in %.1f s (%.0f events/s)\n", events, secs, secs > 0 ? events / secs : 0.0);
    }
    else
        printf ("  the import did not finish (see %s)\n", out);
    json_decref (j);
    fflush (stdout);
}

//  One RECOMMEND k=10, answered: its items ("a,b,...") and the worker that answered,
//  or -1 (no answer, or an error).
static int
s_ask (zsock_t *s, const char *user, char *items, size_t cap, char *worker, size_t wcap)
{
    Strata__V1__Recommend q = STRATA__V1__RECOMMEND__INIT;
    q.request_id = "ask";
    q.user = (char *) user;
    q.k = 10;
    wire_send (s, NULL, WIRE_RECOMMEND, &q.base);
    wire_msg_t msg;
    if (wire_recv (s, false, 64 << 20, &msg) != 0)
        return -1;
    Strata__V1__Recommendations *r = strcmp (msg.type, WIRE_RECOMMEND_REPLY)
                                         ? NULL
                                         : (Strata__V1__Recommendations *) wire_unpack (
                                               &strata__v1__recommendations__descriptor, msg.payload, NULL);
    wire_msg_reset (&msg);
    if (!r)
        return -1;
    size_t w = 0;
    items[0] = 0;
    for (size_t i = 0; i < r->n_items && w + 1 < cap; i++)
        w += (size_t) snprintf (items + w, cap - w, "%s%s", i ? "," : "", r->items[i]->item);
    snprintf (worker, wcap, "%s", r->worker ? r->worker : "");
    strata__v1__recommendations__free_unpacked (r, NULL);
    return 0;
}

//  Waits (up to timeout_s) until worker `id` answers a request, then a few seconds
//  more: a worker that has just stored a version (hundreds of MB for 1M items) is
//  still flushing and compacting its RocksDB, and the sweep measures steady serving.
static bool
s_wait_worker (const char *api, char **users, size_t n, const char *id, int timeout_s)
{
    zsock_t *s = zsock_new_dealer (api);
    zsock_set_rcvtimeo (s, 2000);
    bool seen = false;
    char items[4096], worker[64];
    int64_t end = zclock_mono () + timeout_s * 1000LL;
    for (size_t i = 0; !seen && zclock_mono () < end; i++) {
        if (s_ask (s, users[i % n], items, sizeof items, worker, sizeof worker) == 0)
            seen = !strcmp (worker, id);
        else
            zclock_sleep (200);
    }
    zsock_destroy (&s);
    if (seen)
        zclock_sleep (5000);
    return seen;
}

//  Whether the cluster at api answers a RECOMMEND (for one of the first users, in 5 s).
static bool
s_answers_any (const char *api, char **users, size_t n)
{
    zsock_t *s = zsock_new_dealer (api);
    zsock_set_rcvtimeo (s, 5000);
    char items[4096], worker[64];
    bool ok = n > 0 && s_ask (s, users[0], items, sizeof items, worker, sizeof worker) == 0;
    zsock_destroy (&s);
    return ok;
}

//  The top 10 of users[0 .. n), one request at a time: n strings "a,b,..." (malloc'd).
static char **
s_answers (const char *api, char **users, size_t n)
{
    zsock_t *s = zsock_new_dealer (api);
    zsock_set_rcvtimeo (s, 10000);
    char **out = calloc (n, sizeof *out), items[4096], worker[64];
    for (size_t i = 0; i < n; i++)
        out[i] = strdup (s_ask (s, users[i], items, sizeof items, worker, sizeof worker) == 0 ? items : "");
    zsock_destroy (&s);
    return out;
}

//  Mean share of each exact top 10 found in the approximate top 10.
static double
s_recall (char **exact, char **approx, size_t n)
{
    double hits = 0, total = 0;
    for (size_t i = 0; i < n; i++) {
        char buf[4096];
        snprintf (buf, sizeof buf, "%s", exact[i]);
        for (char *save = NULL, *t = strtok_r (buf, ",", &save); t; t = strtok_r (NULL, ",", &save)) {
            total++;
            //  Found as a whole entry of the approximate list.
            size_t tl = strlen (t);
            for (const char *p = approx[i]; (p = strstr (p, t)) != NULL; p += tl)
                if ((p == approx[i] || p[-1] == ',') && (p[tl] == ',' || p[tl] == 0)) {
                    hits++;
                    break;
                }
        }
    }
    return total > 0 ? hits / total : 0;
}

//  Starts a rank worker (its store DIR/rank-ID) with extra flags; returns its pid.
static int
s_start_ranker (const cluster_endpoints_t *eps, const char *id, const char *flags)
{
    char worker[4096], cmd[9000];
    cluster_program ("strata-worker", worker, sizeof worker);
    snprintf (cmd, sizeof cmd,
              "'%s' --role=rank --broker=%s --api=%s --trainer-api=%s --dir='%s/rank-%s' --id=%s --log-level=info %s "
              "> '%s/logs/%s.log' 2>&1 & echo $!",
              worker, eps->workers, eps->api, eps->trainer, s_dir, id, id, flags, s_dir, id);
    FILE *p = popen (cmd, "r");
    int pid = 0;
    if (p && fscanf (p, "%d", &pid) != 1)
        pid = 0;
    if (p)
        pclose (p);
    s_serving_add (pid);
    return pid;
}

static void
s_stop_ranker (int pid)
{
    if (pid > 0) {
        s_serving_remove (pid);
        kill (pid, SIGTERM);
        zclock_sleep (1500);   // the broker sees it go
    }
}

//  A fresh directory for a cluster, in s_dir (mkdtemp fills in the unique suffix).
static int
s_new_dir (void)
{
    snprintf (s_dir, sizeof s_dir, "/tmp/strata-serve-bench-XXXXXX");   // mkdtemp's template
    return mkdtemp (s_dir) ? 0 : -1;
}

static void
s_down (void)
{
    char cmd[9000];
    snprintf (cmd, sizeof cmd, "'%s' down --dir '%s' > /dev/null 2>&1; rm -rf '%s'", s_cli, s_dir, s_dir);
    s_run (cmd);
}

static int
s_up (const char *flags)
{
    if (s_new_dir () < 0)
        return -1;
    char cmd[9000];
    snprintf (cmd, sizeof cmd, "'%s' up --dir '%s' --port 0 --workers 1 %s --detach > /dev/null 2>&1", s_cli, s_dir,
              flags);
    return s_run (cmd);
}

static int
s_import (const char *flags, const char *file)
{
    char cmd[9000];
    snprintf (cmd, sizeof cmd, "'%s' import --dir '%s' --quiet %s '%s' > /dev/null", s_cli, s_dir, flags, file);
    return s_run (cmd);
}

// ---------------------------------------------------------------- Amazon Beauty

//  With cluster (a directory of `strata up` serving Beauty): sweeps it as it is, one
//  pass, and leaves it running (for profiles and for comparing settings).
static int
s_beauty (const char *data, const char *cluster, double seconds, double start_rate)
{
    int rc = 0;
    if (cluster)
        snprintf (s_dir, sizeof s_dir, "%s", cluster);
    else {
        rc = s_up ("--rankers 1");
        rc |= s_import ("", data);
        char cmd[9000];
        snprintf (cmd, sizeof cmd, "'%s' train --dir '%s' --epochs 1 --wait > /dev/null 2>&1", s_cli, s_dir);
        rc |= s_run (cmd);
    }
    cluster_endpoints_t eps;
    char err[256];
    rc |= cluster_resolve (NULL, s_dir, &eps, err, sizeof err);
    s_serving_from_cluster ();
    //  Users: the S3-Rec file's user ids (the importer keeps them).
    size_t n = 0, cap = 1 << 15;
    char **users = malloc (cap * sizeof *users), line[1 << 16];
    FILE *f = fopen (data, "r");
    while (f && n < cap && fgets (line, sizeof line, f)) {
        char *sp = strchr (line, ' ');
        if (sp) {
            *sp = 0;
            users[n++] = strdup (line);
        }
    }
    if (f)
        fclose (f);
    //  Wait for a rank worker to serve the version.
    if (rc || (!cluster && !s_wait_worker (eps.api, users, n, "rank-1", 60))) {
        printf ("serve benchmark: the cluster did not come up (see %s/logs)\n", s_dir);
        return 1;
    }
    if (cluster && !s_answers_any (eps.api, users, n)) {
        printf ("serve benchmark: the cluster in %s answers no RECOMMEND; import Beauty and train a version first "
                "(strata import --dir %s %s; strata train --dir %s --wait)\n",
                s_dir, s_dir, data, s_dir);
        return 1;
    }
    printf ("serve benchmark: Amazon Beauty, 12,101 items, d=64, exact retrieval, %zu users, open loop, %.0f s per "
            "rate\n",
            n, seconds);
    if (cluster) {
        if (s_import_only)
            s_during_import (eps.api, users, n, data, seconds, "as configured");
        else
            s_sweep (eps.api, users, n, "as configured", 0, seconds, start_rate, BEAUTY_AIM_RATE, BEAUTY_AIM_P99);
        return 0;
    }
    s_sweep (eps.api, users, n, "exact", 1, seconds, start_rate, BEAUTY_AIM_RATE, BEAUTY_AIM_P99);
    //  A second rank worker beside the first.
    int pid = s_start_ranker (&eps, "2", "");
    if (!s_wait_worker (eps.api, users, n, "2", 60))
        printf ("  the second rank worker did not come up (see %s/logs/2.log)\n", s_dir);
    else {
        s_sweep (eps.api, users, n, "exact", 2, seconds, start_rate, BEAUTY_AIM_RATE, BEAUTY_AIM_P99);
        s_during_import (eps.api, users, n, data, seconds, "2 rank workers");
    }
    s_stop_ranker (pid);
    s_down ();
    for (size_t i = 0; i < n; i++)
        free (users[i]);
    free (users);
    return 0;
}

// ---------------------------------------------------------------- synthetic catalogue

#define SYN_DIM 64
#define SYN_TYPES 2000
#define SYN_USERS 20000

static uint64_t s_rng = 0x5E12E;

static double
s_uniform (void)
{
    return ((double) (util_splitmix64 (&s_rng) >> 11) + 0.5) * 0x1.0p-53;
}

static float
s_gauss (void)
{
    return (float) (sqrt (-2.0 * log (s_uniform ())) * cos (6.283185307179586 * s_uniform ()));
}

//  Writes DIR/items.jsonl and DIR/events.jsonl and publishes the version the rank
//  workers will fetch into DIR/trainer. 0 or -1.
static int
s_synthetic_shop (uint32_t n)
{
    float *centre = malloc ((size_t) SYN_TYPES * SYN_DIM * sizeof *centre);
    uint32_t *type = malloc ((size_t) n * sizeof *type), *by_type = malloc ((size_t) n * sizeof *by_type);
    uint32_t *off = calloc (SYN_TYPES + 1, sizeof *off);
    float *pop = calloc (n, sizeof *pop);
    model_config_t mc;
    model_config_default (&mc);
    mc.dim = SYN_DIM;
    mc.feature_rows = 0;
    mc.rank_negatives = mc.rank_hard = 0;
    mc.inference = 1;
    model_t *m = model_new (&mc, n);
    if (!centre || !type || !by_type || !off || !pop || !m)
        return -1;
    for (size_t i = 0; i < (size_t) SYN_TYPES * SYN_DIM; i++)
        centre[i] = s_gauss ();
    //  A user tower that does a real tower's work but is not random: each block's
    //  output projections zeroed, so the blocks add nothing to the residual stream and
    //  the user vector is the newest item's vector (with its position and event type),
    //  normalised, as a trained session model's mostly is.
    for (int i = 0; i < model_tensor_count (m); i++) {
        size_t len;
        const char *name;
        float *w = model_tensor (m, i, NULL, &len, &name);
        if (!strcmp (name, "wo") || !strcmp (name, "w2") || !strcmp (name, "b2"))
            memset (w, 0, len * sizeof *w);
    }
    float *vec = model_row_weights (m, NULL);
    char path[400];
    snprintf (path, sizeof path, "%s/items.jsonl", s_dir);
    FILE *f = fopen (path, "w");
    if (!f)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t t = (uint32_t) (util_splitmix64 (&s_rng) % SYN_TYPES);
        type[i] = t;
        off[t + 1]++;
        float scale = 0.5f + (float) s_uniform ();
        for (int j = 0; j < SYN_DIM; j++)
            vec[(size_t) i * SYN_DIM + j] = 0.125f * scale * (centre[(size_t) t * SYN_DIM + j] + 0.35f * s_gauss ());
        fprintf (f, "{\"item_id\":\"s%u\",\"title\":\"product %u of type %u\",\"category\":\"Type %u\"}\n", i, i, t, t);
    }
    fclose (f);
    for (uint32_t t = 0; t < SYN_TYPES; t++)
        off[t + 1] += off[t];
    uint32_t *fill = malloc (SYN_TYPES * sizeof *fill);
    memcpy (fill, off, SYN_TYPES * sizeof *fill);
    for (uint32_t i = 0; i < n; i++)
        by_type[fill[type[i]]++] = i;
    free (fill);
    snprintf (path, sizeof path, "%s/events.jsonl", s_dir);
    f = fopen (path, "w");
    if (!f)
        return -1;
    long long ts = 1735689600000LL;
    for (uint32_t u = 0; u < SYN_USERS; u++) {
        uint32_t tastes[2] = { (uint32_t) (util_splitmix64 (&s_rng) % SYN_TYPES),
                               (uint32_t) (util_splitmix64 (&s_rng) % SYN_TYPES) };
        int two = s_uniform () < 0.3, views = 3 + (int) (util_splitmix64 (&s_rng) % 6);
        for (int k = 0; k < views; k++) {
            uint32_t t = tastes[two && (k & 1)];
            if (off[t + 1] == off[t])
                continue;
            uint32_t it = by_type[off[t] + (uint32_t) (util_splitmix64 (&s_rng) % (off[t + 1] - off[t]))];
            pop[it] += 1;
            fprintf (f, "{\"event_id\":\"e%u-%d\",\"user_id\":\"u%u\",\"item_id\":\"s%u\",\"type\":\"view\",\"timestamp\":%lld}\n",
                     u, k, u, it, ts + 60000LL * (u * 10 + (uint32_t) k));
        }
    }
    fclose (f);
    json_t *meta = json_pack ("{s:i, s:b}", "version", 1, "synthetic", 1);
    size_t len = 0;
    uint8_t *blob = snapshot_build (m, 1, pop, NULL, meta, &len);
    snprintf (path, sizeof path, "%s/trainer", s_dir);
    store_t *st = blob ? checkpoint_open (path) : NULL;
    int rc = st && versions_put (st, CKPT_CF_MODELS, 1, blob, len, VERSIONS_CHUNK_BYTES, 0, meta, 2) == 0 ? 0 : -1;
    store_destroy (&st);
    json_decref (meta);
    free (blob);
    model_destroy (&m);
    free (centre);
    free (type);
    free (by_type);
    free (off);
    free (pop);
    return rc;
}

static int
s_synthetic (uint32_t n_items, double seconds)
{
    if (s_new_dir () < 0)
        return 1;
    int64_t t0 = zclock_mono ();
    if (s_synthetic_shop (n_items) < 0) {
        printf ("serve benchmark: cannot write the synthetic catalogue into %s\n", s_dir);
        return 1;
    }
    //  The cluster in the directory that holds the published version; rank workers
    //  are started below, one kind at a time.
    char cmd[9000], path[400];
    snprintf (cmd, sizeof cmd, "'%s' up --dir '%s' --port 0 --workers 1 --rankers 0 --detach > /dev/null 2>&1", s_cli,
              s_dir);
    int rc = s_run (cmd);
    snprintf (path, sizeof path, "%s/items.jsonl", s_dir);
    rc |= s_import ("--items", path);
    snprintf (path, sizeof path, "%s/events.jsonl", s_dir);
    rc |= s_import ("", path);
    cluster_endpoints_t eps;
    char err[256];
    rc |= cluster_resolve (NULL, s_dir, &eps, err, sizeof err);
    s_serving_from_cluster ();
    enum { ASKED = 1000 };
    char **users = malloc (SYN_USERS * sizeof *users);
    for (uint32_t u = 0; u < SYN_USERS; u++) {
        char id[16];
        snprintf (id, sizeof id, "u%u", u);
        users[u] = strdup (id);
    }
    printf ("serve benchmark: synthetic catalogue, %u items, d=%d, %d users (set up in %.0f s), open loop, %.0f s per "
            "rate\n",
            n_items, SYN_DIM, SYN_USERS, (double) (zclock_mono () - t0) / 1000.0, seconds);
    fflush (stdout);
    int pid = rc ? 0 : s_start_ranker (&eps, "exact", "--index=exact");
    if (rc || !s_wait_worker (eps.api, users, SYN_USERS, "exact", 600)) {
        printf ("serve benchmark: the cluster did not come up (see %s/logs)\n", s_dir);
        return 1;
    }
    int64_t t1 = zclock_mono ();
    char **exact = s_answers (eps.api, users, ASKED);
    printf ("  exact retrieval: %d users answered one at a time in %.1f s\n", (int) ASKED,
            (double) (zclock_mono () - t1) / 1000.0);
    s_sweep (eps.api, users, SYN_USERS, "exact", 1, seconds, 25, 0, 0);
    s_stop_ranker (pid);
    pid = s_start_ranker (&eps, "ivf-1", "--index=ivf");
    int pid2 = 0;
    if (s_wait_worker (eps.api, users, SYN_USERS, "ivf-1", 600)) {
        char **approx = s_answers (eps.api, users, ASKED);
        printf ("  approximate index: recall@10 against exact %.4f on %d users\n", s_recall (exact, approx, ASKED),
                (int) ASKED);
        //  The worker's own account of the index: cells, probe count, build time.
        char line[1024];
        snprintf (path, sizeof path, "%s/logs/ivf-1.log", s_dir);
        FILE *lf = fopen (path, "r");
        while (lf && fgets (line, sizeof line, lf))
            if (strstr (line, "approximate index"))
                printf ("  rank worker: %s", strstr (line, "version"));
        if (lf)
            fclose (lf);
        for (size_t i = 0; i < ASKED; i++)
            free (approx[i]);
        free (approx);
        s_sweep (eps.api, users, SYN_USERS, "ivf", 1, seconds, 125, SYN_AIM_RATE, SYN_AIM_P99);
        pid2 = s_start_ranker (&eps, "ivf-2", "--index=ivf");
        if (s_wait_worker (eps.api, users, SYN_USERS, "ivf-2", 600))
            s_sweep (eps.api, users, SYN_USERS, "ivf", 2, seconds, 125, SYN_AIM_RATE, SYN_AIM_P99);
    }
    else
        printf ("  the approximate rank worker did not come up (see %s/logs/ivf-1.log)\n", s_dir);
    s_stop_ranker (pid);
    s_stop_ranker (pid2);
    s_down ();
    for (size_t i = 0; i < ASKED; i++)
        free (exact[i]);
    free (exact);
    for (uint32_t u = 0; u < SYN_USERS; u++)
        free (users[u]);
    free (users);
    return 0;
}

int
main (int argc, char **argv)
{
    const char *data = NULL, *cluster = NULL;
    double seconds = 3, start_rate = 500;
    long items = 1000000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp (argv[i], "--data") && i + 1 < argc)
            data = argv[++i];
        else if (!strcmp (argv[i], "--cluster") && i + 1 < argc)
            cluster = argv[++i];
        else if (!strcmp (argv[i], "--items") && i + 1 < argc)
            items = atol (argv[++i]);
        else if (!strcmp (argv[i], "--seconds") && i + 1 < argc)
            seconds = atof (argv[++i]);
        else if (!strcmp (argv[i], "--start-rate") && i + 1 < argc)
            start_rate = atof (argv[++i]);
        else if (!strcmp (argv[i], "--import"))
            s_import_only = true;
        else if (!strcmp (argv[i], "--rate") && i + 1 < argc)
            s_rate = atof (argv[++i]);
        else if (!strcmp (argv[i], "--client") && i + 1 < argc && (!strcmp (argv[i + 1], "zmtp") || !strcmp (argv[i + 1], "zmq")))
            s_libzmq = !strcmp (argv[++i], "zmq");
        else if (!strcmp (argv[i], "--trace") && i + 1 < argc) {
            s_trace = fopen (argv[++i], "w");
            if (!s_trace) {
                fprintf (stderr, "serve: cannot write %s\n", argv[i]);
                return 2;
            }
        }
        else {
            fprintf (stderr, "usage: serve --data Beauty.txt [--items N] [--seconds S] [--start-rate R] [--cluster DIR [--import]] [--rate R] [--trace FILE]\n"
                             "  --items 0 skips the synthetic catalogue; --data none skips Beauty;\n"
                             "  --cluster DIR sweeps the running cluster of `strata up --dir DIR` (serving Beauty);\n"
                             "  --import (with --cluster) measures serving with and without an import of Beauty under new ids;\n"
                             "  --rate R measures three windows at R recommend/s instead of sweeping;\n"
                             "  --trace FILE writes every request: kind, rate, send time and latency (ms)\n");
            return 2;
        }
    }
    cluster_program ("strata", s_cli, sizeof s_cli);
    s_print_damon ();
    int rc = 0;
    if (data && !strcmp (data, "none"))
        ;
    else if (!data || access (data, R_OK) != 0)
        printf ("serve benchmark, Beauty part skipped: the Beauty data (%s) is absent\n", data ? data : "--data");
    else
        rc |= s_beauty (data, cluster, seconds, start_rate);
    if (items > 0 && !cluster)
        rc |= s_synthetic ((uint32_t) items, seconds);
    return rc;
}
