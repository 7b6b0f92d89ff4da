/*  rank_versions: where the rank worker's model versions come from and where they are
    kept. It asks the trainer's api endpoint for the newest version (MODEL_INFO),
    fetches a newer one chunk by chunk (WINDOW chunks in flight, each checked against
    its hash, the whole against the version's), stores it in the worker's RocksDB in
    one synced write (the newest keep-versions kept), and loads it on a thread of its
    own; the loaded version is swapped into the serving core between two batches of
    jobs, so no job waits for a download or fails because of one.

    The versions are kept by model/versions.h, the store the trainer publishes from,
    in the column family "models"; beside each, its approximate index once built
    (VERSIONS_EXTRA: rank_index.c's bytes), so a restart need not build it again.
*/
#define LOG_MODULE "rank"
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rank_private.h"
#include "util.h"
#include "versions.h"

enum { CF_DEFAULT, CF_MODELS, CF_COUNT };

#define WINDOW 4              // chunk requests in flight
#define CHUNK_TIMEOUT_MS 5000

static const char *const s_cfs[CF_COUNT] = { "default", "models" };

store_t *
rank_versions_open (const char *dir)
{
    return store_open (dir, s_cfs, CF_COUNT);
}

//  Keeps a fetched version (verified as it came) with the trainer's meta, in one synced
//  write that also drops versions older than the newest keep-versions.
static int
s_store_version (rank_worker_t *self, const download_t *d)
{
    json_t *meta = d->meta ? json_loads (d->meta, 0, NULL) : NULL;
    int rc = versions_put (self->store, CF_MODELS, d->version, d->blob, d->bytes, d->chunk_bytes, d->fnv, meta,
                           (int) self->cfg.keep_versions);
    json_decref (meta);
    return rc;
}

//  Keeps an approximate index built for a version beside it, so that a restart reads
//  it back instead of building it again (dropped with the version).
static void
s_store_index (rank_worker_t *self, served_t *s)
{
    size_t len;
    uint8_t *v = served_index_save (s, &self->cfg.serve, &len);
    if (!v)
        return;
    if (versions_put_extra (self->store, CF_MODELS, s->info.version, v, len) < 0)
        log_warn ("cannot keep the approximate index of version %llu", (unsigned long long) s->info.version);
    free (v);
}

void
rank_versions_load_stored (rank_worker_t *self)
{
    uint64_t version = versions_latest (self->store, CF_MODELS);
    if (!version)
        return;
    size_t bytes;
    int rc;
    uint8_t *blob = versions_read (self->store, CF_MODELS, version, &bytes, &rc);
    served_t *s = NULL;
    sample_t sample = { 0 };
    if (blob) {
        size_t saved_len = 0;
        char *saved = versions_extra (self->store, CF_MODELS, version, &saved_len);
        if (!saved && ranker_wants_sample (self->core))
            rank_catalogue_sample (self, &sample);
        s = served_new (&self->cfg.serve, blob, bytes, &sample, (const uint8_t *) saved, saved_len, NULL);
        sample_free (&sample);
        free (saved);
        s_store_index (self, s);
    }
    else
        log_error ("stored model version %llu is unreadable (%s); waiting for the trainer",
                   (unsigned long long) version, strata_strerror (rc));
    free (blob);
    if (s)
        ranker_swap (self->core, s);
}

static void
s_download_reset (download_t *d)
{
    free (d->blob);
    free (d->have);
    free (d->meta);
    memset (d, 0, sizeof *d);
}

static void *
s_loader_run (void *arg)
{
    rank_worker_t *self = arg;
    loader_t *l = &self->loader;
    if (s_store_version (self, &l->dl) < 0)
        log_error ("cannot store model version %llu (serving it anyway)", (unsigned long long) l->dl.version);
    l->result = served_new (&self->cfg.serve, l->dl.blob, l->dl.bytes, &l->sample, NULL, 0, NULL);
    s_store_index (self, l->result);
    s_download_reset (&l->dl);
    sample_free (&l->sample);
    atomic_store (&l->done, true);
    return NULL;
}

void
rank_versions_swap_loaded (rank_worker_t *self, bool wait)
{
    loader_t *l = &self->loader;
    if (!l->busy || (!wait && !atomic_load (&l->done)))
        return;
    if (!pthread_equal (l->thread, pthread_self ()))
        pthread_join (l->thread, NULL);
    l->busy = false;
    if (l->result)
        ranker_swap (self->core, l->result);
    l->result = NULL;
}

static void
s_request_chunk (rank_worker_t *self, uint32_t index)
{
    Strata__V1__ModelChunkRequest req = STRATA__V1__MODEL_CHUNK_REQUEST__INIT;
    req.version = self->dl.version;
    req.index = index;
    wire_send (self->trainer, NULL, WIRE_MODEL_CHUNK, &req.base);
}

static void
s_on_info (rank_worker_t *self, const Strata__V1__ModelInfo *info)
{
    if (!info->version || info->version <= ranker_version (self->core) || self->dl.version || self->loader.busy)
        return;
    if (!info->bytes || !info->chunk_bytes || info->chunks != (info->bytes + info->chunk_bytes - 1) / info->chunk_bytes) {
        log_warn ("model version %llu: inconsistent info; ignored", (unsigned long long) info->version);
        return;
    }
    download_t *d = &self->dl;
    d->blob = malloc (info->bytes);
    d->have = calloc (info->chunks, 1);
    if (!d->blob || !d->have) {
        log_error ("no memory to fetch model version %llu (%llu bytes)", (unsigned long long) info->version,
                   (unsigned long long) info->bytes);
        s_download_reset (d);
        return;
    }
    d->version = info->version;
    d->bytes = info->bytes;
    d->chunks = info->chunks;
    d->chunk_bytes = info->chunk_bytes;
    d->fnv = info->fnv;
    d->last_reply = zclock_mono ();
    log_info ("fetching model version %llu: %llu bytes in %u chunks", (unsigned long long) d->version,
              (unsigned long long) d->bytes, d->chunks);
    for (d->next = 0; d->next < d->chunks && d->next < WINDOW; d->next++)
        s_request_chunk (self, d->next);
}

