/*
 * sources/source.c - the adapter registry and the helpers adapters use (see source.h).
 */
#include "source.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"

extern const struct source_ops src_kafka_ops;
extern const struct source_ops src_redis_ops;
extern const struct source_ops src_fs_ops;
extern const struct source_ops src_mqtt_ops;

/* Every adapter, in the order `switchyard validate` lists them. */
static const struct source_ops *const registry[] = {
    &src_kafka_ops,
    &src_redis_ops,
    &src_fs_ops,
    &src_mqtt_ops,
};

#define N_SOURCES (sizeof(registry) / sizeof(registry[0]))

static const struct cfg_source_kind *kinds[N_SOURCES];

struct source_record *source_record_new(size_t id_len, size_t data_len, size_t json_len)
{
    struct source_record *rec;
    size_t total = sizeof(*rec) + id_len + 1 + data_len + 1 + json_len + 1;
    char *p;

    rec = calloc(1, total);
    if (rec == NULL)
        return NULL;
    p = (char *)(rec + 1);
    rec->id = p;
    p += id_len + 1;
    rec->data = p;
    rec->data_len = data_len;
    p += data_len + 1;
    rec->json = p;
    rec->json_len = json_len;
    rec->partition = -1;
    rec->receive_count = 1;
    return rec;
}

void source_record_fill(struct source_record *rec, const char *id, const char *data,
                        const char *json)
{
    /* The strings sit right after the struct, in this order; their NULs are already there. */
    char *p = (char *)(rec + 1);
    size_t id_len = (size_t)(rec->data - rec->id) - 1;

    memcpy(p, id, id_len);
    if (rec->data_len > 0)
        memcpy((char *)rec->data, data, rec->data_len);
    if (rec->json_len > 0)
        memcpy((char *)rec->json, json, rec->json_len);
}

void source_record_free(struct source_record *rec)
{
    free(rec);
}

void source_deliver(struct source *src, struct source_record **recs, size_t n)
{
    if (n == 0)
        return;
    src->ctx->host->deliver(src->ctx->host_arg, recs, n);
}

int source_encode_records_as(const char *event_source, struct source_record *const *recs, size_t n,
                             struct buf *out)
{
    size_t total = 16 + (event_source != NULL ? 20 + strlen(event_source) : 0);

    for (size_t i = 0; i < n; i++)
        total += recs[i]->json_len + 1;
    if (buf_reserve(out, total) != 0 || buf_puts(out, "{") != 0)
        return SY_ENOMEM;
    if (event_source != NULL && (buf_puts(out, "\"eventSource\":\"") != 0 ||
                                 buf_json_escape(out, event_source, strlen(event_source)) != 0 ||
                                 buf_puts(out, "\",") != 0))
        return SY_ENOMEM;
    if (buf_puts(out, "\"Records\":[") != 0)
        return SY_ENOMEM;
    for (size_t i = 0; i < n; i++)
        if ((i > 0 && buf_append(out, ",", 1) != 0) ||
            buf_append(out, recs[i]->json, recs[i]->json_len) != 0)
            return SY_ENOMEM;
    return buf_puts(out, "]}");
}

int source_encode_records(struct source_record *const *recs, size_t n, struct buf *out)
{
    return source_encode_records_as(NULL, recs, n, out);
}

size_t source_room(const struct source *src)
{
    return src->ctx->host->room(src->ctx->host_arg);
}

void source_set_state(struct source *src, enum source_state st, const char *fmt, ...)
{
    char reason[sizeof(src->reason)] = "";
    va_list ap;

    if (fmt != NULL) {
        va_start(ap, fmt);
        vsnprintf(reason, sizeof(reason), fmt, ap);
        va_end(ap);
    }
    if (src->state == st && strcmp(src->reason, reason) == 0)
        return; /* nothing changed: the host hears of changes only */
    memcpy(src->reason, reason, sizeof(reason));
    src->state = st;
    if (src->ctx->host->state != NULL)
        src->ctx->host->state(src->ctx->host_arg, st, src->reason[0] ? src->reason : NULL);
}

const struct source_ops *source_find(const char *name)
{
    for (size_t i = 0; i < N_SOURCES; i++)
        if (strcmp(registry[i]->name, name) == 0)
            return registry[i];
    return NULL;
}

const struct cfg_source_kind *const *source_kinds(size_t *n)
{
    for (size_t i = 0; i < N_SOURCES; i++)
        kinds[i] = registry[i]->cfg;
    *n = N_SOURCES;
    return kinds;
}

int source_create(const struct source_ops *ops, const struct source_ctx *ctx, const void *cfg,
                  struct source **out, struct sy_error *err)
{
    struct source *src = NULL;
    int rc;

    *out = NULL;
    rc = ops->create(ctx, cfg, &src, err);
    if (rc != 0)
        return rc;
    src->ops = ops;
    src->ctx = ctx;
    src->state = SOURCE_CONNECTING;
    *out = src;
    return 0;
}

void source_destroy(struct source *src)
{
    if (src == NULL)
        return;
    src->ops->destroy(src);
}
