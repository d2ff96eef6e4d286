/*
 * broker/api_invoke.c - `POST /2015-03-31/functions/{FunctionName}/invocations`.
 *
 * Checks, in this order (each failure is answered the way Lambda answers it):
 *   1. X-Amz-Invocation-Type is RequestResponse (default), Event or DryRun   -> 400
 *   2. the body fits the limit of that type (6 MiB sync, 1 MiB Event)        -> 413
 *   3. FunctionName / Qualifier resolve to a function's $LATEST              -> 400 / 404
 *   4. Event: not in this build yet (a clear 400, never a silent drop)      -> 400
 *   5. X-Amz-Log-Type is None or Tail                                        -> 400
 *   6. the body is JSON (an empty body is passed on as an empty payload)    -> 400
 *   7. X-Amz-Client-Context is base64 of a JSON object, <= 3583 bytes       -> 400
 * then DryRun answers 204 and RequestResponse goes to dispatcher_invoke(); the answer is sent
 * from its done callback. If the client goes away first, the request's close callback cancels
 * the done callback (the function still runs to completion in its environment).
 */
#include "api_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/log.h"
#include "core/jsoncheck.h"
#include "core/b64.h"

#define CLIENT_CONTEXT_MAX 3583 /* bytes of base64, Lambda's limit */

enum inv_type {
    INV_TYPE_SYNC,
    INV_TYPE_EVENT,
    INV_TYPE_DRYRUN,
};

/* The dispatcher's answer for a sync invoke. CALL is still ours: the client did not go away. */
static void invoke_done(const struct invoke_result *res, void *arg)
{
    struct api_call *call = arg;
    const char *hdrs[16];
    size_t k = 0;
    char *tail = NULL;

    if (call == NULL || call->magic != CALL_MAGIC)
        abort(); /* our own invariant: cancelled calls never get here */
    httpd_req_set_close_cb(call->req, NULL, NULL);
    switch (res->status) {
    case INVOKE_OK:
    case INVOKE_FUNCTION_ERROR:
        hdrs[k++] = "Content-Type";
        hdrs[k++] = res->content_type != NULL ? res->content_type : "application/json";
        hdrs[k++] = "X-Amz-Executed-Version";
        hdrs[k++] = res->executed_version != NULL ? res->executed_version : "$LATEST";
        if (res->status == INVOKE_FUNCTION_ERROR) {
            hdrs[k++] = "X-Amz-Function-Error";
            hdrs[k++] = "Unhandled";
        }
        if (call->want_tail) {
            /* Always present when asked for, like Lambda's (whose tail is never empty). */
            tail = b64_encode_new(res->log_tail != NULL ? res->log_tail : "",
                                  res->log_tail != NULL ? res->log_tail_len : 0);
            if (tail != NULL) {
                hdrs[k++] = "X-Amz-Log-Result";
                hdrs[k++] = tail;
            }
        }
        hdrs[k] = NULL;
        /* The function's request id is the answer's request id (what the handler saw). */
        snprintf(call->request_id, sizeof(call->request_id), "%s", res->request_id);
        if (res->status == INVOKE_FUNCTION_ERROR)
            log_debug("[function:%s] request %s ended with %s", call->fname, res->request_id,
                      res->error_type ? res->error_type : "a function error");
        api_reply(call, 200, hdrs, res->body, res->body_len);
        free(tail);
        return;
    case INVOKE_THROTTLED:
        api_reply_throttled(call, res->throttle_reason);
        return;
    case INVOKE_SERVICE_ERROR:
    default:
        api_reply_error(call, API_E_SERVICE, "%.*s",
                        (int)(res->body_len > 900 ? 900 : res->body_len), res->body);
        return;
    }
}

/* The client went away while its function runs: forget the callback, free the call. */
static void invoke_closed(struct httpd_req *req, void *arg)
{
    struct api_call *call = arg;

    if (call == NULL || call->magic != CALL_MAGIC)
        abort();
    log_debug("[api] request %s: client went away while %s ran; the result will be dropped",
              call->request_id, call->fname);
    dispatcher_cancel(call->api->dsp, call);
    api_call_free(call);
}

/*
 * Decode and check X-Amz-Client-Context (HDR, not NULL). Returns new (the JSON text; caller
 * frees) or NULL after answering CALL.
 */
static char *client_context(struct api_call *call, const char *hdr)
{
    size_t len = strlen(hdr), dlen;
    char *dec;
    json_t *j;

    if (len > CLIENT_CONTEXT_MAX) {
        api_reply_error(call, API_E_BAD_CONTENT,
                        "Client context must be at most %d bytes of base64 (got %zu)",
                        CLIENT_CONTEXT_MAX, len);
        return NULL;
    }
    dec = b64_decode_new(hdr, len, &dlen);
    j = dec != NULL ? json_loadb(dec, dlen, 0, NULL) : NULL;
    if (j == NULL || !json_is_object(j)) {
        json_decref(j);
        free(dec);
        api_reply_error(call, API_E_BAD_CONTENT,
                        "Client context must be a valid Base64-encoded JSON object.");
        return NULL;
    }
    json_decref(j);
    return dec;
}

