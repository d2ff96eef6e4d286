/*
 * tests/unit/test_sqlq.c - core/sqlq.c, the SQLite store thread: jobs come back through the
 * eventfd with what they ran committed; write jobs waiting together share one transaction
 * (group commit); a failing transaction is rolled back, reported by sqlq_health(), retried
 * until it succeeds (jobs without SQLQ_MAY_FAIL) or handed back with its error (SQLQ_MAY_FAIL);
 * reads run outside the transaction; stop gives up on writes that keep failing; destroy frees
 * what was never taken back. A temp dir, no network.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <sqlite3.h>

#include "core/sqlq.h"

struct tjob {
    struct sqlq_job j; /* first */
    int value;         /* INSERT this into t(v); -1: read COUNT(*) into `count` */
    int count;
    int batch; /* transactions committed before the one it ran in (writes) */
};

/* Shared with the store thread: set by the test, read in run(). */
static atomic_int fail_left;   /* transactions still to fail with SQLITE_FULL */
static atomic_int txn_seen;    /* jobs run so far */
static atomic_int freed;       /* jobs freed by free_job */
static atomic_int gate_closed; /* run() waits while set (to make jobs pile up) */
static atomic_int in_run;      /* run() was entered */
static atomic_int commits;     /* transactions committed (commit hook) */
static sqlite3 *hooked;        /* the connection the hook is on (the store thread's) */

static int on_commit(void *arg)
{
    (void)arg;
    atomic_fetch_add(&commits, 1);
    return 0;
}

