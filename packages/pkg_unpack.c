/*
 * packages/pkg_unpack.c - pkg_unpack(), pkg_unpack_file(): a zip checked and unpacked into its
 * content-addressed directory with libzip (Debian 12: 1.7.3; every call used here exists there).
 *
 * Two passes over the central directory. The first checks what the headers promise (names,
 * types, declared sizes, ratios, entry count) so that a bad archive fails before a byte is
 * written. The second writes, and counts again what really comes out, because headers lie.
 * Every path is created beneath the temp root's descriptor one component at a time with
 * O_NOFOLLOW, so no entry can be written through a symlink, whatever the archive's order; the
 * symlinks themselves are checked lexically when created and, once the whole tree is there,
 * resolved through the tree's other symlinks (a chain such as c -> a/b/.. with a/b -> .. only
 * escapes through the kernel's resolution, not on paper).
 */
#include "packages.h"
#include "packages_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zip.h>

#include "core/b64.h"
#include "core/errors.h"
#include "core/sha256.h"

/* An entry counts as a possible bomb only once it expands past this (see packages.h). */
#define RATIO_MIN_BYTES (1024u * 1024u)
/* Longest symlink target (PATH_MAX - 1): symlink() refuses longer ones anyway. */
#define LINK_MAX_BYTES 4095
/* Kernel's limit on symlinks followed in one resolution; we stop at the same point. */
#define LINK_MAX_HOPS 40
#define COPY_BUF (64 * 1024)
/* Pending path of the symlink resolver: a target and what is left of the one before. */
#define RESOLVE_MAX (4 * (LINK_MAX_BYTES + 1))

static const char corrupt_text[] =
    "Could not unzip uploaded file. Please check your file, then try to upload again.";

enum ent_kind { ENT_SKIP, ENT_FILE, ENT_DIR, ENT_LINK };

/* One zip entry as the first pass understood it. */
struct entry {
    char *path; /* owned: normalised, relative, no trailing slash */
    enum ent_kind kind;
    mode_t mode; /* final permission bits */
    uint64_t size, comp_size;
    time_t mtime;
    bool has_mtime;
};

struct unpack {
    const struct pkg_limits *lim;
    struct pkg_error *err;
    zip_t *za;
    struct entry *ents; /* owned, n of them */
    size_t n;
    int rootfd;
    /* The last parent directory opened, reused by the next entry in the same directory. */
    char parent[PKG_REL_MAX + 1];
    int parentfd;
    uint64_t written; /* regular-file bytes so far */
    unsigned char *buf;
};

static uint64_t lim_or_max(uint64_t v)
{
    return v ? v : UINT64_MAX;
}

static int fail_corrupt(struct unpack *u, const char *path, const char *why)
{
    char q[160];

    if (path == NULL)
        return pkg__fail(u->err, PKG_E_CORRUPT, "%s (%s)", corrupt_text, why);
    pkg__quote(path, q, sizeof(q));
    return pkg__fail(u->err, PKG_E_CORRUPT, "%s (entry '%s': %s)", corrupt_text, q, why);
}

/* The archive's own error (after a failed zip_* call on it). */
static int fail_zip(struct unpack *u, const char *path, zip_error_t *ze)
{
    if (zip_error_code_zip(ze) == ZIP_ER_MEMORY)
        return pkg__fail_errno(u->err, ENOMEM, "libzip");
    return fail_corrupt(u, path, zip_error_strerror(ze));
}

static int fail_unzipped(struct unpack *u, const char *path, uint64_t bytes)
{
    char q[160];

    pkg__quote(path, q, sizeof(q));
    return pkg__fail(u->err, PKG_E_TOO_LARGE_UNZIPPED,
                     "Unzipped size must be smaller than %llu bytes (at least %llu bytes, "
                     "reached at entry '%s')",
                     (unsigned long long)u->lim->max_unzipped_bytes, (unsigned long long)bytes, q);
}

static int fail_too_large_zip(struct pkg_error *err, uint64_t max, uint64_t have)
{
    /*
     * Lambda's number is the largest request body: the zip travels base64-encoded in the
     * JSON of CreateFunction, 4 bytes for every 3.
     */
    unsigned long long body = (unsigned long long)((max * 4 + 2) / 3);

    return pkg__fail(err, PKG_E_TOO_LARGE_ZIP,
                     "Request must be smaller than %llu bytes for the CreateFunction operation "
                     "(the zip has %llu bytes, at most %llu are allowed)",
                     body, (unsigned long long)have, (unsigned long long)max);
}

