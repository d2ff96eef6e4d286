/*
 * bench/esm_bootstrap.c - `esm_bootstrap`: the `provided` runtime of bench_esm. It answers every
 * invocation with `{}` (a sink: what the benchmark measures is the broker moving records, not
 * the handler echoing them back) and, for the idle latency rows, reports when each record
 * arrived.
 *
 * On one keep-alive TCP connection (TCP_NODELAY) to AWS_LAMBDA_RUNTIME_API (HOST:PORT), forever:
 *
 *   GET  /2018-06-01/runtime/invocation/next            -> 200, the event, its request id
 *   POST /2018-06-01/runtime/invocation/ID/response     <- `{}`; -> 202
 *
 * Latency: when SY_BENCH_LAT_FILE names a file, every occurrence of `sybench-t=DIGITS` in the
 * event (the bench puts CLOCK_REALTIME in µs there, taken just before its LPUSH or XADD) gives
 * one line `NOW-T\n` (µs), NOW being CLOCK_REALTIME read as soon as the whole `next` response has
 * been received. The lines of one event go out in one write(2) to the file opened with O_APPEND,
 * before the response is posted, so the bench sees them no later than the acknowledgement.
 *
 * Responses are framed by Content-Length (what the broker's HTTP server sends); anything else is
 * a protocol error (exit 1). When the connection fails, the next request goes out on a new one;
 * when a fresh connection fails too, the Runtime API is gone (the environment is being shut
 * down) and the runtime exits 0. C17 and libc only; errors go to stderr (the function log).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem, MSG_NOSIGNAL, SOCK_CLOEXEC */
#endif

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#define PREFIX "/2018-06-01/runtime/invocation/"
#define MARK "sybench-t="
#define HEADER_MAX 65536u
#define BODY_MAX (64u * 1024u * 1024u)
#define ID_MAX 128u
#define LAT_LINES_MAX 4096u /* latency lines per event written at once (more: several writes) */

/* The connection and its receive buffer: bytes [0, len) received, [0, used) consumed. */
struct conn {
    struct addrinfo *ai; /* owned */
    int fd;              /* -1: not connected */
    char *buf;
    size_t cap, len, used;
};

struct reply {
    int status;
    bool close;
    char id[ID_MAX];
    const char *body; /* into conn.buf, valid until the next read */
    size_t body_len;
};

static void die(const char *what)
{
    fprintf(stderr, "esm_bootstrap: %s\n", what);
    exit(1);
}

static int64_t realtime_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- the connection --------------------------------------------------------------------- */

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->len = c->used = 0;
}

static int conn_open(struct conn *c)
{
    int one = 1;

    conn_close(c);
    for (const struct addrinfo *a = c->ai; a != NULL; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        int rc;

        if (fd < 0)
            continue;
        do
            rc = connect(fd, a->ai_addr, a->ai_addrlen);
        while (rc != 0 && errno == EINTR);
        if (rc == 0) {
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            c->fd = fd;
            return 0;
        }
        close(fd);
    }
    return -1;
}

static int send_all(struct conn *c, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Receive until the buffer holds WANT bytes (0: at least one more). 0, or -1 on EOF or error. */
static int fill(struct conn *c, size_t want)
{
    if (want == 0)
        want = c->len + 1;
    while (c->len < want) {
        ssize_t n;

        if (want > c->cap || c->len == c->cap) {
            size_t cap = c->cap == 0 ? 65536u : c->cap * 2;
            char *p;

            while (cap < want)
                cap *= 2;
            p = realloc(c->buf, cap);
            if (p == NULL)
                die("out of memory");
            c->buf = p;
            c->cap = cap;
        }
        n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        c->len += (size_t)n;
    }
    return 0;
}

/* Header line [P, END) named NAME: its trimmed value and length, else NULL. */
static const char *header(const char *p, const char *end, const char *name, size_t *vlen)
{
    size_t n = strlen(name);

    if ((size_t)(end - p) <= n || p[n] != ':' || strncasecmp(p, name, n) != 0)
        return NULL;
    p += n + 1;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        end--;
    *vlen = (size_t)(end - p);
    return p;
}

/* Read one response into R. 0, or -1 (the caller closes the connection). */
static int read_reply(struct conn *c, struct reply *r)
{
    const char *eoh, *line, *stop;
    size_t head;
    unsigned long long clen = 0;
    bool have_clen = false;

    /* Drop the previous response: what follows it moves to the front. */
    if (c->used > 0) {
        memmove(c->buf, c->buf + c->used, c->len - c->used);
        c->len -= c->used;
        c->used = 0;
    }
    while ((eoh = c->len >= 4 ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL) == NULL)
        if (c->len > HEADER_MAX || fill(c, 0) != 0)
            return -1;
    head = (size_t)(eoh - c->buf) + 4;
    memset(r, 0, sizeof(*r));
    if (head < 16 || strncmp(c->buf, "HTTP/1.", 7) != 0)
        return -1;
    r->status = atoi(c->buf + 9);
    r->close = c->buf[7] == '0';
    line = (const char *)memchr(c->buf, '\n', head) + 1;
    stop = eoh + 2;
    while (line < stop) {
        const char *eol = memchr(line, '\n', (size_t)(stop - line)), *v;
        size_t vlen;

        if ((v = header(line, eol, "Content-Length", &vlen)) != NULL) {
            char *end;

            clen = strtoull(v, &end, 10);
            if (end != v + vlen || vlen == 0 || clen > BODY_MAX)
                return -1;
            have_clen = true;
        } else if ((v = header(line, eol, "Transfer-Encoding", &vlen)) != NULL) {
            die("a chunked response: this runtime reads Content-Length framing only");
        } else if ((v = header(line, eol, "Connection", &vlen)) != NULL) {
            r->close = vlen == 5 && strncasecmp(v, "close", 5) == 0;
        } else if ((v = header(line, eol, "Lambda-Runtime-Aws-Request-Id", &vlen)) != NULL) {
            if (vlen == 0 || vlen >= sizeof(r->id))
                return -1;
            memcpy(r->id, v, vlen);
            r->id[vlen] = '\0';
        }
        line = eol + 1;
    }
    if (!have_clen)
        die("a response without Content-Length");
    if (fill(c, head + (size_t)clen) != 0)
        return -1;
    r->body = c->buf + head;
    r->body_len = (size_t)clen;
    c->used = head + (size_t)clen;
    return 0;
}

/*
 * Send REQ and read the reply; on a connection that had served before, a failure is retried
 * once on a new one (the server may have closed it while idle). 0, or -1: the API is gone.
 */
static int roundtrip(struct conn *c, const char *req, size_t len, struct reply *r)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        bool fresh = c->fd < 0;

        if (fresh && conn_open(c) != 0)
            return -1;
        if (send_all(c, req, len) == 0 && read_reply(c, r) == 0)
            return 0;
        conn_close(c);
        if (fresh)
            return -1;
    }
    return -1;
}

