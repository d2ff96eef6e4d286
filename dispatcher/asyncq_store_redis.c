/*
 * dispatcher/asyncq_store_redis.c - the shared async queue on a Redis Stream with a consumer
 * group (asyncq_int.h): `broker.async_queue: redis://HOST:PORT/KEY`. Several brokers pointed at
 * the same KEY share one queue with the semantics of the SQLite store (asyncq_store.c).
 *
 * Keys (KEY is the configured key):
 *   KEY               the stream; one entry per stored event, fields id, fn, payload, trace_id,
 *                     enqueued_ms, next_ms, attempts, state (what the event was inserted with)
 *   KEY:ev:<entry>    a hash with what changed since (next_ms, attempts, state, outcome,
 *                     history); it wins over the entry's fields when an event is claimed
 *   KEY:dead          hash: request id -> the dead row as JSON (id, fn, payload, trace_id,
 *                     enqueued_ms, failed_ms, attempts, condition, error_type, error_message,
 *                     history)
 *   KEY:dead:idx      sorted set of request ids by failed_ms (list order: failed_ms, then id)
 *   KEY:dead:fnof     hash: request id -> function name
 *   KEY:dead:fn:<fn>  sorted set of the request ids of one function, by failed_ms
 * Consumer group "switchyard" (created at 0 with MKSTREAM, again whenever Redis lost it); this
 * broker's consumer is "<hostname>-<pid>-<random>".
 *
 * Who holds an event: the broker whose consumer has its entry pending. New entries reach
 * whichever broker reads them first (XREADGROUP ... >, possibly the broker that inserted them),
 * and come to the loop as AQJ_INTAKE jobs. A broker that dies leaves its entries pending; once
 * they have been idle for the claim timeout the other brokers take them over with XAUTOCLAIM
 * (every claim tick) and hand them to their loops the same way, merged with their KEY:ev hash,
 * so attempts, history and a recorded outcome (state 1: deliveries pending) survive. A live
 * broker keeps its entries from going idle with a heartbeat (XCLAIM to itself, JUSTID) every
 * third of the claim timeout, as an event may wait minutes for a retry. On a graceful stop the
 * entries it still holds are released (their idle time set to the claim timeout), so the others
 * claim them at their next tick instead of after the timeout.
 *
 * Why a hash for changes instead of re-adding the entry: a new entry would get a new id that
 * XREADGROUP hands to whichever broker reads next, while this broker still holds the event in
 * memory (and making it pending for this consumer with XCLAIM FORCE does not stop XREADGROUP
 * from re-delivering it, since the group's last-delivered id is behind it). The entry stays put
 * and pending; only the hash changes.
 *
 * Jobs (one thread of our own, like the SQLite store: jobs in, done list out + eventfd):
 *   INSERT   XADD; the job completes on the reply (the 202 is sent after the event is in
 *            Redis). It fails fast (SY_EIO, SY_ENOSPC for Redis' OOM error) and is never
 *            retried: no 202 for an unstored event. The loop must not hold an event inserted
 *            here (asyncq.c's put_done frees it after the callback): it comes back by INTAKE
 *            to whichever broker reads it, otherwise it would run twice.
 *   RETRY    one Lua script: HSET KEY:ev:<entry> attempts/next_ms/history (only while the
 *            entry exists, so a late write never leaves a stray hash)
 *   OUTCOME  the same with state 1 + outcome; plus the dead row when set, in the same script
 *   DELETE   one script: XACK + XDEL + DEL KEY:ev:<entry> + the dead row when set; the event
 *            leaves the queue only now (at-least-once)
 *   DLQ_*    scripts over the dead keys; result JSON exactly as asyncq_store.c's. REDRIVE adds
 *            fresh entries (attempts 0, enqueued now) and returns no rows: they arrive by
 *            INTAKE like any new event.
 * The loop names events by request id; the thread keeps a map request id -> entry id of what it
 * handed out (removed by DELETE). A job for an id it does not hold only writes its dead row.
 * Write jobs other than INSERT that fail (Redis down, an error reply) are retried with backoff
 * until they succeed, bounded at stop by the stop timeout. The job scripts run with allow-oom:
 * recording an outcome and removing a finished event must work when Redis is full.
 *
 * Connections: blocking hiredis, two of them. W runs the jobs and the periodic commands with a
 * command timeout. R carries one XREADGROUP ... BLOCK at a time; its reply is read when poll()
 * says the socket is readable, and the same poll() waits on an eventfd that submit() writes, so
 * a job is never delayed by a blocking read. Lost connections are re-made with backoff
 * (250 ms doubling to 5 s); while W is down INSERT jobs fail at once.
 *
 * Flow control: the thread reads (and claims) only while this broker holds fewer than
 * READ_AHEAD events (the larger of its own count and the loop's note_held()) and less than
 * READ_AHEAD_BYTES of payload. Events waiting for a retry delay count as held: a broker full of
 * them reads nothing new until they run.
 *
 * Environment: SWITCHYARD_REDIS_CLAIM_IDLE_MS (default 30000, 500..3600000) is how long an
 * entry must be idle before another broker claims it; tests lower it. Every broker sharing a
 * queue should use the same value.
 *
 * Durability is Redis': the 202 means the entry is in Redis' memory; run Redis with
 * appendonly yes (appendfsync everysec or always) for it to survive a Redis restart.
 *
 * Limits: a request id enqueued twice while both copies are held by one broker shares one map
 * slot per copy (jobs resolve to the oldest). An event whose function this broker does not
 * declare is left pending and unheld (claimed again after the timeout, possibly by a broker
 * that declares it). A poison event that kills every broker keeps being claimed.
 */
#include "asyncq_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "core/evhelp.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/time.h"
#include "config/config.h"

#define RSTORE_MAGIC 0x41515244u /* "AQRD" */
#define GROUP "switchyard"
#define READ_AHEAD 256               /* events held before reading stops */
#define READ_AHEAD_BYTES (64u << 20) /* payload bytes held before reading stops */
#define READ_COUNT 32                /* entries per XREADGROUP */
#define READ_BLOCK_MS 2000           /* XREADGROUP BLOCK */
#define CONNECT_TIMEOUT_MS 1000
#define CMD_TIMEOUT_MS 5000
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 5000
#define CLAIM_IDLE_DEFAULT_MS 30000
#define CLAIM_BATCH 100   /* entries per XAUTOCLAIM */
#define CLAIM_ROUNDS 10   /* XAUTOCLAIM calls per tick at most */
#define BEAT_CHUNK 500    /* entry ids per heartbeat script */
#define PIPE_MAX_JOBS 256 /* write jobs per pipeline */
#define PIPE_MAX_BYTES (8u << 20)
#define DLQ_CHUNK 100                  /* dead rows per redrive / purge script */
#define CONSUMER_GC_MS 60000           /* how often dead consumers are looked for */
#define CONSUMER_GC_MIN_IDLE_MS 600000 /* a consumer with nothing pending idle this long goes */
#define HELD_BUCKETS 1024
#define WARNED_MAX 64

/* An event handed to the loop: its request id and stream entry id. Store thread only. */
struct held {
    char rid[40];
    char eid[48];
    size_t bytes;
    int lost;                 /* no longer pending for us: not heartbeated any more */
    struct held *hnext;       /* bucket chain, oldest first */
    struct held *prev, *next; /* every held event */
};

struct aq_store {
    unsigned magic;
    /* configuration (immutable after open) */
    char *host;
    int port;
    char *key;
    size_t keylen;
    char *k_ev_pfx, *k_dead, *k_idx, *k_fnof, *k_fn_pfx; /* derived key names */
    char consumer[160];
    int64_t claim_idle_ms;
    /* The function names this broker runs (the file's, and those the API created, declared by
     * the loop as the queue first meets them): the store thread takes only their events.
     * Under fns_mu (a lock of its own: held only for a scan or an append). */
    pthread_mutex_t fns_mu;
    char **fns;
    size_t n_fns, cap_fns;
    /* shared with the loop, under mu */
    struct aq_mailbox mb; /* jobs in and out; mb.mu also guards stopping */
    int stopping;
    int64_t stop_deadline_ms;
    int wake_fd; /* ours: submit()/stop()/note_held() write it */
    atomic_uint loop_held;
    atomic_int throttled; /* the thread stopped reading for flow control */
    /* store thread only */
    redisContext *w, *r;
    int64_t w_retry_at, r_retry_at;
    int w_backoff, r_backoff;
    int down;       /* W is down and that was logged */
    int r_down;     /* R is down and that was logged */
    int need_group; /* Redis said NOGROUP: create the group again */
    char lasterr[200];
    int reading; /* an XREADGROUP is outstanding on R */
    int64_t read_sent_ms;
    int64_t next_claim_ms, next_beat_ms, next_gc_ms;
    struct held *buckets[HELD_BUCKETS];
    struct held *all;
    size_t n_held, held_bytes;
    char *warned[WARNED_MAX];
    size_t n_warned;
};

/* clang-format off */
/*
 * The write-job script. KEYS: stream, KEY:ev:<entry>, KEY:dead, KEY:dead:idx, KEY:dead:fnof.
 * ARGV: mode ('u' update, 'd' delete), group, entry id ('' when unknown), N, N field/value
 * pairs, then optionally the dead row: id, JSON, failed_ms, fn, KEY:dead:fn: prefix.
 */
