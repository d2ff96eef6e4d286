/*
 * tests/integration/test_esm_api.c - the event source mapping control plane end to end: a real
 * redis-server, a real broker with five Redis list mappings, the Debian AWS CLI (/usr/bin/aws
 * with --endpoint-url) and `switchyard mappings`:
 *
 *   - list-event-source-mappings: Lambda's field names and values, the Switchyard extension,
 *     the FunctionName and EventSourceArn selections;
 *   - paging: --max-items with --starting-token, and --page-size (the CLI follows NextMarker);
 *   - get-event-source-mapping, and Lambda's 404 for an unknown UUID;
 *   - update --no-enabled: the mapping reaches Disabled and a record pushed then stays in the
 *     list; --enabled: it is delivered;
 *   - update of values (batch size, window, filters, response types) and the refusals (a bad
 *     value, another function, a create from an SQS ARN, which names no Redis server, and the
 *     delete of a mapping the config file owns; test_esm_create.c makes and deletes some);
 *   - the per-mapping and per-function families of /metrics and the /healthz mappings object;
 *   - `switchyard mappings` (table, enable, disable) and the argument checks of `filter test`.
 *
 * Every wait polls with a deadline; the one negative check (a disabled mapping does not take a
 * record) watches the list for a bounded window after the API said Disabled.
 */
#include "itest.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "rworld.h"

#define AWS "/usr/bin/aws"
#define ESM "/2015-03-31/event-source-mappings/"
#define N_MAPPINGS 5

/* clang-format off */
static const char config[] =
    "broker:\n"
    "  listen: 127.0.0.1:0\n"
    "  data_dir: @DATA@\n"
    "  shutdown_grace_ms: 2000\n"
    "functions:\n"
    "  rec: {runtime: python3, handler: app.record, code: @FIXTURES@/esm,\n"
    "        environment: {OUT: '@DIR@/out', PYTHONDONTWRITEBYTECODE: '1'}}\n"
    "  other: {runtime: python3, handler: app.record, code: @FIXTURES@/esm,\n"
    "          environment: {OUT: '@DIR@/out-other', PYTHONDONTWRITEBYTECODE: '1'}}\n"
    "mappings:\n"
    "  - name: jobs\n"
    "    function: rec\n"
    "    batch_size: 10\n"
    "    maximum_batching_window_ms: 500\n"
    "    source: {redis: {url: 'redis://127.0.0.1:@PORT@', list: q-jobs}}\n"
    "  - name: m2\n"
    "    function: rec\n"
    "    source: {redis: {url: 'redis://127.0.0.1:@PORT@', list: q-2}}\n"
    "  - name: m3\n"
    "    function: rec\n"
    "    source: {redis: {url: 'redis://127.0.0.1:@PORT@', list: q-3}}\n"
    "  - name: m4\n"
    "    function: rec\n"
    "    source: {redis: {url: 'redis://127.0.0.1:@PORT@', list: q-4}}\n"
    "  - name: m5\n"
    "    function: other\n"
    "    report_batch_item_failures: true\n"
    "    on_failure: 'file:@DIR@/failed'\n"
    "    filters: ['{\"body\": {\"type\": [\"order\"]}}']\n"
    "    source: {redis: {url: 'redis://127.0.0.1:@PORT@', list: q-5}}\n";
/* clang-format on */

static const char *const names[N_MAPPINGS] = {"jobs", "m2", "m3", "m4", "m5"};

/* ---- helpers ------------------------------------------------------------------------------- */

/* Fail unless ACTUAL (may be NULL: an absent member) equals WANT. */
#define expect_str(actual, want) expect_str_((actual), (want), #actual, __FILE__, __LINE__)
static void expect_str_(const char *actual, const char *want, const char *what, const char *file,
                        int line)
{
    if (actual == NULL || want == NULL || strcmp(actual, want) != 0)
        fail_msg("%s:%d: %s is %s%s%s, expected \"%s\"", file, line, what, actual ? "\"" : "",
                 actual ? actual : "absent", actual ? "\"" : "", want ? want : "(null)");
}

/* State of an answer, "" when absent (for comparisons). */
static const char *state_of(const json_t *j)
{
    const char *s = h_json_str(j, "State");

    return s != NULL ? s : "";
}

/* `aws lambda ARGS...` against the broker (see itest_aws()); R filled. */
static void aws(struct rworld *w, const char *const args[], struct h_run *r)
{
    itest_aws(&w->b, "test", args, r);
}

