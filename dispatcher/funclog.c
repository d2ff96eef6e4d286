/*
 * dispatcher/funclog.c - per-function log files under <data_dir>/logs/, written by one shared
 * log-writer thread so that the loop thread never makes a file syscall for them.
 *
 * Format. User output lines are stored with a timestamp and the request id they were printed
 * under (`<ISO time>\t<request id>\t<line>`, `-` outside an invocation); platform lines
 * (INIT_START, START, END, REPORT) are stored as Lambda prints them. When lines had to be
 * dropped, the writer puts one line `... N log lines dropped (log writer behind: <reason>)`
 * where they were missing.
 *
 * Threads. The loop thread appends each line to its function's pending buffer under the
 * writer's mutex (one uncontended lock per line: the writer holds it only to swap buffers,
 * never across a syscall). No syscall and no wake-up happen per line: while lines keep coming
 * the writer thread wakes every FUNCLOG_TICK_MS on a timed wait, or earlier when a pending
 * buffer crosses FUNCLOG_KICK_BYTES, swaps each function's pending buffer with its own (now
 * written) one and write(2)s it. With nothing to write it sleeps until a line arrives (the
 * one wake-up the loop pays after a quiet spell), then gathers lines for one tick. The writer
 * alone opens, writes and closes the files (O_APPEND|O_CLOEXEC: a child forked meanwhile
 * never inherits one).
 *
 * Promise to `tail -f`: a line (a REPORT included) is in the file FUNCLOG_TICK_MS (50 ms)
 * after it was logged, plus the time its write(2) takes, while the disk keeps up. Before this
 * file had a thread, REPORT was flushed at once and other lines within 0.2 s.
 *
 * Bounds. Each function buffers at most FUNCLOG_CAP_BYTES (pending plus not yet written);
 * beyond that whole lines are dropped and counted until the writer has taken the pending
 * lines, and the count is written right after them. A failed open or write (ENOSPC, EIO) is
 * logged once per episode with log_err, the file is closed, and the writer tries again every
 * FUNCLOG_RETRY_MS on a fresh open (so a recreated file or a freed disk is picked up) while
 * the unwritten bytes stay in memory; the recovery is logged too. At shutdown a file that
 * still fails gets one last attempt, then its lines are counted as lost. log_write() is one
 * fprintf(), which the writer thread may call.
 *
 * Ownership. The writer is reference counted on the loop thread: funclog_writer_start()
 * returns the caller's reference, each funclog_open() takes one more, funclog_close() and
 * funclog_writer_unref() drop one. A `struct funclog_file` is shared by both threads while its
 * function's log is open; funclog_close() hands it to the writer, which frees it once its
 * lines are written. Dropping the last writer reference stops the thread after it has written
 * everything, waiting at most FUNCLOG_STOP_MS: if the disk hangs, the thread is detached and
 * then owns (and frees) the writer itself, should it ever get out of its write(2).
 */
#include "dispatcher_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/time.h"

#define FUNCLOG_TICK_MS 50
#define FUNCLOG_KICK_BYTES (64u * 1024u)
#define FUNCLOG_CAP_BYTES (4u * 1024u * 1024u)
#define FUNCLOG_RETRY_MS 1000
#define FUNCLOG_STOP_MS 2000
#define FUNCLOG_KEEP_BYTES (256u * 1024u) /* larger written buffers are freed, not kept */

struct flbuf {
    char *data;
    size_t len, cap;
};

/*
 * One function's log. Fields under "w->mu" are shared; fields marked "writer" are touched only
 * by the writer thread (and by funclog_open() before the file is published).
 */
