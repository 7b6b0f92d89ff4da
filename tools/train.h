/*  train: `strata train`, which asks the cluster's trainer for a full training run and,
    with --wait, follows it: a progress line on stderr (epoch, loss, validation metric,
    samples/s, ETA) and the final summary as JSON on stdout. `strata train --status`
    prints the trainer's state as JSON.
*/
#ifndef STRATA_TRAIN_CMD_H
#define STRATA_TRAIN_CMD_H

#include <stddef.h>

//  The command's entry point; returns the process exit code.
int train_main (int argc, char **argv);

//  The trainer's status as a JSON object text (malloc'd), or NULL with err.
char *train_status_json (const char *endpoint, int timeout_ms, char *err, size_t errlen);

#endif
