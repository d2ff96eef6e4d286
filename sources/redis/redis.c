/*
 * sources/redis/redis.c - the Redis source: `source: redis: {url, list | stream, ...}`.
 *
 * This file owns the parts both modes share: the config table and its validate(), the URL, the
 * session, the ack / release queues, the held set with its heartbeat, and the source_ops. The
 * protocol of each mode is in redis_list.c and redis_stream.c, the record JSON in
 * redis_event.c (see redis_int.h). A stream holds, acks and releases record by record here; a
 * list works in leases of many records and keeps that bookkeeping itself (mode->done): its held
 * entries and queued ids are leases.
 *
 * The session is two hiredis 0.14 async connections on the broker's loop (hiredis's libevent
 * adapter): `cmd` carries the scripts, acks, heartbeats and stats, `blk` the one blocking wait
 * (BLMOVE or XREADGROUP BLOCK), so a blocked read never delays an ack. Both are set up (AUTH,
 * SELECT, CLIENT SETNAME, SCRIPT LOAD, XGROUP CREATE) before the session counts as up, and
 * both are dropped and remade together: any failure (connect, lost connection, a command
 * without reply in time) drops the whole session and retries with backoff, 100 ms doubling to
 * 5 s; errors that need a fix (bad password, NOPERM, a Cluster redirection) retry every 5 s
 * with the source in SOURCE_PROBLEM.
 *
 * hiredis 0.14 has no timeouts: every command carries a deadline of ours, kept by one timer per
 * connection armed for its oldest command (replies come in order). A blocking command's
 * deadline is its block time plus SRC_REDIS_BLOCK_MARGIN_MS.
 *
 * hiredis rules relied on (0.14.1, async.c):
 *   - each command queued with redisAsyncCommandArgv() gets its callback exactly once, with the
 *     reply or with NULL when the context goes away; the reply is freed after the callback;
 *   - after onConnect(REDIS_ERR) and inside onDisconnect hiredis frees the context itself when
 *     the callback returns: there we only forget our pointer;
 *   - redisAsyncFree() is never called from inside a callback of the same context (the connect
 *     callback is not protected against it). Callbacks only record results and queue work; the
 *     session is dropped from work(), which runs from our own `kick` event on a clean stack.
 *
 * Host callbacks (deliver, room, state) are never called from inside an op the host calls
 * (ack, release, pause, resume, start, stop): those only change flags and queue work().
 */
#include "redis_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <openssl/evp.h>

#include "core/evhelp.h"
#include "core/log.h"
#include "core/time.h"

#define SRC_REDIS_MAGIC 0x53524453u        /* "SRDS" */
#define SRC_REDIS_CONN_MAGIC 0x5352434eu   /* "SRCN" */
#define SRC_REDIS_CMD_MAGIC 0x5352434du    /* "SRCM" */
#define SRC_REDIS_BATCH_MAGIC 0x53524254u  /* "SRBT" */
#define SRC_REDIS_LOOKUP_MAGIC 0x53524c4bu /* "SRLK" */

/* Our own invariant (kept in release builds): what a library hands back as `void *` is ours. */
#define SRC_REDIS_CHECK(p, m)                                                                      \
    do {                                                                                           \
        if ((p) == NULL || (p)->magic != (m)) {                                                    \
            log_err("[source:redis] %s:%d: bad magic", __FILE__, __LINE__);                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void work(struct src_redis *sr);
static void session_open(struct src_redis *sr, const char *addr);

/* ---------------------------------------------------------------------------------------- */
/* Small helpers                                                                             */

static void ev_del(struct event *ev)
{
    if (ev != NULL)
        event_del(ev);
}

void src_redis_kick(struct src_redis *sr)
{
    if (sr->kick != NULL)
        event_active(sr->kick, EV_TIMEOUT, 0);
}

void src_redis_sha1(const char *s, char out[41])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    out[0] = '\0';
    if (EVP_Digest(s, strlen(s), md, &n, EVP_sha1(), NULL) != 1 || n != 20)
        return;
    for (unsigned int i = 0; i < n; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[40] = '\0';
}

/* Report ST (and REASON) to the host (source_set_state() drops what changes nothing). */
static void set_state(struct src_redis *sr, enum source_state st, const char *reason)
{
    if (reason != NULL)
        source_set_state(&sr->base, st, "%s", reason);
    else
        source_set_state(&sr->base, st, NULL);
}

/* ---------------------------------------------------------------------------------------- */
/* The config table                                                                          */

static const char *const pop_names[] = {"right", "left", NULL};
static const char *const start_names[] = {"TRIM_HORIZON", "LATEST", NULL};

static const struct cfg_field redis_fields[] = {
    CFG_STR("url", struct src_redis_cfg, url, NULL, CFG_F_REQUIRED,
            "redis://[[user]:password@]host[:port][/db] (ACL user, password, db number) or "
            "unix:/path/redis.sock[?db=N]; TLS (rediss://) is not available"),
    CFG_STR("list", struct src_redis_cfg, list, NULL, 0,
            "LIST mode: the list producers LPUSH (or RPUSH) to, read as an at-least-once work "
            "queue; exactly one of list and stream"),
    CFG_STR("stream", struct src_redis_cfg, stream, NULL, 0,
            "STREAM mode: the stream producers XADD to, read through a consumer group"),
    CFG_ENUM("pop", struct src_redis_cfg, pop, pop_names, SRC_REDIS_POP_RIGHT, 0,
             "list: the end records are taken from: right (FIFO for LPUSH producers) or left "
             "(FIFO for RPUSH producers)"),
    CFG_INT("visibility_timeout_s", struct src_redis_cfg, visibility_timeout_s, 30, 1, 43200, 0,
            "a record delivered and not acknowledged within this time is delivered again (list: "
            "with the rest of the records read with it); records the broker still holds are "
            "extended while their handler runs"),
    CFG_INT("max_receive_count", struct src_redis_cfg, max_receive_count, 0, 0, 100000, 0,
            "a record received more often than this goes to dead_letter instead of the "
            "function; 0 = never"),
    CFG_DEST("dead_letter", struct src_redis_cfg, dead_letter, 0,
             "destination of the records over max_receive_count"),
    CFG_STR("group", struct src_redis_cfg, group, "switchyard", 0,
            "stream: the consumer group (created with MKSTREAM when missing); brokers that "
            "share it share the stream"),
    CFG_STR("consumer", struct src_redis_cfg, consumer, NULL, 0,
            "stream: this broker's consumer name in the group; default <hostname>-<pid>"),
    CFG_ENUM("starting_position", struct src_redis_cfg, starting_position, start_names,
             SRC_REDIS_START_TRIM_HORIZON, 0,
             "stream: where a newly created group starts: TRIM_HORIZON (the first entry) or "
             "LATEST (entries added from now on)"),
    CFG_STR("body_field", struct src_redis_cfg, body_field, NULL, 0,
            "stream: the field that is the body; the other fields become messageAttributes "
            "(default: the only field's value, or several fields as a JSON object)"),
};

/* ---------------------------------------------------------------------------------------- */
/* The URL                                                                                   */

static void url_free(struct src_redis_url *u)
{
    free(u->host);
    free(u->path);
    free(u->user);
    free(u->password);
    free(u->safe);
    memset(u, 0, sizeof(*u));
}

/* Percent-decode S[0..N) into a new string. Returns 0, SY_EINVAL (a bad escape), SY_ENOMEM. */
static int pct_decode(const char *s, size_t n, char **out)
{
    char *d = malloc(n + 1);
    size_t k = 0;

    *out = NULL;
    if (d == NULL)
        return SY_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            static const char hexd[] = "0123456789abcdefABCDEF";
            char hx[3] = {0};

            if (i + 2 >= n || strchr(hexd, s[i + 1]) == NULL || strchr(hexd, s[i + 2]) == NULL ||
                s[i + 1] == '\0' || s[i + 2] == '\0') {
                free(d);
                return SY_EINVAL;
            }
            hx[0] = s[i + 1];
            hx[1] = s[i + 2];
            d[k++] = (char)strtol(hx, NULL, 16);
            i += 2;
        } else {
            d[k++] = s[i];
        }
    }
    d[k] = '\0';
    *out = d;
    return 0;
}

/* USERINFO [p, end): "user:password", ":password" or "user" (percent-encoded). */
static int url_userinfo(const char *p, const char *end, struct src_redis_url *u, char *why,
                        size_t whysz)
{
    const char *colon = memchr(p, ':', (size_t)(end - p));
    const char *user_end = colon != NULL ? colon : end;
    int rc = 0;

    if (user_end > p)
        rc = pct_decode(p, (size_t)(user_end - p), &u->user);
    if (rc == 0 && colon != NULL)
        rc = pct_decode(colon + 1, (size_t)(end - colon - 1), &u->password);
    if (rc == SY_EINVAL)
        snprintf(why, whysz, "bad percent-escape in the user or password");
    return rc;
}

/* Digits [p, end) as 0..MAX. Returns the value, or -1. */
static long parse_num(const char *p, const char *end, long max)
{
    long v = 0;

    if (p == end)
        return -1;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
        if (v > max)
            return -1;
    }
    return v;
}

