/*
 * tests/integration/test_esm_redis.c - event source mappings end to end: a real redis-server,
 * a real broker (`switchyard run`) and real Python handlers (handlers/esm/app.py) that write one
 * file per record they get (OUT/<handler>/<messageId>.<delivery>).
 *
 *   - a list drains in batches, every record once, in Lambda's SQS record shape, and nothing is
 *     left in the list or in its in-flight structures;
 *   - filters: only matching records reach the function; the others are acknowledged too;
 *   - a stream with a consumer group: every entry delivered and acknowledged (XPENDING 0);
 *   - partial batch failures: only the named records come back, once;
 *   - a poison record with bisect and max_receive_count: the others are delivered, the poison
 *     one ends in the dead-letter list with its original body;
 *   - maximum_retry_attempts and on_failure: Lambda's on-failure record with the batch's
 *     identity lands in a file: destination;
 *   - maximum_record_age_s: a stream entry from 1970 fails once, then RecordAgeExceeded;
 *   - a malformed partial response is a whole-batch failure;
 *   - a record over the 6 MB invoke limit goes to the dead letter without an invocation;
 *   - kill -9 of the broker mid-drain: after a restart every record is delivered, duplicates stay
 *     within the in-flight window, and nothing is left in flight;
 *   - Redis restarted under the mapping: the problem shows in LastProcessingResult, the source
 *     reconnects on its own and new records are delivered;
 *   - a mapping disabled through the API stays disabled across a restart;
 *   - disabling a mapping mid-drain gives what it holds back to the list, nothing lost.
 *
 * Every wait polls with a deadline.
 */
#include "itest.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "rworld.h"

