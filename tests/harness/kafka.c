/*
 * tests/harness/kafka.c - start, command and stop sy-kafka-mock; produce, read back, committed
 * offsets and watermarks with short-lived librdkafka clients (see kafka.h).
 *
 * Ownership notes on librdkafka, as used here: rd_kafka_new() takes the conf only when it
 * succeeds; rd_kafka_producev() takes the headers only when it succeeds; a message returned by
 * rd_kafka_consumer_poll() is ours until rd_kafka_message_destroy(); metadata from
 * rd_kafka_metadata() until rd_kafka_metadata_destroy(). Delivery reports run inside our own
 * rd_kafka_poll()/rd_kafka_flush() calls, on this thread.
 */
#include "harness/kafka.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness/util.h"

#define H_KAFKA_READY_MS 15000    /* spawn until the bootstrap line (sanitizer builds) */
#define H_KAFKA_ANSWER_MS 5000    /* one command until its answer */
#define H_KAFKA_QUIT_MS 5000      /* `quit` until exit, then SIGTERM for as long again */
#define H_KAFKA_MSG_TIMEOUT 10000 /* producer message.timeout.ms */
#define H_KAFKA_META_MS 5000      /* one metadata, watermark or committed-offsets request */

/* Print the mock's log (why it did not come up). */
static void dump_log(const struct h_kafka *k)
{
    char *log = k->log_path != NULL ? h_read_file(k->log_path, 0, NULL) : NULL;

    fprintf(stderr, "harness: sy-kafka-mock log (%s):\n%s\n", k->log_path ? k->log_path : "-",
            log != NULL ? log : "(none)");
    free(log);
}

/* The sy-kafka-mock binary: $SY_KAFKA_MOCK, else next to the build of $SY_BINARY. Returns new. */
static char *mock_path(void)
{
    const char *env = getenv("SY_KAFKA_MOCK");
    const char *bin = h_binary();
    const char *slash;

    if (env != NULL && *env != '\0')
        return strdup(env);
    /* <build>/broker/switchyard -> <build>/tests/kafka_mock/sy-kafka-mock */
    slash = strrchr(bin, '/');
    if (slash != NULL) {
        const char *dir_end = slash;

        while (dir_end > bin && dir_end[-1] != '/')
            dir_end--;
        if (dir_end > bin)
            return h_strfmt("%.*stests/kafka_mock/sy-kafka-mock", (int)(dir_end - bin), bin);
    }
    return strdup("sy-kafka-mock");
}

bool h_kafka_running(const struct h_kafka *k)
{
    return k->proc.pid > 0 && !k->proc.reaped;
}

/*
 * Read one line (without its newline) from the mock's stdout into OUT, waiting until DEADLINE
 * (h_now_ms()). Returns 0, or -1 on timeout, EOF or error (nothing on stderr; the caller says
 * what it was waiting for).
 */
