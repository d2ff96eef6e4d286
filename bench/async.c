/*
 * bench/async.c - `bench_async`: the async invocation benchmark. It starts real `switchyard run`
 * brokers on loopback (one with `broker.durability: crash`, one with `fsync`) and prints one
 * markdown table:
 *
 *   - durable enqueues/s: Event invokes (`X-Amz-Invocation-Type: Event`, 1 KB JSON payloads,
 *     answered 202 once the event is committed to queue.db) from keep-alive clients at
 *     concurrency 1 and 16, with per-request latency;
 *   - end-to-end async throughput: N small events enqueued by 16 clients as fast as they go, timed
 *     from the first request until /healthz `async.succeeded` has grown by N.
 *
 * Every row stands beside a baseline measured in the same run, because these machines are shared
 * and noisy:
 *   - enqueue rows: raw SQLite inserts made by this process into a database of the same shape
 *     (the broker's `events` table, WAL, the same `synchronous` setting, 1 KB BLOB payloads, random
 *     UUID keys) on the same file system: one row per transaction at c=1 (what a client waiting for
 *     its own acknowledgement needs), and at c=16 both "16 threads, each its own connection and
 *     commit per insert" and "16 threads handing rows to one writer that commits whatever is
 *     waiting in one transaction" (group commit, what the broker's store thread does). The c=16
 *     target compares against the faster of the two.
 *   - end-to-end rows: sync invokes of the same function on the same broker, at the same function
 *     concurrency (8 clients; the function has `async.maximum_concurrency: 8`), same payload, the
 *     same number of invocations.
 *
 * The enqueue rows include the processing of the events (invocation, delete) that runs while the
 * clients send. For diagnosis, each enqueue run is repeated against a "held" broker (fresh per
 * round, same durability) whose runtime never finishes INIT, so its events stay queued: the
 * enqueue path alone. Those rows have no target.
 *
 * Each measurement is repeated for --rounds rounds; the table shows the median of the per-round
 * figures, and the ratios are medians of per-round ratios (baseline and product back to back).
 *
 * Every wait is bounded (socket timeouts, readiness, drain and exit deadlines) and all traffic
 * stays on 127.0.0.1. Child processes get PR_SET_PDEATHSIG, so nothing outlives the bench.
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
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>

#include <jansson.h>
#include <sqlite3.h>

#include "bench_common.h"

#ifndef SY_BINARY
#define SY_BINARY "switchyard"
#endif
#ifndef SY_BENCH_BOOTSTRAP
#define SY_BENCH_BOOTSTRAP "bootstrap"
#endif

#define FN_NAME "bench-async"
#define SMALL_PAYLOAD "{\"hello\":\"world\",\"n\":12345}" /* 27 bytes: the end-to-end events */
#define KB_PAYLOAD_LEN 1024                               /* the enqueue events */
#define MAXC 16   /* the "c=16" concurrency; also the end-to-end feeders */
#define FN_CONC 8 /* async.maximum_concurrency, and the sync baseline's clients */
#define MAX_ROUNDS 21
#define DRAIN_TIMEOUT_MS 60000 /* queue drained after a measurement */
#define E2E_TIMEOUT_MS 120000  /* the end-to-end run, first request to the last success */
#define POLL_MS 20             /* /healthz polling period */
#define FINE_POLL_MS 2         /* ... over the last 5% of an end-to-end run */

enum { D_CRASH, D_FSYNC, N_DUR };
static const char *const dur_name[N_DUR] = {"crash", "fsync"};
static const char *const dur_sync[N_DUR] = {"NORMAL", "FULL"};

/* Broker slots (bc_child_pid[]): [d] is the broker with durability d, [N_DUR + d] its "held"
 * twin. The work dir is bc_workdir: DIR/sy-bench-async-XXXXXX. */
#define N_SLOTS (2 * N_DUR)

/* ---- small helpers ---------------------------------------------------------------------- */

/* A growable array of latencies (ns). */
struct lat {
    uint64_t *v;
    size_t n, cap;
};

static void lat_push(struct lat *l, uint64_t x)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 65536;
        uint64_t *p = realloc(l->v, cap * sizeof(*p));

        if (p == NULL)
            bc_fail("out of memory");
        l->v = p;
        l->cap = cap;
    }
    l->v[l->n++] = x;
}

/* xorshift64*: random UUID-shaped keys for the raw inserts, like the broker's request ids. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static void rng_uuid(uint64_t *s, char out[37])
{
    uint64_t a = rng_next(s), b = rng_next(s);

    snprintf(out, 37, "%08x-%04x-4%03x-%04x-%012" PRIx64, (unsigned)(a >> 32),
             (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xfff,
             0x8000u | ((unsigned)(b >> 48) & 0x3fff), (uint64_t)(b & 0xffffffffffffull));
}

/* ---- load runs --------------------------------------------------------------------------- */

/* One operation of a client (an HTTP request, a raw insert...): 0, or -1 with ERR filled. */
typedef int op_fn(void *self, char *err, size_t errsz);

struct worker {
    op_fn *op;
    void *self;
    pthread_barrier_t *bar;
    uint64_t secs_ns; /* time box, 0: none */
    long max_ops;     /* 0: none */
    int record;
    struct lat lat;
    long done;
    uint64_t t_start, t_end;
    char err[256];
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t t0, t1, deadline;

    pthread_barrier_wait(w->bar);
    w->t_start = t0 = bc_now_ns();
    deadline = w->secs_ns ? w->t_start + w->secs_ns : UINT64_MAX;
    for (;;) {
        if ((w->max_ops > 0 && w->done >= w->max_ops) || t0 >= deadline)
            break;
        if (w->op(w->self, w->err, sizeof(w->err)) != 0)
            break;
        t1 = bc_now_ns();
        if (w->record)
            lat_push(&w->lat, t1 - t0);
        w->done++;
        t0 = t1;
    }
    w->t_end = bc_now_ns();
    return NULL;
}

struct result {
    double p50, p99, rate;
    long n;
    uint64_t first, last; /* first client start, last client finish */
};

/*
 * N threads (one client each: SELVES[i]) run OP back to back after a common start (a barrier),
 * each until SECS have passed since its start or it has done MAX_OPS. Latencies of all clients are
 * pooled; the rate is all operations over the time from the first start to the last finish.
 * Any error ends the bench.
 */
static struct result run_workers(const char *label, int n, op_fn *op, void **selves, double secs,
                                 long max_ops, int record)
{
    struct worker w[MAXC];
    pthread_t th[MAXC];
    pthread_barrier_t bar;
    struct lat all = {0};
    struct result res = {NAN, NAN, NAN, 0, UINT64_MAX, 0};

    if (n < 1 || n > MAXC)
        bc_fail("%s: bad client count %d", label, n);
    pthread_barrier_init(&bar, NULL, (unsigned)n);
    for (int i = 0; i < n; i++) {
        w[i] = (struct worker){.op = op,
                               .self = selves[i],
                               .bar = &bar,
                               .secs_ns = (uint64_t)(secs * 1e9),
                               .max_ops = max_ops,
                               .record = record};
        if (pthread_create(&th[i], NULL, worker_main, &w[i]) != 0)
            bc_fail("pthread_create failed");
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&bar);
    for (int i = 0; i < n; i++) {
        if (w[i].err[0] != '\0')
            bc_fail("%s, client %d/%d: %s", label, i + 1, n, w[i].err);
        if (w[i].t_start < res.first)
            res.first = w[i].t_start;
        if (w[i].t_end > res.last)
            res.last = w[i].t_end;
        res.n += w[i].done;
        for (size_t k = 0; k < w[i].lat.n; k++)
            lat_push(&all, w[i].lat.v[k]);
        free(w[i].lat.v);
    }
    if (record && all.n > 0) {
        qsort(all.v, all.n, sizeof(*all.v), bc_cmp_u64);
        res.p50 = bc_pct_us(all.v, all.n, 0.50);
        res.p99 = bc_pct_us(all.v, all.n, 0.99);
    }
    res.rate = (double)res.n / ((double)(res.last - res.first) / 1e9);
    free(all.v);
    return res;
}

