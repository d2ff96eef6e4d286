/*
 * broker/metrics_list.h - every metric the broker exports, as X-macro tables (one place for
 * names, types and help texts; /metrics, /healthz and `switchyard status` all read from here).
 *
 * METRICS_BROKER(X): X(field, metric, type, help), where `field` names the member of
 * `struct dispatcher_stats` (also the key in /healthz) and `metric` the Prometheus name.
 * METRICS_FUNCTION(X): per-function gauges, labelled {function="NAME"}; `field` names the
 * /healthz functions_detail key.
 */
#ifndef SY_METRICS_LIST_H
#define SY_METRICS_LIST_H

#define METRICS_BROKER(X)                                                                          \
    X(invocations, "switchyard_invocations_total", "counter",                                      \
      "Invocations completed (sync and async), any outcome (throttles included).")                      \
    X(errors, "switchyard_function_errors_total", "counter",                                       \
      "Invocations that ended in a function error (X-Amz-Function-Error: Unhandled).")             \
    X(throttles, "switchyard_throttles_total", "counter",                                          \
      "Invocations refused for lack of concurrency (429 TooManyRequestsException).")               \
    X(cold_starts, "switchyard_cold_starts_total", "counter",                                      \
      "Execution environments started (each one runs INIT once).")                                 \
    X(warm_starts, "switchyard_warm_starts_total", "counter",                                      \
      "Invocations served by an already initialised execution environment.")                       \
    X(timeouts, "switchyard_timeouts_total", "counter",                                            \
      "Invocations (or INIT phases) stopped at their timeout.")                                    \
    X(crashes, "switchyard_crashes_total", "counter",                                              \
      "Execution environments that exited while an invocation was running.")                       \
    X(in_flight, "switchyard_in_flight", "gauge", "Invocations running now.")                      \
    X(environments, "switchyard_environments", "gauge", "Live execution environments.")

/* METRICS_ASYNC(X): the async queue's counters (`struct asyncq_stats`; /healthz key "async"). */
#define METRICS_ASYNC(X)                                                                           \
    X(enqueued, "switchyard_async_enqueued_total", "counter",                                      \
      "Event invocations durably stored (answered 202).")                                          \
    X(succeeded, "switchyard_async_succeeded_total", "counter",                                    \
      "Async events whose function succeeded.")                                                    \
    X(failed, "switchyard_async_failed_total", "counter",                                          \
      "Async events that ran out of retry attempts or event age.")                                 \
    X(retries, "switchyard_async_retries_total", "counter",                                        \
      "Function errors of async events scheduled for another attempt.")                            \
    X(requeued, "switchyard_async_requeued_total", "counter",                                      \
      "Async events sent back to the queue after a throttle or start failure (no attempt used).")  \
    X(dest_sent, "switchyard_destination_deliveries_total", "counter",                             \
      "Destination and dead-letter deliveries acknowledged.")                                      \
    X(dest_failures, "switchyard_destination_failures_total", "counter",                           \
      "Destination and dead-letter deliveries that failed (each is retried).")                     \
    X(store_errors, "switchyard_async_store_errors_total", "counter",                              \
      "Queue store transactions that failed (disk full, I/O error).")                              \
    X(queued, "switchyard_async_queued", "gauge",                                                  \
      "Async events held: waiting, running or being delivered.")                                   \
    X(in_flight, "switchyard_async_in_flight", "gauge", "Async invocations running now.")          \
    X(dead_letters, "switchyard_dead_letters", "gauge",                                            \
      "Events in the local dead-letter store (switchyard dlq).")                                   \
    X(parked, "switchyard_async_parked", "gauge",                                                  \
      "Stored async events beyond broker.async_max_held, waiting on disk to be read back.")

#define METRICS_FUNCTION(X)                                                                        \
    X(environments, "switchyard_function_environments", "gauge",                                   \
      "Live execution environments of the function.")                                              \
    X(busy, "switchyard_function_busy_environments", "gauge",                                      \
      "Execution environments of the function running an invocation now.")

#endif