/*
 * Parse URL into U (zeroed first; url_free() after). Returns 0, SY_EINVAL with WHY filled, or
 * SY_ENOMEM. Forms: redis://[[user]:password@]host[:port][/db] (host may be [IPv6]) and
 * unix:/path, unix:///path, unix://[[user]:password@]/path, each with an optional ?db=N.
 */
static int url_parse(const char *url, struct src_redis_url *u, char *why, size_t whysz)
{
    struct buf safe = {0};
    const char *p, *end;
    long v;
    int rc = SY_EINVAL;

    memset(u, 0, sizeof(*u));
    u->port = 6379;
    if (strncmp(url, "rediss://", 9) == 0) {
        snprintf(why, whysz,
                 "TLS is not available: Debian 12's hiredis 0.14 has no TLS support; use a TLS "
                 "tunnel such as stunnel and point redis:// at it");
        return SY_EINVAL;
    }
    if (strncmp(url, "redis://", 8) == 0) {
        const char *auth_end, *at = NULL, *hp, *host, *colon = NULL;
        size_t host_len;

        p = url + 8;
        auth_end = p + strcspn(p, "/?#");
        for (const char *q = p; q < auth_end; q++)
            if (*q == '@')
                at = q;
        hp = p;
        if (at != NULL) {
            rc = url_userinfo(p, at, u, why, whysz);
            if (rc != 0)
                goto fail;
            rc = SY_EINVAL;
            hp = at + 1;
        }
        if (*hp == '[') {
            const char *close = memchr(hp, ']', (size_t)(auth_end - hp));

            if (close == NULL) {
                snprintf(why, whysz, "unbalanced '[' in the host");
                goto fail;
            }
            host = hp + 1;
            host_len = (size_t)(close - host);
            if (close + 1 < auth_end) {
                if (close[1] != ':') {
                    snprintf(why, whysz, "expected ':PORT' after the IPv6 address");
                    goto fail;
                }
                colon = close + 1;
            }
        } else {
            colon = memchr(hp, ':', (size_t)(auth_end - hp));
            host = hp;
            host_len = (size_t)((colon != NULL ? colon : auth_end) - hp);
        }
        if (host_len == 0) {
            snprintf(why, whysz, "no host (redis://HOST[:PORT][/DB])");
            goto fail;
        }
        if (colon != NULL) {
            v = parse_num(colon + 1, auth_end, 65535);
            if (v < 1) {
                snprintf(why, whysz, "the port must be 1..65535");
                goto fail;
            }
            u->port = (int)v;
        }
        u->host = strndup(host, host_len);
        if (u->host == NULL)
            goto oom;
        p = auth_end;
        if (*p == '/') {
            p++;
            end = p + strcspn(p, "?#");
            if (end > p) {
                v = parse_num(p, end, INT_MAX);
                if (v < 0) {
                    snprintf(why, whysz, "the path must be a database number (redis://HOST/DB)");
                    goto fail;
                }
                u->db = (int)v;
            }
            p = end;
        }
        if (*p != '\0') {
            snprintf(why, whysz, "query parameters and fragments are not supported");
            goto fail;
        }
    } else if (strncmp(url, "unix:", 5) == 0) {
        p = url + 5;
        if (strncmp(p, "//", 2) == 0) {
            p += 2;
            if (*p != '/') {
                const char *at = strchr(p, '@');

                if (at == NULL) {
                    snprintf(why, whysz, "expected unix://[[user]:password@]/path");
                    goto fail;
                }
                rc = url_userinfo(p, at, u, why, whysz);
                if (rc != 0)
                    goto fail;
                rc = SY_EINVAL;
                p = at + 1;
            }
        }
        if (*p != '/') {
            snprintf(why, whysz, "the socket path must be absolute (unix:/path/redis.sock)");
            goto fail;
        }
        end = p + strcspn(p, "?");
        u->path = strndup(p, (size_t)(end - p));
        if (u->path == NULL)
            goto oom;
        if (*end == '?') {
            if (strncmp(end + 1, "db=", 3) != 0 ||
                (v = parse_num(end + 4, end + strlen(end), INT_MAX)) < 0) {
                snprintf(why, whysz, "the only query parameter is ?db=N");
                goto fail;
            }
            u->db = (int)v;
        }
    } else {
        snprintf(why, whysz, "must start with redis:// (or unix: for a socket)");
        goto fail;
    }

    /* The URL as logs and RedisBatchInfo show it: never the password. */
    if (u->path != NULL)
        rc = buf_printf(&safe, "unix://%s%s%s?db=%d", u->user ? u->user : "", u->user ? "@" : "",
                        u->path, u->db);
    else
        rc = buf_printf(&safe, "redis://%s%s%s%s%s:%d/%d", u->user ? u->user : "",
                        u->user ? "@" : "", strchr(u->host, ':') ? "[" : "", u->host,
                        strchr(u->host, ':') ? "]" : "", u->port, u->db);
    if (rc != 0)
        goto oom;
    u->safe = buf_take(&safe, NULL);
    return 0;

oom:
    snprintf(why, whysz, "out of memory");
    rc = SY_ENOMEM;
fail:
    buf_free(&safe);
    url_free(u);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* validate() and the kind                                                                    */

static void redis_validate(void *obj, struct cfg_check *chk)
{
    static const char *const list_only[] = {"pop", NULL};
    static const char *const stream_only[] = {"group", "consumer", "starting_position",
                                              "body_field", NULL};
    const struct src_redis_cfg *c = obj;
    struct src_redis_url u;
    char why[256];

    if (c->url != NULL) {
        int rc = url_parse(c->url, &u, why, sizeof(why));

        if (rc == 0)
            url_free(&u);
        else
            cfg_check_error(chk, "url", "%s", why);
    }
    if (c->list != NULL && c->stream != NULL) {
        cfg_check_error(chk, "stream",
                        "give either list (a work queue) or stream (a consumer "
                        "group), not both");
    } else if (c->list == NULL && c->stream == NULL) {
        cfg_check_error(chk, NULL,
                        "one of list (a work queue) or stream (a consumer group) is "
                        "required");
    }
    if (c->list != NULL && c->list[0] == '\0')
        cfg_check_error(chk, "list", "must not be empty");
    if (c->stream != NULL && c->stream[0] == '\0')
        cfg_check_error(chk, "stream", "must not be empty");
    if (c->stream != NULL)
        for (size_t i = 0; list_only[i] != NULL; i++)
            if (cfg_check_given(chk, list_only[i]))
                cfg_check_error(chk, list_only[i],
                                "applies to list only (this source reads "
                                "the stream '%s')",
                                c->stream);
    if (c->list != NULL)
        for (size_t i = 0; stream_only[i] != NULL; i++)
            if (cfg_check_given(chk, stream_only[i]))
                cfg_check_error(chk, stream_only[i],
                                "applies to stream only (this source "
                                "reads the list '%s')",
                                c->list);
    if (c->stream != NULL && c->group != NULL && c->group[0] == '\0')
        cfg_check_error(chk, "group", "must not be empty");
    if (c->stream != NULL && c->consumer != NULL && c->consumer[0] == '\0')
        cfg_check_error(chk, "consumer", "must not be empty (leave it out for <hostname>-<pid>)");
    if (c->stream != NULL && c->body_field != NULL && c->body_field[0] == '\0')
        cfg_check_error(chk, "body_field", "must not be empty");
    /* Like SQS's redrive policy: the count and the dead letter go together. */
    if (c->dead_letter != NULL && c->max_receive_count == 0)
        cfg_check_error(chk, "dead_letter",
                        "is only used with max_receive_count >= 1 (records "
                        "received more often go there)");
    if (c->dead_letter == NULL && c->max_receive_count > 0)
        cfg_check_error(chk, "max_receive_count",
                        "needs dead_letter: the destination of the "
                        "records received more often than this");
}

const struct cfg_source_kind src_redis_kind = {
    .sec =
        {
            .name = "redis",
            .fields = redis_fields,
            .n_fields = sizeof(redis_fields) / sizeof(redis_fields[0]),
            .size = sizeof(struct src_redis_cfg),
            .validate = redis_validate,
        },
    .default_batch_size = 10, /* SQS */
    .default_window_ms = 0,
    .data_key = "body",
    .data_must_match = 1,
};

/* ---------------------------------------------------------------------------------------- */
/* Id queues and the held set                                                                 */

static int ids_push(struct src_redis_ids *q, struct src_redis_qid e)
{
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 64;
        struct src_redis_qid *v = realloc(q->v, cap * sizeof(*v));

        if (v == NULL)
            return SY_ENOMEM;
        q->v = v;
        q->cap = cap;
    }
    q->v[q->n++] = e;
    q->acks += e.acks;
    return 0;
}

static int ids_push_copy(struct src_redis_ids *q, const char *id, size_t len, uint32_t acks)
{
    struct src_redis_qid e = {strndup(id, len), acks};

    if (e.id == NULL || ids_push(q, e) != 0) {
        free(e.id);
        return SY_ENOMEM;
    }
    return 0;
}

static void ids_free(struct src_redis_ids *q)
{
    for (size_t i = 0; i < q->n; i++)
        free(q->v[i].id);
    free(q->v);
    memset(q, 0, sizeof(*q));
}