/* aws ARGS, which must exit 0 and print JSON (returned, new). */
static json_t *aws_json(struct rworld *w, const char *const args[])
{
    struct h_run r;
    json_t *j;

    aws(w, args, &r);
    expect_run_code(&r, 0);
    j = h_json_parse(r.out, r.out_len);
    if (j == NULL)
        fail_msg("aws %s printed no JSON:\n%s\n%s", args[0], r.out, r.err);
    h_run_free(&r);
    return j;
}

/* aws ARGS, which must fail with Lambda error CODE and a message containing NEEDLE. */
static void aws_error(struct rworld *w, const char *const args[], const char *code,
                      const char *needle)
{
    struct h_run r;

    aws(w, args, &r);
    if (r.code <= 0)
        fail_msg("aws %s exited %d, expected an error:\n%s\n%s", args[0], r.code, r.out, r.err);
    expect_contains(r.err, code);
    if (needle != NULL)
        expect_contains(r.err, needle);
    h_run_free(&r);
}

/* `switchyard ARGS...` against the broker; R filled. */
static void sy(struct rworld *w, const char *const args[], struct h_run *r)
{
    const char *clean[] = {"SWITCHYARD_ENDPOINT", "SWITCHYARD_TOKEN", NULL};
    char *argv[24];
    size_t n = 0;

    argv[n++] = (char *)h_binary();
    for (size_t i = 0; args[i] != NULL && n < 23; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    h_proc_run(argv, clean, w->b.dir, 30000, r);
}

static long long llen(const struct rworld *w, const char *list)
{
    redisReply *r = h_redis_cmd(&w->redis, "LLEN %s", list);
    long long n = r != NULL && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;

    freeReplyObject(r);
    return n;
}

static void push(const struct rworld *w, const char *list, const char *body)
{
    redisReply *r = h_redis_cmd(&w->redis, "LPUSH %s %s", list, body);

    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    freeReplyObject(r);
}

/* First deliveries recorded by app.record in DIR (files <messageId>.1). */
static size_t delivered_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t n = 0;

    while (d != NULL && (de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);

        if (de->d_name[0] != '.' && len > 2 && strcmp(de->d_name + len - 2, ".1") == 0)
            n++;
    }
    if (d != NULL)
        closedir(d);
    return n;
}

static void await_files(const char *dir, size_t want, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;

    while (delivered_files(dir) < want) {
        if (h_now_ms() > deadline)
            fail_msg("%zu of %zu records delivered to %s within %d ms", delivered_files(dir), want,
                     dir, timeout_ms);
        h_sleep_ms(50);
    }
}

/* GET the mapping UUID through the API (new JSON), failing the test unless 200. */
static json_t *get_esm(struct rworld *w, const char *uuid)
{
    char *path = h_strfmt(ESM "%s", uuid);
    json_t *j = itest_api_json(&w->b, "GET", path, NULL);

    free(path);
    return j;
}

/* The whole list through the API (new JSON array, config order). */
static json_t *list_all(struct rworld *w)
{
    json_t *j = itest_api_json(&w->b, "GET", ESM "?MaxItems=100", NULL);
    json_t *arr = json_incref(json_object_get(j, "EventSourceMappings"));

    json_decref(j);
    assert_true(json_is_array(arr));
    return arr;
}

/* UUID of the mapping called NAME (new string), from the list's Switchyard.name. */
static char *uuid_of(struct rworld *w, const char *name)
{
    json_t *arr = list_all(w), *e;
    char *uuid = NULL;
    size_t i;

    json_array_foreach(arr, i, e)
    {
        const char *n = h_json_str(json_object_get(e, "Switchyard"), "name");

        if (n != NULL && strcmp(n, name) == 0 && h_json_str(e, "UUID") != NULL)
            uuid = strdup(h_json_str(e, "UUID"));
    }
    json_decref(arr);
    if (uuid == NULL)
        fail_msg("no mapping named %s in the list", name);
    return uuid;
}

/* Poll GetEventSourceMapping until State is STATE. */
static void await_state(struct rworld *w, const char *uuid, const char *state, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;

    for (;;) {
        json_t *j = get_esm(w, uuid);
        bool done = h_json_str(j, "State") != NULL && strcmp(h_json_str(j, "State"), state) == 0;
        char *s = done ? NULL : json_dumps(j, JSON_COMPACT);

        json_decref(j);
        if (done)
            return;
        if (h_now_ms() > deadline)
            fail_msg("mapping %s not %s after %d ms: %s", uuid, state, timeout_ms, s);
        free(s);
        h_sleep_ms(50);
    }
}

