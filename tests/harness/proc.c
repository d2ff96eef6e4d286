/*
 * tests/harness/proc.c - spawning, waiting for, stopping and reaping child processes; running
 * commands with captured output and a deadline; finding strays (see proc.h).
 *
 * Between fork() and execve() the child only calls async-signal-safe functions: the test
 * process may have threads (concurrent HTTP requests), so everything that allocates (the
 * environment, the resolved path) is prepared before the fork.
 */
#include "harness/proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness/util.h"

extern char **environ;

/* Children spawned by h_proc_spawn() and not reaped yet: never strays. Main thread only. */
static pid_t spawned[64];
static size_t n_spawned;

static void spawned_del(pid_t pid)
{
    for (size_t i = 0; i < n_spawned; i++) {
        if (spawned[i] == pid) {
            spawned[i] = spawned[--n_spawned];
            return;
        }
    }
}

void h_proc_init(void)
{
    static bool done;

    if (done)
        return;
    done = true;
    /* Orphans of the broker (environments it failed to reap) become ours, so teardown can find
     * and kill them instead of leaking them onto the machine. */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
        fprintf(stderr, "harness: PR_SET_CHILD_SUBREAPER: %s\n", strerror(errno));
    /* A server closing early must show up as EPIPE on our write, not kill the test. */
    signal(SIGPIPE, SIG_IGN);
}

/* Does "NAME=..." or "NAME" (an edit) name the variable VAR ("NAME=VALUE" from environ)? */
static bool same_name(const char *edit, const char *var)
{
    size_t n = strcspn(edit, "=");

    return strncmp(edit, var, n) == 0 && var[n] == '=';
}

/* Our environment with ENV's edits applied. Returns new (free with free_env). */
static char **build_env(const char *const env[])
{
    size_t n_env = 0, n_ours = 0, k = 0;
    char **out;

    while (env != NULL && env[n_env] != NULL)
        n_env++;
    while (environ[n_ours] != NULL)
        n_ours++;
    out = calloc(n_ours + n_env + 1, sizeof(*out));
    if (out == NULL)
        abort();
    for (size_t i = 0; i < n_ours; i++) {
        bool edited = false;

        for (size_t j = 0; j < n_env && !edited; j++)
            edited = same_name(env[j], environ[i]);
        if (!edited)
            out[k++] = strdup(environ[i]);
    }
    for (size_t j = 0; j < n_env; j++) {
        /* A later edit of the same name wins: drop earlier ones already copied. */
        for (size_t i = 0; i < k; i++) {
            if (same_name(env[j], out[i])) {
                free(out[i]);
                out[i] = out[--k];
                out[k] = NULL;
                break;
            }
        }
        if (strchr(env[j], '=') != NULL)
            out[k++] = strdup(env[j]);
    }
    out[k] = NULL;
    return out;
}

static void free_env(char **envp)
{
    for (size_t i = 0; envp != NULL && envp[i] != NULL; i++)
        free(envp[i]);
    free(envp);
}

/* ARG0 resolved against PATH (ours), or a copy of it when it holds a '/'. Returns new. */
static char *resolve(const char *arg0)
{
    const char *path = getenv("PATH");
    char *copy, *dir, *save = NULL;

    if (strchr(arg0, '/') != NULL || path == NULL)
        return strdup(arg0);
    copy = strdup(path);
    for (dir = strtok_r(copy, ":", &save); dir != NULL; dir = strtok_r(NULL, ":", &save)) {
        char *cand = h_strfmt("%s/%s", *dir ? dir : ".", arg0);

        if (access(cand, X_OK) == 0) {
            free(copy);
            return cand;
        }
        free(cand);
    }
    free(copy);
    return strdup(arg0);
}

/*
 * The child's side between fork and exec: own process group, die with the parent, default
 * signal handling, the given descriptors on 0/1/2. Async-signal-safe only.
 */
