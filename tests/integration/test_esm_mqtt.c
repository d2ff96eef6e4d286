/*
 * tests/integration/test_esm_mqtt.c - the MQTT source end to end: a real mosquitto (with
 * persistence and a password file), a real broker (`switchyard run`) and real Python handlers
 * (handlers/mqtt/app.py) that write one file per record they get (OUT/<key>.<delivery>).
 * The publisher is libmosquitto in this process; a QoS 1/2 publish counts as sent once the
 * MQTT server acknowledged it.
 *
 *   - the event, field by field: eventSource, topic, qos, retain, messageId, packetId,
 *     timestamp, payload (base64), userProperties (MQTT 5, repeated names kept in order);
 *   - filters on the decoded payload (`payload` key);
 *   - QoS 2: every message once;
 *   - a payload over the 6 MB cap: the on-failure destination gets MaximumPayloadSizeExceeded
 *     with MQTTBatchInfo, the function never sees it, and later messages still flow;
 *   - bad credentials: PROBLEM with the CONNACK reason in LastProcessingResult;
 *   - a shared subscription across two brokers: each message handled once overall, both get
 *     some;
 *   - QoS 1 with the broker killed with -9 three times while messages flow: every message the
 *     server acknowledged to the publisher is handled, duplicates bounded;
 *   - MQTT 5: the persistent session outlives a killed broker (Session Expiry Interval);
 *   - mqtts:// against mosquitto's TLS listener with our CA (messages flow) and with another CA
 *     (the handshake fails, PROBLEM in LastProcessingResult);
 *   - QoS 1 with the MQTT server restarted mid-stream with persistence (the session and its
 *     queued messages survive), then restarted without persistence (the broker subscribes
 *     again and messages flow).
 *
 * Every wait polls with a deadline.
 */
#include "itest.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "harness/mqtt_pub.h"
#include "rworld.h"

/* clang-format off */
#define FN(name, out)                                                                              \
    "  " name ": {runtime: python3, handler: app.record, code: @FIXTURES@/mqtt,\n"                 \
    "     timeout_s: 30, environment: {OUT: '@DIR@/" out "', PYTHONDONTWRITEBYTECODE: '1'}}\n"

#define SRC(topics, extra) \
    "    source: {mqtt: {url: 'mqtt://127.0.0.1:@PORT@', topics: " topics ", " extra "}}\n"

static const char config[] =
    "broker:\n"
    "  listen: 127.0.0.1:0\n"
    "  data_dir: @DATA@\n"
    "  shutdown_grace_ms: 2000\n"
    "  max_concurrency: 40\n"
    "functions:\n"
    FN("rec-shape", "out-shape")
    FN("rec-filt", "out-filt")
    FN("rec-q2", "out-q2")
    FN("rec-big", "out-big")
    FN("rec-auth", "out-auth")
    FN("rec-q1", "out-q1")
    FN("rec-rs", "out-rs")
    FN("rec-sh", "out-sh")
    "mappings:\n"
    "  - name: shape\n"
    "    function: rec-shape\n"
    "    maximum_batching_window_ms: 20\n"
    SRC("['t/shape/#']", "qos: 1, protocol: 5")
    "  - name: filt\n"
    "    function: rec-filt\n"
    "    maximum_batching_window_ms: 20\n"
    "    filters: ['{\"payload\": {\"kind\": [\"keep\"]}}']\n"
    SRC("[t/filt]", "qos: 1")
    "  - name: q2\n"
    "    function: rec-q2\n"
    "    maximum_batching_window_ms: 20\n"
    SRC("[t/q2]", "qos: 2")
    "  - name: big\n"
    "    function: rec-big\n"
    "    maximum_batching_window_ms: 20\n"
    "    maximum_retry_attempts: 0\n"
    "    on_failure: 'file:@DIR@/big-failed'\n"
    SRC("[t/big]", "qos: 1")
    "  - name: auth\n"
    "    function: rec-auth\n"
    SRC("[t/auth]", "qos: 1, username: sy, password: wrong")
    "  - name: q1\n"
    "    function: rec-q1\n"
    "    batch_size: 50\n"
    "    maximum_batching_window_ms: 20\n"
    SRC("['t/q1/+']", "qos: 1")
    "  - name: rs\n"
    "    function: rec-rs\n"
    "    maximum_batching_window_ms: 20\n"
    SRC("[t/rs]", "qos: 1, keepalive_s: 5")
    "  - name: sh\n"
    "    function: rec-sh\n"
    "    maximum_batching_window_ms: 20\n"
    SRC("[t/sh]", "qos: 1, protocol: 5, shared_group: workers");

