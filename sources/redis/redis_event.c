/*
 * sources/redis/redis_event.c - the record JSON of the Redis source: Lambda's SQS record, field
 * for field and in its order (reference/lambda-semantics.md §5.4), so SQS handlers run
 * unchanged:
 *
 *   {"messageId": list: our id (a UUID derived from its lease's, stable across redeliveries:
 *                   redis_list.c) | stream: the entry id,
 *    "receiptHandle": base64 of "KEY:ID" (opaque),
 *    "body": the element | the entry's body (rule in redis_stream.c),
 *    "attributes": {"ApproximateReceiveCount": "N",
 *                   "SentTimestamp": list: the first receive (an element has no time of its
 *                                    own) | stream: the ms part of the entry id,
 *                   "SenderId": "switchyard",
 *                   "ApproximateFirstReceiveTimestamp": list: the first receive | stream: now
 *                                    for a first delivery, else the entry id's time},
 *    "messageAttributes": {} | stream with body_field: the other fields, each
 *                   {"stringValue": V, "stringListValues": [], "binaryListValues": [],
 *                    "dataType": "String"} (or "binaryValue" / "Binary" when V is not UTF-8),
 *    "md5OfMessageAttributes": null | the MD5 of the attributes as SQS computes it,
 *    "md5OfBody": hex MD5 of the body string as delivered,
 *    "eventSource": "aws:sqs",
 *    "eventSourceARN": "arn:aws:sqs:REGION:ACCOUNT:KEY" (KEY: the list or stream; SQS libraries
 *                   that parse the ARN find the queue name in its last part),
 *    "awsRegion": REGION}
 *
 * Binary bodies: a body that is not valid UTF-8 cannot be a JSON string. It is delivered
 * base64-encoded in `body`, with the message attribute "switchyard.encoding" = "base64", and the
 * record is flagged SOURCE_REC_BINARY (its `data` stays the raw bytes). md5OfBody is then the
 * MD5 of the base64 text, the string the function receives.
 *
 * A record is written in two passes and one allocation: the first measures every part (the
 * body's UTF-8 check and its escaped length in one pass, 8 bytes at a time over plain ASCII)
 * and computes the digests; the second writes the JSON straight into the record's own block
 * (source_record_new() with the exact length), the body with one memcpy when it needs no
 * escape. MD5 is core/md5.c (EVP's per-call cost was larger than hashing a small body).
 */
#include "redis_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/b64.h"
#include "core/errors.h"
#include "core/jsonstr.h"
#include "core/md5.h"
#include "core/time.h"

#define ENC_ATTR "switchyard.encoding"

/* ---- UTF-8 and JSON strings --------------------------------------------------------------- */

/* ---- small writers into a buffer of the right size ----------------------------------------- */

/* Literal L (a string constant) at P, P moved past it: a fixed-size memcpy. */
#define PUT_LIT(p, l) ((p) = (char *)memcpy((p), (l), sizeof(l) - 1) + sizeof(l) - 1)

static char *put_mem(char *p, const void *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

/* A number in decimal, formatted in the first pass and copied in the second. */
struct dec {
    char s[24];
    size_t n;
    const char *at; /* the digits: the end of s */
};

/* V (>= 0; negatives are written as 0) into D, two digits at a time. */
static void dec_fmt(struct dec *d, int64_t v)
{
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930"
                                "31323334353637383940414243444546474849505152535455565758596061"
                                "62636465666768697071727374757677787980818283848586878889909192"
                                "93949596979899";
    uint64_t u = v > 0 ? (uint64_t)v : 0;
    char *p = d->s + sizeof(d->s);

    while (u >= 100) {
        p -= 2;
        memcpy(p, pairs + 2 * (u % 100), 2);
        u /= 100;
    }
    if (u >= 10) {
        p -= 2;
        memcpy(p, pairs + 2 * u, 2);
    } else {
        *--p = (char)('0' + u);
    }
    d->at = p;
    d->n = (size_t)(d->s + sizeof(d->s) - p);
}

/* Base64 (RFC 4648, padded) of P[0..N) at DST: b64_encoded_size(N) - 1 bytes, no NUL (it
 * would land past the record). Written here rather than with core/b64.c so that nothing of
 * OpenSSL's runs per record. */
static char *put_b64(char *dst, const void *p, size_t n)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *s = p;
    size_t i = 0;

    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];

        dst[0] = abc[v >> 18];
        dst[1] = abc[(v >> 12) & 63];
        dst[2] = abc[(v >> 6) & 63];
        dst[3] = abc[v & 63];
        dst += 4;
    }
    if (i < n) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);

        dst[0] = abc[v >> 18];
        dst[1] = abc[(v >> 12) & 63];
        dst[2] = i + 1 < n ? abc[(v >> 6) & 63] : '=';
        dst[3] = '=';
        dst += 4;
    }
    return dst;
}

