/*  arena: see arena.h. */
#include "arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct _block_t {
    struct _block_t *next;
    size_t size, used;
    max_align_t data[];
} block_t;

struct _arena_t {
    block_t *head;
    block_t *first;     // the block made with the arena, kept across resets
    size_t chunk;
    size_t used;
};

static block_t *
s_block_new (size_t size)
{
    block_t *b = malloc (sizeof (block_t) + size);
    if (!b)
        return NULL;
    b->next = NULL;
    b->size = size;
    b->used = 0;
    return b;
}

arena_t *
arena_new (size_t chunk)
{
    arena_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->chunk = chunk < 1024 ? 1024 : chunk;
    self->head = self->first = s_block_new (self->chunk);
    if (!self->head) {
        free (self);
        return NULL;
    }
    return self;
}

void
arena_destroy (arena_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    arena_t *self = *self_p;
    block_t *b = self->head;
    while (b) {
        block_t *next = b->next;
        free (b);
        b = next;
    }
    free (self);
    *self_p = NULL;
}

void *
arena_alloc (arena_t *self, size_t size)
{
    if (size > SIZE_MAX / 2)
        return NULL;
    size = (size + 15) & ~(size_t) 15;
    if (size == 0)
        size = 16;
    block_t *b = self->head;
    if (b->used + size > b->size) {
        //  Big requests get a block of their own behind the current one, so the
        //  current block's free space is not wasted.
        if (size > self->chunk / 4) {
            block_t *big = s_block_new (size);
            if (!big)
                return NULL;
            big->used = size;
            big->next = b->next;
            b->next = big;
            self->used += size;
            return big->data;
        }
        block_t *nb = s_block_new (self->chunk);
        if (!nb)
            return NULL;
        nb->next = b;
        self->head = nb;
        b = nb;
    }
    void *p = (char *) b->data + b->used;
    b->used += size;
    self->used += size;
    return p;
}

void *
arena_calloc (arena_t *self, size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        return NULL;
    void *p = arena_alloc (self, count * size);
    if (p)
        memset (p, 0, count * size);
    return p;
}

char *
arena_strndup (arena_t *self, const char *s, size_t len)
{
    char *p = arena_alloc (self, len + 1);
    if (p) {
        memcpy (p, s, len);
        p[len] = 0;
    }
    return p;
}

char *
arena_strdup (arena_t *self, const char *s)
{
    return arena_strndup (self, s, strlen (s));
}

char *
arena_printf (arena_t *self, const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    int n = vsnprintf (NULL, 0, fmt, ap);
    va_end (ap);
    if (n < 0)
        return NULL;
    char *p = arena_alloc (self, (size_t) n + 1);
    if (!p)
        return NULL;
    va_start (ap, fmt);
    vsnprintf (p, (size_t) n + 1, fmt, ap);
    va_end (ap);
    return p;
}

void
arena_reset (arena_t *self)
{
    //  Free every block but the first one made, which is kept for reuse.
    block_t *b = self->head;
    while (b) {
        block_t *next = b->next;
        if (b != self->first)
            free (b);
        b = next;
    }
    self->first->used = 0;
    self->first->next = NULL;
    self->head = self->first;
    self->used = 0;
}

size_t
arena_used (arena_t *self)
{
    return self->used;
}

static void *
s_pb_alloc (void *data, size_t size)
{
    return arena_alloc (data, size);
}

static void
s_pb_free (void *data, void *ptr)
{
    (void) data;
    (void) ptr;
}

ProtobufCAllocator
arena_protobuf (arena_t *self)
{
    ProtobufCAllocator a = { s_pb_alloc, s_pb_free, self };
    return a;
}
