/*
 * tests/integration/test_src_redis.c - the Redis source (sources/redis/) driven directly on a
 * libevent loop of the test's own, with a stub host that collects the records it is given and
 * acks them when told: no broker process. The server is a real redis-server on a free loopback
 * port (tests/harness/redis.h); the test produces and inspects keys with blocking hiredis.
 *
 * Every test checks the source.h contract on the way: no host callback runs from inside an op
 * the host called (ack, release, pause, resume, start, stop), DONE of stop() runs exactly once
 * and never inside stop(). Waits run the loop (EVLOOP_ONCE plus a 10 ms timer) until a condition
 * holds or a deadline passes; nothing sleeps as synchronisation and no timing is asserted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/time.h"
#include "harness/redis.h"
#include "harness/util.h"
#include "sources/redis/redis_int.h"
#include "sources/source.h"

/* ---------------------------------------------------------------------------------------- */
/* The loop                                                                                 */

static struct event_base *base;
static struct event *tick;
static struct h_redis g_redis;
static char *g_url;

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
}

/* One loop turn, at most ~10 ms. */
static void turn(void)
{
    struct timeval tv = {0, 10 * 1000};

    evtimer_add(tick, &tv);
    event_base_loop(base, EVLOOP_ONCE);
}

/* Run the loop until PRED(ARG) or TIMEOUT_MS passed. */
static bool run_until(bool (*pred)(void *), void *arg, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;

    while (!pred(arg)) {
        if (h_now_ms() >= deadline)
            return false;
        turn();
    }
    return true;
}

/* Run the loop for MS (to see that something does NOT happen). */
static void pump_for(int ms)
{
    int64_t deadline = h_now_ms() + ms;

    while (h_now_ms() < deadline)
        turn();
}

/* ---------------------------------------------------------------------------------------- */
/* The stub host                                                                            */

struct host {
    struct src_redis_cfg cfg;
    struct source_ctx ctx;
    struct source *src;
    struct source_record **recs; /* every record delivered, in order */
    size_t n, cap;
    size_t held;  /* delivered, not acked or released by the test */
    size_t calls; /* deliver() calls */
    size_t limit; /* room() = limit - held (0 when below) */
    bool auto_ack;
    enum source_state states[256];
    size_t n_states;
    char reason[256];
    int done;
    bool in_op;     /* inside one of the host's calls into the adapter */
    int violations; /* host callbacks seen inside such a call */
};

static void h_ack_range(struct host *h, size_t from, size_t n);

static void host_deliver(void *arg, struct source_record **recs, size_t n)
{
    struct host *h = arg;
    size_t first = h->n;

    if (h->in_op)
        h->violations++;
    h->calls++;
    if (h->n + n > h->cap) {
        h->cap = (h->n + n) * 2;
        h->recs = realloc(h->recs, h->cap * sizeof(*h->recs));
        assert_non_null(h->recs);
    }
    memcpy(h->recs + h->n, recs, n * sizeof(*recs));
    h->n += n;
    h->held += n;
    if (h->auto_ack) /* acks from inside deliver(): the adapter must take that */
        h_ack_range(h, first, n);
}

static size_t host_room(void *arg)
{
    struct host *h = arg;

    if (h->in_op)
        h->violations++;
    return h->limit > h->held ? h->limit - h->held : 0;
}

static void host_state(void *arg, enum source_state st, const char *reason)
{
    struct host *h = arg;

    if (h->in_op)
        h->violations++;
    if (h->n_states < sizeof(h->states) / sizeof(h->states[0]))
        h->states[h->n_states++] = st;
    snprintf(h->reason, sizeof(h->reason), "%s", reason != NULL ? reason : "");
}

static const struct source_host host_ops = {
    .deliver = host_deliver,
    .room = host_room,
    .state = host_state,
};

static void host_init(struct host *h, const char *key, bool stream)
{
    memset(h, 0, sizeof(*h));
    h->cfg.url = g_url;
    if (stream)
        h->cfg.stream = (char *)key;
    else
        h->cfg.list = (char *)key;
    h->cfg.pop = SRC_REDIS_POP_RIGHT;
    h->cfg.visibility_timeout_s = 30;
    h->cfg.group = "switchyard";
    h->limit = 1000;
}

static void host_open(struct host *h, const char *mapping)
{
    struct sy_error err = {{0}};
    int rc;

    h->ctx.base = base;
    h->ctx.mapping = mapping;
    h->ctx.region = "us-east-1";
    h->ctx.account = "123456789012";
    h->ctx.data_dir = "/tmp";
    h->ctx.host = &host_ops;
    h->ctx.host_arg = h;
    rc = source_create(&src_redis_ops, &h->ctx, &h->cfg, &h->src, &err);
    if (rc != 0)
        fail_msg("source_create: %d %s", rc, err.msg);
    h->in_op = true;
    rc = h->src->ops->start(h->src);
    h->in_op = false;
    assert_int_equal(rc, 0);
}

static void h_ack_range(struct host *h, size_t from, size_t n)
{
    bool was = h->in_op;

    h->in_op = true;
    h->src->ops->ack(h->src, h->recs + from, n, SOURCE_DONE);
    h->in_op = was;
    h->held -= n;
}

static void h_release_range(struct host *h, size_t from, size_t n)
{
    h->in_op = true;
    h->src->ops->release(h->src, h->recs + from, n);
    h->in_op = false;
    h->held -= n;
}

static void h_resume(struct host *h)
{
    h->in_op = true;
    h->src->ops->resume(h->src);
    h->in_op = false;
}

static void on_stopped(void *arg)
{
    struct host *h = arg;

    if (h->in_op)
        h->violations++;
    h->done++;
}

static bool is_stopped(void *arg)
{
    return ((struct host *)arg)->done > 0;
}

/* stop(), wait for DONE (bounded), destroy, free the records. */
static void host_close(struct host *h)
{
    int64_t t0 = h_now_ms();

    h->in_op = true;
    h->src->ops->stop(h->src, on_stopped, h);
    h->in_op = false;
    assert_int_equal(h->done, 0); /* never inside stop() */
    if (!run_until(is_stopped, h, 10000))
        fail_msg("stop(): DONE never came");
    if (h_now_ms() - t0 > 1000) /* informational: a stop with nothing pending is quick */
        print_message("%s: stop() took %lld ms\n", h->ctx.mapping, (long long)(h_now_ms() - t0));
    pump_for(20);
    assert_int_equal(h->done, 1);
    assert_int_equal(h->violations, 0);
    source_destroy(h->src);
    h->src = NULL;
    for (size_t i = 0; i < h->n; i++)
        source_record_free(h->recs[i]);
    free(h->recs);
    h->recs = NULL;
    h->n = h->cap = 0;
}

/* Destroy without stop() or acks: a broker killed mid-batch (its records stay in flight and are
 * no longer heartbeated). */
static void host_kill(struct host *h)
{
    assert_int_equal(h->violations, 0);
    source_destroy(h->src);
    h->src = NULL;
    for (size_t i = 0; i < h->n; i++)
        source_record_free(h->recs[i]);
    free(h->recs);
    h->recs = NULL;
    h->n = h->cap = 0;
}

struct count_wait {
    struct host *h;
    size_t n;
};

static bool has_n(void *arg)
{
    struct count_wait *w = arg;

    return w->h->n >= w->n;
}

static void wait_records(struct host *h, size_t n, int timeout_ms)
{
    struct count_wait w = {h, n};

    if (!run_until(has_n, &w, timeout_ms))
        fail_msg("expected %zu records within %d ms, got %zu", n, timeout_ms, h->n);
}

struct state_wait {
    struct host *h;
    enum source_state st;
};

static bool in_state(void *arg)
{
    struct state_wait *w = arg;

    return w->h->n_states > 0 && w->h->states[w->h->n_states - 1] == w->st;
}

static void wait_state(struct host *h, enum source_state st, int timeout_ms)
{
    struct state_wait w = {h, st};

    if (!run_until(in_state, &w, timeout_ms))
        fail_msg("expected state %d within %d ms; last %d (%s)", (int)st, timeout_ms,
                 h->n_states ? (int)h->states[h->n_states - 1] : -1, h->reason);
}

