/*  endpoints: the file in which a server process reports the endpoints it bound.

    Servers may bind ephemeral ports ("tcp://127.0.0.1:!"); whoever started them (the
    `strata up` supervisor, tests, benchmarks) learns the real endpoints from this JSON
    file: {"NAME": "tcp://...", ..., "pid": N, "dir": "..."}. It is written to a
    temporary file and renamed, so a reader never sees half of it.
*/
#ifndef STRATA_ENDPOINTS_H
#define STRATA_ENDPOINTS_H

#include <czmq.h>
#include <stddef.h>

//  Writes the n sockets' bound endpoints under their names, this process's pid and dir
//  (if not NULL) to path. Nothing is written when path is NULL or empty. 0, or -1
//  (logged).
int endpoints_write (const char *path, const char *const *names, zsock_t *const *socks, size_t n, const char *dir);

#endif
