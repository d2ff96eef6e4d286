/*
 * tests/integration/test_async_redis.c - the shared async queue (`broker.async_queue:
 * redis://HOST:PORT/KEY`) with two brokers on one real redis-server:
 *
 *   - 500 events enqueued through broker A all run (at least once, without systematic
 *     duplicates), both brokers run some, and the stream is empty afterwards;
 *   - the events of a function created through A's API (not in the file) run through the
 *     shared stream too (A takes them; B, without the function, leaves them);
 *   - a function that keeps failing is retried after retry_delays_s, and its dead letter is
 *     visible, shown and redriven through the broker that did not run it;
 *   - SIGTERM of broker B while it holds events: it releases them and exits 0, A runs them;
 *   - kill -9 of broker B while it holds events: A claims them once they have been idle for the
 *     claim timeout (SWITCHYARD_REDIS_CLAIM_IDLE_MS=2000 here) and every event still runs;
 *   - kill -9 of the broker holding an event between two attempts: the other one claims it
 *     with its attempts and history, and gives it only its remaining attempt;
 *   - Redis down at enqueue: 500 ServiceException, never a 202; once Redis is back (empty, as
 *     after a restart without persistence) the brokers reconnect, make the group again and run
 *     new events.
 *
 * Side effects are files written by the handlers; every wait polls with a deadline.
 */
#include "itest.h"

#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "harness/redis.h"

#define KEY "sy-async-test"
#define SHARED_EVENTS 500
#define KILL_EVENTS 40

/* clang-format off */
static const char config[] =
    "broker:\n"
    "  listen: 127.0.0.1:0\n"
    "  data_dir: @DATA@\n"
    "  shutdown_grace_ms: 2000\n"
    "  max_concurrency: 20\n"
    "  async_queue: redis://127.0.0.1:@PORT@/" KEY "\n"
    "functions:\n"
    "  record:\n"
    "    runtime: python3\n"
    "    handler: app.record\n"
    "    code: @FIXTURES@/async\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "    async: {maximum_concurrency: 4}\n"
    "  slow:\n"
    "    runtime: python3\n"
    "    handler: slow.run\n"
    "    code: @CODE@\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "    async: {maximum_concurrency: 2}\n"
    "  flaky:\n"
    "    runtime: python3\n"
    "    handler: app.flaky\n"
    "    code: @FIXTURES@/async\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "    async:\n"
    "      maximum_retry_attempts: 1\n"
    "      retry_delays_s: [1]\n"
    "  flaky-slow:\n"
    "    runtime: python3\n"
    "    handler: app.flaky\n"
    "    code: @FIXTURES@/async\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
    "    async:\n"
    "      maximum_retry_attempts: 1\n"
    "      retry_delays_s: [5]\n";

/* A handler that takes its time: SLEEP seconds, then DIR/<n> holding the request id. */
static const char slow_py[] =
    "import os, time\n"
    "def run(event, context):\n"
    "    time.sleep(float(event.get('sleep', 0)))\n"
    "    path = os.path.join(event['dir'], str(event['n']))\n"
    "    tmp = '%s.%d.tmp' % (path, os.getpid())\n"
    "    with open(tmp, 'w') as f:\n"
    "        f.write(context.aws_request_id)\n"
    "    os.replace(tmp, path)\n"
    "    return {'n': event['n']}\n";
/* clang-format on */

static const char *const broker_env[] = {"SWITCHYARD_REDIS_CLAIM_IDLE_MS=2000", NULL};

/* Set when the group setup or teardown failed (cmocka 1.1 still returns 0 then). */
static bool world_failed;

/* The fixture: one redis-server, brokers A and B sharing KEY on it. */
struct world {
    struct h_redis redis;
    struct h_broker a, b;
    char *code; /* dir of slow.py (under A's temp dir) */
    size_t mark_a, mark_b;
    bool ok;
};

/* ---- helpers ------------------------------------------------------------------------------ */

