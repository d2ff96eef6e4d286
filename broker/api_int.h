/*
 * broker/api_int.h - what the control API's files share (api.c: router, auth, errors, name
 * parsing; api_invoke.c; api_functions.c; api_async.c; api_esm.c; api_health.c; api_deploy.c;
 * api_layers.c). Never included outside broker/ (the unit tests excepted: the pure helpers
 * below are tested directly).
 */
#ifndef SY_API_INT_H
#define SY_API_INT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "api.h"
#include "core/httpd.h"

#define API_MAGIC 0x41504921u  /* "API!" */
#define CALL_MAGIC 0x43414c4cu /* "CALL" */

/*
 * Lambda's error codes as the API answers them: enum name, the code (x-amzn-ErrorType), HTTP
 * status, `Type` and how the service model spells the message member (`message` or `Message`,
 * see lambda-semantics.md 1.4; SDKs accept both, but we answer as AWS does).
 */
#define API_ERRORS(X)                                                                              \
    X(API_E_NOT_FOUND, "ResourceNotFoundException", 404, "User", "Message")                        \
    X(API_E_IN_USE, "ResourceInUseException", 400, "User", "Message")                              \
    X(API_E_BAD_CONTENT, "InvalidRequestContentException", 400, "User", "message")                 \
    X(API_E_BAD_PARAM, "InvalidParameterValueException", 400, "User", "message")                   \
    X(API_E_VALIDATION, "ValidationException", 400, "User", "message")                             \
    X(API_E_TOO_LARGE, "RequestEntityTooLargeException", 413, "User", "message")                   \
    X(API_E_CONFLICT, "ResourceConflictException", 409, "User", "message")                         \
    X(API_E_THROTTLED, "TooManyRequestsException", 429, "User", "message")                         \
    X(API_E_SERVICE, "ServiceException", 500, "Service", "Message")                                \
    X(API_E_UNAVAILABLE, "ServiceException", 503, "Service", "Message")                            \
    X(API_E_UNAUTHORIZED, "UnrecognizedClientException", 401, "User", "message")                   \
    X(API_E_UNKNOWN_OP, "UnknownOperationException", 404, "User", "message")                       \
    X(API_E_PRECONDITION, "PreconditionFailedException", 412, "User", "message")                   \
    X(API_E_PC_NOT_FOUND, "ProvisionedConcurrencyConfigNotFoundException", 404, "User", "message") \
    X(API_E_BAD_METHOD, "UnknownOperationException", 405, "User", "message")

enum api_err {
#define API_ERR_ENUM(id, code, status, type, member) id,
    API_ERRORS(API_ERR_ENUM)
#undef API_ERR_ENUM
};

/* What api_create() learns about each function's code once, at startup (api_functions.c). */
struct api_fninfo {
    uint64_t code_size;   /* bytes of all regular files under the code dir; a zip's bytes */
    char code_sha256[48]; /* base64 SHA-256 (see api_functions.c for what is hashed) */
    char revision_id[40]; /* a UUID-shaped digest of the above and the config's mtime */
    uint64_t layer_size[5]; /* CodeSize of each of `layers:` (CFG_LAYERS_MAX) */
};

struct api {
    unsigned magic;
    const struct cfg *cfg;  /* borrowed */
    struct dispatcher *dsp; /* borrowed */
    struct asyncq *aq;      /* borrowed; NULL: Event invokes are refused */
    struct mappings *ms;    /* borrowed; NULL: no event source mappings (empty list, 404s) */
    struct deploy *dep;     /* borrowed; NULL: no write API (deploy.h) */
    struct reload_ctx *reload; /* borrowed; NULL: POST /switchyard/v1/reload answers 500 */
    int draining;
    char last_modified[40];    /* the config file's mtime as `2024-05-09T21:05:41.000+0000` */
    struct api_fninfo *fninfo; /* owned; one per function, config order */
    size_t n_fninfo;
    uint64_t total_code_size;
};

/*
 * One request being handled. Owned by the API from api_handle() until its reply (or until
 * its client went away); for a sync invoke it is also the dispatcher's callback ARG, which is
 * what makes dispatcher_cancel() precise: two requests never share a live call.
 */
struct api_call {
    unsigned magic;
    struct api *api;
    struct httpd_req *req;
    uint64_t start_us;
    int want_tail;       /* X-Amz-Log-Type: Tail */
    char request_id[40]; /* x-amzn-RequestId of every answer (and the invocation's id) */
    char fname[72];      /* function name (logging), "" when none */
};

/* ---- replies (api.c); each one answers and frees CALL ------------------------------------- */

/*
 * Answer CALL with STATUS, extra HEADERS (NULL or NULL-terminated name/value pairs; the
 * request id is added here) and BODY (copied). Frees CALL.
 */
