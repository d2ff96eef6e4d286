/*
 * tests/integration/test_async_dest.c - async destinations end to end through the broker,
 * against real servers: a Redis list that is DOWN when the record is due (the record stays
 * queued, failures are counted) and comes back (the record arrives), a Redis stream, a Kafka
 * topic on the librdkafka mock cluster (in this process) and an MQTT topic on a real mosquitto
 * (the dead letter: the original event with its attributes as MQTT v5 user properties).
 */
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "harness/mqtt.h"
#include "harness/mqtt_sub.h"
#include "harness/redis.h"

#define KAFKA_TOPIC "sy-failures"
#define MQTT_TOPIC "sy/dlq"

static struct h_redis redis;
static struct h_mosquitto mqtt;
static rd_kafka_t *mock_rk;
static rd_kafka_mock_cluster_t *mock;
static char bootstraps[256];

/* ---- helpers ------------------------------------------------------------------------------ */

static redisContext *redis_connect(void)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", redis.port, tv);

    if (c == NULL || c->err)
        fail_msg("cannot connect to redis on port %d", redis.port);
    redisSetTimeout(c, tv);
    return c;
}

/* ---- tests -------------------------------------------------------------------------------- */

/*
 * on_success to a Redis list while Redis is down: the record stays queued and the failures are
 * counted; once Redis is up the record arrives, exactly in Lambda's format.
 */
static void test_redis_down_then_up(void **state)
{
    struct itest *t = *state;
    char *dir = h_strfmt("%s/rec", t->b.dir);
    char *payload, *rid;
    redisContext *c;
    redisReply *rep = NULL;
    int64_t deadline;
    json_t *rec;

    mkdir(dir, 0755);
    payload = h_strfmt("{\"dir\":\"%s\",\"n\":1}", dir);
    rid = itest_invoke_event(&t->b, "ok-redis", payload);
    deadline = h_now_ms() + 20000;
    while (itest_async_stat(&t->b, "dest_failures") < 2 && h_now_ms() < deadline)
        h_sleep_ms(50);
    assert_true(itest_async_stat(&t->b, "dest_failures") >= 2);
    assert_int_equal(itest_async_stat(&t->b, "queued"), 1); /* still held, not dropped */

    assert_int_equal(h_redis_start(&redis), 0);
    c = redis_connect();
    deadline = h_now_ms() + 30000;
    for (;;) {
        freeReplyObject(rep);
        rep = redisCommand(c, "LRANGE sy-ok 0 -1");
        if ((rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements > 0) ||
            h_now_ms() > deadline)
            break;
        h_sleep_ms(50);
    }
    assert_non_null(rep);
    assert_int_equal(rep->elements, 1);
    rec = h_json_parse(rep->element[0]->str, rep->element[0]->len);
    assert_non_null(rec);
    assert_string_equal(h_json_str(json_object_get(rec, "requestContext"), "requestId"), rid);
    assert_string_equal(h_json_str(json_object_get(rec, "requestContext"), "condition"),
                        "Success");
    json_decref(rec);
    freeReplyObject(rep);
    redisFree(c);
    deadline = h_now_ms() + 10000;
    while (itest_async_stat(&t->b, "queued") != 0 && h_now_ms() < deadline)
        h_sleep_ms(20);
    assert_int_equal(itest_async_stat(&t->b, "queued"), 0);
    free(rid);
    free(payload);
    free(dir);
    itest_end(t);
}

/*
 * A failure fans out: the on_failure record to a Kafka topic and to a Redis stream (two
 * functions), the dead letter to MQTT with its attributes as user properties.
 */
