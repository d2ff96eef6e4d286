/*
 * broker/api_deploy.c - the write side of the control API, as Lambda's deploy tools call it:
 *
 *   POST   /2015-03-31/functions                          CreateFunction (201)
 *   PUT    /2015-03-31/functions/{name}/code              UpdateFunctionCode
 *   PUT    /2015-03-31/functions/{name}/configuration     UpdateFunctionConfiguration
 *   DELETE /2015-03-31/functions/{name}[?Qualifier=N]     DeleteFunction (204)
 *   POST   /2015-03-31/functions/{name}/versions          PublishVersion (201)
 *   GET    /2015-03-31/functions/{name}/versions          ListVersionsByFunction
 *   POST   /2015-03-31/functions/{name}/aliases           CreateAlias (201)
 *   GET    /2015-03-31/functions/{name}/aliases           ListAliases
 *   GET|PUT|DELETE /2015-03-31/functions/{name}/aliases/{alias}   Get/Update/DeleteAlias
 *   PUT|GET|DELETE /2019-09-30/functions/{name}/provisioned-concurrency?Qualifier=
 *   PUT|DELETE /2017-10-31/functions/{name}/concurrency   Put/DeleteFunctionConcurrency
 *
 * Ownership: functions the file declares are the file's; every write to one is refused with
 * InvalidParameterValueException saying so. What the API creates is persisted (deploy.c)
 * BEFORE it is applied and answered: a write that could not be stored changes nothing.
 *
 * A code change (Create, UpdateFunctionCode) takes the request body off the loop: the state
 * thread parses it, decodes the base64 zip, unpacks and hashes it (deploy_zipreq, packages/),
 * and hands back the request without its ZipFile. Only then does the loop validate and apply
 * it. `Layers` (CreateFunction, UpdateFunctionConfiguration) are checked on the loop
 * (api_layers_resolve()) and merged on the state thread (pkg_merge()) before the change is
 * stored, as Config.Layers (the ARNs) and Config.OptDir (the merged tree). Every blocking step
 * goes through deploy_offload().
 *
 * One write at a time per function: a second one while the first is in progress gets Lambda's
 * 409 ResourceConflictException. A client that goes away does not stop its write; it is only
 * not answered.
 */
#include "api_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config/config.h"
#include "core/b64.h"
#include "core/fastid.h"
#include "core/log.h"
#include "core/time.h"
#include "deploy.h"
#include "reload.h"
#include "dispatcher/dispatcher.h"
#include "packages/packages.h"

#define CONFIG_BODY_MAX (256u * 1024u) /* a configuration request is small; a code one is not */
#define ALIAS_PATTERN "(?!^[0-9]+$)([a-zA-Z0-9-_]+)"

enum dop_kind {
    DOP_CREATE,
    DOP_UPDATE_CODE,
    DOP_UPDATE_CONFIG,
    DOP_DELETE,
    DOP_DELETE_VERSION,
    DOP_PUBLISH,
    DOP_ALIAS,        /* create / update: answer AliasConfiguration */
    DOP_ALIAS_DELETE,
    DOP_PC_PUT,
    DOP_PC_DELETE,
    DOP_RESERVED_PUT,
    DOP_RESERVED_DELETE,
    DOP_EIC_PUT,      /* Put/UpdateFunctionEventInvokeConfig */
    DOP_EIC_DELETE,
};

/* One write in progress. Owned by the handler chain; CALL is NULL once the client left. */
struct dop {
    struct api_call *call;
    struct api *api;
    struct deploy *d;
    enum dop_kind kind;
    struct dep_fn *df;
    char name[72];
    char qual[136];      /* version / alias the write is about */
    json_t *doc;         /* the document to persist (owned) */
    struct cfg_function fc; /* the configuration to apply (owned; zeroed when none) */
    int have_fc;
    int publish;         /* also publish a version (Publish: true) */
    int created;         /* answer 201 (CreateAlias) rather than 200 */
    char version[24];    /* the version published / deleted */
    int reserved;        /* DOP_RESERVED_PUT */
};

/* The blocking part of a code change, on the state thread (deploy_offload()). */
struct prep {
    struct dop *op;
    struct deploy_zipreq zr;
};

/* Layers being merged on the state thread; NEXT carries on with OP on the loop. */
struct merge {
    struct dop *op;
    void (*next)(struct dop *op);
    char *store_dir;
    char *dirs[CFG_LAYERS_MAX];
    size_t n;
    /* results */
    int ran;
    int rc;
    char *opt_dir;
    uint64_t opt_size;
    struct pkg_error perr;
};

static void dop_free(struct dop *op)
{
    if (op == NULL)
        return;
    json_decref(op->doc);
    if (op->have_fc)
        cfg_function_clear(&op->fc);
    free(op);
}

static void dop_wait(struct dop *op)
{
    httpd_req_set_close_cb(op->call->req, api_call_closed_slot, &op->call);
}

static void dop_unwait(struct dop *op)
{
    if (op->call != NULL)
        httpd_req_set_close_cb(op->call->req, NULL, NULL);
}

