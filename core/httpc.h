/*
 * core/httpc.h - a small blocking HTTP/1.1 client for the CLI (`switchyard invoke`,
 * `switchyard status`). Never used on the broker's loop: every call blocks the calling thread
 * (bounded by the timeouts given).
 *
 * Plain http:// only. One request per connection (`Connection: close`); responses framed by
 * Content-Length, chunked transfer coding or the end of the connection.
 */
#ifndef SY_HTTPC_H
#define SY_HTTPC_H

#include <stddef.h>

#include "errors.h"

/* A parsed endpoint URL: http://HOST[:PORT][/PREFIX]. */
struct httpc_url {
    char host[256];   /* brackets of an IPv6 literal removed */
    char port[8];     /* "80" when absent */
    char prefix[512]; /* path prefix without the trailing '/', or "" */
};

/* The response. Owns everything in it; free with httpc_resp_free(). */
struct httpc_resp {
    int status;
    char **hdrs; /* name, value, name, value... */
    size_t n_hdrs;
    char *body; /* NUL-terminated; never NULL after a successful request */
    size_t body_len;
};

/* Parse URL. Returns 0, or SY_EINVAL with ERR filled (e.g. https://, which we do not speak). */
int httpc_parse_url(const char *url, struct httpc_url *out, struct sy_error *err);

/*
 * Send METHOD PATH (appended to the endpoint's prefix; PATH must already be percent-encoded)
 * to ENDPOINT with extra HEADERS (NULL or NULL-terminated name/value pairs) and BODY (LEN
 * bytes; NULL with 0 for none), and read the whole response into RESP. CONNECT_MS bounds the
 * connection set-up; READ_MS bounds every wait for the server (so a long-running function
 * needs a READ_MS above its timeout). Returns 0 (any HTTP status), or a negative SY_E* with
 * ERR filled for network and protocol failures (RESP is then empty).
 */
int httpc_request(const char *endpoint, const char *method, const char *path,
                  const char *const *headers, const void *body, size_t len, int connect_ms,
                  int read_ms, struct httpc_resp *resp, struct sy_error *err);

/* A response header by case-insensitive name (borrowed from RESP), or NULL. */
const char *httpc_header(const struct httpc_resp *resp, const char *name);

/* Free what RESP owns and zero it. NULL is a no-op. */
void httpc_resp_free(struct httpc_resp *resp);

/*
 * Percent-encode S for use as one path segment (everything but RFC 3986 unreserved
 * characters). Returns new (caller frees) or NULL on allocation failure.
 */
char *httpc_escape_segment(const char *s);

#endif