/* An HTTP client: one keep-alive connection, one request built once, the answer it must get. */
struct http_client {
    struct bc_conn conn;
    const char *req;
    size_t reqlen;
    int want_status;
    const char *want_body; /* NULL: any body */
    size_t want_len;
};

static int http_op(void *self, char *err, size_t errsz)
{
    struct http_client *h = self;
    struct bc_resp r;

    if (bc_conn_roundtrip(&h->conn, h->req, h->reqlen, &r, err, errsz) != 0)
        return -1;
    if (r.status != h->want_status || r.func_error ||
        (h->want_body != NULL &&
         (r.body_len != h->want_len || memcmp(r.body, h->want_body, r.body_len) != 0))) {
        snprintf(err, errsz, "unexpected response %d%s (want %d): %.*s", r.status,
                 r.func_error ? " (function error)" : "", h->want_status,
                 (int)(r.body_len > 200 ? 200 : r.body_len), r.body);
        return -1;
    }
    return 0;
}

/* What an HTTP run sends: a request and the answer it expects. */
struct http_spec {
    const char *label;
    int port;
    char req[2048];
    size_t reqlen;
    int want_status;
    const char *want_body;
    size_t want_len;
};

static void spec_init(struct http_spec *s, const char *label, int port, int event,
                      const char *payload)
{
    int n =
        snprintf(s->req, sizeof(s->req),
                 "POST /2015-03-31/functions/" FN_NAME "/invocations HTTP/1.1\r\n"
                 "Host: 127.0.0.1:%d\r\n"
                 "Content-Type: application/json\r\n"
                 "%s"
                 "Content-Length: %zu\r\n\r\n%s",
                 port, event ? "X-Amz-Invocation-Type: Event\r\n" : "", strlen(payload), payload);

    if (n < 0 || (size_t)n >= sizeof(s->req))
        bc_fail("request too long");
    s->label = label;
    s->port = port;
    s->reqlen = (size_t)n;
    s->want_status = event ? 202 : 200;
    s->want_body = event ? NULL : payload; /* the echo bootstrap returns the event */
    s->want_len = event ? 0 : strlen(payload);
}

/* N clients on their own connections running SPEC (time box SECS or MAX_OPS each). */
static struct result run_http(const struct http_spec *s, int n, double secs, long max_ops,
                              int record)
{
    struct http_client *hc = calloc((size_t)n, sizeof(*hc));
    void *selves[MAXC];
    struct result res;
    char err[256];

    if (hc == NULL)
        bc_fail("out of memory");
    for (int i = 0; i < n; i++) {
        if (bc_conn_open(&hc[i].conn, s->port, err, sizeof(err)) != 0)
            bc_fail("%s: %s", s->label, err);
        hc[i].req = s->req;
        hc[i].reqlen = s->reqlen;
        hc[i].want_status = s->want_status;
        hc[i].want_body = s->want_body;
        hc[i].want_len = s->want_len;
        selves[i] = &hc[i];
    }
    res = run_workers(s->label, n, http_op, selves, secs, max_ops, record);
    for (int i = 0; i < n; i++)
        bc_conn_close(&hc[i].conn);
    free(hc);
    return res;
}

/* ---- the baseline: raw SQLite inserts ---------------------------------------------------- */

/* The broker's events table (dispatcher/asyncq_store.c) and its insert statement. */
static const char raw_schema[] =
    "CREATE TABLE IF NOT EXISTS events("
    " id TEXT PRIMARY KEY, fn TEXT NOT NULL, payload BLOB NOT NULL, trace_id TEXT,"
    " enqueued_ms INTEGER NOT NULL, next_ms INTEGER NOT NULL, attempts INTEGER NOT NULL,"
    " state INTEGER NOT NULL DEFAULT 0, outcome TEXT, history TEXT);";
static const char raw_insert_sql[] = "INSERT OR REPLACE INTO events(id, fn, payload, trace_id,"
                                     " enqueued_ms, next_ms, attempts, state, outcome, history)"
                                     " VALUES(?,?,?,?,?,?,?,?,?,?)";

static char g_kb_payload[KB_PAYLOAD_LEN + 1];

static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static sqlite3 *raw_open(const char *path, int dur)
{
    sqlite3 *db = NULL;
    char sql[64];

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK)
        bc_fail("sqlite open %s: %s", path, db ? sqlite3_errmsg(db) : "?");
    sqlite3_busy_timeout(db, BC_IO_TIMEOUT_S * 1000);
    snprintf(sql, sizeof(sql), "PRAGMA synchronous=%s", dur_sync[dur]);
    if (sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, raw_schema, NULL, NULL, NULL) != SQLITE_OK)
        bc_fail("sqlite setup %s: %s", path, sqlite3_errmsg(db));
    return db;
}

/* A fresh database at PATH (and its -wal, -shm) for every measurement. */
static void raw_reset(const char *path)
{
    char p[BC_WORKDIR_MAX + 128];

    unlink(path);
    snprintf(p, sizeof(p), "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", path);
    unlink(p);
}

static sqlite3_stmt *prep(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s = NULL;

    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        bc_fail("sqlite prepare: %s", sqlite3_errmsg(db));
    return s;
}

/* Bind one event row (a fresh random id) to the insert statement S. */
static void raw_bind(sqlite3_stmt *s, const char *id)
{
    int64_t now = wall_ms();

    sqlite3_reset(s);
    sqlite3_bind_text(s, 1, id, 36, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, FN_NAME, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 3, g_kb_payload, KB_PAYLOAD_LEN, SQLITE_STATIC);
    sqlite3_bind_null(s, 4);
    sqlite3_bind_int64(s, 5, now);
    sqlite3_bind_int64(s, 6, now);
    sqlite3_bind_int(s, 7, 0);
    sqlite3_bind_int(s, 8, 0);
    sqlite3_bind_null(s, 9);
    sqlite3_bind_null(s, 10);
}

/* Commit per insert: one connection per client, each INSERT its own (autocommit) transaction. */
struct raw_client {
    sqlite3 *db;
    sqlite3_stmt *ins;
    uint64_t rng;
};

static int raw_op(void *self, char *err, size_t errsz)
{
    struct raw_client *c = self;
    char id[37];
    uint64_t deadline = bc_now_ns() + (uint64_t)BC_IO_TIMEOUT_S * 1000000000u;
    int rc;

    rng_uuid(&c->rng, id);
    raw_bind(c->ins, id);
    /* busy_timeout already waits; this loop only covers SQLITE_BUSY returned without waiting. */
    while ((rc = sqlite3_step(c->ins)) == SQLITE_BUSY && bc_now_ns() < deadline) {
        sqlite3_reset(c->ins);
        bc_sleep_ms(1);
    }
    if (rc != SQLITE_DONE) {
        snprintf(err, errsz, "insert: %s", sqlite3_errmsg(c->db));
        return -1;
    }
    return 0;
}

