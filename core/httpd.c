/*
 * core/httpd.c - a small HTTP/1.1 server on bufferevents (see httpd.h for why not evhttp).
 *
 * Each connection runs a tiny state machine: request line and headers (evbuffer_readln),
 * then the body (Content-Length, or chunked), then the handler, then - once the handler has
 * replied, possibly much later - the next request. While a request waits for its reply the
 * connection keeps reading, only so that EOF (the client went away) is noticed and reported
 * through the request's close callback; bytes of a pipelined next request simply wait in the
 * input buffer.
 *
 * Re-entrancy: httpd_reply() never parses the next request itself. It activates the
 * connection's `resume` event, so a handler is never re-entered from inside its own reply and
 * a connection is never freed under a caller's feet.
 */
#include "httpd.h"

#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "log.h"
#include "buf.h"

#define HTTPD_MAGIC 0x48545450u     /* "HTTP" */
#define MAX_LINE 16384              /* request line or one header line */
#define MAX_HEADERS 100
#define MAX_DISCARD (1024u * 1024u * 1024u) /* oversized bodies beyond this: close */
#define READ_HIGH_WATER (1024u * 1024u)      /* input buffered while a reply is pending */

enum conn_state {
    ST_REQ_LINE,
    ST_HEADERS,
    ST_BODY,         /* Content-Length body */
    ST_CHUNK_SIZE,
    ST_CHUNK_DATA,
    ST_CHUNK_CRLF,
    ST_CHUNK_TRAILER,
    ST_WAIT_REPLY,   /* handler owns the request */
    ST_CLOSING,      /* flushing the last reply, then free */
};

struct conn;

struct httpd_req {
    struct conn *conn;
    char *line;             /* owns the request line; method/target point into it */
    const char *method;
    char *path;             /* percent-decoded copy */
    const char *query;
    char **hdrs;            /* name, value, name, value... (each malloc'd) */
    size_t n_hdrs;
    struct buf body;
    size_t body_size;       /* announced or seen */
    size_t remaining;       /* of the current Content-Length body or chunk */
    int too_large;
    int chunked;
    int keep_alive;
    httpd_close_fn *close_cb;
    void *close_arg;
    void *data;
};

struct conn {
    struct httpd *srv;
    struct bufferevent *bev;
    struct event *resume;
    struct httpd_req *req;
    enum conn_state state;
    struct conn *prev, *next;
};

struct httpd {
    unsigned magic;
    struct event_base *base;
    struct evconnlistener *lst;
    httpd_handler_fn *handler;
    void *arg;
    size_t max_body;
    int port;
    size_t pending;
    struct conn *conns;
};

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);
static void conn_process(struct conn *c);

/* ---- requests ---------------------------------------------------------------------------- */

static void req_free(struct httpd_req *req)
{
    if (req == NULL)
        return;
    for (size_t i = 0; i < req->n_hdrs * 2; i++)
        free(req->hdrs[i]);
    free(req->hdrs);
    free(req->line);
    free(req->path);
    buf_free(&req->body);
    free(req);
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decode N bytes of S into a new string ('+' stays '+': this is for paths too). */
static char *pct_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    size_t k = 0;

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            out[k++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            out[k++] = s[i];
        }
    }
    out[k] = '\0';
    return out;
}

const char *httpd_req_method(const struct httpd_req *req)
{
    return req->method;
}

const char *httpd_req_path(const struct httpd_req *req)
{
    return req->path;
}

const char *httpd_req_query(const struct httpd_req *req)
{
    return req->query;
}

const char *httpd_req_query_param(const struct httpd_req *req, const char *name, char *out,
                                  size_t outsz)
{
    size_t nlen = strlen(name);
    const char *p = req->query;

    while (*p != '\0') {
        const char *end = strchr(p, '&');
        const char *eq;
        size_t seglen = end ? (size_t)(end - p) : strlen(p);

        eq = memchr(p, '=', seglen);
        if ((eq ? (size_t)(eq - p) : seglen) == nlen && strncmp(p, name, nlen) == 0) {
            const char *v = eq ? eq + 1 : p + seglen;
            size_t vlen = (size_t)(p + seglen - v);
            char *dec = pct_decode(v, vlen);

            if (dec == NULL || outsz == 0) {
                free(dec);
                return NULL;
            }
            for (char *q = dec; *q; q++) {
                if (*q == '+')
                    *q = ' ';
            }
            strncpy(out, dec, outsz - 1);
            out[outsz - 1] = '\0';
            free(dec);
            return out;
        }
        if (end == NULL)
            break;
        p = end + 1;
    }
    return NULL;
}

