/*
 * broker/api.c - the control API's front door: the route table, authentication, request
 * bookkeeping (one `struct api_call` per request), Lambda-shaped error answers and the parsing
 * of FunctionName values. The operations themselves live in api_invoke.c, api_functions.c,
 * api_async.c, api_esm.c, api_health.c, api_deploy.c and api_layers.c.
 *
 * Order of checks for every request: route lookup (so that we know whether it is the one
 * unauthenticated route), then auth, then 404/405 for unknown routes, then draining (503),
 * then the operation. A request without a valid token therefore never reaches a function and
 * learns nothing about which routes or functions exist.
 */
#include "api_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <uuid/uuid.h>

#include "config/config.h"
#include "core/log.h"
#include "core/fastid.h"
#include "core/sha256.h"
#include "core/buf.h"
#include "core/time.h"

/* Lambda's own pattern for FunctionName, quoted in ValidationException messages. */
#define FNAME_PATTERN                                                                              \
    "(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?"      \
    "([a-zA-Z0-9-_\\.]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?"
#define QUALIFIER_PATTERN "(|[a-zA-Z0-9$_-]+)"

static const struct api_route routes[] = {
    {"POST", "/2015-03-31/functions/{}/invocations", api_invoke, 0, "Invoke"},
    {"GET", "/2015-03-31/functions", api_list_functions, 0, "ListFunctions"},
    {"GET", "/2015-03-31/functions/", api_list_functions, 0, "ListFunctions"},
    {"GET", "/2015-03-31/functions/{}", api_get_function, 0, "GetFunction"},
    {"GET", "/2015-03-31/functions/{}/configuration", api_get_function_config, 0,
     "GetFunctionConfiguration"},
    /* GetFunctionConcurrency is dated 2019-09-30 (PutFunctionConcurrency 2017-10-31). */
    {"GET", "/2019-09-30/functions/{}/concurrency", api_get_concurrency, 0,
     "GetFunctionConcurrency"},
    {"GET", "/2017-10-31/functions/{}/concurrency", api_get_concurrency, 0,
     "GetFunctionConcurrency"},
    {"GET", "/2016-08-19/account-settings", api_account_settings, 0, "GetAccountSettings"},
    {"GET", "/2016-08-19/account-settings/", api_account_settings, 0, "GetAccountSettings"},
    /* The SDKs put a trailing slash on List and Create; both forms are served. */
    {"GET", "/2015-03-31/event-source-mappings", api_esm_list, 0, "ListEventSourceMappings"},
    {"GET", "/2015-03-31/event-source-mappings/", api_esm_list, 0, "ListEventSourceMappings"},
    {"POST", "/2015-03-31/event-source-mappings", api_esm_create, 0, "CreateEventSourceMapping"},
    {"POST", "/2015-03-31/event-source-mappings/", api_esm_create, 0,
     "CreateEventSourceMapping"},
    {"GET", "/2015-03-31/event-source-mappings/{}", api_esm_get, 0, "GetEventSourceMapping"},
    {"PUT", "/2015-03-31/event-source-mappings/{}", api_esm_update, 0,
     "UpdateEventSourceMapping"},
    {"DELETE", "/2015-03-31/event-source-mappings/{}", api_esm_delete, 0,
     "DeleteEventSourceMapping"},
    /* The write API (api_deploy.c). */
    {"POST", "/2015-03-31/functions", api_create_function, 0, "CreateFunction"},
    {"POST", "/2015-03-31/functions/", api_create_function, 0, "CreateFunction"},
    {"DELETE", "/2015-03-31/functions/{}", api_delete_function, 0, "DeleteFunction"},
    {"PUT", "/2015-03-31/functions/{}/code", api_update_code, 0, "UpdateFunctionCode"},
    {"PUT", "/2015-03-31/functions/{}/configuration", api_update_config, 0,
     "UpdateFunctionConfiguration"},
    {"POST", "/2015-03-31/functions/{}/versions", api_publish_version, 0, "PublishVersion"},
    {"GET", "/2015-03-31/functions/{}/versions", api_list_versions, 0, "ListVersionsByFunction"},
    {"POST", "/2015-03-31/functions/{}/aliases", api_create_alias, 0, "CreateAlias"},
    {"GET", "/2015-03-31/functions/{}/aliases", api_list_aliases, 0, "ListAliases"},
    {"GET", "/2015-03-31/functions/{}/aliases/{}", api_get_alias, 0, "GetAlias"},
    {"PUT", "/2015-03-31/functions/{}/aliases/{}", api_update_alias, 0, "UpdateAlias"},
    {"DELETE", "/2015-03-31/functions/{}/aliases/{}", api_delete_alias, 0, "DeleteAlias"},
    {"PUT", "/2019-09-30/functions/{}/provisioned-concurrency", api_put_provisioned, 0,
     "PutProvisionedConcurrencyConfig"},
    {"GET", "/2019-09-30/functions/{}/provisioned-concurrency", api_get_provisioned, 0,
     "GetProvisionedConcurrencyConfig"},
    {"DELETE", "/2019-09-30/functions/{}/provisioned-concurrency", api_delete_provisioned, 0,
     "DeleteProvisionedConcurrencyConfig"},
    {"PUT", "/2017-10-31/functions/{}/concurrency", api_put_concurrency, 0,
     "PutFunctionConcurrency"},
    {"DELETE", "/2017-10-31/functions/{}/concurrency", api_delete_concurrency, 0,
     "DeleteFunctionConcurrency"},
    /* Layer versions (api_layers.c); GetLayerVersionByArn is ListLayers' path with ?find=. */
    {"POST", "/2018-10-31/layers/{}/versions", api_publish_layer, 0, "PublishLayerVersion"},
    {"GET", "/2018-10-31/layers/{}/versions", api_list_layer_versions, 0, "ListLayerVersions"},
    {"GET", "/2018-10-31/layers/{}/versions/{}", api_get_layer_version, 0, "GetLayerVersion"},
    {"DELETE", "/2018-10-31/layers/{}/versions/{}", api_delete_layer_version, 0,
     "DeleteLayerVersion"},
    {"GET", "/2018-10-31/layers", api_list_layers, 0, "ListLayers"},
    {"GET", "/2018-10-31/layers/", api_list_layers, 0, "ListLayers"},
    {"PUT", "/2019-09-25/functions/{}/event-invoke-config", api_put_eic, 0,
     "PutFunctionEventInvokeConfig"},
    {"POST", "/2019-09-25/functions/{}/event-invoke-config", api_update_eic, 0,
     "UpdateFunctionEventInvokeConfig"},
    {"GET", "/2019-09-25/functions/{}/event-invoke-config", api_get_eic, 0,
     "GetFunctionEventInvokeConfig"},
    {"DELETE", "/2019-09-25/functions/{}/event-invoke-config", api_delete_eic, 0,
     "DeleteFunctionEventInvokeConfig"},
    {"GET", "/2019-09-25/functions/{}/event-invoke-config/list", api_list_eic, 0,
     "ListFunctionEventInvokeConfigs"},
    /* switchyard's own: `switchyard reload`. */
    {"POST", "/switchyard/v1/reload", api_reload, 0, "Reload"},
    /* switchyard's own: the local dead-letter store of the async queue. */
    {"GET", "/switchyard/v1/dlq", api_dlq_list, 0, "ListDeadLetters"},
    {"POST", "/switchyard/v1/dlq/redrive", api_dlq_redrive, 0, "RedriveDeadLetters"},
    {"POST", "/switchyard/v1/dlq/purge", api_dlq_purge, 0, "PurgeDeadLetters"},
    {"GET", "/switchyard/v1/dlq/{}", api_dlq_show, 0, "GetDeadLetter"},
    {"GET", "/healthz", api_healthz, API_RT_NO_AUTH | API_RT_DRAINING, "Health"},
    {"GET", "/metrics", api_metrics, 0, "Metrics"},
};