/* ---------------------------------------------------------------------------------------- */
/* Redis from the test's side (blocking hiredis)                                            */

static redisReply *rq(const char *fmt, ...)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", g_redis.port, tv);
    redisReply *reply;
    va_list ap;

    if (c == NULL || c->err != 0)
        fail_msg("connect to redis on %d: %s", g_redis.port, c != NULL ? c->errstr : "oom");
    redisSetTimeout(c, tv);
    va_start(ap, fmt);
    reply = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (reply == NULL)
        fail_msg("redis command %s: %s", fmt, c->errstr);
    redisFree(c);
    return reply;
}

static void rdo(const char *fmt, ...)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", g_redis.port, tv);
    redisReply *reply;
    va_list ap;

    if (c == NULL || c->err != 0)
        fail_msg("connect to redis on %d: %s", g_redis.port, c != NULL ? c->errstr : "oom");
    redisSetTimeout(c, tv);
    va_start(ap, fmt);
    reply = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
        fail_msg("redis command %s: %s", fmt, reply ? reply->str : c->errstr);
    freeReplyObject(reply);
    redisFree(c);
}

static long long rint_(const char *fmt, ...)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", g_redis.port, tv);
    redisReply *reply;
    long long v;
    va_list ap;

    if (c == NULL || c->err != 0)
        fail_msg("connect to redis: %s", c != NULL ? c->errstr : "oom");
    redisSetTimeout(c, tv);
    va_start(ap, fmt);
    reply = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER)
        fail_msg("redis command %s: not an integer (%s)", fmt,
                 reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "?");
    v = reply->integer;
    freeReplyObject(reply);
    redisFree(c);
    return v;
}

/* The server's clock in ms. */
static long long server_ms(void)
{
    redisReply *r = rq("TIME");
    long long ms;

    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    ms = atoll(r->element[0]->str) * 1000 + atoll(r->element[1]->str) / 1000;
    freeReplyObject(r);
    return ms;
}

/* Pending entries of GROUP on STREAM (XPENDING summary). */
static long long xpending(const char *stream, const char *group)
{
    redisReply *r = rq("XPENDING %s %s", stream, group);
    long long n;

    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    n = r->element[0]->integer;
    freeReplyObject(r);
    return n;
}

struct pend_wait {
    const char *stream, *group;
};

static bool no_pending(void *arg)
{
    struct pend_wait *w = arg;

    return xpending(w->stream, w->group) == 0;
}

/* Wait (bounded) until GROUP has no pending entries on STREAM: XACK is asynchronous. */
static void wait_acked(const char *stream, const char *group)
{
    struct pend_wait w = {stream, group};

    if (!run_until(no_pending, &w, 5000))
        fail_msg("%s/%s: %lld entries still pending", stream, group, xpending(stream, group));
}

struct key_wait {
    const char *fmt;
    const char *key;
    long long want;
};

static bool int_is(void *arg)
{
    struct key_wait *w = arg;

    return rint_(w->fmt, w->key) == w->want;
}

/* Keys matching PATTERN (KEYS: the test's server holds a handful). */
static size_t count_keys(const char *pattern)
{
    redisReply *r = rq("KEYS %s", pattern);
    size_t n;

    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    n = r->elements;
    freeReplyObject(r);
    return n;
}

static bool no_leases(void *arg)
{
    return count_keys(arg) == 0;
}

/* In-flight structures of LIST empty (polling while the loop runs: acks are asynchronous):
 * the lease set and meta, every lease list, and the body hash of the build before. */
static void wait_inflight_empty(const char *list)
{
    char k1[128], k2[128], k3[128], pat[128];
    struct key_wait w1 = {"EXISTS %s", k1, 0}, w2 = {"EXISTS %s", k2, 0}, w3 = {"EXISTS %s", k3, 0};

    snprintf(k1, sizeof(k1), "%s:sy:inflight", list);
    snprintf(k2, sizeof(k2), "%s:sy:body", list);
    snprintf(k3, sizeof(k3), "%s:sy:meta", list);
    snprintf(pat, sizeof(pat), "%s:sy:lease:*", list);
    if (!run_until(int_is, &w1, 5000) || !run_until(int_is, &w2, 5000) ||
        !run_until(int_is, &w3, 5000) || !run_until(no_leases, pat, 5000))
        fail_msg("the in-flight keys of %s are not empty", list);
}

/* The lease id of record id ID (its last four hex digits are the index): into OUT. */
static void lease_of(const char *id, char out[37])
{
    assert_int_equal(strlen(id), 36);
    memcpy(out, id, 32);
    memcpy(out + 32, "0000", 5);
}

/* Index of record id ID in its lease. */
static unsigned lease_index(const char *id)
{
    return (unsigned)strtoul(id + 32, NULL, 16);
}

/* ---------------------------------------------------------------------------------------- */
/* JSON checks                                                                               */

static json_t *rec_json(const struct source_record *rec)
{
    json_t *j = h_json_parse(rec->json, rec->json_len);

    if (j == NULL)
        fail_msg("record JSON does not parse: %.*s", (int)rec->json_len, rec->json);
    return j;
}

