/*
 * tests/integration/test_dest_kafka_mqtt.c - the kafka:// and mqtt:// destinations
 * (destinations/dest_kafka.c, dest_mqtt.c) driven directly on a libevent loop of the test's own,
 * against librdkafka's in-process mock cluster and a real mosquitto on a free loopback port.
 *
 * Covered: a send arrives with its key, body and attributes (Kafka headers, MQTT v5 user
 * properties); a burst of sends is reported in full; DONE runs exactly once and never inside
 * dest_send(); the server goes away -> state() says so and new sends fail fast with SY_EIO
 * "not connected: ..."; the server comes back -> the same destination connects by itself and
 * sends succeed again; a send nobody acknowledges ends with SY_ETIMEDOUT after
 * DEST_SEND_TIMEOUT_MS (Kafka: all brokers down; MQTT: the broker frozen with SIGSTOP); a send
 * pending at an MQTT disconnect fails; a send pending at destroy() gets SY_ECANCELED before
 * destroy() returns.
 *
 * Every wait polls its condition against a deadline; nothing sleeps for timing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "destinations/dest.h"
#include "destinations/dest_int.h"
#include "harness/mqtt.h"
#include "harness/mqtt_sub.h"
#include "harness/proc.h"
#include "harness/util.h"

/* Generous bounds: sanitizer builds on a busy machine. None of them is a timing assertion. */
#define WAIT_CONNECT_MS 20000 /* a destination (re)connects */
#define WAIT_DONE_MS 20000    /* an accepted send is reported (DEST_SEND_TIMEOUT_MS + slack) */
#define WAIT_FAST_MS 5000     /* a send that must fail fast is reported */
#define WAIT_CONSUME_MS 20000 /* the test's consumer/subscriber sees a message */
#define LOOP_TICK_MS 10       /* wakes the loop so run_until() re-checks its condition */
#define KAFKA_BROKERS 3

/* ---- the loop and DONE bookkeeping -------------------------------------------------------- */

struct tctx {
    struct event_base *base;
    struct event *tick;
};

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
}

static struct tctx *tctx_new(void)
{
    struct tctx *c = calloc(1, sizeof(*c));
    struct timeval tv = {0, LOOP_TICK_MS * 1000};

    assert_non_null(c);
    c->base = event_base_new();
    assert_non_null(c->base);
    c->tick = event_new(c->base, -1, EV_PERSIST, tick_cb, NULL);
    assert_non_null(c->tick);
    assert_int_equal(event_add(c->tick, &tv), 0);
    return c;
}

static void tctx_free(struct tctx *c)
{
    event_free(c->tick);
    event_base_free(c->base);
    free(c);
}

typedef bool cond_fn(void *arg);

/* Run the loop until COND(ARG) holds or TIMEOUT_MS pass. Returns COND's last value. */
static bool run_until(struct tctx *c, cond_fn *cond, void *arg, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;

    while (!cond(arg)) {
        if (h_now_ms() >= deadline)
            return false;
        event_base_loop(c->base, EVLOOP_ONCE);
    }
    return true;
}

/* What DONE reported for one send. */
struct done_rec {
    int calls;
    int rc;
    char msg[512];
};

static bool in_send;     /* set around dest sends: DONE must never run then */
static int done_in_send; /* DONE calls that happened inside a send (must stay 0) */

static void on_done(void *arg, int rc, const char *errmsg)
{
    struct done_rec *r = arg;

    if (in_send)
        done_in_send++;
    r->calls++;
    r->rc = rc;
    snprintf(r->msg, sizeof(r->msg), "%s", errmsg != NULL ? errmsg : "");
}

static bool done_called(void *arg)
{
    return ((struct done_rec *)arg)->calls > 0;
}

static const struct dest_attr test_attrs[] = {
    {"RequestID", "req-7f3a", 0},
    {"ErrorCode", "500", 1},
    {"ErrorMessage", "handler crashed: exit status 2", 0},
};

/* Send BODY with KEY (and the test attributes when WITH_ATTRS) through D. */
static int send_msg(struct dest *d, const char *key, const char *body, bool with_attrs,
                    struct done_rec *r)
{
    struct dest_msg msg = {
        .body = body,
        .len = strlen(body),
        .key = key,
        .attrs = with_attrs ? test_attrs : NULL,
        .n_attrs = with_attrs ? sizeof(test_attrs) / sizeof(test_attrs[0]) : 0,
    };
    int rc;

    memset(r, 0, sizeof(*r));
    in_send = true;
    rc = d->ops->send(d, &msg, on_done, r);
    in_send = false;
    return rc;
}

