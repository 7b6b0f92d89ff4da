/*  cluster: see cluster.h. */
#define LOG_MODULE "cluster"
#include "cluster.h"
#include "endpoints.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

int
cluster_resolve (const char *broker, const char *dir, cluster_endpoints_t *out, char *err, size_t errlen)
{
    memset (out, 0, sizeof *out);
    snprintf (out->ingest, sizeof out->ingest, "%s", STRATA_DEFAULT_INGEST);
    snprintf (out->workers, sizeof out->workers, "%s", STRATA_DEFAULT_WORKERS);
    snprintf (out->api, sizeof out->api, "%s", STRATA_DEFAULT_API);
    snprintf (out->trainer, sizeof out->trainer, "%s", STRATA_DEFAULT_TRAINER_API);
    if (broker && *broker) {
        snprintf (out->ingest, sizeof out->ingest, "%s", broker);
        snprintf (out->api, sizeof out->api, "%s", broker);
        return 0;
    }
    if (!dir || !*dir)
        return 0;
    char path[4096];
    snprintf (path, sizeof path, "%s/cluster.json", dir);
    json_error_t jerr;
    json_t *j = json_load_file (path, 0, &jerr);
    if (!j) {
        snprintf (err, errlen, "no cluster at %s (%s); start one with: strata up --dir %s", dir, jerr.text, dir);
        //  No file: no cluster was started there. A file that does not parse was
        //  written by a supervisor that died mid-way or by someone else.
        return access (path, F_OK) != 0 ? STRATA_ENOTFOUND : access (path, R_OK) != 0 ? STRATA_EIO : STRATA_ECORRUPT;
    }
    const char *ingest = json_string_value (json_object_get (j, "ingest"));
    const char *workers = json_string_value (json_object_get (j, "workers"));
    const char *api = json_string_value (json_object_get (j, "api"));
    if (ingest)
        snprintf (out->ingest, sizeof out->ingest, "%s", ingest);
    if (workers)
        snprintf (out->workers, sizeof out->workers, "%s", workers);
    if (api)
        snprintf (out->api, sizeof out->api, "%s", api);
    const char *trainer = json_string_value (json_object_get (j, "trainer"));
    if (trainer)
        snprintf (out->trainer, sizeof out->trainer, "%s", trainer);
    out->supervisor_pid = (int) json_integer_value (json_object_get (j, "supervisor_pid"));
    json_decref (j);
    return 0;
}

void
cluster_program (const char *name, char *out, size_t cap)
{
    if (!out || cap == 0)
        return;
    char self[4096];
    ssize_t n = readlink ("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        char *dir = dirname (self);
        const char *component = strstr (name, "broker")    ? "broker"
                              : strstr (name, "worker")  ? "worker"
                              : strstr (name, "trainer") ? "trainer"
                                                         : "tools";
        snprintf (out, cap, "%s/%s", dir, name);
        if (access (out, X_OK) == 0)
            return;
        snprintf (out, cap, "%s/../%s/%s", dir, component, name);   // meson build tree
        if (access (out, X_OK) == 0)
            return;
    }
    snprintf (out, cap, "%s", name);
}

// ---------------------------------------------------------------- supervisor

typedef struct {
    const char *name;      // "broker", "worker-1", ...
    char *argv[24];
    int nargs;
    pid_t pid;
    int restarts;
    int64_t started;
    int nice;              // batch work: > 0 (see s_spawn)
} child_t;

//  Appends "flag" + value as one argument (flag may be "" for the program itself).
static void
s_arg (child_t *c, const char *flag, const char *value)
{
    char buf[4200];
    snprintf (buf, sizeof buf, "%s%s", flag, value);
    c->argv[c->nargs++] = strdup (buf);
    c->argv[c->nargs] = NULL;
}