/* clang-format off */
static const char config[] =
    "broker:\n"
    "  listen: 127.0.0.1:0\n"
    "  data_dir: @DATA@\n"
    "  shutdown_grace_ms: 2000\n"
    "  max_concurrency: 40\n"
    "functions:\n"
    "  rec-list: {runtime: python3, handler: app.record, code: @FIXTURES@/esm,\n"
    "             environment: {OUT: '@DIR@/out-list', PYTHONDONTWRITEBYTECODE: '1'}}\n"
    "  rec-filter: {runtime: python3, handler: app.record, code: @FIXTURES@/esm,\n"
    "               environment: {OUT: '@DIR@/out-filter', PYTHONDONTWRITEBYTECODE: '1'}}\n"
    "  rec-stream: {runtime: python3, handler: app.record, code: @FIXTURES@/esm,\n"
    "               environment: {OUT: '@DIR@/out-stream', PYTHONDONTWRITEBYTECODE: '1'}}\n"
    "  rec-slow: {runtime: python3, handler: app.record, code: @FIXTURES@/esm,\n"
    "             environment: {OUT: '@DIR@/out-slow', PYTHONDONTWRITEBYTECODE: '1'}}\n"
    "  partial: {runtime: python3, handler: app.partial, code: @FIXTURES@/esm,\n"
    "            environment: {OUT: '@DIR@/out-partial', PYTHONDONTWRITEBYTECODE: '1'}}\n"
    "  poison: {runtime: python3, handler: app.poison, code: @FIXTURES@/esm,\n"
    "           environment: {OUT: '@DIR@/out-poison', PYTHONDONTWRITEBYTECODE: '1'}}\n"
    "  onfail: {runtime: python3, handler: app.poison, code: @FIXTURES@/esm,\n"
    "           environment: {OUT: '@DIR@/out-onfail', PYTHONDONTWRITEBYTECODE: '1'}}\n"
    "  garbage: {runtime: python3, handler: app.garbage, code: @FIXTURES@/esm,\n"
    "            environment: {OUT: '@DIR@/out-garbage', PYTHONDONTWRITEBYTECODE: '1'}}\n"
    "mappings:\n"
    "  - name: list\n"
    "    function: rec-list\n"
    "    source: {redis: {url: 'redis://127.0.0.1:@PORT@', list: q-list}}\n"
    "  - name: filter\n"
    "    function: rec-filter\n"
    "    source: {redis: {url: 'redis://127.0.0.1:@PORT@', list: q-filter}}\n"
    "    filters: ['{\"body\": {\"type\": [\"order\"]}}']\n"
    "  - name: stream\n"
    "    function: rec-stream\n"
    "    batch_size: 50\n"
    "    source: {redis: {url: 'redis://127.0.0.1:@PORT@', stream: s-events, group: g1}}\n"
    "  - name: partial\n"
    "    function: partial\n"
    "    report_batch_item_failures: true\n"
    "    source: {redis: {url: 'redis://127.0.0.1:@PORT@', list: q-partial}}\n"
    "  - name: poison\n"
    "    function: poison\n"
    "    batch_size: 8\n"
    "    maximum_batching_window_ms: 200\n"
    "    bisect_batch_on_function_error: true\n"
    "    source: {redis: {url: 'redis://127.0.0.1:@PORT@', list: q-poison, max_receive_count: 2,\n"
    "             dead_letter: 'redis://127.0.0.1:@PORT@/list/q-poison-dlq'}}\n"
    "  - name: onfail\n"
    "    function: onfail\n"
    "    maximum_retry_attempts: 1\n"
    "    on_failure: 'file:@DIR@/onfail-dest'\n"
    "    source: {redis: {url: 'redis://127.0.0.1:@PORT@', list: q-onfail}}\n"
    "  - name: garbage\n"
    "    function: garbage\n"
    "    report_batch_item_failures: true\n"
    "    maximum_retry_attempts: 0\n"
    "    on_failure: 'file:@DIR@/garbage-dest'\n"
    "    source: {redis: {url: 'redis://127.0.0.1:@PORT@', list: q-garbage}}\n"
    "  - name: aged\n"
    "    function: onfail\n"
    "    maximum_record_age_s: 60\n"
    "    on_failure: 'file:@DIR@/aged-dest'\n"
    "    source: {redis: {url: 'redis://127.0.0.1:@PORT@', stream: s-aged}}\n"
    "  - name: big\n"
    "    function: rec-list\n"
    "    source: {redis: {url: 'redis://127.0.0.1:@PORT@', list: q-big, max_receive_count: 3,\n"
    "             dead_letter: 'redis://127.0.0.1:@PORT@/list/q-big-dlq'}}\n"
    "  - name: slow\n"
    "    function: rec-slow\n"
    "    batch_size: 5\n"
    "    maximum_concurrency: 2\n"
    "    source: {redis: {url: 'redis://127.0.0.1:@PORT@', list: q-slow, visibility_timeout_s: 2}}\n";
/* clang-format on */

/* LPUSH N bodies PRE<i>POST to LIST. */
static void push(const struct rworld *w, const char *list, int n, const char *pre, const char *post)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", w->redis.port, tv);

    assert_non_null(c);
    assert_int_equal(c->err, 0);
    for (int i = 0; i < n; i++) {
        char body[256];
        redisReply *r;

        snprintf(body, sizeof(body), "%s%d%s", pre, i, post);
        r = redisCommand(c, "LPUSH %s %s", list, body);
        assert_non_null(r);
        freeReplyObject(r);
    }
    redisFree(c);
}

/* The list and its in-flight structures empty (every record acknowledged). */
static void await_list_drained(const struct rworld *w, const char *list, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    char inflight[128];

    snprintf(inflight, sizeof(inflight), "%s:sy:inflight", list);
    for (;;) {
        long long len = h_redis_int(&w->redis, "LLEN %s", list),
                  held = h_redis_int(&w->redis, "ZCARD %s", inflight);

        if (len == 0 && held == 0)
            return;
        if (h_now_ms() > deadline)
            fail_msg("%s: %lld waiting and %lld in flight after %d ms", list, len, held,
                     timeout_ms);
        h_sleep_ms(50);
    }
}

