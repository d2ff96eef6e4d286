/*
 * dispatcher/asyncq_store_redis.c - the shared async queue on a Redis Stream (asyncq_int.h).
 * Placeholder until the backend lands: opening it fails with a clear message.
 */
#include "asyncq_int.h"

#include "../config/config.h"

static struct aq_store *redis_open(const struct cfg *cfg, struct aq_row **rows, size_t *n_rows,
                                   struct sy_error *err)
{
    *rows = NULL;
    *n_rows = 0;
    sy_error_set(err, "broker.async_queue: %s: the shared Redis queue is not available in this "
                      "build; use sqlite",
                 cfg->broker.async_queue);
    return NULL;
}

const struct aq_store_ops aq_redis_ops = {
    .name = "redis",
    .open = redis_open,
};
