/*
 * core/b64.h - standard base64 (RFC 4648, with padding) on top of OpenSSL's EVP
 * block coders. Used for X-Amz-Client-Context, X-Amz-Log-Result and CodeSha256.
 *
 * Pure functions: no loop, no global state, safe from any thread.
 */
#ifndef SY_UTIL_B64_H
#define SY_UTIL_B64_H

#include <stddef.h>

/* Bytes needed to encode N bytes, including the terminating NUL. */
size_t b64_encoded_size(size_t n);

/*
 * Encode N bytes of IN into OUT (at least b64_encoded_size(N) bytes), NUL-terminated.
 * Returns the length written, excluding the NUL.
 */
size_t b64_encode(const void *in, size_t n, char *out);

/* Encode into a new string (caller frees); NULL on allocation failure. */
char *b64_encode_new(const void *in, size_t n);

/*
 * Decode the N characters of IN. Strict: the length must be a multiple of 4, only the base64
 * alphabet is allowed and '=' only as one or two trailing padding characters; no whitespace.
 * Returns new (caller frees; NUL-terminated for convenience) with *OUTLEN set to the decoded
 * length, or NULL when IN is not valid base64 or on allocation failure.
 */
char *b64_decode_new(const char *in, size_t n, size_t *outlen);

#endif
