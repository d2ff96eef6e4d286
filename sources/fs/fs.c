/*
 * sources/fs/fs.c - the file-drop source: `source: fs: {path, recursive, prefix, suffix,
 * ignore, bucket, on_success, on_failure, min_age_ms, scan_interval_ms}`.
 *
 * A file dropped into the watched directory becomes one S3 ObjectCreated record
 * (fs_event.c), once, under its final name. This file owns the config table, the source_ops,
 * and the path of a file through the source:
 *
 *   found (inotify or a scan: fs_watch.c) -> PENDING (the file table dedups: one entry per
 *   path) -> the pump opens it beneath the root and, while the host has room, hands the open
 *   descriptor to the `sy-fs` thread (fs_state.c), which hashes it (the eTag: a big file never
 *   stalls the loop) -> HASHING -> back on the loop: a file that changed while it was read is
 *   dropped (its next close or scan brings it back); otherwise its record goes to the host ->
 *   DELIVERED -> ack(): on_success for SOURCE_DONE (processed, or filtered out), on_failure for
 *   SOURCE_DISCARD (the error policy gave up) -> keep (remembered in the state journal so it is
 *   never taken again), delete, or move:DIR (renamed under DIR with its relative path; a name
 *   taken there gets a .<ms> suffix).
 *
 * What identifies a version of a file: its relative path, inode, size and mtime (ns). A file
 * kept and later overwritten or touched with new content is a new object, as in S3. Before a
 * delete or a move the file's identity is checked against the version delivered; one that
 * changed since is left in place and taken again as a new object.
 *
 * Catch-up: start() reads the journal, then a full scan delivers what arrived while the broker
 * was down (and forgets kept files that were removed meanwhile). The root missing at start, or
 * deleted, moved or unmounted later, puts the source in SOURCE_PROBLEM; it is looked for again
 * every second and, once back, watched and scanned again.
 *
 * Host callbacks (deliver, room, state) are never called from inside an op the host calls
 * (ack, release, pause, resume, start, stop): those only change state and activate `kick`.
 */
#include "fs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/evhelp.h"
#include "core/jsonstr.h"
#include "core/log.h"
#include "core/time.h"

#define SRC_FS_MAGIC 0x53524653u /* "SRFS" */

