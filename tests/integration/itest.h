/*
 * tests/integration/itest.h - cmocka glue between the integration tests and the harness: group
 * fixtures that run one broker per test binary, per-test fixtures that dump the logs of a test
 * that failed, the end-of-test invariants, and assertions that print the HTTP response or the
 * command output they were about.
 *
 * Every test function ends with itest_end(): /healthz in_flight back to 0, the broker still
 * running, no sanitizer line in the broker log. A test that fails before it gets there has the
 * broker log (from where the test started) and the function logs printed by its teardown.
 */
#ifndef SY_ITEST_H
#define SY_ITEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness/broker.h"
#include "harness/http.h"
#include "harness/proc.h"
#include "harness/util.h"

struct itest {
    struct h_broker b;
    size_t mark; /* broker log size when the current test started */
    bool ok;     /* the current test reached itest_end() */
};

/* The broker section every test config starts with; @DATA@ is the temp dir's data dir. */
#define ITEST_BROKER_YAML                                                                          \
    "broker:\n"                                                                                    \
    "  listen: 127.0.0.1:0\n"                                                                      \
    "  data_dir: @DATA@\n"                                                                         \
    "  shutdown_grace_ms: 2000\n"

/* Deadline for the broker's ready line: generous for sanitizer builds on a busy machine. */
#define ITEST_READY_MS 30000

/*
 * Group setup: a temp dir "sy-TAG-*", YAML written as its config, the broker started with ENV
 * edits (may be NULL). *STATE becomes a new struct itest. Returns 0, or -1 (logs dumped).
 */
int itest_group_start(void **state, const char *tag, const char *yaml, const char *const env[]);

/*
 * Group teardown: stop the broker (SIGTERM; it must exit 0 within 10 s), scan the whole log for
 * sanitizer lines (LeakSanitizer reports at exit), kill strays and free. Returns -1 if any of
 * that failed (logs dumped, temp dir kept).
 */
int itest_group_stop(void **state);

/* Honour $SY_TEST_FILTER (a cmocka test-name pattern, e.g. "test_timeout*"). Call in main(). */
void itest_filter_from_env(void);

/*
 * Run the group: cmocka_run_group_tests_name() with itest_group_stop() as the group teardown,
 * and a non-zero result when that teardown found a problem (cmocka 1.1 reports a failed group
 * teardown but still returns 0).
 */
#define itest_run_group(name, tests, setup)                                                        \
    itest_exit_code(cmocka_run_group_tests_name(name, tests, setup, itest_group_stop))
int itest_exit_code(int cmocka_rc);

/* Per-test setup and teardown (state is the group's struct itest). */
int itest_setup(void **state);
int itest_teardown(void **state);

/* The invariants every test ends on; marks the test as having reached its end. */
#define itest_end(t) itest_end_((t), __FILE__, __LINE__)
void itest_end_(struct itest *t, const char *file, int line);

/* Invoke FN with PAYLOAD (NUL-terminated) and HDRS; fails the test if no response came. */
#define itest_invoke(t, fn, payload, hdrs, resp)                                                   \
    itest_invoke_((t), (fn), (payload), (size_t)-1, (hdrs), (resp), __FILE__, __LINE__)
void itest_invoke_(struct itest *t, const char *fn, const char *payload, size_t len,
                   const char *const hdrs[], struct h_http_resp *resp, const char *file, int line);

/* Fail unless RESP has status CODE (prints the response). */
#define expect_status(resp, code) expect_status_((resp), (code), __FILE__, __LINE__)
void expect_status_(const struct h_http_resp *resp, int code, const char *file, int line);

/* Fail unless header NAME of RESP equals VALUE (VALUE NULL: the header must be absent). */
#define expect_header(resp, name, value) expect_header_((resp), (name), (value), __FILE__, __LINE__)
void expect_header_(const struct h_http_resp *resp, const char *name, const char *value,
                    const char *file, int line);

/* Fail unless HAY contains NEEDLE (prints both, HAY cut at 4 KB). */
#define expect_contains(hay, needle) expect_contains_((hay), (needle), true, __FILE__, __LINE__)
#define expect_not_contains(hay, needle)                                                           \
    expect_contains_((hay), (needle), false, __FILE__, __LINE__)
void expect_contains_(const char *hay, const char *needle, bool want, const char *file, int line);

/* The body of RESP as JSON (new; json_decref), failing the test when it is not JSON. */
#define resp_json(resp) resp_json_((resp), __FILE__, __LINE__)
json_t *resp_json_(const struct h_http_resp *resp, const char *file, int line);

/* The decoded X-Amz-Log-Result of RESP (new; free), failing the test when absent or bad. */
#define resp_log_tail(resp) resp_log_tail_((resp), __FILE__, __LINE__)
char *resp_log_tail_(const struct h_http_resp *resp, const char *file, int line);

/*
 * Fail unless RESP is a function error: status 200, X-Amz-Function-Error: Unhandled and a JSON
 * body whose errorType is ERROR_TYPE (NULL: any string). Returns the body (new; json_decref).
 */
#define expect_function_error(resp, type) expect_function_error_((resp), (type), __FILE__, __LINE__)
json_t *expect_function_error_(const struct h_http_resp *resp, const char *error_type,
                               const char *file, int line);

