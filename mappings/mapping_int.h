/*
 * mappings/mapping_int.h - the bodies shared by the files of mappings/ (not an API).
 *
 *   mapping.c     the lifecycle of the mappings, the source host, info and update
 *   batcher.c     pending records -> batches (size, window, 6 MB cap) and the dispatch
 *   checkpoint.c  outcomes: ack, partial failures, bisect, retries, age, on-failure, dead letters
 *   mapstate.c    data_dir/mappings.json (what the API changed), written off the loop
 *
 * A record is held by exactly one of: the mapping's `pending` FIFO, one batch (ready, in
 * flight, or waiting for its retry), or one outgoing message (on-failure / dead letter). It is
 * acknowledged to the source and freed by whoever holds it last (rec_finish()).
 */
#ifndef SY_MAPPING_INT_H
#define SY_MAPPING_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "mapping.h"
#include "filter.h"
#include "dispatcher/dispatcher.h"
#include "sources/source.h"

struct dest;
struct event;
struct function;

#define MAPPING_MAGIC 0x4d415050u /* "MAPP" */
#define BATCH_MAGIC 0x42415443u   /* "BATC" */
#define OUTMSG_MAGIC 0x4f55544du  /* "OUTM" */

/* What a batch is waiting for. */
enum batch_state {
    BATCH_READY,   /* formed, waiting for a concurrency slot */
    BATCH_RUNNING, /* invoked, waiting for the outcome */
    BATCH_WAITING, /* failed, waiting for its retry time */
};

struct batch {
    unsigned magic;
    struct mapping *map;
    enum batch_state state;
    struct source_record **recs; /* delivery order */
    size_t n;
    size_t bytes;   /* sum of the records' JSON */
    int64_t due_ms; /* BATCH_WAITING: monotonic time of the retry */
    int bisected;   /* made by splitting a failed batch */
    TAILQ_ENTRY(batch) link;
};
TAILQ_HEAD(batch_list, batch);

/* One on-failure record or dead letter on its way to a destination. */
struct outmsg {
    unsigned magic;
    struct mapping *map;
    struct dest *dst; /* borrowed from the mapping */
    char *body;       /* owned */
    size_t len;
    char key[64];
    char reason[512];
    int is_dead_letter;
    int use_pkey; /* a keyed destination's message key is PKEY (the record's own key) */
    char *pkey;   /* owned; NULL: the record has no key */
    size_t pkey_len;
    struct source_record **recs; /* acknowledged (DISCARD) once stored */
    size_t n;
    unsigned tries;
    struct event *retry_ev;
    TAILQ_ENTRY(outmsg) link;
};
TAILQ_HEAD(outmsg_list, outmsg);

/* Records set aside for the mapping's next turn (owned: the array and the records). */
struct recvec {
    struct source_record **v;
    size_t n, cap;
};

enum map_state {
    MAP_DISABLED,
    MAP_ENABLING,
    MAP_ENABLED,
    MAP_DISABLING,
};

struct mapping {
    unsigned magic;
    struct mappings *ms;
    const struct cfg_mapping *cfg;
    struct function *fn;
    char uuid[37];
    char *function_arn; /* owned */
    char arn[300];      /* the source's EventSourceArn */

    /* The live settings: the config's, changed by mapping_update(). */
    int batch_size;
    int window_ms;
    int max_conc;
    int max_retry;
    int max_age_s;
    int bisect;
    int report_failures;
    char **filters; /* owned copies */
    size_t n_filters;
    struct filter *filter;

    /* The source, while enabled. */
    struct source_ctx ctx;
    struct source *src;
    struct dest *on_failure;  /* owned; NULL if none */
    struct dest *dead_letter; /* owned; NULL if none */
    enum map_state state;
    int want_enabled; /* what the last update or the config asked for */
    char state_reason[64];
    char last_result[300];
    double last_modified;
    int paused;
    int warned_bif; /* the batchItemFailures-without-reporting warning was given */

    /* Records held. */
    struct source_record *pend_head, *pend_tail;
    size_t pend_n, pend_bytes;
    int64_t pend_first_ms;     /* when the oldest pending record arrived (monotonic) */
    struct batch_list ready;   /* formed batches (retries and bisected halves first) */
    struct batch_list waiting; /* failed batches by due time */
    struct batch_list running;
    struct outmsg_list out;
    size_t held_n, held_bytes;
    size_t max_held, max_held_bytes;
    struct source_record *dl_head, *dl_tail; /* for the dead letter, next kick */
    struct recvec acks;                      /* filtered records to acknowledge (DONE), next turn */
    struct recvec revoked; /* records of revoked partitions to release, next turn */
    unsigned char *blk;    /* ordered sources: per partition, 1 when a batch holds it (batcher) */
    size_t n_blk;

    struct event *kick_ev; /* deferred dispatch (manual activation) */
    int kick_pending;
    struct event *window_ev; /* batching window */
    struct event *retry_ev;  /* earliest waiting batch */
    int throttle_ms;         /* current throttle backoff, 0 when none */
    int64_t throttle_until;

    /* Stopping (disable or drain). */
    void (*stopped_cb)(struct mapping *map);
    int stopping;
    int src_stopping;
    int src_done; /* the source's stop() called back: finish on the next kick */

    struct mapping_counters c;
    char source_state[300];
};

struct mappings {
    struct event_base *base;
    const struct cfg *cfg;
    struct dispatcher *dsp;
    struct mapping *maps;
    size_t n;
    char *state_path; /* data_dir/mappings.json */
    void (*drain_done)(void *arg);
    void *drain_arg;
    size_t draining_left;
    int draining;
};

/* mapping.c */
int mapping_enable(struct mapping *map, struct sy_error *err);
void mapping_kick(struct mapping *map);
void mapping_held_sub(struct mapping *map, const struct source_record *rec);
void mapping_maybe_stopped(struct mapping *map);

/* batcher.c */
void batcher_run(struct mapping *map);
void batch_free(struct batch *b);
struct batch *batch_new(struct mapping *map, size_t cap);
void batcher_window_cb(int fd, short what, void *arg);
void batcher_retry_cb(int fd, short what, void *arg);
void batcher_schedule_retry(struct mapping *map);

/* checkpoint.c */
void checkpoint_outcome(struct batch *b, const struct invoke_result *res);
void checkpoint_ack(struct mapping *map, struct source_record **recs, size_t n,
                    enum source_outcome outcome);
/* Out of memory: free RECS[0..N) without acknowledging them (the source gives them again),
 * logged once as WHAT ("for a dead letter"). The array is borrowed. */
void checkpoint_drop(struct mapping *map, struct source_record **recs, size_t n, const char *what);
void checkpoint_dead_letter(struct mapping *map, struct source_record *rec, const char *reason);
void checkpoint_give_up(struct mapping *map, struct source_record **recs, size_t n,
                        const char *condition, const char *request_id, const char *error_type,
                        const char *error_msg, unsigned attempts);
void outmsg_free(struct outmsg *om);

/* mapstate.c */
int mapstate_load(struct mappings *ms);
void mapstate_save(struct mappings *ms);
void mapstate_flush(void);

#endif
