/*
 * destinations/dest_int.h - helpers shared by the destination kinds (dest_*.c). Internal to
 * dispatcher/; everything here runs on the loop thread unless said otherwise.
 *
 *   - small utilities: bounded string copy, NULL-tolerant event_free, ms -> timeval, the
 *     monotonic clock in ms, "is this host an IP literal";
 *   - the reconnect backoff step (the delay to use now, doubled up to a cap for the next time);
 *   - the "state" strings (dest_ops.state) that several kinds format alike;
 *   - DONE delivery: counting a result in the dest's counters and calling DONE;
 *   - a deferred-DONE queue (dest_util_doneq) for kinds that keep their sends on lists:
 *     completed sends wait there until the kind's completion event runs DONE on a clean stack;
 *     and per-send outcomes (dest_util_outcome) for kinds whose sends each own an event;
 *   - (host-name lookups off the loop are core/resolve.h, shared with the sources).
 */
#ifndef SY_DEST_INT_H
#define SY_DEST_INT_H

#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/time.h>

#include <event2/event.h>

#include "core/evhelp.h"
#include "core/resolve.h"
#include "dest.h"

/* The struct of type TYPE whose member MEMBER is at PTR. */
#define DEST_UTIL_CONTAINER(ptr, type, member)                                                     \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* ---- small utilities ------------------------------------------------------------------- */

/* Copy SRC into DST (SIZE bytes), truncating: error texts are bounded on purpose. */
void dest_util_str_copy(char *dst, size_t size, const char *src);

/* The monotonic clock in milliseconds. */
int64_t dest_util_now_ms(void);

/* HOST (without brackets) is an IPv4 or IPv6 literal: no lookup needed. */
bool dest_util_numeric_host(const char *host);

/* ---- reconnect backoff ------------------------------------------------------------------ */

/* The delay to wait now (*BACKOFF_MS); *BACKOFF_MS doubles for the next time, up to MAX_MS. */
int dest_util_backoff_next(int *backoff_ms, int max_ms);

/* ---- state strings ---------------------------------------------------------------------- */

/* "reconnecting in <LEFT_MS, at least 0> ms: <REASON>" into BUF; returns BUF. */
const char *dest_util_state_retry(char *buf, size_t size, int64_t left_ms, const char *reason);

/* "<PREFIX>: <REASON>" into BUF ("failing: ...", "reconnecting: ..."); returns BUF. */
const char *dest_util_state_reason(char *buf, size_t size, const char *prefix, const char *reason);

/* ---- DONE delivery ---------------------------------------------------------------------- */

/*
 * Count the result in D (sent / failures), then DONE(ARG, RC, RC == 0 ? NULL : ERR). Call it
 * as the very last thing: DONE may destroy D. ERR must not live in memory freed by DONE.
 */
void dest_util_deliver(struct dest *d, dest_done_fn *done, void *arg, int rc, const char *err);

/*
 * The deferred-DONE queue. A kind's send embeds a struct dest_util_send (its DONE and, once
 * known, its result); dest_util_doneq_push() gives it its result and queues it, and the kind's
 * completion event (q->ev, owned by the queue once set) calls dest_util_doneq_run(). Each DONE
 * runs after the send was freed (q->free_send), so DONE may send again or destroy the
 * destination: the run stops, and the outermost frame tells its caller to free.
 */
struct dest_util_send {
    TAILQ_ENTRY(dest_util_send) link; /* on the queue's `completed` */
    dest_done_fn *done;
    void *arg;
    int rc;
    char err[512];
};

TAILQ_HEAD(dest_util_sendq, dest_util_send);

struct dest_util_doneq {
    struct dest *d;                   /* the counters */
    struct dest_util_sendq completed; /* result known, DONE not called yet */
    size_t n_completed;
    struct event *ev; /* the kind's completion event (activated by push), or NULL; owned */
    int depth;        /* dest_util_doneq_run()/close() frames on the stack */
    bool closed;      /* dest_util_doneq_close() has run */
    void (*free_send)(struct dest_util_send *us);               /* frees the send holding US */
    void (*on_finish)(struct dest *d, int rc, const char *err); /* before DONE; optional */
};