static char *dir_of(const struct rworld *w, const char *sub)
{
    return h_strfmt("%s/%s", w->b.dir, sub);
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_list_drains_in_sqs_shape(void **state)
{
    struct rworld *w = *state;
    char *out = dir_of(w, "out-list/record");
    char *path;
    size_t all;
    DIR *d;
    struct dirent *de;
    json_t *rec;

    push(w, "q-list", 200, "{\"n\": ", "}");
    rworld_await_files(out, 200, 30000);
    await_list_drained(w, "q-list", 10000);
    assert_int_equal(rworld_count_files(out, &all), 200);
    assert_int_equal(all, 200);

    /* One record, field by field. */
    d = opendir(out);
    assert_non_null(d);
    while ((de = readdir(d)) != NULL && de->d_name[0] == '.')
        ;
    assert_non_null(de);
    path = h_strfmt("%s/%s", out, de->d_name);
    closedir(d);
    rec = h_json_file(path);
    assert_non_null(rec);
    assert_string_equal(h_json_str(rec, "eventSource"), "aws:sqs");
    assert_non_null(strstr(h_json_str(rec, "eventSourceARN"), "q-list"));
    assert_string_equal(h_json_str(rec, "awsRegion"), "us-east-1");
    assert_non_null(strstr(h_json_str(rec, "body"), "\"n\""));
    assert_int_equal(strlen(h_json_str(rec, "md5OfBody")), 32);
    assert_string_equal(json_string_value(json_object_get(json_object_get(rec, "attributes"),
                                                          "ApproximateReceiveCount")),
                        "1");
    assert_non_null(json_object_get(json_object_get(rec, "attributes"), "SentTimestamp"));
    assert_true(json_is_object(json_object_get(rec, "messageAttributes")));
    assert_non_null(json_string_value(json_object_get(rec, "receiptHandle")));
    json_decref(rec);
    free(path);
    free(out);
    rworld_end(w);
}

static void test_filter_drops_and_acks(void **state)
{
    struct rworld *w = *state;
    char *out = dir_of(w, "out-filter/record");
    size_t all;

    push(w, "q-filter", 30, "{\"type\": \"order\", \"n\": ", "}");
    push(w, "q-filter", 30, "{\"type\": \"refund\", \"n\": ", "}");
    push(w, "q-filter", 10, "not json ", "");
    rworld_await_files(out, 30, 30000);
    await_list_drained(w, "q-filter", 10000);
    h_sleep_ms(300); /* nothing else may arrive: the others were filtered out */
    assert_int_equal(rworld_count_files(out, &all), 30);
    assert_int_equal(all, 30);
    free(out);
    rworld_end(w);
}

static void test_stream_group(void **state)
{
    struct rworld *w = *state;
    char *out = dir_of(w, "out-stream/record");
    int64_t deadline;
    size_t all;

    for (int i = 0; i < 120; i++) {
        redisReply *r = h_redis_cmd(&w->redis, "XADD s-events * n %d", i);

        assert_non_null(r);
        freeReplyObject(r);
    }
    rworld_await_files(out, 120, 30000);
    deadline = h_now_ms() + 10000;
    for (;;) {
        redisReply *p = h_redis_cmd(&w->redis, "XPENDING s-events g1");
        long long n = p != NULL && p->type == REDIS_REPLY_ARRAY && p->elements > 0
                          ? p->element[0]->integer
                          : -1;

        freeReplyObject(p);
        if (n == 0)
            break;
        if (h_now_ms() > deadline)
            fail_msg("%lld entries still pending in s-events/g1", n);
        h_sleep_ms(50);
    }
    assert_int_equal(rworld_count_files(out, &all), 120);
    assert_int_equal(all, 120);
    free(out);
    rworld_end(w);
}

static void test_partial_batch_failures(void **state)
{
    struct rworld *w = *state;
    char *out = dir_of(w, "out-partial/partial");
    size_t all;

    /* Every 4th record is reported failed once, so it is delivered twice. */
    push(w, "q-partial", 10, "{\"fail\": false, \"n\": ", "}");
    push(w, "q-partial", 5, "{\"fail\": true, \"n\": ", "}");
    rworld_await_files(out, 15, 30000);
    await_list_drained(w, "q-partial", 15000);
    assert_int_equal(rworld_count_files(out, &all), 15);
    assert_int_equal(all, 20);
    free(out);
    rworld_end(w);
}

static void test_poison_to_dead_letter(void **state)
{
    struct rworld *w = *state;
    char *out = dir_of(w, "out-poison/poison");
    int64_t deadline = h_now_ms() + 30000;
    redisReply *r;

    push(w, "q-poison", 7, "{\"good\": ", "}");
    push(w, "q-poison", 1, "{\"poison\": ", "}");
    rworld_await_files(out, 7, 30000);
    while (h_redis_int(&w->redis, "LLEN %s", "q-poison-dlq") < 1) {
        if (h_now_ms() > deadline)
            fail_msg("the poison record never reached the dead letter");
        h_sleep_ms(50);
    }
    await_list_drained(w, "q-poison", 10000);
    r = h_redis_cmd(&w->redis, "LRANGE q-poison-dlq 0 -1");
    assert_non_null(r);
    assert_int_equal(r->elements, 1);
    /* The dead letter holds the original body (in the list envelope with its attributes). */
    expect_contains(r->element[0]->str, "poison");
    freeReplyObject(r);
    assert_int_equal(rworld_count_files(out, NULL), 7);
    free(out);
    rworld_end(w);
}

static void test_retries_then_on_failure(void **state)
{
    struct rworld *w = *state;
    char *dest = dir_of(w, "onfail-dest");
    int64_t deadline = h_now_ms() + 30000;
    json_t *j = NULL, *ctx, *info;

    push(w, "q-onfail", 1, "{\"poison\": ", "}");
    while ((j = h_json_first_file(dest)) == NULL) {
        if (h_now_ms() > deadline)
            fail_msg("no on-failure record in %s", dest);
        h_sleep_ms(50);
    }
    await_list_drained(w, "q-onfail", 10000);
    ctx = json_object_get(j, "requestContext");
    assert_string_equal(h_json_str(ctx, "condition"), "RetryAttemptsExhausted");
    assert_int_equal(json_integer_value(json_object_get(ctx, "approximateInvokeCount")), 2);
    expect_contains(h_json_str(ctx, "functionArn"), ":function:onfail");
    assert_string_equal(h_json_str(json_object_get(j, "responseContext"), "functionError"),
                        "Unhandled");
    info = json_object_get(j, "RedisBatchInfo");
    assert_non_null(info);
    assert_int_equal(json_integer_value(json_object_get(info, "batchSize")), 1);
    json_decref(j);
    free(dest);
    rworld_end(w);
}

/*
 * maximum_record_age_s: a stream entry's SentTimestamp is its id's time, so an entry added with
 * an id from 1970 is far too old: its first failure ends the policy with RecordAgeExceeded.
 */
static void test_record_age(void **state)
{
    struct rworld *w = *state;
    char *dest = dir_of(w, "aged-dest");
    int64_t deadline = h_now_ms() + 30000;
    redisReply *r = h_redis_cmd(&w->redis, "XADD s-aged 1000-1 body {\"poison\":1}");
    json_t *j;

    assert_non_null(r);
    freeReplyObject(r);
    while ((j = h_json_first_file(dest)) == NULL) {
        if (h_now_ms() > deadline)
            fail_msg("no on-failure record in %s", dest);
        h_sleep_ms(50);
    }
    assert_string_equal(h_json_str(json_object_get(j, "requestContext"), "condition"),
                        "RecordAgeExceeded");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "requestContext"),
                                                        "approximateInvokeCount")),
                     1);
    assert_string_equal(h_json_str(json_object_get(j, "RedisBatchInfo"), "startMessageId"),
                        "1000-1");
    json_decref(j);
    free(dest);
    rworld_end(w);
}

