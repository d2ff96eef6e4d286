/*
 * tests/integration/rworld.h - the fixture of the tests that run one broker against one real
 * redis-server: the server on a free port, the broker on a config whose `@PORT@` is that port,
 * the per-test log marks, and the end-of-test invariants (broker still running, no sanitizer
 * line since the test started).
 *
 *   static const char config[] = "...url: 'redis://127.0.0.1:@PORT@'...";
 *   static int group_setup(void **s) { return rworld_group_setup(s, "tag", config); }
 *   cmocka_unit_test_setup_teardown(test_x, rworld_setup, rworld_teardown)
 *   ... rworld_end(w); at the end of every test
 *   return rworld_exit_code(cmocka_run_group_tests_name(..., group_setup, rworld_group_teardown));
 */
#ifndef SY_RWORLD_H
#define SY_RWORLD_H

#include <stdbool.h>
#include <stddef.h>

#include "harness/broker.h"
#include "harness/redis.h"

struct rworld {
    struct h_redis redis;
    struct h_broker b;
    const char *config; /* borrowed: the YAML with @PORT@ */
    size_t mark;        /* broker log size when the current test started */
    bool ok;            /* the current test reached rworld_end() */
};

/* Start the server, then the broker with CONFIG. *STATE becomes a new struct rworld. 0 or -1. */
int rworld_group_setup(void **state, const char *tag, const char *config);

/* Stop the broker (SIGTERM: it must exit 0), scan its log, stop the server, free. 0 or -1. */
int rworld_group_teardown(void **state);

/* (Re)start the broker on the same config (after a kill -9). 0 or -1 (log dumped). */
int rworld_start_broker(struct rworld *w);

/* Per-test fixtures: mark the log; dump it from the mark when the test did not end. */
int rworld_setup(void **state);
int rworld_teardown(void **state);

/* The invariants every test ends on. */
void rworld_end(struct rworld *w);

/* Non-zero when CMOCKA_RC is, or when a group fixture or a test failed. */
int rworld_exit_code(int cmocka_rc);

#endif