static int read_line(struct h_kafka *k, int64_t deadline, char *out, size_t outsz)
{
    for (;;) {
        char *nl = memchr(k->ans, '\n', k->ans_len);
        int64_t left = deadline - h_now_ms();
        struct pollfd pfd = {.fd = k->ans_fd, .events = POLLIN};
        ssize_t n;

        if (nl != NULL) {
            size_t len = (size_t)(nl - k->ans);

            snprintf(out, outsz, "%.*s", (int)len, k->ans);
            memmove(k->ans, nl + 1, k->ans_len - len - 1);
            k->ans_len -= len + 1;
            return 0;
        }
        if (k->ans_len == sizeof(k->ans)) {
            fprintf(stderr, "harness: sy-kafka-mock: answer line too long\n");
            return -1;
        }
        if (k->ans_fd < 0 || left <= 0)
            return -1;
        if (poll(&pfd, 1, (int)left) < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (pfd.revents == 0)
            continue;
        n = read(k->ans_fd, k->ans + k->ans_len, sizeof(k->ans) - k->ans_len);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return -1; /* EOF: the mock exited */
        k->ans_len += (size_t)n;
    }
}

static void close_pipes(struct h_kafka *k)
{
    if (k->cmd_fd >= 0)
        close(k->cmd_fd);
    if (k->ans_fd >= 0)
        close(k->ans_fd);
    k->cmd_fd = k->ans_fd = -1;
    k->ans_len = 0;
}

int h_kafka_start(struct h_kafka *k, int brokers, const char *const *topic_specs)
{
    char line[1024], nbrokers[16];
    char *argv[4 + 2 * 256 + 1];
    char *path;
    size_t argc = 0;
    int rc;

    if (h_kafka_running(k))
        return 0;
    if (brokers < 1 || brokers > 64) {
        fprintf(stderr, "harness: h_kafka_start: %d brokers (1..64)\n", brokers);
        return -1;
    }
    if (k->dir == NULL) {
        k->dir = h_tmpdir_create("kafka");
        if (k->dir == NULL)
            return -1;
        k->log_path = h_strfmt("%s/sy-kafka-mock.log", k->dir);
    }
    path = mock_path();
    snprintf(nbrokers, sizeof(nbrokers), "%d", brokers);
    argv[argc++] = path;
    argv[argc++] = "--brokers";
    argv[argc++] = nbrokers;
    for (size_t i = 0; topic_specs != NULL && topic_specs[i] != NULL; i++) {
        if (argc + 3 > sizeof(argv) / sizeof(argv[0])) {
            fprintf(stderr, "harness: h_kafka_start: too many topics\n");
            free(path);
            return -1;
        }
        argv[argc++] = "--topic";
        argv[argc++] = (char *)topic_specs[i];
    }
    argv[argc] = NULL;
    rc = h_proc_spawn_piped(&k->proc, argv, NULL, k->dir, k->log_path, &k->cmd_fd, &k->ans_fd);
    free(path);
    if (rc != 0)
        return -1;
    k->brokers = brokers;
    /* The brokers listen before the line is printed: once it is read, clients can connect. */
    if (read_line(k, h_now_ms() + H_KAFKA_READY_MS, line, sizeof(line)) != 0 ||
        strncmp(line, "bootstrap=", 10) != 0 || line[10] == '\0') {
        fprintf(stderr, "harness: sy-kafka-mock gave no bootstrap line within %d ms\n",
                H_KAFKA_READY_MS);
        h_kafka_stop(k);
        dump_log(k);
        return -1;
    }
    k->bootstrap = strdup(line + 10);
    return 0;
}

int h_kafka_cmd(struct h_kafka *k, const char *fmt, ...)
{
    char cmd[512], answer[1024];
    va_list ap;
    size_t len, off = 0;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd) - 1, fmt, ap);
    va_end(ap);
    if (!h_kafka_running(k) || k->cmd_fd < 0) {
        fprintf(stderr, "harness: sy-kafka-mock: %s: not running\n", cmd);
        return -1;
    }
    len = strlen(cmd);
    cmd[len++] = '\n';
    while (off < len) {
        ssize_t n = write(k->cmd_fd, cmd + off, len - off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "harness: sy-kafka-mock: write: %s\n", strerror(errno));
            return -1;
        }
        off += (size_t)n;
    }
    cmd[len - 1] = '\0';
    if (read_line(k, h_now_ms() + H_KAFKA_ANSWER_MS, answer, sizeof(answer)) != 0) {
        fprintf(stderr, "harness: sy-kafka-mock: %s: no answer within %d ms\n", cmd,
                H_KAFKA_ANSWER_MS);
        return -1;
    }
    if (strcmp(answer, "ok") == 0)
        return 0;
    fprintf(stderr, "harness: sy-kafka-mock: %s: %s\n", cmd, answer);
    return -1;
}

int h_kafka_stop(struct h_kafka *k)
{
    int rc = 0;

    /* Clients first, while their brokers still answer (a destroy against a dead cluster only
     * takes longer). */
    if (k->rk != NULL) {
        rd_kafka_destroy(k->rk);
        k->rk = NULL;
    }
    if (h_kafka_running(k)) {
        /* A write to a mock that died fails with EPIPE (SIGPIPE is ignored by h_proc_init). */
        if (k->cmd_fd < 0 || write(k->cmd_fd, "quit\n", 5) != 5 ||
            h_proc_wait(&k->proc, H_KAFKA_QUIT_MS) != 0) {
            kill(k->proc.pid, SIGCONT); /* a test may have stopped it */
            if (h_proc_stop(&k->proc, SIGTERM, H_KAFKA_QUIT_MS) < 0 && !k->proc.reaped)
                rc = -1;
        }
        /* A clean stop is exit 0; anything else (a sanitizer report, a crash) shows its log. */
        if (rc == 0 && h_proc_exit_code(&k->proc) != 0) {
            fprintf(stderr, "harness: sy-kafka-mock exited with code %d\n",
                    h_proc_exit_code(&k->proc));
            dump_log(k);
            rc = -1;
        }
    }
    close_pipes(k);
    free(k->bootstrap);
    k->bootstrap = NULL;
    return rc;
}

