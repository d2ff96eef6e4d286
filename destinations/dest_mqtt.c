/*
 * destinations/dest_mqtt.c - the mqtt:// destination: one libmosquitto client (MQTT v5) per
 * destination, one QoS 1 PUBLISH per send (body unchanged, attributes as user properties),
 * acknowledged by its PUBACK.
 *
 *   mqtt://HOST:PORT/TOPIC            (HOST may be [IPv6]; PORT defaults to 1883)
 *
 * Owns the client, the libevent events that drive it and one `struct dest_mqtt_send` per
 * accepted send. Everything runs on the loop thread; the only other thread is a short-lived
 * resolver for host names (see below).
 *
 * Driving libmosquitto without its threads is core/mosqloop (shared with the MQTT source): a
 * persistent read event on mosquitto_socket() calls mosquitto_loop_read(); a one-shot write
 * event, armed whenever mosquitto_want_write() says so after any library call, calls
 * mosquitto_loop_write(); a DEST_MQTT_MISC_MS timer calls mosquitto_loop_misc() (keepalive
 * PINGREQ and its timeout). mosquitto_loop() and mosquitto_loop_start() are never used.
 *
 * Connections: each attempt uses a fresh client. On a lost connection we drop the client and
 * fail every pending send (SY_EIO); after a backoff (DEST_MQTT_BACKOFF_MIN_MS doubling to
 * DEST_MQTT_BACKOFF_MAX_MS, reset by a successful CONNACK) a new client connects. We do not
 * use mosquitto_reconnect_async(): libmosquitto 2.0 keeps un-acknowledged QoS 1 messages
 * across a reconnect and re-sends them after the CONNACK, which would publish again messages
 * we already reported as failed (the core retries those itself). While not connected, sends
 * fail fast with SY_EIO "not connected: <reason>". A connection attempt that gets no CONNACK
 * within DEST_MQTT_CONNECT_TIMEOUT_MS counts as lost.
 *
 * Names: libmosquitto resolves host names with a blocking getaddrinfo(). A numeric HOST is
 * passed straight through; any other name is looked up on a short-lived detached thread
 * (core/resolve.h), which hands the addresses back to the loop. Each attempt tries the
 * next address of that lookup; a new lookup starts when all were tried or after a connection
 * that worked was lost.
 *
 * Completion: library callbacks never call DONE; they record the outcome in the send and
 * activate the send's event, whose callback calls DONE as the very last thing it does. So DONE
 * runs from the loop's top level (never inside dest_send() or libmosquitto) and may destroy
 * the destination. Likewise a disconnect seen inside a library callback only sets a flag; the
 * client is torn down after the library call has returned.
 *
 * Closing: destroy() sets `closed` first. From then on every callback (libmosquitto's, our
 * events') returns at once, so nothing re-arms a timer, reconnects or publishes on the
 * half-destroyed object (mosquitto_disconnect_v5()/mosquitto_destroy() may call back), and a
 * DONE that sends again (SY_ECLOSED) or destroys again (a no-op) during destroy is harmless.
 */
#include "dest.h"
#include "dest_int.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "core/log.h"
#include "core/mosqloop.h"

#define DEST_MQTT_MAGIC 0x6d717474U      /* "mqtt" */
#define DEST_MQTT_SEND_MAGIC 0x6d73656eU /* "msen" */

#define DEST_MQTT_DEFAULT_PORT 1883
#define DEST_MQTT_QOS 1
#define DEST_MQTT_KEEPALIVE_S 30
/* How often mosquitto_loop_misc() runs (keepalive bookkeeping). */
#define DEST_MQTT_MISC_MS 500
/* Reconnect backoff: first delay, doubled after every failed attempt, capped. */
#define DEST_MQTT_BACKOFF_MIN_MS 100
#define DEST_MQTT_BACKOFF_MAX_MS 5000
/* PUBACK timeouts in a row after which the client is dropped (see send_event_cb()). */
#define DEST_MQTT_TIMEOUTS_DROP 3
/* An attempt without CONNACK (or name resolution) within this counts as failed. */
#define DEST_MQTT_CONNECT_TIMEOUT_MS 10000

