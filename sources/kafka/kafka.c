/*
 * sources/kafka/kafka.c - Kafka topics through a consumer group (librdkafka's high-level
 * consumer), one batch in flight per partition, offsets committed only past what the function
 * finished.
 *
 * The loop: librdkafka keeps its own threads; everything it has for us (messages, rebalances,
 * commit results, errors, logs) is forwarded to the consumer queue, whose io event writes a byte
 * to our pipe when the queue becomes non-empty. The loop reads the pipe and serves the queue with
 * rd_kafka_consume_batch_queue(timeout 0), which also runs our callbacks, on the loop thread.
 * No thread of ours polls, nothing waits; the one exception is AT_TIMESTAMP, whose offset lookups
 * (blocking calls of librdkafka 2.0.2) run on a short-lived thread `sy-kafka-ts` that owns only
 * the partition list it was handed, and the final rd_kafka_destroy(), handed to a detached
 * `sy-kafka-close` thread that owns the handle from then on.
 *
 * Offsets: every delivered offset stays in its partition's ring until it is committed; an ack
 * marks it done, a release marks it given back. The commit position of a partition is its first
 * offset not done (or the one after the last delivered): a record is never committed before the
 * function finished with it and with every record before it. Commits are asynchronous, batched
 * (one commit of every partition that moved, at most every COMMIT_DELAY_MS), and waited for on
 * revocation and at stop.
 *
 * Flow: each assigned partition's messages stay in a queue of their own (librdkafka's partition
 * queue, not forwarded to the consumer queue), which librdkafka stops fetching into once it holds
 * queued.min.messages (or queued.max.messages.kbytes). We read them into records at once, into
 * the partition's staging ring, while the consumer as a whole stages fewer than STAGE_MAX
 * records (STAGE_MAX_BYTES), each partition its share of it: so librdkafka's queues stay below
 * their threshold and keep being fetched into, and what is fetched ahead is bounded for the
 * consumer, not per partition (48 partitions stage no more than 6). From the staging ring we
 * deliver only while the host has room, shared out evenly between the partitions that have
 * records (the host runs one batch per partition at a time: room given to the first ones only
 * left the others idle), and while fewer than ctx->partition_window of the partition's records
 * are out with the host: so a partition whose records fail stops fetching (its share
 * fills, then librdkafka's queue) while the others go on, and pause() stops delivering. Nothing is
 * ever paused in librdkafka (2.0.2 can skip messages of a partition paused and resumed while a
 * fetch is in flight, fixed in 2.1.0). The consumer queue then carries only events (rebalances,
 * commit results, errors, logs); it is served at every wakeup and at least every KEEPALIVE_MS
 * (max.poll.interval.ms counts from the last time it was).
 *
 * Rebalances (eager and cooperative): on revocation the partitions stop being delivered, the
 * host gives back what it had not started (host->revoke), the running batches get until
 * ctx->drain_wait_ms to end, then what finished is committed, the commit is waited for, and only
 * then are the partitions unassigned. A lost assignment (the session expired) is unassigned at
 * once without a commit: the partitions are someone else's already. Attempt counts are not
 * carried to the next owner (it starts the policy over); record age is, since it is computed
 * from the records' own timestamps.
 */
#include "kafka_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/detach.h"
#include "core/errors.h"
#include "core/evhelp.h"
#include "core/log.h"
#include "core/time.h"

#define COMMIT_DELAY_MS 20  /* acks collected into one commit */
#define COMMIT_RETRY_MS 500 /* after a failed commit */
#define POLL_BATCH 512      /* messages taken from librdkafka per call */
#define POLL_TURN_MAX 8192  /* messages per loop turn before yielding */
/* Records read ahead of the host, over all partitions (see "Flow"). A partition whose queue
 * filled waits for its broker thread to wake up (2.0.2: on I/O, an op, or after a second) before
 * it is fetched into again, so what is read ahead should last that long: at the 100 ms metadata
 * refresh (default_props), 16384 records last 100 ms at 160 k records/s. More did not drain a
 * 6-partition backlog measurably faster (49152 for few partitions: 195 k vs 202 k records/s)
 * and took a 48-partition one over 64 MB (32768: 68 MB; bench_esm). */
#define STAGE_MAX 16384
#define STAGE_MAX_BYTES (24u * 1024u * 1024u)
#define STOP_WAIT_MS 10000    /* commit + close at stop, at most */
#define REVOKE_COMMIT_MS 5000 /* the commit of a revocation, at most */
#define TICK_MS 100
#define KEEPALIVE_MS 5000 /* serve the consumer queue at least this often */

/* ---------------------------------------------------------------------------------------- */
/* The config table                                                                          */

static const char *const start_names[] = {"TRIM_HORIZON", "LATEST", "AT_TIMESTAMP", NULL};

static const struct cfg_field kafka_fields[] = {
    CFG_STR("bootstrap_servers", struct src_kafka_cfg, bootstrap_servers, NULL, CFG_F_REQUIRED,
            "host:port[,host:port...] of the Kafka cluster (librdkafka's bootstrap.servers)"),
    CFG_STRLIST("topics", struct src_kafka_cfg, topics, CFG_F_REQUIRED,
                "the topics to read: names, or ^regex subscriptions (librdkafka's form)"),
    CFG_STR("consumer_group", struct src_kafka_cfg, consumer_group, NULL, 0,
            "the consumer group (group.id); brokers that share it split the partitions; "
            "default switchyard-<mapping name>"),
    CFG_ENUM("starting_position", struct src_kafka_cfg, starting_position, start_names,
             SRC_KAFKA_TRIM_HORIZON, 0,
             "where a partition without a committed offset starts: TRIM_HORIZON (the oldest "
             "record), LATEST (records produced from now on) or AT_TIMESTAMP; committed offsets "
             "always win"),
    CFG_INT("starting_position_timestamp", struct src_kafka_cfg, starting_position_timestamp, 0, 0,
            2147483647, 0,
            "AT_TIMESTAMP: Unix seconds; the first record at or after it (the end when none)"),
    CFG_STRMAP("properties", struct src_kafka_cfg, properties, 0,
               "librdkafka consumer properties (security.protocol, sasl.*, ssl.*, client.id, "
               "fetch and queue sizes...), over switchyard's defaults"),
};

/* Properties switchyard sets itself, and the key that sets them instead. */
static const struct {
    const char *prop, *instead;
} owned_props[] = {
    {"bootstrap.servers", "bootstrap_servers"},
    {"metadata.broker.list", "bootstrap_servers"},
    {"group.id", "consumer_group"},
    {"enable.auto.commit", "nothing: switchyard commits after the function finished"},
    {"enable.auto.offset.store", "nothing: switchyard stores and commits offsets itself"},
    {"auto.offset.reset", "starting_position"},
};

