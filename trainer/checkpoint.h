/*  checkpoint: the trainer's own RocksDB.

    Column families: `checkpoint` holds the latest training state (every tensor with
    its Adam moments, the per-row step counts, the optimiser step, and the run state as
    JSON), written in one synced WriteBatch so that a crash leaves the previous
    checkpoint or the new one, never a mix. `models` holds the published model
    versions, kept by model/versions.h (the store rank workers keep theirs in too).
*/
#ifndef STRATA_CHECKPOINT_H
#define STRATA_CHECKPOINT_H

#include <jansson.h>
#include <stdint.h>

#include "model.h"
#include "store.h"
#include "versions.h"

enum { CKPT_CF_DEFAULT, CKPT_CF_CHECKPOINT, CKPT_CF_MODELS, CKPT_CF_COUNT };

//  Opens (creating) the store at path. NULL on failure (logged).
store_t *checkpoint_open (const char *path);

//  Saves the model's training state and the run state (one synced write). 0 or
//  STRATA_EIO.
int checkpoint_save (store_t *st, model_t *m, const char *state_json);

//  The saved run state (malloc'd, NUL-terminated), or NULL when there is none.
char *checkpoint_state (store_t *st);

//  Loads the saved training state into m, which must have the saved configuration
//  (its table is resized to the saved rows). 0, STRATA_ENOTFOUND (no checkpoint, or
//  part of one), STRATA_ECORRUPT (of another shape), STRATA_EIO or STRATA_ENOMEM.
int checkpoint_load (store_t *st, model_t *m);

#endif
