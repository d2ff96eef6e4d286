/*
 * tests/integration/test_invoke.c - synchronous invocation through the control API on one
 * broker: echo on every runtime (python3, node, shell, provided), response headers, the log tail
 * with START/END/REPORT, warm reuse and the cold/warm counters, the environment a function sees
 * (its own and Lambda's variables, nothing of the broker's), ListFunctions/GetFunction,
 * /metrics, and the `switchyard invoke` and `switchyard validate` commands.
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
    "    timeout_s: 10\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "  echo-node:\n"
    "    runtime: node\n"
    "    handler: app.echo\n"
    "    code: @HANDLERS@/node\n"
    "    timeout_s: 10\n"
    "  echo-sh:\n"
    "    runtime: shell\n"
    "    handler: handler.echo\n"
    "    code: @HANDLERS@/shell\n"
    "    timeout_s: 10\n"
    "  echo-provided:\n"
    "    runtime: provided\n"
    "    handler: echo\n"
    "    code: @HANDLERS@/provided\n"
    "    timeout_s: 10\n"
    "  env-py:\n"
    "    runtime: python3\n"
    "    handler: app.env\n"
    "    code: @HANDLERS@/python\n"
    "    memory_mb: 256\n"
    "    timeout_s: 10\n"
    "    environment: {FOO: bar, SY_USER_VAR: 'hello world', PYTHONDONTWRITEBYTECODE: '1'}\n"
    "  env-node:\n"
    "    runtime: node\n"
    "    handler: app.env\n"
    "    code: @HANDLERS@/node\n"
    "    timeout_s: 10\n"
    "    environment: {FOO: bar}\n"
    "  pid-py:\n"
    "    runtime: python3\n"
    "    handler: app.pid\n"
    "    code: @HANDLERS@/python\n"
    "    timeout_s: 10\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "  log-py:\n"
    "    runtime: python3\n"
    "    handler: app.log\n"
    "    code: @HANDLERS@/python\n"
    "    timeout_s: 10\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n";
/* clang-format on */

/* The payload every echo test sends: nesting, unicode and escapes must survive the round trip. */
static const char echo_payload[] =
    "{\"a\":1,\"nested\":{\"b\":[1,2,3],\"t\":true,\"n\":null},\"s\":\"h\\u00e9llo \\\"q\\\"\"}";

static void check_echo(struct itest *t, const char *fn)
{
    struct h_http_resp r;
    json_t *want = json_loads(echo_payload, 0, NULL);
    json_t *got;
    const char *rid;

    itest_invoke(t, fn, echo_payload, NULL, &r);
    expect_status(&r, 200);
    expect_header(&r, "X-Amz-Function-Error", NULL);
    expect_header(&r, "X-Amz-Executed-Version", "$LATEST");
    rid = h_http_header(&r, "x-amzn-RequestId");
    if (rid == NULL || strlen(rid) < 8)
        fail_msg("x-amzn-RequestId missing or too short: %s", rid ? rid : "(absent)");
    got = resp_json(&r);
    if (!json_equal(want, got))
        fail_msg("%s did not echo the event: sent %s, got %s", fn, echo_payload, r.body);
    json_decref(want);
    json_decref(got);
    h_http_resp_free(&r);
}

static void test_echo_python(void **state)
{
    check_echo(*state, "echo-py");
    itest_end(*state);
}

static void test_echo_node(void **state)
{
    check_echo(*state, "echo-node");
    itest_end(*state);
}

static void test_echo_shell(void **state)
{
    check_echo(*state, "echo-sh");
    itest_end(*state);
}

static void test_echo_provided(void **state)
{
    check_echo(*state, "echo-provided");
    itest_end(*state);
}

