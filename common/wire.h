/*  wire: Strata's message framing over ZeroMQ.

    A message is [routing id] "STRATA1" TYPE PAYLOAD, where the routing id frame is
    present only on ROUTER sockets and PAYLOAD is one packed protobuf message (possibly
    empty). Peers use DEALER sockets without an empty delimiter frame. Receiving checks
    framing and size before anything is decoded, so a bad peer costs one error reply and
    never a crash; the routing id is kept even when the rest is bad, so that the error can
    be sent back to whoever sent it.

    wire is the heart of the common library (common/: framing wire.h, the RocksDB
    wrapper store.h, configuration tables config.h, logging log.h, error codes
    strata_error.h, arenas arena.h, the worker registry pool.h, the tokenizer
    tokenize.h, default endpoints endpoints.h, small helpers util.h), which every other
    library uses and which depends only on ZeroMQ, czmq, protobuf-c, RocksDB and
    jansson.
*/
#ifndef STRATA_WIRE_H
#define STRATA_WIRE_H

#include <czmq.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

#include "strata.pb-c.h"
#include "strata_error.h"

#define WIRE_PROTOCOL "STRATA1"

//  Message types (the second frame).
#define WIRE_BATCH        "BATCH"         // EventBatch        producer -> broker
#define WIRE_ACK          "ACK"           // Ack               broker -> producer
#define WIRE_ERROR        "ERROR"         // Error             anyone -> sender of a bad message
#define WIRE_STATUS       "STATUS"        // BatchStatusRequest
#define WIRE_STATUS_REPLY "STATUS_REPLY"  // BatchStatusReply
#define WIRE_REJECTS      "REJECTS"       // RejectsRequest
#define WIRE_REJECTS_REPLY "REJECTS_REPLY" // RejectsReply
#define WIRE_HISTORY      "HISTORY"       // HistoryRequest
#define WIRE_HISTORY_REPLY "HISTORY_REPLY" // HistoryReply
#define WIRE_CATALOGUE    "CATALOGUE"     // CatalogueRequest
#define WIRE_CATALOGUE_REPLY "CATALOGUE_REPLY" // CatalogueReply
#define WIRE_STATS        "STATS"         // StatsRequest
#define WIRE_STATS_REPLY  "STATS_REPLY"   // Stats
#define WIRE_READY        "READY"         // WorkerHello       worker -> broker
#define WIRE_HEARTBEAT    "HEARTBEAT"     // Heartbeat         both ways
#define WIRE_JOB          "JOB"           // Job               broker -> worker
#define WIRE_RESULT       "RESULT"        // JobResult         worker -> broker
#define WIRE_DISCONNECT   "DISCONNECT"    // (empty)           both ways
#define WIRE_TASK         "TASK"          // TrainTask         trainer -> train worker
#define WIRE_GRADIENT     "GRADIENT"      // TrainGradient     train worker -> trainer
#define WIRE_TRAIN        "TRAIN"         // TrainRequest      client -> trainer
#define WIRE_TRAIN_STATUS "TRAIN_STATUS"  // TrainStatusRequest client -> trainer
#define WIRE_TRAIN_REPLY  "TRAIN_REPLY"   // TrainStatus       trainer -> client
#define WIRE_MODEL_INFO   "MODEL_INFO"    // ModelInfoRequest  rank worker -> trainer
#define WIRE_MODEL_INFO_REPLY "MODEL_INFO_REPLY" // ModelInfo  trainer -> rank worker
#define WIRE_MODEL_CHUNK  "MODEL_CHUNK"   // ModelChunkRequest rank worker -> trainer
#define WIRE_MODEL_CHUNK_REPLY "MODEL_CHUNK_REPLY" // ModelChunk trainer -> rank worker
#define WIRE_RECOMMEND    "RECOMMEND"     // Recommend         client -> broker
#define WIRE_RECOMMEND_REPLY "RECOMMEND_REPLY" // Recommendations broker -> client
#define WIRE_SIMILAR      "SIMILAR"       // Similar           client -> broker
#define WIRE_SIMILAR_REPLY "SIMILAR_REPLY" // Recommendations   broker -> client
#define WIRE_SEARCH       "SEARCH"        // Search            client -> broker
#define WIRE_SEARCH_REPLY "SEARCH_REPLY"  // Recommendations   broker -> client
#define WIRE_PING         "PING"          // (empty)           client -> broker -> rank worker: the serving path's floor
#define WIRE_PING_REPLY   "PING_REPLY"    // (empty)
#define WIRE_SERVE_JOBS   "SERVE_JOBS"    // ServeJobs         broker -> rank worker
#define WIRE_SERVE_RESULTS "SERVE_RESULTS" // ServeResults     rank worker -> broker

