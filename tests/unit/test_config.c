/*
 * tests/unit/test_config.c - cfg_load(): values and defaults of the good configs, and the exact
 * messages for the bad ones.
 *
 * Good configs live in tests/data/config/good/ and are checked field by field. Each bad config
 * tests/data/config/bad/NAME.yaml has a golden NAME.expected holding the exact error lines; the
 * test chdirs into bad/ and loads "NAME.yaml", so the messages carry no machine-specific path.
 * After changing a message on purpose, regenerate the goldens with SY_UPDATE_GOLDEN=1 and review
 * the diff. Code directories used by both live in tests/data/config/code/.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "mappings/mapping.h"
#include "sources/fs/fs_int.h"
#include "sources/kafka/kafka_int.h"
#include "sources/mqtt/mqtt_int.h"
#include "sources/redis/redis_int.h"

/* The repository root: $SY_SOURCE_DIR (set by ctest), else the current directory. */
static char src_dir[PATH_MAX];

static void path_in_src(char *out, size_t n, const char *rel)
{
    snprintf(out, n, "%s/%s", src_dir, rel);
}

/* Read a whole file (returns new, NUL-terminated) or NULL. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    long n;

    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        data = malloc((size_t)n + 1);
        if (data != NULL && fread(data, 1, (size_t)n, f) != (size_t)n) {
            free(data);
            data = NULL;
        } else if (data != NULL) {
            data[n] = '\0';
        }
    }
    fclose(f);
    return data;
}

/* Every config is loaded with the broker's own schema: the source kinds and filter check. */
static struct cfg *cfg_load_t(const char *path, const void *unused, struct cfg_errors *errs)
{
    (void)unused;
    return cfg_load(path, mapping_cfg_schema(), errs);
}

/* Load a config under tests/data/config/good/ that must load without errors. */
static struct cfg *load_good(const char *name)
{
    char path[PATH_MAX + 64];
    struct cfg_errors errs = {0};
    struct cfg *cfg;

    snprintf(path, sizeof(path), "%s/tests/data/config/good/%s", src_dir, name);
    cfg = cfg_load_t(path, NULL, &errs);
    if (cfg == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            print_error("%s\n", errs.msgs[i]);
        cfg_errors_clear(&errs);
        fail_msg("%s did not load", path);
    }
    assert_int_equal(errs.n, 0);
    return cfg;
}

static const struct cfg_function *must_find(const struct cfg *cfg, const char *name)
{
    const struct cfg_function *fn = cfg_function_find(cfg, name);

    if (fn == NULL)
        fail_msg("function '%s' not found", name);
    return fn;
}

static void expect_code_dir(const struct cfg_function *fn, const char *sub)
{
    char want[PATH_MAX + 64];

    snprintf(want, sizeof(want), "%s/tests/data/config/code/%s", src_dir, sub);
    assert_string_equal(fn->code, want);
}

static void expect_broker_defaults_except_listen(const struct cfg *cfg)
{
    const struct cfg_broker *br = &cfg->broker;
    char want[PATH_MAX + 64];

    snprintf(want, sizeof(want), "%s/.switchyard", cfg->base_dir);
    assert_string_equal(br->data_dir, want);
    assert_int_equal(br->max_concurrency, 100);
    assert_null(br->auth_token);
    assert_string_equal(br->async_queue, "sqlite");
    assert_int_equal(br->durability, CFG_DURABILITY_CRASH);
    assert_string_equal(br->log_level, "info");
    assert_int_equal(br->shutdown_grace_ms, 2000);
    assert_string_equal(br->region, "us-east-1");
    assert_string_equal(br->account_id, "000000000000");
    assert_int_equal(br->strict_runtimes, 0);
}

static void expect_async_defaults(const struct cfg_async *as)
{
    assert_int_equal(as->maximum_retry_attempts, 2);
    assert_int_equal(as->maximum_event_age_s, 21600);
    assert_int_equal(as->n_retry_delays, 2);
    assert_int_equal(as->retry_delays_s[0], 60);
    assert_int_equal(as->retry_delays_s[1], 120);
    assert_null(as->on_success);
    assert_null(as->on_failure);
    assert_null(as->dead_letter);
}

/* ---------------------------------------------------------------------------------------------
 * Good configs
 * ------------------------------------------------------------------------------------------- */

static void test_good_minimal(void **state)
{
    struct cfg *cfg = load_good("minimal.yaml");
    const struct cfg_function *fn;
    char want[PATH_MAX + 64];

    snprintf(want, sizeof(want), "%s/tests/data/config/good/minimal.yaml", src_dir);
    assert_string_equal(cfg->path, want);
    snprintf(want, sizeof(want), "%s/tests/data/config/good", src_dir);
    assert_string_equal(cfg->base_dir, want);

    assert_string_equal(cfg->broker.listen, "127.0.0.1:9001");
    assert_string_equal(cfg->broker.listen_host, "127.0.0.1");
    assert_int_equal(cfg->broker.listen_port, 9001);
    expect_broker_defaults_except_listen(cfg);

    assert_int_equal(cfg->n_functions, 1);
    fn = &cfg->functions[0];
    assert_string_equal(fn->name, "hello");
    assert_int_equal(fn->runtime, CFG_RUNTIME_PYTHON3);
    assert_string_equal(fn->runtime_id, "python3");
    assert_int_equal(fn->runtime_major, 0);
    assert_int_equal(fn->runtime_minor, 0);
    assert_string_equal(fn->handler, "app.handler");
    expect_code_dir(fn, "py");
    assert_int_equal(fn->memory_mb, 128);
    assert_int_equal(fn->timeout_s, 3);
    assert_int_equal(fn->init_timeout_s, 10);
    assert_int_equal(fn->n_environment, 0);
    assert_null(fn->environment);
    assert_int_equal(fn->reserved_concurrency, -1);
    assert_int_equal(fn->provisioned_concurrency, 0);
    assert_int_equal(fn->max_idle_s, 300);
    assert_int_equal(fn->line, 3);
    expect_async_defaults(&fn->async);
    cfg_destroy(cfg);
}

