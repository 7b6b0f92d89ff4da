/*  arena: a bump allocator for the life of one unit of work (one batch, one job).

    Decoding a batch, cleaning it and building the result allocate thousands of small
    strings and messages that all die together; an arena makes that one free instead of
    thousands, and can be handed to protobuf-c as its allocator so that unpacked messages
    live in it too. Not thread-safe: an arena belongs to one thread.
*/
#ifndef STRATA_ARENA_H
#define STRATA_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

typedef struct _arena_t arena_t;

//  chunk: bytes per block (a larger request gets its own block). NULL on no memory.
arena_t *arena_new (size_t chunk);
void arena_destroy (arena_t **self_p);

//  16-byte aligned memory valid until arena_reset/arena_destroy. NULL on no memory.
void *arena_alloc (arena_t *self, size_t size);
void *arena_calloc (arena_t *self, size_t count, size_t size);
char *arena_strndup (arena_t *self, const char *s, size_t len);
char *arena_strdup (arena_t *self, const char *s);
char *arena_printf (arena_t *self, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

//  Frees everything allocated, keeping the first block for reuse.
void arena_reset (arena_t *self);

//  Bytes handed out since the last reset.
size_t arena_used (arena_t *self);

//  A protobuf-c allocator drawing from this arena (free is a no-op).
ProtobufCAllocator arena_protobuf (arena_t *self);

#endif