/* The receipt handle RH[0..N) in base64 at DST, reusing the groups it shares with the last
 * one (sr->rh_raw), which it then replaces when it fits. */
static char *put_receipt(struct src_redis *sr, char *dst, const char *rh, size_t n)
{
    size_t same = 0, lim = n < sr->rh_raw_len ? n : sr->rh_raw_len;
    uint64_t a, b;
    char *end;

    for (; same + 8 <= lim; same += 8) {
        memcpy(&a, rh + same, 8);
        memcpy(&b, sr->rh_raw + same, 8);
        if (a != b)
            break;
    }
    while (same < lim && rh[same] == sr->rh_raw[same])
        same++;
    same -= same % 3; /* whole groups only: the last one of the old handle may be padded */
    memcpy(dst, sr->rh_b64, same / 3 * 4);
    end = put_b64(dst + same / 3 * 4, rh + same, n - same);
    if (n <= sizeof(sr->rh_raw) && (size_t)(end - dst) <= sizeof(sr->rh_b64)) {
        memcpy(sr->rh_raw, rh, n);
        sr->rh_raw_len = n;
        memcpy(sr->rh_b64 + same / 3 * 4, dst + same / 3 * 4, (size_t)(end - dst) - same / 3 * 4);
    } else {
        sr->rh_raw_len = 0;
    }
    return end;
}

/* S[0..N) escaped at P, when its escaped length is ESC_LEN (one copy when nothing needs an
 * escape: escapes only ever lengthen). */
static char *put_json(char *p, const char *s, size_t n, size_t esc_len)
{
    return esc_len == n ? put_mem(p, s, n) : jsonstr_put(p, s, n);
}

/* SQS's MD5 of message attributes hashes each part as a 4-byte big-endian length + bytes. */
static void md5_part(struct md5_ctx *c, const void *p, size_t n)
{
    unsigned char len[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                            (unsigned char)(n >> 8), (unsigned char)n};

    md5_update(c, len, 4);
    md5_update(c, p, n);
}

/* Attributes sort by name, bytewise (SQS hashes them in that order). */
static int attr_cmp(const void *pa, const void *pb)
{
    const struct src_redis_attr *a = ((const struct src_redis_attr *const *)pa)[0];
    const struct src_redis_attr *b = ((const struct src_redis_attr *const *)pb)[0];
    size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
    int c = memcmp(a->name, b->name, n);

    if (c != 0)
        return c;
    return a->name_len < b->name_len ? -1 : a->name_len > b->name_len;
}

int src_redis_event_init(struct src_redis *sr)
{
    const char *region = sr->base.ctx->region != NULL ? sr->base.ctx->region : "us-east-1";
    struct buf b = {0};

    if (buf_puts(&b, ",\"eventSource\":\"aws:sqs\",\"eventSourceARN\":\"") != 0 ||
        buf_json_escape(&b, sr->arn, strlen(sr->arn)) != 0 ||
        buf_puts(&b, "\",\"awsRegion\":\"") != 0 ||
        buf_json_escape(&b, region, strlen(region)) != 0 || buf_puts(&b, "\"}") != 0) {
        buf_free(&b);
        return SY_ENOMEM;
    }
    sr->json_tail = buf_take(&b, &sr->json_tail_len);
    if (asprintf(&sr->receipt_prefix, "%s:", sr->key) < 0) {
        sr->receipt_prefix = NULL;
        return SY_ENOMEM;
    }
    return 0;
}