/*
 * Normalise the entry name NAME into OUT (PKG_REL_MAX + 1 bytes): backslashes are separators,
 * empty and "." components go. Returns NULL, or why the name is refused.
 */
static const char *normalize(const char *name, char *out, bool *trailing_slash)
{
    const char *p = name;
    size_t o = 0, len;
    int comps = 0;

    *trailing_slash = false;
    if (name[0] == '/' || name[0] == '\\')
        return "it is an absolute path";
    /* A Windows drive ("C:\x", "C:/x"): absolute wherever it was made. */
    if (((name[0] >= 'A' && name[0] <= 'Z') || (name[0] >= 'a' && name[0] <= 'z')) &&
        name[1] == ':' && (name[2] == '/' || name[2] == '\\'))
        return "it is an absolute path";
    while (*p != '\0') {
        const char *s = p;

        while (*p != '\0' && *p != '/' && *p != '\\')
            p++;
        len = (size_t)(p - s);
        if (*p != '\0') {
            p++;
            if (*p == '\0')
                *trailing_slash = true;
        }
        if (len == 0 || (len == 1 && s[0] == '.'))
            continue;
        if (len == 2 && s[0] == '.' && s[1] == '.')
            return "it has a '..' component";
        if (len > 255)
            return "a component is longer than 255 bytes";
        if (++comps > PKG_MAX_DEPTH)
            return "it has more than 128 components";
        if (o + (o ? 1 : 0) + len > PKG_REL_MAX)
            return "it is too long";
        if (o)
            out[o++] = '/';
        memcpy(out + o, s, len);
        o += len;
    }
    out[o] = '\0';
    return NULL;
}