static int run(struct sqlq *q, sqlite3 *db, struct sqlq_job *j, void *arg)
{
    struct tjob *t = (struct tjob *)j;
    sqlite3_stmt *s;
    int rc;

    (void)arg;
    if (hooked != db) {
        sqlite3_commit_hook(db, on_commit, NULL);
        hooked = db;
    }
    atomic_store(&in_run, 1);
    while (atomic_load(&gate_closed))
        usleep(1000);
    atomic_fetch_add(&txn_seen, 1);
    if (t->value < 0) {
        s = sqlq_stmt(q, "SELECT COUNT(*) FROM t", &rc);
        if (s == NULL)
            return rc;
        rc = sqlite3_step(s);
        t->count = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
        return rc == SQLITE_ROW ? SQLITE_OK : rc;
    }
    if (atomic_load(&fail_left) > 0) {
        atomic_fetch_sub(&fail_left, 1);
        return SQLITE_FULL;
    }
    t->batch = atomic_load(&commits); /* the same for every job of one transaction */
    s = sqlq_stmt(q, "INSERT INTO t(v) VALUES(?)", &rc);
    if (s == NULL)
        return rc;
    sqlite3_bind_int(s, 1, t->value);
    rc = sqlite3_step(s);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static void free_job(struct sqlq_job *j, void *arg)
{
    (void)arg;
    atomic_fetch_add(&freed, 1);
    free(j);
}

static struct tjob *tjob_new(int value, unsigned flags)
{
    struct tjob *t = calloc(1, sizeof(*t));

    assert_non_null(t);
    t->value = value;
    t->j.flags = flags;
    t->j.run = run;
    return t;
}

struct world {
    char dir[64];
    char path[128];
    int efd;
    struct sqlq *q;
};

static int setup(void **state)
{
    struct world *w = calloc(1, sizeof(*w));
    struct sqlq_conf conf = {0};
    struct sy_error err = {{0}};

    if (w == NULL)
        return -1;
    snprintf(w->dir, sizeof(w->dir), "/tmp/sy-sqlq-XXXXXX");
    if (mkdtemp(w->dir) == NULL)
        return -1;
    snprintf(w->path, sizeof(w->path), "%s/t.db", w->dir);
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    conf.path = w->path;
    conf.schema = "CREATE TABLE IF NOT EXISTS t(v INTEGER NOT NULL);";
    conf.tag = "[test]";
    conf.thread = "sy-test-sqlq";
    conf.retry_ms = 20;
    conf.free_job = free_job;
    w->q = sqlq_create(&conf, &err);
    if (w->q == NULL || w->efd < 0 || sqlq_start(w->q, w->efd, &err) != 0)
        return -1;
    atomic_store(&fail_left, 0);
    atomic_store(&txn_seen, 0);
    atomic_store(&freed, 0);
    atomic_store(&gate_closed, 0);
    atomic_store(&in_run, 0);
    atomic_store(&commits, 0);
    hooked = NULL;
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    struct world *w = *state;
    char cmd[128];

    sqlq_destroy(w->q);
    close(w->efd);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", w->dir);
    if (system(cmd) != 0)
        return -1;
    free(w);
    return 0;
}

/* Wait (bounded) for the eventfd, then take what is done: appended to *ALL (count returned). */
static size_t take(struct world *w, struct tjob **all, size_t cap, size_t have, size_t want)
{
    for (int i = 0; i < 500 && have < want; i++) {
        struct pollfd p = {.fd = w->efd, .events = POLLIN};
        uint64_t v;

        if (poll(&p, 1, 20) > 0 && read(w->efd, &v, sizeof(v)) < 0)
            fail_msg("eventfd read");
        for (struct sqlq_job *j = sqlq_take_done(w->q); j != NULL;) {
            struct sqlq_job *next = j->next;

            assert_true(have < cap);
            all[have++] = (struct tjob *)j;
            j = next;
        }
    }
    return have;
}

static void test_writes_commit_and_read_back(void **state)
{
    struct world *w = *state;
    struct tjob *done[8];
    struct tjob *r;
    size_t n;

    sqlq_submit(w->q, &tjob_new(1, SQLQ_WRITE)->j);
    sqlq_submit(w->q, &tjob_new(2, SQLQ_WRITE)->j);
    n = take(w, done, 8, 0, 2);
    assert_int_equal(n, 2);
    assert_int_equal(done[0]->j.rc, 0);
    assert_int_equal(done[1]->j.rc, 0);
    assert_int_equal(sqlq_health(w->q, NULL, 0), 0);
    r = tjob_new(-1, 0);
    sqlq_submit(w->q, &r->j);
    n = take(w, done, 8, 2, 3);
    assert_int_equal(n, 3);
    assert_ptr_equal(done[2], r);
    assert_int_equal(r->count, 2);
    assert_int_equal(sqlq_pending(w->q), 0);
    for (size_t i = 0; i < n; i++)
        free(done[i]);
}

/* Jobs that arrive while a transaction runs go together into the next one. */
static void test_group_commit(void **state)
{
    struct world *w = *state;
    struct tjob *done[64];
    size_t n;

    atomic_store(&gate_closed, 1);
    sqlq_submit(w->q, &tjob_new(0, SQLQ_WRITE)->j); /* the thread takes it and waits */
    for (int i = 0; i < 2000 && !atomic_load(&in_run); i++)
        usleep(1000);
    assert_true(atomic_load(&in_run));
    for (int i = 1; i <= 20; i++)
        sqlq_submit(w->q, &tjob_new(i, SQLQ_WRITE)->j);
    atomic_store(&gate_closed, 0);
    n = take(w, done, 64, 0, 21);
    assert_int_equal(n, 21);
    /* The first ran alone; the 20 that came while it ran shared the next transaction. */
    assert_int_equal(done[0]->value, 0);
    for (size_t i = 1; i < n; i++) {
        assert_int_equal(done[i]->j.rc, 0);
        assert_int_equal(done[i]->value, (int)i);
        assert_int_equal(done[i]->batch, done[0]->batch + 1);
    }
    assert_int_equal(atomic_load(&commits), done[0]->batch + 2);
    for (size_t i = 0; i < n; i++)
        free(done[i]);
}

/* A failing transaction: kept and retried (health says so meanwhile), MAY_FAIL jobs handed back
 * with the error; then health is clear again. */
static void test_failure_retry_and_may_fail(void **state)
{
    struct world *w = *state;
    struct tjob *done[8], *keep, *may, *r;
    char why[256];
    size_t n;
    int saw_bad = 0;

    atomic_store(&fail_left, 3);
    may = tjob_new(7, SQLQ_WRITE | SQLQ_MAY_FAIL);
    keep = tjob_new(8, SQLQ_WRITE);
    may->j.next = &keep->j;
    sqlq_submit(w->q, &may->j);
    n = take(w, done, 8, 0, 1);
    assert_int_equal(n, 1);
    assert_ptr_equal(done[0], may);
    assert_int_equal(may->j.rc, SY_ENOSPC);
    assert_non_null(strstr(may->j.errmsg, "transaction failed"));
    /* The other one stays until a transaction succeeds (3 failures, 20 ms apart). */
    for (int i = 0; i < 500 && sqlq_pending(w->q) > 0; i++) {
        if (sqlq_health(w->q, why, sizeof(why)) == SY_ENOSPC)
            saw_bad = 1;
        usleep(2000);
    }
    assert_true(saw_bad);
    n = take(w, done, 8, 1, 2);
    assert_int_equal(n, 2);
    assert_ptr_equal(done[1], keep);
    assert_int_equal(keep->j.rc, 0);
    assert_int_equal(sqlq_health(w->q, NULL, 0), 0);
    r = tjob_new(-1, 0);
    sqlq_submit(w->q, &r->j);
    n = take(w, done, 8, 2, 3);
    assert_int_equal(r->count, 1); /* only the kept job's row */
    for (size_t i = 0; i < n; i++)
        free(done[i]);
}

/* Stop with writes that keep failing: given up after the timeout, handed back ECANCELED; destroy
 * frees what was never taken. */
static void test_stop_gives_up(void **state)
{
    struct world *w = *state;

    atomic_store(&fail_left, 1000000);
    sqlq_submit(w->q, &tjob_new(9, SQLQ_WRITE)->j);
    sqlq_submit(w->q, &tjob_new(10, SQLQ_WRITE)->j);
    sqlq_stop(w->q, 50);
    {
        struct sqlq_job *j = sqlq_take_done(w->q);
        size_t n = 0;

        while (j != NULL) {
            struct sqlq_job *next = j->next;

            assert_int_equal(j->rc, SY_ECANCELED);
            free(j);
            n++;
            j = next;
        }
        assert_int_equal(n, 2);
    }
    atomic_store(&fail_left, 0);
    /* Handed back, so destroy (teardown) has nothing of them to free. */
    assert_int_equal(atomic_load(&freed), 0);
}

/* Jobs still inside at destroy go to free_job. */
static void test_destroy_frees_jobs(void **state)
{
    struct world *w = *state;

    atomic_store(&gate_closed, 1);
    sqlq_submit(w->q, &tjob_new(1, SQLQ_WRITE)->j);
    for (int i = 0; i < 2000 && !atomic_load(&in_run); i++)
        usleep(1000);
    sqlq_submit(w->q, &tjob_new(2, SQLQ_WRITE)->j);
    atomic_store(&gate_closed, 0);
    sqlq_stop(w->q, 1000);
    /* Both ran and wait in the done list: destroy hands them to free_job. */
    sqlq_destroy(w->q);
    w->q = NULL;
    assert_int_equal(atomic_load(&freed), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_writes_commit_and_read_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_retry_and_may_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_gives_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_frees_jobs, setup, teardown),
    };

    return cmocka_run_group_tests_name("sqlq", tests, NULL, NULL);
}
