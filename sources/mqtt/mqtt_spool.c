/*
 * sources/mqtt/mqtt_spool.c - the MQTT source's durable spool: data_dir/mqtt/MAPPING.db, one
 * table, on a core/sqlq store (its own thread, group commit, failed transactions kept and
 * retried every SRC_MQTT_SPOOL_RETRY_MS).
 *
 *   spool(id INTEGER PRIMARY KEY, topic, qos, retain, packet_id, received_ms, payload BLOB,
 *         props)
 *
 * A row is a message received and not yet acknowledged by the host: inserted (one transaction
 * per group of socket reads) before the server is acknowledged, deleted once the host acks it
 * (DONE or DISCARD). At start every row is read back (LOAD) and delivered again.
 *
 * Durability is core/sqlq's: WAL with synchronous=NORMAL, which survives kill -9 of the broker
 * (a committed transaction is in the WAL file, in the page cache); `broker.durability: fsync`
 * makes it synchronous=FULL, which also survives a power cut.
 *
 * Threads: the functions here run on the loop; the jobs' run functions (run_*) on the store
 * thread, where they touch only their job.
 */
#include "mqtt_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <sqlite3.h>

#include "core/log.h"

#define SRC_MQTT_JOB_MAGIC 0x4d514a42u /* "MQJB" */

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS spool("
    " id INTEGER PRIMARY KEY, topic TEXT NOT NULL, qos INTEGER NOT NULL,"
    " retain INTEGER NOT NULL, packet_id INTEGER NOT NULL, received_ms INTEGER NOT NULL,"
    " payload BLOB NOT NULL, props TEXT NOT NULL);";

static const char sql_insert[] = "INSERT INTO spool(id, topic, qos, retain, packet_id, "
                                 "received_ms, payload, props) VALUES(?,?,?,?,?,?,?,?)";
static const char sql_delete[] = "DELETE FROM spool WHERE id = ?";
static const char sql_load[] = "SELECT id, topic, qos, retain, packet_id, received_ms, payload, "
                               "props FROM spool ORDER BY id";

void src_mqtt_job_free(struct src_mqtt_job *job)
{
    if (job == NULL)
        return;
    for (size_t i = 0; i < job->n; i++) {
        free(job->msgs[i].topic);
        free(job->msgs[i].props);
        if (job->kind == SRC_MQTT_LOAD)
            free(job->msgs[i].payload);
        if (job->recs != NULL)
            source_record_free(job->recs[i]);
    }
    free(job->msgs);
    free(job->recs);
    free(job->ids);
    job->magic = 0;
    free(job);
}

static void job_free_cb(struct sqlq_job *j, void *arg)
{
    (void)arg;
    src_mqtt_job_free((struct src_mqtt_job *)j);
}

static struct src_mqtt_job *job_new(enum src_mqtt_job_kind kind)
{
    struct src_mqtt_job *job = calloc(1, sizeof(*job));

    if (job == NULL)
        return NULL;
    job->magic = SRC_MQTT_JOB_MAGIC;
    job->kind = kind;
    return job;
}

/* ---- the store thread ----------------------------------------------------------------- */

static int run_insert(struct sqlq *q, sqlite3 *db, struct src_mqtt_job *job)
{
    int rc = SQLITE_OK;

    (void)db;
    for (size_t i = 0; i < job->n && rc == SQLITE_OK; i++) {
        const struct src_mqtt_msg *m = &job->msgs[i];
        sqlite3_stmt *s = sqlq_stmt(q, sql_insert, &rc);

        if (s == NULL)
            break;
        sqlite3_bind_int64(s, 1, m->id);
        sqlite3_bind_text(s, 2, m->topic, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 3, m->qos);
        sqlite3_bind_int(s, 4, m->retain);
        sqlite3_bind_int(s, 5, m->packet_id);
        sqlite3_bind_int64(s, 6, m->received_ms);
        sqlite3_bind_blob64(s, 7, m->len > 0 ? m->payload : "", m->len, SQLITE_STATIC);
        sqlite3_bind_text(s, 8, m->props != NULL ? m->props : "[]", -1, SQLITE_STATIC);
        rc = sqlite3_step(s);
        /* A message stored before a crash and received again keeps its first row (the same
         * id cannot come twice: ids only grow). */
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
        sqlite3_reset(s);
    }
    return rc;
}

static int run_delete(struct sqlq *q, struct src_mqtt_job *job)
{
    int rc = SQLITE_OK;

    for (size_t i = 0; i < job->n_ids && rc == SQLITE_OK; i++) {
        sqlite3_stmt *s = sqlq_stmt(q, sql_delete, &rc);

        if (s == NULL)
            break;
        sqlite3_bind_int64(s, 1, job->ids[i]);
        rc = sqlite3_step(s);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
        sqlite3_reset(s);
    }
    return rc;
}

static char *col_dup(sqlite3_stmt *s, int i, size_t *len)
{
    const void *p = sqlite3_column_blob(s, i);
    size_t n = (size_t)sqlite3_column_bytes(s, i);
    char *d = malloc(n + 1);

    if (d == NULL)
        return NULL;
    if (n > 0)
        memcpy(d, p, n);
    d[n] = '\0';
    if (len != NULL)
        *len = n;
    return d;
}

static int run_load(struct sqlq *q, struct src_mqtt_job *job)
{
    int rc;
    sqlite3_stmt *s = sqlq_stmt(q, sql_load, &rc);

    if (s == NULL)
        return rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct src_mqtt_msg *m;

        if (job->n == job->cap) {
            size_t cap = job->cap ? job->cap * 2 : 64;
            struct src_mqtt_msg *v = realloc(job->msgs, cap * sizeof(*v));

            if (v == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }
            job->msgs = v;
            job->cap = cap;
        }
        m = &job->msgs[job->n];
        memset(m, 0, sizeof(*m));
        m->id = sqlite3_column_int64(s, 0);
        m->topic = col_dup(s, 1, NULL);
        m->qos = sqlite3_column_int(s, 2);
        m->retain = sqlite3_column_int(s, 3);
        m->packet_id = sqlite3_column_int(s, 4);
        m->received_ms = sqlite3_column_int64(s, 5);
        m->payload = col_dup(s, 6, &m->len);
        m->props = col_dup(s, 7, NULL);
        job->n++;
        if (m->topic == NULL || m->payload == NULL || m->props == NULL) {
            rc = SQLITE_NOMEM;
            break;
        }
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int run_job(struct sqlq *q, sqlite3 *db, struct sqlq_job *j, void *arg)
{
    struct src_mqtt_job *job = (struct src_mqtt_job *)j;

    (void)arg;
    SY_ASSERT(job->magic == SRC_MQTT_JOB_MAGIC);
    switch (job->kind) {
    case SRC_MQTT_INSERT:
        return run_insert(q, db, job);
    case SRC_MQTT_DELETE:
        return run_delete(q, job);
    case SRC_MQTT_LOAD:
        return run_load(q, job);
    }
    return SQLITE_INTERNAL;
}

/* ---- the loop side ---------------------------------------------------------------------- */

static void on_store(evutil_socket_t fd, short what, void *arg)
{
    struct src_mqtt *mq = arg;
    uint64_t v;

    (void)what;
    /* Read the eventfd before taking the list (see sqlq.h). */
    if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        log_err("%s spool: reading the eventfd: %s", mq->prefix, strerror(errno));
    src_mqtt_jobs_done(mq, (struct src_mqtt_job *)sqlq_take_done(mq->sq));
}

static void submit(struct src_mqtt *mq, struct src_mqtt_job *job)
{
    job->j.run = run_job;
    job->j.next = NULL;
    mq->jobs_out++;
    sqlq_submit(mq->sq, &job->j);
}

int src_mqtt_spool_start(struct src_mqtt *mq, struct sy_error *err)
{
    const char *dd = mq->base.ctx->data_dir;
    struct sqlq_conf conf = {0};
    struct src_mqtt_job *load;
    char dir[4200];
    int rc;

    /* Two small syscalls on the loop, like the other sources' state files; the database itself
     * is opened (and written) by the store thread. */
    snprintf(dir, sizeof(dir), "%s/mqtt", dd != NULL ? dd : ".");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        sy_error_set(err, "cannot create %s: %s", dir, strerror(errno));
        return SY_EIO;
    }
    if (asprintf(&mq->spool_path, "%s/%s.db", dir, mq->base.ctx->mapping) < 0) {
        mq->spool_path = NULL;
        sy_error_set(err, "out of memory");
        return SY_ENOMEM;
    }
    conf.path = mq->spool_path;
    conf.schema = schema;
    conf.tag = mq->prefix;
    conf.thread = "sy-mqtt-spool";
    conf.fsync = mq->base.ctx->fsync;
    conf.retry_ms = SRC_MQTT_SPOOL_RETRY_MS;
    conf.free_job = job_free_cb;
    mq->sq = sqlq_create(&conf, err);
    if (mq->sq == NULL)
        return SY_ENOMEM;
    mq->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (mq->efd < 0) {
        sy_error_set(err, "eventfd: %s", strerror(errno));
        return SY_EIO;
    }
    mq->eev = event_new(mq->evb, mq->efd, EV_READ | EV_PERSIST, on_store, mq);
    if (mq->eev == NULL || event_add(mq->eev, NULL) != 0) {
        sy_error_set(err, "cannot watch the spool's eventfd");
        return SY_EIO;
    }
    rc = sqlq_start(mq->sq, mq->efd, err);
    if (rc != 0)
        return rc;
    load = job_new(SRC_MQTT_LOAD);
    if (load == NULL) {
        sy_error_set(err, "out of memory");
        return SY_ENOMEM;
    }
    submit(mq, load);
    return 0;
}

int src_mqtt_spool_add(struct src_mqtt *mq, const struct src_mqtt_msg *m, struct source_record *rec)
{
    struct src_mqtt_job *job = mq->building;
    struct src_mqtt_msg *d;

    if (job == NULL) {
        job = mq->building = job_new(SRC_MQTT_INSERT);
        if (job == NULL) {
            source_record_free(rec);
            return SY_ENOMEM;
        }
        job->gen = mq->gen;
    }
    if (job->n == job->cap) {
        size_t cap = job->cap ? job->cap * 2 : 16;
        struct src_mqtt_msg *v = realloc(job->msgs, cap * sizeof(*v));
        struct source_record **r;

        if (v == NULL) {
            source_record_free(rec);
            return SY_ENOMEM;
        }
        job->msgs = v;
        r = realloc(job->recs, cap * sizeof(*r));
        if (r == NULL) {
            source_record_free(rec);
            return SY_ENOMEM;
        }
        job->recs = r;
        job->cap = cap;
    }
    d = &job->msgs[job->n];
    *d = *m;
    d->topic = strdup(m->topic);
    d->props = strdup(m->props != NULL ? m->props : "[]");
    if (d->topic == NULL || d->props == NULL) {
        free(d->topic);
        free(d->props);
        source_record_free(rec);
        return SY_ENOMEM;
    }
    /* The payload is the record's copy, which the job owns with the record. */
    d->payload = (char *)rec->data;
    job->recs[job->n++] = rec;
    job->bytes += m->len;
    mq->spool_n++;
    mq->spool_bytes += m->len;
    return 0;
}

void src_mqtt_spool_flush(struct src_mqtt *mq)
{
    struct src_mqtt_job *job = mq->building;

    if (job == NULL)
        return;
    mq->building = NULL;
    job->j.flags = SQLQ_WRITE; /* never MAY_FAIL: retried until it is stored */
    if (job->gen == mq->gen)
        mq->commits_cur++;
    submit(mq, job);
}

void src_mqtt_spool_delete(struct src_mqtt *mq, struct source_record *const *recs, size_t n)
{
    struct src_mqtt_job *job;

    if (n == 0 || mq->sq == NULL)
        return;
    job = job_new(SRC_MQTT_DELETE);
    if (job != NULL)
        job->ids = malloc(n * sizeof(*job->ids));
    if (job == NULL || job->ids == NULL) {
        /* The rows stay: delivered again after a restart (at-least-once). */
        log_err("%s out of memory deleting %zu acknowledged messages from the spool; they are "
                "delivered again after a restart",
                mq->prefix, n);
        src_mqtt_job_free(job);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        job->ids[i] = strtoll(recs[i]->id, NULL, 10);
        job->bytes += recs[i]->data_len;
    }
    job->n_ids = n;
    job->j.flags = SQLQ_WRITE;
    submit(mq, job);
}

void src_mqtt_spool_close(struct src_mqtt *mq, int timeout_ms)
{
    struct sqlq_job *left;

    if (mq->sq != NULL) {
        sqlq_stop(mq->sq, timeout_ms);
        left = sqlq_take_done(mq->sq);
        while (left != NULL) {
            struct sqlq_job *next = left->next;

            src_mqtt_job_free((struct src_mqtt_job *)left);
            left = next;
        }
        sqlq_destroy(mq->sq);
        mq->sq = NULL;
    }
    src_mqtt_job_free(mq->building);
    mq->building = NULL;
    if (mq->eev != NULL)
        event_free(mq->eev);
    mq->eev = NULL;
    if (mq->efd >= 0)
        close(mq->efd);
    mq->efd = -1;
}