/* First pass: fill u->ents from the central directory and check what it declares. */
static int scan(struct unpack *u, size_t zip_len)
{
    char norm[PKG_REL_MAX + 1], q[160];
    uint64_t declared = 0, comp_total = 0;
    uint64_t max_unzipped = lim_or_max(u->lim->max_unzipped_bytes);
    zip_int64_t n;

    n = zip_get_num_entries(u->za, 0);
    if (n < 0)
        return fail_zip(u, NULL, zip_get_error(u->za));
    if (u->lim->max_entries && (uint64_t)n > u->lim->max_entries)
        return pkg__fail(u->err, PKG_E_TOO_MANY_ENTRIES,
                         "Deployment package has %lld entries; at most %llu are allowed",
                         (long long)n, (unsigned long long)u->lim->max_entries);
    u->ents = calloc(n ? (size_t)n : 1, sizeof(*u->ents));
    if (u->ents == NULL)
        return pkg__fail_errno(u->err, ENOMEM, "calloc");
    u->n = (size_t)n;

    for (size_t i = 0; i < u->n; i++) {
        struct entry *e = &u->ents[i];
        zip_stat_t st;
        zip_uint8_t opsys = 0;
        zip_uint32_t attr = 0;
        mode_t umode = 0, fmt = 0, perm = 0;
        bool slash, unix_attrs;
        const char *why;

        zip_stat_init(&st);
        /* Names as libzip guesses them (UTF-8, or CP437 converted); NULs became spaces. */
        if (zip_stat_index(u->za, i, 0, &st) < 0)
            return fail_zip(u, NULL, zip_get_error(u->za));
        if (!(st.valid & ZIP_STAT_NAME) || !(st.valid & ZIP_STAT_SIZE) ||
            !(st.valid & ZIP_STAT_COMP_SIZE))
            return fail_corrupt(u, NULL, "an entry without name or sizes");
        if ((st.valid & ZIP_STAT_ENCRYPTION_METHOD) && st.encryption_method != ZIP_EM_NONE)
            return fail_corrupt(u, st.name, "it is encrypted");
        why = normalize(st.name, norm, &slash);
        if (why != NULL) {
            pkg__quote(st.name, q, sizeof(q));
            return pkg__fail(u->err, PKG_E_UNSAFE_PATH,
                             "Deployment package entry '%s' is not allowed: %s", q, why);
        }
        if (zip_file_get_external_attributes(u->za, i, 0, &opsys, &attr) < 0)
            return fail_zip(u, st.name, zip_get_error(u->za));
        if (opsys == ZIP_OPSYS_UNIX) {
            umode = (mode_t)(attr >> 16);
            fmt = umode & S_IFMT;
            perm = umode & 07777;
        }
        /* Only the type bits and no permissions (some tools): treat as no Unix attributes. */
        unix_attrs = opsys == ZIP_OPSYS_UNIX && perm != 0;

        if (slash || fmt == S_IFDIR) {
            e->kind = ENT_DIR;
            e->mode = unix_attrs ? ((perm & 0755) | 0700) : 0755;
        } else if (fmt == S_IFLNK) {
            e->kind = ENT_LINK;
        } else if (fmt == 0 || fmt == S_IFREG) {
            e->kind = ENT_FILE;
            e->mode = unix_attrs ? ((perm & 0755) | 0400) : 0644;
        } else {
            pkg__quote(st.name, q, sizeof(q));
            return pkg__fail(u->err, PKG_E_UNSAFE_PATH,
                             "Deployment package entry '%s' is not allowed: it is a device, "
                             "FIFO or socket",
                             q);
        }
        if (norm[0] == '\0') {
            if (e->kind != ENT_DIR) {
                pkg__quote(st.name, q, sizeof(q));
                return pkg__fail(u->err, PKG_E_UNSAFE_PATH,
                                 "Deployment package entry '%s' is not allowed: it has no name", q);
            }
            e->kind = ENT_SKIP; /* "./": the root itself */
            continue;
        }
        e->path = strdup(norm);
        if (e->path == NULL)
            return pkg__fail_errno(u->err, ENOMEM, "strdup");
        e->size = st.size;
        e->comp_size = st.comp_size;
        e->has_mtime = (st.valid & ZIP_STAT_MTIME) != 0;
        e->mtime = st.mtime;

        if (e->kind == ENT_DIR)
            continue;
        /* Sizes are at most 2^64 - 1 each; stop adding before the sum could wrap. */
        if (st.size > max_unzipped || declared > max_unzipped - st.size)
            return fail_unzipped(u, e->path, st.size > max_unzipped ? st.size : declared + st.size);
        declared += st.size;
        if (u->lim->max_ratio && st.size > RATIO_MIN_BYTES &&
            st.size / u->lim->max_ratio > st.comp_size) {
            pkg__quote(e->path, q, sizeof(q));
            return pkg__fail(u->err, PKG_E_BOMB,
                             "Deployment package entry '%s' would expand from %llu to %llu "
                             "bytes, more than %u times; refusing it as a zip bomb",
                             q, (unsigned long long)st.comp_size, (unsigned long long)st.size,
                             u->lim->max_ratio);
        }
        comp_total += st.comp_size;
        /*
         * Each entry's compressed data has its own bytes in an honest archive. Entries sharing
         * them (overlapping) are how a bomb gets past a per-entry ratio.
         */
        if (comp_total > zip_len)
            return pkg__fail(u->err, PKG_E_BOMB,
                             "Deployment package entries share compressed data (%llu bytes "
                             "in a %llu-byte file); refusing it as a zip bomb",
                             (unsigned long long)comp_total, (unsigned long long)zip_len);
    }
    return 0;
}

/* What is at NAME under DIRFD that stopped a component from being a directory. */
static int fail_not_dir(struct unpack *u, int dirfd, const char *name, const struct entry *e,
                        const char *prefix)
{
    struct stat st;
    char q[160], qp[160];

    pkg__quote(e->path, q, sizeof(q));
    pkg__quote(prefix, qp, sizeof(qp));
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
        return pkg__fail(u->err, PKG_E_UNSAFE_LINK,
                         "Deployment package entry '%s' is not allowed: it goes through the "
                         "symbolic link '%s'",
                         q, qp);
    return pkg__fail(u->err, PKG_E_UNSAFE_PATH,
                     "Deployment package entry '%s' is not allowed: '%s' is a file, not a "
                     "directory",
                     q, qp);
}

/*
 * Set *PFD to the directory that holds E (creating missing directories 0755) and *LEAF to E's
 * last component. The descriptor stays owned by U (the cache).
 */