static int start_broker(struct world *w, struct h_broker *b, const char *tag)
{
    char port[16];
    char *y1, *y2;
    int rc;

    snprintf(port, sizeof(port), "%d", w->redis.port);
    y1 = h_str_replace(config, "@PORT@", port);
    y2 = h_str_replace(y1, "@CODE@", w->code);
    rc = (b->dir == NULL && h_broker_init(b, tag) != 0) || h_broker_write_config(b, y2) != 0 ||
                 h_broker_start(b, broker_env, ITEST_READY_MS) != 0
             ? -1
             : 0;
    free(y1);
    free(y2);
    return rc;
}

/* Entries in the stream plus entries pending in the group (0 when the queue is empty). */
static long long queue_left(const struct world *w)
{
    redisReply *len = h_redis_cmd(&w->redis, "XLEN %s", KEY);
    redisReply *pend = h_redis_cmd(&w->redis, "XPENDING %s switchyard", KEY);
    long long n = -1;

    if (len != NULL && len->type == REDIS_REPLY_INTEGER && pend != NULL &&
        pend->type == REDIS_REPLY_ARRAY && pend->elements > 0 &&
        pend->element[0]->type == REDIS_REPLY_INTEGER)
        n = len->integer + pend->element[0]->integer;
    freeReplyObject(len);
    freeReplyObject(pend);
    return n;
}

static void await_queue_empty(const struct world *w, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    long long n;

    while ((n = queue_left(w)) != 0) {
        if (h_now_ms() > deadline)
            fail_msg("the shared queue still has %lld entr(ies) after %d ms", n, timeout_ms);
        h_sleep_ms(50);
    }
}

/* Files named by a number in DIR (one per event that ran). */
static size_t count_done(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t n = 0;

    while (d != NULL && (de = readdir(d)) != NULL) {
        if (de->d_name[0] >= '0' && de->d_name[0] <= '9' && strchr(de->d_name, '.') == NULL)
            n++;
    }
    if (d != NULL)
        closedir(d);
    return n;
}

static void await_done(const char *dir, size_t want, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;

    while (count_done(dir) < want) {
        if (h_now_ms() > deadline)
            fail_msg("%zu of %zu events ran within %d ms", count_done(dir), want, timeout_ms);
        h_sleep_ms(50);
    }
}

/*
 * Enqueue N events {"dir": DIR, "n": i<EXTRA>} of FN through B on one keep-alive connection
 * (EXTRA: more members, e.g. ",\"sleep\":1", or "").
 */
/* Wait (10 s at most) until broker B holds at least N events; returns how many it holds. */
static long long await_held(struct h_broker *b, long long n)
{
    int64_t deadline = h_now_ms() + 10000;
    long long held;

    while ((held = itest_async_stat(b, "queued")) < n) {
        if (h_now_ms() > deadline)
            fail_msg("broker B never held %lld events (holds %lld)", n, held);
        h_sleep_ms(10);
    }
    return held;
}

static void enqueue_many(const struct h_broker *b, const char *fn, const char *dir,
                         const char *extra, int n)
{
    struct h_http_conn *c = h_http_connect(b->host, b->port, 10000);
    char *path = h_strfmt("/2015-03-31/functions/%s/invocations", fn);

    assert_non_null(c);
    for (int i = 0; i < n; i++) {
        char *payload = h_strfmt("{\"dir\":\"%s\",\"n\":%d%s}", dir, i, extra);
        struct h_http_resp r;

        if (h_http_conn_request(c, "POST", path, itest_event_hdr, payload, strlen(payload), 30000,
                                &r) != 0)
            fail_msg("event %d: no answer", i);
        if (r.status != 202)
            fail_msg("event %d: HTTP %d: %s", i, r.status, r.body);
        h_http_resp_free(&r);
        free(payload);
    }
    free(path);
    h_http_close(c);
}

/* The dead letter RID in the list of FN through B, or NULL (new reference). */
static json_t *dead_in_list(const struct h_broker *b, const char *fn, const char *rid)
{
    char *path = h_strfmt("/switchyard/v1/dlq?function=%s", fn);
    json_t *list = itest_api_json(b, "GET", path, NULL), *e, *found = NULL;
    size_t i;

    json_array_foreach(json_object_get(list, "dead_letters"), i, e)
    {
        if (strcmp(h_json_str(e, "id"), rid) == 0)
            found = json_incref(e);
    }
    json_decref(list);
    free(path);
    return found;
}

