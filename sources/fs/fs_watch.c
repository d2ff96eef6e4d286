/*
 * sources/fs/fs_watch.c - finding files: paths beneath the root, the rules that select them,
 * inotify, and the scanner.
 *
 * No path escapes the root. Every path the source opens is relative to the root's descriptor
 * and walked one component at a time with openat(O_NOFOLLOW): a symlink anywhere (a directory
 * or the file itself) makes the open fail with ELOOP / ENOTDIR, and "." / ".." components are
 * refused before any syscall. Names come from readdir() and inotify, which never hold '/'.
 * Directories are watched through /proc/self/fd/N of a descriptor opened that way, so the
 * watch is on exactly the directory that was checked (a path could be swapped in between).
 * Only the root itself is resolved with realpath() when it is opened: the configured path may
 * be a symlink (documented).
 *
 * inotify: one instance per source, read on the loop (level-triggered; a bounded number of
 * reads per wake-up so that a storm does not starve the loop). IN_CLOSE_WRITE (a writer closed
 * the file) gives ObjectCreated:Put, IN_MOVED_TO (renamed into the tree) ObjectCreated:Copy; a
 * file still open for writing gives neither. IN_Q_OVERFLOW means events were lost: everything
 * is scanned again. The root's IN_DELETE_SELF / IN_MOVE_SELF / IN_UNMOUNT / IN_IGNORED put the
 * source in SOURCE_PROBLEM (fs.c retries). A subdirectory created or renamed into the tree is
 * watched and scanned (so files already inside it are found); one deleted or renamed away is
 * forgotten with everything under it.
 *
 * The scanner walks directories in steps of SRC_FS_SCAN_STEP entries per loop turn, and stops
 * while SRC_FS_PENDING_MAX candidates wait, so neither a huge directory nor a huge backlog
 * stalls the loop or fills memory. A file found by a scan (not closed under our eyes) is taken
 * only when its mtime is settle_ms old; younger ones are looked at again by a rescan after that
 * time (or by the min_age_ms scans). Files of a directory renamed into the tree are taken at
 * once, as Copy.
 */
#include "fs_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/log.h"
#include "core/time.h"

#define WATCH_MASK                                                                                 \
    (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB |            \
     IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK)

/* Reads of the inotify descriptor per wake-up at most (then the loop runs other work). */
#define READS_PER_WAKE 8

/* ---- paths beneath the root --------------------------------------------------------------- */

int src_fs_open_beneath(struct src_fs *fs, const char *rel, int flags, bool parent,
                        const char **name)
{
    const char *p = rel;
    int fd = fs->rootfd, nfd;

    if (fd < 0)
        return -ENOENT;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash != NULL ? (size_t)(slash - p) : strlen(p);
        char comp[NAME_MAX + 1];
        bool last = slash == NULL;

        if (n == 0 || n > NAME_MAX || (n == 1 && p[0] == '.') ||
            (n == 2 && p[0] == '.' && p[1] == '.')) {
            nfd = -EINVAL;
            break;
        }
        if (last && parent) {
            *name = p;
            nfd = fd == fs->rootfd ? openat(fs->rootfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC) : fd;
            if (nfd < 0)
                nfd = -errno;
            return nfd;
        }
        memcpy(comp, p, n);
        comp[n] = '\0';
        if (last)
            nfd = openat(fd, comp, flags | O_NOFOLLOW | O_CLOEXEC);
        else
            nfd = openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (nfd < 0)
            nfd = -errno;
        if (fd != fs->rootfd)
            close(fd);
        if (nfd < 0 || last)
            return nfd;
        fd = nfd;
        p = slash + 1;
    }
    if (fd != fs->rootfd)
        close(fd);
    return nfd;
}

bool src_fs_ignored(const struct src_fs *fs, const char *name, const char *rel)
{
    const struct cfg_strlist *ig = &fs->cfg->ignore;

    for (size_t i = 0; i < ig->n; i++) {
        const char *pat = ig->v[i];

        if (strchr(pat, '/') != NULL) {
            if (fnmatch(pat, rel, FNM_PATHNAME) == 0)
                return true;
        } else if (fnmatch(pat, name, 0) == 0) {
            return true;
        }
    }
    return false;
}

