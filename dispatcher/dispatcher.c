/*
 * dispatcher/dispatcher.c - the function registry, concurrency accounting, environment choice
 * for each synchronous invocation, SIGCHLD handling and the graceful drain.
 *
 * Concurrency follows Lambda: a function with reserved concurrency R may run at most R
 * invocations and those R slots are taken out of the broker-wide max_concurrency; every other
 * function shares what is left (the unreserved pool). A sync invoke that finds no slot is
 * answered at once with a throttle (429 upstream): nothing ever waits in a queue here, so no
 * request waits longer than INIT + its timeout.
 */
#include "dispatcher_int.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <uuid/uuid.h>

#include "core/log.h"
#include "core/fastid.h"
#include "core/time.h"
#include "config/config.h"

#define DISPATCHER_MAGIC 0x44535021u /* "DSP!" */
#define WATCHDOG_MS 200
#define RESPAWN_MS 1000

/*
 * Upper bounds of the duration histogram, in ms: from a warm no-op (about 1 ms) to Lambda's
 * longest timeout (900 s), roughly 1-2.5-5 per decade.
 */
const double function_duration_buckets_ms[FUNCTION_DURATION_BUCKETS] = {
    1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 900000,
};

/* Every invocation not yet completed is listed (for dispatcher_cancel()). */
static int live_add(struct dispatcher *dsp, struct invocation *inv)
{
    if (dsp->n_live == dsp->cap_live) {
        size_t cap = dsp->cap_live ? dsp->cap_live * 2 : 64;
        struct invocation **p = realloc(dsp->live, cap * sizeof(*p));

        if (p == NULL)
            return SY_ENOMEM;
        dsp->live = p;
        dsp->cap_live = cap;
    }
    dsp->live[dsp->n_live++] = inv;
    return 0;
}

static void live_remove(struct dispatcher *dsp, struct invocation *inv)
{
    for (size_t i = 0; i < dsp->n_live; i++) {
        if (dsp->live[i] == inv) {
            dsp->live[i] = dsp->live[--dsp->n_live];
            return;
        }
    }
}

/* ---- helpers ----------------------------------------------------------------------------- */

static char *find_exe(const char *name, const char *preferred)
{
    const char *path = getenv("PATH");
    char buf[4096];

    if (preferred != NULL && access(preferred, X_OK) == 0)
        return strdup(preferred);
    while (path != NULL && *path != '\0') {
        const char *colon = strchr(path, ':');
        size_t len = colon ? (size_t)(colon - path) : strlen(path);

        if (len > 0 && len + strlen(name) + 2 < sizeof(buf)) {
            memcpy(buf, path, len);
            snprintf(buf + len, sizeof(buf) - len, "/%s", name);
            if (access(buf, X_OK) == 0)
                return strdup(buf);
        }
        path = colon ? colon + 1 : NULL;
    }
    return strdup(name);
}

