/*
 * tests/integration/test_esm_kafka.c - Kafka event source mappings end to end: librdkafka's mock
 * cluster (sy-kafka-mock, a process of its own), a real broker (`switchyard run`) and real
 * Python handlers (handlers/esm/kafka_app.py) that write one file per record they get
 * (OUT/<name>/<topic-partition>@<offset>.<delivery>) and the order they saw them in.
 *
 *   - records of 3 partitions arrive in Lambda's self-managed Kafka shape (keys omitted when
 *     absent, headers always there with signed bytes, tombstones without a value), each once,
 *     in offset order per partition, and the group's committed offsets reach the end;
 *   - filters on `value`: only matching records reach the function; the others are committed;
 *   - partial batch failures: the named record and everything after it in its partition run
 *     again, in order;
 *   - a poison record blocks only its partition: the other partitions drain meanwhile; after
 *     the retries the on-failure record (KafkaBatchInfo) lands in a Kafka topic, and the
 *     partition moves on;
 *   - kill -9 of the broker mid-stream: after a restart every record is delivered, duplicates
 *     stay within the in-flight window, and the committed offsets reach the end;
 *   - bootstrap servers that nobody listens on show as a problem in LastProcessingResult;
 *   - a record too large for one invocation goes to on-failure (MaximumPayloadSizeExceeded)
 *     and is committed;
 *   - two brokers in one consumer group (cooperative-sticky) split the partitions; kill -9 of
 *     one: the other takes its partitions over and nothing is lost;
 *   - the AWS CLI gets the mapping in Lambda's self-managed Kafka shape and updates it;
 *   - the AWS CLI creates a mapping in that shape (endpoints, topic, consumer group, starting
 *     position): it reads the topic and commits in the group it names; deleted, it answers
 *     Deleting, disappears, and its commits stay;
 *   - the Kafka server going down and coming back: the problem shows, then new records flow.
 *
 * Every wait polls with a deadline.
 */
#include "itest.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rworld.h"

/* clang-format off */
/* The mapping two brokers share (one consumer group, cooperative-sticky). */
#define SHARED_FN(dir, name) \
    "  rec-shared: {runtime: python3, handler: kafka_app.record, code: @FIXTURES@/esm,\n" \
    "               environment: {OUT: '" dir "/out-shared', NAME: '" name "',\n" \
    "                             PYTHONDONTWRITEBYTECODE: '1'}}\n"
#define SHARED_MAPPING \
    "  - name: shared\n" \
    "    function: rec-shared\n" \
    "    batch_size: 10\n" \
    "    maximum_batching_window_ms: 20\n" \
    "    maximum_concurrency: 6\n" \
    "    source: {kafka: {bootstrap_servers: '@BOOTSTRAP@', topics: [shared], consumer_group: sy-shared,\n" \
    "             properties: {session.timeout.ms: 6000, heartbeat.interval.ms: 500,\n" \
    "                          partition.assignment.strategy: cooperative-sticky}}}\n"
