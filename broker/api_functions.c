/*
 * broker/api_functions.c - the read-only function operations: ListFunctions, GetFunction,
 * GetFunctionConfiguration, GetFunctionConcurrency and GetAccountSettings, plus what they need
 * to know about each function's code (computed once by api_functions_init()).
 *
 * Values that have no real counterpart here, and what we answer instead:
 *   Runtime      the Lambda identifier the config names (python3.12, nodejs20.x, provided.al2),
 *                as written. For the plain names: python3 -> python3.11, node -> nodejs18.x
 *                (Debian 12's interpreters), shell -> provided, provided -> provided.al2023.
 *                Either way the interpreter actually run is the local python3/node
 *                (dispatcher/runtimes.c).
 *   State        always Active. When the local interpreter is not the version the runtime asks
 *                for (broker.strict_runtimes: false let it run), StateReason says which one
 *                serves it; without the mismatch there is no StateReason, as on Lambda.
 *   Role         arn:aws:iam::ACCOUNT:role/switchyard (there is no IAM).
 *   CodeSize     the sum of the sizes of the regular files under the code dir, at startup;
 *                for `code: x.zip`, the zip's bytes, as Lambda.
 *   CodeSha256   base64 SHA-256 over the runtime, the handler and, for every regular file under
 *                the code dir in path order, its relative path, size and mtime (a fingerprint
 *                of the tree: Lambda hashes the zip, which we do not have; reading every file
 *                at startup would be slow for large trees such as node_modules); for
 *                `code: x.zip`, the zip's own SHA-256, as Lambda.
 *   Layers       for each of `layers:`, in order, {Arn, CodeSize}: a file's layer has no layer
 *                version, so its Arn is made up, arn:aws:lambda:REGION:ACCOUNT:layer:file-NAME:1
 *                (NAME: the directory's or zip's base name without .zip, characters outside
 *                [A-Za-z0-9_-] as '-'), and CodeSize is the zip's bytes or the directory's
 *                regular-file bytes. An API function's are its layer versions' ARNs and sizes.
 *   LastModified the config file's mtime.
 *   RevisionId   a UUID-shaped digest of the name, CodeSha256 and LastModified.
 *   Code         {"RepositoryType": "Local", "Location": "file://<code dir>"}.
 * All of it is computed at startup: code edited on disk later shows up in invocations (at the
 * next cold start) but not in these fields until the broker restarts.
 */
#include "api_int.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#include "config/config.h"
#include "core/log.h"
#include "core/b64.h"
#include "core/sha256.h"
#include "deploy.h"

#define WALK_MAX_DEPTH 64
#define WALK_MAX_FILES 200000
#define LIST_PAGE_MAX 50 /* ListFunctions returns at most 50 per page, whatever MaxItems says */

#if defined(__aarch64__)
#define API_ARCH "arm64"
#else
#define API_ARCH "x86_64"
#endif

/* ---- the code fingerprint ----------------------------------------------------------------- */

struct walk_file {
    char *rel;
    long long size;
    long long mtime_ns;
};

struct walk {
    struct walk_file *files;
    size_t n, cap;
    int truncated;
};

static int walk_add(struct walk *w, const char *rel, const struct stat *st)
{
    struct walk_file *f;

    if (w->n == WALK_MAX_FILES) {
        w->truncated = 1;
        return 0;
    }
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        struct walk_file *p = realloc(w->files, cap * sizeof(*p));

        if (p == NULL)
            return SY_ENOMEM;
        w->files = p;
        w->cap = cap;
    }
    f = &w->files[w->n];
    f->rel = strdup(rel);
    if (f->rel == NULL)
        return SY_ENOMEM;
    f->size = (long long)st->st_size;
    f->mtime_ns = (long long)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
    w->n++;
    return 0;
}