static void child_setup(pid_t parent, int in_fd, int out_fd, int err_fd, const char *cwd)
{
    sigset_t none;

    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    /* The parent may have died before prctl() ran: then nobody would ever kill us. */
    if (getppid() != parent)
        _exit(127);
    signal(SIGPIPE, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
        _exit(127);
    if (cwd != NULL && chdir(cwd) != 0)
        _exit(127);
}

/*
 * Fork and exec ARGV with IN_FD, OUT_FD and ERR_FD on the child's 0/1/2 (the caller keeps and
 * closes them). Returns 0 (P filled) or -1 (a line on stderr).
 */
static int spawn_fds(struct h_proc *p, char *const argv[], const char *const env[], const char *cwd,
                     int in_fd, int out_fd, int err_fd)
{
    pid_t parent = getpid();
    char **envp = build_env(env);
    char *path = resolve(argv[0]);
    int epipe[2] = {-1, -1};
    int child_errno = 0;
    int rc = -1;
    ssize_t n;
    pid_t pid;

    h_proc_init();
    memset(p, 0, sizeof(*p));
    if (pipe2(epipe, O_CLOEXEC) != 0) {
        fprintf(stderr, "harness: spawn %s: %s\n", argv[0], strerror(errno));
        goto out_free;
    }
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "harness: fork: %s\n", strerror(errno));
        goto out_close;
    }
    if (pid == 0) {
        int e;

        close(epipe[0]);
        child_setup(parent, in_fd, out_fd, err_fd, cwd);
        execve(path, argv, envp);
        /* Exec failed: tell the parent why through the close-on-exec pipe. */
        e = errno;
        if (write(epipe[1], &e, sizeof(e)) < 0)
            _exit(127);
        _exit(127);
    }
    close(epipe[1]);
    epipe[1] = -1;
    /* EOF (0 bytes) means the exec succeeded and closed the pipe; 4 bytes are its errno. */
    do {
        n = read(epipe[0], &child_errno, sizeof(child_errno));
    } while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof(child_errno)) {
        fprintf(stderr, "harness: exec %s: %s\n", path, strerror(child_errno));
        waitpid(pid, NULL, 0);
        goto out_close;
    }
    p->pid = pid;
    if (n_spawned < sizeof(spawned) / sizeof(spawned[0]))
        spawned[n_spawned++] = pid;
    rc = 0;
out_close:
    if (epipe[0] >= 0)
        close(epipe[0]);
    if (epipe[1] >= 0)
        close(epipe[1]);
out_free:
    free(path);
    free_env(envp);
    return rc;
}

int h_proc_spawn(struct h_proc *p, char *const argv[], const char *const env[], const char *cwd,
                 const char *out_path)
{
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int out = open(out_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int rc = -1;

    memset(p, 0, sizeof(*p));
    if (devnull < 0 || out < 0)
        fprintf(stderr, "harness: spawn %s: %s: %s\n", argv[0],
                devnull < 0 ? "/dev/null" : out_path, strerror(errno));
    else
        rc = spawn_fds(p, argv, env, cwd, devnull, out, out);
    if (devnull >= 0)
        close(devnull);
    if (out >= 0)
        close(out);
    return rc;
}

int h_proc_spawn_piped(struct h_proc *p, char *const argv[], const char *const env[],
                       const char *cwd, const char *err_path, int *to_child, int *from_child)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1};
    int err = open(err_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int rc = -1;

    memset(p, 0, sizeof(*p));
    *to_child = *from_child = -1;
    /* All four ends are close-on-exec: the child gets its two through dup2() (which clears the
     * flag on 0 and 1), and no other child we spawn later inherits them, so EOF on the child's
     * stdin really means we closed it. */
    if (err < 0 || pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
        fprintf(stderr, "harness: spawn %s: %s\n", argv[0], strerror(errno));
        goto out_close;
    }
    if (spawn_fds(p, argv, env, cwd, in[0], out[1], err) != 0)
        goto out_close;
    *to_child = in[1];
    *from_child = out[0];
    in[1] = out[0] = -1;
    rc = 0;
out_close:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (out[i] >= 0)
            close(out[i]);
    }
    if (err >= 0)
        close(err);
    return rc;
}

