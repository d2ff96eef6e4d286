/*
 * dispatcher/asyncq_store.c - the async queue's SQLite store and its thread (asyncq_int.h).
 *
 * Schema (queue.db, WAL):
 *   events(id PK, fn, payload, trace_id, enqueued_ms, next_ms, attempts, state, outcome, history)
 *   dead(id PK, fn, payload, trace_id, enqueued_ms, failed_ms, attempts, condition,
 *        error_type, error_message, history)
 *
 * Durability: journal_mode=WAL with synchronous=NORMAL survives kill -9 of the broker (a commit
 * is in the WAL file, in the OS page cache, before the 202 is sent); synchronous=FULL also
 * fsyncs the WAL on every commit, which survives power loss. Either way one commit covers every
 * job that arrived while the previous one ran.
 *
 * Checkpoints (copying the WAL back into queue.db, with an fsync of each file) run on a thread
 * of their own with a second connection, PASSIVE, once ck_soft pages were added since its last
 * pass (as often as SQLite's own automatic checkpoints) or CKPT_IDLE_MS after the last commit:
 * an fsync takes from a millisecond to hundreds of them on a busy disk, and the store thread
 * (whose commits the 202s wait for) does not wait for them. The WAL starts over from its beginning
 * only at a write that finds it wholly checkpointed, which a checkpointer racing a store thread
 * that never pauses may not achieve: at ck_hard pages the store thread checkpoints the rest
 * itself (little is left by then: a short pause, once per ck_hard pages written).
 * SWITCHYARD_WAL_CHECKPOINT_PAGES=SOFT,HARD overrides both (tests make them small).
 *
 * One broker per data_dir: queue.lock holds an flock for as long as the store is open (released
 * by the kernel when the process dies, even by kill -9).
 *
 * The store thread is core/sqlq.c (`sy-store`): its mailbox, its group-commit transaction loop,
 * and its retry of failed transactions every STORE_RETRY_MS. This file opens and sets up the
 * connection (unix-excl VFS, WAL hook, schema, recovery read) before the loop runs and hands it
 * over; then each aq_job travels through sqlq as the `sj` it embeds: writes other than INSERT
 * never fail for good (sqlq keeps and retries them), INSERTs are SQLQ_MAY_FAIL (they come back
 * with the error: the caller answers 5xx, nothing was promised).
 */
#include "asyncq_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "core/errors.h"
#include "core/log.h"
#include "core/sqlq.h"
#include "core/time.h"
#include "config/config.h"

#define STORE_MAGIC 0x41515354u /* "AQST" */
#define STORE_RETRY_MS 1000     /* after a failed write transaction */
#define CKPT_SOFT 1000          /* WAL pages that start a background checkpoint (SQLite's own) */
#define CKPT_HARD 16384         /* ... and that make the store thread finish one (64 MiB) */
#define CKPT_IDLE_MS 1000       /* frames waiting this long get a pass of their own */

struct aq_store {
    unsigned magic;
    sqlite3 *db;     /* the store thread's connection (owned by sq once sq exists) */
    struct sqlq *sq; /* the store thread: jobs in and out, group commit, retries */
    int fsync;       /* durability: fsync (synchronous=FULL for transactions that promise) */
    int full_now;    /* synchronous is FULL right now (store thread) */
    int lock_fd;     /* queue.lock, flocked while the store is open; -1 */
    /* The checkpointer: its own connection and thread; ck_mu guards the three flags. */
    sqlite3 *ck_db;
    pthread_t ck_thread;
    int ck_started;
    int ck_soft, ck_hard; /* CKPT_SOFT, CKPT_HARD or SWITCHYARD_WAL_CHECKPOINT_PAGES */
    pthread_mutex_t ck_mu;
    pthread_cond_t ck_cv;
    pthread_cond_t ck_idle_cv; /* a pass ended (for the store thread at ck_hard) */
    int ck_stop, ck_running;
    int ck_hold; /* ck_mu: the store thread checkpoints itself; start no pass */
    int wal_frames; /* ck_mu: frames in the WAL after the store thread's last commit */
    int ck_done;    /* ck_mu: frames the last checkpoint pass copied (0 after a restart) */
    /* Prepared statements of the write path, by SQL text (static strings): prepared once. */
    struct {
        const char *sql;
        sqlite3_stmt *stmt;
    } cache[12];
    size_t n_cache;
};

static const char schema[] =
    /* Events are addressed by rowid (no index on id to maintain per insert and delete). */
    "CREATE TABLE IF NOT EXISTS events("
    " id TEXT NOT NULL, fn TEXT NOT NULL, payload BLOB NOT NULL, trace_id TEXT,"
    " enqueued_ms INTEGER NOT NULL, next_ms INTEGER NOT NULL, attempts INTEGER NOT NULL,"
    " state INTEGER NOT NULL DEFAULT 0, outcome TEXT, history TEXT);"
    "CREATE TABLE IF NOT EXISTS dead("
    " id TEXT PRIMARY KEY, fn TEXT NOT NULL, payload BLOB NOT NULL, trace_id TEXT,"
    " enqueued_ms INTEGER NOT NULL, failed_ms INTEGER NOT NULL, attempts INTEGER NOT NULL,"
    " condition TEXT NOT NULL, error_type TEXT, error_message TEXT, history TEXT);"
    "CREATE INDEX IF NOT EXISTS dead_fn ON dead(fn, failed_ms);";


void aq_row_clear(struct aq_row *row)
{
    free(row->fn);
    free(row->payload);
    free(row->trace_id);
    free(row->outcome);
    free(row->history);
    memset(row, 0, sizeof(*row));
}

