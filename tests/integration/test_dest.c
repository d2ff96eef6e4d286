/*
 * tests/integration/test_dest.c - the file, redis and http(s) destinations (destinations/dest_*.c)
 * driven directly on a libevent loop that the test runs: no broker process. Redis is a real
 * redis-server on a free loopback port (tests/harness/redis.h), read back with a blocking
 * hiredis client; HTTP is an evhttp server (or a raw listener) on the same loop, port 0.
 *
 * Every test checks the dest.h contract on the way: DONE exactly once, never from inside
 * dest_send(), and dest_destroy() calls DONE for everything pending before it returns. Waits
 * are loops that run the event loop until a condition holds or a deadline passes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <regex.h>
#include <stdatomic.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "destinations/dest.h"
#include "destinations/dest_int.h"
#include "harness/proc.h"
#include "harness/redis.h"
#include "harness/util.h"

/* ---------------------------------------------------------------------------------------- */
/* The loop and the DONE recorder                                                           */

static struct event_base *base;
static char *tmp;              /* per-test temp dir */
static struct h_redis g_redis; /* the shared server of the redis tests */
static bool in_send;           /* set around dest_send(): DONE must not run then */
static int done_inside_send;   /* contract violations seen */
static bool private_mounts;    /* we may mount a tmpfs (for ENOSPC) */

struct result {
    int n; /* DONE calls */
    int rc;
    char err[512];
};

static void on_done(void *arg, int rc, const char *errmsg)
{
    struct result *r = arg;

    if (in_send)
        done_inside_send++;
    r->n++;
    r->rc = rc;
    snprintf(r->err, sizeof(r->err), "%s", errmsg != NULL ? errmsg : "");
}

/* Run the loop for up to MS milliseconds (the polling interval of the waits below). */
static void pump(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

/* Run the loop until PRED(ARG) or TIMEOUT_MS. */
static bool run_until(bool (*pred)(void *), void *arg, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;

    while (!pred(arg)) {
        if (h_now_ms() >= deadline)
            return false;
        pump(10);
    }
    return true;
}

static bool is_done(void *arg)
{
    return ((struct result *)arg)->n > 0;
}

/* dest_send() of BODY with KEY and ATTRS; the result lands in R (reset here). */
static int send_msg(struct dest *d, const char *body, const char *key,
                    const struct dest_attr *attrs, size_t n_attrs, struct result *r)
{
    struct dest_msg m = {
        .body = body, .len = strlen(body), .key = key, .attrs = attrs, .n_attrs = n_attrs};
    int rc;

    memset(r, 0, sizeof(*r));
    in_send = true;
    rc = dest_send(d, &m, on_done, r);
    in_send = false;
    return rc;
}

/* Send and wait for DONE (bounded by the contract's timeout plus slack). Returns DONE's rc. */
static int send_wait(struct dest *d, const char *body, const char *key,
                     const struct dest_attr *attrs, size_t n_attrs, struct result *r)
{
    assert_int_equal(send_msg(d, body, key, attrs, n_attrs, r), 0);
    if (!run_until(is_done, r, DEST_SEND_TIMEOUT_MS + 3000))
        fail_msg("DONE never came for %s", d->uri);
    /* Exactly once: nothing more may arrive. */
    pump(1);
    assert_int_equal(r->n, 1);
    return r->rc;
}

/* Send BODY until a send succeeds (polling every 50 ms), up to TIMEOUT_MS. Returns last rc. */
static int send_until_ok(struct dest *d, const char *body, int timeout_ms, struct result *r)
{
    int64_t deadline = h_now_ms() + timeout_ms;

    for (;;) {
        if (send_wait(d, body, "poll", NULL, 0, r) == 0 || h_now_ms() >= deadline)
            return r->rc;
        pump(50);
    }
}

struct state_wait {
    struct dest *d;
    const char *prefix;
};

static bool state_has_prefix(void *arg)
{
    struct state_wait *w = arg;

    return strncmp(dest_state(w->d), w->prefix, strlen(w->prefix)) == 0;
}

static void wait_state(struct dest *d, const char *prefix, int timeout_ms)
{
    struct state_wait w = {d, prefix};

    if (!run_until(state_has_prefix, &w, timeout_ms))
        fail_msg("%s: state \"%s\", expected \"%s...\" within %d ms", d->uri, dest_state(d), prefix,
                 timeout_ms);
}

static struct dest *open_dest(const char *uri)
{
    struct sy_error err = {{0}};
    struct dest *d = NULL;
    int rc = dest_open(base, uri, &d, &err);

    if (rc != 0)
        fail_msg("dest_open(%s): %d %s", uri, rc, err.msg);
    assert_non_null(d);
    assert_string_equal(d->uri, uri);
    return d;
}

static void expect_contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) == NULL)
        fail_msg("expected \"%s\" in \"%s\"", needle, hay);
}

