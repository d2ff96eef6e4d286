/*
 * dispatcher/runtimes.c - which Python and Node.js this machine has, and whether a function's
 * requested runtime (python3.12, nodejs20.x...) is served by them.
 *
 * Lambda runs each runtime identifier on exactly that interpreter. Here there is one python3
 * and one node (dsp->python3, dsp->node, resolved by dispatcher_create()), so a function that
 * asks for a version is compared with what they are: Python must match major and minor (a
 * module compiled for 3.12 does not load in 3.11, and syntax differs between minors), Node.js
 * the major (its minors keep compatibility). A mismatch is served anyway and said once, unless
 * broker.strict_runtimes refuses it; a Python of another major version, or no interpreter at
 * all, can never stand in.
 *
 * The versions are learned once, by running each interpreter before the loop starts
 * (runtimes_probe()). The check itself (runtimes_check()) is pure, so that the control API can
 * run it again, on the loop, for a function created later.
 */
#include "dispatcher_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/time.h"
#include "config/config.h"

/* Both interpreters together get this long to print their version (tests may shorten it). */
#define PROBE_MS 5000
static int probe_ms = PROBE_MS;

/* One interpreter being asked for its version. */
struct probe {
    const char *exe; /* borrowed: dsp->python3 or dsp->node */
    char *const *argv;
    struct runtimes_local *loc; /* where the answer goes */
    pid_t pid;                  /* 0: not started (loc->why says why) */
    int fd;                     /* read end of its stdout, -1 once at EOF */
    char out[64];
    size_t len;
    int timed_out;
};

/*
 * Fork and exec P's interpreter with its stdout on a pipe, stdin and stderr on /dev/null. The
 * PATH is the one functions start with (env.c plan_build()), not the broker's, so that a
 * wrapper which looks the real interpreter up (/usr/bin/env, a version manager's shim) finds
 * the one functions will get. On failure P->pid stays 0 and P->loc->why is set.
 */
static void probe_start(struct probe *p)
{
    static char *const envp[] = {"PATH=/usr/local/bin:/usr/bin:/bin:/opt/bin", NULL};
    int outp[2];
    pid_t pid;

    p->fd = -1;
    if (strchr(p->exe, '/') == NULL || access(p->exe, X_OK) != 0) {
        /* find_exe() returns the bare name when the PATH holds none. */
        if (strchr(p->exe, '/') == NULL)
            snprintf(p->loc->why, sizeof(p->loc->why), "not found on PATH");
        else
            snprintf(p->loc->why, sizeof(p->loc->why), "cannot run %s: %s", p->exe,
                     strerror(errno));
        return;
    }
    if (pipe2(outp, O_CLOEXEC) != 0) {
        snprintf(p->loc->why, sizeof(p->loc->why), "pipe: %s", strerror(errno));
        return;
    }
    pid = fork();
    if (pid < 0) {
        snprintf(p->loc->why, sizeof(p->loc->why), "fork: %s", strerror(errno));
        close(outp[0]);
        close(outp[1]);
        return;
    }
    if (pid == 0) {
        /* Child: async-signal-safe calls only (the broker may have threads by now). Its own
         * group, so that a timeout kills whatever it started too. */
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);

        setpgid(0, 0);
        if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(outp[1], 1) < 0 || dup2(devnull, 2) < 0)
            _exit(127);
        execve(p->exe, p->argv, envp);
        _exit(127);
    }
    setpgid(pid, pid); /* both sides, to close the race with an early kill(-pid) */
    close(outp[1]);
    p->pid = pid;
    p->fd = outp[0];
}

