/*
 * core/httpc.c - the CLI's blocking HTTP/1.1 client (see httpc.h).
 *
 * The socket is non-blocking and every wait goes through poll() with the caller's timeout, so
 * neither a dead address nor a silent server can hang the CLI. SIGPIPE is avoided per call
 * (MSG_NOSIGNAL) rather than by changing the process's signal dispositions.
 */
#include "httpc.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "time.h"

#define MAX_HEAD (64u * 1024u)
#define MAX_BODY (64u * 1024u * 1024u)

int httpc_parse_url(const char *url, struct httpc_url *out, struct sy_error *err)
{
    const char *p, *hend, *slash;
    size_t hlen;

    memset(out, 0, sizeof(*out));
    if (strncasecmp(url, "https://", 8) == 0) {
        sy_error_set(err, "'%s': https is not supported by the switchyard CLI (use http://)", url);
        return SY_EINVAL;
    }
    if (strncasecmp(url, "http://", 7) != 0) {
        sy_error_set(err, "'%s' is not an http:// URL", url);
        return SY_EINVAL;
    }
    p = url + 7;
    slash = strchr(p, '/');
    if (slash == NULL)
        slash = p + strlen(p);
    if (*p == '[') {
        hend = memchr(p, ']', (size_t)(slash - p));
        if (hend == NULL) {
            sy_error_set(err, "'%s': unterminated IPv6 address", url);
            return SY_EINVAL;
        }
        hlen = (size_t)(hend - p - 1);
        p++;
        hend++;
    } else {
        hend = memchr(p, ':', (size_t)(slash - p));
        if (hend == NULL)
            hend = slash;
        hlen = (size_t)(hend - p);
    }
    if (hlen == 0 || hlen >= sizeof(out->host)) {
        sy_error_set(err, "'%s': bad host", url);
        return SY_EINVAL;
    }
    memcpy(out->host, p, hlen);
    if (*hend == ':') {
        size_t plen = (size_t)(slash - hend - 1);

        if (plen == 0 || plen >= sizeof(out->port) || strspn(hend + 1, "0123456789") < plen) {
            sy_error_set(err, "'%s': bad port", url);
            return SY_EINVAL;
        }
        memcpy(out->port, hend + 1, plen);
    } else if (hend != slash) {
        sy_error_set(err, "'%s': bad host", url);
        return SY_EINVAL;
    } else {
        strcpy(out->port, "80");
    }
    if (strlen(slash) >= sizeof(out->prefix)) {
        sy_error_set(err, "'%s': path too long", url);
        return SY_EINVAL;
    }
    strcpy(out->prefix, slash);
    while (out->prefix[0] != '\0' && out->prefix[strlen(out->prefix) - 1] == '/')
        out->prefix[strlen(out->prefix) - 1] = '\0';
    return 0;
}

char *httpc_escape_segment(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    struct buf b = {0};

    if (buf_reserve(&b, strlen(s) * 3) != 0)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            b.data[b.len++] = (char)*p;
        } else {
            b.data[b.len++] = '%';
            b.data[b.len++] = hex[*p >> 4];
            b.data[b.len++] = hex[*p & 15];
        }
    }
    b.data[b.len] = '\0';
    return buf_take(&b, NULL);
}

/* Wait for EVENTS on FD for at most MS. Returns 0 when ready, SY_EIO on timeout/error. */
static int wait_fd(int fd, short events, int ms)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    uint64_t deadline = time_mono_us() + (uint64_t)ms * 1000u;

    for (;;) {
        int64_t left = (int64_t)(deadline - time_mono_us()) / 1000;
        int rc;

        if (left < 0)
            left = 0;
        rc = poll(&pfd, 1, (int)left);
        if (rc > 0)
            return 0;
        if (rc == 0)
            return SY_EIO;
        if (errno != EINTR)
            return SY_EIO;
    }
}