/* The second broker of the shared subscription: the same mapping, its own data_dir. */
static const char config2[] =
    "broker:\n"
    "  listen: 127.0.0.1:0\n"
    "  data_dir: @DATA@\n"
    "  shutdown_grace_ms: 2000\n"
    "functions:\n"
    FN("rec-sh", "out-sh")
    "mappings:\n"
    "  - name: sh\n"
    "    function: rec-sh\n"
    "    maximum_batching_window_ms: 20\n"
    SRC("[t/sh]", "qos: 1, protocol: 5, shared_group: workers");

/* The broker of the TLS test: mqtts:// with our CA (works), and with another CA (refused). */
static const char config_tls[] =
    "broker:\n"
    "  listen: 127.0.0.1:0\n"
    "  data_dir: @DATA@\n"
    "  shutdown_grace_ms: 2000\n"
    "functions:\n"
    FN("rec-tls", "out-tls")
    "mappings:\n"
    "  - name: tls\n"
    "    function: rec-tls\n"
    "    maximum_batching_window_ms: 20\n"
    "    source: {mqtt: {url: 'mqtts://127.0.0.1:@TLSPORT@', topics: [t/tls], qos: 1,\n"
    "                    ca_file: '@TLSDIR@/ca.pem'}}\n"
    "  - name: tls-bad-ca\n"
    "    function: rec-tls\n"
    "    source: {mqtt: {url: 'mqtts://127.0.0.1:@TLSPORT@', topics: [t/tls2], qos: 1,\n"
    "                    ca_file: '@TLSDIR@/other-ca.pem'}}\n";

/* mosquitto: a persistent store (sessions and their queued messages survive a restart), room
 * for everything a test queues, and a TLS listener (made in main()); the world gives it one
 * user (sy, password right). */
#define M_COMMON "max_queued_messages 100000\n"
/* clang-format on */
static char *m_persist, *m_volatile; /* the two configs, with the TLS listener */
static char *tls_dir;                /* CA and server certificate (openssl), removed at exit */
static int tls_port;                 /* mosquitto's TLS listener */

/* A port that was free a moment ago (bind 127.0.0.1:0). 0 on failure. */
static int free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = 0;

    if (fd < 0)
        return 0;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* A CA, a server certificate it signed for IP 127.0.0.1, and an unrelated CA, in tls_dir; the
 * mosquitto configs with a TLS listener on tls_port. 0 or -1. */
static int make_tls(void)
{
    char *cmd, *listener;
    int rc;

    tls_dir = h_tmpdir_create("mqtt-tls");
    tls_port = free_port();
    if (tls_dir == NULL || tls_port == 0)
        return -1;
    cmd = h_strfmt("(cd %s && printf 'subjectAltName=IP:127.0.0.1\\n' > ext.cnf && "
                   "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
                   "-subj /CN=sy-test-ca && "
                   "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
                   "-subj /CN=127.0.0.1 && "
                   "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
                   "-out server.pem -days 2 -extfile ext.cnf && "
                   "openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other-ca.pem "
                   "-days 2 -subj /CN=sy-other-ca && chmod 644 *.key) >/dev/null 2>&1",
                   tls_dir);
    rc = cmd != NULL && system(cmd) == 0 ? 0 : -1;
    free(cmd);
    if (rc != 0)
        return -1;
    listener = h_strfmt("listener %d 127.0.0.1\ncafile %s/ca.pem\ncertfile %s/server.pem\n"
                        "keyfile %s/server.key\n",
                        tls_port, tls_dir, tls_dir, tls_dir);
    m_persist = h_strfmt("persistence true\npersistence_location @DIR@/\n" M_COMMON "%s", listener);
    m_volatile = h_strfmt("persistence false\n" M_COMMON "%s", listener);
    free(listener);
    return m_persist != NULL && m_volatile != NULL ? 0 : -1;
}

/* ---- a publisher (tests/harness/mqtt_pub.h) ----------------------------------------------- */

