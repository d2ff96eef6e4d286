/*
 * packages/pkg_merge.c - pkg_merge(): layers laid over each other into one /opt tree, named by
 * what went into it, built once and reused.
 *
 * The destination is our own temp tree, walked in parent-before-child order for every layer,
 * so by the time an entry is written each of its parents has been made a real directory by
 * the same layer: paths relative to the temp root never go through a symlink except in their
 * last component, which is always handled with NOFOLLOW (or removed first).
 */
#include "packages.h"
#include "packages_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/errors.h"
#include "core/sha256.h"

#define COPY_BUF (64 * 1024)
/* Changing what goes into the fingerprint must change this, or old merges would be reused. */
#define FP_VERSION "sy-opt-v1"

struct merge {
    struct pkg_error *err;
    int dstfd;         /* the temp root */
    const char *layer; /* realpath of the layer being merged (messages) */
    unsigned char *buf;
};

/* Copy the regular file NAME under SFD to REL under the temp root (where nothing is now). */
static int copy_file(struct merge *m, int sfd, const char *name, const char *rel,
                     const struct stat *st)
{
    int in, out, rc = 0;

    in = openat(sfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0)
        return pkg__fail_errno(m->err, errno, "cannot open %s/%s", m->layer, rel);
    out = openat(m->dstfd, rel, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0) {
        rc = pkg__fail_errno(m->err, errno, "cannot create '%s' in the merged tree", rel);
        goto out_in;
    }
    for (;;) {
        ssize_t n = read(in, m->buf, COPY_BUF), w;
        size_t off = 0;

        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = pkg__fail_errno(m->err, errno, "cannot read %s/%s", m->layer, rel);
            goto out_out;
        }
        if (n == 0)
            break;
        while (off < (size_t)n) {
            w = write(out, m->buf + off, (size_t)n - off);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                rc = pkg__fail_errno(m->err, errno, "cannot write '%s' in the merged tree", rel);
                goto out_out;
            }
            off += (size_t)w;
        }
    }
    /* The same rule as an unpacked file: no setuid/setgid/sticky, no group/other write. */
    if (fchmod(out, (st->st_mode & 0755) | 0400) < 0) {
        rc = pkg__fail_errno(m->err, errno, "cannot chmod '%s'", rel);
        goto out_out;
    }
    {
        struct timespec ts[2] = {st->st_atim, st->st_mtim};

        if (futimens(out, ts) < 0) {
            rc = pkg__fail_errno(m->err, errno, "cannot set the time of '%s'", rel);
            goto out_out;
        }
    }

out_out:
    if (close(out) < 0 && rc == 0)
        rc = pkg__fail_errno(m->err, errno, "cannot write '%s' in the merged tree", rel);
out_in:
    close(in);
    return rc;
}

