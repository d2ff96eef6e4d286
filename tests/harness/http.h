/*
 * tests/harness/http.h - a small blocking HTTP/1.1 client for driving the broker's control API:
 * one request at a time per connection, keep-alive optional, Content-Length and chunked
 * response bodies, 1xx interim responses skipped, every wait bounded by a deadline.
 *
 * Thread-safe as long as a connection is used by one thread at a time: tests run concurrent
 * invokes from threads, each on its own connection.
 */
#ifndef SY_HARNESS_HTTP_H
#define SY_HARNESS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct h_http_hdr {
    char *name;
    char *value;
};

/* A response; free with h_http_resp_free(). */
struct h_http_resp {
    int status;              /* e.g. 200; 0 when nothing was received */
    struct h_http_hdr *hdrs; /* in arrival order */
    size_t n_hdrs;
    char *body; /* NUL-terminated (the NUL is not counted); never NULL on success */
    size_t body_len;
};

/* An open connection (opaque). */
struct h_http_conn;

/* Connect to HOST:PORT (numeric IPv4/IPv6) within TIMEOUT_MS. Returns new, or NULL. */
struct h_http_conn *h_http_connect(const char *host, int port, int timeout_ms);

/* Close and free C. NULL is a no-op. */
void h_http_close(struct h_http_conn *c);

/*
 * Send one request on C and read its response, everything within TIMEOUT_MS. HEADERS is a
 * NULL-terminated list of "Name: value" lines (may be NULL); Host and Content-Length are added
 * (Content-Length for any BODY, and for POST/PUT without one). When the server answers before
 * the whole body was written (e.g. 413) the response is still read. Returns 0 with RESP filled,
 * or -1 (RESP freed and zeroed) on a connection error or the deadline. After a response with
 * "Connection: close" C must be closed.
 */
int h_http_conn_request(struct h_http_conn *c, const char *method, const char *path,
                        const char *const headers[], const void *body, size_t body_len,
                        int timeout_ms, struct h_http_resp *resp);

/* One request on a fresh connection ("Connection: close"); as h_http_conn_request(). */
int h_http_request(const char *host, int port, const char *method, const char *path,
                   const char *const headers[], const void *body, size_t body_len, int timeout_ms,
                   struct h_http_resp *resp);

/* Value of the first header called NAME (case-insensitive), borrowed from R; NULL if absent. */
const char *h_http_header(const struct h_http_resp *r, const char *name);

/* Free what R holds and zero it. */
void h_http_resp_free(struct h_http_resp *r);

/* The response as text for failure messages: status, headers, the first 2 KB of the body.
 * Returns new. */
char *h_http_resp_describe(const struct h_http_resp *r);

#endif
