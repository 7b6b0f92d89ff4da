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

    Usage: serve --data Beauty.txt [--seconds S] [--start-rate R]
*/
#include <czmq.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster.h"
#include "strata.pb-c.h"
#include "util.h"
#include "wire.h"

static char s_cli[4096], s_dir[256];

static int
s_run (const char *cmd)
{
    int rc = system (cmd);
    return rc == 0 ? 0 : -1;
}

typedef struct {
    double p50, p99, p999;
    uint64_t sent, answered, errors;
} result_t;

static int
s_cmp (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

//  Sends `rate` requests per second for `seconds` and waits up to 2 s for stragglers.
static void
s_load (const char *api, const char *type, char **users, size_t n_users, double rate, double seconds, result_t *out)
{
    memset (out, 0, sizeof *out);
    zsock_t *s = zsock_new_dealer (api);
    zsock_set_sndhwm (s, 0);
    zsock_set_rcvhwm (s, 0);
    size_t total = (size_t) (rate * seconds);
    int64_t *sent_us = calloc (total + 1, sizeof *sent_us);
    double *lat = calloc (total + 1, sizeof *lat);
    uint8_t *done = calloc (total + 1, 1);
    size_t nl = 0;
    int64_t start = zclock_usecs ();
    size_t next = 0;
    while (next < total || (out->answered + out->errors < total && zclock_usecs () - start < (int64_t) ((seconds + 2) * 1e6))) {
        int64_t now = zclock_usecs ();
        while (next < total && now >= start + (int64_t) ((double) next * 1e6 / rate)) {
            char id[24];
            snprintf (id, sizeof id, "%zu", next);
            uint8_t buf[256];
            size_t len = 0;
            if (!strcmp (type, WIRE_RECOMMEND)) {
                Strata__V1__Recommend q = STRATA__V1__RECOMMEND__INIT;
                q.request_id = id;
                q.user = users[next % n_users];
                q.k = 10;
                len = strata__v1__recommend__pack (&q, buf);
            }
            else {
                //  PING carries the request number in its frame for matching.
                memcpy (buf, &next, sizeof next);
                len = sizeof next;
            }
            sent_us[next] = zclock_usecs ();
            wire_send_bytes (s, NULL, type, buf, len);
            next++;
            out->sent++;
        }
        zmq_pollitem_t item = { zsock_resolve (s), 0, ZMQ_POLLIN, 0 };
        int64_t wait_us = next < total ? start + (int64_t) ((double) next * 1e6 / rate) - zclock_usecs () : 10000;
        zmq_poll (&item, 1, wait_us > 0 ? (long) (wait_us / 1000) : 0);
        while (zsock_events (s) & ZMQ_POLLIN) {
            wire_msg_t msg;
            if (wire_recv (s, false, 64 << 20, &msg) != 0)
                break;
            int64_t t = zclock_usecs ();
            size_t i = total;
            if (!strcmp (msg.type, WIRE_RECOMMEND_REPLY)) {
                Strata__V1__Recommendations *r = (Strata__V1__Recommendations *) wire_unpack (
                    &strata__v1__recommendations__descriptor, msg.payload, NULL);
                if (r) {
                    i = strtoull (r->request_id, NULL, 10);
                    strata__v1__recommendations__free_unpacked (r, NULL);
                }
            }
            else if (!strcmp (msg.type, WIRE_PING_REPLY) && zframe_size (msg.payload) == sizeof i)
                memcpy (&i, zframe_data (msg.payload), sizeof i);   // the echoed request number
            else
                out->errors++;
            if (i < total && !done[i]) {
                done[i] = 1;
                lat[nl++] = (double) (t - sent_us[i]) / 1000.0;
                out->answered++;
            }
            wire_msg_reset (&msg);
        }
    }
    qsort (lat, nl, sizeof *lat, s_cmp);
    out->p50 = nl ? lat[nl / 2] : 0;
    out->p99 = nl ? lat[(size_t) ((double) nl * 0.99)] : 0;
    out->p999 = nl ? lat[(size_t) ((double) nl * 0.999)] : 0;
    free (sent_us);
    free (lat);
    free (done);
    zsock_destroy (&s);
}

static void
s_print (const char *label, double rate, const result_t *r, const result_t *floor_r)
{
    printf ("  %-34s %7.0f/s  p50 %6.2f ms (x%4.1f)  p99 %6.2f ms (x%4.1f)  p99.9 %6.2f ms  %llu/%llu answered\n",
            label, rate, r->p50, floor_r && floor_r->p50 > 0 ? r->p50 / floor_r->p50 : 1.0, r->p99,
            floor_r && floor_r->p99 > 0 ? r->p99 / floor_r->p99 : 1.0, r->p999, (unsigned long long) r->answered,
            (unsigned long long) r->sent);
    fflush (stdout);
}

//  The serving sweep for the rank workers running now.
static void
s_sweep (const char *api, char **users, size_t n, int rankers, double seconds, double start_rate)
{
    result_t fl;
    s_load (api, WIRE_PING, users, n, 1000, seconds, &fl);
    char label[80];
    snprintf (label, sizeof label, "floor: PING, %d rank worker%s", rankers, rankers > 1 ? "s" : "");
    s_print (label, 1000, &fl, NULL);
    double best = 0;
    for (double rate = start_rate; rate <= 64000; rate *= 2) {
        result_t r;
        s_load (api, WIRE_RECOMMEND, users, n, rate, seconds, &r);
        snprintf (label, sizeof label, "recommend k=10, %d rank worker%s", rankers, rankers > 1 ? "s" : "");
        s_print (label, rate, &r, &fl);
        bool ok = r.answered == r.sent && r.p99 < 10.0;
        if (!ok)
            break;
        best = rate;
    }
    printf ("  highest rate with p99 under 10 ms, %d rank worker%s: %.0f recommend/s\n", rankers, rankers > 1 ? "s" : "",
            best);
    fflush (stdout);
}

int
main (int argc, char **argv)
{
    const char *data = NULL;
    double seconds = 3, start_rate = 500;
    for (int i = 1; i < argc; i++) {
        if (!strcmp (argv[i], "--data") && i + 1 < argc)
            data = argv[++i];
        else if (!strcmp (argv[i], "--seconds") && i + 1 < argc)
            seconds = atof (argv[++i]);
        else if (!strcmp (argv[i], "--start-rate") && i + 1 < argc)
            start_rate = atof (argv[++i]);
        else {
            fprintf (stderr, "usage: serve --data Beauty.txt [--seconds S] [--start-rate R]\n");
            return 2;
        }
    }
    if (!data || access (data, R_OK) != 0) {
        printf ("serve benchmark skipped: the Beauty data (%s) is absent\n", data ? data : "--data");
        return 0;
    }
    cluster_program ("strata", s_cli, sizeof s_cli);
    snprintf (s_dir, sizeof s_dir, "/tmp/strata-serve-bench-XXXXXX");
    if (!mkdtemp (s_dir))
        return 1;
    char cmd[9000];
    snprintf (cmd, sizeof cmd, "'%s' up --dir '%s' --port 0 --workers 1 --rankers 1 --detach > /dev/null 2>&1", s_cli,
              s_dir);
    int rc = s_run (cmd);
    snprintf (cmd, sizeof cmd, "'%s' import --dir '%s' --quiet '%s' > /dev/null", s_cli, s_dir, data);
    rc |= s_run (cmd);
    snprintf (cmd, sizeof cmd, "'%s' train --dir '%s' --epochs 1 --wait > /dev/null 2>&1", s_cli, s_dir);
    rc |= s_run (cmd);
    cluster_endpoints_t eps;
    char err[256];
    rc |= cluster_resolve (NULL, s_dir, &eps, err, sizeof err);
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
    bool ready = false;
    for (int i = 0; !rc && i < 300 && !ready; i++) {
        result_t r;
        s_load (eps.api, WIRE_RECOMMEND, users, n, 20, 0.25, &r);
        ready = r.answered > 0 && r.errors == 0;
        if (!ready)
            zclock_sleep (200);
    }
    if (rc || !ready) {
        printf ("serve benchmark: the cluster did not come up (see %s/logs)\n", s_dir);
        return 1;
    }
    printf ("serve benchmark: Amazon Beauty, 12,101 items, d=64, exact retrieval, %zu users, open loop, %.0f s per "
            "rate\n",
            n, seconds);
    s_sweep (eps.api, users, n, 1, seconds, start_rate);
    //  A second rank worker beside the first.
    char worker[4096], a1[300], a2[300], a3[300], a4[300];
    cluster_program ("strata-worker", worker, sizeof worker);
    snprintf (a1, sizeof a1, "--broker=%s", eps.workers);
    snprintf (a2, sizeof a2, "--api=%s", eps.api);
    snprintf (a3, sizeof a3, "--trainer-api=%s", eps.trainer);
    snprintf (a4, sizeof a4, "--dir=%s/rank-bench-2", s_dir);
    snprintf (cmd, sizeof cmd, "'%s' --role=rank %s %s %s %s --id=rank-2 --log-level=warn > '%s/logs/rank-2.log' 2>&1 & echo $!",
              worker, a1, a2, a3, a4, s_dir);
    FILE *p = popen (cmd, "r");
    int pid = 0;
    if (p && fscanf (p, "%d", &pid) != 1)
        pid = 0;
    if (p)
        pclose (p);
    zclock_sleep (3000);   // registered, and its stored-nothing start fetches the version
    s_sweep (eps.api, users, n, 2, seconds, start_rate);
    if (pid > 0)
        kill (pid, SIGTERM);
    snprintf (cmd, sizeof cmd, "'%s' down --dir '%s' > /dev/null 2>&1; rm -rf '%s'", s_cli, s_dir, s_dir);
    s_run (cmd);
    for (size_t i = 0; i < n; i++)
        free (users[i]);
    free (users);
    return 0;
}