static void test_malformed_partial_response(void **state)
{
    struct rworld *w = *state;
    char *dest = dir_of(w, "garbage-dest");
    int64_t deadline = h_now_ms() + 30000;
    json_t *j;

    push(w, "q-garbage", 3, "{\"n\": ", "}");
    while ((j = h_json_first_file(dest)) == NULL) {
        if (h_now_ms() > deadline)
            fail_msg("no on-failure record in %s", dest);
        h_sleep_ms(50);
    }
    await_list_drained(w, "q-garbage", 10000);
    expect_contains(h_json_str(json_object_get(j, "responseContext"), "errorMessage"),
                    "batchItemFailures");
    json_decref(j);
    free(dest);
    rworld_end(w);
}

/* A record over the 6 MB invoke limit is never invoked: it goes to the dead letter at once. */
static void test_too_large_to_dead_letter(void **state)
{
    struct rworld *w = *state;
    size_t len = 6u * 1024 * 1024 + 1000;
    char *body = malloc(len);
    int64_t deadline = h_now_ms() + 30000;
    redisReply *r;

    assert_non_null(body);
    memset(body, 'x', len);
    r = h_redis_cmd(&w->redis, "LPUSH q-big %b", body, len);
    assert_non_null(r);
    freeReplyObject(r);
    free(body);
    while (h_redis_int(&w->redis, "LLEN %s", "q-big-dlq") < 1) {
        if (h_now_ms() > deadline)
            fail_msg("the 6 MB record never reached the dead letter");
        h_sleep_ms(50);
    }
    await_list_drained(w, "q-big", 10000);
    r = h_redis_cmd(&w->redis, "LINDEX q-big-dlq 0");
    assert_non_null(r);
    assert_true(r->len > len);
    expect_contains(r->str + r->len - 400, "larger than the 6 MB invoke payload limit");
    freeReplyObject(r);
    rworld_end(w);
}

