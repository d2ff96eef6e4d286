/*
 * bench/invoke.c - `bench_invoke`: the invoke benchmark. It starts a real `switchyard run` on
 * loopback and prints one markdown table: warm sync invoke latency (p50/p99) and invokes/s at
 * concurrency 1 and 8 for a `provided` bootstrap and for Python, cold start of a provided
 * function, and the broker's resident size idle with 10 functions.
 *
 * Every row stands beside a baseline measured in the same run, because these machines are shared
 * and noisy:
 *   - warm rows: a bare keep-alive HTTP/1.1 echo server on loopback (a forked child running one
 *     libevent loop with bufferevents and a line parser, as lean as the broker's own HTTP layer),
 *     driven by the same client with the same request. It is the floor for this design: a sync
 *     invoke is at least one such round trip.
 *   - cold rows: the bootstrap's own start-up measured alone (spawn until its first
 *     `GET .../invocation/next` arrives on a socket of ours), plus the warm invoke median.
 *
 * Each measurement is repeated for --rounds rounds; the table shows the median of the per-round
 * figures. Baseline and product runs are interleaved within a round, and the overheads (Δ, ×)
 * are medians of per-round differences and ratios, so slow drift on the machine hits both sides.
 *
 * Every wait is bounded (socket timeouts, readiness and exit deadlines) and all traffic stays on
 * 127.0.0.1. Child processes get PR_SET_PDEATHSIG, so nothing outlives the bench.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>
#include <openssl/evp.h>

#ifndef SY_BINARY
#define SY_BINARY "switchyard"
#endif
#ifndef SY_BENCH_BOOTSTRAP
#define SY_BENCH_BOOTSTRAP "bootstrap"
#endif

#define PAYLOAD "{\"hello\":\"world\",\"n\":12345}"
#define N_COLD 8                /* cold-0 .. cold-7: one cold start each per broker run */
#define CONC 8                  /* the "c=8" concurrency */
#define IO_TIMEOUT_S 15         /* any single socket read or write */
#define READY_TIMEOUT_MS 15000  /* broker start until its ready line */
#define EXIT_TIMEOUT_MS 10000   /* SIGTERM until exit; then SIGKILL */
#define STARTUP_TIMEOUT_MS 5000 /* bootstrap spawn until its first request */
#define CONN_BUF 65536

/* ---- small helpers ---------------------------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Children to kill if the bench dies on an error path (see fail()). */
static pid_t g_broker_pid = -1;
static pid_t g_echo_pid = -1;
static char g_workdir[128]; /* /tmp/sy-bench-XXXXXX */
static char g_broker_log[PATH_MAX];

static void dump_broker_log(void)
{
    char line[1024];
    FILE *f;

    if (g_broker_log[0] == '\0' || (f = fopen(g_broker_log, "r")) == NULL)
        return;
    fprintf(stderr, "---- broker log (%s) ----\n", g_broker_log);
    while (fgets(line, sizeof(line), f) != NULL)
        fputs(line, stderr);
    fprintf(stderr, "---- end of broker log ----\n");
    fclose(f);
}

/* Report, dump the broker log, kill our children and exit 1. The work dir is kept. */
__attribute__((format(printf, 1, 2), noreturn)) static void fail(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "bench_invoke: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    dump_broker_log();
    if (g_broker_pid > 0)
        kill(g_broker_pid, SIGKILL);
    if (g_echo_pid > 0)
        kill(g_echo_pid, SIGKILL);
    if (g_workdir[0] != '\0')
        fprintf(stderr, "bench_invoke: work dir kept: %s\n", g_workdir);
    exit(1);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Nearest-rank percentile P (0..1) of N sorted values, in µs. */
static double pct_us(const uint64_t *sorted, size_t n, double p)
{
    size_t k = (size_t)ceil(p * (double)n);

    if (n == 0)
        return NAN;
    if (k == 0)
        k = 1;
    return (double)sorted[k - 1] / 1000.0;
}

/* Median of N values (NaNs ignored); NAN when none. Does not modify V. */
static double median(const double *v, size_t n)
{
    double tmp[64];
    size_t m = 0;

    for (size_t i = 0; i < n && m < sizeof(tmp) / sizeof(tmp[0]); i++)
        if (!isnan(v[i]))
            tmp[m++] = v[i];
    if (m == 0)
        return NAN;
    qsort(tmp, m, sizeof(tmp[0]), cmp_dbl);
    return m % 2 ? tmp[m / 2] : (tmp[m / 2 - 1] + tmp[m / 2]) / 2.0;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    size_t len = strlen(text), off = 0;

    if (fd < 0)
        fail("cannot create %s: %s", path, strerror(errno));
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fail("cannot write %s: %s", path, strerror(errno));
        off += (size_t)n;
    }
    if (close(fd) != 0)
        fail("cannot write %s: %s", path, strerror(errno));
}

static void copy_file(const char *from, const char *to, mode_t mode)
{
    char buf[65536];
    int in = open(from, O_RDONLY | O_CLOEXEC), out;
    ssize_t n;

    if (in < 0)
        fail("cannot open %s: %s (build it, or pass --bootstrap)", from, strerror(errno));
    out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (out < 0)
        fail("cannot create %s: %s", to, strerror(errno));
    while ((n = read(in, buf, sizeof(buf))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fail("cannot read %s: %s", from, strerror(errno));
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                fail("cannot write %s: %s", to, strerror(errno));
            off += w;
        }
    }
    close(in);
    if (close(out) != 0)
        fail("cannot write %s: %s", to, strerror(errno));
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 ? 0 : -1;
}

/* ---- the baseline: a bare keep-alive HTTP/1.1 echo server -------------------------------- */

/*
 * One connection of the echo server: reads the request line and headers line by line
 * (evbuffer_readln, as the broker's httpd does), remembers Content-Length, then answers with the
 * body moved (not copied) from the input to the output buffer. Runs in the forked child only.
 */
struct echo_conn {
    size_t need; /* Content-Length of the request being read */
    int in_body; /* headers done, waiting for NEED body bytes */
};

static void echo_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)what;
    bufferevent_free(bev);
    free(arg);
}