bool src_fs_key_match(const struct src_fs *fs, const char *rel, size_t len)
{
    size_t pl = strlen(fs->cfg->prefix), sl = strlen(fs->cfg->suffix);

    return len >= pl && len >= sl && memcmp(rel, fs->cfg->prefix, pl) == 0 &&
           memcmp(rel + len - sl, fs->cfg->suffix, sl) == 0;
}

/* Whether the directory REL can hold keys that match the prefix (S3's prefix rule, used to
 * prune the walk), and is not one of the move: directories inside the root. */
static bool dir_wanted(const struct src_fs *fs, const char *rel, size_t len)
{
    const char *pre = fs->cfg->prefix;
    size_t pl = strlen(pre);

    for (size_t i = 0; i < 2; i++)
        if (fs->excl[i] != NULL && strcmp(fs->excl[i], rel) == 0)
            return false;
    /* "a/b" may hold "a/b/..." keys: the prefix and "a/b/" agree on their common length. */
    if (pl == 0)
        return true;
    if (memcmp(rel, pre, len < pl ? len : pl) != 0)
        return false;
    return len >= pl || pre[len] == '/';
}

/* REL joined with NAME into OUT (PATH_MAX). Returns the length, or 0 when too long. */
static size_t join(char *out, const char *rel, size_t rel_len, const char *name)
{
    size_t nl = strlen(name);

    if (rel_len + 1 + nl + 1 > PATH_MAX)
        return 0;
    if (rel_len == 0) {
        memcpy(out, name, nl + 1);
        return nl;
    }
    memcpy(out, rel, rel_len);
    out[rel_len] = '/';
    memcpy(out + rel_len + 1, name, nl + 1);
    return rel_len + 1 + nl;
}

/* ---- the directory table ------------------------------------------------------------------ */

static struct src_fs_dir *dir_find(struct src_fs *fs, int wd)
{
    struct src_fs_dtab *t = &fs->dirs;

    if (t->nb == 0)
        return NULL;
    for (struct src_fs_dir *d = t->b[(unsigned)wd & (t->nb - 1)]; d != NULL; d = d->hnext)
        if (d->wd == wd)
            return d;
    return NULL;
}

static int dir_insert(struct src_fs *fs, int wd, const char *rel, size_t len)
{
    struct src_fs_dtab *t = &fs->dirs;
    struct src_fs_dir *d;

    if (t->n >= t->nb) {
        size_t nb = t->nb ? t->nb * 2 : 64;
        struct src_fs_dir **b = calloc(nb, sizeof(*b));

        if (b == NULL)
            return SY_ENOMEM;
        for (size_t i = 0; i < t->nb; i++) {
            for (struct src_fs_dir *x = t->b[i], *next; x != NULL; x = next) {
                next = x->hnext;
                x->hnext = b[(unsigned)x->wd & (nb - 1)];
                b[(unsigned)x->wd & (nb - 1)] = x;
            }
        }
        free(t->b);
        t->b = b;
        t->nb = nb;
    }
    d = calloc(1, sizeof(*d) + len + 1);
    if (d == NULL)
        return SY_ENOMEM;
    d->wd = wd;
    d->len = len;
    memcpy(d->rel, rel, len);
    d->hnext = t->b[(unsigned)wd & (t->nb - 1)];
    t->b[(unsigned)wd & (t->nb - 1)] = d;
    t->n++;
    return 0;
}

static void dir_remove(struct src_fs *fs, struct src_fs_dir *d, bool rm_watch)
{
    struct src_fs_dtab *t = &fs->dirs;
    struct src_fs_dir **link = &t->b[(unsigned)d->wd & (t->nb - 1)];

    for (; *link != NULL; link = &(*link)->hnext) {
        if (*link == d) {
            *link = d->hnext;
            t->n--;
            break;
        }
    }
    if (rm_watch && fs->ifd >= 0)
        inotify_rm_watch(fs->ifd, d->wd);
    free(d);
}

/* Forget REL and every directory under it (deleted, or renamed away). */
static void dir_forget_tree(struct src_fs *fs, const char *rel, size_t len)
{
    struct src_fs_dtab *t = &fs->dirs;

    for (size_t i = 0; i < t->nb; i++) {
        struct src_fs_dir *d = t->b[i], *next;

        for (; d != NULL; d = next) {
            next = d->hnext;
            if (d->len >= len && memcmp(d->rel, rel, len) == 0 &&
                (d->len == len || d->rel[len] == '/'))
                dir_remove(fs, d, true);
        }
    }
}