/*
 * Group commit: clients hand their row to one writer thread and wait for its acknowledgement;
 * the writer commits every row that is waiting in one transaction (as the broker's store thread
 * does with the events that arrived while its previous commit ran).
 */
struct gc_item {
    char id[37];
    int done, rc;
    pthread_cond_t cv;
    struct gc_item *next;
};

struct gc {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* work for the writer */
    struct gc_item *head, *tail;
    int stop;
    sqlite3 *db;
    sqlite3_stmt *ins, *begin, *commit, *rollback;
    pthread_t th;
    uint64_t batches, rows;
};

static int step_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);

    sqlite3_reset(s);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static void *gc_writer(void *arg)
{
    struct gc *g = arg;

    for (;;) {
        struct gc_item *batch;
        int rc;

        pthread_mutex_lock(&g->mu);
        while (g->head == NULL && !g->stop)
            pthread_cond_wait(&g->cv, &g->mu);
        batch = g->head;
        g->head = g->tail = NULL;
        pthread_mutex_unlock(&g->mu);
        if (batch == NULL)
            break; /* stopping, nothing left */
        rc = step_done(g->begin);
        for (struct gc_item *it = batch; it != NULL && rc == SQLITE_OK; it = it->next) {
            raw_bind(g->ins, it->id);
            rc = step_done(g->ins);
        }
        if (rc == SQLITE_OK)
            rc = step_done(g->commit);
        if (rc != SQLITE_OK)
            step_done(g->rollback);
        g->batches++;
        pthread_mutex_lock(&g->mu);
        for (struct gc_item *it = batch; it != NULL; it = it->next) {
            it->rc = rc;
            it->done = 1;
            g->rows++;
            pthread_cond_signal(&it->cv);
        }
        pthread_mutex_unlock(&g->mu);
    }
    return NULL;
}

struct gc_client {
    struct gc *g;
    uint64_t rng;
    struct gc_item item;
};

static int gc_op(void *self, char *err, size_t errsz)
{
    struct gc_client *c = self;
    struct gc *g = c->g;
    struct gc_item *it = &c->item;
    struct timespec until;
    int rc = 0;

    rng_uuid(&c->rng, it->id);
    it->done = 0;
    it->next = NULL;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += BC_IO_TIMEOUT_S;
    pthread_mutex_lock(&g->mu);
    if (g->tail != NULL)
        g->tail->next = it;
    else
        g->head = it;
    g->tail = it;
    pthread_cond_signal(&g->cv);
    while (!it->done && rc == 0)
        rc = pthread_cond_timedwait(&it->cv, &g->mu, &until);
    pthread_mutex_unlock(&g->mu);
    if (!it->done) {
        snprintf(err, errsz, "no commit within %d s", BC_IO_TIMEOUT_S);
        return -1;
    }
    if (it->rc != SQLITE_OK) {
        snprintf(err, errsz, "group commit failed: %s", sqlite3_errstr(it->rc));
        return -1;
    }
    return 0;
}

enum raw_mode { RAW_PER_INSERT, RAW_GROUP };

/* Raw inserts into a fresh PATH at durability DUR: N clients for SECS. */
static struct result run_raw(const char *path, int dur, enum raw_mode mode, int n, double secs,
                             double *rows_per_commit)
{
    void *selves[MAXC];
    struct result res;
    char label[96];
    uint64_t seed = bc_now_ns();

    snprintf(label, sizeof(label), "raw SQLite (%s, c=%d, %s)", dur_name[dur], n,
             mode == RAW_GROUP ? "group commit" : "commit per insert");
    raw_reset(path);
    if (mode == RAW_PER_INSERT) {
        struct raw_client c[MAXC];

        sqlite3_close(raw_open(path, dur)); /* schema and WAL mode before the clients connect */
        for (int i = 0; i < n; i++) {
            c[i].db = raw_open(path, dur);
            c[i].ins = prep(c[i].db, raw_insert_sql);
            c[i].rng = seed + (uint64_t)i * 0x9E3779B97F4A7C15ull;
            selves[i] = &c[i];
        }
        res = run_workers(label, n, raw_op, selves, secs, 0, 1);
        for (int i = 0; i < n; i++) {
            sqlite3_finalize(c[i].ins);
            sqlite3_close(c[i].db);
        }
        if (rows_per_commit != NULL)
            *rows_per_commit = 1.0;
    } else {
        static struct gc g;
        struct gc_client c[MAXC];

        memset(&g, 0, sizeof(g));
        pthread_mutex_init(&g.mu, NULL);
        pthread_cond_init(&g.cv, NULL);
        g.db = raw_open(path, dur);
        g.ins = prep(g.db, raw_insert_sql);
        g.begin = prep(g.db, "BEGIN IMMEDIATE");
        g.commit = prep(g.db, "COMMIT");
        g.rollback = prep(g.db, "ROLLBACK");
        if (pthread_create(&g.th, NULL, gc_writer, &g) != 0)
            bc_fail("pthread_create failed");
        for (int i = 0; i < n; i++) {
            memset(&c[i], 0, sizeof(c[i]));
            c[i].g = &g;
            c[i].rng = seed + (uint64_t)i * 0x9E3779B97F4A7C15ull;
            pthread_cond_init(&c[i].item.cv, NULL);
            selves[i] = &c[i];
        }
        res = run_workers(label, n, gc_op, selves, secs, 0, 1);
        pthread_mutex_lock(&g.mu);
        g.stop = 1;
        pthread_cond_signal(&g.cv);
        pthread_mutex_unlock(&g.mu);
        pthread_join(g.th, NULL);
        for (int i = 0; i < n; i++)
            pthread_cond_destroy(&c[i].item.cv);
        if (rows_per_commit != NULL)
            *rows_per_commit = g.batches ? (double)g.rows / (double)g.batches : NAN;
        sqlite3_finalize(g.ins);
        sqlite3_finalize(g.begin);
        sqlite3_finalize(g.commit);
        sqlite3_finalize(g.rollback);
        sqlite3_close(g.db);
        pthread_mutex_destroy(&g.mu);
        pthread_cond_destroy(&g.cv);
    }
    raw_reset(path);
    return res;
}

/* ---- the broker process ------------------------------------------------------------------ */

struct broker {
    pid_t pid;
    int port;
    int dur;
    int slot;         /* in bc_child_pid[] */
    const char *name; /* "crash", "fsync", "held-crash", "held-fsync" */
};

static const char *const slot_name[N_SLOTS] = {"crash", "fsync", "held-crash", "held-fsync"};

/* CPU time used so far by a process's threads, in ns, in total and by thread name. */
#define CPU_NAMES 8
struct cpu_snap {
    uint64_t total;
    int n;
    char name[CPU_NAMES][16];
    uint64_t ns[CPU_NAMES];
};

/* Read PID's threads (/proc/PID/task/TID/schedstat, first field; comm). Zeros when unreadable. */
static struct cpu_snap proc_cpu(pid_t pid)
{
    struct cpu_snap c;
    char path[64];
    DIR *d;
    struct dirent *de;

