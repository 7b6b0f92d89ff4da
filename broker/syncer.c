/*  syncer: see syncer.h. */
#define LOG_MODULE "syncer"
#include "syncer.h"

#include <czmq.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"

struct _syncer_t {
    store_t *store;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t wake;    // the thread waits on it for work; syncer_wait for progress
    uint64_t requested;     // newest ticket issued
    uint64_t synced;        // newest ticket durable
    bool failed, stop;
    uint64_t syncs, slowest_us;
    int fd;                 // eventfd: counts finished syncs not yet seen by the loop
};

static void *
s_run (void *arg)
{
    syncer_t *self = arg;
    pthread_mutex_lock (&self->lock);
    while (true) {
        while (!self->stop && self->requested == self->synced && !self->failed)
            pthread_cond_wait (&self->wake, &self->lock);
        if (self->stop || self->failed)
            break;
        //  Everything requested until now is written: one sync covers it all.
        uint64_t target = self->requested;
        pthread_mutex_unlock (&self->lock);
        int64_t t0 = zclock_usecs ();
        int rc = store_sync_wal (self->store);
        uint64_t us = (uint64_t) (zclock_usecs () - t0);
        pthread_mutex_lock (&self->lock);
        self->syncs++;
        if (us > self->slowest_us)
            self->slowest_us = us;
        if (rc == STRATA_OK)
            self->synced = target;
        else
            self->failed = true;
        pthread_cond_broadcast (&self->wake);
        uint64_t one = 1;
        if (write (self->fd, &one, sizeof one) < 0)
            log_error ("cannot signal the loop: %s", strerror (errno));
    }
    pthread_mutex_unlock (&self->lock);
    return NULL;
}

syncer_t *
syncer_new (store_t *store)
{
    syncer_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->store = store;
    self->fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init (&self->lock, NULL);
    pthread_cond_init (&self->wake, NULL);
    if (self->fd < 0 || pthread_create (&self->thread, NULL, s_run, self) != 0) {
        log_error ("cannot start the journal's sync thread: %s", strerror (errno));
        syncer_destroy (&self);
        return NULL;
    }
    self->started = true;
    return self;
}

void
syncer_destroy (syncer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    syncer_t *self = *self_p;
    if (self->started) {
        pthread_mutex_lock (&self->lock);
        self->stop = true;
        pthread_cond_broadcast (&self->wake);
        pthread_mutex_unlock (&self->lock);
        pthread_join (self->thread, NULL);
    }
    if (self->fd >= 0)
        close (self->fd);
    pthread_cond_destroy (&self->wake);
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

uint64_t
syncer_request (syncer_t *self)
{
    pthread_mutex_lock (&self->lock);
    uint64_t ticket = ++self->requested;
    pthread_cond_broadcast (&self->wake);
    pthread_mutex_unlock (&self->lock);
    return ticket;
}

int
syncer_fd (syncer_t *self)
{
    return self->fd;
}

int
syncer_synced (syncer_t *self, uint64_t *ticket)
{
    uint64_t count;
    if (read (self->fd, &count, sizeof count) < 0 && errno != EAGAIN)
        log_warn ("cannot read the sync signal: %s", strerror (errno));
    pthread_mutex_lock (&self->lock);
    *ticket = self->synced;
    int rc = self->failed ? STRATA_EIO : STRATA_OK;
    pthread_mutex_unlock (&self->lock);
    return rc;
}

void
syncer_counts (syncer_t *self, uint64_t *syncs, uint64_t *slowest_us)
{
    pthread_mutex_lock (&self->lock);
    *syncs = self->syncs;
    *slowest_us = self->slowest_us;
    pthread_mutex_unlock (&self->lock);
}

int
syncer_wait (syncer_t *self, uint64_t *ticket)
{
    pthread_mutex_lock (&self->lock);
    while (self->synced < self->requested && !self->failed && self->started)
        pthread_cond_wait (&self->wake, &self->lock);
    pthread_mutex_unlock (&self->lock);
    return syncer_synced (self, ticket);
}
