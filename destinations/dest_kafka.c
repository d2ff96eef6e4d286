/*
 * destinations/dest_kafka.c - the kafka:// destination: one librdkafka producer per destination,
 * one Kafka message per send (key = the message key, value = the body, one header per
 * attribute), acknowledged by its delivery report.
 *
 *   kafka://HOST:PORT[,HOST:PORT]/TOPIC
 *
 * Owns the producer (rd_kafka_t), a pipe librdkafka writes to when its main queue becomes
 * non-empty (rd_kafka_queue_io_event_enable), the libevent events that serve that queue, and
 * one `struct dest_kafka_send` per accepted send.
 *
 * Threads: librdkafka runs its own broker threads, but every callback we register (delivery
 * reports, errors, statistics, logs) is an op on the main queue, served by rd_kafka_poll() on
 * the loop thread. Nothing here runs off the loop thread, and nothing on it blocks except
 * destroy(), which waits at most DEST_KAFKA_CLOSE_FLUSH_MS for in-flight requests plus the
 * time librdkafka needs to join its threads.
 *
 * Connection state: librdkafka reconnects by itself (reconnect.backoff.ms doubling up to
 * reconnect.backoff.max.ms). It reports RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN through the error
 * callback; from then on new sends fail fast with SY_EIO "not connected: ..." instead of
 * waiting out message.timeout.ms. librdkafka has no "broker is back" callback, so the way back
 * is the statistics callback (statistics.interval.ms = DEST_KAFKA_STATS_MS): the first
 * statistics in which a configured or learned broker is UP clear the state, and so does any
 * successful delivery report. Sends accepted before the outage end with librdkafka's own
 * message timeout (SY_ETIMEDOUT) or succeed if a broker comes back in time.
 *
 * Fatal errors: a producer that raised a fatal error (an idempotent producer's unrecoverable
 * sequence error, say) accepts nothing any more. The error callback only marks the state and
 * wakes ev_recover; there, outside rd_kafka_poll(), the producer is retired: every send it holds
 * fails with SY_EIO "producer fatal error: ..." (the async queue keeps the record and retries
 * it with its backoff), its main queue is never served again (rd_kafka_destroy() purges it
 * without calling back), and it is destroyed on a short-lived detached thread, because
 * rd_kafka_destroy() joins librdkafka's threads and can block (librdkafka 2.0.2 has no public
 * "destroy immediately" flag). After a backoff (DEST_KAFKA_RECREATE_MIN_MS doubling up to
 * DEST_KAFKA_RECREATE_MAX_MS, reset by a successful delivery) a fresh producer is created;
 * until then sends fail fast with "not connected: ...".
 *
 * Closing: destroy() sets `closed` first; from then on our events and librdkafka's callbacks
 * re-arm nothing and start no recovery, and a DONE run by destroy() that sends (SY_ECLOSED) or
 * destroys (a no-op) again is harmless. After a bounded flush the producer itself is destroyed
 * on a detached thread (core/detach.h), as a retired one is: with a broker that went away,
 * rd_kafka_destroy() blocked a draining broker for more than 15 s (seen in test_esm_kafka).
 *
 * Completion: librdkafka's callbacks never call DONE themselves; they record the outcome in
 * the send and activate the send's event, and that event's callback calls DONE as the last
 * thing it does. So DONE always runs from the loop's top level, never from inside
 * rd_kafka_poll() or dest_send(), and DONE may even destroy the destination.
 */
#include "dest.h"
#include "dest_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "core/detach.h"
#include "core/log.h"

#define DEST_KAFKA_MAGIC 0x6b61666bU      /* "kafk" */
#define DEST_KAFKA_SEND_MAGIC 0x6b73656eU /* "ksen" */

/* linger.ms: how long librdkafka waits to batch messages. Small: destinations are low volume. */
#define DEST_KAFKA_LINGER_MS 5
/* socket.timeout.ms and request.timeout.ms: a request in flight to a dead broker must fail
 * well within DEST_SEND_TIMEOUT_MS, or its messages could not time out in time. */
