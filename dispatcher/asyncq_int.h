/*
 * dispatcher/asyncq_int.h - between the async queue (asyncq.c, loop thread) and its store
 * (asyncq_store.c, the store thread). Never included outside dispatcher/.
 *
 * The store is a job queue: the loop fills a `struct aq_job` (which owns copies of everything
 * it carries), hands it over with aq_store_submit() and forgets it; the store thread runs every
 * write job it finds in ONE transaction (group commit: whatever arrived while the previous
 * commit ran goes into the next), sets job->rc, and hands the job back; the loop runs
 * job->complete() and frees it with aq_job_free(). Read jobs (dead-letter list/show) run
 * outside write transactions.
 *
 * Write jobs other than INSERT never fail for good: when a transaction fails (disk full, I/O
 * error), INSERT jobs come back with the error (the caller answers 5xx, nothing was promised)
 * and the other write jobs are retried by the store thread after STORE_RETRY_MS, so a recorded
 * outcome is never lost while the broker runs. The SQLite backend's thread is core/sqlq.c (the
 * same machinery as the MQTT source's spool); the Redis backend keeps its own on aq_mailbox.
 */
#ifndef SY_ASYNCQ_INT_H
#define SY_ASYNCQ_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/errors.h"
#include "core/sqlq.h"

struct asyncq;
struct aq_store;

/* Payload bytes of the async events held in memory at most (with broker.async_max_held). */
#define AQ_MAX_HELD_BYTES (64u * 1024u * 1024u)

enum aq_job_kind {
    AQJ_INSERT,       /* a new event (state 0) */
    AQJ_RETRY,        /* attempts, next_ms, history of an event */
    AQJ_OUTCOME,      /* state 1 + outcome JSON (deliveries pending); optional dead row */
    AQJ_DELETE,       /* the event is done; optional dead row inserted in the same commit */
    AQJ_DLQ_LIST,     /* read */
    AQJ_DLQ_SHOW,     /* read */
    AQJ_DLQ_REDRIVE,  /* dead rows -> events (parked, or new stream entries); no rows back */
    AQJ_DLQ_PURGE,
    AQJ_DLQ_COUNT,    /* read: number of dead rows (start-up) */
    AQJ_INTAKE,       /* made by the store: ROWS are events this broker holds now */
    AQJ_REFILL,       /* SQLite: parked events (state 2) -> held (state 0), returned in ROWS */
};

/* One stored event as the store returns it (recovery, redrive). Owns its strings. */
struct aq_row {
    char id[40];
    int64_t rowid;   /* SQLite store: the row's rowid (set by INSERT), how later jobs find it */
    char *fn;
    char *payload;
    size_t len;
    char *trace_id;
    int64_t enqueued_ms;
    int64_t next_ms;
    int attempts;
    int state;       /* 0 queued, 1 outcome recorded (deliveries pending), 2 parked: stored
                        but not held in memory (the SQLite store's backlog beyond
                        broker.async_max_held), read back by AQJ_REFILL */
    char *outcome;   /* JSON text, state 1 only */
    char *history;   /* JSON array text, or NULL */
};

/* A dead-letter row to insert with an OUTCOME or DELETE job. */
struct aq_dead {
    char *condition;
    char *error_type;
    char *error_message;
    int64_t failed_ms;
};

struct aq_job {
    enum aq_job_kind kind;
    struct aq_job *next;
    struct sqlq_job sj;     /* SQLite store: how the job travels through core/sqlq.c */
    struct aq_row ev;       /* INSERT/RETRY/OUTCOME/DELETE: the event (id always) */
    struct aq_dead *dead;   /* OUTCOME/DELETE: also keep a dead letter, or NULL */
    char *q_fn, *q_id;      /* DLQ ops: filter by function / id (NULL: any) */
    size_t limit;           /* DLQ list/redrive; REFILL: events at most */
    size_t bytes;           /* REFILL: payload bytes at most */
    /* results */
    int rc;                 /* 0 or SY_E* */
    char errmsg[256];
    json_t *result;         /* DLQ ops: owned by the job */
    struct aq_row *rows;    /* INTAKE, REFILL: the events now held (owned by the job) */
    size_t n_rows;
    /* completion, on the loop */
    void (*complete)(struct asyncq *q, struct aq_job *job);
    void *ctx;              /* for complete(): the in-memory event, or a request */
};

/* Free a job and everything it owns. */
void aq_job_free(struct aq_job *job);
void aq_row_clear(struct aq_row *row);

/*
 * The hand-over between the loop and a store thread, shared by both backends: jobs in
 * (submitted by the loop), finished jobs out (taken by the loop after NOTIFY_FD, the loop's
 * eventfd, was written). MU also guards the backend's own thread state (a backend may wait on
 * a condition variable with it).
 */