static const struct {
    const char *code;
    int status;
    const char *type;
    const char *member;
} api_errs[] = {
#define API_ERR_ROW(id, code, status, type, member) {code, status, type, member},
    API_ERRORS(API_ERR_ROW)
#undef API_ERR_ROW
};

/* ---- routing ------------------------------------------------------------------------------ */

/* Match PATH against PATTERN; `{}` takes one non-empty segment into ARG (truncated to fit). */
static int pattern_match(const char *pattern, const char *path, char *arg, size_t argsz)
{
    const char *p = pattern, *s = path;
    size_t used = 0;

    if (argsz > 0)
        arg[0] = '\0';
    while (*p != '\0') {
        if (p[0] == '{' && p[1] == '}') {
            size_t n = strcspn(s, "/");

            if (n == 0)
                return 0;
            /* A second segment is appended after a '/' (which no segment contains). */
            if (used > 0 && used + 1 < argsz)
                arg[used++] = '/';
            if (argsz > used) {
                size_t k = n < argsz - used - 1 ? n : argsz - used - 1;

                memcpy(arg + used, s, k);
                used += k;
                arg[used] = '\0';
            }
            s += n;
            p += 2;
            continue;
        }
        if (*p != *s)
            return 0;
        p++;
        s++;
    }
    return *s == '\0';
}

