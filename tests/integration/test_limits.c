/*
 * tests/integration/test_limits.c - limits on one broker: provisioned concurrency (started at
 * boot, no cold start on the first invoke), reserved concurrency and the broker-wide
 * max_concurrency (429 TooManyRequestsException with the right Reason while invocations are
 * held in flight by the gate fixture), and the 6 MB request and response payload limits.
 *
 * Concurrency: max_concurrency 5, two functions reserve 1 each, so the unreserved pool is 3.
 * Held invocations use tests/integration/handlers/gate: each writes a `started` file when it
 * runs and returns once the test creates its `release` file, so nothing depends on timing.
 */
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* clang-format off */
static const char config[] = ITEST_BROKER_YAML
    "  max_concurrency: 5\n"
    "functions:\n"
    "  prov-py:\n"
    "    runtime: python3\n"
    "    handler: app.pid\n"
    "    code: @HANDLERS@/python\n"
    "    reserved_concurrency: 1\n"
    "    provisioned_concurrency: 1\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "  gate-r1:\n"
    "    runtime: python3\n"
    "    handler: app.wait\n"
    "    code: @FIXTURES@/gate\n"
    "    timeout_s: 60\n"
    "    reserved_concurrency: 1\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "  gate:\n"
    "    runtime: python3\n"
    "    handler: app.wait\n"
    "    code: @FIXTURES@/gate\n"
    "    timeout_s: 60\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "  echo-py:\n"
    "    runtime: python3\n"
    "    handler: app.echo\n"
    "    code: @HANDLERS@/python\n"
    "    memory_mb: 512\n"
    "    timeout_s: 30\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "  big-py:\n"
    "    runtime: python3\n"
    "    handler: app.big\n"
    "    code: @HANDLERS@/python\n"
    "    memory_mb: 512\n"
    "    timeout_s: 30\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n";
/* clang-format on */

#define SYNC_LIMIT 6291456u     /* 6 MiB: the largest request payload */
#define RESPONSE_LIMIT 6291556u /* 6 MiB + 100 B: the largest function response */

static bool one_cold_start(const struct h_health *h, void *arg)
{
    return h->cold_starts >= 1 && h->environments >= 1;
}

/*
 * Provisioned concurrency 1: the environment is initialised at boot (a cold start counted
 * before any invoke), so the first invoke is warm: no Init Duration in its REPORT.
 * Runs first: no other function has been invoked yet.
 */
static void test_provisioned(void **state)
{
    struct itest *t = *state;
    const char *hdrs[] = {"X-Amz-Log-Type: Tail", NULL};
    struct h_health h0, h1;
    struct h_http_resp r;
    char *tail;
    json_t *j;
    long long pid1, pid2;

    await_health(t, one_cold_start, NULL, 15000);
    get_health(t, &h0);
    assert_int_equal(h0.cold_starts, 1);
    assert_int_equal(h0.invocations, 0);

    itest_invoke(t, "prov-py", "{}", hdrs, &r);
    expect_status(&r, 200);
    tail = resp_log_tail(&r);
    expect_contains(tail, "REPORT RequestId: ");
    expect_not_contains(tail, "Init Duration");
    free(tail);
    j = resp_json(&r);
    pid1 = json_pid(j);
    json_decref(j);
    h_http_resp_free(&r);
    get_health(t, &h1);
    assert_int_equal(h1.cold_starts, h0.cold_starts);
    assert_int_equal(h1.warm_starts, h0.warm_starts + 1);

    itest_invoke(t, "prov-py", "{}", NULL, &r);
    expect_status(&r, 200);
    j = resp_json(&r);
    pid2 = json_pid(j);
    json_decref(j);
    h_http_resp_free(&r);
    assert_true(pid1 > 0);
    assert_int_equal(pid1, pid2);
    itest_end(t);
}

/* Poll until PATH exists (an invocation started), failing after TIMEOUT_MS. */
static void await_file(const char *path, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;

    while (access(path, F_OK) != 0) {
        if (h_now_ms() >= deadline)
            fail_msg("%s did not appear within %d ms", path, timeout_ms);
        h_sleep_ms(10);
    }
}