static void echo_read_cb(struct bufferevent *bev, void *arg)
{
    struct echo_conn *ec = arg;
    struct evbuffer *in = bufferevent_get_input(bev);

    for (;;) {
        char *line;
        size_t n;

        while (!ec->in_body && (line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF)) != NULL) {
            if (n == 0)
                ec->in_body = 1;
            else if (n > 15 && strncasecmp(line, "content-length:", 15) == 0)
                ec->need = strtoul(line + 15, NULL, 10);
            free(line);
        }
        if (!ec->in_body || evbuffer_get_length(in) < ec->need)
            return;
        evbuffer_add_printf(bufferevent_get_output(bev),
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                            "Content-Length: %zu\r\n\r\n",
                            ec->need);
        evbuffer_remove_buffer(in, bufferevent_get_output(bev), ec->need);
        ec->in_body = 0;
        ec->need = 0;
    }
}

static void echo_accept_cb(struct evconnlistener *lst, evutil_socket_t fd, struct sockaddr *sa,
                           int salen, void *arg)
{
    struct event_base *base = arg;
    struct echo_conn *ec = calloc(1, sizeof(*ec));
    struct bufferevent *bev;
    int one = 1;

    (void)lst;
    (void)sa;
    (void)salen;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (ec == NULL || bev == NULL) {
        free(ec);
        if (bev != NULL)
            bufferevent_free(bev);
        else
            evutil_closesocket(fd);
        return;
    }
    bufferevent_setcb(bev, echo_read_cb, NULL, echo_event_cb, ec);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* The child's whole life: bind 127.0.0.1:0, report the port on WFD, serve until killed. */
static __attribute__((noreturn)) void echo_server_main(int wfd)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    struct sockaddr_in bound;
    socklen_t blen = sizeof(bound);
    struct event_base *base;
    struct evconnlistener *lst;
    int port;

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    base = event_base_new();
    if (base == NULL)
        _exit(2);
    lst = evconnlistener_new_bind(base, echo_accept_cb, base,
                                  LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 64,
                                  (struct sockaddr *)&sin, sizeof(sin));
    if (lst == NULL ||
        getsockname(evconnlistener_get_fd(lst), (struct sockaddr *)&bound, &blen) != 0)
        _exit(2);
    port = ntohs(bound.sin_port);
    if (write(wfd, &port, sizeof(port)) != (ssize_t)sizeof(port))
        _exit(2);
    close(wfd);
    event_base_dispatch(base);
    _exit(0);
}

