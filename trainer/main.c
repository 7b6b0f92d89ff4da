/*  strata-trainer: the parameter server. See trainer.h. */
#include <stdio.h>

#include "log.h"
#include "trainer.h"

int
main (int argc, char **argv)
{
    trainer_config_t cfg = { 0 };
    char err[256];
    int rc = config_parse (trainer_config_keys, &cfg, argc, argv, NULL, err, sizeof err);
    if (rc == CONFIG_HELP) {
        config_help (trainer_config_keys, stdout, "usage: strata-trainer [options]");
        config_free (trainer_config_keys, &cfg);
        return 0;
    }
    if (rc < 0) {
        fprintf (stderr, "strata-trainer: %s\n", err);
        config_free (trainer_config_keys, &cfg);
        return 2;
    }
    log_set_process ("trainer");
    if (log_set_level_name (cfg.log_level) < 0)
        fprintf (stderr, "strata-trainer: unknown log level '%s', using info\n", cfg.log_level);
    trainer_t *trainer = trainer_new (&cfg);
    rc = trainer ? trainer_run (trainer) : -1;
    trainer_destroy (&trainer);
    config_free (trainer_config_keys, &cfg);
    return rc == 0 ? 0 : 1;
}
