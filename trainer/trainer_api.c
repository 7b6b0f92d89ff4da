/*  trainer_api: the trainer's api endpoint.

    TRAIN starts a full run, TRAIN_STATUS reports where it stands, and MODEL_INFO /
    MODEL_CHUNK publish the stored model versions to rank workers, chunk by chunk.
*/
#define LOG_MODULE "trainer"
#include "trainer_private.h"

#include <cblas.h>
#include <czmq.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void
s_fill_status (trainer_t *self, Strata__V1__TrainStatus *st)
{
    st->state = (char *) self->state;
    st->run_id = self->run_id;
    st->version = self->version;
    st->mode = self->mode;
    st->epoch = self->epoch;
    st->epochs = self->epochs;
    st->step = self->steps_done;
    st->steps = self->steps;
    st->loss = self->last_loss;
    st->valid_ndcg10 = self->last_val.ndcg10;
    st->valid_hr10 = self->last_val.hr10;
    st->valid_users = self->last_val.users;
    double secs = self->run_secs + (self->seg_start ? (double) (util_mono_ms () - self->seg_start) / 1000 : 0);
    st->seconds = secs;
    st->samples = self->samples;
    st->samples_per_second = secs > 0 ? (double) self->samples / secs : 0;
    double done = (double) self->epoch * self->steps + self->steps_done, total = (double) self->epochs * self->steps;
    st->eta_seconds = self->running && done > 0 ? secs / done * (total - done) : 0;
    size_t nw = 0;
    for (pool_worker_t *w = pool_first (self->pool); w; w = pool_next (self->pool))
        nw += w->role == STRATA__V1__ROLE__TRAIN;
    st->workers = (uint32_t) nw;
    st->events = self->events;
    st->redone = self->redone;
    st->stale = self->stale;
    st->refused = self->refused;
    st->message = self->message;
    st->updates = self->updates;
    st->items = self->all ? self->all->n_items : 0;
    st->users = self->all ? self->all->n_users : 0;
    st->weights_fnv = self->weights_fnv;   // hashing every weight per request would stall training
}

static void
s_model_info (trainer_t *self, wire_msg_t *msg)
{
    Strata__V1__ModelInfo info = STRATA__V1__MODEL_INFO__INIT;
    uint64_t v = versions_latest (self->store, CKPT_CF_MODELS);
    char *meta = v ? versions_meta (self->store, CKPT_CF_MODELS, v) : NULL;
    json_t *j = meta ? json_loads (meta, 0, NULL) : NULL;
    if (j) {
        info.version = v;
        info.bytes = (uint64_t) json_integer_value (json_object_get (j, "bytes"));
        info.chunk_bytes = (uint32_t) json_integer_value (json_object_get (j, "chunk_bytes"));
        info.chunks = (uint32_t) json_integer_value (json_object_get (j, "chunks"));
        const char *fnv = json_string_value (json_object_get (j, "fnv"));
        info.fnv = fnv ? strtoull (fnv, NULL, 16) : 0;
        info.meta = meta;
    }
    wire_send (self->api, msg->routing, WIRE_MODEL_INFO_REPLY, &info.base);
    json_decref (j);
    free (meta);
}

static void
s_model_chunk (trainer_t *self, wire_msg_t *msg)
{
    Strata__V1__ModelChunkRequest *req = (Strata__V1__ModelChunkRequest *) wire_unpack (
        &strata__v1__model_chunk_request__descriptor, msg->payload, NULL);
    if (!req) {
        wire_send_error (self->api, msg->routing, NULL, STRATA__V1__ERROR_CODE__BAD_PAYLOAD,
                         "MODEL_CHUNK needs a ModelChunkRequest");
        return;
    }
    size_t len;
    char *data = versions_chunk (self->store, CKPT_CF_MODELS, req->version, req->index, &len);
    if (!data)
        wire_send_error (self->api, msg->routing, NULL, STRATA__V1__ERROR_CODE__NOT_FOUND,
                         "model version %llu has no chunk %u (dropped, or never published)",
                         (unsigned long long) req->version, req->index);
    else {
        Strata__V1__ModelChunk c = STRATA__V1__MODEL_CHUNK__INIT;
        c.version = req->version;
        c.index = req->index;
        c.data.data = (uint8_t *) data;
        c.data.len = len;
        c.fnv = util_fnv1a64 (data, len);
        wire_send (self->api, msg->routing, WIRE_MODEL_CHUNK_REPLY, &c.base);
    }
    free (data);
    strata__v1__model_chunk_request__free_unpacked (req, NULL);
}

