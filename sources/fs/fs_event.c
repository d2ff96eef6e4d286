/*
 * sources/fs/fs_event.c - the record JSON of the file-drop source: S3's ObjectCreated
 * notification record, field for field and in its order (reference/lambda-semantics.md §5.7),
 * so S3 handlers run unchanged:
 *
 *   {"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": REGION,
 *    "eventTime": when the broker took the file (ISO-8601 UTC, ms, Z),
 *    "eventName": "ObjectCreated:Put" (closed after writing, or found by a scan) |
 *                 "ObjectCreated:Copy" (renamed into the tree),
 *    "userIdentity": {"principalId": "uid:UID"} (the file's owner),
 *    "requestParameters": {"sourceIPAddress": "127.0.0.1"},
 *    "responseElements": {"x-amz-request-id": 16 hex digits, "x-amz-id-2": base64},
 *    "s3": {"s3SchemaVersion": "1.0", "configurationId": MAPPING,
 *           "bucket": {"name": BUCKET, "ownerIdentity": {"principalId": ACCOUNT},
 *                      "arn": "arn:aws:s3:::BUCKET"},
 *           "object": {"key": the relative path form-URL-encoded, "size": N,
 *                      "eTag": hex MD5 of the content, "sequencer": 18 hex digits}},
 *    "switchyard": {"root": ROOT, "path": ROOT/relative path}}
 *
 * `switchyard` is where we go further than S3: the absolute path of the file (and of the
 * watched root), so the handler can open it. A root or path that is not valid UTF-8 cannot be
 * a JSON string: it comes as "rootBase64" / "pathBase64" (the raw bytes) instead.
 *
 * The key is form-URL-encoded as S3 does: A-Z a-z 0-9 - _ . ~ and '/' as they are, space as
 * '+', every other byte (UTF-8 or not, '+' included) as %XX, so the key is always ASCII.
 *
 * The record's `id` is its key (stable while it is in flight, and what a partial batch
 * response names: {"itemIdentifier": record["s3"]["object"]["key"]}); its `data` is the raw
 * relative path (the ack finds the file by it). Filters match the record JSON itself (the
 * kind has no data key), so a pattern such as {"s3": {"object": {"key": [{"prefix": "in/"}]}}}
 * works on the encoded key.
 */
#include "fs_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/b64.h"
#include "core/jsonstr.h"
#include "core/time.h"

int src_fs_key_encode(struct buf *out, const char *rel, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";

    if (buf_reserve(out, 3 * len + 1) != 0)
        return SY_ENOMEM;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)rel[i];

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
            out->data[out->len++] = (char)c;
        } else if (c == ' ') {
            out->data[out->len++] = '+';
        } else {
            out->data[out->len++] = '%';
            out->data[out->len++] = hex[c >> 4];
            out->data[out->len++] = hex[c & 15];
        }
    }
    out->data[out->len] = '\0';
    return 0;
}

/* "NAME":"S" when S is UTF-8, else "NAMEBase64":"base64 of S". */
static int put_str_or_b64(struct buf *b, const char *name, const char *s, size_t n)
{
    size_t el = jsonstr_len(s, n);
    int rc;

    if (el != SIZE_MAX) {
        rc = buf_printf(b, "\"%s\":\"", name);
        if (rc == 0)
            rc = buf_json_escape(b, s, n);
        return rc != 0 ? rc : buf_append(b, "\"", 1);
    } else {
        char *enc = b64_encode_new(s, n);

        if (enc == NULL)
            return SY_ENOMEM;
        rc = buf_printf(b, "\"%sBase64\":\"%s\"", name, enc);
        free(enc);
        return rc;
    }
}

/* S as a JSON string value (S is UTF-8: checked at create for what comes from outside). */
static int put_jstr(struct buf *b, const char *s)
{
    if (buf_append(b, "\"", 1) != 0 || buf_json_escape(b, s, strlen(s)) != 0 ||
        buf_append(b, "\"", 1) != 0)
        return SY_ENOMEM;
    return 0;
}