static void test_kafka_stream_mqtt(void **state)
{
    struct itest *t = *state;
    char *dir = h_strfmt("%s/flaky", t->b.dir);
    char *payload, *rid, *rid2;
    struct h_mqtt_sub s;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *parts;
    rd_kafka_t *rk;
    char errstr[512];
    bool found = false;
    int64_t deadline;
    redisContext *c;
    redisReply *rep = NULL;

    mkdir(dir, 0755);
    if (!h_redis_running(&redis))
        assert_int_equal(h_redis_start(&redis), 0);
    /* Subscribe first: the dead letter is published once. */
    assert_int_equal(h_mqtt_sub_start(&s, mqtt.port, MQTT_TOPIC, 10000), 0);

    payload = h_strfmt("{\"dir\":\"%s\",\"key\":\"k\"}", dir);
    rid = itest_invoke_event(&t->b, "fail-kafka-mqtt", payload);
    rid2 = itest_invoke_event(&t->b, "fail-stream", payload);

    /* MQTT: the original event, RequestID as a user property. */
    if (!h_mqtt_sub_loop_until(&s, NULL, 1, 30000))
        fail_msg("no dead letter on MQTT topic %s", MQTT_TOPIC);
    assert_string_equal(s.payload, payload);
    assert_non_null(h_mqtt_sub_prop(&s, "RequestID"));
    assert_string_equal(h_mqtt_sub_prop(&s, "RequestID"), rid);
    h_mqtt_sub_stop(&s);

    /* Kafka: the record, keyed by the request id. */
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "group.id", "sy-async-dest-test", errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr));
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    rd_kafka_poll_set_consumer(rk);
    parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, KAFKA_TOPIC, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(rk, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(parts);
    deadline = h_now_ms() + 30000;
    while (!found && h_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);

        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->key_len == strlen(rid) &&
            memcmp(m->key, rid, m->key_len) == 0) {
            json_t *rec = h_json_parse(m->payload, m->len);

            assert_non_null(rec);
            assert_string_equal(h_json_str(json_object_get(rec, "requestContext"), "condition"),
                                "RetriesExhausted");
            assert_string_equal(
                h_json_str(json_object_get(rec, "responsePayload"), "errorType"), "FlakyError");
            json_decref(rec);
            found = true;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (!found)
        fail_msg("no record for %s on Kafka topic %s", rid, KAFKA_TOPIC);

    /* Redis stream: XADD with a body field. */
    c = redis_connect();
    deadline = h_now_ms() + 20000;
    for (;;) {
        freeReplyObject(rep);
        rep = redisCommand(c, "XRANGE sy-fail - +");
        if ((rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements > 0) ||
            h_now_ms() > deadline)
            break;
        h_sleep_ms(50);
    }
    assert_non_null(rep);
    assert_true(rep->elements >= 1);
    {
        redisReply *fields = rep->element[0]->element[1];

        assert_string_equal(fields->element[0]->str, "body");
        expect_contains(fields->element[1]->str, rid2);
    }
    freeReplyObject(rep);
    redisFree(c);
    free(rid2);
    free(rid);
    free(payload);
    free(dir);
    itest_end(t);
}

/* ---- fixtures ----------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[512];
    char *yaml;
    int rc;

    mosquitto_lib_init();
    if (h_redis_reserve_port(&redis) < 0 || h_mosquitto_start(&mqtt, 0) != 0)
        return -1;
    mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (mock_rk == NULL)
        return -1;
    mock = rd_kafka_mock_cluster_new(mock_rk, 1);
    if (mock == NULL)
        return -1;
    snprintf(bootstraps, sizeof(bootstraps), "%s", rd_kafka_mock_cluster_bootstraps(mock));
    rd_kafka_mock_topic_create(mock, KAFKA_TOPIC, 1, 1);
    yaml = h_strfmt(ITEST_BROKER_YAML
                    "functions:\n"
                    "  ok-redis:\n"
                    "    runtime: python3\n"
                    "    handler: app.record\n"
                    "    code: @FIXTURES@/async\n"
                    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
                    "    async: {on_success: 'redis://127.0.0.1:%d/list/sy-ok'}\n"
                    "  fail-kafka-mqtt:\n"
                    "    runtime: python3\n"
                    "    handler: app.flaky\n"
                    "    code: @FIXTURES@/async\n"
                    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
                    "    async:\n"
                    "      maximum_retry_attempts: 0\n"
                    "      on_failure: 'kafka://%s/" KAFKA_TOPIC "'\n"
                    "      dead_letter: 'mqtt://127.0.0.1:%d/" MQTT_TOPIC "'\n"
                    "  fail-stream:\n"
                    "    runtime: python3\n"
                    "    handler: app.flaky\n"
                    "    code: @FIXTURES@/async\n"
                    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n"
                    "    async:\n"
                    "      maximum_retry_attempts: 0\n"
                    "      on_failure: 'redis://127.0.0.1:%d/stream/sy-fail'\n",
                    redis.port, bootstraps, mqtt.port, redis.port);
    rc = itest_group_start(state, "asyncdest", yaml, NULL);
    free(yaml);
    return rc;
}

static int group_teardown(void **state)
{
    int rc = itest_group_stop(state);

    h_redis_free(&redis);
    h_mosquitto_destroy(&mqtt, rc != 0);
    if (mock != NULL)
        rd_kafka_mock_cluster_destroy(mock);
    if (mock_rk != NULL)
        rd_kafka_destroy(mock_rk);
    mosquitto_lib_cleanup();
    return rc;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, itest_setup, itest_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_redis_down_then_up),
        T(test_kafka_stream_mqtt),
    };

    itest_filter_from_env();
    return itest_exit_code(
        cmocka_run_group_tests_name("asyncdest", tests, group_setup, group_teardown));
}
