/*
 * sources/mqtt/mqtt_int.h - what the files of the MQTT source share (never included outside
 * sources/mqtt/ except by tests).
 *
 *   mqtt.c        the ops, the config table and validate(), the connection (one libmosquitto
 *                 client per attempt, driven by core/mosqloop), subscriptions, the gates that
 *                 decide when the socket is read and when acknowledgements may leave, stop
 *   mqtt_spool.c  the durable spool in data_dir (a core/sqlq store: its own thread): load at
 *                 start, insert of what one read brought, delete of what the host acknowledged
 *   mqtt_event.c  the record JSON, encode_batch (`eventSource` + `Records`), batch_info
 *
 * Threads: everything runs on the loop thread that owns the source's event_base, except the
 * spool's store thread (core/sqlq.c), which touches only the `struct src_mqtt_job`s handed to
 * it. Finished jobs come back through an eventfd read on the loop.
 *
 * Ownership: a record the source built is owned by the source (an INSERT job, then the ready
 * queue) until source_deliver() hands it to the host; jobs are owned by the source except
 * between sqlq_submit() and sqlq_take_done(), when the store holds them.
 */
#ifndef SY_SRC_MQTT_INT_H
#define SY_SRC_MQTT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/mosqloop.h"
#include "core/resolve.h"
#include "core/sqlq.h"
#include "sources/source.h"

struct mosquitto;

/* ---- config (`source: mqtt:`) ------------------------------------------------------------- */

enum src_mqtt_proto { SRC_MQTT_V311, SRC_MQTT_V5 };

/* The typed `source: mqtt:` block (owned by the config; borrowed by the source). validate()
 * makes the TLS file paths absolute (against the config file's directory). */
struct src_mqtt_cfg {
    char *url; /* mqtt://HOST[:PORT] or mqtts://HOST[:PORT] */
    char *username;
    char *password;
    struct cfg_strlist topics; /* topic filters, wildcards allowed */
    int qos;                   /* 0, 1 or 2: the subscription's maximum QoS */
    char *client_id;           /* NULL: derived from the mapping (see src_mqtt_create) */
    int clean_session;         /* 0 (default): a persistent session */
    int session_expiry_s;      /* MQTT 5: how long the server keeps the session */
    int protocol;              /* enum src_mqtt_proto */
    char *shared_group;        /* subscribe to $share/GROUP/TOPIC; NULL none */
    int keepalive_s;
    char *ca_file, *cert_file, *key_file; /* mqtts:// only */
    int spool_max_messages;               /* spooled, unacknowledged messages at most */
    int spool_max_mb;                     /* ... and their payload bytes at most */
};

extern const struct cfg_source_kind src_mqtt_kind;
extern const struct source_ops src_mqtt_ops;

/* ---- limits ------------------------------------------------------------------------------- */

#define SRC_MQTT_DEFAULT_PORT 1883
#define SRC_MQTT_DEFAULT_TLS_PORT 8883
#define SRC_MQTT_MISC_MS 250              /* mosquitto_loop_misc() period */
#define SRC_MQTT_BACKOFF_MIN_MS 100       /* reconnect: first delay, doubled ... */
#define SRC_MQTT_BACKOFF_MAX_MS 5000      /* ... up to this */
#define SRC_MQTT_PROBLEM_RETRY_MS 5000    /* a refused session (credentials): retried this slowly */
#define SRC_MQTT_CONNECT_TIMEOUT_MS 10000 /* no CONNACK + SUBACK within this: attempt failed */
#define SRC_MQTT_STOP_WAIT_MS 5000        /* stop(): spool writes and acks get this long */
#define SRC_MQTT_SPOOL_RETRY_MS 500       /* a failed spool transaction is retried after this */
#define SRC_MQTT_DELIVER_MAX 256          /* records handed to the host per call */

/* ---- the spool ---------------------------------------------------------------------------- */

enum src_mqtt_job_kind {
    SRC_MQTT_LOAD,   /* read: every spooled message (start) */
    SRC_MQTT_INSERT, /* write: the messages of one socket read */
    SRC_MQTT_DELETE, /* write: acknowledged by the host */
};

/* One message as the spool stores it (INSERT: borrowed from the record's owner; LOAD: owned). */
struct src_mqtt_msg {
    int64_t id; /* the spool's key: the record's messageId */
    char *topic;
    char *payload;
    size_t len;
    int qos, retain, packet_id;
    int64_t received_ms;
    char *props; /* userProperties as JSON text ("[...]") */
};

struct src_mqtt_job {
    struct sqlq_job j; /* first: the store hands back sqlq_job pointers */
    unsigned magic;
    enum src_mqtt_job_kind kind;
    uint64_t gen;                /* INSERT: the connection the messages came on */
    struct src_mqtt_msg *msgs;   /* INSERT, LOAD (LOAD: owned, strings too) */
    struct source_record **recs; /* INSERT: the records (owned until delivered) */
    size_t n, cap;
    int64_t *ids; /* DELETE */
    size_t n_ids;
    size_t bytes; /* INSERT, DELETE: payload bytes */
};

/* ---- the source --------------------------------------------------------------------------- */

