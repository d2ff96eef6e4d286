/*
 * tests/integration/test_lambda_runtimes.c - functions that name one of Lambda's runtimes
 * (python3.12, nodejs20.x, provided.al2) on a machine with one python3 and one node: served by
 * the local interpreter with one warning and a StateReason when its version differs,
 * AWS_EXECUTION_ENV and Runtime as Lambda has them, and broker.strict_runtimes refusing to
 * start on a mismatch while still starting when every version matches.
 *
 * The versions asked for are chosen against what this machine has (learned the way the broker
 * does, dispatcher/runtimes.c): a python3.x that differs from the local one in its minor only
 * (python3.12 on Debian 12's 3.11), the local one itself, and the same for Node.js majors.
 */
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What this machine's interpreters are, and the identifiers the tests ask for. */
static struct {
    int py_major, py_minor; /* -1: no python3 */
    char py_other[16];      /* python3.x of another minor: served with a mismatch */
    char py_same[16];       /* python3.<local minor>, "" when Lambda has no such runtime */
    int node_major;         /* -1: no node */
    char node_version[32];  /* "20.20.2" */
    char node_other[16];    /* nodejsNN.x of another major */
    char node_same[16];     /* nodejs<local major>.x, "" when Lambda has no such runtime */
} local = {.py_major = -1, .node_major = -1};

/* The interpreter the broker resolves: the preferred path if executable, else the PATH's. */
static const char *interpreter(const char *preferred, const char *name)
{
    return access(preferred, X_OK) == 0 ? preferred : name;
}

static void learn_local_versions(void)
{
    static const int node_majors[] = {18, 20, 22};
    char *py_argv[] = {(char *)interpreter("/usr/bin/python3", "python3"), "-c",
                       "import sys;print(sys.version_info[0],sys.version_info[1])", NULL};
    char *node_argv[] = {(char *)interpreter("/usr/bin/node", "node"), "-p",
                         "process.versions.node", NULL};
    struct h_run r;

    if (h_proc_run(py_argv, NULL, NULL, 10000, &r) == 0 &&
        sscanf(r.out, "%d %d", &local.py_major, &local.py_minor) == 2) {
        snprintf(local.py_other, sizeof(local.py_other), "python3.%d",
                 local.py_minor == 12 ? 13 : 12);
        if (local.py_major == 3 && local.py_minor >= 9 && local.py_minor <= 13)
            snprintf(local.py_same, sizeof(local.py_same), "python3.%d", local.py_minor);
    } else {
        local.py_major = -1;
    }
    h_run_free(&r);
    if (h_proc_run(node_argv, NULL, NULL, 10000, &r) == 0 &&
        sscanf(r.out, "%d.", &local.node_major) == 1) {
        snprintf(local.node_version, sizeof(local.node_version), "%.*s",
                 (int)strcspn(r.out, "\r\n"), r.out);
        for (size_t i = 0; i < sizeof(node_majors) / sizeof(node_majors[0]); i++) {
            if (node_majors[i] == local.node_major)
                snprintf(local.node_same, sizeof(local.node_same), "nodejs%d.x", node_majors[i]);
            else if (local.node_other[0] == '\0')
                snprintf(local.node_other, sizeof(local.node_other), "nodejs%d.x", node_majors[i]);
        }
    } else {
        local.node_major = -1;
    }
    h_run_free(&r);
}

/* One function of the config; skipped when ID is empty (no such runtime for this machine). */
static void add_function(char **yaml, const char *name, const char *id, const char *handler)
{
    char *next;

    if (id[0] == '\0')
        return;
    next = h_strfmt("%s  %s:\n    runtime: %s\n%s%s%s    code: @FIXTURES@/runtimes\n"
                    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n",
                    *yaml, name, id, handler != NULL ? "    handler: " : "",
                    handler != NULL ? handler : "", handler != NULL ? "\n" : "");
    free(*yaml);
    *yaml = next;
}

/*
 * The config: STRICT sets broker.strict_runtimes; MATCHING_ONLY leaves out the functions whose
 * version differs from the local one. DATA is the data_dir placeholder to use.
 */
