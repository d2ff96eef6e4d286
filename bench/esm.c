/*
 * bench/esm.c - `bench_esm`: the event source mapping benchmark. It starts its own redis-server
 * (a free loopback port, no persistence) and real `switchyard run` brokers whose mappings feed a
 * sink `provided` runtime (bench/esm_bootstrap.c), and prints one markdown table:
 *
 *   1. records/s delivered end to end by a Redis list mapping and a Redis stream mapping at
 *      batch_size 1, 10, 100 and 1000: N records preloaded with the mapping disabled, then timed
 *      from UpdateEventSourceMapping Enabled=true until Redis shows nothing left (list: LLEN and
 *      the in-flight ZSET both 0; stream: XPENDING 0 and the group's lag 0);
 *   2. idle latency from LPUSH / XADD to the handler's start (the handler reads the push time
 *      from the body and writes now - t to a file), one record at a time with gaps;
 *   3. the broker's RSS while a 1,000,000-record list backlog drains at batch_size 100;
 *   4. in-process filter matching (filter_match()) on 1 KB JSON records.
 *
 * Each row stands beside a baseline measured in the same run, because these machines are shared:
 *   1. a plain blocking hiredis consumer of the same number of records of the same size, at the
 *      same batch size: list RPOP key COUNT n (the end the mapping pops), nothing else; stream
 *      XREADGROUP COUNT n + XACK. Preloaded and timed the same way, just before the mapping.
 *   2. the same pushes received by a plain hiredis client: BRPOP (list), XREADGROUP BLOCK + XACK
 *      (stream), computing now - t as soon as the reply is parsed.
 *   3. the same broker idle with its mapping enabled on an empty list.
 *   4. jansson: json_loadb() of the same body and the same three clauses tested on the DOM.
 *
 * Throughput rows are repeated --rounds times (baseline, then mapping, back to back); the table
 * shows medians, and ratios are medians of per-round ratios. Every wait is bounded: a drain that
 * makes no progress for STALL_MS fails the bench with what Redis and the mapping's counters say,
 * and so does one that takes longer than DRAIN_MAX_MS. Child processes get PR_SET_PDEATHSIG and
 * are killed by PID; nothing listens anywhere but 127.0.0.1.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "bench_common.h"
#include "harness/kafka.h"
#include "kafka_raw.h"
#include "esm_fs.h"
#include "esm_mqtt.h"
#include "harness/mqtt.h"
#include "core/buf.h"
#include "core/errors.h"
#include "mappings/filter.h"

#ifndef SY_BINARY
#define SY_BINARY "switchyard"
#endif
#ifndef SY_BENCH_ESM_BOOTSTRAP
#define SY_BENCH_ESM_BOOTSTRAP "esm_bootstrap"
#endif

#define MAX_ROUNDS 9
#define N_BATCH 4
#define MAP_CONC 4             /* maximum_concurrency of every mapping */
#define BODY_LEN 100           /* bytes per throughput / backlog record */
#define LIST_PUSH_VALUES 1000  /* values per LPUSH of a preload */
#define PIPELINE 32            /* LPUSH commands in flight during a preload */
#define REDIS_READY_MS 5000    /* redis-server start until PING answers */
#define REDIS_ATTEMPTS 5       /* ports tried (a port can be taken between probe and bind) */
#define STATE_TIMEOUT_MS 15000 /* UpdateEventSourceMapping Enabled=false until "Disabled" */
#define STALL_MS 15000         /* a drain with no progress for this long fails */
#define DRAIN_MAX_MS 300000    /* any drain, start to end */
#define POLL_MS 20             /* Redis polling during a drain... */
#define FINE_POLL_US 500       /* ...over its last 5% */
#define RSS_EVERY_MS 100       /* VmRSS sampling */
#define LAT_WAIT_MS 5000       /* one latency record: push until seen, then until acked */
#define LAT_WARMUP 20          /* records pushed before the latency samples */
#define FILTER_RECORDS 64      /* distinct filter records */
#define FILTER_BODY_LEN 1024   /* bytes of each filter record's body */
#define MARK "sybench-t="      /* esm_bootstrap.c: the push time in a latency record */

enum {
    SLOT_REDIS,
    SLOT_MAIN,
    SLOT_RSS,
    SLOT_KMOCK,
    SLOT_KAFKA,
    SLOT_KRSS,
    SLOT_FS,
    SLOT_MQTT,
    SLOT_MQB
};
enum { MODE_LIST, MODE_STREAM, N_MODES };
static const char *const mode_name[N_MODES] = {"list", "stream"};
static const int batch_sizes[N_BATCH] = {1, 10, 100, 1000};

/* ---- options ---------------------------------------------------------------------------- */

struct opts {
    const char *broker;
    const char *bootstrap;
    const char *redis;
    int quick;
    int kafka_only; /* --only kafka: the Kafka rows alone */
    int fs_only;    /* --only fs: the file-drop rows alone */
    int mqtt_only;  /* --only mqtt: the MQTT rows alone */
    long mqtt_n;    /* messages per MQTT throughput run */
    long fs_n;      /* files per file-drop throughput run */
    int rounds;
    int keep;
    long n[N_BATCH];  /* records per throughput run, by batch size */
    long kn[N_BATCH]; /* the same for Kafka (the mock keeps 5 MiB per partition) */
    long lat_samples;
    long backlog;
    double filter_secs;
};

static struct opts g_o;

/* ---- small helpers ---------------------------------------------------------------------- */

static int64_t realtime_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_us(long us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* VmRSS of PID in MB, NAN when unreadable. */
static double rss_mb(pid_t pid)
{
    char path[64], line[256];
    double mb = NAN;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return NAN;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            mb = strtod(line + 6, NULL) / 1024.0;
            break;
        }
    }
    fclose(f);
    return mb;
}

/* utime + stime of PID in seconds (0 when unreadable). */
static double cpu_secs(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long long ut = 0, st = 0;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    /* Fields after "(comm)": state is field 3, utime 14, stime 15. */
    p = strrchr(buf, ')');
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds used so far by the children of PID (the broker's runtimes; those that exited
 * are not counted). */
static double children_cpu_secs(pid_t pid)
{
    char path[64], buf[1024], *p;
    double sum = 0;
    DIR *d = opendir("/proc");
    struct dirent *de;

    if (d == NULL)
        return 0;
    while ((de = readdir(d)) != NULL) {
        int ppid = 0, fd;
        ssize_t n;

        if (de->d_name[0] < '1' || de->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%.20s/stat", de->d_name);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        p = strrchr(buf, ')');
        if (p != NULL && sscanf(p + 2, "%*c %d", &ppid) == 1 && ppid == (int)pid)
            sum += cpu_secs((pid_t)atoi(de->d_name));
    }
    closedir(d);
    return sum;
}

/* CPU seconds all CPUs of the machine spent busy so far (/proc/stat: all but idle, iowait). */
static double machine_busy_secs(void)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    int n;

    if (f == NULL)
        return 0;
    n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
               &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 8)
        return 0;
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

/* A growable array of doubles. */
struct vec {
    double *v;
    size_t n, cap;
};

static void vec_push(struct vec *a, double x)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 256;
        double *p = realloc(a->v, cap * sizeof(*p));

        if (p == NULL)
            bc_fail("out of memory");
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n++] = x;
}

/* Nearest-rank percentile P of A (sorted in place); NAN when empty. */
static double vec_pct(struct vec *a, double p)
{
    size_t k;

    if (a->n == 0)
        return NAN;
    qsort(a->v, a->n, sizeof(*a->v), bc_cmp_dbl);
    k = (size_t)ceil(p * (double)a->n);
    return a->v[k == 0 ? 0 : k - 1];
}

/* ---- redis: the server ------------------------------------------------------------------- */

static pid_t g_redis_pid = -1;
static int g_redis_port;

/* A port that was free a moment ago (bound to 127.0.0.1:0, then closed). */
static int probe_port(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port;

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) != 0)
        bc_fail("cannot find a free port: %s", strerror(errno));
    port = ntohs(sin.sin_port);
    close(fd);
    return port;
}

/* Connect to our redis-server (blocking, BC_IO_TIMEOUT_S on connect and every command). */
static redisContext *redis_open(void)
{
    struct timeval tv = {.tv_sec = BC_IO_TIMEOUT_S, .tv_usec = 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", g_redis_port, tv);

    if (c == NULL || c->err) {
        char msg[160];

        snprintf(msg, sizeof(msg), "%s", c != NULL ? c->errstr : "out of memory");
        redisFree(c);
        bc_fail("connect to redis-server on 127.0.0.1:%d: %s", g_redis_port, msg);
    }
    redisSetTimeout(c, tv);
    return c;
}

/*
 * Spawn redis-server on a fresh port (up to REDIS_ATTEMPTS ports: a port taken between the
 * probe and the server's bind makes it exit, and we try another) and wait until it answers PING.
 */
static void redis_start(void)
{
    char log[BC_WORKDIR_MAX + 64], port_s[16];
    pid_t parent = getpid();

    snprintf(log, sizeof(log), "%s/redis.log", bc_workdir);
    for (int attempt = 0; attempt < REDIS_ATTEMPTS; attempt++) {
        uint64_t deadline = bc_now_ns() + (uint64_t)REDIS_READY_MS * 1000000u;
        int logfd, status;
        pid_t pid;

        g_redis_port = probe_port();
        snprintf(port_s, sizeof(port_s), "%d", g_redis_port);
        logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (logfd < 0)
            bc_fail("cannot create %s: %s", log, strerror(errno));
        pid = fork();
        if (pid < 0)
            bc_fail("fork: %s", strerror(errno));
        if (pid == 0) {
            int devnull = open("/dev/null", O_RDONLY);

            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(1);
            if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
                _exit(126);
            execlp(g_o.redis, g_o.redis, "--port", port_s, "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--daemonize", "no", "--dir", bc_workdir, (char *)NULL);
            dprintf(2, "exec %s: %s\n", g_o.redis, strerror(errno));
            _exit(127);
        }
        close(logfd);
        g_redis_pid = pid;
        bc_child_pid[SLOT_REDIS] = pid;
        snprintf(bc_child_log[SLOT_REDIS], sizeof(bc_child_log[SLOT_REDIS]), "%s", log);
        for (;;) {
            struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
            redisContext *c;

            if (waitpid(pid, &status, WNOHANG) == pid) {
                g_redis_pid = bc_child_pid[SLOT_REDIS] = -1;
                if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
                    bc_fail("cannot run %s (install redis-server, or pass --redis PATH)",
                            g_o.redis);
                fprintf(stderr,
                        "bench_esm: redis-server exited at start on port %d (status "
                        "0x%x); trying another port\n",
                        g_redis_port, status);
                break;
            }
            c = redisConnectWithTimeout("127.0.0.1", g_redis_port, tv);
            if (c != NULL && !c->err) {
                redisReply *r;

                redisSetTimeout(c, tv);
                r = redisCommand(c, "PING");
                if (r != NULL && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0) {
                    freeReplyObject(r);
                    redisFree(c);
                    return;
                }
                if (r != NULL)
                    freeReplyObject(r);
            }
            redisFree(c);
            if (bc_now_ns() > deadline)
                bc_fail("redis-server on port %d did not answer PING within %d ms", g_redis_port,
                        REDIS_READY_MS);
            bc_sleep_ms(5);
        }
    }
    bc_fail("redis-server did not start on any of %d ports", REDIS_ATTEMPTS);
}

/* ---- redis: commands --------------------------------------------------------------------- */

/* A command that must not fail (no reply, or an error reply: bc_fail). Returns new. */
static redisReply *rcmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    redisReply *r;

    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (r == NULL)
        bc_fail("redis command '%s': %s", fmt, c->errstr);
    if (r->type == REDIS_REPLY_ERROR)
        bc_fail("redis command '%s': %s", fmt, r->str);
    return r;
}

/* rcmd() for a command whose reply does not matter. */
static void rcmd_do(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    redisReply *r;

    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (r == NULL)
        bc_fail("redis command '%s': %s", fmt, c->errstr);
    if (r->type == REDIS_REPLY_ERROR)
        bc_fail("redis command '%s': %s", fmt, r->str);
    freeReplyObject(r);
}

/* The next pipelined reply (must not be an error); freed here. */
static void rreply_check(redisContext *c, const char *what, char *last_str, size_t last_sz)
{
    void *p = NULL;
    redisReply *r;

    if (redisGetReply(c, &p) != REDIS_OK || p == NULL)
        bc_fail("redis %s: %s", what, c->errstr);
    r = p;
    if (r->type == REDIS_REPLY_ERROR)
        bc_fail("redis %s: %s", what, r->str);
    if (last_str != NULL && r->type == REDIS_REPLY_STRING)
        snprintf(last_str, last_sz, "%s", r->str);
    freeReplyObject(r);
}

/* Record I's body: "esm-bench NNNNNNNNNN " padded with 'x' to BODY_LEN bytes. */
static void make_body(char *out, long i)
{
    int n = snprintf(out, BODY_LEN + 1, "esm-bench %010ld ", i);

    memset(out + n, 'x', (size_t)(BODY_LEN - n));
    out[BODY_LEN] = '\0';
}

/*
 * Preload N records into the list KEY: LPUSH of LIST_PUSH_VALUES values per command, PIPELINE
 * commands in flight.
 */
static void preload_list(redisContext *c, const char *key, long n)
{
    static char vals[LIST_PUSH_VALUES][BODY_LEN + 1];
    static const char *argv[LIST_PUSH_VALUES + 2];
    static size_t lens[LIST_PUSH_VALUES + 2];
    long done = 0;
    int inflight = 0;

    while (done < n || inflight > 0) {
        while (done < n && inflight < PIPELINE) {
            int k = (int)(n - done < LIST_PUSH_VALUES ? n - done : LIST_PUSH_VALUES);

            argv[0] = "LPUSH";
            lens[0] = 5;
            argv[1] = key;
            lens[1] = strlen(key);
            for (int i = 0; i < k; i++) {
                make_body(vals[i], done + i);
                argv[2 + i] = vals[i];
                lens[2 + i] = BODY_LEN;
            }
            if (redisAppendCommandArgv(c, k + 2, argv, lens) != REDIS_OK)
                bc_fail("redis LPUSH: %s", c->errstr);
            done += k;
            inflight++;
        }
        rreply_check(c, "LPUSH", NULL, 0);
        inflight--;
    }
}

/* Preload N records into the stream KEY (XADD KEY * body VALUE, pipelined); the last id. */
static void preload_stream(redisContext *c, const char *key, long n, char *last_id, size_t sz)
{
    char body[BODY_LEN + 1];
    long done = 0;

    while (done < n) {
        long k = n - done < 1000 ? n - done : 1000;

        for (long i = 0; i < k; i++) {
            make_body(body, done + i);
            if (redisAppendCommand(c, "XADD %s * body %b", key, body, (size_t)BODY_LEN) != REDIS_OK)
                bc_fail("redis XADD: %s", c->errstr);
        }
        for (long i = 0; i < k; i++)
            rreply_check(c, "XADD", last_id, sz);
        done += k;
    }
}

/* ---- the broker's control API ---------------------------------------------------------- */

struct api {
    const char *what; /* "broker (main)" */
    pid_t pid;        /* the broker; -1 once stopped */
    int slot;         /* in bc_child_pid[] */
    int port;
    struct bc_conn *conn;
};

