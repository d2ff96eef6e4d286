/*
 * tests/unit/test_runtimes.c - dispatcher/runtimes.c: runtimes_check() over every case of its
 * matrix (match, served with a mismatch, refused; Python and Node.js; strict or not; nothing
 * installed; a version that could not be learned; custom runtimes), on a dispatcher filled by
 * hand, and runtimes_probe() against stand-in interpreters (shell scripts) that answer, fail,
 * print nonsense, die, hang, or are not there.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "dispatcher/dispatcher_int.h"

/* A dispatcher with only what runtimes_check() reads: a config, the paths, the versions. */
struct world {
    struct cfg cfg;
    struct dispatcher dsp;
};

static void world_init(struct world *w, int strict)
{
    memset(w, 0, sizeof(*w));
    w->cfg.broker.strict_runtimes = strict;
    w->dsp.cfg = &w->cfg;
    w->dsp.python3 = "/usr/bin/python3";
    w->dsp.node = "/usr/bin/node";
    w->dsp.local_python3 = (struct runtimes_local){.installed = 1, .major = 3, .minor = 11};
    snprintf(w->dsp.local_python3.version, sizeof(w->dsp.local_python3.version), "3.11");
    w->dsp.local_node = (struct runtimes_local){.installed = 1, .major = 20, .minor = 20};
    snprintf(w->dsp.local_node.version, sizeof(w->dsp.local_node.version), "20.20.2");
}

/* A function asking for runtime ID (parsed as the config would). */
static struct cfg_function fn_of(const char *id)
{
    struct cfg_function fc = {.name = "f", .runtime_id = (char *)id};

    assert_int_equal(cfg_runtime_parse(id, &fc.runtime, &fc.runtime_major, &fc.runtime_minor), 0);
    return fc;
}

/* runtimes_check() of ID on W must return WANT with exactly DETAIL. */
static void check_runtime(const struct world *w, const char *id, int want, const char *detail)
{
    struct cfg_function fc = fn_of(id);
    char got[512];
    int rc = runtimes_check(&w->dsp, &fc, got, sizeof(got));

    if (rc != want || strcmp(got, detail) != 0)
        fail_msg("%s (strict %d): got %d '%s', want %d '%s'", id, w->cfg.broker.strict_runtimes, rc,
                 got, want, detail);
}

static void test_check_python(void **state)
{
    struct world w;

    (void)state;
    for (int strict = 0; strict <= 1; strict++) {
        world_init(&w, strict);
        /* Any version for the plain name; the same major.minor is a match. */
        check_runtime(&w, "python3", 0, "");
        check_runtime(&w, "python3.11", 0, "");
    }
    world_init(&w, 0);
    check_runtime(&w, "python3.12", 1,
                  "runtime python3.12 requested; served by /usr/bin/python3 (Python 3.11)");
    check_runtime(&w, "python3.9", 1,
                  "runtime python3.9 requested; served by /usr/bin/python3 (Python 3.11)");
    world_init(&w, 1);
    check_runtime(&w, "python3.12", -1,
                  "runtime python3.12 is not installed here (python3 is 3.11 at /usr/bin/python3); "
                  "set broker.strict_runtimes: false to run it on the local interpreter");
    /* Another major can never stand in, strict or not. */
    for (int strict = 0; strict <= 1; strict++) {
        world_init(&w, strict);
        w.dsp.local_python3.major = 2;
        w.dsp.local_python3.minor = 7;
        snprintf(w.dsp.local_python3.version, sizeof(w.dsp.local_python3.version), "2.7");
        check_runtime(&w, "python3.11", -1,
                      "runtime python3.11 is not installed here (python3 is 2.7 at "
                      "/usr/bin/python3); a Python of another major version cannot run it");
        check_runtime(&w, "python3", 0, ""); /* the plain name asks for nothing */
    }
}

static void test_check_node(void **state)
{
    struct world w;

    (void)state;
    for (int strict = 0; strict <= 1; strict++) {
        world_init(&w, strict);
        check_runtime(&w, "node", 0, "");
        check_runtime(&w, "nodejs20.x", 0, ""); /* the major is enough: 20.20.2 is 20.x */
    }
    world_init(&w, 0);
    check_runtime(&w, "nodejs18.x", 1,
                  "runtime nodejs18.x requested; served by /usr/bin/node (Node.js 20.20.2)");
    check_runtime(&w, "nodejs22.x", 1,
                  "runtime nodejs22.x requested; served by /usr/bin/node (Node.js 20.20.2)");
    world_init(&w, 1);
    check_runtime(
        &w, "nodejs22.x", -1,
        "runtime nodejs22.x is not installed here (node is 20.20.2 at /usr/bin/node); set "
        "broker.strict_runtimes: false to run it on the local interpreter");
}

