/*
 * dispatcher/asyncq.h - asynchronous invocation: the durable event queue (embedded SQLite in
 * WAL mode under data_dir), the retry schedule, destinations and dead letters.
 *
 * Life of an event (lambda-semantics.md section 4):
 *   asyncq_put()  -> stored (group commit on the store thread) -> PUT callback (the API's 202)
 *   due           -> dispatcher_invoke() as soon as the function has a slot
 *   success       -> on_success record delivered (if configured) -> removed
 *   function error-> retried after retry_delays_s[attempt] (+-10% jitter) until
 *                    maximum_retry_attempts, then RetriesExhausted
 *   too old       -> EventAgeExceeded when found due past maximum_event_age_s
 *   throttle / environment start failure -> back to the queue with backoff 1 s doubling to
 *                    5 min, no attempt consumed
 *   failure       -> on_failure record + dead_letter message + the local dead-letter table
 *                    (`broker.dead_letters: keep`), then removed
 * An event leaves the store only after its outcome and every delivery are recorded: delivery is
 * at-least-once. A destination that is down keeps the event (state "delivering") and is retried
 * with backoff; the failure is counted.
 *
 * Threads: everything here runs on the loop thread except the SQLite work, which runs on one
 * store thread owned by the queue (jobs in, completions back through an eventfd). The loop never
 * blocks on the disk, except in asyncq_open() (recovery, before the loop runs) and
 * asyncq_close() (the final flush, after it stopped).
 */
#ifndef SY_ASYNCQ_H
#define SY_ASYNCQ_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/errors.h"

struct event_base;
struct cfg;
struct dispatcher;
struct function;
struct asyncq;

/* Counters for /healthz and /metrics. */
struct asyncq_stats {
    uint64_t enqueued;       /* events stored (202s) */
    uint64_t succeeded;      /* events whose function succeeded */
    uint64_t failed;         /* events that ran out of attempts or age */
    uint64_t retries;        /* function errors that were scheduled for another attempt */
    uint64_t requeued;       /* throttles / start failures sent back without an attempt */
    uint64_t dest_sent;      /* destination deliveries acknowledged */
    uint64_t dest_failures;  /* destination deliveries that failed (and will be retried) */
    uint64_t store_errors;   /* store transactions that failed */
    unsigned queued;         /* events held (waiting, running or delivering) */
    unsigned in_flight;      /* async invocations running now */
    unsigned dead_letters;   /* rows in the local dead-letter table */
    unsigned parked;         /* stored events beyond broker.async_max_held, not yet in memory */
};

/*
 * Open (or create) <data_dir>/queue.db, recover every stored event, open the destinations of
 * every function and start the store thread. Blocking: call before the loop runs. CFG and DSP
 * are borrowed and must outlive the queue. Returns new (asyncq_close()) or NULL with ERR filled.
 */
struct asyncq *asyncq_open(struct event_base *base, const struct cfg *cfg,
                           struct dispatcher *dsp, struct sy_error *err);

/* Start dispatching (recovered events first). Call once the loop is about to run. */
void asyncq_start(struct asyncq *q);

/*
 * Hand every store job queued during this loop turn to the store thread, at once: one
 * transaction per turn (group commit) and one wake-up. The broker calls it after every turn of
 * its loop (event_base_loop(EVLOOP_ONCE)); a loop that does not is still served, one turn
 * later, by a zero-delay timer. Never blocks. NULL is a no-op.
 */
void asyncq_flush(struct asyncq *q);

/* The outcome of asyncq_put(): RC 0 once the event is durably stored, else SY_E* + message. */
typedef void asyncq_put_fn(void *arg, int rc, const char *errmsg);

/*
 * Queue an Event invocation of FN. PAYLOAD (LEN bytes of JSON, at most SY_ASYNC_PAYLOAD_MAX)
 * and REQUEST_ID (NULL: generated) are copied; REQUEST_ID_OUT (>= 37 bytes, may be NULL)
 * receives the id. DONE runs exactly once, later, on the loop. Returns 0, or SY_ESTATE while
 * draining / SY_ENOMEM (DONE is then never called).
 */
int asyncq_put(struct asyncq *q, struct function *fn, const char *payload, size_t len,
               const char *request_id, const char *trace_id, char *request_id_out,
               asyncq_put_fn *done, void *arg);

/* Forget every callback registered with ARG (the caller went away); the work itself goes on. */
void asyncq_cancel(struct asyncq *q, void *arg);

/*
 * Graceful stop: start no new invocation or delivery; DONE(ARG) runs once every async
 * invocation in flight has finished and its outcome has been handed to the store. Events still
 * waiting stay in the store for the next start.
 */
void asyncq_drain(struct asyncq *q, void (*done)(void *arg), void *arg);

void asyncq_stats(const struct asyncq *q, struct asyncq_stats *out);

/*
 * Flush every pending store job, stop the store thread, close destinations (their pending sends
 * are cancelled; the events stay stored and are delivered after a restart) and free. Blocking.
 * NULL is a no-op.
 */
void asyncq_close(struct asyncq *q);

/*
 * Dead-letter operations for the control API. Each runs on the store thread and calls DONE
 * later on the loop with RC 0 and RESULT (a JSON object the callee keeps ownership of: copy
 * what you need during the call), or RC < 0 and ERRMSG. Returns 0 or SY_E* (DONE not called).
 *   list:    {"dead_letters":[{id,function,condition,attempts,enqueued_at,failed_at,
 *             error_type,error_message}], "total": N}   (FN NULL: every function)
 *   show:    one full record (plus "payload" as JSON and "history"), RC SY_ENOENT if absent
 *   redrive: moves up to LIMIT dead letters (of FN, or ID, or all) back to the queue with
 *            fresh attempts: {"redriven": n, "remaining": m}
 *   purge:   deletes them: {"purged": n}
 */
typedef void asyncq_json_fn(void *arg, int rc, json_t *result, const char *errmsg);
int asyncq_dlq_list(struct asyncq *q, const char *fn, size_t limit, asyncq_json_fn *done,
                    void *arg);
int asyncq_dlq_show(struct asyncq *q, const char *id, asyncq_json_fn *done, void *arg);
int asyncq_dlq_redrive(struct asyncq *q, const char *fn, const char *id, size_t limit,
                       asyncq_json_fn *done, void *arg);
int asyncq_dlq_purge(struct asyncq *q, const char *fn, const char *id, asyncq_json_fn *done,
                     void *arg);

#endif
