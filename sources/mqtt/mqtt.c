/*
 * sources/mqtt/mqtt.c - the MQTT source: `source: mqtt: {url, topics, qos, ...}`.
 *
 * This file owns the config table and its validate(), the connection, the subscriptions, the
 * gates, delivery to the host and the source_ops. The spool is mqtt_spool.c, the JSON
 * mqtt_event.c (see mqtt_int.h).
 *
 * The guarantee (QoS 1): a message is acknowledged to the server (PUBACK) only after it is
 * committed to the spool. libmosquitto 2.0.11 queues the PUBACK inside mosquitto_loop_read(),
 * *before* it calls on_message; for a client marked threaded (mosquitto_threaded_set(true))
 * it never writes from packet__queue(), only from mosquitto_loop_write() (checked in its
 * source: lib/packet_mosq.c packet__queue(), lib/handle_publish.c, lib/loop.c; no other
 * packet__write() call outside the broker build). So each read's messages are collected by
 * on_message, handed to the spool as ONE insert job after mosquitto_loop_read() returns, and
 * the write event is held (mosqloop.hold_write) while any insert of the current client is not
 * committed. A client that goes away with acks still held takes them with it (a fresh client
 * per attempt): the server sends those messages again, and what was committed meanwhile is
 * delivered too (a duplicate, never a loss).
 *
 * QoS 2: libmosquitto 2.0.11 answers PUBLISH with PUBREC inside the read (queued, so it too
 * waits for our write) but calls on_message only when PUBREL arrives, after our PUBREC went
 * out; the message sits in libmosquitto's memory for that round trip. The PUBCOMP is held until
 * the spool commit, but once the server has our PUBREC it will not send the PUBLISH again: a
 * kill -9 of the broker between PUBREC and PUBREL loses that message. QoS 2 is therefore
 * at-least-once across restarts and reconnects only outside that window (docs/mappings.md).
 *
 * QoS 0: spooled the same way (so a message received is handed to the function even after a
 * restart once committed), but nothing is promised: the server never sends it again.
 *
 * Connections: one libmosquitto client per attempt (mosquitto_reconnect*() is never used, so
 * held acks of an old client never leave). Backoff SRC_MQTT_BACKOFF_MIN_MS doubling to
 * SRC_MQTT_BACKOFF_MAX_MS; a server that refuses the session (CONNACK reason: bad credentials,
 * not authorized, client id rejected) or a subscription puts the source in SOURCE_PROBLEM with
 * the reason and is retried every SRC_MQTT_PROBLEM_RETRY_MS. Every successful connection
 * subscribes again: a server restarted without persistence has forgotten the session.
 * Host names are looked up off the loop (core/resolve).
 *
 * Host callbacks (deliver, room) run only from our own kick event; state() from our events
 * and library callbacks, never from inside an op the host called.
 */
#include "mqtt_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "core/evhelp.h"
#include "core/log.h"
#include "core/time.h"

#define SRC_MQTT_MAGIC 0x4d515454u /* "MQTT" */