/* The value of the sample LINE_PREFIX ("name{labels} ") in a /metrics answer; -1 if absent. */
static long long metric(struct rworld *w, const char *line_prefix)
{
    struct h_http_resp r;
    const char *p;
    long long v = -1;

    assert_int_equal(h_broker_request(&w->b, "GET", "/metrics", NULL, NULL, 0, 10000, &r), 0);
    expect_status(&r, 200);
    p = strstr(r.body, line_prefix);
    if (p != NULL)
        v = strtoll(p + strlen(line_prefix), NULL, 10);
    h_http_resp_free(&r);
    return v;
}

static int group_setup(void **state)
{
    return rworld_group_setup(state, "esmapi", config);
}

/* ---- tests --------------------------------------------------------------------------------- */

/* Every mapping Enabled first: the sources are connected before the tests rely on them. */
static void test_all_enabled(void **state)
{
    struct rworld *w = *state;

    for (int i = 0; i < N_MAPPINGS; i++) {
        char *uuid = uuid_of(w, names[i]);

        await_state(w, uuid, "Enabled", 20000);
        free(uuid);
    }
    rworld_end(w);
}

static void test_aws_list(void **state)
{
    struct rworld *w = *state;
    const char *list[] = {"list-event-source-mappings", NULL};
    const char *by_other[] = {"list-event-source-mappings", "--function-name", "other", NULL};
    const char *by_arn[] = {"list-event-source-mappings", "--function-name",
                            "arn:aws:lambda:us-east-1:000000000000:function:rec", NULL};
    const char *by_src[] = {"list-event-source-mappings", "--event-source-arn", NULL, NULL};
    json_t *j, *arr, *e, *sy_o, *k, *api;
    const char *uuid, *arn;
    char *want_arn, *src_arn;
    size_t i;

    if (!itest_have_aws()) {
        rworld_end(w);
        skip();
    }
    /* The Switchyard extension, from the API (the AWS CLI drops members it does not model). */
    api = list_all(w);
    assert_int_equal(json_array_size(api), N_MAPPINGS);
    json_array_foreach(api, i, e)
        expect_str(h_json_str(json_object_get(e, "Switchyard"), "name"), names[i]);
    sy_o = json_object_get(json_array_get(api, 0), "Switchyard");
    expect_str(h_json_str(sy_o, "source_kind"), "redis");
    expect_str(h_json_str(sy_o, "function"), "rec");
    assert_true(json_is_true(json_object_get(sy_o, "enabled")));
    assert_non_null(h_json_str(sy_o, "source_state"));
    assert_int_equal(h_json_int(sy_o, "maximum_batching_window_ms", -1), 500);
    assert_true(json_is_object(json_object_get(sy_o, "counters")));
    assert_true(h_json_int(json_object_get(sy_o, "counters"), "received", -1) >= 0);
    assert_true(json_is_integer(json_object_get(json_object_get(sy_o, "counters"), "lag")));

    /* The AWS CLI sees the same mappings, in the same order. */
    j = aws_json(w, list);
    arr = json_object_get(j, "EventSourceMappings");
    assert_int_equal(json_array_size(arr), N_MAPPINGS);
    json_array_foreach(arr, i, e)
        expect_str(h_json_str(e, "UUID"), h_json_str(json_array_get(api, i), "UUID"));

    /* jobs, field by field. */
    e = json_array_get(arr, 0);
    uuid = h_json_str(e, "UUID");
    assert_non_null(uuid);
    assert_int_equal(strlen(uuid), 36);
    /* EventSourceMappingArn is newer than the CLI's model (aws-cli 2.9): read it from the API. */
    want_arn = h_strfmt("arn:aws:lambda:us-east-1:000000000000:event-source-mapping:%s", uuid);
    arn = h_json_str(json_array_get(api, 0), "EventSourceMappingArn");
    assert_non_null(arn);
    expect_str(arn, want_arn);
    free(want_arn);
    expect_str(h_json_str(e, "FunctionArn"), "arn:aws:lambda:us-east-1:000000000000:function:rec");
    expect_str(h_json_str(e, "State"), "Enabled");
    assert_non_null(h_json_str(e, "EventSourceArn"));
    assert_non_null(json_object_get(e, "LastModified"));
    assert_int_equal(h_json_int(e, "BatchSize", -1), 10);
    k = json_object_get(e, "MaximumBatchingWindowInSeconds");
    /* An integer for typed SDKs: 500 ms is "at most 1 s"; the exact value is our extension. */
    if (!json_is_integer(k) || json_integer_value(k) != 1)
        fail_msg("MaximumBatchingWindowInSeconds of a 500 ms window is not 1: %s", "jobs");
    assert_int_equal(h_json_int(e, "MaximumRetryAttempts", 0), -1);
    assert_int_equal(h_json_int(e, "MaximumRecordAgeInSeconds", 0), -1);
    assert_true(json_is_false(json_object_get(e, "BisectBatchOnFunctionError")));
    assert_int_equal(json_array_size(json_object_get(e, "FunctionResponseTypes")), 0);
    assert_true(json_is_array(json_object_get(e, "FunctionResponseTypes")));
    assert_true(h_json_int(json_object_get(e, "ScalingConfig"), "MaximumConcurrency", 0) > 0);
    assert_null(json_object_get(e, "FilterCriteria"));
    assert_null(json_object_get(e, "DestinationConfig"));

    /* m5: filters, on-failure destination, partial batch responses. */
    e = json_array_get(arr, 4);
    k = json_array_get(json_object_get(json_object_get(e, "FilterCriteria"), "Filters"), 0);
    expect_contains(h_json_str(k, "Pattern"), "order");
    expect_contains(
        h_json_str(json_object_get(json_object_get(e, "DestinationConfig"), "OnFailure"),
                   "Destination"),
        "file:");
    expect_str(json_string_value(json_array_get(json_object_get(e, "FunctionResponseTypes"), 0)),
               "ReportBatchItemFailures");
    src_arn = strdup(h_json_str(json_array_get(arr, 1), "EventSourceArn"));
    json_decref(j);

    /* Selections: by function name, by function ARN, by event source ARN. */
    j = aws_json(w, by_other);
    arr = json_object_get(j, "EventSourceMappings");
    assert_int_equal(json_array_size(arr), 1);
    expect_str(h_json_str(json_array_get(arr, 0), "UUID"),
               h_json_str(json_array_get(api, 4), "UUID"));
    json_decref(j);
    j = aws_json(w, by_arn);
    assert_int_equal(json_array_size(json_object_get(j, "EventSourceMappings")), 4);
    json_decref(j);
    by_src[2] = src_arn;
    j = aws_json(w, by_src);
    arr = json_object_get(j, "EventSourceMappings");
    assert_int_equal(json_array_size(arr), 1);
    arn = h_json_str(json_array_get(arr, 0), "EventSourceArn");
    expect_str(arn, src_arn);
    json_decref(j);
    json_decref(api);
    free(src_arn);
    rworld_end(w);
}