static uint32_t id_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static struct src_redis_held **held_slot(struct src_redis_heldtab *t, const char *id, size_t len,
                                         uint32_t h)
{
    struct src_redis_held **pp = &t->b[h & (t->nb - 1)];

    while (*pp != NULL &&
           ((*pp)->hash != h || (*pp)->len != len || memcmp((*pp)->id, id, len) != 0))
        pp = &(*pp)->hnext;
    return pp;
}

static int held_grow(struct src_redis_heldtab *t)
{
    size_t nb = t->nb ? t->nb * 2 : 64;
    struct src_redis_held **b = calloc(nb, sizeof(*b)), *h;

    if (b == NULL)
        return SY_ENOMEM;
    free(t->b);
    t->b = b;
    t->nb = nb;
    TAILQ_FOREACH(h, &t->all, link)
    {
        h->hnext = b[h->hash & (nb - 1)];
        b[h->hash & (nb - 1)] = h;
    }
    return 0;
}

/* Find ID, or make it (refs 0) with EXTRA zeroed bytes at priv (8-byte aligned). */
static struct src_redis_held *held_get(struct src_redis_heldtab *t, const char *id, size_t len,
                                       size_t extra, bool *made)
{
    uint32_t hv = id_hash(id, len);
    struct src_redis_held **pp, *h;
    size_t at = (sizeof(*h) + len + 1 + 7) & ~(size_t)7;

    *made = false;
    if (t->n >= t->nb && held_grow(t) != 0 && t->nb == 0)
        return NULL;
    pp = held_slot(t, id, len, hv);
    if (*pp != NULL)
        return *pp;
    h = malloc(at + extra);
    if (h == NULL)
        return NULL;
    h->hnext = NULL;
    h->hash = hv;
    h->refs = 0;
    h->len = len;
    h->priv = NULL;
    if (extra > 0) {
        h->priv = (char *)h + at;
        memset(h->priv, 0, extra);
    }
    memcpy(h->id, id, len);
    h->id[len] = '\0';
    *pp = h;
    TAILQ_INSERT_TAIL(&t->all, h, link);
    t->n++;
    *made = true;
    return h;
}

static void held_unlink(struct src_redis_heldtab *t, struct src_redis_held *h)
{
    struct src_redis_held **pp = &t->b[h->hash & (t->nb - 1)];

    while (*pp != h)
        pp = &(*pp)->hnext;
    *pp = h->hnext;
    TAILQ_REMOVE(&t->all, h, link);
    t->n--;
    free(h);
}

static int held_add(struct src_redis_heldtab *t, const char *id, size_t len)
{
    bool made;
    struct src_redis_held *h = held_get(t, id, len, 0, &made);

    if (h == NULL)
        return SY_ENOMEM;
    h->refs++;
    return 0;
}

static void held_del(struct src_redis_heldtab *t, const char *id, size_t len)
{
    struct src_redis_held *h;

    if (t->nb == 0)
        return;
    h = *held_slot(t, id, len, id_hash(id, len));
    if (h == NULL || --h->refs > 0)
        return;
    held_unlink(t, h);
}

struct src_redis_held *src_redis_held_get(struct src_redis *sr, const char *id, size_t len,
                                          size_t extra, bool *made)
{
    return held_get(&sr->held, id, len, extra, made);
}

struct src_redis_held *src_redis_held_find(struct src_redis *sr, const char *id, size_t len)
{
    if (sr->held.nb == 0)
        return NULL;
    return *held_slot(&sr->held, id, len, id_hash(id, len));
}

void src_redis_held_drop(struct src_redis *sr, struct src_redis_held *h)
{
    held_unlink(&sr->held, h);
}

static void held_free(struct src_redis_heldtab *t)
{
    struct src_redis_held *h;

    while ((h = TAILQ_FIRST(&t->all)) != NULL) {
        TAILQ_REMOVE(&t->all, h, link);
        free(h);
    }
    free(t->b);
    t->b = NULL;
    t->nb = t->n = 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Command arguments                                                                          */

void src_redis_argv_add(struct src_redis_argv *a, const char *s, size_t len)
{
    if (a->oom)
        return;
    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 16;
        const char **v = realloc(a->v, (size_t)cap * sizeof(*v));
        size_t *l;

        if (v == NULL) {
            a->oom = true;
            return;
        }
        a->v = v;
        l = realloc(a->len, (size_t)cap * sizeof(*l));
        if (l == NULL) {
            a->oom = true;
            return;
        }
        a->len = l;
        a->cap = cap;
    }
    a->v[a->n] = s;
    a->len[a->n] = len;
    a->n++;
}

void src_redis_argv_adds(struct src_redis_argv *a, const char *s)
{
    src_redis_argv_add(a, s, strlen(s));
}

void src_redis_argv_addf(struct src_redis_argv *a, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (a->n_fmt == (int)(sizeof(a->fmt) / sizeof(a->fmt[0]))) {
        a->oom = true; /* our own limit: a command never formats more than 8 arguments */
        return;
    }
    va_start(ap, fmt);
    n = vsnprintf(a->fmt[a->n_fmt], sizeof(a->fmt[0]), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(a->fmt[0])) {
        a->oom = true;
        return;
    }
    src_redis_argv_add(a, a->fmt[a->n_fmt], (size_t)n);
    a->n_fmt++;
}

void src_redis_argv_free(struct src_redis_argv *a)
{
    free(a->v);
    free(a->len);
    a->v = NULL;
    a->len = NULL;
    a->n = a->cap = 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Commands and their deadlines                                                               */

/* Arm C's timer for its oldest command (or disarm it). */
static void conn_arm(struct src_redis_conn *c)
{
    struct src_redis_cmd *head = TAILQ_FIRST(&c->pending);
    int64_t left;
    struct timeval tv;

    if (head == NULL || c->ac == NULL) {
        ev_del(c->timer);
        return;
    }
    left = head->deadline_ms - time_mono_ms();
    tv = evhelp_tv_ms(left > 0 ? (int)left : 0);
    evtimer_add(c->timer, &tv);
}

/* hiredis: the reply (or NULL) for the command in PRIVDATA. */
static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct src_redis_cmd *cmd = privdata;
    struct src_redis_conn *c;
    src_redis_reply_fn *cb;
    void *arg;

    SRC_REDIS_CHECK(cmd, SRC_REDIS_CMD_MAGIC);
    c = cmd->conn;
    TAILQ_REMOVE(&c->pending, cmd, link);
    c->n_pending--;
    cb = cmd->cb;
    arg = cmd->arg;
    cmd->magic = 0;
    free(cmd);
    conn_arm(c);
    cb(c->sr, r, arg);
}

int src_redis_send(struct src_redis *sr, struct src_redis_conn *c, struct src_redis_argv *a,
                   int timeout_ms, const char *what, src_redis_reply_fn *cb, void *arg)
{
    struct src_redis_cmd *cmd;

    if (a->oom)
        return SY_ENOMEM;
    if (c->ac == NULL)
        return SY_ECLOSED;
    cmd = calloc(1, sizeof(*cmd));
    if (cmd == NULL)
        return SY_ENOMEM;
    cmd->magic = SRC_REDIS_CMD_MAGIC;
    cmd->conn = c;
    cmd->deadline_ms = time_mono_ms() + timeout_ms;
    cmd->timeout_ms = timeout_ms;
    cmd->what = what;
    cmd->cb = cb;
    cmd->arg = arg;
    TAILQ_INSERT_TAIL(&c->pending, cmd, link);
    c->n_pending++;
    /* hiredis copies every argument into its output buffer before returning. */
    if (redisAsyncCommandArgv(c->ac, on_reply, cmd, a->n, a->v, a->len) != REDIS_OK) {
        /* Refused (the context is disconnecting): no callback will come. */
        TAILQ_REMOVE(&c->pending, cmd, link);
        c->n_pending--;
        cmd->magic = 0;
        free(cmd);
        return SY_EIO;
    }
    if (c->n_pending == 1)
        conn_arm(c);
    return 0;
}

/* A connection's timer: its oldest command is overdue. The connection is presumed stuck. */
static void on_conn_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct src_redis_conn *c = arg;
    struct src_redis_cmd *head;

    SRC_REDIS_CHECK(c, SRC_REDIS_CONN_MAGIC);
    head = TAILQ_FIRST(&c->pending);
    if (head == NULL)
        return;
    if (head->deadline_ms > time_mono_ms()) { /* a newer head: not due yet */
        conn_arm(c);
        return;
    }
    src_redis_session_fail(c->sr, false, "%s got no reply within %d ms", head->what,
                           head->timeout_ms);
}

/* ---------------------------------------------------------------------------------------- */
/* Error replies                                                                              */

static bool code_is(const char *s, const char *code)
{
    size_t n = strlen(code);

    return strncmp(s, code, n) == 0 && (s[n] == ' ' || s[n] == '\0');
}

enum src_redis_errk src_redis_errk(const redisReply *r)
{
    static const char *const problems[] = {"WRONGTYPE", "NOPERM",  "NOAUTH",      "WRONGPASS",
                                           "MOVED",     "ASK",     "CLUSTERDOWN", "READONLY",
                                           "CROSSSLOT", "MISCONF", NULL};
    const char *s = r->str != NULL ? r->str : "";

