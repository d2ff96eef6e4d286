/*
 * tests/integration/test_esm_stream_shared.c - one Redis stream shared by two brokers through
 * one consumer group: every entry is delivered once across the two (no duplicates without a
 * failure), both brokers take part, and the group has nothing pending at the end. Then broker B
 * is killed (kill -9) while it holds entries: A reclaims them once they have been idle for the
 * visibility timeout, so every entry is still delivered.
 */
#include "itest.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "harness/redis.h"

/* clang-format off */
static const char config[] =
    "broker:\n"
    "  listen: 127.0.0.1:0\n"
    "  data_dir: @DATA@\n"
    "  shutdown_grace_ms: 2000\n"
    "functions:\n"
    "  rec: {runtime: python3, handler: app.record, code: @FIXTURES@/esm,\n"
    "        environment: {OUT: '@DIR@/out', PYTHONDONTWRITEBYTECODE: '1'}}\n"
    "mappings:\n"
    "  - name: shared\n"
    "    function: rec\n"
    "    batch_size: 5\n"
    "    maximum_concurrency: 2\n"
    "    source: {redis: {url: 'redis://127.0.0.1:@PORT@', stream: s-shared, group: workers,\n"
    "             consumer: @CONSUMER@, visibility_timeout_s: 2}}\n";
/* clang-format on */

static bool world_failed;

struct world {
    struct h_redis redis;
    struct h_broker a, b;
    bool ok;
};

static int start_broker(struct world *w, struct h_broker *b, const char *tag)
{
    char port[16];
    char *y1, *y2;
    int rc;

    snprintf(port, sizeof(port), "%d", w->redis.port);
    y1 = h_str_replace(config, "@PORT@", port);
    y2 = h_str_replace(y1, "@CONSUMER@", tag);
    rc = (b->dir == NULL && h_broker_init(b, tag) != 0) || h_broker_write_config(b, y2) != 0 ||
                 h_broker_start(b, NULL, ITEST_READY_MS) != 0
             ? -1
             : 0;
    free(y1);
    free(y2);
    return rc;
}