/* --max-items N pages on the client with tokens; --page-size N makes the CLI follow NextMarker. */
static void test_aws_paging(void **state)
{
    struct rworld *w = *state;
    const char *args[] = {"list-event-source-mappings", "--max-items", "2", NULL, NULL, NULL};
    const char *sized[] = {"list-event-source-mappings", "--page-size", "2", NULL};
    char *token = NULL;
    size_t seen = 0, i;
    json_t *j, *arr, *e, *api;
    int pages = 0;

    if (!itest_have_aws()) {
        rworld_end(w);
        skip();
    }
    api = list_all(w);
    do {
        if (token != NULL) {
            args[3] = "--starting-token";
            args[4] = token;
        }
        j = aws_json(w, args);
        arr = json_object_get(j, "EventSourceMappings");
        assert_true(json_array_size(arr) <= 2);
        json_array_foreach(arr, i, e)
        {
            assert_true(seen < N_MAPPINGS);
            expect_str(h_json_str(e, "UUID"), h_json_str(json_array_get(api, seen), "UUID"));
            seen++;
        }
        free(token);
        token = h_json_str(j, "NextToken") ? strdup(h_json_str(j, "NextToken")) : NULL;
        json_decref(j);
        pages++;
    } while (token != NULL && pages < 10);
    assert_null(token);
    assert_int_equal(seen, N_MAPPINGS);
    assert_int_equal(pages, 3);
    json_decref(api);

    j = aws_json(w, sized);
    assert_int_equal(json_array_size(json_object_get(j, "EventSourceMappings")), N_MAPPINGS);
    json_decref(j);

    /* The API itself: a page of 2 and the marker of the third mapping. */
    j = itest_api_json(&w->b, "GET", ESM "?MaxItems=2", NULL);
    assert_int_equal(json_array_size(json_object_get(j, "EventSourceMappings")), 2);
    assert_non_null(h_json_str(j, "NextMarker"));
    {
        char *third = uuid_of(w, "m3");

        expect_str(h_json_str(j, "NextMarker"), third);
        free(third);
    }
    json_decref(j);
    rworld_end(w);
}

