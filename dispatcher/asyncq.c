/*
 * dispatcher/asyncq.c - asynchronous invocation on the loop: scheduling, retries, outcomes,
 * destinations and dead letters (asyncq.h). The disk work is in asyncq_store.c.
 *
 * Every stored event has one `struct aq_ev` in memory for as long as it is stored, in exactly
 * one of these states:
 *
 *   COMMITTING  INSERT job at the store; the PUT callback runs when it comes back
 *   WAITING     in the timer heap until next_ms (a retry, a throttle backoff, a delivery
 *               backoff when `pending` is set)
 *   READY       due, in its function's FIFO, waiting for a concurrency slot
 *   RUNNING     handed to dispatcher_invoke()
 *   DELIVERING  outcome stored (state 1); destination sends in flight
 *   FINISHING   DELETE job with a dead letter at the store; freed when it comes back
 *
 * Store jobs are collected during a loop turn and handed to the store thread together when the
 * turn ends (asyncq_flush()): one transaction and one wake-up per turn. A finished event
 * without a dead letter is freed at once: its DELETE waits in a second list (the "lazy"
 * deletes) that rides along with the next hand-over, or goes on its own after LAZY_FLUSH_MS or
 * LAZY_MAX deletes. Removals then cost the store thread no wake-up and no commit of their own;
 * a crash before one is committed only runs that event again (at-least-once), and
 * asyncq_close() hands both lists to the store before stopping it.
 *
 * Outcome handling writes the outcome (the destination record and which deliveries remain)
 * to the store BEFORE sending anything, so that a crash at any point leaves either the event
 * (run again) or its outcome (delivered again): at-least-once, never lost.
 */
#include "asyncq.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/log.h"
#include "core/fastid.h"
#include "core/time.h"
#include "config/config.h"
#include "asyncq_int.h"
#include "destinations/dest.h"
#include "dispatcher.h"

#define ASYNCQ_MAGIC 0x4153594eu /* "ASYN" */
#define AQ_EV_MAGIC 0x41514556u  /* "AQEV" */

#define THROTTLE_BACKOFF_MIN_MS 1000
#define THROTTLE_BACKOFF_MAX_MS 300000
#define DELIVERY_BACKOFF_MIN_MS 500
#define DELIVERY_BACKOFF_MAX_MS 60000
#define AUTO_ASYNC_CONCURRENCY 10
#define ERROR_MESSAGE_MAX 1024 /* the DLQ ErrorMessage attribute: first 1 KB */
#define CLOSE_FLUSH_MS 10000
#define LAZY_FLUSH_MS 20 /* a finished event's DELETE waits at most this long for company */
#define LAZY_MAX 512     /* ... or until this many are waiting */

/* Deliveries an outcome may need (bits of aq_ev.pending / .sending). */
enum {
    AQ_D_SUCCESS = 1u << 0, /* on_success record */
    AQ_D_FAILURE = 1u << 1, /* on_failure record */
    AQ_D_DLQ = 1u << 2,     /* dead_letter: the original event with attributes */
};

enum aq_state {
    AQ_COMMITTING,
    AQ_WAITING,
    AQ_READY,
    AQ_RUNNING,
    AQ_DELIVERING,
    AQ_FINISHING,
};

/* Where one kind of delivery goes: a destination, or an async invoke of another function. */
struct aq_target {
    char *uri;               /* owned copy of the config's; NULL: none configured */
    struct dest *dest;       /* owned by the queue's dest table, or NULL for function: */
    struct aq_fn *fn_target; /* function:NAME or function:NAME:VERSION */
    struct function *route_head; /* function:NAME:ALIAS: routed at each delivery */
    char *route_qual;            /* the alias (owned) */
};

/*
 * What the queue keeps per function unit ($LATEST or a version), made the first time the unit
 * is needed (an Event invoke, a stored row, a function: destination). Its targets and cap
 * follow the unit's configuration: af_sync() re-opens them when function_generation()
 * changes. Never freed before the queue (events point at it).
 */
struct aq_fn {
    struct function *fn;
    char *key;          /* what rows store: NAME for $LATEST, NAME:VERSION for a version */
    unsigned gen;       /* function_generation() the targets were opened for */
    unsigned cap;       /* async invocations at once */
    unsigned in_flight;
    struct aq_ev *ready_head, *ready_tail;
    struct aq_target on_success, on_failure, dead_letter;
};

struct aq_ev {
    unsigned magic;
    struct asyncq *q;
    struct aq_fn *af;
    struct aq_row row; /* what is stored (owned) */
    enum aq_state state;
    size_t heap_idx;
    struct aq_ev *next_ready;
    struct aq_ev *prev_all, *next_all;
    int throttles;         /* consecutive requeues without an attempt */
    int last_code;         /* status of the last try: 200 function error, 429, 500 */
    char *last_body;       /* the last function response / error body (owned) */
    char *last_error_type; /* owned */
    unsigned pending;      /* deliveries still to make */
    unsigned sending;      /* deliveries in flight */
    char *record;          /* destination record JSON (owned) */
    char *error_message;   /* for the DLQ attribute (owned) */
    int delivery_failures;
    asyncq_put_fn *put_done; /* COMMITTING: the caller's callback */
    void *put_arg;
};

/* A pending DLQ request from the API (so asyncq_cancel() can forget it). */
struct aq_req {
    asyncq_json_fn *done;
    void *arg;
    struct aq_req *prev, *next;
};

struct asyncq {
    unsigned magic;
    struct event_base *base;
    const struct cfg *cfg;
    struct dispatcher *dsp;
    const struct aq_store_ops *sops;
    struct aq_store *store;
    int efd;
    struct event *efd_ev;
    struct event *timer_ev;
    struct aq_fn **fns;
    size_t n_fns, cap_fns;
    struct dest **dests; /* one per distinct URI */
    size_t n_dests;
    struct aq_ev **heap; /* WAITING events by row.next_ms */
    size_t n_heap, cap_heap;
    struct aq_ev *all;   /* every event in memory */
    struct aq_req *reqs;
    struct asyncq_stats stats;
    int started, draining;
    void (*drain_done)(void *arg);
    void *drain_arg;
    struct event *drain_ev;
    struct aq_job *turn_head, *turn_tail; /* jobs of this loop turn, for asyncq_flush() */
    struct event *turn_ev;                /* flushes them one turn later if nobody else did */
    struct aq_job *lazy_head, *lazy_tail; /* DELETEs not handed to the store yet */
    unsigned n_lazy;
    struct event *lazy_ev; /* hands them over after LAZY_FLUSH_MS */
    struct aq_row *recovered;
    size_t n_recovered;
    /* Bounded memory (SQLite store): at most max_held events / AQ_MAX_HELD_BYTES of payload
     * are held; new events beyond that are stored parked (state 2) and read back by REFILL
     * jobs as held ones finish. */
    unsigned max_held;
    size_t held_bytes;
    int parked;          /* parked rows may exist */
    int refilling;       /* a REFILL job is at the store */
    unsigned park_gen;   /* bumped by every parked insert */
};

static void aq_pump(struct asyncq *q, struct aq_fn *af);
static void adopt_rows(struct asyncq *q, struct aq_row *rows, size_t n);
static void maybe_refill(struct asyncq *q);

/* Events the store handed to this broker (shared Redis queue): hold and schedule them. */
static void intake(struct asyncq *q, struct aq_job *job)
{
    adopt_rows(q, job->rows, job->n_rows);
}
static void aq_deliver(struct aq_ev *ev);
static int aq_put_internal(struct asyncq *q, struct aq_fn *af, const char *payload, size_t len,
                           const char *request_id, const char *trace_id, char *id_out,
                           asyncq_put_fn *done, void *arg);

/* ---- small helpers ------------------------------------------------------------------------ */

/* Signed, for arithmetic with stored times. */
static int64_t wall_ms(void)
{
    return (int64_t)time_wall_ms();
}

/* MS scaled by a random factor in [0.9, 1.1). */
static int64_t jitter(int64_t ms)
{
    return ms * (900 + (int64_t)(random() % 200)) / 1000;
}

static char *xstrndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);

    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* The first ERROR_MESSAGE_MAX bytes of S (LEN bytes) as a new string, never cutting a UTF-8
 * sequence in two (a cut one would make the message invalid JSON text downstream). */
