/*
 * sources/kafka/kafka_event.c - Lambda's self-managed Kafka event, written as it streams.
 *
 * One record (reference §5.3), members in this order:
 *   {"topic": "orders", "partition": 0, "offset": 15, "timestamp": 1545084650987,
 *    "timestampType": "CREATE_TIME" | "LOG_APPEND_TIME" | "NO_TIMESTAMP_TYPE",
 *    "key": base64 (absent when the record has no key),
 *    "value": base64 (absent for a tombstone: a record whose value is null),
 *    "headers": [{"name": [signed bytes]}, ...] (always there, [] when there are none)}
 * A record without a timestamp (an old message format) has "timestamp": -1 and
 * "NO_TIMESTAMP_TYPE", Java's TimestampType names. Header names that are not valid UTF-8 are
 * written with U+FFFD in place of each bad byte (their bytes stay exact in no form: Kafka's own
 * clients require UTF-8 names); values are bytes, -128..127 as in Java.
 *
 * The batch: {"eventSource": "SelfManagedKafka", "bootstrapServers": "...",
 *             "records": {"orders-0": [records in offset order], "orders-1": [...]}}
 * with the topic-partitions in the order their first record came in the batch.
 *
 * The on-failure record of one record for a Kafka-topic destination (src_kafka_record_info):
 * "KafkaBatchInfo": {"batchSize": 1, "eventSourceArn", "bootstrapServers", "payloadSize",
 *                    "recordInfo": {"offset": "15", "timestamp": ISO-8601}}, and the record's
 * own key (decoded from the record's JSON) as the message key.
 *
 * The record's `data` (what filters read, under the key `value`) is the value's bytes; a
 * tombstone's is empty, which filters treat as non-JSON.
 */
#include "kafka_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/b64.h"
#include "core/errors.h"
#include "core/jsonstr.h"
#include "core/time.h"

/* A header name as the inside of a JSON string, bad UTF-8 bytes as U+FFFD. */
static int put_name(struct buf *b, const char *name, size_t n)
{
    size_t len = jsonstr_len(name, n);

    if (len != SIZE_MAX) {
        if (buf_reserve(b, len) != 0)
            return SY_ENOMEM;
        b->len = (size_t)(jsonstr_put(b->data + b->len, name, n) - b->data);
        b->data[b->len] = '\0';
        return 0;
    }
    for (size_t i = 0; i < n;) {
        size_t k = 1;

        if ((unsigned char)name[i] >= 0x80) {
            /* A valid sequence of 2..4 bytes, or one bad byte. */
            for (k = 2; k <= 4 && !(i + k <= n && jsonstr_len(name + i, k) != SIZE_MAX); k++)
                ;
            if (k > 4) {
                if (buf_append(b, "\xef\xbf\xbd", 3) != 0)
                    return SY_ENOMEM;
                i++;
                continue;
            }
        }
        if (buf_json_escape(b, name + i, k) != 0)
            return SY_ENOMEM;
        i += k;
    }
    return 0;
}

static int put_b64(struct buf *b, const void *p, size_t n)
{
    size_t need = b64_encoded_size(n);

    if (buf_reserve(b, need) != 0)
        return SY_ENOMEM;
    b->len += b64_encode(p, n, b->data + b->len);
    return 0;
}

