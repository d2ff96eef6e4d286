/*
 * broker/deploy.c - the deployment state (see deploy.h): the state database, the restore at
 * start-up, and the translation of a stored function document into a dispatcher configuration.
 *
 * The document of an API-owned function (one row of `functions`, JSON):
 *
 *   {"Config":   {FunctionName, Runtime, Handler, MemorySize, Timeout, Description,
 *                 Environment: {Variables: {}}, Layers: [layer version ARN...],
 *                 CodeSha256, CodeSize, PackageDir, OptDir,
 *                 EventInvokeConfig: {MaximumRetryAttempts, MaximumEventAgeInSeconds,
 *                                     DestinationConfig (as given), LastModified,
 *                                     Destinations: {OnSuccess: {Uri}, OnFailure: {Uri}}}},
 *    "RevisionId": "...", "LastModified": "2024-05-09T21:05:41.000+0000",
 *    "NextVersion": 3,                       version numbers are never reused (Lambda's rule)
 *    "Reserved": 10,                         absent: no reserved concurrency
 *    "Versions": {"1": {"Config": {...}, "RevisionId", "LastModified"}, ...},
 *    "Aliases":  {"live": {"FunctionVersion": "1", "Description": "", "RevisionId",
 *                          "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.1}}}},
 *    "Provisioned": {"live": {"Requested": 2, "LastModified": "..."}}}
 *
 * A version's Config has an EventInvokeConfig of its own (PutFunctionEventInvokeConfig with
 * its number as Qualifier); publishing does not copy $LATEST's.
 *
 * PackageDir is the unpacked zip under <data_dir>/packages/<sha256 hex>, OptDir the merged
 * layers (<data_dir>/packages/opt-<hex>), both made by packages/ on the state thread;
 * UnzippedSize and OptSize are their bytes, which Lambda's 250 MB limit adds up.
 *
 * A layer version (one row of `layers`, keyed by its LayerVersionArn) is described in
 * deploy.h (struct dep_layer).
 */
#include "deploy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <sqlite3.h>

#include "api_int.h"
#include "config/config.h"
#include "core/b64.h"
#include "core/fastid.h"
#include "core/log.h"
#include "core/time.h"
#include "dispatcher/dispatcher.h"
#include "packages/packages.h"

#define DEPLOY_MAGIC 0x44504c59u /* "DPLY" */
#define STATE_RETRY_MS 1000
#define ENV_VARS_MAX 4096 /* Lambda's 4 KB for all variables together */

struct deploy {
    unsigned magic;
    struct event_base *base;
    const struct cfg *cfg;
    struct dispatcher *dsp;
    char *db_path;
    char *store_dir;
    struct sqlq *q;
    int efd;
    struct event *efd_ev;
    struct dep_fn *fns;
    struct dep_layer *layers;
};

/* A document write (or delete, DOC NULL). */
struct put_job {
    struct dep_job j;
    int layer; /* a row of `layers` (NAME is the ARN), else of `functions` */
    char *name;
    char *doc; /* JSON text, or NULL: delete */
    deploy_done_fn *done;
    void *done_arg;
};

static const char *const schema =
    "CREATE TABLE IF NOT EXISTS functions (name TEXT PRIMARY KEY, doc TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS layers (arn TEXT PRIMARY KEY, doc TEXT NOT NULL);";

/* ---- jobs ---------------------------------------------------------------------------------- */

