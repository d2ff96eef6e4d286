/*
 * tests/integration/test_kafka_harness.c - the Kafka test kit itself: sy-kafka-mock
 * (tests/kafka_mock/) and the harness around it (tests/harness/kafka.h). The Kafka source's
 * tests and benchmark build on both, so this proves what they rely on: the bootstrap line and
 * the command protocol, single and bulk produce read back whole (keys, headers, tombstones),
 * a group's committed offsets seen from outside the group without a rebalance, a broker going
 * down and coming back, the mock outliving EOF on its stdin, and the mock's documented limits
 * (5 MiB per partition, topics auto-created with 4 partitions).
 *
 * No broker process: the test is the only client. Waits are bounded polls; no timing is
 * asserted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "harness/kafka.h"
#include "harness/proc.h"
#include "harness/util.h"

static struct h_kafka g_kafka = H_KAFKA_INIT;

/* Every test ends with a clean exit of the mock: code 0, so no sanitizer report either. */
static int teardown(void **state)
{
    int rc = h_kafka_stop(&g_kafka);

    h_kafka_free(&g_kafka);
    return rc;
}

/* ---- the mock: bootstrap line and commands ------------------------------------------------ */

static void test_start_and_commands(void **state)
{
    const char *topics[] = {"alpha:3", "beta:1", NULL};

    assert_int_equal(h_kafka_start(&g_kafka, 3, topics), 0);
    assert_non_null(g_kafka.bootstrap);
    /* Three brokers, three loopback addresses. */
    assert_int_equal(h_str_count(g_kafka.bootstrap, "127.0.0.1:"), 3);
    assert_int_equal(h_str_count(g_kafka.bootstrap, ","), 2);
    assert_int_equal(h_kafka_partitions(&g_kafka, "alpha"), 3);
    assert_int_equal(h_kafka_partitions(&g_kafka, "beta"), 1);

    assert_int_equal(h_kafka_cmd(&g_kafka, "topic gamma %d", 5), 0);
    assert_int_equal(h_kafka_partitions(&g_kafka, "gamma"), 5);
    assert_int_equal(h_kafka_cmd(&g_kafka, "topic gamma 5"), -1); /* exists */
    assert_int_equal(h_kafka_cmd(&g_kafka, "rtt 2 5"), 0);
    assert_int_equal(h_kafka_cmd(&g_kafka, "rtt 2 0"), 0);
    assert_int_equal(h_kafka_cmd(&g_kafka, "down 9"), -1); /* no such broker */
    assert_int_equal(h_kafka_cmd(&g_kafka, "bogus"), -1);
    assert_int_equal(h_kafka_cmd(&g_kafka, "down x"), -1);
    /* Still answering after the errors. */
    assert_int_equal(h_kafka_cmd(&g_kafka, "up 1"), 0);

    assert_int_equal(h_kafka_stop(&g_kafka), 0);
    assert_int_equal(h_proc_exit_code(&g_kafka.proc), 0);
    assert_false(h_kafka_running(&g_kafka));
    assert_int_equal(h_kafka_cmd(&g_kafka, "up 1"), -1); /* not running */
}

/* ---- produce and read back ---------------------------------------------------------------- */

struct seen {
    int n;
    int32_t partition[8];
    int64_t offset[8];
    char key[8][32];
    char value[8][64];
    bool null_value[8];
    char hdr[8][64]; /* "name=value;..." in order, "name=(null)" for a null header */
};

