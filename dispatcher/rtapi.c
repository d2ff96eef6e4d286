/*
 * dispatcher/rtapi.c - the Lambda Runtime API endpoint of one execution environment
 * (state machine described in rtapi.h).
 */
#include "rtapi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/httpd.h"
#include "core/log.h"
#include "dispatcher.h"

#define RTAPI_MAGIC 0x52544150u /* "RTAP" */
#define PREFIX "/2018-06-01/runtime/"

enum rtapi_state {
    RT_WAITING,  /* no `next` held, no invocation */
    RT_HELD,     /* `next` held open */
    RT_INVOKING, /* event delivered; waiting for response/error */
};

struct rtapi {
    unsigned magic;
    struct httpd *srv;
    const struct rtapi_ops *ops;
    void *arg;
    enum rtapi_state state;
    struct httpd_req *next_req;
    char cur_id[64];  /* request id being invoked */
    char last_id[64]; /* last finished or abandoned id (double-post detection) */
};

static const char *const json_hdrs[] = {"Content-Type", "application/json", NULL};

static void reply_json(struct httpd_req *req, int status, const char *type, const char *msg)
{
    char body[512];
    int n = snprintf(body, sizeof(body), "{\"errorType\":\"%s\",\"errorMessage\":\"%s\"}", type, msg);

    httpd_reply(req, status, json_hdrs, body, (size_t)n);
}

static void reply_accepted(struct httpd_req *req)
{
    static const char ok[] = "{\"status\":\"OK\"}";

    httpd_reply(req, 202, json_hdrs, ok, sizeof(ok) - 1);
}

static void next_closed(struct httpd_req *req, void *arg)
{
    struct rtapi *api = arg;

    /* The runtime's connection died while waiting: no event can be delivered on it. */
    if (api->next_req == req) {
        api->next_req = NULL;
        if (api->state == RT_HELD)
            api->state = RT_WAITING;
    }
}

static void handle_next(struct rtapi *api, struct httpd_req *req)
{
    if (api->state == RT_HELD) {
        reply_json(req, 403, "InvalidStateTransition",
                   "State transition from Ready to InvocationNext is not allowed: a next request "
                   "is already pending");
        return;
    }
    if (api->state == RT_INVOKING) {
        reply_json(req, 403, "InvalidStateTransition",
                   "State transition from Running to InvocationNext is not allowed: post the "
                   "response or error of the current invocation first");
        return;
    }
    api->state = RT_HELD;
    api->next_req = req;
    httpd_req_set_close_cb(req, next_closed, api);
    api->ops->on_next(api->arg);
}

/* Check {id} of a response/error post. Returns 0 when it is the current invocation. */
static int check_id(struct rtapi *api, struct httpd_req *req, const char *id)
{
    if (api->state == RT_INVOKING && strcmp(id, api->cur_id) == 0)
        return 0;
    if (api->last_id[0] != '\0' && strcmp(id, api->last_id) == 0)
        reply_json(req, 403, "InvalidStateTransition",
                   "Invalid state transition: a response or error was already accepted for this "
                   "request id, or the invocation is over");
    else
        reply_json(req, 400, "InvalidRequestID", "Invalid request ID");
    return -1;
}

static void finish_current(struct rtapi *api)
{
    snprintf(api->last_id, sizeof(api->last_id), "%s", api->cur_id);
    api->cur_id[0] = '\0';
    api->state = RT_WAITING;
}

static void handle_result(struct rtapi *api, struct httpd_req *req, const char *id, int is_error)
{
    char *body;
    size_t len;
    char ctype[128] = "";
    char etype[128] = "";
    const char *h;

    if (check_id(api, req, id) != 0)
        return;
    if (httpd_req_too_large(req)) {
        finish_current(api);
        reply_json(req, 413, "RequestEntityTooLarge",
                   "Exceeded maximum allowed payload size (6291556 bytes).");
        api->ops->on_result(api->arg, RTAPI_TOO_LARGE, NULL, 0, NULL, NULL);
        return;
    }
    /* Copy what we need before the reply frees the request. */
    h = httpd_req_header(req, "Content-Type");
    if (h != NULL)
        snprintf(ctype, sizeof(ctype), "%s", h);
    h = httpd_req_header(req, "Lambda-Runtime-Function-Error-Type");
    if (h != NULL)
        snprintf(etype, sizeof(etype), "%s", h);
    body = httpd_req_take_body(req, &len);
    finish_current(api);
    reply_accepted(req);
    api->ops->on_result(api->arg, is_error ? RTAPI_ERROR : RTAPI_RESPONSE, body, len,
                        ctype[0] ? ctype : NULL, etype[0] ? etype : NULL);
}

static void handle_init_error(struct rtapi *api, struct httpd_req *req)
{
    char etype[128] = "";
    const char *h = httpd_req_header(req, "Lambda-Runtime-Function-Error-Type");
    char *body;
    size_t len;

    if (h != NULL)
        snprintf(etype, sizeof(etype), "%s", h);
    body = httpd_req_take_body(req, &len);
    reply_accepted(req);
    api->ops->on_init_error(api->arg, body, len, etype[0] ? etype : NULL);
}

