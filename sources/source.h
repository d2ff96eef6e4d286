/*
 * sources/source.h - event sources behind one vtable, and the host they deliver to.
 *
 * An adapter (sources/<kind>/) is one `const struct source_ops` plus one config table
 * (`struct cfg_source_kind`, config/config.h). It reads records from its server, turns each one
 * into the JSON object the function will see (Lambda's record shape for that kind of source),
 * hands them to its host with source_deliver(), and removes from the server exactly what the
 * host acknowledges. It knows nothing of batching, filters, invocation, retries or
 * destinations: that policy lives in mappings/, which is the host.
 *
 * Threads: everything here runs on the loop thread that owns BASE. Adapters never block it,
 * never create loops, and reach the rest of the broker only through their `struct source`.
 *
 * Ownership of records: the adapter creates each record with source_record_new(); the host
 * *takes* them in source_deliver(); ack()/release() *borrow* them for the call only (an adapter
 * copies the ids it still needs); the host frees them with source_record_free() afterwards.
 */
#ifndef SY_SOURCE_H
#define SY_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/errors.h"

struct buf;
struct event_base;
struct source;

/* --- records ---------------------------------------------------------------------------- */

/* Record flags, set by the adapter. */
#define SOURCE_REC_DEAD_LETTER                                                                     \
    0x1u                       /* received more than max_receive_count times: the host             \
                                  sends it to the source's dead letter, then acks it */
#define SOURCE_REC_BINARY 0x2u /* data is not UTF-8 (the JSON carries it in base64) */

/*
 * One record. One allocation: the strings live in the same block. The adapter fills the
 * `adapter` part; the `host` part is the mapping's (zeroed by source_record_new()).
 */
struct source_record {
    /* adapter part (read-only for the host) */
    const char *id;   /* messageId / entry id: stable across redeliveries, NUL-terminated;
                         also the itemIdentifier of batchItemFailures. Ordered sources whose
                         identifiers are objects ({"partition": "orders-0", "offset": 15},
                         Kafka's) use "PARTITION@OFFSET", which is what the host matches an
                         object identifier against */
    const char *data; /* the payload as received (SQS `body`): what filters match, and what a
                         dead letter holds. NUL-terminated for convenience; may hold NULs */
    size_t data_len;
    const char *json; /* the record as the function sees it: one JSON object */
    size_t json_len;
    int64_t sent_ms;        /* when the source first had it (epoch ms): maximum_record_age_s */
    uint32_t receive_count; /* deliveries by the source, this one included (>= 1) */
    int32_t partition;      /* ordered sources: the order key's index; -1 = unordered */
    uint64_t seq;           /* ordered sources: position within the partition */
    unsigned flags;         /* SOURCE_REC_* */
    /* host part (the adapter never touches it) */
    struct source_record *next;
    uint32_t attempts; /* invocations of this record that failed */
    uint32_t host_flags;
};

/*
 * A record with room for ID_LEN, DATA_LEN and JSON_LEN bytes (each plus a NUL), zeroed; the
 * adapter copies the bytes in with source_record_fill(). Returns new, or NULL (out of memory).
 */
struct source_record *source_record_new(size_t id_len, size_t data_len, size_t json_len);

/* Copy ID, DATA and JSON (lengths as given to source_record_new()) into REC. */
void source_record_fill(struct source_record *rec, const char *id, const char *data,
                        const char *json);

/* Free REC. NULL is a no-op. */
void source_record_free(struct source_record *rec);

/* --- the host --------------------------------------------------------------------------- */

/* What a source reports (SOURCE_* states), for the mapping's State and LastProcessingResult. */
enum source_state {
    SOURCE_CONNECTING,   /* started, not yet reading */
    SOURCE_RUNNING,      /* connected and reading (or blocked waiting for records) */
    SOURCE_RECONNECTING, /* lost its server; retrying with backoff (reason says why) */
    SOURCE_PROBLEM,      /* cannot read until someone fixes something (WRONGTYPE, NOPERM, auth):
                            retried slowly; reason says what */
    SOURCE_STOPPED,
};

/*
 * The host's side, implemented by mappings/. Every callback runs on the loop; none may be called
 * from inside one of the host's own calls into the adapter (ops->ack, ops->pause...) unless
 * said so. The adapter calls them from inside its own library callbacks (hiredis replies), so
 * the host must not call back into the adapter from them, and never destroy() it there: it
 * defers that work to an event of its own.
 */