void aq_job_free(struct aq_job *job)
{
    if (job == NULL)
        return;
    aq_row_clear(&job->ev);
    if (job->dead != NULL) {
        free(job->dead->condition);
        free(job->dead->error_type);
        free(job->dead->error_message);
        free(job->dead);
    }
    free(job->q_fn);
    free(job->q_id);
    json_decref(job->result);
    for (size_t i = 0; i < job->n_rows; i++)
        aq_row_clear(&job->rows[i]);
    free(job->rows);
    free(job);
}

static char *col_text(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);

    return t != NULL ? strdup((const char *)t) : NULL;
}

/* Fill ROW from a SELECT of the events columns in schema order. Returns 0 or SY_ENOMEM. */
static int row_from_stmt(sqlite3_stmt *s, struct aq_row *row)
{
    const void *blob = sqlite3_column_blob(s, 2);
    int blen = sqlite3_column_bytes(s, 2);

    memset(row, 0, sizeof(*row));
    snprintf(row->id, sizeof(row->id), "%s", (const char *)sqlite3_column_text(s, 0));
    row->fn = col_text(s, 1);
    row->payload = malloc((size_t)blen + 1);
    if (row->fn == NULL || row->payload == NULL) {
        aq_row_clear(row);
        return SY_ENOMEM;
    }
    if (blen > 0)
        memcpy(row->payload, blob, (size_t)blen);
    row->payload[blen] = '\0';
    row->len = (size_t)blen;
    row->trace_id = col_text(s, 3);
    row->enqueued_ms = sqlite3_column_int64(s, 4);
    row->next_ms = sqlite3_column_int64(s, 5);
    row->attempts = sqlite3_column_int(s, 6);
    row->state = sqlite3_column_int(s, 7);
    row->outcome = col_text(s, 8);
    row->history = col_text(s, 9);
    row->rowid = sqlite3_column_int64(s, 10);
    return 0;
}

/* ---- one broker per data_dir, and the checkpointer ----------------------------------------- */

/* Take <DIR>/queue.lock (flock, without waiting) for ST. Returns 0, or SY_EBUSY (another process
 * holds it) / SY_EIO with ERR filled. */
static int lock_data_dir(struct aq_store *st, const char *dir, struct sy_error *err)
{
    char path[4200], pid[32] = "";
    int fd, n;

    snprintf(path, sizeof(path), "%s/queue.lock", dir);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        sy_error_set(err, "cannot open %s: %s", path, strerror(errno));
        return SY_EIO;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        ssize_t got = e == EWOULDBLOCK ? pread(fd, pid, sizeof(pid) - 1, 0) : -1;

        pid[got > 0 ? got : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(fd);
        if (e != EWOULDBLOCK) {
            sy_error_set(err, "cannot lock %s: %s", path, strerror(e));
            return SY_EIO;
        }
        sy_error_set(err, "cannot use %s/queue.db: it is locked by another process%s%s%s (is "
                          "another broker running with the same data_dir?)",
                     dir, pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "");
        return SY_EBUSY;
    }
    n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n)
        log_warn("[asyncq] cannot write the pid into %s: %s", path, strerror(errno));
    st->lock_fd = fd;
    return 0;
}

/* After every commit of the store thread, with the WAL's size in pages. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct aq_store *st = arg;

    (void)name;
    if (pages >= st->ck_hard || (pages >= st->ck_soft && !st->ck_started)) {
        /* Finish what the checkpointer has not copied yet; the next write restarts the WAL. */
        int rc;

        if (st->ck_started) {
            /* Hold the checkpointer and wait for its pass in progress (its lock would make
             * ours fail with BUSY): the hard limit holds however slow its fsyncs are. */
            pthread_mutex_lock(&st->ck_mu);
            st->ck_hold = 1;
            while (st->ck_running)
                pthread_cond_wait(&st->ck_idle_cv, &st->ck_mu);
            pthread_mutex_unlock(&st->ck_mu);
        }
        rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        if (rc != SQLITE_OK)
            log_err("[asyncq] checkpoint of queue.db failed: %s", sqlite3_errmsg(db));
        if (st->ck_started) {
            pthread_mutex_lock(&st->ck_mu);
            st->ck_hold = 0;
            pthread_mutex_unlock(&st->ck_mu);
        }
        return SQLITE_OK;
    }
    pthread_mutex_lock(&st->ck_mu);
    if (pages < st->ck_done)
        st->ck_done = 0; /* the WAL started over */
    st->wal_frames = pages;
    /* A pass per ck_soft new frames; the checkpointer also catches up on its own within
     * CKPT_IDLE_MS of the last commit (so that a quiet WAL can start over). */
    if (pages - st->ck_done >= st->ck_soft && !st->ck_running)
        pthread_cond_signal(&st->ck_cv);
    pthread_mutex_unlock(&st->ck_mu);
    return SQLITE_OK;
}

/* ck_soft and ck_hard from SWITCHYARD_WAL_CHECKPOINT_PAGES ("SOFT,HARD"), or the defaults. */
static void ckpt_limits(struct aq_store *st)
{
    const char *v = getenv("SWITCHYARD_WAL_CHECKPOINT_PAGES");
    long soft, hard;
    char *end;

    st->ck_soft = CKPT_SOFT;
    st->ck_hard = CKPT_HARD;
    if (v == NULL || *v == '\0')
        return;
    soft = strtol(v, &end, 10);
    hard = *end == ',' ? strtol(end + 1, &end, 10) : 0;
    if (*end != '\0' || soft < 2 || hard <= soft || hard > 1000000) {
        log_warn("[asyncq] ignoring SWITCHYARD_WAL_CHECKPOINT_PAGES=%s (want SOFT,HARD with "
                 "2 <= SOFT < HARD <= 1000000)",
                 v);
        return;
    }
    st->ck_soft = (int)soft;
    st->ck_hard = (int)hard;
}

