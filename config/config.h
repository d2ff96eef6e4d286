/*
 * config/config.h - the typed, validated configuration (the API of config/).
 *
 * cfg_load() turns a switchyard.yaml into a `struct cfg`. Every value in it has been
 * interpolated (${VAR}, ${VAR:-default}), defaulted, range-checked and cross-validated, so the
 * rest of the broker never re-checks it. Paths are absolute (resolved against the directory of
 * the config file).
 *
 * Ownership: a `struct cfg` owns every string and array reachable from it; cfg_destroy() frees
 * them all. Nothing here is loop-bound: cfg_load() does blocking file I/O and is meant to run
 * before the loop starts, or (SIGHUP reload, later) off the hot path.
 */
#ifndef SY_CONFIG_H
#define SY_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "cfg_field.h"

/*
 * The runtime families a function may declare (`runtime:`). Each family is one bootstrap; the
 * identifiers accepted for it (the plain names below and Lambda's, python3.12, nodejs20.x,
 * provided.al2023...) are listed by cfg_runtime_accepted().
 */
enum cfg_runtime {
    CFG_RUNTIME_PYTHON3,  /* runtimes/python3/bootstrap.py, handler `module.function` */
    CFG_RUNTIME_NODE,     /* runtimes/node/bootstrap.js, handler `module.function` */
    CFG_RUNTIME_SHELL,    /* runtimes/shell/bootstrap.sh, handler `file.function` (a shell function) */
    CFG_RUNTIME_PROVIDED, /* the code dir's executable `bootstrap` */
};

/* `broker.durability`. */
enum cfg_durability {
    CFG_DURABILITY_CRASH, /* survives kill -9 of the broker */
    CFG_DURABILITY_FSYNC, /* also survives power loss */
};

/* One `NAME: value` pair of a function's `environment:` map, in file order. */
struct cfg_env_var {
    char *name;
    char *value;
};

/* Lambda's limit on the layers of one function. */
#define CFG_LAYERS_MAX 5

/*
 * `functions.NAME.async:` - the asynchronous invocation policy. Parsed and validated now so that
 * configs written for the async queue (issue 3) are accepted; the queue itself uses it.
 */
struct cfg_async {
    int maximum_retry_attempts; /* 0..2, default 2 */
    int maximum_event_age_s;    /* 60..21600, default 21600 */
    int *retry_delays_s;        /* default {60, 120}; each 0..21600 */
    size_t n_retry_delays;
    /* Destination URIs or NULL: function:NAME (a declared function), file:DIR (DIR made
     * absolute), redis://H:P/list/KEY, redis://H:P/stream/KEY, kafka://H:P[,H:P]/TOPIC,
     * mqtt://H:P/TOPIC, http(s)://... */
    char *on_success;
    char *on_failure;
    char *dead_letter;
    /* Async invocations of this function running at once: 0 (default) = automatic, i.e. the
     * reserved concurrency when set, else min(10, broker.max_concurrency). A switchyard key. */
    int maximum_concurrency;
};

