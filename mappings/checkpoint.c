/*
 * mappings/checkpoint.c - what happens to a batch's records once its invocation ended: the
 * error policy of a mapping.
 *
 *   success                       ack (DONE) every record
 *   partial (batchItemFailures)   ack the others; the named ones (and, for an ordered source,
 *                                 every later record of the same partition) fail
 *   function error                every record fails; with bisect_batch_on_function_error a
 *                                 batch of more than one is split in two halves that run again
 *                                 at once (a split costs no attempt, as in Lambda)
 *   throttle                      the batch goes back to the front; no attempt is consumed
 *
 * A failed record counts one attempt. It runs again after a backoff (500 ms doubling to 30 s,
 * with jitter between half and all of it) unless the policy is spent: more receives than the
 * source's max_receive_count (the host counts its retries as receives) sends it to the source's
 * dead letter; more attempts than maximum_retry_attempts (condition RetryAttemptsExhausted) or
 * older than maximum_record_age_s (RecordAgeExceeded) sends the on-failure record of the group to
 * on_failure (or each record to the dead letter when only that is configured; a keyed
 * destination, a Kafka topic, gets one message per record, keyed by the record's own key, when
 * the source can name it: Lambda's Kafka-topic on-failure destination). A record is
 * acknowledged (DISCARD) only once that message is stored; a destination that is down is
 * retried every few seconds, so nothing is lost, and while the mapping stops, what could not be
 * sent is given back to the source unacknowledged.
 */
#include "mapping_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "core/buf.h"
#include "core/fastid.h"
#include "core/log.h"
#include "core/time.h"
#include "destinations/dest.h"

#define RETRY_BASE_MS 500
#define RETRY_MAX_MS 30000
#define OUT_RETRY_MAX_MS 5000
/* A keyed destination's per-record message carries the record's event as "payload" only up to
 * this size: below Kafka's default message.max.bytes (1,000,000), so that a record too large to
 * invoke with is still reported (by its offset) rather than refused by the topic forever. */
#define KEYED_PAYLOAD_MAX (1000u * 1000u - 16u * 1024u)

/* ---- acknowledgements ----------------------------------------------------------------------- */

void checkpoint_ack(struct mapping *map, struct source_record **recs, size_t n,
                    enum source_outcome outcome)
{
    if (n == 0)
        return;
    if (map->src != NULL)
        map->src->ops->ack(map->src, recs, n, outcome);
    for (size_t i = 0; i < n; i++) {
        mapping_held_sub(map, recs[i]);
        source_record_free(recs[i]);
    }
}

void checkpoint_drop(struct mapping *map, struct source_record **recs, size_t n, const char *what)
{
    if (n == 0)
        return;
    log_err("[mapping:%s] out of memory %s: %zu record(s) (first %s) left unacknowledged; the "
            "source gives them again (a Kafka partition's commits wait for them until a restart "
            "or rebalance)",
            map->cfg->name, what, n, recs[0]->id);
    for (size_t i = 0; i < n; i++) {
        mapping_held_sub(map, recs[i]);
        source_record_free(recs[i]);
    }
}

/* ---- outgoing messages (on-failure records, dead letters) ----------------------------------- */

void outmsg_free(struct outmsg *om)
{
    if (om == NULL)
        return;
    for (size_t i = 0; i < om->n; i++) {
        mapping_held_sub(om->map, om->recs[i]);
        source_record_free(om->recs[i]);
    }
    free(om->recs);
    free(om->body);
    free(om->pkey);
    if (om->retry_ev != NULL)
        event_free(om->retry_ev);
    om->magic = 0;
    free(om);
}

static void out_send(struct outmsg *om);

static void out_retry_cb(int fd, short what, void *arg)
{
    struct outmsg *om = arg;

    (void)fd;
    (void)what;
    SY_ASSERT(om->magic == OUTMSG_MAGIC);
    out_send(om);
}

