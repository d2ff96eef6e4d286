/*
 * sources/redis/redis_list.c - LIST mode: a Redis list as an at-least-once work queue with a
 * visibility timeout, in the manner of SQS.
 *
 * Keys (LIST is the configured list; producers LPUSH, or RPUSH with pop: left):
 *   LIST               the waiting records, untouched by us except for the pops
 *   LIST:sy:inflight   ZSET  id -> when it becomes visible again (server ms)
 *   LIST:sy:body       HASH  id -> the element as it was popped
 *   LIST:sy:meta       HASH  id -> "RECEIVE_COUNT:FIRST_RECEIVE_MS"
 *
 * An element popped from LIST gets a new id (a UUID made in C and passed in ARGV) and lives in
 * the three in-flight keys until it is acked. Everything moves in batches, one script per
 * batch, never one round trip per record:
 *   move   re-delivers in-flight ids whose deadline passed (same id, count + 1), then pops up to
 *          N new elements (RPOP / LPOP with a count) into the in-flight keys; returns them with
 *          the server's clock and the ms until the earliest remaining deadline;
 *   ack    ZREM + HDEL + HDEL of a batch of ids (SOURCE_DONE and SOURCE_DISCARD alike);
 *   touch  ZADD XX of a batch of ids at server now + OFFSET: the heartbeat (OFFSET = the
 *          visibility timeout) and release (OFFSET = 0).
 * Deadlines use the server's clock (TIME inside the scripts), so brokers with skewed clocks
 * share a queue safely. Redis 7 replicates the effects of scripts, so TIME is allowed there.
 *
 * When the move script finds less than it was asked for, the source waits on its blocking
 * connection with BLMOVE LIST LIST RIGHT RIGHT T (LEFT LEFT with pop: left): it pops and pushes
 * back on the same end, so the list is unchanged and nothing is lost if we die meanwhile. T is
 * at most SRC_REDIS_BLOCK_MAX_MS and no later than the earliest in-flight deadline, so expired
 * records are redelivered on time. When BLMOVE returns (an element, or its timeout) the move
 * script runs again. An idle queue costs one wakeup per T and no polling.
 */
#include "redis_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "core/fastid.h"
#include "core/log.h"

/*
 * KEYS: list, inflight, body, meta. ARGV: visibility ms, N, 'RPOP' | 'LPOP', then N fresh ids.
 * Returns {server_now_ms, ms_until_the_next_deadline (-1: none), R, P, then R times id, body,
 * receive_count, first_receive_ms (the redelivered), then P bodies (the new ones: their ids
 * are ARGV[4..4+P), count 1, first receive server_now_ms)}. New records carry no more than
 * their body back: the reply is the larger part of the script's cost.
 */
static const char move_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local vis = tonumber(ARGV[1])\n"
    "local max = tonumber(ARGV[2])\n"
    "local due_at = string.format('%d', now + vis)\n"
    "local nows = string.format('%d', now)\n"
    "local meta1 = '1:' .. nows\n"
    "local out = {now, -1, 0, 0}\n"
    "local z, b, m = {}, {}, {}\n"
    "local r, p = 0, 0\n"
    "local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', nows, 'LIMIT', 0, max)\n"
    "for _, id in ipairs(due) do\n"
    "  local body = redis.call('HGET', KEYS[3], id)\n"
    "  if body then\n"
    "    local cnt, first = 0, now\n"
    "    local meta = redis.call('HGET', KEYS[4], id)\n"
    "    if meta then\n"
    "      local c, f = string.match(meta, '^(%d+):(%d+)$')\n"
    "      cnt = tonumber(c) or 0\n"
    "      first = tonumber(f) or now\n"
    "    end\n"
    "    cnt = cnt + 1\n"
    "    m[#m + 1] = id\n"
    "    m[#m + 1] = cnt .. ':' .. string.format('%d', first)\n"
    "    z[#z + 1] = due_at\n"
    "    z[#z + 1] = id\n"
    "    out[#out + 1] = id\n"
    "    out[#out + 1] = body\n"
    "    out[#out + 1] = cnt\n"
    "    out[#out + 1] = first\n"
    "    r = r + 1\n"
    "  else\n"
    "    redis.call('ZREM', KEYS[2], id)\n"
    "    redis.call('HDEL', KEYS[4], id)\n"
    "  end\n"
    "end\n"
    "if r < max then\n"
    "  local items = redis.call(ARGV[3], KEYS[1], max - r)\n"
    "  if items then\n"
    "    for i, body in ipairs(items) do\n"
    "      local id = ARGV[3 + i]\n"
    "      b[#b + 1] = id\n"
    "      b[#b + 1] = body\n"
    "      m[#m + 1] = id\n"
    "      m[#m + 1] = meta1\n"
    "      z[#z + 1] = due_at\n"
    "      z[#z + 1] = id\n"
    "      out[#out + 1] = body\n"
    "    end\n"
    "    p = #items\n"
    "  end\n"
    "end\n"
    "if #b > 0 then redis.call('HSET', KEYS[3], unpack(b)) end\n"
    "if #m > 0 then redis.call('HSET', KEYS[4], unpack(m)) end\n"
    "if #z > 0 then redis.call('ZADD', KEYS[2], unpack(z)) end\n"
    "out[3] = r\n"
    "out[4] = p\n"
    "local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')\n"
    "if first[2] then out[2] = math.max(0, tonumber(first[2]) - now) end\n"
    "return out\n";

