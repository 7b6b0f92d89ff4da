/*  log: levelled logging for every Strata process.

    One line per record on stderr: time, level, module, message; debug records add
    file:line. The level check happens before the arguments are evaluated, so a
    disabled debug line costs one comparison. The level is the one mutable global of
    the project besides configuration (set once at start-up).
*/
#ifndef STRATA_LOG_H
#define STRATA_LOG_H

#include "strata_error.h"

typedef enum {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN = 1,
    LOG_LEVEL_INFO = 2,
    LOG_LEVEL_DEBUG = 3,
} log_level_t;

extern int log_level_g;

//  Sets the level; returns 0, or STRATA_EINVAL for a name that is not a level.
int log_set_level_name (const char *name);
void log_set_level (int level);

//  Process name shown in every line (e.g. "broker"); the string is borrowed and
//  must stay valid for the life of the process.
void log_set_process (const char *name);

void log_write (int level, const char *module, const char *file, int line,
                const char *fmt, ...) __attribute__ ((format (printf, 5, 6)));

#ifndef LOG_MODULE
#define LOG_MODULE "strata"
#endif

#define LOG_AT(lvl, ...)                                                        \
    do {                                                                        \
        if ((lvl) <= log_level_g)                                               \
            log_write ((lvl), LOG_MODULE, __FILE__, __LINE__, __VA_ARGS__);     \
    } while (0)

#define log_error(...) LOG_AT (LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  LOG_AT (LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  LOG_AT (LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) LOG_AT (LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
