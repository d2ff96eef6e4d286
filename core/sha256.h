/*
 * core/sha256.h - SHA-256 (FIPS 180-4), written from the standard.
 *
 * Why not OpenSSL's: its EVP layer loads OpenSSL 3's provider machinery on first use, which
 * costs the broker ~3 MB of resident memory for two small uses (the CodeSha256 of function
 * code dirs at start-up, and comparing auth tokens in constant time). Checked against
 * OpenSSL and the FIPS test vectors in tests/unit/test_sha256.c.
 */
#ifndef SY_SHA256_H
#define SY_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32

struct sha256_ctx {
    uint32_t h[8];
    uint64_t bytes;     /* message length so far */
    unsigned char buf[64];
    size_t n;           /* bytes in buf */
};

void sha256_init(struct sha256_ctx *c);
void sha256_update(struct sha256_ctx *c, const void *data, size_t len);
void sha256_final(struct sha256_ctx *c, unsigned char out[SHA256_LEN]);

/* One-shot digest. */
void sha256(const void *data, size_t len, unsigned char out[SHA256_LEN]);

/* 1 when A and B (N bytes) are equal, compared in time independent of where they differ. */
int sha256_ct_equal(const unsigned char *a, const unsigned char *b, size_t n);

#endif