static int setup(void **state)
{
    base = event_base_new();
    tmp = h_tmpdir_create("dest");
    done_inside_send = 0;
    return base != NULL && tmp != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    /* Let deferred frees (bufferevents) run before the base goes. */
    pump(1);
    event_base_free(base);
    base = NULL;
    h_rm_rf(tmp);
    free(tmp);
    tmp = NULL;
    assert_int_equal(done_inside_send, 0);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* file:                                                                                    */

static const struct dest_attr dlq_attrs[] = {
    {"RequestID", "req-7", 0},
    {"ErrorCode", "500", 1},
    {"ErrorMessage", "boom \"quoted\"", 0},
};

/* The names in DIR other than "." and "..", sorted, newline-separated (new). */
static char *list_dir(const char *dir)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    char *out = h_strfmt("%s", "");

    for (int i = 0; i < n; i++) {
        if (strcmp(names[i]->d_name, ".") != 0 && strcmp(names[i]->d_name, "..") != 0) {
            char *next = h_strfmt("%s%s\n", out, names[i]->d_name);

            free(out);
            out = next;
        }
        free(names[i]);
    }
    if (n >= 0)
        free(names);
    return out;
}

/* The Nth (0-based) line of LIST (new), or NULL. */
static char *nth_line(const char *list, int nth)
{
    const char *p = list;

    for (int i = 0; i < nth && p != NULL; i++) {
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    if (p == NULL || *p == '\0')
        return NULL;
    return strndup(p, strcspn(p, "\n"));
}

static void test_file_write(void **state)
{
    char *dir = h_strfmt("%s/out/nested", tmp); /* does not exist: mkdir -p */
    char *uri = h_strfmt("file:%s", dir);
    struct dest *d = open_dest(uri);
    struct result r;
    regex_t re;
    char *list, *name, *path, *content;
    json_t *j;

    assert_int_equal(send_wait(d, "{\"a\":1}", "req-1", NULL, 0, &r), 0);
    assert_int_equal(send_wait(d, "{\"a\":2}", "weird/key with spaces", dlq_attrs, 3, &r), 0);
    assert_string_equal(dest_state(d), "ok");
    assert_int_equal(d->sent, 2);
    assert_int_equal(d->failures, 0);

    list = list_dir(dir);
    assert_int_equal(h_str_count(list, "\n"), 2); /* no .tmp- left behind */
    assert_null(strstr(list, ".tmp-"));
    assert_int_equal(regcomp(&re,
                             "^[0-9]{8}T[0-9]{6}\\.[0-9]{3}Z-req-1-1\\.json\n"
                             "[0-9]{8}T[0-9]{6}\\.[0-9]{3}Z-weird_key_with_spaces-2\\.json\n$",
                             REG_EXTENDED),
                     0);
    if (regexec(&re, list, 0, NULL, 0) != 0)
        fail_msg("unexpected file names:\n%s", list);
    regfree(&re);

    /* Without attributes: the body as is. */
    name = nth_line(list, 0);
    path = h_strfmt("%s/%s", dir, name);
    content = h_read_file(path, 0, NULL);
    assert_non_null(content);
    assert_string_equal(content, "{\"a\":1}");
    free(content);
    free(path);
    free(name);

    /* With attributes: the envelope, numbers as numbers. */
    name = nth_line(list, 1);
    path = h_strfmt("%s/%s", dir, name);
    content = h_read_file(path, 0, NULL);
    assert_non_null(content);
    j = h_json_parse(content, strlen(content));
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "body"), "a")), 2);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(j, "attributes"), "RequestID")), "req-7");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "attributes"), "ErrorCode")), 500);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(j, "attributes"), "ErrorMessage")),
        "boom \"quoted\"");
    json_decref(j);
    free(content);
    free(path);
    free(name);

    free(list);
    dest_destroy(d);
    free(uri);
    free(dir);
}

/* A directory that cannot be created (a file is in the way; root ignores permissions). */
static void test_file_unwritable(void **state)
{
    char *file = h_strfmt("%s/plainfile", tmp);
    char *uri = h_strfmt("file:%s/sub", file);
    struct dest *d;
    struct result r;

    assert_int_equal(h_write_file(file, "x", 1), 0);
    d = open_dest(uri);
    assert_int_equal(send_wait(d, "{}", "k", NULL, 0, &r), SY_EIO);
    expect_contains(r.err, "create directory");
    expect_contains(r.err, "Not a directory");
    expect_contains(dest_state(d), "failing: ");
    assert_int_equal(d->failures, 1);
    /* Still usable, still failing cleanly. */
    assert_int_equal(send_wait(d, "{}", "k", NULL, 0, &r), SY_EIO);
    dest_destroy(d);
    free(uri);
    free(file);
}

/* A full disk: a 64 KB tmpfs (needs CAP_SYS_ADMIN, in our private mount namespace). */
static void test_file_enospc(void **state)
{
    char *dir = h_strfmt("%s/small", tmp);
    char *uri = h_strfmt("file:%s", dir);
    size_t big_len = 512 * 1024;
    char *big = malloc(big_len + 3);
    struct dest *d;
    struct result r;

    if (!private_mounts || mkdir(dir, 0755) != 0 ||
        mount("tmpfs", dir, "tmpfs", 0, "size=64k") != 0) {
        free(big);
        free(uri);
        free(dir);
        print_message("cannot mount a small tmpfs here (not root?): ENOSPC not simulated\n");
        skip();
    }
    /* A JSON string of 512 KB: more than the file system holds. */
    big[0] = '"';
    memset(big + 1, 'x', big_len);
    big[big_len + 1] = '"';
    big[big_len + 2] = '\0';
    d = open_dest(uri);
    assert_int_equal(send_wait(d, big, "big", NULL, 0, &r), SY_ENOSPC);
    expect_contains(r.err, "no space left on device");
    /* The temp file is gone; a small message still fits. */
    assert_int_equal(send_wait(d, "{\"small\":true}", "small", NULL, 0, &r), 0);
    {
        char *list = list_dir(dir);

        assert_null(strstr(list, ".tmp-"));
        assert_int_equal(h_str_count(list, "\n"), 1);
        free(list);
    }
    dest_destroy(d);
    umount2(dir, MNT_DETACH);
    free(big);
    free(uri);
    free(dir);
}

