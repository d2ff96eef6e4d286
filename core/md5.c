/*
 * core/md5.c - see md5.h. RFC 1321, section 3: the message is padded with a 1 bit, zeros up to
 * 56 bytes mod 64 and its length in bits (64-bit little-endian), then processed in 64-byte
 * blocks of sixteen little-endian words, each block in four rounds of sixteen steps.
 */
#include "md5.h"

#include <string.h>

/* T[i] = floor(4294967296 * abs(sin(i + 1))), i = 0..63 (section 3.4). */
static const uint32_t T[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
};

/*
 * The four auxiliary functions (section 3.4). F and G in equivalent forms with fewer operations
 * after X, the word the previous step just computed: F(X,Y,Z) = XY v not(X) Z equals
 * Z xor (X and (Y xor Z)); the two terms of G(X,Y,Z) = XZ v Y not(Z) never share a bit, so
 * "or" equals "+".
 */
static inline uint32_t md5_f(uint32_t x, uint32_t y, uint32_t z)
{
    return z ^ (x & (y ^ z));
}

static inline uint32_t md5_g(uint32_t x, uint32_t y, uint32_t z)
{
    return (x & z) + (y & ~z);
}

static inline uint32_t md5_h(uint32_t x, uint32_t y, uint32_t z)
{
    return x ^ y ^ z;
}

static inline uint32_t md5_i(uint32_t x, uint32_t y, uint32_t z)
{
    return y ^ (x | ~z);
}

static inline uint32_t rotl(uint32_t x, int s)
{
    return (x << s) | (x >> (32 - s));
}

static inline uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* One step "a = b + ((a + FN(b,c,d) + X[k] + T[i]) <<< s)"; a plain expression, no control
 * flow. The sum is written with FN last: a + X[k] + T[i] does not wait for the previous step.
 * The 64 steps are written out: a loop with index tables runs about half as fast. */
#define STEP(fn, a, b, c, d, k, s, i) (a) = (b) + rotl((a) + x[k] + T[i] + fn((b), (c), (d)), (s))

/* Process one 64-byte block (section 3.4). */
static void block(uint32_t h[4], const unsigned char *p)
{
    uint32_t x[16], a = h[0], b = h[1], c = h[2], d = h[3];

    for (int k = 0; k < 16; k++)
        x[k] = le32(p + 4 * k);

    /* Round 1: X[i], shifts 7 12 17 22. */
    STEP(md5_f, a, b, c, d, 0, 7, 0);
    STEP(md5_f, d, a, b, c, 1, 12, 1);
    STEP(md5_f, c, d, a, b, 2, 17, 2);
    STEP(md5_f, b, c, d, a, 3, 22, 3);
    STEP(md5_f, a, b, c, d, 4, 7, 4);
    STEP(md5_f, d, a, b, c, 5, 12, 5);
    STEP(md5_f, c, d, a, b, 6, 17, 6);
    STEP(md5_f, b, c, d, a, 7, 22, 7);
    STEP(md5_f, a, b, c, d, 8, 7, 8);
    STEP(md5_f, d, a, b, c, 9, 12, 9);
    STEP(md5_f, c, d, a, b, 10, 17, 10);
    STEP(md5_f, b, c, d, a, 11, 22, 11);
    STEP(md5_f, a, b, c, d, 12, 7, 12);
    STEP(md5_f, d, a, b, c, 13, 12, 13);
    STEP(md5_f, c, d, a, b, 14, 17, 14);
    STEP(md5_f, b, c, d, a, 15, 22, 15);

    /* Round 2: X[(1 + 5i) mod 16], shifts 5 9 14 20. */
    STEP(md5_g, a, b, c, d, 1, 5, 16);
    STEP(md5_g, d, a, b, c, 6, 9, 17);
    STEP(md5_g, c, d, a, b, 11, 14, 18);
    STEP(md5_g, b, c, d, a, 0, 20, 19);
    STEP(md5_g, a, b, c, d, 5, 5, 20);
    STEP(md5_g, d, a, b, c, 10, 9, 21);
    STEP(md5_g, c, d, a, b, 15, 14, 22);
    STEP(md5_g, b, c, d, a, 4, 20, 23);
    STEP(md5_g, a, b, c, d, 9, 5, 24);
    STEP(md5_g, d, a, b, c, 14, 9, 25);
    STEP(md5_g, c, d, a, b, 3, 14, 26);
    STEP(md5_g, b, c, d, a, 8, 20, 27);
    STEP(md5_g, a, b, c, d, 13, 5, 28);
    STEP(md5_g, d, a, b, c, 2, 9, 29);
    STEP(md5_g, c, d, a, b, 7, 14, 30);
    STEP(md5_g, b, c, d, a, 12, 20, 31);

    /* Round 3: X[(5 + 3i) mod 16], shifts 4 11 16 23. */
    STEP(md5_h, a, b, c, d, 5, 4, 32);
    STEP(md5_h, d, a, b, c, 8, 11, 33);
    STEP(md5_h, c, d, a, b, 11, 16, 34);
    STEP(md5_h, b, c, d, a, 14, 23, 35);
    STEP(md5_h, a, b, c, d, 1, 4, 36);
    STEP(md5_h, d, a, b, c, 4, 11, 37);
    STEP(md5_h, c, d, a, b, 7, 16, 38);
    STEP(md5_h, b, c, d, a, 10, 23, 39);
    STEP(md5_h, a, b, c, d, 13, 4, 40);
    STEP(md5_h, d, a, b, c, 0, 11, 41);
    STEP(md5_h, c, d, a, b, 3, 16, 42);
    STEP(md5_h, b, c, d, a, 6, 23, 43);
    STEP(md5_h, a, b, c, d, 9, 4, 44);
    STEP(md5_h, d, a, b, c, 12, 11, 45);
    STEP(md5_h, c, d, a, b, 15, 16, 46);
    STEP(md5_h, b, c, d, a, 2, 23, 47);

    /* Round 4: X[7i mod 16], shifts 6 10 15 21. */
    STEP(md5_i, a, b, c, d, 0, 6, 48);
    STEP(md5_i, d, a, b, c, 7, 10, 49);
    STEP(md5_i, c, d, a, b, 14, 15, 50);
    STEP(md5_i, b, c, d, a, 5, 21, 51);
    STEP(md5_i, a, b, c, d, 12, 6, 52);
    STEP(md5_i, d, a, b, c, 3, 10, 53);
    STEP(md5_i, c, d, a, b, 10, 15, 54);
    STEP(md5_i, b, c, d, a, 1, 21, 55);
    STEP(md5_i, a, b, c, d, 8, 6, 56);
    STEP(md5_i, d, a, b, c, 15, 10, 57);
    STEP(md5_i, c, d, a, b, 6, 15, 58);
    STEP(md5_i, b, c, d, a, 13, 21, 59);
    STEP(md5_i, a, b, c, d, 4, 6, 60);
    STEP(md5_i, d, a, b, c, 11, 10, 61);
    STEP(md5_i, c, d, a, b, 2, 15, 62);
    STEP(md5_i, b, c, d, a, 9, 21, 63);

    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
}