/* The end of every test: both brokers up and idle, no sanitizer line. */
static void world_end(struct world *w)
{
    struct h_broker *bs[2] = {&w->a, &w->b};
    size_t marks[2] = {w->mark_a, w->mark_b};

    for (int i = 0; i < 2; i++) {
        if (!h_broker_running(bs[i]))
            fail_msg("broker %c is not running any more (exit code %d)", 'A' + i,
                     h_proc_exit_code(&bs[i]->proc));
        if (h_broker_wait_idle(bs[i], 10000) != 0)
            fail_msg("broker %c: in_flight did not return to 0", 'A' + i);
        if (h_broker_sanitizer_lines(bs[i], marks[i]) > 0)
            fail_msg("broker %c: sanitizer report in its log", 'A' + i);
    }
    w->ok = true;
}

/* ---- tests -------------------------------------------------------------------------------- */

/*
 * 500 events through A: every one runs, both brokers run some, no event runs twice beyond a
 * few (a duplicate only comes from a claim race), and the queue ends empty.
 */
static void test_shared_queue(void **state)
{
    struct world *w = *state;
    char *dir = h_strfmt("%s/shared", w->a.dir);
    long long a0 = itest_async_stat(&w->a, "succeeded"), b0 = itest_async_stat(&w->b, "succeeded");
    long long da, db;
    int64_t deadline;

    assert_true(a0 >= 0 && b0 >= 0);
    mkdir(dir, 0755);
    enqueue_many(&w->a, "record", dir, "", SHARED_EVENTS);
    await_done(dir, SHARED_EVENTS, 45000);
    await_queue_empty(w, 20000);
    /* The counters follow the outcome: poll until they account for every event. */
    deadline = h_now_ms() + 10000;
    do {
        da = itest_async_stat(&w->a, "succeeded") - a0;
        db = itest_async_stat(&w->b, "succeeded") - b0;
        if (da + db >= SHARED_EVENTS)
            break;
        h_sleep_ms(50);
    } while (h_now_ms() < deadline);
    fprintf(stderr, "shared queue: broker A ran %lld, broker B ran %lld of %d events\n", da, db,
            SHARED_EVENTS);
    if (da + db < SHARED_EVENTS)
        fail_msg("only %lld successes counted for %d events", da + db, SHARED_EVENTS);
    if (da == 0 || db == 0)
        fail_msg("one broker ran nothing (A %lld, B %lld): the queue is not shared", da, db);
    if (da + db > SHARED_EVENTS + SHARED_EVENTS / 20)
        fail_msg("%lld runs for %d events: events run twice", da + db, SHARED_EVENTS);
    free(dir);
    world_end(w);
}

/*
 * A function created through broker A's API (CreateFunction) is not declared in the file: its
 * events go through the shared stream like the others, and A takes them (B, which does not
 * have the function, leaves them), so every one runs.
 */
static void test_api_function_on_shared_queue(void **state)
{
    struct world *w = *state;
    char *dir = h_strfmt("%s/api-fn", w->a.dir);
    char *src = h_strfmt("%s/slow.py", w->code);
    char *argv[] = {"python3", "-c",
                    "import base64, io, json, sys, zipfile\n"
                    "b = io.BytesIO()\n"
                    "with zipfile.ZipFile(b, 'w') as z:\n"
                    "    z.write(sys.argv[1], 'slow.py')\n"
                    "print(json.dumps({'FunctionName': 'api-slow', 'Runtime': 'python3.11',\n"
                    "                  'Role': 'arn:aws:iam::000000000000:role/x',\n"
                    "                  'Handler': 'slow.run',\n"
                    "                  'Code': {'ZipFile': base64.b64encode(b.getvalue()).decode()}}))\n",
                    src, NULL};
    struct h_run run;
    struct h_http_resp r;

    mkdir(dir, 0755);
    h_proc_run(argv, NULL, NULL, 20000, &run);
    expect_run_code(&run, 0);
    assert_int_equal(h_broker_request(&w->a, "POST", "/2015-03-31/functions", NULL, run.out,
                                      run.out_len, 20000, &r),
                     0);
    expect_status(&r, 201);
    h_http_resp_free(&r);
    h_run_free(&run);
    enqueue_many(&w->a, "api-slow", dir, "", 10);
    await_done(dir, 10, 40000);
    await_queue_empty(w, 20000);
    free(src);
    free(dir);
    world_end(w);
}