#define KPROPS "properties: {session.timeout.ms: 6000, heartbeat.interval.ms: 500}"
static const char config[] =
    "broker:\n"
    "  listen: 127.0.0.1:0\n"
    "  data_dir: @DATA@\n"
    "  shutdown_grace_ms: 2000\n"
    "  max_concurrency: 40\n"
    "functions:\n"
    "  rec: {runtime: python3, handler: kafka_app.record, code: @FIXTURES@/esm,\n"
    "        environment: {OUT: '@DIR@/out-rec', PYTHONDONTWRITEBYTECODE: '1'}}\n"
    "  rec-filter: {runtime: python3, handler: kafka_app.record, code: @FIXTURES@/esm,\n"
    "               environment: {OUT: '@DIR@/out-filter', PYTHONDONTWRITEBYTECODE: '1'}}\n"
    "  rec-kill: {runtime: python3, handler: kafka_app.record, code: @FIXTURES@/esm,\n"
    "             environment: {OUT: '@DIR@/out-kill', PYTHONDONTWRITEBYTECODE: '1'}}\n"
    "  partial: {runtime: python3, handler: kafka_app.partial, code: @FIXTURES@/esm,\n"
    "            environment: {OUT: '@DIR@/out-partial', PYTHONDONTWRITEBYTECODE: '1'}}\n"
    "  poison: {runtime: python3, handler: kafka_app.poison, code: @FIXTURES@/esm,\n"
    "           environment: {OUT: '@DIR@/out-poison', PYTHONDONTWRITEBYTECODE: '1'}}\n"
    "  rec-api: {runtime: python3, handler: kafka_app.record, code: @FIXTURES@/esm,\n"
    "            environment: {OUT: '@DIR@/out-api', PYTHONDONTWRITEBYTECODE: '1'}}\n"
    SHARED_FN("@DIR@", "record")
    "mappings:\n"
    SHARED_MAPPING
    "  - name: orders\n"
    "    function: rec\n"
    "    batch_size: 20\n"
    "    maximum_batching_window_ms: 100\n"
    "    source: {kafka: {bootstrap_servers: '@BOOTSTRAP@', topics: [orders, shape], " KPROPS "}}\n"
    "  - name: filtered\n"
    "    function: rec-filter\n"
    "    maximum_batching_window_ms: 100\n"
    "    filters: ['{\"value\": {\"type\": [\"order\"]}}']\n"
    "    source: {kafka: {bootstrap_servers: '@BOOTSTRAP@', topics: [filtered], " KPROPS "}}\n"
    "  - name: partial\n"
    "    function: partial\n"
    "    batch_size: 10\n"
    "    maximum_batching_window_ms: 300\n"
    "    report_batch_item_failures: true\n"
    "    source: {kafka: {bootstrap_servers: '@BOOTSTRAP@', topics: [partial], " KPROPS "}}\n"
    "  - name: poison\n"
    "    function: poison\n"
    "    batch_size: 10\n"
    "    maximum_batching_window_ms: 100\n"
    "    bisect_batch_on_function_error: true\n"
    "    maximum_retry_attempts: 3\n"
    "    on_failure: 'kafka://@BOOTSTRAP@/failed'\n"
    "    source: {kafka: {bootstrap_servers: '@BOOTSTRAP@', topics: [poison], " KPROPS "}}\n"
    "  - name: kill\n"
    "    function: rec-kill\n"
    "    batch_size: 10\n"
    "    maximum_batching_window_ms: 20\n"
    "    maximum_concurrency: 4\n"
    "    source: {kafka: {bootstrap_servers: '@BOOTSTRAP@', topics: [kill], " KPROPS "}}\n"
    "  - name: big\n"
    "    function: rec\n"
    "    on_failure: 'kafka://@BOOTSTRAP@/failed-big'\n"
    "    source: {kafka: {bootstrap_servers: '@BOOTSTRAP@', topics: [big], " KPROPS "}}\n"
    "  - name: ts\n"
    "    function: rec\n"
    "    enabled: false\n"
    "    maximum_batching_window_ms: 20\n"
    "    source: {kafka: {bootstrap_servers: '@BOOTSTRAP@', topics: [ts], starting_position: AT_TIMESTAMP,\n"
    "             starting_position_timestamp: 1700000000, " KPROPS "}}\n"
    "  - name: nowhere\n"
    "    function: rec\n"
    "    source: {kafka: {bootstrap_servers: '127.0.0.1:1', topics: [orders], " KPROPS "}}\n";
/* clang-format on */

static const char *const topics[] = {
    "orders:3", "shape:1", "filtered:2",   "partial:1", "poison:3", "failed:1", "kill:4",
    "shared:6", "big:1",   "failed-big:1", "ts:1",      "api:2",    NULL};

/* The second broker of the shared group: only the shared mapping, writing beside the first. */
static const char config_b[] =
    "broker:\n"
    "  listen: 127.0.0.1:0\n"
    "  data_dir: @DATA@\n"
    "  shutdown_grace_ms: 2000\n"
    "functions:\n" SHARED_FN("@FIRST@", "record-b") "mappings:\n" SHARED_MAPPING;

#define GROUP(name) "switchyard-" name

static char *dir_of(const struct rworld *w, const char *sub)
{
    return h_strfmt("%s/%s", w->b.dir, sub);
}

static void produce(struct rworld *w, const char *topic, int32_t partition, const char *value)
{
    assert_true(h_kafka_produce(&w->kafka, topic, partition, NULL, 0, value, strlen(value), NULL,
                                NULL, 0) >= 0);
}

/* Wait until GROUP committed the high watermark of every partition of TOPIC. */
static void await_committed(struct rworld *w, const char *group, const char *topic, int timeout_ms)
{
    int n = h_kafka_partitions(&w->kafka, topic);
    int64_t deadline = h_now_ms() + timeout_ms;

    assert_true(n > 0);
    for (int p = 0; p < n; p++) {
        int64_t hi = h_kafka_high_watermark(&w->kafka, topic, p), c;

        assert_true(hi >= 0);
        while ((c = h_kafka_committed(&w->kafka, group, topic, p)) != hi || hi == 0) {
            if (hi == 0 && (c == H_KAFKA_NO_OFFSET || c == 0))
                break;
            if (h_now_ms() > deadline)
                fail_msg("%s: %s [%d] committed %lld, high watermark %lld, after %d ms", group,
                         topic, p, (long long)c, (long long)hi, timeout_ms);
            h_sleep_ms(100);
        }
    }
}

/* The lines "<topic-partition> <offset>" of OUT/<name>.order, checked in order per partition:
 * an offset lower than the last one seen in its partition is allowed only when it is EXCEPT
 * (the record a partial failure named, where the partition starts again). Returns the lines. */