void src_fs_dirs_free(struct src_fs *fs)
{
    struct src_fs_dtab *t = &fs->dirs;

    for (size_t i = 0; i < t->nb; i++) {
        for (struct src_fs_dir *d = t->b[i], *next; d != NULL; d = next) {
            next = d->hnext;
            free(d);
        }
    }
    free(t->b);
    memset(t, 0, sizeof(*t));
}

/*
 * Watch the directory open as FD (checked beneath the root) under the name REL. Adding a
 * watch on an inode already watched returns its wd again (and the rename of a directory
 * inside the tree is a forget and an add), so this is idempotent. 0 or -errno.
 */
static int dir_watch(struct src_fs *fs, int fd, const char *rel, size_t len)
{
    char proc[64];
    struct src_fs_dir *d;
    int wd;

    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    wd = inotify_add_watch(fs->ifd, proc, WATCH_MASK);
    if (wd < 0)
        return -errno;
    d = dir_find(fs, wd);
    if (d != NULL) {
        if (d->len == len && memcmp(d->rel, rel, len) == 0)
            return 0;
        dir_remove(fs, d, false); /* the same directory under a new name */
    }
    if (dir_insert(fs, wd, rel, len) != 0)
        return -ENOMEM;
    if (len == 0)
        fs->root_wd = wd;
    return 0;
}

/* ---- candidates ------------------------------------------------------------------------------ */

static void queue(struct src_fs *fs, struct src_fs_file *f, bool copy)
{
    f->st = SRC_FS_F_PENDING;
    f->copy = copy;
    TAILQ_INSERT_TAIL(&fs->pending, f, plink);
    fs->pending_n++;
    if (fs->pending_n >= SRC_FS_PENDING_MAX)
        src_fs_watch_read(fs, false); /* the kernel queue holds the rest (or overflows) */
    src_fs_kick(fs);
}

void src_fs_consider_event(struct src_fs *fs, const char *rel, size_t len, bool copy)
{
    struct src_fs_file *f = src_fs_file_get(fs, rel, len, true);

    if (f == NULL) {
        log_err("%s out of memory noting %s; it is found by the next scan", fs->prefix, rel);
        return;
    }
    f->unreadable = false;
    switch (f->st) {
    case SRC_FS_F_PENDING:
        f->copy = copy;
        return;
    case SRC_FS_F_HASHING:
    case SRC_FS_F_DELIVERED:
        f->again = true;
        f->again_copy = copy;
        return;
    case SRC_FS_F_IDLE:
        queue(fs, f, copy);
        return;
    }
}

/* A file a scan found, with ST (lstat). MOVED: inside a directory renamed in. */
static void consider_scan(struct src_fs *fs, const char *rel, size_t len, const struct stat *st,
                          bool moved)
{
    struct src_fs_ident id;
    struct src_fs_file *f = src_fs_file_get(fs, rel, len, false);
    int64_t age_ms;

    src_fs_ident_of(&id, st);
    if (f != NULL) {
        f->seen_gen = fs->gen;
        if (f->st == SRC_FS_F_PENDING || f->st == SRC_FS_F_HASHING)
            return;
        if (f->st == SRC_FS_F_DELIVERED) {
            if (!src_fs_ident_eq(&f->cur, &id))
                f->again = true;
            return;
        }
        if (f->done_known && src_fs_ident_eq(&f->done, &id))
            return;
    }
    age_ms = (int64_t)time_wall_ms() - id.mtime_ns / 1000000;
    if (!moved && age_ms < fs->settle_ms) {
        fs->scan_young = true; /* looked at again once it is old enough (or closed) */
        return;
    }
    if (f == NULL) {
        f = src_fs_file_get(fs, rel, len, true);
        if (f == NULL) {
            log_err("%s out of memory noting %s; it is found by the next scan", fs->prefix, rel);
            return;
        }
        f->seen_gen = fs->gen;
    }
    f->unreadable = false;
    queue(fs, f, moved);
}

/* ---- the scanner ------------------------------------------------------------------------- */

