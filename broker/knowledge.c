/*  knowledge: see knowledge.h. */
#define LOG_MODULE "knowledge"
#include "knowledge.h"

#include <czmq.h>
#include <stdlib.h>
#include <string.h>

#include "dedupe.h"
#include "log.h"
#include "recent.h"
#include "util.h"

static const char *const s_cf_names[KCF_COUNT] = {
    "default", "journal", "batches", "events", "items", "dict", "stats", "rejects", "meta", "changes",
};

#define SCHEMA_VERSION "1"
#define PREFETCH_AHEAD 8   // events between an event-id lookup's prefetch and the lookup

//  One dictionary (users or items): external id <-> dense index.
typedef struct {
    char prefix;        // 'u' or 'i' (forward), upper-case for reverse
    zhashx_t *index;    // id -> (void *) (index + 1)
    char **ids;         // index -> id (owned)
    size_t count, cap;
} dict_t;

struct _knowledge_t {
    store_t *store;
    dict_t users, items;
    knowledge_counts_t n;
    uint64_t next_seq;
    uint64_t journal_pending;
    uint64_t last_change;   // the newest catalogue change's sequence
    uint64_t first_change;  // the oldest the change log keeps (last_change + 1: it is empty)
    uint64_t change_limit;  // changes the log keeps at most (0: every one)
    zhashx_t *reasons;  // reason class -> (void *) count
    dedupe_t *seen;     // every stored event id, by hash
    recent_t *recent;   // users' recent histories (none until knowledge_history_cache)
};

static int
s_dict_add (dict_t *d, const char *id, uint32_t index)
{
    if (index >= d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 1024;
        while (cap <= index)
            cap *= 2;
        char **ids = realloc (d->ids, cap * sizeof *ids);
        if (!ids)
            return STRATA_ENOMEM;
        memset (ids + d->cap, 0, (cap - d->cap) * sizeof *ids);
        d->ids = ids;
        d->cap = cap;
    }
    d->ids[index] = strdup (id);
    if (!d->ids[index])
        return STRATA_ENOMEM;
    zhashx_insert (d->index, id, (void *) (uintptr_t) (index + 1));
    if (index + 1 > d->count)
        d->count = index + 1;
    return 0;
}

static void
s_dict_free (dict_t *d)
{
    zhashx_destroy (&d->index);
    for (size_t i = 0; i < d->count; i++)
        free (d->ids[i]);
    free (d->ids);
    d->ids = NULL;
    d->count = d->cap = 0;
}

//  Looks up an id, assigning the next index (and adding both directions to wb) when new.
//  The index, or STRATA_ENOMEM.
static int64_t
s_dict_get_or_add (knowledge_t *self, dict_t *d, const char *id, rocksdb_writebatch_t *wb, bool *added)
{
    void *v = zhashx_lookup (d->index, id);
    *added = false;
    if (v)
        return (int64_t) ((uintptr_t) v - 1);
    uint32_t index = (uint32_t) d->count;
    int rc = s_dict_add (d, id, index);
    if (rc < 0)
        return rc;
    size_t len = strlen (id);
    char *key = malloc (len + 1);
    if (!key)
        return STRATA_ENOMEM;
    key[0] = d->prefix;
    memcpy (key + 1, id, len);
    unsigned char be[5];
    util_put_be32 (be, index);
    rocksdb_writebatch_put_cf (wb, store_cf (self->store, KCF_DICT), key, len + 1, (const char *) be, 4);
    free (key);
    *added = true;
    return index;
}