    if (code_is(s, "NOSCRIPT"))
        return SRC_REDIS_ERRK_NOSCRIPT;
    if (code_is(s, "NOGROUP"))
        return SRC_REDIS_ERRK_NOGROUP;
    for (size_t i = 0; problems[i] != NULL; i++)
        if (code_is(s, problems[i]))
            return SRC_REDIS_ERRK_PROBLEM;
    /* An error raised inside a script may come wrapped ("ERR Error running script ...:
     * WRONGTYPE ..."). */
    if (strstr(s, "script") != NULL) {
        if (strstr(s, "WRONGTYPE") != NULL || strstr(s, "NOPERM") != NULL)
            return SRC_REDIS_ERRK_PROBLEM;
        if (strstr(s, "NOGROUP") != NULL)
            return SRC_REDIS_ERRK_NOGROUP;
    }
    if (strstr(s, "without any password configured") != NULL ||
        strstr(s, "invalid password") != NULL || strstr(s, "DB index is out of range") != NULL)
        return SRC_REDIS_ERRK_PROBLEM;
    return SRC_REDIS_ERRK_OTHER;
}

void src_redis_err_text(const redisReply *r, char *out, size_t size)
{
    const char *s = r->str != NULL ? r->str : "(error without text)";
    const char *hint = "";

    if (code_is(s, "MOVED") || code_is(s, "ASK") || code_is(s, "CLUSTERDOWN") ||
        code_is(s, "CROSSSLOT"))
        hint = " (the server is a Redis Cluster node: point url at a standalone server)";
    else if (code_is(s, "NOAUTH"))
        hint = " (give the password in url: redis://[user]:PASSWORD@host)";
    else if (code_is(s, "READONLY"))
        hint = " (the server is a replica: point url at the primary)";
    snprintf(out, size, "%.200s%s", s, hint);
}

/* ---------------------------------------------------------------------------------------- */
/* Reads: the shared error path                                                               */

static void reload_scripts(struct src_redis *sr);

/* fetch_retry: the delay after a read problem is over. */
static void on_fetch_retry(evutil_socket_t fd, short what, void *arg)
{
    struct src_redis *sr = arg;

    SRC_REDIS_CHECK(sr, SRC_REDIS_MAGIC);
    sr->read_problem = false;
    src_redis_kick(sr);
}

void src_redis_read_error(struct src_redis *sr, const char *what, const redisReply *r)
{
    enum src_redis_errk k = src_redis_errk(r);
    char text[300], reason[256];
    struct timeval tv;
    int delay;

    src_redis_err_text(r, text, sizeof(text));
    /* NOSCRIPT: the server lost its script cache (SCRIPT FLUSH, a failover). Load them again
     * and read at once: the loads are queued ahead of the read on the same connection. A
     * server that keeps refusing them is a problem like any other. */
    if (k == SRC_REDIS_ERRK_NOSCRIPT && ++sr->noscript_streak <= 2) {
        log_info("%s %s: the server has lost our scripts; loading them again", sr->prefix, what);
        reload_scripts(sr);
        src_redis_kick(sr);
        return;
    }
    delay = k == SRC_REDIS_ERRK_OTHER ? SRC_REDIS_ACK_RETRY_MS : SRC_REDIS_PROBLEM_RETRY_MS;
    snprintf(reason, sizeof(reason), "%.60s: %.190s", what, text);
    if (!sr->in_problem || strcmp(reason, sr->read_reason) != 0)
        log_warn("%s reading %s '%s' failed: %s; retrying every %d ms", sr->prefix, sr->mode->name,
                 sr->key, reason, delay);
    snprintf(sr->read_reason, sizeof(sr->read_reason), "%s", reason);
    sr->in_problem = true;
    sr->read_problem = true;
    tv = evhelp_tv_ms(delay);
    evtimer_add(sr->fetch_retry, &tv);
    if (sr->stopping)
        src_redis_kick(sr); /* stop() may be waiting for this read */
    else
        set_state(sr, SOURCE_PROBLEM, reason);
}

void src_redis_read_later(struct src_redis *sr, int ms, const char *why)
{
    struct timeval tv = evhelp_tv_ms(ms);

    log_err("%s %s; reading again in %d ms", sr->prefix, why, ms);
    sr->read_problem = true;
    evtimer_add(sr->fetch_retry, &tv);
    if (sr->stopping)
        src_redis_kick(sr); /* stop() may be waiting for this read */
}

void src_redis_read_ok(struct src_redis *sr)
{
    sr->noscript_streak = 0;
    if (sr->in_problem) {
        sr->in_problem = false;
        sr->read_reason[0] = '\0';
        log_info("%s reading %s '%s' again", sr->prefix, sr->mode->name, sr->key);
        if (sr->sess == SESS_UP)
            set_state(sr, SOURCE_RUNNING, NULL);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Host-name lookup on a thread of its own                                                    */

/*
 * Shared by the lookup thread and the loop (refs). The thread fills gai_rc and addr, stores
 * `done` (release) and writes a byte to fds[1]; the loop reads it from fds[0] and loads `done`
 * (acquire) before reading the result. A canceled lookup's thread still writes its byte into
 * the pipe, which stays open until the last unref, and nobody reads it.
 */
struct src_redis_lookup {
    unsigned magic;
    atomic_int refs; /* 2 at start: the loop side and the thread */
    atomic_bool done;
    int fds[2];
    char *host;
    int gai_rc;
    char addr[INET6_ADDRSTRLEN];
    /* Loop side only. */
    struct event *ev;
    struct src_redis *sr;
};

static void lookup_unref(struct src_redis_lookup *lk)
{
    if (atomic_fetch_sub(&lk->refs, 1) != 1)
        return;
    if (lk->fds[0] >= 0)
        close(lk->fds[0]);
    if (lk->fds[1] >= 0)
        close(lk->fds[1]);
    free(lk->host);
    lk->magic = 0;
    free(lk);
}

/* Runs on the lookup thread: one blocking getaddrinfo(), then a byte to wake the loop. */
static void *lookup_main(void *arg)
{
    struct src_redis_lookup *lk = arg;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    ssize_t n;

    pthread_setname_np(pthread_self(), "sy-redis-dns");
    lk->gai_rc = getaddrinfo(lk->host, NULL, &hints, &ai);
    if (lk->gai_rc == 0) {
        lk->gai_rc = EAI_NONAME;
        for (struct addrinfo *p = ai; p != NULL; p = p->ai_next) {
            const void *a = NULL;

            if (p->ai_family == AF_INET)
                a = &((struct sockaddr_in *)p->ai_addr)->sin_addr;
            else if (p->ai_family == AF_INET6)
                a = &((struct sockaddr_in6 *)p->ai_addr)->sin6_addr;
            if (a != NULL && inet_ntop(p->ai_family, a, lk->addr, sizeof(lk->addr)) != NULL) {
                lk->gai_rc = 0;
                break;
            }
        }
        freeaddrinfo(ai);
    }
    atomic_store_explicit(&lk->done, true, memory_order_release);
    do {
        n = write(lk->fds[1], "x", 1);
    } while (n < 0 && errno == EINTR);
    lookup_unref(lk);
    return NULL;
}

/* Forget LK on the loop side (the thread, if still running, lets go of it on its own). */
static void lookup_cancel(struct src_redis_lookup *lk)
{
    if (lk == NULL)
        return;
    evhelp_free(&lk->ev);
    lookup_unref(lk);
}

/* fds[0] is readable: the result is there. */
static void on_lookup_done(evutil_socket_t fd, short what, void *arg)
{
    struct src_redis_lookup *lk = arg;
    struct src_redis *sr;
    char addr[INET6_ADDRSTRLEN], host[256];
    int gai_rc;
    char byte;

    SRC_REDIS_CHECK(lk, SRC_REDIS_LOOKUP_MAGIC);
    if (read(fd, &byte, 1) != 1 || !atomic_load_explicit(&lk->done, memory_order_acquire))
        return;
    sr = lk->sr;
    gai_rc = lk->gai_rc;
    memcpy(addr, lk->addr, sizeof(addr));
    snprintf(host, sizeof(host), "%s", lk->host);
    sr->lookup = NULL;
    lookup_cancel(lk); /* frees lk->ev: allowed from inside its own callback */
    if (gai_rc != 0) {
        src_redis_session_fail(sr, false, "look up %s: %s", host, gai_strerror(gai_rc));
        return;
    }
    session_open(sr, addr);
}

static int lookup_start(struct src_redis *sr)
{
    struct src_redis_lookup *lk = calloc(1, sizeof(*lk));
    pthread_attr_t attr;
    pthread_t th;
    int rc;

    if (lk == NULL)
        return SY_ENOMEM;
    lk->magic = SRC_REDIS_LOOKUP_MAGIC;
    lk->fds[0] = lk->fds[1] = -1;
    atomic_init(&lk->refs, 2);
    atomic_init(&lk->done, false);
    lk->sr = sr;
    lk->host = strdup(sr->url.host);
    if (lk->host == NULL || pipe2(lk->fds, O_CLOEXEC | O_NONBLOCK) != 0)
        goto fail;
    lk->ev = event_new(sr->evb, lk->fds[0], EV_READ | EV_PERSIST, on_lookup_done, lk);
    if (lk->ev == NULL || event_add(lk->ev, NULL) != 0)
        goto fail;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&th, &attr, lookup_main, lk);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        goto fail;
    sr->lookup = lk;
    return 0;

fail:
    evhelp_free(&lk->ev);
    atomic_store(&lk->refs, 1);
    lookup_unref(lk);
    return SY_EIO;
}

/* ---------------------------------------------------------------------------------------- */
/* Connections                                                                                */

/* Free C's context on purpose (never from inside one of its own callbacks). The commands still
 * on it get their callbacks with NULL here. */
static void conn_drop(struct src_redis_conn *c)
{
    redisAsyncContext *ac = c->ac;

    ev_del(c->timer);
    if (ac == NULL)
        return;
    c->ac = NULL;
    c->connected = false;
    ac->data = NULL; /* on_connect / on_disconnect: no longer ours */
    redisAsyncFree(ac);
}

/* Where we connect to, for messages. */
static const char *target(const struct src_redis *sr)
{
    return sr->url.safe;
}

/* hiredis: the TCP connect finished, or failed (then hiredis frees AC when we return). */
static void on_connect(const redisAsyncContext *ac, int status)
{
    struct src_redis_conn *c = ac->data;

    if (c == NULL)
        return;
    SRC_REDIS_CHECK(c, SRC_REDIS_CONN_MAGIC);
    if (status != REDIS_OK) {
        c->ac = NULL;
        c->connected = false;
        src_redis_session_fail(c->sr, false, "connect to %s: %s", target(c->sr), ac->errstr);
        return;
    }
    c->connected = true;
    src_redis_kick(c->sr); /* session_check_up() runs from work(), never in here */
}

/* hiredis: an established connection ended; hiredis frees AC when we return. */
static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct src_redis_conn *c = ac->data;

    if (c == NULL) /* dropped by us */
        return;
    SRC_REDIS_CHECK(c, SRC_REDIS_CONN_MAGIC);
    c->ac = NULL;
    c->connected = false;
    ev_del(c->timer);
    src_redis_session_fail(c->sr, false, "connection to %s lost: %s", target(c->sr),
                           status == REDIS_OK || ac->errstr[0] == '\0' ? "closed by the server"
                                                                       : ac->errstr);
}

