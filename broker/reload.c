/*
 * broker/reload.c - SIGHUP and `switchyard reload`: read switchyard.yaml again and apply the
 * difference to the running broker without losing work.
 *
 *   1. Off the loop (the state thread, deploy_offload()): load and validate the file, unpack its
 *      zips and merge its layers (deploy_prepare_file(), as at start-up), and walk the code dirs
 *      of its functions for the API's CodeSha256/CodeSize. Nothing changes yet.
 *   2. A file with errors is rejected whole: its errors are logged one per line exactly as
 *      `switchyard validate` prints them, and the running configuration stays (nginx's rule).
 *      So is a file that declares a function the API created (the names would clash).
 *   3. On the loop, the difference is applied:
 *        functions  added: dispatcher_add(); removed: function_delete() (in-flight invocations
 *                   finish, then the environments stop); changed: function_update() (running
 *                   invocations finish on the old configuration, new ones start on the new);
 *                   a changed reserved concurrency is applied too;
 *        mappings   the file's: added or removed; a changed one is removed (its in-flight
 *                   batches finish and are acknowledged, the rest goes back to its source) and
 *                   added again under the same name, so it resumes where it was; the report
 *                   waits for those removals;
 *        broker     log_level is applied; every other changed key needs a restart and is
 *                   reported as such (the running value stays).
 *   4. The report (JSON) goes to whoever asked: the log for SIGHUP, the HTTP answer for
 *      `POST /switchyard/v1/reload` (what `switchyard reload` prints).
 *
 * One reload at a time: another one asked for meanwhile is refused (409 for the API, a log line
 * for SIGHUP). The configurations a reload replaces stay allocated until the broker stops
 * (mappings and the async queue borrow from them); each is a few KB.
 */
#include "reload.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "config/config.h"
#include "core/log.h"
#include "deploy.h"
#include "dispatcher/dispatcher.h"
#include "mappings/mapping.h"

struct reload {
    struct reload_ctx *ctx;
    reload_done_fn *done;
    void *arg;
    /* filled on the state thread */
    int ran;
    struct cfg *cfg;
    struct cfg_errors errs;
    struct api_fileinfo fi;
    struct sy_error err;
    int fi_ok;
    /* the report */
    json_t *report;
    json_t *added, *removed, *updated, *unchanged;
    json_t *m_added, *m_removed, *m_updated;
    json_t *restart;
    size_t pending_maps; /* mapping removals still draining */
};

static void off_loop(void *arg)
{
    struct reload *r = arg;

    r->ran = 1;
    r->cfg = cfg_load(r->ctx->config_path, mapping_cfg_schema(), &r->errs);
    /* Zips unpacked and layers merged (as at start-up), then the code fingerprints. */
    if (r->cfg != NULL)
        r->fi_ok = deploy_prepare_file(r->cfg, deploy_store_dir(r->ctx->dep), &r->err) == 0 &&
                   api_fileinfo_compute(r->cfg, &r->fi, &r->err) == 0;
}

static void finish(struct reload *r, int ok)
{
    struct reload_ctx *ctx = r->ctx;

    json_object_set_new(r->report, "ok", json_boolean(ok));
    if (json_object_get(r->report, "applied") == NULL)
        json_object_set_new(r->report, "applied", json_false());
    ctx->busy = 0;
    if (r->done != NULL)
        r->done(r->arg, r->report);
    else
        json_decref(r->report);
    api_fileinfo_clear(&r->fi);
    cfg_errors_clear(&r->errs);
    if (r->cfg != NULL)
        cfg_destroy(r->cfg); /* only when not adopted */
    free(r);
}