/* Fail at once (rather than at a deadline) when A's broker has exited. */
static void api_check_alive(struct api *a)
{
    int status;

    if (a->pid > 0 && waitpid(a->pid, &status, WNOHANG) == a->pid) {
        a->pid = bc_child_pid[a->slot] = -1;
        bc_fail("%s exited (status 0x%x)", a->what, status);
    }
}

/* One request on A's keep-alive connection (reopened once if it fails). Returns new JSON or
 * NULL for an empty body; bc_fail when the status is not WANT. */
static json_t *api_call(struct api *a, const char *method, const char *path, const char *body,
                        int want)
{
    char req[1024], err[256];
    struct bc_resp r;
    json_error_t jerr;
    json_t *j;
    int n =
        snprintf(req, sizeof(req),
                 "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\n\r\n%s",
                 method, path, a->port, body != NULL ? strlen(body) : 0, body != NULL ? body : "");

    if (n < 0 || (size_t)n >= sizeof(req))
        bc_fail("request too long");
    for (int attempt = 0;; attempt++) {
        if (a->conn->fd < 0 && bc_conn_open(a->conn, a->port, err, sizeof(err)) != 0)
            bc_fail("%s: %s", a->what, err);
        if (bc_conn_roundtrip(a->conn, req, (size_t)n, &r, err, sizeof(err)) == 0)
            break;
        bc_conn_close(a->conn);
        if (attempt > 0)
            bc_fail("%s: %s %s: %s", a->what, method, path, err);
    }
    if (r.status != want)
        bc_fail("%s: %s %s answered %d (want %d): %.*s", a->what, method, path, r.status, want,
                (int)(r.body_len > 300 ? 300 : r.body_len), r.body);
    if (r.body_len == 0)
        return NULL;
    j = json_loadb(r.body, r.body_len, 0, &jerr);
    if (j == NULL)
        bc_fail("%s: %s %s: the answer is not JSON: %s", a->what, method, path, jerr.text);
    return j;
}

/* A mapping of a broker's config, and what the bench knows about it. */
struct esm {
    const char *name;
    char key[64];
    int mode;
    int batch;
    char uuid[64];
    struct api *api;
};

struct counters {
    long long received, delivered, failed, filtered, batches;
    char state[32];
    char source_state[128];
};

static long long obj_int(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);

    return json_is_integer(v) ? json_integer_value(v) : -1;
}

/* Fill the UUIDs of MAPS[0..N) from ListEventSourceMappings (by Switchyard.name). */
static void api_resolve(struct api *a, struct esm *maps, size_t n)
{
    json_t *j = api_call(a, "GET", "/2015-03-31/event-source-mappings", NULL, 200);
    json_t *list = json_object_get(j, "EventSourceMappings"), *m;
    size_t i;

    json_array_foreach(list, i, m)
    {
        const char *name =
            json_string_value(json_object_get(json_object_get(m, "Switchyard"), "name"));
        const char *uuid = json_string_value(json_object_get(m, "UUID"));

        for (size_t k = 0; k < n && name != NULL && uuid != NULL; k++)
            if (strcmp(maps[k].name, name) == 0)
                snprintf(maps[k].uuid, sizeof(maps[k].uuid), "%s", uuid);
    }
    json_decref(j);
    for (size_t k = 0; k < n; k++)
        if (maps[k].uuid[0] == '\0')
            bc_fail("%s: no mapping named %s in ListEventSourceMappings", a->what, maps[k].name);
}

static struct counters esm_counters(const struct esm *m)
{
    char path[128];
    struct counters c;
    json_t *j, *sy, *cn;

    snprintf(path, sizeof(path), "/2015-03-31/event-source-mappings/%s", m->uuid);
    j = api_call(m->api, "GET", path, NULL, 200);
    sy = json_object_get(j, "Switchyard");
    cn = json_object_get(sy, "counters");
    memset(&c, 0, sizeof(c));
    c.received = obj_int(cn, "received");
    c.delivered = obj_int(cn, "delivered");
    c.failed = obj_int(cn, "failed");
    c.filtered = obj_int(cn, "filtered");
    c.batches = obj_int(cn, "batches");
    snprintf(c.state, sizeof(c.state), "%s",
             json_is_string(json_object_get(j, "State"))
                 ? json_string_value(json_object_get(j, "State"))
                 : "?");
    snprintf(c.source_state, sizeof(c.source_state), "%s",
             json_is_string(json_object_get(sy, "source_state"))
                 ? json_string_value(json_object_get(sy, "source_state"))
                 : "?");
    json_decref(j);
    return c;
}

/* UpdateEventSourceMapping Enabled=ON; when disabling, wait (bounded) for State "Disabled". */
static void esm_enable(const struct esm *m, int on)
{
    char path[128];
    uint64_t deadline;
    struct counters c;

    snprintf(path, sizeof(path), "/2015-03-31/event-source-mappings/%s", m->uuid);
    json_decref(
        api_call(m->api, "PUT", path, on ? "{\"Enabled\":true}" : "{\"Enabled\":false}", 202));
    if (on)
        return;
    deadline = bc_now_ns() + (uint64_t)STATE_TIMEOUT_MS * 1000000u;
    for (;;) {
        c = esm_counters(m);
        if (strcmp(c.state, "Disabled") == 0)
            return;
        if (bc_now_ns() > deadline)
            bc_fail("mapping %s: still %s %d ms after Enabled=false (source %s)", m->name, c.state,
                    STATE_TIMEOUT_MS, c.source_state);
        bc_sleep_ms(5);
    }
}

/* ---- drains ---------------------------------------------------------------------------------- */

/* What is left of a mapping's records in Redis. */
struct left {
    long long waiting;  /* list: LLEN; stream: the group's lag (unread entries), -1 unknown */
    long long inflight; /* list: the in-flight ZSET; stream: XPENDING */
    long long bodies;   /* list: the in-flight body HASH; stream: 0 */
    int done;
};

/* One look at Redis: for a stream, done also when the group delivered LAST_ID and nothing is
 * pending (the lag can be unknown after deletions). */
static struct left look(redisContext *c, const struct esm *m, const char *group,
                        const char *last_id)
{
    struct left l = {0, 0, 0, 0};

    if (m->mode == MODE_LIST) {
        redisAppendCommand(c, "LLEN %s", m->key);
        redisAppendCommand(c, "ZCARD %s:sy:inflight", m->key);
        redisAppendCommand(c, "HLEN %s:sy:body", m->key);
        for (int i = 0; i < 3; i++) {
            void *p = NULL;
            redisReply *r;

            if (redisGetReply(c, &p) != REDIS_OK || p == NULL)
                bc_fail("redis LLEN/ZCARD/HLEN: %s", c->errstr);
            r = p;
            if (r->type != REDIS_REPLY_INTEGER)
                bc_fail("redis LLEN/ZCARD/HLEN %s: unexpected reply type %d", m->key, r->type);
            if (i == 0)
                l.waiting = r->integer;
            else if (i == 1)
                l.inflight = r->integer;
            else
                l.bodies = r->integer;
            freeReplyObject(r);
        }
        l.done = l.waiting == 0 && l.inflight == 0 && l.bodies == 0;
    } else {
        redisReply *r = rcmd(c, "XINFO GROUPS %s", m->key);
        int found = 0, delivered_last = 0;

        l.waiting = -1;
        for (size_t g = 0; g < r->elements; g++) {
            redisReply *e = r->element[g];
            const char *name = NULL;
            long long pending = -1, lag = -1;
            const char *ldi = NULL;

            for (size_t k = 0; e->type == REDIS_REPLY_ARRAY && k + 1 < e->elements; k += 2) {
                const char *f = e->element[k]->str;
                redisReply *v = e->element[k + 1];

                if (f == NULL)
                    continue;
                if (strcmp(f, "name") == 0 && v->type == REDIS_REPLY_STRING)
                    name = v->str;
                else if (strcmp(f, "pending") == 0 && v->type == REDIS_REPLY_INTEGER)
                    pending = v->integer;
                else if (strcmp(f, "lag") == 0 && v->type == REDIS_REPLY_INTEGER)
                    lag = v->integer;
                else if (strcmp(f, "last-delivered-id") == 0 && v->type == REDIS_REPLY_STRING)
                    ldi = v->str;
            }
            if (name == NULL || strcmp(name, group) != 0)
                continue;
            found = 1;
            l.inflight = pending;
            l.waiting = lag;
            delivered_last = ldi != NULL && last_id != NULL && strcmp(ldi, last_id) == 0;
        }
        freeReplyObject(r);
        if (!found) {
            l.inflight = -1;
            return l;
        }
        l.done = l.inflight == 0 && (l.waiting == 0 || delivered_last);
    }
    return l;
}

/* Sampling of a process's VmRSS during a drain (every RSS_EVERY_MS). */
struct rss_probe {
    pid_t pid;
    struct vec samples;
    uint64_t next_ns;
};

static void rss_sample(struct rss_probe *rp)
{
    uint64_t now = bc_now_ns();
    double mb;

    if (rp == NULL || now < rp->next_ns)
        return;
    rp->next_ns = now + (uint64_t)RSS_EVERY_MS * 1000000u;
    mb = rss_mb(rp->pid);
    if (!isnan(mb))
        vec_push(&rp->samples, mb);
}

/*
 * Wait until M's records are all gone from Redis (look()), polling every POLL_MS and every
 * FINE_POLL_US once at most 5% of N are left. Returns the monotonic time of the poll that saw
 * it. Fails the bench when nothing moved for STALL_MS or the whole drain took DRAIN_MAX_MS.
 */
static uint64_t wait_drained(redisContext *c, const struct esm *m, long n, const char *last_id,
                             uint64_t t0, struct rss_probe *rp)
{
    long long last_left = -2;
    uint64_t last_move = bc_now_ns();

    for (;;) {
        struct left l = look(c, m, "switchyard", last_id);
        uint64_t now = bc_now_ns();
        long long left;

        api_check_alive(m->api);
        rss_sample(rp);
        if (l.done)
            return now;
        left = (l.waiting < 0 ? n : l.waiting) + (l.inflight < 0 ? 0 : l.inflight);
        if (left != last_left) {
            last_left = left;
            last_move = now;
        }
        if (now - last_move > (uint64_t)STALL_MS * 1000000u ||
            now - t0 > (uint64_t)DRAIN_MAX_MS * 1000000u) {
            struct counters k = esm_counters(m);

            bc_fail("mapping %s (%s %s, batch %d): %s after %.1f s: %lld waiting, %lld in "
                    "flight%s; the mapping is %s, source %s, counters: received %lld, delivered "
                    "%lld, failed %lld, batches %lld",
                    m->name, mode_name[m->mode], m->key, m->batch,
                    now - last_move > (uint64_t)STALL_MS * 1000000u ? "no progress for 15 s"
                                                                    : "not drained",
                    (double)(now - t0) / 1e9, l.waiting, l.inflight,
                    m->mode == MODE_STREAM && l.inflight < 0 ? " (no consumer group yet)" : "",
                    k.state, k.source_state, k.received, k.delivered, k.failed, k.batches);
        }
        if (left * 20 <= n)
            sleep_us(FINE_POLL_US);
        else
            bc_sleep_ms(POLL_MS);
    }
}

/* One mapping run's figures. */
struct run {
    double rate; /* records/s */
    /* CPU seconds per second of the run: broker, redis-server, the runtimes, this bench, the
     * whole machine */
    double broker_cpu, redis_cpu, rt_cpu, bench_cpu, all_cpu;
    long long extra; /* deliveries beyond N (redeliveries), want 0 */
};

/* Command statistics of the last list and stream batch-100 runs (under the table). */
static char g_cmdstats[N_MODES][768];

/*
 * Redis's time by command since the last CONFIG RESETSTAT, per record of a run of N: the commands
 * that took at least 2% of the total, busiest first, e.g. "evalsha (652 calls) 7.41 µs, ...".
 * Commands called inside scripts are counted twice (also in evalsha).
 */
static void cmdstats(redisContext *c, long n, char *out, size_t sz)
{
    struct {
        char name[32];
        long long calls, usec;
    } st[64];
    redisReply *r = rcmd(c, "INFO commandstats");
    const char *p = r->type == REDIS_REPLY_STRING ? r->str : "";
    long long total = 0;
    size_t k = 0, off = 0;

    while ((p = strstr(p, "cmdstat_")) != NULL && k < sizeof(st) / sizeof(st[0])) {
        if (sscanf(p, "cmdstat_%31[^:]:calls=%lld,usec=%lld", st[k].name, &st[k].calls,
                   &st[k].usec) == 3) {
            total += st[k].usec;
            k++;
        }
        p += 8;
    }
    freeReplyObject(r);
    out[0] = '\0';
    for (;;) {
        size_t best = k;

        for (size_t i = 0; i < k; i++)
            if (st[i].usec >= 0 && (best == k || st[i].usec > st[best].usec))
                best = i;
        if (best == k || st[best].usec * 50 < total || off >= sz)
            break;
        off += (size_t)snprintf(out + off, sz - off, "%s%s (%lld calls) %.2f µs", off ? ", " : "",
                                st[best].name, st[best].calls, (double)st[best].usec / (double)n);
        st[best].usec = -1;
    }
}

/*
 * Drain N fresh records through M (disabled on entry and on return): preload, enable, time
 * until drained, disable. The mapping's counters must show N more deliveries and no failure.
 * With STATS, Redis's command statistics of the run go to STATS (STATS_SZ bytes).
 */
static struct run run_mapping(redisContext *c, const struct esm *m, long n, struct rss_probe *rp,
                              char *stats, size_t stats_sz)
{
    char last_id[64] = "";
    struct counters c0, c1;
    struct run res;
    uint64_t t0, t1;
    double bcpu0, rcpu0, tcpu0, scpu0, acpu0, secs;
    pid_t broker_pid = m->api->pid;

    if (m->mode == MODE_LIST)
        preload_list(c, m->key, n);
    else
        preload_stream(c, m->key, n, last_id, sizeof(last_id));
    c0 = esm_counters(m);
    if (stats != NULL)
        rcmd_do(c, "CONFIG RESETSTAT");
    bcpu0 = cpu_secs(broker_pid);
    rcpu0 = cpu_secs(g_redis_pid);
    tcpu0 = children_cpu_secs(broker_pid);
    scpu0 = cpu_secs(getpid());
    acpu0 = machine_busy_secs();
    t0 = bc_now_ns();
    esm_enable(m, 1);
    t1 = wait_drained(c, m, n, last_id, t0, rp);
    secs = (double)(t1 - t0) / 1e9;
    res.rate = (double)n / secs;
    res.broker_cpu = (cpu_secs(broker_pid) - bcpu0) / secs;
    res.redis_cpu = (cpu_secs(g_redis_pid) - rcpu0) / secs;
    res.rt_cpu = (children_cpu_secs(broker_pid) - tcpu0) / secs;
    res.bench_cpu = (cpu_secs(getpid()) - scpu0) / secs;
    res.all_cpu = (machine_busy_secs() - acpu0) / secs;
    if (stats != NULL)
        cmdstats(c, n, stats, stats_sz);
    esm_enable(m, 0);
    c1 = esm_counters(m);
    if (c1.failed != c0.failed || c1.delivered - c0.delivered < n)
        bc_fail("mapping %s: %lld of %ld records delivered, %lld failed", m->name,
                c1.delivered - c0.delivered, n, c1.failed - c0.failed);
    res.extra = c1.delivered - c0.delivered - n;
    if (m->mode == MODE_STREAM)
        rcmd_do(c, "XTRIM %s MAXLEN 0", m->key); /* everything is acked: keep Redis small */
    return res;
}

