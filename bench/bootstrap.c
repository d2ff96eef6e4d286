/*
 * bench/bootstrap.c - `bootstrap`: a minimal, fast `provided` runtime that echoes every event back.
 *
 * What the benches use as the runtime side of a warm invoke, so that what they measure is the
 * broker and not an interpreter: one keep-alive TCP connection (TCP_NODELAY) to the Runtime API
 * named by AWS_LAMBDA_RUNTIME_API (HOST:PORT, [V6]:PORT), and on it, forever:
 *
 *   GET  /2018-06-01/runtime/invocation/next            -> 200, the event, its request id
 *   POST /2018-06-01/runtime/invocation/ID/response     <- the same bytes; -> 202
 *
 * C17 and libc only. One growable receive buffer, reused: the event is read into it and sent
 * back from it (headers and body in one sendmsg), so a warm invoke costs two sends, usually two
 * receives and no allocation. Responses are framed by Content-Length (what core/httpd.c
 * sends), chunked transfer coding, or the end of the connection; 1xx interim responses are
 * skipped.
 *
 * The connection: when the server closes it (or any read or write on it fails), the next
 * `next` goes out on a new one. If a new connection cannot be made, or `next` fails on a fresh
 * connection too, the Runtime API is gone and the bootstrap exits 0. A `next` answered with
 * anything but 200 (e.g. 403 InvalidStateTransition) is a protocol error: exit 1. A response post
 * answered with anything but 202 (e.g. 413 for an event over the response limit) is reported on
 * stderr and the loop goes on, as the broker has already failed that invocation.
 *
 * Nothing is printed per invocation; errors go to stderr (the function log).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* MSG_NOSIGNAL, SOCK_CLOEXEC, memmem */
#endif

#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#define PREFIX "/2018-06-01/runtime/invocation/"
#define BUF_INITIAL 65536u
#define HEADER_MAX 65536u              /* status line + headers of one response */
#define BODY_MAX (64u * 1024u * 1024u) /* far above Lambda's 6 MiB; a guard, not a limit */
#define ID_MAX 128u

/* The Runtime API connection and its receive buffer: unconsumed bytes are buf[off, len). */
struct rt {
    struct addrinfo *ai; /* resolved once; owned */
    const char *host;    /* the Host header: AWS_LAMBDA_RUNTIME_API as given; borrowed */
    int fd;              /* -1 when not connected */
    char *buf;
    size_t cap, len, off;
};

/* One parsed response. body points into rt->buf and is valid until the next read. */
struct resp {
    int status;
    bool close; /* the server closes the connection after this response */
    char id[ID_MAX];
    size_t body, body_len; /* offset into rt->buf, length */
};

static void die(const char *what)
{
    fprintf(stderr, "bootstrap: %s\n", what);
    exit(1);
}

/* ---- connection ------------------------------------------------------------------------ */

/* Resolve AWS_LAMBDA_RUNTIME_API ("HOST:PORT", "[V6]:PORT"; port 80 when absent). */
static void rt_resolve(struct rt *rt, const char *api)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    char host[256];
    const char *port = "80";
    const char *colon;
    size_t hlen;
    int rc;

    if (api[0] == '[') {
        const char *end = strchr(api, ']');

        if (end == NULL)
            die("AWS_LAMBDA_RUNTIME_API: unterminated [IPv6] address");
        hlen = (size_t)(end - api - 1);
        if (hlen >= sizeof(host))
            die("AWS_LAMBDA_RUNTIME_API: host too long");
        memcpy(host, api + 1, hlen);
        if (end[1] == ':')
            port = end + 2;
        else if (end[1] != '\0')
            die("AWS_LAMBDA_RUNTIME_API: expected [HOST]:PORT");
    } else {
        colon = strrchr(api, ':');
        hlen = colon != NULL ? (size_t)(colon - api) : strlen(api);
        if (hlen >= sizeof(host))
            die("AWS_LAMBDA_RUNTIME_API: host too long");
        memcpy(host, api, hlen);
        if (colon != NULL)
            port = colon + 1;
    }
    host[hlen] = '\0';
    if (host[0] == '\0' || port[0] == '\0')
        die("AWS_LAMBDA_RUNTIME_API: expected HOST:PORT");
    rc = getaddrinfo(host, port, &hints, &rt->ai);
    if (rc != 0) {
        fprintf(stderr, "bootstrap: resolve %s: %s\n", api, gai_strerror(rc));
        exit(1);
    }
}

