/*
 * dispatcher/dispatcher_int.h - struct bodies shared inside dispatcher/ (never included from
 * other folders).
 *
 * Ownership in one picture:
 *   dispatcher ─owns→ units (all[]) ─owns→ envs (list) ─owns→ rtapi, pipes, timers
 *                     │             └refs→ fn_rev (current config) ←refs─ each env
 *                     └ heads[]: the live $LATEST units (borrowed from all[]); a head owns
 *                       its funclog, its aliases and the list of its version units
 *   invocation: owned by the dispatcher from dispatcher_invoke() until its done callback has
 *   run (or it was cancelled and its environment let go of it); an env borrows its current one.
 */
#ifndef SY_DISPATCHER_INT_H
#define SY_DISPATCHER_INT_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "config/config.h"
#include "core/buf.h"
#include "dispatcher.h"

struct event;
struct rtapi;
struct env;

#define FUNCTION_MAGIC 0x46554e43u /* "FUNC" */
#define ENV_MAGIC 0x454e5621u      /* "ENV!" */
#define INV_MAGIC 0x494e5621u      /* "INV!" */

/*
 * Per-function log file: <data_dir>/logs/<function>.log (see funclog.c). Lines are buffered in
 * memory on the loop thread and written by one log-writer thread shared by all functions.
 * Unless said otherwise, these run on the loop thread only, never block and never call back.
 */
struct funclog_writer;
struct funclog_file;

struct funclog {
    struct funclog_writer *w; /* one reference, dropped by funclog_close() */
    struct funclog_file *f;   /* shared with the writer thread until funclog_close() */
};

struct funclog_stats {
    uint64_t lines_dropped; /* over the cap (or out of memory) since funclog_open() */
    uint64_t write_errors;  /* failed open/write attempts (one per retry, not per line) */
    uint64_t bytes_written;
};

/* Start the writer thread. Returns new: the caller's reference (funclog_writer_unref()), or
 * NULL with ERR filled. */
struct funclog_writer *funclog_writer_start(struct sy_error *err);
/* Drop one reference; NULL is a no-op. The last one stops the thread once every line of every
 * closed log is written, waiting at most 2 s (a hung disk): then it logs what may be lost and
 * lets the thread go. Blocks (bounded): call it at shutdown, not per invocation. */
void funclog_writer_unref(struct funclog_writer *w);
/* Log to DIR/NAME.log through W (borrowed; FL takes its own reference). The writer opens the
 * file (O_APPEND|O_CLOEXEC) on its next pass; an open failure is logged and retried there, so
 * it is not reported here. FL must be zeroed or closed. Returns 0, or SY_ENOMEM with ERR
 * filled (FL left untouched). */
int funclog_open(struct funclog *fl, struct funclog_writer *w, const char *dir, const char *name,
                 struct sy_error *err);
/* One user line, stored as `<ISO time>\t<request id or ->\t<line>`. LINE is borrowed (copied).
 * A no-op on a zeroed or closed FL. Over the per-function cap the line is dropped and counted. */
void funclog_line(struct funclog *fl, const char *request_id, const char *line, size_t len);
/* One platform line (START, END, REPORT, INIT_START...), stored as is; as funclog_line(). */
void funclog_platform(struct funclog *fl, const char *line);
/* Counters of FL (zeros for a zeroed or closed FL). Takes the writer's lock briefly. */
void funclog_stats(const struct funclog *fl, struct funclog_stats *out);
/* Hand the file to the writer, which writes every line logged before and then closes it, and
 * drop FL's writer reference (which may stop the writer, see funclog_writer_unref()). FL is
 * zeroed afterwards; a zeroed FL is a no-op. */
void funclog_close(struct funclog *fl);
/* Tests only: hold every writer thread before its next pass (1) or let it go (0), to make it
 * fall behind deterministically; and count the writer threads still running. */
void funclog_test_pause(int paused);
int funclog_test_threads(void);

enum inv_state {
    INV_ASSIGNED, /* bound to an environment that is not ready yet (cold start) */
    INV_RUNNING,  /* event delivered to the runtime */
    INV_DONE,     /* outcome known; waiting to be completed */
};