static void test_good_empty(void **state)
{
    struct cfg *cfg = load_good("empty.yaml");

    assert_int_equal(cfg->n_functions, 0);
    assert_null(cfg->functions);
    assert_string_equal(cfg->broker.listen_host, "127.0.0.1");
    assert_int_equal(cfg->broker.listen_port, 9001);
    expect_broker_defaults_except_listen(cfg);
    assert_null(cfg_function_find(cfg, "anything"));
    cfg_destroy(cfg);
}

static void test_good_full(void **state)
{
    struct cfg *cfg = load_good("full.yaml");
    const struct cfg_broker *br = &cfg->broker;
    const struct cfg_function *fn;
    char want[PATH_MAX + 64];

    assert_string_equal(br->listen, "0.0.0.0:8080");
    assert_string_equal(br->listen_host, "0.0.0.0");
    assert_int_equal(br->listen_port, 8080);
    snprintf(want, sizeof(want), "%s/tests/data/config/state/switchyard", src_dir);
    assert_string_equal(br->data_dir, want);
    assert_int_equal(br->max_concurrency, 50);
    assert_string_equal(br->auth_token, "s3cret");
    assert_string_equal(br->async_queue, "redis://127.0.0.1:6379/sy-queue");
    assert_int_equal(br->durability, CFG_DURABILITY_FSYNC);
    assert_string_equal(br->log_level, "debug");
    assert_int_equal(br->shutdown_grace_ms, 0);
    assert_string_equal(br->region, "eu-west-3");
    assert_string_equal(br->account_id, "123456789012");

    assert_int_equal(cfg->n_functions, 4);
    /* File order. */
    assert_string_equal(cfg->functions[0].name, "thumbnail");
    assert_string_equal(cfg->functions[1].name, "resize");
    assert_string_equal(cfg->functions[2].name, "shell-fn");
    assert_string_equal(cfg->functions[3].name, "custom_1");

    fn = must_find(cfg, "thumbnail");
    assert_int_equal(fn->runtime, CFG_RUNTIME_PYTHON3);
    assert_string_equal(fn->handler, "pkg/app.handler");
    expect_code_dir(fn, "py");
    assert_int_equal(fn->memory_mb, 10240);
    assert_int_equal(fn->timeout_s, 900);
    assert_int_equal(fn->init_timeout_s, 1);
    assert_int_equal(fn->reserved_concurrency, 10);
    assert_int_equal(fn->provisioned_concurrency, 10);
    assert_int_equal(fn->max_idle_s, 86400);
    assert_int_equal(fn->line, 15);
    assert_int_equal(fn->n_environment, 5);
    assert_string_equal(fn->environment[0].name, "BUCKET");
    assert_string_equal(fn->environment[0].value, "photos");
    assert_string_equal(fn->environment[1].name, "COUNT");
    assert_string_equal(fn->environment[1].value, "3");
    assert_string_equal(fn->environment[2].name, "VERBOSE");
    assert_string_equal(fn->environment[2].value, "true");
    assert_string_equal(fn->environment[3].name, "_PRIVATE");
    assert_string_equal(fn->environment[3].value, "");
    assert_string_equal(fn->environment[4].name, "EMPTY");
    assert_string_equal(fn->environment[4].value, "");
    assert_int_equal(fn->async.maximum_retry_attempts, 0);
    assert_int_equal(fn->async.maximum_event_age_s, 60);
    assert_int_equal(fn->async.n_retry_delays, 3);
    assert_int_equal(fn->async.retry_delays_s[0], 0);
    assert_int_equal(fn->async.retry_delays_s[1], 5);
    assert_int_equal(fn->async.retry_delays_s[2], 21600);
    /* file: destinations are made absolute against the config's directory. */
    snprintf(want, sizeof(want), "file:%s/tests/data/config/good/out/ok", src_dir);
    assert_string_equal(fn->async.on_success, want);
    assert_string_equal(fn->async.on_failure, "function:resize");
    assert_string_equal(fn->async.dead_letter, "redis://[::1]:6379/stream/thumbnail-dlq");

    fn = must_find(cfg, "resize");
    assert_int_equal(fn->runtime, CFG_RUNTIME_NODE);
    assert_string_equal(fn->handler, "src/index.handler");
    expect_code_dir(fn, "node");
    assert_int_equal(fn->memory_mb, 128);
    assert_int_equal(fn->timeout_s, 1);
    assert_int_equal(fn->reserved_concurrency, 0);
    assert_int_equal(fn->provisioned_concurrency, 0);
    assert_int_equal(fn->max_idle_s, 1);
    assert_int_equal(fn->async.maximum_retry_attempts, 2);
    assert_string_equal(fn->async.on_success, "kafka://k1:9092,k2:9093/resized.v1");
    assert_string_equal(fn->async.on_failure, "mqtt://localhost:1883/sy/failed");
    assert_string_equal(fn->async.dead_letter, "https://hooks.example.com:8443/dlq?fn=resize");

    fn = must_find(cfg, "shell-fn");
    assert_int_equal(fn->runtime, CFG_RUNTIME_SHELL);
    assert_string_equal(fn->handler, "handler.handle");
    expect_code_dir(fn, "sh");
    assert_int_equal(fn->reserved_concurrency, -1);
    assert_int_equal(fn->provisioned_concurrency, 50); /* up to broker.max_concurrency */
    assert_int_equal(fn->async.n_retry_delays, 1);
    assert_int_equal(fn->async.retry_delays_s[0], 1);
    assert_int_equal(fn->async.maximum_event_age_s, 21600);
    assert_string_equal(fn->async.on_success, "http://example.com");
    assert_string_equal(fn->async.on_failure, "redis://redis.local:6379/list/failed");
    assert_string_equal(fn->async.dead_letter, "function:thumbnail");

    fn = must_find(cfg, "custom_1");
    assert_int_equal(fn->runtime, CFG_RUNTIME_PROVIDED);
    assert_null(fn->handler);
    expect_code_dir(fn, "prov");
    expect_async_defaults(&fn->async);
    cfg_destroy(cfg);
}