/* Setup replies: errors fail the session (auth and permissions as problems). */
static void on_setup_reply(struct src_redis *sr, const redisReply *r, void *arg)
{
    const char *tolerate = arg;
    char text[300];

    if (sr->setup_left > 0)
        sr->setup_left--;
    if (r == NULL)
        return;
    if (r->type == REDIS_REPLY_ERROR &&
        (tolerate == NULL || strncmp(r->str, tolerate, strlen(tolerate)) != 0)) {
        src_redis_err_text(r, text, sizeof(text));
        src_redis_session_fail(sr, src_redis_errk(r) != SRC_REDIS_ERRK_OTHER, "%s", text);
        return;
    }
    src_redis_kick(sr);
}

static void setup_send(struct src_redis *sr, struct src_redis_conn *c, struct src_redis_argv *a,
                       const char *tolerate)
{
    /* Queued before the connect completes: the deadline covers the connect too. */
    int rc = src_redis_send(sr, c, a, SRC_REDIS_CONNECT_TIMEOUT_MS + SRC_REDIS_CMD_TIMEOUT_MS,
                            "a setup command", on_setup_reply, (void *)tolerate);

    if (rc != 0)
        src_redis_session_fail(sr, false, "cannot queue a setup command: %s", sy_strerror(rc));
    else
        sr->setup_left++;
}

void src_redis_setup_cmd(struct src_redis *sr, struct src_redis_argv *a, const char *tolerate)
{
    setup_send(sr, &sr->cmd, a, tolerate);
}

/* SCRIPT LOAD for every script of the mode, as setup commands of the session. */
static void load_scripts(struct src_redis *sr)
{
    for (size_t i = 0; sr->mode->scripts[i] != NULL; i++) {
        struct src_redis_argv a = {0};

        src_redis_argv_adds(&a, "SCRIPT");
        src_redis_argv_adds(&a, "LOAD");
        src_redis_argv_adds(&a, sr->mode->scripts[i]);
        setup_send(sr, &sr->cmd, &a, NULL);
        src_redis_argv_free(&a);
    }
}

/* SCRIPT LOAD reply outside setup: a refusal is a read problem. */
static void on_reload_reply(struct src_redis *sr, const redisReply *r, void *arg)
{
    if (r != NULL && r->type == REDIS_REPLY_ERROR && !sr->read_problem)
        src_redis_read_error(sr, "SCRIPT LOAD", r);
}

static void reload_scripts(struct src_redis *sr)
{
    for (size_t i = 0; sr->mode->scripts[i] != NULL; i++) {
        struct src_redis_argv a = {0};

        src_redis_argv_adds(&a, "SCRIPT");
        src_redis_argv_adds(&a, "LOAD");
        src_redis_argv_adds(&a, sr->mode->scripts[i]);
        if (src_redis_send(sr, &sr->cmd, &a, SRC_REDIS_CMD_TIMEOUT_MS, "SCRIPT LOAD",
                           on_reload_reply, NULL) != 0)
            src_redis_session_fail(sr, false, "cannot queue SCRIPT LOAD");
        src_redis_argv_free(&a);
    }
}

/* Open C to ADDR (NULL: the unix socket) and queue its handshake. Returns 0 or -1 (the session
 * has been failed). */
static int conn_open(struct src_redis *sr, struct src_redis_conn *c, const char *addr)
{
    redisAsyncContext *ac = sr->url.path != NULL ? redisAsyncConnectUnix(sr->url.path)
                                                 : redisAsyncConnect(addr, sr->url.port);
    struct src_redis_argv a = {0};

    if (ac == NULL) {
        src_redis_session_fail(sr, false, "connect to %s: out of memory", target(sr));
        return -1;
    }
    if (ac->err != 0) {
        /* Refused at once (loopback, a missing socket): nothing is queued on AC yet. */
        src_redis_session_fail(sr, false, "connect to %s: %s", target(sr), ac->errstr);
        redisAsyncFree(ac);
        return -1;
    }
    if (redisLibeventAttach(ac, sr->evb) != REDIS_OK) {
        redisAsyncFree(ac);
        src_redis_session_fail(sr, false, "cannot attach a connection to the event loop");
        return -1;
    }
    ac->data = c;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    c->ac = ac;
    c->connected = false;

    /* The handshake goes out as soon as the socket connects, ahead of everything else. */
    if (sr->url.password != NULL || sr->url.user != NULL) {
        src_redis_argv_adds(&a, "AUTH");
        if (sr->url.user != NULL)
            src_redis_argv_adds(&a, sr->url.user);
        src_redis_argv_adds(&a, sr->url.password != NULL ? sr->url.password : "");
        setup_send(sr, c, &a, NULL);
        src_redis_argv_free(&a);
        memset(&a, 0, sizeof(a));
    }
    if (sr->url.db != 0) {
        src_redis_argv_adds(&a, "SELECT");
        src_redis_argv_addf(&a, "%d", sr->url.db);
        setup_send(sr, c, &a, NULL);
        src_redis_argv_free(&a);
        memset(&a, 0, sizeof(a));
    }
    /* A name for CLIENT LIST; a server that refuses it (ACL) is not a problem. */
    src_redis_argv_adds(&a, "CLIENT");
    src_redis_argv_adds(&a, "SETNAME");
    src_redis_argv_addf(&a, "switchyard-%.32s-%s", sr->base.ctx->mapping, c->name);
    setup_send(sr, c, &a, "");
    src_redis_argv_free(&a);
    return sr->sess == SESS_CONNECTING ? 0 : -1;
}

/* ---------------------------------------------------------------------------------------- */
/* The session                                                                                */

void src_redis_session_fail(struct src_redis *sr, bool problem, const char *fmt, ...)
{
    va_list ap;

    if (sr->sess != SESS_LOOKUP && sr->sess != SESS_CONNECTING && sr->sess != SESS_UP)
        return; /* the first reason wins */
    sr->was_up = sr->sess == SESS_UP;
    sr->sess = SESS_FAILING;
    sr->fail_problem = problem;
    va_start(ap, fmt);
    vsnprintf(sr->fail_reason, sizeof(sr->fail_reason), fmt, ap);
    va_end(ap);
    src_redis_kick(sr);
}

/* Connect both connections to ADDR (numeric; NULL for the unix socket) and set them up. */
static void session_open(struct src_redis *sr, const char *addr)
{
    sr->sess = SESS_CONNECTING;
    sr->setup_left = 0;
    if (conn_open(sr, &sr->cmd, addr) != 0)
        return;
    if (!sr->stopping && conn_open(sr, &sr->blk, addr) != 0)
        return;
    load_scripts(sr);
    if (sr->mode->setup != NULL)
        sr->mode->setup(sr);
}

