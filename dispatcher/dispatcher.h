/*
 * dispatcher/dispatcher.h - functions, execution environments and synchronous invocation
 * (the API of dispatcher/ for broker/ and, later, mappings/ and the async queue).
 *
 * A dispatcher owns the function registry built from a `struct cfg`, a pool of execution
 * environments per function (child processes speaking the Lambda Runtime API to a loopback
 * listener of their own), and the concurrency accounting (broker-wide max_concurrency,
 * per-function reserved concurrency).
 *
 * Everything here is loop-thread only. Callbacks never run synchronously from the call that
 * registers them (libuv's rule): if a function taking a callback returns an error, the callback
 * never runs; if it returns 0, the callback runs exactly once, later.
 */
#ifndef SY_DISPATCHER_H
#define SY_DISPATCHER_H

#include <stddef.h>
#include <stdint.h>

#include "core/errors.h"

struct event_base;
struct cfg;
struct cfg_function;
struct dispatcher;
struct function;

/* Payload limits (Lambda's, in bytes). */
#define SY_SYNC_PAYLOAD_MAX 6291456u     /* 6 MiB: sync request and response */
#define SY_RESPONSE_PAYLOAD_MAX 6291556u /* 6 MiB + 100: what the Runtime API accepts */
#define SY_ASYNC_PAYLOAD_MAX 1048576u    /* 1 MiB: Event invocations */

/* How an invocation ended. */
enum invoke_status {
    INVOKE_OK,             /* the function returned a result (body = result bytes) */
    INVOKE_FUNCTION_ERROR, /* handler raised, timed out, crashed, init failed, response too
                              large: body = Lambda error JSON, X-Amz-Function-Error: Unhandled */
    INVOKE_THROTTLED,      /* no concurrency available: 429, throttle_reason set */
    INVOKE_SERVICE_ERROR,  /* the broker could not run it at all (spawn failed, shutting
                              down): 5xx, body = message */
};

/* The outcome handed to an invoke_done_fn. Borrowed: valid only during the callback. */
struct invoke_result {
    enum invoke_status status;
    const char *request_id; /* always set */
    const char *body;       /* response or error JSON; may be empty, never NULL */
    size_t body_len;
    const char *content_type;    /* of body; NULL = application/json */
    const char *error_type;      /* for INVOKE_FUNCTION_ERROR: errorType (e.g. Sandbox.Timedout) */
    const char *throttle_reason; /* for INVOKE_THROTTLED: Lambda's TooManyRequests Reason */
    const char *log_tail;        /* with want_log_tail: last 4 KB of this invocation's log */
    size_t log_tail_len;
    const char *executed_version; /* "$LATEST" or the version that ran */
};

typedef void invoke_done_fn(const struct invoke_result *res, void *arg);

/* One synchronous invocation request. Strings are borrowed for the call only (copied). */
struct invoke_req {
    const char *payload; /* the event bytes (already validated as JSON by the caller) */
    size_t payload_len;
    char *payload_give;         /* optional: PAYLOAD as a malloc'd block with room for a NUL at
                                   PAYLOAD_LEN (a core/buf.h buffer's data): on 0 the
                                   dispatcher takes it instead of copying it (PAYLOAD must equal
                                   it); on an error the caller still owns it */
    const char *request_id;     /* NULL: a new UUID is generated */
    const char *client_context; /* decoded X-Amz-Client-Context JSON, or NULL */
    const char *trace_id;       /* X-Amzn-Trace-Id, or NULL: one is generated */
    const char *invoked_arn;    /* the ARN as invoked, or NULL for the unqualified ARN */
    int want_log_tail;          /* collect the log tail (X-Amz-Log-Type: Tail) */
};

/* Counters for /healthz, status and tests. */
struct dispatcher_stats {
    uint64_t invocations; /* completed, any outcome */
    uint64_t errors;      /* INVOKE_FUNCTION_ERROR outcomes */
    uint64_t throttles;   /* INVOKE_THROTTLED outcomes */
    uint64_t cold_starts; /* environments spawned */
    uint64_t warm_starts; /* invocations served by an already-initialised environment */
    uint64_t timeouts;
    uint64_t crashes;
    unsigned in_flight;    /* invocations running now */
    unsigned environments; /* live environments */
};

/*
 * Per-function counters, for /metrics. INVOCATIONS counts completions with any
 * outcome (throttles and service errors included, as dispatcher_stats.invocations does), so the
 * functions' sums equal the broker's totals. The duration histogram covers only invocations
 * whose event reached a runtime (a throttle or a failed spawn has no duration): from the event's
 * delivery to the outcome, the REPORT line's `Duration`. Buckets are cumulative, Prometheus
 * style: duration_buckets[i] counts durations <= function_duration_buckets_ms[i]; durations
 * counts them all (the +Inf bucket and the histogram's _count).
 */
#define FUNCTION_DURATION_BUCKETS 16
extern const double function_duration_buckets_ms[FUNCTION_DURATION_BUCKETS];

