/*
 * sources/redis/redis_event.c - the record JSON of the Redis source: Lambda's SQS record, field
 * for field and in its order (reference/lambda-semantics.md §5.4), so SQS handlers run
 * unchanged:
 *
 *   {"messageId": list: our id (a UUID, stable across redeliveries) | stream: the entry id,
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
 * Everything is written with a streaming writer into a reused buffer (no DOM): a record costs
 * one pass over the body (UTF-8 check and escape together, 8 bytes at a time over plain ASCII),
 * an MD5, and one allocation for the record itself.
 */
#include "redis_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/b64.h"
#include "core/time.h"

#define ENC_ATTR "switchyard.encoding"

/* ---- UTF-8 and JSON strings --------------------------------------------------------------- */

/* True when the 8 bytes at P are ASCII that JSON takes as they are (no control, '"', '\\'). */
static bool plain8(const unsigned char *p)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    uint64_t w, lt, q, bs;

    memcpy(&w, p, 8);
    lt = (w - ones * 0x20) & ~w & highs; /* some byte < 0x20 (exact when no byte >= 0x80) */
    q = w ^ (ones * '"');
    q = (q - ones) & ~q & highs; /* some byte == '"' */
    bs = w ^ (ones * '\\');
    bs = (bs - ones) & ~bs & highs; /* some byte == '\\' */
    return ((w & highs) | lt | q | bs) == 0;
}

/* Length of the valid UTF-8 sequence of 2..4 bytes at S (LEFT bytes available), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t left)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    size_t n;

    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        if (c == 0xed)
            hi = 0x9f; /* UTF-16 surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (left < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return n;
}

/* The JSON escape of control or special byte C (same spelling as buf_json_escape()). */
static int put_escape(struct buf *b, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";
    char esc[6] = {'\\', 0, 0, 0, 0, 0};
    size_t k = 2;

    switch (c) {
    case '"':
        esc[1] = '"';
        break;
    case '\\':
        esc[1] = '\\';
        break;
    case '\n':
        esc[1] = 'n';
        break;
    case '\r':
        esc[1] = 'r';
        break;
    case '\t':
        esc[1] = 't';
        break;
    default:
        esc[1] = 'u';
        esc[2] = '0';
        esc[3] = '0';
        esc[4] = hex[c >> 4];
        esc[5] = hex[c & 15];
        k = 6;
    }
    return buf_append(b, esc, k);
}

int src_redis_json_utf8(struct buf *b, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t start = b->len, i = 0, run = 0;

    if (buf_reserve(b, n + 16) != 0)
        return SY_ENOMEM;
    while (i < n) {
        unsigned char c;

        if (i + 8 <= n && plain8(s + i)) {
            i += 8;
            continue;
        }
        c = s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t k = utf8_seq(s + i, n - i);

            if (k == 0) {
                b->len = start;
                b->data[start] = '\0';
                return 1;
            }
            i += k;
            continue;
        }
        /* A byte to escape: the plain run before it goes first. */
        if (buf_append(b, s + run, i - run) != 0 || put_escape(b, c) != 0)
            return SY_ENOMEM;
        run = ++i;
    }
    return buf_append(b, s + run, n - run);
}

/* ---- small writers -------------------------------------------------------------------------- */