static void test_good_interpolation(void **state)
{
    struct cfg *cfg;
    const struct cfg_function *fn;
    char code[PATH_MAX + 64];

    path_in_src(code, sizeof(code), "tests/data/config/code/py");
    setenv("SY_CFGTEST_HOST", "127.0.0.2", 1);
    setenv("SY_CFGTEST_PORT", "9100", 1);
    setenv("SY_CFGTEST_EMPTY", "", 1);
    setenv("SY_CFGTEST_RUNTIME", "python3", 1);
    setenv("SY_CFGTEST_CODE_DIR", code, 1);
    setenv("SY_CFGTEST_GREETING", "hello", 1);
    unsetenv("SY_CFGTEST_UNSET");
    unsetenv("SY_CFGTEST_UNSET_TOKEN");
    unsetenv("SY_CFGTEST_MEMORY");

    cfg = load_good("interpolation.yaml");
    assert_string_equal(cfg->broker.listen, "127.0.0.2:9100");
    assert_string_equal(cfg->broker.listen_host, "127.0.0.2");
    assert_int_equal(cfg->broker.listen_port, 9100);
    assert_null(cfg->broker.auth_token); /* ${X:-} with X unset: empty, so no token */
    assert_string_equal(cfg->broker.region, "ap-south-1");
    assert_int_equal(cfg->broker.max_concurrency, 7); /* set but empty takes the default */

    fn = must_find(cfg, "interp");
    assert_int_equal(fn->runtime, CFG_RUNTIME_PYTHON3);
    assert_string_equal(fn->handler, "app.handler");
    assert_string_equal(fn->code, code);
    assert_int_equal(fn->memory_mb, 256);
    assert_int_equal(fn->n_environment, 5);
    assert_string_equal(fn->environment[0].value, "$5 and $$ and a lone $ sign");
    assert_string_equal(fn->environment[1].value, "hello world");
    assert_string_equal(fn->environment[2].value, "a default with spaces");
    assert_string_equal(fn->environment[3].value, "xy");
    assert_string_equal(fn->environment[4].value, "$HOME and $");
    assert_string_equal(fn->async.on_failure, "file:/var/tmp/sy-failed");
    cfg_destroy(cfg);

    /* A set variable wins over the default. */
    setenv("SY_CFGTEST_MEMORY", "512", 1);
    cfg = load_good("interpolation.yaml");
    assert_int_equal(must_find(cfg, "interp")->memory_mb, 512);
    cfg_destroy(cfg);
    unsetenv("SY_CFGTEST_MEMORY");
}

static void test_good_ipv6(void **state)
{
    struct cfg *cfg = load_good("ipv6.yaml");

    assert_string_equal(cfg->broker.listen, "[::1]:0");
    assert_string_equal(cfg->broker.listen_host, "::1");
    assert_int_equal(cfg->broker.listen_port, 0);
    assert_null(cfg->broker.auth_token);
    assert_int_equal(cfg->n_functions, 0);
    cfg_destroy(cfg);
}

static void test_good_localhost(void **state)
{
    struct cfg *cfg = load_good("localhost.yaml");

    assert_string_equal(cfg->broker.listen_host, "localhost");
    assert_int_equal(cfg->broker.listen_port, 65535);
    assert_null(cfg->broker.auth_token); /* "" is no token */
    assert_string_equal(cfg->broker.data_dir, "/tmp/sy-config-test-data");
    assert_int_equal(cfg->n_functions, 0);
    cfg_destroy(cfg);
}

