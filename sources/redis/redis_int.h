/*
 * sources/redis/redis_int.h - what the files of the Redis source share (never included outside
 * sources/redis/ except by its component test).
 *
 *   redis.c         the ops, the config table and validate(), the URL, the session (two
 *                   hiredis connections with our own timeouts, reconnect, setup), the ack and
 *                   release queues, the held set and its heartbeat, stop and destroy
 *   redis_list.c    LIST mode: leases (the Lua scripts move, ack, touch, release, and the
 *                   per-lease bookkeeping of what the host acknowledged), BLMOVE as the idle wait
 *   redis_stream.c  STREAM mode: consumer group, XREADGROUP, XAUTOCLAIM (a Lua script that also
 *                   reads each claimed entry's delivery count), XACK, XCLAIM JUSTID
 *   redis_event.c   the record JSON (Lambda's SQS record), encode_batch, batch_info, UTF-8
 *
 * Everything runs on the loop thread that owns the source's event_base, except the host-name
 * lookup thread in redis.c (which touches only its own struct src_redis_lookup).
 */
#ifndef SY_SRC_REDIS_INT_H
#define SY_SRC_REDIS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "config/config.h"
#include "core/buf.h"
#include "sources/source.h"

/* ---- config (`source: redis:`) ------------------------------------------------------------ */

enum src_redis_pop {
    SRC_REDIS_POP_RIGHT, /* RPOP: FIFO for LPUSH producers (the default) */
    SRC_REDIS_POP_LEFT,  /* LPOP: FIFO for RPUSH producers */
};

enum src_redis_start {
    SRC_REDIS_START_TRIM_HORIZON, /* a new group starts at the stream's first entry ("0") */
    SRC_REDIS_START_LATEST,       /* a new group starts after the last entry ("$") */
};

/* The typed `source: redis:` block (owned by the config; borrowed by the source). */
struct src_redis_cfg {
    char *url;                /* redis://[[user]:password@]host[:port][/db] or unix:PATH */
    char *list;               /* LIST mode: the list key; exactly one of list / stream */
    char *stream;             /* STREAM mode: the stream key */
    int pop;                  /* enum src_redis_pop (list) */
    int visibility_timeout_s; /* 1..43200, default 30 */
    int max_receive_count;    /* 0..100000, default 0 = never dead-letter */
    char *dead_letter;        /* destination URI or NULL (sent by the host) */
    char *group;              /* stream: consumer group, default "switchyard" */
    char *consumer;           /* stream: consumer name, NULL = "<hostname>-<pid>" */
    int starting_position;    /* enum src_redis_start (stream, for a new group) */
    char *body_field;         /* stream: the field that is the body, or NULL */
};

/* The kind (table, defaults) handed to config/ through source_kinds(). */
extern const struct cfg_source_kind src_redis_kind;

/* The adapter (registered in sources/source.c). */
extern const struct source_ops src_redis_ops;

/* ---- limits ------------------------------------------------------------------------------- */

#define SRC_REDIS_FETCH_MAX 1000          /* records per read command (list: per lease) */
#define SRC_REDIS_CHUNK 1000              /* ids (list: leases) per ack / release / heartbeat */
#define SRC_REDIS_ACK_CMDS_MAX 8          /* ack and release commands on the wire at once */
#define SRC_REDIS_CONNECT_TIMEOUT_MS 5000 /* lookup + connect + setup (hiredis 0.14: none) */
#define SRC_REDIS_CMD_TIMEOUT_MS 5000     /* a reply to any non-blocking command */
#define SRC_REDIS_BLOCK_MAX_MS 2000       /* BLMOVE / XREADGROUP block at most this long */
#define SRC_REDIS_BLOCK_MARGIN_MS 3000    /* ...and their reply may come this much later */
#define SRC_REDIS_BACKOFF_MIN_MS 100      /* reconnect: first delay, doubling... */
#define SRC_REDIS_BACKOFF_MAX_MS 5000     /* ...up to this */
#define SRC_REDIS_PROBLEM_RETRY_MS 5000   /* WRONGTYPE, NOPERM, auth, cluster: retry slowly */
#define SRC_REDIS_ACK_RETRY_MS 1000       /* an ack the server refused is sent again after this */
#define SRC_REDIS_STOP_WAIT_MS 5000       /* stop(): pending acks get this long */
#define SRC_REDIS_STATS_MS 1000           /* lag refresh while running */

