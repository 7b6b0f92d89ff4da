/*  Unit: what the client commands are told when they cannot find or stop a cluster,
    and when gen cannot write its files. The CLI words its messages itself, but scripts
    and the demo decide on the code: "no cluster here" (start one) is not "a cluster.json
    that does not parse" (a supervisor died writing it) nor "it is not running".
*/
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster.h"
#include "endpoints.h"
#include "gen.h"
#include "harness.h"

TestSuite (cluster, .init = harness_dir_setup, .fini = harness_dir_teardown);

//  Writes DIR/NAME/cluster.json with text (NULL: the directory only); path gets DIR/NAME.
static void
s_cluster_dir (char *path, size_t size, const char *name, const char *text)
{
    snprintf (path, size, "%s/%s", harness_dir, name);
    cr_assert_eq (mkdir (path, 0755), 0, "%s", path);
    if (!text)
        return;
    char file[700];
    snprintf (file, sizeof file, "%s/cluster.json", path);
    FILE *f = fopen (file, "w");
    cr_assert_not_null (f);
    fputs (text, f);
    fclose (f);
}

Test (cluster, resolve_codes_table)
{
    static const struct {
        const char *label;
        const char *broker;
        const char *name;   // a directory made for the case (NULL: no --dir)
        const char *text;   // its cluster.json (NULL: none)
        int code;
        const char *api;    // the api endpoint resolved, when code is 0
    } cases[] = {
        { "defaults", NULL, NULL, NULL, 0, STRATA_DEFAULT_API },
        { "--broker wins", "tcp://10.0.0.1:7701", "ignored", NULL, 0, "tcp://10.0.0.1:7701" },
        { "a dir without cluster.json", NULL, "empty", NULL, STRATA_ENOTFOUND, NULL },
        { "a cluster.json cut short", NULL, "cut", "{\"ingest\": \"tcp://", STRATA_ECORRUPT, NULL },
        { "a cluster.json", NULL, "up", "{\"api\": \"tcp://127.0.0.1:9\", \"supervisor_pid\": 1}", 0,
          "tcp://127.0.0.1:9" },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char dir[600] = "";
        if (cases[c].name)
            s_cluster_dir (dir, sizeof dir, cases[c].name, cases[c].text);
        cluster_endpoints_t eps;
        char err[512] = "";
        int rc = cluster_resolve (cases[c].broker, cases[c].name ? dir : NULL, &eps, err, sizeof err);
        cr_expect_eq (rc, cases[c].code, "%s: %s (%s)", cases[c].label, strata_strerror (rc), err);
        if (rc == 0)
            cr_expect_str_eq (eps.api, cases[c].api, "%s", cases[c].label);
        else
            cr_expect (strstr (err, dir), "%s: the message names the directory: %s", cases[c].label, err);
    }
    //  Not even the directory.
    cluster_endpoints_t eps;
    char err[512] = "";
    cr_expect_eq (cluster_resolve (NULL, "/nonexistent/strata", &eps, err, sizeof err), STRATA_ENOTFOUND);
}

Test (cluster, down_codes)
{
    char dir[600], err[512] = "";
    s_cluster_dir (dir, sizeof dir, "none", NULL);
    cr_expect_eq (cluster_down (dir, 100, err, sizeof err), STRATA_ENOTFOUND, "%s", err);
    //  A cluster.json whose supervisor is gone: stale, removed, and the cluster is not running.
    s_cluster_dir (dir, sizeof dir, "stale", "{\"api\": \"tcp://127.0.0.1:9\"}");
    cr_expect_eq (cluster_down (dir, 100, err, sizeof err), STRATA_ESTATE, "%s", err);
    char file[700];
    snprintf (file, sizeof file, "%s/cluster.json", dir);
    cr_expect_neq (access (file, F_OK), 0, "the stale cluster.json is removed");
}

Test (cluster, gen_codes_table)
{
    char blocker[600], under[700], ok[600];
    snprintf (blocker, sizeof blocker, "%s/a-file", harness_dir);
    FILE *f = fopen (blocker, "w");
    cr_assert_not_null (f);
    fclose (f);
    snprintf (under, sizeof under, "%s/sub", blocker);
    snprintf (ok, sizeof ok, "%s/gen", harness_dir);
    const struct {
        const char *label;
        gen_opts_t opts;
        int code;
    } cases[] = {
        { "no output directory", { .out_dir = "", .items = 5, .users = 2, .events = 10 }, STRATA_EINVAL },
        { "unknown format", { .out_dir = ok, .format = "xml", .items = 5, .users = 2, .events = 10 }, STRATA_EINVAL },
        { "negative count", { .out_dir = ok, .items = -1, .users = 2, .events = 10 }, STRATA_EINVAL },
        { "a file in the way", { .out_dir = under, .items = 5, .users = 2, .events = 10 }, STRATA_EINVAL },
        { "jsonl", { .out_dir = ok, .items = 5, .users = 2, .events = 10 }, 0 },
        { "csv", { .out_dir = ok, .format = "csv", .items = 5, .users = 2, .events = 10, .malformed = 2 }, 0 },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char err[512] = "";
        int rc = gen_run (&cases[c].opts, NULL, err, sizeof err);
        cr_expect_eq (rc, cases[c].code, "%s: %s (%s)", cases[c].label, strata_strerror (rc), err);
        if (rc < 0)
            cr_expect (*err, "%s: a failure says why", cases[c].label);
    }
}
