/*  Unit: the trainer daemon run inside the test process (trainer_actor), on ephemeral
    endpoints with its store in a temporary directory, driven through its real ZeroMQ
    sockets as a client, a rank worker and a train worker would: status, published
    versions served chunk by chunk, worker registration and heartbeats, bad input
    answered with errors, and a TRAIN the broker cannot feed refused with the reason.
*/
#include <criterion/criterion.h>
#include <czmq.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "hyper.h"
#include "harness.h"
#include "log.h"
#include "trainer.h"
#include "util.h"
#include "versions.h"
#include "wire.h"

TestSuite (trainer, .init = harness_dir_setup, .fini = harness_dir_teardown);

typedef struct {
    trainer_config_t cfg;
    trainer_t *trainer;
    zactor_t *actor;
    char api[128], workers[128];
} fixture_t;

//  The configuration of a trainer on ephemeral ports (api: its api endpoint) whose
//  broker is an address nobody listens on.
static void
s_config (trainer_config_t *cfg, const char *api)
{
    char dir[600], api_arg[200];
    snprintf (dir, sizeof dir, "--dir=%s", harness_dir);
    snprintf (api_arg, sizeof api_arg, "--api=%s", api);
    char *argv[] = { "strata-trainer", dir, "--workers=tcp://127.0.0.1:!", api_arg, "--broker=tcp://127.0.0.1:9",
                     "--timeout-ms=300", "--heartbeat-ms=100", "--log-level=error", NULL };
    char err[256];
    cr_assert_eq (config_parse (trainer_config_keys, cfg, 8, argv, NULL, err, sizeof err), 0, "%s", err);
    log_set_level_name (cfg->log_level);
}

static void
s_start (fixture_t *f)
{
    memset (f, 0, sizeof *f);
    s_config (&f->cfg, "tcp://127.0.0.1:!");
    f->trainer = trainer_new (&f->cfg);
    cr_assert_not_null (f->trainer);
    const char *names[] = { "api", "workers" };
    char *outs[] = { f->api, f->workers };
    for (int i = 0; i < 2; i++) {
        const char *ep = trainer_endpoint (f->trainer, names[i]);
        cr_assert (ep && !strncmp (ep, "tcp://127.0.0.1:", 16), "%s endpoint: %s", names[i], ep ? ep : "(none)");
        snprintf (outs[i], 128, "%s", ep);
    }
    cr_assert_null (trainer_endpoint (f->trainer, "ingest"));
    f->actor = zactor_new (trainer_actor, f->trainer);
    cr_assert_not_null (f->actor);
}

static void
s_stop (fixture_t *f)
{
    zactor_destroy (&f->actor);
    trainer_destroy (&f->trainer);
    config_free (trainer_config_keys, &f->cfg);
}

static zsock_t *
s_dealer (const char *endpoint)
{
    zsock_t *s = zsock_new (ZMQ_DEALER);
    zsock_set_linger (s, 0);
    zsock_set_rcvtimeo (s, 5000);
    cr_assert_eq (zsock_connect (s, "%s", endpoint), 0);
    return s;
}

//  Sends a request and receives the reply (type into msg->type).
static void
s_ask (zsock_t *s, const char *type, const ProtobufCMessage *req, wire_msg_t *msg)
{
    cr_assert_eq (wire_send (s, NULL, type, req), 0);
    cr_assert_eq (wire_recv (s, false, 0, msg), 0, "no answer to %s", type);
}

static Strata__V1__TrainStatus *
s_status (zsock_t *api)
{
    wire_msg_t msg;
    Strata__V1__TrainStatusRequest req = STRATA__V1__TRAIN_STATUS_REQUEST__INIT;
    s_ask (api, WIRE_TRAIN_STATUS, &req.base, &msg);
    cr_assert_str_eq (msg.type, WIRE_TRAIN_REPLY);
    Strata__V1__TrainStatus *st
        = (Strata__V1__TrainStatus *) wire_unpack (&strata__v1__train_status__descriptor, msg.payload, NULL);
    wire_msg_reset (&msg);
    cr_assert_not_null (st);
    return st;
}

static Strata__V1__Error *
s_error (wire_msg_t *msg)
{
    cr_assert_str_eq (msg->type, WIRE_ERROR);
    Strata__V1__Error *e = (Strata__V1__Error *) wire_unpack (&strata__v1__error__descriptor, msg->payload, NULL);
    wire_msg_reset (msg);
    cr_assert_not_null (e);
    return e;
}

