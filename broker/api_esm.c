/*
 * broker/api_esm.c - the event source mapping operations of the control API:
 *
 *   GET    /2015-03-31/event-source-mappings[/]?FunctionName=&EventSourceArn=&Marker=&MaxItems=
 *          ListEventSourceMappings -> 200 {"EventSourceMappings": [...], "NextMarker": "..."}
 *   GET    /2015-03-31/event-source-mappings/{UUID}   GetEventSourceMapping    -> 200
 *   PUT    /2015-03-31/event-source-mappings/{UUID}   UpdateEventSourceMapping -> 202
 *   POST   /2015-03-31/event-source-mappings[/]       CreateEventSourceMapping -> 202 (Creating)
 *   DELETE /2015-03-31/event-source-mappings/{UUID}   DeleteEventSourceMapping -> 202 (Deleting)
 *
 * Create turns Lambda's request into the definition of one `mappings:` entry (JSON, which is
 * YAML) and hands it to mappings_create_def(), which checks it with the config file's own code
 * (cfg_mapping_parse()): one set of rules for the file and the API. What Create accepts (the
 * full list with examples is docs/mappings.md, CreateEventSourceMapping):
 *
 *   FunctionName    NAME, NAME:QUALIFIER or an ARN of our region and account; the function and
 *                   its version or alias must exist (404 otherwise)      -> function:
 *   EventSourceArn  redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]/list/KEY   -> source.redis {url,
 list}
 *                   redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]/stream/KEY -> source.redis {url,
 stream}
 *                   file:DIR, file:///DIR                                 -> source.fs {path}
 *                   (the ARNs List shows for those, arn:aws:sqs:... and arn:aws:s3:::..., name
 *                   no server or directory: refused with the form to use)
 *   SelfManagedEventSource.Endpoints.KAFKA_BOOTSTRAP_SERVERS
 *                   ["HOST:PORT", ...]                  -> source.kafka {bootstrap_servers}
 *                   ["mqtt://HOST[:PORT]"] (or mqtts://; what List shows for MQTT)
 *                                                       -> source.mqtt {url}
 *   Topics (Kafka, MQTT) -> topics; SelfManagedKafkaEventSourceConfig.ConsumerGroupId ->
 *   consumer_group; StartingPosition (Kafka, Redis streams) -> starting_position;
 *   StartingPositionTimestamp (Kafka) -> starting_position_timestamp;
 *   Enabled, BatchSize, MaximumBatchingWindowInSeconds (whole seconds -> ms), FilterCriteria,
 *   DestinationConfig.OnFailure.Destination (a destination URI) -> on_failure,
 *   MaximumRetryAttempts, MaximumRecordAgeInSeconds, BisectBatchOnFunctionError,
 *   FunctionResponseTypes, ScalingConfig.MaximumConcurrency -> the file's keys of the same
 *   meaning; and switchyard's "Switchyard": {"name": NAME (default esm-<16 hex of the source and
 *   the function>), "source": {KIND: {the file's other source keys}}, "max_records_in_flight"}.
 *
 * Every string goes in literally (`$` doubled): the config expands ${VAR}, which would let a
 * client read the broker's environment. The config's messages (`mappings[0].batch_size: ...`)
 * come back naming Lambda's parameter (`BatchSize: ...`, key_params[]). Lambda parameters with
 * no meaning here that would change what the mapping does (Queues, SourceAccessConfigurations,
 * a ParallelizationFactor other than 1...) are refused rather than ignored.
 *
 * Delete removes a mapping made through the API (mapping_remove()): the answer shows it
 * Deleting; it stays listed so until its running batches have finished. The file's mappings
 * cannot be deleted here: the file owns them.

 * A mapping's JSON is Lambda's EventSourceMappingConfiguration (lambda-semantics.md 1.6) with
 * the fields that mean something here:
 *
 *   UUID, EventSourceMappingArn (arn:aws:lambda:REGION:ACCOUNT:event-source-mapping:UUID),
 *   EventSourceArn, FunctionArn, State, StateTransitionReason, LastModified (epoch seconds, a
 *   number), LastProcessingResult, BatchSize, MaximumBatchingWindowInSeconds,
 *   FilterCriteria {Filters: [{Pattern}]} (left out when there are no filters),
 *   DestinationConfig {OnFailure: {Destination: URI}} (only when on_failure is set),
 *   MaximumRecordAgeInSeconds, BisectBatchOnFunctionError, MaximumRetryAttempts,
 *   FunctionResponseTypes (["ReportBatchItemFailures"] or []), ScalingConfig
 *   {MaximumConcurrency}, and switchyard's own object:
 *
 *   "Switchyard": {"name": "orders", "function": "resize", "enabled": true,
 *                  "origin": "file" (or "api": made by Create, which Delete may remove),
 *                  "source_kind": "redis", "source_state": "running",
 *                  "maximum_batching_window_ms": 500,
 *                  "counters": {"received": 0, ..., "lag": -1}}
 *
 * (the counters are the fields of METRICS_MAPPING in metrics_list.h; lag -1 means unknown).
 * Clients that do not know the member ignore it, as the SDKs do with any new field.
 *
 * MaximumBatchingWindowInSeconds: the config counts the window in milliseconds, Lambda in
 * seconds, as an integer (typed SDKs such as Go's and Java's refuse anything else). A window
 * that is not whole seconds is answered rounded up (500 ms -> 1: "at most one second"), never
 * down to 0, which would claim that records go out at once. Updates take whole seconds (0..300),
 * as Lambda's API does; Switchyard.maximum_batching_window_ms always holds the exact value.
 *
 * Paging: at most 100 mappings per page whatever MaxItems (1..10000) says; the marker is the
 * UUID of the first mapping of the next page.
 *
 * Loop-thread only, like the rest of the API; every handler answers before it returns.
 */
#include "api_int.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/sha256.h"
#include "dispatcher/dispatcher.h"
#include "mappings/mapping.h"
#include "metrics_list.h"

#define ESM_PAGE_MAX 100 /* ListEventSourceMappings returns at most 100 per page */
#define ESM_WINDOW_MAX_S 300

/* ---- JSON of a mapping -------------------------------------------------------------------- */

/* Seconds as Lambda spells them: an integer, rounded up. */
static json_t *window_seconds(int ms)
{
    return json_integer((ms + 999) / 1000);
}

