/*
 * sources/redis/redis_list.c - LIST mode: a Redis list as an at-least-once work queue with a
 * visibility timeout, in the manner of SQS, moved in leases of many records.
 *
 * Keys (LIST is the configured list; producers LPUSH, or RPUSH with pop: left):
 *   LIST                  the waiting records, untouched by us except for the pops
 *   LIST:sy:inflight      ZSET  lease id -> when the lease becomes visible again (server ms)
 *   LIST:sy:lease:<id>    LIST  the lease's elements, in the order they were popped
 *   LIST:sy:meta          HASH  lease id -> "RECEIVE_COUNT:FIRST_RECEIVE_MS[:SKIP,SKIP...]"
 *   LIST:sy:body          HASH  the build before this one only (see "Migration")
 * The ZSET keeps the name it had when it held one member per record: ZCARD LIST:sy:inflight == 0
 * still means "nothing in flight" to whoever watches it (bench/esm.c, test_esm_redis.c,
 * operators), though it now counts leases.
 *
 * A lease is what one move popped: up to N elements stored as one unit (one RPUSH of them all,
 * one ZADD, one HSET), so the server's work per record is the pop, one list insert and the
 * reply. Its id is a UUID made in C (the only id a move carries) whose last four hex digits
 * are 0000; record I of the lease has the lease id with those digits replaced by I in hex
 * (I < 65536; a lease holds at most SRC_REDIS_FETCH_MAX). So messageIds look like UUIDs and
 * stay the same across redeliveries, and ApproximateReceiveCount is the lease's receive count:
 * all of its records were received together. SKIP lists the indices acknowledged before a
 * release (below); a redelivery leaves them out.
 *
 * The scripts (batched: never one round trip per record):
 *   move     re-delivers leases whose deadline passed (same id, count + 1, whole leases, before
 *            new elements, as long as they fit in N, at least one), then pops up to the rest of
 *            N new elements (RPOP / LPOP with a count) into a new lease; returns the leases,
 *            each with its elements packed into one string by Redis's bundled cmsgpack (an
 *            array of strings in MessagePack: the reply is a handful of objects for hiredis to
 *            build, not one per record), the server's clock and the ms until the earliest
 *            remaining deadline (0 when expired leases were left for the next move);
 *   ack      DEL of the lease lists + ZREM + HDEL, for a batch of finished leases;
 *   touch    ZADD XX of a batch of lease ids at server now + the visibility timeout: the
 *            heartbeat, one entry per held lease;
 *   release  makes a batch of leases visible at once, first adding to each one's SKIP the
 *            indices the host acknowledged before giving the rest back.
 * Deadlines use the server's clock (TIME inside the scripts), so brokers with skewed clocks
 * share a queue safely. Redis 7 replicates the effects of scripts, so TIME is allowed there.
 * The lease keys are built inside the scripts from the prefix LIST:sy:lease: (a standalone
 * server; Cluster is refused anyway).
 *
 * The host acknowledges single records; they only change our bookkeeping of their lease (one
 * held entry per lease, struct list_lease: records still out with the host, and a bitmap of the
 * indices acknowledged). When no record of a lease is out any more the lease is finished in one
 * queued id: all acknowledged -> ack; none -> release; some -> release with the acknowledged
 * indices as SKIP. So release() (disable, shutdown) never brings back a record that was
 * acknowledged, and records given back while others of their lease still run come back when the
 * last of them is done (the mapping gives everything back only once its invocations ended).
 *
 * Crashes: a broker killed holding a lease stops heartbeating it; after the visibility timeout
 * the next move (any broker's) delivers it again whole, with the same messageIds and count + 1,
 * including records of it the function already finished (unless a release recorded them). That
 * is at-least-once with duplicates bounded by what was in flight. Nothing is ever lost: an
 * element is in LIST or in exactly one lease from the atomic pop on, until an ack deletes it.
 *
 * Migration: the build before kept one ZSET member per record in LIST:sy:inflight, its element
 * in LIST:sy:body and its meta in LIST:sy:meta, under the same key names. The move script tells
 * the two apart by the lease list: an expired member without one that has a body is such a
 * record, and it goes back to the pop end of LIST (so this very move pops it again, as a record
 * of a new lease: a new messageId, receive count 1). Members the build before still heartbeats
 * are left alone until they expire. The build before must not run on the same list at the same
 * time as this one, though: its move script would drop an expired lease it cannot read.
 *
 * When the move finds less than it was asked for, the source waits on its blocking connection
 * with BLMOVE LIST LIST RIGHT RIGHT T (LEFT LEFT with pop: left): it pops and pushes back on the
 * same end, so the list is unchanged and nothing is lost if we die meanwhile. T is at most
 * SRC_REDIS_BLOCK_MAX_MS and no later than the earliest in-flight deadline, so expired leases
 * are redelivered on time. When BLMOVE returns (an element, or its timeout) the move script
 * runs again. An idle queue costs one wakeup per T and no polling. The move after a wakeup is
 * not capped: it asks for what the host has room for, which costs no more than asking for one
 * now that a move carries one id whatever its size (bench_esm's idle latency row and its
 * diagnostic row with max_records_in_flight 10 agree).
 */
