/*
 * tests/integration/test_errors.c - every way an invocation can fail, on one broker: errors a
 * handler raises (Python, Node), the invocation timeout (Sandbox.Timedout, a fresh environment
 * afterwards), a runtime that exits mid-invoke (Runtime.ExitError), init failures (import error,
 * syntax error) reported to the caller as the function error, and the API's own errors (non-JSON
 * body, unknown function, invocation types DryRun and Event, a bad invocation type).
 */
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The CLI must use what the test passes, not a SWITCHYARD_* variable of the caller. */
static const char *const cli_env[] = {"SWITCHYARD_ENDPOINT", "SWITCHYARD_TOKEN", NULL};

/* clang-format off */
static const char config[] = ITEST_BROKER_YAML
    "  max_concurrency: 20\n"
    "functions:\n"
    "  echo-py:\n"
    "    runtime: python3\n"
    "    handler: app.echo\n"
    "    code: @HANDLERS@/python\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "  error-py:\n"
    "    runtime: python3\n"
    "    handler: app.raise_error\n"
    "    code: @HANDLERS@/python\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "  error-node:\n"
    "    runtime: node\n"
    "    handler: app.raise_error\n"
    "    code: @HANDLERS@/node\n"
    "  sleep-py:\n"
    "    runtime: python3\n"
    "    handler: app.sleep\n"
    "    code: @HANDLERS@/python\n"
    "    timeout_s: 1\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "  crash-py:\n"
    "    runtime: python3\n"
    "    handler: app.crash\n"
    "    code: @HANDLERS@/python\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "  crash-node:\n"
    "    runtime: node\n"
    "    handler: app.crash\n"
    "    code: @HANDLERS@/node\n"
    "  initfail-py:\n"
    "    runtime: python3\n"
    "    handler: app.handler\n"
    "    code: @HANDLERS@/python_initfail\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "  syntax-py:\n"
    "    runtime: python3\n"
    "    handler: app.handler\n"
    "    code: @HANDLERS@/python_syntax\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "  initfail-node:\n"
    "    runtime: node\n"
    "    handler: app.handler\n"
    "    code: @HANDLERS@/node_initfail\n"
    "  nohandler-py:\n"
    "    runtime: python3\n"
    "    handler: app.no_such_handler\n"
    "    code: @HANDLERS@/python\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n";
/* clang-format on */

/* A raised Python exception: its class, message and stack trace, X-Amz-Function-Error. */
static void test_raised_error_python(void **state)
{
    struct itest *t = *state;
    struct h_health h0, h1;
    struct h_http_resp r;
    json_t *j, *st;

    get_health(t, &h0);
    itest_invoke(t, "error-py", "{\"message\":\"boom from python\"}", NULL, &r);
    j = expect_function_error(&r, NULL);
    expect_contains(h_json_str(j, "errorMessage"), "boom");
    st = json_object_get(j, "stackTrace");
    if (!json_is_array(st) || json_array_size(st) == 0)
        fail_msg("expected a non-empty stackTrace array: %s", r.body);
    expect_header(&r, "X-Amz-Executed-Version", "$LATEST");
    json_decref(j);
    h_http_resp_free(&r);
    get_health(t, &h1);
    assert_int_equal(h1.errors, h0.errors + 1);

    /* An error leaves the environment usable: the next invoke is warm. */
    itest_invoke(t, "error-py", "{\"message\":\"again\"}", NULL, &r);
    json_decref(expect_function_error(&r, NULL));
    h_http_resp_free(&r);
    get_health(t, &h0);
    assert_int_equal(h0.warm_starts, h1.warm_starts + 1);
    itest_end(t);
}

/* A thrown Node error: Node reports `trace` where Python has `stackTrace`. */
static void test_raised_error_node(void **state)
{
    struct itest *t = *state;
    struct h_http_resp r;
    json_t *j, *st;

    itest_invoke(t, "error-node", "{\"message\":\"boom from node\"}", NULL, &r);
    j = expect_function_error(&r, NULL);
    expect_contains(h_json_str(j, "errorMessage"), "boom");
    st = json_object_get(j, "trace");
    if (st == NULL)
        st = json_object_get(j, "stackTrace");
    if (!json_is_array(st) || json_array_size(st) == 0)
        fail_msg("expected a non-empty trace array: %s", r.body);
    json_decref(j);
    h_http_resp_free(&r);
    itest_end(t);
}