/* The send failed: try again later, or give the records back if the mapping is stopping. */
static void out_failed(struct outmsg *om, const char *why)
{
    struct mapping *map = om->map;
    unsigned ms = 250u << (om->tries < 5 ? om->tries : 5);
    struct timeval tv;

    if (ms > OUT_RETRY_MAX_MS)
        ms = OUT_RETRY_MAX_MS;
    om->tries++;
    if (map->stopping) {
        log_warn("[mapping:%s] %s for %zu record(s) not stored (%s); the mapping is stopping, "
                 "so they go back to the source unacknowledged",
                 map->cfg->name, om->is_dead_letter ? "dead letter" : "on-failure record", om->n,
                 why);
        if (map->src != NULL && map->src->ops->release != NULL)
            map->src->ops->release(map->src, om->recs, om->n);
        TAILQ_REMOVE(&map->out, om, link);
        outmsg_free(om);
        mapping_kick(map);
        return;
    }
    if (om->tries == 1 || om->tries % 10 == 0)
        log_warn("[mapping:%s] cannot store the %s for %zu record(s) at %s: %s; retry %u in %u ms",
                 map->cfg->name, om->is_dead_letter ? "dead letter" : "on-failure record", om->n,
                 om->dst->uri, why, om->tries, ms);
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    evtimer_add(om->retry_ev, &tv);
}

static void out_done(void *arg, int rc, const char *errmsg)
{
    struct outmsg *om = arg;
    struct mapping *map = om->map;

    SY_ASSERT(om->magic == OUTMSG_MAGIC);
    if (rc != 0) {
        out_failed(om, errmsg != NULL ? errmsg : sy_strerror(rc));
        return;
    }
    TAILQ_REMOVE(&map->out, om, link);
    checkpoint_ack(map, om->recs, om->n, SOURCE_DISCARD);
    om->n = 0;
    outmsg_free(om);
    mapping_kick(map);
}

static void out_send(struct outmsg *om)
{
    struct dest_attr attrs[2];
    struct dest_msg msg = {.body = om->body,
                           .len = om->len,
                           .key = om->key,
                           .pkey = om->pkey,
                           .pkey_len = om->pkey_len,
                           .use_pkey = om->use_pkey};
    int rc;

    if (om->is_dead_letter) {
        attrs[0] = (struct dest_attr){.name = "ErrorMessage", .value = om->reason};
        attrs[1] = (struct dest_attr){.name = "MessageId", .value = om->key};
        msg.attrs = attrs;
        msg.n_attrs = 2;
    }
    rc = dest_send(om->dst, &msg, out_done, om);
    if (rc != 0)
        out_failed(om, sy_strerror(rc));
}

/*
 * A message of BODY (taken) for DST, acknowledging RECS (taken; the array too) once it is
 * stored, in the mapping's list but not sent yet; NULL when out of memory (then everything is
 * freed and the records are not acknowledged, so the source redelivers them later).
 */
static struct outmsg *out_new(struct mapping *map, struct dest *dst, char *body, size_t len,
                              const char *key, const char *reason, int is_dead_letter,
                              struct source_record **recs, size_t n)
{
    struct outmsg *om = calloc(1, sizeof(*om));

    if (om == NULL || (om->retry_ev = evtimer_new(map->ms->base, out_retry_cb, om)) == NULL) {
        free(om);
        free(body);
        checkpoint_drop(map, recs, n,
                        is_dead_letter ? "for a dead letter" : "for an on-failure record");
        free(recs);
        return NULL;
    }
    om->magic = OUTMSG_MAGIC;
    om->map = map;
    om->dst = dst;
    om->body = body;
    om->len = len;
    om->is_dead_letter = is_dead_letter;
    om->recs = recs;
    om->n = n;
    snprintf(om->key, sizeof(om->key), "%s", key);
    snprintf(om->reason, sizeof(om->reason), "%s", reason);
    TAILQ_INSERT_TAIL(&map->out, om, link);
    return om;
}

/* out_new(), then send it. */
static void out_queue(struct mapping *map, struct dest *dst, char *body, size_t len,
                      const char *key, const char *reason, int is_dead_letter,
                      struct source_record **recs, size_t n)
{
    struct outmsg *om = out_new(map, dst, body, len, key, reason, is_dead_letter, recs, n);

    if (om != NULL)
        out_send(om);
}

static struct source_record **take_one(struct source_record *rec)
{
    struct source_record **v = malloc(sizeof(*v));