#include "redis_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "core/fastid.h"
#include "core/log.h"

#define LEASE_ID_LEN 36 /* a UUID */
#define LEASE_IDX_AT 32 /* where a record's index replaces the lease id's last 4 hex digits */
#define LEASE_MAX 0x10000u /* indices must fit in those 4 digits */

/*
 * KEYS: list, inflight, meta, body (the build before). ARGV: visibility ms, N, 'RPOP' | 'LPOP',
 * the lease key prefix, the new lease's id. Returns {server_now_ms, ms_until_the_next_deadline
 * (-1: none; 0: more expired leases wait), then per lease {id, receive_count,
 * first_receive_ms, skip, cmsgpack.pack({element...})}}.
 */
static const char move_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local nows = string.format('%d', now)\n"
    "local due_at = string.format('%d', now + tonumber(ARGV[1]))\n"
    "local max = tonumber(ARGV[2])\n"
    "local out = {now, -1}\n"
    "local got, left = 0, false\n"
    "local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', nows, 'LIMIT', 0, max)\n"
    "for _, id in ipairs(due) do\n"
    "  local key = ARGV[4] .. id\n"
    "  local len = redis.call('LLEN', key)\n"
    "  if len > 0 then\n"
    "    if got > 0 and got + len > max then\n"
    "      left = true\n"
    "      break\n"
    "    end\n"
    "    local meta = redis.call('HGET', KEYS[3], id) or ''\n"
    "    local c, f, s = string.match(meta, '^(%d+):(%d+):?(.*)$')\n"
    "    local cnt = (tonumber(c) or 0) + 1\n"
    "    f = f or nows\n"
    "    s = s or ''\n"
    "    local m = cnt .. ':' .. f\n"
    "    if s ~= '' then m = m .. ':' .. s end\n"
    "    redis.call('HSET', KEYS[3], id, m)\n"
    "    redis.call('ZADD', KEYS[2], due_at, id)\n"
    "    out[#out + 1] = {id, cnt, tonumber(f), s, cmsgpack.pack(redis.call('LRANGE', key, 0, "
    "-1))}\n"
    "    got = got + len\n"
    "  else\n"
    "    local body = redis.call('HGET', KEYS[4], id)\n"
    "    if body then\n"
    "      if ARGV[3] == 'LPOP' then\n"
    "        redis.call('LPUSH', KEYS[1], body)\n"
    "      else\n"
    "        redis.call('RPUSH', KEYS[1], body)\n"
    "      end\n"
    "      redis.call('HDEL', KEYS[4], id)\n"
    "    end\n"
    "    redis.call('ZREM', KEYS[2], id)\n"
    "    redis.call('HDEL', KEYS[3], id)\n"
    "  end\n"
    "end\n"
    "if got < max then\n"
    "  local items = redis.call(ARGV[3], KEYS[1], max - got)\n"
    "  if items then\n"
    "    redis.call('RPUSH', ARGV[4] .. ARGV[5], unpack(items))\n"
    "    redis.call('ZADD', KEYS[2], due_at, ARGV[5])\n"
    "    redis.call('HSET', KEYS[3], ARGV[5], '1:' .. nows)\n"
    "    out[#out + 1] = {ARGV[5], 1, now, '', cmsgpack.pack(items)}\n"
    "  end\n"
    "end\n"
    "if left then\n"
    "  out[2] = 0\n"
    "else\n"
    "  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')\n"
    "  if first[2] then out[2] = math.max(0, tonumber(first[2]) - now) end\n"
    "end\n"
    "return out\n";