/* `functions.NAME:` */
struct cfg_function {
    char *name;     /* 1..64 chars of [A-Za-z0-9_-]; the map key */
    enum cfg_runtime runtime;
    /* `runtime:` exactly as written (owned): a plain name (then equal to
     * cfg_runtime_name(runtime)) or one of Lambda's identifiers. */
    char *runtime_id;
    /* The interpreter version RUNTIME_ID asks for: python3.12 is 3/12, nodejs20.x is 20/0 (any
     * minor); 0/0 is any version (the plain names, provided.al2, provided.al2023). */
    int runtime_major, runtime_minor;
    char *handler;  /* required for python3/node/shell; for provided passed through, or NULL */
    /* Absolute path of an existing directory, or of a regular file whose name ends in `.zip`
     * (a deployment package: the broker unpacks it before the dispatcher sees the function,
     * deploy_prepare_file(), and sets task_root to the tree). */
    char *code;
    int memory_mb;  /* 128..10240, default 128 */
    int timeout_s;  /* 1..900, default 3 */
    int init_timeout_s; /* 1..900, default 10 (Lambda's on-demand INIT limit) */
    struct cfg_env_var *environment; /* user variables; reserved Lambda names are rejected */
    size_t n_environment;
    int reserved_concurrency;    /* -1 = unset (shares the unreserved pool); else 0..max_concurrency */
    int provisioned_concurrency; /* 0..(reserved_concurrency if set, else max_concurrency); default 0 */
    int max_idle_s;              /* 1..86400, default 300 */
    struct cfg_async async;
    int line;                    /* where the function was declared, for messages (0: API) */
    /*
     * `layers:`: absolute paths of existing directories or `.zip` files, in the file's order
     * (later ones overwrite what earlier ones put at the same path, as Lambda extracts them
     * into /opt), at most CFG_LAYERS_MAX, no path twice. NULL/0 when there are none, and for
     * the API's functions (their layers are layer versions: Config.Layers of their document).
     * The broker merges them into opt_dir.
     */
    char **layers;
    size_t n_layers;
    /*
     * Deployment. cfg_load() leaves these NULL/0; the broker fills them once the code is
     * ready (a zip unpacked, layers merged) and the dispatcher runs from them:
     */
    char *task_root;   /* the directory environments run in (LAMBDA_TASK_ROOT); NULL = code */
    char *opt_dir;     /* the merged layers (Lambda's /opt), or NULL when there are none */
    char *code_sha256; /* CodeSha256 (base64), or NULL when not known */
    uint64_t code_size; /* CodeSize */
    char *description; /* Description (API), or NULL */
};

/* `broker:` */
struct cfg_broker {
    char *listen;          /* "HOST:PORT", default "127.0.0.1:9001"; PORT may be 0 (any) */
    char *listen_host;     /* HOST part of listen (brackets stripped for IPv6) */
    int listen_port;       /* PORT part of listen, 0..65535 */
    char *data_dir;        /* absolute; default <config dir>/.switchyard; created by the broker */
    int max_concurrency;   /* 1..100000, default 100 */
    char *auth_token;      /* NULL when empty/absent: no auth (then only loopback binds) */
    char *async_queue;     /* "sqlite" (default) or a redis:// URL */
    enum cfg_durability durability;
    char *log_level;       /* error | warn | info | debug; default info */
    int shutdown_grace_ms; /* SIGTERM to SIGKILL for environments, 0..60000, default 2000 */
    char *region;          /* AWS_REGION given to functions and used in ARNs; default us-east-1 */
    char *account_id;      /* 12 digits used in ARNs; default 000000000000 */
    int keep_dead_letters; /* `dead_letters: keep` (default) | `off`: keep exhausted async
                              events in data_dir for `switchyard dlq` */
    int async_max_held;    /* async events held in memory at most (the rest wait in the
                              store and are read back as these run); 100..10000000, 10000 */
    int strict_runtimes;   /* 1: a function whose runtime version is not the local
                              interpreter's is refused; 0 (default): it runs on the local one,
                              with a warning */
};

/*
 * A kind of event source, as config/ sees it: the table of its `source: KIND:` block and the
 * mapping defaults that depend on it. Declared by the adapter (sources/), handed to cfg_load()
 * through `struct cfg_schema`: config/ includes nothing of sources/.
 */
struct cfg_source_kind {
    struct cfg_section sec;   /* sec.name is the key under `source:` */
    int default_batch_size;   /* Lambda's default for the closest AWS source */
    int default_window_ms;    /* maximum_batching_window_ms when not given */
    const char *data_key;     /* the record key that filters decode (SQS: "body") */
    int data_must_match;      /* 1: a JSON/non-JSON mismatch drops the record (SQS rule);
                                 0: it ignores the data part of the pattern (Kafka rule) */
};

