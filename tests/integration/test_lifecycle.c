/*
 * tests/integration/test_lifecycle.c - the broker process itself: broker.json once ready,
 * SIGTERM while an invocation is in flight (the invocation completes with 200, the broker exits
 * 0, and none of its environments - on-demand, provisioned, Python and Node - survive it), and a
 * bad config refused at start with FILE:LINE:COL and a non-zero exit.
 */
#include "itest.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* clang-format off */
static const char config[] = ITEST_BROKER_YAML
    "functions:\n"
    "  gate:\n"
    "    runtime: python3\n"
    "    handler: app.wait\n"
    "    code: @FIXTURES@/gate\n"
    "    timeout_s: 60\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "  pid-py:\n"
    "    runtime: python3\n"
    "    handler: app.pid\n"
    "    code: @HANDLERS@/python\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "  pid-node:\n"
    "    runtime: node\n"
    "    handler: app.pid\n"
    "    code: @HANDLERS@/node\n"
    "  prov-py:\n"
    "    runtime: python3\n"
    "    handler: app.pid\n"
    "    code: @HANDLERS@/python\n"
    "    provisioned_concurrency: 1\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n";
/* clang-format on */

/* <data>/broker.json names the running broker: its pid and endpoint. */
static void test_broker_json(void **state)
{
    struct itest *t = *state;
    char *path = h_strfmt("%s/broker.json", t->b.data_dir);
    char *url = h_broker_url(&t->b);
    char *text = h_read_file(path, 0, NULL);
    json_t *j = h_json_parse(text, text ? strlen(text) : 0);

    if (j == NULL)
        fail_msg("%s is missing or not JSON: %s", path, text ? text : "(missing)");
    assert_int_equal(h_json_int(j, "pid", 0), t->b.proc.pid);
    assert_string_equal(h_json_str(j, "endpoint") ? h_json_str(j, "endpoint") : "", url);
    json_decref(j);
    free(text);
    free(url);
    free(path);
    itest_end(t);
}

/* The pid FN's environment answers with. */
static long long pid_of(struct itest *t, const char *fn)
{
    struct h_http_resp r;
    long long pid;
    json_t *j;

    itest_invoke(t, fn, "{}", NULL, &r);
    expect_status(&r, 200);
    j = resp_json(&r);
    pid = json_pid(j);
    json_decref(j);
    h_http_resp_free(&r);
    if (pid <= 0)
        fail_msg("%s returned no pid", fn);
    return pid;
}

/* The broker has taken the SIGTERM in: /healthz says draining, or the listener is closed. */
static bool draining(struct itest *t)
{
    struct h_http_resp r;
    bool yes;

    if (h_broker_request(&t->b, "GET", "/healthz", NULL, NULL, 0, 2000, &r) != 0)
        return true;
    yes = r.status == 503 || strstr(r.body, "draining") != NULL;
    h_http_resp_free(&r);
    return yes;
}

/*
 * SIGTERM with an invocation in flight: the broker drains (the invocation finishes with 200),
 * then exits 0, and every environment it started is gone: none left running, none re-parented
 * to us.
 */