struct function_stats {
    uint64_t invocations; /* completed, any outcome */
    uint64_t errors;      /* INVOKE_FUNCTION_ERROR outcomes */
    uint64_t throttles;   /* INVOKE_THROTTLED outcomes */
    uint64_t durations;   /* invocations timed (the histogram's count) */
    uint64_t duration_buckets[FUNCTION_DURATION_BUCKETS];
    double duration_sum_ms;
};

/*
 * Build the registry and pools from CFG (borrowed: must outlive the dispatcher). Creates
 * data_dir/logs. RUNTIMES_DIR is the directory holding python3/, node/, shell/ bootstraps.
 * No process is spawned yet. Returns new (dispatcher_destroy()) or NULL with ERR filled.
 */
struct dispatcher *dispatcher_create(struct event_base *base, const struct cfg *cfg,
                                     const char *runtimes_dir, struct sy_error *err);

/* Start provisioned environments. Returns 0 or a negative SY_E* (ERR filled). */
int dispatcher_start(struct dispatcher *dsp, struct sy_error *err);

/*
 * Functions and their units. A function is known by its `$LATEST` unit (the head); each
 * published version is a unit of its own, with its own environments and an immutable copy of
 * the configuration it was published from. A `struct function *` stays valid for the
 * dispatcher's life: a deleted unit is kept as a tombstone (function_deleted(), invocations
 * refused with SY_ENOENT, its last configuration still readable through function_cfg()).
 */

/* The live function NAME ($LATEST unit, borrowed), or NULL. */
struct function *dispatcher_function(struct dispatcher *dsp, const char *name);

/* Number of live functions and the I-th one ($LATEST units), in creation order (the file's
 * first). */
size_t dispatcher_function_count(const struct dispatcher *dsp);
struct function *dispatcher_function_at(struct dispatcher *dsp, size_t i);

/*
 * Add a function from FC (copied: the caller keeps FC). Its provisioned environments start
 * at once if the dispatcher has started. Returns the $LATEST unit, or NULL with ERR filled
 * (the name is taken, the reserved concurrency does not fit, out of memory).
 */
struct function *dispatcher_add(struct dispatcher *dsp, const struct cfg_function *fc,
                                struct sy_error *err);

/*
 * Replace the configuration of FN (a live $LATEST unit) with FC (copied). Invocations running
 * now finish on the environments of the old configuration, which stop as soon as they are
 * idle; new invocations get environments of the new one. Reserved concurrency is not taken
 * from FC (function_set_reserved()); provisioned_concurrency is. Returns 0 or SY_E* (ERR).
 */
int function_update(struct function *fn, const struct cfg_function *fc, struct sy_error *err);

/*
 * Replace the async policy (retries, event age, destinations) of unit FN (any unit: $LATEST or
 * a version) with a copy of AS. Its environments carry on (they do not see the policy); the
 * generation moves, so the async queue re-opens the destinations. 0 or SY_E* (ERR filled).
 */
struct cfg_async;
int function_set_async(struct function *fn, const struct cfg_async *as, struct sy_error *err);

/* Delete the function of HEAD with all its versions and aliases: new invocations are refused,
 * running ones finish, every environment then stops. */
void function_delete(struct function *head);

/* Delete version unit VER. SY_EBUSY when an alias points at it (nothing changed). */
int function_delete_version(struct function *ver);

/* Publish FC (copied; NULL: HEAD's current configuration) as version VERSION of HEAD's
 * function (a new unit, no provisioned environments). NULL with ERR filled when VERSION exists
 * or out of memory. */
struct function *function_publish(struct function *head, const char *version,
                                  const struct cfg_function *fc, struct sy_error *err);

/* The unit of FN's function at VERSION ("$LATEST", "" or NULL: the head), or NULL. */
struct function *function_version(struct function *fn, const char *version);
/* Published versions of FN's function, oldest first. */
size_t function_version_count(const struct function *fn);
struct function *function_version_at(struct function *fn, size_t i);
/* "$LATEST" or the version number of unit FN (borrowed). */
const char *function_version_name(const struct function *fn);
/* The $LATEST unit of FN's function. */
struct function *function_head(struct function *fn);
int function_deleted(const struct function *fn);
/* 1 for the first configuration of a unit, +1 at each function_update(). */
unsigned function_generation(const struct function *fn);

/* Provisioned environments wanted for unit FN (a version, or $LATEST from the file); started
 * or stopped to match at once. */
int function_set_provisioned(struct function *fn, int n);
/* How many are wanted and how many have finished INIT. */
void function_provisioned_counts(const struct function *fn, unsigned *wanted, unsigned *ready);
/* Reserved concurrency of FN's function, -1 when unset. */
int function_reserved(const struct function *fn);
/* Set it (-1: unset). SY_EINVAL with ERR filled (Lambda's wording) when the reserved total
 * would pass max_concurrency. */
int function_set_reserved(struct function *fn, int reserved, struct sy_error *err);