static void refuse(struct reload *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void refuse(struct reload *r, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_array_append_new(json_object_get(r->report, "errors"), json_string(msg));
    log_err("reload: %s", msg);
}

/* ---- the broker section ------------------------------------------------------------------- */

static int str_same(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

static void broker_diff(struct reload *r, const struct cfg_broker *o, const struct cfg_broker *n)
{
#define NEEDS_RESTART(cond, key)                                                                   \
    do {                                                                                           \
        if (cond)                                                                                  \
            json_array_append_new(r->restart, json_string("broker." key));                         \
    } while (0)
    NEEDS_RESTART(!str_same(o->listen, n->listen), "listen");
    NEEDS_RESTART(!str_same(o->data_dir, n->data_dir), "data_dir");
    NEEDS_RESTART(o->max_concurrency != n->max_concurrency, "max_concurrency");
    NEEDS_RESTART(!str_same(o->auth_token, n->auth_token), "auth_token");
    NEEDS_RESTART(!str_same(o->async_queue, n->async_queue), "async_queue");
    NEEDS_RESTART(o->durability != n->durability, "durability");
    NEEDS_RESTART(o->shutdown_grace_ms != n->shutdown_grace_ms, "shutdown_grace_ms");
    NEEDS_RESTART(!str_same(o->region, n->region), "region");
    NEEDS_RESTART(!str_same(o->account_id, n->account_id), "account_id");
    NEEDS_RESTART(o->keep_dead_letters != n->keep_dead_letters, "dead_letters");
    NEEDS_RESTART(o->async_max_held != n->async_max_held, "async_max_held");
    NEEDS_RESTART(o->strict_runtimes != n->strict_runtimes, "strict_runtimes");
#undef NEEDS_RESTART
    if (!str_same(o->log_level, n->log_level) && n->log_level != NULL) {
        if (log_set_level(n->log_level) == 0)
            json_object_set_new(r->report, "log_level", json_string(n->log_level));
    }
}

/* ---- mappings ----------------------------------------------------------------------------- */

struct map_swap {
    struct reload *r;
    const struct cfg_mapping *add; /* added again once the old one is gone, or NULL */
};

static void maybe_done(struct reload *r);

/* A removed (or changed) mapping is gone: add its new configuration, if it has one. */
static void map_removed(void *arg)
{
    struct map_swap *sw = arg;
    struct reload *r = sw->r;
    struct sy_error err;

    if (sw->add != NULL && mappings_add(r->ctx->ms, sw->add, &err) == NULL)
        refuse(r, "mapping %s: cannot start its new configuration: %s", sw->add->name, err.msg);
    free(sw);
    r->pending_maps--;
    maybe_done(r);
}

/*
 * The file's mappings (those of O, the running file) that N removes or changes are removed
 * (their in-flight batches finish and are acknowledged, the rest goes back to the source); a
 * changed one is added again under its name once that is done, so it resumes where it was.
 * N's new ones are added. Mappings created through the API are not the file's: untouched.
 */
static void mappings_diff(struct reload *r, const struct cfg *o, const struct cfg *n)
{
    struct mappings *ms = r->ctx->ms;
    struct sy_error err;

    if (ms == NULL)
        return;
    for (size_t i = 0; i < o->n_mappings; i++) {
        const struct cfg_mapping *om = &o->mappings[i];
        const struct cfg_mapping *nm = cfg_mapping_find(n, om->name);
        struct mapping *map = mappings_find(ms, om->name);
        struct map_swap *sw;

        if (map == NULL || (nm != NULL && cfg_mapping_equal(om, nm)))
            continue;
        sw = calloc(1, sizeof(*sw));
        if (sw == NULL) {
            refuse(r, "mapping %s: out of memory", om->name);
            continue;
        }
        sw->r = r;
        sw->add = nm;
        r->pending_maps++;
        if (mapping_remove(map, map_removed, sw) != 0) {
            r->pending_maps--;
            free(sw);
            refuse(r, "mapping %s: it is being removed already", om->name);
            continue;
        }
        json_array_append_new(nm != NULL ? r->m_updated : r->m_removed, json_string(om->name));
    }
    for (size_t i = 0; i < n->n_mappings; i++) {
        const struct cfg_mapping *nm = &n->mappings[i];

        if (cfg_mapping_find(o, nm->name) != NULL)
            continue;
        if (mappings_add(ms, nm, &err) == NULL)
            refuse(r, "mapping %s: %s", nm->name, err.msg);
        else
            json_array_append_new(r->m_added, json_string(nm->name));
    }
}

/* ---- functions ---------------------------------------------------------------------------- */

/* The checks that reject a file whole before anything is applied. 0 or -1 (refused). */
static int precheck(struct reload *r, const struct cfg *n)
{
    struct reload_ctx *ctx = r->ctx;
    char why[600];
    int bad = 0;

    for (size_t i = 0; i < n->n_functions; i++) {
        const struct cfg_function *fc = &n->functions[i];
        struct dep_fn *df = deploy_fn(ctx->dep, fc->name);

        if (df != NULL && !df->from_file) {
            refuse(r, "%s: function %s was created through the API; delete it there first, or "
                      "give the file's another name",
                   n->path, fc->name);
            bad = 1;
        }
        if (runtimes_check(ctx->dsp, fc, why, sizeof(why)) < 0) {
            refuse(r, "%s: function %s: %s", n->path, fc->name, why);
            bad = 1;
        }
    }
    return bad ? -1 : 0;
}

static void functions_diff(struct reload *r, const struct cfg *o, const struct cfg *n)
{
    struct reload_ctx *ctx = r->ctx;
    struct sy_error err;

    for (size_t i = 0; i < o->n_functions; i++) {
        const char *name = o->functions[i].name;
        struct dep_fn *df = deploy_fn(ctx->dep, name);

        if (cfg_function_find(n, name) != NULL || df == NULL || !df->from_file)
            continue;
        function_delete(df->head);
        deploy_fn_remove(ctx->dep, df);
        json_array_append_new(r->removed, json_string(name));
    }
    for (size_t i = 0; i < n->n_functions; i++) {
        const struct cfg_function *fc = &n->functions[i];
        const struct cfg_function *ofc = cfg_function_find(o, fc->name);
        struct dep_fn *df = deploy_fn(ctx->dep, fc->name);
        struct function *head;

        if (ofc == NULL || df == NULL) {
            head = dispatcher_add(ctx->dsp, fc, &err);
            if (head == NULL) {
                refuse(r, "function %s: %s", fc->name, err.msg);
                continue;
            }
            df = deploy_fn_add(ctx->dep, fc->name, NULL);
            if (df != NULL) {
                df->from_file = 1;
                df->head = head;
            }
            json_array_append_new(r->added, json_string(fc->name));
            continue;
        }
        if (cfg_function_equal(function_cfg(df->head), fc)) {
            json_array_append_new(r->unchanged, json_string(fc->name));
            continue;
        }
        if (fc->reserved_concurrency != function_reserved(df->head) &&
            function_set_reserved(df->head, fc->reserved_concurrency, &err) != 0) {
            refuse(r, "function %s: %s", fc->name, err.msg);
            continue;
        }
        if (function_update(df->head, fc, &err) != 0) {
            refuse(r, "function %s: %s", fc->name, err.msg);
            continue;
        }
        json_array_append_new(r->updated, json_string(fc->name));
    }
}

/* ---- apply -------------------------------------------------------------------------------- */

static void maybe_done(struct reload *r)
{
    if (r->pending_maps > 0)
        return;
    finish(r, json_array_size(json_object_get(r->report, "errors")) == 0);
}

static void on_loop(void *arg)
{
    struct reload *r = arg;
    struct reload_ctx *ctx = r->ctx;
    struct cfg *old = ctx->cfg;

    if (!r->ran || ctx->stopping) {
        refuse(r, "the broker is stopping");
        finish(r, 0);
        return;
    }
    if (r->cfg == NULL) {
        for (size_t i = 0; i < r->errs.n; i++) {
            log_err("%s", r->errs.msgs[i]);
            json_array_append_new(json_object_get(r->report, "errors"),
                                  json_string(r->errs.msgs[i]));
        }
        log_err("reload: %s: %zu configuration error(s); keeping the running configuration",
                ctx->config_path, r->errs.n);
        finish(r, 0);
        return;
    }
    if (!r->fi_ok) {
        refuse(r, "%s; keeping the running configuration", r->err.msg);
        finish(r, 0);
        return;
    }
    if (precheck(r, r->cfg) != 0) {
        log_err("reload: %s refused; keeping the running configuration", ctx->config_path);
        finish(r, 0);
        return;
    }
    broker_diff(r, &old->broker, &r->cfg->broker);
    functions_diff(r, old, r->cfg);
    mappings_diff(r, old, r->cfg);
    /* The new file is the running one now; the old stays allocated (borrowed from). */
    ctx->adopt(ctx->adopt_arg, r->cfg);
    json_object_set_new(r->report, "applied", json_true());
    api_set_file(ctx->api, r->cfg, &r->fi);
    r->cfg = NULL;
    log_info("reload: %s applied: functions +%zu -%zu ~%zu, mappings +%zu -%zu ~%zu%s",
             ctx->config_path, json_array_size(r->added), json_array_size(r->removed),
             json_array_size(r->updated), json_array_size(r->m_added),
             json_array_size(r->m_removed), json_array_size(r->m_updated),
             json_array_size(r->restart) > 0 ? "; some broker keys need a restart" : "");
    maybe_done(r);
}

int reload_start(struct reload_ctx *ctx, reload_done_fn *done, void *arg)
{
    struct reload *r;

    if (ctx->busy)
        return SY_EBUSY;
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return SY_ENOMEM;
    r->ctx = ctx;
    r->done = done;
    r->arg = arg;
    r->added = json_array();
    r->removed = json_array();
    r->updated = json_array();
    r->unchanged = json_array();
    r->m_added = json_array();
    r->m_removed = json_array();
    r->m_updated = json_array();
    r->restart = json_array();
    r->report = json_pack("{s:s,s:{s:o,s:o,s:o,s:o},s:{s:o,s:o,s:o},s:o,s:[]}", "config",
                          ctx->config_path, "functions", "added", r->added, "removed",
                          r->removed, "updated", r->updated, "unchanged", r->unchanged,
                          "mappings", "added", r->m_added, "removed", r->m_removed, "updated",
                          r->m_updated, "restart_needed", r->restart, "errors");
    if (r->report == NULL || deploy_offload(ctx->dep, off_loop, on_loop, r) != 0) {
        json_decref(r->report);
        free(r);
        return SY_ENOMEM;
    }
    ctx->busy = 1;
    return 0;
}
