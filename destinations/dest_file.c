/*
 * destinations/dest_file.c - the file destination, `file:DIR`: one JSON file per message,
 * DIR/<timestamp>-<key>-<seq>.json (the envelope of dest.h when the message has attributes).
 * Each file is written as DIR/.tmp-<name>, fsync'ed, renamed into place, then DIR is fsync'ed:
 * a reader never sees a partial file, and DONE(0) means the file survives a crash.
 *
 * Threads. The loop never touches the disk. Each destination owns one worker thread; the loop
 * queues jobs for it (mutex + condition variable), the worker does mkdir -p, open, write,
 * fsync, rename, fsync, and moves the job to the finished list, then wakes the loop with
 * event_active() on an event created with the base. Calling event_active() from another
 * thread needs libevent's threading support: main() must call evthread_use_pthreads() before
 * it creates the event_base (the broker's main must do it; tests/integration/test_dest.c does).
 *
 * Ownership. A message lives in two objects:
 *   - struct dest_file_send (loop only): the caller's DONE, its timer, the result. Owned by the
 *     destination while pending, then by the done queue (df->dq) until DONE has run.
 *   - struct dest_file_job (shared, every field below `mu` guarded by it): the bytes and the
 *     paths. Owned by the list it is on: `todo` -> the worker (`busy`) -> `finished` -> the
 *     loop, which frees it. job->send links back to the send; a send that timed out while the
 *     worker was busy with its job is detached (job->send = NULL) and the job is freed
 *     silently when it comes back.
 *
 * DONE is only ever called from run_completions() (and from destroy), never from inside
 * dest_send() or with a lock held. DONE may call dest_send() again, or even dest_destroy() on
 * this destination: the completion loop notices and the free is deferred until it unwinds.
 *
 * Destroy waits for the worker at most DEST_FILE_STOP_MS: a write, fsync or rename stuck on a
 * hung disk must not hang the broker's shutdown. Past that the worker is detached ("orphaned",
 * as funclog_writer_unref() does): the send it is writing is reported SY_ECANCELED like the
 * others (the async queue keeps the record and delivers it again after a restart: at least
 * once, the file may then exist twice), the loop frees everything that is its own, and the
 * last of the loop and the worker to let go of the struct (df->refs) frees it. An orphaned
 * worker touches nothing of the loop's (done_ev, sends) again.
 */
#include "dest.h"
#include "dest_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/log.h"
#include "core/time.h"

#define DEST_FILE_MAGIC 0x46494c45u      /* "FILE" */
#define DEST_FILE_SEND_MAGIC 0x46534e44u /* "FSND" */
#define DEST_FILE_JOB_MAGIC 0x464a4f42u  /* "FJOB" */

/*
 * Our own invariant (kept in release builds): what libevent hands back as `void *arg` is ours.
 */