static json_t *counters_json(const struct mapping_counters *c)
{
    json_t *o = json_object();

    if (o == NULL)
        return NULL;
#define ESM_COUNTER(field, metric, type, help)                                                     \
    json_object_set_new(o, #field, json_integer((json_int_t)c->field));
    METRICS_MAPPING(ESM_COUNTER)
#undef ESM_COUNTER
    return o;
}

/*
 * EventSourceMappingConfiguration of the mapping MI describes, as a new object (NULL when out
 * of memory). MI's strings are copied.
 */
static void partition_json(void *arg, const struct source_partition_stat *st)
{
    json_array_append_new(arg,
                          json_pack("{s:s,s:I,s:I,s:I}", "partition", st->name, "lag",
                                    (json_int_t)st->lag, "committed", (json_int_t)st->committed,
                                    "in_flight", (json_int_t)st->in_flight));
}

static json_t *esm_json(const struct api *api, struct mapping *map, const struct mapping_info *mi)
{
    const struct cfg_broker *bc = &api->cfg->broker;
    json_t *o = json_object();
    json_t *sy;
    char arn[256];

    if (o == NULL)
        return NULL;
    snprintf(arn, sizeof(arn), "arn:aws:lambda:%s:%s:event-source-mapping:%s", bc->region,
             bc->account_id, mi->uuid);
    json_object_set_new(o, "UUID", json_string(mi->uuid));
    json_object_set_new(o, "EventSourceMappingArn", json_string(arn));
    if (mi->event_source_arn != NULL)
        json_object_set_new(o, "EventSourceArn", json_string(mi->event_source_arn));
    json_object_set_new(o, "FunctionArn", json_string(mi->function_arn));
    json_object_set_new(o, "State", json_string(mi->state));
    if (mi->state_reason != NULL && mi->state_reason[0] != '\0')
        json_object_set_new(o, "StateTransitionReason", json_string(mi->state_reason));
    json_object_set_new(o, "LastModified", json_real(mi->last_modified));
    if (mi->last_result != NULL && mi->last_result[0] != '\0')
        json_object_set_new(o, "LastProcessingResult", json_string(mi->last_result));
    json_object_set_new(o, "BatchSize", json_integer(mi->batch_size));
    json_object_set_new(o, "MaximumBatchingWindowInSeconds",
                        window_seconds(mi->maximum_batching_window_ms));
    if (mi->n_filters > 0) {
        json_t *filters = json_array();

        for (size_t i = 0; filters != NULL && i < mi->n_filters; i++)
            json_array_append_new(filters, json_pack("{s:s}", "Pattern", mi->filters[i]));
        json_object_set_new(o, "FilterCriteria", json_pack("{s:o*}", "Filters", filters));
    }
    if (mi->on_failure != NULL)
        json_object_set_new(o, "DestinationConfig",
                            json_pack("{s:{s:s}}", "OnFailure", "Destination", mi->on_failure));
    json_object_set_new(o, "MaximumRecordAgeInSeconds", json_integer(mi->maximum_record_age_s));
    json_object_set_new(o, "BisectBatchOnFunctionError",
                        json_boolean(mi->bisect_batch_on_function_error));
    json_object_set_new(o, "MaximumRetryAttempts", json_integer(mi->maximum_retry_attempts));
    json_object_set_new(o, "FunctionResponseTypes",
                        mi->report_batch_item_failures ? json_pack("[s]", "ReportBatchItemFailures")
                                                       : json_array());
    json_object_set_new(o, "ScalingConfig",
                        json_pack("{s:i}", "MaximumConcurrency", mi->maximum_concurrency));
    if (mi->desc.n_topics > 0) {
        json_t *t = json_array();

        for (size_t i = 0; t != NULL && i < mi->desc.n_topics; i++)
            json_array_append_new(t, json_string(mi->desc.topics[i]));
        json_object_set_new(o, "Topics", t);
    }
    if (mi->desc.endpoints != NULL) {
        json_t *eps = json_array();
        const char *p = mi->desc.endpoints;

        while (eps != NULL && *p != '\0') {
            size_t n = strcspn(p, ",");

            if (n > 0)
                json_array_append_new(eps, json_stringn(p, n));
            p += n;
            if (*p == ',')
                p++;
        }
        json_object_set_new(o, "SelfManagedEventSource",
                            json_pack("{s:{s:o*}}", "Endpoints", "KAFKA_BOOTSTRAP_SERVERS", eps));
    }
    if (mi->desc.consumer_group[0] != '\0')
        json_object_set_new(o, "SelfManagedKafkaEventSourceConfig",
                            json_pack("{s:s}", "ConsumerGroupId", mi->desc.consumer_group));
    if (mi->desc.starting_position != NULL)
        json_object_set_new(o, "StartingPosition", json_string(mi->desc.starting_position));
    if (mi->desc.starting_position_timestamp > 0)
        json_object_set_new(o, "StartingPositionTimestamp",
                            json_integer(mi->desc.starting_position_timestamp));

    sy = json_object();
    if (sy != NULL) {
        json_object_set_new(sy, "name", json_string(mi->name));
        json_object_set_new(sy, "function", json_string(mi->function));
        json_object_set_new(sy, "enabled", json_boolean(mi->enabled));
        json_object_set_new(sy, "origin", json_string(mi->created_by_api ? "api" : "file"));
        json_object_set_new(sy, "source_kind", json_string(mi->source_kind));
        if (mi->source_state != NULL && mi->source_state[0] != '\0')
            json_object_set_new(sy, "source_state", json_string(mi->source_state));
        json_object_set_new(sy, "maximum_batching_window_ms",
                            json_integer(mi->maximum_batching_window_ms));
        json_object_set_new(sy, "counters", counters_json(&mi->c));
        if (mi->desc.self_managed) {
            json_t *parts = json_array();

            if (parts != NULL)
                mapping_partitions(map, partition_json, parts);
            json_object_set_new(sy, "partitions", parts);
        }
    }
    json_object_set_new(o, "Switchyard", sy);
    return o;
}

/*
 * Answer CALL with ROOT (taken) as compact JSON. Reals get 15 significant digits: enough for
 * LastModified's milliseconds, and 0.2 stays 0.2 (jansson's default of 17 would not).
 */
static void reply_json(struct api_call *call, int status, json_t *root)
{
    char *s = root != NULL ? json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;

    json_decref(root);
    if (s == NULL) {
        api_reply_error(call, API_E_SERVICE, "out of memory");
        return;
    }
    api_reply_take(call, status, (const char *const[]){"Content-Type", "application/json", NULL}, s,
                   strlen(s));
}

/* The mapping with UUID, or NULL after answering Lambda's 404. */
static struct mapping *find_or_404(struct api_call *call, const char *uuid)
{
    struct mapping *map = call->api->ms != NULL ? mappings_find_uuid(call->api->ms, uuid) : NULL;

    if (map == NULL)
        api_reply_error(call, API_E_NOT_FOUND, "The resource you requested does not exist.");
    return map;
}

/* ---- ListEventSourceMappings -------------------------------------------------------------- */

/* What the FunctionName query selects. */
struct fn_filter {
    int given;
    int impossible; /* another region or account: nothing here can match */
    char name[72];
    char qualifier[136]; /* "": any (the unqualified name selects every mapping of the function) */
};

/* "" for no qualifier and $LATEST alike: both run the function's head. */
static const char *qualifier_key(const char *q)
{
    return q == NULL || strcmp(q, "$LATEST") == 0 ? "" : q;
}

/*
 * Whether the configured FUNCTION (NAME or NAME:QUALIFIER) is NAME with QUALIFIER; a NULL
 * QUALIFIER matches any.
 */
static int function_is(const char *function, const char *name, const char *qualifier)
{
    size_t n = strlen(name);

    if (strncmp(function, name, n) != 0 || (function[n] != '\0' && function[n] != ':'))
        return 0;
    return qualifier == NULL || strcmp(qualifier_key(function[n] == ':' ? function + n + 1 : NULL),
                                       qualifier_key(qualifier)) == 0;
}

/* Parse the FunctionName query value RAW into F. Returns 0, or -1 after answering 400. */
static int fn_filter_parse(struct api_call *call, const char *raw, struct fn_filter *f)
{
    const struct cfg_broker *bc = &call->api->cfg->broker;
    struct api_fname fn;

    memset(f, 0, sizeof(*f));
    if (raw == NULL || raw[0] == '\0')
        return 0;
    if (api_parse_fname(raw, &fn) != 0) {
        api_reply_error(call, API_E_VALIDATION,
                        "1 validation error detected: Value '%.256s' at 'functionName' failed to "
                        "satisfy constraint: Member must be a function name or ARN",
                        raw);
        return -1;
    }
    f->given = 1;
    snprintf(f->name, sizeof(f->name), "%s", fn.name);
    snprintf(f->qualifier, sizeof(f->qualifier), "%s", fn.qualifier);
    if ((fn.region[0] != '\0' && strcmp(fn.region, bc->region) != 0) ||
        (fn.account[0] != '\0' && strcmp(fn.account, bc->account_id) != 0))
        f->impossible = 1;
    return 0;
}

static int list_match(const struct mapping_info *mi, const struct fn_filter *f, const char *arn)
{
    if (f->given && (f->impossible || !function_is(mi->function, f->name,
                                                   f->qualifier[0] != '\0' ? f->qualifier : NULL)))
        return 0;
    if (arn != NULL && (mi->event_source_arn == NULL || strcmp(mi->event_source_arn, arn) != 0))
        return 0;
    return 1;
}

void api_esm_list(struct api_call *call, const char *arg)
{
    struct api *api = call->api;
    struct httpd_req *req = call->req;
    size_t n = api->ms != NULL ? mappings_count(api->ms) : 0;
    size_t start = 0, page = ESM_PAGE_MAX, count = 0;
    char fname[320], arnbuf[2048], marker[128];
    const char *arn;
    struct fn_filter ff;
    json_t *root, *arr;

    if (api_query_max_items(call, &page) != 0)
        return;
    if (fn_filter_parse(call, httpd_req_query_param(req, "FunctionName", fname, sizeof(fname)),
                        &ff) != 0)
        return;
    arn = httpd_req_query_param(req, "EventSourceArn", arnbuf, sizeof(arnbuf));
    if (arn != NULL && arn[0] == '\0')
        arn = NULL;
    /* Our marker is the UUID of the first mapping of the next page. */
    if (httpd_req_query_param(req, "Marker", marker, sizeof(marker)) != NULL && marker[0]) {
        struct mapping *map = api->ms != NULL ? mappings_find_uuid(api->ms, marker) : NULL;

        while (map != NULL && start < n && mappings_at(api->ms, start) != map)
            start++;
        if (map == NULL || start == n) {
            api_reply_error(call, API_E_BAD_PARAM, "Invalid Marker '%.100s'", marker);
            return;
        }
    }
    root = json_object();
    arr = json_array();
    if (root == NULL || arr == NULL) {
        json_decref(root);
        json_decref(arr);
        api_reply_error(call, API_E_SERVICE, "out of memory");
        return;
    }
    json_object_set_new(root, "EventSourceMappings", arr);
    for (size_t i = start; i < n; i++) {
        struct mapping_info mi;

        /* MI's strings last until the next call on this mapping: use them right away. */
        mapping_info(mappings_at(api->ms, i), &mi);
        if (!list_match(&mi, &ff, arn))
            continue;
        if (count == page) {
            json_object_set_new(root, "NextMarker", json_string(mi.uuid));
            break;
        }
        json_array_append_new(arr, esm_json(api, mappings_at(api->ms, i), &mi));
        count++;
    }
    reply_json(call, 200, root);
}

/* ---- GetEventSourceMapping ---------------------------------------------------------------- */

void api_esm_get(struct api_call *call, const char *arg)
{
    struct mapping *map = find_or_404(call, arg);
    struct mapping_info mi;

    if (map == NULL)
        return;
    mapping_info(map, &mi);
    reply_json(call, 200, esm_json(call->api, map, &mi));
}

/* ---- UpdateEventSourceMapping ------------------------------------------------------------- */

/* Member KEY of O; NULL when absent or JSON null (null means "not given" to the SDKs). */
static json_t *member(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);

    return json_is_null(v) ? NULL : v;
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number with a fraction";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
    default:
        return "null";
    }
}

