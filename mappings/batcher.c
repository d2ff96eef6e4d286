/*
 * mappings/batcher.c - pending records into batches, and batches into invocations.
 *
 * A batch is formed only when it can run (fewer than maximum_concurrency batches of the mapping
 * are running), so that under load records accumulate into full batches instead of many small
 * ones. It closes at batch_size records, at the 6 MB invoke payload cap, or when the batching
 * window (started by the oldest pending record) has passed; with a window of 0 it closes at
 * once with whatever the source delivered in its last read.
 *
 * Batches waiting for a retry (checkpoint.c) and the halves of a bisected batch go before new
 * records. An ordered source (source.h: `ordered`, Kafka) runs at most one batch of a partition
 * at a time: a batch (ready, waiting for its retry, or running) blocks the partitions of its
 * records, a new batch takes the records of one partition that nothing blocks, and a ready batch
 * runs only when no batch before it holds one of its partitions. So records of a partition are
 * processed in order, a failing record holds back only its own partition, and partitions run
 * in parallel up to maximum_concurrency. A throttled invocation puts its batch back at the front
 * and holds the mapping back for a growing pause (50 ms doubling to 1 s): a throttle never costs an
 * attempt.
 *
 * Each batch runs on the unit function_route() gives for the mapping's function and qualifier
 * at the moment it is invoked (a version, or one an alias draws by its weights), so that an
 * alias moved to another version applies from the next batch on. When there is none (the alias
 * or version does not exist, the function was deleted) the batch waits exactly as a throttled
 * one does, without an attempt, and the mapping says why in LastProcessingResult; the log says
 * it once per change.
 */
#include "mapping_int.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/time.h"

/* What the records of one batch may add up to: the sync payload cap minus the envelope. */
#define BATCH_MAX_BYTES ((size_t)SY_SYNC_PAYLOAD_MAX - 256)

struct batch *batch_new(struct mapping *map, size_t cap)
{
    struct batch *b = calloc(1, sizeof(*b));

    if (b == NULL)
        return NULL;
    b->recs = malloc((cap ? cap : 1) * sizeof(*b->recs));
    if (b->recs == NULL) {
        free(b);
        return NULL;
    }
    b->magic = BATCH_MAGIC;
    b->map = map;
    return b;
}

/* Free B and the records it still holds (unacknowledged: the source redelivers them). */
void batch_free(struct batch *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->n; i++) {
        mapping_held_sub(b->map, b->recs[i]);
        source_record_free(b->recs[i]);
    }
    free(b->recs);
    b->magic = 0;
    free(b);
}

/*
 * Whether a batch that is not FULL should wait for more records: the batching window (started
 * by the oldest pending record) has not passed yet. Then the window's timer is armed.
 */
static int window_open(struct mapping *map, int full, int64_t now)
{
    struct timeval tv;
    int64_t left;

    if (full || map->window_ms <= 0 || now - map->pend_first_ms >= map->window_ms)
        return 0;
    left = map->pend_first_ms + map->window_ms - now;
    tv.tv_sec = (time_t)(left / 1000);
    tv.tv_usec = (suseconds_t)(left % 1000) * 1000;
    if (!evtimer_pending(map->window_ev, NULL))
        evtimer_add(map->window_ev, &tv);
    return 1;
}

/* Take the next batch off the pending FIFO, or NULL (nothing due yet, or out of memory). */
static struct batch *form(struct mapping *map, int64_t now)
{
    size_t want = map->pend_n < (size_t)map->batch_size ? map->pend_n : (size_t)map->batch_size;
    int full = map->pend_n >= (size_t)map->batch_size || map->pend_bytes >= BATCH_MAX_BYTES;
    struct batch *b;

    if (map->pend_n == 0)
        return NULL;
    if (window_open(map, full, now))
        return NULL;
    b = batch_new(map, want);
    if (b == NULL)
        return NULL;
    while (b->n < want && map->pend_head != NULL) {
        struct source_record *rec = map->pend_head;

        if (b->n > 0 && b->bytes + rec->json_len + 1 > BATCH_MAX_BYTES)
            break;
        map->pend_head = rec->next;
        if (map->pend_head == NULL)
            map->pend_tail = NULL;
        rec->next = NULL;
        map->pend_n--;
        map->pend_bytes -= rec->json_len;
        b->recs[b->n++] = rec;
        b->bytes += rec->json_len + 1;
    }
    /* The window of what is left starts now. */
    map->pend_first_ms = now;
    if (map->pend_n == 0)
        evtimer_del(map->window_ev);
    return b;
}

/* Ordered sources: mark the partitions of B's records as blocked. */
static void parts_mark(struct mapping *map, const struct batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        int32_t p = b->recs[i]->partition;

        if (p >= 0 && (size_t)p < map->n_blk)
            map->blk[p] = 1;
    }
}

/* Ordered sources: whether a partition of B's records is blocked. */
static int parts_blocked(const struct mapping *map, const struct batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        int32_t p = b->recs[i]->partition;

        if (p >= 0 && (size_t)p < map->n_blk && map->blk[p])
            return 1;
    }
    return 0;
}