#define DEST_FILE_CHECK(p, m)                                                                      \
    do {                                                                                           \
        if ((p) == NULL || (p)->magic != (m)) {                                                    \
            log_err("[dest:file] %s:%d: bad magic", __FILE__, __LINE__);                           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* How long dest_destroy() waits for the worker to finish the write in progress. */
#define DEST_FILE_STOP_MS 2000

/* Longest message key kept in a file name (request ids are 36 characters). */
#define DEST_FILE_KEY_MAX 100

struct dest_file_job;

struct dest_file_send {
    unsigned magic;
    TAILQ_ENTRY(dest_file_send) link; /* on df->pending (else on df->dq) */
    struct dest_file *df;
    struct dest_util_send u;   /* DONE and the result */
    struct event *timer;       /* DEST_SEND_TIMEOUT_MS; owned */
    struct dest_file_job *job; /* guarded by df->mu; NULL once the job is gone or detached */
};

enum dest_file_job_state { JOB_TODO, JOB_BUSY, JOB_FINISHED };

struct dest_file_job {
    unsigned magic;
    TAILQ_ENTRY(dest_file_job) link; /* on df->todo or df->finished */
    char *data;                      /* owned; the file's contents */
    size_t len;
    char *tmp_path, *path; /* owned */
    /* Guarded by df->mu. */
    enum dest_file_job_state state;
    struct dest_file_send *send; /* NULL: detached (timed out), free silently */
    int rc;
    char err[512];
};

TAILQ_HEAD(dest_file_sendq, dest_file_send);
TAILQ_HEAD(dest_file_jobq, dest_file_job);

struct dest_file {
    struct dest base; /* first: dest.c casts */
    unsigned magic;
    struct event_base *evb; /* borrowed */
    char *dir;              /* owned; absolute */
    uint64_t seq;           /* last sequence number used in a file name */

    /* Loop only. */
    struct dest_file_sendq pending; /* handed to the worker, result not back yet */
    struct dest_util_doneq dq;      /* result known, DONE not called yet */
    struct event *done_ev;          /* the worker's wake-up; owned */
    bool closed;                    /* dest_destroy() has started */
    bool thread_started;
    char last_err[512]; /* empty when the last write worked */
    char state_buf[600];

    /* Shared with the worker, guarded by mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* loop -> worker: a job, or stop */
    pthread_cond_t done_cv; /* worker -> destroy: the worker is done (CLOCK_MONOTONIC) */
    pthread_t thread;
    struct dest_file_jobq todo, finished;
    bool stop;
    bool worker_done; /* the worker has left its loop and touches nothing of the loop's */
    bool orphaned;    /* destroy gave up waiting: the worker frees its own and unrefs */
    int refs;         /* the loop's share, plus the worker's once orphaned */
};

/*
 * Test hooks (dest_int.h): while held, a worker stops before each write, as on a hung disk.
 * threads_alive counts the workers that have not returned yet.
 */
static pthread_mutex_t test_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t test_cv = PTHREAD_COND_INITIALIZER;
static bool test_hold;
static int test_held;
static atomic_int threads_alive;

/* Wait here while a test holds the workers. Runs on the worker. */
static void test_gate(void)
{
    pthread_mutex_lock(&test_mu);
    if (test_hold) {
        test_held++;
        while (test_hold)
            pthread_cond_wait(&test_cv, &test_mu);
        test_held--;
    }
    pthread_mutex_unlock(&test_mu);
}

void dest_file_test_hold(bool hold)
{
    pthread_mutex_lock(&test_mu);
    test_hold = hold;
    pthread_cond_broadcast(&test_cv);
    pthread_mutex_unlock(&test_mu);
}

int dest_file_test_held(void)
{
    int n;

    pthread_mutex_lock(&test_mu);
    n = test_held;
    pthread_mutex_unlock(&test_mu);
    return n;
}

int dest_file_test_threads(void)
{
    return atomic_load(&threads_alive);
}

static void job_free(struct dest_file_job *job);
static void dest_file_unref(struct dest_file *df);

/* ---------------------------------------------------------------------------------------- */
/* Worker thread. Everything here runs on the destination's worker, never on the loop.      */

/* mkdir -p PATH (absolute). Returns 0 or -errno. Runs on the worker. */
static int mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    struct stat st;

    if (n == 0 || n >= sizeof(buf))
        return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;

        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -errno;
        *p = c;
        if (c == '\0')
            break;
    }
    /* EEXIST above may have been a file: the last component must be a directory. */
    if (stat(path, &st) != 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* Fill JOB's result for a failed OP on PATH with errno E. Runs on the worker. */
static void job_fail(struct dest_file_job *job, const char *op, const char *path, int e)
{
    if (e == ENOSPC || e == EDQUOT) {
        job->rc = SY_ENOSPC;
        snprintf(job->err, sizeof(job->err), "no space left on device: %s %s: %s", op, path,
                 strerror(e));
    } else {
        job->rc = SY_EIO;
        snprintf(job->err, sizeof(job->err), "%s %s: %s", op, path, strerror(e));
    }
}

/* Write all of DATA to FD, retrying on EINTR and short writes. Returns 0 or errno. */
static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * Store one job: temp file, write, fsync, close, rename, fsync(dir). Sets job->rc/err. On
 * failure the temp file is removed. Runs on the worker; *DIR_READY is the worker's memory of a
 * successful mkdir -p.
 */
static void job_write(struct dest_file *df, struct dest_file_job *job, bool *dir_ready)
{
    int fd = -1, dfd = -1, e;

    job->rc = 0;
    job->err[0] = '\0';
    for (int attempt = 0; fd < 0; attempt++) {
        if (!*dir_ready) {
            e = -mkdir_p(df->dir);
            if (e != 0) {
                job_fail(job, "create directory", df->dir, e);
                return;
            }
            *dir_ready = true;
        }
        fd = open(job->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            e = errno;
            if (e == EINTR)
                continue;
            /* The directory was removed under us: create it again, once. */
            if (e == ENOENT && attempt == 0) {
                *dir_ready = false;
                continue;
            }
            job_fail(job, "open", job->tmp_path, e);
            return;
        }
    }
    e = write_all(fd, job->data, job->len);
    if (e != 0) {
        job_fail(job, "write", job->tmp_path, e);
        goto out_unlink;
    }
    if (fsync(fd) != 0) {
        job_fail(job, "fsync", job->tmp_path, errno);
        goto out_unlink;
    }
    /* close() can report a deferred write error (NFS): check it, and never retry it. */
    e = close(fd) != 0 ? errno : 0;
    fd = -1;
    if (e != 0 && e != EINTR) {
        job_fail(job, "close", job->tmp_path, e);
        goto out_unlink;
    }
    if (rename(job->tmp_path, job->path) != 0) {
        job_fail(job, "rename", job->tmp_path, errno);
        goto out_unlink;
    }
    /* The rename is durable once the directory is. */
    dfd = open(df->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        job_fail(job, "fsync directory", df->dir, errno);
        *dir_ready = false;
    }
    if (dfd >= 0)
        close(dfd);
    return;

out_unlink:
    if (fd >= 0)
        close(fd);
    unlink(job->tmp_path);
}

/*
 * The worker: take jobs from `todo` until told to stop and the queue is empty. Once orphaned
 * (destroy stopped waiting for us), the job we were writing is ours to free, the loop's
 * done_ev is gone, and we drop our share of DF on the way out.
 */
static void *worker_main(void *arg)
{
    struct dest_file *df = arg;
    bool dir_ready = false, orphaned;

    pthread_setname_np(pthread_self(), "sy-dest-file"); /* top -H, perf */

    pthread_mutex_lock(&df->mu);
    for (;;) {
        struct dest_file_job *job = TAILQ_FIRST(&df->todo);

        if (job == NULL) {
            if (df->stop)
                break;
            pthread_cond_wait(&df->cv, &df->mu);
            continue;
        }
        TAILQ_REMOVE(&df->todo, job, link);
        job->state = JOB_BUSY;
        pthread_mutex_unlock(&df->mu);

        test_gate();
        job_write(df, job, &dir_ready);

        pthread_mutex_lock(&df->mu);
        if (df->orphaned) {
            /* destroy() detached the job's send (job->send == NULL) and left: nobody wants
             * the result, and done_ev may be freed already. */
            job_free(job);
            continue;
        }
        job->state = JOB_FINISHED;
        TAILQ_INSERT_TAIL(&df->finished, job, link);
        /* Under the lock: destroy() frees done_ev only after joining us or orphaning us
         * (under this lock), and a stop request never races with this (stop only makes us
         * exit once todo is empty). */
        event_active(df->done_ev, EV_READ, 0);
    }
    df->worker_done = true;
    orphaned = df->orphaned;
    pthread_cond_signal(&df->done_cv);
    pthread_mutex_unlock(&df->mu);
    if (orphaned) /* nobody joins us: drop our share (the last one frees DF) */
        dest_file_unref(df);
    atomic_fetch_sub(&threads_alive, 1);
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Loop side.                                                                               */

static void job_free(struct dest_file_job *job)
{
    if (job == NULL)
        return;
    free(job->data);
    free(job->tmp_path);
    free(job->path);
    free(job);
}

static void send_free(struct dest_file_send *s)
{
    if (s->timer != NULL)
        event_free(s->timer);
    free(s);
}

static void send_free_u(struct dest_util_send *us)
{
    send_free(DEST_UTIL_CONTAINER(us, struct dest_file_send, u));
}

/* Move S from `pending` to the done queue with RC/ERR. Its timer stops. Loop only. */
static void send_complete(struct dest_file *df, struct dest_file_send *s, int rc, const char *err)
{
    TAILQ_REMOVE(&df->pending, s, link);
    if (s->timer != NULL)
        event_del(s->timer);
    dest_util_doneq_push(&df->dq, &s->u, rc, "%s", err != NULL ? err : "");
}

/* Right before DONE for a send: remember the last failure for state(). Loop only. */
static void on_finish(struct dest *d, int rc, const char *err)
{
    struct dest_file *df = (struct dest_file *)d;

    if (rc == 0)
        df->last_err[0] = '\0';
    else if (rc != SY_ECANCELED)
        snprintf(df->last_err, sizeof(df->last_err), "%s", err);
}

static void dest_file_free(struct dest_file *df);

/*
 * Call DONE for the sends that are completed now (see dest_util_doneq_run()); if DONE destroyed
 * the destination, the outermost frame frees it. Loop only.
 */
static void run_completions(struct dest_file *df)
{
    if (dest_util_doneq_run(&df->dq))
        dest_file_free(df);
}

/*
 * Take the worker's finished jobs: each one's send moves to the done queue with the job's result;
 * jobs of sends that already timed out are just freed. Loop only.
 */
static void collect_finished(struct dest_file *df)
{
    struct dest_file_jobq done = TAILQ_HEAD_INITIALIZER(done);
    struct dest_file_job *job;

    pthread_mutex_lock(&df->mu);
    TAILQ_CONCAT(&done, &df->finished, link);
    pthread_mutex_unlock(&df->mu);
    /* The worker never looks at a finished job again: no lock needed from here on. */
    while ((job = TAILQ_FIRST(&done)) != NULL) {
        struct dest_file_send *s = job->send;

        TAILQ_REMOVE(&done, job, link);
        if (s != NULL) {
            s->job = NULL;
            /* Log a failure once, not once per message while it lasts. */
            if (job->rc != 0 && strcmp(job->err, df->last_err) != 0)
                log_warn("[dest:%s] %s; the message stays queued for a retry", df->base.uri,
                         job->err);
            send_complete(df, s, job->rc, job->err);
        }
        job_free(job);
    }
}

/* The worker's wake-up (event_active from the worker). Loop only. */
static void on_worker_done(evutil_socket_t fd, short what, void *arg)
{
    struct dest_file *df = arg;

    collect_finished(df);
    run_completions(df); /* may free DF */
}

/*
 * A send got no result within DEST_SEND_TIMEOUT_MS. A job still queued is dropped; one the
 * worker is busy with is detached (written or not, its result is ignored). Loop only.
 */
static void on_send_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct dest_file_send *s = arg;
    struct dest_file *df = s->df;
    struct dest_file_job *job = s->job;
    bool drop = false;
    char err[128];

    DEST_FILE_CHECK(s, DEST_FILE_SEND_MAGIC);
    pthread_mutex_lock(&df->mu);
    if (job->state == JOB_FINISHED) {
        /* The result is already on its way (done_ev is active): let it win. */
        pthread_mutex_unlock(&df->mu);
        return;
    }
    if (job->state == JOB_TODO) {
        TAILQ_REMOVE(&df->todo, job, link);
        drop = true;
    } else {
        job->send = NULL;
    }
    pthread_mutex_unlock(&df->mu);
    s->job = NULL;
    if (drop)
        job_free(job);
    snprintf(err, sizeof(err), "not written within %d ms (slow or hung disk?)",
             DEST_SEND_TIMEOUT_MS);
    log_warn("[dest:%s] %s; the message stays queued for a retry", df->base.uri, err);
    send_complete(df, s, SY_ETIMEDOUT, err);
    run_completions(df); /* may free DF */
}

/*
 * DIR/<timestamp>-<key>-<seq>.json into OUT. The key is reduced to [A-Za-z0-9._-] (others
 * become '_', no leading '.') and cut at DEST_FILE_KEY_MAX; the timestamp is UTC with
 * milliseconds, so names sort by time. Loop only (uses df->seq).
 */
static void file_name(struct dest_file *df, const char *key, char *out, size_t n)
{
    char k[DEST_FILE_KEY_MAX + 1], stamp[32];
    struct timespec ts;
    struct tm tm;
    size_t i = 0;

    for (const char *p = key != NULL ? key : ""; *p != '\0' && i < DEST_FILE_KEY_MAX; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || (c == '.' && i > 0);

        k[i++] = ok ? c : '_';
    }
    if (i == 0)
        memcpy(k, "msg", (i = 3));
    k[i] = '\0';
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
    snprintf(out, n, "%s.%03ldZ-%s-%llu.json", stamp, ts.tv_nsec / 1000000L, k,
             (unsigned long long)++df->seq);
}

static int dest_file_send(struct dest *d, const struct dest_msg *msg, dest_done_fn *done, void *arg)
{
    struct dest_file *df = (struct dest_file *)d;
    struct timeval tv = evhelp_tv_ms(DEST_SEND_TIMEOUT_MS);
    struct dest_file_send *s;
    struct dest_file_job *job;
    char name[DEST_FILE_KEY_MAX + 64];

    DEST_FILE_CHECK(df, DEST_FILE_MAGIC);
    if (df->closed)
        return SY_ECLOSED;
    s = calloc(1, sizeof(*s));
    job = calloc(1, sizeof(*job));
    if (s == NULL || job == NULL)
        goto out_nomem;
    s->magic = DEST_FILE_SEND_MAGIC;
    s->df = df;
    s->u.done = done;
    s->u.arg = arg;
    job->magic = DEST_FILE_JOB_MAGIC;
    /* Copy the message now: MSG is borrowed for this call only. */
    job->data = dest_envelope(msg, &job->len);
    file_name(df, msg->key, name, sizeof(name));
    if (asprintf(&job->path, "%s/%s", df->dir, name) < 0)
        job->path = NULL;
    if (asprintf(&job->tmp_path, "%s/.tmp-%s", df->dir, name) < 0)
        job->tmp_path = NULL;
    s->timer = evtimer_new(df->evb, on_send_timeout, s);
    if (job->data == NULL || job->path == NULL || job->tmp_path == NULL || s->timer == NULL)
        goto out_nomem;
    s->job = job;
    job->send = s;
    job->state = JOB_TODO;
    evtimer_add(s->timer, &tv);
    TAILQ_INSERT_TAIL(&df->pending, s, link);

    pthread_mutex_lock(&df->mu);
    TAILQ_INSERT_TAIL(&df->todo, job, link);
    pthread_cond_signal(&df->cv);
    pthread_mutex_unlock(&df->mu);
    return 0;

out_nomem:
    job_free(job);
    if (s != NULL)
        send_free(s);
    return SY_ENOMEM;
}

static const char *dest_file_state(const struct dest *d)
{
    /* The state buffer is ours to write even through a const handle. */
    struct dest_file *df = (struct dest_file *)d;

    if (df->last_err[0] == '\0')
        return "ok";
    return dest_util_state_reason(df->state_buf, sizeof(df->state_buf), "failing", df->last_err);
}

/*
 * Drop one share of DF (the loop's, or an orphaned worker's); the last one frees the memory.
 * Any thread. The shared part only: the loop frees its own (done_ev) before its unref.
 */
static void dest_file_unref(struct dest_file *df)
{
    bool last;

    pthread_mutex_lock(&df->mu);
    last = --df->refs == 0;
    pthread_mutex_unlock(&df->mu);
    if (!last)
        return;
    pthread_cond_destroy(&df->cv);
    pthread_cond_destroy(&df->done_cv);
    pthread_mutex_destroy(&df->mu);
    free(df->dir);
    free(df->base.uri);
    df->magic = 0;
    free(df);
}

/*
 * The loop lets go of DF: frees its own part, then its share of the rest. The worker must be
 * joined, orphaned (it holds a share) or never started. Safe on a half-built DF. Loop only.
 */
static void dest_file_free(struct dest_file *df)
{
    evhelp_free(&df->done_ev);
    dest_file_unref(df);
}

static int dest_file_create(struct event_base *base, const char *uri, struct dest **out,
                            struct sy_error *err)
{
    struct dest_file *df;
    const char *dir;
    size_t n;
    int rc;

    *out = NULL;
    if (strncmp(uri, "file:", 5) != 0 || uri[5] != '/') {
        sy_error_set(err, "%s: a file destination needs an absolute directory (file:/DIR)", uri);
        return SY_EINVAL;
    }
    dir = uri + 5;
    n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') /* "file:/a/b/" writes to /a/b */
        n--;
    df = calloc(1, sizeof(*df));
    if (df == NULL)
        goto out_nomem;
    df->magic = DEST_FILE_MAGIC;
    df->base.ops = &dest_file_ops;
    df->evb = base;
    TAILQ_INIT(&df->pending);
    dest_util_doneq_init(&df->dq, &df->base, send_free_u);
    df->dq.on_finish = on_finish;
    TAILQ_INIT(&df->todo);
    TAILQ_INIT(&df->finished);
    df->refs = 1;
    pthread_mutex_init(&df->mu, NULL);
    pthread_cond_init(&df->cv, NULL);
    {
        pthread_condattr_t ca;

        /* A timed wait against the monotonic clock: a clock step cannot stretch it. */
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&df->done_cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    df->base.uri = strdup(uri);
    df->dir = strndup(dir, n);
    df->done_ev = event_new(base, -1, 0, on_worker_done, df);
    if (df->base.uri == NULL || df->dir == NULL || df->done_ev == NULL)
        goto out_nomem;
    /* The directory is created by the worker (mkdir -p), before its first write. */
    atomic_fetch_add(&threads_alive, 1);
    rc = pthread_create(&df->thread, NULL, worker_main, df);
    if (rc != 0) {
        atomic_fetch_sub(&threads_alive, 1);
        sy_error_set(err, "%s: cannot start the writer thread: %s", uri, strerror(rc));
        dest_file_free(df);
        return SY_EIO;
    }
    df->thread_started = true;
    *out = &df->base;
    return 0;

out_nomem:
    sy_error_set(err, "%s: out of memory", uri);
    if (df != NULL)
        dest_file_free(df);
    return SY_ENOMEM;
}

/*
 * Stop the worker: wait up to DEST_FILE_STOP_MS for the write in progress (the worker exits
 * once todo is empty), else orphan the worker. Called with df->mu held; returns with it held.
 * Returns true when the worker is done (join it), false when it was orphaned. Loop only.
 */
static bool worker_stop(struct dest_file *df)
{
    struct timespec deadline;

    time_deadline(&deadline, CLOCK_MONOTONIC, DEST_FILE_STOP_MS);
    while (!df->worker_done) {
        int rc = pthread_cond_timedwait(&df->done_cv, &df->mu, &deadline);

        if (rc == ETIMEDOUT)
            break;
    }
    if (df->worker_done)
        return true;
    /* The worker keeps the job it is writing and a share of DF; its send is reported below. */
    df->orphaned = true;
    df->refs++;
    for (struct dest_file_send *s = TAILQ_FIRST(&df->pending); s != NULL; s = TAILQ_NEXT(s, link)) {
        if (s->job != NULL && s->job->state == JOB_BUSY) {
            s->job->send = NULL;
            s->job = NULL;
        }
    }
    return false;
}

/*
 * Jobs not started are canceled; the one being written is waited for (at most
 * DEST_FILE_STOP_MS) and reports its real result, or is canceled too when the disk hangs; then
 * every send gets DONE before we return. Called from inside DONE, the memory is freed when the
 * outermost run_completions() unwinds.
 */
static void dest_file_destroy(struct dest *d)
{
    struct dest_file *df = (struct dest_file *)d;
    struct dest_file_jobq canceled = TAILQ_HEAD_INITIALIZER(canceled);
    struct dest_file_job *job;
    struct dest_file_send *s;

    DEST_FILE_CHECK(df, DEST_FILE_MAGIC);
    if (df->closed)
        return;
    df->closed = true;
    pthread_mutex_lock(&df->mu);
    df->stop = true;
    TAILQ_CONCAT(&canceled, &df->todo, link);
    pthread_cond_broadcast(&df->cv);
    if (df->thread_started) {
        if (worker_stop(df)) {
            pthread_mutex_unlock(&df->mu);
            pthread_join(df->thread, NULL);
        } else {
            pthread_mutex_unlock(&df->mu);
            pthread_detach(df->thread);
            log_err("[dest:%s] the writer thread is still busy after %d ms (disk hung?); not "
                    "waiting for it: the message it is writing is reported canceled and stays "
                    "queued for a retry (the file may then exist twice); the thread frees what "
                    "it holds if it ever returns",
                    df->base.uri, DEST_FILE_STOP_MS);
        }
    } else {
        pthread_mutex_unlock(&df->mu);
    }
    df->thread_started = false;

    collect_finished(df);
    while ((job = TAILQ_FIRST(&canceled)) != NULL) {
        TAILQ_REMOVE(&canceled, job, link);
        if (job->send != NULL) {
            job->send->job = NULL;
            send_complete(df, job->send, SY_ECANCELED, "destination closed");
        }
        job_free(job);
    }
    /* Nothing else can be pending; be safe anyway. */
    while ((s = TAILQ_FIRST(&df->pending)) != NULL)
        send_complete(df, s, SY_ECANCELED, "destination closed");

    if (dest_util_doneq_close(&df->dq))
        dest_file_free(df);
}

const struct dest_ops dest_file_ops = {
    .scheme = "file",
    .create = dest_file_create,
    .send = dest_file_send,
    .state = dest_file_state,
    .destroy = dest_file_destroy,
};