//  The id dictionaries into memory. 0 or STRATA_ENOMEM: a dictionary missing an id
//  would give it a second index, so the caller refuses to start.
static int
s_load_dicts (knowledge_t *self)
{
    rocksdb_iterator_t *it = store_iter (self->store, KCF_DICT);
    int rc = 0;
    for (rocksdb_iter_seek_to_first (it); rc == 0 && rocksdb_iter_valid (it); rocksdb_iter_next (it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key (it, &klen);
        const char *v = rocksdb_iter_value (it, &vlen);
        if (klen < 1 || vlen != 4 || (k[0] != 'u' && k[0] != 'i'))
            continue;
        dict_t *d = k[0] == 'u' ? &self->users : &self->items;
        char *id = strndup (k + 1, klen - 1);
        rc = id ? s_dict_add (d, id, util_get_be32 ((const unsigned char *) v)) : STRATA_ENOMEM;
        free (id);
    }
    rocksdb_iter_destroy (it);
    return rc;
}

static const char *const s_counter_keys[] = { "events", "users", "items", "catalogue_items",
                                              "duplicates", "rejected", "batches" };

static uint64_t *
s_counter (knowledge_t *self, size_t i)
{
    uint64_t *fields[] = { &self->n.events,     &self->n.users,    &self->n.items, &self->n.catalogue_items,
                           &self->n.duplicates, &self->n.rejected, &self->n.batches };
    return fields[i];
}

#define COUNTERS (sizeof s_counter_keys / sizeof s_counter_keys[0])

knowledge_t *
knowledge_open (const char *dir)
{
    if (zsys_dir_create ("%s", dir) < 0) {
        log_error ("cannot create %s", dir);
        return NULL;
    }
    char path[4096];
    snprintf (path, sizeof path, "%s/knowledge", dir);
    knowledge_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->store = store_open (path, s_cf_names, KCF_COUNT);
    if (!self->store) {
        free (self);
        return NULL;
    }
    self->users.prefix = 'u';
    self->items.prefix = 'i';
    self->users.index = zhashx_new ();
    self->items.index = zhashx_new ();
    self->reasons = zhashx_new ();
    self->recent = recent_new (0);
    if (!self->recent) {
        knowledge_destroy (&self);
        return NULL;
    }
    int loaded = s_load_dicts (self);
    if (loaded < 0) {
        log_error ("cannot load the id dictionaries (%s)", strata_strerror (loaded));
        knowledge_destroy (&self);
        return NULL;
    }
    for (size_t i = 0; i < COUNTERS; i++)
        *s_counter (self, i) = store_get_u64 (self->store, KCF_STATS, s_counter_keys[i]);
    //  The dedupe index is rebuilt from the events' keys (user, timestamp, id hash).
    self->seen = dedupe_new ((size_t) self->n.events);
    if (!self->seen) {
        knowledge_destroy (&self);
        return NULL;
    }
    rocksdb_iterator_t *ev = store_iter (self->store, KCF_EVENTS);
    int rebuilt = 0;
    for (rocksdb_iter_seek_to_first (ev); rebuilt == 0 && rocksdb_iter_valid (ev); rocksdb_iter_next (ev)) {
        size_t klen;
        const unsigned char *k = (const unsigned char *) rocksdb_iter_key (ev, &klen);
        if (klen == 20)
            rebuilt = dedupe_insert (self->seen, util_get_be64 (k + 12), util_get_be32 (k),
                                     (int64_t) util_get_be64 (k + 4));
    }
    rocksdb_iter_destroy (ev);
    if (rebuilt < 0) {
        //  An index missing events would let their duplicates in: refuse to start.
        log_error ("cannot rebuild the event-id index (%s)", strata_strerror (rebuilt));
        knowledge_destroy (&self);
        return NULL;
    }

    //  Reject reason counters.
    rocksdb_iterator_t *it = store_iter (self->store, KCF_STATS);
    for (rocksdb_iter_seek (it, "reject:", 7); rocksdb_iter_valid (it); rocksdb_iter_next (it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key (it, &klen);
        const char *v = rocksdb_iter_value (it, &vlen);
        if (klen < 7 || memcmp (k, "reject:", 7) || vlen != 8)
            break;
        char *reason = strndup (k + 7, klen - 7);
        zhashx_insert (self->reasons, reason, (void *) (uintptr_t) util_get_be64 ((const unsigned char *) v));
        free (reason);
    }
    rocksdb_iter_destroy (it);

    //  Next journal sequence: one past the highest ever used (kept in stats, because
    //  the journal itself may be empty after everything was applied).
    self->next_seq = store_get_u64 (self->store, KCF_STATS, "journal_seq") + 1;
    self->last_change = store_get_u64 (self->store, KCF_STATS, "catalogue_change");
    self->first_change = self->last_change + 1;
    it = store_iter (self->store, KCF_CHANGES);
    rocksdb_iter_seek_to_first (it);
    if (rocksdb_iter_valid (it)) {
        size_t klen;
        const char *k = rocksdb_iter_key (it, &klen);
        if (klen == 8)
            self->first_change = util_get_be64 ((const unsigned char *) k);
    }
    rocksdb_iter_destroy (it);
    it = store_iter (self->store, KCF_JOURNAL);
    for (rocksdb_iter_seek_to_first (it); rocksdb_iter_valid (it); rocksdb_iter_next (it))
        self->journal_pending++;
    rocksdb_iter_destroy (it);
    store_put (self->store, KCF_META, "schema", 6, SCHEMA_VERSION, strlen (SCHEMA_VERSION));
    log_info ("knowledge store %s: %llu events, %zu users, %zu items, %llu journal entries to apply", path,
              (unsigned long long) self->n.events, self->users.count, self->items.count,
              (unsigned long long) self->journal_pending);
    return self;
}

void
knowledge_destroy (knowledge_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    knowledge_t *self = *self_p;
    s_dict_free (&self->users);
    s_dict_free (&self->items);
    dedupe_destroy (&self->seen);
    recent_destroy (&self->recent);
    zhashx_destroy (&self->reasons);
    store_destroy (&self->store);
    free (self);
    *self_p = NULL;
}

store_t *
knowledge_store (knowledge_t *self)
{
    return self->store;
}

int
knowledge_batch_lookup (knowledge_t *self, const char *batch_id, Strata__V1__Ack **ack)
{
    size_t len = 0;
    int rc = 0;
    char *v = store_get (self->store, KCF_BATCHES, batch_id, strlen (batch_id), &len, &rc);
    if (!v)
        return rc;
    *ack = strata__v1__ack__unpack (NULL, len, (const uint8_t *) v);
    free (v);
    return *ack ? STRATA_OK : STRATA_EIO;
}

static void
s_batch_put_ack (knowledge_t *self, rocksdb_writebatch_t *wb, const Strata__V1__Ack *ack)
{
    size_t size = strata__v1__ack__get_packed_size (ack);
    uint8_t *buf = malloc (size ? size : 1);
    if (!buf)
        return;
    strata__v1__ack__pack (ack, buf);
    rocksdb_writebatch_put_cf (wb, store_cf (self->store, KCF_BATCHES), ack->batch_id, strlen (ack->batch_id),
                               (const char *) buf, size);
    free (buf);
}

int
knowledge_journal_append (knowledge_t *self, size_t n, const char *const *batch_ids, const void *const *data,
                          const size_t *lens, bool sync, uint64_t *seqs)
{
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create ();
    uint64_t seq = self->next_seq;
    for (size_t i = 0; i < n; i++) {
        unsigned char key[8];
        util_put_be64 (key, seq);
        rocksdb_writebatch_put_cf (wb, store_cf (self->store, KCF_JOURNAL), (const char *) key, 8, data[i], lens[i]);
        Strata__V1__Ack ack = STRATA__V1__ACK__INIT;
        ack.batch_id = (char *) batch_ids[i];
        ack.state = STRATA__V1__BATCH_STATE__JOURNALED;
        ack.sequence = seq;
        s_batch_put_ack (self, wb, &ack);
        seqs[i] = seq++;
    }
    store_batch_put_u64 (self->store, wb, KCF_STATS, "journal_seq", seq - 1);
    int rc = store_write (self->store, wb, sync);
    rocksdb_writebatch_destroy (wb);
    if (rc == STRATA_OK) {
        self->next_seq = seq;
        self->journal_pending += n;
    }
    return rc;
}

char *
knowledge_journal_get (knowledge_t *self, uint64_t seq, size_t *len)
{
    unsigned char key[8];
    util_put_be64 (key, seq);
    return store_get (self->store, KCF_JOURNAL, key, 8, len, NULL);
}

void
knowledge_journal_each (knowledge_t *self, void (*fn) (uint64_t seq, void *arg), void *arg)
{
    rocksdb_iterator_t *it = store_iter (self->store, KCF_JOURNAL);
    for (rocksdb_iter_seek_to_first (it); rocksdb_iter_valid (it); rocksdb_iter_next (it)) {
        size_t klen;
        const char *k = rocksdb_iter_key (it, &klen);
        if (klen == 8)
            fn (util_get_be64 ((const unsigned char *) k), arg);
    }
    rocksdb_iter_destroy (it);
}

uint64_t
knowledge_journal_pending (knowledge_t *self)
{
    return self->journal_pending;
}

//  A reason's class: the text before any quoted, numeric or ':'-separated detail, so
//  that "unknown event type 'x'" and "unknown event type 'y'" count together.
static void
s_reason_class (const char *reason, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = reason; *p && *p != '\'' && *p != '"' && *p != ':' && !(*p >= '0' && *p <= '9') && n < cap - 1;
         p++)
        out[n++] = *p;
    while (n && (out[n - 1] == ' ' || out[n - 1] == ':'))
        n--;
    out[n] = 0;
    if (n == 0)
        snprintf (out, cap, "other");
}

static void
s_pack_put (rocksdb_writebatch_t *wb, rocksdb_column_family_handle_t *cf, const void *key, size_t klen,
            const ProtobufCMessage *msg, uint8_t **buf, size_t *cap)
{
    size_t size = protobuf_c_message_get_packed_size (msg);
    if (size > *cap) {
        uint8_t *nb = realloc (*buf, size * 2);
        if (!nb)
            return;
        *buf = nb;
        *cap = size * 2;
    }
    protobuf_c_message_pack (msg, *buf);
    rocksdb_writebatch_put_cf (wb, cf, key, klen, (const char *) *buf, size);
}

int
knowledge_apply (knowledge_t *self, const Strata__V1__JobResult *res, Strata__V1__Ack *ack,
                 Strata__V1__ReasonCount *reason_buf, Strata__V1__ReasonCount **reason_ptrs, size_t reason_cap)
{
    unsigned char jkey[8];
    util_put_be64 (jkey, res->sequence);
    int rc = 0;
    char *journal = store_get (self->store, KCF_JOURNAL, jkey, 8, NULL, &rc);
    if (!journal)
        return rc == STRATA_ENOTFOUND ? 1 : STRATA_EIO;
    free (journal);

    knowledge_counts_t before = self->n;
    uint64_t change_before = self->last_change, first_before = self->first_change;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create ();
    uint8_t *buf = NULL;
    size_t cap = 0;
    uint64_t accepted = 0, duplicates = res->in_batch_duplicates;

    //  The events' hashes first: each event's place in the event-id index is then asked
    //  for PREFETCH_AHEAD events before its turn.
    uint64_t *hashes = malloc ((res->n_events ? res->n_events : 1) * sizeof *hashes);
    if (!hashes) {
        rc = STRATA_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < res->n_events; i++) {
        hashes[i] = dedupe_hash (res->events[i]->event_id, strlen (res->events[i]->event_id));
        if (i < PREFETCH_AHEAD)
            dedupe_prefetch (self->seen, hashes[i]);
    }
    for (size_t i = 0; i < res->n_events; i++) {
        if (i + PREFETCH_AHEAD < res->n_events)
            dedupe_prefetch (self->seen, hashes[i + PREFETCH_AHEAD]);
        Strata__V1__Event *e = res->events[i];
        uint64_t hash = hashes[i];
        unsigned char key[20];
        uint32_t seen_user;
        int64_t seen_ts;
        if (dedupe_find (self->seen, hash, &seen_user, &seen_ts)) {
            //  Probably seen: compare with the stored event to rule out a hash collision.
            util_put_be32 (key, seen_user);
            util_put_be64 (key + 4, (uint64_t) seen_ts);
            util_put_be64 (key + 12, hash);
            size_t vlen = 0;
            char *v = store_get (self->store, KCF_EVENTS, key, sizeof key, &vlen, &rc);
            if (rc == STRATA_EIO)
                goto fail;
            Strata__V1__Event *old = v ? strata__v1__event__unpack (NULL, vlen, (const uint8_t *) v) : NULL;
            bool same = old && !strcmp (old->event_id, e->event_id);
            if (old)
                strata__v1__event__free_unpacked (old, NULL);
            free (v);
            if (same) {
                duplicates++;
                continue;
            }
        }
        bool added;
        int64_t user = s_dict_get_or_add (self, &self->users, e->user_id, wb, &added);
        self->n.users += added;
        int64_t item = -1;
        if (*e->item_id) {
            item = s_dict_get_or_add (self, &self->items, e->item_id, wb, &added);
            self->n.items += added;
        }
        if (user < 0 || (*e->item_id && item < 0)) {
            //  Out of memory naming the user or the item: an event is never stored
            //  without either (the caller stops, and a restart replays the entry).
            rc = (int) (user < 0 ? user : item);
            goto fail;
        }
        //  The stored event drops the external ids: the dictionary holds them once.
        Strata__V1__Event stored = *e;
        stored.user_id = "";
        stored.item_id = "";
        stored.user_index = (uint32_t) user;
        stored.item_index = item < 0 ? UINT32_MAX : (uint32_t) item;
        util_put_be32 (key, (uint32_t) user);
        util_put_be64 (key + 4, (uint64_t) e->timestamp_ms);
        util_put_be64 (key + 12, hash);
        s_pack_put (wb, store_cf (self->store, KCF_EVENTS), key, sizeof key, &stored.base, &buf, &cap);
        recent_drop (self->recent, (uint32_t) user);
        //  Workers drop in-batch duplicates, and results are applied one at a time, so
        //  the index (updated now, written below) sees every earlier event. If the write
        //  fails the broker stops, and the index is rebuilt from the store at restart.
        if ((rc = dedupe_insert (self->seen, hash, (uint32_t) user, e->timestamp_ms)) < 0)
            goto fail;
        accepted++;
        self->n.events++;
    }

    for (size_t i = 0; i < res->n_items; i++) {
        Strata__V1__Item *it = res->items[i];
        bool added;
        int64_t item = s_dict_get_or_add (self, &self->items, it->item_id, wb, &added);
        if (item < 0) {
            rc = (int) item;
            goto fail;
        }
        self->n.items += added;
        unsigned char key[4];
        util_put_be32 (key, (uint32_t) item);
        size_t vlen;
        char *old = added ? NULL : store_get (self->store, KCF_ITEMS, key, 4, &vlen, &rc);
        if (!old)
            self->n.catalogue_items++;
        free (old);
        Strata__V1__Item stored = *it;
        stored.item_index = (uint32_t) item;
        s_pack_put (wb, store_cf (self->store, KCF_ITEMS), key, 4, &stored.base, &buf, &cap);
        //  The change log: rank workers follow it to update the records they hold.
        unsigned char ckey[8];
        util_put_be64 (ckey, ++self->last_change);
        rocksdb_writebatch_put_cf (wb, store_cf (self->store, KCF_CHANGES), (const char *) ckey, 8, (const char *) key, 4);
        accepted++;
    }
    store_batch_put_u64 (self->store, wb, KCF_STATS, "catalogue_change", self->last_change);
    if (self->change_limit && self->last_change >= self->first_change
        && self->last_change - self->first_change + 1 > self->change_limit) {
        //  The oldest changes go: a reader behind them is told to read every page again.
        unsigned char from[8], to[8];
        util_put_be64 (from, self->first_change);
        self->first_change = self->last_change - self->change_limit + 1;
        util_put_be64 (to, self->first_change);
        rocksdb_writebatch_delete_range_cf (wb, store_cf (self->store, KCF_CHANGES), (const char *) from, 8,
                                            (const char *) to, 8);
    }

    size_t nreasons = 0;
    for (size_t i = 0; i < res->n_rejects; i++) {
        Strata__V1__Reject *r = res->rejects[i];
        unsigned char key[12];
        util_put_be64 (key, res->sequence);
        util_put_be32 (key + 8, (uint32_t) i);
        s_pack_put (wb, store_cf (self->store, KCF_REJECTS), key, sizeof key, &r->base, &buf, &cap);
        char cls[128];
        s_reason_class (r->reason, cls, sizeof cls);
        uint64_t count = (uint64_t) (uintptr_t) zhashx_lookup (self->reasons, cls) + 1;
        zhashx_update (self->reasons, cls, (void *) (uintptr_t) count);
        char rkey[160];
        snprintf (rkey, sizeof rkey, "reject:%s", cls);
        store_batch_put_u64 (self->store, wb, KCF_STATS, rkey, count);
        //  Per-batch reason summary for the ack.
        size_t k = 0;
        while (k < nreasons && strcmp (reason_buf[k].reason, r->reason))
            k++;
        if (k == nreasons && nreasons < reason_cap) {
            strata__v1__reason_count__init (&reason_buf[k]);
            reason_buf[k].reason = r->reason;
            reason_ptrs[k] = &reason_buf[k];
            nreasons++;
        }
        if (k < nreasons)
            reason_buf[k].count++;
    }
    self->n.rejected += res->n_rejects;
    self->n.duplicates += duplicates;
    self->n.batches++;

    strata__v1__ack__init (ack);
    ack->batch_id = res->batch_id;
    ack->state = STRATA__V1__BATCH_STATE__APPLIED;
    ack->accepted = accepted;
    ack->duplicates = duplicates;
    ack->rejected = res->n_rejects;
    ack->sequence = res->sequence;
    ack->n_reasons = nreasons;
    ack->reasons = reason_ptrs;
    if (*res->batch_id)
        s_batch_put_ack (self, wb, ack);
    for (size_t i = 0; i < COUNTERS; i++)
        store_batch_put_u64 (self->store, wb, KCF_STATS, s_counter_keys[i], *s_counter (self, i));
    rocksdb_writebatch_delete_cf (wb, store_cf (self->store, KCF_JOURNAL), (const char *) jkey, 8);

    //  Not logged: the journal entry (logged and synced) is deleted in this same batch,
    //  and all column families flush atomically, so after a crash either the whole
    //  result is on disk or the journal entry is, and it is applied again.
    if ((rc = store_write_unlogged (self->store, wb)) != STRATA_OK)
        goto fail;
    self->journal_pending--;
    rocksdb_writebatch_destroy (wb);
    free (buf);
    free (hashes);
    return 0;

fail:
    //  The in-memory counters must not run ahead of the store; dictionary entries
    //  added to memory but not written are harmless only if we stop here, so the caller
    //  treats every failure as fatal and restarts from the store.
    self->n = before;
    self->last_change = change_before;
    self->first_change = first_before;
    rocksdb_writebatch_destroy (wb);
    free (buf);
    free (hashes);
    return rc;
}

void
knowledge_counts (knowledge_t *self, knowledge_counts_t *out)
{
    *out = self->n;
}

size_t
knowledge_reject_reasons (knowledge_t *self, const char **reasons, uint64_t *counts, size_t cap)
{
    size_t n = 0;
    for (void *v = zhashx_first (self->reasons); v && n < cap; v = zhashx_next (self->reasons)) {
        reasons[n] = zhashx_cursor (self->reasons);
        counts[n] = (uint64_t) (uintptr_t) v;
        n++;
    }
    return n;
}

size_t
knowledge_rejects_each (knowledge_t *self, const void *after, size_t after_len, size_t limit,
                        void (*fn) (const void *key, size_t klen, const void *val, size_t vlen, void *arg),
                        void *arg)
{
    rocksdb_iterator_t *it = store_iter (self->store, KCF_REJECTS);
    if (after && after_len) {
        rocksdb_iter_seek (it, after, after_len);
        if (rocksdb_iter_valid (it)) {
            size_t klen;
            const char *k = rocksdb_iter_key (it, &klen);
            if (klen == after_len && !memcmp (k, after, klen))
                rocksdb_iter_next (it);   // the cursor itself was sent already
        }
    }
    else
        rocksdb_iter_seek_to_first (it);
    size_t n = 0;
    for (; n < limit && rocksdb_iter_valid (it); rocksdb_iter_next (it), n++) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key (it, &klen);
        const char *v = rocksdb_iter_value (it, &vlen);
        fn (k, klen, v, vlen, arg);
    }
    rocksdb_iter_destroy (it);
    return n;
}

