/*
 * dispatcher/env.c - execution environments: one child process per environment, its Runtime
 * API endpoint, its output pipes, its timers and its memory limit.
 *
 * Life of an environment:
 *
 *   env_spawn ──► STARTING ──(first `next`)──► FREE ◄──► BUSY ──(timeout)──► DYING ──► reaped
 *                    │                           │                               ▲
 *                    └─(init error / init timeout / crash)───────────────────────┘
 *
 * The process is the leader of its own process group, so every kill goes to the group and
 * takes any grandchild the handler started with it. An environment is freed only from the
 * SIGCHLD path (env_reaped) or dispatcher_destroy (env_destroy), never from inside one of its
 * own Runtime API or pipe callbacks.
 */
#include "dispatcher_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>
#include <uuid/uuid.h>

#include "core/log.h"
#include "core/time.h"
#include "config/config.h"
#include "rtapi.h"

#define LINE_MAX_BYTES (256 * 1024) /* a longer line is split */
#define INV_LOG_KEEP 8192           /* bytes of invocation log kept once it grows past... */
#define INV_LOG_MAX (64 * 1024)     /* ...this many */
#define LOG_TAIL 4096

enum timer_kind {
    TIMER_NONE,
    TIMER_INIT,
    TIMER_INVOKE,
    TIMER_IDLE,
    TIMER_KILL,
};

enum kill_reason {
    KILL_NONE,
    KILL_TIMEOUT,
    KILL_INIT_TIMEOUT,
    KILL_INIT_ERROR,
    KILL_MEMORY,
    KILL_SHUTDOWN,
};

static void env_timer_cb(evutil_socket_t fd, short what, void *arg);
static void env_pipe_cb(evutil_socket_t fd, short what, void *arg);

/* ---- small helpers ----------------------------------------------------------------------- */

static void timer_set(struct env *env, int kind, uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};

    env->timer_kind = kind;
    evtimer_add(env->timer, &tv);
}

static void timer_clear(struct env *env)
{
    env->timer_kind = TIMER_NONE;
    evtimer_del(env->timer);
}

/* Every state change goes through here so that the function's busy count stays right. */
static void env_set_state(struct env *env, enum env_state st)
{
    if (env->state == ENV_BUSY && st != ENV_BUSY)
        env->fn->n_busy--;
    else if (env->state != ENV_BUSY && st == ENV_BUSY)
        env->fn->n_busy++;
    env->state = st;
}

static void kill_group(struct env *env, int sig)
{
    if (env->pid > 0)
        kill(-env->pid, sig);
}

/* Append one log line to the invocation's own log, keeping it bounded. */
static void inv_log_append(struct invocation *inv, const char *line, size_t len)
{
    if (inv->log.len + len + 1 > INV_LOG_MAX) {
        size_t keep = inv->log.len > INV_LOG_KEEP ? INV_LOG_KEEP : inv->log.len;

        memmove(inv->log.data, inv->log.data + inv->log.len - keep, keep);
        inv->log.len = keep;
        inv->log.data[keep] = '\0';
        if (len > INV_LOG_MAX / 2) { /* a huge single line: keep its end */
            line += len - INV_LOG_MAX / 2;
            len = INV_LOG_MAX / 2;
        }
    }
    buf_append(&inv->log, line, len);
    buf_append(&inv->log, "\n", 1);
}

static void env_platform_line(struct env *env, const char *line)
{
    funclog_platform(&env->fn->head->log, line);
    if (env->inv != NULL)
        inv_log_append(env->inv, line, strlen(line));
}

static void env_user_line(struct env *env, const char *line, size_t len)
{
    funclog_line(&env->fn->head->log, env->inv ? env->inv->request_id : NULL, line, len);
    if (env->inv != NULL)
        inv_log_append(env->inv, line, len);
}

/* Read what a pipe has now; split lines. Returns 0 on EOF/error (fd closed), 1 otherwise. */
static int pipe_read(struct env *env, int fd, struct buf *partial)
{
    char chunk[65536];

    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));

        if (n > 0) {
            const char *p = chunk;
            const char *end = chunk + n;

            while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));

                if (nl == NULL) {
                    buf_append(partial, p, (size_t)(end - p));
                    if (partial->len >= LINE_MAX_BYTES) {
                        env_user_line(env, partial->data, partial->len);
                        buf_reset(partial);
                    }
                    break;
                }
                if (partial->len > 0) {
                    buf_append(partial, p, (size_t)(nl - p));
                    env_user_line(env, partial->data, partial->len);
                    buf_reset(partial);
                } else {
                    env_user_line(env, p, (size_t)(nl - p));
                }
                p = nl + 1;
            }
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 1;
        /* EOF (the handler closed its stdout/stderr, or exited) or a hard error. */
        if (partial->len > 0) {
            env_user_line(env, partial->data, partial->len);
            buf_reset(partial);
        }
        return 0;
    }
}

