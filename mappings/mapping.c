/*
 * mappings/mapping.c - the lifecycle of event source mappings, the host side of their sources,
 * and the snapshot and update operations of the control API (see mapping.h, mapping_int.h).
 *
 * Enabling a mapping creates its source and starts it; records arrive through host_deliver(),
 * which only queues them and activates the mapping's kick event: everything else (filtered
 * acks, forming batches, invoking) runs from mapping_kick's event on a clean stack, so the
 * adapter is never re-entered from inside one of its own callbacks.
 *
 * Memory stays flat whatever the backlog: the host's room() tells the adapter how many more
 * records it takes (max_records_in_flight and a byte bound minus what is held), and a mapping
 * above that pauses its source until it is back under half of it.
 *
 * Disabling stops the source from reading, waits for the running batches and the outgoing
 * on-failure messages, gives every other held record back to the source (release), then stops the
 * source and frees it. Draining and removal are the same stop with `closing` set: the mapping is
 * then never enabled again, mappings_drain() counts it, and a removed one is taken off the list
 * and freed on a later turn (reap_cb), since the stop completes inside its own kick event.
 *
 * Mappings come from the file (mappings_create), from a reload (mappings_add, the config
 * borrowed) or from CreateEventSourceMapping (mappings_create_def: the mapping owns its parsed
 * config and its JSON definition, which mapstate.c saves and makes again at start).
 */
#include "mapping_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "core/log.h"
#include "core/sha256.h"
#include "core/time.h"
#include "destinations/dest.h"

/* Bytes held per mapping at most, whatever max_records_in_flight says. */
#define MAPPING_MAX_HELD_BYTES (32u * 1024 * 1024)

/* ---- the schema for cfg_load() ----------------------------------------------------------- */

static int schema_filter_check(const struct cfg_source_kind *kind, const char *pattern, size_t len,
                               char *why, size_t whysz)
{
    struct filter_opts fo = {.data_key = kind->data_key, .data_must_match = kind->data_must_match};

    return filter_check(pattern, len, &fo, why, whysz);
}

const struct cfg_schema *mapping_cfg_schema(void)
{
    static struct cfg_schema schema;

    if (schema.sources == NULL) {
        schema.sources = source_kinds(&schema.n_sources);
        schema.filter_check = schema_filter_check;
    }
    return &schema;
}

/* ---- small helpers ----------------------------------------------------------------------- */

static const char *state_name(const struct mapping *map)
{
    if (map->removing)
        return "Deleting";
    switch (map->state) {
    case MAP_DISABLED:
        return "Disabled";
    case MAP_ENABLING:
        return "Enabling";
    case MAP_ENABLED:
        return "Enabled";
    case MAP_DISABLING:
        return "Disabling";
    }
    return "Disabled";
}

/* A UUID-shaped id derived from the name, so that it is the same after every restart. */
static void uuid_of_name(const char *name, char out[37])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char h[SHA256_LEN];
    struct sha256_ctx c;
    size_t k = 0;

    sha256_init(&c);
    sha256_update(&c, "switchyard-esm:", 15);
    sha256_update(&c, name, strlen(name));
    sha256_final(&c, h);
    h[6] = (unsigned char)((h[6] & 0x0f) | 0x80); /* version 8: custom (RFC 9562) */
    h[8] = (unsigned char)((h[8] & 0x3f) | 0x80); /* variant 10 */
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[k++] = '-';
        out[k++] = hex[h[i] >> 4];
        out[k++] = hex[h[i] & 15];
    }
    out[k] = '\0';
}

static void set_modified(struct mapping *map)
{
    map->last_modified = (double)time_wall_ms() / 1000.0;
}

static int compile_filter(struct mapping *map, char **patterns, size_t n, struct filter **out,
                          struct sy_error *err)
{
    const struct cfg_source_kind *k = map->cfg->source_kind;
    struct filter_opts fo = {.data_key = k->data_key, .data_must_match = k->data_must_match};
    size_t lens[FILTER_MAX_PATTERNS];

    if (n > FILTER_MAX_PATTERNS) {
        sy_error_set(err, "at most %d filter patterns (got %zu)", FILTER_MAX_PATTERNS, n);
        return SY_EINVAL;
    }
    for (size_t i = 0; i < n; i++)
        lens[i] = strlen(patterns[i]);
    *out = filter_compile((const char *const *)patterns, lens, n, &fo, err);
    return *out != NULL ? 0 : SY_EINVAL;
}

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static char **dup_strv(const char *const *v, size_t n)
{
    char **d = calloc(n ? n : 1, sizeof(*d));

    if (d == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        d[i] = strdup(v[i]);
        if (d[i] == NULL) {
            free_strv(d, i);
            return NULL;
        }
    }
    return d;
}

/* ---- the host side of the source --------------------------------------------------------- */

static void update_pause(struct mapping *map)
{
    if (map->src == NULL)
        return;
    if (!map->paused && (map->held_n >= map->max_held || map->held_bytes >= map->max_held_bytes)) {
        map->paused = 1;
        if (map->src->ops->pause != NULL)
            map->src->ops->pause(map->src);
    } else if (map->paused && !map->stopping && map->held_n < map->max_held / 2 &&
               map->held_bytes < map->max_held_bytes / 2) {
        map->paused = 0;
        if (map->src->ops->resume != NULL)
            map->src->ops->resume(map->src);
    }
}

void mapping_held_sub(struct mapping *map, const struct source_record *rec)
{
    map->held_n--;
    map->held_bytes -= rec->json_len + rec->data_len;
}

/*
 * Append REC to V for the next kick. Without memory REC is dropped unacknowledged: the source
 * delivers it again (a redelivery, or a read from the last commit after a restart).
 */