struct source_record *src_fs_record_new(struct src_fs *fs, const struct src_fs_file *f,
                                        const struct src_fs_hjob *job, unsigned uid)
{
    const char *region = fs->base.ctx->region != NULL ? fs->base.ctx->region : "us-east-1";
    const char *account = fs->base.ctx->account != NULL ? fs->base.ctx->account : "000000000000";
    const char *mapping = fs->base.ctx->mapping != NULL ? fs->base.ctx->mapping : "-";
    struct buf key = {0}, j = {0}, path = {0};
    struct source_record *rec = NULL;
    uint64_t now = time_wall_ms(), seq;
    unsigned char idbytes[MD5_LEN];
    char iso[32], id2[32];
    int rc;

    /* Increasing per key (and across keys), also across restarts unless the clock goes back. */
    seq = now * 1000;
    if (seq <= fs->seq_last)
        seq = fs->seq_last + 1;
    fs->seq_last = seq;
    time_iso8601(iso, now);
    {
        char seed[64];
        int sn = snprintf(seed, sizeof(seed), "%s:%" PRIu64, mapping, seq);

        md5(seed, (size_t)sn, idbytes);
        b64_encode(idbytes, sizeof(idbytes), id2);
    }
    rc = src_fs_key_encode(&key, f->rel, f->len);
    if (rc == 0)
        rc = buf_append(&path, fs->root_real, strlen(fs->root_real));
    if (rc == 0)
        rc = buf_append(&path, "/", 1);
    if (rc == 0)
        rc = buf_append(&path, f->rel, f->len);
    if (rc == 0)
        rc = buf_printf(&j, "{\"eventVersion\":\"2.1\",\"eventSource\":\"aws:s3\",\"awsRegion\":");
    if (rc == 0)
        rc = put_jstr(&j, region);
    if (rc == 0)
        rc = buf_printf(&j,
                        ",\"eventTime\":\"%s\",\"eventName\":\"ObjectCreated:%s\","
                        "\"userIdentity\":{\"principalId\":\"uid:%u\"},"
                        "\"requestParameters\":{\"sourceIPAddress\":\"127.0.0.1\"},"
                        "\"responseElements\":{\"x-amz-request-id\":\"%016" PRIX64
                        "\",\"x-amz-id-2\":\"%s\"},"
                        "\"s3\":{\"s3SchemaVersion\":\"1.0\",\"configurationId\":",
                        iso, f->copy ? "Copy" : "Put", uid, seq ^ (uint64_t)0x5357595244, id2);
    if (rc == 0)
        rc = put_jstr(&j, mapping);
    if (rc == 0)
        rc = buf_puts(&j, ",\"bucket\":{\"name\":");
    if (rc == 0)
        rc = put_jstr(&j, fs->bucket);
    if (rc == 0)
        rc = buf_puts(&j, ",\"ownerIdentity\":{\"principalId\":");
    if (rc == 0)
        rc = put_jstr(&j, account);
    if (rc == 0)
        rc = buf_puts(&j, "},\"arn\":");
    if (rc == 0)
        rc = put_jstr(&j, fs->arn);
    if (rc == 0)
        rc = buf_printf(&j,
                        "},\"object\":{\"key\":\"%s\",\"size\":%" PRId64
                        ",\"eTag\":\"%s\",\"sequencer\":\"%018" PRIX64 "\"}},\"switchyard\":{",
                        key.data, job->bytes, job->etag, seq);
    if (rc == 0)
        rc = put_str_or_b64(&j, "root", fs->root_real, strlen(fs->root_real));
    if (rc == 0)
        rc = buf_append(&j, ",", 1);
    if (rc == 0)
        rc = put_str_or_b64(&j, "path", path.data, path.len);
    if (rc == 0)
        rc = buf_puts(&j, "}}");
    if (rc == 0)
        rec = source_record_new(key.len, f->len, j.len);
    if (rec != NULL) {
        source_record_fill(rec, key.data, f->rel, j.data);
        rec->sent_ms = (int64_t)now;
    }
    buf_free(&key);
    buf_free(&j);
    buf_free(&path);
    return rec;
}

int src_fs_encode_batch(struct source *src, struct source_record *const *recs, size_t n,
                        struct buf *out)
{
    (void)src;
    return source_encode_records(recs, n, out);
}

int src_fs_batch_info(struct source *src, struct source_record *const *recs, size_t n,
                      struct buf *out)
{
    const struct src_fs *fs = (const struct src_fs *)src;
    int rc = buf_puts(out, "\"FileBatchInfo\":{\"bucket\":");

    if (rc == 0)
        rc = put_jstr(out, fs->bucket);
    if (rc == 0)
        rc = buf_puts(out, ",");
    if (rc == 0)
        rc = put_str_or_b64(out, "root", fs->root_real, strlen(fs->root_real));
    if (rc == 0)
        rc = buf_printf(out, ",\"batchSize\":%zu,\"keys\":[", n);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = buf_printf(out, "%s\"%s\"", i > 0 ? "," : "", recs[i]->id); /* keys are ASCII */
    if (rc == 0)
        rc = buf_puts(out, "],\"eventSourceArn\":");
    if (rc == 0)
        rc = put_jstr(out, fs->arn);
    if (rc == 0)
        rc = buf_puts(out, "}");
    return rc != 0 ? SY_ENOMEM : 0;
}