int
knowledge_history_page (knowledge_t *self, uint32_t start_user, uint32_t max_users, uint32_t max_events,
                        bool with_ids, arena_t *arena, Strata__V1__HistoryReply *out)
{
    strata__v1__history_reply__init (out);
    out->user_count = (uint32_t) self->users.count;
    out->item_count = (uint32_t) self->items.count;
    out->users = arena_calloc (arena, max_users + 1, sizeof *out->users);
    if (!out->users)
        return STRATA_ENOMEM;
    ProtobufCAllocator alloc = arena_protobuf (arena);
    unsigned char start[4];
    util_put_be32 (start, start_user);
    rocksdb_iterator_t *it = store_iter (self->store, KCF_EVENTS);
    rocksdb_iter_seek (it, (const char *) start, 4);
    size_t events = 0, cap = 0;
    Strata__V1__UserHistory *cur = NULL;
    int rc = 0;
    out->done = true;
    for (; rocksdb_iter_valid (it); rocksdb_iter_next (it)) {
        size_t klen, vlen;
        const unsigned char *k = (const unsigned char *) rocksdb_iter_key (it, &klen);
        if (klen != 20)
            continue;
        uint32_t user = util_get_be32 (k);
        if (!cur || cur->user != user) {
            //  Page boundaries fall between users, never inside one.
            if (out->n_users == max_users || (cur && events >= max_events)) {
                out->next_user = user;
                out->done = false;
                break;
            }
            cur = arena_alloc (arena, sizeof *cur);
            if (!cur) {
                rc = STRATA_ENOMEM;
                break;
            }
            strata__v1__user_history__init (cur);
            cur->user = user;
            const char *id = with_ids ? knowledge_user_id (self, user) : NULL;
            cur->user_id = id ? arena_strdup (arena, id) : "";
            cap = 16;
            cur->events = arena_calloc (arena, cap, sizeof *cur->events);
            out->users[out->n_users++] = cur;
        }
        const char *v = rocksdb_iter_value (it, &vlen);
        Strata__V1__Event *e = strata__v1__event__unpack (&alloc, vlen, (const uint8_t *) v);
        Strata__V1__Interaction *x = arena_alloc (arena, sizeof *x);
        if (!e || !x || !cur->events) {
            rc = !e ? STRATA_ECORRUPT : STRATA_ENOMEM;   // a stored event that does not decode
            break;
        }
        if (cur->n_events == cap) {
            Strata__V1__Interaction **grown = arena_calloc (arena, cap * 2, sizeof *grown);
            if (!grown) {
                rc = STRATA_ENOMEM;
                break;
            }
            memcpy (grown, cur->events, cap * sizeof *grown);
            cur->events = grown;
            cap *= 2;
        }
        strata__v1__interaction__init (x);
        x->item = e->item_index;
        x->type = e->type;
        x->timestamp_ms = e->timestamp_ms;
        x->value = (float) e->value;
        x->query = e->query ? e->query : "";
        cur->events[cur->n_events++] = x;
        events++;
    }
    rocksdb_iter_destroy (it);
    return rc;
}

