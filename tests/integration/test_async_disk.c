/*
 * tests/integration/test_async_disk.c - a full disk under data_dir: an Event invoke that cannot
 * be stored gets 500 ServiceException (never a 202), the broker keeps running, and once space
 * is back events are stored and run again.
 *
 * data_dir is a small tmpfs mounted for the test. Mounting needs root (CAP_SYS_ADMIN); where
 * that is not possible the test is skipped with a message saying so.
 */
#include "itest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

/* clang-format off */
static const char config[] =
    "broker:\n"
    "  listen: 127.0.0.1:0\n"
    "  data_dir: @DIR@/small\n"
    "  shutdown_grace_ms: 2000\n"
    "functions:\n"
    "  record:\n"
    "    runtime: python3\n"
    "    handler: app.record\n"
    "    code: @FIXTURES@/async\n"
    "    environment: {PYTHONDONTWRITEBYTECODE: '1'}\n";
/* clang-format on */

static char *mnt; /* the tmpfs mount point, or NULL */

/* Fill the file system of PATH's dir with PATH until it is full. Returns bytes written. */
static size_t fill(const char *path)
{
    static char block[65536];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    size_t total = 0;

    if (fd < 0)
        return 0;
    memset(block, 'x', sizeof(block));
    for (;;) {
        ssize_t w = write(fd, block, sizeof(block));

        if (w <= 0)
            break;
        total += (size_t)w;
    }
    /* Then byte by byte-ish, so that not even a page is left. */
    for (;;) {
        ssize_t w = write(fd, block, 512);

        if (w <= 0)
            break;
        total += (size_t)w;
    }
    close(fd);
    return total;
}

static void test_full_disk(void **state)
{
    struct itest *t = *state;
    const char *hdrs[] = {"X-Amz-Invocation-Type: Event", NULL};
    char *recdir = h_strfmt("%s/rec", t->b.dir);
    char *filler = h_strfmt("%s/filler", mnt);
    char *big_payload, *payload, *file;
    struct h_http_resp r;
    json_t *j;
    int64_t deadline;
    size_t n = 600 * 1024;

    mkdir(recdir, 0755);
    /* A large event (under the 1 MiB limit), so that storing it needs new pages. */
    big_payload = malloc(n + 200);
    assert_non_null(big_payload);
    {
        int k = snprintf(big_payload, 200, "{\"dir\":\"%s\",\"n\":1,\"pad\":\"", recdir);

        memset(big_payload + k, 'p', n);
        strcpy(big_payload + k + n, "\"}");
    }
    assert_true(fill(filler) > 0);

    itest_invoke(t, "record", big_payload, hdrs, &r);
    j = expect_api_error(&r, 500, "ServiceException");
    expect_contains(h_json_str(j, "Message"), "not stored");
    json_decref(j);
    h_http_resp_free(&r);

    /* Space is back: the same event is stored and runs. */
    assert_int_equal(unlink(filler), 0);
    itest_invoke(t, "record", big_payload, hdrs, &r);
    expect_status(&r, 202);
    h_http_resp_free(&r);
    payload = h_strfmt("{\"dir\":\"%s\",\"n\":2}", recdir);
    itest_invoke(t, "record", payload, hdrs, &r);
    expect_status(&r, 202);
    h_http_resp_free(&r);
    file = h_strfmt("%s/2", recdir);
    deadline = h_now_ms() + 20000;
    while (access(file, F_OK) != 0 && h_now_ms() < deadline)
        h_sleep_ms(20);
    assert_int_equal(access(file, F_OK), 0);
    free(file);
    free(payload);
    free(big_payload);
    free(filler);
    free(recdir);
    itest_end(t);
}

static int group_setup(void **state)
{
    struct itest *t = calloc(1, sizeof(*t));
    int rc;

    *state = t;
    if (t == NULL || h_broker_init(&t->b, "asyncdisk") != 0)
        return -1;
    mnt = h_strfmt("%s/small", t->b.dir);
    mkdir(mnt, 0700);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=4m") != 0) {
        fprintf(stderr,
                "test_async_disk: cannot mount a tmpfs (%s): this test needs root; skipped\n",
                strerror(errno));
        free(mnt);
        mnt = NULL;
        return 0;
    }
    if (h_broker_write_config(&t->b, config) != 0)
        return -1;
    rc = h_broker_start(&t->b, NULL, ITEST_READY_MS);
    return rc;
}

static int group_teardown(void **state)
{
    struct itest *t = *state;
    int rc = 0, code;

    if (mnt != NULL) {
        code = h_broker_stop(&t->b, 10000);
        if (code != 0) {
            fprintf(stderr, "test_async_disk: broker exit code after SIGTERM is %d\n", code);
            rc = -1;
        }
        if (h_broker_sanitizer_lines(&t->b, 0) > 0)
            rc = -1;
        /* The broker is gone: nothing holds the mount any more. */
        if (umount2(mnt, MNT_DETACH) != 0)
            fprintf(stderr, "test_async_disk: umount %s: %s\n", mnt, strerror(errno));
        free(mnt);
        mnt = NULL;
    }
    if (rc != 0) {
        t->b.failed = true;
        h_broker_dump_logs(&t->b, 0);
    }
    if (h_broker_destroy(&t->b) > 0)
        rc = -1;
    free(t);
    return rc;
}

static int test_setup(void **state)
{
    return mnt != NULL ? itest_setup(state) : 0;
}

static int test_teardown(void **state)
{
    return mnt != NULL ? itest_teardown(state) : 0;
}

static void test_full_disk_or_skip(void **state)
{
    if (mnt == NULL) {
        skip();
        return;
    }
    test_full_disk(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full_disk_or_skip, test_setup, test_teardown),
    };

    itest_filter_from_env();
    return itest_exit_code(cmocka_run_group_tests_name("asyncdisk", tests, group_setup,
                                                       group_teardown));
}
