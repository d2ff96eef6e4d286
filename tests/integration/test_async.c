/*
 * tests/integration/test_async.c - asynchronous invocation end to end on one broker: Event
 * invokes answered 202 after the event is stored, the on_success / on_failure destination
 * records in Lambda's format, the dead_letter message with its attributes, retry count and
 * spacing, a function: destination, reserved concurrency 0, EventAgeExceeded (an old event
 * found at start-up), the local dead-letter store with `switchyard dlq` (list, show, redrive,
 * purge), bad input, and kill -9 of the broker with thousands of queued and in-flight events:
 * every event runs at least once after the restart; a second broker on the same data_dir is
 * refused; the WAL stays bounded while events stream through (background checkpoints).
 *
 * Side effects are files written by tests/integration/handlers/async/app.py; every wait polls
 * for them with a deadline.
 */
#include "itest.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* clang-format off */
static const char config[] = ITEST_BROKER_YAML
    "  max_concurrency: 20\n"
    "  async_max_held: 100\n" /* the kill -9 test's 2000 events mostly wait parked on disk */
    "functions:\n"
    "  record:\n"
    "    runtime: python3\n"
    "    handler: app.record\n"
    "    code: @FIXTURES@/async\n"
    "    timeout_s: 10\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "    async: {maximum_concurrency: 4}\n"
    "  record-ok:\n"
    "    runtime: python3\n"
    "    handler: app.record\n"
    "    code: @FIXTURES@/async\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "    async: {on_success: 'file:@DIR@/ok'}\n"
    "  flaky:\n"
    "    runtime: python3\n"
    "    handler: app.flaky\n"
    "    code: @FIXTURES@/async\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "    async:\n"
    "      maximum_retry_attempts: 2\n"
    "      retry_delays_s: [1, 1]\n"
    "      on_failure: 'file:@DIR@/failed'\n"
    "      dead_letter: 'file:@DIR@/dlq'\n"
    "  flaky-fn:\n"
    "    runtime: python3\n"
    "    handler: app.flaky\n"
    "    code: @FIXTURES@/async\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "    async: {maximum_retry_attempts: 0, on_failure: 'function:sink'}\n"
    "  sink:\n"
    "    runtime: python3\n"
    "    handler: app.sink\n"
    "    code: @FIXTURES@/async\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1', SINK_DIR: '@DIR@/sink'}\n"
    "  zero:\n"
    "    runtime: python3\n"
    "    handler: app.record\n"
    "    code: @FIXTURES@/async\n"
    "    reserved_concurrency: 0\n"
    "    async: {dead_letter: 'file:@DIR@/zero-dlq'}\n"
    "  slow:\n"
    "    runtime: python3\n"
    "    handler: app.slow\n"
    "    code: @FIXTURES@/async\n"
    "    timeout_s: 10\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "    async: {maximum_concurrency: 2}\n"
    "  aged:\n"
    "    runtime: python3\n"
    "    handler: app.record\n"
    "    code: @FIXTURES@/async\n"
    "    async: {maximum_event_age_s: 3600, on_failure: 'file:@DIR@/aged'}\n";
/* clang-format on */

/* The dead letter with id RID in the list for FN, or NULL. Borrowed from LIST. */
static json_t *find_dead(json_t *list, const char *rid)
{
    size_t i;
    json_t *e;

    json_array_foreach(json_object_get(list, "dead_letters"), i, e)
    {
        if (strcmp(h_json_str(e, "id"), rid) == 0)
            return e;
    }
    return NULL;
}