#define DEST_KAFKA_REQUEST_TIMEOUT_MS 5000
/* reconnect.backoff.ms / reconnect.backoff.max.ms: librdkafka's own reconnect backoff. */
#define DEST_KAFKA_BACKOFF_MS 100
#define DEST_KAFKA_BACKOFF_MAX_MS 5000
/* statistics.interval.ms: how soon we notice that a broker is back after all were down. */
#define DEST_KAFKA_STATS_MS 1000
/* Safety-net poll of the main queue, should a wake-up through the pipe ever be missed. */
#define DEST_KAFKA_POLL_MS 100
/* Most rd_kafka_poll() rounds per wake-up, so a flood of reports cannot starve the loop; what
 * is left is served on the next wake-up or tick. */
#define DEST_KAFKA_POLL_ROUNDS 64
/* destroy(): how long to wait for purged in-flight requests before rd_kafka_destroy(). */
#define DEST_KAFKA_CLOSE_FLUSH_MS 500
/* librdkafka's message.timeout.ms is this much shorter than DEST_SEND_TIMEOUT_MS, where our own
 * per-send timer fires, in case its timeout scan (about once a second) is late: every send is
 * bounded by DEST_SEND_TIMEOUT_MS either way. */
#define DEST_KAFKA_TIMEOUT_GRACE_MS 1000
/* After a fatal error: the wait before a fresh producer, doubled while creating one fails or
 * the new one fails again before any delivery succeeded. */
#define DEST_KAFKA_RECREATE_MIN_MS 1000
#define DEST_KAFKA_RECREATE_MAX_MS 30000

#define DEST_KAFKA_ERRLEN DEST_UTIL_ERRLEN

enum dest_kafka_conn {
    DEST_KAFKA_CONNECTING, /* no broker seen UP yet; sends are queued by librdkafka */
    DEST_KAFKA_CONNECTED,  /* a broker was UP at the last statistics or report */
    DEST_KAFKA_DOWN,       /* all brokers down: new sends fail fast */
    DEST_KAFKA_FATAL,      /* the producer raised a fatal error, or there is none: sends fail
                              until a fresh producer is up (ev_recover) */
};

struct dest_kafka_send;

struct dest_kafka {
    struct dest dst; /* first: the core sees a struct dest */
    unsigned magic;
    struct event_base *base;  /* borrowed */
    char *topic;              /* owned */
    char *scope;              /* owned: "[dest:kafka:URI]" for log lines */
    char *servers;            /* owned: bootstrap.servers, for every producer */
    rd_kafka_t *rk;           /* owned; NULL between a retired producer and the next one */
    rd_kafka_queue_t *mainq;  /* owned handle on rk's main queue (the io event is on it) */
    int wake_rd, wake_wr;     /* the io-event pipe; librdkafka writes to wake_wr */
    struct event *ev_wake;    /* read event on wake_rd */
    struct event *ev_tick;    /* DEST_KAFKA_POLL_MS safety-net poll */
    struct event *ev_recover; /* after a fatal error: retire the producer, then make a new one */
    int recreate_backoff_ms;  /* the next wait before a fresh producer */
    int64_t recreate_at_ms;   /* when the next producer is made (monotonic), rk == NULL */
    bool closed;              /* destroy() has started: callbacks re-arm nothing */
    enum dest_kafka_conn conn;
    char reason[DEST_KAFKA_ERRLEN]; /* why we are DOWN / FATAL */
    char state_buf[DEST_KAFKA_ERRLEN + 32];
    struct dest_kafka_send *sends; /* every send not freed yet (doubly linked) */
};

/*
 * One accepted send. It lives until both DONE has been called (reported) and librdkafka has
 * let go of it (its delivery report arrived, or the producer was destroyed).
 */
struct dest_kafka_send {
    unsigned magic;
    struct dest_kafka *dk;
    struct dest_kafka_send *prev, *next;
    struct dest_util_outcome o; /* DONE, the per-send timer event, the outcome */
    bool in_rdkafka;            /* librdkafka holds us as the message opaque */
};

/* ---- sends ------------------------------------------------------------------------------ */

