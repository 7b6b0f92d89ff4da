/*  test_config: the configuration table, from defaults to command-line flags.

    Every daemon and tool reads its settings through config_parse, so a mistake here
    silently changes limits everywhere (a frame size read as 16 instead of 16M, a
    --no-fsync that is ignored). The tests use one small table of their own covering
    each key type, and check each source (defaults, zconfig file, STRATA_<NAME>
    environment, flags) alone and then in order of precedence. Value parsing is
    table-driven: valid values, edge and out-of-range values, and junk. Criterion runs
    each test in its own process, so setenv/unsetenv here do not leak between tests.
*/
#include <criterion/criterion.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "strata_error.h"

typedef struct {
    int64_t max_frame;
    int64_t workers;
    int64_t offset;
    double ratio;
    bool verbose;
    bool fsync;
    char *name;
    char *endpoint;
} test_cfg_t;

static const config_key_t s_keys[] = {
    { "max-frame", CONFIG_INT, offsetof (test_cfg_t, max_frame), "16M", 1024, 1073741824.0,
      "largest frame accepted, bytes" },
    { "workers", CONFIG_INT, offsetof (test_cfg_t, workers), "4", 1, 64, "worker threads" },
    { "offset", CONFIG_INT, offsetof (test_cfg_t, offset), "-5", 1, 0, "signed, no range" },
    { "ratio", CONFIG_DOUBLE, offsetof (test_cfg_t, ratio), "0.5", 0, 1, "sampling ratio" },
    { "verbose", CONFIG_BOOL, offsetof (test_cfg_t, verbose), "false", 0, 0, "log more" },
    { "fsync", CONFIG_BOOL, offsetof (test_cfg_t, fsync), "true", 0, 0, "sync the journal" },
    { "name", CONFIG_STRING, offsetof (test_cfg_t, name), "strata", 0, 0, "instance name" },
    { "endpoint", CONFIG_STRING, offsetof (test_cfg_t, endpoint), NULL, 0, 0, "bind address" },
    CONFIG_END
};

static const char *s_env_names[] = {
    "STRATA_MAX_FRAME", "STRATA_WORKERS", "STRATA_OFFSET", "STRATA_RATIO",
    "STRATA_VERBOSE", "STRATA_FSYNC", "STRATA_NAME", "STRATA_ENDPOINT",
};

static void
s_clear_env (void)
{
    //  The test runner may export STRATA_* variables of its own; none of ours may leak in.
    for (size_t i = 0; i < sizeof s_env_names / sizeof s_env_names[0]; i++)
        unsetenv (s_env_names[i]);
}

TestSuite (config, .init = s_clear_env);

//  Writes text to a fresh temporary file; the caller unlinks path.
static void
s_write_file (char *path, const char *text)
{
    strcpy (path, "/tmp/strata-config-XXXXXX");
    int fd = mkstemp (path);
    cr_assert_geq (fd, 0, "mkstemp failed");
    size_t len = strlen (text);
    cr_assert_eq (write (fd, text, len), (ssize_t) len);
    close (fd);
}

#define ARGC(argv) ((int) (sizeof (argv) / sizeof (argv)[0]) - 1)

// ---------------------------------------------------------------- defaults

Test (config, defaults_applied)
{
    test_cfg_t cfg = { 0 };
    char err[256] = "";
    cr_assert_eq (config_defaults (s_keys, &cfg, err, sizeof err), 0, "%s", err);
    cr_assert_eq (cfg.max_frame, 16 * 1024 * 1024);
    cr_assert_eq (cfg.workers, 4);
    cr_assert_eq (cfg.offset, -5);
    cr_assert_float_eq (cfg.ratio, 0.5, 1e-12);
    cr_assert_eq (cfg.verbose, false);
    cr_assert_eq (cfg.fsync, true);
    cr_assert_str_eq (cfg.name, "strata");
    cr_assert_not_null (cfg.endpoint, "a NULL default is an empty string, not NULL");
    cr_assert_str_eq (cfg.endpoint, "");
    config_free (s_keys, &cfg);
}

Test (config, default_out_of_range_is_reported)
{
    static const config_key_t bad[] = {
        { "workers", CONFIG_INT, offsetof (test_cfg_t, workers), "100", 1, 64, "worker threads" },
        CONFIG_END
    };
    test_cfg_t cfg = { 0 };
    char err[256] = "";
    cr_assert_eq (config_defaults (bad, &cfg, err, sizeof err), STRATA_EINVAL);
    cr_assert (strstr (err, "workers"), "error names the key: %s", err);
}

