/*
 * tests/integration/test_awscli.c - a broker with `auth_token: secret`: requests without the
 * bearer token are refused (401) and never reach a function while /healthz stays open, and the
 * Debian AWS CLI (/usr/bin/aws) drives the broker with --endpoint-url, the token as its access
 * key id: invoke (payload to the outfile, StatusCode, FunctionError, LogResult), list-functions,
 * get-function, an unknown function, a wrong key; and `switchyard invoke` with the token.
 */
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define AWS "/usr/bin/aws"

/* clang-format off */
static const char config[] = ITEST_BROKER_YAML
    "  auth_token: secret\n"
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
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n";
/* clang-format on */

/* Without the token: 401 everywhere but /healthz, and no function runs. */
static void test_auth_required(void **state)
{
    struct itest *t = *state;
    const char *wrong[] = {"Authorization: Bearer not-the-secret", NULL};
    const char *basic[] = {"Authorization: Basic c2VjcmV0", NULL};
    struct h_health h0, h1;
    struct h_http_resp r;

    get_health(t, &h0);
    t->b.token = NULL;
    assert_int_equal(h_broker_invoke(&t->b, "echo-py", "{}", (size_t)-1, NULL, &r), 0);
    expect_status(&r, 401);
    h_http_resp_free(&r);
    assert_int_equal(h_broker_invoke(&t->b, "echo-py", "{}", (size_t)-1, wrong, &r), 0);
    expect_status(&r, 401);
    h_http_resp_free(&r);
    assert_int_equal(h_broker_invoke(&t->b, "echo-py", "{}", (size_t)-1, basic, &r), 0);
    expect_status(&r, 401);
    h_http_resp_free(&r);
    assert_int_equal(
        h_broker_request(&t->b, "GET", "/2015-03-31/functions/", NULL, NULL, 0, 10000, &r), 0);
    expect_status(&r, 401);
    h_http_resp_free(&r);
    assert_int_equal(h_broker_request(&t->b, "GET", "/metrics", NULL, NULL, 0, 10000, &r), 0);
    expect_status(&r, 401);
    h_http_resp_free(&r);

    /* /healthz is exempt, and counted nothing. */
    get_health(t, &h1);
    assert_int_equal(h1.invocations, h0.invocations);
    assert_int_equal(h1.cold_starts, h0.cold_starts);

    t->b.token = "secret";
    assert_int_equal(h_broker_invoke(&t->b, "echo-py", "{\"auth\":1}", (size_t)-1, NULL, &r), 0);
    expect_status(&r, 200);
    expect_contains(r.body, "auth");
    h_http_resp_free(&r);
    itest_end(t);
}

/* `aws lambda ARGS...` against T's broker with access key id KEY (see itest_aws()). */
static void aws(struct itest *t, const char *key, const char *const args[], struct h_run *r)
{
    itest_aws(&t->b, key, args, r);
}

/* stdout of an aws run as JSON, failing the test when it is not. */
static json_t *run_json(const struct h_run *r)
{
    json_t *j = h_json_parse(r->out, r->out_len);

    if (j == NULL)
        fail_msg("aws printed no JSON:\n%s\n%s", r->out, r->err);
    return j;
}

static void test_aws_invoke(void **state)
{
    struct itest *t = *state;
    char *outfile = h_strfmt("%s/out.json", t->b.dir);
    const char *args[] = {"invoke",
                          "--function-name",
                          "echo-py",
                          "--cli-binary-format",
                          "raw-in-base64-out",
                          "--payload",
                          "{\"a\":1}",
                          "--log-type",
                          "Tail",
                          outfile,
                          NULL};
    struct h_run r;
    json_t *j, *out;
    char *text, *log;

    if (!itest_have_aws()) {
        free(outfile);
        itest_end(t);
        skip();
    }
    aws(t, "secret", args, &r);
    expect_run_code(&r, 0);
    j = run_json(&r);
    assert_int_equal(h_json_int(j, "StatusCode", 0), 200);
    assert_string_equal(h_json_str(j, "ExecutedVersion") ? h_json_str(j, "ExecutedVersion") : "",
                        "$LATEST");
    assert_null(json_object_get(j, "FunctionError"));
    log = h_json_str(j, "LogResult") ? h_b64_decode(h_json_str(j, "LogResult"), NULL) : NULL;
    expect_contains(log, "START RequestId: ");
    free(log);
    json_decref(j);
    h_run_free(&r);

    text = h_read_file(outfile, 0, NULL);
    out = h_json_parse(text, text ? strlen(text) : 0);
    if (out == NULL || h_json_int(out, "a", 0) != 1)
        fail_msg("the outfile does not hold the echo: %s", text ? text : "(missing)");
    json_decref(out);
    free(text);
    free(outfile);
    itest_end(t);
}

static void test_aws_invoke_function_error(void **state)
{
    struct itest *t = *state;
    char *outfile = h_strfmt("%s/err.json", t->b.dir);
    const char *args[] = {"invoke",
                          "--function-name",
                          "error-py",
                          "--cli-binary-format",
                          "raw-in-base64-out",
                          "--payload",
                          "{\"message\":\"aws boom\"}",
                          outfile,
                          NULL};
    struct h_run r;
    json_t *j;
    char *text;

    if (!itest_have_aws()) {
        free(outfile);
        itest_end(t);
        skip();
    }
    aws(t, "secret", args, &r);
    expect_run_code(&r, 0);
    j = run_json(&r);
    assert_int_equal(h_json_int(j, "StatusCode", 0), 200);
    assert_string_equal(h_json_str(j, "FunctionError") ? h_json_str(j, "FunctionError") : "",
                        "Unhandled");
    json_decref(j);
    h_run_free(&r);
    text = h_read_file(outfile, 0, NULL);
    expect_contains(text, "errorType");
    expect_contains(text, "aws boom");
    free(text);
    free(outfile);
    itest_end(t);
}