static int open_parent(struct unpack *u, const struct entry *e, int *pfd, const char **leaf)
{
    const char *slash = strrchr(e->path, '/');
    size_t plen = slash ? (size_t)(slash - e->path) : 0;
    char prefix[PKG_REL_MAX + 1];
    int fd, rc = 0;
    size_t at = 0;

    *leaf = slash ? slash + 1 : e->path;
    if (plen == 0) {
        *pfd = u->rootfd;
        return 0;
    }
    if (u->parentfd >= 0 && strlen(u->parent) == plen && memcmp(u->parent, e->path, plen) == 0) {
        *pfd = u->parentfd;
        return 0;
    }
    if (u->parentfd >= 0)
        close(u->parentfd);
    u->parentfd = -1;
    u->parent[0] = '\0';

    memcpy(prefix, e->path, plen);
    prefix[plen] = '\0';
    fd = u->rootfd;
    while (at < plen) {
        char *comp = prefix + at, *end = strchr(comp, '/');
        char saved = 0;
        int next;

        if (end != NULL) {
            saved = *end;
            *end = '\0';
        }
        next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && errno == ENOENT) {
            if (mkdirat(fd, comp, 0700) < 0) {
                rc = pkg__fail_errno(u->err, errno, "cannot create directory '%s'", prefix);
                goto out_fd;
            }
            next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            /* Implied directory: 0755 (mkdirat's mode went through the umask). */
            if (next >= 0 && fchmod(next, 0755) < 0) {
                rc = pkg__fail_errno(u->err, errno, "cannot chmod '%s'", prefix);
                close(next);
                goto out_fd;
            }
        }
        if (next < 0) {
            /* O_NOFOLLOW on a symlink: ELOOP; a file: ENOTDIR. */
            if (errno == ELOOP || errno == ENOTDIR)
                rc = fail_not_dir(u, fd, comp, e, prefix);
            else
                rc = pkg__fail_errno(u->err, errno, "cannot open directory '%s'", prefix);
            goto out_fd;
        }
        if (fd != u->rootfd)
            close(fd);
        fd = next;
        if (end != NULL)
            *end = saved;
        at = end ? (size_t)(end - prefix) + 1 : plen;
    }
    memcpy(u->parent, e->path, plen);
    u->parent[plen] = '\0';
    u->parentfd = fd;
    *pfd = fd;
    return 0;

out_fd:
    if (fd != u->rootfd)
        close(fd);
    return rc;
}

static int fail_duplicate(struct unpack *u, const struct entry *e)
{
    char q[160];

    pkg__quote(e->path, q, sizeof(q));
    return pkg__fail(u->err, PKG_E_UNSAFE_PATH,
                     "Deployment package entry '%s' is not allowed: an earlier entry has the "
                     "same path",
                     q);
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int extract_dir(struct unpack *u, const struct entry *e, int pfd, const char *leaf)
{
    int fd;

    if (mkdirat(pfd, leaf, 0700) < 0 && errno != EEXIST)
        return pkg__fail_errno(u->err, errno, "cannot create directory '%s'", e->path);
    /*
     * Existing already: implied by an earlier entry (or listed twice), which is fine for a
     * directory; a file or symlink of that name is a collision (ELOOP/ENOTDIR here).
     */
    fd = openat(pfd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ELOOP || errno == ENOTDIR)
            return fail_duplicate(u, e);
        return pkg__fail_errno(u->err, errno, "cannot open directory '%s'", e->path);
    }
    if (fchmod(fd, e->mode) < 0) {
        int er = errno;

        close(fd);
        return pkg__fail_errno(u->err, er, "cannot chmod '%s'", e->path);
    }
    close(fd);
    return 0;
}