static int scan_push(struct src_fs *fs, const char *rel, bool moved)
{
    if (fs->stack_n == fs->stack_cap) {
        size_t cap = fs->stack_cap ? fs->stack_cap * 2 : 16;
        struct src_fs_scan_item *v = realloc(fs->stack, cap * sizeof(*v));

        if (v == NULL)
            return SY_ENOMEM;
        fs->stack = v;
        fs->stack_cap = cap;
    }
    fs->stack[fs->stack_n].rel = strdup(rel);
    if (fs->stack[fs->stack_n].rel == NULL)
        return SY_ENOMEM;
    fs->stack[fs->stack_n].moved = moved;
    fs->stack_n++;
    return 0;
}

static void scan_close_cur(struct src_fs *fs)
{
    if (fs->dirp != NULL)
        closedir(fs->dirp);
    fs->dirp = NULL;
    free(fs->cur.rel);
    fs->cur.rel = NULL;
}

void src_fs_scan_reset(struct src_fs *fs)
{
    scan_close_cur(fs);
    for (size_t i = 0; i < fs->stack_n; i++)
        free(fs->stack[i].rel);
    free(fs->stack);
    fs->stack = NULL;
    fs->stack_n = fs->stack_cap = 0;
    fs->scanning = false;
}

static void scan_step_later(struct src_fs *fs)
{
    if (fs->scan_ev != NULL)
        event_active(fs->scan_ev, EV_TIMEOUT, 0);
}

/* Scan the directory REL (and, when recursive, below) once it is watched. */
static void scan_dir(struct src_fs *fs, const char *rel, bool moved)
{
    if (scan_push(fs, rel, moved) != 0) {
        log_err("%s out of memory queueing %s for a scan", fs->prefix, rel);
        return;
    }
    if (!fs->scanning) {
        fs->scanning = true;
        fs->scan_full = false;
        fs->scan_young = false;
    }
    scan_step_later(fs);
}

void src_fs_scan_all(struct src_fs *fs, bool catchup)
{
    if (!fs->root_ok)
        return;
    src_fs_scan_reset(fs);
    fs->gen++;
    fs->catchup = catchup;
    if (scan_push(fs, "", false) != 0) {
        log_err("%s out of memory starting a scan", fs->prefix);
        return;
    }
    fs->scanning = true;
    fs->scan_full = true;
    fs->scan_young = false;
    fs->rescan_wanted = false;
    scan_step_later(fs);
}

void src_fs_scan_resume(struct src_fs *fs)
{
    if (fs->scanning)
        scan_step_later(fs);
}

/* A full scan finished: forget processed files that are no longer there (catch-up only). */
static void scan_prune(struct src_fs *fs)
{
    for (size_t i = 0; i < fs->files.nb; i++) {
        for (struct src_fs_file *f = fs->files.b[i], *next; f != NULL; f = next) {
            next = f->hnext;
            if (f->st == SRC_FS_F_IDLE && f->done_known && f->seen_gen != fs->gen) {
                src_fs_state_forget(fs, f);
                f->done_known = false;
                src_fs_file_maybe_free(fs, f);
            }
        }
    }
}

static void scan_finished(struct src_fs *fs)
{
    struct timeval tv = {fs->settle_ms / 1000, (fs->settle_ms % 1000) * 1000};
    bool full = fs->scan_full;

    fs->scanning = false;
    if (full && fs->catchup) {
        scan_prune(fs);
        fs->catchup = false;
        log_info("%s catch-up scan done: %zu files queued", fs->prefix, fs->pending_n);
    }
    if (fs->rescan_wanted) {
        src_fs_scan_all(fs, false);
        return;
    }
    /* Files too young to take: look again once they are old enough (the min_age_ms scans do
     * that on their own). */
    if (fs->scan_young && fs->cfg->min_age_ms == 0 && fs->rescan_ev != NULL)
        evtimer_add(fs->rescan_ev, &tv);
}