/* Send and run the loop until DONE; fails the test if DONE does not come. Returns DONE's rc. */
static int send_and_wait(struct tctx *c, struct dest *d, const char *key, const char *body,
                         bool with_attrs, int timeout_ms, struct done_rec *r)
{
    assert_int_equal(send_msg(d, key, body, with_attrs, r), 0);
    if (!run_until(c, done_called, r, timeout_ms))
        fail_msg("no DONE for send %s within %d ms (state: %s)", key, timeout_ms, d->ops->state(d));
    assert_int_equal(r->calls, 1);
    assert_int_equal(done_in_send, 0);
    return r->rc;
}

#define BURST 50

struct burst {
    struct done_rec r[BURST];
};

static bool burst_done(void *arg)
{
    struct burst *b = arg;

    for (int i = 0; i < BURST; i++) {
        if (b->r[i].calls == 0)
            return false;
    }
    return true;
}

/* BURST sends back to back, then the loop until every one is reported: all must succeed. */
static void send_burst(struct tctx *c, struct dest *d, const char *tag, struct burst *b)
{
    for (int i = 0; i < BURST; i++) {
        char key[64], body[96];

        snprintf(key, sizeof(key), "%s-%d", tag, i);
        snprintf(body, sizeof(body), "{\"burst\":\"%s\",\"i\":%d}", tag, i);
        assert_int_equal(send_msg(d, key, body, i % 2 == 0, &b->r[i]), 0);
    }
    if (!run_until(c, burst_done, b, WAIT_DONE_MS))
        fail_msg("burst %s: not every send reported within %d ms", tag, WAIT_DONE_MS);
    for (int i = 0; i < BURST; i++) {
        assert_int_equal(b->r[i].calls, 1);
        if (b->r[i].rc != 0)
            fail_msg("burst %s #%d: %d %s", tag, i, b->r[i].rc, b->r[i].msg);
    }
    assert_int_equal(done_in_send, 0);
}

struct state_wait {
    struct dest *d;
    const char *prefix;
};

static bool state_has_prefix(void *arg)
{
    struct state_wait *w = arg;

    return strncmp(w->d->ops->state(w->d), w->prefix, strlen(w->prefix)) == 0;
}

/* Run the loop until D's state starts with PREFIX; fails the test at the deadline. */
static void wait_state(struct tctx *c, struct dest *d, const char *prefix, int timeout_ms)
{
    struct state_wait w = {d, prefix};

    if (!run_until(c, state_has_prefix, &w, timeout_ms))
        fail_msg("state still \"%s\" after %d ms, expected \"%s...\"", d->ops->state(d), timeout_ms,
                 prefix);
}

/* Destroy D; every send still pending must have been reported once it returns. */
static void destroy_dest(struct dest *d)
{
    d->ops->destroy(d);
}

/*
 * A DONE that destroy() runs, and that sends again and destroys again (as a core callback
 * might): the send must be refused (SY_ECLOSED, so its DONE never comes) and the second
 * destroy must be a no-op, on an object that is half torn down.
 */
struct reenter {
    struct dest *d;
    int calls, rc, send_rc;
    char msg[256];
    struct done_rec late; /* DONE of the send made from inside DONE: must never come */
};

static void on_done_reenter(void *arg, int rc, const char *errmsg)
{
    struct reenter *x = arg;
    struct dest_msg m = {.body = "{}", .len = 2, .key = "again"};

    x->calls++;
    x->rc = rc;
    snprintf(x->msg, sizeof(x->msg), "%s", errmsg != NULL ? errmsg : "");
    x->send_rc = x->d->ops->send(x->d, &m, on_done, &x->late);
    x->d->ops->destroy(x->d);
}

/* Send once through D (connected), then destroy it with the send pending; see above. */
static void destroy_reentrant(struct dest *d)
{
    struct reenter x = {.d = d};
    struct dest_msg m = {.body = "{\"n\":5}", .len = 7, .key = "req-reenter"};

    in_send = true;
    assert_int_equal(d->ops->send(d, &m, on_done_reenter, &x), 0);
    in_send = false;
    assert_int_equal(x.calls, 0);
    destroy_dest(d);
    assert_int_equal(x.calls, 1);
    assert_int_equal(x.rc, SY_ECANCELED);
    assert_string_equal(x.msg, "destination closed");
    assert_int_equal(x.send_rc, SY_ECLOSED);
    assert_int_equal(x.late.calls, 0);
    assert_int_equal(done_in_send, 0);
}

/* ---- Kafka: the mock cluster and a consumer ------------------------------------------------ */