    if (v != NULL)
        v[0] = rec;
    return v;
}

void checkpoint_dead_letter(struct mapping *map, struct source_record *rec, const char *reason)
{
    struct source_record **v;
    char *body;

    map->c.dead_lettered++;
    if (map->dead_letter == NULL) {
        if (map->on_failure != NULL) {
            v = take_one(rec);
            if (v == NULL)
                goto out_drop;
            checkpoint_give_up(map, v, 1,
                               (rec->flags & SOURCE_REC_DEAD_LETTER) ? "MaxReceiveCountExceeded"
                                                                     : "MaximumPayloadSizeExceeded",
                               NULL, NULL, NULL, reason, rec->attempts);
            free(v);
            return;
        }
        log_warn("[mapping:%s] record %s dropped: %s (no dead_letter or on_failure configured)",
                 map->cfg->name, rec->id, reason);
        checkpoint_ack(map, &rec, 1, SOURCE_DISCARD);
        return;
    }
    log_info("[mapping:%s] record %s to the dead letter: %s", map->cfg->name, rec->id, reason);
    body = malloc(rec->data_len + 1);
    v = take_one(rec);
    if (body == NULL || v == NULL) {
        free(body);
        free(v);
        goto out_drop;
    }
    memcpy(body, rec->data, rec->data_len);
    body[rec->data_len] = '\0';
    out_queue(map, map->dead_letter, body, rec->data_len, rec->id, reason, 1, v, 1);
    return;

out_drop:
    checkpoint_drop(map, &rec, 1, "for a dead letter");
}

/*
 * The on-failure record of RECS (Lambda's stream shape, plus the error) into OUT. With KEY
 * non-NULL, RECS is one record for a keyed destination: its own identity member
 * (ops->record_info, which sets *KEY and *KEY_LEN) and the record's event as "payload".
 */
static int failure_record(struct mapping *map, struct source_record **recs, size_t n,
                          const char *condition, const char *request_id, const char *version,
                          const char *error_type, const char *error_msg, unsigned attempts,
                          struct buf *out, char **key, size_t *key_len)
{
    char ts[32], rid[37];
    int rc = 0;

    time_iso8601(ts, time_wall_ms());
    if (request_id == NULL) {
        fastid_uuid4(rid);
        request_id = rid;
    }
    rc |= buf_puts(out, "{\"requestContext\":{\"requestId\":\"");
    rc |= buf_json_escape(out, request_id, strlen(request_id));
    rc |= buf_puts(out, "\",\"functionArn\":\"");
    rc |= buf_json_escape(out, map->function_arn, strlen(map->function_arn));
    rc |= buf_printf(out, "\",\"condition\":\"%s\",\"approximateInvokeCount\":%u}", condition,
                     attempts);
    if (error_type != NULL || error_msg != NULL) {
        /* The unit that ran last (a qualified mapping's alias may have drawn a version). */
        rc |= buf_printf(out, ",\"responseContext\":{\"statusCode\":200,\"executedVersion\":\"%s\"",
                         version != NULL ? version : "$LATEST");
        if (error_type != NULL)
            rc |= buf_puts(out, ",\"functionError\":\"Unhandled\"");
        /* errorType only when the function raised one (a partial batch failure has none). */
        if (error_type != NULL) {
            rc |= buf_puts(out, ",\"errorType\":\"");
            rc |= buf_json_escape(out, error_type, strlen(error_type));
            rc |= buf_puts(out, "\"");
        }
        rc |= buf_puts(out, ",\"errorMessage\":\"");
        if (error_msg != NULL)
            rc |= buf_json_escape(out, error_msg, strlen(error_msg));
        rc |= buf_puts(out, "\"}");
    }
    rc |= buf_printf(out, ",\"version\":\"1.0\",\"timestamp\":\"%s\",", ts);
    if (rc == 0 && map->src != NULL && key != NULL) {
        rc = map->src->ops->record_info(map->src, recs[0], out, key, key_len);
        if (rc == 0 && recs[0]->json_len <= KEYED_PAYLOAD_MAX) {
            rc |= buf_puts(out, ",\"payload\":");
            rc |= map->src->ops->encode_batch(map->src, recs, 1, out);
        }
    } else if (rc == 0 && map->src != NULL) {
        rc = map->src->ops->batch_info(map->src, recs, n, out);
    }
    rc |= buf_puts(out, "}");
    return rc != 0 ? SY_ENOMEM : 0;
}