static int pub_send(struct h_mqtt_pub *p, const char *topic, const char *payload, int qos)
{
    return h_mqtt_pub_send(p, topic, payload, strlen(payload), qos, NULL);
}

static char *out_dir(const struct rworld *w, const char *sub)
{
    return h_strfmt("%s/%s", w->b.dir, sub);
}

/* The handler's copy of KEY's delivery N in DIR (new), failing the test if absent. */
static json_t *record_of(const char *dir, const char *key, int n)
{
    char *p = h_strfmt("%s/%s.%d", dir, key, n);
    json_t *j = h_json_file(p);

    if (j == NULL)
        fail_msg("no record %s", p);
    free(p);
    return j;
}

static bool file_exists(const char *dir, const char *name)
{
    char *p = h_strfmt("%s/%s", dir, name);
    bool ok = access(p, F_OK) == 0;

    free(p);
    return ok;
}

/* Wait (bounded) until the mapping NAME's source reports "running": subscribed, so a message
 * published from now on reaches it (MQTT drops what nobody is subscribed to). */
static void await_running(struct rworld *w, const char *name)
{
    int64_t deadline = h_now_ms() + 20000;

    for (;;) {
        json_t *m = rworld_mapping_json(w, name);
        const char *st = h_json_str(json_object_get(m, "Switchyard"), "source_state");
        bool ok = st != NULL && strcmp(st, "running") == 0;

        json_decref(m);
        if (ok)
            return;
        if (h_now_ms() > deadline)
            fail_msg("mapping %s not running within 20 s", name);
        h_sleep_ms(20);
    }
}

/* ---- the tests ----------------------------------------------------------------------------- */

static void test_event_shape(void **state)
{
    struct rworld *w = *state;
    char *out = out_dir(w, "out-shape");
    mosquitto_property *props = NULL;
    static const char payload[] = "{\"k\":\"s1\",\"v\":1}";
    struct h_mqtt_pub p;
    json_t *r, *up, *ev;
    int64_t before = (int64_t)time(NULL) * 1000 - 1000;
    char *b64;

    await_running(w, "shape");

    assert_int_equal(h_mqtt_pub_open(&p, w->mqtt.port), 0);
    mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "a", "1");
    mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "a", "2");
    mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "b", "x y");
    assert_int_equal(h_mqtt_pub_send(&p, "t/shape/one", payload, strlen(payload), 1, props), 0);
    /* A payload that is not JSON (and not UTF-8) too. */
    assert_int_equal(h_mqtt_pub_send(&p, "t/shape/two", "\xff\xfe-bin", 6, 0, NULL), 0);
    mosquitto_property_free_all(&props);
    h_mqtt_pub_close(&p);

    rworld_await_files(out, 2, 20000);
    r = record_of(out, "s1", 1);
    ev = json_object_get(r, "event");
    assert_string_equal(h_json_str(ev, "eventSource"), "switchyard:mqtt");
    assert_int_equal(json_object_size(ev), 1);
    assert_string_equal(h_json_str(r, "topic"), "t/shape/one");
    assert_int_equal(h_json_int(r, "qos", -1), 1);
    assert_true(json_is_false(json_object_get(r, "retain")));
    assert_true(json_is_string(json_object_get(r, "messageId")));
    assert_true(strtoll(h_json_str(r, "messageId"), NULL, 10) > 0);
    assert_true(h_json_int(r, "packetId", 0) > 0);
    assert_true(h_json_int(r, "timestamp", 0) >= before);
    assert_true(h_json_int(r, "timestamp", 0) <= (int64_t)time(NULL) * 1000 + 1000);
    b64 = h_b64_decode(h_json_str(r, "payload"), NULL);
    assert_non_null(b64);
    assert_string_equal(b64, payload);
    free(b64);
    up = json_object_get(r, "userProperties");
    assert_true(json_is_array(up));
    assert_int_equal(json_array_size(up), 3);
    assert_string_equal(h_json_str(json_array_get(up, 0), "key"), "a");
    assert_string_equal(h_json_str(json_array_get(up, 0), "value"), "1");
    assert_string_equal(h_json_str(json_array_get(up, 1), "key"), "a");
    assert_string_equal(h_json_str(json_array_get(up, 1), "value"), "2");
    assert_string_equal(h_json_str(json_array_get(up, 2), "key"), "b");
    assert_string_equal(h_json_str(json_array_get(up, 2), "value"), "x y");
    /* Exactly these members. */
    assert_int_equal(json_object_size(r), 10); /* 8 of the record + event + decoded */
    json_decref(r);
    free(out);
    rworld_end(w);
}