static int put(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

/* Literal L (a string constant) without a strlen() at run time. */
#define PUT_LIT(b, l) buf_append((b), (l), sizeof(l) - 1)

/* V in decimal (the hot path avoids printf: it formats twice). */
static int put_i64(struct buf *b, int64_t v)
{
    char tmp[24], *p = tmp + sizeof(tmp);
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        *--p = '-';
    return buf_append(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

static int put_b64(struct buf *b, const void *p, size_t n)
{
    size_t need = b64_encoded_size(n);

    if (buf_reserve(b, need) != 0)
        return SY_ENOMEM;
    b->len += b64_encode(p, n, b->data + b->len);
    return 0;
}

static void hex32(const unsigned char md[16], char out[33])
{
    static const char hex[] = "0123456789abcdef";

    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[32] = '\0';
}

/* Hex MD5 of P[0..N) into OUT. */
static void md5_hex(struct src_redis *sr, const void *p, size_t n, char out[33])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;

    if (EVP_DigestInit_ex(sr->md_ctx, sr->md5, NULL) != 1 ||
        EVP_DigestUpdate(sr->md_ctx, p, n) != 1 || EVP_DigestFinal_ex(sr->md_ctx, md, &len) != 1 ||
        len != 16) {
        memset(md, 0, sizeof(md));
    }
    hex32(md, out);
}

/* SQS's MD5 of message attributes hashes each part as a 4-byte big-endian length + bytes. */
static void md5_part(struct src_redis *sr, const void *p, size_t n)
{
    unsigned char len[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                            (unsigned char)(n >> 8), (unsigned char)n};

    EVP_DigestUpdate(sr->md_ctx, len, 4);
    EVP_DigestUpdate(sr->md_ctx, p, n);
}

/* Attributes sort by name, bytewise (SQS hashes them in that order). */
static int attr_cmp(const void *pa, const void *pb)
{
    const struct src_redis_attr *a = *(const struct src_redis_attr *const *)pa;
    const struct src_redis_attr *b = *(const struct src_redis_attr *const *)pb;
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

    if (put(&b, ",\"eventSource\":\"aws:sqs\",\"eventSourceARN\":\"") != 0 ||
        buf_json_escape(&b, sr->arn, strlen(sr->arn)) != 0 || put(&b, "\",\"awsRegion\":\"") != 0 ||
        buf_json_escape(&b, region, strlen(region)) != 0 || put(&b, "\"}") != 0) {
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

/*
 * messageAttributes' members for the sorted ATTRS[0..N), and their MD5 into MD5HEX (when N > 0).
 * Attributes whose name is not UTF-8 cannot be JSON keys and are left out.
 */
static int put_attrs(struct src_redis *sr, struct buf *b, const struct src_redis_attr *const *attrs,
                     size_t n, char md5hex[33])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    bool first = true;

    if (n > 0 && EVP_DigestInit_ex(sr->md_ctx, sr->md5, NULL) != 1)
        return SY_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const struct src_redis_attr *a = attrs[i];
        size_t mark = b->len;
        int rc;

        if (buf_append(b, first ? "\"" : ",\"", first ? 1 : 2) != 0)
            return SY_ENOMEM;
        rc = src_redis_json_utf8(b, a->name, a->name_len);
        if (rc == 1) {
            b->len = mark; /* not a possible JSON key: skip it */
            b->data[mark] = '\0';
            continue;
        }
        if (rc != 0 || put(b, "\":{\"stringValue\":\"") != 0)
            return SY_ENOMEM;
        rc = src_redis_json_utf8(b, a->val, a->val_len);
        if (rc < 0)
            return rc;
        md5_part(sr, a->name, a->name_len);
        if (rc == 0) {
            if (put(b, "\",\"stringListValues\":[],\"binaryListValues\":[],\"dataType\":"
                       "\"String\"}") != 0)
                return SY_ENOMEM;
            md5_part(sr, "String", 6);
            EVP_DigestUpdate(sr->md_ctx, "\x01", 1); /* transport type: string */
        } else {
            /* Not UTF-8: a Binary attribute, its value in base64. */
            b->len -= strlen("stringValue\":\"");
            if (put(b, "binaryValue\":\"") != 0 || put_b64(b, a->val, a->val_len) != 0 ||
                put(b, "\",\"stringListValues\":[],\"binaryListValues\":[],\"dataType\":"
                       "\"Binary\"}") != 0)
                return SY_ENOMEM;
            md5_part(sr, "Binary", 6);
            EVP_DigestUpdate(sr->md_ctx, "\x02", 1); /* transport type: binary */
        }
        md5_part(sr, a->val, a->val_len);
        first = false;
    }
    md5hex[0] = '\0';
    if (!first && EVP_DigestFinal_ex(sr->md_ctx, md, &len) == 1 && len == 16)
        hex32(md, md5hex);
    else if (n > 0)
        EVP_DigestFinal_ex(sr->md_ctx, md, &len); /* leave the context reusable */
    return 0;
}

struct source_record *src_redis_record_new(struct src_redis *sr, const struct src_redis_msg *m)
{
    static const struct src_redis_attr enc = {ENC_ATTR, sizeof(ENC_ATTR) - 1, "base64", 6};
    const struct src_redis_attr *small[17], **sorted = small;
    struct buf *b = &sr->js;
    struct source_record *rec = NULL;
    char md5body[33], md5attrs[33] = "", rh_small[256], *rh = rh_small;
    size_t body_at, n_sorted = 0, rh_len = strlen(sr->receipt_prefix) + m->id_len;
    bool binary = false;
    int rc;

    buf_reset(b);
    if (m->n_attrs + 1 > sizeof(small) / sizeof(small[0])) {
        sorted = malloc((m->n_attrs + 1) * sizeof(*sorted));
        if (sorted == NULL)
            return NULL;
    }
    if (rh_len > sizeof(rh_small)) {
        rh = malloc(rh_len);
        if (rh == NULL)
            goto out;
    }
    memcpy(rh, sr->receipt_prefix, rh_len - m->id_len);
    memcpy(rh + rh_len - m->id_len, m->id, m->id_len);

    /* One reservation for the usual case: no more growing on the way. */
    if (buf_reserve(b, 600 + 2 * m->body_len + 2 * rh_len + sr->json_tail_len) != 0)
        goto out;
    if (PUT_LIT(b, "{\"messageId\":\"") != 0 || buf_json_escape(b, m->id, m->id_len) != 0 ||
        PUT_LIT(b, "\",\"receiptHandle\":\"") != 0 || put_b64(b, rh, rh_len) != 0 ||
        PUT_LIT(b, "\",\"body\":\"") != 0)
        goto out;
    body_at = b->len;
    rc = src_redis_json_utf8(b, m->body, m->body_len);
    if (rc < 0)
        goto out;
    if (rc == 1) {
        binary = true;
        if (put_b64(b, m->body, m->body_len) != 0)
            goto out;
        md5_hex(sr, b->data + body_at, b->len - body_at, md5body);
    } else {
        md5_hex(sr, m->body, m->body_len, md5body);
    }
    if (PUT_LIT(b, "\",\"attributes\":{\"ApproximateReceiveCount\":\"") != 0 ||
        put_i64(b, m->count) != 0 || PUT_LIT(b, "\",\"SentTimestamp\":\"") != 0 ||
        put_i64(b, m->sent_ms) != 0 ||
        PUT_LIT(b, "\",\"SenderId\":\"switchyard\",\"ApproximateFirstReceiveTimestamp\":\"") != 0 ||
        put_i64(b, m->first_ms) != 0 || PUT_LIT(b, "\"},\"messageAttributes\":{") != 0)
        goto out;
    for (size_t i = 0; i < m->n_attrs; i++)
        sorted[n_sorted++] = &m->attrs[i];
    if (binary)
        sorted[n_sorted++] = &enc;
    if (n_sorted > 1)
        qsort(sorted, n_sorted, sizeof(*sorted), attr_cmp);
    if (put_attrs(sr, b, sorted, n_sorted, md5attrs) != 0)
        goto out;
    if (PUT_LIT(b, "},\"md5OfMessageAttributes\":") != 0)
        goto out;
    if (md5attrs[0] != '\0') {
        if (PUT_LIT(b, "\"") != 0 || buf_append(b, md5attrs, 32) != 0 || PUT_LIT(b, "\"") != 0)
            goto out;
    } else if (PUT_LIT(b, "null") != 0) {
        goto out;
    }
    if (PUT_LIT(b, ",\"md5OfBody\":\"") != 0 || buf_append(b, md5body, 32) != 0 ||
        PUT_LIT(b, "\"") != 0 || buf_append(b, sr->json_tail, sr->json_tail_len) != 0)
        goto out;

    rec = source_record_new(m->id_len, m->body_len, b->len);
    if (rec == NULL)
        goto out;
    source_record_fill(rec, m->id, m->body, b->data);
    rec->sent_ms = m->sent_ms;
    rec->receive_count = m->count > 0 ? m->count : 1;
    if (binary)
        rec->flags |= SOURCE_REC_BINARY;
    if (sr->cfg->max_receive_count > 0 && m->count > (uint32_t)sr->cfg->max_receive_count)
        rec->flags |= SOURCE_REC_DEAD_LETTER;
out:
    if (sorted != small)
        free(sorted);
    if (rh != rh_small)
        free(rh);
    return rec;
}

/* ---- the batch event and its on-failure identity -------------------------------------------- */

int src_redis_encode_batch(struct source *src, struct source_record *const *recs, size_t n,
                           struct buf *out)
{
    size_t total = 16;

    for (size_t i = 0; i < n; i++)
        total += recs[i]->json_len + 1;
    if (buf_reserve(out, total) != 0 || put(out, "{\"Records\":[") != 0)
        return SY_ENOMEM;
    for (size_t i = 0; i < n; i++)
        if ((i > 0 && buf_append(out, ",", 1) != 0) ||
            buf_append(out, recs[i]->json, recs[i]->json_len) != 0)
            return SY_ENOMEM;
    return put(out, "]}");
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
