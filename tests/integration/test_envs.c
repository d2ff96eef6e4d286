/*
 * tests/integration/test_envs.c - execution environment edge cases on one broker: idle
 * reaping after max_idle_s (and provisioned environments never reaped), the memory limit
 * (Runtime.OutOfMemory, environment replaced), the init timeout (Sandbox.Timedout), a handler
 * that closes its stdout/stderr, and a custom runtime that sends garbage to the Runtime API
 * (a response for an unknown request id, a second response for the same one).
 */
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* clang-format off */
static const char config[] = ITEST_BROKER_YAML
    "  max_concurrency: 20\n"
    "functions:\n"
    "  idle:\n"
    "    runtime: python3\n"
    "    handler: app.pid\n"
    "    code: @FIXTURES@/envs\n"
    "    max_idle_s: 1\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "  prov-idle:\n"
    "    runtime: python3\n"
    "    handler: app.pid\n"
    "    code: @FIXTURES@/envs\n"
    "    max_idle_s: 1\n"
    "    provisioned_concurrency: 1\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "  hog:\n"
    "    runtime: python3\n"
    "    handler: app.hog\n"
    "    code: @FIXTURES@/envs\n"
    "    memory_mb: 128\n"
    "    timeout_s: 60\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "  pipes:\n"
    "    runtime: python3\n"
    "    handler: app.close_pipes\n"
    "    code: @FIXTURES@/envs\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "  slowinit:\n"
    "    runtime: python3\n"
    "    handler: slowinit.handler\n"
    "    code: @FIXTURES@/envs\n"
    "    init_timeout_s: 1\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "  garbage:\n"
    "    runtime: provided\n"
    "    handler: garbage\n"
    "    code: @FIXTURES@/garbage\n"
    "    timeout_s: 10\n";
/* clang-format on */

/* Live environments of FN from /healthz functions_detail (-1 when unreadable). */
static long long envs_of(struct itest *t, const char *fn)
{
    struct h_http_resp r;
    json_t *j;
    long long n = -1;

    if (h_broker_request(&t->b, "GET", "/healthz", NULL, NULL, 0, 10000, &r) != 0)
        return -1;
    j = h_json_parse(r.body, r.body_len);
    if (j != NULL)
        n = h_json_int(json_object_get(json_object_get(j, "functions_detail"), fn),
                       "environments", -1);
    json_decref(j);
    h_http_resp_free(&r);
    return n;
}

/* An idle on-demand environment is stopped after max_idle_s; a provisioned one never is. */
static void test_idle_reaping(void **state)
{
    struct itest *t = *state;
    struct h_http_resp r;
    int64_t deadline;

    itest_invoke(t, "idle", "{}", NULL, &r);
    expect_status(&r, 200);
    h_http_resp_free(&r);
    assert_int_equal(envs_of(t, "idle"), 1);
    deadline = h_now_ms() + 15000;
    while (envs_of(t, "idle") != 0 && h_now_ms() < deadline)
        h_sleep_ms(50);
    assert_int_equal(envs_of(t, "idle"), 0);
    /* By then the provisioned one has been idle just as long, and is still there. */
    assert_int_equal(envs_of(t, "prov-idle"), 1);

    /* The next invoke starts a new environment and works. */
    itest_invoke(t, "idle", "{}", NULL, &r);
    expect_status(&r, 200);
    h_http_resp_free(&r);
    itest_end(t);
}

/* A handler that goes over memory_mb is stopped: Runtime.OutOfMemory, environment replaced. */
static void test_memory_limit(void **state)
{
    struct itest *t = *state;
    struct h_http_resp r;
    json_t *j;

    itest_invoke(t, "hog", "{\"mb\": 1024}", NULL, &r);
    j = expect_function_error(&r, "Runtime.OutOfMemory");
    json_decref(j);
    h_http_resp_free(&r);
    /* A small allocation in a fresh environment succeeds. */
    itest_invoke(t, "hog", "{\"mb\": 8}", NULL, &r);
    expect_status(&r, 200);
    expect_header(&r, "X-Amz-Function-Error", NULL);
    h_http_resp_free(&r);
    itest_end(t);
}