/* Set Q up (no allocation). */
void dest_util_doneq_init(struct dest_util_doneq *q, struct dest *d,
                          void (*free_send)(struct dest_util_send *us));

/* Free Q's event (the queue must be empty). Safe on a zeroed or initialized Q. */
void dest_util_doneq_fini(struct dest_util_doneq *q);

/* Give US (on no queue) its result and queue it; activates q->ev. Safe in library callbacks. */
void dest_util_doneq_push(struct dest_util_doneq *q, struct dest_util_send *us, int rc,
                          const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void dest_util_doneq_vpush(struct dest_util_doneq *q, struct dest_util_send *us, int rc,
                           const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

/*
 * DONE for the sends completed so far (not for those DONE adds, so a caller retrying from DONE
 * cannot spin us). Returns true when the destination was closed meanwhile and this was the
 * outermost frame: the caller frees it now.
 */
bool dest_util_doneq_run(struct dest_util_doneq *q);

/*
 * For destroy: mark Q closed, then DONE for every completed send. Returns true when the caller
 * frees the destination now (false: inside dest_util_doneq_run(), which will say so).
 */
bool dest_util_doneq_close(struct dest_util_doneq *q);

/*
 * The other way to defer DONE, for kinds whose sends each own a timer event (kafka, mqtt): the
 * send embeds a struct dest_util_outcome; library callbacks record the outcome with
 * dest_util_outcome_settle(), which activates the event by hand, and the event's callback
 * (also the send timeout) reports it with dest_util_outcome_report(), DONE being the last
 * thing it does.
 */
#define DEST_UTIL_ERRLEN 256

struct dest_util_outcome {
    struct event *ev; /* the per-send timer; activated by hand to report an outcome; owned */
    dest_done_fn *done;
    void *arg;
    bool has_outcome; /* rc/errmsg are set, ev is active to report them */
    bool reported;    /* DONE was called */
    int rc;
    char errmsg[DEST_UTIL_ERRLEN];
};

/* Record O's outcome (the first one wins; none once reported) and activate o->ev. */
void dest_util_outcome_settle(struct dest_util_outcome *o, int rc, const char *errmsg);

/* Record RC and the formatted text as O's outcome unless it has one (the timeout). */
void dest_util_outcome_default(struct dest_util_outcome *o, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Report O's outcome: mark it reported, RELEASE(OBJ) (which may free O), then count it in D
 * and call DONE. DONE may destroy D.
 */
void dest_util_outcome_report(struct dest *d, struct dest_util_outcome *o,
                              void (*release)(void *obj), void *obj);

/*
 * For destroy: RELEASE(OBJ), then, unless O was reported already, DONE with its success if one
 * was recorded, else SY_ECANCELED "destination closed".
 */
void dest_util_outcome_close(struct dest *d, struct dest_util_outcome *o,
                             void (*release)(void *obj), void *obj);

/* ---- test hooks (tests only; never called by the broker) -------------------------------- */

/*
 * dest_file.c: while HOLD, every file destination's worker stops before its next write, as
 * on a hung disk (false releases them). dest_file_test_held(): workers stopped there now;
 * dest_file_test_threads(): workers that have not returned yet (joined or orphaned). Any
 * thread.
 */
void dest_file_test_hold(bool hold);
int dest_file_test_held(void);
int dest_file_test_threads(void);

/*
 * dest_kafka.c: raise a fatal error in D's producer (rd_kafka_test_fatal_error()), as an
 * idempotent producer does on an unrecoverable sequence error. Returns 0, or SY_ESTATE when D
 * has no producer right now or one is already failed. Loop only.
 */
int dest_kafka_test_fatal(struct dest *d, const char *reason);

#endif