/* destroy() with writes queued and one in progress: all get DONE before it returns. */
static void test_file_destroy_pending(void **state)
{
    char *uri = h_strfmt("file:%s/many", tmp);
    struct dest *d = open_dest(uri);
    struct result r[50];
    int ok = 0, canceled = 0;

    for (int i = 0; i < 50; i++)
        assert_int_equal(send_msg(d, "{\"n\":1}", "m", NULL, 0, &r[i]), 0);
    dest_destroy(d);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(r[i].n, 1);
        if (r[i].rc == 0)
            ok++;
        else if (r[i].rc == SY_ECANCELED && strcmp(r[i].err, "destination closed") == 0)
            canceled++;
        else
            fail_msg("send %d: %d %s", i, r[i].rc, r[i].err);
    }
    assert_int_equal(ok + canceled, 50);
    free(uri);
}

/* DONE may destroy the destination: the free is deferred, the others still get DONE. */
struct destroy_in_done {
    struct dest *d;
    int n;
};

static void on_done_destroy(void *arg, int rc, const char *errmsg)
{
    struct destroy_in_done *x = arg;

    x->n++;
    if (x->d != NULL) {
        struct dest *d = x->d;

        x->d = NULL;
        dest_destroy(d);
    }
}

static void test_file_destroy_in_done(void **state)
{
    char *uri = h_strfmt("file:%s/x", tmp);
    struct destroy_in_done x = {open_dest(uri), 0};
    struct dest_msg m = {.body = "{}", .len = 2, .key = "k"};

    for (int i = 0; i < 5; i++)
        assert_int_equal(dest_send(x.d, &m, on_done_destroy, &x), 0);
    for (int64_t deadline = h_now_ms() + 5000; x.n < 5 && h_now_ms() < deadline;)
        pump(10);
    assert_int_equal(x.n, 5);
    assert_null(x.d);
    free(uri);
}

/*
 * A hung disk: the worker is stuck in a write (held by the test hook). destroy() must not wait
 * for it forever: it gives up after a bounded wait, reports both the send being written and
 * the queued one canceled, and returns; the orphaned worker frees what it holds once the write
 * returns.
 */
static bool file_worker_held(void *arg)
{
    return dest_file_test_held() == *(int *)arg;
}

static bool file_threads_are(void *arg)
{
    return dest_file_test_threads() == *(int *)arg;
}

static void test_file_destroy_hung_disk(void **state)
{
    char *uri = h_strfmt("file:%s/hung", tmp);
    int base_threads = dest_file_test_threads();
    int one = 1;
    struct dest *d;
    struct result r[2];

    dest_file_test_hold(true);
    d = open_dest(uri);
    assert_int_equal(dest_file_test_threads(), base_threads + 1);
    assert_int_equal(send_msg(d, "{\"n\":1}", "busy", NULL, 0, &r[0]), 0);
    assert_int_equal(send_msg(d, "{\"n\":2}", "queued", NULL, 0, &r[1]), 0);
    if (!run_until(file_worker_held, &one, 5000))
        fail_msg("the worker never reached its write");
    dest_destroy(d); /* without the bound: never returns */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(r[i].n, 1);
        assert_int_equal(r[i].rc, SY_ECANCELED);
        assert_string_equal(r[i].err, "destination closed");
    }
    /* The orphaned worker is still in its write. */
    assert_int_equal(dest_file_test_threads(), base_threads + 1);
    dest_file_test_hold(false);
    if (!run_until(file_threads_are, &base_threads, 5000))
        fail_msg("the orphaned worker never returned");
    /* Nothing reached the loop after destroy (it must not touch the destination). */
    pump(20);
    assert_int_equal(r[0].n, 1);
    assert_int_equal(r[1].n, 1);
    free(uri);
}

/* ---------------------------------------------------------------------------------------- */
/* redis://                                                                                 */

/* A command on a fresh blocking connection to PORT. Returns new (freeReplyObject) or fails. */
static redisReply *redis_cmd(int port, const char *fmt, ...)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    redisReply *reply = NULL;
    va_list ap;

    if (c == NULL || c->err != 0)
        fail_msg("connect to redis on %d: %s", port, c != NULL ? c->errstr : "oom");
    redisSetTimeout(c, tv);
    va_start(ap, fmt);
    reply = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (reply == NULL)
        fail_msg("redis command %s: %s", fmt, c->errstr);
    redisFree(c);
    return reply;
}

static int group_setup_redis(void **state)
{
    if (h_redis_start(&g_redis) != 0)
        return -1;
    return 0;
}

