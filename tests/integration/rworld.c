/* tests/integration/rworld.c - one broker against one redis-server (see rworld.h). */
#include "rworld.h"

#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "itest.h"

/* Set when a group fixture or a test failed (cmocka 1.1 still returns 0 for the former). */
static bool world_failed;

char *rworld_config(const struct rworld *w, const char *config)
{
    char port[16];

    if (w->use_kafka)
        return h_str_replace(config, "@BOOTSTRAP@", w->kafka.bootstrap);
    snprintf(port, sizeof(port), "%d", w->use_mqtt ? w->mqtt.port : w->redis.port);
    return h_str_replace(config, "@PORT@", port);
}

int rworld_start_broker(struct rworld *w)
{
    char *y;
    int rc;

    y = rworld_config(w, w->config);
    rc = y == NULL || h_broker_write_config(&w->b, y) != 0 ||
                 h_broker_start(&w->b, NULL, ITEST_READY_MS) != 0
             ? -1
             : 0;
    free(y);
    if (rc != 0)
        world_failed = true;
    return rc;
}

void rworld_kill9_restart(struct rworld *w)
{
    int64_t deadline;

    assert_int_equal(kill(w->b.proc.pid, SIGKILL), 0);
    deadline = h_now_ms() + 10000;
    while (h_broker_running(&w->b) && h_now_ms() < deadline)
        h_sleep_ms(10);
    assert_false(h_broker_running(&w->b));
    assert_int_equal(rworld_start_broker(w), 0);
    w->mark = 0;
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

int rworld_group_setup_mqtt(void **state, const char *tag, const char *config,
                            const char *m_extra, const char *m_user, const char *m_password)
{
    struct rworld *w = calloc(1, sizeof(*w));

    *state = w;
    if (w == NULL) {
        world_failed = true;
        return -1;
    }
    w->use_mqtt = true;
    w->mqtt.extra_conf = m_extra;
    w->mqtt.user = m_user;
    w->mqtt.password = m_password;
    if (h_mosquitto_start(&w->mqtt, 0) != 0 || h_broker_init(&w->b, tag) != 0) {
        world_failed = true;
        return -1;
    }
    w->config = config;
    return rworld_start_broker(w);
}

int rworld_group_setup_local(void **state, const char *tag, const char *config,
                             const char *const *dirs)
{
    struct rworld *w = calloc(1, sizeof(*w));

    *state = w;
    if (w == NULL || h_broker_init(&w->b, tag) != 0) {
        world_failed = true;
        return -1;
    }
    for (size_t i = 0; dirs != NULL && dirs[i] != NULL; i++) {
        char *p = h_strfmt("%s/%s", w->b.dir, dirs[i]);

        if (p == NULL || mkdir(p, 0755) != 0) {
            free(p);
            world_failed = true;
            return -1;
        }
        free(p);
    }
    w->no_server = true;
    w->config = config;
    return rworld_start_broker(w);
}

int rworld_group_setup_kafka(void **state, const char *tag, const char *config, int brokers,
                             const char *const *topics)
{
    struct rworld *w = calloc(1, sizeof(*w));

    *state = w;
    if (w == NULL) {
        world_failed = true;
        return -1;
    }
    w->kafka = (struct h_kafka)H_KAFKA_INIT;
    w->use_kafka = true;
    if (h_kafka_start(&w->kafka, brokers, topics) != 0 || h_broker_init(&w->b, tag) != 0) {
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
    if (w->use_kafka)
        h_kafka_free(&w->kafka);
    else if (w->use_mqtt)
        h_mosquitto_destroy(&w->mqtt, rc != 0 || world_failed);
    else if (!w->no_server)
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

/* Files in DIR: all of them (*ALL), and distinct message ids (the return value). */
size_t rworld_count_files(const char *dir, size_t *all)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t n = 0, total = 0;

    while (d != NULL && (de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);

        if (de->d_name[0] == '.' || (len > 4 && strcmp(de->d_name + len - 4, ".tmp") == 0))
            continue;
        total++;
        if (len > 2 && strcmp(de->d_name + len - 2, ".1") == 0)
            n++;
    }
    if (d != NULL)
        closedir(d);
    if (all != NULL)
        *all = total;
    return n;
}

void rworld_await_files(const char *dir, size_t want, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;

    while (rworld_count_files(dir, NULL) < want) {
        if (h_now_ms() > deadline)
            fail_msg("%zu of %zu records delivered to %s within %d ms",
                     rworld_count_files(dir, NULL), want, dir, timeout_ms);
        h_sleep_ms(50);
    }
}

/* GET the mapping named NAME through the API (new), failing the test when it cannot. */
json_t *rworld_mapping_json(struct rworld *w, const char *name)
{
    struct h_http_resp r;
    json_t *list, *m, *found = NULL;
    size_t i;

    assert_int_equal(h_broker_request(&w->b, "GET", "/2015-03-31/event-source-mappings", NULL, NULL,
                                      0, 10000, &r),
                     0);
    expect_status(&r, 200);
    list = resp_json(&r);
    h_http_resp_free(&r);
    json_array_foreach(json_object_get(list, "EventSourceMappings"), i, m)
    {
        if (strcmp(h_json_str(json_object_get(m, "Switchyard"), "name"), name) == 0)
            found = json_incref(m);
    }
    json_decref(list);
    if (found == NULL)
        fail_msg("no mapping %s in ListEventSourceMappings", name);
    return found;
}

/* PUT Enabled on the mapping named NAME through the API; waits until its State is WANT. */
void rworld_set_enabled(struct rworld *w, const char *name, bool on, const char *want)
{
    json_t *m = rworld_mapping_json(w, name);
    char *path = h_strfmt("/2015-03-31/event-source-mappings/%s", h_json_str(m, "UUID"));
    const char *body = on ? "{\"Enabled\": true}" : "{\"Enabled\": false}";
    int64_t deadline = h_now_ms() + 20000;
    struct h_http_resp r;

    json_decref(m);
    assert_int_equal(h_broker_request(&w->b, "PUT", path, NULL, body, strlen(body), 10000, &r), 0);
    expect_status(&r, 202);
    h_http_resp_free(&r);
    free(path);
    for (;;) {
        m = rworld_mapping_json(w, name);
        if (strcmp(h_json_str(m, "State"), want) == 0)
            break;
        json_decref(m);
        if (h_now_ms() > deadline)
            fail_msg("mapping %s never became %s", name, want);
        h_sleep_ms(50);
    }
    json_decref(m);
}

json_t *rworld_await_problem(struct rworld *w, const char *name, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;

    for (;;) {
        json_t *m = rworld_mapping_json(w, name);

        if (strncmp(h_json_str(m, "LastProcessingResult"), "PROBLEM", 7) == 0)
            return m;
        json_decref(m);
        if (h_now_ms() > deadline)
            fail_msg("mapping %s never reported a problem within %d ms", name, timeout_ms);
        h_sleep_ms(50);
    }
}
