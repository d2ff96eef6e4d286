/*
 * broker/api_async.c - the asynchronous side of the control API:
 *
 *   POST /2015-03-31/functions/{name}/invocations, X-Amz-Invocation-Type: Event
 *        -> 202 (empty body, x-amzn-RequestId = the event's request id) once the event is
 *           durably stored; 500 ServiceException when it could not be stored (disk full...)
 *   GET  /switchyard/v1/dlq[?function=NAME&limit=N]      list local dead letters
 *   GET  /switchyard/v1/dlq/{id}                          one, with payload and history
 *   POST /switchyard/v1/dlq/redrive  {"function"|"id"|"all", "limit"}  -> {"redriven","remaining"}
 *   POST /switchyard/v1/dlq/purge    {"function"|"id"|"all"}           -> {"purged"}
 *
 * Every answer comes from a store callback; a client that goes away first cancels it.
 */
#include "api_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config/config.h"
#include "dispatcher/asyncq.h"
#include "core/log.h"

#define DLQ_LIST_DEFAULT 100
#define DLQ_LIST_MAX 10000
#define DLQ_REDRIVE_DEFAULT 1000
#define DLQ_REDRIVE_MAX 100000

static void call_closed(struct httpd_req *req, void *arg)
{
    struct api_call *call = arg;

    if (call == NULL || call->magic != CALL_MAGIC)
        abort();
    asyncq_cancel(call->api->aq, call);
    api_call_free(call);
}

/* ---- Event invoke ------------------------------------------------------------------------- */

static void event_stored(void *arg, int rc, const char *errmsg)
{
    struct api_call *call = arg;

    if (call == NULL || call->magic != CALL_MAGIC)
        abort();
    httpd_req_set_close_cb(call->req, NULL, NULL);
    if (rc == 0) {
        api_reply(call, 202, NULL, NULL, 0);
        return;
    }
    /* The store's message says what is known (an SQLite rollback: nothing was queued; a
     * shared queue that did not answer: it may have been). */
    if (rc == SY_ENOSPC)
        api_reply_error(call, API_E_SERVICE,
                        "The event was not stored: the queue store is full (%s). Retry once "
                        "space is freed.",
                        errmsg ? errmsg : "no space left");
    else
        api_reply_error(call, API_E_SERVICE, "The event was not stored: %s.",
                        errmsg ? errmsg : sy_strerror(rc));
}

void api_invoke_event(struct api_call *call, struct function *fn, const char *payload,
                      size_t len)
{
    struct api *api = call->api;
    int rc;

    if (api->aq == NULL) {
        api_reply_error(call, API_E_BAD_PARAM,
                        "Asynchronous invocation (X-Amz-Invocation-Type: Event) is not "
                        "available on this broker");
        return;
    }
    /* The 202's request id is the event's: the handler's context and every log line share it. */
    rc = asyncq_put(api->aq, fn, payload, len, call->request_id,
                    httpd_req_header(call->req, "X-Amzn-Trace-Id"), NULL, event_stored, call);
    if (rc == SY_ESTATE) {
        api_reply_error(call, API_E_UNAVAILABLE,
                        "The broker is shutting down and accepts no new invocations.");
        return;
    }
    if (rc != 0) {
        api_reply_error(call, API_E_SERVICE, "Cannot queue the event: %s", sy_strerror(rc));
        return;
    }
    httpd_req_set_close_cb(call->req, call_closed, call);
}

/* ---- dead letters ------------------------------------------------------------------------- */

static void dlq_answer(void *arg, int rc, json_t *result, const char *errmsg)
{
    struct api_call *call = arg;
    char *s;

    if (call == NULL || call->magic != CALL_MAGIC)
        abort();
    httpd_req_set_close_cb(call->req, NULL, NULL);
    if (rc == SY_ENOENT) {
        api_reply_error(call, API_E_NOT_FOUND, "%s", errmsg ? errmsg : "not found");
        return;
    }
    if (rc != 0 || result == NULL) {
        api_reply_error(call, API_E_SERVICE, "Dead-letter store: %s",
                        errmsg ? errmsg : rc != 0 ? sy_strerror(rc) : "out of memory");
        return;
    }
    s = json_dumps(result, JSON_COMPACT);
    if (s == NULL) {
        api_reply_error(call, API_E_SERVICE, "out of memory");
        return;
    }
    api_reply_take(call, 200, (const char *const[]){"Content-Type", "application/json", NULL}, s,
                   strlen(s));
}

/* After an asyncq_dlq_* call: answer errors now, or wait for DLQ_ANSWER. */
static void dlq_started(struct api_call *call, int rc)
{
    if (rc == SY_ESTATE) {
        api_reply_error(call, API_E_UNAVAILABLE, "The broker is shutting down.");
        return;
    }
    if (rc != 0) {
        api_reply_error(call, API_E_SERVICE, "Dead-letter store: %s", sy_strerror(rc));
        return;
    }
    httpd_req_set_close_cb(call->req, call_closed, call);
}

