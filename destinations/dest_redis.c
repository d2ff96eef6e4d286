/*
 * destinations/dest_redis.c - the Redis destinations:
 *   redis://HOST:PORT/list/KEY     RPUSH KEY <dest_envelope()>
 *   redis://HOST:PORT/stream/KEY   XADD KEY * body <json> [NAME VALUE]... (one field per attribute)
 *
 * One hiredis 0.14 async connection per destination, attached to the loop with hiredis's
 * libevent adapter. hiredis 0.14 has no timeouts of its own, so this file keeps them: a connect
 * timer (DEST_REDIS_CONNECT_TIMEOUT_MS, lookup + TCP connect) and one timer per send
 * (DEST_SEND_TIMEOUT_MS). When a send times out the connection is dropped: every command still
 * on it fails and a new connection is made. A lost connection is re-made on its own with
 * backoff (100 ms doubling to 5 s); meanwhile sends fail fast with "not connected: <reason>".
 * Sends made while a TCP connect is in progress are queued in hiredis and go out once it
 * connects (bounded by the connect timeout); while a host name is being looked up, or while
 * waiting to retry, they fail fast.
 *
 * Host names are looked up on a short-lived detached thread (resolve_start(), it
 * blocks; the loop must not), which hands the address back to the loop. Numeric addresses need
 * no lookup.
 *
 * hiredis rules this file relies on (0.14.1, async.c):
 *   - Every command queued with redisAsyncCommandArgv() gets its callback exactly once: with
 *     the reply, or with a NULL reply when the context is freed (error, or redisAsyncFree()).
 *     The reply is freed by hiredis after the callback returns.
 *   - redisAsyncFree() called from outside any hiredis callback frees at once: the pending
 *     callbacks run (NULL reply), then onDisconnect if the context had connected.
 *   - After onConnect(REDIS_ERR) and inside onDisconnect, hiredis frees the context itself as
 *     soon as the callback returns: we only forget our pointer there.
 *   - redisAsyncFree() must not be called from inside a hiredis callback (the connect callback
 *     is not protected against it). We never do: hiredis callbacks only record results and move
 *     sends between our lists. DONE runs later, from the done queue's event, on a clean stack.
 *
 * Ownership: a send (struct dest_redis_send) is on exactly one list. On `pending` it is also
 * hiredis's privdata, and only the hiredis callback takes it off; on the done queue (dr->dq) it
 * waits for DONE, after which it is freed.
 */
#include "dest.h"
#include "dest_int.h"

#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <event2/http.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "core/log.h"
#include "core/time.h"

#define DEST_REDIS_MAGIC 0x52454449u      /* "REDI" */
#define DEST_REDIS_SEND_MAGIC 0x5253534eu /* "RSSN" */

/* Lookup plus TCP connect; hiredis 0.14 would wait for the kernel's (minutes). */
#define DEST_REDIS_CONNECT_TIMEOUT_MS 5000
/* Reconnect backoff: first retry after BACKOFF_MIN_MS, doubling up to BACKOFF_MAX_MS. */
#define DEST_REDIS_BACKOFF_MIN_MS 100
#define DEST_REDIS_BACKOFF_MAX_MS 5000
/* Sends waiting for a reply beyond this fail with SY_EBUSY rather than queue without bound. */
#define DEST_REDIS_MAX_PENDING 10000

