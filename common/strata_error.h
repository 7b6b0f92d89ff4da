/*  strata_error: the error codes of every Strata API, one namespace.

    Every function that can fail returns 0 (STRATA_OK) or one of these negative codes,
    LMDB's MDB_* / mdb_strerror style: a caller can tell "not found" from "no memory"
    from "the peer broke the protocol" whichever module answered, and strata_strerror
    turns any of them into text for a log line or a user. The public client header
    (client/strata.h) includes this one, so a program linking libstrata sees the same
    codes as the daemons' own modules. Self-contained: no other header, no dependency.
*/
#ifndef STRATA_ERROR_H
#define STRATA_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

#define STRATA_OK            0
#define STRATA_ENOMEM       -1    // out of memory
#define STRATA_ETIMEOUT     -2    // no answer in time
#define STRATA_EREJECTED    -3    // the peer refused the request for good
#define STRATA_ECONNECT     -4    // cannot create, bind or connect a socket
#define STRATA_EPROTOCOL    -5    // an answer that breaks the protocol (unexpected type, does not decode)
#define STRATA_ENOTFOUND    -6    // no such key, version, file or record
#define STRATA_EIO          -7    // the store or the file system failed
#define STRATA_EFRAMING     -8    // a message with the wrong frames or protocol frame
#define STRATA_ETOOLARGE    -9    // over a configured limit
#define STRATA_EINTR       -10    // interrupted (a signal), nothing received
#define STRATA_EAGAIN      -11    // nothing waiting (non-blocking receive)
#define STRATA_EINVAL      -12    // an invalid argument, option or input record
#define STRATA_ECORRUPT    -13    // stored or received data that fails its checks (hash, magic, shape)
#define STRATA_EUNAVAILABLE -14   // no process can serve it now (no worker, no model version)
#define STRATA_ESTATE      -15    // not in this state (e.g. a run already going, nothing to resume)

//  Text for a code ("unknown error" for anything else). A static string.
const char *strata_strerror (int code);

#ifdef __cplusplus
}
#endif

#endif