static int extract_file(struct unpack *u, size_t idx, const struct entry *e, int pfd,
                        const char *leaf)
{
    uint64_t max_unzipped = lim_or_max(u->lim->max_unzipped_bytes), got = 0;
    zip_file_t *zf = NULL;
    int fd, rc = 0;

    fd = openat(pfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return fail_duplicate(u, e);
        return pkg__fail_errno(u->err, errno, "cannot create '%s'", e->path);
    }
    zf = zip_fopen_index(u->za, idx, 0);
    if (zf == NULL) {
        rc = fail_zip(u, e->path, zip_get_error(u->za));
        goto out_close;
    }
    for (;;) {
        zip_int64_t n = zip_fread(zf, u->buf, COPY_BUF);

        if (n < 0) {
            /* CRC errors show here, at the end of the entry's data. */
            rc = fail_zip(u, e->path, zip_file_get_error(zf));
            goto out_close;
        }
        if (n == 0)
            break;
        got += (uint64_t)n;
        u->written += (uint64_t)n;
        if (got > e->size) {
            rc = fail_corrupt(u, e->path, "it holds more bytes than its header says");
            goto out_close;
        }
        if (u->written > max_unzipped) {
            rc = fail_unzipped(u, e->path, u->written);
            goto out_close;
        }
        if (u->lim->max_ratio && got > RATIO_MIN_BYTES && got / u->lim->max_ratio > e->comp_size) {
            char q[160];

            pkg__quote(e->path, q, sizeof(q));
            rc = pkg__fail(u->err, PKG_E_BOMB,
                           "Deployment package entry '%s' expands from %llu to more than %llu "
                           "bytes, more than %u times; refusing it as a zip bomb",
                           q, (unsigned long long)e->comp_size, (unsigned long long)got,
                           u->lim->max_ratio);
            goto out_close;
        }
        if (write_all(fd, u->buf, (size_t)n) < 0) {
            rc = pkg__fail_errno(u->err, errno, "cannot write '%s'", e->path);
            goto out_close;
        }
    }
    if (got != e->size) {
        rc = fail_corrupt(u, e->path, "it holds fewer bytes than its header says");
        goto out_close;
    }
    if (fchmod(fd, e->mode) < 0) {
        rc = pkg__fail_errno(u->err, errno, "cannot chmod '%s'", e->path);
        goto out_close;
    }
    if (e->has_mtime) {
        struct timespec ts[2] = {{.tv_sec = e->mtime}, {.tv_sec = e->mtime}};

        if (futimens(fd, ts) < 0) {
            rc = pkg__fail_errno(u->err, errno, "cannot set the time of '%s'", e->path);
            goto out_close;
        }
    }

out_close:
    if (zf != NULL && zip_fclose(zf) != 0 && rc == 0)
        rc = fail_corrupt(u, e->path, "libzip could not finish reading it");
    /* close() reports delayed write errors (NFS, quotas). */
    if (close(fd) < 0 && rc == 0)
        rc = pkg__fail_errno(u->err, errno, "cannot write '%s'", e->path);
    return rc;
}

static int fail_link(struct unpack *u, const struct entry *e, const char *why, const char *target)
{
    char q[160], qt[160];

    pkg__quote(e->path, q, sizeof(q));
    pkg__quote(target, qt, sizeof(qt));
    return pkg__fail(u->err, PKG_E_UNSAFE_LINK,
                     "Deployment package symbolic link '%s' is not allowed: %s ('%s')", q, why, qt);
}

/* Does TARGET, read from the directory of E, climb above the root (on paper)? */
static bool lexically_escapes(const struct entry *e, const char *target)
{
    long depth = 0;
    const char *p;

    for (p = e->path; *p != '\0'; p++)
        depth += *p == '/';
    for (p = target; *p != '\0';) {
        const char *s = p;
        size_t len;

        while (*p != '\0' && *p != '/')
            p++;
        len = (size_t)(p - s);
        if (*p == '/')
            p++;
        if (len == 0 || (len == 1 && s[0] == '.'))
            continue;
        if (len == 2 && s[0] == '.' && s[1] == '.') {
            if (--depth < 0)
                return true;
        } else {
            depth++;
        }
    }
    return false;
}

static int extract_link(struct unpack *u, size_t idx, const struct entry *e, int pfd,
                        const char *leaf)
{
    char *target = (char *)u->buf;
    size_t got = 0;
    zip_file_t *zf;
    int rc = 0;

    if (e->size > LINK_MAX_BYTES)
        return fail_link(u, e, "its target is longer than 4095 bytes", "...");
    zf = zip_fopen_index(u->za, idx, 0);
    if (zf == NULL)
        return fail_zip(u, e->path, zip_get_error(u->za));
    for (;;) {
        zip_int64_t n = zip_fread(zf, target + got, LINK_MAX_BYTES + 1 - got);

        if (n < 0) {
            rc = fail_zip(u, e->path, zip_file_get_error(zf));
            goto out_zf;
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got > LINK_MAX_BYTES) {
            rc = fail_corrupt(u, e->path, "it holds more bytes than its header says");
            goto out_zf;
        }
    }
    target[got] = '\0';
    if (got != e->size) {
        rc = fail_corrupt(u, e->path, "it holds fewer bytes than its header says");
        goto out_zf;
    }
    if (got == 0 || memchr(target, '\0', got) != NULL) {
        rc = fail_link(u, e, "its target is empty or holds a NUL byte", "");
        goto out_zf;
    }
    if (target[0] == '/') {
        rc = fail_link(u, e, "it points to an absolute path", target);
        goto out_zf;
    }
    if (lexically_escapes(e, target)) {
        rc = fail_link(u, e, "it points outside the package", target);
        goto out_zf;
    }
    if (symlinkat(target, pfd, leaf) < 0) {
        if (errno == EEXIST)
            rc = fail_duplicate(u, e);
        else
            rc = pkg__fail_errno(u->err, errno, "cannot create symlink '%s'", e->path);
        goto out_zf;
    }

out_zf:
    if (zip_fclose(zf) != 0 && rc == 0)
        rc = fail_corrupt(u, e->path, "libzip could not finish reading it");
    return rc;
}

