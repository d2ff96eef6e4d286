/* core/jsoncheck.c - see jsoncheck.h. */
#include "jsoncheck.h"

#include <stdint.h>

struct scan {
    const unsigned char *p, *end;
};

static void skip_ws(struct scan *sc)
{
    while (sc->p < sc->end &&
           (*sc->p == ' ' || *sc->p == '\t' || *sc->p == '\n' || *sc->p == '\r'))
        sc->p++;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Four hex digits after "\u" at P; -1 when malformed. */
static long hex4(struct scan *sc)
{
    long v = 0;

    if (sc->end - sc->p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        int h = hexval(sc->p[i]);

        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    sc->p += 4;
    return v;
}

/* One UTF-8 sequence starting at P (P[0] >= 0x80). Returns 1 and advances, or 0. */
static int utf8_seq(struct scan *sc)
{
    const unsigned char *p = sc->p;
    size_t left = (size_t)(sc->end - p);
    uint32_t cp;
    int n;

    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;
        cp = p[0] & 0x1f;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;
        cp = p[0] & 0x0f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }
    if (left < (size_t)n)
        return 0;
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    /* Overlong forms, surrogates and code points past U+10FFFF are not UTF-8. */
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    sc->p += n;
    return 1;
}

/* A string; P is at the opening quote. */
static int string(struct scan *sc)
{
    sc->p++;
    while (sc->p < sc->end) {
        unsigned char c = *sc->p;

        if (c == '"') {
            sc->p++;
            return 1;
        }
        if (c < 0x20)
            return 0;
        if (c >= 0x80) {
            if (!utf8_seq(sc))
                return 0;
            continue;
        }
        sc->p++;
        if (c != '\\')
            continue;
        if (sc->p >= sc->end)
            return 0;
        c = *sc->p++;
        switch (c) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            break;
        case 'u': {
            long v = hex4(sc);

            if (v <= 0) /* malformed, or \u0000 (refused like jansson does) */
                return 0;
            if (v >= 0xdc00 && v <= 0xdfff)
                return 0; /* a low surrogate alone */
            if (v >= 0xd800 && v <= 0xdbff) {
                long lo;

                if (sc->end - sc->p < 2 || sc->p[0] != '\\' || sc->p[1] != 'u')
                    return 0;
                sc->p += 2;
                lo = hex4(sc);
                if (lo < 0xdc00 || lo > 0xdfff)
                    return 0;
            }
            break;
        }
        default:
            return 0;
        }
    }
    return 0;
}

static int digits(struct scan *sc)
{
    const unsigned char *start = sc->p;

    while (sc->p < sc->end && *sc->p >= '0' && *sc->p <= '9')
        sc->p++;
    return sc->p > start;
}

static int number(struct scan *sc)
{
    if (*sc->p == '-')
        sc->p++;
    if (sc->p >= sc->end)
        return 0;
    if (*sc->p == '0')
        sc->p++;
    else if (!digits(sc))
        return 0;
    if (sc->p < sc->end && *sc->p == '.') {
        sc->p++;
        if (!digits(sc))
            return 0;
    }
    if (sc->p < sc->end && (*sc->p == 'e' || *sc->p == 'E')) {
        sc->p++;
        if (sc->p < sc->end && (*sc->p == '+' || *sc->p == '-'))
            sc->p++;
        if (!digits(sc))
            return 0;
    }
    return 1;
}

static int word(struct scan *sc, const char *w, size_t n)
{
    if ((size_t)(sc->end - sc->p) < n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (sc->p[i] != (unsigned char)w[i])
            return 0;
    }
    sc->p += n;
    return 1;
}

/* A scalar at P (not an object or array). */
static int scalar(struct scan *sc)
{
    switch (*sc->p) {
    case '"':
        return string(sc);
    case 't':
        return word(sc, "true", 4);
    case 'f':
        return word(sc, "false", 5);
    case 'n':
        return word(sc, "null", 4);
    default:
        if (*sc->p == '-' || (*sc->p >= '0' && *sc->p <= '9'))
            return number(sc);
        return 0;
    }
}

int jsoncheck(const char *s, size_t len)
{
    struct scan sc = {(const unsigned char *)s, (const unsigned char *)s + len};
    char stack[JSONCHECK_MAX_DEPTH]; /* '{' or '[' per open container */
    size_t depth = 0;

    skip_ws(&sc);
    for (;;) {
        /* Expect a value. */
        if (sc.p >= sc.end)
            return 0;
        if (*sc.p == '{' || *sc.p == '[') {
            char open = (char)*sc.p++;

            if (depth == JSONCHECK_MAX_DEPTH)
                return 0;
            stack[depth++] = open;
            skip_ws(&sc);
            if (sc.p < sc.end && *sc.p == (open == '{' ? '}' : ']')) {
                sc.p++;
                depth--;
                goto after_value;
            }
            if (open == '{')
                goto member_key;
            continue;
        }
        if (!scalar(&sc))
            return 0;
after_value:
        skip_ws(&sc);
        if (depth == 0)
            return sc.p == sc.end;
        if (sc.p >= sc.end)
            return 0;
        if (*sc.p == ',') {
            sc.p++;
            skip_ws(&sc);
            if (stack[depth - 1] == '{')
                goto member_key;
            continue;
        }
        if (*sc.p == (stack[depth - 1] == '{' ? '}' : ']')) {
            sc.p++;
            depth--;
            goto after_value;
        }
        return 0;
member_key:
        if (sc.p >= sc.end || *sc.p != '"' || !string(&sc))
            return 0;
        skip_ws(&sc);
        if (sc.p >= sc.end || *sc.p != ':')
            return 0;
        sc.p++;
        skip_ws(&sc);
    }
}