static void test_kill9_mid_drain(void **state)
{
    struct rworld *w = *state;
    char *out = dir_of(w, "out-slow/record");
    size_t all, uniq;

    push(w, "q-slow", 200, "{\"sleep\": 0.01, \"n\": ", "}");
    rworld_await_files(out, 20, 30000);
    fprintf(stderr, "kill -9 of the broker with %zu of 200 records delivered\n",
            rworld_count_files(out, NULL));
    rworld_kill9_restart(w);

    rworld_await_files(out, 200, 60000);
    await_list_drained(w, "q-slow", 20000);
    uniq = rworld_count_files(out, &all);
    fprintf(stderr, "after the restart: %zu records, %zu deliveries\n", uniq, all);
    assert_int_equal(uniq, 200);
    /* Duplicates only from what was in flight at the kill (held records at most). */
    assert_true(all - uniq <= 1000);
    free(out);
    rworld_end(w);
}

static int group_setup(void **state)
{
    return rworld_group_setup(state, "esm", config);
}

/*
 * Redis restarted under a running mapping (without persistence, so empty): the mapping says so
 * in LastProcessingResult while it is down, reconnects on its own, and delivers what is pushed
 * afterwards.
 */
static void test_redis_restart(void **state)
{
    struct rworld *w = *state;
    char *out = dir_of(w, "out-list/record");
    size_t before = rworld_count_files(out, NULL);
    json_t *m;

    assert_int_equal(h_redis_stop(&w->redis), 0);
    m = rworld_await_problem(w, "list", 20000);
    fprintf(stderr, "while Redis is down: %s\n", h_json_str(m, "LastProcessingResult"));
    json_decref(m);
    assert_int_equal(h_redis_start(&w->redis), 0);
    push(w, "q-list", 20, "{\"after\": ", "}");
    rworld_await_files(out, before + 20, 30000);
    await_list_drained(w, "q-list", 10000);
    m = rworld_mapping_json(w, "list");
    assert_string_equal(h_json_str(m, "State"), "Enabled");
    json_decref(m);
    free(out);
    rworld_end(w);
}