// ---------------------------------------------------------------- config_set table

typedef struct {
    const char *key;
    const char *value;
    bool ok;
    int64_t i;            // expected INT value
    double d;             // expected DOUBLE value
    bool b;               // expected BOOL value
    const char *s;        // expected STRING value
    const char *err_has;  // on failure: text the message must contain
} set_case_t;

static const set_case_t s_set_cases[] = {
    //  Valid values of each type.
    { "workers", "8", true, .i = 8 },
    { "workers", "0x10", true, .i = 16 },
    { "workers", " 12", true, .i = 12 },
    { "offset", "-100", true, .i = -100 },
    { "offset", "9223372036854775807", true, .i = INT64_MAX },
    { "max-frame", "16M", true, .i = 16 * 1024 * 1024 },
    { "max-frame", "4K", true, .i = 4096 },
    { "max-frame", "4k", true, .i = 4096 },
    { "max-frame", "1G", true, .i = 1073741824 },
    { "max-frame", "2048", true, .i = 2048 },
    { "ratio", "0.25", true, .d = 0.25 },
    { "ratio", "1e-3", true, .d = 0.001 },
    { "verbose", "true", true, .b = true },
    { "verbose", "YES", true, .b = true },
    { "verbose", "on", true, .b = true },
    { "verbose", "1", true, .b = true },
    { "fsync", "false", true, .b = false },
    { "fsync", "No", true, .b = false },
    { "fsync", "off", true, .b = false },
    { "fsync", "0", true, .b = false },
    { "name", "hello world", true, .s = "hello world" },
    { "endpoint", "", true, .s = "" },
    { "endpoint", "tcp://127.0.0.1:5555", true, .s = "tcp://127.0.0.1:5555" },

    //  Edges: the range is inclusive at both ends.
    { "workers", "1", true, .i = 1 },
    { "workers", "64", true, .i = 64 },
    { "max-frame", "1K", true, .i = 1024 },
    { "ratio", "0", true, .d = 0 },
    { "ratio", "1", true, .d = 1 },

    //  Out of range: rejected, the message names the key.
    { "workers", "0", false, .err_has = "out of range" },
    { "workers", "65", false, .err_has = "out of range" },
    { "workers", "-1", false, .err_has = "out of range" },
    { "max-frame", "1023", false, .err_has = "out of range" },
    { "max-frame", "2G", false, .err_has = "out of range" },
    { "ratio", "1.0001", false, .err_has = "out of range" },
    { "ratio", "-0.5", false, .err_has = "out of range" },

    //  Junk.
    { "workers", "abc", false, .err_has = "not an integer" },
    { "workers", "", false, .err_has = "not an integer" },
    { "workers", "12abc", false, .err_has = "not an integer" },
    { "workers", "1.5", false, .err_has = "not an integer" },
    { "max-frame", "4KB", false, .err_has = "not an integer" },
    { "max-frame", "4X", false, .err_has = "not an integer" },
    { "max-frame", "M", false, .err_has = "not an integer" },
    { "offset", "99999999999999999999", false, .err_has = "not an integer" },
    { "ratio", "x", false, .err_has = "not a number" },
    { "ratio", "", false, .err_has = "not a number" },
    { "ratio", "0.5s", false, .err_has = "not a number" },
    { "ratio", "nan", false, .err_has = "not a number" },
    { "ratio", "inf", false, .err_has = "not a number" },
    { "verbose", "maybe", false, .err_has = "not a boolean" },
    { "verbose", "", false, .err_has = "not a boolean" },
    { "verbose", "2", false, .err_has = "not a boolean" },
};