static void test_good_mappings(void **state)
{
    struct cfg *cfg = load_good("mappings.yaml");
    const struct cfg_mapping *d, *e;
    const struct src_redis_cfg *rd, *re;
    const struct cfg_mapping *k;
    const struct src_kafka_cfg *kc;

    assert_int_equal(cfg->n_mappings, 5);
    d = cfg_mapping_find(cfg, "defaults");
    e = cfg_mapping_find(cfg, "everything");
    assert_non_null(d);
    assert_non_null(e);
    assert_null(cfg_mapping_find(cfg, "nope"));
    /* Defaults: the source's batch size (SQS's 10) and window (0), Lambda's -1s. */
    assert_string_equal(d->source_kind->sec.name, "redis");
    assert_string_equal(d->function, "f");
    assert_int_equal(d->enabled, 1);
    assert_int_equal(d->batch_size, 10);
    assert_int_equal(d->maximum_batching_window_ms, 0);
    assert_int_equal(d->n_filters, 0);
    assert_int_equal(d->maximum_concurrency, 5);
    assert_int_equal(d->report_batch_item_failures, 0);
    assert_int_equal(d->bisect_batch_on_function_error, 0);
    assert_int_equal(d->maximum_retry_attempts, -1);
    assert_int_equal(d->maximum_record_age_s, -1);
    assert_null(d->on_failure);
    assert_int_equal(d->max_records_in_flight, 1000);
    rd = d->source;
    assert_string_equal(rd->url, "redis://127.0.0.1:6379");
    assert_string_equal(rd->list, "jobs");
    assert_null(rd->stream);
    assert_int_equal(rd->visibility_timeout_s, 30);
    assert_int_equal(rd->max_receive_count, 0);
    assert_null(rd->dead_letter);
    /* Every key given. */
    assert_int_equal(e->enabled, 0);
    assert_int_equal(e->batch_size, 500);
    assert_int_equal(e->maximum_batching_window_ms, 250);
    assert_int_equal(e->n_filters, 2);
    assert_string_equal(e->filters[0], "{\"body\": {\"type\": [\"order\"]}}");
    assert_int_equal(e->maximum_concurrency, 8);
    assert_int_equal(e->report_batch_item_failures, 1);
    assert_int_equal(e->bisect_batch_on_function_error, 1);
    assert_int_equal(e->maximum_retry_attempts, 3);
    assert_int_equal(e->maximum_record_age_s, 3600);
    assert_non_null(strstr(e->on_failure, "file:/"));
    assert_non_null(strstr(e->on_failure, "/failed"));
    assert_int_equal(e->max_records_in_flight, 5000);
    re = e->source;
    assert_string_equal(re->stream, "events");
    assert_string_equal(re->group, "workers");
    assert_null(re->list);
    /* Kafka: Lambda's Kafka defaults (batch 100, window 500 ms), properties kept in order. */
    k = cfg_mapping_find(cfg, "kafka-orders");
    assert_non_null(k);
    assert_string_equal(k->source_kind->sec.name, "kafka");
    assert_int_equal(k->batch_size, 100);
    assert_int_equal(k->maximum_batching_window_ms, 500);
    kc = k->source;
    assert_string_equal(kc->bootstrap_servers, "127.0.0.1:9092,127.0.0.1:9093");
    assert_int_equal(kc->topics.n, 2);
    assert_string_equal(kc->topics.v[1], "^audit-.*");
    assert_string_equal(kc->consumer_group, "sy-orders");
    assert_int_equal(kc->starting_position, SRC_KAFKA_AT_TIMESTAMP);
    assert_int_equal(kc->starting_position_timestamp, 1700000000);
    assert_int_equal(kc->properties.n, 3);
    assert_string_equal(kc->properties.keys[0], "session.timeout.ms");
    assert_string_equal(kc->properties.vals[0], "10000");
    assert_string_equal(kc->properties.vals[2], "cooperative-sticky");
    /* A version or an alias: kept as written, resolved by the mapping for each batch. */
    assert_string_equal(cfg_mapping_find(cfg, "on-alias")->function, "f:live");
    assert_string_equal(cfg_mapping_find(cfg, "on-version")->function, "f:$LATEST");
    cfg_destroy(cfg);
}

/*
 * One mapping alone (CreateEventSourceMapping's definitions): the file's rules and defaults,
 * any well-formed function name, `$$` for a literal `$`, and every problem named by its key.
 */
static void test_mapping_parse(void **state)
{
    static const char good[] =
        "{\"name\": \"esm-1\", \"function\": \"anything:$$LATEST\", \"batch_size\": 7,"
        " \"source\": {\"redis\": {\"url\": \"redis://127.0.0.1:6379\", \"list\": \"a$$b\"}},"
        " \"filters\": [\"{\\\"body\\\": {\\\"k\\\": [\\\"$${x}\\\"]}}\"]}";
    static const char bad[] =
        "{\"name\": \"esm-2\", \"function\": \"bad name\", \"batch_size\": 0,"
        " \"source\": {\"redis\": {\"url\": \"redis://127.0.0.1:6379\"}},"
        " \"maximum_record_age_s\": 30}";
    struct cfg *cfg = load_good("mappings.yaml");
    struct cfg_errors errs = {0};
    struct cfg_mapping *mp;
    const struct src_redis_cfg *rc;

    (void)state;
    mp = cfg_mapping_parse(cfg, mapping_cfg_schema(), "request", good, strlen(good), &errs);
    if (mp == NULL)
        fail_msg("%s", errs.n > 0 ? errs.msgs[0] : "no message");
    assert_string_equal(mp->function, "anything:$LATEST");
    assert_int_equal(mp->batch_size, 7);
    assert_int_equal(mp->maximum_batching_window_ms, 0);
    assert_int_equal(mp->max_records_in_flight, 1000);
    assert_string_equal(mp->filters[0], "{\"body\": {\"k\": [\"${x}\"]}}");
    rc = mp->source;
    assert_string_equal(rc->list, "a$b");
    cfg_mapping_free(mp);
    /* The file is untouched: still its own five mappings. */
    assert_int_equal(cfg->n_mappings, 5);

    mp = cfg_mapping_parse(cfg, mapping_cfg_schema(), "request", bad, strlen(bad), &errs);
    assert_null(mp);
    assert_int_equal(errs.n, 4);
    assert_non_null(strstr(errs.msgs[0], "request:1:"));
    assert_non_null(strstr(errs.msgs[0], ": mappings[0].function: invalid function name"));
    assert_non_null(strstr(errs.msgs[1], ": mappings[0].batch_size: must be 1..10000 (got 0)"));
    assert_non_null(strstr(errs.msgs[2], ": mappings[0].source.redis: one of list"));
    assert_non_null(strstr(errs.msgs[3], ": mappings[0].maximum_record_age_s: must be -1"));
    cfg_errors_clear(&errs);

    mp = cfg_mapping_parse(cfg, mapping_cfg_schema(), "request", "[1]", 3, &errs);
    assert_null(mp);
    assert_int_equal(errs.n, 1);
    assert_non_null(strstr(errs.msgs[0], "mappings[0]: must be a mapping"));
    cfg_errors_clear(&errs);
    cfg_destroy(cfg);
}

/* File-drop sources: S3's one record per event by default, paths made absolute against the
 * config file, the default ignore patterns filled in, actions kept as written (move: made
 * absolute). */