    memset(&c, 0, sizeof(c));
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    d = opendir(path);
    if (d == NULL)
        return c;
    while ((de = readdir(d)) != NULL) {
        char p2[300], comm[16] = "?";
        unsigned long long ns;
        FILE *f;
        int i;

        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        snprintf(p2, sizeof(p2), "/proc/%d/task/%s/schedstat", (int)pid, de->d_name);
        f = fopen(p2, "r");
        if (f == NULL)
            continue;
        if (fscanf(f, "%llu", &ns) != 1)
            ns = 0;
        fclose(f);
        snprintf(p2, sizeof(p2), "/proc/%d/task/%s/comm", (int)pid, de->d_name);
        f = fopen(p2, "r");
        if (f != NULL) {
            if (fgets(comm, sizeof(comm), f) != NULL)
                comm[strcspn(comm, "\n")] = '\0';
            fclose(f);
        }
        c.total += ns;
        for (i = 0; i < c.n && strcmp(c.name[i], comm) != 0; i++)
            ;
        if (i == c.n && c.n < CPU_NAMES)
            snprintf(c.name[c.n++], sizeof(c.name[0]), "%s", comm);
        if (i < c.n)
            c.ns[i] += ns;
    }
    closedir(d);
    return c;
}

/* "name µs, ..." per event of the threads' CPU between A and B (threads that ended are lost). */
static void cpu_breakdown(const struct cpu_snap *a, const struct cpu_snap *b, long events,
                          char *out, size_t cap)
{
    size_t off = 0;

    out[0] = '\0';
    for (int i = 0; i < b->n && off < cap; i++) {
        uint64_t before = 0;

        for (int k = 0; k < a->n; k++) {
            if (strcmp(a->name[k], b->name[i]) == 0)
                before = a->ns[k];
        }
        off += (size_t)snprintf(out + off, cap - off, "%s%s %.1f", i ? ", " : "", b->name[i],
                                (double)(b->ns[i] - before) / 1e3 / (double)events);
    }
}

/*
 * Start `BIN run config-NAME.yaml` in DIR (NAME: slot_name[SLOT]) with stderr to broker-NAME.log
 * (bc_broker_start()).
 */
static struct broker broker_start(const char *bin, const char *dir, int slot)
{
    int dur = slot % N_DUR;
    struct broker b = {.pid = -1, .port = 0, .dur = dur, .slot = slot, .name = slot_name[slot]};
    char cfg[BC_WORKDIR_MAX + 64], log[BC_WORKDIR_MAX + 64];

    snprintf(cfg, sizeof(cfg), "%s/config-%s.yaml", dir, b.name);
    snprintf(log, sizeof(log), "%s/broker-%s.log", dir, b.name);
    b.port = bc_broker_start(bin, dir, cfg, log, slot, &b.pid);
    return b;
}

static void broker_stop(struct broker *b)
{
    char what[32];

    snprintf(what, sizeof(what), "broker (%s)", b->name);
    bc_child_stop(&b->pid, what, 1);
    bc_child_pid[b->slot] = -1;
}

/*
 * Stop a "held" broker: its only environment hangs in INIT, so the graceful drain would wait for
 * it; a second SIGTERM stops the broker at once (every environment killed). The queued events
 * are left in its data dir, which the caller removes.
 */
static void held_stop(struct broker *b)
{
    uint64_t t0 = bc_now_ns();
    int status = 0, second = 0;

    kill(b->pid, SIGTERM);
    for (;;) {
        pid_t r = waitpid(b->pid, &status, WNOHANG);
        uint64_t ms = (bc_now_ns() - t0) / 1000000u;

        if (r == b->pid || (r < 0 && errno != EINTR))
            break;
        if (!second && ms > 100) {
            kill(b->pid, SIGTERM);
            second = 1;
        }
        if (ms > BC_EXIT_TIMEOUT_MS) {
            fprintf(stderr, "bench_async: broker (%s) did not exit %d ms after SIGTERM; SIGKILL\n",
                    b->name, BC_EXIT_TIMEOUT_MS);
            kill(b->pid, SIGKILL);
            waitpid(b->pid, &status, 0);
            break;
        }
        bc_sleep_ms(1);
    }
    b->pid = -1;
    bc_child_pid[b->slot] = -1;
}

struct health {
    long long enqueued, succeeded, failed, queued, in_flight; /* the "async" object */
    long long cold_starts, environments;
};

static long long async_int(json_t *a, const char *key)
{
    json_t *v = json_object_get(a, key);

    return json_is_integer(v) ? json_integer_value(v) : -1;
}

/* GET /healthz on C (opened on first use, reopened once if it fails). 0, or -1 with ERR. */
static int health_get(struct bc_conn *c, int port, struct health *h, char *err, size_t errsz)
{
    char req[128];
    struct bc_resp r;
    json_error_t jerr;
    json_t *j, *a;
    int n = snprintf(req, sizeof(req), "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", port);

    for (int attempt = 0;; attempt++) {
        if (c->fd < 0 && bc_conn_open(c, port, err, errsz) != 0)
            return -1;
        if (bc_conn_roundtrip(c, req, (size_t)n, &r, err, errsz) == 0)
            break;
        bc_conn_close(c);
        if (attempt > 0)
            return -1;
    }
    j = json_loadb(r.body, r.body_len, 0, &jerr);
    a = json_object_get(j, "async");
    if (r.status != 200 || j == NULL || !json_is_object(a)) {
        snprintf(err, errsz, "GET /healthz: status %d, no \"async\" object: %.*s", r.status,
                 (int)(r.body_len > 200 ? 200 : r.body_len), r.body);
        json_decref(j);
        return -1;
    }
    h->enqueued = async_int(a, "enqueued");
    h->succeeded = async_int(a, "succeeded");
    h->failed = async_int(a, "failed");
    h->queued = async_int(a, "queued");
    h->in_flight = async_int(a, "in_flight");
    h->cold_starts = bc_json_find_int(j, "cold_starts");
    h->environments = bc_json_find_int(j, "environments");
    json_decref(j);
    return 0;
}

/* Wait (bounded) until the queue holds nothing; fails if any event failed meanwhile. */
static struct health wait_drained(const struct broker *b, long long failed_before)
{
    struct bc_conn *c = calloc(1, sizeof(*c));
    uint64_t deadline = bc_now_ns() + (uint64_t)DRAIN_TIMEOUT_MS * 1000000u;
    struct health h;
    char err[256];

    if (c == NULL)
        bc_fail("out of memory");
    c->fd = -1;
    for (;;) {
        if (health_get(c, b->port, &h, err, sizeof(err)) != 0)
            bc_fail("broker (%s): %s", b->name, err);
        if (h.queued == 0 && h.in_flight == 0)
            break;
        if (bc_now_ns() > deadline)
            bc_fail("broker (%s): the async queue did not drain within %d ms (%lld queued, %lld "
                 "in flight)",
                 b->name, DRAIN_TIMEOUT_MS, h.queued, h.in_flight);
        bc_sleep_ms(POLL_MS);
    }
    bc_conn_close(c);
    free(c);
    if (failed_before >= 0 && h.failed != failed_before)
        bc_fail("broker (%s): %lld async events failed", b->name, h.failed - failed_before);
    return h;
}

/* ---- end to end ------------------------------------------------------------------------- */