static void recvec_push(struct mapping *map, struct recvec *v, struct source_record *rec)
{
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 64;
        struct source_record **nv = realloc(v->v, nc * sizeof(*nv));

        if (nv == NULL) {
            checkpoint_drop(map, &rec, 1, "setting a record aside");
            return;
        }
        v->v = nv;
        v->cap = nc;
    }
    v->v[v->n++] = rec;
}

/* Take V's records (the caller frees the array, returned; *N set) and leave V empty. */
static struct source_record **recvec_take(struct recvec *v, size_t *n)
{
    struct source_record **out = v->v;

    *n = v->n;
    *v = (struct recvec){0};
    return out;
}

/* Free V and the records still in it. */
static void recvec_free(struct recvec *v)
{
    for (size_t i = 0; i < v->n; i++)
        source_record_free(v->v[i]);
    free(v->v);
    *v = (struct recvec){0};
}

/* Keep REC for the next kick (IS_ACK: filtered, to acknowledge; else a dead letter). */
static void defer(struct mapping *map, struct source_record *rec, int is_ack)
{
    if (is_ack) {
        recvec_push(map, &map->acks, rec);
        return;
    }
    rec->next = NULL;
    if (map->dl_tail == NULL)
        map->dl_head = rec;
    else
        map->dl_tail->next = rec;
    map->dl_tail = rec;
}

/*
 * The records of one read. Filters run here, before batching (as Lambda's do); records that
 * cannot be delivered (received too often, too large for one invocation) and filtered ones are
 * set aside for the next kick, which acknowledges them or sends them to the dead letter.
 */
static void host_deliver(void *arg, struct source_record **recs, size_t n)
{
    struct mapping *map = arg;
    int64_t now = time_mono_ms();

    SY_ASSERT(map->magic == MAPPING_MAGIC);
    for (size_t i = 0; i < n; i++) {
        struct source_record *rec = recs[i];

        rec->next = NULL;
        map->c.received++;
        map->held_n++;
        if (rec->partition >= 0 && (size_t)rec->partition >= map->n_blk) {
            size_t nb = (size_t)rec->partition + 16;
            unsigned char *v = realloc(map->blk, nb);

            if (v != NULL) {
                memset(v + map->n_blk, 0, nb - map->n_blk);
                map->blk = v;
                map->n_blk = nb;
            }
        }
        map->held_bytes += rec->json_len + rec->data_len;
        if ((rec->flags & SOURCE_REC_DEAD_LETTER) || rec->json_len + 256 > SY_SYNC_PAYLOAD_MAX) {
            defer(map, rec, 0);
            continue;
        }
        if (map->n_filters > 0 &&
            !filter_match(map->filter, rec->json, rec->json_len, rec->data, rec->data_len)) {
            map->c.filtered++;
            defer(map, rec, 1);
            continue;
        }
        if (map->pend_tail == NULL) {
            map->pend_head = rec;
            map->pend_first_ms = now;
        } else {
            map->pend_tail->next = rec;
        }
        map->pend_tail = rec;
        map->pend_n++;
        map->pend_bytes += rec->json_len;
    }
    update_pause(map);
    mapping_kick(map);
}

static size_t host_room(void *arg)
{
    struct mapping *map = arg;

    SY_ASSERT(map->magic == MAPPING_MAGIC);
    if (map->stopping || map->paused || map->held_n >= map->max_held ||
        map->held_bytes >= map->max_held_bytes)
        return 0;
    return map->max_held - map->held_n;
}

static void host_state(void *arg, enum source_state st, const char *reason)
{
    struct mapping *map = arg;
    static const char *const names[] = {"connecting", "running", "reconnecting", "problem",
                                        "stopped"};

    SY_ASSERT(map->magic == MAPPING_MAGIC);
    snprintf(map->source_state, sizeof(map->source_state), "%s%s%s", names[st],
             reason != NULL ? ": " : "", reason != NULL ? reason : "");
    if (st == SOURCE_RECONNECTING || st == SOURCE_PROBLEM) {
        snprintf(map->last_result, sizeof(map->last_result), "PROBLEM: %s",
                 reason != NULL ? reason : names[st]);
        log_warn("[mapping:%s] source %s", map->cfg->name, map->source_state);
    } else if (st == SOURCE_RUNNING) {
        if (strncmp(map->last_result, "PROBLEM: ", 9) == 0)
            snprintf(map->last_result, sizeof(map->last_result), "No records processed");
        log_info("[mapping:%s] source %s", map->cfg->name, map->source_state);
    }
}

/* Release V[0..N) to the source (visible again at once), then free them and V (may be NULL). */
static void give_back(struct mapping *map, struct source_record **v, size_t n)
{
    if (n > 0 && map->src != NULL && map->src->ops->release != NULL)
        map->src->ops->release(map->src, v, n);
    for (size_t i = 0; i < n; i++) {
        mapping_held_sub(map, v[i]);
        source_record_free(v[i]);
    }
    free(v);
}

static void host_revoke(void *arg, int32_t partition)
{
    struct mapping *map = arg;
    struct batch_list *lists[] = {&map->ready, &map->waiting};
    struct source_record **link = &map->pend_head, *prev = NULL;
    struct batch *b, *next;

    SY_ASSERT(map->magic == MAPPING_MAGIC);
    while (*link != NULL) {
        struct source_record *rec = *link;

        if (rec->partition != partition) {
            prev = rec;
            link = &rec->next;
            continue;
        }
        *link = rec->next;
        rec->next = NULL;
        map->pend_n--;
        map->pend_bytes -= rec->json_len;
        recvec_push(map, &map->revoked, rec);
    }
    map->pend_tail = prev;
    for (size_t l = 0; l < 2; l++) {
        for (b = TAILQ_FIRST(lists[l]); b != NULL; b = next) {
            size_t k = 0;

            next = TAILQ_NEXT(b, link);
            for (size_t i = 0; i < b->n; i++) {
                if (b->recs[i]->partition == partition) {
                    b->bytes -= b->recs[i]->json_len + 1;
                    recvec_push(map, &map->revoked, b->recs[i]);
                } else {
                    b->recs[k++] = b->recs[i];
                }
            }
            b->n = k;
            if (k == 0) {
                TAILQ_REMOVE(lists[l], b, link);
                batch_free(b);
            }
        }
    }
    mapping_kick(map);
}