static void test_good_fs(void **state)
{
    struct cfg *cfg = load_good("fs.yaml");
    const struct cfg_mapping *d = cfg_mapping_find(cfg, "fs-defaults");
    const struct cfg_mapping *e = cfg_mapping_find(cfg, "fs-everything");
    const struct src_fs_cfg *dc, *ec;
    char want[PATH_MAX + 64];

    assert_non_null(d);
    assert_non_null(e);
    assert_string_equal(d->source_kind->sec.name, "fs");
    assert_int_equal(d->batch_size, 1);
    assert_int_equal(d->maximum_batching_window_ms, 0);
    dc = d->source;
    snprintf(want, sizeof(want), "%s/inbox", cfg->base_dir);
    assert_string_equal(dc->path, want);
    assert_int_equal(dc->recursive, 0);
    assert_string_equal(dc->prefix, "");
    assert_string_equal(dc->suffix, "");
    assert_null(dc->bucket);
    assert_string_equal(dc->on_success, "keep");
    assert_string_equal(dc->on_failure, "keep");
    assert_int_equal(dc->min_age_ms, 0);
    assert_int_equal(dc->ignore.n, 4);
    assert_string_equal(dc->ignore.v[0], ".*");
    assert_string_equal(dc->ignore.v[3], "*.swp");
    assert_int_equal(e->batch_size, 10);
    ec = e->source;
    assert_string_equal(ec->path, "/srv/landing");
    assert_int_equal(ec->recursive, 1);
    assert_string_equal(ec->prefix, "uploads/");
    assert_string_equal(ec->suffix, ".csv");
    assert_int_equal(ec->ignore.n, 2);
    assert_string_equal(ec->ignore.v[1], "tmp/*");
    assert_string_equal(ec->bucket, "landing-zone");
    snprintf(want, sizeof(want), "move:%s/done", cfg->base_dir);
    assert_string_equal(ec->on_success, want);
    assert_string_equal(ec->on_failure, "move:/srv/failed");
    assert_int_equal(ec->min_age_ms, 5000);
    assert_int_equal(ec->scan_interval_ms, 250);
    cfg_destroy(cfg);
}

/* MQTT sources: Amazon MQ's batch defaults, QoS 1 and a persistent 3.1.1 session by default,
 * TLS paths made absolute against the config file. */
static void test_good_mqtt(void **state)
{
    struct cfg *cfg = load_good("mqtt.yaml");
    const struct cfg_mapping *d = cfg_mapping_find(cfg, "mqtt-defaults");
    const struct cfg_mapping *e = cfg_mapping_find(cfg, "mqtt-everything");
    const struct src_mqtt_cfg *dc, *ec;
    char want[PATH_MAX + 64];

    (void)state;
    assert_non_null(d);
    assert_non_null(e);
    assert_string_equal(d->source_kind->sec.name, "mqtt");
    assert_string_equal(d->source_kind->data_key, "payload");
    assert_int_equal(d->batch_size, 100);
    assert_int_equal(d->maximum_batching_window_ms, 500);
    dc = d->source;
    assert_string_equal(dc->url, "mqtt://127.0.0.1");
    assert_int_equal(dc->topics.n, 1);
    assert_string_equal(dc->topics.v[0], "sensors/#");
    assert_int_equal(dc->qos, 1);
    assert_null(dc->client_id);
    assert_null(dc->username);
    assert_int_equal(dc->clean_session, 0);
    assert_int_equal(dc->session_expiry_s, 86400);
    assert_int_equal(dc->protocol, SRC_MQTT_V311);
    assert_null(dc->shared_group);
    assert_int_equal(dc->keepalive_s, 30);
    assert_int_equal(dc->spool_max_messages, 10000);
    assert_int_equal(dc->spool_max_mb, 256);
    ec = e->source;
    assert_int_equal(e->batch_size, 10);
    assert_string_equal(ec->url, "mqtts://[::1]:8884");
    assert_string_equal(ec->username, "sy");
    assert_string_equal(ec->password, "secret");
    assert_int_equal(ec->topics.n, 2);
    assert_string_equal(ec->topics.v[1], "alarms/#");
    assert_int_equal(ec->qos, 2);
    assert_string_equal(ec->client_id, "edge-1");
    assert_int_equal(ec->clean_session, 1);
    assert_int_equal(ec->session_expiry_s, 600);
    assert_int_equal(ec->protocol, SRC_MQTT_V5);
    assert_string_equal(ec->shared_group, "workers");
    assert_int_equal(ec->keepalive_s, 10);
    snprintf(want, sizeof(want), "%s/certs/ca.pem", cfg->base_dir);
    assert_string_equal(ec->ca_file, want);
    assert_string_equal(ec->cert_file, "/etc/sy/client.pem");
    assert_string_equal(ec->key_file, "/etc/sy/client.key");
    assert_int_equal(ec->spool_max_messages, 500);
    assert_int_equal(ec->spool_max_mb, 8);
    cfg_destroy(cfg);
}

/* The example shipped with the repository keeps loading. */
static void test_good_quickstart_example(void **state)
{
    char path[PATH_MAX + 64];
    struct cfg_errors errs = {0};
    struct cfg *cfg;

    path_in_src(path, sizeof(path), "examples/quickstart/switchyard.yaml");
    cfg = cfg_load_t(path, NULL, &errs);
    for (size_t i = 0; i < errs.n; i++)
        print_error("%s\n", errs.msgs[i]);
    assert_non_null(cfg);
    assert_int_equal(cfg->n_functions, 3); /* hello-python, hello-node, csv-summary */
    assert_int_equal(cfg->n_mappings, 1);  /* csv-drop: the file drop */
    assert_int_equal(must_find(cfg, "hello-node")->provisioned_concurrency, 1);
    cfg_destroy(cfg);
    cfg_errors_clear(&errs);
}