static char *make_config(bool strict, bool matching_only, const char *data)
{
    char *yaml = h_strfmt("broker:\n  listen: 127.0.0.1:0\n  data_dir: %s\n"
                          "  shutdown_grace_ms: 2000\n%sfunctions:\n",
                          data, strict ? "  strict_runtimes: true\n" : "");

    if (local.py_major == 3) {
        if (!matching_only)
            add_function(&yaml, "py-other", local.py_other, "app.handler");
        add_function(&yaml, "py-same", local.py_same, "app.handler");
        add_function(&yaml, "py-plain", "python3", "app.handler");
    }
    if (local.node_major >= 0) {
        if (!matching_only)
            add_function(&yaml, "node-other", local.node_other, "app.handler");
        add_function(&yaml, "node-same", local.node_same, "app.handler");
        add_function(&yaml, "node-plain", "node", "app.handler");
    }
    add_function(&yaml, "custom", "provided.al2", NULL);
    add_function(&yaml, "sh", "shell", "exec_env.show");
    return yaml;
}

/* GetFunction FN's Configuration (new; json_decref). */
static json_t *get_configuration(struct itest *t, const char *fn)
{
    char *path = h_strfmt("/2015-03-31/functions/%s", fn);
    json_t *j = itest_api_json(&t->b, "GET", path, NULL);
    json_t *c = json_incref(json_object_get(j, "Configuration"));

    assert_non_null(c);
    json_decref(j);
    free(path);
    return c;
}

/* Invoke FN with {} and return its AWS_EXECUTION_ENV (new, or NULL when unset) and body. */
static char *invoke_exec_env(struct itest *t, const char *fn, json_t **body)
{
    struct h_http_resp r;
    json_t *j;
    const char *e;
    char *out;

    itest_invoke(t, fn, "{}", NULL, &r);
    expect_status(&r, 200);
    expect_header(&r, "X-Amz-Function-Error", NULL);
    j = resp_json(&r);
    h_http_resp_free(&r);
    e = h_json_str(j, "exec_env");
    if (e == NULL && !json_is_null(json_object_get(j, "exec_env")))
        fail_msg("%s: no exec_env in the answer", fn);
    out = e != NULL ? strdup(e) : NULL;
    if (body != NULL)
        *body = j;
    else
        json_decref(j);
    return out;
}

/* The broker log from the start (new). */
static char *broker_log(struct itest *t)
{
    char *log = h_read_file(t->b.log_path, 0, NULL);

    assert_non_null(log);
    return log;
}

/*
 * python3.12 on the local 3.11: it runs there, is told AWS_Lambda_python3.12, GetFunction says
 * Runtime python3.12 and names the interpreter in StateReason (State stays Active), and the
 * broker warned once, at start.
 */
static void test_python_other_minor(void **state)
{
    struct itest *t = *state;
    json_t *body, *c;
    char *env, *want_env, *want_reason, *log, *warning;

    if (local.py_major != 3)
        skip();
    for (int i = 0; i < 2; i++) { /* cold, then warm: still one warning */
        env = invoke_exec_env(t, "py-other", &body);
        want_env = h_strfmt("AWS_Lambda_%s", local.py_other);
        assert_non_null(env);
        assert_string_equal(env, want_env);
        /* Served by the local interpreter, whatever was asked for. */
        assert_int_equal(json_integer_value(json_array_get(json_object_get(body, "version"), 0)),
                         local.py_major);
        assert_int_equal(json_integer_value(json_array_get(json_object_get(body, "version"), 1)),
                         local.py_minor);
        json_decref(body);
        free(env);
        free(want_env);
    }

    c = get_configuration(t, "py-other");
    assert_string_equal(h_json_str(c, "Runtime"), local.py_other);
    assert_string_equal(h_json_str(c, "State"), "Active");
    want_reason = h_strfmt("runtime %s requested; served by ", local.py_other);
    expect_contains(h_json_str(c, "StateReason"), want_reason);
    free(want_reason);
    want_reason = h_strfmt("/python3 (Python %d.%d)", local.py_major, local.py_minor);
    expect_contains(h_json_str(c, "StateReason"), want_reason);
    free(want_reason);
    json_decref(c);
    /* GetFunctionConfiguration is the same object. */
    c = itest_api_json(&t->b, "GET", "/2015-03-31/functions/py-other/configuration", NULL);
    assert_string_equal(h_json_str(c, "Runtime"), local.py_other);
    assert_non_null(h_json_str(c, "StateReason"));
    json_decref(c);

    log = broker_log(t);
    warning = h_strfmt("[function:py-other] runtime %s requested; served by ", local.py_other);
    assert_int_equal(h_str_count(log, warning), 1);
    free(warning);
    free(log);
    itest_end(t);
}