struct kafka_fx {
    rd_kafka_t *mock_rk; /* a throwaway handle that owns the mock cluster */
    rd_kafka_mock_cluster_t *mc;
    char bootstraps[512];
    char uri[600];
    struct tctx *c;
};

#define KAFKA_TOPIC "sy-dest-test"

static int kafka_group_setup(void **state)
{
    struct kafka_fx *fx = calloc(1, sizeof(*fx));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[512];

    if (fx == NULL || conf == NULL)
        return -1;
    fx->mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (fx->mock_rk == NULL) {
        fprintf(stderr, "mock handle: %s\n", errstr);
        return -1;
    }
    fx->mc = rd_kafka_mock_cluster_new(fx->mock_rk, KAFKA_BROKERS);
    if (fx->mc == NULL) {
        fprintf(stderr, "cannot create the mock cluster\n");
        return -1;
    }
    snprintf(fx->bootstraps, sizeof(fx->bootstraps), "%s",
             rd_kafka_mock_cluster_bootstraps(fx->mc));
    if (rd_kafka_mock_topic_create(fx->mc, KAFKA_TOPIC, 1, KAFKA_BROKERS) !=
        RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "cannot create the mock topic\n");
        return -1;
    }
    snprintf(fx->uri, sizeof(fx->uri), "kafka://%s/%s", fx->bootstraps, KAFKA_TOPIC);
    *state = fx;
    return 0;
}

static int kafka_group_teardown(void **state)
{
    struct kafka_fx *fx = *state;

    if (fx == NULL)
        return 0;
    if (fx->mc != NULL)
        rd_kafka_mock_cluster_destroy(fx->mc);
    if (fx->mock_rk != NULL)
        rd_kafka_destroy(fx->mock_rk);
    free(fx);
    return 0;
}

static int kafka_setup(void **state)
{
    struct kafka_fx *fx = *state;

    fx->c = tctx_new();
    done_in_send = 0;
    return 0;
}

static int kafka_teardown(void **state)
{
    struct kafka_fx *fx = *state;

    /* A test that failed half-way may have left brokers down or slow. */
    for (int id = 1; id <= KAFKA_BROKERS; id++) {
        rd_kafka_mock_broker_set_up(fx->mc, id);
        rd_kafka_mock_broker_set_rtt(fx->mc, id, 0);
    }
    tctx_free(fx->c);
    fx->c = NULL;
    return 0;
}

static struct dest *kafka_open(struct kafka_fx *fx)
{
    struct sy_error err = {{0}};
    struct dest *d = NULL;
    int rc = dest_kafka_ops.create(fx->c->base, fx->uri, &d, &err);

    if (rc != 0)
        fail_msg("create %s: %d %s", fx->uri, rc, err.msg);
    assert_non_null(d);
    assert_ptr_equal(d->ops, &dest_kafka_ops);
    assert_string_equal(d->uri, fx->uri);
    return d;
}

/* The value of the last header NAME of M as a new string, or NULL. */
static char *kafka_header(rd_kafka_message_t *m, const char *name)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *val;
    size_t size;

    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(hdrs, name, &val, &size) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return NULL;
    return strndup(val, size);
}

/*
 * Read the topic from the beginning (a blocking consumer; the loop under test is idle
 * meanwhile) until the message with KEY shows up; check its value and headers.
 */
static void kafka_expect_message(struct kafka_fx *fx, const char *key, const char *body,
                                 bool with_attrs)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *parts;
    int64_t deadline = h_now_ms() + WAIT_CONSUME_MS;
    rd_kafka_t *rk;
    char errstr[512];
    bool found = false;

    assert_int_equal(
        rd_kafka_conf_set(conf, "bootstrap.servers", fx->bootstraps, errstr, sizeof(errstr)),
        RD_KAFKA_CONF_OK);
    assert_int_equal(
        rd_kafka_conf_set(conf, "group.id", "sy-dest-test-reader", errstr, sizeof(errstr)),
        RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr)),
                     RD_KAFKA_CONF_OK);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (rk == NULL)
        fail_msg("consumer: %s", errstr);
    rd_kafka_poll_set_consumer(rk);
    parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, KAFKA_TOPIC, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(rk, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(parts);

    while (!found && h_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);

        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->key_len == strlen(key) &&
            memcmp(m->key, key, m->key_len) == 0) {
            found = true;
            assert_int_equal(m->len, strlen(body));
            assert_memory_equal(m->payload, body, m->len);
            for (size_t i = 0; i < sizeof(test_attrs) / sizeof(test_attrs[0]); i++) {
                char *v = kafka_header(m, test_attrs[i].name);

                if (with_attrs) {
                    assert_non_null(v);
                    assert_string_equal(v, test_attrs[i].value);
                } else {
                    assert_null(v);
                }
                free(v);
            }
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (!found)
        fail_msg("message %s not consumed within %d ms", key, WAIT_CONSUME_MS);
}

