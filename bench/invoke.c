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
#include <sys/wait.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "bench_common.h"

#ifndef SY_BINARY
#define SY_BINARY "switchyard"
#endif
#ifndef SY_BENCH_BOOTSTRAP
#define SY_BENCH_BOOTSTRAP "bootstrap"
#endif

#define PAYLOAD "{\"hello\":\"world\",\"n\":12345}"
#define N_COLD 8                /* cold-0 .. cold-7: one cold start each per broker run */
#define CONC 8                  /* the "c=8" concurrency */
#define STARTUP_TIMEOUT_MS 5000 /* bootstrap spawn until its first request */

/* Child slots (bench_common.h): the broker under test and the baseline echo server. */
enum { SLOT_BROKER, SLOT_ECHO };

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
        bc_fail("pipe: %s", strerror(errno));
    bc_child_pid[SLOT_ECHO] = fork();
    if (bc_child_pid[SLOT_ECHO] < 0)
        bc_fail("fork: %s", strerror(errno));
    if (bc_child_pid[SLOT_ECHO] == 0) {
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
        bc_fail("the baseline echo server did not report its port within 5 s");
    close(pfd[0]);
    return port;
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
static int body_ok(const struct target *t, const struct bc_resp *r)
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
    struct bc_conn *conn;
    pthread_barrier_t *bar;
    int n;
    uint64_t *lat; /* N latencies in ns, or NULL when not recorded (warm-up) */
    uint64_t t_start, t_end;
    char err[256];
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct bc_resp r;

    pthread_barrier_wait(w->bar);
    w->t_start = bc_now_ns();
    for (int i = 0; i < w->n; i++) {
        uint64_t t0 = bc_now_ns(), t1;

        if (bc_conn_roundtrip(w->conn, w->t->req, w->t->reqlen, &r, w->err, sizeof(w->err)) != 0)
            break;
        t1 = bc_now_ns();
        if (!body_ok(w->t, &r)) {
            snprintf(w->err, sizeof(w->err), "unexpected response %d%s: %.*s", r.status,
                     r.func_error ? " (function error)" : "",
                     (int)(r.body_len > 200 ? 200 : r.body_len), r.body);
            break;
        }
        if (w->lat != NULL)
            w->lat[i] = t1 - t0;
    }
    w->t_end = bc_now_ns();
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
    struct bc_conn *conns = calloc((size_t)nclients, sizeof(*conns));
    pthread_t th[CONC];
    pthread_barrier_t bar;
    uint64_t *lat = record ? calloc((size_t)nclients * (size_t)per, sizeof(*lat)) : NULL;
    uint64_t first = UINT64_MAX, last = 0;
    size_t n = (size_t)nclients * (size_t)per;
    struct result res = {NAN, NAN, NAN};
    char err[256];

    if (conns == NULL || (record && lat == NULL) || nclients > CONC)
        bc_fail("out of memory");
    pthread_barrier_init(&bar, NULL, (unsigned)nclients);
    for (int i = 0; i < nclients; i++) {
        if (bc_conn_open(&conns[i], t->port, err, sizeof(err)) != 0)
            bc_fail("%s: %s", t->label, err);
        w[i] = (struct worker){.t = t,
                               .conn = &conns[i],
                               .bar = &bar,
                               .n = per,
                               .lat = record ? lat + (size_t)i * (size_t)per : NULL};
        w[i].err[0] = '\0';
        if (pthread_create(&th[i], NULL, worker_main, &w[i]) != 0)
            bc_fail("pthread_create failed");
    }
    for (int i = 0; i < nclients; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&bar);
    for (int i = 0; i < nclients; i++) {
        bc_conn_close(&conns[i]);
        if (w[i].err[0] != '\0')
            bc_fail("%s, client %d/%d: %s", t->label, i + 1, nclients, w[i].err);
        if (w[i].t_start < first)
            first = w[i].t_start;
        if (w[i].t_end > last)
            last = w[i].t_end;
    }
    if (record) {
        qsort(lat, n, sizeof(*lat), bc_cmp_u64);
        res.p50 = bc_pct_us(lat, n, 0.50);
        res.p99 = bc_pct_us(lat, n, 0.99);
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

/* Start `BIN run DIR/config.yaml` in DIR, stderr to DIR/broker-IDX.log (bc_broker_start()). */
static struct broker broker_start(const char *bin, const char *dir, int idx)
{
    struct broker b = {.pid = -1, .port = 0};
    char cfg[PATH_MAX], log[PATH_MAX];

    snprintf(cfg, sizeof(cfg), "%s/config.yaml", dir);
    snprintf(log, sizeof(log), "%s/broker-%d.log", dir, idx);
    b.port = bc_broker_start(bin, dir, cfg, log, SLOT_BROKER, &b.pid);
    return b;
}

static void broker_stop(struct broker *b)
{
    bc_child_stop(&b->pid, "broker", 1);
    bc_child_pid[SLOT_BROKER] = -1;
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

struct health {
    long long cold_starts, warm_starts, environments;
};

static struct health broker_health(const struct broker *b)
{
    static struct bc_conn c;
    struct bc_resp r;
    struct health h = {-1, -1, -1};
    char req[128], err[256];
    json_error_t jerr;
    json_t *j;
    int n =
        snprintf(req, sizeof(req), "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", b->port);

    if (bc_conn_open(&c, b->port, err, sizeof(err)) != 0 ||
        bc_conn_roundtrip(&c, req, (size_t)n, &r, err, sizeof(err)) != 0)
        bc_fail("GET /healthz: %s", err);
    bc_conn_close(&c);
    j = json_loadb(r.body, r.body_len, 0, &jerr);
    if (r.status != 200 || j == NULL)
        bc_fail("GET /healthz: status %d, body %.*s", r.status, (int)r.body_len, r.body);
    h.cold_starts = bc_json_find_int(j, "cold_starts");
    h.warm_starts = bc_json_find_int(j, "warm_starts");
    h.environments = bc_json_find_int(j, "environments");
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
        bc_fail("start-up listener: %s", strerror(errno));
    snprintf(api, sizeof(api), "AWS_LAMBDA_RUNTIME_API=127.0.0.1:%d", ntohs(sin.sin_port));
    snprintf(root, sizeof(root), "LAMBDA_TASK_ROOT=%s", codedir);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);

    t0 = bc_now_ns();
    rc = posix_spawn(&pid, bootstrap, &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        bc_fail("spawn %s: %s", bootstrap, strerror(rc));
    deadline = t0 + (uint64_t)STARTUP_TIMEOUT_MS * 1000000u;
    pl.fd = lfd;
    pl.events = POLLIN;
    if (poll(&pl, 1, STARTUP_TIMEOUT_MS) != 1 || (cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
        bc_fail("the bootstrap %s did not connect within %d ms", bootstrap, STARTUP_TIMEOUT_MS);
    for (;;) {
        ssize_t n;
        int left = (int)((deadline - bc_now_ns()) / 1000000u);

        pl.fd = cfd;
        if (bc_now_ns() >= deadline || poll(&pl, 1, left) != 1)
            bc_fail("the bootstrap %s sent no request within %d ms", bootstrap, STARTUP_TIMEOUT_MS);
        n = recv(cfd, buf + got, sizeof(buf) - 1 - got, 0);
        if (n <= 0)
            bc_fail("the bootstrap %s closed its Runtime API connection", bootstrap);
        got += (size_t)n;
        buf[got] = '\0';
        if (strstr(buf, "\r\n\r\n") != NULL)
            break;
    }
    t1 = bc_now_ns();
    if (strstr(buf, "/runtime/invocation/next") == NULL)
        bc_fail("the bootstrap's first request is not invocation/next: %.80s", buf);
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

static const char *const g_head[] = {
    "measurement",       "p50 µs", "p99 µs", "req/s", "Δp50 vs baseline", "Δp99 vs baseline",
    "req/s vs baseline", "target", "met?",
};

/* Columns 1..6 are numbers (right-aligned). */
static struct bc_table g_table = {.ncol = 9, .head = g_head, .num_first = 1, .num_last = 6};

static void fmt_delta(char *out, size_t sz, double d, double ratio)
{
    if (isnan(d))
        snprintf(out, sz, "—");
    else
        snprintf(out, sz, "%+.0f µs (%.2f×)", d, ratio);
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

static struct opts parse_opts(int argc, char **argv)
{
    struct opts o = {.broker = SY_BINARY,
                     .bootstrap = SY_BENCH_BOOTSTRAP,
                     .rounds = 5,
                     .n1 = 2000,
                     .n8 = 1000,
                     .python = 1,
                     .keep = 0};

    bc_prog = "bench_invoke"; /* the prefix of bench_common.c's messages */
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
            o.rounds = (int)bc_long_arg(v, a, 1, 21);
        else if (strcmp(a, "--n1") == 0)
            o.n1 = (int)bc_long_arg(v, a, 100, 1000000);
        else if (strcmp(a, "--n8") == 0)
            o.n8 = (int)bc_long_arg(v, a, 100, 1000000);
        else {
            usage(stderr);
            exit(2);
        }
    }
    return o;
}

static void print_env(const struct opts *o)
{
    bc_print_machine("invoke");
    printf("- broker: %s; provided bootstrap: %s\n", o->broker, o->bootstrap);
    printf("- payload: %zu bytes `%s`; %d rounds, each %d requests at c=1 and %d×%d at c=%d, "
           "after a warm-up\n\n",
           strlen(PAYLOAD), PAYLOAD, o->rounds, o->n1, CONC, o->n8, CONC);
    fflush(stdout);
}

/* Write the config, the provided code dir (a copy of the bootstrap) and the Python handler. */
static void setup_workdir(const struct opts *o)
{
    char path[sizeof(bc_workdir) + 64], cfg[4096];
    size_t off;

    snprintf(bc_workdir, sizeof(bc_workdir), "/tmp/sy-bench-XXXXXX");
    if (mkdtemp(bc_workdir) == NULL)
        bc_fail("mkdtemp: %s", strerror(errno));
    snprintf(path, sizeof(path), "%s/provided", bc_workdir);
    bc_mkdir(path);
    snprintf(path, sizeof(path), "%s/provided/bootstrap", bc_workdir);
    bc_copy_file(o->bootstrap, path, 0755);
    snprintf(path, sizeof(path), "%s/python", bc_workdir);
    bc_mkdir(path);
    snprintf(path, sizeof(path), "%s/python/app.py", bc_workdir);
    bc_write_file(path, "def handler(event, context):\n    return event\n", 0644);

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
    snprintf(path, sizeof(path), "%s/config.yaml", bc_workdir);
    bc_write_file(path, cfg, 0644);
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
    char codedir[sizeof(bc_workdir) + 16];
    static char broker_path[PATH_MAX], boot_path[PATH_MAX];
    int echo_port, nt = o.python ? N_TARGETS : T_PY;
    uint64_t t_begin = bc_now_ns();

    signal(SIGPIPE, SIG_IGN);
    /* Absolute paths: the broker runs with its cwd in the work dir. */
    if (access(o.broker, X_OK) != 0 || realpath(o.broker, broker_path) == NULL)
        bc_fail("broker binary %s: %s (build it, or pass --broker)", o.broker, strerror(errno));
    if (access(o.bootstrap, X_OK) != 0 || realpath(o.bootstrap, boot_path) == NULL)
        bc_fail("bootstrap %s: %s (build it, or pass --bootstrap)", o.bootstrap, strerror(errno));
    o.broker = broker_path;
    o.bootstrap = boot_path;
    print_env(&o);

    /* Fork the echo server first: no thread of ours exists yet. */
    echo_port = echo_server_start();
    setup_workdir(&o);
    snprintf(codedir, sizeof(codedir), "%s/provided", bc_workdir);

    /* Warm phase: one broker; idle RSS right after ready, nothing invoked yet. */
    b = broker_start(o.broker, bc_workdir, 0);
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
        static struct bc_conn c;
        struct health hc;
        char err[256];

        fprintf(stderr, "bench_invoke: cold round %d/%d\n", r + 1, o.rounds);
        b = broker_start(o.broker, bc_workdir, r + 1);
        rss_idle[n_rss++] = (double)rss_kb(b.pid);
        if (bc_conn_open(&c, b.port, err, sizeof(err)) != 0)
            bc_fail("cold: %s", err);
        for (int i = 0; i < N_COLD; i++) {
            struct target t;
            struct bc_resp resp;
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
            t0 = bc_now_ns();
            if (bc_conn_roundtrip(&c, t.req, t.reqlen, &resp, err, sizeof(err)) != 0)
                bc_fail("cold invoke of %s: %s", fn, err);
            t1 = bc_now_ns();
            if (!body_ok(&t, &resp))
                bc_fail("cold invoke of %s: status %d, body %.*s", fn, resp.status,
                        (int)resp.body_len, resp.body);
            lat[i] = t1 - t0;
            init[i] = init_duration_us(resp.log_result);
            if (isnan(init[i]))
                fprintf(stderr,
                        "bench_invoke: warning: no Init Duration in the log tail of "
                        "%s (X-Amz-Log-Result %s)\n",
                        fn, resp.log_result[0] != '\0' ? "without it" : "absent");
        }
        bc_conn_close(&c);
        hc = broker_health(&b);
        if (hc.cold_starts >= 0 && hc.cold_starts != N_COLD)
            fprintf(stderr,
                    "bench_invoke: warning: /healthz counts %lld cold starts in cold "
                    "round %d, expected %d\n",
                    hc.cold_starts, r + 1, N_COLD);
        broker_stop(&b);
        qsort(lat, N_COLD, sizeof(lat[0]), bc_cmp_u64);
        cold_p50[r] = bc_pct_us(lat, N_COLD, 0.50);
        cold_p99[r] = bc_pct_us(lat, N_COLD, 0.99);
        init_p50[r] = bc_median(init, N_COLD);
        qsort(st, N_COLD, sizeof(st[0]), bc_cmp_dbl);
        st_p50[r] = bc_median(st, N_COLD);
        st_p99[r] = st[N_COLD - 1];
    }
    bc_child_stop(&bc_child_pid[SLOT_ECHO], "echo server", 0);

    /* ---- rows ---- */
    static const char *const names[2][N_TARGETS] = {
        {"baseline: loopback HTTP, c=1", "provided, warm, c=1", "python, warm, c=1"},
        {"baseline: loopback HTTP, c=8", "provided, warm, c=8", "python, warm, c=8"},
    };
    double warm_prov_p50 = NAN;

    for (int c = 0; c < 2; c++) {
        for (int t = 0; t < nt; t++) {
            struct bc_row *row = bc_row_add(&g_table, "%s", names[c][t]);
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
            bc_fmt_num(row->c[1], sizeof(row->c[1]), bc_median(p50, (size_t)R), 1);
            bc_fmt_num(row->c[2], sizeof(row->c[2]), bc_median(p99, (size_t)R), 1);
            bc_fmt_num(row->c[3], sizeof(row->c[3]), bc_median(rps, (size_t)R), 0);
            if (t == T_BASE) {
                snprintf(row->c[7], sizeof(row->c[7]), "(the floor)");
                continue;
            }
            fmt_delta(row->c[4], sizeof(row->c[4]), bc_median(d50, (size_t)R),
                      bc_median(q50, (size_t)R));
            fmt_delta(row->c[5], sizeof(row->c[5]), bc_median(d99, (size_t)R),
                      bc_median(q99, (size_t)R));
            snprintf(row->c[6], sizeof(row->c[6]), "%.2f×", bc_median(qr, (size_t)R));
            if (t == T_PROV && c == 0) {
                int met = bc_median(d50, (size_t)R) <= 150.0 && bc_median(d99, (size_t)R) <= 1000.0;
                warm_prov_p50 = bc_median(p50, (size_t)R);
                snprintf(row->c[7], sizeof(row->c[7]), "Δp50 ≤ 150 µs, Δp99 ≤ 1000 µs");
                snprintf(row->c[8], sizeof(row->c[8]), "%s", met ? "yes" : "**no**");
            } else if (t == T_PROV) {
                snprintf(row->c[7], sizeof(row->c[7]), "(info; target is at c=1)");
            }
        }
    }

    /* Cold: baseline = the bootstrap alone plus a warm invoke (its own per-round start-up). */
    {
        struct bc_row *row = bc_row_add(&g_table, "baseline: bootstrap start-up alone");
        double d50[21], q50[21], d99[21], q99[21];
        int R = o.rounds;

        bc_fmt_num(row->c[1], sizeof(row->c[1]), bc_median(st_p50, (size_t)R), 0);
        bc_fmt_num(row->c[2], sizeof(row->c[2]), bc_median(st_p99, (size_t)R), 0);
        snprintf(row->c[7], sizeof(row->c[7]), "(the runtime's own start-up)");
        row = bc_row_add(&g_table, "provided, cold start");
        for (int r = 0; r < R; r++) {
            double base50 = st_p50[r] + warm_prov_p50, base99 = st_p99[r] + warm_prov_p50;
            d50[r] = cold_p50[r] - base50;
            q50[r] = cold_p50[r] / base50;
            d99[r] = cold_p99[r] - base99;
            q99[r] = cold_p99[r] / base99;
        }
        bc_fmt_num(row->c[1], sizeof(row->c[1]), bc_median(cold_p50, (size_t)R), 0);
        bc_fmt_num(row->c[2], sizeof(row->c[2]), bc_median(cold_p99, (size_t)R), 0);
        if (isnan(warm_prov_p50)) {
            snprintf(row->c[4], sizeof(row->c[4]), "—");
        } else {
            fmt_delta(row->c[4], sizeof(row->c[4]), bc_median(d50, (size_t)R),
                      bc_median(q50, (size_t)R));
            fmt_delta(row->c[5], sizeof(row->c[5]), bc_median(d99, (size_t)R),
                      bc_median(q99, (size_t)R));
        }
        snprintf(row->c[7], sizeof(row->c[7]), "Δp50 ≤ 5000 µs");
        snprintf(row->c[8], sizeof(row->c[8]), "%s",
                 bc_median(d50, (size_t)R) <= 5000.0 ? "yes" : "**no**");
    }

    /* RSS: the median over every fresh broker (warm phase and each cold round). */
    {
        struct bc_row *row = bc_row_add(&g_table, "broker RSS idle, 10 functions");
        double med = bc_median(rss_idle, n_rss) / 1024.0, mx = 0;

        for (size_t i = 0; i < n_rss; i++)
            if (rss_idle[i] / 1024.0 > mx)
                mx = rss_idle[i] / 1024.0;
        snprintf(row->c[1], sizeof(row->c[1]), "%.1f MB", med);
        snprintf(row->c[2], sizeof(row->c[2]), "max %.1f MB", mx);
        snprintf(row->c[7], sizeof(row->c[7]), "≤ 10 MB");
        snprintf(row->c[8], sizeof(row->c[8]), "%s", med <= 10.0 ? "yes" : "**no**");
        row = bc_row_add(&g_table, "broker RSS after warm runs");
        snprintf(row->c[1], sizeof(row->c[1]), "%.1f MB", rss_warm / 1024.0);
        snprintf(row->c[7], sizeof(row->c[7]), "(info)");
    }

    bc_print_table(&g_table);
    printf("\n- Medians of %d rounds. Δ and × are medians of per-round differences and ratios "
           "against the baseline measured in the same round, so they need not equal the "
           "difference of the p50/p99 columns.\n",
           o.rounds);
    printf("- Warm rows: same client, same request, one keep-alive connection per client; "
           "the baseline is a bare libevent HTTP/1.1 echo server on 127.0.0.1.\n");
    printf("- Cold start: %d cold invokes per round, each in a fresh environment of a fresh "
           "broker; Δ is against (bootstrap start-up alone + warm provided p50 at c=1 = %.0f µs). "
           "Broker-reported Init Duration p50: %.0f µs.\n",
           N_COLD, warm_prov_p50, bc_median(init_p50, (size_t)o.rounds));
    printf("- /healthz during the warm rounds: %lld cold starts (want 0), %lld environments "
           "live.\n",
           h1.cold_starts >= 0 && h0.cold_starts >= 0 ? h1.cold_starts - h0.cold_starts : -1LL,
           h1.environments);
    printf("- Total bench time %.1f s.\n", (double)(bc_now_ns() - t_begin) / 1e9);

    if (!o.keep && bc_rm_tree(bc_workdir) != 0)
        fprintf(stderr, "bench_invoke: could not remove %s\n", bc_workdir);
    else if (o.keep)
        printf("- Work dir kept: %s\n", bc_workdir);
    return 0;
}