static void test_filter_on_payload(void **state)
{
    struct rworld *w = *state;
    char *out = out_dir(w, "out-filt");
    struct h_mqtt_pub p;

    await_running(w, "filt");

    assert_int_equal(h_mqtt_pub_open(&p, w->mqtt.port), 0);
    assert_int_equal(pub_send(&p, "t/filt", "{\"k\":\"f1\",\"kind\":\"keep\"}", 1), 0);
    assert_int_equal(pub_send(&p, "t/filt", "{\"k\":\"f2\",\"kind\":\"drop\"}", 1), 0);
    assert_int_equal(pub_send(&p, "t/filt", "{\"k\":\"f3\",\"kind\":\"keep\"}", 1), 0);
    h_mqtt_pub_close(&p);
    rworld_await_files(out, 2, 20000);
    assert_true(file_exists(out, "f1.1"));
    assert_true(file_exists(out, "f3.1"));
    /* f2 came before f3 on the same topic: it was filtered, not merely late. */
    assert_false(file_exists(out, "f2.1"));
    free(out);
    rworld_end(w);
}

static void test_qos2(void **state)
{
    struct rworld *w = *state;
    char *out = out_dir(w, "out-q2");
    size_t all = 0;
    struct h_mqtt_pub p;

    await_running(w, "q2");

    assert_int_equal(h_mqtt_pub_open(&p, w->mqtt.port), 0);
    for (int i = 0; i < 60; i++) {
        char msg[64];

        snprintf(msg, sizeof(msg), "{\"k\":\"q2-%d\"}", i);
        assert_int_equal(pub_send(&p, "t/q2", msg, 2), 0);
    }
    h_mqtt_pub_close(&p);
    rworld_await_files(out, 60, 20000);
    assert_int_equal(rworld_count_files(out, &all), 60);
    assert_int_equal(all, 60); /* no restart: once each */
    {
        json_t *r = record_of(out, "q2-7", 1);

        assert_int_equal(h_json_int(r, "qos", -1), 2);
        json_decref(r);
    }
    free(out);
    rworld_end(w);
}

static void test_payload_over_cap(void **state)
{
    struct rworld *w = *state;
    char *out = out_dir(w, "out-big"), *failed = out_dir(w, "big-failed");
    size_t len = 6 * 1024 * 1024 + 1000, flen = 0;
    char *big = malloc(len);
    int64_t deadline = h_now_ms() + 20000;
    struct h_mqtt_pub p;
    char *f = NULL;

    await_running(w, "big");

    assert_non_null(big);
    memset(big, 'x', len);
    memcpy(big, "{\"k\":\"big\",\"pad\":\"", 18);
    memcpy(big + len - 2, "\"}", 2);
    assert_int_equal(h_mqtt_pub_open(&p, w->mqtt.port), 0);
    assert_int_equal(h_mqtt_pub_send(&p, "t/big", big, len, 1, NULL), 0);
    assert_int_equal(pub_send(&p, "t/big", "{\"k\":\"small\"}", 1), 0);
    h_mqtt_pub_close(&p);
    free(big);
    rworld_await_files(out, 1, 20000);
    assert_true(file_exists(out, "small.1"));
    assert_false(file_exists(out, "big.1"));
    /* The on-failure record: one file in big-failed. */
    for (;;) {
        char *cmd = h_strfmt("cat %s/* 2>/dev/null", failed);
        FILE *fp = popen(cmd, "r");

        free(cmd);
        if (fp != NULL) {
            char buf[65536];

            flen = fread(buf, 1, sizeof(buf) - 1, fp);
            buf[flen] = '\0';
            pclose(fp);
            if (flen > 0) {
                f = strdup(buf);
                break;
            }
        }
        if (h_now_ms() > deadline)
            fail_msg("no on-failure record in %s", failed);
        h_sleep_ms(50);
    }
    assert_non_null(strstr(f, "MaximumPayloadSizeExceeded"));
    assert_non_null(strstr(f, "\"MQTTBatchInfo\""));
    assert_non_null(strstr(f, "\"topics\":[\"t/big\"]"));
    free(f);
    free(out);
    free(failed);
    rworld_end(w);
}

