/*
 * sources/fs/fs_state.c - the files the source knows, what it remembers of them across
 * restarts, and its helper thread.
 *
 * The file table maps a relative path to its entry (fs_int.h): what is under way for it, and
 * the version last processed when on_success / on_failure kept the file in place. Only those
 * kept versions need to outlive the broker (a deleted or moved file is gone from the root, and
 * what was in flight is simply found again by the catch-up scan). They are kept in a journal,
 * data_dir/fs/MAPPING.state, one line per change:
 *
 *   + INODE SIZE MTIME_NS HEX(relative path)     the version processed last (keep)
 *   - HEX(relative path)                         forgotten (deleted, moved, or gone)
 *
 * Hex keeps any byte of a name (no escaping rules, no newline in a line). The loop reads the
 * journal once at start (a local read, as long as the journal: bounded because it is compacted
 * then when it holds more than twice the live lines plus 256) and only appends afterwards; a
 * torn last line after a crash is ignored. Losing the last appends in a crash means those files
 * are delivered again after the restart (at-least-once), never that one is lost.
 *
 * The writes with their fdatasync() run on the `sy-fs` thread, which also hashes the files
 * (MD5 for the eTag): the loop hands it jobs and journal text under its mutex, and it answers
 * through an eventfd. Hash jobs go first, but a journal append never waits behind them longer
 * than SRC_FS_JOURNAL_DELAY_MS. A big file is read in SRC_FS_CHUNK pieces with a cancel check
 * between them, so a stop never waits for a whole file.
 */
#include "fs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/log.h"
#include "core/time.h"

#define SRC_FS_JOB_MAGIC 0x5346484au /* "SFHJ" */

/* ---- the file table ----------------------------------------------------------------------- */