static void pipe_close(struct env *env, int *fd, struct event **ev)
{
    if (*ev != NULL) {
        event_free(*ev);
        *ev = NULL;
    }
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static void env_pipe_cb(evutil_socket_t fd, short what, void *arg)
{
    struct env *env = arg;

    if (fd == env->out_fd) {
        if (!pipe_read(env, fd, &env->out_line))
            pipe_close(env, &env->out_fd, &env->out_ev);
    } else if (fd == env->err_fd) {
        if (!pipe_read(env, fd, &env->err_line))
            pipe_close(env, &env->err_fd, &env->err_ev);
    }
}

/* Pull in whatever output is already in the pipes (before an invocation is closed, so that the
 * lines the handler printed before answering are attributed to it). */
static void env_drain_output(struct env *env)
{
    if (env->out_fd >= 0 && !pipe_read(env, env->out_fd, &env->out_line))
        pipe_close(env, &env->out_fd, &env->out_ev);
    if (env->err_fd >= 0 && !pipe_read(env, env->err_fd, &env->err_line))
        pipe_close(env, &env->err_fd, &env->err_ev);
}

/* Value in kB of FIELD ("VmHWM:", "VmRSS:") in /proc/PID/status, or -1. */
static long proc_status_kb(struct env *env, const char *field)
{
    char text[4096];
    ssize_t n;
    const char *p;

    if (env->status_fd < 0)
        return -1;
    n = pread(env->status_fd, text, sizeof(text) - 1, 0);
    if (n <= 0)
        return -1;
    text[n] = '\0';
    p = strstr(text, field);
    if (p == NULL)
        return -1;
    return strtol(p + strlen(field), NULL, 10);
}

static long long read_ll_file(const char *dir, const char *name)
{
    char path[512];
    char text[64];
    int fd;
    ssize_t n;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    text[n] = '\0';
    return strtoll(text, NULL, 10);
}

/* Peak memory of the environment in MB (cgroup peak when we have one, else VmHWM). */
static int env_max_memory_mb(struct env *env)
{
    long long bytes = -1;

    if (env->cgroup != NULL) {
        /* Read on every REPORT: keep the file open and pread it (one syscall, not three). */
        if (env->peak_fd < 0) {
            char path[600];

            snprintf(path, sizeof(path), "%s/%s", env->cgroup,
                     env->fn->dsp->cgroup_v2 ? "memory.peak" : "memory.max_usage_in_bytes");
            env->peak_fd = open(path, O_RDONLY | O_CLOEXEC);
        }
        if (env->peak_fd >= 0) {
            char text[64];
            ssize_t n = pread(env->peak_fd, text, sizeof(text) - 1, 0);

            if (n > 0) {
                text[n] = '\0';
                bytes = strtoll(text, NULL, 10);
            }
        }
    }
    if (bytes < 0) {
        long kb = proc_status_kb(env, "VmHWM:");

        if (kb < 0)
            return 0;
        bytes = (long long)kb * 1024;
    }
    return (int)((bytes + 1048575) / 1048576);
}

/* True when the memory limit was hit (cgroup fail counter / OOM events). */
static int env_hit_memory_limit(struct env *env)
{
    if (env->exit_reason == KILL_MEMORY)
        return 1;
    if (env->cgroup == NULL)
        return 0;
    if (env->fn->dsp->cgroup_v2) {
        char path[512];
        char text[512];
        FILE *fp;
        int hit = 0;

        snprintf(path, sizeof(path), "%s/memory.events", env->cgroup);
        fp = fopen(path, "re");
        if (fp == NULL)
            return 0;
        while (fgets(text, sizeof(text), fp) != NULL) {
            if (strncmp(text, "oom_kill ", 9) == 0 && atoi(text + 9) > 0)
                hit = 1;
        }
        fclose(fp);
        return hit;
    }
    return read_ll_file(env->cgroup, "memory.failcnt") > 0;
}

/* ---- invocation outcome ------------------------------------------------------------------ */

static void set_result(struct invocation *inv, enum invoke_status st, char *body, size_t len,
                       const char *ctype, const char *etype)
{
    inv->res.status = st;
    inv->res_body = body;
    inv->res.body = body ? body : "";
    inv->res.body_len = body ? len : 0;
    if (ctype != NULL)
        inv->res_ctype = strdup(ctype);
    if (etype != NULL)
        inv->res_etype = strdup(etype);
}

/* A platform-made error body {"errorType":..,"errorMessage":..}. Returns new. */
static char *error_json(const char *type, const char *msg, size_t *len)
{
    struct buf b = {0};

    buf_puts(&b, "{\"errorType\":\"");
    buf_json_escape(&b, type, strlen(type));
    buf_puts(&b, "\",\"errorMessage\":\"");
    buf_json_escape(&b, msg, strlen(msg));
    buf_puts(&b, "\"}");
    return buf_take(&b, len);
}

static void set_platform_error(struct invocation *inv, const char *type, const char *msg)
{
    size_t len;
    char *body = error_json(type, msg, &len);

    set_result(inv, INVOKE_FUNCTION_ERROR, body, len, "application/json", type);
}

/*
 * Close the environment's current invocation: END and REPORT lines, then hand it back to the
 * dispatcher. STATUS_NOTE is NULL for a normal end, or the REPORT status suffix
 * ("Status: timeout", "Status: error\tError Type: X").
 */
static void env_close_inv(struct env *env, const char *status_note)
{
    struct invocation *inv = env->inv;
    const struct cfg_function *fc = env->cfg;
    char line[512];
    double dur_ms;
    double init_ms = 0;
    int n;

    if (inv == NULL)
        return;
    dur_ms = inv->start_us ? (double)(time_mono_us() - inv->start_us) / 1000.0 : 0.0;
    if (inv->state == INV_RUNNING || inv->start_us != 0) {
        snprintf(line, sizeof(line), "END RequestId: %s", inv->request_id);
        env_platform_line(env, line);
    }
    if (!env->init_reported && env->init_done) {
        init_ms = env->init_ms;
        env->init_reported = 1;
    }
    n = snprintf(line, sizeof(line),
                 "REPORT RequestId: %s\tDuration: %.2f ms\tBilled Duration: %.0f ms\t"
                 "Memory Size: %d MB\tMax Memory Used: %d MB\t",
                 inv->request_id, dur_ms, ceil(dur_ms + init_ms), fc->memory_mb,
                 env_max_memory_mb(env));
    if (init_ms > 0 && n > 0 && (size_t)n < sizeof(line))
        n += snprintf(line + n, sizeof(line) - (size_t)n, "Init Duration: %.2f ms\t", init_ms);
    if (status_note != NULL && n > 0 && (size_t)n < sizeof(line))
        snprintf(line + n, sizeof(line) - (size_t)n, "%s\t", status_note);
    env_platform_line(env, line);

    env->inv = NULL;
    inv->env = NULL;
    inv->state = INV_DONE;
    dispatcher_inv_finish(inv);
}

/* ---- Runtime API callbacks --------------------------------------------------------------- */

static void env_deliver(struct env *env)
{
    struct invocation *inv = env->inv;
    struct rtapi_event ev;
    char line[128];

    inv->state = INV_RUNNING;
    inv->start_us = time_mono_us();
    snprintf(line, sizeof(line), "START RequestId: %s Version: %s", inv->request_id,
             env->fn->version);
    env_platform_line(env, line);
    ev.request_id = inv->request_id;
    ev.payload = inv->payload;
    ev.payload_len = inv->payload_len;
    ev.deadline_ms = time_wall_ms() + (uint64_t)env->cfg->timeout_s * 1000u;
    ev.function_arn = inv->invoked_arn ? inv->invoked_arn : env->fn->arn;
    ev.trace_id = inv->trace_id;
    ev.client_context = inv->client_context;
    timer_set(env, TIMER_INVOKE, (uint64_t)env->cfg->timeout_s * 1000u);
    rtapi_deliver(env->api, &ev);
}

static void on_next(void *arg)
{
    struct env *env = arg;

    if (!env->init_done) {
        env->init_done = 1;
        env->init_ms = (double)(time_mono_us() - env->spawned_us) / 1000.0;
        if (env->timer_kind == TIMER_INIT)
            timer_clear(env);
        if (env->state == ENV_STARTING) {
            if (env->inv != NULL) {
                env_set_state(env, ENV_BUSY);
            } else {
                env_set_state(env, ENV_FREE);
                dispatcher_env_free_again(env);
            }
        }
    }
    if (env->inv != NULL && env->inv->state == INV_ASSIGNED && env->state == ENV_BUSY)
        env_deliver(env);
}

static void on_result(void *arg, enum rtapi_result_kind kind, char *body, size_t len,
                      const char *ctype, const char *etype)
{
    struct env *env = arg;
    struct invocation *inv = env->inv;
    const char *note = NULL;
    char notebuf[160];

    if (inv == NULL || inv->state != INV_RUNNING) { /* cannot happen: rtapi checked the id */
        free(body);
        return;
    }
    env_drain_output(env);
    timer_clear(env);
    switch (kind) {
    case RTAPI_RESPONSE:
        set_result(inv, INVOKE_OK, body, len, ctype ? ctype : "application/json", NULL);
        break;
    case RTAPI_ERROR: {
        json_t *doc = len > 0 ? json_loadb(body, len, 0, NULL) : NULL;
        const char *type = NULL;

        if (doc != NULL && json_is_object(doc))
            type = json_string_value(json_object_get(doc, "errorType"));
        if (type == NULL)
            type = etype ? etype : "Runtime.Unknown";
        if (doc == NULL || !json_is_object(doc)) {
            /* No usable body: build Lambda's shape from the error-type header. */
            free(body);
            set_platform_error(inv, type, "");
        } else {
            set_result(inv, INVOKE_FUNCTION_ERROR, body, len, "application/json", type);
        }
        json_decref(doc);
        break;
    }
    case RTAPI_TOO_LARGE:
        free(body);
        set_platform_error(inv, "Function.ResponseSizeTooLarge",
                           "Response payload size exceeded maximum allowed payload size "
                           "(6291556 bytes).");
        snprintf(notebuf, sizeof(notebuf), "Status: error\tError Type: %s",
                 "Function.ResponseSizeTooLarge");
        note = notebuf;
        break;
    }
    /* FREE before the caller hears of it: its callback may already invoke again. */
    env_set_state(env, ENV_FREE);
    env_close_inv(env, note);
    if (env->state == ENV_FREE && env->inv == NULL)
        dispatcher_env_free_again(env);
}

static void on_init_error(void *arg, char *body, size_t len, const char *etype)
{
    struct env *env = arg;
    json_t *doc = len > 0 ? json_loadb(body, len, 0, NULL) : NULL;
    const char *type = NULL;
    char line[256];

    if (doc != NULL && json_is_object(doc))
        type = json_string_value(json_object_get(doc, "errorType"));
    if (type == NULL)
        type = etype ? etype : "Runtime.Unknown";
    if (env->init_error == NULL) {
        env->init_error_type = strdup(type);
        if (doc != NULL && json_is_object(doc)) {
            env->init_error = body;
            body = NULL;
        } else {
            env->init_error = error_json(type, "", NULL);
        }
    }
    json_decref(doc);
    free(body);

    env_drain_output(env);
    snprintf(line, sizeof(line),
             "INIT_REPORT Init Duration: %.2f ms\tPhase: init\tStatus: error\tError Type: %s",
             (double)(time_mono_us() - env->spawned_us) / 1000.0, env->init_error_type);
    env_platform_line(env, line);
    log_warn("[function:%s] environment %s failed to initialise: %s", env->cfg->name, env->id,
             env->init_error_type);

    /* The runtime is expected to exit after reporting; make sure it does. */
    if (env->state != ENV_DYING) {
        if (env->inv != NULL && env->inv->state == INV_ASSIGNED) {
            struct invocation *inv = env->inv;

            env_set_state(env, ENV_DYING);

            set_result(inv, INVOKE_FUNCTION_ERROR, strdup(env->init_error),
                       strlen(env->init_error), "application/json", env->init_error_type);
            env_close_inv(env, NULL);
        }
        env->exit_reason = KILL_INIT_ERROR;
        env_shutdown(env);
    }
}

static const struct rtapi_ops env_rtapi_ops = {
    .on_next = on_next,
    .on_result = on_result,
    .on_init_error = on_init_error,
};

/* ---- timers ------------------------------------------------------------------------------ */

static void env_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct env *env = arg;
    int kind = env->timer_kind;
    char msg[256];

    env->timer_kind = TIMER_NONE;
    switch (kind) {
    case TIMER_INIT: {
        char line[160];

        snprintf(line, sizeof(line), "INIT_REPORT Init Duration: %.2f ms\tPhase: init\tStatus: timeout",
                 (double)(time_mono_us() - env->spawned_us) / 1000.0);
        env_platform_line(env, line);
        log_warn("[function:%s] environment %s did not finish INIT within %d s; killing it",
                 env->cfg->name, env->id, env->cfg->init_timeout_s);
        env->exit_reason = KILL_INIT_TIMEOUT;
        if (env->inv != NULL) {
            snprintf(msg, sizeof(msg), "RequestId: %s Error: Init phase timed out after %d.00 seconds",
                     env->inv->request_id, env->cfg->init_timeout_s);
            env_drain_output(env);
            set_platform_error(env->inv, "Sandbox.Timedout", msg);
            env_set_state(env, ENV_DYING);
            env_close_inv(env, "Status: timeout");
        }
        env_set_state(env, ENV_DYING);
        kill_group(env, SIGKILL);
        break;
    }
    case TIMER_INVOKE:
        if (env->inv == NULL)
            break;
        log_info("[function:%s] request %s timed out after %d s; replacing environment %s",
                 env->cfg->name, env->inv->request_id, env->cfg->timeout_s, env->id);
        snprintf(msg, sizeof(msg), "RequestId: %s Error: Task timed out after %d.00 seconds",
                 env->inv->request_id, env->cfg->timeout_s);
        env_drain_output(env);
        rtapi_abandon(env->api);
        set_platform_error(env->inv, "Sandbox.Timedout", msg);
        env->fn->dsp->stats.timeouts++;
        env->exit_reason = KILL_TIMEOUT;
        env_set_state(env, ENV_DYING);
        env_close_inv(env, "Status: timeout");
        kill_group(env, SIGKILL);
        break;
    case TIMER_IDLE:
        if (env->state == ENV_FREE && !env->provisioned) {
            log_debug("[function:%s] environment %s idle for %d s; shutting it down",
                      env->cfg->name, env->id, env->cfg->max_idle_s);
            env_shutdown(env);
        }
        break;
    case TIMER_KILL:
        log_warn("[function:%s] environment %s (pid %d) ignored SIGTERM; sending SIGKILL",
                 env->cfg->name, env->id, (int)env->pid);
        kill_group(env, SIGKILL);
        break;
    default:
        break;
    }
}