/* Read what is there from P's pipe; at EOF (or an error) close it. */
static void probe_read(struct probe *p)
{
    ssize_t n;

    do {
        n = read(p->fd, p->out + p->len, sizeof(p->out) - 1 - p->len);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        p->len += (size_t)n;
        p->out[p->len] = '\0';
        if (p->len < sizeof(p->out) - 1 && strchr(p->out, '\n') == NULL)
            return;
        /* A line, or more than a version: the rest does not matter, and reading on would wait
         * for whatever else holds the pipe open (a child the interpreter left behind). */
    } else if (n < 0 && errno == EAGAIN) {
        return;
    }
    close(p->fd);
    p->fd = -1;
}

/*
 * Reap P: wait until DEADLINE_MS (mono) for it to exit, else kill it. Either way its process
 * group is killed afterwards, so that nothing the probe started outlives it (the group's id is
 * not reused while a member is alive, so this cannot hit another process). Returns the wait
 * status, or -1.
 */
static int probe_reap(struct probe *p, int64_t deadline_ms)
{
    int status = -1;

    for (;;) {
        pid_t r = waitpid(p->pid, &status, WNOHANG);

        if (r == p->pid)
            break;
        if (r < 0 && errno != EINTR) {
            status = -1;
            break;
        }
        if (r == 0 && time_mono_ms() >= deadline_ms) {
            p->timed_out = 1;
            kill(p->pid, SIGKILL);
            while ((r = waitpid(p->pid, &status, 0)) < 0 && errno == EINTR)
                ;
            if (r < 0)
                status = -1;
            break;
        }
        if (r == 0)
            poll(NULL, 0, 5); /* it printed its line and is exiting: a few ms at most */
    }
    kill(-p->pid, SIGKILL);
    return status;
}

/*
 * Turn P's output into P->loc's version, or its reason. PYTHON: "3 11"; else "20.20.2". Exit
 * status 127 is our child's own when execve() failed: the interpreter is not there to run.
 */