static int connect_to(const struct httpc_url *u, int connect_ms, struct sy_error *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int gai, fd = -1;
    int last_errno = 0;

    gai = getaddrinfo(u->host, u->port, &hints, &res);
    if (gai != 0) {
        sy_error_set(err, "cannot resolve %s: %s", u->host, gai_strerror(gai));
        return SY_EIO;
    }
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int soerr = 0;
        socklen_t sl = sizeof(soerr);

        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        if (errno == EINPROGRESS) {
            if (wait_fd(fd, POLLOUT, connect_ms) != 0) {
                last_errno = ETIMEDOUT;
            } else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0) {
                break;
            } else {
                last_errno = soerr ? soerr : errno;
            }
        } else {
            last_errno = errno;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        sy_error_set(err, "cannot connect to %s:%s: %s", u->host, u->port,
                     strerror(last_errno ? last_errno : ECONNREFUSED));
        return SY_EIO;
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t n, int ms, struct sy_error *err)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_fd(fd, POLLOUT, ms) != 0) {
                sy_error_set(err, "timed out sending the request");
                return SY_EIO;
            }
            continue;
        }
        if (w < 0) {
            sy_error_set(err, "cannot send the request: %s", strerror(errno));
            return SY_EIO;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/*
 * Decode a chunked body from IN (N bytes) into OUT. Returns 1 when complete, 0 when more
 * input is needed, -1 on malformed framing.
 */
static int dechunk(const char *in, size_t n, struct buf *out)
{
    size_t pos = 0;

    buf_reset(out);
    for (;;) {
        const char *eol = memmem(in + pos, n - pos, "\r\n", 2);
        char *end;
        unsigned long long sz;

        if (eol == NULL)
            return 0;
        sz = strtoull(in + pos, &end, 16);
        if (end == in + pos || (end != eol && *end != ';'))
            return -1;
        pos = (size_t)(eol - in) + 2;
        if (sz == 0) {
            /* Trailers, then an empty line. */
            for (;;) {
                eol = memmem(in + pos, n - pos, "\r\n", 2);
                if (eol == NULL)
                    return 0;
                if (eol == in + pos)
                    return 1;
                pos = (size_t)(eol - in) + 2;
            }
        }
        if (sz > MAX_BODY || n - pos < sz + 2)
            return sz > MAX_BODY ? -1 : 0;
        if (buf_append(out, in + pos, (size_t)sz) != 0)
            return -1;
        pos += (size_t)sz + 2;
    }
}

/* Parse the status line and headers (HEAD, NUL-terminated, without the blank line). */
static int parse_head(char *head, struct httpc_resp *resp)
{
    char *line = head, *next;

    if (strncmp(line, "HTTP/1.", 7) != 0 || strlen(line) < 12)
        return -1;
    resp->status = atoi(line + 9);
    if (resp->status < 100 || resp->status > 999)
        return -1;
    next = strstr(line, "\r\n");
    while (next != NULL) {
        char *colon, *v, **nh;
        size_t vl;

        line = next + 2;
        next = strstr(line, "\r\n");
        if (next != NULL)
            *next = '\0';
        if (*line == '\0')
            break;
        colon = strchr(line, ':');
        if (colon == NULL)
            return -1;
        *colon = '\0';
        v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        vl = strlen(v);
        while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            v[--vl] = '\0';
        nh = realloc(resp->hdrs, (resp->n_hdrs + 1) * 2 * sizeof(*nh));
        if (nh == NULL)
            return -1;
        resp->hdrs = nh;
        nh[2 * resp->n_hdrs] = strdup(line);
        nh[2 * resp->n_hdrs + 1] = strdup(v);
        resp->n_hdrs++;
        if (nh[2 * resp->n_hdrs - 2] == NULL || nh[2 * resp->n_hdrs - 1] == NULL)
            return -1;
    }
    return 0;
}

int httpc_request(const char *endpoint, const char *method, const char *path,
                  const char *const *headers, const void *body, size_t len, int connect_ms,
                  int read_ms, struct httpc_resp *resp, struct sy_error *err)
{
    struct httpc_url u;
    struct buf req = {0}, in = {0}, dec = {0};
    size_t head_len = 0; /* bytes of head including the blank line, once known */
    int fd = -1, rc;
    int chunked = 0, have_cl = 0, no_body = 0, done = 0;
    unsigned long long cl = 0;

    memset(resp, 0, sizeof(*resp));
    rc = httpc_parse_url(endpoint, &u, err);
    if (rc != 0)
        return rc;
    buf_printf(&req, "%s %s%s HTTP/1.1\r\nHost: %s%s%s:%s\r\nConnection: close\r\n", method,
               u.prefix, path, strchr(u.host, ':') ? "[" : "", u.host,
               strchr(u.host, ':') ? "]" : "", u.port);
    for (size_t i = 0; headers != NULL && headers[i] != NULL && headers[i + 1] != NULL; i += 2)
        buf_printf(&req, "%s: %s\r\n", headers[i], headers[i + 1]);
    if (body != NULL || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0)
        buf_printf(&req, "Content-Length: %zu\r\n", len);
    if (buf_puts(&req, "\r\n") != 0) {
        sy_error_set(err, "out of memory");
        rc = SY_ENOMEM;
        goto out;
    }

    fd = connect_to(&u, connect_ms, err);
    if (fd < 0) {
        rc = fd;
        goto out;
    }
    rc = send_all(fd, req.data, req.len, read_ms, err);
    if (rc == 0 && len > 0)
        rc = send_all(fd, body, len, read_ms, err);
    if (rc != 0)
        goto out;

    while (!done) {
        ssize_t r;

        if (buf_reserve(&in, 65536) != 0) {
            sy_error_set(err, "out of memory");
            rc = SY_ENOMEM;
            goto out;
        }
        r = recv(fd, in.data + in.len, 65536, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_fd(fd, POLLIN, read_ms) != 0) {
                sy_error_set(err, "no response within %d s", read_ms / 1000);
                rc = SY_EIO;
                goto out;
            }
            continue;
        }
        if (r < 0) {
            sy_error_set(err, "cannot read the response: %s", strerror(errno));
            rc = SY_EIO;
            goto out;
        }
        in.len += (size_t)r;
        in.data[in.len] = '\0';

        if (head_len == 0) {
            char *eoh = memmem(in.data, in.len, "\r\n\r\n", 4);
            const char *te, *clh;

            if (eoh == NULL) {
                if (in.len > MAX_HEAD || r == 0) {
                    sy_error_set(err, r == 0 ? "connection closed before a response"
                                             : "response head too large");
                    rc = SY_EIO;
                    goto out;
                }
                continue;
            }
            head_len = (size_t)(eoh - in.data) + 4;
            {
                char *head = strndup(in.data, head_len - 2);

                if (head == NULL || parse_head(head, resp) != 0) {
                    free(head);
                    sy_error_set(err, "malformed response from %s", endpoint);
                    rc = SY_EIO;
                    goto out;
                }
                free(head);
            }
            if (resp->status >= 100 && resp->status < 200) {
                /* An interim response (100 Continue): drop it and read on. */
                memmove(in.data, in.data + head_len, in.len - head_len);
                in.len -= head_len;
                in.data[in.len] = '\0';
                head_len = 0;
                httpc_resp_free(resp);
                continue;
            }
            te = httpc_header(resp, "Transfer-Encoding");
            clh = httpc_header(resp, "Content-Length");
            chunked = te != NULL && strcasecmp(te, "chunked") == 0;
            if (!chunked && clh != NULL) {
                have_cl = 1;
                cl = strtoull(clh, NULL, 10);
                if (cl > MAX_BODY) {
                    sy_error_set(err, "response body too large (%llu bytes)", cl);
                    rc = SY_EIO;
                    goto out;
                }
            }
            no_body = strcmp(method, "HEAD") == 0 || resp->status == 204 || resp->status == 304;
        }
        /* Is the body complete? */
        if (no_body) {
            done = 1;
        } else if (chunked) {
            int d = dechunk(in.data + head_len, in.len - head_len, &dec);

            if (d < 0) {
                sy_error_set(err, "malformed chunked response");
                rc = SY_EIO;
                goto out;
            }
            done = d == 1;
        } else if (have_cl) {
            done = in.len - head_len >= cl;
        } else if (in.len - head_len > MAX_BODY) {
            sy_error_set(err, "response body too large");
            rc = SY_EIO;
            goto out;
        }
        if (!done && r == 0) {
            if (chunked || have_cl) {
                sy_error_set(err, "connection closed before the whole response was read");
                rc = SY_EIO;
                goto out;
            }
            done = 1; /* body delimited by the end of the connection */
        }
    }
    if (no_body) {
        resp->body = calloc(1, 1);
        resp->body_len = 0;
    } else if (chunked) {
        resp->body = buf_take(&dec, &resp->body_len);
    } else {
        size_t blen = have_cl ? (size_t)cl : in.len - head_len;

        resp->body = malloc(blen + 1);
        if (resp->body != NULL) {
            memcpy(resp->body, in.data + head_len, blen);
            resp->body[blen] = '\0';
            resp->body_len = blen;
        }
    }
    if (resp->body == NULL) {
        sy_error_set(err, "out of memory");
        rc = SY_ENOMEM;
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (rc != 0)
        httpc_resp_free(resp);
    buf_free(&req);
    buf_free(&in);
    buf_free(&dec);
    return rc;
}

const char *httpc_header(const struct httpc_resp *resp, const char *name)
{
    for (size_t i = 0; i < resp->n_hdrs; i++) {
        if (strcasecmp(resp->hdrs[2 * i], name) == 0)
            return resp->hdrs[2 * i + 1];
    }
    return NULL;
}

void httpc_resp_free(struct httpc_resp *resp)
{
    if (resp == NULL)
        return;
    for (size_t i = 0; i < resp->n_hdrs * 2; i++)
        free(resp->hdrs[i]);
    free(resp->hdrs);
    free(resp->body);
    memset(resp, 0, sizeof(*resp));
}
