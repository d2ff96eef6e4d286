/*
 * core/resolve.h - look a host name up on a short-lived detached thread, hand the numeric
 * addresses back to the loop (libmosquitto and hiredis resolve with a blocking getaddrinfo(),
 * which the loop must never call). Used by the mqtt:// destination, the HTTP and Redis
 * destinations and the MQTT source.
 *
 * Threads: start/cancel and the callback run on the loop that owns EVB; the lookup itself runs
 * on its own detached thread, which touches only the lookup object.
 */
#ifndef SY_CORE_RESOLVE_H
#define SY_CORE_RESOLVE_H

#include <netinet/in.h>

#include <arpa/inet.h>

struct event_base;

/* Addresses kept from one lookup. */
#define RESOLVE_MAX_ADDRS 8

/*
 * The lookup is over (on the loop). GAI_RC is getaddrinfo()'s result (EAI_NONAME when it found
 * no IPv4/IPv6 address); ADDRS holds N_ADDRS numeric addresses (borrowed). The lookup handle
 * is already gone: forget it first.
 */
typedef void resolve_fn(void *arg, int gai_rc, const char (*addrs)[INET6_ADDRSTRLEN], int n_addrs);

struct resolve;

/*
 * Look HOST up with getaddrinfo() on a short-lived detached thread. The result comes back
 * through a socketpair watched on EVB, so this needs no libevent threading support. Returns 0
 * with *OUT set, SY_ENOMEM, or SY_EIO (no socketpair, event or thread); then CB is never
 * called.
 */
int resolve_start(struct event_base *evb, const char *host, resolve_fn *cb, void *arg,
                  struct resolve **out);

/* Forget LK (its thread may still run, and frees the rest): CB is never called. NULL is a
 * no-op. */
void resolve_cancel(struct resolve *lk);

#endif