static int group_teardown_redis(void **state)
{
    h_redis_free(&g_redis);
    return 0;
}

/* Make sure the shared server runs (a test may have stopped it) and KEY is gone. */
static void redis_fresh(const char *key)
{
    redisReply *reply;

    assert_int_equal(h_redis_start(&g_redis), 0);
    reply = redis_cmd(g_redis.port, "DEL %s", key);
    freeReplyObject(reply);
}

static void test_redis_list(void **state)
{
    char *uri = h_strfmt("redis://127.0.0.1:%d/list/sy:list", g_redis.port);
    struct dest *d;
    struct result r;
    redisReply *reply;
    json_t *j;

    redis_fresh("sy:list");
    d = open_dest(uri);
    wait_state(d, "connected", 5000);
    assert_int_equal(send_wait(d, "{\"a\":1}", "req-1", NULL, 0, &r), 0);
    assert_int_equal(send_wait(d, "{\"a\":2}", "req-2", dlq_attrs, 3, &r), 0);
    assert_int_equal(d->sent, 2);

    reply = redis_cmd(g_redis.port, "LRANGE sy:list 0 -1");
    assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
    assert_int_equal(reply->elements, 2);
    assert_string_equal(reply->element[0]->str, "{\"a\":1}");
    j = h_json_parse(reply->element[1]->str, reply->element[1]->len);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "body"), "a")), 2);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "attributes"), "ErrorCode")), 500);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(j, "attributes"), "RequestID")), "req-7");
    json_decref(j);
    freeReplyObject(reply);
    dest_destroy(d);
    free(uri);
}

/* The value of FIELD in the flat [field, value, ...] array A, or NULL. */
static const char *field_of(const redisReply *a, const char *field)
{
    for (size_t i = 0; i + 1 < a->elements; i += 2) {
        if (strcmp(a->element[i]->str, field) == 0)
            return a->element[i + 1]->str;
    }
    return NULL;
}

static void test_redis_stream(void **state)
{
    char *uri = h_strfmt("redis://127.0.0.1:%d/stream/sy:stream", g_redis.port);
    struct dest *d;
    struct result r;
    redisReply *reply, *fields;

    redis_fresh("sy:stream");
    d = open_dest(uri);
    wait_state(d, "connected", 5000);
    assert_int_equal(send_wait(d, "{\"a\":1}", "req-1", NULL, 0, &r), 0);
    assert_int_equal(send_wait(d, "{\"a\":2}", "req-2", dlq_attrs, 3, &r), 0);

    reply = redis_cmd(g_redis.port, "XRANGE sy:stream - +");
    assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
    assert_int_equal(reply->elements, 2);
    fields = reply->element[0]->element[1];
    assert_int_equal(fields->elements, 2);
    assert_string_equal(field_of(fields, "body"), "{\"a\":1}");
    fields = reply->element[1]->element[1];
    assert_int_equal(fields->elements, 8);
    assert_string_equal(field_of(fields, "body"), "{\"a\":2}"); /* unchanged: no envelope */
    assert_string_equal(field_of(fields, "RequestID"), "req-7");
    assert_string_equal(field_of(fields, "ErrorCode"), "500");
    assert_string_equal(field_of(fields, "ErrorMessage"), "boom \"quoted\"");
    freeReplyObject(reply);
    dest_destroy(d);
    free(uri);
}

/* An error reply fails that send with the error text; the connection stays. */
static void test_redis_error_reply(void **state)
{
    char *uri = h_strfmt("redis://127.0.0.1:%d/list/sy:string", g_redis.port);
    struct dest *d;
    struct result r;

    redis_fresh("sy:string");
    freeReplyObject(redis_cmd(g_redis.port, "SET sy:string not-a-list"));
    d = open_dest(uri);
    wait_state(d, "connected", 5000);
    assert_int_equal(send_wait(d, "{}", "k", NULL, 0, &r), SY_EIO);
    expect_contains(r.err, "WRONGTYPE");
    assert_string_equal(dest_state(d), "connected");
    assert_int_equal(d->failures, 1);
    dest_destroy(d);
    free(uri);
}

/* Down at create: fail fast; the server comes up: the same destination recovers. */
static void test_redis_down_at_create(void **state)
{
    struct h_redis later = {0};
    char *uri;
    struct dest *d;
    struct result r;
    redisReply *reply;

    assert_true(h_redis_reserve_port(&later) > 0);
    uri = h_strfmt("redis://127.0.0.1:%d/list/sy:late", later.port);
    d = open_dest(uri);
    wait_state(d, "reconnecting in ", 5000);
    expect_contains(dest_state(d), "Connection refused");
    assert_int_equal(send_wait(d, "{\"early\":1}", "k", NULL, 0, &r), SY_EIO);
    expect_contains(r.err, "not connected: ");

    assert_int_equal(h_redis_start(&later), 0);
    assert_int_equal(send_until_ok(d, "{\"late\":1}", 10000, &r), 0);
    assert_string_equal(dest_state(d), "connected");
    reply = redis_cmd(later.port, "LRANGE sy:late 0 -1");
    assert_int_equal(reply->elements, 1);
    assert_string_equal(reply->element[0]->str, "{\"late\":1}");
    freeReplyObject(reply);
    dest_destroy(d);
    h_redis_free(&later);
    free(uri);
}