void h_kafka_free(struct h_kafka *k)
{
    h_kafka_stop(k);
    if (k->dir != NULL)
        h_rm_rf(k->dir);
    free(k->dir);
    free(k->log_path);
    *k = (struct h_kafka)H_KAFKA_INIT;
}

rd_kafka_conf_t *h_kafka_conf(const struct h_kafka *k, const char *const *props)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[512];

    if (rd_kafka_conf_set(conf, "bootstrap.servers", k->bootstrap ? k->bootstrap : "", errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK)
        goto fail;
    for (size_t i = 0; props != NULL && props[i] != NULL; i += 2) {
        if (props[i + 1] == NULL) {
            snprintf(errstr, sizeof(errstr), "property %s has no value", props[i]);
            goto fail;
        }
        if (rd_kafka_conf_set(conf, props[i], props[i + 1], errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK)
            goto fail;
    }
    return conf;
fail:
    fprintf(stderr, "harness: kafka conf: %s\n", errstr);
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* A new client of TYPE with PROPS. Returns new (rd_kafka_destroy), NULL on error (stderr). */
static rd_kafka_t *client_new(const struct h_kafka *k, rd_kafka_type_t type,
                              const char *const *props,
                              void (*dr)(rd_kafka_t *, const rd_kafka_message_t *, void *),
                              void *opaque)
{
    rd_kafka_conf_t *conf = h_kafka_conf(k, props);
    char errstr[512];
    rd_kafka_t *rk;

    if (conf == NULL)
        return NULL;
    if (dr != NULL)
        rd_kafka_conf_set_dr_msg_cb(conf, dr);
    rd_kafka_conf_set_opaque(conf, opaque);
    rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "harness: rd_kafka_new: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

/* ---- producing ------------------------------------------------------------------------- */

/*
 * The delivery of one h_kafka_produce() record. Heap-allocated: if we give up waiting, the
 * report may still come in a later poll of the same producer, and then frees it.
 */
struct delivery {
    bool done;
    bool abandoned;
    rd_kafka_resp_err_t err;
    int64_t offset;
};

/* Delivery report of h_kafka_produce(); runs inside our poll/flush, on this thread. */
static void one_dr(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    struct delivery *d = msg->_private;

    if (d == NULL)
        return;
    if (d->abandoned) {
        free(d);
        return;
    }
    d->done = true;
    d->err = msg->err;
    d->offset = msg->offset;
}

/* K's single-record producer, made on first use. Returns it (borrowed) or NULL. */
static rd_kafka_t *producer(struct h_kafka *k)
{
    static const char *const props[] = {"client.id", "sy-harness", "message.timeout.ms", "10000",
                                        "linger.ms", "0",          "retry.backoff.ms",   "50",
                                        NULL};

    if (k->rk == NULL && k->bootstrap != NULL)
        k->rk = client_new(k, RD_KAFKA_PRODUCER, props, one_dr, NULL);
    return k->rk;
}

int64_t h_kafka_produce(struct h_kafka *k, const char *topic, int32_t partition, const void *key,
                        size_t key_len, const void *value, size_t value_len,
                        const char *const *hdr_names, const char *const *hdr_values, size_t n_hdrs)
{
    rd_kafka_t *rk = producer(k);
    rd_kafka_headers_t *hdrs = NULL;
    size_t klen = key != NULL ? key_len : 0, vlen = value != NULL ? value_len : 0;
    struct delivery *d;
    rd_kafka_resp_err_t err;
    int64_t deadline;

    if (rk == NULL)
        return -1;
    if (n_hdrs > 0) {
        hdrs = rd_kafka_headers_new(n_hdrs);
        for (size_t i = 0; i < n_hdrs; i++)
            rd_kafka_header_add(hdrs, hdr_names[i], -1, hdr_values[i],
                                hdr_values[i] != NULL ? (ssize_t)strlen(hdr_values[i]) : 0);
    }
    d = calloc(1, sizeof(*d));
    if (d == NULL)
        abort();
    err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                            RD_KAFKA_V_PARTITION(partition < 0 ? RD_KAFKA_PARTITION_UA : partition),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, klen),
                            RD_KAFKA_V_VALUE((void *)value, vlen), RD_KAFKA_V_HEADERS(hdrs),
                            RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* Not enqueued: the headers and the delivery are still ours. */
        fprintf(stderr, "harness: produce to %s [%d]: %s\n", topic, (int)partition,
                rd_kafka_err2str(err));
        rd_kafka_headers_destroy(hdrs);
        free(d);
        return -1;
    }
    /* message.timeout.ms bounds the report; the extra seconds cover the timeout scan. */
    deadline = h_now_ms() + H_KAFKA_MSG_TIMEOUT + 5000;
    while (!d->done && h_now_ms() < deadline)
        rd_kafka_flush(rk, 100);
    if (!d->done) {
        fprintf(stderr, "harness: produce to %s [%d]: no delivery report\n", topic, (int)partition);
        d->abandoned = true; /* freed by its report, if one ever comes */
        return -1;
    }
    if (d->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "harness: produce to %s [%d]: %s\n", topic, (int)partition,
                rd_kafka_err2str(d->err));
        free(d);
        return -1;
    }
    {
        int64_t offset = d->offset;

        free(d);
        return offset;
    }
}

