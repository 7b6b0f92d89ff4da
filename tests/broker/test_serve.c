/*  Unit: the broker's serving dispatch (broker/serve.c) over real ZeroMQ sockets.

    A test plays the broker's loop (requests in, dispatch, results in) and a rank worker
    on a DEALER, so it sees every message that passes: jobs ready together travel in one
    SERVE_JOBS; a worker holds at most `pipeline` of them unanswered, and requests that
    arrive meanwhile wait and go together in the next one once results come back; with
    no limit every dispatch sends at once; a refused request gets its Error and its
    code.
*/
#include <criterion/criterion.h>
#include <string.h>

#include "harness.h"
#include "knowledge.h"
#include "pool.h"
#include "serve.h"
#include "wire.h"

static char *s_dir;
static knowledge_t *s_kb;
static pool_t *s_pool;
static zsock_t *s_api, *s_workers, *s_client, *s_worker;
static pool_worker_t *s_w;

//  A worker on `dealer` registers as a rank worker, as strata-worker --role rank does.
static pool_worker_t *
s_register (zsock_t *dealer, const char *id)
{
    Strata__V1__WorkerHello hello = STRATA__V1__WORKER_HELLO__INIT;
    hello.worker_id = (char *) id;
    hello.role = STRATA__V1__ROLE__RANK;
    hello.capacity = 64;
    cr_assert_eq (wire_send (dealer, NULL, WIRE_READY, &hello.base), 0);
    wire_msg_t msg;
    cr_assert_eq (wire_recv (s_workers, true, 0, &msg), 0);
    pool_worker_t *w = pool_register (s_pool, msg.routing, &hello, NULL, NULL);
    wire_msg_reset (&msg);
    cr_assert_not_null (w);
    return w;
}

static void
s_setup (void)
{
    s_dir = harness_tmpdir ();
    cr_assert_not_null (s_dir);
    s_kb = knowledge_open (s_dir);
    cr_assert_not_null (s_kb);
    s_pool = pool_new (1000, 3);
    s_api = wire_bind_router ("inproc://test-serve-api", 1 << 20);
    s_workers = wire_bind_router ("inproc://test-serve-workers", 1 << 20);
    cr_assert (s_api && s_workers);
    s_client = zsock_new_dealer (">inproc://test-serve-api");
    s_worker = zsock_new_dealer (">inproc://test-serve-workers");
    cr_assert (s_client && s_worker);
    s_w = s_register (s_worker, "rank-1");
}

static void
s_teardown (void)
{
    zsock_destroy (&s_client);
    zsock_destroy (&s_worker);
    zsock_destroy (&s_api);
    zsock_destroy (&s_workers);
    pool_destroy (&s_pool);
    knowledge_destroy (&s_kb);
    harness_rmtree (s_dir);
    free (s_dir);
}

TestSuite (serve_dispatch, .init = s_setup, .fini = s_teardown);

//  The broker's dispatch over the test's sockets: history 50, 3 attempts, 2 s timeout.
static serve_t *
s_serve (uint32_t pipeline, int64_t hedge_ms)
{
    serve_config_t cfg = { 50, 3, 2000, pipeline, hedge_ms };
    serve_t *serve = serve_new (&cfg, s_kb, s_pool, s_api, s_workers);
    cr_assert_not_null (serve);
    return serve;
}

//  n PINGs from the client, taken in by the broker's side as its loop would.
static void
s_requests (serve_t *serve, int n)
{
    for (int i = 0; i < n; i++)
        cr_assert_eq (wire_send (s_client, NULL, WIRE_PING, NULL), 0);
    for (int i = 0; i < n; i++) {
        wire_msg_t msg;
        cr_assert_eq (wire_recv (s_api, true, 0, &msg), 0);
        cr_assert_eq (serve_request (serve, msg.routing, msg.type, msg.payload), 0);
        wire_msg_reset (&msg);
    }
}

//  The jobs of the next SERVE_JOBS the worker gets (their ids appended to ids), or -1
//  when none comes within 200 ms.
static int
s_takes (zsock_t *worker, uint64_t *ids, size_t *n_ids)
{
    zpoller_t *poller = zpoller_new (worker, NULL);
    bool ready = zpoller_wait (poller, 200) != NULL;
    zpoller_destroy (&poller);
    if (!ready)
        return -1;
    wire_msg_t msg;
    cr_assert_eq (wire_recv (worker, false, 0, &msg), 0);
    cr_assert_str_eq (msg.type, WIRE_SERVE_JOBS);
    Strata__V1__ServeJobs *b = (Strata__V1__ServeJobs *) wire_unpack (&strata__v1__serve_jobs__descriptor,
                                                                       msg.payload, NULL);
    cr_assert_not_null (b);
    int n = (int) b->n_jobs;
    for (size_t i = 0; i < b->n_jobs; i++) {
        Strata__V1__ServeJob *j = strata__v1__serve_job__unpack (NULL, b->jobs[i].len, b->jobs[i].data);
        cr_assert_not_null (j);
        cr_assert_str_eq (j->type, WIRE_PING);
        ids[(*n_ids)++] = j->job_id;
        strata__v1__serve_job__free_unpacked (j, NULL);
    }
    strata__v1__serve_jobs__free_unpacked (b, NULL);
    wire_msg_reset (&msg);
    return n;
}