/* Our own invariant (kept in release builds): what a library hands back as `void *` is ours. */
#define DEST_REDIS_CHECK(p, m)                                                                     \
    do {                                                                                           \
        if ((p) == NULL || (p)->magic != (m)) {                                                    \
            log_err("[dest:redis] %s:%d: bad magic", __FILE__, __LINE__);                          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct dest_redis;

struct dest_redis_send {
    unsigned magic;
    TAILQ_ENTRY(dest_redis_send) link; /* on dr->pending (else on dr->dq) */
    struct dest_redis *dr;
    struct dest_util_send u; /* DONE and the result */
    struct event *timer;     /* owned; armed while pending */
    bool timed_out;          /* its timer fired: it fails with SY_ETIMEDOUT */
};

TAILQ_HEAD(dest_redis_sendq, dest_redis_send);

enum dest_redis_conn {
    CONN_BACKOFF,    /* waiting for retry_ev; sends fail fast */
    CONN_LOOKUP,     /* host name lookup in progress; sends fail fast */
    CONN_CONNECTING, /* TCP connect in progress; sends queue in hiredis */
    CONN_UP,         /* connected */
    CONN_CLOSED,     /* dest_destroy() has started */
};

struct dest_redis {
    struct dest base; /* first: dest.c casts */
    unsigned magic;
    struct event_base *evb; /* borrowed */
    char *host;             /* owned; without brackets for IPv6 */
    int port;
    bool stream; /* XADD rather than RPUSH */
    char *key;   /* owned; percent-decoded */
    size_t key_len;

    enum dest_redis_conn conn;
    redisAsyncContext *ac;       /* the connection, or NULL; hiredis owns it, we free it */
    struct resolve *lookup;      /* the lookup in progress, or NULL */
    struct event *connect_timer; /* owned; armed while CONN_LOOKUP / CONN_CONNECTING */
    struct event *retry_timer;   /* owned; armed while CONN_BACKOFF */
    int backoff_ms;              /* the next backoff */
    uint64_t retry_at_us;        /* time_mono_us() when retry_timer fires */
    uint64_t up_since_us;        /* time_mono_us() of the last successful connect */
    char drop_reason[512];       /* why we freed ac ourselves (for its pending sends) */
    char last_err[512];          /* why the last connection attempt or connection failed */
    bool ever_up;

    struct dest_redis_sendq pending; /* queued in hiredis, no reply yet */
    size_t n_pending;
    struct dest_util_doneq dq; /* result known, DONE not called yet; dq.ev runs DONE */
    char state_buf[600];
};

static void redis_connect(struct dest_redis *dr);

/* ---------------------------------------------------------------------------------------- */
/* Sends and completions                                                                    */

static void send_free(struct dest_redis_send *s)
{
    if (s->timer != NULL)
        event_free(s->timer);
    s->magic = 0;
    free(s);
}

static void send_free_u(struct dest_util_send *us)
{
    send_free(DEST_UTIL_CONTAINER(us, struct dest_redis_send, u));
}

/*
 * Give S its result and queue it for DONE (it must be on no list). Safe anywhere on the loop,
 * including inside hiredis callbacks: DONE itself runs from dq.ev.
 */
static void send_complete(struct dest_redis *dr, struct dest_redis_send *s, int rc, const char *fmt,
                          ...) __attribute__((format(printf, 4, 5)));
static void send_complete(struct dest_redis *dr, struct dest_redis_send *s, int rc, const char *fmt,
                          ...)
{
    va_list ap;

    if (s->timer != NULL)
        event_del(s->timer);
    va_start(ap, fmt);
    dest_util_doneq_vpush(&dr->dq, &s->u, rc, fmt, ap);
    va_end(ap);
}

static void dest_redis_free(struct dest_redis *dr);

/*
 * dq.ev: DONE for the sends completed so far. DONE may destroy the destination: we stop, and
 * the outermost frame frees it.
 */
static void run_completions(evutil_socket_t fd, short what, void *arg)
{
    struct dest_redis *dr = arg;

    DEST_REDIS_CHECK(dr, DEST_REDIS_MAGIC);
    if (dest_util_doneq_run(&dr->dq))
        dest_redis_free(dr);
}

/* ---------------------------------------------------------------------------------------- */
/* Connection                                                                               */

/*
 * Free our connection on purpose (timeout, destroy), REASON going to the sends still on it.
 * Must not run inside a hiredis callback (see the file comment); it never does.
 */
static void drop_connection(struct dest_redis *dr, const char *reason)
{
    redisAsyncContext *ac = dr->ac;

    if (ac == NULL)
        return;
    dr->ac = NULL;
    ac->data = NULL; /* tells on_connect/on_disconnect that this one is no longer ours */
    snprintf(dr->drop_reason, sizeof(dr->drop_reason), "%s", reason);
    /* Runs reply_cb(NULL) for every pending send: all of them complete here. */
    redisAsyncFree(ac);
}

/*
 * The attempt failed (or the connection was lost): remember why, and retry after the backoff.
 * REASON is logged when it differs from the previous one (not on every retry of an outage).
 */
static void schedule_reconnect(struct dest_redis *dr, const char *reason)
{
    int delay = dest_util_backoff_next(&dr->backoff_ms, DEST_REDIS_BACKOFF_MAX_MS);
    struct timeval tv = evhelp_tv_ms(delay);

    event_del(dr->connect_timer);
    resolve_cancel(dr->lookup);
    dr->lookup = NULL;
    if (strcmp(reason, dr->last_err) != 0)
        log_warn("[dest:%s] %s; reconnecting in %d ms (then backing off up to %d ms)", dr->base.uri,
                 reason, delay, DEST_REDIS_BACKOFF_MAX_MS);
    snprintf(dr->last_err, sizeof(dr->last_err), "%s", reason);
    dr->conn = CONN_BACKOFF;
    dr->retry_at_us = time_mono_us() + (uint64_t)delay * 1000;
    evtimer_add(dr->retry_timer, &tv);
}

/* One reply (or NULL: the context is going away) for the send in PRIVDATA. Inside hiredis. */
static void reply_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct dest_redis_send *s = privdata;
    struct dest_redis *dr = s->dr;
    redisReply *reply = r; /* borrowed: hiredis frees it after we return */

    DEST_REDIS_CHECK(s, DEST_REDIS_SEND_MAGIC);
    TAILQ_REMOVE(&dr->pending, s, link);
    dr->n_pending--;
    if (reply == NULL) {
        if (s->timed_out)
            send_complete(dr, s, SY_ETIMEDOUT, "no reply from redis within %d ms",
                          DEST_SEND_TIMEOUT_MS);
        else if (dr->conn == CONN_CLOSED)
            send_complete(dr, s, SY_ECANCELED, "destination closed");
        else if (ac->err != 0 && !(ac->c.flags & REDIS_CONNECTED))
            send_complete(dr, s, SY_EIO, "connect to %s:%d: %s", dr->host, dr->port, ac->errstr);
        else if (ac->err != 0)
            send_complete(dr, s, SY_EIO, "connection to %s:%d lost: %s", dr->host, dr->port,
                          ac->errstr);
        else
            send_complete(dr, s, SY_EIO, "connection dropped: %s", dr->drop_reason);
    } else {
        /* The server answers: the backoff starts over at the next outage. */
        dr->backoff_ms = DEST_REDIS_BACKOFF_MIN_MS;
        if (reply->type == REDIS_REPLY_ERROR)
            send_complete(dr, s, SY_EIO, "redis: %.*s", (int)reply->len, reply->str);
        else
            send_complete(dr, s, 0, NULL);
    }
}

/* hiredis: the TCP connect finished (or failed: then hiredis frees AC when we return). */
static void on_connect(const redisAsyncContext *ac, int status)
{
    struct dest_redis *dr = ac->data;
    char reason[512];

    if (dr == NULL) /* dropped by us meanwhile */
        return;
    DEST_REDIS_CHECK(dr, DEST_REDIS_MAGIC);
    if (status != REDIS_OK) {
        dr->ac = NULL;
        snprintf(reason, sizeof(reason), "connect to %s:%d: %s", dr->host, dr->port, ac->errstr);
        /* Its queued sends complete right after we return (reply_cb with NULL). */
        schedule_reconnect(dr, reason);
        return;
    }
    event_del(dr->connect_timer);
    dr->conn = CONN_UP;
    dr->up_since_us = time_mono_us();
    if (dr->last_err[0] != '\0' || !dr->ever_up)
        log_info("[dest:%s] connected to %s:%d", dr->base.uri, dr->host, dr->port);
    dr->last_err[0] = '\0';
    dr->ever_up = true;
}

/* hiredis: an established connection ended; hiredis frees AC when we return. */
static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct dest_redis *dr = ac->data;
    char reason[512];

    if (dr == NULL) /* freed by us (drop_connection): nothing to do */
        return;
    DEST_REDIS_CHECK(dr, DEST_REDIS_MAGIC);
    dr->ac = NULL;
    /* A connection that lived a while was a success: the backoff starts over. One dropped at
     * once (a server at maxclients, a proxy with no backend) keeps backing off. */
    if (time_mono_us() - dr->up_since_us >= (uint64_t)DEST_REDIS_BACKOFF_MAX_MS * 1000)
        dr->backoff_ms = DEST_REDIS_BACKOFF_MIN_MS;
    snprintf(reason, sizeof(reason), "connection to %s:%d lost: %s", dr->host, dr->port,
             status == REDIS_OK || ac->errstr[0] == '\0' ? "closed" : ac->errstr);
    schedule_reconnect(dr, reason);
}