static const char script_job[] =
    "#!lua flags=allow-oom\n"
    "local mode, e, n = ARGV[1], ARGV[3], tonumber(ARGV[4])\n"
    "if e ~= '' then\n"
    "  if mode == 'd' then\n"
    "    redis.call('XACK', KEYS[1], ARGV[2], e)\n"
    "    redis.call('XDEL', KEYS[1], e)\n"
    "    redis.call('DEL', KEYS[2])\n"
    "  elseif n > 0 and #redis.call('XRANGE', KEYS[1], e, e) > 0 then\n"
    "    redis.call('HSET', KEYS[2], unpack(ARGV, 5, 4 + 2 * n))\n"
    "  end\n"
    "end\n"
    "local i = 5 + 2 * n\n"
    "if ARGV[i] then\n"
    "  local id, fn, pfx = ARGV[i], ARGV[i + 3], ARGV[i + 4]\n"
    "  local old = redis.call('HGET', KEYS[5], id)\n"
    "  if old and old ~= fn then redis.call('ZREM', pfx .. old, id) end\n"
    "  redis.call('HSET', KEYS[3], id, ARGV[i + 1])\n"
    "  redis.call('ZADD', KEYS[4], ARGV[i + 2], id)\n"
    "  redis.call('HSET', KEYS[5], id, fn)\n"
    "  redis.call('ZADD', pfx .. fn, ARGV[i + 2], id)\n"
    "end\n"
    "return 1\n";

/*
 * Dead rows matching a filter: {total, JSON...}. KEYS: KEY:dead, KEY:dead:fnof, the sorted set
 * to page (KEY:dead:idx or KEY:dead:fn:<fn>). ARGV: id ('' any), fn ('' any), offset, limit.
 */
static const char script_select[] =
    "local id, fn, off, lim = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "if id ~= '' then\n"
    "  local j = redis.call('HGET', KEYS[1], id)\n"
    "  if not j or (fn ~= '' and redis.call('HGET', KEYS[2], id) ~= fn) then return {0} end\n"
    "  if lim > 0 and off == 0 then return {1, j} end\n"
    "  return {1}\n"
    "end\n"
    "local out = {redis.call('ZCARD', KEYS[3])}\n"
    "if lim > 0 then\n"
    "  for _, x in ipairs(redis.call('ZRANGE', KEYS[3], off, off + lim - 1)) do\n"
    "    local j = redis.call('HGET', KEYS[1], x)\n"
    "    if j then out[#out + 1] = j end\n"
    "  end\n"
    "end\n"
    "return out\n";

/* The ids a DLQ write op works on (shared head of the redrive and purge scripts). */
#define SCRIPT_PICK                                                                                \
    "local id, fn, skip, lim = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])\n"          \
    "local function match(x)\n"                                                                   \
    "  return redis.call('HEXISTS', KEYS[1], x) == 1 and\n"                                       \
    "         (fn == '' or redis.call('HGET', KEYS[2], x) == fn)\n"                               \
    "end\n"                                                                                       \
    "local ids = {}\n"                                                                             \
    "if id ~= '' then\n"                                                                           \
    "  if match(id) then ids[1] = id end\n"                                                        \
    "else\n"                                                                                       \
    "  ids = redis.call('ZRANGE', KEYS[3], skip, skip + lim - 1)\n"                                \
    "end\n"                                                                                        \
    "local function forget(x)\n"                                                                   \
    "  local g = redis.call('HGET', KEYS[2], x)\n"                                                 \
    "  redis.call('HDEL', KEYS[1], x)\n"                                                           \
    "  redis.call('HDEL', KEYS[2], x)\n"                                                           \
    "  redis.call('ZREM', KEYS[4], x)\n"                                                           \
    "  redis.call('ZREM', KEYS[3], x)\n"                                                           \
    "  if g then redis.call('ZREM', ARGV[6] .. g, x) end\n"                                        \
    "end\n"                                                                                        \
    "local function left()\n"                                                                      \
    "  if id ~= '' then return match(id) and 1 or 0 end\n"                                        \
    "  return redis.call('ZCARD', KEYS[3])\n"                                                      \
    "end\n"

/*
 * Redrive: {redriven, skipped, remaining}. KEYS: KEY:dead, KEY:dead:fnof, the sorted set to
 * page, KEY:dead:idx, the stream. ARGV: id, fn, skip (rows that could not be read), limit,
 * now (ms), KEY:dead:fn: prefix.
 */
static const char script_redrive[] =
    SCRIPT_PICK
    "local n, bad = 0, 0\n"
    "for _, x in ipairs(ids) do\n"
    "  local j = redis.call('HGET', KEYS[1], x)\n"
    "  local ok, d = pcall(cjson.decode, j or '')\n"
    "  if ok and type(d) == 'table' and type(d.fn) == 'string' and type(d.payload) == 'string'\n"
    "  then\n"
    "    local f = {KEYS[5], '*', 'id', x, 'fn', d.fn, 'payload', d.payload}\n"
    "    if type(d.trace_id) == 'string' then\n"
    "      f[#f + 1] = 'trace_id'; f[#f + 1] = d.trace_id\n"
    "    end\n"
    "    for _, v in ipairs({'enqueued_ms', ARGV[5], 'next_ms', ARGV[5], 'attempts', '0',\n"
    "                        'state', '0'}) do f[#f + 1] = v end\n"
    "    redis.call('XADD', unpack(f))\n"
    "    forget(x)\n"
    "    n = n + 1\n"
    "  else\n"
    "    bad = bad + 1\n"
    "  end\n"
    "end\n"
    "return {n, bad, left()}\n";

/* Purge: {purged, remaining}. KEYS and ARGV as for redrive (no stream, ARGV[5] unused). */
static const char script_purge[] =
    SCRIPT_PICK
    "for _, x in ipairs(ids) do forget(x) end\n"
    "return {#ids, left()}\n";

/*
 * Heartbeat: the entries among ARGV[3..] still pending for consumer ARGV[2] get their idle time
 * reset; returns the others (lost). KEYS: stream; ARGV[1] group.
 */
static const char script_beat[] =
    "local mine, lost = {}, {}\n"
    "for i = 3, #ARGV do\n"
    "  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)\n"
    "  if p[1] and p[1][2] == ARGV[2] then mine[#mine + 1] = ARGV[i]\n"
    "  else lost[#lost + 1] = ARGV[i] end\n"
    "end\n"
    "if #mine > 0 then\n"
    "  local a = {KEYS[1], ARGV[1], ARGV[2], 0}\n"
    "  for _, e in ipairs(mine) do a[#a + 1] = e end\n"
    "  a[#a + 1] = 'JUSTID'\n"
    "  redis.call('XCLAIM', unpack(a))\n"
    "end\n"
    "return lost\n";

/*
 * Release at stop: every entry pending for consumer ARGV[2] gets idle time ARGV[3] ms, so the
 * other brokers claim it at their next tick. Returns how many. KEYS: stream; ARGV[1] group.
 */
static const char script_release[] =
    "local n, start = 0, '-'\n"
    "while true do\n"
    "  local p = redis.call('XPENDING', KEYS[1], ARGV[1], start, '+', 500, ARGV[2])\n"
    "  for _, e in ipairs(p) do\n"
    "    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, e[1], 'IDLE', ARGV[3], 'JUSTID')\n"
    "    n = n + 1\n"
    "  end\n"
    "  if #p < 500 then return n end\n"
    "  start = '(' .. p[#p][1]\n"
    "end\n";

/*
 * Forget consumers with nothing pending: ARGV[2] itself when ARGV[3] is 'self', else the others
 * idle for at least ARGV[3] ms. Atomic, so a consumer that just read something is never
 * deleted with its entries. KEYS: stream; ARGV[1] group.
 */
static const char script_gc[] =
    "local n = 0\n"
    "for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do\n"
    "  local f = {}\n"
    "  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end\n"
    "  local drop\n"
    "  if ARGV[3] == 'self' then drop = f.name == ARGV[2]\n"
    "  else drop = f.name ~= ARGV[2] and f.idle >= tonumber(ARGV[3]) end\n"
    "  if drop and f.pending == 0 then\n"
    "    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f.name)\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n";
/* clang-format on */

/* ---- small helpers ------------------------------------------------------------------------ */

/* Signed, for arithmetic with stored times. */
static int64_t wall_ms(void)
{
    return (int64_t)time_wall_ms();
}