#define DEST_MQTT_ERRLEN 256
/* Addresses kept from one lookup; each attempt tries the next one. */
#define DEST_MQTT_MAX_ADDRS RESOLVE_MAX_ADDRS

enum dest_mqtt_conn {
    DEST_MQTT_RESOLVING,  /* the resolver thread is looking up HOST */
    DEST_MQTT_CONNECTING, /* TCP connect and CONNECT sent, waiting for CONNACK */
    DEST_MQTT_CONNECTED,  /* CONNACK success: sends are published */
    DEST_MQTT_WAITING,    /* backoff before the next attempt: sends fail fast */
};

struct dest_mqtt_send;

struct dest_mqtt {
    struct dest dst; /* first: the core sees a struct dest */
    unsigned magic;
    int puback_timeouts;     /* in a row; reset by an acknowledged publish */
    struct event_base *base; /* borrowed */
    char *host;              /* owned; without brackets */
    int port;
    bool host_numeric;      /* HOST is an IP literal: no resolver needed */
    char *topic;            /* owned */
    char *scope;            /* owned: "[dest:mqtt:URI]" for log lines */
    struct mosquitto *mosq; /* owned; NULL outside an attempt */
    struct mosqloop ml;     /* drives mosq: socket events, loop_misc timer, `lost` */
    struct event *ev_timer; /* WAITING: the backoff; RESOLVING/CONNECTING: attempt timeout */
    struct resolve *res;    /* the lookup of the current attempt */
    char addrs[DEST_MQTT_MAX_ADDRS][INET6_ADDRSTRLEN]; /* the last lookup of HOST */
    int n_addrs, next_addr; /* addresses not tried yet: [next_addr, n_addrs) */
    enum dest_mqtt_conn conn;
    bool closed;                   /* destroy() has started: callbacks do nothing */
    bool ever_connected;           /* a CONNACK was seen once ("connected" vs "connected again") */
    int backoff_ms;                /* the delay before the next attempt */
    int64_t retry_at_ms;           /* WAITING: when the next attempt starts (monotonic) */
    char reason[DEST_MQTT_ERRLEN]; /* why we are not connected (ml.reason: why it was lost) */
    char state_buf[DEST_MQTT_ERRLEN + 48];
    struct dest_mqtt_send *sends; /* every send not reported yet (doubly linked) */
};

/* One accepted send; freed right before DONE is called. */
struct dest_mqtt_send {
    unsigned magic;
    struct dest_mqtt *dm;
    struct dest_mqtt_send *prev, *next;
    struct dest_util_outcome o; /* DONE, the per-send timer event, the outcome */
    int mid;                    /* the PUBLISH message id, once published */
    bool published;
};

static int mosq_to_sy(int rc)
{
    switch (rc) {
    case MOSQ_ERR_NOMEM:
        return SY_ENOMEM;
    case MOSQ_ERR_PAYLOAD_SIZE:
    case MOSQ_ERR_OVERSIZE_PACKET:
        return SY_ETOOBIG;
    case MOSQ_ERR_INVAL:
    case MOSQ_ERR_MALFORMED_UTF8:
    case MOSQ_ERR_DUPLICATE_PROPERTY:
    case MOSQ_ERR_QOS_NOT_SUPPORTED:
        return SY_EINVAL;
    default:
        return SY_EIO;
    }
}

/* ---- sends ------------------------------------------------------------------------------ */

static void send_free(struct dest_mqtt_send *s)
{
    struct dest_mqtt *dm = s->dm;

    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        dm->sends = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    event_free(s->o.ev);
    s->magic = 0;
    free(s);
}

static void send_free_v(void *arg)
{
    send_free(arg);
}

static void conn_drop(struct dest_mqtt *dm, const char *reason);