#undef STEP

void md5_init(struct md5_ctx *c)
{
    /* Section 3.3: A = 01 23 45 67, B = 89 ab cd ef, C = fe dc ba 98, D = 76 54 32 10 (bytes,
     * low-order first). */
    c->h[0] = 0x67452301;
    c->h[1] = 0xefcdab89;
    c->h[2] = 0x98badcfe;
    c->h[3] = 0x10325476;
    c->bytes = 0;
    c->n = 0;
}

void md5_update(struct md5_ctx *c, const void *data, size_t len)
{
    const unsigned char *p = data;

    c->bytes += len;
    if (c->n > 0) {
        size_t k = 64 - c->n < len ? 64 - c->n : len;

        memcpy(c->buf + c->n, p, k);
        c->n += k;
        p += k;
        len -= k;
        if (c->n < 64)
            return;
        block(c->h, c->buf);
        c->n = 0;
    }
    for (; len >= 64; p += 64, len -= 64)
        block(c->h, p);
    memcpy(c->buf, p, len);
    c->n = len;
}

void md5_final(struct md5_ctx *c, unsigned char out[MD5_LEN])
{
    uint64_t bits = c->bytes * 8;

    /* Sections 3.1 and 3.2: a 1 bit, zeros to 56 mod 64, the bit length little-endian. */
    c->buf[c->n++] = 0x80;
    if (c->n > 56) {
        memset(c->buf + c->n, 0, 64 - c->n);
        block(c->h, c->buf);
        c->n = 0;
    }
    memset(c->buf + c->n, 0, 56 - c->n);
    for (int i = 0; i < 8; i++)
        c->buf[56 + i] = (unsigned char)(bits >> (8 * i));
    block(c->h, c->buf);
    /* Section 3.5: A, B, C, D, each low-order byte first. */
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 4; k++)
            out[4 * i + k] = (unsigned char)(c->h[i] >> (8 * k));
    memset(c, 0, sizeof(*c));
}

void md5(const void *data, size_t len, unsigned char out[MD5_LEN])
{
    struct md5_ctx c;

    md5_init(&c);
    md5_update(&c, data, len);
    md5_final(&c, out);
}

void md5_hex(const unsigned char digest[MD5_LEN], char out[2 * MD5_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";

    for (int i = 0; i < MD5_LEN; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[2 * MD5_LEN] = '\0';
}
