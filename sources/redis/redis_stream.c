/*
 * sources/redis/redis_stream.c - STREAM mode: a Redis stream read through a consumer group.
 *
 * The group (`group`, default "switchyard") is created at every session setup with
 * XGROUP CREATE STREAM GROUP 0|$ MKSTREAM (BUSYGROUP: it exists; starting_position picks "0" or
 * "$"), and again when a read says NOGROUP. Each broker is one consumer (`consumer`, default
 * "<hostname>-<pid>"); several brokers in one group share the stream.
 *
 * One read at a time, so the records asked for never exceed the host's room:
 *   - when the reclaim is due (every visibility/4, clamped to 100 ms..5 s, and at once after a
 *     release), the claim script runs XAUTOCLAIM ... min-idle = the visibility timeout, so
 *     entries another consumer (or a dead broker) left pending that long come to us, and reads
 *     each claimed entry's delivery count with XPENDING in the same round trip; it walks the
 *     pending list with XAUTOCLAIM's cursor until it wraps;
 *   - otherwise XREADGROUP GROUP g c COUNT n BLOCK t STREAMS key > on the blocking connection,
 *     t = min(SRC_REDIS_BLOCK_MAX_MS, the time until the reclaim is due).
 * The delivery count is the receive count (1 for new entries); over max_receive_count the
 * record is flagged SOURCE_REC_DEAD_LETTER. Ack = XACK (batched). Held entries are heartbeated
 * with XCLAIM key g c 0 id... JUSTID, which resets their idle time without counting a delivery;
 * release = XCLAIM ... IDLE visibility+1 JUSTID, which makes them claimable at once. Entries
 * deleted (trimmed) while pending come back from XAUTOCLAIM as deleted ids (Redis 7) or nil
 * entries (6.2): they are XACKed.
 *
 * The body of an entry (its record's `body` and the host's `data`):
 *   - with body_field set and present: that field's value; every other field becomes a
 *     messageAttribute (String, or Binary when not UTF-8);
 *   - else with one field: that field's value;
 *   - else (several fields): a JSON object of them, {"field":"value",...} in entry order, as a
 *     string. Field names and values are escaped as they are; a value that is not UTF-8 makes
 *     the whole body non-UTF-8, so it is delivered base64-encoded (redis_event.c).
 */
#include "redis_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/time.h"

/*
 * KEYS: stream. ARGV: group, consumer, min idle ms, count, cursor. Returns {next cursor,
 * {{id, {field, value...}, delivery_count}...}, {deleted id...}}.
 */
static const char claim_lua[] =
    "local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[5], 'COUNT', "
    "ARGV[4])\n"
    "local entries = {}\n"
    "local deleted = {}\n"
    "if type(r[3]) == 'table' then deleted = r[3] end\n"
    "for _, e in ipairs(r[2]) do\n"
    "  if type(e) == 'table' and e[1] then\n"
    "    if type(e[2]) == 'table' then\n"
    "      local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)\n"
    "      local cnt = 1\n"
    "      if p[1] then cnt = p[1][4] end\n"
    "      entries[#entries + 1] = {e[1], e[2], cnt}\n"
    "    else\n"
    "      deleted[#deleted + 1] = e[1]\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return {r[1], entries, deleted}\n";

static const char *const stream_scripts[] = {claim_lua, NULL};

static int stream_init(struct src_redis *sr)
{
    const struct src_redis_cfg *cfg = sr->cfg;

    sr->group = cfg->group != NULL ? cfg->group : "switchyard";
    if (cfg->consumer != NULL) {
        sr->consumer = strdup(cfg->consumer);
    } else {
        char host[256];

        if (gethostname(host, sizeof(host)) != 0)
            snprintf(host, sizeof(host), "switchyard");
        host[sizeof(host) - 1] = '\0';
        if (asprintf(&sr->consumer, "%s-%ld", host, (long)getpid()) < 0)
            sr->consumer = NULL;
    }
    if (sr->consumer == NULL)
        return SY_ENOMEM;
    src_redis_sha1(claim_lua, sr->sha_claim);
    sr->reclaim_period_ms = sr->vis_ms / 4;
    if (sr->reclaim_period_ms < 100)
        sr->reclaim_period_ms = 100;
    if (sr->reclaim_period_ms > 5000)
        sr->reclaim_period_ms = 5000;
    snprintf(sr->cursor, sizeof(sr->cursor), "0-0");
    sr->next_reclaim_ms = 0;
    return 0;
}

