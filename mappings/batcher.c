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
 * records. A throttled invocation puts its batch back at the front and holds the mapping back
 * for a growing pause (50 ms doubling to 1 s): a throttle never costs an attempt.
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

/* Take the next batch off the pending FIFO, or NULL (nothing due yet, or out of memory). */
static struct batch *form(struct mapping *map, int64_t now)
{
    size_t want = map->pend_n < (size_t)map->batch_size ? map->pend_n : (size_t)map->batch_size;
    int full = map->pend_n >= (size_t)map->batch_size || map->pend_bytes >= BATCH_MAX_BYTES;
    struct batch *b;

    if (map->pend_n == 0)
        return NULL;
    if (!full && map->window_ms > 0 && now - map->pend_first_ms < map->window_ms) {
        struct timeval tv;
        int64_t left = map->pend_first_ms + map->window_ms - now;

        tv.tv_sec = (time_t)(left / 1000);
        tv.tv_usec = (suseconds_t)(left % 1000) * 1000;
        if (!evtimer_pending(map->window_ev, NULL))
            evtimer_add(map->window_ev, &tv);
        return NULL;
    }
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

/* Invoke B. Returns 0 (B is running) or a negative SY_E* (B untouched). */
static int invoke(struct mapping *map, struct batch *b)
{
    struct buf ev = {0};
    struct invoke_req req = {0};
    int rc;

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
    rc = dispatcher_invoke(map->ms->dsp, map->fn, &req, batch_done, b);
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
            /* Draining, or out of memory: keep it for later (released if we stop). */
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