/* Polls /healthz every POLL_MS (FINE_POLL_MS once 95% of the events since START succeeded, so
 * that the end is seen within 2 ms) until async.succeeded reaches TARGET; records when it did. */
struct poller {
    int port;
    long long start, target;
    uint64_t t_done; /* 0: not reached */
    long long failed_at_end;
    char err[256];
};

static void *poller_main(void *arg)
{
    struct poller *p = arg;
    struct bc_conn *c = calloc(1, sizeof(*c));
    uint64_t deadline = bc_now_ns() + (uint64_t)E2E_TIMEOUT_MS * 1000000u;
    struct health h;

    if (c == NULL) {
        snprintf(p->err, sizeof(p->err), "out of memory");
        return NULL;
    }
    c->fd = -1;
    for (;;) {
        if (health_get(c, p->port, &h, p->err, sizeof(p->err)) != 0)
            break;
        if (h.succeeded >= p->target) {
            p->t_done = bc_now_ns();
            p->failed_at_end = h.failed;
            break;
        }
        if (bc_now_ns() > deadline) {
            snprintf(p->err, sizeof(p->err),
                     "async.succeeded reached %lld of %lld within %d ms (%lld queued, %lld "
                     "failed)",
                     h.succeeded, p->target, E2E_TIMEOUT_MS, h.queued, h.failed);
            break;
        }
        bc_sleep_ms((p->target - h.succeeded) * 20 <= p->target - p->start ? FINE_POLL_MS
                                                                          : POLL_MS);
    }
    bc_conn_close(c);
    free(c);
    return NULL;
}

struct e2e {
    double rate;      /* events/s, first request to the poll that saw the last success */
    double feed_secs; /* first request to the last 202 */
    double feed_p50, feed_p99;
};

/* N events by MAXC feeders on a drained broker; the function has async concurrency FN_CONC. */
static struct e2e run_e2e(const struct broker *b, const struct http_spec *s, long n)
{
    struct health h0 = wait_drained(b, -1);
    struct poller p = {.port = b->port, .start = h0.succeeded, .target = h0.succeeded + n};
    pthread_t th;
    struct result fr;
    struct e2e out;

    if (pthread_create(&th, NULL, poller_main, &p) != 0)
        bc_fail("pthread_create failed");
    fr = run_http(s, MAXC, 0, n / MAXC, 1);
    pthread_join(th, NULL);
    if (p.err[0] != '\0' || p.t_done == 0)
        bc_fail("end to end (%s): %s", b->name, p.err[0] ? p.err : "not finished");
    if (p.failed_at_end != h0.failed)
        bc_fail("end to end (%s): %lld events failed", b->name, p.failed_at_end - h0.failed);
    out.rate = (double)n / ((double)(p.t_done - fr.first) / 1e9);
    out.feed_secs = (double)(fr.last - fr.first) / 1e9;
    out.feed_p50 = fr.p50;
    out.feed_p99 = fr.p99;
    wait_drained(b, h0.failed);
    return out;
}

/* ---- the table --------------------------------------------------------------------------- */

static const char *const g_head[] = {
    "measurement", "p50 µs", "p99 µs", "ops/s", "× baseline", "baseline", "target", "met?",
};

/* Columns 1..4 are numbers (right-aligned). */
static struct bc_table g_table = {.ncol = 8, .head = g_head, .num_first = 1, .num_last = 4};

/* ---- main -------------------------------------------------------------------------------- */

struct opts {
    const char *broker;
    const char *bootstrap;
    const char *dir;
    int rounds;
    double secs;
    long events;
    int dur_mask; /* bit per durability */
    int keep;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_async [--broker PATH] [--bootstrap PATH] [--rounds N] [--secs S]\n"
            "                   [--events N] [--durability crash|fsync|both] [--dir DIR] [--keep]\n"
            "  --broker PATH     switchyard binary (env SY_BENCH_BROKER; default %s)\n"
            "  --bootstrap PATH  the provided bootstrap (env SY_BENCH_BOOTSTRAP; default %s)\n"
            "  --rounds N        rounds per measurement; the table shows medians (default 3)\n"
            "  --secs S          length of each enqueue / raw insert measurement (default 1.0)\n"
            "  --events N        events per end-to-end run and sync invokes per baseline run,\n"
            "                    rounded up to a multiple of %d (default 20000)\n"
            "  --durability D    broker.durability to measure: crash, fsync or both (default)\n"
            "  --dir DIR         where the work dir is made (default $TMPDIR or /tmp); its file\n"
            "                    system is what the fsync rows measure\n"
            "  --keep            keep the work dir (configs, logs)\n",
            SY_BINARY, SY_BENCH_BOOTSTRAP, MAXC);
}

static struct opts parse_opts(int argc, char **argv)
{
    struct opts o = {
        .broker = SY_BINARY,
        .bootstrap = SY_BENCH_BOOTSTRAP,
        .dir = getenv("TMPDIR") != NULL && getenv("TMPDIR")[0] != '\0' ? getenv("TMPDIR") : "/tmp",
        .rounds = 3,
        .secs = 1.0,
        .events = 20000,
        .dur_mask = 3,
        .keep = 0};

    bc_prog = "bench_async"; /* the prefix of bench_common.c's messages */
    if (getenv("SY_BENCH_BROKER") != NULL)
        o.broker = getenv("SY_BENCH_BROKER");
    if (getenv("SY_BENCH_BOOTSTRAP") != NULL)
        o.bootstrap = getenv("SY_BENCH_BOOTSTRAP");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

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
        if (strcmp(a, "--broker") == 0) {
            o.broker = v;
        } else if (strcmp(a, "--bootstrap") == 0) {
            o.bootstrap = v;
        } else if (strcmp(a, "--dir") == 0) {
            o.dir = v;
        } else if (strcmp(a, "--rounds") == 0) {
            o.rounds = (int)bc_long_arg(v, a, 1, MAX_ROUNDS);
        } else if (strcmp(a, "--events") == 0) {
            o.events = bc_long_arg(v, a, MAXC, 10000000);
        } else if (strcmp(a, "--secs") == 0) {
            char *end;

            o.secs = strtod(v, &end);
            if (*v == '\0' || *end != '\0' || !(o.secs >= 0.1 && o.secs <= 60)) {
                fprintf(stderr, "bench_async: --secs must be 0.1..60 (got %s)\n", v);
                exit(2);
            }
        } else if (strcmp(a, "--durability") == 0) {
            if (strcmp(v, "crash") == 0)
                o.dur_mask = 1;
            else if (strcmp(v, "fsync") == 0)
                o.dur_mask = 2;
            else if (strcmp(v, "both") == 0)
                o.dur_mask = 3;
            else {
                fprintf(stderr, "bench_async: --durability must be crash, fsync or both\n");
                exit(2);
            }
        } else {
            usage(stderr);
            exit(2);
        }
    }
    o.events = (o.events + MAXC - 1) / MAXC * MAXC;
    return o;
}

static const char *fs_name(const char *path)
{
    struct statfs sf;

    if (statfs(path, &sf) != 0)
        return "unknown";
    switch ((unsigned long)sf.f_type) {
    case 0xEF53:
        return "ext2/3/4";
    case 0x58465342:
        return "xfs";
    case 0x9123683E:
        return "btrfs";
    case 0x01021994:
        return "tmpfs (fsync is a no-op: the fsync rows measure nothing)";
    case 0x794c7630:
        return "overlayfs";
    case 0x2FC12FC1:
        return "zfs";
    case 0x65735546:
        return "fuse";
    default:
        return "other";
    }
}