/* S's event: an outcome was recorded, or no PUBACK came in time. DONE runs last. */
static void send_event_cb(evutil_socket_t fd, short what, void *arg)
{
    struct dest_mqtt_send *s = arg;
    struct dest_mqtt *dm = s->dm;

    if (s->magic != DEST_MQTT_SEND_MAGIC || dm->magic != DEST_MQTT_MAGIC || dm->closed)
        return;
    bool timed_out = !s->o.has_outcome;

    /* A late PUBACK for this mid finds no send and is ignored. */
    dest_util_outcome_default(&s->o, SY_ETIMEDOUT, "no PUBACK within %d ms", DEST_SEND_TIMEOUT_MS);
    /*
     * A broker that keeps answering pings but not publishes: after a few timeouts in a row,
     * drop the client. Kept, it would hold every timed-out QoS 1 message in libmosquitto's
     * unbounded queue while the core keeps retrying them.
     */
    if (!timed_out && s->o.rc == 0) {
        dm->puback_timeouts = 0;
    } else if (timed_out && ++dm->puback_timeouts >= DEST_MQTT_TIMEOUTS_DROP && dm->mosq != NULL) {
        dm->puback_timeouts = 0;
        conn_drop(dm, "no PUBACK for several publishes in a row");
    }
    dest_util_outcome_report(&dm->dst, &s->o, send_free_v, s);
}

/* ---- the connection ----------------------------------------------------------------------- */

static void attempt_start(struct dest_mqtt *dm);

/* Forget the resolver of the current attempt (its thread may still be running). */
static void resolve_drop(struct dest_mqtt *dm)
{
    resolve_cancel(dm->res);
    dm->res = NULL;
}

/*
 * The current attempt failed or the connection was lost: drop the client, fail the pending
 * sends, wait out the backoff. Never called from inside a libmosquitto call.
 */
static void conn_drop(struct dest_mqtt *dm, const char *reason)
{
    char why[DEST_MQTT_ERRLEN + 32];
    bool was_connected = dm->conn == DEST_MQTT_CONNECTED;
    struct timeval tv;
    int delay;

    if (dm->closed) /* destroy() tears the client down itself and re-arms nothing */
        return;
    dest_util_str_copy(dm->reason, sizeof(dm->reason), reason);
    mosqloop_detach(&dm->ml);
    resolve_drop(dm);
    if (dm->mosq != NULL)
        mosquitto_destroy(dm->mosq);
    dm->mosq = NULL;

    /* Whether the broker got them is unknown; the core retries, and the next client starts
     * empty, so nothing is published twice by us. */
    snprintf(why, sizeof(why), "connection lost: %s", reason);
    for (struct dest_mqtt_send *s = dm->sends; s != NULL; s = s->next)
        dest_util_outcome_settle(&s->o, SY_EIO, why);

    delay = dest_util_backoff_next(&dm->backoff_ms, DEST_MQTT_BACKOFF_MAX_MS);
    dm->retry_at_ms = dest_util_now_ms() + delay;
    dm->conn = DEST_MQTT_WAITING;
    tv = evhelp_tv_ms(delay);
    evtimer_add(dm->ev_timer, &tv);
    /* One warning per outage; the retries after it only at debug (state() has the reason). */
    if (was_connected)
        log_warn("%s connection lost: %s; reconnecting in %d ms", dm->scope, reason, delay);
    else if (delay == DEST_MQTT_BACKOFF_MIN_MS)
        log_warn("%s cannot connect: %s; retrying in %d ms (backoff up to %d ms)", dm->scope,
                 reason, delay, DEST_MQTT_BACKOFF_MAX_MS);
    else
        log_debug("%s cannot connect: %s; retrying in %d ms", dm->scope, reason, delay);
}

/*
 * After every library call (ours, or the driver's through after_io()): re-arm the socket
 * events, and tear down if a callback saw the connection go or the socket went away.
 */
static void after_lib(struct dest_mqtt *dm, int rc, int saved_errno)
{
    if (dm->mosq == NULL || dm->closed)
        return;
    mosqloop_sync(&dm->ml, rc, saved_errno);
    if (dm->ml.lost) {
        char reason[DEST_MQTT_ERRLEN];

        dest_util_str_copy(reason, sizeof(reason), dm->ml.reason);
        conn_drop(dm, reason);
    }
}