static int collect(const rd_kafka_message_t *msg, void *arg)
{
    struct seen *s = arg;
    rd_kafka_headers_t *hdrs = NULL;
    int i = s->n++;

    if (i >= 8)
        return 1;
    s->partition[i] = msg->partition;
    s->offset[i] = msg->offset;
    snprintf(s->key[i], sizeof(s->key[i]), "%.*s", (int)msg->key_len,
             msg->key ? (const char *)msg->key : "");
    s->null_value[i] = msg->payload == NULL;
    snprintf(s->value[i], sizeof(s->value[i]), "%.*s", (int)msg->len,
             msg->payload ? (const char *)msg->payload : "");
    if (rd_kafka_message_headers(msg, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *name;
        const void *val;
        size_t len, used = 0;

        for (size_t h = 0; rd_kafka_header_get_all(hdrs, h, &name, &val, &len) == 0; h++)
            used += (size_t)snprintf(s->hdr[i] + used, sizeof(s->hdr[i]) - used, "%s=%.*s;", name,
                                     val ? (int)len : 6, val ? (const char *)val : "(null)");
    }
    return 0;
}

static void test_produce_and_read(void **state)
{
    const char *topics[] = {"events:2", NULL};
    const char *names[] = {"trace", "empty"};
    const char *values[] = {"abc", NULL};
    struct seen s = {0};

    assert_int_equal(h_kafka_start(&g_kafka, 1, topics), 0);
    assert_int_equal(h_kafka_produce(&g_kafka, "events", 0, "k1", 2, "v1", 2, NULL, NULL, 0), 0);
    assert_int_equal(h_kafka_produce(&g_kafka, "events", 0, "k2", 2, "v2", 2, names, values, 2), 1);
    /* A tombstone (null value) with a key, and a record without a key. */
    assert_int_equal(h_kafka_produce(&g_kafka, "events", 1, "k3", 2, NULL, 0, NULL, NULL, 0), 0);
    assert_int_equal(h_kafka_produce(&g_kafka, "events", 1, NULL, 0, "v4", 2, NULL, NULL, 0), 1);
    /* The partitioner's choice: offset 2 on whichever partition it picked. */
    assert_int_equal(h_kafka_produce(&g_kafka, "events", -1, "k5", 2, "v5", 2, NULL, NULL, 0), 2);

    assert_int_equal(h_kafka_high_watermark(&g_kafka, "events", 0) +
                         h_kafka_high_watermark(&g_kafka, "events", 1),
                     5);
    assert_int_equal(h_kafka_consume_all(&g_kafka, "events", 20000, collect, &s), 5);
    assert_int_equal(s.n, 5);
    for (int i = 0; i < s.n; i++) {
        if (strcmp(s.key[i], "k2") == 0) {
            assert_int_equal(s.partition[i], 0);
            assert_int_equal(s.offset[i], 1);
            assert_string_equal(s.value[i], "v2");
            assert_string_equal(s.hdr[i], "trace=abc;empty=(null);");
        } else if (strcmp(s.key[i], "k3") == 0) {
            assert_true(s.null_value[i]);
        } else if (strcmp(s.value[i], "v4") == 0) {
            assert_string_equal(s.key[i], "");
            assert_int_equal(s.partition[i], 1);
        } else {
            assert_string_equal(s.hdr[i], "");
        }
    }
    /* Reading again starts from the beginning again (nothing was committed). */
    assert_int_equal(h_kafka_consume_all(&g_kafka, "events", 20000, NULL, NULL), 5);
    /* Nothing to read is not an error; an unknown topic is. */
    assert_int_equal(h_kafka_cmd(&g_kafka, "topic empty 3"), 0);
    assert_int_equal(h_kafka_consume_all(&g_kafka, "empty", 20000, NULL, NULL), 0);
    assert_int_equal(h_kafka_consume_all(&g_kafka, "no-such-topic", 5000, NULL, NULL), -1);
}

struct order {
    long n;
    long bad;
    int64_t next[8]; /* next expected offset per partition */
};

/* Record i of h_kafka_produce_n() is at offset i / P of partition i % P. */
static int check_order(const rd_kafka_message_t *msg, void *arg)
{
    struct order *o = arg;
    long idx;

    o->n++;
    if (msg->len != 100 || sscanf(msg->payload, "%10ld", &idx) != 1 || idx % 4 != msg->partition ||
        idx / 4 != msg->offset || msg->offset != o->next[msg->partition] ||
        ((const char *)msg->payload)[99] != 'x')
        o->bad++;
    o->next[msg->partition] = msg->offset + 1;
    return 0;
}

static void test_produce_n(void **state)
{
    const char *topics[] = {"bulk:4", NULL};
    const char *lz4[] = {"compression.codec", "lz4", NULL};
    struct order o = {0};
    int64_t total = 0;

    assert_int_equal(h_kafka_start(&g_kafka, 2, topics), 0);
    assert_int_equal(h_kafka_produce_n(&g_kafka, "bulk", 20000, 100, NULL), 0);
    for (int p = 0; p < 4; p++) {
        int64_t lo = -1, hi = -1;

        assert_int_equal(h_kafka_watermarks(&g_kafka, "bulk", p, &lo, &hi), 0);
        assert_int_equal(lo, 0);
        assert_int_equal(hi, 5000);
        total += hi;
    }
    assert_int_equal(total, 20000);
    assert_int_equal(h_kafka_consume_all(&g_kafka, "bulk", 60000, check_order, &o), 20000);
    assert_int_equal(o.bad, 0);

    /* Extra producer properties are applied (and a bad one is refused). */
    assert_int_equal(h_kafka_cmd(&g_kafka, "topic packed 4"), 0);
    assert_int_equal(h_kafka_produce_n(&g_kafka, "packed", 4000, 100, lz4), 0);
    assert_int_equal(h_kafka_consume_all(&g_kafka, "packed", 60000, NULL, NULL), 4000);
    {
        const char *bad[] = {"no.such.property", "1", NULL};

        assert_int_equal(h_kafka_produce_n(&g_kafka, "packed", 10, 100, bad), -1);
    }
    assert_int_equal(h_kafka_produce_n(&g_kafka, "no-such-topic", 10, 100, NULL), -1);
}

/* ---- committed offsets of a consumer group ---------------------------------------------- */

struct group {
    int assigns;
    int revokes;
};

/* Eager rebalance callback: counts assignments (a new member would cause another one). */
static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct group *g = opaque;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        g->assigns++;
        rd_kafka_assign(rk, parts);
    } else {
        g->revokes++;
        rd_kafka_assign(rk, NULL);
    }
}

