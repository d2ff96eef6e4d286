/*
 * core/evhelp.h - the two libevent chores every loop-thread module repeats: a struct timeval
 * from milliseconds, and freeing an event through its owner's pointer. Header only; no state.
 */
#ifndef SY_CORE_EVHELP_H
#define SY_CORE_EVHELP_H

#include <stddef.h>
#include <sys/time.h>

#include <event2/event.h>

/* MS milliseconds (>= 0) as a struct timeval, for evtimer_add() and friends. */
static inline struct timeval evhelp_tv_ms(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    return tv;
}

/* event_free(*EVP) when set, then *EVP = NULL (so a second call is a no-op). */
static inline void evhelp_free(struct event **evp)
{
    if (*evp != NULL)
        event_free(*evp);
    *evp = NULL;
}

#endif
