/*
 * tests/harness/redis.h - a real redis-server for the integration tests, on a free loopback
 * port, in a temp dir of its own, killed by PID at the end.
 *
 *   struct h_redis r = {0};
 *   h_redis_start(&r);        // picks a port (bind 127.0.0.1:0), spawns, waits for PING
 *   ... redis://127.0.0.1:<r.port>/... ...
 *   h_redis_stop(&r);         // SIGTERM, bounded wait, then SIGKILL
 *   h_redis_start(&r);        // again on the same port (a restart)
 *   h_redis_free(&r);         // stop if running, remove the temp dir
 *
 * The server runs with no persistence (--save '' --appendonly no), so a restart starts empty.
 * Spawn from the main thread only (see proc.h). Failures are return values plus stderr lines
 * (the server's log is printed), never cmocka asserts.
 */
#ifndef SY_HARNESS_REDIS_H
#define SY_HARNESS_REDIS_H

#include <stdbool.h>

#include "harness/proc.h"

struct h_redis {
    int port;           /* 0 until the first start (or h_redis_reserve_port); kept afterwards */
    struct h_proc proc; /* the running server; proc.pid 0 when none was started */
    char *dir;          /* owned: temp dir (working dir, log) */
    char *log_path;     /* owned: the server's stdout/stderr */
};

/*
 * Pick a free loopback port for R without starting anything (to point a client at a server
 * that is not there yet). Returns the port, or -1.
 */
int h_redis_reserve_port(struct h_redis *r);

/*
 * Start redis-server on r->port (picked when 0) and wait until it answers PING (bounded,
 * 10 s). When the port was picked here and turns out to be taken, another one is tried.
 * Returns 0, or -1 (the log is printed).
 */
int h_redis_start(struct h_redis *r);

/* True when the server process is running. */
bool h_redis_running(const struct h_redis *r);

/*
 * Stop the server by PID: SIGTERM, up to 5 s, then SIGKILL. Returns 0 (also when nothing was
 * running) or -1 when it would not die.
 */
int h_redis_stop(struct h_redis *r);

/*
 * One command (hiredis format FMT) on a fresh connection to R's server, with 2 s timeouts.
 * Returns new (freeReplyObject()), or NULL when the server does not answer.
 */
struct redisReply *h_redis_cmd(const struct h_redis *r, const char *fmt, ...);

/* The integer reply of one command, or -1 (no answer, or not an integer). */
long long h_redis_int(const struct h_redis *r, const char *fmt, ...);

/* Stop the server if running, remove the temp dir, free what R holds. R can be started again. */
void h_redis_free(struct h_redis *r);

#endif