/* Success: 202, the handler ran with the same request id, the on_success record. */
static void test_event_success(void **state)
{
    struct itest *t = *state;
    char *dir = h_strfmt("%s/rec-ok", t->b.dir);
    char *okdir = h_strfmt("%s/ok", t->b.dir);
    char *payload, *rid, *file, *seen;
    json_t *rec, *rc;
    size_t len;

    mkdir(dir, 0755);
    payload = h_strfmt("{\"dir\":\"%s\",\"n\":1}", dir);
    rid = itest_invoke_event(&t->b, "record-ok", payload);
    file = h_strfmt("%s/1", dir);
    itest_await_path(file, 20000);
    seen = h_read_file(file, 0, &len);
    assert_string_equal(seen, rid);

    rec = itest_await_json_file(okdir, rid, 20000);
    assert_string_equal(h_json_str(rec, "version"), "1.0");
    assert_non_null(h_json_str(rec, "timestamp"));
    rc = json_object_get(rec, "requestContext");
    assert_string_equal(h_json_str(rc, "requestId"), rid);
    assert_string_equal(h_json_str(rc, "condition"), "Success");
    assert_int_equal(h_json_int(rc, "approximateInvokeCount", -1), 1);
    expect_contains(h_json_str(rc, "functionArn"), ":function:record-ok:$LATEST");
    assert_int_equal(h_json_int(json_object_get(rec, "requestPayload"), "n", -1), 1);
    assert_int_equal(h_json_int(json_object_get(rec, "responseContext"), "statusCode", -1), 200);
    assert_null(json_object_get(json_object_get(rec, "responseContext"), "functionError"));
    assert_int_equal(h_json_int(json_object_get(rec, "responsePayload"), "n", -1), 1);
    json_decref(rec);
    free(seen);
    free(file);
    free(rid);
    free(payload);
    free(okdir);
    free(dir);
    itest_end(t);
}

/*
 * A function that keeps failing: three attempts (maximum_retry_attempts 2) about a second
 * apart, then the on_failure record, the dead_letter message and a local dead letter; after
 * the cause is fixed, `switchyard dlq redrive` runs it once more and it succeeds.
 */
