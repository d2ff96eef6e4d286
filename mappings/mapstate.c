/*
 * mappings/mapstate.c - data_dir/mappings.json: what the control API changed or made that must
 * outlive a restart. That is the enabled state of each mapping (by name), and the definitions of
 * the mappings CreateEventSourceMapping made, in the order they were made, each the JSON of one
 * `mappings:` entry (with the updates the API made to it since):
 *
 *   {"mappings": {"orders": {"enabled": false}, "esm-1f...": {"enabled": true}},
 *    "created": [{"name": "esm-1f...", "function": "resize:live",
 *                 "source": {"redis": {"url": "redis://127.0.0.1:6379", "list": "jobs"}},
 *                 "batch_size": 10, ...}]}
 *
 * It is read once by mappings_create(), before the loop runs: the definitions go through the
 * config's own checks again (cfg_mapping_parse()); one that fails them (the file's rules
 * changed, a name now taken by the file) is logged and kept as it is, written back with the
 * rest, so that nothing made through the API is lost silently. It is written after every change
 * on a short-lived detached thread (`sy-mapstate`): the loop builds the text and hands it over,
 * the thread writes a temporary file, fsyncs it and renames it into place. A sequence number
 * keeps an older write from landing after a newer one. The thread owns only its job.
 * mappings_destroy() waits (2 s at most) for the writes still running, so a state changed just
 * before a stop is not lost with the process.
 */
#include "mapping_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "core/log.h"

struct save_job {
    char *path; /* owned */
    char *text; /* owned */
    unsigned long seq;
};

static pthread_mutex_t save_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t save_cv = PTHREAD_COND_INITIALIZER;
static unsigned long save_seq, saved_seq;
static unsigned saves_running; /* threads not yet done: mapstate_flush() waits for them */

/* Make the API's mapping of DEF (borrowed) again; one that cannot be made is kept unloaded. */
static void make_again(struct mappings *ms, json_t *def)
{
    struct cfg_errors errs = {0};
    struct sy_error err = {{0}};
    struct mapping *map = NULL;
    char *text = json_dumps(def, JSON_COMPACT);
    const char *name = json_string_value(json_object_get(def, "name"));
    int rc = SY_ENOMEM;

    if (text != NULL)
        rc = mappings_make_def(ms, "mappings.json", text, strlen(text), &map, &errs, &err);
    if (rc == 0 && mappings_insert(ms, map) != 0) {
        mapping_free(map);
        rc = SY_ENOMEM;
    }
    if (rc == SY_ENOMEM && err.msg[0] == '\0')
        sy_error_set(&err, "out of memory");
    if (rc != 0) {
        log_err("%s: the mapping %s made through the API cannot be made again: %s; its "
                "definition stays in the file, but it does not run",
                ms->state_path, name != NULL ? name : "(no name)", err.msg);
        for (size_t i = 0; i < errs.n; i++)
            log_err("  %s", errs.msgs[i]);
        if (ms->unloaded == NULL)
            ms->unloaded = json_array();
        if (ms->unloaded == NULL || json_array_append(ms->unloaded, def) != 0)
            log_err("%s: out of memory keeping the definition of %s: the next save drops it",
                    ms->state_path, name != NULL ? name : "(no name)");
    }
    cfg_errors_clear(&errs);
    free(text);
}

int mapstate_load(struct mappings *ms)
{
    json_error_t jerr;
    json_t *root, *maps, *def;
    size_t i;

    if (access(ms->state_path, F_OK) != 0)
        return errno == ENOENT ? 0 : -1;
    root = json_load_file(ms->state_path, 0, &jerr);
    if (root == NULL) {
        /*
         * The next save would write the file anew without the mappings the API made in it:
         * keep the unreadable one aside, so that nothing it holds is lost.
         */
        size_t n = strlen(ms->state_path) + 32;
        char *aside = malloc(n);

        if (aside != NULL)
            snprintf(aside, n, "%s.unreadable-%lld", ms->state_path, (long long)time(NULL));
        if (aside != NULL && rename(ms->state_path, aside) == 0)
            log_err("%s: %s (line %d); kept as %s (the mappings the API made in it do not run "
                    "until it is mended and renamed back)",
                    ms->state_path, jerr.text, jerr.line, aside);
        else
            log_err("%s: %s (line %d), and it cannot be set aside", ms->state_path, jerr.text,
                    jerr.line);
        free(aside);
        return -1;
    }
    json_array_foreach(json_object_get(root, "created"), i, def)
    {
        make_again(ms, def);
    }
    maps = json_object_get(root, "mappings");
    for (i = 0; i < ms->n; i++) {
        json_t *m = json_object_get(maps, ms->maps[i]->cfg->name);
        json_t *en = json_object_get(m, "enabled");

        if (json_is_boolean(en))
            ms->maps[i]->want_enabled = json_is_true(en);
    }
    json_decref(root);
    return 0;
}