/* After each read, write or loop_misc of the driver (never inside libmosquitto). */
static void after_io(void *arg)
{
    after_lib(arg, MOSQ_ERR_SUCCESS, 0);
}

/* CONNACK (REASON 0 is success, anything else a refusal). Inside loop_read. */
static void on_connect(struct mosquitto *mosq, void *obj, int reason, int flags,
                       const mosquitto_property *props)
{
    struct dest_mqtt *dm = obj;

    if (dm == NULL || dm->magic != DEST_MQTT_MAGIC || mosq != dm->mosq || dm->closed)
        return;
    if (reason != 0) {
        mosqloop_lose(&dm->ml, "connection refused: %s", mosquitto_reason_string(reason));
        return;
    }
    evtimer_del(dm->ev_timer);       /* the attempt timeout */
    dm->n_addrs = dm->next_addr = 0; /* after a loss, look the name up afresh */
    dm->conn = DEST_MQTT_CONNECTED;
    dm->backoff_ms = DEST_MQTT_BACKOFF_MIN_MS;
    dm->reason[0] = '\0';
    if (dm->ever_connected)
        log_info("%s connected again", dm->scope);
    else
        log_info("%s connected", dm->scope);
    dm->ever_connected = true;
}

/* The connection ended (RC 0: we asked for it). Inside a library call: only flag it. */
static void on_disconnect(struct mosquitto *mosq, void *obj, int rc,
                          const mosquitto_property *props)
{
    struct dest_mqtt *dm = obj;
    int saved_errno = errno;

    if (dm == NULL || dm->magic != DEST_MQTT_MAGIC || mosq != dm->mosq || dm->closed)
        return;
    mosqloop_lose(&dm->ml, "%s", rc == 0 ? "disconnected" : mosqloop_strerror(rc, saved_errno));
}

/* PUBACK for MID (REASON >= 0x80 is a failure). Inside loop_read. */
static void on_publish(struct mosquitto *mosq, void *obj, int mid, int reason,
                       const mosquitto_property *props)
{
    struct dest_mqtt *dm = obj;

    if (dm == NULL || dm->magic != DEST_MQTT_MAGIC || mosq != dm->mosq || dm->closed)
        return;
    for (struct dest_mqtt_send *s = dm->sends; s != NULL; s = s->next) {
        if (!s->published || s->o.has_outcome || s->mid != mid)
            continue;
        if (reason >= MQTT_RC_UNSPECIFIED /* 0x80: failures */) {
            char msg[DEST_MQTT_ERRLEN];

            snprintf(msg, sizeof(msg), "PUBACK reason 0x%02x: %s", (unsigned)reason,
                     mosquitto_reason_string(reason));
            dest_util_outcome_settle(&s->o, SY_EIO, msg);
        } else {
            dest_util_outcome_settle(&s->o, 0, NULL);
        }
        return;
    }
}

