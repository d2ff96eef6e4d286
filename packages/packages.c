/*
 * packages/packages.c - the store's common machinery: limits, error filling, temp dirs and
 * their publication by rename, tree removal and the bounded walk, and the two functions built
 * only on those: pkg_dir_size() and pkg_gc().
 */
#include "packages.h"
#include "packages_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/errors.h"

struct pkg_limits pkg_limits_lambda(void)
{
    struct pkg_limits lim = {
        .max_zip_bytes = 52428800,       /* 50 MiB zipped, direct upload */
        .max_unzipped_bytes = 262144000, /* 250 MiB unzipped */
        .max_entries = 20000,            /* ours: see packages.h */
        .max_ratio = 200,                /* ours: see packages.h */
    };
    return lim;
}

const char *pkg_err_name(enum pkg_err kind)
{
    switch (kind) {
#define PKG_ERR_CASE(name, text)                                                                   \
    case name:                                                                                     \
        return text;
        PKG_ERRORS(PKG_ERR_CASE)
#undef PKG_ERR_CASE
    }
    return "unknown";
}

void pkg_info_clear(struct pkg_info *info)
{
    if (info == NULL)
        return;
    free(info->dir);
    memset(info, 0, sizeof(*info));
}

static int kind_code(enum pkg_err kind)
{
    switch (kind) {
    case PKG_OK:
        return 0;
    case PKG_E_TOO_LARGE_ZIP:
    case PKG_E_TOO_LARGE_UNZIPPED:
    case PKG_E_TOO_MANY_ENTRIES:
    case PKG_E_BOMB:
        return SY_ETOOBIG;
    case PKG_E_IO:
        return SY_EIO;
    case PKG_E_NOMEM:
        return SY_ENOMEM;
    case PKG_E_CORRUPT:
    case PKG_E_UNSAFE_PATH:
    case PKG_E_UNSAFE_LINK:
        break;
    }
    return SY_EINVAL;
}

int pkg__fail(struct pkg_error *err, enum pkg_err kind, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL) {
        err->kind = kind;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return kind_code(kind);
}

int pkg__fail_errno(struct pkg_error *err, int errnum, const char *fmt, ...)
{
    va_list ap;
    char ebuf[128];
    const char *etext;
    size_t n;

    if (errnum == ENOMEM) {
        if (err != NULL) {
            err->kind = PKG_E_NOMEM;
            snprintf(err->msg, sizeof(err->msg), "out of memory");
        }
        return SY_ENOMEM;
    }
    if (err != NULL) {
        err->kind = PKG_E_IO;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
        /* strerror() is not thread-safe; this is the GNU strerror_r (_GNU_SOURCE). */
        etext = strerror_r(errnum, ebuf, sizeof(ebuf));
        n = strlen(err->msg);
        snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", etext);
    }
    return (errnum == ENOSPC || errnum == EDQUOT) ? SY_ENOSPC : SY_EIO;
}

void pkg__quote(const char *name, char *out, size_t outlen)
{
    /* Keep the start and say it was cut: the start is what identifies an entry. */
    size_t max = outlen - 1, i;

    for (i = 0; name[i] != '\0' && i < max; i++) {
        unsigned char c = (unsigned char)name[i];

        out[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    out[i] = '\0';
    if (name[i] != '\0' && max >= 3)
        memcpy(out + max - 3, "...", 3);
}

void pkg__hex(const unsigned char *md, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 0xf];
    }
    out[2 * n] = '\0';
}