static void test_retries_dead_letter_redrive(void **state)
{
    struct itest *t = *state;
    char *dir = h_strfmt("%s/flaky", t->b.dir);
    char *attempts = h_strfmt("%s/attempts-a", dir);
    char *faildir = h_strfmt("%s/failed", t->b.dir);
    char *dlqdir = h_strfmt("%s/dlq", t->b.dir);
    char *payload, *rid, *text, *fixed, *url, *path;
    json_t *rec, *rc, *env, *attrs, *list, *dead, *one;
    double times[3];
    size_t len;
    struct h_run run;

    mkdir(dir, 0755);
    payload = h_strfmt("{\"dir\":\"%s\",\"key\":\"a\"}", dir);
    rid = itest_invoke_event(&t->b, "flaky", payload);

    rec = itest_await_json_file(faildir, rid, 30000);
    /* Exactly three attempts, each a retry_delays_s (1 s, +-10%) after the previous one. */
    assert_int_equal(itest_line_count(attempts), 3);
    text = h_read_file(attempts, 0, &len);
    assert_int_equal(sscanf(text, "%lf %*s\n%lf %*s\n%lf", &times[0], &times[1], &times[2]), 3);
    assert_true(times[1] - times[0] >= 0.85);
    assert_true(times[2] - times[1] >= 0.85);
    assert_int_equal(h_str_count(text, rid), 3); /* the request id stays the same */
    free(text);

    rc = json_object_get(rec, "requestContext");
    assert_string_equal(h_json_str(rc, "condition"), "RetriesExhausted");
    assert_int_equal(h_json_int(rc, "approximateInvokeCount", -1), 3);
    assert_string_equal(h_json_str(json_object_get(rec, "responseContext"), "functionError"),
                        "Unhandled");
    assert_string_equal(h_json_str(json_object_get(rec, "responsePayload"), "errorType"),
                        "FlakyError");
    assert_string_equal(h_json_str(json_object_get(rec, "requestPayload"), "key"), "a");
    json_decref(rec);

    /* dead_letter: the original event, with Lambda's attributes. */
    env = itest_await_json_file(dlqdir, rid, 20000);
    assert_string_equal(h_json_str(json_object_get(env, "body"), "key"), "a");
    attrs = json_object_get(env, "attributes");
    assert_string_equal(h_json_str(attrs, "RequestID"), rid);
    assert_int_equal(h_json_int(attrs, "ErrorCode", -1), 200);
    expect_contains(h_json_str(attrs, "ErrorMessage"), "not fixed yet: a");
    json_decref(env);

    /* The local dead letter, through the API. */
    list = itest_api_json(&t->b, "GET", "/switchyard/v1/dlq?function=flaky", NULL);
    dead = find_dead(list, rid);
    assert_non_null(dead);
    assert_string_equal(h_json_str(dead, "condition"), "RetriesExhausted");
    assert_int_equal(h_json_int(dead, "attempts", -1), 3);
    assert_string_equal(h_json_str(dead, "error_type"), "FlakyError");
    json_decref(list);
    path = h_strfmt("/switchyard/v1/dlq/%s", rid);
    one = itest_api_json(&t->b, "GET", path, NULL);
    assert_string_equal(h_json_str(json_object_get(one, "payload"), "key"), "a");
    assert_int_equal(json_array_size(json_object_get(one, "history")), 3);
    json_decref(one);

    /* The CLI shows it too, then redrives it once the cause is fixed. */
    url = h_broker_url(&t->b);
    {
        char *argv[] = {(char *)h_binary(), "dlq", "list", "flaky", "--endpoint", url, NULL};

        h_proc_run(argv, NULL, t->b.dir, 30000, &run);
        expect_run_code(&run, 0);
        expect_contains(run.out, rid);
        expect_contains(run.out, "RetriesExhausted");
        h_run_free(&run);
    }
    fixed = h_strfmt("%s/fixed", dir);
    assert_int_equal(h_write_file(fixed, "", 0), 0);
    {
        char *argv[] = {(char *)h_binary(), "dlq", "redrive", "flaky", "--endpoint", url, NULL};

        h_proc_run(argv, NULL, t->b.dir, 30000, &run);
        expect_run_code(&run, 0);
        expect_contains(run.out, "redrove 1 dead letter(s)");
        h_run_free(&run);
    }
    itest_await_lines(attempts, 4, 20000);
    list = itest_api_json(&t->b, "GET", "/switchyard/v1/dlq?function=flaky", NULL);
    assert_null(find_dead(list, rid));
    json_decref(list);

    free(path);
    free(url);
    free(fixed);
    free(rid);
    free(payload);
    free(dlqdir);
    free(faildir);
    free(attempts);
    free(dir);
    itest_end(t);
}

/* on_failure: function:sink - the record is the event of an async invoke of sink. */
static void test_function_destination(void **state)
{
    struct itest *t = *state;
    char *dir = h_strfmt("%s/flaky-fn", t->b.dir);
    char *sinkdir = h_strfmt("%s/sink", t->b.dir);
    char *payload, *rid;
    json_t *rec, *rc;

    mkdir(dir, 0755);
    payload = h_strfmt("{\"dir\":\"%s\",\"key\":\"fn\"}", dir);
    rid = itest_invoke_event(&t->b, "flaky-fn", payload);
    rec = itest_await_json_file(sinkdir, rid, 30000);
    rc = json_object_get(rec, "requestContext");
    assert_string_equal(h_json_str(rc, "requestId"), rid);
    assert_string_equal(h_json_str(rc, "condition"), "RetriesExhausted");
    assert_int_equal(h_json_int(rc, "approximateInvokeCount", -1), 1);
    json_decref(rec);
    free(rid);
    free(payload);
    free(sinkdir);
    free(dir);
    itest_end(t);
}

