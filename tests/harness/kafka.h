/*
 * tests/harness/kafka.h - a Kafka cluster for the integration tests and benchmarks:
 * librdkafka's mock cluster served by the sy-kafka-mock program (tests/kafka_mock/) in a
 * process of its own, on kernel-picked loopback ports, driven by line commands, killed by PID
 * at the end. Plus the client side the tests need around it: produce (one record, or a bulk
 * load), read a whole topic, a group's committed offsets, watermarks.
 *
 *   struct h_kafka k = H_KAFKA_INIT;
 *   const char *topics[] = {"orders:6", "orders-failed:1", NULL};
 *   h_kafka_start(&k, 3, topics);          // spawns $SY_KAFKA_MOCK, reads bootstrap=...
 *   ... k.bootstrap is "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3" ...
 *   h_kafka_produce(&k, "orders", -1, "k", 1, "v", 1, NULL, NULL, 0);
 *   h_kafka_cmd(&k, "down %d", 2);         // broker 2 refuses connections ... "up 2"
 *   h_kafka_committed(&k, "my-group", "orders", 0);
 *   h_kafka_free(&k);                      // quit (then SIGTERM, SIGKILL), remove the temp dir
 *
 * The binary is $SY_KAFKA_MOCK, else <dir of $SY_BINARY>/../tests/kafka_mock/sy-kafka-mock.
 * What the mock does and does not do (5 MiB retention per partition, auto-created topics get 4
 * partitions, no fixed ports, leaders among the first 3 brokers) is in
 * tests/kafka_mock/kafka_mock.c. Nothing survives a stop: a new start is an empty cluster on
 * new ports.
 *
 * Spawn from the main thread only (see proc.h). All functions are for one thread at a time
 * (the one that owns K). Every wait is bounded. Failures are return values plus stderr lines
 * (the mock's log is printed when it does not come up), never cmocka asserts.
 */
#ifndef SY_HARNESS_KAFKA_H
#define SY_HARNESS_KAFKA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "harness/proc.h"

/* What h_kafka_committed() returns for a partition the group never committed. */
#define H_KAFKA_NO_OFFSET RD_KAFKA_OFFSET_INVALID /* -1001 */

struct h_kafka {
    char *bootstrap;    /* owned: "127.0.0.1:P1,..." while running; NULL otherwise */
    int brokers;        /* broker ids are 1..brokers */
    struct h_proc proc; /* the sy-kafka-mock process; proc.pid 0 when none was started */
    int cmd_fd;         /* write end of the mock's stdin; -1 when not running */
    int ans_fd;         /* read end of the mock's stdout; -1 when not running */
    char ans[1024];     /* bytes read from ans_fd past the last whole line */
    size_t ans_len;
    char *dir;      /* owned: temp dir (the mock's log) */
    char *log_path; /* owned: the mock's stderr */
    rd_kafka_t *rk; /* owned: producer for h_kafka_produce() and watermarks; lazily made */
};

/* A struct h_kafka that owns nothing (the fds are -1). */
#define H_KAFKA_INIT                                                                               \
    {                                                                                              \
        .cmd_fd = -1, .ans_fd = -1                                                                 \
    }

/*
 * Start a mock cluster of BROKERS (1..64) brokers with TOPIC_SPECS ("NAME:PARTITIONS",
 * NULL-terminated; may be NULL) created, and wait (bounded, 15 s) for its bootstrap line.
 * K must be H_KAFKA_INIT or freed. Returns 0 (k->bootstrap set) or -1 (the log is printed).
 */
int h_kafka_start(struct h_kafka *k, int brokers, const char *const *topic_specs);

/* True when the mock process is running. */
bool h_kafka_running(const struct h_kafka *k);

/*
 * Send one command line (printf FMT: "down 1", "up 1", "rtt 2 500", "topic NAME 3") and wait
 * up to 5 s for its answer. Returns 0 on `ok`, -1 on `error: ...`, no answer or no mock (a
 * line on stderr says which). The command has taken effect when this returns 0.
 */