/*
 * Our defaults, under the user's properties. Each partition's messages wait in a queue of their
 * own (see "Flow" above), and librdkafka 2.0.2 applies queued.min.messages (default 100000) and
 * queued.max.messages.kbytes (default 65536 KB) to each of those queues: with its defaults a
 * backlog on 48 partitions filled 382 MB (bench_esm). A partition is fetched into only while
 * its queue is below both when its broker thread looks, right after the previous fetch was
 * queued; once it was not, it is looked at again only when that thread wakes up, which 2.0.2
 * does on I/O, on an op, or after a second (2.1.0 added fetch.queue.backoff.ms for this). So
 * the thresholds must stay above what one fetch brings (64 KB per partition, or one producer
 * batch when that is larger, ~1000 records of 100 bytes here), we read each queue out into our
 * staging at once, and the metadata refresh every 100 ms is an op that wakes a thread that
 * stopped. 2000 records / 128 KB per partition keep a 48-partition backlog under 64 MB;
 * 256 KB roughly doubled the 6-partition drain and took that backlog to ~90 MB.
 * docs/mappings.md has the measurements.
 */
static const char *const default_props[][2] = {
    {"queued.min.messages", "2000"},      {"queued.max.messages.kbytes", "128"},
    {"fetch.message.max.bytes", "65536"}, {"fetch.max.bytes", "1048576"},
    {"fetch.wait.max.ms", "100"},         {"topic.metadata.refresh.interval.ms", "100"},
    {"fetch.error.backoff.ms", "100"},    {"reconnect.backoff.ms", "100"},
    {"reconnect.backoff.max.ms", "5000"}, {"enable.partition.eof", "false"},
    {"log.connection.close", "false"},    {"log.queue", "true"},
};

/* A conf with the defaults and CFG's properties; NULL with WHY (librdkafka's text). */
static rd_kafka_conf_t *conf_build(const struct src_kafka_cfg *c, const char *group, char *why,
                                   size_t whysz)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[512];

    if (conf == NULL) {
        snprintf(why, whysz, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < sizeof(default_props) / sizeof(default_props[0]); i++)
        if (rd_kafka_conf_set(conf, default_props[i][0], default_props[i][1], err, sizeof(err)) !=
            RD_KAFKA_CONF_OK) {
            snprintf(why, whysz, "%s: %s", default_props[i][0], err);
            goto fail;
        }
    for (size_t i = 0; i < c->properties.n; i++) {
        const char *k = c->properties.keys[i];

        for (size_t j = 0; j < sizeof(owned_props) / sizeof(owned_props[0]); j++)
            if (strcmp(k, owned_props[j].prop) == 0) {
                snprintf(why, whysz, "%s is set by switchyard (use %s)", k, owned_props[j].instead);
                goto fail;
            }
        if (rd_kafka_conf_set(conf, k, c->properties.vals[i], err, sizeof(err)) !=
            RD_KAFKA_CONF_OK) {
            snprintf(why, whysz, "%s: %s", k, err);
            goto fail;
        }
    }
    if (c->bootstrap_servers != NULL &&
        rd_kafka_conf_set(conf, "bootstrap.servers", c->bootstrap_servers, err, sizeof(err)) !=
            RD_KAFKA_CONF_OK) {
        snprintf(why, whysz, "bootstrap.servers: %s", err);
        goto fail;
    }
    if ((group != NULL &&
         rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err)) != RD_KAFKA_CONF_OK) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", err, sizeof(err)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "auto.offset.reset",
                          c->starting_position == SRC_KAFKA_LATEST ? "latest" : "earliest", err,
                          sizeof(err)) != RD_KAFKA_CONF_OK) {
        snprintf(why, whysz, "%s", err);
        goto fail;
    }
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

static void kafka_validate(void *obj, struct cfg_check *chk)
{
    const struct src_kafka_cfg *c = obj;
    rd_kafka_conf_t *conf;
    char why[600];

    if (c->bootstrap_servers != NULL && c->bootstrap_servers[0] == '\0')
        cfg_check_error(chk, "bootstrap_servers", "must not be empty");
    if (cfg_check_given(chk, "topics") && c->topics.n == 0)
        cfg_check_error(chk, "topics", "needs at least one topic");
    for (size_t i = 0; i < c->topics.n; i++) {
        const char *t = c->topics.v[i];

        if (t[0] == '\0')
            cfg_check_error(chk, "topics", "topic names must not be empty");
        else if (t[0] != '^' && strlen(t) > 249)
            cfg_check_error(chk, "topics", "'%.60s...' is longer than Kafka's 249 characters", t);
        else if (t[0] != '^')
            for (const char *p = t; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-')) {
                    cfg_check_error(chk, "topics",
                                    "'%s' is not a Kafka topic name ([a-zA-Z0-9._-]; a "
                                    "subscription by pattern starts with ^)",
                                    t);
                    break;
                }
    }
    if (c->consumer_group != NULL) {
        size_t n = strlen(c->consumer_group);

        if (n == 0 || n > 200)
            cfg_check_error(chk, "consumer_group", "must be 1..200 characters");
    }
    if (c->starting_position == SRC_KAFKA_AT_TIMESTAMP) {
        if (!cfg_check_given(chk, "starting_position_timestamp"))
            cfg_check_error(chk, "starting_position",
                            "AT_TIMESTAMP needs starting_position_timestamp (Unix seconds)");
        else if ((int64_t)c->starting_position_timestamp * 1000 > (int64_t)time_wall_ms())
            cfg_check_error(chk, "starting_position_timestamp", "is in the future");
    } else if (cfg_check_given(chk, "starting_position_timestamp")) {
        cfg_check_error(chk, "starting_position_timestamp",
                        "applies to starting_position AT_TIMESTAMP only");
    }
    conf = conf_build(c, "switchyard-validate", why, sizeof(why));
    if (conf == NULL)
        cfg_check_error(chk, "properties", "%s", why);
    else
        rd_kafka_conf_destroy(conf);
}

const struct cfg_source_kind src_kafka_kind = {
    .sec =
        {
            .name = "kafka",
            .fields = kafka_fields,
            .n_fields = sizeof(kafka_fields) / sizeof(kafka_fields[0]),
            .size = sizeof(struct src_kafka_cfg),
            .validate = kafka_validate,
        },
    .default_batch_size = 100, /* Lambda's Kafka default */
    .default_window_ms = 500,  /* Lambda's Kafka default */
    .data_key = "value",
    .data_must_match = 0, /* Kafka's rule: a non-JSON value ignores the value part */
};

/* ---------------------------------------------------------------------------------------- */
/* State and partitions                                                                       */

static size_t ring_find(const struct kpart *kp, int64_t off);

static size_t rec_bytes(const struct source_record *rec)
{
    return sizeof(*rec) + rec->data_len + rec->json_len + 64;
}

/* Drop KP's staged records (not delivered): their offsets stay in the ring, given back, so that
 * no commit passes them. */
static void stage_drop(struct src_kafka *sk, struct kpart *kp)
{
    for (size_t i = 0; i < kp->stg_n; i++) {
        struct source_record *rec = kp->stg[(kp->stg_head + i) % kp->stg_cap];
        size_t at = kp->cap > 0 ? ring_find(kp, (int64_t)rec->seq) : SIZE_MAX;

        if (at != SIZE_MAX)
            kp->st[at] = KE_RELEASED;
        sk->staged--;
        sk->staged_bytes -= rec_bytes(rec);
        source_record_free(rec);
    }
    kp->stg_head = 0;
    kp->stg_n = 0;
}