static int merge_visit(void *arg, int sfd, const char *name, const char *rel, const struct stat *st)
{
    struct merge *m = arg;
    struct stat dst;
    bool exists;
    int r;

    if (!S_ISDIR(st->st_mode) && !S_ISREG(st->st_mode) && !S_ISLNK(st->st_mode))
        return 0; /* FIFOs, sockets, devices: not part of a layer */
    exists = fstatat(m->dstfd, rel, &dst, AT_SYMLINK_NOFOLLOW) == 0;
    if (!exists && errno != ENOENT)
        return pkg__fail_errno(m->err, errno, "cannot stat '%s' in the merged tree", rel);

    if (S_ISDIR(st->st_mode)) {
        if (exists && !S_ISDIR(dst.st_mode)) {
            /* An earlier layer's file or link gives way to this layer's directory. */
            if (unlinkat(m->dstfd, rel, 0) < 0)
                return pkg__fail_errno(m->err, errno, "cannot replace '%s'", rel);
            exists = false;
        }
        if (!exists && mkdirat(m->dstfd, rel, 0700) < 0)
            return pkg__fail_errno(m->err, errno, "cannot create '%s' in the merged tree", rel);
        /* Now a directory of ours: following the last component is safe. */
        if (fchmodat(m->dstfd, rel, (st->st_mode & 0755) | 0700, 0) < 0)
            return pkg__fail_errno(m->err, errno, "cannot chmod '%s'", rel);
        return 0;
    }

    /* Later layers win: whatever an earlier one put here goes. */
    if (exists) {
        r = S_ISDIR(dst.st_mode) ? pkg__rmtree_at(m->dstfd, rel)
                                 : (unlinkat(m->dstfd, rel, 0) < 0 ? -errno : 0);
        if (r < 0)
            return pkg__fail_errno(m->err, -r, "cannot replace '%s'", rel);
    }
    if (S_ISLNK(st->st_mode)) {
        char *target = (char *)m->buf;
        ssize_t tl = readlinkat(sfd, name, target, COPY_BUF - 1);

        if (tl < 0)
            return pkg__fail_errno(m->err, errno, "cannot read symlink %s/%s", m->layer, rel);
        target[tl] = '\0';
        if (symlinkat(target, m->dstfd, rel) < 0)
            return pkg__fail_errno(m->err, errno, "cannot create symlink '%s'", rel);
        return 0;
    }
    /*
     * A hard link costs an inode, not the bytes. It fails across file systems (EXDEV), under
     * fs.protected_hardlinks for files we do not own (EPERM), at the link-count limit (EMLINK)
     * or where links are not supported: then copy.
     */
    if (linkat(sfd, name, m->dstfd, rel, 0) == 0)
        return 0;
    if (errno != EXDEV && errno != EPERM && errno != EMLINK && errno != EACCES &&
        errno != EOPNOTSUPP)
        return pkg__fail_errno(m->err, errno, "cannot link '%s' into the merged tree", rel);
    return copy_file(m, sfd, name, rel, st);
}

/* ------------------------------------------------------------------------------------------ */
/* The fingerprint                                                                            */

static int fp_visit(void *arg, int dirfd, const char *name, const char *rel, const struct stat *st)
{
    struct sha256_ctx *c = arg;
    char line[128], target[PATH_MAX];
    int n;

    /*
     * Not ctime: linking a file into a merge changes its link count, and with it the ctime,
     * so the next fingerprint would never match.
     */
    n = snprintf(line, sizeof(line), "%o %llu %lld.%09ld %llu", (unsigned)st->st_mode,
                 (unsigned long long)st->st_size, (long long)st->st_mtim.tv_sec,
                 st->st_mtim.tv_nsec, (unsigned long long)st->st_ino);
    sha256_update(c, rel, strlen(rel) + 1);
    sha256_update(c, line, (size_t)n + 1);
    if (S_ISLNK(st->st_mode)) {
        ssize_t tl = readlinkat(dirfd, name, target, sizeof(target) - 1);

        if (tl < 0)
            tl = 0; /* vanished meanwhile: the next merge sees the change */
        sha256_update(c, target, (size_t)tl);
        sha256_update(c, "", 1);
    }
    return 0;
}

/* Is REAL a content-addressed directory of the store STORE_REAL? */
static bool in_store(const char *store_real, const char *real)
{
    size_t sl = strlen(store_real);

    return strncmp(real, store_real, sl) == 0 && real[sl] == '/' && pkg__is_hex64(real + sl + 1);
}

