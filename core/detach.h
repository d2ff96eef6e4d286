/*
 * core/detach.h - run a blocking clean-up on a short-lived detached thread of its own.
 *
 * For calls that must not block the loop and whose result nobody waits for (rd_kafka_destroy()
 * joins librdkafka's threads, and can take seconds with a broker that went away). The thread
 * owns ARG from the call on; it must touch nothing else of the broker.
 */
#ifndef SY_CORE_DETACH_H
#define SY_CORE_DETACH_H

/*
 * Run FN(ARG) on a new detached thread named NAME (at most 15 characters, for top -H). When no
 * thread can be started, FN(ARG) runs here, now. Returns 0 (on a thread) or -1 (it ran here).
 */
int detach_run(const char *name, void (*fn)(void *arg), void *arg);

#endif
