/*  dedupe: see dedupe.h. */
#include "dedupe.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util.h"

typedef struct {
    uint64_t hash;
    int64_t ts;
    uint32_t user;
} __attribute__ ((packed)) slot_t;

struct _dedupe_t {
    slot_t *slots;
    size_t mask;
    size_t count;    // distinct hashes, in both tables
    //  Growing: the table being moved into slots, a few slots per insert, and how many
    //  of its slots have moved. Lookups look in both until it is gone.
    slot_t *old;
    size_t old_mask;
    size_t moved;
    //  The next table, mapped and faulted in on a thread of its own while this one
    //  fills (see s_prepare).
    pthread_t preparer;
    bool preparing;
    atomic_bool prepared;
    slot_t *next;
    size_t next_cap;
};

//  Old slots moved per insert. Growth starts at a load of 0.7 into a table twice the
//  size; at this pace the move ends (old size / 32 inserts later) at a load under 0.4.
#define MOVE_STEP 32

#define HUGE_PAGE ((size_t) 2 << 20)

//  Loads (in tenths) at which a large table's successor is prepared, and past which
//  an insert waits for it rather than let probes grow longer.
#define PREPARE_AT 5
#define WAIT_AT 9

//  The length of the mapping that holds a table of cap slots (whole huge pages), or 0
//  for a table under HUGE_PAGE, which is allocated from the heap.
static size_t
s_mapped_len (size_t cap)
{
    size_t bytes = cap * sizeof (slot_t);
    return bytes < HUGE_PAGE ? 0 : (bytes + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
}

//  A table of cap slots, zeroed. One of HUGE_PAGE or more is mapped on its own, aligned
//  and in huge pages where the kernel gives them (madvise): a lookup's address then
//  misses the TLB far less often, and a new table's first writes (it fills with the
//  inserts after a growth) take one page fault per 2 MB instead of one per 4 KB, each
//  of which cost the broker's loop about 5 µs on a virtual machine.
static slot_t *
s_table_new (size_t cap)
{
    size_t len = s_mapped_len (cap);
    if (!len)
        return calloc (cap, sizeof (slot_t));
    uint8_t *p = mmap (NULL, len + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    uint8_t *start = (uint8_t *) (((uintptr_t) p + HUGE_PAGE - 1) & ~(uintptr_t) (HUGE_PAGE - 1));
    if (start > p)
        munmap (p, (size_t) (start - p));
    if (start + len < p + len + HUGE_PAGE)
        munmap (start + len, (size_t) (p + len + HUGE_PAGE - (start + len)));
    madvise (start, len, MADV_HUGEPAGE);   // advice: without it, plain pages
    return (slot_t *) start;
}

static void
s_table_free (slot_t *t, size_t cap)
{
    size_t len = s_mapped_len (cap);
    if (!t)
        return;
    if (!len)
        free (t);
    else
        munmap (t, len);
}

//  The preparer's thread: maps the next table and has the kernel fault every page of it
//  in. A new table is written at random places from its first insert on, so without
//  this the loop took all its page faults within a few inserts: on a virtual machine
//  whose host backs memory only when first touched, 2-5 ms per 2 MB huge page, 40 ms
//  in one result at a growth to 20 MB.
static void *
s_prepare_run (void *arg)
{
    dedupe_t *self = arg;
    slot_t *t = s_table_new (self->next_cap);
    size_t len = s_mapped_len (self->next_cap);
    if (t && len) {
#ifdef MADV_POPULATE_WRITE
        if (madvise (t, len, MADV_POPULATE_WRITE) < 0)   // before Linux 5.14: by hand
#endif
        {
            long page = sysconf (_SC_PAGESIZE);
            for (size_t off = 0; off < len; off += (size_t) (page > 0 ? page : 4096))
                ((volatile uint8_t *) t)[off] = 0;
        }
    }
    self->next = t;
    atomic_store_explicit (&self->prepared, true, memory_order_release);
    return NULL;
}

//  Starts preparing a table of cap slots on a thread of its own (preparing stays false
//  if none started).
static void
s_prepare (dedupe_t *self, size_t cap)
{
    self->next = NULL;
    self->next_cap = cap;
    atomic_store (&self->prepared, false);
    self->preparing = pthread_create (&self->preparer, NULL, s_prepare_run, self) == 0;
}

//  The prepared table (NULL if its mapping failed), once its thread has ended.
static slot_t *
s_prepared_take (dedupe_t *self)
{
    pthread_join (self->preparer, NULL);
    self->preparing = false;
    slot_t *t = self->next;
    self->next = NULL;
    return t;
}

static int
s_alloc (dedupe_t *self, size_t cap)
{
    self->slots = s_table_new (cap);
    if (!self->slots)
        return STRATA_ENOMEM;
    self->mask = cap - 1;
    return 0;
}

dedupe_t *
dedupe_new (size_t expected)
{
    dedupe_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    size_t cap = 1024;
    while (cap < expected * 2)
        cap <<= 1;
    if (s_alloc (self, cap) < 0) {
        free (self);
        return NULL;
    }
    return self;
}

void
dedupe_destroy (dedupe_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    if ((*self_p)->preparing)
        s_table_free (s_prepared_take (*self_p), (*self_p)->next_cap);
    s_table_free ((*self_p)->slots, (*self_p)->mask + 1);
    if ((*self_p)->old)
        s_table_free ((*self_p)->old, (*self_p)->old_mask + 1);
    free (*self_p);
    *self_p = NULL;
}

uint64_t
dedupe_hash (const char *event_id, size_t len)
{
    uint64_t h = util_fnv1a64 (event_id, len);
    return h ? h : 1;
}

//  FNV's low bits are well mixed for short ids, but mix once more so that ids that
//  differ only in their last characters do not cluster.
static size_t
s_index (uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (size_t) h;
}

static bool
s_find (const slot_t *slots, size_t mask, uint64_t hash, uint32_t *user, int64_t *ts)
{
    for (size_t i = s_index (hash) & mask;; i = (i + 1) & mask) {
        const slot_t *s = &slots[i];
        if (s->hash == 0)
            return false;
        if (s->hash == hash) {
            *user = s->user;
            *ts = s->ts;
            return true;
        }
    }
}

void
dedupe_prefetch (const dedupe_t *self, uint64_t hash)
{
    __builtin_prefetch (&self->slots[s_index (hash) & self->mask]);
    if (self->old)
        __builtin_prefetch (&self->old[s_index (hash) & self->old_mask]);
}

bool
dedupe_find (dedupe_t *self, uint64_t hash, uint32_t *user, int64_t *ts)
{
    return s_find (self->slots, self->mask, hash, user, ts)
           || (self->old && s_find (self->old, self->old_mask, hash, user, ts));
}

static void
s_put (slot_t *slots, size_t mask, uint64_t hash, uint32_t user, int64_t ts)
{
    size_t i = s_index (hash) & mask;
    while (slots[i].hash && slots[i].hash != hash)
        i = (i + 1) & mask;
    if (!slots[i].hash) {
        slots[i].hash = hash;
        slots[i].user = user;
        slots[i].ts = ts;
    }
}

//  Moves the next MOVE_STEP slots of the old table; frees it when all have moved.
static void
s_move_some (dedupe_t *self)
{
    size_t end = self->moved + MOVE_STEP;
    if (end > self->old_mask + 1)
        end = self->old_mask + 1;
    for (size_t i = self->moved; i < end; i++)
        if (self->old[i].hash)
            s_put (self->slots, self->mask, self->old[i].hash, self->old[i].user, self->old[i].ts);
    self->moved = end;
    if (self->moved > self->old_mask) {
        s_table_free (self->old, self->old_mask + 1);
        self->old = NULL;
    }
}

int
dedupe_insert (dedupe_t *self, uint64_t hash, uint32_t user, int64_t ts)
{
    size_t cap = self->mask + 1, load = (self->count + 1) * 10;
    if (!self->old && !self->preparing && self->next_cap != 2 * cap && load > cap * PREPARE_AT
        && s_mapped_len (2 * cap))
        s_prepare (self, 2 * cap);   // once per size: if no thread starts, the growth allocates
    if (self->old)
        s_move_some (self);
    else if (load > cap * 7
             && (!self->preparing || atomic_load_explicit (&self->prepared, memory_order_acquire)
                 || load > cap * WAIT_AT)) {
        //  Keep the load under 0.7 so probes stay short (up to 0.9 while the next table
        //  is still being prepared). The entries move to the bigger table a few at a
        //  time with the inserts that follow: moving them all at once held the broker's
        //  loop (and every request waiting on it) for tens of milliseconds at a million
        //  events.
        slot_t *old = self->slots;
        size_t old_mask = self->mask;
        self->slots = self->preparing ? s_prepared_take (self) : NULL;
        if (self->slots)
            self->mask = 2 * cap - 1;
        else if (s_alloc (self, 2 * cap) < 0) {
            self->slots = old;
            return STRATA_ENOMEM;
        }
        self->old = old;
        self->old_mask = old_mask;
        self->moved = 0;
        s_move_some (self);
    }
    uint32_t u;
    int64_t t;
    if (dedupe_find (self, hash, &u, &t))
        return 0;
    s_put (self->slots, self->mask, hash, user, ts);
    self->count++;
    return 0;
}

bool
dedupe_next_prepared (dedupe_t *self)
{
    return self->preparing && atomic_load_explicit (&self->prepared, memory_order_acquire);
}

bool
dedupe_growing (dedupe_t *self)
{
    return self->old != NULL;
}

size_t
dedupe_size (dedupe_t *self)
{
    return self->count;
}

size_t
dedupe_bytes (dedupe_t *self)
{
    return (self->mask + 1 + (self->old ? self->old_mask + 1 : 0)) * sizeof (slot_t);
}
