/*
 * bench/esm_fs.c - the file-drop pieces of bench_esm that need no broker (see esm_fs.h).
 * The mover is a thread of its own that owns only its struct; everything else runs on the
 * bench's main thread.
 */
#include "esm_fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/inotify.h>
#include <sys/stat.h>

#include "bench_common.h"

void fs_make(const char *dir, long n, size_t len, int age_s)
{
    char path[PATH_MAX], *body = malloc(len ? len : 1);
    struct timespec ts[2];

    if (body == NULL)
        bc_fail("out of memory");
    memset(body, 'x', len);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        bc_fail("mkdir %s: %s", dir, strerror(errno));
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[0].tv_sec -= age_s;
    ts[1] = ts[0];
    for (long i = 0; i < n; i++) {
        int fd;

        snprintf(path, sizeof(path), "%s/f-%ld", dir, i);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, body, len) != (ssize_t)len || futimens(fd, ts) != 0)
            bc_fail("write %s: %s", path, strerror(errno));
        close(fd);
    }
    free(body);
}

struct fs_mover {
    pthread_t th;
    char from[PATH_MAX], to[PATH_MAX];
    long n;
    uint64_t t0;
    int err;
};

static void *mover_main(void *arg)
{
    struct fs_mover *mv = arg;
    char a[PATH_MAX + 32], b[PATH_MAX + 32];

    mv->t0 = bc_now_ns();
    for (long i = 0; i < mv->n; i++) {
        snprintf(a, sizeof(a), "%s/f-%ld", mv->from, i);
        snprintf(b, sizeof(b), "%s/f-%ld", mv->to, i);
        if (rename(a, b) != 0) {
            mv->err = errno;
            break;
        }
    }
    return NULL;
}

struct fs_mover *fs_move_start(const char *from, const char *to, long n)
{
    struct fs_mover *mv = calloc(1, sizeof(*mv));

    if (mv == NULL)
        bc_fail("out of memory");
    snprintf(mv->from, sizeof(mv->from), "%s", from);
    snprintf(mv->to, sizeof(mv->to), "%s", to);
    mv->n = n;
    if (pthread_create(&mv->th, NULL, mover_main, mv) != 0)
        bc_fail("pthread_create: %s", strerror(errno));
    return mv;
}

uint64_t fs_move_join(struct fs_mover *mv)
{
    uint64_t t0;

    pthread_join(mv->th, NULL);
    if (mv->err != 0)
        bc_fail("renaming files from %s to %s: %s", mv->from, mv->to, strerror(mv->err));
    t0 = mv->t0;
    free(mv);
    return t0;
}

/* Stat, read and delete NAME in DIRFD; 1 when it was there. */
static int take(int dirfd, const char *name)
{
    char buf[65536];
    struct stat st;
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

    if (fd < 0)
        return 0; /* taken by a rescan already */
    if (fstat(fd, &st) != 0)
        bc_fail("fstat %s: %s", name, strerror(errno));
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    close(fd);
    if (unlinkat(dirfd, name, 0) != 0)
        return 0;
    return 1;
}

static long rescan(int dirfd)
{
    int fd = dup(dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *e;
    long got = 0;

    if (d == NULL)
        bc_fail("opendir: %s", strerror(errno));
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            got += take(dirfd, e->d_name);
    closedir(d);
    return got;
}

/* Read what inotify has (waiting up to MS); returns files taken, *LAST the time of the read. */
static long serve(int in, int dirfd, int ms)
{
    char buf[65536] __attribute__((aligned(__alignof__(struct inotify_event))));
    struct pollfd p = {.fd = in, .events = POLLIN};
    long got = 0;
    ssize_t n;

    if (poll(&p, 1, ms) <= 0)
        return 0;
    n = read(in, buf, sizeof(buf));
    for (char *q = buf; n > 0 && q < buf + n;) {
        const struct inotify_event *ev = (const struct inotify_event *)q;

        if (ev->mask & IN_Q_OVERFLOW)
            got += rescan(dirfd);
        else if (ev->len > 0)
            got += take(dirfd, ev->name);
        q += sizeof(*ev) + ev->len;
    }
    return got;
}

static void watch_open(const char *dir, int *in, int *dirfd)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        bc_fail("mkdir %s: %s", dir, strerror(errno));
    *in = inotify_init1(IN_CLOEXEC);
    *dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*in < 0 || *dirfd < 0 || inotify_add_watch(*in, dir, IN_MOVED_TO | IN_CLOSE_WRITE) < 0)
        bc_fail("inotify on %s: %s", dir, strerror(errno));
}

double fs_raw(const char *stage, const char *dir, long n)
{
    int in, dirfd;
    long done = 0;
    uint64_t t0, t1, deadline;
    struct fs_mover *mv;

    watch_open(dir, &in, &dirfd);
    mv = fs_move_start(stage, dir, n);
    deadline = bc_now_ns() + 120ull * 1000000000ull;
    while (done < n) {
        done += serve(in, dirfd, 100);
        if (bc_now_ns() > deadline)
            bc_fail("plain inotify watcher: %ld of %ld files after 120 s", done, n);
    }
    t1 = bc_now_ns();
    t0 = fs_move_join(mv);
    close(in);
    close(dirfd);
    return (double)n / ((double)(t1 - t0) / 1e9);
}

double *fs_raw_latency(const char *stage, const char *dir, long samples)
{
    double *out = malloc((size_t)(samples ? samples : 1) * sizeof(*out));
    char a[PATH_MAX + 32], b[PATH_MAX + 32];
    int in, dirfd;

    if (out == NULL)
        bc_fail("out of memory");
    watch_open(dir, &in, &dirfd);
    fs_make(stage, samples, 100, 5);
    for (long i = 0; i < samples; i++) {
        uint64_t t0, deadline;

        bc_sleep_ms(10 + (int)((i * 7) % 6));
        snprintf(a, sizeof(a), "%s/f-%ld", stage, i);
        snprintf(b, sizeof(b), "%s/f-%ld", dir, i);
        t0 = bc_now_ns();
        if (rename(a, b) != 0)
            bc_fail("rename %s: %s", a, strerror(errno));
        deadline = t0 + 5000000000ull;
        while (serve(in, dirfd, 5) == 0)
            if (bc_now_ns() > deadline)
                bc_fail("plain inotify watcher: no event for %s within 5 s", b);
        out[i] = (double)(bc_now_ns() - t0) / 1000.0;
    }
    close(in);
    close(dirfd);
    return out;
}
