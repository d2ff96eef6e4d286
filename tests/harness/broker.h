/*
 * tests/harness/broker.h - the switchyard broker under test as a real process: a temp dir per
 * test binary, a config written there, `switchyard run` spawned with its stdout + stderr in
 * <dir>/broker.log, readiness from its `ready: control API on http://HOST:PORT` line (the
 * config listens on port 0), requests to its control API, SIGTERM/SIGKILL at the end, strays
 * killed, and the log checked for sanitizer reports.
 *
 * Placeholders substituted in configs: @HANDLERS@ (<source>/tests/handlers), @FIXTURES@
 * (<source>/tests/integration/handlers), @SRC@ (the source tree), @DIR@ (the temp dir),
 * @DATA@ (<dir>/data, the data_dir tests should use).
 */
#ifndef SY_HARNESS_BROKER_H
#define SY_HARNESS_BROKER_H

#include <stdbool.h>
#include <stddef.h>

#include "harness/http.h"
#include "harness/proc.h"

struct h_broker {
    char *dir;         /* temp dir, owned; removed by h_broker_destroy() unless `failed` */
    char *config_path; /* <dir>/switchyard.yaml */
    char *log_path;    /* <dir>/broker.log: the broker's stdout and stderr */
    char *data_dir;    /* <dir>/data */
    struct h_proc proc;
    char host[64];     /* from the ready line */
    int port;          /* from the ready line; 0 before */
    const char *token; /* borrowed; when set, requests carry "Authorization: Bearer <token>" */
    bool failed;       /* keep the temp dir and dump the logs at destroy */
};

/* Counters of GET /healthz (-1 when a counter is missing from the answer). */
struct h_health {
    long long in_flight, environments, invocations, errors, throttles;
    long long cold_starts, warm_starts, timeouts, crashes;
};

/* Create B's temp dir ("sy-TAG-XXXXXX") and paths. Returns 0 or -1. */
int h_broker_init(struct h_broker *b, const char *tag);

/* Write YAML (placeholders substituted) to B's config path. Returns 0 or -1. */
int h_broker_write_config(struct h_broker *b, const char *yaml);

/* YAML with the placeholders substituted for B. Returns new. */
char *h_broker_expand(const struct h_broker *b, const char *yaml);

/*
 * Start `SY_BINARY run <config>` in B's dir with ENV edits (see h_proc_spawn; may be NULL) and
 * wait up to TIMEOUT_MS for the ready line. Returns 0 (B->host/port set) or -1 (the reason and
 * the log are printed; a started process is killed).
 */
int h_broker_start(struct h_broker *b, const char *const env[], int timeout_ms);

/* True while the broker process has not exited (reaps it when it has). */
bool h_broker_running(struct h_broker *b);

/*
 * SIGTERM, wait up to GRACE_MS for the drain, then SIGKILL. Returns the exit code (128+N for
 * signal N), or -2 when SIGKILL was needed. Safe on a broker that already exited.
 */
int h_broker_stop(struct h_broker *b, int grace_ms);

/*
 * Lines of the broker log from byte FROM on that show a sanitizer report (AddressSanitizer,
 * LeakSanitizer, UBSan "runtime error:"). Returns their number and prints each on stderr.
 */
int h_broker_sanitizer_lines(const struct h_broker *b, size_t from);

/* Size of the broker log now: a mark to dump from when a test fails. */
size_t h_broker_log_mark(const struct h_broker *b);

/* Print the broker log from FROM on (at most its last 64 KB) and the tail of every function log
 * under <data>/logs on stderr. */
void h_broker_dump_logs(const struct h_broker *b, size_t from);

/*
 * Kill the broker if it still runs, kill strays (children left to us as subreaper), and remove
 * the temp dir unless B->failed or $SY_KEEP_TMP is set. Returns the number of strays found.
 */
int h_broker_destroy(struct h_broker *b);

/* A request to the control API (adds the bearer token when B->token is set). As h_http_request. */
int h_broker_request(const struct h_broker *b, const char *method, const char *path,
                     const char *const headers[], const void *body, size_t body_len, int timeout_ms,
                     struct h_http_resp *resp);

/*
 * POST /2015-03-31/functions/FN/invocations with LEN bytes of PAYLOAD (strlen when LEN is
 * (size_t)-1) and extra HEADERS (may be NULL); 30 s deadline. As h_http_request.
 */
int h_broker_invoke(const struct h_broker *b, const char *fn, const char *payload, size_t len,
                    const char *const headers[], struct h_http_resp *resp);

/* GET /healthz into H. Returns 0, or -1 when the request failed or the body is not JSON. */
int h_broker_health(const struct h_broker *b, struct h_health *h);

/* Poll /healthz until in_flight == 0 or TIMEOUT_MS passes. Returns 0, or -1 (value printed). */
int h_broker_wait_idle(const struct h_broker *b, int timeout_ms);

/* Path of FN's log file, <data>/logs/FN.log. Returns new. */
char *h_broker_func_log(const struct h_broker *b, const char *fn);

/* "http://HOST:PORT" of the control API. Returns new. */
char *h_broker_url(const struct h_broker *b);

#endif