/* ---- spawn ------------------------------------------------------------------------------- */

/* Async-signal-safe decimal formatting for the child. */
static size_t fmt_pid(char *out, pid_t pid)
{
    char tmp[24];
    size_t n = 0, k = 0;
    unsigned long v = (unsigned long)pid;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    while (n > 0)
        out[k++] = tmp[--n];
    return k;
}

struct spawn_plan {
    char *argv[4];
    char **envp;
    size_t n_envp;
    const char *cwd;
    char *cgroup_procs; /* path of cgroup.procs to join, or NULL */
};

static int envp_add(struct spawn_plan *sp, const char *name, const char *value)
{
    size_t n = strlen(name) + strlen(value) + 2;
    char *kv = malloc(n);
    char **ne;

    if (kv == NULL)
        return SY_ENOMEM;
    snprintf(kv, n, "%s=%s", name, value);
    /* A later definition of the same name replaces the earlier one. */
    for (size_t i = 0; i < sp->n_envp; i++) {
        size_t nl = strlen(name);

        if (strncmp(sp->envp[i], name, nl) == 0 && sp->envp[i][nl] == '=') {
            free(sp->envp[i]);
            sp->envp[i] = kv;
            return 0;
        }
    }
    ne = realloc(sp->envp, (sp->n_envp + 2) * sizeof(*ne));
    if (ne == NULL) {
        free(kv);
        return SY_ENOMEM;
    }
    sp->envp = ne;
    sp->envp[sp->n_envp++] = kv;
    sp->envp[sp->n_envp] = NULL;
    return 0;
}

