/*
 * tests/unit/test_jsoncheck.c - the allocation-free JSON validator used on the Invoke path
 * agrees with jansson on valid and invalid documents (numbers out of double range excepted:
 * they are valid JSON, which jansson refuses), including random mutations of a document.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/jsoncheck.h"

static int jansson_ok(const char *s, size_t n)
{
    json_t *j = json_loadb(s, n, JSON_DECODE_ANY, NULL);

    json_decref(j);
    return j != NULL;
}

static void test_table(void **state)
{
    static const char *const valid[] = {
        "{}", "[]", "1", "-0.5e+3", "\"x\"", "true", "false", "null", " \t\r\n{} ",
        "{\"a\":[1,2,{\"b\":null}],\"c\":\"\\u00e9\\ud83d\\ude00\"}", "[\"\\/\\b\\f\\n\\r\\t\"]",
        "{\"\":0}", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", "1e400",
    };
    static const char *const invalid[] = {
        "", "  ", "{", "[1,]", "{\"a\":}", "01", "1.", ".5", "\"\\u0000\"", "\"\\ud800\"",
        "\"\\udc00\"", "tru", "[1 2]", "{\"a\" 1}", "\"a\nb\"", "\"\xc3\"", "\"\xed\xa0\x80\"",
        "\"\xc0\xaf\"", "1 2", "{\"a\":1,}", "\"\\x\"", "-", "-01", "1e", "1e+", "{1:2}", "'a'",
        "NaN", "[1]]", "{}{}",
    };

    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        if (!jsoncheck(valid[i], strlen(valid[i])))
            fail_msg("refused valid JSON: %s", valid[i]);
    }
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        if (jsoncheck(invalid[i], strlen(invalid[i])))
            fail_msg("accepted invalid JSON: %s", invalid[i]);
    }
}

static void test_depth_limit(void **state)
{
    size_t n = JSONCHECK_MAX_DEPTH + 1;
    char *s = malloc(2 * n);

    assert_non_null(s);
    memset(s, '[', n);
    memset(s + n, ']', n);
    assert_false(jsoncheck(s, 2 * n));
    assert_true(jsoncheck(s + 1, 2 * n - 2));
    free(s);
}

/* Random mutations of a document: same verdict as jansson, unless a number overflows. */
static void test_mutations(void **state)
{
    static const char seed[] =
        "{\"a\":[1,-2.5e3,true,false,null,{\"b\":\"x\\u00e9\\n\"}],\"c\":\"\xc3\xa9\"}";
    static const char alpha[] = "{}[],:\"\\ u0123456789abcdefe.-+tnrl\xc3\xa9\xed\xff";
    char buf[256];
    unsigned seedv = 12345;

    for (int it = 0; it < 200000; it++) {
        size_t n = sizeof(seed) - 1;
        int m;

        memcpy(buf, seed, sizeof(seed));
        m = 1 + (int)(rand_r(&seedv) % 3);
        for (int k = 0; k < m; k++) {
            int op = (int)(rand_r(&seedv) % 3);
            size_t pos = (size_t)rand_r(&seedv) % (n + 1);
            char c = alpha[(size_t)rand_r(&seedv) % (sizeof(alpha) - 1)];

            if (op == 0 && n > 0) {
                buf[pos % n] = c;
            } else if (op == 1 && n > 0) {
                memmove(buf + pos % n, buf + pos % n + 1, n - pos % n);
                n--;
            } else if (n < sizeof(buf) - 2) {
                memmove(buf + pos + 1, buf + pos, n - pos + 1);
                buf[pos] = c;
                n++;
            }
        }
        n = strlen(buf);
        if (jsoncheck(buf, n) != jansson_ok(buf, n)) {
            /* The one known difference: exponents beyond double range. */
            if (strpbrk(buf, "eE") != NULL && jsoncheck(buf, n))
                continue;
            fail_msg("verdicts differ on [%s]: jsoncheck %d, jansson %d", buf, jsoncheck(buf, n),
                     jansson_ok(buf, n));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_mutations),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
