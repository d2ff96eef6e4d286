/*
 * tests/integration/test_reload.c - `switchyard reload` and SIGHUP: a changed file is applied
 * without a restart (a function updated, one removed, one added, reported as such), a broken
 * file is refused whole and the running configuration stays, a changed broker key is reported
 * as needing a restart, and reloads under load at concurrency 8 answer every request.
 */
#include "itest.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* clang-format off */
#define FUNCS_V0                                                                                   \
    "functions:\n"                                                                                 \
    "  loaded:\n"                                                                                  \
    "    runtime: python3\n"                                                                       \
    "    handler: app.env\n"                                                                       \
    "    code: @HANDLERS@/python\n"                                                                \
    "    environment:\n"                                                                           \
    "      TAG: '0'\n"
static const char config_v0[] = ITEST_BROKER_YAML FUNCS_V0
    "  other:\n"
    "    runtime: python3\n"
    "    handler: app.echo\n"
    "    code: @HANDLERS@/python\n";
static const char config_v1[] = ITEST_BROKER_YAML
    "functions:\n"
    "  loaded:\n"
    "    runtime: python3\n"
    "    handler: app.env\n"
    "    code: @HANDLERS@/python\n"
    "    environment:\n"
    "      TAG: '1'\n"
    "  added-fn:\n"
    "    runtime: python3\n"
    "    handler: app.echo\n"
    "    code: @HANDLERS@/python\n";
static const char config_listen[] =
    "broker:\n"
    "  listen: 127.0.0.1:1\n"
    "  data_dir: @DATA@\n"
    "  shutdown_grace_ms: 2000\n"
    FUNCS_V0;
#define MAP_FS(name, dir, batch)                                                                  \
    "  - name: " name "\n"                                                                         \
    "    function: other\n"                                                                        \
    "    batch_size: " batch "\n"                                                                  \
    "    source:\n"                                                                                \
    "      fs: {path: @DIR@/" dir ", on_success: delete}\n"
static const char config_maps1[] = ITEST_BROKER_YAML FUNCS_V0
    "  other:\n"
    "    runtime: python3\n"
    "    handler: app.echo\n"
    "    code: @HANDLERS@/python\n"
    "mappings:\n" MAP_FS("m1", "inbox1", "10");
static const char config_maps2[] = ITEST_BROKER_YAML FUNCS_V0
    "  other:\n"
    "    runtime: python3\n"
    "    handler: app.echo\n"
    "    code: @HANDLERS@/python\n"
    "mappings:\n" MAP_FS("m1", "inbox1", "5") MAP_FS("m2", "inbox2", "10");
/* clang-format on */

/* `switchyard reload --endpoint URL` into R. */
static void cli_reload(struct itest *t, struct h_run *r)
{
    const char *bin = getenv("SY_BINARY");
    char *url = h_broker_url(&t->b);
    char *argv[] = {(char *)(bin ? bin : "switchyard"), "reload", "--endpoint", url, NULL};

    h_proc_run(argv, NULL, t->b.dir, 60000, r);
    free(url);
}

/* The TAG `loaded` sees now ("" when the invoke fails). */
static char *tag_of_loaded(struct itest *t)
{
    struct h_http_resp r;
    json_t *j;
    char *tag;

    if (h_broker_invoke(&t->b, "loaded", "{}", (size_t)-1, NULL, &r) != 0 || r.status != 200) {
        h_http_resp_free(&r);
        return strdup("");
    }
    j = h_json_parse(r.body, r.body_len);
    tag = strdup(j != NULL ? h_json_str(json_object_get(j, "env"), "TAG") ?: "" : "");
    json_decref(j);
    h_http_resp_free(&r);
    return tag;
}

static void write_config(struct itest *t, const char *yaml)
{
    assert_int_equal(h_broker_write_config(&t->b, yaml), 0);
}

static void test_reload_applies_changes(void **state)
{
    struct itest *t = *state;
    struct h_http_resp r;
    struct h_run run;
    char *tag;

    write_config(t, config_v0);
    cli_reload(t, &run); /* back to v0, whatever ran before */
    expect_run_code(&run, 0);
    h_run_free(&run);
    write_config(t, config_v1);
    cli_reload(t, &run);
    expect_run_code(&run, 0);
    expect_contains(run.out, "function loaded: updated");
    expect_contains(run.out, "function other: removed");
    expect_contains(run.out, "function added-fn: added");
    h_run_free(&run);
    tag = tag_of_loaded(t);
    assert_string_equal(tag, "1");
    free(tag);
    assert_int_equal(h_broker_invoke(&t->b, "other", "{}", (size_t)-1, NULL, &r), 0);
    expect_status(&r, 404);
    h_http_resp_free(&r);
    assert_int_equal(h_broker_invoke(&t->b, "added-fn", "{\"x\":1}", (size_t)-1, NULL, &r), 0);
    expect_status(&r, 200);
    expect_contains(r.body, "\"x\"");
    h_http_resp_free(&r);
    /* The same file again: nothing to do. */
    cli_reload(t, &run);
    expect_run_code(&run, 0);
    expect_contains(run.out, "no change");
    h_run_free(&run);
    itest_end(t);
}