/* The record's JSON into B (emptied first). */
static int record_json(struct buf *b, const struct kpart *kp, const rd_kafka_message_t *m)
{
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    rd_kafka_headers_t *hdrs = NULL;
    const char *tsname = tstype == RD_KAFKA_TIMESTAMP_CREATE_TIME       ? "CREATE_TIME"
                         : tstype == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME ? "LOG_APPEND_TIME"
                                                                        : "NO_TIMESTAMP_TYPE";
    int rc = 0;

    if (tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE)
        ts = -1;
    buf_reset(b);
    rc |= buf_puts(b, "{\"topic\":\"");
    rc |= buf_json_escape(b, kp->topic, strlen(kp->topic));
    rc |= buf_puts(b, "\",\"partition\":");
    rc |= buf_put_i64(b, kp->partition);
    rc |= buf_puts(b, ",\"offset\":");
    rc |= buf_put_i64(b, m->offset);
    rc |= buf_puts(b, ",\"timestamp\":");
    rc |= buf_put_i64(b, ts);
    rc |= buf_puts(b, ",\"timestampType\":\"");
    rc |= buf_puts(b, tsname);
    rc |= buf_puts(b, "\"");
    if (m->key != NULL) {
        rc |= buf_puts(b, ",\"key\":\"");
        rc |= put_b64(b, m->key, m->key_len);
        rc |= buf_puts(b, "\"");
    }
    if (m->payload != NULL) {
        rc |= buf_puts(b, ",\"value\":\"");
        rc |= put_b64(b, m->payload, m->len);
        rc |= buf_puts(b, "\"");
    }
    rc |= buf_puts(b, ",\"headers\":[");
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs != NULL) {
        const char *name;
        const void *val;
        size_t vlen;

        for (size_t i = 0;
             rd_kafka_header_get_all(hdrs, i, &name, &val, &vlen) == RD_KAFKA_RESP_ERR_NO_ERROR;
             i++) {
            const signed char *v = val;
            char num[24];

            rc |= buf_puts(b, i == 0 ? "{\"" : ",{\"");
            rc |= put_name(b, name, strlen(name));
            rc |= buf_puts(b, "\":[");
            for (size_t j = 0; v != NULL && j < vlen; j++) {
                num[0] = ',';
                rc |= buf_append(b, num + (j == 0), fmt_i64(num + 1, v[j]) + (j != 0));
            }
            rc |= buf_puts(b, "]}");
        }
    }
    rc |= buf_puts(b, "]}");
    return rc != 0 ? SY_ENOMEM : 0;
}

struct source_record *src_kafka_record_new(struct src_kafka *sk, const struct kpart *kp,
                                           int32_t idx, const rd_kafka_message_t *m)
{
    char id[320];
    int id_len;
    struct source_record *rec;
    rd_kafka_timestamp_type_t tstype;
    int64_t ts;

    if (record_json(&sk->scratch, kp, m) != 0)
        return NULL;
    if (kp->key_len + 22 > sizeof(id))
        return NULL;
    memcpy(id, kp->key, kp->key_len);
    id[kp->key_len] = '@';
    id_len = (int)(kp->key_len + 1 + fmt_i64(id + kp->key_len + 1, m->offset));
    rec = source_record_new((size_t)id_len, m->payload != NULL ? m->len : 0, sk->scratch.len);
    if (rec == NULL)
        return NULL;
    source_record_fill(rec, id, m->payload != NULL ? m->payload : "", sk->scratch.data);
    ts = rd_kafka_message_timestamp(m, &tstype);
    rec->sent_ms = ts > 0 ? ts : (int64_t)time_wall_ms();
    rec->partition = idx;
    rec->seq = (uint64_t)m->offset;
    if (m->payload != NULL && jsonstr_len(m->payload, m->len) == SIZE_MAX)
        rec->flags |= SOURCE_REC_BINARY;
    return rec;
}

int src_kafka_encode_batch(struct source *src, struct source_record *const *recs, size_t n,
                           struct buf *out)
{
    struct src_kafka *sk = (struct src_kafka *)src;
    unsigned char *done = calloc(n ? n : 1, 1);
    size_t total = 128 + strlen(sk->cfg->bootstrap_servers);
    int rc = 0;

    if (done == NULL)
        return SY_ENOMEM;
    for (size_t i = 0; i < n; i++)
        total += recs[i]->json_len + 1 + 8;
    rc |= buf_reserve(out, total);
    rc |= buf_puts(out, "{\"eventSource\":\"SelfManagedKafka\",\"bootstrapServers\":\"");
    rc |= buf_json_escape(out, sk->cfg->bootstrap_servers, strlen(sk->cfg->bootstrap_servers));
    rc |= buf_puts(out, "\",\"records\":{");
    for (size_t i = 0, groups = 0; i < n && rc == 0; i++) {
        const struct kpart *kp;
        int first = 1;

        if (done[i])
            continue;
        kp = &sk->parts[recs[i]->partition];
        rc |= buf_puts(out, groups++ == 0 ? "\"" : ",\"");
        rc |= buf_json_escape(out, kp->key, kp->key_len);
        rc |= buf_puts(out, "\":[");
        for (size_t j = i; j < n; j++) {
            if (done[j] || recs[j]->partition != recs[i]->partition)
                continue;
            done[j] = 1;
            if (!first)
                rc |= buf_append(out, ",", 1);
            first = 0;
            rc |= buf_append(out, recs[j]->json, recs[j]->json_len);
        }
        rc |= buf_puts(out, "]");
    }
    rc |= buf_puts(out, "}}");
    free(done);
    return rc != 0 ? SY_ENOMEM : 0;
}