/* Collect the regular files under ROOT/REL. Symlinks are neither followed nor counted. */
static int walk_dir(struct walk *w, const char *root, const char *rel, int depth)
{
    char path[4096];
    DIR *d;
    struct dirent *de;
    int rc = 0;

    if (depth > WALK_MAX_DEPTH) {
        w->truncated = 1;
        return 0;
    }
    snprintf(path, sizeof(path), "%s%s%s", root, rel[0] ? "/" : "", rel);
    d = opendir(path);
    if (d == NULL)
        return 0; /* unreadable subdirectory: leave it out of the fingerprint */
    while (rc == 0 && (de = readdir(d)) != NULL) {
        char sub[4096];
        struct stat st;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if ((size_t)snprintf(sub, sizeof(sub), "%s%s%s", rel, rel[0] ? "/" : "", de->d_name) >=
            sizeof(sub))
            continue;
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", root, sub) >= sizeof(path) ||
            lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            rc = walk_dir(w, root, sub, depth + 1);
        else if (S_ISREG(st.st_mode))
            rc = walk_add(w, sub, &st);
    }
    closedir(d);
    return rc;
}

static int walk_cmp(const void *a, const void *b)
{
    return strcmp(((const struct walk_file *)a)->rel, ((const struct walk_file *)b)->rel);
}

static void walk_free(struct walk *w)
{
    for (size_t i = 0; i < w->n; i++)
        free(w->files[i].rel);
    free(w->files);
}

static void digest_str(struct sha256_ctx *ctx, const char *s)
{
    /* The NUL separates fields, so ("ab","c") and ("a","bc") hash differently. */
    sha256_update(ctx, s != NULL ? s : "", s != NULL ? strlen(s) + 1 : 1);
}

_Static_assert(sizeof(((struct api_fninfo *)0)->layer_size) / sizeof(uint64_t) == CFG_LAYERS_MAX,
               "api_fninfo.layer_size holds one size per layer");

/* CodeSize of a file's layer PATH: a zip's bytes, a directory's regular-file bytes. */
static int layer_size(const char *path, uint64_t *size)
{
    struct walk w = {0};
    struct stat st;

    *size = 0;
    if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode)) {
        *size = (uint64_t)st.st_size;
        return 0;
    }
    if (walk_dir(&w, path, "", 0) != 0) {
        walk_free(&w);
        return SY_ENOMEM;
    }
    for (size_t i = 0; i < w.n; i++)
        *size += (uint64_t)w.files[i].size;
    walk_free(&w);
    return 0;
}

static int fninfo_compute(const char *last_modified, const struct cfg_function *fc,
                          struct api_fninfo *fi, struct sy_error *err)
{
    struct walk w = {0};
    struct sha256_ctx sc, *ctx = &sc;
    unsigned char md[SHA256_LEN];
    char num[64];
    int rc = 0;

    for (size_t i = 0; i < fc->n_layers && i < CFG_LAYERS_MAX; i++) {
        if (layer_size(fc->layers[i], &fi->layer_size[i]) != 0) {
            sy_error_set(err, "out of memory while scanning %s", fc->layers[i]);
            return SY_ENOMEM;
        }
    }
    if (fc->code_sha256 != NULL) {
        /* A zip (deploy_prepare_file()): Lambda's own values, the zip's digest and size. */
        snprintf(fi->code_sha256, sizeof(fi->code_sha256), "%s", fc->code_sha256);
        fi->code_size = fc->code_size;
        goto revision;
    }
    if (walk_dir(&w, fc->code, "", 0) != 0) {
        sy_error_set(err, "out of memory while scanning %s", fc->code);
        walk_free(&w);
        return SY_ENOMEM;
    }
    if (w.truncated)
        log_warn("[function:%s] code dir %s has over %d files or %d levels; CodeSize and "
                 "CodeSha256 cover only part of it",
                 fc->name, fc->code, WALK_MAX_FILES, WALK_MAX_DEPTH);
    qsort(w.files, w.n, sizeof(*w.files), walk_cmp);