const struct api_route *api_route_find(const char *method, const char *path, char *arg,
                                       size_t argsz, const char **allow)
{
    if (allow != NULL)
        *allow = NULL;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (!pattern_match(routes[i].pattern, path, arg, argsz))
            continue;
        if (strcmp(routes[i].method, method) == 0)
            return &routes[i];
        if (allow != NULL && *allow == NULL)
            *allow = routes[i].method;
    }
    if (argsz > 0)
        arg[0] = '\0';
    return NULL;
}

/* ---- auth --------------------------------------------------------------------------------- */

/* Compare N bytes of A with TOKEN without leaking where they differ. */
static int token_equal(const char *a, size_t n, const char *token)
{
    unsigned char da[SHA256_LEN], db[SHA256_LEN];

    /* Hashing first makes the comparison independent of both lengths, too. */
    sha256(a, n, da);
    sha256(token, strlen(token), db);
    return sha256_ct_equal(da, db, SHA256_LEN);
}

int api_auth_ok(const char *authz, const char *token)
{
    const char *p;

    if (authz == NULL || token == NULL || token[0] == '\0')
        return 0;
    while (*authz == ' ' || *authz == '\t')
        authz++;
    /* RFC 6750: the scheme name is case-insensitive. */
    if (strncasecmp(authz, "Bearer ", 7) == 0) {
        const char *v = authz + 7;
        size_t n;

        while (*v == ' ')
            v++;
        n = strlen(v);
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            n--;
        return n > 0 && token_equal(v, n, token);
    }
    /*
     * SigV4, as the AWS CLI and SDKs send it:
     *   AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/lambda/aws4_request,
     *   SignedHeaders=host;x-amz-date, Signature=...
     * We accept the token as the access key id. The signature cannot be verified (there is no
     * secret on our side), so this is a bearer token carried in another field.
     */
    if (strncmp(authz, "AWS4-HMAC-SHA256 ", 17) == 0) {
        p = strstr(authz + 17, "Credential=");
        if (p == NULL)
            return 0;
        p += 11;
        return token_equal(p, strcspn(p, "/, "), token);
    }
    return 0;
}

/* ---- function names ----------------------------------------------------------------------- */

static int name_char(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

static int name_valid(const char *s, size_t maxlen)
{
    size_t n = strlen(s);

    if (n == 0 || n > maxlen)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!name_char((unsigned char)s[i]))
            return 0;
    }
    return 1;
}

int api_qualifier_valid(const char *q)
{
    return strcmp(q, "$LATEST") == 0 || name_valid(q, 128);
}

static int digits12(const char *s)
{
    if (strlen(s) != 12)
        return 0;
    for (int i = 0; i < 12; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
    }
    return 1;
}

static int region_valid(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n >= sizeof(((struct api_fname *)0)->region))
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return 0;
    }
    return 1;
}

static int copy_part(char *dst, size_t dstsz, const char *src)
{
    size_t n = strlen(src);

    if (n >= dstsz)
        return -1;
    memcpy(dst, src, n + 1);
    return 0;
}