/* No interpreter at all refuses a version, strict or not; the plain names still pass. */
static void test_check_not_installed(void **state)
{
    struct world w;

    (void)state;
    for (int strict = 0; strict <= 1; strict++) {
        world_init(&w, strict);
        w.dsp.node = "node";
        w.dsp.local_node = (struct runtimes_local){.major = -1, .minor = -1};
        snprintf(w.dsp.local_node.why, sizeof(w.dsp.local_node.why), "not found on PATH");
        check_runtime(&w, "nodejs20.x", -1,
                      "runtime nodejs20.x is not installed here (node: not found on PATH)");
        check_runtime(&w, "node", 0, "");
        w.dsp.local_python3 = (struct runtimes_local){.major = -1, .minor = -1};
        snprintf(w.dsp.local_python3.why, sizeof(w.dsp.local_python3.why),
                 "/usr/bin/python3 could not be executed");
        check_runtime(&w, "python3.12", -1,
                      "runtime python3.12 is not installed here (python3: /usr/bin/python3 could "
                      "not be executed)");
        check_runtime(&w, "python3", 0, "");
    }
}

/* An interpreter that is there but gave no version: served unless strict. */
static void test_check_version_unknown(void **state)
{
    struct world w;

    (void)state;
    world_init(&w, 0);
    w.dsp.local_python3 = (struct runtimes_local){.installed = 1, .major = -1, .minor = -1};
    snprintf(w.dsp.local_python3.why, sizeof(w.dsp.local_python3.why),
             "/usr/bin/python3 exited with status 1");
    check_runtime(&w, "python3.12", 1,
                  "runtime python3.12 requested; served by /usr/bin/python3 (Python, version "
                  "unknown: /usr/bin/python3 exited with status 1)");
    w.cfg.broker.strict_runtimes = 1;
    check_runtime(
        &w, "python3.12", -1,
        "runtime python3.12 cannot be confirmed here (/usr/bin/python3 exited with status "
        "1); set broker.strict_runtimes: false to run it on the local interpreter");
}

/* Custom runtimes and shell need no interpreter version, whatever is (not) installed. */
static void test_check_custom(void **state)
{
    static const char *const ids[] = {"shell", "provided", "provided.al2", "provided.al2023"};
    struct world w;

    (void)state;
    world_init(&w, 1);
    w.dsp.local_python3 = (struct runtimes_local){.major = -1, .minor = -1};
    w.dsp.local_node = (struct runtimes_local){.major = -1, .minor = -1};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        check_runtime(&w, ids[i], 0, "");
}

/* DETAIL may be NULL or short (cut, still terminated); a hand-built function without a
 * runtime_id is named by its family. */
static void test_check_detail_buffers(void **state)
{
    struct world w;
    struct cfg_function fc = fn_of("python3.12");
    char small[16];

    (void)state;
    world_init(&w, 0);
    assert_int_equal(runtimes_check(&w.dsp, &fc, NULL, 0), 1);
    memset(small, 'x', sizeof(small));
    assert_int_equal(runtimes_check(&w.dsp, &fc, small, sizeof(small)), 1);
    assert_string_equal(small, "runtime python3");
    fc.runtime_id = NULL;
    {
        char d[256];

        assert_int_equal(runtimes_check(&w.dsp, &fc, d, sizeof(d)), 1);
        assert_string_equal(d, "runtime python3 requested; served by /usr/bin/python3 (Python "
                               "3.11)");
    }
}

/* ---- runtimes_probe() against stand-ins ------------------------------------------------- */

static char dir[64];