/* Reserved concurrency 0: Lambda sends the event straight to failure handling. */
static void test_reserved_zero(void **state)
{
    struct itest *t = *state;
    char *dlqdir = h_strfmt("%s/zero-dlq", t->b.dir);
    char *rid = itest_invoke_event(&t->b, "zero", "{\"dir\":\"/nonexistent\",\"n\":0}");
    json_t *env = itest_await_json_file(dlqdir, rid, 20000);

    assert_int_equal(h_json_int(json_object_get(env, "attributes"), "ErrorCode", -1), 429);
    json_decref(env);
    free(rid);
    free(dlqdir);
    itest_end(t);
}

/* Bad input gets Lambda's errors and nothing is queued. */
static void test_bad_input(void **state)
{
    struct itest *t = *state;
    struct h_http_resp r;
    char *big;
    json_t *j;

    itest_invoke(t, "record", "{not json", itest_event_hdr, &r);
    j = expect_api_error(&r, 400, "InvalidRequestContentException");
    json_decref(j);
    h_http_resp_free(&r);

    big = h_json_string_of_len(1048576 + 10); /* a JSON string just over 1 MiB */
    itest_invoke(t, "record", big, itest_event_hdr, &r);
    j = expect_api_error(&r, 413, "RequestEntityTooLargeException");
    json_decref(j);
    h_http_resp_free(&r);
    free(big);

    itest_invoke(t, "no-such-function", "{}", itest_event_hdr, &r);
    j = expect_api_error(&r, 404, "ResourceNotFoundException");
    json_decref(j);
    h_http_resp_free(&r);
    itest_end(t);
}

#define KILL_EVENTS 2000

/*
 * kill -9 with thousands of events queued and in flight, then a restart: every event runs at
 * least once (the handler leaves one file per event number).
 */
static void test_kill9_loses_nothing(void **state)
{
    struct itest *t = *state;
    char *dir = h_strfmt("%s/kill", t->b.dir);
    struct h_http_conn *c;
    const char *hdrs[] = {"X-Amz-Invocation-Type: Event", NULL};
    int64_t deadline;
    size_t done;

    mkdir(dir, 0755);
    c = h_http_connect(t->b.host, t->b.port, 10000);
    assert_non_null(c);
    for (int i = 0; i < KILL_EVENTS; i++) {
        char *payload = h_strfmt("{\"dir\":\"%s\",\"n\":%d}", dir, i);
        struct h_http_resp r;

        if (h_http_conn_request(c, "POST", "/2015-03-31/functions/record/invocations", hdrs,
                                payload, strlen(payload), 30000, &r) != 0)
            fail_msg("event %d: no answer", i);
        if (r.status != 202)
            fail_msg("event %d: HTTP %d", i, r.status);
        h_http_resp_free(&r);
        free(payload);
    }
    h_http_close(c);
    /* Memory stays bounded: beyond async_max_held (100) events wait parked in the store. */
    assert_true(itest_async_stat(&t->b, "queued") <= 100);
    /* Everything is stored; most of it still waits or runs. */
    assert_int_equal(kill(t->b.proc.pid, SIGKILL), 0);
    deadline = h_now_ms() + 10000;
    while (h_broker_running(&t->b) && h_now_ms() < deadline)
        h_sleep_ms(10);
    assert_false(h_broker_running(&t->b));
    /* The killed broker's environments are orphans of its process group: gone with it or
     * reaped by the harness; the restarted broker must pick up every stored event. */
    assert_int_equal(h_broker_start(&t->b, NULL, ITEST_READY_MS), 0);
    t->mark = h_broker_log_mark(&t->b);

    deadline = h_now_ms() + 180000;
    for (;;) {
        DIR *d = opendir(dir);
        struct dirent *de;

        done = 0;
        while (d != NULL && (de = readdir(d)) != NULL) {
            if (de->d_name[0] >= '0' && de->d_name[0] <= '9' && strchr(de->d_name, '.') == NULL)
                done++;
        }
        if (d != NULL)
            closedir(d);
        if (done >= KILL_EVENTS || h_now_ms() > deadline)
            break;
        h_sleep_ms(100);
    }
    if (done != KILL_EVENTS)
        fail_msg("%zu of %d events ran after the kill -9 and restart", done, KILL_EVENTS);
    free(dir);
    itest_end(t);
}

