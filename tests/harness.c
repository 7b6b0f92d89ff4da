/*  harness: see harness.h. */
#include "harness.h"

#include <criterion/criterion.h>
#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "strata.h"

const char *
harness_data (const char *relative)
{
    static char path[4096];
    const char *dir = getenv ("STRATA_TEST_DATA");
    if (!dir)
        dir = "../shared/data";
    snprintf (path, sizeof path, "%s/%s", dir, relative);
    return access (path, R_OK) == 0 ? path : NULL;
}

char *
harness_tmpdir (void)
{
    char tmpl[] = "/tmp/strata-test-XXXXXX";
    char *d = mkdtemp (tmpl);
    return d ? strdup (d) : NULL;
}

char *harness_dir;

void
harness_dir_setup (void)
{
    harness_dir = harness_tmpdir ();
    cr_assert_not_null (harness_dir);
}

void
harness_dir_teardown (void)
{
    harness_rmtree (harness_dir);
    free (harness_dir);
    harness_dir = NULL;
}

void
harness_rmtree (const char *path)
{
    if (!path || strncmp (path, "/tmp/strata-test-", 17) != 0)
        return;   // never remove anything we did not make
    pid_t pid = fork ();
    if (pid == 0) {
        execlp ("rm", "rm", "-rf", path, (char *) NULL);
        _exit (127);
    }
    if (pid > 0)
        waitpid (pid, NULL, 0);
}