bool pkg__is_hex64(const char *s)
{
    size_t i;

    for (i = 0; i < 64; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return s[64] == '\0';
}

int pkg__mktemp(const char *store_dir, const char *tag, char **out, struct pkg_error *err)
{
    char *path = NULL;

    *out = NULL;
    if (mkdir(store_dir, 0755) < 0 && errno != EEXIST)
        return pkg__fail_errno(err, errno, "cannot create the package store %s", store_dir);
    if (asprintf(&path, "%s/" PKG_TMP_PREFIX "%s-XXXXXX", store_dir, tag) < 0)
        return pkg__fail_errno(err, ENOMEM, "asprintf");
    if (mkdtemp(path) == NULL) {
        int e = errno;

        free(path);
        return pkg__fail_errno(err, e, "cannot create a temp dir in %s", store_dir);
    }
    *out = path;
    return 0;
}

int pkg__publish(const char *store_dir, const char *tmp, const char *final, bool *reused,
                 struct pkg_error *err)
{
    int fd;

    *reused = false;
    /*
     * One syncfs() instead of an fsync() per file: a package has up to 20000 files, and what
     * matters is only that everything is on disk before the name appears (a name that exists
     * is trusted and reused forever). It flushes the whole file system, which is fine on a
     * helper thread.
     */
    fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return pkg__fail_errno(err, errno, "cannot open %s", tmp);
    if (syncfs(fd) < 0) {
        int e = errno;

        close(fd);
        return pkg__fail_errno(err, e, "cannot flush %s", tmp);
    }
    close(fd);

    if (rename(tmp, final) < 0) {
        struct stat st;
        int e = errno;

        /*
         * A non-empty directory of that name appeared since we looked: another thread or
         * process built the same content and won the race. Use theirs.
         */
        if ((e == EEXIST || e == ENOTEMPTY) && lstat(final, &st) == 0 && S_ISDIR(st.st_mode)) {
            (void)pkg__rmtree_at(AT_FDCWD, tmp);
            *reused = true;
            return 0;
        }
        return pkg__fail_errno(err, e, "cannot rename %s to %s", tmp, final);
    }
    /* Make the rename itself durable. */
    fd = open(store_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return pkg__fail_errno(err, errno, "cannot open %s", store_dir);
    if (fsync(fd) < 0 && errno != EINVAL) {
        int e = errno;

        close(fd);
        return pkg__fail_errno(err, e, "cannot flush %s", store_dir);
    }
    close(fd);
    return 0;
}

/* Remove what is inside the directory FD (which stays open and is the caller's). */
static int rm_contents(int fd, int depth)
{
    DIR *d;
    struct dirent *de;
    int dfd, rc = 0;

    /* Our trees are never deeper than PKG_MAX_DEPTH; leave some slack for foreign ones. */
    if (depth > 2 * PKG_MAX_DEPTH)
        return -ELOOP;
    /* A function may have chmod'ed its own code dir; we own it, so give us the right back. */
    (void)fchmod(fd, 0700);
    dfd = dup(fd);
    if (dfd < 0)
        return -errno;
    d = fdopendir(dfd);
    if (d == NULL) {
        rc = -errno;
        close(dfd);
        return rc;
    }
    while ((errno = 0, de = readdir(d)) != NULL) {
        int sub;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (unlinkat(dfd, de->d_name, 0) == 0 || errno == ENOENT)
            continue;
        /* Linux says EISDIR for a directory, POSIX allows EPERM. */
        if (errno != EISDIR && errno != EPERM) {
            rc = -errno;
            break;
        }
        sub = openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) {
            rc = -errno;
            break;
        }
        rc = rm_contents(sub, depth + 1);
        close(sub);
        if (rc < 0)
            break;
        if (unlinkat(dfd, de->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT) {
            rc = -errno;
            break;
        }
    }
    if (rc == 0 && errno != 0)
        rc = -errno;
    closedir(d);
    return rc;
}

int pkg__rmtree_at(int dirfd, const char *name)
{
    int fd, rc;

    if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -errno;
    fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    /*
     * Removing entries while readdir() goes on is allowed, but POSIX leaves open whether the
     * stream then misses some; a second pass picks up anything left.
     */
    for (int pass = 0; pass < 3; pass++) {
        rc = rm_contents(fd, 0);
        if (rc < 0)
            break;
        if (unlinkat(dirfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
            break;
        rc = -errno;
        if (rc != -ENOTEMPTY && rc != -EEXIST)
            break;
    }
    close(fd);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* The bounded walk                                                                           */

struct walk {
    pkg_walk_fn *fn;
    void *arg;
    struct pkg_error *err;
    size_t count;
    char rel[PKG_REL_MAX + 1];
};

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/*
 * The names in the directory FD, sorted bytewise (readdir order differs between file systems
 * and runs; the merge fingerprint needs one order). *OUT returns new (free_names()).
 */
static int list_names(struct walk *w, int fd, char ***out, size_t *nout)
{
    char **names = NULL, **grown;
    size_t n = 0, cap = 0;
    DIR *d;
    struct dirent *de;
    int dfd, rc = 0;

    *out = NULL;
    *nout = 0;
    dfd = dup(fd);
    if (dfd < 0)
        return pkg__fail_errno(w->err, errno, "dup");
    d = fdopendir(dfd);
    if (d == NULL) {
        rc = pkg__fail_errno(w->err, errno, "cannot read directory '%s'", w->rel);
        close(dfd);
        return rc;
    }
    while ((errno = 0, de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (w->count + n >= PKG_MAX_WALK) {
            rc = pkg__fail(w->err, PKG_E_TOO_MANY_ENTRIES,
                           "Directory tree has more than %u entries", PKG_MAX_WALK);
            goto out_names;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            grown = realloc(names, cap * sizeof(*names));
            if (grown == NULL) {
                rc = pkg__fail_errno(w->err, ENOMEM, "realloc");
                goto out_names;
            }
            names = grown;
        }
        names[n] = strdup(de->d_name);
        if (names[n] == NULL) {
            rc = pkg__fail_errno(w->err, ENOMEM, "strdup");
            goto out_names;
        }
        n++;
    }
    if (errno != 0) {
        rc = pkg__fail_errno(w->err, errno, "cannot read directory '%s'", w->rel);
        goto out_names;
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof(*names), cmp_names);
    *out = names;
    *nout = n;
    return 0;

out_names:
    closedir(d);
    free_names(names, n);
    return rc;
}

static int walk_dir(struct walk *w, int fd, size_t rel_len, int depth)
{
    char **names;
    size_t n, i;
    int rc;

    rc = list_names(w, fd, &names, &n);
    if (rc < 0)
        return rc;
    for (i = 0; i < n && rc == 0; i++) {
        struct stat st;
        size_t len = strlen(names[i]);
        size_t new_len = rel_len + (rel_len ? 1 : 0) + len;

        if (fstatat(fd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT) /* removed meanwhile: it is not there any more */
                continue;
            rc = pkg__fail_errno(w->err, errno, "cannot stat '%s/%s'", w->rel, names[i]);
            break;
        }
        if (++w->count > PKG_MAX_WALK) {
            rc = pkg__fail(w->err, PKG_E_TOO_MANY_ENTRIES,
                           "Directory tree has more than %u entries", PKG_MAX_WALK);
            break;
        }
        if (new_len > PKG_REL_MAX) {
            rc = pkg__fail(w->err, PKG_E_UNSAFE_PATH, "Path '%s/...' is too long", w->rel);
            break;
        }
        if (rel_len)
            w->rel[rel_len] = '/';
        memcpy(w->rel + rel_len + (rel_len ? 1 : 0), names[i], len + 1);

        rc = w->fn(w->arg, fd, names[i], w->rel, &st);
        if (rc == 0 && S_ISDIR(st.st_mode)) {
            int sub;

            if (depth + 1 > PKG_MAX_DEPTH) {
                rc = pkg__fail(w->err, PKG_E_UNSAFE_PATH,
                               "Directory '%s' is nested deeper than %d levels", w->rel,
                               PKG_MAX_DEPTH);
                break;
            }
            sub = openat(fd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                rc = pkg__fail_errno(w->err, errno, "cannot open '%s'", w->rel);
                break;
            }
            rc = walk_dir(w, sub, new_len, depth + 1);
            close(sub);
        }
        w->rel[rel_len] = '\0';
    }
    free_names(names, n);
    return rc;
}

int pkg__walk(const char *root, pkg_walk_fn *fn, void *arg, struct pkg_error *err)
{
    struct walk *w;
    int fd, rc;

    /* The struct holds a path buffer of ~4 KB: keep it off helper threads' small stacks. */
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        return pkg__fail_errno(err, ENOMEM, "calloc");
    w->fn = fn;
    w->arg = arg;
    w->err = err;
    fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        rc = pkg__fail_errno(err, errno, "cannot open directory %s", root);
        goto out_free;
    }
    rc = walk_dir(w, fd, 0, 0);
    close(fd);
out_free:
    free(w);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* pkg_dir_size                                                                               */

static int size_visit(void *arg, int dirfd, const char *name, const char *rel,
                      const struct stat *st)
{
    uint64_t *sum = arg;

    if (S_ISREG(st->st_mode))
        *sum += (uint64_t)st->st_size;
    return 0;
}

int pkg_dir_size(const char *dir, uint64_t *bytes, struct pkg_error *err)
{
    uint64_t sum = 0;
    int rc;

    *bytes = 0;
    rc = pkg__walk(dir, size_visit, &sum, err);
    if (rc == 0)
        *bytes = sum;
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* pkg_gc                                                                                     */

/* The last component of PATH, without trailing slashes, into OUT. */
static void last_component(const char *path, char *out, size_t outlen)
{
    size_t end = strlen(path), start;

    while (end > 1 && path[end - 1] == '/')
        end--;
    start = end;
    while (start > 0 && path[start - 1] != '/')
        start--;
    if (end - start >= outlen)
        end = start + outlen - 1;
    memcpy(out, path + start, end - start);
    out[end - start] = '\0';
}

static bool kept(const char *name, const char *const *keep, size_t n_keep)
{
    char last[256];

    for (size_t i = 0; i < n_keep; i++) {
        if (keep[i] == NULL)
            continue;
        last_component(keep[i], last, sizeof(last));
        if (strcmp(last, name) == 0)
            return true;
    }
    return false;
}

int pkg_gc(const char *store_dir, const char *const *keep, size_t n_keep, struct pkg_error *err)
{
    /* Makes the temp names of one process unique across its threads. */
    static atomic_uint seq;
    DIR *d;
    struct dirent *de;
    int dfd, rc = 0, r;
    time_t now = time(NULL);

    d = opendir(store_dir);
    if (d == NULL) {
        if (errno == ENOENT)
            return 0;
        return pkg__fail_errno(err, errno, "cannot read the package store %s", store_dir);
    }
    dfd = dirfd(d);
    while ((errno = 0, de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        char doomed[128];
        struct stat st;

        if (strncmp(name, PKG_TMP_PREFIX, strlen(PKG_TMP_PREFIX)) == 0) {
            /* A build in progress is younger than an hour (an unpack takes seconds). */
            if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                now - st.st_mtime < PKG_TMP_AGE_S)
                continue;
            r = pkg__rmtree_at(dfd, name);
            if (r < 0 && rc == 0)
                rc = pkg__fail_errno(err, -r, "cannot remove %s/%s", store_dir, name);
            continue;
        }
        if (!pkg__is_hex64(name) && !(strncmp(name, "opt-", 4) == 0 && pkg__is_hex64(name + 4)))
            continue; /* not ours */
        if (kept(name, keep, n_keep))
            continue;
        /*
         * Take the name away first (atomic), so that pkg_unpack() either finds the whole
         * directory or none: half of a tree must never be reused as a package.
         */
        snprintf(doomed, sizeof(doomed), PKG_TMP_PREFIX "gc-%ld-%lld-%u", (long)getpid(),
                 (long long)now, atomic_fetch_add(&seq, 1));
        if (renameat(dfd, name, dfd, doomed) < 0) {
            if (errno != ENOENT && rc == 0)
                rc = pkg__fail_errno(err, errno, "cannot rename %s/%s", store_dir, name);
            continue;
        }
        r = pkg__rmtree_at(dfd, doomed);
        if (r < 0 && rc == 0)
            rc = pkg__fail_errno(err, -r, "cannot remove %s/%s (was %s)", store_dir, doomed, name);
    }
    if (errno != 0 && rc == 0)
        rc = pkg__fail_errno(err, errno, "cannot read the package store %s", store_dir);
    closedir(d);
    return rc;
}