/* Start the TCP connect to ADDR (numeric). Failures go to schedule_reconnect(). */
static void connect_addr(struct dest_redis *dr, const char *addr)
{
    redisAsyncContext *ac = redisAsyncConnect(addr, dr->port);
    char reason[512];

    if (ac == NULL) {
        schedule_reconnect(dr, "out of memory");
        return;
    }
    if (ac->err != 0) {
        /* Loopback refusals are reported at once. Nothing is queued on AC: free it here. */
        snprintf(reason, sizeof(reason), "connect to %s:%d: %s", dr->host, dr->port, ac->errstr);
        redisAsyncFree(ac);
        schedule_reconnect(dr, reason);
        return;
    }
    ac->data = dr;
    if (redisLibeventAttach(ac, dr->evb) != REDIS_OK) {
        redisAsyncFree(ac);
        schedule_reconnect(dr, "cannot attach the connection to the event loop");
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    dr->ac = ac;
    dr->conn = CONN_CONNECTING;
}

/* The lookup is over (on the loop). */
static void on_lookup_done(void *arg, int gai_rc, const char (*addrs)[INET6_ADDRSTRLEN],
                           int n_addrs)
{
    struct dest_redis *dr = arg;
    char reason[512];

    DEST_REDIS_CHECK(dr, DEST_REDIS_MAGIC);
    dr->lookup = NULL;
    if (gai_rc != 0) {
        snprintf(reason, sizeof(reason), "look up %s: %s", dr->host, gai_strerror(gai_rc));
        schedule_reconnect(dr, reason);
        return;
    }
    connect_addr(dr, addrs[0]);
}

/* Start a lookup of dr->host on a thread. Failures go to schedule_reconnect(). */
static void start_lookup(struct dest_redis *dr)
{
    int rc = resolve_start(dr->evb, dr->host, on_lookup_done, dr, &dr->lookup);

    if (rc != 0) {
        schedule_reconnect(dr, rc == SY_ENOMEM ? "out of memory"
                                               : "cannot start a thread for the host name lookup");
        return;
    }
    dr->conn = CONN_LOOKUP;
}

/* One connection attempt: lookup (if HOST is a name), then connect; bounded by connect_timer. */
static void redis_connect(struct dest_redis *dr)
{
    struct timeval tv = evhelp_tv_ms(DEST_REDIS_CONNECT_TIMEOUT_MS);

    evtimer_add(dr->connect_timer, &tv);
    if (dest_util_numeric_host(dr->host))
        connect_addr(dr, dr->host);
    else
        start_lookup(dr);
}

/* retry_timer: the backoff is over. */
static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct dest_redis *dr = arg;

    DEST_REDIS_CHECK(dr, DEST_REDIS_MAGIC);
    redis_connect(dr);
}