static void send_unlink(struct dest_kafka_send *s)
{
    struct dest_kafka *dk = s->dk;

    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        dk->sends = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

static void send_free(struct dest_kafka_send *s)
{
    send_unlink(s);
    event_free(s->o.ev);
    s->magic = 0;
    free(s);
}

/* S's report is done: free S, unless librdkafka still holds it (we timed out first): its
 * report frees S later. */
static void send_release(void *arg)
{
    struct dest_kafka_send *s = arg;

    if (!s->in_rdkafka)
        send_free(s);
}

static void send_free_v(void *arg)
{
    send_free(arg);
}

/*
 * S's event: an outcome was recorded (activated by hand) or the send timer fired. Calls DONE
 * as the very last thing: DONE may destroy the destination.
 */
static void send_event_cb(evutil_socket_t fd, short what, void *arg)
{
    struct dest_kafka_send *s = arg;
    struct dest_kafka *dk = s->dk;

    if (s->magic != DEST_KAFKA_SEND_MAGIC || dk->magic != DEST_KAFKA_MAGIC || dk->closed)
        return;
    dest_util_outcome_default(&s->o, SY_ETIMEDOUT, "no delivery report within %d ms",
                              DEST_SEND_TIMEOUT_MS);
    dest_util_outcome_report(&dk->dst, &s->o, send_release, s);
}

/* ---- librdkafka callbacks (all served by rd_kafka_poll() on the loop thread) ------------- */

static int kafka_err_to_sy(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return 0;
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
        return SY_ETIMEDOUT;
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
        return SY_ECANCELED;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        return SY_ETOOBIG;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return SY_EBUSY;
    default:
        return SY_EIO;
    }
}

/* Delivery report: the broker acknowledged the message (acks=all) or librdkafka gave up. */
static void kafka_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct dest_kafka *dk = opaque;
    struct dest_kafka_send *s = m->_private;

    if (dk == NULL || dk->magic != DEST_KAFKA_MAGIC || s == NULL ||
        s->magic != DEST_KAFKA_SEND_MAGIC)
        return;
    s->in_rdkafka = false;
    /* While closing, reports only settle their sends (destroy reports them): no state. */
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && dk->conn != DEST_KAFKA_FATAL && !dk->closed) {
        if (dk->conn == DEST_KAFKA_DOWN)
            log_info("%s a broker is back (delivery succeeded); accepting sends again", dk->scope);
        dk->conn = DEST_KAFKA_CONNECTED;
        dk->recreate_backoff_ms = DEST_KAFKA_RECREATE_MIN_MS;
    }
    if (s->o.reported) {
        /* We already reported a timeout; the late report only releases S. */
        send_free(s);
        return;
    }
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        dest_util_outcome_settle(&s->o, 0, NULL);
    } else if (m->err == RD_KAFKA_RESP_ERR__FATAL ||
               (dk->conn == DEST_KAFKA_FATAL && !dk->closed)) {
        /* After a fatal error librdkafka fails (purges) what it holds: say why. */
        char msg[DEST_KAFKA_ERRLEN + 32];

        /* The error callback has set the reason unless this report came first. */
        snprintf(msg, sizeof(msg), "producer %s",
                 dk->reason[0] != '\0' ? dk->reason : "fatal error");
        dest_util_outcome_settle(&s->o, SY_EIO, msg);
    } else {
        char msg[DEST_KAFKA_ERRLEN];

        snprintf(msg, sizeof(msg), "delivery failed: %s", rd_kafka_err2str(m->err));
        dest_util_outcome_settle(&s->o, kafka_err_to_sy(m->err), msg);
    }
}

