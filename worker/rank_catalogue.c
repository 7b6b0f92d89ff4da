/*  rank_catalogue: what the rank worker reads from the broker's api endpoint: the
    catalogue (CATALOGUE pages and change records) for the serving core, and samples
    of users' histories (HISTORY) for tuning a version's approximate index.

    At start the whole catalogue is read waiting for each reply: serving needs it
    before its first job. After that every refresh (each catalogue-ms) is a small
    state machine on its own socket: one request out at a time, each reply applied as
    it comes between two polls, never waited on, so a slow or restarted broker never
    makes serving wait. A refresh reads the pages past the items known, then the
    change records written since the last change applied; when the broker's change
    log no longer reaches back that far, every page is read again.
*/
#define LOG_MODULE "rank"
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rank_private.h"
#include "request.h"

#define CATALOGUE_TIMEOUT_MS 5000   // longest wait for the broker's answer to one
#define SAMPLE_PAGES 4         // places in the broker's user list sampled
#define SAMPLE_PAGE_USERS 64
#define SAMPLE_EVENTS 200      // newest events kept per sampled user

//  Histories of up to SAMPLE_PAGES x SAMPLE_PAGE_USERS users from the broker, from
//  evenly spread places of its user list. Empty when the broker does not answer (the
//  index then falls back on item pairs).
void
rank_catalogue_sample (rank_worker_t *self, sample_t *out)
{
    memset (out, 0, sizeof *out);
    size_t cap_users = SAMPLE_PAGES * SAMPLE_PAGE_USERS, cap = 4096, w = 0;
    out->lens = malloc (cap_users * sizeof *out->lens);
    out->items = malloc (cap * sizeof *out->items);
    out->types = malloc (cap);
    uint32_t total = 0;
    for (int page = 0; page < SAMPLE_PAGES && out->lens && out->items && out->types; page++) {
        Strata__V1__HistoryRequest req = STRATA__V1__HISTORY_REQUEST__INIT;
        req.start_user = page ? (uint32_t) ((uint64_t) total * (uint64_t) page / SAMPLE_PAGES) : 0;
        req.max_users = SAMPLE_PAGE_USERS;
        char err[256];
        Strata__V1__HistoryReply *r = (Strata__V1__HistoryReply *) client_request (
            self->cfg.broker_api, WIRE_HISTORY, &req.base, WIRE_HISTORY_REPLY, &strata__v1__history_reply__descriptor,
            2000, err, sizeof err);
        if (!r) {
            log_warn ("sample of users from %s: %s", self->cfg.broker_api, err);
            break;
        }
        total = page ? total : r->user_count;
        for (size_t i = 0; i < r->n_users && i < SAMPLE_PAGE_USERS && out->n < cap_users; i++) {
            Strata__V1__UserHistory *h = r->users[i];
            size_t first = h->n_events > SAMPLE_EVENTS ? h->n_events - SAMPLE_EVENTS : 0, len = 0;
            if (w + (h->n_events - first) > cap) {
                size_t nc = (w + (h->n_events - first)) * 2;
                uint32_t *ni = realloc (out->items, nc * sizeof *ni);
                uint8_t *nt = ni ? realloc (out->types, nc) : NULL;
                out->items = ni ? ni : out->items;
                out->types = nt ? nt : out->types;
                if (!ni || !nt)
                    break;
                cap = nc;
            }
            for (size_t k = first; k < h->n_events; k++)
                if (h->events[k]->item != UINT32_MAX) {
                    out->items[w + len] = h->events[k]->item;
                    out->types[w + len++] = (uint8_t) (h->events[k]->type < 256 ? h->events[k]->type : 0);
                }
            if (len) {
                out->lens[out->n++] = (uint32_t) len;
                w += len;
            }
        }
        bool done = r->done || total <= SAMPLE_PAGE_USERS;
        strata__v1__history_reply__free_unpacked (r, NULL);
        if (done)
            break;
    }
}


zsock_t *
rank_catalogue_socket (const char *endpoint)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    if (!sock)
        return NULL;
    zsock_set_linger (sock, 0);
    zsock_set_maxmsgsize (sock, 256 << 20);
    if (zsock_connect (sock, "%s", endpoint) < 0) {
        log_error ("cannot connect to the broker at %s", endpoint);
        zsock_destroy (&sock);
    }
    return sock;
}