/* connect_timer: the lookup or the TCP connect took too long. */
static void on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct dest_redis *dr = arg;
    char reason[512];

    DEST_REDIS_CHECK(dr, DEST_REDIS_MAGIC);
    snprintf(reason, sizeof(reason), "connect to %s:%d timed out after %d ms", dr->host, dr->port,
             DEST_REDIS_CONNECT_TIMEOUT_MS);
    drop_connection(dr, reason); /* sends queued during the connect fail with REASON */
    schedule_reconnect(dr, reason);
}

/* A send's timer: no reply in time. The connection is presumed stuck: drop it, reconnect. */
static void on_send_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct dest_redis_send *s = arg;
    struct dest_redis *dr = s->dr;
    char reason[256];

    DEST_REDIS_CHECK(s, DEST_REDIS_SEND_MAGIC);
    s->timed_out = true;
    snprintf(reason, sizeof(reason), "a send got no reply within %d ms", DEST_SEND_TIMEOUT_MS);
    /* S and every other send on the connection complete inside (reply_cb with NULL). */
    drop_connection(dr, reason);
    dr->backoff_ms = DEST_REDIS_BACKOFF_MIN_MS;
    schedule_reconnect(dr, reason);
}

/* ---------------------------------------------------------------------------------------- */
/* The vtable                                                                               */

