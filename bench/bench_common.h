/*
 * bench/bench_common.h - what bench_invoke and bench_async share: the monotonic clock, failing
 * with the broker logs dumped and the children killed, percentile and median helpers, file
 * helpers, spawning `switchyard run` and reading its ready line, stopping a child with a
 * deadline, the blocking keep-alive HTTP/1.1 client, a JSON search, the machine line of the
 * report and the markdown table.
 *
 * Every message starts with bc_prog ("bench_invoke: ..."), which main() sets first. Every wait
 * is bounded: BC_IO_TIMEOUT_S per socket read or write, BC_READY_TIMEOUT_MS for a ready line,
 * BC_EXIT_TIMEOUT_MS from SIGTERM to exit.
 */
#ifndef SY_BENCH_COMMON_H
#define SY_BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <jansson.h>

#define BC_IO_TIMEOUT_S 15        /* any single socket read or write */
#define BC_READY_TIMEOUT_MS 15000 /* broker start until its ready line */
#define BC_EXIT_TIMEOUT_MS 10000  /* SIGTERM until exit; then SIGKILL */
#define BC_CONN_BUF 65536         /* a whole response must fit */
#define BC_WORKDIR_MAX 1024       /* bc_workdir */
#define BC_MAX_CHILDREN 10        /* slots of bc_child_pid[] / bc_child_log[] */

/* The program name that prefixes every message (set by main()). */
extern const char *bc_prog;

/* The bench's work dir (made by the bench); named on stderr by bc_fail(). */
extern char bc_workdir[BC_WORKDIR_MAX];

/*
 * Children to kill if the bench dies on an error path, by slot (-1: none), and the log file of
 * each slot ("" : none), dumped by bc_fail(). bc_broker_start() fills a slot.
 */
extern pid_t bc_child_pid[BC_MAX_CHILDREN];
extern char bc_child_log[BC_MAX_CHILDREN][BC_WORKDIR_MAX + 64];

/* ---- small helpers ---------------------------------------------------------------------- */

/* CLOCK_MONOTONIC in ns. */
uint64_t bc_now_ns(void);

/* Sleep MS milliseconds (restarted on EINTR). */
void bc_sleep_ms(int ms);

/*
 * Report "<bc_prog>: <message>", dump the logs of bc_child_log[], kill bc_child_pid[] and exit 1.
 * The work dir is kept (and named).
 */
__attribute__((format(printf, 1, 2), noreturn)) void bc_fail(const char *fmt, ...);

/* qsort() comparators. */
int bc_cmp_u64(const void *a, const void *b);
int bc_cmp_dbl(const void *a, const void *b);

/* Nearest-rank percentile P (0..1) of N sorted values (ns), in µs; NAN when N is 0. */
double bc_pct_us(const uint64_t *sorted, size_t n, double p);

/* Median of N values (NaNs ignored, at most 64 counted); NAN when none. Does not modify V. */
double bc_median(const double *v, size_t n);

/* Write TEXT to PATH (created with MODE, truncated); bc_fail() on error. */
void bc_write_file(const char *path, const char *text, mode_t mode);

/* Copy FROM to TO (created with MODE); bc_fail() on error. */
void bc_copy_file(const char *from, const char *to, mode_t mode);

/* mkdir PATH 0755; bc_fail() on error. */
void bc_mkdir(const char *path);

/* Remove the tree at PATH. 0, or -1 when something could not be removed. */
int bc_rm_tree(const char *path);

/* "--name" VALUE S as an integer in LO..HI; exits 2 with a message otherwise. */
long bc_long_arg(const char *s, const char *name, long lo, long hi);

/* ---- child processes ---------------------------------------------------------------------- */

/*
 * Start `BIN run CFG` in DIR with stderr to LOG (stdin and stdout /dev/null) in child slot SLOT,
 * and wait (bounded) for its ready line `ready: control API on http://127.0.0.1:PORT`. The log
 * file, not a pipe, takes stderr so the broker can never block on a full pipe while we are busy
 * measuring. Returns the port and sets *PID; bc_fail() when the broker is not ready in time.
 */
int bc_broker_start(const char *bin, const char *dir, const char *cfg, const char *log, int slot,
                    pid_t *pid);

/*
 * SIGTERM *PID and reap it, SIGKILL after BC_EXIT_TIMEOUT_MS; then *PID = -1. WHAT names it in
 * messages; with WARN_UNCLEAN, an exit other than status 0 is reported as a warning.
 */
void bc_child_stop(pid_t *pid, const char *what, int warn_unclean);

/* ---- the client: blocking keep-alive HTTP/1.1 over loopback ------------------------------ */

struct bc_conn {
    int fd;
    size_t len;  /* bytes in buf */
    size_t used; /* bytes of the previous response, dropped at the next round trip */
    char buf[BC_CONN_BUF];
};

struct bc_resp {
    int status;
    const char *body; /* borrowed from the conn until its next round trip */
    size_t body_len;
    int func_error;        /* X-Amz-Function-Error present */
    char log_result[8192]; /* X-Amz-Log-Result ("" when absent) */
};

/* Connect C to 127.0.0.1:PORT (TCP_NODELAY, I/O timeouts). 0, or -1 with ERR. */
int bc_conn_open(struct bc_conn *c, int port, char *err, size_t errsz);

/* Close C (no-op when closed); C->fd becomes -1. */
void bc_conn_close(struct bc_conn *c);

/*
 * Send REQ (one write) and read one Content-Length framed response into R. Returns 0, or -1
 * with ERR filled (the connection is then unusable).
 */
int bc_conn_roundtrip(struct bc_conn *c, const char *req, size_t reqlen, struct bc_resp *r,
                      char *err, size_t errsz);

/* Depth-first search for an integer member named KEY anywhere in J; -1 when absent. */
long long bc_json_find_int(json_t *j, const char *key);

/* ---- the report --------------------------------------------------------------------------- */

/* "# switchyard TITLE benchmark" and the machine line (CPUs, model, kernel, load). */
void bc_print_machine(const char *title);

#define BC_MAXCOL 9
#define BC_CELL 96
#define BC_MAXROWS 48

struct bc_row {
    char c[BC_MAXCOL][BC_CELL];
};

/* A markdown table: NCOL columns headed HEAD; columns NUM_FIRST..NUM_LAST are right-aligned. */
struct bc_table {
    int ncol;
    const char *const *head;
    int num_first, num_last;
    size_t nrows;
    struct bc_row rows[BC_MAXROWS];
};

/* A new row of T, every cell "—" but the first, which is FMT formatted. */
struct bc_row *bc_row_add(struct bc_table *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* V with DECIMALS decimals, or "—" when NAN. */
void bc_fmt_num(char *out, size_t sz, double v, int decimals);

/* Print T on stdout, columns padded to their widest cell (UTF-8 aware). */
void bc_print_table(const struct bc_table *t);

#endif