static void probe_parse(struct probe *p, int status, int python)
{
    struct runtimes_local *loc = p->loc;
    int major, minor;

    p->out[p->len] = '\0';
    p->out[strcspn(p->out, "\r\n")] = '\0';
    loc->installed = 1;
    if (p->timed_out) {
        snprintf(loc->why, sizeof(loc->why), "%s gave no version within %d ms", p->exe, probe_ms);
    } else if (status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 127 && p->len == 0) {
        loc->installed = 0;
        snprintf(loc->why, sizeof(loc->why), "%s could not be executed", p->exe);
    } else if (status < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (status >= 0 && WIFSIGNALED(status))
            snprintf(loc->why, sizeof(loc->why), "%s was killed by signal %d", p->exe,
                     WTERMSIG(status));
        else
            snprintf(loc->why, sizeof(loc->why), "%s exited with status %d", p->exe,
                     status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    } else if (sscanf(p->out, python ? "%d %d" : "%d.%d", &major, &minor) != 2 || major < 0 ||
               minor < 0) {
        snprintf(loc->why, sizeof(loc->why), "%s printed '%.40s', not a version", p->exe, p->out);
    } else {
        loc->major = major;
        loc->minor = minor;
        if (python)
            snprintf(loc->version, sizeof(loc->version), "%d.%d", major, minor);
        else
            snprintf(loc->version, sizeof(loc->version), "%.31s", p->out);
    }
}

void runtimes_probe(struct dispatcher *dsp)
{
    static char *const py_argv[] = {
        "python3", "-E", "-S", "-c", "import sys;print(sys.version_info[0],sys.version_info[1])",
        NULL};
    static char *const node_argv[] = {"node", "-p", "process.versions.node", NULL};
    struct probe probes[2] = {
        {.exe = dsp->python3, .argv = py_argv, .loc = &dsp->local_python3},
        {.exe = dsp->node, .argv = node_argv, .loc = &dsp->local_node},
    };
    int64_t deadline = time_mono_ms() + probe_ms;

    for (size_t i = 0; i < 2; i++) {
        memset(probes[i].loc, 0, sizeof(*probes[i].loc));
        probes[i].loc->major = probes[i].loc->minor = -1;
        probe_start(&probes[i]);
    }
    /* Both run at once: the wait is the slower one's start-up, not the sum. */
    for (;;) {
        struct pollfd pfd[2];
        nfds_t n = 0;
        int64_t now = time_mono_ms();
        int rc;

        for (size_t i = 0; i < 2; i++) {
            if (probes[i].fd >= 0)
                pfd[n++] = (struct pollfd){.fd = probes[i].fd, .events = POLLIN};
        }
        if (n == 0 || now >= deadline)
            break;
        rc = poll(pfd, n, (int)(deadline - now));
        if (rc < 0 && errno != EINTR)
            break;
        for (size_t i = 0; rc > 0 && i < 2; i++) {
            for (nfds_t k = 0; k < n; k++) {
                if (probes[i].fd >= 0 && pfd[k].fd == probes[i].fd && pfd[k].revents != 0)
                    probe_read(&probes[i]);
            }
        }
    }
    for (size_t i = 0; i < 2; i++) {
        struct probe *p = &probes[i];
        int status;

        if (p->fd >= 0) { /* still open at the deadline */
            close(p->fd);
            p->fd = -1;
        }
        if (p->pid == 0)
            continue;
        status = probe_reap(p, deadline);
        probe_parse(p, status, i == 0);
    }
}

void runtimes_test_probe_ms(int ms)
{
    probe_ms = ms > 0 ? ms : PROBE_MS;
}

int runtimes_check(const struct dispatcher *dsp, const struct cfg_function *fc, char *detail,
                   size_t detailsz)
{
    char scratch[8];
    int python = fc->runtime == CFG_RUNTIME_PYTHON3;
    const struct runtimes_local *loc = python ? &dsp->local_python3 : &dsp->local_node;
    const char *exe = python ? dsp->python3 : dsp->node;
    const char *cmd = python ? "python3" : "node";
    const char *lang = python ? "Python" : "Node.js";
    const char *id = fc->runtime_id != NULL ? fc->runtime_id : cfg_runtime_name(fc->runtime);
    const char *fix = "; set broker.strict_runtimes: false to run it on the local interpreter";

    if (detail == NULL || detailsz == 0) {
        detail = scratch;
        detailsz = sizeof(scratch);
    }
    detail[0] = '\0';
    /* Plain names and custom runtimes ask for no version: whatever is here serves them. */
    if (fc->runtime_major <= 0 ||
        (fc->runtime != CFG_RUNTIME_PYTHON3 && fc->runtime != CFG_RUNTIME_NODE))
        return 0;
    if (!loc->installed) {
        snprintf(detail, detailsz, "runtime %s is not installed here (%s: %s)", id, cmd, loc->why);
        return -1;
    }
    if (loc->major < 0) {
        /* There is an interpreter, but it would not say what it is: it may well be right. */
        if (dsp->cfg->broker.strict_runtimes) {
            snprintf(detail, detailsz, "runtime %s cannot be confirmed here (%s)%s", id, loc->why,
                     fix);
            return -1;
        }
        snprintf(detail, detailsz, "runtime %s requested; served by %s (%s, version unknown: %s)",
                 id, exe, lang, loc->why);
        return 1;
    }
    if (loc->major == fc->runtime_major && (!python || loc->minor == fc->runtime_minor))
        return 0;
    if (python && loc->major != fc->runtime_major) {
        snprintf(detail, detailsz,
                 "runtime %s is not installed here (%s is %s at %s); a Python of another major "
                 "version cannot run it",
                 id, cmd, loc->version, exe);
        return -1;
    }
    if (dsp->cfg->broker.strict_runtimes) {
        snprintf(detail, detailsz, "runtime %s is not installed here (%s is %s at %s)%s", id, cmd,
                 loc->version, exe, fix);
        return -1;
    }
    snprintf(detail, detailsz, "runtime %s requested; served by %s (%s %s)", id, exe, lang,
             loc->version);
    return 1;
}
