/*
 * core/sqlq.h - one SQLite database (WAL) on a thread of its own, fed with jobs: the durable
 * store machinery of the broker, independent of what is stored.
 *
 * The loop fills a job (a `struct sqlq_job` embedded in a struct of the caller's) and hands it
 * over with sqlq_submit(); the store thread runs every WRITE job it finds waiting in ONE
 * transaction (group commit: whatever arrived while the previous commit ran goes into the
 * next), sets job->rc and hands the job back; the loop takes finished jobs with
 * sqlq_take_done() after the eventfd given to sqlq_start() became readable. Jobs without
 * SQLQ_WRITE (reads) run one by one outside the write transaction.
 *
 * Failures (a full disk, an I/O error, a database that cannot be opened): the transaction is
 * rolled back; write jobs whose owner said they may fail (SQLQ_MAY_FAIL: a promise not made
 * yet, such as an insert whose caller can still answer "not stored") come back with rc set;
 * every other write job is kept by the store thread and run again after RETRY_MS, for as long
 * as it takes, so a recorded change is never lost while the process runs. While transactions
 * fail, sqlq_health() says so (and the loop is woken when that changes), so the owner can show
 * the state and stop making promises; the first transaction that succeeds clears it.
 *
 * Durability: journal_mode=WAL with synchronous=NORMAL survives kill -9 (a commit is in the
 * WAL, in the page cache, before the job comes back); FSYNC (synchronous=FULL) survives a
 * power cut. SQLite's automatic checkpoints run on the store thread.
 *
 * Threads: sqlq_create/start/submit/take_done/health/stop/destroy are called from the owner's
 * (loop) thread; sqlq_submit() and sqlq_health() are also safe from any thread. A job's run()
 * and sqlq_stmt() run on the store thread only. The database is opened by the store thread
 * (so no file I/O happens on the caller's thread).
 *
 * Ownership: a submitted job belongs to the store until it comes back from sqlq_take_done();
 * the store never frees a job (jobs still inside at sqlq_destroy() are handed to the owner's
 * free function).
 */
#ifndef SY_CORE_SQLQ_H
#define SY_CORE_SQLQ_H

#include <stddef.h>
#include <stdint.h>

#include "core/errors.h"

struct sqlite3;
struct sqlite3_stmt;
struct sqlq;
struct sqlq_job;

/* Job flags. */
#define SQLQ_WRITE 0x1u /* part of the group transaction */
#define SQLQ_MAY_FAIL                                                                              \
    0x2u /* a write that comes back with rc set when its transaction fails                         \
            (instead of being retried) */

/*
 * Store thread: run JOB's statements on DB (inside the open transaction for a write job).
 * Returns SQLITE_OK or an SQLite result code (a write's failure rolls the transaction back).
 */
typedef int sqlq_run_fn(struct sqlq *q, struct sqlite3 *db, struct sqlq_job *job, void *arg);

/* Frees a job the owner never took back (sqlq_destroy()). */
typedef void sqlq_free_fn(struct sqlq_job *job, void *arg);

struct sqlq_job {
    struct sqlq_job *next;
    unsigned flags; /* SQLQ_* */
    sqlq_run_fn *run;
    /* results (set by the store thread) */
    int rc; /* 0 or SY_E* */
    char errmsg[256];
};

/*
 * Optional, store thread: the write jobs (linked by ->next) of the transaction about to begin,
 * before BEGIN (what cannot change inside a transaction, e.g. PRAGMA synchronous).
 */
typedef void sqlq_before_fn(struct sqlq *q, struct sqlite3 *db, struct sqlq_job *writes, void *arg);

/*
 * Optional, store thread: run every write job of the open transaction at once (instead of each
 * job's run()), e.g. to merge their deletes. Returns SQLITE_OK or the failing code.
 */
typedef int sqlq_writes_fn(struct sqlq *q, struct sqlite3 *db, struct sqlq_job *writes, void *arg);

struct sqlq_conf {
    const char *path;   /* the database file (borrowed for the call; for logs when DB is set) */
    const char *schema; /* SQL run once after opening (CREATE TABLE IF NOT EXISTS ...) */
    struct sqlite3 *db; /* optional: a connection the owner opened and set up (its VFS, pragmas,
                           schema, hooks); the store takes it over (closed by sqlq_destroy())
                           and neither opens nor sets up one of its own */
    sqlq_before_fn *before_txn; /* optional */
    sqlq_writes_fn *run_writes; /* optional */
    const char *tag;    /* for log lines ("[source:mqtt:orders] spool"); borrowed for life */
    const char *thread; /* the thread's name (at most 15 bytes), e.g. "sy-spool" */
    int fsync;          /* 1: synchronous=FULL (power loss), 0: NORMAL (kill -9) */
    int retry_ms;       /* failed transactions (and a failed open) are retried after this */
    sqlq_free_fn *free_job;
    void *arg; /* handed to run() and free_job() */
};

/* Allocate (no I/O, no thread). Returns new (sqlq_destroy()) or NULL with ERR filled. */
struct sqlq *sqlq_create(const struct sqlq_conf *conf, struct sy_error *err);

/*
 * Start the store thread: it opens the database (retrying every retry_ms while it cannot) and
 * runs jobs. Finished jobs and health changes write NOTIFY_FD (an eventfd of the caller's
 * loop; read it BEFORE sqlq_take_done()). Returns 0 or SY_EIO with ERR filled.
 */
int sqlq_start(struct sqlq *q, int notify_fd, struct sy_error *err);

/* Hand JOB over (and the jobs linked after it by ->next). Any thread. */
void sqlq_submit(struct sqlq *q, struct sqlq_job *job);

/* The finished jobs in completion order (linked by ->next), or NULL. */
struct sqlq_job *sqlq_take_done(struct sqlq *q);

/*
 * 0 while the last transaction (or the open) succeeded, else the SY_E* of the failure
 * (SY_ENOSPC for a full disk) with WHY (WHYSZ bytes, may be NULL) describing it. Any thread.
 */
int sqlq_health(struct sqlq *q, char *why, size_t whysz);

/* Write jobs waiting in the store (submitted, not yet handed back). Any thread. */
size_t sqlq_pending(struct sqlq *q);

/*
 * Run what is queued, then stop the thread. While transactions keep failing, gives up after
 * TIMEOUT_MS: the jobs it still holds come back with rc SY_ECANCELED. Finished jobs stay for
 * one last sqlq_take_done(). No-op when not started.
 */
void sqlq_stop(struct sqlq *q, int timeout_ms);

/* Stop (if needed, with no wait for failing writes), free every job still inside with
 * free_job(), close the database, free Q. NULL is a no-op. */
void sqlq_destroy(struct sqlq *q);

/*
 * Store thread: the prepared statement for SQL (a static string: cached by its address),
 * reset and with its bindings cleared. Returns NULL with *RC set on failure.
 */
struct sqlite3_stmt *sqlq_stmt(struct sqlq *q, const char *sql, int *rc);

/* SY_E* for an SQLite result code (SQLITE_FULL: SY_ENOSPC). */
int sqlq_to_sy(int sqlite_rc);

#endif
