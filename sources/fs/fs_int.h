/*
 * sources/fs/fs_int.h - what the files of the file-drop source share (never included outside
 * sources/fs/ except by tests).
 *
 *   fs.c        the ops, the config table and validate(), the pump (candidates -> hash jobs ->
 *               records), acknowledgements and the success / failure actions, stop, destroy
 *   fs_watch.c  paths beneath the root (no symlink, no `..`), ignore / prefix / suffix rules,
 *               inotify and the watched directories, the incremental scanner (catch-up,
 *               overflow rescans, new directories, the min_age_ms scans)
 *   fs_state.c  the table of known files, the state journal in data_dir, and the helper thread
 *               `sy-fs` that hashes files and appends (fdatasync) to the journal
 *   fs_event.c  the record JSON (S3's ObjectCreated record), the key's form-URL-encoding,
 *               encode_batch, batch_info
 *
 * Threads: everything runs on the loop thread that owns the source's event_base, except the
 * `sy-fs` helper thread (one per started source, fs_state.c). That thread touches only
 * `struct src_fs_worker` under its mutex and the `struct src_fs_hjob`s handed to it: a job
 * carries an open file descriptor (opened on the loop, beneath the root), and the thread reads
 * it, computes its MD5 and fstat()s it again; it never resolves a path. Results come back
 * through an eventfd read on the loop.
 *
 * Ownership: the source owns every `struct src_fs_file` and `struct src_fs_dir` (its tables);
 * a hash job owns its descriptor and is owned by whoever holds it (the loop until it is queued,
 * the worker until it is done, the loop again after). A job's `file` pointer is the loop's: the
 * worker never dereferences it, and the file cannot be freed while a job refers to it (its
 * state is HASHING).
 */
#ifndef SY_SRC_FS_INT_H
#define SY_SRC_FS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/stat.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/md5.h"
#include "sources/source.h"

/* ---- config (`source: fs:`) --------------------------------------------------------------- */

/* The typed `source: fs:` block (owned by the config; borrowed by the source). validate()
 * makes `path` and the DIR of `move:DIR` absolute (against the config file's directory). */
struct src_fs_cfg {
    char *path;                /* the watched root (absolute, no trailing slash) */
    int recursive;             /* watch and scan subdirectories too */
    char *prefix;              /* S3 filter rule: the key must start with it ("" = any) */
    char *suffix;              /* S3 filter rule: the key must end with it ("" = any) */
    struct cfg_strlist ignore; /* glob patterns of names never delivered (defaults filled in) */
    char *bucket;              /* s3.bucket.name; NULL = the root's base name */
    char *on_success;          /* "keep" | "delete" | "move:/abs/dir" */
    char *on_failure;          /* "keep" | "move:/abs/dir" */
    int min_age_ms;            /* 0 = off; else files unchanged for that long are taken */
    int scan_interval_ms;      /* the min_age_ms scan's period */
};

/* The kind (table, defaults) handed to config/ through source_kinds(). */
extern const struct cfg_source_kind src_fs_kind;

/* The adapter (registered in sources/source.c). */
extern const struct source_ops src_fs_ops;

/* ---- limits ------------------------------------------------------------------------------- */

#define SRC_FS_SETTLE_MS                                                                           \
    1000                           /* a scan takes a file not closed under our eyes only when its  \
                                      mtime is this old (or min_age_ms when set) */
#define SRC_FS_PENDING_MAX 4096    /* candidates queued at most: scans and inotify wait above */
#define SRC_FS_HASH_MAX 64         /* files open for hashing at once */
#define SRC_FS_SCAN_STEP 256       /* directory entries looked at per loop turn */
#define SRC_FS_ROOT_RETRY_MS 1000  /* a missing root is looked for again after this */
#define SRC_FS_STOP_WAIT_MS 5000   /* stop(): the journal gets this long to reach the disk */
#define SRC_FS_CHUNK (256 * 1024)  /* the worker reads files in chunks of this size */
#define SRC_FS_JOURNAL_DELAY_MS 20 /* journal writes wait at most this long behind hashing */

enum src_fs_action {
    SRC_FS_KEEP,   /* leave the file; remember it (state journal) so it is never taken again */
    SRC_FS_DELETE, /* unlink it */
    SRC_FS_MOVE,   /* rename it into DIR, keeping its relative path */
};

/* ---- known files -------------------------------------------------------------------------- */

/* What tells two versions of a file apart: a file overwritten later is a new object. */
struct src_fs_ident {
    uint64_t ino;
    int64_t size;
    int64_t mtime_ns;
};

enum src_fs_fstate {
    SRC_FS_F_IDLE,      /* known (processed earlier: `done_known`), nothing under way */
    SRC_FS_F_PENDING,   /* queued for the pump */
    SRC_FS_F_HASHING,   /* open, with the worker */
    SRC_FS_F_DELIVERED, /* a record is with the host */
};