static const struct source_host host_ops = {
    .deliver = host_deliver,
    .revoke = host_revoke,
    .room = host_room,
    .state = host_state,
};

static void mapping_stopped(struct mapping *map);

/* ---- the kick: one deferred pass over the mapping ------------------------------------------ */

static void kick_cb(int fd, short what, void *arg)
{
    struct mapping *map = arg;

    (void)fd;
    (void)what;
    SY_ASSERT(map->magic == MAPPING_MAGIC);
    map->kick_pending = 0;
    if (map->src_done) {
        mapping_stopped(map);
        return;
    }
    if (map->acks.n > 0) {
        size_t n;
        struct source_record **acks = recvec_take(&map->acks, &n);

        checkpoint_ack(map, acks, n, SOURCE_DONE);
        free(acks);
    }
    if (map->revoked.n > 0) {
        size_t n;
        struct source_record **v = recvec_take(&map->revoked, &n);

        give_back(map, v, n);
    }
    while (map->dl_head != NULL) {
        struct source_record *rec = map->dl_head;
        char why[160];

        map->dl_head = rec->next;
        if (map->dl_head == NULL)
            map->dl_tail = NULL;
        rec->next = NULL;
        if (rec->flags & SOURCE_REC_DEAD_LETTER)
            snprintf(why, sizeof(why), "received %u times, more than max_receive_count (%u)",
                     rec->receive_count, map->src != NULL ? map->src->max_receive_count : 0);
        else
            snprintf(why, sizeof(why),
                     "the record (%zu bytes as JSON) is larger than the "
                     "6 MB invoke payload limit",
                     rec->json_len);
        checkpoint_dead_letter(map, rec, why);
    }
    batcher_run(map);
    update_pause(map);
    mapping_maybe_stopped(map);
}

void mapping_kick(struct mapping *map)
{
    if (map->kick_ev != NULL && !map->kick_pending) {
        map->kick_pending = 1;
        event_active(map->kick_ev, 0, 0);
    }
}

/* ---- enable / disable ---------------------------------------------------------------------- */

/*
 * Give everything held that is neither running nor on its way to a destination back to the
 * source (pending records, ready and waiting batches), then free it. Without memory for the
 * list the records are freed unreleased: the source redelivers them after its timeout.
 */
static void release_held(struct mapping *map)
{
    struct batch_list *lists[] = {&map->ready, &map->waiting};
    struct source_record **v;
    struct batch *b;
    size_t n = 0, total = map->pend_n;

    for (size_t l = 0; l < 2; l++)
        TAILQ_FOREACH(b, lists[l], link)
    total += b->n;
    v = malloc((total ? total : 1) * sizeof(*v));
    for (struct source_record *rec = map->pend_head, *next; rec != NULL; rec = next) {
        next = rec->next;
        if (v != NULL) {
            v[n++] = rec;
        } else {
            mapping_held_sub(map, rec);
            source_record_free(rec);
        }
    }
    map->pend_head = map->pend_tail = NULL;
    map->pend_n = map->pend_bytes = 0;
    for (size_t l = 0; l < 2; l++) {
        while ((b = TAILQ_FIRST(lists[l])) != NULL) {
            TAILQ_REMOVE(lists[l], b, link);
            if (v != NULL) {
                memcpy(v + n, b->recs, b->n * sizeof(*v));
                n += b->n;
                b->n = 0;
            }
            batch_free(b); /* frees what it still holds (only without V) */
        }
    }
    give_back(map, v, n);
}

/* The source's stop() is done: finish on the next kick, off the adapter's own stack. */
static void source_stopped(void *arg)
{
    struct mapping *map = arg;

    SY_ASSERT(map->magic == MAPPING_MAGIC);
    map->src_done = 1;
    mapping_kick(map);
}

static void mapping_closed(struct mapping *map);

/* The source has stopped: free it and its destinations; the mapping is disabled. */
static void mapping_stopped(struct mapping *map)
{
    map->src_done = 0;
    source_destroy(map->src);
    map->src = NULL;
    dest_destroy(map->on_failure);
    map->on_failure = NULL;
    dest_destroy(map->dead_letter);
    map->dead_letter = NULL;
    map->src_stopping = 0;
    map->stopping = 0;
    map->paused = 0;
    map->state = MAP_DISABLED;
    snprintf(map->source_state, sizeof(map->source_state), "stopped");
    set_modified(map);
    log_info("[mapping:%s] %s", map->cfg->name,
             map->removing  ? "removed: held records finished or given back"
             : map->closing ? "stopped: held records finished or given back"
                            : "disabled");
    if (map->closing) {
        mapping_closed(map);
        return;
    }
    /* Enabled again while it was stopping. */
    if (map->want_enabled) {
        struct sy_error err = {{0}};

        if (mapping_enable(map, &err) != 0)
            log_err("[mapping:%s] cannot enable: %s", map->cfg->name, err.msg);
    }
}

void mapping_maybe_stopped(struct mapping *map)
{
    if (!map->stopping || map->src_stopping)
        return;
    if (!TAILQ_EMPTY(&map->running) || !TAILQ_EMPTY(&map->out) || map->acks.n > 0 ||
        map->dl_head != NULL)
        return;
    release_held(map);
    if (map->src == NULL) {
        mapping_stopped(map);
        return;
    }
    map->src_stopping = 1;
    map->src->ops->stop(map->src, source_stopped, map);
}

