/*
 * packages/packages_int.h - what the files of packages/ share: filling a pkg_error, the temp
 * dir + rename publication, removing and walking trees without following symlinks.
 *
 * Same threading as packages.h: any thread, no shared state.
 */
#ifndef SY_PACKAGES_INT_H
#define SY_PACKAGES_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "packages.h"

/* Deepest tree we build or walk. Each level holds a descriptor while a walk is inside it. */
#define PKG_MAX_DEPTH 128
/* Most entries one walk visits (pkg_dir_size, merge, fingerprint). */
#define PKG_MAX_WALK 1000000u
/* Longest relative path inside a tree (leaves room for the store's own prefix). */
#define PKG_REL_MAX 3800
/* Temp dirs start with this; pkg_gc() removes the ones older than PKG_TMP_AGE_S. */
#define PKG_TMP_PREFIX ".tmp-"
#define PKG_TMP_AGE_S 3600

/*
 * Fill ERR (may be NULL) with KIND and the formatted message; returns the matching negative
 * SY_E* code, so callers write `rc = pkg__fail(...); goto out;`.
 */
int pkg__fail(struct pkg_error *err, enum pkg_err kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * The same for a failed system call: ERRNUM (an errno value) picks the kind and code (ENOMEM:
 * PKG_E_NOMEM; ENOSPC, EDQUOT: PKG_E_IO with SY_ENOSPC; else PKG_E_IO) and its text is
 * appended to the message ("WHAT: strerror").
 */
int pkg__fail_errno(struct pkg_error *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Quote NAME for a message into OUT (OUTLEN > 4): unprintable bytes as '?', long names cut. */
void pkg__quote(const char *name, char *out, size_t outlen);

/* Lower-case hex of the N bytes of MD into OUT (2 * N + 1 bytes). */
void pkg__hex(const unsigned char *md, size_t n, char *out);

/* True when S is exactly 64 lower-case hex digits (a content-addressed name). */
bool pkg__is_hex64(const char *s);

/*
 * Create STORE_DIR (one level) when missing and make a fresh temp dir in it named
 * ".tmp-TAG-XXXXXX" (mode 0700 while it is built). *OUT returns new (free()).
 */
int pkg__mktemp(const char *store_dir, const char *tag, char **out, struct pkg_error *err);

/*
 * Give the finished temp dir TMP the name FINAL: flush the file system (syncfs, so a name that
 * exists after a crash has its content), rename, fsync STORE_DIR. When FINAL appeared
 * meanwhile (a concurrent build of the same content), TMP is removed and *REUSED set: the
 * winner's copy is used. On failure TMP is left for the caller's cleanup.
 */
int pkg__publish(const char *store_dir, const char *tmp, const char *final, bool *reused,
                 struct pkg_error *err);

/*
 * Remove NAME under DIRFD (AT_FDCWD for a path) and everything below it, never following a
 * symlink. A missing NAME is fine. Returns 0 or -errno.
 */
int pkg__rmtree_at(int dirfd, const char *name);

/*
 * Walk visitor: called for every entry below the walk's root, parents before their children,
 * names in byte order within a directory. DIRFD/NAME reach the entry itself (never through a
 * symlink), REL is its path from the root, ST its lstat. Return 0 to go on (a directory is then
 * entered), or a negative SY_E* code to stop the walk with it.
 */
typedef int pkg_walk_fn(void *arg, int dirfd, const char *name, const char *rel,
                        const struct stat *st);

/*
 * Walk the tree at ROOT (followed if it is a symlink itself; nothing below is). Bounded by
 * PKG_MAX_DEPTH, PKG_MAX_WALK and PKG_REL_MAX. Returns 0 or the first error (ERR filled).
 */
int pkg__walk(const char *root, pkg_walk_fn *fn, void *arg, struct pkg_error *err);

#endif
