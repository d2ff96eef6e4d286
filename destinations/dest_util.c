/*
 * destinations/dest_util.c - helpers shared by the destination kinds. See dest_int.h.
 */
#include "dest_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

/* ---- small utilities ------------------------------------------------------------------- */

void dest_util_str_copy(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);

    memcpy(dst, src, n);
    dst[n] = '\0';
}

int64_t dest_util_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool dest_util_numeric_host(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* ---- reconnect backoff ------------------------------------------------------------------ */

int dest_util_backoff_next(int *backoff_ms, int max_ms)
{
    int delay = *backoff_ms;

    *backoff_ms = delay * 2 > max_ms ? max_ms : delay * 2;
    return delay;
}

/* ---- state strings ---------------------------------------------------------------------- */

const char *dest_util_state_retry(char *buf, size_t size, int64_t left_ms, const char *reason)
{
    snprintf(buf, size, "reconnecting in %lld ms: %s", (long long)(left_ms > 0 ? left_ms : 0),
             reason);
    return buf;
}

const char *dest_util_state_reason(char *buf, size_t size, const char *prefix, const char *reason)
{
    snprintf(buf, size, "%s: %s", prefix, reason);
    return buf;
}

/* ---- DONE delivery ---------------------------------------------------------------------- */

void dest_util_deliver(struct dest *d, dest_done_fn *done, void *arg, int rc, const char *err)
{
    if (rc == 0)
        d->sent++;
    else
        d->failures++;
    done(arg, rc, rc == 0 ? NULL : err);
}

void dest_util_doneq_init(struct dest_util_doneq *q, struct dest *d,
                          void (*free_send)(struct dest_util_send *us))
{
    q->d = d;
    TAILQ_INIT(&q->completed);
    q->n_completed = 0;
    q->depth = 0;
    q->closed = false;
    q->free_send = free_send;
}

void dest_util_doneq_fini(struct dest_util_doneq *q)
{
    evhelp_free(&q->ev);
}

void dest_util_doneq_vpush(struct dest_util_doneq *q, struct dest_util_send *us, int rc,
                           const char *fmt, va_list ap)
{
    us->rc = rc;
    us->err[0] = '\0';
    if (fmt != NULL)
        vsnprintf(us->err, sizeof(us->err), fmt, ap);
    TAILQ_INSERT_TAIL(&q->completed, us, link);
    q->n_completed++;
    if (q->ev != NULL)
        event_active(q->ev, EV_READ, 0);
}

void dest_util_doneq_push(struct dest_util_doneq *q, struct dest_util_send *us, int rc,
                          const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    dest_util_doneq_vpush(q, us, rc, fmt, ap);
    va_end(ap);
}

/* DONE for US (taken off `completed`), after freeing it: DONE may re-enter the kind. */
static void doneq_finish(struct dest_util_doneq *q, struct dest_util_send *us)
{
    dest_done_fn *done = us->done;
    void *arg = us->arg;
    int rc = us->rc;
    char err[sizeof(us->err)];

    memcpy(err, us->err, sizeof(err));
    if (q->on_finish != NULL)
        q->on_finish(q->d, rc, err);
    q->free_send(us);
    dest_util_deliver(q->d, done, arg, rc, err);
}

bool dest_util_doneq_run(struct dest_util_doneq *q)
{
    size_t n = q->n_completed;

    q->depth++;
    while (n-- > 0 && !q->closed) {
        struct dest_util_send *us = TAILQ_FIRST(&q->completed);

        if (us == NULL)
            break;
        TAILQ_REMOVE(&q->completed, us, link);
        q->n_completed--;
        doneq_finish(q, us);
    }
    q->depth--;
    return q->closed && q->depth == 0;
}

bool dest_util_doneq_close(struct dest_util_doneq *q)
{
    struct dest_util_send *us;

    q->closed = true;
    q->depth++;
    while ((us = TAILQ_FIRST(&q->completed)) != NULL) {
        TAILQ_REMOVE(&q->completed, us, link);
        q->n_completed--;
        doneq_finish(q, us);
    }
    q->depth--;
    return q->depth == 0;
}

void dest_util_outcome_settle(struct dest_util_outcome *o, int rc, const char *errmsg)
{
    if (o->has_outcome || o->reported)
        return;
    o->has_outcome = true;
    o->rc = rc;
    if (errmsg != NULL)
        dest_util_str_copy(o->errmsg, sizeof(o->errmsg), errmsg);
    event_active(o->ev, EV_TIMEOUT, 0);
}

void dest_util_outcome_default(struct dest_util_outcome *o, int rc, const char *fmt, ...)
{
    va_list ap;

    if (o->has_outcome)
        return;
    o->has_outcome = true;
    o->rc = rc;
    va_start(ap, fmt);
    vsnprintf(o->errmsg, sizeof(o->errmsg), fmt, ap);
    va_end(ap);
}

void dest_util_outcome_report(struct dest *d, struct dest_util_outcome *o,
                              void (*release)(void *obj), void *obj)
{
    dest_done_fn *done = o->done;
    void *arg = o->arg;
    int rc = o->rc;
    char errmsg[sizeof(o->errmsg)];

    dest_util_str_copy(errmsg, sizeof(errmsg), o->errmsg);
    o->reported = true;
    release(obj);
    dest_util_deliver(d, done, arg, rc, errmsg);
}

void dest_util_outcome_close(struct dest *d, struct dest_util_outcome *o,
                             void (*release)(void *obj), void *obj)
{
    dest_done_fn *done = o->done;
    void *arg = o->arg;
    bool report = !o->reported;
    bool ok = o->has_outcome && o->rc == 0;

    release(obj);
    if (report)
        dest_util_deliver(d, done, arg, ok ? 0 : SY_ECANCELED, "destination closed");
}
