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
      "Synchronous invocations completed, any outcome (throttles included).")                      \
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

#define METRICS_FUNCTION(X)                                                                        \
    X(environments, "switchyard_function_environments", "gauge",                                   \
      "Live execution environments of the function.")                                              \
    X(busy, "switchyard_function_busy_environments", "gauge",                                      \
      "Execution environments of the function running an invocation now.")

#endif