#define SRC_MQTT_CHECK(p)                                                                          \
    do {                                                                                           \
        if ((p) == NULL || (p)->magic != SRC_MQTT_MAGIC) {                                         \
            log_err("[source:mqtt] %s:%d: bad magic", __FILE__, __LINE__);                         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void attempt_start(struct src_mqtt *mq);
static void stop_check(struct src_mqtt *mq);
static void conn_drop(struct src_mqtt *mq, const char *reason);

/* ---------------------------------------------------------------------------------------- */
/* The config table                                                                          */

static const char *const proto_names[] = {"3.1.1", "5", NULL};

static const struct cfg_field mqtt_fields[] = {
    CFG_STR("url", struct src_mqtt_cfg, url, NULL, CFG_F_REQUIRED,
            "mqtt://HOST[:PORT] (default port 1883) or mqtts://HOST[:PORT] (TLS, default port "
            "8883); HOST may be [IPv6]; credentials go in username / password"),
    CFG_STR("username", struct src_mqtt_cfg, username, NULL, 0,
            "user name sent in CONNECT (use ${ENV} to keep it out of the file)"),
    CFG_STR("password", struct src_mqtt_cfg, password, NULL, 0,
            "password sent in CONNECT (needs username; never logged)"),
    CFG_STRLIST("topics", struct src_mqtt_cfg, topics, CFG_F_REQUIRED,
                "topic filters to subscribe to (one or a list; + and # wildcards)"),
    CFG_INT("qos", struct src_mqtt_cfg, qos, 1, 0, 2, 0,
            "the subscriptions' QoS: 1 (default) and 2 are acknowledged only once spooled; 0 "
            "carries no guarantee"),
    CFG_STR("client_id", struct src_mqtt_cfg, client_id, NULL, 0,
            "the MQTT client id (the persistent session's name); default "
            "sy-<mapping>-<8 hex of hostname and data_dir>, stable across restarts and "
            "distinct per broker"),
    CFG_BOOL("clean_session", struct src_mqtt_cfg, clean_session, 0, 0,
             "start a new session on every connect (messages published while the broker is "
             "away are lost); default false: a persistent session"),
    CFG_INT("session_expiry_s", struct src_mqtt_cfg, session_expiry_s, 86400, 0, 2147483647, 0,
            "MQTT 5: how long the server keeps the persistent session after a disconnect "
            "(3.1.1 sessions last until the server forgets them)"),
    CFG_ENUM("protocol", struct src_mqtt_cfg, protocol, proto_names, SRC_MQTT_V311, 0,
             "MQTT protocol version: 3.1.1 or 5 (5 adds userProperties)"),
    CFG_STR("shared_group", struct src_mqtt_cfg, shared_group, NULL, 0,
            "subscribe to $share/GROUP/TOPIC: brokers with the same group split the messages "
            "(MQTT 5 servers, and mosquitto with 3.1.1 too)"),
    CFG_INT("keepalive_s", struct src_mqtt_cfg, keepalive_s, 30, 5, 65535, 0,
            "MQTT keepalive: a PINGREQ after this much silence; no answer within it drops "
            "the connection (then reconnect)"),
    CFG_STR("ca_file", struct src_mqtt_cfg, ca_file, NULL, 0,
            "mqtts://: PEM file of the CAs to trust (default: the system's)"),
    CFG_STR("cert_file", struct src_mqtt_cfg, cert_file, NULL, 0,
            "mqtts://: client certificate (PEM), with key_file"),
    CFG_STR("key_file", struct src_mqtt_cfg, key_file, NULL, 0,
            "mqtts://: the client certificate's private key (PEM, unencrypted)"),
    CFG_INT("spool_max_messages", struct src_mqtt_cfg, spool_max_messages, 10000, 1, 10000000, 0,
            "messages spooled and not yet acknowledged at most: above, the socket is not read "
            "and the server holds the rest"),
    CFG_INT("spool_max_mb", struct src_mqtt_cfg, spool_max_mb, 256, 1, 1048576, 0,
            "... and their payload megabytes at most"),
};

/* Split URL into host / port / tls. Returns 0 or SY_EINVAL (WHY filled), SY_ENOMEM. */
static int parse_url(const char *url, char **host, int *port, bool *tls, char *why, size_t n)
{
    const char *p, *h, *he;
    char *end;
    long v;

    *host = NULL;
    if (strncmp(url, "mqtt://", 7) == 0) {
        *tls = false;
        p = url + 7;
    } else if (strncmp(url, "mqtts://", 8) == 0) {
        *tls = true;
        p = url + 8;
    } else {
        snprintf(why, n, "must start with mqtt:// or mqtts:// (got '%s')", url);
        return SY_EINVAL;
    }
    if (strchr(p, '@') != NULL) {
        snprintf(why, n, "put credentials in username / password, not in the URL");
        return SY_EINVAL;
    }
    if (*p == '[') {
        h = p + 1;
        he = strchr(h, ']');
        if (he == NULL) {
            snprintf(why, n, "unterminated [IPv6] host");
            return SY_EINVAL;
        }
        p = he + 1;
    } else {
        h = p;
        he = p + strcspn(p, ":/");
        p = he;
    }
    if (he == h) {
        snprintf(why, n, "no host");
        return SY_EINVAL;
    }
    *port = *tls ? SRC_MQTT_DEFAULT_TLS_PORT : SRC_MQTT_DEFAULT_PORT;
    if (*p == ':') {
        errno = 0;
        v = strtol(p + 1, &end, 10);
        if (end == p + 1 || errno != 0 || v < 1 || v > 65535) {
            snprintf(why, n, "bad port");
            return SY_EINVAL;
        }
        *port = (int)v;
        p = end;
    }
    if (*p == '/')
        p++;
    if (*p != '\0') {
        snprintf(why, n, "a source URL has no path: topics go in `topics`");
        return SY_EINVAL;
    }
    *host = strndup(h, (size_t)(he - h));
    return *host != NULL ? 0 : SY_ENOMEM;
}

static int make_abs(struct cfg_check *chk, const char *key, char **p)
{
    char *abs;

    if (*p == NULL || (*p)[0] == '/')
        return 0;
    if (asprintf(&abs, "%s/%s", cfg_check_base_dir(chk), strncmp(*p, "./", 2) == 0 ? *p + 2 : *p) <
        0) {
        cfg_check_error(chk, key, "out of memory");
        return -1;
    }
    free(*p);
    *p = abs;
    return 0;
}

static void mqtt_validate(void *obj, struct cfg_check *chk)
{
    struct src_mqtt_cfg *c = obj;
    char why[160], *host = NULL;
    bool tls = false;
    int port;

    if (parse_url(c->url, &host, &port, &tls, why, sizeof(why)) != 0)
        cfg_check_error(chk, "url", "%s", why);
    free(host);
    if (c->topics.n == 0)
        cfg_check_error(chk, "topics", "needs at least one topic filter");
    for (size_t i = 0; i < c->topics.n; i++) {
        const char *t = c->topics.v[i];

        if (strncmp(t, "$share/", 7) == 0)
            cfg_check_error(chk, "topics", "'%s': use shared_group instead of $share/", t);
        else if (mosquitto_sub_topic_check(t) != MOSQ_ERR_SUCCESS)
            cfg_check_error(chk, "topics",
                            "'%s' is not a valid topic filter (+ and # only as whole levels, # "
                            "last)",
                            t);
    }
    if (c->shared_group != NULL &&
        (c->shared_group[0] == '\0' || strpbrk(c->shared_group, "/+#") != NULL))
        cfg_check_error(chk, "shared_group", "must be a non-empty name without '/', '+', '#'");
    if (c->password != NULL && c->username == NULL)
        cfg_check_error(chk, "password", "needs username");
    if (c->client_id != NULL && (c->client_id[0] == '\0' || strlen(c->client_id) > 65535))
        cfg_check_error(chk, "client_id", "must be 1..65535 bytes");
    if (c->clean_session && c->client_id == NULL && c->qos > 0)
        log_debug("[config] mqtt source: clean_session with QoS %d: messages published while "
                  "the broker is away are lost",
                  c->qos);
    if (!tls) {
        static const char *const keys[] = {"ca_file", "cert_file", "key_file"};
        const char *vals[] = {c->ca_file, c->cert_file, c->key_file};

        for (size_t i = 0; i < 3; i++)
            if (vals[i] != NULL)
                cfg_check_error(chk, keys[i], "only for mqtts:// URLs");
    }
    if ((c->cert_file == NULL) != (c->key_file == NULL))
        cfg_check_error(chk, c->cert_file == NULL ? "key_file" : "cert_file",
                        "cert_file and key_file go together");
    make_abs(chk, "ca_file", &c->ca_file);
    make_abs(chk, "cert_file", &c->cert_file);
    make_abs(chk, "key_file", &c->key_file);
}

const struct cfg_source_kind src_mqtt_kind = {
    .sec =
        {
            .name = "mqtt",
            .fields = mqtt_fields,
            .n_fields = sizeof(mqtt_fields) / sizeof(mqtt_fields[0]),
            .size = sizeof(struct src_mqtt_cfg),
            .validate = mqtt_validate,
        },
    .default_batch_size = 100, /* Amazon MQ's default */
    .default_window_ms = 500,
    .data_key = "payload",
    .data_must_match = 0, /* the MQ / Kafka rule: a non-JSON payload ignores that part */
};

/* ---------------------------------------------------------------------------------------- */
/* Delivery to the host                                                                      */

static int ready_push(struct src_mqtt *mq, struct source_record *rec, bool front)
{
    if (front && mq->ready_head > 0) {
        mq->ready[--mq->ready_head] = rec;
        mq->ready_n++;
        return 0;
    }
    if (mq->ready_head > 0 && (front || mq->ready_head + mq->ready_n == mq->ready_cap)) {
        memmove(mq->ready, mq->ready + mq->ready_head, mq->ready_n * sizeof(*mq->ready));
        mq->ready_head = 0;
    }
    if (mq->ready_n == mq->ready_cap) {
        size_t cap = mq->ready_cap ? mq->ready_cap * 2 : 256;
        struct source_record **v = realloc(mq->ready, cap * sizeof(*v));

        if (v == NULL)
            return SY_ENOMEM;
        mq->ready = v;
        mq->ready_cap = cap;
    }
    if (front) {
        memmove(mq->ready + 1, mq->ready, mq->ready_n * sizeof(*mq->ready));
        mq->ready[0] = rec;
    } else {
        mq->ready[mq->ready_head + mq->ready_n] = rec;
    }
    mq->ready_n++;
    return 0;
}

static void ready_free(struct src_mqtt *mq)
{
    for (size_t i = 0; i < mq->ready_n; i++)
        source_record_free(mq->ready[mq->ready_head + i]);
    free(mq->ready);
    mq->ready = NULL;
    mq->ready_n = mq->ready_head = mq->ready_cap = 0;
}

/* A committed record for the host (taken). Out of memory: it stays in the spool only
 * (delivered after a restart). */
static void ready_add(struct src_mqtt *mq, struct source_record *rec)
{
    if (ready_push(mq, rec, false) != 0) {
        log_err("%s out of memory queueing message %s; it is delivered after a restart", mq->prefix,
                rec->id);
        source_record_free(rec);
    }
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct src_mqtt *mq = arg;

    (void)fd;
    (void)what;
    SRC_MQTT_CHECK(mq);
    while (mq->ready_n > 0 && !mq->paused && !mq->stopping) {
        size_t room = source_room(&mq->base), n = mq->ready_n;

        if (room == 0)
            break;
        n = n < room ? n : room;
        n = n < SRC_MQTT_DELIVER_MAX ? n : SRC_MQTT_DELIVER_MAX;
        /* The host takes the records; the array slots are ours. */
        source_deliver(&mq->base, mq->ready + mq->ready_head, n);
        mq->ready_head += n;
        mq->ready_n -= n;
    }
    if (mq->ready_n == 0)
        mq->ready_head = 0;
    /* resume() and acks change what the gates say. */
    if (mq->mosq != NULL && !mq->finished) {
        src_mqtt_gates(mq);
        if (mq->ml.lost) {
            char reason[256];

            snprintf(reason, sizeof(reason), "%s", mq->ml.reason);
            conn_drop(mq, reason);
        }
    }
}

void src_mqtt_kick(struct src_mqtt *mq)
{
    if (mq->kick != NULL)
        event_active(mq->kick, EV_TIMEOUT, 0);
}

/* ---------------------------------------------------------------------------------------- */
/* Gates                                                                                     */

void src_mqtt_gates(struct src_mqtt *mq)
{
    bool full = mq->spool_n >= (size_t)mq->cfg->spool_max_messages ||
                mq->spool_bytes >= (size_t)mq->cfg->spool_max_mb * 1024u * 1024u;

    /* Acks leave only when every message this client read is committed. */
    mq->ml.hold_write = mq->commits_cur > 0;
    /* A client still connecting reads its CONNACK / SUBACK even with a full spool (the server's
     * in-flight window bounds what comes with them); one that is up stops reading. */
    mq->ml.no_read =
        mq->stopping || mq->store_err != 0 || ((mq->paused || full) && mq->conn == SRC_MQTT_UP);
    if (mq->mosq != NULL)
        mosqloop_sync(&mq->ml, MOSQ_ERR_SUCCESS, 0);
}

/* ---------------------------------------------------------------------------------------- */
/* The connection                                                                            */

static void resolve_drop(struct src_mqtt *mq)
{
    resolve_cancel(mq->res);
    mq->res = NULL;
}

static void client_free(struct src_mqtt *mq)
{
    mosqloop_detach(&mq->ml);
    if (mq->mosq != NULL)
        mosquitto_destroy(mq->mosq); /* queued acks of unstored messages go with it */
    mq->mosq = NULL;
    mq->commits_cur = 0; /* inserts still out belong to an old generation now */
    mq->ml.hold_write = false;
}

/*
 * The attempt failed or the connection was lost: drop the client, wait out the backoff (or
 * SRC_MQTT_PROBLEM_RETRY_MS after a refusal). Never called from inside a libmosquitto call.
 */
static void conn_drop(struct src_mqtt *mq, const char *reason)
{
    bool was_up = mq->conn == SRC_MQTT_UP;
    struct timeval tv;
    int delay;

    snprintf(mq->why, sizeof(mq->why), "%s", reason);
    resolve_drop(mq);
    client_free(mq);
    if (mq->stopping) {
        mq->conn = SRC_MQTT_IDLE;
        stop_check(mq);
        return;
    }
    if (mq->refused) {
        delay = SRC_MQTT_PROBLEM_RETRY_MS;
        source_set_state(&mq->base, SOURCE_PROBLEM, "%s; retrying every %d ms", reason, delay);
        log_warn("%s %s; retrying in %d ms", mq->prefix, reason, delay);
    } else {
        delay = mq->backoff_ms;
        mq->backoff_ms = mq->backoff_ms * 2 > SRC_MQTT_BACKOFF_MAX_MS ? SRC_MQTT_BACKOFF_MAX_MS
                                                                      : mq->backoff_ms * 2;
        source_set_state(&mq->base, SOURCE_RECONNECTING, "%s", reason);
        if (was_up)
            log_warn("%s connection lost: %s; reconnecting in %d ms", mq->prefix, reason, delay);
        else if (delay == SRC_MQTT_BACKOFF_MIN_MS)
            log_warn("%s cannot connect: %s; retrying in %d ms (backoff up to %d ms)", mq->prefix,
                     reason, delay, SRC_MQTT_BACKOFF_MAX_MS);
        else
            log_debug("%s cannot connect: %s; retrying in %d ms", mq->prefix, reason, delay);
    }
    if (was_up)
        mq->reconnects++;
    mq->conn = SRC_MQTT_WAITING;
    tv = evhelp_tv_ms(delay);
    evtimer_add(mq->timer, &tv);
}

/* After every driver call (core/mosqloop): spool what the read brought, re-arm, tear down. */
static void after_io(void *arg)
{
    struct src_mqtt *mq = arg;

    SRC_MQTT_CHECK(mq);
    /* First the insert (which holds the write gate), then the gates: the PUBACKs queued by this
     * read never see a write event before their commit. */
    src_mqtt_spool_flush(mq);
    src_mqtt_gates(mq);
    if (mq->ml.lost) {
        char reason[300];

        /* libmosquitto's own error line says more (OpenSSL's reason for a TLS failure). */
        if (mq->lib_err[0] != '\0')
            snprintf(reason, sizeof(reason), "%.120s (%.170s)", mq->ml.reason, mq->lib_err);
        else
            snprintf(reason, sizeof(reason), "%s", mq->ml.reason);
        conn_drop(mq, reason);
    }
}

/* libmosquitto's log lines: errors kept for the next reason, the rest at debug. */
static void on_log(struct mosquitto *mosq, void *obj, int level, const char *str)
{
    struct src_mqtt *mq = obj;

    if (mq == NULL || mq->magic != SRC_MQTT_MAGIC || mosq != mq->mosq)
        return;
    if (level & MOSQ_LOG_ERR)
        snprintf(mq->lib_err, sizeof(mq->lib_err), "%s", str);
    else
        log_debug("%s libmosquitto: %s", mq->prefix, str);
}

/* CONNACK. Inside loop_read: record, subscribe (queued), never tear down. */
static void on_connect(struct mosquitto *mosq, void *obj, int reason, int flags,
                       const mosquitto_property *props)
{
    struct src_mqtt *mq = obj;
    int rc, mid;

    (void)props;
    if (mq == NULL || mq->magic != SRC_MQTT_MAGIC || mosq != mq->mosq)
        return;
    if (reason != 0) {
        mq->refused = true;
        mosqloop_lose(&mq->ml, "the server refused the session: %s",
                      mq->cfg->protocol == SRC_MQTT_V5 ? mosquitto_reason_string(reason)
                                                       : mosquitto_connack_string(reason));
        return;
    }
    if ((flags & 1) == 0 && !mq->cfg->clean_session && mq->ever_up)
        log_info("%s the server had no session for %s (restarted without persistence?); "
                 "subscribing again",
                 mq->prefix, mq->client_id);
    /* Always subscribe again: a server restarted without persistence forgot the session. */
    rc = mosquitto_subscribe_multiple(mosq, &mid, (int)mq->n_subs, mq->subs, mq->cfg->qos, 0, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        mosqloop_lose(&mq->ml, "cannot subscribe: %s", mosquitto_strerror(rc));
        return;
    }
    mq->conn = SRC_MQTT_SUBSCRIBING;
}

/* SUBACK: a refused filter is a problem of the config or the server's ACL. */
static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int n, const int *granted,
                         const mosquitto_property *props)
{
    struct src_mqtt *mq = obj;

    (void)mid;
    (void)props;
    if (mq == NULL || mq->magic != SRC_MQTT_MAGIC || mosq != mq->mosq)
        return;
    for (int i = 0; i < n && (size_t)i < mq->n_subs; i++) {
        if (granted[i] >= 0x80) {
            mq->refused = true;
            mosqloop_lose(&mq->ml, "the server refused the subscription to '%s' (reason 0x%02x)",
                          mq->subs[i], (unsigned)granted[i]);
            return;
        }
    }
    evtimer_del(mq->timer); /* the attempt timeout */
    mq->conn = SRC_MQTT_UP;
    mq->refused = false;
    mq->backoff_ms = SRC_MQTT_BACKOFF_MIN_MS;
    mq->n_addrs = mq->next_addr = 0; /* after a loss, look the name up afresh */
    log_info("%s %s %s as %s, subscribed to %zu filter(s) at QoS %d", mq->prefix,
             mq->ever_up ? "connected again to" : "connected to", mq->endpoint, mq->client_id,
             mq->n_subs, mq->cfg->qos);
    mq->ever_up = true;
    if (mq->store_err == 0)
        source_set_state(&mq->base, SOURCE_RUNNING, NULL);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc,
                          const mosquitto_property *props)
{
    struct src_mqtt *mq = obj;
    int saved_errno = errno;

    (void)props;
    if (mq == NULL || mq->magic != SRC_MQTT_MAGIC || mosq != mq->mosq)
        return;
    mosqloop_lose(&mq->ml, "%s", rc == 0 ? "disconnected" : mosqloop_strerror(rc, saved_errno));
}

/* A message (QoS 0/1 at PUBLISH, QoS 2 at PUBREL). Inside loop_read: its ack is queued. */
static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    struct src_mqtt *mq = obj;
    struct src_mqtt_msg m = {0};
    struct source_record *rec;
    char *pj;

    if (mq == NULL || mq->magic != SRC_MQTT_MAGIC || mosq != mq->mosq || mq->ml.lost)
        return;
    pj = src_mqtt_props_json(props);
    m.id = mq->next_id++;
    m.topic = msg->topic;
    m.payload = msg->payload != NULL ? msg->payload : "";
    m.len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
    m.qos = msg->qos;
    m.retain = msg->retain;
    m.packet_id = msg->mid;
    m.received_ms = (int64_t)time_wall_ms();
    m.props = pj;
    rec = pj != NULL ? src_mqtt_record_new(&m, 1) : NULL;
    if (rec == NULL || src_mqtt_spool_add(mq, &m, rec) != 0) {
        /* Not stored, so never acknowledged: dropping the client drops its queued ack, and the
         * server sends the message again on the next connection. */
        mosqloop_lose(&mq->ml, "out of memory spooling a message");
    }
    free(pj);
}