/* DIR/NAME holding the shell script BODY, executable. Returns new. */
static char *script(const char *name, const char *body)
{
    char *path = malloc(strlen(dir) + strlen(name) + 2);
    FILE *f;

    assert_non_null(path);
    sprintf(path, "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\n%s\n", body);
    fclose(f);
    assert_int_equal(chmod(path, 0755), 0);
    return path;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Probe with PY and NODE as the interpreters (borrowed). */
static void probe(struct dispatcher *dsp, char *py, char *node)
{
    memset(dsp, 0, sizeof(*dsp));
    dsp->python3 = py;
    dsp->node = node;
    runtimes_probe(dsp);
}

static int setup_dir(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/sy-runtimes-XXXXXX");
    return mkdtemp(dir) != NULL ? 0 : -1;
}

static int teardown_dir(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Versions as the real interpreters print them; the probe's arguments reach them. */
static void test_probe_versions(void **state)
{
    /* Each stand-in checks it was asked the way python3 / node are. */
    char *py = script("python3", "[ \"$1 $2 $3\" = '-E -S -c' ] || exit 9\necho '3 12'");
    char *node = script("node", "[ \"$1 $2\" = '-p process.versions.node' ] || exit 9\n"
                                "echo 22.1.0");
    struct dispatcher dsp;

    (void)state;
    probe(&dsp, py, node);
    assert_int_equal(dsp.local_python3.installed, 1);
    assert_int_equal(dsp.local_python3.major, 3);
    assert_int_equal(dsp.local_python3.minor, 12);
    assert_string_equal(dsp.local_python3.version, "3.12");
    assert_int_equal(dsp.local_node.installed, 1);
    assert_int_equal(dsp.local_node.major, 22);
    assert_int_equal(dsp.local_node.minor, 1);
    assert_string_equal(dsp.local_node.version, "22.1.0");
    free(py);
    free(node);
}

/* Failing, nonsense and dying interpreters: installed, version unknown, and why. */
static void test_probe_failures(void **state)
{
    char *fails = script("fails", "echo oops >&2\nexit 3");
    char *nonsense = script("nonsense", "echo hello");
    char *dies = script("dies", "kill -9 $$");
    char *want;
    struct dispatcher dsp;

    (void)state;
    probe(&dsp, fails, nonsense);
    assert_int_equal(dsp.local_python3.installed, 1);
    assert_int_equal(dsp.local_python3.major, -1);
    want = malloc(strlen(fails) + 64);
    assert_non_null(want);
    sprintf(want, "%s exited with status 3", fails);
    assert_string_equal(dsp.local_python3.why, want);
    assert_int_equal(dsp.local_node.installed, 1);
    assert_int_equal(dsp.local_node.major, -1);
    sprintf(want, "%s printed 'hello', not a version", nonsense);
    assert_string_equal(dsp.local_node.why, want);
    probe(&dsp, dies, dies);
    assert_int_equal(dsp.local_python3.major, -1);
    sprintf(want, "%s was killed by signal 9", dies);
    assert_string_equal(dsp.local_python3.why, want);
    free(want);
    free(fails);
    free(nonsense);
    free(dies);
}

/* Not there: a bare name (nothing on PATH), a missing path, an interpreter line that fails. */
static void test_probe_not_installed(void **state)
{
    char *badexec = script("badexec", "");
    char missing[128];
    struct dispatcher dsp;
    FILE *f;

    (void)state;
    /* Rewrite it with an interpreter line execve() cannot follow. */
    f = fopen(badexec, "w");
    assert_non_null(f);
    fputs("#!/nonexistent/interpreter\n", f);
    fclose(f);
    snprintf(missing, sizeof(missing), "%s/no-such-python3", dir);
    probe(&dsp, "python3", missing);
    assert_int_equal(dsp.local_python3.installed, 0);
    assert_string_equal(dsp.local_python3.why, "not found on PATH");
    assert_int_equal(dsp.local_node.installed, 0);
    assert_non_null(strstr(dsp.local_node.why, "cannot run "));
    assert_non_null(strstr(dsp.local_node.why, "No such file or directory"));
    probe(&dsp, badexec, badexec);
    assert_int_equal(dsp.local_python3.installed, 0);
    assert_int_equal(dsp.local_python3.major, -1);
    assert_non_null(strstr(dsp.local_python3.why, "could not be executed"));
    free(badexec);
}

/*
 * A hung interpreter is killed at the bound, with what it started; one that answers but leaves
 * a child holding the pipe is not waited for. Both run at once, so the wait is one bound.
 */
static void test_probe_bounded(void **state)
{
    char *hangs = script("hangs", "sleep 30 &\nsleep 30");
    char *leaves = script("leaves", "sleep 30 &\necho 20.1.0");
    struct dispatcher dsp;
    int64_t t0;

    (void)state;
    runtimes_test_probe_ms(300);
    t0 = now_ms();
    probe(&dsp, hangs, leaves);
    /* A bound, not a speed claim: waiting for the scripts would take 30 s. */
    assert_true(now_ms() - t0 < 10000);
    runtimes_test_probe_ms(0);
    assert_int_equal(dsp.local_python3.installed, 1);
    assert_int_equal(dsp.local_python3.major, -1);
    assert_non_null(strstr(dsp.local_python3.why, "gave no version within 300 ms"));
    assert_int_equal(dsp.local_node.major, 20);
    free(hangs);
    free(leaves);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_python),        cmocka_unit_test(test_check_node),
        cmocka_unit_test(test_check_not_installed), cmocka_unit_test(test_check_version_unknown),
        cmocka_unit_test(test_check_custom),        cmocka_unit_test(test_check_detail_buffers),
        cmocka_unit_test(test_probe_versions),      cmocka_unit_test(test_probe_failures),
        cmocka_unit_test(test_probe_not_installed), cmocka_unit_test(test_probe_bounded),
    };

    return cmocka_run_group_tests_name("runtimes", tests, setup_dir, teardown_dir);
}