//  Item i's record as stored (in arena), or its id alone when it was never described.
static Strata__V1__Item *
s_item_record (knowledge_t *self, uint32_t i, arena_t *arena)
{
    ProtobufCAllocator alloc = arena_protobuf (arena);
    unsigned char key[4];
    util_put_be32 (key, i);
    size_t vlen = 0;
    char *v = store_get (self->store, KCF_ITEMS, key, 4, &vlen, NULL);
    Strata__V1__Item *it = v ? strata__v1__item__unpack (&alloc, vlen, (const uint8_t *) v) : NULL;
    free (v);
    if (!it) {
        it = arena_alloc (arena, sizeof *it);
        if (!it)
            return NULL;
        strata__v1__item__init (it);
        it->item_id = arena_strdup (arena, knowledge_item_id (self, i) ? knowledge_item_id (self, i) : "");
    }
    it->item_index = i;
    return it;
}

int
knowledge_catalogue_page (knowledge_t *self, uint32_t start_item, uint32_t max_items, arena_t *arena,
                          Strata__V1__CatalogueReply *out)
{
    strata__v1__catalogue_reply__init (out);
    out->item_count = (uint32_t) self->items.count;
    out->last_change = self->last_change;
    uint32_t end = start_item + max_items;
    if (end > self->items.count || end < start_item)
        end = (uint32_t) self->items.count;
    out->done = end >= self->items.count;
    out->next_item = end;
    if (start_item >= end)
        return 0;
    out->items = arena_calloc (arena, end - start_item, sizeof *out->items);
    if (!out->items)
        return STRATA_ENOMEM;
    for (uint32_t i = start_item; i < end; i++)
        if (!(out->items[out->n_items++] = s_item_record (self, i, arena)))
            return STRATA_ENOMEM;
    return 0;
}