struct funclog_file {
    struct funclog_file *next; /* w->mu: the writer's list */
    char *name;                /* immutable: function name, for messages */
    char *path;                /* immutable */
    /* w->mu */
    struct flbuf pend; /* lines the loop appended since the last swap */
    size_t out_left;   /* bytes the writer still has to write (counted in the cap) */
    uint64_t dropped;  /* lines dropped since the last notice */
    int drop_err;      /* why this drop episode began: io_err, ENOMEM, 0 (too slow) */
    int io_err;        /* errno of the current failure episode, 0 when healthy */
    int closing;       /* funclog_close() ran: write what is left, then free */
    struct funclog_stats st;
    /* writer */
    int fd;
    struct flbuf out; /* swapped-out lines being written */
    size_t out_off;
    int err; /* writer's copy of io_err */
    uint64_t retry_at_us;
};

struct funclog_writer {
    pthread_mutex_t mu;
    pthread_cond_t wake_cv; /* loop → writer (CLOCK_MONOTONIC) */
    pthread_cond_t done_cv; /* writer → stopping thread (CLOCK_MONOTONIC) */
    pthread_t thread;
    struct funclog_file *files; /* mu */
    int kicked;                 /* mu: a wake-up is pending */
    int asleep;                 /* mu: the writer waits for a line, without a deadline */
    int stopping;               /* mu */
    int done;                   /* mu: the thread has written and closed everything */
    int orphaned;               /* mu: the stopper gave up; the thread frees the writer */
    int refs;                   /* loop thread only */
};

static atomic_int test_paused;
static atomic_int threads_alive;

/* ---- buffers ---------------------------------------------------------------------------- */