static void md5_hex(const void *p, size_t n, char out[33])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;

    assert_int_equal(EVP_Digest(p, n, md, &len, EVP_md5(), NULL), 1);
    for (unsigned int i = 0; i < len; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* SQS's MD5 of message attributes, written independently of the adapter: for each attribute
 * sorted by name, length-prefixed name, data type, a transport byte (1 string, 2 binary) and
 * the value. NAMES/VALUES/TYPES[0..N) must be sorted by the caller. */
static void sqs_attr_md5(const char *const *names, const char *const *values,
                         const size_t *value_lens, const char *const *types, size_t n, char out[33])
{
    struct buf b = {0};

    for (size_t i = 0; i < n; i++) {
        const char *parts[3] = {names[i], types[i], values[i]};
        size_t lens[3] = {strlen(names[i]), strlen(types[i]), value_lens[i]};

        for (int k = 0; k < 3; k++) {
            unsigned char l[4] = {(unsigned char)(lens[k] >> 24), (unsigned char)(lens[k] >> 16),
                                  (unsigned char)(lens[k] >> 8), (unsigned char)lens[k]};

            assert_int_equal(buf_append(&b, l, 4), 0);
            assert_int_equal(buf_append(&b, parts[k], lens[k]), 0);
            if (k == 1)
                assert_int_equal(buf_append(&b, strcmp(types[i], "Binary") == 0 ? "\2" : "\1", 1),
                                 0);
        }
    }
    md5_hex(b.data, b.len, out);
    buf_free(&b);
}

static void expect_str(const json_t *obj, const char *key, const char *want)
{
    const char *got = h_json_str(obj, key);

    if (got == NULL || strcmp(got, want) != 0)
        fail_msg("%s: expected \"%s\", got \"%s\"", key, want, got ? got : "(none)");
}

/* REC's receiptHandle is base64 of "KEY:ID". */
static void expect_receipt(const struct source_record *rec, const char *key)
{
    json_t *j = rec_json(rec);
    size_t rh_len;
    char *rh = h_b64_decode(h_json_str(j, "receiptHandle"), &rh_len);
    char *want = h_strfmt("%s:%s", key, rec->id);

    assert_non_null(rh);
    assert_string_equal(rh, want);
    free(rh);
    free(want);
    json_decref(j);
}

/* ---------------------------------------------------------------------------------------- */
/* Fixtures                                                                                  */

static int group_setup(void **state)
{
    if (h_redis_start(&g_redis) != 0)
        return -1;
    g_url = h_strfmt("redis://127.0.0.1:%d", g_redis.port);
    return 0;
}

static int group_teardown(void **state)
{
    h_redis_free(&g_redis);
    free(g_url);
    g_url = NULL;
    return 0;
}

static int setup(void **state)
{
    base = event_base_new();
    tick = evtimer_new(base, on_tick, NULL);
    if (base == NULL || tick == NULL || h_redis_start(&g_redis) != 0)
        return -1;
    rdo("FLUSHALL");
    return 0;
}

static int teardown(void **state)
{
    pump_for(5);
    event_free(tick);
    event_base_free(base);
    base = NULL;
    tick = NULL;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* LIST mode                                                                                 */

/* LPUSH producers, pop right: FIFO, in batches (not one deliver per record), moved as one lease
 * (one ZSET member, one list of the elements, one meta field); record ids are the lease id with
 * the index in its last four hex digits; acks empty the in-flight structures. */
static void test_list_fifo_batches(void **state)
{
    struct host h;
    char buf[64], lease[37], key[128];
    redisReply *r;

    for (int i = 1; i <= 25; i++) {
        snprintf(buf, sizeof(buf), "m%02d", i);
        rdo("LPUSH q %s", buf);
    }
    host_init(&h, "q", false);
    host_open(&h, "fifo");
    wait_records(&h, 25, 5000);
    assert_true(h.calls < 25);
    for (size_t i = 0; i < 25; i++) {
        snprintf(buf, sizeof(buf), "m%02zu", i + 1);
        assert_int_equal(h.recs[i]->data_len, strlen(buf));
        assert_memory_equal(h.recs[i]->data, buf, strlen(buf));
        assert_int_equal(h.recs[i]->receive_count, 1);
        assert_int_equal(h.recs[i]->flags, 0);
        assert_int_equal(strlen(h.recs[i]->id), 36);
        assert_int_equal(h.recs[i]->id[14], '4'); /* still looks like a UUID v4 */
        assert_int_equal(lease_index(h.recs[i]->id), i);
        if (i > 0)
            assert_memory_equal(h.recs[i]->id, h.recs[0]->id, 32);
        expect_receipt(h.recs[i], "q"); /* each its own, though they share most of it */
    }
    lease_of(h.recs[0]->id, lease);
    snprintf(key, sizeof(key), "q:sy:lease:%s", lease);
    assert_int_equal(rint_("LLEN %s", "q"), 0);
    assert_int_equal(rint_("ZCARD %s", "q:sy:inflight"), 1);
    assert_int_equal(rint_("LLEN %s", key), 25);
    assert_int_equal(rint_("HLEN %s", "q:sy:meta"), 1);
    assert_int_equal(rint_("EXISTS %s", "q:sy:body"), 0);
    r = rq("HGET q:sy:meta %s", lease);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_true(strncmp(r->str, "1:", 2) == 0);
    freeReplyObject(r);

    /* Acks of part of the lease change nothing on the server; the last one removes it. */
    h_ack_range(&h, 0, 24);
    pump_for(100);
    assert_int_equal(rint_("LLEN %s", key), 25);
    h_ack_range(&h, 24, 1);
    wait_inflight_empty("q");
    host_close(&h);
}

/* Lambda's SQS record, field by field and in order; encode_batch and batch_info. */
static void test_list_record_shape(void **state)
{
    const char *body = "{\"orderId\": 42, \"note\": \"tab\\there\"}";
    static const char *const order[] = {"\"messageId\":",
                                        "\"receiptHandle\":",
                                        "\"body\":",
                                        "\"attributes\":",
                                        "\"messageAttributes\":",
                                        "\"md5OfMessageAttributes\":",
                                        "\"md5OfBody\":",
                                        "\"eventSource\":",
                                        "\"eventSourceARN\":",
                                        "\"awsRegion\":",
                                        NULL};
    long long t0 = (long long)time_wall_ms(), t1;
    struct host h;
    json_t *j, *attrs, *ev;
    const char *prev = NULL;
    char md5[33], *rh, *want_rh;
    struct buf b = {0};
    size_t rh_len;

    rdo("LPUSH orders %s", body);
    host_init(&h, "orders", false);
    host_open(&h, "orders-map");
    wait_records(&h, 1, 5000);
    t1 = (long long)time_wall_ms();

    /* The keys, in §5.4's order. */
    for (size_t i = 0; order[i] != NULL; i++) {
        const char *at = strstr(h.recs[0]->json, order[i]);

        if (at == NULL || (prev != NULL && at < prev))
            fail_msg("%s missing or out of order in %s", order[i], h.recs[0]->json);
        prev = at;
    }
    j = rec_json(h.recs[0]);
    assert_int_equal(json_object_size(j), 10);
    expect_str(j, "messageId", h.recs[0]->id);
    rh = h_b64_decode(h_json_str(j, "receiptHandle"), &rh_len);
    want_rh = h_strfmt("orders:%s", h.recs[0]->id);
    assert_non_null(rh);
    assert_string_equal(rh, want_rh);
    expect_str(j, "body", body);
    attrs = json_object_get(j, "attributes");
    assert_true(json_is_object(attrs));
    assert_int_equal(json_object_size(attrs), 4);
    expect_str(attrs, "ApproximateReceiveCount", "1");
    expect_str(attrs, "SenderId", "switchyard");
    assert_non_null(h_json_str(attrs, "SentTimestamp"));
    assert_true(atoll(h_json_str(attrs, "SentTimestamp")) >= t0 - 1000);
    assert_true(atoll(h_json_str(attrs, "SentTimestamp")) <= t1 + 1000);
    expect_str(attrs, "ApproximateFirstReceiveTimestamp", h_json_str(attrs, "SentTimestamp"));
    assert_int_equal(h.recs[0]->sent_ms, atoll(h_json_str(attrs, "SentTimestamp")));
    assert_true(json_is_object(json_object_get(j, "messageAttributes")));
    assert_int_equal(json_object_size(json_object_get(j, "messageAttributes")), 0);
    assert_true(json_is_null(json_object_get(j, "md5OfMessageAttributes")));
    md5_hex(body, strlen(body), md5);
    expect_str(j, "md5OfBody", md5);
    expect_str(j, "eventSource", "aws:sqs");
    expect_str(j, "eventSourceARN", "arn:aws:sqs:us-east-1:123456789012:orders");
    expect_str(j, "awsRegion", "us-east-1");
    assert_string_equal(h.src->ops->arn(h.src), "arn:aws:sqs:us-east-1:123456789012:orders");
    assert_null(h.src->ops->dead_letter(h.src));
    json_decref(j);

    /* The batch event. */
    assert_int_equal(h.src->ops->encode_batch(h.src, h.recs, 1, &b), 0);
    ev = h_json_parse(b.data, b.len);
    assert_non_null(ev);
    assert_int_equal(json_array_size(json_object_get(ev, "Records")), 1);
    expect_str(json_array_get(json_object_get(ev, "Records"), 0), "messageId", h.recs[0]->id);
    json_decref(ev);

    /* The on-failure identity, wrapped to parse it. */
    buf_reset(&b);
    assert_int_equal(buf_puts(&b, "{"), 0);
    assert_int_equal(h.src->ops->batch_info(h.src, h.recs, 1, &b), 0);
    assert_int_equal(buf_puts(&b, "}"), 0);
    ev = h_json_parse(b.data, b.len);
    if (ev == NULL)
        fail_msg("batch_info does not parse: %s", b.data);
    {
        json_t *bi = json_object_get(ev, "RedisBatchInfo");

        expect_str(bi, "mode", "list");
        expect_str(bi, "key", "orders");
        expect_str(bi, "startMessageId", h.recs[0]->id);
        expect_str(bi, "endMessageId", h.recs[0]->id);
        assert_int_equal(h_json_int(bi, "batchSize", -1), 1);
        expect_str(bi, "eventSourceArn", "arn:aws:sqs:us-east-1:123456789012:orders");
        assert_non_null(strchr(h_json_str(bi, "approximateArrivalOfFirstRecord"), 'T'));
        assert_non_null(h_json_str(bi, "url"));
        assert_null(strstr(h_json_str(bi, "url"), "@")); /* no password in it */
    }
    json_decref(ev);
    buf_free(&b);
    free(rh);
    free(want_rh);
    h_ack_range(&h, 0, 1);
    wait_inflight_empty("orders");
    host_close(&h);
}

/* A broker dies holding a record: it comes back after the visibility timeout, same messageId,
 * ApproximateReceiveCount 2. */
static void test_list_redelivery_after_timeout(void **state)
{
    struct host a, b;
    char *id;
    json_t *j;

    rdo("LPUSH jobs one");
    host_init(&a, "jobs", false);
    a.cfg.visibility_timeout_s = 1;
    host_open(&a, "jobs-a");
    wait_records(&a, 1, 5000);
    id = strdup(a.recs[0]->id);
    host_kill(&a);

    host_init(&b, "jobs", false);
    b.cfg.visibility_timeout_s = 1;
    host_open(&b, "jobs-b");
    wait_records(&b, 1, 6000);
    assert_string_equal(b.recs[0]->id, id);
    assert_int_equal(b.recs[0]->receive_count, 2);
    assert_int_equal(b.recs[0]->flags & SOURCE_REC_DEAD_LETTER, 0);
    j = rec_json(b.recs[0]);
    expect_str(j, "messageId", id);
    expect_str(json_object_get(j, "attributes"), "ApproximateReceiveCount", "2");
    json_decref(j);
    h_ack_range(&b, 0, 1);
    wait_inflight_empty("jobs");
    host_close(&b);
    free(id);
}

/* Held records are heartbeated: past the visibility timeout neither this source nor another
 * one on the same list gets them again. */
static void test_list_heartbeat(void **state)
{
    struct host a, b;
    redisReply *r;
    char lease[37];

    rdo("LPUSH hb one");
    host_init(&a, "hb", false);
    a.cfg.visibility_timeout_s = 1;
    host_open(&a, "hb-a");
    wait_records(&a, 1, 5000);
    host_init(&b, "hb", false);
    b.cfg.visibility_timeout_s = 1;
    host_open(&b, "hb-b");

    pump_for(3500); /* 3.5 visibility timeouts */
    assert_int_equal(a.n, 1);
    assert_int_equal(b.n, 0);
    lease_of(a.recs[0]->id, lease);
    r = rq("ZSCORE hb:sy:inflight %s", lease);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_true(atoll(r->str) > server_ms());
    freeReplyObject(r);

    h_ack_range(&a, 0, 1);
    wait_inflight_empty("hb");
    host_close(&a);
    host_close(&b);
}

/* Over max_receive_count: delivered with SOURCE_REC_DEAD_LETTER. */
static void test_list_dead_letter(void **state)
{
    struct host a, b;

    rdo("LPUSH poison pill");
    host_init(&a, "poison", false);
    a.cfg.visibility_timeout_s = 1;
    a.cfg.max_receive_count = 1;
    a.cfg.dead_letter = "file:/tmp/dlq";
    host_open(&a, "poison-a");
    wait_records(&a, 1, 5000);
    assert_int_equal(a.recs[0]->flags & SOURCE_REC_DEAD_LETTER, 0);
    assert_string_equal(a.src->ops->dead_letter(a.src), "file:/tmp/dlq");
    host_kill(&a);

    host_init(&b, "poison", false);
    b.cfg.visibility_timeout_s = 1;
    b.cfg.max_receive_count = 1;
    b.cfg.dead_letter = "file:/tmp/dlq";
    host_open(&b, "poison-b");
    wait_records(&b, 1, 6000);
    assert_int_equal(b.recs[0]->receive_count, 2);
    assert_true(b.recs[0]->flags & SOURCE_REC_DEAD_LETTER);
    h_ack_range(&b, 0, 1); /* the host sent it to the dead letter */
    wait_inflight_empty("poison");
    host_close(&b);
}

/* A body that is not UTF-8 arrives base64-encoded with switchyard.encoding; UTF-8 text (with
 * characters JSON must escape) arrives as it is. */
static void test_list_binary_body(void **state)
{
    static const char bin[] = "\xff\xfe\x00"
                              "abc";
    static const char text[] = "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80 \"q\"\n\x01";
    const char *names[1] = {"switchyard.encoding"}, *values[1] = {"base64"}, *types[1] = {"String"};
    size_t lens[1] = {6}, got_len;
    char md5[33], amd5[33], *decoded;
    struct host h;
    json_t *j, *ma, *enc;
    const struct source_record *rb, *rt;

    rdo("LPUSH bin %b", bin, sizeof(bin) - 1);
    rdo("LPUSH bin %b", text, sizeof(text) - 1);
    host_init(&h, "bin", false);
    host_open(&h, "bin");
    wait_records(&h, 2, 5000);
    rb = h.recs[0];
    rt = h.recs[1];

    assert_true(rb->flags & SOURCE_REC_BINARY);
    assert_int_equal(rb->data_len, sizeof(bin) - 1);
    assert_memory_equal(rb->data, bin, sizeof(bin) - 1);
    j = rec_json(rb);
    decoded = h_b64_decode(h_json_str(j, "body"), &got_len);
    assert_non_null(decoded);
    assert_int_equal(got_len, sizeof(bin) - 1);
    assert_memory_equal(decoded, bin, got_len);
    free(decoded);
    ma = json_object_get(j, "messageAttributes");
    enc = json_object_get(ma, "switchyard.encoding");
    assert_true(json_is_object(enc));
    expect_str(enc, "stringValue", "base64");
    expect_str(enc, "dataType", "String");
    assert_int_equal(json_array_size(json_object_get(enc, "stringListValues")), 0);
    assert_true(json_is_array(json_object_get(enc, "binaryListValues")));
    sqs_attr_md5(names, values, lens, types, 1, amd5);
    expect_str(j, "md5OfMessageAttributes", amd5);
    md5_hex(h_json_str(j, "body"), strlen(h_json_str(j, "body")), md5);
    expect_str(j, "md5OfBody", md5);
    json_decref(j);

    assert_int_equal(rt->flags & SOURCE_REC_BINARY, 0);
    j = rec_json(rt);
    expect_str(j, "body", text);
    assert_int_equal(json_object_size(json_object_get(j, "messageAttributes")), 0);
    md5_hex(text, sizeof(text) - 1, md5);
    expect_str(j, "md5OfBody", md5);
    json_decref(j);

    h_ack_range(&h, 0, 2);
    wait_inflight_empty("bin");
    host_close(&h);
}

static void expect_order(struct host *h, const char *const *want, size_t n)
{
    wait_records(h, n, 5000);
    for (size_t i = 0; i < n; i++)
        if (h->recs[i]->data_len != strlen(want[i]) ||
            memcmp(h->recs[i]->data, want[i], h->recs[i]->data_len) != 0)
            fail_msg("record %zu: expected %s, got %s", i, want[i], h->recs[i]->data);
}

/* pop: right (LPUSH producers) and left (RPUSH producers) are both FIFO; the wrong side is LIFO. */
static void test_list_pop_sides(void **state)
{
    static const char *const fifo[] = {"1", "2", "3"}, *const lifo[] = {"3", "2", "1"};
    struct host r, l, w;

    rdo("LPUSH lp 1 2 3");
    rdo("RPUSH rp 1 2 3");
    rdo("RPUSH wrong 1 2 3");
    host_init(&r, "lp", false);
    host_open(&r, "right");
    host_init(&l, "rp", false);
    l.cfg.pop = SRC_REDIS_POP_LEFT;
    host_open(&l, "left");
    host_init(&w, "wrong", false);
    host_open(&w, "wrong");
    expect_order(&r, fifo, 3);
    expect_order(&l, fifo, 3);
    expect_order(&w, lifo, 3);
    h_ack_range(&r, 0, 3);
    h_ack_range(&l, 0, 3);
    h_ack_range(&w, 0, 3);
    wait_inflight_empty("lp");
    wait_inflight_empty("rp");
    host_close(&r);
    host_close(&l);
    host_close(&w);
}

/* An idle source waits in BLMOVE: a record pushed then arrives without polling. */
static void test_list_idle_wakeup(void **state)
{
    struct host h;
    int64_t t0;

    host_init(&h, "idle", false);
    host_open(&h, "idle");
    wait_state(&h, SOURCE_RUNNING, 5000);
    pump_for(300); /* now blocked in BLMOVE */
    assert_int_equal(h.n, 0);
    t0 = h_now_ms();
    rdo("LPUSH idle wake");
    wait_records(&h, 1, 3000);
    print_message("idle list: delivered %lld ms after LPUSH (informational)\n",
                  (long long)(h_now_ms() - t0));
    assert_int_equal(rint_("LLEN %s", "idle"), 0);
    h_ack_range(&h, 0, 1);
    wait_inflight_empty("idle");
    host_close(&h);
}

/* room() == 0: nothing is read (the list keeps its records); resume() reads what room allows. */
static void test_list_room_and_resume(void **state)
{
    struct source_stats st = {0};
    struct host h;

    rdo("LPUSH room 1 2 3 4 5");
    host_init(&h, "room", false);
    h.limit = 0;
    host_open(&h, "room");
    wait_state(&h, SOURCE_RUNNING, 5000);
    pump_for(1500); /* long enough for a stats refresh too */
    assert_int_equal(h.n, 0);
    assert_int_equal(rint_("LLEN %s", "room"), 5);
    h.src->ops->stats(h.src, &st);
    assert_int_equal(st.lag, 5);
    assert_int_equal(st.acks_pending, 0);

    h.limit = 2;
    h_resume(&h);
    wait_records(&h, 2, 3000);
    pump_for(300);
    assert_int_equal(h.n, 2); /* no more room */
    assert_int_equal(rint_("LLEN %s", "room"), 3);

    h_ack_range(&h, 0, 2);
    h.limit = 100;
    h_resume(&h);
    wait_records(&h, 5, 3000);
    h_ack_range(&h, 2, 3);
    wait_inflight_empty("room");
    host_close(&h);
}

/* The wrong type of key: SOURCE_PROBLEM with the reason; fixed, it reads again. */
static void test_list_wrongtype(void **state)
{
    struct host h;

    rdo("SET wt not-a-list");
    host_init(&h, "wt", false);
    host_open(&h, "wt");
    wait_state(&h, SOURCE_PROBLEM, 5000);
    if (strstr(h.reason, "WRONGTYPE") == NULL)
        fail_msg("reason: %s", h.reason);
    rdo("DEL wt");
    rdo("LPUSH wt fixed");
    wait_records(&h, 1, 12000);
    wait_state(&h, SOURCE_RUNNING, 2000);
    h_ack_range(&h, 0, 1);
    wait_inflight_empty("wt");
    host_close(&h);
}

/* release(): visible again at once once the lease's last record is given back (same ids,
 * count 2); stop() sends pending acks before DONE. */
static void test_list_release_and_stop(void **state)
{
    struct host h;

    rdo("LPUSH rel a b c");
    host_init(&h, "rel", false);
    h.cfg.visibility_timeout_s = 60;
    host_open(&h, "rel");
    wait_records(&h, 3, 5000);
    h_release_range(&h, 0, 1);
    pump_for(200); /* two of its records are still out: the lease stays ours */
    assert_int_equal(h.n, 3);
    h_release_range(&h, 1, 2);
    wait_records(&h, 6, 5000); /* well before the 60 s timeout */
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(h.recs[3 + i]->id, h.recs[i]->id);
        assert_int_equal(h.recs[3 + i]->receive_count, 2);
        assert_memory_equal(h.recs[3 + i]->data, h.recs[i]->data, 1);
    }

    /* Acks queued in the same turn as stop(): confirmed before DONE. */
    h_ack_range(&h, 3, 3);
    host_close(&h);
    assert_int_equal(rint_("EXISTS %s", "rel:sy:inflight"), 0);
    assert_int_equal(rint_("EXISTS %s", "rel:sy:meta"), 0);
    assert_int_equal(count_keys("rel:sy:lease:*"), 0);
}

/* A lease released with some of its records acknowledged: only the others come back (same ids,
 * count 2), and a later release of the redelivered lease keeps the earlier acks too. */
static void test_list_release_partly_acked(void **state)
{
    struct host h;

    rdo("LPUSH prel a b c d e");
    host_init(&h, "prel", false);
    h.cfg.visibility_timeout_s = 60;
    host_open(&h, "prel");
    wait_records(&h, 5, 5000);
    assert_memory_equal(h.recs[0]->data, "a", 1);
    h_ack_range(&h, 1, 1); /* b */
    h_ack_range(&h, 3, 1); /* d */
    h_release_range(&h, 0, 1);
    h_release_range(&h, 2, 1);
    h_release_range(&h, 4, 1);
    wait_records(&h, 8, 5000);
    pump_for(200);
    assert_int_equal(h.n, 8);
    assert_string_equal(h.recs[5]->id, h.recs[0]->id);
    assert_string_equal(h.recs[6]->id, h.recs[2]->id);
    assert_string_equal(h.recs[7]->id, h.recs[4]->id);
    assert_memory_equal(h.recs[5]->data, "a", 1);
    assert_memory_equal(h.recs[6]->data, "c", 1);
    assert_memory_equal(h.recs[7]->data, "e", 1);
    for (size_t i = 5; i < 8; i++)
        assert_int_equal(h.recs[i]->receive_count, 2);

    /* Ack c, give a and e back again: only a and e, count 3. */
    h_ack_range(&h, 6, 1);
    h_release_range(&h, 5, 1);
    h_release_range(&h, 7, 1);
    wait_records(&h, 10, 5000);
    pump_for(200);
    assert_int_equal(h.n, 10);
    assert_string_equal(h.recs[8]->id, h.recs[0]->id);
    assert_string_equal(h.recs[9]->id, h.recs[4]->id);
    assert_int_equal(h.recs[8]->receive_count, 3);
    h_ack_range(&h, 8, 2);
    wait_inflight_empty("prel");
    host_close(&h);
}

/* A late heartbeat: the lease expires while this source still holds it and its own next move
 * takes it again. The records not acknowledged yet are delivered a second time (same ids, count
 * 2), the acknowledged one is not, and acking both copies finishes the lease. */
static void test_list_lease_back_while_held(void **state)
{
    char lease[37];
    struct host h;

    rdo("LPUSH late a b c");
    host_init(&h, "late", false);
    h.cfg.visibility_timeout_s = 30; /* no heartbeat during the test */
    host_open(&h, "late");
    wait_records(&h, 3, 5000);
    h_ack_range(&h, 1, 1); /* b */
    pump_for(50);
    lease_of(h.recs[0]->id, lease);
    rdo("ZADD late:sy:inflight XX %lld %s", server_ms() - 1, lease);
    wait_records(&h, 5, 5000); /* the next wakeup of its BLMOVE is at most 2 s away */
    pump_for(200);
    assert_int_equal(h.n, 5);
    assert_string_equal(h.recs[3]->id, h.recs[0]->id);
    assert_string_equal(h.recs[4]->id, h.recs[2]->id);
    assert_int_equal(h.recs[3]->receive_count, 2);
    h_ack_range(&h, 3, 2);
    pump_for(200);
    assert_int_equal(rint_("ZCARD %s", "late:sy:inflight"), 1); /* a and c of the first copy */
    h_ack_range(&h, 0, 1);
    h_ack_range(&h, 2, 1);
    wait_inflight_empty("late");
    host_close(&h);
}

/* Part of a lease acknowledged, then the broker is killed: the whole lease comes back after the
 * visibility timeout (the acknowledged records too: at-least-once), with the same ids, count 2;
 * nothing is lost. */
static void test_list_partial_ack_then_kill(void **state)
{
    struct host a, b;
    char *ids[4];

    rdo("LPUSH pk w x y z");
    host_init(&a, "pk", false);
    a.cfg.visibility_timeout_s = 1;
    host_open(&a, "pk");
    wait_records(&a, 4, 5000);
    for (size_t i = 0; i < 4; i++)
        ids[i] = strdup(a.recs[i]->id);
    h_ack_range(&a, 0, 2);
    pump_for(100);
    host_kill(&a);

    host_init(&b, "pk", false);
    b.cfg.visibility_timeout_s = 1;
    host_open(&b, "pk");
    wait_records(&b, 4, 6000);
    pump_for(200);
    assert_int_equal(b.n, 4);
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(b.recs[i]->id, ids[i]);
        assert_int_equal(b.recs[i]->receive_count, 2);
        free(ids[i]);
    }
    assert_memory_equal(b.recs[0]->data, "w", 1);
    assert_memory_equal(b.recs[3]->data, "z", 1);
    h_ack_range(&b, 0, 4);
    wait_inflight_empty("pk");
    host_close(&b);
}