static int stage_push(struct src_kafka *sk, struct kpart *kp, struct source_record *rec)
{
    if (kp->stg_n == kp->stg_cap) {
        size_t nc = kp->stg_cap ? kp->stg_cap * 2 : 64;
        struct source_record **v = malloc(nc * sizeof(*v));

        if (v == NULL)
            return SY_ENOMEM;
        for (size_t i = 0; i < kp->stg_n; i++)
            v[i] = kp->stg[(kp->stg_head + i) % kp->stg_cap];
        free(kp->stg);
        kp->stg = v;
        kp->stg_cap = nc;
        kp->stg_head = 0;
    }
    kp->stg[(kp->stg_head + kp->stg_n) % kp->stg_cap] = rec;
    kp->stg_n++;
    sk->staged++;
    sk->staged_bytes += rec_bytes(rec);
    return 0;
}

static struct source_record *stage_pop(struct src_kafka *sk, struct kpart *kp)
{
    struct source_record *rec = kp->stg[kp->stg_head];

    kp->stg_head = (kp->stg_head + 1) % kp->stg_cap;
    kp->stg_n--;
    sk->staged--;
    sk->staged_bytes -= rec_bytes(rec);
    return rec;
}

static void part_clear(struct src_kafka *sk, struct kpart *kp)
{
    stage_drop(sk, kp);
    free(kp->stg);
    if (kp->q != NULL) {
        rd_kafka_queue_io_event_enable(kp->q, -1, NULL, 0);
        rd_kafka_queue_destroy(kp->q);
    }
    free(kp->topic);
    free(kp->key);
    free(kp->offs);
    free(kp->st);
    memset(kp, 0, sizeof(*kp));
}

/* The live slot (ASSIGNED or REVOKING) of TOPIC/PARTITION, or -1. */
static int32_t part_find(const struct src_kafka *sk, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < sk->n_parts; i++) {
        const struct kpart *kp = &sk->parts[i];

        if ((kp->state == KP_ASSIGNED || kp->state == KP_REVOKING) && kp->partition == partition &&
            strcmp(kp->topic, topic) == 0)
            return (int32_t)i;
    }
    return -1;
}

/* A new ASSIGNED slot for TOPIC/PARTITION, or -1 (out of memory). */
static int32_t part_add(struct src_kafka *sk, const char *topic, int32_t partition)
{
    size_t i;
    struct kpart *kp;
    char key[320];

    for (i = 0; i < sk->n_parts; i++)
        if (sk->parts[i].state == KP_FREE)
            break;
    if (i == sk->n_parts) {
        struct kpart *v = realloc(sk->parts, (sk->n_parts + 1) * sizeof(*v));

        if (v == NULL)
            return -1;
        sk->parts = v;
        memset(&sk->parts[sk->n_parts], 0, sizeof(*v));
        sk->n_parts++;
    }
    kp = &sk->parts[i];
    snprintf(key, sizeof(key), "%s-%d", topic, (int)partition);
    kp->topic = strdup(topic);
    kp->key = strdup(key);
    if (kp->topic == NULL || kp->key == NULL) {
        part_clear(sk, kp);
        return -1;
    }
    kp->key_len = strlen(key);
    kp->partition = partition;
    kp->next = -1;
    kp->committed = -1;
    kp->hold = -1;
    kp->state = KP_ASSIGNED;
    return (int32_t)i;
}

/* A GONE slot whose records are all back: free it. */
static void part_maybe_free(struct src_kafka *sk, struct kpart *kp)
{
    if (kp->state == KP_GONE && kp->open == 0)
        part_clear(sk, kp);
}

static int ring_push(struct kpart *kp, int64_t off)
{
    if (kp->n == kp->cap) {
        size_t nc = kp->cap ? kp->cap * 2 : 256;
        int64_t *no = malloc(nc * sizeof(*no));
        unsigned char *ns = malloc(nc);

        if (no == NULL || ns == NULL) {
            free(no);
            free(ns);
            return SY_ENOMEM;
        }
        for (size_t i = 0; i < kp->n; i++) {
            no[i] = kp->offs[(kp->head + i) % kp->cap];
            ns[i] = kp->st[(kp->head + i) % kp->cap];
        }
        free(kp->offs);
        free(kp->st);
        kp->offs = no;
        kp->st = ns;
        kp->cap = nc;
        kp->head = 0;
    }
    kp->offs[(kp->head + kp->n) % kp->cap] = off;
    kp->st[(kp->head + kp->n) % kp->cap] = KE_OPEN;
    kp->n++;
    return 0;
}

/* The ring position of offset OFF, or SIZE_MAX (binary search: the ring is in offset order). */
static size_t ring_find(const struct kpart *kp, int64_t off)
{
    size_t lo = 0, hi = kp->n;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int64_t v = kp->offs[(kp->head + mid) % kp->cap];

        if (v == off)
            return (kp->head + mid) % kp->cap;
        if (v < off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return SIZE_MAX;
}

/* The commit position: the first offset not done, else the one after the last delivered,
 * never past a record that could not be delivered (kp->hold); done entries before it leave the
 * ring. -1: nothing delivered yet. */
static int64_t part_position(struct kpart *kp)
{
    int64_t pos;

    while (kp->n > 0 && kp->st[kp->head] == KE_DONE) {
        kp->head = (kp->head + 1) % kp->cap;
        kp->n--;
    }
    pos = kp->n > 0 ? kp->offs[kp->head] : kp->next;
    if (kp->hold >= 0 && (pos < 0 || pos > kp->hold))
        pos = kp->hold;
    return pos;
}

/* ---------------------------------------------------------------------------------------- */
/* Commits                                                                                    */

/* Commit what finished in MS (unless a commit is already due sooner or as soon). */
static void commit_arm_in(struct src_kafka *sk, int ms)
{
    struct timeval tv = evhelp_tv_ms(ms);

    if (sk->commit_armed)
        return;
    sk->commit_armed = 1;
    evtimer_add(sk->commit_ev, &tv);
}

static void commit_arm(struct src_kafka *sk)
{
    commit_arm_in(sk, COMMIT_DELAY_MS);
}

/*
 * Commit (asynchronously) the position of every partition of state ST (or any live one when ST
 * is KP_FREE) that moved. Returns 1 when a commit was sent.
 */
static int commit_now(struct src_kafka *sk, enum kpart_state st)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)sk->n_parts + 1);
    rd_kafka_resp_err_t err;

    if (l == NULL)
        return 0;
    for (size_t i = 0; i < sk->n_parts; i++) {
        struct kpart *kp = &sk->parts[i];
        int64_t pos;

        if (st == KP_FREE ? (kp->state != KP_ASSIGNED && kp->state != KP_REVOKING)
                          : kp->state != st)
            continue;
        pos = part_position(kp);
        if (pos < 0 || pos <= kp->committed)
            continue;
        rd_kafka_topic_partition_list_add(l, kp->topic, kp->partition)->offset = pos;
        kp->committed = pos;
    }
    if (l->cnt == 0) {
        rd_kafka_topic_partition_list_destroy(l);
        return 0;
    }
    err = rd_kafka_commit(sk->rk, l, 1);
    rd_kafka_topic_partition_list_destroy(l);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        sk->commit_errors++;
        log_warn("%s commit failed: %s", sk->prefix, rd_kafka_err2str(err));
        return 0;
    }
    sk->commits++;
    return 1;
}

static void commit_cb(int fd, short what, void *arg)
{
    struct src_kafka *sk = arg;

    (void)fd;
    (void)what;
    sk->commit_armed = 0;
    commit_now(sk, KP_FREE);
}