/* One attempt: lookup when the host is a name, then connect; bounded by connect_timer. */
static void session_connect(struct src_redis *sr)
{
    struct timeval tv = evhelp_tv_ms(SRC_REDIS_CONNECT_TIMEOUT_MS);
    unsigned char tmp[sizeof(struct in6_addr)];
    const char *host = sr->url.host;

    evtimer_add(sr->connect_timer, &tv);
    if (sr->url.path != NULL) {
        session_open(sr, NULL);
    } else if (inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1) {
        session_open(sr, host);
    } else if (strcmp(host, "localhost") == 0) {
        session_open(sr, "127.0.0.1"); /* what redis-server binds by default */
    } else {
        sr->sess = SESS_LOOKUP;
        if (lookup_start(sr) != 0)
            src_redis_session_fail(sr, false, "cannot start a thread to look up %s", host);
    }
}

static void on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct src_redis *sr = arg;

    SRC_REDIS_CHECK(sr, SRC_REDIS_MAGIC);
    src_redis_session_fail(sr, false, "connect to %s timed out after %d ms", target(sr),
                           SRC_REDIS_CONNECT_TIMEOUT_MS);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct src_redis *sr = arg;

    SRC_REDIS_CHECK(sr, SRC_REDIS_MAGIC);
    if (sr->sess != SESS_BACKOFF)
        return;
    session_connect(sr);
}

/* The session is up once both connections connected and every setup reply came back. */
static void session_check_up(struct src_redis *sr)
{
    if (sr->sess != SESS_CONNECTING || !sr->cmd.connected || sr->setup_left > 0)
        return;
    if (!sr->stopping && !sr->blk.connected)
        return;
    sr->sess = SESS_UP;
    ev_del(sr->connect_timer);
    sr->up_since_ms = time_mono_ms();
    if (sr->last_log[0] != '\0')
        log_info("%s connected to %s again", sr->prefix, target(sr));
    else
        log_info("%s connected to %s, reading %s '%s'", sr->prefix, target(sr), sr->mode->name,
                 sr->key);
    sr->last_log[0] = '\0';
}

/* Drop the failed session and schedule the next attempt (work() only). */
static void session_teardown(struct src_redis *sr)
{
    int64_t now = time_mono_ms();
    struct timeval tv;
    int delay;

    lookup_cancel(sr->lookup);
    sr->lookup = NULL;
    ev_del(sr->connect_timer);
    /* The NULL replies put unconfirmed acks back on their queues and clear the read flags. */
    conn_drop(&sr->cmd);
    conn_drop(&sr->blk);
    sr->setup_left = 0;
    sr->fetching = sr->waiting = false;
    if (sr->mode->reset != NULL)
        sr->mode->reset(sr);
    sr->read_problem = sr->in_problem = false;
    ev_del(sr->fetch_retry);
    sr->ack_hold = false;
    ev_del(sr->ack_retry);
    if (sr->was_up) {
        sr->reconnects++;
        /* A connection that lived a while was a success: the backoff starts over. */
        if (now - sr->up_since_ms >= SRC_REDIS_BACKOFF_MAX_MS)
            sr->backoff_ms = SRC_REDIS_BACKOFF_MIN_MS;
    }
    sr->was_up = false;
    if (sr->fail_problem) {
        delay = SRC_REDIS_PROBLEM_RETRY_MS;
    } else {
        delay = sr->backoff_ms;
        sr->backoff_ms =
            delay * 2 > SRC_REDIS_BACKOFF_MAX_MS ? SRC_REDIS_BACKOFF_MAX_MS : delay * 2;
    }
    if (strcmp(sr->fail_reason, sr->last_log) != 0) {
        log_warn("%s %s; reconnecting in %d ms%s", sr->prefix, sr->fail_reason, delay,
                 sr->fail_problem ? " (and every 5 s until it is fixed)"
                                  : " (then backing off up to 5 s)");
        snprintf(sr->last_log, sizeof(sr->last_log), "%s", sr->fail_reason);
    }
    if (!sr->stopping)
        set_state(sr, sr->fail_problem ? SOURCE_PROBLEM : SOURCE_RECONNECTING, sr->fail_reason);
    sr->sess = SESS_BACKOFF;
    tv = evhelp_tv_ms(delay);
    evtimer_add(sr->retry_timer, &tv);
}

/* ---------------------------------------------------------------------------------------- */
/* Acks and releases                                                                          */

/* One ack or release command on the wire: owns its ids until the reply. */
struct src_redis_batch {
    unsigned magic;
    enum src_redis_op op;
    size_t n;
    uint64_t acks; /* the sum of q[].acks */
    struct src_redis_qid q[];
};

static struct src_redis_ids *queue_of(struct src_redis *sr, enum src_redis_op op)
{
    return op == SRC_REDIS_OP_ACK ? &sr->ackq : &sr->relq;
}

/* Put B's ids back on their queue (sent again later) and free B. */
static void batch_requeue(struct src_redis *sr, struct src_redis_batch *b)
{
    struct src_redis_ids *q = queue_of(sr, b->op);

    for (size_t i = 0; i < b->n; i++)
        if (ids_push(q, b->q[i]) != 0) {
            log_err("%s out of memory keeping an unconfirmed %s; the record comes back after "
                    "the visibility timeout",
                    sr->prefix, b->op == SRC_REDIS_OP_ACK ? "ack" : "release");
            free(b->q[i].id);
        }
    b->magic = 0;
    free(b);
}

static void batch_free(struct src_redis_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->q[i].id);
    b->magic = 0;
    free(b);
}

static void on_ack_retry(evutil_socket_t fd, short what, void *arg)
{
    struct src_redis *sr = arg;

    SRC_REDIS_CHECK(sr, SRC_REDIS_MAGIC);
    sr->ack_hold = false;
    src_redis_kick(sr);
}

static void on_ids_reply(struct src_redis *sr, const redisReply *r, void *arg)
{
    struct src_redis_batch *b = arg;
    const char *what;
    char text[300];

    SRC_REDIS_CHECK(b, SRC_REDIS_BATCH_MAGIC);
    what = b->op == SRC_REDIS_OP_ACK ? "ack" : "release";
    sr->id_cmds--;
    sr->ids_on_wire -= b->n;
    sr->acks_on_wire -= b->acks;
    if (r == NULL) { /* no session: sent again after the reconnect */
        batch_requeue(sr, b);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        enum src_redis_errk k = src_redis_errk(r);

        src_redis_err_text(r, text, sizeof(text));
        if (k == SRC_REDIS_ERRK_NOSCRIPT) {
            batch_requeue(sr, b);
            reload_scripts(sr);
        } else if (k == SRC_REDIS_ERRK_NOGROUP ||
                   (k == SRC_REDIS_ERRK_PROBLEM && strstr(text, "WRONGTYPE") != NULL)) {
            /* The group or the in-flight keys are gone or replaced: nothing left to remove. */
            log_warn("%s %s of %zu records refused (%s); dropped: there is nothing to remove",
                     sr->prefix, what, b->n, text);
            batch_free(b);
        } else {
            log_warn("%s %s of %zu records refused (%s); sending again in %d ms", sr->prefix, what,
                     b->n, text, SRC_REDIS_ACK_RETRY_MS);
            batch_requeue(sr, b);
            if (!sr->ack_hold) {
                struct timeval tv = evhelp_tv_ms(SRC_REDIS_ACK_RETRY_MS);

                sr->ack_hold = true;
                evtimer_add(sr->ack_retry, &tv);
            }
        }
    } else {
        batch_free(b);
    }
    src_redis_kick(sr); /* more to send, or stop() may be done */
}

/* Send what the ack and release queues hold, in chunks, a few commands at a time. */
static void flush_ids(struct src_redis *sr)
{
    while (!sr->ack_hold && sr->id_cmds < SRC_REDIS_ACK_CMDS_MAX &&
           (sr->ackq.n > 0 || sr->relq.n > 0)) {
        enum src_redis_op op = sr->ackq.n > 0 ? SRC_REDIS_OP_ACK : SRC_REDIS_OP_RELEASE;
        struct src_redis_ids *q = queue_of(sr, op);
        size_t n = q->n < SRC_REDIS_CHUNK ? q->n : SRC_REDIS_CHUNK;
        struct src_redis_batch *b = malloc(sizeof(*b) + n * sizeof(b->q[0]));
        char *ids[SRC_REDIS_CHUNK];
        int rc;

        if (b == NULL) {
            log_err("%s out of memory sending acks; trying again", sr->prefix);
            return;
        }
        b->magic = SRC_REDIS_BATCH_MAGIC;
        b->op = op;
        b->n = n;
        b->acks = 0;
        memcpy(b->q, q->v + q->n - n, n * sizeof(b->q[0]));
        q->n -= n;
        for (size_t i = 0; i < n; i++) {
            ids[i] = b->q[i].id;
            b->acks += b->q[i].acks;
        }
        q->acks -= b->acks;
        rc = sr->mode->send_ids(sr, op, ids, n, on_ids_reply, b);
        if (rc != 0) {
            batch_requeue(sr, b);
            if (rc != SY_ECLOSED && rc != SY_EIO)
                log_err("%s cannot send acks: %s", sr->prefix, sy_strerror(rc));
            return;
        }
        sr->id_cmds++;
        sr->ids_on_wire += n;
        sr->acks_on_wire += b->acks;
    }
}