/* Records left in flight in the layout of the build before (one ZSET member per record, its
 * element in :sy:body, its meta in :sy:meta) are not lost: expired ones go back to the list
 * and are delivered again; one its (live) broker still heartbeats is left alone until it
 * expires; a member without a body is dropped. */
static void test_list_migrate_old_layout(void **state)
{
    const char *old1 = "11111111-1111-4111-8111-111111111111";
    const char *old2 = "22222222-2222-4222-8222-222222222222";
    const char *live = "33333333-3333-4333-8333-333333333333";
    const char *orphan = "44444444-4444-4444-8444-444444444444";
    long long now = server_ms();
    bool seen[4] = {false};
    struct host h;
    redisReply *r;

    rdo("LPUSH mig new1");
    rdo("ZADD mig:sy:inflight %lld %s %lld %s %lld %s %lld %s", now - 5000, old1, now - 4000, old2,
        now + 1500, live, now - 3000, orphan);
    rdo("HSET mig:sy:body %s old-one %s old-two %s old-live", old1, old2, live);
    rdo("HSET mig:sy:meta %s 1:%lld %s 3:%lld %s 1:%lld %s 1:%lld", old1, now - 35000, old2,
        now - 34000, live, now - 1000, orphan, now - 3000);
    host_init(&h, "mig", false);
    host_open(&h, "mig");
    wait_records(&h, 3, 5000);
    pump_for(200);
    assert_int_equal(h.n, 3); /* not the live one yet */
    assert_int_equal(rint_("HEXISTS mig:sy:body %s", live), 1);
    assert_int_equal(rint_("HEXISTS mig:sy:body %s", old1), 0);
    r = rq("ZSCORE mig:sy:inflight %s", orphan);
    assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    assert_int_equal(rint_("HEXISTS mig:sy:meta %s", orphan), 0);
    wait_records(&h, 4, 6000);
    for (size_t i = 0; i < h.n; i++) {
        static const char *const bodies[] = {"old-one", "old-two", "new1", "old-live"};

        for (size_t k = 0; k < 4; k++)
            if (h.recs[i]->data_len == strlen(bodies[k]) &&
                memcmp(h.recs[i]->data, bodies[k], h.recs[i]->data_len) == 0)
                seen[k] = true;
        assert_int_equal(strlen(h.recs[i]->id), 36);
        assert_int_equal(h.recs[i]->receive_count, 1);
    }
    for (size_t k = 0; k < 4; k++)
        assert_true(seen[k]);
    h_ack_range(&h, 0, h.n);
    wait_inflight_empty("mig");
    assert_int_equal(rint_("LLEN %s", "mig"), 0);
    host_close(&h);
}