int h_kafka_cmd(struct h_kafka *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Stop the mock: `quit`, then SIGTERM after 5 s, then SIGKILL. Destroys K's producer first.
 * Returns 0 when it exited with code 0 (or nothing was running), -1 when it would not die or
 * exited otherwise (a crash, a sanitizer report: its log is printed).
 */
int h_kafka_stop(struct h_kafka *k);

/* Stop if running, remove the temp dir, free what K holds. K is H_KAFKA_INIT afterwards. */
void h_kafka_free(struct h_kafka *k);

/*
 * A new librdkafka configuration with bootstrap.servers set to K's cluster and PROPS applied
 * (name, value, ..., NULL; may be NULL). Returns new (rd_kafka_conf_destroy, or handed to
 * rd_kafka_new), or NULL when a property is refused (librdkafka's message on stderr).
 */
rd_kafka_conf_t *h_kafka_conf(const struct h_kafka *k, const char *const *props);

/*
 * Produce one record synchronously and wait for its delivery report (bounded: the producer's
 * message.timeout.ms is 10 s). PARTITION -1 lets the partitioner choose (by key). KEY may be
 * NULL (no key); VALUE NULL is a tombstone (null value). N_HDRS headers HDR_NAMES[i] =
 * HDR_VALUES[i] (a NULL value is a null header; both arrays may be NULL when N_HDRS is 0).
 * Borrows everything. Returns the record's offset, or -1 (with the delivery error on stderr).
 */
int64_t h_kafka_produce(struct h_kafka *k, const char *topic, int32_t partition, const void *key,
                        size_t key_len, const void *value, size_t value_len,
                        const char *const *hdr_names, const char *const *hdr_values, size_t n_hdrs);

/*
 * Produce N records of VALUE_SIZE bytes into TOPIC as fast as the producer goes, record i into
 * partition i % (the topic's partition count), no key, no headers. Value i starts with i as 10
 * decimal digits (when VALUE_SIZE allows) and is 'x' after that, so it compresses well. PROPS
 * (name, value, ..., NULL; may be NULL) are extra producer properties, e.g. compression.codec
 * lz4 to fit a large backlog in the mock's 5 MiB per partition. Waits for every delivery
 * report (bounded: 10 s plus 1 s per 10,000 records). Returns 0 when all N were delivered, -1
 * otherwise (how many failed, and the first error, on stderr).
 */
int h_kafka_produce_n(struct h_kafka *k, const char *topic, long n, size_t value_size,
                      const char *const *props);

/*
 * Called by h_kafka_consume_all() for each record, in partition order within a partition.
 * MSG is borrowed for the duration of the call (rd_kafka_message_headers() works on it).
 * Return 0 to go on, anything else to stop reading.
 */
typedef int h_kafka_msg_fn(const rd_kafka_message_t *msg, void *arg);

/*
 * Read TOPIC from the beginning of every partition (assign(), a throwaway group id, nothing
 * committed, the group never joined) until every partition has reached its end, calling FN
 * (may be NULL: just count) for each record. Returns how many records were read, or -1 when
 * the end was not reached within TIMEOUT_MS, the topic does not exist or a fetch failed (on
 * stderr).
 */
long h_kafka_consume_all(struct h_kafka *k, const char *topic, int timeout_ms, h_kafka_msg_fn *fn,
                         void *arg);

/*
 * The offset GROUP committed for TOPIC [PARTITION] (the next offset it will read), asked with
 * rd_kafka_committed() by a consumer that does not subscribe, so it never joins the group and
 * triggers no rebalance. Returns it, H_KAFKA_NO_OFFSET (-1001) when the group committed
 * nothing there, or -1 on error (on stderr).
 */
int64_t h_kafka_committed(struct h_kafka *k, const char *group, const char *topic,
                          int32_t partition);

/*
 * The low and high watermarks of TOPIC [PARTITION] from its leader (*LO may be NULL). The high
 * one is the offset the next record will get; the low one moves up when the mock drops old
 * batches (retention). Returns 0 or -1 (on stderr).
 */
int h_kafka_watermarks(struct h_kafka *k, const char *topic, int32_t partition, int64_t *lo,
                       int64_t *hi);

/* The high watermark of TOPIC [PARTITION], or -1 (on stderr). */
int64_t h_kafka_high_watermark(struct h_kafka *k, const char *topic, int32_t partition);

/* The partition count of TOPIC from the cluster's metadata, or -1 (unknown topic; on stderr). */
int h_kafka_partitions(struct h_kafka *k, const char *topic);

#endif