static void *save_main(void *arg)
{
    struct save_job *job = arg;
    size_t plen = strlen(job->path) + 8, len = strlen(job->text);
    char *tmp = malloc(plen);
    int fd = -1;

    pthread_setname_np(pthread_self(), "sy-mapstate");
    if (tmp == NULL)
        goto out;
    snprintf(tmp, plen, "%s.tmp", job->path);
    pthread_mutex_lock(&save_mu);
    if (job->seq < saved_seq) {
        /* A newer state was written already. */
        pthread_mutex_unlock(&save_mu);
        goto out;
    }
    /* 0600: a definition may hold a source's credentials (a redis:// password). */
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, job->text, len) != (ssize_t)len || fsync(fd) != 0 || close(fd) != 0 ||
        rename(tmp, job->path) != 0) {
        log_err("cannot write %s: %s; the mappings' state (enabled, made through the API) is "
                "not saved",
                job->path, strerror(errno));
        if (fd >= 0)
            close(fd);
        unlink(tmp);
    } else {
        saved_seq = job->seq;
    }
    pthread_mutex_unlock(&save_mu);
out:
    free(tmp);
    free(job->path);
    free(job->text);
    free(job);
    pthread_mutex_lock(&save_mu);
    saves_running--;
    pthread_cond_broadcast(&save_cv);
    pthread_mutex_unlock(&save_mu);
    return NULL;
}

void mapstate_flush(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 2;
    pthread_mutex_lock(&save_mu);
    while (saves_running > 0)
        if (pthread_cond_timedwait(&save_cv, &save_mu, &ts) != 0)
            break;
    if (saves_running > 0)
        log_warn("the mappings' state file is still being written after 2 s; not waiting");
    pthread_mutex_unlock(&save_mu);
}

/*
 * The definition of API mapping MAP as it is now (new): its own, with the live settings the API
 * may have updated written over it, in the config's units (filters as literal strings).
 */
static json_t *def_now(const struct mapping *map)
{
    json_t *d = json_deep_copy(map->def), *filters = json_array();

    if (d == NULL || filters == NULL)
        goto fail;
    for (size_t i = 0; i < map->n_filters; i++) {
        char *lit = mapping_def_escape(map->filters[i]);

        if (lit == NULL || json_array_append_new(filters, json_string(lit)) != 0) {
            free(lit);
            goto fail;
        }
        free(lit);
    }
    if (json_object_set_new(d, "enabled", json_boolean(map->want_enabled)) != 0 ||
        json_object_set_new(d, "batch_size", json_integer(map->batch_size)) != 0 ||
        json_object_set_new(d, "maximum_batching_window_ms", json_integer(map->window_ms)) != 0 ||
        json_object_set_new(d, "maximum_concurrency", json_integer(map->max_conc)) != 0 ||
        json_object_set_new(d, "maximum_retry_attempts", json_integer(map->max_retry)) != 0 ||
        json_object_set_new(d, "maximum_record_age_s", json_integer(map->max_age_s)) != 0 ||
        json_object_set_new(d, "bisect_batch_on_function_error", json_boolean(map->bisect)) != 0 ||
        json_object_set_new(d, "report_batch_item_failures", json_boolean(map->report_failures)) !=
            0)
        goto fail;
    if (json_object_set_new(d, "filters", filters) != 0) {
        filters = NULL;
        goto fail;
    }
    return d;

fail:
    json_decref(filters);
    json_decref(d);
    return NULL;
}

void mapstate_save(struct mappings *ms)
{
    json_t *root = json_object(), *maps = json_object(), *created = json_array();
    struct save_job *job = calloc(1, sizeof(*job));
    pthread_attr_t attr;
    pthread_t th;

    if (root == NULL || maps == NULL || created == NULL || job == NULL ||
        json_object_set(root, "mappings", maps) != 0 ||
        json_object_set(root, "created", created) != 0)
        goto fail;
    /* A mapping being removed is left out: a restart from now on must not make it again. */
    for (size_t i = 0; i < ms->n; i++) {
        const struct mapping *map = ms->maps[i];
        json_t *m;

        if (map->removing)
            continue;
        m = json_pack("{s:b}", "enabled", map->want_enabled);
        if (m == NULL || json_object_set_new(maps, map->cfg->name, m) != 0)
            goto fail;
        if (map->def != NULL && json_array_append_new(created, def_now(map)) != 0)
            goto fail;
    }
    if (ms->unloaded != NULL && json_array_extend(created, ms->unloaded) != 0)
        goto fail;
    job->text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    job->path = strdup(ms->state_path);
    if (job->text == NULL || job->path == NULL)
        goto fail;
    json_decref(root);
    root = NULL;
    json_decref(maps);
    maps = NULL;
    json_decref(created);
    created = NULL;
    pthread_mutex_lock(&save_mu);
    job->seq = ++save_seq;
    saves_running++;
    pthread_mutex_unlock(&save_mu);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &attr, save_main, job) != 0) {
        pthread_attr_destroy(&attr);
        pthread_mutex_lock(&save_mu);
        saves_running--;
        pthread_mutex_unlock(&save_mu);
        goto fail;
    }
    pthread_attr_destroy(&attr);
    return;

fail:
    log_err("cannot save %s: out of memory or no thread", ms->state_path);
    json_decref(created);
    json_decref(maps);
    json_decref(root);
    if (job != NULL) {
        free(job->text);
        free(job->path);
        free(job);
    }
}
