/*
 * destinations/dest.h - destinations: where the async queue sends destination records
 * (on_success / on_failure) and dead letters, addressed by URI, behind one vtable.
 *
 *   file:DIR                          one JSON file per message (temp name, then rename)
 *   redis://HOST:PORT/list/KEY        RPUSH of one JSON string
 *   redis://HOST:PORT/stream/KEY      XADD KEY * body <json> [attribute fields]
 *   kafka://HOST:PORT[,HOST:PORT]/TOPIC  one message (key = the message key, attributes as headers)
 *   mqtt://HOST:PORT/TOPIC            one QoS 1 publish (MQTT v5; attributes as user properties)
 *   http://... https://...            one POST (attributes as X-Sy-Attribute-<Name> headers)
 *   function:NAME                     handled by the async queue itself (an Event invoke of NAME)
 *
 * Contract of every kind (the async queue relies on it):
 *   - Everything runs on the loop thread that owns BASE; nothing blocks it (file I/O runs on a
 *     worker thread of its own, network I/O is non-blocking).
 *   - dest_send() copies what it needs from the message before returning. It returns 0 and
 *     later calls DONE exactly once, on the loop, never from inside dest_send(); or it returns a
 *     negative SY_E* and DONE is never called.
 *   - DONE(arg, 0, NULL) means the message is stored by the destination (acknowledged: file
 *     renamed, Redis reply received, Kafka delivery report OK, MQTT PUBACK, HTTP 2xx).
 *     DONE(arg, SY_E*, "reason") means it is not; the caller keeps the message and retries later.
 *   - Every send is bounded: no acknowledgement within DEST_SEND_TIMEOUT_MS -> DONE with
 *     SY_ETIMEDOUT.
 *   - A destination that is down is reconnected on its own, with backoff; sends while it is
 *     down fail fast (DONE with SY_EIO "not connected: ...") rather than queue without bound.
 *   - dest_destroy() calls DONE(arg, SY_ECANCELED, "destination closed") for every send still
 *     pending, before it returns, then frees everything.
 */
#ifndef SY_DEST_H
#define SY_DEST_H

#include <stddef.h>
#include <stdint.h>

#include "core/errors.h"

struct event_base;
struct dest;

#define DEST_SEND_TIMEOUT_MS 10000

/* One message attribute (the dead-letter attributes RequestID, ErrorCode, ErrorMessage). */
struct dest_attr {
    const char *name;
    const char *value;
    int is_number; /* the value is a decimal number (SQS "Number"), else a string */
};

/* One message. Borrowed by dest_send() for the duration of the call only. */
struct dest_msg {
    const char *body; /* JSON text (a destination record, or the original event) */
    size_t len;
    const char *key; /* the request id: Kafka key, file name stem, for logs */
    /* Keyed kinds (dest_ops.keyed) use these as the message key instead of KEY when
     * USE_PKEY is set: PKEY[0..PKEY_LEN) (any bytes), or no key at all when PKEY is NULL (the
     * default partitioner picks the partition). */
    const void *pkey;
    size_t pkey_len;
    int use_pkey;
    const struct dest_attr *attrs; /* NULL/0 for destination records */
    size_t n_attrs;
};

/*
 * Where the attributes go, for kinds that have no native place for them (file, redis list):
 * the message is wrapped as {"body": <body as JSON>, "attributes": {NAME: VALUE, ...}}
 * (numbers as JSON numbers). Kinds with native attributes (stream fields, Kafka headers, MQTT
 * user properties, HTTP headers) send the body unchanged.
 */

/* Called exactly once per accepted send, on the loop. ERRMSG is borrowed (NULL when RC == 0). */
typedef void dest_done_fn(void *arg, int rc, const char *errmsg);

/* The vtable every kind implements (dest_<kind>.c exports one `const struct dest_ops`). */
struct dest_ops {
    const char *scheme; /* "file", "redis", "kafka", "mqtt", "http", "https" */
    /* Messages have a partitioning key (Kafka): a mapping whose source can name a record's own
     * key sends its on-failure records one per failed record, keyed by it (Lambda's Kafka-topic
     * on-failure destination). */
    int keyed;
    /* Parse URI (already validated by config/) and set up; connecting may continue later. */
    int (*create)(struct event_base *base, const char *uri, struct dest **out,
                  struct sy_error *err);
    int (*send)(struct dest *d, const struct dest_msg *msg, dest_done_fn *done, void *arg);
    /* A one-line state for /healthz and logs ("connected", "reconnecting: ..."); borrowed. */
    const char *(*state)(const struct dest *d);
    void (*destroy)(struct dest *d);
};

/* Every destination starts with this header (the vtable and counters the core reads). */
struct dest {
    const struct dest_ops *ops;
    char *uri;               /* owned */
    uint64_t sent, failures; /* messages acknowledged / sends that failed */
};

extern const struct dest_ops dest_file_ops;
extern const struct dest_ops dest_redis_ops;
extern const struct dest_ops dest_kafka_ops;
extern const struct dest_ops dest_mqtt_ops;
extern const struct dest_ops dest_http_ops; /* http:// and https:// */

/*
 * Open the destination for URI (any scheme above but function:). Returns 0 with *OUT set
 * (free with dest_destroy()) or a negative SY_E* with ERR filled.
 */
int dest_open(struct event_base *base, const char *uri, struct dest **out, struct sy_error *err);

/* Send MSG through D (see the contract above). */
int dest_send(struct dest *d, const struct dest_msg *msg, dest_done_fn *done, void *arg);

/* D's one-line state (borrowed). */
const char *dest_state(const struct dest *d);

/* Close D (pending sends get DONE with SY_ECANCELED first). NULL is a no-op. */
void dest_destroy(struct dest *d);

/*
 * The envelope described above, for kinds without native attributes. Returns new (caller
 * frees; *LEN set) or NULL when out of memory. With no attributes, a copy of the body.
 */
char *dest_envelope(const struct dest_msg *msg, size_t *len);

#endif
