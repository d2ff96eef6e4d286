/*
 * tests/integration/test_esm_mqtt_disk.c - a full disk under the MQTT source's spool: the
 * source stops acknowledging (and reading), says so in LastProcessingResult, and once space is
 * back the held messages are stored and handled; a broker killed with -9 while the disk is full
 * loses nothing, because what was not stored was never acknowledged and the MQTT server sends
 * it again to the restarted broker.
 *
 * data_dir is a small tmpfs mounted for the test. Mounting needs root (CAP_SYS_ADMIN); where
 * that is not possible the test is skipped with a message saying so. Every wait polls with a
 * deadline.
 */
#include "itest.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "harness/mqtt_pub.h"
#include "rworld.h"

/* clang-format off */
static const char config[] =
    "broker:\n"
    "  listen: 127.0.0.1:0\n"
    "  data_dir: @DIR@/small\n"
    "  shutdown_grace_ms: 2000\n"
    "functions:\n"
    "  rec: {runtime: python3, handler: app.record, code: @FIXTURES@/mqtt, timeout_s: 30,\n"
    "        environment: {OUT: '@DIR@/out', PYTHONDONTWRITEBYTECODE: '1'}}\n"
    "mappings:\n"
    "  - name: disk\n"
    "    function: rec\n"
    "    maximum_batching_window_ms: 20\n"
    "    source: {mqtt: {url: 'mqtt://127.0.0.1:@PORT@', topics: [t/disk], qos: 1}}\n";
/* clang-format on */

static char *mnt; /* the tmpfs mount point, or NULL (skipped) */
static bool mounted;

/* Publish N messages "{"k":"PREFIX-i","pad":...}" of about 8 KiB at QoS 1, each acknowledged
 * by the server. */
static void publish(int port, const char *prefix, int n)
{
    struct h_mqtt_pub p;
    static char msg[8300];

    assert_int_equal(h_mqtt_pub_open(&p, port), 0);
    for (int i = 0; i < n; i++) {
        int k = snprintf(msg, sizeof(msg), "{\"k\":\"%s-%d\",\"pad\":\"", prefix, i);

        memset(msg + k, 'p', sizeof(msg) - (size_t)k - 3);
        memcpy(msg + sizeof(msg) - 3, "\"}", 3);
        assert_int_equal(h_mqtt_pub_send(&p, "t/disk", msg, strlen(msg), 1, NULL), 0);
        assert_int_equal(p.acked, i + 1);
    }
    h_mqtt_pub_close(&p);
}

/* Fill the file system of PATH's dir with PATH until it is full. Returns bytes written. */
static size_t fill(const char *path)
{
    static char block[65536];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    size_t total = 0;
    ssize_t w;

    if (fd < 0)
        return 0;
    memset(block, 'x', sizeof(block));
    while ((w = write(fd, block, sizeof(block))) > 0)
        total += (size_t)w;
    while ((w = write(fd, block, 512)) > 0)
        total += (size_t)w;
    close(fd);
    return total;
}

/* Files (deliveries) in DIR whose key starts with PREFIX. */
static size_t count_prefix(const char *dir, const char *prefix)
{
    char *cmd = h_strfmt("ls %s 2>/dev/null | grep -c '^%s-[0-9]*\\.[0-9]*$'", dir, prefix);
    FILE *fp = popen(cmd, "r");
    size_t n = 0;

    free(cmd);
    if (fp != NULL) {
        if (fscanf(fp, "%zu", &n) != 1)
            n = 0;
        pclose(fp);
    }
    return n;
}

static void await_prefix(const char *dir, const char *prefix, size_t want)
{
    int64_t deadline = h_now_ms() + 30000;

    while (count_prefix(dir, prefix) < want) {
        if (h_now_ms() > deadline)
            fail_msg("%zu of %zu '%s' messages handled", count_prefix(dir, prefix), want, prefix);
        h_sleep_ms(50);
    }
}

