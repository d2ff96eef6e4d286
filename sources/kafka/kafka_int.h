/*
 * sources/kafka/kafka_int.h - the bodies shared by the files of the Kafka source (not an API).
 *
 *   kafka.c        the config table, the consumer on the loop (woken through librdkafka's queue
 *                  event fd), partitions and their offsets, commits, pauses, rebalances, stop
 *   kafka_event.c  the record JSON (Lambda's self-managed Kafka record), encode_batch,
 *                  batch_info (KafkaBatchInfo), record_info (one record's, for a Kafka
 *                  topic on-failure destination)
 *
 * Partitions are slots (struct kpart) whose index is the records' `partition`: a slot is made
 * when a topic-partition is assigned and freed only once no record of it is held by the host any
 * more, so an index is never reused while a record carries it (a partition revoked and assigned
 * again while records of the old assignment are still out gets a new slot).
 */
#ifndef SY_SRC_KAFKA_INT_H
#define SY_SRC_KAFKA_INT_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "config/cfg_field.h"
#include "core/buf.h"
#include "sources/source.h"

enum src_kafka_start {
    SRC_KAFKA_TRIM_HORIZON,
    SRC_KAFKA_LATEST,
    SRC_KAFKA_AT_TIMESTAMP,
};

/* `source: kafka:` */
struct src_kafka_cfg {
    char *bootstrap_servers;
    struct cfg_strlist topics;       /* names, or ^regex subscriptions */
    char *consumer_group;            /* NULL: switchyard-<mapping name> */
    int starting_position;           /* enum src_kafka_start */
    int starting_position_timestamp; /* AT_TIMESTAMP: Unix seconds */
    struct cfg_strmap properties;    /* librdkafka properties, over our defaults */
};

extern const struct cfg_source_kind src_kafka_kind;

/* What happened to a delivered offset. */
enum kentry {
    KE_OPEN,     /* with the host */
    KE_DONE,     /* acknowledged: may be committed */
    KE_RELEASED, /* given back unprocessed: the commit stops before it */
};

enum kpart_state {
    KP_FREE,
    KP_ASSIGNED,
    KP_REVOKING, /* revoked: waiting for its running batches */
    KP_GONE,     /* no longer ours: waiting for the host to let go of its records */
};

/* One assigned topic-partition. */
struct kpart {
    enum kpart_state state;
    char *topic; /* owned */
    int32_t partition;
    char *key; /* owned: "topic-partition", the event's key */
    size_t key_len;
    /* Offsets delivered and not yet committed, in delivery (= offset) order: a ring. */
    int64_t *offs;
    unsigned char *st; /* enum kentry */
    size_t head, n, cap;
    size_t open;         /* entries KE_OPEN */
    int64_t next;        /* the offset after the last one delivered; -1 before the first */
    int64_t committed;   /* the last offset committed (sent); -1 none */
    int64_t hold;        /* a record that could not be delivered (out of memory): commits
                            stop at it; -1 none */
    rd_kafka_queue_t *q; /* its own message queue (owned reference) */
    /* Records read from q and not yet delivered (owned), oldest first: a ring. Their offsets
     * are in the ring above (KE_OPEN), but not counted in OPEN. */
    struct source_record **stg;
    size_t stg_head, stg_n, stg_cap;
};

struct src_kafka_tsjob;

struct src_kafka {
    struct source base;
    const struct src_kafka_cfg *cfg;
    char prefix[96]; /* "[source:kafka:NAME]" */
    char arn[320];
    char *group; /* owned */
    rd_kafka_t *rk;
    rd_kafka_queue_t *q; /* the consumer queue (everything is forwarded to it) */
    int pipefd[2];
    struct event *io_ev;     /* pipefd[0] readable: the queue became non-empty */
    struct event *poll_ev;   /* manual: poll again (resume, yield after a long turn) */
    struct event *commit_ev; /* one-shot: commit what finished */
    struct event *tick_ev;   /* one-shot: revocation and stop deadlines */
    struct event *done_ev;   /* manual: stop() finished */
    int stop_committed;      /* the final commit was sent (or there was nothing to send) */
    int stop_finished;
    struct kpart *parts;
    size_t n_parts;
    size_t rr;                  /* the partition the last poll started with */
    int cooperative;            /* the group's rebalance protocol is COOPERATIVE */
    int host_paused;            /* pause() from the host */
    struct event *keepalive_ev; /* periodic: serve the consumer queue */
    int commit_armed;
    /* A revocation being carried out. */
    rd_kafka_topic_partition_list_t *revoking; /* owned; NULL when none */
    int revoke_lost;
    int revoke_committing;
    int64_t revoke_deadline; /* monotonic ms */
    /* AT_TIMESTAMP: the offsets of an assignment looked up off the loop. */
    struct src_kafka_tsjob *tsjob;
    /* stop() */
    int stopping;
    int closing; /* rd_kafka_consumer_close_queue() called */
    int stop_committing;
    int64_t stop_deadline;
    source_stopped_fn *stop_done;
    void *stop_arg;
    /* Counters. */
    uint64_t commits, commit_errors, reconnects;
    int64_t commit_warned_ms;
    struct buf scratch;         /* one record's JSON while it is built */
    struct source_record **out; /* one deliver()'s records (POLL_BATCH) */
    size_t cap_out;
    size_t staged, staged_bytes; /* records in the partitions' stg rings, and their size */
};

/* kafka_event.c */

/*
 * The record for M (its JSON: Lambda's self-managed Kafka record; data = the value bytes, empty
 * for a tombstone). Returns new, or NULL (out of memory).
 */
struct source_record *src_kafka_record_new(struct src_kafka *sk, const struct kpart *kp,
                                           int32_t idx, const rd_kafka_message_t *m);
int src_kafka_encode_batch(struct source *src, struct source_record *const *recs, size_t n,
                           struct buf *out);
int src_kafka_record_info(struct source *src, const struct source_record *rec, struct buf *out,
                          char **key, size_t *key_len);
int src_kafka_batch_info(struct source *src, struct source_record *const *recs, size_t n,
                         struct buf *out);

#endif
