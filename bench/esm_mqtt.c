/*
 * bench/esm_mqtt.c - the MQTT pieces of bench_esm that need no broker of ours (esm_mqtt.h).
 * Each client runs libmosquitto's network thread; the callbacks touch only the client's own
 * counters, under its mutex.
 */
#include "esm_mqtt.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>

#include "bench_common.h"

struct mqtt_pub {
    struct mosquitto *mosq;
    pthread_mutex_t mu;
    long acked; /* PUBACKs (QoS 1/2) or writes (QoS 0) */
};

static void on_publish(struct mosquitto *mosq, void *obj, int mid)
{
    struct mqtt_pub *p = obj;

    (void)mosq;
    (void)mid;
    pthread_mutex_lock(&p->mu);
    p->acked++;
    pthread_mutex_unlock(&p->mu);
}

static struct mosquitto *client(int port, void *obj)
{
    struct mosquitto *m;
    int rc;

    mosquitto_lib_init();
    m = mosquitto_new(NULL, true, obj);
    if (m == NULL)
        bc_fail("mosquitto_new: %s", strerror(errno));
    mosquitto_max_inflight_messages_set(m, 0);
    rc = mosquitto_connect(m, "127.0.0.1", port, 60);
    if (rc != MOSQ_ERR_SUCCESS)
        bc_fail("MQTT connect to 127.0.0.1:%d: %s", port, mosquitto_strerror(rc));
    rc = mosquitto_loop_start(m);
    if (rc != MOSQ_ERR_SUCCESS)
        bc_fail("mosquitto_loop_start: %s", mosquitto_strerror(rc));
    return m;
}

struct mqtt_pub *mqtt_pub_open(int port)
{
    struct mqtt_pub *p = calloc(1, sizeof(*p));

    if (p == NULL)
        bc_fail("out of memory");
    pthread_mutex_init(&p->mu, NULL);
    p->mosq = client(port, p);
    mosquitto_publish_callback_set(p->mosq, on_publish);
    return p;
}