//  Starts a child. Returns once it has exec'd its program (or failed to): a pipe whose
//  write end closes on exec tells, so that whoever reads cluster.json next finds every
//  child already at its priority and in its session, not still between fork and exec.
static pid_t
s_spawn (child_t *c, const char *logdir)
{
    int ready[2] = { -1, -1 };
    if (pipe2 (ready, O_CLOEXEC) < 0)
        ready[0] = ready[1] = -1;
    pid_t pid = fork ();
    if (pid == 0) {
        if (ready[0] >= 0)
            close (ready[0]);
        char log[4200];
        snprintf (log, sizeof log, "%s/%s.log", logdir, c->name);
        int fd = open (log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2 (fd, STDOUT_FILENO);
            dup2 (fd, STDERR_FILENO);
            close (fd);
        }
        //  The supervisor handles signals; children get their own defaults back.
        signal (SIGINT, SIG_DFL);
        signal (SIGTERM, SIG_DFL);
        //  Ctrl-C reaches the supervisor, which stops children in order.
        if (c->nice > 0) {
            //  Batch work yields the CPU to serving. The kernel's autogroup, when on,
            //  shares the CPU between sessions before nice values count, so a batch
            //  process gets a session of its own, weighted down by the same nice value.
            //  Measured with bench/serve --import (2,000 recommend/s on Beauty during an
            //  import and the retraining it starts), p99 over runs: 76-202 ms (median
            //  97, 10 runs) with every process alike, 61-78 ms at nice 10, 21-147 ms
            //  (median 58, 6 runs) at 19. An import alone is as fast at 19 as at 0.
            if (setsid () < 0)
                setpgid (0, 0);
            FILE *ag = fopen ("/proc/self/autogroup", "w");
            if (ag) {
                fprintf (ag, "%d\n", c->nice);
                fclose (ag);
            }
            if (setpriority (PRIO_PROCESS, 0, c->nice) < 0)
                fprintf (stderr, "cannot lower this process's priority: %s\n", strerror (errno));
        }
        else
            setpgid (0, 0);
        execvp (c->argv[0], c->argv);
        fprintf (stderr, "cannot run %s: %s\n", c->argv[0], strerror (errno));
        _exit (127);
    }
    if (ready[1] >= 0)
        close (ready[1]);
    if (ready[0] >= 0) {
        char byte;
        if (pid > 0)
            while (read (ready[0], &byte, 1) < 0 && errno == EINTR)
                ;   // EOF: the child exec'd (or exited)
        close (ready[0]);
    }
    c->pid = pid;
    c->started = util_mono_ms ();
    return pid;
}

static void
s_stop (child_t *c, int timeout_ms)
{
    if (c->pid <= 0)
        return;
    kill (c->pid, SIGTERM);
    int64_t deadline = util_mono_ms () + timeout_ms;
    while (util_mono_ms () < deadline) {
        if (waitpid (c->pid, NULL, WNOHANG) == c->pid) {
            c->pid = 0;
            return;
        }
        zclock_sleep (20);
    }
    kill (c->pid, SIGKILL);
    waitpid (c->pid, NULL, 0);
    c->pid = 0;
}

static int
s_write_cluster_json (const char *dir, json_t *broker_eps, child_t *children, int n)
{
    json_t *pids = json_array ();
    for (int i = 0; i < n; i++)
        json_array_append_new (pids, json_pack ("{s:s, s:i}", "name", children[i].name, "pid", (int) children[i].pid));
    json_t *j = json_pack ("{s:O, s:O, s:O, s:s, s:i, s:o}", "ingest", json_object_get (broker_eps, "ingest"),
                           "workers", json_object_get (broker_eps, "workers"), "api",
                           json_object_get (broker_eps, "api"), "dir", dir, "supervisor_pid", (int) getpid (),
                           "processes", pids);
    if (j && json_object_get (broker_eps, "trainer")) {
        json_object_set (j, "trainer", json_object_get (broker_eps, "trainer"));
        json_object_set (j, "trainer_workers", json_object_get (broker_eps, "trainer_workers"));
    }
    char path[4096], tmp[4200];
    snprintf (path, sizeof path, "%s/cluster.json", dir);
    snprintf (tmp, sizeof tmp, "%s.tmp", path);
    int rc = !j ? STRATA_ENOMEM : json_dump_file (j, tmp, JSON_INDENT (2)) == 0 ? 0 : STRATA_EIO;
    json_decref (j);
    if (rc == 0 && rename (tmp, path) != 0)
        rc = STRATA_EIO;
    return rc;
}