struct source_host {
    /* Takes RECS[0..N) (the array itself is borrowed). */
    void (*deliver)(void *arg, struct source_record **recs, size_t n);
    /* Ordered sources: PARTITION is no longer this broker's (a rebalance). The host runs no new
     * batch of it and gives every record of it that is not running back with ops->release(),
     * on a later turn of the loop (never from inside this call); running batches end as usual
     * (ack or release). */
    void (*revoke)(void *arg, int32_t partition);
    /* How many more records the host takes now (0: stop reading until resume()). */
    size_t (*room)(void *arg);
    /* The source's state changed; REASON (borrowed) may be NULL. */
    void (*state)(void *arg, enum source_state st, const char *reason);
};

/* What an adapter is created with. Borrowed: valid for the source's life. */
struct source_ctx {
    struct event_base *base;
    const char *mapping;  /* the mapping's name, for logs ("[source:redis:orders]") */
    const char *region;   /* for ARNs */
    const char *account;  /* for ARNs */
    const char *data_dir; /* the broker's data_dir */
    int fsync;            /* broker.durability is fsync: what the adapter stores itself (a
                             spool) must survive power loss, not only kill -9 */
    const struct source_host *host;
    void *host_arg;
    /* Ordered sources: records of one partition the host wants at most, delivered and not yet
     * acknowledged; at it the adapter stops taking records of that partition (so a partition
     * whose records fail blocks only itself) until acknowledgements bring it below again. */
    size_t partition_window;
    /* How long a revoked partition's running batches may take (the function's timeout, ms);
     * after it the adapter gives the partition up without waiting for them. */
    int drain_wait_ms;
};

/* Every source starts with this header (the adapter's struct embeds it first). */
struct source {
    const struct source_ops *ops;
    const struct source_ctx *ctx;
    enum source_state state;
    char reason[256]; /* of the last state change */
    /* Set by the adapter's create(): receives after which a record is a dead letter (0: never).
     * The host counts its own retries of a held record as receives. */
    uint32_t max_receive_count;
    /* Set by the adapter's create(): 1 when records carry a partition (>= 0) and a position
     * in it, and must be processed in that order: the host then runs at most one batch of a
     * partition at a time and retries a failed record before anything after it. */
    int ordered;
};

/* What ack() says about the records it is given. */
enum source_outcome {
    SOURCE_DONE,    /* processed by the function, or filtered out: remove from the source */
    SOURCE_DISCARD, /* the error policy gave up on them (on-failure / dead letter sent):
                       remove from the source */
};

/* Gauges for /metrics and `switchyard mappings`. */
struct source_stats {
    int64_t lag; /* records waiting in the source (list length, pending entries, offset
                    lag); -1 = unknown */
    uint64_t reconnects;
    uint64_t acks_pending; /* acknowledgements not yet confirmed by the server */
};

/*
 * What the mapping API shows of a source's configuration, in Lambda's terms (for
 * List/GetEventSourceMapping). Filled by ops->describe() from the config alone (a disabled
 * mapping has no source object). Strings are borrowed from the config or held in the buffers.
 */
struct source_desc {
    int self_managed;          /* no EventSourceArn (Lambda's self-managed event sources) */
    const char *const *topics; /* Topics */
    size_t n_topics;
    const char *endpoints;         /* SelfManagedEventSource.Endpoints.KAFKA_BOOTSTRAP_SERVERS,
                                      comma-separated; NULL: none */
    char consumer_group[256];      /* SelfManagedKafkaEventSourceConfig.ConsumerGroupId; "" none */
    const char *starting_position; /* StartingPosition, or NULL */
    int64_t starting_position_timestamp; /* StartingPositionTimestamp (s), 0: none */
};

/* One partition of an ordered source, for status and /metrics. */
struct source_partition_stat {
    const char *name;  /* "orders-0" (borrowed for the callback) */
    int64_t lag;       /* high watermark minus the commit position; -1 unknown */
    int64_t committed; /* the commit position (the next offset to read); -1 none yet */
    size_t in_flight;  /* records of it with the host */
};

typedef void source_partition_fn(void *arg, const struct source_partition_stat *st);

/* Called once when stop() has finished. */
typedef void source_stopped_fn(void *arg);

