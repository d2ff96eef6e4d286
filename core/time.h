/* core/time.h - clocks and timestamps. */
#ifndef SY_UTIL_TIME_H
#define SY_UTIL_TIME_H

#include <stdint.h>
#include <time.h>

/* Monotonic clock in microseconds (CLOCK_MONOTONIC). */
uint64_t time_mono_us(void);

/* Monotonic clock in milliseconds (CLOCK_MONOTONIC). */
int64_t time_mono_ms(void);

/*
 * *TS = now on CLOCK plus MS: the absolute deadline pthread_cond_timedwait() takes
 * (CLOCK_MONOTONIC for a condition variable created with that clock, else CLOCK_REALTIME).
 */
void time_deadline(struct timespec *ts, clockid_t clock, unsigned ms);

/* Wall clock in milliseconds since the Unix epoch. */
uint64_t time_wall_ms(void);

/* Format WALL_MS as `2026-11-22T13:45:00.123Z` into OUT (at least 32 bytes). */
void time_iso8601(char out[32], uint64_t wall_ms);

/* As Lambda's control plane writes LastModified: `2024-05-09T21:05:41.123+0000`. */
void time_iso8601_lambda(char out[32], uint64_t wall_ms);

#endif