/* KEYS: inflight, meta. ARGV: the lease key prefix, then lease ids. */
static const char ack_lua[] = "local keys = {}\n"
                              "for i = 2, #ARGV do keys[#keys + 1] = ARGV[1] .. ARGV[i] end\n"
                              "if #keys == 0 then return 0 end\n"
                              "redis.call('DEL', unpack(keys))\n"
                              "redis.call('ZREM', KEYS[1], unpack(ARGV, 2))\n"
                              "redis.call('HDEL', KEYS[2], unpack(ARGV, 2))\n"
                              "return #keys\n";

/* KEYS: inflight. ARGV: offset ms, then lease ids. Only leases still in flight move (XX). */
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

/*
 * KEYS: inflight, meta. ARGV: lease ids, each maybe with ':' and the indices acknowledged
 * before the release ("ID:3,17"): those join the lease's SKIP. Leases no longer in flight
 * (acked, or taken over and finished by another broker) are left alone.
 */
static const char release_lua[] =
    "local t = redis.call('TIME')\n"
    "local nows = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / "
    "1000))\n"
    "local n = 0\n"
    "for i = 1, #ARGV do\n"
    "  local id, skip = string.match(ARGV[i], '^([^:]+):?(.*)$')\n"
    "  if id and redis.call('ZSCORE', KEYS[1], id) then\n"
    "    if skip ~= '' then\n"
    "      local meta = redis.call('HGET', KEYS[2], id) or ''\n"
    "      local c, f, s = string.match(meta, '^(%d+):(%d+):?(.*)$')\n"
    "      if s and s ~= '' then skip = s .. ',' .. skip end\n"
    "      redis.call('HSET', KEYS[2], id, (c or '0') .. ':' .. (f or nows) .. ':' .. skip)\n"
    "    end\n"
    "    redis.call('ZADD', KEYS[1], nows, id)\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n";

static const char *const list_scripts[] = {move_lua, ack_lua, touch_lua, release_lua, NULL};

/* What we know of a lease the host holds records of (the priv of its held entry). */
struct list_lease {
    uint32_t size;      /* its records (the lease list's length) */
    uint32_t out;       /* record objects the host still holds (a lease delivered again while
                           held counts its records twice) */
    uint32_t n_acked;   /* distinct indices acknowledged: by the host, or SKIP on delivery */
    uint32_t host_acks; /* ...of which by the host while we held it (counted in acks_local) */
    uint64_t acked[];   /* bitmap of those indices */
};

static void list_wait(struct src_redis *sr);

static int list_init(struct src_redis *sr)
{
    if (asprintf(&sr->k_inflight, "%s:sy:inflight", sr->key) < 0)
        sr->k_inflight = NULL;
    if (asprintf(&sr->k_meta, "%s:sy:meta", sr->key) < 0)
        sr->k_meta = NULL;
    if (asprintf(&sr->k_body, "%s:sy:body", sr->key) < 0)
        sr->k_body = NULL;
    if (asprintf(&sr->k_lease, "%s:sy:lease:", sr->key) < 0)
        sr->k_lease = NULL;
    if (sr->k_inflight == NULL || sr->k_meta == NULL || sr->k_body == NULL || sr->k_lease == NULL)
        return SY_ENOMEM;
    sr->k_lease_len = strlen(sr->k_lease);
    src_redis_sha1(move_lua, sr->sha_move);
    src_redis_sha1(ack_lua, sr->sha_ack);
    src_redis_sha1(touch_lua, sr->sha_touch);
    src_redis_sha1(release_lua, sr->sha_release);
    sr->next_visible_ms = -1;
    return 0;
}