void src_redis_queue_id(struct src_redis *sr, enum src_redis_op op, const char *id, size_t len,
                        uint32_t acks)
{
    if (ids_push_copy(queue_of(sr, op), id, len, acks) != 0)
        log_err("%s out of memory %s %.*s; it comes back after the visibility timeout", sr->prefix,
                op == SRC_REDIS_OP_ACK ? "acking" : "releasing", (int)len, id);
    src_redis_kick(sr);
}

void src_redis_release_id(struct src_redis *sr, const char *id, size_t len)
{
    src_redis_queue_id(sr, SRC_REDIS_OP_RELEASE, id, len, 0);
}

void src_redis_ack_id(struct src_redis *sr, const char *id, size_t len)
{
    src_redis_queue_id(sr, SRC_REDIS_OP_ACK, id, len, 1);
}

/* ---------------------------------------------------------------------------------------- */
/* Delivery, heartbeat, stats                                                                 */

void src_redis_deliver(struct src_redis *sr, struct source_record **recs, size_t n)
{
    if (n == 0)
        return;
    if (sr->stopping || sr->finished) {
        /* Read while stopping: give them back at once rather than after the timeout. */
        if (sr->mode->done != NULL)
            sr->mode->done(sr, recs, n, false);
        for (size_t i = 0; i < n; i++) {
            if (sr->mode->done == NULL)
                src_redis_release_id(sr, recs[i]->id, strlen(recs[i]->id));
            source_record_free(recs[i]);
        }
        return;
    }
    /* Held before the host sees them: the host may ack inside deliver(). */
    for (size_t i = 0; i < n && sr->mode->done == NULL; i++)
        if (held_add(&sr->held, recs[i]->id, strlen(recs[i]->id)) != 0)
            log_err("%s out of memory: %s is not heartbeated and may be delivered again after "
                    "%d s",
                    sr->prefix, recs[i]->id, sr->cfg->visibility_timeout_s);
    source_deliver(&sr->base, recs, n);
}

static void on_hb_reply(struct src_redis *sr, const redisReply *r, void *arg)
{
    char text[300];

    sr->hb_cmds--;
    if (r == NULL || r->type != REDIS_REPLY_ERROR)
        return;
    src_redis_err_text(r, text, sizeof(text));
    if (src_redis_errk(r) == SRC_REDIS_ERRK_NOSCRIPT)
        reload_scripts(sr);
    log_warn("%s heartbeat of held records refused: %s", sr->prefix, text);
}

/* hb_timer (every visibility/3): push the deadline of every held record out again. */
static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    struct src_redis *sr = arg;
    char *ids[SRC_REDIS_CHUNK];
    struct src_redis_held *h;
    size_t k = 0;

    SRC_REDIS_CHECK(sr, SRC_REDIS_MAGIC);
    if (sr->sess != SESS_UP || sr->held.n == 0 || sr->hb_cmds > 0)
        return;
    /* The ids are borrowed from the held set: hiredis copies them as each command is queued. */
    TAILQ_FOREACH(h, &sr->held.all, link)
    {
        ids[k++] = h->id;
        if (k == SRC_REDIS_CHUNK || TAILQ_NEXT(h, link) == NULL) {
            if (sr->mode->send_ids(sr, SRC_REDIS_OP_HEARTBEAT, ids, k, on_hb_reply, NULL) != 0)
                return;
            sr->hb_cmds++;
            k = 0;
        }
    }
}

/* stats_timer (every second): gauges, and a source whose host had no room looks again. */
static void on_stats(evutil_socket_t fd, short what, void *arg)
{
    struct src_redis *sr = arg;

    SRC_REDIS_CHECK(sr, SRC_REDIS_MAGIC);
    if (sr->sess == SESS_UP && sr->stats_cmds == 0 && !sr->stopping)
        sr->mode->stats(sr);
    if (sr->room_blocked && !sr->paused)
        src_redis_kick(sr);
}

/* ---------------------------------------------------------------------------------------- */
/* work(): everything that must run on a clean stack                                          */

/* Read more when nothing stops us. */
static void read_next(struct src_redis *sr)
{
    size_t room;

    if (!sr->started || sr->stopping || sr->paused || sr->sess != SESS_UP || sr->fetching ||
        sr->waiting || sr->read_problem)
        return;
    room = source_room(&sr->base);
    if (room == 0) {
        sr->room_blocked = true; /* until resume() (or the stats timer sees room again) */
        return;
    }
    sr->room_blocked = false;
    sr->mode->fetch(sr, room < SRC_REDIS_FETCH_MAX ? room : SRC_REDIS_FETCH_MAX);
}

/* Stopped: nothing more to confirm, or the deadline passed. DONE runs from done_ev. */
static void finish(struct src_redis *sr)
{
    uint64_t left = sr->ackq.acks + sr->relq.acks + sr->acks_on_wire + sr->acks_local;

    if (left > 0)
        log_warn("%s stopped with %llu acks not confirmed by the server within %d ms; those "
                 "records will be delivered again after the visibility timeout",
                 sr->prefix, (unsigned long long)left, SRC_REDIS_STOP_WAIT_MS);
    sr->finished = true;
    sr->sess = SESS_CLOSED;
    ev_del(sr->retry_timer);
    ev_del(sr->connect_timer);
    ev_del(sr->fetch_retry);
    ev_del(sr->ack_retry);
    ev_del(sr->hb_timer);
    ev_del(sr->stats_timer);
    ev_del(sr->stop_timer);
    lookup_cancel(sr->lookup);
    sr->lookup = NULL;
    conn_drop(&sr->cmd);
    conn_drop(&sr->blk);
    log_info("%s stopped", sr->prefix);
    set_state(sr, SOURCE_STOPPED, NULL);
    event_active(sr->done_ev, EV_TIMEOUT, 0);
}

static void work(struct src_redis *sr)
{
    if (sr->finished)
        return;
    if (sr->sess == SESS_FAILING)
        session_teardown(sr);
    session_check_up(sr);
    if (sr->stopping) {
        bool idle;

        /* A blocked read cannot be canceled: close its connection (BLMOVE changes nothing;
         * stream entries it was about to hand us are reclaimed after the timeout). Its NULL
         * reply clears `fetching` / `waiting`, so this comes before the idle test. */
        conn_drop(&sr->blk);
        sr->waiting = false;
        idle = sr->ackq.n == 0 && sr->relq.n == 0 && sr->id_cmds == 0 && !sr->fetching;
        if (idle || !sr->started || time_mono_ms() >= sr->stop_deadline_ms) {
            finish(sr);
            return;
        }
    }
    if (sr->sess != SESS_UP)
        return;
    if (!sr->in_problem && !sr->stopping)
        set_state(sr, SOURCE_RUNNING, NULL);
    flush_ids(sr);
    read_next(sr);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct src_redis *sr = arg;

    SRC_REDIS_CHECK(sr, SRC_REDIS_MAGIC);
    work(sr);
}

static void on_stop_timer(evutil_socket_t fd, short what, void *arg)
{
    struct src_redis *sr = arg;

    SRC_REDIS_CHECK(sr, SRC_REDIS_MAGIC);
    work(sr);
}

/* done_ev: stop() has finished. DONE may destroy the source: nothing touches SR after it. */
static void on_done(evutil_socket_t fd, short what, void *arg)
{
    struct src_redis *sr = arg;
    source_stopped_fn *done;
    void *done_arg;

    SRC_REDIS_CHECK(sr, SRC_REDIS_MAGIC);
    done = sr->stop_done;
    done_arg = sr->stop_arg;
    sr->stop_done = NULL;
    if (done != NULL)
        done(done_arg);
}

/* ---------------------------------------------------------------------------------------- */
/* The ops                                                                                    */

static void redis_destroy(struct source *src);

static int conn_init(struct src_redis *sr, struct src_redis_conn *c, const char *name)
{
    c->magic = SRC_REDIS_CONN_MAGIC;
    c->sr = sr;
    c->name = name;
    TAILQ_INIT(&c->pending);
    c->timer = evtimer_new(sr->evb, on_conn_timeout, c);
    return c->timer != NULL ? 0 : SY_ENOMEM;
}

static int redis_create(const struct source_ctx *ctx, const void *cfgp, struct source **out,
                        struct sy_error *err)
{
    const struct src_redis_cfg *cfg = cfgp;
    struct src_redis *sr = calloc(1, sizeof(*sr));
    const char *mapping = ctx->mapping != NULL ? ctx->mapping : "-";
    char why[256];
    int rc;

    *out = NULL;
    if (sr == NULL) {
        sy_error_set(err, "redis source %s: out of memory", mapping);
        return SY_ENOMEM;
    }
    sr->magic = SRC_REDIS_MAGIC;
    sr->base.ops = &src_redis_ops;
    sr->base.ctx = ctx;
    sr->base.state = SOURCE_CONNECTING;
    sr->cfg = cfg;
    sr->evb = ctx->base;
    sr->backoff_ms = SRC_REDIS_BACKOFF_MIN_MS;
    sr->lag = -1;
    sr->inflight_n = -1;
    TAILQ_INIT(&sr->held.all);
    snprintf(sr->prefix, sizeof(sr->prefix), "[source:redis:%.64s]", mapping);

