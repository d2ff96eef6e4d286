/*
 * core/httpd.h - a small HTTP/1.1 server on the broker's libevent loop.
 *
 * Used by the control API and by every execution environment's Runtime API listener. We do not
 * use evhttp because we need three things it does not give: (1) a request may be answered much
 * later (a held-open `invocation/next`, a sync invoke waiting for its function) and we must learn
 * when its client goes away meanwhile; (2) an oversized body must reach our handler (to answer
 * with Lambda's own 413 error and fail the invocation), not be refused inside the library;
 * (3) the hot path (one warm invoke) should cost as few copies and allocations as possible.
 *
 * Supported: keep-alive (HTTP/1.1 default, HTTP/1.0 with `Connection: keep-alive`), bodies with
 * Content-Length or chunked transfer coding, `Expect: 100-continue`. Requests on one connection
 * are handled strictly one at a time (pipelined requests wait in the input buffer).
 *
 * Everything here is loop-thread only.
 */
#ifndef SY_HTTPD_H
#define SY_HTTPD_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"

struct event_base;
struct httpd;
struct httpd_req;

/*
 * Called once per complete request (headers and body read, or body refused as too large).
 * The handler must eventually call httpd_reply() (now or later) unless the close callback ran
 * first. The request is borrowed until then.
 */
typedef void httpd_handler_fn(struct httpd_req *req, void *arg);

/*
 * Called when the client connection of a request that has not been answered yet dies. After it
 * returns the request is freed: never touch it again, and never reply to it.
 */
typedef void httpd_close_fn(struct httpd_req *req, void *arg);

/*
 * Listen on HOST:PORT (PORT 0 = any free port; see httpd_port()). Bodies over MAX_BODY bytes
 * are not buffered: the handler runs with httpd_req_too_large() true and the connection is
 * closed after the reply. Returns new (free with httpd_destroy()) or NULL with ERR filled.
 */
struct httpd *httpd_create(struct event_base *base, const char *host, int port, size_t max_body,
                           httpd_handler_fn *handler, void *arg, struct sy_error *err);

/* The port actually bound. */
int httpd_port(const struct httpd *srv);

/* Stop accepting new connections (existing ones go on). Idempotent. */
void httpd_stop_listening(struct httpd *srv);

/* Number of requests received but not yet answered. */
size_t httpd_pending(const struct httpd *srv);

/*
 * Close the listener and every connection. Pending requests get their close callback (if set)
 * first. NULL is a no-op. Must not be called from inside this server's own callbacks.
 */
void httpd_destroy(struct httpd *srv);

/* Request accessors; all returned pointers are borrowed from REQ. */
const char *httpd_req_method(const struct httpd_req *req);
/* Path without the query string, percent-decoded. */
const char *httpd_req_path(const struct httpd_req *req);
/* The raw query string (after '?'), or "" when absent. */
const char *httpd_req_query(const struct httpd_req *req);
/* Value of query parameter NAME percent-decoded into OUT (OUTSZ bytes); NULL if absent. */
const char *httpd_req_query_param(const struct httpd_req *req, const char *name, char *out,
                                  size_t outsz);
/* Header value by case-insensitive name, or NULL. */
const char *httpd_req_header(const struct httpd_req *req, const char *name);
/* The body (NUL-terminated for convenience; LEN excludes the NUL). Never NULL. */
const char *httpd_req_body(const struct httpd_req *req, size_t *len);
/* Take the body: returns new (caller frees), leaves the request's body empty. */
char *httpd_req_take_body(struct httpd_req *req, size_t *len);
/* True when the body exceeded max_body and was discarded. */
int httpd_req_too_large(const struct httpd_req *req);
/* The size the client announced (Content-Length), or the bytes seen so far for chunked. */
size_t httpd_req_body_size(const struct httpd_req *req);
/* Set (or clear, with NULL) the callback run if the client goes away before the reply. */
void httpd_req_set_close_cb(struct httpd_req *req, httpd_close_fn *cb, void *arg);
/* Opaque per-request pointer for the handler's own use. */
void httpd_req_set_data(struct httpd_req *req, void *data);
void *httpd_req_data(const struct httpd_req *req);

/*
 * Answer REQ and free it. HEADERS is NULL or a NULL-terminated array of name, value, name,
 * value...; Content-Length, Date-less minimal framing and Connection are added here. BODY is
 * copied (LEN bytes; NULL with 0 for none). After this call REQ is gone.
 */
void httpd_reply(struct httpd_req *req, int status, const char *const *headers, const void *body,
                 size_t len);

/* As httpd_reply() but takes BODY (malloc'd; freed here) to avoid a copy of large bodies. */
void httpd_reply_take(struct httpd_req *req, int status, const char *const *headers, char *body,
                      size_t len);

#endif