/* Counters of h_kafka_produce_n(), the producer's opaque. */
struct bulk {
    long failed;
    rd_kafka_resp_err_t first_err;
};

/* Delivery report of h_kafka_produce_n() (errors only: delivery.report.only.error). */
static void bulk_dr(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    struct bulk *b = opaque;

    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    if (b->failed++ == 0)
        b->first_err = msg->err;
}

/* Partition count of TOPIC in RK's view of the cluster (all-topics metadata, so nothing is
 * auto-created), or -1 (stderr). */
static int partition_count(rd_kafka_t *rk, const char *topic)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, H_KAFKA_META_MS);
    int n = -1;

    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "harness: metadata: %s\n", rd_kafka_err2str(err));
        return -1;
    }
    for (int i = 0; i < md->topic_cnt; i++) {
        if (strcmp(md->topics[i].topic, topic) == 0 && md->topics[i].err == 0)
            n = md->topics[i].partition_cnt;
    }
    rd_kafka_metadata_destroy(md);
    if (n < 0)
        fprintf(stderr, "harness: topic %s does not exist\n", topic);
    return n;
}

int h_kafka_partitions(struct h_kafka *k, const char *topic)
{
    rd_kafka_t *rk = producer(k);

    return rk != NULL ? partition_count(rk, topic) : -1;
}