static void plan_free(struct spawn_plan *sp)
{
    for (size_t i = 0; i < sp->n_envp; i++)
        free(sp->envp[i]);
    free(sp->envp);
    for (size_t i = 0; i < 4; i++)
        free(sp->argv[i]);
    free(sp->cgroup_procs);
}

/*
 * The search paths Lambda's runtimes give a function, with the merged layers (fc->opt_dir)
 * where Lambda has /opt: PATH ends in OPT/bin, LD_LIBRARY_PATH has the task root, its lib/ and
 * OPT/lib, PYTHONPATH has OPT/python and OPT/python/lib/python3.X/site-packages, NODE_PATH has
 * OPT/nodejs/nodeNN/node_modules (NN: the local node's major) and OPT/nodejs/node_modules.
 * Without layers, PATH ends in /opt/bin as Lambda's does and the others name only the task.
 */
static int opt_paths(struct spawn_plan *sp, const struct dispatcher *dsp,
                     const struct cfg_function *fc, const char *root)
{
    const char *opt = fc->opt_dir != NULL ? fc->opt_dir : "/opt";
    struct buf b = {0};
    int rc = 0;

    buf_printf(&b, "/usr/local/bin:/usr/bin:/bin:%s/bin", opt);
    rc |= envp_add(sp, "PATH", b.data != NULL ? b.data : "/usr/local/bin:/usr/bin:/bin");
    b.len = 0;
    buf_printf(&b, "%s:%s/lib:%s/lib", root, root, opt);
    rc |= envp_add(sp, "LD_LIBRARY_PATH", b.data != NULL ? b.data : root);
    if (fc->opt_dir != NULL && fc->runtime == CFG_RUNTIME_PYTHON3) {
        char dir[4096];
        DIR *d;
        struct dirent *de;

        b.len = 0;
        buf_printf(&b, "%s/python", opt);
        snprintf(dir, sizeof(dir), "%s/python/lib", opt);
        /* Layers name the minor they were built for (python3.12); a small listing. */
        d = opendir(dir);
        while (d != NULL && (de = readdir(d)) != NULL) {
            if (strncmp(de->d_name, "python3", 7) == 0)
                buf_printf(&b, ":%s/%s/site-packages", dir, de->d_name);
        }
        if (d != NULL)
            closedir(d);
        rc |= envp_add(sp, "PYTHONPATH", b.data != NULL ? b.data : opt);
    }
    if (fc->opt_dir != NULL && fc->runtime == CFG_RUNTIME_NODE) {
        b.len = 0;
        if (dsp->local_node.major > 0)
            buf_printf(&b, "%s/nodejs/node%d/node_modules:", opt, dsp->local_node.major);
        buf_printf(&b, "%s/nodejs/node_modules", opt);
        rc |= envp_add(sp, "NODE_PATH", b.data != NULL ? b.data : opt);
    }
    buf_free(&b);
    return rc;
}