static int mkdir_p(const char *dir)
{
    char tmp[4096];
    size_t len = strlen(dir);

    if (len >= sizeof(tmp))
        return -1;
    memcpy(tmp, dir, len + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

static void make_trace_id(char *out, size_t outsz)
{
    char u[37], hex[33];
    size_t k = 0;

    fastid_uuid4(u);
    for (size_t i = 0; u[i] != '\0'; i++) {
        if (u[i] != '-')
            hex[k++] = u[i];
    }
    hex[k] = '\0';
    snprintf(out, outsz, "Root=1-%08llx-%.24s;Parent=%.16s;Sampled=0",
             (unsigned long long)(time_wall_ms() / 1000), hex, hex + 16);
}

static void inv_free(struct invocation *inv)
{
    if (inv == NULL)
        return;
    free(inv->payload);
    free(inv->client_context);
    free(inv->trace_id);
    free(inv->invoked_arn);
    free(inv->res_body);
    free(inv->res_ctype);
    free(inv->res_etype);
    buf_free(&inv->log);
    inv->magic = 0;
    free(inv);
}

/* Count INV's outcome in its function's stats; its duration if its event was delivered. */
static void fn_count(struct function *fn, const struct invocation *inv)
{
    struct function_stats *st = &fn->stats;
    double ms;

    st->invocations++;
    if (inv->res.status == INVOKE_FUNCTION_ERROR)
        st->errors++;
    else if (inv->res.status == INVOKE_THROTTLED)
        st->throttles++;
    if (inv->start_us == 0)
        return; /* never reached a runtime: no duration */
    ms = (double)(time_mono_us() - inv->start_us) / 1000.0;
    st->durations++;
    st->duration_sum_ms += ms;
    /* Cumulative buckets: one increment per bound at or above the duration. */
    for (int i = FUNCTION_DURATION_BUCKETS - 1; i >= 0 && ms <= function_duration_buckets_ms[i];
         i--)
        st->duration_buckets[i]++;
}

/* Run the caller's callback (if still wanted) and free the invocation. */
static void inv_complete(struct invocation *inv)
{
    struct dispatcher *dsp = inv->dsp;

    live_remove(dsp, inv);
    dsp->stats.invocations++;
    if (inv->res.status == INVOKE_FUNCTION_ERROR)
        dsp->stats.errors++;
    else if (inv->res.status == INVOKE_THROTTLED)
        dsp->stats.throttles++;
    fn_count(inv->fn->head, inv); /* per name, as /metrics shows them */
    inv->res.request_id = inv->request_id;
    inv->res.executed_version = inv->fn->version;
    inv->res.content_type = inv->res_ctype;
    inv->res.error_type = inv->res_etype;
    if (inv->res.body == NULL) {
        inv->res.body = "";
        inv->res.body_len = 0;
    }
    if (inv->want_log_tail && inv->log.len > 0) {
        size_t off = inv->log.len > 4096 ? inv->log.len - 4096 : 0;

        inv->res.log_tail = inv->log.data + off;
        inv->res.log_tail_len = inv->log.len - off;
    }
    if (inv->done != NULL)
        inv->done(&inv->res, inv->done_arg);
    inv_free(inv);
    /* A slot may have freed up: let the async queue start what waits for one. */
    if (dsp->slot_cb != NULL)
        dsp->slot_cb(dsp->slot_arg);
}

static void done_q_cb(evutil_socket_t fd, short what, void *arg)
{
    struct dispatcher *dsp = arg;

    while (dsp->done_q != NULL) {
        struct invocation *inv = dsp->done_q;

        dsp->done_q = inv->next_done;
        inv_complete(inv);
    }
}

/* Complete INV from the loop, not from the current call (callback contract). */
static void inv_complete_later(struct invocation *inv)
{
    struct dispatcher *dsp = inv->dsp;
    struct invocation **tail = &dsp->done_q;

    while (*tail != NULL)
        tail = &(*tail)->next_done;
    inv->next_done = NULL;
    *tail = inv;
    event_active(dsp->done_ev, EV_TIMEOUT, 0);
}

static unsigned total_in_flight(const struct dispatcher *dsp)
{
    unsigned n = 0;

    for (size_t i = 0; i < dsp->n_all; i++)
        n += dsp->all[i]->in_flight;
    return n;
}

static unsigned total_envs(const struct dispatcher *dsp)
{
    unsigned n = 0;

    for (size_t i = 0; i < dsp->n_all; i++)
        n += dsp->all[i]->n_envs;
    return n;
}

/* An environment that must not take new work: its unit was updated or deleted since it started. */
static int env_stale(const struct env *env)
{
    return env->fn->deleted || env->rev != env->fn->rev;
}

/* Shut down every environment of FN that has nothing to do and is stale (or all: ALL set). */
static void retire_idle(struct function *fn, int all)
{
    struct env *env = fn->envs;

    while (env != NULL) {
        struct env *next = env->next; /* env_shutdown() may free ENV */

        if (env->inv == NULL && env->state != ENV_DYING && (all || env_stale(env)))
            env_shutdown(env);
        env = next;
    }
}

/* During a drain: shut down every environment that has nothing left to do. */
static void drain_progress(struct dispatcher *dsp)
{
    if (!dsp->draining)
        return;
    for (size_t i = 0; i < dsp->n_all; i++)
        retire_idle(dsp->all[i], 1);
    if (total_envs(dsp) == 0 && total_in_flight(dsp) == 0 && dsp->drain_done != NULL)
        event_active(dsp->drain_ev, EV_TIMEOUT, 0);
}

static void drain_ev_cb(evutil_socket_t fd, short what, void *arg)
{
    struct dispatcher *dsp = arg;
    void (*done)(void *) = dsp->drain_done;

    if (done == NULL || total_envs(dsp) != 0 || total_in_flight(dsp) != 0)
        return;
    dsp->drain_done = NULL;
    done(dsp->drain_arg);
}

static void sigchld_cb(evutil_socket_t fd, short what, void *arg)
{
    struct dispatcher *dsp = arg;

    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        struct env *found = NULL;

        if (pid < 0 && errno == EINTR)
            continue;
        if (pid <= 0)
            break;
        for (size_t i = 0; i < dsp->n_all && found == NULL; i++) {
            for (struct env *env = dsp->all[i]->envs; env != NULL; env = env->next) {
                if (env->pid == pid) {
                    found = env;
                    break;
                }
            }
        }
        if (found != NULL)
            env_reaped(found, status);
    }
}

static void watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
    struct dispatcher *dsp = arg;

    for (size_t i = 0; i < dsp->n_all; i++) {
        for (struct env *env = dsp->all[i]->envs; env != NULL; env = env->next)
            env_watchdog(env);
    }
}

/* Bring the unit's provisioned environments to the number wanted; stop the ones over it. */
static void provision(struct function *fn)
{
    struct sy_error err;

    while (!fn->dsp->draining && !fn->deleted &&
           fn->n_provisioned_live < (unsigned)fn->provisioned) {
        if (env_spawn(fn, 1, &err) == NULL) {
            struct timeval tv = {.tv_sec = RESPAWN_MS / 1000, .tv_usec = 0};

            log_err("[function:%s:%s] cannot start a provisioned environment: %s; retrying in "
                    "%d ms",
                    fn->cfg->name, fn->version, err.msg, RESPAWN_MS);
            evtimer_add(fn->respawn, &tv);
            return;
        }
    }
    /* Fewer wanted than live: the surplus becomes on-demand (reaped when idle, as usual). */
    for (struct env *env = fn->envs; env != NULL && fn->n_provisioned_live > (unsigned)fn->provisioned;
         env = env->next) {
        if (env->provisioned && env->state != ENV_DYING) {
            env->provisioned = 0;
            fn->n_provisioned_live--;
            if (env->state == ENV_FREE)
                env_idle_arm(env);
        }
    }
}

static void respawn_cb(evutil_socket_t fd, short what, void *arg)
{
    provision(arg);
}

/* ---- called by env.c --------------------------------------------------------------------- */

void fn_rev_unref(struct fn_rev *rev)
{
    if (rev == NULL || --rev->refs > 0)
        return;
    cfg_function_clear(&rev->cfg);
    free(rev);
}

