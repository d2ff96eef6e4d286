/*
 * core/resolve.c - host-name lookups off the loop (see resolve.h). Moved here from
 * destinations/dest_util.c so that sources and destinations share one.
 *
 * Threads: the loop calls resolve_start()/resolve_cancel() and gets the callback; one detached
 * thread `sy-resolve` per lookup runs getaddrinfo().
 */
#include "core/evhelp.h"
#include "core/resolve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/errors.h"
#include "core/log.h"

#define RESOLVE_MAGIC 0x444c4b50u /* "DLKP" */

/*
 * Shared by the thread and the loop side (refs); the last one to let go closes the socketpair
 * and frees it. The thread writes the result fields, sets `done` (release), then writes one
 * byte to sp[1]; the loop reads sp[0] and checks `done` (acquire) before it reads the fields.
 * A canceled lookup's thread still writes its byte (MSG_NOSIGNAL; sp[0] stays open until the
 * last unref), which nobody reads.
 */
struct resolve {
    unsigned magic;
    atomic_int refs;  /* 2 at start: the loop side and the thread */
    atomic_bool done; /* release-stored by the thread after the result fields */
    int sp[2];
    char *host; /* owned */
    int gai_rc;
    int n_addrs;
    char addrs[RESOLVE_MAX_ADDRS][INET6_ADDRSTRLEN];
    /* Loop side only. */
    struct event *ev; /* read event on sp[0] */
    resolve_fn *cb;
    void *cb_arg;
};

static void lookup_unref(struct resolve *lk)
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
    struct resolve *lk = arg;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    ssize_t n;

    pthread_setname_np(pthread_self(), "sy-resolve"); /* top -H, perf */

    lk->gai_rc = getaddrinfo(lk->host, NULL, &hints, &ai);
    if (lk->gai_rc == 0) {
        for (struct addrinfo *p = ai; p != NULL && lk->n_addrs < RESOLVE_MAX_ADDRS;
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
    struct resolve *lk = arg;
    char addrs[RESOLVE_MAX_ADDRS][INET6_ADDRSTRLEN];
    resolve_fn *cb;
    void *cb_arg;
    int gai_rc, n_addrs;
    char byte;

    if (lk == NULL || lk->magic != RESOLVE_MAGIC) {
        log_err("[resolve] %s:%d: bad magic", __FILE__, __LINE__);
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
    resolve_cancel(lk);
    cb(cb_arg, gai_rc, (const char(*)[INET6_ADDRSTRLEN])addrs, n_addrs);
}

int resolve_start(struct event_base *evb, const char *host, resolve_fn *cb, void *arg,
                  struct resolve **out)
{
    struct resolve *lk = calloc(1, sizeof(*lk));
    pthread_attr_t attr;
    pthread_t th;
    int rc = SY_EIO;

    *out = NULL;
    if (lk == NULL)
        return SY_ENOMEM;
    lk->magic = RESOLVE_MAGIC;
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
    evhelp_free(&lk->ev);
    if (lk->sp[0] >= 0)
        close(lk->sp[0]);
    if (lk->sp[1] >= 0)
        close(lk->sp[1]);
    free(lk->host);
    lk->magic = 0;
    free(lk);
    return rc;
}

void resolve_cancel(struct resolve *lk)
{
    if (lk == NULL)
        return;
    evhelp_free(&lk->ev); /* nobody reads sp[0] from here on */
    lookup_unref(lk);
}
