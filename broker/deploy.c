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
 * layers (<data_dir>/packages/opt-<hex>), both made by packages/ on the state thread.
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
#include "core/fastid.h"
#include "core/log.h"
#include "core/time.h"
#include "dispatcher/dispatcher.h"

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
};

/* A document write (or delete, DOC NULL). */
struct put_job {
    struct dep_job j;
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

    if (pj->doc != NULL) {
        st = sqlq_stmt(q, "INSERT OR REPLACE INTO functions (name, doc) VALUES (?1, ?2)", &rc);
        if (st == NULL)
            return rc;
        sqlite3_bind_text(st, 1, pj->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, pj->doc, -1, SQLITE_STATIC);
    } else {
        st = sqlq_stmt(q, "DELETE FROM functions WHERE name = ?1", &rc);
        if (st == NULL)
            return rc;
        sqlite3_bind_text(st, 1, pj->name, -1, SQLITE_STATIC);
    }
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

int deploy_persist(struct deploy *d, const char *name, const json_t *doc, deploy_done_fn *done,
                   void *arg)
{
    struct put_job *pj = calloc(1, sizeof(*pj));

    if (pj == NULL)
        return SY_ENOMEM;
    pj->name = strdup(name);
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

void deploy_touch(struct dep_fn *df)
{
    time_iso8601_lambda(df->last_modified, (uint64_t)time_wall_ms());
    fastid_uuid4(df->revision_id);
    if (df->doc != NULL) {
        json_object_set_new(df->doc, "RevisionId", json_string(df->revision_id));
        json_object_set_new(df->doc, "LastModified", json_string(df->last_modified));
    }
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
    snprintf(df->revision_id, sizeof(df->revision_id), "%s",
             json_string_value(json_object_get(doc, "RevisionId")) ?: "");
    snprintf(df->last_modified, sizeof(df->last_modified), "%s",
             json_string_value(json_object_get(doc, "LastModified")) ?: "");
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
    if (restore(d, db, err) != 0)
        goto fail;
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
