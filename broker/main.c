/*  strata-broker: see broker.h. The process is the broker object's three calls and
    the configuration table's parsing around them. */
#include <stdio.h>

#include "broker.h"
#include "log.h"

int
main (int argc, char **argv)
{
    broker_config_t cfg = { 0 };
    char err[256];
    int rc = config_parse (broker_config_keys, &cfg, argc, argv, NULL, err, sizeof err);
    if (rc == CONFIG_HELP) {
        config_help (broker_config_keys, stdout, "usage: strata-broker [options]");
        config_free (broker_config_keys, &cfg);
        return 0;
    }
    if (rc < 0) {
        fprintf (stderr, "strata-broker: %s\n", err);
        config_free (broker_config_keys, &cfg);
        return 2;
    }
    log_set_process ("broker");
    if (log_set_level_name (cfg.log_level) < 0)
        fprintf (stderr, "strata-broker: unknown log level '%s', using info\n", cfg.log_level);
    broker_t *broker = broker_new (&cfg);
    rc = broker ? broker_run (broker) : STRATA_EUNAVAILABLE;
    broker_destroy (&broker);
    config_free (broker_config_keys, &cfg);
    return rc == 0 ? 0 : 1;
}