/* Fork the echo server (before any thread exists) and return its port. */
static int echo_server_start(void)
{
    int pfd[2], port = 0;
    struct pollfd pl;
    pid_t parent = getpid();

    if (pipe2(pfd, O_CLOEXEC) != 0)
        fail("pipe: %s", strerror(errno));
    g_echo_pid = fork();
    if (g_echo_pid < 0)
        fail("fork: %s", strerror(errno));
    if (g_echo_pid == 0) {
        close(pfd[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        echo_server_main(pfd[1]);
    }
    close(pfd[1]);
    pl.fd = pfd[0];
    pl.events = POLLIN;
    if (poll(&pl, 1, 5000) != 1 || read(pfd[0], &port, sizeof(port)) != (ssize_t)sizeof(port))
        fail("the baseline echo server did not report its port within 5 s");
    close(pfd[0]);
    return port;
}

static void child_stop(pid_t *pid, const char *what)
{
    int status = 0;
    uint64_t deadline = now_ns() + (uint64_t)EXIT_TIMEOUT_MS * 1000000u;

    if (*pid <= 0)
        return;
    kill(*pid, SIGTERM);
    for (;;) {
        pid_t r = waitpid(*pid, &status, WNOHANG);
        if (r == *pid || (r < 0 && errno != EINTR))
            break;
        if (now_ns() > deadline) {
            fprintf(stderr, "bench_invoke: %s did not exit %d ms after SIGTERM; SIGKILL\n", what,
                    EXIT_TIMEOUT_MS);
            kill(*pid, SIGKILL);
            waitpid(*pid, &status, 0);
            break;
        }
        sleep_ms(1);
    }
    if (strcmp(what, "broker") == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        fprintf(stderr,
                "bench_invoke: warning: broker did not exit cleanly on SIGTERM "
                "(status 0x%x)\n",
                status);
    *pid = -1;
}

/* ---- the client: blocking keep-alive HTTP/1.1 over loopback ------------------------------ */

struct conn {
    int fd;
    size_t len;  /* bytes in buf */
    size_t used; /* bytes of the previous response, dropped at the next round trip */
    char buf[CONN_BUF];
};

struct resp {
    int status;
    const char *body; /* borrowed from the conn until its next round trip */
    size_t body_len;
    int func_error; /* X-Amz-Function-Error present */
    char log_result[8192];
};

static int conn_open(struct conn *c, int port, char *err, size_t errsz)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S, .tv_usec = 0};
    int one = 1;

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->len = c->used = 0;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        snprintf(err, errsz, "socket: %s", strerror(errno));
        return -1;
    }
    /* The timeouts bound connect() too (Linux applies SO_SNDTIMEO to it). */
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        snprintf(err, errsz, "connect 127.0.0.1:%d: %s", port, strerror(errno));
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    return 0;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* Read more bytes into the buffer; -1 with ERR on EOF, error or timeout. */
static int conn_fill(struct conn *c, char *err, size_t errsz)
{
    for (;;) {
        ssize_t n;

        if (c->len == sizeof(c->buf)) {
            snprintf(err, errsz, "response larger than %zu bytes", sizeof(c->buf));
            return -1;
        }
        n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        if (n > 0) {
            c->len += (size_t)n;
            return 0;
        }
        if (n == 0) {
            snprintf(err, errsz, "connection closed by the server");
            return -1;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            snprintf(err, errsz, "no response within %d s", IO_TIMEOUT_S);
        else
            snprintf(err, errsz, "recv: %s", strerror(errno));
        return -1;
    }
}

static int hdr_is(const char *line, size_t len, const char *name, const char **val, size_t *vlen)
{
    size_t nl = strlen(name);

    if (len <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0)
        return 0;
    *val = line + nl + 1;
    *vlen = len - nl - 1;
    while (*vlen > 0 && (**val == ' ' || **val == '\t')) {
        (*val)++;
        (*vlen)--;
    }
    while (*vlen > 0 && ((*val)[*vlen - 1] == ' ' || (*val)[*vlen - 1] == '\t'))
        (*vlen)--;
    return 1;
}

/*
 * Send REQ (one write) and read one Content-Length framed response into R. Returns 0, or -1
 * with ERR filled (the connection is then unusable).
 */
static int conn_roundtrip(struct conn *c, const char *req, size_t reqlen, struct resp *r, char *err,
                          size_t errsz)
{
    const char *eoh, *p, *end;
    size_t head, clen = 0, off = 0;
    int have_clen = 0;

    if (c->used > 0) {
        memmove(c->buf, c->buf + c->used, c->len - c->used);
        c->len -= c->used;
        c->used = 0;
    }
    while (off < reqlen) {
        ssize_t n = send(c->fd, req + off, reqlen - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(err, errsz, "send: %s", n < 0 ? strerror(errno) : "nothing written");
            return -1;
        }
        off += (size_t)n;
    }
    while ((eoh = memmem(c->buf, c->len, "\r\n\r\n", 4)) == NULL)
        if (conn_fill(c, err, errsz) != 0)
            return -1;
    head = (size_t)(eoh - c->buf) + 4;
    if (c->len < 12 || strncmp(c->buf, "HTTP/1.", 7) != 0) {
        snprintf(err, errsz, "malformed status line");
        return -1;
    }
    r->status = atoi(c->buf + 9);
    r->func_error = 0;
    r->log_result[0] = '\0';
    p = memchr(c->buf, '\n', head) + 1;
    end = eoh + 2;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *val;
        size_t len = (size_t)(nl - p), vlen;

        if (len > 0 && p[len - 1] == '\r')
            len--;
        if (hdr_is(p, len, "Content-Length", &val, &vlen)) {
            clen = strtoul(val, NULL, 10);
            have_clen = 1;
        } else if (hdr_is(p, len, "X-Amz-Function-Error", &val, &vlen)) {
            r->func_error = 1;
        } else if (hdr_is(p, len, "X-Amz-Log-Result", &val, &vlen)) {
            if (vlen >= sizeof(r->log_result))
                vlen = sizeof(r->log_result) - 1;
            memcpy(r->log_result, val, vlen);
            r->log_result[vlen] = '\0';
        } else if (hdr_is(p, len, "Transfer-Encoding", &val, &vlen)) {
            snprintf(err, errsz, "chunked responses are not supported by the bench client");
            return -1;
        }
        p = nl + 1;
    }
    if (!have_clen) {
        snprintf(err, errsz, "response without Content-Length (status %d)", r->status);
        return -1;
    }
    if (head + clen > sizeof(c->buf)) {
        snprintf(err, errsz, "response body of %zu bytes is too large", clen);
        return -1;
    }
    while (c->len < head + clen)
        if (conn_fill(c, err, errsz) != 0)
            return -1;
    r->body = c->buf + head;
    r->body_len = clen;
    c->used = head + clen;
    return 0;
}

/* ---- load runs --------------------------------------------------------------------------- */

/* What a run talks to: the echo server or one function of the broker. */
struct target {
    const char *label;
    int port;
    char req[1024]; /* the full request, built once */
    size_t reqlen;
    int exact; /* the response body must equal the payload byte for byte */
};

static void target_init(struct target *t, const char *label, int port, const char *fn, int exact)
{
    int n = snprintf(t->req, sizeof(t->req),
                     "POST /2015-03-31/functions/%s/invocations HTTP/1.1\r\n"
                     "Host: 127.0.0.1:%d\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     fn, port, strlen(PAYLOAD), PAYLOAD);

    t->label = label;
    t->port = port;
    t->reqlen = (size_t)n;
    t->exact = exact;
}

/* Did the function answer with our event? Python re-serialises it, so only look for values. */
static int body_ok(const struct target *t, const struct resp *r)
{
    if (r->status != 200 || r->func_error)
        return 0;
    if (t->exact)
        return r->body_len == strlen(PAYLOAD) && memcmp(r->body, PAYLOAD, r->body_len) == 0;
    return memmem(r->body, r->body_len, "\"world\"", 7) != NULL &&
           memmem(r->body, r->body_len, "12345", 5) != NULL;
}

struct worker {
    const struct target *t;
    struct conn *conn;
    pthread_barrier_t *bar;
    int n;
    uint64_t *lat; /* N latencies in ns, or NULL when not recorded (warm-up) */
    uint64_t t_start, t_end;
    char err[256];
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct resp r;

    pthread_barrier_wait(w->bar);
    w->t_start = now_ns();
    for (int i = 0; i < w->n; i++) {
        uint64_t t0 = now_ns(), t1;

        if (conn_roundtrip(w->conn, w->t->req, w->t->reqlen, &r, w->err, sizeof(w->err)) != 0)
            break;
        t1 = now_ns();
        if (!body_ok(w->t, &r)) {
            snprintf(w->err, sizeof(w->err), "unexpected response %d%s: %.*s", r.status,
                     r.func_error ? " (function error)" : "",
                     (int)(r.body_len > 200 ? 200 : r.body_len), r.body);
            break;
        }
        if (w->lat != NULL)
            w->lat[i] = t1 - t0;
    }
    w->t_end = now_ns();
    return NULL;
}

struct result {
    double p50, p99, rps;
};

/*
 * NCLIENTS threads, each on its own keep-alive connection, send PER requests back to back after
 * a common start (a barrier, so that with a fresh pool the first NCLIENTS requests are all in
 * flight at once). Latencies of all clients are pooled; req/s is all requests over the time from
 * the first start to the last finish. Any error or wrong answer ends the bench.
 */
static struct result run_load(const struct target *t, int nclients, int per, int record)
{
    struct worker w[CONC];
    struct conn *conns = calloc((size_t)nclients, sizeof(*conns));
    pthread_t th[CONC];
    pthread_barrier_t bar;
    uint64_t *lat = record ? calloc((size_t)nclients * (size_t)per, sizeof(*lat)) : NULL;
    uint64_t first = UINT64_MAX, last = 0;
    size_t n = (size_t)nclients * (size_t)per;
    struct result res = {NAN, NAN, NAN};
    char err[256];

    if (conns == NULL || (record && lat == NULL) || nclients > CONC)
        fail("out of memory");
    pthread_barrier_init(&bar, NULL, (unsigned)nclients);
    for (int i = 0; i < nclients; i++) {
        if (conn_open(&conns[i], t->port, err, sizeof(err)) != 0)
            fail("%s: %s", t->label, err);
        w[i] = (struct worker){.t = t,
                               .conn = &conns[i],
                               .bar = &bar,
                               .n = per,
                               .lat = record ? lat + (size_t)i * (size_t)per : NULL};
        w[i].err[0] = '\0';
        if (pthread_create(&th[i], NULL, worker_main, &w[i]) != 0)
            fail("pthread_create failed");
    }
    for (int i = 0; i < nclients; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&bar);
    for (int i = 0; i < nclients; i++) {
        conn_close(&conns[i]);
        if (w[i].err[0] != '\0')
            fail("%s, client %d/%d: %s", t->label, i + 1, nclients, w[i].err);
        if (w[i].t_start < first)
            first = w[i].t_start;
        if (w[i].t_end > last)
            last = w[i].t_end;
    }
    if (record) {
        qsort(lat, n, sizeof(*lat), cmp_u64);
        res.p50 = pct_us(lat, n, 0.50);
        res.p99 = pct_us(lat, n, 0.99);
        res.rps = (double)n / ((double)(last - first) / 1e9);
    }
    free(lat);
    free(conns);
    return res;
}

/* ---- the broker process ------------------------------------------------------------------ */

struct broker {
    pid_t pid;
    int port;
};

/*
 * Start `BIN run CONFIG` in DIR with stderr to a log file, and wait (bounded) for its ready
 * line `ready: control API on http://HOST:PORT`. The log file, not a pipe, takes stderr so the
 * broker can never block on a full pipe while we are busy measuring.
 */
static struct broker broker_start(const char *bin, const char *dir, int idx)
{
    struct broker b = {.pid = -1, .port = 0};
    char cfg[PATH_MAX], text[16384];
    const char *key = "ready: control API on http://";
    uint64_t deadline = now_ns() + (uint64_t)READY_TIMEOUT_MS * 1000000u;
    pid_t parent = getpid();
    int logfd;

    snprintf(cfg, sizeof(cfg), "%s/config.yaml", dir);
    snprintf(g_broker_log, sizeof(g_broker_log), "%s/broker-%d.log", dir, idx);
    logfd = open(g_broker_log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (logfd < 0)
        fail("cannot create %s: %s", g_broker_log, strerror(errno));
    b.pid = fork();
    if (b.pid < 0)
        fail("fork: %s", strerror(errno));
    if (b.pid == 0) {
        int devnull = open("/dev/null", O_RDWR);

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(logfd, 2) < 0 ||
            chdir(dir) != 0)
            _exit(126);
        execl(bin, bin, "run", cfg, (char *)NULL);
        dprintf(2, "exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    close(logfd);
    g_broker_pid = b.pid;

    for (;;) {
        int status, fd;
        ssize_t n;
        const char *hit, *colon;

        if (waitpid(b.pid, &status, WNOHANG) == b.pid) {
            g_broker_pid = -1;
            fail("the broker (%s) exited before it was ready (status 0x%x)", bin, status);
        }
        fd = open(g_broker_log, O_RDONLY | O_CLOEXEC);
        n = fd < 0 ? -1 : read(fd, text, sizeof(text) - 1);
        if (fd >= 0)
            close(fd);
        if (n > 0) {
            text[n] = '\0';
            hit = strstr(text, key);
            if (hit != NULL && strchr(hit, '\n') != NULL) {
                hit += strlen(key);
                colon = strchr(hit, ':');
                if (colon == NULL || strncmp(hit, "127.0.0.1:", 10) != 0)
                    fail("unexpected ready line (want 127.0.0.1:PORT): %.60s", hit);
                b.port = atoi(colon + 1);
                if (b.port <= 0)
                    fail("no port in the ready line: %.60s", hit);
                return b;
            }
        }
        if (now_ns() > deadline)
            fail("the broker printed no ready line within %d ms", READY_TIMEOUT_MS);
        sleep_ms(1);
    }
}

static void broker_stop(struct broker *b)
{
    child_stop(&b->pid, "broker");
    g_broker_pid = -1;
}

/* VmRSS of PID in kB, or -1. */
static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

/* Depth-first search for an integer member named KEY anywhere in J; -1 when absent. */
static long long json_find_int(json_t *j, const char *key)
{
    const char *k;
    json_t *v;
    size_t i;

    if (json_is_object(j)) {
        json_object_foreach(j, k, v) {
            if (strcmp(k, key) == 0 && json_is_integer(v))
                return json_integer_value(v);
        }
        json_object_foreach(j, k, v) {
            long long r = json_find_int(v, key);
            if (r >= 0)
                return r;
        }
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v) {
            long long r = json_find_int(v, key);
            if (r >= 0)
                return r;
        }
    }
    return -1;
}

struct health {
    long long cold_starts, warm_starts, environments;
};

static struct health broker_health(const struct broker *b)
{
    static struct conn c;
    struct resp r;
    struct health h = {-1, -1, -1};
    char req[128], err[256];
    json_error_t jerr;
    json_t *j;
    int n =
        snprintf(req, sizeof(req), "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", b->port);

    if (conn_open(&c, b->port, err, sizeof(err)) != 0 ||
        conn_roundtrip(&c, req, (size_t)n, &r, err, sizeof(err)) != 0)
        fail("GET /healthz: %s", err);
    conn_close(&c);
    j = json_loadb(r.body, r.body_len, 0, &jerr);
    if (r.status != 200 || j == NULL)
        fail("GET /healthz: status %d, body %.*s", r.status, (int)r.body_len, r.body);
    h.cold_starts = json_find_int(j, "cold_starts");
    h.warm_starts = json_find_int(j, "warm_starts");
    h.environments = json_find_int(j, "environments");
    json_decref(j);
    return h;
}

/* ---- cold start -------------------------------------------------------------------------- */

/*
 * The bootstrap's own start-up, without the broker: spawn it with AWS_LAMBDA_RUNTIME_API
 * pointing at a listener of ours and time until its first request (`GET .../next`) has fully
 * arrived. Then kill it. Returns µs.
 */
static double bootstrap_startup_us(const char *bootstrap, const char *codedir)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t slen = sizeof(sin);
    char api[64], root[PATH_MAX + 32], buf[4096];
    char *argv[] = {(char *)bootstrap, NULL};
    char *envp[] = {api,
                    root,
                    "_HANDLER=echo",
                    "PATH=/usr/local/bin:/usr/bin:/bin",
                    "AWS_LAMBDA_FUNCTION_NAME=bench-startup",
                    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128",
                    "AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
                    NULL};
    posix_spawn_file_actions_t fa;
    struct pollfd pl;
    size_t got = 0;
    uint64_t t0, t1, deadline;
    pid_t pid;
    int lfd, cfd, rc;

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(lfd, 4) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sin, &slen) != 0)
        fail("start-up listener: %s", strerror(errno));
    snprintf(api, sizeof(api), "AWS_LAMBDA_RUNTIME_API=127.0.0.1:%d", ntohs(sin.sin_port));
    snprintf(root, sizeof(root), "LAMBDA_TASK_ROOT=%s", codedir);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);

    t0 = now_ns();
    rc = posix_spawn(&pid, bootstrap, &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        fail("spawn %s: %s", bootstrap, strerror(rc));
    deadline = t0 + (uint64_t)STARTUP_TIMEOUT_MS * 1000000u;
    pl.fd = lfd;
    pl.events = POLLIN;
    if (poll(&pl, 1, STARTUP_TIMEOUT_MS) != 1 || (cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
        fail("the bootstrap %s did not connect within %d ms", bootstrap, STARTUP_TIMEOUT_MS);
    for (;;) {
        ssize_t n;
        int left = (int)((deadline - now_ns()) / 1000000u);

        pl.fd = cfd;
        if (now_ns() >= deadline || poll(&pl, 1, left) != 1)
            fail("the bootstrap %s sent no request within %d ms", bootstrap, STARTUP_TIMEOUT_MS);
        n = recv(cfd, buf + got, sizeof(buf) - 1 - got, 0);
        if (n <= 0)
            fail("the bootstrap %s closed its Runtime API connection", bootstrap);
        got += (size_t)n;
        buf[got] = '\0';
        if (strstr(buf, "\r\n\r\n") != NULL)
            break;
    }
    t1 = now_ns();
    if (strstr(buf, "/runtime/invocation/next") == NULL)
        fail("the bootstrap's first request is not invocation/next: %.80s", buf);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(cfd);
    close(lfd);
    return (double)(t1 - t0) / 1000.0;
}

/* `Init Duration: X ms` from a base64 log tail, in µs; NAN when absent. */
static double init_duration_us(const char *b64)
{
    unsigned char out[8192];
    size_t len = strlen(b64);
    int n;
    const char *p;

    if (len == 0 || len / 4 * 3 >= sizeof(out))
        return NAN;
    n = EVP_DecodeBlock(out, (const unsigned char *)b64, (int)len);
    if (n < 0)
        return NAN;
    out[n] = '\0';
    p = strstr((const char *)out, "Init Duration: ");
    return p == NULL ? NAN : strtod(p + 15, NULL) * 1000.0;
}

/* ---- the table --------------------------------------------------------------------------- */

#define NCOL 9

struct row {
    char c[NCOL][64];
};

static const char *const g_head[NCOL] = {
    "measurement",       "p50 µs", "p99 µs", "req/s", "Δp50 vs baseline", "Δp99 vs baseline",
    "req/s vs baseline", "target", "met?",
};

static struct row g_rows[16];
static size_t g_nrows;

static struct row *row_add(const char *name)
{
    struct row *r = &g_rows[g_nrows++];

    for (int i = 0; i < NCOL; i++)
        snprintf(r->c[i], sizeof(r->c[i]), "—");
    snprintf(r->c[0], sizeof(r->c[0]), "%s", name);
    return r;
}

static void fmt_num(char *out, size_t sz, double v, int decimals)
{
    if (isnan(v))
        snprintf(out, sz, "—");
    else
        snprintf(out, sz, "%.*f", decimals, v);
}

static void fmt_delta(char *out, size_t sz, double d, double ratio)
{
    if (isnan(d))
        snprintf(out, sz, "—");
    else
        snprintf(out, sz, "%+.0f µs (%.2f×)", d, ratio);
}

/* Display width: count UTF-8 code points (µ, Δ, ×, ≤ and — are one column each). */
static int width(const char *s)
{
    int w = 0;

    for (; *s != '\0'; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

static void print_cell(const char *s, int w)
{
    printf("| %s%*s ", s, w - width(s), "");
}

static void print_table(void)
{
    int w[NCOL];

    for (int i = 0; i < NCOL; i++) {
        w[i] = width(g_head[i]);
        for (size_t r = 0; r < g_nrows; r++)
            if (width(g_rows[r].c[i]) > w[i])
                w[i] = width(g_rows[r].c[i]);
    }
    for (int i = 0; i < NCOL; i++)
        print_cell(g_head[i], w[i]);
    printf("|\n");
    for (int i = 0; i < NCOL; i++) {
        printf("|");
        for (int k = 0; k < w[i] + 2; k++)
            putchar(i > 0 && i < 7 && k == w[i] + 1 ? ':' : '-');
    }
    printf("|\n");
    for (size_t r = 0; r < g_nrows; r++) {
        for (int i = 0; i < NCOL; i++)
            print_cell(g_rows[r].c[i], w[i]);
        printf("|\n");
    }
}

/* ---- main -------------------------------------------------------------------------------- */

struct opts {
    const char *broker;
    const char *bootstrap;
    int rounds;
    int n1; /* requests per round at c=1 */
    int n8; /* requests per client per round at c=8 */
    int python;
    int keep;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_invoke [--broker PATH] [--bootstrap PATH] [--rounds N] [--n1 N]\n"
            "                    [--n8 N] [--no-python] [--keep]\n"
            "  --broker PATH     switchyard binary (env SY_BENCH_BROKER; default %s)\n"
            "  --bootstrap PATH  the provided bootstrap (env SY_BENCH_BOOTSTRAP; default %s)\n"
            "  --rounds N        rounds per measurement; the table shows medians (default 5)\n"
            "  --n1 N            requests per round at concurrency 1 (default 2000)\n"
            "  --n8 N            requests per client per round at concurrency 8 (default 1000)\n"
            "  --no-python       skip the Python rows\n"
            "  --keep            keep the work dir (config, logs) under /tmp\n",
            SY_BINARY, SY_BENCH_BOOTSTRAP);
}

static int int_arg(const char *s, const char *name, int lo, int hi)
{
    char *end;
    long v = strtol(s, &end, 10);

    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "bench_invoke: %s must be %d..%d (got %s)\n", name, lo, hi, s);
        exit(2);
    }
    return (int)v;
}

static struct opts parse_opts(int argc, char **argv)
{
    struct opts o = {.broker = SY_BINARY,
                     .bootstrap = SY_BENCH_BOOTSTRAP,
                     .rounds = 5,
                     .n1 = 2000,
                     .n8 = 1000,
                     .python = 1,
                     .keep = 0};

    if (getenv("SY_BENCH_BROKER") != NULL)
        o.broker = getenv("SY_BENCH_BROKER");
    if (getenv("SY_BENCH_BOOTSTRAP") != NULL)
        o.bootstrap = getenv("SY_BENCH_BOOTSTRAP");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--no-python") == 0) {
            o.python = 0;
            continue;
        }
        if (strcmp(a, "--keep") == 0) {
            o.keep = 1;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (v == NULL) {
            usage(stderr);
            exit(2);
        }
        i++;
        if (strcmp(a, "--broker") == 0)
            o.broker = v;
        else if (strcmp(a, "--bootstrap") == 0)
            o.bootstrap = v;
        else if (strcmp(a, "--rounds") == 0)
            o.rounds = int_arg(v, a, 1, 21);
        else if (strcmp(a, "--n1") == 0)
            o.n1 = int_arg(v, a, 100, 1000000);
        else if (strcmp(a, "--n8") == 0)
            o.n8 = int_arg(v, a, 100, 1000000);
        else {
            usage(stderr);
            exit(2);
        }
    }
    return o;
}