/* Open and watch the next directory of the stack. Returns false when the stack is empty. */
static bool scan_next_dir(struct src_fs *fs)
{
    while (fs->stack_n > 0) {
        struct src_fs_scan_item it = fs->stack[--fs->stack_n];
        int fd, lfd, rc;
        DIR *d;

        fd = it.rel[0] == '\0'
                 ? openat(fs->rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                 : src_fs_open_beneath(fs, it.rel, O_RDONLY | O_DIRECTORY, false, NULL);
        if (fd < 0 && it.rel[0] == '\0')
            fd = -errno;
        if (fd < 0) {
            /* Gone meanwhile, or a symlink to a directory: not ours to follow. */
            log_debug("%s not scanning %s: %s", fs->prefix, it.rel[0] ? it.rel : ".",
                      strerror(-fd));
            free(it.rel);
            continue;
        }
        lfd = fd;
        rc = fs->ifd >= 0 ? dir_watch(fs, lfd, it.rel, strlen(it.rel)) : 0;
        if (rc != 0) {
            if (it.rel[0] == '\0') {
                close(fd);
                free(it.rel);
                src_fs_root_lost(fs, "cannot watch %s: %s", fs->root_real, strerror(-rc));
                return false;
            }
            log_warn("%s cannot watch %s: %s%s; files in it are found by scans only", fs->prefix,
                     it.rel, strerror(-rc),
                     rc == -ENOSPC ? " (fs.inotify.max_user_watches reached)" : "");
        }
        d = fdopendir(fd);
        if (d == NULL) {
            close(fd);
            free(it.rel);
            continue;
        }
        fs->dirp = d;
        fs->cur = it;
        return true;
    }
    return false;
}

/* One step: at most SRC_FS_SCAN_STEP entries. */
static void on_scan(evutil_socket_t fd, short what, void *arg)
{
    struct src_fs *fs = arg;
    char rel[PATH_MAX];
    size_t budget = SRC_FS_SCAN_STEP;

    (void)fd;
    (void)what;
    if (!fs->scanning || !fs->root_ok || fs->stopping)
        return;
    while (budget > 0) {
        struct dirent *de;
        struct stat st;
        size_t rl;

        if (fs->pending_n >= SRC_FS_PENDING_MAX)
            return; /* the pump resumes the scan (src_fs_scan_resume) */
        if (fs->dirp == NULL && !scan_next_dir(fs)) {
            if (fs->scanning)
                scan_finished(fs);
            return;
        }
        errno = 0;
        de = readdir(fs->dirp);
        if (de == NULL) {
            scan_close_cur(fs);
            continue;
        }
        budget--;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        rl = join(rel, fs->cur.rel, strlen(fs->cur.rel), de->d_name);
        if (rl == 0 || src_fs_ignored(fs, de->d_name, rel))
            continue;
        if (fstatat(dirfd(fs->dirp), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue; /* deleted meanwhile */
        if (S_ISDIR(st.st_mode)) {
            if (fs->cfg->recursive && dir_wanted(fs, rel, rl) &&
                scan_push(fs, rel, fs->cur.moved) != 0)
                log_err("%s out of memory queueing %s for a scan", fs->prefix, rel);
        } else if (S_ISREG(st.st_mode)) {
            if (src_fs_key_match(fs, rel, rl))
                consider_scan(fs, rel, rl, &st, fs->cur.moved);
        } else if (S_ISLNK(st.st_mode)) {
            log_debug("%s %s is a symlink: not followed", fs->prefix, rel);
        }
    }
    scan_step_later(fs);
}

static void on_rescan(evutil_socket_t fd, short what, void *arg)
{
    struct src_fs *fs = arg;

    (void)fd;
    (void)what;
    if (fs->stopping || !fs->root_ok)
        return;
    if (fs->scanning)
        fs->rescan_wanted = true;
    else
        src_fs_scan_all(fs, false);
}

/* ---- inotify ------------------------------------------------------------------------------ */

static void on_event(struct src_fs *fs, const struct inotify_event *ev)
{
    struct src_fs_dir *d;
    char rel[PATH_MAX];
    size_t rl;

    if (ev->mask & IN_Q_OVERFLOW) {
        fs->overflows++;
        log_warn("%s inotify queue overflowed (events were lost); rescanning %s", fs->prefix,
                 fs->root_real);
        if (fs->scanning && fs->scan_full)
            fs->rescan_wanted = true;
        else
            src_fs_scan_all(fs, false);
        return;
    }
    d = dir_find(fs, ev->wd);
    if (d == NULL)
        return; /* a directory forgotten since (its events still queued) */
    if (d->len == 0 && (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT | IN_IGNORED))) {
        src_fs_root_lost(fs, "the watched directory %s was %s", fs->root_real,
                         ev->mask & IN_MOVE_SELF ? "moved away"
                         : ev->mask & IN_UNMOUNT ? "unmounted"
                                                 : "deleted");
        return;
    }
    if (ev->mask & IN_IGNORED) {
        dir_remove(fs, d, false);
        return;
    }
    if (ev->len == 0 || ev->name[0] == '\0')
        return;
    rl = join(rel, d->rel, d->len, ev->name);
    if (rl == 0 || src_fs_ignored(fs, ev->name, rel))
        return;
    if (ev->mask & IN_ISDIR) {
        if ((ev->mask & (IN_MOVED_FROM | IN_DELETE)) != 0)
            dir_forget_tree(fs, rel, rl);
        if ((ev->mask & (IN_CREATE | IN_MOVED_TO)) != 0 && fs->cfg->recursive &&
            dir_wanted(fs, rel, rl))
            scan_dir(fs, rel, (ev->mask & IN_MOVED_TO) != 0);
        return;
    }
    if (!src_fs_key_match(fs, rel, rl))
        return;
    if (ev->mask & IN_CLOSE_WRITE) {
        src_fs_consider_event(fs, rel, rl, false);
    } else if (ev->mask & IN_MOVED_TO) {
        src_fs_consider_event(fs, rel, rl, true);
    } else if (ev->mask & IN_ATTRIB) {
        struct src_fs_file *f = src_fs_file_get(fs, rel, rl, false);

        if (f != NULL && f->unreadable)
            src_fs_consider_event(fs, rel, rl, false); /* perhaps readable now */
    } else if (ev->mask & (IN_DELETE | IN_MOVED_FROM)) {
        struct src_fs_file *f = src_fs_file_get(fs, rel, rl, false);

        /* A kept file removed by someone: nothing to remember any more. */
        if (f != NULL && f->st == SRC_FS_F_IDLE && (f->done_known || f->unreadable)) {
            if (f->done_known)
                src_fs_state_forget(fs, f);
            f->done_known = false;
            f->unreadable = false;
            src_fs_file_maybe_free(fs, f);
        }
    }
}

static void on_inotify(evutil_socket_t fd, short what, void *arg)
{
    struct src_fs *fs = arg;

    (void)what;
    for (int r = 0; r < READS_PER_WAKE && fs->ifd >= 0 && fs->iev_on; r++) {
        ssize_t n = read(fd, fs->ibuf, sizeof(fs->ibuf));

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                log_warn("%s reading inotify: %s", fs->prefix, strerror(errno));
            return;
        }
        if (n == 0)
            return;
        for (char *p = fs->ibuf; p < fs->ibuf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)(void *)p;

            p += sizeof(*ev) + ev->len;
            on_event(fs, ev);
            if (fs->ifd < 0)
                return; /* the root went away: the rest of the buffer is moot */
        }
    }
}