const char *httpd_req_header(const struct httpd_req *req, const char *name)
{
    for (size_t i = 0; i < req->n_hdrs; i++) {
        if (strcasecmp(req->hdrs[2 * i], name) == 0)
            return req->hdrs[2 * i + 1];
    }
    return NULL;
}

const char *httpd_req_body(const struct httpd_req *req, size_t *len)
{
    if (len != NULL)
        *len = req->body.len;
    return req->body.data ? req->body.data : "";
}

char *httpd_req_take_body(struct httpd_req *req, size_t *len)
{
    return buf_take(&req->body, len);
}

int httpd_req_too_large(const struct httpd_req *req)
{
    return req->too_large;
}

size_t httpd_req_body_size(const struct httpd_req *req)
{
    return req->body_size;
}

void httpd_req_set_close_cb(struct httpd_req *req, httpd_close_fn *cb, void *arg)
{
    req->close_cb = cb;
    req->close_arg = arg;
}

void httpd_req_set_data(struct httpd_req *req, void *data)
{
    req->data = data;
}

void *httpd_req_data(const struct httpd_req *req)
{
    return req->data;
}

/* ---- connections ------------------------------------------------------------------------- */

static void conn_free(struct conn *c)
{
    struct httpd *srv = c->srv;

    if (c->req != NULL) {
        struct httpd_req *req = c->req;

        c->req = NULL;
        if (c->state == ST_WAIT_REPLY) {
            /* The handler still owns it: tell it the client is gone. */
            srv->pending--;
            if (req->close_cb != NULL)
                req->close_cb(req, req->close_arg);
        }
        req_free(req);
    }
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    if (c->resume != NULL)
        event_free(c->resume);
    bufferevent_free(c->bev);
    free(c);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    if (c->state == ST_CLOSING) {
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
            conn_free(c);
        return;
    }
    conn_process(c);
}

/* Send a bare error (framing problems the handler never sees) and close. */
static void conn_fail(struct conn *c, int status, const char *reason)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);

    log_debug("[httpd:%d] bad request: %s", c->srv->port, reason);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                        "Connection: close\r\n\r\n%s\n",
                        status, status == 413 ? "Payload Too Large" : "Bad Request",
                        strlen(reason) + 1, reason);
    req_free(c->req);
    c->req = NULL;
    c->state = ST_CLOSING;
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_enable(c->bev, EV_WRITE);
}

static int parse_request_line(struct httpd_req *req, char *line)
{
    char *sp1 = strchr(line, ' ');
    char *sp2;
    char *target;
    char *q;

    if (sp1 == NULL)
        return -1;
    *sp1 = '\0';
    target = sp1 + 1;
    sp2 = strchr(target, ' ');
    if (sp2 == NULL)
        return -1;
    *sp2 = '\0';
    if (strncmp(sp2 + 1, "HTTP/1.", 7) != 0)
        return -1;
    req->keep_alive = sp2[8] != '0'; /* HTTP/1.1 default keep-alive; 1.0 default close */
    req->method = line;
    q = strchr(target, '?');
    if (q != NULL) {
        *q = '\0';
        req->query = q + 1;
    } else {
        req->query = "";
    }
    req->path = pct_decode(target, strlen(target));
    return req->path ? 0 : -1;
}

static int add_header(struct httpd_req *req, char *line)
{
    char *colon = strchr(line, ':');
    char *v;
    char **nh;
    size_t vlen;

    if (colon == NULL || colon == line)
        return -1;
    if (req->n_hdrs >= MAX_HEADERS)
        return -1;
    *colon = '\0';
    v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    vlen = strlen(v);
    while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
        v[--vlen] = '\0';
    nh = realloc(req->hdrs, (req->n_hdrs + 1) * 2 * sizeof(*nh));
    if (nh == NULL)
        return -1;
    req->hdrs = nh;
    nh[2 * req->n_hdrs] = strdup(line);
    nh[2 * req->n_hdrs + 1] = strdup(v);
    req->n_hdrs++;
    if (nh[2 * req->n_hdrs - 2] == NULL || nh[2 * req->n_hdrs - 1] == NULL)
        return -1;
    return 0;
}