static void print_env(const struct opts *o)
{
    struct utsname u;
    char line[512], cpu[256] = "unknown";
    double load[3] = {NAN, NAN, NAN};
    FILE *f = fopen("/proc/cpuinfo", "r");

    if (f != NULL) {
        while (fgets(line, sizeof(line), f) != NULL) {
            char *colon = strchr(line, ':');
            if (strncmp(line, "model name", 10) == 0 && colon != NULL) {
                snprintf(cpu, sizeof(cpu), "%s", colon + 2);
                cpu[strcspn(cpu, "\n")] = '\0';
                break;
            }
        }
        fclose(f);
    }
    getloadavg(load, 3);
    uname(&u);
    printf("# switchyard invoke benchmark\n\n");
    printf("- machine: %ld CPUs (nproc), %s; kernel %s %s %s; load %.2f %.2f %.2f at start\n",
           sysconf(_SC_NPROCESSORS_ONLN), cpu, u.sysname, u.release, u.machine, load[0], load[1],
           load[2]);
    printf("- broker: %s; provided bootstrap: %s\n", o->broker, o->bootstrap);
    printf("- payload: %zu bytes `%s`; %d rounds, each %d requests at c=1 and %d×%d at c=%d, "
           "after a warm-up\n\n",
           strlen(PAYLOAD), PAYLOAD, o->rounds, o->n1, CONC, o->n8, CONC);
    fflush(stdout);
}