static void test_sigterm_drains(void **state)
{
    struct itest *t = *state;
    char *started = h_strfmt("%s/drain.started", t->b.dir);
    char *release = h_strfmt("%s/drain.release", t->b.dir);
    char *payload =
        h_strfmt("{\"started\":\"%s\",\"release\":\"%s\",\"max_s\":30}", started, release);
    long long pids[4];
    struct bg_invoke *bg;
    struct h_http_resp r;
    int64_t deadline;
    char *text;
    json_t *j;
    int code;

    pids[0] = pid_of(t, "pid-py");
    pids[1] = pid_of(t, "pid-node");
    pids[2] = pid_of(t, "prov-py");

    bg = bg_invoke_start(&t->b, "gate", payload);
    deadline = h_now_ms() + 20000;
    while (access(started, F_OK) != 0) {
        if (h_now_ms() >= deadline)
            fail_msg("the gate invocation did not start");
        h_sleep_ms(10);
    }
    text = h_read_file(started, 0, NULL);
    pids[3] = text ? atoll(text) : -1;
    free(text);
    assert_true(pids[3] > 0);

    assert_int_equal(kill(t->b.proc.pid, SIGTERM), 0);
    deadline = h_now_ms() + 5000;
    while (!draining(t)) {
        if (h_now_ms() >= deadline)
            fail_msg("the broker did not start draining within 5 s of SIGTERM");
        h_sleep_ms(10);
    }
    if (!h_broker_running(&t->b))
        fail_msg("the broker exited (code %d) with an invocation in flight",
                 h_proc_exit_code(&t->b.proc));

    assert_int_equal(h_write_file(release, "", 0), 0);
    if (bg_invoke_join(bg, &r) != 0)
        fail_msg("the in-flight invocation got no response after SIGTERM");
    expect_status(&r, 200);
    j = resp_json(&r);
    if (!json_is_true(json_object_get(j, "released")))
        fail_msg("unexpected answer from the drained invocation: %s", r.body);
    json_decref(j);
    h_http_resp_free(&r);

    if (h_proc_wait(&t->b.proc, 15000) != 0)
        fail_msg("the broker did not exit within 15 s of SIGTERM");
    code = h_proc_exit_code(&t->b.proc);
    if (code != 0)
        fail_msg("the broker exited %d after SIGTERM, expected 0", code);

    /* Its environments went with it (SIGKILLed ones may take a moment to vanish). */
    deadline = h_now_ms() + 2000;
    for (int i = 0; i < 4; i++) {
        while (h_pid_alive((pid_t)pids[i]) && h_now_ms() < deadline)
            h_sleep_ms(10);
        if (h_pid_alive((pid_t)pids[i]))
            fail_msg("environment pid %lld is still alive after the broker exited", pids[i]);
    }
    if (h_proc_kill_strays(NULL, 0, 1000) != 0)
        fail_msg("the broker left child processes behind (re-parented to the test)");
    if (h_broker_sanitizer_lines(&t->b, 0) != 0)
        fail_msg("sanitizer report in the broker log");
    free(payload);
    free(started);
    free(release);
    t->ok = true; /* itest_end() needs a running broker; the checks above replace it */
}

/* clang-format off */
static const char bad_config[] = ITEST_BROKER_YAML
    "functions:\n"
    "  f:\n"
    "    runtime: python3\n"
    "    handler: app.echo\n"
    "    code: @HANDLERS@/python\n"
    "    timeout_s: 0\n"
    "    memmory_mb: 128\n";
/* clang-format on */

/* A bad config: `run` exits non-zero at once, naming FILE:LINE:COL; nothing is left running. */
static void test_bad_config_refused(void **state)
{
    struct h_broker b;
    char *argv[4];
    char *log, *want;
    int code;

    assert_int_equal(h_broker_init(&b, "badcfg"), 0);
    assert_int_equal(h_broker_write_config(&b, bad_config), 0);
    argv[0] = (char *)h_binary();
    argv[1] = "run";
    argv[2] = b.config_path;
    argv[3] = NULL;
    assert_int_equal(h_proc_spawn(&b.proc, argv, NULL, b.dir, b.log_path), 0);
    if (h_proc_wait(&b.proc, 15000) != 0) {
        b.failed = true;
        h_broker_dump_logs(&b, 0);
        h_broker_destroy(&b);
        fail_msg("the broker kept running with a bad config");
    }
    code = h_proc_exit_code(&b.proc);
    log = h_read_file(b.log_path, 0, NULL);
    want = h_strfmt("%s:10:", b.config_path);
    if (code == 0 || log == NULL || strstr(log, want) == NULL || strstr(log, "timeout_s") == NULL ||
        strstr(log, "memmory_mb") == NULL) {
        b.failed = true;
        h_broker_dump_logs(&b, 0);
        fail_msg("expected a non-zero exit (got %d) and FILE:LINE:COL errors for timeout_s "
                 "(line 10) and memmory_mb",
                 code);
    }
    assert_int_equal(h_broker_sanitizer_lines(&b, 0), 0);
    free(want);
    free(log);
    assert_int_equal(h_broker_destroy(&b), 0);
    ((struct itest *)*state)->ok = true;
}

static int group_setup(void **state)
{
    return itest_group_start(state, "lifecycle", config, NULL);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, itest_setup, itest_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_broker_json),
        T(test_sigterm_drains),
        T(test_bad_config_refused),
    };

    itest_filter_from_env();
    return itest_run_group("lifecycle", tests, group_setup);
}