/*
 * Stop MAP (see the top of the file). A mapping already disabled has nothing to stop, but one
 * that is closing still goes through the same steps, so that mapping_closed() always runs from
 * the mapping's kick, on a later turn than the call.
 */
static void mapping_disable(struct mapping *map)
{
    if (map->stopping || (map->state == MAP_DISABLED && !map->closing))
        return;
    map->stopping = 1;
    if (map->state != MAP_DISABLED)
        map->state = MAP_DISABLING;
    set_modified(map);
    if (map->src != NULL && map->src->ops->pause != NULL) {
        map->paused = 1;
        map->src->ops->pause(map->src);
    }
    event_del(map->window_ev);
    event_del(map->retry_ev);
    mapping_kick(map);
}

int mapping_enable(struct mapping *map, struct sy_error *err)
{
    const struct source_ops *ops = source_find(map->cfg->source_kind->sec.name);
    const char *dl;
    int rc;

    if (map->state != MAP_DISABLED)
        return 0;
    if (map->closing) {
        sy_error_set(err, "mapping %s is %s", map->cfg->name,
                     map->removing ? "being deleted" : "stopping with the broker");
        return SY_ESTATE;
    }
    if (ops == NULL) {
        sy_error_set(err, "no source kind '%s' in this build", map->cfg->source_kind->sec.name);
        return SY_EINVAL;
    }
    map->state = MAP_ENABLING;
    rc = source_create(ops, &map->ctx, map->cfg->source, &map->src, err);
    if (rc != 0)
        goto fail;
    if (map->cfg->on_failure != NULL) {
        rc = dest_open(map->ms->base, map->cfg->on_failure, &map->on_failure, err);
        if (rc != 0)
            goto fail;
    }
    dl = ops->dead_letter != NULL ? ops->dead_letter(map->src) : NULL;
    if (dl != NULL) {
        rc = dest_open(map->ms->base, dl, &map->dead_letter, err);
        if (rc != 0)
            goto fail;
    }
    rc = ops->start(map->src);
    if (rc != 0) {
        sy_error_set(err, "cannot start the source: %s", sy_strerror(rc));
        goto fail;
    }
    map->state = MAP_ENABLED;
    set_modified(map);
    log_info("[mapping:%s] enabled: %s -> function %s", map->cfg->name, ops->arn(map->src),
             map->function_arn);
    return 0;

fail:
    source_destroy(map->src);
    map->src = NULL;
    dest_destroy(map->on_failure);
    map->on_failure = NULL;
    dest_destroy(map->dead_letter);
    map->dead_letter = NULL;
    map->state = MAP_DISABLED;
    return rc;
}

/* ---- create / start / drain / destroy ------------------------------------------------------ */

/*
 * Records of one partition of an ordered source held at most: four batches' worth (one running,
 * the next ones fetched meanwhile), at least 500, never more than the mapping holds in all.
 */
static size_t partition_window(const struct cfg_mapping *mc)
{
    size_t w = (size_t)mc->batch_size * 4;

    if (w < 500)
        w = 500;
    if (w > (size_t)mc->max_records_in_flight)
        w = (size_t)mc->max_records_in_flight;
    return w;
}

/*
 * What the duplicate check of CreateEventSourceMapping compares (Lambda's rule: one mapping per
 * source and function): "KIND SOURCE", SOURCE being the EventSourceArn, or for a self-managed
 * source (which has none) its endpoints and topics. DESC from the adapter's describe().
 */
static void source_id(struct mapping *map, const struct source_desc *desc)
{
    const char *kind = map->cfg->source_kind->sec.name;
    size_t n;

    if (!desc->self_managed) {
        snprintf(map->src_id, sizeof(map->src_id), "%s %s", kind, map->arn);
        return;
    }
    n = (size_t)snprintf(map->src_id, sizeof(map->src_id), "%s %s", kind,
                         desc->endpoints != NULL ? desc->endpoints : "");
    for (size_t i = 0; i < desc->n_topics && n < sizeof(map->src_id); i++)
        n += (size_t)snprintf(map->src_id + n, sizeof(map->src_id) - n, "%s%s", i ? "," : " ",
                              desc->topics[i]);
}

/* The source part of SRC_ID (after the kind), for messages. */
static const char *source_id_text(const struct mapping *map)
{
    const char *sp = strchr(map->src_id, ' ');

    return sp != NULL ? sp + 1 : map->src_id;
}

struct mapping *mapping_new(struct mappings *ms, const struct cfg_mapping *mc, struct sy_error *err)
{
    const struct cfg_broker *br = &ms->cfg->broker;
    const struct source_ops *ops = source_find(mc->source_kind->sec.name);
    struct mapping *map = calloc(1, sizeof(*map));
    const char *colon = strchr(mc->function, ':');
    struct source_desc desc = {0};
    struct source *probe = NULL;
    struct function *unit;

