/*
 * core/md5.h - MD5 (RFC 1321), written from the RFC.
 *
 * Why not OpenSSL's: the Redis source computes md5OfBody for every record it delivers, and
 * EVP's per-call overhead (a digest init, update and final through the provider layer) cost
 * more than hashing the ~100-byte bodies themselves. MD5 is no security measure here: SQS
 * records carry it as a checksum of the body, and handlers may compare it. Checked against
 * RFC 1321's test suite and against OpenSSL in tests/unit/test_md5.c.
 *
 * Pure functions on caller-owned state: no allocation, safe from any thread.
 */
#ifndef SY_MD5_H
#define SY_MD5_H

#include <stddef.h>
#include <stdint.h>

#define MD5_LEN 16

struct md5_ctx {
    uint32_t h[4];  /* the state A, B, C, D */
    uint64_t bytes; /* message length so far */
    unsigned char buf[64];
    size_t n; /* bytes in buf */
};

void md5_init(struct md5_ctx *c);
void md5_update(struct md5_ctx *c, const void *data, size_t len);
/* The digest into OUT; C must be initialised again before it is reused. */
void md5_final(struct md5_ctx *c, unsigned char out[MD5_LEN]);

/* One-shot digest. */
void md5(const void *data, size_t len, unsigned char out[MD5_LEN]);

/* The 32 lower-case hex digits of DIGEST and a NUL into OUT. */
void md5_hex(const unsigned char digest[MD5_LEN], char out[2 * MD5_LEN + 1]);

#endif