int h_kafka_produce_n(struct h_kafka *k, const char *topic, long n, size_t value_size,
                      const char *const *props)
{
    /* Big batches and a deep queue: the mock stores whole batches, and a producer that waits
     * on a full queue is what limits a bulk load. Caller's PROPS come after and win. */
    static const char *const base[] = {"client.id",
                                       "sy-harness-bulk",
                                       "linger.ms",
                                       "20",
                                       "batch.num.messages",
                                       "10000",
                                       "queue.buffering.max.messages",
                                       "500000",
                                       "message.timeout.ms",
                                       "60000",
                                       "delivery.report.only.error",
                                       "true",
                                       NULL};
    const char *all[64];
    size_t n_all = 0;
    struct bulk b = {0};
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    char *value;
    int parts, rc = -1;
    int64_t deadline;

    for (size_t i = 0; base[i] != NULL; i++)
        all[n_all++] = base[i];
    for (size_t i = 0; props != NULL && props[i] != NULL && n_all + 2 < 64; i++)
        all[n_all++] = props[i];
    all[n_all] = NULL;
    if (k->bootstrap == NULL || n < 0)
        return -1;
    rk = client_new(k, RD_KAFKA_PRODUCER, all, bulk_dr, &b);
    if (rk == NULL)
        return -1;
    parts = partition_count(rk, topic);
    if (parts <= 0) {
        rd_kafka_destroy(rk);
        return -1;
    }
    rkt = rd_kafka_topic_new(rk, topic, NULL);
    value = malloc(value_size + 11);
    if (rkt == NULL || value == NULL)
        abort();
    memset(value, 'x', value_size + 11);
    for (long i = 0; i < n; i++) {
        char digits[24];

        snprintf(digits, sizeof(digits), "%010ld", i);
        memcpy(value, digits, value_size < 10 ? value_size : 10);
        /* F_COPY: the value buffer is reused for the next record. */
        while (rd_kafka_produce(rkt, (int32_t)(i % parts), RD_KAFKA_MSG_F_COPY, value, value_size,
                                NULL, 0, NULL) != 0) {
            rd_kafka_resp_err_t err = rd_kafka_last_error();

            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                fprintf(stderr, "harness: produce to %s: %s\n", topic, rd_kafka_err2str(err));
                goto out;
            }
            rd_kafka_poll(rk, 5); /* the queue drains as batches are acknowledged */
        }
        if ((i & 1023) == 0)
            rd_kafka_poll(rk, 0);
    }
    deadline = h_now_ms() + 10000 + n / 10;
    while (rd_kafka_outq_len(rk) > 0 && h_now_ms() < deadline)
        rd_kafka_flush(rk, 100);
    if (rd_kafka_outq_len(rk) > 0)
        fprintf(stderr, "harness: produce %ld to %s: %d not delivered in time\n", n, topic,
                rd_kafka_outq_len(rk));
    else if (b.failed > 0)
        fprintf(stderr, "harness: produce %ld to %s: %ld failed, first: %s\n", n, topic, b.failed,
                rd_kafka_err2str(b.first_err));
    else
        rc = 0;
out:
    free(value);
    rd_kafka_topic_destroy(rkt);
    /* Anything still queued is purged by the destroy; its reports are dropped. */
    rd_kafka_destroy(rk);
    return rc;
}

/* ---- consuming and offsets ------------------------------------------------------------- */

/* A consumer in GROUP (NULL: a throwaway id) that will not commit. Returns new, or NULL. */
static rd_kafka_t *consumer_new(const struct h_kafka *k, const char *group)
{
    static unsigned seq;
    char throwaway[64];
    const char *props[] = {"group.id",
                           group,
                           "client.id",
                           "sy-harness-reader",
                           "enable.auto.commit",
                           "false",
                           "enable.auto.offset.store",
                           "false",
                           "enable.partition.eof",
                           "true",
                           "auto.offset.reset",
                           "earliest",
                           NULL};
    rd_kafka_t *rk;

    if (group == NULL) {
        /* assign() needs a group id, but it is never joined and nothing is committed. */
        snprintf(throwaway, sizeof(throwaway), "sy-harness-reader-%d-%u", (int)getpid(), ++seq);
        props[1] = throwaway;
    }
    rk = client_new(k, RD_KAFKA_CONSUMER, props, NULL, NULL);
    if (rk != NULL)
        rd_kafka_poll_set_consumer(rk);
    return rk;
}