static void
s_on_chunk (rank_worker_t *self, const Strata__V1__ModelChunk *c)
{
    download_t *d = &self->dl;
    if (!d->version || c->version != d->version || c->index >= d->chunks || d->have[c->index])
        return;   // a late answer for something we no longer want
    size_t off = (size_t) c->index * d->chunk_bytes;
    size_t want = d->bytes - off < d->chunk_bytes ? d->bytes - off : d->chunk_bytes;
    if (c->data.len != want || util_fnv1a64 (c->data.data, c->data.len) != c->fnv) {
        log_warn ("model version %llu chunk %u is damaged; asking again", (unsigned long long) d->version, c->index);
        s_request_chunk (self, c->index);
        return;
    }
    memcpy (d->blob + off, c->data.data, want);
    d->have[c->index] = 1;
    d->received++;
    d->last_reply = zclock_mono ();
    if (d->next < d->chunks)
        s_request_chunk (self, d->next++);
    if (d->received < d->chunks)
        return;
    if (util_fnv1a64 (d->blob, d->bytes) != d->fnv) {
        log_error ("model version %llu does not match its hash; dropped", (unsigned long long) d->version);
        s_download_reset (d);
        return;
    }
    //  Stored and loaded (its index built) on a thread of its own: serving goes on.
    loader_t *l = &self->loader;
    l->dl = *d;
    memset (d, 0, sizeof *d);
    if (ranker_wants_sample (self->core))
        rank_catalogue_sample (self, &l->sample);
    l->result = NULL;
    atomic_store (&l->done, false);
    l->busy = true;
    if (pthread_create (&l->thread, NULL, s_loader_run, self) != 0) {
        s_loader_run (self);   // no thread to be had: here, then
        l->thread = pthread_self ();
    }
}

void
rank_versions_input (rank_worker_t *self)
{
    for (int i = 0; i < 64; i++) {
        wire_msg_t msg;
        int rc = wire_recv_ready (self->trainer, false, 64 << 20, &msg);
        if (rc == STRATA_EINTR || rc == STRATA_EAGAIN)
            return;
        if (rc < 0) {
            log_warn ("bad message from the trainer (%d)", rc);
            wire_msg_reset (&msg);
            continue;
        }
        if (!strcmp (msg.type, WIRE_MODEL_INFO_REPLY)) {
            Strata__V1__ModelInfo *info = (Strata__V1__ModelInfo *) wire_unpack (&strata__v1__model_info__descriptor,
                                                                                 msg.payload, NULL);
            if (info) {
                s_on_info (self, info);
                strata__v1__model_info__free_unpacked (info, NULL);
            }
        }
        else if (!strcmp (msg.type, WIRE_MODEL_CHUNK_REPLY)) {
            Strata__V1__ModelChunk *c = (Strata__V1__ModelChunk *) wire_unpack (&strata__v1__model_chunk__descriptor,
                                                                                msg.payload, NULL);
            if (c) {
                s_on_chunk (self, c);
                strata__v1__model_chunk__free_unpacked (c, NULL);
            }
        }
        else if (!strcmp (msg.type, WIRE_ERROR)) {
            Strata__V1__Error *e = (Strata__V1__Error *) wire_unpack (&strata__v1__error__descriptor, msg.payload, NULL);
            if (e && e->code == STRATA__V1__ERROR_CODE__NOT_FOUND && self->dl.version) {
                log_info ("model version %llu is gone from the trainer; starting over",
                          (unsigned long long) self->dl.version);
                s_download_reset (&self->dl);
            }
            else
                log_warn ("trainer: %s", e ? e->message : "(undecodable error)");
            if (e)
                strata__v1__error__free_unpacked (e, NULL);
        }
        wire_msg_reset (&msg);
    }
}

void
rank_versions_tick (rank_worker_t *self, int64_t now)
{
    download_t *d = &self->dl;
    if (d->version && now - d->last_reply > CHUNK_TIMEOUT_MS) {
        //  The trainer went quiet mid-download (restarted?): ask again for what is missing.
        log_warn ("model version %llu: no chunk for %d ms; asking again", (unsigned long long) d->version,
                  CHUNK_TIMEOUT_MS);
        d->last_reply = now;
        int asked = 0;
        for (uint32_t c = 0; c < d->next && asked < WINDOW; c++)
            if (!d->have[c]) {
                s_request_chunk (self, c);
                asked++;
            }
    }
    if (now >= self->next_poll) {
        if (!d->version) {
            Strata__V1__ModelInfoRequest req = STRATA__V1__MODEL_INFO_REQUEST__INIT;
            wire_send (self->trainer, NULL, WIRE_MODEL_INFO, &req.base);
        }
        self->next_poll = now + self->cfg.poll_ms;
    }
}

void
rank_versions_stop (rank_worker_t *self)
{
    rank_versions_swap_loaded (self, true);
    s_download_reset (&self->dl);
}