/*
 * Read the integer member KEY of BODY: *SET = 1 and *OUT filled when given. Returns 0, or -1
 * after answering 400 (not an integer, or outside int).
 */
static int get_int(struct api_call *call, json_t *body, const char *key, int *set, int *out)
{
    json_t *v = member(body, key);
    json_int_t x;

    if (v == NULL)
        return 0;
    if (!json_is_integer(v)) {
        api_reply_error(call, API_E_BAD_PARAM, "%s must be an integer (got %s).", key,
                        json_kind(v));
        return -1;
    }
    x = json_integer_value(v);
    if (x < INT_MIN || x > INT_MAX) {
        api_reply_error(call, API_E_BAD_PARAM, "%s is out of range (got %lld).", key, (long long)x);
        return -1;
    }
    *set = 1;
    *out = (int)x;
    return 0;
}

static int get_bool(struct api_call *call, json_t *body, const char *key, int *set, int *out)
{
    json_t *v = member(body, key);

    if (v == NULL)
        return 0;
    if (!json_is_boolean(v)) {
        api_reply_error(call, API_E_BAD_PARAM, "%s must be a boolean (got %s).", key, json_kind(v));
        return -1;
    }
    *set = 1;
    *out = json_is_true(v);
    return 0;
}

/*
 * FilterCriteria: {} or {"Filters": []} removes filtering; {"Filters": [{"Pattern": "..."}]}
 * replaces the filters. *PATTERNS (new array of borrowed strings of BODY; caller frees the
 * array) is filled. Returns 0, or -1 after answering 400.
 */
static int get_filters(struct api_call *call, json_t *body, struct mapping_update *up,
                       const char ***patterns)
{
    json_t *fc = member(body, "FilterCriteria");
    json_t *filters, *f;
    size_t i;

    if (fc == NULL)
        return 0;
    if (!json_is_object(fc)) {
        api_reply_error(call, API_E_BAD_PARAM, "FilterCriteria must be an object (got %s).",
                        json_kind(fc));
        return -1;
    }
    up->set_filters = 1;
    filters = member(fc, "Filters");
    if (filters == NULL)
        return 0;
    if (!json_is_array(filters)) {
        api_reply_error(call, API_E_BAD_PARAM, "FilterCriteria.Filters must be an array (got %s).",
                        json_kind(filters));
        return -1;
    }
    if (json_array_size(filters) == 0)
        return 0;
    *patterns = calloc(json_array_size(filters), sizeof(**patterns));
    if (*patterns == NULL) {
        api_reply_error(call, API_E_SERVICE, "out of memory");
        return -1;
    }
    json_array_foreach(filters, i, f)
    {
        json_t *p = json_is_object(f) ? member(f, "Pattern") : NULL;

        if (!json_is_string(p)) {
            api_reply_error(call, API_E_BAD_PARAM,
                            "FilterCriteria.Filters[%zu] must be an object with a string "
                            "Pattern.",
                            i);
            return -1;
        }
        (*patterns)[i] = json_string_value(p);
    }
    up->filters = *patterns;
    up->n_filters = json_array_size(filters);
    return 0;
}

static int get_response_types(struct api_call *call, json_t *body, struct mapping_update *up)
{
    json_t *frt = member(body, "FunctionResponseTypes");
    json_t *t;
    size_t i;

    if (frt == NULL)
        return 0;
    if (!json_is_array(frt)) {
        api_reply_error(call, API_E_BAD_PARAM, "FunctionResponseTypes must be an array (got %s).",
                        json_kind(frt));
        return -1;
    }
    up->set_report_failures = 1;
    up->report_failures = 0;
    json_array_foreach(frt, i, t)
    {
        if (!json_is_string(t)) {
            api_reply_error(call, API_E_BAD_PARAM,
                            "FunctionResponseTypes[%zu] must be a string (got %s).", i,
                            json_kind(t));
            return -1;
        }
        if (strcmp(json_string_value(t), "ReportBatchItemFailures") != 0) {
            api_reply_error(call, API_E_BAD_PARAM,
                            "Unsupported FunctionResponseType '%.64s': the only one is "
                            "ReportBatchItemFailures.",
                            json_string_value(t));
            return -1;
        }
        up->report_failures = 1;
    }
    return 0;
}