void dispatcher_inv_finish(struct invocation *inv)
{
    struct dispatcher *dsp = inv->dsp;
    struct function *fn = inv->fn;

    if (inv->counted) {
        fn->in_flight--;
        fn->head->name_in_flight--;
        if (!inv->reserved_slot)
            dsp->unreserved_in_flight--;
        inv->counted = 0;
    }
    inv_complete(inv);
    drain_progress(dsp);
}

void dispatcher_env_free_again(struct env *env)
{
    struct dispatcher *dsp = env->fn->dsp;

    if (dsp->draining || env_stale(env)) {
        env_shutdown(env);
        return;
    }
    if (!env->provisioned)
        env_idle_arm(env);
}

void dispatcher_env_gone(struct env *env)
{
    struct function *fn = env->fn;
    struct dispatcher *dsp = fn->dsp;

    if (env->provisioned && !dsp->draining && !env_stale(env)) {
        struct timeval tv = {.tv_sec = 0, .tv_usec = 0};

        /* Right away after an ordinary death; after a delay if INIT itself keeps failing. */
        if (env->init_error != NULL || !env->init_done)
            tv.tv_sec = RESPAWN_MS / 1000;
        evtimer_add(fn->respawn, &tv);
    }
    if (dsp->draining && total_envs(dsp) == 0 && total_in_flight(dsp) == 0 &&
        dsp->drain_done != NULL)
        event_active(dsp->drain_ev, EV_TIMEOUT, 0);
}

/* ---- units and configurations ------------------------------------------------------------ */

static struct fn_rev *rev_new(const struct cfg_function *fc, unsigned gen)
{
    struct fn_rev *rev = calloc(1, sizeof(*rev));

    if (rev == NULL)
        return NULL;
    if (cfg_function_copy(&rev->cfg, fc) != 0) {
        free(rev);
        return NULL;
    }
    rev->refs = 1;
    rev->gen = gen;
    return rev;
}

static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
    void *p;
    size_t ncap;

    if (n < *cap)
        return 0;
    ncap = *cap ? *cap * 2 : 8;
    p = realloc(*arr, ncap * elem);
    if (p == NULL)
        return SY_ENOMEM;
    *arr = p;
    *cap = ncap;
    return 0;
}

static void unit_free(struct function *fn)
{
    while (fn->envs != NULL) {
        struct env *env = fn->envs;

        if (env->inv != NULL) { /* never answered: the caller is going away too */
            env->inv->done = NULL;
            env->inv->counted = 0;
            live_remove(fn->dsp, env->inv);
            inv_free(env->inv);
            env->inv = NULL;
        }
        env_destroy(env);
    }
    funclog_close(&fn->log); /* the last one waits (at most 2 s) for the lines to be written */
    if (fn->respawn != NULL)
        event_free(fn->respawn);
    fn_rev_unref(fn->rev);
    for (size_t i = 0; i < fn->n_aliases; i++) {
        free(fn->aliases[i].name);
        free(fn->aliases[i].version);
        free(fn->aliases[i].extra_version);
    }
    free(fn->aliases);
    free(fn->versions);
    free(fn->version);
    free(fn->runtime_detail);
    free(fn->arn);
    free(fn->log_group);
    fn->magic = 0;
    free(fn);
}

/*
 * A new unit for HEAD (NULL: the unit is a $LATEST, its own head) at VERSION, running FC
 * (copied). Listed in dsp->all; the caller lists a head in dsp->heads or a version in its
 * head. NULL with ERR filled.
 */
static struct function *unit_new(struct dispatcher *dsp, struct function *head,
                                 const char *version, const struct cfg_function *fc,
                                 struct sy_error *err)
{
    struct function *fn = calloc(1, sizeof(*fn));
    size_t n = strlen(fc->name) + strlen(version) + 128;

    if (fn == NULL || grow((void **)&dsp->all, &dsp->cap_all, dsp->n_all, sizeof(*dsp->all)) != 0)
        goto nomem;
    fn->magic = FUNCTION_MAGIC;
    fn->dsp = dsp;
    fn->head = head != NULL ? head : fn;
    fn->reserved = -1;
    fn->version = strdup(version);
    fn->rev = rev_new(fc, 1);
    fn->arn = malloc(n);
    fn->log_group = malloc(n);
    fn->respawn = evtimer_new(dsp->base, respawn_cb, fn);
    if (fn->version == NULL || fn->rev == NULL || fn->arn == NULL || fn->log_group == NULL ||
        fn->respawn == NULL)
        goto nomem;
    fn->cfg = &fn->rev->cfg;
    if (head == NULL)
        snprintf(fn->arn, n, "arn:aws:lambda:%s:%s:function:%s", dsp->cfg->broker.region,
                 dsp->cfg->broker.account_id, fc->name);
    else
        snprintf(fn->arn, n, "arn:aws:lambda:%s:%s:function:%s:%s", dsp->cfg->broker.region,
                 dsp->cfg->broker.account_id, fc->name, version);
    snprintf(fn->log_group, n, "/aws/lambda/%s", fc->name);
    if (head == NULL && funclog_open(&fn->log, dsp->flw, dsp->logs_dir, fc->name, err) != 0)
        goto fail;
    dsp->all[dsp->n_all++] = fn;
    return fn;
nomem:
    sy_error_set(err, "out of memory");
fail:
    if (fn != NULL)
        unit_free(fn);
    return NULL;
}