/*
 * A handler that outlives timeout_s (1 s): Sandbox.Timedout with Lambda's message, the
 * environment's process is killed, and the next invoke runs on a fresh environment (a cold
 * start, another pid).
 */
static void test_timeout(void **state)
{
    struct itest *t = *state;
    struct h_health h0, h1, h2;
    struct h_http_resp r;
    const char *hdrs[] = {"X-Amz-Log-Type: Tail", NULL};
    long long pid0, pid2;
    int64_t deadline;
    char *msg, *tail;
    json_t *j;

    itest_invoke(t, "sleep-py", "{\"seconds\":0}", NULL, &r);
    expect_status(&r, 200);
    expect_header(&r, "X-Amz-Function-Error", NULL);
    j = resp_json(&r);
    pid0 = json_pid(j);
    json_decref(j);
    h_http_resp_free(&r);
    get_health(t, &h0);

    itest_invoke(t, "sleep-py", "{\"seconds\":5}", NULL, &r);
    j = expect_function_error(&r, "Sandbox.Timedout");
    msg = h_strfmt("RequestId: %s Error: Task timed out after 1.00 seconds",
                   h_http_header(&r, "x-amzn-RequestId"));
    assert_string_equal(h_json_str(j, "errorMessage"), msg);
    free(msg);
    json_decref(j);
    h_http_resp_free(&r);
    get_health(t, &h1);
    assert_int_equal(h1.timeouts, h0.timeouts + 1);
    assert_int_equal(h1.errors, h0.errors + 1);

    /* The timed-out environment's process goes away (its group was killed). */
    if (pid0 > 0) {
        deadline = h_now_ms() + 5000;
        while (h_pid_alive((pid_t)pid0) && h_now_ms() < deadline)
            h_sleep_ms(10);
        if (h_pid_alive((pid_t)pid0))
            fail_msg("the timed-out environment (pid %lld) is still alive", pid0);
    }

    itest_invoke(t, "sleep-py", "{\"seconds\":0}", hdrs, &r);
    expect_status(&r, 200);
    expect_header(&r, "X-Amz-Function-Error", NULL);
    tail = resp_log_tail(&r);
    expect_contains(tail, "Init Duration");
    free(tail);
    j = resp_json(&r);
    pid2 = json_pid(j);
    json_decref(j);
    h_http_resp_free(&r);
    get_health(t, &h2);
    assert_int_equal(h2.cold_starts, h1.cold_starts + 1);
    if (pid0 > 0 || pid2 > 0)
        assert_true(pid0 != pid2);
    itest_end(t);
}

/* The runtime process exits mid-invoke: Runtime.ExitError, and the function keeps working. */
static void check_crash(struct itest *t, const char *fn)
{
    struct h_health h0, h1;
    struct h_http_resp r;
    json_t *j;

    get_health(t, &h0);
    itest_invoke(t, fn, "{}", NULL, &r);
    j = expect_function_error(&r, "Runtime.ExitError");
    expect_contains(h_json_str(j, "errorMessage"), h_http_header(&r, "x-amzn-RequestId"));
    json_decref(j);
    h_http_resp_free(&r);
    get_health(t, &h1);
    assert_int_equal(h1.crashes, h0.crashes + 1);

    /* The next invoke gets a fresh environment: it crashes again, cleanly, instead of hanging. */
    itest_invoke(t, fn, "{}", NULL, &r);
    json_decref(expect_function_error(&r, "Runtime.ExitError"));
    h_http_resp_free(&r);
    get_health(t, &h0);
    assert_int_equal(h0.crashes, h1.crashes + 1);
    assert_int_equal(h0.cold_starts, h1.cold_starts + 1);

    /* And the broker is fine for everyone else. */
    itest_invoke(t, "echo-py", "{\"after\":\"crash\"}", NULL, &r);
    expect_status(&r, 200);
    expect_contains(r.body, "crash");
    h_http_resp_free(&r);
}

static void test_crash_python(void **state)
{
    check_crash(*state, "crash-py");
    itest_end(*state);
}

static void test_crash_node(void **state)
{
    check_crash(*state, "crash-node");
    itest_end(*state);
}

/* INIT fails: the caller gets the init error as the function error, on every attempt. */
static void check_init_failure(struct itest *t, const char *fn, const char *type)
{
    for (int i = 0; i < 2; i++) {
        struct h_http_resp r;

        itest_invoke(t, fn, "{}", NULL, &r);
        json_decref(expect_function_error(&r, type));
        h_http_resp_free(&r);
    }
}