//  One catalogue request to the broker: a page from start_item, or (changes) the
//  records written after change `after`. NULL (logged) when the broker does not answer.
static Strata__V1__CatalogueReply *
s_catalogue_request (rank_worker_t *self, uint32_t start_item, bool changes, uint64_t after)
{
    Strata__V1__CatalogueRequest req = STRATA__V1__CATALOGUE_REQUEST__INIT;
    req.start_item = start_item;
    req.max_items = CATALOGUE_PAGE;
    req.changes = changes;
    req.after_change = after;
    char err[256];
    Strata__V1__CatalogueReply *r = (Strata__V1__CatalogueReply *) client_request (
        self->cfg.broker_api, WIRE_CATALOGUE, &req.base, WIRE_CATALOGUE_REPLY, &strata__v1__catalogue_reply__descriptor,
        CATALOGUE_TIMEOUT_MS, err, sizeof err);
    if (!r)
        log_warn ("catalogue from %s: %s", self->cfg.broker_api, err);
    return r;
}

//  Adds a page's items past those known. Returns whether the pages are done.
static bool
s_catalogue_page (rank_worker_t *self, const Strata__V1__CatalogueReply *r)
{
    catalogue_t *c = &self->core->cat;
    if (!c->change_known) {
        //  Every record written up to this change is in the pages (as it stands).
        c->change = r->last_change;
        c->change_known = true;
    }
    ranker_add_items (self->core, r->items, r->n_items);   // what runs out of memory is logged
    return r->done || r->n_items == 0;
}

//  The records in r of items already known replace theirs (ranker_replace_items);
//  *known says how many there were. 0, or STRATA_ENOMEM.
static int
s_catalogue_replace (rank_worker_t *self, const Strata__V1__CatalogueReply *r, uint32_t *known)
{
    int rc = ranker_replace_items (self->core, r->items, r->n_items, known);
    if (rc < 0)
        return rc;
    self->sync_updated += *known;
    return 0;
}

//  Applies a reply of changes: the records of known items written since the last
//  change applied (a new price, title or category) replace theirs; items past the
//  catalogue come with the next pages, as they stand then. Returns 1 when no more
//  changes wait, 0 when more do, STRATA_EPROTOCOL when the reply is not a list of
//  changes (a broker without a change log answers with a page) or STRATA_ENOMEM (the
//  changes are asked for again by the next refresh).
static int
s_catalogue_changes (rank_worker_t *self, const Strata__V1__CatalogueReply *r)
{
    uint32_t known;
    if (r->n_items && r->last_change <= self->core->cat.change)
        return STRATA_EPROTOCOL;
    int rc = s_catalogue_replace (self, r, &known);
    if (rc < 0)
        return rc;
    self->core->cat.change = r->last_change;
    return r->done || r->n_items == 0 ? 1 : 0;
}

//  Applies a page read again (SYNC_RELOAD): its known items' records replace theirs,
//  the others are added. Every record written up to the first page's change is in the
//  pages, as it stands. Returns whether the pages are done, or STRATA_ENOMEM.
static int
s_catalogue_reload_page (rank_worker_t *self, const Strata__V1__CatalogueReply *r)
{
    if (self->reload_at == 0)
        self->core->cat.change = r->last_change;
    uint32_t known;
    int rc = s_catalogue_replace (self, r, &known);
    if (rc < 0)
        return rc;
    Strata__V1__CatalogueReply rest = *r;
    rest.n_items = r->n_items - known;
    rest.items = r->items + known;   // pages are in item order: the known items come first
    rest.done = false;
    s_catalogue_page (self, &rest);
    self->reload_at = r->next_item;
    return r->done || r->n_items == 0;
}

//  The whole catalogue at start-up, waiting for each reply: pages, then the changes
//  written meanwhile.
void
rank_catalogue_load (rank_worker_t *self)
{
    for (int pages = 0; pages < 100000; pages++) {
        Strata__V1__CatalogueReply *r = s_catalogue_request (self, self->core->cat.n, false, 0);
        if (!r)
            return;
        bool done = s_catalogue_page (self, r);
        strata__v1__catalogue_reply__free_unpacked (r, NULL);
        if (done)
            break;
    }
    for (int pages = 0; self->core->cat.change_known && pages < 100000; pages++) {
        Strata__V1__CatalogueReply *r = s_catalogue_request (self, 0, true, self->core->cat.change);
        if (!r)
            return;
        self->reload_due = r->changes_lost;   // trimmed since the pages: the first refresh reads them again
        int rc = r->changes_lost ? 1 : s_catalogue_changes (self, r);
        strata__v1__catalogue_reply__free_unpacked (r, NULL);
        if (rc != 0)
            break;
    }
}