    if (map == NULL) {
        sy_error_set(err, "out of memory");
        return NULL;
    }
    map->magic = MAPPING_MAGIC;
    map->ms = ms;
    map->cfg = mc;
    TAILQ_INIT(&map->ready);
    TAILQ_INIT(&map->waiting);
    TAILQ_INIT(&map->running);
    TAILQ_INIT(&map->out);
    uuid_of_name(mc->name, map->uuid);
    map->fname = colon != NULL ? strndup(mc->function, (size_t)(colon - mc->function))
                               : strdup(mc->function);
    map->qualifier = colon != NULL ? strdup(colon + 1) : NULL;
    /* MC's function is NAME or NAME:QUALIFIER: appended, it is the (qualified) ARN. */
    if (asprintf(&map->function_arn, "arn:aws:lambda:%s:%s:function:%s", br->region, br->account_id,
                 mc->function) < 0)
        map->function_arn = NULL;
    map->filters = dup_strv((const char *const *)mc->filters, mc->n_filters);
    map->n_filters = map->filters != NULL ? mc->n_filters : 0;
    if (map->fname == NULL || (colon != NULL && map->qualifier == NULL) ||
        map->function_arn == NULL || map->filters == NULL)
        goto oom;
    /* A function deleted or not made yet is no error: the batches wait for it (batcher.c). */
    map->fn = dispatcher_function(ms->dsp, map->fname);
    if (map->fn == NULL)
        log_warn("[mapping:%s] there is no function %s (yet); records wait until there is",
                 mc->name, map->fname);
    map->batch_size = mc->batch_size;
    map->window_ms = mc->maximum_batching_window_ms;
    map->max_conc = mc->maximum_concurrency;
    map->max_retry = mc->maximum_retry_attempts;
    map->max_age_s = mc->maximum_record_age_s;
    map->bisect = mc->bisect_batch_on_function_error;
    map->report_failures = mc->report_batch_item_failures;
    map->max_held = (size_t)mc->max_records_in_flight;
    map->max_held_bytes = MAPPING_MAX_HELD_BYTES;
    map->want_enabled = mc->enabled;
    map->c.lag = -1;
    if (compile_filter(map, map->filters, map->n_filters, &map->filter, err) != 0)
        goto fail;
    /* How long a revoked partition's running batches may take: the timeout of the unit the
     * mapping runs on now (an alias may later draw another; Lambda's longest is 900 s). */
    unit = map->fn != NULL ? function_route(map->fn, map->qualifier) : NULL;
    if (unit == NULL)
        unit = map->fn;
    map->ctx = (struct source_ctx){
        .base = ms->base,
        .mapping = mc->name,
        .region = br->region,
        .account = br->account_id,
        .data_dir = br->data_dir,
        .fsync = br->durability == CFG_DURABILITY_FSYNC,
        .host = &host_ops,
        .host_arg = map,
        .partition_window = partition_window(mc),
        .drain_wait_ms = (unit != NULL ? function_cfg(unit)->timeout_s : 900) * 1000,
    };
    map->kick_ev = event_new(ms->base, -1, 0, kick_cb, map);
    map->window_ev = evtimer_new(ms->base, batcher_window_cb, map);
    map->retry_ev = evtimer_new(ms->base, batcher_retry_cb, map);
    if (map->kick_ev == NULL || map->window_ev == NULL || map->retry_ev == NULL)
        goto oom;
    /* The source's ARN, also while it is disabled: made by a source that is never started. */
    if (ops == NULL) {
        sy_error_set(err, "mapping %s: no source kind '%s' in this build", mc->name,
                     mc->source_kind->sec.name);
        goto fail;
    }
    if (source_create(ops, &map->ctx, mc->source, &probe, err) != 0)
        goto fail;
    snprintf(map->arn, sizeof(map->arn), "%s", ops->arn(probe));
    source_destroy(probe);
    if (ops->describe != NULL)
        ops->describe(mc->source, mc->name, &desc);
    source_id(map, &desc);
    snprintf(map->state_reason, sizeof(map->state_reason), "USER_INITIATED");
    snprintf(map->last_result, sizeof(map->last_result), "No records processed");
    snprintf(map->source_state, sizeof(map->source_state), "stopped");
    set_modified(map);
    return map;

oom:
    sy_error_set(err, "out of memory");
fail:
    mapping_free(map);
    return NULL;
}

int mappings_insert(struct mappings *ms, struct mapping *map)
{
    if (ms->n == ms->cap) {
        size_t cap = ms->cap ? ms->cap * 2 : 8;
        struct mapping **v = realloc(ms->maps, cap * sizeof(*v));

        if (v == NULL)
            return SY_ENOMEM;
        ms->maps = v;
        ms->cap = cap;
    }
    ms->maps[ms->n++] = map;
    return 0;
}

static void reap_cb(int fd, short what, void *arg);

struct mappings *mappings_create(struct event_base *base, const struct cfg *cfg,
                                 struct dispatcher *dsp, struct sy_error *err)
{
    struct mappings *ms = calloc(1, sizeof(*ms));
    size_t plen;

    if (ms == NULL)
        goto oom;
    ms->base = base;
    ms->cfg = cfg;
    ms->dsp = dsp;
    TAILQ_INIT(&ms->reaped);
    plen = strlen(cfg->broker.data_dir) + sizeof("/mappings.json");
    ms->state_path = malloc(plen);
    ms->reap_ev = event_new(base, -1, 0, reap_cb, ms);
    if (ms->state_path == NULL || ms->reap_ev == NULL)
        goto oom;
    snprintf(ms->state_path, plen, "%s/mappings.json", cfg->broker.data_dir);
    for (size_t i = 0; i < cfg->n_mappings; i++) {
        struct mapping *map = mapping_new(ms, &cfg->mappings[i], err);

        if (map == NULL) {
            mappings_destroy(ms);
            return NULL;
        }
        if (mappings_insert(ms, map) != 0) {
            mapping_free(map);
            goto oom;
        }
    }
    /* The API's mappings after the file's, then the enabled states saved for them all. */
    if (mapstate_load(ms) != 0)
        log_warn("cannot read %s; mappings start as the config file says, without those made "
                 "through the API",
                 ms->state_path);
    return ms;

oom:
    sy_error_set(err, "out of memory");
    mappings_destroy(ms);
    return NULL;
}

/* Enable MAP when it is to be: a source that cannot start is shown, the rest of the broker runs. */
static void start_one(struct mapping *map)
{
    struct sy_error err = {{0}};

    if (!map->want_enabled) {
        log_info("[mapping:%s] disabled (as configured, or as the API saved it)", map->cfg->name);
        return;
    }
    if (mapping_enable(map, &err) != 0) {
        log_err("[mapping:%s] cannot enable: %s", map->cfg->name, err.msg);
        snprintf(map->last_result, sizeof(map->last_result), "PROBLEM: %.280s", err.msg);
    }
}

