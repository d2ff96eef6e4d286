/*
 * tests/harness/http.c - the blocking HTTP/1.1 client of the harness (see http.h).
 *
 * The socket is non-blocking and every wait is a poll() bounded by the request's deadline, so
 * a broker that hangs turns into a test failure, not a hung test. While the request body is
 * written we also watch for input: a server may answer (413) and stop reading before the body
 * is complete, and we must then read that answer rather than block on a full send buffer.
 */
#include "harness/http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness/util.h"

struct h_http_conn {
    int fd;
    char host[64];
    int port;
    char *buf; /* received, not yet consumed bytes */
    size_t len;
    size_t cap;
    bool eof;
};

static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = events};
        int64_t left = deadline - h_now_ms();
        int n;

        if (left <= 0)
            return 0;
        n = poll(&pfd, 1, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n > 0)
            return pfd.revents;
    }
}

struct h_http_conn *h_http_connect(const char *host, int port, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    struct h_http_conn *c;
    int one = 1, err = 0;
    socklen_t el = sizeof(err);
    int fd;

    if (strchr(host, ':') != NULL) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
            return NULL;
        sl = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
            return NULL;
        sl = sizeof(*s4);
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&ss, sl) != 0) {
        if (errno != EINPROGRESS || wait_fd(fd, POLLOUT, deadline) <= 0 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
            close(fd);
            return NULL;
        }
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        abort();
    c->fd = fd;
    snprintf(c->host, sizeof(c->host), "%s", host);
    c->port = port;
    return c;
}

void h_http_close(struct h_http_conn *c)
{
    if (c == NULL)
        return;
    close(c->fd);
    free(c->buf);
    free(c);
}

/* Read more bytes into C's buffer. Returns 1 (got some), 0 (EOF), -1 (error or deadline). */
static int fill(struct h_http_conn *c, int64_t deadline)
{
    for (;;) {
        ssize_t n;

        if (c->cap - c->len < 65536) {
            c->cap = c->cap ? c->cap * 2 : 131072;
            c->buf = realloc(c->buf, c->cap);
            if (c->buf == NULL)
                abort();
        }
        n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
        if (n > 0) {
            c->len += (size_t)n;
            return 1;
        }
        if (n == 0) {
            c->eof = true;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        if (wait_fd(c->fd, POLLIN, deadline) <= 0)
            return -1;
    }
}

/* Drop the first N buffered bytes. */
static void consume(struct h_http_conn *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Position just past "\r\n" in C's buffer from OFF on, filling as needed; -1 on failure. */
static long find_line_end(struct h_http_conn *c, size_t off, int64_t deadline)
{
    for (;;) {
        for (size_t i = off; i + 1 < c->len; i++) {
            if (c->buf[i] == '\r' && c->buf[i + 1] == '\n')
                return (long)(i + 2);
        }
        if (fill(c, deadline) <= 0)
            return -1;
    }
}

static void add_header(struct h_http_resp *r, const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len);
    const char *v, *end = line + len;

    if (colon == NULL)
        return;
    v = colon + 1;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    r->hdrs = realloc(r->hdrs, (r->n_hdrs + 1) * sizeof(*r->hdrs));
    if (r->hdrs == NULL)
        abort();
    r->hdrs[r->n_hdrs].name = strndup(line, (size_t)(colon - line));
    r->hdrs[r->n_hdrs].value = strndup(v, (size_t)(end - v));
    r->n_hdrs++;
}

/* Read the status line and headers of one (final) response into R. */
static int read_head(struct h_http_conn *c, struct h_http_resp *r, int64_t deadline)
{
    for (;;) {
        long end = find_line_end(c, 0, deadline);
        size_t off;

        if (end < 0)
            return -1;
        if (c->len < 12 || strncmp(c->buf, "HTTP/1.", 7) != 0)
            return -1;
        r->status = atoi(c->buf + 9);
        off = (size_t)end;
        for (;;) {
            long e = find_line_end(c, off, deadline);

            if (e < 0)
                return -1;
            if ((size_t)e == off + 2) {
                off = (size_t)e;
                break;
            }
            add_header(r, c->buf + off, (size_t)e - off - 2);
            off = (size_t)e;
        }
        consume(c, off);
        if (r->status >= 200 || r->status < 100)
            return 0;
        /* An interim response (100 Continue): forget it and read the real one. */
        for (size_t i = 0; i < r->n_hdrs; i++) {
            free(r->hdrs[i].name);
            free(r->hdrs[i].value);
        }
        free(r->hdrs);
        r->hdrs = NULL;
        r->n_hdrs = 0;
    }
}

static void body_append(struct h_http_resp *r, size_t *cap, const char *p, size_t n)
{
    if (r->body_len + n + 1 > *cap) {
        while (r->body_len + n + 1 > *cap)
            *cap = *cap ? *cap * 2 : 4096;
        r->body = realloc(r->body, *cap);
        if (r->body == NULL)
            abort();
    }
    memcpy(r->body + r->body_len, p, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
}

static int read_chunked(struct h_http_conn *c, struct h_http_resp *r, size_t *cap, int64_t deadline)
{
    for (;;) {
        long e = find_line_end(c, 0, deadline);
        unsigned long size;

        if (e < 0)
            return -1;
        size = strtoul(c->buf, NULL, 16);
        consume(c, (size_t)e);
        if (size == 0) {
            /* Trailers, up to the empty line. */
            for (;;) {
                e = find_line_end(c, 0, deadline);
                if (e < 0)
                    return -1;
                consume(c, (size_t)e);
                if (e == 2)
                    return 0;
            }
        }
        while (c->len < size + 2) {
            if (fill(c, deadline) <= 0)
                return -1;
        }
        body_append(r, cap, c->buf, size);
        consume(c, size + 2);
    }
}

static int read_body(struct h_http_conn *c, const char *method, struct h_http_resp *r,
                     int64_t deadline)
{
    const char *te = h_http_header(r, "Transfer-Encoding");
    const char *cl = h_http_header(r, "Content-Length");
    size_t cap = 0;

    body_append(r, &cap, "", 0);
    if (strcmp(method, "HEAD") == 0 || r->status == 204 || r->status == 304)
        return 0;
    if (te != NULL && strcasestr(te, "chunked") != NULL)
        return read_chunked(c, r, &cap, deadline);
    if (cl != NULL) {
        size_t want = strtoull(cl, NULL, 10);

        while (c->len < want) {
            if (fill(c, deadline) <= 0)
                return -1;
        }
        body_append(r, &cap, c->buf, want);
        consume(c, want);
        return 0;
    }
    /* Neither: the body runs to the end of the connection. */
    for (;;) {
        int n;

        body_append(r, &cap, c->buf, c->len);
        consume(c, c->len);
        n = fill(c, deadline);
        if (n == 0)
            return 0;
        if (n < 0)
            return -1;
    }
}

/* Write LEN bytes of P; stops early (returns 1) when the server starts answering or has closed
 * its side; 0 when everything was written; -1 on the deadline. */
static int send_all(struct h_http_conn *c, const char *p, size_t len, int64_t deadline)
{
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        int ev;

        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return 1; /* EPIPE / ECONNRESET: maybe an early answer is waiting */
        ev = wait_fd(c->fd, POLLOUT | POLLIN, deadline);
        if (ev <= 0)
            return -1;
        if (ev & (POLLIN | POLLHUP | POLLERR))
            return 1;
    }
    return 0;
}

int h_http_conn_request(struct h_http_conn *c, const char *method, const char *path,
                        const char *const headers[], const void *body, size_t body_len,
                        int timeout_ms, struct h_http_resp *resp)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    size_t hcap = 1024, hlen = 0;
    char *head = malloc(hcap);
    bool need_cl = body != NULL || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0;
    int rc;

    memset(resp, 0, sizeof(*resp));
    if (head == NULL)
        abort();
#define HEAD_ADD(...)                                                                              \
    do {                                                                                           \
        int n_ = snprintf(head + hlen, hcap - hlen, __VA_ARGS__);                                  \
        if ((size_t)n_ >= hcap - hlen) {                                                           \
            hcap = hlen + (size_t)n_ + 1024;                                                       \
            head = realloc(head, hcap);                                                            \
            if (head == NULL)                                                                      \
                abort();                                                                           \
            snprintf(head + hlen, hcap - hlen, __VA_ARGS__);                                       \
        }                                                                                          \
        hlen += (size_t)n_;                                                                        \
    } while (0)
    HEAD_ADD("%s %s HTTP/1.1\r\nHost: %s:%d\r\n", method, path, c->host, c->port);
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
        HEAD_ADD("%s\r\n", headers[i]);
    if (need_cl)
        HEAD_ADD("Content-Length: %zu\r\n", body_len);
    HEAD_ADD("\r\n");
#undef HEAD_ADD
    rc = send_all(c, head, hlen, deadline);
    free(head);
    if (rc == 0 && body != NULL && body_len > 0)
        rc = send_all(c, body, body_len, deadline);
    if (rc < 0 || read_head(c, resp, deadline) != 0 || read_body(c, method, resp, deadline) != 0) {
        h_http_resp_free(resp);
        return -1;
    }
    return 0;
}