/*
 * Resolve the symlink E the way the kernel will, inside the finished tree, following the
 * tree's other symlinks: refused when it gets above the root or to an absolute path. Where a
 * component does not exist (or is a file with more to come) the kernel's resolution fails, so
 * the link is harmless: a dangling link is allowed, as in Lambda.
 */
static int check_link_resolved(struct unpack *u, const struct entry *e)
{
    char *cur, *rest, *next, *orig = NULL, *p;
    size_t cur_len;
    int hops = 0, rc = 0;
    ssize_t tl;

    cur = malloc(PKG_REL_MAX + 1);
    rest = malloc(RESOLVE_MAX);
    next = malloc(RESOLVE_MAX);
    if (cur == NULL || rest == NULL || next == NULL) {
        rc = pkg__fail_errno(u->err, ENOMEM, "malloc");
        goto out_free;
    }
    tl = readlinkat(u->rootfd, e->path, rest, RESOLVE_MAX - 1);
    if (tl < 0) {
        rc = pkg__fail_errno(u->err, errno, "cannot read symlink '%s'", e->path);
        goto out_free;
    }
    rest[tl] = '\0';
    orig = strdup(rest); /* for the message: REST is rewritten as links are followed */
    if (orig == NULL) {
        rc = pkg__fail_errno(u->err, ENOMEM, "strdup");
        goto out_free;
    }
    /* Start in the link's directory: real directories only (open_parent() saw to it). */
    p = strrchr(e->path, '/');
    cur_len = p ? (size_t)(p - e->path) : 0;
    memcpy(cur, e->path, cur_len);
    cur[cur_len] = '\0';

    p = rest;
    while (*p != '\0') {
        const char *s = p;
        size_t len, old_len = cur_len;
        struct stat st;

        while (*p != '\0' && *p != '/')
            p++;
        len = (size_t)(p - s);
        if (*p == '/')
            p++;
        if (len == 0 || (len == 1 && s[0] == '.'))
            continue;
        if (len == 2 && s[0] == '.' && s[1] == '.') {
            if (cur_len == 0) {
                rc = fail_link(u, e, "it resolves outside the package", orig);
                goto out_free;
            }
            while (cur_len > 0 && cur[cur_len - 1] != '/')
                cur_len--;
            if (cur_len > 0)
                cur_len--; /* the slash */
            cur[cur_len] = '\0';
            continue;
        }
        if (cur_len + 1 + len > PKG_REL_MAX)
            break; /* longer than any path the tree has: ENOENT for the kernel too */
        if (cur_len)
            cur[cur_len++] = '/';
        memcpy(cur + cur_len, s, len);
        cur_len += len;
        cur[cur_len] = '\0';
        if (fstatat(u->rootfd, cur, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT || errno == ENOTDIR)
                break;
            rc = pkg__fail_errno(u->err, errno, "cannot stat '%s'", cur);
            goto out_free;
        }
        if (S_ISLNK(st.st_mode)) {
            if (++hops > LINK_MAX_HOPS) {
                rc = fail_link(u, e, "too many levels of symbolic links", orig);
                goto out_free;
            }
            tl = readlinkat(u->rootfd, cur, next, RESOLVE_MAX - 1);
            if (tl < 0) {
                rc = pkg__fail_errno(u->err, errno, "cannot read symlink '%s'", cur);
                goto out_free;
            }
            next[tl] = '\0';
            if (next[0] == '/') {
                rc = fail_link(u, e, "it resolves through other links to an absolute path", next);
                goto out_free;
            }
            /* Continue with the link's target, then what was left; from the link's dir. */
            if ((size_t)tl + 1 + strlen(p) >= RESOLVE_MAX) {
                rc = fail_link(u, e, "it resolves to a path that is too long", orig);
                goto out_free;
            }
            next[tl] = '/';
            memmove(next + tl + 1, p, strlen(p) + 1);
            p = rest;
            memcpy(rest, next, strlen(next) + 1);
            cur_len = old_len;
            cur[cur_len] = '\0';
            continue;
        }
        if (!S_ISDIR(st.st_mode) && *p != '\0')
            break; /* a file with more to come: ENOTDIR */
    }

out_free:
    free(orig);
    free(cur);
    free(rest);
    free(next);
    return rc;
}