static char *error_message_of(const char *s, size_t len)
{
    size_t n = len < ERROR_MESSAGE_MAX ? len : ERROR_MESSAGE_MAX;

    if (n < len) {
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
    }
    return xstrndup(s, n);
}

static int target_open(struct asyncq *q, const char *uri, struct aq_target *tg,
                       struct sy_error *err);
static struct aq_fn *aq_fn_of(struct asyncq *q, struct function *fn);

/* The unit's current configuration (never cached: an update replaces it). */
#define AFC(af) function_cfg((af)->fn)

static void target_clear(struct aq_target *tg)
{
    free(tg->uri);
    free(tg->route_qual);
    memset(tg, 0, sizeof(*tg));
}

/* Async invocations of AF at once: the function's own setting, else automatic. */
static unsigned af_cap(const struct asyncq *q, const struct aq_fn *af)
{
    const struct cfg_function *fc = AFC(af);
    int reserved = function_reserved(af->fn);
    int auto_cap = reserved > 0 ? reserved
                   : q->cfg->broker.max_concurrency < AUTO_ASYNC_CONCURRENCY
                       ? q->cfg->broker.max_concurrency
                       : AUTO_ASYNC_CONCURRENCY;

    return (unsigned)(fc->async.maximum_concurrency > 0 ? fc->async.maximum_concurrency : auto_cap);
}

/* Bring AF's targets and cap in line with its unit's configuration. 0 or SY_E* (ERR). */
static int af_sync(struct asyncq *q, struct aq_fn *af, struct sy_error *err)
{
    const struct cfg_async *as = &AFC(af)->async;
    unsigned gen = function_generation(af->fn);
    struct aq_target t[3];
    int rc;

    af->cap = af_cap(q, af);
    if (af->gen == gen)
        return 0;
    af->gen = gen; /* first: a function: target naming this unit finds it in sync */
    memset(t, 0, sizeof(t));
    if ((rc = target_open(q, as->on_success, &t[0], err)) != 0 ||
        (rc = target_open(q, as->on_failure, &t[1], err)) != 0 ||
        (rc = target_open(q, as->dead_letter, &t[2], err)) != 0) {
        for (int i = 0; i < 3; i++)
            target_clear(&t[i]);
        af->gen = 0;
        return rc;
    }
    target_clear(&af->on_success);
    target_clear(&af->on_failure);
    target_clear(&af->dead_letter);
    af->on_success = t[0];
    af->on_failure = t[1];
    af->dead_letter = t[2];
    return 0;
}

/* As af_sync(), logging a failure (the old targets stay in use). */
static void af_refresh(struct asyncq *q, struct aq_fn *af)
{
    struct sy_error err;

    if (function_generation(af->fn) == af->gen) {
        af->cap = af_cap(q, af);
        return;
    }
    if (af_sync(q, af, &err) != 0)
        log_err("[function:%s] async destinations of the new configuration: %s", af->key,
                err.msg);
}

/* The unit a stored KEY (NAME or NAME:VERSION) names now, or NULL. */
static struct function *unit_of_key(struct asyncq *q, const char *key)
{
    const char *colon = strchr(key, ':');
    char name[80];
    struct function *head;

    if (colon == NULL)
        return dispatcher_function(q->dsp, key);
    snprintf(name, sizeof(name), "%.*s", (int)(colon - key), key);
    head = dispatcher_function(q->dsp, name);
    return head != NULL ? function_version(head, colon + 1) : NULL;
}

static struct aq_fn *aq_fn_by_name(struct asyncq *q, const char *key)
{
    struct function *fn = unit_of_key(q, key);

    if (fn != NULL)
        return aq_fn_of(q, fn);
    /* A deleted function's events: found by the key they were stored under. */
    for (size_t i = 0; i < q->n_fns; i++) {
        if (strcmp(q->fns[i]->key, key) == 0)
            return q->fns[i];
    }
    return NULL;
}

/* AF for unit FN, made on first use (NULL when out of memory or its targets cannot open). */
static struct aq_fn *aq_fn_of(struct asyncq *q, struct function *fn)
{
    struct aq_fn *af;
    struct sy_error err;
    const char *ver = function_version_name(fn);
    size_t n;

    for (size_t i = 0; i < q->n_fns; i++) {
        if (q->fns[i]->fn == fn)
            return q->fns[i];
    }
    if (q->n_fns == q->cap_fns) {
        size_t cap = q->cap_fns ? q->cap_fns * 2 : 16;
        struct aq_fn **p = realloc(q->fns, cap * sizeof(*p));

        if (p == NULL)
            return NULL;
        q->fns = p;
        q->cap_fns = cap;
    }
    af = calloc(1, sizeof(*af));
    n = strlen(function_cfg(fn)->name) + strlen(ver) + 2;
    if (af == NULL || (af->key = malloc(n)) == NULL) {
        free(af);
        return NULL;
    }
    if (strcmp(ver, "$LATEST") == 0)
        snprintf(af->key, n, "%s", function_cfg(fn)->name);
    else
        snprintf(af->key, n, "%s:%s", function_cfg(fn)->name, ver);
    af->fn = fn;
    q->fns[q->n_fns++] = af; /* listed before its targets open: a cycle of function: targets
                                finds it */
    if (q->store != NULL && q->sops->declare != NULL)
        q->sops->declare(q->store, af->key);
    if (af_sync(q, af, &err) != 0)
        log_err("[function:%s] async destinations: %s", af->key, err.msg);
    return af;
}

/* ---- the timer heap ----------------------------------------------------------------------- */

static void heap_swap(struct asyncq *q, size_t a, size_t b)
{
    struct aq_ev *t = q->heap[a];

    q->heap[a] = q->heap[b];
    q->heap[b] = t;
    q->heap[a]->heap_idx = a;
    q->heap[b]->heap_idx = b;
}

static void heap_up(struct asyncq *q, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;

        if (q->heap[p]->row.next_ms <= q->heap[i]->row.next_ms)
            break;
        heap_swap(q, p, i);
        i = p;
    }
}

static void heap_down(struct asyncq *q, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;

        if (l < q->n_heap && q->heap[l]->row.next_ms < q->heap[m]->row.next_ms)
            m = l;
        if (r < q->n_heap && q->heap[r]->row.next_ms < q->heap[m]->row.next_ms)
            m = r;
        if (m == i)
            return;
        heap_swap(q, i, m);
        i = m;
    }
}

static void heap_remove(struct asyncq *q, struct aq_ev *ev)
{
    size_t i = ev->heap_idx;

    if (i >= q->n_heap || q->heap[i] != ev)
        return;
    q->n_heap--;
    if (i != q->n_heap) {
        q->heap[i] = q->heap[q->n_heap];
        q->heap[i]->heap_idx = i;
        heap_down(q, i);
        heap_up(q, i);
    }
    ev->heap_idx = (size_t)-1;
}

/* Arm the timer for the earliest WAITING event. */
static void timer_rearm(struct asyncq *q)
{
    struct timeval tv;
    int64_t d;

    if (q->n_heap == 0 || !q->started || q->draining) {
        evtimer_del(q->timer_ev);
        return;
    }
    d = q->heap[0]->row.next_ms - wall_ms();
    if (d < 0)
        d = 0;
    tv.tv_sec = (time_t)(d / 1000);
    tv.tv_usec = (suseconds_t)((d % 1000) * 1000);
    evtimer_add(q->timer_ev, &tv);
}

/* Put EV in the heap until its row.next_ms (state WAITING). Returns 0 or SY_ENOMEM. */
static int aq_wait(struct aq_ev *ev)
{
    struct asyncq *q = ev->q;

    if (q->n_heap == q->cap_heap) {
        size_t ncap = q->cap_heap ? q->cap_heap * 2 : 256;
        struct aq_ev **nh = realloc(q->heap, ncap * sizeof(*nh));

        if (nh == NULL)
            return SY_ENOMEM;
        q->heap = nh;
        q->cap_heap = ncap;
    }
    ev->state = AQ_WAITING;
    ev->heap_idx = q->n_heap;
    q->heap[q->n_heap++] = ev;
    heap_up(q, ev->heap_idx);
    if (ev->heap_idx == 0)
        timer_rearm(q);
    return 0;
}