/* KEYS: inflight, body, meta. ARGV: ids. */
static const char ack_lua[] = "redis.call('ZREM', KEYS[1], unpack(ARGV))\n"
                              "redis.call('HDEL', KEYS[2], unpack(ARGV))\n"
                              "redis.call('HDEL', KEYS[3], unpack(ARGV))\n"
                              "return #ARGV\n";

/* KEYS: inflight. ARGV: offset ms, then ids. Only ids still in flight move (XX). */
static const char touch_lua[] =
    "local t = redis.call('TIME')\n"
    "local at = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "+ tonumber(ARGV[1]))\n"
    "local z = {}\n"
    "for i = 2, #ARGV do\n"
    "  z[#z + 1] = at\n"
    "  z[#z + 1] = ARGV[i]\n"
    "end\n"
    "if #z == 0 then return 0 end\n"
    "return redis.call('ZADD', KEYS[1], 'XX', 'CH', unpack(z))\n";

static const char *const list_scripts[] = {move_lua, ack_lua, touch_lua, NULL};

static void list_wait(struct src_redis *sr);

static int list_init(struct src_redis *sr)
{
    if (asprintf(&sr->k_inflight, "%s:sy:inflight", sr->key) < 0)
        sr->k_inflight = NULL;
    if (asprintf(&sr->k_body, "%s:sy:body", sr->key) < 0)
        sr->k_body = NULL;
    if (asprintf(&sr->k_meta, "%s:sy:meta", sr->key) < 0)
        sr->k_meta = NULL;
    if (sr->k_inflight == NULL || sr->k_body == NULL || sr->k_meta == NULL)
        return SY_ENOMEM;
    src_redis_sha1(move_lua, sr->sha_move);
    src_redis_sha1(ack_lua, sr->sha_ack);
    src_redis_sha1(touch_lua, sr->sha_touch);
    sr->next_visible_ms = -1;
    return 0;
}

static void list_fini(struct src_redis *sr)
{
    free(sr->k_inflight);
    free(sr->k_body);
    free(sr->k_meta);
    sr->k_inflight = sr->k_body = sr->k_meta = NULL;
}

/* Element E of array R as a string (bulk or status), or NULL. */
static const redisReply *str_at(const redisReply *r, size_t i)
{
    const redisReply *e = i < r->elements ? r->element[i] : NULL;

    return e != NULL && (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS) ? e : NULL;
}

static bool int_at(const redisReply *r, size_t i, long long *v)
{
    const redisReply *e = i < r->elements ? r->element[i] : NULL;

    if (e == NULL || e->type != REDIS_REPLY_INTEGER)
        return false;
    *v = e->integer;
    return true;
}

/* One move: the fresh ids it was given, kept for its reply. */
struct list_fetch {
    size_t asked;
    char ids[][37];
};

/* One record of the move script's reply into RECS[*GOT] (released when it cannot be built). */
static void add_record(struct src_redis *sr, struct source_record **recs, size_t *got,
                       const char *id, size_t id_len, const redisReply *body, long long count,
                       long long first)
{
    struct src_redis_msg m = {0};

    m.id = id;
    m.id_len = id_len;
    m.body = body->str;
    m.body_len = body->len;
    m.count = count > 0 && count <= UINT32_MAX ? (uint32_t)count : 1;
    /* A list element carries no time of its own: its first receive stands in. */
    m.sent_ms = first;
    m.first_ms = first;
    recs[*got] = src_redis_record_new(sr, &m);
    if (recs[*got] == NULL) {
        log_err("%s out of memory building the record for %.*s; it is released", sr->prefix,
                (int)id_len, id);
        src_redis_release_id(sr, id, id_len);
        return;
    }
    (*got)++;
}

