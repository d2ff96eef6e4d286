/*
 * core/jsonstr.h - JSON strings written in two passes, for the streaming event writers: first
 * the exact length of the escaped text (which also validates UTF-8), then the bytes into a
 * buffer of that size. No allocation; eight plain ASCII bytes are checked at a time.
 *
 * The escapes are buf_json_escape()'s (core/buf.h): \" \\ \n \r \t and \u00XX for the other
 * control bytes; everything else, UTF-8 included, is copied as it is.
 */
#ifndef SY_CORE_JSONSTR_H
#define SY_CORE_JSONSTR_H

#include <stddef.h>

/* The length of S[0..N) written as the inside of a JSON string when S is valid UTF-8 (no
 * overlongs, no surrogates, nothing above U+10FFFF), or SIZE_MAX when it is not. */
size_t jsonstr_len(const char *s, size_t n);

/* Write S[0..N) (valid UTF-8; jsonstr_len() is the room needed) escaped into DST. Returns the
 * end of what was written. */
char *jsonstr_put(char *dst, const char *s, size_t n);

#endif