/* The gate payload for invocation N of a test: its started and release files. */
static char *gate_payload(struct itest *t, const char *tag, int n, char **started, char **release)
{
    *started = h_strfmt("%s/%s-%d.started", t->b.dir, tag, n);
    *release = h_strfmt("%s/%s.release", t->b.dir, tag);
    /* A failed earlier test's teardown may have released this tag: start held again. */
    unlink(*release);
    return h_strfmt("{\"started\":\"%s\",\"release\":\"%s\",\"max_s\":30}", *started, *release);
}

/* Fail unless R is a 429 TooManyRequestsException with Reason REASON. */
static void expect_throttle(const struct h_http_resp *r, const char *reason)
{
    json_t *j = expect_api_error(r, 429, "TooManyRequestsException");

    if (h_json_str(j, "Reason") == NULL || strcmp(h_json_str(j, "Reason"), reason) != 0)
        fail_msg("expected Reason %s in %s", reason, r->body);
    json_decref(j);
}

/* Fail unless R is the gate's answer after a release. */
static void expect_released_resp(const struct h_http_resp *r)
{
    json_t *j;

    expect_status(r, 200);
    expect_header(r, "X-Amz-Function-Error", NULL);
    j = resp_json(r);
    if (!json_is_true(json_object_get(j, "released")))
        fail_msg("the gate was not released: %s", r->body);
    json_decref(j);
}

/* Fail unless BG's request completed with the gate's released answer. */
static void expect_released(struct bg_invoke *bg)
{
    struct h_http_resp r;

    if (bg_invoke_join(bg, &r) != 0)
        fail_msg("a held invocation got no response");
    expect_released_resp(&r);
    h_http_resp_free(&r);
}

/*
 * reserved_concurrency 1 with one invocation held: a second one is throttled at once with
 * ReservedFunctionConcurrentInvocationLimitExceeded and never runs; after the release the
 * function can be invoked again.
 */
static void test_reserved_concurrency(void **state)
{
    struct itest *t = *state;
    char *started, *release, *started2, *release2;
    char *p1 = gate_payload(t, "r1", 1, &started, &release);
    char *p2 = gate_payload(t, "r1", 2, &started2, &release2);
    struct h_health h0, h1;
    struct bg_invoke *bg;
    struct h_http_resp r;

    bg = bg_invoke_start(&t->b, "gate-r1", p1);
    await_file(started, 20000);
    get_health(t, &h0);
    assert_int_equal(h0.in_flight, 1);

    itest_invoke(t, "gate-r1", p2, NULL, &r);
    expect_throttle(&r, "ReservedFunctionConcurrentInvocationLimitExceeded");
    h_http_resp_free(&r);
    get_health(t, &h1);
    assert_int_equal(h1.throttles, h0.throttles + 1);
    assert_int_equal(h1.in_flight, 1);

    /* Reserved capacity is the function's own: others still run meanwhile. */
    itest_invoke(t, "echo-py", "{\"during\":\"r1\"}", NULL, &r);
    expect_status(&r, 200);
    h_http_resp_free(&r);

    assert_int_equal(h_write_file(release, "", 0), 0);
    expect_released(bg);
    if (access(started2, F_OK) == 0)
        fail_msg("the throttled invocation ran anyway");

    /* The slot is free again. */
    itest_invoke(t, "gate-r1", p2, NULL, &r);
    expect_released_resp(&r);
    h_http_resp_free(&r);
    free(p1);
    free(p2);
    free(started);
    free(release);
    free(started2);
    free(release2);
    itest_end(t);
}

/*
 * The broker-wide limit: the unreserved pool (5 - 2 reserved = 3) full of held invocations;
 * one more unreserved invocation gets ConcurrentInvocationLimitExceeded, while a function with
 * reserved concurrency still runs.
 */
