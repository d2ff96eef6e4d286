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

#define DEST_UTIL_LOOKUP_MAGIC 0x444c4b50u /* "DLKP" */

/* ---- small utilities ------------------------------------------------------------------- */

void dest_util_str_copy(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);

    memcpy(dst, src, n);
    dst[n] = '\0';
}

void dest_util_ev_free(struct event **evp)
{
    if (*evp != NULL)
        event_free(*evp);
    *evp = NULL;
}

struct timeval dest_util_tv(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    return tv;
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
    dest_util_ev_free(&q->ev);
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

/* ---- host-name lookup ------------------------------------------------------------------- */

/*
 * Shared by the thread and the loop side (refs); the last one to let go closes the socketpair
 * and frees it. The thread writes the result fields, sets `done` (release), then writes one
 * byte to sp[1]; the loop reads sp[0] and checks `done` (acquire) before it reads the fields.
 * A canceled lookup's thread still writes its byte (MSG_NOSIGNAL; sp[0] stays open until the
 * last unref), which nobody reads.
 */
struct dest_util_lookup {
    unsigned magic;
    atomic_int refs;  /* 2 at start: the loop side and the thread */
    atomic_bool done; /* release-stored by the thread after the result fields */
    int sp[2];
    char *host; /* owned */
    int gai_rc;
    int n_addrs;
    char addrs[DEST_UTIL_MAX_ADDRS][INET6_ADDRSTRLEN];
    /* Loop side only. */
    struct event *ev; /* read event on sp[0] */
    dest_util_lookup_fn *cb;
    void *cb_arg;
};

static void lookup_unref(struct dest_util_lookup *lk)
{
    if (atomic_fetch_sub(&lk->refs, 1) != 1)
        return;
    close(lk->sp[0]);
    close(lk->sp[1]);
    free(lk->host);
    lk->magic = 0;
    free(lk);
}

/* The lookup's own thread: one blocking getaddrinfo(), then a byte to wake the loop. */
static void *lookup_main(void *arg)
{
    struct dest_util_lookup *lk = arg;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    ssize_t n;

    pthread_setname_np(pthread_self(), "sy-resolve"); /* top -H, perf */

    lk->gai_rc = getaddrinfo(lk->host, NULL, &hints, &ai);
    if (lk->gai_rc == 0) {
        for (struct addrinfo *p = ai; p != NULL && lk->n_addrs < DEST_UTIL_MAX_ADDRS;
             p = p->ai_next) {
            const void *src;

            if (p->ai_family == AF_INET6)
                src = &((struct sockaddr_in6 *)p->ai_addr)->sin6_addr;
            else if (p->ai_family == AF_INET)
                src = &((struct sockaddr_in *)p->ai_addr)->sin_addr;
            else
                continue;
            if (inet_ntop(p->ai_family, src, lk->addrs[lk->n_addrs], INET6_ADDRSTRLEN) != NULL)
                lk->n_addrs++;
        }
        freeaddrinfo(ai);
        if (lk->n_addrs == 0)
            lk->gai_rc = EAI_NONAME;
    }
    atomic_store_explicit(&lk->done, true, memory_order_release);
    do {
        n = send(lk->sp[1], "r", 1, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    lookup_unref(lk);
    return NULL;
}

/* sp[0] is readable (on the loop): hand the result to the callback, after letting go. */
static void on_lookup_done(evutil_socket_t fd, short what, void *arg)
{
    struct dest_util_lookup *lk = arg;
    char addrs[DEST_UTIL_MAX_ADDRS][INET6_ADDRSTRLEN];
    dest_util_lookup_fn *cb;
    void *cb_arg;
    int gai_rc, n_addrs;
    char byte;

    if (lk == NULL || lk->magic != DEST_UTIL_LOOKUP_MAGIC) {
        log_err("[dest] %s:%d: bad magic", __FILE__, __LINE__);
        abort();
    }
    if (recv(fd, &byte, 1, MSG_DONTWAIT) != 1 ||
        !atomic_load_explicit(&lk->done, memory_order_acquire))
        return;
    gai_rc = lk->gai_rc;
    n_addrs = gai_rc == 0 ? lk->n_addrs : 0;
    memcpy(addrs, lk->addrs, sizeof(addrs));
    cb = lk->cb;
    cb_arg = lk->cb_arg;
    dest_util_lookup_cancel(lk);
    cb(cb_arg, gai_rc, (const char(*)[INET6_ADDRSTRLEN])addrs, n_addrs);
}

int dest_util_lookup_start(struct event_base *evb, const char *host, dest_util_lookup_fn *cb,
                           void *arg, struct dest_util_lookup **out)
{
    struct dest_util_lookup *lk = calloc(1, sizeof(*lk));
    pthread_attr_t attr;
    pthread_t th;
    int rc = SY_EIO;

    *out = NULL;
    if (lk == NULL)
        return SY_ENOMEM;
    lk->magic = DEST_UTIL_LOOKUP_MAGIC;
    lk->sp[0] = lk->sp[1] = -1;
    atomic_init(&lk->refs, 2);
    atomic_init(&lk->done, false);
    lk->cb = cb;
    lk->cb_arg = arg;
    lk->host = strdup(host);
    if (lk->host == NULL) {
        rc = SY_ENOMEM;
        goto fail;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, lk->sp) != 0)
        goto fail;
    lk->ev = event_new(evb, lk->sp[0], EV_READ | EV_PERSIST, on_lookup_done, lk);
    if (lk->ev == NULL) {
        rc = SY_ENOMEM;
        goto fail;
    }
    if (event_add(lk->ev, NULL) != 0)
        goto fail;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&th, &attr, lookup_main, lk);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        rc = SY_EIO;
        goto fail;
    }
    *out = lk;
    return 0;

fail:
    dest_util_ev_free(&lk->ev);
    if (lk->sp[0] >= 0)
        close(lk->sp[0]);
    if (lk->sp[1] >= 0)
        close(lk->sp[1]);
    free(lk->host);
    lk->magic = 0;
    free(lk);
    return rc;
}

void dest_util_lookup_cancel(struct dest_util_lookup *lk)
{
    if (lk == NULL)
        return;
    dest_util_ev_free(&lk->ev); /* nobody reads sp[0] from here on */
    lookup_unref(lk);
}