static void *ckpt_main(void *arg)
{
    struct aq_store *st = arg;
    int last_rc = SQLITE_OK;

    pthread_setname_np(pthread_self(), "sy-checkpoint"); /* top -H, perf */

    pthread_mutex_lock(&st->ck_mu);
    for (;;) {
        struct timespec until;
        int rc, log_frames = -1, copied = -1;

        /* Run once ck_soft frames wait, or when some have waited CKPT_IDLE_MS. */
        while (!st->ck_stop && (st->ck_hold || st->wal_frames - st->ck_done < st->ck_soft)) {
            int waiting = st->wal_frames > st->ck_done;

            time_deadline(&until, CLOCK_REALTIME, CKPT_IDLE_MS);
            if (pthread_cond_timedwait(&st->ck_cv, &st->ck_mu, &until) == ETIMEDOUT &&
                waiting && !st->ck_hold && st->wal_frames > st->ck_done)
                break;
        }
        if (st->ck_stop)
            break;
        st->ck_running = 1;
        pthread_mutex_unlock(&st->ck_mu);
        rc = sqlite3_wal_checkpoint_v2(st->ck_db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log_frames,
                                       &copied);
        /* BUSY: the store thread is finishing one itself right now (ck_hard). */
        if (rc != SQLITE_OK && rc != SQLITE_BUSY && rc != last_rc)
            log_err("[asyncq] checkpoint of queue.db failed: %s; the WAL grows until one "
                    "succeeds", sqlite3_errmsg(st->ck_db));
        else if (rc == SQLITE_OK && last_rc != SQLITE_OK && last_rc != SQLITE_BUSY)
            log_info("[asyncq] checkpoints of queue.db succeed again");
        last_rc = rc;
        pthread_mutex_lock(&st->ck_mu);
        st->ck_running = 0;
        pthread_cond_broadcast(&st->ck_idle_cv);
        /* What was copied; on failure, as if all was (no retry before ck_soft more frames). */
        st->ck_done = rc == SQLITE_OK && copied >= 0 ? copied : st->wal_frames;
    }
    pthread_mutex_unlock(&st->ck_mu);
    return NULL;
}

static void ckpt_stop(struct aq_store *st)
{
    if (!st->ck_started)
        return;
    pthread_mutex_lock(&st->ck_mu);
    st->ck_stop = 1;
    pthread_cond_signal(&st->ck_cv);
    pthread_mutex_unlock(&st->ck_mu);
    pthread_join(st->ck_thread, NULL);
    st->ck_started = 0;
}

static void sqlite_destroy(struct aq_store *st);
static void before_txn(struct sqlq *q, sqlite3 *db, struct sqlq_job *writes, void *arg);
static int run_writes(struct sqlq *q, sqlite3 *db, struct sqlq_job *writes, void *arg);
static void free_sj(struct sqlq_job *sj, void *arg);

static struct aq_store *sqlite_open(const struct cfg *cfg, struct aq_row **rows,
                                    size_t *n_rows, struct sy_error *err)
{
    char path[4200];
    int fsync = cfg->broker.durability == CFG_DURABILITY_FSYNC;

    struct aq_store *st = calloc(1, sizeof(*st));
    sqlite3_stmt *s = NULL;
    char *emsg = NULL;
    struct aq_row *out = NULL;
    size_t n = 0, cap = 0;
    int rc;

    snprintf(path, sizeof(path), "%s/queue.db", cfg->broker.data_dir);
    *rows = NULL;
    *n_rows = 0;
    if (st == NULL) {
        sy_error_set(err, "out of memory");
        return NULL;
    }
    st->magic = STORE_MAGIC;
    st->lock_fd = -1;
    pthread_mutex_init(&st->ck_mu, NULL);
    pthread_cond_init(&st->ck_cv, NULL);
    pthread_cond_init(&st->ck_idle_cv, NULL);
    ckpt_limits(st);
    if (lock_data_dir(st, cfg->broker.data_dir, err) != 0)
        goto fail;
    /*
     * "unix-excl": the process takes an exclusive lock on queue.db at the first read and keeps
     * it, so no other process can use the file, while both connections of this process (the
     * store thread's and the checkpointer's) lock each other in memory: no fcntl() per
     * transaction, and the WAL index lives in the heap (no -shm file).
     */
    rc = sqlite3_open_v2(path, &st->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                         "unix-excl");
    if (rc != SQLITE_OK) {
        sy_error_set(err, "cannot open %s: %s", path,
                     st->db != NULL ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_busy_timeout(st->db, 2000);
    st->fsync = fsync;
    st->full_now = fsync;
    if (sqlite3_exec(st->db, "PRAGMA journal_mode=WAL", NULL, NULL, &emsg) != SQLITE_OK ||
        sqlite3_exec(st->db,
                     fsync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", NULL,
                     NULL, &emsg) != SQLITE_OK ||
        sqlite3_exec(st->db, "PRAGMA journal_size_limit=16777216", NULL, NULL,
                     &emsg) != SQLITE_OK ||
        sqlite3_exec(st->db, schema, NULL, NULL, &emsg) != SQLITE_OK) {
        if (sqlite3_errcode(st->db) == SQLITE_BUSY || sqlite3_errcode(st->db) == SQLITE_LOCKED)
            sy_error_set(err, "cannot use %s: it is locked by another process (a program "
                              "writing to it?)",
                         path);
        else
            sy_error_set(err, "cannot set up %s: %s", path, emsg != NULL ? emsg : "?");
        sqlite3_free(emsg);
        goto fail;
    }
    /* journal_size_limit: after a restart the WAL file is cut back to 16 MiB. Checkpoints: by
     * the checkpointer thread (see the top of this file), not on commit. */
    sqlite3_wal_hook(st->db, wal_hook, st);
    /* The checkpointer's connection reads once, so that it knows the file is in WAL mode. */
    rc = sqlite3_open_v2(path, &st->ck_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                         "unix-excl");
    if (rc != SQLITE_OK ||
        sqlite3_exec(st->ck_db, "PRAGMA synchronous=NORMAL", NULL, NULL, &emsg) != SQLITE_OK ||
        sqlite3_exec(st->ck_db, "SELECT count(*) FROM sqlite_master", NULL, NULL, &emsg) !=
            SQLITE_OK) {
        sy_error_set(err, "cannot open %s for checkpoints: %s", path,
                     emsg != NULL ? emsg
                     : st->ck_db != NULL ? sqlite3_errmsg(st->ck_db)
                                         : sqlite3_errstr(rc));
        sqlite3_free(emsg);
        goto fail;
    }
    /*
     * Hold at most async_max_held events (and MAX_HELD_BYTES of payload) in memory, the ones
     * due first; park the rest (state 2): the loop reads them back as events finish.
     * Outcomes awaiting delivery (state 1) are always held.
     */
    rc = sqlite3_prepare_v2(
        st->db,
        "UPDATE events SET state=2 WHERE state=0 AND id NOT IN (SELECT id FROM (SELECT id,"
        " sum(length(payload)) OVER w AS cum, row_number() OVER w AS rn FROM events"
        " WHERE state=0 WINDOW w AS (ORDER BY next_ms, enqueued_ms, id ROWS UNBOUNDED"
        " PRECEDING)) WHERE cum <= ?1 AND rn <= ?2)",
        -1, &s, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, (sqlite3_int64)AQ_MAX_HELD_BYTES);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)cfg->broker.async_max_held);
        rc = sqlite3_step(s);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(s);
    s = NULL;
    if (rc != SQLITE_OK) {
        sy_error_set(err, "cannot prepare %s: %s", path, sqlite3_errmsg(st->db));
        goto fail;
    }
    rc = sqlite3_prepare_v2(st->db,
                            "SELECT id, fn, payload, trace_id, enqueued_ms, next_ms, attempts,"
                            " state, outcome, history, rowid FROM events WHERE state IN (0, 1)"
                            " ORDER BY enqueued_ms",
                            -1, &s, NULL);
    if (rc != SQLITE_OK) {
        sy_error_set(err, "cannot read %s: %s", path, sqlite3_errmsg(st->db));
        goto fail;
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            struct aq_row *nr = realloc(out, ncap * sizeof(*nr));

            if (nr == NULL)
                goto nomem;
            out = nr;
            cap = ncap;
        }
        if (row_from_stmt(s, &out[n]) != 0)
            goto nomem;
        n++;
    }
    if (rc != SQLITE_DONE) {
        sy_error_set(err, "cannot read %s: %s", path, sqlite3_errmsg(st->db));
        goto fail;
    }
    sqlite3_finalize(s);
    s = NULL;
    /* From here on the store thread owns the connection (sqlq closes it at destroy). */
    {
        struct sqlq_conf conf = {
            .path = path,
            .db = st->db,
            .tag = "[asyncq] queue.db:",
            .thread = "sy-store", /* top -H, perf */
            .fsync = fsync,
            .retry_ms = STORE_RETRY_MS,
            .before_txn = before_txn,
            .run_writes = run_writes,
            .free_job = free_sj,
            .arg = st,
        };

        st->sq = sqlq_create(&conf, err);
        if (st->sq == NULL)
            goto fail;
    }
    *rows = out;
    *n_rows = n;
    return st;
