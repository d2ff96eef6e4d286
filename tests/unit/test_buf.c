/*
 * tests/unit/test_buf.c - core/buf's decimal formatter against printf over the edges of
 * int64_t and random values, and buf_put_i64() appending.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"

static void check(int64_t v)
{
    char want[32], got[21];
    size_t n = fmt_i64(got, v);

    snprintf(want, sizeof(want), "%lld", (long long)v);
    assert_string_equal(got, want);
    assert_int_equal(n, strlen(want));
}

static void test_fmt_i64_edges(void **state)
{
    static const int64_t v[] = {
        0,   1,    -1,           9,         10,        -10,           99,           100,
        127, -128, 4294967296LL, INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1};

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        check(v[i]);
}

static void test_fmt_i64_random(void **state)
{
    (void)state;
    srand(12345);
    for (int i = 0; i < 100000; i++) {
        uint64_t u = ((uint64_t)rand() << 42) ^ ((uint64_t)rand() << 21) ^ (uint64_t)rand();

        check((int64_t)(u >> (unsigned)(rand() % 64)) * (rand() % 2 ? 1 : -1));
    }
}

static void test_buf_put_i64(void **state)
{
    struct buf b = {0};

    (void)state;
    assert_int_equal(buf_puts(&b, "["), 0);
    assert_int_equal(buf_put_i64(&b, -42), 0);
    assert_int_equal(buf_puts(&b, ","), 0);
    assert_int_equal(buf_put_i64(&b, INT64_MAX), 0);
    assert_int_equal(buf_puts(&b, "]"), 0);
    assert_string_equal(b.data, "[-42,9223372036854775807]");
    assert_int_equal(b.len, strlen(b.data));
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fmt_i64_edges),
        cmocka_unit_test(test_fmt_i64_random),
        cmocka_unit_test(test_buf_put_i64),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