struct aq_mailbox {
    pthread_mutex_t mu;
    struct aq_job *in_head, *in_tail;     /* submitted, not yet run */
    struct aq_job *done_head, *done_tail; /* finished, for the loop */
    int notify_fd;                        /* the loop's eventfd, -1 until started */
    pthread_t thread;                     /* the backend's thread, once started */
    int started;
};

void aq_mailbox_init(struct aq_mailbox *mb);
/* Free every job still in either list and the mutex. */
void aq_mailbox_destroy(struct aq_mailbox *mb);
/* Append JOB, and the jobs linked after it by ->next, to the in-list. Locks MU; the caller
 * wakes its thread afterwards. */
void aq_mailbox_push(struct aq_mailbox *mb, struct aq_job *job);
/* Take the whole in-list (NULL when empty). Call with MU held. */
struct aq_job *aq_mailbox_take_in_locked(struct aq_mailbox *mb);
/* Append the list HEAD to the done list and wake the loop (unless the list was not empty: then
 * the loop has a wake-up pending). Locks MU. The loop must read its eventfd BEFORE it calls
 * aq_mailbox_take_done(). */
void aq_mailbox_hand_back(struct aq_mailbox *mb, struct aq_job *head);
/* Take the done list (NULL when empty). Locks MU. */
struct aq_job *aq_mailbox_take_done(struct aq_mailbox *mb);
/*
 * Start the backend's thread running FN(ARG); finished jobs will wake NOTIFY_FD. Returns 0 or
 * SY_EIO with ERR filled.
 */
int aq_mailbox_start(struct aq_mailbox *mb, void *(*fn)(void *), void *arg, int notify_fd,
                     struct sy_error *err);
/* Wait for the thread started by aq_mailbox_start() (the backend told it to stop). No-op if
 * none runs. */
void aq_mailbox_join(struct aq_mailbox *mb);
/* Free a list of jobs. */
void aq_job_list_free(struct aq_job *head);
/* Append list B after list A; returns the joined list. */
struct aq_job *aq_job_list_join(struct aq_job *a, struct aq_job *b);

/*
 * A store backend. Two exist: aq_sqlite_ops (asyncq_store.c: <data_dir>/queue.db, the default)
 * and aq_redis_ops (asyncq_store_redis.c: `broker.async_queue: redis://HOST:PORT/KEY`, a Redis
 * Stream with a consumer group shared by several brokers). Both run their I/O on a thread of
 * their own and follow the job contract above.
 *
 * open:      blocking, before the loop runs. Sets *ROWS and *N_ROWS to the events this broker holds
 *            from the start (SQLite: every stored event; Redis: none, they arrive by INTAKE).
 * start:     start the thread; finished jobs are queued for the loop and NOTIFY_FD (an eventfd)
 *            is written.
 * submit:    hand a job over, or a list of jobs linked by ->next (thread-safe; the store owns
 *            them until they come back done).
 * take_done: the finished jobs, in completion order, or NULL. A backend may also hand back
 *            jobs it made itself: AQJ_INTAKE jobs carry in ROWS events this broker now holds
 *            (Redis: read from the stream or claimed from a dead consumer).
 * note_held: optional; the loop reports how many events it holds (flow control for INTAKE).
 * stop:      run what is queued (bounded by TIMEOUT_MS when the backend keeps failing), stop
 *            the thread. Finished jobs stay for one last take_done.
 * destroy:   free (after stop). NULL is a no-op.
 */
struct cfg;
struct aq_store_ops {
    const char *name;
    /* Events reach brokers only by AQJ_INTAKE (a shared queue): the broker that inserted an
     * event does not hold it, whoever reads it does. */
    int intake;
    /* The store keeps a backlog beyond broker.async_max_held parked (state 2) and hands it back
     * by AQJ_REFILL; inserts and redrives may be parked. */
    int parking;
    struct aq_store *(*open)(const struct cfg *cfg, struct aq_row **rows, size_t *n_rows,
                             struct sy_error *err);
    int (*start)(struct aq_store *st, int notify_fd, struct sy_error *err);
    void (*submit)(struct aq_store *st, struct aq_job *job);
    struct aq_job *(*take_done)(struct aq_store *st);
    void (*note_held)(struct aq_store *st, unsigned held);
    void (*stop)(struct aq_store *st, int timeout_ms);
    void (*destroy)(struct aq_store *st);
    /* Optional, loop thread: the queue met function unit FN (NAME or NAME:VERSION) for the first
     * time (a function the API created): a shared store takes its events from now on. */
    void (*declare)(struct aq_store *st, const char *fn);
};

extern const struct aq_store_ops aq_sqlite_ops;
extern const struct aq_store_ops aq_redis_ops;

#endif