/*
 * FunctionName in an update may only name the mapping's own function and qualifier (MI): which
 * function a mapping invokes is fixed when it is made. Returns 0, or -1 after answering 400.
 */
static int check_function(struct api_call *call, json_t *body, const struct mapping_info *mi)
{
    const struct cfg_broker *bc = &call->api->cfg->broker;
    json_t *v = member(body, "FunctionName");
    struct api_fname fn;

    if (v == NULL)
        return 0;
    if (!json_is_string(v)) {
        api_reply_error(call, API_E_BAD_PARAM, "FunctionName must be a string (got %s).",
                        json_kind(v));
        return -1;
    }
    if (api_parse_fname(json_string_value(v), &fn) == 0 &&
        function_is(mi->function, fn.name, fn.qualifier) &&
        (fn.region[0] == '\0' || strcmp(fn.region, bc->region) == 0) &&
        (fn.account[0] == '\0' || strcmp(fn.account, bc->account_id) == 0))
        return 0;
    if (mi->created_by_api)
        api_reply_error(call, API_E_BAD_PARAM,
                        "Changing the function of an event source mapping is not supported: "
                        "mapping %s invokes %s. Delete it and create it again for another "
                        "function.",
                        mi->name, mi->function_arn);
    else
        api_reply_error(call, API_E_BAD_PARAM,
                        "Changing the function of an event source mapping is not supported: "
                        "mapping %s invokes %s, as declared in the config file (%.200s). Edit the "
                        "file and restart the broker to change it.",
                        mi->name, mi->function_arn, call->api->cfg->path);
    return -1;
}

/*
 * DestinationConfig cannot be changed here (on_failure comes from the config file). Saying
 * so is better than ignoring it: failed records would silently go somewhere else than asked.
 * The same destination again is accepted. Returns 0, or -1 after answering 400.
 */
static int check_destination(struct api_call *call, json_t *body, const struct mapping_info *mi)
{
    json_t *dc = member(body, "DestinationConfig");
    json_t *of, *dst;
    const char *want;

    if (dc == NULL)
        return 0;
    of = json_is_object(dc) ? member(dc, "OnFailure") : NULL;
    dst = json_is_object(of) ? member(of, "Destination") : NULL;
    want = json_string_value(dst);
    if (json_is_object(dc) && (of == NULL || json_is_object(of)) && (dst == NULL || want != NULL) &&
        ((want == NULL && mi->on_failure == NULL) ||
         (want != NULL && mi->on_failure != NULL && strcmp(want, mi->on_failure) == 0)))
        return 0;
    if (mi->created_by_api)
        api_reply_error(call, API_E_BAD_PARAM,
                        "DestinationConfig cannot be changed through the API: the on-failure "
                        "destination of mapping %s was set when it was created; delete it and "
                        "create it again to change it.",
                        mi->name);
    else
        api_reply_error(call, API_E_BAD_PARAM,
                        "DestinationConfig cannot be changed through the API: the on-failure "
                        "destination of mapping %s is set by on_failure in the config file "
                        "(%.200s).",
                        mi->name, call->api->cfg->path);
    return -1;
}

/*
 * The settings Create and Update share (Enabled, BatchSize, MaximumBatchingWindowInSeconds,
 * MaximumRetryAttempts, MaximumRecordAgeInSeconds, BisectBatchOnFunctionError, FilterCriteria,
 * FunctionResponseTypes, ScalingConfig.MaximumConcurrency) of BODY into UP, their JSON types
 * checked; the window is in ms. *PATTERNS as get_filters(). Returns 0, or -1 after answering 400.
 */
static int get_settings(struct api_call *call, json_t *body, struct mapping_update *up,
                        const char ***patterns)
{
    int window_s = 0, set_window = 0;
    json_t *sc;

    if (get_bool(call, body, "Enabled", &up->set_enabled, &up->enabled) != 0 ||
        get_int(call, body, "BatchSize", &up->set_batch_size, &up->batch_size) != 0 ||
        get_int(call, body, "MaximumBatchingWindowInSeconds", &set_window, &window_s) != 0 ||
        get_int(call, body, "MaximumRetryAttempts", &up->set_maximum_retry_attempts,
                &up->maximum_retry_attempts) != 0 ||
        get_int(call, body, "MaximumRecordAgeInSeconds", &up->set_maximum_record_age_s,
                &up->maximum_record_age_s) != 0 ||
        get_bool(call, body, "BisectBatchOnFunctionError", &up->set_bisect, &up->bisect) != 0 ||
        get_filters(call, body, up, patterns) != 0 || get_response_types(call, body, up) != 0)
        return -1;
    if (set_window) {
        /* Lambda's range, in its unit; the config checks the same bound in ms. */
        if (window_s < 0 || window_s > ESM_WINDOW_MAX_S) {
            api_reply_error(call, API_E_BAD_PARAM,
                            "MaximumBatchingWindowInSeconds must be between 0 and %d (got %d).",
                            ESM_WINDOW_MAX_S, window_s);
            return -1;
        }
        up->set_window_ms = 1;
        up->window_ms = window_s * 1000;
    }
    /* ScalingConfig without MaximumConcurrency changes nothing: a mapping always has a limit. */
    sc = member(body, "ScalingConfig");
    if (sc != NULL && !json_is_object(sc)) {
        api_reply_error(call, API_E_BAD_PARAM, "ScalingConfig must be an object (got %s).",
                        json_kind(sc));
        return -1;
    }
    if (sc != NULL && get_int(call, sc, "MaximumConcurrency", &up->set_maximum_concurrency,
                              &up->maximum_concurrency) != 0)
        return -1;
    return 0;
}

/*
 * The body of a request that must be a JSON object (an empty body reads as `{}`): new, or NULL
 * after answering InvalidRequestContentException.
 */
static json_t *body_object(struct api_call *call)
{
    size_t len;
    const char *text = httpd_req_body(call->req, &len);
    json_error_t jerr;
    json_t *body = len == 0 ? json_object() : json_loadb(text, len, 0, &jerr);

    if (body != NULL && json_is_object(body))
        return body;
    if (body == NULL && len > 0)
        api_reply_error(call, API_E_BAD_CONTENT,
                        "Could not parse request body into json: %s (line %d, column %d)",
                        jerr.text, jerr.line, jerr.column);
    else
        api_reply_error(call, API_E_BAD_CONTENT,
                        "Could not parse request body into json: expected an object");
    json_decref(body);
    return NULL;
}

void api_esm_update(struct api_call *call, const char *arg)
{
    struct mapping_update up;
    struct mapping_info mi;
    struct mapping *map;
    struct sy_error err = {{0}};
    const char **patterns = NULL;
    json_t *body;
    int rc;

    memset(&up, 0, sizeof(up));
    /* An empty body changes nothing (and answers the mapping), like `{}`. */
    body = body_object(call);
    if (body == NULL)
        return;
    map = find_or_404(call, arg);
    if (map == NULL)
        goto out;
    mapping_info(map, &mi);
    if (check_function(call, body, &mi) != 0 || check_destination(call, body, &mi) != 0 ||
        get_settings(call, body, &up, &patterns) != 0)
        goto out;

    rc = mapping_update(map, &up, &err);
    if (rc == SY_EINVAL) {
        api_reply_error(call, API_E_BAD_PARAM, "%s", err.msg[0] ? err.msg : "Invalid value.");
        goto out;
    }
    if (rc == SY_EBUSY || rc == SY_ESTATE) {
        api_reply_error(call, API_E_IN_USE, "%s",
                        err.msg[0] ? err.msg
                                   : "The mapping is changing state; retry the update later.");
        goto out;
    }
    if (rc != 0) {
        api_reply_error(call, API_E_SERVICE, "Cannot update mapping %s: %s", mi.name,
                        err.msg[0] ? err.msg : sy_strerror(rc));
        goto out;
    }
    /* The answer shows the state the update led to (Enabling, Disabling...). */
    mapping_info(map, &mi);
    reply_json(call, 202, esm_json(call->api, map, &mi));
out:
    free(patterns);
    json_decref(body);
}