/* ---- throughput baselines: plain blocking hiredis ---------------------------------------- */

/* N records into a fresh list, then RPOP KEY COUNT BATCH until it is empty. Records/s. */
static double base_list(redisContext *c, long n, int batch)
{
    const char *key = "esm:base:list";
    long got = 0;
    uint64_t t0, t1;

    rcmd_do(c, "DEL %s", key);
    preload_list(c, key, n);
    t0 = bc_now_ns();
    for (;;) {
        redisReply *r = rcmd(c, "RPOP %s %d", key, batch);

        if (r->type == REDIS_REPLY_NIL) {
            freeReplyObject(r);
            break;
        }
        if (r->type != REDIS_REPLY_ARRAY)
            bc_fail("RPOP COUNT: unexpected reply type %d", r->type);
        got += (long)r->elements;
        freeReplyObject(r);
    }
    t1 = bc_now_ns();
    if (got != n)
        bc_fail("baseline list: popped %ld of %ld records", got, n);
    return (double)n / ((double)(t1 - t0) / 1e9);
}

/*
 * N records into a fresh stream with a fresh group, then XREADGROUP COUNT BATCH and XACK of what
 * it returned, until a read returns nothing. Records/s.
 */
static double base_stream(redisContext *c, long n, int batch)
{
    const char *key = "esm:base:stream";
    const char **argv = malloc(((size_t)batch + 3) * sizeof(*argv));
    size_t *lens = malloc(((size_t)batch + 3) * sizeof(*lens));
    char last_id[64];
    long got = 0;
    uint64_t t0, t1;

    if (argv == NULL || lens == NULL)
        bc_fail("out of memory");
    rcmd_do(c, "DEL %s", key);
    rcmd_do(c, "XGROUP CREATE %s bench 0 MKSTREAM", key);
    preload_stream(c, key, n, last_id, sizeof(last_id));
    t0 = bc_now_ns();
    for (;;) {
        redisReply *r = rcmd(c, "XREADGROUP GROUP bench c1 COUNT %d STREAMS %s >", batch, key);
        redisReply *entries, *ack;
        size_t k = 0;

        if (r->type == REDIS_REPLY_NIL || r->elements == 0) {
            freeReplyObject(r);
            break;
        }
        /* [[key, [[id, [field, value]], ...]]] */
        entries = r->element[0]->element[1];
        argv[0] = "XACK";
        lens[0] = 4;
        argv[1] = key;
        lens[1] = strlen(key);
        argv[2] = "bench";
        lens[2] = 5;
        for (size_t i = 0; i < entries->elements && i < (size_t)batch; i++) {
            redisReply *id = entries->element[i]->element[0];

            argv[3 + k] = id->str;
            lens[3 + k] = id->len;
            k++;
        }
        if (k == 0) {
            freeReplyObject(r);
            break;
        }
        ack = redisCommandArgv(c, (int)k + 3, argv, lens);
        if (ack == NULL || ack->type != REDIS_REPLY_INTEGER || ack->integer != (long long)k)
            bc_fail("baseline XACK: %s", ack == NULL ? c->errstr : "unexpected reply");
        freeReplyObject(ack);
        got += (long)k;
        freeReplyObject(r);
    }
    t1 = bc_now_ns();
    if (got != n)
        bc_fail("baseline stream: read %ld of %ld records", got, n);
    rcmd_do(c, "DEL %s", key);
    free(argv);
    free(lens);
    return (double)n / ((double)(t1 - t0) / 1e9);
}

/* ---- idle latency -------------------------------------------------------------------------- */

/* The gap before latency sample I: 10..15 ms, varied so that nothing periodic lines up. */
static void lat_gap(long i)
{
    bc_sleep_ms(10 + (int)((i * 7) % 6));
}

/* Push one latency record (its body carries the push time) into M's key. */
static void lat_push(redisContext *c, int mode, const char *key)
{
    char body[64];

    snprintf(body, sizeof(body), MARK "%" PRId64, realtime_us());
    if (mode == MODE_LIST)
        rcmd_do(c, "LPUSH %s %s", key, body);
    else
        rcmd_do(c, "XADD %s * body %s", key, body);
}

/* The baseline consumer: a thread with its own blocking connection. */
struct lat_base {
    int mode;
    const char *key;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long seen;
    int stop;
    struct vec lat; /* µs */
    char err[256];
};

static void *lat_base_main(void *arg)
{
    struct lat_base *b = arg;
    redisContext *c = redis_open();

    for (;;) {
        redisReply *r;
        int64_t now;
        const char *s = NULL;

        pthread_mutex_lock(&b->mu);
        if (b->stop) {
            pthread_mutex_unlock(&b->mu);
            break;
        }
        pthread_mutex_unlock(&b->mu);
        if (b->mode == MODE_LIST)
            r = redisCommand(c, "BRPOP %s 1", b->key);
        else
            r = redisCommand(c, "XREADGROUP GROUP bench c1 COUNT 10 BLOCK 1000 STREAMS %s >",
                             b->key);
        now = realtime_us();
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            snprintf(b->err, sizeof(b->err), "%s", r == NULL ? c->errstr : r->str);
            if (r != NULL)
                freeReplyObject(r);
            break;
        }
        if (r->type == REDIS_REPLY_NIL) {
            freeReplyObject(r);
            continue;
        }
        if (b->mode == MODE_LIST) {
            s = r->element[1]->str; /* [key, value] */
        } else {
            redisReply *e = r->element[0]->element[1]->element[0]; /* [id, [field, value]] */

            s = e->element[1]->element[1]->str;
            freeReplyObject(rcmd(c, "XACK %s bench %s", b->key, e->element[0]->str));
        }
        pthread_mutex_lock(&b->mu);
        if (s != NULL && strncmp(s, MARK, sizeof(MARK) - 1) == 0)
            vec_push(&b->lat, (double)(now - strtoll(s + sizeof(MARK) - 1, NULL, 10)));
        b->seen++;
        pthread_cond_signal(&b->cv);
        pthread_mutex_unlock(&b->mu);
        freeReplyObject(r);
    }
    redisFree(c);
    return NULL;
}

/* SAMPLES records pushed one at a time into a plain hiredis consumer; its latencies (µs). */
static struct vec lat_baseline(redisContext *c, int mode, long samples)
{
    static struct lat_base b;
    const char *key = mode == MODE_LIST ? "esm:lat:base:list" : "esm:lat:base:stream";
    pthread_t th;
    struct vec out;

    memset(&b, 0, sizeof(b));
    b.mode = mode;
    b.key = key;
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    rcmd_do(c, "DEL %s", key);
    if (mode == MODE_STREAM)
        rcmd_do(c, "XGROUP CREATE %s bench $ MKSTREAM", key);
    if (pthread_create(&th, NULL, lat_base_main, &b) != 0)
        bc_fail("pthread_create failed");
    for (long i = 0; i < LAT_WARMUP + samples; i++) {
        struct timespec until;
        int rc = 0;

        lat_gap(i);
        if (i == LAT_WARMUP) {
            pthread_mutex_lock(&b.mu);
            b.lat.n = 0; /* the warm-up records are not samples */
            pthread_mutex_unlock(&b.mu);
        }
        lat_push(c, mode, key);
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += LAT_WAIT_MS / 1000;
        pthread_mutex_lock(&b.mu);
        while (b.seen <= i && b.err[0] == '\0' && rc == 0)
            rc = pthread_cond_timedwait(&b.cv, &b.mu, &until);
        pthread_mutex_unlock(&b.mu);
        if (b.err[0] != '\0' || b.seen <= i)
            bc_fail("latency baseline (%s): record %ld not received within %d ms%s%s",
                    mode_name[mode], i, LAT_WAIT_MS, b.err[0] ? ": " : "", b.err);
    }
    pthread_mutex_lock(&b.mu);
    b.stop = 1;
    pthread_mutex_unlock(&b.mu);
    pthread_join(th, NULL); /* the consumer's blocking read ends within 1 s */
    out = b.lat;
    pthread_mutex_destroy(&b.mu);
    pthread_cond_destroy(&b.cv);
    rcmd_do(c, "DEL %s", key);
    return out;
}

/* Read the latency lines appended to FD since the last call into OUT; returns how many. */
static long lat_read(int fd, struct vec *out)
{
    static char pend[256];
    static size_t plen;
    char buf[4096];
    long got = 0;
    ssize_t n;

    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != '\n') {
                if (plen < sizeof(pend) - 1)
                    pend[plen++] = buf[i];
                continue;
            }
            pend[plen] = '\0';
            vec_push(out, strtod(pend, NULL));
            plen = 0;
            got++;
        }
    }
    return got;
}

/*
 * SAMPLES records pushed one at a time into the latency mapping M (enabled here, disabled on
 * return); after each, wait until the handler reported it and Redis shows it acknowledged, so
 * the mapping is idle at every push. The handler's latencies (µs).
 */
static struct vec lat_mapping(redisContext *c, const struct esm *m, int fd, long samples)
{
    struct vec out = {0}, warm = {0};

    lat_read(fd, &warm);
    esm_enable(m, 1);
    for (long i = 0; i < LAT_WARMUP + samples; i++) {
        struct vec *into = i < LAT_WARMUP ? &warm : &out;
        size_t before = into->n;
        uint64_t deadline;

        lat_gap(i);
        lat_push(c, m->mode, m->key);
        deadline = bc_now_ns() + (uint64_t)LAT_WAIT_MS * 1000000u;
        while (lat_read(fd, into) == 0 && into->n == before) {
            api_check_alive(m->api);
            if (bc_now_ns() > deadline) {
                struct counters k = esm_counters(m);

                bc_fail("latency (%s mapping %s): record %ld not seen by the handler within %d "
                        "ms (mapping %s, source %s, delivered %lld, failed %lld; is --bootstrap "
                        "a runtime that writes SY_BENCH_LAT_FILE?)",
                        mode_name[m->mode], m->name, i, LAT_WAIT_MS, k.state, k.source_state,
                        k.delivered, k.failed);
            }
            bc_sleep_ms(1);
        }
        /* Idle again: nothing waiting, nothing in flight. */
        for (;;) {
            struct left l = look(c, m, "switchyard", NULL);

            if (l.waiting <= 0 && l.inflight == 0 && l.bodies == 0)
                break;
            if (bc_now_ns() > deadline + (uint64_t)LAT_WAIT_MS * 1000000u)
                bc_fail("latency (%s mapping %s): record %ld not acknowledged within %d ms",
                        mode_name[m->mode], m->name, i, LAT_WAIT_MS);
            bc_sleep_ms(1);
        }
    }
    esm_enable(m, 0);
    free(warm.v);
    if (m->mode == MODE_STREAM)
        rcmd_do(c, "XTRIM %s MAXLEN 0", m->key);
    return out;
}

/* ---- filter matching ------------------------------------------------------------------------ */

static const char g_pattern[] = "{\"body\": {\"type\": [\"order\"], \"amount\": [{\"numeric\": "
                                "[\">\", 100]}], \"region\": [{\"prefix\": \"eu-\"}]}}";

struct frec {
    char body[FILTER_BODY_LEN + 1];
    size_t body_len;
    char *rec; /* the SQS record as the mapping hands it to filter_match() (malloc) */
    size_t rec_len;
};

static struct frec g_frec[FILTER_RECORDS];
static volatile long g_sink; /* keeps every match result alive */

/*
 * FILTER_RECORDS distinct 1 KB bodies: order/refund/quote, amounts on both sides of 100 (some
 * with decimals), regions in and out of eu-, the three fields first, in the middle or last
 * (after the padding), a customer object and an items array; each padded to exactly
 * FILTER_BODY_LEN bytes with a note string. And each one's SQS record (redis_event.c's shape).
 */
static void make_filter_records(void)
{
    static const char *const types[] = {"order", "refund", "order", "quote", "order", "Order"};
    static const char *const regions[] = {"eu-west-1",  "us-east-1", "eu-central-1", "ap-south-1",
                                          "eu-north-1", "sa-east-1", "eu-west-3"};

    for (int i = 0; i < FILTER_RECORDS; i++) {
        struct frec *fr = &g_frec[i];
        char key3[160], mid[512], note[FILTER_BODY_LEN];
        int amount = 40 + (i * 37) % 200, n, pad;
        json_t *rec;

        snprintf(key3, sizeof(key3), "\"type\":\"%s\",\"amount\":%d%s,\"region\":\"%s\"",
                 types[i % 6], amount, i % 4 == 1 ? ".75" : "", regions[i % 7]);
        snprintf(mid, sizeof(mid),
                 "\"id\":\"ord-%06d\",\"customer\":{\"name\":\"Customer %d\",\"email\":"
                 "\"c%d@example.com\",\"tier\":\"%s\",\"since\":%d},\"items\":[{\"sku\":"
                 "\"SKU-%04d\",\"qty\":%d,\"price\":%d.99},{\"sku\":\"SKU-%04d\",\"qty\":1,"
                 "\"price\":4.5,\"tags\":[\"a\",\"b\\\"c\"]}],\"paid\":%s,\"coupon\":null",
                 i, i, i, i % 3 ? "gold" : "basic", 2000 + i, i * 11 % 9000, 1 + i % 5, i,
                 i * 13 % 9000, i % 2 ? "true" : "false");
        /* The length without the note's text; the note fills the rest. */
        n = snprintf(NULL, 0, "{%s,%s,\"note\":\"\"}", key3, mid);
        pad = FILTER_BODY_LEN - n;
        if (pad < 0)
            bc_fail("filter record %d is longer than %d bytes", i, FILTER_BODY_LEN);
        for (int k = 0; k < pad; k++)
            note[k] = (char)('a' + (i + k) % 26);
        note[pad] = '\0';
        switch (i % 3) {
        case 0:
            n = snprintf(fr->body, sizeof(fr->body), "{%s,%s,\"note\":\"%s\"}", key3, mid, note);
            break;
        case 1:
            n = snprintf(fr->body, sizeof(fr->body), "{%s,\"note\":\"%s\",%s}", mid, note, key3);
            break;
        default:
            n = snprintf(fr->body, sizeof(fr->body), "{\"note\":\"%s\",%s,%s}", note, mid, key3);
            break;
        }
        if (n != FILTER_BODY_LEN)
            bc_fail("filter record %d: %d bytes, want %d", i, n, FILTER_BODY_LEN);
        fr->body_len = (size_t)n;
        rec = json_pack("{s:s, s:s, s:s, s:{s:s, s:s, s:s, s:s}, s:{}, s:n, s:s, s:s, s:s, s:s}",
                        "messageId", "5f0c1a2e-8a4b-4c55-9d1e-0123456789ab", "receiptHandle",
                        "ZXNtOmZpbHRlcjo1ZjBjMWEyZQ==", "body", fr->body, "attributes",
                        "ApproximateReceiveCount", "1", "SentTimestamp", "1796167751570",
                        "SenderId", "switchyard", "ApproximateFirstReceiveTimestamp",
                        "1796167751570", "messageAttributes", "md5OfMessageAttributes", "md5OfBody",
                        "0cc175b9c0f1b6a831c399e269772661", "eventSource", "aws:sqs",
                        "eventSourceARN", "arn:aws:sqs:us-east-1:000000000000:orders", "awsRegion",
                        "us-east-1");
        fr->rec = rec != NULL ? json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(rec);
        if (fr->rec == NULL)
            bc_fail("cannot build filter record %d", i);
        fr->rec_len = strlen(fr->rec);
    }
}