/* One failed record's own on-failure message to a keyed destination, keyed by its key. */
static void give_up_one(struct mapping *map, struct source_record *rec, const char *condition,
                        const char *request_id, const char *version, const char *error_type,
                        const char *error_msg, unsigned attempts)
{
    struct buf b = {0};
    struct source_record **v = take_one(rec);
    char *key = NULL;
    size_t key_len = 0, len;
    struct outmsg *om;

    if (v == NULL || failure_record(map, &rec, 1, condition, request_id, version, error_type,
                                    error_msg, attempts, &b, &key, &key_len) != 0) {
        free(v);
        free(key);
        buf_free(&b);
        checkpoint_drop(map, &rec, 1, "for an on-failure record");
        return;
    }
    len = b.len;
    om = out_new(map, map->on_failure, buf_take(&b, NULL), len, rec->id, condition, 0, v, 1);
    if (om == NULL) {
        free(key);
        return;
    }
    om->use_pkey = 1;
    om->pkey = key;
    om->pkey_len = key_len;
    out_send(om);
}

void checkpoint_give_up(struct mapping *map, struct source_record **recs, size_t n,
                        const char *condition, const char *request_id, const char *version,
                        const char *error_type, const char *error_msg, unsigned attempts)
{
    struct buf b = {0};
    struct source_record **v;

    if (n == 0)
        return;
    map->c.failed += n;
    if (map->on_failure == NULL) {
        if (map->dead_letter != NULL) {
            for (size_t i = 0; i < n; i++) {
                char why[600];

                snprintf(why, sizeof(why), "%s: %s", condition, error_msg != NULL ? error_msg : "");
                map->c.dead_lettered--; /* counted as failed, not twice */
                checkpoint_dead_letter(map, recs[i], why);
            }
            return;
        }
        log_warn("[mapping:%s] %zu record(s) (first %s) discarded: %s after %u attempt(s)%s%s; "
                 "no on_failure destination is configured",
                 map->cfg->name, n, recs[0]->id, condition, attempts, error_msg ? ": " : "",
                 error_msg ? error_msg : "");
        checkpoint_ack(map, recs, n, SOURCE_DISCARD);
        return;
    }
    if (map->on_failure->ops->keyed && map->src != NULL && map->src->ops->record_info != NULL) {
        log_warn("[mapping:%s] %zu record(s) (first %s) to on_failure, one message each: %s "
                 "after %u attempt(s)",
                 map->cfg->name, n, recs[0]->id, condition, attempts);
        for (size_t i = 0; i < n; i++)
            give_up_one(map, recs[i], condition, request_id, version, error_type, error_msg,
                        attempts);
        return;
    }
    v = malloc(n * sizeof(*v));
    if (v == NULL || failure_record(map, recs, n, condition, request_id, version, error_type,
                                    error_msg, attempts, &b, NULL, NULL) != 0) {
        free(v);
        buf_free(&b);
        checkpoint_drop(map, recs, n, "for an on-failure record");
        return;
    }
    memcpy(v, recs, n * sizeof(*v));
    log_warn("[mapping:%s] %zu record(s) (first %s) to on_failure: %s after %u attempt(s)",
             map->cfg->name, n, recs[0]->id, condition, attempts);
    {
        size_t len = b.len;
        char *body = buf_take(&b, NULL);

        out_queue(map, map->on_failure, body, len, recs[0]->id, condition, 0, v, n);
    }
}

/* ---- outcomes ------------------------------------------------------------------------------- */

static unsigned backoff_ms(unsigned attempts)
{
    unsigned ms = RETRY_BASE_MS << (attempts > 6 ? 6 : attempts - 1);

    if (ms > RETRY_MAX_MS)
        ms = RETRY_MAX_MS;
    /* Between half and all of it, so that failing batches do not come back in step. */
    return ms / 2 + (unsigned)(time_mono_us() % (ms / 2 + 1));
}