static int rec_blocked(const struct mapping *map, const struct source_record *rec)
{
    return rec->partition >= 0 && (size_t)rec->partition < map->n_blk && map->blk[rec->partition];
}

/*
 * Ordered sources: the next batch of pending records of partitions nothing blocks (in arrival
 * order, which is each partition's order), or NULL. Records of blocked partitions stay pending,
 * in order.
 */
static struct batch *form_ordered(struct mapping *map, int64_t now)
{
    size_t want = 0, bytes = 0;
    struct source_record **link, *prev = NULL;
    struct batch *b;
    int32_t part = -1;
    int full;

    /* One partition per batch: a function error then holds back that partition only. */
    for (struct source_record *rec = map->pend_head; rec != NULL && want < (size_t)map->batch_size;
         rec = rec->next) {
        if (rec_blocked(map, rec) || (part >= 0 && rec->partition != part))
            continue;
        part = rec->partition;
        want++;
        bytes += rec->json_len + 1;
    }
    if (want == 0)
        return NULL;
    full = want >= (size_t)map->batch_size || bytes >= BATCH_MAX_BYTES;
    if (window_open(map, full, now))
        return NULL;
    b = batch_new(map, want);
    if (b == NULL)
        return NULL;
    link = &map->pend_head;
    while (*link != NULL && b->n < want) {
        struct source_record *rec = *link;

        if (rec_blocked(map, rec) || rec->partition != part) {
            prev = rec;
            link = &rec->next;
            continue;
        }
        if (b->n > 0 && b->bytes + rec->json_len + 1 > BATCH_MAX_BYTES)
            break;
        *link = rec->next;
        rec->next = NULL;
        map->pend_n--;
        map->pend_bytes -= rec->json_len;
        b->recs[b->n++] = rec;
        b->bytes += rec->json_len + 1;
    }
    if (*link == NULL)
        map->pend_tail = prev;
    map->pend_first_ms = now;
    if (map->pend_n == 0)
        evtimer_del(map->window_ev);
    return b;
}

static int invoke(struct mapping *map, struct batch *b);

void batcher_hold_back(struct mapping *map)
{
    map->throttle_ms = map->throttle_ms ? map->throttle_ms * 2 : 50;
    if (map->throttle_ms > 1000)
        map->throttle_ms = 1000;
    map->throttle_until = time_mono_ms() + map->throttle_ms;
}

/* Whether Q is a version number (else an alias), for messages. */
static int is_version(const char *q)
{
    return q[0] != '\0' && strspn(q, "0123456789") == strlen(q);
}

/*
 * The unit MAP's next batch runs on, or NULL: then the dispatch is held back (batcher_hold_back())
 * and LastProcessingResult says why; the log says it when the reason changes.
 */
static struct function *route(struct mapping *map)
{
    struct function *unit = NULL;
    char why[sizeof(map->route_problem)];

    /* Deleted, or not there when the mapping was made: a function made since under the name. */
    if (map->fn == NULL || function_deleted(map->fn)) {
        struct function *f = dispatcher_function(map->ms->dsp, map->fname);

        if (f != NULL)
            map->fn = f;
    }
    if (map->fn != NULL)
        unit = function_route(map->fn, map->qualifier);
    if (unit != NULL) {
        if (map->route_problem[0] != '\0') {
            log_info("[mapping:%s] %s resolves again: the records waiting are invoked",
                     map->cfg->name, map->function_arn);
            map->route_problem[0] = '\0';
        }
        return unit;
    }
    if (map->fn == NULL || function_deleted(map->fn))
        snprintf(why, sizeof(why), "Function not found: %.200s (there is no function %s)",
                 map->function_arn, map->fname);
    else
        snprintf(why, sizeof(why), "Function not found: %.200s (function %s has no %s %s)",
                 map->function_arn, map->fname, is_version(map->qualifier) ? "version" : "alias",
                 map->qualifier);
    if (strcmp(why, map->route_problem) != 0) {
        log_warn("[mapping:%s] %s; its records wait and are retried, without using an attempt",
                 map->cfg->name, why);
        snprintf(map->route_problem, sizeof(map->route_problem), "%s", why);
    }
    snprintf(map->last_result, sizeof(map->last_result), "PROBLEM: %.280s", why);
    batcher_hold_back(map);
    return NULL;
}

/* batcher_run() for an ordered source. */
static void run_ordered(struct mapping *map, int64_t now)
{
    struct batch *b, *next;

    if (map->n_blk > 0)
        memset(map->blk, 0, map->n_blk);
    TAILQ_FOREACH(b, &map->running, link)
    parts_mark(map, b);
    TAILQ_FOREACH(b, &map->waiting, link)
    parts_mark(map, b);
    for (b = TAILQ_FIRST(&map->ready); b != NULL; b = next) {
        next = TAILQ_NEXT(b, link);
        if (map->c.in_flight_batches >= (uint64_t)map->max_conc || parts_blocked(map, b)) {
            parts_mark(map, b);
            continue;
        }
        TAILQ_REMOVE(&map->ready, b, link);
        if (invoke(map, b) != 0) {
            /* Draining, no unit to run on, or out of memory: back where it was, for later. */
            b->state = BATCH_READY;
            if (next != NULL)
                TAILQ_INSERT_BEFORE(next, b, link);
            else
                TAILQ_INSERT_TAIL(&map->ready, b, link);
            return;
        }
        parts_mark(map, b);
    }
    while (map->c.in_flight_batches < (uint64_t)map->max_conc) {
        b = form_ordered(map, now);
        if (b == NULL)
            break;
        if (invoke(map, b) != 0) {
            b->state = BATCH_READY;
            TAILQ_INSERT_TAIL(&map->ready, b, link);
            break;
        }
        parts_mark(map, b);
    }
}