int api_parse_fname(const char *s, struct api_fname *out)
{
    char tmp[260];
    char *tok[9];
    size_t n = 0;
    const char *name, *qual = NULL;
    size_t len = strlen(s);

    memset(out, 0, sizeof(*out));
    if (len == 0 || len > 256)
        return -1;
    memcpy(tmp, s, len + 1);
    /* Split on ':' keeping empty fields (strtok would merge them). */
    tok[n++] = tmp;
    for (char *p = tmp; *p != '\0'; p++) {
        if (*p == ':') {
            if (n == 9)
                return -1;
            *p = '\0';
            tok[n++] = p + 1;
        }
    }
    if (strcmp(tok[0], "arn") == 0) {
        /* arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER] */
        if ((n != 7 && n != 8) || strncmp(tok[1], "aws", 3) != 0 || strcmp(tok[2], "lambda") != 0 ||
            !region_valid(tok[3]) || !digits12(tok[4]) || strcmp(tok[5], "function") != 0)
            return -1;
        strcpy(out->region, tok[3]);
        strcpy(out->account, tok[4]);
        name = tok[6];
        qual = n == 8 ? tok[7] : NULL;
    } else if (n >= 3 && strcmp(tok[1], "function") == 0) {
        /* ACCOUNT:function:NAME[:QUALIFIER] */
        if (n > 4 || !digits12(tok[0]))
            return -1;
        strcpy(out->account, tok[0]);
        name = tok[2];
        qual = n == 4 ? tok[3] : NULL;
    } else if (n <= 2) {
        name = tok[0];
        qual = n == 2 ? tok[1] : NULL;
    } else {
        return -1;
    }
    if (!name_valid(name, 64) || copy_part(out->name, sizeof(out->name), name) != 0)
        return -1;
    if (qual != NULL) {
        if (!api_qualifier_valid(qual) ||
            copy_part(out->qualifier, sizeof(out->qualifier), qual) != 0)
            return -1;
    }
    return 0;
}

struct function *api_resolve_function(struct api_call *call, const char *raw, const char *query_q,
                                      char *qualifier_out, size_t qsz)
{
    const struct cfg *cfg = call->api->cfg;
    struct api_fname fn;
    const char *qual;
    struct function *f;
    const char *region, *account;

    if (api_parse_fname(raw, &fn) != 0) {
        api_reply_error(call, API_E_VALIDATION,
                        "1 validation error detected: Value '%.256s' at 'functionName' failed to "
                        "satisfy constraint: Member must satisfy regular expression pattern: %s",
                        raw, FNAME_PATTERN);
        return NULL;
    }
    snprintf(call->fname, sizeof(call->fname), "%s", fn.name);
    if (query_q != NULL && query_q[0] == '\0')
        query_q = NULL; /* `?Qualifier=` is the same as no qualifier */
    if (query_q != NULL && !api_qualifier_valid(query_q)) {
        api_reply_error(call, API_E_VALIDATION,
                        "1 validation error detected: Value '%.128s' at 'qualifier' failed to "
                        "satisfy constraint: Member must satisfy regular expression pattern: %s",
                        query_q, QUALIFIER_PATTERN);
        return NULL;
    }
    if (fn.qualifier[0] != '\0' && query_q != NULL && strcmp(fn.qualifier, query_q) != 0) {
        api_reply_error(call, API_E_BAD_PARAM,
                        "The derived qualifier from the function name does not match the "
                        "specified qualifier.");
        return NULL;
    }
    qual = fn.qualifier[0] != '\0' ? fn.qualifier : query_q;
    region = fn.region[0] != '\0' ? fn.region : cfg->broker.region;
    account = fn.account[0] != '\0' ? fn.account : cfg->broker.account_id;
    /* Another region or account than ours cannot hold the function: same answer as unknown. */
    f = strcmp(region, cfg->broker.region) == 0 && strcmp(account, cfg->broker.account_id) == 0
            ? dispatcher_function(call->api->dsp, fn.name)
            : NULL;
    /* A version number or an alias picks that unit (an alias with weights draws one). */
    if (f != NULL)
        f = function_route(f, qual);
    if (f == NULL) {
        api_reply_error(call, API_E_NOT_FOUND,
                        "Function not found: arn:aws:lambda:%s:%s:function:%s%s%s", region, account,
                        fn.name, qual ? ":" : "", qual ? qual : "");
        return NULL;
    }
    snprintf(qualifier_out, qsz, "%s", qual ? qual : "");
    return f;
}

/* ---- replies ------------------------------------------------------------------------------ */

void api_call_closed_slot(struct httpd_req *req, void *slot)
{
    struct api_call **p = slot;

    api_call_free(*p);
    *p = NULL;
}