static void kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct dest_kafka *dk = opaque;
    char buf[DEST_KAFKA_ERRLEN / 2];

    if (dk == NULL || dk->magic != DEST_KAFKA_MAGIC || dk->closed)
        return;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof(buf));

        if (dk->conn == DEST_KAFKA_FATAL)
            return;
        snprintf(dk->reason, sizeof(dk->reason), "fatal error: %s: %s", rd_kafka_err2name(orig),
                 buf);
        dk->conn = DEST_KAFKA_FATAL;
        log_err("%s %s; failing its sends and replacing the producer", dk->scope, dk->reason);
        /* Inside rd_kafka_poll(): the producer is retired from ev_recover, after it returns. */
        event_active(dk->ev_recover, EV_TIMEOUT, 0);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        if (dk->conn != DEST_KAFKA_FATAL) {
            if (dk->conn != DEST_KAFKA_DOWN)
                log_warn("%s all brokers down (%s); sends fail until one is back, librdkafka "
                         "keeps reconnecting",
                         dk->scope, reason);
            snprintf(dk->reason, sizeof(dk->reason), "all brokers down: %s", reason);
            dk->conn = DEST_KAFKA_DOWN;
        }
        return;
    }
    /* Connection errors are in librdkafka's own log lines already (kafka_log_cb). */
    if (err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__RESOLVE)
        log_debug("%s %s: %s", dk->scope, rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
    else
        log_warn("%s %s: %s", dk->scope, rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/*
 * Statistics (every DEST_KAFKA_STATS_MS): the only way librdkafka tells us a broker is UP
 * again after RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN. Returns 0: librdkafka frees JSON.
 */
static int kafka_stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
    struct dest_kafka *dk = opaque;
    json_t *root, *brokers;
    bool up = false;

    if (dk == NULL || dk->magic != DEST_KAFKA_MAGIC || dk->conn == DEST_KAFKA_FATAL || dk->closed)
        return 0;
    root = json_loadb(json, json_len, 0, NULL);
    brokers = json_object_get(root, "brokers");
    for (void *it = json_object_iter(brokers); it != NULL && !up;
         it = json_object_iter_next(brokers, it)) {
        json_t *b = json_object_iter_value(it);
        const char *source = json_string_value(json_object_get(b, "source"));
        const char *state = json_string_value(json_object_get(b, "state"));

        /* The internal broker (and logical ones) are always "UP"; they prove nothing. */
        if (source == NULL || state == NULL || strcmp(source, "internal") == 0 ||
            strcmp(source, "logical") == 0)
            continue;
        up = strcmp(state, "UP") == 0 || strcmp(state, "UPDATE") == 0;
    }
    json_decref(root);
    if (up && dk->conn != DEST_KAFKA_CONNECTED) {
        if (dk->conn == DEST_KAFKA_DOWN)
            log_info("%s a broker is back; accepting sends again", dk->scope);
        dk->conn = DEST_KAFKA_CONNECTED;
    }
    return 0;
}

/* librdkafka's log lines (log.queue=true: served by rd_kafka_poll, so on the loop thread). */
static void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    const char *name = rk != NULL ? rd_kafka_name(rk) : "rdkafka";

    /* syslog levels: 0-3 error, 4 warning, 5-6 notice/info, 7 debug. Connection errors are
     * also reported through the error callback, so librdkafka's own lines stay below error. */
    if (level <= 4)
        log_warn("[rdkafka:%s] %s: %s", name, fac, buf);
    else if (level <= 6)
        log_info("[rdkafka:%s] %s: %s", name, fac, buf);
    else
        log_debug("[rdkafka:%s] %s: %s", name, fac, buf);
}

/* ---- serving the main queue on the loop --------------------------------------------------- */

/* Serve what is on the main queue: delivery reports, errors, statistics, logs. */
static void kafka_serve(struct dest_kafka *dk)
{
    if (dk->rk == NULL) /* between a retired producer and the next one */
        return;
    for (int i = 0; i < DEST_KAFKA_POLL_ROUNDS; i++) {
        if (rd_kafka_poll(dk->rk, 0) <= 0)
            break;
    }
}

/* The pipe became readable: librdkafka put something on the (previously empty) main queue. */
static void kafka_wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct dest_kafka *dk = arg;
    char buf[64];
    ssize_t n;

    /* Drain the pipe first: librdkafka writes again only when the queue goes from empty to
     * non-empty, which can happen while we serve it below. */
    do {
        n = read(fd, buf, sizeof(buf));
    } while (n > 0 || (n < 0 && errno == EINTR));
    if (!dk->closed)
        kafka_serve(dk);
}

static void kafka_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct dest_kafka *dk = arg;

    if (!dk->closed)
        kafka_serve(dk);
}

/* ---- producers ---------------------------------------------------------------------------- */

/* Set one librdkafka property; on failure fill ERR with librdkafka's text. */
static int kafka_conf_set(rd_kafka_conf_t *conf, const char *uri, const char *key, const char *val,
                          struct sy_error *err)
{
    char errstr[512];