static int
s_worker_takes (uint64_t *ids, size_t *n_ids)
{
    return s_takes (s_worker, ids, n_ids);
}

//  `worker` answers the jobs ids[0..n) in one SERVE_RESULTS closing `messages`
//  messages; the broker's side takes it in and the client gets `replies` replies.
static void
s_answers (zsock_t *worker, serve_t *serve, const uint64_t *ids, size_t n, uint32_t messages, size_t replies)
{
    Strata__V1__ServeResult *rp[64], r[64];
    for (size_t i = 0; i < n; i++) {
        r[i] = (Strata__V1__ServeResult) STRATA__V1__SERVE_RESULT__INIT;
        r[i].job_id = ids[i];
        r[i].type = WIRE_PING_REPLY;
        rp[i] = &r[i];
    }
    Strata__V1__ServeResults out = STRATA__V1__SERVE_RESULTS__INIT;
    out.n_results = n;
    out.results = rp;
    out.messages = messages;
    cr_assert_eq (wire_send (worker, NULL, WIRE_SERVE_RESULTS, &out.base), 0);
    wire_msg_t msg;
    cr_assert_eq (wire_recv (s_workers, true, 0, &msg), 0);
    serve_results (serve, pool_lookup (s_pool, msg.routing), msg.payload);
    wire_msg_reset (&msg);
    for (size_t i = 0; i < replies; i++) {
        cr_assert_eq (wire_recv (s_client, false, 0, &msg), 0);
        cr_expect_str_eq (msg.type, WIRE_PING_REPLY);
        wire_msg_reset (&msg);
    }
}

static void
s_worker_answers (serve_t *serve, const uint64_t *ids, size_t n, uint32_t messages)
{
    s_answers (s_worker, serve, ids, n, messages, n);
}

Test (serve_dispatch, requests_wait_while_the_worker_pipeline_is_full)
{
    serve_t *serve = s_serve (2, 0);
    uint64_t ids[64];
    size_t n_ids = 0;
    //  Ready together: one message. A second message may follow while the first is
    //  worked on.
    s_requests (serve, 3);
    serve_dispatch (serve);
    cr_assert_eq (s_worker_takes (ids, &n_ids), 3, "three requests ready together travel together");
    s_requests (serve, 2);
    serve_dispatch (serve);
    cr_assert_eq (s_worker_takes (ids, &n_ids), 2);
    cr_expect_eq (s_w->messages, 2u);
    //  The pipeline is full: what arrives now waits at the broker, over several rounds.
    s_requests (serve, 3);
    serve_dispatch (serve);
    s_requests (serve, 1);
    serve_dispatch (serve);
    cr_assert_eq (s_worker_takes (ids, &n_ids), -1, "a third message was sent past the pipeline of 2");
    //  The worker answers both messages at once: everything that waited goes in one.
    s_worker_answers (serve, ids, n_ids, 2);
    cr_expect_eq (s_w->messages, 0u);
    serve_dispatch (serve);
    n_ids = 0;
    cr_assert_eq (s_worker_takes (ids, &n_ids), 4, "the four that waited travel together");
    s_worker_answers (serve, ids, n_ids, 1);
    serve_counts_t c;
    serve_counts (serve, &c);
    cr_expect_eq (c.served, 9u);
    cr_expect_eq (c.messages, 3u, "9 requests in 3 messages");
    cr_expect_eq (c.failed, 0u);
    serve_destroy (&serve);
}

Test (serve_dispatch, without_a_limit_each_round_sends_at_once)
{
    serve_t *serve = s_serve (0, 0);
    uint64_t ids[64];
    size_t n_ids = 0;
    for (int round = 0; round < 4; round++) {
        s_requests (serve, 1);
        serve_dispatch (serve);
        cr_assert_eq (s_worker_takes (ids, &n_ids), 1, "round %d", round);
    }
    s_worker_answers (serve, ids, n_ids, 4);
    serve_counts_t c;
    serve_counts (serve, &c);
    cr_expect_eq (c.served, 4u);
    cr_expect_eq (c.messages, 4u);
    serve_destroy (&serve);
}