static void test_aws_get(void **state)
{
    struct rworld *w = *state;
    char *uuid = uuid_of(w, "m3");
    const char *get[] = {"get-event-source-mapping", "--uuid", uuid, NULL};
    const char *unknown[] = {"get-event-source-mapping", "--uuid",
                             "00000000-0000-4000-8000-000000000000", NULL};
    json_t *j;

    if (!itest_have_aws()) {
        free(uuid);
        rworld_end(w);
        skip();
    }
    j = aws_json(w, get);
    expect_str(h_json_str(j, "UUID"), uuid);
    expect_str(h_json_str(j, "FunctionArn"), "arn:aws:lambda:us-east-1:000000000000:function:rec");
    json_decref(j);
    aws_error(w, unknown, "ResourceNotFoundException",
              "The resource you requested does not exist.");
    free(uuid);
    rworld_end(w);
}

/* Disabled: the source stops and a pushed record stays in the list; enabled: it is delivered. */
static void test_aws_disable_enable(void **state)
{
    struct rworld *w = *state;
    char *uuid = uuid_of(w, "jobs");
    char *out = h_strfmt("%s/out/record", w->b.dir);
    const char *off[] = {"update-event-source-mapping", "--uuid", uuid, "--no-enabled", NULL};
    const char *on[] = {"update-event-source-mapping", "--uuid", uuid, "--enabled", NULL};
    size_t before;
    int64_t until;
    json_t *j;

    if (!itest_have_aws()) {
        free(uuid);
        free(out);
        rworld_end(w);
        skip();
    }
    /* It works before: one record through. */
    before = delivered_files(out);
    push(w, "q-jobs", "{\"n\": 1}");
    await_files(out, before + 1, 30000);

    j = aws_json(w, off);
    expect_str(h_json_str(j, "UUID"), uuid);
    if (strcmp(state_of(j), "Disabling") != 0 && strcmp(state_of(j), "Disabled") != 0)
        fail_msg("update --no-enabled answered State '%s'", state_of(j));
    json_decref(j);
    j = get_esm(w, uuid);
    assert_true(json_is_false(json_object_get(json_object_get(j, "Switchyard"), "enabled")));
    json_decref(j);
    await_state(w, uuid, "Disabled", 20000);

    /* The one negative check: nothing takes the record while the mapping is disabled. */
    push(w, "q-jobs", "{\"n\": 2}");
    until = h_now_ms() + 1500;
    while (h_now_ms() < until) {
        assert_int_equal(llen(w, "q-jobs"), 1);
        assert_int_equal(delivered_files(out), before + 1);
        h_sleep_ms(50);
    }

    j = aws_json(w, on);
    if (strcmp(state_of(j), "Enabling") != 0 && strcmp(state_of(j), "Enabled") != 0)
        fail_msg("update --enabled answered State '%s'", state_of(j));
    json_decref(j);
    await_state(w, uuid, "Enabled", 20000);
    await_files(out, before + 2, 30000);
    {
        int64_t deadline = h_now_ms() + 10000;

        while (llen(w, "q-jobs") != 0) {
            if (h_now_ms() > deadline)
                fail_msg("q-jobs still holds %lld record(s)", llen(w, "q-jobs"));
            h_sleep_ms(50);
        }
    }
    free(uuid);
    free(out);
    rworld_end(w);
}