static void rtapi_handler(struct httpd_req *req, void *arg)
{
    struct rtapi *api = arg;
    const char *method = httpd_req_method(req);
    const char *path = httpd_req_path(req);
    const char *rest;

    if (api->magic != RTAPI_MAGIC) {
        reply_json(req, 500, "InternalServerError", "environment is gone");
        return;
    }
    if (strncmp(path, PREFIX, strlen(PREFIX)) != 0) {
        reply_json(req, 404, "NotFound", "Unknown Runtime API path (extensions are not supported)");
        return;
    }
    rest = path + strlen(PREFIX);
    if (strcmp(rest, "invocation/next") == 0) {
        if (strcmp(method, "GET") != 0) {
            reply_json(req, 405, "MethodNotAllowed", "invocation/next takes GET");
            return;
        }
        handle_next(api, req);
        return;
    }
    if (strcmp(rest, "init/error") == 0) {
        if (strcmp(method, "POST") != 0) {
            reply_json(req, 405, "MethodNotAllowed", "init/error takes POST");
            return;
        }
        handle_init_error(api, req);
        return;
    }
    if (strncmp(rest, "invocation/", 11) == 0) {
        const char *id = rest + 11;
        const char *slash = strchr(id, '/');
        char idbuf[64];
        size_t idlen;

        if (slash != NULL && strcmp(method, "POST") == 0 &&
            (strcmp(slash, "/response") == 0 || strcmp(slash, "/error") == 0)) {
            idlen = (size_t)(slash - id);
            if (idlen == 0 || idlen >= sizeof(idbuf)) {
                reply_json(req, 400, "InvalidRequestID", "Invalid request ID");
                return;
            }
            memcpy(idbuf, id, idlen);
            idbuf[idlen] = '\0';
            handle_result(api, req, idbuf, strcmp(slash, "/error") == 0);
            return;
        }
    }
    reply_json(req, 404, "NotFound", "Unknown Runtime API path");
}

struct rtapi *rtapi_create(struct event_base *base, const struct rtapi_ops *ops, void *arg,
                           struct sy_error *err)
{
    struct rtapi *api = calloc(1, sizeof(*api));

    if (api == NULL) {
        sy_error_set(err, "out of memory");
        return NULL;
    }
    api->magic = RTAPI_MAGIC;
    api->ops = ops;
    api->arg = arg;
    api->state = RT_WAITING;
    api->srv = httpd_create(base, "127.0.0.1", 0, SY_RESPONSE_PAYLOAD_MAX, rtapi_handler, api, err);
    if (api->srv == NULL) {
        free(api);
        return NULL;
    }
    return api;
}

int rtapi_port(const struct rtapi *api)
{
    return httpd_port(api->srv);
}

int rtapi_ready(const struct rtapi *api)
{
    return api->state == RT_HELD && api->next_req != NULL;
}

int rtapi_deliver(struct rtapi *api, const struct rtapi_event *ev)
{
    char deadline[32];
    const char *hdrs[16];
    size_t k = 0;
    struct httpd_req *req = api->next_req;

    if (!rtapi_ready(api))
        return SY_ESTATE;
    snprintf(deadline, sizeof(deadline), "%llu", (unsigned long long)ev->deadline_ms);
    hdrs[k++] = "Content-Type";
    hdrs[k++] = "application/json";
    hdrs[k++] = "Lambda-Runtime-Aws-Request-Id";
    hdrs[k++] = ev->request_id;
    hdrs[k++] = "Lambda-Runtime-Deadline-Ms";
    hdrs[k++] = deadline;
    hdrs[k++] = "Lambda-Runtime-Invoked-Function-Arn";
    hdrs[k++] = ev->function_arn;
    hdrs[k++] = "Lambda-Runtime-Trace-Id";
    hdrs[k++] = ev->trace_id;
    if (ev->client_context != NULL && ev->client_context[0] != '\0') {
        hdrs[k++] = "Lambda-Runtime-Client-Context";
        hdrs[k++] = ev->client_context;
    }
    hdrs[k] = NULL;

    api->next_req = NULL;
    api->state = RT_INVOKING;
    snprintf(api->cur_id, sizeof(api->cur_id), "%s", ev->request_id);
    httpd_req_set_close_cb(req, NULL, NULL);
    httpd_reply(req, 200, hdrs, ev->payload, ev->payload_len);
    return 0;
}

void rtapi_abandon(struct rtapi *api)
{
    if (api->state == RT_INVOKING)
        finish_current(api);
}

void rtapi_destroy(struct rtapi *api)
{
    if (api == NULL)
        return;
    /* Held requests' close callbacks run inside httpd_destroy and touch api: keep it valid. */
    httpd_destroy(api->srv);
    api->magic = 0;
    free(api);
}