int mappings_start(struct mappings *ms, struct sy_error *err)
{
    (void)err;
    ms->started = 1;
    for (size_t i = 0; i < ms->n; i++)
        start_one(ms->maps[i]);
    return 0;
}

static void drain_one_done(struct mappings *ms)
{
    if (--ms->draining_left == 0 && ms->drain_done != NULL) {
        void (*done)(void *) = ms->drain_done;

        ms->drain_done = NULL;
        done(ms->drain_arg);
    }
}

static void drain_later_cb(int fd, short what, void *arg)
{
    struct mappings *ms = arg;
    void (*done)(void *) = ms->drain_done;

    (void)fd;
    (void)what;
    ms->drain_done = NULL;
    if (done != NULL)
        done(ms->drain_arg);
}

void mappings_drain(struct mappings *ms, void (*done)(void *arg), void *arg)
{
    ms->draining = 1;
    ms->drain_done = done;
    ms->drain_arg = arg;
    ms->draining_left = ms->n + 1;
    /* A mapping being removed is waited for too: its removal goes on, the drain counts it. */
    for (size_t i = 0; i < ms->n; i++) {
        struct mapping *map = ms->maps[i];

        map->closing = 1;
        map->drain_wait = 1;
        mapping_disable(map);
    }
    /* The extra count keeps DONE from running inside this call: it runs from a one-shot. */
    if (--ms->draining_left == 0) {
        struct timeval zero = {0, 0};

        if (event_base_once(ms->base, -1, EV_TIMEOUT, drain_later_cb, ms, &zero) != 0)
            drain_later_cb(-1, 0, ms);
    }
}

/*
 * MAP has stopped for good (from its own kick). The drain learns it; a removed mapping leaves the
 * list now, so that no new operation finds it, and is freed by reap_cb on a later turn: this
 * call is inside its kick event, and its caller still holds it.
 */
static void mapping_closed(struct mapping *map)
{
    struct mappings *ms = map->ms;

    if (map->removing) {
        for (size_t i = 0; i < ms->n; i++) {
            if (ms->maps[i] != map)
                continue;
            memmove(&ms->maps[i], &ms->maps[i + 1], (ms->n - i - 1) * sizeof(*ms->maps));
            ms->n--;
            break;
        }
        TAILQ_INSERT_TAIL(&ms->reaped, map, reap_link);
        event_active(ms->reap_ev, 0, 0);
    }
    if (map->drain_wait) {
        map->drain_wait = 0;
        drain_one_done(ms);
    }
}

static void reap_cb(int fd, short what, void *arg)
{
    struct mappings *ms = arg;
    struct mapping *map;

    (void)fd;
    (void)what;
    while ((map = TAILQ_FIRST(&ms->reaped)) != NULL) {
        void (*done)(void *) = map->removed_done;
        void *done_arg = map->removed_arg;

        TAILQ_REMOVE(&ms->reaped, map, reap_link);
        mapping_free(map);
        /* After the free: DONE may add a mapping of the same name again. */
        if (done != NULL)
            done(done_arg);
    }
}

int mapping_remove(struct mapping *map, void (*done)(void *arg), void *arg)
{
    SY_ASSERT(map->magic == MAPPING_MAGIC);
    if (map->removing)
        return SY_EBUSY;
    map->removing = 1;
    map->closing = 1;
    map->removed_done = done;
    map->removed_arg = arg;
    set_modified(map);
    log_info("[mapping:%s] removing: running batches finish, what else it holds goes back to the "
             "source",
             map->cfg->name);
    /* Saved now: a restart from here on must not make it again. */
    if (map->def != NULL)
        mapstate_save(map->ms);
    mapping_disable(map);
    return 0;
}

struct mapping *mappings_add(struct mappings *ms, const struct cfg_mapping *mc,
                             struct sy_error *err)
{
    struct mapping *map = mappings_find(ms, mc->name);

    if (ms->draining) {
        sy_error_set(err, "cannot add mapping %s: the mappings are stopping", mc->name);
        return NULL;
    }
    if (map != NULL) {
        sy_error_set(err, "a mapping named %s exists already (UUID %s)%s", mc->name, map->uuid,
                     map->removing ? "; it is being removed: add it again once it is gone" : "");
        return NULL;
    }
    map = mapping_new(ms, mc, err);
    if (map == NULL)
        return NULL;
    if (mappings_insert(ms, map) != 0) {
        mapping_free(map);
        sy_error_set(err, "out of memory");
        return NULL;
    }
    if (ms->started)
        start_one(map);
    return map;
}

int mappings_make_def(struct mappings *ms, const char *what, const char *def, size_t len,
                      struct mapping **out, struct cfg_errors *errs, struct sy_error *err)
{
    json_t *j = json_loadb(def, len, 0, NULL);
    struct cfg_mapping *mc = NULL;
    struct mapping *map;

    *out = NULL;
    if (!json_is_object(j)) {
        sy_error_set(err, "the definition is not a JSON object");
        json_decref(j);
        return SY_EINVAL;
    }
    mc = cfg_mapping_parse(ms->cfg, mapping_cfg_schema(), what, def, len, errs);
    if (mc == NULL) {
        sy_error_set(err, "the definition breaks the config file's rules");
        json_decref(j);
        return SY_EINVAL;
    }
    map = mappings_find(ms, mc->name);
    if (map != NULL) {
        sy_error_set(err, "A mapping named %s already exists (UUID %s)%s.", mc->name, map->uuid,
                     map->removing ? "; it is being deleted: create it again once it is gone" : "");
        *out = map;
        cfg_mapping_free(mc);
        json_decref(j);
        return SY_EEXIST;
    }
    map = mapping_new(ms, mc, err);
    if (map == NULL) {
        cfg_mapping_free(mc);
        json_decref(j);
        return SY_EINVAL;
    }
    map->own_cfg = mc;
    map->def = j;
    *out = map;
    return 0;
}

