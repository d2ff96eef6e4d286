/*
 * broker/api_health.c - `GET /healthz` (JSON, no auth) and `GET /metrics` (Prometheus text
 * exposition format 0.0.4), both from dispatcher_stats(), function_env_counts(),
 * function_stats(), asyncq_stats() and mapping_info() through the tables of metrics_list.h.
 *
 * /healthz: {"status", "functions", the METRICS_BROKER fields, "functions_detail": {NAME:
 * {METRICS_FUNCTION fields}}, "async": {...} when there is a queue,
 * "mappings": {NAME: {"function", "state", "source_state", METRICS_MAPPING fields}} when the
 * broker has mappings}.
 *
 * Names of functions and mappings are [A-Za-z0-9_-] (config-checked), so label values need no
 * escaping.
 */
#include "api_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config/config.h"
#include "dispatcher/asyncq.h"
#include "mappings/mapping.h"
#include "metrics_list.h"
#include "core/buf.h"

/* The per-function values METRICS_FUNCTION() names (member = its `field`). */
struct fn_counts {
    unsigned environments;
    unsigned busy;
};

/* The /healthz `mappings` object (new; NULL when out of memory). */
static json_t *mappings_health(struct mappings *ms)
{
    json_t *o = json_object();

    for (size_t i = 0; o != NULL && i < mappings_count(ms); i++) {
        struct mapping_info mi;
        json_t *one = json_object();

        mapping_info(mappings_at(ms, i), &mi);
        if (one == NULL)
            break;
        json_object_set_new(one, "function", json_string(mi.function));
        json_object_set_new(one, "state", json_string(mi.state));
        if (mi.source_state != NULL)
            json_object_set_new(one, "source_state", json_string(mi.source_state));
#define HEALTH_MAP_FIELD(field, metric, type, help)                                                \
    json_object_set_new(one, #field, json_integer((json_int_t)mi.c.field));
        METRICS_MAPPING(HEALTH_MAP_FIELD)
#undef HEALTH_MAP_FIELD
        json_object_set_new(o, mi.name, one);
    }
    return o;
}

void api_healthz(struct api_call *call, const char *arg)
{
    struct api *api = call->api;
    struct dispatcher_stats st;
    size_t n = dispatcher_function_count(api->dsp);
    json_t *root = json_object();
    json_t *detail = json_object();
    char *s;

    dispatcher_stats(api->dsp, &st);
    if (root == NULL || detail == NULL)
        goto nomem;
    json_object_set_new(root, "status", json_string(api->draining ? "draining" : "ok"));
    json_object_set_new(root, "functions", json_integer((json_int_t)n));
#define HEALTH_FIELD(field, metric, type, help)                                                    \
    json_object_set_new(root, #field, json_integer((json_int_t)st.field));
    METRICS_BROKER(HEALTH_FIELD)
#undef HEALTH_FIELD
    for (size_t i = 0; i < n; i++) {
        struct function *fn = dispatcher_function_at(api->dsp, i);
        struct fn_counts c = {0, 0};
        json_t *one = json_object();

        function_env_counts(fn, &c.environments, &c.busy);
#define HEALTH_FN_FIELD(field, metric, type, help)                                                 \
    json_object_set_new(one, #field, json_integer((json_int_t)c.field));
        METRICS_FUNCTION(HEALTH_FN_FIELD)
#undef HEALTH_FN_FIELD
        json_object_set_new(detail, function_cfg(fn)->name, one);
    }
    json_object_set_new(root, "functions_detail", detail);
    detail = NULL;
    if (api->aq != NULL) {
        struct asyncq_stats as;
        json_t *ao = json_object();

        asyncq_stats(api->aq, &as);
#define HEALTH_ASYNC(field, metric, type, help)                                                    \
    json_object_set_new(ao, #field, json_integer((json_int_t)as.field));
        METRICS_ASYNC(HEALTH_ASYNC)
#undef HEALTH_ASYNC
        json_object_set_new(root, "async", ao);
    }
    if (api->ms != NULL)
        json_object_set_new(root, "mappings", mappings_health(api->ms));
    s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (s == NULL)
        goto nomem;
    /* A draining broker is not healthy for a load balancer: 503, with the same body. */
    api_reply_take(call, api->draining ? 503 : 200,
                   (const char *const[]){"Content-Type", "application/json", NULL}, s, strlen(s));
    return;
nomem:
    json_decref(root);
    json_decref(detail);
    api_reply_error(call, API_E_SERVICE, "out of memory");
}

/* The per-function duration histogram (METRIC_FUNCTION_DURATION). */
static void duration_histogram(struct buf *b, struct dispatcher *dsp)
{
    const char *m = METRIC_FUNCTION_DURATION;

    buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", m, METRIC_FUNCTION_DURATION_HELP, m);
    for (size_t i = 0; i < dispatcher_function_count(dsp); i++) {
        struct function *fn = dispatcher_function_at(dsp, i);
        const char *name = function_cfg(fn)->name;
        struct function_stats fs;

        function_stats(fn, &fs);
        for (int k = 0; k < FUNCTION_DURATION_BUCKETS; k++)
            buf_printf(b, "%s_bucket{function=\"%s\",le=\"%g\"} %llu\n", m, name,
                       function_duration_buckets_ms[k], (unsigned long long)fs.duration_buckets[k]);
        buf_printf(b, "%s_bucket{function=\"%s\",le=\"+Inf\"} %llu\n", m, name,
                   (unsigned long long)fs.durations);
        buf_printf(b, "%s_sum{function=\"%s\"} %.3f\n", m, name, fs.duration_sum_ms);
        buf_printf(b, "%s_count{function=\"%s\"} %llu\n", m, name,
                   (unsigned long long)fs.durations);
    }
}

/* One mapping's labels and counters, copied (mapping_info()'s strings do not last). */
struct map_snap {
    char name[72];
    char function[72];
    struct mapping_counters c;
};

struct part_metrics {
    struct buf *b;
    const char *mapping;
    int header;
};

static void partition_metric(void *arg, const struct source_partition_stat *st)
{
    struct part_metrics *pm = arg;

    if (st->lag < 0)
        return;
    if (!pm->header) {
        pm->header = 1;
        buf_puts(pm->b, "# HELP switchyard_mapping_partition_lag Records of the partition not "
                        "yet committed by the mapping (high watermark minus the commit "
                        "position: Lambda's OffsetLag)\n# TYPE switchyard_mapping_partition_lag "
                        "gauge\n");
    }
    /* Partition names are topic names ([a-zA-Z0-9._-]) and a number: no escaping. */
    buf_printf(pm->b, "switchyard_mapping_partition_lag{mapping=\"%s\",partition=\"%s\"} %lld\n",
               pm->mapping, st->name, (long long)st->lag);
}

/* switchyard_mapping_partition_lag{mapping,partition} for the ordered sources' partitions. */
static void partition_metrics(struct buf *b, struct mappings *ms)
{
    struct part_metrics pm = {.b = b};

    for (size_t i = 0; i < mappings_count(ms); i++) {
        struct mapping_info mi;

        mapping_info(mappings_at(ms, i), &mi);
        pm.mapping = mi.name;
        mapping_partitions(mappings_at(ms, i), partition_metric, &pm);
    }
}

/*
 * The METRICS_MAPPING families, labelled {mapping,function}. One snapshot of every mapping
 * first, so that all families of one scrape describe the same moment.
 */
static void mapping_metrics(struct buf *b, struct mappings *ms)
{
    size_t n = mappings_count(ms);
    struct map_snap *snap;

    if (n == 0)
        return;
    snap = calloc(n, sizeof(*snap));
    if (snap == NULL)
        return; /* the scrape goes out without them rather than not at all */
    for (size_t i = 0; i < n; i++) {
        struct mapping_info mi;

        mapping_info(mappings_at(ms, i), &mi);
        snprintf(snap[i].name, sizeof(snap[i].name), "%s", mi.name);
        snprintf(snap[i].function, sizeof(snap[i].function), "%s", mi.function);
        snap[i].c = mi.c;
    }
    /* Counters never reach 2^63; a negative value is a gauge's "unknown": no sample. */
#define MAPPING_METRIC(field, metric, type, help)                                                  \
    do {                                                                                           \
        buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", metric, help, metric, type);                 \
        for (size_t i = 0; i < n; i++) {                                                           \
            long long v = (long long)snap[i].c.field;                                              \
                                                                                                   \
            if (v >= 0)                                                                            \
                buf_printf(b, "%s{mapping=\"%s\",function=\"%s\"} %lld\n", metric, snap[i].name,   \
                           snap[i].function, v);                                                   \
        }                                                                                          \
    } while (0);
    METRICS_MAPPING(MAPPING_METRIC)
#undef MAPPING_METRIC
    free(snap);
    partition_metrics(b, ms);
}

void api_metrics(struct api_call *call, const char *arg)
{
    struct api *api = call->api;
    struct dispatcher_stats st;
    size_t n = dispatcher_function_count(api->dsp);
    struct buf b = {0};
    char *body;
    size_t len;

    dispatcher_stats(api->dsp, &st);
#define METRIC_LINE(field, metric, type, help)                                                     \
    buf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", metric, help, metric, type, metric,    \
               (unsigned long long)st.field);
    METRICS_BROKER(METRIC_LINE)
#undef METRIC_LINE
    /* Function names are [A-Za-z0-9_-] (config-checked): no label escaping needed. */
#define FUNCTION_METRIC(field, metric, type, help)                                                 \
    do {                                                                                           \
        buf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", metric, help, metric, type);                \
        for (size_t i = 0; i < n; i++) {                                                           \
            struct function *fn = dispatcher_function_at(api->dsp, i);                             \
            struct fn_counts c = {0, 0};                                                           \
                                                                                                   \
            function_env_counts(fn, &c.environments, &c.busy);                                     \
            buf_printf(&b, "%s{function=\"%s\"} %u\n", metric, function_cfg(fn)->name, c.field);   \
        }                                                                                          \
    } while (0);
    METRICS_FUNCTION(FUNCTION_METRIC)
#undef FUNCTION_METRIC
#define FUNCTION_STAT(field, metric, type, help)                                                   \
    do {                                                                                           \
        buf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", metric, help, metric, type);                \
        for (size_t i = 0; i < n; i++) {                                                           \
            struct function *fn = dispatcher_function_at(api->dsp, i);                             \
            struct function_stats fs;                                                              \
                                                                                                   \
            function_stats(fn, &fs);                                                               \
            buf_printf(&b, "%s{function=\"%s\"} %llu\n", metric, function_cfg(fn)->name,           \
                       (unsigned long long)fs.field);                                              \
        }                                                                                          \
    } while (0);
    METRICS_FUNCTION_STATS(FUNCTION_STAT)
#undef FUNCTION_STAT
    duration_histogram(&b, api->dsp);
    if (api->ms != NULL)
        mapping_metrics(&b, api->ms);
    if (api->aq != NULL) {
        struct asyncq_stats as;

        asyncq_stats(api->aq, &as);
#define ASYNC_LINE(field, metric, type, help)                                                      \
    buf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", metric, help, metric, type, metric,    \
               (unsigned long long)as.field);
        METRICS_ASYNC(ASYNC_LINE)
#undef ASYNC_LINE
    }
    body = buf_take(&b, &len);
    if (body == NULL) {
        api_reply_error(call, API_E_SERVICE, "out of memory");
        return;
    }
    api_reply_take(call, 200,
                   (const char *const[]){"Content-Type", "text/plain; version=0.0.4", NULL}, body,
                   len);
}