static void test_committed(void **state)
{
    const char *topics[] = {"orders:3", NULL};
    const char *props[] = {"group.id", "g1", "enable.auto.commit", "false", "auto.offset.reset",
                           "earliest", NULL};
    struct group g = {0};
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    rd_kafka_topic_partition_list_t *sub, *offs;
    int64_t deadline;
    long got = 0;
    char errstr[512];

    assert_int_equal(h_kafka_start(&g_kafka, 1, topics), 0);
    for (int i = 0; i < 9; i++)
        assert_true(h_kafka_produce(&g_kafka, "orders", i % 3, NULL, 0, "x", 1, NULL, NULL, 0) >=
                    0);
    assert_int_equal(h_kafka_committed(&g_kafka, "g1", "orders", 0), H_KAFKA_NO_OFFSET);

    /* A real group member: subscribe, read all 9 (the mock's first join takes ~3 s). */
    conf = h_kafka_conf(&g_kafka, props);
    assert_non_null(conf);
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_opaque(conf, &g);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    rd_kafka_poll_set_consumer(rk);
    sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, "orders", RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(rk, sub), 0);
    rd_kafka_topic_partition_list_destroy(sub);
    deadline = h_now_ms() + 30000;
    while (got < 9 && h_now_ms() < deadline) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, 100);

        if (msg == NULL)
            continue;
        if (msg->err == 0)
            got++;
        rd_kafka_message_destroy(msg); /* not NULL-safe */
    }
    assert_int_equal(got, 9);
    assert_int_equal(g.assigns, 1);

    /* Commit chosen offsets synchronously: 3 on partition 0, 1 on partition 2, none on 1. */
    offs = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(offs, "orders", 0)->offset = 3;
    rd_kafka_topic_partition_list_add(offs, "orders", 2)->offset = 1;
    assert_int_equal(rd_kafka_commit(rk, offs, 0), 0);
    rd_kafka_topic_partition_list_destroy(offs);

    assert_int_equal(h_kafka_committed(&g_kafka, "g1", "orders", 0), 3);
    assert_int_equal(h_kafka_committed(&g_kafka, "g1", "orders", 1), H_KAFKA_NO_OFFSET);
    assert_int_equal(h_kafka_committed(&g_kafka, "g1", "orders", 2), 1);
    assert_int_equal(h_kafka_committed(&g_kafka, "other-group", "orders", 0), H_KAFKA_NO_OFFSET);

    /* The lookups did not join the group: the member keeps its one assignment. Poll past a
     * heartbeat (3 s) so a rebalance, had there been one, would have reached us. */
    deadline = h_now_ms() + 4000;
    while (h_now_ms() < deadline) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, 100);

        if (msg != NULL)
            rd_kafka_message_destroy(msg);
    }
    assert_int_equal(g.assigns, 1);
    assert_int_equal(g.revokes, 0);

    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    /* Committed offsets outlive the member. */
    assert_int_equal(h_kafka_committed(&g_kafka, "g1", "orders", 0), 3);
}