static uint32_t hash_bytes(const char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static int ftab_grow(struct src_fs_ftab *t)
{
    size_t nb = t->nb ? t->nb * 2 : 256;
    struct src_fs_file **b = calloc(nb, sizeof(*b));

    if (b == NULL)
        return SY_ENOMEM;
    for (size_t i = 0; i < t->nb; i++) {
        struct src_fs_file *f = t->b[i], *next;

        for (; f != NULL; f = next) {
            next = f->hnext;
            f->hnext = b[f->hash & (nb - 1)];
            b[f->hash & (nb - 1)] = f;
        }
    }
    free(t->b);
    t->b = b;
    t->nb = nb;
    return 0;
}

struct src_fs_file *src_fs_file_get(struct src_fs *fs, const char *rel, size_t len, bool make)
{
    struct src_fs_ftab *t = &fs->files;
    uint32_t h = hash_bytes(rel, len);
    struct src_fs_file *f;

    if (t->nb > 0)
        for (f = t->b[h & (t->nb - 1)]; f != NULL; f = f->hnext)
            if (f->hash == h && f->len == len && memcmp(f->rel, rel, len) == 0)
                return f;
    if (!make)
        return NULL;
    if (t->n >= t->nb && ftab_grow(t) != 0)
        return NULL;
    f = calloc(1, sizeof(*f) + len + 1);
    if (f == NULL)
        return NULL;
    f->hash = h;
    f->len = len;
    memcpy(f->rel, rel, len);
    f->st = SRC_FS_F_IDLE;
    f->hnext = t->b[h & (t->nb - 1)];
    t->b[h & (t->nb - 1)] = f;
    t->n++;
    return f;
}

void src_fs_file_maybe_free(struct src_fs *fs, struct src_fs_file *f)
{
    struct src_fs_ftab *t = &fs->files;
    struct src_fs_file **link;

    if (f->st != SRC_FS_F_IDLE || f->done_known || f->unreadable)
        return;
    for (link = &t->b[f->hash & (t->nb - 1)]; *link != NULL; link = &(*link)->hnext) {
        if (*link == f) {
            *link = f->hnext;
            t->n--;
            free(f);
            return;
        }
    }
}

void src_fs_files_free(struct src_fs *fs)
{
    struct src_fs_ftab *t = &fs->files;

    for (size_t i = 0; i < t->nb; i++) {
        struct src_fs_file *f = t->b[i], *next;

        for (; f != NULL; f = next) {
            next = f->hnext;
            free(f);
        }
    }
    free(t->b);
    memset(t, 0, sizeof(*t));
    TAILQ_INIT(&fs->pending);
    fs->pending_n = 0;
}

bool src_fs_ident_eq(const struct src_fs_ident *a, const struct src_fs_ident *b)
{
    return a->ino == b->ino && a->size == b->size && a->mtime_ns == b->mtime_ns;
}

void src_fs_ident_of(struct src_fs_ident *id, const struct stat *st)
{
    id->ino = (uint64_t)st->st_ino;
    id->size = (int64_t)st->st_size;
    id->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* ---- the journal: lines ------------------------------------------------------------------- */

static int put_hex(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";

    if (buf_reserve(b, 2 * n + 1) != 0)
        return SY_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        b->data[b->len++] = hex[(unsigned char)s[i] >> 4];
        b->data[b->len++] = hex[(unsigned char)s[i] & 15];
    }
    b->data[b->len] = '\0';
    return 0;
}

static int put_done_line(struct buf *b, const struct src_fs_file *f)
{
    if (buf_printf(b, "+ %" PRIu64 " %" PRId64 " %" PRId64 " ", f->done.ino, f->done.size,
                   f->done.mtime_ns) != 0 ||
        put_hex(b, f->rel, f->len) != 0 || buf_append(b, "\n", 1) != 0)
        return SY_ENOMEM;
    return 0;
}

static int unhex(const char *s, size_t n, char *out)
{
    if (n % 2 != 0)
        return -1;
    for (size_t i = 0; i < n; i += 2) {
        int v = 0;

        for (size_t k = 0; k < 2; k++) {
            char c = s[i + k];

            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= c - '0';
            else if (c >= 'a' && c <= 'f')
                v |= c - 'a' + 10;
            else
                return -1;
        }
        if (v == 0)
            return -1; /* no NUL in a name */
        out[i / 2] = (char)v;
    }
    return 0;
}

/* Hand text (one or more whole lines) to the worker. */
static void journal_append(struct src_fs *fs, const struct buf *lines)
{
    struct src_fs_worker *w = &fs->w;
    int rc;

    if (!w->running) {
        log_warn("%s journal write after the worker stopped: lost (the file may be delivered "
                 "again after a restart)",
                 fs->prefix);
        return;
    }
    pthread_mutex_lock(&w->mu);
    rc = buf_append(&w->journal, lines->data, lines->len);
    if (rc == 0)
        w->want_gen++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (rc != 0)
        log_err("%s out of memory writing the state journal: the file may be delivered again "
                "after a restart",
                fs->prefix);
}

void src_fs_state_done(struct src_fs *fs, struct src_fs_file *f)
{
    struct buf b = {0};

    if (put_done_line(&b, f) == 0)
        journal_append(fs, &b);
    buf_free(&b);
}

void src_fs_state_forget(struct src_fs *fs, struct src_fs_file *f)
{
    struct buf b = {0};

    if (buf_puts(&b, "- ") == 0 && put_hex(&b, f->rel, f->len) == 0 && buf_append(&b, "\n", 1) == 0)
        journal_append(fs, &b);
    buf_free(&b);
}

/* One journal line LINE[0..N) into the table. Returns 1 (applied), 0 (malformed), SY_ENOMEM. */
static int load_line(struct src_fs *fs, char *line, size_t n)
{
    char name[4096];
    const char *hex;
    struct src_fs_file *f;
    unsigned long long ino;
    long long size, mtime;
    int used = 0;
    size_t hn;

    line[n] = '\0';
    if (n > 2 && line[0] == '-' && line[1] == ' ') {
        hex = line + 2;
        hn = n - 2;
        if (hn / 2 >= sizeof(name) || unhex(hex, hn, name) != 0)
            return 0;
        f = src_fs_file_get(fs, name, hn / 2, false);
        if (f != NULL) {
            f->done_known = false;
            src_fs_file_maybe_free(fs, f);
        }
        return 1;
    }
    if (n < 2 || line[0] != '+' ||
        sscanf(line, "+ %llu %lld %lld %n", &ino, &size, &mtime, &used) != 3 || used == 0)
        return 0;
    hex = line + used;
    hn = n - (size_t)used;
    if (hn == 0 || hn / 2 >= sizeof(name) || unhex(hex, hn, name) != 0)
        return 0;
    f = src_fs_file_get(fs, name, hn / 2, true);
    if (f == NULL)
        return SY_ENOMEM;
    f->done_known = true;
    f->done.ino = ino;
    f->done.size = size;
    f->done.mtime_ns = mtime;
    return 1;
}

int src_fs_state_load(struct src_fs *fs)
{
    FILE *fp = fopen(fs->state_path, "re");
    struct buf snap = {0};
    char *line = NULL;
    size_t cap = 0, lines = 0, live = 0;
    ssize_t n;
    int rc = 0;

    if (fp == NULL)
        return errno == ENOENT ? 0 : SY_EIO;
    while ((n = getline(&line, &cap, fp)) > 0) {
        if (line[n - 1] != '\n')
            break; /* a torn last line (crash mid-append) */
        rc = load_line(fs, line, (size_t)n - 1);
        if (rc < 0)
            break;
        if (rc == 0)
            log_warn("%s %s: line %zu is malformed; skipped", fs->prefix, fs->state_path,
                     lines + 1);
        rc = 0;
        lines++;
    }
    free(line);
    fclose(fp);
    if (rc != 0)
        return rc;
    /* Compact when the journal is mostly history: the worker writes the snapshot first. */
    for (size_t i = 0; i < fs->files.nb; i++)
        for (struct src_fs_file *f = fs->files.b[i]; f != NULL; f = f->hnext)
            live += f->done_known;
    if (lines > 2 * live + 256) {
        for (size_t i = 0; i < fs->files.nb; i++)
            for (struct src_fs_file *f = fs->files.b[i]; f != NULL; f = f->hnext)
                if (f->done_known && put_done_line(&snap, f) != 0) {
                    buf_free(&snap);
                    return SY_ENOMEM;
                }
        fs->w.snapshot = buf_take(&snap, &fs->w.snapshot_len);
        if (fs->w.snapshot == NULL) {
            /* Nothing live: an empty journal. */
            fs->w.snapshot = strdup("");
            fs->w.snapshot_len = 0;
            if (fs->w.snapshot == NULL)
                return SY_ENOMEM;
        }
        log_info("%s compacting %s: %zu lines, %zu live", fs->prefix, fs->state_path, lines, live);
    }
    return 0;
}

/* ---- the worker thread -------------------------------------------------------------------- */

/* Write all of P[0..N) to FD. 0 or an errno value. */
static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);

        if (k < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* The snapshot as the new journal: temp file, fsync, rename, fsync of the directory. Runs on
 * the worker. 0 or an errno value. */
static int write_snapshot(struct src_fs_worker *w, const char *text, size_t len)
{
    char tmp[4200], dir[4200], *slash;
    int fd, rc, dfd;

    snprintf(tmp, sizeof(tmp), "%s.tmp", w->path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno;
    rc = write_all(fd, text, len);
    if (rc == 0 && fsync(fd) != 0)
        rc = errno;
    close(fd);
    if (rc == 0 && rename(tmp, w->path) != 0)
        rc = errno;
    if (rc != 0) {
        unlink(tmp);
        return rc;
    }
    snprintf(dir, sizeof(dir), "%s", w->path);
    slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir)
        *slash = '\0';
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

/* Read JOB's file to its end, hashing it. Runs on the worker. */
static void hash_job(struct src_fs_worker *w, struct src_fs_hjob *job, unsigned char *chunk)
{
    struct md5_ctx c;
    unsigned char md[MD5_LEN];
    struct stat st;
    off_t off = 0;

    md5_init(&c);
    for (;;) {
        ssize_t k;

        if (atomic_load(&w->cancel)) {
            job->err = ECANCELED;
            return;
        }
        k = pread(job->fd, chunk, SRC_FS_CHUNK, off);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            job->err = errno;
            return;
        }
        if (k == 0)
            break;
        md5_update(&c, chunk, (size_t)k);
        off += k;
    }
    md5_final(&c, md);
    md5_hex(md, job->etag);
    job->bytes = (int64_t)off;
    if (fstat(job->fd, &st) != 0) {
        job->err = errno;
        return;
    }
    src_fs_ident_of(&job->after, &st);
}

static void signal_loop(struct src_fs_worker *w)
{
    uint64_t one = 1;

    while (write(w->efd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

static void *worker_main(void *arg)
{
    struct src_fs *fs = arg;
    struct src_fs_worker *w = &fs->w;
    unsigned char *chunk = malloc(SRC_FS_CHUNK);
    int64_t journal_since = 0; /* when the oldest unwritten append was seen; 0 none */

    pthread_mutex_lock(&w->mu);
    for (;;) {
        struct src_fs_hjob *job;
        bool journal_due;

        if (w->journal.len > 0 && journal_since == 0)
            journal_since = time_mono_ms();
        journal_due =
            w->journal.len > 0 && (w->todo == NULL || w->quit ||
                                   time_mono_ms() - journal_since >= SRC_FS_JOURNAL_DELAY_MS);
        if (w->snapshot != NULL) {
            char *text = w->snapshot;
            size_t len = w->snapshot_len;
            int rc;

            w->snapshot = NULL;
            pthread_mutex_unlock(&w->mu);
            rc = write_snapshot(w, text, len);
            free(text);
            if (w->jfd < 0)
                w->jfd = open(w->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
            pthread_mutex_lock(&w->mu);
            if (rc != 0)
                snprintf(w->err, sizeof(w->err), "compacting %s: %s", w->path, strerror(rc));
            continue;
        }
        if (journal_due) {
            struct buf text = w->journal;
            uint64_t gen = w->want_gen;
            int rc = 0;

            w->journal = (struct buf){0};
            journal_since = 0;
            pthread_mutex_unlock(&w->mu);
            if (w->jfd < 0)
                w->jfd = open(w->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
            if (w->jfd < 0)
                rc = errno;
            if (rc == 0)
                rc = write_all(w->jfd, text.data, text.len);
            if (rc == 0 && fdatasync(w->jfd) != 0)
                rc = errno;
            buf_free(&text);
            pthread_mutex_lock(&w->mu);
            /* A failed write is reported, not retried: those files may be delivered again
             * after a restart, which is the at-least-once promise anyway. */
            if (rc != 0)
                snprintf(w->err, sizeof(w->err), "appending to %s: %s", w->path, strerror(rc));
            w->synced_gen = gen;
            pthread_mutex_unlock(&w->mu);
            signal_loop(w);
            pthread_mutex_lock(&w->mu);
            continue;
        }
        if (w->todo != NULL) {
            job = w->todo;
            w->todo = job->next;
            if (w->todo == NULL)
                w->todo_tail = NULL;
            job->next = NULL;
            pthread_mutex_unlock(&w->mu);
            if (chunk == NULL)
                job->err = ENOMEM;
            else
                hash_job(w, job, chunk);
            pthread_mutex_lock(&w->mu);
            if (w->done_tail == NULL)
                w->done = job;
            else
                w->done_tail->next = job;
            w->done_tail = job;
            pthread_mutex_unlock(&w->mu);
            signal_loop(w);
            pthread_mutex_lock(&w->mu);
            continue;
        }
        if (w->quit)
            break;
        if (w->journal.len > 0) {
            /* Wait for the journal's delay to pass (jobs keep coming). */
            struct timespec ts;

            time_deadline(&ts, CLOCK_REALTIME, SRC_FS_JOURNAL_DELAY_MS);
            pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        } else {
            pthread_cond_wait(&w->cv, &w->mu);
        }
    }
    pthread_mutex_unlock(&w->mu);
    free(chunk);
    return NULL;
}

/* The eventfd: finished jobs and synced journal appends. */
static void on_worker(evutil_socket_t fd, short what, void *arg)
{
    struct src_fs *fs = arg;
    struct src_fs_worker *w = &fs->w;
    struct src_fs_hjob *jobs;
    uint64_t v;
    char err[256];

    (void)what;
    while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&w->mu);
    jobs = w->done;
    w->done = w->done_tail = NULL;
    snprintf(err, sizeof(err), "%s", w->err);
    w->err[0] = '\0';
    pthread_mutex_unlock(&w->mu);
    if (err[0] != '\0')
        log_err("%s state journal: %s; files processed meanwhile may be delivered again after "
                "a restart",
                fs->prefix, err);
    for (struct src_fs_hjob *j = jobs; j != NULL; j = j->next)
        SY_ASSERT(j->magic == SRC_FS_JOB_MAGIC);
    src_fs_jobs_done(fs, jobs);
}

int src_fs_worker_start(struct src_fs *fs)
{
    struct src_fs_worker *w = &fs->w;
    int rc;

    w->jfd = -1;
    w->path = fs->state_path;
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->efd < 0)
        return SY_EIO;
    w->ev = event_new(fs->evb, w->efd, EV_READ | EV_PERSIST, on_worker, fs);
    if (w->ev == NULL || event_add(w->ev, NULL) != 0)
        return SY_ENOMEM;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    atomic_store(&w->cancel, false);
    rc = pthread_create(&w->th, NULL, worker_main, fs);
    if (rc != 0) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        return SY_ENOMEM;
    }
    pthread_setname_np(w->th, "sy-fs");
    w->running = true;
    return 0;
}

void src_fs_worker_stop(struct src_fs *fs)
{
    struct src_fs_worker *w = &fs->w;
    struct src_fs_hjob *j, *next;

    if (w->running) {
        pthread_mutex_lock(&w->mu);
        w->quit = true;
        atomic_store(&w->cancel, true);
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->th, NULL);
        w->running = false;
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
    }
    /* Jobs never run or never collected: the loop still owns their files' entries. */
    for (int pass = 0; pass < 2; pass++) {
        for (j = pass == 0 ? w->todo : w->done; j != NULL; j = next) {
            next = j->next;
            if (j->fd >= 0)
                close(j->fd);
            free(j);
        }
    }
    w->todo = w->todo_tail = w->done = w->done_tail = NULL;
    if (w->ev != NULL)
        event_free(w->ev);
    w->ev = NULL;
    if (w->efd >= 0)
        close(w->efd);
    w->efd = -1;
    if (w->jfd >= 0)
        close(w->jfd);
    w->jfd = -1;
    buf_free(&w->journal);
    free(w->snapshot);
    w->snapshot = NULL;
}

void src_fs_worker_push(struct src_fs *fs, struct src_fs_hjob *job)
{
    struct src_fs_worker *w = &fs->w;

    job->magic = SRC_FS_JOB_MAGIC;
    job->next = NULL;
    pthread_mutex_lock(&w->mu);
    if (w->todo_tail == NULL)
        w->todo = job;
    else
        w->todo_tail->next = job;
    w->todo_tail = job;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

bool src_fs_worker_synced(struct src_fs *fs)
{
    struct src_fs_worker *w = &fs->w;
    bool synced;

    if (!w->running)
        return true;
    pthread_mutex_lock(&w->mu);
    synced = w->synced_gen >= w->want_gen && w->journal.len == 0 && w->snapshot == NULL;
    pthread_mutex_unlock(&w->mu);
    return synced;
}