/* Write the config, the provided code dir (a copy of the bootstrap) and the Python handler. */
static void setup_workdir(const struct opts *o)
{
    char path[sizeof(g_workdir) + 64], cfg[4096];
    size_t off;

    snprintf(g_workdir, sizeof(g_workdir), "/tmp/sy-bench-XXXXXX");
    if (mkdtemp(g_workdir) == NULL)
        fail("mkdtemp: %s", strerror(errno));
    snprintf(path, sizeof(path), "%s/provided", g_workdir);
    if (mkdir(path, 0755) != 0)
        fail("mkdir %s: %s", path, strerror(errno));
    snprintf(path, sizeof(path), "%s/provided/bootstrap", g_workdir);
    copy_file(o->bootstrap, path, 0755);
    snprintf(path, sizeof(path), "%s/python", g_workdir);
    if (mkdir(path, 0755) != 0)
        fail("mkdir %s: %s", path, strerror(errno));
    snprintf(path, sizeof(path), "%s/python/app.py", g_workdir);
    write_file(path, "def handler(event, context):\n    return event\n", 0644);

    off = (size_t)snprintf(cfg, sizeof(cfg),
                           "# Written by bench_invoke: 10 functions, nothing provisioned.\n"
                           "# log_level info: the ready line is an info line, and nothing\n"
                           "# is logged per invoke at that level.\n"
                           "broker: {listen: \"127.0.0.1:0\", data_dir: ./data, "
                           "max_concurrency: 100, log_level: info}\n"
                           "functions:\n"
                           "  bench-provided: {runtime: provided, code: ./provided, "
                           "memory_mb: 128, timeout_s: 10}\n"
                           "  bench-python: {runtime: python3, handler: app.handler, "
                           "code: ./python, timeout_s: 10}\n");
    for (int i = 0; i < N_COLD; i++)
        off += (size_t)snprintf(cfg + off, sizeof(cfg) - off,
                                "  cold-%d: {runtime: provided, code: ./provided, "
                                "memory_mb: 128, timeout_s: 10}\n",
                                i);
    snprintf(path, sizeof(path), "%s/config.yaml", g_workdir);
    write_file(path, cfg, 0644);
}