/*
 * Aliases, kept per function: NAME points at VERSION and, when EXTRA_VERSION is not NULL,
 * sends a share EXTRA_WEIGHT (0..1) of invocations to EXTRA_VERSION (Lambda's RoutingConfig).
 * Set creates or replaces (SY_ENOENT with ERR filled when a version does not exist).
 * Get borrows the strings (valid until the alias changes).
 */
int function_alias_set(struct function *fn, const char *name, const char *version,
                       const char *extra_version, double extra_weight, struct sy_error *err);
int function_alias_delete(struct function *fn, const char *name);
int function_alias_get(struct function *fn, const char *name, const char **version,
                       const char **extra_version, double *extra_weight);

/*
 * The unit an invocation of FN's function with QUALIFIER runs on: "$LATEST", "" or NULL the
 * head, a version number that version, an alias one of its versions (by weight, each call
 * drawing anew). NULL when the function is deleted or the qualifier names nothing.
 */
struct function *function_route(struct function *fn, const char *qualifier);

/* The current config of unit FN (borrowed: valid until the unit is updated). */
const struct cfg_function *function_cfg(const struct function *fn);
/* `arn:aws:lambda:REGION:ACCOUNT:function:NAME`, with `:VERSION` for a version (borrowed). */
const char *function_arn(const struct function *fn);
/* Live environments of FN and how many of them are busy. */
void function_env_counts(const struct function *fn, unsigned *total, unsigned *busy);
/* Copy FN's counters (see struct function_stats) into OUT: a function's units all count on
 * its $LATEST unit. */
void function_stats(const struct function *fn, struct function_stats *out);
/*
 * Why FN runs on a local interpreter of another version than its runtime asks for, e.g.
 * "runtime python3.12 requested; served by /usr/bin/python3 (Python 3.11)" (borrowed, valid
 * for FN's life; for GetFunction's StateReason), or NULL when it matches or asks for no
 * version. Set by dispatcher_create() from runtimes_check().
 */
const char *function_runtime_detail(const struct function *fn);

/*
 * Whether the runtime FC asks for (runtime_id, runtime_major/minor) is served here, against
 * the python3 and node versions dispatcher_create() learned (runtimes.c). Python must match
 * major and minor, Node.js the major. Returns:
 *    0  it matches, or FC asks for no version (plain names, shell, provided*);
 *    1  served by a local interpreter of another version (or one that gave no version), which
 *       broker.strict_runtimes: false allows; DETAIL says by what, for a warning and
 *       StateReason;
 *   -1  refused: strict_runtimes and a mismatch, a Python of another major version, or no
 *       interpreter at all; DETAIL says what is installed (a message for the user, without
 *       the function's name).
 * FC is borrowed for the call; DETAIL (DETAILSZ bytes; NULL/0 allowed) is filled, "" for 0.
 * Pure: no I/O, no log. Loop thread, or before the loop; never calls back.
 */
int runtimes_check(const struct dispatcher *dsp, const struct cfg_function *fc, char *detail,
                   size_t detailsz);

/*
 * Invoke FN synchronously. On 0, DONE runs exactly once later with the outcome (including
 * throttles and errors, which are outcomes, not return codes). Returns SY_ESTATE when the
 * dispatcher is draining (DONE not called), SY_ENOMEM on allocation failure.
 * The returned invocation id is not exposed; use dispatcher_cancel() with ARG to give up
 * waiting (the caller went away): DONE is then never called, but the function keeps running
 * to completion so the environment stays consistent.
 */
int dispatcher_invoke(struct dispatcher *dsp, struct function *fn, const struct invoke_req *req,
                      invoke_done_fn *done, void *arg);

/* Forget the DONE callback of every pending invocation registered with ARG. */
void dispatcher_cancel(struct dispatcher *dsp, void *arg);

/*
 * Graceful stop: refuse new invocations, let in-flight ones finish (each bounded by its
 * timeout), then shut every environment down (SIGTERM, grace period, SIGKILL). DONE(ARG) runs
 * once when all environments have exited.
 */
void dispatcher_drain(struct dispatcher *dsp, void (*done)(void *arg), void *arg);

void dispatcher_stats(const struct dispatcher *dsp, struct dispatcher_stats *out);

/*
 * How many invocations of FN could start now without a throttle (its reserved slots left, or
 * the unreserved pool's); 0 while draining.
 */
unsigned dispatcher_capacity(const struct dispatcher *dsp, const struct function *fn);

/* CB(ARG) runs on the loop after every completed invocation (a slot may be free). One. */
void dispatcher_set_slot_cb(struct dispatcher *dsp, void (*cb)(void *arg), void *arg);

/* 1 once dispatcher_drain() was called. */
int dispatcher_draining(const struct dispatcher *dsp);

/* Kill any remaining child (SIGKILL) and free everything. NULL is a no-op. */
void dispatcher_destroy(struct dispatcher *dsp);

#endif
