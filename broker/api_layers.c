/*
 * broker/api_layers.c - layer versions through the control API, as Lambda's deploy tools call
 * them:
 *
 *   POST   /2018-10-31/layers/{name}/versions              PublishLayerVersion (201)
 *   GET    /2018-10-31/layers/{name}/versions              ListLayerVersions
 *   GET    /2018-10-31/layers/{name}/versions/{n}          GetLayerVersion
 *   DELETE /2018-10-31/layers/{name}/versions/{n}          DeleteLayerVersion (204)
 *   GET    /2018-10-31/layers                              ListLayers
 *   GET    /2018-10-31/layers?find=LayerVersion&Arn=ARN    GetLayerVersionByArn
 *
 * A layer is a zip, unpacked once into <data_dir>/packages/<sha256 hex>/ on the state thread
 * (the same deploy_zipreq step as a function's code: the loop never unzips) and merged with a
 * function's other layers when a function names it in `Layers` (api_deploy.c). Its version is
 * persisted in the `layers` table of state.db (deploy.c) before it is answered; version
 * numbers per name start at 1 and are never given twice, even after a delete.
 *
 * DeleteLayerVersion keeps the tree and the row (marked Deleted): the functions that use the
 * version keep running and answering its CodeSize, as on Lambda; it can no longer be added to
 * a function, listed or found.
 *
 * {name} is a LayerName or an unversioned layer ARN (arn:aws:lambda:REGION:ACCOUNT:layer:NAME).
 */
#include "api_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config/config.h"
#include "core/log.h"
#include "core/time.h"
#include "deploy.h"
#include "packages/packages.h"

#define LAYER_NAME_MAX 140 /* Lambda's LayerName length, the ARN form included */
#define LIST_PAGE_MAX 50   /* ListLayers and ListLayerVersions: at most 50 per page */
#define LAYER_ARN_PATTERN                                                                          \
    "(arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+)|"               \
    "(arn:[a-zA-Z0-9-]+:lambda:::awslayer:[a-zA-Z0-9-_]+)"
#define NOT_FOUND_MSG "The resource you requested does not exist."

/* A PublishLayerVersion in progress. CALL is NULL once the client left. */
struct lpub {
    struct api_call *call;
    struct api *api;
    struct deploy *d;
    char name[LAYER_NAME_MAX + 1];
    struct deploy_zipreq zr;
    struct dep_layer *l; /* pending while its row is written */
};

/* A DeleteLayerVersion being stored. */
struct ldel {
    struct api_call *call;
    struct dep_layer *l;
    json_t *doc; /* the new document (owned) */
};

/* ---- names and ARNs ----------------------------------------------------------------------- */