    if (rd_kafka_conf_set(conf, key, val, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        sy_error_set(err, "%s: %s=%s: %s", uri, key, val, errstr);
        return SY_EINVAL;
    }
    return 0;
}

/*
 * A new producer for DK (dk->rk, dk->mainq, its io event on dk->wake_wr). Returns 0, or a
 * negative SY_E* with ERR filled and nothing left behind. Loop only.
 */
static int producer_new(struct dest_kafka *dk, struct sy_error *err)
{
    const char *uri = dk->dst.uri;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char num[32], errstr[512];
    int rc;

    if (conf == NULL) {
        sy_error_set(err, "%s: out of memory", uri);
        return SY_ENOMEM;
    }
    /* acks=all + idempotence: an acknowledged message is on every in-sync replica, and
     * librdkafka's internal retries cannot duplicate or reorder it. */
    rc = kafka_conf_set(conf, uri, "bootstrap.servers", dk->servers, err);
    if (rc == 0)
        rc = kafka_conf_set(conf, uri, "client.id", "switchyard", err);
    if (rc == 0)
        rc = kafka_conf_set(conf, uri, "acks", "all", err);
    if (rc == 0)
        rc = kafka_conf_set(conf, uri, "enable.idempotence", "true", err);
    /* librdkafka's own timeout ends first; our timer at DEST_SEND_TIMEOUT_MS is the bound. */
    snprintf(num, sizeof(num), "%d", DEST_SEND_TIMEOUT_MS - DEST_KAFKA_TIMEOUT_GRACE_MS);
    if (rc == 0)
        rc = kafka_conf_set(conf, uri, "message.timeout.ms", num, err);
    snprintf(num, sizeof(num), "%d", DEST_KAFKA_LINGER_MS);
    if (rc == 0)
        rc = kafka_conf_set(conf, uri, "linger.ms", num, err);
    snprintf(num, sizeof(num), "%d", DEST_KAFKA_REQUEST_TIMEOUT_MS);
    if (rc == 0)
        rc = kafka_conf_set(conf, uri, "socket.timeout.ms", num, err);
    if (rc == 0)
        rc = kafka_conf_set(conf, uri, "request.timeout.ms", num, err);
    snprintf(num, sizeof(num), "%d", DEST_KAFKA_BACKOFF_MS);
    if (rc == 0)
        rc = kafka_conf_set(conf, uri, "reconnect.backoff.ms", num, err);
    snprintf(num, sizeof(num), "%d", DEST_KAFKA_BACKOFF_MAX_MS);
    if (rc == 0)
        rc = kafka_conf_set(conf, uri, "reconnect.backoff.max.ms", num, err);
    snprintf(num, sizeof(num), "%d", DEST_KAFKA_STATS_MS);
    if (rc == 0)
        rc = kafka_conf_set(conf, uri, "statistics.interval.ms", num, err);
    /* Logs go through a queue we serve, not from librdkafka's threads: log.h is loop-only. */
    if (rc == 0)
        rc = kafka_conf_set(conf, uri, "log.queue", "true", err);
    if (rc != 0) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    rd_kafka_conf_set_opaque(conf, dk);
    rd_kafka_conf_set_dr_msg_cb(conf, kafka_dr_cb);
    rd_kafka_conf_set_error_cb(conf, kafka_error_cb);
    rd_kafka_conf_set_stats_cb(conf, kafka_stats_cb);
    rd_kafka_conf_set_log_cb(conf, kafka_log_cb);

    /* rd_kafka_new() takes CONF on success only. */
    dk->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (dk->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        sy_error_set(err, "%s: creating the producer: %s", uri, errstr);
        return SY_EINVAL;
    }
    rd_kafka_set_log_queue(dk->rk, NULL); /* NULL: forward logs to the main queue */
    dk->mainq = rd_kafka_queue_get_main(dk->rk);
    if (dk->mainq == NULL) {
        /* Nothing was produced yet: destroying it cannot wait for anything. */
        rd_kafka_destroy(dk->rk);
        dk->rk = NULL;
        sy_error_set(err, "%s: out of memory", uri);
        return SY_ENOMEM;
    }
    rd_kafka_queue_io_event_enable(dk->mainq, dk->wake_wr, "1", 1);
    return 0;
}

/* rd_kafka_destroy() joins librdkafka's threads: run on a detached thread (core/detach.h). */
static void producer_destroy(void *rk)
{
    /* The main queue was handed back already: librdkafka purges it without calling back, so
     * nothing of the destination is touched from that thread. */
    rd_kafka_destroy(rk);
}

/*
 * Retire dk->rk after a fatal error: stop serving its main queue, fail every send it still
 * holds with WHY (it will never report them), and destroy it on a thread of its own. Loop only.
 */
static void producer_retire(struct dest_kafka *dk, const char *why)
{
    rd_kafka_t *rk = dk->rk;
    struct dest_kafka_send *s, *next;

    if (rk == NULL)
        return;
    rd_kafka_queue_io_event_enable(dk->mainq, -1, NULL, 0);
    rd_kafka_queue_destroy(dk->mainq);
    dk->mainq = NULL;
    dk->rk = NULL;
    for (s = dk->sends; s != NULL; s = next) {
        next = s->next;
        if (!s->in_rdkafka)
            continue;
        s->in_rdkafka = false;
        if (s->o.reported)
            send_free(s); /* timed out already; only librdkafka held it */
        else
            dest_util_outcome_settle(&s->o, SY_EIO, why); /* reported from its event */
    }
    if (detach_run("sy-kafka-close", producer_destroy, rk) != 0)
        log_warn("%s no thread to close the failed producer: closed on the loop", dk->scope);
}

/*
 * ev_recover: after a fatal error (activated by kafka_error_cb()), retire the producer and
 * wait out the backoff; after the backoff, create a fresh one (or wait longer if that fails).
 */
static void kafka_recover_cb(evutil_socket_t fd, short what, void *arg)
{
    struct dest_kafka *dk = arg;
    struct timeval tv;
    int delay;

    if (dk->magic != DEST_KAFKA_MAGIC || dk->closed || dk->conn != DEST_KAFKA_FATAL)
        return;
    if (dk->rk != NULL) {
        char why[DEST_KAFKA_ERRLEN + 64];

        snprintf(why, sizeof(why), "producer %s", dk->reason);
        producer_retire(dk, why);
        delay = dest_util_backoff_next(&dk->recreate_backoff_ms, DEST_KAFKA_RECREATE_MAX_MS);
        log_warn("%s producer closed: its sends failed and stay queued for a retry; a new "
                 "producer in %d ms",
                 dk->scope, delay);
    } else {
        struct sy_error err = {{0}};

        if (producer_new(dk, &err) == 0) {
            dk->conn = DEST_KAFKA_CONNECTING;
            dk->reason[0] = '\0';
            log_info("%s a new producer is up; accepting sends again", dk->scope);
            return;
        }
        delay = dest_util_backoff_next(&dk->recreate_backoff_ms, DEST_KAFKA_RECREATE_MAX_MS);
        snprintf(dk->reason, sizeof(dk->reason), "cannot create a new producer: %.200s", err.msg);
        log_warn("%s %s; retrying in %d ms", dk->scope, dk->reason, delay);
    }
    dk->recreate_at_ms = dest_util_now_ms() + delay;
    tv = evhelp_tv_ms(delay);
    evtimer_add(dk->ev_recover, &tv);
}

int dest_kafka_test_fatal(struct dest *d, const char *reason)
{
    struct dest_kafka *dk = (struct dest_kafka *)d;

    if (d == NULL || d->ops != &dest_kafka_ops || dk->rk == NULL || dk->closed)
        return SY_ESTATE;
    return rd_kafka_test_fatal_error(dk->rk, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                                     reason) == RD_KAFKA_RESP_ERR_NO_ERROR
               ? 0
               : SY_ESTATE;
}

/* ---- the vtable --------------------------------------------------------------------------- */

static void kafka_destroy(struct dest *d);

static int kafka_create(struct event_base *base, const char *uri, struct dest **out,
                        struct sy_error *err)
{
    static const char prefix[] = "kafka://";
    struct dest_kafka *dk;
    const char *hosts, *slash;
    int fds[2];
    int rc = SY_ENOMEM;

