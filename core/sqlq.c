/*
 * core/sqlq.c - the SQLite store thread: mailbox, group commit, retry of failed transactions
 * (see sqlq.h).
 *
 * Threads: the owner's thread submits and takes jobs; the store thread `conf.thread` owns the
 * connection and runs the jobs. MU guards the two job lists, the flags and the health.
 */
#include "core/sqlq.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "core/log.h"
#include "core/time.h"

#define SQLQ_MAGIC 0x53514c51u /* "SQLQ" */
#define SQLQ_CACHE 16          /* prepared statements kept */

struct sqlq {
    unsigned magic;
    struct sqlq_conf conf; /* strings: path copied, the rest borrowed */
    char *path;
    char *tag;
    sqlite3 *db; /* the store thread's */
    struct {
        const char *sql;
        sqlite3_stmt *stmt;
    } cache[SQLQ_CACHE];
    size_t n_cache;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct sqlq_job *in_head, *in_tail;     /* MU: submitted, not yet taken by the thread */
    struct sqlq_job *done_head, *done_tail; /* MU: finished, for the owner */
    size_t pending;                         /* MU: submitted and not handed back */
    int health;                             /* MU: 0 or SY_E* of the last failure */
    char why[256];                          /* MU */
    int stopping;                           /* MU */
    int64_t stop_deadline_ms;               /* MU */
    int notify_fd;
    pthread_t thread;
    int started;
};

int sqlq_to_sy(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_FULL:
        return SY_ENOSPC;
    case SQLITE_NOMEM:
        return SY_ENOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return SY_EBUSY;
    default:
        return SY_EIO;
    }
}

struct sqlq *sqlq_create(const struct sqlq_conf *conf, struct sy_error *err)
{
    struct sqlq *q = calloc(1, sizeof(*q));

    if (q == NULL) {
        sy_error_set(err, "out of memory");
        return NULL;
    }
    q->magic = SQLQ_MAGIC;
    q->conf = *conf;
    q->path = strdup(conf->path);
    q->tag = strdup(conf->tag != NULL ? conf->tag : "[sqlq]");
    if (q->path == NULL || q->tag == NULL) {
        free(q->path);
        free(q->tag);
        free(q);
        sy_error_set(err, "out of memory");
        return NULL;
    }
    q->conf.path = q->path;
    q->conf.tag = q->tag;
    q->db = conf->db; /* taken over (may be NULL: opened by the thread) */
    if (q->conf.retry_ms <= 0)
        q->conf.retry_ms = 1000;
    q->notify_fd = -1;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    return q;
}