/* "" for no qualifier and $LATEST alike: both run the function's head. */
static const char *qualifier_key(const char *q)
{
    return q == NULL || strcmp(q, "$LATEST") == 0 ? "" : q;
}

/* A listed mapping that reads MAP's source for MAP's function and qualifier, or NULL. */
static struct mapping *same_source(struct mappings *ms, const struct mapping *map)
{
    for (size_t i = 0; i < ms->n; i++) {
        struct mapping *m = ms->maps[i];

        if (strcmp(m->src_id, map->src_id) == 0 && strcmp(m->fname, map->fname) == 0 &&
            strcmp(qualifier_key(m->qualifier), qualifier_key(map->qualifier)) == 0)
            return m;
    }
    return NULL;
}

int mappings_create_def(struct mappings *ms, const char *def, size_t len, struct mapping **out,
                        struct cfg_errors *errs, struct sy_error *err)
{
    struct mapping *map, *other;
    int rc;

    *out = NULL;
    if (ms->draining) {
        sy_error_set(err, "the broker is stopping");
        return SY_ESTATE;
    }
    rc = mappings_make_def(ms, "request", def, len, &map, errs, err);
    if (rc != 0) {
        *out = map;
        return rc;
    }
    other = same_source(ms, map);
    if (other != NULL) {
        /* Lambda's words, quotes and spaces included. */
        sy_error_set(err,
                     "The event source arn (\" %s \") and function (\" %s \") provided mapping "
                     "already exists. Please update or delete the existing mapping with UUID %s",
                     source_id_text(other), other->function_arn, other->uuid);
        mapping_free(map);
        *out = other;
        return SY_EEXIST;
    }
    if (mappings_insert(ms, map) != 0) {
        mapping_free(map);
        sy_error_set(err, "out of memory");
        return SY_ENOMEM;
    }
    log_info("[mapping:%s] created through the API (UUID %s): %s -> %s", map->cfg->name, map->uuid,
             source_id_text(map), map->function_arn);
    if (ms->started)
        start_one(map);
    mapstate_save(ms);
    *out = map;
    return 0;
}

char *mapping_def_escape(const char *s)
{
    size_t n = strlen(s), extra = 0;
    char *out, *p;

    for (size_t i = 0; i < n; i++)
        extra += s[i] == '$';
    out = malloc(n + extra + 1);
    if (out == NULL)
        return NULL;
    p = out;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '$')
            *p++ = '$';
        *p++ = s[i];
    }
    *p = '\0';
    return out;
}

void mapping_free(struct mapping *map)
{
    struct batch *b;
    struct outmsg *om;

    if (map == NULL)
        return;
    SY_ASSERT(map->magic == MAPPING_MAGIC);
    /* A forced stop: nothing is acknowledged; the sources redeliver after their timeout. */
    for (int pass = 0; pass < 3; pass++) {
        struct batch_list *l = pass == 0 ? &map->ready : pass == 1 ? &map->waiting : &map->running;

        while ((b = TAILQ_FIRST(l)) != NULL) {
            TAILQ_REMOVE(l, b, link);
            if (pass == 2)
                dispatcher_cancel(map->ms->dsp, b);
            batch_free(b);
        }
    }
    while ((om = TAILQ_FIRST(&map->out)) != NULL) {
        TAILQ_REMOVE(&map->out, om, link);
        outmsg_free(om);
    }
    for (struct source_record *rec = map->pend_head, *next; rec != NULL; rec = next) {
        next = rec->next;
        source_record_free(rec);
    }
    recvec_free(&map->acks);
    recvec_free(&map->revoked);
    for (struct source_record *rec = map->dl_head, *next; rec != NULL; rec = next) {
        next = rec->next;
        source_record_free(rec);
    }
    free(map->blk);
    source_destroy(map->src);
    dest_destroy(map->on_failure);
    dest_destroy(map->dead_letter);
    if (map->kick_ev != NULL)
        event_free(map->kick_ev);
    if (map->window_ev != NULL)
        event_free(map->window_ev);
    if (map->retry_ev != NULL)
        event_free(map->retry_ev);
    filter_destroy(map->filter);
    if (map->filters != NULL)
        free_strv(map->filters, map->n_filters);
    free(map->function_arn);
    free(map->fname);
    free(map->qualifier);
    json_decref(map->def);
    /* Last: map->cfg may be it. */
    cfg_mapping_free(map->own_cfg);
    map->magic = 0;
    free(map);
}

void mappings_destroy(struct mappings *ms)
{
    struct mapping *map;

    if (ms == NULL)
        return;
    mapstate_flush();
    for (size_t i = 0; i < ms->n; i++)
        mapping_free(ms->maps[i]);
    /* Removed and not reaped yet: their DONE never runs (mapping.h). */
    while ((map = TAILQ_FIRST(&ms->reaped)) != NULL) {
        TAILQ_REMOVE(&ms->reaped, map, reap_link);
        mapping_free(map);
    }
    if (ms->reap_ev != NULL)
        event_free(ms->reap_ev);
    json_decref(ms->unloaded);
    free(ms->maps);
    free(ms->state_path);
    free(ms);
}

size_t mappings_count(const struct mappings *ms)
{
    return ms != NULL ? ms->n : 0;
}

struct mapping *mappings_at(struct mappings *ms, size_t i)
{
    return i < ms->n ? ms->maps[i] : NULL;
}

struct mapping *mappings_find(struct mappings *ms, const char *name)
{
    for (size_t i = 0; ms != NULL && i < ms->n; i++)
        if (strcmp(ms->maps[i]->cfg->name, name) == 0)
            return ms->maps[i];
    return NULL;
}

