/*  log: see log.h. Writes whole lines with one fprintf so lines from concurrent
    processes sharing a terminal do not interleave mid-line. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

int log_level_g = LOG_LEVEL_INFO;
static const char *s_process = "strata";

static const char *s_names[] = { "error", "warn", "info", "debug" };

void
log_set_level (int level)
{
    if (level < LOG_LEVEL_ERROR)
        level = LOG_LEVEL_ERROR;
    if (level > LOG_LEVEL_DEBUG)
        level = LOG_LEVEL_DEBUG;
    log_level_g = level;
}

int
log_set_level_name (const char *name)
{
    for (int i = 0; i <= LOG_LEVEL_DEBUG; i++)
        if (strcasecmp (name, s_names[i]) == 0) {
            log_level_g = i;
            return 0;
        }
    return STRATA_EINVAL;
}

void
log_set_process (const char *name)
{
    s_process = name;
}

void
log_write (int level, const char *module, const char *file, int line, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (msg, sizeof msg, fmt, ap);
    va_end (ap);

    struct timeval tv;
    gettimeofday (&tv, NULL);
    struct tm tm;
    gmtime_r (&tv.tv_sec, &tm);
    char stamp[32];
    strftime (stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);

    if (level >= LOG_LEVEL_DEBUG)
        fprintf (stderr, "%s.%03dZ %-5s %s/%s: %s (%s:%d)\n", stamp, (int) (tv.tv_usec / 1000),
                 s_names[level], s_process, module, msg, file, line);
    else
        fprintf (stderr, "%s.%03dZ %-5s %s/%s: %s\n", stamp, (int) (tv.tv_usec / 1000),
                 s_names[level], s_process, module, msg);
}