/*
 * Every identifier `runtime:` accepts: the function of good/runtimes.yaml that uses it, its
 * family and the interpreter version it asks for (0/0: any).
 */
static const struct runtime_case {
    const char *fn, *id;
    enum cfg_runtime rt;
    int major, minor;
} runtime_cases[] = {
    {"plain-python", "python3", CFG_RUNTIME_PYTHON3, 0, 0},
    {"plain-node", "node", CFG_RUNTIME_NODE, 0, 0},
    {"plain-shell", "shell", CFG_RUNTIME_SHELL, 0, 0},
    {"plain-provided", "provided", CFG_RUNTIME_PROVIDED, 0, 0},
    {"py39", "python3.9", CFG_RUNTIME_PYTHON3, 3, 9},
    {"py310", "python3.10", CFG_RUNTIME_PYTHON3, 3, 10},
    {"py311", "python3.11", CFG_RUNTIME_PYTHON3, 3, 11},
    {"py312", "python3.12", CFG_RUNTIME_PYTHON3, 3, 12},
    {"py313", "python3.13", CFG_RUNTIME_PYTHON3, 3, 13},
    {"node18", "nodejs18.x", CFG_RUNTIME_NODE, 18, 0},
    {"node20", "nodejs20.x", CFG_RUNTIME_NODE, 20, 0},
    {"node22", "nodejs22.x", CFG_RUNTIME_NODE, 22, 0},
    {"al1", "provided", CFG_RUNTIME_PROVIDED, 0, 0},
    {"al2", "provided.al2", CFG_RUNTIME_PROVIDED, 0, 0},
    {"al2023", "provided.al2023", CFG_RUNTIME_PROVIDED, 0, 0},
    {"quoted", "python3.10", CFG_RUNTIME_PYTHON3, 3, 10},
};

#define N_RUNTIME_CASES (sizeof(runtime_cases) / sizeof(runtime_cases[0]))

/* Each identifier loads into its family, kept as written, with its version; strict_runtimes. */
static void test_good_runtimes(void **state)
{
    struct cfg *cfg = load_good("runtimes.yaml");

    (void)state;
    assert_int_equal(cfg->broker.strict_runtimes, 1);
    assert_int_equal(cfg->n_functions, N_RUNTIME_CASES);
    for (size_t i = 0; i < N_RUNTIME_CASES; i++) {
        const struct runtime_case *c = &runtime_cases[i];
        const struct cfg_function *fn = must_find(cfg, c->fn);

        assert_int_equal(fn->runtime, c->rt);
        assert_string_equal(fn->runtime_id, c->id);
        assert_int_equal(fn->runtime_major, c->major);
        assert_int_equal(fn->runtime_minor, c->minor);
    }
    cfg_destroy(cfg);
}

/* cfg_runtime_parse() on every accepted identifier, on near misses, and with NULL outputs. */
static void test_runtime_parse(void **state)
{
    static const char *const unknown[] = {
        "",           "python",      "Python3",     "python3.8",    "python3.14", "python3.",
        "python3.1",  "python3.120", "python2.7",   "nodejs16.x",   "nodejs24.x", "nodejs20",
        "nodejs20.X", "nodejs",      "node20",      "provided.al1", "provided.",  "java21",
        "ruby3.3",    " python3",    "python3.12 ", "SHELL",        "bash",
    };
    enum cfg_runtime rt;
    int major, minor;

    (void)state;
    for (size_t i = 0; i < N_RUNTIME_CASES; i++) {
        const struct runtime_case *c = &runtime_cases[i];

        rt = c->rt == CFG_RUNTIME_SHELL ? CFG_RUNTIME_NODE : CFG_RUNTIME_SHELL; /* not the answer */
        major = minor = -1;
        assert_int_equal(cfg_runtime_parse(c->id, &rt, &major, &minor), 0);
        assert_int_equal(rt, c->rt);
        assert_int_equal(major, c->major);
        assert_int_equal(minor, c->minor);
        assert_int_equal(cfg_runtime_parse(c->id, NULL, NULL, NULL), 0);
    }
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        rt = CFG_RUNTIME_SHELL;
        major = minor = 42;
        if (cfg_runtime_parse(unknown[i], &rt, &major, &minor) != -1)
            fail_msg("'%s' was accepted", unknown[i]);
        /* Untouched on failure. */
        assert_int_equal(rt, CFG_RUNTIME_SHELL);
        assert_int_equal(major, 42);
        assert_int_equal(minor, 42);
    }
    assert_int_equal(cfg_runtime_parse(NULL, &rt, &major, &minor), -1);
}

/* The accepted list names exactly the identifiers cfg_runtime_parse() takes, in order. */
static void test_runtime_accepted(void **state)
{
    char *list = strdup(cfg_runtime_accepted());
    char *save = NULL;
    size_t n = 0;

    (void)state;
    assert_non_null(list);
    assert_string_equal(list, "python3, node, shell, provided, python3.9, python3.10, python3.11, "
                              "python3.12, python3.13, nodejs18.x, nodejs20.x, nodejs22.x, "
                              "provided.al2, provided.al2023");
    for (char *tok = strtok_r(list, ", ", &save); tok != NULL; tok = strtok_r(NULL, ", ", &save)) {
        assert_int_equal(cfg_runtime_parse(tok, NULL, NULL, NULL), 0);
        n++;
    }
    assert_int_equal(n, 14);
    free(list);
    assert_ptr_equal(cfg_runtime_accepted(), cfg_runtime_accepted());
}