/* ---- CreateEventSourceMapping ------------------------------------------------------------- */

/*
 * A Create request becomes the mapping's definition: the JSON of one `mappings:` entry of the
 * config file, which mappings_create_def() runs through the config's own checks. Every string
 * of the request goes in as a literal ($ doubled): the config would expand ${VAR} from the
 * broker's environment, which a client must not be able to read.
 */

/* S as a literal config string (new), or NULL: out of memory. */
static json_t *lit(const char *s)
{
    char *e = mapping_def_escape(s);
    json_t *j = e != NULL ? json_string(e) : NULL;

    free(e);
    return j;
}

/* V with every string in it a literal (new), or NULL: out of memory. */
static json_t *lit_copy(json_t *v)
{
    json_t *out, *x;
    const char *k;
    size_t i;

    switch (json_typeof(v)) {
    case JSON_STRING:
        return lit(json_string_value(v));
    case JSON_ARRAY:
        out = json_array();
        json_array_foreach(v, i, x)
        {
            if (out == NULL || json_array_append_new(out, lit_copy(x)) != 0) {
                json_decref(out);
                return NULL;
            }
        }
        return out;
    case JSON_OBJECT:
        out = json_object();
        json_object_foreach(v, k, x)
        {
            if (out == NULL || json_object_set_new(out, k, lit_copy(x)) != 0) {
                json_decref(out);
                return NULL;
            }
        }
        return out;
    default:
        return json_copy(v);
    }
}

/* The source being built: its kind and the keys of its `source: KIND:` block. */
struct src_build {
    const char *kind; /* "kafka", "redis", "fs", "mqtt"; NULL: not known yet */
    json_t *block;    /* owned */
    int oom;
};

static void sb_set(struct src_build *sb, const char *key, json_t *v)
{
    if (v == NULL || json_object_set_new(sb->block, key, v) != 0)
        sb->oom = 1;
}

static void sb_set_str(struct src_build *sb, const char *key, const char *s, size_t n)
{
    char *d = strndup(s, n);

    sb_set(sb, key, d != NULL ? lit(d) : NULL);
    free(d);
}

#define REDIS_ARN_FORMS                                                                            \
    "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]/list/KEY or "                                      \
    "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]/stream/KEY"

/*
 * EventSourceArn: a Redis list or stream (redis://...), or a directory (file:DIR). The ARNs that
 * List shows for those (arn:aws:sqs:..., arn:aws:s3:::...) name a key or a bucket but not the
 * server or the directory, so they are refused with the form to use. The URL is never echoed:
 * it may hold a password. Returns 0, or -1 after answering 400.
 */
static int source_from_arn(struct api_call *call, const char *arn, struct src_build *sb)
{
    if (strncmp(arn, "redis://", 8) == 0) {
        const char *slash = strchr(arn + 8, '/'), *p = slash, *key;
        size_t digits;

        if (p != NULL && p[1] >= '0' && p[1] <= '9') {
            /* The database number, as the source's url takes it. */
            digits = strspn(p + 1, "0123456789");
            p = p[1 + digits] == '/' ? p + 1 + digits : NULL;
        }
        if (p == NULL || (strncmp(p, "/list/", 6) != 0 && strncmp(p, "/stream/", 8) != 0)) {
            api_reply_error(call, API_E_BAD_PARAM, "EventSourceArn: expected " REDIS_ARN_FORMS);
            return -1;
        }
        key = p[1] == 'l' ? p + 6 : p + 8;
        if (*key == '\0') {
            api_reply_error(call, API_E_BAD_PARAM,
                            "EventSourceArn: the Redis key is empty; expected " REDIS_ARN_FORMS);
            return -1;
        }
        sb->kind = "redis";
        sb_set_str(sb, "url", arn, (size_t)(p - arn));
        sb_set_str(sb, p[1] == 'l' ? "list" : "stream", key, strlen(key));
        return 0;
    }
    if (strncmp(arn, "file:", 5) == 0) {
        const char *dir = arn + 5;

        if (strncmp(dir, "//", 2) == 0)
            dir += 2; /* file:///abs/dir */
        if (*dir == '\0' || (arn[5] == '/' && arn[6] == '/' && *dir != '/')) {
            api_reply_error(call, API_E_BAD_PARAM,
                            "EventSourceArn: expected file:DIR or file:///DIR (got '%.200s')", arn);
            return -1;
        }
        sb->kind = "fs";
        sb_set_str(sb, "path", dir, strlen(dir));
        return 0;
    }
    if (strncmp(arn, "arn:aws:sqs:", 12) == 0)
        api_reply_error(call, API_E_BAD_PARAM,
                        "EventSourceArn: %.200s names a queue but not its Redis server; give the "
                        "list or stream as " REDIS_ARN_FORMS,
                        arn);
    else if (strncmp(arn, "arn:aws:s3:", 11) == 0)
        api_reply_error(call, API_E_BAD_PARAM,
                        "EventSourceArn: %.200s names a bucket but not its directory; give the "
                        "directory as file:DIR",
                        arn);
    else if (strncmp(arn, "arn:aws:kafka:", 14) == 0)
        api_reply_error(call, API_E_BAD_PARAM,
                        "EventSourceArn: Kafka sources are self-managed here; give "
                        "SelfManagedEventSource.Endpoints.KAFKA_BOOTSTRAP_SERVERS and Topics "
                        "instead");
    else
        api_reply_error(call, API_E_BAD_PARAM,
                        "EventSourceArn: not a source of this broker; expected " REDIS_ARN_FORMS
                        " or file:DIR (Kafka and MQTT: SelfManagedEventSource and Topics)");
    return -1;
}

/*
 * SelfManagedEventSource.Endpoints.KAFKA_BOOTSTRAP_SERVERS: Kafka's HOST:PORT list, or one
 * mqtt:// or mqtts:// URL, which is how List shows an MQTT source. Returns 0, or -1 after
 * answering 400.
 */