/* Start an attempt on ADDR (numeric): a fresh client, a non-blocking connect. */
static void connect_to(struct dest_mqtt *dm, const char *addr)
{
    char reason[DEST_MQTT_ERRLEN];
    int rc, saved_errno;

    dm->mosq = mosquitto_new(NULL, true, dm);
    if (dm->mosq == NULL) {
        conn_drop(dm, "cannot create the client: out of memory");
        return;
    }
    mosquitto_int_option(dm->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_connect_v5_callback_set(dm->mosq, on_connect);
    mosquitto_disconnect_v5_callback_set(dm->mosq, on_disconnect);
    mosquitto_publish_v5_callback_set(dm->mosq, on_publish);
    dm->conn = DEST_MQTT_CONNECTING;
    mosqloop_attach(&dm->ml, dm->mosq);
    /* ADDR is numeric, so libmosquitto's getaddrinfo() does not block; the connect is
     * non-blocking and the CONNECT packet waits in the library until the socket is
     * writable (the write event). */
    rc = mosquitto_connect_async(dm->mosq, addr, dm->port, DEST_MQTT_KEEPALIVE_S);
    saved_errno = errno;
    if (rc != MOSQ_ERR_SUCCESS) {
        snprintf(reason, sizeof(reason), "connect to %s:%d: %s", addr, dm->port,
                 mosqloop_strerror(rc, saved_errno));
        conn_drop(dm, reason);
        return;
    }
    after_lib(dm, MOSQ_ERR_SUCCESS, 0);
}

/* The lookup is over (on the loop): try its first address. */
static void on_resolved(void *arg, int gai_rc, const char (*addrs)[INET6_ADDRSTRLEN], int n_addrs)
{
    struct dest_mqtt *dm = arg;
    char reason[DEST_MQTT_ERRLEN];

    if (dm->magic != DEST_MQTT_MAGIC || dm->closed) /* canceled lookups never call back */
        return;
    dm->res = NULL;
    memcpy(dm->addrs, addrs, sizeof(dm->addrs));
    dm->n_addrs = n_addrs;
    dm->next_addr = 0;
    if (gai_rc != 0) {
        snprintf(reason, sizeof(reason), "resolving %s: %s", dm->host, gai_strerror(gai_rc));
        conn_drop(dm, reason);
        return;
    }
    connect_to(dm, dm->addrs[dm->next_addr++]);
}

/* Start resolving HOST on a thread. */
static void resolve_host(struct dest_mqtt *dm)
{
    if (resolve_start(dm->base, dm->host, on_resolved, dm, &dm->res) != 0) {
        conn_drop(dm, "cannot start resolving the host name");
        return;
    }
    dm->conn = DEST_MQTT_RESOLVING;
}

/*
 * Begin a connection attempt, bounded by DEST_MQTT_CONNECT_TIMEOUT_MS: a numeric HOST
 * directly; a name on the next address of the last lookup (a name often has an IPv6 and an
 * IPv4 address and the server listens on one), or a new lookup when all were tried.
 */
static void attempt_start(struct dest_mqtt *dm)
{
    struct timeval tv;

    tv = evhelp_tv_ms(DEST_MQTT_CONNECT_TIMEOUT_MS);
    evtimer_add(dm->ev_timer, &tv);
    if (dm->host_numeric)
        connect_to(dm, dm->host);
    else if (dm->next_addr < dm->n_addrs)
        connect_to(dm, dm->addrs[dm->next_addr++]);
    else
        resolve_host(dm);
}

/* ev_timer: the backoff is over (WAITING), or the attempt took too long. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct dest_mqtt *dm = arg;
    char reason[DEST_MQTT_ERRLEN];

    if (dm->magic != DEST_MQTT_MAGIC || dm->closed)
        return;
    switch (dm->conn) {
    case DEST_MQTT_WAITING:
        attempt_start(dm);
        break;
    case DEST_MQTT_RESOLVING:
    case DEST_MQTT_CONNECTING:
        snprintf(reason, sizeof(reason), "no CONNACK within %d ms", DEST_MQTT_CONNECT_TIMEOUT_MS);
        conn_drop(dm, reason);
        break;
    case DEST_MQTT_CONNECTED:
        break;
    }
}

/* ---- the vtable --------------------------------------------------------------------------- */

static void mqtt_destroy(struct dest *d);

/* Split "HOST:PORT/TOPIC" or "[V6]:PORT/TOPIC" (after "mqtt://") into DM's fields. */
static int parse_uri(struct dest_mqtt *dm, const char *rest)
{
    const char *host_end, *p, *slash;
    long port = DEST_MQTT_DEFAULT_PORT;

    if (*rest == '[') {
        host_end = strchr(rest, ']');
        if (host_end == NULL)
            return SY_EINVAL;
        dm->host = strndup(rest + 1, (size_t)(host_end - rest - 1));
        p = host_end + 1;
    } else {
        p = rest + strcspn(rest, ":/");
        dm->host = strndup(rest, (size_t)(p - rest));
    }
    if (dm->host == NULL)
        return SY_ENOMEM;
    if (dm->host[0] == '\0')
        return SY_EINVAL;
    if (*p == ':') {
        char *end;

        errno = 0;
        port = strtol(p + 1, &end, 10);
        if (errno != 0 || end == p + 1 || port < 1 || port > UINT16_MAX)
            return SY_EINVAL;
        p = end;
    }
    if (*p != '/')
        return SY_EINVAL;
    slash = p;
    if (slash[1] == '\0')
        return SY_EINVAL;
    dm->topic = strdup(slash + 1);
    if (dm->topic == NULL)
        return SY_ENOMEM;
    dm->port = (int)port;
    dm->host_numeric = dest_util_numeric_host(dm->host);
    return 0;
}

static int mqtt_create(struct event_base *base, const char *uri, struct dest **out,
                       struct sy_error *err)
{
    static const char prefix[] = "mqtt://";
    struct dest_mqtt *dm;
    int rc;

    *out = NULL;
    if (strncmp(uri, prefix, sizeof(prefix) - 1) != 0) {
        sy_error_set(err, "%s: not an mqtt:// URI", uri);
        return SY_EINVAL;
    }
    mosqloop_lib_init();

    dm = calloc(1, sizeof(*dm));
    if (dm == NULL) {
        sy_error_set(err, "%s: out of memory", uri);
        return SY_ENOMEM;
    }
    dm->magic = DEST_MQTT_MAGIC;
    dm->dst.ops = &dest_mqtt_ops;
    dm->base = base;
    dm->backoff_ms = DEST_MQTT_BACKOFF_MIN_MS;
    dm->conn = DEST_MQTT_WAITING;
    snprintf(dm->reason, sizeof(dm->reason), "not started");
    dm->dst.uri = strdup(uri);
    if (dm->dst.uri == NULL || asprintf(&dm->scope, "[dest:mqtt:%s]", uri) < 0) {
        dm->scope = NULL;
        rc = SY_ENOMEM;
        sy_error_set(err, "%s: out of memory", uri);
        goto fail;
    }
    rc = parse_uri(dm, uri + sizeof(prefix) - 1);
    if (rc != 0) {
        sy_error_set(err, "%s: %s", uri,
                     rc == SY_ENOMEM ? "out of memory" : "expected mqtt://HOST:PORT/TOPIC");
        goto fail;
    }
    dm->ev_timer = evtimer_new(base, on_timer, dm);
    if (mosqloop_init(&dm->ml, base, DEST_MQTT_MISC_MS, after_io, dm) != 0 ||
        dm->ev_timer == NULL) {
        rc = SY_ENOMEM;
        sy_error_set(err, "%s: cannot register events", uri);
        goto fail;
    }
    /* Connecting continues on the loop; a failure here only schedules the next attempt. */
    attempt_start(dm);
    *out = &dm->dst;
    return 0;

fail:
    mqtt_destroy(&dm->dst);
    return rc;
}

static int mqtt_send(struct dest *d, const struct dest_msg *msg, dest_done_fn *done, void *arg)
{
    struct dest_mqtt *dm = (struct dest_mqtt *)d;
    struct dest_mqtt_send *s;
    mosquitto_property *props = NULL;
    struct timeval tv;
    int rc, saved_errno;

    if (dm->magic != DEST_MQTT_MAGIC)
        return SY_EINVAL;
    if (dm->closed) /* a DONE run by destroy() sending again */
        return SY_ECLOSED;
    if (msg->len > INT_MAX)
        return SY_ETOOBIG;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return SY_ENOMEM;
    s->magic = DEST_MQTT_SEND_MAGIC;
    s->dm = dm;
    s->o.done = done;
    s->o.arg = arg;
    s->o.ev = evtimer_new(dm->base, send_event_cb, s);
    if (s->o.ev == NULL) {
        free(s);
        return SY_ENOMEM;
    }
    s->next = dm->sends;
    if (dm->sends != NULL)
        dm->sends->prev = s;
    dm->sends = s;

    if (dm->conn != DEST_MQTT_CONNECTED) {
        char why[DEST_MQTT_ERRLEN + 32];

        /* Fail fast, but through the event: DONE never runs inside dest_send(). */
        snprintf(why, sizeof(why), "not connected: %s",
                 dm->conn == DEST_MQTT_WAITING ? dm->reason : "connecting");
        dest_util_outcome_settle(&s->o, SY_EIO, why);
        return 0;
    }

    for (size_t i = 0; i < msg->n_attrs; i++) {
        rc = mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, msg->attrs[i].name,
                                                msg->attrs[i].value);
        if (rc != MOSQ_ERR_SUCCESS) {
            mosquitto_property_free_all(&props);
            send_free(s);
            return mosq_to_sy(rc);
        }
    }
    /* The library copies the payload and the properties (it keeps QoS 1 messages until the
     * PUBACK), so both stay ours. */
    rc = mosquitto_publish_v5(dm->mosq, &s->mid, dm->topic, (int)msg->len, msg->body, DEST_MQTT_QOS,
                              false, props);
    saved_errno = errno;
    mosquitto_property_free_all(&props);
    if (rc != MOSQ_ERR_SUCCESS) {
        log_warn("%s publish failed: %s", dm->scope, mosqloop_strerror(rc, saved_errno));
        send_free(s);
        dm->dst.failures++;
        after_lib(dm, rc, saved_errno);
        return mosq_to_sy(rc);
    }
    s->published = true;
    tv = evhelp_tv_ms(DEST_SEND_TIMEOUT_MS);
    evtimer_add(s->o.ev, &tv);
    /* The PUBLISH may not have been written in full: arm the write event. A connection
     * found dead here fails S (and the others) through their events, not in here. */
    after_lib(dm, MOSQ_ERR_SUCCESS, 0);
    return 0;
}