static void insert_waiting(struct mapping *map, struct batch *b)
{
    struct batch *w;

    b->state = BATCH_WAITING;
    TAILQ_FOREACH(w, &map->waiting, link)
    if (w->due_ms > b->due_ms)
        break;
    if (w != NULL)
        TAILQ_INSERT_BEFORE(w, b, link);
    else
        TAILQ_INSERT_TAIL(&map->waiting, b, link);
}

/*
 * RECS[0..N) of one invocation failed (taken; the array is the caller's). Count the attempt and
 * retry them together later, or give up on those whose policy is spent.
 */
static void fail_records(struct mapping *map, struct source_record **recs, size_t n,
                         const char *request_id, const char *version, const char *error_type,
                         const char *error_msg)
{
    int64_t wall = (int64_t)time_wall_ms();
    struct batch *retry = batch_new(map, n);
    struct source_record **exhausted = malloc(n * sizeof(*exhausted));
    struct source_record **aged = malloc(n * sizeof(*aged));
    size_t n_ex = 0, n_aged = 0;
    unsigned max_attempts = 0, rc_max = map->src != NULL ? map->src->max_receive_count : 0;

    if (retry == NULL || exhausted == NULL || aged == NULL) {
        checkpoint_drop(map, recs, n, "while failing a batch");
        batch_free(retry);
        free(exhausted);
        free(aged);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct source_record *rec = recs[i];

        rec->attempts++;
        if (rc_max > 0 && rec->receive_count + rec->attempts > rc_max) {
            char why[640];

            snprintf(why, sizeof(why),
                     "received %u times, more than max_receive_count (%u); "
                     "last error: %s",
                     rec->receive_count + rec->attempts, rc_max,
                     error_msg != NULL ? error_msg : "");
            checkpoint_dead_letter(map, rec, why);
        } else if (map->max_retry >= 0 && rec->attempts > (unsigned)map->max_retry) {
            exhausted[n_ex++] = rec;
        } else if (map->max_age_s >= 0 && rec->sent_ms > 0 &&
                   wall - rec->sent_ms > (int64_t)map->max_age_s * 1000) {
            aged[n_aged++] = rec;
        } else {
            retry->recs[retry->n++] = rec;
            retry->bytes += rec->json_len + 1;
            if (rec->attempts > max_attempts)
                max_attempts = rec->attempts;
        }
    }
    if (n_ex > 0)
        checkpoint_give_up(map, exhausted, n_ex, "RetryAttemptsExhausted", request_id, version,
                           error_type, error_msg, exhausted[0]->attempts);
    if (n_aged > 0)
        checkpoint_give_up(map, aged, n_aged, "RecordAgeExceeded", request_id, version, error_type,
                           error_msg, aged[0]->attempts);
    free(exhausted);
    free(aged);
    if (retry->n == 0) {
        batch_free(retry);
        return;
    }
    map->c.retries += retry->n;
    retry->due_ms = time_mono_ms() + backoff_ms(max_attempts);
    if (map->src != NULL && map->src->ordered)
        snprintf(map->last_result, sizeof(map->last_result),
                 "PROBLEM: Function call failed: partition blocked at record %.100s after %u "
                 "attempt(s): %.100s",
                 retry->recs[0]->id, max_attempts, error_msg != NULL ? error_msg : "");
    if (map->src != NULL && map->src->ordered)
        log_warn("[mapping:%s] partition blocked at record %s: %u attempt(s) failed (%s); the "
                 "next in %lld ms",
                 map->cfg->name, retry->recs[0]->id, max_attempts,
                 error_msg != NULL ? error_msg : "", (long long)(retry->due_ms - time_mono_ms()));
    insert_waiting(map, retry);
    batcher_schedule_retry(map);
}

/* Split B (failed as a whole) into two halves that run again first. */
static void bisect(struct mapping *map, struct batch *b)
{
    size_t half = b->n / 2;
    struct batch *lo = batch_new(map, half), *hi = batch_new(map, b->n - half);

    if (lo == NULL || hi == NULL) {
        batch_free(lo);
        batch_free(hi);
        fail_records(map, b->recs, b->n, NULL, NULL, NULL, "out of memory while bisecting");
        b->n = 0;
        return;
    }
    for (size_t i = 0; i < b->n; i++) {
        struct batch *t = i < half ? lo : hi;

        t->recs[t->n++] = b->recs[i];
        t->bytes += b->recs[i]->json_len + 1;
    }
    b->n = 0;
    lo->bisected = hi->bisected = 1;
    lo->state = hi->state = BATCH_READY;
    TAILQ_INSERT_HEAD(&map->ready, hi, link);
    TAILQ_INSERT_HEAD(&map->ready, lo, link);
}

