/*
 * tests/integration/test_esm_create.c - CreateEventSourceMapping and DeleteEventSourceMapping
 * end to end: a real redis-server, a real broker and real Python handlers (handlers/esm/app.py,
 * one file per record they get):
 *
 *   - a mapping created through the API for a Redis list (EventSourceArn redis://.../list/KEY)
 *     answers 202 in State Creating with Lambda's fields, then runs: records pushed are
 *     processed and acknowledged;
 *   - the same source and function again is 409 ResourceConflictException, in Lambda's words;
 *   - malformed requests are 400 and name the parameter; an unknown function or alias is 404;
 *   - a mapping declared in the config file cannot be deleted through the API;
 *   - deleting a mapping while a slow batch runs: 202 in State Deleting, the batch finishes and
 *     is acknowledged, the mapping disappears, records pushed after the delete stay in the list;
 *     created again, it has the same UUID and takes them;
 *   - a mapping created through the API (and an update of it) survives a restart;
 *   - SIGTERM while a deletion waits for its batch: a clean stop, and it is not made again;
 *   - qualified targets declared in the file: `fn:$LATEST` runs on the function with a
 *     qualified FunctionArn; `fn:live` (an alias that does not exist) holds its records without
 *     using an attempt, says why in LastProcessingResult and warns once.
 *
 * Every wait polls with a deadline.
 */
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "rworld.h"

#define ESM "/2015-03-31/event-source-mappings"

/* clang-format off */
static const char config[] =
    "broker:\n"
    "  listen: 127.0.0.1:0\n"
    "  data_dir: @DATA@\n"
    "  shutdown_grace_ms: 2000\n"
    "functions:\n"
    "  rec: {runtime: python3, handler: app.record, code: @FIXTURES@/esm,\n"
    "        environment: {OUT: '@DIR@/out-rec', PYTHONDONTWRITEBYTECODE: '1'}}\n"
    "  slow: {runtime: python3, handler: app.record, code: @FIXTURES@/esm, timeout_s: 30,\n"
    "         environment: {OUT: '@DIR@/out-slow', PYTHONDONTWRITEBYTECODE: '1'}}\n"
    "  keep: {runtime: python3, handler: app.record, code: @FIXTURES@/esm,\n"
    "         environment: {OUT: '@DIR@/out-keep', PYTHONDONTWRITEBYTECODE: '1'}}\n"
    "  qual: {runtime: python3, handler: app.record, code: @FIXTURES@/esm,\n"
    "         environment: {OUT: '@DIR@/out-qual', PYTHONDONTWRITEBYTECODE: '1'}}\n"
    "  aliased: {runtime: python3, handler: app.record, code: @FIXTURES@/esm,\n"
    "            environment: {OUT: '@DIR@/out-aliased', PYTHONDONTWRITEBYTECODE: '1'}}\n"
    "mappings:\n"
    "  - name: filed\n"
    "    function: rec\n"
    "    source: {redis: {url: 'redis://127.0.0.1:@PORT@', list: q-filed}}\n"
    "  - name: latest\n"
    "    function: 'qual:$LATEST'\n"
    "    source: {redis: {url: 'redis://127.0.0.1:@PORT@', list: q-latest}}\n"
    "  - name: no-alias\n"
    "    function: aliased:live\n"
    "    source: {redis: {url: 'redis://127.0.0.1:@PORT@', list: q-alias}}\n";
/* clang-format on */

/* ---- helpers ------------------------------------------------------------------------------- */

/* METHOD PATH with BODY (may be NULL) through the API; R filled (free it). */
static void api(struct rworld *w, const char *method, const char *path, const char *body,
                struct h_http_resp *r)
{
    const char *hdrs[] = {"Content-Type: application/json", NULL};

    assert_int_equal(h_broker_request(&w->b, method, path, hdrs, body,
                                      body != NULL ? strlen(body) : 0, 10000, r),
                     0);
}

/* POST Create with BODY: the 202 answer (new), failing the test otherwise. */
static json_t *create(struct rworld *w, const char *body)
{
    struct h_http_resp r;
    json_t *j;

    api(w, "POST", ESM "/", body, &r);
    expect_status(&r, 202);
    j = resp_json(&r);
    h_http_resp_free(&r);
    return j;
}