/* Answer with ERR (if the client is still there); release the function; free OP. */
static void dop_fail(struct dop *op, enum api_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void dop_fail(struct dop *op, enum api_err err, const char *fmt, ...)
{
    char msg[1200];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (op->kind == DOP_CREATE && op->df != NULL && op->df->head == NULL) {
        /* A CreateFunction that never ran gives its name back. */
        deploy_fn_remove(op->d, op->df);
        op->df = NULL;
    }
    if (op->df != NULL)
        op->df->busy = 0;
    dop_unwait(op);
    if (op->call != NULL)
        api_reply_error(op->call, err, "%s", msg);
    dop_free(op);
}

static void dop_answer(struct dop *op, int status, json_t *body)
{
    if (op->df != NULL)
        op->df->busy = 0;
    dop_unwait(op);
    if (op->call != NULL)
        api_reply_json(op->call, status, body);
    else
        json_decref(body);
    dop_free(op);
}

/*
 * A new write of KIND on DF (NULL: CreateFunction), starting from a copy of DF's document.
 * NULL after answering 500 when out of memory.
 */
static struct dop *dop_new(struct api_call *call, enum dop_kind kind, struct dep_fn *df)
{
    struct dop *op = calloc(1, sizeof(*op));

    if (op == NULL || (df != NULL && (op->doc = json_deep_copy(df->doc)) == NULL)) {
        free(op);
        api_reply_error(call, API_E_SERVICE, "out of memory");
        return NULL;
    }
    op->call = call;
    op->api = call->api;
    op->d = call->api->dep;
    op->kind = kind;
    op->df = df;
    if (df != NULL)
        snprintf(op->name, sizeof(op->name), "%s", df->name);
    return op;
}

/* ---- looking functions up ---------------------------------------------------------------- */

/*
 * The function a write names (ARG is the FunctionName path segment), checked for ownership
 * and for a write already in progress. Answers and returns NULL on any refusal.
 */
static struct dep_fn *writable_fn(struct api_call *call, const char *arg)
{
    struct api *api = call->api;
    struct api_fname fname;
    struct dep_fn *df;

    if (api->dep == NULL) {
        api_reply_error(call, API_E_SERVICE, "the deployment state is not available");
        return NULL;
    }
    if (api_parse_fname(arg, &fname) != 0) {
        api_reply_error(call, API_E_VALIDATION,
                        "1 validation error detected: Value '%.200s' at 'functionName' failed "
                        "to satisfy constraint: Member must satisfy regular expression pattern: "
                        "[a-zA-Z0-9-_]{1,64}",
                        arg);
        return NULL;
    }
    snprintf(call->fname, sizeof(call->fname), "%s", fname.name);
    df = deploy_fn(api->dep, fname.name);
    if (df == NULL || df->head == NULL || function_deleted(df->head)) {
        api_reply_error(call, API_E_NOT_FOUND, "Function not found: arn:aws:lambda:%s:%s:function:%s",
                        api->cfg->broker.region, api->cfg->broker.account_id, fname.name);
        return NULL;
    }
    if (df->from_file) {
        api_reply_error(call, API_E_BAD_PARAM,
                        "Function %s is declared in %s and owned by that file: change it there "
                        "and run `switchyard reload`",
                        fname.name, api->cfg->path);
        return NULL;
    }
    if (df->busy) {
        api_reply_error(call, API_E_CONFLICT,
                        "The operation cannot be performed at this time. An update is in "
                        "progress for resource: %s",
                        function_arn(df->head));
        return NULL;
    }
    return df;
}

/* The request body as JSON (small requests, parsed on the loop); answers on failure. */
static json_t *small_body(struct api_call *call)
{
    size_t len;
    const char *body = httpd_req_body(call->req, &len);
    json_error_t jerr;
    json_t *j;

    if (httpd_req_too_large(call->req) || len > CONFIG_BODY_MAX) {
        api_reply_error(call, API_E_TOO_LARGE, "Request must be smaller than %u bytes for this "
                        "operation", CONFIG_BODY_MAX);
        return NULL;
    }
    if (len == 0)
        return json_object();
    j = json_loadb(body, len, 0, &jerr);
    if (j == NULL || !json_is_object(j)) {
        json_decref(j);
        api_reply_error(call, API_E_BAD_CONTENT, "Could not parse request body into json: %s",
                        j == NULL ? jerr.text : "not an object");
        return NULL;
    }
    return j;
}

#define REVISION_MISMATCH                                                                          \
    "The Revision Id provided does not match the latest Revision Id. Call the "                    \
    "GetFunction/GetAlias API to retrieve the latest Revision Id"

/* 1 when REQ gives no RevisionId or CURRENT's (a function document or an alias), else 0. */
static int revision_matches(const json_t *req, const json_t *current)
{
    const char *want = json_string_value(json_object_get(req, "RevisionId"));
    const char *have = json_string_value(json_object_get(current, "RevisionId"));

    return want == NULL || (have != NULL && strcmp(want, have) == 0);
}

/* As revision_matches(); on a mismatch answers 412 and returns -1. */
static int revision_ok(struct api_call *call, const json_t *req, const json_t *current)
{
    if (revision_matches(req, current))
        return 0;
    api_reply_error(call, API_E_PRECONDITION, REVISION_MISMATCH);
    return -1;
}

/* ---- the state thread's part of a code change -------------------------------------------- */

/* Lambda's answer for a package error. */
static enum api_err pkg_api_err(enum pkg_err kind)
{
    switch (kind) {
    case PKG_E_TOO_LARGE_ZIP:
        return API_E_TOO_LARGE;
    case PKG_E_IO:
    case PKG_E_NOMEM:
        return API_E_SERVICE;
    default:
        return API_E_BAD_PARAM;
    }
}

int api_zipreq_failed(const struct deploy_zipreq *zr, const char *op, enum api_err *api_err,
                      char *why, size_t whysz)
{
    static const char pkg_op[] = "CreateFunction"; /* the operation packages/ names */
    const char *at;

    if (!zr->ran) {
        *api_err = API_E_UNAVAILABLE;
        snprintf(why, whysz, "the broker is shutting down");
    } else if (zr->req == NULL) {
        *api_err = API_E_BAD_CONTENT;
        snprintf(why, whysz, "Could not parse request body into json: %s", zr->jerr);
    } else if (zr->has_zip && zr->bad_b64) {
        *api_err = API_E_BAD_PARAM;
        snprintf(why, whysz, "Could not unzip uploaded file. Please check your file, then try "
                             "to upload again. (ZipFile is not valid base64)");
    } else if (zr->has_zip && zr->perr.kind != PKG_OK) {
        *api_err = pkg_api_err(zr->perr.kind);
        at = strstr(zr->perr.msg, pkg_op);
        if (zr->perr.kind == PKG_E_TOO_LARGE_ZIP && at != NULL)
            snprintf(why, whysz, "%.*s%s%s", (int)(at - zr->perr.msg), zr->perr.msg, op,
                     at + strlen(pkg_op));
        else
            snprintf(why, whysz, "%s", zr->perr.msg);
    } else {
        return 0;
    }
    return 1;
}

static void prep_run(void *arg)
{
    struct prep *p = arg;

    deploy_zipreq_run(&p->zr);
}

static void prepared(struct dop *op, struct prep *p);

static void prep_done(void *arg)
{
    struct prep *p = arg;
    struct dop *op = p->op;
    enum api_err api_err;
    char why[1200];

    if (api_zipreq_failed(&p->zr, op->kind == DOP_CREATE ? "CreateFunction"
                                                          : "UpdateFunctionCode",
                          &api_err, why, sizeof(why)))
        dop_fail(op, api_err, "%s", why);
    else
        prepared(op, p);
    deploy_zipreq_clear(&p->zr);
    free(p);
}

/* Hand the body of OP's request to the state thread (CODE_TOP: UpdateFunctionCode's shape). */
static void prep_submit(struct dop *op, int code_top)
{
    struct prep *p = calloc(1, sizeof(*p));

    if (p == NULL || (p->zr.store_dir = strdup(deploy_store_dir(op->d))) == NULL) {
        free(p);
        dop_fail(op, API_E_SERVICE, "out of memory");
        return;
    }
    p->op = op;
    p->zr.member = code_top ? NULL : "Code";
    p->zr.body = httpd_req_take_body(op->call->req, &p->zr.len);
    if (p->zr.body == NULL) {
        p->zr.body = strdup("{}");
        p->zr.len = 2;
    }
    dop_wait(op);
    if (p->zr.body == NULL || deploy_offload(op->d, prep_run, prep_done, p) != 0) {
        deploy_zipreq_clear(&p->zr);
        free(p);
        dop_fail(op, API_E_SERVICE, "out of memory");
    }
}

/* ---- layers ---------------------------------------------------------------------------------- */

static void merge_run(void *arg)
{
    struct merge *m = arg;

    m->ran = 1;
    m->rc = pkg_merge(m->store_dir, (const char *const *)m->dirs, m->n, &m->opt_dir,
                      &m->opt_size, &m->perr);
}

static void merge_free(struct merge *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->dirs[i]);
    free(m->store_dir);
    free(m->opt_dir);
    free(m);
}

static void merge_done(void *arg)
{
    struct merge *m = arg;
    struct dop *op = m->op;
    json_t *conf = json_object_get(op->doc, "Config");

    if (!m->ran) {
        dop_fail(op, API_E_UNAVAILABLE, "the broker is shutting down");
    } else if (m->rc != 0) {
        dop_fail(op, API_E_SERVICE, "the layers cannot be merged: %s", m->perr.msg);
    } else {
        if (m->opt_dir != NULL)
            json_object_set_new(conf, "OptDir", json_string(m->opt_dir));
        else
            json_object_del(conf, "OptDir");
        json_object_set_new(conf, "OptSize", json_integer((json_int_t)m->opt_size));
        m->next(op);
    }
    merge_free(m);
}

/*
 * OP's request set Layers (now in OP->doc's Config): check them as Lambda does and merge the
 * layers' trees on the state thread (an empty list: no merge, and no Layers any more);
 * NEXT(OP) then runs on the loop with Config.OptDir and OptSize set. Answers on a refusal.
 * OP's function is busy meanwhile (a CreateFunction's name is taken).
 */
static void layers_then(struct dop *op, void (*next)(struct dop *op))
{
    json_t *conf = json_object_get(op->doc, "Config");
    const char *dirs[CFG_LAYERS_MAX];
    enum api_err api_err;
    char why[600];
    struct merge *m;
    int n;

    n = api_layers_resolve(op->api, json_object_get(conf, "Layers"), dirs, &api_err, why,
                           sizeof(why));
    if (n < 0) {
        dop_fail(op, api_err, "%s", why);
        return;
    }
    if (n == 0) {
        /* `Layers: []` takes them all away: nothing to merge. */
        json_object_del(conf, "Layers");
        json_object_del(conf, "OptDir");
        json_object_del(conf, "OptSize");
        next(op);
        return;
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL || (m->store_dir = strdup(deploy_store_dir(op->d))) == NULL)
        goto nomem;
    m->op = op;
    m->next = next;
    for (int i = 0; i < n; i++) {
        if ((m->dirs[i] = strdup(dirs[i])) == NULL)
            goto nomem;
        m->n = (size_t)i + 1;
    }
    if (op->call != NULL)
        dop_wait(op);
    if (deploy_offload(op->d, merge_run, merge_done, m) != 0)
        goto nomem;
    return;
nomem:
    if (m != NULL)
        merge_free(m);
    dop_fail(op, API_E_SERVICE, "out of memory");
}

/* ---- documents ----------------------------------------------------------------------------- */

/* The configurable members a request may set, copied from REQ into CONF. */
static void conf_merge(json_t *conf, const json_t *req)
{
    static const char *const keys[] = {"Runtime", "Handler", "MemorySize", "Timeout",
                                       "Description", "Environment", "Layers", "Role"};

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        json_t *v = json_object_get(req, keys[i]);

        if (v != NULL)
            json_object_set(conf, keys[i], v);
    }
}

/* Publish the current Config of OP->doc as a new version, unless the latest version has the
 * same code and configuration (then that one is the answer, as Lambda does). */