static const char *mqtt_state(const struct dest *d)
{
    struct dest_mqtt *dm = (struct dest_mqtt *)d;

    switch (dm->conn) {
    case DEST_MQTT_CONNECTED:
        return "connected";
    case DEST_MQTT_RESOLVING:
    case DEST_MQTT_CONNECTING:
        return "connecting";
    case DEST_MQTT_WAITING:
    default:
        return dest_util_state_retry(dm->state_buf, sizeof(dm->state_buf),
                                     dm->retry_at_ms - dest_util_now_ms(), dm->reason);
    }
}

/*
 * Mark DM closed (every callback returns at once from here on), tear the client and the
 * events down, then DONE(SY_ECANCELED) for every send not reported yet (a send whose PUBACK
 * already arrived is reported as the success it is), then free everything. DONE may send
 * (SY_ECLOSED) or destroy (a no-op) again. Tolerates a half-built DM.
 */
static void mqtt_destroy(struct dest *d)
{
    struct dest_mqtt *dm = (struct dest_mqtt *)d;
    struct dest_mqtt_send *s;

    if (dm == NULL || dm->closed)
        return;
    dm->closed = true;
    mosqloop_free(&dm->ml);
    resolve_drop(dm);
    evhelp_free(&dm->ev_timer);
    if (dm->mosq != NULL) {
        /* A polite DISCONNECT if the socket takes it now; never waited for. Its callbacks
         * (on_disconnect) see `closed` and do nothing. */
        if (dm->conn == DEST_MQTT_CONNECTED)
            mosquitto_disconnect_v5(dm->mosq, 0, NULL);
        mosquitto_destroy(dm->mosq);
        dm->mosq = NULL;
    }
    while ((s = dm->sends) != NULL)
        dest_util_outcome_close(&dm->dst, &s->o, send_free_v, s);
    dm->magic = 0;
    free(dm->host);
    free(dm->topic);
    free(dm->scope);
    free(dm->dst.uri);
    free(dm);
}

const struct dest_ops dest_mqtt_ops = {
    .scheme = "mqtt",
    .create = mqtt_create,
    .send = mqtt_send,
    .state = mqtt_state,
    .destroy = mqtt_destroy,
};