//  Replaces a child's --KEY=ENDPOINT arguments by the endpoints it reported binding
//  (eps), so that a restarted process comes back on the same ports.
static void
s_pin (child_t *c, json_t *eps)
{
    for (int i = 1; i < c->nargs; i++) {
        const char *eq = strchr (c->argv[i], '=');
        if (strncmp (c->argv[i], "--", 2) || !eq)
            continue;
        char key[64];
        snprintf (key, sizeof key, "%.*s", (int) (eq - c->argv[i] - 2), c->argv[i] + 2);
        const char *ep = json_string_value (json_object_get (eps, key));
        if (!ep || strncmp (ep, "tcp://", 6))
            continue;
        char buf[600];
        snprintf (buf, sizeof buf, "--%s=%s", key, ep);
        free (c->argv[i]);
        c->argv[i] = strdup (buf);
    }
}

static json_t *
s_wait_file (const char *path, pid_t pid, int timeout_ms)
{
    int64_t deadline = util_mono_ms () + timeout_ms;
    while (util_mono_ms () < deadline) {
        json_t *j = json_load_file (path, 0, NULL);
        if (j)
            return j;
        if (waitpid (pid, NULL, WNOHANG) == pid)
            return NULL;   // it died on start-up
        zclock_sleep (20);
    }
    return NULL;
}