static void rt_close(struct rt *rt)
{
    if (rt->fd >= 0)
        close(rt->fd);
    rt->fd = -1;
    rt->len = rt->off = 0;
}

/* Connect to the first address that accepts. Returns 0, or -1 (errno of the last attempt). */
static int rt_connect(struct rt *rt)
{
    int one = 1, err = ECONNREFUSED;

    rt_close(rt);
    for (const struct addrinfo *a = rt->ai; a != NULL; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        int rc;

        if (fd < 0) {
            err = errno;
            continue;
        }
        do
            rc = connect(fd, a->ai_addr, a->ai_addrlen);
        while (rc != 0 && errno == EINTR);
        if (rc == 0) {
            /* Requests go out whole in one send; never let Nagle hold one back. */
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            rt->fd = fd;
            return 0;
        }
        err = errno;
        close(fd);
    }
    errno = err;
    return -1;
}

/* Send IOV[0..N) whole. Returns 0 or -1. */
static int send_all(struct rt *rt, struct iovec *iov, int n)
{
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};

    while (msg.msg_iovlen > 0) {
        ssize_t w = sendmsg(rt->fd, &msg, MSG_NOSIGNAL);
        size_t done;

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        /* Skip what went out: whole iovecs, then part of the next one. */
        done = (size_t)w;
        while (msg.msg_iovlen > 0 && done >= msg.msg_iov->iov_len) {
            done -= msg.msg_iov->iov_len;
            msg.msg_iov++;
            msg.msg_iovlen--;
        }
        if (msg.msg_iovlen > 0) {
            msg.msg_iov->iov_base = (char *)msg.msg_iov->iov_base + done;
            msg.msg_iov->iov_len -= done;
        }
    }
    return 0;
}

/*
 * Receive into the buffer until it holds at least WANT bytes from its start (growing it to fit,
 * and by half again when it is full and WANT is 0: "whatever comes next"). Never moves data, so
 * offsets into the buffer stay valid. Returns 1, 0 on EOF, -1 on error.
 */