int
knowledge_catalogue_changes (knowledge_t *self, uint64_t after, uint32_t max_items, arena_t *arena,
                             Strata__V1__CatalogueReply *out)
{
    strata__v1__catalogue_reply__init (out);
    out->item_count = (uint32_t) self->items.count;
    out->last_change = after;
    out->done = true;
    out->items = arena_calloc (arena, max_items + 1, sizeof *out->items);
    if (!out->items)
        return STRATA_ENOMEM;
    if (after < self->last_change && after + 1 < self->first_change) {
        out->changes_lost = true;
        return 0;
    }
    unsigned char key[8];
    util_put_be64 (key, after + 1);
    rocksdb_iterator_t *it = store_iter (self->store, KCF_CHANGES);
    int rc = 0;
    for (rocksdb_iter_seek (it, (const char *) key, 8); rocksdb_iter_valid (it); rocksdb_iter_next (it)) {
        size_t klen, vlen;
        const unsigned char *k = (const unsigned char *) rocksdb_iter_key (it, &klen);
        const unsigned char *v = (const unsigned char *) rocksdb_iter_value (it, &vlen);
        if (klen != 8 || vlen != 4)
            continue;
        if (out->n_items == max_items) {
            out->done = false;
            break;
        }
        Strata__V1__Item *item = s_item_record (self, util_get_be32 (v), arena);
        if (!item) {
            rc = STRATA_ENOMEM;
            break;
        }
        out->items[out->n_items++] = item;
        out->last_change = util_get_be64 (k);
    }
    rocksdb_iter_destroy (it);
    return rc;
}

