/*  rank: see rank.h.

    The rank worker is the serving core (ranker.h) with its feeds around it: this file
    is its lifecycle and its turn of the loop (poll items, input, tick, serve); model
    versions come through rank_versions.c, the catalogue through rank_catalogue.c.
    Answering jobs is the core's alone: rank_worker_serve hands it what the broker
    sent and sends back what it returns, nothing more, so that what a client gets
    can be tested without any of the sockets here.
*/
#define LOG_MODULE "rank"
#include "rank.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rank_private.h"

rank_worker_t *
rank_worker_new (const rank_config_t *cfg)
{
    rank_worker_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = *cfg;
    if (self->cfg.keep_versions < 1)
        self->cfg.keep_versions = 2;
    self->core = ranker_new (&cfg->serve);
    if (!self->core) {
        free (self);
        return NULL;
    }
    self->cfg.serve = self->core->cfg;   // with its defaults: the loader builds versions by it
    self->store = rank_versions_open (cfg->dir);
    self->trainer = zsock_new (ZMQ_DEALER);
    self->broker = rank_catalogue_socket (cfg->broker_api);
    if (!self->store || !self->trainer || !self->broker) {
        log_error ("cannot start the rank worker (store %s)", cfg->dir);
        rank_worker_destroy (&self);
        return NULL;
    }
    zsock_set_linger (self->trainer, 0);
    zsock_set_maxmsgsize (self->trainer, 64 << 20);
    if (zsock_connect (self->trainer, "%s", cfg->trainer_api) < 0) {
        log_error ("cannot connect to the trainer at %s", cfg->trainer_api);
        rank_worker_destroy (&self);
        return NULL;
    }
    rank_versions_load_stored (self);
    rank_catalogue_load (self);
    ranker_extend (self->core);
    self->next_catalogue = zclock_mono () + self->cfg.catalogue_ms;
    log_info ("catalogue: %u items", ranker_items (self->core));
    return self;
}

void
rank_worker_destroy (rank_worker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rank_worker_t *self = *self_p;
    rank_versions_stop (self);
    ranker_destroy (&self->core);
    zsock_destroy (&self->trainer);
    zsock_destroy (&self->broker);
    store_destroy (&self->store);
    free (self);
    *self_p = NULL;
}

void
rank_worker_poll_items (rank_worker_t *self, zmq_pollitem_t *items)
{
    items[0] = (zmq_pollitem_t) { zsock_resolve (self->trainer), 0, ZMQ_POLLIN, 0 };
    items[1] = (zmq_pollitem_t) { zsock_resolve (self->broker), 0, ZMQ_POLLIN, 0 };
}

void
rank_worker_input (rank_worker_t *self, const zmq_pollitem_t *items)
{
    if (items[0].revents & ZMQ_POLLIN)
        rank_versions_input (self);
    if (items[1].revents & ZMQ_POLLIN)
        rank_catalogue_input (self);
}

void
rank_worker_tick (rank_worker_t *self)
{
    rank_versions_swap_loaded (self, false);
    int64_t now = zclock_mono ();
    rank_versions_tick (self, now);
    rank_catalogue_tick (self, now);
}

uint64_t
rank_worker_version (rank_worker_t *self)
{
    return ranker_version (self->core);
}

void
rank_worker_serve (rank_worker_t *self, const ProtobufCBinaryData *jobs, size_t n, uint32_t messages,
                   zsock_t *sock)
{
    rank_versions_swap_loaded (self, false);
    Strata__V1__ServeResults out = STRATA__V1__SERVE_RESULTS__INIT;
    //  On no memory there are no results, but the message still goes: the broker's
    //  count of what this worker holds stays right.
    ranker_serve (self->core, jobs, n, &out);
    out.messages = messages;
    if (out.n_results || messages)
        wire_send (sock, NULL, WIRE_SERVE_RESULTS, &out.base);
}