/* ---------------------------------------------------------------------------------------- */
/* STREAM mode                                                                               */

/* Group creation (MKSTREAM), delivery in order with the entry ids, XACK; the default consumer
 * name is <hostname>-<pid>. */
static void test_stream_group_delivery_ack(void **state)
{
    char ids[3][64], host[256], *want_consumer;
    struct host h;
    redisReply *r;
    json_t *j;

    host_init(&h, "events", true);
    h.cfg.group = "g1";
    host_open(&h, "events");
    wait_state(&h, SOURCE_RUNNING, 5000);
    r = rq("XINFO GROUPS events");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 1);
    freeReplyObject(r);

    for (int i = 0; i < 3; i++) {
        r = rq("XADD events * body hello%d", i);
        assert_int_equal(r->type, REDIS_REPLY_STRING);
        snprintf(ids[i], sizeof(ids[i]), "%s", r->str);
        freeReplyObject(r);
    }
    wait_records(&h, 3, 5000);
    for (int i = 0; i < 3; i++) {
        char body[16];

        snprintf(body, sizeof(body), "hello%d", i);
        assert_string_equal(h.recs[i]->id, ids[i]);
        assert_int_equal(h.recs[i]->data_len, strlen(body));
        assert_memory_equal(h.recs[i]->data, body, strlen(body));
        assert_int_equal(h.recs[i]->receive_count, 1);
        assert_int_equal(h.recs[i]->sent_ms, atoll(ids[i]));
        j = rec_json(h.recs[i]);
        expect_str(j, "messageId", ids[i]);
        expect_str(j, "body", body);
        expect_str(json_object_get(j, "attributes"), "ApproximateReceiveCount", "1");
        assert_int_equal(atoll(h_json_str(json_object_get(j, "attributes"), "SentTimestamp")),
                         atoll(ids[i]));
        expect_str(j, "eventSourceARN", "arn:aws:sqs:us-east-1:123456789012:events");
        json_decref(j);
    }
    assert_int_equal(xpending("events", "g1"), 3);

    assert_int_equal(gethostname(host, sizeof(host)), 0);
    want_consumer = h_strfmt("%s-%ld", host, (long)getpid());
    r = rq("XINFO CONSUMERS events g1");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 1);
    assert_string_equal(r->element[0]->element[1]->str, want_consumer);
    freeReplyObject(r);
    free(want_consumer);

    h_ack_range(&h, 0, 3);
    wait_acked("events", "g1");
    assert_int_equal(rint_("XLEN %s", "events"), 3); /* acked, not deleted */
    host_close(&h);
}