/* POST Create with BODY, which must fail with STATUS and CODE, the message holding NEEDLE. */
static void create_fails(struct rworld *w, const char *body, int status, const char *code,
                         const char *needle)
{
    struct h_http_resp r;
    json_t *e;

    api(w, "POST", ESM, body, &r);
    e = expect_api_error(&r, status, code);
    if (needle != NULL) {
        const char *m = h_json_str(e, "message");

        expect_contains(m != NULL ? m : h_json_str(e, "Message"), needle);
    }
    json_decref(e);
    h_http_resp_free(&r);
}

/* GET the mapping UUID: its JSON (new), or NULL after a 404. */
static json_t *get_or_null(struct rworld *w, const char *uuid)
{
    char *path = h_strfmt(ESM "/%s", uuid);
    struct h_http_resp r;
    json_t *j = NULL;

    api(w, "GET", path, NULL, &r);
    if (r.status == 404) {
        json_decref(expect_api_error(&r, 404, "ResourceNotFoundException"));
    } else {
        expect_status(&r, 200);
        j = resp_json(&r);
    }
    h_http_resp_free(&r);
    free(path);
    return j;
}

static long long counter(const json_t *m, const char *name)
{
    return h_json_int(json_object_get(json_object_get(m, "Switchyard"), "counters"), name, -1);
}

/* LPUSH BODY to LIST (one argument: hiredis splits a format at its spaces). */
static void push_body(const struct rworld *w, const char *list, const char *body)
{
    redisReply *r = h_redis_cmd(&w->redis, "LPUSH %s %s", list, body);

    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    freeReplyObject(r);
}

/* LPUSH N bodies {"KEY": i} to LIST. */
static void push(const struct rworld *w, const char *list, int n, const char *key)
{
    for (int i = 0; i < n; i++) {
        char body[128];

        snprintf(body, sizeof(body), "{\"%s\": %d}", key, i);
        push_body(w, list, body);
    }
}