static void stream_fini(struct src_redis *sr)
{
    free(sr->consumer);
    sr->consumer = NULL;
}

static void add_group_create(struct src_redis *sr, struct src_redis_argv *a)
{
    src_redis_argv_adds(a, "XGROUP");
    src_redis_argv_adds(a, "CREATE");
    src_redis_argv_add(a, sr->key, sr->key_len);
    src_redis_argv_adds(a, sr->group);
    src_redis_argv_adds(a, sr->cfg->starting_position == SRC_REDIS_START_LATEST ? "$" : "0");
    src_redis_argv_adds(a, "MKSTREAM");
}

static void stream_setup(struct src_redis *sr)
{
    struct src_redis_argv a = {0};

    add_group_create(sr, &a);
    src_redis_setup_cmd(sr, &a, "BUSYGROUP");
    src_redis_argv_free(&a);
}

static void stream_reset(struct src_redis *sr)
{
    snprintf(sr->cursor, sizeof(sr->cursor), "0-0");
    sr->next_reclaim_ms = 0;
}

/* ---- entries to records ------------------------------------------------------------------- */

static int64_t id_ms(const char *id)
{
    return strtoll(id, NULL, 10); /* "<ms>-<seq>" */
}

/* Field I (name or value) of FIELDS, or NULL. */
static const redisReply *fld(const redisReply *fields, size_t i)
{
    const redisReply *e = i < fields->elements ? fields->element[i] : NULL;

    return e != NULL && e->type == REDIS_REPLY_STRING ? e : NULL;
}

/*
 * The record for entry E ({id, {field, value...}}) received COUNT times. Returns new; NULL with
 * *BAD set when E is malformed, NULL alone when out of memory.
 */
static struct source_record *entry_record(struct src_redis *sr, const redisReply *e, uint32_t count,
                                          bool *bad)
{
    struct src_redis_attr small[16], *attrs = small;
    struct src_redis_msg m = {0};
    const redisReply *id, *fields;
    struct source_record *rec = NULL;
    size_t nf = 0, body_idx = SIZE_MAX;

    *bad = false;
    if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
        e->element[0]->type != REDIS_REPLY_STRING) {
        *bad = true;
        return NULL;
    }
    id = e->element[0];
    fields = e->element[1];
    if (fields->type == REDIS_REPLY_ARRAY)
        nf = fields->elements / 2;
    for (size_t i = 0; i < 2 * nf; i++)
        if (fld(fields, i) == NULL) {
            *bad = true;
            return NULL;
        }

    m.id = id->str;
    m.id_len = id->len;
    m.count = count;
    m.sent_ms = id_ms(id->str);
    /* A new entry is received now; for a reclaimed one the first receive is unknown, and the
     * time it was added stands in. */
    m.first_ms = count <= 1 ? (int64_t)time_wall_ms() : m.sent_ms;

    if (sr->cfg->body_field != NULL) {
        size_t bl = strlen(sr->cfg->body_field);

        for (size_t i = 0; i < nf && body_idx == SIZE_MAX; i++)
            if (fields->element[2 * i]->len == bl &&
                memcmp(fields->element[2 * i]->str, sr->cfg->body_field, bl) == 0)
                body_idx = i;
    }
    if (body_idx != SIZE_MAX) {
        size_t k = 0;

        m.body = fields->element[2 * body_idx + 1]->str;
        m.body_len = fields->element[2 * body_idx + 1]->len;
        if (nf - 1 > sizeof(small) / sizeof(small[0])) {
            attrs = calloc(nf - 1, sizeof(*attrs));
            if (attrs == NULL)
                return NULL;
        }
        for (size_t i = 0; i < nf; i++) {
            if (i == body_idx)
                continue;
            attrs[k].name = fields->element[2 * i]->str;
            attrs[k].name_len = fields->element[2 * i]->len;
            attrs[k].val = fields->element[2 * i + 1]->str;
            attrs[k].val_len = fields->element[2 * i + 1]->len;
            k++;
        }
        m.attrs = attrs;
        m.n_attrs = k;
    } else if (nf == 1) {
        m.body = fields->element[1]->str;
        m.body_len = fields->element[1]->len;
    } else if (nf > 1) {
        struct buf *b = &sr->body;

        buf_reset(b);
        if (buf_append(b, "{", 1) != 0)
            goto out;
        for (size_t i = 0; i < nf; i++) {
            const redisReply *k = fields->element[2 * i], *v = fields->element[2 * i + 1];

            if (buf_append(b, i ? ",\"" : "\"", i ? 2 : 1) != 0 ||
                buf_json_escape(b, k->str, k->len) != 0 || buf_append(b, "\":\"", 3) != 0 ||
                buf_json_escape(b, v->str, v->len) != 0 || buf_append(b, "\"", 1) != 0)
                goto out;
        }
        if (buf_append(b, "}", 1) != 0)
            goto out;
        m.body = b->data;
        m.body_len = b->len;
    } else {
        m.body = "";
        m.body_len = 0;
    }
    rec = src_redis_record_new(sr, &m);