/*
 * The batchItemFailures of BODY: 0 with FAILED[i] set for the named records (none named: all
 * succeeded), or -1 with WHY when the response makes the whole batch a failure.
 */
static int parse_item_failures(const struct batch *b, const char *body, size_t len,
                               unsigned char *failed, size_t *n_failed, char *why, size_t whysz)
{
    json_t *root, *list;
    json_error_t jerr;
    size_t i;

    *n_failed = 0;
    if (len == 0)
        return 0;
    root = json_loadb(body, len, JSON_DECODE_ANY, &jerr);
    if (root == NULL) {
        snprintf(why, whysz, "the function's response is not JSON (%s)", jerr.text);
        return -1;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return 0;
    }
    list = json_object_get(root, "batchItemFailures");
    if (list == NULL || json_is_null(list)) {
        json_decref(root);
        return 0;
    }
    if (!json_is_array(list)) {
        snprintf(why, whysz, "batchItemFailures is not a list");
        json_decref(root);
        return -1;
    }
    for (i = 0; i < json_array_size(list); i++) {
        json_t *item = json_array_get(list, i), *id = json_object_get(item, "itemIdentifier");
        const char *s = json_string_value(id);
        char obj_id[300];
        size_t k;

        /* Kafka's identifiers are objects: {"partition": "orders-0", "offset": 15}. */
        if (json_is_object(id)) {
            const char *part = json_string_value(json_object_get(id, "partition"));
            json_t *off = json_object_get(id, "offset");

            s = NULL;
            if (part != NULL && json_is_integer(off)) {
                snprintf(obj_id, sizeof(obj_id), "%s@%" JSON_INTEGER_FORMAT, part,
                         json_integer_value(off));
                s = obj_id;
            } else if (part != NULL && json_is_string(off)) {
                snprintf(obj_id, sizeof(obj_id), "%s@%s", part, json_string_value(off));
                s = obj_id;
            }
        }

        if (s == NULL || s[0] == '\0') {
            snprintf(why, whysz, "batchItemFailures[%zu] has no itemIdentifier", i);
            json_decref(root);
            return -1;
        }
        for (k = 0; k < b->n; k++)
            if (strcmp(b->recs[k]->id, s) == 0)
                break;
        if (k == b->n) {
            snprintf(why, whysz,
                     "batchItemFailures[%zu].itemIdentifier '%.100s' is not a record "
                     "of the batch",
                     i, s);
            json_decref(root);
            return -1;
        }
        if (!failed[k]) {
            failed[k] = 1;
            (*n_failed)++;
        }
    }
    json_decref(root);
    return 0;
}

/* Whether BODY names batchItemFailures (for the warning when the mapping does not report). */
static int names_item_failures(const char *body, size_t len)
{
    json_t *root, *list;
    int yes;

    if (len == 0 || memmem(body, len, "batchItemFailures", 17) == NULL)
        return 0;
    root = json_loadb(body, len, JSON_DECODE_ANY, NULL);
    list = json_is_object(root) ? json_object_get(root, "batchItemFailures") : NULL;
    yes = json_is_array(list) && json_array_size(list) > 0;
    json_decref(root);
    return yes;
}

/* The error message of a Lambda error body ({"errorMessage": ...}), into OUT. */
static void error_text(const struct invoke_result *res, char *out, size_t outsz)
{
    json_t *root = json_loadb(res->body, res->body_len, 0, NULL);
    const char *m = json_string_value(json_object_get(root, "errorMessage"));

    if (m != NULL)
        snprintf(out, outsz, "%s", m);
    else
        snprintf(out, outsz, "%.*s", (int)(res->body_len < 400 ? res->body_len : 400), res->body);
    json_decref(root);
}

