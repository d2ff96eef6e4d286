/*
 * broker/api_esm.c - the event source mapping operations of the control API:
 *
 *   GET    /2015-03-31/event-source-mappings[/]?FunctionName=&EventSourceArn=&Marker=&MaxItems=
 *          ListEventSourceMappings -> 200 {"EventSourceMappings": [...], "NextMarker": "..."}
 *   GET    /2015-03-31/event-source-mappings/{UUID}   GetEventSourceMapping    -> 200
 *   PUT    /2015-03-31/event-source-mappings/{UUID}   UpdateEventSourceMapping -> 202
 *   POST   /2015-03-31/event-source-mappings[/]       CreateEventSourceMapping -> 400 (refused)
 *   DELETE /2015-03-31/event-source-mappings/{UUID}   DeleteEventSourceMapping -> 400 (refused)
 *
 * The mappings belong to the config file in this build: the API reads them and changes what
 * mapping_update() allows, but cannot add or remove one. Create and Delete therefore answer
 * InvalidParameterValueException saying so, rather than pretend to succeed.
 *
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
    int impossible; /* another region, account or qualifier: nothing here can match */
    char name[72];
};

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
    /* Mappings invoke the unqualified function ($LATEST): no version or alias has any. */
    if ((fn.region[0] != '\0' && strcmp(fn.region, bc->region) != 0) ||
        (fn.account[0] != '\0' && strcmp(fn.account, bc->account_id) != 0) ||
        (fn.qualifier[0] != '\0' && strcmp(fn.qualifier, "$LATEST") != 0))
        f->impossible = 1;
    return 0;
}

static int list_match(const struct mapping_info *mi, const struct fn_filter *f, const char *arn)
{
    if (f->given && (f->impossible || strcmp(mi->function, f->name) != 0))
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
 * FunctionName in an update may only name the mapping's own function (MI): the config file
 * decides which function a mapping invokes. Returns 0, or -1 after answering 400.
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
    if (api_parse_fname(json_string_value(v), &fn) == 0 && strcmp(fn.name, mi->function) == 0 &&
        (fn.region[0] == '\0' || strcmp(fn.region, bc->region) == 0) &&
        (fn.account[0] == '\0' || strcmp(fn.account, bc->account_id) == 0) &&
        (fn.qualifier[0] == '\0' || strcmp(fn.qualifier, "$LATEST") == 0))
        return 0;
    api_reply_error(call, API_E_BAD_PARAM,
                    "Changing the function of an event source mapping is not supported: mapping "
                    "%s invokes %s, as declared in the config file (%.200s). Edit the file and "
                    "restart the broker to change it.",
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
    api_reply_error(call, API_E_BAD_PARAM,
                    "DestinationConfig cannot be changed through the API: the on-failure "
                    "destination of mapping %s is set by on_failure in the config file (%.200s).",
                    mi->name, call->api->cfg->path);
    return -1;
}

void api_esm_update(struct api_call *call, const char *arg)
{
    size_t len;
    const char *text = httpd_req_body(call->req, &len);
    struct mapping_update up;
    struct mapping_info mi;
    struct mapping *map;
    struct sy_error err = {{0}};
    const char **patterns = NULL;
    json_t *body = NULL, *sc;
    json_error_t jerr;
    int window_s = 0, set_window = 0, rc;

    memset(&up, 0, sizeof(up));
    /* An empty body changes nothing (and answers the mapping), like `{}`. */
    body = len == 0 ? json_object() : json_loadb(text, len, 0, &jerr);
    if (body == NULL || !json_is_object(body)) {
        if (body == NULL && len > 0)
            api_reply_error(call, API_E_BAD_CONTENT,
                            "Could not parse request body into json: %s (line %d, column %d)",
                            jerr.text, jerr.line, jerr.column);
        else
            api_reply_error(call, API_E_BAD_CONTENT,
                            "Could not parse request body into json: expected an object");
        goto out;
    }
    map = find_or_404(call, arg);
    if (map == NULL)
        goto out;
    mapping_info(map, &mi);
    if (check_function(call, body, &mi) != 0 || check_destination(call, body, &mi) != 0)
        goto out;

    if (get_bool(call, body, "Enabled", &up.set_enabled, &up.enabled) != 0 ||
        get_int(call, body, "BatchSize", &up.set_batch_size, &up.batch_size) != 0 ||
        get_int(call, body, "MaximumBatchingWindowInSeconds", &set_window, &window_s) != 0 ||
        get_int(call, body, "MaximumRetryAttempts", &up.set_maximum_retry_attempts,
                &up.maximum_retry_attempts) != 0 ||
        get_int(call, body, "MaximumRecordAgeInSeconds", &up.set_maximum_record_age_s,
                &up.maximum_record_age_s) != 0 ||
        get_bool(call, body, "BisectBatchOnFunctionError", &up.set_bisect, &up.bisect) != 0 ||
        get_filters(call, body, &up, &patterns) != 0 || get_response_types(call, body, &up) != 0)
        goto out;
    if (set_window) {
        /* Lambda's range, in its unit; mapping_update() checks the same bound in ms. */
        if (window_s < 0 || window_s > ESM_WINDOW_MAX_S) {
            api_reply_error(call, API_E_BAD_PARAM,
                            "MaximumBatchingWindowInSeconds must be between 0 and %d (got %d).",
                            ESM_WINDOW_MAX_S, window_s);
            goto out;
        }
        up.set_window_ms = 1;
        up.window_ms = window_s * 1000;
    }
    /* ScalingConfig without MaximumConcurrency changes nothing: a mapping always has a limit. */
    sc = member(body, "ScalingConfig");
    if (sc != NULL && !json_is_object(sc)) {
        api_reply_error(call, API_E_BAD_PARAM, "ScalingConfig must be an object (got %s).",
                        json_kind(sc));
        goto out;
    }
    if (sc != NULL && get_int(call, sc, "MaximumConcurrency", &up.set_maximum_concurrency,
                              &up.maximum_concurrency) != 0)
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

/* ---- Create and Delete: refused ----------------------------------------------------------- */

void api_esm_create(struct api_call *call, const char *arg)
{
    api_reply_error(call, API_E_BAD_PARAM,
                    "CreateEventSourceMapping is not supported: mappings are declared in the "
                    "config file; add an entry under `mappings:` in %.200s and restart the "
                    "broker.",
                    call->api->cfg->path);
}

void api_esm_delete(struct api_call *call, const char *arg)
{
    struct mapping *map = find_or_404(call, arg);
    struct mapping_info mi;

    if (map == NULL)
        return;
    mapping_info(map, &mi);
    api_reply_error(call, API_E_BAD_PARAM,
                    "DeleteEventSourceMapping is not supported: mappings are declared in the "
                    "config file; remove mapping %s from %.200s and restart the broker, or stop "
                    "it with UpdateEventSourceMapping Enabled=false.",
                    mi.name, call->api->cfg->path);
}
