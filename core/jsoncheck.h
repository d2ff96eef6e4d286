/*
 * core/jsoncheck.h - is this JSON? A validating scanner that builds nothing.
 *
 * The Invoke API must refuse a body that is not JSON (400 InvalidRequestContentException) but
 * passes the bytes on unchanged, so building a jansson tree of every payload only to throw it
 * away was most of the API's CPU per request. This checks RFC 8259 in one pass without
 * allocating: any value at the top level, UTF-8 validated, escapes checked (\u0000 and lone
 * surrogates refused, as jansson does), nesting bounded. Numbers are checked for their syntax
 * only (1e400 is valid JSON).
 */
#ifndef SY_JSONCHECK_H
#define SY_JSONCHECK_H

#include <stddef.h>

#define JSONCHECK_MAX_DEPTH 1024

/* 1 when S (LEN bytes) is one JSON value with optional surrounding whitespace, else 0. */
int jsoncheck(const char *s, size_t len);

#endif