static void recompute_unreserved(struct dispatcher *dsp)
{
    unsigned max = (unsigned)dsp->cfg->broker.max_concurrency;

    dsp->unreserved_cap = max > dsp->reserved_sum ? max - dsp->reserved_sum : 0;
}

/* ---- API --------------------------------------------------------------------------------- */

struct dispatcher *dispatcher_create(struct event_base *base, const struct cfg *cfg,
                                     const char *runtimes_dir, struct sy_error *err)
{
    struct dispatcher *dsp = calloc(1, sizeof(*dsp));
    struct timeval wd = {.tv_sec = 0, .tv_usec = WATCHDOG_MS * 1000};

    if (dsp == NULL) {
        sy_error_set(err, "out of memory");
        return NULL;
    }
    dsp->magic = DISPATCHER_MAGIC;
    dsp->base = base;
    dsp->cfg = cfg;
    dsp->rng = (uint64_t)time_mono_us() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
    dsp->runtimes_dir = strdup(runtimes_dir);
    dsp->python3 = find_exe("python3", "/usr/bin/python3");
    dsp->node = find_exe("node", "/usr/bin/node");
    dsp->bash = find_exe("bash", "/bin/bash");
    if (dsp->runtimes_dir == NULL || dsp->python3 == NULL || dsp->node == NULL ||
        dsp->bash == NULL) {
        sy_error_set(err, "out of memory");
        goto fail;
    }
    /* Before any thread or SIGCHLD handler of ours exists; functions created later through
     * the control API are checked against the same answer. */
    runtimes_probe(dsp);
    {
        size_t n = strlen(cfg->broker.data_dir) + 8;

        dsp->logs_dir = malloc(n);
        if (dsp->logs_dir == NULL) {
            sy_error_set(err, "out of memory");
            goto fail;
        }
        snprintf(dsp->logs_dir, n, "%s/logs", cfg->broker.data_dir);
        if (mkdir_p(dsp->logs_dir) != 0) {
            sy_error_set(err, "cannot create %s: %s", dsp->logs_dir, strerror(errno));
            goto fail;
        }
    }
    dsp->done_ev = event_new(base, -1, 0, done_q_cb, dsp);
    dsp->drain_ev = event_new(base, -1, 0, drain_ev_cb, dsp);
    dsp->sigchld_ev = evsignal_new(base, SIGCHLD, sigchld_cb, dsp);
    if (dsp->done_ev == NULL || dsp->drain_ev == NULL || dsp->sigchld_ev == NULL ||
        event_add(dsp->sigchld_ev, NULL) != 0) {
        sy_error_set(err, "cannot set up loop events");
        goto fail;
    }
    /* One log-writer thread for all functions, kept for the functions added later. */
    dsp->flw = funclog_writer_start(err);
    if (dsp->flw == NULL)
        goto fail;
    for (size_t i = 0; i < cfg->n_functions; i++) {
        if (dispatcher_add(dsp, &cfg->functions[i], err) == NULL)
            goto fail;
    }
    /* SWITCHYARD_MEMORY_LIMITS=watchdog skips the cgroup (docs/architecture.md). */
    {
        const char *ml = getenv("SWITCHYARD_MEMORY_LIMITS");

        if (ml == NULL || strcmp(ml, "watchdog") != 0)
            cgroup_detect(dsp);
    }
    if (dsp->cgroup_root != NULL) {
        log_info("memory limits: cgroup %s (%s)", dsp->cgroup_root, dsp->cgroup_v2 ? "v2" : "v1");
    } else {
        log_info("memory limits: no writable memory cgroup; watching resident size every %d ms",
                 WATCHDOG_MS);
        dsp->watchdog_ev = event_new(base, -1, EV_PERSIST, watchdog_cb, dsp);
        if (dsp->watchdog_ev != NULL)
            event_add(dsp->watchdog_ev, &wd);
    }
    return dsp;
fail:
    dispatcher_destroy(dsp);
    return NULL;
}

int dispatcher_start(struct dispatcher *dsp, struct sy_error *err)
{
    dsp->started = 1;
    for (size_t i = 0; i < dsp->n_all; i++) {
        struct function *fn = dsp->all[i];

        if (fn->provisioned <= 0 || fn->deleted)
            continue;
        while (fn->n_provisioned_live < (unsigned)fn->provisioned) {
            if (env_spawn(fn, 1, err) == NULL)
                return SY_EIO;
        }
        log_info("[function:%s] %d provisioned environment(s) starting", fn->cfg->name,
                 fn->provisioned);
    }
    return 0;
}

struct function *dispatcher_add(struct dispatcher *dsp, const struct cfg_function *fc,
                                struct sy_error *err)
{
    struct function *fn;