/* An entry another consumer left pending past the visibility timeout is reclaimed, with its
 * delivery count as the receive count (over max_receive_count: dead letter). */
static void test_stream_reclaim(void **state)
{
    struct host h;
    redisReply *r;
    char id[64];
    json_t *j;

    rdo("XGROUP CREATE rs g 0 MKSTREAM");
    r = rq("XADD rs * body stuck");
    snprintf(id, sizeof(id), "%s", r->str);
    freeReplyObject(r);
    r = rq("XREADGROUP GROUP g other COUNT 10 STREAMS rs >"); /* and never acked */
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    freeReplyObject(r);

    host_init(&h, "rs", true);
    h.cfg.group = "g";
    h.cfg.consumer = "me";
    h.cfg.visibility_timeout_s = 1;
    h.cfg.max_receive_count = 1;
    h.cfg.dead_letter = "file:/tmp/dlq";
    host_open(&h, "rs");
    wait_records(&h, 1, 6000);
    assert_string_equal(h.recs[0]->id, id);
    assert_int_equal(h.recs[0]->receive_count, 2);
    assert_true(h.recs[0]->flags & SOURCE_REC_DEAD_LETTER);
    j = rec_json(h.recs[0]);
    expect_str(json_object_get(j, "attributes"), "ApproximateReceiveCount", "2");
    expect_str(j, "body", "stuck");
    json_decref(j);

    /* Held and heartbeated: not reclaimed again past the timeout. */
    pump_for(2500);
    assert_int_equal(h.n, 1);
    h_ack_range(&h, 0, 1);
    wait_acked("rs", "g");
    host_close(&h);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

struct two {
    struct host *a, *b;
    size_t n;
};

static bool both_have(void *arg)
{
    struct two *t = arg;

    return t->a->n + t->b->n >= t->n;
}

/* Two sources in one group split a stream between them, each entry exactly once. */
static void test_stream_two_consumers(void **state)
{
    enum { N = 200 };
    struct host a, b;
    struct two t = {&a, &b, N};
    char *all[N + 16];
    size_t n = 0;

    rdo("XGROUP CREATE split g 0 MKSTREAM");
    host_init(&a, "split", true);
    a.cfg.group = "g";
    a.cfg.consumer = "a";
    a.auto_ack = true;
    host_init(&b, "split", true);
    b.cfg.group = "g";
    b.cfg.consumer = "b";
    b.auto_ack = true;
    host_open(&a, "split-a");
    host_open(&b, "split-b");
    wait_state(&a, SOURCE_RUNNING, 5000);
    wait_state(&b, SOURCE_RUNNING, 5000);
    pump_for(100);
    for (int i = 0; i < N; i++) {
        rdo("XADD split * body e%d", i);
        if (i % 10 == 9)
            pump_for(5);
    }
    if (!run_until(both_have, &t, 10000))
        fail_msg("got %zu + %zu of %d", a.n, b.n, N);
    pump_for(200);
    print_message("split: a %zu, b %zu (informational)\n", a.n, b.n);
    assert_int_equal(a.n + b.n, N);
    for (size_t i = 0; i < a.n; i++)
        expect_receipt(a.recs[i], "split");
    for (size_t i = 0; i < a.n; i++)
        all[n++] = (char *)a.recs[i]->id;
    for (size_t i = 0; i < b.n; i++)
        all[n++] = (char *)b.recs[i]->id;
    qsort(all, n, sizeof(all[0]), cmp_str);
    for (size_t i = 1; i < n; i++)
        if (strcmp(all[i - 1], all[i]) == 0)
            fail_msg("%s delivered twice", all[i]);
    wait_acked("split", "g");
    host_close(&a);
    host_close(&b);
}

/* body_field: the body and the other fields as messageAttributes (with their MD5); without it
 * several fields make a JSON object and one field is the body itself. */
static void test_stream_body_rules(void **state)
{
    const char *names[2] = {"n", "user"}, *values[2] = {"7", "bob"},
               *types[2] = {"String", "String"};
    size_t lens[2] = {1, 3};
    struct host bf, multi;
    json_t *j, *ma, *a;
    char amd5[33];

    rdo("XADD bf * user bob payload {\"a\":1} n 7");
    host_init(&bf, "bf", true);
    bf.cfg.body_field = "payload";
    host_open(&bf, "bf");
    wait_records(&bf, 1, 5000);
    j = rec_json(bf.recs[0]);
    expect_str(j, "body", "{\"a\":1}");
    ma = json_object_get(j, "messageAttributes");
    assert_int_equal(json_object_size(ma), 2);
    a = json_object_get(ma, "user");
    expect_str(a, "stringValue", "bob");
    expect_str(a, "dataType", "String");
    assert_true(json_is_array(json_object_get(a, "stringListValues")));
    assert_true(json_is_array(json_object_get(a, "binaryListValues")));
    expect_str(json_object_get(ma, "n"), "stringValue", "7");
    sqs_attr_md5(names, values, lens, types, 2, amd5);
    expect_str(j, "md5OfMessageAttributes", amd5);
    assert_int_equal(bf.recs[0]->data_len, 7);
    json_decref(j);

    rdo("XADD multi * a 1 b 2");
    rdo("XADD multi * only v");
    host_init(&multi, "multi", true);
    host_open(&multi, "multi");
    wait_records(&multi, 2, 5000);
    j = rec_json(multi.recs[0]);
    expect_str(j, "body", "{\"a\":\"1\",\"b\":\"2\"}");
    assert_int_equal(json_object_size(json_object_get(j, "messageAttributes")), 0);
    assert_true(json_is_null(json_object_get(j, "md5OfMessageAttributes")));
    json_decref(j);
    j = rec_json(multi.recs[1]);
    expect_str(j, "body", "v");
    json_decref(j);

    h_ack_range(&bf, 0, 1);
    h_ack_range(&multi, 0, 2);
    host_close(&bf);
    host_close(&multi);
    assert_int_equal(xpending("bf", "switchyard"), 0);
    assert_int_equal(xpending("multi", "switchyard"), 0);
}

/* Redis restarts mid-stream (no persistence: it comes back empty): RECONNECTING, then RUNNING,
 * the group is created again and new entries are delivered. */
static void test_stream_redis_restart(void **state)
{
    struct source_stats st = {0};
    struct host h;
    size_t mark;
    bool saw_reconnecting = false;

    host_init(&h, "rst", true);
    host_open(&h, "rst");
    wait_state(&h, SOURCE_RUNNING, 5000);
    rdo("XADD rst * body before");
    wait_records(&h, 1, 5000);
    h_ack_range(&h, 0, 1);
    pump_for(100);

    assert_int_equal(h_redis_stop(&g_redis), 0);
    wait_state(&h, SOURCE_RECONNECTING, 5000);
    mark = h.n_states;
    assert_int_equal(h_redis_start(&g_redis), 0);
    wait_state(&h, SOURCE_RUNNING, 10000);
    for (size_t i = 0; i < h.n_states; i++)
        if (h.states[i] == SOURCE_RECONNECTING)
            saw_reconnecting = true;
    assert_true(saw_reconnecting);
    assert_true(h.n_states > mark);

    rdo("XADD rst * body after");
    wait_records(&h, 2, 5000);
    assert_int_equal(h.recs[1]->data_len, 5);
    assert_memory_equal(h.recs[1]->data, "after", 5);
    h.src->ops->stats(h.src, &st);
    assert_true(st.reconnects >= 1);
    h_ack_range(&h, 1, 1);
    wait_acked("rst", "switchyard");
    host_close(&h);
}

/* SCRIPT FLUSH under a running source: NOSCRIPT, the scripts are loaded again, nothing lost. */
static void test_list_script_flush(void **state)
{
    struct host h;

    host_init(&h, "sf", false);
    host_open(&h, "sf");
    wait_state(&h, SOURCE_RUNNING, 5000);
    rdo("LPUSH sf one");
    wait_records(&h, 1, 5000);
    h_ack_range(&h, 0, 1);
    wait_inflight_empty("sf");

    rdo("SCRIPT FLUSH");
    rdo("LPUSH sf two");
    wait_records(&h, 2, 5000);
    assert_memory_equal(h.recs[1]->data, "two", 3);
    rdo("SCRIPT FLUSH");
    h_ack_range(&h, 1, 1); /* the ack script hits NOSCRIPT too */
    wait_inflight_empty("sf");
    host_close(&h);
}

static bool acks_confirmed(void *arg)
{
    struct host *h = arg;
    struct source_stats st = {0};

    h->src->ops->stats(h->src, &st);
    return st.acks_pending == 0;
}

/* Acks given while the server is away are kept and sent after the reconnect. */
static void test_list_acks_across_outage(void **state)
{
    struct source_stats st = {0};
    struct host h;

    rdo("LPUSH out a b");
    host_init(&h, "out", false);
    host_open(&h, "out");
    wait_records(&h, 2, 5000);
    assert_int_equal(h_redis_stop(&g_redis), 0);
    wait_state(&h, SOURCE_RECONNECTING, 5000);
    h_ack_range(&h, 0, 2);
    pump_for(300);
    h.src->ops->stats(h.src, &st);
    assert_int_equal(st.acks_pending, 2);
    assert_int_equal(h_redis_start(&g_redis), 0);
    wait_state(&h, SOURCE_RUNNING, 10000);
    if (!run_until(acks_confirmed, &h, 5000))
        fail_msg("acks still pending after the reconnect");
    host_close(&h);
}

/* A host name that does not resolve (looked up on a thread): RECONNECTING, and stop() still
 * finishes while a lookup may be out. */
static void test_unresolvable_host(void **state)
{
    struct host h;
    char *url = h_strfmt("redis://nonexistent.invalid:%d", g_redis.port);

    host_init(&h, "q", false);
    h.cfg.url = url;
    host_open(&h, "dns");
    wait_state(&h, SOURCE_RECONNECTING, 8000);
    print_message("unresolvable: %s (informational)\n", h.reason);
    host_close(&h);
    free(url);
}

/* A context authenticated as the default user with PASSWORD (for the auth test). */
static redisContext *auth_conn(const char *password)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", g_redis.port, tv);
    redisReply *r;

    assert_non_null(c);
    assert_int_equal(c->err, 0);
    redisSetTimeout(c, tv);
    r = redisCommand(c, "AUTH %s", password);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    return c;
}