/*
 * EventAgeExceeded: an event stored long ago (written into the queue while the broker is
 * stopped, as after a long outage) is not run but sent to on_failure with the condition.
 */
static void test_event_age_exceeded(void **state)
{
    struct itest *t = *state;
    char *agedir = h_strfmt("%s/aged", t->b.dir);
    const char *rid = "00000000-0000-4000-8000-00000000a9ed";
    char *db = h_strfmt("%s/queue.db", t->b.data_dir);
    char *script;
    struct h_run run;
    json_t *rec, *rc;

    assert_int_equal(h_broker_stop(&t->b, 10000), 0);
    script = h_strfmt("import sqlite3, time\n"
                      "c = sqlite3.connect('%s')\n"
                      "old = int(time.time() * 1000) - 7200 * 1000\n"
                      "c.execute(\"INSERT INTO events(id, fn, payload, enqueued_ms, next_ms, "
                      "attempts, state) VALUES(?, 'aged', ?, ?, ?, 0, 0)\", "
                      "('%s', b'{\\\"n\\\": 7}', old, old))\n"
                      "c.commit()\n",
                      db, rid);
    {
        char *argv[] = {"python3", "-c", script, NULL};

        h_proc_run(argv, NULL, t->b.dir, 30000, &run);
        expect_run_code(&run, 0);
        h_run_free(&run);
    }
    assert_int_equal(h_broker_start(&t->b, NULL, ITEST_READY_MS), 0);
    t->mark = h_broker_log_mark(&t->b);
    rec = itest_await_json_file(agedir, rid, 20000);
    rc = json_object_get(rec, "requestContext");
    assert_string_equal(h_json_str(rc, "condition"), "EventAgeExceeded");
    assert_int_equal(h_json_int(rc, "approximateInvokeCount", -1), 0);
    assert_int_equal(h_json_int(json_object_get(rec, "requestPayload"), "n", -1), 7);
    json_decref(rec);
    {
        char *url = h_broker_url(&t->b);
        char *argv[] = {(char *)h_binary(), "dlq",      "purge", "--id", (char *)rid,
                        "--endpoint",       url,        NULL};

        h_proc_run(argv, NULL, t->b.dir, 30000, &run);
        expect_run_code(&run, 0);
        expect_contains(run.out, "purged 1 dead letter(s)");
        h_run_free(&run);
        free(url);
    }
    free(script);
    free(db);
    free(agedir);
    itest_end(t);
}

#define STOP_EVENTS 12

/* Files in DIR whose name is a number, and how many lines they hold in all. */
static size_t count_runs(const char *dir, size_t *lines)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t n = 0;

    *lines = 0;
    while (d != NULL && (de = readdir(d)) != NULL) {
        char *path;

        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        n++;
        path = h_strfmt("%s/%s", dir, de->d_name);
        *lines += itest_line_count(path);
        free(path);
    }
    if (d != NULL)
        closedir(d);
    return n;
}

/*
 * SIGTERM with async invocations running and more queued: the running ones finish and are
 * recorded, the broker exits 0, and after a restart the rest run - each event exactly once.
 */