    *out = NULL;
    if (strncmp(uri, prefix, sizeof(prefix) - 1) != 0) {
        sy_error_set(err, "%s: not a kafka:// URI", uri);
        return SY_EINVAL;
    }
    hosts = uri + sizeof(prefix) - 1;
    slash = strchr(hosts, '/');
    if (slash == NULL || slash == hosts || slash[1] == '\0') {
        sy_error_set(err, "%s: expected kafka://HOST:PORT[,HOST:PORT]/TOPIC", uri);
        return SY_EINVAL;
    }

    dk = calloc(1, sizeof(*dk));
    if (dk == NULL)
        goto fail_nomem;
    dk->magic = DEST_KAFKA_MAGIC;
    dk->dst.ops = &dest_kafka_ops;
    dk->base = base;
    dk->wake_rd = dk->wake_wr = -1;
    dk->conn = DEST_KAFKA_CONNECTING;
    dk->recreate_backoff_ms = DEST_KAFKA_RECREATE_MIN_MS;
    dk->dst.uri = strdup(uri);
    dk->topic = strdup(slash + 1);
    dk->servers = strndup(hosts, (size_t)(slash - hosts));
    if (dk->dst.uri == NULL || dk->topic == NULL || dk->servers == NULL ||
        asprintf(&dk->scope, "[dest:kafka:%s]", uri) < 0) {
        dk->scope = NULL;
        goto fail_nomem;
    }

