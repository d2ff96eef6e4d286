/* core/time.c - clocks and timestamps. */
#include "time.h"

#include <stdio.h>
#include <time.h>

uint64_t time_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int64_t time_mono_ms(void)
{
    return (int64_t)(time_mono_us() / 1000u);
}

void time_deadline(struct timespec *ts, clockid_t clock, unsigned ms)
{
    clock_gettime(clock, ts);
    ts->tv_sec += (time_t)(ms / 1000u);
    ts->tv_nsec += (long)(ms % 1000u) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

uint64_t time_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void time_iso8601(char out[32], uint64_t wall_ms)
{
    time_t secs = (time_t)(wall_ms / 1000u);
    struct tm tm;

    gmtime_r(&secs, &tm);
    /* strftime keeps the compiler's truncation analysis quiet: the width is fixed (20 bytes). */
    strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + 19, 13, ".%03uZ", (unsigned)(wall_ms % 1000u));
}

void time_iso8601_lambda(char out[32], uint64_t wall_ms)
{
    time_t secs = (time_t)(wall_ms / 1000u);
    struct tm tm;

    gmtime_r(&secs, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + 19, 13, ".%03u+0000", (unsigned)(wall_ms % 1000u));
}