void api_reply(struct api_call *call, int status, const char *const *headers, const void *body,
               size_t len);
/* As api_reply() but takes BODY (malloc'd). */
void api_reply_take(struct api_call *call, int status, const char *const *headers, char *body,
                    size_t len);
/* Lambda's error answer for ERR with a printf message. Frees CALL. */
void api_reply_error(struct api_call *call, enum api_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* 429 TooManyRequestsException with Lambda's Reason member. Frees CALL. */
void api_reply_throttled(struct api_call *call, const char *reason);
/* Free a call whose request is gone (close callback) without answering. */
void api_call_free(struct api_call *call);
/*
 * The close callback of a request whose answer comes later from work that goes on without its
 * client (a write being stored, a reload): SLOT is where the work keeps its `struct api_call *`
 * (a member of its own struct); the call is freed and *SLOT set to NULL, so the work finishes
 * and answers nobody.
 */
void api_call_closed_slot(struct httpd_req *req, void *slot);

/* ---- function names (api.c; pure, unit-tested) ------------------------------------------- */

/* A FunctionName as the API accepts it, split up. Empty strings mean "not given". */
struct api_fname {
    char region[32];
    char account[16];
    char name[72];
    char qualifier[136];
};

/*
 * Split S into its parts. Accepted forms (Lambda's): `NAME`, `NAME:QUALIFIER`,
 * `arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]` (any `aws*` partition),
 * `ACCOUNT:function:NAME[:QUALIFIER]`. NAME is 1..64 of [A-Za-z0-9_-], QUALIFIER `$LATEST` or
 * 1..128 of [A-Za-z0-9_-], ACCOUNT 12 digits. Returns 0, or -1 (OUT unspecified) when S fits
 * none of them.
 */
int api_parse_fname(const char *s, struct api_fname *out);

/* Qualifier syntax check alone (`$LATEST` or 1..128 of [A-Za-z0-9_-]): 1 valid, 0 not. */
int api_qualifier_valid(const char *q);

/*
 * Resolve a FunctionName path segment plus an optional `Qualifier` query value (NULL when
 * absent) to a function. On success returns the function (borrowed) and fills QUALIFIER_OUT
 * (QSZ bytes; "" when none was given). Otherwise answers CALL with Lambda's error (400 for a
 * malformed name or mismatched qualifiers, 404 for an unknown function or any qualifier other
 * than $LATEST) and returns NULL: CALL is gone then.
 */
struct function *api_resolve_function(struct api_call *call, const char *raw, const char *query_q,
                                      char *qualifier_out, size_t qsz);

/* ---- auth (api.c; pure, unit-tested) ----------------------------------------------------- */

/*
 * 1 when AUTHZ (the Authorization header, NULL when absent) carries TOKEN as
 * `Bearer TOKEN` or as the access key id of a SigV4 `AWS4-HMAC-SHA256 Credential=TOKEN/...`.
 * The comparison runs in time independent of where the two differ (SHA-256 of both, then
 * CRYPTO_memcmp). Never logs either value.
 */
int api_auth_ok(const char *authz, const char *token);

/* ---- routing (api.c; pure, unit-tested) -------------------------------------------------- */

typedef void api_route_fn(struct api_call *call, const char *arg);

#define API_RT_NO_AUTH 0x1  /* served without a token (GET /healthz only) */
#define API_RT_DRAINING 0x2 /* the handler answers even while draining */

struct api_route {
    const char *method;
    const char *pattern; /* `{}` matches one non-empty path segment, handed over as ARG (two
                            of them: joined by a `/`) */
    api_route_fn *fn;
    unsigned flags;
    const char *op; /* operation name, for logs */
};

/*
 * Find the route for METHOD and PATH. Returns the route (ARG filled with the `{}` segment,
 * or "") or NULL. On NULL, *ALLOW (when not NULL) is set to the method that route expects if
 * only the method was wrong, or NULL when no route has this path.
 */
const struct api_route *api_route_find(const char *method, const char *path, char *arg,
                                       size_t argsz, const char **allow);

/* ---- handlers ------------------------------------------------------------------------------ */

void api_invoke(struct api_call *call, const char *arg);         /* api_invoke.c */
void api_list_functions(struct api_call *call, const char *arg); /* api_functions.c */
void api_get_function(struct api_call *call, const char *arg);
void api_get_function_config(struct api_call *call, const char *arg);
void api_get_concurrency(struct api_call *call, const char *arg);
void api_account_settings(struct api_call *call, const char *arg);
void api_dlq_list(struct api_call *call, const char *arg);    /* api_async.c */
void api_dlq_show(struct api_call *call, const char *arg);
void api_dlq_redrive(struct api_call *call, const char *arg);
void api_dlq_purge(struct api_call *call, const char *arg);
/* The Event branch of Invoke: FN resolved, PAYLOAD checked (api_async.c). */
struct function;
void api_invoke_event(struct api_call *call, struct function *fn, const char *payload,
                      size_t len);
/* Event source mappings (api_esm.c): List, Get, Update, Create, Delete. */
void api_esm_list(struct api_call *call, const char *arg);
void api_esm_get(struct api_call *call, const char *arg);
void api_esm_update(struct api_call *call, const char *arg);
void api_esm_create(struct api_call *call, const char *arg);
void api_esm_delete(struct api_call *call, const char *arg);
void api_healthz(struct api_call *call, const char *arg); /* api_health.c */
void api_metrics(struct api_call *call, const char *arg);

/* The write API (api_deploy.c). */
void api_create_function(struct api_call *call, const char *arg);
void api_update_code(struct api_call *call, const char *arg);
void api_update_config(struct api_call *call, const char *arg);
void api_delete_function(struct api_call *call, const char *arg);
void api_publish_version(struct api_call *call, const char *arg);
void api_list_versions(struct api_call *call, const char *arg);
void api_create_alias(struct api_call *call, const char *arg);
void api_list_aliases(struct api_call *call, const char *arg);
void api_get_alias(struct api_call *call, const char *arg);
void api_update_alias(struct api_call *call, const char *arg);
void api_delete_alias(struct api_call *call, const char *arg);
void api_put_provisioned(struct api_call *call, const char *arg);
void api_get_provisioned(struct api_call *call, const char *arg);
void api_delete_provisioned(struct api_call *call, const char *arg);
void api_put_concurrency(struct api_call *call, const char *arg);
void api_delete_concurrency(struct api_call *call, const char *arg);
void api_reload(struct api_call *call, const char *arg);
void api_put_eic(struct api_call *call, const char *arg);
void api_update_eic(struct api_call *call, const char *arg);
void api_get_eic(struct api_call *call, const char *arg);
void api_delete_eic(struct api_call *call, const char *arg);
void api_list_eic(struct api_call *call, const char *arg);

/* Layer versions (api_layers.c). */
void api_publish_layer(struct api_call *call, const char *arg);
void api_list_layers(struct api_call *call, const char *arg); /* and GetLayerVersionByArn */
void api_list_layer_versions(struct api_call *call, const char *arg);
void api_get_layer_version(struct api_call *call, const char *arg);
void api_delete_layer_version(struct api_call *call, const char *arg);

/*
 * Check LAYERS, the `Layers` of a CreateFunction or UpdateFunctionConfiguration (NULL: none),
 * as Lambda does: a list of at most CFG_LAYERS_MAX layer version ARNs of this broker's
 * region and account, each published and not deleted, no layer twice (two versions of one
 * layer neither). Returns how many, with DIRS[i] (borrowed from the layer versions, valid
 * until the loop turn ends) the unpacked tree of each, in order; or -1 with *API_ERR and WHY
 * (Lambda's wording) filled.
 */
struct deploy_zipreq;
int api_layers_resolve(struct api *api, const json_t *layers, const char **dirs,
                       enum api_err *api_err, char *why, size_t whysz);

/*
 * The answer for a zip request that failed on the state thread (deploy.h): 1 with *API_ERR and
 * WHY filled (OP, the operation, e.g. "PublishLayerVersion", is named in the size message),
 * or 0 when it did not fail (a request without a ZipFile is not a failure here).
 */
int api_zipreq_failed(const struct deploy_zipreq *zr, const char *op, enum api_err *api_err,
                      char *why, size_t whysz);

/*
 * FunctionConfiguration of unit FN as a new JSON object (NULL when out of memory); FC_LIST:
 * ListFunctions' subset (FunctionArn of $LATEST with `:$LATEST`, no State/LastUpdateStatus).
 */
#define FC_LIST 0x1
json_t *api_fn_config_json(struct api *api, const struct function *fn, unsigned flags);
/* Answer CALL with ROOT (taken) as compact JSON; ROOT NULL with 204: an empty answer. */
void api_reply_json(struct api_call *call, int status, json_t *root);

/* Compute api->fninfo and last_modified (api_functions.c). Blocking file-system walk. */
int api_functions_init(struct api *api, struct sy_error *err);

/*
 * The MaxItems query parameter of a List operation (1..10000, Lambda's bounds): lowers *PAGE to
 * it when given. Returns 0, or -1 after answering 400 ValidationException (as Lambda words it).
 */
int api_query_max_items(struct api_call *call, size_t *page);

#endif
