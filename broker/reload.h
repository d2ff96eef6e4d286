/*
 * broker/reload.h - apply a changed switchyard.yaml to the running broker (SIGHUP,
 * `switchyard reload`, POST /switchyard/v1/reload). See reload.c for what changes how.
 * Loop thread only.
 */
#ifndef SY_BROKER_RELOAD_H
#define SY_BROKER_RELOAD_H

#include <jansson.h>

#include "core/errors.h"

struct cfg;
struct dispatcher;
struct deploy;
struct mappings;
struct api;

/* What a reload works on (all borrowed from the broker, which outlives every reload). */
struct reload_ctx {
    const char *config_path;
    struct cfg *cfg;         /* the running configuration (updated through ADOPT) */
    struct dispatcher *dsp;
    struct deploy *dep;
    struct mappings *ms;
    struct api *api;
    /* Called with the new configuration once it is applied: the broker keeps it (and the old
     * one, which is still borrowed from) until it stops, and sets ctx->cfg. */
    void (*adopt)(void *arg, struct cfg *cfg);
    void *adopt_arg;
    int busy;     /* a reload is under way */
    int stopping; /* set by the broker when it starts draining: a reload still under way stops */
};

/*
 * The report handed to DONE (taken): {"ok": bool (applied without an error), "applied": bool
 * (the new file runs now, maybe with some changes refused, see errors), "config": PATH, "functions": {"added": [],
 * "removed": [], "updated": [], "unchanged": []}, "mappings": {...}, "restart_needed":
 * ["broker.listen", ...], "errors": ["FILE:LINE:COL: ...", ...], "log_level": "debug"?}.
 */
typedef void reload_done_fn(void *arg, json_t *report);

/*
 * Start a reload of CTX->config_path. DONE(ARG, report) runs once, later, on the loop (DONE may
 * be NULL: the report is only logged). Returns 0, SY_EBUSY when a reload is under way (DONE not
 * called), SY_ENOMEM.
 */
int reload_start(struct reload_ctx *ctx, reload_done_fn *done, void *arg);

#endif