static void test_bad_credentials(void **state)
{
    struct rworld *w = *state;
    json_t *m = rworld_await_problem(w, "auth", 20000);
    const char *why = h_json_str(m, "LastProcessingResult");

    assert_non_null(strstr(why, "refused the session"));
    assert_non_null(strstr(why, "not authori"));
    json_decref(m);
    rworld_end(w);
}

static void test_shared_subscription(void **state)
{
    struct rworld *w = *state;
    struct h_broker b2;
    char *y, *out1 = out_dir(w, "out-sh"), *out2;
    size_t all1 = 0, all2 = 0, n1, n2;
    int64_t deadline;
    struct h_mqtt_pub p;
    char port[16];

    assert_int_equal(h_broker_init(&b2, "esmmqtt2"), 0);
    snprintf(port, sizeof(port), "%d", w->mqtt.port);
    y = h_str_replace(config2, "@PORT@", port);
    assert_int_equal(h_broker_write_config(&b2, y), 0);
    free(y);
    assert_int_equal(h_broker_start(&b2, NULL, ITEST_READY_MS), 0);
    out2 = h_strfmt("%s/out-sh", b2.dir);
    await_running(w, "sh");
    {
        /* The second broker's mapping, through its own API. */
        int64_t until = h_now_ms() + 20000;

        for (;;) {
            struct rworld w2 = {.b = b2};
            json_t *m = rworld_mapping_json(&w2, "sh");
            const char *st = h_json_str(json_object_get(m, "Switchyard"), "source_state");
            bool ok = st != NULL && strcmp(st, "running") == 0;

            json_decref(m);
            if (ok)
                break;
            if (h_now_ms() > until)
                fail_msg("the second broker's mapping is not running within 20 s");
            h_sleep_ms(20);
        }
    }
    /* Both subscribed: publish until each broker handled one (bounded). */
    assert_int_equal(h_mqtt_pub_open(&p, w->mqtt.port), 0);
    deadline = h_now_ms() + 20000;
    for (int i = 0; i < 200; i++) {
        char msg[64];

        snprintf(msg, sizeof(msg), "{\"k\":\"sh-%d\"}", i);
        assert_int_equal(pub_send(&p, "t/sh", msg, 1), 0);
    }
    h_mqtt_pub_close(&p);
    for (;;) {
        n1 = rworld_count_files(out1, &all1);
        n2 = rworld_count_files(out2, &all2);
        if (all1 + all2 >= 200)
            break;
        if (h_now_ms() > deadline)
            fail_msg("shared: %zu + %zu of 200 handled", all1, all2);
        h_sleep_ms(50);
    }
    /* Each once overall (the second broker subscribed before the first publish: its
     * start-up waited for the mapping to be running, and mosquitto splits round-robin). */
    assert_int_equal(all1 + all2, 200);
    assert_int_equal(n1 + n2, 200);
    assert_true(n1 > 0);
    assert_true(n2 > 0);
    assert_int_equal(h_broker_stop(&b2, 15000), 0);
    assert_int_equal(h_broker_sanitizer_lines(&b2, 0), 0);
    h_broker_destroy(&b2);
    free(out1);
    free(out2);
    rworld_end(w);
}

/* The publisher thread of the kill -9 test: N messages at QoS 1, counting the acknowledged. */
struct flow {
    int port, n;
    int acked; /* read after join */
    bool failed;
};

static void *flow_main(void *arg)
{
    struct flow *f = arg;
    struct h_mqtt_pub p;

    if (h_mqtt_pub_open(&p, f->port) != 0) {
        f->failed = true;
        return NULL;
    }
    for (int i = 0; i < f->n; i++) {
        char msg[64];

        snprintf(msg, sizeof(msg), "{\"k\":\"q1-%d\"}", i);
        if (pub_send(&p, i % 2 ? "t/q1/a" : "t/q1/b", msg, 1) != 0) {
            f->failed = true;
            break;
        }
        f->acked = i + 1;
        if (i % 8 == 0)
            usleep(2000); /* a flow, not one burst */
    }
    h_mqtt_pub_close(&p);
    return NULL;
}