static void test_aws_list_and_get_functions(void **state)
{
    struct itest *t = *state;
    const char *list[] = {"list-functions", NULL};
    const char *get[] = {"get-function", "--function-name", "echo-py", NULL};
    struct h_run r;
    json_t *j, *fns, *f, *cfg;
    size_t i;
    int seen = 0;

    if (!itest_have_aws()) {
        itest_end(t);
        skip();
    }
    aws(t, "secret", list, &r);
    expect_run_code(&r, 0);
    j = run_json(&r);
    fns = json_object_get(j, "Functions");
    assert_true(json_is_array(fns));
    json_array_foreach(fns, i, f)
    {
        const char *name = h_json_str(f, "FunctionName");

        if (name != NULL && (strcmp(name, "echo-py") == 0 || strcmp(name, "error-py") == 0))
            seen++;
    }
    if (seen != 2 || json_array_size(fns) != 2)
        fail_msg("list-functions did not list exactly echo-py and error-py:\n%s", r.out);
    json_decref(j);
    h_run_free(&r);

    aws(t, "secret", get, &r);
    expect_run_code(&r, 0);
    j = run_json(&r);
    cfg = json_object_get(j, "Configuration");
    assert_string_equal(h_json_str(cfg, "FunctionName") ? h_json_str(cfg, "FunctionName") : "",
                        "echo-py");
    assert_string_equal(h_json_str(cfg, "Handler") ? h_json_str(cfg, "Handler") : "", "app.echo");
    json_decref(j);
    h_run_free(&r);
    itest_end(t);
}

/* Errors reach the CLI with Lambda's codes: unknown function, wrong key. */
static void test_aws_errors(void **state)
{
    struct itest *t = *state;
    char *outfile = h_strfmt("%s/none.json", t->b.dir);
    const char *args[] = {"invoke",
                          "--function-name",
                          "no-such-function",
                          "--cli-binary-format",
                          "raw-in-base64-out",
                          "--payload",
                          "{}",
                          outfile,
                          NULL};
    const char *list[] = {"list-functions", NULL};
    struct h_health h0, h1;
    struct h_run r;

    if (!itest_have_aws()) {
        free(outfile);
        itest_end(t);
        skip();
    }
    aws(t, "secret", args, &r);
    if (r.code <= 0)
        fail_msg("aws invoke of an unknown function exited %d:\n%s\n%s", r.code, r.out, r.err);
    expect_contains(r.err, "ResourceNotFoundException");
    h_run_free(&r);

    get_health(t, &h0);
    aws(t, "wrong-key", list, &r);
    if (r.code <= 0)
        fail_msg("aws with a wrong key exited %d:\n%s\n%s", r.code, r.out, r.err);
    h_run_free(&r);
    args[2] = "echo-py";
    aws(t, "wrong-key", args, &r);
    if (r.code <= 0)
        fail_msg("aws invoke with a wrong key exited %d:\n%s\n%s", r.code, r.out, r.err);
    h_run_free(&r);
    get_health(t, &h1);
    assert_int_equal(h1.invocations, h0.invocations);
    free(outfile);
    itest_end(t);
}

/*
 * `switchyard invoke` against a broker with a token: refused (non-zero exit) without one, and
 * fine with --token, with $SWITCHYARD_TOKEN, or with --config (endpoint from broker.json, token
 * from the config).
 */
static void test_cli_token(void **state)
{
    struct itest *t = *state;
    char *url = h_broker_url(&t->b);
    const char *clean[] = {"SWITCHYARD_ENDPOINT", "SWITCHYARD_TOKEN", NULL};
    const char *with_env[] = {"SWITCHYARD_ENDPOINT", "SWITCHYARD_TOKEN=secret", NULL};
    struct h_run r;

    {
        char *argv[] = {(char *)h_binary(), "invoke",     "echo-py", "--payload",
                        "{\"cli\":1}",      "--endpoint", url,       NULL};

        h_proc_run(argv, clean, t->b.dir, 30000, &r);
        if (r.code <= 0)
            fail_msg("invoke without a token exited %d:\n%s\n%s", r.code, r.out, r.err);
        h_run_free(&r);
        h_proc_run(argv, with_env, t->b.dir, 30000, &r);
        expect_run_code(&r, 0);
        expect_contains(r.out, "cli");
        h_run_free(&r);
    }
    {
        char *argv[] = {(char *)h_binary(), "invoke", "echo-py", "--payload", "{\"cli\":2}",
                        "--endpoint",       url,      "--token", "secret",    NULL};

        h_proc_run(argv, clean, t->b.dir, 30000, &r);
        expect_run_code(&r, 0);
        expect_contains(r.out, "cli");
        h_run_free(&r);
    }
    {
        char *argv[] = {(char *)h_binary(), "invoke",   "echo-py",        "--payload",
                        "{\"cli\":3}",      "--config", t->b.config_path, NULL};

        h_proc_run(argv, clean, t->b.dir, 30000, &r);
        expect_run_code(&r, 0);
        expect_contains(r.out, "cli");
        h_run_free(&r);
    }
    free(url);
    itest_end(t);
}

static int group_setup(void **state)
{
    int rc = itest_group_start(state, "awscli", config, NULL);
    struct itest *t = *state;

    if (t != NULL)
        t->b.token = "secret";
    return rc;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, itest_setup, itest_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_auth_required),
        T(test_aws_invoke),
        T(test_aws_invoke_function_error),
        T(test_aws_list_and_get_functions),
        T(test_aws_errors),
        T(test_cli_token),
    };

    itest_filter_from_env();
    return itest_run_group("awscli", tests, group_setup);
}
