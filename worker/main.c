/*  strata-worker: a stateless worker process. See worker.h. */
#define LOG_MODULE "main"
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "worker.h"

int
main (int argc, char **argv)
{
    worker_config_t cfg = { 0 };
    char err[256];
    int rc = config_parse (worker_config_keys, &cfg, argc, argv, NULL, err, sizeof err);
    if (rc == CONFIG_HELP) {
        config_help (worker_config_keys, stdout, "usage: strata-worker [--role preprocess] [options]");
        config_free (worker_config_keys, &cfg);
        return 0;
    }
    if (rc < 0) {
        fprintf (stderr, "strata-worker: %s\n", err);
        config_free (worker_config_keys, &cfg);
        return 2;
    }
    log_set_process ("worker");
    if (log_set_level_name (cfg.log_level) < 0)
        fprintf (stderr, "strata-worker: unknown log level '%s', using info\n", cfg.log_level);
    worker_t *worker = worker_new (&cfg);
    rc = worker ? worker_run (worker) : -1;
    worker_destroy (&worker);
    config_free (worker_config_keys, &cfg);
    return rc == 0 ? 0 : 1;
}
