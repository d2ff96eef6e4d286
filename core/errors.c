/* core/errors.c - error codes and messages. */
#include "errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

const char *sy_strerror(int code)
{
    switch (code) {
#define SY_ERR_CASE(name, val, text)                                                               \
    case val:                                                                                      \
        return text;
        SY_ERRORS(SY_ERR_CASE)
#undef SY_ERR_CASE
    default:
        return "unknown error";
    }
}

void sy_error_set(struct sy_error *err, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
}

void sy_free(void *pp)
{
    void **p = pp;

    free(*p);
    *p = NULL;
}

void sy_assert_fail(const char *what, const char *file, int line)
{
    fprintf(stderr, "switchyard: assertion failed: %s (%s:%d)\n", what, file, line);
    abort();
}
