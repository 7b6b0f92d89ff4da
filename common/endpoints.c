/*  endpoints: see endpoints.h. */
#define LOG_MODULE "endpoints"
#include "endpoints.h"

#include <jansson.h>
#include <stdio.h>
#include <unistd.h>

#include "log.h"
#include "strata_error.h"

int
endpoints_write (const char *path, const char *const *names, zsock_t *const *socks, size_t n, const char *dir)
{
    if (!path || !*path)
        return 0;
    json_t *j = json_object ();
    for (size_t i = 0; j && i < n; i++)
        json_object_set_new (j, names[i], json_string (zsock_endpoint (socks[i])));
    if (j) {
        json_object_set_new (j, "pid", json_integer ((json_int_t) getpid ()));
        if (dir)
            json_object_set_new (j, "dir", json_string (dir));
    }
    char tmp[4200];
    snprintf (tmp, sizeof tmp, "%s.tmp", path);
    int rc = !j ? STRATA_ENOMEM : json_dump_file (j, tmp, JSON_INDENT (2)) == 0 ? 0 : STRATA_EIO;
    json_decref (j);
    if (rc == 0 && rename (tmp, path) != 0)
        rc = STRATA_EIO;
    if (rc)
        log_error ("cannot write %s: %s", path, strata_strerror (rc));
    return rc;
}