static void doc_publish(struct dop *op, const char *description)
{
    json_t *doc = op->doc;
    json_t *vers = json_object_get(doc, "Versions");
    json_t *conf = json_object_get(doc, "Config");
    json_int_t next = json_integer_value(json_object_get(doc, "NextVersion"));
    json_int_t last = next - 1;
    char key[24];
    json_t *ver, *vconf;
    char ts[32], rid[40];

    if (vers == NULL) {
        vers = json_object();
        json_object_set_new(doc, "Versions", vers);
    }
    if (next < 1)
        next = 1;
    snprintf(key, sizeof(key), "%lld", (long long)last);
    ver = last >= 1 ? json_object_get(vers, key) : NULL;
    if (ver != NULL) {
        json_t *a = json_deep_copy(json_object_get(ver, "Config"));
        json_t *b = json_deep_copy(conf);
        int same;

        json_object_del(a, "Description");
        json_object_del(b, "Description");
        json_object_del(a, "EventInvokeConfig"); /* per qualifier, not part of a version */
        json_object_del(b, "EventInvokeConfig");
        same = json_equal(a, b);
        json_decref(a);
        json_decref(b);
        if (same) {
            snprintf(op->version, sizeof(op->version), "%s", key);
            return;
        }
    }
    snprintf(op->version, sizeof(op->version), "%lld", (long long)next);
    vconf = json_deep_copy(conf);
    json_object_del(vconf, "EventInvokeConfig");
    if (description != NULL)
        json_object_set_new(vconf, "Description", json_string(description));
    time_iso8601_lambda(ts, time_wall_ms());
    fastid_uuid4(rid);
    json_object_set_new(vers, op->version,
                        json_pack("{s:o,s:s,s:s}", "Config", vconf, "RevisionId", rid,
                                  "LastModified", ts));
    json_object_set_new(doc, "NextVersion", json_integer(next + 1));
}

/* Stamp the new document with a new RevisionId and LastModified. */
static void doc_touch(json_t *doc, char *rid_out, char *ts_out)
{
    time_iso8601_lambda(ts_out, time_wall_ms());
    fastid_uuid4(rid_out);
    json_object_set_new(doc, "RevisionId", json_string(rid_out));
    json_object_set_new(doc, "LastModified", json_string(ts_out));
}

static void stored(void *arg, int rc, const char *msg);

/* Persist OP->doc; stored() applies and answers. */
static void dop_persist(struct dop *op)
{
    int rc = deploy_persist(op->d, op->name, op->kind == DOP_DELETE ? NULL : op->doc, stored, op);

    if (rc != 0) {
        dop_fail(op, API_E_SERVICE, "cannot store the change: %s", sy_strerror(rc));
        return;
    }
    if (op->call != NULL)
        dop_wait(op);
}

/* ---- answers ------------------------------------------------------------------------------- */

static json_t *alias_json(struct api *api, struct dep_fn *df, const char *name, const json_t *al)
{
    char arn[400];
    json_t *o, *rc = json_object_get(al, "RoutingConfig");

    snprintf(arn, sizeof(arn), "%s:%s", function_arn(df->head), name);
    o = json_pack("{s:s,s:s,s:s,s:s,s:s}", "AliasArn", arn, "Name", name, "FunctionVersion",
                  json_string_value(json_object_get(al, "FunctionVersion")) ?: "$LATEST",
                  "Description", json_string_value(json_object_get(al, "Description")) ?: "",
                  "RevisionId", json_string_value(json_object_get(al, "RevisionId")) ?: "");
    if (o != NULL && json_object_size(json_object_get(rc, "AdditionalVersionWeights")) > 0)
        json_object_set(o, "RoutingConfig", rc);
    (void)api;
    return o;
}

static json_t *pc_json(struct dep_fn *df, const char *qual)
{
    const json_t *pc = json_object_get(json_object_get(df->doc, "Provisioned"), qual);
    json_int_t req = json_integer_value(json_object_get(pc, "Requested"));
    struct function *unit = function_route(df->head, qual);
    const char *target = qual;
    unsigned wanted = 0, ready = 0;
    json_int_t avail;

    /* An alias's environments are its version's, shared with that version's own setting. */
    {
        const char *v = json_string_value(
            json_object_get(json_object_get(json_object_get(df->doc, "Aliases"), qual),
                            "FunctionVersion"));

        if (v != NULL) {
            target = v;
            unit = function_version(df->head, v);
        }
    }
    (void)target;
    if (unit != NULL)
        function_provisioned_counts(unit, &wanted, &ready);
    avail = ready < (unsigned)req ? (json_int_t)ready : req;
    if (ready > wanted) /* never report more than asked */
        ready = wanted;
    return json_pack("{s:I,s:I,s:I,s:s,s:s}", "RequestedProvisionedConcurrentExecutions", req,
                     "AvailableProvisionedConcurrentExecutions", avail,
                     "AllocatedProvisionedConcurrentExecutions", avail, "Status",
                     avail >= req ? "READY" : "IN_PROGRESS", "LastModified",
                     json_string_value(json_object_get(pc, "LastModified")) ?: "");
}

/* FunctionEventInvokeConfig of qualifier QUAL from its stored EIC. */
static json_t *eic_json(struct dep_fn *df, const char *qual, const json_t *eic)
{
    char arn[400];
    json_t *o;
    const json_t *dc = json_object_get(eic, "DestinationConfig");

    snprintf(arn, sizeof(arn), "%s:%s", function_arn(df->head), qual);
    o = json_pack("{s:f,s:s,s:I,s:I}", "LastModified",
                  json_real_value(json_object_get(eic, "LastModified")), "FunctionArn", arn,
                  "MaximumRetryAttempts",
                  json_integer_value(json_object_get(eic, "MaximumRetryAttempts")),
                  "MaximumEventAgeInSeconds",
                  json_integer_value(json_object_get(eic, "MaximumEventAgeInSeconds")));
    json_object_set_new(o, "DestinationConfig",
                        dc != NULL ? json_deep_copy(dc)
                                   : json_pack("{s:{},s:{}}", "OnSuccess", "OnFailure"));
    return o;
}

/* ---- applying a stored change -------------------------------------------------------------- */