/* The three clauses on jansson's DOM of BODY: 1 match, 0 no match. */
static int dom_match(const char *body, size_t len)
{
    json_error_t jerr;
    json_t *j = json_loadb(body, len, 0, &jerr), *t, *a, *r;
    int ok;

    if (j == NULL)
        bc_fail("jansson cannot parse a filter record: %s", jerr.text);
    t = json_object_get(j, "type");
    a = json_object_get(j, "amount");
    r = json_object_get(j, "region");
    ok = json_is_string(t) && strcmp(json_string_value(t), "order") == 0 && json_is_number(a) &&
         json_number_value(a) > 100 && json_is_string(r) &&
         strncmp(json_string_value(r), "eu-", 3) == 0;
    json_decref(j);
    return ok;
}

enum { F_JANSSON, F_FILTER_REC, F_FILTER_BODY, N_F };

/* Passes over all records with method WHICH for at least SECS; records/s. Matches per pass go
 * to g_sink (and must be the same on every pass). */
static double time_filter(const struct filter *f, int which, double secs, long *per_pass)
{
    uint64_t t0 = bc_now_ns(), t1, until = t0 + (uint64_t)(secs * 1e9);
    long passes = 0;

    *per_pass = -1;
    do {
        long m = 0;

        for (int i = 0; i < FILTER_RECORDS; i++) {
            const struct frec *fr = &g_frec[i];

            if (which == F_JANSSON)
                m += dom_match(fr->body, fr->body_len);
            else if (which == F_FILTER_REC)
                m += filter_match(f, fr->rec, fr->rec_len, fr->body, fr->body_len);
            else
                m += filter_match(f, NULL, 0, fr->body, fr->body_len);
        }
        if (*per_pass >= 0 && m != *per_pass)
            bc_fail("filter: %ld matches on one pass, %ld on another", m, *per_pass);
        *per_pass = m;
        g_sink += m;
        passes++;
        t1 = bc_now_ns();
    } while (t1 < until);
    return (double)passes * FILTER_RECORDS / ((double)(t1 - t0) / 1e9);
}

/* ---- the broker processes ------------------------------------------------------------------ */

/* Append to a config being written (out of memory ends the bench). */
#define CFG_ADD(b, ...)                                                                            \
    do {                                                                                           \
        if (buf_printf((b), __VA_ARGS__) != 0)                                                     \
            bc_fail("out of memory");                                                              \
    } while (0)

/* Write B to <work dir>/config-NAME.yaml and empty it for the next config. */
static void cfg_write(struct buf *b, const char *name)
{
    char path[BC_WORKDIR_MAX + 64];

    snprintf(path, sizeof(path), "%s/config-%s.yaml", bc_workdir, name);
    bc_write_file(path, b->data != NULL ? b->data : "", 0644);
    buf_free(b);
}

static void write_configs(void)
{
    char map[512];
    struct buf cfg = {0};

    CFG_ADD(&cfg,
            "# Written by bench_esm. Every mapping starts disabled; the bench enables one at a\n"
            "# time (UpdateEventSourceMapping) and disables it again when its records are gone.\n"
            "broker: {listen: \"127.0.0.1:0\", data_dir: ./data-main, max_concurrency: 100,\n"
            "         log_level: info}\n"
            "functions:\n"
            "  esm-sink:\n"
            "    runtime: provided\n"
            "    code: ./code\n"
            "    memory_mb: 128\n"
            "    timeout_s: 30\n"
            "  esm-lat:\n"
            "    runtime: provided\n"
            "    code: ./code\n"
            "    memory_mb: 128\n"
            "    timeout_s: 30\n"
            "    environment: {SY_BENCH_LAT_FILE: \"%s/lat.txt\"}\n"
            "mappings:\n",
            bc_workdir);
    for (int mode = 0; mode < N_MODES; mode++) {
        for (int b = 0; b < N_BATCH; b++) {
            snprintf(map, sizeof(map),
                     "  - name: %s-b%d\n"
                     "    function: esm-sink\n"
                     "    enabled: false\n"
                     "    batch_size: %d\n"
                     "    maximum_batching_window_ms: 0\n"
                     "    maximum_concurrency: %d\n"
                     "    source: {redis: {url: 'redis://127.0.0.1:%d', %s: 'esm:%s:b%d'}}\n",
                     mode_name[mode], batch_sizes[b], batch_sizes[b], MAP_CONC, g_redis_port,
                     mode_name[mode], mode_name[mode], batch_sizes[b]);
            CFG_ADD(&cfg, "%s", map);
        }
    }
    for (int mode = 0; mode < N_MODES; mode++)
        CFG_ADD(&cfg,
                "  - name: lat-%s\n"
                "    function: esm-lat\n"
                "    enabled: false\n"
                "    batch_size: 10\n"
                "    maximum_batching_window_ms: 0\n"
                "    maximum_concurrency: %d\n"
                "    source: {redis: {url: 'redis://127.0.0.1:%d', %s: 'esm:lat:%s'}}\n",
                mode_name[mode], MAP_CONC, g_redis_port, mode_name[mode], mode_name[mode]);
    /* Diagnostic: the list latency mapping again, but holding at most 10 records, so that
     * every read asks the move script for 10 records instead of 1000. */
    CFG_ADD(&cfg,
            "  - name: lat-list-small\n"
            "    function: esm-lat\n"
            "    enabled: false\n"
            "    batch_size: 10\n"
            "    maximum_batching_window_ms: 0\n"
            "    maximum_concurrency: %d\n"
            "    max_records_in_flight: 10\n"
            "    source: {redis: {url: 'redis://127.0.0.1:%d', list: 'esm:lat:list-small'}}\n",
            MAP_CONC, g_redis_port);
    cfg_write(&cfg, "main");
    CFG_ADD(&cfg,
            "# Written by bench_esm: one list mapping, enabled, for the RSS rows.\n"
            "broker: {listen: \"127.0.0.1:0\", data_dir: ./data-rss, max_concurrency: 100,\n"
            "         log_level: info}\n"
            "functions:\n"
            "  esm-sink:\n"
            "    runtime: provided\n"
            "    code: ./code\n"
            "    memory_mb: 128\n"
            "    timeout_s: 30\n"
            "mappings:\n"
            "  - name: backlog\n"
            "    function: esm-sink\n"
            "    batch_size: 100\n"
            "    maximum_batching_window_ms: 0\n"
            "    maximum_concurrency: %d\n"
            "    source: {redis: {url: 'redis://127.0.0.1:%d', list: 'esm:backlog'}}\n",
            MAP_CONC, g_redis_port);
    cfg_write(&cfg, "rss");
}

/* Start `switchyard run config-NAME.yaml` (log broker-NAME.log) in child slot SLOT. */
static void broker_start(const char *name, int slot, struct api *a)
{
    char cfg[BC_WORKDIR_MAX + 64], log[BC_WORKDIR_MAX + 64];

    snprintf(cfg, sizeof(cfg), "%s/config-%s.yaml", bc_workdir, name);
    snprintf(log, sizeof(log), "%s/broker-%s.log", bc_workdir, name);
    a->slot = slot;
    a->port = bc_broker_start(g_o.broker, bc_workdir, cfg, log, slot, &a->pid);
    a->conn = calloc(1, sizeof(*a->conn));
    if (a->conn == NULL)
        bc_fail("out of memory");
    a->conn->fd = -1;
}

/* SIGTERM (bounded; bc_child_stop()), warning on an unclean exit. */
static void broker_stop(struct api *a)
{
    bc_conn_close(a->conn);
    free(a->conn);
    a->conn = NULL;
    bc_child_stop(&a->pid, a->what, 1);
    bc_child_pid[a->slot] = -1;
}

/* Lines of the broker log at LOG that are warnings or errors (printed under the table). */
static long log_problems(const char *name, char *first, size_t sz)
{
    char path[BC_WORKDIR_MAX + 64], line[1024];
    long n = 0;
    FILE *f;

    snprintf(path, sizeof(path), "%s/broker-%s.log", bc_workdir, name);
    first[0] = '\0';
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strstr(line, " warn ") == NULL && strstr(line, " error ") == NULL &&
            strstr(line, " alert ") == NULL)
            continue;
        if (n++ == 0) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(first, sz, "%s", line);
        }
    }
    fclose(f);
    return n;
}

/* ---- the table ----------------------------------------------------------------------------- */

static const char *const g_head[] = {
    "measurement", "records/s", "p50 µs", "p99 µs", "RSS MB max / median",
    "vs baseline", "baseline",  "target", "met?",
};

static struct bc_table g_table = {.ncol = 9, .head = g_head, .num_first = 1, .num_last = 5};

