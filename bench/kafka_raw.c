/*
 * bench/kafka_raw.c - bench_kafka_raw(): a plain librdkafka consumer as the baseline of the
 * Kafka source benchmark (see kafka_raw.h). It owns nothing beyond one call: the consumer,
 * the per-partition offsets it commits and the RSS probe are all made and freed here.
 *
 * Ownership notes on librdkafka: rd_kafka_new() takes the conf only on success; a message from
 * rd_kafka_consumer_poll() is ours until rd_kafka_message_destroy() (which is not NULL-safe);
 * rd_kafka_commit() borrows its list.
 */
#include "kafka_raw.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#define KR_COMMIT_EVERY 10000 /* default records between asynchronous commits */
#define KR_IDLE_MS 30000      /* no record for this long fails the run */
#define KR_RSS_EVERY_MS 50    /* VmRSS sampling interval */
#define KR_CLOSE_MS 10000     /* the final synchronous commit (librdkafka's own bound) */

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A "Vm...:" field of /proc/self/status in kB, or -1. */
static long status_kb(const char *field)
{
    char line[256];
    size_t len = strlen(field);
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");

    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, field, len) == 0) {
            kb = strtol(line + len, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

/* Reset VmHWM to the current RSS (Linux >= 4.0). True when it worked. */
static bool reset_hwm(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    bool ok;

    if (fd < 0)
        return false;
    ok = write(fd, "5", 1) == 1;
    close(fd);
    return ok;
}

/* The next offset to commit per partition, and whether it moved since the last commit. */
struct kr_offsets {
    int64_t *next;
    bool *dirty;
    int32_t n; /* partitions 0..n-1 have slots */
};

/* Remember that OFFSET of PARTITION was read. Returns 0, or -1 when out of memory. */
static int offsets_note(struct kr_offsets *o, int32_t partition, int64_t offset)
{
    if (partition >= o->n) {
        int32_t n = partition + 1;
        int64_t *next = realloc(o->next, (size_t)n * sizeof(*next));
        bool *dirty;

        if (next == NULL)
            return -1;
        o->next = next;
        dirty = realloc(o->dirty, (size_t)n * sizeof(*dirty));
        if (dirty == NULL)
            return -1;
        o->dirty = dirty;
        for (int32_t p = o->n; p < n; p++) {
            o->next[p] = -1;
            o->dirty[p] = false;
        }
        o->n = n;
    }
    o->next[partition] = offset + 1;
    o->dirty[partition] = true;
    return 0;
}

/*
 * Commit the partitions of O that moved (all read ones when ALL), asynchronously or not.
 * Returns librdkafka's error (NO_OFFSET when there was nothing to commit).
 */
static rd_kafka_resp_err_t offsets_commit(rd_kafka_t *rk, const char *topic, struct kr_offsets *o,
                                          bool all, bool async)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(o->n);
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__NO_OFFSET;

    for (int32_t p = 0; p < o->n; p++) {
        if (o->next[p] < 0 || (!all && !o->dirty[p]))
            continue;
        rd_kafka_topic_partition_list_add(list, topic, p)->offset = o->next[p];
        o->dirty[p] = false;
    }
    if (list->cnt > 0)
        err = rd_kafka_commit(rk, list, async ? 1 : 0);
    rd_kafka_topic_partition_list_destroy(list);
    return err;
}

/* Results of the asynchronous commits; runs inside rd_kafka_consumer_poll(), on our thread. */
static void commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    long *failed = opaque;

    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        (*failed)++;
}

/* PROPS' value of bench.commit.every, or the default. */
static long commit_every(const char *const *props)
{
    long every = KR_COMMIT_EVERY;

    for (size_t i = 0; props != NULL && props[i] != NULL && props[i + 1] != NULL; i += 2) {
        if (strcmp(props[i], "bench.commit.every") == 0)
            every = strtol(props[i + 1], NULL, 10);
    }
    return every;
}