static void revoke_check(struct src_kafka *sk);
static void stop_check(struct src_kafka *sk);
static void done_cb(int fd, short what, void *arg);

static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    struct src_kafka *sk = opaque;

    (void)rk;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        sk->commit_errors++;
        /* During a rebalance every commit fails (ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS)
         * until the group settles: one line per 5 s, with the count. */
        if (time_mono_ms() - sk->commit_warned_ms >= 5000) {
            log_warn("%s commit of %d partition(s) failed: %s (sent again with the next one; "
                     "%llu failed commits so far)",
                     sk->prefix, offsets != NULL ? offsets->cnt : 0, rd_kafka_err2str(err),
                     (unsigned long long)sk->commit_errors);
            sk->commit_warned_ms = time_mono_ms();
        }
        /* Send the positions again with the next commit. */
        for (int i = 0; offsets != NULL && i < offsets->cnt; i++) {
            int32_t idx = part_find(sk, offsets->elems[i].topic, offsets->elems[i].partition);

            if (idx >= 0)
                sk->parts[idx].committed = -1;
        }
        /* Not at once: during a rebalance every commit fails until the group settles. */
        commit_arm_in(sk, COMMIT_RETRY_MS);
    }
    if (sk->revoke_committing) {
        sk->revoke_committing = 0;
        revoke_check(sk);
    }
    if (sk->stop_committing) {
        sk->stop_committing = 0;
        stop_check(sk);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Rebalances                                                                                 */

static void tick_arm(struct src_kafka *sk)
{
    struct timeval tv = {0, TICK_MS * 1000};

    if (!evtimer_pending(sk->tick_ev, NULL))
        evtimer_add(sk->tick_ev, &tv);
}

static void log_parts(struct src_kafka *sk, const char *what,
                      const rd_kafka_topic_partition_list_t *l)
{
    char s[600];
    size_t n = 0;

    s[0] = '\0';
    for (int i = 0; i < l->cnt && n + 40 < sizeof(s); i++)
        n += (size_t)snprintf(s + n, sizeof(s) - n, "%s%s-%d", i ? ", " : "", l->elems[i].topic,
                              (int)l->elems[i].partition);
    log_info("%s %s %d partition(s)%s%s", sk->prefix, what, l->cnt, l->cnt ? ": " : "", s);
}

/*
 * Hand the assignment L to librdkafka (the offsets in L: INVALID = committed, else these). Each
 * partition's queue stops forwarding to the consumer queue before the assignment starts fetching.
 */
static void do_assign(struct src_kafka *sk, rd_kafka_topic_partition_list_t *l)
{
    rd_kafka_error_t *e = NULL;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;

    for (int i = 0; i < l->cnt; i++) {
        int32_t idx = part_find(sk, l->elems[i].topic, l->elems[i].partition);
        struct kpart *kp;

        if (idx < 0)
            idx = part_add(sk, l->elems[i].topic, l->elems[i].partition);
        if (idx < 0) {
            log_err("%s out of memory for partition %s-%d", sk->prefix, l->elems[i].topic,
                    (int)l->elems[i].partition);
            continue;
        }
        kp = &sk->parts[idx];
        if (kp->q == NULL) {
            kp->q = rd_kafka_queue_get_partition(sk->rk, kp->topic, kp->partition);
            if (kp->q == NULL) {
                log_err("%s no queue for %s: its messages come through the consumer queue",
                        sk->prefix, kp->key);
                continue;
            }
            rd_kafka_queue_forward(kp->q, NULL);
            rd_kafka_queue_io_event_enable(kp->q, sk->pipefd[1], "1", 1);
        }
    }
    if (sk->cooperative)
        e = rd_kafka_incremental_assign(sk->rk, l);
    else
        err = rd_kafka_assign(sk->rk, l);
    if (e != NULL) {
        log_err("%s cannot take the assignment: %s", sk->prefix, rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    } else if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_err("%s cannot take the assignment: %s", sk->prefix, rd_kafka_err2str(err));
    }
    log_parts(sk, "assigned", l);
    source_set_state(&sk->base, SOURCE_RUNNING, NULL);
    event_active(sk->poll_ev, 0, 0);
}

/* AT_TIMESTAMP: committed offsets and offsets for the timestamp, looked up off the loop. */
struct src_kafka_tsjob {
    struct src_kafka *sk;
    rd_kafka_t *rk;
    rd_kafka_topic_partition_list_t *parts; /* owned by the thread until it signals */
    int64_t ts_ms;
    struct event *ev;
    pthread_t tid;
    char err[256];
};

static void *tsjob_main(void *arg)
{
    struct src_kafka_tsjob *j = arg;
    rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_copy(j->parts);
    rd_kafka_resp_err_t err;

    if (t == NULL) {
        snprintf(j->err, sizeof(j->err), "out of memory");
        goto out;
    }
    err = rd_kafka_committed(j->rk, j->parts, 10000);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(j->err, sizeof(j->err), "committed offsets: %s", rd_kafka_err2str(err));
        for (int i = 0; i < j->parts->cnt; i++)
            j->parts->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
        goto out;
    }
    for (int i = 0; i < t->cnt; i++)
        t->elems[i].offset = j->ts_ms;
    err = rd_kafka_offsets_for_times(j->rk, t, 10000);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        snprintf(j->err, sizeof(j->err), "offsets for the timestamp: %s", rd_kafka_err2str(err));
    for (int i = 0; i < j->parts->cnt; i++) {
        rd_kafka_topic_partition_t *p = &j->parts->elems[i];

        if (p->offset >= 0)
            continue; /* committed offsets win */
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR && t->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
            p->offset = t->elems[i].offset >= 0 ? t->elems[i].offset : RD_KAFKA_OFFSET_END;
        else
            p->offset = RD_KAFKA_OFFSET_INVALID;
    }
out:
    if (t != NULL)
        rd_kafka_topic_partition_list_destroy(t);
    event_active(j->ev, 0, 0);
    return NULL;
}

static void tsjob_free(struct src_kafka_tsjob *j)
{
    pthread_join(j->tid, NULL);
    if (j->ev != NULL)
        event_free(j->ev);
    if (j->parts != NULL)
        rd_kafka_topic_partition_list_destroy(j->parts);
    free(j);
}

static void tsjob_done(int fd, short what, void *arg)
{
    struct src_kafka_tsjob *j = arg;
    struct src_kafka *sk = j->sk;

    (void)fd;
    (void)what;
    sk->tsjob = NULL;
    if (j->err[0] != '\0')
        log_warn("%s AT_TIMESTAMP: %s (those partitions start from their committed offset or "
                 "the oldest record)",
                 sk->prefix, j->err);
    if (!sk->stopping)
        do_assign(sk, j->parts);
    tsjob_free(j);
    stop_check(sk);
}