static int dest_redis_send(struct dest *d, const struct dest_msg *msg, dest_done_fn *done,
                           void *arg)
{
    struct dest_redis *dr = (struct dest_redis *)d;
    struct timeval tv = evhelp_tv_ms(DEST_SEND_TIMEOUT_MS);
    struct dest_redis_send *s;
    const char **argv = NULL;
    size_t *lens = NULL, env_len = 0;
    char *env = NULL;
    int argc, rc = SY_ENOMEM;

    DEST_REDIS_CHECK(dr, DEST_REDIS_MAGIC);
    if (dr->conn == CONN_CLOSED)
        return SY_ECLOSED;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return SY_ENOMEM;
    s->magic = DEST_REDIS_SEND_MAGIC;
    s->dr = dr;
    s->u.done = done;
    s->u.arg = arg;
    /* Fail fast while there is no connection to queue on (DONE comes from dq.ev). */
    if (dr->ac == NULL) {
        send_complete(dr, s, SY_EIO, "not connected: %s",
                      dr->conn == CONN_LOOKUP   ? "looking up the host name"
                      : dr->last_err[0] != '\0' ? dr->last_err
                                                : "connecting");
        return 0;
    }
    if (dr->n_pending >= DEST_REDIS_MAX_PENDING) {
        send_complete(dr, s, SY_EBUSY, "%d sends already waiting for redis",
                      DEST_REDIS_MAX_PENDING);
        return 0;
    }
    s->timer = evtimer_new(dr->evb, on_send_timeout, s);
    if (s->timer == NULL)
        goto out_free;

    /* The command: hiredis copies every argument into its output buffer before returning. */
    if (dr->stream) {
        argc = 5 + 2 * (int)msg->n_attrs;
    } else {
        env = dest_envelope(msg, &env_len); /* owned here, freed below */
        if (env == NULL)
            goto out_free;
        argc = 3;
    }
    argv = calloc((size_t)argc, sizeof(*argv));
    lens = calloc((size_t)argc, sizeof(*lens));
    if (argv == NULL || lens == NULL)
        goto out_free;
#define ARG(i, str, len) (argv[(i)] = (str), lens[(i)] = (len))
    if (dr->stream) {
        ARG(0, "XADD", 4);
        ARG(1, dr->key, dr->key_len);
        ARG(2, "*", 1);
        ARG(3, "body", 4);
        ARG(4, msg->body, msg->len);
        for (size_t i = 0; i < msg->n_attrs; i++) {
            const struct dest_attr *a = &msg->attrs[i];

            ARG(5 + 2 * i, a->name, strlen(a->name));
            ARG(6 + 2 * i, a->value, strlen(a->value));
        }
    } else {
        ARG(0, "RPUSH", 5);
        ARG(1, dr->key, dr->key_len);
        ARG(2, env, env_len);
    }
#undef ARG

    TAILQ_INSERT_TAIL(&dr->pending, s, link);
    dr->n_pending++;
    if (redisAsyncCommandArgv(dr->ac, reply_cb, s, argc, argv, lens) != REDIS_OK) {
        /* Refused (the context is disconnecting): no callback will come for S. */
        TAILQ_REMOVE(&dr->pending, s, link);
        dr->n_pending--;
        send_complete(dr, s, SY_EIO, "not connected: the connection is closing");
    } else {
        evtimer_add(s->timer, &tv);
    }
    rc = 0;
    goto out;

out_free:
    send_free(s);
out:
    free(argv);
    free(lens);
    free(env);
    return rc;
}

static const char *dest_redis_state(const struct dest *d)
{
    /* The state buffer is ours to write even through a const handle. */
    struct dest_redis *dr = (struct dest_redis *)d;
    uint64_t now = time_mono_us();

    switch (dr->conn) {
    case CONN_UP:
        return "connected";
    case CONN_CLOSED:
        return "closed";
    case CONN_LOOKUP:
    case CONN_CONNECTING:
        if (dr->last_err[0] == '\0')
            return "connecting";
        snprintf(dr->state_buf, sizeof(dr->state_buf), "connecting (last error: %s)", dr->last_err);
        return dr->state_buf;
    case CONN_BACKOFF:
        return dest_util_state_retry(
            dr->state_buf, sizeof(dr->state_buf),
            dr->retry_at_us > now ? (int64_t)((dr->retry_at_us - now) / 1000) : 0, dr->last_err);
    }
    return "unknown";
}

/* Free DF's memory and events. No connection, lookup or send may be left. */
static void dest_redis_free(struct dest_redis *dr)
{
    if (dr->connect_timer != NULL)
        event_free(dr->connect_timer);
    if (dr->retry_timer != NULL)
        event_free(dr->retry_timer);
    dest_util_doneq_fini(&dr->dq);
    free(dr->host);
    free(dr->key);
    free(dr->base.uri);
    dr->magic = 0;
    free(dr);
}

/*
 * Parse redis://HOST[:PORT]/list|stream/KEY into DR. Returns 0, or -1 with ERR filled. The
 * config checks URIs already; this is the last line.
 */