    /* Both ends non-blocking: librdkafka must never block writing a wake-up, and we drain
     * until EAGAIN. One pipe for the destination's life: each producer gets its write end. */
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        sy_error_set(err, "%s: pipe: %s", uri, strerror(errno));
        rc = SY_EIO;
        goto fail;
    }
    dk->wake_rd = fds[0];
    dk->wake_wr = fds[1];
    dk->ev_wake = event_new(base, dk->wake_rd, EV_READ | EV_PERSIST, kafka_wake_cb, dk);
    dk->ev_tick = event_new(base, -1, EV_PERSIST, kafka_tick_cb, dk);
    dk->ev_recover = evtimer_new(base, kafka_recover_cb, dk);
    if (dk->ev_wake == NULL || dk->ev_tick == NULL || dk->ev_recover == NULL)
        goto fail_nomem;
    rc = producer_new(dk, err);
    if (rc != 0)
        goto fail;
    {
        struct timeval tv = evhelp_tv_ms(DEST_KAFKA_POLL_MS);

        if (event_add(dk->ev_wake, NULL) != 0 || event_add(dk->ev_tick, &tv) != 0) {
            sy_error_set(err, "%s: cannot register events", uri);
            rc = SY_EIO;
            goto fail;
        }
    }
    *out = &dk->dst;
    return 0;

fail_nomem:
    rc = SY_ENOMEM;
    sy_error_set(err, "%s: out of memory", uri);
fail:
    if (dk != NULL)
        kafka_destroy(&dk->dst);
    return rc;
}

static int kafka_send(struct dest *d, const struct dest_msg *msg, dest_done_fn *done, void *arg)
{
    struct dest_kafka *dk = (struct dest_kafka *)d;
    struct dest_kafka_send *s;
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_resp_err_t kerr;
    const void *key = msg->use_pkey ? msg->pkey : msg->key;
    size_t key_len = key == NULL ? 0 : msg->use_pkey ? msg->pkey_len : strlen(msg->key);
    struct timeval tv;

    if (dk->magic != DEST_KAFKA_MAGIC)
        return SY_EINVAL;
    if (dk->closed) /* a DONE run by destroy() sending again */
        return SY_ECLOSED;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return SY_ENOMEM;
    s->magic = DEST_KAFKA_SEND_MAGIC;
    s->dk = dk;
    s->o.done = done;
    s->o.arg = arg;
    s->o.ev = evtimer_new(dk->base, send_event_cb, s);
    if (s->o.ev == NULL) {
        free(s);
        return SY_ENOMEM;
    }
    s->next = dk->sends;
    if (dk->sends != NULL)
        dk->sends->prev = s;
    dk->sends = s;

    if (dk->conn == DEST_KAFKA_DOWN || dk->conn == DEST_KAFKA_FATAL || dk->rk == NULL) {
        char why[DEST_KAFKA_ERRLEN + 32];

        /* Fail fast, but through the event: DONE never runs inside dest_send(). */
        snprintf(why, sizeof(why), "not connected: %s", dk->reason);
        dest_util_outcome_settle(&s->o, SY_EIO, why);
        return 0;
    }

    if (msg->n_attrs > 0) {
        hdrs = rd_kafka_headers_new(msg->n_attrs);
        if (hdrs == NULL)
            goto fail_nomem;
        for (size_t i = 0; i < msg->n_attrs; i++) {
            if (rd_kafka_header_add(hdrs, msg->attrs[i].name, -1, msg->attrs[i].value, -1) !=
                RD_KAFKA_RESP_ERR_NO_ERROR)
                goto fail_nomem;
        }
    }
    /* F_COPY: librdkafka copies the value (the key and the headers are always its own);
     * producev() takes HDRS only when it succeeds. */
    kerr = rd_kafka_producev(dk->rk, RD_KAFKA_V_TOPIC(dk->topic),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, key_len),
                             RD_KAFKA_V_VALUE((void *)msg->body, msg->len),
                             RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(s), RD_KAFKA_V_END);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_warn("%s produce failed: %s", dk->scope, rd_kafka_err2str(kerr));
        if (hdrs != NULL)
            rd_kafka_headers_destroy(hdrs);
        send_free(s);
        dk->dst.failures++;
        return kafka_err_to_sy(kerr);
    }
    s->in_rdkafka = true;
    tv = evhelp_tv_ms(DEST_SEND_TIMEOUT_MS);
    evtimer_add(s->o.ev, &tv);
    return 0;