#define SRC_FS_CHECK(p)                                                                            \
    do {                                                                                           \
        if ((p) == NULL || (p)->magic != SRC_FS_MAGIC) {                                           \
            log_err("[source:fs] %s:%d: bad magic", __FILE__, __LINE__);                           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

void src_fs_kick(struct src_fs *fs)
{
    if (fs->kick != NULL)
        event_active(fs->kick, EV_TIMEOUT, 0);
}

/* ---------------------------------------------------------------------------------------- */
/* The config table                                                                          */

static const struct cfg_field fs_fields[] = {
    CFG_STR("path", struct src_fs_cfg, path, NULL, CFG_F_REQUIRED,
            "the directory watched for files (relative to the config file); a symlink here is "
            "followed, none below it"),
    CFG_BOOL("recursive", struct src_fs_cfg, recursive, 0, 0,
             "watch subdirectories too (new ones included, with the files already in them); "
             "keys are relative paths such as in/2026/a.csv"),
    CFG_STR("prefix", struct src_fs_cfg, prefix, "", 0,
            "S3 filter rule: only keys (relative paths) that start with this"),
    CFG_STR("suffix", struct src_fs_cfg, suffix, "", 0,
            "S3 filter rule: only keys that end with this (e.g. .csv)"),
    CFG_STRLIST("ignore", struct src_fs_cfg, ignore, 0,
                "glob patterns of names never delivered, matched against each path component "
                "(against the relative path when the pattern holds a '/'); default [\".*\", "
                "\"*.tmp\", \"*.part\", \"*.swp\"]; a list given replaces the default"),
    CFG_STR("bucket", struct src_fs_cfg, bucket, NULL, 0,
            "s3.bucket.name of the records; default: the watched directory's name"),
    CFG_STR("on_success", struct src_fs_cfg, on_success, "keep", 0,
            "after the function processed the file (or a filter dropped it): keep (remembered, "
            "never delivered again unless it changes), delete, or move:DIR"),
    CFG_STR("on_failure", struct src_fs_cfg, on_failure, "keep", 0,
            "after the error policy gave up on the file: keep or move:DIR"),
    CFG_INT("min_age_ms", struct src_fs_cfg, min_age_ms, 0, 0, 86400000, 0,
            "for writers that never close (NFS, appenders): a file whose mtime is this old is "
            "taken by a periodic scan; 0 = off (only closed or renamed-in files)"),
    CFG_INT("scan_interval_ms", struct src_fs_cfg, scan_interval_ms, 1000, 100, 3600000, 0,
            "how often the min_age_ms scan runs (only with min_age_ms)"),
};

static const char *const default_ignore[] = {".*", "*.tmp", "*.part", "*.swp"};

/* P made absolute against BASE (new), trailing slashes removed. NULL: out of memory. */
static char *abs_path(const char *base, const char *p)
{
    char *out;
    size_t n;

    if (p[0] == '/')
        out = strdup(p);
    else if (asprintf(&out, "%s/%s", base, p) < 0)
        out = NULL;
    if (out == NULL)
        return NULL;
    /* Cleaned lexically: no "." or empty segments, ".." drops the segment before it. */
    n = 0;
    for (char *q = out; *q != '\0';) {
        char *seg;
        size_t len;

        while (*q == '/')
            q++;
        seg = q;
        while (*q != '\0' && *q != '/')
            q++;
        len = (size_t)(q - seg);
        if (len == 0 || (len == 1 && seg[0] == '.'))
            continue;
        if (len == 2 && seg[0] == '.' && seg[1] == '.') {
            while (n > 0 && out[--n] != '/')
                ;
            continue;
        }
        out[n++] = '/';
        memmove(out + n, seg, len);
        n += len;
    }
    if (n == 0)
        out[n++] = '/';
    out[n] = '\0';
    return out;
}

/* Check ACTION (of KEY); a move:DIR is made absolute in place. */
static void check_action(struct cfg_check *chk, const char *key, char **action, bool delete_ok)
{
    const char *a = *action;

    if (strcmp(a, "keep") == 0 || (delete_ok && strcmp(a, "delete") == 0))
        return;
    if (strncmp(a, "move:", 5) == 0 && a[5] != '\0') {
        char *abs = abs_path(cfg_check_base_dir(chk), a + 5), *v = NULL;

        if (abs != NULL && asprintf(&v, "move:%s", abs) < 0)
            v = NULL;
        free(abs);
        if (v == NULL) {
            cfg_check_error(chk, key, "out of memory");
            return;
        }
        free(*action);
        *action = v;
        return;
    }
    cfg_check_error(chk, key, "must be keep%s or move:DIR (got '%s')", delete_ok ? ", delete" : "",
                    a);
}

static void fs_validate(void *obj, struct cfg_check *chk)
{
    struct src_fs_cfg *c = obj;

    if (c->path != NULL) {
        if (c->path[0] == '\0') {
            cfg_check_error(chk, "path", "must not be empty");
        } else {
            char *abs = abs_path(cfg_check_base_dir(chk), c->path);

            if (abs == NULL) {
                cfg_check_error(chk, "path", "out of memory");
            } else {
                free(c->path);
                c->path = abs;
            }
        }
    }
    if (c->on_success != NULL)
        check_action(chk, "on_success", &c->on_success, true);
    if (c->on_failure != NULL)
        check_action(chk, "on_failure", &c->on_failure, false);
    if (c->bucket != NULL && (c->bucket[0] == '\0' || strlen(c->bucket) > 255 ||
                              jsonstr_len(c->bucket, strlen(c->bucket)) == SIZE_MAX))
        cfg_check_error(chk, "bucket", "must be 1..255 bytes of UTF-8");
    if (cfg_check_given(chk, "scan_interval_ms") && c->min_age_ms == 0)
        cfg_check_error(chk, "scan_interval_ms",
                        "is only used with min_age_ms (the scan that takes files whose writer "
                        "never closes them)");
    for (size_t i = 0; i < c->ignore.n; i++)
        if (c->ignore.v[i][0] == '\0')
            cfg_check_error(chk, "ignore", "patterns must not be empty");
    if (!cfg_check_given(chk, "ignore") && c->ignore.n == 0) {
        size_t n = sizeof(default_ignore) / sizeof(default_ignore[0]);

        c->ignore.v = calloc(n, sizeof(*c->ignore.v));
        for (size_t i = 0; c->ignore.v != NULL && i < n; i++) {
            c->ignore.v[i] = strdup(default_ignore[i]);
            if (c->ignore.v[i] == NULL)
                break;
            c->ignore.n++;
        }
        if (c->ignore.n != n)
            cfg_check_error(chk, "ignore", "out of memory");
    }
}

const struct cfg_source_kind src_fs_kind = {
    .sec =
        {
            .name = "fs",
            .fields = fs_fields,
            .n_fields = sizeof(fs_fields) / sizeof(fs_fields[0]),
            .size = sizeof(struct src_fs_cfg),
            .validate = fs_validate,
        },
    .default_batch_size = 1, /* S3 delivers one record per event */
    .default_window_ms = 0,
    .data_key = NULL, /* filters match the record itself (s3.object.key, size...) */
    .data_must_match = 0,
};

/* ---------------------------------------------------------------------------------------- */
/* The root                                                                                  */

static void set_state(struct src_fs *fs, enum source_state st, const char *reason)
{
    if (reason != NULL)
        source_set_state(&fs->base, st, "%s", reason);
    else
        source_set_state(&fs->base, st, NULL);
}

/* What is under way for the files of a root that went away: pending candidates are dropped
 * (the scan after recovery finds them again); hashing and delivered ones end as usual. */
static void drop_pending(struct src_fs *fs)
{
    struct src_fs_file *f;

    while ((f = TAILQ_FIRST(&fs->pending)) != NULL) {
        TAILQ_REMOVE(&fs->pending, f, plink);
        fs->pending_n--;
        f->st = SRC_FS_F_IDLE;
        src_fs_file_maybe_free(fs, f);
    }
}

/* The move:DIR of an action: created when missing; remembered relative to the root when it
 * lies inside it (never watched, never scanned). */
static void prepare_dir(struct src_fs *fs, const char *dir, int slot)
{
    char real[PATH_MAX], tmp[PATH_MAX];
    size_t rl = strlen(fs->root_real);

    snprintf(tmp, sizeof(tmp), "%s", dir);
    for (char *p = tmp + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0755);
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        log_warn("%s cannot create %s: %s; moves there will fail (those files are kept)",
                 fs->prefix, dir, strerror(errno));
    free(fs->excl[slot]);
    fs->excl[slot] = NULL;
    if (realpath(dir, real) != NULL && strncmp(real, fs->root_real, rl) == 0 && real[rl] == '/')
        fs->excl[slot] = strdup(real + rl + 1);
}

/* Open the root, watch it and start the catch-up. On failure: SOURCE_PROBLEM and a retry. */
static void root_try(struct src_fs *fs)
{
    struct timeval tv = evhelp_tv_ms(SRC_FS_ROOT_RETRY_MS);
    struct stat st;
    int rc;

    if (fs->stopping)
        return;
    if (realpath(fs->cfg->path, fs->root_real) == NULL) {
        src_fs_root_lost(fs, "the watched directory %s: %s", fs->cfg->path, strerror(errno));
        return;
    }
    if (fs->rootfd >= 0)
        close(fs->rootfd);
    fs->rootfd = open(fs->root_real, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fs->rootfd < 0 || fstat(fs->rootfd, &st) != 0) {
        src_fs_root_lost(fs, "the watched directory %s: %s", fs->cfg->path, strerror(errno));
        return;
    }
    if (fs->success_dir != NULL)
        prepare_dir(fs, fs->success_dir, 0);
    if (fs->failure_dir != NULL)
        prepare_dir(fs, fs->failure_dir, 1);
    rc = src_fs_watch_start(fs);
    if (rc != 0) {
        src_fs_root_lost(fs, "cannot watch %s: %s%s", fs->root_real, strerror(-rc),
                         rc == -EMFILE ? " (fs.inotify.max_user_instances reached)" : "");
        return;
    }
    fs->root_ok = true;
    evtimer_del(fs->root_retry);
    if (fs->periodic_ev != NULL) {
        tv = evhelp_tv_ms(fs->cfg->scan_interval_ms);
        evtimer_add(fs->periodic_ev, &tv);
    }
    set_state(fs, SOURCE_RUNNING, NULL);
    log_info("%s watching %s%s", fs->prefix, fs->root_real,
             fs->cfg->recursive ? " and its subdirectories" : "");
    src_fs_scan_all(fs, true);
}

void src_fs_root_lost(struct src_fs *fs, const char *fmt, ...)
{
    struct timeval tv = evhelp_tv_ms(SRC_FS_ROOT_RETRY_MS);
    char why[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    fs->root_ok = false;
    src_fs_watch_stop(fs);
    drop_pending(fs);
    if (fs->periodic_ev != NULL)
        evtimer_del(fs->periodic_ev);
    if (strcmp(fs->problem, why) != 0)
        log_warn("%s %s; looking for it again every %d ms", fs->prefix, why, SRC_FS_ROOT_RETRY_MS);
    snprintf(fs->problem, sizeof(fs->problem), "%s", why);
    set_state(fs, SOURCE_PROBLEM, why);
    if (!fs->stopping && fs->root_retry != NULL)
        evtimer_add(fs->root_retry, &tv);
}

static void on_root_retry(evutil_socket_t fd, short what, void *arg)
{
    struct src_fs *fs = arg;

    (void)fd;
    (void)what;
    SRC_FS_CHECK(fs);
    root_try(fs);
}

static void on_periodic(evutil_socket_t fd, short what, void *arg)
{
    struct src_fs *fs = arg;
    struct timeval tv = evhelp_tv_ms(fs->cfg->scan_interval_ms);

    (void)fd;
    (void)what;
    SRC_FS_CHECK(fs);
    if (fs->stopping || !fs->root_ok)
        return;
    if (!fs->scanning)
        src_fs_scan_all(fs, false);
    evtimer_add(fs->periodic_ev, &tv);
}

/* ---------------------------------------------------------------------------------------- */
/* The pump: candidates to hash jobs                                                         */

/* Open F beneath the root and hand it to the worker. Returns false when F was dropped. */
static bool start_hash(struct src_fs *fs, struct src_fs_file *f)
{
    struct src_fs_hjob *job;
    struct src_fs_ident id;
    struct stat st;
    int fd = src_fs_open_beneath(fs, f->rel, O_RDONLY | O_NONBLOCK, false, NULL);

    if (fd < 0) {
        int e = -fd;

        if (e == ENOENT || e == ENOTDIR)
            log_info("%s %s was deleted before it was read; skipped", fs->prefix, f->rel);
        else if (e == ELOOP)
            log_warn("%s %s is a symlink (or under one): not followed", fs->prefix, f->rel);
        else if (e == EACCES || e == EPERM) {
            log_warn("%s cannot read %s: %s; not delivered (tried again when its permissions "
                     "change, at the next scan, or after a restart)",
                     fs->prefix, f->rel, strerror(e));
            f->unreadable = true;
        } else {
            log_warn("%s cannot open %s: %s; skipped", fs->prefix, f->rel, strerror(e));
        }
        return false;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return false;
    }
    src_fs_ident_of(&id, &st);
    if (f->done_known && src_fs_ident_eq(&f->done, &id)) {
        close(fd); /* the version processed already (a duplicate event, a touch-less close) */
        return false;
    }
    job = calloc(1, sizeof(*job));
    if (job == NULL) {
        close(fd);
        log_err("%s out of memory hashing %s; it is found by the next scan", fs->prefix, f->rel);
        return false;
    }
    job->fd = fd;
    job->file = f;
    f->cur = id;
    f->st = SRC_FS_F_HASHING;
    fs->hashing_n++;
    src_fs_worker_push(fs, job);
    return true;
}

static void pump(struct src_fs *fs)
{
    struct src_fs_file *f;

    if (fs->stopping || fs->finished)
        return;
    while (!fs->paused && fs->root_ok && (f = TAILQ_FIRST(&fs->pending)) != NULL &&
           fs->hashing_n < SRC_FS_HASH_MAX) {
        size_t room = source_room(&fs->base);

        if (room <= fs->hashing_n)
            break; /* the host resumes us (resume()) or acks make room (ack() kicks) */
        TAILQ_REMOVE(&fs->pending, f, plink);
        fs->pending_n--;
        f->st = SRC_FS_F_IDLE;
        if (!start_hash(fs, f))
            src_fs_file_maybe_free(fs, f);
    }
    if (fs->pending_n < SRC_FS_PENDING_MAX / 2) {
        if (fs->root_ok && !fs->paused)
            src_fs_watch_read(fs, true);
        src_fs_scan_resume(fs);
    }
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct src_fs *fs = arg;

    (void)fd;
    (void)what;
    SRC_FS_CHECK(fs);
    pump(fs);
}

/* F is IDLE again: look at it once more when an event came meanwhile. */
static void settle(struct src_fs *fs, struct src_fs_file *f)
{
    if (f->again && !fs->stopping && fs->root_ok) {
        f->again = false;
        src_fs_consider_event(fs, f->rel, f->len, f->again_copy);
        return;
    }
    f->again = false;
    src_fs_file_maybe_free(fs, f);
}

void src_fs_jobs_done(struct src_fs *fs, struct src_fs_hjob *jobs)
{
    struct source_record *small[64], **recs = small;
    size_t n = 0, cap = sizeof(small) / sizeof(small[0]);

    for (struct src_fs_hjob *j = jobs, *next; j != NULL; j = next) {
        struct src_fs_file *f = j->file;
        struct source_record *rec = NULL;
        struct stat st;

        next = j->next;
        fs->hashing_n--;
        f->st = SRC_FS_F_IDLE;
        if (fs->stopping || j->err == ECANCELED) {
            /* nothing: found again at the next start */
        } else if (j->err != 0) {
            log_warn("%s reading %s failed: %s; skipped", fs->prefix, f->rel, strerror(j->err));
        } else if (!src_fs_ident_eq(&f->cur, &j->after) || j->bytes != j->after.size) {
            /* Still being written: its close (or the next min_age_ms scan) brings it back; an
             * event that came while it was read has set `again` already. */
            log_debug("%s %s changed while it was read; waiting for it to settle", fs->prefix,
                      f->rel);
        } else {
            unsigned uid = fstat(j->fd, &st) == 0 ? (unsigned)st.st_uid : 0;

            rec = src_fs_record_new(fs, f, j, uid);
            if (rec == NULL)
                log_err("%s out of memory making the record of %s; it is found by the next "
                        "scan",
                        fs->prefix, f->rel);
        }
        close(j->fd);
        free(j);
        if (rec == NULL) {
            settle(fs, f);
            continue;
        }
        if (n == cap) {
            size_t nc = cap * 2;
            struct source_record **v =
                recs == small ? malloc(nc * sizeof(*v)) : realloc(recs, nc * sizeof(*v));

            if (v == NULL) {
                source_record_free(rec);
                settle(fs, f);
                continue;
            }
            if (recs == small)
                memcpy(v, small, sizeof(small));
            recs = v;
            cap = nc;
        }
        f->st = SRC_FS_F_DELIVERED;
        fs->delivered_n++;
        recs[n++] = rec;
    }
    source_deliver(&fs->base, recs, n);
    if (recs != small)
        free(recs);
    if (fs->stopping && fs->hashing_n == 0 && src_fs_worker_synced(fs) && fs->done_ev != NULL)
        event_active(fs->done_ev, EV_TIMEOUT, 0);
    pump(fs);
}

/* ---------------------------------------------------------------------------------------- */
/* Acknowledgements and the actions                                                          */

/* Rename NAME in PARENT to DIR/REL (intermediate directories made; NOREPLACE, a name taken
 * gets a .<ms> suffix). 0 or an errno value. */
static int move_to(struct src_fs *fs, int parent, const char *name, const char *dir,
                   const char *rel)
{
    char sub[PATH_MAX], target[PATH_MAX + 32];
    const char *slash = strrchr(rel, '/');
    int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC), rc = 0;

    if (dfd < 0)
        return errno;
    /* The relative directories under DIR (never following a symlink there either). */
    if (slash != NULL) {
        size_t n = (size_t)(slash - rel);
        char *p;

        memcpy(sub, rel, n);
        sub[n] = '\0';
        for (p = sub;;) {
            char *s = strchr(p, '/');
            int nfd;

            if (s != NULL)
                *s = '\0';
            if (mkdirat(dfd, p, 0755) != 0 && errno != EEXIST) {
                rc = errno;
                break;
            }
            nfd = openat(dfd, p, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (nfd < 0) {
                rc = errno;
                break;
            }
            close(dfd);
            dfd = nfd;
            if (s == NULL)
                break;
            p = s + 1;
        }
    }
    if (rc == 0) {
        snprintf(target, sizeof(target), "%s", name);
        if (renameat2(parent, name, dfd, target, RENAME_NOREPLACE) != 0) {
            rc = errno;
            if (rc == EEXIST) {
                snprintf(target, sizeof(target), "%s.%llu", name,
                         (unsigned long long)time_wall_ms());
                rc = renameat2(parent, name, dfd, target, RENAME_NOREPLACE) == 0 ? 0 : errno;
            }
        }
    }
    close(dfd);
    return rc;
}

static void keep(struct src_fs *fs, struct src_fs_file *f)
{
    f->done = f->cur;
    f->done_known = true;
    src_fs_state_done(fs, f);
}

/* ACTION (with DIR for a move) on the delivered version of F. */
static void act(struct src_fs *fs, struct src_fs_file *f, enum src_fs_action action,
                const char *dir)
{
    const char *name = NULL, *what = action == SRC_FS_DELETE ? "delete" : "move";
    struct src_fs_ident id;
    struct stat st;
    int parent, rc;

    if (action == SRC_FS_KEEP) {
        keep(fs, f);
        return;
    }
    parent = src_fs_open_beneath(fs, f->rel, 0, true, &name);
    if (parent < 0) {
        log_info("%s %s is gone already (%s); nothing to %s", fs->prefix, f->rel, strerror(-parent),
                 what);
        goto forget;
    }
    if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        log_info("%s %s is gone already; nothing to %s", fs->prefix, f->rel, what);
        close(parent);
        goto forget;
    }
    src_fs_ident_of(&id, &st);
    if (!S_ISREG(st.st_mode) || !src_fs_ident_eq(&id, &f->cur)) {
        log_warn("%s %s changed after it was delivered; not %s, it is delivered again as a new "
                 "object",
                 fs->prefix, f->rel, action == SRC_FS_DELETE ? "deleted" : "moved");
        close(parent);
        f->again = true;
        f->again_copy = false;
        goto forget;
    }
    if (action == SRC_FS_DELETE)
        rc = unlinkat(parent, name, 0) == 0 ? 0 : errno;
    else
        rc = move_to(fs, parent, name, dir, f->rel);
    close(parent);
    if (rc != 0) {
        log_warn("%s cannot %s %s%s%s: %s; kept in place (and not delivered again)", fs->prefix,
                 what, f->rel, action == SRC_FS_MOVE ? " to " : "",
                 action == SRC_FS_MOVE ? dir : "", strerror(rc));
        keep(fs, f);
        return;
    }
    log_debug("%s %s %s", fs->prefix, f->rel, action == SRC_FS_DELETE ? "deleted" : "moved");
forget:
    if (f->done_known)
        src_fs_state_forget(fs, f);
    f->done_known = false;
}

static void fs_ack(struct source *src, struct source_record *const *recs, size_t n,
                   enum source_outcome outcome)
{
    struct src_fs *fs = (struct src_fs *)src;
    enum src_fs_action action = outcome == SOURCE_DONE ? fs->on_success : fs->on_failure;
    const char *dir = outcome == SOURCE_DONE ? fs->success_dir : fs->failure_dir;

    SRC_FS_CHECK(fs);
    for (size_t i = 0; i < n; i++) {
        struct src_fs_file *f = src_fs_file_get(fs, recs[i]->data, recs[i]->data_len, false);

        if (f == NULL || f->st != SRC_FS_F_DELIVERED) {
            log_warn("%s ack of %s, which is not in flight; ignored", fs->prefix, recs[i]->id);
            continue;
        }
        fs->delivered_n--;
        f->st = SRC_FS_F_IDLE;
        if (fs->finished)
            log_warn("%s ack of %s after stop: not recorded (delivered again after a restart)",
                     fs->prefix, recs[i]->id);
        else
            act(fs, f, action, dir);
        settle(fs, f);
    }
    src_fs_kick(fs);
}

static void fs_release(struct source *src, struct source_record *const *recs, size_t n)
{
    struct src_fs *fs = (struct src_fs *)src;

    SRC_FS_CHECK(fs);
    for (size_t i = 0; i < n; i++) {
        struct src_fs_file *f = src_fs_file_get(fs, recs[i]->data, recs[i]->data_len, false);

        if (f == NULL || f->st != SRC_FS_F_DELIVERED)
            continue;
        /* Unprocessed: left where it is, and found again by the next start's catch-up. */
        fs->delivered_n--;
        f->st = SRC_FS_F_IDLE;
        f->again = false;
        src_fs_file_maybe_free(fs, f);
    }
    src_fs_kick(fs);
}

/* ---------------------------------------------------------------------------------------- */
/* The ops                                                                                    */

static void fs_destroy(struct source *src);
static void on_stop_done(evutil_socket_t fd, short what, void *arg);

static int parse_action(const char *s, enum src_fs_action *a, const char **dir)
{
    *dir = NULL;
    if (s == NULL || strcmp(s, "keep") == 0)
        *a = SRC_FS_KEEP;
    else if (strcmp(s, "delete") == 0)
        *a = SRC_FS_DELETE;
    else if (strncmp(s, "move:/", 6) == 0) {
        *a = SRC_FS_MOVE;
        *dir = s + 5;
    } else
        return SY_EINVAL;
    return 0;
}

static int fs_create(const struct source_ctx *ctx, const void *cfgp, struct source **out,
                     struct sy_error *err)
{
    const struct src_fs_cfg *cfg = cfgp;
    struct src_fs *fs = calloc(1, sizeof(*fs));
    const char *mapping = ctx->mapping != NULL ? ctx->mapping : "-";
    char tmp[PATH_MAX];
    int rc = SY_EINVAL;

    *out = NULL;
    if (fs == NULL) {
        sy_error_set(err, "fs source %s: out of memory", mapping);
        return SY_ENOMEM;
    }
    fs->magic = SRC_FS_MAGIC;
    fs->base.ops = &src_fs_ops;
    fs->base.ctx = ctx;
    fs->base.state = SOURCE_CONNECTING;
    fs->cfg = cfg;
    fs->evb = ctx->base;
    fs->rootfd = fs->ifd = fs->w.efd = fs->w.jfd = -1;
    fs->root_wd = -1;
    TAILQ_INIT(&fs->pending);
    snprintf(fs->prefix, sizeof(fs->prefix), "[source:fs:%.64s]", mapping);
    fs->settle_ms = cfg->min_age_ms > 0 ? cfg->min_age_ms : SRC_FS_SETTLE_MS;

    /* The config was validated; these are the last line. */
    if (cfg->path == NULL || cfg->path[0] != '/') {
        sy_error_set(err, "fs source %s: path must be absolute", mapping);
        goto fail;
    }
    if (parse_action(cfg->on_success, &fs->on_success, &fs->success_dir) != 0 ||
        parse_action(cfg->on_failure, &fs->on_failure, &fs->failure_dir) != 0 ||
        fs->on_failure == SRC_FS_DELETE) {
        sy_error_set(err, "fs source %s: bad on_success / on_failure", mapping);
        goto fail;
    }
    rc = SY_ENOMEM;
    snprintf(tmp, sizeof(tmp), "%s", cfg->path);
    snprintf(fs->root_real, sizeof(fs->root_real), "%s", cfg->path);
    fs->bucket = strdup(cfg->bucket != NULL ? cfg->bucket : basename(tmp));
    if (fs->bucket == NULL)
        goto oom;
    if (jsonstr_len(fs->bucket, strlen(fs->bucket)) == SIZE_MAX) {
        /* A directory name that is not UTF-8: encoded as a key would be. */
        struct buf b = {0};

        if (src_fs_key_encode(&b, fs->bucket, strlen(fs->bucket)) != 0)
            goto oom;
        free(fs->bucket);
        fs->bucket = buf_take(&b, NULL);
    }
    if (asprintf(&fs->arn, "arn:aws:s3:::%s", fs->bucket) < 0) {
        fs->arn = NULL;
        goto oom;
    }
    if (asprintf(&fs->state_path, "%s/fs/%s.state", ctx->data_dir ? ctx->data_dir : ".", mapping) <
        0) {
        fs->state_path = NULL;
        goto oom;
    }
    fs->kick = event_new(fs->evb, -1, 0, on_kick, fs);
    fs->root_retry = evtimer_new(fs->evb, on_root_retry, fs);
    fs->stop_timer = evtimer_new(fs->evb, on_stop_done, fs);
    fs->done_ev = event_new(fs->evb, -1, 0, on_stop_done, fs);
    if (fs->kick == NULL || fs->root_retry == NULL || fs->stop_timer == NULL || fs->done_ev == NULL)
        goto oom;
    if (cfg->min_age_ms > 0) {
        fs->periodic_ev = evtimer_new(fs->evb, on_periodic, fs);
        if (fs->periodic_ev == NULL)
            goto oom;
    }
    *out = &fs->base;
    return 0;

oom:
    sy_error_set(err, "fs source %s: out of memory", mapping);
fail:
    fs_destroy(&fs->base);
    return rc;
}

static int fs_start(struct source *src)
{
    struct src_fs *fs = (struct src_fs *)src;
    char dir[PATH_MAX];
    int rc;

    SRC_FS_CHECK(fs);
    if (fs->started || fs->stopping)
        return SY_ESTATE;
    fs->started = true;
    /* data_dir/fs: the journal's directory (data_dir itself exists: the broker made it). */
    snprintf(dir, sizeof(dir), "%s", fs->state_path);
    *strrchr(dir, '/') = '\0';
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        log_err("%s cannot create %s: %s", fs->prefix, dir, strerror(errno));
        return SY_EIO;
    }
    rc = src_fs_state_load(fs);
    if (rc != 0) {
        log_err("%s cannot read %s: %s", fs->prefix, fs->state_path, sy_strerror(rc));
        return rc;
    }
    rc = src_fs_worker_start(fs);
    if (rc != 0)
        return rc;
    /* A missing root is a state, not an error: it is looked for again. */
    root_try(fs);
    return 0;
}

static void fs_pause(struct source *src)
{
    struct src_fs *fs = (struct src_fs *)src;

    SRC_FS_CHECK(fs);
    fs->paused = true;
    /* The kernel keeps the events meanwhile (an overflow is a rescan on resume). */
    src_fs_watch_read(fs, false);
}

static void fs_resume(struct source *src)
{
    struct src_fs *fs = (struct src_fs *)src;

    SRC_FS_CHECK(fs);
    fs->paused = false;
    src_fs_kick(fs);
}

static void on_stop_done(evutil_socket_t fd, short what, void *arg)
{
    struct src_fs *fs = arg;
    source_stopped_fn *done = fs->stop_done;

    (void)fd;
    (void)what;
    SRC_FS_CHECK(fs);
    if (done == NULL)
        return; /* ran already (the deadline and the last job raced) */
    if (!src_fs_worker_synced(fs))
        log_warn("%s stopped before the state journal reached the disk; files processed last "
                 "may be delivered again after a restart",
                 fs->prefix);
    fs->stop_done = NULL;
    fs->finished = true;
    event_del(fs->stop_timer);
    set_state(fs, SOURCE_STOPPED, NULL);
    done(fs->stop_arg);
}

static void fs_stop(struct source *src, source_stopped_fn *done, void *arg)
{
    struct src_fs *fs = (struct src_fs *)src;
    struct timeval tv = evhelp_tv_ms(SRC_FS_STOP_WAIT_MS);

    SRC_FS_CHECK(fs);
    if (fs->stopping) {
        log_err("%s stop() called twice; the second DONE is dropped", fs->prefix);
        return;
    }
    fs->stopping = true;
    fs->stop_done = done;
    fs->stop_arg = arg;
    src_fs_watch_stop(fs);
    drop_pending(fs);
    event_del(fs->root_retry);
    if (fs->periodic_ev != NULL)
        event_del(fs->periodic_ev);
    if (fs->w.running)
        atomic_store(&fs->w.cancel, true); /* hashes under way end at their next chunk */
    evtimer_add(fs->stop_timer, &tv);
    /* Done once the jobs came back and the journal is on disk (jobs_done checks), or now. */
    if (fs->hashing_n == 0 && src_fs_worker_synced(fs))
        event_active(fs->done_ev, EV_TIMEOUT, 0);
}

static void fs_destroy(struct source *src)
{
    struct src_fs *fs = (struct src_fs *)src;

    if (fs == NULL)
        return;
    SRC_FS_CHECK(fs);
    fs->finished = true;
    src_fs_worker_stop(fs);
    src_fs_watch_stop(fs);
    evhelp_free(&fs->scan_ev);
    evhelp_free(&fs->rescan_ev);
    evhelp_free(&fs->periodic_ev);
    evhelp_free(&fs->kick);
    evhelp_free(&fs->root_retry);
    evhelp_free(&fs->stop_timer);
    evhelp_free(&fs->done_ev);
    if (fs->rootfd >= 0)
        close(fs->rootfd);
    src_fs_files_free(fs);
    free(fs->excl[0]);
    free(fs->excl[1]);
    free(fs->bucket);
    free(fs->arn);
    free(fs->state_path);
    fs->magic = 0;
    free(fs);
}

static const char *fs_arn(const struct source *src)
{
    return ((const struct src_fs *)src)->arn;
}

static void fs_stats(const struct source *src, struct source_stats *out)
{
    const struct src_fs *fs = (const struct src_fs *)src;

    out->lag = fs->root_ok ? (int64_t)(fs->pending_n + fs->hashing_n) : -1;
    out->reconnects = 0;
    out->acks_pending = 0;
}

const struct source_ops src_fs_ops = {
    .name = "fs",
    .cfg = &src_fs_kind,
    .create = fs_create,
    .start = fs_start,
    .ack = fs_ack,
    .release = fs_release,
    .pause = fs_pause,
    .resume = fs_resume,
    .stop = fs_stop,
    .destroy = fs_destroy,
    .encode_batch = src_fs_encode_batch,
    .batch_info = src_fs_batch_info,
    .arn = fs_arn,
    .stats = fs_stats,
};