static void kafka_set_all(struct kafka_fx *fx, bool up)
{
    for (int id = 1; id <= KAFKA_BROKERS; id++) {
        rd_kafka_resp_err_t err = up ? rd_kafka_mock_broker_set_up(fx->mc, id)
                                     : rd_kafka_mock_broker_set_down(fx->mc, id);

        assert_int_equal(err, RD_KAFKA_RESP_ERR_NO_ERROR);
    }
}

/* Key, value and attributes arrive as key, value and headers; the state becomes connected. */
static void test_kafka_produce(void **state)
{
    struct kafka_fx *fx = *state;
    static struct burst burst;
    struct done_rec r1, r2;
    struct dest *d = kafka_open(fx);

    assert_int_equal(
        send_and_wait(fx->c, d, "req-kafka-1", "{\"answer\":42}", true, WAIT_DONE_MS, &r1), 0);
    assert_string_equal(r1.msg, "");
    /* Without attributes: no headers. */
    assert_int_equal(
        send_and_wait(fx->c, d, "req-kafka-2", "{\"plain\":true}", false, WAIT_DONE_MS, &r2), 0);
    wait_state(fx->c, d, "connected", WAIT_CONNECT_MS);
    send_burst(fx->c, d, "kafka-burst", &burst);
    assert_int_equal(d->sent, 2 + BURST);
    assert_int_equal(d->failures, 0);
    destroy_dest(d);
    /* Nothing was pending: destroy reports nothing more. */
    assert_int_equal(r1.calls, 1);
    assert_int_equal(r2.calls, 1);

    kafka_expect_message(fx, "req-kafka-1", "{\"answer\":42}", true);
    kafka_expect_message(fx, "req-kafka-2", "{\"plain\":true}", false);
    kafka_expect_message(fx, "kafka-burst-49", "{\"burst\":\"kafka-burst\",\"i\":49}", false);
}

/*
 * All brokers down: a send accepted just before the destination noticed ends with
 * SY_ETIMEDOUT (message.timeout.ms), sends after it noticed fail fast; brokers back: the same
 * destination delivers again.
 */
static void test_kafka_down_up(void **state)
{
    struct kafka_fx *fx = *state;
    struct done_rec r, inflight;
    struct dest *d = kafka_open(fx);

    assert_int_equal(
        send_and_wait(fx->c, d, "req-kafka-before", "{\"n\":1}", true, WAIT_DONE_MS, &r), 0);
    wait_state(fx->c, d, "connected", WAIT_CONNECT_MS);

    kafka_set_all(fx, false);
    /* The loop has not run since: the destination still believes it is connected. */
    assert_int_equal(send_msg(d, "req-kafka-inflight", "{\"n\":0}", true, &inflight), 0);
    wait_state(fx->c, d, "reconnecting: ", WAIT_CONNECT_MS);
    assert_int_equal(send_and_wait(fx->c, d, "req-kafka-down", "{\"n\":2}", true, WAIT_FAST_MS, &r),
                     SY_EIO);
    assert_non_null(strstr(r.msg, "not connected"));
    if (!run_until(fx->c, done_called, &inflight, WAIT_DONE_MS))
        fail_msg("the send accepted before the outage was not reported in %d ms", WAIT_DONE_MS);
    assert_int_equal(inflight.calls, 1);
    assert_int_equal(inflight.rc, SY_ETIMEDOUT);

    kafka_set_all(fx, true);
    wait_state(fx->c, d, "connected", WAIT_CONNECT_MS);
    assert_int_equal(
        send_and_wait(fx->c, d, "req-kafka-after", "{\"n\":3}", true, WAIT_DONE_MS, &r), 0);
    assert_int_equal(d->sent, 2);
    assert_int_equal(d->failures, 2);
    destroy_dest(d);
    kafka_expect_message(fx, "req-kafka-after", "{\"n\":3}", true);
}

/* A send still pending at destroy() gets SY_ECANCELED before destroy() returns. */
static void test_kafka_destroy_pending(void **state)
{
    struct kafka_fx *fx = *state;
    struct done_rec r;
    struct dest *d = kafka_open(fx);

    assert_int_equal(send_msg(d, "req-kafka-pending", "{\"n\":4}", true, &r), 0);
    assert_int_equal(r.calls, 0);
    destroy_dest(d);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.rc, SY_ECANCELED);
    assert_string_equal(r.msg, "destination closed");
    assert_int_equal(done_in_send, 0);
}