/* ---- the adapter ---------------------------------------------------------------------------- */

struct src_redis;

/* A reply for a command sent with src_redis_send(). REPLY is NULL when the command got no reply
 * (the connection was dropped, timed out or closed); borrowed: hiredis frees it afterwards. */
typedef void src_redis_reply_fn(struct src_redis *sr, const redisReply *reply, void *arg);

/* A command waiting for its reply, on exactly one connection's `pending` list. */
struct src_redis_cmd {
    unsigned magic;
    TAILQ_ENTRY(src_redis_cmd) link;
    struct src_redis_conn *conn;
    int64_t deadline_ms; /* time_mono_ms() */
    int timeout_ms;
    const char *what; /* the command's name, for the timeout message (static) */
    src_redis_reply_fn *cb;
    void *arg;
};

TAILQ_HEAD(src_redis_cmdq, src_redis_cmd);

/* One hiredis async connection (redisAsyncContext: owned by hiredis, freed by us or by it). */
struct src_redis_conn {
    unsigned magic;
    struct src_redis *sr;
    const char *name;              /* "cmd" | "blk", for messages */
    redisAsyncContext *ac;         /* NULL when closed */
    bool connected;                /* onConnect(REDIS_OK) seen */
    struct src_redis_cmdq pending; /* in the order sent: replies come in this order */
    size_t n_pending;
    struct event *timer; /* the deadline of the oldest pending command */
};

/* One id waiting to be acked or released: stream, an entry id; list, a lease id (a release
 * may carry the indices already acknowledged: "LEASEID:3,17"). */
struct src_redis_qid {
    char *id;      /* NUL-terminated, owned */
    uint32_t acks; /* records whose acknowledgement this confirms (source_stats.acks_pending) */
};

/* Ids waiting to be sent. Order does not matter. */
struct src_redis_ids {
    struct src_redis_qid *v;
    size_t n, cap;
    uint64_t acks; /* the sum of v[].acks */
};

/* What the host holds, heartbeated: stream, one entry per record (refs counts a record
 * delivered again while still held, after a late heartbeat); list, one entry per lease (PRIV:
 * the list mode's bookkeeping of it, allocated with the entry). */
struct src_redis_held {
    struct src_redis_held *hnext;
    TAILQ_ENTRY(src_redis_held) link;
    uint32_t hash;
    uint32_t refs;
    size_t len;
    void *priv; /* NULL, or `extra` zeroed bytes after the id (src_redis_held_get()) */
    char id[];
};

struct src_redis_heldtab {
    struct src_redis_held **b;
    size_t nb; /* buckets, a power of two */
    size_t n;  /* distinct ids */
    TAILQ_HEAD(, src_redis_held) all;
};

/* What a batched id command does (src_redis_mode.send_ids). */
enum src_redis_op {
    SRC_REDIS_OP_ACK,       /* remove for good (ZREM+HDEL+HDEL / XACK) */
    SRC_REDIS_OP_RELEASE,   /* visible again now */
    SRC_REDIS_OP_HEARTBEAT, /* still being worked on: push the visibility deadline out */
};

/* The session: both connections, set up (AUTH, SELECT, scripts / group). */
enum src_redis_sess {
    SESS_IDLE,       /* not started */
    SESS_LOOKUP,     /* host name lookup on its thread */
    SESS_CONNECTING, /* TCP connects and setup commands in progress */
    SESS_UP,         /* both connected, setup done */
    SESS_FAILING,    /* failed; the next work() turn drops it and schedules the retry */
    SESS_BACKOFF,    /* waiting for retry_timer */
    SESS_CLOSED,     /* stopped or being destroyed */
};

