/*
 * broker/broker.c - the lifecycle of `switchyard run` (see broker.h).
 *
 *   cfg_load -> log level -> data_dir -> event_base -> dispatcher -> control API listener ->
 *   provisioned environments -> broker.json -> "ready" line -> event loop
 *
 * Stopping. SIGTERM and SIGINT arrive through libevent signal events: the handler we register
 * runs on the loop, after libevent's own async-signal-safe handler has only recorded the
 * signal, so it may touch broker state. The first one starts the drain:
 *   1. stop accepting connections; requests that still arrive on open keep-alive connections
 *      get 503 ServiceException (api_set_draining());
 *   2. dispatcher_drain(): in-flight sync invocations run to completion (each bounded by its
 *      own timeout) and are answered; then every environment is shut down;
 *   3. once the dispatcher reports it is done, we linger DRAIN_LINGER_MS so that the last
 *      replies are flushed to their sockets (httpd has no "flushed" notification), then leave
 *      the loop, free everything, remove broker.json and exit 0.
 * A second SIGTERM/SIGINT during the drain stops at once: pending requests are dropped
 * (their connections closed), dispatcher_destroy() SIGKILLs the environments, exit status 1
 * (the stop was not clean: invocations were abandoned).
 */
#include "broker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "config/config.h"
#include "deploy.h"
#include "reload.h"
#include "dispatcher/asyncq.h"
#include "dispatcher/dispatcher.h"
#include "mappings/mapping.h"
#include "api.h"
#include "core/httpd.h"
#include "core/log.h"
#include "core/buf.h"
#include "core/time.h"

#define BROKER_MAGIC 0x42524b52u /* "BRKR" */
#define DRAIN_LINGER_MS 100

#ifndef SY_RUNTIMES_DIR
#define SY_RUNTIMES_DIR "runtimes"
#endif

enum broker_state {
    BROKER_RUNNING,
    BROKER_DRAINING,
    BROKER_STOPPING, /* drain done: flushing the last replies */
};

struct broker {
    unsigned magic;
    struct cfg *cfg;
    struct event_base *base;
    struct dispatcher *dsp;
    struct asyncq *aq;
    struct deploy *dep;
    struct mappings *ms;
    struct api *api;
    struct httpd *srv;
    struct event *sigterm_ev;
    struct event *sigint_ev;
    struct event *sighup_ev;
    struct event *linger_ev;
    enum broker_state state;
    int forced;       /* a second signal stopped the drain */
    char *state_path; /* <data_dir>/broker.json, once written */
    struct reload_ctx reload;
    struct cfg **old_cfgs; /* replaced by reloads, still borrowed from: freed at exit */
    size_t n_old_cfgs;
    char endpoint[300];
};

/* ---- helpers ------------------------------------------------------------------------------ */

int broker_host_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    char h[64];
    size_t n = strlen(host);

    if (strcmp(host, "localhost") == 0)
        return 1;
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(h)) {
        memcpy(h, host + 1, n - 2);
        h[n - 2] = '\0';
        host = h;
    }
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&a6))
            return 1;
        /* ::ffff:127.x.y.z */
        return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
    }
    return 0;
}

void broker_endpoint(const char *host, int port, int loopback_for_any, char *out, size_t outsz)
{
    char h[80];
    size_t n = strlen(host);

    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(h)) {
        memcpy(h, host + 1, n - 2);
        h[n - 2] = '\0';
    } else {
        snprintf(h, sizeof(h), "%s", host);
    }
    if (loopback_for_any && strcmp(h, "0.0.0.0") == 0)
        snprintf(h, sizeof(h), "127.0.0.1");
    else if (loopback_for_any && (strcmp(h, "::") == 0 || strcmp(h, "::0") == 0))
        snprintf(h, sizeof(h), "::1");
    if (strchr(h, ':') != NULL)
        snprintf(out, outsz, "http://[%s]:%d", h, port);
    else
        snprintf(out, outsz, "http://%s:%d", h, port);
}

