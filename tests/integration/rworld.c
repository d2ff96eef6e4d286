/* tests/integration/rworld.c - one broker against one redis-server (see rworld.h). */
#include "rworld.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "itest.h"

/* Set when a group fixture or a test failed (cmocka 1.1 still returns 0 for the former). */
static bool world_failed;

int rworld_start_broker(struct rworld *w)
{
    char port[16];
    char *y;
    int rc;

    snprintf(port, sizeof(port), "%d", w->redis.port);
    y = h_str_replace(w->config, "@PORT@", port);
    rc = y == NULL || h_broker_write_config(&w->b, y) != 0 ||
                 h_broker_start(&w->b, NULL, ITEST_READY_MS) != 0
             ? -1
             : 0;
    free(y);
    if (rc != 0)
        world_failed = true;
    return rc;
}

int rworld_group_setup(void **state, const char *tag, const char *config)
{
    struct rworld *w = calloc(1, sizeof(*w));

    *state = w;
    if (w == NULL || h_redis_start(&w->redis) != 0 || h_broker_init(&w->b, tag) != 0) {
        world_failed = true;
        return -1;
    }
    w->config = config;
    return rworld_start_broker(w);
}

int rworld_group_teardown(void **state)
{
    struct rworld *w = *state;
    int rc = 0;

    if (w == NULL)
        return -1;
    if (h_broker_running(&w->b) && h_broker_stop(&w->b, 15000) != 0) {
        fprintf(stderr, "the broker did not drain and exit 0 on SIGTERM\n");
        rc = -1;
    }
    if (h_broker_sanitizer_lines(&w->b, 0) > 0)
        rc = -1;
    if (rc != 0 || world_failed)
        w->b.failed = true;
    h_broker_destroy(&w->b);
    h_redis_free(&w->redis);
    free(w);
    if (rc != 0)
        world_failed = true;
    return rc;
}

int rworld_setup(void **state)
{
    struct rworld *w = *state;

    w->mark = h_broker_log_mark(&w->b);
    w->ok = false;
    return 0;
}

int rworld_teardown(void **state)
{
    struct rworld *w = *state;

    if (!w->ok) {
        world_failed = true;
        h_broker_dump_logs(&w->b, w->mark);
    }
    return 0;
}

void rworld_end(struct rworld *w)
{
    assert_true(h_broker_running(&w->b));
    assert_int_equal(h_broker_sanitizer_lines(&w->b, w->mark), 0);
    w->ok = true;
}

int rworld_exit_code(int cmocka_rc)
{
    return cmocka_rc != 0 || world_failed ? 1 : 0;
}