static void list_fini(struct src_redis *sr)
{
    free(sr->k_inflight);
    free(sr->k_meta);
    free(sr->k_body);
    free(sr->k_lease);
    sr->k_inflight = sr->k_meta = sr->k_body = sr->k_lease = NULL;
}

/* Element I of array R as a string (bulk or status), or NULL. */
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

/* ---- the held leases -------------------------------------------------------------------- */

static bool bit_get(const struct list_lease *l, uint32_t i)
{
    return (l->acked[i / 64] >> (i % 64)) & 1u;
}

static void bit_set(struct list_lease *l, uint32_t i)
{
    l->acked[i / 64] |= (uint64_t)1 << (i % 64);
}

/* Record I's id of lease LEASE_ID (LEASE_ID_LEN chars) into OUT (and a NUL). */
static void record_id(const char *lease_id, uint32_t i, char out[LEASE_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";

    memcpy(out, lease_id, LEASE_IDX_AT);
    out[32] = hex[(i >> 12) & 15];
    out[33] = hex[(i >> 8) & 15];
    out[34] = hex[(i >> 4) & 15];
    out[35] = hex[i & 15];
    out[36] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The lease and index of record id ID; false when ID is not one of ours. */
static bool parse_record_id(const char *id, char lease_id[LEASE_ID_LEN + 1], uint32_t *idx)
{
    uint32_t v = 0;

    if (strlen(id) != LEASE_ID_LEN)
        return false;
    for (int k = LEASE_IDX_AT; k < LEASE_ID_LEN; k++) {
        int d = hexval(id[k]);

        if (d < 0)
            return false;
        v = v << 4 | (uint32_t)d;
    }
    memcpy(lease_id, id, LEASE_IDX_AT);
    memcpy(lease_id + LEASE_IDX_AT, "0000", 5);
    *idx = v;
    return true;
}

/*
 * No record of held lease H is out with the host any more: queue what the server must do with
 * it (ack, release, or release with the acknowledged indices as SKIP) and forget it.
 */
static void lease_finish(struct src_redis *sr, struct src_redis_held *h)
{
    struct list_lease *l = h->priv;

    if (sr->lease_last == h)
        sr->lease_last = NULL;
    sr->acks_local -= l->host_acks;
    if (l->n_acked == l->size) {
        src_redis_queue_id(sr, SRC_REDIS_OP_ACK, h->id, h->len, l->host_acks);
    } else if (l->n_acked == 0) {
        src_redis_queue_id(sr, SRC_REDIS_OP_RELEASE, h->id, h->len, 0);
    } else {
        /* A rare path (a release after some acks): "ID:i,j,k" in decimal. */
        struct buf b = {0};
        int rc = buf_append(&b, h->id, h->len);

        for (uint32_t i = 0; i < l->size && rc == 0; i++)
            if (bit_get(l, i))
                rc = buf_printf(&b, "%c%u", b.len == h->len ? ':' : ',', i);
        if (rc == 0)
            src_redis_queue_id(sr, SRC_REDIS_OP_RELEASE, b.data, b.len, l->host_acks);
        else
            log_err("%s out of memory releasing lease %s; its records come back after the "
                    "visibility timeout, the %u acknowledged ones included",
                    sr->prefix, h->id, l->n_acked);
        buf_free(&b);
    }
    src_redis_held_drop(sr, h);
}

/* mode->done: the host acknowledged (ACKED) or gave back RECS[0..N). */
static void list_done(struct src_redis *sr, struct source_record *const *recs, size_t n, bool acked)
{
    for (size_t i = 0; i < n; i++) {
        char lease_id[LEASE_ID_LEN + 1];
        struct src_redis_held *h = sr->lease_last;
        struct list_lease *l;
        uint32_t idx;

        if (!parse_record_id(recs[i]->id, lease_id, &idx)) {
            log_warn("%s %s of a record with a foreign id (%s) ignored", sr->prefix,
                     acked ? "ack" : "release", recs[i]->id);
            continue;
        }
        /* The records of one batch mostly come from one lease: try the last one first. */
        if (h == NULL || memcmp(h->id, lease_id, LEASE_ID_LEN) != 0)
            h = src_redis_held_find(sr, lease_id, LEASE_ID_LEN);
        if (h == NULL || (l = h->priv) == NULL || idx >= l->size || l->out == 0) {
            log_warn("%s %s of %s, which is not held (any more), ignored", sr->prefix,
                     acked ? "ack" : "release", recs[i]->id);
            continue;
        }
        sr->lease_last = h;
        if (acked && !bit_get(l, idx)) {
            bit_set(l, idx);
            l->n_acked++;
            l->host_acks++;
            sr->acks_local++;
        }
        if (--l->out == 0)
            lease_finish(sr, h);
    }
}

/* ---- reading ------------------------------------------------------------------------------ */

/*
 * A MessagePack array of strings, as cmsgpack packs a Lua array of them (MessagePack spec:
 * fixarray 0x90-0x9f, array 16 0xdc, array 32 0xdd; fixstr 0xa0-0xbf, str 8/16/32 0xd9-0xdb,
 * and bin 8/16/32 0xc4-0xc6 for good measure; lengths big-endian). Read in place.
 */
struct mp_strs {
    const unsigned char *p, *end;
    size_t left; /* elements not read yet */
};

static bool mp_take(struct mp_strs *m, size_t k, uint64_t *v)
{
    if ((size_t)(m->end - m->p) < k)
        return false;
    *v = 0;
    for (size_t i = 0; i < k; i++)
        *v = *v << 8 | m->p[i];
    m->p += k;
    return true;
}

/* Start reading S[0..LEN): false when it is not an array. */
static bool mp_open(struct mp_strs *m, const char *s, size_t len)
{
    uint64_t n = 0;
    unsigned char c;

    m->p = (const unsigned char *)s;
    m->end = m->p + len;
    if (len == 0)
        return false;
    c = *m->p++;
    if (c >= 0x90 && c <= 0x9f)
        n = c & 0x0f;
    else if (!(c == 0xdc && mp_take(m, 2, &n)) && !(c == 0xdd && mp_take(m, 4, &n)))
        return false;
    m->left = (size_t)n;
    return true;
}

/* The next string into *S, *N: false at the end or when the input is not what we wrote. */
static bool mp_next(struct mp_strs *m, const char **s, size_t *n)
{
    uint64_t len = 0;
    unsigned char c;

    if (m->left == 0 || m->p >= m->end)
        return false;
    c = *m->p++;
    if (c >= 0xa0 && c <= 0xbf)
        len = c & 0x1f;
    else if (!((c == 0xd9 || c == 0xc4) && mp_take(m, 1, &len)) &&
             !((c == 0xda || c == 0xc5) && mp_take(m, 2, &len)) &&
             !((c == 0xdb || c == 0xc6) && mp_take(m, 4, &len)))
        return false;
    if ((uint64_t)(m->end - m->p) < len)
        return false;
    *s = (const char *)m->p;
    *n = (size_t)len;
    m->p += len;
    m->left--;
    return true;
}

/* Mark the indices of SKIP ("3,17,...") as acknowledged in L. */
static void mark_skips(struct list_lease *l, const char *skip)
{
    const char *p = skip;

    while (*p != '\0') {
        char *end;
        unsigned long v = strtoul(p, &end, 10);

        if (end == p)
            break; /* not ours: the rest cannot be read */
        if (v < l->size && !bit_get(l, (uint32_t)v)) {
            bit_set(l, (uint32_t)v);
            l->n_acked++;
        }
        p = *end == ',' ? end + 1 : end;
    }
}

/* The elements in lease LR ({id, count, first, skip, packed}), or 0 when LR is malformed. */
static size_t lease_size(const redisReply *lr)
{
    const redisReply *packed = str_at(lr, 4);
    struct mp_strs m;

    if (lr->type != REDIS_REPLY_ARRAY || lr->elements != 5 || packed == NULL ||
        !mp_open(&m, packed->str, packed->len))
        return 0;
    return m.left;
}

/*
 * Lease LR ({id, count, first, skip, packed elements}) of a move's reply: track it (held before
 * the host sees its records) and build its records into RECS[*GOT...] (room for
 * lease_size()). Returns the elements it had (delivered or not).
 */
static size_t take_lease(struct src_redis *sr, const redisReply *lr, struct source_record **recs,
                         size_t *got)
{
    const redisReply *id = str_at(lr, 0), *skip = str_at(lr, 3);
    long long count = 1, first = 0;
    struct src_redis_held *h;
    struct list_lease *l;
    struct mp_strs items;
    size_t size = lease_size(lr);
    bool made;

    if (size == 0 || id == NULL || skip == NULL || !int_at(lr, 1, &count) ||
        !int_at(lr, 2, &first) || !mp_open(&items, lr->element[4]->str, lr->element[4]->len)) {
        log_err("%s the move script returned a malformed lease; it comes back after the "
                "visibility timeout",
                sr->prefix);
        return 0;
    }
    if (id->len != LEASE_ID_LEN || memcmp(id->str + LEASE_IDX_AT, "0000", 4) != 0 ||
        size > LEASE_MAX) {
        log_err("%s lease %.*s of %zu records is not one of ours; it is left in flight", sr->prefix,
                (int)id->len, id->str, size);
        return size;
    }
    h = src_redis_held_get(sr, id->str, id->len,
                           sizeof(*l) + (size + 63) / 64 * sizeof(l->acked[0]), &made);
    if (h == NULL) {
        log_err("%s out of memory taking lease %s; its %zu records come back after the "
                "visibility timeout",
                sr->prefix, id->str, size);
        return size;
    }
    l = h->priv;
    if (made) {
        l->size = (uint32_t)size;
    } else if (l->size != size) {
        log_err("%s lease %s came back with %zu records instead of %u; ignored", sr->prefix,
                id->str, size, l->size);
        return size;
    }
    /* Still held: our own heartbeat was late and this move took it back. Both copies are out;
     * what the host acknowledged of the first is not delivered again. */
    mark_skips(l, skip->str);
    for (uint32_t i = 0; i < size; i++) {
        struct src_redis_msg m = {0};
        char rid[LEASE_ID_LEN + 1];

        if (!mp_next(&items, &m.body, &m.body_len)) {
            /* Cannot happen (cmsgpack wrote it); what is not delivered is released. */
            log_err("%s lease %s: element %u cannot be read; the rest is released", sr->prefix,
                    id->str, i);
            break;
        }
        if (bit_get(l, i))
            continue;
        record_id(id->str, i, rid);
        m.id = rid;
        m.id_len = LEASE_ID_LEN;
        m.count = count > 0 && count <= UINT32_MAX ? (uint32_t)count : 1;
        /* A list element carries no time of its own: its first receive stands in. */
        m.sent_ms = first;
        m.first_ms = first;
        recs[*got] = src_redis_record_new(sr, &m);
        if (recs[*got] == NULL) {
            /* Not out with the host: when the others are done the lease is released. */
            log_err("%s out of memory building the record for %s; it is released", sr->prefix, rid);
            continue;
        }
        (*got)++;
        l->out++;
    }
    if (l->out == 0)
        lease_finish(sr, h); /* nothing of it is out: every record acknowledged before */
    return size;
}

/* The move script's reply. ARG: the number of records it asked for. */
static void on_moved(struct src_redis *sr, const redisReply *r, void *arg)
{
    size_t asked = (size_t)(uintptr_t)arg, total = 0, got = 0, seen = 0;
    struct source_record **recs = NULL;
    long long now, next;

    sr->fetching = false;
    if (r == NULL)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        src_redis_read_error(sr, "the move script", r);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || !int_at(r, 0, &now) || !int_at(r, 1, &next)) {
        src_redis_read_later(sr, SRC_REDIS_ACK_RETRY_MS,
                             "the move script returned an unexpected reply");
        return;
    }
    sr->next_visible_ms = next;
    for (size_t i = 2; i < r->elements; i++)
        total += lease_size(r->element[i]);
    if (total > 0 && (recs = malloc(total * sizeof(*recs))) == NULL) {
        /* They are in flight and not held: they come back after the timeout. */
        log_err("%s out of memory receiving %zu records; they come back after the visibility "
                "timeout",
                sr->prefix, total);
        src_redis_read_later(sr, SRC_REDIS_ACK_RETRY_MS, "out of memory reading");
        return;
    }
    for (size_t i = 2; i < r->elements; i++)
        seen += take_lease(sr, r->element[i], recs, &got);
    src_redis_read_ok(sr);
    src_redis_deliver(sr, recs, got);
    free(recs);
    if (seen >= asked || next == 0)
        src_redis_kick(sr); /* there may be more: read again at once */
    else
        list_wait(sr);
}

/*
 * Run the move script for up to N records: one lease. (Splitting a large read into moves sent
 * back to back, so that the first is built while the server runs the next, was measured: it is
 * slower, more leases cost more than the overlap saves.)
 */
static void list_fetch(struct src_redis *sr, size_t n)
{
    struct src_redis_argv a = {0};
    char lease_id[LEASE_ID_LEN + 1];
    int rc;

    fastid_uuid4(lease_id);
    memcpy(lease_id + LEASE_IDX_AT, "0000", 4); /* record I is ...%04x */
    src_redis_argv_adds(&a, "EVALSHA");
    src_redis_argv_adds(&a, sr->sha_move);
    src_redis_argv_adds(&a, "4");
    src_redis_argv_add(&a, sr->key, sr->key_len);
    src_redis_argv_adds(&a, sr->k_inflight);
    src_redis_argv_adds(&a, sr->k_meta);
    src_redis_argv_adds(&a, sr->k_body);
    src_redis_argv_addf(&a, "%d", sr->vis_ms);
    src_redis_argv_addf(&a, "%zu", n);
    src_redis_argv_adds(&a, sr->cfg->pop == SRC_REDIS_POP_LEFT ? "LPOP" : "RPOP");
    src_redis_argv_add(&a, sr->k_lease, sr->k_lease_len);
    src_redis_argv_add(&a, lease_id, LEASE_ID_LEN);
    rc = src_redis_send(sr, &sr->cmd, &a, SRC_REDIS_CMD_TIMEOUT_MS, "the move script", on_moved,
                        (void *)(uintptr_t)n);
    src_redis_argv_free(&a);
    if (rc == 0)
        sr->fetching = true;
    else if (rc == SY_ENOMEM)
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

/* ---- acks, heartbeats, releases, stats ---------------------------------------------------- */

/* IDS are lease ids (a release's may carry ":SKIP"). */
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
        src_redis_argv_adds(&a, "2");
        src_redis_argv_adds(&a, sr->k_inflight);
        src_redis_argv_adds(&a, sr->k_meta);
        src_redis_argv_add(&a, sr->k_lease, sr->k_lease_len);
    } else if (op == SRC_REDIS_OP_RELEASE) {
        what = "the release script";
        src_redis_argv_adds(&a, sr->sha_release);
        src_redis_argv_adds(&a, "2");
        src_redis_argv_adds(&a, sr->k_inflight);
        src_redis_argv_adds(&a, sr->k_meta);
    } else {
        what = "the heartbeat script";
        src_redis_argv_adds(&a, sr->sha_touch);
        src_redis_argv_adds(&a, "1");
        src_redis_argv_adds(&a, sr->k_inflight);
        src_redis_argv_addf(&a, "%d", sr->vis_ms);
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
    .done = list_done,
};