nomem:
    sy_error_set(err, "out of memory while reading %s", path);
fail:
    sqlite3_finalize(s);
    for (size_t i = 0; i < n; i++)
        aq_row_clear(&out[i]);
    free(out);
    sqlite_destroy(st);
    return NULL;
}

/* ---- the jobs ----------------------------------------------------------------------------- */

static int bind_text(sqlite3_stmt *s, int i, const char *v)
{
    return v != NULL ? sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(s, i);
}

/*
 * The prepared statement for SQL (a string literal: the cache is keyed by its address), reset
 * and with its bindings cleared; NULL when it cannot be prepared (the SQLite code in *RC).
 */
static sqlite3_stmt *stmt_get(struct aq_store *st, const char *sql, int *rc)
{
    sqlite3_stmt *s = NULL;

    for (size_t i = 0; i < st->n_cache; i++) {
        if (st->cache[i].sql == sql) {
            sqlite3_reset(st->cache[i].stmt);
            sqlite3_clear_bindings(st->cache[i].stmt);
            return st->cache[i].stmt;
        }
    }
    *rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    if (*rc != SQLITE_OK)
        return NULL;
    if (st->n_cache < sizeof(st->cache) / sizeof(st->cache[0])) {
        st->cache[st->n_cache].sql = sql;
        st->cache[st->n_cache].stmt = s;
        st->n_cache++;
    }
    return s;
}

/* Done with S from stmt_get(): reset it (cached) or finalize it (not cached). */
static void stmt_put(struct aq_store *st, sqlite3_stmt *s)
{
    for (size_t i = 0; i < st->n_cache; i++) {
        if (st->cache[i].stmt == s) {
            sqlite3_reset(s);
            return;
        }
    }
    sqlite3_finalize(s);
}

/* Run SQL with the binders below; returns an SQLite code. */
static const char sql_insert_event[] =
    "INSERT INTO events(id, fn, payload, trace_id, enqueued_ms, next_ms, attempts,"
    " state, outcome, history) VALUES(?,?,?,?,?,?,?,?,?,?)";
static const char sql_insert_dead[] =
    "INSERT OR REPLACE INTO dead(id, fn, payload, trace_id, enqueued_ms, failed_ms, attempts,"
    " condition, error_type, error_message, history) VALUES(?,?,?,?,?,?,?,?,?,?,?)";