static pid_t
s_spawn (const char *log, const char *const *argv)
{
    pid_t pid = fork ();
    if (pid == 0) {
        int fd = open (log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2 (fd, STDERR_FILENO);
            close (fd);
        }
        int null = open ("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2 (null, STDIN_FILENO);
        execv (argv[0], (char *const *) argv);
        fprintf (stderr, "cannot exec %s: %s\n", argv[0], strerror (errno));
        _exit (127);
    }
    return pid;
}

static const char *
s_env (const char *name, const char *fallback)
{
    const char *v = getenv (name);
    return v ? v : fallback;
}

static int
s_start_broker (hcluster_t *c)
{
    char eps[700], dir[700], log[700], ingest[200], workers[200], api[200];
    snprintf (eps, sizeof eps, "--endpoints-file=%s/broker.json", c->dir);
    snprintf (dir, sizeof dir, "--dir=%s/broker", c->dir);
    snprintf (log, sizeof log, "%s/broker.log", c->dir);
    snprintf (ingest, sizeof ingest, "--ingest=%s", *c->ingest ? c->ingest : "tcp://127.0.0.1:!");
    snprintf (workers, sizeof workers, "--workers=%s", *c->workers_ep ? c->workers_ep : "tcp://127.0.0.1:!");
    snprintf (api, sizeof api, "--api=%s", *c->api ? c->api : "tcp://127.0.0.1:!");
    char path[700];
    snprintf (path, sizeof path, "%s/broker.json", c->dir);
    unlink (path);
    const char *argv[32] = { s_env ("STRATA_TEST_BROKER", "build/broker/strata-broker"), dir, eps, ingest, workers, api,
                             "--heartbeat-ms=250" };
    int n = 7;
    for (int i = 0; i < c->nbroker_args && n < 30; i++)
        argv[n++] = c->broker_args[i];
    argv[n] = NULL;
    c->broker = s_spawn (log, argv);
    for (int i = 0; i < 500; i++) {
        json_t *j = json_load_file (path, 0, NULL);
        if (j) {
            snprintf (c->ingest, sizeof c->ingest, "%s", json_string_value (json_object_get (j, "ingest")));
            snprintf (c->workers_ep, sizeof c->workers_ep, "%s", json_string_value (json_object_get (j, "workers")));
            snprintf (c->api, sizeof c->api, "%s", json_string_value (json_object_get (j, "api")));
            json_decref (j);
            return 0;
        }
        if (waitpid (c->broker, NULL, WNOHANG) == c->broker)
            return -1;
        zclock_sleep (20);
    }
    return -1;
}

int
hcluster_start (hcluster_t *c, const char *const *extra)
{
    memset (c, 0, sizeof *c);
    char *d = harness_tmpdir ();
    if (!d)
        return -1;
    snprintf (c->dir, sizeof c->dir, "%s", d);
    free (d);
    for (int i = 0; extra && extra[i] && i < 8; i++)
        snprintf (c->broker_args[c->nbroker_args++], sizeof c->broker_args[0], "%s", extra[i]);
    return s_start_broker (c);
}

int
hcluster_restart_broker (hcluster_t *c)
{
    return s_start_broker (c);
}

static int
s_start_trainer (hcluster_t *c)
{
    char dir[700], eps[700], log[700], broker[200], workers[200], api[200], path[700];
    snprintf (dir, sizeof dir, "--dir=%s", c->dir);
    snprintf (eps, sizeof eps, "--endpoints-file=%s/trainer.json", c->dir);
    snprintf (log, sizeof log, "%s/trainer.log", c->dir);
    snprintf (broker, sizeof broker, "--broker=%s", c->api);
    snprintf (workers, sizeof workers, "--workers=%s", *c->trainer_workers ? c->trainer_workers : "tcp://127.0.0.1:!");
    snprintf (api, sizeof api, "--api=%s", *c->trainer_api ? c->trainer_api : "tcp://127.0.0.1:!");
    snprintf (path, sizeof path, "%s/trainer.json", c->dir);
    unlink (path);
    const char *argv[40] = { s_env ("STRATA_TEST_TRAINER", "build/trainer/strata-trainer"), dir, eps, broker, workers,
                             api, "--heartbeat-ms=250", "--poll-ms=200" };
    int n = 8;
    for (int i = 0; i < c->ntrainer_args && n < 38; i++)
        argv[n++] = c->trainer_args[i];
    argv[n] = NULL;
    c->trainer = s_spawn (log, argv);
    for (int i = 0; i < 1500; i++) {
        json_t *j = json_load_file (path, 0, NULL);
        if (j) {
            snprintf (c->trainer_api, sizeof c->trainer_api, "%s", json_string_value (json_object_get (j, "api")));
            snprintf (c->trainer_workers, sizeof c->trainer_workers, "%s",
                      json_string_value (json_object_get (j, "workers")));
            json_decref (j);
            return 0;
        }
        if (waitpid (c->trainer, NULL, WNOHANG) == c->trainer)
            return -1;
        zclock_sleep (20);
    }
    return -1;
}

int
hcluster_start_trainer (hcluster_t *c, const char *const *extra)
{
    c->ntrainer_args = 0;
    for (int i = 0; extra && extra[i] && i < 16; i++)
        snprintf (c->trainer_args[c->ntrainer_args++], sizeof c->trainer_args[0], "%s", extra[i]);
    return s_start_trainer (c);
}

int
hcluster_restart_trainer (hcluster_t *c)
{
    return s_start_trainer (c);
}

pid_t
hcluster_add_train_worker (hcluster_t *c)
{
    char trainer[200], log[700];
    snprintf (trainer, sizeof trainer, "--trainer=%s", c->trainer_workers);
    snprintf (log, sizeof log, "%s/worker-%d.log", c->dir, c->nworkers + 1);
    const char *argv[] = { s_env ("STRATA_TEST_WORKER", "build/worker/strata-worker"), "--role=train", trainer,
                           "--heartbeat-ms=250", "--threads=1", NULL };
    pid_t pid = s_spawn (log, argv);
    if (c->nworkers < 16)
        c->workers[c->nworkers++] = pid;
    return pid;
}

pid_t
hcluster_add_rank_worker (hcluster_t *c, int k)
{
    return hcluster_add_rank_worker_with (c, k, NULL);
}

pid_t
hcluster_add_rank_worker_with (hcluster_t *c, int k, const char *const *flags)
{
    char broker[200], api[200], trainer[200], dir[700], id[32], log[700];
    snprintf (broker, sizeof broker, "--broker=%s", c->workers_ep);
    snprintf (api, sizeof api, "--api=%s", c->api);
    snprintf (trainer, sizeof trainer, "--trainer-api=%s", c->trainer_api);
    snprintf (dir, sizeof dir, "--dir=%s/rank-%d", c->dir, k);
    snprintf (id, sizeof id, "--id=rank-%d", k);
    snprintf (log, sizeof log, "%s/worker-%d.log", c->dir, c->nworkers + 1);
    const char *argv[32] = { s_env ("STRATA_TEST_WORKER", "build/worker/strata-worker"), "--role=rank", broker, api,
                             trainer, dir, id, "--heartbeat-ms=250", "--poll-ms=200", "--catalogue-ms=500", NULL };
    for (int i = 10, j = 0; flags && flags[j] && i < 31; i++, j++)
        argv[i] = flags[j];
    pid_t pid = s_spawn (log, argv);
    if (c->nworkers < 16)
        c->workers[c->nworkers++] = pid;
    return pid;
}

json_t *
hcluster_train_status (hcluster_t *c)
{
    const char *args[] = { "train", "--status", "--trainer", c->trainer_api, "--timeout-ms", "5000", NULL };
    return harness_cli_json (args, NULL);
}

pid_t
hcluster_add_worker (hcluster_t *c)
{
    char broker[200], log[700];
    snprintf (broker, sizeof broker, "--broker=%s", c->workers_ep);
    snprintf (log, sizeof log, "%s/worker-%d.log", c->dir, c->nworkers + 1);
    const char *argv[] = { s_env ("STRATA_TEST_WORKER", "build/worker/strata-worker"), "--role=preprocess", broker,
                           "--heartbeat-ms=250", NULL };
    pid_t pid = s_spawn (log, argv);
    if (c->nworkers < 16)
        c->workers[c->nworkers++] = pid;
    return pid;
}

static void
s_kill (pid_t pid)
{
    if (pid <= 0)
        return;
    kill (pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (waitpid (pid, NULL, WNOHANG) != 0)
            return;
        zclock_sleep (20);
    }
    kill (pid, SIGKILL);
    waitpid (pid, NULL, 0);
}

static int
s_sanitizer_reports (const char *log)
{
    FILE *f = fopen (log, "r");
    if (!f)
        return 0;
    int n = 0;
    char line[1024];
    while (fgets (line, sizeof line, f))
        if (strstr (line, "ERROR: AddressSanitizer") || strstr (line, "ERROR: LeakSanitizer")
            || strstr (line, "runtime error:")) {
            fprintf (stderr, "%s: %s", log, line);
            n++;
        }
    fclose (f);
    return n;
}

int
hcluster_stop (hcluster_t *c)
{
    if (!*c->dir)
        return 0;   // never started
    for (int i = 0; i < c->nworkers; i++)
        s_kill (c->workers[i]);
    s_kill (c->trainer);
    s_kill (c->broker);
    int reports = 0;
    char log[700];
    snprintf (log, sizeof log, "%s/broker.log", c->dir);
    reports += s_sanitizer_reports (log);
    snprintf (log, sizeof log, "%s/trainer.log", c->dir);
    reports += s_sanitizer_reports (log);
    for (int i = 0; i < c->nworkers; i++) {
        snprintf (log, sizeof log, "%s/worker-%d.log", c->dir, i + 1);
        reports += s_sanitizer_reports (log);
    }
    if (getenv ("STRATA_KEEP_TEST_DIRS"))
        fprintf (stderr, "kept %s\n", c->dir);
    else
        harness_rmtree (c->dir);
    c->dir[0] = 0;
    return reports;
}

json_t *
hcluster_stats (hcluster_t *c)
{
    char err[256];
    char *text = strata_stats_json (c->api, 2000, err, sizeof err);
    if (!text)
        return NULL;
    json_t *j = json_loads (text, 0, NULL);
    free (text);
    return j;
}

uint64_t
hcluster_stat (hcluster_t *c, const char *key)
{
    json_t *j = hcluster_stats (c);
    uint64_t v = j ? (uint64_t) json_integer_value (json_object_get (j, key)) : 0;
    json_decref (j);
    return v;
}

bool
hcluster_wait_stat (hcluster_t *c, const char *key, uint64_t value, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (zclock_mono () < deadline) {
        if (hcluster_stat (c, key) >= value)
            return true;
        zclock_sleep (20);
    }
    return false;
}

int
hcluster_workers (hcluster_t *c, const char *role)
{
    json_t *j = hcluster_stats (c);
    int n = j ? (int) json_integer_value (json_object_get (json_object_get (j, "workers"), role)) : -1;
    json_decref (j);
    return n;
}

pid_t
harness_cli_start (const char *out_path, const char *const *args)
{
    const char *argv[64] = { s_env ("STRATA_TEST_CLI", "build/tools/strata") };
    int n = 1;
    for (int i = 0; args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork ();
    if (pid == 0) {
        int fd = open (out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2 (fd, STDOUT_FILENO);
            close (fd);
        }
        char err_path[4200];
        snprintf (err_path, sizeof err_path, "%s.err", out_path);
        fd = open (err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2 (fd, STDERR_FILENO);
            close (fd);
        }
        execv (argv[0], (char *const *) argv);
        _exit (127);
    }
    return pid;
}

pid_t
harness_exec_start (const char *out_path, const char *const *argv)
{
    pid_t pid = fork ();
    if (pid == 0) {
        int out = open (out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        char err_path[4200];
        snprintf (err_path, sizeof err_path, "%s.err", out_path);
        int err = open (err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (out < 0 || err < 0 || dup2 (out, STDOUT_FILENO) < 0 || dup2 (err, STDERR_FILENO) < 0)
            _exit (126);
        close (out);
        close (err);
        execv (argv[0], (char *const *) argv);
        fprintf (stderr, "cannot exec %s: %s\n", argv[0], strerror (errno));
        _exit (127);
    }
    return pid;
}

int
harness_wait (pid_t pid, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    int status;
    while (zclock_mono () < deadline) {
        pid_t r = waitpid (pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED (status) ? WEXITSTATUS (status) : 128 + WTERMSIG (status);
        zclock_sleep (20);
    }
    kill (pid, SIGKILL);
    waitpid (pid, NULL, 0);
    return -1;
}

json_t *
harness_json_file (const char *path)
{
    FILE *f = fopen (path, "r");
    if (!f)
        return NULL;
    char *line = NULL;   // whole lines, however long (a summary is one line)
    size_t cap = 0;
    json_t *last = NULL;
    while (getline (&line, &cap, f) >= 0) {
        json_t *j = json_loads (line, 0, NULL);
        if (j && json_is_object (j)) {
            json_decref (last);
            last = j;
        }
        else
            json_decref (j);
    }
    free (line);
    fclose (f);
    return last;
}

json_t *
harness_cli_json (const char *const *args, int *status)
{
    return harness_cli_json_within (args, status, 300000);
}

bool
harness_cli_until_served (const char *const *args, int timeout_ms)
{
    int64_t end = zclock_mono () + timeout_ms;
    while (zclock_mono () < end) {
        json_t *j = harness_cli_json (args, NULL);
        bool served = j && json_integer_value (json_object_get (j, "model_version")) > 0;
        json_decref (j);
        if (served)
            return true;
        zclock_sleep (200);
    }
    return false;
}

json_t *
harness_cli_json_within (const char *const *args, int *status, int timeout_ms)
{
    char *dir = harness_tmpdir ();
    char out[600];
    snprintf (out, sizeof out, "%s/out.json", dir);
    pid_t pid = harness_cli_start (out, args);
    int st = harness_wait (pid, timeout_ms);
    if (status)
        *status = st;
    json_t *j = harness_json_file (out);
    if (!j || st != 0) {
        //  Show what the command said, so a failing test explains itself.
        char err[700], text[4096] = "";
        snprintf (err, sizeof err, "%s.err", out);
        FILE *f = fopen (err, "r");
        if (f) {
            size_t n = fread (text, 1, sizeof text - 1, f);
            text[n] = 0;
            fclose (f);
        }
        fprintf (stderr, "strata %s exited %d; stderr:\n%s\n", args[0], st, text);
    }
    harness_rmtree (dir);
    free (dir);
    return j;
}

FILE *
harness_shop_write (const char *dir, int users)
{
    enum { N = HARNESS_SHOP_ITEMS };
    char path[700];
    snprintf (path, sizeof path, "%s/items.jsonl", dir);
    FILE *f = fopen (path, "w");
    if (!f)
        return NULL;
    for (int g = 0; g < 2; g++)
        for (int i = 0; i < N; i++)
            fprintf (f,
                     "{\"item_id\":\"%c%d\",\"title\":\"%s %s %d\",\"brand\":\"%s\",\"category\":\"%s\","
                     "\"price\":\"%d.00\"}\n",
                     g ? 'B' : 'A', i, g ? "Crest" : "Fleet", g ? "winter hat" : "running shoe", i,
                     g ? "Crest" : "Fleet", g ? "Hats > Winter" : "Shoes > Running", g ? 10 + i : 50 + i);
    fprintf (f, "{\"item_id\":\"Z\",\"title\":\"Fleet running shoe\",\"brand\":\"Fleet\",\"category\":\"Shoes > "
                "Running\",\"price\":\"61.00\"}\n");
    fclose (f);
    snprintf (path, sizeof path, "%s/events.jsonl", dir);
    if (!(f = fopen (path, "w")))
        return NULL;
    for (int u = 0; u < users; u++) {
        int g = u % 2, start = (u / 2) % N;
        for (int k = 0; k < 8; k++)
            fprintf (f,
                     "{\"event_id\":\"e%d-%d\",\"user_id\":\"u%d\",\"item_id\":\"%c%d\",\"type\":\"%s\","
                     "\"timestamp\":%ld}\n",
                     u, k, u, g ? 'B' : 'A', (start + k) % N, k % 4 == 3 ? "purchase" : "view",
                     HARNESS_SHOP_TS + 60000L * k);
    }
    return f;
}