static void test_init_import_error_python(void **state)
{
    check_init_failure(*state, "initfail-py", "Runtime.ImportModuleError");
    itest_end(*state);
}

static void test_init_syntax_error_python(void **state)
{
    check_init_failure(*state, "syntax-py", "Runtime.UserCodeSyntaxError");
    itest_end(*state);
}

static void test_init_handler_not_found_python(void **state)
{
    check_init_failure(*state, "nohandler-py", "Runtime.HandlerNotFound");
    itest_end(*state);
}

static void test_init_error_node(void **state)
{
    check_init_failure(*state, "initfail-node", NULL);
    itest_end(*state);
}

/* A body that is not JSON: 400 InvalidRequestContentException; the function never runs. */
static void test_non_json_body(void **state)
{
    struct itest *t = *state;
    struct h_health h0, h1;
    struct h_http_resp r;

    get_health(t, &h0);
    itest_invoke(t, "echo-py", "this is {not json", NULL, &r);
    json_decref(expect_api_error(&r, 400, "InvalidRequestContentException"));
    h_http_resp_free(&r);
    get_health(t, &h1);
    assert_int_equal(h1.invocations, h0.invocations);
    itest_end(t);
}

static void test_unknown_function(void **state)
{
    struct itest *t = *state;
    struct h_http_resp r;
    json_t *j;

    itest_invoke(t, "no-such-function", "{}", NULL, &r);
    j = expect_api_error(&r, 404, "ResourceNotFoundException");
    expect_contains(h_json_str(j, "Message") ? h_json_str(j, "Message") : h_json_str(j, "message"),
                    "no-such-function");
    json_decref(j);
    h_http_resp_free(&r);
    itest_end(t);
}

/* DryRun: 204, empty body, nothing runs. */
static void test_dry_run(void **state)
{
    struct itest *t = *state;
    const char *hdrs[] = {"X-Amz-Invocation-Type: DryRun", NULL};
    struct h_health h0, h1;
    struct h_http_resp r;

    get_health(t, &h0);
    itest_invoke(t, "echo-py", "{}", hdrs, &r);
    expect_status(&r, 204);
    assert_int_equal(r.body_len, 0);
    h_http_resp_free(&r);
    get_health(t, &h1);
    assert_int_equal(h1.invocations, h0.invocations);

    /* DryRun of an unknown function is still a 404. */
    itest_invoke(t, "no-such-function", "{}", hdrs, &r);
    json_decref(expect_api_error(&r, 404, "ResourceNotFoundException"));
    h_http_resp_free(&r);
    itest_end(t);
}

static void test_bad_invocation_type(void **state)
{
    struct itest *t = *state;
    const char *hdrs[] = {"X-Amz-Invocation-Type: Sometimes", NULL};
    struct h_http_resp r;

    itest_invoke(t, "echo-py", "{}", hdrs, &r);
    json_decref(expect_api_error(&r, 400, "InvalidParameterValueException"));
    h_http_resp_free(&r);
    itest_end(t);
}

/* The CLI exits non-zero on a function error and still prints the error body. */
static void test_cli_function_error(void **state)
{
    struct itest *t = *state;
    char *url = h_broker_url(&t->b);
    char *argv[] = {(char *)h_binary(),      "invoke",     "error-py", "--payload",
                    "{\"message\":\"cli\"}", "--endpoint", url,        NULL};
    struct h_run run;
    char *both;

    h_proc_run(argv, cli_env, t->b.dir, 30000, &run);
    if (run.code <= 0)
        fail_msg("switchyard invoke of a failing function exited %d:\n%s\n%s", run.code, run.out,
                 run.err);
    both = h_strfmt("%s%s", run.out, run.err);
    expect_contains(both, "errorType");
    free(both);
    h_run_free(&run);
    free(url);
    itest_end(t);
}

static int group_setup(void **state)
{
    return itest_group_start(state, "errors", config, NULL);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, itest_setup, itest_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_raised_error_python),
        T(test_raised_error_node),
        T(test_timeout),
        T(test_crash_python),
        T(test_crash_node),
        T(test_init_import_error_python),
        T(test_init_syntax_error_python),
        T(test_init_handler_not_found_python),
        T(test_init_error_node),
        T(test_non_json_body),
        T(test_unknown_function),
        T(test_dry_run),
        T(test_bad_invocation_type),
        T(test_cli_function_error),
    };

    itest_filter_from_env();
    return itest_run_group("errors", tests, group_setup);
}