enum src_mqtt_conn {
    SRC_MQTT_IDLE,        /* not started, or the spool is still loading */
    SRC_MQTT_RESOLVING,   /* looking the host name up */
    SRC_MQTT_CONNECTING,  /* CONNECT sent, waiting for CONNACK */
    SRC_MQTT_SUBSCRIBING, /* SUBSCRIBE sent, waiting for SUBACK */
    SRC_MQTT_UP,          /* subscribed: messages flow */
    SRC_MQTT_WAITING,     /* backoff before the next attempt */
};

struct src_mqtt {
    struct source base; /* first: source.c casts */
    unsigned magic;
    const struct src_mqtt_cfg *cfg; /* borrowed */
    struct event_base *evb;         /* borrowed */
    char prefix[96];                /* "[source:mqtt:MAPPING]" */
    char *host;                     /* owned; without brackets */
    int port;
    bool tls, host_numeric;
    char *client_id; /* owned */
    char *endpoint;  /* "mqtt://host:port" (no credentials): the ARN slot and Endpoints */
    char **subs;     /* the subscription filters ($share/G/T or T), owned */
    size_t n_subs;

    /* The connection. */
    struct mosqloop ml;
    struct mosquitto *mosq; /* owned; NULL outside an attempt */
    enum src_mqtt_conn conn;
    uint64_t gen; /* bumped with every client */
    struct resolve *res;
    char addrs[RESOLVE_MAX_ADDRS][INET6_ADDRSTRLEN];
    int n_addrs, next_addr;
    int backoff_ms;
    bool refused; /* the server refused the session (CONNACK): retry slowly */
    bool ever_up;
    struct event *timer; /* backoff / attempt timeout */
    uint64_t reconnects;
    char why[300];     /* why the last attempt failed */
    char lib_err[200]; /* libmosquitto's last error log line of this client ("" none) */

    /* The spool. */
    struct sqlq *sq;
    int efd; /* eventfd: the store -> the loop */
    struct event *eev;
    char *spool_path;
    bool loaded;                     /* the LOAD job came back */
    struct src_mqtt_job *load_retry; /* a LOAD that failed, submitted again by the timer */
    int64_t next_id;                 /* the next message's spool id */
    size_t spool_n, spool_bytes;     /* stored or being stored, not yet deleted */
    size_t commits_cur;              /* INSERT jobs of the current client not yet committed */
    size_t jobs_out;                 /* jobs with the store */
    struct src_mqtt_job *building;   /* the INSERT job the current read fills, or NULL */
    int store_err;                   /* sqlq_health() last seen */
    char store_why[256];

    /* Records committed and not yet handed to the host, in order. */
    struct source_record **ready;
    size_t ready_head, ready_n, ready_cap;

    struct event *kick; /* deliver, on a clean stack */
    bool started, paused, stopping, finished;
    struct event *stop_timer, *done_ev;
    source_stopped_fn *stop_done;
    void *stop_arg;
    int64_t stop_deadline_ms;
};

/* ---- mqtt.c ------------------------------------------------------------------------------- */

/* Recompute the read / write gates and re-arm the socket's events. */
void src_mqtt_gates(struct src_mqtt *mq);

/* Run the delivery pump on the next loop turn. */
void src_mqtt_kick(struct src_mqtt *mq);

/* ---- mqtt_spool.c ------------------------------------------------------------------------- */

/* Create the store (data_dir/mqtt/MAPPING.db), start its thread, submit the LOAD job. 0 or a
 * negative SY_E* with ERR filled. */
int src_mqtt_spool_start(struct src_mqtt *mq, struct sy_error *err);

/* Add the message to the INSERT job of the current read (made when needed); takes REC. 0 or
 * SY_ENOMEM (then REC is freed and the message is not acknowledged: see on_message). */
int src_mqtt_spool_add(struct src_mqtt *mq, const struct src_mqtt_msg *m,
                       struct source_record *rec);

/* Submit the INSERT job of the current read, if any (after mosquitto_loop_read()). */
void src_mqtt_spool_flush(struct src_mqtt *mq);

/* Delete RECS (acknowledged by the host) from the spool. */
void src_mqtt_spool_delete(struct src_mqtt *mq, struct source_record *const *recs, size_t n);

/* Stop the store thread (bounded) and free it; jobs still out are freed. */
void src_mqtt_spool_close(struct src_mqtt *mq, int timeout_ms);

/* Loop side of the eventfd: defined in mqtt.c (finished jobs, health). */
void src_mqtt_jobs_done(struct src_mqtt *mq, struct src_mqtt_job *jobs);

void src_mqtt_job_free(struct src_mqtt_job *job);

/* ---- mqtt_event.c ------------------------------------------------------------------------- */

/* The record of M (id = M->id; RECEIVES: its receive count). Returns new, or NULL. */
struct source_record *src_mqtt_record_new(const struct src_mqtt_msg *m, uint32_t receives);

/* userProperties of a v5 PUBLISH as JSON text ("[...]"), new; "[]" when none. NULL: ENOMEM. */
char *src_mqtt_props_json(const void *props);

int src_mqtt_encode_batch(struct source *src, struct source_record *const *recs, size_t n,
                          struct buf *out);
int src_mqtt_batch_info(struct source *src, struct source_record *const *recs, size_t n,
                        struct buf *out);

#endif