static int parse_uri(struct dest_redis *dr, const char *uri, struct sy_error *err)
{
    const char *p = uri + strlen("redis://"), *host, *path;
    size_t host_len;

    if (strncmp(uri, "redis://", 8) != 0)
        goto bad;
    if (*p == '[') { /* [IPv6] */
        host = p + 1;
        p = strchr(host, ']');
        if (p == NULL)
            goto bad;
        host_len = (size_t)(p - host);
        p++;
    } else {
        host = p;
        host_len = strcspn(p, ":/");
        p += host_len;
    }
    if (host_len == 0)
        goto bad;
    dr->port = 6379;
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);

        if (end == p + 1 || port <= 0 || port > 65535)
            goto bad;
        dr->port = (int)port;
        p = end;
    }
    if (strncmp(p, "/list/", 6) == 0) {
        path = p + 6;
    } else if (strncmp(p, "/stream/", 8) == 0) {
        path = p + 8;
        dr->stream = true;
    } else {
        goto bad;
    }
    if (*path == '\0')
        goto bad;
    dr->host = strndup(host, host_len);
    dr->key = evhttp_uridecode(path, 0, &dr->key_len); /* "%2F" in a key is a '/' */
    if (dr->host == NULL || dr->key == NULL) {
        sy_error_set(err, "%s: out of memory", uri);
        return -1;
    }
    return 0;
bad:
    sy_error_set(err,
                 "%s: not a redis destination (redis://HOST:PORT/list/KEY or "
                 "redis://HOST:PORT/stream/KEY)",
                 uri);
    return -1;
}

static int dest_redis_create(struct event_base *base, const char *uri, struct dest **out,
                             struct sy_error *err)
{
    struct dest_redis *dr = calloc(1, sizeof(*dr));

    *out = NULL;
    if (dr == NULL) {
        sy_error_set(err, "%s: out of memory", uri);
        return SY_ENOMEM;
    }
    dr->magic = DEST_REDIS_MAGIC;
    dr->base.ops = &dest_redis_ops;
    dr->evb = base;
    dr->backoff_ms = DEST_REDIS_BACKOFF_MIN_MS;
    TAILQ_INIT(&dr->pending);
    dest_util_doneq_init(&dr->dq, &dr->base, send_free_u);
    if (parse_uri(dr, uri, err) != 0) {
        dest_redis_free(dr);
        return SY_EINVAL;
    }
    dr->base.uri = strdup(uri);
    dr->connect_timer = evtimer_new(base, on_connect_timeout, dr);
    dr->retry_timer = evtimer_new(base, on_retry, dr);
    dr->dq.ev = event_new(base, -1, 0, run_completions, dr);
    if (dr->base.uri == NULL || dr->connect_timer == NULL || dr->retry_timer == NULL ||
        dr->dq.ev == NULL) {
        sy_error_set(err, "%s: out of memory", uri);
        dest_redis_free(dr);
        return SY_ENOMEM;
    }
    /* Connecting goes on in the background; a refused connect already schedules the retry. */
    redis_connect(dr);
    *out = &dr->base;
    return 0;
}

/*
 * Stop everything (timers, lookup, connection), then DONE for every send: those still waiting
 * for redis get SY_ECANCELED, those already answered get their answer. Called from inside
 * DONE, the memory is freed when the outermost run_completions() unwinds.
 */
static void dest_redis_destroy(struct dest *d)
{
    struct dest_redis *dr = (struct dest_redis *)d;
    struct dest_redis_send *s;

    DEST_REDIS_CHECK(dr, DEST_REDIS_MAGIC);
    if (dr->conn == CONN_CLOSED)
        return;
    dr->conn = CONN_CLOSED;
    event_del(dr->connect_timer);
    event_del(dr->retry_timer);
    resolve_cancel(dr->lookup); /* the thread finishes on its own and frees it */
    dr->lookup = NULL;
    drop_connection(dr, "destination closed");        /* pending sends -> completed, SY_ECANCELED */
    while ((s = TAILQ_FIRST(&dr->pending)) != NULL) { /* cannot happen; never leak one */
        TAILQ_REMOVE(&dr->pending, s, link);
        dr->n_pending--;
        send_complete(dr, s, SY_ECANCELED, "destination closed");
    }
    if (dest_util_doneq_close(&dr->dq))
        dest_redis_free(dr);
}

const struct dest_ops dest_redis_ops = {
    .scheme = "redis",
    .create = dest_redis_create,
    .send = dest_redis_send,
    .state = dest_redis_state,
    .destroy = dest_redis_destroy,
};