    if (dispatcher_function(dsp, fc->name) != NULL) {
        sy_error_set(err, "function %s exists already", fc->name);
        return NULL;
    }
    if (fc->reserved_concurrency > 0 &&
        dsp->reserved_sum + (unsigned)fc->reserved_concurrency >
            (unsigned)dsp->cfg->broker.max_concurrency) {
        sy_error_set(err,
                     "function %s: reserved concurrency %d is more than the %u left unreserved "
                     "of max_concurrency %d",
                     fc->name, fc->reserved_concurrency,
                     (unsigned)dsp->cfg->broker.max_concurrency - dsp->reserved_sum,
                     dsp->cfg->broker.max_concurrency);
        return NULL;
    }
    if (grow((void **)&dsp->heads, &dsp->cap_heads, dsp->n_heads, sizeof(*dsp->heads)) != 0) {
        sy_error_set(err, "out of memory");
        return NULL;
    }
    {
        char detail[512];

        switch (runtimes_check(dsp, fc, detail, sizeof(detail))) {
        case 0:
            detail[0] = '\0';
            break;
        case 1:
            /* Said once here; GetFunction keeps saying it (StateReason). */
            log_warn("[function:%s] %s", fc->name, detail);
            break;
        default:
            sy_error_set(err, "function %s: %s", fc->name, detail);
            return NULL;
        }
        fn = unit_new(dsp, NULL, "$LATEST", fc, err);
        if (fn == NULL)
            return NULL;
        if (detail[0] != '\0' && (fn->runtime_detail = strdup(detail)) == NULL)
            log_err("[function:%s] out of memory keeping its runtime note", fc->name);
    }
    fn->reserved = fc->reserved_concurrency;
    fn->provisioned = fc->provisioned_concurrency;
    if (fn->reserved > 0)
        dsp->reserved_sum += (unsigned)fn->reserved;
    recompute_unreserved(dsp);
    dsp->heads[dsp->n_heads++] = fn;
    if (dsp->started)
        provision(fn);
    return fn;
}

int function_update(struct function *fn, const struct cfg_function *fc, struct sy_error *err)
{
    struct fn_rev *rev;

    if (fn->head != fn || fn->deleted) {
        sy_error_set(err, "only the $LATEST of a live function can be updated");
        return SY_EINVAL;
    }
    rev = rev_new(fc, fn->rev->gen + 1);
    if (rev == NULL) {
        sy_error_set(err, "out of memory");
        return SY_ENOMEM;
    }
    fn_rev_unref(fn->rev);
    fn->rev = rev;
    fn->cfg = &rev->cfg;
    /* The old configuration's environments: busy ones finish what they run and stop then
     * (dispatcher_env_free_again()), idle ones stop now; none counts as provisioned any more. */
    for (struct env *env = fn->envs; env != NULL; env = env->next) {
        if (env->provisioned && env_stale(env)) {
            env->provisioned = 0;
            fn->n_provisioned_live--;
        }
    }
    retire_idle(fn, 0);
    fn->provisioned = fc->provisioned_concurrency;
    if (!fn->dsp->draining && fn->dsp->started)
        provision(fn);
    return 0;
}

int function_set_async(struct function *fn, const struct cfg_async *as, struct sy_error *err)
{
    struct cfg_function fc;
    struct fn_rev *rev;
    int rc;

    if (fn->deleted) {
        sy_error_set(err, "the function was deleted");
        return SY_ENOENT;
    }
    /* A copy of the current configuration with AS in place of its async policy. */
    fc = *fn->cfg;
    fc.async = *as;
    rev = calloc(1, sizeof(*rev));
    if (rev == NULL || (rc = cfg_function_copy(&rev->cfg, &fc)) != 0) {
        free(rev);
        sy_error_set(err, "out of memory");
        return SY_ENOMEM;
    }
    rev->refs = 1;
    rev->gen = fn->rev->gen + 1;
    /* Environments do not see the async policy: they carry over to the new configuration. */
    for (struct env *env = fn->envs; env != NULL; env = env->next) {
        if (env->rev == fn->rev) {
            fn_rev_unref(env->rev);
            env->rev = rev;
            env->cfg = &rev->cfg;
            rev->refs++;
        }
    }
    fn_rev_unref(fn->rev);
    fn->rev = rev;
    fn->cfg = &rev->cfg;
    return 0;
}

/* Stop a unit: no new invocation, idle environments now, busy ones when they finish. */
static void unit_retire(struct function *fn)
{
    fn->deleted = 1;
    fn->provisioned = 0;
    evtimer_del(fn->respawn);
    for (struct env *env = fn->envs; env != NULL; env = env->next) {
        if (env->provisioned) {
            env->provisioned = 0;
            fn->n_provisioned_live--;
        }
    }
    retire_idle(fn, 1);
}

void function_delete(struct function *head)
{
    struct dispatcher *dsp = head->dsp;

    if (head->deleted)
        return;
    for (size_t i = 0; i < head->n_versions; i++)
        unit_retire(head->versions[i]);
    unit_retire(head);
    if (head->reserved > 0)
        dsp->reserved_sum -= (unsigned)head->reserved;
    head->reserved = -1;
    recompute_unreserved(dsp);
    for (size_t i = 0; i < dsp->n_heads; i++) {
        if (dsp->heads[i] == head) {
            memmove(&dsp->heads[i], &dsp->heads[i + 1],
                    (dsp->n_heads - i - 1) * sizeof(*dsp->heads));
            dsp->n_heads--;
            break;
        }
    }
}

int function_delete_version(struct function *ver)
{
    struct function *head = ver->head;

    if (ver == head)
        return SY_EINVAL;
    for (size_t i = 0; i < head->n_aliases; i++) {
        const struct fn_alias *al = &head->aliases[i];

        if (strcmp(al->version, ver->version) == 0 ||
            (al->extra_version != NULL && strcmp(al->extra_version, ver->version) == 0))
            return SY_EBUSY;
    }
    for (size_t i = 0; i < head->n_versions; i++) {
        if (head->versions[i] == ver) {
            memmove(&head->versions[i], &head->versions[i + 1],
                    (head->n_versions - i - 1) * sizeof(*head->versions));
            head->n_versions--;
            break;
        }
    }
    unit_retire(ver);
    return 0;
}