void
trainer_handle_api (trainer_t *self)
{
    for (int i = 0; i < 64; i++) {
        wire_msg_t msg;
        int rc = trainer_recv (self->api, 1 << 20, "api", &msg);
        if (rc == STRATA_EINTR)
            break;
        if (rc < 0)
            continue;
        if (!strcmp (msg.type, WIRE_TRAIN)) {
            Strata__V1__TrainRequest *req = (Strata__V1__TrainRequest *) wire_unpack (
                &strata__v1__train_request__descriptor, msg.payload, NULL);
            if (!req)
                wire_send_error (self->api, msg.routing, NULL, STRATA__V1__ERROR_CODE__BAD_PAYLOAD,
                                 "TRAIN needs a TrainRequest");
            else if (self->running && !self->incremental)
                wire_send_error (self->api, msg.routing, NULL, STRATA__V1__ERROR_CODE__UNAVAILABLE,
                                 "a full run is in progress (run %llu, epoch %u of %u)",
                                 (unsigned long long) self->run_id, self->epoch, self->epochs);
            else {
                Strata__V1__TrainMode mode = req->mode;
                if (mode == STRATA__V1__TRAIN_MODE__TRAIN_MODE_UNSPECIFIED)
                    mode = strcmp (self->cfg->mode, "async") ? STRATA__V1__TRAIN_MODE__SYNC
                                                             : STRATA__V1__TRAIN_MODE__ASYNC;
                uint32_t epochs = req->epochs ? req->epochs : (uint32_t) self->cfg->epochs;
                self->state = "fetching";
                if (trainer_load_data (self, NULL, NULL) < 0 || self->all->n_events == 0) {
                    if (self->all && self->all->n_events == 0)
                        snprintf (self->message, sizeof self->message, "the store holds no events to train on");
                    self->state = self->version ? (self->cfg->continuous ? "continuous" : "idle") : "idle";
                    self->running = false;
                    wire_send_error (self->api, msg.routing, NULL, STRATA__V1__ERROR_CODE__UNAVAILABLE, "%s",
                                     self->message);
                }
                else if (trainer_start_run (self, false, epochs, mode, NULL, 0) < 0) {
                    self->state = "failed";
                    wire_send_error (self->api, msg.routing, NULL, STRATA__V1__ERROR_CODE__INTERNAL, "%s",
                                     self->message);
                }
                else {
                    Strata__V1__TrainStatus st = STRATA__V1__TRAIN_STATUS__INIT;
                    s_fill_status (self, &st);
                    wire_send (self->api, msg.routing, WIRE_TRAIN_REPLY, &st.base);
                }
            }
            if (req)
                strata__v1__train_request__free_unpacked (req, NULL);
        }
        else if (!strcmp (msg.type, WIRE_TRAIN_STATUS)) {
            Strata__V1__TrainStatus st = STRATA__V1__TRAIN_STATUS__INIT;
            s_fill_status (self, &st);
            wire_send (self->api, msg.routing, WIRE_TRAIN_REPLY, &st.base);
        }
        else if (!strcmp (msg.type, WIRE_MODEL_INFO))
            s_model_info (self, &msg);
        else if (!strcmp (msg.type, WIRE_MODEL_CHUNK))
            s_model_chunk (self, &msg);
        else
            wire_send_error (self->api, msg.routing, NULL, STRATA__V1__ERROR_CODE__UNKNOWN_TYPE,
                             "unknown message type '%s' on the trainer's api endpoint", msg.type);
        wire_msg_reset (&msg);
    }
}
