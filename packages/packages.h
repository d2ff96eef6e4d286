/*
 * packages/packages.h - the code-package store: zip deployment packages and layers unpacked once
 * into a content-addressed directory, layers merged the way Lambda lays out /opt, the sizes the
 * caller checks against Lambda's limits, and the garbage collection of what no function uses.
 *
 * Layout (STORE is the caller's `<data_dir>/packages`; docs/packages.md has the details):
 *
 *     STORE/<sha256 hex of the zip>/      one unpacked package or layer (read-only by contract)
 *     STORE/opt-<sha256 hex>/             a merged /opt for one ordered list of layers
 *     STORE/.tmp-*                        being built (or left by a crash; pkg_gc() removes them)
 *
 * A directory is built under a temp name inside STORE and renamed into place, so a name that
 * exists is always complete, and whoever finds it reuses it instead of building it again. Two
 * threads or processes building the same name both succeed: the second rename loses, and its
 * builder drops its own copy and uses the winner's.
 *
 * Threads: every function here does blocking file I/O (and may take seconds on a large
 * package), so the broker calls them from a helper thread, never from the loop. They use no
 * libevent and no global state (but one atomic counter in pkg_gc()), and are safe to call from
 * several threads at once, on the same STORE too. Nothing is logged: failures come back as a
 * `struct pkg_error`.
 *
 * Returns: 0, or a negative SY_E* code (core/errors.h): SY_ENOMEM, SY_ENOSPC (disk full),
 * SY_EIO (any other file-system error), SY_ETOOBIG (a size or entry limit, a bomb), SY_EINVAL
 * (the archive is refused: corrupt, unsafe path or link). ERR (may be NULL) then says which
 * rule in `kind` and why in `msg`; on success it is left alone (pkg_unpack() and pkg_merge()
 * reset it to PKG_OK first).
 *
 * Ownership: every `const char *` and array argument is borrowed for the call. The one pointer
 * handed out is `pkg_info.dir` / pkg_merge()'s *OUT_DIR: returns new, the caller frees it
 * (pkg_info_clear() for the former, free() for the latter). Nothing is kept between calls.
 */
#ifndef SY_PACKAGES_H
#define SY_PACKAGES_H

#include <stddef.h>
#include <stdint.h>

/*
 * What an archive may be. pkg_limits_lambda() gives Lambda's numbers:
 *   max_zip_bytes       52428800 (50 MiB), the direct-upload limit of CreateFunction;
 *   max_unzipped_bytes  262144000 (250 MiB), Lambda's unzipped limit (which Lambda applies to
 *                       code and layers together: the caller adds pkg_dir_size() of the merged
 *                       /opt and checks the sum);
 *   max_entries         20000: our choice, Lambda publishes none. Generous for real packages
 *                       (a large node_modules has a few thousand files), and it bounds the
 *                       inodes and the time one upload can cost;
 *   max_ratio           200: our choice. An entry that expands to more than 1 MiB may be at
 *                       most 200 times its compressed size. Deflate cannot do better than about
 *                       1032:1; source code and binaries stay well under 20:1; only a run of
 *                       one repeated byte (a zip bomb, or a sparse image) gets near the bound.
 * Zero in any field means "no limit" (tests and trusted tools).
 */
struct pkg_limits {
    uint64_t max_zip_bytes;
    uint64_t max_unzipped_bytes;
    uint64_t max_entries;
    uint32_t max_ratio;
};

/* Lambda's limits, as above. */
struct pkg_limits pkg_limits_lambda(void);

/*
 * Why a call failed: one X-macro list of kind and a short name (for logs and the API's mapping
 * to HTTP errors; the user-facing text is pkg_error.msg).
 */
#define PKG_ERRORS(X)                                                                              \
    X(PKG_OK, "ok")                                                                                \
    X(PKG_E_CORRUPT, "corrupt")             /* libzip refused it, CRC error, bad sizes */          \
    X(PKG_E_TOO_LARGE_ZIP, "too_large_zip") /* over max_zip_bytes */                               \
    X(PKG_E_TOO_LARGE_UNZIPPED, "too_large_unzipped") /* declared or written over the limit */     \
    X(PKG_E_UNSAFE_PATH, "unsafe_path") /* absolute, "..", duplicate, special file, too deep */    \
    X(PKG_E_UNSAFE_LINK, "unsafe_link") /* symlink out of the package, or a path through one */    \
    X(PKG_E_BOMB, "bomb")               /* ratio over max_ratio, overlapping entries */            \
    X(PKG_E_TOO_MANY_ENTRIES, "too_many_entries")                                                  \
    X(PKG_E_IO, "io") /* the file system failed (msg has the errno text) */                        \
    X(PKG_E_NOMEM, "nomem")