struct function *function_publish(struct function *head, const char *version,
                                  const struct cfg_function *fc, struct sy_error *err)
{
    struct function *ver;

    if (head->head != head || head->deleted) {
        sy_error_set(err, "versions are published from the $LATEST of a live function");
        return NULL;
    }
    if (function_version(head, version) != NULL) {
        sy_error_set(err, "version %s of %s exists already", version, head->cfg->name);
        return NULL;
    }
    if (grow((void **)&head->versions, &head->cap_versions, head->n_versions,
             sizeof(*head->versions)) != 0) {
        sy_error_set(err, "out of memory");
        return NULL;
    }
    ver = unit_new(head->dsp, head, version, fc != NULL ? fc : head->cfg, err);
    if (ver == NULL)
        return NULL;
    /* A version's own provisioned concurrency is set through the API, not inherited. */
    ver->provisioned = 0;
    head->versions[head->n_versions++] = ver;
    return ver;
}

struct function *function_version(struct function *head, const char *version)
{
    head = head->head;
    if (version == NULL || version[0] == '\0' || strcmp(version, "$LATEST") == 0)
        return head;
    for (size_t i = 0; i < head->n_versions; i++) {
        if (strcmp(head->versions[i]->version, version) == 0)
            return head->versions[i];
    }
    return NULL;
}

size_t function_version_count(const struct function *head)
{
    return head->head->n_versions;
}

struct function *function_version_at(struct function *head, size_t i)
{
    head = head->head;
    return i < head->n_versions ? head->versions[i] : NULL;
}

const char *function_version_name(const struct function *fn)
{
    return fn->version;
}

struct function *function_head(struct function *fn)
{
    return fn->head;
}

int function_deleted(const struct function *fn)
{
    return fn->deleted;
}

unsigned function_generation(const struct function *fn)
{
    return fn->rev->gen;
}

int function_set_provisioned(struct function *fn, int n)
{
    if (fn->deleted || n < 0)
        return SY_EINVAL;
    fn->provisioned = n;
    if (fn->dsp->started && !fn->dsp->draining)
        provision(fn);
    return 0;
}

void function_provisioned_counts(const struct function *fn, unsigned *wanted, unsigned *ready)
{
    unsigned r = 0;

    for (const struct env *env = fn->envs; env != NULL; env = env->next) {
        if (env->provisioned && env->init_done && env->state != ENV_DYING)
            r++;
    }
    if (wanted != NULL)
        *wanted = fn->provisioned > 0 ? (unsigned)fn->provisioned : 0;
    if (ready != NULL)
        *ready = r;
}

int function_reserved(const struct function *fn)
{
    return fn->head->reserved;
}

int function_set_reserved(struct function *fn, int reserved, struct sy_error *err)
{
    struct function *head = fn->head;
    struct dispatcher *dsp = fn->dsp;
    unsigned others = dsp->reserved_sum - (head->reserved > 0 ? (unsigned)head->reserved : 0);

    if (head->deleted)
        return SY_ENOENT;
    if (reserved > 0 && others + (unsigned)reserved > (unsigned)dsp->cfg->broker.max_concurrency) {
        sy_error_set(err,
                     "Specified ReservedConcurrentExecutions for function decreases account's "
                     "UnreservedConcurrentExecution below its minimum value of [0] (the broker's "
                     "max_concurrency is %d, %u of it reserved by other functions).",
                     dsp->cfg->broker.max_concurrency, others);
        return SY_EINVAL;
    }
    dsp->reserved_sum = others + (reserved > 0 ? (unsigned)reserved : 0);
    head->reserved = reserved;
    recompute_unreserved(dsp);
    return 0;
}

/* ---- aliases ----------------------------------------------------------------------------- */

static struct fn_alias *alias_find(struct function *head, const char *name)
{
    for (size_t i = 0; i < head->n_aliases; i++) {
        if (strcmp(head->aliases[i].name, name) == 0)
            return &head->aliases[i];
    }
    return NULL;
}

int function_alias_set(struct function *head, const char *name, const char *version,
                       const char *extra_version, double extra_weight, struct sy_error *err)
{
    struct fn_alias *al;
    char *v = NULL, *xv = NULL;

    head = head->head;
    if (function_version(head, version) == NULL ||
        (extra_version != NULL && function_version(head, extra_version) == NULL)) {
        sy_error_set(err, "Function not found: %s:%s", head->arn,
                     function_version(head, version) == NULL ? version : extra_version);
        return SY_ENOENT;
    }
    v = strdup(version);
    if (v == NULL || (extra_version != NULL && (xv = strdup(extra_version)) == NULL))
        goto nomem;
    al = alias_find(head, name);
    if (al == NULL) {
        if (grow((void **)&head->aliases, &head->cap_aliases, head->n_aliases,
                 sizeof(*head->aliases)) != 0)
            goto nomem;
        al = &head->aliases[head->n_aliases];
        memset(al, 0, sizeof(*al));
        al->name = strdup(name);
        if (al->name == NULL)
            goto nomem;
        head->n_aliases++;
    }
    free(al->version);
    free(al->extra_version);
    al->version = v;
    al->extra_version = xv;
    al->extra_weight = xv != NULL ? extra_weight : 0;
    return 0;
nomem:
    free(v);
    free(xv);
    sy_error_set(err, "out of memory");
    return SY_ENOMEM;
}

int function_alias_delete(struct function *head, const char *name)
{
    head = head->head;
    for (size_t i = 0; i < head->n_aliases; i++) {
        struct fn_alias *al = &head->aliases[i];

        if (strcmp(al->name, name) != 0)
            continue;
        free(al->name);
        free(al->version);
        free(al->extra_version);
        memmove(al, al + 1, (head->n_aliases - i - 1) * sizeof(*al));
        head->n_aliases--;
        return 0;
    }
    return SY_ENOENT;
}

