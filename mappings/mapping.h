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
 * (borrowed). DATA_DIR/mappings.json holds what the API changed and made: a mapping disabled
 * through UpdateEventSourceMapping stays disabled across a restart, and the mappings made by
 * mappings_create_def() are made again here, after the file's. No I/O to sources yet.
 * Returns new (mappings_destroy()) or NULL with ERR filled.
 */
struct mappings *mappings_create(struct event_base *base, const struct cfg *cfg,
                                 struct dispatcher *dsp, struct sy_error *err);

/* Start the sources of the enabled mappings. Returns 0 or a negative SY_E* (ERR filled). */
int mappings_start(struct mappings *ms, struct sy_error *err);

/*
 * Graceful stop: stop every source from reading, let in-flight batches finish (bounded by
 * their function's timeout), acknowledge what finished, give the rest back to the sources,
 * stop the sources. DONE(ARG) runs once, later, when all of it is done. A mapping stopped this
 * way is never enabled again.
 */
void mappings_drain(struct mappings *ms, void (*done)(void *arg), void *arg);

/*
 * Free everything (after mappings_drain(), or at a forced stop: what is held is not
 * acknowledged, and the DONE of a mapping_remove() not finished yet never runs). NULL is a
 * no-op.
 */
void mappings_destroy(struct mappings *ms);

/*
 * Add a mapping of MC at run time (a config reload). MC is borrowed: it must outlive the
 * mapping (until mappings_destroy(), or until the DONE of its mapping_remove() ran). Its
 * function need not exist yet: batches wait until it does. It is listed last and, when
 * mappings_start() already ran and MC enables it, started at once; a source that cannot start
 * is shown in LastProcessingResult, not returned as an error. Only its enabled state, once the
 * API changes it, is saved in mappings.json, as for the file's mappings. Returns the mapping
 * (borrowed, valid until it is removed), or NULL with ERR filled: the name is in use (a mapping
 * being removed included: add it again once its DONE ran), the mappings are draining, the
 * source refuses its config, out of memory. Loop thread; nothing calls back.
 */
struct mapping *mappings_add(struct mappings *ms, const struct cfg_mapping *mc,
                             struct sy_error *err);

/*
 * CreateEventSourceMapping. DEF (LEN bytes, borrowed for the call) is the new mapping as the
 * JSON object of one `mappings:` entry, `name` included; its strings are config values (`$$`
 * for a literal `$`: mapping_def_escape()). It is checked with the config file's rules
 * (cfg_mapping_parse()), then against the mappings there are: the same source (kind and
 * EventSourceArn, or a self-managed source's endpoints and topics) for the same function and
 * qualifier, or the same name, is a conflict. The mapping is added as mappings_add() does, and
 * DEF is saved in data_dir/mappings.json, so that it is made again at every start (with the
 * updates the API made to it since) until mapping_remove(). Returns 0 with *OUT the new
 * mapping; SY_EINVAL with ERRS (the config's messages, `mappings[0].KEY: reason`) or ERR
 * filled; SY_EEXIST with *OUT the conflicting mapping and ERR saying which (Lambda's wording
 * for the same source and function); SY_ESTATE (draining) or SY_ENOMEM with ERR filled. ERRS
 * is the caller's to clear.
 */
int mappings_create_def(struct mappings *ms, const char *def, size_t len, struct mapping **out,
                        struct cfg_errors *errs, struct sy_error *err);

/* S (borrowed) as a literal config string: every `$` doubled. Returns new, NULL: no memory. */
char *mapping_def_escape(const char *s);

/*
 * Remove MAP for good (DeleteEventSourceMapping, a config reload): stop its source from
 * reading, let its in-flight batches finish (each bounded by its function's timeout),
 * acknowledge what finished, give everything else it holds back to the source unacknowledged
 * (so that it is delivered again, to whatever reads the source next), stop the source, take it
 * off the list and free it. Meanwhile it is still listed, in State "Deleting", and refuses to
 * be enabled. A mapping made through the API is also taken out of mappings.json at once. What
 * the source keeps for it (Kafka commits, Redis in-flight structures, the fs and MQTT state
 * files) stays, so that a mapping added again under the same name (hence the same UUID)
 * resumes where this one stopped. DONE(ARG) (DONE may be NULL) runs once, later, on the loop,
 * after MAP was freed. Returns 0, or SY_EBUSY (already being removed; DONE never runs).
 */
int mapping_remove(struct mapping *map, void (*done)(void *arg), void *arg);

/* The mappings: the file's in its order, then those added since (borrowed, valid until they
 * are removed: do not keep them across loop turns). */
size_t mappings_count(const struct mappings *ms);
struct mapping *mappings_at(struct mappings *ms, size_t i);
/* By name or by UUID; NULL if none. A mapping being removed is found (State "Deleting"). */
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
    const char *uuid;         /* stable across restarts (derived from the name) */
    const char *function;     /* as configured: NAME or NAME:QUALIFIER */
    const char *function_arn; /* qualified when the mapping is */
    int created_by_api;       /* made by mappings_create_def() (else the file or a reload) */
    const char *source_kind;  /* "redis" */
    const char *event_source_arn;
    const char *state;        /* Lambda's State: Enabling, Enabled, Disabling, Disabled,
                                 Deleting (being removed) */
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
 * state is saved in data_dir/mappings.json. Other changes last until the next restart, except
 * for a mapping made through the API, whose saved definition takes them. SY_ESTATE (ERR
 * filled): MAP is being removed or the mappings drain.
 */
int mapping_update(struct mapping *map, const struct mapping_update *up, struct sy_error *err);

#endif
