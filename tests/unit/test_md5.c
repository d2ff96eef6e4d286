/*
 * tests/unit/test_md5.c - our MD5 against the test suite of RFC 1321 (appendix A.5), a message
 * that spans many blocks, and OpenSSL on random inputs fed in random pieces.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "core/md5.h"

static void test_rfc1321_suite(void **state)
{
    static const struct {
        const char *in;
        const char *want;
    } v[] = {
        {"", "d41d8cd98f00b204e9800998ecf8427e"},
        {"a", "0cc175b9c0f1b6a831c399e269772661"},
        {"abc", "900150983cd24fb0d6963f7d28e17f72"},
        {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
        {"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"},
        {"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
         "d174ab98d277d9f5a5611c2c9f419d9f"},
        {"1234567890123456789012345678901234567890123456789012345678901234567890123456789"
         "0",
         "57edf4a22be3c955ac49da2e2107b67a"},
    };
    unsigned char md[MD5_LEN];
    char h[2 * MD5_LEN + 1];

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        md5(v[i].in, strlen(v[i].in), md);
        md5_hex(md, h);
        assert_string_equal(h, v[i].want);
    }
}

/* The same digests with the input fed one byte at a time, and lengths around the padding
 * boundaries (55, 56, 63, 64, 65 bytes), against OpenSSL. */
static void test_pieces_and_boundaries(void **state)
{
    static const char msg[] = "message digest";
    unsigned char md[MD5_LEN], theirs[EVP_MAX_MD_SIZE], buf[200];
    char h[2 * MD5_LEN + 1];
    struct md5_ctx c;
    unsigned int n;

    md5_init(&c);
    for (size_t i = 0; i < strlen(msg); i++)
        md5_update(&c, msg + i, 1);
    md5_final(&c, md);
    md5_hex(md, h);
    assert_string_equal(h, "f96b697d7cb7938d525a2f31aaf161d0");

    memset(buf, 'x', sizeof(buf));
    for (size_t len = 50; len <= 140; len++) {
        md5(buf, len, md);
        assert_int_equal(EVP_Digest(buf, len, theirs, &n, EVP_md5(), NULL), 1);
        assert_int_equal(n, MD5_LEN);
        assert_memory_equal(md, theirs, MD5_LEN);
    }
}

/* One million 'a', fed in 1000-byte pieces (a common extra vector). */
static void test_million_a(void **state)
{
    unsigned char md[MD5_LEN];
    char h[2 * MD5_LEN + 1], a[1000];
    struct md5_ctx c;

    memset(a, 'a', sizeof(a));
    md5_init(&c);
    for (int i = 0; i < 1000; i++)
        md5_update(&c, a, sizeof(a));
    md5_final(&c, md);
    md5_hex(md, h);
    assert_string_equal(h, "7707d6ae4e027c70eea2a935c2296f21");
}

static void test_against_openssl(void **state)
{
    unsigned seed = 11;
    unsigned char buf[3000], ours[MD5_LEN], theirs[EVP_MAX_MD_SIZE];
    unsigned int n;

    for (int it = 0; it < 2000; it++) {
        size_t len = (size_t)rand_r(&seed) % sizeof(buf), off = 0;
        struct md5_ctx c;

        for (size_t i = 0; i < len; i++)
            buf[i] = (unsigned char)rand_r(&seed);
        md5_init(&c);
        while (off < len) {
            size_t piece = 1 + (size_t)rand_r(&seed) % 130;

            if (piece > len - off)
                piece = len - off;
            md5_update(&c, buf + off, piece);
            off += piece;
        }
        md5_final(&c, ours);
        assert_int_equal(EVP_Digest(buf, len, theirs, &n, EVP_md5(), NULL), 1);
        assert_memory_equal(ours, theirs, MD5_LEN);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc1321_suite),
        cmocka_unit_test(test_pieces_and_boundaries),
        cmocka_unit_test(test_million_a),
        cmocka_unit_test(test_against_openssl),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