/* Message ids delivered to broker B (files <id>.<n> in its OUT/record): distinct into IDS. */
static size_t delivered(const struct h_broker *b, char ***ids, size_t *n_ids, size_t *all)
{
    char *dir = h_strfmt("%s/out/record", b->dir);
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t n = 0;

    while (d != NULL && (de = readdir(d)) != NULL) {
        char *dot = strrchr(de->d_name, '.');

        if (de->d_name[0] == '.' || dot == NULL || strcmp(dot, ".tmp") == 0)
            continue;
        (*all)++;
        if (strcmp(dot, ".1") != 0)
            continue;
        *ids = realloc(*ids, (*n_ids + 1) * sizeof(**ids));
        assert_non_null(*ids);
        (*ids)[(*n_ids)++] = strndup(de->d_name, (size_t)(dot - de->d_name));
        n++;
    }
    if (d != NULL)
        closedir(d);
    free(dir);
    return n;
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Distinct ids across both brokers; *DUPS: deliveries beyond the first of each id. */
static size_t distinct(struct world *w, size_t *from_a, size_t *from_b, size_t *dups)
{
    char **ids = NULL;
    size_t n = 0, all = 0, uniq = 0;

    *from_a = delivered(&w->a, &ids, &n, &all);
    *from_b = delivered(&w->b, &ids, &n, &all);
    qsort(ids, n, sizeof(*ids), cmp_str);
    for (size_t i = 0; i < n; i++)
        if (i == 0 || strcmp(ids[i], ids[i - 1]) != 0)
            uniq++;
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    *dups = all - uniq;
    return uniq;
}

/* Entries FROM.. FROM+N-1, each with one field, so that it is the body: {"n": i, "sleep": S}. */
static void xadd(struct world *w, int from, int n, const char *sleep_s)
{
    for (int i = from; i < from + n; i++) {
        redisReply *r =
            h_redis_cmd(&w->redis, "XADD s-shared * body {\"n\":%d,\"sleep\":%s}", i, sleep_s);

        assert_non_null(r);
        freeReplyObject(r);
        if (i % 10 == 9)
            h_sleep_ms(5); /* let both brokers' blocked reads take turns */
    }
}

static long long pending(struct world *w)
{
    redisReply *p = h_redis_cmd(&w->redis, "XPENDING s-shared workers");
    long long n = p != NULL && p->type == REDIS_REPLY_ARRAY && p->elements > 0 &&
                          p->element[0]->type == REDIS_REPLY_INTEGER
                      ? p->element[0]->integer
                      : -1;

    freeReplyObject(p);
    return n;
}

static void await_all(struct world *w, size_t want, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    size_t a, b, dups;

    while (distinct(w, &a, &b, &dups) < want || pending(w) != 0) {
        if (h_now_ms() > deadline)
            fail_msg("%zu of %zu entries delivered (A %zu, B %zu), %lld pending, after %d ms",
                     distinct(w, &a, &b, &dups), want, a, b, pending(w), timeout_ms);
        h_sleep_ms(50);
    }
}

static void test_shared_once(void **state)
{
    struct world *w = *state;
    size_t a, b, dups;

    xadd(w, 0, 300, "0");
    await_all(w, 300, 60000);
    assert_int_equal(distinct(w, &a, &b, &dups), 300);
    fprintf(stderr, "broker A ran %zu, broker B %zu, %zu duplicate(s)\n", a, b, dups);
    assert_true(a > 0);
    assert_true(b > 0);
    assert_int_equal(dups, 0);
    w->ok = true;
}

static void test_kill9_reclaimed(void **state)
{
    struct world *w = *state;
    int64_t deadline;
    size_t a, b, b0, dups;

    distinct(w, &a, &b0, &dups);
    /* Slow records, so that B still holds some of what it read when it dies. */
    xadd(w, 300, 200, "0.02");
    /* Kill B as soon as it ran some of the new entries (it holds others then). */
    deadline = h_now_ms() + 30000;
    do {
        h_sleep_ms(5);
        distinct(w, &a, &b, &dups);
    } while (b == b0 && h_now_ms() < deadline);
    assert_int_equal(kill(w->b.proc.pid, SIGKILL), 0);
    deadline = h_now_ms() + 10000;
    while (h_broker_running(&w->b) && h_now_ms() < deadline)
        h_sleep_ms(10);
    assert_false(h_broker_running(&w->b));
    await_all(w, 500, 60000);
    distinct(w, &a, &b, &dups);
    fprintf(stderr, "after kill -9 of B: A ran %zu, B %zu, %zu duplicate(s)\n", a, b, dups);
    /* Duplicates only from what B had run but not yet acknowledged when it died. */
    assert_true(dups <= 20);
    w->ok = true;
}

static int group_setup(void **state)
{
    struct world *w = calloc(1, sizeof(*w));

    *state = w;
    if (w == NULL || h_redis_start(&w->redis) != 0 || start_broker(w, &w->a, "sa") != 0 ||
        start_broker(w, &w->b, "sb") != 0) {
        world_failed = true;
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    struct world *w = *state;
    int rc = 0;

    if (w == NULL)
        return -1;
    if (h_broker_running(&w->a) && h_broker_stop(&w->a, 15000) != 0)
        rc = -1;
    if (h_broker_sanitizer_lines(&w->a, 0) > 0 || h_broker_sanitizer_lines(&w->b, 0) > 0)
        rc = -1;
    if (rc != 0 || world_failed || !w->ok)
        w->a.failed = w->b.failed = true;
    if (w->a.failed) {
        h_broker_dump_logs(&w->a, 0);
        h_broker_dump_logs(&w->b, 0);
    }
    h_broker_destroy(&w->a);
    h_broker_destroy(&w->b);
    h_redis_free(&w->redis);
    free(w);
    if (rc != 0)
        world_failed = true;
    return rc;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_once),
        cmocka_unit_test(test_kill9_reclaimed),
    };
    int rc;

    itest_filter_from_env();
    rc = cmocka_run_group_tests_name("esm_stream_shared", tests, group_setup, group_teardown);
    return rc != 0 || world_failed ? 1 : 0;
}