const char *
knowledge_user_id (knowledge_t *self, uint32_t index)
{
    return index < self->users.count ? self->users.ids[index] : NULL;
}

const char *
knowledge_item_id (knowledge_t *self, uint32_t index)
{
    return index < self->items.count ? self->items.ids[index] : NULL;
}

static int
s_dict_index (dict_t *d, const char *id, uint32_t *index)
{
    void *v = id ? zhashx_lookup (d->index, id) : NULL;
    if (!v)
        return STRATA_ENOTFOUND;
    *index = (uint32_t) ((uintptr_t) v - 1);
    return 0;
}

int
knowledge_user_index (knowledge_t *self, const char *id, uint32_t *index)
{
    return s_dict_index (&self->users, id, index);
}

int
knowledge_item_index (knowledge_t *self, const char *id, uint32_t *index)
{
    return s_dict_index (&self->items, id, index);
}

//  A stored event as an Interaction (in arena): 1, 0 for an event without an item (a
//  search), STRATA_ECORRUPT when it does not decode, STRATA_ENOMEM.
static int
s_interaction (arena_t *arena, ProtobufCAllocator *alloc, rocksdb_iterator_t *it, Strata__V1__Interaction **out)
{
    size_t vlen;
    const char *v = rocksdb_iter_value (it, &vlen);
    Strata__V1__Event *e = strata__v1__event__unpack (alloc, vlen, (const uint8_t *) v);
    if (!e)
        return STRATA_ECORRUPT;
    if (e->item_index == UINT32_MAX)
        return 0;
    Strata__V1__Interaction *x = arena_alloc (arena, sizeof *x);
    if (!x)
        return STRATA_ENOMEM;
    strata__v1__interaction__init (x);
    x->item = e->item_index;
    x->type = e->type;
    x->timestamp_ms = e->timestamp_ms;
    x->value = (float) e->value;
    *out = x;
    return 1;
}