struct source_ops {
    const char *name;                  /* its key under `source:` ("redis") */
    const struct cfg_source_kind *cfg; /* its config table and defaults */
    /* Allocate from CFG (typed and validated by config/; borrowed for the source's life). No
     * I/O yet. Returns 0 with *OUT set, or a negative SY_E* with ERR filled. */
    int (*create)(const struct source_ctx *ctx, const void *cfg, struct source **out,
                  struct sy_error *err);
    /* Connect and start reading. Problems are states, not errors (reconnect on its own). */
    int (*start)(struct source *src);
    /* Remove (or commit) RECS from the source. Borrowed for the call. Never fails: what cannot
     * be sent now is kept and sent after a reconnect. */
    void (*ack)(struct source *src, struct source_record *const *recs, size_t n,
                enum source_outcome outcome);
    /* Optional: give RECS back unprocessed (shutdown, disable): visible again at once. */
    void (*release)(struct source *src, struct source_record *const *recs, size_t n);
    /* Stop / resume reading; idempotent; the session (and held records) are kept. */
    void (*pause)(struct source *src);
    void (*resume)(struct source *src);
    /* Stop reading, send the acks still pending (bounded by a deadline of the adapter's own),
     * close. DONE(ARG) runs exactly once, later, never from inside stop(). */
    void (*stop)(struct source *src, source_stopped_fn *done, void *arg);
    /* Free everything (after stop(), or after a failed create()/start()). NULL-safe. */
    void (*destroy)(struct source *src);
    /* The event for RECS[0..N), appended to OUT: e.g. {"Records":[json,json,...]}. Returns 0
     * or SY_ENOMEM. */
    int (*encode_batch)(struct source *src, struct source_record *const *recs, size_t n,
                        struct buf *out);
    /* The batch-identity member of an on-failure record, appended to OUT as `"Key":{...}`
     * (e.g. "RedisBatchInfo"), for RECS[0..N) in delivery order. Returns 0 or SY_ENOMEM. */
    int (*batch_info)(struct source *src, struct source_record *const *recs, size_t n,
                      struct buf *out);
    /* Optional: the identity member of the on-failure record of ONE record, for a keyed
     * destination (a Kafka topic) that takes one message per failed record: appends
     * `"Key":{...}` for REC alone to OUT (Kafka: KafkaBatchInfo with recordInfo) and sets *KEY
     * to a copy of the record's own key (*KEY_LEN bytes; caller frees), or NULL when it has
     * none. Returns 0 or SY_ENOMEM (then *KEY is NULL). */
    int (*record_info)(struct source *src, const struct source_record *rec, struct buf *out,
                       char **key, size_t *key_len);
    /* The event source ARN (EventSourceArn); borrowed, valid for the source's life. */
    const char *(*arn)(const struct source *src);
    /* The source's dead-letter destination URI (borrowed), or NULL. */
    const char *(*dead_letter)(const struct source *src);
    /* Optional gauges. */
    void (*stats)(const struct source *src, struct source_stats *out);
    /* Optional, ordered sources: FN(ARG, ...) for each partition assigned to this broker. */
    void (*partitions)(const struct source *src, source_partition_fn *fn, void *arg);
    /* Optional: CFG (this kind's typed config) for the mapping API; MAPPING is its name. */
    void (*describe)(const void *cfg, const char *mapping, struct source_desc *out);
};

/* --- helpers for adapters (sources/source.c) ------------------------------------------- */

/* Hand records to the host (takes them). */
void source_deliver(struct source *src, struct source_record **recs, size_t n);

/* How many records the host takes now. */
size_t source_room(const struct source *src);

/* {"Records":[json,json,...]} of RECS[0..N) appended to OUT: the batch event of the sources
 * whose event is Lambda's `Records` list (SQS, S3). Returns 0 or SY_ENOMEM. */
int source_encode_records(struct source_record *const *recs, size_t n, struct buf *out);

/* The same with a top-level `"eventSource": EVENT_SOURCE` member first (NULL: none):
 * {"eventSource":"switchyard:mqtt","Records":[...]}. Returns 0 or SY_ENOMEM. */
int source_encode_records_as(const char *event_source, struct source_record *const *recs, size_t n,
                             struct buf *out);

/* Record a state change and tell the host (REASON may be NULL; formatted, cut at 255). The same
 * state with the same reason again is no change: the host is not told. */
void source_set_state(struct source *src, enum source_state st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* --- the registry ----------------------------------------------------------------------- */

/* The adapter registered under NAME, or NULL. */
const struct source_ops *source_find(const char *name);

/* Every adapter's config table, for cfg_load()'s schema: N set, array borrowed (static). */
const struct cfg_source_kind *const *source_kinds(size_t *n);

/* Create SRC of kind OPS. Returns 0 or a negative SY_E* with ERR filled. */
int source_create(const struct source_ops *ops, const struct source_ctx *ctx, const void *cfg,
                  struct source **out, struct sy_error *err);

/* Free SRC (ops->destroy). NULL is a no-op. */
void source_destroy(struct source *src);

#endif
