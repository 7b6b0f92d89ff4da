/*  harness: helpers for tests that run real Strata processes.

    Processes are started from the binaries the build produced (paths come from the
    environment meson sets), bind ephemeral ports on 127.0.0.1, and report their
    endpoints through the broker's --endpoints-file, so tests never guess ports and can
    run side by side. Waiting is done by polling for a condition with a deadline, never
    by a fixed sleep.
*/
#ifndef STRATA_HARNESS_H
#define STRATA_HARNESS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

//  Learning tests run thousands of training steps: seconds natively, far past their
//  timeouts under valgrind (its test setup sets STRATA_TEST_VALGRIND). The smaller tests
//  beside them (gradient checks, single steps) run the same code under valgrind, and
//  the learning tests run whole under ASan and UBSan. Use where criterion.h is included.
#define SKIP_UNDER_VALGRIND()                                                                       \
    do {                                                                                            \
        if (getenv ("STRATA_TEST_VALGRIND"))                                                        \
            cr_skip_test ("a learning test: too slow under valgrind (run whole under ASan/UBSan)"); \
    } while (0)

//  Path of a file under the shared data directory, or NULL if it is not there (the
//  caller skips with a message). Returned string is static storage, valid until the
//  next call.
const char *harness_data (const char *relative);

//  A fresh temporary directory (malloc'd path).
char *harness_tmpdir (void);

//  Removes a directory tree.
void harness_rmtree (const char *path);

//  A fixture for suites whose tests each want a fresh directory: harness_dir is its
//  path from harness_dir_setup (a suite's .init) to harness_dir_teardown (its .fini).
extern char *harness_dir;
void harness_dir_setup (void);
void harness_dir_teardown (void);

typedef struct {
    char dir[512];
    char ingest[128], workers_ep[128], api[128];
    pid_t broker;
    pid_t workers[16];
    int nworkers;
    char broker_args[8][128];
    int nbroker_args;
    pid_t trainer;
    char trainer_api[128], trainer_workers[128];
    char trainer_args[16][128];
    int ntrainer_args;
} hcluster_t;

//  Starts a broker in a new temporary directory (extra: NULL-terminated extra flags).
//  Waits until its endpoints are known. Returns 0 or -1.
int hcluster_start (hcluster_t *c, const char *const *extra);

//  Restarts the broker on the same directory and endpoints.
int hcluster_restart_broker (hcluster_t *c);

//  Starts one more preprocess worker; returns its pid.
pid_t hcluster_add_worker (hcluster_t *c);

//  Starts strata-trainer on the cluster's directory (extra: NULL-terminated flags,
//  kept for restarts) and waits for its endpoints. Returns 0 or -1.
int hcluster_start_trainer (hcluster_t *c, const char *const *extra);

//  Restarts the trainer on the same directory, endpoints and flags.
int hcluster_restart_trainer (hcluster_t *c);

//  Starts one train worker connected to the trainer; returns its pid.
pid_t hcluster_add_train_worker (hcluster_t *c);

//  Starts one rank worker (its store in the cluster's directory, named by k) serving
//  the broker's requests from the trainer's model versions; returns its pid.
pid_t hcluster_add_rank_worker (hcluster_t *c, int k);
//  The same with more flags (NULL-terminated).
pid_t hcluster_add_rank_worker_with (hcluster_t *c, int k, const char *const *flags);

//  The trainer's status (strata train --status) as JSON (caller decrefs), or NULL.
json_t *hcluster_train_status (hcluster_t *c);

//  Stops everything (SIGTERM, then SIGKILL), scans the processes' logs for sanitizer
//  reports (printing them), and removes the directory. Returns the number of reports,
//  so that a sanitizer build fails a test whose broker or workers misbehaved.
int hcluster_stop (hcluster_t *c);

//  Broker statistics as JSON (caller decrefs), or NULL.
json_t *hcluster_stats (hcluster_t *c);
uint64_t hcluster_stat (hcluster_t *c, const char *key);

//  Waits until stats[key] >= value; returns true if it happened within timeout_ms.
bool hcluster_wait_stat (hcluster_t *c, const char *key, uint64_t value, int timeout_ms);

//  Number of connected workers of a role, from stats.
int hcluster_workers (hcluster_t *c, const char *role);

//  Runs the strata CLI with args (NULL-terminated) in the background; its stdout goes
//  to out_path. Returns the pid.
pid_t harness_cli_start (const char *out_path, const char *const *args);

//  Runs any program (argv[0] a path) in the background, its stdout to out_path and its
//  stderr to out_path.err, like harness_cli_start. Returns the pid.
pid_t harness_exec_start (const char *out_path, const char *const *argv);

//  Runs the CLI to completion and returns its stdout parsed as JSON (last line that
//  parses), or NULL. *status gets the exit status.
json_t *harness_cli_json (const char *const *args, int *status);
//  Runs a serving command (args: `recommend ... --json` or `search ... --json`) until
//  its answer names a model version, up to timeout_ms; whether one did.
bool harness_cli_until_served (const char *const *args, int timeout_ms);

//  The same with a deadline other than 5 minutes (the command is killed past it).
json_t *harness_cli_json_within (const char *const *args, int *status, int timeout_ms);

//  Waits for a process to exit; returns its exit status, or -1 on timeout (it is then
//  killed).
int harness_wait (pid_t pid, int timeout_ms);

//  The two-group shop of the serving tests, as JSONL in dir: items.jsonl holds shoes
//  A0..A11 (brand Fleet, price 50 + i), hats B0..B11 (Crest, 10 + i) and Z, a running
//  shoe nobody touched; events.jsonl holds `users` users each walking 8 steps of one
//  group's cycle (views, every fourth a purchase) from HARNESS_SHOP_TS. Returns
//  events.jsonl open for the caller's own events (the caller fcloses it), or NULL.
#define HARNESS_SHOP_ITEMS 12   // items per group
#define HARNESS_SHOP_TS 1700000000000L
FILE *harness_shop_write (const char *dir, int users);

//  Last JSON object in a file (a CLI's stdout), or NULL.
json_t *harness_json_file (const char *path);

#endif
