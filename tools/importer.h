/*  importer: reads behaviour and catalogue files into Strata records.

    Generic formats: JSONL (one object per line) and CSV with a header naming the fields,
    for events or for items. Presets for public datasets: S3-Rec sequence files
    (`user item item ...`, order = time) and their `*_item2attributes.json`, MovieLens
    `u.data` (with `u.item` titles and genres beside it), Home Depot `train.csv`
    (distinct products as catalogue items; ISO-8859-1 converted to UTF-8).

    Parsing is separated from sending: records go to a sink, which in `strata import` is
    the producer and in tests is a collector. A line that cannot be parsed is not
    dropped: it goes to the sink's raw() with the reason, and the broker keeps it among
    the rejects.

    Field names (generic formats; aliases in brackets):
      events  event_id [id], user_id [user], item_id [item], type [event, event_type],
              timestamp [ts, time] (Unix s or ms, or ISO-8601), query, value [rating],
              session [session_id]
      items   item_id [id], title [name], brand, category (text "a > b" or JSON array),
              price, attributes (JSON object); any other field becomes an attribute
*/
#ifndef STRATA_IMPORTER_H
#define STRATA_IMPORTER_H

#include <stdbool.h>
#include <stdint.h>

#include "strata.h"

typedef enum {
    IMPORT_AUTO,
    IMPORT_JSONL,
    IMPORT_CSV,
    IMPORT_S3REC,
    IMPORT_S3REC_ATTRS,
    IMPORT_MOVIELENS,
    IMPORT_HOMEDEPOT,
} import_format_t;

typedef struct {
    int (*event) (void *arg, const strata_event_t *event);
    int (*item) (void *arg, const strata_item_t *item);
    int (*raw) (void *arg, const char *source, uint64_t line, const char *text, const char *reason);
    void *arg;
} import_sink_t;

typedef struct {
    const char *path;
    import_format_t format;
    bool items;              // generic formats: the file holds items, not events
    const char *prefix;      // prepended to user and item ids (namespacing datasets)
    bool latin1;             // convert ISO-8859-1 input to UTF-8
    int64_t base_ms;         // S3-Rec: timestamp of each user's first item (default 2014-01-01)
} import_opts_t;

typedef struct {
    uint64_t lines, events, items, raw;
} import_counts_t;

//  Parses a format name ("jsonl", "csv", "s3rec", "s3rec-attrs", "movielens",
//  "homedepot"); returns STRATA_EINVAL for an unknown name.
int import_format_parse (const char *name);

//  Guesses the format from a file name.
import_format_t import_format_guess (const char *path);

//  Reads the file into the sink. Returns 0, or a negative sink/producer code, or
//  STRATA_ENOTFOUND if the file cannot be read (message in err).
int import_file (const import_opts_t *opts, const import_sink_t *sink, import_counts_t *counts, char *err,
                 size_t errlen);

#endif