static void on_assign(struct src_kafka *sk, rd_kafka_topic_partition_list_t *l)
{
    struct src_kafka_tsjob *j;

    if (sk->cfg->starting_position != SRC_KAFKA_AT_TIMESTAMP || l->cnt == 0 || sk->tsjob != NULL) {
        do_assign(sk, l);
        return;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL || (j->parts = rd_kafka_topic_partition_list_copy(l)) == NULL ||
        (j->ev = event_new(sk->base.ctx->base, -1, 0, tsjob_done, j)) == NULL) {
        if (j != NULL && j->parts != NULL)
            rd_kafka_topic_partition_list_destroy(j->parts);
        free(j);
        log_warn("%s AT_TIMESTAMP: out of memory; starting from the committed offsets", sk->prefix);
        do_assign(sk, l);
        return;
    }
    j->sk = sk;
    j->rk = sk->rk;
    j->ts_ms = (int64_t)sk->cfg->starting_position_timestamp * 1000;
    if (pthread_create(&j->tid, NULL, tsjob_main, j) != 0) {
        event_free(j->ev);
        rd_kafka_topic_partition_list_destroy(j->parts);
        free(j);
        log_warn("%s AT_TIMESTAMP: no thread; starting from the committed offsets", sk->prefix);
        do_assign(sk, l);
        return;
    }
    pthread_setname_np(j->tid, "sy-kafka-ts");
    sk->tsjob = j;
}

static void on_revoke(struct src_kafka *sk, rd_kafka_topic_partition_list_t *l)
{
    if (sk->revoking != NULL) {
        /* A second revocation before the first ended (eager: cannot happen; be safe). */
        for (int i = 0; i < l->cnt; i++)
            rd_kafka_topic_partition_list_add(sk->revoking, l->elems[i].topic,
                                              l->elems[i].partition);
    } else {
        sk->revoking = rd_kafka_topic_partition_list_copy(l);
        if (sk->revoking == NULL) {
            log_err("%s out of memory while revoking: giving the partitions up at once",
                    sk->prefix);
            if (sk->cooperative) {
                rd_kafka_error_t *e = rd_kafka_incremental_unassign(sk->rk, l);

                if (e != NULL)
                    rd_kafka_error_destroy(e);
            } else {
                rd_kafka_assign(sk->rk, NULL);
            }
            return;
        }
        sk->revoke_lost = rd_kafka_assignment_lost(sk->rk);
        sk->revoke_deadline = time_mono_ms() + sk->base.ctx->drain_wait_ms + 1000;
    }
    log_parts(sk, sk->revoke_lost ? "lost" : "revoked", l);
    for (int i = 0; i < l->cnt; i++) {
        int32_t idx = part_find(sk, l->elems[i].topic, l->elems[i].partition);

        if (idx < 0)
            continue;
        sk->parts[idx].state = KP_REVOKING;
        stage_drop(sk, &sk->parts[idx]);
        if (sk->base.ctx->host->revoke != NULL)
            sk->base.ctx->host->revoke(sk->base.ctx->host_arg, idx);
    }
    tick_arm(sk);
    revoke_check(sk);
}