/* An unknown runtime is an error whose message lists every accepted identifier. */
static void test_runtime_unknown_lists_accepted(void **state)
{
    char path[PATH_MAX + 64], want[1024];
    struct cfg_errors errs = {0};
    size_t found = 0;

    (void)state;
    path_in_src(path, sizeof(path), "tests/data/config/bad/bad_runtime.yaml");
    assert_null(cfg_load_t(path, NULL, &errs));
    snprintf(want, sizeof(want), "functions.retired.runtime: must be one of %s (got 'python3.8')",
             cfg_runtime_accepted());
    for (size_t i = 0; i < errs.n; i++)
        if (strstr(errs.msgs[i], want) != NULL)
            found++;
    assert_int_equal(found, 1);
    cfg_errors_clear(&errs);
}

/*
 * code: a .zip, layers: directories and .zips in order, made absolute; an empty list is none; a
 * provided function without a bootstrap of its own loads when it has layers (the bootstrap may
 * come from one: deploy_prepare_file() checks that once they are merged). Copy, equal and
 * clear carry the layers.
 */
static void test_good_layers(void **state)
{
    struct cfg *cfg = load_good("layers.yaml");
    const struct cfg_function *fn;
    struct cfg_function copy;
    char want[PATH_MAX + 64];

    fn = must_find(cfg, "zipped");
    expect_code_dir(fn, "pkg.zip");
    assert_null(fn->task_root);
    assert_null(fn->code_sha256);
    assert_int_equal(fn->n_layers, 2);
    snprintf(want, sizeof(want), "%s/tests/data/config/code/node", src_dir);
    assert_string_equal(fn->layers[0], want);
    snprintf(want, sizeof(want), "%s/tests/data/config/code/layer.zip", src_dir);
    assert_string_equal(fn->layers[1], want);

    assert_int_equal(cfg_function_copy(&copy, fn), 0);
    assert_int_equal(copy.n_layers, 2);
    assert_ptr_not_equal(copy.layers, fn->layers);
    assert_string_equal(copy.layers[1], fn->layers[1]);
    assert_true(cfg_function_equal(&copy, fn));
    copy.layers[1][strlen(copy.layers[1]) - 5] = 'X'; /* another layer */
    assert_false(cfg_function_equal(&copy, fn));
    copy.n_layers = 1;
    assert_false(cfg_function_equal(&copy, fn));
    copy.n_layers = 2;
    cfg_function_clear(&copy);
    assert_null(copy.layers);
    assert_int_equal(copy.n_layers, 0);

    fn = must_find(cfg, "plain");
    assert_int_equal(fn->n_layers, 0);
    assert_null(fn->layers);
    fn = must_find(cfg, "custom");
    assert_int_equal(fn->n_layers, 1);
    expect_code_dir(fn, "prov-nobootstrap");
    cfg_destroy(cfg);
}

/* ---------------------------------------------------------------------------------------------
 * Bad configs against their goldens
 * ------------------------------------------------------------------------------------------- */

/* Every NAME under bad/, each run as its own test; test_bad_all_listed finds any left out. */
static const char *const bad_names[] = {
    "bad_name",     "bad_runtime",     "broker_values", "destinations",    "duplicates",
    "env_names",    "env_too_big",     "fs_source",     "interpolation",   "listen_forms",
    "layers",       "mappings",        "mqtt_source",
    "missing_code", "missing_handler", "non_loopback",  "non_loopback_v6", "provided_bootstrap",
    "ranges",       "ranges_broker",   "reserved_sum",  "sections",        "several",
    "syntax",       "syntax_quote",    "syntax_utf8",   "toplevel",        "unknown_key",
    "wrong_types",
};

static void test_bad(void **state)
{
    const char *name = *state;
    char dir[PATH_MAX + 64], cwd[PATH_MAX], yaml[256], golden[256];
    struct cfg_errors errs = {0};
    struct cfg *cfg;
    char *want, *got;
    size_t len = 1;

    /* No test may depend on what the environment happens to hold. */
    unsetenv("SY_CFGTEST_UNDEFINED");
    path_in_src(dir, sizeof(dir), "tests/data/config/bad");
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    if (chdir(dir) != 0)
        fail_msg("chdir %s: %s", dir, strerror(errno));
    snprintf(yaml, sizeof(yaml), "%s.yaml", name);
    snprintf(golden, sizeof(golden), "%s.expected", name);

    cfg = cfg_load_t(yaml, NULL, &errs);
    if (cfg != NULL) {
        cfg_destroy(cfg);
        assert_int_equal(chdir(cwd), 0);
        fail_msg("%s loaded without errors", yaml);
    }
    assert_true(errs.n > 0);
    for (size_t i = 0; i < errs.n; i++)
        len += strlen(errs.msgs[i]) + 1;
    got = calloc(1, len);
    assert_non_null(got);
    for (size_t i = 0; i < errs.n; i++) {
        strcat(got, errs.msgs[i]);
        strcat(got, "\n");
    }
    cfg_errors_clear(&errs);
    assert_int_equal(errs.n, 0);
    assert_null(errs.msgs);

    if (getenv("SY_UPDATE_GOLDEN") != NULL) {
        FILE *f = fopen(golden, "w");

        assert_non_null(f);
        fputs(got, f);
        fclose(f);
    }
    want = slurp(golden);
    assert_int_equal(chdir(cwd), 0);
    if (want == NULL) {
        free(got);
        fail_msg("missing golden %s/%s", dir, golden);
    }
    if (strcmp(want, got) != 0) {
        print_error("--- %s (expected)\n%s--- got\n%s", golden, want, got);
        free(want);
        free(got);
        fail_msg("%s: the errors differ from the golden", yaml);
    }
    free(want);
    free(got);
}

