/*
 * tests/unit/test_sha256.c - our SHA-256 against the FIPS 180-4 example vectors and against
 * OpenSSL on random inputs fed in random pieces; the constant-time comparison.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "core/sha256.h"

static void hex(const unsigned char *md, char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void test_vectors(void **state)
{
    static const struct {
        const char *in;
        const char *want;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    unsigned char md[32];
    char h[65];

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        sha256(v[i].in, strlen(v[i].in), md);
        hex(md, h);
        assert_string_equal(h, v[i].want);
    }
    {
        /* One million 'a' (FIPS 180-2 appendix B.3), fed in 1000-byte pieces. */
        struct sha256_ctx c;
        char a[1000];

        memset(a, 'a', sizeof(a));
        sha256_init(&c);
        for (int i = 0; i < 1000; i++)
            sha256_update(&c, a, sizeof(a));
        sha256_final(&c, md);
        hex(md, h);
        assert_string_equal(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    }
}

static void test_against_openssl(void **state)
{
    unsigned seed = 7;
    unsigned char buf[3000], ours[32], theirs[32];
    unsigned int n;

    for (int it = 0; it < 2000; it++) {
        size_t len = (size_t)rand_r(&seed) % sizeof(buf), off = 0;
        struct sha256_ctx c;

        for (size_t i = 0; i < len; i++)
            buf[i] = (unsigned char)rand_r(&seed);
        sha256_init(&c);
        while (off < len) {
            size_t piece = 1 + (size_t)rand_r(&seed) % 130;

            if (piece > len - off)
                piece = len - off;
            sha256_update(&c, buf + off, piece);
            off += piece;
        }
        sha256_final(&c, ours);
        assert_int_equal(EVP_Digest(buf, len, theirs, &n, EVP_sha256(), NULL), 1);
        assert_memory_equal(ours, theirs, 32);
    }
}

static void test_ct_equal(void **state)
{
    unsigned char a[32], b[32];

    memset(a, 1, sizeof(a));
    memset(b, 1, sizeof(b));
    assert_true(sha256_ct_equal(a, b, 32));
    b[31] = 2;
    assert_false(sha256_ct_equal(a, b, 32));
    b[31] = 1;
    b[0] = 0;
    assert_false(sha256_ct_equal(a, b, 32));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_against_openssl),
        cmocka_unit_test(test_ct_equal),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