/* A DONE run by destroy() that sends and destroys again is harmless. */
static void test_kafka_destroy_reentrant(void **state)
{
    struct kafka_fx *fx = *state;
    struct done_rec r;
    struct dest *d = kafka_open(fx);

    assert_int_equal(
        send_and_wait(fx->c, d, "req-kafka-warm", "{\"n\":1}", false, WAIT_DONE_MS, &r), 0);
    destroy_reentrant(d);
}

static void kafka_set_rtt(struct kafka_fx *fx, int rtt_ms)
{
    for (int id = 1; id <= KAFKA_BROKERS; id++)
        assert_int_equal(rd_kafka_mock_broker_set_rtt(fx->mc, id, rtt_ms),
                         RD_KAFKA_RESP_ERR_NO_ERROR);
}

static bool kafka_failed(void *arg)
{
    struct dest *d = arg;
    const char *st = d->ops->state(d);

    return strncmp(st, "failed: ", 8) == 0 || strncmp(st, "reconnecting in ", 16) == 0;
}

/*
 * The producer raises a fatal error (rd_kafka_test_fatal_error(), as an idempotent producer
 * does on an unrecoverable sequence error): the send in flight fails with a clear message,
 * sends fail fast while the producer is replaced, and the same destination delivers again
 * with a fresh producer, without being re-created.
 */
static void test_kafka_fatal_recovers(void **state)
{
    struct kafka_fx *fx = *state;
    struct done_rec r, inflight;
    struct dest *d = kafka_open(fx);

    assert_int_equal(
        send_and_wait(fx->c, d, "req-kafka-prefatal", "{\"n\":1}", true, WAIT_DONE_MS, &r), 0);
    wait_state(fx->c, d, "connected", WAIT_CONNECT_MS);

    /* Slow brokers keep the next send in flight while the error is raised. */
    kafka_set_rtt(fx, 5000);
    assert_int_equal(send_msg(d, "req-kafka-fatal", "{\"n\":2}", true, &inflight), 0);
    assert_int_equal(dest_kafka_test_fatal(d, "injected by the test"), 0);
    if (!run_until(fx->c, kafka_failed, d, WAIT_FAST_MS))
        fail_msg("state still \"%s\" after the fatal error", d->ops->state(d));
    if (!run_until(fx->c, done_called, &inflight, WAIT_FAST_MS))
        fail_msg("the send in flight at the fatal error was not reported");
    assert_int_equal(inflight.calls, 1);
    assert_int_equal(inflight.rc, SY_EIO);
    if (strstr(inflight.msg, "fatal error") == NULL ||
        strstr(inflight.msg, "injected by the test") == NULL)
        fail_msg("unexpected message: %s", inflight.msg);
    /* The loop ran only until that report: the new producer is not up yet. */
    assert_int_equal(send_and_wait(fx->c, d, "req-kafka-down", "{\"n\":3}", true, WAIT_FAST_MS, &r),
                     SY_EIO);
    if (strstr(r.msg, "not connected") == NULL)
        fail_msg("unexpected message: %s", r.msg);

    kafka_set_rtt(fx, 0);
    wait_state(fx->c, d, "connected", WAIT_CONNECT_MS);
    assert_int_equal(
        send_and_wait(fx->c, d, "req-kafka-recovered", "{\"n\":4}", true, WAIT_DONE_MS, &r), 0);
    destroy_dest(d);
    kafka_expect_message(fx, "req-kafka-recovered", "{\"n\":4}", true);
}

/* A bad URI is refused with a message, and nothing is left behind. */
static void test_kafka_bad_uri(void **state)
{
    struct kafka_fx *fx = *state;
    struct sy_error err = {{0}};
    struct dest *d = (struct dest *)1;

    assert_int_equal(dest_kafka_ops.create(fx->c->base, "kafka://host:9092", &d, &err), SY_EINVAL);
    assert_null(d);
    assert_non_null(strstr(err.msg, "kafka://HOST:PORT"));
}

/* ---- MQTT: a real mosquitto and a blocking subscriber --------------------------------------- */

#define MQTT_TOPIC "sy/dest/test"

struct mqtt_fx {
    struct h_mosquitto m;
    char uri[128];
    struct tctx *c;
};