/* Node.js of another major: served, told AWS_Lambda_nodejsNN.x, StateReason names it. */
static void test_node_other_major(void **state)
{
    struct itest *t = *state;
    json_t *body, *c;
    char *env, *want, *log;

    if (local.node_major < 0)
        skip();
    env = invoke_exec_env(t, "node-other", &body);
    want = h_strfmt("AWS_Lambda_%s", local.node_other);
    assert_non_null(env);
    assert_string_equal(env, want);
    assert_string_equal(h_json_str(body, "version"), local.node_version);
    json_decref(body);
    free(env);
    free(want);

    c = get_configuration(t, "node-other");
    assert_string_equal(h_json_str(c, "Runtime"), local.node_other);
    assert_string_equal(h_json_str(c, "State"), "Active");
    want = h_strfmt("runtime %s requested; served by ", local.node_other);
    expect_contains(h_json_str(c, "StateReason"), want);
    free(want);
    want = h_strfmt("/node (Node.js %s)", local.node_version);
    expect_contains(h_json_str(c, "StateReason"), want);
    free(want);
    json_decref(c);

    log = broker_log(t);
    assert_int_equal(h_str_count(log, "[function:node-other] runtime "), 1);
    free(log);
    itest_end(t);
}

/*
 * The local version by its Lambda name, and the plain names: no warning, no StateReason;
 * AWS_EXECUTION_ENV is AWS_Lambda_<id> for Lambda names and the family for plain ones, and
 * Runtime is the name given or, for the plain names, the fixed mapping.
 */
static void test_matching_and_plain(void **state)
{
    struct itest *t = *state;
    static const struct {
        const char *fn, *exec_env, *runtime; /* NULL runtime: the id itself */
    } plain[] = {
        {"py-plain", "AWS_Lambda_python3", "python3.11"},
        {"node-plain", "AWS_Lambda_nodejs", "nodejs18.x"},
    };
    struct {
        const char *fn, *id;
    } same[] = {{"py-same", local.py_same}, {"node-same", local.node_same}};
    char *log = NULL, *env, *want, *line;
    json_t *c;

    for (size_t i = 0; i < 2; i++) {
        if ((i == 0 && local.py_major != 3) || (i == 1 && local.node_major < 0))
            continue;
        env = invoke_exec_env(t, plain[i].fn, NULL);
        assert_non_null(env);
        assert_string_equal(env, plain[i].exec_env);
        free(env);
        c = get_configuration(t, plain[i].fn);
        assert_string_equal(h_json_str(c, "Runtime"), plain[i].runtime);
        assert_null(json_object_get(c, "StateReason"));
        json_decref(c);

        if (same[i].id[0] == '\0')
            continue;
        env = invoke_exec_env(t, same[i].fn, NULL);
        want = h_strfmt("AWS_Lambda_%s", same[i].id);
        assert_non_null(env);
        assert_string_equal(env, want);
        free(env);
        free(want);
        c = get_configuration(t, same[i].fn);
        assert_string_equal(h_json_str(c, "Runtime"), same[i].id);
        assert_string_equal(h_json_str(c, "State"), "Active");
        assert_null(json_object_get(c, "StateReason"));
        json_decref(c);
    }
    log = broker_log(t);
    for (size_t i = 0; i < 2; i++) {
        line = h_strfmt("[function:%s] runtime", plain[i].fn);
        assert_int_equal(h_str_count(log, line), 0);
        free(line);
        line = h_strfmt("[function:%s] runtime", same[i].fn);
        assert_int_equal(h_str_count(log, line), 0);
        free(line);
    }
    free(log);
    itest_end(t);
}

/* Custom runtimes: provided.al2 is echoed as Runtime; neither it nor shell gets
 * AWS_EXECUTION_ENV (Lambda sets none for custom runtimes). */
