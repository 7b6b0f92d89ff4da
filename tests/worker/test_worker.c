/*  Unit: the worker process as an object. A worker runs as a czmq actor in the test
    process: it registers on the endpoint it is given (READY, with its role, id and
    capacity), heartbeats, answers a preprocessing JOB with a RESULT, and zactor_destroy's
    "$TERM" stops it at once, the worker saying DISCONNECT on its way out, even when it
    is waiting to reconnect. The test's ROUTER socket is where the broker would listen:
    it only reads what the worker sends and sends what a broker sends.
*/
#include <criterion/criterion.h>
#include <string.h>

#include "wire.h"
#include "worker.h"

static worker_config_t cfg;
static zsock_t *router;
static char endpoint[64];

//  A worker configuration from the table's defaults, as strata-worker would get it.
static void
s_config (const char *role, int64_t heartbeat_ms)
{
    char hb[32], err[256];
    snprintf (hb, sizeof hb, "%lld", (long long) heartbeat_ms);
    char *argv[] = { "test", "--role", (char *) role, "--broker", endpoint, "--id", "w-test", "--heartbeat-ms", hb,
                     "--liveness", "2" };
    cr_assert_eq (config_parse (worker_config_keys, &cfg, 11, argv, NULL, err, sizeof err), 0, "%s", err);
}

static void
s_setup (void)
{
    router = zsock_new (ZMQ_ROUTER);
    cr_assert_not_null (router);
    int port = zsock_bind (router, "tcp://127.0.0.1:*");
    cr_assert (port > 0);
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);
    zsock_set_rcvtimeo (router, 5000);
}

static void
s_teardown (void)
{
    zsock_destroy (&router);
    config_free (worker_config_keys, &cfg);
}

TestSuite (worker, .init = s_setup, .fini = s_teardown, .timeout = 30);

//  The next message from the worker whose type is not a heartbeat, into msg.
static void
s_next (wire_msg_t *msg)
{
    for (;;) {
        cr_assert_eq (wire_recv (router, true, 1 << 20, msg), 0, "nothing from the worker in time");
        if (strcmp (msg->type, WIRE_HEARTBEAT))
            return;
        wire_msg_reset (msg);
    }
}

Test (worker, an_unknown_role_is_refused)
{
    s_config ("juggler", 1000);
    cr_assert_null (worker_new (&cfg));
}

Test (worker, an_actor_registers_answers_a_job_and_stops_on_term)
{
    s_config ("preprocess", 200);
    worker_t *w = worker_new (&cfg);
    cr_assert_not_null (w);
    zactor_t *actor = zactor_new (worker_actor, w);
    cr_assert_not_null (actor);
    wire_msg_t msg;
    s_next (&msg);
    cr_assert_str_eq (msg.type, WIRE_READY);
    Strata__V1__WorkerHello *hello = (Strata__V1__WorkerHello *) wire_unpack (&strata__v1__worker_hello__descriptor,
                                                                             msg.payload, NULL);
    cr_assert_not_null (hello);
    cr_assert_str_eq (hello->worker_id, "w-test");
    cr_assert_eq (hello->role, STRATA__V1__ROLE__PREPROCESS);
    cr_assert_eq (hello->capacity, 2);
    strata__v1__worker_hello__free_unpacked (hello, NULL);
    zframe_t *worker = zframe_dup (msg.routing);
    wire_msg_reset (&msg);

    //  A job, as the broker sends it: one batch with one event.
    Strata__V1__Event ev = STRATA__V1__EVENT__INIT;
    ev.event_id = "e1";
    ev.user_id = "u1";
    ev.item_id = "i1";
    ev.type = STRATA__V1__EVENT_TYPE__VIEW;
    ev.timestamp_ms = 1700000000000;
    Strata__V1__Event *evp = &ev;
    Strata__V1__EventBatch batch = STRATA__V1__EVENT_BATCH__INIT;
    batch.batch_id = "b1";
    batch.n_events = 1;
    batch.events = &evp;
    uint8_t buf[512];
    Strata__V1__Job job = STRATA__V1__JOB__INIT;
    job.job_id = 42;
    job.payload.len = strata__v1__event_batch__pack (&batch, buf);
    job.payload.data = buf;
    cr_assert_eq (wire_send (router, worker, WIRE_JOB, &job.base), 0);
    s_next (&msg);
    cr_assert_str_eq (msg.type, WIRE_RESULT);
    Strata__V1__JobResult *res = (Strata__V1__JobResult *) wire_unpack (&strata__v1__job_result__descriptor,
                                                                        msg.payload, NULL);
    cr_assert_not_null (res);
    cr_assert_eq (res->job_id, 42);
    cr_assert_str_eq (res->batch_id, "b1");
    cr_assert_eq (res->n_events + res->n_rejects, 1);
    strata__v1__job_result__free_unpacked (res, NULL);
    wire_msg_reset (&msg);

    int64_t t0 = zclock_mono ();
    zactor_destroy (&actor);
    worker_destroy (&w);
    cr_assert_lt (zclock_mono () - t0, 1000, "stopping took %lld ms", (long long) (zclock_mono () - t0));
    s_next (&msg);
    cr_assert_str_eq (msg.type, WIRE_DISCONNECT);
    wire_msg_reset (&msg);
    zframe_destroy (&worker);
}

Test (worker, a_stop_is_not_kept_waiting_by_a_reconnect)
{
    //  Nobody answers its heartbeats: after two silent beats it waits to reconnect.
    s_config ("preprocess", 1000);
    worker_t *w = worker_new (&cfg);
    cr_assert_not_null (w);
    zactor_t *actor = zactor_new (worker_actor, w);
    wire_msg_t msg;
    s_next (&msg);
    cr_assert_str_eq (msg.type, WIRE_READY);
    wire_msg_reset (&msg);
    zclock_sleep (2400);   // past liveness x heartbeat: in its second-long backoff pause now
    int64_t t0 = zclock_mono ();
    zactor_destroy (&actor);
    worker_destroy (&w);
    cr_assert_lt (zclock_mono () - t0, 500, "stopping took %lld ms", (long long) (zclock_mono () - t0));
}