/* ---- latency -------------------------------------------------------------------------- */

/* One line per MARK in BODY: NOW - T in µs, appended to FD (write errors are reported once). */
static void report_latency(int fd, const char *body, size_t len, int64_t now)
{
    static bool warned;
    char out[LAT_LINES_MAX * 24];
    size_t off = 0;
    const char *p = body, *end = body + len;

    while ((p = memmem(p, (size_t)(end - p), MARK, sizeof(MARK) - 1)) != NULL) {
        int64_t t = 0;

        p += sizeof(MARK) - 1;
        while (p < end && *p >= '0' && *p <= '9')
            t = t * 10 + (*p++ - '0');
        off += (size_t)snprintf(out + off, sizeof(out) - off, "%lld\n", (long long)(now - t));
        if (off + 24 >= sizeof(out)) {
            if (write(fd, out, off) != (ssize_t)off && !warned) {
                fprintf(stderr, "esm_bootstrap: cannot write SY_BENCH_LAT_FILE: %s\n",
                        strerror(errno));
                warned = true;
            }
            off = 0;
        }
    }
    if (off > 0 && write(fd, out, off) != (ssize_t)off && !warned) {
        fprintf(stderr, "esm_bootstrap: cannot write SY_BENCH_LAT_FILE: %s\n", strerror(errno));
        warned = true;
    }
}

/* ---- main ------------------------------------------------------------------------------- */

int main(void)
{
    const char *api = getenv("AWS_LAMBDA_RUNTIME_API"), *lat_path = getenv("SY_BENCH_LAT_FILE");
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct conn c = {.fd = -1};
    char host[256], next_req[512], post[1024];
    const char *colon;
    int next_len, lat_fd = -1, rc;

    if (api == NULL || (colon = strrchr(api, ':')) == NULL || colon == api ||
        (size_t)(colon - api) >= sizeof(host))
        die("AWS_LAMBDA_RUNTIME_API must be HOST:PORT");
    memcpy(host, api, (size_t)(colon - api));
    host[colon - api] = '\0';
    rc = getaddrinfo(host, colon + 1, &hints, &c.ai);
    if (rc != 0) {
        fprintf(stderr, "esm_bootstrap: resolve %s: %s\n", api, gai_strerror(rc));
        return 1;
    }
    if (lat_path != NULL && lat_path[0] != '\0') {
        lat_fd = open(lat_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (lat_fd < 0) {
            fprintf(stderr, "esm_bootstrap: open %s: %s\n", lat_path, strerror(errno));
            return 1;
        }
    }
    next_len = snprintf(next_req, sizeof(next_req),
                        "GET " PREFIX "next HTTP/1.1\r\nHost: %s\r\n\r\n", api);
    if (next_len < 0 || (size_t)next_len >= sizeof(next_req))
        die("AWS_LAMBDA_RUNTIME_API is too long");

    for (;;) {
        struct reply r;
        int64_t now;
        int n;

        if (roundtrip(&c, next_req, (size_t)next_len, &r) != 0)
            break;
        now = realtime_us();
        if (r.status != 200) {
            fprintf(stderr, "esm_bootstrap: invocation/next answered %d: %.*s\n", r.status,
                    (int)(r.body_len > 512 ? 512 : r.body_len), r.body);
            return 1;
        }
        if (r.id[0] == '\0' || strpbrk(r.id, "/?#% ") != NULL)
            die("invocation/next: missing or bad Lambda-Runtime-Aws-Request-Id");
        if (lat_fd >= 0)
            report_latency(lat_fd, r.body, r.body_len, now);
        if (r.close)
            conn_close(&c);
        n = snprintf(post, sizeof(post),
                     "POST " PREFIX "%s/response HTTP/1.1\r\nHost: %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
                     r.id, api);
        if (n < 0 || (size_t)n >= sizeof(post))
            die("request id too long");
        if (roundtrip(&c, post, (size_t)n, &r) != 0)
            break;
        if (r.status != 202)
            fprintf(stderr, "esm_bootstrap: a response post was answered %d: %.*s\n", r.status,
                    (int)(r.body_len > 512 ? 512 : r.body_len), r.body);
        if (r.close)
            conn_close(&c);
    }
    conn_close(&c);
    free(c.buf);
    freeaddrinfo(c.ai);
    if (lat_fd >= 0)
        close(lat_fd);
    return 0;
}