/* Killed mid-way: sends fail, then succeed again once it is back, same destination. */
static void test_redis_killed_midway(void **state)
{
    char *uri = h_strfmt("redis://127.0.0.1:%d/list/sy:kill", g_redis.port);
    struct dest *d;
    struct result r;
    int64_t deadline;

    redis_fresh("sy:kill");
    d = open_dest(uri);
    wait_state(d, "connected", 5000);
    assert_int_equal(send_wait(d, "{\"before\":1}", "k", NULL, 0, &r), 0);

    assert_int_equal(h_redis_stop(&g_redis), 0);
    /* The loss is noticed (the socket closes), then sends fail fast. */
    deadline = h_now_ms() + 5000;
    while (send_wait(d, "{\"down\":1}", "k", NULL, 0, &r) == 0 && h_now_ms() < deadline)
        pump(20);
    assert_int_equal(r.rc, SY_EIO);
    wait_state(d, "reconnecting in ", 5000);

    assert_int_equal(h_redis_start(&g_redis), 0);
    assert_int_equal(send_until_ok(d, "{\"after\":1}", 10000, &r), 0);
    assert_string_equal(dest_state(d), "connected");
    dest_destroy(d);
    free(uri);
}

/* A server that stops answering (SIGSTOP): the send times out, the connection is re-made. */
static void test_redis_send_timeout(void **state)
{
    char *uri = h_strfmt("redis://127.0.0.1:%d/list/sy:stuck", g_redis.port);
    struct dest *d;
    struct result r, r2;

    redis_fresh("sy:stuck");
    d = open_dest(uri);
    wait_state(d, "connected", 5000);
    assert_int_equal(kill(g_redis.proc.pid, SIGSTOP), 0);
    assert_int_equal(send_msg(d, "{\"stuck\":1}", "k1", NULL, 0, &r), 0);
    assert_int_equal(send_msg(d, "{\"stuck\":2}", "k2", NULL, 0, &r2), 0);
    if (!run_until(is_done, &r, DEST_SEND_TIMEOUT_MS + 3000))
        fail_msg("no timeout");
    pump(1);
    assert_int_equal(r.rc, SY_ETIMEDOUT);
    /* The second send was on the same (dropped) connection: it fails with it. */
    assert_int_equal(r2.n, 1);
    assert_true(r2.rc == SY_ETIMEDOUT || r2.rc == SY_EIO);
    assert_int_equal(kill(g_redis.proc.pid, SIGCONT), 0);
    assert_int_equal(send_until_ok(d, "{\"after\":1}", 10000, &r), 0);
    dest_destroy(d);
    free(uri);
}

/* destroy() with replies pending, and with a reconnect timer pending, and mid-connect. */
static void test_redis_destroy(void **state)
{
    struct h_redis nobody = {0};
    char *uri = h_strfmt("redis://127.0.0.1:%d/list/sy:destroy", g_redis.port);
    char *down_uri;
    struct dest *d;
    struct result r[20];

    redis_fresh("sy:destroy");
    /* Replies pending. */
    d = open_dest(uri);
    wait_state(d, "connected", 5000);
    for (int i = 0; i < 20; i++)
        assert_int_equal(send_msg(d, "{}", "k", NULL, 0, &r[i]), 0);
    dest_destroy(d);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(r[i].n, 1);
        assert_int_equal(r[i].rc, SY_ECANCELED);
        assert_string_equal(r[i].err, "destination closed");
    }

    /* Sends queued while connecting. */
    d = open_dest(uri);
    for (int i = 0; i < 3; i++)
        assert_int_equal(send_msg(d, "{}", "k", NULL, 0, &r[i]), 0);
    dest_destroy(d);
    for (int i = 0; i < 3; i++)
        assert_int_equal(r[i].n, 1);

    /* A reconnect timer pending, and a fail-fast DONE not delivered yet. */
    assert_true(h_redis_reserve_port(&nobody) > 0);
    down_uri = h_strfmt("redis://127.0.0.1:%d/list/k", nobody.port);
    d = open_dest(down_uri);
    wait_state(d, "reconnecting in ", 5000);
    assert_int_equal(send_msg(d, "{}", "k", NULL, 0, &r[0]), 0);
    dest_destroy(d);
    assert_int_equal(r[0].n, 1);
    assert_int_equal(r[0].rc, SY_EIO); /* it had failed already; that is its result */

    /* A host name lookup in flight (localhost: the lookup thread). */
    free(uri);
    uri = h_strfmt("redis://localhost:%d/list/sy:destroy", g_redis.port);
    d = open_dest(uri);
    dest_destroy(d);
    /* And one that completes. */
    d = open_dest(uri);
    wait_state(d, "connected", 5000);
    assert_int_equal(send_wait(d, "{}", "k", NULL, 0, &r[0]), 0);
    dest_destroy(d);

    h_redis_free(&nobody);
    free(down_uri);
    free(uri);
}