Test (config, set_table)
{
    for (size_t c = 0; c < sizeof s_set_cases / sizeof s_set_cases[0]; c++) {
        const set_case_t *tc = &s_set_cases[c];
        test_cfg_t cfg = { 0 }, before;
        char err[256] = "";
        cr_assert_eq (config_defaults (s_keys, &cfg, err, sizeof err), 0);
        before = cfg;
        int rc = config_set (s_keys, &cfg, tc->key, tc->value, err, sizeof err);
        if (!tc->ok) {
            cr_assert_eq (rc, STRATA_EINVAL, "%s='%s' should be rejected as invalid", tc->key, tc->value);
            cr_assert (strstr (err, tc->key), "%s='%s': message names the key: %s", tc->key, tc->value, err);
            cr_assert (strstr (err, tc->err_has), "%s='%s': '%s' lacks '%s'", tc->key, tc->value, err,
                       tc->err_has);
            //  A rejected value leaves the previous one in place.
            cr_assert_eq (cfg.workers, before.workers);
            cr_assert_eq (cfg.max_frame, before.max_frame);
            cr_assert_eq (cfg.offset, before.offset);
            cr_assert_eq (cfg.verbose, before.verbose);
            cr_assert_float_eq (cfg.ratio, before.ratio, 1e-12);
            config_free (s_keys, &cfg);
            continue;
        }
        cr_assert_eq (rc, 0, "%s='%s': %s", tc->key, tc->value, err);
        if (!strcmp (tc->key, "workers"))
            cr_assert_eq (cfg.workers, tc->i, "%s='%s'", tc->key, tc->value);
        else if (!strcmp (tc->key, "max-frame"))
            cr_assert_eq (cfg.max_frame, tc->i, "%s='%s'", tc->key, tc->value);
        else if (!strcmp (tc->key, "offset"))
            cr_assert_eq (cfg.offset, tc->i, "%s='%s'", tc->key, tc->value);
        else if (!strcmp (tc->key, "ratio"))
            cr_assert_float_eq (cfg.ratio, tc->d, 1e-12, "%s='%s'", tc->key, tc->value);
        else if (!strcmp (tc->key, "verbose"))
            cr_assert_eq (cfg.verbose, tc->b, "%s='%s'", tc->key, tc->value);
        else if (!strcmp (tc->key, "fsync"))
            cr_assert_eq (cfg.fsync, tc->b, "%s='%s'", tc->key, tc->value);
        else if (!strcmp (tc->key, "name"))
            cr_assert_str_eq (cfg.name, tc->s);
        else if (!strcmp (tc->key, "endpoint"))
            cr_assert_str_eq (cfg.endpoint, tc->s);
        else
            cr_assert_fail ("no check for key %s", tc->key);
        config_free (s_keys, &cfg);
    }
}

Test (config, set_unknown_key_rejected)
{
    test_cfg_t cfg = { 0 };
    char err[256] = "";
    cr_assert_eq (config_defaults (s_keys, &cfg, err, sizeof err), 0);
    cr_assert_eq (config_set (s_keys, &cfg, "bogus", "1", err, sizeof err), STRATA_EINVAL);
    cr_assert (strstr (err, "unknown option 'bogus'"), "%s", err);
    //  A prefix of a real key is not that key.
    cr_assert_eq (config_set (s_keys, &cfg, "work", "1", err, sizeof err), STRATA_EINVAL);
    cr_assert_eq (cfg.workers, 4);
    config_free (s_keys, &cfg);
}

// ---------------------------------------------------------------- flags

Test (config, parse_flag_forms)
{
    char *argv[] = { "prog", "--workers", "8", "--ratio=0.75", "--verbose", "--no-fsync",
                     "--name=x y", "--max-frame", "4M", "--endpoint=", NULL };
    test_cfg_t cfg = { 0 };
    char err[256] = "";
    int argi = -1;
    cr_assert_eq (config_parse (s_keys, &cfg, ARGC (argv), argv, &argi, err, sizeof err), 0, "%s", err);
    cr_assert_eq (cfg.workers, 8);
    cr_assert_float_eq (cfg.ratio, 0.75, 1e-12);
    cr_assert_eq (cfg.verbose, true);
    cr_assert_eq (cfg.fsync, false);
    cr_assert_str_eq (cfg.name, "x y");
    cr_assert_eq (cfg.max_frame, 4 * 1024 * 1024);
    cr_assert_str_eq (cfg.endpoint, "");
    cr_assert_eq (argi, ARGC (argv), "no positional arguments");
    config_free (s_keys, &cfg);
}