/* The subscriber's message count reaches WANT; the last one carries BODY (and attributes). */
static void sub_expect(struct h_mqtt_sub *s, int want, const char *body, bool with_attrs)
{
    size_t n_attrs = sizeof(test_attrs) / sizeof(test_attrs[0]);

    if (!h_mqtt_sub_loop_until(s, NULL, want, WAIT_CONSUME_MS))
        fail_msg("subscriber got %d messages, expected %d", s->received, want);
    assert_string_equal(s->payload, body);
    if (!with_attrs) {
        assert_int_equal(s->n_props, 0);
        return;
    }
    assert_int_equal(s->n_props, (int)n_attrs);
    for (size_t i = 0; i < n_attrs; i++) {
        bool seen = false;

        for (int j = 0; j < s->n_props; j++) {
            if (strcmp(s->prop_names[j], test_attrs[i].name) == 0) {
                assert_string_equal(s->prop_values[j], test_attrs[i].value);
                seen = true;
            }
        }
        if (!seen)
            fail_msg("user property %s missing", test_attrs[i].name);
    }
}

static int mqtt_group_setup(void **state)
{
    struct mqtt_fx *fx = calloc(1, sizeof(*fx));

    if (fx == NULL)
        return -1;
    *state = fx;
    mosquitto_lib_init();
    if (h_mosquitto_start(&fx->m, 0) != 0)
        return -1;
    snprintf(fx->uri, sizeof(fx->uri), "mqtt://127.0.0.1:%d/%s", fx->m.port, MQTT_TOPIC);
    return 0;
}

static int mqtt_group_teardown(void **state)
{
    struct mqtt_fx *fx = *state;

    if (fx == NULL)
        return 0;
    h_mosquitto_destroy(&fx->m, false);
    free(fx);
    mosquitto_lib_cleanup();
    return 0;
}

static int mqtt_setup(void **state)
{
    struct mqtt_fx *fx = *state;

    fx->c = tctx_new();
    done_in_send = 0;
    /* A test that failed half-way may have left the broker stopped. */
    if (!h_mosquitto_running(&fx->m) && h_mosquitto_start(&fx->m, fx->m.port) != 0)
        return -1;
    return 0;
}

static int mqtt_teardown(void **state)
{
    struct mqtt_fx *fx = *state;

    tctx_free(fx->c);
    fx->c = NULL;
    return 0;
}

static struct dest *mqtt_open(struct mqtt_fx *fx, const char *uri)
{
    struct sy_error err = {{0}};
    struct dest *d = NULL;
    int rc = dest_mqtt_ops.create(fx->c->base, uri, &d, &err);

    if (rc != 0)
        fail_msg("create %s: %d %s", uri, rc, err.msg);
    assert_non_null(d);
    assert_ptr_equal(d->ops, &dest_mqtt_ops);
    return d;
}

/* Body unchanged, attributes as user properties, DONE on the PUBACK. */
static void test_mqtt_publish(void **state)
{
    struct mqtt_fx *fx = *state;
    static struct burst burst;
    struct done_rec r;
    struct h_mqtt_sub s;
    struct dest *d;

    assert_int_equal(h_mqtt_sub_start(&s, fx->m.port, MQTT_TOPIC, WAIT_CONNECT_MS), 0);
    d = mqtt_open(fx, fx->uri);
    wait_state(fx->c, d, "connected", WAIT_CONNECT_MS);
    assert_int_equal(
        send_and_wait(fx->c, d, "req-mqtt-1", "{\"answer\":42}", true, WAIT_DONE_MS, &r), 0);
    sub_expect(&s, 1, "{\"answer\":42}", true);
    assert_int_equal(
        send_and_wait(fx->c, d, "req-mqtt-2", "{\"plain\":true}", false, WAIT_DONE_MS, &r), 0);
    sub_expect(&s, 2, "{\"plain\":true}", false);
    send_burst(fx->c, d, "mqtt-burst", &burst);
    if (!h_mqtt_sub_loop_until(&s, NULL, 2 + BURST, WAIT_CONSUME_MS))
        fail_msg("subscriber got %d messages, expected %d", s.received, 2 + BURST);
    assert_int_equal(d->sent, 2 + BURST);
    assert_int_equal(d->failures, 0);
    destroy_dest(d);
    h_mqtt_sub_stop(&s);
}

/*
 * The broker goes away: the state says so and sends fail fast. It comes back on the same port:
 * the same destination reconnects by itself and delivers again.
 */