fail_nomem:
    if (hdrs != NULL)
        rd_kafka_headers_destroy(hdrs);
    send_free(s);
    return SY_ENOMEM;
}

static const char *kafka_state(const struct dest *d)
{
    struct dest_kafka *dk = (struct dest_kafka *)d;

    switch (dk->conn) {
    case DEST_KAFKA_CONNECTING:
        return "connecting";
    case DEST_KAFKA_CONNECTED:
        return "connected";
    case DEST_KAFKA_DOWN:
        return dest_util_state_reason(dk->state_buf, sizeof(dk->state_buf), "reconnecting",
                                      dk->reason);
    case DEST_KAFKA_FATAL:
    default:
        if (dk->rk == NULL) /* retired: a new producer after the backoff */
            return dest_util_state_retry(dk->state_buf, sizeof(dk->state_buf),
                                         dk->recreate_at_ms - dest_util_now_ms(), dk->reason);
        return dest_util_state_reason(dk->state_buf, sizeof(dk->state_buf), "failed", dk->reason);
    }
}

/*
 * Mark DK closed (callbacks re-arm nothing from here on), purge what librdkafka still holds,
 * collect the purged reports, wait briefly for in-flight requests, destroy the producer; then
 * DONE(SY_ECANCELED) for every send not reported yet. Tolerates a half-built DK (create's
 * failure path).
 */
static void kafka_destroy(struct dest *d)
{
    struct dest_kafka *dk = (struct dest_kafka *)d;
    struct dest_kafka_send *s;

    if (dk == NULL || dk->closed)
        return;
    dk->closed = true;
    evhelp_free(&dk->ev_recover);
    if (dk->rk != NULL) {
        /* Purged messages get reports with __PURGE_QUEUE / __PURGE_INFLIGHT, which settle
         * their sends as SY_ECANCELED; reports of messages acknowledged meanwhile settle them
         * as delivered. rd_kafka_flush() serves the main queue too. */
        rd_kafka_purge(dk->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        kafka_serve(dk);
        rd_kafka_flush(dk->rk, DEST_KAFKA_CLOSE_FLUSH_MS);
        if (dk->mainq != NULL) {
            rd_kafka_queue_io_event_enable(dk->mainq, -1, NULL, 0);
            rd_kafka_queue_destroy(dk->mainq);
            dk->mainq = NULL;
        }
        /* Its queue is gone and every send was purged: nothing of ours is left in it. With a
         * broker that went away, rd_kafka_destroy() can block for seconds: not on the loop. */
        detach_run("sy-kafka-close", producer_destroy, dk->rk);
        dk->rk = NULL;
    }
    evhelp_free(&dk->ev_wake);
    evhelp_free(&dk->ev_tick);
    if (dk->wake_rd >= 0)
        close(dk->wake_rd);
    if (dk->wake_wr >= 0)
        close(dk->wake_wr);

    /* No librdkafka any more: every remaining send is ours alone. Report the ones not
     * reported yet (a send whose success report already arrived stays a success). */
    while ((s = dk->sends) != NULL)
        dest_util_outcome_close(&dk->dst, &s->o, send_free_v, s);
    dk->magic = 0;
    free(dk->topic);
    free(dk->servers);
    free(dk->scope);
    free(dk->dst.uri);
    free(dk);
}

const struct dest_ops dest_kafka_ops = {
    .scheme = "kafka",
    .keyed = 1,
    .create = kafka_create,
    .send = kafka_send,
    .state = kafka_state,
    .destroy = kafka_destroy,
};