static int plan_build(struct env *env, struct spawn_plan *sp, int port)
{
    struct function *fn = env->fn;
    struct dispatcher *dsp = fn->dsp;
    const struct cfg_function *fc = env->cfg;
    const struct cfg *cfg = dsp->cfg;
    const char *root = cfg_function_root(fc);
    char tmp[1024];
    const char *rtdir = "";
    int rc = 0;

    memset(sp, 0, sizeof(*sp));
    sp->cwd = root;
    switch (fc->runtime) {
    case CFG_RUNTIME_PYTHON3:
        sp->argv[0] = strdup(dsp->python3);
        snprintf(tmp, sizeof(tmp), "%s/python3/bootstrap.py", dsp->runtimes_dir);
        sp->argv[1] = strdup("-u");
        sp->argv[2] = strdup(tmp);
        rtdir = "python3";
        break;
    case CFG_RUNTIME_NODE:
        sp->argv[0] = strdup(dsp->node);
        snprintf(tmp, sizeof(tmp), "%s/node/bootstrap.js", dsp->runtimes_dir);
        sp->argv[1] = strdup(tmp);
        rtdir = "node";
        break;
    case CFG_RUNTIME_SHELL:
        sp->argv[0] = strdup(dsp->bash);
        snprintf(tmp, sizeof(tmp), "%s/shell/bootstrap.sh", dsp->runtimes_dir);
        sp->argv[1] = strdup(tmp);
        rtdir = "shell";
        break;
    case CFG_RUNTIME_PROVIDED:
        /* The package's own bootstrap, else a custom runtime shipped as a layer (/opt). */
        snprintf(tmp, sizeof(tmp), "%s/bootstrap", root);
        if (fc->opt_dir != NULL && access(tmp, X_OK) != 0)
            snprintf(tmp, sizeof(tmp), "%s/bootstrap", fc->opt_dir);
        sp->argv[0] = strdup(tmp);
        break;
    }
    if (sp->argv[0] == NULL)
        return SY_ENOMEM;

    /* Lambda's non-reserved defaults first (the user may override these)... */
    rc |= opt_paths(sp, dsp, fc, root);
    rc |= envp_add(sp, "LANG", "en_US.UTF-8");
    for (size_t i = 0; i < fc->n_environment; i++)
        rc |= envp_add(sp, fc->environment[i].name, fc->environment[i].value);
    /* ...then the reserved ones, which always win. */
    snprintf(tmp, sizeof(tmp), "127.0.0.1:%d", port);
    rc |= envp_add(sp, "AWS_LAMBDA_RUNTIME_API", tmp);
    if (fc->handler != NULL)
        rc |= envp_add(sp, "_HANDLER", fc->handler);
    rc |= envp_add(sp, "AWS_LAMBDA_FUNCTION_NAME", fc->name);
    rc |= envp_add(sp, "AWS_LAMBDA_FUNCTION_VERSION", fn->version);
    snprintf(tmp, sizeof(tmp), "%d", fc->memory_mb);
    rc |= envp_add(sp, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", tmp);
    rc |= envp_add(sp, "AWS_LAMBDA_LOG_GROUP_NAME", fn->log_group);
    rc |= envp_add(sp, "AWS_LAMBDA_LOG_STREAM_NAME", env->stream);
    rc |= envp_add(sp, "AWS_LAMBDA_INITIALIZATION_TYPE",
                   env->provisioned ? "provisioned-concurrency" : "on-demand");
    rc |= envp_add(sp, "AWS_REGION", cfg->broker.region);
    rc |= envp_add(sp, "AWS_DEFAULT_REGION", cfg->broker.region);
    /*
     * Lambda's AWS_Lambda_<runtime> (AWS_Lambda_python3.12) when the function names one of its
     * runtimes, the family otherwise; custom runtimes (provided*, and shell, which is one to
     * Lambda) get none, as on Lambda. SDKs read it for their user agent.
     */
    if ((fc->runtime == CFG_RUNTIME_PYTHON3 || fc->runtime == CFG_RUNTIME_NODE) &&
        fc->runtime_major > 0 && fc->runtime_id != NULL) {
        snprintf(tmp, sizeof(tmp), "AWS_Lambda_%s", fc->runtime_id);
        rc |= envp_add(sp, "AWS_EXECUTION_ENV", tmp);
    } else if (fc->runtime == CFG_RUNTIME_PYTHON3) {
        rc |= envp_add(sp, "AWS_EXECUTION_ENV", "AWS_Lambda_python3");
    } else if (fc->runtime == CFG_RUNTIME_NODE) {
        rc |= envp_add(sp, "AWS_EXECUTION_ENV", "AWS_Lambda_nodejs");
    }
    rc |= envp_add(sp, "LAMBDA_TASK_ROOT", root);
    if (rtdir[0] != '\0') {
        snprintf(tmp, sizeof(tmp), "%s/%s", dsp->runtimes_dir, rtdir);
        rc |= envp_add(sp, "LAMBDA_RUNTIME_DIR", tmp);
    } else {
        rc |= envp_add(sp, "LAMBDA_RUNTIME_DIR", root);
    }
    rc |= envp_add(sp, "TZ", ":UTC");
    if (rc != 0)
        return SY_ENOMEM;

    if (env->cgroup != NULL) {
        snprintf(tmp, sizeof(tmp), "%s/cgroup.procs", env->cgroup);
        sp->cgroup_procs = strdup(tmp);
    }
    return 0;
}

/* Create and limit the environment's memory cgroup; on any failure run without one. */
static void env_cgroup_setup(struct env *env)
{
    struct dispatcher *dsp = env->fn->dsp;
    char path[512];
    char val[32];
    char file[600];
    int fd;
    int len;

    if (dsp->cgroup_root == NULL)
        return;
    snprintf(path, sizeof(path), "%s/%s", dsp->cgroup_root, env->id);
    if (mkdir(path, 0755) != 0)
        return;
    len = snprintf(val, sizeof(val), "%lld", (long long)env->cfg->memory_mb * 1048576LL);
    snprintf(file, sizeof(file), "%s/%s", path, dsp->cgroup_v2 ? "memory.max" : "memory.limit_in_bytes");
    fd = open(file, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, val, (size_t)len) != len) {
        if (fd >= 0)
            close(fd);
        rmdir(path);
        return;
    }
    close(fd);
    if (dsp->cgroup_v2) { /* no swap to hide in */
        snprintf(file, sizeof(file), "%s/memory.swap.max", path);
        fd = open(file, O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            if (write(fd, "0", 1) != 1)
                log_debug("cannot disable swap for cgroup %s", path);
            close(fd);
        }
    }
    env->cgroup = strdup(path);
}