out:
    if (attrs != small)
        free(attrs);
    return rec;
}

/* Turn ENTRIES[0..N) (each {id, fields} or, from the claim script, {id, fields, count}) into
 * records and deliver them. Malformed entries are skipped; out of memory releases them. */
static void deliver_entries(struct src_redis *sr, const redisReply *entries, bool with_count)
{
    size_t n = entries->elements, got = 0;
    struct source_record **recs = n > 0 ? calloc(n, sizeof(*recs)) : NULL;

    for (size_t i = 0; i < n; i++) {
        const redisReply *e = entries->element[i];
        long long count = 1;
        bool bad;

        if (with_count && e->type == REDIS_REPLY_ARRAY && e->elements >= 3 &&
            e->element[2]->type == REDIS_REPLY_INTEGER)
            count = e->element[2]->integer;
        if (count < 1 || count > UINT32_MAX)
            count = 1;
        if (recs != NULL)
            recs[got] = entry_record(sr, e, (uint32_t)count, &bad);
        if (recs == NULL || recs[got] == NULL) {
            if (recs != NULL && bad) {
                log_warn("%s skipped a malformed stream entry", sr->prefix);
                continue;
            }
            if (e->type == REDIS_REPLY_ARRAY && e->elements >= 1 &&
                e->element[0]->type == REDIS_REPLY_STRING) {
                log_err("%s out of memory building the record for %s; it is released", sr->prefix,
                        e->element[0]->str);
                src_redis_release_id(sr, e->element[0]->str, e->element[0]->len);
            }
            continue;
        }
        got++;
    }
    src_redis_deliver(sr, recs, got);
    free(recs);
}

/* ---- reading ------------------------------------------------------------------------------ */

/* XGROUP CREATE after NOGROUP; the read after it comes from the kick. */
static void on_group_created(struct src_redis *sr, const redisReply *r, void *arg)
{
    sr->fetching = false;
    if (r == NULL)
        return;
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0) {
        src_redis_read_error(sr, "XGROUP CREATE", r);
        return;
    }
    src_redis_kick(sr);
}

static void recreate_group(struct src_redis *sr)
{
    struct src_redis_argv a = {0};

    log_warn("%s the consumer group '%s' of stream '%s' is gone (NOGROUP); creating it again "
             "(from %s)",
             sr->prefix, sr->group, sr->key,
             sr->cfg->starting_position == SRC_REDIS_START_LATEST ? "new entries" : "the start");
    add_group_create(sr, &a);
    if (src_redis_send(sr, &sr->cmd, &a, SRC_REDIS_CMD_TIMEOUT_MS, "XGROUP CREATE",
                       on_group_created, NULL) == 0)
        sr->fetching = true;
    else
        src_redis_read_later(sr, SRC_REDIS_ACK_RETRY_MS, "cannot queue XGROUP CREATE");
    src_redis_argv_free(&a);
}

