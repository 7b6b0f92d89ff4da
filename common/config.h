/*  config: one table describes every configuration key of a program.

    A key has a name, a type, a range, a default and a help line. Defaults, a config
    file (czmq zconfig format, `name = value` lines), environment variables
    (STRATA_<NAME> with '-' as '_') and command-line flags (--name value, --name=value,
    --flag / --no-flag) all go through the same table, in that order of precedence
    (later wins), and every value is validated when it is set. --help is generated from
    the table. Values are written into a caller-owned struct at the offset each key names.
*/
#ifndef STRATA_CONFIG_H
#define STRATA_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "strata_error.h"

typedef enum {
    CONFIG_STRING,  // char * (owned by the struct; freed by config_free)
    CONFIG_INT,     // int64_t
    CONFIG_BOOL,    // bool
    CONFIG_DOUBLE,  // double
} config_type_t;

typedef struct {
    const char *name;
    config_type_t type;
    size_t offset;
    const char *def;     // default as text; NULL means empty string / 0
    double min, max;     // inclusive range for INT and DOUBLE (ignored if min > max)
    const char *help;
} config_key_t;

//  Table terminator.
#define CONFIG_END { NULL, CONFIG_STRING, 0, NULL, 0, 0, NULL }

//  Returned by config_parse when -h/--help was given.
#define CONFIG_HELP 1

//  Fills cfg from defaults, --config FILE, environment and argv[1..]. Parsing stops at
//  the first argument that is not an option (or after "--"); its index is stored in
//  *argi when argi is not NULL. Returns 0, CONFIG_HELP, or with a message in err
//  STRATA_EINVAL (an unknown option, a bad value), STRATA_ENOTFOUND (no such --config
//  file), STRATA_EIO (a config file that cannot be read) or STRATA_ENOMEM.
int config_parse (const config_key_t *keys, void *cfg, int argc, char **argv, int *argi,
                  char *err, size_t errlen);

//  Sets every key to its default. Returns 0, STRATA_EINVAL (a default out of range: a
//  bug) or STRATA_ENOMEM.
int config_defaults (const config_key_t *keys, void *cfg, char *err, size_t errlen);

//  Sets one key from text, validating type and range. Returns 0, or with err
//  STRATA_EINVAL (an unknown key, a value of the wrong type or out of range) or
//  STRATA_ENOMEM.
int config_set (const config_key_t *keys, void *cfg, const char *name, const char *value,
                char *err, size_t errlen);

//  Loads `name = value` pairs from a zconfig file. Unknown keys are an error. Returns
//  0, or with err STRATA_ENOTFOUND (no such file), STRATA_EIO (not readable),
//  STRATA_EINVAL (not zconfig, not flat, an unknown key or bad value) or STRATA_ENOMEM.
int config_load_file (const config_key_t *keys, void *cfg, const char *path, char *err,
                      size_t errlen);

//  Prints a usage block generated from the table.
void config_help (const config_key_t *keys, FILE *out, const char *usage);

//  Frees the strings held by cfg.
void config_free (const config_key_t *keys, void *cfg);

#endif