enum pkg_err {
#define PKG_ERR_ENUM(name, text) name,
    PKG_ERRORS(PKG_ERR_ENUM)
#undef PKG_ERR_ENUM
};

/* The short name of KIND ("corrupt", ...); "unknown" for anything else. */
const char *pkg_err_name(enum pkg_err kind);

/*
 * msg is meant for the user and uses Lambda's wording where Lambda has one, followed by the
 * specifics in parentheses (which entry, which sizes):
 *   PKG_E_CORRUPT             "Could not unzip uploaded file. Please check your file, then try
 *                             to upload again. (entry 'x': CRC error)"
 *   PKG_E_TOO_LARGE_UNZIPPED  "Unzipped size must be smaller than 262144000 bytes (...)"
 *   PKG_E_TOO_LARGE_ZIP       "Request must be smaller than 69905067 bytes for the
 *                             CreateFunction operation (...)": Lambda's
 *                             RequestEntityTooLargeException, whose number is the base64 size
 *                             of max_zip_bytes; the API rewrites the operation's name for
 *                             UpdateFunctionCode and PublishLayerVersion.
 * Other kinds have our own sentence. Entry names are quoted with unprintable bytes as '?' and
 * long ones shortened.
 */
struct pkg_error {
    enum pkg_err kind;
    char msg[512];
};

/* What pkg_unpack() made or found. */
struct pkg_info {
    char sha256_b64[48];    /* CodeSha256 as Lambda reports it: base64 of the zip's SHA-256 */
    char sha256_hex[65];    /* the same digest in lower-case hex: the directory's name */
    uint64_t zip_size;      /* bytes of the zip (Lambda's CodeSize) */
    uint64_t unzipped_size; /* regular-file bytes of the tree (symlinks count nothing) */
    char *dir;              /* returns new: "STORE/<sha256_hex>"; free with pkg_info_clear() */
};

/* Free INFO's dir and zero it. INFO may be NULL; clearing twice is fine. */
void pkg_info_clear(struct pkg_info *info);

/*
 * Unpack the LEN bytes of the zip ZIP (borrowed for the call) into STORE_DIR/<hex>, or find it
 * there: the name is the SHA-256 of the bytes, so a directory that exists already is reused
 * without reading the archive (its size is still checked against LIM, in case the limits were
 * lowered since). STORE_DIR is created (one level, 0755) when missing. LIM may be NULL (no
 * limits).
 *
 * What the tree looks like: entries keep their modes from the zip's Unix external attributes
 * without setuid, setgid, sticky and group/other write; the owner can always read (and, for a
 * directory, write and search). Entries without Unix attributes get 0644, directories 0755,
 * implied directories 0755. Files keep the zip's modification time (Python compares its .pyc
 * files against it). Symlinks are created as they are stored.
 *
 * Refused (nothing is left in STORE_DIR afterwards; ERR says which rule and which entry):
 * more than max_entries; a name that is absolute ('/x', 'C:/x'), has a '..' component, is
 * empty, has a component over 255 bytes or more than 128 components; two entries that land on
 * the same path after normalising (backslashes become '/', empty and '.' components are
 * dropped, so 'a//b', './a/b' and 'a\b' are all 'a/b'; a directory listed twice is fine); a
 * FIFO, socket or device entry; an entry whose path goes through one of the package's own
 * symlinks; a symlink whose target is absolute, empty, or leaves the package, resolved from
 * the link's directory (through the package's other symlinks too; a dangling link is allowed,
 * a chain of more than 40 is not); declared sizes or written bytes over max_unzipped_bytes
 * (the bytes written are counted, headers are not trusted); an entry over 1 MiB that expands
 * more than max_ratio times, or entries whose compressed data overlap; anything libzip reports
 * (no end of central directory, CRC errors, encrypted entries, unknown compression methods)
 * and entries holding more or fewer bytes than their header says. A NUL byte in a name never
 * reaches us: libzip turns it into a space when it reads the central directory.
 *
 * Backslashes: an unzip on Linux keeps them as part of the file name, which is why zips from
 * Windows PowerShell 5's Compress-Archive are known to fail on Lambda; we take them as the
 * separator they were meant to be, so such a package works here, and '..\x' cannot hide a
 * '..'. (A deliberate difference; docs/packages.md.)
 *
 * OUT is filled on success and zeroed on failure. Durable: the tree is on disk (syncfs) before
 * it gets its name.
 */