static void print_env(const struct opts *o)
{
    bc_print_machine("async");
    printf("- broker: %s; provided bootstrap: %s; SQLite %s\n", o->broker, o->bootstrap,
           sqlite3_libversion());
    printf("- work dir: %s (%s)\n", bc_workdir, fs_name(bc_workdir));
    printf("- %d rounds; enqueue and raw insert runs of %.1f s each with %d-byte payloads; "
           "end to end %ld events of %zu bytes (`%s`) from %d clients, sync baseline %ld invokes "
           "from %d clients\n\n",
           o->rounds, o->secs, KB_PAYLOAD_LEN, o->events, strlen(SMALL_PAYLOAD), SMALL_PAYLOAD,
           MAXC, o->events, FN_CONC);
    fflush(stdout);
}

/* Write one config per durability and the provided code dir (a copy of the bootstrap). */
static void setup_workdir(const struct opts *o)
{
    char path[BC_WORKDIR_MAX + 64], cfg[2048];

    if (strlen(o->dir) > BC_WORKDIR_MAX - 32)
        bc_fail("--dir %.40s...: too long", o->dir);
    snprintf(bc_workdir, sizeof(bc_workdir), "%s/sy-bench-async-XXXXXX", o->dir);
    if (mkdtemp(bc_workdir) == NULL)
        bc_fail("mkdtemp %s: %s", bc_workdir, strerror(errno));
    snprintf(path, sizeof(path), "%s/provided", bc_workdir);
    bc_mkdir(path);
    snprintf(path, sizeof(path), "%s/provided/bootstrap", bc_workdir);
    bc_copy_file(o->bootstrap, path, 0755);
    /* The held function: a runtime that never asks for its first event (INIT hangs). */
    snprintf(path, sizeof(path), "%s/held", bc_workdir);
    bc_mkdir(path);
    snprintf(path, sizeof(path), "%s/held/bootstrap", bc_workdir);
    bc_write_file(path,
               "#!/bin/sh\n# bench_async: hold INIT (bounded: the broker kills it first)\n"
               "exec sleep 300\n",
               0755);
    for (int d = 0; d < N_DUR; d++) {
        snprintf(cfg, sizeof(cfg),
                 "# Written by bench_async: the same function, but its runtime never finishes\n"
                 "# INIT, so the events it is sent stay queued (nothing is processed).\n"
                 "broker: {listen: \"127.0.0.1:0\", data_dir: ./data-held-%s, "
                 "max_concurrency: 100,\n"
                 "         durability: %s, log_level: info, shutdown_grace_ms: 100}\n"
                 "functions:\n"
                 "  " FN_NAME ":\n"
                 "    runtime: provided\n"
                 "    code: ./held\n"
                 "    memory_mb: 128\n"
                 "    timeout_s: 10\n"
                 "    init_timeout_s: 900\n"
                 "    async: {maximum_concurrency: 1}\n",
                 dur_name[d], dur_name[d]);
        snprintf(path, sizeof(path), "%s/config-held-%s.yaml", bc_workdir, dur_name[d]);
        bc_write_file(path, cfg, 0644);
    }
    for (int d = 0; d < N_DUR; d++) {
        snprintf(cfg, sizeof(cfg),
                 "# Written by bench_async. log_level info: the ready line is an info line, and\n"
                 "# nothing is logged per invocation at that level.\n"
                 "broker: {listen: \"127.0.0.1:0\", data_dir: ./data-%s, max_concurrency: 100,\n"
                 "         durability: %s, log_level: info}\n"
                 "functions:\n"
                 "  " FN_NAME ":\n"
                 "    runtime: provided\n"
                 "    code: ./provided\n"
                 "    memory_mb: 128\n"
                 "    timeout_s: 10\n"
                 "    async: {maximum_concurrency: %d}\n",
                 dur_name[d], dur_name[d], FN_CONC);
        snprintf(path, sizeof(path), "%s/config-%s.yaml", bc_workdir, dur_name[d]);
        bc_write_file(path, cfg, 0644);
    }
}

/* The 1 KB event: {"n":12345,"pad":"abc...xyzabc..."}, exactly KB_PAYLOAD_LEN bytes. */
static void make_kb_payload(void)
{
    static const char head[] = "{\"n\":12345,\"pad\":\"";
    size_t pad = KB_PAYLOAD_LEN - (sizeof(head) - 1) - 2, off = 0;

    memcpy(g_kb_payload, head, sizeof(head) - 1);
    off = sizeof(head) - 1;
    for (size_t i = 0; i < pad; i++)
        g_kb_payload[off++] = (char)('a' + i % 26);
    g_kb_payload[off++] = '"';
    g_kb_payload[off++] = '}';
    g_kb_payload[off] = '\0';
}

enum { M_RAW1, M_ENQ1, M_HELD1, M_RAW16, M_GC16, M_ENQ16, M_HELD16, M_SYNC8, M_E2E, N_M };