int
cluster_up (const cluster_opts_t *opts, int ready_fd)
{
    char logdir[4096], eps_path[4096], broker_dir[4096];
    if (zsys_dir_create ("%s/logs", opts->dir) < 0) {
        log_error ("cannot create %s/logs", opts->dir);
        return STRATA_EIO;
    }
    snprintf (logdir, sizeof logdir, "%s/logs", opts->dir);
    snprintf (eps_path, sizeof eps_path, "%s/broker.json", opts->dir);
    snprintf (broker_dir, sizeof broker_dir, "%s/broker", opts->dir);
    unlink (eps_path);

    int trainer = opts->train_workers > 0;
    int rankers = trainer ? opts->rankers : 0;
    int first_ranker = 1 + opts->workers + trainer + opts->train_workers;
    int n = first_ranker + rankers;
    child_t *children = calloc ((size_t) n, sizeof *children);
    if (!children)
        return STRATA_ENOMEM;
    char prog[4096];
    cluster_program ("strata-broker", prog, sizeof prog);
    child_t *b = &children[0];
    b->name = "broker";
    s_arg (b, "", prog);
    s_arg (b, "--dir=", broker_dir);
    s_arg (b, "--endpoints-file=", eps_path);
    if (opts->port) {
        char ep[64];
        snprintf (ep, sizeof ep, "tcp://127.0.0.1:%d", opts->port);
        s_arg (b, "--ingest=", ep);
        snprintf (ep, sizeof ep, "tcp://127.0.0.1:%d", opts->port + 1);
        s_arg (b, "--workers=", ep);
        snprintf (ep, sizeof ep, "tcp://127.0.0.1:%d", opts->port + 2);
        s_arg (b, "--api=", ep);
    }
    else {
        s_arg (b, "--ingest=", "tcp://127.0.0.1:!");
        s_arg (b, "--workers=", "tcp://127.0.0.1:!");
        s_arg (b, "--api=", "tcp://127.0.0.1:!");
    }
    s_arg (b, "--journal-sync=", opts->journal_sync ? "true" : "false");
    s_arg (b, "--log-level=", opts->log_level ? opts->log_level : "info");
    s_spawn (b, logdir);
    json_t *eps = s_wait_file (eps_path, b->pid, 15000);
    if (!eps) {
        log_error ("broker did not start; see %s/broker.log", logdir);
        s_stop (b, 1000);
        free (children);
        return STRATA_EUNAVAILABLE;
    }
    //  After a broker restart its endpoints must stay the same: pin the bound ones.
    s_pin (b, eps);

    //  The trainer (its store in DIR/trainer) and its train workers.
    json_t *teps = NULL;
    if (trainer) {
        char teps_path[4096];
        snprintf (teps_path, sizeof teps_path, "%s/trainer.json", opts->dir);
        unlink (teps_path);
        cluster_program ("strata-trainer", prog, sizeof prog);
        child_t *t = &children[1 + opts->workers];
        t->name = "trainer";
        s_arg (t, "", prog);
        s_arg (t, "--dir=", opts->dir);
        s_arg (t, "--broker=", json_string_value (json_object_get (eps, "api")));
        s_arg (t, "--endpoints-file=", teps_path);
        char ep[64];
        snprintf (ep, sizeof ep, "tcp://127.0.0.1:%d", opts->port + 3);
        s_arg (t, "--workers=", opts->port ? ep : "tcp://127.0.0.1:!");
        snprintf (ep, sizeof ep, "tcp://127.0.0.1:%d", opts->port + 4);
        s_arg (t, "--api=", opts->port ? ep : "tcp://127.0.0.1:!");
        s_arg (t, "--log-level=", opts->log_level ? opts->log_level : "info");
        t->nice = opts->batch_nice;
        s_spawn (t, logdir);
        teps = s_wait_file (teps_path, t->pid, 15000);
        if (!teps) {
            log_error ("trainer did not start; see %s/trainer.log", logdir);
            for (int i = 1 + opts->workers; i >= 0; i--)
                s_stop (&children[i], 1000);
            for (int i = 0; i < n; i++)
                for (int k = 0; k < children[i].nargs; k++)
                    free (children[i].argv[k]);
            free (children);
            json_decref (eps);
            return STRATA_EUNAVAILABLE;
        }
        s_pin (t, teps);
        json_object_set (eps, "trainer", json_object_get (teps, "api"));
        json_object_set (eps, "trainer_workers", json_object_get (teps, "workers"));
    }
    long cores = sysconf (_SC_NPROCESSORS_ONLN);
    char threads[24];
    snprintf (threads, sizeof threads, "%ld", opts->train_workers > 0 && cores / opts->train_workers > 1
                                                  ? cores / opts->train_workers : 1L);
    cluster_program ("strata-worker", prog, sizeof prog);
    for (int i = 1 + opts->workers + trainer; i < first_ranker; i++) {
        child_t *w = &children[i];
        char *name = malloc (32);
        snprintf (name, 32, "train-worker-%d", i - opts->workers - trainer);
        w->name = name;
        s_arg (w, "", prog);
        s_arg (w, "--role=", "train");
        s_arg (w, "--trainer=", json_string_value (teps ? json_object_get (teps, "workers") : NULL));
        s_arg (w, "--threads=", threads);
        s_arg (w, "--log-level=", opts->log_level ? opts->log_level : "info");
        w->nice = opts->batch_nice;
        s_spawn (w, logdir);
    }
    for (int i = first_ranker; i < n; i++) {
        child_t *w = &children[i];
        char *name = malloc (32), rdir[4000];
        snprintf (name, 32, "rank-%d", i - first_ranker + 1);
        snprintf (rdir, sizeof rdir, "%s/%s", opts->dir, name);
        w->name = name;
        s_arg (w, "", prog);
        s_arg (w, "--role=", "rank");
        s_arg (w, "--broker=", json_string_value (json_object_get (eps, "workers")));
        s_arg (w, "--api=", json_string_value (json_object_get (eps, "api")));
        s_arg (w, "--trainer-api=", json_string_value (teps ? json_object_get (teps, "api") : NULL));
        s_arg (w, "--dir=", rdir);
        s_arg (w, "--id=", name);
        s_arg (w, "--log-level=", opts->log_level ? opts->log_level : "info");
        s_spawn (w, logdir);
    }
    json_decref (teps);
    for (int i = 1; i <= opts->workers; i++) {
        child_t *w = &children[i];
        char *name = malloc (32);
        snprintf (name, 32, "worker-%d", i);
        w->name = name;
        s_arg (w, "", prog);
        s_arg (w, "--role=", "preprocess");
        s_arg (w, "--broker=", json_string_value (json_object_get (eps, "workers")));
        s_arg (w, "--log-level=", opts->log_level ? opts->log_level : "info");
        w->nice = opts->batch_nice;
        s_spawn (w, logdir);
    }
    int rc = s_write_cluster_json (opts->dir, eps, children, n);
    if (rc == 0) {
        fprintf (stderr, "strata: cluster up in %s\n  ingest  %s\n  workers %s\n  api     %s\n", opts->dir,
                 json_string_value (json_object_get (eps, "ingest")),
                 json_string_value (json_object_get (eps, "workers")),
                 json_string_value (json_object_get (eps, "api")));
        if (trainer)
            fprintf (stderr, "  trainer %s (%d train workers, %d rank workers)\n",
                     json_string_value (json_object_get (eps, "trainer")), opts->train_workers, rankers);
        fprintf (stderr, "  logs    %s\n", logdir);
        if (ready_fd >= 0) {
            if (write (ready_fd, "1", 1) != 1)
                log_warn ("could not signal readiness");
            close (ready_fd);
        }
    }
    while (rc == 0 && !zsys_interrupted) {
        int status;
        pid_t pid = waitpid (-1, &status, WNOHANG);
        if (pid > 0) {
            for (int i = 0; i < n; i++)
                if (children[i].pid == pid) {
                    child_t *c = &children[i];
                    log_warn ("%s (pid %d) exited (%s %d); restarting", c->name, (int) pid,
                              WIFSIGNALED (status) ? "signal" : "status",
                              WIFSIGNALED (status) ? WTERMSIG (status) : WEXITSTATUS (status));
                    //  A process that keeps dying right after start is not restarted in a loop.
                    if (util_mono_ms () - c->started < 1000)
                        zclock_sleep (1000);
                    c->restarts++;
                    s_spawn (c, logdir);
                    s_write_cluster_json (opts->dir, eps, children, n);
                }
            continue;
        }
        zclock_sleep (100);
    }
    fprintf (stderr, "strata: stopping cluster in %s\n", opts->dir);
    for (int i = n - 1; i >= 0; i--)
        s_stop (&children[i], i == 0 ? 10000 : 3000);
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < children[i].nargs; k++)
            free (children[i].argv[k]);
        if (i > 0 && strcmp (children[i].name, "trainer"))
            free ((char *) children[i].name);
    }
    free (children);
    json_decref (eps);
    char path[4096];
    snprintf (path, sizeof path, "%s/cluster.json", opts->dir);
    unlink (path);
    return rc;
}

int
cluster_down (const char *dir, int timeout_ms, char *err, size_t errlen)
{
    cluster_endpoints_t eps;
    int rc = cluster_resolve (NULL, dir, &eps, err, errlen);
    if (rc < 0)
        return rc;
    if (eps.supervisor_pid <= 0 || kill (eps.supervisor_pid, SIGTERM) != 0) {
        snprintf (err, errlen, "cluster in %s is not running (stale cluster.json removed)", dir);
        char path[4096];
        snprintf (path, sizeof path, "%s/cluster.json", dir);
        unlink (path);
        return STRATA_ESTATE;
    }
    int64_t deadline = util_mono_ms () + timeout_ms;
    while (util_mono_ms () < deadline) {
        if (kill (eps.supervisor_pid, 0) != 0)
            return 0;
        zclock_sleep (50);
    }
    snprintf (err, errlen, "cluster in %s did not stop within %d ms", dir, timeout_ms);
    return STRATA_ETIMEOUT;
}