/* ---- the record ------------------------------------------------------------------------------ */

/* The fixed text between the variable parts, in order. */
#define J_ID "{\"messageId\":\""
#define J_RH "\",\"receiptHandle\":\""
#define J_BODY "\",\"body\":\""
#define J_COUNT "\",\"attributes\":{\"ApproximateReceiveCount\":\""
#define J_SENT "\",\"SentTimestamp\":\""
#define J_FIRST "\",\"SenderId\":\"switchyard\",\"ApproximateFirstReceiveTimestamp\":\""
#define J_ATTRS "\"},\"messageAttributes\":{"
#define J_AMD5 "},\"md5OfMessageAttributes\":"
#define J_BMD5 ",\"md5OfBody\":\""
#define J_A_NAME "\""
#define J_A_SEP ",\""
#define J_A_STR "\":{\"stringValue\":\""
#define J_A_BIN "\":{\"binaryValue\":\""
#define J_A_TAIL_S "\",\"stringListValues\":[],\"binaryListValues\":[],\"dataType\":\"String\"}"
#define J_A_TAIL_B "\",\"stringListValues\":[],\"binaryListValues\":[],\"dataType\":\"Binary\"}"
#define LIT_LEN(l) (sizeof(l) - 1)

/* One message attribute as it will be written (the first pass). */
struct attr_plan {
    const struct src_redis_attr *a;
    size_t name_len; /* escaped */
    size_t val_len;  /* escaped, or the base64 length */
    bool binary;     /* the value is not UTF-8: binaryValue, base64 */
};

/*
 * Plan ATTRS[0..N) (sorted; names that are not UTF-8 cannot be JSON keys and are left out):
 * fills PLAN (room for N), *KEPT, the bytes they take inside messageAttributes' braces, and
 * their MD5 into MD5HEX ("" when none is kept).
 */
static size_t plan_attrs(const struct src_redis_attr *const *attrs, size_t n,
                         struct attr_plan *plan, size_t *kept, char md5hex[33])
{
    struct md5_ctx c;
    size_t total = 0, k = 0;
    unsigned char md[MD5_LEN];

    *kept = 0;
    md5hex[0] = '\0';
    if (n == 0)
        return 0;
    md5_init(&c);
    for (size_t i = 0; i < n; i++) {
        const struct src_redis_attr *a = attrs[i];
        struct attr_plan *p = &plan[k];

        p->a = a;
        p->name_len = jsonstr_len(a->name, a->name_len);
        if (p->name_len == SIZE_MAX)
            continue;
        p->val_len = jsonstr_len(a->val, a->val_len);
        p->binary = p->val_len == SIZE_MAX;
        if (p->binary)
            p->val_len = b64_encoded_size(a->val_len) - 1;
        total += (k == 0 ? LIT_LEN(J_A_NAME) : LIT_LEN(J_A_SEP)) + p->name_len + LIT_LEN(J_A_STR) +
                 p->val_len + LIT_LEN(J_A_TAIL_S);
        md5_part(&c, a->name, a->name_len);
        md5_part(&c, p->binary ? "Binary" : "String", 6);
        md5_update(&c, p->binary ? "\x02" : "\x01", 1); /* the transport type */
        md5_part(&c, a->val, a->val_len);
        k++;
    }
    *kept = k;
    md5hex[0] = '\0';
    if (k > 0) {
        md5_final(&c, md);
        md5_hex(md, md5hex);
    }
    return total;
}