static size_t check_order(const char *path, const char *except_tp, long except_off)
{
    size_t len, lines = 0;
    char *s = h_read_file(path, 0, &len), *save = NULL;
    struct {
        char tp[64];
        long last;
    } seen[16];
    size_t n_seen = 0;

    assert_non_null(s);
    for (char *line = strtok_r(s, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        char tp[64];
        long off;
        size_t i;

        assert_int_equal(sscanf(line, "%63s %ld", tp, &off), 2);
        lines++;
        for (i = 0; i < n_seen; i++)
            if (strcmp(seen[i].tp, tp) == 0)
                break;
        if (i == n_seen) {
            assert_true(n_seen < 16);
            snprintf(seen[n_seen].tp, sizeof(seen[n_seen].tp), "%s", tp);
            seen[n_seen++].last = -1;
        }
        if (off <= seen[i].last &&
            !(except_tp != NULL && strcmp(tp, except_tp) == 0 && off == except_off))
            fail_msg("%s: offset %ld after %ld in %s", path, off, seen[i].last, tp);
        seen[i].last = off;
    }
    free(s);
    return lines;
}

static bool file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static json_t *load_record(const struct rworld *w, const char *sub)
{
    char *path = dir_of(w, sub);
    json_t *j = h_json_file(path);

    if (j == NULL)
        fail_msg("no JSON file %s", path);
    free(path);
    return j;
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_shape_and_order(void **state)
{
    struct rworld *w = *state;
    char *out = dir_of(w, "out-rec/record"), *order = dir_of(w, "out-rec/record.order");
    const char *names[] = {"trace-id", "note"};
    const char *values[] = {"abc", "hi\xc3\xab"};
    json_t *r, *h;

    for (int i = 0; i < 150; i++) {
        char v[64];

        snprintf(v, sizeof(v), "{\"i\": %d}", i);
        produce(w, "orders", i % 3, v);
    }
    /* shape-0: 0 with a key and headers, 1 without either, 2 a tombstone, 3 not UTF-8. */
    assert_int_equal(
        h_kafka_produce(&w->kafka, "shape", 0, "order-42", 8, "{\"id\":42}", 9, names, values, 2),
        0);
    assert_int_equal(h_kafka_produce(&w->kafka, "shape", 0, NULL, 0, "plain", 5, NULL, NULL, 0), 1);
    assert_int_equal(h_kafka_produce(&w->kafka, "shape", 0, "gone", 4, NULL, 0, NULL, NULL, 0), 2);
    assert_int_equal(
        h_kafka_produce(&w->kafka, "shape", 0, "\xff\x01", 2, "\xfe\xff", 2, NULL, NULL, 0), 3);
    rworld_await_files(out, 154, 60000);
    await_committed(w, GROUP("orders"), "orders", 20000);
    await_committed(w, GROUP("orders"), "shape", 20000);
    {
        size_t all, uniq = rworld_count_files(out, &all);

        assert_int_equal(uniq, 154);
        assert_int_equal(all, 154);
    }
    assert_int_equal(check_order(order, NULL, 0), 154);

    r = load_record(w, "out-rec/record/shape-0@0.1");
    assert_string_equal(h_json_str(r, "topic"), "shape");
    assert_int_equal(json_integer_value(json_object_get(r, "partition")), 0);
    assert_int_equal(json_integer_value(json_object_get(r, "offset")), 0);
    assert_true(json_integer_value(json_object_get(r, "timestamp")) > 1700000000000LL);
    assert_string_equal(h_json_str(r, "timestampType"), "CREATE_TIME");
    assert_string_equal(h_json_str(r, "key"), "b3JkZXItNDI=");   /* order-42 */
    assert_string_equal(h_json_str(r, "value"), "eyJpZCI6NDJ9"); /* {"id":42} */
    h = json_object_get(r, "headers");
    assert_int_equal(json_array_size(h), 2);
    {
        json_t *t = json_object_get(json_array_get(h, 0), "trace-id"),
               *nt = json_object_get(json_array_get(h, 1), "note");

        assert_int_equal(json_array_size(t), 3);
        assert_int_equal(json_integer_value(json_array_get(t, 0)), 97);
        assert_int_equal(json_array_size(nt), 4);
        assert_int_equal(json_integer_value(json_array_get(nt, 2)), -61);
        assert_int_equal(json_integer_value(json_array_get(nt, 3)), -85);
    }
    json_decref(r);
    r = load_record(w, "out-rec/record/shape-0@1.1");
    assert_null(json_object_get(r, "key"));
    assert_true(json_is_array(json_object_get(r, "headers")));
    assert_int_equal(json_array_size(json_object_get(r, "headers")), 0);
    assert_string_equal(h_json_str(r, "value"), "cGxhaW4=");
    json_decref(r);
    r = load_record(w, "out-rec/record/shape-0@2.1");
    assert_null(json_object_get(r, "value"));
    assert_string_equal(h_json_str(r, "key"), "Z29uZQ==");
    json_decref(r);
    r = load_record(w, "out-rec/record/shape-0@3.1");
    assert_string_equal(h_json_str(r, "key"), "/wE=");
    assert_string_equal(h_json_str(r, "value"), "/v8=");
    json_decref(r);
    free(out);
    free(order);
    rworld_end(w);
}

static void test_filter_on_value(void **state)
{
    struct rworld *w = *state;
    char *out = dir_of(w, "out-filter/record");
    json_t *m;

    for (int i = 0; i < 40; i++) {
        char v[64];

        snprintf(v, sizeof(v), "{\"type\": \"%s\", \"i\": %d}", i % 4 == 0 ? "order" : "other", i);
        produce(w, "filtered", i % 2, v);
    }
    rworld_await_files(out, 10, 60000);
    await_committed(w, GROUP("filtered"), "filtered", 20000);
    assert_int_equal(rworld_count_files(out, NULL), 10);
    m = rworld_mapping_json(w, "filtered");
    assert_int_equal(
        json_integer_value(json_object_get(
            json_object_get(json_object_get(m, "Switchyard"), "counters"), "filtered")),
        30);
    json_decref(m);
    free(out);
    rworld_end(w);
}

static void test_partial_failure_retries_the_rest_in_order(void **state)
{
    struct rworld *w = *state;
    char *out = dir_of(w, "out-partial/partial"), *order = dir_of(w, "out-partial/partial.order");
    size_t all;

    for (int i = 0; i < 10; i++)
        produce(w, "partial", 0, i == 3 ? "{\"fail\": true}" : "{\"ok\": true}");
    rworld_await_files(out, 10, 60000);
    await_committed(w, GROUP("partial"), "partial", 20000);
    assert_int_equal(rworld_count_files(out, &all), 10);
    fprintf(stderr, "partial: %zu deliveries of 10 records\n", all);
    /* 0..2 once; 3 twice (failed, then again); what came after 3 in its batch again too. */
    for (int i = 0; i < 3; i++) {
        char *p = h_strfmt("%s/partial-0@%d.2", out, i);

        assert_false(file_exists(p));
        free(p);
    }
    {
        char *p = h_strfmt("%s/partial-0@3.2", out), *p3 = h_strfmt("%s/partial-0@3.3", out);

        assert_true(file_exists(p));
        assert_false(file_exists(p3));
        free(p);
        free(p3);
    }
    check_order(order, "partial-0", 3);
    free(out);
    free(order);
    rworld_end(w);
}

/* Lines of the order file at PATH whose partition is TP, before the first line of partition
 * STOP_TP (or all of them). */
static size_t lines_before(const char *path, const char *tp, const char *stop_tp)
{
    size_t len, n = 0;
    char *s = h_read_file(path, 0, &len), *save = NULL;

    assert_non_null(s);
    for (char *line = strtok_r(s, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        size_t k = strcspn(line, " ");

        if (stop_tp != NULL && strlen(stop_tp) == k && strncmp(line, stop_tp, k) == 0)
            break;
        if (strlen(tp) == k && strncmp(line, tp, k) == 0)
            n++;
    }
    free(s);
    return n;
}

struct failed_msgs {
    int n;
    json_t *first;
    char key[16]; /* the first message's key */
    size_t key_len;
    int has_key;
};

static int on_failed_msg(const rd_kafka_message_t *m, void *arg)
{
    struct failed_msgs *f = arg;

    if (f->n++ == 0) {
        f->first = h_json_parse(m->payload, m->len);
        f->has_key = m->key != NULL;
        f->key_len = m->key_len < sizeof(f->key) ? m->key_len : sizeof(f->key);
        if (m->key != NULL)
            memcpy(f->key, m->key, f->key_len);
    }
    return 0;
}

static void test_poison_blocks_only_its_partition(void **state)
{
    struct rworld *w = *state;
    char *out = dir_of(w, "out-poison/poison"), *order = dir_of(w, "out-poison/poison.order");
    struct failed_msgs f = {0};
    json_t *info, *ri, *recs;
    int64_t deadline;

    /* A key that is not UTF-8: the on-failure message carries the same bytes as its key. */
    assert_true(h_kafka_produce(&w->kafka, "poison", 0,
                                "k\xff"
                                "1",
                                3, "{\"poison\": true}", 16, NULL, NULL, 0) >= 0);
    for (int i = 0; i < 5; i++)
        produce(w, "poison", 0, "{\"after\": true}");
    for (int i = 0; i < 40; i++)
        produce(w, "poison", 1 + i % 2, "{\"other\": true}");
    rworld_await_files(out, 45, 60000);
    await_committed(w, GROUP("poison"), "poison", 20000);
    /* Partitions 1 and 2 drained while partition 0 was held at its poison record. */
    assert_int_equal(lines_before(order, "poison-1", "poison-0"), 20);
    assert_int_equal(lines_before(order, "poison-2", "poison-0"), 20);
    check_order(order, NULL, 0);

    deadline = h_now_ms() + 20000;
    while (h_kafka_consume_all(&w->kafka, "failed", 10000, NULL, NULL) < 1) {
        if (h_now_ms() > deadline)
            fail_msg("no on-failure record in the topic 'failed'");
        h_sleep_ms(200);
    }
    assert_int_equal(h_kafka_consume_all(&w->kafka, "failed", 10000, on_failed_msg, &f), 1);
    assert_non_null(f.first);
    assert_string_equal(h_json_str(json_object_get(f.first, "requestContext"), "condition"),
                        "RetryAttemptsExhausted");
    /* Lambda's Kafka-topic shape: one message per failed record, keyed by the record's key,
     * with recordInfo and the record's own event as payload. */
    assert_true(f.has_key);
    assert_int_equal(f.key_len, 3);
    assert_memory_equal(f.key,
                        "k\xff"
                        "1",
                        3);
    info = json_object_get(f.first, "KafkaBatchInfo");
    assert_non_null(info);
    assert_int_equal(json_integer_value(json_object_get(info, "batchSize")), 1);
    assert_non_null(json_object_get(info, "eventSourceArn"));
    assert_true(json_integer_value(json_object_get(info, "payloadSize")) > 0);
    ri = json_object_get(info, "recordInfo");
    assert_non_null(ri);
    assert_string_equal(h_json_str(ri, "offset"), "0");
    assert_non_null(strchr(h_json_str(ri, "timestamp"), 'Z'));
    assert_string_equal(h_json_str(json_object_get(f.first, "payload"), "eventSource"),
                        "SelfManagedKafka");
    recs = json_object_get(json_object_get(json_object_get(f.first, "payload"), "records"),
                           "poison-0");
    assert_int_equal(json_array_size(recs), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(recs, 0), "offset")), 0);
    assert_string_equal(h_json_str(json_array_get(recs, 0), "key"), "a/8x");
    json_decref(f.first);
    free(out);
    free(order);
    rworld_end(w);
}

static void test_kill9_mid_stream(void **state)
{
    struct rworld *w = *state;
    char *out = dir_of(w, "out-kill/record");
    size_t all, uniq;

    for (int i = 0; i < 400; i++)
        produce(w, "kill", i % 4, "{\"sleep\": 0.01}");
    rworld_await_files(out, 40, 60000);
    fprintf(stderr, "kill -9 of the broker with %zu of 400 records delivered\n",
            rworld_count_files(out, NULL));
    rworld_kill9_restart(w);

    rworld_await_files(out, 400, 90000);
    await_committed(w, GROUP("kill"), "kill", 30000);
    uniq = rworld_count_files(out, &all);
    fprintf(stderr, "after the restart: %zu records, %zu deliveries\n", uniq, all);
    assert_int_equal(uniq, 400);
    /* Duplicates only from what was in flight or not yet committed at the kill. */
    assert_true(all - uniq <= 1000);
    free(out);
    rworld_end(w);
}

/* (The mock creates any topic a client asks about, so a missing topic cannot be shown here.) */
static void test_unreachable_servers_are_a_problem(void **state)
{
    struct rworld *w = *state;
    json_t *m = rworld_await_problem(w, "nowhere", 30000);

    assert_string_equal(h_json_str(m, "State"), "Enabled");
    fprintf(stderr, "unreachable: %s\n", h_json_str(m, "LastProcessingResult"));
    json_decref(m);
    rworld_end(w);
}

static void test_server_down_and_back(void **state)
{
    struct rworld *w = *state;
    char *out = dir_of(w, "out-rec/record");
    size_t before = rworld_count_files(out, NULL);
    json_t *m;

    assert_int_equal(h_kafka_cmd(&w->kafka, "down 1"), 0);
    m = rworld_await_problem(w, "orders", 30000);
    fprintf(stderr, "while Kafka is down: %s\n", h_json_str(m, "LastProcessingResult"));
    json_decref(m);
    assert_int_equal(h_kafka_cmd(&w->kafka, "up 1"), 0);
    for (int i = 0; i < 30; i++)
        produce(w, "orders", i % 3, "{\"after\": true}");
    rworld_await_files(out, before + 30, 60000);
    await_committed(w, GROUP("orders"), "orders", 30000);
    free(out);
    rworld_end(w);
}

/*
 * A record whose event would exceed the 6 MB invoke limit (4.8 MB of value, base64 in the
 * event) is not invoked: its on-failure record (MaximumPayloadSizeExceeded) goes to the topic,
 * the offset is committed, and the next record of the partition is delivered.
 */
static void test_too_large_record_to_on_failure(void **state)
{
    struct rworld *w = *state;
    const char *props[] = {"message.max.bytes", "10000000", NULL};
    rd_kafka_conf_t *conf = h_kafka_conf(&w->kafka, props);
    char err[512], *big = malloc(4800000), *out = dir_of(w, "out-rec/record"), *p;
    rd_kafka_t *rk;
    struct failed_msgs f = {0};
    int64_t deadline;

    assert_non_null(conf);
    assert_non_null(big);
    memset(big, 'x', 4800000);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    assert_non_null(rk);
    assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("big"), RD_KAFKA_V_PARTITION(0),
                                       RD_KAFKA_V_VALUE(big, 4800000), RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_flush(rk, 20000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
    free(big);
    produce(w, "big", 0, "{\"small\": true}");
    p = h_strfmt("%s/big-0@1.1", out);
    deadline = h_now_ms() + 60000;
    while (access(p, F_OK) != 0) {
        if (h_now_ms() > deadline)
            fail_msg("the record after the large one was never delivered");
        h_sleep_ms(100);
    }
    free(p);
    p = h_strfmt("%s/big-0@0.1", out);
    assert_int_not_equal(access(p, F_OK), 0);
    await_committed(w, GROUP("big"), "big", 20000);
    assert_int_equal(h_kafka_consume_all(&w->kafka, "failed-big", 20000, on_failed_msg, &f), 1);
    assert_string_equal(h_json_str(json_object_get(f.first, "requestContext"), "condition"),
                        "MaximumPayloadSizeExceeded");
    /* One message for the record, without a key (it had none) and without its 4.8 MB as
     * payload (larger than a Kafka message may be). */
    assert_false(f.has_key);
    assert_string_equal(
        h_json_str(json_object_get(json_object_get(f.first, "KafkaBatchInfo"), "recordInfo"),
                   "offset"),
        "0");
    assert_null(json_object_get(f.first, "payload"));
    json_decref(f.first);
    free(p);
    free(out);
    rworld_end(w);
}

/*
 * AT_TIMESTAMP on librdkafka 2.0.2's mock cluster: the mock answers every lookup by timestamp
 * with "no such offset" (rdkafka_mock_handlers.c: "FIXME: by timestamp"), which is what a real
 * cluster answers for a timestamp after the last record, so the group starts at the end: the
 * records from before the lookup are never delivered, the ones after it are, in order. (Which
 * offset a real timestamp finds is Kafka's ListOffsets; the mock cannot show it.)
 */
static void test_at_timestamp_on_the_mock(void **state)
{
    struct rworld *w = *state;
    char *out = dir_of(w, "out-rec/record"), *p;
    int first = -1, next = 6;

    for (int i = 0; i < 6; i++)
        produce(w, "ts", 0, "{}");
    assert_int_equal(h_kafka_high_watermark(&w->kafka, "ts", 0), 6);
    rworld_set_enabled(w, "ts", true, "Enabled");
    /* One record at a time until one is delivered: that one came after the lookup. */
    for (int64_t deadline = h_now_ms() + 60000; first < 0; next++) {
        int64_t until = h_now_ms() + 500;

        if (h_now_ms() > deadline)
            fail_msg("no record produced after the mapping started was delivered");
        produce(w, "ts", 0, "{}");
        while (first < 0 && h_now_ms() < until) {
            for (int off = 6; off <= next && first < 0; off++) {
                p = h_strfmt("%s/ts-0@%d.1", out, off);
                if (access(p, F_OK) == 0)
                    first = off;
                free(p);
            }
            h_sleep_ms(20);
        }
    }
    await_committed(w, GROUP("ts"), "ts", 20000);
    for (int off = 0; off < next; off++) {
        p = h_strfmt("%s/ts-0@%d.1", out, off);
        if (off < first)
            assert_int_not_equal(access(p, F_OK), 0);
        else
            assert_int_equal(access(p, F_OK), 0);
        free(p);
    }
    assert_true(first >= 6);
    free(out);
    rworld_end(w);
}

/* Whether B's log holds NEEDLE. */
static bool log_has(const struct h_broker *b, const char *needle)
{
    size_t len;
    char *s = h_read_file(b->log_path, 0, &len);
    bool yes = s != NULL && strstr(s, needle) != NULL;

    free(s);
    return yes;
}

/* Distinct record ids in the files of DIRS (NULL-terminated). */
static size_t union_ids(const char *const *dirs)
{
    size_t n = 0, cap = 0;
    char **ids = NULL;

    for (size_t d = 0; dirs[d] != NULL; d++) {
        DIR *dh = opendir(dirs[d]);
        struct dirent *de;

        while (dh != NULL && (de = readdir(dh)) != NULL) {
            char *dot = strrchr(de->d_name, '.');
            size_t k, len;

            if (de->d_name[0] == '.' || dot == NULL || strcmp(dot, ".tmp") == 0)
                continue;
            len = (size_t)(dot - de->d_name);
            for (k = 0; k < n; k++)
                if (strlen(ids[k]) == len && strncmp(ids[k], de->d_name, len) == 0)
                    break;
            if (k < n)
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 256;
                ids = realloc(ids, cap * sizeof(*ids));
                assert_non_null(ids);
            }
            ids[n++] = strndup(de->d_name, len);
        }
        if (dh != NULL)
            closedir(dh);
    }
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    return n;
}

/*
 * Two brokers in one consumer group (cooperative-sticky) split the partitions of `shared`; the
 * second is killed with -9 mid-stream; the first takes its partitions over (after the session
 * timeout) and every record is delivered, the group's offsets reaching the end.
 */
static void test_two_brokers_one_group(void **state)
{
    struct rworld *w = *state;
    struct h_broker b2;
    char *ya = dir_of(w, "out-shared/record"), *yb = dir_of(w, "out-shared/record-b");
    const char *dirs[] = {ya, yb, NULL};
    char *cfg, *cfg2;
    int64_t deadline;
    size_t got;

    assert_int_equal(h_broker_init(&b2, "esm-kafka-b"), 0);
    cfg = rworld_config(w, config_b);
    cfg2 = h_str_replace(cfg, "@FIRST@", w->b.dir);
    assert_int_equal(h_broker_write_config(&b2, cfg2), 0);
    assert_int_equal(h_broker_start(&b2, NULL, ITEST_READY_MS), 0);
    free(cfg);
    free(cfg2);
    /* The group splits the partitions once the second broker has joined. */
    deadline = h_now_ms() + 60000;
    while (!log_has(&b2, "[source:kafka:shared] assigned")) {
        if (h_now_ms() > deadline)
            fail_msg("the second broker was never assigned partitions of 'shared'");
        h_sleep_ms(50);
    }
    for (int i = 0; i < 600; i++)
        produce(w, "shared", i % 6, "{\"sleep\": 0.02}");
    /* Both brokers get records. */
    deadline = h_now_ms() + 60000;
    while (rworld_count_files(ya, NULL) < 20 || rworld_count_files(yb, NULL) < 20) {
        if (h_now_ms() > deadline)
            fail_msg("the two brokers did not share the partitions (%zu and %zu records)",
                     rworld_count_files(ya, NULL), rworld_count_files(yb, NULL));
        h_sleep_ms(50);
    }
    fprintf(stderr, "shared: first broker %zu, second %zu records; kill -9 of the second\n",
            rworld_count_files(ya, NULL), rworld_count_files(yb, NULL));
    assert_int_equal(kill(b2.proc.pid, SIGKILL), 0);
    deadline = h_now_ms() + 10000;
    while (h_broker_running(&b2) && h_now_ms() < deadline)
        h_sleep_ms(10);
    assert_false(h_broker_running(&b2));

    deadline = h_now_ms() + 90000;
    while ((got = union_ids(dirs)) < 600) {
        if (h_now_ms() > deadline)
            fail_msg("%zu of 600 records delivered after the kill", got);
        h_sleep_ms(100);
    }
    await_committed(w, "sy-shared", "shared", 30000);
    fprintf(stderr, "shared: all 600 delivered (first broker %zu files, second %zu)\n",
            rworld_count_files(ya, NULL), rworld_count_files(yb, NULL));
    b2.failed = false;
    h_broker_destroy(&b2);
    free(ya);
    free(yb);
    rworld_end(w);
}

/* The AWS CLI sees a Kafka mapping in Lambda's self-managed Kafka shape, and updates it. */
static void test_aws_cli_get_update(void **state)
{
    struct rworld *w = *state;
    json_t *m = rworld_mapping_json(w, "orders"), *j, *eps;
    char *uuid = strdup(h_json_str(m, "UUID"));
    const char *get[] = {"get-event-source-mapping", "--uuid", uuid, NULL};
    const char *upd[] = {"update-event-source-mapping", "--uuid", uuid, "--batch-size", "50", NULL};
    struct h_run r;

    json_decref(m);
    if (!itest_have_aws()) {
        fprintf(stderr, "no /usr/bin/aws: skipped\n");
        free(uuid);
        rworld_end(w);
        return;
    }
    itest_aws(&w->b, "test", get, &r);
    expect_run_code(&r, 0);
    j = h_json_parse(r.out, r.out_len);
    assert_non_null(j);
    h_run_free(&r);
    assert_null(json_object_get(j, "EventSourceArn"));
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "Topics"), 0)),
                        "orders");
    eps =
        json_object_get(json_object_get(json_object_get(j, "SelfManagedEventSource"), "Endpoints"),
                        "KAFKA_BOOTSTRAP_SERVERS");
    assert_int_equal(json_array_size(eps), 1);
    assert_string_equal(json_string_value(json_array_get(eps, 0)), w->kafka.bootstrap);
    assert_string_equal(
        h_json_str(json_object_get(j, "SelfManagedKafkaEventSourceConfig"), "ConsumerGroupId"),
        "switchyard-orders");
    assert_string_equal(h_json_str(j, "StartingPosition"), "TRIM_HORIZON");
    assert_int_equal(json_integer_value(json_object_get(j, "BatchSize")), 20);
    json_decref(j);
    /* The extension (the AWS CLI drops what it does not model): one entry per partition. */
    m = rworld_mapping_json(w, "orders");
    assert_int_equal(
        json_array_size(json_object_get(json_object_get(m, "Switchyard"), "partitions")),
        4); /* orders-0..2 and shape-0 */
    json_decref(m);
    itest_aws(&w->b, "test", upd, &r);
    expect_run_code(&r, 0);
    j = h_json_parse(r.out, r.out_len);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "BatchSize")), 50);
    json_decref(j);
    h_run_free(&r);
    free(uuid);
    rworld_end(w);
}