/* The consumer: our defaults, then PROPS (minus bench.*). Returns new, or NULL (stderr). */
static rd_kafka_t *consumer_new(const char *bootstrap, const char *group, const char *const *props,
                                long *commit_failures)
{
    const char *base[] = {"bootstrap.servers",
                          bootstrap,
                          "group.id",
                          group,
                          "client.id",
                          "bench-kafka-raw",
                          "enable.auto.commit",
                          "false",
                          "enable.auto.offset.store",
                          "false",
                          "auto.offset.reset",
                          "earliest",
                          NULL};
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[512];
    rd_kafka_t *rk;

    for (size_t i = 0; base[i] != NULL; i += 2) {
        if (rd_kafka_conf_set(conf, base[i], base[i + 1], errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK)
            goto fail;
    }
    for (size_t i = 0; props != NULL && props[i] != NULL; i += 2) {
        if (props[i + 1] == NULL) {
            snprintf(errstr, sizeof(errstr), "property %s has no value", props[i]);
            goto fail;
        }
        if (strncmp(props[i], "bench.", 6) == 0)
            continue;
        if (rd_kafka_conf_set(conf, props[i], props[i + 1], errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK)
            goto fail;
    }
    rd_kafka_conf_set_offset_commit_cb(conf, commit_cb);
    rd_kafka_conf_set_opaque(conf, commit_failures);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (rk == NULL)
        goto fail;
    /* Everything (rebalances, commit results, messages) through rd_kafka_consumer_poll(). */
    rd_kafka_poll_set_consumer(rk);
    return rk;
fail:
    fprintf(stderr, "bench_kafka_raw: %s\n", errstr);
    rd_kafka_conf_destroy(conf);
    return NULL;
}

int bench_kafka_raw(const char *bootstrap, const char *topic, const char *group, long nrecords,
                    const char *const *props, double *recs_per_s, long *peak_rss_kb)
{
    long every = commit_every(props), since_commit = 0, got = 0, commit_failures = 0;
    bool hwm_ok = reset_hwm();
    long rss_max = status_kb("VmRSS:"), hwm;
    int64_t t_first = 0, t_end, last_record, next_sample;
    struct kr_offsets offs = {0};
    rd_kafka_topic_partition_list_t *sub;
    rd_kafka_resp_err_t err;
    rd_kafka_t *rk;
    int rc = -1;

    rk = consumer_new(bootstrap, group, props, &commit_failures);
    if (rk == NULL)
        return -1;
    sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    err = rd_kafka_subscribe(rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "bench_kafka_raw: subscribe %s: %s\n", topic, rd_kafka_err2str(err));
        goto out_close;
    }
    last_record = next_sample = now_us();
    while (got < nrecords) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, 100);
        int64_t now = now_us();

        if (now >= next_sample) {
            long rss = status_kb("VmRSS:");

            if (rss > rss_max)
                rss_max = rss;
            next_sample = now + KR_RSS_EVERY_MS * 1000;
        }
        if (msg == NULL) {
            if (now - last_record > (int64_t)KR_IDLE_MS * 1000) {
                fprintf(stderr, "bench_kafka_raw: %s: no record for %d s after %ld of %ld\n", topic,
                        KR_IDLE_MS / 1000, got, nrecords);
                goto out_close;
            }
            continue;
        }
        if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            /* PARTITION_EOF is off by default; anything else is worth a line but not fatal
             * (a broker reconnecting), except a consumer-wide fatal error. */
            fprintf(stderr, "bench_kafka_raw: %s [%d]: %s\n", topic, (int)msg->partition,
                    rd_kafka_message_errstr(msg));
            rd_kafka_message_destroy(msg);
            if (rd_kafka_fatal_error(rk, NULL, 0) != RD_KAFKA_RESP_ERR_NO_ERROR)
                goto out_close;
            continue;
        }
        if (got == 0)
            t_first = now;
        last_record = now;
        got++;
        if (offsets_note(&offs, msg->partition, msg->offset) != 0) {
            fprintf(stderr, "bench_kafka_raw: out of memory\n");
            rd_kafka_message_destroy(msg);
            goto out_close;
        }
        rd_kafka_message_destroy(msg);
        if (every > 0 && ++since_commit >= every) {
            since_commit = 0;
            /* NO_OFFSET cannot happen (something moved); other errors come to commit_cb. */
            offsets_commit(rk, topic, &offs, false, true);
        }
    }
    err = offsets_commit(rk, topic, &offs, true, false);
    t_end = now_us();
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "bench_kafka_raw: final commit: %s\n", rd_kafka_err2str(err));
        goto out_close;
    }
    if (commit_failures > 0)
        fprintf(stderr, "bench_kafka_raw: %ld asynchronous commits failed\n", commit_failures);
    *recs_per_s = t_end > t_first ? (double)nrecords * 1e6 / (double)(t_end - t_first) : 0;
    rc = 0;
out_close:
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    free(offs.next);
    free(offs.dirty);
    if (rc == 0) {
        hwm = hwm_ok ? status_kb("VmHWM:") : -1;
        *peak_rss_kb = hwm > rss_max ? hwm : rss_max;
    }
    return rc;
}