static int flbuf_reserve(struct flbuf *b, size_t more)
{
    size_t cap = b->cap ? b->cap : 4096;
    char *p;

    if (b->len + more <= b->cap)
        return 0;
    while (cap < b->len + more)
        cap *= 2;
    p = realloc(b->data, cap);
    if (p == NULL)
        return SY_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

static void flbuf_free(struct flbuf *b)
{
    sy_free(&b->data);
    b->len = b->cap = 0;
}

static uint64_t count_lines(const char *p, size_t len)
{
    uint64_t n = 0;

    if (len == 0)
        return 0;
    for (const char *end = p + len; (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
        n++;
    return n;
}

static void file_free(struct funclog_file *f)
{
    if (f == NULL)
        return;
    if (f->fd >= 0)
        close(f->fd);
    flbuf_free(&f->pend);
    flbuf_free(&f->out);
    free(f->name);
    free(f->path);
    free(f);
}

/* ---- writer thread ---------------------------------------------------------------------- */

/*
 * Open F if needed and write what is left of its out buffer. Writer thread, w->mu NOT held.
 * Returns 0 when everything is written, else the errno of the failure (the file is closed so
 * that the next attempt opens it afresh).
 */
static int file_write_out(struct funclog_file *f)
{
    int e;

    if (f->fd < 0) {
        f->fd = open(f->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (f->fd < 0) {
            e = errno;
            goto fail;
        }
    }
    while (f->out_off < f->out.len) {
        ssize_t n = write(f->fd, f->out.data + f->out_off, f->out.len - f->out_off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) { /* 0 only for a zero-length write: treat it as an I/O error */
            e = n < 0 ? errno : EIO;
            goto fail_close;
        }
        f->out_off += (size_t)n;
    }
    return 0;

fail_close:
    close(f->fd);
    f->fd = -1;
fail:
    return e;
}

/*
 * Serve one file: take its pending lines if the previous batch is written, write, account.
 * Called and returns with w->mu held; drops it around the I/O. Returns 1 when F was freed
 * (closed and fully written, or given up on at shutdown).
 */
static int file_serve(struct funclog_writer *w, struct funclog_file *f, int stopping)
{
    size_t before, written;
    int rc;

    if (!stopping && f->err != 0 && time_mono_us() < f->retry_at_us)
        return 0;
    if (f->out_off == f->out.len) {
        struct flbuf t = f->out;

        /* The written buffer becomes the next pending one (no allocation in steady state). */
        t.len = 0;
        f->out = f->pend;
        f->out_off = 0;
        f->pend = t;
        if (f->dropped > 0) {
            /* The dropped lines came after everything just taken and before anything newer. */
            char note[160];
            int n =
                snprintf(note, sizeof(note), "... %llu log lines dropped (log writer behind: %s)\n",
                         (unsigned long long)f->dropped,
                         f->drop_err ? strerror(f->drop_err) : "4 MiB buffered, disk slow");

            if (n > 0 && flbuf_reserve(&f->out, (size_t)n) == 0) {
                memcpy(f->out.data + f->out.len, note, (size_t)n);
                f->out.len += (size_t)n;
                f->dropped = 0;
                f->drop_err = 0;
            }
        }
        f->out_left = f->out.len;
    }
    if (f->fd >= 0 && f->out_off == f->out.len && !f->closing)
        return 0; /* idle */

    pthread_mutex_unlock(&w->mu);
    before = f->out_off;
    rc = file_write_out(f);
    if (rc == 0 && f->err != 0) {
        log_info("[function:%s] writing its log %s again", f->name, f->path);
        f->err = 0;
    } else if (rc != 0) {
        if (f->err == 0 && !stopping) /* at shutdown, the message below says it all */
            log_err("[function:%s] cannot write its log %s: %s; keeping up to %u KiB of lines "
                    "in memory, retrying every %d ms",
                    f->name, f->path, strerror(rc), FUNCLOG_CAP_BYTES / 1024u, FUNCLOG_RETRY_MS);
        f->err = rc;
        f->retry_at_us = time_mono_us() + (uint64_t)FUNCLOG_RETRY_MS * 1000u;
    }
    written = f->out_off - before;
    if (f->out_off == f->out.len) { /* out is ours alone: reset it outside the lock */
        f->out.len = f->out_off = 0;
        if (f->out.cap > FUNCLOG_KEEP_BYTES)
            flbuf_free(&f->out); /* after a burst, give the memory back */
    }
    pthread_mutex_lock(&w->mu);

    f->st.bytes_written += written;
    if (rc != 0)
        f->st.write_errors++;
    f->io_err = rc;
    f->out_left = f->out.len - f->out_off;
    if (!f->closing)
        return 0;
    if (rc != 0 && stopping) {
        /* Last chance at shutdown and the disk said no: say what is lost rather than wait. */
        uint64_t lost = count_lines(f->out.data + f->out_off, f->out_left) +
                        count_lines(f->pend.data, f->pend.len) + f->dropped;

        log_err("[function:%s] %llu log lines lost at shutdown: %s", f->name,
                (unsigned long long)lost, strerror(rc));
    } else if (rc != 0 || f->out_left > 0 || f->pend.len > 0 || f->dropped > 0) {
        return 0; /* more to write on the next pass */
    }
    for (struct funclog_file **pp = &w->files; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    }
    file_free(f);
    return 1;
}

/* Whether a pass of the writer has anything to do (a line, a write or open to retry, a file
 * to close). w->mu held. */
static int has_work(const struct funclog_writer *w)
{
    for (const struct funclog_file *f = w->files; f != NULL; f = f->next) {
        if (f->pend.len > 0 || f->out_left > 0 || f->dropped > 0 || f->closing || f->fd < 0 ||
            f->err != 0)
            return 1;
    }
    return atomic_load(&test_paused) != 0;
}

static void *writer_main(void *arg)
{
    struct funclog_writer *w = arg;
    int orphaned;

    pthread_setname_np(pthread_self(), "sy-funclog"); /* top -H, perf */

    pthread_mutex_lock(&w->mu);
    for (;;) {
        int stopping = w->stopping;

        w->kicked = 0;
        if (!atomic_load(&test_paused)) {
            /* Files are only added at the head and only this thread unlinks them, so NEXT
             * stays valid while the lock is dropped inside file_serve(). */
            struct funclog_file *f = w->files;

            while (f != NULL) {
                struct funclog_file *next = f->next;

                file_serve(w, f, stopping);
                f = next;
            }
        }
        if (stopping && w->files == NULL)
            break;
        if (!w->kicked && !stopping && !has_work(w)) {
            /* Nothing to write: sleep until a line (append() wakes us) or a kick. */
            w->asleep = 1;
            while (w->asleep && !w->kicked && !w->stopping)
                pthread_cond_wait(&w->wake_cv, &w->mu);
            w->asleep = 0;
        }
        if (!w->kicked) {
            struct timespec ts;

            time_deadline(&ts, CLOCK_MONOTONIC, FUNCLOG_TICK_MS);
            pthread_cond_timedwait(&w->wake_cv, &w->mu, &ts);
        }
    }
    w->done = 1;
    orphaned = w->orphaned;
    pthread_cond_signal(&w->done_cv);
    pthread_mutex_unlock(&w->mu);
    if (orphaned) { /* nobody waits for us any more: we own the writer */
        pthread_cond_destroy(&w->wake_cv);
        pthread_cond_destroy(&w->done_cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
    }
    atomic_fetch_sub(&threads_alive, 1);
    return NULL;
}

/* Wake the writer now (not per line: only on a threshold, open, close and stop). w->mu held. */
static void kick(struct funclog_writer *w)
{
    if (!w->kicked) {
        w->kicked = 1;
        pthread_cond_signal(&w->wake_cv);
    }
}

/* ---- loop side ---------------------------------------------------------------------------- */

struct funclog_writer *funclog_writer_start(struct sy_error *err)
{
    struct funclog_writer *w = calloc(1, sizeof(*w));
    pthread_condattr_t ca;
    int rc;

    if (w == NULL) {
        sy_error_set(err, "out of memory");
        return NULL;
    }
    w->refs = 1;
    if (pthread_condattr_init(&ca) != 0) {
        sy_error_set(err, "cannot set up the function log writer");
        goto fail_free;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->wake_cv, &ca);
    pthread_cond_init(&w->done_cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_fetch_add(&threads_alive, 1);
    rc = pthread_create(&w->thread, NULL, writer_main, w);
    if (rc != 0) {
        atomic_fetch_sub(&threads_alive, 1);
        sy_error_set(err, "cannot start the function log writer thread: %s", strerror(rc));
        goto fail_sync;
    }
    return w;

fail_sync:
    pthread_cond_destroy(&w->wake_cv);
    pthread_cond_destroy(&w->done_cv);
    pthread_mutex_destroy(&w->mu);
fail_free:
    free(w);
    return NULL;
}

void funclog_writer_unref(struct funclog_writer *w)
{
    struct timespec ts;

    if (w == NULL || --w->refs > 0)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = 1;
    kick(w);
    time_deadline(&ts, CLOCK_MONOTONIC, FUNCLOG_STOP_MS);
    while (!w->done) {
        if (pthread_cond_timedwait(&w->done_cv, &w->mu, &ts) == ETIMEDOUT)
            break;
    }
    if (!w->done) {
        size_t left = 0;

        for (const struct funclog_file *f = w->files; f != NULL; f = f->next)
            left += f->out_left + f->pend.len;
        w->orphaned = 1;
        pthread_mutex_unlock(&w->mu);
        pthread_detach(w->thread);
        log_err("function logs: the log writer is still blocked after %d ms (disk hung?); not "
                "waiting for it, up to %zu bytes of function log lines may be lost",
                FUNCLOG_STOP_MS, left);
        return;
    }
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->wake_cv);
    pthread_cond_destroy(&w->done_cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

int funclog_open(struct funclog *fl, struct funclog_writer *w, const char *dir, const char *name,
                 struct sy_error *err)
{
    struct funclog_file *f = calloc(1, sizeof(*f));
    size_t n = strlen(dir) + strlen(name) + 8;

    if (f == NULL)
        goto fail_oom;
    f->fd = -1;
    f->name = strdup(name);
    f->path = malloc(n);
    if (f->name == NULL || f->path == NULL)
        goto fail_oom;
    snprintf(f->path, n, "%s/%s.log", dir, name);

    pthread_mutex_lock(&w->mu);
    f->next = w->files;
    w->files = f;
    kick(w); /* create the file now rather than on the first tick */
    pthread_mutex_unlock(&w->mu);
    w->refs++;
    fl->w = w;
    fl->f = f;
    return 0;

fail_oom:
    file_free(f);
    sy_error_set(err, "out of memory");
    return SY_ENOMEM;
}

/* Append the pieces of one line to FL's pending buffer, or count it as dropped. */
static void append(struct funclog *fl, const char *const parts[], const size_t lens[], int n)
{
    struct funclog_writer *w = fl->w;
    struct funclog_file *f = fl->f;
    size_t total = 0, was;

    for (int i = 0; i < n; i++)
        total += lens[i];
    pthread_mutex_lock(&w->mu);
    /* Once a line is dropped, drop all until the writer has taken the pending lines and put
     * the notice after them: so the notice always sits exactly where lines are missing. */
    if (f->dropped > 0 || f->pend.len + f->out_left + total > FUNCLOG_CAP_BYTES)
        goto drop;
    if (flbuf_reserve(&f->pend, total) != 0) {
        if (f->dropped == 0)
            f->drop_err = ENOMEM;
        goto drop;
    }
    was = f->pend.len;
    for (int i = 0; i < n; i++) {
        memcpy(f->pend.data + f->pend.len, parts[i], lens[i]);
        f->pend.len += lens[i];
    }
    /* Only on crossing: a writer that cannot drain (disk error) is not woken per line. */
    if (was < FUNCLOG_KICK_BYTES && f->pend.len >= FUNCLOG_KICK_BYTES) {
        kick(w);
    } else if (w->asleep) {
        /* The first line after a quiet spell: the writer gathers for one tick from now. */
        w->asleep = 0;
        pthread_cond_signal(&w->wake_cv);
    }
    pthread_mutex_unlock(&w->mu);
    return;

drop:
    if (f->dropped++ == 0 && f->drop_err == 0)
        f->drop_err = f->io_err;
    f->st.lines_dropped++;
    pthread_mutex_unlock(&w->mu);
}

void funclog_line(struct funclog *fl, const char *request_id, const char *line, size_t len)
{
    char ts[32];
    const char *parts[6];
    size_t lens[6];

    if (fl->f == NULL)
        return;
    time_iso8601(ts, time_wall_ms());
    if (request_id == NULL)
        request_id = "-";
    parts[0] = ts;
    lens[0] = strlen(ts);
    parts[1] = "\t";
    lens[1] = 1;
    parts[2] = request_id;
    lens[2] = strlen(request_id);
    parts[3] = "\t";
    lens[3] = 1;
    parts[4] = line;
    lens[4] = len;
    parts[5] = "\n";
    lens[5] = 1;
    append(fl, parts, lens, 6);
}

void funclog_platform(struct funclog *fl, const char *line)
{
    const char *parts[2] = {line, "\n"};
    size_t lens[2] = {strlen(line), 1};

    if (fl->f == NULL)
        return;
    append(fl, parts, lens, 2);
}

void funclog_stats(const struct funclog *fl, struct funclog_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (fl->f == NULL)
        return;
    pthread_mutex_lock(&fl->w->mu);
    *out = fl->f->st;
    pthread_mutex_unlock(&fl->w->mu);
}

void funclog_close(struct funclog *fl)
{
    struct funclog_writer *w = fl->w;

    if (w == NULL)
        return;
    pthread_mutex_lock(&w->mu);
    fl->f->closing = 1; /* the writer frees it once its lines are written */
    kick(w);
    pthread_mutex_unlock(&w->mu);
    fl->f = NULL;
    fl->w = NULL;
    funclog_writer_unref(w);
}

void funclog_test_pause(int paused)
{
    atomic_store(&test_paused, paused);
}

int funclog_test_threads(void)
{
    return atomic_load(&threads_alive);
}
