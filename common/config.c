/*  config: see config.h. */
#include "config.h"

#include <czmq.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "strata_error.h"

static const config_key_t *
s_find (const config_key_t *keys, const char *name, size_t len)
{
    for (const config_key_t *k = keys; k->name; k++)
        if (strlen (k->name) == len && strncmp (k->name, name, len) == 0)
            return k;
    return NULL;
}

static int
s_parse_bool (const char *v, bool *out)
{
    if (!strcasecmp (v, "1") || !strcasecmp (v, "true") || !strcasecmp (v, "yes") || !strcasecmp (v, "on"))
        *out = true;
    else if (!strcasecmp (v, "0") || !strcasecmp (v, "false") || !strcasecmp (v, "no") || !strcasecmp (v, "off"))
        *out = false;
    else
        return -1;
    return 0;
}

static int
s_assign (const config_key_t *k, void *cfg, const char *value, char *err, size_t errlen)
{
    char *field = (char *) cfg + k->offset;
    if (!value)
        value = "";
    switch (k->type) {
    case CONFIG_STRING: {
        char **slot = (char **) field;
        char *copy = strdup (value);
        if (!copy) {
            snprintf (err, errlen, "%s: out of memory", k->name);
            return STRATA_ENOMEM;
        }
        free (*slot);
        *slot = copy;
        return 0;
    }
    case CONFIG_BOOL: {
        bool b;
        if (s_parse_bool (value, &b) < 0) {
            snprintf (err, errlen, "%s: '%s' is not a boolean (true/false)", k->name, value);
            return STRATA_EINVAL;
        }
        *(bool *) field = b;
        return 0;
    }
    case CONFIG_INT: {
        char *end;
        errno = 0;
        long long v = strtoll (value, &end, 0);
        //  Accept size suffixes so limits read naturally: 16M, 4K, 1G.
        if (end != value && *end && !end[1]) {
            char s = (char) toupper ((unsigned char) *end);
            long long mult = s == 'K' ? 1024LL : s == 'M' ? 1024LL * 1024 : s == 'G' ? 1024LL * 1024 * 1024 : 0;
            if (mult) {
                if (v > LLONG_MAX / mult || v < LLONG_MIN / mult) {
                    snprintf (err, errlen, "%s: '%s' is too large", k->name, value);
                    return STRATA_EINVAL;
                }
                v *= mult;
                end++;
            }
        }
        if (errno || end == value || *end) {
            snprintf (err, errlen, "%s: '%s' is not an integer", k->name, value);
            return STRATA_EINVAL;
        }
        if (k->min <= k->max && ((double) v < k->min || (double) v > k->max)) {
            snprintf (err, errlen, "%s: %lld is out of range [%.0f, %.0f]", k->name, v, k->min, k->max);
            return STRATA_EINVAL;
        }
        *(int64_t *) field = v;
        return 0;
    }
    case CONFIG_DOUBLE: {
        char *end;
        errno = 0;
        double v = strtod (value, &end);
        if (errno || end == value || *end || !isfinite (v)) {
            snprintf (err, errlen, "%s: '%s' is not a number", k->name, value);
            return STRATA_EINVAL;
        }
        if (k->min <= k->max && (v < k->min || v > k->max)) {
            snprintf (err, errlen, "%s: %g is out of range [%g, %g]", k->name, v, k->min, k->max);
            return STRATA_EINVAL;
        }
        *(double *) field = v;
        return 0;
    }
    }
    snprintf (err, errlen, "%s: bad key type", k->name);
    return STRATA_EINVAL;
}

int
config_set (const config_key_t *keys, void *cfg, const char *name, const char *value, char *err,
            size_t errlen)
{
    const config_key_t *k = s_find (keys, name, strlen (name));
    if (!k) {
        snprintf (err, errlen, "unknown option '%s'", name);
        return STRATA_EINVAL;
    }
    return s_assign (k, cfg, value, err, errlen);
}