static void env_free(struct env *env)
{
    if (env == NULL)
        return;
    pipe_close(env, &env->out_fd, &env->out_ev);
    pipe_close(env, &env->err_fd, &env->err_ev);
    rtapi_destroy(env->api);
    if (env->timer != NULL)
        event_free(env->timer);
    if (env->status_fd >= 0)
        close(env->status_fd);
    if (env->peak_fd >= 0)
        close(env->peak_fd);
    if (env->cgroup != NULL) {
        if (rmdir(env->cgroup) != 0 && errno != ENOENT)
            log_debug("cannot remove cgroup %s: %s", env->cgroup, strerror(errno));
        free(env->cgroup);
    }
    buf_free(&env->out_line);
    buf_free(&env->err_line);
    free(env->init_error);
    free(env->init_error_type);
    fn_rev_unref(env->rev);
    env->magic = 0;
    free(env);
}

struct env *env_spawn(struct function *fn, int provisioned, struct sy_error *err)
{
    struct dispatcher *dsp = fn->dsp;
    struct env *env = calloc(1, sizeof(*env));
    struct spawn_plan sp;
    int outp[2] = {-1, -1}, errp[2] = {-1, -1}, execp[2] = {-1, -1};
    uuid_t uu;
    char hexid[40];
    char day[32];
    char line[256];
    pid_t pid, parent;
    int child_errno = 0;
    ssize_t n;

    if (env == NULL) {
        sy_error_set(err, "out of memory");
        return NULL;
    }
    env->magic = ENV_MAGIC;
    env->fn = fn;
    env->rev = fn->rev;
    env->rev->refs++; /* dropped by env_free() */
    env->cfg = &env->rev->cfg;
    env->provisioned = provisioned;
    env->init_reported = provisioned; /* provisioned INIT is not billed on an invoke */
    env->out_fd = env->err_fd = env->status_fd = env->peak_fd = -1;
    env->state = ENV_STARTING;
    uuid_generate_random(uu);
    for (int i = 0; i < 16; i++)
        snprintf(hexid + 2 * i, 3, "%02x", uu[i]);
    memcpy(env->id, hexid, 32);
    env->id[32] = '\0';
    time_iso8601(day, time_wall_ms());
    snprintf(env->stream, sizeof(env->stream), "%.4s/%.2s/%.2s/[%.16s]%s", day, day + 5,
             day + 8, fn->version, env->id);

    env->timer = evtimer_new(dsp->base, env_timer_cb, env);
    env->api = rtapi_create(dsp->base, &env_rtapi_ops, env, err);
    if (env->timer == NULL || env->api == NULL)
        goto fail_env;
    env_cgroup_setup(env);
    if (plan_build(env, &sp, rtapi_port(env->api)) != 0) {
        plan_free(&sp);
        sy_error_set(err, "out of memory");
        goto fail_env;
    }
    if (pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0 ||
        pipe2(execp, O_CLOEXEC) != 0) {
        sy_error_set(err, "pipe: %s", strerror(errno));
        goto fail_pipes;
    }

    env->spawned_us = time_mono_us();
    parent = getpid();
    pid = fork();
    if (pid < 0) {
        sy_error_set(err, "fork: %s", strerror(errno));
        goto fail_pipes;
    }
    if (pid == 0) {
        /* Child: only async-signal-safe calls from here to execve. */
        sigset_t all;
        int devnull;
        int e;

        setpgid(0, 0);
        /*
         * A broker killed with SIGKILL cannot stop its environments: the kernel does it for
         * the direct child (the runtime), which would otherwise run on, e.g. in a handler that
         * hangs. Checked against the parent's pid after the call, in case the broker died
         * between fork and prctl.
         */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(127);
        for (int s = 1; s < NSIG; s++)
            signal(s, SIG_DFL);
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        if (sp.cgroup_procs != NULL) {
            int cfd = open(sp.cgroup_procs, O_WRONLY);

            if (cfd >= 0) {
                char num[24];
                size_t k = fmt_pid(num, getpid());

                if (write(cfd, num, k) < 0)
                    e = errno; /* run unlimited by cgroup; the parent watches RSS instead */
                close(cfd);
            }
        }
        if (chdir(sp.cwd) != 0)
            goto child_fail;
        devnull = open("/dev/null", O_RDONLY);
        if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(outp[1], 1) < 0 || dup2(errp[1], 2) < 0)
            goto child_fail;
        /* Nothing of the broker's descriptors may leak into user code: close all but 0-2 and
         * the exec-error pipe (which closes itself on exec). */
        if ((execp[1] > 3 && close_range(3, (unsigned)execp[1] - 1, 0) != 0) ||
            close_range((unsigned)execp[1] + 1, ~0u, 0) != 0) {
            for (int fd = 3; fd < 4096; fd++) { /* kernels before 5.9 */
                if (fd != execp[1])
                    close(fd);
            }
        }
        execve(sp.argv[0], sp.argv, sp.envp);
    child_fail:
        e = errno;
        if (write(execp[1], &e, sizeof(e)) < 0)
            _exit(126);
        _exit(127);
    }

    /* Parent. Both sides set the group to close the race with an early kill(-pid). */
    setpgid(pid, pid);
    env->pid = pid;
    close(outp[1]);
    close(errp[1]);
    close(execp[1]);
    outp[1] = errp[1] = execp[1] = -1;
    /* The exec-error pipe closes on a successful exec; a few bytes arrive if it failed. This
     * read is bounded by the fork→exec time of the child (no user code runs before it). */
    do {
        n = read(execp[0], &child_errno, sizeof(child_errno));
    } while (n < 0 && errno == EINTR);
    close(execp[0]);
    execp[0] = -1;
    if (n == (ssize_t)sizeof(child_errno)) {
        int st;

        waitpid(pid, &st, 0);
        sy_error_set(err, "cannot start %s in %s: %s", sp.argv[0], sp.cwd, strerror(child_errno));
        env->pid = 0;
        close(outp[0]);
        close(errp[0]);
        plan_free(&sp);
        env_free(env);
        return NULL;
    }
    plan_free(&sp);

    env->out_fd = outp[0];
    env->err_fd = errp[0];
    fcntl(env->out_fd, F_SETFL, O_NONBLOCK);
    fcntl(env->err_fd, F_SETFL, O_NONBLOCK);
    env->out_ev = event_new(dsp->base, env->out_fd, EV_READ | EV_PERSIST, env_pipe_cb, env);
    env->err_ev = event_new(dsp->base, env->err_fd, EV_READ | EV_PERSIST, env_pipe_cb, env);
    if (env->out_ev != NULL)
        event_add(env->out_ev, NULL);
    if (env->err_ev != NULL)
        event_add(env->err_ev, NULL);
    snprintf(line, sizeof(line), "/proc/%d/status", (int)pid);
    env->status_fd = open(line, O_RDONLY | O_CLOEXEC);

    timer_set(env, TIMER_INIT, (uint64_t)env->cfg->init_timeout_s * 1000u);
    env->next = fn->envs;
    if (fn->envs != NULL)
        fn->envs->prev = env;
    fn->envs = env;
    fn->n_envs++;
    dsp->stats.environments++;
    dsp->stats.cold_starts++;
    if (provisioned)
        fn->n_provisioned_live++;

    snprintf(line, sizeof(line), "INIT_START Runtime Version: %s\tEnvironment: %s\tPid: %d",
             cfg_runtime_name(env->cfg->runtime), env->stream, (int)pid);
    funclog_platform(&fn->head->log, line);
    log_debug("[function:%s] spawned environment %s (pid %d, runtime API port %d)%s",
              fn->cfg->name, env->id, (int)pid, rtapi_port(env->api),
              provisioned ? " [provisioned]" : "");
    return env;

