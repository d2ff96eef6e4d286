/*
 * destinations/dest_http.c - the HTTP destinations, `http://...` and `https://...`: one POST of
 * the body (Content-Type: application/json) per message, with the headers
 *   X-Sy-Message-Key: <key>
 *   X-Sy-Attribute-<Name>: <value>     one per attribute (CR/LF removed, cut at 1 KB)
 * A 2xx status acknowledges the message; any other status fails it with "HTTP <code> ...", and
 * so does anything that is not an HTTP response (connection refused, TLS failure, garbage).
 *
 * libevent's evhttp client does the HTTP. One keep-alive connection per destination carries
 * the requests (evhttp sends them one after the other). After a transport error, or when the
 * peer closes, the connection is retired and a new one is made for the next send: a bufferevent
 * over TLS cannot reconnect once its session is over. For https the bufferevent is
 * bufferevent_openssl over an SSL_CTX with the system's trust store, SNI, and host name (or IP)
 * verification through X509_VERIFY_PARAM.
 *
 * Bounds: evhttp_connection_set_timeout_tv() bounds connect, read and write; each send also has
 * its own DEST_SEND_TIMEOUT_MS timer, which drops the connection the send is on (its other
 * sends fail too) so that a queue behind a stuck request cannot outlive the contract. After a
 * transport failure the destination is "down" for a backoff (100 ms doubling to 5 s), during
 * which sends fail fast with "not connected: <reason>"; the first send after it tries again.
 *
 * Host names are looked up on a short-lived detached thread (resolve_start(), it
 * blocks; the loop must not) which hands the address back to the loop. evhttp then connects to the
 * numeric address, while Host, SNI and certificate checks use the name. Sends made during a lookup
 * wait for it.
 *
 * Ownership. A send (struct dest_http_send) is on exactly one list: `waiting` (its request is
 * built and owned by the send), `inflight` (the request was handed to evhttp, which frees it;
 * s->conn is the connection) or the done queue dh->dq (waiting for DONE, then freed). evhttp
 * callbacks only record results and move sends; connections are freed (evhttp_connection_free,
 * which frees their requests without calling back) only from our own timer, dq.ev or destroy,
 * never from inside an evhttp callback. DONE runs from dq.ev on a clean stack.
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

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/log.h"
#include "core/time.h"

#define DEST_HTTP_MAGIC 0x48545450u      /* "HTTP" */
#define DEST_HTTP_SEND_MAGIC 0x4853534eu /* "HSSN" */
#define DEST_HTTP_CONN_MAGIC 0x48434f4eu /* "HCON" */

/* Backoff after a transport failure: BACKOFF_MIN_MS doubling up to BACKOFF_MAX_MS. */
#define DEST_HTTP_BACKOFF_MIN_MS 100
#define DEST_HTTP_BACKOFF_MAX_MS 5000
/* Sends in flight beyond this fail with SY_EBUSY rather than queue without bound. */
#define DEST_HTTP_MAX_PENDING 10000
/* An attribute or key header value is cut at this many bytes. */
#define DEST_HTTP_HEADER_VALUE_MAX 1024
/* We read the status; the body is only bounded. */
#define DEST_HTTP_MAX_RESPONSE_BODY (1024 * 1024)
#define DEST_HTTP_MAX_RESPONSE_HEADERS (64 * 1024)