int h_proc_wait(struct h_proc *p, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;

    if (p->pid <= 0 || p->reaped)
        return 0;
    for (;;) {
        pid_t r = waitpid(p->pid, &p->status, WNOHANG);

        if (r == p->pid || (r < 0 && errno == ECHILD)) {
            p->reaped = true;
            spawned_del(p->pid);
            return 0;
        }
        if (h_now_ms() >= deadline)
            return -1;
        h_sleep_ms(5);
    }
}

int h_proc_stop(struct h_proc *p, int sig, int grace_ms)
{
    if (p->pid <= 0 || p->reaped)
        return 0;
    if (kill(p->pid, sig) != 0 && errno == ESRCH) {
        h_proc_wait(p, 1000);
        return -1;
    }
    if (h_proc_wait(p, grace_ms) == 0)
        return 0;
    kill(p->pid, SIGKILL);
    h_proc_wait(p, 10000);
    return 1;
}

int h_proc_exit_code(const struct h_proc *p)
{
    if (!p->reaped)
        return -1;
    if (WIFEXITED(p->status))
        return WEXITSTATUS(p->status);
    if (WIFSIGNALED(p->status))
        return 128 + WTERMSIG(p->status);
    return -1;
}

/* State letter and parent of PID from /proc/PID/stat; 0 when it does not exist. */
static char proc_state(pid_t pid, pid_t *ppid)
{
    char path[64], buf[512];
    const char *rp;
    char state = 0;
    int fd, ppid_i = 0;
    ssize_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: parse after the last ')'. */
    rp = strrchr(buf, ')');
    if (rp == NULL || sscanf(rp + 1, " %c %d", &state, &ppid_i) != 2)
        return 0;
    if (ppid != NULL)
        *ppid = ppid_i;
    return state;
}

bool h_pid_alive(pid_t pid)
{
    char s = proc_state(pid, NULL);

    return s != 0 && s != 'Z' && s != 'X';
}

/*
 * One pass over our children that are neither kept nor spawned by us. Zombies (dead, their
 * parent exited without reaping them) are reaped with a note. Live ones are counted, and
 * killed (with their process group) and reaped when KILL_THEM is set.
 */
static int scan_strays(const pid_t *keep, size_t n_keep, bool kill_them)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    pid_t me = getpid();
    int live = 0;

    if (d == NULL)
        return 0;
    while ((de = readdir(d)) != NULL) {
        pid_t pid = (pid_t)atoi(de->d_name), ppid = 0;
        bool kept = false;
        char state;

        if (pid <= 0)
            continue;
        state = proc_state(pid, &ppid);
        if (state == 0 || ppid != me)
            continue;
        for (size_t i = 0; i < n_keep && !kept; i++)
            kept = keep[i] == pid;
        for (size_t i = 0; i < n_spawned && !kept; i++)
            kept = spawned[i] == pid;
        if (kept)
            continue;
        if (state == 'Z' || state == 'X') {
            fprintf(stderr, "harness: reaped zombie %d (its parent exited without reaping it)\n",
                    (int)pid);
            waitpid(pid, NULL, WNOHANG);
            continue;
        }
        live++;
        if (!kill_them)
            continue;
        fprintf(stderr, "harness: stray process %d (state %c) left behind; killing it\n", (int)pid,
                state);
        if (getpgid(pid) == pid)
            kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    closedir(d);
    return live;
}

int h_proc_kill_strays(const pid_t *keep, size_t n_keep, int grace_ms)
{
    int64_t deadline = h_now_ms() + grace_ms;

    /* A process that was just killed may need a moment to become a zombie. */
    while (scan_strays(keep, n_keep, false) > 0 && h_now_ms() < deadline)
        h_sleep_ms(10);
    return scan_strays(keep, n_keep, true);
}