int pkg_unpack(const char *store_dir, const void *zip, size_t len, const struct pkg_limits *lim,
               struct pkg_info *out, struct pkg_error *err);

/*
 * pkg_unpack() of the zip file ZIP_PATH. The file is read into memory (at most
 * lim->max_zip_bytes; a larger file fails before it is read) rather than mapped: a file that
 * someone truncates while it is mapped kills the reader with SIGBUS, and the file is the user's.
 */
int pkg_unpack_file(const char *store_dir, const char *zip_path, const struct pkg_limits *lim,
                    struct pkg_info *out, struct pkg_error *err);

/*
 * Merge the N directory trees DIRS (in order: later trees overwrite what earlier ones put at
 * the same path, as Lambda extracts layers into /opt one after the other) into
 * STORE_DIR/opt-<hex>, or find it there, and set *OUT_DIR (returns new: free()) and *OUT_SIZE
 * (its regular-file bytes, as pkg_dir_size()). N == 0: *OUT_DIR = NULL, *OUT_SIZE = 0, returns 0.
 *
 * <hex> is the SHA-256 over, for each dir in order, its realpath and a fingerprint: for a
 * directory of this store (STORE_DIR/<64 hex>) its name, which names its content; for any other
 * directory every entry's relative path, type, mode, size, mtime and inode (and link target),
 * so changing a file of a plain layer directory yields a new merge. A file changed in place
 * that keeps its size and mtime is not noticed.
 *
 * Files are hard links to the layers' files when the file system allows (so a merge costs
 * inodes, not bytes) and copies otherwise; symlinks are recreated with their target; FIFOs,
 * sockets and devices are skipped. Where a later tree has a file and an earlier one a directory
 * (or the other way round), the later one replaces it. A hard link shares the layer file's
 * inode, mode included; a copy gets the unpack rule (no setuid/setgid/sticky or group/other
 * write). The walk never follows a symlink below
 * each DIRS[i] (DIRS[i] itself may be one). Built in a temp dir and renamed into place like
 * pkg_unpack(); nothing is left behind on failure.
 *
 * Because of the hard links, a plain layer directory's file edited in place (same inode) also
 * changes in merges made before the edit; the store's own directories are never written to.
 */
int pkg_merge(const char *store_dir, const char *const *dirs, size_t n, char **out_dir,
              uint64_t *out_size, struct pkg_error *err);

/*
 * Set *BYTES to the sum of the sizes of the regular files under DIR (symlinks are not followed
 * and count nothing; hard-linked files count once per name). The walk is bounded: more than
 * 1,000,000 entries or 128 levels fail (PKG_E_TOO_MANY_ENTRIES, PKG_E_UNSAFE_PATH).
 */
int pkg_dir_size(const char *dir, uint64_t *bytes, struct pkg_error *err);

/*
 * Remove from STORE_DIR every unpacked package (<64 hex>) and merged /opt (opt-<64 hex>) not
 * named in KEEP, and every temp dir (.tmp-*) older than an hour (younger ones may be builds in
 * progress). KEEP holds N_KEEP paths as pkg_unpack()/pkg_merge() returned them, or bare names;
 * they are matched by their last component (NULL items are skipped). Other files in STORE_DIR
 * are left alone. A directory is first renamed to a temp name, so a concurrent pkg_unpack()
 * never finds it half deleted, then removed. A missing STORE_DIR is fine. Returns the first
 * error but goes on with the other entries.
 *
 * The caller must call it only when no execution environment, and no pkg_unpack() or
 * pkg_merge() that may return one of the removed directories, uses them: removal is immediate
 * and a running function would lose its code.
 */
int pkg_gc(const char *store_dir, const char *const *keep, size_t n_keep, struct pkg_error *err);

#endif