/* INIT longer than init_timeout_s: Sandbox.Timedout, and the broker stays healthy. */
static void test_init_timeout(void **state)
{
    struct itest *t = *state;
    struct h_http_resp r;
    json_t *j;

    itest_invoke(t, "slowinit", "{}", NULL, &r);
    j = expect_function_error(&r, "Sandbox.Timedout");
    expect_contains(h_json_str(j, "errorMessage"), "Init phase timed out after 1.00 seconds");
    json_decref(j);
    h_http_resp_free(&r);
    itest_end(t);
}

/* Closing stdout and stderr does not break the invocation or the next one. */
static void test_handler_closes_pipes(void **state)
{
    struct itest *t = *state;
    struct h_http_resp r;
    json_t *j;

    for (int i = 0; i < 2; i++) {
        itest_invoke(t, "pipes", "{}", NULL, &r);
        expect_status(&r, 200);
        expect_header(&r, "X-Amz-Function-Error", NULL);
        j = resp_json(&r);
        assert_true(json_is_true(json_object_get(j, "closed")));
        json_decref(j);
        h_http_resp_free(&r);
    }
    itest_end(t);
}

/*
 * Garbage on the Runtime API: a response for an unknown request id gets 400, the invocation
 * still completes with the real response, and a second response for it is refused too.
 */
static void test_runtime_api_garbage(void **state)
{
    struct itest *t = *state;
    struct h_http_resp r;
    json_t *j;
    char *log_path, *log = NULL;
    int64_t deadline;

    itest_invoke(t, "garbage", "{\"x\":1}", NULL, &r);
    expect_status(&r, 200);
    j = resp_json(&r);
    assert_int_equal(h_json_int(j, "wrong_id", -1), 400);
    assert_int_equal(h_json_int(json_object_get(j, "event"), "x", -1), 1);
    json_decref(j);
    h_http_resp_free(&r);

    log_path = h_broker_func_log(&t->b, "garbage");
    deadline = h_now_ms() + 10000;
    for (;;) {
        free(log);
        log = h_read_file(log_path, 0, NULL);
        if ((log != NULL && strstr(log, "double response answered ") != NULL) ||
            h_now_ms() > deadline)
            break;
        h_sleep_ms(20);
    }
    assert_non_null(log);
    /* 400 InvalidRequestID or 403 InvalidStateTransition: refused either way. */
    if (strstr(log, "double response answered 400") == NULL &&
        strstr(log, "double response answered 403") == NULL)
        fail_msg("the second response was not refused:\n%s", log);
    free(log);
    free(log_path);

    /* The environment still serves the next invocation. */
    itest_invoke(t, "garbage", "{\"x\":2}", NULL, &r);
    expect_status(&r, 200);
    h_http_resp_free(&r);
    itest_end(t);
}

static int group_setup(void **state)
{
    return itest_group_start(state, "envs", config, NULL);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, itest_setup, itest_teardown)

/* The same memory limit without a cgroup: the resident-size watchdog must stop the hog. */
static int group_setup_watchdog(void **state)
{
    static const char *const env[] = {"SWITCHYARD_MEMORY_LIMITS=watchdog", NULL};

    return itest_group_start(state, "envs-watchdog", config, env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_idle_reaping),         T(test_memory_limit),        T(test_init_timeout),
        T(test_handler_closes_pipes), T(test_runtime_api_garbage),
    };
    const struct CMUnitTest watchdog_tests[] = {
        T(test_memory_limit),
    };
    int rc;

    itest_filter_from_env();
    rc = itest_run_group("envs", tests, group_setup);
    if (itest_run_group("envs-watchdog", watchdog_tests, group_setup_watchdog) != 0)
        rc = 1;
    return rc;
}
