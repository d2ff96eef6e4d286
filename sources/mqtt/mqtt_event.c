/*
 * sources/mqtt/mqtt_event.c - the MQTT source's record and batch JSON, written as it streams.
 *
 * One record, members in this order:
 *   {"topic": "sensors/a/temp", "qos": 1, "retain": false,
 *    "messageId": "42",          the spool's id: unique on this broker's spool, stable when the
 *                                message is delivered again (a retry, a restart); the
 *                                itemIdentifier of batchItemFailures
 *    "packetId": 7,              the MQTT packet identifier (0 for QoS 0): reused by the server,
 *                                so never an identity
 *    "timestamp": 1764650000123, when this broker received it (epoch ms; MQTT carries none)
 *    "payload": base64,
 *    "userProperties": [{"key": "k", "value": "v"}, ...]}
 * userProperties is a list of pairs in wire order, not an object: MQTT 5 allows a name more
 * than once and says the order is meaningful (MQTT 5.0 §3.3.2.3.7); [] for MQTT 3.1.1 or a
 * message without any.
 *
 * The batch: {"eventSource": "switchyard:mqtt", "Records": [records in spool order]}.
 * The record's `data` (what filters read, under the key `payload`) is the payload's bytes;
 * bytes that are not UTF-8 flag the record SOURCE_REC_BINARY (filters then ignore the payload
 * part of a pattern, the Kafka / Amazon MQ rule).
 *
 * The on-failure record's identity member:
 *   "MQTTBatchInfo": {"batchSize", "endpoint", "firstMessageId", "lastMessageId",
 *                     "firstReceivedTimestamp", "lastReceivedTimestamp" (ISO-8601), "topics"}
 *
 * Loop thread (and the spool's LOAD, which builds records on the loop too).
 */
#include "mqtt_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "core/b64.h"
#include "core/jsonstr.h"
#include "core/time.h"

static int put_b64(struct buf *b, const void *p, size_t n)
{
    size_t need = b64_encoded_size(n);

    if (buf_reserve(b, need) != 0)
        return SY_ENOMEM;
    b->len += b64_encode(p, n, b->data + b->len);
    return 0;
}

char *src_mqtt_props_json(const void *props)
{
    const mosquitto_property *p;
    char *name = NULL, *value = NULL;
    struct buf b = {0};
    int rc = buf_puts(&b, "[");
    bool first = true;

    for (p = mosquitto_property_read_string_pair(props, MQTT_PROP_USER_PROPERTY, &name, &value,
                                                 false);
         p != NULL && rc == 0;
         p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value, true)) {
        /* libmosquitto checked both as UTF-8 when it read the packet. */
        rc |= buf_puts(&b, first ? "{\"key\":\"" : ",{\"key\":\"");
        rc |= buf_json_escape(&b, name, strlen(name));
        rc |= buf_puts(&b, "\",\"value\":\"");
        rc |= buf_json_escape(&b, value, strlen(value));
        rc |= buf_puts(&b, "\"}");
        free(name);
        free(value);
        name = value = NULL;
        first = false;
    }
    rc |= buf_puts(&b, "]");
    if (rc != 0) {
        buf_free(&b);
        return NULL;
    }
    return buf_take(&b, NULL);
}

struct source_record *src_mqtt_record_new(const struct src_mqtt_msg *m, uint32_t receives)
{
    struct source_record *rec = NULL;
    struct buf b = {0};
    char id[24];
    int rc = 0, idlen;