/* One path relative to the root, in the file table (one allocation with its name). */
struct src_fs_file {
    struct src_fs_file *hnext;
    TAILQ_ENTRY(src_fs_file) plink; /* on `pending` while PENDING */
    uint32_t hash;
    enum src_fs_fstate st;
    bool done_known;          /* `done` holds the version last processed (in the journal) */
    bool copy;                /* arrived by a rename: ObjectCreated:Copy */
    bool again;               /* an event came while it was in flight: look after the ack */
    bool again_copy;          /* ...and that event was a rename */
    bool unreadable;          /* open() was refused: tried again on IN_ATTRIB or a scan */
    struct src_fs_ident done; /* the version processed last (done_known) */
    struct src_fs_ident cur;  /* the version being hashed / delivered */
    uint64_t seen_gen;        /* the full scan that saw it last */
    size_t len;
    char rel[]; /* the relative path, raw bytes, NUL-terminated */
};

TAILQ_HEAD(src_fs_fileq, src_fs_file);

struct src_fs_ftab {
    struct src_fs_file **b;
    size_t nb; /* buckets, a power of two */
    size_t n;
};

/* One watched directory. */
struct src_fs_dir {
    struct src_fs_dir *hnext;
    int wd;
    size_t len;
    char rel[]; /* "" for the root */
};

struct src_fs_dtab {
    struct src_fs_dir **b;
    size_t nb;
    size_t n;
};

/* ---- the worker (fs_state.c) -------------------------------------------------------------- */

/* A file to hash. */
struct src_fs_hjob {
    unsigned magic;
    struct src_fs_hjob *next;
    int fd;                   /* owned: closed by the loop when the job comes back */
    struct src_fs_file *file; /* the loop's; never dereferenced by the worker */
    /* results (written by the worker) */
    int err;                   /* 0, or an errno value (ECANCELED: stopped) */
    int64_t bytes;             /* read */
    struct src_fs_ident after; /* fstat() after the last read */
    char etag[2 * MD5_LEN + 1];
};

struct src_fs_worker {
    pthread_t th;
    bool running; /* th was started */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int efd; /* eventfd: the worker -> the loop */
    struct event *ev;
    /* under mu */
    struct src_fs_hjob *todo, *todo_tail;
    struct src_fs_hjob *done, *done_tail;
    struct buf journal; /* lines to append, in order */
    char *snapshot;     /* the whole journal to write first (compaction), or NULL */
    size_t snapshot_len;
    uint64_t want_gen;   /* bumped with every append the loop hands over */
    uint64_t synced_gen; /* appends up to this one are on disk */
    bool quit;
    char err[256]; /* the last journal write failure ("" none), for the loop to log */
    atomic_bool cancel;
    /* the worker's own */
    char *path; /* the journal */
    int jfd;
};

/* ---- the source --------------------------------------------------------------------------- */

struct src_fs_scan_item {
    char *rel;
    bool moved; /* found inside a directory renamed into the tree: Copy, no settle time */
};

struct src_fs {
    struct source base; /* first: source.c casts */
    unsigned magic;
    const struct src_fs_cfg *cfg; /* borrowed */
    struct event_base *evb;       /* borrowed */
    char prefix[96];              /* "[source:fs:MAPPING]" */
    char *bucket;                 /* s3.bucket.name (owned) */
    char *arn;                    /* arn:aws:s3:::BUCKET */
    char *state_path;             /* data_dir/fs/MAPPING.state */
    enum src_fs_action on_success, on_failure;
    const char *success_dir, *failure_dir; /* borrowed from the config (after "move:") */
    char *excl[2];                         /* move dirs inside the root, relative (owned) */
    int settle_ms;

    /* The root. */
    bool root_ok;
    int rootfd; /* O_PATH, the root's directory as opened (-1 none) */
    int ifd;    /* inotify (-1 none) */
    struct event *iev;
    bool iev_on; /* iev is added (reading inotify) */
    int root_wd;
    char root_real[4096];
    struct event *root_retry;
    char problem[256];

    struct src_fs_ftab files;
    struct src_fs_dtab dirs;
    struct src_fs_fileq pending;
    size_t pending_n, hashing_n, delivered_n;

    /* The scanner. */
    struct src_fs_scan_item *stack;
    size_t stack_n, stack_cap;
    void *dirp; /* DIR * being listed, or NULL */
    struct src_fs_scan_item cur;
    bool scanning, scan_full, scan_young, rescan_wanted, catchup;
    uint64_t gen;              /* of the current full scan */
    struct event *scan_ev;     /* the next step */
    struct event *rescan_ev;   /* settle rescan (one shot) */
    struct event *periodic_ev; /* min_age_ms scans */

    struct src_fs_worker w;
    struct event *kick; /* the pump, on a clean stack */

    bool started, paused, stopping, finished;
    struct event *stop_timer;
    struct event *done_ev;
    source_stopped_fn *stop_done;
    void *stop_arg;
    uint64_t stop_gen;

    uint64_t seq_last; /* the last sequencer */
    uint64_t overflows;

    /* inotify read buffer */
    char ibuf[65536] __attribute__((aligned(8)));
};