int
config_defaults (const config_key_t *keys, void *cfg, char *err, size_t errlen)
{
    for (const config_key_t *k = keys; k->name; k++) {
        int rc = s_assign (k, cfg, k->def ? k->def : (k->type == CONFIG_STRING ? "" : "0"), err, errlen);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int
config_load_file (const config_key_t *keys, void *cfg, const char *path, char *err, size_t errlen)
{
    zconfig_t *root = zconfig_load (path);
    if (!root) {
        //  zconfig_load says only "no": a file that is not there is the caller's
        //  mistake of name, one that is there but cannot be read or parsed is not.
        int code = access (path, F_OK) == 0 ? (access (path, R_OK) == 0 ? STRATA_EINVAL : STRATA_EIO)
                                              : STRATA_ENOTFOUND;
        snprintf (err, errlen, "cannot read config file '%s'", path);
        return code;
    }
    int rc = 0;
    for (zconfig_t *c = zconfig_child (root); c && rc == 0; c = zconfig_next (c)) {
        const char *name = zconfig_name (c);
        if (zconfig_child (c)) {
            snprintf (err, errlen, "%s: '%s' has children; Strata config files are flat", path, name);
            rc = STRATA_EINVAL;
            break;
        }
        rc = config_set (keys, cfg, name, zconfig_value (c), err, errlen);
    }
    zconfig_destroy (&root);
    return rc;
}

static int
s_load_env (const config_key_t *keys, void *cfg, char *err, size_t errlen)
{
    for (const config_key_t *k = keys; k->name; k++) {
        char env[128] = "STRATA_";
        size_t n = strlen (env);
        for (const char *p = k->name; *p && n < sizeof env - 1; p++)
            env[n++] = *p == '-' ? '_' : (char) toupper ((unsigned char) *p);
        env[n] = 0;
        const char *v = getenv (env);
        int rc = v ? s_assign (k, cfg, v, err, errlen) : 0;
        if (rc < 0)
            return rc;
    }
    return 0;
}

int
config_parse (const config_key_t *keys, void *cfg, int argc, char **argv, int *argi, char *err,
              size_t errlen)
{
    int rc = config_defaults (keys, cfg, err, errlen);
    if (rc < 0)
        return rc;

    //  The config file is applied before the environment and flags, wherever
    //  --config stands on the line.
    for (int i = 1; i < argc; i++) {
        if (!strcmp (argv[i], "--"))
            break;
        if (!strcmp (argv[i], "--config") && i + 1 < argc) {
            if ((rc = config_load_file (keys, cfg, argv[i + 1], err, errlen)) < 0)
                return rc;
            break;
        }
        if (!strncmp (argv[i], "--config=", 9)) {
            if ((rc = config_load_file (keys, cfg, argv[i] + 9, err, errlen)) < 0)
                return rc;
            break;
        }
    }
    if ((rc = s_load_env (keys, cfg, err, errlen)) < 0)
        return rc;

    //  Options and positional arguments may be mixed; positional ones are moved, in
    //  order, to the end of argv (as GNU getopt does) and *argi points at the first.
    char **positional = calloc ((size_t) argc + 1, sizeof *positional);
    if (!positional) {
        snprintf (err, errlen, "out of memory");
        return STRATA_ENOMEM;
    }
    int npos = 0, nopt = 1;
    int i = 1;
    while (i < argc && rc == 0) {
        const char *a = argv[i];
        if (!strcmp (a, "--")) {
            argv[nopt++] = argv[i];   // keep "--" among the options, before the positionals
            for (i++; i < argc; i++)
                positional[npos++] = argv[i];
            break;
        }
        if (!strcmp (a, "-h") || !strcmp (a, "--help")) {
            rc = CONFIG_HELP;
            break;
        }
        if (strncmp (a, "--", 2) != 0 || a[2] == 0) {
            positional[npos++] = argv[i++];
            continue;
        }
        int start = i;
        const char *name = a + 2;
        const char *eq = strchr (name, '=');
        size_t len = eq ? (size_t) (eq - name) : strlen (name);
        const config_key_t *k = s_find (keys, name, len);
        const config_key_t *negated = (!k && !eq && len > 3 && !strncmp (name, "no-", 3))
                                        ? s_find (keys, name + 3, len - 3) : NULL;
        if (len == 6 && !strncmp (name, "config", 6))
            i += eq ? 1 : 2;
        else if (negated && negated->type == CONFIG_BOOL) {
            *(bool *) ((char *) cfg + negated->offset) = false;
            i++;
        }
        else if (!k) {
            snprintf (err, errlen, "unknown option '--%.*s' (see --help)", (int) len, name);
            rc = STRATA_EINVAL;
        }
        else {
            const char *value = NULL;
            if (eq)
                value = eq + 1;
            else if (k->type == CONFIG_BOOL)
                value = "true";
            else if (i + 1 < argc)
                value = argv[++i];
            if (!value) {
                snprintf (err, errlen, "option '--%s' needs a value", k->name);
                rc = STRATA_EINVAL;
            }
            else
                rc = s_assign (k, cfg, value, err, errlen);
            i++;
        }
        for (int k2 = start; k2 < i && k2 < argc; k2++)
            argv[nopt++] = argv[k2];
    }
    if (rc == 0) {
        for (int k2 = 0; k2 < npos; k2++)
            argv[nopt + k2] = positional[k2];
        if (argi)
            *argi = nopt;
    }
    free (positional);
    return rc;
}

void
config_help (const config_key_t *keys, FILE *out, const char *usage)
{
    fprintf (out, "%s\n\nOptions (also settable as STRATA_<NAME> or in --config FILE):\n", usage);
    for (const config_key_t *k = keys; k->name; k++) {
        const char *type = k->type == CONFIG_STRING ? "TEXT"
                         : k->type == CONFIG_INT    ? "N"
                         : k->type == CONFIG_BOOL   ? ""
                                                    : "X";
        char flag[96];
        snprintf (flag, sizeof flag, "--%s%s%s", k->name, *type ? " " : "", type);
        fprintf (out, "  %-30s %s", flag, k->help);
        if (k->def && *k->def)
            fprintf (out, " [default: %s]", k->def);
        fputc ('\n', out);
    }
    fprintf (out, "  %-30s %s\n", "--config FILE", "read options from a zconfig file (name = value)");
}

void
config_free (const config_key_t *keys, void *cfg)
{
    for (const config_key_t *k = keys; k->name; k++)
        if (k->type == CONFIG_STRING) {
            char **slot = (char **) ((char *) cfg + k->offset);
            free (*slot);
            *slot = NULL;
        }
}