struct invocation {
    unsigned magic;
    struct dispatcher *dsp;
    struct function *fn;
    enum inv_state state;
    char request_id[40];
    char *payload;
    size_t payload_len;
    char *client_context;
    char *trace_id;
    char *invoked_arn;
    int want_log_tail;
    invoke_done_fn *done; /* NULL once cancelled */
    void *done_arg;
    struct env *env;      /* borrowed while ASSIGNED/RUNNING */
    uint64_t start_us;    /* event delivered */
    int counted;          /* holds a concurrency slot */
    int reserved_slot;    /* the slot is the function's reserved one (else unreserved pool) */
    struct buf log;       /* this invocation's log lines (tail kept bounded) */
    /* outcome */
    struct invoke_result res;
    char *res_body;       /* owned */
    char *res_ctype;      /* owned */
    char *res_etype;      /* owned */
    struct invocation *next_done; /* deferred-completion queue */
};

enum env_state {
    ENV_STARTING, /* spawned; INIT running (no `next` yet) */
    ENV_FREE,     /* initialised, no invocation */
    ENV_BUSY,     /* an invocation is assigned or running */
    ENV_DYING,    /* killed or shutting down; never assigned again */
};

struct env {
    unsigned magic;
    struct function *fn;
    struct fn_rev *rev;             /* the configuration it was started with (one reference) */
    const struct cfg_function *cfg; /* &rev->cfg */
    struct env *prev, *next;
    enum env_state state;
    pid_t pid;
    int provisioned;
    int init_done;         /* the runtime has called `next` once */
    int init_reported;     /* Init Duration already put on a REPORT line */
    uint64_t spawned_us;
    double init_ms;
    struct rtapi *api;
    struct invocation *inv;
    char id[33];            /* 32 hex, the log stream suffix */
    char stream[96];        /* AWS_LAMBDA_LOG_STREAM_NAME */
    int out_fd, err_fd;
    struct event *out_ev, *err_ev;
    struct buf out_line, err_line; /* partial lines */
    struct event *timer;    /* init timeout, invoke timeout, idle reap, kill grace */
    int timer_kind;
    int status_fd;          /* /proc/PID/status, for VmHWM/VmRSS */
    char *cgroup;           /* our memory cgroup directory, or NULL */
    int peak_fd;            /* its peak-usage file, kept open (pread per REPORT), or -1 */
    char *init_error;       /* body posted to /runtime/init/error (owned) */
    char *init_error_type;
    int exit_reason;        /* why we killed it (ENV_KILL_*), for messages */
};

/*
 * One configuration of a function unit, shared (counted) by the unit while it is current and by
 * every environment started with it, so an environment keeps the code, handler and limits it
 * was started with after an update replaced them.
 */
struct fn_rev {
    unsigned refs;
    unsigned gen;            /* 1, 2, ... per unit */
    struct cfg_function cfg; /* owned copy (cfg_function_clear() on the last unref) */
};

/* An alias of a function (kept by its $LATEST unit). */
struct fn_alias {
    char *name;
    char *version;       /* the version it points at */
    char *extra_version; /* RoutingConfig.AdditionalVersionWeights: the second version, or NULL */
    double extra_weight; /* its share, 0..1 */
};

/*
 * A function unit: `$LATEST` of a function, or one of its published versions. Each unit has
 * its own environments; a name's units share its reserved concurrency, its log and its
 * aliases (kept by the `$LATEST` unit, the head). Units are never freed before
 * dispatcher_destroy(): a deleted one stays as a tombstone (DELETED set, no environments,
 * no configuration) because mappings and the async queue may still hold it.
 */
struct function {
    unsigned magic;
    struct dispatcher *dsp;
    struct function *head;   /* the name's $LATEST unit (itself for $LATEST) */
    char *version;           /* "$LATEST" or the version number */
    struct fn_rev *rev;      /* the current configuration (one reference); NULL when deleted */
    const struct cfg_function *cfg; /* &rev->cfg (kept for the readers of the current config) */
    char *runtime_detail;    /* owned: how the local interpreter differs from the runtime asked
                                for (runtimes_check() returned 1), or NULL when it matches */
    char *arn;               /* unqualified for $LATEST, NAME:VERSION for a version */
    char *log_group;
    struct env *envs;
    unsigned n_envs;
    unsigned n_busy;
    unsigned in_flight;      /* this unit's invocations holding a slot */
    unsigned name_in_flight; /* head only: the whole name's (reserved concurrency) */
    unsigned n_provisioned_live; /* provisioned environments of the current configuration */
    int provisioned;         /* provisioned environments wanted for this unit */
    int reserved;            /* head only: reserved concurrency, -1 = unset */
    int deleted;
    struct funclog log;      /* head only (versions log through their head) */
    struct event *respawn;   /* re-creates provisioned environments after a death */
    struct function_stats stats; /* counted in inv_complete() (dispatcher.c) */
    /* head only */
    struct function **versions; /* published versions, oldest first */
    size_t n_versions, cap_versions;
    struct fn_alias *aliases;
    size_t n_aliases, cap_aliases;
};