/* Headers are complete: decide how the body is framed. Returns -1 on a framing error. */
static int headers_done(struct conn *c)
{
    struct httpd_req *req = c->req;
    const char *te = httpd_req_header(req, "Transfer-Encoding");
    const char *cl = httpd_req_header(req, "Content-Length");
    const char *conn_hdr = httpd_req_header(req, "Connection");
    const char *expect = httpd_req_header(req, "Expect");

    if (conn_hdr != NULL) {
        if (strcasecmp(conn_hdr, "close") == 0)
            req->keep_alive = 0;
        else if (strcasecmp(conn_hdr, "keep-alive") == 0)
            req->keep_alive = 1;
    }
    if (te != NULL && strcasecmp(te, "identity") != 0) {
        if (strcasecmp(te, "chunked") != 0)
            return -1;
        req->chunked = 1;
        c->state = ST_CHUNK_SIZE;
    } else if (cl != NULL) {
        char *end;
        unsigned long long n;

        errno = 0;
        n = strtoull(cl, &end, 10);
        if (errno != 0 || end == cl || *end != '\0' || cl[0] == '-')
            return -1;
        req->body_size = (size_t)n;
        req->remaining = (size_t)n;
        if (n > c->srv->max_body) {
            if (n > MAX_DISCARD)
                return -2;
            req->too_large = 1;
        } else if (buf_reserve(&req->body, (size_t)n) != 0) {
            return -1;
        }
        c->state = n > 0 ? ST_BODY : ST_WAIT_REPLY;
    } else {
        c->state = ST_WAIT_REPLY;
    }
    if (expect != NULL && strcasecmp(expect, "100-continue") == 0 && c->state != ST_WAIT_REPLY)
        evbuffer_add_printf(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n");
    return 0;
}

/* Move up to N body bytes from IN into the request (or drop them when too large). */
static size_t take_body(struct httpd_req *req, struct evbuffer *in, size_t n)
{
    size_t avail = evbuffer_get_length(in);

    if (n > avail)
        n = avail;
    if (req->too_large) {
        evbuffer_drain(in, n);
    } else {
        if (buf_reserve(&req->body, n) != 0)
            return (size_t)-1;
        evbuffer_remove(in, req->body.data + req->body.len, n);
        req->body.len += n;
        req->body.data[req->body.len] = '\0';
    }
    return n;
}

static void dispatch(struct conn *c)
{
    struct httpd *srv = c->srv;

    c->state = ST_WAIT_REPLY;
    srv->pending++;
    if (c->req->body.data == NULL)
        buf_append(&c->req->body, "", 0);
    /* Keep reading only to notice EOF; cap what a pipelining client can make us buffer. */
    bufferevent_setwatermark(c->bev, EV_READ, 0, READ_HIGH_WATER);
    srv->handler(c->req, srv->arg);
}

/* Parse as much of the input as possible; dispatch a complete request. */
static void conn_process(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);

    for (;;) {
        char *line;
        size_t len;

        switch (c->state) {
        case ST_WAIT_REPLY:
        case ST_CLOSING:
            return;
        case ST_REQ_LINE:
            line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
            if (line == NULL) {
                if (evbuffer_get_length(in) > MAX_LINE)
                    conn_fail(c, 400, "request line too long");
                return;
            }
            if (len == 0) { /* tolerate stray CRLF between requests */
                free(line);
                continue;
            }
            c->req = calloc(1, sizeof(*c->req));
            if (c->req == NULL) {
                free(line);
                conn_fail(c, 400, "out of memory");
                return;
            }
            c->req->conn = c;
            c->req->line = line;
            if (parse_request_line(c->req, line) != 0) {
                conn_fail(c, 400, "malformed request line");
                return;
            }
            c->state = ST_HEADERS;
            break;
        case ST_HEADERS:
            line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
            if (line == NULL) {
                if (evbuffer_get_length(in) > MAX_LINE)
                    conn_fail(c, 400, "header line too long");
                return;
            }
            if (len == 0) {
                int rc;

                free(line);
                rc = headers_done(c);
                if (rc == -2) {
                    conn_fail(c, 413, "request body too large");
                    return;
                }
                if (rc != 0) {
                    conn_fail(c, 400, "malformed body framing");
                    return;
                }
                if (c->state == ST_WAIT_REPLY) {
                    dispatch(c);
                    return;
                }
                break;
            }
            if (add_header(c->req, line) != 0) {
                free(line);
                conn_fail(c, 400, "malformed header");
                return;
            }
            free(line);
            break;
        case ST_BODY: {
            size_t n = take_body(c->req, in, c->req->remaining);

            if (n == (size_t)-1) {
                conn_fail(c, 400, "out of memory");
                return;
            }
            c->req->remaining -= n;
            if (c->req->remaining > 0)
                return;
            dispatch(c);
            return;
        }
        case ST_CHUNK_SIZE: {
            char *end;
            unsigned long long n;

            line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
            if (line == NULL) {
                if (evbuffer_get_length(in) > MAX_LINE)
                    conn_fail(c, 400, "chunk size line too long");
                return;
            }
            errno = 0;
            n = strtoull(line, &end, 16);
            if (errno != 0 || end == line || (*end != '\0' && *end != ';')) {
                free(line);
                conn_fail(c, 400, "malformed chunk size");
                return;
            }
            free(line);
            if (n == 0) {
                c->state = ST_CHUNK_TRAILER;
                break;
            }
            c->req->body_size += (size_t)n;
            if (c->req->body_size > c->srv->max_body) {
                if (c->req->body_size > MAX_DISCARD) {
                    conn_fail(c, 413, "request body too large");
                    return;
                }
                if (!c->req->too_large) {
                    c->req->too_large = 1;
                    buf_free(&c->req->body);
                }
            }
            c->req->remaining = (size_t)n;
            c->state = ST_CHUNK_DATA;
            break;
        }
        case ST_CHUNK_DATA: {
            size_t n = take_body(c->req, in, c->req->remaining);

            if (n == (size_t)-1) {
                conn_fail(c, 400, "out of memory");
                return;
            }
            c->req->remaining -= n;
            if (c->req->remaining > 0)
                return;
            c->state = ST_CHUNK_CRLF;
            break;
        }
        case ST_CHUNK_CRLF:
            line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
            if (line == NULL)
                return;
            free(line);
            c->state = ST_CHUNK_SIZE;
            break;
        case ST_CHUNK_TRAILER:
            line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
            if (line == NULL)
                return;
            free(line);
            if (len == 0) {
                dispatch(c);
                return;
            }
            break;
        }
    }
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;

    conn_process(c);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;

    if (c->state == ST_CLOSING && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        conn_free(c);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;

    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        conn_free(c);
}

static void accept_cb(struct evconnlistener *lst, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct httpd *srv = arg;
    struct conn *c = calloc(1, sizeof(*c));
    int one = 1;

    if (c == NULL) {
        evutil_closesocket(fd);
        return;
    }
    /* Small request/response exchanges: never wait for Nagle. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->srv = srv;
    c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->resume = event_new(srv->base, -1, 0, resume_cb, c);
    if (c->bev == NULL || c->resume == NULL) {
        if (c->bev != NULL)
            bufferevent_free(c->bev);
        else
            evutil_closesocket(fd);
        if (c->resume != NULL)
            event_free(c->resume);
        free(c);
        return;
    }
    c->state = ST_REQ_LINE;
    c->next = srv->conns;
    if (srv->conns != NULL)
        srv->conns->prev = c;
    srv->conns = c;
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* ---- replies ----------------------------------------------------------------------------- */

static const char *status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

static void free_body_cb(const void *data, size_t len, void *arg)
{
    free(arg);
}

static void reply_common(struct httpd_req *req, int status, const char *const *headers,
                         const void *body, size_t len, char *taken)
{
    struct conn *c = req->conn;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    /* A too-large body was fully drained, so keep-alive survives it. */
    int keep = req->keep_alive;
    /*
     * When nothing is queued for this connection, the reply is built aside and written to the
     * socket right away; only what the socket does not take goes through the bufferevent.
     * That saves the write-event round trip (two epoll_ctl and a loop turn) per reply.
     */
    struct evbuffer *direct = evbuffer_get_length(out) == 0 ? evbuffer_new() : NULL;
    struct evbuffer *final_out = out;

    if (direct != NULL)
        out = direct;
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", status, status_text(status));
    for (size_t i = 0; headers != NULL && headers[i] != NULL && headers[i + 1] != NULL; i += 2)
        evbuffer_add_printf(out, "%s: %s\r\n", headers[i], headers[i + 1]);
    if (status != 204 && status != 304)
        evbuffer_add_printf(out, "Content-Length: %zu\r\n", len);
    if (!keep)
        evbuffer_add(out, "Connection: close\r\n", 19);
    evbuffer_add(out, "\r\n", 2);
    if (taken != NULL) {
        if (len == 0 || evbuffer_add_reference(out, taken, len, free_body_cb, taken) != 0)
            free(taken);
    } else if (len > 0) {
        evbuffer_add(out, body, len);
    }
    if (direct != NULL) {
        evutil_socket_t fd = bufferevent_getfd(c->bev);

        /* Non-blocking socket: writes what fits; errors are left to the bufferevent. */
        while (fd >= 0 && evbuffer_get_length(direct) > 0 && evbuffer_write(direct, fd) > 0)
            ;
        if (evbuffer_get_length(direct) > 0)
            evbuffer_add_buffer(final_out, direct);
        evbuffer_free(direct);
    }

    c->srv->pending--;
    c->req = NULL;
    req_free(req);
    if (keep) {
        c->state = ST_REQ_LINE;
        bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
        bufferevent_enable(c->bev, EV_READ);
    } else {
        c->state = ST_CLOSING;
        bufferevent_disable(c->bev, EV_READ);
    }
    /* Parse a pipelined request (or free a closing connection) from the loop, not from here. */
    event_active(c->resume, EV_TIMEOUT, 0);
}

void httpd_reply(struct httpd_req *req, int status, const char *const *headers, const void *body,
                 size_t len)
{
    reply_common(req, status, headers, body, len, NULL);
}

void httpd_reply_take(struct httpd_req *req, int status, const char *const *headers, char *body,
                      size_t len)
{
    reply_common(req, status, headers, NULL, len, body);
}

/* ---- server ------------------------------------------------------------------------------ */

struct httpd *httpd_create(struct event_base *base, const char *host, int port, size_t max_body,
                           httpd_handler_fn *handler, void *arg, struct sy_error *err)
{
    struct httpd *srv = calloc(1, sizeof(*srv));
    struct sockaddr_storage ss;
    socklen_t sslen;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    const char *h = host;
    char hbuf[64];

    if (srv == NULL) {
        sy_error_set(err, "out of memory");
        return NULL;
    }
    srv->magic = HTTPD_MAGIC;
    srv->base = base;
    srv->handler = handler;
    srv->arg = arg;
    srv->max_body = max_body;

    memset(&ss, 0, sizeof(ss));
    if (strcmp(h, "localhost") == 0)
        h = "127.0.0.1";
    if (h[0] == '[') { /* [v6] */
        size_t l = strlen(h);

        if (l < 3 || l - 2 >= sizeof(hbuf) || h[l - 1] != ']') {
            sy_error_set(err, "bad listen address '%s'", host);
            goto fail;
        }
        memcpy(hbuf, h + 1, l - 2);
        hbuf[l - 2] = '\0';
        h = hbuf;
    }
    if (inet_pton(AF_INET, h, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        sslen = sizeof(*sin);
    } else if (inet_pton(AF_INET6, h, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        sslen = sizeof(*sin6);
    } else {
        sy_error_set(err, "bad listen address '%s' (expected an IPv4 or [IPv6] address)", host);
        goto fail;
    }
    srv->lst = evconnlistener_new_bind(base, accept_cb, srv,
                                       LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE |
                                           LEV_OPT_CLOSE_ON_EXEC,
                                       512, (struct sockaddr *)&ss, (int)sslen);
    if (srv->lst == NULL) {
        sy_error_set(err, "cannot listen on %s:%d: %s", host, port, strerror(errno));
        goto fail;
    }
    {
        struct sockaddr_storage bound;
        socklen_t blen = sizeof(bound);

        if (getsockname(evconnlistener_get_fd(srv->lst), (struct sockaddr *)&bound, &blen) != 0) {
            sy_error_set(err, "getsockname: %s", strerror(errno));
            goto fail;
        }
        srv->port = bound.ss_family == AF_INET6
                        ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                        : ntohs(((struct sockaddr_in *)&bound)->sin_port);
    }
    return srv;
fail:
    httpd_destroy(srv);
    return NULL;
}

int httpd_port(const struct httpd *srv)
{
    return srv->port;
}

void httpd_stop_listening(struct httpd *srv)
{
    if (srv->lst != NULL) {
        evconnlistener_free(srv->lst);
        srv->lst = NULL;
    }
}

size_t httpd_pending(const struct httpd *srv)
{
    return srv->pending;
}

void httpd_destroy(struct httpd *srv)
{
    if (srv == NULL)
        return;
    httpd_stop_listening(srv);
    while (srv->conns != NULL)
        conn_free(srv->conns);
    srv->magic = 0;
    free(srv);
}
