/*
 * broker/deploy.h - the deployment state of the functions: who owns each one (the file or the
 * control API), what the control plane says about it (RevisionId, LastModified, states), its
 * published versions, aliases, provisioned and reserved concurrency, and the persistence of
 * everything the API creates in <data_dir>/state.db.
 *
 * The dispatcher runs the functions; this module keeps what Lambda's control plane knows of
 * them and turns each API write into dispatcher changes. One JSON document per API-owned
 * function (`functions` table, see deploy.c for its shape) holds its configuration, versions,
 * aliases and concurrency settings; a write replaces the document in one transaction.
 *
 * Threads: everything here runs on the loop thread, except the jobs, which run on the state
 * database's own thread (core/sqlq): writing documents, and the blocking work of a code
 * change (decoding the request, unpacking the zip, hashing it, merging layers). The loop
 * never unzips or hashes. Jobs own what they carry until they come back. deploy_zipreq_run()
 * and deploy_prepare_file() touch no deploy state: they run on whichever thread calls them.
 *
 * Layer versions (PublishLayerVersion) live in the `layers` table, one JSON document per
 * version, and in memory as a dep_layer list; a function's document names them by ARN
 * (Config.Layers) next to their merged tree (Config.OptDir).
 *
 * Ownership: a `struct deploy` owns its dep_fn and dep_layer lists, each its document; function
 * units are borrowed from the dispatcher (which outlives the deploy).
 */
#ifndef SY_BROKER_DEPLOY_H
#define SY_BROKER_DEPLOY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/errors.h"
#include "core/sqlq.h"
#include "packages/packages.h"

struct event_base;
struct cfg;
struct cfg_function;
struct dispatcher;
struct function;
struct deploy;

/* What the control plane knows of one function. */
struct dep_fn {
    struct dep_fn *next;
    char *name;
    int from_file;         /* declared in switchyard.yaml: the API may not change it */
    struct function *head; /* its $LATEST unit; NULL while a CreateFunction is being applied */
    json_t *doc;           /* API-owned: the persisted document (owned); NULL for the file's */
    int busy;              /* a write is in progress: another one gets 409 */
};

/*
 * One published layer version. The document (the `layers` row):
 *   {"LayerName", "Version", "Description", "CreatedDate", "CompatibleRuntimes": [...],
 *    "CompatibleArchitectures": [...], "LicenseInfo", "CodeSha256", "CodeSize",
 *    "UnzippedSize", "PackageDir", "Deleted": true}
 * A deleted version keeps its row and its unpacked tree: its number is never given again, and
 * the functions that use it keep running from the tree and answering its CodeSize (Lambda
 * keeps them working too). It is listed and found by nothing else.
 */
struct dep_layer {
    struct dep_layer *next;
    char *arn;     /* LayerVersionArn: arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION */
    char *name;    /* LayerName */
    long version;  /* 1, 2, ... per name */
    json_t *doc;   /* owned */
    int deleted;   /* DeleteLayerVersion */
    int pending;   /* being stored: its number is taken, nothing lists it yet */
};

/* A job for the state thread. Embeds the sqlq job; freed by its COMPLETE on the loop. */
struct dep_job {
    struct sqlq_job sj;
    struct deploy *d;
    void (*complete)(struct dep_job *job); /* loop thread, once, when the job is back */
    void (*discard)(struct dep_job *job);  /* frees a job that never came back (shutdown) */
    void *arg;
};

/*
 * Open (or create) <data_dir>/state.db, restore every API-owned function into DSP (after the
 * file's, which win a name clash: the stored one is kept but not run, with a warning) and
 * register the file's functions. Blocking (before the loop runs). NULL with ERR filled.
 * BASE, CFG and DSP are borrowed and must outlive the deploy.
 */
struct deploy *deploy_open(struct event_base *base, const struct cfg *cfg,
                           struct dispatcher *dsp, struct sy_error *err);

/* Stop the state thread after its last write and free everything. NULL is a no-op. */
void deploy_close(struct deploy *d);

/* The function NAME (live or being created), or NULL. */
struct dep_fn *deploy_fn(struct deploy *d, const char *name);

/* The dep_fn of HEAD (a $LATEST unit), or NULL. */
struct dep_fn *deploy_fn_of(struct deploy *d, const struct function *head);

/* Run JOB on the state thread; JOB->complete runs later on the loop. */
void deploy_submit(struct deploy *d, struct dep_job *job);

/*
 * Persist DF's document (replace it; DF->doc NULL: delete the row) as a write job; DONE(ARG,
 * rc, msg) runs on the loop once it is committed (rc 0) or failed (rc SY_E*, nothing stored).
 */
typedef void deploy_done_fn(void *arg, int rc, const char *msg);
int deploy_persist(struct deploy *d, const char *name, const json_t *doc, deploy_done_fn *done,
                   void *arg);

/*
 * Run RUN(ARG) on the state thread (blocking work: loading a config, walking code dirs), then
 * DONE(ARG) on the loop. At shutdown a task that never ran still gets its DONE (RUN skipped:
 * ARG must say so itself, e.g. by a result field RUN sets). 0 or SY_ENOMEM.
 */
int deploy_offload(struct deploy *d, void (*run)(void *arg), void (*done)(void *arg), void *arg);

/* Add / drop a dep_fn (API-owned, HEAD may be NULL for now). Add returns NULL when out of
 * memory; DOC is taken. */
struct dep_fn *deploy_fn_add(struct deploy *d, const char *name, json_t *doc);
void deploy_fn_remove(struct deploy *d, struct dep_fn *df);