/*
 * runtimes.c: what one local interpreter is, learned once by runtimes_probe(). Either a version
 * (major >= 0), or WHY it is unknown; INSTALLED tells "not there at all" from "there, but it
 * would not say".
 */
struct runtimes_local {
    int installed;
    int major, minor;  /* -1 when unknown */
    char version[32];  /* as shown in messages: "3.11", "20.20.2" */
    char why[192];     /* when major < 0: "not found on PATH", "... exited with status 1" */
};

struct dispatcher {
    unsigned magic;
    struct event_base *base;
    const struct cfg *cfg;
    char *runtimes_dir;
    char *python3;           /* resolved interpreter paths */
    char *node;
    char *bash;
    struct runtimes_local local_python3; /* what dsp->python3 is (runtimes_probe()) */
    struct runtimes_local local_node;    /* what dsp->node is */
    char *logs_dir;
    struct function **all;   /* every unit ever made (tombstones too), for env walks */
    size_t n_all, cap_all;
    struct function **heads; /* the live functions' $LATEST units, in creation order */
    size_t n_heads, cap_heads;
    unsigned reserved_sum;   /* reserved concurrency of the live functions */
    struct funclog_writer *flw; /* our reference: logs of functions added later open on it */
    int started;               /* dispatcher_start() ran: provision new units at once */
    uint64_t rng;              /* the alias weights' coin (function_route()) */
    unsigned unreserved_cap;   /* max_concurrency - sum of reserved */
    unsigned unreserved_in_flight;
    struct invocation *done_q; /* deferred completions (throttles) */
    struct event *done_ev;
    struct event *sigchld_ev;
    char *cgroup_root;         /* writable memory cgroup parent, or NULL */
    int cgroup_v2;
    int draining;
    void (*drain_done)(void *arg);
    void *drain_arg;
    struct event *drain_ev;
    struct dispatcher_stats stats;
    struct invocation **live;  /* every invocation not yet completed (dispatcher_cancel) */
    size_t n_live, cap_live;
    struct event *watchdog_ev; /* RSS watchdog when no memory cgroup is available */
    void (*slot_cb)(void *arg); /* after every completion (dispatcher_set_slot_cb()) */
    void *slot_arg;
};

/* env.c */
struct env *env_spawn(struct function *fn, int provisioned, struct sy_error *err);
/* Deliver INV to ENV now if its runtime waits on `next` (else on the next `next`). */
void env_assign(struct env *env, struct invocation *inv);
/* SIGTERM the process group, SIGKILL after the grace period. */
void env_shutdown(struct env *env);
/* The child was reaped with wait STATUS: finish any invocation and free ENV. */
void env_reaped(struct env *env, int status);
/* SIGKILL now and free (dispatcher_destroy). */
void env_destroy(struct env *env);
int cgroup_detect(struct dispatcher *dsp);
/* Kill ENV when its resident size is over its memory limit (no-cgroup fallback). */
void env_watchdog(struct env *env);
/* True when the runtime is waiting on `next`. */
int env_ready(const struct env *env);
/* Start the idle timer (max_idle_s) of a FREE on-demand environment. */
void env_idle_arm(struct env *env);

/*
 * runtimes.c: run DSP's python3 and node once each, both at once and for at most 5 s together,
 * and fill dsp->local_python3 and dsp->local_node. Blocking (bounded): dispatcher_create()
 * only, before the loop starts. Never fails: an interpreter that cannot be run or gives no
 * version is recorded with the reason. Reaps its own children (by pid).
 */
void runtimes_probe(struct dispatcher *dsp);
/* Tests only: the probe's bound in ms (<= 0: back to the 5 s default). */
void runtimes_test_probe_ms(int ms);

/* dispatcher.c: called by env.c */
void fn_rev_unref(struct fn_rev *rev);
void dispatcher_inv_finish(struct invocation *inv);
void dispatcher_env_free_again(struct env *env);
void dispatcher_env_gone(struct env *env);

#endif