/* LIST or STREAM: the part of the protocol that differs. */
struct src_redis_mode {
    const char *name; /* "list" | "stream" */
    /* Its Lua scripts (NULL-terminated): SCRIPT LOAD at every session setup and on NOSCRIPT. */
    const char *const *scripts;
    /* At create: keys, scripts. Returns 0 or SY_ENOMEM. */
    int (*init)(struct src_redis *sr);
    void (*fini)(struct src_redis *sr);
    /* Queue the session's setup commands on sr->cmd (replies through src_redis_setup_cmd()). */
    void (*setup)(struct src_redis *sr);
    /* Read up to N (>= 1) records; sets sr->fetching (or sr->waiting) while a read is out. */
    void (*fetch)(struct src_redis *sr, size_t n);
    /* One batched command for IDS[0..N) (N <= SRC_REDIS_CHUNK) on sr->cmd. Returns 0 (CB runs
     * once, later) or a negative SY_E* (CB never runs). */
    int (*send_ids)(struct src_redis *sr, enum src_redis_op op, char *const *ids, size_t n,
                    src_redis_reply_fn *cb, void *arg);
    /* Refresh sr->lag (and sr->inflight_n for lists) on sr->cmd. */
    void (*stats)(struct src_redis *sr);
    /* The session went away: forget per-session state (cursor...). Optional. */
    void (*reset)(struct src_redis *sr);
    /* Optional (LIST): the host is done with RECS[0..N) (borrowed for the call): ACKED, or
     * given back. The mode keeps its own held entries (one per lease, made when it delivers)
     * and queues what the server must do; without it, redis.c holds, acks and releases each
     * record's id. Never calls the host. */
    void (*done)(struct src_redis *sr, struct source_record *const *recs, size_t n, bool acked);
};

extern const struct src_redis_mode src_redis_list_mode;
extern const struct src_redis_mode src_redis_stream_mode;

/* The parts of a redis:// or unix: URL (all owned). */
struct src_redis_url {
    char *host; /* NULL for a unix socket; without brackets for IPv6 */
    int port;
    char *path;     /* the unix socket, or NULL */
    char *user;     /* ACL user, or NULL */
    char *password; /* or NULL */
    int db;
    char *safe; /* the URL without the password, for logs and RedisBatchInfo */
};

struct src_redis_lookup;

struct src_redis {
    struct source base; /* first: source.c casts */
    unsigned magic;
    const struct src_redis_cfg *cfg; /* borrowed */
    const struct src_redis_mode *mode;
    struct event_base *evb; /* borrowed */
    char prefix[96];        /* "[source:redis:MAPPING]" */
    struct src_redis_url url;
    const char *key; /* cfg->list or cfg->stream (borrowed) */
    size_t key_len;
    char *arn;       /* arn:aws:sqs:REGION:ACCOUNT:KEY */
    char *json_tail; /* ,"eventSource":"aws:sqs","eventSourceARN":...,"awsRegion":...} */
    size_t json_tail_len;
    char *receipt_prefix; /* "KEY:" (receipt handles are base64 of KEY:ID) */
    int vis_ms;

    /* LIST mode (keys: redis_list.c) */
    char *k_inflight, *k_meta, *k_body, *k_lease; /* k_lease: "KEY:sy:lease:" (a prefix) */
    size_t k_lease_len;
    char sha_move[41], sha_ack[41], sha_touch[41], sha_release[41];
    int64_t next_visible_ms; /* from the move script: ms until the earliest in-flight deadline */
    struct src_redis_held *lease_last; /* the lease the last acked record belonged to */
    uint64_t acks_local; /* records acked by the host whose lease is not finished yet */

    /* STREAM mode */
    const char *group; /* borrowed from cfg or static default */
    char *consumer;    /* owned */
    char sha_claim[41];
    int64_t next_reclaim_ms; /* time_mono_ms() when XAUTOCLAIM is due */
    int reclaim_period_ms;
    char cursor[64]; /* XAUTOCLAIM cursor ("0-0": from the start) */

    /* The session. */
    enum src_redis_sess sess;
    struct src_redis_conn cmd; /* scripts, acks, heartbeats, stats */
    struct src_redis_conn blk; /* the blocking wait (BLMOVE / XREADGROUP) */
    struct src_redis_lookup *lookup;
    int setup_left; /* setup replies still expected */
    struct event *connect_timer;
    struct event *retry_timer;
    int backoff_ms;
    int64_t up_since_ms;
    bool was_up;       /* the failing session had been up (counts as a reconnect) */
    bool fail_problem; /* the failure needs a fix: PROBLEM, slow retry */
    char fail_reason[256];
    char last_log[256]; /* the last failure logged (an outage logs once) */
    uint64_t reconnects;