void api_invoke(struct api_call *call, const char *arg)
{
    struct httpd_req *req = call->req;
    struct api *api = call->api;
    const char *itype_hdr = httpd_req_header(req, "X-Amz-Invocation-Type");
    const char *ltype = httpd_req_header(req, "X-Amz-Log-Type");
    const char *cc_hdr = httpd_req_header(req, "X-Amz-Client-Context");
    enum inv_type itype;
    struct function *fn;
    char qbuf[160], qualifier[136], invoked_arn[300];
    const char *query_q;
    const char *body;
    size_t body_len, size;
    char *cc = NULL;
    struct invoke_req ireq;
    int rc;

    if (itype_hdr == NULL || strcmp(itype_hdr, "RequestResponse") == 0) {
        itype = INV_TYPE_SYNC;
    } else if (strcmp(itype_hdr, "Event") == 0) {
        itype = INV_TYPE_EVENT;
    } else if (strcmp(itype_hdr, "DryRun") == 0) {
        itype = INV_TYPE_DRYRUN;
    } else {
        api_reply_error(call, API_E_BAD_PARAM,
                        "Invalid X-Amz-Invocation-Type '%.64s': expected RequestResponse, Event "
                        "or DryRun",
                        itype_hdr);
        return;
    }

    body = httpd_req_body(req, &body_len);
    size = httpd_req_too_large(req) ? httpd_req_body_size(req) : body_len;
    if (itype == INV_TYPE_EVENT && size > SY_ASYNC_PAYLOAD_MAX) {
        api_reply_error(call, API_E_TOO_LARGE,
                        "%zu byte payload is too large for the Event invocation type (limit %u "
                        "bytes)",
                        size, SY_ASYNC_PAYLOAD_MAX);
        return;
    }
    if (httpd_req_too_large(req) || size > SY_SYNC_PAYLOAD_MAX) {
        api_reply_error(call, API_E_TOO_LARGE,
                        "Request must be smaller than %u bytes for the InvokeFunction operation",
                        SY_SYNC_PAYLOAD_MAX);
        return;
    }

    query_q = httpd_req_query_param(req, "Qualifier", qbuf, sizeof(qbuf));
    fn = api_resolve_function(call, arg, query_q, qualifier, sizeof(qualifier));
    if (fn == NULL)
        return; /* answered */

    if (ltype != NULL && strcmp(ltype, "None") != 0 && strcmp(ltype, "Tail") != 0) {
        api_reply_error(call, API_E_BAD_PARAM,
                        "Invalid X-Amz-Log-Type '%.64s': expected None or Tail", ltype);
        return;
    }
    call->want_tail = ltype != NULL && strcmp(ltype, "Tail") == 0;

    /* Lambda passes an empty body on as an empty payload; anything else must be JSON. */
    if (body_len > 0 && !jsoncheck(body, body_len)) {
        /* Only a refused body is parsed again, by jansson, for its error position. */
        json_error_t jerr;
        json_t *j = json_loadb(body, body_len, JSON_DECODE_ANY, &jerr);

        if (j == NULL) {
            api_reply_error(call, API_E_BAD_CONTENT,
                            "Could not parse request body into json: %s (line %d, column %d)",
                            jerr.text, jerr.line, jerr.column);
            return;
        }
        json_decref(j);
    }
    if (cc_hdr != NULL && (cc = client_context(call, cc_hdr)) == NULL)
        return; /* answered */

    if (itype == INV_TYPE_EVENT) {
        free(cc); /* Lambda does not pass a client context to async invocations either */
        api_invoke_event(call, fn, body, body_len);
        return;
    }
    if (itype == INV_TYPE_DRYRUN) {
        free(cc);
        api_reply(call, 204,
                  (const char *const[]){"X-Amz-Executed-Version", function_version_name(fn), NULL},
                  NULL, 0);
        return;
    }

    memset(&ireq, 0, sizeof(ireq));
    ireq.payload = body;
    ireq.payload_len = body_len;
    ireq.request_id = call->request_id;
    ireq.client_context = cc;
    ireq.trace_id = httpd_req_header(req, "X-Amzn-Trace-Id");
    ireq.want_log_tail = call->want_tail;
    if (qualifier[0] != '\0') {
        /* context.invoked_function_arn carries the qualifier when the caller gave one. */
        snprintf(invoked_arn, sizeof(invoked_arn), "%s:%s", function_arn(function_head(fn)),
                 qualifier);
        ireq.invoked_arn = invoked_arn;
    }
    rc = dispatcher_invoke(api->dsp, fn, &ireq, invoke_done, call);
    free(cc);
    if (rc == SY_ESTATE) {
        api_reply_error(call, API_E_UNAVAILABLE,
                        "The broker is shutting down and accepts no new invocations.");
        return;
    }
    if (rc != 0) {
        api_reply_error(call, API_E_SERVICE, "Cannot start the invocation: %s", sy_strerror(rc));
        return;
    }
    /* DONE never runs before we return (dispatcher contract), so this is in time. */
    httpd_req_set_close_cb(req, invoke_closed, call);
}