void checkpoint_outcome(struct batch *b, const struct invoke_result *res)
{
    struct mapping *map = b->map;
    unsigned char *failed = NULL;
    size_t n_failed = 0;
    char why[600] = "";
    struct source_record **ok, **bad;
    size_t n_ok = 0, n_bad = 0;
    int whole = 0;

    switch (res->status) {
    case INVOKE_THROTTLED:
        map->c.throttles++;
        batcher_hold_back(map);
        b->state = BATCH_READY;
        TAILQ_INSERT_HEAD(&map->ready, b, link);
        batcher_schedule_retry(map);
        return;
    case INVOKE_SERVICE_ERROR:
        if (dispatcher_draining(map->ms->dsp) || map->stopping) {
            /* Not run: given back to the source when the mapping stops. */
            b->state = BATCH_READY;
            TAILQ_INSERT_HEAD(&map->ready, b, link);
            return;
        }
        whole = 1;
        snprintf(why, sizeof(why), "ServiceException: %.*s",
                 (int)(res->body_len < 400 ? res->body_len : 400), res->body);
        break;
    case INVOKE_FUNCTION_ERROR:
        whole = 1;
        error_text(res, why, sizeof(why));
        break;
    case INVOKE_OK:
        break;
    }
    map->throttle_ms = 0;
    failed = calloc(b->n ? b->n : 1, 1);
    ok = malloc((b->n ? b->n : 1) * sizeof(*ok));
    bad = malloc((b->n ? b->n : 1) * sizeof(*bad));
    if (failed == NULL || ok == NULL || bad == NULL) {
        /* Out of memory: leave them unacknowledged; the source redelivers them. */
        free(failed);
        free(ok);
        free(bad);
        batch_free(b);
        return;
    }
    if (!whole && res->status == INVOKE_OK) {
        if (map->report_failures) {
            if (parse_item_failures(b, res->body, res->body_len, failed, &n_failed, why,
                                    sizeof(why)) != 0)
                whole = 1;
        } else if (!map->warned_bif && names_item_failures(res->body, res->body_len)) {
            map->warned_bif = 1;
            log_warn("[mapping:%s] the function returned batchItemFailures but the mapping does "
                     "not set report_batch_item_failures: the whole batch counts as a success",
                     map->cfg->name);
        }
    }
    if (whole) {
        memset(failed, 1, b->n);
        n_failed = b->n;
    } else if (n_failed > 0) {
        /* An ordered source retries everything after a failed record of its partition. */
        for (size_t i = 0; i < b->n; i++) {
            if (!failed[i] || b->recs[i]->partition < 0)
                continue;
            for (size_t j = i + 1; j < b->n; j++)
                if (!failed[j] && b->recs[j]->partition == b->recs[i]->partition) {
                    failed[j] = 1;
                    n_failed++;
                }
        }
        snprintf(why, sizeof(why), "the function reported %zu of %zu record(s) as failed", n_failed,
                 b->n);
    }
    for (size_t i = 0; i < b->n; i++) {
        if (failed[i])
            bad[n_bad++] = b->recs[i];
        else
            ok[n_ok++] = b->recs[i];
    }
    b->n = 0;
    map->c.delivered += n_ok;
    if (n_bad == 0) {
        snprintf(map->last_result, sizeof(map->last_result), "OK");
    } else {
        map->c.batch_errors++;
        snprintf(map->last_result, sizeof(map->last_result),
                 "PROBLEM: Function call failed: %.250s", why);
    }
    checkpoint_ack(map, ok, n_ok, SOURCE_DONE);
    if (n_bad > 0) {
        if (whole && map->bisect && n_bad > 1) {
            struct batch *h = batch_new(map, n_bad);

            if (h != NULL) {
                memcpy(h->recs, bad, n_bad * sizeof(*bad));
                h->n = n_bad;
                bisect(map, h);
                batch_free(h);
            } else {
                fail_records(map, bad, n_bad, res->request_id, res->executed_version,
                             res->error_type, why);
            }
        } else {
            fail_records(map, bad, n_bad, res->request_id, res->executed_version, res->error_type,
                         why);
        }
    }
    free(failed);
    free(ok);
    free(bad);
    batch_free(b);
}