static int source_from_sme(struct api_call *call, json_t *sme, struct src_build *sb)
{
    json_t *ep = json_is_object(sme) ? member(sme, "Endpoints") : NULL;
    json_t *list = json_is_object(ep) ? member(ep, "KAFKA_BOOTSTRAP_SERVERS") : NULL;
    struct buf servers = {0};
    json_t *v;
    size_t i;
    int mqtt;

    if (!json_is_array(list) || json_array_size(list) == 0) {
        api_reply_error(call, API_E_BAD_PARAM,
                        "SelfManagedEventSource.Endpoints.KAFKA_BOOTSTRAP_SERVERS must be a "
                        "non-empty list of HOST:PORT strings (or one mqtt:// URL).");
        return -1;
    }
    json_array_foreach(list, i, v)
    {
        if (!json_is_string(v) || json_string_length(v) == 0) {
            api_reply_error(call, API_E_BAD_PARAM,
                            "SelfManagedEventSource.Endpoints.KAFKA_BOOTSTRAP_SERVERS[%zu] must "
                            "be a non-empty string (got %s).",
                            i, json_kind(v));
            buf_free(&servers);
            return -1;
        }
        if (buf_printf(&servers, "%s%s", i ? "," : "", json_string_value(v)) != 0)
            sb->oom = 1;
    }
    v = json_array_get(list, 0);
    mqtt = strncmp(json_string_value(v), "mqtt://", 7) == 0 ||
           strncmp(json_string_value(v), "mqtts://", 8) == 0;
    if (mqtt && json_array_size(list) != 1) {
        api_reply_error(call, API_E_BAD_PARAM,
                        "SelfManagedEventSource.Endpoints.KAFKA_BOOTSTRAP_SERVERS: an MQTT "
                        "source has exactly one endpoint, its mqtt:// or mqtts:// URL.");
        buf_free(&servers);
        return -1;
    }
    sb->kind = mqtt ? "mqtt" : "kafka";
    if (servers.data != NULL)
        sb_set_str(sb, mqtt ? "url" : "bootstrap_servers", servers.data, servers.len);
    buf_free(&servers);
    return 0;
}

/* The members that only some kinds of source take, into SB (kind known). 0, or -1 (answered). */
static int source_members(struct api_call *call, json_t *body, struct src_build *sb)
{
    json_t *topics = member(body, "Topics"), *sp = member(body, "StartingPosition");
    json_t *spt = member(body, "StartingPositionTimestamp");
    json_t *smk = member(body, "SelfManagedKafkaEventSourceConfig");
    int kafka = strcmp(sb->kind, "kafka") == 0;
    json_t *t;
    size_t i;

    if (topics != NULL) {
        if (!kafka && strcmp(sb->kind, "mqtt") != 0) {
            api_reply_error(call, API_E_BAD_PARAM,
                            "Topics: only Kafka and MQTT sources have topics.");
            return -1;
        }
        if (!json_is_array(topics)) {
            api_reply_error(call, API_E_BAD_PARAM, "Topics must be a list of strings (got %s).",
                            json_kind(topics));
            return -1;
        }
        json_array_foreach(topics, i, t)
        {
            if (!json_is_string(t)) {
                api_reply_error(call, API_E_BAD_PARAM, "Topics[%zu] must be a string (got %s).", i,
                                json_kind(t));
                return -1;
            }
        }
        sb_set(sb, "topics", lit_copy(topics));
    }
    if (sp != NULL) {
        if (!kafka && strcmp(sb->kind, "redis") != 0) {
            api_reply_error(call, API_E_BAD_PARAM,
                            "StartingPosition: only Kafka sources and Redis streams have one.");
            return -1;
        }
        if (!json_is_string(sp)) {
            api_reply_error(call, API_E_BAD_PARAM, "StartingPosition must be a string (got %s).",
                            json_kind(sp));
            return -1;
        }
        sb_set(sb, "starting_position", lit_copy(sp));
    }
    if (spt != NULL) {
        if (!kafka || !json_is_number(spt)) {
            api_reply_error(call, API_E_BAD_PARAM,
                            kafka ? "StartingPositionTimestamp must be a number of seconds."
                                  : "StartingPositionTimestamp: only Kafka sources have one.");
            return -1;
        }
        /* Lambda's timestamp is seconds, possibly with a fraction; the config's is seconds. */
        sb_set(sb, "starting_position_timestamp", json_integer((json_int_t)json_number_value(spt)));
    }
    if (smk != NULL) {
        json_t *g = json_is_object(smk) ? member(smk, "ConsumerGroupId") : NULL;

        if (!kafka || !json_is_object(smk) || (g != NULL && !json_is_string(g))) {
            api_reply_error(call, API_E_BAD_PARAM,
                            kafka ? "SelfManagedKafkaEventSourceConfig must be an object with a "
                                    "string ConsumerGroupId."
                                  : "SelfManagedKafkaEventSourceConfig: only Kafka sources have "
                                    "one.");
            return -1;
        }
        if (g != NULL)
            sb_set(sb, "consumer_group", lit_copy(g));
    }
    return 0;
}

/*
 * Switchyard.source, the file's `source:` block ({"redis": {"visibility_timeout_s": 60}}): the
 * keys Lambda has no member for, of the kind the request names (or, alone, the whole source).
 * A key given both ways is refused. Returns 0, or -1 after answering 400.
 */
static int source_extra(struct api_call *call, json_t *sys, struct src_build *sb)
{
    json_t *src = json_is_object(sys) ? member(sys, "source") : NULL, *keys, *v;
    const char *kind, *k;

    if (src == NULL)
        return 0;
    if (!json_is_object(src) || json_object_size(src) != 1) {
        api_reply_error(call, API_E_BAD_PARAM,
                        "Switchyard.source must be an object with one member, the kind of source "
                        "(kafka, redis, fs, mqtt), as under source: in the config file.");
        return -1;
    }
    json_object_foreach(src, kind, keys)
    {
        break;
    }
    if (sb->kind != NULL && strcmp(sb->kind, kind) != 0) {
        api_reply_error(call, API_E_BAD_PARAM,
                        "Switchyard.source.%.32s: the request names a %s source.", kind, sb->kind);
        return -1;
    }
    if (!json_is_object(keys)) {
        api_reply_error(call, API_E_BAD_PARAM, "Switchyard.source.%.32s must be an object.", kind);
        return -1;
    }
    /* The kind as the schema spells it (borrowed for the program's life), not the request. */
    if (sb->kind == NULL) {
        const struct cfg_schema *sc = mapping_cfg_schema();

        for (size_t i = 0; i < sc->n_sources; i++)
            if (strcmp(sc->sources[i]->sec.name, kind) == 0)
                sb->kind = sc->sources[i]->sec.name;
        if (sb->kind == NULL) {
            api_reply_error(call, API_E_BAD_PARAM,
                            "Switchyard.source.%.32s: no such kind of source (kafka, redis, fs, "
                            "mqtt).",
                            kind);
            return -1;
        }
    }
    json_object_foreach(keys, k, v)
    {
        if (json_object_get(sb->block, k) != NULL) {
            api_reply_error(call, API_E_BAD_PARAM,
                            "Switchyard.source.%s.%.64s: already given by a Lambda parameter.",
                            sb->kind, k);
            return -1;
        }
        sb_set(sb, k, lit_copy(v));
    }
    return 0;
}

/*
 * Lambda parameters this broker does not implement: refused, since the mapping would not do what
 * was asked; a value that changes nothing is accepted.
 */
static int check_unsupported(struct api_call *call, json_t *body)
{
    static const char *const never[] = {"Queues",
                                        "SourceAccessConfigurations",
                                        "AmazonManagedKafkaEventSourceConfig",
                                        "DocumentDBEventSourceConfig",
                                        "KMSKeyArn",
                                        "ProvisionedPollerConfig"};
    json_t *v;

    for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++) {
        if (member(body, never[i]) != NULL) {
            api_reply_error(call, API_E_BAD_PARAM,
                            "%s is not supported by switchyard (Kafka credentials and other "
                            "source options go in Switchyard.source, as in the config file).",
                            never[i]);
            return -1;
        }
    }
    v = member(body, "ParallelizationFactor");
    if (v != NULL && !(json_is_integer(v) && json_integer_value(v) == 1)) {
        api_reply_error(call, API_E_BAD_PARAM,
                        "ParallelizationFactor is not supported by switchyard (only 1).");
        return -1;
    }
    v = member(body, "TumblingWindowInSeconds");
    if (v != NULL && !(json_is_integer(v) && json_integer_value(v) == 0)) {
        api_reply_error(call, API_E_BAD_PARAM,
                        "TumblingWindowInSeconds is not supported by switchyard (only 0).");
        return -1;
    }
    return 0;
}