    sha256_init(ctx);
    /* As written: a move from python3.11 to python3.12 is a new configuration. */
    digest_str(ctx, fc->runtime_id != NULL ? fc->runtime_id : cfg_runtime_name(fc->runtime));
    digest_str(ctx, fc->handler);
    fi->code_size = 0;
    for (size_t i = 0; i < w.n; i++) {
        fi->code_size += (uint64_t)w.files[i].size;
        digest_str(ctx, w.files[i].rel);
        snprintf(num, sizeof(num), "%lld %lld", w.files[i].size, w.files[i].mtime_ns);
        digest_str(ctx, num);
    }
    sha256_final(ctx, md);
    b64_encode(md, SHA256_LEN, fi->code_sha256);

revision:
    /*
     * RevisionId: changes whenever the code fingerprint, the layers (opt_dir is named by their
     * content) or the config file changes.
     */
    sha256_init(ctx);
    digest_str(ctx, fc->name);
    digest_str(ctx, fi->code_sha256);
    digest_str(ctx, fc->opt_dir);
    digest_str(ctx, last_modified);
    sha256_final(ctx, md);
    snprintf(fi->revision_id, sizeof(fi->revision_id),
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", md[0], md[1],
             md[2], md[3], md[4], md[5], md[6], md[7], md[8], md[9], md[10], md[11], md[12], md[13],
             md[14], md[15]);
    walk_free(&w);
    return rc;
}

int api_fileinfo_compute(const struct cfg *cfg, struct api_fileinfo *out, struct sy_error *err)
{
    struct stat st;
    struct tm tm;
    time_t mt = 0;

    memset(out, 0, sizeof(*out));
    if (stat(cfg->path, &st) == 0)
        mt = st.st_mtim.tv_sec;
    gmtime_r(&mt, &tm);
    strftime(out->last_modified, sizeof(out->last_modified), "%Y-%m-%dT%H:%M:%S.000+0000", &tm);
    out->fninfo = calloc(cfg->n_functions ? cfg->n_functions : 1, sizeof(*out->fninfo));
    if (out->fninfo == NULL) {
        sy_error_set(err, "out of memory");
        return SY_ENOMEM;
    }
    out->n = cfg->n_functions;
    for (size_t i = 0; i < cfg->n_functions; i++) {
        if (fninfo_compute(out->last_modified, &cfg->functions[i], &out->fninfo[i], err) != 0) {
            api_fileinfo_clear(out);
            return SY_ENOMEM;
        }
        out->total_code_size += out->fninfo[i].code_size;
    }
    return 0;
}

void api_fileinfo_clear(struct api_fileinfo *fi)
{
    free(fi->fninfo);
    memset(fi, 0, sizeof(*fi));
}

int api_functions_init(struct api *api, struct sy_error *err)
{
    struct api_fileinfo fi;

    if (api_fileinfo_compute(api->cfg, &fi, err) != 0)
        return SY_ENOMEM;
    api_set_file(api, api->cfg, &fi);
    return 0;
}

void api_set_file(struct api *api, const struct cfg *cfg, struct api_fileinfo *fi)
{
    free(api->fninfo);
    api->cfg = cfg;
    memcpy(api->last_modified, fi->last_modified, sizeof(api->last_modified));
    api->fninfo = fi->fninfo;
    api->n_fninfo = fi->n;
    api->total_code_size = fi->total_code_size;
    memset(fi, 0, sizeof(*fi));
}

/* ---- FunctionConfiguration ---------------------------------------------------------------- */

/* `Runtime` of FC: its Lambda identifier when it names one, else the closest one. */
static const char *lambda_runtime(const struct cfg_function *fc)
{
    /* A plain name is spelt exactly as cfg_runtime_name() (config.h). */
    if (fc->runtime_id != NULL && strcmp(fc->runtime_id, cfg_runtime_name(fc->runtime)) != 0)
        return fc->runtime_id;
    switch (fc->runtime) {
    case CFG_RUNTIME_PYTHON3:
        return "python3.11";
    case CFG_RUNTIME_NODE:
        return "nodejs18.x";
    case CFG_RUNTIME_SHELL:
        return "provided";
    case CFG_RUNTIME_PROVIDED:
    default:
        return "provided.al2023";
    }
}

/* Index of FN among the live functions (ListFunctions' order). */
static size_t fn_index(struct api *api, const struct function *fn)
{
    for (size_t i = 0; i < dispatcher_function_count(api->dsp); i++) {
        if (dispatcher_function_at(api->dsp, i) == fn)
            return i;
    }
    return 0;
}