Test (trainer, answers_its_status_on_ephemeral_endpoints)
{
    fixture_t f;
    s_start (&f);
    zsock_t *api = s_dealer (f.api);
    Strata__V1__TrainStatus *st = s_status (api);
    cr_assert_str_eq (st->state, "idle");
    cr_assert_eq (st->version, 0);
    cr_assert_eq (st->workers, 0);
    strata__v1__train_status__free_unpacked (st, NULL);
    wire_msg_t msg;
    Strata__V1__ModelInfoRequest mi = STRATA__V1__MODEL_INFO_REQUEST__INIT;
    s_ask (api, WIRE_MODEL_INFO, &mi.base, &msg);
    cr_assert_str_eq (msg.type, WIRE_MODEL_INFO_REPLY);
    Strata__V1__ModelInfo *info
        = (Strata__V1__ModelInfo *) wire_unpack (&strata__v1__model_info__descriptor, msg.payload, NULL);
    wire_msg_reset (&msg);
    cr_assert (info && info->version == 0, "a version before any was published");
    strata__v1__model_info__free_unpacked (info, NULL);
    zsock_destroy (&api);
    s_stop (&f);
}

Test (trainer, serves_a_published_version_chunk_by_chunk)
{
    //  A version published in the trainer's store before it starts, as a run would have.
    char path[600];
    snprintf (path, sizeof path, "%s/trainer", harness_dir);
    store_t *st = checkpoint_open (path);
    cr_assert_not_null (st);
    size_t len = 2 * VERSIONS_CHUNK_BYTES + 12345;
    uint8_t *blob = malloc (len);
    for (size_t i = 0; i < len; i++)
        blob[i] = (uint8_t) (i * 131 + (i >> 11));
    json_t *meta = json_pack ("{s:s}", "trained", "yes");
    cr_assert_eq (versions_put (st, CKPT_CF_MODELS, 7, blob, len, VERSIONS_CHUNK_BYTES, 0, meta, 3), 0);
    json_decref (meta);
    store_destroy (&st);

    fixture_t f;
    s_start (&f);
    zsock_t *api = s_dealer (f.api);
    wire_msg_t msg;
    Strata__V1__ModelInfoRequest mi = STRATA__V1__MODEL_INFO_REQUEST__INIT;
    s_ask (api, WIRE_MODEL_INFO, &mi.base, &msg);
    Strata__V1__ModelInfo *info
        = (Strata__V1__ModelInfo *) wire_unpack (&strata__v1__model_info__descriptor, msg.payload, NULL);
    wire_msg_reset (&msg);
    cr_assert_not_null (info);
    cr_assert_eq (info->version, 7);
    cr_assert_eq (info->bytes, len);
    cr_assert_eq (info->chunks, 3);
    cr_assert_eq (info->fnv, util_fnv1a64 (blob, len));
    cr_assert (strstr (info->meta, "\"trained\":\"yes\""), "%s", info->meta);
    uint8_t *back = malloc (len);
    size_t off = 0;
    for (uint32_t c = 0; c < info->chunks; c++) {
        Strata__V1__ModelChunkRequest req = STRATA__V1__MODEL_CHUNK_REQUEST__INIT;
        req.version = 7;
        req.index = c;
        s_ask (api, WIRE_MODEL_CHUNK, &req.base, &msg);
        cr_assert_str_eq (msg.type, WIRE_MODEL_CHUNK_REPLY);
        Strata__V1__ModelChunk *ch
            = (Strata__V1__ModelChunk *) wire_unpack (&strata__v1__model_chunk__descriptor, msg.payload, NULL);
        wire_msg_reset (&msg);
        cr_assert (ch && ch->index == c && ch->fnv == util_fnv1a64 (ch->data.data, ch->data.len));
        cr_assert_leq (off + ch->data.len, len);
        memcpy (back + off, ch->data.data, ch->data.len);
        off += ch->data.len;
        strata__v1__model_chunk__free_unpacked (ch, NULL);
    }
    cr_assert_eq (off, len);
    cr_assert_eq (memcmp (back, blob, len), 0);
    //  A chunk past the end, and a version never published: NOT_FOUND errors.
    Strata__V1__ModelChunkRequest req = STRATA__V1__MODEL_CHUNK_REQUEST__INIT;
    req.version = 7;
    req.index = 3;
    s_ask (api, WIRE_MODEL_CHUNK, &req.base, &msg);
    Strata__V1__Error *e = s_error (&msg);
    cr_assert_eq (e->code, STRATA__V1__ERROR_CODE__NOT_FOUND);
    strata__v1__error__free_unpacked (e, NULL);
    strata__v1__model_info__free_unpacked (info, NULL);
    free (back);
    free (blob);
    zsock_destroy (&api);
    s_stop (&f);
}