static void test_redis_bad_uri(void **state)
{
    struct sy_error err = {{0}};
    struct dest *d = (struct dest *)1;

    assert_int_equal(dest_open(base, "redis://127.0.0.1:6379/hash/k", &d, &err), SY_EINVAL);
    assert_null(d);
    expect_contains(err.msg, "redis://HOST:PORT/list/KEY");
    assert_int_equal(dest_open(base, "redis://127.0.0.1:6379/list/", &d, &err), SY_EINVAL);
}

/* ---------------------------------------------------------------------------------------- */
/* http:// and https://                                                                     */

struct srv {
    struct evhttp *http;
    int port;
    int status; /* what to answer */
    bool hold;  /* do not answer at all */
    int n_requests;
    char method[16];
    char uri[256];
    char body[4096];
    char content_type[128];
    char key[2048];
    char request_id[2048];
    char error_code[64];
    char multiline[2048];
    char host[256];
    int n_host; /* Host headers in the last request */
    size_t long_len;
    bool injected; /* a header smuggled in through an attribute value */
};

static void copy_header(struct evkeyvalq *h, const char *name, char *out, size_t n)
{
    const char *v = evhttp_find_header(h, name);

    snprintf(out, n, "%s", v != NULL ? v : "<absent>");
}

static void srv_handle(struct evhttp_request *req, void *arg)
{
    struct srv *s = arg;
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *lng;

    s->n_requests++;
    snprintf(s->method, sizeof(s->method), "%s",
             evhttp_request_get_command(req) == EVHTTP_REQ_POST ? "POST" : "other");
    snprintf(s->uri, sizeof(s->uri), "%s", evhttp_request_get_uri(req));
    if (len >= sizeof(s->body))
        len = sizeof(s->body) - 1;
    evbuffer_copyout(in, s->body, len);
    s->body[len] = '\0';
    copy_header(h, "Content-Type", s->content_type, sizeof(s->content_type));
    copy_header(h, "X-Sy-Message-Key", s->key, sizeof(s->key));
    copy_header(h, "X-Sy-Attribute-RequestID", s->request_id, sizeof(s->request_id));
    copy_header(h, "X-Sy-Attribute-ErrorCode", s->error_code, sizeof(s->error_code));
    copy_header(h, "X-Sy-Attribute-Multi", s->multiline, sizeof(s->multiline));
    copy_header(h, "Host", s->host, sizeof(s->host));
    s->n_host = 0;
    for (struct evkeyval *kv = h->tqh_first; kv != NULL; kv = kv->next.tqe_next)
        s->n_host += strcasecmp(kv->key, "Host") == 0;
    lng = evhttp_find_header(h, "X-Sy-Attribute-Long");
    s->long_len = lng != NULL ? strlen(lng) : 0;
    s->injected = evhttp_find_header(h, "Injected") != NULL;
    if (s->hold)
        return; /* freed with the server */
    evhttp_send_reply(req, s->status, s->status == 200 ? "OK" : "Server Error", NULL);
}

/* Listen on 127.0.0.1:s->port (0: pick one; the port is kept for a restart). */
static void srv_start(struct srv *s)
{
    struct evhttp_bound_socket *bs;
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);

    s->http = evhttp_new(base);
    assert_non_null(s->http);
    evhttp_set_gencb(s->http, srv_handle, s);
    bs = evhttp_bind_socket_with_handle(s->http, "127.0.0.1", (ev_uint16_t)s->port);
    assert_non_null(bs);
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sin, &len), 0);
    s->port = ntohs(sin.sin_port);
}

static void srv_stop(struct srv *s)
{
    if (s->http != NULL)
        evhttp_free(s->http);
    s->http = NULL;
}

