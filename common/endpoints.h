/*  endpoints: where Strata's processes meet by default, and the file in which a server
    process reports the endpoints it bound.

    The defaults below are the one place the well-known ports are written: the
    daemons' configuration tables, the CLI's fallback when there is no --dir or
    --broker, and `strata up --port` all use them.

    Servers may bind ephemeral ports ("tcp://127.0.0.1:!"); whoever started them (the
    `strata up` supervisor, tests, benchmarks) learns the real endpoints from this JSON
    file: {"NAME": "tcp://...", ..., "pid": N, "dir": "..."}. It is written to a
    temporary file and renamed, so a reader never sees half of it.
*/
#ifndef STRATA_ENDPOINTS_H
#define STRATA_ENDPOINTS_H

#include <czmq.h>
#include <stddef.h>

#include "strata_error.h"

#define STRATA_PORT_BASE "7701"   // ingest; the others follow it in this order
#define STRATA_DEFAULT_INGEST "tcp://127.0.0.1:7701"           // broker: producers
#define STRATA_DEFAULT_WORKERS "tcp://127.0.0.1:7702"          // broker: preprocess and rank workers
#define STRATA_DEFAULT_API "tcp://127.0.0.1:7703"              // broker: clients
#define STRATA_DEFAULT_TRAINER_WORKERS "tcp://127.0.0.1:7704"  // trainer: train workers
#define STRATA_DEFAULT_TRAINER_API "tcp://127.0.0.1:7705"      // trainer: train requests, model versions

//  Writes the n sockets' bound endpoints under their names, this process's pid and dir
//  (if not NULL) to path. Nothing is written when path is NULL or empty. 0,
//  STRATA_ENOMEM or STRATA_EIO (logged).
int endpoints_write (const char *path, const char *const *names, zsock_t *const *socks, size_t n, const char *dir);

#endif