static void await_running(struct rworld *w)
{
    int64_t deadline = h_now_ms() + 20000;

    for (;;) {
        json_t *m = rworld_mapping_json(w, "disk");
        const char *st = h_json_str(json_object_get(m, "Switchyard"), "source_state");
        bool ok = st != NULL && strcmp(st, "running") == 0;

        json_decref(m);
        if (ok)
            return;
        if (h_now_ms() > deadline)
            fail_msg("mapping disk not running within 20 s");
        h_sleep_ms(20);
    }
}

static void test_full_disk(void **state)
{
    struct rworld *w = *state;
    char *out = h_strfmt("%s/out", w->b.dir), *filler = h_strfmt("%s/filler", mnt);
    json_t *m;

    if (!mounted) {
        skip();
        return;
    }
    await_running(w);
    publish(w->mqtt.port, "before", 3);
    await_prefix(out, "before", 3);

    /* 1. Full: the source stops acknowledging and says why; space back: all handled. */
    assert_true(fill(filler) > 0);
    publish(w->mqtt.port, "full", 20);
    m = rworld_await_problem(w, "disk", 20000);
    assert_non_null(strstr(h_json_str(m, "LastProcessingResult"), "spool"));
    json_decref(m);
    /* Not stored, so not handed to the function either. */
    assert_int_equal(count_prefix(out, "full"), 0);
    assert_int_equal(unlink(filler), 0);
    await_prefix(out, "full", 20);
    await_running(w);

    /* 2. Full again, then kill -9: nothing was acknowledged that was not stored, so the server
     * sends it all again to the restarted broker. */
    assert_true(fill(filler) > 0);
    publish(w->mqtt.port, "killed", 20);
    m = rworld_await_problem(w, "disk", 20000);
    json_decref(m);
    assert_int_equal(kill(w->b.proc.pid, SIGKILL), 0);
    {
        int64_t deadline = h_now_ms() + 10000;

        while (h_broker_running(&w->b) && h_now_ms() < deadline)
            h_sleep_ms(10);
    }
    assert_false(h_broker_running(&w->b));
    assert_int_equal(unlink(filler), 0);
    assert_int_equal(rworld_start_broker(w), 0);
    w->mark = 0;
    await_prefix(out, "killed", 20);
    free(out);
    free(filler);
    rworld_end(w);
}

static int group_setup(void **state)
{
    struct rworld *w;
    int rc;

    mosquitto_lib_init();
    /* The world starts the broker on the tmpfs data_dir; mount first, in a dir of our own. */
    rc = rworld_group_setup_mqtt(state, "esmmqttdisk",
                                 "broker:\n  listen: 127.0.0.1:0\n"
                                 "  data_dir: @DATA@\n",
                                 NULL, NULL, NULL);
    w = *state;
    if (rc != 0 || w == NULL)
        return -1;
    /* That broker was only there to make the dirs; the real one runs on the tmpfs. */
    if (h_broker_stop(&w->b, 10000) != 0)
        return -1;
    mnt = h_strfmt("%s/small", w->b.dir);
    mkdir(mnt, 0700);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=4m") != 0) {
        fprintf(stderr,
                "test_esm_mqtt_disk: cannot mount a tmpfs (%s): this test needs root; skipped\n",
                strerror(errno));
        return 0;
    }
    mounted = true;
    w->config = config;
    return rworld_start_broker(w);
}

static int group_teardown(void **state)
{
    struct rworld *w = *state;
    int rc = 0;

    if (w != NULL && h_broker_running(&w->b) && h_broker_stop(&w->b, 15000) != 0)
        rc = -1;
    if (mounted && umount2(mnt, MNT_DETACH) != 0)
        fprintf(stderr, "test_esm_mqtt_disk: umount %s: %s\n", mnt, strerror(errno));
    mounted = false;
    free(mnt);
    mnt = NULL;
    return rworld_group_teardown(state) != 0 || rc != 0 ? -1 : 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full_disk, rworld_setup, rworld_teardown),
    };
    int rc;

    itest_filter_from_env();
    rc = cmocka_run_group_tests_name("esm_mqtt_disk", tests, group_setup, group_teardown);
    return rworld_exit_code(rc);
}