void api_call_free(struct api_call *call)
{
    if (call == NULL)
        return;
    call->magic = 0;
    free(call);
}

static void reply_log(struct api_call *call, int status)
{
    if (log_level_cur < LOG_LVL_DEBUG)
        return;
    log_debug("[api] %s %s -> %d in %.1f ms (request %s%s%s)", httpd_req_method(call->req),
              httpd_req_path(call->req), status, (double)(time_mono_us() - call->start_us) / 1000.0,
              call->request_id, call->fname[0] ? ", function " : "", call->fname);
}

/* Common headers first, then the caller's; at most 16 caller pairs. */
static void build_headers(const struct api_call *call, const char *const *headers, const char **out,
                          size_t outn)
{
    size_t k = 0;

    out[k++] = "x-amzn-RequestId";
    out[k++] = call->request_id;
    for (size_t i = 0; headers != NULL && headers[i] != NULL && k + 3 < outn; i += 2) {
        out[k++] = headers[i];
        out[k++] = headers[i + 1];
    }
    out[k] = NULL;
}

void api_reply(struct api_call *call, int status, const char *const *headers, const void *body,
               size_t len)
{
    const char *hdrs[40];

    build_headers(call, headers, hdrs, sizeof(hdrs) / sizeof(hdrs[0]));
    reply_log(call, status);
    httpd_reply(call->req, status, hdrs, body, len);
    api_call_free(call);
}

void api_reply_take(struct api_call *call, int status, const char *const *headers, char *body,
                    size_t len)
{
    const char *hdrs[40];

    build_headers(call, headers, hdrs, sizeof(hdrs) / sizeof(hdrs[0]));
    reply_log(call, status);
    httpd_reply_take(call->req, status, hdrs, body, len);
    api_call_free(call);
}

static int utf8_valid(const char *s)
{
    json_t *j = json_string(s); /* jansson refuses invalid UTF-8 */
    int ok = j != NULL;

    json_decref(j);
    return ok;
}

static void reply_error_v(struct api_call *call, enum api_err err, const char *reason,
                          const char *allow, const char *fmt, va_list ap)
{
    char msg[1024];
    struct buf b = {0};
    char *body;
    size_t len;
    const char *hdrs[] = {"Content-Type",
                          "application/json",
                          "x-amzn-ErrorType",
                          api_errs[err].code,
                          allow ? "Allow" : NULL,
                          allow,
                          NULL};

    vsnprintf(msg, sizeof(msg), fmt, ap);
    /* Messages echo client input (names, paths): keep the body valid UTF-8 JSON. */
    if (!utf8_valid(msg)) {
        for (char *p = msg; *p; p++) {
            if ((unsigned char)*p >= 0x80)
                *p = '?';
        }
    }
    if (reason != NULL) {
        buf_puts(&b, "{\"Reason\":\"");
        buf_json_escape(&b, reason, strlen(reason));
        buf_puts(&b, "\",");
    } else {
        buf_puts(&b, "{");
    }
    buf_printf(&b, "\"Type\":\"%s\",\"%s\":\"", api_errs[err].type, api_errs[err].member);
    buf_json_escape(&b, msg, strlen(msg));
    buf_puts(&b, "\"}");
    if (api_errs[err].status == 500)
        log_warn("[api] %s %s -> %d %s: %s", httpd_req_method(call->req), httpd_req_path(call->req),
                 api_errs[err].status, api_errs[err].code, msg);
    body = buf_take(&b, &len);
    if (body == NULL) {
        api_reply(call, api_errs[err].status, hdrs, NULL, 0);
        return;
    }
    api_reply_take(call, api_errs[err].status, hdrs, body, len);
}

void api_reply_error(struct api_call *call, enum api_err err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    reply_error_v(call, err, NULL, NULL, fmt, ap);
    va_end(ap);
}

