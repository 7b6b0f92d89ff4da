/*  request: one protobuf request and its reply, for Strata's own programs (the CLI, the
    trainer). Not part of the public strata.h: it exposes protobuf types.
*/
#ifndef STRATA_REQUEST_H
#define STRATA_REQUEST_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

//  Sends req as message type `type` to endpoint on a fresh DEALER and waits up to
//  timeout_ms for a `reply_type` reply. Returns the decoded reply (free with
//  protobuf_c_message_free_unpacked (reply, NULL)), or NULL with a message in err (an
//  ERROR reply's message included).
ProtobufCMessage *client_request (const char *endpoint, const char *type, const ProtobufCMessage *req,
                                  const char *reply_type, const ProtobufCMessageDescriptor *desc, int timeout_ms,
                                  char *err, size_t errlen);

#endif