/* `mappings[i]:` */
struct cfg_mapping {
    char *name;     /* 1..64 of [A-Za-z0-9_-], unique */
    char *function; /* a declared function: NAME, or NAME:QUALIFIER (a version number or an
                       alias; the form is checked, not that it exists: versions and aliases
                       are made at run time) */
    int enabled;    /* default 1 (a disabled state saved by the API wins at start) */
    const struct cfg_source_kind *source_kind; /* borrowed from the schema */
    void *source;   /* typed by source_kind->sec (owned; cfg_section_free()) */
    int batch_size;                 /* 1..10000, default source_kind->default_batch_size */
    int maximum_batching_window_ms; /* 0..300000, default source_kind->default_window_ms */
    char **filters;                 /* 0..10 filter patterns (JSON text), OR-ed */
    size_t n_filters;
    int maximum_concurrency;        /* batches in flight at once, 1..1000, default 5 */
    int report_batch_item_failures; /* honour {"batchItemFailures": [...]} */
    int bisect_batch_on_function_error;
    int maximum_retry_attempts;     /* -1 (until the record expires) or 0..10000; default -1 */
    int maximum_record_age_s;       /* -1 (no limit) or 60..604800; default -1 */
    char *on_failure;               /* destination URI or NULL */
    int max_records_in_flight;      /* held records at most (pause above): 1..1000000, default
                                       max(batch_size * maximum_concurrency * 2, 1000) */
    int line;                       /* where the mapping was declared */
};

/*
 * What cfg_load() needs from the layers above it. FILTER_CHECK, when set, compiles PATTERN
 * (LEN bytes) and returns 0, or -1 with WHY (WHYSZ bytes) filled; it is how `filters:` are
 * refused at load time without config/ knowing the filter language.
 */
struct cfg_schema {
    const struct cfg_source_kind *const *sources;
    size_t n_sources;
    int (*filter_check)(const struct cfg_source_kind *kind, const char *pattern, size_t len,
                        char *why, size_t whysz);
};

/* The whole file. */
struct cfg {
    char *path;     /* absolute path of the file loaded */
    char *base_dir; /* its directory: relative paths were resolved against it */
    struct cfg_broker broker;
    struct cfg_function *functions; /* in file order */
    size_t n_functions;
    struct cfg_mapping *mappings;   /* in file order */
    size_t n_mappings;
};

/*
 * Every problem found while loading, in file order. Each message reads
 * `FILE:LINE:COL: path.to.key: reason` (FILE as given to cfg_load()).
 */
struct cfg_errors {
    char **msgs;
    size_t n;
};

/*
 * Load, interpolate, default and validate PATH. Returns new (caller frees with cfg_destroy())
 * on success, with errs->n == 0. On any problem returns NULL and fills errs with *all* problems
 * found in one pass (caller frees with cfg_errors_clear()); messages are appended after any
 * already in errs. errs must not be NULL. Environment variables are read with getenv() at load
 * time. SCHEMA (borrowed; NULL: no source kinds, so any mapping is refused) names the source
 * kinds and the filter check. The reference of keys, defaults and messages is
 * docs/config-reference.md.
 */
struct cfg *cfg_load(const char *path, const struct cfg_schema *schema, struct cfg_errors *errs);

/* Free a loaded config. NULL is a no-op. */
void cfg_destroy(struct cfg *cfg);

/* Free the messages in errs and reset it to empty. */
void cfg_errors_clear(struct cfg_errors *errs);

/* Look up a function by name; borrows from cfg; NULL if absent. */
const struct cfg_function *cfg_function_find(const struct cfg *cfg, const char *name);

/* Look up a mapping by name; borrows from cfg; NULL if absent. */
const struct cfg_mapping *cfg_mapping_find(const struct cfg *cfg, const char *name);