static void test_kill9_while_flowing(void **state)
{
    struct rworld *w = *state;
    struct flow f = {.port = w->mqtt.port, .n = 600};
    char *out = out_dir(w, "out-q1");
    size_t seen, all = 0;
    pthread_t th;

    await_running(w, "q1");
    assert_int_equal(pthread_create(&th, NULL, flow_main, &f), 0);
    for (int round = 0; round < 3; round++) {
        /* Let some messages through, then kill the broker in the middle of the flow. */
        int64_t deadline = h_now_ms() + 20000;
        size_t start = rworld_count_files(out, NULL);

        while (rworld_count_files(out, NULL) < start + 30 && h_now_ms() < deadline)
            h_sleep_ms(10);
        rworld_kill9_restart(w);
    }
    pthread_join(th, NULL);
    assert_false(f.failed);
    assert_int_equal(f.acked, 600);
    rworld_await_files(out, 600, 60000);
    seen = rworld_count_files(out, &all);
    assert_int_equal(seen, 600);
    /* Duplicates: only what was in flight at each kill (bounded by the batches running). */
    assert_true(all < 600 + 3 * 400);
    fprintf(stderr, "test_kill9_while_flowing: 600 messages, %zu deliveries (%zu duplicates)\n",
            all, all - seen);
    free(out);
    rworld_end(w);
}

/* MQTT 5: the session outlives a broker that is gone (the Session Expiry Interval the source
 * sends in CONNECT): a message published while it is down is delivered after its start. */
static void test_v5_session_survives_broker(void **state)
{
    struct rworld *w = *state;
    char *out = out_dir(w, "out-shape");
    int64_t deadline;
    struct h_mqtt_pub p;

    await_running(w, "shape");
    assert_int_equal(kill(w->b.proc.pid, SIGKILL), 0);
    deadline = h_now_ms() + 10000;
    while (h_broker_running(&w->b) && h_now_ms() < deadline)
        h_sleep_ms(10);
    assert_false(h_broker_running(&w->b));
    assert_int_equal(h_mqtt_pub_open(&p, w->mqtt.port), 0);
    assert_int_equal(pub_send(&p, "t/shape/away", "{\"k\":\"away\"}", 1), 0);
    h_mqtt_pub_close(&p);
    assert_int_equal(rworld_start_broker(w), 0);
    w->mark = 0;
    deadline = h_now_ms() + 20000;
    while (!file_exists(out, "away.1")) {
        if (h_now_ms() > deadline)
            fail_msg("the message published while the broker was down never came");
        h_sleep_ms(50);
    }
    free(out);
    rworld_end(w);
}

/* A second broker on mqtts:// (our CA): messages flow; another CA: the handshake fails and the
 * mapping says so. */
static void test_tls(void **state)
{
    struct rworld *w = *state;
    struct h_broker b2;
    char port[16], *y, *y2, *out;
    struct h_mqtt_pub p;
    json_t *m;

    assert_int_equal(h_broker_init(&b2, "esmmqtttls"), 0);
    snprintf(port, sizeof(port), "%d", tls_port);
    y = h_str_replace(config_tls, "@TLSPORT@", port);
    y2 = h_str_replace(y, "@TLSDIR@", tls_dir);
    assert_int_equal(h_broker_write_config(&b2, y2), 0);
    free(y);
    free(y2);
    assert_int_equal(h_broker_start(&b2, NULL, ITEST_READY_MS), 0);
    out = h_strfmt("%s/out-tls", b2.dir);
    {
        struct rworld w2 = {.b = b2};
        int64_t until = h_now_ms() + 20000;

        for (;;) {
            json_t *mj = rworld_mapping_json(&w2, "tls");
            const char *st = h_json_str(json_object_get(mj, "Switchyard"), "source_state");
            bool ok = st != NULL && strcmp(st, "running") == 0;

            json_decref(mj);
            if (ok)
                break;
            if (h_now_ms() > until)
                fail_msg("the mqtts:// mapping is not running within 20 s");
            h_sleep_ms(20);
        }
        assert_int_equal(h_mqtt_pub_open(&p, w->mqtt.port), 0);
        assert_int_equal(pub_send(&p, "t/tls", "{\"k\":\"tls-1\"}", 1), 0);
        h_mqtt_pub_close(&p);
        rworld_await_files(out, 1, 20000);
        m = rworld_await_problem(&w2, "tls-bad-ca", 20000);
        fprintf(stderr, "test_tls: the other CA: %s\n", h_json_str(m, "LastProcessingResult"));
        assert_non_null(strstr(h_json_str(m, "LastProcessingResult"), "certificate verify failed"));
        json_decref(m);
    }
    assert_int_equal(h_broker_stop(&b2, 15000), 0);
    assert_int_equal(h_broker_sanitizer_lines(&b2, 0), 0);
    h_broker_destroy(&b2);
    free(out);
    rworld_end(w);
}