/* Two invokes in a row: both must succeed, each with its own request id (same connection). */
static void test_keepalive_two_invokes(void **state)
{
    struct itest *t = *state;
    struct h_http_conn *c = h_http_connect(t->b.host, t->b.port, 5000);
    struct h_http_resp r1, r2;
    char *rid1;

    assert_non_null(c);
    assert_int_equal(h_http_conn_request(c, "POST", "/2015-03-31/functions/echo-py/invocations",
                                         NULL, "{\"n\":1}", 7, 30000, &r1),
                     0);
    expect_status(&r1, 200);
    assert_int_equal(h_http_conn_request(c, "POST", "/2015-03-31/functions/echo-py/invocations",
                                         NULL, "{\"n\":2}", 7, 30000, &r2),
                     0);
    expect_status(&r2, 200);
    expect_contains(r1.body, "1");
    expect_contains(r2.body, "2");
    rid1 = strdup(h_http_header(&r1, "x-amzn-RequestId"));
    if (strcmp(rid1, h_http_header(&r2, "x-amzn-RequestId")) == 0)
        fail_msg("two invocations share the request id %s", rid1);
    free(rid1);
    h_http_resp_free(&r1);
    h_http_resp_free(&r2);
    h_http_close(c);
    itest_end(t);
}

/*
 * X-Amz-Log-Type: Tail: the decoded tail holds the invocation's START/END/REPORT lines, with
 * the request id of x-amzn-RequestId, Lambda's tab-separated REPORT fields, Init Duration on
 * the cold start only, and the function's own output; the same lines reach the function log.
 */
static void test_log_tail(void **state)
{
    struct itest *t = *state;
    const char *hdrs[] = {"X-Amz-Log-Type: Tail", NULL};
    struct h_http_resp r;
    char *tail, *want, *flog, *logtext;
    const char *rid;
    int64_t deadline;

    itest_invoke(t, "log-py", "{\"message\":\"hello from the log test\"}", hdrs, &r);
    expect_status(&r, 200);
    rid = h_http_header(&r, "x-amzn-RequestId");
    assert_non_null(rid);
    tail = resp_log_tail(&r);
    want = h_strfmt("START RequestId: %s Version: $LATEST", rid);
    expect_contains(tail, want);
    free(want);
    want = h_strfmt("END RequestId: %s", rid);
    expect_contains(tail, want);
    free(want);
    want = h_strfmt("REPORT RequestId: %s\tDuration: ", rid);
    expect_contains(tail, want);
    free(want);
    expect_contains(tail, " ms\tBilled Duration: ");
    expect_contains(tail, " ms\tMemory Size: 128 MB\tMax Memory Used: ");
    expect_contains(tail, "\tInit Duration: ");
    expect_contains(tail, "hello from the log test");

    /* The function log file has the same invocation. The log-writer thread writes it within
     * ~50 ms of the REPORT (dispatcher/funclog.c), not before the response: poll for it. */
    flog = h_broker_func_log(&t->b, "log-py");
    want = h_strfmt("REPORT RequestId: %s", rid);
    deadline = h_now_ms() + 5000;
    for (;;) {
        logtext = h_read_file(flog, 0, NULL);
        if ((logtext != NULL && strstr(logtext, want) != NULL) || h_now_ms() > deadline)
            break;
        free(logtext);
        h_sleep_ms(10);
    }
    free(want);
    want = h_strfmt("START RequestId: %s", rid);
    expect_contains(logtext, want);
    expect_contains(logtext, "hello from the log test");
    free(want);
    free(logtext);
    free(tail);
    h_http_resp_free(&r);

    /* Warm: no Init Duration. */
    itest_invoke(t, "log-py", "{\"message\":\"second\"}", hdrs, &r);
    expect_status(&r, 200);
    tail = resp_log_tail(&r);
    expect_contains(tail, "REPORT RequestId: ");
    expect_not_contains(tail, "Init Duration");
    free(tail);
    h_http_resp_free(&r);
    free(flog);
    itest_end(t);
}

/* Without X-Amz-Log-Type there is no log header. */
static void test_no_log_tail_by_default(void **state)
{
    struct itest *t = *state;
    struct h_http_resp r;

    itest_invoke(t, "echo-py", "{}", NULL, &r);
    expect_status(&r, 200);
    expect_header(&r, "X-Amz-Log-Result", NULL);
    h_http_resp_free(&r);
    itest_end(t);
}

/*
 * Warm reuse: the same environment (pid) answers twice; the first invoke of the function is a
 * cold start and the second a warm one in /healthz.
 */