/* Start an attempt on ADDR (numeric): a fresh client, a non-blocking connect. */
static void connect_to(struct src_mqtt *mq, const char *addr)
{
    const struct src_mqtt_cfg *c = mq->cfg;
    char reason[300];
    int rc, saved_errno;

    mq->refused = false;
    mq->mosq = mosquitto_new(mq->client_id, c->clean_session != 0, mq);
    if (mq->mosq == NULL) {
        conn_drop(mq, "cannot create the client: out of memory");
        return;
    }
    mq->gen++;
    /* Our loop drives the client: libmosquitto writes only in mosquitto_loop_write(). */
    mosquitto_threaded_set(mq->mosq, true);
    mosquitto_int_option(mq->mosq, MOSQ_OPT_PROTOCOL_VERSION,
                         c->protocol == SRC_MQTT_V5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
    mosquitto_int_option(mq->mosq, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_connect_v5_callback_set(mq->mosq, on_connect);
    mosquitto_disconnect_v5_callback_set(mq->mosq, on_disconnect);
    mosquitto_subscribe_v5_callback_set(mq->mosq, on_subscribe);
    mosquitto_message_v5_callback_set(mq->mosq, on_message);
    mosquitto_log_callback_set(mq->mosq, on_log);
    mq->lib_err[0] = '\0';
    rc = MOSQ_ERR_SUCCESS;
    if (c->username != NULL)
        rc = mosquitto_username_pw_set(mq->mosq, c->username, c->password);
    if (rc == MOSQ_ERR_SUCCESS && mq->tls) {
        /* libmosquitto wants a CA file or directory: the system's when none is given. It opens
         * the files here (small local reads, once per attempt). */
        if (c->ca_file == NULL)
            mosquitto_int_option(mq->mosq, MOSQ_OPT_TLS_USE_OS_CERTS, 1);
        rc = mosquitto_tls_set(mq->mosq, c->ca_file, c->ca_file == NULL ? "/etc/ssl/certs" : NULL,
                               c->cert_file, c->key_file, NULL);
    }
    if (rc == MOSQ_ERR_SUCCESS && c->protocol == SRC_MQTT_V5 && !c->clean_session) {
        /*
         * A persistent MQTT 5 session needs a Session Expiry Interval in CONNECT. libmosquitto
         * 2.0.11 takes CONNECT properties only in mosquitto_connect_bind_v5(), which connects
         * blocking; it stores them before it checks its arguments, so a call with port -1
         * stores them and returns MOSQ_ERR_INVAL without any I/O, and the non-blocking
         * mosquitto_connect_async() below sends them (lib/connect.c).
         */
        mosquitto_property *props = NULL;

        rc = mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
                                          (uint32_t)c->session_expiry_s);
        if (rc == MOSQ_ERR_SUCCESS) {
            rc = mosquitto_connect_bind_v5(mq->mosq, addr, -1, c->keepalive_s, NULL, props);
            rc = rc == MOSQ_ERR_INVAL ? MOSQ_ERR_SUCCESS : rc;
        }
        mosquitto_property_free_all(&props);
    }
    if (rc != MOSQ_ERR_SUCCESS) {
        snprintf(reason, sizeof(reason), "cannot set the client up: %s", mosquitto_strerror(rc));
        mq->refused = true; /* a config problem (a TLS file): retry slowly */
        conn_drop(mq, reason);
        return;
    }
    mq->conn = SRC_MQTT_CONNECTING;
    mosqloop_attach(&mq->ml, mq->mosq);
    /* ADDR is numeric: libmosquitto's getaddrinfo() does not block; the connect is
     * non-blocking, the CONNECT waits for the write event. */
    rc = mosquitto_connect_async(mq->mosq, addr, mq->port, c->keepalive_s);
    saved_errno = errno;
    if (rc != MOSQ_ERR_SUCCESS) {
        /* libmosquitto's own error line says more (OpenSSL's reason for a TLS failure). */
        snprintf(reason, sizeof(reason), "connect to %s:%d: %.100s%s%.150s%s", addr, mq->port,
                 mosqloop_strerror(rc, saved_errno), mq->lib_err[0] ? " (" : "", mq->lib_err,
                 mq->lib_err[0] ? ")" : "");
        conn_drop(mq, reason);
        return;
    }
    src_mqtt_gates(mq);
    if (mq->ml.lost) {
        snprintf(reason, sizeof(reason), "%s", mq->ml.reason);
        conn_drop(mq, reason);
    }
}

static void on_resolved(void *arg, int gai_rc, const char (*addrs)[INET6_ADDRSTRLEN], int n_addrs)
{
    struct src_mqtt *mq = arg;
    char reason[300];

    SRC_MQTT_CHECK(mq);
    mq->res = NULL;
    memcpy(mq->addrs, addrs, sizeof(mq->addrs));
    mq->n_addrs = n_addrs;
    mq->next_addr = 0;
    if (gai_rc != 0) {
        snprintf(reason, sizeof(reason), "resolving %s: %s", mq->host, gai_strerror(gai_rc));
        conn_drop(mq, reason);
        return;
    }
    connect_to(mq, mq->addrs[mq->next_addr++]);
}

static void attempt_start(struct src_mqtt *mq)
{
    struct timeval tv;

    if (mq->stopping)
        return;
    if (mq->store_err != 0) {
        /* Nothing could be stored: do not take messages (the server keeps them). */
        mq->conn = SRC_MQTT_WAITING;
        tv = evhelp_tv_ms(SRC_MQTT_SPOOL_RETRY_MS);
        evtimer_add(mq->timer, &tv);
        return;
    }
    if (mq->base.state != SOURCE_PROBLEM && mq->base.state != SOURCE_RECONNECTING)
        source_set_state(&mq->base, SOURCE_CONNECTING, NULL);
    tv = evhelp_tv_ms(SRC_MQTT_CONNECT_TIMEOUT_MS);
    evtimer_add(mq->timer, &tv);
    if (mq->host_numeric) {
        connect_to(mq, mq->host);
    } else if (mq->next_addr < mq->n_addrs) {
        connect_to(mq, mq->addrs[mq->next_addr++]);
    } else if (resolve_start(mq->evb, mq->host, on_resolved, mq, &mq->res) != 0) {
        conn_drop(mq, "cannot start resolving the host name");
    } else {
        mq->conn = SRC_MQTT_RESOLVING;
    }
}

/* The backoff is over, or the attempt took too long. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct src_mqtt *mq = arg;
    char reason[96];

    (void)fd;
    (void)what;
    SRC_MQTT_CHECK(mq);
    switch (mq->conn) {
    case SRC_MQTT_WAITING:
        attempt_start(mq);
        break;
    case SRC_MQTT_RESOLVING:
    case SRC_MQTT_CONNECTING:
    case SRC_MQTT_SUBSCRIBING:
        snprintf(reason, sizeof(reason), "no CONNACK and SUBACK within %d ms",
                 SRC_MQTT_CONNECT_TIMEOUT_MS);
        conn_drop(mq, reason);
        break;
    case SRC_MQTT_IDLE:
        if (mq->load_retry != NULL && !mq->stopping) {
            struct src_mqtt_job *job = mq->load_retry;

            mq->load_retry = NULL;
            mq->jobs_out++;
            sqlq_submit(mq->sq, &job->j);
        }
        break;
    case SRC_MQTT_UP:
        break;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* The spool's results                                                                       */

static void load_done(struct src_mqtt *mq, struct src_mqtt_job *job)
{
    int64_t max_id = 0, now_us = (int64_t)time_wall_ms() * 1000;

    if (job->j.rc != 0) {
        /* The store thread keeps trying to open the database; read it again after a while. */
        log_err("%s cannot read the spool %s: %s; trying again in %d ms", mq->prefix,
                mq->spool_path, job->j.errmsg, SRC_MQTT_PROBLEM_RETRY_MS);
        source_set_state(&mq->base, SOURCE_PROBLEM, "cannot read the spool: %s", job->j.errmsg);
        for (size_t i = 0; i < job->n; i++) {
            free(job->msgs[i].topic);
            free(job->msgs[i].props);
            free(job->msgs[i].payload);
        }
        job->n = 0;
        job->j.next = NULL;
        mq->load_retry = job; /* submitted again by on_timer */
        mq->conn = SRC_MQTT_IDLE;
        {
            struct timeval tv = evhelp_tv_ms(SRC_MQTT_PROBLEM_RETRY_MS);

            evtimer_add(mq->timer, &tv);
        }
        return;
    }
    for (size_t i = 0; i < job->n; i++) {
        const struct src_mqtt_msg *m = &job->msgs[i];
        struct source_record *rec = src_mqtt_record_new(m, 2);

        max_id = m->id > max_id ? m->id : max_id;
        mq->spool_n++;
        mq->spool_bytes += m->len;
        if (rec == NULL)
            log_err("%s out of memory loading message %" PRId64 " from the spool; it is "
                    "delivered after the next restart",
                    mq->prefix, m->id);
        else
            ready_add(mq, rec);
    }
    if (job->n > 0)
        log_info("%s %zu message(s) spooled before the restart and not acknowledged: delivered "
                 "again",
                 mq->prefix, job->n);
    /* Ids only grow, across restarts too (a deleted row's id is never reused): microseconds
     * of the wall clock, or past the largest id stored. */
    mq->next_id = max_id + 1 > now_us ? max_id + 1 : now_us;
    mq->loaded = true;
    src_mqtt_job_free(job);
    attempt_start(mq);
}

void src_mqtt_jobs_done(struct src_mqtt *mq, struct src_mqtt_job *jobs)
{
    int err;

    SRC_MQTT_CHECK(mq);
    while (jobs != NULL) {
        struct src_mqtt_job *job = jobs;

        jobs = (struct src_mqtt_job *)job->j.next;
        job->j.next = NULL;
        mq->jobs_out--;
        switch (job->kind) {
        case SRC_MQTT_LOAD:
            load_done(mq, job);
            continue;
        case SRC_MQTT_INSERT:
            if (job->gen == mq->gen && mq->commits_cur > 0)
                mq->commits_cur--;
            if (job->j.rc != 0) {
                /* Given up at shutdown: never acknowledged, so the server sends them again. */
                mq->spool_n -= job->n;
                mq->spool_bytes -= job->bytes;
                break;
            }
            for (size_t i = 0; i < job->n; i++) {
                ready_add(mq, job->recs[i]);
                job->recs[i] = NULL;
            }
            break;
        case SRC_MQTT_DELETE:
            if (job->j.rc != 0)
                log_warn("%s %zu acknowledged message(s) not deleted from the spool (%s); "
                         "delivered again after a restart",
                         mq->prefix, job->n_ids, job->j.errmsg);
            mq->spool_n -= job->n_ids < mq->spool_n ? job->n_ids : mq->spool_n;
            mq->spool_bytes -= job->bytes < mq->spool_bytes ? job->bytes : mq->spool_bytes;
            break;
        }
        src_mqtt_job_free(job);
    }
    err = sqlq_health(mq->sq, mq->store_why, sizeof(mq->store_why));
    if (err != mq->store_err) {
        mq->store_err = err;
        if (err != 0) {
            source_set_state(&mq->base, SOURCE_PROBLEM,
                             "spool: %s; not reading or acknowledging until it "
                             "can be written",
                             mq->store_why);
        } else if (mq->conn == SRC_MQTT_UP) {
            source_set_state(&mq->base, SOURCE_RUNNING, NULL);
        }
    }
    if (mq->mosq != NULL) {
        src_mqtt_gates(mq);
        if (mq->ml.lost) {
            char reason[256];

            snprintf(reason, sizeof(reason), "%s", mq->ml.reason);
            conn_drop(mq, reason);
        }
    }
    src_mqtt_kick(mq);
    stop_check(mq);
}

/* ---------------------------------------------------------------------------------------- */
/* The ops                                                                                    */

static void mqtt_destroy(struct source *src);

/* A stable id for this broker: FNV-1a of the host name and the data_dir, 8 hex digits. */
static void broker_tag(const char *data_dir, char out[9])
{
    char host[256] = "";
    uint32_t h = 2166136261u;

    if (gethostname(host, sizeof(host) - 1) != 0)
        host[0] = '\0';
    for (const char *s = host; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    h = (h ^ 0) * 16777619u;
    for (const char *s = data_dir != NULL ? data_dir : ""; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    snprintf(out, 9, "%08x", h);
}

static int mqtt_create(const struct source_ctx *ctx, const void *cfgp, struct source **out,
                       struct sy_error *err)
{
    const struct src_mqtt_cfg *cfg = cfgp;
    struct src_mqtt *mq = calloc(1, sizeof(*mq));
    const char *mapping = ctx->mapping != NULL ? ctx->mapping : "-";
    char why[160], tag[9];
    struct in6_addr a6;
    struct in_addr a4;
    int rc;

    *out = NULL;
    if (mq == NULL) {
        sy_error_set(err, "mqtt source %s: out of memory", mapping);
        return SY_ENOMEM;
    }
    mq->magic = SRC_MQTT_MAGIC;
    mq->base.ops = &src_mqtt_ops;
    mq->base.ctx = ctx;
    mq->base.state = SOURCE_CONNECTING;
    mq->cfg = cfg;
    mq->evb = ctx->base;
    mq->efd = -1;
    mq->backoff_ms = SRC_MQTT_BACKOFF_MIN_MS;
    snprintf(mq->prefix, sizeof(mq->prefix), "[source:mqtt:%.64s]", mapping);
    mosqloop_lib_init();

    rc = parse_url(cfg->url, &mq->host, &mq->port, &mq->tls, why, sizeof(why));
    if (rc != 0) {
        sy_error_set(err, "mqtt source %s: url: %s", mapping, why);
        goto fail;
    }
    rc = SY_ENOMEM;
    mq->host_numeric =
        inet_pton(AF_INET, mq->host, &a4) == 1 || inet_pton(AF_INET6, mq->host, &a6) == 1;
    if (cfg->client_id != NULL) {
        mq->client_id = strdup(cfg->client_id);
    } else {
        broker_tag(ctx->data_dir, tag);
        if (asprintf(&mq->client_id, "sy-%s-%s", mapping, tag) < 0)
            mq->client_id = NULL;
    }
    if (mq->client_id == NULL)
        goto oom;
    if (asprintf(&mq->endpoint, "%s://%s%s%s:%d", mq->tls ? "mqtts" : "mqtt",
                 strchr(mq->host, ':') != NULL ? "[" : "", mq->host,
                 strchr(mq->host, ':') != NULL ? "]" : "", mq->port) < 0) {
        mq->endpoint = NULL;
        goto oom;
    }
    mq->subs = calloc(cfg->topics.n ? cfg->topics.n : 1, sizeof(*mq->subs));
    if (mq->subs == NULL)
        goto oom;
    for (size_t i = 0; i < cfg->topics.n; i++) {
        int k = cfg->shared_group != NULL
                    ? asprintf(&mq->subs[i], "$share/%s/%s", cfg->shared_group, cfg->topics.v[i])
                    : asprintf(&mq->subs[i], "%s", cfg->topics.v[i]);

        if (k < 0) {
            mq->subs[i] = NULL;
            goto oom;
        }
        mq->n_subs++;
    }
    mq->kick = event_new(mq->evb, -1, 0, on_kick, mq);
    mq->timer = evtimer_new(mq->evb, on_timer, mq);
    if (mq->kick == NULL || mq->timer == NULL)
        goto oom;
    *out = &mq->base;
    return 0;

oom:
    sy_error_set(err, "mqtt source %s: out of memory", mapping);
fail:
    mqtt_destroy(&mq->base);
    return rc;
}

static void on_stop_done(evutil_socket_t fd, short what, void *arg);

static int mqtt_start(struct source *src)
{
    struct src_mqtt *mq = (struct src_mqtt *)src;
    struct sy_error err = {{0}};
    int rc;

    SRC_MQTT_CHECK(mq);
    if (mq->started || mq->stopping)
        return SY_ESTATE;
    mq->started = true;
    rc = mosqloop_init(&mq->ml, mq->evb, SRC_MQTT_MISC_MS, after_io, mq);
    if (rc == 0)
        rc = src_mqtt_spool_start(mq, &err);
    if (rc != 0) {
        log_err("%s cannot start: %s", mq->prefix, err.msg[0] ? err.msg : sy_strerror(rc));
        return rc;
    }
    source_set_state(&mq->base, SOURCE_CONNECTING, NULL);
    return 0;
}

static void mqtt_ack(struct source *src, struct source_record *const *recs, size_t n,
                     enum source_outcome outcome)
{
    struct src_mqtt *mq = (struct src_mqtt *)src;

    SRC_MQTT_CHECK(mq);
    (void)outcome; /* DONE and DISCARD both end the message: its row goes */
    if (mq->finished) {
        log_warn("%s %zu ack(s) after stop: not recorded (delivered again after a restart)",
                 mq->prefix, n);
        return;
    }
    src_mqtt_spool_delete(mq, recs, n);
}

static void mqtt_release(struct source *src, struct source_record *const *recs, size_t n)
{
    struct src_mqtt *mq = (struct src_mqtt *)src;

    SRC_MQTT_CHECK(mq);
    /* Their rows stay in the spool; a running source hands them out again (in order, first). */
    if (mq->stopping || mq->finished)
        return;
    for (size_t i = n; i-- > 0;) {
        const struct source_record *r = recs[i];
        struct source_record *c = source_record_new(strlen(r->id), r->data_len, r->json_len);

        if (c != NULL)
            source_record_fill(c, r->id, r->data, r->json);
        if (c == NULL || ready_push(mq, c, true) != 0) {
            source_record_free(c);
            log_err("%s out of memory giving message %s back; it is delivered after a restart",
                    mq->prefix, r->id);
            continue;
        }
        c->sent_ms = r->sent_ms;
        c->receive_count = r->receive_count + 1;
        c->flags = r->flags;
    }
    src_mqtt_kick(mq);
}

static void mqtt_pause(struct source *src)
{
    struct src_mqtt *mq = (struct src_mqtt *)src;

    SRC_MQTT_CHECK(mq);
    mq->paused = true;
    if (mq->mosq != NULL) {
        mq->ml.no_read = true; /* the gates proper run on the next event (no callbacks here) */
        if (mq->ml.ev_read != NULL)
            event_del(mq->ml.ev_read);
    }
}

static void mqtt_resume(struct source *src)
{
    struct src_mqtt *mq = (struct src_mqtt *)src;

    SRC_MQTT_CHECK(mq);
    mq->paused = false;
    /* The kick delivers what is ready and runs the gates again on a clean stack. */
    src_mqtt_kick(mq);
}

/* Stop finished (or timed out): send what acks may still go, close, tell the host later. */
static void stop_finish(struct src_mqtt *mq)
{
    int remaining = (int)(mq->stop_deadline_ms - time_mono_ms());

    mq->finished = true;
    evtimer_del(mq->timer);
    resolve_drop(mq);
    if (mq->mosq != NULL) {
        /* Acks of committed messages go out with the DISCONNECT (one non-blocking write);
         * those of messages not committed in time stay held and go with the client. */
        if (mq->commits_cur == 0) {
            mosquitto_disconnect(mq->mosq);
            mosquitto_loop_write(mq->mosq, 1);
        }
    }
    client_free(mq);
    src_mqtt_spool_close(mq, remaining > 0 ? remaining : 0);
    ready_free(mq);
    mosqloop_free(&mq->ml);
    source_set_state(&mq->base, SOURCE_STOPPED, NULL);
    event_active(mq->done_ev, EV_TIMEOUT, 0);
}

static void stop_check(struct src_mqtt *mq)
{
    if (!mq->stopping || mq->finished)
        return;
    if (mq->jobs_out > 0 && time_mono_ms() < mq->stop_deadline_ms)
        return;
    if (mq->jobs_out > 0)
        log_warn("%s stopped before %zu spool write(s) finished; those messages are delivered "
                 "again (by the server or after the restart)",
                 mq->prefix, mq->jobs_out);
    stop_finish(mq);
}

static void on_stop_timer(evutil_socket_t fd, short what, void *arg)
{
    struct src_mqtt *mq = arg;

    (void)fd;
    (void)what;
    SRC_MQTT_CHECK(mq);
    stop_check(mq);
    if (!mq->finished) {
        /* Jobs still out: look again at the deadline (their completions look too). */
        int64_t left = mq->stop_deadline_ms - time_mono_ms();
        struct timeval tv = evhelp_tv_ms(left > 0 ? (int)left + 1 : 1);

        evtimer_add(mq->stop_timer, &tv);
    }
}

static void on_stop_done(evutil_socket_t fd, short what, void *arg)
{
    struct src_mqtt *mq = arg;
    source_stopped_fn *done = mq->stop_done;

    (void)fd;
    (void)what;
    SRC_MQTT_CHECK(mq);
    mq->stop_done = NULL;
    if (done != NULL)
        done(mq->stop_arg); /* may destroy the source: the last thing we do */
}

static void mqtt_stop(struct source *src, source_stopped_fn *done, void *arg)
{
    struct src_mqtt *mq = (struct src_mqtt *)src;
    struct timeval tv;

    SRC_MQTT_CHECK(mq);
    mq->stop_done = done;
    mq->stop_arg = arg;
    mq->done_ev = event_new(mq->evb, -1, 0, on_stop_done, mq);
    mq->stop_timer = evtimer_new(mq->evb, on_stop_timer, mq);
    if (mq->done_ev == NULL || mq->stop_timer == NULL) {
        /* Cannot wait: finish now, tell the host from a one-shot. */
        log_err("%s out of memory stopping; closing at once", mq->prefix);
        evhelp_free(&mq->done_ev);
        evhelp_free(&mq->stop_timer);
        mq->stopping = true;
        mq->finished = true;
        client_free(mq);
        src_mqtt_spool_close(mq, 0);
        event_base_once(mq->evb, -1, EV_TIMEOUT, on_stop_done, mq, NULL);
        return;
    }
    mq->stopping = true;
    mq->stop_deadline_ms = time_mono_ms() + SRC_MQTT_STOP_WAIT_MS;
    if (!mq->started) {
        stop_finish(mq);
        return;
    }
    src_mqtt_gates(mq);
    /* Checked on the timer's first turn (never finish inside stop()), then at the deadline. */
    tv = evhelp_tv_ms(0);
    evtimer_add(mq->stop_timer, &tv);
}

static void mqtt_destroy(struct source *src)
{
    struct src_mqtt *mq = (struct src_mqtt *)src;

    if (mq == NULL)
        return;
    resolve_drop(mq);
    client_free(mq);
    src_mqtt_spool_close(mq, 0);
    src_mqtt_job_free(mq->load_retry);
    ready_free(mq);
    mosqloop_free(&mq->ml);
    evhelp_free(&mq->kick);
    evhelp_free(&mq->timer);
    evhelp_free(&mq->stop_timer);
    evhelp_free(&mq->done_ev);
    for (size_t i = 0; i < mq->n_subs; i++)
        free(mq->subs[i]);
    free(mq->subs);
    free(mq->host);
    free(mq->client_id);
    free(mq->endpoint);
    free(mq->spool_path);
    mq->magic = 0;
    free(mq);
}

static const char *mqtt_arn(const struct source *src)
{
    return ((const struct src_mqtt *)src)->endpoint;
}

static void mqtt_stats(const struct source *src, struct source_stats *out)
{
    const struct src_mqtt *mq = (const struct src_mqtt *)src;

    out->lag = (int64_t)mq->ready_n; /* committed, not yet with the host */
    out->reconnects = mq->reconnects;
    out->acks_pending = mq->commits_cur;
}

static void mqtt_describe(const void *cfgp, const char *mapping, struct source_desc *out)
{
    const struct src_mqtt_cfg *cfg = cfgp;

    (void)mapping;
    out->self_managed = 1;
    out->topics = (const char *const *)cfg->topics.v;
    out->n_topics = cfg->topics.n;
    out->endpoints = cfg->url;
}

const struct source_ops src_mqtt_ops = {
    .name = "mqtt",
    .cfg = &src_mqtt_kind,
    .create = mqtt_create,
    .start = mqtt_start,
    .ack = mqtt_ack,
    .release = mqtt_release,
    .pause = mqtt_pause,
    .resume = mqtt_resume,
    .stop = mqtt_stop,
    .destroy = mqtt_destroy,
    .encode_batch = src_mqtt_encode_batch,
    .batch_info = src_mqtt_batch_info,
    .arn = mqtt_arn,
    .stats = mqtt_stats,
    .describe = mqtt_describe,
};