int src_kafka_batch_info(struct source *src, struct source_record *const *recs, size_t n,
                         struct buf *out)
{
    struct src_kafka *sk = (struct src_kafka *)src;
    unsigned char *done = calloc(n ? n : 1, 1);
    size_t payload = 96 + strlen(sk->cfg->bootstrap_servers);
    int rc = 0;

    if (done == NULL)
        return SY_ENOMEM;
    for (size_t i = 0; i < n; i++)
        payload += recs[i]->json_len + 1;
    rc |= buf_printf(out, "\"KafkaBatchInfo\":{\"batchSize\":%zu,\"eventSourceArn\":\"", n);
    rc |= buf_json_escape(out, sk->arn, strlen(sk->arn));
    rc |= buf_puts(out, "\",\"bootstrapServers\":\"");
    rc |= buf_json_escape(out, sk->cfg->bootstrap_servers, strlen(sk->cfg->bootstrap_servers));
    rc |= buf_printf(out, "\",\"payloadSize\":%zu,\"recordsInfo\":{", payload);
    for (size_t i = 0, groups = 0; i < n && rc == 0; i++) {
        const struct source_record *first = recs[i], *last = recs[i];
        char t1[32], t2[32];

        if (done[i])
            continue;
        for (size_t j = i; j < n; j++) {
            if (done[j] || recs[j]->partition != first->partition)
                continue;
            done[j] = 1;
            if (recs[j]->seq < first->seq)
                first = recs[j];
            if (recs[j]->seq > last->seq)
                last = recs[j];
        }
        time_iso8601(t1, (uint64_t)first->sent_ms);
        time_iso8601(t2, (uint64_t)last->sent_ms);
        rc |= buf_puts(out, groups++ == 0 ? "\"" : ",\"");
        rc |= buf_json_escape(out, sk->parts[first->partition].key,
                              sk->parts[first->partition].key_len);
        rc |= buf_printf(out,
                         "\":{\"firstRecordOffset\":\"%llu\",\"lastRecordOffset\":\"%llu\","
                         "\"firstRecordTimestamp\":\"%s\",\"lastRecordTimestamp\":\"%s\"}",
                         (unsigned long long)first->seq, (unsigned long long)last->seq, t1, t2);
    }
    rc |= buf_puts(out, "}}");
    free(done);
    return rc != 0 ? SY_ENOMEM : 0;
}

int src_kafka_record_info(struct source *src, const struct source_record *rec, struct buf *out,
                          char **key, size_t *key_len)
{
    struct src_kafka *sk = (struct src_kafka *)src;
    static const char tag[] = "\"timestampType\":\"";
    const char *p = memmem(rec->json, rec->json_len, tag, sizeof(tag) - 1);
    const char *end = rec->json + rec->json_len;
    size_t payload = 96 + strlen(sk->cfg->bootstrap_servers) + rec->json_len;
    char ts[32];
    int rc = 0;

    *key = NULL;
    *key_len = 0;
    /* The key is the base64 "key" member right after timestampType (record_json's order). */
    if (p != NULL)
        p = memchr(p + sizeof(tag) - 1, '"', (size_t)(end - (p + sizeof(tag) - 1)));
    if (p != NULL && (size_t)(end - p) > 9 && memcmp(p, "\",\"key\":\"", 9) == 0) {
        const char *k = p + 9, *q = memchr(k, '"', (size_t)(end - k));

        if (q != NULL && (*key = b64_decode_new(k, (size_t)(q - k), key_len)) == NULL)
            return SY_ENOMEM;
    }
    time_iso8601(ts, (uint64_t)rec->sent_ms);
    rc |= buf_puts(out, "\"KafkaBatchInfo\":{\"batchSize\":1,\"eventSourceArn\":\"");
    rc |= buf_json_escape(out, sk->arn, strlen(sk->arn));
    rc |= buf_puts(out, "\",\"bootstrapServers\":\"");
    rc |= buf_json_escape(out, sk->cfg->bootstrap_servers, strlen(sk->cfg->bootstrap_servers));
    rc |= buf_printf(out,
                     "\",\"payloadSize\":%zu,\"recordInfo\":{\"offset\":\"%llu\","
                     "\"timestamp\":\"%s\"}}",
                     payload, (unsigned long long)rec->seq, ts);
    if (rc != 0) {
        free(*key);
        *key = NULL;
        return SY_ENOMEM;
    }
    return 0;
}
