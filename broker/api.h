/*
 * broker/api.h - the control API: the Lambda Invoke API subset, ListFunctions, GetFunction,
 * GetFunctionConfiguration, GetFunctionConcurrency, GetAccountSettings, List/Get/Update
 * EventSourceMapping (see api_esm.c), /healthz and /metrics, served on a `struct httpd` (the
 * broker creates the server and passes api_handle()).
 *
 * Authentication: when broker.auth_token is set, every request except `GET /healthz` must
 * carry the token, either as `Authorization: Bearer <token>` or - so that the AWS CLI and SDKs
 * work unchanged - as the access key id of a SigV4 `Authorization: AWS4-HMAC-SHA256
 * Credential=<token>/...` header (`AWS_ACCESS_KEY_ID=<token> aws lambda invoke ...`). The
 * signature itself is not verified: the broker has no secret key to check it against, so the
 * token is exactly as strong as a bearer token (use TLS in front of a non-loopback listener).
 * Without auth_token, Authorization headers are ignored entirely.
 *
 * Everything here is loop-thread only.
 */
#ifndef SY_API_H
#define SY_API_H

#include <stddef.h>

#include "dispatcher/dispatcher.h"
#include "core/errors.h"

struct api;
struct cfg;
struct httpd_req;

/*
 * The body limit to give httpd_create(): Lambda's CreateFunction limit (a 50 MB zip, base64 in
 * JSON) plus room, so that bodies just over it are read whole (and answered with Lambda's
 * 413), while anything larger still reaches api_handle() with httpd_req_too_large() set.
 * Invoke enforces its own 6 MiB / 1 MiB on what it reads.
 */
#define API_MAX_BODY (69905067u + 64u * 1024u) /* CreateFunction's: a 50 MB zip in base64 */

/*
 * Build the API over CFG and DSP (both borrowed: they must outlive the api). Does blocking
 * file-system work (code sizes and hashes of every function's code dir), so call it before the
 * loop runs. Returns new (api_destroy()) or NULL with ERR filled.
 */
struct api *api_create(const struct cfg *cfg, struct dispatcher *dsp, struct sy_error *err);

/*
 * The httpd_handler_fn of the control API; ARG is the `struct api *`. Answers REQ now or, for
 * a synchronous invoke, from the dispatcher's done callback. A client that goes away while
 * waiting cancels its callback (dispatcher_cancel()).
 */
void api_handle(struct httpd_req *req, void *arg);

/*
 * Serve Event invocations and the dead-letter endpoints from AQ (borrowed; must outlive the
 * api). Without it, Event invokes get a clear 400.
 */
struct asyncq;
void api_set_asyncq(struct api *api, struct asyncq *aq);

/*
 * Serve the event source mapping operations and the per-mapping metrics from MS (borrowed;
 * must outlive the api, or be unset with NULL before it goes). NULL (the default) means no
 * mappings: ListEventSourceMappings is empty and Get/Update answer 404.
 */
struct mappings;
void api_set_mappings(struct api *api, struct mappings *ms);

/*
 * Serve the write API (CreateFunction, versions, aliases...) from DEP (borrowed; must outlive
 * the api). NULL (the default): writes answer 500 ServiceException.
 */
struct deploy;
void api_set_deploy(struct api *api, struct deploy *dep);

/*
 * What the API tells of the file's functions (CodeSize, CodeSha256, RevisionId, LastModified),
 * computed by walking their code dirs: blocking, and safe on any thread (it touches no api),
 * so a reload computes it off the loop and hands it over with api_set_file() (loop thread;
 * takes FI's contents, CFG borrowed and must outlive the api or the next api_set_file()).
 */
/* Serve POST /switchyard/v1/reload from CTX (borrowed; see reload.h). */
struct reload_ctx;
void api_set_reload(struct api *api, struct reload_ctx *ctx);

struct api_fninfo;
struct api_fileinfo {
    char last_modified[40];
    struct api_fninfo *fninfo; /* one per function of the file, in its order (owned) */
    size_t n;
    unsigned long long total_code_size;
};
int api_fileinfo_compute(const struct cfg *cfg, struct api_fileinfo *out, struct sy_error *err);
void api_fileinfo_clear(struct api_fileinfo *fi);
void api_set_file(struct api *api, const struct cfg *cfg, struct api_fileinfo *fi);

/*
 * From now on answer every request with 503 ServiceException (GET /healthz: 503 with status
 * "draining"). Requests already waiting for their function are still answered normally.
 */
void api_set_draining(struct api *api);

/*
 * Free the API. Every request still waiting must have been closed first (httpd_destroy() runs
 * their close callbacks). NULL is a no-op.
 */
void api_destroy(struct api *api);

#endif
