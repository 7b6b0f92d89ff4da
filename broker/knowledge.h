/*  knowledge: the broker's durable store (RocksDB) — the journal of raw batches and the
    knowledge built from them.

    Column families, one concern each:
      journal   be64 seq                          -> raw EventBatch, until applied
      batches   batch id                          -> Ack (state, counts, seq)
      events    be32 user, be64 ts, be64 id hash  -> Event (indices set, ids dropped)
      items     be32 item index                   -> Item (clean catalogue record)
      dict      'u'/'i' + external id -> be32 index (the reverse map is built in memory)
      stats     counter name                      -> be64
      rejects   be64 seq, be32 n                  -> Reject (dead letter with reason)
      meta      schema version and such
      changes   be64 change sequence              -> be32 item index (a record written)
    A batch is journaled and its batch id recorded in one synced write before the
    producer is acked. A cleaned result is applied in one WriteBatch that also deletes
    its journal entry, so after a crash every batch is either still in the journal or
    fully applied, never half. Events are deduplicated by event id at apply time, which
    makes re-sent batches and re-dispatched jobs harmless.

    Dictionaries, counters and the event-id index (dedupe.h) are cached in memory and
    rebuilt at open, and recent user histories may be (recent.h, dropped as events are
    stored); RocksDB is the truth. One thread owns a knowledge_t.
*/
#ifndef STRATA_KNOWLEDGE_H
#define STRATA_KNOWLEDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "store.h"
#include "strata.pb-c.h"

enum {
    KCF_DEFAULT,
    KCF_JOURNAL,
    KCF_BATCHES,
    KCF_EVENTS,
    KCF_ITEMS,
    KCF_DICT,
    KCF_STATS,
    KCF_REJECTS,
    KCF_META,
    KCF_CHANGES,
    KCF_COUNT
};

typedef struct _knowledge_t knowledge_t;

typedef struct {
    uint64_t events, users, items, catalogue_items, duplicates, rejected, batches;
} knowledge_counts_t;

//  Opens or creates the store under dir. NULL (logged) on failure.
knowledge_t *knowledge_open (const char *dir);
void knowledge_destroy (knowledge_t **self_p);

store_t *knowledge_store (knowledge_t *self);

//  --- journal ---------------------------------------------------------------------

//  Looks up a batch id. Returns 0 and fills *ack (strings point into ack_buf-owned
//  memory: free with strata__v1__ack__free_unpacked) or STRATA_ENOTFOUND.
int knowledge_batch_lookup (knowledge_t *self, const char *batch_id, Strata__V1__Ack **ack);

//  Journals n raw batches in one write (synced if sync). seqs[i] receives each sequence.
//  Returns 0 or STRATA_EIO.
int knowledge_journal_append (knowledge_t *self, size_t n, const char *const *batch_ids,
                              const void *const *data, const size_t *lens, bool sync, uint64_t *seqs);

//  Reads a journal entry; malloc'd (free()), NULL when gone (already applied).
char *knowledge_journal_get (knowledge_t *self, uint64_t seq, size_t *len);

//  Calls fn for every journal sequence, oldest first (used at start-up to requeue).
void knowledge_journal_each (knowledge_t *self, void (*fn) (uint64_t seq, void *arg), void *arg);

//  Number of journal entries not yet applied.
uint64_t knowledge_journal_pending (knowledge_t *self);

//  --- applying cleaned results -------------------------------------------------------

//  Applies a cleaned result atomically. Fills ack (counts for this batch; reason
//  strings borrowed from res). Returns 0, 1 when the journal entry was already applied
//  (nothing done), STRATA_EIO (the store failed) or STRATA_ENOMEM; after either error
//  the dictionaries in memory may hold ids the store does not: the caller stops, and
//  a restart applies the entry again.
int knowledge_apply (knowledge_t *self, const Strata__V1__JobResult *res, Strata__V1__Ack *ack,
                     Strata__V1__ReasonCount *reason_buf, Strata__V1__ReasonCount **reason_ptrs,
                     size_t reason_cap);

//  --- reading ----------------------------------------------------------------------

void knowledge_counts (knowledge_t *self, knowledge_counts_t *out);

//  Reject counts by reason class; *n gets the number filled (at most cap). Strings are
//  valid until the next apply.
size_t knowledge_reject_reasons (knowledge_t *self, const char **reasons, uint64_t *counts, size_t cap);

//  Calls fn for up to limit stored rejects after the cursor (NULL/0: from the start),
//  oldest first. The packed Reject and its key are valid during the call only.
//  Returns how many were visited.
size_t knowledge_rejects_each (knowledge_t *self, const void *after, size_t after_len, size_t limit,
                               void (*fn) (const void *key, size_t klen, const void *val, size_t vlen, void *arg),
                               void *arg);

//  Fills a page of user histories (events in time order) starting at start_user, at
//  most max_users users and about max_events events (whole users only, at least one).
//  Everything out points to is allocated in arena. Returns 0, STRATA_ENOMEM or
//  STRATA_ECORRUPT (a stored event that does not decode).
int knowledge_history_page (knowledge_t *self, uint32_t start_user, uint32_t max_users, uint32_t max_events,
                            bool with_ids, arena_t *arena, Strata__V1__HistoryReply *out);

//  Fills a page of catalogue records for item indices [start_item, start_item + max),
//  and the newest catalogue change's sequence (a reader that pages the whole catalogue
//  and then follows the changes after it misses none). Items never described come
//  with their id only. Allocated in arena. Returns 0 or STRATA_ENOMEM.
int knowledge_catalogue_page (knowledge_t *self, uint32_t start_item, uint32_t max_items, arena_t *arena,
                              Strata__V1__CatalogueReply *out);

//  The records written after change `after` (new items and updated ones, oldest change
//  first; an item written twice comes twice, as it stands now), at most max_items, and
//  the sequence of the last one included; or, when changes after `after` were dropped
//  from the log (knowledge_change_log_limit), none and changes_lost set. Allocated in
//  arena. Returns 0 or STRATA_ENOMEM.
int knowledge_catalogue_changes (knowledge_t *self, uint64_t after, uint32_t max_items, arena_t *arena,
                                 Strata__V1__CatalogueReply *out);

//  The change log keeps the newest `changes` changes (0, the default: every one); older
//  ones are dropped as new ones are written.
void knowledge_change_log_limit (knowledge_t *self, uint64_t changes);

//  The dense index of an external user or item id: 0, or STRATA_ENOTFOUND when unknown.
int knowledge_user_index (knowledge_t *self, const char *id, uint32_t *index);
int knowledge_item_index (knowledge_t *self, const char *id, uint32_t *index);

//  Keeps the histories of up to `users` users in memory (recent.h); 0 keeps none (the
//  default). Returns 0, or STRATA_ENOMEM (the cache is left as it was).
int knowledge_history_cache (knowledge_t *self, uint32_t users);
//  Histories answered from the cache, and read from the store, since it was set.
void knowledge_history_cache_counts (knowledge_t *self, uint64_t *hits, uint64_t *misses);

//  The user's last (at most) max events that name an item, oldest first, into out
//  (allocated in arena). Returns how many, STRATA_ENOMEM, or STRATA_ECORRUPT (a stored
//  event that does not decode). Answered from the history cache when the user is in it.
int knowledge_user_recent (knowledge_t *self, uint32_t user, uint32_t max, arena_t *arena,
                           Strata__V1__Interaction ***out);

//  The external id of a dense index, or NULL. Valid until the next apply.
const char *knowledge_user_id (knowledge_t *self, uint32_t index);
const char *knowledge_item_id (knowledge_t *self, uint32_t index);

#endif