static void stored(void *arg, int rc, const char *msg)
{
    struct dop *op = arg;
    struct dep_fn *df = op->df;
    struct sy_error err;
    json_t *answer = NULL;
    int status = 200;

    if (rc != 0) {
        if (op->kind == DOP_CREATE && df != NULL) {
            deploy_fn_remove(op->d, df);
            op->df = NULL;
        }
        dop_fail(op, API_E_SERVICE, "the change was not stored (%s): nothing changed",
                 msg != NULL ? msg : sy_strerror(rc));
        return;
    }
    switch (op->kind) {
    case DOP_CREATE:
        df->head = dispatcher_add(op->api->dsp, &op->fc, &err);
        if (df->head == NULL) {
            /* Checked before storing, so only out of memory gets here: undo the row. */
            log_err("[deploy] function %s was stored but cannot run: %s", op->name, err.msg);
            deploy_persist(op->d, op->name, NULL, NULL, NULL);
            deploy_fn_remove(op->d, df);
            op->df = NULL;
            dop_fail(op, API_E_SERVICE, "%s", err.msg);
            return;
        }
        status = 201;
        break;
    case DOP_UPDATE_CODE:
    case DOP_UPDATE_CONFIG:
        if (function_update(df->head, &op->fc, &err) != 0) {
            log_err("[deploy] function %s: the stored update cannot be applied: %s", op->name,
                    err.msg);
            dop_fail(op, API_E_SERVICE, "%s", err.msg);
            return;
        }
        break;
    case DOP_DELETE:
        function_delete(df->head);
        deploy_fn_remove(op->d, df);
        op->df = NULL;
        dop_answer(op, 204, NULL);
        return;
    case DOP_DELETE_VERSION:
        function_delete_version(function_version(df->head, op->version));
        break;
    default:
        break;
    }
    /* The new document is the function's now. */
    json_decref(df->doc);
    df->doc = op->doc;
    op->doc = NULL;
    /* A version published by this change (Publish: true, PublishVersion). */
    if (op->publish && function_version(df->head, op->version) == NULL) {
        const json_t *vconf = json_object_get(
            json_object_get(json_object_get(df->doc, "Versions"), op->version), "Config");
        struct cfg_function vfc;
        char why[600];
        int api_err;

        /* The version's own copy (its Description may differ from $LATEST's). */
        if (deploy_cfg_from_json(op->d, vconf, &vfc, &api_err, why, sizeof(why)) != 0) {
            log_err("[deploy] function %s version %s: %s", op->name, op->version, why);
        } else {
            if (function_publish(df->head, op->version, &vfc, &err) == NULL)
                log_err("[deploy] function %s version %s: %s", op->name, op->version, err.msg);
            cfg_function_clear(&vfc);
        }
    }
    switch (op->kind) {
    case DOP_CREATE:
    case DOP_UPDATE_CODE:
    case DOP_UPDATE_CONFIG:
        log_info("[deploy] function %s %s (code %s)", op->name,
                 op->kind == DOP_CREATE ? "created" : "updated", function_cfg(df->head)->code_sha256);
        answer = api_fn_config_json(op->api, op->publish ? function_version(df->head, op->version)
                                                          : df->head, 0);
        break;
    case DOP_PUBLISH:
        answer = api_fn_config_json(op->api, function_version(df->head, op->version), 0);
        status = 201;
        break;
    case DOP_DELETE_VERSION:
    case DOP_ALIAS_DELETE:
    case DOP_PC_DELETE:
    case DOP_RESERVED_DELETE:
        if (op->kind == DOP_ALIAS_DELETE)
            function_alias_delete(df->head, op->qual);
        if (op->kind == DOP_RESERVED_DELETE)
            function_set_reserved(df->head, -1, &err);
        deploy_apply_provisioned(op->d, df);
        dop_answer(op, 204, NULL);
        return;
    case DOP_ALIAS: {
        const json_t *al = json_object_get(json_object_get(df->doc, "Aliases"), op->qual);
        json_t *w = json_object_get(json_object_get(al, "RoutingConfig"),
                                    "AdditionalVersionWeights");
        const char *xv = NULL, *wk;
        double xw = 0;
        json_t *wv;

        json_object_foreach(w, wk, wv) {
            xv = wk;
            xw = json_number_value(wv);
        }
        if (function_alias_set(df->head, op->qual,
                               json_string_value(json_object_get(al, "FunctionVersion")), xv, xw,
                               &err) != 0)
            log_err("[deploy] function %s alias %s: %s", op->name, op->qual, err.msg);
        deploy_apply_provisioned(op->d, df);
        answer = alias_json(op->api, df, op->qual, al);
        status = op->created ? 201 : 200;
        break;
    }
    case DOP_PC_PUT:
        deploy_apply_provisioned(op->d, df);
        answer = pc_json(df, op->qual);
        json_object_set_new(answer, "Status", json_string("IN_PROGRESS"));
        status = 202;
        break;
    case DOP_EIC_PUT:
    case DOP_EIC_DELETE: {
        struct function *unit = function_version(df->head, op->qual);
        const json_t *conf = strcmp(op->qual, "$LATEST") == 0
                                 ? json_object_get(df->doc, "Config")
                                 : json_object_get(json_object_get(json_object_get(df->doc,
                                                                                   "Versions"),
                                                                   op->qual),
                                                   "Config");
        struct cfg_function fc;
        char why[600];
        int api_err;

        if (unit != NULL && deploy_cfg_from_json(op->d, conf, &fc, &api_err, why, sizeof(why)) == 0) {
            if (function_set_async(unit, &fc.async, &err) != 0)
                log_err("[deploy] function %s:%s: %s", op->name, op->qual, err.msg);
            cfg_function_clear(&fc);
        }
        if (op->kind == DOP_EIC_DELETE) {
            dop_answer(op, 204, NULL);
            return;
        }
        answer = eic_json(df, op->qual, json_object_get(conf, "EventInvokeConfig"));
        break;
    }
    case DOP_RESERVED_PUT:
        if (function_set_reserved(df->head, op->reserved, &err) != 0)
            log_err("[deploy] function %s: %s", op->name, err.msg);
        answer = json_pack("{s:i}", "ReservedConcurrentExecutions", op->reserved);
        break;
    default:
        break;
    }
    dop_answer(op, status, answer);
}

/* ---- CreateFunction / UpdateFunctionCode ---------------------------------------------------- */

/*
 * Check the configuration OP->doc will store, before anything is stored: Lambda's 250 MB for
 * the code and the layers together, then as deploy_cfg_from_json() and the dispatcher see it.
 * 0, or answered.
 */
static int fc_check(struct dop *op)
{
    const json_t *conf = json_object_get(op->doc, "Config");
    json_int_t total = json_integer_value(json_object_get(conf, "UnzippedSize")) +
                       json_integer_value(json_object_get(conf, "OptSize"));
    char why[600];
    int api_err;

    if (total > (json_int_t)pkg_limits_lambda().max_unzipped_bytes) {
        dop_fail(op, API_E_BAD_PARAM,
                 "Function code combined with layers exceeds the maximum allowed size of "
                 "%llu bytes. The actual size is %lld bytes.",
                 (unsigned long long)pkg_limits_lambda().max_unzipped_bytes, (long long)total);
        return -1;
    }
    if (deploy_cfg_from_json(op->d, conf, &op->fc, &api_err, why, sizeof(why)) != 0) {
        dop_fail(op, (enum api_err)api_err, "%s", why);
        return -1;
    }
    op->have_fc = 1;
    if (runtimes_check(op->api->dsp, &op->fc, why, sizeof(why)) < 0) {
        dop_fail(op, API_E_BAD_PARAM, "%s", why);
        return -1;
    }
    return 0;
}

/* A code change with its code (and, for a CreateFunction with Layers, its layers) ready. */
static void code_ready(struct dop *op)
{
    char rid[40], ts[32];

    if (fc_check(op) != 0)
        return;
    doc_touch(op->doc, rid, ts);
    if (op->publish)
        doc_publish(op, NULL);
    dop_persist(op);
}

static void prepared(struct dop *op, struct prep *p)
{
    json_t *req = p->zr.req;
    const struct pkg_info *info = &p->zr.info;
    json_t *conf;

    if (op->kind == DOP_CREATE) {
        const char *name = json_string_value(json_object_get(req, "FunctionName"));
        json_t *code = json_object_get(req, "Code");

        if (name == NULL) {
            dop_fail(op, API_E_VALIDATION, "1 validation error detected: Value null at "
                                           "'functionName' failed to satisfy constraint: Member "
                                           "must not be null");
            return;
        }
        snprintf(op->name, sizeof(op->name), "%.64s", name);
        if (op->call != NULL)
            snprintf(op->call->fname, sizeof(op->call->fname), "%s", op->name);
        if (!p->zr.has_zip) {
            dop_fail(op, API_E_BAD_PARAM,
                     "%s: switchyard takes the code as Code.ZipFile (S3 and image packages are "
                     "not available here)",
                     json_object_get(code, "ImageUri") != NULL ? "ImageUri" : "Code");
            return;
        }
        /* What dispatcher_add() would refuse, refused before anything is stored. */
        if (deploy_fn(op->d, op->name) != NULL ||
            dispatcher_function(op->api->dsp, op->name) != NULL) {
            dop_fail(op, API_E_CONFLICT, "Function already exist: %s", op->name);
            return;
        }
        if (json_is_string(json_object_get(req, "PackageType")) &&
            strcmp(json_string_value(json_object_get(req, "PackageType")), "Zip") != 0) {
            dop_fail(op, API_E_BAD_PARAM, "PackageType Image is not available here");
            return;
        }
        conf = json_object();
        json_object_set_new(conf, "FunctionName", json_string(op->name));
        conf_merge(conf, req);
        op->doc = json_pack("{s:o,s:i}", "Config", conf, "NextVersion", 1);
    } else {
        if (!p->zr.has_zip) {
            dop_fail(op, API_E_BAD_PARAM, "ZipFile is required (S3 and image packages are not "
                                          "available here)");
            return;
        }
        if (op->df->head == NULL || function_deleted(op->df->head)) {
            dop_fail(op, API_E_NOT_FOUND, "Function not found: %s", op->name);
            return;
        }
        json_decref(op->doc);
        op->doc = json_deep_copy(op->df->doc);
        conf = json_object_get(op->doc, "Config");
    }
    json_object_set_new(conf, "CodeSha256", json_string(info->sha256_b64));
    json_object_set_new(conf, "CodeSize", json_integer((json_int_t)info->zip_size));
    json_object_set_new(conf, "PackageDir", json_string(info->dir));
    json_object_set_new(conf, "UnzippedSize", json_integer((json_int_t)info->unzipped_size));
    if (json_is_true(json_object_get(req, "DryRun")) && op->kind == DOP_UPDATE_CODE) {
        if (fc_check(op) != 0)
            return;
        dop_answer(op, 200, api_fn_config_json(op->api, op->df->head, 0));
        return;
    }
    op->publish = json_is_true(json_object_get(req, "Publish"));
    if (op->kind == DOP_CREATE) {
        /* The name is taken from now on (a second CreateFunction gets 409), and busy. */
        op->df = deploy_fn_add(op->d, op->name, NULL);
        if (op->df == NULL) {
            dop_fail(op, API_E_SERVICE, "out of memory");
            return;
        }
    }
    op->df->busy = 1;
    if (op->kind == DOP_CREATE && json_object_get(conf, "Layers") != NULL)
        layers_then(op, code_ready);
    else
        code_ready(op);
}