/* ---- fs.c ---------------------------------------------------------------------------------- */

/* Run the pump on the next loop turn. */
void src_fs_kick(struct src_fs *fs);

/* The root went away or cannot be used: SOURCE_PROBLEM with REASON, watches dropped, looked
 * for again every SRC_FS_ROOT_RETRY_MS. */
void src_fs_root_lost(struct src_fs *fs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- fs_watch.c ---------------------------------------------------------------------------- */

/*
 * Open REL (relative to the root, components separated by '/') beneath fs->rootfd without
 * following any symlink and refusing "." and ".." components. PARENT: return the directory
 * that holds the last component (O_PATH) and set *NAME to that component (borrowed from REL);
 * else open REL itself with FLAGS (O_NOFOLLOW and O_CLOEXEC added). Returns the descriptor
 * (the caller closes it) or -errno.
 */
int src_fs_open_beneath(struct src_fs *fs, const char *rel, int flags, bool parent,
                        const char **name);

/* Whether NAME (one path component) or REL matches an ignore pattern. */
bool src_fs_ignored(const struct src_fs *fs, const char *name, const char *rel);

/* Whether the key REL passes prefix and suffix. */
bool src_fs_key_match(const struct src_fs *fs, const char *rel, size_t len);

/* Open inotify, watch the root and start the catch-up scan. 0, or -errno (state set). */
int src_fs_watch_start(struct src_fs *fs);

/* Close inotify and forget every watch (the root's descriptor stays open). */
void src_fs_watch_stop(struct src_fs *fs);

/* Start reading inotify again / stop (backpressure). */
void src_fs_watch_read(struct src_fs *fs, bool on);

/* Start a scan of everything (restarting one under way). CATCHUP: prune the journal of
 * processed files no longer there when it completes. */
void src_fs_scan_all(struct src_fs *fs, bool catchup);

/* Let a scan that stopped for backpressure go on. */
void src_fs_scan_resume(struct src_fs *fs);

/* Free the scanner's stack and close its directory. */
void src_fs_scan_reset(struct src_fs *fs);

/* A candidate from an event: REL (LEN bytes) was closed after writing (COPY false) or renamed
 * into the tree (COPY true). */
void src_fs_consider_event(struct src_fs *fs, const char *rel, size_t len, bool copy);

/* Free the directory table. */
void src_fs_dirs_free(struct src_fs *fs);

/* ---- fs_state.c ---------------------------------------------------------------------------- */

/* The entry for REL[0..LEN): found, or made (IDLE) when MAKE; NULL when absent or out of
 * memory. */
struct src_fs_file *src_fs_file_get(struct src_fs *fs, const char *rel, size_t len, bool make);

/* Free F when nothing refers to it any more (IDLE and not done_known). */
void src_fs_file_maybe_free(struct src_fs *fs, struct src_fs_file *f);

/* Free every entry. */
void src_fs_files_free(struct src_fs *fs);

bool src_fs_ident_eq(const struct src_fs_ident *a, const struct src_fs_ident *b);
void src_fs_ident_of(struct src_fs_ident *id, const struct stat *st);

/* Read the journal into the file table (done entries). Decides on compaction. Loop, at
 * start: a local read bounded by the journal's size. Returns 0 or SY_ENOMEM / SY_EIO. */
int src_fs_state_load(struct src_fs *fs);

/* Remember F's `done` version (KEEP) / forget it: appended to the journal by the worker. */
void src_fs_state_done(struct src_fs *fs, struct src_fs_file *f);
void src_fs_state_forget(struct src_fs *fs, struct src_fs_file *f);

/* Start / stop the worker thread. start: 0 or a negative SY_E*. stop joins it (bounded by one
 * chunk read and one fdatasync). */
int src_fs_worker_start(struct src_fs *fs);
void src_fs_worker_stop(struct src_fs *fs);

/* Hand JOB (taken) to the worker. */
void src_fs_worker_push(struct src_fs *fs, struct src_fs_hjob *job);

/* Whether every journal append handed over so far is on disk. */
bool src_fs_worker_synced(struct src_fs *fs);

/* Loop side of the worker's eventfd: defined in fs.c (finished jobs to records). */
void src_fs_jobs_done(struct src_fs *fs, struct src_fs_hjob *jobs);

/* ---- fs_event.c ---------------------------------------------------------------------------- */

/* Form-URL-encode REL[0..LEN) into OUT (S3's key encoding). Returns 0 or SY_ENOMEM. */
int src_fs_key_encode(struct buf *out, const char *rel, size_t len);

/* The record for F (its `cur` version, hashed by JOB, owner UID). Returns new, or NULL. */
struct source_record *src_fs_record_new(struct src_fs *fs, const struct src_fs_file *f,
                                        const struct src_fs_hjob *job, unsigned uid);

int src_fs_encode_batch(struct source *src, struct source_record *const *recs, size_t n,
                        struct buf *out);
int src_fs_batch_info(struct source *src, struct source_record *const *recs, size_t n,
                      struct buf *out);

#endif