static void test_mqtt_down_up(void **state)
{
    struct mqtt_fx *fx = *state;
    struct done_rec r;
    struct h_mqtt_sub s;
    struct dest *d = mqtt_open(fx, fx->uri);

    wait_state(fx->c, d, "connected", WAIT_CONNECT_MS);
    h_mosquitto_stop(&fx->m);
    wait_state(fx->c, d, "reconnecting in ", WAIT_CONNECT_MS);
    assert_int_equal(send_and_wait(fx->c, d, "req-mqtt-down", "{\"n\":1}", true, WAIT_FAST_MS, &r),
                     SY_EIO);
    assert_non_null(strstr(r.msg, "not connected: "));

    assert_int_equal(h_mosquitto_start(&fx->m, fx->m.port), 0);
    wait_state(fx->c, d, "connected", WAIT_CONNECT_MS);
    assert_int_equal(h_mqtt_sub_start(&s, fx->m.port, MQTT_TOPIC, WAIT_CONNECT_MS), 0);
    assert_int_equal(send_and_wait(fx->c, d, "req-mqtt-up", "{\"n\":2}", true, WAIT_DONE_MS, &r),
                     0);
    sub_expect(&s, 1, "{\"n\":2}", true);
    assert_int_equal(d->sent, 1);
    assert_int_equal(d->failures, 1);
    destroy_dest(d);
    h_mqtt_sub_stop(&s);
}

/*
 * A send whose PUBACK has not come when the connection drops fails (SY_EIO). The broker is
 * frozen (SIGSTOP) so the PUBACK cannot come, then killed so the connection drops.
 */
static void test_mqtt_pending_at_disconnect(void **state)
{
    struct mqtt_fx *fx = *state;
    struct done_rec r;
    struct dest *d = mqtt_open(fx, fx->uri);

    wait_state(fx->c, d, "connected", WAIT_CONNECT_MS);
    assert_int_equal(kill(fx->m.proc.pid, SIGSTOP), 0);
    assert_int_equal(send_msg(d, "req-mqtt-lost", "{\"n\":3}", true, &r), 0);
    assert_int_equal(r.calls, 0);
    h_proc_stop(&fx->m.proc, SIGKILL, 5000);
    if (!run_until(fx->c, done_called, &r, WAIT_DONE_MS))
        fail_msg("no DONE after the broker died (state: %s)", d->ops->state(d));
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.rc, SY_EIO);
    assert_non_null(strstr(r.msg, "connection lost"));
    assert_int_equal(done_in_send, 0);
    destroy_dest(d);
    assert_int_equal(h_mosquitto_start(&fx->m, fx->m.port), 0);
}

/*
 * No PUBACK within DEST_SEND_TIMEOUT_MS (the broker is frozen): SY_ETIMEDOUT. The late PUBACK
 * after the broker thaws is ignored, and the destination keeps working.
 */
static void test_mqtt_send_timeout(void **state)
{
    struct mqtt_fx *fx = *state;
    struct done_rec r, r2;
    struct dest *d = mqtt_open(fx, fx->uri);

    wait_state(fx->c, d, "connected", WAIT_CONNECT_MS);
    assert_int_equal(kill(fx->m.proc.pid, SIGSTOP), 0);
    assert_int_equal(send_msg(d, "req-mqtt-slow", "{\"n\":6}", false, &r), 0);
    if (!run_until(fx->c, done_called, &r, WAIT_DONE_MS)) {
        kill(fx->m.proc.pid, SIGCONT);
        fail_msg("no DONE for a send the broker never acknowledged");
    }
    assert_int_equal(kill(fx->m.proc.pid, SIGCONT), 0);
    assert_int_equal(r.rc, SY_ETIMEDOUT);
    assert_non_null(strstr(r.msg, "PUBACK"));
    assert_string_equal(d->ops->state(d), "connected");
    assert_int_equal(
        send_and_wait(fx->c, d, "req-mqtt-thawed", "{\"n\":7}", false, WAIT_DONE_MS, &r2), 0);
    assert_int_equal(r.calls, 1);
    destroy_dest(d);
}

/* A send still pending at destroy() gets SY_ECANCELED before destroy() returns. */
static void test_mqtt_destroy_pending(void **state)
{
    struct mqtt_fx *fx = *state;
    struct done_rec r;
    struct dest *d = mqtt_open(fx, fx->uri);

    wait_state(fx->c, d, "connected", WAIT_CONNECT_MS);
    assert_int_equal(send_msg(d, "req-mqtt-pending", "{\"n\":4}", true, &r), 0);
    assert_int_equal(r.calls, 0);
    destroy_dest(d);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.rc, SY_ECANCELED);
    assert_string_equal(r.msg, "destination closed");
}

/* A DONE run by destroy() that sends and destroys again is harmless. */
static void test_mqtt_destroy_reentrant(void **state)
{
    struct mqtt_fx *fx = *state;
    struct dest *d = mqtt_open(fx, fx->uri);

    wait_state(fx->c, d, "connected", WAIT_CONNECT_MS);
    destroy_reentrant(d);
}

