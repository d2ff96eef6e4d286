/*
 * config/cfg_equal.c - whether two loaded mappings configure the same thing: what a reload
 * compares to decide which mappings it restarts. (Functions: cfg_function_equal(), with the
 * function's copy and free in cfg_function.c.)
 */
#include <string.h>

#include "config.h"

static int str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int cfg_section_equal(const struct cfg_section *sec, const void *a, const void *b)
{
    for (size_t i = 0; i < sec->n_fields; i++) {
        const struct cfg_field *f = &sec->fields[i];
        const char *pa = (const char *)a + f->off, *pb = (const char *)b + f->off;

        switch (f->kind) {
        case CFG_FK_INT:
        case CFG_FK_BOOL:
        case CFG_FK_ENUM:
            if (*(const int *)pa != *(const int *)pb)
                return 0;
            break;
        case CFG_FK_STR:
        case CFG_FK_DEST:
            if (!str_eq(*(char *const *)pa, *(char *const *)pb))
                return 0;
            break;
        case CFG_FK_STRLIST: {
            const struct cfg_strlist *x = (const void *)pa, *y = (const void *)pb;

            if (x->n != y->n)
                return 0;
            for (size_t j = 0; j < x->n; j++) {
                if (!str_eq(x->v[j], y->v[j]))
                    return 0;
            }
            break;
        }
        case CFG_FK_STRMAP: {
            const struct cfg_strmap *x = (const void *)pa, *y = (const void *)pb;

            if (x->n != y->n)
                return 0;
            for (size_t j = 0; j < x->n; j++) {
                if (!str_eq(x->keys[j], y->keys[j]) || !str_eq(x->vals[j], y->vals[j]))
                    return 0;
            }
            break;
        }
        case CFG_FK_CUSTOM:
            /* Parsed by config/ itself into fields the table does not describe: not compared
             * (a section with custom keys should not rely on this). */
            break;
        }
    }
    return 1;
}

int cfg_mapping_equal(const struct cfg_mapping *a, const struct cfg_mapping *b)
{
    if (!str_eq(a->name, b->name) || !str_eq(a->function, b->function) ||
        a->enabled != b->enabled || a->source_kind != b->source_kind ||
        a->batch_size != b->batch_size ||
        a->maximum_batching_window_ms != b->maximum_batching_window_ms ||
        a->n_filters != b->n_filters || a->maximum_concurrency != b->maximum_concurrency ||
        a->report_batch_item_failures != b->report_batch_item_failures ||
        a->bisect_batch_on_function_error != b->bisect_batch_on_function_error ||
        a->maximum_retry_attempts != b->maximum_retry_attempts ||
        a->maximum_record_age_s != b->maximum_record_age_s || !str_eq(a->on_failure, b->on_failure) ||
        a->max_records_in_flight != b->max_records_in_flight)
        return 0;
    for (size_t i = 0; i < a->n_filters; i++) {
        if (!str_eq(a->filters[i], b->filters[i]))
            return 0;
    }
    if (a->source_kind != NULL && (a->source == NULL) != (b->source == NULL))
        return 0;
    return a->source_kind == NULL || a->source == NULL ||
           cfg_section_equal(&a->source_kind->sec, a->source, b->source);
}