    /* The config was validated; these are the last line. */
    rc = cfg->url != NULL ? url_parse(cfg->url, &sr->url, why, sizeof(why)) : SY_EINVAL;
    if (rc != 0) {
        sy_error_set(err, "redis source %s: url: %s", mapping,
                     cfg->url != NULL ? why : "is required");
        goto fail;
    }
    if ((cfg->list == NULL) == (cfg->stream == NULL)) {
        sy_error_set(err, "redis source %s: give exactly one of list and stream", mapping);
        rc = SY_EINVAL;
        goto fail;
    }
    sr->mode = cfg->list != NULL ? &src_redis_list_mode : &src_redis_stream_mode;
    sr->key = cfg->list != NULL ? cfg->list : cfg->stream;
    sr->key_len = strlen(sr->key);
    sr->vis_ms = cfg->visibility_timeout_s * 1000;
    /* The host counts its own retries as receives against this (source.h). */
    sr->base.max_receive_count = (uint32_t)cfg->max_receive_count;

    rc = SY_ENOMEM;
    if (asprintf(&sr->arn, "arn:aws:sqs:%s:%s:%s", ctx->region ? ctx->region : "us-east-1",
                 ctx->account ? ctx->account : "000000000000", sr->key) < 0) {
        sr->arn = NULL;
        goto oom;
    }
    if (conn_init(sr, &sr->cmd, "cmd") != 0 || conn_init(sr, &sr->blk, "blk") != 0)
        goto oom;
    sr->kick = event_new(sr->evb, -1, 0, on_kick, sr);
    sr->done_ev = event_new(sr->evb, -1, 0, on_done, sr);
    sr->connect_timer = evtimer_new(sr->evb, on_connect_timeout, sr);
    sr->retry_timer = evtimer_new(sr->evb, on_retry, sr);
    sr->fetch_retry = evtimer_new(sr->evb, on_fetch_retry, sr);
    sr->ack_retry = evtimer_new(sr->evb, on_ack_retry, sr);
    sr->stop_timer = evtimer_new(sr->evb, on_stop_timer, sr);
    sr->hb_timer = event_new(sr->evb, -1, EV_PERSIST, on_heartbeat, sr);
    sr->stats_timer = event_new(sr->evb, -1, EV_PERSIST, on_stats, sr);
    if (sr->kick == NULL || sr->done_ev == NULL || sr->connect_timer == NULL ||
        sr->retry_timer == NULL || sr->fetch_retry == NULL || sr->ack_retry == NULL ||
        sr->stop_timer == NULL || sr->hb_timer == NULL || sr->stats_timer == NULL)
        goto oom;
    if (src_redis_event_init(sr) != 0 || sr->mode->init(sr) != 0)
        goto oom;
    *out = &sr->base;
    return 0;

oom:
    sy_error_set(err, "redis source %s: out of memory", mapping);
fail:
    redis_destroy(&sr->base);
    return rc;
}

static int redis_start(struct source *src)
{
    struct src_redis *sr = (struct src_redis *)src;
    struct timeval hb = evhelp_tv_ms(sr->vis_ms / 3 > 100 ? sr->vis_ms / 3 : 100);
    struct timeval st = evhelp_tv_ms(SRC_REDIS_STATS_MS);

    SRC_REDIS_CHECK(sr, SRC_REDIS_MAGIC);
    if (sr->started || sr->stopping)
        return SY_ESTATE;
    sr->started = true;
    evtimer_add(sr->hb_timer, &hb);
    evtimer_add(sr->stats_timer, &st);
    /* Non-blocking connects (a name is looked up on a thread); problems become states. */
    session_connect(sr);
    return 0;
}

static void redis_ack(struct source *src, struct source_record *const *recs, size_t n,
                      enum source_outcome outcome)
{
    struct src_redis *sr = (struct src_redis *)src;

    SRC_REDIS_CHECK(sr, SRC_REDIS_MAGIC);
    if (sr->finished) {
        log_warn("%s %zu acks after stop are dropped; those records come back after the "
                 "visibility timeout",
                 sr->prefix, n);
        return;
    }
    if (sr->mode->done != NULL) {
        sr->mode->done(sr, recs, n, true);
        src_redis_kick(sr);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(recs[i]->id);

        held_del(&sr->held, recs[i]->id, len);
        if (ids_push_copy(&sr->ackq, recs[i]->id, len, 1) != 0)
            log_err("%s out of memory acking %s; it comes back after the visibility timeout",
                    sr->prefix, recs[i]->id);
    }
    src_redis_kick(sr);
}

static void redis_release(struct source *src, struct source_record *const *recs, size_t n)
{
    struct src_redis *sr = (struct src_redis *)src;

    SRC_REDIS_CHECK(sr, SRC_REDIS_MAGIC);
    if (sr->mode->done != NULL) {
        sr->mode->done(sr, recs, n, false);
        src_redis_kick(sr);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(recs[i]->id);

        held_del(&sr->held, recs[i]->id, len);
        if (!sr->finished && ids_push_copy(&sr->relq, recs[i]->id, len, 0) != 0)
            log_err("%s out of memory releasing %s", sr->prefix, recs[i]->id);
    }
    src_redis_kick(sr);
}

static void redis_pause(struct source *src)
{
    struct src_redis *sr = (struct src_redis *)src;

    SRC_REDIS_CHECK(sr, SRC_REDIS_MAGIC);
    sr->paused = true;
}

static void redis_resume(struct source *src)
{
    struct src_redis *sr = (struct src_redis *)src;

    SRC_REDIS_CHECK(sr, SRC_REDIS_MAGIC);
    sr->paused = false;
    sr->room_blocked = false;
    src_redis_kick(sr);
}

static void redis_stop(struct source *src, source_stopped_fn *done, void *arg)
{
    struct src_redis *sr = (struct src_redis *)src;
    struct timeval tv = evhelp_tv_ms(SRC_REDIS_STOP_WAIT_MS);

    SRC_REDIS_CHECK(sr, SRC_REDIS_MAGIC);
    if (sr->stopping) {
        log_err("%s stop() called twice; the second DONE is dropped", sr->prefix);
        return;
    }
    sr->stopping = true;
    sr->stop_done = done;
    sr->stop_arg = arg;
    sr->stop_deadline_ms = time_mono_ms() + SRC_REDIS_STOP_WAIT_MS;
    evtimer_add(sr->stop_timer, &tv);
    src_redis_kick(sr);
}

static void redis_destroy(struct source *src)
{
    struct src_redis *sr = (struct src_redis *)src;

    if (sr == NULL)
        return;
    SRC_REDIS_CHECK(sr, SRC_REDIS_MAGIC);
    sr->finished = true;
    sr->sess = SESS_CLOSED;
    lookup_cancel(sr->lookup);
    sr->lookup = NULL;
    /* The NULL replies land on the queues, freed below. */
    conn_drop(&sr->cmd);
    conn_drop(&sr->blk);
    evhelp_free(&sr->cmd.timer);
    evhelp_free(&sr->blk.timer);
    evhelp_free(&sr->kick);
    evhelp_free(&sr->done_ev);
    evhelp_free(&sr->connect_timer);
    evhelp_free(&sr->retry_timer);
    evhelp_free(&sr->fetch_retry);
    evhelp_free(&sr->ack_retry);
    evhelp_free(&sr->stop_timer);
    evhelp_free(&sr->hb_timer);
    evhelp_free(&sr->stats_timer);
    if (sr->mode != NULL && sr->mode->fini != NULL)
        sr->mode->fini(sr);
    held_free(&sr->held);
    ids_free(&sr->ackq);
    ids_free(&sr->relq);
    url_free(&sr->url);
    free(sr->arn);
    free(sr->json_tail);
    free(sr->receipt_prefix);
    buf_free(&sr->body);
    sr->magic = 0;
    free(sr);
}

static const char *redis_arn(const struct source *src)
{
    return ((const struct src_redis *)src)->arn;
}

static const char *redis_dead_letter(const struct source *src)
{
    return ((const struct src_redis *)src)->cfg->dead_letter;
}

static void redis_stats(const struct source *src, struct source_stats *out)
{
    const struct src_redis *sr = (const struct src_redis *)src;

    out->lag = sr->lag;
    out->reconnects = sr->reconnects;
    out->acks_pending = sr->ackq.acks + sr->relq.acks + sr->acks_on_wire + sr->acks_local;
}

const struct source_ops src_redis_ops = {
    .name = "redis",
    .cfg = &src_redis_kind,
    .create = redis_create,
    .start = redis_start,
    .ack = redis_ack,
    .release = redis_release,
    .pause = redis_pause,
    .resume = redis_resume,
    .stop = redis_stop,
    .destroy = redis_destroy,
    .encode_batch = src_redis_encode_batch,
    .batch_info = src_redis_batch_info,
    .arn = redis_arn,
    .dead_letter = redis_dead_letter,
    .stats = redis_stats,
};