/*
 * A mapping disabled through the API stays disabled across a restart (data_dir/mappings.json):
 * what is pushed meanwhile waits in the list, and is delivered once it is enabled again.
 */
static void test_disabled_survives_restart(void **state)
{
    struct rworld *w = *state;
    char *out = dir_of(w, "out-list/record");
    size_t before;
    json_t *m;

    rworld_set_enabled(w, "list", false, "Disabled");
    assert_int_equal(h_broker_stop(&w->b, 15000), 0);
    assert_int_equal(rworld_start_broker(w), 0);
    w->mark = 0;
    m = rworld_mapping_json(w, "list");
    assert_string_equal(h_json_str(m, "State"), "Disabled");
    json_decref(m);

    before = rworld_count_files(out, NULL);
    push(w, "q-list", 5, "{\"while_disabled\": ", "}");
    h_sleep_ms(500);
    assert_int_equal(h_redis_int(&w->redis, "LLEN %s", "q-list"), 5);
    assert_int_equal(rworld_count_files(out, NULL), before);

    rworld_set_enabled(w, "list", true, "Enabled");
    rworld_await_files(out, before + 5, 30000);
    await_list_drained(w, "q-list", 10000);
    free(out);
    rworld_end(w);
}

/*
 * Disabling a mapping while it drains: running batches finish, what it holds besides them
 * (pending records, batches waiting for a slot) goes back to the list unacknowledged and is not
 * lost; enabled again, every record is delivered.
 */
static void test_disable_mid_drain(void **state)
{
    struct rworld *w = *state;
    char *out = dir_of(w, "out-slow/record");
    size_t before = rworld_count_files(out, NULL);
    json_t *m;

    push(w, "q-slow", 100, "{\"sleep\": 0.02, \"n\": ", "}");
    rworld_await_files(out, before + 10, 30000);
    rworld_set_enabled(w, "slow", false, "Disabled");
    /* The broker holds nothing any more; the rest is visible in the list's leases again. */
    m = rworld_mapping_json(w, "slow");
    assert_int_equal(h_json_int(json_object_get(json_object_get(m, "Switchyard"), "counters"),
                                "in_flight_records", -1),
                     0);
    json_decref(m);
    assert_true(rworld_count_files(out, NULL) < before + 100);
    rworld_set_enabled(w, "slow", true, "Enabled");
    rworld_await_files(out, before + 100, 60000);
    await_list_drained(w, "q-slow", 20000);
    free(out);
    rworld_end(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_list_drains_in_sqs_shape, rworld_setup,
                                        rworld_teardown),
        cmocka_unit_test_setup_teardown(test_filter_drops_and_acks, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_stream_group, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_partial_batch_failures, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_poison_to_dead_letter, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_retries_then_on_failure, rworld_setup,
                                        rworld_teardown),
        cmocka_unit_test_setup_teardown(test_record_age, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_malformed_partial_response, rworld_setup,
                                        rworld_teardown),
        cmocka_unit_test_setup_teardown(test_too_large_to_dead_letter, rworld_setup,
                                        rworld_teardown),
        cmocka_unit_test_setup_teardown(test_kill9_mid_drain, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_redis_restart, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_disabled_survives_restart, rworld_setup,
                                        rworld_teardown),
        cmocka_unit_test_setup_teardown(test_disable_mid_drain, rworld_setup, rworld_teardown),
    };
    int rc;

    itest_filter_from_env();
    rc = cmocka_run_group_tests_name("esm_redis", tests, group_setup, rworld_group_teardown);
    return rworld_exit_code(rc);
}