static void on_claimed(struct src_redis *sr, const redisReply *r, void *arg)
{
    const redisReply *cur, *entries, *deleted;

    sr->fetching = false;
    if (r == NULL)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        if (src_redis_errk(r) == SRC_REDIS_ERRK_NOGROUP)
            recreate_group(sr);
        else
            src_redis_read_error(sr, "the claim script (XAUTOCLAIM)", r);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        (cur = r->element[0])->type != REDIS_REPLY_STRING ||
        (entries = r->element[1])->type != REDIS_REPLY_ARRAY ||
        (deleted = r->element[2])->type != REDIS_REPLY_ARRAY) {
        src_redis_read_later(sr, SRC_REDIS_ACK_RETRY_MS,
                             "the claim script returned an "
                             "unexpected reply");
        return;
    }
    /* "0-0": the pending list was walked to its end; start over at the next reclaim. */
    if (strcmp(cur->str, "0-0") == 0 || cur->len >= sizeof(sr->cursor)) {
        snprintf(sr->cursor, sizeof(sr->cursor), "0-0");
        sr->next_reclaim_ms = time_mono_ms() + sr->reclaim_period_ms;
    } else {
        memcpy(sr->cursor, cur->str, cur->len + 1);
    }
    for (size_t i = 0; i < deleted->elements; i++)
        if (deleted->element[i]->type == REDIS_REPLY_STRING)
            src_redis_ack_id(sr, deleted->element[i]->str, deleted->element[i]->len);
    if (entries->elements > 0)
        log_debug("%s reclaimed %zu idle entries", sr->prefix, entries->elements);
    src_redis_read_ok(sr);
    deliver_entries(sr, entries, true);
    src_redis_kick(sr);
}

static void on_read(struct src_redis *sr, const redisReply *r, void *arg)
{
    const redisReply *s;

    sr->fetching = false;
    if (r == NULL)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        if (src_redis_errk(r) == SRC_REDIS_ERRK_NOGROUP)
            recreate_group(sr);
        else
            src_redis_read_error(sr, "XREADGROUP", r);
        return;
    }
    src_redis_read_ok(sr);
    /* NIL: the block time passed. Else {{key, {{id, {field, value...}}...}}}. */
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
        (s = r->element[0])->type == REDIS_REPLY_ARRAY && s->elements >= 2 &&
        s->element[1]->type == REDIS_REPLY_ARRAY)
        deliver_entries(sr, s->element[1], false);
    src_redis_kick(sr);
}

static void stream_fetch(struct src_redis *sr, size_t n)
{
    int64_t now = time_mono_ms();
    struct src_redis_argv a = {0};
    int rc;

    if (now >= sr->next_reclaim_ms) {
        src_redis_argv_adds(&a, "EVALSHA");
        src_redis_argv_adds(&a, sr->sha_claim);
        src_redis_argv_adds(&a, "1");
        src_redis_argv_add(&a, sr->key, sr->key_len);
        src_redis_argv_adds(&a, sr->group);
        src_redis_argv_adds(&a, sr->consumer);
        src_redis_argv_addf(&a, "%d", sr->vis_ms);
        src_redis_argv_addf(&a, "%zu", n);
        src_redis_argv_adds(&a, sr->cursor);
        rc = src_redis_send(sr, &sr->cmd, &a, SRC_REDIS_CMD_TIMEOUT_MS, "the claim script",
                            on_claimed, NULL);
    } else {
        int64_t block = sr->next_reclaim_ms - now;

        if (block > SRC_REDIS_BLOCK_MAX_MS)
            block = SRC_REDIS_BLOCK_MAX_MS;
        if (block < 1)
            block = 1; /* BLOCK 0 would mean forever */
        src_redis_argv_adds(&a, "XREADGROUP");
        src_redis_argv_adds(&a, "GROUP");
        src_redis_argv_adds(&a, sr->group);
        src_redis_argv_adds(&a, sr->consumer);
        src_redis_argv_adds(&a, "COUNT");
        src_redis_argv_addf(&a, "%zu", n);
        src_redis_argv_adds(&a, "BLOCK");
        src_redis_argv_addf(&a, "%lld", (long long)block);
        src_redis_argv_adds(&a, "STREAMS");
        src_redis_argv_add(&a, sr->key, sr->key_len);
        src_redis_argv_adds(&a, ">");
        rc = src_redis_send(sr, &sr->blk, &a, (int)block + SRC_REDIS_BLOCK_MARGIN_MS, "XREADGROUP",
                            on_read, NULL);
    }
    src_redis_argv_free(&a);
    if (rc == 0)
        sr->fetching = true;
    else if (rc == SY_ENOMEM)
        src_redis_read_later(sr, SRC_REDIS_ACK_RETRY_MS, "out of memory reading");
}