/* What the file's function NAME was found to hold at start-up, or NULL (an API function). */
static const struct api_fninfo *file_info(struct api *api, const char *name)
{
    for (size_t i = 0; i < api->n_fninfo && i < api->cfg->n_functions; i++) {
        if (strcmp(api->cfg->functions[i].name, name) == 0)
            return &api->fninfo[i];
    }
    return NULL;
}

/* `Layers` of a function: [{Arn, CodeSize}], or NULL when it has none. */
static json_t *layers_json(struct api *api, const struct cfg_function *fc,
                           const struct api_fninfo *fi, const json_t *conf)
{
    json_t *arr = json_array();
    size_t i;
    json_t *v;

    if (arr == NULL)
        return NULL;
    for (i = 0; fi != NULL && i < fc->n_layers && i < CFG_LAYERS_MAX; i++) {
        const char *base = strrchr(fc->layers[i], '/');
        char name[80], arn[300];
        size_t n = 0;

        base = base != NULL ? base + 1 : fc->layers[i];
        for (const char *p = base; *p != '\0' && n < 64; p++) {
            if (strcasecmp(p, ".zip") == 0)
                break;
            name[n++] = (isalnum((unsigned char)*p) || *p == '_' || *p == '-') ? *p : '-';
        }
        name[n] = '\0';
        snprintf(arn, sizeof(arn), "arn:aws:lambda:%s:%s:layer:file-%s:1",
                 api->cfg->broker.region, api->cfg->broker.account_id, name);
        json_array_append_new(arr, json_pack("{s:s,s:I}", "Arn", arn, "CodeSize",
                                             (json_int_t)fi->layer_size[i]));
    }
    json_array_foreach(json_object_get(conf, "Layers"), i, v) {
        const struct dep_layer *l =
            api->dep != NULL && json_is_string(v) ? deploy_layer_by_arn(api->dep,
                                                                         json_string_value(v))
                                                  : NULL;

        if (l == NULL)
            continue;
        json_array_append_new(arr, json_pack("{s:s,s:I}", "Arn", l->arn, "CodeSize",
                                             json_integer_value(json_object_get(l->doc,
                                                                                "CodeSize"))));
    }
    if (json_array_size(arr) == 0) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

json_t *api_fn_config_json(struct api *api, const struct function *fn, unsigned flags)
{
    const struct cfg_function *fc = function_cfg(fn);
    const struct api_fninfo *fi = file_info(api, fc->name);
    struct dep_fn *df =
        api->dep != NULL ? deploy_fn_of(api->dep, function_head((struct function *)fn)) : NULL;
    const char *version = function_version_name(fn);
    int latest = strcmp(version, "$LATEST") == 0;
    const json_t *meta = NULL; /* the document part holding RevisionId and LastModified */
    const json_t *conf = NULL;
    char arn[300], role[96], group[96];
    json_t *o = json_object();
    json_t *vars;

    if (o == NULL)
        return NULL;
    if (df != NULL && df->doc != NULL) {
        meta = latest ? df->doc
                      : json_object_get(json_object_get(df->doc, "Versions"), version);
        conf = json_object_get(meta, "Config");
        fi = NULL; /* the API's, not the file's */
    }
    snprintf(arn, sizeof(arn), "%s%s", function_arn(fn),
             (flags & FC_LIST) && latest ? ":$LATEST" : "");
    snprintf(role, sizeof(role), "arn:aws:iam::%s:role/switchyard", api->cfg->broker.account_id);
    snprintf(group, sizeof(group), "/aws/lambda/%s", fc->name);
    json_object_set_new(o, "FunctionName", json_string(fc->name));
    json_object_set_new(o, "FunctionArn", json_string(arn));
    json_object_set_new(o, "Runtime", json_string(lambda_runtime(fc)));
    json_object_set_new(o, "Role", json_string(json_string_value(json_object_get(conf, "Role"))
                                                   ?: role));
    if (fc->handler != NULL)
        json_object_set_new(o, "Handler", json_string(fc->handler));
    json_object_set_new(o, "CodeSize", json_integer((json_int_t)(fi != NULL ? fi->code_size
                                                                            : fc->code_size)));
    json_object_set_new(o, "Description", json_string(fc->description ? fc->description : ""));
    json_object_set_new(o, "Timeout", json_integer(fc->timeout_s));
    json_object_set_new(o, "MemorySize", json_integer(fc->memory_mb));
    json_object_set_new(o, "LastModified",
                        json_string(fi != NULL ? api->last_modified
                                    : json_string_value(json_object_get(meta, "LastModified"))
                                        ?: ""));
    json_object_set_new(o, "CodeSha256",
                        json_string(fi != NULL ? fi->code_sha256
                                    : fc->code_sha256 != NULL ? fc->code_sha256 : ""));
    json_object_set_new(o, "Version", json_string(version));
    if (fc->n_environment > 0) {
        vars = json_object();
        for (size_t i = 0; i < fc->n_environment; i++)
            json_object_set_new(vars, fc->environment[i].name,
                                json_string(fc->environment[i].value));
        json_object_set_new(o, "Environment", json_pack("{s:o}", "Variables", vars));
    }
    json_object_set_new(o, "TracingConfig", json_pack("{s:s}", "Mode", "PassThrough"));
    {
        json_t *layers = layers_json(api, fc, fi, conf);

        if (layers != NULL)
            json_object_set_new(o, "Layers", layers);
    }
    json_object_set_new(o, "RevisionId",
                        json_string(fi != NULL ? fi->revision_id
                                    : json_string_value(json_object_get(meta, "RevisionId"))
                                        ?: ""));
    if (!(flags & FC_LIST)) {
        const char *reason = function_runtime_detail(fn);

        json_object_set_new(o, "State", json_string("Active"));
        if (reason != NULL)
            json_object_set_new(o, "StateReason", json_string(reason));
        json_object_set_new(o, "LastUpdateStatus", json_string("Successful"));
    }
    json_object_set_new(o, "PackageType", json_string("Zip"));
    json_object_set_new(o, "Architectures", json_pack("[s]", API_ARCH));
    json_object_set_new(o, "EphemeralStorage", json_pack("{s:i}", "Size", 512));
    json_object_set_new(o, "SnapStart",
                        json_pack("{s:s,s:s}", "ApplyOn", "None", "OptimizationStatus", "Off"));
    json_object_set_new(o, "LoggingConfig",
                        json_pack("{s:s,s:s}", "LogFormat", "Text", "LogGroup", group));
    return o;
}

void api_reply_json(struct api_call *call, int status, json_t *root)
{
    char *s;

    if (root == NULL && status == 204) {
        api_reply(call, 204, NULL, NULL, 0);
        return;
    }
    s = root != NULL ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (s == NULL) {
        api_reply_error(call, API_E_SERVICE, "out of memory");
        return;
    }
    api_reply_take(call, status, (const char *const[]){"Content-Type", "application/json", NULL}, s,
                   strlen(s));
}

/* ---- operations --------------------------------------------------------------------------- */

void api_list_functions(struct api_call *call, const char *arg)
{
    struct api *api = call->api;
    struct httpd_req *req = call->req;
    size_t n = dispatcher_function_count(api->dsp);
    size_t start = 0, page = LIST_PAGE_MAX;
    char marker[128];
    json_t *root, *arr;

    if (api_query_max_items(call, &page) != 0)
        return;
    /* Our marker is the name of the first function of the next page. */
    if (httpd_req_query_param(req, "Marker", marker, sizeof(marker)) != NULL && marker[0]) {
        struct function *fn = dispatcher_function(api->dsp, marker);

        if (fn == NULL) {
            api_reply_error(call, API_E_BAD_PARAM, "Invalid Marker '%.100s'", marker);
            return;
        }
        start = fn_index(api, fn);
    }
    root = json_object();
    arr = json_array();
    if (root == NULL || arr == NULL) {
        json_decref(root);
        json_decref(arr);
        api_reply_error(call, API_E_SERVICE, "out of memory");
        return;
    }
    {
        char fv[16];
        const char *all = httpd_req_query_param(req, "FunctionVersion", fv, sizeof(fv));

        if (all != NULL && all[0] != '\0' && strcmp(all, "ALL") != 0) {
            json_decref(root);
            json_decref(arr);
            api_reply_error(call, API_E_VALIDATION,
                            "1 validation error detected: Value '%.15s' at 'functionVersion' "
                            "failed to satisfy constraint: Member must satisfy enum value set: "
                            "[ALL]",
                            all);
            return;
        }
        for (size_t i = start; i < n && i < start + page; i++) {
            struct function *head = dispatcher_function_at(api->dsp, i);

            json_array_append_new(arr, api_fn_config_json(api, head, FC_LIST));
            /* FunctionVersion=ALL: each function's published versions follow its $LATEST. */
            for (size_t v = 0; all != NULL && all[0] != '\0' && v < function_version_count(head);
                 v++)
                json_array_append_new(arr,
                                      api_fn_config_json(api, function_version_at(head, v), FC_LIST));
        }
    }
    json_object_set_new(root, "Functions", arr);
    if (start + page < n)
        json_object_set_new(
            root, "NextMarker",
            json_string(function_cfg(dispatcher_function_at(api->dsp, start + page))->name));
    api_reply_json(call, 200, root);
}

/* Resolve ARG (+ ?Qualifier=) or answer; NULL means CALL was answered. */
static struct function *resolve(struct api_call *call, const char *arg)
{
    char qbuf[160], qual[136];

    return api_resolve_function(call, arg,
                                httpd_req_query_param(call->req, "Qualifier", qbuf, sizeof(qbuf)),
                                qual, sizeof(qual));
}

void api_get_function(struct api_call *call, const char *arg)
{
    struct function *fn = resolve(call, arg);
    const struct cfg_function *fc;
    json_t *root;
    char loc[4200];

    if (fn == NULL)
        return;
    fc = function_cfg(fn);
    snprintf(loc, sizeof(loc), "file://%s", fc->code);
    root = json_pack("{s:o,s:{s:s,s:s}}", "Configuration", api_fn_config_json(call->api, fn, 0), "Code",
                     "RepositoryType", "Local", "Location", loc);
    if (root != NULL && function_reserved(fn) >= 0)
        json_object_set_new(
            root, "Concurrency",
            json_pack("{s:i}", "ReservedConcurrentExecutions", function_reserved(fn)));
    api_reply_json(call, 200, root);
}

void api_get_function_config(struct api_call *call, const char *arg)
{
    struct function *fn = resolve(call, arg);

    if (fn == NULL)
        return;
    api_reply_json(call, 200, api_fn_config_json(call->api, fn, 0));
}

void api_get_concurrency(struct api_call *call, const char *arg)
{
    struct function *fn = resolve(call, arg);

    if (fn == NULL)
        return;
    /* Unset reserved concurrency: Lambda answers an empty object. */
    api_reply_json(call, 200,
                   function_reserved(fn) >= 0
                       ? json_pack("{s:i}", "ReservedConcurrentExecutions", function_reserved(fn))
                       : json_object());
}

void api_account_settings(struct api_call *call, const char *arg)
{
    const struct cfg *cfg = call->api->cfg;
    long long reserved = 0;

    uint64_t code = call->api->total_code_size;
    size_t n = dispatcher_function_count(call->api->dsp);

    for (size_t i = 0; i < n; i++) {
        struct function *fn = dispatcher_function_at(call->api->dsp, i);

        if (function_reserved(fn) > 0)
            reserved += function_reserved(fn);
        if (file_info(call->api, function_cfg(fn)->name) == NULL)
            code += function_cfg(fn)->code_size;
    }
    api_reply_json(call, 200,
               json_pack("{s:{s:I,s:I,s:I,s:i,s:I},s:{s:I,s:I}}", "AccountLimit", "TotalCodeSize",
                         (json_int_t)80530636800LL, "CodeSizeUnzipped", (json_int_t)262144000,
                         "CodeSizeZipped", (json_int_t)52428800, "ConcurrentExecutions",
                         cfg->broker.max_concurrency, "UnreservedConcurrentExecutions",
                         (json_int_t)(cfg->broker.max_concurrency - reserved), "AccountUsage",
                         "TotalCodeSize", (json_int_t)code, "FunctionCount",
                         (json_int_t)n));
}
