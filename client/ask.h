/*  ask: the requests of strata.h's client as protobuf, and its replies back.

    Checks a strata_recommend_t, strata_similar_t or strata_search_t, packs it as the
    protocol's Recommend, Similar or Search with a request id, and turns the broker's
    Recommendations (or a failure) into a strata_reply_t. No sockets here: client.c
    owns the connection and the matching of replies to requests, this module owns the
    translation, so that the public header never shows a protobuf type. Internal to
    libstrata.
*/
#ifndef STRATA_CLIENT_ASK_H
#define STRATA_CLIENT_ASK_H

#include <stddef.h>
#include <stdint.h>

#include "strata.h"
#include "strata.pb-c.h"

//  A reply as the client keeps it: the public view first (strata_reply_t * and
//  ask_reply_t * are the same address), the decoded message whose strings it points
//  into, and the link of the client's queue of completed requests.
typedef struct _ask_reply_t {
    strata_reply_t pub;
    Strata__V1__Recommendations *pb;   // owned; NULL for a failed request
    char *error;                       // owned; NULL on success
    struct _ask_reply_t *next;
    strata_scored_t items[];           // pub.n_items
} ask_reply_t;

//  The message type a request of this kind is sent as, and the one its reply comes as.
const char *ask_type (strata_ask_t kind);
const char *ask_reply_type (strata_ask_t kind);

//  Checks req (a strata_recommend_t, strata_similar_t or strata_search_t as kind says)
//  and packs it with request_id. Returns STRATA_OK with a malloc'd *buf of *len bytes
//  (the caller frees it), STRATA_EINVAL with the reason in err, or STRATA_ENOMEM.
int ask_pack (strata_ask_t kind, const void *req, const char *request_id, uint8_t **buf, size_t *len, char *err,
              size_t errlen);

//  A successful reply; takes pb on success (NULL: no memory, pb untouched).
ask_reply_t *ask_reply_new (uint64_t request_id, strata_ask_t kind, Strata__V1__Recommendations *pb);

//  A failed one: status (a negative code) and its text (copied). NULL: no memory.
ask_reply_t *ask_reply_failed (uint64_t request_id, strata_ask_t kind, int status, const char *error);

//  The strata_error.h code for a protocol Error code.
int ask_error_status (Strata__V1__ErrorCode code);

#endif