static void test_reload_broken_file_keeps_running(void **state)
{
    struct itest *t = *state;
    struct h_run run;
    char *tag;

    write_config(t, config_v1);
    cli_reload(t, &run);
    h_run_free(&run);
    write_config(t, ITEST_BROKER_YAML "functions:\n  loaded:\n    runtime: cobol\n"
                                      "    handler: app.env\n    code: /nonexistent\n");
    cli_reload(t, &run);
    assert_int_not_equal(run.code, 0);
    expect_contains(run.err, "switchyard.yaml:");
    expect_contains(run.err, "runtime");
    expect_contains(run.err, "the running configuration is kept");
    h_run_free(&run);
    tag = tag_of_loaded(t);
    assert_string_equal(tag, "1");
    free(tag);
    itest_end(t);
}

static void test_reload_restart_needed(void **state)
{
    struct itest *t = *state;
    struct h_run run;

    write_config(t, config_listen);
    cli_reload(t, &run);
    expect_run_code(&run, 0);
    expect_contains(run.out, "broker.listen: changed; takes effect at the next restart");
    h_run_free(&run);
    write_config(t, config_v0);
    cli_reload(t, &run);
    h_run_free(&run);
    itest_end(t);
}

static void test_sighup(void **state)
{
    struct itest *t = *state;
    int64_t deadline = h_now_ms() + 15000;
    char *tag = NULL;
    char *yaml = strdup(config_v0);
    char *at = strstr(yaml, "TAG: '0'");

    at[6] = '7';
    write_config(t, yaml);
    assert_int_equal(kill(t->b.proc.pid, SIGHUP), 0);
    for (;;) {
        free(tag);
        tag = tag_of_loaded(t);
        if (strcmp(tag, "7") == 0 || h_now_ms() > deadline)
            break;
        h_sleep_ms(50);
    }
    assert_string_equal(tag, "7");
    free(tag);
    free(yaml);
    write_config(t, config_v0);
    itest_end(t);
}

static void test_reload_under_load(void **state)
{
    struct itest *t = *state;
    const char *src = getenv("SY_SOURCE_DIR");
    char *script = h_strfmt("%s/tests/integration/reload/reload_load.py", src ? src : ".");
    char *url = h_broker_url(&t->b);
    char *argv[] = {"python3", script, url, t->b.config_path, "5", NULL};
    struct h_run run;

    write_config(t, config_v0);
    {
        struct h_run r0;

        cli_reload(t, &r0);
        expect_run_code(&r0, 0);
        h_run_free(&r0);
    }
    h_proc_run(argv, NULL, t->b.dir, 180000, &run);
    if (run.code != 0)
        fail_msg("reload_load.py failed (%d):\n%s\n%s", run.code, run.out, run.err);
    expect_contains(run.out, "failed=0");
    printf("%s", run.out);
    h_run_free(&run);
    free(script);
    free(url);
    itest_end(t);
}

/* Drop a file NAME into DIR (under the test dir) and wait until the mapping deleted it. */
static void drop_and_await(struct itest *t, const char *dir, const char *name)
{
    char *path = h_strfmt("%s/%s/%s", t->b.dir, dir, name);
    char *tmp = h_strfmt("%s/%s/.%s.tmp", t->b.dir, dir, name);
    int64_t deadline = h_now_ms() + 20000;
    FILE *f = fopen(tmp, "w");

    assert_non_null(f);
    fputs("{\"x\": 1}\n", f);
    fclose(f);
    assert_int_equal(rename(tmp, path), 0);
    while (access(path, F_OK) == 0 && h_now_ms() < deadline)
        h_sleep_ms(50);
    if (access(path, F_OK) == 0)
        fail_msg("%s was not processed within 20 s", path);
    free(path);
    free(tmp);
}

static void test_reload_mappings(void **state)
{
    struct itest *t = *state;
    struct h_run run;
    char *d1 = h_strfmt("%s/inbox1", t->b.dir), *d2 = h_strfmt("%s/inbox2", t->b.dir);

    mkdir(d1, 0755);
    mkdir(d2, 0755);
    write_config(t, config_maps1);
    cli_reload(t, &run);
    expect_run_code(&run, 0);
    expect_contains(run.out, "mapping m1: added");
    h_run_free(&run);
    drop_and_await(t, "inbox1", "a.json");
    write_config(t, config_maps2);
    cli_reload(t, &run);
    expect_run_code(&run, 0);
    expect_contains(run.out, "mapping m1: updated");
    expect_contains(run.out, "mapping m2: added");
    h_run_free(&run);
    drop_and_await(t, "inbox1", "b.json");
    drop_and_await(t, "inbox2", "c.json");
    write_config(t, config_v0);
    cli_reload(t, &run);
    expect_run_code(&run, 0);
    expect_contains(run.out, "mapping m1: removed");
    expect_contains(run.out, "mapping m2: removed");
    h_run_free(&run);
    free(d1);
    free(d2);
    itest_end(t);
}

static int group_setup(void **state)
{
    return itest_group_start(state, "reload", config_v0, NULL);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, itest_setup, itest_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_reload_applies_changes),
        T(test_reload_broken_file_keeps_running),
        T(test_reload_restart_needed),
        T(test_sighup),
        T(test_reload_mappings),
        T(test_reload_under_load),
    };

    itest_filter_from_env();
    return itest_run_group("reload", tests, group_setup);
}
