/*
 * bench/esm_fs.h - the file-drop pieces of bench_esm that need no broker: making the files,
 * moving them into a watched directory from a thread, and the same-run ceiling, a plain inotify
 * watcher that stats, reads and deletes each file. Errors end the bench (bc_fail).
 */
#ifndef SY_BENCH_ESM_FS_H
#define SY_BENCH_ESM_FS_H

#include <stddef.h>
#include <stdint.h>

/* N files of LEN bytes named f-<i> in DIR (made when missing), their mtime AGE_S seconds ago. */
void fs_make(const char *dir, long n, size_t len, int age_s);

/* A thread renaming FROM/f-<i> to TO/f-<i>, i = 0..N-1, as fast as it goes. */
struct fs_mover;
struct fs_mover *fs_move_start(const char *from, const char *to, long n);
/* Wait for it; returns when it started (bc_now_ns() clock) and frees it. */
uint64_t fs_move_join(struct fs_mover *mv);

/*
 * The ceiling: N files of STAGE renamed into DIR by a mover thread while this thread watches
 * DIR with inotify (IN_MOVED_TO, IN_CLOSE_WRITE; a queue overflow rescans the directory) and
 * stats, reads and deletes each file. Returns files/s from the first rename to the last delete.
 */
double fs_raw(const char *stage, const char *dir, long n);

/*
 * The latency baseline: SAMPLES times, one file renamed from STAGE into DIR and the time until a
 * plain inotify watcher has read its event (µs, malloc'd array of SAMPLES, caller frees), 10-15
 * ms apart.
 */
double *fs_raw_latency(const char *stage, const char *dir, long samples);

#endif