static void cdo(redisContext *c, const char *fmt, ...)
{
    redisReply *r;
    va_list ap;

    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        fail_msg("%s: %s", fmt, r ? r->str : c->errstr);
    freeReplyObject(r);
}

/* Passwords, ACL users and the db number of the URL; a missing or wrong password is
 * SOURCE_PROBLEM with the server's reason. (Runs last: it changes the server's auth.) */
static void test_auth_and_db(void **state)
{
    struct host anon, pw, acl, bad;
    char *u_pw = h_strfmt("redis://:sekret@127.0.0.1:%d/3", g_redis.port);
    char *u_acl = h_strfmt("redis://sy:p%%40ss@127.0.0.1:%d/3", g_redis.port); /* "p@ss" */
    char *u_bad = h_strfmt("redis://sy:nope@127.0.0.1:%d/3", g_redis.port);
    redisContext *c;

    rdo("CONFIG SET requirepass sekret");
    c = auth_conn("sekret");
    cdo(c, "ACL SETUSER sy on >p@ss ~* &* +@all");
    cdo(c, "SELECT 3");
    cdo(c, "LPUSH q3 one");

    host_init(&anon, "q3", false);
    host_open(&anon, "anon");
    wait_state(&anon, SOURCE_PROBLEM, 5000);
    if (strstr(anon.reason, "NOAUTH") == NULL)
        fail_msg("reason: %s", anon.reason);

    host_init(&bad, "q3", false);
    bad.cfg.url = u_bad;
    host_open(&bad, "bad");
    wait_state(&bad, SOURCE_PROBLEM, 5000);
    if (strstr(bad.reason, "WRONGPASS") == NULL)
        fail_msg("reason: %s", bad.reason);
    assert_null(strstr(bad.reason, "nope")); /* never the password */

    host_init(&pw, "q3", false);
    pw.cfg.url = u_pw;
    host_open(&pw, "pw");
    wait_records(&pw, 1, 5000);
    assert_memory_equal(pw.recs[0]->data, "one", 3);
    h_ack_range(&pw, 0, 1);

    host_init(&acl, "q3", false);
    acl.cfg.url = u_acl;
    host_open(&acl, "acl");
    wait_state(&acl, SOURCE_RUNNING, 5000);
    cdo(c, "LPUSH q3 two");
    if (!run_until(both_have, &(struct two){&pw, &acl, 2}, 5000))
        fail_msg("the second record never came");

    host_close(&anon);
    host_close(&bad);
    host_close(&pw);
    host_close(&acl);
    cdo(c, "ACL DELUSER sy");
    cdo(c, "CONFIG SET requirepass %s", "");
    redisFree(c);
    free(u_pw);
    free(u_acl);
    free(u_bad);
}