struct source_record *src_redis_record_new(struct src_redis *sr, const struct src_redis_msg *m)
{
    static const struct src_redis_attr enc = {ENC_ATTR, sizeof(ENC_ATTR) - 1, "base64", 6};
    const struct src_redis_attr *small[17], **sorted = small;
    struct attr_plan plan_small[17], *plan = plan_small;
    struct source_record *rec = NULL;
    size_t prefix_len = strlen(sr->receipt_prefix), rh_len = prefix_len + m->id_len;
    size_t n_sorted = 0, n_kept = 0, id_len, body_len, attrs_len, total;
    char md5body[33], md5attrs[33], rh_small[256], *rh = rh_small, *p, *body_at;
    unsigned char md[MD5_LEN];
    uint32_t count = m->count > 0 ? m->count : 1;
    struct dec d_count, d_sent, d_first;
    bool binary;

    /* Pass 1: every part's length. */
    if (m->n_attrs + 1 > sizeof(small) / sizeof(small[0])) {
        sorted = malloc((m->n_attrs + 1) * sizeof(*sorted));
        plan = malloc((m->n_attrs + 1) * sizeof(*plan));
        if (sorted == NULL || plan == NULL)
            goto out;
    }
    if (rh_len > sizeof(rh_small) && (rh = malloc(rh_len)) == NULL)
        goto out;
    memcpy(rh, sr->receipt_prefix, prefix_len);
    memcpy(rh + prefix_len, m->id, m->id_len);
    id_len = jsonstr_len(m->id, m->id_len);
    if (id_len == SIZE_MAX)
        goto out; /* ids are ours or the server's: ASCII */
    body_len = jsonstr_len(m->body, m->body_len);
    binary = body_len == SIZE_MAX;
    if (binary)
        body_len = b64_encoded_size(m->body_len) - 1;
    for (size_t i = 0; i < m->n_attrs; i++)
        sorted[n_sorted++] = &m->attrs[i];
    if (binary)
        sorted[n_sorted++] = &enc;
    if (n_sorted > 1)
        qsort(sorted, n_sorted, sizeof(*sorted), attr_cmp);
    attrs_len = plan_attrs(sorted, n_sorted, plan, &n_kept, md5attrs);
    dec_fmt(&d_count, count);
    dec_fmt(&d_sent, m->sent_ms);
    dec_fmt(&d_first, m->first_ms);
    total = LIT_LEN(J_ID) + id_len + LIT_LEN(J_RH) + b64_encoded_size(rh_len) - 1 +
            LIT_LEN(J_BODY) + body_len + LIT_LEN(J_COUNT) + d_count.n + LIT_LEN(J_SENT) + d_sent.n +
            LIT_LEN(J_FIRST) + d_first.n + LIT_LEN(J_ATTRS) + attrs_len + LIT_LEN(J_AMD5) +
            (n_kept > 0 ? 34 : 4) + LIT_LEN(J_BMD5) + 32 + 1 + sr->json_tail_len;

    /* Pass 2: straight into the record (its strings live in its own block). */
    rec = source_record_new(m->id_len, m->body_len, total);
    if (rec == NULL)
        goto out;
    /* What source_record_fill() does for the id and the data; the JSON is written in place. */
    memcpy((char *)rec->id, m->id, m->id_len);
    if (m->body_len > 0)
        memcpy((char *)rec->data, m->body, m->body_len);
    p = (char *)rec->json;
    PUT_LIT(p, J_ID);
    p = put_json(p, m->id, m->id_len, id_len);
    PUT_LIT(p, J_RH);
    p = put_receipt(sr, p, rh, rh_len);
    PUT_LIT(p, J_BODY);
    body_at = p;
    if (binary) {
        /* md5OfBody is the MD5 of the string the function receives: the base64 text. */
        p = put_b64(p, m->body, m->body_len);
        md5(body_at, (size_t)(p - body_at), md);
    } else {
        p = put_json(p, m->body, m->body_len, body_len);
        md5(m->body, m->body_len, md);
    }
    md5_hex(md, md5body);
    PUT_LIT(p, J_COUNT);
    p = put_mem(p, d_count.at, d_count.n);
    PUT_LIT(p, J_SENT);
    p = put_mem(p, d_sent.at, d_sent.n);
    PUT_LIT(p, J_FIRST);
    p = put_mem(p, d_first.at, d_first.n);
    PUT_LIT(p, J_ATTRS);
    for (size_t i = 0; i < n_kept; i++) {
        const struct attr_plan *ap = &plan[i];

        if (i == 0)
            PUT_LIT(p, J_A_NAME);
        else
            PUT_LIT(p, J_A_SEP);
        p = put_json(p, ap->a->name, ap->a->name_len, ap->name_len);
        if (ap->binary) {
            PUT_LIT(p, J_A_BIN);
            p = put_b64(p, ap->a->val, ap->a->val_len);
            PUT_LIT(p, J_A_TAIL_B);
        } else {
            PUT_LIT(p, J_A_STR);
            p = put_json(p, ap->a->val, ap->a->val_len, ap->val_len);
            PUT_LIT(p, J_A_TAIL_S);
        }
    }
    PUT_LIT(p, J_AMD5);
    if (n_kept > 0) {
        *p++ = '"';
        p = put_mem(p, md5attrs, 32);
        *p++ = '"';
    } else {
        PUT_LIT(p, "null");
    }
    PUT_LIT(p, J_BMD5);
    p = put_mem(p, md5body, 32);
    *p++ = '"';
    p = put_mem(p, sr->json_tail, sr->json_tail_len);
    /* Our own arithmetic: the two passes must agree to the byte. */
    SY_ASSERT(p == rec->json + total);