static void reply_error_allow(struct api_call *call, const char *allow, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reply_error_allow(struct api_call *call, const char *allow, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    reply_error_v(call, API_E_BAD_METHOD, NULL, allow, fmt, ap);
    va_end(ap);
}

static void reply_throttled_msg(struct api_call *call, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reply_throttled_msg(struct api_call *call, const char *reason, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    reply_error_v(call, API_E_THROTTLED, reason, NULL, fmt, ap);
    va_end(ap);
}

void api_reply_throttled(struct api_call *call, const char *reason)
{
    reply_throttled_msg(call, reason ? reason : "ConcurrentInvocationLimitExceeded", "%s",
                        "Rate Exceeded.");
}

/* ---- the handler -------------------------------------------------------------------------- */

void api_handle(struct httpd_req *req, void *arg)
{
    struct api *api = arg;
    struct api_call *call;
    const struct api_route *rt;
    const char *allow = NULL;
    const char *token;
    char seg[1024];

    if (api == NULL || api->magic != API_MAGIC)
        abort(); /* our own invariant: the server was created with a live api */
    call = calloc(1, sizeof(*call));
    if (call == NULL) {
        static const char oom[] = "{\"Type\":\"Service\",\"Message\":\"out of memory\"}";

        httpd_reply(req, 500,
                    (const char *const[]){"Content-Type", "application/json", "x-amzn-ErrorType",
                                          "ServiceException", NULL},
                    oom, sizeof(oom) - 1);
        return;
    }
    call->magic = CALL_MAGIC;
    call->api = api;
    call->req = req;
    call->start_us = time_mono_us();
    fastid_uuid4(call->request_id);

    rt = api_route_find(httpd_req_method(req), httpd_req_path(req), seg, sizeof(seg), &allow);
    token = api->cfg->broker.auth_token;
    if (token != NULL && token[0] != '\0' && (rt == NULL || !(rt->flags & API_RT_NO_AUTH)) &&
        !api_auth_ok(httpd_req_header(req, "Authorization"), token)) {
        log_debug("[api] %s %s: missing or wrong token", httpd_req_method(req),
                  httpd_req_path(req));
        api_reply_error(call, API_E_UNAUTHORIZED,
                        "The security token included in the request is invalid.");
        return;
    }
    if (rt == NULL) {
        if (allow != NULL)
            reply_error_allow(call, allow, "Method %s is not allowed on %.256s (allowed: %s)",
                              httpd_req_method(req), httpd_req_path(req), allow);
        else
            api_reply_error(call, API_E_UNKNOWN_OP, "No operation matches %s %.256s",
                            httpd_req_method(req), httpd_req_path(req));
        return;
    }
    if (api->draining && !(rt->flags & API_RT_DRAINING)) {
        api_reply_error(call, API_E_UNAVAILABLE,
                        "The broker is shutting down and accepts no new requests.");
        return;
    }
    rt->fn(call, seg);
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

struct api *api_create(const struct cfg *cfg, struct dispatcher *dsp, struct sy_error *err)
{
    struct api *api = calloc(1, sizeof(*api));

    if (api == NULL) {
        sy_error_set(err, "out of memory");
        return NULL;
    }
    api->magic = API_MAGIC;
    api->cfg = cfg;
    api->dsp = dsp;
    if (api_functions_init(api, err) != 0) {
        api_destroy(api);
        return NULL;
    }
    return api;
}

void api_set_asyncq(struct api *api, struct asyncq *aq)
{
    api->aq = aq;
}

void api_set_mappings(struct api *api, struct mappings *ms)
{
    api->ms = ms;
}

void api_set_deploy(struct api *api, struct deploy *dep)
{
    api->dep = dep;
}

void api_set_reload(struct api *api, struct reload_ctx *ctx)
{
    api->reload = ctx;
}

void api_set_draining(struct api *api)
{
    api->draining = 1;
}

void api_destroy(struct api *api)
{
    if (api == NULL)
        return;
    free(api->fninfo);
    api->magic = 0;
    free(api);
}

int api_query_max_items(struct api_call *call, size_t *page)
{
    char maxitems[32], *end;
    long v;

    if (httpd_req_query_param(call->req, "MaxItems", maxitems, sizeof(maxitems)) == NULL)
        return 0;
    v = strtol(maxitems, &end, 10);
    if (end == maxitems || *end != '\0' || v < 1 || v > 10000) {
        api_reply_error(call, API_E_VALIDATION,
                        "1 validation error detected: Value '%s' at 'maxItems' failed to "
                        "satisfy constraint: Member must have value between 1 and 10000",
                        maxitems);
        return -1;
    }
    if ((size_t)v < *page)
        *page = (size_t)v;
    return 0;
}