/* Finish the revocation once its partitions' records are back (or the time is up). */
static void revoke_check(struct src_kafka *sk)
{
    int open = 0;
    rd_kafka_topic_partition_list_t *l = sk->revoking;

    if (l == NULL)
        return;
    if (sk->revoke_committing) {
        if (time_mono_ms() < -sk->revoke_deadline)
            return;
        log_warn("%s the commit of the revoked partitions was not confirmed within %d ms",
                 sk->prefix, REVOKE_COMMIT_MS);
        sk->revoke_committing = 0;
    }
    for (size_t i = 0; i < sk->n_parts; i++)
        if (sk->parts[i].state == KP_REVOKING && sk->parts[i].open > 0)
            open = 1;
    if (open && !sk->revoke_lost && time_mono_ms() < sk->revoke_deadline)
        return;
    if (open)
        log_warn("%s revoked partitions still had running batches after %d ms: given up without "
                 "them (the next owner processes those records again)",
                 sk->prefix, sk->base.ctx->drain_wait_ms);
    if (!sk->revoke_lost && sk->revoke_deadline > 0) {
        /* Commit what finished, once; wait for the answer (bounded). */
        sk->revoke_deadline = 0;
        if (commit_now(sk, KP_REVOKING)) {
            sk->revoke_committing = 1;
            sk->revoke_deadline = -(time_mono_ms() + REVOKE_COMMIT_MS);
            tick_arm(sk);
            return;
        }
    }
    for (size_t i = 0; i < sk->n_parts; i++) {
        struct kpart *kp = &sk->parts[i];

        if (kp->state == KP_REVOKING) {
            kp->state = KP_GONE;
            part_maybe_free(sk, kp);
        }
    }
    if (sk->cooperative) {
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(sk->rk, l);

        if (e != NULL) {
            log_warn("%s unassign: %s", sk->prefix, rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
    } else {
        rd_kafka_assign(sk->rk, NULL);
    }
    rd_kafka_topic_partition_list_destroy(l);
    sk->revoking = NULL;
    sk->revoke_lost = 0;
    sk->revoke_committing = 0;
    stop_check(sk);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct src_kafka *sk = opaque;

    sk->cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        on_assign(sk, parts);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        on_revoke(sk, parts);
    } else {
        log_err("%s rebalance failed: %s", sk->prefix, rd_kafka_err2str(err));
        rd_kafka_assign(rk, NULL);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Errors and logs                                                                            */

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct src_kafka *sk = opaque;
    rd_kafka_resp_err_t e = (rd_kafka_resp_err_t)err;

    switch (e) {
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR__SSL:
        source_set_state(&sk->base, SOURCE_PROBLEM, "%s: %s",
                         e == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
                                 e == RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED
                             ? "EVENT_SOURCE_AUTHN_ERROR"
                         : e == RD_KAFKA_RESP_ERR__SSL ? "EVENT_SOURCE_AUTHN_ERROR"
                                                       : "EVENT_SOURCE_AUTHZ_ERROR",
                         reason);
        return;
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__RESOLVE:
        /* The first reason stays: librdkafka repeats these every reconnect.backoff. */
        if (sk->base.state == SOURCE_RECONNECTING)
            return;
        sk->reconnects++;
        source_set_state(&sk->base, SOURCE_RECONNECTING, "%s", reason);
        return;
    default:
        break;
    }
    if (rd_kafka_fatal_error(rk, NULL, 0) != RD_KAFKA_RESP_ERR_NO_ERROR)
        source_set_state(&sk->base, SOURCE_PROBLEM, "fatal: %s", reason);
    else
        log_warn("%s %s", sk->prefix, reason);
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    struct src_kafka *sk = rd_kafka_opaque(rk);

    if (level <= 3)
        log_err("%s librdkafka %s: %s", sk->prefix, fac, buf);
    else if (level <= 4)
        log_warn("%s librdkafka %s: %s", sk->prefix, fac, buf);
    else
        log_debug("%s librdkafka %s: %s", sk->prefix, fac, buf);
}

/* ---------------------------------------------------------------------------------------- */
/* Polling                                                                                    */

/*
 * Deliver staged records of every assigned partition while the host has room and the partition
 * is below its window, round robin from sk->rr, the room shared out evenly in each round: the
 * host runs one batch per partition at a time, so room given all to the first partitions would
 * leave the others with nothing to run. Returns the number delivered.
 */
static size_t deliver_staged(struct src_kafka *sk)
{
    size_t window = sk->base.ctx->partition_window, total = 0;
    int progress = 1;

    while (progress && !sk->host_paused && !sk->stopping) {
        size_t room = source_room(&sk->base), ready = 0, slice;

        if (room == 0)
            break;
        for (size_t k = 0; k < sk->n_parts; k++) {
            const struct kpart *kp = &sk->parts[k];

            ready += kp->state == KP_ASSIGNED && kp->stg_n > 0 && kp->open < window;
        }
        if (ready == 0)
            break;
        slice = room / ready;
        if (slice == 0)
            slice = 1;
        if (slice > POLL_BATCH)
            slice = POLL_BATCH;
        progress = 0;
        for (size_t k = 0; k < sk->n_parts; k++) {
            struct kpart *kp = &sk->parts[(sk->rr + k) % sk->n_parts];
            size_t want;

            room = source_room(&sk->base);
            if (room == 0)
                return total;
            if (kp->state != KP_ASSIGNED || kp->stg_n == 0 || kp->open >= window)
                continue;
            want = window - kp->open;
            if (want > room)
                want = room;
            if (want > kp->stg_n)
                want = kp->stg_n;
            if (want > slice)
                want = slice;
            if (sk->cap_out < want) {
                struct source_record **v = realloc(sk->out, POLL_BATCH * sizeof(*v));

                if (v == NULL)
                    return total; /* they stay staged; the next poll tries again */
                sk->out = v;
                sk->cap_out = POLL_BATCH;
            }
            for (size_t i = 0; i < want; i++)
                sk->out[i] = stage_pop(sk, kp);
            kp->open += want;
            total += want;
            progress = 1;
            /* The host may call back (revoke, room) from inside: nothing is held across. */
            source_deliver(&sk->base, sk->out, want);
        }
    }
    return total;
}

/* An error carried by a message (unknown topic, offset out of range...). */
static void message_error(struct src_kafka *sk, const rd_kafka_message_t *m)
{
    const char *topic = m->rkt != NULL ? rd_kafka_topic_name(m->rkt) : "";

    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
        return;
    if (m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
        m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
        m->err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION) {
        source_set_state(&sk->base, SOURCE_PROBLEM, "topic '%s': %s", topic,
                         rd_kafka_message_errstr(m));
        return;
    }
    if (m->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
        source_set_state(&sk->base, SOURCE_PROBLEM, "EVENT_SOURCE_AUTHZ_ERROR: topic '%s': %s",
                         topic, rd_kafka_message_errstr(m));
        return;
    }
    log_warn("%s %s%s%s", sk->prefix, topic, topic[0] ? ": " : "", rd_kafka_message_errstr(m));
}

/* One message: a record for the host, unless its partition is not ours any more. */
static void message(struct src_kafka *sk, rd_kafka_message_t *m)
{
    int32_t idx;
    struct kpart *kp;
    struct source_record *rec;

    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        message_error(sk, m);
        return;
    }
    idx = part_find(sk, rd_kafka_topic_name(m->rkt), m->partition);
    if (idx < 0 || sk->parts[idx].state != KP_ASSIGNED || sk->stopping)
        return; /* revoked meanwhile: the next owner reads it */
    kp = &sk->parts[idx];
    if (kp->next >= 0 && m->offset < kp->next)
        return; /* already delivered */
    rec = src_kafka_record_new(sk, kp, idx, m);
    if (rec == NULL)
        goto nomem;
    if (ring_push(kp, m->offset) != 0) {
        source_record_free(rec);
        goto nomem;
    }
    if (stage_push(sk, kp, rec) != 0) {
        kp->n--; /* the offset just pushed */
        source_record_free(rec);
        goto nomem;
    }
    kp->next = m->offset + 1;
    if (sk->base.state != SOURCE_RUNNING)
        source_set_state(&sk->base, SOURCE_RUNNING, NULL);
    return;
nomem:
    /* Not delivered, so never committed past: the records after it are delivered, but the
     * partition's commits stop before it, and it is read again after a restart or a
     * rebalance. */
    if (kp->hold < 0 || m->offset < kp->hold)
        kp->hold = m->offset;
    log_err("%s out of memory: %s offset %lld not delivered; commits of the partition stop "
            "before it until it is read again (restart or rebalance)",
            sk->prefix, kp->key, (long long)m->offset);
}

/* Serve the consumer queue: rebalances, commit results, errors and logs run from here. */
static void poll_events(struct src_kafka *sk)
{
    rd_kafka_message_t *m;

    while (sk->rk != NULL && (m = rd_kafka_consumer_poll(sk->rk, 0)) != NULL) {
        message(sk, m);
        rd_kafka_message_destroy(m);
    }
}

static void poll_queue(struct src_kafka *sk)
{
    rd_kafka_message_t *msgs[POLL_BATCH];
    size_t turn = 0, assigned = 0, share;
    int progress = 1;

    if (sk->rk == NULL)
        return;
    poll_events(sk);
    for (size_t k = 0; k < sk->n_parts; k++)
        assigned += sk->parts[k].state == KP_ASSIGNED;
    /* Each partition's share of the read-ahead: never below its window. */
    share = assigned > 0 ? STAGE_MAX / assigned : STAGE_MAX;
    if (share < sk->base.ctx->partition_window)
        share = sk->base.ctx->partition_window;
    /* Round robin over the partitions, one read each per round, starting one further at each
     * poll: when there is room for little, no partition starves. */
    sk->rr = sk->n_parts > 0 ? (sk->rr + 1) % sk->n_parts : 0;
    while (progress && !sk->stopping && turn < POLL_TURN_MAX) {
        progress = 0;
        for (size_t k = 0; k < sk->n_parts; k++) {
            struct kpart *kp = &sk->parts[(sk->rr + k) % sk->n_parts];
            size_t want;
            ssize_t n;

            if (sk->staged >= STAGE_MAX || sk->staged_bytes >= STAGE_MAX_BYTES)
                break;
            if (kp->state != KP_ASSIGNED || kp->q == NULL || kp->stg_n >= share)
                continue;
            want = share - kp->stg_n;
            if (want > POLL_BATCH)
                want = POLL_BATCH;
            n = rd_kafka_consume_batch_queue(kp->q, 0, msgs, want);
            for (ssize_t j = 0; j < n; j++) {
                message(sk, msgs[j]);
                rd_kafka_message_destroy(msgs[j]);
            }
            if (n > 0) {
                progress = 1;
                turn += (size_t)n;
            }
        }
        if (deliver_staged(sk) > 0)
            progress = 1;
    }
    if (turn >= POLL_TURN_MAX)
        event_active(sk->poll_ev, 0, 0); /* let the loop run, then come back */
    if (sk->closing)
        stop_check(sk);
}

static void io_cb(int fd, short what, void *arg)
{
    struct src_kafka *sk = arg;
    char b[256];

    (void)what;
    while (read(fd, b, sizeof(b)) > 0)
        ;
    poll_queue(sk);
}

static void poll_cb(int fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    poll_queue(arg);
}

static void keepalive_cb(int fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    poll_queue(arg);
}

static void tick_cb(int fd, short what, void *arg)
{
    struct src_kafka *sk = arg;

    (void)fd;
    (void)what;
    poll_events(sk);
    deliver_staged(sk);
    revoke_check(sk);
    stop_check(sk);
    if (sk->revoking != NULL || (sk->stopping && !sk->stop_finished))
        tick_arm(sk);
}

/* ---------------------------------------------------------------------------------------- */
/* The source_ops                                                                            */

static void kafka_describe(const void *cfgp, const char *mapping, struct source_desc *out);

static int kafka_create(const struct source_ctx *ctx, const void *cfgp, struct source **out,
                        struct sy_error *err)
{
    const struct src_kafka_cfg *c = cfgp;
    struct src_kafka *sk = calloc(1, sizeof(*sk));
    struct source_desc desc = {0};

    if (sk == NULL) {
        sy_error_set(err, "out of memory");
        return SY_ENOMEM;
    }
    sk->base.ordered = 1;
    sk->cfg = c;
    sk->pipefd[0] = sk->pipefd[1] = -1;
    snprintf(sk->prefix, sizeof(sk->prefix), "[source:kafka:%.64s]", ctx->mapping);
    kafka_describe(c, ctx->mapping, &desc);
    sk->group = strdup(desc.consumer_group);
    snprintf(sk->arn, sizeof(sk->arn), "arn:aws:kafka:%s:%s:cluster/switchyard/%.64s/%.160s",
             ctx->region, ctx->account, ctx->mapping, c->topics.n > 0 ? c->topics.v[0] : "");
    *out = &sk->base;
    if (sk->group == NULL) {
        sy_error_set(err, "out of memory");
        return SY_ENOMEM;
    }
    return 0;
}

static int kafka_start(struct source *src)
{
    struct src_kafka *sk = (struct src_kafka *)src;
    const struct source_ctx *ctx = src->ctx;
    rd_kafka_conf_t *conf;
    rd_kafka_topic_partition_list_t *subs = NULL;
    rd_kafka_resp_err_t err;
    char why[600], client_id[128];
    size_t cidlen = sizeof(client_id);
    struct timeval ka = {KEEPALIVE_MS / 1000, (KEEPALIVE_MS % 1000) * 1000};

    conf = conf_build(sk->cfg, sk->group, why, sizeof(why));
    if (conf == NULL) {
        log_err("%s %s", sk->prefix, why);
        return SY_EINVAL;
    }
    if (rd_kafka_conf_get(conf, "client.id", client_id, &cidlen) == RD_KAFKA_CONF_OK &&
        strcmp(client_id, "rdkafka") == 0) {
        snprintf(client_id, sizeof(client_id), "switchyard-%.100s", ctx->mapping);
        rd_kafka_conf_set(conf, "client.id", client_id, why, sizeof(why));
    }
    rd_kafka_conf_set_opaque(conf, sk);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_offset_commit_cb(conf, on_commit);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    sk->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
    if (sk->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        log_err("%s cannot create the consumer: %s", sk->prefix, why);
        return SY_EINVAL;
    }
    rd_kafka_poll_set_consumer(sk->rk);
    rd_kafka_set_log_queue(sk->rk, NULL); /* logs come through the consumer queue too */
    sk->q = rd_kafka_queue_get_consumer(sk->rk);
    if (pipe2(sk->pipefd, O_NONBLOCK | O_CLOEXEC) != 0)
        return SY_EIO;
    sk->io_ev = event_new(ctx->base, sk->pipefd[0], EV_READ | EV_PERSIST, io_cb, sk);
    sk->poll_ev = event_new(ctx->base, -1, 0, poll_cb, sk);
    sk->commit_ev = evtimer_new(ctx->base, commit_cb, sk);
    sk->tick_ev = evtimer_new(ctx->base, tick_cb, sk);
    sk->done_ev = event_new(ctx->base, -1, 0, done_cb, sk);
    sk->keepalive_ev = event_new(ctx->base, -1, EV_PERSIST, keepalive_cb, sk);
    if (sk->q == NULL || sk->io_ev == NULL || sk->poll_ev == NULL || sk->commit_ev == NULL ||
        sk->tick_ev == NULL || sk->done_ev == NULL || sk->keepalive_ev == NULL)
        return SY_ENOMEM;
    rd_kafka_queue_io_event_enable(sk->q, sk->pipefd[1], "1", 1);
    event_add(sk->io_ev, NULL);
    event_add(sk->keepalive_ev, &ka);
    subs = rd_kafka_topic_partition_list_new((int)sk->cfg->topics.n);
    if (subs == NULL)
        return SY_ENOMEM;
    for (size_t i = 0; i < sk->cfg->topics.n; i++)
        rd_kafka_topic_partition_list_add(subs, sk->cfg->topics.v[i], RD_KAFKA_PARTITION_UA);
    err = rd_kafka_subscribe(sk->rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_err("%s cannot subscribe: %s", sk->prefix, rd_kafka_err2str(err));
        return SY_EINVAL;
    }
    source_set_state(&sk->base, SOURCE_CONNECTING, "joining consumer group %s", sk->group);
    log_info("%s consumer group %s, topics %s%s, bootstrap %s", sk->prefix, sk->group,
             sk->cfg->topics.v[0], sk->cfg->topics.n > 1 ? ", ..." : "",
             sk->cfg->bootstrap_servers);
    event_active(sk->poll_ev, 0, 0);
    return 0;
}

/* Mark RECS acknowledged (KE_DONE) or given back (KE_RELEASED). */
static void mark(struct src_kafka *sk, struct source_record *const *recs, size_t n, enum kentry to)
{
    for (size_t i = 0; i < n; i++) {
        const struct source_record *rec = recs[i];
        struct kpart *kp;
        size_t at;

        if (rec->partition < 0 || (size_t)rec->partition >= sk->n_parts)
            continue;
        kp = &sk->parts[rec->partition];
        at = kp->state == KP_FREE ? SIZE_MAX : ring_find(kp, (int64_t)rec->seq);
        if (at == SIZE_MAX || kp->st[at] != KE_OPEN)
            continue;
        kp->st[at] = (unsigned char)to;
        kp->open--;
        part_maybe_free(sk, kp);
    }
    if (sk->rk != NULL && !sk->stopping)
        event_active(sk->poll_ev, 0, 0); /* room again, maybe */
    revoke_check(sk);
}

static void kafka_ack(struct source *src, struct source_record *const *recs, size_t n,
                      enum source_outcome outcome)
{
    struct src_kafka *sk = (struct src_kafka *)src;

    (void)outcome; /* processed or given up on: either way committed */
    mark(sk, recs, n, KE_DONE);
    if (sk->rk != NULL && !sk->stopping)
        commit_arm(sk);
}

static void kafka_release(struct source *src, struct source_record *const *recs, size_t n)
{
    mark((struct src_kafka *)src, recs, n, KE_RELEASED);
}

static void kafka_pause(struct source *src)
{
    ((struct src_kafka *)src)->host_paused = 1;
}

static void kafka_resume(struct source *src)
{
    struct src_kafka *sk = (struct src_kafka *)src;

    sk->host_paused = 0;
    if (sk->rk != NULL && !sk->stopping)
        event_active(sk->poll_ev, 0, 0);
}

/* Move the stop along: the final commit (waited for), then the close, then done. */
static void stop_check(struct src_kafka *sk)
{
    rd_kafka_error_t *e;

    if (!sk->stopping || sk->stop_finished)
        return;
    if (sk->rk == NULL || time_mono_ms() >= sk->stop_deadline)
        goto done;
    if (sk->tsjob != NULL || sk->stop_committing)
        return; /* the lookups and the commit end within their own timeouts */
    if (!sk->closing) {
        if (!sk->stop_committed) {
            sk->stop_committed = 1;
            if (sk->commit_armed) {
                evtimer_del(sk->commit_ev);
                sk->commit_armed = 0;
            }
            if (commit_now(sk, KP_FREE)) {
                sk->stop_committing = 1;
                return;
            }
        }
        e = rd_kafka_consumer_close_queue(sk->rk, sk->q);
        if (e != NULL) {
            log_warn("%s close: %s", sk->prefix, rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            goto done;
        }
        sk->closing = 1;
        event_active(sk->poll_ev, 0, 0);
        return;
    }
    if (!rd_kafka_consumer_closed(sk->rk))
        return;
done:
    if (sk->rk != NULL && time_mono_ms() >= sk->stop_deadline)
        log_warn("%s did not close within %d ms: records not committed are read again", sk->prefix,
                 STOP_WAIT_MS);
    sk->stop_finished = 1;
    evtimer_del(sk->tick_ev);
    event_active(sk->done_ev, 0, 0);
}

static void done_cb(int fd, short what, void *arg)
{
    struct src_kafka *sk = arg;

    (void)fd;
    (void)what;
    source_set_state(&sk->base, SOURCE_STOPPED, NULL);
    if (sk->stop_done != NULL)
        sk->stop_done(sk->stop_arg);
}

static void kafka_stop(struct source *src, source_stopped_fn *done, void *arg)
{
    struct src_kafka *sk = (struct src_kafka *)src;

    sk->stopping = 1;
    sk->stop_done = done;
    sk->stop_arg = arg;
    sk->stop_deadline = time_mono_ms() + STOP_WAIT_MS;
    if (sk->keepalive_ev != NULL)
        event_del(sk->keepalive_ev);
    if (sk->done_ev == NULL) {
        /* Never started far enough to have events: nothing to close. */
        sk->done_ev = event_new(src->ctx->base, -1, 0, done_cb, sk);
        sk->rk = NULL;
    }
    if (sk->tick_ev != NULL)
        tick_arm(sk);
    stop_check(sk);
}

/* rd_kafka_destroy() joins librdkafka's threads: run off the loop (core/detach.h), by a thread
 * that owns RK from then on. */
static void consumer_destroy(void *rk)
{
    rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
}

static void kafka_destroy(struct source *src)
{
    struct src_kafka *sk = (struct src_kafka *)src;
    struct event *evs[7];

    if (sk == NULL)
        return;
    if (sk->tsjob != NULL) {
        tsjob_free(sk->tsjob); /* bounded by its lookups' timeouts */
        sk->tsjob = NULL;
    }
    evs[0] = sk->io_ev;
    evs[1] = sk->poll_ev;
    evs[2] = sk->commit_ev;
    evs[3] = sk->tick_ev;
    evs[4] = sk->done_ev;
    evs[5] = sk->keepalive_ev;
    evs[6] = NULL;
    for (size_t i = 0; i < 6; i++)
        if (evs[i] != NULL)
            event_free(evs[i]);
    for (size_t i = 0; i < sk->n_parts; i++)
        part_clear(sk, &sk->parts[i]);
    free(sk->parts);
    if (sk->revoking != NULL)
        rd_kafka_topic_partition_list_destroy(sk->revoking);
    if (sk->q != NULL) {
        rd_kafka_queue_io_event_enable(sk->q, -1, NULL, 0);
        rd_kafka_queue_destroy(sk->q);
    }
    if (sk->rk != NULL)
        detach_run("sy-kafka-close", consumer_destroy, sk->rk);
    if (sk->pipefd[0] >= 0)
        close(sk->pipefd[0]);
    if (sk->pipefd[1] >= 0)
        close(sk->pipefd[1]);
    buf_free(&sk->scratch);
    free(sk->out);
    free(sk->group);
    free(sk);
}

static const char *kafka_arn(const struct source *src)
{
    return ((const struct src_kafka *)src)->arn;
}

/* KP's lag (Lambda's OffsetLag: high watermark minus the commit position), or -1 unknown; its
 * commit position in *POS (-1 none). librdkafka's cached watermarks: no request. */
static int64_t part_lag(const struct src_kafka *sk, struct kpart *kp, int64_t *pos)
{
    int64_t lo, hi;

    *pos = part_position(kp);
    if (*pos < 0)
        *pos = kp->committed;
    if (sk->rk == NULL ||
        rd_kafka_get_watermark_offsets(sk->rk, kp->topic, kp->partition, &lo, &hi) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        hi < 0)
        return -1;
    if (*pos < 0)
        return lo >= 0 ? hi - lo : -1;
    return hi > *pos ? hi - *pos : 0;
}

static void kafka_partitions(const struct source *src, source_partition_fn *fn, void *arg)
{
    const struct src_kafka *sk = (const struct src_kafka *)src;

    for (size_t i = 0; i < sk->n_parts; i++) {
        struct kpart *kp = &sk->parts[i];
        struct source_partition_stat st;

        if (kp->state != KP_ASSIGNED && kp->state != KP_REVOKING)
            continue;
        st.name = kp->key;
        st.lag = part_lag(sk, kp, &st.committed);
        st.in_flight = kp->open;
        fn(arg, &st);
    }
}

static void kafka_stats(const struct source *src, struct source_stats *out)
{
    const struct src_kafka *sk = (const struct src_kafka *)src;
    int64_t lag = 0;
    int known = 0;

    for (size_t i = 0; i < sk->n_parts; i++) {
        struct kpart *kp = &sk->parts[i];
        int64_t pos, l;

        if (kp->state != KP_ASSIGNED)
            continue;
        l = part_lag(sk, kp, &pos);
        if (l >= 0) {
            lag += l;
            known = 1;
        }
    }
    out->lag = known ? lag : -1;
    out->reconnects = sk->reconnects;
    out->acks_pending = 0;
    for (size_t i = 0; i < sk->n_parts; i++)
        out->acks_pending += sk->parts[i].n - sk->parts[i].open;
}

static void kafka_describe(const void *cfgp, const char *mapping, struct source_desc *out)
{
    const struct src_kafka_cfg *c = cfgp;

    out->self_managed = 1;
    out->topics = (const char *const *)c->topics.v;
    out->n_topics = c->topics.n;
    out->endpoints = c->bootstrap_servers;
    if (c->consumer_group != NULL)
        snprintf(out->consumer_group, sizeof(out->consumer_group), "%s", c->consumer_group);
    else
        snprintf(out->consumer_group, sizeof(out->consumer_group), "switchyard-%.200s", mapping);
    out->starting_position = start_names[c->starting_position];
    if (c->starting_position == SRC_KAFKA_AT_TIMESTAMP)
        out->starting_position_timestamp = c->starting_position_timestamp;
}

const struct source_ops src_kafka_ops = {
    .name = "kafka",
    .cfg = &src_kafka_kind,
    .create = kafka_create,
    .start = kafka_start,
    .ack = kafka_ack,
    .release = kafka_release,
    .pause = kafka_pause,
    .resume = kafka_resume,
    .stop = kafka_stop,
    .destroy = kafka_destroy,
    .encode_batch = src_kafka_encode_batch,
    .batch_info = src_kafka_batch_info,
    .record_info = src_kafka_record_info,
    .arn = kafka_arn,
    .stats = kafka_stats,
    .describe = kafka_describe,
    .partitions = kafka_partitions,
};