int pkg_merge(const char *store_dir, const char *const *dirs, size_t n, char **out_dir,
              uint64_t *out_size, struct pkg_error *err)
{
    struct merge m = {.err = err, .dstfd = -1};
    char *store_real = NULL, *final = NULL, *tmp = NULL, **reals = NULL;
    unsigned char md[SHA256_LEN];
    char hex[2 * SHA256_LEN + 1];
    struct sha256_ctx c;
    struct stat st;
    bool reused;
    int rc = 0;

    *out_dir = NULL;
    *out_size = 0;
    if (err != NULL) {
        err->kind = PKG_OK;
        err->msg[0] = '\0';
    }
    if (n == 0)
        return 0;

    if (mkdir(store_dir, 0755) < 0 && errno != EEXIST)
        return pkg__fail_errno(err, errno, "cannot create the package store %s", store_dir);
    store_real = realpath(store_dir, NULL);
    if (store_real == NULL)
        return pkg__fail_errno(err, errno, "cannot resolve %s", store_dir);
    reals = calloc(n, sizeof(*reals));
    if (reals == NULL) {
        rc = pkg__fail_errno(err, ENOMEM, "calloc");
        goto out_free;
    }

    sha256_init(&c);
    sha256_update(&c, FP_VERSION, sizeof(FP_VERSION));
    for (size_t i = 0; i < n; i++) {
        size_t rl;

        reals[i] = realpath(dirs[i], NULL);
        if (reals[i] == NULL) {
            rc = pkg__fail_errno(err, errno, "layer directory %s", dirs[i]);
            goto out_free;
        }
        if (stat(reals[i], &st) < 0 || !S_ISDIR(st.st_mode)) {
            rc = pkg__fail(err, PKG_E_IO, "layer %s is not a directory", dirs[i]);
            goto out_free;
        }
        /* Walking a directory that holds the store would walk into the merge being built. */
        rl = strlen(reals[i]);
        if (strncmp(store_real, reals[i], rl) == 0 &&
            (store_real[rl] == '\0' || store_real[rl] == '/' || rl == 1)) {
            rc = pkg__fail(err, PKG_E_UNSAFE_PATH, "layer directory %s holds the package store",
                           dirs[i]);
            goto out_free;
        }
        sha256_update(&c, reals[i], rl + 1);
        if (in_store(store_real, reals[i])) {
            /* Its name is the SHA-256 of its zip: it says everything about the content. */
            sha256_update(&c, "cas", 4);
        } else {
            sha256_update(&c, "tree", 5);
            rc = pkg__walk(reals[i], fp_visit, &c, err);
            if (rc < 0)
                goto out_free;
            sha256_update(&c, "end", 4);
        }
    }
    sha256_final(&c, md);
    pkg__hex(md, SHA256_LEN, hex);
    if (asprintf(&final, "%s/opt-%s", store_dir, hex) < 0) {
        final = NULL;
        rc = pkg__fail_errno(err, ENOMEM, "asprintf");
        goto out_free;
    }

    if (lstat(final, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            goto out_done; /* built before: reuse */
        rc = pkg__fail(err, PKG_E_IO, "%s exists and is not a directory", final);
        goto out_free;
    } else if (errno != ENOENT) {
        rc = pkg__fail_errno(err, errno, "cannot stat %s", final);
        goto out_free;
    }

    m.buf = malloc(COPY_BUF);
    if (m.buf == NULL) {
        rc = pkg__fail_errno(err, ENOMEM, "malloc");
        goto out_free;
    }
    rc = pkg__mktemp(store_dir, "opt", &tmp, err);
    if (rc < 0)
        goto out_free;
    m.dstfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (m.dstfd < 0) {
        rc = pkg__fail_errno(err, errno, "cannot open %s", tmp);
        goto out_tmp;
    }
    for (size_t i = 0; i < n; i++) {
        m.layer = reals[i];
        rc = pkg__walk(reals[i], merge_visit, &m, err);
        if (rc < 0)
            goto out_tmp;
    }
    if (fchmod(m.dstfd, 0755) < 0) {
        rc = pkg__fail_errno(err, errno, "cannot chmod %s", tmp);
        goto out_tmp;
    }
    rc = pkg__publish(store_dir, tmp, final, &reused, err);

out_tmp:
    if (m.dstfd >= 0)
        close(m.dstfd);
    if (rc < 0) {
        (void)pkg__rmtree_at(AT_FDCWD, tmp);
        goto out_free;
    }
out_done:
    rc = pkg_dir_size(final, out_size, err);
    if (rc == 0) {
        *out_dir = final;
        final = NULL;
    }
out_free:
    if (reals != NULL) {
        for (size_t i = 0; i < n; i++)
            free(reals[i]);
    }
    free(reals);
    free(m.buf);
    free(tmp);
    free(final);
    free(store_real);
    return rc;
}