//  A train worker registered with the trainer (READY), once its first heartbeat came.
static zsock_t *
s_train_worker (fixture_t *f, const char *id)
{
    zsock_t *w = s_dealer (f->workers);
    Strata__V1__WorkerHello hello = STRATA__V1__WORKER_HELLO__INIT;
    hello.worker_id = (char *) id;
    hello.role = STRATA__V1__ROLE__TRAIN;
    hello.capacity = 1;
    cr_assert_eq (wire_send (w, NULL, WIRE_READY, &hello.base), 0);
    wire_msg_t msg;
    cr_assert_eq (wire_recv (w, false, 0, &msg), 0, "no heartbeat from the trainer");
    cr_assert_str_eq (msg.type, WIRE_HEARTBEAT);
    wire_msg_reset (&msg);
    return w;
}

Test (trainer, registers_a_train_worker_and_heartbeats_it)
{
    fixture_t f;
    s_start (&f);
    zsock_t *w = s_train_worker (&f, "in-process");
    zsock_t *api = s_dealer (f.api);
    Strata__V1__TrainStatus *st = s_status (api);
    cr_assert_eq (st->workers, 1);
    strata__v1__train_status__free_unpacked (st, NULL);
    zsock_destroy (&w);
    zsock_destroy (&api);
    s_stop (&f);
}

Test (trainer, takes_a_gradient_only_from_the_worker_the_task_was_sent_to)
{
    fixture_t f;
    s_start (&f);
    //  A registered train worker that holds no task, and a peer that never registered,
    //  each send a gradient for a task id: both refused and counted.
    zsock_t *w = s_train_worker (&f, "no-task");
    wire_msg_t msg;
    zsock_t *stranger = s_dealer (f.workers);
    float dense[4] = { 1, 2, 3, 4 };
    Strata__V1__TrainGradient g = STRATA__V1__TRAIN_GRADIENT__INIT;
    g.task_id = 1;
    g.positions = 10;
    g.dense.data = (uint8_t *) dense;
    g.dense.len = sizeof dense;
    cr_assert_eq (wire_send (w, NULL, WIRE_GRADIENT, &g.base), 0);
    cr_assert_eq (wire_send (stranger, NULL, WIRE_GRADIENT, &g.base), 0);
    cr_assert_eq (wire_recv (stranger, false, 0, &msg), 0);
    cr_expect_str_eq (msg.type, WIRE_DISCONNECT, "an unregistered peer is told to register");
    wire_msg_reset (&msg);
    zsock_t *api = s_dealer (f.api);
    //  The two peers' messages travel on connections of their own: wait for both.
    Strata__V1__TrainStatus *st = s_status (api);
    for (int64_t until = zclock_mono () + 5000; st->refused < 2 && zclock_mono () < until;) {
        strata__v1__train_status__free_unpacked (st, NULL);
        zclock_sleep (10);
        st = s_status (api);
    }
    cr_expect_eq (st->refused, 2);
    cr_expect_eq (st->samples, 0);
    strata__v1__train_status__free_unpacked (st, NULL);
    zsock_destroy (&w);
    zsock_destroy (&stranger);
    zsock_destroy (&api);
    s_stop (&f);
}

Test (trainer, answers_bad_input_with_errors)
{
    fixture_t f;
    s_start (&f);
    zsock_t *api = s_dealer (f.api);
    wire_msg_t msg;
    //  An unknown type, a payload that does not decode, and a message of the wrong protocol.
    s_ask (api, "FROBNICATE", NULL, &msg);
    Strata__V1__Error *e = s_error (&msg);
    cr_assert_eq (e->code, STRATA__V1__ERROR_CODE__UNKNOWN_TYPE);
    strata__v1__error__free_unpacked (e, NULL);
    cr_assert_eq (wire_send_bytes (api, NULL, WIRE_MODEL_CHUNK, "\xff\xff\xff", 3), 0);
    cr_assert_eq (wire_recv (api, false, 0, &msg), 0);
    e = s_error (&msg);
    cr_assert_eq (e->code, STRATA__V1__ERROR_CODE__BAD_PAYLOAD);
    strata__v1__error__free_unpacked (e, NULL);
    zmsg_t *bad = zmsg_new ();
    zmsg_addstr (bad, "NOTSTRATA");
    zmsg_addstr (bad, "TRAIN_STATUS");
    zmsg_send (&bad, api);
    cr_assert_eq (wire_recv (api, false, 0, &msg), 0);
    e = s_error (&msg);
    cr_assert_eq (e->code, STRATA__V1__ERROR_CODE__BAD_FRAMING);
    strata__v1__error__free_unpacked (e, NULL);
    //  Still serving.
    Strata__V1__TrainStatus *st = s_status (api);
    cr_assert_str_eq (st->state, "idle");
    strata__v1__train_status__free_unpacked (st, NULL);
    zsock_destroy (&api);
    s_stop (&f);
}