static void test_sigterm_keeps_queue(void **state)
{
    struct itest *t = *state;
    char *dir = h_strfmt("%s/stop", t->b.dir);
    size_t done, lines;
    int64_t deadline;
    int code;

    mkdir(dir, 0755);
    for (int i = 0; i < STOP_EVENTS; i++) {
        char *payload = h_strfmt("{\"dir\":\"%s\",\"n\":%d,\"ms\":400}", dir, i);
        char *rid = itest_invoke_event(&t->b, "slow", payload);

        free(rid);
        free(payload);
    }
    /* Let the first ones run, then stop while two are in flight. */
    deadline = h_now_ms() + 20000;
    while (count_runs(dir, &lines) < 1 && h_now_ms() < deadline)
        h_sleep_ms(20);
    code = h_broker_stop(&t->b, 15000);
    assert_int_equal(code, 0);
    done = count_runs(dir, &lines);
    assert_true(done < STOP_EVENTS); /* some were still queued */
    assert_int_equal(lines, done);

    assert_int_equal(h_broker_start(&t->b, NULL, ITEST_READY_MS), 0);
    t->mark = h_broker_log_mark(&t->b);
    deadline = h_now_ms() + 60000;
    /* Files and lines both: a run opens its file a moment before its line is written. */
    while ((count_runs(dir, &lines) < STOP_EVENTS || lines < STOP_EVENTS) &&
           h_now_ms() < deadline)
        h_sleep_ms(50);
    assert_int_equal(count_runs(dir, &lines), STOP_EVENTS);
    assert_int_equal(lines, STOP_EVENTS); /* nothing ran twice */
    free(dir);
    itest_end(t);
}

#define BACKLOG_EVENTS 150

/*
 * A backlog beyond async_max_held (100): the broker holds at most 100 events in memory, the
 * rest wait parked in queue.db and are read back as events finish; each runs exactly once.
 */
static void test_backlog_parked(void **state)
{
    struct itest *t = *state;
    char *dir = h_strfmt("%s/backlog", t->b.dir);
    size_t lines;
    int64_t deadline;

    mkdir(dir, 0755);
    for (int i = 0; i < BACKLOG_EVENTS; i++) {
        char *payload = h_strfmt("{\"dir\":\"%s\",\"n\":%d,\"ms\":40}", dir, i);
        char *rid = itest_invoke_event(&t->b, "slow", payload);

        free(rid);
        free(payload);
    }
    /* Two at a time, 40 ms each: most of the backlog is still waiting, beyond the bound. */
    assert_true(itest_async_stat(&t->b, "queued") <= 100);
    assert_true(itest_async_stat(&t->b, "parked") > 0);
    deadline = h_now_ms() + 60000;
    while ((count_runs(dir, &lines) < BACKLOG_EVENTS || lines < BACKLOG_EVENTS) &&
           h_now_ms() < deadline)
        h_sleep_ms(50);
    assert_int_equal(count_runs(dir, &lines), BACKLOG_EVENTS);
    assert_int_equal(lines, BACKLOG_EVENTS);
    assert_int_equal(itest_async_stat(&t->b, "parked"), 0);
    free(dir);
    itest_end(t);
}

/* A second broker on the same data_dir is refused before it touches anything, naming the pid of
 * the one that runs; the running one is unaffected. */
static void test_second_broker_refused(void **state)
{
    struct itest *t = *state;
    char *argv[] = {(char *)h_binary(), "run", t->b.config_path, NULL};
    char *want = h_strfmt("locked by another process (pid %d)", (int)t->b.proc.pid);
    char *dir = h_strfmt("%s/second", t->b.dir);
    char *payload = h_strfmt("{\"dir\":\"%s\",\"n\":1}", dir);
    struct h_run run;
    size_t lines;
    int64_t deadline;
    char *rid;

    mkdir(dir, 0755);
    h_proc_run(argv, NULL, t->b.dir, 30000, &run);
    if (run.code == 0 || strstr(run.err, want) == NULL)
        fail_msg("second broker: exit %d, stderr:\n%s\nwant: %s", run.code, run.err, want);
    h_run_free(&run);
    free(want);
    /* The first broker still stores and runs events. */
    assert_true(h_broker_running(&t->b));
    rid = itest_invoke_event(&t->b, "record", payload);
    deadline = h_now_ms() + 30000;
    while (count_runs(dir, &lines) < 1 && h_now_ms() < deadline)
        h_sleep_ms(20);
    assert_int_equal(count_runs(dir, &lines), 1);
    free(rid);
    free(payload);
    free(dir);
    itest_end(t);
}