/*
 * A function that keeps failing: 2 attempts a retry delay apart, then a dead letter in the
 * shared store, listed, shown and redriven through the broker that did not run it.
 */
static void test_retry_and_shared_dead_letter(void **state)
{
    struct world *w = *state;
    char *dir = h_strfmt("%s/flaky", w->a.dir);
    char *attempts = h_strfmt("%s/attempts-x", dir);
    char *payload, *rid, *text, *path, *fixed, *body, *payload_y, *rid_y;
    long long fa0 = itest_async_stat(&w->a, "failed"), fa;
    struct h_broker *other;
    json_t *dead, *one, *res;
    double t[2];
    int64_t deadline;

    mkdir(dir, 0755);
    payload = h_strfmt("{\"dir\":\"%s\",\"key\":\"x\"}", dir);
    rid = itest_invoke_event(&w->a, "flaky", payload);
    payload_y = h_strfmt("{\"dir\":\"%s\",\"key\":\"y\"}", dir);
    rid_y = itest_invoke_event(&w->b, "flaky", payload_y);
    itest_await_lines(attempts, 2, 20000);
    text = h_read_file(attempts, 0, NULL);
    assert_int_equal(sscanf(text, "%lf %*s\n%lf", &t[0], &t[1]), 2);
    assert_true(t[1] - t[0] >= 0.85);
    assert_int_equal(h_str_count(text, rid), 2);
    free(text);

    /* Wait for the failure to be counted, to know which broker ran the event. */
    deadline = h_now_ms() + 10000;
    for (;;) {
        fa = itest_async_stat(&w->a, "failed") - fa0;
        dead = dead_in_list(&w->a, "flaky", rid);
        json_decref(dead);
        if (dead != NULL || h_now_ms() > deadline)
            break;
        h_sleep_ms(50);
    }
    other = fa > 0 ? &w->b : &w->a;
    fprintf(stderr, "dead letter: broker %c ran the event, asking broker %c\n",
            other == &w->b ? 'A' : 'B', other == &w->b ? 'B' : 'A');
    deadline = h_now_ms() + 10000;
    while ((dead = dead_in_list(other, "flaky", rid)) == NULL) {
        if (h_now_ms() > deadline)
            fail_msg("dead letter %s not listed by the other broker", rid);
        h_sleep_ms(50);
    }
    assert_string_equal(h_json_str(dead, "condition"), "RetriesExhausted");
    assert_int_equal(h_json_int(dead, "attempts", -1), 2);
    assert_string_equal(h_json_str(dead, "error_type"), "FlakyError");
    expect_contains(h_json_str(dead, "error_message"), "not fixed yet: x");
    assert_non_null(h_json_str(dead, "failed_at"));
    json_decref(dead);

    path = h_strfmt("/switchyard/v1/dlq/%s", rid);
    one = itest_api_json(other, "GET", path, NULL);
    assert_string_equal(h_json_str(json_object_get(one, "payload"), "key"), "x");
    assert_int_equal(json_array_size(json_object_get(one, "history")), 2);
    assert_string_equal(h_json_str(one, "function"), "flaky");
    json_decref(one);
    {
        struct h_http_resp r;

        if (h_broker_request(other, "GET", "/switchyard/v1/dlq/no-such-id", NULL, NULL, 0, 10000,
                             &r) != 0)
            fail_msg("GET dlq/no-such-id: no answer");
        json_decref(expect_api_error(&r, 404, "ResourceNotFoundException"));
        h_http_resp_free(&r);
    }

    /* y: purged through the broker that did not run x, once it is dead too. */
    deadline = h_now_ms() + 20000;
    while ((dead = dead_in_list(&w->b, "flaky", rid_y)) == NULL) {
        if (h_now_ms() > deadline)
            fail_msg("dead letter %s never listed", rid_y);
        h_sleep_ms(50);
    }
    json_decref(dead);
    res = itest_api_json(&w->a, "GET", "/switchyard/v1/dlq?function=flaky", NULL);
    assert_int_equal(h_json_int(res, "total", -1), 2);
    assert_int_equal(json_array_size(json_object_get(res, "dead_letters")), 2);
    json_decref(res);
    body = h_strfmt("{\"id\":\"%s\"}", rid_y);
    res = itest_api_json(other, "POST", "/switchyard/v1/dlq/purge", body);
    assert_int_equal(h_json_int(res, "purged", -1), 1);
    json_decref(res);
    free(body);
    assert_null(dead_in_list(&w->a, "flaky", rid_y));

    /* Fixed: redrive it through the other broker; it runs once more (anywhere) and leaves. */
    fixed = h_strfmt("%s/fixed", dir);
    assert_int_equal(h_write_file(fixed, "", 0), 0);
    body = h_strfmt("{\"id\":\"%s\"}", rid);
    res = itest_api_json(other, "POST", "/switchyard/v1/dlq/redrive", body);
    assert_int_equal(h_json_int(res, "redriven", -1), 1);
    assert_int_equal(h_json_int(res, "remaining", -1), 0);
    json_decref(res);
    itest_await_lines(attempts, 3, 20000);
    assert_null(dead_in_list(&w->a, "flaky", rid));
    assert_null(dead_in_list(&w->b, "flaky", rid));
    await_queue_empty(w, 10000);

    free(body);
    free(fixed);
    free(path);
    free(rid);
    free(rid_y);
    free(payload);
    free(payload_y);
    free(attempts);
    free(dir);
    world_end(w);
}

