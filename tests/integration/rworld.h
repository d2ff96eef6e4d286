/*
 * tests/integration/rworld.h - the fixture of the tests that run one broker against one real
 * server: a redis-server or a mosquitto on a free port (the config's `@PORT@`), or a Kafka mock cluster
 * (rworld_group_setup_kafka(); the config's `@BOOTSTRAP@`), the broker on that config,
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

#include <jansson.h>

#include "harness/broker.h"
#include "harness/kafka.h"
#include "harness/mqtt.h"
#include "harness/redis.h"

struct rworld {
    struct h_redis redis; /* unused with Kafka */
    struct h_kafka kafka; /* used when `use_kafka` */
    bool use_kafka;
    struct h_mosquitto mqtt; /* used when `use_mqtt` (the config's @PORT@) */
    bool use_mqtt;
    bool no_server; /* rworld_group_setup_local(): the broker alone */
    struct h_broker b;
    const char *config; /* borrowed: the YAML with @PORT@ */
    size_t mark;        /* broker log size when the current test started */
    bool ok;            /* the current test reached rworld_end() */
};

/* Start the server, then the broker with CONFIG. *STATE becomes a new struct rworld. 0 or -1. */
int rworld_group_setup(void **state, const char *tag, const char *config);

/* The same with a Kafka mock cluster of BROKERS brokers and TOPICS ("name:partitions", NULL
 * terminated) instead of a redis-server. */
int rworld_group_setup_kafka(void **state, const char *tag, const char *config, int brokers,
                             const char *const *topics);

/* The same with a mosquitto instead of a redis-server: @PORT@ is its port. M_EXTRA: lines for
 * its config (h_mosquitto.extra_conf); M_USER / M_PASSWORD: its one user (may be NULL).
 * Borrowed for the world's life. */
int rworld_group_setup_mqtt(void **state, const char *tag, const char *config,
                            const char *m_extra, const char *m_user, const char *m_password);

/* The broker alone on CONFIG, no server (sources that need none: fs); DIRS (NULL-terminated,
 * may be NULL): subdirectories of the temp dir made before the broker starts. */
int rworld_group_setup_local(void **state, const char *tag, const char *config,
                             const char *const *dirs);

/* CONFIG with this world's @PORT@ / @BOOTSTRAP@ filled in (new). */
char *rworld_config(const struct rworld *w, const char *config);

/* Stop the broker (SIGTERM: it must exit 0), scan its log, stop the server, free. 0 or -1. */
int rworld_group_teardown(void **state);

/* Kill the broker with SIGKILL, wait (bounded) until it is gone, start it again on the same
 * config; the log mark goes back to 0 (the new broker's log). Fails the test when it cannot. */
void rworld_kill9_restart(struct rworld *w);

/* (Re)start the broker on the same config (after a kill -9). 0 or -1 (log dumped). */
int rworld_start_broker(struct rworld *w);

/* Per-test fixtures: mark the log; dump it from the mark when the test did not end. */
int rworld_setup(void **state);
int rworld_teardown(void **state);

/* The invariants every test ends on. */
void rworld_end(struct rworld *w);

/* Non-zero when CMOCKA_RC is, or when a group fixture or a test failed. */
int rworld_exit_code(int cmocka_rc);

/*
 * Files a test handler wrote into DIR, one per delivery (ID.N, N counting the deliveries of ID;
 * *.tmp and dot-files ignored): all of them in *ALL (may be NULL), distinct ids returned.
 */
size_t rworld_count_files(const char *dir, size_t *all);

/* Wait (polling, bounded by TIMEOUT_MS) until DIR holds WANT distinct ids; fails the test. */
void rworld_await_files(const char *dir, size_t want, int timeout_ms);

/* The mapping named NAME as ListEventSourceMappings shows it (new); fails the test if absent. */
json_t *rworld_mapping_json(struct rworld *w, const char *name);

/* Wait (bounded by TIMEOUT_MS, else the test fails) until the mapping NAME's
 * LastProcessingResult starts with "PROBLEM"; returns the mapping then (new). */
json_t *rworld_await_problem(struct rworld *w, const char *name, int timeout_ms);

/* PUT Enabled ON on the mapping NAME through the API, then wait until its State is WANT. */
void rworld_set_enabled(struct rworld *w, const char *name, bool on, const char *want);

#endif
