/*
 * core/mosqloop.h - driving one libmosquitto client from the broker's libevent loop, without
 * libmosquitto's own thread: a read event on mosquitto_socket() calls mosquitto_loop_read(), a
 * one-shot write event (armed whenever mosquitto_want_write() says so) calls
 * mosquitto_loop_write(), a periodic timer calls mosquitto_loop_misc() (keepalive PINGREQ and
 * its timeout). mosquitto_loop(), mosquitto_loop_forever() and mosquitto_loop_start() are never
 * used. Shared by the mqtt:// destination and the MQTT source.
 *
 * The owner marks its client threaded (mosquitto_threaded_set(mosq, true)): libmosquitto 2.0
 * then writes only from mosquitto_loop_write() (packet__queue() writes at once only for an
 * unthreaded client outside a callback), so what a callback queued (a PUBACK, a PUBREC) leaves
 * when the owner lets the write event run. HOLD_WRITE is that gate: while it is set the write
 * event is neither armed nor acted on. NO_READ stops watching the socket for input (the owner's
 * backpressure: unread bytes stay in the kernel, then at the server).
 *
 * After every library call the driver makes (read, write, misc), it notes whether the socket is
 * gone and calls AFTER(ARG) on the loop's stack, outside libmosquitto. The owner processes what
 * its callbacks collected, then calls mosqloop_sync() (which may find the connection lost) and
 * tears the client down when `lost` is set. Library callbacks never tear down: they call
 * mosqloop_lose().
 *
 * Threads: the loop thread that owns BASE only. Ownership: the driver borrows the client
 * (attached until mosqloop_detach(), which the owner calls before mosquitto_destroy()).
 */
#ifndef SY_CORE_MOSQLOOP_H
#define SY_CORE_MOSQLOOP_H

#include <stdbool.h>

struct event;
struct event_base;
struct mosquitto;

typedef void mosqloop_fn(void *arg);

struct mosqloop {
    struct event_base *base; /* borrowed */
    struct mosquitto *mosq;  /* borrowed: the attached client, or NULL */
    int fd;                  /* the socket the events watch, -1 none */
    struct event *ev_read, *ev_write, *ev_misc;
    int misc_ms;
    bool hold_write; /* owner: keep queued packets in libmosquitto for now */
    bool no_read;    /* owner: do not read the socket for now */
    bool lost;       /* the connection is gone (reason says why): the owner tears down */
    char reason[256];
    mosqloop_fn *after; /* after each library call of the driver */
    void *arg;
};

/* Set ML up (no client yet). MISC_MS: the loop_misc period. Returns 0 or SY_ENOMEM. */
int mosqloop_init(struct mosqloop *ml, struct event_base *base, int misc_ms, mosqloop_fn *after,
                  void *arg);

/* Attach MOSQ (a new client, connect started): clears `lost`, watches its socket. */
void mosqloop_attach(struct mosqloop *ml, struct mosquitto *mosq);

/* Stop watching the client's socket and forget the client (before mosquitto_destroy()). */
void mosqloop_detach(struct mosqloop *ml);

/*
 * After any library call (the owner's or the driver's): note RC (a libmosquitto return code;
 * SAVED_ERRNO for MOSQ_ERR_ERRNO) and a socket that went away, then re-arm the events for the
 * current hold_write / no_read. Sets `lost` (with a reason) when the client cannot go on.
 */
void mosqloop_sync(struct mosqloop *ml, int rc, int saved_errno);

/* Mark the connection lost with REASON (formatted; the first reason wins). For callbacks. */
void mosqloop_lose(struct mosqloop *ml, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Text for a libmosquitto return code (MOSQ_ERR_ERRNO: strerror(SAVED_ERRNO)). */
const char *mosqloop_strerror(int rc, int saved_errno);

/* mosquitto_lib_init() once per process (it is not thread-safe). */
void mosqloop_lib_init(void);

/* Free the events (detaching first). ML can be initialised again. */
void mosqloop_free(struct mosqloop *ml);

#endif