/*
 * One mapping made at run time (CreateEventSourceMapping, the API's mappings recreated at
 * start): TEXT (LEN bytes) is one entry of `mappings:` on its own, in YAML or JSON (JSON is
 * YAML), checked with exactly the rules cfg_load() applies to the file's entries (keys, ranges,
 * defaults from the source kind, the source's table and cross-field rules, filters through
 * SCHEMA). Strings are interpolated as in the file (`$$` for a literal `$`); relative paths
 * are resolved against CFG's base_dir (CFG borrowed for the call; nothing of it changes). The
 * name part of `function:` is only checked for its form: the caller knows which functions
 * exist now. Messages read `WHAT:LINE:COL: mappings[0].KEY: reason`. Returns new
 * (cfg_mapping_free()), or NULL with every problem appended to ERRS (not NULL).
 */
struct cfg_mapping *cfg_mapping_parse(const struct cfg *cfg, const struct cfg_schema *schema,
                                      const char *what, const char *text, size_t len,
                                      struct cfg_errors *errs);

/* Free a mapping returned by cfg_mapping_parse(). NULL is a no-op. */
void cfg_mapping_free(struct cfg_mapping *mp);

/*
 * Deep-copy SRC into DST (all owned strings and arrays duplicated). Returns 0, or -1 when out
 * of memory (DST is then cleared). DST is overwritten without being freed first.
 */
int cfg_function_copy(struct cfg_function *dst, const struct cfg_function *src);

/* 1 when A and B configure the same function (every field, the line excepted), else 0. */
int cfg_function_equal(const struct cfg_function *a, const struct cfg_function *b);

/* Free everything DST owns and zero it. A zeroed struct is a no-op. */
void cfg_function_clear(struct cfg_function *fn);

/* 1 when NAME is one of the variables Lambda reserves (the broker sets them), else 0. */
int cfg_env_reserved(const char *name);

/* The directory a function runs from: task_root when set, else code. */
const char *cfg_function_root(const struct cfg_function *fn);

/*
 * 1 when the mappings A and B configure the same thing (every field and their source section,
 * compared through its field table; the line excepted), else 0.
 */
int cfg_mapping_equal(const struct cfg_mapping *a, const struct cfg_mapping *b);

/* 1 when objects A and B of section SEC hold the same values in every table field. */
int cfg_section_equal(const struct cfg_section *sec, const void *a, const void *b);

/*
 * Check destination URI U as `on_success:` & co. take it (function:NAME[:VERSION], file:DIR,
 * redis://, kafka://, mqtt://, http(s)://), without knowing which functions exist. On 0 *OUT
 * is the value to keep (new: `file:` made absolute against BASE_DIR). SY_EINVAL with *WHY
 * (static text) when U is malformed, SY_ENOMEM. Pure; any thread.
 */
int cfg_destination_check(const char *u, const char *base_dir, char **out, const char **why);

/* "python3" / "node" / "shell" / "provided". */
const char *cfg_runtime_name(enum cfg_runtime rt);

/*
 * Parse a runtime identifier S (`runtime:` in the file, `Runtime` of CreateFunction): one of
 * the plain names python3, node, shell, provided or one of Lambda's python3.9..python3.13,
 * nodejs18.x, nodejs20.x, nodejs22.x, provided.al2, provided.al2023 (exact spelling, case
 * matters). On success stores its family in *RT and the version it asks for in *MAJOR and
 * *MINOR (as struct cfg_function's runtime_major/runtime_minor) and returns 0; an unknown S
 * (or NULL) returns -1 and leaves the outputs untouched. Any output may be NULL. Pure.
 */
int cfg_runtime_parse(const char *s, enum cfg_runtime *rt, int *major, int *minor);

/*
 * Every identifier cfg_runtime_parse() accepts, comma-separated ("python3, node, ..."), for
 * error messages. Static storage.
 */
const char *cfg_runtime_accepted(void);

#endif