/*
 * Fail unless RESP is an API error: status STATUS, header x-amzn-ErrorType: CODE, and a JSON
 * body with a message ("message" or "Message"). Returns the body (new; json_decref).
 */
#define expect_api_error(resp, status, code)                                                       \
    expect_api_error_((resp), (status), (code), __FILE__, __LINE__)
json_t *expect_api_error_(const struct h_http_resp *resp, int status, const char *code,
                          const char *file, int line);

/* Fail unless the run exited with CODE (prints its output). */
#define expect_run_code(run, code) expect_run_code_((run), (code), __FILE__, __LINE__)
void expect_run_code_(const struct h_run *run, int code, const char *file, int line);

/* A pid from a handler's answer: the number itself or its "pid" member; -1 if neither. */
long long json_pid(const json_t *j);

/* Poll /healthz until PRED(h, arg) holds or TIMEOUT_MS passes; fails the test on the deadline. */
#define await_health(t, pred, arg, ms)                                                             \
    await_health_((t), (pred), (arg), (ms), #pred, __FILE__, __LINE__)
void await_health_(struct itest *t, bool (*pred)(const struct h_health *, void *), void *arg,
                   int timeout_ms, const char *what, const char *file, int line);

/* Read /healthz, failing the test when it cannot. */
#define get_health(t, h) get_health_((t), (h), __FILE__, __LINE__)
void get_health_(struct itest *t, struct h_health *h, const char *file, int line);

/* ---- async invocations, files written by handlers and destinations -------------------------- */

/* The header list of an asynchronous invoke: X-Amz-Invocation-Type: Event. */
extern const char *const itest_event_hdr[];

/*
 * Invoke FN on B asynchronously with PAYLOAD (NUL-terminated); fail the test unless the answer is
 * 202 with a 36-character x-amzn-RequestId. Returns the request id (new; free).
 */
#define itest_invoke_event(b, fn, payload)                                                         \
    itest_invoke_event_((b), (fn), (payload), __FILE__, __LINE__)
char *itest_invoke_event_(const struct h_broker *b, const char *fn, const char *payload,
                          const char *file, int line);

/* METHOD PATH on B's control API with BODY (JSON, or NULL) as JSON (new; json_decref), failing
 * the test unless the answer is 200 with a JSON body. */
#define itest_api_json(b, method, path, body)                                                      \
    itest_api_json_((b), (method), (path), (body), __FILE__, __LINE__)
json_t *itest_api_json_(const struct h_broker *b, const char *method, const char *path,
                        const char *body, const char *file, int line);

/* /healthz async.FIELD of B (enqueued, queued, in_flight, dest_failures...); -1 when unreadable. */
long long itest_async_stat(const struct h_broker *b, const char *field);

/* Lines of the file PATH (0 when absent). */
size_t itest_line_count(const char *path);

/* Poll (every 20 ms) until PATH has at least WANT lines; fails the test after TIMEOUT_MS. */
#define itest_await_lines(path, want, ms)                                                          \
    itest_await_lines_((path), (want), (ms), __FILE__, __LINE__)
void itest_await_lines_(const char *path, size_t want, int timeout_ms, const char *file, int line);

/* Poll (every 20 ms) until PATH exists; fails the test after TIMEOUT_MS. */
#define itest_await_path(path, ms) itest_await_path_((path), (ms), __FILE__, __LINE__)
void itest_await_path_(const char *path, int timeout_ms, const char *file, int line);

/*
 * Poll DIR (every 20 ms) until a file not starting with a dot (no temp file) whose content
 * contains NEEDLE appears; returns its content parsed as JSON (new; json_decref). Fails the test
 * when that file is not JSON, or after TIMEOUT_MS.
 */
#define itest_await_json_file(dir, needle, ms)                                                     \
    itest_await_json_file_((dir), (needle), (ms), __FILE__, __LINE__)
json_t *itest_await_json_file_(const char *dir, const char *needle, int timeout_ms,
                               const char *file, int line);

/*
 * A request run on a thread, for invokes that must be in flight while the test goes on. Start
 * with bg_invoke_start(), collect with bg_invoke_join() (bounded by the HTTP deadline).
 */
struct bg_invoke {
    const struct h_broker *b;
    char *fn;
    char *payload;
    int rc;
    struct h_http_resp resp;
    void *thread; /* pthread_t, kept opaque here */
};

/* Start invoking FN with PAYLOAD on a thread. Returns new (free with bg_invoke_join()). */
struct bg_invoke *bg_invoke_start(const struct h_broker *b, const char *fn, const char *payload);

/* Wait for BG's response; moves it into RESP (free with h_http_resp_free), frees BG, returns the
 * request's return code (0 on a response). */
int bg_invoke_join(struct bg_invoke *bg, struct h_http_resp *resp);

/*
 * Run Debian's AWS CLI, `/usr/bin/aws lambda ARGS... --endpoint-url URL --output json`, against B
 * with access key id KEY (the bearer token when auth is on), in B's temp dir with HOME there,
 * retries and pager off, no profile or credentials file of the machine. R is filled; free with
 * h_run_free().
 */
void itest_aws(const struct h_broker *b, const char *key, const char *const args[],
               struct h_run *r);

/* Whether Debian's AWS CLI (/usr/bin/aws) is there; when not, says so (the test skips). */
bool itest_have_aws(void);

#endif