static void test_warm_reuse_and_counters(void **state)
{
    struct itest *t = *state;
    struct h_health h0, h1, h2;
    struct h_http_resp r;
    long long pid1, pid2;
    json_t *j;

    get_health(t, &h0);
    itest_invoke(t, "pid-py", "{}", NULL, &r);
    expect_status(&r, 200);
    j = resp_json(&r);
    pid1 = json_pid(j);
    json_decref(j);
    h_http_resp_free(&r);
    get_health(t, &h1);

    itest_invoke(t, "pid-py", "{}", NULL, &r);
    expect_status(&r, 200);
    j = resp_json(&r);
    pid2 = json_pid(j);
    json_decref(j);
    h_http_resp_free(&r);
    get_health(t, &h2);

    if (pid1 <= 0)
        fail_msg("app.pid did not return a pid");
    assert_int_equal(pid1, pid2);
    assert_true(h_pid_alive((pid_t)pid1));
    assert_int_equal(h1.cold_starts, h0.cold_starts + 1);
    assert_int_equal(h1.warm_starts, h0.warm_starts);
    assert_int_equal(h2.cold_starts, h1.cold_starts);
    assert_int_equal(h2.warm_starts, h1.warm_starts + 1);
    assert_int_equal(h2.invocations, h0.invocations + 2);
    assert_int_equal(h2.errors, h0.errors);
    assert_true(h2.environments >= 1);
    itest_end(t);
}

/* ENV[NAME] as a string, or NULL. */
static const char *env_get(const json_t *env, const char *name)
{
    return h_json_str(env, name);
}

/*
 * What a function sees in its environment: the user's variables, Lambda's reserved ones, and
 * nothing of the broker's (the broker runs with SY_TEST_SECRET=leak, see main()).
 */