int function_alias_get(struct function *head, const char *name, const char **version,
                       const char **extra_version, double *extra_weight)
{
    const struct fn_alias *al = alias_find(head->head, name);

    if (al == NULL)
        return SY_ENOENT;
    if (version != NULL)
        *version = al->version;
    if (extra_version != NULL)
        *extra_version = al->extra_version;
    if (extra_weight != NULL)
        *extra_weight = al->extra_weight;
    return 0;
}

/* xorshift64*: the weighted split needs a fair coin, not a secret. */
static double rng_unit(struct dispatcher *dsp)
{
    uint64_t x = dsp->rng;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    dsp->rng = x;
    return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

struct function *function_route(struct function *head, const char *qualifier)
{
    const struct fn_alias *al;
    struct function *fn;

    head = head->head;
    if (head->deleted)
        return NULL;
    fn = function_version(head, qualifier);
    if (fn != NULL)
        return fn;
    al = alias_find(head, qualifier);
    if (al == NULL)
        return NULL;
    if (al->extra_version != NULL && rng_unit(head->dsp) < al->extra_weight)
        return function_version(head, al->extra_version);
    return function_version(head, al->version);
}

struct function *dispatcher_function(struct dispatcher *dsp, const char *name)
{
    for (size_t i = 0; i < dsp->n_heads; i++) {
        if (strcmp(dsp->heads[i]->cfg->name, name) == 0)
            return dsp->heads[i];
    }
    return NULL;
}

size_t dispatcher_function_count(const struct dispatcher *dsp)
{
    return dsp->n_heads;
}

struct function *dispatcher_function_at(struct dispatcher *dsp, size_t i)
{
    return i < dsp->n_heads ? dsp->heads[i] : NULL;
}

const struct cfg_function *function_cfg(const struct function *fn)
{
    return fn->cfg;
}

const char *function_arn(const struct function *fn)
{
    return fn->arn;
}

void function_env_counts(const struct function *fn, unsigned *total, unsigned *busy)
{
    if (total != NULL)
        *total = fn->n_envs;
    if (busy != NULL)
        *busy = fn->n_busy;
}

void function_stats(const struct function *fn, struct function_stats *out)
{
    *out = fn->stats;
}

const char *function_runtime_detail(const struct function *fn)
{
    return fn->head->runtime_detail;
}

/*
 * The environment for a new invocation of FN: a free one (preferring one already waiting in
 * `next`), else one still in INIT with nothing assigned (a provisioned one starting up), else a
 * new one (*SPAWNED set: this invocation pays for the cold start). NULL with ERR filled.
 */
static struct env *pick_env(struct function *fn, int *spawned, struct sy_error *err)
{
    struct env *free_waiting = NULL, *free_any = NULL, *starting = NULL;

    *spawned = 0;

    for (struct env *env = fn->envs; env != NULL; env = env->next) {
        if (env->rev != fn->rev)
            continue; /* started with a configuration since replaced */
        if (env->state == ENV_FREE) {
            if (env_ready(env)) {
                free_waiting = env;
                break;
            }
            if (free_any == NULL)
                free_any = env;
        } else if (env->state == ENV_STARTING && env->inv == NULL && starting == NULL) {
            starting = env;
        }
    }
    if (free_waiting != NULL)
        return free_waiting;
    if (free_any != NULL)
        return free_any;
    if (starting != NULL)
        return starting;
    *spawned = 1;
    return env_spawn(fn, 0, err);
}

int dispatcher_invoke(struct dispatcher *dsp, struct function *fn, const struct invoke_req *req,
                      invoke_done_fn *done, void *arg)
{
    struct invocation *inv;
    const struct cfg_function *fc = fn->cfg;
    struct env *env;
    struct sy_error err;
    int spawned;

    if (dsp->draining)
        return SY_ESTATE;
    if (fn->deleted)
        return SY_ENOENT;
    inv = calloc(1, sizeof(*inv));
    if (inv == NULL)
        return SY_ENOMEM;
    inv->magic = INV_MAGIC;
    inv->dsp = dsp;
    inv->fn = fn;
    inv->done = done;
    inv->done_arg = arg;
    inv->want_log_tail = req->want_log_tail;
    if (req->request_id != NULL) {
        snprintf(inv->request_id, sizeof(inv->request_id), "%s", req->request_id);
    } else {
        fastid_uuid4(inv->request_id);
    }
    if (req->payload_give == NULL) {
        inv->payload = malloc(req->payload_len + 1);
        if (inv->payload == NULL)
            goto nomem;
        memcpy(inv->payload, req->payload, req->payload_len);
        inv->payload[req->payload_len] = '\0';
    }
    inv->payload_len = req->payload_len;
    if (req->client_context != NULL) {
        inv->client_context = strdup(req->client_context);
        if (inv->client_context == NULL)
            goto nomem;
        /* It travels in a header: JSON whitespace may be folded, line breaks may not stay. */
        for (char *p = inv->client_context; *p; p++) {
            if (*p == '\r' || *p == '\n')
                *p = ' ';
        }
    }
    if (req->trace_id != NULL) {
        inv->trace_id = strdup(req->trace_id);
    } else {
        char tid[96];

        make_trace_id(tid, sizeof(tid));
        inv->trace_id = strdup(tid);
    }
    if (inv->trace_id == NULL)
        goto nomem;
    if (req->invoked_arn != NULL && (inv->invoked_arn = strdup(req->invoked_arn)) == NULL)
        goto nomem;
    if (live_add(dsp, inv) != 0)
        goto nomem;
    /* Every path from here returns 0: the caller's block is ours now. */
    if (req->payload_give != NULL) {
        inv->payload = req->payload_give;
        inv->payload[req->payload_len] = '\0';
    }

    /* Concurrency: reserved functions use their own slots (all versions of the name together),
     * others the unreserved pool. */
    if (fn->head->reserved >= 0) {
        if (fn->head->name_in_flight >= (unsigned)fn->head->reserved) {
            inv->res.status = INVOKE_THROTTLED;
            inv->res.throttle_reason = "ReservedFunctionConcurrentInvocationLimitExceeded";
            inv_complete_later(inv);
            return 0;
        }
        inv->reserved_slot = 1;
    } else if (dsp->unreserved_in_flight >= dsp->unreserved_cap) {
        inv->res.status = INVOKE_THROTTLED;
        inv->res.throttle_reason = "ConcurrentInvocationLimitExceeded";
        inv_complete_later(inv);
        return 0;
    }
    fn->in_flight++;
    fn->head->name_in_flight++;
    if (!inv->reserved_slot)
        dsp->unreserved_in_flight++;
    inv->counted = 1;

    env = pick_env(fn, &spawned, &err);
    if (env == NULL) {
        size_t len;
        struct buf b = {0};

        log_err("[function:%s] cannot start an execution environment: %s", fc->name, err.msg);
        fn->in_flight--;
        fn->head->name_in_flight--;
        if (!inv->reserved_slot)
            dsp->unreserved_in_flight--;
        inv->counted = 0;
        buf_printf(&b, "cannot start an execution environment for %s: %s", fc->name, err.msg);
        inv->res_body = buf_take(&b, &len);
        inv->res.status = INVOKE_SERVICE_ERROR;
        inv->res.body = inv->res_body;
        inv->res.body_len = len;
        inv_complete_later(inv);
        return 0;
    }
    /* Warm: the environment existed before this invocation (provisioned ones count too). */
    if (!spawned)
        dsp->stats.warm_starts++;
    env_assign(env, inv);
    return 0;
nomem:
    inv_free(inv);
    return SY_ENOMEM;
}

void dispatcher_cancel(struct dispatcher *dsp, void *arg)
{
    for (size_t i = 0; i < dsp->n_live; i++) {
        if (dsp->live[i]->done_arg == arg)
            dsp->live[i]->done = NULL;
    }
}

void dispatcher_drain(struct dispatcher *dsp, void (*done)(void *arg), void *arg)
{
    dsp->draining = 1;
    dsp->drain_done = done;
    dsp->drain_arg = arg;
    for (size_t i = 0; i < dsp->n_all; i++)
        evtimer_del(dsp->all[i]->respawn);
    log_info("draining: %u invocation(s) in flight, %u environment(s) to stop",
             total_in_flight(dsp), total_envs(dsp));
    drain_progress(dsp);
    if (total_envs(dsp) == 0 && total_in_flight(dsp) == 0)
        event_active(dsp->drain_ev, EV_TIMEOUT, 0);
}

unsigned dispatcher_capacity(const struct dispatcher *dsp, const struct function *fn)
{
    const struct function *head = fn->head;

    if (dsp->draining || fn->deleted)
        return 0;
    if (head->reserved >= 0)
        return head->name_in_flight >= (unsigned)head->reserved
                   ? 0
                   : (unsigned)head->reserved - head->name_in_flight;
    return dsp->unreserved_in_flight >= dsp->unreserved_cap
               ? 0
               : dsp->unreserved_cap - dsp->unreserved_in_flight;
}

void dispatcher_set_slot_cb(struct dispatcher *dsp, void (*cb)(void *arg), void *arg)
{
    dsp->slot_cb = cb;
    dsp->slot_arg = arg;
}

int dispatcher_draining(const struct dispatcher *dsp)
{
    return dsp->draining;
}

void dispatcher_stats(const struct dispatcher *dsp, struct dispatcher_stats *out)
{
    *out = dsp->stats;
    out->in_flight = total_in_flight(dsp);
    out->environments = total_envs(dsp);
}

void dispatcher_destroy(struct dispatcher *dsp)
{
    if (dsp == NULL)
        return;
    /* Newest first: a function's versions (made after it) go before the head they log through. */
    for (size_t i = dsp->n_all; i-- > 0;)
        unit_free(dsp->all[i]);
    free(dsp->all);
    free(dsp->heads);
    funclog_writer_unref(dsp->flw); /* after the last log is closed: waits for its lines */
    /* Throttled/failed invocations still waiting for their deferred completion. */
    while (dsp->done_q != NULL) {
        struct invocation *inv = dsp->done_q;

        dsp->done_q = inv->next_done;
        live_remove(dsp, inv);
        inv_free(inv);
    }
    free(dsp->live);
    if (dsp->watchdog_ev != NULL)
        event_free(dsp->watchdog_ev);
    if (dsp->cgroup_root != NULL) {
        rmdir(dsp->cgroup_root);
        free(dsp->cgroup_root);
    }
    if (dsp->done_ev != NULL)
        event_free(dsp->done_ev);
    if (dsp->drain_ev != NULL)
        event_free(dsp->drain_ev);
    if (dsp->sigchld_ev != NULL)
        event_free(dsp->sigchld_ev);
    free(dsp->logs_dir);
    free(dsp->runtimes_dir);
    free(dsp->python3);
    free(dsp->node);
    free(dsp->bash);
    dsp->magic = 0;
    free(dsp);
}
