/*
 * tests/unit/loopclient.h - a blocking HTTP client thread for unit tests of loop-side servers.
 *
 * The server under test runs on the test's libevent loop in the main thread; a script runs in
 * a second thread with plain blocking sockets (every read bounded by SO_RCVTIMEO) and, when it
 * is done, writes to a pipe that breaks the loop. Header-only: each test binary includes it
 * once.
 */
#ifndef SY_TEST_LOOPCLIENT_H
#define SY_TEST_LOOPCLIENT_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/event.h>

struct lc_resp {
    int status;
    char headers[4096];
    char *body;
    size_t body_len;
};

static inline int lc_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {.tv_sec = 10, .tv_usec = 0};
    int one = 1;

    inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static inline int lc_send(int fd, const void *p, size_t n)
{
    const char *c = p;

    while (n > 0) {
        ssize_t w = write(fd, c, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static inline int lc_send_str(int fd, const char *s)
{
    return lc_send(fd, s, strlen(s));
}

/* Read one response (Content-Length framed; a 1xx interim response is returned like any
 * other). Reads the head byte by byte so nothing of a following response is consumed.
 * Returns 0, or -1 on EOF/timeout before a whole response. */
static inline int lc_read(int fd, struct lc_resp *r)
{
    size_t hlen = 0, clen = 0, got = 0;
    const char *cl;

    memset(r, 0, sizeof(*r));
    while (hlen < 4 || memcmp(r->headers + hlen - 4, "\r\n\r\n", 4) != 0) {
        ssize_t n;

        if (hlen >= sizeof(r->headers) - 1)
            return -1;
        n = read(fd, r->headers + hlen, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        hlen++;
    }
    r->headers[hlen] = '\0';
    r->status = atoi(r->headers + 9);
    cl = strcasestr(r->headers, "\r\nContent-Length:");
    if (cl != NULL)
        clen = strtoul(cl + 17, NULL, 10);
    r->body = malloc(clen + 1);
    r->body_len = clen;
    while (got < clen) {
        ssize_t n = read(fd, r->body + got, clen - got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            free(r->body);
            r->body = NULL;
            return -1;
        }
        got += (size_t)n;
    }
    r->body[clen] = '\0';
    return 0;
}

static inline void lc_free(struct lc_resp *r)
{
    free(r->body);
    r->body = NULL;
}

/* Value of header NAME in R (copied into OUT), or NULL. */
static inline const char *lc_header(const struct lc_resp *r, const char *name, char *out,
                                    size_t outsz)
{
    char pat[128];
    const char *p;
    size_t k = 0;

    snprintf(pat, sizeof(pat), "\r\n%s:", name);
    p = strcasestr(r->headers, pat);
    if (p == NULL)
        return NULL;
    p += strlen(pat);
    while (*p == ' ')
        p++;
    while (*p != '\r' && *p != '\0' && k + 1 < outsz)
        out[k++] = *p++;
    out[k] = '\0';
    return out;
}

/* ---- running a client script against the loop -------------------------------------------- */

struct lc_run {
    void (*script)(void *arg);
    void *arg;
    int pipe_fds[2];
    struct event_base *base;
};

static inline void *lc_thread(void *p)
{
    struct lc_run *run = p;

    run->script(run->arg);
    if (write(run->pipe_fds[1], "x", 1) != 1)
        abort();
    return NULL;
}

static inline void lc_done_cb(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(arg);
}

/* Run SCRIPT(ARG) in a thread while BASE's loop runs here; returns when the script ends or
 * after 30 s (returns -1 then). */
static inline int lc_run_script(struct event_base *base, void (*script)(void *), void *arg)
{
    struct lc_run run = {.script = script, .arg = arg, .base = base};
    struct event *ev;
    struct event *guard;
    struct timeval limit = {.tv_sec = 30, .tv_usec = 0};
    pthread_t th;
    char c;
    int rc = 0;

    if (pipe(run.pipe_fds) != 0)
        return -1;
    fcntl(run.pipe_fds[0], F_SETFL, O_NONBLOCK);
    ev = event_new(base, run.pipe_fds[0], EV_READ, lc_done_cb, base);
    guard = evtimer_new(base, lc_done_cb, base);
    event_add(ev, NULL);
    evtimer_add(guard, &limit);
    pthread_create(&th, NULL, lc_thread, &run);
    event_base_dispatch(base);
    if (read(run.pipe_fds[0], &c, 1) != 1)
        rc = -1; /* guard fired: the script is stuck; joining would hang */
    else
        pthread_join(th, NULL);
    event_free(ev);
    event_free(guard);
    close(run.pipe_fds[0]);
    close(run.pipe_fds[1]);
    return rc;
}

#endif
