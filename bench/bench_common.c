/*
 * bench/bench_common.c - the infrastructure bench_invoke and bench_async share (see
 * bench_common.h).
 */
#include "bench_common.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>

const char *bc_prog = "bench";
char bc_workdir[BC_WORKDIR_MAX];
pid_t bc_child_pid[BC_MAX_CHILDREN] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1};
char bc_child_log[BC_MAX_CHILDREN][BC_WORKDIR_MAX + 64];

/* ---- small helpers ---------------------------------------------------------------------- */

uint64_t bc_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bc_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void dump_child_logs(void)
{
    for (int d = 0; d < BC_MAX_CHILDREN; d++) {
        char line[1024];
        FILE *f;

        if (bc_child_log[d][0] == '\0' || (f = fopen(bc_child_log[d], "r")) == NULL)
            continue;
        fprintf(stderr, "---- broker log (%s) ----\n", bc_child_log[d]);
        while (fgets(line, sizeof(line), f) != NULL)
            fputs(line, stderr);
        fprintf(stderr, "---- end of broker log ----\n");
        fclose(f);
    }
}

void bc_fail(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", bc_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    dump_child_logs();
    for (int d = 0; d < BC_MAX_CHILDREN; d++)
        if (bc_child_pid[d] > 0)
            kill(bc_child_pid[d], SIGKILL);
    if (bc_workdir[0] != '\0')
        fprintf(stderr, "%s: work dir kept: %s\n", bc_prog, bc_workdir);
    exit(1);
}

int bc_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

int bc_cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

double bc_pct_us(const uint64_t *sorted, size_t n, double p)
{
    size_t k = (size_t)ceil(p * (double)n);

    if (n == 0)
        return NAN;
    if (k == 0)
        k = 1;
    return (double)sorted[k - 1] / 1000.0;
}

double bc_median(const double *v, size_t n)
{
    double tmp[64];
    size_t m = 0;

    for (size_t i = 0; i < n && m < sizeof(tmp) / sizeof(tmp[0]); i++)
        if (!isnan(v[i]))
            tmp[m++] = v[i];
    if (m == 0)
        return NAN;
    qsort(tmp, m, sizeof(tmp[0]), bc_cmp_dbl);
    return m % 2 ? tmp[m / 2] : (tmp[m / 2 - 1] + tmp[m / 2]) / 2.0;
}

void bc_write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    size_t len = strlen(text), off = 0;

    if (fd < 0)
        bc_fail("cannot create %s: %s", path, strerror(errno));
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            bc_fail("cannot write %s: %s", path, strerror(errno));
        off += (size_t)n;
    }
    if (close(fd) != 0)
        bc_fail("cannot write %s: %s", path, strerror(errno));
}

void bc_copy_file(const char *from, const char *to, mode_t mode)
{
    char buf[65536];
    int in = open(from, O_RDONLY | O_CLOEXEC), out;
    ssize_t n;

    if (in < 0)
        bc_fail("cannot open %s: %s (build it, or pass --bootstrap)", from, strerror(errno));
    out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (out < 0)
        bc_fail("cannot create %s: %s", to, strerror(errno));
    while ((n = read(in, buf, sizeof(buf))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            bc_fail("cannot read %s: %s", from, strerror(errno));
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                bc_fail("cannot write %s: %s", to, strerror(errno));
            off += w;
        }
    }
    close(in);
    if (close(out) != 0)
        bc_fail("cannot write %s: %s", to, strerror(errno));
}

void bc_mkdir(const char *path)
{
    if (mkdir(path, 0755) != 0)
        bc_fail("mkdir %s: %s", path, strerror(errno));
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 ? 0 : -1;
}

int bc_rm_tree(const char *path)
{
    return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

long bc_long_arg(const char *s, const char *name, long lo, long hi)
{
    char *end;
    long v = strtol(s, &end, 10);

    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "%s: %s must be %ld..%ld (got %s)\n", bc_prog, name, lo, hi, s);
        exit(2);
    }
    return v;
}