    rec->sent_ms = m->sent_ms;
    rec->receive_count = count;
    if (binary)
        rec->flags |= SOURCE_REC_BINARY;
    if (sr->cfg->max_receive_count > 0 && count > (uint32_t)sr->cfg->max_receive_count)
        rec->flags |= SOURCE_REC_DEAD_LETTER;
out:
    if (sorted != small)
        free(sorted);
    if (plan != plan_small)
        free(plan);
    if (rh != rh_small)
        free(rh);
    return rec;
}

/* ---- the batch event and its on-failure identity -------------------------------------------- */

static int put(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int src_redis_encode_batch(struct source *src, struct source_record *const *recs, size_t n,
                           struct buf *out)
{
    (void)src;
    return source_encode_records(recs, n, out);
}

static int put_str(struct buf *b, const char *s)
{
    if (s == NULL)
        return put(b, "null");
    if (buf_append(b, "\"", 1) != 0 || buf_json_escape(b, s, strlen(s)) != 0)
        return SY_ENOMEM;
    return buf_append(b, "\"", 1);
}

static int put_time(struct buf *b, const struct source_record *rec)
{
    char iso[32];

    if (rec == NULL)
        return put(b, "null");
    time_iso8601(iso, rec->sent_ms > 0 ? (uint64_t)rec->sent_ms : 0);
    return buf_printf(b, "\"%s\"", iso);
}

int src_redis_batch_info(struct source *src, struct source_record *const *recs, size_t n,
                         struct buf *out)
{
    const struct src_redis *sr = (const struct src_redis *)src;
    const struct source_record *first = n > 0 ? recs[0] : NULL, *last = n > 0 ? recs[n - 1] : NULL;

    if (put(out, "\"RedisBatchInfo\":{\"mode\":") != 0 || put_str(out, sr->mode->name) != 0 ||
        put(out, ",\"key\":") != 0 || put_str(out, sr->key) != 0 || put(out, ",\"url\":") != 0 ||
        put_str(out, sr->url.safe) != 0 || put(out, ",\"startMessageId\":") != 0 ||
        put_str(out, first ? first->id : NULL) != 0 || put(out, ",\"endMessageId\":") != 0 ||
        put_str(out, last ? last->id : NULL) != 0 ||
        put(out, ",\"approximateArrivalOfFirstRecord\":") != 0 || put_time(out, first) != 0 ||
        put(out, ",\"approximateArrivalOfLastRecord\":") != 0 || put_time(out, last) != 0 ||
        buf_printf(out, ",\"batchSize\":%zu,\"eventSourceArn\":", n) != 0 ||
        put_str(out, sr->arn) != 0 || put(out, "}") != 0)
        return SY_ENOMEM;
    return 0;
}