static void test_aws_update_values(void **state)
{
    struct rworld *w = *state;
    char *uuid = uuid_of(w, "m2");
    const char *values[] = {"update-event-source-mapping",
                            "--uuid",
                            uuid,
                            "--batch-size",
                            "5",
                            "--maximum-batching-window-in-seconds",
                            "2",
                            "--function-response-types",
                            "ReportBatchItemFailures",
                            NULL};
    const char *filter[] = {"update-event-source-mapping",
                            "--uuid",
                            uuid,
                            "--filter-criteria",
                            "{\"Filters\": [{\"Pattern\": \"{\\\"body\\\": {\\\"k\\\": [1]}}\"}]}",
                            NULL};
    const char *unfilter[] = {"update-event-source-mapping", "--uuid", uuid,
                              "--filter-criteria",           "{}",     NULL};
    /* (0 would be refused by the CLI itself: botocore checks minimums, not maximums.) */
    const char *bad_size[] = {
        "update-event-source-mapping", "--uuid", uuid, "--batch-size", "10001", NULL};
    const char *bad_window[] = {"update-event-source-mapping",          "--uuid", uuid,
                                "--maximum-batching-window-in-seconds", "301",    NULL};
    const char *bad_pattern[] = {"update-event-source-mapping",
                                 "--uuid",
                                 uuid,
                                 "--filter-criteria",
                                 "{\"Filters\": [{\"Pattern\": \"not json\"}]}",
                                 NULL};
    const char *other_fn[] = {
        "update-event-source-mapping", "--uuid", uuid, "--function-name", "other", NULL};
    const char *same_fn[] = {
        "update-event-source-mapping", "--uuid", uuid, "--function-name", "rec", NULL};
    json_t *j;

    if (!itest_have_aws()) {
        free(uuid);
        rworld_end(w);
        skip();
    }
    j = aws_json(w, values);
    assert_int_equal(h_json_int(j, "BatchSize", -1), 5);
    assert_int_equal(h_json_int(j, "MaximumBatchingWindowInSeconds", -1), 2);
    expect_str(json_string_value(json_array_get(json_object_get(j, "FunctionResponseTypes"), 0)),
               "ReportBatchItemFailures");
    json_decref(j);
    j = get_esm(w, uuid);
    assert_int_equal(h_json_int(j, "BatchSize", -1), 5);
    assert_int_equal(h_json_int(json_object_get(j, "Switchyard"), "maximum_batching_window_ms", -1),
                     2000);
    json_decref(j);

    j = aws_json(w, filter);
    expect_contains(
        h_json_str(
            json_array_get(json_object_get(json_object_get(j, "FilterCriteria"), "Filters"), 0),
            "Pattern"),
        "\"k\"");
    json_decref(j);
    j = aws_json(w, unfilter);
    assert_null(json_object_get(j, "FilterCriteria"));
    json_decref(j);

    aws_error(w, bad_size, "InvalidParameterValueException", NULL);
    aws_error(w, bad_window, "InvalidParameterValueException", "MaximumBatchingWindowInSeconds");
    aws_error(w, bad_pattern, "InvalidParameterValueException", NULL);
    aws_error(w, other_fn, "InvalidParameterValueException", "not supported");
    j = aws_json(w, same_fn);
    assert_int_equal(h_json_int(j, "BatchSize", -1), 5); /* the refusals changed nothing */
    json_decref(j);

    /* Wrong JSON types straight through the API. */
    {
        char *path = h_strfmt(ESM "%s", uuid);
        const char *hdrs[] = {"Content-Type: application/json", NULL};
        struct h_http_resp r;
        json_t *e;

        const char *b1 = "{\"BatchSize\":\"5\"}", *b2 = "{\"Enabled\":1}";
        const char *b3 = "{\"ParallelizationFactor\":3,\"BatchSize\":10}";

        assert_int_equal(h_broker_request(&w->b, "PUT", path, hdrs, b1, strlen(b1), 10000, &r), 0);
        e = expect_api_error(&r, 400, "InvalidParameterValueException");
        json_decref(e);
        h_http_resp_free(&r);
        assert_int_equal(h_broker_request(&w->b, "PUT", path, hdrs, b2, strlen(b2), 10000, &r), 0);
        e = expect_api_error(&r, 400, "InvalidParameterValueException");
        json_decref(e);
        h_http_resp_free(&r);
        /* Unknown members are ignored, as AWS does. */
        assert_int_equal(h_broker_request(&w->b, "PUT", path, hdrs, b3, strlen(b3), 10000, &r), 0);
        expect_status(&r, 202);
        h_http_resp_free(&r);
        free(path);
    }
    free(uuid);
    rworld_end(w);
}

static void test_aws_create_sqs_arn_delete_file_owned_refused(void **state)
{
    struct rworld *w = *state;
    char *uuid = uuid_of(w, "m4");
    const char *create[] = {"create-event-source-mapping",
                            "--function-name",
                            "rec",
                            "--event-source-arn",
                            "arn:aws:sqs:us-east-1:000000000000:q",
                            NULL};
    const char *del[] = {"delete-event-source-mapping", "--uuid", uuid, NULL};

    if (!itest_have_aws()) {
        free(uuid);
        rworld_end(w);
        skip();
    }
    aws_error(w, create, "InvalidParameterValueException", "names a queue but not its Redis server");
    aws_error(w, del, "InvalidParameterValueException", "declared in the config file");
    /* Nothing was added or removed. */
    {
        json_t *arr = list_all(w);

        assert_int_equal(json_array_size(arr), N_MAPPINGS);
        json_decref(arr);
    }
    json_decref(get_esm(w, uuid));
    free(uuid);
    rworld_end(w);
}