fail_pipes:
    for (int i = 0; i < 2; i++) {
        if (outp[i] >= 0)
            close(outp[i]);
        if (errp[i] >= 0)
            close(errp[i]);
        if (execp[i] >= 0)
            close(execp[i]);
    }
    plan_free(&sp);
fail_env:
    env_free(env);
    return NULL;
}

/* ---- control ----------------------------------------------------------------------------- */

void env_assign(struct env *env, struct invocation *inv)
{
    env->inv = inv;
    inv->env = env;
    inv->state = INV_ASSIGNED;
    if (env->timer_kind == TIMER_IDLE)
        timer_clear(env);
    if (env->state == ENV_FREE) {
        env_set_state(env, ENV_BUSY);
        if (rtapi_ready(env->api))
            env_deliver(env);
        /* else: delivered from on_next when the runtime asks */
    }
    /* ENV_STARTING: delivered when INIT finishes (first `next`). */
}

void env_shutdown(struct env *env)
{
    int grace = env->fn->dsp->cfg->broker.shutdown_grace_ms;

    if (env->state == ENV_DYING && env->timer_kind == TIMER_KILL)
        return;
    env_set_state(env, ENV_DYING);
    if (env->exit_reason == KILL_NONE)
        env->exit_reason = KILL_SHUTDOWN;
    kill_group(env, SIGTERM);
    timer_set(env, TIMER_KILL, (uint64_t)(grace > 0 ? grace : 0));
}