Test (serve_dispatch, a_miscounted_worker_is_not_held_forever)
{
    //  Results that do not say which messages they answer (0) leave the count high;
    //  with nothing in flight the worker is open again.
    serve_t *serve = s_serve (1, 0);
    uint64_t ids[64];
    size_t n_ids = 0;
    s_requests (serve, 2);
    serve_dispatch (serve);
    cr_assert_eq (s_worker_takes (ids, &n_ids), 2);
    s_worker_answers (serve, ids, n_ids, 0);
    cr_expect_eq (s_w->messages, 1u);
    n_ids = 0;
    s_requests (serve, 1);
    serve_dispatch (serve);
    cr_assert_eq (s_worker_takes (ids, &n_ids), 1, "held back by a count nothing will lower");
    s_worker_answers (serve, ids, n_ids, 1);
    serve_destroy (&serve);
}

Test (serve_dispatch, a_job_held_by_a_silent_worker_goes_to_another_too)
{
    //  A second rank worker.
    zsock_t *w2 = zsock_new_dealer (">inproc://test-serve-workers");
    cr_assert_not_null (w2);
    pool_worker_t *second = s_register (w2, "rank-2");
    wire_msg_t msg;
    serve_t *serve = s_serve (2, 100);
    uint64_t first_ids[8], second_ids[8];
    size_t n1 = 0, n2 = 0;
    s_requests (serve, 1);
    serve_dispatch (serve);
    zsock_t *holder = s_takes (s_worker, first_ids, &n1) == 1 ? s_worker : w2;
    zsock_t *other = holder == s_worker ? w2 : s_worker;
    pool_worker_t *holder_w = holder == s_worker ? s_w : second;
    if (holder == w2)
        cr_assert_eq (s_takes (w2, first_ids, &n1), 1);
    cr_expect_leq (serve_next_wake (serve), zclock_mono () + 100, "the poll must wake for the hedge");
    //  A worker heard from meanwhile is busy, not lost: its job waits for it.
    zclock_sleep (150);
    pool_touch (s_pool, holder_w);
    serve_dispatch (serve);
    cr_expect_gt (serve_next_wake (serve), zclock_mono (),
                  "the poll would spin until the busy worker answers (next look in the past)");
    cr_expect_eq (s_takes (other, second_ids, &n2), -1, "hedged a job of a worker that was heard from");
    //  Silent for longer than hedge-ms: the other worker gets the same job.
    zclock_sleep (150);
    serve_dispatch (serve);
    cr_assert_eq (s_takes (other, second_ids, &n2), 1, "the silent worker's job was not hedged");
    cr_expect_eq (second_ids[0], first_ids[0]);
    serve_counts_t c;
    serve_counts (serve, &c);
    cr_expect_eq (c.hedged, 1u);
    //  The other answers: that is the reply. The first answers late: ignored.
    s_answers (other, serve, second_ids, 1, 1, 1);
    s_answers (holder, serve, first_ids, 1, 1, 0);
    cr_expect_eq (s_w->inflight + second->inflight, 0u, "both slots freed");
    zsock_set_rcvtimeo (s_client, 100);
    cr_expect_neq (wire_recv (s_client, false, 0, &msg), 0, "a second reply to one request");
    serve_counts (serve, &c);
    cr_expect_eq (c.served, 1u);
    cr_expect_eq (c.failed, 0u);
    //  Answered: nothing more goes out.
    zclock_sleep (150);
    serve_dispatch (serve);
    cr_expect_eq (s_takes (other, second_ids, &n2), -1);
    serve_destroy (&serve);
    zsock_destroy (&w2);
}

//  User u-garbled, whose one stored event no longer decodes.
static void
s_garbled_user (void)
{
    const char *ids[] = { "garble" };
    const void *data[] = { "raw" };
    size_t lens[] = { 3 };
    uint64_t seq;
    cr_assert_eq (knowledge_journal_append (s_kb, 1, ids, data, lens, true, &seq), 0);
    Strata__V1__Event ev = STRATA__V1__EVENT__INIT, *evp = &ev;
    ev.event_id = "e-garbled";
    ev.user_id = "u-garbled";
    ev.item_id = "i1";
    ev.type = STRATA__V1__EVENT_TYPE__VIEW;
    ev.timestamp_ms = 1700000000000;
    Strata__V1__JobResult res = STRATA__V1__JOB_RESULT__INIT;
    res.sequence = seq;
    res.batch_id = "garble";
    res.n_events = 1;
    res.events = &evp;
    Strata__V1__Ack ack;
    Strata__V1__ReasonCount rc[1], *rcp[1];
    cr_assert_eq (knowledge_apply (s_kb, &res, &ack, rc, rcp, 1), 0);
    uint32_t user;
    cr_assert_eq (knowledge_user_index (s_kb, "u-garbled", &user), 0);
    rocksdb_iterator_t *it = store_iter (knowledge_store (s_kb), KCF_EVENTS);
    rocksdb_iter_seek_to_first (it);
    cr_assert (rocksdb_iter_valid (it));
    size_t klen;
    char key[20];
    memcpy (key, rocksdb_iter_key (it, &klen), sizeof key);
    cr_assert_eq (klen, sizeof key);
    rocksdb_iter_destroy (it);
    cr_assert_eq (store_put (knowledge_store (s_kb), KCF_EVENTS, key, sizeof key, "\xff\xff\xff", 3), 0);
}