int h_http_request(const char *host, int port, const char *method, const char *path,
                   const char *const headers[], const void *body, size_t body_len, int timeout_ms,
                   struct h_http_resp *resp)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    struct h_http_conn *c = h_http_connect(host, port, timeout_ms);
    const char *hdrs[64];
    size_t n = 0;
    int rc;

    memset(resp, 0, sizeof(*resp));
    if (c == NULL)
        return -1;
    for (; headers != NULL && headers[n] != NULL && n < 62; n++)
        hdrs[n] = headers[n];
    hdrs[n++] = "Connection: close";
    hdrs[n] = NULL;
    rc = h_http_conn_request(c, method, path, hdrs, body, body_len, (int)(deadline - h_now_ms()),
                             resp);
    h_http_close(c);
    return rc;
}

const char *h_http_header(const struct h_http_resp *r, const char *name)
{
    for (size_t i = 0; i < r->n_hdrs; i++) {
        if (strcasecmp(r->hdrs[i].name, name) == 0)
            return r->hdrs[i].value;
    }
    return NULL;
}

void h_http_resp_free(struct h_http_resp *r)
{
    for (size_t i = 0; i < r->n_hdrs; i++) {
        free(r->hdrs[i].name);
        free(r->hdrs[i].value);
    }
    free(r->hdrs);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

char *h_http_resp_describe(const struct h_http_resp *r)
{
    size_t cap = 4096 + r->n_hdrs * 256;
    char *s = malloc(cap);
    size_t n = 0;

    if (s == NULL)
        abort();
    n += (size_t)snprintf(s + n, cap - n, "HTTP %d\n", r->status);
    for (size_t i = 0; i < r->n_hdrs && n < cap; i++)
        n +=
            (size_t)snprintf(s + n, cap - n, "%.100s: %.120s\n", r->hdrs[i].name, r->hdrs[i].value);
    if (n < cap)
        snprintf(s + n, cap - n, "\n%.2048s%s (%zu bytes)", r->body ? r->body : "",
                 r->body_len > 2048 ? "..." : "", r->body_len);
    return s;
}