void api_create_function(struct api_call *call, const char *arg)
{
    struct dop *op;

    if (call->api->dep == NULL) {
        api_reply_error(call, API_E_SERVICE, "the deployment state is not available");
        return;
    }
    if (httpd_req_too_large(call->req)) {
        api_reply_error(call, API_E_TOO_LARGE,
                        "Request must be smaller than 69905067 bytes for the CreateFunction "
                        "operation");
        return;
    }
    op = dop_new(call, DOP_CREATE, NULL);
    if (op != NULL)
        prep_submit(op, 0);
}

void api_update_code(struct api_call *call, const char *arg)
{
    struct dep_fn *df;
    struct dop *op;

    if (httpd_req_too_large(call->req)) {
        api_reply_error(call, API_E_TOO_LARGE,
                        "Request must be smaller than 69905067 bytes for the UpdateFunctionCode "
                        "operation");
        return;
    }
    df = writable_fn(call, arg);
    if (df == NULL)
        return;
    op = dop_new(call, DOP_UPDATE_CODE, df);
    if (op == NULL)
        return;
    df->busy = 1; /* from now: a second update gets 409 */
    prep_submit(op, 1);
}

/* ---- UpdateFunctionConfiguration ------------------------------------------------------------- */

/* UpdateFunctionConfiguration with its layers (when it set them) merged. */
static void config_ready(struct dop *op)
{
    char rid[40], ts[32];

    if (fc_check(op) != 0)
        return;
    op->df->busy = 1;
    doc_touch(op->doc, rid, ts);
    dop_persist(op);
}

void api_update_config(struct api_call *call, const char *arg)
{
    struct dep_fn *df = writable_fn(call, arg);
    json_t *req;
    struct dop *op;
    int layers;

    if (df == NULL || (req = small_body(call)) == NULL)
        return;
    if (revision_ok(call, req, df->doc) != 0) {
        json_decref(req);
        return;
    }
    op = dop_new(call, DOP_UPDATE_CONFIG, df);
    if (op == NULL) {
        json_decref(req);
        return;
    }
    conf_merge(json_object_get(op->doc, "Config"), req);
    layers = json_object_get(req, "Layers") != NULL;
    json_decref(req);
    if (layers) {
        df->busy = 1; /* from now: the merge takes a turn of the state thread */
        layers_then(op, config_ready);
    } else {
        config_ready(op);
    }
}

/* ---- DeleteFunction ---------------------------------------------------------------------------- */

void api_delete_function(struct api_call *call, const char *arg)
{
    struct dep_fn *df = writable_fn(call, arg);
    char qbuf[160];
    const char *qual;
    struct dop *op;

    if (df == NULL)
        return;
    qual = httpd_req_query_param(call->req, "Qualifier", qbuf, sizeof(qbuf));
    if (qual != NULL && qual[0] == '\0')
        qual = NULL;
    if (qual != NULL && strcmp(qual, "$LATEST") == 0) {
        api_reply_error(call, API_E_BAD_PARAM,
                        "$LATEST version cannot be deleted without deleting the function.");
        return;
    }
    if (qual != NULL && function_version(df->head, qual) == NULL) {
        api_reply_error(call, API_E_NOT_FOUND, "Function not found: %s:%s",
                        function_arn(df->head), qual);
        return;
    }
    op = dop_new(call, qual != NULL ? DOP_DELETE_VERSION : DOP_DELETE, df);
    if (op == NULL)
        return;
    if (qual != NULL) {
        json_t *aliases = json_object_get(op->doc, "Aliases");
        const char *an;
        json_t *al;

        json_object_foreach(aliases, an, al) {
            const char *v = json_string_value(json_object_get(al, "FunctionVersion"));
            json_t *w = json_object_get(json_object_get(al, "RoutingConfig"),
                                        "AdditionalVersionWeights");

            if ((v != NULL && strcmp(v, qual) == 0) || json_object_get(w, qual) != NULL) {
                dop_fail(op, API_E_CONFLICT,
                         "Unable to delete version because the following aliases reference "
                         "it: [%s]",
                         an);
                return;
            }
        }
        snprintf(op->version, sizeof(op->version), "%s", qual);
        json_object_del(json_object_get(op->doc, "Versions"), qual);
        json_object_del(json_object_get(op->doc, "Provisioned"), qual);
    }
    df->busy = 1;
    dop_persist(op);
}

/* ---- versions ----------------------------------------------------------------------------------- */

void api_publish_version(struct api_call *call, const char *arg)
{
    struct dep_fn *df = writable_fn(call, arg);
    json_t *req;
    struct dop *op;
    const char *sha;

    if (df == NULL || (req = small_body(call)) == NULL)
        return;
    if (revision_ok(call, req, df->doc) != 0) {
        json_decref(req);
        return;
    }
    sha = json_string_value(json_object_get(req, "CodeSha256"));
    if (sha != NULL && strcmp(sha, function_cfg(df->head)->code_sha256 ?: "") != 0) {
        api_reply_error(call, API_E_BAD_PARAM,
                        "CodeSHA256 (%.64s) is different from current CodeSHA256 in $LATEST "
                        "(%s). Please try again with the CodeSHA256 in $LATEST.",
                        sha, function_cfg(df->head)->code_sha256 ?: "");
        json_decref(req);
        return;
    }
    op = dop_new(call, DOP_PUBLISH, df);
    if (op == NULL) {
        json_decref(req);
        return;
    }
    op->publish = 1;
    doc_publish(op, json_string_value(json_object_get(req, "Description")));
    json_decref(req);
    if (function_version(df->head, op->version) != NULL) {
        /* Nothing changed since that version: Lambda answers it again. */
        dop_answer(op, 201, api_fn_config_json(op->api, function_version(df->head, op->version), 0));
        return;
    }
    df->busy = 1;
    dop_persist(op);
}

void api_list_versions(struct api_call *call, const char *arg)
{
    struct api_fname fname;
    struct function *head;
    json_t *arr;

    if (api_parse_fname(arg, &fname) != 0 ||
        (head = dispatcher_function(call->api->dsp, fname.name)) == NULL) {
        api_reply_error(call, API_E_NOT_FOUND, "Function not found: arn:aws:lambda:%s:%s:function:%s",
                        call->api->cfg->broker.region, call->api->cfg->broker.account_id, fname.name);
        return;
    }
    arr = json_array();
    json_array_append_new(arr, api_fn_config_json(call->api, head, 0));
    for (size_t i = 0; i < function_version_count(head); i++)
        json_array_append_new(arr, api_fn_config_json(call->api, function_version_at(head, i), 0));
    api_reply_json(call, 200, json_pack("{s:o}", "Versions", arr));
}

/* ---- aliases ------------------------------------------------------------------------------------ */

static int alias_name_valid(const char *s)
{
    int digits_only = 1;
    size_t n = strlen(s);

    if (n == 0 || n > 128)
        return 0;
    for (const char *p = s; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_'))
            return 0;
        if (*p < '0' || *p > '9')
            digits_only = 0;
    }
    return !digits_only;
}

/*
 * Validate and write alias NAME from REQ into OP->doc (CREATE: it must not exist; else it
 * must). Answers and returns -1 on a refusal.
 */