static void check_env(struct itest *t, const char *fn, const char *handler, const char *memory,
                      bool user_var)
{
    struct h_http_resp r;
    json_t *j, *env;
    const char *api;
    int port = 0;
    char *code_dir;

    itest_invoke(t, fn, "{}", NULL, &r);
    expect_status(&r, 200);
    j = resp_json(&r);
    env = json_object_get(j, "env");
    if (!json_is_object(env))
        fail_msg("%s: no \"env\" object in %s", fn, r.body);

    /* The user's variables. */
    assert_string_equal(env_get(env, "FOO") ? env_get(env, "FOO") : "(absent)", "bar");
    if (user_var)
        assert_string_equal(env_get(env, "SY_USER_VAR") ? env_get(env, "SY_USER_VAR") : "(absent)",
                            "hello world");

        /* Lambda's. */
#define EXPECT_ENV(name, value)                                                                    \
    do {                                                                                           \
        const char *v_ = env_get(env, name);                                                       \
        if (v_ == NULL || strcmp(v_, value) != 0)                                                  \
            fail_msg("%s: %s is %s, expected %s", fn, name, v_ ? v_ : "(absent)", value);          \
    } while (0)
    EXPECT_ENV("AWS_LAMBDA_FUNCTION_NAME", fn);
    EXPECT_ENV("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory);
    EXPECT_ENV("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST");
    EXPECT_ENV("_HANDLER", handler);
    EXPECT_ENV("AWS_REGION", "us-east-1");
#undef EXPECT_ENV
    code_dir =
        h_strfmt("%s/tests/handlers/%s", h_source_dir(), strstr(fn, "node") ? "node" : "python");
    /* Our functions run in their code dir, which is what LAMBDA_TASK_ROOT names here. */
    if (env_get(env, "LAMBDA_TASK_ROOT") == NULL ||
        strcmp(env_get(env, "LAMBDA_TASK_ROOT"), code_dir) != 0)
        fail_msg("%s: LAMBDA_TASK_ROOT is %s, expected %s", fn,
                 env_get(env, "LAMBDA_TASK_ROOT") ? env_get(env, "LAMBDA_TASK_ROOT") : "(absent)",
                 code_dir);
    free(code_dir);
    api = env_get(env, "AWS_LAMBDA_RUNTIME_API");
    if (api == NULL || sscanf(api, "127.0.0.1:%d", &port) != 1 || port <= 0 || port == t->b.port)
        fail_msg("%s: AWS_LAMBDA_RUNTIME_API is %s, expected 127.0.0.1:PORT of its own", fn,
                 api ? api : "(absent)");

    /* Nothing of the broker's own environment. */
    if (env_get(env, "SY_TEST_SECRET") != NULL)
        fail_msg("%s: the broker's SY_TEST_SECRET leaked into the function", fn);
    if (env_get(env, "SY_BINARY") != NULL || env_get(env, "SY_SOURCE_DIR") != NULL)
        fail_msg("%s: the broker's SY_BINARY/SY_SOURCE_DIR leaked into the function", fn);
    json_decref(j);
    h_http_resp_free(&r);
}

static void test_environment_python(void **state)
{
    check_env(*state, "env-py", "app.env", "256", true);
    itest_end(*state);
}

static void test_environment_node(void **state)
{
    check_env(*state, "env-node", "app.env", "128", false);
    itest_end(*state);
}

/* ListFunctions and GetFunction as the AWS SDKs read them. */
static void test_list_and_get_functions(void **state)
{
    struct itest *t = *state;
    struct h_http_resp r;
    json_t *j, *fns, *f, *cfg;
    size_t i;
    bool seen = false;

    assert_int_equal(
        h_broker_request(&t->b, "GET", "/2015-03-31/functions/", NULL, NULL, 0, 10000, &r), 0);
    expect_status(&r, 200);
    j = resp_json(&r);
    fns = json_object_get(j, "Functions");
    if (!json_is_array(fns) || json_array_size(fns) != 8)
        fail_msg("expected 8 Functions, got %s", r.body);
    json_array_foreach(fns, i, f)
    {
        if (strcmp(h_json_str(f, "FunctionName") ? h_json_str(f, "FunctionName") : "", "env-py"))
            continue;
        seen = true;
        assert_string_equal(h_json_str(f, "Handler"), "app.env");
        assert_int_equal(h_json_int(f, "MemorySize", 0), 256);
        assert_int_equal(h_json_int(f, "Timeout", 0), 10);
        assert_non_null(h_json_str(f, "Runtime"));
        assert_non_null(h_json_str(f, "FunctionArn"));
        expect_contains(h_json_str(f, "FunctionArn"), ":function:env-py");
    }
    assert_true(seen);
    json_decref(j);
    h_http_resp_free(&r);

    assert_int_equal(
        h_broker_request(&t->b, "GET", "/2015-03-31/functions/echo-node", NULL, NULL, 0, 10000, &r),
        0);
    expect_status(&r, 200);
    j = resp_json(&r);
    cfg = json_object_get(j, "Configuration");
    assert_non_null(cfg);
    assert_string_equal(h_json_str(cfg, "FunctionName"), "echo-node");
    assert_string_equal(h_json_str(cfg, "Handler"), "app.echo");
    json_decref(j);
    h_http_resp_free(&r);

    assert_int_equal(
        h_broker_request(&t->b, "GET", "/2015-03-31/functions/nope", NULL, NULL, 0, 10000, &r), 0);
    json_decref(expect_api_error(&r, 404, "ResourceNotFoundException"));
    h_http_resp_free(&r);
    itest_end(t);
}

/* /metrics is Prometheus text; /healthz carries every counter of the contract. */
static void test_metrics_and_healthz(void **state)
{
    struct itest *t = *state;
    struct h_http_resp r;
    struct h_health h;

    assert_int_equal(h_broker_request(&t->b, "GET", "/metrics", NULL, NULL, 0, 10000, &r), 0);
    expect_status(&r, 200);
    expect_contains(r.body, "# TYPE ");
    expect_contains(r.body, "# HELP ");
    h_http_resp_free(&r);

    get_health(t, &h);
    assert_true(h.in_flight >= 0 && h.environments >= 0 && h.invocations >= 0);
    assert_true(h.errors >= 0 && h.throttles >= 0 && h.cold_starts >= 0 && h.warm_starts >= 0);
    assert_true(h.timeouts >= 0 && h.crashes >= 0);
    itest_end(t);
}

/* `switchyard invoke` prints the response and exits 0; --payload @FILE and --log-tail work. */
static void test_cli_invoke(void **state)
{
    struct itest *t = *state;
    char *url = h_broker_url(&t->b);
    char *file = h_strfmt("%s/payload.json", t->b.dir);
    char *at = h_strfmt("@%s", file);
    struct h_run run;

    {
        char *argv[] = {(char *)h_binary(), "invoke",     "echo-py", "--payload",
                        "{\"cli\":42}",     "--endpoint", url,       NULL};

        h_proc_run(argv, cli_env, t->b.dir, 30000, &run);
        expect_run_code(&run, 0);
        expect_contains(run.out, "\"cli\"");
        expect_contains(run.out, "42");
        h_run_free(&run);
    }
    assert_int_equal(h_write_file(file, "{\"from_file\": \"yes\"}", 20), 0);
    {
        char *argv[] = {(char *)h_binary(), "invoke",     "echo-py", "--payload", at,
                        "--log-tail",       "--endpoint", url,       NULL};
        char *both;

        h_proc_run(argv, cli_env, t->b.dir, 30000, &run);
        expect_run_code(&run, 0);
        expect_contains(run.out, "from_file");
        both = h_strfmt("%s%s", run.out, run.err);
        expect_contains(both, "START RequestId: ");
        expect_contains(both, "REPORT RequestId: ");
        free(both);
        h_run_free(&run);
    }
    {
        char *argv[] = {(char *)h_binary(),
                        "invoke",
                        "no-such-function",
                        "--payload",
                        "{}",
                        "--endpoint",
                        url,
                        NULL};

        h_proc_run(argv, cli_env, t->b.dir, 30000, &run);
        if (run.code == 0 || run.code < 0)
            fail_msg("invoking an unknown function exited %d:\n%s\n%s", run.code, run.out, run.err);
        expect_contains(run.err, "ResourceNotFound");
        h_run_free(&run);
    }
    free(at);
    free(file);
    free(url);
    itest_end(t);
}

/* `switchyard validate` accepts the running config and rejects a bad one with FILE:LINE:COL. */
static void test_cli_validate(void **state)
{
    struct itest *t = *state;
    char *bad = h_strfmt("%s/bad.yaml", t->b.dir);
    struct h_run run;
    const char *bad_yaml = "broker:\n  listen: 127.0.0.1:0\nfunctions:\n  f:\n"
                           "    runtime: cobol\n    handler: a.b\n    code: /tmp\n";

    {
        char *argv[] = {(char *)h_binary(), "validate", t->b.config_path, NULL};

        h_proc_run(argv, cli_env, t->b.dir, 30000, &run);
        expect_run_code(&run, 0);
        h_run_free(&run);
    }
    assert_int_equal(h_write_file(bad, bad_yaml, strlen(bad_yaml)), 0);
    {
        char *argv[] = {(char *)h_binary(), "validate", bad, NULL};
        char *want = h_strfmt("%s:5:", bad);

        h_proc_run(argv, cli_env, t->b.dir, 30000, &run);
        if (run.code <= 0)
            fail_msg("validate of a bad config exited %d:\n%s\n%s", run.code, run.out, run.err);
        expect_contains(run.err, want);
        expect_contains(run.err, "runtime");
        free(want);
        h_run_free(&run);
    }
    free(bad);
    itest_end(t);
}

static int group_setup(void **state)
{
    static const char *const env[] = {"SY_TEST_SECRET=leak", NULL};

    return itest_group_start(state, "invoke", config, env);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, itest_setup, itest_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_echo_python),
        T(test_echo_node),
        T(test_echo_shell),
        T(test_echo_provided),
        T(test_keepalive_two_invokes),
        T(test_log_tail),
        T(test_no_log_tail_by_default),
        T(test_warm_reuse_and_counters),
        T(test_environment_python),
        T(test_environment_node),
        T(test_list_and_get_functions),
        T(test_metrics_and_healthz),
        T(test_cli_invoke),
        T(test_cli_validate),
    };

    itest_filter_from_env();
    return itest_run_group("invoke", tests, group_setup);
}
