/*
 * mappings/mapstate.c - data_dir/mappings.json: what the control API changed that must outlive
 * a restart. Today that is the enabled state of each mapping (by name):
 *
 *   {"mappings": {"orders": {"enabled": false}}}
 *
 * It is read once by mappings_create(), before the loop runs. It is written after every change
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

int mapstate_load(struct mappings *ms)
{
    json_error_t jerr;
    json_t *root, *maps;
    int rc = 0;

    if (access(ms->state_path, F_OK) != 0)
        return errno == ENOENT ? 0 : -1;
    root = json_load_file(ms->state_path, 0, &jerr);
    if (root == NULL) {
        log_warn("%s: %s (line %d)", ms->state_path, jerr.text, jerr.line);
        return -1;
    }
    maps = json_object_get(root, "mappings");
    for (size_t i = 0; i < ms->n; i++) {
        json_t *m = json_object_get(maps, ms->maps[i].cfg->name);
        json_t *en = json_object_get(m, "enabled");

        if (json_is_boolean(en))
            ms->maps[i].want_enabled = json_is_true(en);
    }
    json_decref(root);
    return rc;
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
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, job->text, len) != (ssize_t)len || fsync(fd) != 0 || close(fd) != 0 ||
        rename(tmp, job->path) != 0) {
        log_err("cannot write %s: %s; the mappings' enabled state is not saved", job->path,
                strerror(errno));
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

void mapstate_save(struct mappings *ms)
{
    json_t *root = json_object(), *maps = json_object();
    struct save_job *job = calloc(1, sizeof(*job));
    pthread_attr_t attr;
    pthread_t th;

    if (root == NULL || maps == NULL || job == NULL)
        goto fail;
    json_object_set_new(root, "mappings", maps);
    maps = NULL;
    for (size_t i = 0; i < ms->n; i++) {
        json_t *m = json_pack("{s:b}", "enabled", ms->maps[i].want_enabled);

        if (m == NULL)
            goto fail;
        json_object_set_new(json_object_get(root, "mappings"), ms->maps[i].cfg->name, m);
    }
    job->text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    job->path = strdup(ms->state_path);
    if (job->text == NULL || job->path == NULL)
        goto fail;
    json_decref(root);
    root = NULL;
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
    json_decref(maps);
    json_decref(root);
    if (job != NULL) {
        free(job->text);
        free(job->path);
        free(job);
    }
}