static int alias_write(struct dop *op, const char *name, const json_t *req, int create)
{
    struct dep_fn *df = op->df;
    json_t *aliases = json_object_get(op->doc, "Aliases");
    json_t *cur = json_object_get(aliases, name);
    const char *ver = json_string_value(json_object_get(req, "FunctionVersion"));
    const json_t *rc = json_object_get(req, "RoutingConfig");
    const json_t *w = json_object_get(rc, "AdditionalVersionWeights");
    const char *desc = json_string_value(json_object_get(req, "Description"));
    json_t *al;
    char rid[40];

    if (!alias_name_valid(name)) {
        dop_fail(op, API_E_VALIDATION,
                 "1 validation error detected: Value '%.128s' at 'name' failed to satisfy "
                 "constraint: Member must satisfy regular expression pattern: " ALIAS_PATTERN,
                 name);
        return -1;
    }
    if (create && cur != NULL) {
        dop_fail(op, API_E_CONFLICT, "Alias already exists: %s:%s", function_arn(df->head), name);
        return -1;
    }
    if (!create && cur == NULL) {
        dop_fail(op, API_E_NOT_FOUND, "Alias not found: %s:%s", function_arn(df->head), name);
        return -1;
    }
    if (!create && !revision_matches(req, cur)) {
        dop_fail(op, API_E_PRECONDITION, REVISION_MISMATCH);
        return -1;
    }
    if (ver == NULL && create) {
        dop_fail(op, API_E_VALIDATION, "1 validation error detected: Value null at "
                                       "'functionVersion' failed to satisfy constraint: Member "
                                       "must not be null");
        return -1;
    }
    if (ver == NULL)
        ver = json_string_value(json_object_get(cur, "FunctionVersion"));
    if (function_version(df->head, ver) == NULL) {
        dop_fail(op, API_E_NOT_FOUND, "Function not found: %s:%s", function_arn(df->head), ver);
        return -1;
    }
    if (w != NULL) {
        const char *wk;
        json_t *wv;

        if (!json_is_object(w) || json_object_size(w) > 1) {
            dop_fail(op, API_E_BAD_PARAM, "RoutingConfig.AdditionalVersionWeights takes one "
                                          "version and its weight");
            return -1;
        }
        json_object_foreach((json_t *)w, wk, wv) {
            double x = json_number_value(wv);

            if (!json_is_number(wv) || x < 0 || x > 1) {
                dop_fail(op, API_E_VALIDATION,
                         "1 validation error detected: Value at "
                         "'routingConfig.additionalVersionWeights' failed to satisfy "
                         "constraint: Map value must satisfy constraint: [Member must have value "
                         "less than or equal to 1.0, Member must have value greater than or "
                         "equal to 0.0]");
                return -1;
            }
            if (function_version(df->head, wk) == NULL || strcmp(wk, "$LATEST") == 0) {
                dop_fail(op, API_E_BAD_PARAM, "Function not found: %s:%s",
                         function_arn(df->head), wk);
                return -1;
            }
            if (strcmp(wk, ver) == 0) {
                dop_fail(op, API_E_BAD_PARAM, "Invalid function version %s. Function version %s "
                                              "is already included in routing configuration.",
                         wk, wk);
                return -1;
            }
            if (strcmp(ver, "$LATEST") == 0) {
                dop_fail(op, API_E_BAD_PARAM, "$LATEST is not supported for an alias pointing to "
                                              "more than 1 version");
                return -1;
            }
        }
    }
    if (aliases == NULL) {
        aliases = json_object();
        json_object_set_new(op->doc, "Aliases", aliases);
    }
    al = cur != NULL ? json_deep_copy(cur) : json_object();
    json_object_set_new(al, "FunctionVersion", json_string(ver));
    if (desc != NULL || create)
        json_object_set_new(al, "Description", json_string(desc != NULL ? desc : ""));
    if (rc != NULL)
        json_object_set(al, "RoutingConfig", (json_t *)rc);
    fastid_uuid4(rid);
    json_object_set_new(al, "RevisionId", json_string(rid));
    json_object_set_new(aliases, name, al);
    return 0;
}

/* ARG = "FUNCTION/ALIAS" (two path segments) or "FUNCTION". */
static void split_arg(const char *arg, char *fn, size_t fnsz, char *alias, size_t asz)
{
    const char *slash = strchr(arg, '/');

    if (slash == NULL) {
        snprintf(fn, fnsz, "%s", arg);
        alias[0] = '\0';
        return;
    }
    snprintf(fn, fnsz, "%.*s", (int)(slash - arg), arg);
    snprintf(alias, asz, "%s", slash + 1);
}

void api_create_alias(struct api_call *call, const char *arg)
{
    struct dep_fn *df = writable_fn(call, arg);
    json_t *req;
    struct dop *op;
    const char *name;

    if (df == NULL || (req = small_body(call)) == NULL)
        return;
    name = json_string_value(json_object_get(req, "Name"));
    op = dop_new(call, DOP_ALIAS, df);
    if (op == NULL) {
        json_decref(req);
        return;
    }
    op->created = 1;
    snprintf(op->qual, sizeof(op->qual), "%.128s", name != NULL ? name : "");
    if (alias_write(op, op->qual, req, 1) != 0) {
        json_decref(req);
        return;
    }
    json_decref(req);
    df->busy = 1;
    dop_persist(op);
}

/* The function of ARG ("FUNCTION/ALIAS") for a read, with its alias document; answers on NULL. */
static struct dep_fn *alias_target(struct api_call *call, const char *arg, char *alias, size_t asz,
                                   const json_t **al)
{
    char fname[1024];
    struct api_fname pf;
    struct dep_fn *df;

    split_arg(arg, fname, sizeof(fname), alias, asz);
    if (api_parse_fname(fname, &pf) != 0 || call->api->dep == NULL ||
        (df = deploy_fn(call->api->dep, pf.name)) == NULL || df->head == NULL ||
        function_deleted(df->head)) {
        api_reply_error(call, API_E_NOT_FOUND, "Function not found: arn:aws:lambda:%s:%s:function:%s",
                        call->api->cfg->broker.region, call->api->cfg->broker.account_id,
                        fname);
        return NULL;
    }
    *al = json_object_get(json_object_get(df->doc, "Aliases"), alias);
    if (alias[0] != '\0' && *al == NULL) {
        api_reply_error(call, API_E_NOT_FOUND, "Alias not found: %s:%s", function_arn(df->head),
                        alias);
        return NULL;
    }
    return df;
}

void api_get_alias(struct api_call *call, const char *arg)
{
    char alias[160];
    const json_t *al;
    struct dep_fn *df = alias_target(call, arg, alias, sizeof(alias), &al);

    if (df != NULL)
        api_reply_json(call, 200, alias_json(call->api, df, alias, al));
}

void api_list_aliases(struct api_call *call, const char *arg)
{
    char alias[160], vbuf[32];
    const json_t *al;
    struct dep_fn *df = alias_target(call, arg, alias, sizeof(alias), &al);
    const char *only = httpd_req_query_param(call->req, "FunctionVersion", vbuf, sizeof(vbuf));
    json_t *arr;
    const char *k;
    json_t *v;

    if (df == NULL)
        return;
    arr = json_array();
    json_object_foreach(json_object_get(df->doc, "Aliases"), k, v) {
        const char *fv = json_string_value(json_object_get(v, "FunctionVersion"));

        if (only == NULL || only[0] == '\0' || (fv != NULL && strcmp(fv, only) == 0))
            json_array_append_new(arr, alias_json(call->api, df, k, v));
    }
    api_reply_json(call, 200, json_pack("{s:o}", "Aliases", arr));
}

void api_update_alias(struct api_call *call, const char *arg)
{
    char fname[1024], alias[160];
    struct dep_fn *df;
    json_t *req;
    struct dop *op;

    split_arg(arg, fname, sizeof(fname), alias, sizeof(alias));
    if ((df = writable_fn(call, fname)) == NULL || (req = small_body(call)) == NULL)
        return;
    op = dop_new(call, DOP_ALIAS, df);
    if (op == NULL) {
        json_decref(req);
        return;
    }
    snprintf(op->qual, sizeof(op->qual), "%.128s", alias);
    if (alias_write(op, alias, req, 0) != 0) {
        json_decref(req);
        return;
    }
    json_decref(req);
    df->busy = 1;
    dop_persist(op);
}

void api_delete_alias(struct api_call *call, const char *arg)
{
    char fname[1024], alias[160];
    struct dep_fn *df;
    struct dop *op;

    split_arg(arg, fname, sizeof(fname), alias, sizeof(alias));
    if ((df = writable_fn(call, fname)) == NULL)
        return;
    if (json_object_get(json_object_get(df->doc, "Aliases"), alias) == NULL) {
        /* Lambda answers 204 for an alias that is not there. */
        api_reply(call, 204, NULL, NULL, 0);
        return;
    }
    op = dop_new(call, DOP_ALIAS_DELETE, df);
    if (op == NULL)
        return;
    snprintf(op->qual, sizeof(op->qual), "%.128s", alias);
    json_object_del(json_object_get(op->doc, "Aliases"), alias);
    json_object_del(json_object_get(op->doc, "Provisioned"), alias);
    df->busy = 1;
    dop_persist(op);
}

/* ---- provisioned and reserved concurrency ---------------------------------------------------- */

/* Total provisioned concurrency DOC asks for. */
static json_int_t pc_total(const json_t *doc)
{
    json_int_t n = 0;
    const char *k;
    json_t *v;

    json_object_foreach(json_object_get(doc, "Provisioned"), k, v)
        n += json_integer_value(json_object_get(v, "Requested"));
    return n;
}