//  Receive errors (strata_error.h): STRATA_EFRAMING (wrong number of frames or wrong
//  protocol frame), STRATA_ETOOLARGE (payload over the limit), STRATA_EINTR (interrupted,
//  no message), STRATA_EAGAIN (wire_recv_ready: no message waiting).

typedef struct {
    zframe_t *routing;   // ROUTER identity, or NULL
    char type[24];       // message type, NUL-terminated
    zframe_t *payload;   // packed protobuf (may be zero bytes)
} wire_msg_t;

//  Receives one message. On success returns 0 and fills msg (call wire_msg_reset after).
//  On a framing or size error returns STRATA_EFRAMING / STRATA_ETOOLARGE with msg->routing
//  still set (when router) so the caller can reply. max_payload 0 means no limit.
int wire_recv (zsock_t *sock, bool router, size_t max_payload, wire_msg_t *msg);

//  The same without waiting: STRATA_EAGAIN when no message is there. Loops that drain a
//  socket call it until STRATA_EAGAIN rather than asking the socket first whether a
//  message waits (each such question is a pair of system calls; a receive that finds
//  one costs none).
int wire_recv_ready (zsock_t *sock, bool router, size_t max_payload, wire_msg_t *msg);

void wire_msg_reset (wire_msg_t *msg);

//  Packs msg (may be NULL for an empty payload) and sends it. routing is borrowed.
//  Returns 0, STRATA_EAGAIN (the peer's queue is full on a non-blocking socket),
//  STRATA_EINTR (interrupted) or STRATA_ECONNECT (the socket refused, e.g. a ROUTER
//  peer that is gone); errno says why.
int wire_send (zsock_t *sock, zframe_t *routing, const char *type, const ProtobufCMessage *msg);

//  Sends a pre-packed payload. As wire_send.
int wire_send_bytes (zsock_t *sock, zframe_t *routing, const char *type, const void *data,
                     size_t size);

//  Sends an Error{code, message, ref}; ref (may be NULL) names what it answers. As
//  wire_send.
int wire_send_error (zsock_t *sock, zframe_t *routing, const char *ref, Strata__V1__ErrorCode code,
                     const char *fmt, ...) __attribute__ ((format (printf, 5, 6)));

//  A ROUTER bound to endpoint for a server's endpoint: no linger, deep queues, and a
//  message cap of a few times max_frame (so an oversized payload can still be answered).
//  NULL on failure (logged).
zsock_t *wire_bind_router (const char *endpoint, int64_t max_frame);

//  A decoded bytes field read in place as n floats: NULL unless it holds exactly n of
//  them at an address aligned for float (protobuf-c gives each bytes field its own
//  malloc'd block, so a well-formed field always is).
const float *wire_floats (ProtobufCBinaryData field, size_t n);

//  Unpacks the payload with the given descriptor; NULL when it does not decode.
//  Free the result with protobuf_c_message_free_unpacked (msg, allocator).
ProtobufCMessage *wire_unpack (const ProtobufCMessageDescriptor *desc, zframe_t *payload,
                               ProtobufCAllocator *allocator);

#endif