static int name_chars_ok(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

/*
 * The layer name of S (a name or our own unversioned layer ARN) into NAME (LAYER_NAME_MAX + 1
 * bytes). 0, or -1 when S is neither; an ARN of another region or account is not ours either
 * way, so it is "not found" for the caller (-2).
 */
static int layer_name(const struct api *api, const char *s, char *name)
{
    char prefix[128];
    size_t n = strlen(s), pl;

    if (n == 0 || n > LAYER_NAME_MAX)
        return -1;
    if (strncmp(s, "arn:", 4) != 0) {
        if (!name_chars_ok(s, n))
            return -1;
        memcpy(name, s, n + 1);
        return 0;
    }
    pl = (size_t)snprintf(prefix, sizeof(prefix), "arn:aws:lambda:%s:%s:layer:",
                          api->cfg->broker.region, api->cfg->broker.account_id);
    if (n <= pl || strncmp(s, prefix, pl) != 0)
        return strstr(s, ":layer:") != NULL ? -2 : -1;
    if (!name_chars_ok(s + pl, n - pl))
        return -1;
    memcpy(name, s + pl, n - pl + 1);
    return 0;
}

static void layer_arn(const struct api *api, const char *name, char *out, size_t outsz)
{
    snprintf(out, outsz, "arn:aws:lambda:%s:%s:layer:%s", api->cfg->broker.region,
             api->cfg->broker.account_id, name);
}

/* A version number: 1..2^53 in decimal, nothing else. 0 when S is not one. */
static long version_number(const char *s)
{
    char *end;
    long v;

    if (s == NULL || *s < '0' || *s > '9')
        return 0;
    v = strtol(s, &end, 10);
    return *end == '\0' && v > 0 ? v : 0;
}

/* L is visible: published, not deleted. */
static int visible(const struct dep_layer *l)
{
    return !l->deleted && !l->pending;
}

/* ---- answers ---------------------------------------------------------------------------- */

/* The members of a LayerVersionsListItem from L's document into O. */
static void list_item_fill(json_t *o, const struct dep_layer *l)
{
    static const char *const opt[] = {"CompatibleRuntimes", "LicenseInfo",
                                      "CompatibleArchitectures"};

    json_object_set_new(o, "LayerVersionArn", json_string(l->arn));
    json_object_set_new(o, "Version", json_integer(l->version));
    json_object_set_new(o, "Description", json_string(json_string_value(
                                              json_object_get(l->doc, "Description")) ?: ""));
    json_object_set_new(o, "CreatedDate", json_string(json_string_value(
                                              json_object_get(l->doc, "CreatedDate")) ?: ""));
    for (size_t i = 0; i < sizeof(opt) / sizeof(opt[0]); i++) {
        json_t *v = json_object_get(l->doc, opt[i]);

        if (v != NULL)
            json_object_set(o, opt[i], v);
    }
}

/* GetLayerVersion's answer (PublishLayerVersion's too). */
static json_t *version_json(const struct api *api, const struct dep_layer *l)
{
    json_t *o = json_object();
    char arn[400], loc[4200];

    if (o == NULL)
        return NULL;
    layer_arn(api, l->name, arn, sizeof(arn));
    /* Lambda's Location is a pre-signed URL of the zip; ours is the unpacked tree. */
    snprintf(loc, sizeof(loc), "file://%s",
             json_string_value(json_object_get(l->doc, "PackageDir")) ?: "");
    json_object_set_new(
        o, "Content",
        json_pack("{s:s,s:s,s:I}", "Location", loc, "CodeSha256",
                  json_string_value(json_object_get(l->doc, "CodeSha256")) ?: "", "CodeSize",
                  json_integer_value(json_object_get(l->doc, "CodeSize"))));
    json_object_set_new(o, "LayerArn", json_string(arn));
    list_item_fill(o, l);
    return o;
}

/* 1 when L's document lists S in member KEY, or S is NULL/empty (no filter). */
static int matches(const struct dep_layer *l, const char *key, const char *s)
{
    size_t i;
    json_t *v;

    if (s == NULL || s[0] == '\0')
        return 1;
    json_array_foreach(json_object_get(l->doc, key), i, v) {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
            return 1;
    }
    return 0;
}

/* ---- PublishLayerVersion ---------------------------------------------------------------- */

static void lpub_free(struct lpub *lp)
{
    deploy_zipreq_clear(&lp->zr);
    free(lp);
}

/* Answer (when the client is still there) and free LP. */
static void lpub_answer(struct lpub *lp, int status, json_t *body)
{
    if (lp->call != NULL) {
        httpd_req_set_close_cb(lp->call->req, NULL, NULL);
        api_reply_json(lp->call, status, body);
    } else {
        json_decref(body);
    }
    lpub_free(lp);
}

static void lpub_fail(struct lpub *lp, enum api_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void lpub_fail(struct lpub *lp, enum api_err err, const char *fmt, ...)
{
    char msg[1200];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (lp->call != NULL) {
        httpd_req_set_close_cb(lp->call->req, NULL, NULL);
        api_reply_error(lp->call, err, "%s", msg);
    }
    lpub_free(lp);
}

/* A list member of at most MAX strings, each one of ALLOWED when given. NULL: fine. */
static const char *list_check(const json_t *v, const char *member, size_t max,
                              const char *const *allowed, char *why, size_t whysz)
{
    size_t i;
    json_t *it;

    if (v == NULL)
        return NULL;
    if (!json_is_array(v) || json_array_size(v) > max) {
        snprintf(why, whysz,
                 "1 validation error detected: Value at '%s' failed to satisfy constraint: "
                 "Member must have length less than or equal to %zu",
                 member, max);
        return why;
    }
    json_array_foreach(v, i, it) {
        int ok = json_is_string(it) && json_string_length(it) > 0;

        for (size_t k = 0; ok && allowed != NULL && allowed[k] != NULL; k++) {
            if (strcmp(json_string_value(it), allowed[k]) == 0)
                break;
            if (allowed[k + 1] == NULL)
                ok = 0;
        }
        if (!ok) {
            snprintf(why, whysz,
                     "1 validation error detected: Value at '%s' failed to satisfy constraint: "
                     "Member must satisfy enum value set",
                     member);
            return why;
        }
    }
    return NULL;
}

static void lpub_stored(void *arg, int rc, const char *msg)
{
    struct lpub *lp = arg;

    if (rc != 0) {
        /* Nothing was stored and nobody saw the number: it may be given again. */
        deploy_layer_remove(lp->d, lp->l);
        lp->l = NULL;
        lpub_fail(lp, API_E_SERVICE, "the layer version was not stored (%s): nothing changed",
                  msg != NULL ? msg : sy_strerror(rc));
        return;
    }
    lp->l->pending = 0;
    log_info("[deploy] layer %s version %ld published (code %s)", lp->l->name, lp->l->version,
             json_string_value(json_object_get(lp->l->doc, "CodeSha256")) ?: "");
    lpub_answer(lp, 201, version_json(lp->api, lp->l));
}

static void lpub_run(void *arg)
{
    struct lpub *lp = arg;

    deploy_zipreq_run(&lp->zr);
}

static void lpub_done(void *arg)
{
    static const char *const archs[] = {"x86_64", "arm64", NULL};
    struct lpub *lp = arg;
    const json_t *req = lp->zr.req;
    const json_t *desc, *lic;
    enum api_err api_err;
    char why[1200], arn[400], ts[32];
    json_t *doc;
    long ver;
    int rc;

    if (api_zipreq_failed(&lp->zr, "PublishLayerVersion", &api_err, why, sizeof(why))) {
        lpub_fail(lp, api_err, "%s", why);
        return;
    }
    if (!lp->zr.has_zip) {
        lpub_fail(lp, API_E_BAD_PARAM, "Content: switchyard takes the layer as Content.ZipFile "
                                       "(S3 is not available here)");
        return;
    }
    desc = json_object_get(req, "Description");
    lic = json_object_get(req, "LicenseInfo");
    if (desc != NULL && (!json_is_string(desc) || json_string_length(desc) > 256)) {
        lpub_fail(lp, API_E_VALIDATION,
                  "1 validation error detected: Value at 'description' failed to satisfy "
                  "constraint: Member must have length less than or equal to 256");
        return;
    }
    if (lic != NULL && (!json_is_string(lic) || json_string_length(lic) > 512)) {
        lpub_fail(lp, API_E_VALIDATION,
                  "1 validation error detected: Value at 'licenseInfo' failed to satisfy "
                  "constraint: Member must have length less than or equal to 512");
        return;
    }
    /* Lambda's enum of runtimes is longer than what runs here (java, ruby...): any name. */
    if (list_check(json_object_get(req, "CompatibleRuntimes"), "compatibleRuntimes", 15, NULL,
                   why, sizeof(why)) != NULL ||
        list_check(json_object_get(req, "CompatibleArchitectures"), "compatibleArchitectures", 2,
                   archs, why, sizeof(why)) != NULL) {
        lpub_fail(lp, API_E_VALIDATION, "%s", why);
        return;
    }
    ver = deploy_layer_next_version(lp->d, lp->name);
    layer_arn(lp->api, lp->name, arn, sizeof(arn));
    snprintf(arn + strlen(arn), sizeof(arn) - strlen(arn), ":%ld", ver);
    time_iso8601_lambda(ts, time_wall_ms());
    doc = json_pack("{s:s,s:I,s:s,s:s,s:s,s:I,s:I,s:s}", "LayerName", lp->name, "Version",
                    (json_int_t)ver, "Description",
                    desc != NULL ? json_string_value(desc) : "", "CreatedDate", ts,
                    "CodeSha256", lp->zr.info.sha256_b64, "CodeSize",
                    (json_int_t)lp->zr.info.zip_size, "UnzippedSize",
                    (json_int_t)lp->zr.info.unzipped_size, "PackageDir", lp->zr.info.dir);
    if (doc != NULL) {
        static const char *const opt[] = {"CompatibleRuntimes", "CompatibleArchitectures",
                                          "LicenseInfo"};

        for (size_t i = 0; i < sizeof(opt) / sizeof(opt[0]); i++) {
            json_t *v = json_object_get(req, opt[i]);

            if (v != NULL && (!json_is_array(v) || json_array_size(v) > 0))
                json_object_set(doc, opt[i], v);
        }
    }
    /* The number is taken now: a second publish of the same name meanwhile gets the next. */
    lp->l = doc != NULL ? deploy_layer_add(lp->d, arn, lp->name, ver, doc) : NULL;
    if (lp->l == NULL) {
        lpub_fail(lp, API_E_SERVICE, "out of memory");
        return;
    }
    lp->l->pending = 1;
    rc = deploy_persist_layer(lp->d, arn, lp->l->doc, lpub_stored, lp);
    if (rc != 0) {
        deploy_layer_remove(lp->d, lp->l);
        lp->l = NULL;
        lpub_fail(lp, API_E_SERVICE, "cannot store the layer version: %s", sy_strerror(rc));
    }
}

void api_publish_layer(struct api_call *call, const char *arg)
{
    struct api *api = call->api;
    struct lpub *lp;
    char name[LAYER_NAME_MAX + 1];

    if (api->dep == NULL) {
        api_reply_error(call, API_E_SERVICE, "the deployment state is not available");
        return;
    }
    if (httpd_req_too_large(call->req)) {
        api_reply_error(call, API_E_TOO_LARGE,
                        "Request must be smaller than 69905067 bytes for the PublishLayerVersion "
                        "operation");
        return;
    }
    if (layer_name(api, arg, name) != 0) {
        api_reply_error(call, API_E_VALIDATION,
                        "1 validation error detected: Value '%.200s' at 'layerName' failed to "
                        "satisfy constraint: Member must satisfy regular expression pattern: "
                        "(arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{12}:layer:[a-zA-Z0-9-_]+)|"
                        "[a-zA-Z0-9-_]+",
                        arg);
        return;
    }
    lp = calloc(1, sizeof(*lp));
    if (lp == NULL || (lp->zr.store_dir = strdup(deploy_store_dir(api->dep))) == NULL) {
        free(lp);
        api_reply_error(call, API_E_SERVICE, "out of memory");
        return;
    }
    lp->call = call;
    lp->api = api;
    lp->d = api->dep;
    snprintf(lp->name, sizeof(lp->name), "%s", name);
    lp->zr.member = "Content";
    lp->zr.body = httpd_req_take_body(call->req, &lp->zr.len);
    if (lp->zr.body == NULL) {
        lp->zr.body = strdup("{}");
        lp->zr.len = 2;
    }
    if (lp->zr.body == NULL || deploy_offload(api->dep, lpub_run, lpub_done, lp) != 0) {
        lpub_fail(lp, API_E_SERVICE, "out of memory");
        return;
    }
    httpd_req_set_close_cb(call->req, api_call_closed_slot, &lp->call);
}

/* ---- reads -------------------------------------------------------------------------------- */

/* ARG "NAME/N" of a version route: the version, visible; answers 404/400 and returns NULL. */
static struct dep_layer *version_of(struct api_call *call, const char *arg)
{
    char name[LAYER_NAME_MAX + 1], buf[LAYER_NAME_MAX + 40];
    const char *slash = strrchr(arg, '/');
    struct dep_layer *l;
    long ver;

    snprintf(buf, sizeof(buf), "%.*s", slash != NULL ? (int)(slash - arg) : (int)strlen(arg),
             arg);
    ver = version_number(slash != NULL ? slash + 1 : NULL);
    if (ver == 0) {
        api_reply_error(call, API_E_VALIDATION,
                        "1 validation error detected: Value at 'versionNumber' failed to "
                        "satisfy constraint: Member must be a positive number");
        return NULL;
    }
    if (call->api->dep == NULL || layer_name(call->api, buf, name) != 0 ||
        (l = deploy_layer(call->api->dep, name, ver)) == NULL || !visible(l)) {
        api_reply_error(call, API_E_NOT_FOUND, NOT_FOUND_MSG);
        return NULL;
    }
    return l;
}

void api_get_layer_version(struct api_call *call, const char *arg)
{
    struct dep_layer *l = version_of(call, arg);

    if (l != NULL)
        api_reply_json(call, 200, version_json(call->api, l));
}

/* GetLayerVersionByArn: ListLayers' path with ?find=LayerVersion&Arn=. */
static void get_by_arn(struct api_call *call)
{
    char arn[512];
    struct dep_layer *l = NULL;

    if (httpd_req_query_param(call->req, "Arn", arn, sizeof(arn)) == NULL || arn[0] == '\0') {
        api_reply_error(call, API_E_VALIDATION,
                        "1 validation error detected: Value null at 'arn' failed to satisfy "
                        "constraint: Member must not be null");
        return;
    }
    if (call->api->dep != NULL)
        l = deploy_layer_by_arn(call->api->dep, arn);
    if (l == NULL || !visible(l)) {
        api_reply_error(call, API_E_NOT_FOUND, NOT_FOUND_MSG);
        return;
    }
    api_reply_json(call, 200, version_json(call->api, l));
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp((*(const struct dep_layer *const *)a)->name,
                  (*(const struct dep_layer *const *)b)->name);
}

void api_list_layers(struct api_call *call, const char *arg)
{
    struct api *api = call->api;
    char find[32], rt[64], archq[32], marker[LAYER_NAME_MAX + 1];
    const char *want_rt, *want_arch, *mark;
    struct dep_layer **latest = NULL;
    size_t n = 0, cap = 0, page = LIST_PAGE_MAX, start = 0, i;
    json_t *arr, *root;

    if (httpd_req_query_param(call->req, "find", find, sizeof(find)) != NULL &&
        strcmp(find, "LayerVersion") == 0) {
        get_by_arn(call);
        return;
    }
    if (api_query_max_items(call, &page) != 0)
        return;
    want_rt = httpd_req_query_param(call->req, "CompatibleRuntime", rt, sizeof(rt));
    want_arch = httpd_req_query_param(call->req, "CompatibleArchitecture", archq, sizeof(archq));
    mark = httpd_req_query_param(call->req, "Marker", marker, sizeof(marker));
    /* The newest matching version of each name (versions are added in number order). */
    for (struct dep_layer *l = api->dep != NULL ? deploy_layers(api->dep) : NULL; l != NULL;
         l = l->next) {
        if (!visible(l) || !matches(l, "CompatibleRuntimes", want_rt) ||
            !matches(l, "CompatibleArchitectures", want_arch))
            continue;
        for (i = 0; i < n && strcmp(latest[i]->name, l->name) != 0; i++)
            ;
        if (i < n) {
            if (l->version > latest[i]->version)
                latest[i] = l;
            continue;
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            struct dep_layer **p = realloc(latest, nc * sizeof(*p));

            if (p == NULL) {
                free(latest);
                api_reply_error(call, API_E_SERVICE, "out of memory");
                return;
            }
            latest = p;
            cap = nc;
        }
        latest[n++] = l;
    }
    if (n > 0)
        qsort(latest, n, sizeof(*latest), name_cmp);
    /* Our marker is the name the next page starts at. */
    while (mark != NULL && mark[0] != '\0' && start < n && strcmp(latest[start]->name, mark) < 0)
        start++;
    root = json_object();
    arr = json_array();
    for (i = start; i < n && i < start + page; i++) {
        char larn[400];
        json_t *item = json_object();

        layer_arn(api, latest[i]->name, larn, sizeof(larn));
        list_item_fill(item, latest[i]);
        json_array_append_new(arr, json_pack("{s:s,s:s,s:o}", "LayerName", latest[i]->name,
                                             "LayerArn", larn, "LatestMatchingVersion", item));
    }
    json_object_set_new(root, "Layers", arr);
    if (start + page < n)
        json_object_set_new(root, "NextMarker", json_string(latest[start + page]->name));
    free(latest);
    api_reply_json(call, 200, root);
}

void api_list_layer_versions(struct api_call *call, const char *arg)
{
    struct api *api = call->api;
    char name[LAYER_NAME_MAX + 1], rt[64], archq[32], marker[32];
    const char *want_rt, *want_arch;
    size_t page = LIST_PAGE_MAX, k = 0;
    long top, from;
    json_t *arr, *root;
    int rc = layer_name(api, arg, name);

    if (rc == -1) {
        api_reply_error(call, API_E_VALIDATION,
                        "1 validation error detected: Value '%.200s' at 'layerName' failed to "
                        "satisfy constraint: Member must satisfy regular expression pattern: "
                        "(arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{12}:layer:[a-zA-Z0-9-_]+)|"
                        "[a-zA-Z0-9-_]+",
                        arg);
        return;
    }
    if (api_query_max_items(call, &page) != 0)
        return;
    want_rt = httpd_req_query_param(call->req, "CompatibleRuntime", rt, sizeof(rt));
    want_arch = httpd_req_query_param(call->req, "CompatibleArchitecture", archq, sizeof(archq));
    /* Newest first, as Lambda lists them; our marker is the version the next page starts at. */
    top = rc == 0 && api->dep != NULL ? deploy_layer_next_version(api->dep, name) - 1 : 0;
    from = version_number(httpd_req_query_param(call->req, "Marker", marker, sizeof(marker)));
    if (from == 0 || from > top)
        from = top;
    root = json_object();
    arr = json_array();
    for (long v = from; v >= 1; v--) {
        struct dep_layer *l = deploy_layer(api->dep, name, v);
        json_t *item;

        if (l == NULL || !visible(l) || !matches(l, "CompatibleRuntimes", want_rt) ||
            !matches(l, "CompatibleArchitectures", want_arch))
            continue;
        if (k == page) {
            char next[32];

            snprintf(next, sizeof(next), "%ld", v);
            json_object_set_new(root, "NextMarker", json_string(next));
            break;
        }
        item = json_object();
        list_item_fill(item, l);
        json_array_append_new(arr, item);
        k++;
    }
    json_object_set_new(root, "LayerVersions", arr);
    api_reply_json(call, 200, root);
}

/* ---- DeleteLayerVersion ------------------------------------------------------------------- */

static void ldel_stored(void *arg, int rc, const char *msg)
{
    struct ldel *ld = arg;

    if (ld->call != NULL)
        httpd_req_set_close_cb(ld->call->req, NULL, NULL);
    if (rc != 0) {
        if (ld->call != NULL)
            api_reply_error(ld->call, API_E_SERVICE,
                            "the deletion was not stored (%s): nothing changed",
                            msg != NULL ? msg : sy_strerror(rc));
    } else {
        json_decref(ld->l->doc);
        ld->l->doc = ld->doc;
        ld->doc = NULL;
        ld->l->deleted = 1;
        log_info("[deploy] layer %s version %ld deleted (functions using it keep it)",
                 ld->l->name, ld->l->version);
        if (ld->call != NULL)
            api_reply(ld->call, 204, NULL, NULL, 0);
    }
    json_decref(ld->doc);
    free(ld);
}

void api_delete_layer_version(struct api_call *call, const char *arg)
{
    char name[LAYER_NAME_MAX + 1], buf[LAYER_NAME_MAX + 40];
    const char *slash = strrchr(arg, '/');
    struct dep_layer *l = NULL;
    struct ldel *ld;
    long ver;
    int rc;

    snprintf(buf, sizeof(buf), "%.*s", slash != NULL ? (int)(slash - arg) : (int)strlen(arg),
             arg);
    ver = version_number(slash != NULL ? slash + 1 : NULL);
    if (ver == 0) {
        api_reply_error(call, API_E_VALIDATION,
                        "1 validation error detected: Value at 'versionNumber' failed to "
                        "satisfy constraint: Member must be a positive number");
        return;
    }
    if (call->api->dep == NULL) {
        api_reply_error(call, API_E_SERVICE, "the deployment state is not available");
        return;
    }
    if (layer_name(call->api, buf, name) == 0)
        l = deploy_layer(call->api->dep, name, ver);
    if (l == NULL || !visible(l)) {
        /* Lambda answers 204 for a version that is not there (a repeated delete). */
        api_reply(call, 204, NULL, NULL, 0);
        return;
    }
    ld = calloc(1, sizeof(*ld));
    if (ld == NULL || (ld->doc = json_deep_copy(l->doc)) == NULL) {
        free(ld);
        api_reply_error(call, API_E_SERVICE, "out of memory");
        return;
    }
    ld->call = call;
    ld->l = l;
    json_object_set_new(ld->doc, "Deleted", json_true());
    rc = deploy_persist_layer(call->api->dep, l->arn, ld->doc, ldel_stored, ld);
    if (rc != 0) {
        json_decref(ld->doc);
        free(ld);
        api_reply_error(call, API_E_SERVICE, "cannot store the deletion: %s", sy_strerror(rc));
        return;
    }
    httpd_req_set_close_cb(call->req, api_call_closed_slot, &ld->call);
}

/* ---- a function's Layers ------------------------------------------------------------------- */

int api_layers_resolve(struct api *api, const json_t *layers, const char **dirs,
                       enum api_err *api_err, char *why, size_t whysz)
{
    size_t i, n;
    json_t *v;
    const struct dep_layer *seen[CFG_LAYERS_MAX];

    if (layers == NULL || json_is_null(layers))
        return 0;
    if (!json_is_array(layers)) {
        *api_err = API_E_BAD_PARAM;
        snprintf(why, whysz, "Layers must be a list of layer version ARNs.");
        return -1;
    }
    n = json_array_size(layers);
    if (n > CFG_LAYERS_MAX) {
        *api_err = API_E_BAD_PARAM;
        snprintf(why, whysz, "Cannot reference more than %d layers (got %zu).", CFG_LAYERS_MAX,
                 n);
        return -1;
    }
    json_array_foreach(layers, i, v) {
        const char *arn = json_string_value(v);
        const char *tail = arn != NULL ? strstr(arn, ":layer:") : NULL;
        const char *colon = tail != NULL ? strrchr(tail + 7, ':') : NULL;
        struct dep_layer *l;

        if (arn == NULL || strncmp(arn, "arn:", 4) != 0 || strlen(arn) > LAYER_NAME_MAX ||
            colon == NULL || version_number(colon + 1) == 0 ||
            !name_chars_ok(tail + 7, (size_t)(colon - tail - 7))) {
            *api_err = API_E_VALIDATION;
            snprintf(why, whysz,
                     "1 validation error detected: Value '[%.200s]' at 'layers' failed to "
                     "satisfy constraint: Member must satisfy constraint: [Member must have "
                     "length less than or equal to 140, Member must have length greater than "
                     "or equal to 1, Member must satisfy regular expression pattern: "
                     LAYER_ARN_PATTERN "]",
                     arn != NULL ? arn : "");
            return -1;
        }
        l = api->dep != NULL ? deploy_layer_by_arn(api->dep, arn) : NULL;
        if (l == NULL || !visible(l)) {
            *api_err = API_E_BAD_PARAM;
            snprintf(why, whysz, "Layer version %.300s does not exist.", arn);
            return -1;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(seen[j]->name, l->name) == 0) {
                *api_err = API_E_BAD_PARAM;
                snprintf(why, whysz,
                         seen[j] == l ? "Layer %.300s is listed twice: a function takes each "
                                        "layer once."
                                      : "Two different versions of the same layer are not "
                                        "allowed (%.300s).",
                         arn);
                return -1;
            }
        }
        seen[i] = l;
        dirs[i] = json_string_value(json_object_get(l->doc, "PackageDir"));
        if (dirs[i] == NULL) {
            *api_err = API_E_SERVICE;
            snprintf(why, whysz, "Layer version %.300s has no unpacked tree.", arn);
            return -1;
        }
    }
    return (int)n;
}