/* The move script's reply. ARG: the struct list_fetch (ours to free). */
static void on_moved(struct src_redis *sr, const redisReply *r, void *arg)
{
    struct list_fetch *lf = arg;
    struct source_record **recs = NULL;
    long long now, next, nr, np;
    size_t asked = lf->asked, got = 0, n;

    sr->fetching = false;
    if (r == NULL)
        goto out;
    if (r->type == REDIS_REPLY_ERROR) {
        src_redis_read_error(sr, "the move script", r);
        goto out;
    }
    if (r->type != REDIS_REPLY_ARRAY || !int_at(r, 0, &now) || !int_at(r, 1, &next) ||
        !int_at(r, 2, &nr) || !int_at(r, 3, &np) || nr < 0 || np < 0 || (size_t)np > asked ||
        r->elements != 4 + 4 * (size_t)nr + (size_t)np) {
        src_redis_read_later(sr, SRC_REDIS_ACK_RETRY_MS,
                             "the move script returned an "
                             "unexpected reply");
        goto out;
    }
    n = (size_t)nr + (size_t)np;
    sr->next_visible_ms = next;
    if (n > 0 && (recs = calloc(n, sizeof(*recs))) == NULL) {
        /* They are in flight: give them back at once. */
        log_err("%s out of memory receiving %zu records; they are released", sr->prefix, n);
        for (size_t i = 0; i < (size_t)np; i++)
            src_redis_release_id(sr, lf->ids[i], 36);
        for (size_t i = 0; i < (size_t)nr; i++)
            if (str_at(r, 4 + 4 * i) != NULL)
                src_redis_release_id(sr, r->element[4 + 4 * i]->str, r->element[4 + 4 * i]->len);
        goto out;
    }
    for (size_t i = 0; i < (size_t)nr; i++) {
        const redisReply *id = str_at(r, 4 + 4 * i), *body = str_at(r, 5 + 4 * i);
        long long count = 1, first = now;

        if (id == NULL || body == NULL)
            continue; /* cannot happen (the script returns strings); never crash on it */
        int_at(r, 6 + 4 * i, &count);
        int_at(r, 7 + 4 * i, &first);
        add_record(sr, recs, &got, id->str, id->len, body, count, first);
    }
    for (size_t i = 0; i < (size_t)np; i++) {
        const redisReply *body = str_at(r, 4 + 4 * (size_t)nr + i);

        if (body != NULL)
            add_record(sr, recs, &got, lf->ids[i], 36, body, 1, now);
    }
    src_redis_read_ok(sr);
    src_redis_deliver(sr, recs, got);
    free(recs);
    if (n >= asked)
        src_redis_kick(sr); /* there may be more: read again at once */
    else
        list_wait(sr);
out:
    free(lf);
}

/* Run the move script for up to N records. */
static void list_fetch(struct src_redis *sr, size_t n)
{
    struct src_redis_argv a = {0};
    struct list_fetch *lf = malloc(sizeof(*lf) + n * sizeof(lf->ids[0]));
    int rc;

    if (lf == NULL) {
        src_redis_read_later(sr, SRC_REDIS_ACK_RETRY_MS, "out of memory reading");
        return;
    }
    lf->asked = n;
    src_redis_argv_adds(&a, "EVALSHA");
    src_redis_argv_adds(&a, sr->sha_move);
    src_redis_argv_adds(&a, "4");
    src_redis_argv_add(&a, sr->key, sr->key_len);
    src_redis_argv_adds(&a, sr->k_inflight);
    src_redis_argv_adds(&a, sr->k_body);
    src_redis_argv_adds(&a, sr->k_meta);
    src_redis_argv_addf(&a, "%d", sr->vis_ms);
    src_redis_argv_addf(&a, "%zu", n);
    src_redis_argv_adds(&a, sr->cfg->pop == SRC_REDIS_POP_LEFT ? "LPOP" : "RPOP");
    for (size_t i = 0; i < n; i++) {
        fastid_uuid4(lf->ids[i]);
        src_redis_argv_add(&a, lf->ids[i], 36);
    }
    rc =
        src_redis_send(sr, &sr->cmd, &a, SRC_REDIS_CMD_TIMEOUT_MS, "the move script", on_moved, lf);
    src_redis_argv_free(&a);
    if (rc == 0) {
        sr->fetching = true;
        return;
    }
    free(lf);
    if (rc == SY_ENOMEM)
        src_redis_read_later(sr, SRC_REDIS_ACK_RETRY_MS, "out of memory reading");
}

/* BLMOVE came back: an element arrived, or its timeout (or an in-flight deadline) passed. */
static void on_woken(struct src_redis *sr, const redisReply *r, void *arg)
{
    sr->waiting = false;
    if (r == NULL)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        src_redis_read_error(sr, "BLMOVE", r);
        return;
    }
    src_redis_kick(sr);
}