/* Each bad/NAME.yaml has a NAME.expected and is in bad_names[]. */
static void test_bad_all_listed(void **state)
{
    char dir[PATH_MAX + 64];
    DIR *d;
    struct dirent *de;
    size_t n_yaml = 0;

    path_in_src(dir, sizeof(dir), "tests/data/config/bad");
    d = opendir(dir);
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        bool listed = false;

        if (len < 6 || strcmp(de->d_name + len - 5, ".yaml") != 0)
            continue;
        n_yaml++;
        for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++)
            if (strlen(bad_names[i]) == len - 5 && strncmp(bad_names[i], de->d_name, len - 5) == 0)
                listed = true;
        if (!listed) {
            closedir(d);
            fail_msg("%s/%s is not in bad_names[] of test_config.c", dir, de->d_name);
        }
    }
    closedir(d);
    assert_int_equal(n_yaml, sizeof(bad_names) / sizeof(bad_names[0]));
}

/* ---------------------------------------------------------------------------------------------
 * The rest of the API
 * ------------------------------------------------------------------------------------------- */

static void test_missing_file(void **state)
{
    struct cfg_errors errs = {0};

    assert_null(cfg_load_t("/nonexistent/switchyard.yaml", NULL, &errs));
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.msgs[0], "/nonexistent/switchyard.yaml:1:1: (document): cannot read "
                                      "the file: No such file or directory");
    cfg_errors_clear(&errs);
    cfg_errors_clear(&errs); /* twice is fine */
    cfg_errors_clear(NULL);
    cfg_destroy(NULL);
}

/* Errors of a second load are added after those already in ERRS. */
static void test_errors_accumulate(void **state)
{
    struct cfg_errors errs = {0};

    assert_null(cfg_load_t("/nonexistent/a.yaml", NULL, &errs));
    assert_null(cfg_load_t("/nonexistent/b.yaml", NULL, &errs));
    assert_int_equal(errs.n, 2);
    assert_non_null(strstr(errs.msgs[0], "/nonexistent/a.yaml:"));
    assert_non_null(strstr(errs.msgs[1], "/nonexistent/b.yaml:"));
    cfg_errors_clear(&errs);
}

/* A relative path is resolved: cfg->path and the code dirs are absolute. */
static void test_relative_path(void **state)
{
    char dir[PATH_MAX + 64], cwd[PATH_MAX], want[PATH_MAX + 128];
    struct cfg_errors errs = {0};
    struct cfg *cfg;

    path_in_src(dir, sizeof(dir), "tests/data/config");
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(dir), 0);
    cfg = cfg_load_t("good/../good/minimal.yaml", NULL, &errs);
    assert_int_equal(chdir(cwd), 0);
    assert_non_null(cfg);
    snprintf(want, sizeof(want), "%s/good/minimal.yaml", dir);
    assert_string_equal(cfg->path, want);
    expect_code_dir(&cfg->functions[0], "py");
    cfg_destroy(cfg);
}

static void test_runtime_names(void **state)
{
    assert_string_equal(cfg_runtime_name(CFG_RUNTIME_PYTHON3), "python3");
    assert_string_equal(cfg_runtime_name(CFG_RUNTIME_NODE), "node");
    assert_string_equal(cfg_runtime_name(CFG_RUNTIME_SHELL), "shell");
    assert_string_equal(cfg_runtime_name(CFG_RUNTIME_PROVIDED), "provided");
    assert_null(cfg_function_find(NULL, "x"));
}

#define N_BAD (sizeof(bad_names) / sizeof(bad_names[0]))

static const struct CMUnitTest fixed_tests[] = {
    cmocka_unit_test(test_good_minimal),   cmocka_unit_test(test_good_empty),
    cmocka_unit_test(test_good_full),      cmocka_unit_test(test_good_interpolation),
    cmocka_unit_test(test_good_ipv6),      cmocka_unit_test(test_good_localhost),
    cmocka_unit_test(test_good_mappings),  cmocka_unit_test(test_good_fs),
    cmocka_unit_test(test_good_mqtt),      cmocka_unit_test(test_good_runtimes),
    cmocka_unit_test(test_good_layers),
    cmocka_unit_test(test_runtime_parse),  cmocka_unit_test(test_runtime_accepted),
    cmocka_unit_test(test_runtime_unknown_lists_accepted),
    cmocka_unit_test(test_mapping_parse),
    cmocka_unit_test(test_good_quickstart_example),
    cmocka_unit_test(test_missing_file),   cmocka_unit_test(test_errors_accumulate),
    cmocka_unit_test(test_relative_path),  cmocka_unit_test(test_runtime_names),
    cmocka_unit_test(test_bad_all_listed),
};

#define N_FIXED (sizeof(fixed_tests) / sizeof(fixed_tests[0]))

int main(void)
{
    const char *env = getenv("SY_SOURCE_DIR");
    char *real = realpath(env != NULL && env[0] != '\0' ? env : ".", NULL);
    static char bad_titles[N_BAD][64];
    struct CMUnitTest config_tests[N_FIXED + N_BAD];

    if (real == NULL) {
        fprintf(stderr, "test_config: cannot resolve SY_SOURCE_DIR: %s\n", strerror(errno));
        return 1;
    }
    snprintf(src_dir, sizeof(src_dir), "%s", real);
    free(real);

    /* The fixed tests, then one test per bad config, named after it. */
    memcpy(config_tests, fixed_tests, sizeof(fixed_tests));
    for (size_t i = 0; i < N_BAD; i++) {
        struct CMUnitTest *t = &config_tests[N_FIXED + i];

        memset(t, 0, sizeof(*t));
        snprintf(bad_titles[i], sizeof(bad_titles[i]), "test_bad/%s", bad_names[i]);
        t->name = bad_titles[i];
        t->test_func = test_bad;
        t->initial_state = (void *)bad_names[i];
    }
    return cmocka_run_group_tests(config_tests, NULL, NULL);
}
