/*
 * core/mosqloop.c - one libmosquitto client driven by libevent events (see mosqloop.h).
 * Loop thread only.
 */
#include "core/mosqloop.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>
#include <mosquitto.h>

#include "core/evhelp.h"

#include "core/errors.h"

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

static void lib_init(void)
{
    mosquitto_lib_init();
}

void mosqloop_lib_init(void)
{
    pthread_once(&lib_once, lib_init);
}

const char *mosqloop_strerror(int rc, int saved_errno)
{
    if (rc == MOSQ_ERR_ERRNO)
        return strerror(saved_errno);
    return mosquitto_strerror(rc);
}

void mosqloop_lose(struct mosqloop *ml, const char *fmt, ...)
{
    va_list ap;

    if (ml->lost)
        return;
    ml->lost = true;
    va_start(ap, fmt);
    vsnprintf(ml->reason, sizeof(ml->reason), fmt, ap);
    va_end(ap);
}

static void unwatch(struct mosqloop *ml)
{
    evhelp_free(&ml->ev_read);
    evhelp_free(&ml->ev_write);
    ml->fd = -1;
}

/* After a driver call: note the result, then let the owner act (it calls mosqloop_sync()). */
static void after_call(struct mosqloop *ml, int rc, int saved_errno)
{
    if (ml->mosq != NULL && !ml->lost && mosquitto_socket(ml->mosq) < 0)
        mosqloop_lose(ml, "%s",
                      rc != MOSQ_ERR_SUCCESS ? mosqloop_strerror(rc, saved_errno)
                                             : "connection closed");
    ml->after(ml->arg);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    struct mosqloop *ml = arg;
    int rc;

    (void)fd;
    (void)what;
    if (ml->mosq == NULL || ml->lost || ml->no_read)
        return;
    rc = mosquitto_loop_read(ml->mosq, 1);
    after_call(ml, rc, errno);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    struct mosqloop *ml = arg;
    int rc;

    (void)fd;
    (void)what;
    /* Armed before the owner set hold_write: the packets wait (sync re-arms later). */
    if (ml->mosq == NULL || ml->lost || ml->hold_write)
        return;
    rc = mosquitto_loop_write(ml->mosq, 1);
    after_call(ml, rc, errno);
}

static void on_misc(evutil_socket_t fd, short what, void *arg)
{
    struct mosqloop *ml = arg;
    int rc;

    (void)fd;
    (void)what;
    if (ml->mosq == NULL || ml->fd < 0 || ml->lost)
        return;
    rc = mosquitto_loop_misc(ml->mosq);
    after_call(ml, rc, errno);
}

int mosqloop_init(struct mosqloop *ml, struct event_base *base, int misc_ms, mosqloop_fn *after,
                  void *arg)
{
    struct timeval tv = {misc_ms / 1000, (misc_ms % 1000) * 1000};

    memset(ml, 0, sizeof(*ml));
    ml->base = base;
    ml->fd = -1;
    ml->misc_ms = misc_ms;
    ml->after = after;
    ml->arg = arg;
    ml->ev_misc = event_new(base, -1, EV_PERSIST, on_misc, ml);
    if (ml->ev_misc == NULL || event_add(ml->ev_misc, &tv) != 0) {
        evhelp_free(&ml->ev_misc);
        return SY_ENOMEM;
    }
    return 0;
}

void mosqloop_attach(struct mosqloop *ml, struct mosquitto *mosq)
{
    unwatch(ml);
    ml->mosq = mosq;
    ml->lost = false;
    ml->reason[0] = '\0';
}

void mosqloop_detach(struct mosqloop *ml)
{
    unwatch(ml);
    ml->mosq = NULL;
}

/*
 * Watch the client's current socket: for input unless no_read, for output when the library has
 * packets queued and the owner does not hold them. The socket changes with every client (and
 * unwatch() runs before one is dropped), so a reused descriptor never inherits old events.
 */
void mosqloop_sync(struct mosqloop *ml, int rc, int saved_errno)
{
    int fd;

    if (ml->mosq == NULL)
        return;
    fd = mosquitto_socket(ml->mosq);
    if (!ml->lost && fd < 0)
        mosqloop_lose(ml, "%s",
                      rc != MOSQ_ERR_SUCCESS ? mosqloop_strerror(rc, saved_errno)
                                             : "connection closed");
    if (ml->lost) {
        unwatch(ml);
        return;
    }
    if (fd != ml->fd) {
        unwatch(ml);
        ml->ev_read = event_new(ml->base, fd, EV_READ | EV_PERSIST, on_read, ml);
        ml->ev_write = event_new(ml->base, fd, EV_WRITE, on_write, ml);
        if (ml->ev_read == NULL || ml->ev_write == NULL) {
            unwatch(ml);
            mosqloop_lose(ml, "cannot watch the socket");
            return;
        }
        ml->fd = fd;
    }
    if (ml->no_read)
        event_del(ml->ev_read);
    else if (!event_pending(ml->ev_read, EV_READ, NULL) && event_add(ml->ev_read, NULL) != 0)
        mosqloop_lose(ml, "cannot watch the socket");
    if (ml->hold_write)
        event_del(ml->ev_write);
    else if (mosquitto_want_write(ml->mosq) && !event_pending(ml->ev_write, EV_WRITE, NULL))
        event_add(ml->ev_write, NULL);
}

void mosqloop_free(struct mosqloop *ml)
{
    mosqloop_detach(ml);
    evhelp_free(&ml->ev_misc);
}