/* The qualifier of a provisioned-concurrency request; answers and returns NULL when bad. */
static const char *pc_qualifier(struct api_call *call, struct dep_fn *df, char *buf, size_t bufsz)
{
    const char *q = httpd_req_query_param(call->req, "Qualifier", buf, bufsz);

    if (q == NULL || q[0] == '\0') {
        api_reply_error(call, API_E_VALIDATION,
                        "1 validation error detected: Value null at 'qualifier' failed to "
                        "satisfy constraint: Member must not be null");
        return NULL;
    }
    if (strcmp(q, "$LATEST") == 0) {
        api_reply_error(call, API_E_BAD_PARAM, "Provisioned Concurrency Configs cannot be applied "
                                               "to unpublished function versions.");
        return NULL;
    }
    if (function_route(df->head, q) == NULL) {
        api_reply_error(call, API_E_NOT_FOUND, "Function not found: %s:%s", function_arn(df->head),
                        q);
        return NULL;
    }
    return q;
}

void api_put_provisioned(struct api_call *call, const char *arg)
{
    struct dep_fn *df = writable_fn(call, arg);
    char qbuf[160], ts[32];
    const char *qual;
    json_t *req, *pcs;
    json_int_t n, total;
    struct dop *op;
    int reserved;

    if (df == NULL || (qual = pc_qualifier(call, df, qbuf, sizeof(qbuf))) == NULL ||
        (req = small_body(call)) == NULL)
        return;
    n = json_integer_value(json_object_get(req, "ProvisionedConcurrentExecutions"));
    json_decref(req);
    if (n < 1) {
        api_reply_error(call, API_E_VALIDATION,
                        "1 validation error detected: Value '%lld' at "
                        "'provisionedConcurrentExecutions' failed to satisfy constraint: Member "
                        "must have value greater than or equal to 1",
                        (long long)n);
        return;
    }
    total = pc_total(df->doc) -
            json_integer_value(json_object_get(json_object_get(json_object_get(df->doc,
                                                                               "Provisioned"),
                                                               qual),
                                               "Requested")) +
            n;
    reserved = function_reserved(df->head);
    if ((reserved >= 0 && total > reserved) || total > call->api->cfg->broker.max_concurrency) {
        api_reply_error(call, API_E_BAD_PARAM,
                        "Requested Provisioned Concurrency should not be greater than the "
                        "reservedConcurrentExecution for function (%d); broker max_concurrency is "
                        "%d",
                        reserved, call->api->cfg->broker.max_concurrency);
        return;
    }
    op = dop_new(call, DOP_PC_PUT, df);
    if (op == NULL)
        return;
    snprintf(op->qual, sizeof(op->qual), "%s", qual);
    pcs = json_object_get(op->doc, "Provisioned");
    if (pcs == NULL) {
        pcs = json_object();
        json_object_set_new(op->doc, "Provisioned", pcs);
    }
    time_iso8601_lambda(ts, time_wall_ms());
    json_object_set_new(pcs, qual, json_pack("{s:I,s:s}", "Requested", n, "LastModified", ts));
    df->busy = 1;
    dop_persist(op);
}

void api_get_provisioned(struct api_call *call, const char *arg)
{
    struct api_fname pf;
    struct dep_fn *df;
    char qbuf[160];
    const char *qual;

    if (api_parse_fname(arg, &pf) != 0 || call->api->dep == NULL ||
        (df = deploy_fn(call->api->dep, pf.name)) == NULL || df->head == NULL) {
        api_reply_error(call, API_E_NOT_FOUND, "Function not found: %s", arg);
        return;
    }
    if ((qual = pc_qualifier(call, df, qbuf, sizeof(qbuf))) == NULL)
        return;
    if (json_object_get(json_object_get(df->doc, "Provisioned"), qual) == NULL) {
        api_reply_error(call, API_E_PC_NOT_FOUND, "No Provisioned Concurrency Config found for "
                                                  "this function");
        return;
    }
    api_reply_json(call, 200, pc_json(df, qual));
}

void api_delete_provisioned(struct api_call *call, const char *arg)
{
    struct dep_fn *df = writable_fn(call, arg);
    char qbuf[160];
    const char *qual;
    struct dop *op;

    if (df == NULL || (qual = pc_qualifier(call, df, qbuf, sizeof(qbuf))) == NULL)
        return;
    if (json_object_get(json_object_get(df->doc, "Provisioned"), qual) == NULL) {
        api_reply_error(call, API_E_PC_NOT_FOUND, "No Provisioned Concurrency Config found for "
                                                  "this function");
        return;
    }
    op = dop_new(call, DOP_PC_DELETE, df);
    if (op == NULL)
        return;
    json_object_del(json_object_get(op->doc, "Provisioned"), qual);
    df->busy = 1;
    dop_persist(op);
}

void api_put_concurrency(struct api_call *call, const char *arg)
{
    struct dep_fn *df = writable_fn(call, arg);
    json_t *req, *v;
    struct dop *op;
    struct sy_error err;
    int n, old;

    if (df == NULL || (req = small_body(call)) == NULL)
        return;
    v = json_object_get(req, "ReservedConcurrentExecutions");
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        json_decref(req);
        api_reply_error(call, API_E_VALIDATION,
                        "1 validation error detected: Value at 'reservedConcurrentExecutions' "
                        "failed to satisfy constraint: Member must have value greater than or "
                        "equal to 0");
        return;
    }
    n = (int)json_integer_value(v);
    json_decref(req);
    if (n < pc_total(df->doc)) {
        api_reply_error(call, API_E_BAD_PARAM,
                        "ReservedConcurrentExecutions %d is less than the function's provisioned "
                        "concurrency (%lld)",
                        n, (long long)pc_total(df->doc));
        return;
    }
    /* Try it on the dispatcher first (it knows the other functions' share), then undo. */
    old = function_reserved(df->head);
    if (function_set_reserved(df->head, n, &err) != 0) {
        api_reply_error(call, API_E_BAD_PARAM, "%s", err.msg);
        return;
    }
    function_set_reserved(df->head, old, &err);
    op = dop_new(call, DOP_RESERVED_PUT, df);
    if (op == NULL)
        return;
    op->reserved = n;
    json_object_set_new(op->doc, "Reserved", json_integer(n));
    df->busy = 1;
    dop_persist(op);
}

void api_delete_concurrency(struct api_call *call, const char *arg)
{
    struct dep_fn *df = writable_fn(call, arg);
    struct dop *op;

    if (df == NULL)
        return;
    op = dop_new(call, DOP_RESERVED_DELETE, df);
    if (op == NULL)
        return;
    json_object_del(op->doc, "Reserved");
    df->busy = 1;
    dop_persist(op);
}

/* ---- reload ------------------------------------------------------------------------------------ */

static void reload_done(void *arg, json_t *report)
{
    struct api_call **slot = arg;
    struct api_call *call = *slot;

    free(slot);
    if (call == NULL) { /* the client went away; the reload was logged */
        json_decref(report);
        return;
    }
    httpd_req_set_close_cb(call->req, NULL, NULL);
    /* 200 with the report either way: `ok` and `errors` say whether it was applied. */
    api_reply_json(call, 200, report);
}

void api_reload(struct api_call *call, const char *arg)
{
    struct api_call **slot;
    int rc;

    if (call->api->reload == NULL) {
        api_reply_error(call, API_E_SERVICE, "reload is not available");
        return;
    }
    slot = malloc(sizeof(*slot));
    if (slot == NULL) {
        api_reply_error(call, API_E_SERVICE, "out of memory");
        return;
    }
    *slot = call;
    rc = reload_start(call->api->reload, reload_done, slot);
    if (rc != 0) {
        free(slot);
        if (rc == SY_EBUSY)
            api_reply_error(call, API_E_CONFLICT, "A reload is under way already");
        else
            api_reply_error(call, API_E_SERVICE, "cannot reload: %s", sy_strerror(rc));
        return;
    }
    httpd_req_set_close_cb(call->req, api_call_closed_slot, slot);
}

/* ---- event invoke config ------------------------------------------------------------------ */

/*
 * A Destination as the API takes it, to the URI the async queue opens: a function ARN
 * (arn:aws:lambda:R:A:function:NAME[:VERSION]) becomes function:NAME[:VERSION]; switchyard's own
 * URIs (function:, file:, redis://, kafka://, mqtt://, http(s)://) pass as they are. Other
 * ARNs (SQS, SNS, EventBridge, S3) have nothing to deliver to here. 0, or -1 with WHY.
 */