/*
 * Build a function configuration from CONF, the `Config` object of a document (Lambda's
 * FunctionConfiguration names plus our PackageDir/OptDir). Validates as CreateFunction does:
 * on failure returns -1 with *API_ERR (an enum api_err) and WHY (Lambda's wording, naming the
 * member at fault) filled, OUT cleared. On success the caller owns OUT (cfg_function_clear()).
 */
int deploy_cfg_from_json(struct deploy *d, const json_t *conf, struct cfg_function *out,
                         int *api_err, char *why, size_t whysz);

/*
 * Push DF's provisioned-concurrency settings (per version and per alias, from its document)
 * to the dispatcher's units.
 */
void deploy_apply_provisioned(struct deploy *d, struct dep_fn *df);

/* ---- layer versions (loop thread) ----------------------------------------------------------- */

/* The first layer version (in publish order; walk ->next), deleted and pending ones included. */
struct dep_layer *deploy_layers(struct deploy *d);

/* Version VERSION of layer NAME, or NULL; deleted and pending ones included. */
struct dep_layer *deploy_layer(struct deploy *d, const char *name, long version);

/* The layer version whose LayerVersionArn is ARN, or NULL; deleted and pending ones included. */
struct dep_layer *deploy_layer_by_arn(struct deploy *d, const char *arn);

/* The number the next version of NAME gets: one above every number it ever had. */
long deploy_layer_next_version(struct deploy *d, const char *name);

/* Add a layer version (DOC taken, ARN and NAME copied). NULL when out of memory. */
struct dep_layer *deploy_layer_add(struct deploy *d, const char *arn, const char *name,
                                   long version, json_t *doc);

/* Drop L (a pending version whose write failed). */
void deploy_layer_remove(struct deploy *d, struct dep_layer *l);

/*
 * Persist the document of layer version ARN (insert or replace) as a write job; DONE as for
 * deploy_persist(). DOC is borrowed for the call (it is serialised at once).
 */
int deploy_persist_layer(struct deploy *d, const char *arn, const json_t *doc,
                         deploy_done_fn *done, void *arg);

/* ---- the blocking steps (any thread) -------------------------------------------------------- */

/*
 * The blocking part of a write that carries a zip (CreateFunction, UpdateFunctionCode,
 * PublishLayerVersion), run on the state thread from the caller's deploy_offload() RUN:
 * parse BODY as JSON, take the base64 `ZipFile` out of member MEMBER (NULL: the top level, as
 * UpdateFunctionCode has it), decode it and unpack it into STORE_DIR (pkg_unpack(), Lambda's
 * limits). The caller fills the inputs on the loop, reads the outputs in its DONE, and frees
 * everything with deploy_zipreq_clear().
 */
struct deploy_zipreq {
    /* in */
    char *body;          /* owned; freed (and NULL) once parsed: a zip's text is big */
    size_t len;
    const char *member;  /* static: "Code", "Content", or NULL */
    char *store_dir;     /* owned */
    /* out */
    int ran;             /* 0: never ran (shutdown); nothing below is set */
    json_t *req;         /* owned: the parsed request without its ZipFile, NULL: no JSON */
    char jerr[200];      /* why the body is not JSON */
    int has_zip;         /* a ZipFile string was there */
    int bad_b64;         /* ... and it is not base64 */
    struct pkg_info info; /* the unpacked zip (owned) when perr.kind is PKG_OK */
    struct pkg_error perr;
};
void deploy_zipreq_run(struct deploy_zipreq *zr);
void deploy_zipreq_clear(struct deploy_zipreq *zr);

/*
 * Make the file's functions runnable from what the store holds: for each function of CFG
 * whose `code:` is a .zip, unpack it into STORE_DIR (pkg_unpack_file(), Lambda's limits; the
 * same zip is unpacked once, named by its digest) and set task_root to the tree, code_sha256
 * to the zip's base64 SHA-256 and code_size to its bytes; unpack each .zip of its `layers:`
 * the same way and merge the layers in order (pkg_merge()) into opt_dir. Then check Lambda's
 * 262144000 bytes for the unzipped code and the merged layers together (for functions with a
 * zip or layers; a plain directory without layers is not walked), and, for a provided
 * function with a zip or layers, that a bootstrap is there (its code's, else /opt's), which
 * cfg_load() could not know.
 *
 * STORE_DIR (<data_dir>/packages) is created when missing; its parent must exist. Blocking
 * (unzips and walks trees: seconds for large packages) and callable from any thread that owns
 * CFG: broker_run() calls it right after cfg_load(), a reload on its helper thread before the
 * new configuration goes to the loop. Fields it set before are replaced, so calling it again
 * is harmless. Returns 0, or a negative SY_E* code (SY_EINVAL for a refused package or limit,
 * SY_EIO, SY_ENOSPC, SY_ENOMEM) with ERR saying, like a config error, which file, function
 * and package: "FILE:LINE: functions.NAME.layers[1]: PATH: why". It stops at the first
 * problem; functions already done keep their fields (cfg_destroy() frees them).
 */
int deploy_prepare_file(struct cfg *cfg, const char *store_dir, struct sy_error *err);

/* Directories: where packages are unpacked (<data_dir>/packages). Borrowed. */
const char *deploy_store_dir(const struct deploy *d);
const struct cfg *deploy_cfg(const struct deploy *d);
struct dispatcher *deploy_dispatcher(struct deploy *d);

#endif
