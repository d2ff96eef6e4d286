/*
 * broker/metrics_list.h - every metric the broker exports, as X-macro tables (one place for
 * names, types and help texts; /metrics, /healthz and `switchyard status` all read from here).
 *
 * METRICS_BROKER(X): X(field, metric, type, help), where `field` names the member of
 * `struct dispatcher_stats` (also the key in /healthz) and `metric` the Prometheus name.
 * METRICS_FUNCTION(X): per-function gauges, labelled {function="NAME"}; `field` names the
 * /healthz functions_detail key.
 * METRICS_FUNCTION_STATS(X): per-function counters from function_stats() (dispatcher.h),
 * labelled {function="NAME"}, plus the duration histogram METRIC_FUNCTION_DURATION.
 * METRICS_MAPPING(X): per-mapping counters and gauges from struct mapping_counters
 * (mappings/mapping.h), labelled {mapping="NAME",function="FN"}; `field` is the member and
 * the key in /healthz `mappings` and in the Switchyard.counters object of the ESM API.
 */
#ifndef SY_METRICS_LIST_H
#define SY_METRICS_LIST_H

#define METRICS_BROKER(X)                                                                          \
    X(invocations, "switchyard_invocations_total", "counter",                                      \
      "Invocations completed (sync and async), any outcome (throttles included).")                 \
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

/*
 * Not named like the broker-wide counters above: one metric name cannot be exported both with
 * and without labels (switchyard_function_errors_total is the broker's total).
 */
#define METRICS_FUNCTION_STATS(X)                                                                  \
    X(invocations, "switchyard_function_invocations_total", "counter",                             \
      "Invocations of the function completed, any outcome (throttles included).")                  \
    X(errors, "switchyard_function_invocation_errors_total", "counter",                            \
      "Invocations of the function that ended in a function error.")                               \
    X(throttles, "switchyard_function_throttles_total", "counter",                                 \
      "Invocations of the function refused for lack of concurrency.")

/* A Prometheus histogram: _bucket{function,le} (bounds: function_duration_buckets_ms), _sum,
 * _count. Milliseconds, as Lambda's Duration metric and the REPORT line. */
#define METRIC_FUNCTION_DURATION "switchyard_function_duration_milliseconds"
#define METRIC_FUNCTION_DURATION_HELP                                                              \
    "Time from the event's delivery to the runtime to the invocation's outcome."

/*
 * The gauge `lag` is signed: -1 means the source cannot tell, and /metrics then leaves the
 * sample out (/healthz and the API show -1).
 */
#define METRICS_MAPPING(X)                                                                         \
    X(received, "switchyard_mapping_records_received_total", "counter",                            \
      "Records delivered by the mapping's source.")                                                \
    X(filtered, "switchyard_mapping_records_filtered_total", "counter",                            \
      "Records dropped by the mapping's filters (acknowledged, never invoked).")                   \
    X(delivered, "switchyard_mapping_records_delivered_total", "counter",                          \
      "Records the function processed successfully (acknowledged).")                              \
    X(failed, "switchyard_mapping_records_failed_total", "counter",                                \
      "Records given up by the error policy (sent on-failure, acknowledged).")                     \
    X(dead_lettered, "switchyard_mapping_records_dead_lettered_total", "counter",                  \
      "Records sent to the source's dead letter (receive count, size).")                           \
    X(batches, "switchyard_mapping_batches_total", "counter",                                      \
      "Invocations made by the mapping (one batch each).")                                         \
    X(batch_errors, "switchyard_mapping_batch_errors_total", "counter",                            \
      "Batches whose invocation failed, wholly or partly.")                                        \
    X(throttles, "switchyard_mapping_throttles_total", "counter",                                  \
      "Batches refused for lack of concurrency (retried, no attempt used).")                       \
    X(retries, "switchyard_mapping_retries_total", "counter",                                      \
      "Records invoked again after a failure.")                                                    \
    X(in_flight_records, "switchyard_mapping_in_flight_records", "gauge",                          \
      "Records held now: pending, in a batch or waiting for a retry.")                             \
    X(in_flight_bytes, "switchyard_mapping_in_flight_bytes", "gauge",                              \
      "Bytes of the records held now.")                                                            \
    X(in_flight_batches, "switchyard_mapping_in_flight_batches", "gauge",                          \
      "Batches of the mapping in flight now.")                                                     \
    X(lag, "switchyard_mapping_source_lag", "gauge",                                               \
      "The source's backlog (list length, pending entries); absent when unknown.")

#endif