static void batch_done(const struct invoke_result *res, void *arg)
{
    struct batch *b = arg;
    struct mapping *map = b->map;

    SY_ASSERT(b->magic == BATCH_MAGIC);
    TAILQ_REMOVE(&map->running, b, link);
    map->c.in_flight_batches--;
    checkpoint_outcome(b, res);
    mapping_kick(map);
}

/*
 * Invoke B. Returns 0 (B is running) or a negative SY_E* (B untouched): SY_ENOENT when there is
 * no unit to run it on (route() held the mapping back).
 */
static int invoke(struct mapping *map, struct batch *b)
{
    struct function *unit = route(map);
    struct buf ev = {0};
    struct invoke_req req = {0};
    int rc;

    if (unit == NULL)
        return SY_ENOENT;
    /* The records plus the envelope, in one allocation. */
    rc = buf_reserve(&ev, b->bytes + 64);
    if (rc == 0)
        rc = map->src->ops->encode_batch(map->src, b->recs, b->n, &ev);
    if (rc != 0) {
        buf_free(&ev);
        return rc;
    }
    req.payload = ev.data;
    req.payload_len = ev.len;
    req.payload_give = ev.data; /* the dispatcher takes the block on success */
    /* The context's invokedFunctionArn is the ARN as the mapping names it (alias included). */
    req.invoked_arn = map->qualifier != NULL ? map->function_arn : NULL;
    rc = dispatcher_invoke(map->ms->dsp, unit, &req, batch_done, b);
    if (rc != 0) {
        buf_free(&ev);
        return rc;
    }
    b->state = BATCH_RUNNING;
    TAILQ_INSERT_TAIL(&map->running, b, link);
    map->c.batches++;
    map->c.in_flight_batches++;
    return 0;
}

void batcher_schedule_retry(struct mapping *map)
{
    struct batch *w = TAILQ_FIRST(&map->waiting);
    int64_t now = time_mono_ms(), due = -1;
    struct timeval tv;

    if (w != NULL)
        due = w->due_ms;
    if (map->throttle_until > now && (due < 0 || map->throttle_until < due))
        due = map->throttle_until;
    if (due < 0) {
        evtimer_del(map->retry_ev);
        return;
    }
    if (due < now)
        due = now;
    tv.tv_sec = (time_t)((due - now) / 1000);
    tv.tv_usec = (suseconds_t)((due - now) % 1000) * 1000;
    evtimer_add(map->retry_ev, &tv);
}

void batcher_run(struct mapping *map)
{
    int64_t now = time_mono_ms();
    struct batch *b;

    if (map->stopping || map->src == NULL)
        return;
    /* Retries that are due go first, in the order they failed. */
    while ((b = TAILQ_FIRST(&map->waiting)) != NULL && b->due_ms <= now) {
        TAILQ_REMOVE(&map->waiting, b, link);
        b->state = BATCH_READY;
        TAILQ_INSERT_TAIL(&map->ready, b, link);
    }
    if (map->throttle_until > now) {
        batcher_schedule_retry(map);
        return;
    }
    if (map->src->ordered) {
        run_ordered(map, now);
        batcher_schedule_retry(map);
        return;
    }
    while (map->c.in_flight_batches < (uint64_t)map->max_conc) {
        int from_ready = 0;

        b = TAILQ_FIRST(&map->ready);
        if (b != NULL) {
            TAILQ_REMOVE(&map->ready, b, link);
            from_ready = 1;
        } else {
            b = form(map, now);
            if (b == NULL)
                break;
        }
        if (invoke(map, b) != 0) {
            /* Draining, no unit to run on, or out of memory: keep it for later (released if
             * we stop). */
            b->state = BATCH_READY;
            if (from_ready)
                TAILQ_INSERT_HEAD(&map->ready, b, link);
            else
                TAILQ_INSERT_TAIL(&map->ready, b, link);
            break;
        }
    }
    batcher_schedule_retry(map);
}

void batcher_window_cb(int fd, short what, void *arg)
{
    struct mapping *map = arg;

    (void)fd;
    (void)what;
    SY_ASSERT(map->magic == MAPPING_MAGIC);
    mapping_kick(map);
}

void batcher_retry_cb(int fd, short what, void *arg)
{
    struct mapping *map = arg;

    (void)fd;
    (void)what;
    SY_ASSERT(map->magic == MAPPING_MAGIC);
    mapping_kick(map);
}