/* ---- acks, heartbeats, releases, stats ---------------------------------------------------- */

static int stream_send_ids(struct src_redis *sr, enum src_redis_op op, char *const *ids, size_t n,
                           src_redis_reply_fn *cb, void *arg)
{
    struct src_redis_argv a = {0};
    const char *what = "XACK";
    int rc;

    if (op == SRC_REDIS_OP_ACK) {
        src_redis_argv_adds(&a, "XACK");
        src_redis_argv_add(&a, sr->key, sr->key_len);
        src_redis_argv_adds(&a, sr->group);
    } else {
        what = op == SRC_REDIS_OP_RELEASE ? "XCLAIM (release)" : "XCLAIM (heartbeat)";
        src_redis_argv_adds(&a, "XCLAIM");
        src_redis_argv_add(&a, sr->key, sr->key_len);
        src_redis_argv_adds(&a, sr->group);
        src_redis_argv_adds(&a, sr->consumer);
        src_redis_argv_adds(&a, "0");
    }
    for (size_t i = 0; i < n; i++)
        src_redis_argv_adds(&a, ids[i]);
    if (op == SRC_REDIS_OP_RELEASE) {
        /* Idle past the visibility timeout: the next XAUTOCLAIM (ours, or another broker's)
         * takes them at once. */
        src_redis_argv_adds(&a, "IDLE");
        src_redis_argv_addf(&a, "%d", sr->vis_ms + 1);
        sr->next_reclaim_ms = 0;
    }
    if (op != SRC_REDIS_OP_ACK)
        src_redis_argv_adds(&a, "JUSTID"); /* JUSTID: the delivery count stays as it is */
    rc = src_redis_send(sr, &sr->cmd, &a, SRC_REDIS_CMD_TIMEOUT_MS, what, cb, arg);
    src_redis_argv_free(&a);
    return rc;
}

/* XINFO GROUPS: {{name, G, consumers, N, pending, N, last-delivered-id, ID, entries-read, N,
 * lag, N|nil}...}; lag = our group's pending + lag (-1 when the server cannot tell). */
static void on_groups(struct src_redis *sr, const redisReply *r, void *arg)
{
    sr->stats_cmds--;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *g = r->element[i];
        long long pending = -1, lag = -1;
        bool ours = false, lag_nil = false;

        if (g->type != REDIS_REPLY_ARRAY)
            continue;
        for (size_t j = 0; j + 1 < g->elements; j += 2) {
            const redisReply *k = g->element[j], *v = g->element[j + 1];

            if (k->type != REDIS_REPLY_STRING)
                continue;
            if (strcmp(k->str, "name") == 0)
                ours = v->type == REDIS_REPLY_STRING && strcmp(v->str, sr->group) == 0;
            else if (strcmp(k->str, "pending") == 0 && v->type == REDIS_REPLY_INTEGER)
                pending = v->integer;
            else if (strcmp(k->str, "lag") == 0 && v->type == REDIS_REPLY_INTEGER)
                lag = v->integer;
            else if (strcmp(k->str, "lag") == 0)
                lag_nil = true; /* Redis cannot tell (entries were deleted) */
        }
        if (!ours)
            continue;
        sr->lag = pending < 0 || lag_nil ? -1 : pending + (lag > 0 ? lag : 0);
        sr->inflight_n = pending;
        return;
    }
}

static void stream_stats(struct src_redis *sr)
{
    struct src_redis_argv a = {0};

    src_redis_argv_adds(&a, "XINFO");
    src_redis_argv_adds(&a, "GROUPS");
    src_redis_argv_add(&a, sr->key, sr->key_len);
    if (src_redis_send(sr, &sr->cmd, &a, SRC_REDIS_CMD_TIMEOUT_MS, "XINFO GROUPS", on_groups,
                       NULL) == 0)
        sr->stats_cmds++;
    src_redis_argv_free(&a);
}

const struct src_redis_mode src_redis_stream_mode = {
    .name = "stream",
    .scripts = stream_scripts,
    .init = stream_init,
    .fini = stream_fini,
    .setup = stream_setup,
    .fetch = stream_fetch,
    .send_ids = stream_send_ids,
    .stats = stream_stats,
    .reset = stream_reset,
};
