/*
 * core/buf.h - a growable byte buffer.
 *
 * `struct buf` owns `data` (always NUL-terminated when non-NULL, so it can be used as a C
 * string). A zeroed struct is an empty buffer. Functions return 0 or SY_ENOMEM.
 */
#ifndef SY_UTIL_BUF_H
#define SY_UTIL_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
    char *data;
    size_t len;
    size_t cap;
};

int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* V in decimal into OUT (at least 21 bytes), NUL-terminated; returns its length. No locale, no
 * printf: for the per-record hot paths. */
size_t fmt_i64(char *out, int64_t v);
/* Append V in decimal. */
int buf_put_i64(struct buf *b, int64_t v);
/* Append S as the inside of a JSON string (escaped, no quotes). */
int buf_json_escape(struct buf *b, const char *s, size_t n);
/* Hand the data over: returns new (caller frees), leaves B empty. */
char *buf_take(struct buf *b, size_t *len);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);

#endif