/* ---- events in memory --------------------------------------------------------------------- */

static struct aq_ev *aq_ev_new(struct asyncq *q, struct aq_fn *af)
{
    struct aq_ev *ev = calloc(1, sizeof(*ev));

    if (ev == NULL)
        return NULL;
    ev->magic = AQ_EV_MAGIC;
    ev->q = q;
    ev->af = af;
    ev->heap_idx = (size_t)-1;
    ev->next_all = q->all;
    if (q->all != NULL)
        q->all->prev_all = ev;
    q->all = ev;
    q->stats.queued++;
    return ev;
}

static void aq_ev_free(struct aq_ev *ev)
{
    struct asyncq *q = ev->q;

    if (ev->prev_all != NULL)
        ev->prev_all->next_all = ev->next_all;
    else
        q->all = ev->next_all;
    if (ev->next_all != NULL)
        ev->next_all->prev_all = ev->prev_all;
    heap_remove(q, ev);
    q->held_bytes -= ev->row.len <= q->held_bytes ? ev->row.len : q->held_bytes;
    aq_row_clear(&ev->row);
    free(ev->last_body);
    free(ev->last_error_type);
    free(ev->record);
    free(ev->error_message);
    q->stats.queued--;
    ev->magic = 0;
    free(ev);
    maybe_refill(q);
}

/* A job carrying a copy of EV's row (what the store needs; the payload only WITH_PAYLOAD: for
 * the insert of the event or of a dead letter). NULL when out of memory. */
static struct aq_job *job_for(struct aq_ev *ev, enum aq_job_kind kind, int with_payload)
{
    struct aq_job *job = calloc(1, sizeof(*job));
    const struct aq_row *r = &ev->row;

    if (job == NULL)
        return NULL;
    job->kind = kind;
    job->ctx = ev;
    memcpy(job->ev.id, r->id, sizeof(job->ev.id));
    job->ev.rowid = r->rowid;
    job->ev.enqueued_ms = r->enqueued_ms;
    job->ev.next_ms = r->next_ms;
    job->ev.attempts = r->attempts;
    job->ev.state = r->state;
    job->ev.len = r->len;
    job->ev.fn = strdup(r->fn);
    if (job->ev.fn == NULL)
        goto nomem;
    if (r->history != NULL && (job->ev.history = strdup(r->history)) == NULL)
        goto nomem;
    if (r->outcome != NULL && (job->ev.outcome = strdup(r->outcome)) == NULL)
        goto nomem;
    if (r->trace_id != NULL && (job->ev.trace_id = strdup(r->trace_id)) == NULL)
        goto nomem;
    /* The payload is only needed where a row is inserted (the event, or a dead letter). */
    if (with_payload) {
        job->ev.payload = xstrndup(r->payload, r->len);
        if (job->ev.payload == NULL)
            goto nomem;
    }
    return job;
nomem:
    aq_job_free(job);
    return NULL;
}

/* Append one attempt to EV's history (a JSON array kept as text). */
static void history_add(struct aq_ev *ev, const char *status, const char *etype,
                        const char *emsg)
{
    json_t *h = ev->row.history != NULL ? json_loads(ev->row.history, 0, NULL) : NULL;
    json_t *e;
    char at[40];
    time_t t = (time_t)(wall_ms() / 1000);
    struct tm tm;
    char *s;

    if (h == NULL || !json_is_array(h)) {
        json_decref(h);
        h = json_array();
    }
    gmtime_r(&t, &tm);
    strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm);
    e = json_pack("{s:i,s:s,s:s}", "attempt", ev->row.attempts, "at", at, "status", status);
    if (e != NULL && etype != NULL)
        json_object_set_new(e, "error_type", json_string(etype));
    if (e != NULL && emsg != NULL) {
        size_t n = strnlen(emsg, 512);

        while (n > 0 && ((unsigned char)emsg[n] & 0xc0) == 0x80) /* whole UTF-8 sequences */
            n--;
        json_object_set_new(e, "error_message", json_stringn(emsg, n));
    }
    if (e != NULL)
        json_array_append_new(h, e);
    s = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    if (s != NULL) {
        free(ev->row.history);
        ev->row.history = s;
    }
}

/* ---- store completions -------------------------------------------------------------------- */

/* Queue JOB for the store: it goes at the end of this loop turn (asyncq_flush()). */
static void submit(struct asyncq *q, struct aq_job *job,
                   void (*complete)(struct asyncq *, struct aq_job *))
{
    static const struct timeval now = {0, 0};

    job->complete = complete;
    job->next = NULL;
    if (q->turn_tail != NULL) {
        q->turn_tail->next = job;
    } else {
        q->turn_head = job;
        evtimer_add(q->turn_ev, &now); /* in case the loop's owner does not call asyncq_flush() */
    }
    q->turn_tail = job;
}

/* Hand the lazy deletes and this turn's jobs to the store, in that order, as one list. */
static void hand_over(struct asyncq *q)
{
    struct aq_job *head = q->turn_head;

    if (q->lazy_head != NULL) {
        q->lazy_tail->next = head;
        head = q->lazy_head;
    }
    if (head == NULL)
        return;
    q->turn_head = q->turn_tail = NULL;
    q->lazy_head = q->lazy_tail = NULL;
    q->n_lazy = 0;
    evtimer_del(q->turn_ev);
    evtimer_del(q->lazy_ev);
    q->sops->submit(q->store, head);
}

void asyncq_flush(struct asyncq *q)
{
    /* The lazy deletes ride along: one hand-over, one wake-up, one transaction. */
    if (q != NULL && q->turn_head != NULL)
        hand_over(q);
}

static void turn_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    asyncq_flush(arg);
}

static void lazy_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hand_over(arg);
}

/* Queue JOB (a DELETE nobody waits for) to ride along with the next submit(). */
static void submit_lazy(struct asyncq *q, struct aq_job *job)
{
    static const struct timeval flush_tv = {0, LAZY_FLUSH_MS * 1000};

    job->complete = NULL;
    job->ctx = NULL;
    job->next = NULL;
    if (q->lazy_tail != NULL)
        q->lazy_tail->next = job;
    else
        q->lazy_head = job;
    q->lazy_tail = job;
    if (++q->n_lazy >= LAZY_MAX)
        hand_over(q);
    else if (q->n_lazy == 1)
        evtimer_add(q->lazy_ev, &flush_tv);
}