/* Wake the owner's loop (an eventfd: the write fails only on overflow, which cannot happen). */
static void wake(struct sqlq *q)
{
    uint64_t one = 1;

    if (q->notify_fd >= 0 && write(q->notify_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_err("%s cannot wake the loop: %s", q->tag, strerror(errno));
}

/* Append the list HEAD to the done list and wake the owner. */
static void hand_back(struct sqlq *q, struct sqlq_job *head)
{
    struct sqlq_job *tail = head;
    size_t n = 0;
    int was_empty;

    if (head == NULL)
        return;
    for (n = 1; tail->next != NULL; n++)
        tail = tail->next;
    pthread_mutex_lock(&q->mu);
    was_empty = q->done_head == NULL;
    if (q->done_tail != NULL)
        q->done_tail->next = head;
    else
        q->done_head = head;
    q->done_tail = tail;
    q->pending -= n;
    pthread_mutex_unlock(&q->mu);
    /* A non-empty done list has been announced already and the owner reads the eventfd before
     * it takes the list, so that announcement covers these jobs too. */
    if (was_empty)
        wake(q);
}

/* Record the outcome of the last transaction (or open); wake the owner when it changed. */
static void set_health(struct sqlq *q, int rc, const char *why)
{
    int changed;

    pthread_mutex_lock(&q->mu);
    changed = q->health != rc;
    q->health = rc;
    snprintf(q->why, sizeof(q->why), "%s", why != NULL ? why : "");
    pthread_mutex_unlock(&q->mu);
    if (changed) {
        if (rc != 0)
            log_err("%s %s; writes are kept and retried every %d ms", q->tag, why,
                    q->conf.retry_ms);
        else
            log_info("%s writes succeed again", q->tag);
        wake(q);
    }
}

int sqlq_health(struct sqlq *q, char *why, size_t whysz)
{
    int rc;

    pthread_mutex_lock(&q->mu);
    rc = q->health;
    if (why != NULL && whysz > 0)
        snprintf(why, whysz, "%s", q->why);
    pthread_mutex_unlock(&q->mu);
    return rc;
}

size_t sqlq_pending(struct sqlq *q)
{
    size_t n;

    pthread_mutex_lock(&q->mu);
    n = q->pending;
    pthread_mutex_unlock(&q->mu);
    return n;
}

sqlite3_stmt *sqlq_stmt(struct sqlq *q, const char *sql, int *rc)
{
    sqlite3_stmt *s = NULL;

    for (size_t i = 0; i < q->n_cache; i++) {
        if (q->cache[i].sql == sql) {
            sqlite3_reset(q->cache[i].stmt);
            sqlite3_clear_bindings(q->cache[i].stmt);
            return q->cache[i].stmt;
        }
    }
    *rc = sqlite3_prepare_v2(q->db, sql, -1, &s, NULL);
    if (*rc != SQLITE_OK)
        return NULL;
    if (q->n_cache < SQLQ_CACHE) {
        q->cache[q->n_cache].sql = sql;
        q->cache[q->n_cache].stmt = s;
        q->n_cache++;
        return s;
    }
    /* The cache is full: a caller with more statements than SQLQ_CACHE is a bug of ours. */
    sqlite3_finalize(s);
    *rc = SQLITE_INTERNAL;
    return NULL;
}

static void db_close(struct sqlq *q)
{
    for (size_t i = 0; i < q->n_cache; i++)
        sqlite3_finalize(q->cache[i].stmt);
    q->n_cache = 0;
    if (q->db != NULL)
        sqlite3_close(q->db);
    q->db = NULL;
}

/* Open the database and create the schema. SQLITE_OK or an SQLite code (WHY filled). */
static int db_open(struct sqlq *q, char *why, size_t whysz)
{
    char pragmas[128];
    int rc;

    rc = sqlite3_open_v2(q->path, &q->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        snprintf(pragmas, sizeof(pragmas),
                 "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA busy_timeout=5000;",
                 q->conf.fsync ? "FULL" : "NORMAL");
        rc = sqlite3_exec(q->db, pragmas, NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK && q->conf.schema != NULL)
        rc = sqlite3_exec(q->db, q->conf.schema, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        snprintf(why, whysz, "cannot open %s: %s", q->path,
                 q->db != NULL ? sqlite3_errmsg(q->db) : sqlite3_errstr(rc));
        db_close(q);
    }
    return rc;
}

static int exec_plain(struct sqlq *q, const char *sql)
{
    int rc;
    sqlite3_stmt *s = sqlq_stmt(q, sql, &rc);

    if (s == NULL)
        return rc;
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static const char sql_begin[] = "BEGIN IMMEDIATE";
static const char sql_commit[] = "COMMIT";

/*
 * Run one batch: every write job in one transaction, then the reads one by one. Write jobs that
 * must not fail come back in *RETRY when the transaction failed (or the database is not open).
 */
static void run_batch(struct sqlq *q, struct sqlq_job *batch, struct sqlq_job **retry)
{
    struct sqlq_job *writes = NULL, **wtail = &writes, *reads = NULL, **rtail = &reads;
    struct sqlq_job *done = NULL, **dtail = &done, **ktail = retry;
    char why[256] = "";
    int rc = SQLITE_OK;

    *retry = NULL;
    while (batch != NULL) {
        struct sqlq_job *j = batch;

        batch = j->next;
        j->next = NULL;
        j->rc = 0;
        j->errmsg[0] = '\0';
        if (j->flags & SQLQ_WRITE) {
            *wtail = j;
            wtail = &j->next;
        } else {
            *rtail = j;
            rtail = &j->next;
        }
    }
    if (q->db == NULL)
        rc = db_open(q, why, sizeof(why));
    if (rc == SQLITE_OK && writes != NULL) {
        if (q->conf.before_txn != NULL)
            q->conf.before_txn(q, q->db, writes, q->conf.arg);
        rc = exec_plain(q, sql_begin);
        if (rc == SQLITE_OK && q->conf.run_writes != NULL)
            rc = q->conf.run_writes(q, q->db, writes, q->conf.arg);
        for (struct sqlq_job *j = writes;
             q->conf.run_writes == NULL && j != NULL && rc == SQLITE_OK; j = j->next)
            rc = j->run(q, q->db, j, q->conf.arg);
        if (rc == SQLITE_OK)
            rc = exec_plain(q, sql_commit);
        if (rc != SQLITE_OK) {
            /* A run() may fail without SQLite knowing (errmsg "not an error"): say RC then. */
            snprintf(why, sizeof(why), "transaction failed: %s",
                     sqlite3_errcode(q->db) != SQLITE_OK ? sqlite3_errmsg(q->db)
                                                         : sqlite3_errstr(rc));
            sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
        }
    }
    if (rc != SQLITE_OK) {
        /* Nothing of the batch's writes is stored: hand back what may fail, keep the rest. */
        while (writes != NULL) {
            struct sqlq_job *j = writes;

            writes = j->next;
            j->next = NULL;
            if (j->flags & SQLQ_MAY_FAIL) {
                j->rc = sqlq_to_sy(rc);
                snprintf(j->errmsg, sizeof(j->errmsg), "%s", why);
                *dtail = j;
                dtail = &j->next;
            } else {
                *ktail = j;
                ktail = &j->next;
            }
        }
        set_health(q, sqlq_to_sy(rc), why);
    } else {
        if (writes != NULL || q->db != NULL)
            set_health(q, 0, NULL);
        *dtail = writes;
        while (*dtail != NULL)
            dtail = &(*dtail)->next;
    }
    for (struct sqlq_job *j = reads; j != NULL;) {
        struct sqlq_job *next = j->next;

        j->next = NULL;
        rc = q->db != NULL ? j->run(q, q->db, j, q->conf.arg) : SQLITE_CANTOPEN;
        if (rc != SQLITE_OK && j->rc == 0) {
            j->rc = sqlq_to_sy(rc);
            snprintf(j->errmsg, sizeof(j->errmsg), "%s",
                     q->db != NULL ? sqlite3_errmsg(q->db) : why);
        }
        *dtail = j;
        dtail = &j->next;
        j = next;
    }
    hand_back(q, done);
}

static void *store_main(void *arg)
{
    struct sqlq *q = arg;
    struct sqlq_job *retry = NULL;

    pthread_setname_np(pthread_self(), q->conf.thread != NULL ? q->conf.thread : "sy-sqlq");
    for (;;) {
        struct sqlq_job *batch;

        pthread_mutex_lock(&q->mu);
        if (retry != NULL) {
            /* The disk failed: wait a little (or until asked to stop) before trying again. */
            struct timespec until;

            time_deadline(&until, CLOCK_REALTIME, (unsigned)q->conf.retry_ms);
            if (!q->stopping)
                pthread_cond_timedwait(&q->cv, &q->mu, &until);
            if (q->stopping && time_mono_ms() > q->stop_deadline_ms) {
                pthread_mutex_unlock(&q->mu);
                log_err("%s giving up on writes that keep failing at shutdown", q->tag);
                for (struct sqlq_job *j = retry; j != NULL; j = j->next) {
                    j->rc = SY_ECANCELED;
                    snprintf(j->errmsg, sizeof(j->errmsg), "not stored: shutting down");
                }
                hand_back(q, retry);
                retry = NULL;
                pthread_mutex_lock(&q->mu);
            }
        } else {
            while (q->in_head == NULL && !q->stopping)
                pthread_cond_wait(&q->cv, &q->mu);
        }
        batch = q->in_head;
        q->in_head = q->in_tail = NULL;
        if (batch == NULL && retry == NULL && q->stopping) {
            pthread_mutex_unlock(&q->mu);
            break;
        }
        pthread_mutex_unlock(&q->mu);
        /* Retried jobs first: they were submitted earlier. */
        if (retry != NULL) {
            struct sqlq_job *t = retry;

            while (t->next != NULL)
                t = t->next;
            t->next = batch;
            batch = retry;
        }
        run_batch(q, batch, &retry);
    }
    /* The connection stays open until sqlq_destroy(): the owner may still finalize statements
     * of its own on it (after the thread is gone). */
    return NULL;
}

int sqlq_start(struct sqlq *q, int notify_fd, struct sy_error *err)
{
    int rc;

    q->notify_fd = notify_fd;
    rc = pthread_create(&q->thread, NULL, store_main, q);
    if (rc != 0) {
        sy_error_set(err, "cannot start the store thread: %s", strerror(rc));
        return SY_EIO;
    }
    q->started = 1;
    return 0;
}

void sqlq_submit(struct sqlq *q, struct sqlq_job *job)
{
    struct sqlq_job *tail = job;
    size_t n;

    for (n = 1; tail->next != NULL; n++)
        tail = tail->next;
    pthread_mutex_lock(&q->mu);
    if (q->in_tail != NULL)
        q->in_tail->next = job;
    else
        q->in_head = job;
    q->in_tail = tail;
    q->pending += n;
    pthread_mutex_unlock(&q->mu);
    /* Signalled after unlocking: the woken thread does not block on the mutex we held. */
    pthread_cond_signal(&q->cv);
}

struct sqlq_job *sqlq_take_done(struct sqlq *q)
{
    struct sqlq_job *head;

    pthread_mutex_lock(&q->mu);
    head = q->done_head;
    q->done_head = q->done_tail = NULL;
    pthread_mutex_unlock(&q->mu);
    return head;
}

void sqlq_stop(struct sqlq *q, int timeout_ms)
{
    if (q == NULL || !q->started)
        return;
    pthread_mutex_lock(&q->mu);
    q->stopping = 1;
    q->stop_deadline_ms = time_mono_ms() + timeout_ms;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->thread, NULL);
    q->started = 0;
}

static void free_list(struct sqlq *q, struct sqlq_job *head)
{
    while (head != NULL) {
        struct sqlq_job *next = head->next;

        head->next = NULL;
        if (q->conf.free_job != NULL)
            q->conf.free_job(head, q->conf.arg);
        head = next;
    }
}

void sqlq_destroy(struct sqlq *q)
{
    if (q == NULL)
        return;
    SY_ASSERT(q->magic == SQLQ_MAGIC);
    sqlq_stop(q, 0);
    db_close(q);
    free_list(q, q->in_head);
    free_list(q, q->done_head);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q->path);
    free(q->tag);
    q->magic = 0;
    free(q);
}