    idlen = snprintf(id, sizeof(id), "%" PRId64, m->id);
    rc |= buf_reserve(&b, 160 + strlen(m->topic) * 2 + b64_encoded_size(m->len) +
                              (m->props != NULL ? strlen(m->props) : 2));
    rc |= buf_puts(&b, "{\"topic\":\"");
    rc |= buf_json_escape(&b, m->topic, strlen(m->topic));
    rc |= buf_printf(&b,
                     "\",\"qos\":%d,\"retain\":%s,\"messageId\":\"%s\",\"packetId\":%d,"
                     "\"timestamp\":%" PRId64 ",\"payload\":\"",
                     m->qos, m->retain ? "true" : "false", id, m->packet_id, m->received_ms);
    rc |= put_b64(&b, m->payload, m->len);
    rc |= buf_puts(&b, "\",\"userProperties\":");
    rc |= buf_puts(&b, m->props != NULL ? m->props : "[]");
    rc |= buf_puts(&b, "}");
    if (rc == 0)
        rec = source_record_new((size_t)idlen, m->len, b.len);
    if (rec != NULL) {
        source_record_fill(rec, id, m->payload, b.data);
        rec->sent_ms = m->received_ms;
        rec->receive_count = receives;
        if (m->len > 0 && jsonstr_len(m->payload, m->len) == SIZE_MAX)
            rec->flags |= SOURCE_REC_BINARY;
    }
    buf_free(&b);
    return rec;
}

int src_mqtt_encode_batch(struct source *src, struct source_record *const *recs, size_t n,
                          struct buf *out)
{
    (void)src;
    return source_encode_records_as("switchyard:mqtt", recs, n, out);
}

/* The topic of REC, read back from its JSON (the first member). NULL if absent. */
static const char *rec_topic(const struct source_record *rec, size_t *len)
{
    static const char tag[] = "{\"topic\":\"";
    const char *p, *q;

    if (rec->json_len < sizeof(tag) || memcmp(rec->json, tag, sizeof(tag) - 1) != 0)
        return NULL;
    p = rec->json + sizeof(tag) - 1;
    for (q = p; q < rec->json + rec->json_len && *q != '"'; q++)
        if (*q == '\\')
            q++;
    *len = (size_t)(q - p);
    return p;
}

int src_mqtt_batch_info(struct source *src, struct source_record *const *recs, size_t n,
                        struct buf *out)
{
    struct src_mqtt *mq = (struct src_mqtt *)src;
    int64_t lo = INT64_MAX, hi = INT64_MIN, t_lo = INT64_MAX, t_hi = INT64_MIN;
    char t1[32] = "", t2[32] = "";
    int rc = 0;

    for (size_t i = 0; i < n; i++) {
        int64_t id = strtoll(recs[i]->id, NULL, 10);

        lo = id < lo ? id : lo;
        hi = id > hi ? id : hi;
        t_lo = recs[i]->sent_ms < t_lo ? recs[i]->sent_ms : t_lo;
        t_hi = recs[i]->sent_ms > t_hi ? recs[i]->sent_ms : t_hi;
    }
    if (n > 0) {
        time_iso8601(t1, (uint64_t)t_lo);
        time_iso8601(t2, (uint64_t)t_hi);
    }
    rc |= buf_printf(out, "\"MQTTBatchInfo\":{\"batchSize\":%zu,\"endpoint\":\"", n);
    rc |= buf_json_escape(out, mq->endpoint, strlen(mq->endpoint));
    rc |= buf_printf(out,
                     "\",\"firstMessageId\":\"%" PRId64 "\",\"lastMessageId\":\"%" PRId64
                     "\",\"firstReceivedTimestamp\":\"%s\",\"lastReceivedTimestamp\":\"%s\","
                     "\"topics\":[",
                     n > 0 ? lo : 0, n > 0 ? hi : 0, t1, t2);
    /* The distinct topics, in the order they first appear (the JSON is already escaped). */
    for (size_t i = 0, k = 0; i < n && rc == 0; i++) {
        size_t len, l2;
        const char *t = rec_topic(recs[i], &len);
        bool seen = false;

        if (t == NULL)
            continue;
        for (size_t j = 0; j < i && !seen; j++) {
            const char *u = rec_topic(recs[j], &l2);

            seen = u != NULL && l2 == len && memcmp(u, t, len) == 0;
        }
        if (seen)
            continue;
        rc |= buf_puts(out, k++ == 0 ? "\"" : ",\"");
        rc |= buf_append(out, t, len);
        rc |= buf_puts(out, "\"");
    }
    rc |= buf_puts(out, "]}");
    return rc != 0 ? SY_ENOMEM : 0;
}