static void test_broker_concurrency(void **state)
{
    struct itest *t = *state;
    struct bg_invoke *bg[3];
    char *started[3], *release = NULL, *payload[3];
    struct h_http_resp r;

    for (int i = 0; i < 3; i++) {
        free(release);
        payload[i] = gate_payload(t, "pool", i, &started[i], &release);
        bg[i] = bg_invoke_start(&t->b, "gate", payload[i]);
    }
    for (int i = 0; i < 3; i++)
        await_file(started[i], 20000);

    itest_invoke(t, "echo-py", "{}", NULL, &r);
    expect_throttle(&r, "ConcurrentInvocationLimitExceeded");
    h_http_resp_free(&r);

    itest_invoke(t, "prov-py", "{}", NULL, &r);
    expect_status(&r, 200);
    h_http_resp_free(&r);

    assert_int_equal(h_write_file(release, "", 0), 0);
    for (int i = 0; i < 3; i++) {
        expect_released(bg[i]);
        free(payload[i]);
        free(started[i]);
    }
    free(release);

    itest_invoke(t, "echo-py", "{}", NULL, &r);
    expect_status(&r, 200);
    h_http_resp_free(&r);
    itest_end(t);
}

/* A request payload of exactly 6 MiB is accepted (and echoed back); one byte more is a 413. */
static void test_request_size_limit(void **state)
{
    struct itest *t = *state;
    char *payload = h_json_string_of_len(SYNC_LIMIT + 1);
    struct h_health h0, h1;
    struct h_http_resp r;
    json_t *j;

    get_health(t, &h0);
    itest_invoke(t, "echo-py", payload, NULL, &r);
    j = expect_api_error(&r, 413, "RequestEntityTooLargeException");
    json_decref(j);
    h_http_resp_free(&r);
    get_health(t, &h1);
    assert_int_equal(h1.invocations, h0.invocations);

    payload[SYNC_LIMIT - 1] = '"';
    payload[SYNC_LIMIT] = '\0';
    itest_invoke(t, "echo-py", payload, NULL, &r);
    expect_status(&r, 200);
    expect_header(&r, "X-Amz-Function-Error", NULL);
    assert_int_equal(r.body_len, SYNC_LIMIT);
    assert_memory_equal(r.body, payload, SYNC_LIMIT);
    h_http_resp_free(&r);
    free(payload);
    itest_end(t);
}

/*
 * A response over 6 MiB + 100 B is Function.ResponseSizeTooLarge (and the environment stays
 * usable); one just under the request limit passes whole.
 */
static void test_response_size_limit(void **state)
{
    struct itest *t = *state;
    struct h_http_resp r;
    char *payload;
    json_t *j;

    payload = h_strfmt("{\"bytes\":%u}", RESPONSE_LIMIT + 10);
    itest_invoke(t, "big-py", payload, NULL, &r);
    j = expect_function_error(&r, "Function.ResponseSizeTooLarge");
    expect_contains(h_json_str(j, "errorMessage"), "6291556 bytes");
    json_decref(j);
    h_http_resp_free(&r);
    free(payload);

    payload = h_strfmt("{\"bytes\":%u}", SYNC_LIMIT - 64);
    itest_invoke(t, "big-py", payload, NULL, &r);
    expect_status(&r, 200);
    expect_header(&r, "X-Amz-Function-Error", NULL);
    if (r.body_len < SYNC_LIMIT - 64 || r.body_len > RESPONSE_LIMIT)
        fail_msg("a response of %u bytes came back with %zu bytes", SYNC_LIMIT - 64, r.body_len);
    h_http_resp_free(&r);
    free(payload);
    itest_end(t);
}

static int group_setup(void **state)
{
    return itest_group_start(state, "limits", config, NULL);
}

/* After a failed test, release whatever it still holds so the next tests start clean. */
static int teardown(void **state)
{
    struct itest *t = *state;
    const char *tags[] = {"r1", "pool"};

    for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
        char *path = h_strfmt("%s/%s.release", t->b.dir, tags[i]);

        h_write_file(path, "", 0);
        free(path);
    }
    return itest_teardown(state);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, itest_setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_provisioned),        T(test_reserved_concurrency), T(test_broker_concurrency),
        T(test_request_size_limit), T(test_response_size_limit),
    };

    itest_filter_from_env();
    return itest_run_group("limits", tests, group_setup);
}
