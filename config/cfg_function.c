/*
 * config/cfg_function.c - copying and freeing one `struct cfg_function`.
 *
 * A function's configuration outlives the file it came from: the dispatcher keeps its own copy
 * of every function (a reload replaces the file's `struct cfg`, the control API creates
 * functions that have no file at all), and an environment keeps the copy it was started with
 * until it exits. So the copy is deep, and its one owner frees it with cfg_function_clear().
 */
#include <stdlib.h>
#include <string.h>

#include "config.h"

static int dup_str(char **dst, const char *src)
{
    if (src == NULL) {
        *dst = NULL;
        return 0;
    }
    *dst = strdup(src);
    return *dst == NULL ? -1 : 0;
}

int cfg_function_copy(struct cfg_function *dst, const struct cfg_function *src)
{
    int rc = 0;

    *dst = *src;
    /* Every pointer is replaced below; until then none may be freed through DST. */
    dst->name = dst->runtime_id = dst->handler = dst->code = NULL;
    dst->environment = NULL;
    dst->n_environment = 0;
    dst->async.retry_delays_s = NULL;
    dst->async.n_retry_delays = 0;
    dst->async.on_success = dst->async.on_failure = dst->async.dead_letter = NULL;
    dst->task_root = dst->opt_dir = dst->code_sha256 = dst->description = NULL;
    dst->layers = NULL;
    dst->n_layers = 0;

    rc |= dup_str(&dst->name, src->name);
    rc |= dup_str(&dst->runtime_id, src->runtime_id);
    rc |= dup_str(&dst->handler, src->handler);
    rc |= dup_str(&dst->code, src->code);
    rc |= dup_str(&dst->task_root, src->task_root);
    rc |= dup_str(&dst->opt_dir, src->opt_dir);
    rc |= dup_str(&dst->code_sha256, src->code_sha256);
    rc |= dup_str(&dst->description, src->description);
    rc |= dup_str(&dst->async.on_success, src->async.on_success);
    rc |= dup_str(&dst->async.on_failure, src->async.on_failure);
    rc |= dup_str(&dst->async.dead_letter, src->async.dead_letter);
    if (rc != 0)
        goto fail;
    if (src->n_environment > 0) {
        dst->environment = calloc(src->n_environment, sizeof(*dst->environment));
        if (dst->environment == NULL)
            goto fail;
        for (size_t i = 0; i < src->n_environment; i++) {
            dst->n_environment = i + 1;
            if (dup_str(&dst->environment[i].name, src->environment[i].name) != 0 ||
                dup_str(&dst->environment[i].value, src->environment[i].value) != 0)
                goto fail;
        }
    }
    if (src->n_layers > 0) {
        dst->layers = calloc(src->n_layers, sizeof(*dst->layers));
        if (dst->layers == NULL)
            goto fail;
        for (size_t i = 0; i < src->n_layers; i++) {
            dst->n_layers = i + 1;
            if (dup_str(&dst->layers[i], src->layers[i]) != 0)
                goto fail;
        }
    }
    if (src->async.n_retry_delays > 0) {
        dst->async.retry_delays_s = malloc(src->async.n_retry_delays * sizeof(int));
        if (dst->async.retry_delays_s == NULL)
            goto fail;
        memcpy(dst->async.retry_delays_s, src->async.retry_delays_s,
               src->async.n_retry_delays * sizeof(int));
        dst->async.n_retry_delays = src->async.n_retry_delays;
    }
    return 0;
fail:
    cfg_function_clear(dst);
    return -1;
}

void cfg_function_clear(struct cfg_function *fn)
{
    if (fn == NULL)
        return;
    free(fn->name);
    free(fn->runtime_id);
    free(fn->handler);
    free(fn->code);
    for (size_t j = 0; fn->environment != NULL && j < fn->n_environment; j++) {
        free(fn->environment[j].name);
        free(fn->environment[j].value);
    }
    free(fn->environment);
    for (size_t j = 0; fn->layers != NULL && j < fn->n_layers; j++)
        free(fn->layers[j]);
    free(fn->layers);
    free(fn->async.retry_delays_s);
    free(fn->async.on_success);
    free(fn->async.on_failure);
    free(fn->async.dead_letter);
    free(fn->task_root);
    free(fn->opt_dir);
    free(fn->code_sha256);
    free(fn->description);
    memset(fn, 0, sizeof(*fn));
}

const char *cfg_function_root(const struct cfg_function *fn)
{
    return fn->task_root != NULL ? fn->task_root : fn->code;
}

/* The variables the broker sets for every function (Lambda's reserved names). */
static const char *const reserved_env[] = {
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
};

int cfg_env_reserved(const char *name)
{
    for (size_t i = 0; i < sizeof(reserved_env) / sizeof(reserved_env[0]); i++) {
        if (strcmp(name, reserved_env[i]) == 0)
            return 1;
    }
    return 0;
}

static int str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int cfg_function_equal(const struct cfg_function *a, const struct cfg_function *b)
{
    if (!str_eq(a->name, b->name) || a->runtime != b->runtime ||
        !str_eq(a->runtime_id, b->runtime_id) || !str_eq(a->handler, b->handler) ||
        !str_eq(a->code, b->code) || a->memory_mb != b->memory_mb ||
        a->timeout_s != b->timeout_s || a->init_timeout_s != b->init_timeout_s ||
        a->reserved_concurrency != b->reserved_concurrency ||
        a->provisioned_concurrency != b->provisioned_concurrency ||
        a->max_idle_s != b->max_idle_s || a->n_environment != b->n_environment ||
        a->n_layers != b->n_layers ||
        !str_eq(a->task_root, b->task_root) || !str_eq(a->opt_dir, b->opt_dir) ||
        !str_eq(a->code_sha256, b->code_sha256) || a->code_size != b->code_size ||
        !str_eq(a->description, b->description))
        return 0;
    for (size_t i = 0; i < a->n_environment; i++) {
        if (!str_eq(a->environment[i].name, b->environment[i].name) ||
            !str_eq(a->environment[i].value, b->environment[i].value))
            return 0;
    }
    for (size_t i = 0; i < a->n_layers; i++) {
        if (!str_eq(a->layers[i], b->layers[i]))
            return 0;
    }
    if (a->async.maximum_retry_attempts != b->async.maximum_retry_attempts ||
        a->async.maximum_event_age_s != b->async.maximum_event_age_s ||
        a->async.n_retry_delays != b->async.n_retry_delays ||
        a->async.maximum_concurrency != b->async.maximum_concurrency ||
        !str_eq(a->async.on_success, b->async.on_success) ||
        !str_eq(a->async.on_failure, b->async.on_failure) ||
        !str_eq(a->async.dead_letter, b->async.dead_letter))
        return 0;
    for (size_t i = 0; i < a->async.n_retry_delays; i++) {
        if (a->async.retry_delays_s[i] != b->async.retry_delays_s[i])
            return 0;
    }
    return 1;
}