static int extract_all(struct unpack *u)
{
    int rc = 0;

    for (size_t i = 0; i < u->n && rc == 0; i++) {
        const struct entry *e = &u->ents[i];
        const char *leaf = NULL;
        int pfd = -1;

        if (e->kind == ENT_SKIP)
            continue;
        rc = open_parent(u, e, &pfd, &leaf);
        if (rc < 0)
            break;
        switch (e->kind) {
        case ENT_DIR:
            rc = extract_dir(u, e, pfd, leaf);
            break;
        case ENT_FILE:
            rc = extract_file(u, i, e, pfd, leaf);
            break;
        case ENT_LINK:
            rc = extract_link(u, i, e, pfd, leaf);
            break;
        case ENT_SKIP:
            break;
        }
    }
    /* Links last: only the complete tree says where a chain of them leads. */
    for (size_t i = 0; i < u->n && rc == 0; i++) {
        if (u->ents[i].kind == ENT_LINK)
            rc = check_link_resolved(u, &u->ents[i]);
    }
    return rc;
}

static void fill_info(struct pkg_info *out, const unsigned char md[SHA256_LEN], size_t len,
                      uint64_t unzipped, char **dir)
{
    pkg__hex(md, SHA256_LEN, out->sha256_hex);
    b64_encode(md, SHA256_LEN, out->sha256_b64);
    out->zip_size = len;
    out->unzipped_size = unzipped;
    out->dir = *dir;
    *dir = NULL;
}

int pkg_unpack(const char *store_dir, const void *zip, size_t len, const struct pkg_limits *lim,
               struct pkg_info *out, struct pkg_error *err)
{
    static const struct pkg_limits no_limits;
    struct unpack u = {.rootfd = -1, .parentfd = -1, .err = err};
    unsigned char md[SHA256_LEN];
    char hex[2 * SHA256_LEN + 1];
    char *final = NULL, *tmp = NULL;
    zip_source_t *src;
    zip_error_t ze;
    struct stat st;
    bool reused;
    int rc;

    memset(out, 0, sizeof(*out));
    if (err != NULL) {
        err->kind = PKG_OK;
        err->msg[0] = '\0';
    }
    u.lim = lim ? lim : &no_limits;
    if (u.lim->max_zip_bytes && len > u.lim->max_zip_bytes)
        return fail_too_large_zip(err, u.lim->max_zip_bytes, len);
    if (len == 0)
        return fail_corrupt(&u, NULL, "the file is empty");

    sha256(zip, len, md);
    pkg__hex(md, SHA256_LEN, hex);
    if (asprintf(&final, "%s/%s", store_dir, hex) < 0)
        return pkg__fail_errno(err, ENOMEM, "asprintf");

    /* Content-addressed: the same bytes were unpacked before, completely (see publish). */
    if (lstat(final, &st) == 0) {
        uint64_t size;

        if (!S_ISDIR(st.st_mode)) {
            rc = pkg__fail(err, PKG_E_IO, "%s exists and is not a directory", final);
            goto out_free;
        }
        rc = pkg_dir_size(final, &size, err);
        if (rc < 0)
            goto out_free;
        if (size > lim_or_max(u.lim->max_unzipped_bytes)) {
            rc = pkg__fail(err, PKG_E_TOO_LARGE_UNZIPPED,
                           "Unzipped size must be smaller than %llu bytes (the package has %llu)",
                           (unsigned long long)u.lim->max_unzipped_bytes, (unsigned long long)size);
            goto out_free;
        }
        fill_info(out, md, len, size, &final);
        rc = 0;
        goto out_free;
    } else if (errno != ENOENT) {
        rc = pkg__fail_errno(err, errno, "cannot stat %s", final);
        goto out_free;
    }