static int dlq_available(struct api_call *call)
{
    if (call->api->aq != NULL)
        return 1;
    api_reply_error(call, API_E_NOT_FOUND, "This broker has no async queue");
    return 0;
}

/* A positive integer query/body value, DEF when absent; -1 when malformed. */
static long parse_limit(const char *s, long def, long max)
{
    char *end;
    long v;

    if (s == NULL || s[0] == '\0')
        return def;
    v = strtol(s, &end, 10);
    if (*end != '\0' || v <= 0)
        return -1;
    return v > max ? max : v;
}

void api_dlq_list(struct api_call *call, const char *arg)
{
    char fbuf[80], lbuf[24];
    const char *fn, *lim;
    long limit;

    if (!dlq_available(call))
        return;
    fn = httpd_req_query_param(call->req, "function", fbuf, sizeof(fbuf));
    lim = httpd_req_query_param(call->req, "limit", lbuf, sizeof(lbuf));
    limit = parse_limit(lim, DLQ_LIST_DEFAULT, DLQ_LIST_MAX);
    if (limit < 0) {
        api_reply_error(call, API_E_BAD_PARAM, "limit must be a positive integer");
        return;
    }
    if (fn != NULL && fn[0] == '\0')
        fn = NULL;
    dlq_started(call, asyncq_dlq_list(call->api->aq, fn, (size_t)limit, dlq_answer, call));
}

void api_dlq_show(struct api_call *call, const char *arg)
{
    if (!dlq_available(call))
        return;
    dlq_started(call, asyncq_dlq_show(call->api->aq, arg, dlq_answer, call));
}

/*
 * The selection of a redrive/purge body: exactly one of "function", "id", "all": true.
 * Returns 0 (FN/ID set or both NULL for all, LIMIT filled) or -1 after answering.
 */
static int dlq_selection(struct api_call *call, json_t **root, const char **fn, const char **id,
                         long *limit)
{
    size_t len;
    const char *body = httpd_req_body(call->req, &len);
    json_error_t jerr;
    json_t *j, *lj;
    int n = 0;

    *root = NULL;
    *fn = *id = NULL;
    j = json_loadb(body != NULL ? body : "", len, 0, &jerr);
    if (j == NULL || !json_is_object(j)) {
        json_decref(j);
        api_reply_error(call, API_E_BAD_CONTENT,
                        "The body must be a JSON object: {\"function\": NAME} or {\"id\": ID} "
                        "or {\"all\": true}, with an optional \"limit\"");
        return -1;
    }
    if (json_object_get(j, "function") != NULL) {
        *fn = json_string_value(json_object_get(j, "function"));
        n++;
    }
    if (json_object_get(j, "id") != NULL) {
        *id = json_string_value(json_object_get(j, "id"));
        n++;
    }
    if (json_is_true(json_object_get(j, "all")))
        n++;
    lj = json_object_get(j, "limit");
    *limit = lj == NULL ? DLQ_REDRIVE_DEFAULT
             : json_is_integer(lj) && json_integer_value(lj) > 0
                 ? (long)(json_integer_value(lj) > DLQ_REDRIVE_MAX ? DLQ_REDRIVE_MAX
                                                                    : json_integer_value(lj))
                 : -1;
    if (n != 1 || (json_object_get(j, "function") != NULL && *fn == NULL) ||
        (json_object_get(j, "id") != NULL && *id == NULL) || *limit < 0) {
        json_decref(j);
        api_reply_error(call, API_E_BAD_PARAM,
                        "Give exactly one of \"function\" (a string), \"id\" (a string) or "
                        "\"all\": true; \"limit\" must be a positive integer");
        return -1;
    }
    if (*fn != NULL && cfg_function_find(call->api->cfg, *fn) == NULL) {
        api_reply_error(call, API_E_NOT_FOUND, "Function not found: %.80s", *fn);
        json_decref(j);
        return -1;
    }
    *root = j;
    return 0;
}

void api_dlq_redrive(struct api_call *call, const char *arg)
{
    json_t *root;
    const char *fn, *id;
    long limit;
    int rc;

    if (!dlq_available(call) || dlq_selection(call, &root, &fn, &id, &limit) != 0)
        return;
    rc = asyncq_dlq_redrive(call->api->aq, fn, id, (size_t)limit, dlq_answer, call);
    json_decref(root);
    dlq_started(call, rc);
}

void api_dlq_purge(struct api_call *call, const char *arg)
{
    json_t *root;
    const char *fn, *id;
    long limit;
    int rc;

    if (!dlq_available(call) || dlq_selection(call, &root, &fn, &id, &limit) != 0)
        return;
    rc = asyncq_dlq_purge(call->api->aq, fn, id, dlq_answer, call);
    json_decref(root);
    dlq_started(call, rc);
}
