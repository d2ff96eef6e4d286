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
struct json_t;

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
    const struct cfg_mapping *cfg; /* borrowed (mappings_add()), or own_cfg */
    struct cfg_mapping *own_cfg;   /* owned: made through the API (mappings_create_def()) */
    struct json_t *def;            /* owned: the API's definition, for mappings.json; or NULL */
    struct function *fn;           /* the $LATEST unit of the function; NULL: none (yet) */
    char *fname;                   /* owned: the function's name (cfg->function before ':') */
    char *qualifier;               /* owned: the version or alias after ':'; NULL: none */
    char route_problem[300];       /* why the last batch found no unit to run on; "" none */
    char uuid[37];
    char *function_arn; /* owned; qualified when the mapping is */
    char arn[300];      /* the source's EventSourceArn */
    char src_id[600];   /* the source as the duplicate check compares it (kind, then the
                           EventSourceArn, or the endpoints and topics of a self-managed one) */

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

    /* Stopping (disable, drain or removal). */
    int stopping;
    int src_stopping;
    int src_done;   /* the source's stop() called back: finish on the next kick */
    int closing;    /* drain or removal: once stopped it is never enabled again */
    int drain_wait; /* mappings_drain() waits for it */
    int removing;   /* mapping_remove(): freed once stopped */
    void (*removed_done)(void *arg);
    void *removed_arg;
    TAILQ_ENTRY(mapping) reap_link; /* removed, on ms->reaped until freed */

    struct mapping_counters c;
    char source_state[300];
};

TAILQ_HEAD(mapping_list, mapping);

struct mappings {
    struct event_base *base;
    const struct cfg *cfg;
    struct dispatcher *dsp;
    struct mapping **maps; /* the file's in its order, then those made at run time (owned) */
    size_t n, cap;
    struct mapping_list reaped; /* removed: freed (and told) by reap_ev on a later turn */
    struct event *reap_ev;
    struct json_t *unloaded; /* definitions of mappings.json that could not be made again at
                                start (kept, and written back, so that none is lost) */
    char *state_path;        /* data_dir/mappings.json */
    void (*drain_done)(void *arg);
    void *drain_arg;
    size_t draining_left;
    int draining;
    int started; /* mappings_start() ran: a mapping added now starts at once */
};

/* mapping.c */
int mapping_enable(struct mapping *map, struct sy_error *err);
void mapping_kick(struct mapping *map);
void mapping_held_sub(struct mapping *map, const struct source_record *rec);
void mapping_maybe_stopped(struct mapping *map);
/* Build a mapping of MC (borrowed), neither listed nor started. NULL with ERR filled. */
struct mapping *mapping_new(struct mappings *ms, const struct cfg_mapping *mc,
                            struct sy_error *err);
/* Free MAP (not listed any more), what it still holds unacknowledged, and what it owns. */
void mapping_free(struct mapping *map);
/* List MAP last and start it when the mappings run. Returns 0 or SY_ENOMEM (MAP untouched). */
int mappings_insert(struct mappings *ms, struct mapping *map);
/*
 * The mapping of definition DEF (JSON text, LEN bytes; WHAT names it in messages), built but
 * neither listed, started, checked against the others' sources nor saved: what
 * mappings_create_def() and mapstate_load() share. It owns its parsed config and DEF's JSON.
 * Returns 0 with *OUT new; SY_EINVAL (ERRS and ERR filled); SY_EEXIST (ERR filled; *OUT is the
 * mapping that has the name).
 */
int mappings_make_def(struct mappings *ms, const char *what, const char *def, size_t len,
                      struct mapping **out, struct cfg_errors *errs, struct sy_error *err);

/* batcher.c */
void batcher_run(struct mapping *map);
/* Hold MAP's dispatch back for the throttle pause (50 ms doubling to 1 s; no attempt used). */
void batcher_hold_back(struct mapping *map);
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
/* VERSION: the executedVersion of the last invocation ("$LATEST", a version), NULL: none ran. */
void checkpoint_give_up(struct mapping *map, struct source_record **recs, size_t n,
                        const char *condition, const char *request_id, const char *version,
                        const char *error_type, const char *error_msg, unsigned attempts);
void outmsg_free(struct outmsg *om);

/* mapstate.c */
/* Read mappings.json (before the loop runs): make the API's mappings again (after the file's),
 * then apply the saved enabled states. 0, or -1 when the file cannot be read (logged). */
int mapstate_load(struct mappings *ms);
/* Write the state of MS (off the loop: see mapstate.c). */
void mapstate_save(struct mappings *ms);
void mapstate_flush(void);

#endif