/* The list and its in-flight structures empty (every record acknowledged). */
static void await_drained(const struct rworld *w, const char *list, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;

    for (;;) {
        long long len = h_redis_int(&w->redis, "LLEN %s", list),
                  held = h_redis_int(&w->redis, "ZCARD %s:sy:inflight", list);

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

/* A Create body for function FN reading the Redis list LIST, with EXTRA members (", ..."). */
static char *redis_body(const struct rworld *w, const char *fn, const char *list, const char *extra)
{
    return h_strfmt("{\"FunctionName\": \"%s\", \"EventSourceArn\": "
                    "\"redis://127.0.0.1:%d/list/%s\"%s}",
                    fn, w->redis.port, list, extra);
}

/* ---- tests --------------------------------------------------------------------------------- */

/* Created through the API: Lambda's answer in Creating, then the records flow. */
static void test_create_runs(void **state)
{
    struct rworld *w = *state;
    char *body = redis_body(w, "rec", "q-api", ", \"BatchSize\": 5, \"Enabled\": true");
    char *out = dir_of(w, "out-rec/record");
    char *arn = h_strfmt("arn:aws:sqs:us-east-1:000000000000:q-api");
    json_t *m = create(w, body), *g;

    assert_string_equal(h_json_str(m, "State"), "Creating");
    assert_string_equal(h_json_str(m, "StateTransitionReason"), "USER_INITIATED");
    assert_int_equal(strlen(h_json_str(m, "UUID")), 36);
    assert_string_equal(h_json_str(m, "EventSourceArn"), arn);
    assert_string_equal(h_json_str(m, "FunctionArn"),
                        "arn:aws:lambda:us-east-1:000000000000:function:rec");
    assert_int_equal(h_json_int(m, "BatchSize", -1), 5);
    assert_string_equal(h_json_str(json_object_get(m, "Switchyard"), "origin"), "api");
    expect_contains(h_json_str(json_object_get(m, "Switchyard"), "name"), "esm-");

    push(w, "q-api", 20, "n");
    rworld_await_files(out, 20, 30000);
    await_drained(w, "q-api", 10000);
    g = get_or_null(w, h_json_str(m, "UUID"));
    assert_non_null(g);
    assert_string_equal(h_json_str(g, "State"), "Enabled");
    assert_int_equal(counter(g, "delivered"), 20);
    json_decref(g);
    json_decref(m);
    free(arn);
    free(out);
    free(body);
    rworld_end(w);
}

/* One mapping per source and function: Lambda's 409, whatever else differs. */
static void test_duplicate_conflicts(void **state)
{
    struct rworld *w = *state;
    char *again = redis_body(w, "rec:$LATEST", "q-api", ", \"BatchSize\": 9");
    char *file_src = redis_body(w, "rec", "q-filed", "");

    create_fails(w, again, 409, "ResourceConflictException",
                 "provided mapping already exists. Please update or delete the existing mapping "
                 "with UUID");
    /* The file's mappings count too. */
    create_fails(w, file_src, 409, "ResourceConflictException", "q-filed");
    free(again);
    free(file_src);
    rworld_end(w);
}

/* Malformed requests: 400 naming the parameter (the config's rules), 404 for what is not there. */
static void test_malformed(void **state)
{
    struct rworld *w = *state;
    char *b_size = redis_body(w, "rec", "q-bad", ", \"BatchSize\": 0");
    char *b_age = redis_body(w, "rec", "q-bad", ", \"MaximumRecordAgeInSeconds\": 30");
    char *b_window = redis_body(w, "rec", "q-bad", ", \"MaximumBatchingWindowInSeconds\": 301");
    char *b_pattern = redis_body(w, "rec", "q-bad",
                                 ", \"FilterCriteria\": {\"Filters\": [{\"Pattern\": \"nope\"}]}");
    char *b_type = redis_body(w, "rec", "q-bad", ", \"BatchSize\": \"5\"");
    char *b_extra = redis_body(w, "rec", "q-bad",
                               ", \"Switchyard\": {\"source\": {\"redis\": {\"visibility\": 5}}}");
    char *b_topics = redis_body(w, "rec", "q-bad", ", \"Topics\": [\"t\"]");
    char *b_alias = redis_body(w, "rec:live", "q-bad", "");
    char *b_fn = redis_body(w, "nope", "q-bad", "");
    char *b_dest = redis_body(w, "rec", "q-bad",
                              ", \"DestinationConfig\": {\"OnFailure\": {\"Destination\": "
                              "\"arn:aws:sqs:us-east-1:000000000000:dlq\"}}");
    char *b_env = redis_body(w, "rec", "q-${HOME}", "");

    create_fails(w, b_size, 400, "InvalidParameterValueException",
                 "BatchSize: must be 1..10000 (got 0)");
    create_fails(w, b_age, 400, "InvalidParameterValueException", "MaximumRecordAgeInSeconds");
    create_fails(w, b_window, 400, "InvalidParameterValueException",
                 "MaximumBatchingWindowInSeconds");
    create_fails(w, b_pattern, 400, "InvalidParameterValueException", "FilterCriteria.Filters[0]");
    create_fails(w, b_type, 400, "InvalidParameterValueException", "BatchSize must be an integer");
    create_fails(w, b_extra, 400, "InvalidParameterValueException",
                 "Switchyard.source.redis.visibility: unknown key; did you mean "
                 "'visibility_timeout_s'?");
    create_fails(w, b_topics, 400, "InvalidParameterValueException", "Topics");
    create_fails(w, b_dest, 400, "InvalidParameterValueException",
                 "DestinationConfig.OnFailure.Destination");
    create_fails(w, b_alias, 404, "ResourceNotFoundException", "function:rec:live");
    create_fails(w, b_fn, 404, "ResourceNotFoundException", "function:nope");
    create_fails(w, "{\"EventSourceArn\": \"redis://127.0.0.1:1/list/x\"}", 400,
                 "ValidationException", "functionName");
    create_fails(w, "{\"FunctionName\": \"rec\"}", 400, "InvalidParameterValueException",
                 "EventSourceArn or SelfManagedEventSource is required");
    create_fails(w,
                 "{\"FunctionName\": \"rec\", \"EventSourceArn\": \"arn:aws:sqs:us-east-1:"
                 "000000000000:q\"}",
                 400, "InvalidParameterValueException", "redis://");
    create_fails(w, "{\"FunctionName\": \"rec\", \"EventSourceArn\": \"redis://h/q\"}", 400,
                 "InvalidParameterValueException", "EventSourceArn: expected redis://");
    create_fails(w,
                 "{\"FunctionName\": \"rec\", \"Queues\": [\"q\"], \"EventSourceArn\": "
                 "\"redis://127.0.0.1:1/list/x\"}",
                 400, "InvalidParameterValueException", "Queues is not supported");
    create_fails(w, "{\"FunctionName\": ", 400, "InvalidRequestContentException", NULL);
    /* A value is taken literally: no ${VAR} of the broker's environment reaches the mapping. */
    {
        json_t *m = create(w, b_env);

        assert_string_equal(h_json_str(m, "EventSourceArn"),
                            "arn:aws:sqs:us-east-1:000000000000:q-${HOME}");
        json_decref(m);
    }
    /* Nothing else was made: the file's three, test_create_runs's and the literal one. */
    {
        json_t *list = itest_api_json(&w->b, "GET", ESM, NULL);

        assert_int_equal(json_array_size(json_object_get(list, "EventSourceMappings")), 5);
        json_decref(list);
    }
    free(b_size);
    free(b_age);
    free(b_window);
    free(b_pattern);
    free(b_type);
    free(b_extra);
    free(b_topics);
    free(b_alias);
    free(b_fn);
    free(b_dest);
    free(b_env);
    rworld_end(w);
}

/* The file owns its mappings: Delete is refused, and says so. */
static void test_delete_file_owned(void **state)
{
    struct rworld *w = *state;
    json_t *m = rworld_mapping_json(w, "filed"), *g;
    char *path = h_strfmt(ESM "/%s", h_json_str(m, "UUID"));
    struct h_http_resp r;
    json_t *e;

    api(w, "DELETE", path, NULL, &r);
    e = expect_api_error(&r, 400, "InvalidParameterValueException");
    expect_contains(h_json_str(e, "message"), "declared in the config file");
    json_decref(e);
    h_http_resp_free(&r);
    g = get_or_null(w, h_json_str(m, "UUID"));
    assert_non_null(g);
    assert_string_equal(h_json_str(g, "State"), "Enabled");
    json_decref(g);
    /* Nor can a mapping that does not exist. */
    api(w, "DELETE", ESM "/00000000-0000-4000-8000-000000000000", NULL, &r);
    json_decref(expect_api_error(&r, 404, "ResourceNotFoundException"));
    h_http_resp_free(&r);
    json_decref(m);
    free(path);
    rworld_end(w);
}

/*
 * Delete while a slow batch runs: it finishes and is acknowledged; records pushed after the
 * delete stay in the list; created again (the same request), the mapping has the same UUID and
 * takes them.
 */
static void test_delete_in_flight(void **state)
{
    struct rworld *w = *state;
    char *body = redis_body(w, "slow", "q-slow", ", \"BatchSize\": 1");
    char *out = dir_of(w, "out-slow/record");
    json_t *m = create(w, body), *g, *again;
    char *uuid = strdup(h_json_str(m, "UUID"));
    char *path = h_strfmt(ESM "/%s", uuid);
    int64_t deadline;
    struct h_http_resp r;

    push_body(w, "q-slow", "{\"sleep\": 2, \"slow\": 1}");
    /* The batch is running (the handler sleeps before it records). */
    deadline = h_now_ms() + 30000;
    for (;;) {
        g = get_or_null(w, uuid);
        assert_non_null(g);
        if (counter(g, "in_flight_batches") == 1)
            break;
        json_decref(g);
        if (h_now_ms() > deadline)
            fail_msg("the slow batch never started");
        h_sleep_ms(20);
    }
    json_decref(g);
    assert_int_equal(rworld_count_files(out, NULL), 0);

    api(w, "DELETE", path, NULL, &r);
    expect_status(&r, 202);
    g = resp_json(&r);
    h_http_resp_free(&r);
    assert_string_equal(h_json_str(g, "State"), "Deleting");
    assert_string_equal(h_json_str(g, "UUID"), uuid);
    json_decref(g);
    push(w, "q-slow", 5, "after");
    /* A second delete while it is being deleted: ResourceInUseException. */
    api(w, "DELETE", path, NULL, &r);
    if (r.status != 404)
        json_decref(expect_api_error(&r, 400, "ResourceInUseException"));
    h_http_resp_free(&r);

    /* Gone once the batch has finished. */
    deadline = h_now_ms() + 30000;
    while ((g = get_or_null(w, uuid)) != NULL) {
        assert_string_equal(h_json_str(g, "State"), "Deleting");
        json_decref(g);
        if (h_now_ms() > deadline)
            fail_msg("the deleted mapping is still listed after 30 s");
        h_sleep_ms(50);
    }
    /* The running batch finished and was acknowledged; nothing else was taken. */
    assert_int_equal(rworld_count_files(out, NULL), 1);
    assert_int_equal(h_redis_int(&w->redis, "ZCARD q-slow:sy:inflight"), 0);
    assert_int_equal(h_redis_int(&w->redis, "LLEN q-slow"), 5);

    /* The same request again: the same UUID, and it takes what waited. */
    again = create(w, body);
    assert_string_equal(h_json_str(again, "UUID"), uuid);
    rworld_await_files(out, 6, 30000);
    await_drained(w, "q-slow", 10000);
    json_decref(again);
    json_decref(m);
    free(path);
    free(uuid);
    free(out);
    free(body);
    rworld_end(w);
}

/* A mapping created through the API, and an update of it, survive a restart. */
static void test_survives_restart(void **state)
{
    struct rworld *w = *state;
    char *body = redis_body(w, "keep", "q-keep",
                            ", \"FilterCriteria\": {\"Filters\": [{\"Pattern\": "
                            "\"{\\\"body\\\": {\\\"keep\\\": [{\\\"exists\\\": true}]}}\"}]}");
    char *out = dir_of(w, "out-keep/record");
    json_t *m = create(w, body), *g;
    char *uuid = strdup(h_json_str(m, "UUID"));
    char *path = h_strfmt(ESM "/%s", uuid);
    const char *upd = "{\"BatchSize\": 7}";
    struct h_http_resp r;

    push(w, "q-keep", 3, "keep");
    rworld_await_files(out, 3, 30000);
    api(w, "PUT", path, upd, &r);
    expect_status(&r, 202);
    h_http_resp_free(&r);

    assert_int_equal(h_broker_stop(&w->b, 15000), 0);
    assert_int_equal(rworld_start_broker(w), 0);
    w->mark = 0;

    g = get_or_null(w, uuid);
    assert_non_null(g);
    assert_string_equal(h_json_str(g, "State"), "Enabled");
    assert_int_equal(h_json_int(g, "BatchSize", -1), 7);
    assert_string_equal(h_json_str(json_object_get(g, "Switchyard"), "origin"), "api");
    expect_contains(
        h_json_str(
            json_array_get(json_object_get(json_object_get(g, "FilterCriteria"), "Filters"), 0),
            "Pattern"),
        "exists");
    json_decref(g);
    push(w, "q-keep", 3, "keep");
    push(w, "q-keep", 2, "dropped");
    rworld_await_files(out, 6, 30000);
    await_drained(w, "q-keep", 10000);
    assert_int_equal(rworld_count_files(out, NULL), 6);
    json_decref(m);
    free(path);
    free(uuid);
    free(out);
    free(body);
    rworld_end(w);
}

/* `qual:$LATEST` from the file: the function's head, with a qualified FunctionArn. */
static void test_qualified_latest(void **state)
{
    struct rworld *w = *state;
    char *out = dir_of(w, "out-qual/record");
    json_t *m = rworld_mapping_json(w, "latest");
    struct h_http_resp r;
    json_t *list;

    assert_string_equal(h_json_str(m, "FunctionArn"),
                        "arn:aws:lambda:us-east-1:000000000000:function:qual:$LATEST");
    json_decref(m);
    push(w, "q-latest", 4, "q");
    rworld_await_files(out, 4, 30000);
    await_drained(w, "q-latest", 10000);
    /* FunctionName with the qualifier selects it; the unqualified name too. */
    api(w, "GET", ESM "?FunctionName=qual:$LATEST", NULL, &r);
    expect_status(&r, 200);
    list = resp_json(&r);
    assert_int_equal(json_array_size(json_object_get(list, "EventSourceMappings")), 1);
    json_decref(list);
    h_http_resp_free(&r);
    api(w, "GET", ESM "?FunctionName=aliased:other", NULL, &r);
    list = resp_json(&r);
    assert_int_equal(json_array_size(json_object_get(list, "EventSourceMappings")), 0);
    json_decref(list);
    h_http_resp_free(&r);
    free(out);
    rworld_end(w);
}

/*
 * `aliased:live` names an alias that does not exist: its records are read and held, never
 * invoked and no attempt used; LastProcessingResult says why and the log warns once.
 */
static void test_alias_names_nothing(void **state)
{
    struct rworld *w = *state;
    char *out = dir_of(w, "out-aliased/record");
    size_t mark = h_broker_log_mark(&w->b);
    int64_t deadline = h_now_ms() + 20000;
    char *log;
    json_t *m;

    push(w, "q-alias", 2, "a");
    for (;;) {
        m = rworld_mapping_json(w, "no-alias");
        if (strncmp(h_json_str(m, "LastProcessingResult"), "PROBLEM: Function not found", 27) ==
                0 &&
            counter(m, "received") == 2)
            break;
        json_decref(m);
        if (h_now_ms() > deadline)
            fail_msg("the mapping on a missing alias never said so");
        h_sleep_ms(50);
    }
    expect_contains(h_json_str(m, "LastProcessingResult"), "function:aliased:live");
    expect_contains(h_json_str(m, "LastProcessingResult"), "has no alias live");
    assert_string_equal(h_json_str(m, "FunctionArn"),
                        "arn:aws:lambda:us-east-1:000000000000:function:aliased:live");
    json_decref(m);
    /* A few retries later: still held, nothing invoked, no attempt used. */
    h_sleep_ms(1500);
    m = rworld_mapping_json(w, "no-alias");
    assert_int_equal(counter(m, "batches"), 0);
    assert_int_equal(counter(m, "retries"), 0);
    assert_int_equal(counter(m, "in_flight_records"), 2);
    json_decref(m);
    assert_int_equal(rworld_count_files(out, NULL), 0);
    log = h_read_file(w->b.log_path, mark, NULL);
    assert_non_null(log);
    assert_int_equal(h_str_count(log, "[mapping:no-alias] Function not found"), 1);
    free(log);
    free(out);
    rworld_end(w);
}

/*
 * SIGTERM while a deletion waits for its running batch: the drain waits for the deletion too
 * (exit 0), the batch is acknowledged, and the mapping is not made again at the next start.
 */
static void test_delete_then_stop(void **state)
{
    struct rworld *w = *state;
    char *body = redis_body(w, "slow", "q-slow2", ", \"BatchSize\": 1");
    char *out = dir_of(w, "out-slow/record");
    size_t before = rworld_count_files(out, NULL);
    json_t *m = create(w, body), *g;
    char *uuid = strdup(h_json_str(m, "UUID"));
    char *path = h_strfmt(ESM "/%s", uuid);
    int64_t deadline = h_now_ms() + 30000;
    struct h_http_resp r;

    push_body(w, "q-slow2", "{\"sleep\": 1, \"slow2\": 1}");
    for (;;) {
        g = get_or_null(w, uuid);
        assert_non_null(g);
        if (counter(g, "in_flight_batches") == 1)
            break;
        json_decref(g);
        if (h_now_ms() > deadline)
            fail_msg("the slow batch never started");
        h_sleep_ms(20);
    }
    json_decref(g);
    api(w, "DELETE", path, NULL, &r);
    expect_status(&r, 202);
    h_http_resp_free(&r);
    assert_int_equal(h_broker_stop(&w->b, 15000), 0);
    assert_int_equal(rworld_count_files(out, NULL), before + 1);
    assert_int_equal(h_redis_int(&w->redis, "LLEN q-slow2"), 0);
    assert_int_equal(h_redis_int(&w->redis, "ZCARD q-slow2:sy:inflight"), 0);

    assert_int_equal(rworld_start_broker(w), 0);
    w->mark = 0;
    assert_null(get_or_null(w, uuid));
    json_decref(m);
    free(path);
    free(uuid);
    free(out);
    free(body);
    rworld_end(w);
}

static int group_setup(void **state)
{
    return rworld_group_setup(state, "esmc", config);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_runs, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_conflicts, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_malformed, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_delete_file_owned, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_delete_in_flight, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_qualified_latest, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_alias_names_nothing, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_survives_restart, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_delete_then_stop, rworld_setup, rworld_teardown),
    };
    int rc;

    itest_filter_from_env();
    rc = cmocka_run_group_tests_name("esm_create", tests, group_setup, rworld_group_teardown);
    return rworld_exit_code(rc);
}