void src_fs_watch_read(struct src_fs *fs, bool on)
{
    if (fs->iev == NULL || fs->iev_on == on)
        return;
    if (on)
        event_add(fs->iev, NULL);
    else
        event_del(fs->iev);
    fs->iev_on = on;
}

int src_fs_watch_start(struct src_fs *fs)
{
    fs->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fs->ifd < 0)
        return -errno;
    fs->iev = event_new(fs->evb, fs->ifd, EV_READ | EV_PERSIST, on_inotify, fs);
    if (fs->scan_ev == NULL)
        fs->scan_ev = event_new(fs->evb, -1, 0, on_scan, fs);
    if (fs->rescan_ev == NULL)
        fs->rescan_ev = evtimer_new(fs->evb, on_rescan, fs);
    if (fs->iev == NULL || fs->scan_ev == NULL || fs->rescan_ev == NULL)
        return -ENOMEM;
    fs->iev_on = false;
    src_fs_watch_read(fs, !fs->paused);
    /* The root's watch first, then the listing (src_fs_scan_all): a file closed in between is
     * seen twice, and the file table makes that one candidate. */
    {
        int fd = openat(fs->rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

        if (fd < 0)
            return -errno;
        rc = dir_watch(fs, fd, "", 0);
        close(fd);
        if (rc != 0)
            return rc;
    }
    return 0;
}

void src_fs_watch_stop(struct src_fs *fs)
{
    if (fs->iev != NULL)
        event_free(fs->iev);
    fs->iev = NULL;
    fs->iev_on = false;
    if (fs->ifd >= 0)
        close(fs->ifd);
    fs->ifd = -1;
    src_fs_dirs_free(fs);
    src_fs_scan_reset(fs);
    if (fs->rescan_ev != NULL)
        event_del(fs->rescan_ev);
}