    /* Reading. */
    bool started, paused, room_blocked, stopping, finished;
    bool fetching;     /* a read command is out (move script, claim, XREADGROUP) */
    bool waiting;      /* LIST: BLMOVE is out */
    bool read_problem; /* a read failed: wait for fetch_retry before the next one */
    bool in_problem;   /* SOURCE_PROBLEM because of reads, until one succeeds */
    int noscript_streak;
    char read_reason[256];
    struct event *fetch_retry;

    /* Acks and releases. */
    struct src_redis_ids ackq, relq;
    size_t ids_on_wire;    /* ids in ack / release commands awaiting their reply */
    uint64_t acks_on_wire; /* ...the acknowledgements they confirm (src_redis_qid.acks) */
    size_t id_cmds;        /* those commands */
    bool ack_hold;         /* the server refused one: wait for ack_retry */
    struct event *ack_retry;

    /* Held records, heartbeated every vis/3. */
    struct src_redis_heldtab held;
    struct event *hb_timer;
    size_t hb_cmds;

    /* Gauges. */
    struct event *stats_timer;
    int stats_cmds;
    int64_t lag;        /* -1 unknown */
    int64_t inflight_n; /* LIST: ZCARD of the in-flight set; -1 unknown */

    struct event *kick;       /* runs work() on a clean stack */
    struct event *stop_timer; /* the stop deadline */
    struct event *done_ev;    /* calls stop_done */
    source_stopped_fn *stop_done;
    void *stop_arg;
    int64_t stop_deadline_ms;

    struct buf body; /* a composed body (stream, several fields) */
    /* The last receipt handle, raw and in base64: records of one lease (or consecutive stream
     * ids) share most of it, and whole 3-byte groups of a shared prefix encode the same. */
    char rh_raw[192], rh_b64[256];
    size_t rh_raw_len;
};

/* ---- redis.c: for the mode files ---------------------------------------------------------- */

/* An argv being built for one command. Strings are borrowed (hiredis copies them when the
 * command is queued), except the formatted ones, kept here. */
struct src_redis_argv {
    const char **v;
    size_t *len;
    int n, cap;
    char fmt[8][48];
    int n_fmt;
    bool oom;
};