/* ---------------------------------------------------------------------------------------- */
/* Config: the table and validate() through cfg_load()                                      */

static struct cfg *load_source(const char *source_yaml, struct cfg_errors *errs)
{
    static const struct cfg_source_kind *const kinds[] = {&src_redis_kind};
    const struct cfg_schema schema = {kinds, 1, NULL};
    char *dir = h_tmpdir_create("srccfg");
    char *path = h_strfmt("%s/switchyard.yaml", dir);
    char *yaml = h_strfmt("functions:\n"
                          "  f:\n"
                          "    runtime: python3\n"
                          "    handler: app.handler\n"
                          "    code: %s/tests/data/config/code/py\n"
                          "mappings:\n"
                          "  - name: m\n"
                          "    function: f\n"
                          "    source:\n"
                          "      redis: %s\n",
                          h_source_dir(), source_yaml);
    struct cfg *cfg;

    assert_int_equal(h_write_file(path, yaml, strlen(yaml)), 0);
    cfg = cfg_load(path, &schema, errs);
    h_rm_rf(dir);
    free(dir);
    free(path);
    free(yaml);
    return cfg;
}

static void expect_refused(const char *source_yaml, const char *needle)
{
    struct cfg_errors errs = {0};
    struct cfg *cfg = load_source(source_yaml, &errs);
    bool found = false;

    if (cfg != NULL)
        fail_msg("accepted: %s", source_yaml);
    for (size_t i = 0; i < errs.n; i++)
        if (strstr(errs.msgs[i], needle) != NULL)
            found = true;
    if (!found) {
        for (size_t i = 0; i < errs.n; i++)
            print_message("  %s\n", errs.msgs[i]);
        fail_msg("no error with \"%s\" for %s", needle, source_yaml);
    }
    cfg_errors_clear(&errs);
}

static void test_config(void **state)
{
    struct cfg_errors errs = {0};
    struct cfg *cfg;
    const struct src_redis_cfg *rc;

    cfg = load_source("{url: \"redis://:pw@127.0.0.1:6380/2\", list: jobs}", &errs);
    for (size_t i = 0; i < errs.n; i++)
        print_message("  %s\n", errs.msgs[i]);
    assert_non_null(cfg);
    assert_int_equal(cfg->n_mappings, 1);
    assert_int_equal(cfg->mappings[0].batch_size, 10);
    assert_int_equal(cfg->mappings[0].maximum_batching_window_ms, 0);
    rc = cfg->mappings[0].source;
    assert_string_equal(rc->list, "jobs");
    assert_null(rc->stream);
    assert_int_equal(rc->pop, SRC_REDIS_POP_RIGHT);
    assert_int_equal(rc->visibility_timeout_s, 30);
    assert_int_equal(rc->max_receive_count, 0);
    cfg_destroy(cfg);

    expect_refused("{url: \"rediss://127.0.0.1\", list: q}", "TLS is not available");
    expect_refused("{url: \"redis://127.0.0.1:0\", list: q}", "port");
    expect_refused("{url: \"http://127.0.0.1\", list: q}", "redis://");
    expect_refused("{url: \"redis://127.0.0.1/x\", list: q}", "database number");
    expect_refused("{url: \"redis://127.0.0.1\", list: q, stream: s}", "not both");
    expect_refused("{url: \"redis://127.0.0.1\"}", "one of list");
    expect_refused("{url: \"redis://127.0.0.1\", stream: s, pop: left}", "list only");
    expect_refused("{url: \"redis://127.0.0.1\", list: q, group: g}", "stream only");
    expect_refused("{url: \"redis://127.0.0.1\", list: q, body_field: b}", "stream only");
    expect_refused("{url: \"redis://127.0.0.1\", list: q, visibility_timeout_s: 0}",
                   "visibility_timeout_s");
    expect_refused("{list: q}", "url");
    expect_refused("{url: \"redis://127.0.0.1\", list: q, max_receive_count: 3}",
                   "needs dead_letter");
    expect_refused("{url: \"redis://127.0.0.1\", list: q, dead_letter: \"file:/tmp/x\"}",
                   "max_receive_count >= 1");
    cfg = load_source("{url: \"unix:///tmp/redis.sock?db=1\", stream: s, group: g, "
                      "starting_position: LATEST, body_field: b, max_receive_count: 3, "
                      "dead_letter: \"file:/tmp/dlq\"}",
                      &errs);
    for (size_t i = 0; i < errs.n; i++)
        print_message("  %s\n", errs.msgs[i]);
    assert_non_null(cfg);
    rc = cfg->mappings[0].source;
    assert_string_equal(rc->stream, "s");
    assert_string_equal(rc->group, "g");
    assert_int_equal(rc->starting_position, SRC_REDIS_START_LATEST);
    assert_string_equal(rc->body_field, "b");
    assert_non_null(rc->dead_letter);
    cfg_destroy(cfg);

    /* create() refuses what validate() would have (and frees its half-built object). */
    {
        struct src_redis_cfg bad = {
            .url = "rediss://127.0.0.1", .list = "q", .visibility_timeout_s = 30};
        struct event_base *b = event_base_new();
        struct source_ctx ctx = {.base = b, .mapping = "bad", .host = &host_ops};
        struct sy_error err = {{0}};
        struct source *src = NULL;

        assert_int_equal(source_create(&src_redis_ops, &ctx, &bad, &src, &err), SY_EINVAL);
        assert_null(src);
        assert_non_null(strstr(err.msg, "TLS"));
        event_base_free(b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test_setup_teardown(test_list_fifo_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_record_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_redelivery_after_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_heartbeat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_dead_letter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_binary_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_pop_sides, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_idle_wakeup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_room_and_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_wrongtype, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_release_and_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_release_partly_acked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_partial_ack_then_kill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_lease_back_while_held, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_migrate_old_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_group_delivery_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_reclaim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_two_consumers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_body_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_redis_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_script_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_acks_across_outage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unresolvable_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_and_db, setup, teardown),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