Test (config, parse_bool_with_value)
{
    char *argv[] = { "prog", "--verbose=yes", "--fsync=off", NULL };
    test_cfg_t cfg = { 0 };
    char err[256] = "";
    cr_assert_eq (config_parse (s_keys, &cfg, ARGC (argv), argv, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq (cfg.verbose, true);
    cr_assert_eq (cfg.fsync, false);
    config_free (s_keys, &cfg);
}

Test (config, parse_later_flag_wins)
{
    char *argv[] = { "prog", "--workers=2", "--no-verbose", "--workers", "3", "--verbose", NULL };
    test_cfg_t cfg = { 0 };
    char err[256] = "";
    cr_assert_eq (config_parse (s_keys, &cfg, ARGC (argv), argv, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq (cfg.workers, 3);
    cr_assert_eq (cfg.verbose, true);
    config_free (s_keys, &cfg);
}

Test (config, parse_positional_mixed)
{
    char *argv[] = { "prog", "in.jsonl", "--workers", "8", "-", "out.jsonl", "--verbose", NULL };
    test_cfg_t cfg = { 0 };
    char err[256] = "";
    int argi = -1;
    cr_assert_eq (config_parse (s_keys, &cfg, ARGC (argv), argv, &argi, err, sizeof err), 0, "%s", err);
    cr_assert_eq (cfg.workers, 8);
    cr_assert_eq (cfg.verbose, true);
    //  Options first, then the positional arguments in their original order.
    cr_assert_eq (argi, 4);
    cr_assert_str_eq (argv[0], "prog");
    cr_assert_str_eq (argv[argi], "in.jsonl");
    cr_assert_str_eq (argv[argi + 1], "-");
    cr_assert_str_eq (argv[argi + 2], "out.jsonl");
    cr_assert_null (argv[ARGC (argv)], "argv stays NULL-terminated");
    config_free (s_keys, &cfg);
}

Test (config, parse_double_dash_ends_options)
{
    char *argv[] = { "prog", "--workers", "2", "--", "--verbose", "--bogus", "x", NULL };
    test_cfg_t cfg = { 0 };
    char err[256] = "";
    int argi = -1;
    cr_assert_eq (config_parse (s_keys, &cfg, ARGC (argv), argv, &argi, err, sizeof err), 0, "%s", err);
    cr_assert_eq (cfg.workers, 2);
    cr_assert_eq (cfg.verbose, false, "--verbose after -- is an argument");
    cr_assert_eq (argi, 4, "as with getopt, \"--\" stays before the first positional");
    cr_assert_str_eq (argv[3], "--");
    cr_assert_str_eq (argv[argi], "--verbose");
    cr_assert_str_eq (argv[argi + 1], "--bogus");
    cr_assert_str_eq (argv[argi + 2], "x");
    config_free (s_keys, &cfg);
}

Test (config, parse_help)
{
    const char *forms[] = { "-h", "--help" };
    for (size_t f = 0; f < 2; f++) {
        char *argv[] = { "prog", "--workers", "2", (char *) forms[f], "--bogus", NULL };
        test_cfg_t cfg = { 0 };
        char err[256] = "";
        cr_assert_eq (config_parse (s_keys, &cfg, ARGC (argv), argv, NULL, err, sizeof err), CONFIG_HELP,
                      "%s", forms[f]);
        config_free (s_keys, &cfg);
    }
}

typedef struct {
    const char *label;
    char *args[4];
    const char *err_has;
} parse_error_case_t;

static const parse_error_case_t s_parse_errors[] = {
    { "unknown option", { "--bogus", NULL }, "--bogus" },
    { "unknown option with value", { "--bogus=1", NULL }, "--bogus" },
    { "negated non-boolean", { "--no-workers", NULL }, "--no-workers" },
    { "negated unknown", { "--no-such", NULL }, "--no-such" },
    { "missing value", { "--workers", NULL }, "needs a value" },
    { "junk integer", { "--workers", "abc", NULL }, "workers" },
    { "junk boolean", { "--verbose=maybe", NULL }, "verbose" },
    { "out of range", { "--ratio=2", NULL }, "ratio" },
    { "size out of range", { "--max-frame", "4G", NULL }, "max-frame" },
};

Test (config, parse_errors_table)
{
    for (size_t c = 0; c < sizeof s_parse_errors / sizeof s_parse_errors[0]; c++) {
        const parse_error_case_t *tc = &s_parse_errors[c];
        char *argv[6] = { "prog" };
        int argc = 1;
        for (int a = 0; tc->args[a]; a++)
            argv[argc++] = tc->args[a];
        test_cfg_t cfg = { 0 };
        char err[256] = "";
        cr_assert_eq (config_parse (s_keys, &cfg, argc, argv, NULL, err, sizeof err), STRATA_EINVAL, "%s", tc->label);
        cr_assert (strstr (err, tc->err_has), "%s: '%s' lacks '%s'", tc->label, err, tc->err_has);
        config_free (s_keys, &cfg);
    }
}

// ---------------------------------------------------------------- environment

Test (config, env_override)
{
    setenv ("STRATA_WORKERS", "12", 1);
    setenv ("STRATA_MAX_FRAME", "4M", 1);
    setenv ("STRATA_VERBOSE", "yes", 1);
    setenv ("STRATA_NAME", "from-env", 1);
    char *argv[] = { "prog", NULL };
    test_cfg_t cfg = { 0 };
    char err[256] = "";
    cr_assert_eq (config_parse (s_keys, &cfg, ARGC (argv), argv, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq (cfg.workers, 12);
    cr_assert_eq (cfg.max_frame, 4 * 1024 * 1024, "'-' in the name maps to '_'");
    cr_assert_eq (cfg.verbose, true);
    cr_assert_str_eq (cfg.name, "from-env");
    cr_assert_float_eq (cfg.ratio, 0.5, 1e-12, "unset variables keep the default");
    config_free (s_keys, &cfg);
}

Test (config, env_invalid_rejected)
{
    setenv ("STRATA_WORKERS", "lots", 1);
    char *argv[] = { "prog", NULL };
    test_cfg_t cfg = { 0 };
    char err[256] = "";
    cr_assert_eq (config_parse (s_keys, &cfg, ARGC (argv), argv, NULL, err, sizeof err), STRATA_EINVAL);
    cr_assert (strstr (err, "workers"), "%s", err);
    config_free (s_keys, &cfg);
}

// ---------------------------------------------------------------- config file

Test (config, load_file)
{
    char path[64];
    s_write_file (path, "# comment line\n"
                        "max-frame = 4M\n"
                        "workers = 3\n"
                        "verbose = true\n"
                        "name = \"from file\"\n");
    test_cfg_t cfg = { 0 };
    char err[256] = "";
    cr_assert_eq (config_defaults (s_keys, &cfg, err, sizeof err), 0);
    int rc = config_load_file (s_keys, &cfg, path, err, sizeof err);
    unlink (path);
    cr_assert_eq (rc, 0, "%s", err);
    cr_assert_eq (cfg.max_frame, 4 * 1024 * 1024);
    cr_assert_eq (cfg.workers, 3);
    cr_assert_eq (cfg.verbose, true);
    cr_assert_str_eq (cfg.name, "from file");
    cr_assert_eq (cfg.fsync, true, "keys absent from the file keep their value");
    config_free (s_keys, &cfg);
}

typedef struct {
    const char *label;
    const char *text;
    const char *err_has;
} file_error_case_t;

static const file_error_case_t s_file_errors[] = {
    { "unknown key", "workers = 3\nshoe-size = 44\n", "shoe-size" },
    { "out of range", "workers = 100\n", "workers" },
    { "junk boolean", "verbose = maybe\n", "verbose" },
    { "nested section", "workers\n    inner = 1\n", "flat" },
};

Test (config, load_file_errors_table)
{
    for (size_t c = 0; c < sizeof s_file_errors / sizeof s_file_errors[0]; c++) {
        const file_error_case_t *tc = &s_file_errors[c];
        char path[64];
        s_write_file (path, tc->text);
        test_cfg_t cfg = { 0 };
        char err[256] = "";
        cr_assert_eq (config_defaults (s_keys, &cfg, err, sizeof err), 0);
        int rc = config_load_file (s_keys, &cfg, path, err, sizeof err);
        unlink (path);
        cr_assert_eq (rc, STRATA_EINVAL, "%s", tc->label);
        cr_assert (strstr (err, tc->err_has), "%s: '%s' lacks '%s'", tc->label, err, tc->err_has);
        config_free (s_keys, &cfg);
    }
}

Test (config, load_missing_file)
{
    test_cfg_t cfg = { 0 };
    char err[256] = "";
    cr_assert_eq (config_defaults (s_keys, &cfg, err, sizeof err), 0);
    cr_assert_eq (config_load_file (s_keys, &cfg, "/nonexistent/strata.cfg", err, sizeof err), STRATA_ENOTFOUND);
    cr_assert (strstr (err, "/nonexistent/strata.cfg"), "%s", err);
    config_free (s_keys, &cfg);
}

Test (config, precedence_file_env_flags)
{
    char path[64];
    s_write_file (path, "workers = 3\nratio = 0.1\nname = file\nmax-frame = 2K\n");
    setenv ("STRATA_WORKERS", "5", 1);
    setenv ("STRATA_RATIO", "0.2", 1);
    char config_arg[80];
    snprintf (config_arg, sizeof config_arg, "--config=%s", path);
    //  --config stands after the flag: the file is still applied first.
    char *argv[] = { "prog", "--workers", "7", config_arg, "input", NULL };
    test_cfg_t cfg = { 0 };
    char err[256] = "";
    int argi = -1;
    int rc = config_parse (s_keys, &cfg, ARGC (argv), argv, &argi, err, sizeof err);
    unlink (path);
    cr_assert_eq (rc, 0, "%s", err);
    cr_assert_eq (cfg.workers, 7, "flag beats environment and file");
    cr_assert_float_eq (cfg.ratio, 0.2, 1e-12, "environment beats file");
    cr_assert_str_eq (cfg.name, "file", "file beats default");
    cr_assert_eq (cfg.max_frame, 2048);
    cr_assert_eq (cfg.offset, -5, "default when no source sets it");
    cr_assert_str_eq (argv[argi], "input", "--config is not a positional argument");
    config_free (s_keys, &cfg);
}

Test (config, parse_config_flag_with_space)
{
    char path[64];
    s_write_file (path, "workers = 9\n");
    char *argv[] = { "prog", "--config", path, "--verbose", NULL };
    test_cfg_t cfg = { 0 };
    char err[256] = "";
    int argi = -1;
    int rc = config_parse (s_keys, &cfg, ARGC (argv), argv, &argi, err, sizeof err);
    unlink (path);
    cr_assert_eq (rc, 0, "%s", err);
    cr_assert_eq (cfg.workers, 9);
    cr_assert_eq (cfg.verbose, true);
    cr_assert_eq (argi, ARGC (argv), "the file name is the option's value, not an argument");
    config_free (s_keys, &cfg);
}

Test (config, parse_config_file_error)
{
    char path[64];
    s_write_file (path, "unknown-key = 1\n");
    char *argv[] = { "prog", "--config", path, NULL };
    test_cfg_t cfg = { 0 };
    char err[256] = "";
    int rc = config_parse (s_keys, &cfg, ARGC (argv), argv, NULL, err, sizeof err);
    unlink (path);
    cr_assert_eq (rc, STRATA_EINVAL);
    cr_assert (strstr (err, "unknown-key"), "%s", err);
    config_free (s_keys, &cfg);
}

// ---------------------------------------------------------------- error codes

//  Each failure says what went wrong, so a program can tell a mistyped --config path
//  (STRATA_ENOTFOUND) from a file it found and could not use (STRATA_EINVAL) and from
//  a bad flag. The path marker "@" stands for by a written file of `text`.
typedef struct {
    const char *label;
    const char *text;    // contents of the file "@" stands for (NULL: no file)
    char *args[4];
    int code;
} code_case_t;

static const code_case_t s_code_cases[] = {
    { "valid", NULL, { "--workers=3", NULL }, 0 },
    { "help", NULL, { "--help", NULL }, CONFIG_HELP },
    { "junk value", NULL, { "--workers", "lots", NULL }, STRATA_EINVAL },
    { "out of range", NULL, { "--ratio=7", NULL }, STRATA_EINVAL },
    { "unknown option", NULL, { "--shoe-size=44", NULL }, STRATA_EINVAL },
    { "missing value", NULL, { "--name", NULL }, STRATA_EINVAL },
    { "missing config file", NULL, { "--config", "/nonexistent/strata.cfg", NULL }, STRATA_ENOTFOUND },
    { "config file in a missing dir", NULL, { "--config=/nonexistent/dir/x.cfg", NULL }, STRATA_ENOTFOUND },
    { "config file, unknown key", "shoe-size = 44\n", { "--config", "@", NULL }, STRATA_EINVAL },
    { "config file, bad value", "workers = many\n", { "--config", "@", NULL }, STRATA_EINVAL },
    { "config file, fine", "workers = 5\n", { "--config", "@", NULL }, 0 },
};

Test (config, parse_codes_table)
{
    for (size_t c = 0; c < sizeof s_code_cases / sizeof s_code_cases[0]; c++) {
        const code_case_t *tc = &s_code_cases[c];
        char path[64] = "";
        if (tc->text)
            s_write_file (path, tc->text);
        char *argv[6] = { "prog" };
        int argc = 1;
        for (int a = 0; tc->args[a]; a++)
            argv[argc++] = strcmp (tc->args[a], "@") ? tc->args[a] : path;
        test_cfg_t cfg = { 0 };
        char err[256] = "";
        int rc = config_parse (s_keys, &cfg, argc, argv, NULL, err, sizeof err);
        if (*path)
            unlink (path);
        cr_assert_eq (rc, tc->code, "%s: %d (%s), expected %d (%s); %s", tc->label, rc, strata_strerror (rc),
                      tc->code, strata_strerror (tc->code), err);
        if (rc < 0)
            cr_assert (*err, "%s: a failure says why", tc->label);
        config_free (s_keys, &cfg);
    }
}

Test (config, load_file_codes)
{
    static const struct {
        const char *label;
        const char *text;   // NULL: the path names no file
        int code;
    } cases[] = {
        { "no such file", NULL, STRATA_ENOTFOUND },
        { "nested", "workers\n    inner = 1\n", STRATA_EINVAL },
        { "unknown key", "shoe-size = 44\n", STRATA_EINVAL },
        { "fine", "workers = 2\n", 0 },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char path[64] = "/nonexistent/strata.cfg";
        if (cases[c].text)
            s_write_file (path, cases[c].text);
        test_cfg_t cfg = { 0 };
        char err[256] = "";
        cr_assert_eq (config_defaults (s_keys, &cfg, err, sizeof err), 0);
        int rc = config_load_file (s_keys, &cfg, path, err, sizeof err);
        if (cases[c].text)
            unlink (path);
        cr_assert_eq (rc, cases[c].code, "%s: %s (%s)", cases[c].label, strata_strerror (rc), err);
        config_free (s_keys, &cfg);
    }
}

Test (config, log_level_names)
{
    static const struct {
        const char *name;
        int code;
    } cases[] = { { "debug", 0 }, { "INFO", 0 }, { "warn", 0 }, { "error", 0 },
                  { "verbose", STRATA_EINVAL }, { "", STRATA_EINVAL } };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        cr_assert_eq (log_set_level_name (cases[c].name), cases[c].code, "'%s'", cases[c].name);
}

// ---------------------------------------------------------------- help and free

Test (config, help_lists_every_key)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&text, &size);
    cr_assert_not_null (out);
    config_help (s_keys, out, "usage: prog [options] FILE");
    fclose (out);
    cr_assert (strncmp (text, "usage: prog [options] FILE", 26) == 0, "%s", text);
    for (const config_key_t *k = s_keys; k->name; k++) {
        char flag[64];
        snprintf (flag, sizeof flag, "--%s", k->name);
        cr_assert (strstr (text, flag), "help lacks %s:\n%s", flag, text);
        cr_assert (strstr (text, k->help), "help lacks the help of %s", k->name);
        if (k->def && *k->def) {
            char def[64];
            snprintf (def, sizeof def, "[default: %s]", k->def);
            cr_assert (strstr (text, def), "help lacks %s for %s:\n%s", def, k->name, text);
        }
    }
    cr_assert (strstr (text, "--workers N"), "INT keys show N:\n%s", text);
    cr_assert (strstr (text, "--ratio X"), "DOUBLE keys show X:\n%s", text);
    cr_assert (strstr (text, "--name TEXT"), "STRING keys show TEXT:\n%s", text);
    cr_assert (strstr (text, "--config FILE"), "help lists --config:\n%s", text);
    free (text);
}

Test (config, free_releases_strings)
{
    char *argv[] = { "prog", "--name", "first", "--name", "second", "--endpoint=tcp://*:1", NULL };
    test_cfg_t cfg = { 0 };
    char err[256] = "";
    cr_assert_eq (config_parse (s_keys, &cfg, ARGC (argv), argv, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq (cfg.name, "second");
    cr_assert_str_eq (cfg.endpoint, "tcp://*:1");
    config_free (s_keys, &cfg);
    cr_assert_null (cfg.name);
    cr_assert_null (cfg.endpoint);
    //  A second free finds NULL pointers and is harmless.
    config_free (s_keys, &cfg);
    cr_assert_null (cfg.name);
}