    /* libzip: the buffer source borrows ZIP; the archive takes the source once it opened. */
    zip_error_init(&ze);
    src = zip_source_buffer_create(zip, len, 0, &ze);
    if (src == NULL) {
        rc = fail_zip(&u, NULL, &ze);
        zip_error_fini(&ze);
        goto out_free;
    }
    /*
     * Not ZIP_CHECKCONS: libzip before 1.10 rejects the zips of macOS's Archive Utility with it
     * (a compressed size in the local header next to a data descriptor; libzip commit
     * b3e3b19e). What it would add for us is covered otherwise: names and sizes come from the
     * central directory only, duplicates collide on O_EXCL, overlapping data fails scan().
     */
    u.za = zip_open_from_source(src, ZIP_RDONLY, &ze);
    if (u.za == NULL) {
        zip_source_free(src);
        rc = fail_zip(&u, NULL, &ze);
        zip_error_fini(&ze);
        goto out_free;
    }
    zip_error_fini(&ze);

    rc = scan(&u, len);
    if (rc < 0)
        goto out_zip;
    u.buf = malloc(COPY_BUF);
    if (u.buf == NULL) {
        rc = pkg__fail_errno(err, ENOMEM, "malloc");
        goto out_zip;
    }
    rc = pkg__mktemp(store_dir, hex + 48, &tmp, err);
    if (rc < 0)
        goto out_zip;
    u.rootfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (u.rootfd < 0) {
        rc = pkg__fail_errno(err, errno, "cannot open %s", tmp);
        goto out_tmp;
    }
    rc = extract_all(&u);
    if (rc < 0)
        goto out_tmp;
    /* mkdtemp made it 0700. */
    if (fchmod(u.rootfd, 0755) < 0) {
        rc = pkg__fail_errno(err, errno, "cannot chmod %s", tmp);
        goto out_tmp;
    }
    rc = pkg__publish(store_dir, tmp, final, &reused, err);
    if (rc < 0)
        goto out_tmp;
    fill_info(out, md, len, u.written, &final);

out_tmp:
    if (u.parentfd >= 0)
        close(u.parentfd);
    if (u.rootfd >= 0)
        close(u.rootfd);
    /* Failed: nothing of ours may stay in the store. After publish TMP is gone already. */
    if (rc < 0 && tmp != NULL)
        (void)pkg__rmtree_at(AT_FDCWD, tmp);
out_zip:
    zip_discard(u.za); /* read-only: nothing to write; frees the source too */
    for (size_t i = 0; i < u.n; i++)
        free(u.ents[i].path);
    free(u.ents);
    free(u.buf);
out_free:
    free(tmp);
    free(final);
    if (rc < 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

int pkg_unpack_file(const char *store_dir, const char *zip_path, const struct pkg_limits *lim,
                    struct pkg_info *out, struct pkg_error *err)
{
    uint64_t max = lim && lim->max_zip_bytes ? lim->max_zip_bytes : UINT64_MAX;
    unsigned char *buf = NULL, *grown;
    size_t cap, len = 0;
    struct stat st;
    int fd, rc;

    memset(out, 0, sizeof(*out));
    fd = open(zip_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pkg__fail_errno(err, errno, "cannot open %s", zip_path);
    if (fstat(fd, &st) < 0) {
        rc = pkg__fail_errno(err, errno, "cannot stat %s", zip_path);
        goto out_close;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = pkg__fail(err, PKG_E_IO, "%s is not a regular file", zip_path);
        goto out_close;
    }
    if ((uint64_t)st.st_size > max) {
        rc = fail_too_large_zip(err, max, (uint64_t)st.st_size);
        goto out_close;
    }
    /* One byte more than the size, to see a file that grew since fstat(). */
    cap = (size_t)st.st_size + 1;
    buf = malloc(cap);
    if (buf == NULL) {
        rc = pkg__fail_errno(err, ENOMEM, "malloc");
        goto out_close;
    }
    for (;;) {
        ssize_t n;

        if (len == cap) {
            if (len > max) {
                rc = fail_too_large_zip(err, max, len);
                goto out_buf;
            }
            /* Grown since fstat(): up to one byte over the limit, enough to see it is over. */
            if (max != UINT64_MAX && (uint64_t)cap * 2 > max + 1)
                cap = (size_t)max + 1;
            else
                cap *= 2;
            grown = realloc(buf, cap);
            if (grown == NULL) {
                rc = pkg__fail_errno(err, ENOMEM, "realloc");
                goto out_buf;
            }
            buf = grown;
        }
        n = read(fd, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = pkg__fail_errno(err, errno, "cannot read %s", zip_path);
            goto out_buf;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > max) {
        rc = fail_too_large_zip(err, max, len);
        goto out_buf;
    }
    rc = pkg_unpack(store_dir, buf, len, lim, out, err);

out_buf:
    free(buf);
out_close:
    close(fd);
    return rc;
}