static int fill(struct rt *rt, size_t want)
{
    do {
        ssize_t n;

        if (want > rt->cap || rt->len == rt->cap) {
            size_t cap = rt->cap == 0 ? BUF_INITIAL : rt->cap + rt->cap / 2;
            char *p;

            if (cap < want)
                cap = want;
            p = realloc(rt->buf, cap);
            if (p == NULL)
                die("out of memory");
            rt->buf = p;
            rt->cap = cap;
        }
        n = recv(rt->fd, rt->buf + rt->len, rt->cap - rt->len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            return 0;
        rt->len += (size_t)n;
    } while (rt->len < want);
    return 1;
}

/* ---- responses ------------------------------------------------------------------------- */

/* Offset of the first CRLF at or after FROM, reading more as needed; -1 on EOF or error. */
static long find_crlf(struct rt *rt, size_t from, size_t limit)
{
    for (;;) {
        const char *p = rt->len > from ? memmem(rt->buf + from, rt->len - from, "\r\n", 2) : NULL;

        if (p != NULL)
            return (long)(p - rt->buf);
        if (rt->len - from > limit || fill(rt, 0) <= 0)
            return -1;
    }
}

/* Decode a chunked body starting at START in place. Returns 0 (R's body set) or -1. */
static int read_chunked(struct rt *rt, size_t start, struct resp *r)
{
    size_t w = start, pos = start;

    for (;;) {
        long eol = find_crlf(rt, pos, 1024);
        unsigned long long size;
        char *end;

        if (eol < 0)
            return -1;
        errno = 0;
        size = strtoull(rt->buf + pos, &end, 16);
        if (errno != 0 || end == rt->buf + pos || size > BODY_MAX - (w - start))
            return -1;
        pos = (size_t)eol + 2;
        if (size == 0)
            break;
        if (rt->len < pos + size + 2 && fill(rt, pos + size + 2) <= 0)
            return -1;
        if (memcmp(rt->buf + pos + size, "\r\n", 2) != 0)
            return -1;
        memmove(rt->buf + w, rt->buf + pos, size);
        w += size;
        pos += size + 2;
    }
    /* Trailers, up to the empty line. */
    for (;;) {
        long eol = find_crlf(rt, pos, HEADER_MAX);

        if (eol < 0)
            return -1;
        if ((size_t)eol == pos) {
            pos += 2;
            break;
        }
        pos = (size_t)eol + 2;
    }
    r->body = start;
    r->body_len = w - start;
    rt->off = pos;
    return 0;
}

/* Header line [P, END) as NAME: VALUE with the value trimmed. Returns the value or NULL. */
static const char *header_value(char *p, char *end, const char *name, size_t *vlen)
{
    size_t n = strlen(name);

    if ((size_t)(end - p) <= n || p[n] != ':' || strncasecmp(p, name, n) != 0)
        return NULL;
    p += n + 1;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *vlen = (size_t)(end - p);
    return p;
}

/*
 * Read one response (skipping 1xx ones) into R. The body is left in the buffer. Returns 0, or
 * -1 when the connection failed or the response cannot be parsed (the caller closes it).
 */
static int read_response(struct rt *rt, struct resp *r)
{
    for (;;) {
        size_t hend, body;
        unsigned long long clen = 0;
        bool has_clen = false, chunked = false;
        char *line, *stop, *p;

        /* Compact: what is left of the previous response goes to the front. */
        if (rt->off > 0) {
            memmove(rt->buf, rt->buf + rt->off, rt->len - rt->off);
            rt->len -= rt->off;
            rt->off = 0;
        }
        for (;;) {
            const char *e = rt->len >= 4 ? memmem(rt->buf, rt->len, "\r\n\r\n", 4) : NULL;

            if (e != NULL) {
                hend = (size_t)(e - rt->buf) + 2; /* the CRLF ending the last header */
                break;
            }
            if (rt->len > HEADER_MAX || fill(rt, 0) <= 0)
                return -1;
        }
        body = hend + 2;

        memset(r, 0, sizeof(*r));
        line = rt->buf;
        if (hend < 12 || strncmp(line, "HTTP/1.", 7) != 0 || line[8] != ' ')
            return -1;
        r->status = atoi(line + 9);
        if (r->status < 100 || r->status > 999)
            return -1;
        r->close = line[7] == '0'; /* HTTP/1.0: closes unless told otherwise */

        stop = rt->buf + hend;
        /* Every line up to STOP ends with '\n' (the CRLF at hend - 2 ends the last one). */
        line = (char *)memchr(line, '\n', (size_t)(stop - line)) + 1;
        while (line < stop) {
            char *eol = memchr(line, '\n', (size_t)(stop - line));
            const char *v;
            size_t vlen;

            if (eol == NULL)
                return -1;

            p = eol > line && eol[-1] == '\r' ? eol - 1 : eol;
            if ((v = header_value(line, p, "Content-Length", &vlen)) != NULL) {
                char *end;

                errno = 0;
                clen = strtoull(v, &end, 10);
                if (errno != 0 || end != v + vlen || vlen == 0 || clen > BODY_MAX)
                    return -1;
                has_clen = true;
            } else if ((v = header_value(line, p, "Transfer-Encoding", &vlen)) != NULL) {
                chunked = vlen >= 7 && strncasecmp(v + vlen - 7, "chunked", 7) == 0;
            } else if ((v = header_value(line, p, "Connection", &vlen)) != NULL) {
                if (vlen == 5 && strncasecmp(v, "close", 5) == 0)
                    r->close = true;
                else if (vlen == 10 && strncasecmp(v, "keep-alive", 10) == 0)
                    r->close = false;
            } else if ((v = header_value(line, p, "Lambda-Runtime-Aws-Request-Id", &vlen)) !=
                       NULL) {
                if (vlen >= sizeof(r->id))
                    return -1;
                memcpy(r->id, v, vlen);
                r->id[vlen] = '\0';
            }
            line = eol + 1;
        }

        if (r->status < 200) { /* 100 Continue and friends: no body, the real answer follows */
            rt->off = body;
            continue;
        }
        if (r->status == 204 || r->status == 304) {
            r->body = body;
            rt->off = body;
            return 0;
        }
        if (chunked)
            return read_chunked(rt, body, r);
        if (has_clen) {
            if (rt->len < body + clen && fill(rt, body + clen) <= 0)
                return -1;
            r->body = body;
            r->body_len = (size_t)clen;
            rt->off = body + clen;
            return 0;
        }
        /* Neither: the body is everything up to the end of the connection. */
        for (;;) {
            int rc;

            if (rt->len - body > BODY_MAX)
                return -1;
            rc = fill(rt, 0);
            if (rc < 0)
                return -1;
            if (rc == 0)
                break;
        }
        r->body = body;
        r->body_len = rt->len - body;
        rt->off = rt->len;
        r->close = true;
        return 0;
    }
}

/* ---- the loop -------------------------------------------------------------------------- */

/*
 * GET next, on the current connection or a new one. A failure on a connection that had already
 * served is retried once on a new connection (the server may have closed an idle keep-alive
 * connection). Returns 0, or -1 when the Runtime API is unreachable.
 */
static int get_next(struct rt *rt, struct resp *r, const char *req, size_t req_len)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        struct iovec iov = {.iov_base = (void *)req, .iov_len = req_len};
        bool fresh = rt->fd < 0;

        if (fresh && rt_connect(rt) != 0)
            return -1;
        if (send_all(rt, &iov, 1) == 0 && read_response(rt, r) == 0)
            return 0;
        rt_close(rt);
        if (fresh)
            return -1;
    }
    return -1;
}

