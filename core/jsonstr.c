/*
 * core/jsonstr.c - see jsonstr.h.
 */
#include "jsonstr.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* True when the 8 bytes at P are ASCII that JSON takes as they are (no control, '"', '\\'). */
static bool plain8(const unsigned char *p)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    uint64_t w, lt, q, bs;

    memcpy(&w, p, 8);
    lt = (w - ones * 0x20) & ~w & highs; /* some byte < 0x20 (exact when no byte >= 0x80) */
    q = w ^ (ones * '"');
    q = (q - ones) & ~q & highs; /* some byte == '"' */
    bs = w ^ (ones * '\\');
    bs = (bs - ones) & ~bs & highs; /* some byte == '\\' */
    return ((w & highs) | lt | q | bs) == 0;
}

/* Length of the valid UTF-8 sequence of 2..4 bytes at S (LEFT bytes available), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t left)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    size_t n;

    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        if (c == 0xed)
            hi = 0x9f; /* UTF-16 surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (left < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return n;
}

/* The escape of control or special byte C (the spelling of buf_json_escape()): its length, and
 * its text into OUT when OUT is not NULL. */
static size_t escape(unsigned char c, char *out)
{
    static const char hex[] = "0123456789abcdef";
    char two;

    switch (c) {
    case '"':
        two = '"';
        break;
    case '\\':
        two = '\\';
        break;
    case '\n':
        two = 'n';
        break;
    case '\r':
        two = 'r';
        break;
    case '\t':
        two = 't';
        break;
    default:
        if (out != NULL) {
            memcpy(out, "\\u00", 4);
            out[4] = hex[c >> 4];
            out[5] = hex[c & 15];
        }
        return 6;
    }
    if (out != NULL) {
        out[0] = '\\';
        out[1] = two;
    }
    return 2;
}

size_t jsonstr_len(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, len = n;

    while (i < n) {
        unsigned char c;

        if (i + 8 <= n && plain8(s + i)) {
            i += 8;
            continue;
        }
        c = s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            i++;
        } else if (c >= 0x80) {
            size_t k = utf8_seq(s + i, n - i);

            if (k == 0)
                return SIZE_MAX;
            i += k;
        } else {
            len += escape(c, NULL) - 1;
            i++;
        }
    }
    return len;
}

char *jsonstr_put(char *dst, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t run = 0;

    /* Only the bytes that need an escape matter here: the input was checked. */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        memcpy(dst, s + run, i - run);
        dst += i - run;
        dst += escape(c, dst);
        run = i + 1;
    }
    memcpy(dst, s + run, n - run);
    return dst + n - run;
}