static void test_http_ok(void **state)
{
    struct srv s = {.status = 200};
    char *uri, longv[3000];
    struct dest *d;
    struct result r;
    struct dest_attr attrs[] = {
        {"RequestID", "req-7", 0},
        {"ErrorCode", "500", 1},
        {"Multi", "line one\r\nInjected: yes\nline two", 0},
        {"Long", longv, 0},
    };

    memset(longv, 'v', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    srv_start(&s);
    uri = h_strfmt("http://127.0.0.1:%d/hook/in?x=1", s.port);
    d = open_dest(uri);
    assert_int_equal(send_wait(d, "{\"a\":1}", "req-7\r\nX-Evil: 1", attrs, 4, &r), 0);
    assert_int_equal(s.n_requests, 1);
    assert_string_equal(s.method, "POST");
    assert_string_equal(s.uri, "/hook/in?x=1");
    assert_string_equal(s.body, "{\"a\":1}"); /* the body unchanged: attributes are headers */
    assert_string_equal(s.content_type, "application/json");
    assert_int_equal(s.n_host, 1);
    {
        char *host = h_strfmt("127.0.0.1:%d", s.port);

        assert_string_equal(s.host, host);
        free(host);
    }
    assert_string_equal(s.key, "req-7X-Evil: 1");
    assert_string_equal(s.request_id, "req-7");
    assert_string_equal(s.error_code, "500");
    assert_string_equal(s.multiline, "line oneInjected: yesline two");
    assert_false(s.injected);
    assert_int_equal(s.long_len, 1024);
    assert_string_equal(dest_state(d), "connected");

    /* More on the same (keep-alive) connection. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(send_wait(d, "{\"b\":2}", "k", NULL, 0, &r), 0);
    assert_int_equal(s.n_requests, 4);
    assert_int_equal(d->sent, 4);
    dest_destroy(d);
    srv_stop(&s);
    free(uri);
}

static void test_http_status_error(void **state)
{
    struct srv s = {.status = 500};
    char *uri;
    struct dest *d;
    struct result r;

    srv_start(&s);
    uri = h_strfmt("http://127.0.0.1:%d/", s.port);
    d = open_dest(uri);
    assert_int_equal(send_wait(d, "{}", "k", NULL, 0, &r), SY_EIO);
    expect_contains(r.err, "HTTP 500");
    /* An HTTP error is an answer: not "down", the next send goes out. */
    s.status = 200;
    assert_int_equal(send_wait(d, "{}", "k", NULL, 0, &r), 0);
    assert_int_equal(s.n_requests, 2);
    dest_destroy(d);
    srv_stop(&s);
    free(uri);
}

/* Nothing listening: failure; then the server comes up on that port: the same dest works. */
static void test_http_down_then_up(void **state)
{
    struct srv s = {.status = 200};
    char *uri;
    struct dest *d;
    struct result r;

    srv_start(&s); /* only to pick a port */
    srv_stop(&s);
    uri = h_strfmt("http://127.0.0.1:%d/", s.port);
    d = open_dest(uri);
    assert_int_equal(send_wait(d, "{}", "k", NULL, 0, &r), SY_EIO);
    expect_contains(r.err, "connect to 127.0.0.1:");
    /* "reconnecting in N ms: ..." during the backoff, "down, ..." after it: both say why. */
    expect_contains(dest_state(d), "connect to 127.0.0.1:");

    srv_start(&s);
    assert_int_equal(send_until_ok(d, "{\"up\":1}", 10000, &r), 0);
    assert_string_equal(s.body, "{\"up\":1}");

    /* The server goes away (closing our keep-alive connection) and comes back. */
    srv_stop(&s);
    pump(20);
    srv_start(&s);
    assert_int_equal(send_until_ok(d, "{\"again\":1}", 10000, &r), 0);
    assert_string_equal(s.body, "{\"again\":1}");
    dest_destroy(d);
    srv_stop(&s);
    free(uri);
}

/* A raw listener that answers every connection with REPLY and closes. */
struct raw {
    struct evconnlistener *l;
    int port;
    const char *reply;
};

static void raw_written(struct bufferevent *bev, void *arg)
{
    bufferevent_free(bev); /* flushed: close */
}

static void raw_event(struct bufferevent *bev, short what, void *arg)
{
    bufferevent_free(bev);
}

static void raw_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                       int socklen, void *arg)
{
    struct raw *raw = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);

    bufferevent_setcb(bev, NULL, raw_written, raw_event, raw);
    bufferevent_write(bev, raw->reply, strlen(raw->reply));
    bufferevent_enable(bev, EV_WRITE);
}

static void raw_start(struct raw *raw)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    raw->l =
        evconnlistener_new_bind(base, raw_accept, raw, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                -1, (struct sockaddr *)&sin, sizeof(sin));
    assert_non_null(raw->l);
    assert_int_equal(getsockname(evconnlistener_get_fd(raw->l), (struct sockaddr *)&sin, &len), 0);
    raw->port = ntohs(sin.sin_port);
}

static void test_http_garbage(void **state)
{
    struct raw raw = {.reply = "garbage that is not HTTP\r\n\r\n"};
    char *uri;
    struct dest *d;
    struct result r;

    raw_start(&raw);
    uri = h_strfmt("http://127.0.0.1:%d/", raw.port);
    d = open_dest(uri);
    assert_int_equal(send_wait(d, "{}", "k", NULL, 0, &r), SY_EIO);
    assert_true(strlen(r.err) > 0);
    dest_destroy(d);
    evconnlistener_free(raw.l);
    free(uri);
}

/* https:// to a port that speaks plain HTTP: the handshake fails, with a clear error. */
static void test_https_plain_port(void **state)
{
    struct raw raw = {.reply = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"};
    char *uri;
    struct dest *d;
    struct result r;

    raw_start(&raw);
    uri = h_strfmt("https://127.0.0.1:%d/hook", raw.port);
    d = open_dest(uri);
    assert_int_equal(send_wait(d, "{}", "k", NULL, 0, &r), SY_EIO);
    expect_contains(r.err, "TLS");
    print_message("https to a plain port: %s\n", r.err);
    /* Again: failing fast during the backoff ("not connected: TLS ..."), or trying again after
     * it; either way the reason is the handshake. */
    assert_int_equal(send_wait(d, "{}", "k", NULL, 0, &r), SY_EIO);
    expect_contains(r.err, "TLS handshake with 127.0.0.1:");
    dest_destroy(d);
    evconnlistener_free(raw.l);
    free(uri);

    /* https:// with nothing listening, and with a host name (lookup + SNI path). */
    uri = h_strfmt("https://localhost:%d/", raw.port);
    d = open_dest(uri);
    assert_int_equal(send_wait(d, "{}", "k", NULL, 0, &r), SY_EIO);
    expect_contains(r.err, "connect to localhost:");
    dest_destroy(d);
    free(uri);
}

/* destroy() with requests in flight (the server never answers) and waiting for a lookup. */
static void test_http_destroy_pending(void **state)
{
    struct srv s = {.status = 200, .hold = true};
    char *uri;
    struct dest *d;
    struct result r[5];

    srv_start(&s);
    uri = h_strfmt("http://127.0.0.1:%d/", s.port);
    d = open_dest(uri);
    for (int i = 0; i < 5; i++)
        assert_int_equal(send_msg(d, "{}", "k", NULL, 0, &r[i]), 0);
    /* Let the first request reach the server. */
    for (int64_t deadline = h_now_ms() + 5000; s.n_requests == 0 && h_now_ms() < deadline;)
        pump(10);
    assert_int_equal(s.n_requests, 1);
    dest_destroy(d);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(r[i].n, 1);
        assert_int_equal(r[i].rc, SY_ECANCELED);
    }
    free(uri);

    uri = h_strfmt("http://localhost:%d/", s.port);
    d = open_dest(uri);
    assert_int_equal(send_msg(d, "{}", "k", NULL, 0, &r[0]), 0);
    dest_destroy(d);
    assert_int_equal(r[0].n, 1);
    assert_int_equal(r[0].rc, SY_ECANCELED);
    srv_stop(&s);
    free(uri);
}