/* Go-style description of a wait status ("exit status 1", "signal: killed"). */
static void describe_exit(int status, char *out, size_t outsz)
{
    if (WIFEXITED(status)) {
        snprintf(out, outsz, "exit status %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        const char *name = sig == SIGKILL   ? "killed"
                           : sig == SIGSEGV ? "segmentation fault"
                           : sig == SIGABRT ? "aborted"
                           : sig == SIGTERM ? "terminated"
                           : sig == SIGBUS  ? "bus error"
                           : sig == SIGFPE  ? "floating point exception"
                                            : strsignal(sig);

        snprintf(out, outsz, "signal: %s", name);
    } else {
        snprintf(out, outsz, "exited");
    }
}

void env_reaped(struct env *env, int status)
{
    struct function *fn = env->fn;
    char how[64];

    env_drain_output(env);
    pipe_close(env, &env->out_fd, &env->out_ev);
    pipe_close(env, &env->err_fd, &env->err_ev);
    /* Take any grandchild down with it (they share the group). */
    kill_group(env, SIGKILL);
    describe_exit(status, how, sizeof(how));

    if (env->inv != NULL) {
        struct invocation *inv = env->inv;
        int oom = env_hit_memory_limit(env);
        const char *type = oom ? "Runtime.OutOfMemory" : "Runtime.ExitError";
        char msg[256];
        char note[128];

        fn->dsp->stats.crashes++;
        if (inv->state == INV_RUNNING)
            rtapi_abandon(env->api);
        snprintf(msg, sizeof(msg), "RequestId: %s Error: Runtime exited with error: %s",
                 inv->request_id, how);
        set_platform_error(inv, type, msg);
        snprintf(note, sizeof(note), "Status: error\tError Type: %s", type);
        log_info("[function:%s] environment %s exited during request %s: %s", fn->cfg->name,
                 env->id, inv->request_id, how);
        env_set_state(env, ENV_DYING);
        env_close_inv(env, note);
    } else if (env->exit_reason == KILL_NONE && env->state != ENV_DYING) {
        log_warn("[function:%s] environment %s (pid %d) exited on its own: %s", fn->cfg->name,
                 env->id, (int)env->pid, how);
    } else {
        log_debug("[function:%s] environment %s (pid %d) stopped: %s", fn->cfg->name, env->id,
                  (int)env->pid, how);
    }
    env_set_state(env, ENV_DYING);
    env->pid = 0;

    if (env->prev != NULL)
        env->prev->next = env->next;
    else
        fn->envs = env->next;
    if (env->next != NULL)
        env->next->prev = env->prev;
    fn->n_envs--;
    fn->dsp->stats.environments--;
    if (env->provisioned)
        fn->n_provisioned_live--;
    dispatcher_env_gone(env);
    env_free(env);
}

void env_destroy(struct env *env)
{
    struct function *fn = env->fn;

    if (env->pid > 0) {
        int st;

        kill_group(env, SIGKILL);
        while (waitpid(env->pid, &st, 0) < 0 && errno == EINTR)
            ;
    }
    if (env->prev != NULL)
        env->prev->next = env->next;
    else
        fn->envs = env->next;
    if (env->next != NULL)
        env->next->prev = env->prev;
    fn->n_envs--;
    env_free(env);
}

/* Memory watchdog for environments without a cgroup: called by the dispatcher's timer. */
void env_watchdog(struct env *env)
{
    long kb;

    if (env->cgroup != NULL || env->state == ENV_DYING || env->pid <= 0)
        return;
    kb = proc_status_kb(env, "VmRSS:");
    if (kb > 0 && kb / 1024 > env->cfg->memory_mb) {
        log_warn("[function:%s] environment %s uses %ld MB, over its %d MB limit; killing it",
                 env->cfg->name, env->id, kb / 1024, env->cfg->memory_mb);
        env->exit_reason = KILL_MEMORY;
        kill_group(env, SIGKILL);
    }
}

int env_ready(const struct env *env)
{
    return rtapi_ready(env->api);
}

void env_idle_arm(struct env *env)
{
    timer_set(env, TIMER_IDLE, (uint64_t)env->cfg->max_idle_s * 1000u);
}

/* ---- cgroups ----------------------------------------------------------------------------- */

static int dir_writable(const char *path)
{
    return access(path, W_OK) == 0;
}

/*
 * Remove the `sy-<pid>` cgroups of brokers that are gone (a broker killed with -9 cannot remove
 * its own): each environment's directory, then the broker's. A directory that still holds a
 * process stays (rmdir fails with EBUSY) and is tried again at the next start.
 */
static void cgroup_remove_stale(const char *base)
{
    DIR *d = opendir(base);
    struct dirent *de;

    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        char path[1700];
        int pid;
        DIR *sub;
        struct dirent *se;

        if (sscanf(de->d_name, "sy-%d", &pid) != 1 || pid <= 0 || pid == (int)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue; /* that broker is alive (or not ours to judge) */
        snprintf(path, sizeof(path), "%s/%s", base, de->d_name);
        sub = opendir(path);
        while (sub != NULL && (se = readdir(sub)) != NULL) {
            char child[2000];
            struct stat st;

            if (se->d_name[0] == '.')
                continue;
            snprintf(child, sizeof(child), "%s/%s", path, se->d_name);
            if (stat(child, &st) == 0 && S_ISDIR(st.st_mode))
                rmdir(child);
        }
        if (sub != NULL)
            closedir(sub);
        if (rmdir(path) == 0)
            log_info("removed the memory cgroup %s of a broker that is gone", path);
    }
    closedir(d);
}

/*
 * Find a memory cgroup we may create children in: cgroup v2 (unified, memory controller
 * enabled for our children) or the v1 memory hierarchy. Sets dsp->cgroup_root to a directory
 * of our own (`sy-<pid>`) or leaves it NULL (then the RSS watchdog applies).
 */
int cgroup_detect(struct dispatcher *dsp)
{
    FILE *fp = fopen("/proc/self/cgroup", "re");
    char line[1024];
    char v1[1024] = "", v2[1024] = "";
    char base[1400];
    char mine[1500];
    int use_v2 = -1;

    if (fp == NULL)
        return 0;
    while (fgets(line, sizeof(line), fp) != NULL) {
        char *nl = strchr(line, '\n');
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;

        if (nl != NULL)
            *nl = '\0';
        if (c2 == NULL)
            continue;
        *c2 = '\0';
        if (strcmp(c1 + 1, "") == 0 && strncmp(line, "0", 1) == 0)
            snprintf(v2, sizeof(v2), "%s", c2 + 1);
        else if (strstr(c1 + 1, "memory") != NULL)
            snprintf(v1, sizeof(v1), "%s", c2 + 1);
    }
    fclose(fp);

    if (v1[0] != '\0') {
        snprintf(base, sizeof(base), "/sys/fs/cgroup/memory%s", v1);
        if (dir_writable(base))
            use_v2 = 0;
    }
    if (use_v2 < 0 && v2[0] != '\0') {
        char ctl[1500];
        FILE *cf;

        snprintf(base, sizeof(base), "/sys/fs/cgroup%s", strcmp(v2, "/") == 0 ? "" : v2);
        snprintf(ctl, sizeof(ctl), "%s/cgroup.controllers", base);
        cf = fopen(ctl, "re");
        if (cf != NULL) {
            char ctrls[512] = "";

            if (fgets(ctrls, sizeof(ctrls), cf) != NULL && strstr(ctrls, "memory") != NULL &&
                dir_writable(base))
                use_v2 = 1;
            fclose(cf);
        }
    }
    if (use_v2 < 0)
        return 0;

    cgroup_remove_stale(base);
    snprintf(mine, sizeof(mine), "%s/sy-%d", base, (int)getpid());
    if (mkdir(mine, 0755) != 0 && errno != EEXIST)
        return 0;
    if (use_v2) {
        /* Our own directory holds no process, so it may delegate memory to its children. */
        char ctl[1600];
        int fd;

        snprintf(ctl, sizeof(ctl), "%s/cgroup.subtree_control", mine);
        fd = open(ctl, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "+memory", 7) != 7) {
            if (fd >= 0)
                close(fd);
            rmdir(mine);
            return 0;
        }
        close(fd);
    }
    dsp->cgroup_root = strdup(mine);
    dsp->cgroup_v2 = use_v2;
    return 0;
}