void src_redis_argv_add(struct src_redis_argv *a, const char *s, size_t len);
void src_redis_argv_adds(struct src_redis_argv *a, const char *s);
void src_redis_argv_addf(struct src_redis_argv *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void src_redis_argv_free(struct src_redis_argv *a);

/*
 * Send A on C with a reply deadline of TIMEOUT_MS (ours: on expiry the session is dropped and
 * reconnected). WHAT (static) names the command in messages. Returns 0 (CB runs exactly once,
 * later) or a negative SY_E* (CB never runs).
 */
int src_redis_send(struct src_redis *sr, struct src_redis_conn *c, struct src_redis_argv *a,
                   int timeout_ms, const char *what, src_redis_reply_fn *cb, void *arg);

/* A setup command of the session (counted in setup_left). TOLERATE: an error prefix that counts
 * as success (e.g. "BUSYGROUP"), or NULL. */
void src_redis_setup_cmd(struct src_redis *sr, struct src_redis_argv *a, const char *tolerate);

/* The session failed (from anywhere, callbacks included): dropped and retried on the next turn. */
void src_redis_session_fail(struct src_redis *sr, bool problem, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Run work() on the next loop turn. */
void src_redis_kick(struct src_redis *sr);

/* How a server error reads to us. */
enum src_redis_errk {
    SRC_REDIS_ERRK_NOSCRIPT, /* the script cache was flushed: SCRIPT LOAD again */
    SRC_REDIS_ERRK_NOGROUP,  /* the consumer group (or the stream) is gone */
    SRC_REDIS_ERRK_PROBLEM,  /* someone must fix something: WRONGTYPE, NOPERM, auth, cluster */
    SRC_REDIS_ERRK_OTHER,    /* anything else (LOADING, BUSY, OOM...): transient */
};
enum src_redis_errk src_redis_errk(const redisReply *r);

/* A message for error reply R (with a hint for cluster redirections), into OUT. */
void src_redis_err_text(const redisReply *r, char *out, size_t size);

/*
 * A read command failed with an error reply R: NOSCRIPT reloads the scripts and reads again,
 * PROBLEM / OTHER put the source in SOURCE_PROBLEM and read again after a delay.
 */
void src_redis_read_error(struct src_redis *sr, const char *what, const redisReply *r);

/* A read could not even be sent (out of memory): try again in MS, logging WHY. */
void src_redis_read_later(struct src_redis *sr, int ms, const char *why);

/* A read succeeded: a source in SOURCE_PROBLEM because of reads is RUNNING again. */
void src_redis_read_ok(struct src_redis *sr);

/* Queue the ids of records read while stopping (or that cannot be delivered) for release. */
void src_redis_release_id(struct src_redis *sr, const char *id, size_t len);

/* Queue an id for ack (entries the server deleted meanwhile). */
void src_redis_ack_id(struct src_redis *sr, const char *id, size_t len);

/* Queue ID[0..LEN) (copied) for OP (ACK or RELEASE); ACKS: records it confirms as
 * acknowledged. Sent from the next work() turn. */
void src_redis_queue_id(struct src_redis *sr, enum src_redis_op op, const char *id, size_t len,
                        uint32_t acks);

/*
 * Hand RECS[0..N) to the host (takes them). Without mode->done each record's id is held from
 * now on; with it, the mode has made its held entries before. When stopping they are given
 * back at once instead (through mode->done, or as released ids) and freed.
 */
void src_redis_deliver(struct src_redis *sr, struct source_record **recs, size_t n);

/* The held entry for ID[0..LEN): found, or made with EXTRA zeroed bytes at h->priv (*MADE set
 * true). Returns NULL when out of memory. refs is left as it is (the caller's to use). */
struct src_redis_held *src_redis_held_get(struct src_redis *sr, const char *id, size_t len,
                                          size_t extra, bool *made);

/* The held entry for ID[0..LEN), or NULL. */
struct src_redis_held *src_redis_held_find(struct src_redis *sr, const char *id, size_t len);

/* Forget H (whatever its refs) and free it. */
void src_redis_held_drop(struct src_redis *sr, struct src_redis_held *h);

/* Hex SHA-1 of S (a script's name in the server's cache) into OUT. */
void src_redis_sha1(const char *s, char out[41]);

/* ---- redis_event.c ------------------------------------------------------------------------ */

/* One message attribute (a stream field next to body_field). Borrowed. */
struct src_redis_attr {
    const char *name;
    size_t name_len;
    const char *val;
    size_t val_len;
};

/* One message as read from Redis. Borrowed for src_redis_record_new(). */
struct src_redis_msg {
    const char *id;
    size_t id_len;
    const char *body; /* the body as composed (see redis_stream.c), any bytes */
    size_t body_len;
    const struct src_redis_attr *attrs;
    size_t n_attrs;
    uint32_t count;   /* ApproximateReceiveCount */
    int64_t sent_ms;  /* SentTimestamp */
    int64_t first_ms; /* ApproximateFirstReceiveTimestamp */
};

/*
 * The record for M: its JSON (the SQS record), data = the body bytes, flags BINARY (body not
 * UTF-8) and DEAD_LETTER (count over max_receive_count). Returns new, or NULL (out of memory).
 */
struct source_record *src_redis_record_new(struct src_redis *sr, const struct src_redis_msg *m);

/* Precompute sr->json_tail and sr->receipt_prefix. Returns 0 or SY_ENOMEM. */
int src_redis_event_init(struct src_redis *sr);

int src_redis_encode_batch(struct source *src, struct source_record *const *recs, size_t n,
                           struct buf *out);
int src_redis_batch_info(struct source *src, struct source_record *const *recs, size_t n,
                         struct buf *out);

#endif