//  Whether the iterator is on one of user's events.
static bool
s_user_event (rocksdb_iterator_t *it, uint32_t user)
{
    size_t klen;
    const unsigned char *k = (const unsigned char *) rocksdb_iter_key (it, &klen);
    return klen == 20 && util_get_be32 (k) == user;
}

//  A user with more events than this many times the history asked for is read from its
//  newest event backwards instead.
#define RECENT_FORWARD_FACTOR 4

void
knowledge_change_log_limit (knowledge_t *self, uint64_t changes)
{
    self->change_limit = changes;
}

int
knowledge_history_cache (knowledge_t *self, uint32_t users)
{
    recent_t *r = recent_new (users);
    if (!r)
        return STRATA_ENOMEM;
    recent_destroy (&self->recent);
    self->recent = r;
    return 0;
}

void
knowledge_history_cache_counts (knowledge_t *self, uint64_t *hits, uint64_t *misses)
{
    recent_counts (self->recent, hits, misses);
}

int
knowledge_user_recent (knowledge_t *self, uint32_t user, uint32_t max, arena_t *arena, Strata__V1__Interaction ***out)
{
    int cached = recent_get (self->recent, user, max, arena, out);
    if (cached != STRATA_ENOTFOUND)
        return cached;
    Strata__V1__Interaction **ring = arena_calloc (arena, max + 1, sizeof *ring);
    *out = arena_calloc (arena, max + 1, sizeof **out);
    if (!ring || !*out)
        return STRATA_ENOMEM;
    if (max == 0)
        return 0;
    ProtobufCAllocator alloc = arena_protobuf (arena);
    //  Forwards from the user's first event, the newest max kept in a ring: a step
    //  forwards is cheap, where a step back in a memtable searches its skiplist from the
    //  head again. Most users have a few events.
    unsigned char key[4];
    util_put_be32 (key, user);
    rocksdb_iterator_t *it = store_iter (self->store, KCF_EVENTS);
    rocksdb_iter_seek (it, (const char *) key, 4);
    uint64_t seen = 0, budget = (uint64_t) max * RECENT_FORWARD_FACTOR;
    int rc = 0;
    for (; rocksdb_iter_valid (it) && s_user_event (it, user) && budget; rocksdb_iter_next (it), budget--) {
        Strata__V1__Interaction *x = NULL;
        rc = s_interaction (arena, &alloc, it, &x);
        if (rc < 0)
            break;
        if (rc)
            ring[seen++ % max] = x;
    }
    int n = 0;
    if (rc >= 0 && rocksdb_iter_valid (it) && s_user_event (it, user)) {
        //  A long history: backwards from its end, then into time order.
        if (user == UINT32_MAX)
            rocksdb_iter_seek_to_last (it);
        else {
            util_put_be32 (key, user + 1);
            rocksdb_iter_seek_for_prev (it, (const char *) key, 4);
        }
        for (; rocksdb_iter_valid (it) && s_user_event (it, user) && (uint32_t) n < max; rocksdb_iter_prev (it)) {
            Strata__V1__Interaction *x = NULL;
            rc = s_interaction (arena, &alloc, it, &x);
            if (rc < 0)
                break;
            if (rc)
                (*out)[n++] = x;
        }
        for (int i = 0; i < n / 2; i++) {
            Strata__V1__Interaction *t = (*out)[i];
            (*out)[i] = (*out)[n - 1 - i];
            (*out)[n - 1 - i] = t;
        }
    }
    else if (rc >= 0) {
        //  The ring, oldest first.
        uint64_t first = seen > max ? seen - max : 0;
        for (uint64_t i = first; i < seen; i++)
            (*out)[n++] = ring[i % max];
    }
    rocksdb_iter_destroy (it);
    if (rc < 0)
        return rc;
    recent_put (self->recent, user, max, *out, n);
    return n;
}
