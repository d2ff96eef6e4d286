/*
 * dispatcher/rtapi.h - one execution environment's Lambda Runtime API endpoint.
 *
 * Each environment gets its own loopback listener (AWS_LAMBDA_RUNTIME_API=127.0.0.1:PORT), so a
 * request on it can only come from that environment and every state question is local:
 *
 *   WAITING  --(GET next arrives)-->           HELD     (the request is held open)
 *   HELD     --(rtapi_deliver)-->              INVOKING (200 + event sent on the held next)
 *   INVOKING --(POST {id}/response | error)--> WAITING  (202; owner told through on_result)
 *   any      --(POST init/error)-->            owner told through on_init_error
 *
 * Misbehaviour gets the Runtime API's own errors and never disturbs the owner: an unknown
 * request id → 400 InvalidRequestID, a second response for a finished invocation or a `next`
 * while one is held or while invoking → 403 InvalidStateTransition, a response above
 * SY_RESPONSE_PAYLOAD_MAX → 413 RequestEntityTooLarge (and the owner is told: the caller gets
 * Function.ResponseSizeTooLarge).
 *
 * Loop-thread only. Callbacks run from the listener's request handler, never from inside an
 * rtapi_* call.
 */
#ifndef SY_RTAPI_H
#define SY_RTAPI_H

#include <stddef.h>
#include <stdint.h>

#include "core/errors.h"

struct event_base;
struct rtapi;

enum rtapi_result_kind {
    RTAPI_RESPONSE,  /* POST .../response */
    RTAPI_ERROR,     /* POST .../error */
    RTAPI_TOO_LARGE, /* POST .../response with a body over the limit (body not kept) */
};

/* Callbacks to the environment that owns the endpoint. Strings are borrowed for the call. */
struct rtapi_ops {
    /* The runtime is waiting on `next` (first time: INIT is done). */
    void (*on_next)(void *arg);
    /* The current invocation finished. BODY is taken: the callee frees it. ERROR_TYPE is the
     * Lambda-Runtime-Function-Error-Type header (RTAPI_ERROR only; may be NULL). */
    void (*on_result)(void *arg, enum rtapi_result_kind kind, char *body, size_t len,
                      const char *content_type, const char *error_type);
    /* POST /runtime/init/error. BODY is taken. */
    void (*on_init_error)(void *arg, char *body, size_t len, const char *error_type);
};

/* One event for rtapi_deliver(); all strings borrowed for the call. */
struct rtapi_event {
    const char *request_id;
    const char *payload;
    size_t payload_len;
    uint64_t deadline_ms;       /* absolute, Unix epoch ms */
    const char *function_arn;
    const char *trace_id;
    const char *client_context; /* or NULL */
};

/* Listen on 127.0.0.1:0. Returns new (rtapi_destroy()) or NULL with ERR filled. */
struct rtapi *rtapi_create(struct event_base *base, const struct rtapi_ops *ops, void *arg,
                           struct sy_error *err);

/* The port to put in AWS_LAMBDA_RUNTIME_API. */
int rtapi_port(const struct rtapi *api);

/* True when a `next` is held open (the runtime is ready for an event). */
int rtapi_ready(const struct rtapi *api);

/* Answer the held `next` with EV. Returns 0, or SY_ESTATE when no `next` is held. */
int rtapi_deliver(struct rtapi *api, const struct rtapi_event *ev);

/* Forget the current invocation (timed out, abandoned): later posts for it get 403. */
void rtapi_abandon(struct rtapi *api);

/* Close the listener and connections. NULL is a no-op. Not from inside an ops callback. */
void rtapi_destroy(struct rtapi *api);

#endif