#define WAL_EVENTS 1500
#define WAL_SOFT 32
#define WAL_HARD 256

/*
 * Checkpoints: with SWITCHYARD_WAL_CHECKPOINT_PAGES=32,256, 1500 events of 4 KB (each INSERT
 * writes two pages or more: about 3000 pages in all) stream through one connection; the WAL
 * file never grows much beyond the hard limit (it would hold every page without checkpoints),
 * and every event runs.
 */
static void test_wal_bounded(void **state)
{
    struct itest *t = *state;
    const char *env[] = {"SWITCHYARD_WAL_CHECKPOINT_PAGES=32,256", NULL};
    char *dir = h_strfmt("%s/wal", t->b.dir);
    char *wal = h_strfmt("%s/queue.db-wal", t->b.data_dir);
    char pad[4097];
    struct h_http_conn *c;
    const char *hdrs[] = {"X-Amz-Invocation-Type: Event", NULL};
    size_t lines;
    int64_t deadline;
    struct stat sb;
    long long max_wal = 0;

    mkdir(dir, 0755);
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    assert_int_equal(h_broker_stop(&t->b, 10000), 0);
    assert_int_equal(h_broker_start(&t->b, env, ITEST_READY_MS), 0);
    t->mark = h_broker_log_mark(&t->b);
    c = h_http_connect(t->b.host, t->b.port, 10000);
    assert_non_null(c);
    for (int i = 0; i < WAL_EVENTS; i++) {
        char *payload = h_strfmt("{\"dir\":\"%s\",\"n\":%d,\"pad\":\"%s\"}", dir, i, pad);
        struct h_http_resp r;

        if (h_http_conn_request(c, "POST", "/2015-03-31/functions/record/invocations", hdrs,
                                payload, strlen(payload), 30000, &r) != 0)
            fail_msg("event %d: no answer", i);
        if (r.status != 202)
            fail_msg("event %d: HTTP %d", i, r.status);
        h_http_resp_free(&r);
        free(payload);
        if (stat(wal, &sb) == 0 && sb.st_size > max_wal)
            max_wal = sb.st_size;
    }
    h_http_close(c);
    deadline = h_now_ms() + 120000;
    while (count_runs(dir, &lines) < WAL_EVENTS && h_now_ms() < deadline)
        h_sleep_ms(50);
    assert_int_equal(count_runs(dir, &lines), WAL_EVENTS);
    if (stat(wal, &sb) == 0 && sb.st_size > max_wal)
        max_wal = sb.st_size;
    /* A WAL frame is a 4096-byte page and a 24-byte header; the hard limit is reached at the
     * end of a commit, which may add a few dozen frames. */
    if (max_wal > (WAL_HARD + 128) * 4120LL)
        fail_msg("the WAL grew to %lld bytes (hard limit %d pages)", max_wal, WAL_HARD);
    assert_true(max_wal > WAL_SOFT * 4120LL); /* it was in use: the test measured something */
    /* Back to the defaults for the tests after this one. */
    assert_int_equal(h_broker_stop(&t->b, 10000), 0);
    assert_int_equal(h_broker_start(&t->b, NULL, ITEST_READY_MS), 0);
    free(wal);
    free(dir);
    itest_end(t);
}

static int group_setup(void **state)
{
    return itest_group_start(state, "async", config, NULL);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, itest_setup, itest_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_event_success),        T(test_retries_dead_letter_redrive),
        T(test_function_destination), T(test_reserved_zero),
        T(test_bad_input),            T(test_kill9_loses_nothing),
        T(test_event_age_exceeded),   T(test_sigterm_keeps_queue),
        T(test_backlog_parked),       T(test_second_broker_refused),
        T(test_wal_bounded),
    };

    itest_filter_from_env();
    return itest_run_group("async", tests, group_setup);
}
