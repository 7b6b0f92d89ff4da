/*  checkpoint: the trainer's own RocksDB.

    Column families: `checkpoint` holds the latest training state (every tensor with
    its Adam moments, the per-row step counts, the optimiser step, and the run state as
    JSON), written in one synced WriteBatch so that a crash leaves the previous
    checkpoint or the new one, never a mix. `models` holds the published model
    versions as snapshots (snapshot.h) cut into chunks: key (version, chunk) -> bytes,
    and (version, META) -> JSON describing the version (its size, chunk count and
    FNV-1a 64 hash among it); only the last `keep` versions are kept.
*/
#ifndef STRATA_CHECKPOINT_H
#define STRATA_CHECKPOINT_H

#include <jansson.h>
#include <stdint.h>

#include "model.h"
#include "store.h"

enum { CKPT_CF_DEFAULT, CKPT_CF_CHECKPOINT, CKPT_CF_MODELS, CKPT_CF_COUNT };

//  Opens (creating) the store at path. NULL on failure (logged).
store_t *checkpoint_open (const char *path);

//  Saves the model's training state and the run state. 0 or -1.
int checkpoint_save (store_t *st, model_t *m, const char *state_json);

//  The saved run state (malloc'd, NUL-terminated), or NULL when there is none.
char *checkpoint_state (store_t *st);

//  Loads the saved training state into m, which must have the saved configuration
//  (its table is resized to the saved rows). 0, or -1 when absent or of another shape.
int checkpoint_load (store_t *st, model_t *m);

#define CHECKPOINT_CHUNK_BYTES (1u << 20)

//  Publishes a snapshot blob as `version` in chunks of CHECKPOINT_CHUNK_BYTES with its
//  meta (borrowed), to which it adds what a rank worker needs to fetch and verify it
//  ("bytes", "chunk_bytes", "chunks", "fnv": FNV-1a 64 of the blob in hex), in one
//  synced write; drops versions older than the last `keep`. 0 or -1.
int checkpoint_publish (store_t *st, uint64_t version, const uint8_t *blob, size_t len, json_t *meta, int keep);

//  The newest published version (0: none).
uint64_t checkpoint_latest (store_t *st);

//  The meta JSON of a published version (malloc'd), or NULL.
char *checkpoint_version_meta (store_t *st, uint64_t version);

//  Chunk `index` of a published version (malloc'd, *len bytes), or NULL.
char *checkpoint_chunk (store_t *st, uint64_t version, uint32_t index, size_t *len);

#endif