/* Wait on the blocking connection until the list has an element or a deadline is near. */
static void list_wait(struct src_redis *sr)
{
    const char *side = sr->cfg->pop == SRC_REDIS_POP_LEFT ? "LEFT" : "RIGHT";
    struct src_redis_argv a = {0};
    int ms = SRC_REDIS_BLOCK_MAX_MS;
    int rc;

    if (sr->stopping || sr->paused || sr->sess != SESS_UP || sr->blk.ac == NULL) {
        /* resume() / the reconnect reads again; a stop() may be waiting for this read. */
        if (sr->stopping)
            src_redis_kick(sr);
        return;
    }
    if (sr->next_visible_ms >= 0 && sr->next_visible_ms < ms)
        ms = (int)sr->next_visible_ms;
    if (ms < 10)
        ms = 10; /* BLMOVE's timeout 0 would mean forever */
    src_redis_argv_adds(&a, "BLMOVE");
    src_redis_argv_add(&a, sr->key, sr->key_len);
    src_redis_argv_add(&a, sr->key, sr->key_len);
    src_redis_argv_adds(&a, side);
    src_redis_argv_adds(&a, side);
    src_redis_argv_addf(&a, "%d.%03d", ms / 1000, ms % 1000);
    rc = src_redis_send(sr, &sr->blk, &a, ms + SRC_REDIS_BLOCK_MARGIN_MS, "BLMOVE", on_woken, NULL);
    src_redis_argv_free(&a);
    if (rc == 0)
        sr->waiting = true;
    else if (rc == SY_ENOMEM)
        src_redis_read_later(sr, SRC_REDIS_ACK_RETRY_MS, "out of memory waiting");
}

static int list_send_ids(struct src_redis *sr, enum src_redis_op op, char *const *ids, size_t n,
                         src_redis_reply_fn *cb, void *arg)
{
    struct src_redis_argv a = {0};
    const char *what;
    int rc;

    src_redis_argv_adds(&a, "EVALSHA");
    if (op == SRC_REDIS_OP_ACK) {
        what = "the ack script";
        src_redis_argv_adds(&a, sr->sha_ack);
        src_redis_argv_adds(&a, "3");
        src_redis_argv_adds(&a, sr->k_inflight);
        src_redis_argv_adds(&a, sr->k_body);
        src_redis_argv_adds(&a, sr->k_meta);
    } else {
        what = op == SRC_REDIS_OP_RELEASE ? "the release script" : "the heartbeat script";
        src_redis_argv_adds(&a, sr->sha_touch);
        src_redis_argv_adds(&a, "1");
        src_redis_argv_adds(&a, sr->k_inflight);
        src_redis_argv_addf(&a, "%d", op == SRC_REDIS_OP_RELEASE ? 0 : sr->vis_ms);
    }
    for (size_t i = 0; i < n; i++)
        src_redis_argv_adds(&a, ids[i]);
    rc = src_redis_send(sr, &sr->cmd, &a, SRC_REDIS_CMD_TIMEOUT_MS, what, cb, arg);
    src_redis_argv_free(&a);
    return rc;
}

/* LLEN and ZCARD replies (ARG: which gauge). */
static void on_gauge(struct src_redis *sr, const redisReply *r, void *arg)
{
    int64_t *gauge = arg;

    sr->stats_cmds--;
    if (r != NULL && r->type == REDIS_REPLY_INTEGER)
        *gauge = r->integer;
}

static void list_stats(struct src_redis *sr)
{
    struct src_redis_argv a = {0};

    src_redis_argv_adds(&a, "LLEN");
    src_redis_argv_add(&a, sr->key, sr->key_len);
    if (src_redis_send(sr, &sr->cmd, &a, SRC_REDIS_CMD_TIMEOUT_MS, "LLEN", on_gauge, &sr->lag) == 0)
        sr->stats_cmds++;
    src_redis_argv_free(&a);
    memset(&a, 0, sizeof(a));
    src_redis_argv_adds(&a, "ZCARD");
    src_redis_argv_adds(&a, sr->k_inflight);
    if (src_redis_send(sr, &sr->cmd, &a, SRC_REDIS_CMD_TIMEOUT_MS, "ZCARD", on_gauge,
                       &sr->inflight_n) == 0)
        sr->stats_cmds++;
    src_redis_argv_free(&a);
}

static void list_reset(struct src_redis *sr)
{
    sr->next_visible_ms = -1;
}

const struct src_redis_mode src_redis_list_mode = {
    .name = "list",
    .scripts = list_scripts,
    .init = list_init,
    .fini = list_fini,
    .setup = NULL,
    .fetch = list_fetch,
    .send_ids = list_send_ids,
    .stats = list_stats,
    .reset = list_reset,
};