/* ---- child processes ---------------------------------------------------------------------- */

int bc_broker_start(const char *bin, const char *dir, const char *cfg, const char *log, int slot,
                    pid_t *pidp)
{
    char text[16384];
    const char *key = "ready: control API on http://";
    const char *logp = bc_child_log[slot];
    uint64_t deadline = bc_now_ns() + (uint64_t)BC_READY_TIMEOUT_MS * 1000000u;
    pid_t parent = getpid(), pid;
    int logfd;

    snprintf(bc_child_log[slot], sizeof(bc_child_log[slot]), "%s", log);
    logfd = open(logp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (logfd < 0)
        bc_fail("cannot create %s: %s", logp, strerror(errno));
    pid = fork();
    if (pid < 0)
        bc_fail("fork: %s", strerror(errno));
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(logfd, 2) < 0 ||
            chdir(dir) != 0)
            _exit(126);
        execl(bin, bin, "run", cfg, (char *)NULL);
        dprintf(2, "exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    close(logfd);
    bc_child_pid[slot] = pid;
    *pidp = pid;

    for (;;) {
        int status, fd, port;
        ssize_t n;
        const char *hit, *colon;

        if (waitpid(pid, &status, WNOHANG) == pid) {
            bc_child_pid[slot] = -1;
            bc_fail("the broker (%s) exited before it was ready (status 0x%x)", bin, status);
        }
        fd = open(logp, O_RDONLY | O_CLOEXEC);
        n = fd < 0 ? -1 : read(fd, text, sizeof(text) - 1);
        if (fd >= 0)
            close(fd);
        if (n > 0) {
            text[n] = '\0';
            hit = strstr(text, key);
            if (hit != NULL && strchr(hit, '\n') != NULL) {
                hit += strlen(key);
                colon = strchr(hit, ':');
                if (colon == NULL || strncmp(hit, "127.0.0.1:", 10) != 0)
                    bc_fail("unexpected ready line (want 127.0.0.1:PORT): %.60s", hit);
                port = atoi(colon + 1);
                if (port <= 0)
                    bc_fail("no port in the ready line: %.60s", hit);
                return port;
            }
        }
        if (bc_now_ns() > deadline)
            bc_fail("the broker printed no ready line within %d ms", BC_READY_TIMEOUT_MS);
        bc_sleep_ms(1);
    }
}

void bc_child_stop(pid_t *pid, const char *what, int warn_unclean)
{
    int status = 0;
    uint64_t deadline = bc_now_ns() + (uint64_t)BC_EXIT_TIMEOUT_MS * 1000000u;

    if (*pid <= 0)
        return;
    kill(*pid, SIGTERM);
    for (;;) {
        pid_t r = waitpid(*pid, &status, WNOHANG);
        if (r == *pid || (r < 0 && errno != EINTR))
            break;
        if (bc_now_ns() > deadline) {
            fprintf(stderr, "%s: %s did not exit %d ms after SIGTERM; SIGKILL\n", bc_prog, what,
                    BC_EXIT_TIMEOUT_MS);
            kill(*pid, SIGKILL);
            waitpid(*pid, &status, 0);
            break;
        }
        bc_sleep_ms(1);
    }
    if (warn_unclean && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        fprintf(stderr, "%s: warning: %s did not exit cleanly on SIGTERM (status 0x%x)\n", bc_prog,
                what, status);
    *pid = -1;
}

/* ---- the client --------------------------------------------------------------------------- */

int bc_conn_open(struct bc_conn *c, int port, char *err, size_t errsz)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {.tv_sec = BC_IO_TIMEOUT_S, .tv_usec = 0};
    int one = 1;

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->len = c->used = 0;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        snprintf(err, errsz, "socket: %s", strerror(errno));
        return -1;
    }
    /* The timeouts bound connect() too (Linux applies SO_SNDTIMEO to it). */
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        snprintf(err, errsz, "connect 127.0.0.1:%d: %s", port, strerror(errno));
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    return 0;
}