static int dest_to_uri(struct api *api, const char *dest, char **uri, char *why, size_t whysz)
{
    const char *w = NULL;
    char buf[400];
    const char *fn = strstr(dest, ":function:");

    *uri = NULL;
    if (strncmp(dest, "arn:", 4) == 0) {
        if (fn == NULL || strstr(dest, ":lambda:") == NULL) {
            snprintf(why, whysz,
                     "The destination ARN %.200s is not supported here: give a function ARN or a "
                     "switchyard destination URI (file:, redis://, kafka://, mqtt://, http(s)://)",
                     dest);
            return -1;
        }
        snprintf(buf, sizeof(buf), "function:%s", fn + strlen(":function:"));
        dest = buf;
    }
    if (cfg_destination_check(dest, api->cfg->base_dir, uri, &w) != 0) {
        snprintf(why, whysz, "The destination %.200s is not valid: %s", dest,
                 w != NULL ? w : "out of memory");
        return -1;
    }
    if (strncmp(*uri, "function:", 9) == 0) {
        char name[80];

        snprintf(name, sizeof(name), "%.*s", (int)strcspn(*uri + 9, ":"), *uri + 9);
        if (dispatcher_function(api->dsp, name) == NULL) {
            snprintf(why, whysz, "The destination function %s does not exist", name);
            free(*uri);
            *uri = NULL;
            return -1;
        }
    }
    return 0;
}

/* The qualifier of an event-invoke-config request ("$LATEST" when none); answers on NULL. */
static const char *eic_qualifier(struct api_call *call, struct dep_fn *df, char *buf, size_t bufsz)
{
    const char *q = httpd_req_query_param(call->req, "Qualifier", buf, bufsz);

    if (q == NULL || q[0] == '\0')
        return "$LATEST";
    if (function_version(df->head, q) == NULL) {
        api_reply_error(call, API_E_NOT_FOUND, "%s",
                        function_route(df->head, q) != NULL
                            ? "An event invoke config on an alias is not available here: set it "
                              "on the alias's version"
                            : "Function not found");
        return NULL;
    }
    return q;
}

/* The stored Config object for QUAL in DOC (borrowed), or NULL. */
static json_t *conf_of(json_t *doc, const char *qual)
{
    if (strcmp(qual, "$LATEST") == 0)
        return json_object_get(doc, "Config");
    return json_object_get(json_object_get(json_object_get(doc, "Versions"), qual), "Config");
}

/* Put (REPLACE) or Update (merge) the event invoke config from the request. */
static void eic_write(struct api_call *call, const char *arg, int replace)
{
    struct dep_fn *df = writable_fn(call, arg);
    char qbuf[160], why[600];
    const char *qual;
    json_t *req, *eic, *conf;
    struct dop *op;
    const json_t *v;
    static const char *const kinds[] = {"OnSuccess", "OnFailure"};

    if (df == NULL || (qual = eic_qualifier(call, df, qbuf, sizeof(qbuf))) == NULL ||
        (req = small_body(call)) == NULL)
        return;
    op = dop_new(call, DOP_EIC_PUT, df);
    if (op == NULL) {
        json_decref(req);
        return;
    }
    snprintf(op->qual, sizeof(op->qual), "%s", qual);
    conf = conf_of(op->doc, qual);
    eic = replace ? NULL : json_deep_copy(json_object_get(conf, "EventInvokeConfig"));
    if (eic == NULL)
        eic = json_pack("{s:i,s:i}", "MaximumRetryAttempts", 2, "MaximumEventAgeInSeconds", 21600);
    if ((v = json_object_get(req, "MaximumRetryAttempts")) != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 2) {
            json_decref(eic);
            json_decref(req);
            dop_fail(op, API_E_VALIDATION,
                     "1 validation error detected: Value at 'maximumRetryAttempts' failed to "
                     "satisfy constraint: Member must have value between 0 and 2");
            return;
        }
        json_object_set(eic, "MaximumRetryAttempts", (json_t *)v);
    }
    if ((v = json_object_get(req, "MaximumEventAgeInSeconds")) != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 60 || json_integer_value(v) > 21600) {
            json_decref(eic);
            json_decref(req);
            dop_fail(op, API_E_VALIDATION,
                     "1 validation error detected: Value at 'maximumEventAgeInSeconds' failed to "
                     "satisfy constraint: Member must have value between 60 and 21600");
            return;
        }
        json_object_set(eic, "MaximumEventAgeInSeconds", (json_t *)v);
    }
    if ((v = json_object_get(req, "DestinationConfig")) != NULL) {
        json_t *dests = json_object();

        for (size_t i = 0; i < 2; i++) {
            const char *d = json_string_value(
                json_object_get(json_object_get(v, kinds[i]), "Destination"));
            char *uri;

            if (d == NULL)
                continue;
            if (dest_to_uri(op->api, d, &uri, why, sizeof(why)) != 0) {
                json_decref(dests);
                json_decref(eic);
                json_decref(req);
                dop_fail(op, API_E_BAD_PARAM, "%s", why);
                return;
            }
            json_object_set_new(dests, kinds[i], json_pack("{s:s}", "Uri", uri));
            free(uri);
        }
        json_object_set(eic, "DestinationConfig", (json_t *)v);
        json_object_set_new(eic, "Destinations", dests);
    }
    json_object_set_new(eic, "LastModified", json_real((double)time_wall_ms() / 1000.0));
    json_object_set_new(conf, "EventInvokeConfig", eic);
    json_decref(req);
    df->busy = 1;
    dop_persist(op);
}

void api_put_eic(struct api_call *call, const char *arg)
{
    eic_write(call, arg, 1);
}

void api_update_eic(struct api_call *call, const char *arg)
{
    eic_write(call, arg, 0);
}

/* The function a read names (API-owned or the file's), answering 404 on NULL. */
static struct dep_fn *readable_fn(struct api_call *call, const char *arg)
{
    struct api_fname pf;
    struct dep_fn *df;

    if (api_parse_fname(arg, &pf) != 0 || call->api->dep == NULL ||
        (df = deploy_fn(call->api->dep, pf.name)) == NULL || df->head == NULL ||
        function_deleted(df->head)) {
        api_reply_error(call, API_E_NOT_FOUND, "Function not found: arn:aws:lambda:%s:%s:function:%s",
                        call->api->cfg->broker.region, call->api->cfg->broker.account_id, arg);
        return NULL;
    }
    return df;
}

void api_get_eic(struct api_call *call, const char *arg)
{
    struct dep_fn *df = readable_fn(call, arg);
    char qbuf[160];
    const char *qual;
    const json_t *eic;

    if (df == NULL || (qual = eic_qualifier(call, df, qbuf, sizeof(qbuf))) == NULL)
        return;
    eic = json_object_get(conf_of(df->doc, qual), "EventInvokeConfig");
    if (eic == NULL) {
        api_reply_error(call, API_E_NOT_FOUND, "The function %s doesn't have an EventInvokeConfig",
                        function_arn(df->head));
        return;
    }
    api_reply_json(call, 200, eic_json(df, qual, eic));
}

void api_list_eic(struct api_call *call, const char *arg)
{
    char fname[1024], rest[160];
    struct dep_fn *df;
    json_t *arr = json_array();
    const json_t *eic;
    const char *k;
    json_t *v;

    split_arg(arg, fname, sizeof(fname), rest, sizeof(rest));
    if ((df = readable_fn(call, fname)) == NULL) {
        json_decref(arr);
        return;
    }
    if ((eic = json_object_get(conf_of(df->doc, "$LATEST"), "EventInvokeConfig")) != NULL)
        json_array_append_new(arr, eic_json(df, "$LATEST", eic));
    json_object_foreach(json_object_get(df->doc, "Versions"), k, v) {
        if ((eic = json_object_get(json_object_get(v, "Config"), "EventInvokeConfig")) != NULL)
            json_array_append_new(arr, eic_json(df, k, eic));
    }
    api_reply_json(call, 200, json_pack("{s:o}", "FunctionEventInvokeConfigs", arr));
}

void api_delete_eic(struct api_call *call, const char *arg)
{
    struct dep_fn *df = writable_fn(call, arg);
    char qbuf[160];
    const char *qual;
    struct dop *op;

    if (df == NULL || (qual = eic_qualifier(call, df, qbuf, sizeof(qbuf))) == NULL)
        return;
    if (json_object_get(conf_of(df->doc, qual), "EventInvokeConfig") == NULL) {
        api_reply_error(call, API_E_NOT_FOUND, "The function %s doesn't have an EventInvokeConfig",
                        function_arn(df->head));
        return;
    }
    op = dop_new(call, DOP_EIC_DELETE, df);
    if (op == NULL)
        return;
    snprintf(op->qual, sizeof(op->qual), "%s", qual);
    json_object_del(conf_of(op->doc, qual), "EventInvokeConfig");
    df->busy = 1;
    dop_persist(op);
}