//  Sends the request for where the refresh stands (sync: pages or changes).
static void
s_sync_send (rank_worker_t *self, sync_t sync)
{
    Strata__V1__CatalogueRequest req = STRATA__V1__CATALOGUE_REQUEST__INIT;
    req.max_items = CATALOGUE_PAGE;
    if (sync == SYNC_PAGES)
        req.start_item = self->core->cat.n;
    else if (sync == SYNC_RELOAD)
        req.start_item = self->reload_at;
    else {
        req.changes = true;
        req.after_change = self->core->cat.change;
    }
    self->sync = sync;
    self->sync_sent = zclock_mono ();
    if (wire_send (self->broker, NULL, WIRE_CATALOGUE, &req.base) < 0)
        self->sync_sent = 0;   // refused: the timeout starts the refresh again
}

//  Ends a refresh (the next one after catalogue-ms).
static void
s_sync_end (rank_worker_t *self)
{
    if (self->sync_updated)
        log_info ("catalogue: %llu records updated (up to change %llu)", (unsigned long long) self->sync_updated,
                  (unsigned long long) self->core->cat.change);
    self->sync_updated = 0;
    self->sync = SYNC_IDLE;
    ranker_extend (self->core);
    self->next_catalogue = zclock_mono () + self->cfg.catalogue_ms;
}

//  A reply from the broker's api endpoint: applied, and the next request sent.
static void
s_sync_reply (rank_worker_t *self, wire_msg_t *msg)
{
    Strata__V1__CatalogueReply *r = NULL;
    if (strcmp (msg->type, WIRE_CATALOGUE_REPLY)
        || !(r = (Strata__V1__CatalogueReply *) wire_unpack (&strata__v1__catalogue_reply__descriptor, msg->payload,
                                                             NULL))) {
        log_warn ("catalogue from %s: unexpected reply '%s'", self->cfg.broker_api, msg->type);
        s_sync_end (self);
        return;
    }
    if (self->sync == SYNC_PAGES) {
        if (!s_catalogue_page (self, r))
            s_sync_send (self, SYNC_PAGES);
        else if (self->core->cat.change_known)
            s_sync_send (self, SYNC_CHANGES);
        else
            s_sync_end (self);
    }
    else if (self->sync == SYNC_CHANGES && r->changes_lost) {
        log_warn ("catalogue: changes after %llu are no longer in the broker's log; reading every page again",
                  (unsigned long long) self->core->cat.change);
        self->reload_at = 0;
        s_sync_send (self, SYNC_RELOAD);
    }
    else if (self->sync == SYNC_CHANGES) {
        if (s_catalogue_changes (self, r) == 0)
            s_sync_send (self, SYNC_CHANGES);
        else
            s_sync_end (self);
    }
    else if (self->sync == SYNC_RELOAD) {
        int rc = s_catalogue_reload_page (self, r);
        if (rc == 0)
            s_sync_send (self, SYNC_RELOAD);
        else if (rc == 1)
            s_sync_send (self, SYNC_CHANGES);
        else {
            self->reload_due = true;   // out of memory: again next time
            s_sync_end (self);
        }
    }
    strata__v1__catalogue_reply__free_unpacked (r, NULL);
}

//  Gives up on a request the broker has not answered in time with a new socket: its
//  answer, if it comes, is not taken for a later one's.
void
rank_catalogue_tick (rank_worker_t *self, int64_t now)
{
    if (self->sync == SYNC_IDLE && now >= self->next_catalogue) {
        self->reload_at = 0;
        s_sync_send (self, self->reload_due ? SYNC_RELOAD : SYNC_PAGES);
        self->reload_due = false;
    }
    else if (self->sync != SYNC_IDLE && now - self->sync_sent > CATALOGUE_TIMEOUT_MS) {
        log_warn ("catalogue from %s: no answer in %d ms; trying again later", self->cfg.broker_api,
                  CATALOGUE_TIMEOUT_MS);
        zsock_t *fresh = rank_catalogue_socket (self->cfg.broker_api);
        if (fresh) {
            zsock_destroy (&self->broker);
            self->broker = fresh;
        }
        s_sync_end (self);
    }
}

//  Items the catalogue has beyond the served rows get vectors from their features (the
//  mean of their rows in the version's feature table, as the item tower composes an
//  item nobody has touched), so that they are recommended, found similar and read in

void
rank_catalogue_input (rank_worker_t *self)
{
    for (int i = 0; i < 64; i++) {
        wire_msg_t msg;
        int rc = wire_recv_ready (self->broker, false, 0, &msg);
        if (rc == STRATA_EAGAIN || rc == STRATA_EINTR)
            break;
        if (rc < 0)
            log_warn ("bad message from the broker (%d)", rc);
        else if (self->sync != SYNC_IDLE)
            s_sync_reply (self, &msg);
        wire_msg_reset (&msg);
    }
}