/* Restart mosquitto with EXTRA as its extra config, on its port. */
static void server_restart(struct rworld *w, const char *extra)
{
    h_mosquitto_stop(&w->mqtt);
    w->mqtt.extra_conf = extra;
    assert_int_equal(h_mosquitto_start(&w->mqtt, w->mqtt.port), 0);
}

static void test_server_restart(void **state)
{
    struct rworld *w = *state;
    char *out = out_dir(w, "out-rs");
    int64_t deadline;
    size_t all = 0;
    struct h_mqtt_pub p;
    int probes = 0;

    await_running(w, "rs");

    /* 1. With persistence: what the server holds for the session survives its restart. */
    assert_int_equal(h_mqtt_pub_open(&p, w->mqtt.port), 0);
    for (int i = 0; i < 300; i++) {
        char msg[64];

        snprintf(msg, sizeof(msg), "{\"k\":\"rs-%d\"}", i);
        assert_int_equal(pub_send(&p, "t/rs", msg, 1), 0);
    }
    h_mqtt_pub_close(&p);
    server_restart(w, m_persist); /* SIGTERM: mosquitto saves its store */
    rworld_await_files(out, 300, 30000);

    /* 2. Without persistence: the server forgot the subscription; the broker makes it again. */
    server_restart(w, m_volatile);
    assert_int_equal(h_mqtt_pub_open(&p, w->mqtt.port), 0);
    deadline = h_now_ms() + 30000;
    for (;;) {
        char msg[64];

        snprintf(msg, sizeof(msg), "{\"k\":\"probe-%d\"}", probes);
        assert_int_equal(pub_send(&p, "t/rs", msg, 1), 0);
        probes++;
        /* Any probe through means the subscription is back. */
        if (rworld_count_files(out, NULL) > 300)
            break;
        if (h_now_ms() > deadline)
            fail_msg("no message after a restart without persistence");
        h_sleep_ms(100);
    }
    for (int i = 0; i < 100; i++) {
        char msg[64];

        snprintf(msg, sizeof(msg), "{\"k\":\"after-%d\"}", i);
        assert_int_equal(pub_send(&p, "t/rs", msg, 1), 0);
    }
    h_mqtt_pub_close(&p);
    deadline = h_now_ms() + 20000;
    for (;;) {
        size_t n = 0;
        char *cmd = h_strfmt("ls %s | grep -c '^after-'", out);
        FILE *fp = popen(cmd, "r");

        free(cmd);
        if (fp != NULL) {
            if (fscanf(fp, "%zu", &n) != 1)
                n = 0;
            pclose(fp);
        }
        if (n >= 100)
            break;
        if (h_now_ms() > deadline)
            fail_msg("only %zu of 100 messages after the second restart", n);
        h_sleep_ms(50);
    }
    rworld_count_files(out, &all);
    assert_true(all >= 400);
    free(out);
    rworld_end(w);
}

static int group_setup(void **state)
{
    mosquitto_lib_init();
    return rworld_group_setup_mqtt(state, "esmmqtt", config, m_persist, "sy", "right");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_event_shape, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_filter_on_payload, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_qos2, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_payload_over_cap, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_bad_credentials, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_shared_subscription, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_kill9_while_flowing, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_v5_session_survives_broker, rworld_setup,
                                        rworld_teardown),
        cmocka_unit_test_setup_teardown(test_tls, rworld_setup, rworld_teardown),
        cmocka_unit_test_setup_teardown(test_server_restart, rworld_setup, rworld_teardown),
    };
    int rc;

    itest_filter_from_env();
    if (make_tls() != 0) {
        fprintf(stderr, "test_esm_mqtt: cannot make the TLS certificates (openssl)\n");
        return 1;
    }
    rc = cmocka_run_group_tests_name("esm_mqtt", tests, group_setup, rworld_group_teardown);
    h_rm_rf(tls_dir);
    free(tls_dir);
    free(m_persist);
    free(m_volatile);
    return rworld_exit_code(rc);
}