/* An id safe to put in the path: printable, no space, no URL delimiters. */
static bool id_ok(const char *id)
{
    if (id[0] == '\0')
        return false;
    for (const char *p = id; *p != '\0'; p++)
        if (*p <= ' ' || *p >= 127 || strchr("/?#%", *p) != NULL)
            return false;
    return true;
}

int main(void)
{
    const char *api = getenv("AWS_LAMBDA_RUNTIME_API");
    struct rt rt = {.fd = -1};
    char next_req[512], post_hdr[512];
    int next_len;

    if (api == NULL || api[0] == '\0')
        die("AWS_LAMBDA_RUNTIME_API is not set");
    rt_resolve(&rt, api);
    rt.host = api;
    next_len = snprintf(next_req, sizeof(next_req),
                        "GET " PREFIX "next HTTP/1.1\r\nHost: %s\r\n\r\n", api);
    if (next_len < 0 || (size_t)next_len >= sizeof(next_req))
        die("AWS_LAMBDA_RUNTIME_API is too long");

    for (;;) {
        struct resp r;
        struct iovec iov[2];
        char id[ID_MAX];
        int hlen, rc;

        if (get_next(&rt, &r, next_req, (size_t)next_len) != 0)
            break; /* the Runtime API is gone: the environment is being shut down */
        if (r.status != 200) {
            fprintf(stderr, "bootstrap: invocation/next answered %d: %.*s\n", r.status,
                    (int)(r.body_len > 512 ? 512 : r.body_len), rt.buf + r.body);
            return 1;
        }
        if (!id_ok(r.id))
            die("invocation/next: missing or bad Lambda-Runtime-Aws-Request-Id");

        snprintf(id, sizeof(id), "%s", r.id);
        hlen = snprintf(post_hdr, sizeof(post_hdr),
                        "POST " PREFIX "%s/response HTTP/1.1\r\nHost: %s\r\n"
                        "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                        id, rt.host, r.body_len);
        if (hlen < 0 || (size_t)hlen >= sizeof(post_hdr))
            die("request id too long");
        iov[0].iov_base = post_hdr;
        iov[0].iov_len = (size_t)hlen;
        iov[1].iov_base = rt.buf + r.body;
        iov[1].iov_len = r.body_len;
        if (r.close) {
            /* The server closes this connection: post on a new one (the event leaves the
             * buffer first, as the reconnect resets it). */
            char *copy = malloc(r.body_len + 1);

            if (copy == NULL)
                die("out of memory");
            memcpy(copy, iov[1].iov_base, r.body_len);
            iov[1].iov_base = copy;
            rt_close(&rt);
            if (rt_connect(&rt) != 0) {
                free(copy);
                break; /* the Runtime API is gone */
            }
            rc = send_all(&rt, iov, 2) != 0 ? -1 : read_response(&rt, &r);
            free(copy);
        } else {
            rc = send_all(&rt, iov, 2) != 0 ? -1 : read_response(&rt, &r);
        }
        if (rc == 0 && r.status != 202)
            fprintf(stderr, "bootstrap: the response of %s was answered %d: %.*s\n", id, r.status,
                    (int)(r.body_len > 512 ? 512 : r.body_len), rt.buf + r.body);
        /* After a failure the post may well have arrived; either way `next` reconnects. */
        if (rc != 0 || r.close)
            rt_close(&rt);
    }
    rt_close(&rt);
    free(rt.buf);
    freeaddrinfo(rt.ai);
    return 0;
}