/*
 * SIGTERM of B while it holds events: it exits 0 after releasing them, A runs them all, and B
 * comes back.
 */
static void test_sigterm_releases(void **state)
{
    struct world *w = *state;
    char *dir = h_strfmt("%s/term", w->a.dir);
    size_t b_mark = h_broker_log_mark(&w->b);
    char *log;

    mkdir(dir, 0755);
    enqueue_many(&w->a, "slow", dir, ",\"sleep\":0.25", KILL_EVENTS);
    await_held(&w->b, 3);
    assert_int_equal(h_broker_stop(&w->b, 15000), 0);
    log = h_read_file(w->b.log_path, b_mark, NULL);
    expect_contains(log, "released");
    free(log);
    await_done(dir, KILL_EVENTS, 30000);
    await_queue_empty(w, 20000);
    assert_int_equal(start_broker(w, &w->b, "redis-b"), 0);
    w->mark_b = h_broker_log_mark(&w->b);
    free(dir);
    world_end(w);
}

/*
 * kill -9 of B while it holds events: A claims them after the claim timeout and every event
 * runs; B then comes back.
 */
static void test_kill9_claimed_by_other(void **state)
{
    struct world *w = *state;
    char *dir = h_strfmt("%s/kill", w->a.dir);
    size_t a_mark = h_broker_log_mark(&w->a);
    char *log;
    int64_t deadline;
    long long held;

    mkdir(dir, 0755);
    enqueue_many(&w->a, "slow", dir, ",\"sleep\":0.25", KILL_EVENTS);
    /* B must hold some (read, not yet finished) when it dies. */
    held = await_held(&w->b, 3);
    fprintf(stderr, "kill -9 of broker B while it holds %lld event(s)\n", held);
    assert_int_equal(kill(w->b.proc.pid, SIGKILL), 0);
    deadline = h_now_ms() + 10000;
    while (h_broker_running(&w->b) && h_now_ms() < deadline)
        h_sleep_ms(10);
    assert_false(h_broker_running(&w->b));

    await_done(dir, KILL_EVENTS, 30000);
    await_queue_empty(w, 20000);
    log = h_read_file(w->a.log_path, a_mark, NULL);
    expect_contains(log, "claimed");
    free(log);

    /* B comes back (a new consumer) and the group keeps working. */
    assert_int_equal(start_broker(w, &w->b, "redis-b"), 0);
    w->mark_b = h_broker_log_mark(&w->b);
    free(dir);
    world_end(w);
}

/*
 * The broker holding an event that waits for its retry dies: the other one claims it with the
 * attempts and history recorded so far (the entry's state hash), so the event gets exactly its
 * remaining attempt, not a fresh start.
 */
