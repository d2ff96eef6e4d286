/*
 * mappings/mapping.h - event source mappings: source -> filter -> batcher -> invoke (sync,
 * through the dispatcher) -> outcome -> ack, retry, bisect or on-failure.
 *
 * One `struct mappings` holds every mapping of a broker (one per `mappings:` entry). Each
 * mapping owns its source (sources/), its compiled filter, the records it holds (delivered by
 * the source and not yet acknowledged to it: pending, in a batch, or waiting for a retry), its
 * on-failure and dead-letter destinations, and its counters. It invokes its function through
 * dispatcher_invoke(), one batch per invocation, and acknowledges a record to the source only
 * once the function finished with it (or the filter dropped it, or the error policy gave up on
 * it and its on-failure record was stored).
 *
 * Threads: loop-thread only. Callbacks never run from inside the call that registers them.
 */
#ifndef SY_MAPPING_H
#define SY_MAPPING_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/errors.h"
#include "sources/source.h"

struct dispatcher;
struct event_base;
struct mapping;
struct mappings;

/*
 * The schema cfg_load() needs for `mappings:`: every source kind built in, and the filter
 * check. Static; borrowed for the program's life.
 */
const struct cfg_schema *mapping_cfg_schema(void);

/*
 * Build the mappings of CFG (borrowed: must outlive them) on BASE, invoking through DSP
 * (borrowed). DATA_DIR/mappings.json holds the state the API changed (a mapping disabled
 * through UpdateEventSourceMapping stays disabled across a restart). No I/O to sources yet.
 * Returns new (mappings_destroy()) or NULL with ERR filled.
 */
struct mappings *mappings_create(struct event_base *base, const struct cfg *cfg,
                                 struct dispatcher *dsp, struct sy_error *err);

/* Start the sources of the enabled mappings. Returns 0 or a negative SY_E* (ERR filled). */
int mappings_start(struct mappings *ms, struct sy_error *err);

/*
 * Graceful stop: stop every source from reading, let in-flight batches finish (bounded by
 * their function's timeout), acknowledge what finished, give the rest back to the sources,
 * stop the sources. DONE(ARG) runs once, later, when all of it is done.
 */
void mappings_drain(struct mappings *ms, void (*done)(void *arg), void *arg);

/* Free everything (after mappings_drain(), or at a forced stop). NULL is a no-op. */
void mappings_destroy(struct mappings *ms);

/* The mappings in config order (borrowed, valid for the mappings' life). */
size_t mappings_count(const struct mappings *ms);
struct mapping *mappings_at(struct mappings *ms, size_t i);
/* By name or by UUID; NULL if none. */
struct mapping *mappings_find(struct mappings *ms, const char *name);
struct mapping *mappings_find_uuid(struct mappings *ms, const char *uuid);

/* Counters and gauges of one mapping (also the /metrics names, see broker/metrics_list.h). */
struct mapping_counters {
    uint64_t received;          /* records delivered by the source */
    uint64_t filtered;          /* dropped by the filter (acknowledged) */
    uint64_t delivered;         /* finished by the function with success (acknowledged) */
    uint64_t failed;            /* given up by the error policy (on-failure sent, acknowledged) */
    uint64_t dead_lettered;     /* sent to the source's dead letter (receive count, too large) */
    uint64_t batches;           /* invocations */
    uint64_t batch_errors;      /* invocations that failed (whole or partly) */
    uint64_t throttles;         /* invocations refused for concurrency (no attempt consumed) */
    uint64_t retries;           /* records invoked again after a failure */
    uint64_t in_flight_records; /* held now: pending, in a batch, or waiting for a retry */
    uint64_t in_flight_bytes;
    uint64_t in_flight_batches;
    int64_t lag; /* the source's backlog (list length, pending entries); -1 unknown */
};

/* A snapshot for the API and the CLI. Strings borrowed until the next call on the mapping. */
struct mapping_info {
    const char *name;
    const char *uuid; /* stable across restarts (derived from the name) */
    const char *function;
    const char *function_arn;
    const char *source_kind; /* "redis" */
    const char *event_source_arn;
    const char *state;        /* Lambda's State: Creating, Enabling, Enabled, Disabling,
                                 Disabled, Updating */
    const char *state_reason; /* StateTransitionReason */
    const char *last_result;  /* LastProcessingResult */
    const char *source_state; /* connecting, running, reconnecting: ..., problem: ... */
    double last_modified;     /* epoch seconds (LastModified is a number) */
    int enabled;
    int batch_size;
    int maximum_batching_window_ms;
    int maximum_concurrency;
    int maximum_retry_attempts;
    int maximum_record_age_s;
    int bisect_batch_on_function_error;
    int report_batch_item_failures;
    const char *on_failure; /* NULL if none */
    const char *const *filters;
    size_t n_filters;
    struct mapping_counters c;
    struct source_desc desc; /* Lambda's fields of the source (Topics, endpoints...) */
};

void mapping_info(struct mapping *map, struct mapping_info *out);

/* FN(ARG, ...) for each partition MAP's source holds now (ordered sources; none when disabled). */
void mapping_partitions(struct mapping *map, source_partition_fn *fn, void *arg);

/* What UpdateEventSourceMapping may change; `set_X` says whether X is given. */
struct mapping_update {
    int set_enabled, enabled;
    int set_batch_size, batch_size;
    int set_window_ms, window_ms;
    int set_filters;
    const char *const *filters; /* borrowed for the call */
    size_t n_filters;
    int set_maximum_retry_attempts, maximum_retry_attempts;
    int set_maximum_record_age_s, maximum_record_age_s;
    int set_bisect, bisect;
    int set_report_failures, report_failures;
    int set_maximum_concurrency, maximum_concurrency;
};

/*
 * Apply UP to MAP. Every value is checked first (the same rules as the config file); on a bad
 * one nothing changes and SY_EINVAL is returned with ERR filled (InvalidParameterValueException).
 * Enabling starts the source, disabling stops it (in-flight batches finish first); the enabled
 * state is saved in data_dir/mappings.json. Other changes last until the next restart.
 */
int mapping_update(struct mapping *map, const struct mapping_update *up, struct sy_error *err);

#endif