void bc_conn_close(struct bc_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* Read more bytes into the buffer; -1 with ERR on EOF, error or timeout. */
static int conn_fill(struct bc_conn *c, char *err, size_t errsz)
{
    for (;;) {
        ssize_t n;

        if (c->len == sizeof(c->buf)) {
            snprintf(err, errsz, "response larger than %zu bytes", sizeof(c->buf));
            return -1;
        }
        n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        if (n > 0) {
            c->len += (size_t)n;
            return 0;
        }
        if (n == 0) {
            snprintf(err, errsz, "connection closed by the server");
            return -1;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            snprintf(err, errsz, "no response within %d s", BC_IO_TIMEOUT_S);
        else
            snprintf(err, errsz, "recv: %s", strerror(errno));
        return -1;
    }
}

/* Is the header line LINE (LEN bytes) NAME? Then its trimmed value in VAL/VLEN. */
static int hdr_is(const char *line, size_t len, const char *name, const char **val, size_t *vlen)
{
    size_t nl = strlen(name);

    if (len <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0)
        return 0;
    *val = line + nl + 1;
    *vlen = len - nl - 1;
    while (*vlen > 0 && (**val == ' ' || **val == '\t')) {
        (*val)++;
        (*vlen)--;
    }
    while (*vlen > 0 && ((*val)[*vlen - 1] == ' ' || (*val)[*vlen - 1] == '\t'))
        (*vlen)--;
    return 1;
}

int bc_conn_roundtrip(struct bc_conn *c, const char *req, size_t reqlen, struct bc_resp *r,
                      char *err, size_t errsz)
{
    const char *eoh, *p, *end;
    size_t head, clen = 0, off = 0;
    int have_clen = 0;

    if (c->used > 0) {
        memmove(c->buf, c->buf + c->used, c->len - c->used);
        c->len -= c->used;
        c->used = 0;
    }
    while (off < reqlen) {
        ssize_t n = send(c->fd, req + off, reqlen - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(err, errsz, "send: %s", n < 0 ? strerror(errno) : "nothing written");
            return -1;
        }
        off += (size_t)n;
    }
    while ((eoh = memmem(c->buf, c->len, "\r\n\r\n", 4)) == NULL)
        if (conn_fill(c, err, errsz) != 0)
            return -1;
    head = (size_t)(eoh - c->buf) + 4;
    if (c->len < 12 || strncmp(c->buf, "HTTP/1.", 7) != 0) {
        snprintf(err, errsz, "malformed status line");
        return -1;
    }
    r->status = atoi(c->buf + 9);
    r->func_error = 0;
    r->log_result[0] = '\0';
    p = memchr(c->buf, '\n', head) + 1;
    end = eoh + 2;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *val;
        size_t len = (size_t)(nl - p), vlen;

        if (len > 0 && p[len - 1] == '\r')
            len--;
        if (hdr_is(p, len, "Content-Length", &val, &vlen)) {
            clen = strtoul(val, NULL, 10);
            have_clen = 1;
        } else if (hdr_is(p, len, "X-Amz-Function-Error", &val, &vlen)) {
            r->func_error = 1;
        } else if (hdr_is(p, len, "X-Amz-Log-Result", &val, &vlen)) {
            if (vlen >= sizeof(r->log_result))
                vlen = sizeof(r->log_result) - 1;
            memcpy(r->log_result, val, vlen);
            r->log_result[vlen] = '\0';
        } else if (hdr_is(p, len, "Transfer-Encoding", &val, &vlen)) {
            snprintf(err, errsz, "chunked responses are not supported by the bench client");
            return -1;
        }
        p = nl + 1;
    }
    if (!have_clen) {
        snprintf(err, errsz, "response without Content-Length (status %d)", r->status);
        return -1;
    }
    if (head + clen > sizeof(c->buf)) {
        snprintf(err, errsz, "response body of %zu bytes is too large", clen);
        return -1;
    }
    while (c->len < head + clen)
        if (conn_fill(c, err, errsz) != 0)
            return -1;
    r->body = c->buf + head;
    r->body_len = clen;
    c->used = head + clen;
    return 0;
}

long long bc_json_find_int(json_t *j, const char *key)
{
    const char *k;
    json_t *v;
    size_t i;

    if (json_is_object(j)) {
        json_object_foreach(j, k, v)
        {
            if (strcmp(k, key) == 0 && json_is_integer(v))
                return json_integer_value(v);
        }
        json_object_foreach(j, k, v)
        {
            long long r = bc_json_find_int(v, key);
            if (r >= 0)
                return r;
        }
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v)
        {
            long long r = bc_json_find_int(v, key);
            if (r >= 0)
                return r;
        }
    }
    return -1;
}