static void test_claim_keeps_retry_state(void **state)
{
    struct world *w = *state;
    char *dir = h_strfmt("%s/claim-state", w->a.dir);
    char *attempts = h_strfmt("%s/attempts-s", dir);
    char *payload = h_strfmt("{\"dir\":\"%s\",\"key\":\"s\"}", dir);
    long long ra0 = itest_async_stat(&w->a, "retries"), rb0 = itest_async_stat(&w->b, "retries");
    struct h_broker *holder = NULL, *other;
    char *rid, *path;
    redisReply *keys = NULL;
    json_t *dead = NULL, *one;
    int64_t deadline;

    mkdir(dir, 0755);
    rid = itest_invoke_event(&w->a, "flaky-slow", payload);
    itest_await_lines(attempts, 1, 20000);
    /* Which broker scheduled the retry, and is the retry state in Redis yet? */
    deadline = h_now_ms() + 5000;
    for (;;) {
        if (itest_async_stat(&w->a, "retries") > ra0)
            holder = &w->a;
        else if (itest_async_stat(&w->b, "retries") > rb0)
            holder = &w->b;
        freeReplyObject(keys);
        keys = h_redis_cmd(&w->redis, "KEYS %s:ev:*", KEY);
        if (holder != NULL && keys != NULL && keys->type == REDIS_REPLY_ARRAY &&
            keys->elements == 1)
            break;
        if (h_now_ms() > deadline)
            fail_msg("the retry of %s was not recorded", rid);
        h_sleep_ms(10);
    }
    freeReplyObject(keys);
    other = holder == &w->a ? &w->b : &w->a;
    fprintf(stderr, "kill -9 of broker %c, which holds %s for its retry\n",
            holder == &w->a ? 'A' : 'B', rid);
    assert_int_equal(kill(holder->proc.pid, SIGKILL), 0);
    deadline = h_now_ms() + 10000;
    while (h_broker_running(holder) && h_now_ms() < deadline)
        h_sleep_ms(10);
    assert_false(h_broker_running(holder));

    deadline = h_now_ms() + 20000;
    while ((dead = dead_in_list(other, "flaky-slow", rid)) == NULL) {
        if (h_now_ms() > deadline)
            fail_msg("no dead letter for %s after the claim", rid);
        h_sleep_ms(50);
    }
    assert_int_equal(h_json_int(dead, "attempts", -1), 2);
    json_decref(dead);
    assert_int_equal(itest_line_count(attempts), 2);
    path = h_strfmt("/switchyard/v1/dlq/%s", rid);
    one = itest_api_json(other, "GET", path, NULL);
    assert_int_equal(json_array_size(json_object_get(one, "history")), 2);
    json_decref(one);
    await_queue_empty(w, 10000);

    assert_int_equal(start_broker(w, holder, holder == &w->a ? "redis-a" : "redis-b"), 0);
    if (holder == &w->a)
        w->mark_a = h_broker_log_mark(&w->a);
    else
        w->mark_b = h_broker_log_mark(&w->b);
    free(path);
    free(rid);
    free(payload);
    free(attempts);
    free(dir);
    world_end(w);
}

/*
 * Redis down: an Event invoke is answered 500 ServiceException, never 202. Redis back (empty):
 * the brokers reconnect, make the group again, and new events run.
 */
static void test_redis_down_refuses(void **state)
{
    struct world *w = *state;
    char *dir = h_strfmt("%s/down", w->a.dir);
    char *payload = h_strfmt("{\"dir\":\"%s\",\"n\":1}", dir);
    struct h_http_resp r;
    json_t *j;
    char *rid = NULL;
    int64_t deadline;

    mkdir(dir, 0755);
    assert_int_equal(h_redis_stop(&w->redis), 0);
    for (int i = 0; i < 2; i++) {
        const struct h_broker *b = i == 0 ? &w->a : &w->b;

        if (h_broker_invoke(b, "record", payload, (size_t)-1, itest_event_hdr, &r) != 0)
            fail_msg("broker %c: no answer with redis down", 'A' + i);
        j = expect_api_error(&r, 500, "ServiceException");
        json_decref(j);
        h_http_resp_free(&r);
    }
    /* Redis back, empty. Invokes fail fast until the broker's backoff lets it reconnect. */
    assert_int_equal(h_redis_start(&w->redis), 0);
    deadline = h_now_ms() + 20000;
    for (;;) {
        if (h_broker_invoke(&w->a, "record", payload, (size_t)-1, itest_event_hdr, &r) != 0)
            fail_msg("no answer after redis came back");
        if (r.status == 202) {
            rid = strdup(h_http_header(&r, "x-amzn-RequestId"));
            h_http_resp_free(&r);
            break;
        }
        if (r.status != 500 || h_now_ms() > deadline)
            fail_msg("after redis came back: HTTP %d: %s", r.status, r.body);
        h_http_resp_free(&r);
        h_sleep_ms(100);
    }
    await_done(dir, 1, 20000);
    await_queue_empty(w, 10000);
    free(rid);
    free(payload);
    free(dir);
    world_end(w);
}