int main(int argc, char **argv)
{
    struct opts o = parse_opts(argc, argv);
    static struct result res[N_DUR][N_M][MAX_ROUNDS];
    static struct e2e e2e[N_DUR][MAX_ROUNDS];
    static double gc_batch[N_DUR][MAX_ROUNDS];
    static double cpu_sync[N_DUR][MAX_ROUNDS], cpu_e2e[N_DUR][MAX_ROUNDS]; /* broker µs/event */
    static char cpu_threads[N_DUR][256]; /* the last round's end-to-end CPU by thread */
    struct cpu_snap cpu0, cpu1, cpu2;
    static struct broker b[N_DUR];
    static struct health hb[N_DUR], ha[N_DUR];
    static struct http_spec enq_spec[N_DUR], small_spec[N_DUR], sync_spec[N_DUR];
    static char broker_path[PATH_MAX], boot_path[PATH_MAX], rawdb[BC_WORKDIR_MAX + 32],
        held_dir[BC_WORKDIR_MAX + 32];
    static struct http_spec held_spec;
    struct broker held;
    uint64_t t_begin = bc_now_ns();
    int R = o.rounds;

    signal(SIGPIPE, SIG_IGN);
    /* Absolute paths: the broker runs with its cwd in the work dir. */
    if (access(o.broker, X_OK) != 0 || realpath(o.broker, broker_path) == NULL)
        bc_fail("broker binary %s: %s (build it, or pass --broker)", o.broker, strerror(errno));
    if (access(o.bootstrap, X_OK) != 0 || realpath(o.bootstrap, boot_path) == NULL)
        bc_fail("bootstrap %s: %s (build it, or pass --bootstrap)", o.bootstrap, strerror(errno));
    o.broker = broker_path;
    o.bootstrap = boot_path;
    make_kb_payload();
    setup_workdir(&o);
    print_env(&o);

    for (int d = 0; d < N_DUR; d++) {
        if (!(o.dur_mask & (1 << d)))
            continue;
        b[d] = broker_start(o.broker, bc_workdir, d);
        spec_init(&enq_spec[d], "durable enqueue", b[d].port, 1, g_kb_payload);
        spec_init(&small_spec[d], "end to end", b[d].port, 1, SMALL_PAYLOAD);
        spec_init(&sync_spec[d], "sync invoke", b[d].port, 0, SMALL_PAYLOAD);
        /*
         * Warm-up: FN_CONC sync clients at once (a barrier in run_workers(), so the function
         * ends up with FN_CONC warm environments), then async traffic at both concurrencies.
         */
        fprintf(stderr, "bench_async: broker (%s) on port %d, warming up...\n", dur_name[d],
                b[d].port);
        run_http(&sync_spec[d], FN_CONC, 0, 300, 0);
        run_http(&enq_spec[d], 1, 0, 300, 0);
        run_http(&enq_spec[d], MAXC, 0, 100, 0);
        hb[d] = wait_drained(&b[d], -1);
        snprintf(rawdb, sizeof(rawdb), "%s/raw-%s.db", bc_workdir, dur_name[d]);
        run_raw(rawdb, d, RAW_PER_INSERT, 1, 0.2, NULL);
    }

    for (int r = 0; r < R; r++) {
        for (int d = 0; d < N_DUR; d++) {
            if (!(o.dur_mask & (1 << d)))
                continue;
            snprintf(rawdb, sizeof(rawdb), "%s/raw-%s.db", bc_workdir, dur_name[d]);
            fprintf(stderr, "bench_async: round %d/%d, %s: enqueue c=1\n", r + 1, R, dur_name[d]);
            res[d][M_RAW1][r] = run_raw(rawdb, d, RAW_PER_INSERT, 1, o.secs, NULL);
            res[d][M_ENQ1][r] = run_http(&enq_spec[d], 1, o.secs, 0, 1);
            wait_drained(&b[d], hb[d].failed);
            held = broker_start(o.broker, bc_workdir, N_DUR + d);
            spec_init(&held_spec, "durable enqueue, not processed", held.port, 1, g_kb_payload);
            run_http(&held_spec, 1, 0, 200, 0); /* warm-up: connection, cold start, SQLite */
            res[d][M_HELD1][r] = run_http(&held_spec, 1, o.secs, 0, 1);
            fprintf(stderr, "bench_async: round %d/%d, %s: enqueue c=%d\n", r + 1, R, dur_name[d],
                    MAXC);
            res[d][M_RAW16][r] = run_raw(rawdb, d, RAW_PER_INSERT, MAXC, o.secs, NULL);
            res[d][M_GC16][r] = run_raw(rawdb, d, RAW_GROUP, MAXC, o.secs, &gc_batch[d][r]);
            res[d][M_ENQ16][r] = run_http(&enq_spec[d], MAXC, o.secs, 0, 1);
            wait_drained(&b[d], hb[d].failed);
            res[d][M_HELD16][r] = run_http(&held_spec, MAXC, o.secs, 0, 1);
            held_stop(&held);
            snprintf(held_dir, sizeof(held_dir), "%s/data-held-%s", bc_workdir, dur_name[d]);
            if (bc_rm_tree(held_dir) != 0)
                bc_fail("cannot remove %s", held_dir);
            fprintf(stderr, "bench_async: round %d/%d, %s: sync c=%d, then %ld events end to end\n",
                    r + 1, R, dur_name[d], FN_CONC, o.events);
            cpu0 = proc_cpu(b[d].pid);
            res[d][M_SYNC8][r] = run_http(&sync_spec[d], FN_CONC, 0, o.events / FN_CONC, 1);
            cpu1 = proc_cpu(b[d].pid);
            e2e[d][r] = run_e2e(&b[d], &small_spec[d], o.events);
            cpu2 = proc_cpu(b[d].pid);
            cpu_sync[d][r] = (double)(cpu1.total - cpu0.total) / 1e3 / (double)o.events;
            cpu_e2e[d][r] = (double)(cpu2.total - cpu1.total) / 1e3 / (double)o.events;
            cpu_breakdown(&cpu1, &cpu2, o.events, cpu_threads[d], sizeof(cpu_threads[d]));
            res[d][M_E2E][r].rate = e2e[d][r].rate;
        }
    }
    for (int d = 0; d < N_DUR; d++) {
        if (!(o.dur_mask & (1 << d)))
            continue;
        ha[d] = wait_drained(&b[d], hb[d].failed);
        broker_stop(&b[d]);
    }

    /* ---- rows ---- */
    for (int d = 0; d < N_DUR; d++) {
        double v[MAX_ROUNDS], q[MAX_ROUNDS];
        struct bc_row *row;

        if (!(o.dur_mask & (1 << d)))
            continue;
#define COL_STATS(ROW, M)                                                                          \
    do {                                                                                           \
        for (int r_ = 0; r_ < R; r_++)                                                             \
            v[r_] = res[d][M][r_].p50;                                                             \
        bc_fmt_num((ROW)->c[1], sizeof((ROW)->c[1]), bc_median(v, (size_t)R), 1);                  \
        for (int r_ = 0; r_ < R; r_++)                                                             \
            v[r_] = res[d][M][r_].p99;                                                             \
        bc_fmt_num((ROW)->c[2], sizeof((ROW)->c[2]), bc_median(v, (size_t)R), 1);                  \
        for (int r_ = 0; r_ < R; r_++)                                                             \
            v[r_] = res[d][M][r_].rate;                                                            \
        bc_fmt_num((ROW)->c[3], sizeof((ROW)->c[3]), bc_median(v, (size_t)R), 0);                  \
    } while (0)

        /* c=1: against commit-per-insert at c=1. */
        row = bc_row_add(&g_table, "raw SQLite insert, %s, c=1, commit per insert", dur_name[d]);
        COL_STATS(row, M_RAW1);
        snprintf(row->c[5], sizeof(row->c[5]), "(baseline A)");
        row = bc_row_add(&g_table, "**durable enqueue, %s, c=1**", dur_name[d]);
        COL_STATS(row, M_ENQ1);
        for (int r = 0; r < R; r++)
            q[r] = res[d][M_ENQ1][r].rate / res[d][M_RAW1][r].rate;
        snprintf(row->c[4], sizeof(row->c[4]), "%.2f×", bc_median(q, (size_t)R));
        snprintf(row->c[5], sizeof(row->c[5]), "A");
        snprintf(row->c[6], sizeof(row->c[6]), "≥ 0.50×");
        snprintf(row->c[7], sizeof(row->c[7]), "%s",
                 bc_median(q, (size_t)R) >= 0.5 ? "yes" : "**no**");
        row = bc_row_add(&g_table, "durable enqueue, %s, c=1, nothing processed", dur_name[d]);
        COL_STATS(row, M_HELD1);
        for (int r = 0; r < R; r++)
            q[r] = res[d][M_HELD1][r].rate / res[d][M_RAW1][r].rate;
        snprintf(row->c[4], sizeof(row->c[4]), "%.2f×", bc_median(q, (size_t)R));
        snprintf(row->c[5], sizeof(row->c[5]), "A");
        snprintf(row->c[6], sizeof(row->c[6]), "(info)");

        /* c=16: against the faster of the two raw ways, per round. */
        row =
            bc_row_add(&g_table, "raw SQLite insert, %s, c=16, commit per insert (16 connections)",
                       dur_name[d]);
        COL_STATS(row, M_RAW16);
        snprintf(row->c[5], sizeof(row->c[5]), "(B1)");
        row = bc_row_add(&g_table, "raw SQLite insert, %s, c=16, group commit (1 writer)",
                         dur_name[d]);
        COL_STATS(row, M_GC16);
        snprintf(row->c[5], sizeof(row->c[5]), "(B2)");
        row = bc_row_add(&g_table, "**durable enqueue, %s, c=16**", dur_name[d]);
        COL_STATS(row, M_ENQ16);
        for (int r = 0; r < R; r++) {
            double base = fmax(res[d][M_RAW16][r].rate, res[d][M_GC16][r].rate);
            q[r] = res[d][M_ENQ16][r].rate / base;
        }
        snprintf(row->c[4], sizeof(row->c[4]), "%.2f×", bc_median(q, (size_t)R));
        snprintf(row->c[5], sizeof(row->c[5]), "max(B1, B2)");
        snprintf(row->c[6], sizeof(row->c[6]), "≥ 0.50×");
        snprintf(row->c[7], sizeof(row->c[7]), "%s",
                 bc_median(q, (size_t)R) >= 0.5 ? "yes" : "**no**");
        row = bc_row_add(&g_table, "durable enqueue, %s, c=16, nothing processed", dur_name[d]);
        COL_STATS(row, M_HELD16);
        for (int r = 0; r < R; r++) {
            double base = fmax(res[d][M_RAW16][r].rate, res[d][M_GC16][r].rate);
            q[r] = res[d][M_HELD16][r].rate / base;
        }
        snprintf(row->c[4], sizeof(row->c[4]), "%.2f×", bc_median(q, (size_t)R));
        snprintf(row->c[5], sizeof(row->c[5]), "max(B1, B2)");
        snprintf(row->c[6], sizeof(row->c[6]), "(info)");

        /* End to end: against sync invokes of the same function on the same broker. */
        row = bc_row_add(&g_table, "sync invoke, %s broker, c=%d", dur_name[d], FN_CONC);
        COL_STATS(row, M_SYNC8);
        snprintf(row->c[5], sizeof(row->c[5]), "(baseline C)");
        row = bc_row_add(&g_table, "**async end to end, %s, async concurrency %d**", dur_name[d],
                         FN_CONC);
        for (int r = 0; r < R; r++) {
            v[r] = e2e[d][r].rate;
            q[r] = e2e[d][r].rate / res[d][M_SYNC8][r].rate;
        }
        bc_fmt_num(row->c[3], sizeof(row->c[3]), bc_median(v, (size_t)R), 0);
        snprintf(row->c[4], sizeof(row->c[4]), "%.2f×", bc_median(q, (size_t)R));
        snprintf(row->c[5], sizeof(row->c[5]), "C");
        snprintf(row->c[6], sizeof(row->c[6]), "≥ 0.80×");
        snprintf(row->c[7], sizeof(row->c[7]), "%s",
                 bc_median(q, (size_t)R) >= 0.8 ? "yes" : "**no**");
#undef COL_STATS
    }

    bc_print_table(&g_table);
    printf("\n- Medians of %d rounds; × baseline is the median of per-round ratios (the baseline "
           "is measured in the same round, just before), so it need not equal the ratio of the "
           "ops/s medians.\n",
           R);
    printf("- Durability: `crash` = WAL with synchronous=NORMAL (the commit is in the WAL in the "
           "page cache before the 202: survives kill -9), `fsync` = synchronous=FULL (the WAL is "
           "fsynced on every commit: survives power loss). The raw baselines use the same "
           "setting, the same table and insert statement as the broker's store, a fresh database "
           "in the work dir per run, and prepared statements reused across inserts; they keep "
           "SQLite's automatic checkpoints (every 1000 WAL pages, on the inserting thread), "
           "while the broker checkpoints on a thread of its own.\n");
    printf("- Enqueue rows: `POST .../invocations` with `X-Amz-Invocation-Type: Event` and a "
           "%d-byte JSON body on keep-alive connections (one per client thread, TCP_NODELAY); "
           "every answer must be 202, which the broker sends once the event is committed. The "
           "events are processed (by the echo function, async concurrency %d) while the clients "
           "run; the queue is drained between runs. The `nothing processed` rows (no target) send "
           "the same requests to a second broker (fresh per round, same durability) whose copy of "
           "the function has a runtime that never finishes INIT, so the events stay queued: the "
           "enqueue path alone, without the invocations and the deletes of finished events "
           "competing for the CPUs and the store thread.\n",
           KB_PAYLOAD_LEN, FN_CONC);
    printf("- c=1 target: against A, one row per transaction (what a client waiting for its own "
           "acknowledgement needs; no batching is possible with one client). c=16 target: "
           "against the faster of B1 (16 threads, own connection each, autocommit insert, busy "
           "timeout) and B2 (16 threads hand rows to one writer that commits every waiting row "
           "in one transaction, as the broker's store thread does). B2 committed ");
    for (int d = 0, first = 1; d < N_DUR; d++) {
        if (!(o.dur_mask & (1 << d)))
            continue;
        printf("%s%.1f rows per transaction (%s)", first ? "" : ", ",
               bc_median(gc_batch[d], (size_t)R), dur_name[d]);
        first = 0;
    }
    printf(".\n");
    printf("- End to end: %ld events of %zu bytes from %d clients as fast as they are accepted, "
           "timed from the first request until a /healthz poll (every %d ms, every %d ms over "
           "the last 5%%) sees `async.succeeded` grown by %ld. Baseline C: %ld sync invokes of "
           "the same function (same payload, %d clients, matching `async.maximum_concurrency: %d`) on the same "
           "broker, just before.\n",
           o.events, strlen(SMALL_PAYLOAD), MAXC, POLL_MS, FINE_POLL_MS, o.events, o.events,
           FN_CONC, FN_CONC);
    for (int d = 0; d < N_DUR; d++) {
        double fs[MAX_ROUNDS], f50[MAX_ROUNDS], f99[MAX_ROUNDS];

        if (!(o.dur_mask & (1 << d)))
            continue;
        for (int r = 0; r < R; r++) {
            fs[r] = e2e[d][r].feed_secs;
            f50[r] = e2e[d][r].feed_p50;
            f99[r] = e2e[d][r].feed_p99;
        }
        printf("- End to end, %s: all %ld events were accepted after %.2f s (enqueue p50 %.0f µs, "
               "p99 %.0f µs); broker CPU per event, all its threads (schedstat): %.1f µs end to "
               "end against %.1f µs sync (last round, µs by thread: %s); /healthz during the "
               "rounds: %lld cold starts (want 0), %lld environments, %lld async events failed "
               "(want 0).\n",
               dur_name[d], o.events, bc_median(fs, (size_t)R), bc_median(f50, (size_t)R),
               bc_median(f99, (size_t)R), bc_median(cpu_e2e[d], (size_t)R),
               bc_median(cpu_sync[d], (size_t)R), cpu_threads[d],
               ha[d].cold_starts >= 0 && hb[d].cold_starts >= 0
                   ? ha[d].cold_starts - hb[d].cold_starts
                   : -1LL,
               ha[d].environments, ha[d].failed - hb[d].failed);
    }
    printf("- Total bench time %.1f s.\n", (double)(bc_now_ns() - t_begin) / 1e9);

    if (!o.keep && bc_rm_tree(bc_workdir) != 0)
        fprintf(stderr, "bench_async: could not remove %s\n", bc_workdir);
    else if (o.keep)
        printf("- Work dir kept: %s\n", bc_workdir);
    return 0;
}