/* Two records through m3: its counters, rec's invocations and durations, /healthz. */
static void test_metrics_and_health(void **state)
{
    struct rworld *w = *state;
    char *out = h_strfmt("%s/out/record", w->b.dir);
    size_t before = delivered_files(out);
    json_t *h, *m;

    push(w, "q-3", "{\"n\": 31}");
    push(w, "q-3", "{\"n\": 32}");
    await_files(out, before + 2, 30000);
    free(out);
    /* The counters follow the handler's file: wait for the outcome to be counted. */
    {
        int64_t deadline = h_now_ms() + 10000;

        while (metric(w, "switchyard_mapping_records_delivered_total{mapping=\"m3\","
                         "function=\"rec\"} ") < 2) {
            if (h_now_ms() > deadline)
                fail_msg("m3's delivered counter did not reach 2");
            h_sleep_ms(50);
        }
    }
    assert_true(metric(w, "switchyard_mapping_records_received_total{mapping=\"m3\","
                          "function=\"rec\"} ") >= 2);
    assert_true(metric(w, "switchyard_mapping_batches_total{mapping=\"m3\",function=\"rec\"} ") >=
                1);
    assert_int_equal(metric(w, "switchyard_mapping_records_failed_total{mapping=\"m3\","
                               "function=\"rec\"} "),
                     0);
    assert_int_equal(metric(w, "switchyard_mapping_in_flight_records{mapping=\"m5\","
                               "function=\"other\"} "),
                     0);
    assert_true(metric(w, "switchyard_function_invocations_total{function=\"rec\"} ") >= 1);
    assert_true(metric(w, "switchyard_function_duration_milliseconds_count{function=\"rec\"} ") >=
                1);
    assert_true(metric(w, "switchyard_function_duration_milliseconds_bucket{function=\"rec\","
                          "le=\"+Inf\"} ") >= 1);
    assert_int_equal(metric(w, "switchyard_function_invocations_total{function=\"other\"} "), 0);

    /* Acknowledged records leave the in-flight count at the same moment, or just after. */
    {
        int64_t deadline = h_now_ms() + 10000;

        while (metric(w, "switchyard_mapping_in_flight_records{mapping=\"m3\","
                         "function=\"rec\"} ") != 0) {
            if (h_now_ms() > deadline)
                fail_msg("m3 still holds records in flight");
            h_sleep_ms(50);
        }
    }
    h = itest_api_json(&w->b, "GET", "/healthz", NULL);
    expect_str(h_json_str(h, "status"), "ok");
    m = json_object_get(json_object_get(h, "mappings"), "m3");
    assert_true(json_is_object(m));
    expect_str(h_json_str(m, "state"), "Enabled");
    expect_str(h_json_str(m, "function"), "rec");
    assert_true(h_json_int(m, "delivered", -1) >= 2);
    assert_int_equal(h_json_int(m, "in_flight_records", -1), 0);
    assert_int_equal(json_object_size(json_object_get(h, "mappings")), N_MAPPINGS);
    json_decref(h);
    rworld_end(w);
}