static void test_custom_runtimes(void **state)
{
    struct itest *t = *state;
    json_t *c, *list;
    size_t i;
    json_t *f;

    assert_null(invoke_exec_env(t, "custom", NULL));
    assert_null(invoke_exec_env(t, "sh", NULL));
    c = get_configuration(t, "custom");
    assert_string_equal(h_json_str(c, "Runtime"), "provided.al2");
    assert_null(json_object_get(c, "StateReason"));
    json_decref(c);
    c = get_configuration(t, "sh");
    assert_string_equal(h_json_str(c, "Runtime"), "provided");
    json_decref(c);
    /* ListFunctions shows the same Runtime, and never a State or StateReason. */
    list = itest_api_json(&t->b, "GET", "/2015-03-31/functions", NULL);
    json_array_foreach(json_object_get(list, "Functions"), i, f)
    {
        assert_null(json_object_get(f, "StateReason"));
        if (strcmp(h_json_str(f, "FunctionName"), "custom") == 0)
            assert_string_equal(h_json_str(f, "Runtime"), "provided.al2");
        if (strcmp(h_json_str(f, "FunctionName"), "py-other") == 0)
            assert_string_equal(h_json_str(f, "Runtime"), local.py_other);
    }
    json_decref(list);
    itest_end(t);
}

/*
 * broker.strict_runtimes: true with the mismatched functions: `switchyard run` exits 1 at once,
 * naming the function, what is installed, and the way out. With only matching versions the
 * same setting starts.
 */
static void test_strict_runtimes(void **state)
{
    struct itest *t = *state;
    char *yaml, *expanded, *path, *out, *want;
    struct h_broker strict = {0};
    struct h_run r;
    json_t *c;

    if (local.py_major != 3)
        skip();
    yaml = make_config(true, false, "@DIR@/strict-data");
    expanded = h_broker_expand(&t->b, yaml);
    path = h_strfmt("%s/strict.yaml", t->b.dir);
    assert_int_equal(h_write_file(path, expanded, strlen(expanded)), 0);
    {
        char *argv[] = {(char *)h_binary(), "run", path, NULL};

        h_proc_run(argv, NULL, t->b.dir, 30000, &r);
    }
    out = h_strfmt("%s%s", r.out, r.err);
    assert_false(r.timed_out);
    expect_run_code(&r, 1);
    want = h_strfmt("cannot set up the functions: function py-other: runtime %s is not installed "
                    "here (python3 is %d.%d at ",
                    local.py_other, local.py_major, local.py_minor);
    expect_contains(out, want);
    free(want);
    expect_contains(out, "/python3); set broker.strict_runtimes: false to run it on the local "
                         "interpreter");
    expect_not_contains(out, "ready:");
    expect_not_contains(out, "Sanitizer");
    expect_not_contains(out, "runtime error:");
    h_run_free(&r);
    free(out);
    free(yaml);
    free(expanded);
    free(path);

    /* Every version matching (or none asked for): strict starts and says nothing. */
    yaml = make_config(true, true, "@DATA@");
    assert_int_equal(h_broker_init(&strict, "runtimes-strict"), 0);
    if (h_broker_write_config(&strict, yaml) != 0 ||
        h_broker_start(&strict, NULL, ITEST_READY_MS) != 0) {
        strict.failed = true;
        h_broker_destroy(&strict);
        free(yaml);
        fail_msg("the strict broker with matching runtimes did not start");
    }
    free(yaml);
    if (local.py_same[0] != '\0') {
        char *p = h_strfmt("/2015-03-31/functions/py-same/configuration");

        c = itest_api_json(&strict, "GET", p, NULL);
        assert_string_equal(h_json_str(c, "Runtime"), local.py_same);
        assert_null(json_object_get(c, "StateReason"));
        json_decref(c);
        free(p);
    }
    out = h_read_file(strict.log_path, 0, NULL);
    assert_non_null(out);
    expect_not_contains(out, "requested; served by");
    free(out);
    assert_int_equal(h_broker_stop(&strict, 10000), 0);
    assert_int_equal(h_broker_sanitizer_lines(&strict, 0), 0);
    assert_int_equal(h_broker_destroy(&strict), 0);
    itest_end(t);
}

static int group_setup(void **state)
{
    char *yaml;
    int rc;

    learn_local_versions();
    yaml = make_config(false, false, "@DATA@");
    rc = itest_group_start(state, "runtimes", yaml, NULL);
    free(yaml);
    return rc;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, itest_setup, itest_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_python_other_minor), T(test_node_other_major), T(test_matching_and_plain),
        T(test_custom_runtimes),    T(test_strict_runtimes),
    };

    itest_filter_from_env();
    return itest_run_group("runtimes", tests, group_setup);
}