static void efd_cb(evutil_socket_t fd, short what, void *arg)
{
    struct asyncq *q = arg;
    uint64_t n;
    struct aq_job *job;

    if (read(q->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        log_err("[asyncq] eventfd read: %s", strerror(errno));
    job = q->sops->take_done(q->store);
    while (job != NULL) {
        struct aq_job *next = job->next;

        job->next = NULL;
        if (job->rc != 0 && job->kind != AQJ_INSERT)
            q->stats.store_errors++;
        if (job->kind == AQJ_INTAKE)
            intake(q, job);
        else if (job->complete != NULL)
            job->complete(q, job);
        aq_job_free(job);
        job = next;
    }
    /* Draining: report "full", so a shared store stops taking events this broker won't run. */
    if (q->sops->note_held != NULL)
        q->sops->note_held(q->store, q->draining ? UINT_MAX : q->stats.queued);
}

/* ---- scheduling --------------------------------------------------------------------------- */

static void ready_push(struct aq_ev *ev)
{
    struct aq_fn *af = ev->af;

    ev->state = AQ_READY;
    ev->next_ready = NULL;
    if (af->ready_tail != NULL)
        af->ready_tail->next_ready = ev;
    else
        af->ready_head = ev;
    af->ready_tail = ev;
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct asyncq *q = arg;
    int64_t now = wall_ms();

    while (q->n_heap > 0 && q->heap[0]->row.next_ms <= now && !q->draining) {
        struct aq_ev *ev = q->heap[0];

        heap_remove(q, ev);
        if (ev->pending != 0) {
            aq_deliver(ev);
        } else {
            ready_push(ev);
            aq_pump(q, ev->af);
        }
    }
    timer_rearm(q);
}

static void slot_cb(void *arg)
{
    struct asyncq *q = arg;

    for (size_t i = 0; i < q->n_fns; i++) {
        if (q->fns[i]->ready_head != NULL)
            aq_pump(q, q->fns[i]);
    }
}

/* ---- outcomes ----------------------------------------------------------------------------- */

static void finish_done(struct asyncq *q, struct aq_job *job)
{
    struct aq_ev *ev = job->ctx;

    if (job->dead != NULL && job->rc == 0)
        q->stats.dead_letters++;
    aq_ev_free(ev);
}

/* The event is done: remove it from the store (keeping a dead letter when DEAD is set). EV is
 * freed now, or (with DEAD) when the store has the dead letter; either way the caller must not
 * touch it after this call. */
static void aq_finish(struct aq_ev *ev, struct aq_dead *dead)
{
    struct aq_job *job;

    if (dead == NULL) {
        /* Only the row's address is needed: no copies of its strings. */
        job = calloc(1, sizeof(*job));
        if (job != NULL) {
            job->kind = AQJ_DELETE;
            memcpy(job->ev.id, ev->row.id, sizeof(job->ev.id));
            job->ev.rowid = ev->row.rowid;
            submit_lazy(ev->q, job);
        } else {
            log_err("[asyncq] out of memory finishing event %s; it runs again after a restart",
                    ev->row.id);
        }
        aq_ev_free(ev);
        return;
    }
    job = job_for(ev, AQJ_DELETE, 1);
    ev->state = AQ_FINISHING;
    if (job == NULL) {
        /* Out of memory: the event stays stored and runs again after a restart. */
        log_err("[asyncq] out of memory finishing event %s", ev->row.id);
        free(dead->condition);
        free(dead->error_type);
        free(dead->error_message);
        free(dead);
        aq_ev_free(ev);
        return;
    }
    job->dead = dead;
    submit(ev->q, job, finish_done);
}

static void outcome_saved(struct asyncq *q, struct aq_job *job)
{
    struct aq_ev *ev = job->ctx;

    if (job->dead != NULL && job->rc == 0)
        q->stats.dead_letters++;
    /* Stored (write jobs other than INSERT are retried by the store until they are). */
    aq_deliver(ev);
}

/* The JSON value of TEXT, or TEXT as a JSON string when it is not JSON; never NULL. */
static json_t *json_or_string(const char *text, size_t len)
{
    json_t *j = text != NULL ? json_loadb(text, len, JSON_DECODE_ANY, NULL) : NULL;

    if (j == NULL)
        j = text != NULL ? json_stringn(text, len) : json_null();
    return j;
}

/* Lambda's destination record (lambda-semantics.md 4.3). Returns new text or NULL. */
static char *build_record(struct aq_ev *ev, const char *condition, int success)
{
    char ts[40], arn[400];
    json_t *rec, *resp = NULL;
    char *s;

    time_iso8601(ts, (uint64_t)wall_ms());
    /* A version's ARN carries its qualifier already; $LATEST's does not. */
    if (strcmp(function_version_name(ev->af->fn), "$LATEST") == 0)
        snprintf(arn, sizeof(arn), "%s:$LATEST", function_arn(ev->af->fn));
    else
        snprintf(arn, sizeof(arn), "%s", function_arn(ev->af->fn));
    rec = json_pack("{s:s,s:s,s:{s:s,s:s,s:s,s:i},s:o}", "version", "1.0", "timestamp", ts,
                    "requestContext", "requestId", ev->row.id, "functionArn", arn, "condition",
                    condition, "approximateInvokeCount", ev->row.attempts, "requestPayload",
                    json_or_string(ev->row.payload, ev->row.len));
    if (rec == NULL)
        return NULL;
    if (ev->row.attempts > 0 && ev->last_code == 200) {
        resp = json_pack("{s:i,s:s}", "statusCode", 200, "executedVersion",
                         function_version_name(ev->af->fn));
        if (!success && resp != NULL)
            json_object_set_new(resp, "functionError", json_string("Unhandled"));
        json_object_set_new(rec, "responseContext", resp);
        if (ev->last_body != NULL)
            json_object_set_new(rec, "responsePayload",
                                json_or_string(ev->last_body, strlen(ev->last_body)));
        else if (ev->last_error_type != NULL)
            json_object_set_new(rec, "responsePayload",
                                json_pack("{s:s,s:s}", "errorType", ev->last_error_type,
                                          "errorMessage",
                                          ev->error_message ? ev->error_message : ""));
    } else if (ev->last_code != 0) {
        /* No function response to report: the last try was throttled or failed to start. */
        json_object_set_new(rec, "responseContext",
                            json_pack("{s:i,s:s}", "statusCode", ev->last_code,
                                      "executedVersion", "$LATEST"));
    }
    s = json_dumps(rec, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(rec);
    return s;
}

/* The outcome as stored (state 1): what remains to deliver, and what to deliver. */
static char *outcome_json(const struct aq_ev *ev)
{
    json_t *o = json_pack("{s:i,s:i}", "pending", (int)ev->pending, "error_code",
                          ev->last_code ? ev->last_code : 200);
    char *s;

    if (o == NULL)
        return NULL;
    if (ev->record != NULL)
        json_object_set_new(o, "record", json_string(ev->record));
    if (ev->error_message != NULL)
        json_object_set_new(o, "error_message", json_string(ev->error_message));
    s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/*
 * Record EV's outcome and deliver it: SUCCESS (condition "Success") or a failure with
 * CONDITION. Frees nothing the caller holds.
 */
static void aq_outcome(struct aq_ev *ev, int success, const char *condition)
{
    struct aq_fn *af = ev->af;
    struct asyncq *q = ev->q;
    struct aq_dead *dead = NULL;
    struct aq_job *job;

    ev->pending = 0;
    if (success) {
        q->stats.succeeded++;
        if (af->on_success.uri != NULL)
            ev->pending |= AQ_D_SUCCESS;
    } else {
        q->stats.failed++;
        if (af->on_failure.uri != NULL)
            ev->pending |= AQ_D_FAILURE;
        if (af->dead_letter.uri != NULL)
            ev->pending |= AQ_D_DLQ;
        log_warn("[function:%s] event %s failed for good: %s after %d attempt(s)%s%s",
                 af->key, ev->row.id, condition, ev->row.attempts,
                 ev->error_message ? ": " : "", ev->error_message ? ev->error_message : "");
        if (q->cfg->broker.keep_dead_letters) {
            dead = calloc(1, sizeof(*dead));
            if (dead != NULL) {
                dead->condition = strdup(condition);
                dead->error_type = ev->last_error_type ? strdup(ev->last_error_type) : NULL;
                dead->error_message = ev->error_message ? strdup(ev->error_message) : NULL;
                dead->failed_ms = wall_ms();
            }
        }
    }
    if (ev->pending & (AQ_D_SUCCESS | AQ_D_FAILURE)) {
        ev->record = build_record(ev, success ? "Success" : condition, success);
        if (ev->record == NULL)
            log_err("[asyncq] out of memory building the record of %s", ev->row.id);
    }
    if (ev->pending == 0) {
        aq_finish(ev, dead);
        return;
    }
    free(ev->row.outcome);
    ev->row.outcome = outcome_json(ev);
    ev->row.state = 1;
    ev->state = AQ_DELIVERING;
    job = job_for(ev, AQJ_OUTCOME, dead != NULL);
    if (job == NULL || ev->row.outcome == NULL) {
        log_err("[asyncq] out of memory storing the outcome of %s; delivering anyway",
                ev->row.id);
        aq_job_free(job);
        if (dead != NULL) {
            free(dead->condition);
            free(dead->error_type);
            free(dead->error_message);
            free(dead);
        }
        aq_deliver(ev);
        return;
    }
    job->dead = dead;
    submit(q, job, outcome_saved);
}

/* ---- deliveries --------------------------------------------------------------------------- */

struct aq_send {
    struct aq_ev *ev;
    unsigned bit;
};

static void delivery_backoff(struct aq_ev *ev)
{
    int64_t d = DELIVERY_BACKOFF_MIN_MS;

    for (int i = 1; i < ev->delivery_failures && d < DELIVERY_BACKOFF_MAX_MS; i++)
        d *= 2;
    if (d > DELIVERY_BACKOFF_MAX_MS)
        d = DELIVERY_BACKOFF_MAX_MS;
    ev->row.next_ms = wall_ms() + jitter(d);
    if (aq_wait(ev) != 0)
        log_err("[asyncq] out of memory scheduling a delivery retry of %s", ev->row.id);
}

static void delivery_done(void *arg, int rc, const char *errmsg)
{
    struct aq_send *snd = arg;
    struct aq_ev *ev = snd->ev;
    unsigned bit = snd->bit;
    struct asyncq *q = ev->q;

    free(snd);
    ev->sending &= ~bit;
    if (rc == 0) {
        ev->pending &= ~bit;
        q->stats.dest_sent++;
    } else {
        q->stats.dest_failures++;
        ev->delivery_failures++;
        if (rc != SY_ECANCELED)
            log_warn("[function:%s] event %s: %s delivery failed (attempt %d): %s; kept and "
                     "retried",
                     ev->af->key, ev->row.id,
                     bit == AQ_D_SUCCESS   ? "on_success"
                     : bit == AQ_D_FAILURE ? "on_failure"
                                           : "dead_letter",
                     ev->delivery_failures, errmsg ? errmsg : sy_strerror(rc));
    }
    if (ev->sending != 0)
        return;
    if (ev->pending == 0) {
        aq_finish(ev, NULL);
        return;
    }
    if (q->draining) /* stays stored in state 1: delivered after the restart */
        return;
    delivery_backoff(ev);
}

static void delivery_put_done(void *arg, int rc, const char *errmsg)
{
    delivery_done(arg, rc, errmsg);
}

/* Start every pending delivery of EV that is not in flight. */
static void aq_deliver(struct aq_ev *ev)
{
    struct aq_fn *af = ev->af;
    struct asyncq *q = ev->q;
    static const unsigned bits[] = {AQ_D_SUCCESS, AQ_D_FAILURE, AQ_D_DLQ};

    ev->state = AQ_DELIVERING;
    if (ev->pending == 0) {
        aq_finish(ev, NULL);
        return;
    }
    if (q->draining)
        return;
    for (size_t i = 0; i < 3; i++) {
        unsigned bit = bits[i];
        const struct aq_target *tg = bit == AQ_D_SUCCESS   ? &af->on_success
                                     : bit == AQ_D_FAILURE ? &af->on_failure
                                                           : &af->dead_letter;
        const char *body = bit == AQ_D_DLQ ? ev->row.payload : ev->record;
        size_t len = bit == AQ_D_DLQ ? ev->row.len : (ev->record ? strlen(ev->record) : 0);
        struct aq_send *snd;
        int rc;

        if (!(ev->pending & bit) || (ev->sending & bit))
            continue;
        if (tg->uri == NULL || body == NULL) {
            /* The config changed since the outcome was stored, or the record is missing. */
            ev->pending &= ~bit;
            continue;
        }
        snd = malloc(sizeof(*snd));
        if (snd == NULL)
            continue;
        snd->ev = ev;
        snd->bit = bit;
        ev->sending |= bit;
        if (tg->fn_target != NULL || tg->route_head != NULL) {
            /* Lambda's function destination: an Event invoke of the target function. */
            struct function *unit =
                tg->route_head != NULL ? function_route(tg->route_head, tg->route_qual) : NULL;
            struct aq_fn *taf = tg->route_head != NULL ? (unit ? aq_fn_of(q, unit) : NULL)
                                                       : tg->fn_target;

            rc = taf == NULL ? SY_ENOENT
                             : aq_put_internal(q, taf, body, len, NULL, ev->row.trace_id, NULL,
                                               delivery_put_done, snd);
        } else {
            char code[16];
            const char *emsg = ev->error_message != NULL ? ev->error_message : "";
            struct dest_attr attrs[3] = {
                {"RequestID", ev->row.id, 0},
                {"ErrorCode", code, 1},
                {"ErrorMessage", emsg, 0},
            };
            struct dest_msg msg = {.body = body, .len = len, .key = ev->row.id};

            snprintf(code, sizeof(code), "%d", ev->last_code ? ev->last_code : 200);
            if (bit == AQ_D_DLQ) {
                msg.attrs = attrs;
                msg.n_attrs = 3;
            }
            rc = dest_send(tg->dest, &msg, delivery_done, snd);
        }
        if (rc != 0) {
            ev->sending &= ~bit;
            free(snd);
            q->stats.dest_failures++;
            ev->delivery_failures++;
        }
    }
    if (ev->sending == 0) {
        if (ev->pending == 0)
            aq_finish(ev, NULL);
        else
            delivery_backoff(ev);
    }
}

/* ---- invocations -------------------------------------------------------------------------- */

static void retry_saved(struct asyncq *q, struct aq_job *job)
{
    (void)q;
    (void)job; /* the event is already back in the heap; the store retries failed writes */
}

static void invoke_done(const struct invoke_result *res, void *arg)
{
    struct aq_ev *ev = arg;
    struct aq_fn *af = ev->af;
    struct asyncq *q = ev->q;
    const struct cfg_async *pol = &AFC(af)->async;

    if (ev->magic != AQ_EV_MAGIC)
        abort();
    af->in_flight--;
    q->stats.in_flight--;
    free(ev->last_body);
    ev->last_body = NULL;
    switch (res->status) {
    case INVOKE_OK:
        ev->row.attempts++;
        ev->last_code = 200;
        ev->throttles = 0;
        /* The response and the history only matter when a record will be written (the
         * history is kept for dead letters; a success leaves none). */
        if (af->on_success.uri != NULL) {
            ev->last_body = xstrndup(res->body, res->body_len);
            history_add(ev, "success", NULL, NULL);
        }
        aq_outcome(ev, 1, "Success");
        break;
    case INVOKE_FUNCTION_ERROR: {
        json_t *j = json_loadb(res->body, res->body_len, 0, NULL);
        const char *m = json_string_value(json_object_get(j, "errorMessage"));

        ev->row.attempts++;
        ev->last_code = 200;
        ev->throttles = 0;
        ev->last_body = xstrndup(res->body, res->body_len);
        free(ev->last_error_type);
        ev->last_error_type = strdup(res->error_type ? res->error_type : "Unhandled");
        free(ev->error_message);
        ev->error_message = m != NULL ? error_message_of(m, strlen(m))
                                      : error_message_of(res->body, res->body_len);
        json_decref(j);
        history_add(ev, "error", ev->last_error_type, ev->error_message);
        if (ev->row.attempts > pol->maximum_retry_attempts) {
            aq_outcome(ev, 0, "RetriesExhausted");
        } else {
            size_t k = (size_t)ev->row.attempts - 1;
            int delay_s = pol->n_retry_delays == 0 ? 60
                          : k < pol->n_retry_delays ? pol->retry_delays_s[k]
                                                    : pol->retry_delays_s[pol->n_retry_delays - 1];
            struct aq_job *job;

            q->stats.retries++;
            ev->row.next_ms = wall_ms() + jitter((int64_t)delay_s * 1000);
            log_info("[function:%s] event %s: attempt %d failed (%s); retry in %d s",
                     af->key, ev->row.id, ev->row.attempts, ev->last_error_type, delay_s);
            job = job_for(ev, AQJ_RETRY, 0);
            if (job != NULL)
                submit(q, job, retry_saved);
            if (aq_wait(ev) != 0)
                log_err("[asyncq] out of memory scheduling a retry of %s", ev->row.id);
        }
        break;
    }
    case INVOKE_THROTTLED:
    case INVOKE_SERVICE_ERROR:
    default: {
        int64_t d = THROTTLE_BACKOFF_MIN_MS;

        ev->last_code = res->status == INVOKE_THROTTLED ? 429 : 500;
        if (res->status != INVOKE_THROTTLED) {
            free(ev->error_message);
            ev->error_message = error_message_of(res->body, res->body_len);
        }
        ev->throttles++;
        q->stats.requeued++;
        for (int i = 1; i < ev->throttles && d < THROTTLE_BACKOFF_MAX_MS; i++)
            d *= 2;
        if (d > THROTTLE_BACKOFF_MAX_MS)
            d = THROTTLE_BACKOFF_MAX_MS;
        ev->row.next_ms = wall_ms() + jitter(d);
        if (aq_wait(ev) != 0)
            log_err("[asyncq] out of memory requeueing %s", ev->row.id);
        break;
    }
    }
    if (q->draining && q->stats.in_flight == 0 && q->drain_done != NULL)
        event_active(q->drain_ev, EV_TIMEOUT, 0);
}

/* Start EV (READY, at the head of its function's FIFO, popped by the caller). */
static void aq_run(struct aq_ev *ev)
{
    struct aq_fn *af = ev->af;
    struct asyncq *q = ev->q;
    struct invoke_req req;
    int rc;

    af_refresh(q, af);
    if (wall_ms() - ev->row.enqueued_ms > (int64_t)AFC(af)->async.maximum_event_age_s * 1000) {
        if (ev->error_message == NULL)
            ev->error_message = strdup("Event age exceeded before the event could be processed");
        aq_outcome(ev, 0, "EventAgeExceeded");
        return;
    }
    if (function_reserved(af->fn) == 0) {
        /* Lambda: a function throttled to zero sends its events straight to failure handling. */
        ev->last_code = 429;
        free(ev->error_message);
        ev->error_message = strdup("Function reserved concurrency is 0: every invocation is "
                                   "throttled");
        aq_outcome(ev, 0, "RetriesExhausted");
        return;
    }
    memset(&req, 0, sizeof(req));
    req.payload = ev->row.payload;
    req.payload_len = ev->row.len;
    req.request_id = ev->row.id;
    req.trace_id = ev->row.trace_id;
    ev->state = AQ_RUNNING;
    af->in_flight++;
    q->stats.in_flight++;
    rc = dispatcher_invoke(q->dsp, af->fn, &req, invoke_done, ev);
    if (rc == SY_ENOENT) {
        /* The function (or this version) was deleted: nothing will ever run the event. */
        af->in_flight--;
        q->stats.in_flight--;
        free(ev->error_message);
        ev->error_message = strdup("The function was deleted before the event could run");
        aq_outcome(ev, 0, "RetriesExhausted");
        return;
    }
    if (rc != 0) {
        af->in_flight--;
        q->stats.in_flight--;
        ev->row.next_ms = wall_ms() + THROTTLE_BACKOFF_MIN_MS;
        if (aq_wait(ev) != 0)
            log_err("[asyncq] out of memory requeueing %s", ev->row.id);
    }
}

/* Start as many READY events of AF as its async concurrency and the dispatcher allow. */
static void aq_pump(struct asyncq *q, struct aq_fn *af)
{
    while (af->ready_head != NULL && !q->draining && q->started) {
        struct aq_ev *ev = af->ready_head;
        int needs_slot = function_reserved(af->fn) != 0;

        if (needs_slot && (af->in_flight >= af->cap || dispatcher_capacity(q->dsp, af->fn) == 0))
            return;
        af->ready_head = ev->next_ready;
        if (af->ready_head == NULL)
            af->ready_tail = NULL;
        ev->next_ready = NULL;
        aq_run(ev);
    }
}

/* ---- the parked backlog (SQLite store) ----------------------------------------------------- */

static void refill_done(struct asyncq *q, struct aq_job *job)
{
    q->refilling = 0;
    if (job->rc != 0) {
        log_err("[asyncq] cannot read parked events back: %s", job->errmsg);
        return;
    }
    q->stats.parked = (unsigned)json_integer_value(json_object_get(job->result, "parked"));
    if (q->stats.parked == 0 && q->park_gen == (unsigned)(uintptr_t)job->ctx)
        q->parked = 0;
    adopt_rows(q, job->rows, job->n_rows);
    if (job->n_rows > 0)
        maybe_refill(q);
}

/*
 * Read parked events back once at most half the memory bound is in use: as many as fit.
 * Only for stores that park (ops->parking), never while draining or before start.
 */
static void maybe_refill(struct asyncq *q)
{
    struct aq_job *job;

    if (!q->parked || q->refilling || q->draining || !q->started ||
        !q->sops->parking || q->stats.queued > q->max_held / 2 ||
        q->held_bytes > AQ_MAX_HELD_BYTES / 2)
        return;
    job = calloc(1, sizeof(*job));
    if (job == NULL)
        return;
    job->kind = AQJ_REFILL;
    job->limit = q->max_held - q->stats.queued;
    job->bytes = AQ_MAX_HELD_BYTES - q->held_bytes;
    job->ctx = (void *)(uintptr_t)q->park_gen;
    q->refilling = 1;
    submit(q, job, refill_done);
}

/* ---- put ---------------------------------------------------------------------------------- */

static void put_done(struct asyncq *q, struct aq_job *job)
{
    struct aq_ev *ev = job->ctx;
    asyncq_put_fn *done = ev->put_done;
    void *arg = ev->put_arg;

    ev->put_done = NULL;
    ev->put_arg = NULL;
    if (job->rc != 0) {
        q->stats.store_errors++;
        aq_ev_free(ev);
        if (done != NULL)
            done(arg, job->rc, job->errmsg);
        return;
    }
    q->stats.enqueued++;
    ev->row.rowid = job->ev.rowid; /* how the store finds it from now on */
    if (ev->row.state == 2) {
        /* Stored parked (memory bound reached): it is read back when there is room. */
        q->stats.parked++;
        aq_ev_free(ev);
        if (done != NULL)
            done(arg, 0, NULL);
        return;
    }
    if (q->sops->intake) {
        /* Shared queue: the event is stored for every broker sharing it; whichever reads it
         * first holds it (it comes back by INTAKE, possibly to this broker). */
        aq_ev_free(ev);
        if (done != NULL)
            done(arg, 0, NULL);
        return;
    }
    /* Stored: schedule it (its callback may start more work, so schedule first). */
    if (q->started && !q->draining) {
        ready_push(ev);
    } else if (aq_wait(ev) != 0) {
        log_err("[asyncq] out of memory scheduling %s (it runs after a restart)", ev->row.id);
    }
    if (done != NULL)
        done(arg, 0, NULL);
    if (ev->state == AQ_READY)
        aq_pump(q, ev->af);
}

static int aq_put_internal(struct asyncq *q, struct aq_fn *af, const char *payload, size_t len,
                           const char *request_id, const char *trace_id, char *id_out,
                           asyncq_put_fn *done, void *arg)
{
    struct aq_ev *ev;
    struct aq_job *job;
    char id[40];
    int park;

    if (request_id == NULL || request_id[0] == '\0') {
        fastid_uuid4(id);
        request_id = id;
    }
    park = q->sops->parking &&
           (q->stats.queued >= q->max_held || q->held_bytes + len > AQ_MAX_HELD_BYTES);
    ev = aq_ev_new(q, af);
    if (ev == NULL)
        return SY_ENOMEM;
    snprintf(ev->row.id, sizeof(ev->row.id), "%s", request_id);
    if (park) {
        ev->row.state = 2;
        q->parked = 1;
        q->park_gen++;
    }
    ev->row.fn = strdup(af->key);
    ev->row.payload = xstrndup(payload, len);
    ev->row.len = len;
    q->held_bytes += len;
    ev->row.trace_id = trace_id != NULL ? strdup(trace_id) : NULL;
    ev->row.enqueued_ms = wall_ms();
    ev->row.next_ms = ev->row.enqueued_ms;
    ev->state = AQ_COMMITTING;
    ev->put_done = done;
    ev->put_arg = arg;
    job = ev->row.fn != NULL && ev->row.payload != NULL ? job_for(ev, AQJ_INSERT, 1) : NULL;
    if (job == NULL) {
        aq_ev_free(ev);
        return SY_ENOMEM;
    }
    if (id_out != NULL)
        memcpy(id_out, ev->row.id, 37);
    submit(q, job, put_done);
    return 0;
}

int asyncq_put(struct asyncq *q, struct function *fn, const char *payload, size_t len,
               const char *request_id, const char *trace_id, char *request_id_out,
               asyncq_put_fn *done, void *arg)
{
    struct aq_fn *af = aq_fn_of(q, fn);

    if (af == NULL)
        return SY_ENOENT;
    if (q->draining)
        return SY_ESTATE;
    return aq_put_internal(q, af, payload, len, request_id, trace_id, request_id_out, done, arg);
}

void asyncq_cancel(struct asyncq *q, void *arg)
{
    for (struct aq_ev *ev = q->all; ev != NULL; ev = ev->next_all) {
        if (ev->put_arg == arg && ev->put_done != NULL) {
            ev->put_done = NULL;
            ev->put_arg = NULL;
        }
    }
    for (struct aq_req *r = q->reqs; r != NULL; r = r->next) {
        if (r->arg == arg)
            r->done = NULL;
    }
}

/* ---- dead-letter operations --------------------------------------------------------------- */

static void req_unlink(struct asyncq *q, struct aq_req *r)
{
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        q->reqs = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
}

/*
 * Rows the store handed over (recovery, redrive, intake from a shared queue) -> events in
 * memory: WAITING until next_ms, or DELIVERING for stored outcomes (state 1). Takes what the
 * rows own. Returns how many were outcomes; *ORPHANS counts rows of undeclared functions.
 */
static size_t adopt_rows_count(struct asyncq *q, struct aq_row *rows, size_t n, size_t *orphans)
{
    size_t n_out = 0;

    for (size_t i = 0; i < n; i++) {
        struct aq_row *row = &rows[i];
        struct aq_fn *af = aq_fn_by_name(q, row->fn);
        struct aq_ev *ev;

        if (af == NULL) {
            (*orphans)++;
            continue;
        }
        ev = aq_ev_new(q, af);
        if (ev == NULL) {
            log_err("[asyncq] out of memory adopting %s (it runs after a restart)", row->id);
            continue;
        }
        ev->row = *row;
        memset(row, 0, sizeof(*row));
        q->held_bytes += ev->row.len;
        if (ev->row.state == 1 && ev->row.outcome != NULL) {
            json_t *o = json_loads(ev->row.outcome, 0, NULL);
            const char *rec = json_string_value(json_object_get(o, "record"));
            const char *em = json_string_value(json_object_get(o, "error_message"));

            ev->pending = (unsigned)json_integer_value(json_object_get(o, "pending"));
            ev->last_code = (int)json_integer_value(json_object_get(o, "error_code"));
            ev->record = rec != NULL ? strdup(rec) : NULL;
            ev->error_message = em != NULL ? strdup(em) : NULL;
            json_decref(o);
            n_out++;
        } else {
            ev->row.state = 0;
        }
        if (ev->row.next_ms > wall_ms() + 86400000LL) /* a clock jump: do not wait a day */
            ev->row.next_ms = wall_ms();
        if (aq_wait(ev) != 0)
            log_err("[asyncq] out of memory scheduling %s", ev->row.id);
    }
    return n_out;
}

static void adopt_rows(struct asyncq *q, struct aq_row *rows, size_t n)
{
    size_t orphans = 0;

    adopt_rows_count(q, rows, n, &orphans);
    if (orphans > 0)
        log_warn("[asyncq] %zu event(s) belong to functions this config does not declare; "
                 "they stay stored untouched",
                 orphans);
}

static void dlq_done(struct asyncq *q, struct aq_job *job)
{
    struct aq_req *r = job->ctx;

    if (job->kind == AQJ_DLQ_REDRIVE && job->rc == 0) {
        json_int_t n = json_integer_value(json_object_get(job->result, "redriven"));

        q->stats.dead_letters -= (unsigned)n <= q->stats.dead_letters ? (unsigned)n
                                                                        : q->stats.dead_letters;
        /* No rows come back: a parking store parked them, a shared one hands them out by
         * INTAKE like any new event. */
        if (q->sops->parking && n > 0) {
            /* Redriven events were stored parked: read them back like any backlog. */
            q->parked = 1;
            q->park_gen++;
            q->stats.parked += (unsigned)n;
            maybe_refill(q);
        }
    } else if (job->kind == AQJ_DLQ_PURGE && job->rc == 0) {
        json_int_t n = json_integer_value(json_object_get(job->result, "purged"));

        q->stats.dead_letters -= (unsigned)n <= q->stats.dead_letters ? (unsigned)n
                                                                        : q->stats.dead_letters;
    }
    req_unlink(q, r);
    if (r->done != NULL)
        r->done(r->arg, job->rc, job->result, job->rc != 0 ? job->errmsg : NULL);
    free(r);
}

static int dlq_submit(struct asyncq *q, enum aq_job_kind kind, const char *fn, const char *id,
                      size_t limit, asyncq_json_fn *done, void *arg)
{
    struct aq_job *job = calloc(1, sizeof(*job));
    struct aq_req *r = calloc(1, sizeof(*r));

    if (job == NULL || r == NULL)
        goto nomem;
    job->kind = kind;
    job->limit = limit;
    if (fn != NULL && (job->q_fn = strdup(fn)) == NULL)
        goto nomem;
    if (id != NULL && (job->q_id = strdup(id)) == NULL)
        goto nomem;
    r->done = done;
    r->arg = arg;
    r->next = q->reqs;
    if (q->reqs != NULL)
        q->reqs->prev = r;
    q->reqs = r;
    job->ctx = r;
    submit(q, job, dlq_done);
    return 0;
nomem:
    aq_job_free(job);
    free(r);
    return SY_ENOMEM;
}

int asyncq_dlq_list(struct asyncq *q, const char *fn, size_t limit, asyncq_json_fn *done,
                    void *arg)
{
    return dlq_submit(q, AQJ_DLQ_LIST, fn, NULL, limit, done, arg);
}

int asyncq_dlq_show(struct asyncq *q, const char *id, asyncq_json_fn *done, void *arg)
{
    return dlq_submit(q, AQJ_DLQ_SHOW, NULL, id, 1, done, arg);
}

int asyncq_dlq_redrive(struct asyncq *q, const char *fn, const char *id, size_t limit,
                       asyncq_json_fn *done, void *arg)
{
    if (q->draining)
        return SY_ESTATE;
    return dlq_submit(q, AQJ_DLQ_REDRIVE, fn, id, limit, done, arg);
}

int asyncq_dlq_purge(struct asyncq *q, const char *fn, const char *id, asyncq_json_fn *done,
                     void *arg)
{
    return dlq_submit(q, AQJ_DLQ_PURGE, fn, id, 0, done, arg);
}

static void count_done(struct asyncq *q, struct aq_job *job)
{
    if (job->rc == 0)
        q->stats.dead_letters =
            (unsigned)json_integer_value(json_object_get(job->result, "total"));
}

/* ---- open / start / drain / close --------------------------------------------------------- */

/* The dest for URI, opened once per distinct URI. Returns 0 or SY_E* (ERR filled). */
static int target_open(struct asyncq *q, const char *uri, struct aq_target *tg,
                       struct sy_error *err)
{
    memset(tg, 0, sizeof(*tg));
    if (uri == NULL)
        return 0;
    tg->uri = strdup(uri);
    if (tg->uri == NULL) {
        sy_error_set(err, "out of memory");
        return SY_ENOMEM;
    }
    if (strncmp(uri, "function:", 9) == 0) {
        const char *colon = strchr(uri + 9, ':');
        char name[80];
        struct function *head;

        /* An alias is routed at each delivery (it may move, or split by weight). */
        snprintf(name, sizeof(name), "%.*s", colon ? (int)(colon - uri - 9) : 70, uri + 9);
        head = colon != NULL ? dispatcher_function(q->dsp, name) : NULL;
        if (head != NULL && function_version(head, colon + 1) == NULL &&
            function_route(head, colon + 1) != NULL) {
            tg->route_head = head;
            tg->route_qual = strdup(colon + 1);
            if (tg->route_qual == NULL) {
                target_clear(tg);
                sy_error_set(err, "out of memory");
                return SY_ENOMEM;
            }
            return 0;
        }
        tg->fn_target = aq_fn_by_name(q, uri + 9);
        if (tg->fn_target == NULL) {
            sy_error_set(err, "%s: no such function", uri);
            target_clear(tg);
            return SY_ENOENT;
        }
        return 0;
    }
    for (size_t i = 0; i < q->n_dests; i++) {
        if (strcmp(q->dests[i]->uri, uri) == 0) {
            tg->dest = q->dests[i];
            return 0;
        }
    }
    {
        struct dest **nd = realloc(q->dests, (q->n_dests + 1) * sizeof(*nd));
        int rc;

        if (nd == NULL) {
            sy_error_set(err, "out of memory");
            target_clear(tg);
            return SY_ENOMEM;
        }
        q->dests = nd;
        rc = dest_open(q->base, uri, &q->dests[q->n_dests], err);
        if (rc != 0) {
            target_clear(tg);
            return rc;
        }
        tg->dest = q->dests[q->n_dests++];
    }
    return 0;
}

static void drain_ev_cb(evutil_socket_t fd, short what, void *arg)
{
    struct asyncq *q = arg;
    void (*done)(void *) = q->drain_done;

    if (done == NULL || q->stats.in_flight != 0)
        return;
    q->drain_done = NULL;
    done(q->drain_arg);
}

/* The events the store held at start-up. */
static void recover(struct asyncq *q)
{
    size_t orphans = 0, n_out;

    n_out = adopt_rows_count(q, q->recovered, q->n_recovered, &orphans);
    if (q->n_recovered > 0)
        log_info("[asyncq] recovered %zu queued event(s) and %zu outcome(s) awaiting delivery",
                 q->n_recovered - n_out - orphans, n_out);
    if (orphans > 0)
        log_warn("[asyncq] %zu stored event(s) belong to functions this config does not "
                 "declare; they stay stored untouched",
                 orphans);
    for (size_t i = 0; i < q->n_recovered; i++)
        aq_row_clear(&q->recovered[i]);
    free(q->recovered);
    q->recovered = NULL;
    q->n_recovered = 0;
}

struct asyncq *asyncq_open(struct event_base *base, const struct cfg *cfg,
                           struct dispatcher *dsp, struct sy_error *err)
{
    struct asyncq *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        sy_error_set(err, "out of memory");
        return NULL;
    }
    q->magic = ASYNCQ_MAGIC;
    q->base = base;
    q->cfg = cfg;
    q->dsp = dsp;
    q->efd = -1;
    q->max_held = (unsigned)cfg->broker.async_max_held;
    q->parked = 1; /* the store may hold parked events from an earlier run: look once */
    srandom((unsigned)(wall_ms() ^ getpid()));
    /* Every function of the file gets its entry now, so a destination that cannot open
     * stops the start (later ones, made on first use, log it instead). */
    for (size_t i = 0; i < dispatcher_function_count(dsp); i++) {
        struct aq_fn *af = aq_fn_of(q, dispatcher_function_at(dsp, i));

        if (af == NULL) {
            sy_error_set(err, "out of memory");
            goto fail;
        }
        if (af->gen == 0 && af_sync(q, af, err) != 0)
            goto fail;
    }
    q->sops = cfg->broker.async_queue != NULL && strncmp(cfg->broker.async_queue, "redis://", 8) == 0
                  ? &aq_redis_ops
                  : &aq_sqlite_ops;
    q->store = q->sops->open(cfg, &q->recovered, &q->n_recovered, err);
    if (q->store == NULL)
        goto fail;
    /* The units met before the store was open (the API's functions among them). */
    for (size_t i = 0; q->sops->declare != NULL && i < q->n_fns; i++)
        q->sops->declare(q->store, q->fns[i]->key);
    q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->efd < 0) {
        sy_error_set(err, "eventfd: %s", strerror(errno));
        goto fail;
    }
    q->efd_ev = event_new(base, q->efd, EV_READ | EV_PERSIST, efd_cb, q);
    /* Completions (202s among them) first in a turn: see broker.c. */
    if (q->efd_ev != NULL)
        event_priority_set(q->efd_ev, 0);
    q->timer_ev = evtimer_new(base, timer_cb, q);
    q->drain_ev = event_new(base, -1, 0, drain_ev_cb, q);
    q->lazy_ev = evtimer_new(base, lazy_cb, q);
    q->turn_ev = evtimer_new(base, turn_cb, q);
    if (q->efd_ev == NULL || q->timer_ev == NULL || q->drain_ev == NULL || q->lazy_ev == NULL ||
        q->turn_ev == NULL ||
        event_add(q->efd_ev, NULL) != 0) {
        sy_error_set(err, "cannot set up the async queue's events");
        goto fail;
    }
    if (q->sops->start(q->store, q->efd, err) != 0)
        goto fail;
    recover(q);
    dispatcher_set_slot_cb(dsp, slot_cb, q);
    {
        struct aq_job *job = calloc(1, sizeof(*job));

        if (job != NULL) {
            job->kind = AQJ_DLQ_COUNT;
            submit(q, job, count_done);
        }
    }
    return q;
fail:
    asyncq_close(q);
    return NULL;
}

void asyncq_start(struct asyncq *q)
{
    q->started = 1;
    timer_rearm(q);
    maybe_refill(q);
}

void asyncq_drain(struct asyncq *q, void (*done)(void *arg), void *arg)
{
    q->draining = 1;
    q->drain_done = done;
    q->drain_arg = arg;
    evtimer_del(q->timer_ev);
    if (q->sops->note_held != NULL)
        q->sops->note_held(q->store, UINT_MAX);
    /* READY events go back to waiting: they stay stored and run after the restart. */
    for (size_t i = 0; i < q->n_fns; i++) {
        struct aq_fn *af = q->fns[i];

        while (af->ready_head != NULL) {
            struct aq_ev *ev = af->ready_head;

            af->ready_head = ev->next_ready;
            ev->next_ready = NULL;
            if (aq_wait(ev) != 0)
                log_err("[asyncq] out of memory parking %s", ev->row.id);
        }
        af->ready_tail = NULL;
    }
    log_info("[asyncq] draining: %u async invocation(s) in flight, %u event(s) held",
             q->stats.in_flight, q->stats.queued);
    if (q->stats.in_flight == 0)
        event_active(q->drain_ev, EV_TIMEOUT, 0);
}

void asyncq_stats(const struct asyncq *q, struct asyncq_stats *out)
{
    *out = q->stats;
}

void asyncq_close(struct asyncq *q)
{
    if (q == NULL)
        return;
    q->draining = 1;
    if (q->dsp != NULL) {
        dispatcher_set_slot_cb(q->dsp, NULL, NULL);
        for (struct aq_ev *ev = q->all; ev != NULL; ev = ev->next_all) {
            if (ev->state == AQ_RUNNING)
                dispatcher_cancel(q->dsp, ev);
        }
    }
    /* Destinations first: their pending sends complete (cancelled) while events still exist. */
    for (size_t i = 0; i < q->n_dests; i++)
        dest_destroy(q->dests[i]);
    free(q->dests);
    q->dests = NULL;
    q->n_dests = 0;
    if (q->store != NULL) {
        struct aq_job *job;

        hand_over(q);
        q->sops->stop(q->store, CLOSE_FLUSH_MS);
        /* Last completions: run them for their effects on callers, then drop them. */
        job = q->sops->take_done(q->store);
        while (job != NULL) {
            struct aq_job *next = job->next;

            if (job->kind == AQJ_INSERT ||
                (job->kind >= AQJ_DLQ_LIST && job->kind != AQJ_INTAKE &&
                 job->kind != AQJ_REFILL)) {
                job->next = NULL;
                if (job->complete != NULL)
                    job->complete(q, job);
            }
            aq_job_free(job);
            job = next;
        }
        q->sops->destroy(q->store);
    }
    while (q->all != NULL)
        aq_ev_free(q->all);
    while (q->reqs != NULL) {
        struct aq_req *r = q->reqs;

        q->reqs = r->next;
        free(r);
    }
    for (size_t i = 0; i < q->n_recovered; i++)
        aq_row_clear(&q->recovered[i]);
    free(q->recovered);
    if (q->efd_ev != NULL)
        event_free(q->efd_ev);
    if (q->timer_ev != NULL)
        event_free(q->timer_ev);
    if (q->drain_ev != NULL)
        event_free(q->drain_ev);
    if (q->lazy_ev != NULL)
        event_free(q->lazy_ev);
    if (q->turn_ev != NULL)
        event_free(q->turn_ev);
    /* Only left when the store never opened. */
    aq_job_list_free(q->lazy_head);
    aq_job_list_free(q->turn_head);
    if (q->efd >= 0)
        close(q->efd);
    free(q->heap);
    for (size_t i = 0; i < q->n_fns; i++) {
        target_clear(&q->fns[i]->on_success);
        target_clear(&q->fns[i]->on_failure);
        target_clear(&q->fns[i]->dead_letter);
        free(q->fns[i]->key);
        free(q->fns[i]);
    }
    free(q->fns);
    q->magic = 0;
    free(q);
}