static long pub_acked(struct mqtt_pub *p)
{
    long n;

    pthread_mutex_lock(&p->mu);
    n = p->acked;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void mqtt_pub_run(struct mqtt_pub *p, const char *topic, int qos, long n, size_t len)
{
    char *body = malloc(len ? len : 1);
    long base = pub_acked(p);
    uint64_t deadline = bc_now_ns() + 120000000000ull;

    if (body == NULL)
        bc_fail("out of memory");
    memset(body, 'x', len);
    for (long i = 0; i < n; i++) {
        int rc;

        snprintf(body, len, "%010ld", i);
        body[len - 1] = 'x';
        /* libmosquitto queues what it cannot write now. */
        rc = mosquitto_publish(p->mosq, NULL, topic, (int)len, body, qos, false);
        if (rc != MOSQ_ERR_SUCCESS)
            bc_fail("publish to %s: %s", topic, mosquitto_strerror(rc));
        /* Keep at most 500 unacknowledged: libmosquitto keeps them in a list it walks for every
         * acknowledgement, so a long one costs more than it gains. */
        while (i - (pub_acked(p) - base) > 500) {
            if (bc_now_ns() > deadline)
                bc_fail("publisher: %ld of %ld acknowledged after 120 s", pub_acked(p) - base, n);
            bc_sleep_ms(1);
        }
    }
    while (pub_acked(p) - base < n) {
        if (bc_now_ns() > deadline)
            bc_fail("publisher: %ld of %ld acknowledged after 120 s", pub_acked(p) - base, n);
        bc_sleep_ms(1);
    }
    free(body);
}

void mqtt_pub_one(struct mqtt_pub *p, const char *topic, int qos, const void *payload, size_t len)
{
    int rc = mosquitto_publish(p->mosq, NULL, topic, (int)len, payload, qos, false);

    if (rc != MOSQ_ERR_SUCCESS)
        bc_fail("publish to %s: %s", topic, mosquitto_strerror(rc));
}

void mqtt_pub_close(struct mqtt_pub *p)
{
    if (p == NULL)
        return;
    mosquitto_disconnect(p->mosq);
    mosquitto_loop_stop(p->mosq, false);
    mosquitto_destroy(p->mosq);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* 50 µs: the latency waits poll finer than bc_sleep_ms(). */
static void sleep_short(void)
{
    struct timespec ts = {0, 50000};

    nanosleep(&ts, NULL);
}

struct sub {
    pthread_mutex_t mu;
    long got;
    int subscribed;
    uint64_t t_last;
};

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *m)
{
    struct sub *s = obj;

    (void)mosq;
    (void)m;
    pthread_mutex_lock(&s->mu);
    s->got++;
    s->t_last = bc_now_ns();
    pthread_mutex_unlock(&s->mu);
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int n, const int *granted)
{
    struct sub *s = obj;

    (void)mosq;
    (void)mid;
    (void)n;
    (void)granted;
    pthread_mutex_lock(&s->mu);
    s->subscribed = 1;
    pthread_mutex_unlock(&s->mu);
}

/* A plain subscriber counting into S, subscribed (SUBACK seen, bounded by 30 s) to TOPIC. */
static struct mosquitto *sub_open(struct sub *s, int port, const char *topic, int qos)
{
    uint64_t deadline = bc_now_ns() + 30000000000ull;
    struct mosquitto *m;
    int rc, ready = 0;

    pthread_mutex_init(&s->mu, NULL);
    m = client(port, s);
    mosquitto_message_callback_set(m, on_message);
    mosquitto_subscribe_callback_set(m, on_subscribe);
    rc = mosquitto_subscribe(m, NULL, topic, qos);
    if (rc != MOSQ_ERR_SUCCESS)
        bc_fail("subscribe %s: %s", topic, mosquitto_strerror(rc));
    while (!ready) {
        pthread_mutex_lock(&s->mu);
        ready = s->subscribed;
        pthread_mutex_unlock(&s->mu);
        if (bc_now_ns() > deadline)
            bc_fail("plain subscriber: no SUBACK within 30 s");
        bc_sleep_ms(1);
    }
    return m;
}

static void sub_close(struct sub *s, struct mosquitto *m)
{
    mosquitto_disconnect(m);
    mosquitto_loop_stop(m, false);
    mosquitto_destroy(m);
    pthread_mutex_destroy(&s->mu);
}

double mqtt_raw(struct mqtt_pub *p, int port, const char *topic, int qos, long n, size_t len)
{
    struct sub s = {.got = 0};
    struct mosquitto *m;
    uint64_t t0, deadline;

    m = sub_open(&s, port, topic, qos);
    t0 = bc_now_ns();
    mqtt_pub_run(p, topic, qos, n, len);
    for (deadline = bc_now_ns() + 120000000000ull;;) {
        long got;

        pthread_mutex_lock(&s.mu);
        got = s.got;
        pthread_mutex_unlock(&s.mu);
        if (got >= n)
            break;
        if (bc_now_ns() > deadline)
            bc_fail("plain subscriber: %ld of %ld messages after 120 s", got, n);
        bc_sleep_ms(1);
    }
    sub_close(&s, m);
    return (double)n / ((double)(s.t_last - t0) / 1e9);
}

double *mqtt_raw_latency(struct mqtt_pub *p, int port, const char *topic, int qos, long samples)
{
    double *out = malloc((size_t)(samples ? samples : 1) * sizeof(*out));
    struct sub s = {.got = 0};
    struct mosquitto *m;
    uint64_t deadline;

    if (out == NULL)
        bc_fail("out of memory");
    m = sub_open(&s, port, topic, qos);
    for (long i = 0; i < samples; i++) {
        uint64_t t0, t1 = 0;
        long got = 0;

        bc_sleep_ms(10 + (int)((i * 7) % 6));
        t0 = bc_now_ns();
        mqtt_pub_one(p, topic, qos, "x", 1);
        for (deadline = t0 + 5000000000ull; got <= i;) {
            pthread_mutex_lock(&s.mu);
            got = s.got;
            t1 = s.t_last;
            pthread_mutex_unlock(&s.mu);
            if (bc_now_ns() > deadline)
                bc_fail("plain subscriber: message %ld not received within 5 s", i);
            if (got <= i)
                sleep_short();
        }
        out[i] = (double)(t1 - t0) / 1000.0;
    }
    sub_close(&s, m);
    return out;
}