/* ---- fixtures ----------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    struct world *w = calloc(1, sizeof(*w));
    char *py;

    *state = w;
    world_failed = true; /* until the setup is through */
    if (w == NULL)
        return -1;
    h_proc_init();
    if (h_redis_start(&w->redis) != 0)
        return -1;
    if (h_broker_init(&w->a, "redis-a") != 0)
        return -1;
    w->code = h_strfmt("%s/code", w->a.dir);
    py = h_strfmt("%s/slow.py", w->code);
    if (mkdir(w->code, 0755) != 0 || h_write_file(py, slow_py, strlen(slow_py)) != 0) {
        free(py);
        return -1;
    }
    free(py);
    if (start_broker(w, &w->a, "redis-a") != 0 || start_broker(w, &w->b, "redis-b") != 0) {
        w->a.failed = w->b.failed = true;
        h_broker_dump_logs(&w->a, 0);
        h_broker_dump_logs(&w->b, 0);
        return -1;
    }
    world_failed = false;
    return 0;
}

static int group_teardown(void **state)
{
    struct world *w = *state;
    struct h_broker *bs[2] = {&w->a, &w->b};
    int rc = 0;

    if (w == NULL)
        return 0;
    for (int i = 0; i < 2; i++) {
        int code;

        if (bs[i]->proc.pid > 0 && !bs[i]->proc.reaped) {
            code = h_broker_stop(bs[i], 15000);
            if (code != 0) {
                fprintf(stderr, "broker %c: exit code after SIGTERM is %d, expected 0\n", 'A' + i,
                        code);
                rc = -1;
            }
        }
        if (bs[i]->dir != NULL && h_broker_sanitizer_lines(bs[i], 0) > 0)
            rc = -1;
    }
    for (int i = 0; i < 2; i++) {
        if (rc != 0 && bs[i]->dir != NULL) {
            bs[i]->failed = true;
            h_broker_dump_logs(bs[i], 0);
        }
    }
    /* B's temp dir first: A's holds the handler code of environments B may have left. */
    if (w->b.dir != NULL && h_broker_destroy(&w->b) > 0)
        rc = -1;
    if (w->a.dir != NULL && h_broker_destroy(&w->a) > 0)
        rc = -1;
    h_redis_free(&w->redis);
    free(w->code);
    free(w);
    *state = NULL;
    if (rc != 0)
        world_failed = true;
    return rc;
}

static int test_setup(void **state)
{
    struct world *w = *state;

    w->mark_a = h_broker_log_mark(&w->a);
    w->mark_b = h_broker_log_mark(&w->b);
    w->ok = false;
    return 0;
}

static int test_teardown(void **state)
{
    struct world *w = *state;

    if (!w->ok) {
        fprintf(stderr, "the test failed; logs of broker A then broker B follow\n");
        w->a.failed = w->b.failed = true;
        h_broker_dump_logs(&w->a, w->mark_a);
        h_broker_dump_logs(&w->b, w->mark_b);
        if (!h_redis_running(&w->redis))
            h_redis_start(&w->redis);
    }
    return 0;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, test_setup, test_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_shared_queue),
        T(test_api_function_on_shared_queue),
        T(test_retry_and_shared_dead_letter),
        T(test_sigterm_releases),
        T(test_kill9_claimed_by_other),
        T(test_claim_keeps_retry_state),
        T(test_redis_down_refuses),
    };

    int rc;

    itest_filter_from_env();
    rc = cmocka_run_group_tests_name("async_redis", tests, group_setup, group_teardown);
    return rc != 0 ? rc : world_failed ? 1 : 0;
}