/* "esm-" and 16 hex digits of SOURCE and FUNCTION: the same request, the same name (and UUID). */
static void default_name(const json_t *source, const char *function, char out[24])
{
    static const char hex[] = "0123456789abcdef";
    char *s = json_dumps(source, JSON_COMPACT | JSON_SORT_KEYS);
    unsigned char h[SHA256_LEN];
    struct sha256_ctx c;

    sha256_init(&c);
    if (s != NULL)
        sha256_update(&c, s, strlen(s));
    sha256_update(&c, "\n", 1);
    sha256_update(&c, function, strlen(function));
    sha256_final(&c, h);
    free(s);
    memcpy(out, "esm-", 4);
    for (size_t i = 0; i < 8; i++) {
        out[4 + 2 * i] = hex[h[i] >> 4];
        out[5 + 2 * i] = hex[h[i] & 15];
    }
    out[20] = '\0';
}

/*
 * The definition of the mapping BODY asks for (new), or NULL after answering 400/404. The config
 * makes the checks of values (ranges, the source's table); this makes the checks of Lambda's
 * JSON (types, which member goes with which source), which the config cannot see.
 */
static json_t *create_def(struct api_call *call, json_t *body)
{
    json_t *fname = member(body, "FunctionName"), *arn = member(body, "EventSourceArn");
    json_t *sme = member(body, "SelfManagedEventSource"), *sys = member(body, "Switchyard");
    json_t *dc = member(body, "DestinationConfig"), *def = NULL, *src, *v;
    struct src_build sb = {.block = json_object()};
    struct mapping_update up;
    const char **patterns = NULL;
    char qual[136], function[210], name[24];
    struct function *unit;
    int ok = 0;

    memset(&up, 0, sizeof(up));
    if (sb.block == NULL)
        goto oom;
    if (check_unsupported(call, body) != 0)
        goto out;
    if (!json_is_string(fname)) {
        api_reply_error(call, API_E_VALIDATION,
                        "1 validation error detected: Value %s at 'functionName' failed to "
                        "satisfy constraint: Member must not be null",
                        fname == NULL ? "null" : "that is not a string");
        goto out;
    }
    /* Our region and account, a function that exists, a version or alias it has (404 else). */
    unit = api_resolve_function(call, json_string_value(fname), NULL, qual, sizeof(qual));
    if (unit == NULL)
        goto out; /* answered */
    snprintf(function, sizeof(function), "%s%s%s", function_cfg(function_head(unit))->name,
             qual[0] ? ":" : "", qual);

    if (arn != NULL && sme != NULL) {
        api_reply_error(call, API_E_BAD_PARAM,
                        "Give either EventSourceArn or SelfManagedEventSource, not both.");
        goto out;
    }
    if (arn != NULL && !json_is_string(arn)) {
        api_reply_error(call, API_E_BAD_PARAM, "EventSourceArn must be a string (got %s).",
                        json_kind(arn));
        goto out;
    }
    if (sys != NULL && !json_is_object(sys)) {
        api_reply_error(call, API_E_BAD_PARAM, "Switchyard must be an object (got %s).",
                        json_kind(sys));
        goto out;
    }
    if ((arn != NULL && source_from_arn(call, json_string_value(arn), &sb) != 0) ||
        (sme != NULL && source_from_sme(call, sme, &sb) != 0) || source_extra(call, sys, &sb) != 0)
        goto out;
    if (sb.kind == NULL) {
        api_reply_error(call, API_E_BAD_PARAM,
                        "EventSourceArn or SelfManagedEventSource is required (or the whole "
                        "source in Switchyard.source).");
        goto out;
    }
    if (source_members(call, body, &sb) != 0 || get_settings(call, body, &up, &patterns) != 0)
        goto out;

    if (sb.oom)
        goto oom;
    def = json_object();
    src = json_pack("{s:O}", sb.kind, sb.block);
    /* json_object_set_new() takes SRC even when it fails. */
    if (def == NULL || src == NULL || json_object_set_new(def, "source", src) != 0) {
        if (def == NULL)
            json_decref(src);
        goto oom;
    }
    v = json_is_object(sys) ? member(sys, "name") : NULL;
    if (v != NULL && !json_is_string(v)) {
        api_reply_error(call, API_E_BAD_PARAM, "Switchyard.name must be a string (got %s).",
                        json_kind(v));
        goto out;
    }
    if (v == NULL)
        default_name(src, function, name);
    if (json_object_set_new(def, "name", v != NULL ? lit_copy(v) : json_string(name)) != 0 ||
        json_object_set_new(def, "function", lit(function)) != 0)
        goto oom;
    {
        /* Every setting or none: one that could not be added would silently take its default
         * (a filter that vanished would let through the records it should drop). */
        int bad = 0;

        if (up.set_enabled)
            bad |= json_object_set_new(def, "enabled", json_boolean(up.enabled));
        if (up.set_batch_size)
            bad |= json_object_set_new(def, "batch_size", json_integer(up.batch_size));
        if (up.set_window_ms)
            bad |= json_object_set_new(def, "maximum_batching_window_ms",
                                       json_integer(up.window_ms));
        if (up.set_maximum_retry_attempts)
            bad |= json_object_set_new(def, "maximum_retry_attempts",
                                       json_integer(up.maximum_retry_attempts));
        if (up.set_maximum_record_age_s)
            bad |= json_object_set_new(def, "maximum_record_age_s",
                                       json_integer(up.maximum_record_age_s));
        if (up.set_bisect)
            bad |= json_object_set_new(def, "bisect_batch_on_function_error",
                                       json_boolean(up.bisect));
        if (up.set_report_failures)
            bad |= json_object_set_new(def, "report_batch_item_failures",
                                       json_boolean(up.report_failures));
        if (up.set_maximum_concurrency)
            bad |= json_object_set_new(def, "maximum_concurrency",
                                       json_integer(up.maximum_concurrency));
        if (up.set_filters) {
            json_t *f = json_array();

            bad |= f == NULL;
            for (size_t i = 0; f != NULL && i < up.n_filters; i++)
                bad |= json_array_append_new(f, lit(up.filters[i]));
            bad |= json_object_set_new(def, "filters", f);
        }
        if (bad)
            goto oom;
    }
    if (dc != NULL) {
        json_t *of = json_is_object(dc) ? member(dc, "OnFailure") : NULL;
        json_t *dst = json_is_object(of) ? member(of, "Destination") : NULL;

        if (!json_is_object(dc) || (of != NULL && !json_is_object(of)) ||
            (dst != NULL && !json_is_string(dst))) {
            api_reply_error(call, API_E_BAD_PARAM,
                            "DestinationConfig must be {\"OnFailure\": {\"Destination\": URI}}.");
            goto out;
        }
        if (dst != NULL)
            json_object_set_new(def, "on_failure", lit_copy(dst));
    }
    v = json_is_object(sys) ? member(sys, "max_records_in_flight") : NULL;
    if (v != NULL)
        json_object_set_new(def, "max_records_in_flight", json_copy(v));
    ok = 1;
    goto out;

oom:
    api_reply_error(call, API_E_SERVICE, "out of memory");
out:
    free(patterns);
    json_decref(sb.block);
    if (!ok) {
        json_decref(def);
        def = NULL;
    }
    return def;
}

