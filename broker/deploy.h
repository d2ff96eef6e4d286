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
 * never unzips or hashes. Jobs own what they carry until they come back.
 *
 * Ownership: a `struct deploy` owns its dep_fn list, each dep_fn its document; function units
 * are borrowed from the dispatcher (which outlives the deploy).
 */
#ifndef SY_BROKER_DEPLOY_H
#define SY_BROKER_DEPLOY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/errors.h"
#include "core/sqlq.h"

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
    char revision_id[40];
    char last_modified[40];
    int busy;              /* a write is in progress: another one gets 409 */
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

/* Stamp DF with a new RevisionId and LastModified = now (into its document too). */
void deploy_touch(struct dep_fn *df);

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

/* Directories: where packages are unpacked (<data_dir>/packages). Borrowed. */
const char *deploy_store_dir(const struct deploy *d);
const struct cfg *deploy_cfg(const struct deploy *d);
struct dispatcher *deploy_dispatcher(struct deploy *d);

#endif