/*
 * libevent's own allocations go through these (event_set_mem_functions(), first thing in
 * main()): they pass through, except that once armed, the next allocation of exactly
 * oom_size bytes fails. Lets a test reach libevent's out-of-memory paths.
 */
static _Atomic size_t oom_size; /* 0: disarmed */
static _Atomic int oom_hits;

static void *mm_malloc_hook(size_t n)
{
    size_t want = n;

    if (n != 0 && atomic_compare_exchange_strong(&oom_size, &want, 0)) {
        oom_hits++;
        return NULL;
    }
    return malloc(n);
}

static void *mm_realloc_hook(void *p, size_t n)
{
    return realloc(p, n);
}

static void mm_free_hook(void *p)
{
    free(p);
}

/*
 * evhttp_make_request() fails for want of memory copying the URI: libevent 2.1 has freed the
 * request itself by then, so it must not be freed again (a double free, fatal under ASan and
 * glibc's checks), and DONE still comes exactly once. The path has a length no other
 * allocation of the send has, so the failed allocation is the URI copy.
 */
static void test_http_oom_make_request(void **state)
{
    struct srv s = {.status = 200};
    char path[201];
    char *uri;
    struct dest *d;
    struct result r;

    path[0] = '/';
    memset(path + 1, 'p', sizeof(path) - 2);
    path[sizeof(path) - 1] = '\0';
    srv_start(&s);
    uri = h_strfmt("http://127.0.0.1:%d%s", s.port, path);
    d = open_dest(uri);
    oom_hits = 0;
    oom_size = strlen(path) + 1; /* mm_strdup(uri) in evhttp_make_request() */
    assert_int_equal(send_msg(d, "{}", "k", NULL, 0, &r), 0);
    oom_size = 0;
    assert_int_equal(oom_hits, 1);
    if (!run_until(is_done, &r, 5000))
        fail_msg("DONE never came after the failed request");
    pump(1);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.rc, SY_EIO);
    expect_contains(r.err, "cannot send a request");
    assert_int_equal(s.n_requests, 0);

    /* The destination goes on working. */
    assert_int_equal(send_wait(d, "{}", "k", NULL, 0, &r), 0);
    assert_int_equal(s.n_requests, 1);
    dest_destroy(d);
    srv_stop(&s);
    free(uri);
}

/* ---------------------------------------------------------------------------------------- */

int main(void)
{
    const struct CMUnitTest file_tests[] = {
        cmocka_unit_test_setup_teardown(test_file_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_unwritable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_enospc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_destroy_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_destroy_in_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_destroy_hung_disk, setup, teardown),
    };
    const struct CMUnitTest redis_tests[] = {
        cmocka_unit_test_setup_teardown(test_redis_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_error_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_down_at_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_killed_midway, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_send_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_destroy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_bad_uri, setup, teardown),
    };
    const struct CMUnitTest http_tests[] = {
        cmocka_unit_test_setup_teardown(test_http_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_status_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_down_then_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_https_plain_port, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_destroy_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_oom_make_request, setup, teardown),
    };
    int failed = 0;

    /* Before libevent allocates anything (see mm_malloc_hook()). */
    event_set_mem_functions(mm_malloc_hook, mm_realloc_hook, mm_free_hook);
    /*
     * The file destination's worker and the host name lookups wake the loop from other
     * threads (event_active): libevent needs its locking on before any event_base exists.
     * The broker's main() must do the same.
     */
    evthread_use_pthreads();
    h_proc_init();
    /* A mount namespace of our own, so the ENOSPC test can mount a tiny tmpfs (root only). */
    private_mounts =
        unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0;
    if (getenv("SY_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("SY_TEST_FILTER"));

    failed += cmocka_run_group_tests_name("dest_file", file_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("dest_redis", redis_tests, group_setup_redis,
                                          group_teardown_redis);
    failed += cmocka_run_group_tests_name("dest_http", http_tests, NULL, NULL);
    h_proc_kill_strays(NULL, 0, 1000);
    return failed != 0;
}