/*
 * Where the config's key paths (`mappings[0].KEY`) came from in the request, to name Lambda's
 * parameter in messages. Keys of the source block not listed came from Switchyard.source.
 */
static const struct {
    const char *key;
    const char *param;
} key_params[] = {
    {"name", "Switchyard.name"},
    {"function", "FunctionName"},
    {"enabled", "Enabled"},
    {"batch_size", "BatchSize"},
    {"maximum_batching_window_ms", "MaximumBatchingWindowInSeconds"},
    {"filters", "FilterCriteria.Filters"},
    {"maximum_concurrency", "ScalingConfig.MaximumConcurrency"},
    {"report_batch_item_failures", "FunctionResponseTypes"},
    {"bisect_batch_on_function_error", "BisectBatchOnFunctionError"},
    {"maximum_retry_attempts", "MaximumRetryAttempts"},
    {"maximum_record_age_s", "MaximumRecordAgeInSeconds"},
    {"on_failure", "DestinationConfig.OnFailure.Destination"},
    {"max_records_in_flight", "Switchyard.max_records_in_flight"},
    {"source.kafka.bootstrap_servers", "SelfManagedEventSource.Endpoints.KAFKA_BOOTSTRAP_SERVERS"},
    {"source.kafka.topics", "Topics"},
    {"source.kafka.consumer_group", "SelfManagedKafkaEventSourceConfig.ConsumerGroupId"},
    {"source.kafka.starting_position", "StartingPosition"},
    {"source.kafka.starting_position_timestamp", "StartingPositionTimestamp"},
    {"source.redis.url", "EventSourceArn"},
    {"source.redis.list", "EventSourceArn"},
    {"source.redis.stream", "EventSourceArn"},
    {"source.redis.starting_position", "StartingPosition"},
    {"source.mqtt.url", "SelfManagedEventSource.Endpoints.KAFKA_BOOTSTRAP_SERVERS"},
    {"source.mqtt.topics", "Topics"},
    {"source.fs.path", "EventSourceArn"},
};

/*
 * One config message about the request (`request:L:C: mappings[0].PATH: reason`) in Lambda's
 * terms (`PARAM: reason`), appended to OUT. SYS: the request's Switchyard member (may be NULL).
 */
static void param_message(struct buf *out, const char *msg, json_t *sys)
{
    const char *p = strstr(msg, ": mappings[0]"), *reason, *param = NULL, *rest = "";
    char path[256];
    size_t n;

    if (p == NULL) {
        buf_printf(out, "%s%s", out->len ? "; " : "", msg);
        return;
    }
    p += strlen(": mappings[0]");
    if (*p == '.')
        p++;
    reason = strstr(p, ": ");
    n = reason != NULL ? (size_t)(reason - p) : strlen(p);
    snprintf(path, sizeof(path), "%.*s", (int)n, p);
    reason = reason != NULL ? reason + 2 : "";
    for (size_t i = 0; i < sizeof(key_params) / sizeof(key_params[0]) && param == NULL; i++) {
        size_t k = strlen(key_params[i].key);
        char next = path[k];

        if (strncmp(path, key_params[i].key, k) == 0 &&
            (next == '\0' || next == '.' || next == '[')) {
            param = key_params[i].param;
            rest = path + k; /* "[2]" of filters[2] */
        }
    }
    if (param != NULL && strncmp(path, "source.", 7) == 0) {
        /* The same key given in Switchyard.source (say, a redis url for a unix socket). */
        json_t *src = json_is_object(sys) ? json_object_get(sys, "source") : NULL;
        const char *kind_end = strchr(path + 7, '.');
        char kind[32];

        snprintf(kind, sizeof(kind), "%.*s", kind_end ? (int)(kind_end - path - 7) : 0, path + 7);
        if (kind_end != NULL && json_object_get(json_object_get(src, kind), kind_end + 1) != NULL)
            param = NULL;
    }
    if (param != NULL)
        buf_printf(out, "%s%s%s: %s", out->len ? "; " : "", param, rest, reason);
    else if (strcmp(path, "source") == 0 ||
             (strncmp(path, "source.", 7) == 0 && strchr(path + 7, '.') == NULL))
        buf_printf(out,
                   "%sthe source (EventSourceArn, SelfManagedEventSource, Switchyard.source): "
                   "%s",
                   out->len ? "; " : "", reason);
    else
        buf_printf(out, "%sSwitchyard.%s: %s", out->len ? "; " : "", path, reason);
}

void api_esm_create(struct api_call *call, const char *arg)
{
    struct api *api = call->api;
    struct cfg_errors errs = {0};
    struct sy_error err = {{0}};
    struct mapping *map = NULL;
    struct mapping_info mi;
    json_t *body, *def = NULL, *resp;
    char *text = NULL;
    int rc;

    (void)arg;
    body = body_object(call);
    if (body == NULL)
        return;
    if (api->ms == NULL) {
        api_reply_error(call, API_E_BAD_PARAM, "This broker runs no event source mappings.");
        goto out;
    }
    def = create_def(call, body);
    if (def == NULL)
        goto out;
    text = json_dumps(def, JSON_COMPACT);
    if (text == NULL) {
        api_reply_error(call, API_E_SERVICE, "out of memory");
        goto out;
    }
    rc = mappings_create_def(api->ms, text, strlen(text), &map, &errs, &err);
    if (rc == SY_EINVAL && errs.n > 0) {
        struct buf m = {0};

        for (size_t i = 0; i < errs.n; i++)
            param_message(&m, errs.msgs[i], member(body, "Switchyard"));
        api_reply_error(call, API_E_BAD_PARAM, "%s",
                        m.data != NULL ? m.data : "Invalid event source mapping.");
        buf_free(&m);
        goto out;
    }
    if (rc == SY_EEXIST) {
        api_reply_error(call, API_E_CONFLICT, "%s", err.msg);
        goto out;
    }
    if (rc != 0) {
        api_reply_error(call, rc == SY_EINVAL ? API_E_BAD_PARAM : API_E_SERVICE, "%s",
                        err.msg[0] ? err.msg : sy_strerror(rc));
        goto out;
    }
    /* Lambda answers a new mapping in Creating, whatever it becomes right after. */
    mapping_info(map, &mi);
    mi.state = "Creating";
    resp = esm_json(api, map, &mi);
    reply_json(call, 202, resp);
out:
    cfg_errors_clear(&errs);
    free(text);
    json_decref(def);
    json_decref(body);
}

/* ---- DeleteEventSourceMapping ------------------------------------------------------------- */

void api_esm_delete(struct api_call *call, const char *arg)
{
    struct mapping *map = find_or_404(call, arg);
    struct mapping_info mi;

    if (map == NULL)
        return;
    mapping_info(map, &mi);
    if (!mi.created_by_api) {
        api_reply_error(call, API_E_BAD_PARAM,
                        "Mapping %s is declared in the config file (%.200s), which owns it: it "
                        "cannot be deleted through the API. Remove it from the file and restart "
                        "the broker, or stop it with UpdateEventSourceMapping Enabled=false.",
                        mi.name, call->api->cfg->path);
        return;
    }
    if (mapping_remove(map, NULL, NULL) != 0) {
        api_reply_error(call, API_E_IN_USE,
                        "Mapping %s is being deleted already; it disappears once its running "
                        "batches have finished.",
                        mi.name);
        return;
    }
    /* Still listed, in Deleting, until its running batches have finished. */
    mapping_info(map, &mi);
    reply_json(call, 202, esm_json(call->api, map, &mi));
}