/* ---- the report --------------------------------------------------------------------------- */

void bc_print_machine(const char *title)
{
    struct utsname u;
    char line[512], cpu[256] = "unknown";
    double load[3] = {NAN, NAN, NAN};
    FILE *f = fopen("/proc/cpuinfo", "r");

    if (f != NULL) {
        while (fgets(line, sizeof(line), f) != NULL) {
            char *colon = strchr(line, ':');
            if (strncmp(line, "model name", 10) == 0 && colon != NULL) {
                snprintf(cpu, sizeof(cpu), "%s", colon + 2);
                cpu[strcspn(cpu, "\n")] = '\0';
                break;
            }
        }
        fclose(f);
    }
    getloadavg(load, 3);
    uname(&u);
    printf("# switchyard %s benchmark\n\n", title);
    printf("- machine: %ld CPUs (nproc), %s; kernel %s %s %s; load %.2f %.2f %.2f at start\n",
           sysconf(_SC_NPROCESSORS_ONLN), cpu, u.sysname, u.release, u.machine, load[0], load[1],
           load[2]);
}

struct bc_row *bc_row_add(struct bc_table *t, const char *fmt, ...)
{
    struct bc_row *r = &t->rows[t->nrows++];
    va_list ap;

    for (int i = 0; i < t->ncol; i++)
        snprintf(r->c[i], sizeof(r->c[i]), "—");
    va_start(ap, fmt);
    vsnprintf(r->c[0], sizeof(r->c[0]), fmt, ap);
    va_end(ap);
    return r;
}

void bc_fmt_num(char *out, size_t sz, double v, int decimals)
{
    if (isnan(v))
        snprintf(out, sz, "—");
    else
        snprintf(out, sz, "%.*f", decimals, v);
}

/* Display width: count UTF-8 code points (µ, Δ, ×, ≤, ≥ and — are one column each). */
static int width(const char *s)
{
    int w = 0;

    for (; *s != '\0'; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

static void print_cell(const char *s, int w)
{
    printf("| %s%*s ", s, w - width(s), "");
}

void bc_print_table(const struct bc_table *t)
{
    int w[BC_MAXCOL];

    for (int i = 0; i < t->ncol; i++) {
        w[i] = width(t->head[i]);
        for (size_t r = 0; r < t->nrows; r++)
            if (width(t->rows[r].c[i]) > w[i])
                w[i] = width(t->rows[r].c[i]);
    }
    for (int i = 0; i < t->ncol; i++)
        print_cell(t->head[i], w[i]);
    printf("|\n");
    for (int i = 0; i < t->ncol; i++) {
        printf("|");
        for (int k = 0; k < w[i] + 2; k++)
            putchar(i >= t->num_first && i <= t->num_last && k == w[i] + 1 ? ':' : '-');
    }
    printf("|\n");
    for (size_t r = 0; r < t->nrows; r++) {
        for (int i = 0; i < t->ncol; i++)
            print_cell(t->rows[r].c[i], w[i]);
        printf("|\n");
    }
}