static void cell(struct bc_row *r, int col, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void cell(struct bc_row *r, int col, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(r->c[col], sizeof(r->c[col]), fmt, ap);
    va_end(ap);
}

static void cell_num(struct bc_row *r, int col, double v, int decimals)
{
    bc_fmt_num(r->c[col], sizeof(r->c[col]), v, decimals);
}

/*
 * Column 5 of ROW: the median over R rounds of NUM[r] / DEN[r]; with TARGET > 0 also the target
 * (column 7, "≥ TARGET×") and whether the median meets it (column 8), else "(info)". Returns
 * the median.
 */
static double cell_ratio(struct bc_row *row, const double *num, const double *den, int R,
                         double target)
{
    double q[MAX_ROUNDS], med;

    for (int r = 0; r < R; r++)
        q[r] = num[r] / den[r];
    med = bc_median(q, (size_t)R);
    cell(row, 5, "%.2f×", med);
    if (target > 0) {
        cell(row, 7, "≥ %.2f×", target);
        cell(row, 8, "%s", med >= target ? "yes" : "**no**");
    } else {
        cell(row, 7, "(info)");
    }
    return med;
}

/*
 * Two latency rows: the baseline BASE (its label, ref "(REF)") and the measured M (label, ref
 * REF, Δp50 / Δp99 against BASE); with TARGET_P50_US > 0 the p50 target and whether it is met,
 * else "(info)".
 */
static void lat_rows(const char *base_label, struct vec *base, const char *m_label, struct vec *m,
                     const char *ref, double target_p50_us)
{
    double b50 = vec_pct(base, 0.5), b99 = vec_pct(base, 0.99);
    double m50 = vec_pct(m, 0.5), m99 = vec_pct(m, 0.99);
    struct bc_row *row = bc_row_add(&g_table, "%s", base_label);

    cell_num(row, 2, b50, 0);
    cell_num(row, 3, b99, 0);
    cell(row, 6, "(%s)", ref);
    row = bc_row_add(&g_table, "%s", m_label);
    cell_num(row, 2, m50, 0);
    cell_num(row, 3, m99, 0);
    cell(row, 5, "%+.0f / %+.0f µs", m50 - b50, m99 - b99);
    cell(row, 6, "%s", ref);
    if (target_p50_us > 0) {
        cell(row, 7, "p50 ≤ %.0f µs", target_p50_us);
        cell(row, 8, "%s", m50 <= target_p50_us ? "yes" : "**no**");
    } else {
        cell(row, 7, "(info)");
    }
}

/* ---- main ---------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: bench_esm [--quick] [--rounds N] [--broker PATH] [--bootstrap PATH]\n"
        "                 [--redis PATH] [--backlog N] [--only kafka|fs|mqtt]\n"
        "                 [--keep]\n"
        "  --quick           smaller runs, 1 round (a smoke run of about half a minute)\n"
        "  --rounds N        rounds of each throughput row; the table shows medians (default "
        "3)\n"
        "  --broker PATH     switchyard binary (env SY_BENCH_BROKER; default %s)\n"
        "  --bootstrap PATH  the provided runtime; it must answer every event and write the\n"
        "                    latency lines (esm_bootstrap.c) (env SY_BENCH_ESM_BOOTSTRAP;\n"
        "                    default %s)\n"
        "  --redis PATH      redis-server binary (default: redis-server from PATH)\n"
        "  --backlog N       records of the RSS rows' backlogs (default 1000000; quick 100000)\n"
        "  --only kafka|fs|mqtt  the Kafka, the file-drop or the MQTT rows alone\n"
        "  --keep            keep the work dir (configs, logs)\n"
        "env SY_BENCH_KAFKA_PROPS  extra librdkafka properties of the Kafka mappings, as YAML\n"
        "                    flow pairs: 'queued.min.messages: 5000, fetch.wait.max.ms: 50'\n",
        SY_BINARY, SY_BENCH_ESM_BOOTSTRAP);
}

static void parse_opts(int argc, char **argv)
{
    static const long full_n[N_BATCH] = {20000, 100000, 200000, 200000};
    int rounds = -1;
    long backlog = 0;

    bc_prog = "bench_esm";
    g_o.broker = getenv("SY_BENCH_BROKER") != NULL ? getenv("SY_BENCH_BROKER") : SY_BINARY;
    g_o.bootstrap = getenv("SY_BENCH_ESM_BOOTSTRAP") != NULL ? getenv("SY_BENCH_ESM_BOOTSTRAP")
                                                             : SY_BENCH_ESM_BOOTSTRAP;
    g_o.redis = "redis-server";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--quick") == 0) {
            g_o.quick = 1;
            continue;
        }
        if (strcmp(a, "--only") == 0 && v != NULL &&
            (strcmp(v, "kafka") == 0 || strcmp(v, "fs") == 0 || strcmp(v, "mqtt") == 0)) {
            if (strcmp(v, "kafka") == 0)
                g_o.kafka_only = 1;
            else if (strcmp(v, "fs") == 0)
                g_o.fs_only = 1;
            else
                g_o.mqtt_only = 1;
            i++;
            continue;
        }
        if (strcmp(a, "--keep") == 0) {
            g_o.keep = 1;
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
            g_o.broker = v;
        else if (strcmp(a, "--bootstrap") == 0)
            g_o.bootstrap = v;
        else if (strcmp(a, "--redis") == 0)
            g_o.redis = v;
        else if (strcmp(a, "--rounds") == 0)
            rounds = (int)bc_long_arg(v, a, 1, MAX_ROUNDS);
        else if (strcmp(a, "--backlog") == 0)
            backlog = bc_long_arg(v, a, 1000, 5000000);
        else {
            usage(stderr);
            exit(2);
        }
    }
    static const long full_kn[N_BATCH] = {10000, 50000, 100000, 100000};

    for (int b = 0; b < N_BATCH; b++) {
        g_o.n[b] = g_o.quick ? full_n[b] / 10 : full_n[b];
        g_o.kn[b] = g_o.quick ? full_kn[b] / 10 : full_kn[b];
    }
    g_o.rounds = rounds > 0 ? rounds : g_o.quick ? 1 : 3;
    g_o.lat_samples = g_o.quick ? 50 : 200;
    g_o.backlog = backlog > 0 ? backlog : g_o.quick ? 100000 : 1000000;
    g_o.filter_secs = g_o.quick ? 0.1 : 0.5;
    g_o.fs_n = g_o.quick ? 2000 : 20000;
    g_o.mqtt_n = g_o.quick ? 5000 : 50000;
}

/* ---- Kafka: the mock cluster, the raw consumer ceiling, Kafka mappings ------------------------
 */

#define K_PARTS 6          /* partitions of every throughput topic */
#define K_BACKLOG_PARTS 48 /* partitions of the backlog topic */

static struct h_kafka g_kafka = H_KAFKA_INIT;

/* The raw consumer's settings: what served a plain librdkafka 2.0.2 consumer best (its
 * partitions share one queue, so these bound it as a whole; the metadata refresh wakes its
 * broker threads, which otherwise sleep up to 1 s once that queue was full). */
static const char *const g_kafka_props[] = {
    "queued.min.messages", "50000", "queued.max.messages.kbytes", "8192", "fetch.max.bytes",
    "65536", "message.max.bytes", "65536", "max.partition.fetch.bytes", "65536",
    "topic.metadata.refresh.interval.ms", "100",
    /* the mock makes a rejoin wait session.timeout */
    "session.timeout.ms", "6000", "heartbeat.interval.ms", "500", NULL};

/* Records per producer batch (batch.num.messages): a Java producer's default 16 KB batch.size
 * holds about 100 such records; librdkafka's own default (10000) makes 1 MB batches, which the
 * broker hands out whole. */
#define K_PRODUCER_BATCH "500"
static const char *const g_producer_props[] = {"batch.num.messages", K_PRODUCER_BATCH, NULL};

static void kafka_start(void)
{
    char topics[N_BATCH * MAX_ROUNDS + N_BATCH + 2][48];
    const char *specs[N_BATCH * MAX_ROUNDS + N_BATCH + 3];
    size_t n = 0;

    for (int b = 0; b < N_BATCH; b++)
        for (int r = 0; r <= g_o.rounds; r++) {
            snprintf(topics[n], sizeof(topics[n]), "kb%d-r%d:%d", batch_sizes[b], r, K_PARTS);
            specs[n] = topics[n];
            n++;
        }
    snprintf(topics[n], sizeof(topics[n]), "kbacklog:%d", K_BACKLOG_PARTS);
    specs[n] = topics[n];
    n++;
    specs[n] = NULL;
    if (getenv("SY_KAFKA_MOCK") == NULL)
        setenv("SY_KAFKA_MOCK", SY_BENCH_KAFKA_MOCK, 1);
    if (h_kafka_start(&g_kafka, 1, specs) != 0)
        bc_fail("cannot start the Kafka mock cluster (%s)", getenv("SY_KAFKA_MOCK"));
    bc_child_pid[SLOT_KMOCK] = g_kafka.proc.pid;
}

/* Produce N records of BODY_LEN bytes into TOPIC (spread over its partitions). */
static void kafka_fill(const char *topic, long n)
{
    if (h_kafka_produce_n(&g_kafka, topic, n, BODY_LEN, g_producer_props) != 0)
        bc_fail("producing %ld records into %s failed", n, topic);
}

static void kafka_write_configs(void)
{
    struct buf cfg = {0};
    /* Extra librdkafka properties of every Kafka mapping, as YAML flow pairs ("a: 1, b: 2"),
     * for trying other settings against the same run's ceiling. */
    const char *xprops =
        getenv("SY_BENCH_KAFKA_PROPS") != NULL ? getenv("SY_BENCH_KAFKA_PROPS") : "";
    CFG_ADD(&cfg,
            "# Written by bench_esm: Kafka mappings, each on a topic of its own, disabled until\n"
            "# its run; the r0 ones are the warm-up.\n"
            "broker: {listen: \"127.0.0.1:0\", data_dir: ./data-kafka, max_concurrency: 100,\n"
            "         log_level: info}\n"
            "functions:\n"
            "  esm-sink: {runtime: provided, code: ./code, memory_mb: 128, timeout_s: 30}\n"
            "mappings:\n");
    for (int b = 0; b < N_BATCH; b++)
        for (int r = 0; r <= g_o.rounds; r++)
            CFG_ADD(&cfg,
                    "  - name: kafka-b%d-r%d\n"
                    "    function: esm-sink\n"
                    "    enabled: false\n"
                    "    batch_size: %d\n"
                    "    maximum_batching_window_ms: 0\n"
                    "    maximum_concurrency: %d\n"
                    "    source: {kafka: {bootstrap_servers: '%s', topics: [kb%d-r%d],\n"
                    "             properties: {session.timeout.ms: 6000, heartbeat.interval.ms: "
                    "500%s%s}}}\n",
                    batch_sizes[b], r, batch_sizes[b], MAP_CONC, g_kafka.bootstrap, batch_sizes[b],
                    r, xprops[0] ? ", " : "", xprops);
    cfg_write(&cfg, "kafka");
    CFG_ADD(
        &cfg,
        "# Written by bench_esm: one Kafka mapping on a %d-partition backlog (RSS rows).\n"
        "broker: {listen: \"127.0.0.1:0\", data_dir: ./data-krss, max_concurrency: 100,\n"
        "         log_level: info}\n"
        "functions:\n"
        "  esm-sink: {runtime: provided, code: ./code, memory_mb: 128, timeout_s: 30}\n"
        "mappings:\n"
        "  - name: kafka-backlog\n"
        "    function: esm-sink\n"
        "    enabled: false\n"
        "    batch_size: 100\n"
        "    maximum_batching_window_ms: 0\n"
        "    maximum_concurrency: %d\n"
        "    source: {kafka: {bootstrap_servers: '%s', topics: [kbacklog],\n"
        "             properties: {session.timeout.ms: 6000, heartbeat.interval.ms: 500%s%s}}}\n",
        K_BACKLOG_PARTS, MAP_CONC, g_kafka.bootstrap, xprops[0] ? ", " : "", xprops);
    cfg_write(&cfg, "krss");
}

/*
 * The N records already in M's topic through M (disabled on entry and on return): enable, wait
 * for the first delivery (the group join, ~3 s on the mock, is not timed, as for the raw
 * consumer), time until N are delivered, check that the group committed the end of every
 * partition, disable. Returns records/s; RP (may be NULL) samples the broker's RSS meanwhile.
 */
static double run_kafka(const struct esm *m, const char *topic, long n, struct rss_probe *rp,
                        double *cpu)
{
    struct counters c0 = esm_counters(m), c;
    uint64_t t0 = 0, t1, start = bc_now_ns(), last_move = start;
    long long last = c0.delivered;
    double cpu0 = 0;
    char group[96];
    int parts = h_kafka_partitions(&g_kafka, topic);

    esm_enable(m, 1);
    for (;;) {
        uint64_t now = bc_now_ns();

        c = esm_counters(m);
        rss_sample(rp);
        if (t0 == 0 && c.received > c0.received) {
            t0 = now;
            cpu0 = cpu_secs(m->api->pid);
        }
        if (c.delivered - c0.delivered >= n)
            break;
        if (c.delivered != last) {
            last = c.delivered;
            last_move = now;
        } else if (t0 != 0 && now - last_move > (uint64_t)STALL_MS * 1000000u) {
            bc_fail("mapping %s: no progress for %d ms (%lld of %ld delivered, source %s)", m->name,
                    STALL_MS, c.delivered - c0.delivered, n, c.source_state);
        }
        if (t0 == 0)
            last_move = now;
        if (now - start > (uint64_t)DRAIN_MAX_MS * 1000000u)
            bc_fail("mapping %s: not drained after %d ms", m->name, DRAIN_MAX_MS);
        sleep_us(t0 != 0 && (c.delivered - c0.delivered) * 20 >= n * 19 ? FINE_POLL_US
                                                                        : POLL_MS * 1000);
    }
    t1 = bc_now_ns();
    if (cpu != NULL)
        *cpu = (cpu_secs(m->api->pid) - cpu0) / ((double)(t1 - t0) / 1e9);
    snprintf(group, sizeof(group), "switchyard-%s", m->name);
    for (int p = 0; p < parts; p++) {
        int64_t hi = h_kafka_high_watermark(&g_kafka, topic, p);
        uint64_t deadline = bc_now_ns() + 10000000000ull;

        while (h_kafka_committed(&g_kafka, group, topic, p) != hi) {
            rss_sample(rp);
            if (bc_now_ns() > deadline)
                bc_fail("mapping %s: %s [%d] not committed to its end (%lld) within 10 s", m->name,
                        topic, p, (long long)hi);
            bc_sleep_ms(20);
        }
    }
    esm_enable(m, 0);
    if (c.failed != c0.failed)
        bc_fail("mapping %s: %lld records failed", m->name, c.failed - c0.failed);
    return (double)n / ((double)(t1 - t0) / 1e9);
}

/* ---- file drop: fs mappings beside a plain inotify watcher ---------------------------------- */

#define FS_NB 2
static const int fs_batches[FS_NB] = {1, 100};

struct fs_results {
    double raw[FS_NB][MAX_ROUNDS], map[FS_NB][MAX_ROUNDS], cpu[FS_NB][MAX_ROUNDS];
    struct vec lat_raw, lat_map;
    int ran;
};

static void fs_write_config(void)
{
    struct buf cfg = {0};

    CFG_ADD(&cfg,
            "# Written by bench_esm: file-drop mappings, disabled until their run.\n"
            "broker: {listen: \"127.0.0.1:0\", data_dir: ./data-fs, max_concurrency: 100,\n"
            "         log_level: info}\n"
            "functions:\n"
            "  esm-sink: {runtime: provided, code: ./code, memory_mb: 128, timeout_s: 30}\n"
            "  esm-lat: {runtime: provided, code: ./code, memory_mb: 128, timeout_s: 30,\n"
            "            environment: {SY_BENCH_LAT_FILE: \"%s/lat-fs.txt\"}}\n"
            "mappings:\n",
            bc_workdir);
    for (int b = 0; b < FS_NB; b++)
        CFG_ADD(&cfg,
                "  - name: fs-b%d\n"
                "    function: esm-sink\n"
                "    enabled: false\n"
                "    batch_size: %d\n"
                "    maximum_batching_window_ms: 0\n"
                "    maximum_concurrency: %d\n"
                "    source: {fs: {path: ./fs-b%d, on_success: delete}}\n",
                fs_batches[b], fs_batches[b], MAP_CONC, fs_batches[b]);
    CFG_ADD(&cfg, "  - name: fs-lat\n"
                  "    function: esm-lat\n"
                  "    enabled: false\n"
                  "    batch_size: 1\n"
                  "    maximum_batching_window_ms: 0\n"
                  "    source: {fs: {path: ./fs-lat, on_success: delete}}\n");
    cfg_write(&cfg, "fs");
}

/* Entries of DIR other than dot-files. */
static long fs_count(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    long n = 0;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* N files renamed into M's directory while M is enabled: files/s until N were delivered; the
 * directory must then be empty (on_success: delete) within 10 s. */
static double fs_run(const struct esm *m, const char *stage, const char *dir, long n, double *cpu)
{
    struct counters c0, c;
    struct fs_mover *mv;
    uint64_t t0, t1, deadline, last_move;
    long long last;
    double cpu0;

    esm_enable(m, 1);
    deadline = bc_now_ns() + (uint64_t)STATE_TIMEOUT_MS * 1000000u;
    for (c0 = esm_counters(m); strcmp(c0.source_state, "running") != 0; c0 = esm_counters(m)) {
        if (bc_now_ns() > deadline)
            bc_fail("mapping %s: source %s %d ms after Enabled=true", m->name, c0.source_state,
                    STATE_TIMEOUT_MS);
        bc_sleep_ms(20);
    }
    cpu0 = cpu_secs(m->api->pid);
    mv = fs_move_start(stage, dir, n);
    last = c0.delivered;
    last_move = bc_now_ns();
    for (;;) {
        uint64_t now = bc_now_ns();

        c = esm_counters(m);
        if (c.delivered - c0.delivered >= n)
            break;
        if (c.delivered != last) {
            last = c.delivered;
            last_move = now;
        } else if (now - last_move > (uint64_t)STALL_MS * 1000000u) {
            bc_fail("mapping %s: no progress for %d ms (%lld of %ld delivered, source %s)", m->name,
                    STALL_MS, c.delivered - c0.delivered, n, c.source_state);
        }
        sleep_us((c.delivered - c0.delivered) * 20 >= n * 19 ? FINE_POLL_US : POLL_MS * 1000);
    }
    t1 = bc_now_ns();
    t0 = fs_move_join(mv);
    if (cpu != NULL)
        *cpu = (cpu_secs(m->api->pid) - cpu0) / ((double)(t1 - t0) / 1e9);
    for (deadline = bc_now_ns() + 10000000000ull; fs_count(dir) != 0; bc_sleep_ms(20))
        if (bc_now_ns() > deadline)
            bc_fail("mapping %s: %ld files still in %s 10 s after their delivery", m->name,
                    fs_count(dir), dir);
    esm_enable(m, 0);
    if (c.failed != c0.failed)
        bc_fail("mapping %s: %lld files failed", m->name, c.failed - c0.failed);
    return (double)n / ((double)(t1 - t0) / 1e9);
}

/* Idle latency of M: one file at a time renamed in, its name carrying the rename time, seen by
 * esm_bootstrap (lat-fs.txt), then deleted before the next. */
static struct vec fs_lat(const struct esm *m, const char *stage, const char *dir, long samples)
{
    char path[BC_WORKDIR_MAX + 64], a[BC_WORKDIR_MAX + 160], b[BC_WORKDIR_MAX + 192];
    struct vec out = {0}, warm = {0};
    int fd;

    snprintf(path, sizeof(path), "%s/lat-fs.txt", bc_workdir);
    bc_write_file(path, "", 0644);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        bc_fail("open %s: %s", path, strerror(errno));
    fs_make(stage, LAT_WARMUP + samples, BODY_LEN, 5);
    esm_enable(m, 1);
    for (long i = 0; i < LAT_WARMUP + samples; i++) {
        struct vec *into = i < LAT_WARMUP ? &warm : &out;
        size_t before = into->n;
        uint64_t deadline;

        lat_gap(i);
        snprintf(a, sizeof(a), "%s/f-%ld", stage, i);
        snprintf(b, sizeof(b), "%s/" MARK "%" PRId64, dir, realtime_us());
        if (rename(a, b) != 0)
            bc_fail("rename %s: %s", a, strerror(errno));
        deadline = bc_now_ns() + (uint64_t)LAT_WAIT_MS * 1000000u;
        while (lat_read(fd, into) == 0 && into->n == before) {
            if (bc_now_ns() > deadline)
                bc_fail("latency (fs mapping %s): file %ld not seen by the handler within %d ms",
                        m->name, i, LAT_WAIT_MS);
            bc_sleep_ms(1);
        }
        while (fs_count(dir) != 0) {
            if (bc_now_ns() > deadline + (uint64_t)LAT_WAIT_MS * 1000000u)
                bc_fail("latency (fs mapping %s): file %ld not deleted within %d ms", m->name, i,
                        LAT_WAIT_MS);
            bc_sleep_ms(1);
        }
    }
    esm_enable(m, 0);
    close(fd);
    free(warm.v);
    return out;
}

static void fs_bench(struct fs_results *r)
{
    struct api api = {.what = "broker (fs)"};
    static struct esm maps[FS_NB + 1];
    static char names[FS_NB + 1][32];
    char stage[BC_WORKDIR_MAX + 64], dir[BC_WORKDIR_MAX + 64];
    double *raw_lat;

    fprintf(stderr, "bench_esm: file drop: a plain inotify watcher and fs mappings\n");
    for (int b = 0; b <= FS_NB; b++) {
        if (b < FS_NB)
            snprintf(names[b], sizeof(names[b]), "fs-b%d", fs_batches[b]);
        else
            snprintf(names[b], sizeof(names[b]), "fs-lat");
        snprintf(dir, sizeof(dir), "%s/%s", bc_workdir, names[b]);
        bc_mkdir(dir);
        maps[b] =
            (struct esm){.name = names[b], .batch = b < FS_NB ? fs_batches[b] : 1, .api = &api};
    }
    fs_write_config();
    broker_start("fs", SLOT_FS, &api);
    api_resolve(&api, maps, FS_NB + 1);
    for (int b = 0; b < FS_NB; b++) {
        for (int k = 0; k <= g_o.rounds; k++) { /* k == 0: the warm-up */
            long n = k == 0 ? 500 : g_o.fs_n;

            fprintf(stderr, "bench_esm: fs batch %d, %s: %ld files, watcher then mapping\n",
                    fs_batches[b], k == 0 ? "warm-up" : "round", n);
            snprintf(stage, sizeof(stage), "%s/fs-stage", bc_workdir);
            snprintf(dir, sizeof(dir), "%s/fs-raw", bc_workdir);
            fs_make(stage, n, BODY_LEN, 5);
            if (k > 0)
                r->raw[b][k - 1] = fs_raw(stage, dir, n);
            else
                fs_raw(stage, dir, n);
            fs_make(stage, n, BODY_LEN, 5);
            snprintf(dir, sizeof(dir), "%s/fs-b%d", bc_workdir, fs_batches[b]);
            if (k > 0)
                r->map[b][k - 1] = fs_run(&maps[b], stage, dir, n, &r->cpu[b][k - 1]);
            else
                fs_run(&maps[b], stage, dir, n, NULL);
        }
    }
    fprintf(stderr, "bench_esm: fs idle latency: %ld samples (watcher, then mapping)\n",
            g_o.lat_samples);
    snprintf(stage, sizeof(stage), "%s/fs-stage-lat-raw", bc_workdir);
    snprintf(dir, sizeof(dir), "%s/fs-raw-lat", bc_workdir);
    raw_lat = fs_raw_latency(stage, dir, g_o.lat_samples);
    for (long i = 0; i < g_o.lat_samples; i++)
        vec_push(&r->lat_raw, raw_lat[i]);
    free(raw_lat);
    snprintf(stage, sizeof(stage), "%s/fs-stage-lat", bc_workdir);
    snprintf(dir, sizeof(dir), "%s/fs-lat", bc_workdir);
    r->lat_map = fs_lat(&maps[FS_NB], stage, dir, g_o.lat_samples);
    broker_stop(&api);
    r->ran = 1;
}

static void fs_rows(struct fs_results *r)
{
    const int R = g_o.rounds;

    for (int b = 0; b < FS_NB; b++) {
        struct bc_row *row;

        row = bc_row_add(&g_table,
                         "plain inotify watcher: stat + read + delete each file (batch %d run)",
                         fs_batches[b]);
        cell_num(row, 1, bc_median(r->raw[b], (size_t)R), 0);
        cell(row, 6, "(F%d)", fs_batches[b]);
        row = bc_row_add(&g_table, "**fs mapping, batch_size %d (files/s)**", fs_batches[b]);
        cell_num(row, 1, bc_median(r->map[b], (size_t)R), 0);
        cell(row, 6, "F%d", fs_batches[b]);
        cell_ratio(row, r->map[b], r->raw[b], R, fs_batches[b] == 100 ? 0.5 : 0);
    }
    lat_rows("plain inotify watcher, rename → event read", &r->lat_raw,
             "**idle latency, fs mapping: rename → handler start**", &r->lat_map, "FL", 5000.0);
}

static void fs_notes(const struct fs_results *r)
{
    printf("- File drop: %ld files of %d bytes per round (%d round(s), medians), made in a staging "
           "directory of the same file system with their mtime 5 s back, then renamed into the "
           "watched directory by a thread of the bench as fast as it goes; timed from the first "
           "rename until the last file was deleted (the watcher, F) or until the mapping's "
           "counters show every file delivered (the mapping, `on_success: delete`, "
           "maximum_concurrency %d, window 0; its directory must then be empty). The watcher "
           "(bench/esm_fs.c) is one thread on inotify (IN_MOVED_TO, IN_CLOSE_WRITE; an overflow "
           "rescans) that opens, fstats, reads and unlinks each file. Broker CPU during the "
           "batch-100 mapping runs: %.2f cores. Idle latency: %ld samples, 10-15 ms apart; the "
           "file's name carries CLOCK_REALTIME (µs) taken just before the rename, which "
           "esm_bootstrap reads from the record's path; the watcher row is rename → its event "
           "read and the file taken.\n",
           g_o.fs_n, BODY_LEN, g_o.rounds, MAP_CONC,
           bc_median((double *)r->cpu[1], (size_t)g_o.rounds), g_o.lat_samples);
}

/* ---- MQTT: mappings beside a plain libmosquitto subscriber ---------------------------------- */

#define MQ_NQ 2 /* QoS 0 and 1, batch 100 */
#define MQ_WARM 500

struct mqtt_results {
    double raw[MQ_NQ][MAX_ROUNDS], map[MQ_NQ][MAX_ROUNDS], cpu[MQ_NQ][MAX_ROUNDS];
    struct vec lat_raw, lat_map;
};

static void mqtt_write_config(int port)
{
    struct buf cfg = {0};

    CFG_ADD(&cfg,
            "# Written by bench_esm: MQTT mappings, disabled until their run.\n"
            "broker: {listen: \"127.0.0.1:0\", data_dir: ./data-mqtt, max_concurrency: 100,\n"
            "         log_level: info}\n"
            "functions:\n"
            "  esm-sink: {runtime: provided, code: ./code, memory_mb: 128, timeout_s: 30}\n"
            "  esm-lat: {runtime: provided, code: ./code, memory_mb: 128, timeout_s: 30,\n"
            "            environment: {SY_BENCH_LAT_FILE: \"%s/lat-mqtt.txt\"}}\n"
            "mappings:\n",
            bc_workdir);
    for (int q = 0; q < MQ_NQ; q++)
        CFG_ADD(&cfg,
                "  - name: mqtt-q%d\n"
                "    function: esm-sink\n"
                "    enabled: false\n"
                "    batch_size: 100\n"
                "    maximum_batching_window_ms: 0\n"
                "    maximum_concurrency: %d\n"
                "    source: {mqtt: {url: 'mqtt://127.0.0.1:%d', topics: ['bench/q%d'], qos: %d,\n"
                "             client_id: sy-bench-q%d}}\n",
                q, MAP_CONC, port, q, q, q);
    CFG_ADD(&cfg,
            "  - name: mqtt-lat\n"
            "    function: esm-lat\n"
            "    enabled: false\n"
            "    batch_size: 1\n"
            "    maximum_batching_window_ms: 0\n"
            "    source: {mqtt: {url: 'mqtt://127.0.0.1:%d', topics: ['bench/lat/#'], qos: 1,\n"
            "             client_id: sy-bench-lat}}\n",
            port);
    cfg_write(&cfg, "mqtt");
}

/* Wait (bounded) until M has delivered WANT more than BASE; returns its counters. */
static struct counters mqtt_await(const struct esm *m, long long base, long want)
{
    uint64_t last_move = bc_now_ns();
    long long last = base;
    struct counters c;

    for (;;) {
        uint64_t now = bc_now_ns();

        c = esm_counters(m);
        if (c.delivered - base >= want)
            return c;
        if (c.delivered != last) {
            last = c.delivered;
            last_move = now;
        } else if (now - last_move > (uint64_t)STALL_MS * 1000000u) {
            bc_fail("mapping %s: no progress for %d ms (%lld of %ld delivered, source %s)", m->name,
                    STALL_MS, c.delivered - base, want, c.source_state);
        }
        sleep_us((c.delivered - base) * 20 >= want * 19 ? FINE_POLL_US : POLL_MS * 1000);
    }
}

/* Enable M and wait until its source runs and MQ_WARM warm-up messages went through. */
static void mqtt_enable(const struct esm *m, struct mqtt_pub *p, const char *topic, int qos)
{
    uint64_t deadline = bc_now_ns() + (uint64_t)STATE_TIMEOUT_MS * 1000000u;
    struct counters c;

    esm_enable(m, 1);
    for (c = esm_counters(m); strcmp(c.source_state, "running") != 0; c = esm_counters(m)) {
        if (bc_now_ns() > deadline)
            bc_fail("mapping %s: source %s %d ms after Enabled=true", m->name, c.source_state,
                    STATE_TIMEOUT_MS);
        bc_sleep_ms(20);
    }
    /* QoS 0 before the SUBACK is lost: publish the warm-up until it all arrives once. */
    for (int tries = 0;; tries++) {
        struct counters c0 = esm_counters(m);

        mqtt_pub_run(p, topic, qos, MQ_WARM, BODY_LEN);
        for (deadline = bc_now_ns() + 2000000000ull; bc_now_ns() < deadline; bc_sleep_ms(10)) {
            c = esm_counters(m);
            if (c.delivered - c0.delivered >= MQ_WARM)
                return;
        }
        if (tries == 10)
            bc_fail("mapping %s: the warm-up messages never all arrived (source %s)", m->name,
                    c.source_state);
    }
}

static void mqtt_bench(struct mqtt_results *r)
{
    static struct h_mosquitto mq;
    struct api api = {.what = "broker (mqtt)"};
    static struct esm maps[MQ_NQ + 1];
    static char names[MQ_NQ + 1][32];
    struct mqtt_pub *p;
    char path[BC_WORKDIR_MAX + 64], topic[64];
    double *raw_lat;
    int fd;

    fprintf(stderr, "bench_esm: MQTT: mosquitto, a plain subscriber and mappings\n");
    /* The server lets a subscriber have any number of QoS 1 messages in flight (its default
     * is 20, which would make the rows measure the round trip of 20 acknowledgements) and
     * queues any number for a session. */
    mq.extra_conf = "max_inflight_messages 0\nmax_queued_messages 0\n";
    if (h_mosquitto_start(&mq, 0) != 0)
        bc_fail("cannot start mosquitto");
    bc_child_pid[SLOT_MQTT] = mq.proc.pid;
    mqtt_write_config(mq.port);
    broker_start("mqtt", SLOT_MQB, &api);
    for (int k = 0; k <= MQ_NQ; k++) {
        if (k < MQ_NQ)
            snprintf(names[k], sizeof(names[k]), "mqtt-q%d", k);
        else
            snprintf(names[k], sizeof(names[k]), "mqtt-lat");
        maps[k] = (struct esm){.name = names[k], .batch = k < MQ_NQ ? 100 : 1, .api = &api};
    }
    api_resolve(&api, maps, MQ_NQ + 1);
    p = mqtt_pub_open(mq.port);
    for (int q = 0; q < MQ_NQ; q++) {
        snprintf(topic, sizeof(topic), "bench/q%d", q);
        mqtt_enable(&maps[q], p, topic, q);
        for (int k = 0; k < g_o.rounds; k++) {
            struct counters c0;
            uint64_t t0, t1;
            double cpu0;

            fprintf(stderr,
                    "bench_esm: mqtt QoS %d, round %d/%d: %ld messages, subscriber then "
                    "mapping\n",
                    q, k + 1, g_o.rounds, g_o.mqtt_n);
            snprintf(topic, sizeof(topic), "bench/raw-q%d", q);
            r->raw[q][k] = mqtt_raw(p, mq.port, topic, q, g_o.mqtt_n, BODY_LEN);
            snprintf(topic, sizeof(topic), "bench/q%d", q);
            c0 = esm_counters(&maps[q]);
            cpu0 = cpu_secs(api.pid);
            t0 = bc_now_ns();
            mqtt_pub_run(p, topic, q, g_o.mqtt_n, BODY_LEN);
            mqtt_await(&maps[q], c0.delivered, g_o.mqtt_n);
            t1 = bc_now_ns();
            r->cpu[q][k] = (cpu_secs(api.pid) - cpu0) / ((double)(t1 - t0) / 1e9);
            r->map[q][k] = (double)g_o.mqtt_n / ((double)(t1 - t0) / 1e9);
        }
        esm_enable(&maps[q], 0);
    }
    fprintf(stderr, "bench_esm: mqtt idle latency: %ld samples (subscriber, then mapping)\n",
            g_o.lat_samples);
    raw_lat = mqtt_raw_latency(p, mq.port, "bench/rawlat", 1, g_o.lat_samples);
    for (long i = 0; i < g_o.lat_samples; i++)
        vec_push(&r->lat_raw, raw_lat[i]);
    free(raw_lat);
    snprintf(path, sizeof(path), "%s/lat-mqtt.txt", bc_workdir);
    bc_write_file(path, "", 0644);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        bc_fail("open %s: %s", path, strerror(errno));
    mqtt_enable(&maps[MQ_NQ], p, "bench/lat/warm", 1);
    {
        struct vec drop = {0};

        lat_read(fd, &drop); /* the warm-up's lines (they carry no mark: none) */
        free(drop.v);
    }
    for (long i = 0; i < g_o.lat_samples; i++) {
        struct counters c0 = esm_counters(&maps[MQ_NQ]);
        size_t before = r->lat_map.n;
        uint64_t deadline;

        lat_gap(i);
        snprintf(topic, sizeof(topic), "bench/lat/" MARK "%" PRId64, realtime_us());
        mqtt_pub_one(p, topic, 1, "x", 1);
        deadline = bc_now_ns() + (uint64_t)LAT_WAIT_MS * 1000000u;
        while (lat_read(fd, &r->lat_map) == 0 && r->lat_map.n == before) {
            if (bc_now_ns() > deadline)
                bc_fail("latency (mqtt mapping): message %ld not seen by the handler within %d ms",
                        i, LAT_WAIT_MS);
            bc_sleep_ms(1);
        }
        mqtt_await(&maps[MQ_NQ], c0.delivered, 1);
    }
    esm_enable(&maps[MQ_NQ], 0);
    close(fd);
    mqtt_pub_close(p);
    broker_stop(&api);
    h_mosquitto_destroy(&mq, g_o.keep);
    bc_child_pid[SLOT_MQTT] = -1;
}

static void mqtt_rows(struct mqtt_results *r)
{
    const int R = g_o.rounds;

    for (int q = 0; q < MQ_NQ; q++) {
        struct bc_row *row;

        row = bc_row_add(&g_table, "plain libmosquitto subscriber, QoS %d", q);
        cell_num(row, 1, bc_median(r->raw[q], (size_t)R), 0);
        cell(row, 6, "(M%d)", q);
        row = bc_row_add(&g_table, "**mqtt mapping, QoS %d, batch_size 100 (msgs/s)**", q);
        cell_num(row, 1, bc_median(r->map[q], (size_t)R), 0);
        cell(row, 6, "M%d", q);
        cell_ratio(row, r->map[q], r->raw[q], R, q == 1 ? 0.5 : 0);
    }
    lat_rows("plain subscriber, publish → message (QoS 1)", &r->lat_raw,
             "**idle latency, mqtt mapping: publish → handler start**", &r->lat_map, "ML", 5000.0);
}

static void mqtt_notes(const struct mqtt_results *r)
{
    printf("- MQTT: mosquitto on loopback (the bench's own, `max_inflight_messages 0`, "
           "`max_queued_messages 0`); %ld messages of %d bytes per round (%d round(s), medians), "
           "published by one libmosquitto client (at most 500 unacknowledged) as fast as it is "
           "acknowledged; the ceiling (M) is a plain libmosquitto subscriber (clean session, "
           "automatic acknowledgements) timed from the first publish to the last message; the "
           "mapping (persistent session, batch 100, window 0, maximum_concurrency %d, "
           "acknowledging each message only once it is in the durable spool) from the first "
           "publish until its counters show every message delivered. Broker CPU during the "
           "QoS 1 mapping runs: %.2f cores. Idle latency: %ld samples 10-15 ms apart, QoS 1, "
           "the publish time (CLOCK_REALTIME µs) in the topic name, which esm_bootstrap reads "
           "from the record.\n",
           g_o.mqtt_n, BODY_LEN, g_o.rounds, MAP_CONC,
           bc_median((double *)r->cpu[1], (size_t)g_o.rounds), g_o.lat_samples);
}

int main(int argc, char **argv)
{
    static char broker_path[PATH_MAX], boot_path[PATH_MAX];
    static double base_rate[N_MODES][N_BATCH][MAX_ROUNDS], map_rate[N_MODES][N_BATCH][MAX_ROUNDS];
    static struct run runs[N_MODES][N_BATCH][MAX_ROUNDS];
    static struct esm maps[N_MODES * N_BATCH + N_MODES + 1];
    double frate[N_F][MAX_ROUNDS];
    long fmatch[N_F] = {0};
    struct vec lat_b[N_MODES], lat_m[N_MODES], lat_small, idle = {0};
    struct rss_probe rp = {0};
    struct api api_main = {.what = "broker (main)"}, api_rss = {.what = "broker (rss)"};
    struct api api_kafka = {.what = "broker (kafka)"}, api_krss = {.what = "broker (kafka rss)"};
    static struct esm kmaps[N_BATCH][MAX_ROUNDS + 1];
    static char knames[N_BATCH][MAX_ROUNDS + 1][32];
    static double kraw[N_BATCH][MAX_ROUNDS], kmap[N_BATCH][MAX_ROUNDS], kcpu[N_BATCH][MAX_ROUNDS];
    struct esm kbacklog = {.name = "kafka-backlog", .batch = 100};
    struct rss_probe krp = {0};
    struct vec kidle = {0};
    struct fs_results fs = {0};
    struct mqtt_results mq = {0};
    double kbacklog_rate = 0, krss_after = NAN;
    long kraw_rss_kb = 0;
    struct esm backlog = {.name = "backlog", .key = "esm:backlog", .mode = MODE_LIST, .batch = 100};
    struct run backlog_run = {0};
    pid_t rss_pid;
    redisContext *rc;
    redisReply *ver;
    char path[BC_WORKDIR_MAX + 64], redis_version[32] = "?", problem[1024];
    const char *tmp = getenv("TMPDIR") != NULL && getenv("TMPDIR")[0] ? getenv("TMPDIR") : "/tmp";
    uint64_t t_begin = bc_now_ns(), t_idle;
    double rss_after = NAN, bcpu_idle0 = 0;
    long long extra = 0;
    int lat_fd, R, nmaps = 0;
    struct filter *flt;
    struct sy_error ferr;
    size_t plen = strlen(g_pattern);
    const char *pat = g_pattern;
    struct filter_opts fopts = {.data_key = "body", .data_must_match = 1};

    parse_opts(argc, argv);
    R = g_o.rounds;
    signal(SIGPIPE, SIG_IGN);
    if (access(g_o.broker, X_OK) != 0 || realpath(g_o.broker, broker_path) == NULL)
        bc_fail("broker binary %s: %s (build it, or pass --broker)", g_o.broker, strerror(errno));
    if (access(g_o.bootstrap, X_OK) != 0 || realpath(g_o.bootstrap, boot_path) == NULL)
        bc_fail("bootstrap %s: %s (build it, or pass --bootstrap)", g_o.bootstrap, strerror(errno));
    g_o.broker = broker_path;
    g_o.bootstrap = boot_path;

    /* The work dir: the runtime's code dir, configs, logs, the latency file, Redis's dir. */
    snprintf(bc_workdir, sizeof(bc_workdir), "%.900s/sy-bench-esm-XXXXXX", tmp);
    if (mkdtemp(bc_workdir) == NULL)
        bc_fail("mkdtemp %s: %s", bc_workdir, strerror(errno));
    snprintf(path, sizeof(path), "%s/code", bc_workdir);
    bc_mkdir(path);
    snprintf(path, sizeof(path), "%s/code/bootstrap", bc_workdir);
    bc_copy_file(g_o.bootstrap, path, 0755);
    snprintf(path, sizeof(path), "%s/lat.txt", bc_workdir);
    bc_write_file(path, "", 0644);
    lat_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (lat_fd < 0)
        bc_fail("open %s: %s", path, strerror(errno));

    redis_start();
    rc = redis_open();
    ver = rcmd(rc, "INFO server");
    if (ver->type == REDIS_REPLY_STRING && strstr(ver->str, "redis_version:") != NULL)
        sscanf(strstr(ver->str, "redis_version:") + 14, "%31[^\r\n]", redis_version);
    freeReplyObject(ver);
    write_configs();

    bc_print_machine("event source mapping");
    printf("- broker: %s; provided runtime: %s; redis-server %s on 127.0.0.1:%d (no "
           "persistence); hiredis %d.%d.%d\n",
           g_o.broker, g_o.bootstrap, redis_version, g_redis_port, HIREDIS_MAJOR, HIREDIS_MINOR,
           HIREDIS_PATCH);
    printf("- %s: %d round(s); records of %d bytes; N = %ld / %ld / %ld / %ld at batch 1 / 10 / "
           "100 / 1000; every mapping: maximum_batching_window_ms 0, maximum_concurrency %d; "
           "latency %ld samples; backlog %ld records\n\n",
           g_o.quick ? "quick run" : "full run", R, BODY_LEN, g_o.n[0], g_o.n[1], g_o.n[2],
           g_o.n[3], MAP_CONC, g_o.lat_samples, g_o.backlog);
    fflush(stdout);

    if (!g_o.kafka_only && !g_o.fs_only && !g_o.mqtt_only) {
        /* ---- 1. throughput ---- */
        broker_start("main", SLOT_MAIN, &api_main);
        for (int mode = 0; mode < N_MODES; mode++) {
            for (int b = 0; b < N_BATCH; b++) {
                static char names[N_MODES * N_BATCH][32];
                struct esm *m = &maps[nmaps];

                snprintf(names[nmaps], sizeof(names[nmaps]), "%s-b%d", mode_name[mode],
                         batch_sizes[b]);
                m->name = names[nmaps];
                snprintf(m->key, sizeof(m->key), "esm:%s:b%d", mode_name[mode], batch_sizes[b]);
                m->mode = mode;
                m->batch = batch_sizes[b];
                m->api = &api_main;
                nmaps++;
            }
        }
        for (int mode = 0; mode < N_MODES; mode++) {
            struct esm *m = &maps[nmaps++];

            m->name = mode == MODE_LIST ? "lat-list" : "lat-stream";
            snprintf(m->key, sizeof(m->key), "esm:lat:%s", mode_name[mode]);
            m->mode = mode;
            m->batch = 10;
            m->api = &api_main;
        }
        maps[nmaps] = (struct esm){.name = "lat-list-small",
                                   .key = "esm:lat:list-small",
                                   .mode = MODE_LIST,
                                   .batch = 10,
                                   .api = &api_main};
        nmaps++;
        api_resolve(&api_main, maps, (size_t)nmaps);
        for (int mode = 0; mode < N_MODES; mode++) {
            for (int b = 0; b < N_BATCH; b++) {
                const struct esm *m = &maps[mode * N_BATCH + b];
                long n = g_o.n[b];

                /* Warm-up: the environments, the source's connections, Redis's key. */
                fprintf(stderr, "bench_esm: %s batch %d: warm-up\n", mode_name[mode], m->batch);
                run_mapping(rc, m, m->batch * MAP_CONC * 4 > 400 ? m->batch * MAP_CONC * 4 : 400,
                            NULL, NULL, 0);
                for (int r = 0; r < R; r++) {
                    fprintf(stderr,
                            "bench_esm: %s batch %d, round %d/%d: %ld records, baseline then "
                            "mapping\n",
                            mode_name[mode], m->batch, r + 1, R, n);
                    base_rate[mode][b][r] = mode == MODE_LIST ? base_list(rc, n, m->batch)
                                                              : base_stream(rc, n, m->batch);
                    runs[mode][b][r] = run_mapping(
                        rc, m, n, NULL, m->batch == 100 && r == R - 1 ? g_cmdstats[mode] : NULL,
                        sizeof(g_cmdstats[mode]));
                    map_rate[mode][b][r] = runs[mode][b][r].rate;
                    extra += runs[mode][b][r].extra;
                }
            }
        }

        /* ---- 2. idle latency ---- */
        for (int mode = 0; mode < N_MODES; mode++) {
            fprintf(stderr, "bench_esm: idle latency, %s: %ld samples (baseline, then mapping)\n",
                    mode_name[mode], g_o.lat_samples);
            lat_b[mode] = lat_baseline(rc, mode, g_o.lat_samples);
            lat_m[mode] = lat_mapping(rc, &maps[N_MODES * N_BATCH + mode], lat_fd, g_o.lat_samples);
            if (mode == MODE_LIST)
                lat_small =
                    lat_mapping(rc, &maps[N_MODES * N_BATCH + N_MODES], lat_fd, g_o.lat_samples);
        }
        broker_stop(&api_main);

        /* ---- 3. RSS while a backlog drains ---- */
        fprintf(stderr, "bench_esm: RSS: idle broker, then a %ld-record backlog at batch 100\n",
                g_o.backlog);
        broker_start("rss", SLOT_RSS, &api_rss);
        rss_pid = api_rss.pid;
        backlog.api = &api_rss;
        api_resolve(&api_rss, &backlog, 1);
        bc_sleep_ms(200); /* the mapping connects and settles into its idle wait */
        bcpu_idle0 = cpu_secs(rss_pid);
        t_idle = bc_now_ns();
        for (int i = 0; i < 10; i++) {
            vec_push(&idle, rss_mb(rss_pid));
            bc_sleep_ms(RSS_EVERY_MS);
        }
        bcpu_idle0 = (cpu_secs(rss_pid) - bcpu_idle0) / ((double)(bc_now_ns() - t_idle) / 1e9);
        esm_enable(&backlog, 0);
        rp.pid = rss_pid;
        backlog_run = run_mapping(rc, &backlog, g_o.backlog, &rp, NULL, 0);
        extra += backlog_run.extra;
        bc_sleep_ms(500);
        rss_after = rss_mb(rss_pid);
        broker_stop(&api_rss);

        /* ---- 4. filter matching ---- */
        fprintf(stderr, "bench_esm: filter matching\n");
        make_filter_records();
        flt = filter_compile(&pat, &plen, 1, &fopts, &ferr);
        if (flt == NULL)
            bc_fail("filter_compile: %s", ferr.msg);
        for (int i = 0; i < FILTER_RECORDS; i++) {
            int d = dom_match(g_frec[i].body, g_frec[i].body_len);
            int f1 = filter_match(flt, g_frec[i].rec, g_frec[i].rec_len, g_frec[i].body,
                                  g_frec[i].body_len);
            int f2 = filter_match(flt, NULL, 0, g_frec[i].body, g_frec[i].body_len);

            if (d != f1 || d != f2)
                bc_fail("filter record %d: jansson says %d, filter_match %d (with the record) and "
                        "%d (body only): %s",
                        i, d, f1, f2, g_frec[i].body);
        }
        for (int r = 0; r < R; r++)
            for (int w = 0; w < N_F; w++)
                frate[w][r] = time_filter(flt, w, g_o.filter_secs, &fmatch[w]);
        filter_destroy(flt);
    }
    if (!g_o.fs_only && !g_o.mqtt_only) {
        /* ---- 5. Kafka ---- */
        fprintf(stderr, "bench_esm: Kafka: the mock cluster, raw consumer ceiling and mappings\n");
        kafka_start();
        kafka_write_configs();
        broker_start("kafka", SLOT_KAFKA, &api_kafka);
        for (int b = 0; b < N_BATCH; b++)
            for (int r = 0; r <= R; r++) {
                snprintf(knames[b][r], sizeof(knames[b][r]), "kafka-b%d-r%d", batch_sizes[b], r);
                kmaps[b][r] =
                    (struct esm){.name = knames[b][r], .batch = batch_sizes[b], .api = &api_kafka};
                api_resolve(&api_kafka, &kmaps[b][r], 1);
            }
        for (int b = 0; b < N_BATCH; b++) {
            long n = g_o.kn[b],
                 warm = batch_sizes[b] * MAP_CONC * 4 > 400 ? batch_sizes[b] * MAP_CONC * 4 : 400;
            char topic[48];

            fprintf(stderr, "bench_esm: kafka batch %d: warm-up\n", batch_sizes[b]);
            snprintf(topic, sizeof(topic), "kb%d-r0", batch_sizes[b]);
            kafka_fill(topic, warm);
            run_kafka(&kmaps[b][0], topic, warm, NULL, NULL);
            for (int r = 0; r < R; r++) {
                char group[48];
                long rss_kb = 0;

                fprintf(stderr,
                        "bench_esm: kafka batch %d, round %d/%d: %ld records, raw consumer "
                        "then mapping\n",
                        batch_sizes[b], r + 1, R, n);
                snprintf(topic, sizeof(topic), "kb%d-r%d", batch_sizes[b], r + 1);
                snprintf(group, sizeof(group), "raw-b%d-r%d", batch_sizes[b], r + 1);
                kafka_fill(topic, n);
                if (bench_kafka_raw(g_kafka.bootstrap, topic, group, n, g_kafka_props, &kraw[b][r],
                                    &rss_kb) != 0)
                    bc_fail("the raw consumer failed on %s", topic);
                if (rss_kb > kraw_rss_kb)
                    kraw_rss_kb = rss_kb;
                kmap[b][r] = run_kafka(&kmaps[b][r + 1], topic, n, NULL, &kcpu[b][r]);
            }
        }
        broker_stop(&api_kafka);
        fprintf(stderr, "bench_esm: Kafka RSS: a %ld-record backlog over %d partitions\n",
                g_o.backlog, K_BACKLOG_PARTS);
        kafka_fill("kbacklog", g_o.backlog);
        broker_start("krss", SLOT_KRSS, &api_krss);
        kbacklog.api = &api_krss;
        api_resolve(&api_krss, &kbacklog, 1);
        bc_sleep_ms(200);
        for (int i = 0; i < 10; i++) {
            vec_push(&kidle, rss_mb(api_krss.pid));
            bc_sleep_ms(RSS_EVERY_MS);
        }
        krp.pid = api_krss.pid;
        kbacklog_rate = run_kafka(&kbacklog, "kbacklog", g_o.backlog, &krp, NULL);
        bc_sleep_ms(500);
        krss_after = rss_mb(api_krss.pid);
        broker_stop(&api_krss);
        h_kafka_free(&g_kafka);
        bc_child_pid[SLOT_KMOCK] = -1;
    }
    if (!g_o.kafka_only && !g_o.mqtt_only)
        fs_bench(&fs);
    if (!g_o.kafka_only && !g_o.fs_only)
        mqtt_bench(&mq);

    if (!g_o.kafka_only && !g_o.fs_only && !g_o.mqtt_only) {
        /* ---- rows ---- */
        for (int mode = 0; mode < N_MODES; mode++) {
            for (int b = 0; b < N_BATCH; b++) {
                struct bc_row *row;

                row = bc_row_add(&g_table, "plain hiredis, %s: %s%d%s", mode_name[mode],
                                 mode == MODE_LIST ? "RPOP COUNT " : "XREADGROUP COUNT ",
                                 batch_sizes[b], mode == MODE_LIST ? "" : " + XACK");
                cell_num(row, 1, bc_median(base_rate[mode][b], (size_t)R), 0);
                cell(row, 6, "(%c%d)", mode == MODE_LIST ? 'L' : 'S', batch_sizes[b]);
                row = bc_row_add(&g_table, "**%s mapping, batch_size %d**", mode_name[mode],
                                 batch_sizes[b]);
                cell_num(row, 1, bc_median(map_rate[mode][b], (size_t)R), 0);
                cell(row, 6, "%c%d", mode == MODE_LIST ? 'L' : 'S', batch_sizes[b]);
                cell_ratio(row, map_rate[mode][b], base_rate[mode][b], R,
                           batch_sizes[b] == 100 ? 0.5 : 0);
            }
        }
        for (int mode = 0; mode < N_MODES; mode++) {
            double b50 = vec_pct(&lat_b[mode], 0.5), b99 = vec_pct(&lat_b[mode], 0.99);
            char lb[64], lm[96];
            struct bc_row *row;

            snprintf(lb, sizeof(lb), "plain hiredis, %s",
                     mode == MODE_LIST ? "LPUSH → BRPOP" : "XADD → XREADGROUP BLOCK");
            snprintf(lm, sizeof(lm), "**idle latency, %s mapping: %s → handler start**",
                     mode_name[mode], mode == MODE_LIST ? "LPUSH" : "XADD");
            lat_rows(lb, &lat_b[mode], lm, &lat_m[mode], mode == MODE_LIST ? "LL" : "SL", 0);
            if (mode == MODE_LIST) {
                double s50 = vec_pct(&lat_small, 0.5), s99 = vec_pct(&lat_small, 0.99);

                row = bc_row_add(&g_table, "idle latency, list mapping, max_records_in_flight 10 "
                                           "(diagnostic)");
                cell_num(row, 2, s50, 0);
                cell_num(row, 3, s99, 0);
                cell(row, 5, "%+.0f / %+.0f µs", s50 - b50, s99 - b99);
                cell(row, 6, "LL");
                cell(row, 7, "(info)");
            }
        }
        {
            double imax = vec_pct(&idle, 1.0), imed = vec_pct(&idle, 0.5);
            double dmax = vec_pct(&rp.samples, 1.0), dmed = vec_pct(&rp.samples, 0.5);
            struct bc_row *row;

            row = bc_row_add(&g_table, "broker RSS idle, 1 list mapping, empty list");
            cell(row, 4, "%.1f / %.1f", imax, imed);
            cell(row, 6, "(I)");
            row =
                bc_row_add(&g_table, "**broker RSS, %ld-record backlog draining, batch_size 100**",
                           g_o.backlog);
            cell_num(row, 1, backlog_run.rate, 0);
            cell(row, 4, "%.1f / %.1f", dmax, dmed);
            cell(row, 5, "%+.1f MB", dmax - imed);
            cell(row, 6, "I");
            cell(row, 7, "≤ 64 MB");
            cell(row, 8, "%s", dmax <= 64.0 ? "yes" : "**no**");
        }
    }
    if (!g_o.fs_only && !g_o.mqtt_only) {
        for (int b = 0; b < N_BATCH; b++) {
            struct bc_row *row;

            row = bc_row_add(&g_table,
                             "plain librdkafka consumer: read + commit, %d partitions (batch "
                             "%d run)",
                             K_PARTS, batch_sizes[b]);
            cell_num(row, 1, bc_median(kraw[b], (size_t)R), 0);
            cell(row, 6, "(K%d)", batch_sizes[b]);
            row = bc_row_add(&g_table, "**kafka mapping, batch_size %d**", batch_sizes[b]);
            cell_num(row, 1, bc_median(kmap[b], (size_t)R), 0);
            cell(row, 6, "K%d", batch_sizes[b]);
            cell_ratio(row, kmap[b], kraw[b], R, batch_sizes[b] == 100 ? 0.5 : 0);
        }
        {
            double imed = vec_pct(&kidle, 0.5), imax = vec_pct(&kidle, 1.0);
            double dmax = vec_pct(&krp.samples, 1.0), dmed = vec_pct(&krp.samples, 0.5);
            struct bc_row *row;

            row = bc_row_add(&g_table, "broker RSS idle, 1 Kafka mapping (%d partitions assigned)",
                             K_BACKLOG_PARTS);
            cell(row, 4, "%.1f / %.1f", imax, imed);
            cell(row, 6, "(KI)");
            row = bc_row_add(&g_table,
                             "**broker RSS, %ld-record Kafka backlog (%d partitions) draining, "
                             "batch_size 100**",
                             g_o.backlog, K_BACKLOG_PARTS);
            cell_num(row, 1, kbacklog_rate, 0);
            cell(row, 4, "%.1f / %.1f", dmax, dmed);
            cell(row, 5, "%+.1f MB", dmax - imed);
            cell(row, 6, "KI");
            cell(row, 7, "≤ 64 MB");
            cell(row, 8, "%s", dmax <= 64.0 ? "yes" : "**no**");
        }
    }
    if (!g_o.kafka_only && !g_o.mqtt_only)
        fs_rows(&fs);
    if (!g_o.kafka_only && !g_o.fs_only)
        mqtt_rows(&mq);
    if (!g_o.kafka_only && !g_o.fs_only && !g_o.mqtt_only) {
        {
            static const char *const fname[N_F] = {
                "jansson: json_loadb + 3 clauses on the DOM (1 KB body)",
                "**filter_match(), as the mapping calls it (SQS record + 1 KB body)**",
                "filter_match(), body only (no record metadata)",
            };
            for (int w = 0; w < N_F; w++) {
                struct bc_row *row = bc_row_add(&g_table, "%s", fname[w]);

                cell_num(row, 1, bc_median(frate[w], (size_t)R), 0);
                if (w == F_JANSSON) {
                    cell(row, 6, "(J)");
                    continue;
                }
                cell(row, 6, "J");
                cell_ratio(row, frate[w], frate[F_JANSSON], R, w == F_FILTER_REC ? 5.0 : 0);
            }
        }
    }
    bc_print_table(&g_table);
    if (!g_o.kafka_only && !g_o.fs_only && !g_o.mqtt_only) {
        printf("\n- Throughput: medians of %d round(s); `vs baseline` is the median of per-round "
               "ratios (the baseline runs just before the mapping, on its own key, with the same "
               "number of %d-byte records at the same batch size). A mapping run: N records "
               "preloaded (LPUSH / XADD) while it is disabled, then timed from "
               "UpdateEventSourceMapping Enabled=true until Redis shows nothing left (list: LLEN, "
               "the in-flight ZSET and body HASH all 0; stream: XINFO GROUPS pending 0 and lag 0), "
               "polled every %d ms and every %d µs over the last 5%%. The mapping's counters must "
               "show N deliveries and no failure (deliveries beyond N, i.e. redeliveries: %lld).\n",
               R, BODY_LEN, POLL_MS, FINE_POLL_US, extra);
        for (int mode = 0; mode < N_MODES; mode++) {
            printf("- CPU during the %s mapping runs (medians; cores busy, i.e. CPU seconds per "
                   "second, with µs per record in brackets; the machine has %ld CPUs):",
                   mode_name[mode], sysconf(_SC_NPROCESSORS_ONLN));
            for (int b = 0; b < N_BATCH; b++) {
                double v[5][MAX_ROUNDS], med[5], rate = bc_median(map_rate[mode][b], (size_t)R);

                for (int r = 0; r < R; r++) {
                    const struct run *u = &runs[mode][b][r];

                    v[0][r] = u->broker_cpu;
                    v[1][r] = u->redis_cpu;
                    v[2][r] = u->rt_cpu;
                    v[3][r] = u->bench_cpu;
                    /* Everything else the machine ran meanwhile: other tenants, kernel threads, and
                     * interrupt time (loopback's softirq included), which no process is charged. */
                    v[4][r] = u->all_cpu - u->broker_cpu - u->redis_cpu - u->rt_cpu - u->bench_cpu;
                }
                for (int k = 0; k < 5; k++)
                    med[k] = bc_median(v[k], (size_t)R);
                printf("%s batch %d: broker %.2f (%.1f µs), redis-server %.2f (%.1f µs), runtimes "
                       "%.2f, bench %.2f, everything else (other tenants, interrupts) %.2f",
                       b ? ";" : "", batch_sizes[b], med[0], med[0] / rate * 1e6, med[1],
                       med[1] / rate * 1e6, med[2], med[3], med[4]);
            }
            printf(".\n");
        }
        for (int mode = 0; mode < N_MODES; mode++)
            printf(
                "- Redis time per record in the last %s batch-100 run (INFO commandstats; commands "
                "run by scripts are also inside evalsha): %s.\n",
                mode_name[mode], g_cmdstats[mode]);
        printf(
            "- Idle latency: %ld samples per row after %d warm-up records, one record at a time, "
            "10-15 ms apart, each pushed only once the previous one was acknowledged (the queue "
            "is idle at every push). The push time (CLOCK_REALTIME, µs) is in the body; the "
            "handler (esm_bootstrap) subtracts it from its clock when the `next` response is "
            "in; the baseline client does the same when its BRPOP / XREADGROUP reply is. "
            "`vs baseline` is Δp50 / Δp99. The mappings: batch_size 10, window 0; they hold up to "
            "1000 records (the default max_records_in_flight), so each read of the list "
            "mapping's move script asks for 1000 records and carries 1000 fresh ids; the "
            "diagnostic row is the same list mapping with max_records_in_flight 10 (reads ask "
            "for 10).\n",
            g_o.lat_samples, LAT_WARMUP);
        printf("- RSS: VmRSS of the broker pid every %d ms; idle = 10 samples with the mapping "
               "enabled on an empty list (broker CPU meanwhile %.0f ms/s); the backlog of %ld "
               "records was preloaded while the mapping was disabled, then drained in %.1f s "
               "(broker %.2f, redis %.2f cores); %zu samples; RSS %.1f MB 0.5 s after the drain.\n",
               RSS_EVERY_MS, bcpu_idle0 * 1000.0, g_o.backlog,
               (double)g_o.backlog / backlog_run.rate, backlog_run.broker_cpu,
               backlog_run.redis_cpu, rp.samples.n, rss_after);
        printf("- Filter: pattern `%s` (data key `body`, SQS rule) over %d distinct %d-byte bodies "
               "(the three fields first, in the middle or last; %ld of %d match); SQS records of "
               "about %zu bytes; %.1f s per method per round, %d round(s), medians; both methods "
               "agree on every record.\n",
               g_pattern, FILTER_RECORDS, FILTER_BODY_LEN, fmatch[F_JANSSON], FILTER_RECORDS,
               g_frec[0].rec_len, g_o.filter_secs, R);
        for (int w = 0; w < 2; w++) {
            const char *name = w == 0 ? "main" : "rss";
            long n = log_problems(name, problem, sizeof(problem));

            if (n > 0)
                printf("- Broker log (%s): %ld warning/error line(s); the first: `%s`\n", name, n,
                       problem);
            else if (n == 0)
                printf("- Broker log (%s): no warning or error line.\n", name);
        }
    }
    if (!g_o.fs_only && !g_o.mqtt_only) {
        printf(
            "- Kafka: librdkafka's mock cluster (sy-kafka-mock, 1 broker, its own process) on "
            "loopback; records of %d bytes produced in batches of at most %s records (a Java "
            "producer's 16 KB batch.size holds about 100), %d partitions per throughput topic, N "
            "= %ld / %ld / %ld / %ld at batch 1 / 10 / 100 / 1000 (the mock keeps 5 MiB per "
            "partition). The ceiling (K) is a plain librdkafka high-level consumer in this "
            "process (bench/kafka_raw.c: subscribe, read, commit what it read every 10,000 "
            "records and at the end) with the settings that served it best in the measurements "
            "of docs/mappings.md (queued.min.messages 50000, queued.max.messages.kbytes 8192, "
            "64 KB fetches, topic.metadata.refresh.interval.ms 100), on the same records just "
            "before the mapping reads them in a group of its own. Both are timed from the first "
            "record (the group join, ~3 s on the mock, is not counted); the mapping until its "
            "counters show N deliveries, then the group's committed offsets must reach every "
            "partition's end. Broker CPU during the batch-100 mapping runs: %.2f cores. Raw "
            "consumer peak RSS (this process): %.1f MB.\n",
            BODY_LEN, K_PRODUCER_BATCH, K_PARTS, g_o.kn[0], g_o.kn[1], g_o.kn[2], g_o.kn[3],
            bc_median(kcpu[2], (size_t)R), (double)kraw_rss_kb / 1024.0);
        printf("- Kafka RSS: VmRSS of a broker with one Kafka mapping (batch 100, concurrency %d) "
               "every %d ms while a backlog of %ld records over %d partitions drains (produced "
               "before the mapping is enabled); idle = 10 samples with the mapping disabled; RSS "
               "%.1f MB 0.5 s after the drain.\n",
               MAP_CONC, RSS_EVERY_MS, g_o.backlog, K_BACKLOG_PARTS, krss_after);
    }
    if (!g_o.kafka_only && !g_o.mqtt_only)
        fs_notes(&fs);
    if (!g_o.kafka_only && !g_o.fs_only)
        mqtt_notes(&mq);
    printf("- Total bench time %.1f s.\n", (double)(bc_now_ns() - t_begin) / 1e9);

    for (int mode = 0; mode < N_MODES; mode++) {
        free(lat_b[mode].v);
        free(lat_m[mode].v);
    }
    free(lat_small.v);
    free(idle.v);
    free(rp.samples.v);
    for (int i = 0; i < FILTER_RECORDS; i++)
        free(g_frec[i].rec);
    redisFree(rc);
    close(lat_fd);
    bc_child_stop(&g_redis_pid, "redis-server", 0);
    bc_child_pid[SLOT_REDIS] = -1;
    if (g_o.keep)
        printf("- Work dir kept: %s\n", bc_workdir);
    else if (bc_rm_tree(bc_workdir) != 0)
        fprintf(stderr, "bench_esm: could not remove %s\n", bc_workdir);
    return 0;
}