/* Nothing listens: the destination keeps retrying with backoff, sends fail fast. */
static void test_mqtt_never_connected(void **state)
{
    struct mqtt_fx *fx = *state;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    struct done_rec r;
    char uri[128];
    struct dest *d;
    int fd;

    /* A port nobody listens on and nobody can take: bound by us, never listening. */
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(uri, sizeof(uri), "mqtt://127.0.0.1:%d/%s", ntohs(sa.sin_port), MQTT_TOPIC);
    d = mqtt_open(fx, uri);
    wait_state(fx->c, d, "reconnecting in ", WAIT_CONNECT_MS);
    assert_int_equal(
        send_and_wait(fx->c, d, "req-mqtt-nobody", "{\"n\":5}", false, WAIT_FAST_MS, &r), SY_EIO);
    assert_non_null(strstr(r.msg, "not connected: "));
    destroy_dest(d);
    close(fd);
}

/*
 * A host name goes through the resolver thread. (Where "localhost" comes back as ::1 first,
 * on which the broker does not listen, this also covers moving on to the next address.)
 */
static void test_mqtt_hostname(void **state)
{
    struct mqtt_fx *fx = *state;
    struct done_rec r;
    char uri[128];
    struct dest *d;

    snprintf(uri, sizeof(uri), "mqtt://localhost:%d/%s", fx->m.port, MQTT_TOPIC);
    d = mqtt_open(fx, uri);
    wait_state(fx->c, d, "connected", WAIT_CONNECT_MS);
    assert_int_equal(send_and_wait(fx->c, d, "req-mqtt-name", "{\"n\":8}", true, WAIT_DONE_MS, &r),
                     0);
    destroy_dest(d);
}

static void test_mqtt_bad_uri(void **state)
{
    struct mqtt_fx *fx = *state;
    struct sy_error err = {{0}};
    struct dest *d = (struct dest *)1;

    assert_int_equal(dest_mqtt_ops.create(fx->c->base, "mqtt://127.0.0.1:1883", &d, &err),
                     SY_EINVAL);
    assert_null(d);
    assert_int_equal(dest_mqtt_ops.create(fx->c->base, "mqtt://127.0.0.1:99999/t", &d, &err),
                     SY_EINVAL);
    assert_null(d);
}

int main(void)
{
    const struct CMUnitTest kafka_tests[] = {
        cmocka_unit_test_setup_teardown(test_kafka_produce, kafka_setup, kafka_teardown),
        cmocka_unit_test_setup_teardown(test_kafka_down_up, kafka_setup, kafka_teardown),
        cmocka_unit_test_setup_teardown(test_kafka_destroy_pending, kafka_setup, kafka_teardown),
        cmocka_unit_test_setup_teardown(test_kafka_destroy_reentrant, kafka_setup, kafka_teardown),
        cmocka_unit_test_setup_teardown(test_kafka_fatal_recovers, kafka_setup, kafka_teardown),
        cmocka_unit_test_setup_teardown(test_kafka_bad_uri, kafka_setup, kafka_teardown),
    };
    const struct CMUnitTest mqtt_tests[] = {
        cmocka_unit_test_setup_teardown(test_mqtt_publish, mqtt_setup, mqtt_teardown),
        cmocka_unit_test_setup_teardown(test_mqtt_down_up, mqtt_setup, mqtt_teardown),
        cmocka_unit_test_setup_teardown(test_mqtt_pending_at_disconnect, mqtt_setup, mqtt_teardown),
        cmocka_unit_test_setup_teardown(test_mqtt_send_timeout, mqtt_setup, mqtt_teardown),
        cmocka_unit_test_setup_teardown(test_mqtt_destroy_pending, mqtt_setup, mqtt_teardown),
        cmocka_unit_test_setup_teardown(test_mqtt_destroy_reentrant, mqtt_setup, mqtt_teardown),
        cmocka_unit_test_setup_teardown(test_mqtt_never_connected, mqtt_setup, mqtt_teardown),
        cmocka_unit_test_setup_teardown(test_mqtt_hostname, mqtt_setup, mqtt_teardown),
        cmocka_unit_test_setup_teardown(test_mqtt_bad_uri, mqtt_setup, mqtt_teardown),
    };
    const char *filter = getenv("SY_TEST_FILTER");
    int failed = 0;

    if (filter != NULL && *filter != '\0')
        cmocka_set_test_filter(filter);
    h_proc_init();
    failed += cmocka_run_group_tests_name("dest_kafka", kafka_tests, kafka_group_setup,
                                          kafka_group_teardown);
    failed +=
        cmocka_run_group_tests_name("dest_mqtt", mqtt_tests, mqtt_group_setup, mqtt_group_teardown);
    return failed != 0;
}