Test (trainer, refuses_a_run_its_broker_cannot_feed)
{
    fixture_t f;
    s_start (&f);
    zsock_t *api = s_dealer (f.api);
    wire_msg_t msg;
    Strata__V1__TrainRequest req = STRATA__V1__TRAIN_REQUEST__INIT;
    req.epochs = 1;
    s_ask (api, WIRE_TRAIN, &req.base, &msg);
    Strata__V1__Error *e = s_error (&msg);
    cr_assert_eq (e->code, STRATA__V1__ERROR_CODE__UNAVAILABLE);
    cr_assert (strstr (e->message, "tcp://127.0.0.1:9"), "the reason names the broker: %s", e->message);
    strata__v1__error__free_unpacked (e, NULL);
    Strata__V1__TrainStatus *st = s_status (api);
    cr_assert_str_eq (st->state, "idle");
    strata__v1__train_status__free_unpacked (st, NULL);
    zsock_destroy (&api);
    s_stop (&f);
}

Test (trainer, one_that_cannot_bind_does_not_start)
{
    trainer_config_t cfg = { 0 };
    s_config (&cfg, "nonsense://x");
    trainer_t *trainer = trainer_new (&cfg);
    cr_assert_null (trainer);
    trainer_destroy (&trainer);
    config_free (trainer_config_keys, &cfg);
}

//  A restarting trainer tells "no checkpoint yet" (start afresh, quietly) from one made
//  by a model of another shape, and refuses settings by name before building anything.
Test (trainer, checkpoint_and_settings_codes)
{
    char path[600];
    snprintf (path, sizeof path, "%s/ckpt", harness_dir);
    store_t *st = checkpoint_open (path);
    cr_assert_not_null (st);
    model_config_t mc;
    model_config_default (&mc);
    mc.dim = 8;
    mc.max_len = 4;
    mc.blocks = 1;
    mc.ffn = 16;
    mc.batch = 2;
    mc.rank_negatives = 0;
    model_t *m = model_new (&mc, 5);
    cr_assert_not_null (m);
    cr_expect_eq (checkpoint_load (st, m), STRATA_ENOTFOUND, "an empty store");
    cr_assert_eq (checkpoint_save (st, m, "{}"), 0);
    cr_expect_eq (checkpoint_load (st, m), 0);
    model_config_t wider = mc;
    wider.dim = 16;
    model_t *other = model_new (&wider, 5);
    cr_assert_not_null (other);
    cr_expect_eq (checkpoint_load (st, other), STRATA_ECORRUPT, "a checkpoint of another shape");
    model_destroy (&other);
    model_destroy (&m);
    store_destroy (&st);

    static const struct {
        const char *label;
        const char *sampler, *rank_sampler, *rank_widths;
        int code;
    } cases[] = {
        { "defaults", NULL, NULL, NULL, 0 },
        { "uniform", "uniform", "popularity", "16,8", 0 },
        { "unknown sampler", "zipf", NULL, NULL, STRATA_EINVAL },
        { "unknown rank sampler", NULL, "hard", NULL, STRATA_EINVAL },
        { "junk widths", NULL, NULL, "16,x", STRATA_EINVAL },
        { "too many widths", NULL, NULL, "8,8,8,8,8", STRATA_EINVAL },
        { "empty widths", NULL, NULL, "", STRATA_EINVAL },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        hyper_t h = { .dim = 8, .blocks = 1, .max_len = 4, .batch = 2, .shards = 1 };
        h.sampler = (char *) cases[c].sampler;
        h.rank_sampler = (char *) cases[c].rank_sampler;
        h.rank_widths = (char *) cases[c].rank_widths;
        model_config_t hmc;
        plan_config_t hpc;
        char err[256] = "";
        cr_expect_eq (hyper_configs (&h, &hmc, &hpc, err, sizeof err), cases[c].code, "%s: %s", cases[c].label, err);
    }
    cr_expect_eq (plan_sampler_parse ("popularity"), PLAN_POPULARITY);
    cr_expect_eq (plan_sampler_parse ("Uniform"), STRATA_EINVAL, "names are exact");
}