/* Insert R as an event; R->rowid is set to its rowid. */
static int exec_insert_event(struct aq_store *st, struct aq_row *r)
{
    int rc = SQLITE_OK;
    sqlite3_stmt *s = stmt_get(st, sql_insert_event, &rc);

    if (s == NULL)
        return rc;
    bind_text(s, 1, r->id);
    bind_text(s, 2, r->fn);
    sqlite3_bind_blob(s, 3, r->payload, (int)r->len, SQLITE_STATIC);
    bind_text(s, 4, r->trace_id);
    sqlite3_bind_int64(s, 5, r->enqueued_ms);
    sqlite3_bind_int64(s, 6, r->next_ms);
    sqlite3_bind_int(s, 7, r->attempts);
    sqlite3_bind_int(s, 8, r->state);
    bind_text(s, 9, r->outcome);
    bind_text(s, 10, r->history);
    rc = sqlite3_step(s);
    stmt_put(st, s);
    if (rc == SQLITE_DONE)
        r->rowid = sqlite3_last_insert_rowid(st->db);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int exec_dead(struct aq_store *st, const struct aq_row *r, const struct aq_dead *d)
{
    int rc = SQLITE_OK;
    sqlite3_stmt *s = stmt_get(st, sql_insert_dead, &rc);

    if (s == NULL)
        return rc;
    bind_text(s, 1, r->id);
    bind_text(s, 2, r->fn);
    sqlite3_bind_blob(s, 3, r->payload, (int)r->len, SQLITE_STATIC);
    bind_text(s, 4, r->trace_id);
    sqlite3_bind_int64(s, 5, r->enqueued_ms);
    sqlite3_bind_int64(s, 6, d->failed_ms);
    sqlite3_bind_int(s, 7, r->attempts);
    bind_text(s, 8, d->condition);
    bind_text(s, 9, d->error_type);
    bind_text(s, 10, d->error_message);
    bind_text(s, 11, r->history);
    rc = sqlite3_step(s);
    stmt_put(st, s);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* SQL must be a string literal or static array (see stmt_get()). */
static int exec_simple(struct aq_store *st, const char *sql, const struct aq_row *r)
{
    int rc = SQLITE_OK;
    sqlite3_stmt *s = stmt_get(st, sql, &rc);

    if (s == NULL)
        return rc;
    /* Parameters by name: whichever the statement uses. */
    for (int i = 1; i <= sqlite3_bind_parameter_count(s); i++) {
        const char *name = sqlite3_bind_parameter_name(s, i);

        if (name == NULL)
            continue;
        if (strcmp(name, ":id") == 0)
            bind_text(s, i, r->id);
        else if (strcmp(name, ":rowid") == 0)
            sqlite3_bind_int64(s, i, r->rowid);
        else if (strcmp(name, ":next") == 0)
            sqlite3_bind_int64(s, i, r->next_ms);
        else if (strcmp(name, ":attempts") == 0)
            sqlite3_bind_int(s, i, r->attempts);
        else if (strcmp(name, ":history") == 0)
            bind_text(s, i, r->history);
        else if (strcmp(name, ":outcome") == 0)
            bind_text(s, i, r->outcome);
    }
    rc = sqlite3_step(s);
    stmt_put(st, s);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static const char sql_retry[] =
    "UPDATE events SET attempts=:attempts, next_ms=:next, history=:history WHERE rowid=:rowid";
static const char sql_outcome[] = "UPDATE events SET state=1, outcome=:outcome,"
                                  " attempts=:attempts, history=:history WHERE rowid=:rowid";
static const char sql_delete_event[] = "DELETE FROM events WHERE rowid=:rowid";
static const char sql_delete_dead[] = "DELETE FROM dead WHERE id=:id";
static const char sql_unpark[] = "UPDATE events SET state=0 WHERE rowid=:rowid";

/* One write job inside the open transaction. Returns an SQLite code. */
static int run_write(struct aq_store *st, struct aq_job *job)
{
    int rc = SQLITE_OK;

    switch (job->kind) {
    case AQJ_INSERT:
        return exec_insert_event(st, &job->ev);
    case AQJ_RETRY:
        return exec_simple(st, sql_retry, &job->ev);
    case AQJ_OUTCOME:
        rc = exec_simple(st, sql_outcome, &job->ev);
        if (rc == SQLITE_OK && job->dead != NULL)
            rc = exec_dead(st, &job->ev, job->dead);
        return rc;
    case AQJ_DELETE:
        if (job->dead != NULL)
            rc = exec_dead(st, &job->ev, job->dead);
        if (rc == SQLITE_OK)
            rc = exec_simple(st, sql_delete_event, &job->ev);
        return rc;
    default:
        return SQLITE_MISUSE;
    }
}

static int is_write(const struct aq_job *job)
{
    return job->kind == AQJ_INSERT || job->kind == AQJ_RETRY || job->kind == AQJ_OUTCOME ||
           job->kind == AQJ_DELETE;
}

static int is_plain_delete(const struct aq_job *job)
{
    return job->kind == AQJ_DELETE && job->dead == NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

static const char sql_delete_range[] = "DELETE FROM events WHERE rowid BETWEEN ?1 AND ?2";

/*
 * The removals of finished events among WRITES (plain DELETE jobs), by runs of consecutive
 * rowids: events mostly finish in the order they came, so a few range deletes replace many
 * single ones. Inside the open transaction, before the batch's other writes: no job of a batch
 * refers to a row another job of the same batch inserts (an event runs only after its insert is
 * committed), so the order does not matter. Returns an SQLite code.
 */
static int run_deletes(struct aq_store *st, const struct aq_job *writes)
{
    int64_t stack_ids[256], *ids = stack_ids;
    size_t n = 0, cap = sizeof(stack_ids) / sizeof(stack_ids[0]);
    int rc = SQLITE_OK;

    for (const struct aq_job *j = writes; j != NULL; j = j->next)
        n += is_plain_delete(j);
    if (n == 0)
        return SQLITE_OK;
    if (n > cap) {
        ids = malloc(n * sizeof(*ids));
        if (ids == NULL)
            return SQLITE_NOMEM;
    }
    n = 0;
    for (const struct aq_job *j = writes; j != NULL; j = j->next) {
        if (is_plain_delete(j))
            ids[n++] = j->ev.rowid;
    }
    qsort(ids, n, sizeof(*ids), cmp_i64);
    for (size_t i = 0; i < n && rc == SQLITE_OK;) {
        size_t k = i + 1;
        sqlite3_stmt *s;

        while (k < n && ids[k] <= ids[k - 1] + 1)
            k++;
        s = stmt_get(st, sql_delete_range, &rc);
        if (s == NULL)
            break;
        sqlite3_bind_int64(s, 1, ids[i]);
        sqlite3_bind_int64(s, 2, ids[k - 1]);
        rc = sqlite3_step(s);
        stmt_put(st, s);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
        i = k;
    }
    if (ids != stack_ids)
        free(ids);
    return rc;
}

/* The WHERE clause of the DLQ ops, binding FN/ID when given. */
static sqlite3_stmt *dlq_prepare(sqlite3 *db, const char *head, const char *tail,
                                 const struct aq_job *job)
{
    char sql[512];
    sqlite3_stmt *s = NULL;
    int i = 1;

    snprintf(sql, sizeof(sql), "%s WHERE 1%s%s %s", head, job->q_fn ? " AND fn=?" : "",
             job->q_id ? " AND id=?" : "", tail != NULL ? tail : "");
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        return NULL;
    if (job->q_fn != NULL)
        bind_text(s, i++, job->q_fn);
    if (job->q_id != NULL)
        bind_text(s, i++, job->q_id);
    return s;
}

static json_t *iso_ms(int64_t ms)
{
    char buf[40];

    time_iso8601(buf, (uint64_t)ms);
    return json_string(buf);
}

static json_t *col_json_str(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);

    return t != NULL ? json_string((const char *)t) : json_null();
}

static int count_dead(sqlite3 *db, const struct aq_job *job, json_int_t *out)
{
    sqlite3_stmt *s = dlq_prepare(db, "SELECT count(*) FROM dead", NULL, job);
    int rc;

    if (s == NULL)
        return SQLITE_ERROR;
    rc = sqlite3_step(s);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* A read or DLQ job (own transaction where it writes). Returns an SQLite code. */
static int run_other(struct aq_store *st, struct aq_job *job)
{
    sqlite3 *db = st->db;
    sqlite3_stmt *s = NULL;
    json_int_t total = 0;
    int rc;

    switch (job->kind) {
    case AQJ_DLQ_COUNT:
        rc = count_dead(db, job, &total);
        job->result = json_pack("{s:I}", "total", total);
        return rc;
    case AQJ_DLQ_LIST: {
        json_t *arr = json_array();

        rc = count_dead(db, job, &total);
        if (rc != SQLITE_OK) {
            json_decref(arr);
            return rc;
        }
        s = dlq_prepare(db,
                        "SELECT id, fn, condition, attempts, enqueued_ms, failed_ms, error_type,"
                        " error_message FROM dead",
                        "ORDER BY failed_ms, id LIMIT ?", job);
        if (s == NULL) {
            json_decref(arr);
            return SQLITE_ERROR;
        }
        sqlite3_bind_int64(s, sqlite3_bind_parameter_count(s), (sqlite3_int64)job->limit);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            json_array_append_new(
                arr, json_pack("{s:o,s:o,s:o,s:i,s:o,s:o,s:o,s:o}", "id", col_json_str(s, 0),
                               "function", col_json_str(s, 1), "condition", col_json_str(s, 2),
                               "attempts", sqlite3_column_int(s, 3), "enqueued_at",
                               iso_ms(sqlite3_column_int64(s, 4)), "failed_at",
                               iso_ms(sqlite3_column_int64(s, 5)), "error_type",
                               col_json_str(s, 6), "error_message", col_json_str(s, 7)));
        }
        sqlite3_finalize(s);
        job->result = json_pack("{s:o,s:I}", "dead_letters", arr, "total", total);
        return rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    case AQJ_DLQ_SHOW: {
        s = dlq_prepare(db,
                        "SELECT id, fn, condition, attempts, enqueued_ms, failed_ms, error_type,"
                        " error_message, payload, history, trace_id FROM dead",
                        NULL, job);
        if (s == NULL)
            return SQLITE_ERROR;
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            const char *p = sqlite3_column_blob(s, 8);
            int plen = sqlite3_column_bytes(s, 8);
            const unsigned char *h = sqlite3_column_text(s, 9);
            json_t *payload = p != NULL ? json_loadb(p, (size_t)plen, JSON_DECODE_ANY, NULL)
                                        : NULL;
            json_t *hist = h != NULL ? json_loads((const char *)h, 0, NULL) : NULL;

            job->result = json_pack(
                "{s:o,s:o,s:o,s:i,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "id", col_json_str(s, 0),
                "function", col_json_str(s, 1), "condition", col_json_str(s, 2), "attempts",
                sqlite3_column_int(s, 3), "enqueued_at", iso_ms(sqlite3_column_int64(s, 4)),
                "failed_at", iso_ms(sqlite3_column_int64(s, 5)), "error_type",
                col_json_str(s, 6), "error_message", col_json_str(s, 7), "payload",
                payload != NULL ? payload : json_null(), "history",
                hist != NULL ? hist : json_array(), "trace_id", col_json_str(s, 10));
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            job->rc = SY_ENOENT;
            snprintf(job->errmsg, sizeof(job->errmsg), "no dead letter with id %s",
                     job->q_id ? job->q_id : "?");
            rc = SQLITE_OK;
        }
        sqlite3_finalize(s);
        return rc;
    }
    case AQJ_DLQ_PURGE:
        rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            return rc;
        s = dlq_prepare(db, "DELETE FROM dead", NULL, job);
        rc = s != NULL ? sqlite3_step(s) : SQLITE_ERROR;
        sqlite3_finalize(s);
        if (rc != SQLITE_DONE) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
        total = sqlite3_changes(db);
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
        job->result = json_pack("{s:I}", "purged", total);
        return SQLITE_OK;
    case AQJ_REFILL: {
        size_t bytes = 0;
        json_int_t more = 0;

        rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            return rc;
        rc = sqlite3_prepare_v2(db,
                                "SELECT id, fn, payload, trace_id, enqueued_ms, next_ms, attempts,"
                                " state, outcome, history, rowid FROM events WHERE state=2"
                                " ORDER BY next_ms, enqueued_ms, id LIMIT ?",
                                -1, &s, NULL);
        if (rc != SQLITE_OK)
            goto refill_fail;
        sqlite3_bind_int64(s, 1, (sqlite3_int64)job->limit);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            struct aq_row *r;

            if (job->n_rows > 0 && bytes + (size_t)sqlite3_column_bytes(s, 2) > job->bytes) {
                rc = SQLITE_DONE;
                break;
            }
            if (job->n_rows % 64 == 0) {
                struct aq_row *nr = realloc(job->rows, (job->n_rows + 64) * sizeof(*nr));

                if (nr == NULL) {
                    rc = SQLITE_NOMEM;
                    break;
                }
                job->rows = nr;
            }
            r = &job->rows[job->n_rows];
            if (row_from_stmt(s, r) != 0) {
                rc = SQLITE_NOMEM;
                break;
            }
            job->n_rows++;
            bytes += r->len;
            r->state = 0;
            if (exec_simple(st, sql_unpark, r) != SQLITE_OK) {
                rc = sqlite3_errcode(db);
                break;
            }
        }
        sqlite3_finalize(s);
        s = NULL;
        if (rc != SQLITE_DONE)
            goto refill_fail;
        s = NULL;
        rc = sqlite3_prepare_v2(db, "SELECT count(*) FROM events WHERE state=2", -1, &s, NULL);
        if (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
            more = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
        s = NULL;
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            goto refill_fail;
        job->result = json_pack("{s:I,s:I}", "refilled", (json_int_t)job->n_rows, "parked", more);
        return SQLITE_OK;
refill_fail:
        sqlite3_finalize(s);
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        for (size_t i = 0; i < job->n_rows; i++)
            aq_row_clear(&job->rows[i]);
        job->n_rows = 0;
        return rc != SQLITE_OK ? rc : SQLITE_ERROR;
    }
    case AQJ_DLQ_REDRIVE: {
        int64_t now = (int64_t)time_wall_ms();

        rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            return rc;
        s = dlq_prepare(db, "SELECT id, fn, payload, trace_id FROM dead",
                        "ORDER BY failed_ms, id LIMIT ?", job);
        if (s == NULL) {
            rc = SQLITE_ERROR;
            goto redrive_fail;
        }
        sqlite3_bind_int64(s, sqlite3_bind_parameter_count(s), (sqlite3_int64)job->limit);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            struct aq_row *r;
            const void *p = sqlite3_column_blob(s, 2);
            int plen = sqlite3_column_bytes(s, 2);

            if (job->n_rows % 64 == 0) {
                struct aq_row *nr = realloc(job->rows, (job->n_rows + 64) * sizeof(*nr));

                if (nr == NULL) {
                    rc = SQLITE_NOMEM;
                    break;
                }
                job->rows = nr;
            }
            r = &job->rows[job->n_rows];
            memset(r, 0, sizeof(*r));
            snprintf(r->id, sizeof(r->id), "%s", (const char *)sqlite3_column_text(s, 0));
            r->fn = col_text(s, 1);
            r->payload = malloc((size_t)plen + 1);
            r->trace_id = col_text(s, 3);
            if (r->fn == NULL || r->payload == NULL) {
                aq_row_clear(r);
                rc = SQLITE_NOMEM;
                break;
            }
            if (plen > 0)
                memcpy(r->payload, p, (size_t)plen);
            r->payload[plen] = '\0';
            r->len = (size_t)plen;
            r->enqueued_ms = now;
            r->next_ms = now;
            r->state = 2; /* parked: the loop reads redriven events back like any backlog */
            job->n_rows++;
            if (exec_insert_event(st, r) != SQLITE_OK ||
                exec_simple(st, sql_delete_dead, r) != SQLITE_OK) {
                rc = sqlite3_errcode(db);
                break;
            }
        }
        sqlite3_finalize(s);
        s = NULL;
        if (rc != SQLITE_DONE)
            goto redrive_fail;
        rc = count_dead(db, job, &total);
        if (rc != SQLITE_OK)
            goto redrive_fail;
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            goto redrive_fail;
        job->result = json_pack("{s:I,s:I}", "redriven", (json_int_t)job->n_rows, "remaining",
                                total);
        for (size_t i = 0; i < job->n_rows; i++)
            aq_row_clear(&job->rows[i]);
        job->n_rows = 0;
        return SQLITE_OK;
redrive_fail:
        sqlite3_finalize(s);
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        for (size_t i = 0; i < job->n_rows; i++)
            aq_row_clear(&job->rows[i]);
        job->n_rows = 0;
        return rc != SQLITE_OK ? rc : SQLITE_ERROR;
    }
    default:
        return SQLITE_MISUSE;
    }
}

/* ---- the thread (core/sqlq.c) --------------------------------------------------------------- */

#define AQ_OF(sjp) ((struct aq_job *)((char *)(sjp)-offsetof(struct aq_job, sj)))

/* The aq_jobs of the sqlq list SJ, linked by their own ->next in the same order (store thread:
 * while the store holds them, their ->next is free). */
static struct aq_job *aq_list(struct sqlq_job *sj)
{
    struct aq_job *head = NULL, **tail = &head;

    for (; sj != NULL; sj = sj->next) {
        struct aq_job *j = AQ_OF(sj);

        j->next = NULL;
        *tail = j;
        tail = &j->next;
    }
    return head;
}

/*
 * durability: fsync promises only what a 202 promised: a transaction with a new event is
 * fsynced (synchronous=FULL); one with only retries, outcomes and removals is not (NORMAL): it
 * becomes durable with the next fsynced commit, as the WAL is synced in order, and losing it to
 * a power cut only runs an event again (at-least-once). Before BEGIN: a transaction cannot
 * change it.
 */
static void before_txn(struct sqlq *q, sqlite3 *db, struct sqlq_job *writes, void *arg)
{
    struct aq_store *st = arg;
    int want_full = 0;

    (void)q;
    if (!st->fsync)
        return;
    for (struct sqlq_job *sj = writes; sj != NULL; sj = sj->next)
        want_full |= AQ_OF(sj)->kind == AQJ_INSERT;
    if (want_full != st->full_now &&
        sqlite3_exec(db, want_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                     NULL, NULL, NULL) == SQLITE_OK)
        st->full_now = want_full;
}

/* Every write job of the transaction: the plain deletes merged, then the others in order. */
static int run_writes(struct sqlq *q, sqlite3 *db, struct sqlq_job *writes, void *arg)
{
    struct aq_store *st = arg;
    struct aq_job *list = aq_list(writes);
    int rc = run_deletes(st, list);

    (void)q;
    (void)db;
    for (struct aq_job *j = list; j != NULL && rc == SQLITE_OK; j = j->next) {
        if (!is_plain_delete(j))
            rc = run_write(st, j);
    }
    return rc;
}

/* A job outside the write transaction (dead-letter reads and changes, refills). */
static int run_read(struct sqlq *q, sqlite3 *db, struct sqlq_job *sj, void *arg)
{
    (void)q;
    (void)db;
    return run_other(arg, AQ_OF(sj));
}

static void free_sj(struct sqlq_job *sj, void *arg)
{
    (void)arg;
    aq_job_free(AQ_OF(sj));
}

static int sqlite_start(struct aq_store *st, int notify_fd, struct sy_error *err)
{
    int rc = pthread_create(&st->ck_thread, NULL, ckpt_main, st);

    if (rc != 0) {
        sy_error_set(err, "cannot start the checkpoint thread: %s", strerror(rc));
        return SY_EIO;
    }
    st->ck_started = 1;
    return sqlq_start(st->sq, notify_fd, err);
}

static void sqlite_submit(struct aq_store *st, struct aq_job *job)
{
    struct sqlq_job *head = NULL, **tail = &head;

    while (job != NULL) {
        struct aq_job *next = job->next;

        job->next = NULL;
        job->sj.next = NULL;
        job->sj.flags = 0;
        if (is_write(job))
            job->sj.flags = SQLQ_WRITE | (job->kind == AQJ_INSERT ? SQLQ_MAY_FAIL : 0u);
        job->sj.run = run_read; /* writes go through run_writes() */
        *tail = &job->sj;
        tail = &job->sj.next;
        job = next;
    }
    if (head != NULL)
        sqlq_submit(st->sq, head);
}

/* The finished jobs, with sqlq's result turned into the job's (asyncq_int.h's contract). */
static struct aq_job *sqlite_take_done(struct aq_store *st)
{
    struct sqlq_job *done = sqlq_take_done(st->sq);
    struct aq_job *head = aq_list(done);

    for (struct aq_job *j = head; j != NULL; j = j->next) {
        if (j->sj.rc == 0 || j->rc != 0)
            continue;
        if (j->kind == AQJ_INSERT) {
            j->rc = j->sj.rc;
            snprintf(j->errmsg, sizeof(j->errmsg),
                     "cannot store the event: %.200s; nothing was queued", j->sj.errmsg);
        } else if (!is_write(j)) {
            j->rc = j->sj.rc;
            snprintf(j->errmsg, sizeof(j->errmsg), "dead-letter store: %.200s", j->sj.errmsg);
        } else {
            /* A change given up on at shutdown (the disk kept failing): the event runs again
             * after the restart (at-least-once); the job itself reports no error. */
            log_err("[asyncq] giving up on store writes at shutdown; the affected events run "
                    "again after the restart (at-least-once)");
        }
    }
    return head;
}

static void sqlite_stop(struct aq_store *st, int timeout_ms)
{
    if (st == NULL || st->sq == NULL)
        return;
    sqlq_stop(st->sq, timeout_ms);
    ckpt_stop(st);
}

static void sqlite_destroy(struct aq_store *st)
{
    if (st == NULL)
        return;
    ckpt_stop(st); /* normally stopped by sqlite_stop() already */
    sqlq_stop(st->sq, 0);
    /* Our statements before the connection goes (sqlq closes it); the checkpointer's
     * connection first: closing the last one checkpoints and removes the WAL. */
    for (size_t i = 0; i < st->n_cache; i++)
        sqlite3_finalize(st->cache[i].stmt);
    if (st->ck_db != NULL)
        sqlite3_close(st->ck_db);
    if (st->sq != NULL)
        sqlq_destroy(st->sq); /* frees the jobs never taken back, closes st->db */
    else if (st->db != NULL)
        sqlite3_close(st->db);
    if (st->lock_fd >= 0)
        close(st->lock_fd); /* releases the flock */
    pthread_mutex_destroy(&st->ck_mu);
    pthread_cond_destroy(&st->ck_cv);
    pthread_cond_destroy(&st->ck_idle_cv);
    st->magic = 0;
    free(st);
}

const struct aq_store_ops aq_sqlite_ops = {
    .name = "sqlite",
    .intake = 0,
    .parking = 1,
    .open = sqlite_open,
    .start = sqlite_start,
    .submit = sqlite_submit,
    .take_done = sqlite_take_done,
    .note_held = NULL,
    .stop = sqlite_stop,
    .destroy = sqlite_destroy,
};