enum { T_BASE, T_PROV, T_PY, N_TARGETS };

int main(int argc, char **argv)
{
    struct opts o = parse_opts(argc, argv);
    struct target tg[N_TARGETS];
    const int conc[2] = {1, CONC};
    /* warm[c][t][round] */
    static struct result warm[2][N_TARGETS][21];
    static double rss_idle[22], rss_warm, cold_p50[21], cold_p99[21], st_p50[21], st_p99[21],
        init_p50[21];
    size_t n_rss = 0;
    struct broker b;
    struct health h0, h1;
    char codedir[sizeof(g_workdir) + 16];
    static char broker_path[PATH_MAX], boot_path[PATH_MAX];
    int echo_port, nt = o.python ? N_TARGETS : T_PY;
    uint64_t t_begin = now_ns();

    signal(SIGPIPE, SIG_IGN);
    /* Absolute paths: the broker runs with its cwd in the work dir. */
    if (access(o.broker, X_OK) != 0 || realpath(o.broker, broker_path) == NULL)
        fail("broker binary %s: %s (build it, or pass --broker)", o.broker, strerror(errno));
    if (access(o.bootstrap, X_OK) != 0 || realpath(o.bootstrap, boot_path) == NULL)
        fail("bootstrap %s: %s (build it, or pass --bootstrap)", o.bootstrap, strerror(errno));
    o.broker = broker_path;
    o.bootstrap = boot_path;
    print_env(&o);

    /* Fork the echo server first: no thread of ours exists yet. */
    echo_port = echo_server_start();
    setup_workdir(&o);
    snprintf(codedir, sizeof(codedir), "%s/provided", g_workdir);

    /* Warm phase: one broker; idle RSS right after ready, nothing invoked yet. */
    b = broker_start(o.broker, g_workdir, 0);
    rss_idle[n_rss++] = (double)rss_kb(b.pid);
    target_init(&tg[T_BASE], "baseline (loopback HTTP echo)", echo_port, "baseline", 1);
    target_init(&tg[T_PROV], "bench-provided", b.port, "bench-provided", 1);
    target_init(&tg[T_PY], "bench-python", b.port, "bench-python", 0);

    /*
     * Warm-up: first CONC requests at once, so that every function ends up with CONC warm
     * environments (the barrier in run_load() puts them all in flight together), then enough
     * traffic at both concurrencies to settle caches and allocators.
     */
    fprintf(stderr, "bench_invoke: warming up...\n");
    for (int t = 0; t < nt; t++) {
        run_load(&tg[t], CONC, 200, 0);
        run_load(&tg[t], 1, 500, 0);
    }
    h0 = broker_health(&b);

    for (int r = 0; r < o.rounds; r++) {
        fprintf(stderr, "bench_invoke: warm round %d/%d\n", r + 1, o.rounds);
        for (int c = 0; c < 2; c++)
            for (int t = 0; t < nt; t++)
                warm[c][t][r] = run_load(&tg[t], conc[c], c == 0 ? o.n1 : o.n8, 1);
    }
    h1 = broker_health(&b);
    rss_warm = (double)rss_kb(b.pid);
    broker_stop(&b);

    /*
     * Cold phase: a fresh broker per round (so every cold-N is cold again). Each cold invoke is
     * paired with one start-up of the bootstrap alone, measured just before it.
     */
    for (int r = 0; r < o.rounds; r++) {
        uint64_t lat[N_COLD];
        double st[N_COLD], init[N_COLD];
        static struct conn c;
        struct health hc;
        char err[256];

        fprintf(stderr, "bench_invoke: cold round %d/%d\n", r + 1, o.rounds);
        b = broker_start(o.broker, g_workdir, r + 1);
        rss_idle[n_rss++] = (double)rss_kb(b.pid);
        if (conn_open(&c, b.port, err, sizeof(err)) != 0)
            fail("cold: %s", err);
        for (int i = 0; i < N_COLD; i++) {
            struct target t;
            struct resp resp;
            char fn[32];
            uint64_t t0, t1;
            int n;

            st[i] = bootstrap_startup_us(o.bootstrap, codedir);
            snprintf(fn, sizeof(fn), "cold-%d", i);
            target_init(&t, fn, b.port, fn, 1);
            /* Ask for the log tail: its REPORT line carries Init Duration on a cold start. */
            n = snprintf(t.req, sizeof(t.req),
                         "POST /2015-03-31/functions/%s/invocations HTTP/1.1\r\n"
                         "Host: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                         "X-Amz-Log-Type: Tail\r\nContent-Length: %zu\r\n\r\n%s",
                         fn, b.port, strlen(PAYLOAD), PAYLOAD);
            t.reqlen = (size_t)n;
            t0 = now_ns();
            if (conn_roundtrip(&c, t.req, t.reqlen, &resp, err, sizeof(err)) != 0)
                fail("cold invoke of %s: %s", fn, err);
            t1 = now_ns();
            if (!body_ok(&t, &resp))
                fail("cold invoke of %s: status %d, body %.*s", fn, resp.status, (int)resp.body_len,
                     resp.body);
            lat[i] = t1 - t0;
            init[i] = init_duration_us(resp.log_result);
            if (isnan(init[i]))
                fprintf(stderr,
                        "bench_invoke: warning: no Init Duration in the log tail of "
                        "%s (X-Amz-Log-Result %s)\n",
                        fn, resp.log_result[0] != '\0' ? "without it" : "absent");
        }
        conn_close(&c);
        hc = broker_health(&b);
        if (hc.cold_starts >= 0 && hc.cold_starts != N_COLD)
            fprintf(stderr,
                    "bench_invoke: warning: /healthz counts %lld cold starts in cold "
                    "round %d, expected %d\n",
                    hc.cold_starts, r + 1, N_COLD);
        broker_stop(&b);
        qsort(lat, N_COLD, sizeof(lat[0]), cmp_u64);
        cold_p50[r] = pct_us(lat, N_COLD, 0.50);
        cold_p99[r] = pct_us(lat, N_COLD, 0.99);
        init_p50[r] = median(init, N_COLD);
        qsort(st, N_COLD, sizeof(st[0]), cmp_dbl);
        st_p50[r] = median(st, N_COLD);
        st_p99[r] = st[N_COLD - 1];
    }
    child_stop(&g_echo_pid, "echo server");

    /* ---- rows ---- */
    static const char *const names[2][N_TARGETS] = {
        {"baseline: loopback HTTP, c=1", "provided, warm, c=1", "python, warm, c=1"},
        {"baseline: loopback HTTP, c=8", "provided, warm, c=8", "python, warm, c=8"},
    };
    double warm_prov_p50 = NAN;

    for (int c = 0; c < 2; c++) {
        for (int t = 0; t < nt; t++) {
            struct row *row = row_add(names[c][t]);
            double p50[21], p99[21], rps[21], d50[21], d99[21], q50[21], q99[21], qr[21];
            int R = o.rounds;

            for (int r = 0; r < R; r++) {
                const struct result *x = &warm[c][t][r], *base = &warm[c][T_BASE][r];
                p50[r] = x->p50;
                p99[r] = x->p99;
                rps[r] = x->rps;
                d50[r] = x->p50 - base->p50;
                d99[r] = x->p99 - base->p99;
                q50[r] = x->p50 / base->p50;
                q99[r] = x->p99 / base->p99;
                qr[r] = x->rps / base->rps;
            }
            fmt_num(row->c[1], sizeof(row->c[1]), median(p50, (size_t)R), 1);
            fmt_num(row->c[2], sizeof(row->c[2]), median(p99, (size_t)R), 1);
            fmt_num(row->c[3], sizeof(row->c[3]), median(rps, (size_t)R), 0);
            if (t == T_BASE) {
                snprintf(row->c[7], sizeof(row->c[7]), "(the floor)");
                continue;
            }
            fmt_delta(row->c[4], sizeof(row->c[4]), median(d50, (size_t)R), median(q50, (size_t)R));
            fmt_delta(row->c[5], sizeof(row->c[5]), median(d99, (size_t)R), median(q99, (size_t)R));
            snprintf(row->c[6], sizeof(row->c[6]), "%.2f×", median(qr, (size_t)R));
            if (t == T_PROV && c == 0) {
                int met = median(d50, (size_t)R) <= 150.0 && median(d99, (size_t)R) <= 1000.0;
                warm_prov_p50 = median(p50, (size_t)R);
                snprintf(row->c[7], sizeof(row->c[7]), "Δp50 ≤ 150 µs, Δp99 ≤ 1000 µs");
                snprintf(row->c[8], sizeof(row->c[8]), "%s", met ? "yes" : "**no**");
            } else if (t == T_PROV) {
                snprintf(row->c[7], sizeof(row->c[7]), "(info; target is at c=1)");
            }
        }
    }

    /* Cold: baseline = the bootstrap alone plus a warm invoke (its own per-round start-up). */
    {
        struct row *row = row_add("baseline: bootstrap start-up alone");
        double d50[21], q50[21], d99[21], q99[21];
        int R = o.rounds;

        fmt_num(row->c[1], sizeof(row->c[1]), median(st_p50, (size_t)R), 0);
        fmt_num(row->c[2], sizeof(row->c[2]), median(st_p99, (size_t)R), 0);
        snprintf(row->c[7], sizeof(row->c[7]), "(the runtime's own start-up)");
        row = row_add("provided, cold start");
        for (int r = 0; r < R; r++) {
            double base50 = st_p50[r] + warm_prov_p50, base99 = st_p99[r] + warm_prov_p50;
            d50[r] = cold_p50[r] - base50;
            q50[r] = cold_p50[r] / base50;
            d99[r] = cold_p99[r] - base99;
            q99[r] = cold_p99[r] / base99;
        }
        fmt_num(row->c[1], sizeof(row->c[1]), median(cold_p50, (size_t)R), 0);
        fmt_num(row->c[2], sizeof(row->c[2]), median(cold_p99, (size_t)R), 0);
        if (isnan(warm_prov_p50)) {
            snprintf(row->c[4], sizeof(row->c[4]), "—");
        } else {
            fmt_delta(row->c[4], sizeof(row->c[4]), median(d50, (size_t)R), median(q50, (size_t)R));
            fmt_delta(row->c[5], sizeof(row->c[5]), median(d99, (size_t)R), median(q99, (size_t)R));
        }
        snprintf(row->c[7], sizeof(row->c[7]), "Δp50 ≤ 5000 µs");
        snprintf(row->c[8], sizeof(row->c[8]), "%s",
                 median(d50, (size_t)R) <= 5000.0 ? "yes" : "**no**");
    }

    /* RSS: the median over every fresh broker (warm phase and each cold round). */
    {
        struct row *row = row_add("broker RSS idle, 10 functions");
        double med = median(rss_idle, n_rss) / 1024.0, mx = 0;

        for (size_t i = 0; i < n_rss; i++)
            if (rss_idle[i] / 1024.0 > mx)
                mx = rss_idle[i] / 1024.0;
        snprintf(row->c[1], sizeof(row->c[1]), "%.1f MB", med);
        snprintf(row->c[2], sizeof(row->c[2]), "max %.1f MB", mx);
        snprintf(row->c[7], sizeof(row->c[7]), "≤ 10 MB");
        snprintf(row->c[8], sizeof(row->c[8]), "%s", med <= 10.0 ? "yes" : "**no**");
        row = row_add("broker RSS after warm runs");
        snprintf(row->c[1], sizeof(row->c[1]), "%.1f MB", rss_warm / 1024.0);
        snprintf(row->c[7], sizeof(row->c[7]), "(info)");
    }

    print_table();
    printf("\n- Medians of %d rounds. Δ and × are medians of per-round differences and ratios "
           "against the baseline measured in the same round, so they need not equal the "
           "difference of the p50/p99 columns.\n",
           o.rounds);
    printf("- Warm rows: same client, same request, one keep-alive connection per client; "
           "the baseline is a bare libevent HTTP/1.1 echo server on 127.0.0.1.\n");
    printf("- Cold start: %d cold invokes per round, each in a fresh environment of a fresh "
           "broker; Δ is against (bootstrap start-up alone + warm provided p50 at c=1 = %.0f µs). "
           "Broker-reported Init Duration p50: %.0f µs.\n",
           N_COLD, warm_prov_p50, median(init_p50, (size_t)o.rounds));
    printf("- /healthz during the warm rounds: %lld cold starts (want 0), %lld environments "
           "live.\n",
           h1.cold_starts >= 0 && h0.cold_starts >= 0 ? h1.cold_starts - h0.cold_starts : -1LL,
           h1.environments);
    printf("- Total bench time %.1f s.\n", (double)(now_ns() - t_begin) / 1e9);

    if (!o.keep && nftw(g_workdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "bench_invoke: could not remove %s\n", g_workdir);
    else if (o.keep)
        printf("- Work dir kept: %s\n", g_workdir);
    return 0;
}