static void test_cli_mappings(void **state)
{
    struct rworld *w = *state;
    char *url = h_broker_url(&w->b);
    char *uuid = uuid_of(w, "m4");
    const char *table[] = {"mappings", "--endpoint", url, NULL};
    const char *off[] = {"mappings", "disable", "m4", "--endpoint", url, NULL};
    const char *on[] = {"mappings", "enable", "m4", "--endpoint", url, NULL};
    const char *nope[] = {"mappings", "enable", "nope", "--endpoint", url, NULL};
    const char *bad[] = {"mappings", "stop", "m4", "--endpoint", url, NULL};
    const char *ft_none[] = {"filter", "test", NULL};
    const char *ft_both[] = {"filter",         "test",         "--config",
                             w->b.config_path, "--mapping",    "m5",
                             "--pattern",      "{\"a\": [1]}", NULL};
    const char *ft_unknown[] = {"filter",    "test", "--config", w->b.config_path,
                                "--mapping", "nope", NULL};
    struct h_run r;

    sy(w, table, &r);
    expect_run_code(&r, 0);
    expect_contains(r.out, "NAME");
    expect_contains(r.out, "LAST RESULT");
    expect_contains(r.out, "IN FLIGHT");
    for (int i = 0; i < N_MAPPINGS; i++)
        expect_contains(r.out, names[i]);
    expect_contains(r.out, "redis");
    h_run_free(&r);

    sy(w, off, &r);
    expect_run_code(&r, 0);
    expect_contains(r.out, "m4: Disabl");
    h_run_free(&r);
    await_state(w, uuid, "Disabled", 20000);
    sy(w, table, &r);
    expect_run_code(&r, 0);
    expect_contains(r.out, "Disabled");
    h_run_free(&r);
    sy(w, on, &r);
    expect_run_code(&r, 0);
    expect_contains(r.out, "m4: Enabl");
    h_run_free(&r);
    await_state(w, uuid, "Enabled", 20000);

    sy(w, nope, &r);
    expect_run_code(&r, 1);
    expect_contains(r.err, "no mapping named 'nope'");
    h_run_free(&r);
    sy(w, bad, &r);
    expect_run_code(&r, 2);
    h_run_free(&r);

    /* `filter test` argument checks (the matching itself is cli_filter.c's). */
    sy(w, ft_none, &r);
    expect_run_code(&r, 2);
    h_run_free(&r);
    sy(w, ft_both, &r);
    expect_run_code(&r, 2);
    h_run_free(&r);
    sy(w, ft_unknown, &r);
    expect_run_code(&r, 1);
    expect_contains(r.err, "no mapping named 'nope'");
    h_run_free(&r);
    free(uuid);
    free(url);
    rworld_end(w);
}

/*
 * The AWS SDK for Python (Debian's python3-boto3, run by /usr/bin/python3, which has it):
 * botocore parses every answer with Lambda's service model, types included, so this catches
 * shapes the CLI would print without complaint. List (with its paginator), Get, Update.
 */
static const char boto3_script[] =
    "import sys, boto3\n"
    "c = boto3.client('lambda', endpoint_url=sys.argv[1], region_name='us-east-1',\n"
    "                 aws_access_key_id='x', aws_secret_access_key='x')\n"
    "maps = [m for page in c.get_paginator('list_event_source_mappings').paginate(\n"
    "        PaginationConfig={'PageSize': 2}) for m in page['EventSourceMappings']]\n"
    "assert len(maps) == int(sys.argv[2]), maps\n"
    "m = c.get_event_source_mapping(UUID=maps[0]['UUID'])\n"
    "assert m['UUID'] == maps[0]['UUID'] and isinstance(m['BatchSize'], int), m\n"
    "assert isinstance(m['MaximumBatchingWindowInSeconds'], int), m\n"
    "assert isinstance(m['LastModified'].year, int), m\n"
    "u = c.update_event_source_mapping(UUID=m['UUID'], BatchSize=m['BatchSize'])\n"
    "assert u['ResponseMetadata']['HTTPStatusCode'] == 202, u\n"
    "try:\n"
    "    c.get_event_source_mapping(UUID='00000000-0000-0000-0000-000000000000')\n"
    "    sys.exit('no error for an unknown UUID')\n"
    "except c.exceptions.ResourceNotFoundException:\n"
    "    pass\n"
    "print('boto3 ok', len(maps), m['State'])\n";

static void test_boto3(void **state)
{
    struct rworld *w = *state;
    char *url = h_broker_url(&w->b);
    char *n = h_strfmt("%d", N_MAPPINGS);
    char *argv[] = {"/usr/bin/python3", "-c", (char *)boto3_script, url, n, NULL};
    const char *env[] = {"AWS_EC2_METADATA_DISABLED=true", "AWS_PROFILE", "AWS_CONFIG_FILE",
                         "AWS_SHARED_CREDENTIALS_FILE", NULL};
    struct h_run r;

    h_proc_run(argv, env, w->b.dir, 60000, &r);
    expect_run_code(&r, 0);
    expect_contains(r.out, "boto3 ok");
    h_run_free(&r);
    free(n);
    free(url);
    rworld_end(w);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, rworld_setup, rworld_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_all_enabled),
        T(test_aws_list),
        T(test_aws_paging),
        T(test_aws_get),
        T(test_aws_disable_enable),
        T(test_aws_update_values),
        T(test_aws_create_sqs_arn_delete_file_owned_refused),
        T(test_metrics_and_health),
        T(test_cli_mappings),
        T(test_boto3),
    };
    int rc;

    itest_filter_from_env();
    rc = cmocka_run_group_tests_name("esm_api", tests, group_setup, rworld_group_teardown);
    return rworld_exit_code(rc);
}
