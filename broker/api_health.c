/*
 * broker/api_health.c - `GET /healthz` (JSON, no auth) and `GET /metrics` (Prometheus text
 * exposition format 0.0.4), both from dispatcher_stats() and function_env_counts() through the
 * tables of metrics_list.h.
 */
#include "api_int.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "config/config.h"
#include "dispatcher/asyncq.h"
#include "metrics_list.h"
#include "core/buf.h"

/* The per-function values METRICS_FUNCTION() names (member = its `field`). */
struct fn_counts {
    unsigned environments;
    unsigned busy;
};

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
    if (api->aq != NULL) {
        struct asyncq_stats as;

        asyncq_stats(api->aq, &as);
#define ASYNC_LINE(field, metric, type, help)                                                      \
    buf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", metric, help, metric, type, metric,  \
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