static void efd_cb(evutil_socket_t fd, short what, void *arg)
{
    struct deploy *d = arg;
    uint64_t v;
    struct sqlq_job *sj;

    if (read(d->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        log_debug("[deploy] eventfd read: %s", strerror(errno));
    sj = sqlq_take_done(d->q);
    while (sj != NULL) {
        struct sqlq_job *next = sj->next;
        struct dep_job *job = (struct dep_job *)sj;

        sj->next = NULL;
        job->complete(job);
        sj = next;
    }
}

static void job_free_cb(struct sqlq_job *sj, void *arg)
{
    struct dep_job *job = (struct dep_job *)sj;

    if (job->discard != NULL)
        job->discard(job);
}

void deploy_submit(struct deploy *d, struct dep_job *job)
{
    job->d = d;
    job->sj.next = NULL;
    sqlq_submit(d->q, &job->sj);
}

static int put_run(struct sqlq *q, struct sqlite3 *db, struct sqlq_job *sj, void *arg)
{
    struct put_job *pj = (struct put_job *)sj;
    sqlite3_stmt *st;
    int rc;

    if (pj->layer)
        st = sqlq_stmt(q, "INSERT OR REPLACE INTO layers (arn, doc) VALUES (?1, ?2)", &rc);
    else if (pj->doc != NULL)
        st = sqlq_stmt(q, "INSERT OR REPLACE INTO functions (name, doc) VALUES (?1, ?2)", &rc);
    else
        st = sqlq_stmt(q, "DELETE FROM functions WHERE name = ?1", &rc);
    if (st == NULL)
        return rc;
    sqlite3_bind_text(st, 1, pj->name, -1, SQLITE_STATIC);
    if (pj->doc != NULL)
        sqlite3_bind_text(st, 2, pj->doc, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static void put_free(struct dep_job *job)
{
    struct put_job *pj = (struct put_job *)job;

    free(pj->name);
    free(pj->doc);
    free(pj);
}

/* Never run (shutdown): its caller hears it was cancelled, so it can let go of its state. */
static void put_discard(struct dep_job *job)
{
    struct put_job *pj = (struct put_job *)job;

    if (pj->done != NULL)
        pj->done(pj->done_arg, SY_ECANCELED, "the broker is shutting down");
    put_free(job);
}

static void put_complete(struct dep_job *job)
{
    struct put_job *pj = (struct put_job *)job;

    if (pj->done != NULL)
        pj->done(pj->done_arg, pj->j.sj.rc, pj->j.sj.rc != 0 ? pj->j.sj.errmsg : NULL);
    put_free(job);
}

static int persist(struct deploy *d, int layer, const char *key, const json_t *doc,
                   deploy_done_fn *done, void *arg)
{
    struct put_job *pj = calloc(1, sizeof(*pj));

    if (pj == NULL)
        return SY_ENOMEM;
    pj->layer = layer;
    pj->name = strdup(key);
    pj->doc = doc != NULL ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (pj->name == NULL || (doc != NULL && pj->doc == NULL)) {
        put_free(&pj->j);
        return SY_ENOMEM;
    }
    /* May fail: the caller has promised nothing yet and answers the error. */
    pj->j.sj.flags = SQLQ_WRITE | SQLQ_MAY_FAIL;
    pj->j.sj.run = put_run;
    pj->j.complete = put_complete;
    pj->j.discard = put_discard;
    pj->done = done;
    pj->done_arg = arg;
    deploy_submit(d, &pj->j);
    return 0;
}

int deploy_persist(struct deploy *d, const char *name, const json_t *doc, deploy_done_fn *done,
                   void *arg)
{
    return persist(d, 0, name, doc, done, arg);
}

int deploy_persist_layer(struct deploy *d, const char *arn, const json_t *doc,
                         deploy_done_fn *done, void *arg)
{
    if (doc == NULL)
        return SY_EINVAL; /* layer rows are never deleted (deploy.h) */
    return persist(d, 1, arn, doc, done, arg);
}

/* A blocking task for the state thread (deploy_offload()). */
struct offload_job {
    struct dep_job j;
    void (*run)(void *arg);
    void (*done)(void *arg);
    void *arg;
};

static int offload_run(struct sqlq *q, struct sqlite3 *db, struct sqlq_job *sj, void *arg)
{
    struct offload_job *oj = (struct offload_job *)sj;

    oj->run(oj->arg);
    return 0;
}

static void offload_complete(struct dep_job *job)
{
    struct offload_job *oj = (struct offload_job *)job;

    oj->done(oj->arg);
    free(oj);
}

int deploy_offload(struct deploy *d, void (*run)(void *arg), void (*done)(void *arg), void *arg)
{
    struct offload_job *oj = calloc(1, sizeof(*oj));

    if (oj == NULL)
        return SY_ENOMEM;
    oj->run = run;
    oj->done = done;
    oj->arg = arg;
    oj->j.sj.run = offload_run;
    oj->j.complete = offload_complete;
    oj->j.discard = offload_complete; /* never run: DONE still runs (RUN's result unset) */
    deploy_submit(d, &oj->j);
    return 0;
}

/* ---- the dep_fn list ------------------------------------------------------------------------ */

struct dep_fn *deploy_fn(struct deploy *d, const char *name)
{
    for (struct dep_fn *df = d->fns; df != NULL; df = df->next) {
        if (strcmp(df->name, name) == 0)
            return df;
    }
    return NULL;
}

struct dep_fn *deploy_fn_of(struct deploy *d, const struct function *head)
{
    for (struct dep_fn *df = d->fns; df != NULL; df = df->next) {
        if (df->head == head)
            return df;
    }
    return NULL;
}

struct dep_fn *deploy_fn_add(struct deploy *d, const char *name, json_t *doc)
{
    struct dep_fn *df = calloc(1, sizeof(*df)), **tail = &d->fns;

    if (df == NULL || (df->name = strdup(name)) == NULL) {
        free(df);
        json_decref(doc);
        return NULL;
    }
    df->doc = doc;
    while (*tail != NULL)
        tail = &(*tail)->next;
    *tail = df;
    return df;
}

void deploy_fn_remove(struct deploy *d, struct dep_fn *df)
{
    for (struct dep_fn **p = &d->fns; *p != NULL; p = &(*p)->next) {
        if (*p == df) {
            *p = df->next;
            break;
        }
    }
    json_decref(df->doc);
    free(df->name);
    free(df);
}

/* ---- layer versions -------------------------------------------------------------------------- */

struct dep_layer *deploy_layers(struct deploy *d)
{
    return d->layers;
}

struct dep_layer *deploy_layer(struct deploy *d, const char *name, long version)
{
    for (struct dep_layer *l = d->layers; l != NULL; l = l->next) {
        if (l->version == version && strcmp(l->name, name) == 0)
            return l;
    }
    return NULL;
}

struct dep_layer *deploy_layer_by_arn(struct deploy *d, const char *arn)
{
    for (struct dep_layer *l = d->layers; l != NULL; l = l->next) {
        if (strcmp(l->arn, arn) == 0)
            return l;
    }
    return NULL;
}

long deploy_layer_next_version(struct deploy *d, const char *name)
{
    long top = 0;

    for (struct dep_layer *l = d->layers; l != NULL; l = l->next) {
        if (l->version > top && strcmp(l->name, name) == 0)
            top = l->version;
    }
    return top + 1;
}

struct dep_layer *deploy_layer_add(struct deploy *d, const char *arn, const char *name,
                                   long version, json_t *doc)
{
    struct dep_layer *l = calloc(1, sizeof(*l)), **tail = &d->layers;

    if (l == NULL || (l->arn = strdup(arn)) == NULL || (l->name = strdup(name)) == NULL) {
        if (l != NULL)
            free(l->arn);
        free(l);
        json_decref(doc);
        return NULL;
    }
    l->version = version;
    l->doc = doc;
    l->deleted = json_is_true(json_object_get(doc, "Deleted"));
    while (*tail != NULL)
        tail = &(*tail)->next;
    *tail = l;
    return l;
}

void deploy_layer_remove(struct deploy *d, struct dep_layer *l)
{
    for (struct dep_layer **p = &d->layers; *p != NULL; p = &(*p)->next) {
        if (*p == l) {
            *p = l->next;
            break;
        }
    }
    json_decref(l->doc);
    free(l->arn);
    free(l->name);
    free(l);
}

/* ---- the blocking steps ---------------------------------------------------------------------- */

/*
 * Where the value of the one `"ZipFile": "..."` member of BODY is, when it is there in the plain
 * form every SDK writes (base64 has neither `"` nor `\`): *AT and *N, return 1. 0 when there
 * is none, more than one, or an escaped one (the caller then parses the whole body).
 */
static int zipfile_span(const char *body, size_t len, size_t *at, size_t *n)
{
    static const char key[] = "\"ZipFile\"";
    const char *p = body, *end = body + len, *found = NULL;
    size_t vstart = 0, vlen = 0;

    while ((p = memmem(p, (size_t)(end - p), key, sizeof(key) - 1)) != NULL) {
        const char *q = p + sizeof(key) - 1, *close;

        p = q;
        while (q < end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n'))
            q++;
        if (q >= end || *q != ':')
            continue; /* "ZipFile" as a value, not a key */
        q++;
        while (q < end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n'))
            q++;
        if (q >= end || *q != '"')
            return 0;
        q++;
        close = memchr(q, '"', (size_t)(end - q));
        if (close == NULL || memchr(q, '\\', (size_t)(close - q)) != NULL || found != NULL)
            return 0;
        found = q;
        vstart = (size_t)(q - body);
        vlen = (size_t)(close - q);
        p = close;
    }
    if (found == NULL)
        return 0;
    *at = vstart;
    *n = vlen;
    return 1;
}

/*
 * The zip of ZR's request from its N base64 characters at B64 (new), or NULL with ZR saying
 * why: bad_b64 when it is not base64, perr PKG_E_NOMEM when it is but memory ran out
 * (b64_decode_new() answers NULL for both; a 50 MB zip is a large allocation).
 */
static char *zip_decode(struct deploy_zipreq *zr, const char *b64, size_t n, size_t *zlen)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *zip = b64_decode_new(b64, n, zlen);
    size_t body = n;

    if (zip != NULL)
        return zip;
    while (body > 0 && n - body < 2 && b64[body - 1] == '=')
        body--;
    for (size_t i = 0; i < body; i++) {
        if (b64[i] == '\0' || strchr(alphabet, b64[i]) == NULL) {
            zr->bad_b64 = 1;
            return NULL;
        }
    }
    if (n % 4 == 0) {
        zr->perr.kind = PKG_E_NOMEM;
        snprintf(zr->perr.msg, sizeof(zr->perr.msg),
                 "out of memory decoding a %zu-byte ZipFile; try again later", n);
    } else {
        zr->bad_b64 = 1;
    }
    return NULL;
}

void deploy_zipreq_run(struct deploy_zipreq *zr)
{
    struct pkg_limits lim = pkg_limits_lambda();
    json_error_t jerr;
    json_t *holder, *zf;
    char *zip = NULL;
    size_t zlen = 0, at, n;

    zr->ran = 1;
    /*
     * The zip's base64 is taken out of the body before the JSON parse: jansson copying 70 MB of
     * string character by character was half the cost of an update. The rest is parsed, and
     * the cut is kept only when the parse shows `"ZipFile": ""` where the zip belongs.
     */
    if (zipfile_span(zr->body, zr->len, &at, &n)) {
        char *rest = malloc(zr->len - n + 1);

        if (rest != NULL) {
            memcpy(rest, zr->body, at);
            memcpy(rest + at, zr->body + at + n, zr->len - at - n);
            zr->req = json_loadb(rest, zr->len - n, 0, &jerr);
            free(rest);
            holder = zr->req != NULL && zr->member != NULL ? json_object_get(zr->req, zr->member)
                                                             : zr->req;
            zf = json_object_get(holder, "ZipFile");
            if (json_is_string(zf) && json_string_length(zf) == 0) {
                zr->has_zip = 1;
                zip = zip_decode(zr, zr->body + at, n, &zlen);
                json_object_del(holder, "ZipFile");
                free(zr->body);
                zr->body = NULL;
                if (zip == NULL)
                    return;
                goto unpack;
            }
            json_decref(zr->req);
            zr->req = NULL;
        }
    }
    zr->req = json_loadb(zr->body, zr->len, 0, &jerr);
    free(zr->body);
    zr->body = NULL;
    if (zr->req == NULL || !json_is_object(zr->req)) {
        snprintf(zr->jerr, sizeof(zr->jerr), "%s", zr->req == NULL ? jerr.text : "not an object");
        json_decref(zr->req);
        zr->req = NULL;
        return;
    }
    holder = zr->member != NULL ? json_object_get(zr->req, zr->member) : zr->req;
    zf = json_object_get(holder, "ZipFile");
    if (!json_is_string(zf))
        return;
    zr->has_zip = 1;
    zip = zip_decode(zr, json_string_value(zf), json_string_length(zf), &zlen);
    json_object_del(holder, "ZipFile"); /* the request is kept; its 70 MB of text is not */
    if (zip == NULL)
        return;
unpack:
    if (pkg_unpack(zr->store_dir, zip, zlen, &lim, &zr->info, &zr->perr) != 0 &&
        zr->perr.kind == PKG_OK)
        zr->perr.kind = PKG_E_IO;
    free(zip);
}

void deploy_zipreq_clear(struct deploy_zipreq *zr)
{
    free(zr->body);
    free(zr->store_dir);
    json_decref(zr->req);
    pkg_info_clear(&zr->info);
    memset(zr, 0, sizeof(*zr));
}

/* Replace *DST by a copy of SRC. 0 or SY_ENOMEM. */
static int set_str(char **dst, const char *src)
{
    char *c = strdup(src);

    if (c == NULL)
        return SY_ENOMEM;
    free(*dst);
    *dst = c;
    return 0;
}

/* Map a packages/ failure (RC, PERR) to the SY_E* code prepare returns. */
static int pkg_rc(int rc, const struct pkg_error *perr)
{
    if (perr->kind == PKG_E_NOMEM)
        return SY_ENOMEM;
    if (rc == SY_ENOSPC || rc == SY_EIO || rc == SY_ENOMEM)
        return rc;
    return SY_EINVAL;
}

/*
 * A package path of the file (CODE or a layer) as a directory to run or merge from: a
 * directory is itself, a zip is unpacked into STORE_DIR and INFO says into which directory.
 * *DIR is borrowed from PATH or INFO.
 */
static int prepare_package(const char *store_dir, const char *path, struct pkg_info *info,
                           const char **dir, struct pkg_error *perr)
{
    struct pkg_limits lim = pkg_limits_lambda();
    struct stat st;
    int rc;

    /* The config was checked at load time; a reload or a slow start may find it changed. */
    if (stat(path, &st) != 0) {
        int e = errno;

        char eb[128];

        /* Off the loop (a reload): the thread-safe GNU strerror_r (_GNU_SOURCE). */
        snprintf(perr->msg, sizeof(perr->msg), "cannot read it: %s",
                 strerror_r(e, eb, sizeof(eb)));
        perr->kind = PKG_E_IO;
        return e == ENOMEM ? SY_ENOMEM : SY_EIO;
    }
    if (S_ISDIR(st.st_mode)) {
        *dir = path;
        return 0;
    }
    rc = pkg_unpack_file(store_dir, path, &lim, info, perr);
    if (rc != 0)
        return pkg_rc(rc, perr);
    *dir = info->dir;
    return 0;
}

static int prepare_fn(const struct cfg *cfg, struct cfg_function *fn, const char *store_dir,
                      struct sy_error *err)
{
    struct pkg_info code = {0}, layer[CFG_LAYERS_MAX];
    struct pkg_error perr = {.kind = PKG_OK};
    const char *dirs[CFG_LAYERS_MAX], *code_dir = NULL;
    const uint64_t max = pkg_limits_lambda().max_unzipped_bytes;
    uint64_t code_bytes = 0, opt_bytes = 0;
    char *opt = NULL, what[64];
    const char *path = fn->code; /* the package WHAT names, for messages */
    int rc = 0;

    memset(layer, 0, sizeof(layer));
    if (fn->n_layers > CFG_LAYERS_MAX) { /* cfg_load() refuses it; a hand-made cfg might not */
        sy_error_set(err, "%s:%d: functions.%s.layers: has %zu layers; Lambda allows at most %d",
                     cfg->path, fn->line, fn->name, fn->n_layers, CFG_LAYERS_MAX);
        return SY_EINVAL;
    }
    snprintf(what, sizeof(what), "code");
    rc = prepare_package(store_dir, fn->code, &code, &code_dir, &perr);
    if (rc != 0)
        goto fail_pkg;
    if (code.dir != NULL) {
        if (set_str(&fn->task_root, code.dir) != 0 ||
            set_str(&fn->code_sha256, code.sha256_b64) != 0)
            goto nomem;
        fn->code_size = code.zip_size;
        code_bytes = code.unzipped_size;
    } else if (fn->n_layers > 0) {
        rc = pkg_dir_size(code_dir, &code_bytes, &perr);
        if (rc != 0) {
            rc = pkg_rc(rc, &perr);
            goto fail_pkg;
        }
    }
    for (size_t i = 0; i < fn->n_layers; i++) {
        snprintf(what, sizeof(what), "layers[%zu]", i);
        path = fn->layers[i];
        rc = prepare_package(store_dir, fn->layers[i], &layer[i], &dirs[i], &perr);
        if (rc != 0)
            goto fail_pkg;
    }
    if (fn->n_layers > 0) {
        snprintf(what, sizeof(what), "layers");
        rc = pkg_merge(store_dir, dirs, fn->n_layers, &opt, &opt_bytes, &perr);
        if (rc != 0) {
            rc = pkg_rc(rc, &perr);
            sy_error_set(err, "%s:%d: functions.%s.layers: cannot merge them: %s", cfg->path,
                         fn->line, fn->name, perr.msg);
            goto cleanup;
        }
        free(fn->opt_dir);
        fn->opt_dir = opt;
        opt = NULL;
    }
    /* Lambda's limit is on the function's code and its layers together (lambda-semantics 3.4). */
    if ((code.dir != NULL || fn->n_layers > 0) && code_bytes + opt_bytes > max) {
        sy_error_set(err,
                     "%s:%d: functions.%s: the code (%llu bytes unzipped) and the layers "
                     "(%llu bytes) add up to %llu bytes: Unzipped size must be smaller than "
                     "%llu bytes",
                     cfg->path, fn->line, fn->name, (unsigned long long)code_bytes,
                     (unsigned long long)opt_bytes, (unsigned long long)(code_bytes + opt_bytes),
                     (unsigned long long)max);
        rc = SY_EINVAL;
        goto cleanup;
    }
    /* cfg_load() checked the bootstrap of a plain directory; these it could not see. */
    if (fn->runtime == CFG_RUNTIME_PROVIDED && (code.dir != NULL || fn->n_layers > 0)) {
        char p[4200];
        int found;

        snprintf(p, sizeof(p), "%s/bootstrap", cfg_function_root(fn));
        found = access(p, X_OK) == 0;
        if (!found && fn->opt_dir != NULL) {
            snprintf(p, sizeof(p), "%s/bootstrap", fn->opt_dir);
            found = access(p, X_OK) == 0;
        }
        if (!found) {
            sy_error_set(err,
                         "%s:%d: functions.%s.code: runtime provided needs an executable "
                         "'bootstrap' at the top of its code (%s)%s, and none has one",
                         cfg->path, fn->line, fn->name, fn->code,
                         fn->n_layers > 0 ? " or of one of its layers" : "");
            rc = SY_EINVAL;
            goto cleanup;
        }
    }
    goto cleanup;
nomem:
    rc = SY_ENOMEM;
    sy_error_set(err, "out of memory");
    goto cleanup;
fail_pkg:
    sy_error_set(err, "%s:%d: functions.%s.%s: %s: %s", cfg->path, fn->line, fn->name, what, path,
                 perr.msg);
cleanup:
    free(opt);
    pkg_info_clear(&code);
    for (size_t i = 0; i < CFG_LAYERS_MAX; i++)
        pkg_info_clear(&layer[i]);
    return rc;
}

int deploy_prepare_file(struct cfg *cfg, const char *store_dir, struct sy_error *err)
{
    if (mkdir(store_dir, 0755) != 0 && errno != EEXIST) {
        int e = errno;

        char eb[128];

        sy_error_set(err, "cannot create %s: %s", store_dir, strerror_r(e, eb, sizeof(eb)));
        return e == ENOSPC ? SY_ENOSPC : SY_EIO;
    }
    for (size_t i = 0; i < cfg->n_functions; i++) {
        int rc = prepare_fn(cfg, &cfg->functions[i], store_dir, err);

        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- documents to configurations ------------------------------------------------------------ */

static int name_valid(const char *s, size_t max)
{
    size_t n = strlen(s);

    if (n == 0 || n > max)
        return 0;
    for (const char *p = s; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_'))
            return 0;
    }
    return 1;
}

static int env_name_valid(const char *s)
{
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
        return 0;
    for (const char *p = s + 1; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_'))
            return 0;
    }
    return 1;
}

static int dup_opt(char **dst, const json_t *v)
{
    const char *s = json_string_value(v);

    *dst = NULL;
    if (s == NULL)
        return 0;
    *dst = strdup(s);
    return *dst == NULL ? -1 : 0;
}

#define FAIL(code, ...)                                                                            \
    do {                                                                                           \
        *api_err = (code);                                                                         \
        snprintf(why, whysz, __VA_ARGS__);                                                         \
        goto fail;                                                                                 \
    } while (0)

int deploy_cfg_from_json(struct deploy *d, const json_t *conf, struct cfg_function *out,
                         int *api_err, char *why, size_t whysz)
{
    const char *name = json_string_value(json_object_get(conf, "FunctionName"));
    const char *runtime = json_string_value(json_object_get(conf, "Runtime"));
    const char *handler = json_string_value(json_object_get(conf, "Handler"));
    const char *pkg = json_string_value(json_object_get(conf, "PackageDir"));
    const json_t *mem = json_object_get(conf, "MemorySize");
    const json_t *tmo = json_object_get(conf, "Timeout");
    const json_t *desc = json_object_get(conf, "Description");
    const json_t *vars = json_object_get(json_object_get(conf, "Environment"), "Variables");
    static const int default_delays[] = {60, 120};
    int major = 0, minor = 0;

    memset(out, 0, sizeof(*out));
    if (name == NULL || !name_valid(name, 64))
        FAIL(API_E_VALIDATION,
             "1 validation error detected: Value '%.100s' at 'functionName' failed to satisfy "
             "constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9-_]{1,64}",
             name != NULL ? name : "null");
    if (runtime == NULL)
        FAIL(API_E_BAD_PARAM, "The Runtime parameter is required for a function of package "
                              "type Zip.");
    if (cfg_runtime_parse(runtime, &out->runtime, &major, &minor) != 0)
        FAIL(API_E_BAD_PARAM,
             "Value %.64s at 'runtime' failed to satisfy constraint: Member must satisfy enum "
             "value set: [%s]",
             runtime, cfg_runtime_accepted());
    out->runtime_major = major;
    out->runtime_minor = minor;
    if (handler == NULL && out->runtime != CFG_RUNTIME_PROVIDED)
        FAIL(API_E_BAD_PARAM, "The Handler parameter is required for the %s runtime.", runtime);
    if (handler != NULL && (handler[0] == '\0' || strlen(handler) > 128 ||
                            strpbrk(handler, " \t\r\n") != NULL))
        FAIL(API_E_VALIDATION,
             "1 validation error detected: Value '%.130s' at 'handler' failed to satisfy "
             "constraint: Member must satisfy regular expression pattern: [^\\s]+",
             handler);
    if (pkg == NULL)
        FAIL(API_E_BAD_PARAM, "The function has no code package.");
    out->memory_mb = 128;
    if (mem != NULL) {
        if (!json_is_integer(mem) || json_integer_value(mem) < 128 ||
            json_integer_value(mem) > 10240)
            FAIL(API_E_VALIDATION,
                 "1 validation error detected: Value '%lld' at 'memorySize' failed to satisfy "
                 "constraint: Member must have value %s",
                 (long long)json_integer_value(mem),
                 json_integer_value(mem) < 128 ? "greater than or equal to 128"
                                               : "less than or equal to 10240");
        out->memory_mb = (int)json_integer_value(mem);
    }
    out->timeout_s = 3;
    if (tmo != NULL) {
        if (!json_is_integer(tmo) || json_integer_value(tmo) < 1 || json_integer_value(tmo) > 900)
            FAIL(API_E_VALIDATION,
                 "1 validation error detected: Value '%lld' at 'timeout' failed to satisfy "
                 "constraint: Member must have value %s",
                 (long long)json_integer_value(tmo),
                 json_integer_value(tmo) < 1 ? "greater than or equal to 1"
                                             : "less than or equal to 900");
        out->timeout_s = (int)json_integer_value(tmo);
    }
    if (desc != NULL && (!json_is_string(desc) || json_string_length(desc) > 256))
        FAIL(API_E_VALIDATION,
             "1 validation error detected: Value at 'description' failed to satisfy constraint: "
             "Member must have length less than or equal to 256");
    if (vars != NULL) {
        const char *k;
        json_t *v;
        size_t total = 0, i = 0;

        if (!json_is_object(vars))
            FAIL(API_E_BAD_PARAM, "Environment.Variables must be a map of strings.");
        out->environment = calloc(json_object_size(vars) + 1, sizeof(*out->environment));
        if (out->environment == NULL)
            FAIL(API_E_SERVICE, "out of memory");
        json_object_foreach((json_t *)vars, k, v) {
            if (!json_is_string(v))
                FAIL(API_E_BAD_PARAM, "Environment variable %.100s: the value must be a string.",
                     k);
            if (!env_name_valid(k))
                FAIL(API_E_VALIDATION,
                     "1 validation error detected: Value at 'environment.variables' failed to "
                     "satisfy constraint: Map keys must satisfy constraint: [Member must satisfy "
                     "regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+]");
            if (cfg_env_reserved(k))
                FAIL(API_E_BAD_PARAM,
                     "Lambda was unable to configure your environment variables because the "
                     "environment variables you have provided contains reserved keys that are "
                     "currently not supported for modification. Reserved keys used in this "
                     "request: %.100s",
                     k);
            total += strlen(k) + json_string_length(v);
            out->environment[i].name = strdup(k);
            out->environment[i].value = strdup(json_string_value(v));
            out->n_environment = ++i;
            if (out->environment[i - 1].name == NULL || out->environment[i - 1].value == NULL)
                FAIL(API_E_SERVICE, "out of memory");
        }
        if (total > ENV_VARS_MAX)
            FAIL(API_E_BAD_PARAM,
                 "Lambda was unable to configure your environment variables because the "
                 "environment variables you have provided exceeded the 4KB limit. String "
                 "measured: %zu bytes",
                 total);
    }
    if ((out->name = strdup(name)) == NULL || dup_opt(&out->runtime_id, json_object_get(conf, "Runtime")) ||
        dup_opt(&out->handler, json_object_get(conf, "Handler")) ||
        (out->code = strdup(pkg)) == NULL || (out->task_root = strdup(pkg)) == NULL ||
        dup_opt(&out->opt_dir, json_object_get(conf, "OptDir")) ||
        dup_opt(&out->code_sha256, json_object_get(conf, "CodeSha256")) ||
        dup_opt(&out->description, desc))
        FAIL(API_E_SERVICE, "out of memory");
    out->code_size = (uint64_t)json_integer_value(json_object_get(conf, "CodeSize"));
    out->init_timeout_s = 10;
    out->max_idle_s = 300;
    out->reserved_concurrency = -1;
    out->provisioned_concurrency = 0;
    out->async.maximum_retry_attempts = 2;
    out->async.maximum_event_age_s = 21600;
    out->async.retry_delays_s = malloc(sizeof(default_delays));
    if (out->async.retry_delays_s == NULL)
        FAIL(API_E_SERVICE, "out of memory");
    memcpy(out->async.retry_delays_s, default_delays, sizeof(default_delays));
    out->async.n_retry_delays = 2;
    {
        const json_t *eic = json_object_get(conf, "EventInvokeConfig");
        const json_t *v;

        if ((v = json_object_get(eic, "MaximumRetryAttempts")) != NULL)
            out->async.maximum_retry_attempts = (int)json_integer_value(v);
        if ((v = json_object_get(eic, "MaximumEventAgeInSeconds")) != NULL)
            out->async.maximum_event_age_s = (int)json_integer_value(v);
        if (dup_opt(&out->async.on_success,
                    json_object_get(json_object_get(json_object_get(eic, "Destinations"),
                                                    "OnSuccess"),
                                    "Uri")) ||
            dup_opt(&out->async.on_failure,
                    json_object_get(json_object_get(json_object_get(eic, "Destinations"),
                                                    "OnFailure"),
                                    "Uri")))
            FAIL(API_E_SERVICE, "out of memory");
    }
    (void)d;
    return 0;
fail:
    cfg_function_clear(out);
    return -1;
}

#undef FAIL

/* ---- provisioned concurrency ------------------------------------------------------------------ */

void deploy_apply_provisioned(struct deploy *d, struct dep_fn *df)
{
    const json_t *pcs = json_object_get(df->doc, "Provisioned");
    const json_t *aliases = json_object_get(df->doc, "Aliases");

    if (df->head == NULL)
        return;
    for (size_t i = 0; i < function_version_count(df->head); i++) {
        struct function *ver = function_version_at(df->head, i);
        const char *vname = function_version_name(ver);
        json_int_t n = json_integer_value(
            json_object_get(json_object_get(pcs, vname), "Requested"));
        const char *an;
        json_t *al;

        /* An alias's environments are its (primary) version's. */
        json_object_foreach((json_t *)aliases, an, al) {
            const char *target = json_string_value(json_object_get(al, "FunctionVersion"));

            if (target != NULL && strcmp(target, vname) == 0)
                n += json_integer_value(json_object_get(json_object_get(pcs, an), "Requested"));
        }
        function_set_provisioned(ver, (int)n);
    }
    (void)d;
}

/* ---- restore ---------------------------------------------------------------------------------- */

/* Versions of DOC in number order (the object's keys are strings). */
static int ver_cmp(const void *a, const void *b)
{
    long x = atol(*(const char *const *)a), y = atol(*(const char *const *)b);

    return (x > y) - (x < y);
}

static int restore_one(struct deploy *d, const char *name, const char *text)
{
    json_error_t jerr;
    json_t *doc = json_loads(text, 0, &jerr);
    struct cfg_function fc;
    struct sy_error err;
    struct dep_fn *df;
    int api_err;
    char why[600];
    const char *k;
    json_t *v;

    if (doc == NULL) {
        log_err("[deploy] function %s: its stored document does not parse (%s); not run", name,
                jerr.text);
        return -1;
    }
    if (deploy_fn(d, name) != NULL) {
        log_warn("[deploy] function %s is declared in the file and was also created through the "
                 "API; the file's runs (the stored one is kept in %s)",
                 name, d->db_path);
        json_decref(doc);
        return -1;
    }
    if (deploy_cfg_from_json(d, json_object_get(doc, "Config"), &fc, &api_err, why,
                             sizeof(why)) != 0) {
        log_err("[deploy] function %s: stored configuration refused: %s; not run", name, why);
        json_decref(doc);
        return -1;
    }
    df = deploy_fn_add(d, name, doc);
    if (df == NULL) {
        cfg_function_clear(&fc);
        return -1;
    }
    df->head = dispatcher_add(d->dsp, &fc, &err);
    cfg_function_clear(&fc);
    if (df->head == NULL) {
        log_err("[deploy] function %s: %s; not run", name, err.msg);
        deploy_fn_remove(d, df);
        return -1;
    }
    {
        json_t *vers = json_object_get(doc, "Versions");
        size_t n = json_object_size(vers), i = 0;
        const char **keys = calloc(n ? n : 1, sizeof(*keys));

        json_object_foreach(vers, k, v) {
            if (keys != NULL)
                keys[i++] = k;
        }
        if (keys != NULL)
            qsort(keys, i, sizeof(*keys), ver_cmp);
        for (size_t j = 0; keys != NULL && j < i; j++) {
            json_t *vc = json_object_get(json_object_get(vers, keys[j]), "Config");

            if (deploy_cfg_from_json(d, vc, &fc, &api_err, why, sizeof(why)) != 0) {
                log_err("[deploy] function %s version %s: stored configuration refused: %s", name,
                        keys[j], why);
                continue;
            }
            if (function_publish(df->head, keys[j], &fc, &err) == NULL)
                log_err("[deploy] function %s version %s: %s", name, keys[j], err.msg);
            cfg_function_clear(&fc);
        }
        free(keys);
    }
    json_object_foreach(json_object_get(doc, "Aliases"), k, v) {
        const char *ver = json_string_value(json_object_get(v, "FunctionVersion"));
        json_t *w = json_object_get(json_object_get(v, "RoutingConfig"),
                                    "AdditionalVersionWeights");
        const char *xv = NULL;
        double xw = 0;
        const char *wk;
        json_t *wv;

        json_object_foreach(w, wk, wv) {
            xv = wk;
            xw = json_number_value(wv);
        }
        if (ver == NULL || function_alias_set(df->head, k, ver, xv, xw, &err) != 0)
            log_err("[deploy] function %s alias %s: not restored", name, k);
    }
    if (json_is_integer(json_object_get(doc, "Reserved")) &&
        function_set_reserved(df->head, (int)json_integer_value(json_object_get(doc, "Reserved")),
                              &err) != 0)
        log_err("[deploy] function %s: reserved concurrency not restored: %s", name, err.msg);
    deploy_apply_provisioned(d, df);
    return 0;
}

/* The layer versions, before the functions that name them. */
static int restore_layers(struct deploy *d, sqlite3 *db, struct sy_error *err)
{
    sqlite3_stmt *st = NULL;
    size_t n = 0;
    int rc;

    rc = sqlite3_prepare_v2(db, "SELECT arn, doc FROM layers ORDER BY rowid", -1, &st, NULL);
    if (rc != SQLITE_OK) {
        sy_error_set(err, "%s: %s", d->db_path, sqlite3_errmsg(db));
        return SY_EIO;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *arn = (const char *)sqlite3_column_text(st, 0);
        json_t *doc = json_loads((const char *)sqlite3_column_text(st, 1), 0, NULL);
        const char *name = json_string_value(json_object_get(doc, "LayerName"));
        json_int_t ver = json_integer_value(json_object_get(doc, "Version"));

        if (name == NULL || ver < 1) {
            /* Kept in the table; its functions still run from their stored OptDir. */
            log_err("[deploy] layer version %s: its stored document does not parse; not "
                    "listed",
                    arn);
            json_decref(doc);
            continue;
        }
        if (deploy_layer_add(d, arn, name, (long)ver, doc) == NULL) {
            sqlite3_finalize(st);
            sy_error_set(err, "out of memory");
            return SY_ENOMEM;
        }
        n++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        sy_error_set(err, "%s: %s", d->db_path, sqlite3_errmsg(db));
        return SY_EIO;
    }
    if (n > 0)
        log_info("[deploy] %zu layer version(s) restored from %s", n, d->db_path);
    return 0;
}

static int restore(struct deploy *d, sqlite3 *db, struct sy_error *err)
{
    sqlite3_stmt *st = NULL;
    size_t n = 0;
    int rc;

    rc = sqlite3_prepare_v2(db, "SELECT name, doc FROM functions ORDER BY rowid", -1, &st, NULL);
    if (rc != SQLITE_OK) {
        sy_error_set(err, "%s: %s", d->db_path, sqlite3_errmsg(db));
        return SY_EIO;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (restore_one(d, (const char *)sqlite3_column_text(st, 0),
                        (const char *)sqlite3_column_text(st, 1)) == 0)
            n++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        sy_error_set(err, "%s: %s", d->db_path, sqlite3_errmsg(db));
        return SY_EIO;
    }
    if (n > 0)
        log_info("[deploy] %zu function(s) created through the API restored from %s", n,
                 d->db_path);
    return 0;
}

/* ---- the package store's garbage ------------------------------------------------------------ */

struct keep {
    char **v;
    size_t n, cap;
    int oom; /* a name could not be kept: collect nothing */
};

static void keep_add(struct keep *k, const char *dir)
{
    char **p;

    if (dir == NULL || dir[0] == '\0')
        return;
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 64;

        p = realloc(k->v, cap * sizeof(*p));
        if (p == NULL) {
            k->oom = 1;
            return;
        }
        k->v = p;
        k->cap = cap;
    }
    if ((k->v[k->n] = strdup(dir)) != NULL)
        k->n++;
    else
        k->oom = 1;
}

static void keep_conf(struct keep *k, const json_t *conf)
{
    keep_add(k, json_string_value(json_object_get(conf, "PackageDir")));
    keep_add(k, json_string_value(json_object_get(conf, "OptDir")));
}

/*
 * At start-up, before any environment runs: remove from the package store every tree that no
 * stored document (function, version or layer; also the ones that could not be restored) and
 * no function of the file names. Nothing else uses the store then. Best effort: a failure is
 * logged and the trees stay (they only cost space). A keep list that could not be built in
 * full (a row that does not parse, out of memory) cancels the collection.
 */
static void gc_store(struct deploy *d, sqlite3 *db)
{
    static const char *const sql[] = {"SELECT doc FROM functions", "SELECT doc FROM layers"};
    struct keep k = {0};
    struct pkg_error perr;
    int ok = 1;

    for (size_t i = 0; i < dispatcher_function_count(d->dsp); i++) {
        const struct cfg_function *fc = function_cfg(dispatcher_function_at(d->dsp, i));

        keep_add(&k, fc->task_root);
        keep_add(&k, fc->opt_dir);
    }
    for (size_t q = 0; q < 2 && ok; q++) {
        sqlite3_stmt *st = NULL;

        if (sqlite3_prepare_v2(db, sql[q], -1, &st, NULL) != SQLITE_OK) {
            ok = 0;
            break;
        }
        while (sqlite3_step(st) == SQLITE_ROW) {
            json_t *doc = json_loads((const char *)sqlite3_column_text(st, 0), 0, NULL);
            const char *vk;
            json_t *v;

            if (doc == NULL) {
                ok = 0; /* a document we cannot read may name trees: keep everything */
                break;
            }
            keep_conf(&k, q == 0 ? json_object_get(doc, "Config") : doc);
            json_object_foreach(json_object_get(doc, "Versions"), vk, v)
                keep_conf(&k, json_object_get(v, "Config"));
            json_decref(doc);
        }
        sqlite3_finalize(st);
    }
    if (ok && !k.oom) {
        if (pkg_gc(d->store_dir, (const char *const *)k.v, k.n, &perr) != 0)
            log_warn("[deploy] cleaning %s: %s", d->store_dir, perr.msg);
    }
    for (size_t i = 0; i < k.n; i++)
        free(k.v[i]);
    free(k.v);
}

/* ---- open / close ------------------------------------------------------------------------------ */

static char *path_join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);

    if (p != NULL)
        snprintf(p, n, "%s/%s", a, b);
    return p;
}

struct deploy *deploy_open(struct event_base *base, const struct cfg *cfg,
                           struct dispatcher *dsp, struct sy_error *err)
{
    struct deploy *d = calloc(1, sizeof(*d));
    struct sqlq_conf conf;
    sqlite3 *db = NULL;
    char *emsg = NULL;

    if (d == NULL) {
        sy_error_set(err, "out of memory");
        return NULL;
    }
    d->magic = DEPLOY_MAGIC;
    d->base = base;
    d->cfg = cfg;
    d->dsp = dsp;
    d->efd = -1;
    d->db_path = path_join(cfg->broker.data_dir, "state.db");
    d->store_dir = path_join(cfg->broker.data_dir, "packages");
    if (d->db_path == NULL || d->store_dir == NULL) {
        sy_error_set(err, "out of memory");
        goto fail;
    }
    if (mkdir(d->store_dir, 0755) != 0 && errno != EEXIST) {
        sy_error_set(err, "cannot create %s: %s", d->store_dir, strerror(errno));
        goto fail;
    }
    /* The file's functions first: they own their names. */
    for (size_t i = 0; i < dispatcher_function_count(dsp); i++) {
        struct function *fn = dispatcher_function_at(dsp, i);
        struct dep_fn *df = deploy_fn_add(d, function_cfg(fn)->name, NULL);

        if (df == NULL) {
            sy_error_set(err, "out of memory");
            goto fail;
        }
        df->from_file = 1;
        df->head = fn;
    }
    if (sqlite3_open_v2(d->db_path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA journal_mode=WAL;", NULL, NULL, &emsg) != SQLITE_OK ||
        sqlite3_exec(db, schema, NULL, NULL, &emsg) != SQLITE_OK) {
        sy_error_set(err, "cannot open the state database %s: %s", d->db_path,
                     emsg != NULL ? emsg : db != NULL ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_free(emsg);
        goto fail;
    }
    if (restore_layers(d, db, err) != 0 || restore(d, db, err) != 0)
        goto fail;
    gc_store(d, db);
    memset(&conf, 0, sizeof(conf));
    conf.path = d->db_path;
    conf.db = db;
    conf.tag = "[deploy] state";
    conf.thread = "sy-state";
    conf.fsync = cfg->broker.durability == CFG_DURABILITY_FSYNC;
    conf.retry_ms = STATE_RETRY_MS;
    conf.free_job = job_free_cb;
    conf.arg = d;
    d->q = sqlq_create(&conf, err);
    if (d->q == NULL)
        goto fail;
    db = NULL; /* the store's now */
    d->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (d->efd < 0) {
        sy_error_set(err, "eventfd: %s", strerror(errno));
        goto fail;
    }
    d->efd_ev = event_new(base, d->efd, EV_READ | EV_PERSIST, efd_cb, d);
    if (d->efd_ev == NULL || event_add(d->efd_ev, NULL) != 0) {
        sy_error_set(err, "cannot set up the state database's events");
        goto fail;
    }
    if (sqlq_start(d->q, d->efd, err) != 0)
        goto fail;
    return d;
fail:
    if (db != NULL)
        sqlite3_close(db);
    deploy_close(d);
    return NULL;
}

void deploy_close(struct deploy *d)
{
    if (d == NULL)
        return;
    if (d->q != NULL) {
        struct sqlq_job *sj;

        sqlq_stop(d->q, 5000);
        /* What finished meanwhile is applied as usual (nobody is left to answer). */
        sj = sqlq_take_done(d->q);
        while (sj != NULL) {
            struct sqlq_job *next = sj->next;

            sj->next = NULL;
            ((struct dep_job *)sj)->complete((struct dep_job *)sj);
            sj = next;
        }
        sqlq_destroy(d->q);
    }
    if (d->efd_ev != NULL)
        event_free(d->efd_ev);
    if (d->efd >= 0)
        close(d->efd);
    while (d->fns != NULL)
        deploy_fn_remove(d, d->fns);
    while (d->layers != NULL)
        deploy_layer_remove(d, d->layers);
    free(d->db_path);
    free(d->store_dir);
    d->magic = 0;
    free(d);
}

const char *deploy_store_dir(const struct deploy *d)
{
    return d->store_dir;
}

const struct cfg *deploy_cfg(const struct deploy *d)
{
    return d->cfg;
}

struct dispatcher *deploy_dispatcher(struct deploy *d)
{
    return d->dsp;
}