static char *strfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *strfmt(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;

    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

static int is_str(const redisReply *r)
{
    return r != NULL && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

static int is_err(const redisReply *r, const char *prefix)
{
    return r != NULL && r->type == REDIS_REPLY_ERROR && r->str != NULL &&
           (prefix == NULL || strstr(r->str, prefix) != NULL);
}

/* ---- commands: an argv that may borrow or own its strings --------------------------------- */

struct cmd {
    int argc, cap;
    const char **argv;
    size_t *len;
    char **own;
    int oom;
};

static void cmd_add(struct cmd *c, const void *s, size_t len)
{
    if (c->oom)
        return;
    if (c->argc == c->cap) {
        int ncap = c->cap ? c->cap * 2 : 32;
        const char **na = realloc(c->argv, (size_t)ncap * sizeof(*na));
        size_t *nl;
        char **no;

        if (na == NULL) {
            c->oom = 1;
            return;
        }
        c->argv = na;
        nl = realloc(c->len, (size_t)ncap * sizeof(*nl));
        if (nl == NULL) {
            c->oom = 1;
            return;
        }
        c->len = nl;
        no = realloc(c->own, (size_t)ncap * sizeof(*no));
        if (no == NULL) {
            c->oom = 1;
            return;
        }
        c->own = no;
        c->cap = ncap;
    }
    c->argv[c->argc] = s != NULL ? s : "";
    c->len[c->argc] = s != NULL ? len : 0;
    c->own[c->argc] = NULL;
    c->argc++;
}

static void cmd_str(struct cmd *c, const char *s)
{
    cmd_add(c, s, s != NULL ? strlen(s) : 0);
}

/* Add S, which the command takes (freed with it); NULL means out of memory. */
static void cmd_take(struct cmd *c, char *s)
{
    if (s == NULL) {
        c->oom = 1;
        return;
    }
    cmd_str(c, s);
    if (c->oom)
        free(s);
    else
        c->own[c->argc - 1] = s;
}

static void cmd_i64(struct cmd *c, int64_t v)
{
    cmd_take(c, strfmt("%lld", (long long)v));
}

static void cmd_free(struct cmd *c)
{
    for (int i = 0; i < c->argc; i++)
        free(c->own[i]);
    free(c->argv);
    free(c->len);
    free(c->own);
    memset(c, 0, sizeof(*c));
}

/* ---- the map of held events --------------------------------------------------------------- */

static unsigned rid_hash(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % HELD_BUCKETS;
}

static struct held *held_find(struct aq_store *st, const char *rid, const char *eid)
{
    for (struct held *h = st->buckets[rid_hash(rid)]; h != NULL; h = h->hnext) {
        if (strcmp(h->rid, rid) == 0 && (eid == NULL || strcmp(h->eid, eid) == 0))
            return h;
    }
    return NULL;
}

static int held_add(struct aq_store *st, const char *rid, const char *eid, size_t bytes)
{
    struct held *h = calloc(1, sizeof(*h)), **pp;

    if (h == NULL)
        return SY_ENOMEM;
    snprintf(h->rid, sizeof(h->rid), "%s", rid);
    snprintf(h->eid, sizeof(h->eid), "%s", eid);
    h->bytes = bytes;
    /* At the end of its chain: a duplicate request id resolves to the oldest entry. */
    for (pp = &st->buckets[rid_hash(rid)]; *pp != NULL; pp = &(*pp)->hnext)
        ;
    *pp = h;
    h->next = st->all;
    if (st->all != NULL)
        st->all->prev = h;
    st->all = h;
    st->n_held++;
    st->held_bytes += bytes;
    return 0;
}

static void held_remove(struct aq_store *st, struct held *h)
{
    struct held **pp;

    for (pp = &st->buckets[rid_hash(h->rid)]; *pp != NULL && *pp != h; pp = &(*pp)->hnext)
        ;
    if (*pp == h)
        *pp = h->hnext;
    if (h->prev != NULL)
        h->prev->next = h->next;
    else
        st->all = h->next;
    if (h->next != NULL)
        h->next->prev = h->prev;
    st->n_held--;
    st->held_bytes -= h->bytes;
    free(h);
}

/* How many more events the thread may read or claim now (0: none). */
static int room_for(struct aq_store *st)
{
    unsigned loop = atomic_load(&st->loop_held);
    size_t held = st->n_held > loop ? st->n_held : loop;

    if (held >= READ_AHEAD || st->held_bytes >= READ_AHEAD_BYTES)
        return 0;
    return (int)(READ_AHEAD - held);
}

/* ---- connections -------------------------------------------------------------------------- */

/* A connected context with timeouts set, or NULL with WHY filled. */
static redisContext *rd_connect(struct aq_store *st, int cmd_timeout_ms, char *why, size_t n)
{
    redisContext *c = redisConnectWithTimeout(st->host, st->port, evhelp_tv_ms(CONNECT_TIMEOUT_MS));
    int fl;

    if (c == NULL) {
        snprintf(why, n, "out of memory");
        return NULL;
    }
    if (c->err != 0 || redisSetTimeout(c, evhelp_tv_ms(cmd_timeout_ms)) != REDIS_OK) {
        snprintf(why, n, "%s", c->errstr[0] ? c->errstr : "cannot connect");
        redisFree(c);
        return NULL;
    }
    redisEnableKeepAlive(c);
    /* Execution environments are forked from the loop thread: never leak the socket into one. */
    fl = fcntl(c->fd, F_GETFD);
    if (fl >= 0)
        fcntl(c->fd, F_SETFD, fl | FD_CLOEXEC);
    return c;
}

/* XGROUP CREATE ... MKSTREAM on C (an existing group is fine). Returns 0, or -1 with WHY. */
static int group_create(struct aq_store *st, redisContext *c, char *why, size_t n)
{
    redisReply *r = redisCommand(c, "XGROUP CREATE %b %s 0 MKSTREAM", st->key, st->keylen, GROUP);
    int rc = 0;

    if (r == NULL) {
        snprintf(why, n, "%s", c->errstr[0] ? c->errstr : "connection lost");
        return -1;
    }
    if (r->type == REDIS_REPLY_ERROR && !is_err(r, "BUSYGROUP")) {
        snprintf(why, n, "XGROUP CREATE: %s", r->str);
        rc = -1;
    }
    freeReplyObject(r);
    return rc;
}

/* Drop W after a failure (WHY is copied before the context goes) and schedule a reconnect. */
static void w_lost(struct aq_store *st, const char *why)
{
    char msg[sizeof(st->lasterr)];

    snprintf(msg, sizeof(msg), "%s", why != NULL && why[0] ? why : "connection lost");
    if (st->w != NULL) {
        redisFree(st->w);
        st->w = NULL;
    }
    snprintf(st->lasterr, sizeof(st->lasterr), "%s", msg);
    st->w_retry_at = time_mono_ms() + st->w_backoff;
    st->w_backoff = st->w_backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : st->w_backoff * 2;
    if (!st->down) {
        log_err("[asyncq] redis %s:%d: %s; new events are refused (5xx) and recorded outcomes "
                "wait until it is back",
                st->host, st->port, msg);
        st->down = 1;
    }
}

/* W connected (and the group made when needed). Returns 0, or -1 (backing off; lasterr). */
static int w_ready(struct aq_store *st)
{
    char why[sizeof(st->lasterr)];

    if (st->w != NULL)
        return 0;
    if (time_mono_ms() < st->w_retry_at)
        return -1;
    st->w = rd_connect(st, CMD_TIMEOUT_MS, why, sizeof(why));
    if (st->w != NULL && group_create(st, st->w, why, sizeof(why)) != 0) {
        redisFree(st->w);
        st->w = NULL;
    }
    if (st->w == NULL) {
        w_lost(st, why);
        return -1;
    }
    st->need_group = 0;
    st->w_backoff = BACKOFF_MIN_MS;
    if (st->down) {
        log_info("[asyncq] redis %s:%d is reachable again", st->host, st->port);
        st->down = 0;
        /* Refresh what we hold before anyone's claim tick finds it idle. */
        st->next_beat_ms = 0;
    }
    return 0;
}

/* One command on W. Returns the reply (freeReplyObject), or NULL when W failed (dropped). */
static redisReply *w_cmd(struct aq_store *st, const struct cmd *c)
{
    redisReply *r;

    if (c->oom || w_ready(st) != 0)
        return NULL;
    r = redisCommandArgv(st->w, c->argc, c->argv, c->len);
    if (r == NULL)
        w_lost(st, st->w->errstr);
    return r;
}

static void r_close(struct aq_store *st)
{
    if (st->r != NULL)
        redisFree(st->r);
    st->r = NULL;
    st->reading = 0;
}

static void r_lost(struct aq_store *st, const char *why)
{
    if (!st->down && !st->r_down)
        log_warn("[asyncq] redis %s:%d: reading the queue: %s; reconnecting", st->host, st->port,
                 why != NULL && why[0] ? why : "connection lost");
    st->r_down = 1;
    r_close(st);
    st->r_retry_at = time_mono_ms() + st->r_backoff;
    st->r_backoff = st->r_backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : st->r_backoff * 2;
}

/* ---- the loop side: job lists ------------------------------------------------------------- */

static void wake_thread(struct aq_store *st)
{
    uint64_t one = 1;

    if (write(st->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_err("[asyncq] cannot wake the store thread: %s", strerror(errno));
}

/* ---- entries -> rows ---------------------------------------------------------------------- */

static int parse_i64(const redisReply *v, int64_t *out)
{
    char buf[32], *end;
    long long x;

    if (!is_str(v) || v->len == 0 || v->len >= sizeof(buf))
        return -1;
    memcpy(buf, v->str, v->len);
    buf[v->len] = '\0';
    errno = 0;
    x = strtoll(buf, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = x;
    return 0;
}

/* *DST = a copy of V (NULL for an empty string when EMPTY_NULL). Returns 0 or SY_ENOMEM. */
static int set_str(char **dst, const redisReply *v, int empty_null)
{
    char *s;

    free(*dst);
    *dst = NULL;
    if (v->len == 0 && empty_null)
        return 0;
    s = malloc(v->len + 1);
    if (s == NULL)
        return SY_ENOMEM;
    memcpy(s, v->str, v->len);
    s[v->len] = '\0';
    *dst = s;
    return 0;
}

/*
 * Apply field/value pairs (an entry's fields, or its state hash when STATE_ONLY) to ROW.
 * Returns 0, 1 when a value is malformed, or SY_ENOMEM.
 */
static int row_apply(struct aq_row *row, const redisReply *kv, int state_only)
{
    if (kv == NULL || kv->type != REDIS_REPLY_ARRAY || kv->elements % 2 != 0)
        return 1;
    for (size_t i = 0; i + 1 < kv->elements; i += 2) {
        const redisReply *k = kv->element[i], *v = kv->element[i + 1];
        int64_t x;
        int rc = 0;

        if (!is_str(k) || !is_str(v))
            return 1;
        if (!state_only && strcmp(k->str, "id") == 0) {
            if (v->len == 0 || v->len >= sizeof(row->id))
                return 1;
            memcpy(row->id, v->str, v->len);
            row->id[v->len] = '\0';
        } else if (!state_only && strcmp(k->str, "fn") == 0) {
            rc = set_str(&row->fn, v, 0);
        } else if (!state_only && strcmp(k->str, "payload") == 0) {
            rc = set_str(&row->payload, v, 0);
            row->len = v->len;
        } else if (!state_only && strcmp(k->str, "trace_id") == 0) {
            rc = set_str(&row->trace_id, v, 1);
        } else if (!state_only && strcmp(k->str, "enqueued_ms") == 0) {
            if (parse_i64(v, &row->enqueued_ms) != 0)
                return 1;
        } else if (strcmp(k->str, "next_ms") == 0) {
            if (parse_i64(v, &row->next_ms) != 0)
                return 1;
        } else if (strcmp(k->str, "attempts") == 0) {
            if (parse_i64(v, &x) != 0 || x < 0 || x > 1000000)
                return 1;
            row->attempts = (int)x;
        } else if (strcmp(k->str, "state") == 0) {
            if (parse_i64(v, &x) != 0 || (x != 0 && x != 1))
                return 1;
            row->state = (int)x;
        } else if (strcmp(k->str, "outcome") == 0) {
            rc = set_str(&row->outcome, v, 1);
        } else if (strcmp(k->str, "history") == 0) {
            rc = set_str(&row->history, v, 1);
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* FN is NAME or NAME:VERSION (an event for a published version): the name decides. */
static int fn_declared(struct aq_store *st, const char *fn)
{
    size_t len = strcspn(fn, ":");
    int found = 0;

    pthread_mutex_lock(&st->fns_mu);
    for (size_t i = 0; i < st->n_fns && !found; i++)
        found = strncmp(st->fns[i], fn, len) == 0 && st->fns[i][len] == '\0';
    pthread_mutex_unlock(&st->fns_mu);
    return found;
}

/* Loop thread: take events of function FN too from now on (a function the API created). */
static void redis_declare(struct aq_store *st, const char *fn)
{
    size_t len = strcspn(fn, ":");
    char *name;

    if (fn_declared(st, fn))
        return;
    name = strndup(fn, len);
    pthread_mutex_lock(&st->fns_mu);
    if (name != NULL && st->n_fns == st->cap_fns) {
        size_t cap = st->cap_fns ? st->cap_fns * 2 : 16;
        char **p = realloc(st->fns, cap * sizeof(*p));

        if (p != NULL) {
            st->fns = p;
            st->cap_fns = cap;
        }
    }
    if (name != NULL && st->n_fns < st->cap_fns) {
        st->fns[st->n_fns++] = name;
        name = NULL;
    }
    pthread_mutex_unlock(&st->fns_mu);
    if (name != NULL)
        log_err("[asyncq] out of memory declaring %s: its events stay in the stream for now", fn);
    free(name);
}

/* Log once per function name that events of FN are left for other brokers. */
static void warn_undeclared(struct aq_store *st, const char *fn)
{
    for (size_t i = 0; i < st->n_warned; i++) {
        if (strcmp(st->warned[i], fn) == 0)
            return;
    }
    if (st->n_warned < WARNED_MAX && (st->warned[st->n_warned] = strdup(fn)) != NULL)
        st->n_warned++;
    log_warn("[asyncq] the shared queue has events of function %s, which this broker does not "
             "declare; they are left to brokers that do (claimed again after %lld ms)",
             fn, (long long)st->claim_idle_ms);
}

/*
 * ENTRIES (the array of [entry id, [field, value, ...]] of an XREADGROUP or XAUTOCLAIM reply)
 * -> an INTAKE job for the loop. MERGE: these were claimed, so their state hashes are read too.
 * Malformed entries are acknowledged (left in the stream, never delivered again) and logged.
 * Returns how many events were handed over.
 */
static size_t intake_entries(struct aq_store *st, const redisReply *entries, int merge)
{
    size_t n = entries->elements, k = 0;
    struct aq_row *rows;
    char(*eids)[48];
    struct aq_job *job;
    struct held *mine;

    if (n == 0)
        return 0;
    rows = calloc(n, sizeof(*rows));
    eids = calloc(n, sizeof(*eids));
    if (rows == NULL || eids == NULL) {
        log_err("[asyncq] out of memory reading %zu event(s); they are claimed again later", n);
        free(rows);
        free(eids);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *e = entries->element[i];
        struct aq_row *row = &rows[k];
        int rc;

        if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
            !is_str(e->element[0]) || e->element[0]->len >= sizeof(eids[0]))
            continue;
        if (e->element[1]->type != REDIS_REPLY_ARRAY)
            continue; /* deleted meanwhile */
        rc = row_apply(row, e->element[1], 0);
        if (rc == 0 && (row->id[0] == '\0' || row->fn == NULL || row->payload == NULL))
            rc = 1;
        if (rc == 0 && row->next_ms == 0)
            row->next_ms = row->enqueued_ms;
        if (rc == SY_ENOMEM) {
            log_err("[asyncq] out of memory reading entry %s; it is claimed again later",
                    e->element[0]->str);
        } else if (rc != 0) {
            redisReply *a;

            log_err("[asyncq] entry %s of %s is not an event of this queue; acknowledged and "
                    "left in the stream",
                    e->element[0]->str, st->key);
            a = w_ready(st) == 0 ? redisCommand(st->w, "XACK %b %s %s", st->key, st->keylen, GROUP,
                                                e->element[0]->str)
                                 : NULL;
            if (a == NULL && st->w != NULL)
                w_lost(st, st->w->errstr);
            freeReplyObject(a);
        } else if (!fn_declared(st, row->fn)) {
            warn_undeclared(st, row->fn);
        } else if ((mine = held_find(st, row->id, e->element[0]->str)) != NULL) {
            /* Ours already (claimed back after a late heartbeat): heartbeat it again. */
            mine->lost = 0;
        } else {
            memcpy(eids[k], e->element[0]->str, e->element[0]->len + 1);
            k++;
            continue;
        }
        aq_row_clear(row);
    }
    if (merge && k > 0) {
        /* Read every state hash in one pipeline; without them the rows would lose attempts. */
        int ok = w_ready(st) == 0;

        for (size_t i = 0; ok && i < k; i++)
            ok = redisAppendCommand(st->w, "HGETALL %s%s", st->k_ev_pfx, eids[i]) == REDIS_OK;
        for (size_t i = 0; ok && i < k; i++) {
            redisReply *h = NULL;

            if (redisGetReply(st->w, (void **)&h) != REDIS_OK || h == NULL) {
                w_lost(st, st->w->errstr);
                ok = 0;
                break;
            }
            if (h->type == REDIS_REPLY_ARRAY && row_apply(&rows[i], h, 1) == SY_ENOMEM)
                ok = 0;
            freeReplyObject(h);
        }
        if (!ok) {
            log_err("[asyncq] cannot read the state of %zu claimed event(s); they are claimed "
                    "again after %lld ms",
                    k, (long long)st->claim_idle_ms);
            if (st->w != NULL) /* half-read pipeline replies: start afresh */
                w_lost(st, "pipeline aborted");
            for (size_t i = 0; i < k; i++)
                aq_row_clear(&rows[i]);
            k = 0;
        }
    }
    for (size_t i = 0; i < k; i++) {
        if (held_add(st, rows[i].id, eids[i], rows[i].len) != 0)
            log_err("[asyncq] out of memory tracking %s; it may run twice", rows[i].id);
    }
    job = k > 0 ? calloc(1, sizeof(*job)) : NULL;
    if (job == NULL) {
        /* Untrack them, or the heartbeat would keep them pending here for ever. */
        if (k > 0)
            log_err("[asyncq] out of memory handing %zu event(s) over; they are claimed again "
                    "later",
                    k);
        for (size_t i = 0; i < k; i++) {
            struct held *h = held_find(st, rows[i].id, eids[i]);

            if (h != NULL)
                held_remove(st, h);
            aq_row_clear(&rows[i]);
        }
        free(rows);
        free(eids);
        return 0;
    }
    free(eids);
    job->kind = AQJ_INTAKE;
    job->rows = rows;
    job->n_rows = k;
    aq_mailbox_hand_back(&st->mb, job);
    return k;
}

/* ---- reading: XREADGROUP on R ------------------------------------------------------------- */

/* Send the next XREADGROUP when there is room (else mark the thread throttled). */
static void r_issue(struct aq_store *st)
{
    const char *argv[11];
    size_t len[11];
    char count[16], block[16];
    int room, done = 0;

    atomic_store(&st->throttled, 1);
    room = room_for(st);
    if (room <= 0)
        return;
    atomic_store(&st->throttled, 0);
    if (st->r == NULL) {
        char why[sizeof(st->lasterr)];

        if (time_mono_ms() < st->r_retry_at)
            return;
        st->r = rd_connect(st, READ_BLOCK_MS + CMD_TIMEOUT_MS, why, sizeof(why));
        if (st->r == NULL) {
            r_lost(st, why);
            return;
        }
        st->r_backoff = BACKOFF_MIN_MS;
        st->r_down = 0;
    }
    snprintf(count, sizeof(count), "%d", room < READ_COUNT ? room : READ_COUNT);
    snprintf(block, sizeof(block), "%d", READ_BLOCK_MS);
    argv[0] = "XREADGROUP";
    argv[1] = "GROUP";
    argv[2] = GROUP;
    argv[3] = st->consumer;
    argv[4] = "COUNT";
    argv[5] = count;
    argv[6] = "BLOCK";
    argv[7] = block;
    argv[8] = "STREAMS";
    argv[9] = st->key;
    argv[10] = ">";
    for (int i = 0; i < 11; i++)
        len[i] = i == 9 ? st->keylen : strlen(argv[i]);
    if (redisAppendCommandArgv(st->r, 11, argv, len) != REDIS_OK) {
        r_lost(st, "out of memory");
        return;
    }
    do {
        if (redisBufferWrite(st->r, &done) != REDIS_OK) {
            r_lost(st, st->r->errstr);
            return;
        }
    } while (!done);
    st->reading = 1;
    st->read_sent_ms = time_mono_ms();
}

/* R is readable: take what arrived; on a whole reply, hand its entries over. */
static void r_consume(struct aq_store *st)
{
    redisReply *rep = NULL;

    if (redisBufferRead(st->r) != REDIS_OK ||
        redisGetReplyFromReader(st->r, (void **)&rep) != REDIS_OK) {
        r_lost(st, st->r->errstr);
        return;
    }
    if (rep == NULL)
        return; /* a partial reply */
    st->reading = 0;
    if (rep->type == REDIS_REPLY_ARRAY) {
        /* [[KEY, [entries]]] */
        for (size_t i = 0; i < rep->elements; i++) {
            const redisReply *s = rep->element[i];

            if (s->type == REDIS_REPLY_ARRAY && s->elements == 2 &&
                s->element[1]->type == REDIS_REPLY_ARRAY)
                intake_entries(st, s->element[1], 0);
        }
    } else if (is_err(rep, "NOGROUP")) {
        /* Redis lost the stream (a restart without persistence): make the group again. */
        st->need_group = 1;
        r_close(st);
        st->r_retry_at = time_mono_ms() + BACKOFF_MIN_MS;
    } else if (rep->type == REDIS_REPLY_ERROR) {
        log_err("[asyncq] redis %s:%d: XREADGROUP: %s; retried", st->host, st->port, rep->str);
        r_close(st);
        st->r_retry_at = time_mono_ms() + BACKOFF_MAX_MS;
    }
    freeReplyObject(rep);
}

/* ---- claims, heartbeats, consumer clean-up (on W) ----------------------------------------- */

/* Take over entries idle for the claim timeout (their broker died) while there is room. */
static void claim_tick(struct aq_store *st)
{
    char cursor[48] = "0-0";

    for (int round = 0; round < CLAIM_ROUNDS; round++) {
        int room = room_for(st);
        struct cmd c = {0};
        redisReply *r;
        size_t n;

        if (room <= 0)
            return;
        cmd_str(&c, "XAUTOCLAIM");
        cmd_add(&c, st->key, st->keylen);
        cmd_str(&c, GROUP);
        cmd_str(&c, st->consumer);
        cmd_i64(&c, st->claim_idle_ms);
        cmd_str(&c, cursor);
        cmd_str(&c, "COUNT");
        cmd_i64(&c, room < CLAIM_BATCH ? room : CLAIM_BATCH);
        r = w_cmd(st, &c);
        cmd_free(&c);
        if (r == NULL)
            return;
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 || !is_str(r->element[0]) ||
            r->element[0]->len >= sizeof(cursor) || r->element[1]->type != REDIS_REPLY_ARRAY) {
            if (is_err(r, "NOGROUP"))
                st->need_group = 1;
            else
                log_err("[asyncq] redis %s:%d: XAUTOCLAIM: %s", st->host, st->port,
                        r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
            freeReplyObject(r);
            return;
        }
        memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
        n = intake_entries(st, r->element[1], 1);
        if (n > 0)
            log_info("[asyncq] claimed %zu event(s) idle for %lld ms or more (their broker "
                     "stopped or released them)",
                     n, (long long)st->claim_idle_ms);
        /* Redis 7 drops deleted entries from the PEL and lists them: drop their state too. */
        if (r->elements >= 3 && r->element[2]->type == REDIS_REPLY_ARRAY) {
            for (size_t i = 0; i < r->element[2]->elements && st->w != NULL; i++) {
                redisReply *d;

                if (!is_str(r->element[2]->element[i]))
                    continue;
                d = redisCommand(st->w, "DEL %s%s", st->k_ev_pfx, r->element[2]->element[i]->str);
                if (d == NULL)
                    w_lost(st, st->w->errstr);
                freeReplyObject(d);
            }
        }
        freeReplyObject(r);
        if (strcmp(cursor, "0-0") == 0)
            return;
    }
}

/* Reset the idle time of every entry we hold; those no longer pending for us are marked lost
 * (and logged once). */
static void heartbeat(struct aq_store *st)
{
    struct held *h = st->all;
    size_t lost = 0;

    while (h != NULL) {
        struct cmd c = {0};
        struct held *first = h;
        size_t n = 0;
        redisReply *r;

        cmd_str(&c, "EVAL");
        cmd_str(&c, script_beat);
        cmd_str(&c, "1");
        cmd_add(&c, st->key, st->keylen);
        cmd_str(&c, GROUP);
        cmd_str(&c, st->consumer);
        for (; h != NULL && n < BEAT_CHUNK; h = h->next) {
            if (!h->lost) {
                cmd_str(&c, h->eid);
                n++;
            }
        }
        if (n == 0) {
            cmd_free(&c);
            break;
        }
        r = w_cmd(st, &c);
        cmd_free(&c);
        if (r == NULL)
            return;
        if (r->type == REDIS_REPLY_ARRAY) {
            for (size_t i = 0; i < r->elements; i++) {
                for (struct held *x = first; x != h; x = x->next) {
                    if (is_str(r->element[i]) && strcmp(x->eid, r->element[i]->str) == 0 &&
                        !x->lost) {
                        x->lost = 1;
                        lost++;
                    }
                }
            }
        } else if (is_err(r, "NOGROUP")) {
            st->need_group = 1;
        } else {
            log_err("[asyncq] redis %s:%d: heartbeat: %s", st->host, st->port,
                    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        }
        freeReplyObject(r);
    }
    if (lost > 0)
        log_warn("[asyncq] %zu held event(s) are no longer pending for this broker in redis "
                 "(claimed by another broker after %lld ms without a heartbeat, or lost with "
                 "redis' data); they still run here, maybe twice overall",
                 lost, (long long)st->claim_idle_ms);
}

/* Delete consumers with nothing pending: ourselves (SELF) or long-idle others. */
static void gc_consumers(struct aq_store *st, int self)
{
    struct cmd c = {0};
    redisReply *r;

    cmd_str(&c, "EVAL");
    cmd_str(&c, script_gc);
    cmd_str(&c, "1");
    cmd_add(&c, st->key, st->keylen);
    cmd_str(&c, GROUP);
    cmd_str(&c, st->consumer);
    if (self)
        cmd_str(&c, "self");
    else
        cmd_i64(&c, st->claim_idle_ms * 10 > CONSUMER_GC_MIN_IDLE_MS ? st->claim_idle_ms * 10
                                                                     : CONSUMER_GC_MIN_IDLE_MS);
    r = w_cmd(st, &c);
    cmd_free(&c);
    if (r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer > 0 && !self)
        log_info("[asyncq] removed %lld consumer(s) of stopped brokers from group %s", r->integer,
                 GROUP);
    freeReplyObject(r);
}

/* ---- write jobs --------------------------------------------------------------------------- */

/* S as a JSON string; bytes that are not UTF-8 (a message cut mid-character) become '?'. */
static json_t *json_text(const char *s)
{
    json_t *j;
    char *copy;

    if (s == NULL)
        return json_null();
    j = json_string(s);
    if (j != NULL)
        return j;
    copy = strdup(s);
    if (copy == NULL)
        return json_null();
    for (char *p = copy; *p != '\0'; p++) {
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    }
    j = json_string(copy);
    free(copy);
    return j != NULL ? j : json_null();
}

/* The dead row as stored in KEY:dead (new JSON text), or NULL when out of memory. */
static char *dead_json(const struct aq_row *r, const struct aq_dead *d)
{
    json_t *o = json_object(), *p;
    char *s;

    if (o == NULL)
        return NULL;
    p = json_stringn(r->payload != NULL ? r->payload : "", r->len);
    if (p == NULL) /* not UTF-8; cannot happen for payloads the API accepted as JSON */
        log_err("[asyncq] the payload of dead letter %s is not UTF-8; it is kept without it",
                r->id);
    json_object_set_new(o, "id", json_text(r->id));
    json_object_set_new(o, "fn", json_text(r->fn));
    json_object_set_new(o, "payload", p != NULL ? p : json_null());
    json_object_set_new(o, "trace_id", json_text(r->trace_id));
    json_object_set_new(o, "enqueued_ms", json_integer(r->enqueued_ms));
    json_object_set_new(o, "failed_ms", json_integer(d->failed_ms));
    json_object_set_new(o, "attempts", json_integer(r->attempts));
    json_object_set_new(o, "condition", json_text(d->condition ? d->condition : ""));
    json_object_set_new(o, "error_type", json_text(d->error_type));
    json_object_set_new(o, "error_message", json_text(d->error_message));
    json_object_set_new(o, "history", json_text(r->history));
    s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* The command of a write job. ENTRY is the event's stream entry id ("" when unknown). */
static void job_cmd(struct aq_store *st, const struct aq_job *job, const char *entry, struct cmd *c)
{
    const struct aq_row *r = &job->ev;

    if (job->kind == AQJ_INSERT) {
        cmd_str(c, "XADD");
        cmd_add(c, st->key, st->keylen);
        cmd_str(c, "*");
        cmd_str(c, "id");
        cmd_str(c, r->id);
        cmd_str(c, "fn");
        cmd_str(c, r->fn);
        cmd_str(c, "payload");
        cmd_add(c, r->payload, r->len);
        if (r->trace_id != NULL) {
            cmd_str(c, "trace_id");
            cmd_str(c, r->trace_id);
        }
        cmd_str(c, "enqueued_ms");
        cmd_i64(c, r->enqueued_ms);
        cmd_str(c, "next_ms");
        cmd_i64(c, r->next_ms);
        cmd_str(c, "attempts");
        cmd_i64(c, r->attempts);
        cmd_str(c, "state");
        cmd_i64(c, r->state);
        return;
    }
    cmd_str(c, "EVAL");
    cmd_str(c, script_job);
    cmd_str(c, "5");
    cmd_add(c, st->key, st->keylen);
    cmd_take(c, strfmt("%s%s", st->k_ev_pfx, entry));
    cmd_str(c, st->k_dead);
    cmd_str(c, st->k_idx);
    cmd_str(c, st->k_fnof);
    cmd_str(c, job->kind == AQJ_DELETE ? "d" : "u");
    cmd_str(c, GROUP);
    cmd_str(c, entry);
    if (job->kind == AQJ_RETRY) {
        cmd_str(c, "3");
        cmd_str(c, "attempts");
        cmd_i64(c, r->attempts);
        cmd_str(c, "next_ms");
        cmd_i64(c, r->next_ms);
        cmd_str(c, "history");
        cmd_str(c, r->history);
    } else if (job->kind == AQJ_OUTCOME) {
        cmd_str(c, "4");
        cmd_str(c, "state");
        cmd_str(c, "1");
        cmd_str(c, "outcome");
        cmd_str(c, r->outcome);
        cmd_str(c, "attempts");
        cmd_i64(c, r->attempts);
        cmd_str(c, "history");
        cmd_str(c, r->history);
    } else {
        cmd_str(c, "0");
    }
    if (job->dead != NULL) {
        cmd_str(c, r->id);
        cmd_take(c, dead_json(r, job->dead));
        cmd_i64(c, job->dead->failed_ms);
        cmd_str(c, r->fn);
        cmd_str(c, st->k_fn_pfx);
    }
}

static int is_write(const struct aq_job *job)
{
    return job->kind == AQJ_INSERT || job->kind == AQJ_RETRY || job->kind == AQJ_OUTCOME ||
           job->kind == AQJ_DELETE;
}

/* A write job that could not run: INSERT comes back with RC/WHY, the others wait in *RTAIL. */
static void job_failed(struct aq_job *j, int rc, const char *why, struct aq_job ***dtail,
                       struct aq_job ***rtail)
{
    j->next = NULL;
    if (j->kind == AQJ_INSERT) {
        j->rc = rc;
        snprintf(j->errmsg, sizeof(j->errmsg), "cannot store the event: %.200s", why);
        **dtail = j;
        *dtail = &j->next;
    } else {
        **rtail = j;
        *rtail = &j->next;
    }
}

/*
 * Run the write jobs WRITES in order, pipelined in chunks. Finished jobs are appended at
 * *DTAIL; write jobs that must not fail and did are appended at *RTAIL.
 */
static void run_writes(struct aq_store *st, struct aq_job *writes, struct aq_job ***dtail,
                       struct aq_job ***rtail)
{
    char why[300];

    while (writes != NULL) {
        struct aq_job *chunk = writes, *j;
        size_t n = 0, bytes = 0;
        int lost = 0;

        if (w_ready(st) != 0) {
            snprintf(why, sizeof(why), "redis %s:%d: %s", st->host, st->port, st->lasterr);
            while (writes != NULL) {
                j = writes;
                writes = j->next;
                job_failed(j, SY_EIO, why, dtail, rtail);
            }
            return;
        }
        /* Cut a chunk and send it (each job's command is formatted into hiredis' buffer). */
        for (j = chunk; j != NULL && n < PIPE_MAX_JOBS && bytes < PIPE_MAX_BYTES; j = j->next) {
            struct held *h = j->kind != AQJ_INSERT ? held_find(st, j->ev.id, NULL) : NULL;
            struct cmd c = {0};

            job_cmd(st, j, h != NULL ? h->eid : "", &c);
            j->rc = c.oom || redisAppendCommandArgv(st->w, c.argc, c.argv, c.len) != REDIS_OK
                        ? SY_ENOMEM
                        : 0;
            cmd_free(&c);
            n++;
            bytes += j->ev.len + 256;
        }
        writes = j;
        /* Read the replies in order; a lost connection fails the rest of the chunk. */
        for (size_t i = 0; i < n; i++) {
            redisReply *r = NULL;

            j = chunk;
            chunk = j->next;
            j->next = NULL;
            if (j->rc == SY_ENOMEM) {
                job_failed(j, SY_ENOMEM, "out of memory", dtail, rtail);
                continue;
            }
            if (lost || redisGetReply(st->w, (void **)&r) != REDIS_OK || r == NULL) {
                if (!lost) {
                    snprintf(why, sizeof(why), "redis %s:%d: %s", st->host, st->port,
                             st->w->errstr[0] ? st->w->errstr : "connection lost");
                    w_lost(st, st->w->errstr);
                    lost = 1;
                }
                if (j->kind == AQJ_INSERT) {
                    /* Sent, but no answer: Redis may have stored it. Say so. */
                    char unsure[sizeof(why) + 128];

                    snprintf(unsure, sizeof(unsure),
                             "%s (no answer after the event was sent: it may have been stored, "
                             "and sending it again may run it twice)",
                             why);
                    job_failed(j, SY_EIO, unsure, dtail, rtail);
                } else {
                    job_failed(j, SY_EIO, why, dtail, rtail);
                }
                continue;
            }
            if (r->type == REDIS_REPLY_ERROR) {
                snprintf(why, sizeof(why), "redis %s:%d: %s", st->host, st->port, r->str);
                if (j->kind != AQJ_INSERT)
                    log_err("[asyncq] recording %s of event %s failed: %s; retried",
                            j->kind == AQJ_RETRY     ? "a retry"
                            : j->kind == AQJ_OUTCOME ? "the outcome"
                                                     : "the end",
                            j->ev.id, r->str);
                if (is_err(r, "NOGROUP"))
                    st->need_group = 1;
                job_failed(j, strncmp(r->str, "OOM", 3) == 0 ? SY_ENOSPC : SY_EIO, why, dtail,
                           rtail);
            } else {
                if (j->kind == AQJ_DELETE) {
                    struct held *h = held_find(st, j->ev.id, NULL);

                    if (h != NULL)
                        held_remove(st, h);
                }
                j->rc = 0;
                **dtail = j;
                *dtail = &j->next;
            }
            freeReplyObject(r);
        }
    }
}

/* ---- dead-letter jobs --------------------------------------------------------------------- */

static json_t *iso_ms(json_int_t ms)
{
    char buf[40];

    time_iso8601(buf, (uint64_t)ms);
    return json_string(buf);
}

/* OBJ[KEY] as a JSON string, or null. New reference. */
static json_t *str_or_null(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));

    return s != NULL ? json_string(s) : json_null();
}

/* The sorted set a DLQ op pages through: per function, or all. Returns new. */
static char *dlq_zset(const struct aq_store *st, const struct aq_job *job)
{
    return job->q_fn != NULL ? strfmt("%s%s", st->k_fn_pfx, job->q_fn) : strdup(st->k_idx);
}

/* Run the select script. Returns the reply ([total, json...]) or NULL (JOB's rc/errmsg set). */
static redisReply *dlq_select(struct aq_store *st, struct aq_job *job, size_t offset, size_t limit)
{
    struct cmd c = {0};
    redisReply *r;

    cmd_str(&c, "EVAL");
    cmd_str(&c, script_select);
    cmd_str(&c, "3");
    cmd_str(&c, st->k_dead);
    cmd_str(&c, st->k_fnof);
    cmd_take(&c, dlq_zset(st, job));
    cmd_str(&c, job->q_id ? job->q_id : "");
    cmd_str(&c, job->q_fn ? job->q_fn : "");
    cmd_i64(&c, (int64_t)offset);
    cmd_i64(&c, (int64_t)limit);
    r = w_cmd(st, &c);
    cmd_free(&c);
    if (r != NULL && (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
                      r->element[0]->type != REDIS_REPLY_INTEGER)) {
        job->rc = SY_EIO;
        snprintf(job->errmsg, sizeof(job->errmsg), "dead-letter store: redis %s:%d: %s", st->host,
                 st->port, r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        freeReplyObject(r);
        return NULL;
    }
    if (r == NULL) {
        job->rc = SY_EIO;
        snprintf(job->errmsg, sizeof(job->errmsg), "dead-letter store: redis %s:%d: %s", st->host,
                 st->port, st->lasterr);
    }
    return r;
}

/* Redrive or purge (KIND) in chunks. Returns 0, or -1 (JOB's rc/errmsg set). */
static int dlq_change(struct aq_store *st, struct aq_job *job, json_int_t *done, json_int_t *left)
{
    size_t skip = 0, budget = job->kind == AQJ_DLQ_REDRIVE ? job->limit : SIZE_MAX;

    *done = 0;
    *left = 0;
    for (;;) {
        size_t chunk = budget < DLQ_CHUNK ? budget : DLQ_CHUNK;
        struct cmd c = {0};
        redisReply *r;
        json_int_t n, bad;

        if (chunk == 0) {
            /* LIMIT 0: nothing moves; count what is there. */
            r = dlq_select(st, job, 0, 0);
            if (r == NULL)
                return -1;
            *left = (json_int_t)r->element[0]->integer;
            freeReplyObject(r);
            return 0;
        }
        cmd_str(&c, "EVAL");
        cmd_str(&c, job->kind == AQJ_DLQ_REDRIVE ? script_redrive : script_purge);
        cmd_str(&c, job->kind == AQJ_DLQ_REDRIVE ? "5" : "4");
        cmd_str(&c, st->k_dead);
        cmd_str(&c, st->k_fnof);
        cmd_take(&c, dlq_zset(st, job));
        cmd_str(&c, st->k_idx);
        if (job->kind == AQJ_DLQ_REDRIVE)
            cmd_add(&c, st->key, st->keylen);
        cmd_str(&c, job->q_id ? job->q_id : "");
        cmd_str(&c, job->q_fn ? job->q_fn : "");
        cmd_i64(&c, (int64_t)skip);
        cmd_i64(&c, (int64_t)chunk);
        cmd_i64(&c, wall_ms());
        cmd_str(&c, st->k_fn_pfx);
        r = w_cmd(st, &c);
        cmd_free(&c);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 2) {
            job->rc = SY_EIO;
            snprintf(job->errmsg, sizeof(job->errmsg), "dead-letter store: redis %s:%d: %s",
                     st->host, st->port,
                     r == NULL                      ? st->lasterr
                     : r->type == REDIS_REPLY_ERROR ? r->str
                                                    : "unexpected reply");
            freeReplyObject(r);
            return -1;
        }
        n = (json_int_t)r->element[0]->integer;
        bad = job->kind == AQJ_DLQ_REDRIVE && r->elements >= 3 ? (json_int_t)r->element[1]->integer
                                                               : 0;
        *left = (json_int_t)r->element[r->elements - 1]->integer;
        freeReplyObject(r);
        *done += n;
        if (bad > 0)
            log_err("[asyncq] %lld dead letter(s) in %s cannot be read; skipped", (long long)bad,
                    st->k_dead);
        skip += (size_t)bad;
        if (budget != SIZE_MAX)
            budget -= (size_t)(n + bad) < budget ? (size_t)(n + bad) : budget;
        if (job->q_id != NULL || n + bad == 0 || *left <= (json_int_t)skip || budget == 0)
            return 0;
    }
}

/* A dead-letter job. Sets job->rc/errmsg/result. */
static void run_dlq(struct aq_store *st, struct aq_job *job)
{
    redisReply *r;
    json_int_t total, n, left;

    switch (job->kind) {
    case AQJ_DLQ_COUNT:
        r = dlq_select(st, job, 0, 0);
        if (r == NULL)
            return;
        job->result = json_pack("{s:I}", "total", (json_int_t)r->element[0]->integer);
        freeReplyObject(r);
        return;
    case AQJ_DLQ_LIST: {
        json_t *arr = json_array();

        r = dlq_select(st, job, 0, job->limit);
        if (r == NULL) {
            json_decref(arr);
            return;
        }
        total = (json_int_t)r->element[0]->integer;
        for (size_t i = 1; i < r->elements; i++) {
            json_t *d = is_str(r->element[i]) ? json_loads(r->element[i]->str, 0, NULL) : NULL;

            if (d == NULL)
                continue;
            json_array_append_new(
                arr,
                json_pack("{s:o,s:o,s:o,s:i,s:o,s:o,s:o,s:o}", "id", str_or_null(d, "id"),
                          "function", str_or_null(d, "fn"), "condition",
                          str_or_null(d, "condition"), "attempts",
                          (int)json_integer_value(json_object_get(d, "attempts")), "enqueued_at",
                          iso_ms(json_integer_value(json_object_get(d, "enqueued_ms"))),
                          "failed_at", iso_ms(json_integer_value(json_object_get(d, "failed_ms"))),
                          "error_type", str_or_null(d, "error_type"), "error_message",
                          str_or_null(d, "error_message")));
            json_decref(d);
        }
        freeReplyObject(r);
        job->result = json_pack("{s:o,s:I}", "dead_letters", arr, "total", total);
        return;
    }
    case AQJ_DLQ_SHOW: {
        json_t *d = NULL;

        r = dlq_select(st, job, 0, 1);
        if (r == NULL)
            return;
        if (r->elements >= 2 && is_str(r->element[1]))
            d = json_loads(r->element[1]->str, 0, NULL);
        freeReplyObject(r);
        if (d == NULL) {
            job->rc = SY_ENOENT;
            snprintf(job->errmsg, sizeof(job->errmsg), "no dead letter with id %s",
                     job->q_id ? job->q_id : "?");
            return;
        }
        {
            const char *p = json_string_value(json_object_get(d, "payload"));
            const char *h = json_string_value(json_object_get(d, "history"));
            json_t *payload = p != NULL ? json_loads(p, JSON_DECODE_ANY, NULL) : NULL;
            json_t *hist = h != NULL ? json_loads(h, 0, NULL) : NULL;

            job->result = json_pack(
                "{s:o,s:o,s:o,s:i,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "id", str_or_null(d, "id"),
                "function", str_or_null(d, "fn"), "condition", str_or_null(d, "condition"),
                "attempts", (int)json_integer_value(json_object_get(d, "attempts")), "enqueued_at",
                iso_ms(json_integer_value(json_object_get(d, "enqueued_ms"))), "failed_at",
                iso_ms(json_integer_value(json_object_get(d, "failed_ms"))), "error_type",
                str_or_null(d, "error_type"), "error_message", str_or_null(d, "error_message"),
                "payload", payload != NULL ? payload : json_null(), "history",
                hist != NULL ? hist : json_array(), "trace_id", str_or_null(d, "trace_id"));
        }
        json_decref(d);
        return;
    }
    case AQJ_DLQ_REDRIVE:
        if (dlq_change(st, job, &n, &left) != 0)
            return;
        /* No rows: the new entries reach whichever broker reads them, by INTAKE. */
        job->result = json_pack("{s:I,s:I}", "redriven", n, "remaining", left);
        return;
    case AQJ_DLQ_PURGE:
        if (dlq_change(st, job, &n, &left) != 0)
            return;
        job->result = json_pack("{s:I}", "purged", n);
        return;
    default:
        job->rc = SY_EINVAL;
        snprintf(job->errmsg, sizeof(job->errmsg), "unknown store job %d", (int)job->kind);
        return;
    }
}

/* Run BATCH: the write jobs pipelined in order, then the others one by one. */
static void run_jobs(struct aq_store *st, struct aq_job *batch, struct aq_job **retry)
{
    struct aq_job *writes = NULL, **wtail = &writes, *others = NULL, **otail = &others;
    struct aq_job *done = NULL, **dtail = &done, **rtail = retry;

    *retry = NULL;
    while (batch != NULL) {
        struct aq_job *j = batch;

        batch = j->next;
        j->next = NULL;
        if (is_write(j)) {
            *wtail = j;
            wtail = &j->next;
        } else {
            *otail = j;
            otail = &j->next;
        }
    }
    if (writes != NULL)
        run_writes(st, writes, &dtail, &rtail);
    while (others != NULL) {
        struct aq_job *j = others;

        others = j->next;
        j->next = NULL;
        j->rc = 0;
        run_dlq(st, j);
        *dtail = j;
        dtail = &j->next;
    }
    aq_mailbox_hand_back(&st->mb, done);
}

/* ---- the thread --------------------------------------------------------------------------- */

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* The periodic work on W, in this order: group, heartbeat (before claims), claims, clean-up. */
static void timers(struct aq_store *st, int64_t now)
{
    int64_t tick = st->claim_idle_ms / 2;

    if (st->need_group && w_ready(st) == 0) {
        char why[sizeof(st->lasterr)];

        if (group_create(st, st->w, why, sizeof(why)) == 0)
            st->need_group = 0;
        else
            w_lost(st, why);
    }
    if (now >= st->next_beat_ms && w_ready(st) == 0) {
        heartbeat(st);
        st->next_beat_ms = now + st->claim_idle_ms / 3;
    }
    if (now >= st->next_claim_ms && w_ready(st) == 0) {
        claim_tick(st);
        st->next_claim_ms = now + (tick < 500 ? 500 : tick > 5000 ? 5000 : tick);
    }
    if (now >= st->next_gc_ms && w_ready(st) == 0) {
        gc_consumers(st, 0);
        st->next_gc_ms = now + CONSUMER_GC_MS;
    }
}

/*
 * At stop: release everything pending for us (what the loop held, and what it never saw: a read
 * cut short, events of undeclared functions) to the other brokers, and leave the group when
 * nothing is pending any more.
 */
static void farewell(struct aq_store *st)
{
    struct cmd c = {0};
    redisReply *r;

    if (w_ready(st) != 0)
        return;
    cmd_str(&c, "EVAL");
    cmd_str(&c, script_release);
    cmd_str(&c, "1");
    cmd_add(&c, st->key, st->keylen);
    cmd_str(&c, GROUP);
    cmd_str(&c, st->consumer);
    cmd_i64(&c, st->claim_idle_ms);
    r = w_cmd(st, &c);
    cmd_free(&c);
    if (r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer > 0)
        log_info("[asyncq] released %lld held event(s) to the other brokers sharing %s", r->integer,
                 st->key);
    else if (r != NULL && r->type == REDIS_REPLY_ERROR && !is_err(r, "NOGROUP"))
        log_err("[asyncq] redis %s:%d: releasing held events: %s; they are claimed after "
                "%lld ms",
                st->host, st->port, r->str, (long long)st->claim_idle_ms);
    freeReplyObject(r);
    if (st->w != NULL)
        gc_consumers(st, 1);
}

static void *store_main(void *arg)
{
    struct aq_store *st = arg;
    struct aq_job *retry = NULL;
    int64_t retry_at = 0;

    pthread_setname_np(pthread_self(), "sy-store-redis"); /* top -H, perf */

    for (;;) {
        struct aq_job *batch;
        struct pollfd pfd[2];
        int stopping, nfd = 1, empty;
        int64_t now, wake;

        pthread_mutex_lock(&st->mb.mu);
        batch = aq_mailbox_take_in_locked(&st->mb);
        stopping = st->stopping;
        pthread_mutex_unlock(&st->mb.mu);
        now = time_mono_ms();
        if (retry != NULL && stopping && now > st->stop_deadline_ms) {
            log_err("[asyncq] giving up on store writes at shutdown (redis %s:%d: %s); the "
                    "affected events run again elsewhere or after the restart (at-least-once)",
                    st->host, st->port, st->lasterr);
            for (struct aq_job *j = retry; j != NULL; j = j->next) {
                j->rc = SY_EIO;
                snprintf(j->errmsg, sizeof(j->errmsg), "redis %s:%d: %.160s", st->host, st->port,
                         st->lasterr);
            }
            aq_mailbox_hand_back(&st->mb, retry);
            retry = NULL;
        }
        if (batch != NULL || (retry != NULL && now >= retry_at)) {
            batch = aq_job_list_join(retry, batch);
            run_jobs(st, batch, &retry);
            if (retry != NULL)
                retry_at = st->w != NULL ? time_mono_ms() + BACKOFF_MAX_MS
                                         : (st->w_retry_at > time_mono_ms()
                                                ? st->w_retry_at
                                                : time_mono_ms() + BACKOFF_MIN_MS);
            now = time_mono_ms();
        }
        if (stopping) {
            r_close(st);
            if (retry == NULL) {
                pthread_mutex_lock(&st->mb.mu);
                empty = st->mb.in_head == NULL;
                pthread_mutex_unlock(&st->mb.mu);
                if (empty)
                    break;
                continue;
            }
        } else {
            timers(st, now);
            if (!st->reading)
                r_issue(st);
            else if (now - st->read_sent_ms > READ_BLOCK_MS + CMD_TIMEOUT_MS)
                r_lost(st, "no answer to XREADGROUP");
        }
        /* Sleep until a job, a reply, or the next timer. */
        wake = now + 1000;
        if (retry != NULL)
            wake = min64(wake, stopping ? min64(retry_at, st->stop_deadline_ms + 1) : retry_at);
        if (!stopping) {
            /* The claim and heartbeat timers need W: while it is down, wait for its retry
             * time instead (else a past timer would spin this loop). */
            if (st->w != NULL)
                wake = min64(wake, min64(st->next_claim_ms, st->next_beat_ms));
            else
                wake = min64(wake, st->w_retry_at > now ? st->w_retry_at : now + BACKOFF_MIN_MS);
            if (st->r == NULL && !atomic_load(&st->throttled))
                wake = min64(wake, st->r_retry_at);
        }
        pfd[0].fd = st->wake_fd;
        pfd[0].events = POLLIN;
        pfd[0].revents = 0;
        if (st->reading && st->r != NULL) {
            pfd[1].fd = st->r->fd;
            pfd[1].events = POLLIN;
            pfd[1].revents = 0;
            nfd = 2;
        }
        now = time_mono_ms();
        if (poll(pfd, (nfds_t)nfd, wake > now ? (int)(wake - now) : 0) < 0 && errno != EINTR)
            log_err("[asyncq] poll: %s", strerror(errno));
        if (pfd[0].revents & POLLIN) {
            uint64_t v;

            if (read(st->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                log_err("[asyncq] store wake read: %s", strerror(errno));
        }
        if (nfd == 2 && (pfd[1].revents & (POLLIN | POLLERR | POLLHUP)) && st->reading)
            r_consume(st);
    }
    farewell(st);
    r_close(st);
    if (st->w != NULL)
        redisFree(st->w);
    st->w = NULL;
    return NULL;
}

/* ---- the vtable --------------------------------------------------------------------------- */

static void redis_destroy(struct aq_store *st);

/* redis://HOST:PORT/KEY (validated by config/; IPv6 hosts in brackets). Returns 0 or -1. */
static int parse_url(struct aq_store *st, const char *url)
{
    const char *a = url + strlen("redis://"), *slash = strchr(a, '/'), *colon;
    char *end;
    long port;

    if (strncmp(url, "redis://", 8) != 0 || slash == NULL || slash[1] == '\0')
        return -1;
    colon = slash;
    while (colon > a && colon[-1] != ':')
        colon--;
    if (colon == a)
        return -1;
    port = strtol(colon, &end, 10);
    if (end != slash || port < 1 || port > 65535)
        return -1;
    colon--; /* at the ':' */
    if (colon > a && a[0] == '[' && colon[-1] == ']')
        st->host = strndup(a + 1, (size_t)(colon - a - 2));
    else
        st->host = strndup(a, (size_t)(colon - a));
    st->port = (int)port;
    st->key = strdup(slash + 1);
    if (st->host == NULL || st->key == NULL || st->host[0] == '\0')
        return -1;
    st->keylen = strlen(st->key);
    return 0;
}

/* "<hostname>-<pid>-<random>" */
static void make_consumer(struct aq_store *st)
{
    char host[64] = "host";
    uint32_t rnd;

    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "host");
    host[sizeof(host) - 1] = '\0';
    if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
        rnd = (uint32_t)(wall_ms() ^ ((int64_t)getpid() << 16));
    snprintf(st->consumer, sizeof(st->consumer), "%s-%ld-%08x", host, (long)getpid(), rnd);
}

/* Fail unless the server has XAUTOCLAIM (Redis 6.2). Returns 0, or -1 with WHY. */
static int check_version(struct aq_store *st, char *why, size_t n)
{
    redisReply *r = redisCommand(st->w, "INFO server");
    const char *v;
    int major = 0, minor = 0, rc = 0;

    if (r == NULL) {
        snprintf(why, n, "%s", st->w->errstr);
        return -1;
    }
    v = r->type == REDIS_REPLY_STRING ? strstr(r->str, "redis_version:") : NULL;
    if (v != NULL && sscanf(v, "redis_version:%d.%d", &major, &minor) == 2 &&
        (major < 6 || (major == 6 && minor < 2))) {
        snprintf(why, n, "redis %d.%d is too old: the shared queue needs 6.2 or newer (XAUTOCLAIM)",
                 major, minor);
        rc = -1;
    }
    freeReplyObject(r);
    return rc;
}

static struct aq_store *redis_open(const struct cfg *cfg, struct aq_row **rows, size_t *n_rows,
                                   struct sy_error *err)
{
    struct aq_store *st = calloc(1, sizeof(*st));
    const char *env = getenv("SWITCHYARD_REDIS_CLAIM_IDLE_MS");
    char why[sizeof(st->lasterr)];

    *rows = NULL;
    *n_rows = 0;
    if (st == NULL) {
        sy_error_set(err, "out of memory");
        return NULL;
    }
    st->magic = RSTORE_MAGIC;
    st->wake_fd = -1;
    aq_mailbox_init(&st->mb);
    pthread_mutex_init(&st->fns_mu, NULL);
    st->w_backoff = st->r_backoff = BACKOFF_MIN_MS;
    if (parse_url(st, cfg->broker.async_queue) != 0) {
        sy_error_set(err, "broker.async_queue: %s: must be redis://HOST:PORT/KEY",
                     cfg->broker.async_queue);
        goto fail;
    }
    st->claim_idle_ms = CLAIM_IDLE_DEFAULT_MS;
    if (env != NULL && env[0] != '\0') {
        char *end;
        long long v = strtoll(env, &end, 10);

        if (*end != '\0' || v < 500 || v > 3600000) {
            sy_error_set(err, "SWITCHYARD_REDIS_CLAIM_IDLE_MS: must be 500..3600000 (got '%s')",
                         env);
            goto fail;
        }
        st->claim_idle_ms = v;
    }
    st->k_ev_pfx = strfmt("%s:ev:", st->key);
    st->k_dead = strfmt("%s:dead", st->key);
    st->k_idx = strfmt("%s:dead:idx", st->key);
    st->k_fnof = strfmt("%s:dead:fnof", st->key);
    st->k_fn_pfx = strfmt("%s:dead:fn:", st->key);
    st->fns = calloc(cfg->n_functions ? cfg->n_functions : 1, sizeof(*st->fns));
    st->cap_fns = cfg->n_functions ? cfg->n_functions : 1;
    if (st->k_ev_pfx == NULL || st->k_dead == NULL || st->k_idx == NULL || st->k_fnof == NULL ||
        st->k_fn_pfx == NULL || st->fns == NULL)
        goto nomem;
    for (size_t i = 0; i < cfg->n_functions; i++) {
        st->fns[i] = strdup(cfg->functions[i].name);
        if (st->fns[i] == NULL)
            goto nomem;
        st->n_fns++;
    }
    make_consumer(st);
    st->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (st->wake_fd < 0) {
        sy_error_set(err, "eventfd: %s", strerror(errno));
        goto fail;
    }
    /* Connect now, so that a wrong address or an old server is an error at start-up. */
    st->w = rd_connect(st, CMD_TIMEOUT_MS, why, sizeof(why));
    if (st->w == NULL || check_version(st, why, sizeof(why)) != 0 ||
        group_create(st, st->w, why, sizeof(why)) != 0) {
        sy_error_set(err, "broker.async_queue: cannot use %s: %s", cfg->broker.async_queue, why);
        goto fail;
    }
    log_info("[asyncq] shared queue on redis %s:%d stream %s, group %s, consumer %s (claim after "
             "%lld ms idle)",
             st->host, st->port, st->key, GROUP, st->consumer, (long long)st->claim_idle_ms);
    return st;
nomem:
    sy_error_set(err, "out of memory");
fail:
    redis_destroy(st);
    return NULL;
}

static int redis_start(struct aq_store *st, int notify_fd, struct sy_error *err)
{
    return aq_mailbox_start(&st->mb, store_main, st, notify_fd, err);
}

static void redis_submit(struct aq_store *st, struct aq_job *job)
{
    aq_mailbox_push(&st->mb, job);
    wake_thread(st);
}

static struct aq_job *redis_take_done(struct aq_store *st)
{
    return aq_mailbox_take_done(&st->mb);
}

static void redis_note_held(struct aq_store *st, unsigned held)
{
    atomic_store(&st->loop_held, held);
    if (atomic_load(&st->throttled) && held < READ_AHEAD)
        wake_thread(st);
}

static void redis_stop(struct aq_store *st, int timeout_ms)
{
    if (st == NULL || !st->mb.started)
        return;
    pthread_mutex_lock(&st->mb.mu);
    st->stopping = 1;
    st->stop_deadline_ms = time_mono_ms() + timeout_ms;
    pthread_mutex_unlock(&st->mb.mu);
    wake_thread(st);
    aq_mailbox_join(&st->mb);
}

static void redis_destroy(struct aq_store *st)
{
    if (st == NULL)
        return;
    while (st->all != NULL)
        held_remove(st, st->all);
    if (st->w != NULL)
        redisFree(st->w);
    if (st->r != NULL)
        redisFree(st->r);
    if (st->wake_fd >= 0)
        close(st->wake_fd);
    for (size_t i = 0; i < st->n_fns; i++)
        free(st->fns[i]);
    free(st->fns);
    pthread_mutex_destroy(&st->fns_mu);
    for (size_t i = 0; i < st->n_warned; i++)
        free(st->warned[i]);
    free(st->k_ev_pfx);
    free(st->k_dead);
    free(st->k_idx);
    free(st->k_fnof);
    free(st->k_fn_pfx);
    free(st->host);
    free(st->key);
    aq_mailbox_destroy(&st->mb);
    st->magic = 0;
    free(st);
}

const struct aq_store_ops aq_redis_ops = {
    .name = "redis",
    .intake = 1,
    .parking = 0,
    .open = redis_open,
    .start = redis_start,
    .submit = redis_submit,
    .take_done = redis_take_done,
    .note_held = redis_note_held,
    .stop = redis_stop,
    .destroy = redis_destroy,
    .declare = redis_declare,
};