/* Our own invariant (kept in release builds): what a library hands back as `void *` is ours. */
#define DEST_HTTP_CHECK(p, m)                                                                      \
    do {                                                                                           \
        if ((p) == NULL || (p)->magic != (m)) {                                                    \
            log_err("[dest:http] %s:%d: bad magic", __FILE__, __LINE__);                           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct dest_http;

/* One evhttp connection. Owned by the destination (dh->conn or dh->retired). */
struct dest_http_conn {
    unsigned magic;
    TAILQ_ENTRY(dest_http_conn) link; /* on dh->retired */
    struct dest_http *dh;
    struct evhttp_connection *evcon; /* owned */
    int n_inflight;                  /* sends whose request is on this connection */
    bool retired;                    /* no new requests; freed once n_inflight is 0 */
    bool freeing;                    /* inside evhttp_connection_free(): ignore the close cb */
    char tls_err[256];               /* the TLS failure, once known */
};

struct dest_http_send {
    unsigned magic;
    TAILQ_ENTRY(dest_http_send) link; /* on dh->waiting or dh->inflight (else on dh->dq) */
    struct dest_http *dh;
    struct dest_util_send u;     /* DONE and the result */
    struct evhttp_request *req;  /* owned while waiting; evhttp's once made */
    struct dest_http_conn *conn; /* while in flight */
    struct event *timer;         /* owned */
    int req_error;               /* enum evhttp_request_error + 1 from the error cb; 0: none */
    uint64_t started_us;         /* time_mono_us() at dest_send() */
    bool timed_out;
};

TAILQ_HEAD(dest_http_sendq, dest_http_send);
TAILQ_HEAD(dest_http_connq, dest_http_conn);

struct dest_http {
    struct dest base; /* first: dest.c casts */
    unsigned magic;
    struct event_base *evb; /* borrowed */
    bool tls;
    bool numeric_host;
    char *host; /* owned; without brackets */
    int port;
    char *path;       /* owned; path?query, at least "/" */
    char *host_hdr;   /* owned; the Host header */
    SSL_CTX *ssl_ctx; /* owned; https only */

    char addr[INET6_ADDRSTRLEN]; /* the numeric address to connect to; "" when unknown */
    struct resolve *lookup;
    struct dest_http_conn *conn;    /* the connection new requests go to, or NULL */
    struct dest_http_connq retired; /* connections draining their last requests */

    int backoff_ms;       /* the next backoff */
    uint64_t retry_at_us; /* time_mono_us() before which sends fail fast; 0: not down */
    char last_err[512];   /* the last transport failure; "" after a success */
    bool closed;

    struct dest_http_sendq waiting, inflight;
    size_t n_pending;          /* waiting + inflight */
    struct dest_util_doneq dq; /* result known, DONE not called yet; dq.ev also reaps retired
                                  connections */
    char state_buf[600];
};

/* ---------------------------------------------------------------------------------------- */
/* Sends and completions                                                                    */

static void send_free(struct dest_http_send *s)
{
    if (s->timer != NULL)
        event_free(s->timer);
    if (s->req != NULL) /* never handed to evhttp */
        evhttp_request_free(s->req);
    s->magic = 0;
    free(s);
}

static void send_free_u(struct dest_util_send *us)
{
    send_free(DEST_UTIL_CONTAINER(us, struct dest_http_send, u));
}

/* Give S (on no list) its result and queue it for DONE. Safe inside evhttp callbacks. */
static void send_complete(struct dest_http *dh, struct dest_http_send *s, int rc, const char *fmt,
                          ...) __attribute__((format(printf, 4, 5)));
static void send_complete(struct dest_http *dh, struct dest_http_send *s, int rc, const char *fmt,
                          ...)
{
    va_list ap;

    if (s->timer != NULL)
        event_del(s->timer);
    va_start(ap, fmt);
    dest_util_doneq_vpush(&dh->dq, &s->u, rc, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------------------------------- */
/* Connections                                                                              */

/* Stop sending new requests to C; it is freed once its last request is done. */
static void conn_retire(struct dest_http *dh, struct dest_http_conn *c)
{
    if (c->retired)
        return;
    c->retired = true;
    if (dh->conn == c)
        dh->conn = NULL;
    TAILQ_INSERT_TAIL(&dh->retired, c, link);
    event_active(dh->dq.ev, EV_READ, 0); /* to reap it */
}

/*
 * Free C now; sends still on it fail (a timed-out one with SY_ETIMEDOUT, the others with
 * REASON, or SY_ECANCELED when the destination is closing). Never inside an evhttp callback.
 */
static void conn_drop(struct dest_http *dh, struct dest_http_conn *c, const char *reason)
{
    struct dest_http_send *s, *next;

    conn_retire(dh, c);
    TAILQ_REMOVE(&dh->retired, c, link);
    /* Frees the requests still queued on it without calling their callbacks. */
    c->freeing = true;
    evhttp_connection_free(c->evcon);
    c->evcon = NULL;
    for (s = TAILQ_FIRST(&dh->inflight); s != NULL; s = next) {
        next = TAILQ_NEXT(s, link);
        if (s->conn != c)
            continue;
        TAILQ_REMOVE(&dh->inflight, s, link);
        dh->n_pending--;
        s->conn = NULL;
        if (dh->closed)
            send_complete(dh, s, SY_ECANCELED, "destination closed");
        else if (s->timed_out)
            send_complete(dh, s, SY_ETIMEDOUT, "no response within %d ms", DEST_SEND_TIMEOUT_MS);
        else
            send_complete(dh, s, SY_EIO, "connection dropped: %s", reason);
    }
    c->magic = 0;
    free(c);
}

/* evhttp: C's socket closed (peer, error, or our free). Inside evhttp. */
static void on_conn_close(struct evhttp_connection *evcon, void *arg)
{
    struct dest_http_conn *c = arg;

    DEST_HTTP_CHECK(c, DEST_HTTP_CONN_MAGIC);
    if (!c->freeing)
        conn_retire(c->dh, c);
}

/* A new connection to dh->addr, or NULL (out of memory, TLS setup). */
static struct dest_http_conn *conn_new(struct dest_http *dh)
{
    struct timeval tv = evhelp_tv_ms(DEST_SEND_TIMEOUT_MS);
    struct dest_http_conn *c = calloc(1, sizeof(*c));
    struct bufferevent *bev = NULL;
    SSL *ssl = NULL;

    if (c == NULL)
        return NULL;
    c->magic = DEST_HTTP_CONN_MAGIC;
    c->dh = dh;
    if (dh->tls) {
        X509_VERIFY_PARAM *param;

        ssl = SSL_new(dh->ssl_ctx);
        if (ssl == NULL)
            goto fail;
        param = SSL_get0_param(ssl);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (dh->numeric_host) {
            if (X509_VERIFY_PARAM_set1_ip_asc(param, dh->host) != 1)
                goto fail;
        } else if (SSL_set_tlsext_host_name(ssl, dh->host) != 1 ||
                   X509_VERIFY_PARAM_set1_host(param, dh->host, 0) != 1) {
            goto fail;
        }
        SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
        /* Takes SSL (freed with the bufferevent, which evhttp frees with the connection). */
        bev = bufferevent_openssl_socket_new(dh->evb, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                             BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
        if (bev == NULL)
            goto fail;
        ssl = NULL;
        /* Many servers close without close_notify; the response is complete by then. */
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    }
    /* A numeric address and no DNS base: evhttp's connect never blocks on a lookup. */
    c->evcon = evhttp_connection_base_bufferevent_new(dh->evb, NULL, bev, dh->addr,
                                                      (unsigned short)dh->port);
    if (c->evcon == NULL)
        goto fail;
    bev = NULL; /* the connection owns it now */
    evhttp_connection_set_timeout_tv(c->evcon, &tv);
    evhttp_connection_set_retries(c->evcon, 0);
    evhttp_connection_set_max_body_size(c->evcon, DEST_HTTP_MAX_RESPONSE_BODY);
    evhttp_connection_set_max_headers_size(c->evcon, DEST_HTTP_MAX_RESPONSE_HEADERS);
    evhttp_connection_set_closecb(c->evcon, on_conn_close, c);
    return c;

fail:
    if (bev != NULL)
        bufferevent_free(bev);
    SSL_free(ssl);
    free(c);
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Requests                                                                                 */

/* evhttp: the request of ARG failed before a response; KIND says how. Inside evhttp. */
static void on_request_error(enum evhttp_request_error kind, void *arg)
{
    struct dest_http_send *s = arg;

    DEST_HTTP_CHECK(s, DEST_HTTP_SEND_MAGIC);
    s->req_error = (int)kind + 1;
}

/*
 * Why the request of S on C got no response, into OUT. CONNECT_FAILED: evhttp's connect-failure
 * path called back (a request but no error kind). evhttp does not keep the socket error there
 * (errno is clobbered by its cleanup), so the text is generic. TLS details come from the
 * bufferevent's OpenSSL error queue and the verify result.
 */
static void transport_error(struct dest_http *dh, struct dest_http_conn *c,
                            const struct dest_http_send *s, bool connect_failed, char *out,
                            size_t n)
{
    struct bufferevent *bev = c->evcon != NULL ? evhttp_connection_get_bufferevent(c->evcon) : NULL;
    SSL *ssl = dh->tls && bev != NULL ? bufferevent_openssl_get_ssl(bev) : NULL;
    unsigned long ossl, first = 0;
    const char *what = NULL;

    /* Drain the TLS error queue (kept per bufferevent) either way; keep its first TLS error.
     * Library 0 entries are bufferevent_openssl's note of a socket error, not TLS's. */
    while (ssl != NULL && (ossl = bufferevent_get_openssl_error(bev)) != 0) {
        if (first == 0 && ERR_GET_LIB(ossl) != 0)
            first = ossl;
    }
    if (connect_failed) {
        if (time_mono_us() - s->started_us >= (uint64_t)DEST_SEND_TIMEOUT_MS * 1000)
            snprintf(out, n, "connect to %s:%d timed out after %d ms", dh->host, dh->port,
                     DEST_SEND_TIMEOUT_MS);
        else
            snprintf(out, n, "connect to %s:%d failed (refused or unreachable)", dh->host,
                     dh->port);
        return;
    }
    switch (s->req_error - 1) {
    case EVREQ_HTTP_TIMEOUT:
        what = "timed out";
        break;
    case EVREQ_HTTP_EOF:
        what = "connection closed before a complete response";
        break;
    case EVREQ_HTTP_INVALID_HEADER:
        what = "invalid response (not HTTP)";
        break;
    case EVREQ_HTTP_BUFFER_ERROR:
        what = "I/O error";
        break;
    case EVREQ_HTTP_DATA_TOO_LONG:
        what = "response too large";
        break;
    default:
        what = "no response";
        break;
    }
    if (ssl != NULL && c->tls_err[0] == '\0') {
        long verify = SSL_get_verify_result(ssl);

        if (verify != X509_V_OK)
            snprintf(c->tls_err, sizeof(c->tls_err), "certificate verify failed: %s",
                     X509_verify_cert_error_string(verify));
        else if (first != 0)
            ERR_error_string_n(first, c->tls_err, sizeof(c->tls_err));
        else if (!SSL_is_init_finished(ssl))
            snprintf(c->tls_err, sizeof(c->tls_err), "%s", what);
    }
    if (c->tls_err[0] != '\0')
        snprintf(out, n, "TLS handshake with %s:%d failed: %s", dh->host, dh->port, c->tls_err);
    else
        snprintf(out, n, "POST to %s:%d: %s", dh->host, dh->port, what);
}

/* A transport failure: the destination is down for a backoff. */
static void mark_down(struct dest_http *dh, const char *reason)
{
    int delay = dest_util_backoff_next(&dh->backoff_ms, DEST_HTTP_BACKOFF_MAX_MS);

    if (strcmp(reason, dh->last_err) != 0)
        log_warn("[dest:%s] %s; sends fail for %d ms, then the next one tries again", dh->base.uri,
                 reason, delay);
    snprintf(dh->last_err, sizeof(dh->last_err), "%s", reason);
    dh->retry_at_us = time_mono_us() + (uint64_t)delay * 1000;
    /* The address may have moved: look it up again next time. */
    if (!dh->numeric_host)
        dh->addr[0] = '\0';
}

/* evhttp: the response to the request of ARG, or the failure (REQ NULL or status 0). */
static void on_request_done(struct evhttp_request *req, void *arg)
{
    struct dest_http_send *s = arg;
    struct dest_http *dh = s->dh;
    struct dest_http_conn *c = s->conn;
    int code = req != NULL ? evhttp_request_get_response_code(req) : 0;
    char reason[512];

    DEST_HTTP_CHECK(s, DEST_HTTP_SEND_MAGIC);
    DEST_HTTP_CHECK(c, DEST_HTTP_CONN_MAGIC);
    TAILQ_REMOVE(&dh->inflight, s, link);
    dh->n_pending--;
    c->n_inflight--;
    s->conn = NULL;
    if (code == 0) {
        /* A request without an error kind: evhttp's connect-failure path. */
        transport_error(dh, c, s, req != NULL && s->req_error == 0, reason, sizeof(reason));
        conn_retire(dh, c);
        mark_down(dh, reason);
        send_complete(dh, s, s->req_error - 1 == EVREQ_HTTP_TIMEOUT ? SY_ETIMEDOUT : SY_EIO, "%s",
                      reason);
        return;
    }
    if (dh->last_err[0] != '\0')
        log_info("[dest:%s] %s:%d answers again", dh->base.uri, dh->host, dh->port);
    dh->last_err[0] = '\0';
    dh->retry_at_us = 0;
    dh->backoff_ms = DEST_HTTP_BACKOFF_MIN_MS;
    if (code >= 200 && code < 300) {
        send_complete(dh, s, 0, NULL);
    } else {
        const char *line = evhttp_request_get_response_code_line(req);

        send_complete(dh, s, SY_EIO, "HTTP %d%s%s", code, line != NULL ? " " : "",
                      line != NULL ? line : "");
    }
}

/* Hand S's request (built, owned by S) to the current connection. */
static void dispatch(struct dest_http *dh, struct dest_http_send *s)
{
    struct evhttp_request *req = s->req;

    /* A send dispatched before went down and forgot the address (lookup done, queue flushing). */
    if (dh->addr[0] == '\0') {
        send_complete(dh, s, SY_EIO, "not connected: %s", dh->last_err);
        return;
    }
    if (dh->conn == NULL)
        dh->conn = conn_new(dh);
    if (dh->conn == NULL) {
        send_complete(dh, s, SY_EIO, "cannot set up a connection to %s:%d%s", dh->host, dh->port,
                      dh->tls ? " (TLS setup failed)" : "");
        return;
    }
    s->conn = dh->conn;
    dh->conn->n_inflight++;
    TAILQ_INSERT_TAIL(&dh->inflight, s, link);
    dh->n_pending++;
    s->req = NULL; /* evhttp's from here on, even when it fails */
    /*
     * A refused loopback connect calls on_request_done() from inside this call (which then
     * returns 0, S completed). A failure (-1) never calls back, and REQ is not ours to free:
     * libevent 2.1.12 fails in two places. Out of memory copying the URI, it has freed REQ
     * itself already (evhttp_request_free_auto(); freeing it again here was a double free).
     * A failed bind() of the connection's local address leaves REQ off the queue, unfreed:
     * we never set a local address (evhttp_connection_set_local_address), so that cannot
     * happen here, and a leak would be the safe side of the two anyway.
     */
    if (evhttp_make_request(s->conn->evcon, req, EVHTTP_REQ_POST, dh->path) != 0 &&
        s->conn != NULL) {
        struct dest_http_conn *c = s->conn;

        TAILQ_REMOVE(&dh->inflight, s, link);
        dh->n_pending--;
        c->n_inflight--;
        s->conn = NULL;
        conn_retire(dh, c);
        send_complete(dh, s, SY_EIO, "cannot send a request to %s:%d (out of memory?)", dh->host,
                      dh->port);
    }
}

/* Copy of V without CR/LF (and other control characters but TAB), cut at the header cap. */
static void header_value(const char *v, char *out)
{
    size_t n = 0;

    for (; *v != '\0' && n < DEST_HTTP_HEADER_VALUE_MAX; v++) {
        unsigned char ch = (unsigned char)*v;

        if (ch >= 0x20 || ch == '\t')
            out[n++] = (char)ch;
    }
    out[n] = '\0';
}

/*
 * The request for MSG: POST body, Content-Type, Host, the key and attribute headers. Returns
 * new (free with evhttp_request_free unless made) or NULL when out of memory.
 */
static struct evhttp_request *build_request(struct dest_http *dh, struct dest_http_send *s,
                                            const struct dest_msg *msg)
{
    struct evhttp_request *req = evhttp_request_new(on_request_done, s);
    struct evkeyvalq *h;
    char value[DEST_HTTP_HEADER_VALUE_MAX + 1], name[160];

    if (req == NULL)
        return NULL;
    evhttp_request_set_error_cb(req, on_request_error);
    h = evhttp_request_get_output_headers(req);
    if (evhttp_add_header(h, "Host", dh->host_hdr) != 0 ||
        evhttp_add_header(h, "Content-Type", "application/json") != 0 ||
        evhttp_add_header(h, "User-Agent", "switchyard") != 0)
        goto fail;
    if (msg->key != NULL) {
        header_value(msg->key, value);
        if (evhttp_add_header(h, "X-Sy-Message-Key", value) != 0)
            goto fail;
    }
    for (size_t i = 0; i < msg->n_attrs; i++) {
        const struct dest_attr *a = &msg->attrs[i];
        size_t n = (size_t)snprintf(name, sizeof(name), "X-Sy-Attribute-");

        /* Header names are tokens: anything else in an attribute name becomes '-'. */
        for (const char *p = a->name; *p != '\0' && n < sizeof(name) - 1; p++) {
            unsigned char ch = (unsigned char)*p;
            bool tchar = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                         (ch >= '0' && ch <= '9') || strchr("!#$%&'*+-.^_`|~", ch) != NULL;

            name[n++] = tchar && ch != '\0' ? (char)ch : '-';
        }
        name[n] = '\0';
        header_value(a->value, value);
        if (evhttp_add_header(h, name, value) != 0)
            goto fail;
    }
    if (evbuffer_add(evhttp_request_get_output_buffer(req), msg->body, msg->len) != 0)
        goto fail;
    return req;
fail:
    evhttp_request_free(req);
    return NULL;
}

/* A send's timer. Waiting for the lookup: it just fails. In flight: its connection goes. */
static void on_send_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct dest_http_send *s = arg;
    struct dest_http *dh = s->dh;
    char reason[160];

    DEST_HTTP_CHECK(s, DEST_HTTP_SEND_MAGIC);
    s->timed_out = true;
    if (s->conn == NULL) { /* waiting for the address */
        TAILQ_REMOVE(&dh->waiting, s, link);
        dh->n_pending--;
        send_complete(dh, s, SY_ETIMEDOUT, "looking up %s took more than %d ms", dh->host,
                      DEST_SEND_TIMEOUT_MS);
        return;
    }
    snprintf(reason, sizeof(reason), "a request got no response within %d ms",
             DEST_SEND_TIMEOUT_MS);
    log_warn("[dest:%s] %s; dropping the connection", dh->base.uri, reason);
    conn_drop(dh, s->conn, reason); /* completes S with SY_ETIMEDOUT */
    mark_down(dh, reason);
}

/* ---------------------------------------------------------------------------------------- */
/* Host name lookup (resolve_start())                                              */

/* The lookup is done (on the loop): send what waited for it, or fail it. */
static void on_lookup_done(void *arg, int rc, const char (*addrs)[INET6_ADDRSTRLEN], int n_addrs)
{
    struct dest_http *dh = arg;
    struct dest_http_send *s;
    char reason[512];

    DEST_HTTP_CHECK(dh, DEST_HTTP_MAGIC);
    dh->lookup = NULL;
    if (rc != 0) {
        dh->addr[0] = '\0';
        snprintf(reason, sizeof(reason), "look up %s: %s", dh->host, gai_strerror(rc));
        mark_down(dh, reason);
    } else {
        dest_util_str_copy(dh->addr, sizeof(dh->addr), addrs[0]);
    }
    while ((s = TAILQ_FIRST(&dh->waiting)) != NULL) {
        TAILQ_REMOVE(&dh->waiting, s, link);
        dh->n_pending--;
        if (rc != 0)
            send_complete(dh, s, SY_EIO, "%s", reason);
        else
            dispatch(dh, s);
    }
}

/* Start looking up dh->host. Returns 0, or -1 (then nothing was started). */
static int start_lookup(struct dest_http *dh)
{
    return resolve_start(dh->evb, dh->host, on_lookup_done, dh, &dh->lookup) == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------------------------------- */
/* The vtable                                                                               */

static void dest_http_free(struct dest_http *dh);

/* dq.ev: free drained retired connections, then DONE for what is completed so far. */
static void run_completions(evutil_socket_t fd, short what, void *arg)
{
    struct dest_http *dh = arg;
    struct dest_http_conn *c, *next;

    DEST_HTTP_CHECK(dh, DEST_HTTP_MAGIC);
    for (c = TAILQ_FIRST(&dh->retired); c != NULL; c = next) {
        next = TAILQ_NEXT(c, link);
        if (c->n_inflight == 0)
            conn_drop(dh, c, "retired");
    }
    if (dest_util_doneq_run(&dh->dq))
        dest_http_free(dh);
}

static int dest_http_send(struct dest *d, const struct dest_msg *msg, dest_done_fn *done, void *arg)
{
    struct dest_http *dh = (struct dest_http *)d;
    struct timeval tv = evhelp_tv_ms(DEST_SEND_TIMEOUT_MS);
    struct dest_http_send *s;

    DEST_HTTP_CHECK(dh, DEST_HTTP_MAGIC);
    if (dh->closed)
        return SY_ECLOSED;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return SY_ENOMEM;
    s->magic = DEST_HTTP_SEND_MAGIC;
    s->dh = dh;
    s->u.done = done;
    s->u.arg = arg;
    s->started_us = time_mono_us();
    /* Down: fail fast until the backoff is over (DONE comes from dq.ev). */
    if (dh->retry_at_us != 0 && time_mono_us() < dh->retry_at_us) {
        send_complete(dh, s, SY_EIO, "not connected: %s", dh->last_err);
        return 0;
    }
    if (dh->n_pending >= DEST_HTTP_MAX_PENDING) {
        send_complete(dh, s, SY_EBUSY, "%d sends already in flight", DEST_HTTP_MAX_PENDING);
        return 0;
    }
    s->timer = evtimer_new(dh->evb, on_send_timeout, s);
    s->req = build_request(dh, s, msg); /* copies MSG */
    if (s->timer == NULL || s->req == NULL) {
        send_free(s);
        return SY_ENOMEM;
    }
    evtimer_add(s->timer, &tv);
    if (dh->addr[0] != '\0') {
        dispatch(dh, s);
        return 0;
    }
    /* The address is not known yet: wait for the lookup (bounded by the send's timer). */
    if (dh->lookup == NULL && start_lookup(dh) != 0) {
        send_complete(dh, s, SY_EIO, "cannot start looking up %s", dh->host);
        return 0;
    }
    TAILQ_INSERT_TAIL(&dh->waiting, s, link);
    dh->n_pending++;
    return 0;
}

static const char *dest_http_state(const struct dest *d)
{
    /* The state buffer is ours to write even through a const handle. */
    struct dest_http *dh = (struct dest_http *)d;
    uint64_t now = time_mono_us();

    if (dh->closed)
        return "closed";
    if (dh->lookup != NULL)
        return "connecting";
    if (dh->last_err[0] == '\0')
        return dh->conn != NULL ? "connected" : "idle";
    if (dh->retry_at_us > now)
        return dest_util_state_retry(dh->state_buf, sizeof(dh->state_buf),
                                     (int64_t)((dh->retry_at_us - now) / 1000), dh->last_err);
    return dest_util_state_reason(dh->state_buf, sizeof(dh->state_buf), "down, next send retries",
                                  dh->last_err);
}

/* Free DH's memory. No connection, lookup or send may be left. Safe on a half-built DH. */
static void dest_http_free(struct dest_http *dh)
{
    dest_util_doneq_fini(&dh->dq);
    SSL_CTX_free(dh->ssl_ctx);
    free(dh->host);
    free(dh->path);
    free(dh->host_hdr);
    free(dh->base.uri);
    dh->magic = 0;
    free(dh);
}

/* Parse URI into DH (host, port, path, Host header). Returns 0 or -1 with ERR filled. */
static int parse_uri(struct dest_http *dh, const char *uri, struct sy_error *err)
{
    struct evhttp_uri *u = evhttp_uri_parse(uri);
    const char *scheme, *host, *path, *query;
    int port, rc = -1;
    size_t hlen;

    if (u == NULL || (scheme = evhttp_uri_get_scheme(u)) == NULL ||
        (host = evhttp_uri_get_host(u)) == NULL || *host == '\0') {
        sy_error_set(err, "%s: not an http(s) URL", uri);
        goto out;
    }
    if (strcasecmp(scheme, "https") == 0) {
        dh->tls = true;
    } else if (strcasecmp(scheme, "http") != 0) {
        sy_error_set(err, "%s: not an http(s) URL", uri);
        goto out;
    }
    hlen = strlen(host);
    if (host[0] == '[' && hlen > 2 && host[hlen - 1] == ']')
        dh->host = strndup(host + 1, hlen - 2);
    else
        dh->host = strdup(host);
    port = evhttp_uri_get_port(u);
    dh->port = port > 0 ? port : dh->tls ? 443 : 80;
    path = evhttp_uri_get_path(u);
    query = evhttp_uri_get_query(u);
    if (path == NULL || *path == '\0')
        path = "/";
    if (asprintf(&dh->path, "%s%s%s", path, query != NULL ? "?" : "", query != NULL ? query : "") <
        0)
        dh->path = NULL;
    if (dh->host == NULL || dh->path == NULL) {
        sy_error_set(err, "%s: out of memory", uri);
        goto out;
    }
    dh->numeric_host = dest_util_numeric_host(dh->host);
    if (dh->numeric_host)
        snprintf(dh->addr, sizeof(dh->addr), "%s", dh->host);
    {
        bool v6 = strchr(dh->host, ':') != NULL;
        bool dflt = dh->port == (dh->tls ? 443 : 80);
        char ps[16] = "";

        if (!dflt)
            snprintf(ps, sizeof(ps), ":%d", dh->port);
        if (asprintf(&dh->host_hdr, "%s%s%s%s", v6 ? "[" : "", dh->host, v6 ? "]" : "", ps) < 0) {
            dh->host_hdr = NULL;
            sy_error_set(err, "%s: out of memory", uri);
            goto out;
        }
    }
    rc = 0;
out:
    if (u != NULL)
        evhttp_uri_free(u);
    return rc;
}

static int dest_http_create(struct event_base *base, const char *uri, struct dest **out,
                            struct sy_error *err)
{
    struct dest_http *dh = calloc(1, sizeof(*dh));

    *out = NULL;
    if (dh == NULL) {
        sy_error_set(err, "%s: out of memory", uri);
        return SY_ENOMEM;
    }
    dh->magic = DEST_HTTP_MAGIC;
    dh->base.ops = &dest_http_ops;
    dh->evb = base;
    dh->backoff_ms = DEST_HTTP_BACKOFF_MIN_MS;
    TAILQ_INIT(&dh->retired);
    TAILQ_INIT(&dh->waiting);
    TAILQ_INIT(&dh->inflight);
    dest_util_doneq_init(&dh->dq, &dh->base, send_free_u);
    if (parse_uri(dh, uri, err) != 0) {
        dest_http_free(dh);
        return SY_EINVAL;
    }
    if (dh->tls) {
        dh->ssl_ctx = SSL_CTX_new(TLS_client_method());
        if (dh->ssl_ctx == NULL || SSL_CTX_set_default_verify_paths(dh->ssl_ctx) != 1 ||
            SSL_CTX_set_min_proto_version(dh->ssl_ctx, TLS1_2_VERSION) != 1) {
            char e[256] = "unknown error";

            ERR_error_string_n(ERR_get_error(), e, sizeof(e));
            sy_error_set(err, "%s: cannot set up TLS: %s", uri, e);
            dest_http_free(dh);
            return SY_EIO;
        }
        SSL_CTX_set_verify(dh->ssl_ctx, SSL_VERIFY_PEER, NULL);
    }
    dh->base.uri = strdup(uri);
    dh->dq.ev = event_new(base, -1, 0, run_completions, dh);
    if (dh->base.uri == NULL || dh->dq.ev == NULL) {
        sy_error_set(err, "%s: out of memory", uri);
        dest_http_free(dh);
        return SY_ENOMEM;
    }
    /* Nothing connects before the first send. */
    *out = &dh->base;
    return 0;
}

/*
 * Free every connection (their sends get SY_ECANCELED), cancel the lookup and fail what waits
 * for it, then DONE for every send. Called from inside DONE, the memory is freed when the
 * outermost run_completions() unwinds.
 */
static void dest_http_destroy(struct dest *d)
{
    struct dest_http *dh = (struct dest_http *)d;
    struct dest_http_conn *c;
    struct dest_http_send *s;

    DEST_HTTP_CHECK(dh, DEST_HTTP_MAGIC);
    if (dh->closed)
        return;
    dh->closed = true;
    resolve_cancel(dh->lookup); /* the thread finishes on its own and frees it */
    dh->lookup = NULL;
    while ((s = TAILQ_FIRST(&dh->waiting)) != NULL) {
        TAILQ_REMOVE(&dh->waiting, s, link);
        dh->n_pending--;
        send_complete(dh, s, SY_ECANCELED, "destination closed");
    }
    if (dh->conn != NULL)
        conn_drop(dh, dh->conn, "destination closed");
    while ((c = TAILQ_FIRST(&dh->retired)) != NULL)
        conn_drop(dh, c, "destination closed");
    if (dest_util_doneq_close(&dh->dq))
        dest_http_free(dh);
}

const struct dest_ops dest_http_ops = {
    .scheme = "http",
    .create = dest_http_create,
    .send = dest_http_send,
    .state = dest_http_state,
    .destroy = dest_http_destroy,
};
