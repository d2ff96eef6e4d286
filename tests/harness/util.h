/*
 * tests/harness/util.h - small helpers shared by the integration harness: clocks, temporary
 * directories, whole-file I/O, string building, base64 decoding (OpenSSL) and JSON access
 * (jansson), and where the tests find the binary and the source tree.
 *
 * Names start with h_. Nothing here is tied to cmocka: failures are return values plus a line on
 * stderr, so the harness can be used from threads (cmocka's asserts must not be).
 */
#ifndef SY_HARNESS_UTIL_H
#define SY_HARNESS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Milliseconds of CLOCK_MONOTONIC. */
int64_t h_now_ms(void);

/*
 * Sleep MS milliseconds (EINTR-safe). Only ever used as the interval of a loop that polls a
 * condition until a deadline, never as synchronisation by itself.
 */
void h_sleep_ms(int ms);

/*
 * Create a fresh directory "${TMPDIR:-/tmp}/sy-TAG-XXXXXX". Returns new (caller frees), NULL on
 * failure.
 */
char *h_tmpdir_create(const char *tag);

/* Remove PATH and everything below it (no symlinks followed). Returns 0 or -1. */
int h_rm_rf(const char *path);

/* Create or truncate PATH with LEN bytes of DATA. Returns 0 or -1. */
int h_write_file(const char *path, const void *data, size_t len);

/*
 * Read the whole of PATH from byte OFFSET on. Returns new, NUL-terminated (caller frees) with
 * *LEN (may be NULL) set to its length, or NULL when the file cannot be read.
 */
char *h_read_file(const char *path, size_t offset, size_t *len);

/* Size of PATH in bytes, or 0 if it does not exist. */
size_t h_file_size(const char *path);

/* printf into a new string (caller frees); aborts on allocation failure. */
char *h_strfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Copy of S with every FROM replaced by TO. Returns new (caller frees). */
char *h_str_replace(const char *s, const char *from, const char *to);

/* Number of (possibly overlapping-free, left to right) occurrences of NEEDLE in HAY. */
size_t h_str_count(const char *hay, const char *needle);

/*
 * Decode standard base64 (padding allowed, whitespace not). Returns new, NUL-terminated (caller
 * frees) with *LEN (may be NULL) set, or NULL when IN is not base64.
 */
char *h_b64_decode(const char *in, size_t *len);

/* Parse LEN bytes of S as JSON. Returns new (json_decref), NULL on a syntax error. */
json_t *h_json_parse(const char *s, size_t len);

/* The file PATH as JSON: new (json_decref), or NULL when it is missing or not JSON. */
json_t *h_json_file(const char *path);

/* The first file of DIR (dot-files and *.tmp* skipped, readdir order) that holds JSON, as new
 * JSON, or NULL (no such file, or no DIR). */
json_t *h_json_first_file(const char *dir);

/* OBJ[KEY] as a string; borrowed from OBJ; NULL when absent or not a string (or OBJ NULL). */
const char *h_json_str(const json_t *obj, const char *key);

/* OBJ[KEY] as an integer; DFLT when absent or not an integer. */
long long h_json_int(const json_t *obj, const char *key, long long dflt);

/* The source tree: $SY_SOURCE_DIR, else the directory this file was compiled from. Borrowed. */
const char *h_source_dir(void);

/* The broker binary: $SY_BINARY, else <source>/build/broker/switchyard. Borrowed. */
const char *h_binary(void);

/* A string of LEN bytes of JSON: a string literal "aaaa..." (quotes included). Returns new. */
char *h_json_string_of_len(size_t len);

#endif