/* mkdir -p DIR; the last component gets MODE, missing parents 0755. Returns 0 or -1 (errno). */
static int mkdir_p(const char *dir, mode_t mode)
{
    char tmp[4096];
    size_t len = strlen(dir);

    if (len == 0 || len >= sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(tmp, dir, len + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(tmp, mode) != 0 && errno != EEXIST)
        return -1;
    /* EEXIST may be a file: make sure it is a directory we can write into. */
    if (access(tmp, W_OK | X_OK) != 0)
        return -1;
    return 0;
}

/*
 * Write <data_dir>/broker.json atomically (temp file, fsync, rename) so that a CLI reading it
 * never sees a half-written file. Blocking; runs before the loop starts.
 */
static int write_state(struct broker *b, struct sy_error *err)
{
    char path[4096], tmp[4200], ts[32];
    json_t *j;
    char *s;
    int fd, rc = -1;
    size_t len, off = 0;

    snprintf(path, sizeof(path), "%s/broker.json", b->cfg->broker.data_dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    time_iso8601(ts, time_wall_ms());
    j = json_pack("{s:I,s:s,s:s}", "pid", (json_int_t)getpid(), "endpoint", b->endpoint,
                  "started_at", ts);
    s = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (s == NULL) {
        sy_error_set(err, "out of memory");
        return -1;
    }
    len = strlen(s);
    s[len++] = '\n'; /* json_dumps leaves room: we overwrite the NUL and write len bytes */
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        sy_error_set(err, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    while (off < len) {
        ssize_t w = write(fd, s + off, len - off);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            sy_error_set(err, "cannot write %s: %s", tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            goto out;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        sy_error_set(err, "cannot write %s: %s", tmp, strerror(errno));
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        sy_error_set(err, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        goto out;
    }
    b->state_path = strdup(path);
    rc = 0;
out:
    free(s);
    return rc;
}

/* Remove broker.json, unless another broker has taken it over meanwhile. */
static void remove_state(struct broker *b)
{
    json_t *j;

    if (b->state_path == NULL)
        return;
    j = json_load_file(b->state_path, 0, NULL);
    if (j != NULL && json_integer_value(json_object_get(j, "pid")) == (json_int_t)getpid())
        unlink(b->state_path);
    json_decref(j);
    sy_free(&b->state_path);
}

/* Warn when broker.json names another live broker: two brokers must not share a data_dir. */
static void check_state(struct broker *b)
{
    char path[4096];
    json_t *j;
    json_int_t pid;

    snprintf(path, sizeof(path), "%s/broker.json", b->cfg->broker.data_dir);
    j = json_load_file(path, 0, NULL);
    if (j == NULL)
        return;
    pid = json_integer_value(json_object_get(j, "pid"));
    if (pid > 0 && pid != (json_int_t)getpid() && (kill((pid_t)pid, 0) == 0 || errno == EPERM))
        log_warn("%s names a broker that is still running (pid %lld, %s); two brokers must not "
                 "share data_dir %s",
                 path, (long long)pid, json_string_value(json_object_get(j, "endpoint")),
                 b->cfg->broker.data_dir);
    json_decref(j);
}

/* ---- stopping ----------------------------------------------------------------------------- */

static void linger_cb(evutil_socket_t fd, short what, void *arg)
{
    struct broker *b = arg;

    event_base_loopbreak(b->base);
}

/* dispatcher_drain() is done: nothing runs any more. */
static void drain_done(void *arg)
{
    struct broker *b = arg;
    struct timeval tv = {.tv_sec = 0, .tv_usec = DRAIN_LINGER_MS * 1000};

    if (b->magic != BROKER_MAGIC)
        abort();
    if (b->state != BROKER_DRAINING)
        return;
    b->state = BROKER_STOPPING;
    log_info("drained: every invocation answered, every environment stopped");
    evtimer_add(b->linger_ev, &tv);
}

/* The async queue has no invocation in flight any more: drain the dispatcher. */
static void async_drained(void *arg)
{
    struct broker *b = arg;

    if (b->state != BROKER_DRAINING)
        return;
    dispatcher_drain(b->dsp, drain_done, b);
}

/* The mappings have finished their batches and stopped their sources: drain the async queue. */
static void mappings_drained(void *arg)
{
    struct broker *b = arg;

    if (b->state != BROKER_DRAINING)
        return;
    /* Async invocations in flight finish and their outcomes are stored; queued events stay
     * stored for the next start. Then the dispatcher drains what is left. */
    asyncq_drain(b->aq, async_drained, b);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct broker *b = arg;
    const char *name = sig == SIGINT ? "SIGINT" : "SIGTERM";

    switch (b->state) {
    case BROKER_RUNNING:
        b->state = BROKER_DRAINING;
        b->reload.stopping = 1;
        log_info("%s: draining (no new connections; in-flight invocations finish; send %s "
                 "again to stop at once)",
                 name, name);
        httpd_stop_listening(b->srv);
        api_set_draining(b->api);
        /* Mappings stop reading and finish their batches first (what they hold and did not
         * run goes back to the sources), then the async queue, then the dispatcher. */
        mappings_drain(b->ms, mappings_drained, b);
        break;
    case BROKER_DRAINING:
        log_warn("%s during the drain: stopping now; %zu request(s) still waiting are dropped "
                 "and every environment is killed",
                 name, httpd_pending(b->srv));
        b->forced = 1;
        event_base_loopbreak(b->base);
        break;
    case BROKER_STOPPING:
        event_base_loopbreak(b->base);
        break;
    }
}

/* A reload applied: B keeps the configuration it replaced (borrowed by mappings, the async
 * queue and the dispatcher's broker settings) and runs with the new one. */
static void reload_adopt(void *arg, struct cfg *cfg)
{
    struct broker *b = arg;
    struct cfg **p = realloc(b->old_cfgs, (b->n_old_cfgs + 1) * sizeof(*p));

    if (p == NULL) {
        log_err("reload: out of memory keeping the previous configuration (it leaks)");
    } else {
        b->old_cfgs = p;
        b->old_cfgs[b->n_old_cfgs++] = b->cfg;
    }
    b->cfg = cfg;
    b->reload.cfg = cfg;
}

static void sighup_cb(evutil_socket_t sig, short what, void *arg)
{
    struct broker *b = arg;
    int rc;

    if (b->state != BROKER_RUNNING)
        return;
    log_info("SIGHUP: reloading %s", b->reload.config_path);
    rc = reload_start(&b->reload, NULL, NULL);
    if (rc == SY_EBUSY)
        log_warn("SIGHUP: a reload is under way already; this one is ignored");
    else if (rc != 0)
        log_err("SIGHUP: cannot reload: %s", sy_strerror(rc));
}

/* ---- run ---------------------------------------------------------------------------------- */

static void broker_free(struct broker *b)
{
    /*
     * Order matters: httpd_destroy() runs the close callback of every request still waiting,
     * which cancels its dispatcher callback; only then may the dispatcher go (it SIGKILLs any
     * environment left), then the API they both borrowed, then the loop and the config.
     */
    httpd_destroy(b->srv);
    mappings_destroy(b->ms);
    asyncq_close(b->aq);
    /* A reload still under way must not touch the mappings, gone by now. */
    b->reload.stopping = 1;
    deploy_close(b->dep); /* applies what its thread finished: the dispatcher is still here */
    dispatcher_destroy(b->dsp);
    api_destroy(b->api);
    remove_state(b);
    if (b->sigterm_ev != NULL)
        event_free(b->sigterm_ev);
    if (b->sigint_ev != NULL)
        event_free(b->sigint_ev);
    if (b->sighup_ev != NULL)
        event_free(b->sighup_ev);
    if (b->linger_ev != NULL)
        event_free(b->linger_ev);
    if (b->base != NULL)
        event_base_free(b->base);
    cfg_destroy(b->cfg);
    for (size_t i = 0; i < b->n_old_cfgs; i++)
        cfg_destroy(b->old_cfgs[i]);
    free(b->old_cfgs);
    b->magic = 0;
}

int broker_run(const char *config_path)
{
    struct broker b = {.magic = BROKER_MAGIC, .state = BROKER_RUNNING};
    struct cfg_errors errs = {0};
    struct sy_error err = {{0}};
    const char *runtimes_dir;
    const struct cfg_broker *bc;
    int rc = 1;

    b.cfg = cfg_load(config_path, mapping_cfg_schema(), &errs);
    if (b.cfg == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        fprintf(stderr, "switchyard: %s: %zu configuration error(s); not starting\n", config_path,
                errs.n);
        cfg_errors_clear(&errs);
        return 1;
    }
    bc = &b.cfg->broker;
    if (bc->log_level != NULL && log_set_level(bc->log_level) != 0)
        log_warn("unknown log_level '%s'; keeping info", bc->log_level);
    log_info("switchyard %s starting: config %s, %zu function(s), pid %ld", SY_VERSION, b.cfg->path,
             b.cfg->n_functions, (long)getpid());

    /* Double-check what the config already enforces: no open listener without a token. */
    if ((bc->auth_token == NULL || bc->auth_token[0] == '\0') &&
        !broker_host_is_loopback(bc->listen_host)) {
        log_err("refusing to listen on %s without broker.auth_token: set a token or bind a "
                "loopback address",
                bc->listen);
        goto out;
    }
    if (mkdir_p(bc->data_dir, 0700) != 0) {
        log_err("cannot create data_dir %s: %s", bc->data_dir, strerror(errno));
        goto out;
    }
    {
        char store[4200];

        /* The file's zips and layers, unpacked and merged before anything runs from them. */
        snprintf(store, sizeof(store), "%s/packages", bc->data_dir);
        if (deploy_prepare_file(b.cfg, store, &err) != 0) {
            fprintf(stderr, "%s\nswitchyard: %s: a function's code or layers cannot be used; "
                            "not starting\n",
                    err.msg, config_path);
            goto out;
        }
    }
    /* A client that goes away mid-reply must not kill the broker. */
    signal(SIGPIPE, SIG_IGN);

    b.base = event_base_new();
    /*
     * Two priorities: 0 for the async store's completions (the 202s of committed events,
     * asyncq.c), 1 (the default) for everything else, so that an acknowledgement is not held
     * up behind function traffic that arrived in the same turn.
     */
    if (b.base == NULL || event_base_priority_init(b.base, 2) != 0) {
        log_err("cannot create the event loop");
        goto out;
    }
    runtimes_dir = getenv("SWITCHYARD_RUNTIMES_DIR");
    if (runtimes_dir == NULL || runtimes_dir[0] == '\0')
        runtimes_dir = SY_RUNTIMES_DIR;
    b.dsp = dispatcher_create(b.base, b.cfg, runtimes_dir, &err);
    if (b.dsp == NULL) {
        log_err("cannot set up the functions: %s", err.msg);
        goto out;
    }
    /* The API's functions join the file's before the async queue recovers their events. */
    b.dep = deploy_open(b.base, b.cfg, b.dsp, &err);
    if (b.dep == NULL) {
        log_err("cannot open the deployment state: %s", err.msg);
        goto out;
    }
    b.aq = asyncq_open(b.base, b.cfg, b.dsp, &err);
    if (b.aq == NULL) {
        log_err("cannot open the async queue: %s", err.msg);
        goto out;
    }
    b.api = api_create(b.cfg, b.dsp, &err);
    if (b.api == NULL) {
        log_err("cannot set up the control API: %s", err.msg);
        goto out;
    }
    api_set_asyncq(b.api, b.aq);
    api_set_deploy(b.api, b.dep);
    b.ms = mappings_create(b.base, b.cfg, b.dsp, &err);
    if (b.ms == NULL) {
        log_err("cannot set up the event source mappings: %s", err.msg);
        goto out;
    }
    api_set_mappings(b.api, b.ms);
    b.reload = (struct reload_ctx){.config_path = b.cfg->path, .cfg = b.cfg, .dsp = b.dsp,
                                   .dep = b.dep, .ms = b.ms, .api = b.api,
                                   .adopt = reload_adopt};
    b.reload.adopt_arg = &b;
    api_set_reload(b.api, &b.reload);
    b.srv = httpd_create(b.base, bc->listen_host, bc->listen_port, API_MAX_BODY, api_handle, b.api,
                         &err);
    if (b.srv == NULL) {
        log_err("control API: %s", err.msg);
        goto out;
    }
    b.sigterm_ev = evsignal_new(b.base, SIGTERM, signal_cb, &b);
    b.sigint_ev = evsignal_new(b.base, SIGINT, signal_cb, &b);
    b.sighup_ev = evsignal_new(b.base, SIGHUP, sighup_cb, &b);
    b.linger_ev = evtimer_new(b.base, linger_cb, &b);
    if (b.sigterm_ev == NULL || b.sigint_ev == NULL || b.sighup_ev == NULL || b.linger_ev == NULL ||
        event_add(b.sigterm_ev, NULL) != 0 || event_add(b.sigint_ev, NULL) != 0 ||
        event_add(b.sighup_ev, NULL) != 0) {
        log_err("cannot set up signal handling");
        goto out;
    }
    if (dispatcher_start(b.dsp, &err) != 0) {
        log_err("cannot start provisioned environments: %s", err.msg);
        goto out;
    }
    broker_endpoint(bc->listen_host, httpd_port(b.srv), 1, b.endpoint, sizeof(b.endpoint));
    check_state(&b);
    if (write_state(&b, &err) != 0) {
        log_err("%s", err.msg);
        goto out;
    }
    {
        char announced[300];

        /*
         * The line tests and scripts wait for: keep `ready: control API on URL` intact. It is
         * an info line written whatever log_level says, so that a quiet broker still
         * announces where it listens.
         */
        broker_endpoint(bc->listen_host, httpd_port(b.srv), 0, announced, sizeof(announced));
        log_write(LOG_LVL_INFO, "ready: control API on %s (%zu function(s)%s)", announced,
                  dispatcher_function_count(b.dsp),
                  bc->auth_token != NULL && bc->auth_token[0] ? ", token required" : "");
    }

    asyncq_start(b.aq);
    if (mappings_start(b.ms, &err) != 0) {
        log_err("cannot start the event source mappings: %s", err.msg);
        goto out;
    }
    /*
     * One loop turn at a time: after each, the async queue hands what the turn queued for its
     * store over at once (one transaction and one wake-up of the store thread per turn).
     */
    for (;;) {
        int lrc = event_base_loop(b.base, EVLOOP_ONCE);

        if (lrc < 0) {
            log_err("event loop failed");
            goto out;
        }
        asyncq_flush(b.aq);
        if (lrc == 1 || event_base_got_break(b.base) || event_base_got_exit(b.base))
            break;
    }
    if (b.forced) {
        log_warn("stopped before the drain finished");
        rc = 1;
    } else if (b.state == BROKER_STOPPING) {
        log_info("stopped");
        rc = 0;
    } else {
        log_err("event loop ended unexpectedly");
    }
out:
    broker_free(&b);
    return rc;
}