struct mapping *mappings_find_uuid(struct mappings *ms, const char *uuid)
{
    for (size_t i = 0; ms != NULL && i < ms->n; i++)
        if (strcmp(ms->maps[i]->uuid, uuid) == 0)
            return ms->maps[i];
    return NULL;
}

/* ---- info and update ------------------------------------------------------------------------ */

void mapping_info(struct mapping *map, struct mapping_info *out)
{
    struct source_stats st = {.lag = -1};

    memset(out, 0, sizeof(*out));
    out->name = map->cfg->name;
    out->uuid = map->uuid;
    out->function = map->cfg->function;
    out->function_arn = map->function_arn;
    out->created_by_api = map->def != NULL;
    out->source_kind = map->cfg->source_kind->sec.name;
    out->event_source_arn = map->arn;
    out->state = state_name(map);
    out->state_reason = map->state_reason;
    out->last_result = map->last_result;
    out->source_state = map->source_state;
    out->last_modified = map->last_modified;
    out->enabled = map->want_enabled;
    out->batch_size = map->batch_size;
    out->maximum_batching_window_ms = map->window_ms;
    out->maximum_concurrency = map->max_conc;
    out->maximum_retry_attempts = map->max_retry;
    out->maximum_record_age_s = map->max_age_s;
    out->bisect_batch_on_function_error = map->bisect;
    out->report_batch_item_failures = map->report_failures;
    out->on_failure = map->cfg->on_failure;
    out->filters = (const char *const *)map->filters;
    out->n_filters = map->n_filters;
    out->c = map->c;
    out->c.in_flight_records = map->held_n;
    out->c.in_flight_bytes = map->held_bytes;
    if (map->src != NULL && map->src->ops->stats != NULL) {
        map->src->ops->stats(map->src, &st);
        out->c.lag = st.lag;
    }
    if (out->event_source_arn == NULL)
        out->event_source_arn = map->arn;
    {
        const struct source_ops *ops = source_find(map->cfg->source_kind->sec.name);

        if (ops != NULL && ops->describe != NULL)
            ops->describe(map->cfg->source, map->cfg->name, &out->desc);
        if (out->desc.self_managed)
            out->event_source_arn = NULL;
    }
}

void mapping_partitions(struct mapping *map, source_partition_fn *fn, void *arg)
{
    if (map->src != NULL && map->src->ops->partitions != NULL)
        map->src->ops->partitions(map->src, fn, arg);
}

int mapping_update(struct mapping *map, const struct mapping_update *up, struct sy_error *err)
{
    struct filter *nf = NULL;
    char **nv = NULL;
    int save = map->def != NULL; /* an API mapping's definition takes every update */

    if (map->closing) {
        sy_error_set(err, "mapping %s is %s", map->cfg->name,
                     map->removing ? "being deleted" : "stopping with the broker");
        return SY_ESTATE;
    }
    if (up->set_batch_size && (up->batch_size < 1 || up->batch_size > 10000)) {
        sy_error_set(err, "BatchSize must be 1..10000 (got %d)", up->batch_size);
        return SY_EINVAL;
    }
    if (up->set_window_ms && (up->window_ms < 0 || up->window_ms > 300000)) {
        sy_error_set(err, "MaximumBatchingWindowInSeconds must be 0..300");
        return SY_EINVAL;
    }
    if (up->set_maximum_retry_attempts &&
        (up->maximum_retry_attempts < -1 || up->maximum_retry_attempts > 10000)) {
        sy_error_set(err, "MaximumRetryAttempts must be -1..10000 (got %d)",
                     up->maximum_retry_attempts);
        return SY_EINVAL;
    }
    if (up->set_maximum_record_age_s && up->maximum_record_age_s != -1 &&
        (up->maximum_record_age_s < 60 || up->maximum_record_age_s > 604800)) {
        sy_error_set(err, "MaximumRecordAgeInSeconds must be -1 or 60..604800 (got %d)",
                     up->maximum_record_age_s);
        return SY_EINVAL;
    }
    if (up->set_maximum_concurrency &&
        (up->maximum_concurrency < 1 || up->maximum_concurrency > 1000)) {
        sy_error_set(err, "ScalingConfig.MaximumConcurrency must be 1..1000 (got %d)",
                     up->maximum_concurrency);
        return SY_EINVAL;
    }
    if (up->set_filters) {
        nv = dup_strv(up->filters, up->n_filters);
        if (nv == NULL) {
            sy_error_set(err, "out of memory");
            return SY_ENOMEM;
        }
        if (compile_filter(map, nv, up->n_filters, &nf, err) != 0) {
            free_strv(nv, up->n_filters);
            return SY_EINVAL;
        }
    }
    /* Every value is good: apply. */
    if (nf != NULL) {
        filter_destroy(map->filter);
        free_strv(map->filters, map->n_filters);
        map->filter = nf;
        map->filters = nv;
        map->n_filters = up->n_filters;
    }
    if (up->set_batch_size)
        map->batch_size = up->batch_size;
    if (up->set_window_ms)
        map->window_ms = up->window_ms;
    if (up->set_maximum_retry_attempts)
        map->max_retry = up->maximum_retry_attempts;
    if (up->set_maximum_record_age_s)
        map->max_age_s = up->maximum_record_age_s;
    if (up->set_bisect)
        map->bisect = up->bisect;
    if (up->set_report_failures)
        map->report_failures = up->report_failures;
    if (up->set_maximum_concurrency)
        map->max_conc = up->maximum_concurrency;
    set_modified(map);
    if (up->set_enabled && up->enabled != map->want_enabled) {
        map->want_enabled = up->enabled;
        save = 1;
    }
    if (save)
        mapstate_save(map->ms);
    if (up->set_enabled && up->enabled && map->state == MAP_DISABLED) {
        if (mapping_enable(map, err) != 0)
            return SY_EIO;
    } else if (up->set_enabled && !up->enabled) {
        mapping_disable(map);
    }
    mapping_kick(map);
    return 0;
}