/* ---- brokers down and up; the mock outlives its stdin ------------------------------------ */

static void test_down_up(void **state)
{
    const char *topics[] = {"t:1", NULL};
    int64_t lo, hi;

    assert_int_equal(h_kafka_start(&g_kafka, 1, topics), 0);
    assert_int_equal(h_kafka_produce(&g_kafka, "t", 0, NULL, 0, "a", 1, NULL, NULL, 0), 0);
    assert_int_equal(h_kafka_cmd(&g_kafka, "down 1"), 0);
    /* Nobody to ask: the lookup fails within its bound. */
    assert_int_equal(h_kafka_watermarks(&g_kafka, "t", 0, &lo, &hi), -1);
    assert_int_equal(h_kafka_cmd(&g_kafka, "up 1"), 0);
    /* Same port, same data: the producer reconnects and appends. */
    assert_int_equal(h_kafka_produce(&g_kafka, "t", 0, NULL, 0, "b", 1, NULL, NULL, 0), 1);
    assert_int_equal(h_kafka_high_watermark(&g_kafka, "t", 0), 2);
}

static void test_stdin_eof(void **state)
{
    const char *topics[] = {"t:1", NULL};

    assert_int_equal(h_kafka_start(&g_kafka, 1, topics), 0);
    /* As if detached with stdin from /dev/null: EOF must not stop it. */
    close(g_kafka.cmd_fd);
    g_kafka.cmd_fd = -1;
    assert_int_equal(h_kafka_produce(&g_kafka, "t", 0, NULL, 0, "a", 1, NULL, NULL, 0), 0);
    assert_true(h_kafka_running(&g_kafka));
    /* No stdin left: h_kafka_stop() falls back to SIGTERM, which is a clean exit. */
    assert_int_equal(h_kafka_stop(&g_kafka), 0);
    assert_int_equal(h_proc_exit_code(&g_kafka.proc), 0);
}

/* ---- the mock's limits, as documented in kafka_mock.c ------------------------------------ */

static void test_mock_limits(void **state)
{
    const char *topics[] = {"small:1", NULL};
    int64_t lo = -1, hi = -1;

    assert_int_equal(h_kafka_start(&g_kafka, 1, topics), 0);
    /* ~7.7 MB of uncompressed batches into one partition: more than the mock keeps (5 MiB). */
    assert_int_equal(h_kafka_produce_n(&g_kafka, "small", 70000, 100, NULL), 0);
    assert_int_equal(h_kafka_watermarks(&g_kafka, "small", 0, &lo, &hi), 0);
    assert_int_equal(hi, 70000);
    assert_true(lo > 0);
    assert_int_equal(h_kafka_consume_all(&g_kafka, "small", 60000, NULL, NULL), hi - lo);

    /* A producer's first record to an unknown topic creates it, with 4 partitions. */
    assert_int_equal(h_kafka_partitions(&g_kafka, "fresh"), -1);
    assert_true(h_kafka_produce(&g_kafka, "fresh", -1, "k", 1, "v", 1, NULL, NULL, 0) >= 0);
    assert_int_equal(h_kafka_partitions(&g_kafka, "fresh"), 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_start_and_commands, teardown),
        cmocka_unit_test_teardown(test_produce_and_read, teardown),
        cmocka_unit_test_teardown(test_produce_n, teardown),
        cmocka_unit_test_teardown(test_committed, teardown),
        cmocka_unit_test_teardown(test_down_up, teardown),
        cmocka_unit_test_teardown(test_stdin_eof, teardown),
        cmocka_unit_test_teardown(test_mock_limits, teardown),
    };

    h_proc_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