/*
 * create-event-source-mapping in Lambda's self-managed Kafka shape: the mapping reads the topic
 * from TRIM_HORIZON in the consumer group it names, and commits what it processed; deleted, it
 * answers Deleting and disappears, and its commits stay for a mapping made again.
 */
static void test_aws_cli_create_delete(void **state)
{
    struct rworld *w = *state;
    char *out = dir_of(w, "out-api/record");
    char *sme = NULL, *uuid = NULL, *path = NULL;
    const char *create[] = {"create-event-source-mapping",
                            "--function-name",
                            "rec-api",
                            "--self-managed-event-source",
                            NULL, /* sme */
                            "--topics",
                            "api",
                            "--starting-position",
                            "TRIM_HORIZON",
                            "--self-managed-kafka-event-source-config",
                            "{\"ConsumerGroupId\": \"g-api\"}",
                            "--batch-size",
                            "5",
                            NULL};
    const char *del[] = {"delete-event-source-mapping", "--uuid", NULL, NULL};
    int64_t deadline;
    struct h_run r;
    json_t *j;

    if (!itest_have_aws()) {
        fprintf(stderr, "no /usr/bin/aws: skipped\n");
        free(out);
        rworld_end(w);
        return;
    }
    for (int i = 0; i < 10; i++) {
        char v[32];

        snprintf(v, sizeof(v), "{\"i\": %d}", i);
        produce(w, "api", i % 2, v);
    }
    {
        /* The bootstrap list as Lambda's array of HOST:PORT. */
        char *eps = h_str_replace(w->kafka.bootstrap, ",", "\", \"");

        sme = h_strfmt("{\"Endpoints\": {\"KAFKA_BOOTSTRAP_SERVERS\": [\"%s\"]}}", eps);
        free(eps);
    }
    create[4] = sme;
    itest_aws(&w->b, "test", create, &r);
    expect_run_code(&r, 0);
    j = h_json_parse(r.out, r.out_len);
    assert_non_null(j);
    h_run_free(&r);
    assert_string_equal(h_json_str(j, "State"), "Creating");
    assert_null(json_object_get(j, "EventSourceArn"));
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "Topics"), 0)), "api");
    assert_string_equal(
        h_json_str(json_object_get(j, "SelfManagedKafkaEventSourceConfig"), "ConsumerGroupId"),
        "g-api");
    assert_string_equal(h_json_str(j, "StartingPosition"), "TRIM_HORIZON");
    assert_int_equal(json_integer_value(json_object_get(j, "BatchSize")), 5);
    uuid = strdup(h_json_str(j, "UUID"));
    json_decref(j);

    rworld_await_files(out, 10, 60000);
    await_committed(w, "g-api", "api", 30000);

    del[2] = uuid;
    itest_aws(&w->b, "test", del, &r);
    expect_run_code(&r, 0);
    j = h_json_parse(r.out, r.out_len);
    assert_non_null(j);
    h_run_free(&r);
    assert_string_equal(h_json_str(j, "State"), "Deleting");
    json_decref(j);
    path = h_strfmt("/2015-03-31/event-source-mappings/%s", uuid);
    deadline = h_now_ms() + 30000;
    for (;;) {
        struct h_http_resp resp;
        int status;

        assert_int_equal(h_broker_request(&w->b, "GET", path, NULL, NULL, 0, 10000, &resp), 0);
        status = resp.status;
        h_http_resp_free(&resp);
        if (status == 404)
            break;
        assert_int_equal(status, 200);
        if (h_now_ms() > deadline)
            fail_msg("the deleted Kafka mapping is still there after 30 s");
        h_sleep_ms(50);
    }
    /* The group's commits outlive the mapping: one made again resumes from them. */
    for (int p = 0; p < 2; p++)
        assert_int_equal(h_kafka_committed(&w->kafka, "g-api", "api", p),
                         h_kafka_high_watermark(&w->kafka, "api", p));
    free(path);
    free(uuid);
    free(sme);
    free(out);
    rworld_end(w);
}

static int group_setup(void **state)
{
    return rworld_group_setup_kafka(state, "esm-kafka", config, 1, topics);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shape_and_order, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_filter_on_value, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_partial_failure_retries_the_rest_in_order,
                                        rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_poison_blocks_only_its_partition, rworld_setup,
                                        rworld_teardown),
        cmocka_unit_test_setup_teardown(test_kill9_mid_stream, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_servers_are_a_problem, rworld_setup,
                                        rworld_teardown),
        cmocka_unit_test_setup_teardown(test_too_large_record_to_on_failure, rworld_setup,
                                        rworld_teardown),
        cmocka_unit_test_setup_teardown(test_two_brokers_one_group, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_at_timestamp_on_the_mock, rworld_setup,
                                        rworld_teardown),
        cmocka_unit_test_setup_teardown(test_aws_cli_get_update, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_aws_cli_create_delete, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_server_down_and_back, rworld_setup, rworld_teardown),
    };
    int rc;

    itest_filter_from_env();
    rc = cmocka_run_group_tests_name("esm_kafka", tests, group_setup, rworld_group_teardown);
    return rworld_exit_code(rc);
}