//  What serve_request answers each request, and the Error its client gets.
typedef struct {
    const char *what;
    const char *type;
    const char *user;        // RECOMMEND: its user (NULL: the payload is `junk`)
    bool no_worker;          // served through a pool without rank workers
    int rc;
    Strata__V1__ErrorCode code;   // the Error sent when rc < 0
} request_case_t;

static const request_case_t s_request_cases[] = {
    { "a PING", WIRE_PING, "", false, STRATA_OK, 0 },
    { "a RECOMMEND for a user never seen", WIRE_RECOMMEND, "nobody", false, STRATA_OK, 0 },
    { "a RECOMMEND that does not decode", WIRE_RECOMMEND, NULL, false, STRATA_EPROTOCOL,
      STRATA__V1__ERROR_CODE__BAD_PAYLOAD },
    { "a SEARCH that does not decode", WIRE_SEARCH, NULL, false, STRATA_EPROTOCOL,
      STRATA__V1__ERROR_CODE__BAD_PAYLOAD },
    { "a SIMILAR that does not decode", WIRE_SIMILAR, NULL, false, STRATA_EPROTOCOL,
      STRATA__V1__ERROR_CODE__BAD_PAYLOAD },
    { "no rank worker connected", WIRE_PING, "", true, STRATA_EUNAVAILABLE, STRATA__V1__ERROR_CODE__UNAVAILABLE },
    { "a user whose stored history does not decode", WIRE_RECOMMEND, "u-garbled", false, STRATA_ECORRUPT,
      STRATA__V1__ERROR_CODE__INTERNAL },
};

Test (serve_dispatch, refused_requests_say_why)
{
    s_garbled_user ();
    serve_t *serve = s_serve (2, 0);
    pool_t *empty = pool_new (1000, 3);
    serve_config_t cfg = { 50, 3, 2000, 2, 0 };
    serve_t *unstaffed = serve_new (&cfg, s_kb, empty, s_api, s_workers);
    cr_assert_not_null (unstaffed);
    for (size_t c = 0; c < sizeof s_request_cases / sizeof s_request_cases[0]; c++) {
        const request_case_t *tc = &s_request_cases[c];
        Strata__V1__Recommend rec = STRATA__V1__RECOMMEND__INIT;
        rec.user = (char *) tc->user;
        rec.k = 10;
        if (!tc->user)
            cr_assert_eq (wire_send_bytes (s_client, NULL, tc->type, "\xff\xff\xff", 3), 0);
        else
            cr_assert_eq (wire_send (s_client, NULL, tc->type, strcmp (tc->type, WIRE_PING) ? &rec.base : NULL), 0);
        wire_msg_t msg;
        cr_assert_eq (wire_recv (s_api, true, 0, &msg), 0);
        int rc = serve_request (tc->no_worker ? unstaffed : serve, msg.routing, msg.type, msg.payload);
        wire_msg_reset (&msg);
        cr_expect_eq (rc, tc->rc, "%s: %s, not %s", tc->what, strata_strerror (rc), strata_strerror (tc->rc));
        if (rc >= 0)
            continue;
        cr_assert_eq (wire_recv (s_client, false, 0, &msg), 0);
        cr_expect_str_eq (msg.type, WIRE_ERROR, "%s", tc->what);
        Strata__V1__Error *e = (Strata__V1__Error *) wire_unpack (&strata__v1__error__descriptor, msg.payload, NULL);
        cr_assert_not_null (e);
        cr_expect_eq (e->code, tc->code, "%s: error code %d", tc->what, e->code);
        strata__v1__error__free_unpacked (e, NULL);
        wire_msg_reset (&msg);
    }
    serve_counts_t n;
    serve_counts (serve, &n);
    cr_expect_eq (n.failed, 4u, "each refusal is counted");
    serve_destroy (&unstaffed);
    serve_destroy (&serve);
    pool_destroy (&empty);
}