/* Close and destroy a consumer of consumer_new(). */
static void consumer_free(rd_kafka_t *rk)
{
    if (rk == NULL)
        return;
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

long h_kafka_consume_all(struct h_kafka *k, const char *topic, int timeout_ms, h_kafka_msg_fn *fn,
                         void *arg)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    rd_kafka_t *rk = consumer_new(k, NULL);
    rd_kafka_topic_partition_list_t *parts = NULL;
    bool *at_end = NULL;
    long count = -1, seen = 0;
    int n, n_at_end = 0;
    rd_kafka_resp_err_t err;

    if (rk == NULL)
        return -1;
    n = partition_count(rk, topic);
    if (n <= 0)
        goto out;
    parts = rd_kafka_topic_partition_list_new(n);
    for (int p = 0; p < n; p++)
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    err = rd_kafka_assign(rk, parts);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "harness: assign %s: %s\n", topic, rd_kafka_err2str(err));
        goto out;
    }
    at_end = calloc((size_t)n, sizeof(*at_end));
    if (at_end == NULL)
        abort();
    /* Done when every partition has said PARTITION_EOF since its last record. */
    while (n_at_end < n) {
        int64_t left = deadline - h_now_ms();
        rd_kafka_message_t *msg;
        int32_t p;

        if (left <= 0) {
            fprintf(stderr, "harness: read %s: %d of %d partitions at their end after %d ms\n",
                    topic, n_at_end, n, timeout_ms);
            goto out;
        }
        msg = rd_kafka_consumer_poll(rk, left < 100 ? (int)left : 100);
        if (msg == NULL)
            continue;
        p = msg->partition;
        if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (p >= 0 && p < n && !at_end[p]) {
                at_end[p] = true;
                n_at_end++;
            }
        } else if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "harness: read %s [%d]: %s\n", topic, (int)p,
                    rd_kafka_message_errstr(msg));
            rd_kafka_message_destroy(msg);
            goto out;
        } else {
            if (p >= 0 && p < n && at_end[p]) {
                at_end[p] = false; /* written to since its EOF */
                n_at_end--;
            }
            seen++;
            if (fn != NULL && fn(msg, arg) != 0) {
                rd_kafka_message_destroy(msg);
                break;
            }
        }
        rd_kafka_message_destroy(msg);
    }
    count = seen;
out:
    free(at_end);
    if (parts != NULL)
        rd_kafka_topic_partition_list_destroy(parts);
    consumer_free(rk);
    return count;
}

int64_t h_kafka_committed(struct h_kafka *k, const char *group, const char *topic,
                          int32_t partition)
{
    /* No subscribe(): the consumer looks up the group's coordinator and sends OffsetFetch,
     * but never joins, so the group under test sees no new member and no rebalance. */
    rd_kafka_t *rk = consumer_new(k, group);
    rd_kafka_topic_partition_list_t *parts;
    rd_kafka_resp_err_t err;
    int64_t offset = -1;

    if (rk == NULL)
        return -1;
    parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, topic, partition);
    err = rd_kafka_committed(rk, parts, H_KAFKA_META_MS);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        err = parts->elems[0].err;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        fprintf(stderr, "harness: committed offset of %s on %s [%d]: %s\n", group, topic,
                (int)partition, rd_kafka_err2str(err));
    else
        offset = parts->elems[0].offset; /* RD_KAFKA_OFFSET_INVALID when none */
    rd_kafka_topic_partition_list_destroy(parts);
    consumer_free(rk);
    return offset;
}

/*
 * ListOffsets for TOPIC [PARTITION] at logical timestamp WHICH (-2 earliest, -1 latest) into
 * *OUT. Returns 0 or -1 (on stderr).
 */
static int list_offset(rd_kafka_t *rk, const char *topic, int32_t partition, int64_t which,
                       int64_t *out)
{
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_resp_err_t err;

    rd_kafka_topic_partition_list_add(parts, topic, partition)->offset = which;
    err = rd_kafka_offsets_for_times(rk, parts, H_KAFKA_META_MS);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        err = parts->elems[0].err;
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        *out = parts->elems[0].offset;
    else
        fprintf(stderr, "harness: %s offset of %s [%d]: %s\n", which == -2 ? "low" : "high", topic,
                (int)partition, rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(parts);
    return err == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

int h_kafka_watermarks(struct h_kafka *k, const char *topic, int32_t partition, int64_t *lo,
                       int64_t *hi)
{
    rd_kafka_t *rk = producer(k);
    int64_t l = -1;

    /* Not rd_kafka_query_watermark_offsets(): in 2.0.2 it retries for ever, whatever its
     * timeout, while the leader is down. rd_kafka_offsets_for_times() with the logical
     * timestamps -2/-1 asks the same ListOffsets and keeps to its timeout. */
    if (rk == NULL || (lo != NULL && list_offset(rk, topic, partition, -2, &l) != 0) ||
        list_offset(rk, topic, partition, -1, hi) != 0)
        return -1;
    if (lo != NULL)
        *lo = l;
    return 0;
}

int64_t h_kafka_high_watermark(struct h_kafka *k, const char *topic, int32_t partition)
{
    int64_t hi;

    return h_kafka_watermarks(k, topic, partition, NULL, &hi) == 0 ? hi : -1;
}