/* Append what is readable on FD to *BUF; returns 0 at EOF, 1 if more may come. */
static int drain(int fd, char **buf, size_t *len, size_t *cap)
{
    char chunk[65536];
    ssize_t n = read(fd, chunk, sizeof(chunk));

    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 1;
    if (n <= 0)
        return 0;
    if (*len + (size_t)n + 1 > *cap) {
        while (*len + (size_t)n + 1 > *cap)
            *cap = *cap ? *cap * 2 : 65536;
        *buf = realloc(*buf, *cap);
        if (*buf == NULL)
            abort();
    }
    memcpy(*buf + *len, chunk, (size_t)n);
    *len += (size_t)n;
    (*buf)[*len] = '\0';
    return 1;
}

int h_proc_run(char *const argv[], const char *const env[], const char *cwd, int timeout_ms,
               struct h_run *r)
{
    pid_t parent = getpid();
    char **envp = build_env(env);
    char *path = resolve(argv[0]);
    int64_t deadline = h_now_ms() + timeout_ms;
    int opipe[2] = {-1, -1}, epipe[2] = {-1, -1};
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    size_t ocap = 0, ecap = 0;
    struct h_proc p = {0};
    bool oopen = true, eopen = true;

    h_proc_init();
    memset(r, 0, sizeof(*r));
    r->code = -1;
    if (devnull < 0 || pipe2(opipe, O_CLOEXEC) != 0 || pipe2(epipe, O_CLOEXEC) != 0)
        goto out;
    p.pid = fork();
    if (p.pid < 0) {
        p.pid = 0;
        goto out;
    }
    if (p.pid == 0) {
        static const char msg[] = "harness: exec failed\n";

        child_setup(parent, devnull, opipe[1], epipe[1], cwd);
        execve(path, argv, envp);
        if (write(2, msg, sizeof(msg) - 1) < 0)
            _exit(127);
        _exit(127);
    }
    close(opipe[1]);
    close(epipe[1]);
    opipe[1] = epipe[1] = -1;
    fcntl(opipe[0], F_SETFL, O_NONBLOCK);
    fcntl(epipe[0], F_SETFL, O_NONBLOCK);
    while (oopen || eopen) {
        struct pollfd pfd[2] = {{.fd = oopen ? opipe[0] : -1, .events = POLLIN},
                                {.fd = eopen ? epipe[0] : -1, .events = POLLIN}};
        int64_t left = deadline - h_now_ms();

        if (left <= 0) {
            r->timed_out = true;
            break;
        }
        if (poll(pfd, 2, left > 100 ? 100 : (int)left) < 0 && errno != EINTR)
            break;
        if (oopen && (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)))
            oopen = drain(opipe[0], &r->out, &r->out_len, &ocap) != 0;
        if (eopen && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)))
            eopen = drain(epipe[0], &r->err, &r->err_len, &ecap) != 0;
    }
    if (r->timed_out) {
        kill(-p.pid, SIGKILL);
        kill(p.pid, SIGKILL);
    }
    /* Output closed: the process is exiting. Bound the wait anyway (a grandchild may hold the
     * pipes while the process itself lingers). */
    if (h_proc_wait(&p, r->timed_out ? 10000 : (int)(deadline - h_now_ms()) + 100) != 0) {
        r->timed_out = true;
        kill(-p.pid, SIGKILL);
        h_proc_wait(&p, 10000);
    }
    r->code = r->timed_out ? -1 : h_proc_exit_code(&p);
out:
    if (r->out == NULL)
        r->out = strdup("");
    if (r->err == NULL)
        r->err = strdup("");
    for (int i = 0; i < 2; i++) {
        if (opipe[i] >= 0)
            close(opipe[i]);
        if (epipe[i] >= 0)
            close(epipe[i]);
    }
    if (devnull >= 0)
        close(devnull);
    free(path);
    free_env(envp);
    return r->code;
}

void h_run_free(struct h_run *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}
