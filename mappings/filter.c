/*
 * mappings/filter.c - filter patterns: the compiler (pattern text to a tree) and the matcher
 * (tree and record text to 0 or 1). filter.h describes the language and the choices made.
 *
 * Compiling. jansson checks that a pattern is JSON and supplies the message when it is not.
 * Our own scanner then walks the same text to build the tree: jansson forgets the text of a
 * number ("300.0" and "3e2" both become 300.0), which equality on numbers needs, and it cannot
 * say where a value starts, which the error messages need.
 *
 * The tree. A `node` is one pattern object together with the objects of its $or branches,
 * since those apply to the same record object. It holds every clause (key and a list of
 * alternatives, or key and a nested node) in one array, a key table sorted for lookups, and a
 * `group` tree saying how the clause results combine: AND inside a group, OR between the
 * branches of a $or.
 *
 * Matching. One pass over the record object per node. Each member key is looked up in the key
 * table; a member the pattern does not name is skipped without decoding; one it names is
 * evaluated in place (a list against the scalar or array there, a nested node recursively) and
 * the result is stored in one byte per clause of a stack array, the "slots", where each node
 * owns a contiguous range assigned at compile time. A later duplicate member overwrites the
 * earlier result, so the last one wins as in jansson. When the object ends, the group tree is
 * evaluated over those bytes; a clause whose key never appeared keeps its precomputed result
 * for an absent field. Strings are compared through a cursor that unescapes as it reads, so
 * nothing is copied; the text of a number is copied to a small stack buffer for strtod. The
 * recursion follows the pattern (at most MAX_DEPTH levels), never the record, whose arrays and
 * skipped values are walked with counters.
 */
#include "filter.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/errors.h"
#include "core/jsoncheck.h"

#define MAX_DEPTH 32     /* JSON nesting levels in one pattern */
#define MAX_SLOTS 1024   /* clauses in one pattern; 4096 characters hold fewer than 700 */
#define NUM_TEXT_MAX 64  /* the longest number text that `numeric` parses */
#define ADDR_TEXT_MAX 64 /* the longest string that `cidr` parses as an address */
#define EXPLAIN_VALUE_MAX 80

/* ---- the compiled form ------------------------------------------------------------------- */

enum mop {
    M_STR, /* equal to the string S */
    M_NUM, /* a number whose text is S */
    M_TRUE,
    M_FALSE,
    M_NULL,
    M_PREFIX,
    M_SUFFIX,
    M_EIC, /* equals-ignore-case */
    M_PREFIX_EIC,
    M_SUFFIX_EIC,
    M_WILDCARD,
    M_NUMERIC,
    M_CIDR,
    M_ANYBUT, /* a scalar matching none of SUB */
};

struct matcher {
    enum mop op;
    /*
     * The unescaped literal of the string tests, the text of M_NUM, the literal bytes of all
     * the segments of M_WILDCARD one after the other. Owned.
     */
    char *s;
    size_t n;
    size_t *seg; /* M_WILDCARD: the segment lengths, one more than the stars; owned */
    size_t nseg;
    double lo, hi; /* M_NUMERIC */
    unsigned char has_lo, has_hi, lo_incl, hi_incl;
    unsigned char addr[16]; /* M_CIDR: the block, host bits cleared */
    unsigned char v6, bits;
    unsigned char strings_only; /* M_ANYBUT: only strings can match */
    struct matcher *sub;        /* M_ANYBUT: the excluded values; owned */
    size_t nsub;
};

/* A list of alternatives. */
struct leaf {
    struct matcher *m; /* the alternatives other than exists; owned */
    size_t n;
    unsigned char exists_true, exists_false;
    unsigned char all_exact; /* only literal values: explain says "is not one of" */
    char *src;               /* the list's text without blanks, for explain; owned */
};

struct node;

struct clause {
    char *key; /* unescaped; owned */
    size_t klen;
    char *path;        /* "body.status", for messages; owned */
    struct leaf *leaf; /* exactly one of LEAF and NODE; owned */
    struct node *node;
    unsigned char absent;  /* the result when the object has no such member */
    unsigned char is_data; /* a top-level clause on the payload */
};

struct group;

/* One term of a group: a clause, or the branches of a $or (NBR > 0). */
struct item {
    size_t cl;
    struct group *br; /* owned */
    size_t nbr;
};

/* All items must hold. */
struct group {
    struct item *it; /* owned */
    size_t n, cap;
};

struct keyent {
    const char *key; /* borrowed from the clause */
    size_t klen;
    size_t cl;
};

struct node {
    struct clause *cl; /* every clause of the object and of its $or branches; owned */
    size_t ncl, capcl;
    size_t base;         /* the first slot of this node's clauses */
    struct keyent *keys; /* the clauses matched against members, by (length, bytes); owned */
    size_t nkeys;
    size_t *data; /* top level: the clauses on the payload; owned */
    size_t ndata;
    struct group root;
    unsigned char absent; /* the result when there is no object at all */
};

struct pattern {
    struct node *root;
};

struct filter {
    struct pattern pat[FILTER_MAX_PATTERNS];
    size_t n;
    char *data_key; /* owned; NULL = none */
    int must;
};

static void matchers_free(struct matcher *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(m[i].s);
        free(m[i].seg);
        matchers_free(m[i].sub, m[i].nsub);
    }
    free(m);
}

static void leaf_free(struct leaf *lf)
{
    if (lf == NULL)
        return;
    matchers_free(lf->m, lf->n);
    free(lf->src);
    free(lf);
}

static void group_free(struct group *g)
{
    for (size_t i = 0; i < g->n; i++) {
        for (size_t b = 0; b < g->it[i].nbr; b++)
            group_free(&g->it[i].br[b]);
        free(g->it[i].br);
    }
    free(g->it);
}

/* Frees a node, also a half-built one. */
static void node_free(struct node *nd)
{
    if (nd == NULL)
        return;
    for (size_t i = 0; i < nd->ncl; i++) {
        free(nd->cl[i].key);
        free(nd->cl[i].path);
        leaf_free(nd->cl[i].leaf);
        node_free(nd->cl[i].node);
    }
    free(nd->cl);
    free(nd->keys);
    free(nd->data);
    group_free(&nd->root);
    free(nd);
}

/*
 * All items of G hold, given the clause results ST (the node's slots). Evaluated after the
 * object is scanned, never during: a later duplicate member may still change a slot.
 */
static int eval_group(const struct group *g, const unsigned char *st)
{
    for (size_t i = 0; i < g->n; i++) {
        const struct item *it = &g->it[i];
        size_t b;

        if (it->nbr == 0) {
            if (!st[it->cl])
                return 0;
            continue;
        }
        for (b = 0; b < it->nbr; b++) {
            if (eval_group(&it->br[b], st))
                break;
        }
        if (b == it->nbr)
            return 0;
    }
    return 1;
}

/* ---- the scanner ------------------------------------------------------------------------- */

struct scan {
    const char *p, *end;
};

/* A string's inside, [p, end): escaped JSON text when ESC, else the bytes themselves. */
struct sv {
    const char *p, *end;
    int esc;
};

enum vtype { V_STR, V_NUM, V_TRUE, V_FALSE, V_NULL };

/* A scalar of the record. */
struct val {
    enum vtype type;
    struct sv s; /* V_STR: the string; V_NUM: the number's text */
};

static inline void ws(struct scan *sc)
{
    while (sc->p < sc->end && (*sc->p == ' ' || *sc->p == '\n' || *sc->p == '\r' || *sc->p == '\t'))
        sc->p++;
}

static inline int peekc(const struct scan *sc)
{
    return sc->p < sc->end ? (unsigned char)*sc->p : -1;
}

/* Word-at-a-time scanning (8 bytes) where the byte order makes the first hit easy to find. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SWAR 1
#endif
#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Whether one of the 8 bytes of W is B (the classic "has zero byte" test on W ^ B...B). */
static inline uint64_t has_byte(uint64_t w, unsigned char b)
{
    uint64_t x = w ^ (ONES * b);

    return (x - ONES) & ~x & HIGHS;
}

/* SC at an opening quote: S gets the inside, SC moves past the closing quote. 0 or -1. */
static int scan_str(struct scan *sc, struct sv *s)
{
    const char *q = sc->p + 1;
    int esc = 0;

    for (;;) {
#ifdef SWAR
        /*
         * Eight bytes at a time to the next quote or backslash. The lowest flagged byte is
         * always a real one (a false flag needs a borrow from a real one below it).
         */
        while (sc->end - q >= 8) {
            uint64_t w, hit;

            memcpy(&w, q, 8);
            hit = has_byte(w, '"') | has_byte(w, '\\');
            if (hit != 0) {
                q += __builtin_ctzll(hit) / 8;
                break;
            }
            q += 8;
        }
#endif
        if (q >= sc->end)
            return -1;
        if (*q == '"') {
            s->p = sc->p + 1;
            s->end = q;
            s->esc = esc;
            sc->p = q + 1;
            return 0;
        }
        if (*q == '\\') {
            /* The escaped byte is never the closing quote; \uXXXX digits are plain bytes. */
            if (sc->end - q < 2)
                return -1;
            esc = 1;
            q += 2;
            continue;
        }
        q++;
    }
}

static int word(struct scan *sc, const char *w, size_t n)
{
    if ((size_t)(sc->end - sc->p) < n || memcmp(sc->p, w, n) != 0)
        return -1;
    sc->p += n;
    return 0;
}

static inline int is_numch(int c)
{
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

/* SC at a value that is not an object or an array: V gets it, SC moves past it. 0 or -1. */
static int scan_scalar(struct scan *sc, struct val *v)
{
    int c = peekc(sc);

    switch (c) {
    case '"':
        v->type = V_STR;
        return scan_str(sc, &v->s);
    case 't':
        v->type = V_TRUE;
        return word(sc, "true", 4);
    case 'f':
        v->type = V_FALSE;
        return word(sc, "false", 5);
    case 'n':
        v->type = V_NULL;
        return word(sc, "null", 4);
    default:
        if (c != '-' && (c < '0' || c > '9'))
            return -1;
        v->type = V_NUM;
        v->s.p = sc->p;
        v->s.esc = 0;
        while (sc->p < sc->end && is_numch((unsigned char)*sc->p))
            sc->p++;
        v->s.end = sc->p;
        return 0;
    }
}

/*
 * SC at '{' or '[': move past the bracket that closes it. Only strings and brackets are looked
 * at (nesting is counted, not stacked): the record is ours, a payload is validated when it
 * matters, and on malformed text this still stops at the end.
 */
static int skip_container(struct scan *sc)
{
    const char *q = sc->p + 1;
    size_t depth = 1;
    struct sv s;

    for (;;) {
        char c;

#ifdef SWAR
        /* To the next quote or bracket; OR-ing 0x20 turns [ and ] into { and }. */
        while (sc->end - q >= 8) {
            uint64_t w, f, hit;

            memcpy(&w, q, 8);
            f = w | (ONES * 0x20);
            hit = has_byte(w, '"') | has_byte(f, '{') | has_byte(f, '}');
            if (hit != 0) {
                q += __builtin_ctzll(hit) / 8;
                break;
            }
            q += 8;
        }
#endif
        if (q >= sc->end)
            return -1;
        c = *q;
        if (c == '"') {
            sc->p = q;
            if (scan_str(sc, &s) < 0)
                return -1;
            q = sc->p;
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        } else if ((c == '}' || c == ']') && --depth == 0) {
            sc->p = q + 1;
            return 0;
        }
        q++;
    }
}

/* Move SC (at a value, or blanks before it) past the value. 0 or -1. */
static int skip_value(struct scan *sc)
{
    struct val v;
    int c;

    ws(sc);
    c = peekc(sc);
    if (c == '{' || c == '[')
        return skip_container(sc);
    return scan_scalar(sc, &v);
}

/*
 * Walking an array with nested arrays flattened. SC starts at '['. arr_next() returns 1 with
 * SC at the next element that is not an array (the caller consumes it), 0 after the closing
 * bracket, -1 on malformed text.
 */
struct arr {
    size_t depth;
    int fresh; /* just after '[': ']' may come */
    int after; /* an element was consumed: ',' or ']' comes */
};

static int arr_next(struct scan *sc, struct arr *a)
{
    for (;;) {
        int c;

        ws(sc);
        c = peekc(sc);
        if (a->after) {
            if (c == ',') {
                sc->p++;
                a->after = 0;
                continue;
            }
            if (c != ']')
                return -1;
            sc->p++;
            if (--a->depth == 0)
                return 0;
            continue;
        }
        if (c == '[') {
            sc->p++;
            a->depth++;
            a->fresh = 1;
            continue;
        }
        if (c == ']' && a->fresh) {
            sc->p++;
            a->fresh = 0;
            a->after = 1;
            if (--a->depth == 0)
                return 0;
            continue;
        }
        if (c < 0)
            return -1;
        a->fresh = 0;
        a->after = 1;
        return 1;
    }
}

/* ---- reading strings through escapes ----------------------------------------------------- */

/* A read position in a `struct sv`: bytes of one decoded escape wait in B[I..N). */
struct cur {
    const char *p;
    unsigned char b[4];
    unsigned char n, i;
};

static inline void cur_init(struct cur *c, const struct sv *s)
{
    c->p = s->p;
    c->n = 0;
    c->i = 0;
}

/* The value of 4 hex digits at P (the caller checked they are there), or -1. */
static int hex4(const char *p)
{
    int v = 0;

    for (int i = 0; i < 4; i++) {
        char c = p[i];

        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

/* CP (at most U+10FFFF) as UTF-8 into B; returns its length. */
static unsigned char put_utf8(unsigned char *b, uint32_t cp)
{
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (unsigned char)(0xc0 | (cp >> 6));
        b[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        b[0] = (unsigned char)(0xe0 | (cp >> 12));
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    b[0] = (unsigned char)(0xf0 | (cp >> 18));
    b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    b[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

/*
 * C at a backslash: decode one escape and return its first byte. Valid JSON never takes the
 * fallbacks; in malformed text they keep us inside the string (a lone surrogate reads U+FFFD,
 * a bad \u reads as the letter u).
 */
static int cur_escape(const struct sv *s, struct cur *c)
{
    const char *p = c->p + 1;
    int cp, lo;

    if (p >= s->end) {
        c->p = p;
        return '\\';
    }
    switch (*p) {
    case 'b':
        c->p = p + 1;
        return '\b';
    case 'f':
        c->p = p + 1;
        return '\f';
    case 'n':
        c->p = p + 1;
        return '\n';
    case 'r':
        c->p = p + 1;
        return '\r';
    case 't':
        c->p = p + 1;
        return '\t';
    case 'u':
        break;
    default: /* \" \\ \/ */
        c->p = p + 1;
        return (unsigned char)*p;
    }
    if (s->end - p < 5 || (cp = hex4(p + 1)) < 0) {
        c->p = p + 1;
        return 'u';
    }
    p += 5;
    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (s->end - p >= 6 && p[0] == '\\' && p[1] == 'u' && (lo = hex4(p + 2)) >= 0xdc00 &&
            lo <= 0xdfff) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            p += 6;
        } else {
            cp = 0xfffd;
        }
    } else if (cp >= 0xdc00 && cp <= 0xdfff) {
        cp = 0xfffd;
    }
    c->p = p;
    c->n = put_utf8(c->b, (uint32_t)cp);
    c->i = 1;
    return c->b[0];
}

/* The next unescaped byte of S, or -1 at its end. */
static inline int cur_get(const struct sv *s, struct cur *c)
{
    if (c->i < c->n)
        return c->b[c->i++];
    if (c->p >= s->end)
        return -1;
    if (!s->esc || *c->p != '\\')
        return (unsigned char)*c->p++;
    return cur_escape(s, c);
}

static inline unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/*
 * Folding is ASCII only: Lambda does not say which case mapping it uses, and a full Unicode
 * one needs tables and can change a string's length, which the incremental compare cannot
 * follow. Bytes of multi-byte characters are never letters, so UTF-8 stays intact.
 */
static int mem_eq(const char *a, const char *b, size_t n, int fold)
{
    if (!fold)
        return memcmp(a, b, n) == 0;
    for (size_t i = 0; i < n; i++) {
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return 0;
    }
    return 1;
}

/* The next N bytes at C equal LIT (ASCII case folded when FOLD); C moves past what it read. */
static int cur_eat(const struct sv *s, struct cur *c, const char *lit, size_t n, int fold)
{
    for (size_t i = 0; i < n; i++) {
        int b = cur_get(s, c);

        if (b < 0)
            return 0;
        if (fold ? lower((unsigned char)b) != lower((unsigned char)lit[i])
                 : b != (unsigned char)lit[i])
            return 0;
    }
    return 1;
}

/* How many bytes are left from C (a copy: C itself does not move). */
static size_t cur_left(const struct sv *s, struct cur c)
{
    size_t k = 0;

    while (cur_get(s, &c) >= 0)
        k++;
    return k;
}

static void cur_skip(const struct sv *s, struct cur *c, size_t k)
{
    while (k-- > 0)
        cur_get(s, c);
}

static inline size_t sv_rawlen(const struct sv *s)
{
    return (size_t)(s->end - s->p);
}

/*
 * The three string tests. Without escapes they are memcmp on the raw bytes; with escapes they
 * unescape through a cursor. A suffix needs the decoded length first, so that case reads the
 * string twice (still without copying).
 */
static int sv_eq(const struct sv *s, const char *lit, size_t n, int fold)
{
    struct cur c;

    if (!s->esc)
        return sv_rawlen(s) == n && mem_eq(s->p, lit, n, fold);
    /* An escape never decodes to more bytes than it takes, so a shorter text cannot equal. */
    if (sv_rawlen(s) < n)
        return 0;
    cur_init(&c, s);
    return cur_eat(s, &c, lit, n, fold) && cur_get(s, &c) < 0;
}

static int sv_prefix(const struct sv *s, const char *lit, size_t n, int fold)
{
    struct cur c;

    if (!s->esc)
        return sv_rawlen(s) >= n && mem_eq(s->p, lit, n, fold);
    cur_init(&c, s);
    return cur_eat(s, &c, lit, n, fold);
}

static int sv_suffix(const struct sv *s, const char *lit, size_t n, int fold)
{
    struct cur c;
    size_t len;

    if (!s->esc)
        return sv_rawlen(s) >= n && mem_eq(s->end - n, lit, n, fold);
    cur_init(&c, s);
    len = cur_left(s, c);
    if (len < n)
        return 0;
    cur_skip(s, &c, len - n);
    return cur_eat(s, &c, lit, n, fold);
}

/*
 * seg0 * seg1 * ... * segK: seg0 is a prefix, segK a suffix of what is left after the middle
 * segments, each of which is taken at its leftmost place; with stars only, leftmost is never
 * worse, so there is no backtracking beyond the one-segment retry.
 */
static int sv_wildcard(const struct sv *s, const struct matcher *m)
{
    const char *lit = m->s;
    size_t last = m->nseg - 1;
    struct cur c;
    size_t left;

    cur_init(&c, s);
    if (!cur_eat(s, &c, lit, m->seg[0], 0))
        return 0;
    if (last == 0)
        return cur_get(s, &c) < 0;
    lit += m->seg[0];
    for (size_t i = 1; i < last; i++) {
        for (;;) {
            struct cur t = c;

            if (cur_eat(s, &t, lit, m->seg[i], 0)) {
                c = t;
                break;
            }
            if (cur_get(s, &c) < 0)
                return 0;
        }
        lit += m->seg[i];
    }
    left = cur_left(s, c);
    if (left < m->seg[last])
        return 0;
    cur_skip(s, &c, left - m->seg[last]);
    return cur_eat(s, &c, lit, m->seg[last], 0);
}

/*
 * `numeric`: the record's number text through strtod on a bounded copy (the text is not
 * NUL-terminated where it lies). Texts of NUM_TEXT_MAX bytes or more never match; JSON allows
 * them, but such numbers do not come from real producers. strtod runs in the C locale unless
 * the process calls setlocale(), which the broker does not.
 */
static int num_test(const struct matcher *m, const struct sv *t)
{
    char tmp[NUM_TEXT_MAX];
    size_t n = sv_rawlen(t);
    char *endp;
    double d;

    if (n == 0 || n >= sizeof(tmp))
        return 0;
    memcpy(tmp, t->p, n);
    tmp[n] = '\0';
    d = strtod(tmp, &endp);
    if (endp != tmp + n)
        return 0;
    if (m->has_lo && (m->lo_incl ? d < m->lo : d <= m->lo))
        return 0;
    if (m->has_hi && (m->hi_incl ? d > m->hi : d >= m->hi))
        return 0;
    return 1;
}

/* The first BITS bits of A and B agree. */
static int bits_eq(const unsigned char *a, const unsigned char *b, unsigned bits)
{
    size_t full = bits / 8;
    unsigned rem = bits % 8;
    unsigned char mask;

    if (memcmp(a, b, full) != 0)
        return 0;
    if (rem == 0)
        return 1;
    mask = (unsigned char)(0xff << (8 - rem));
    return (a[full] & mask) == (b[full] & mask);
}

/*
 * `cidr`: the string must be an address of the block's family (an IPv4 string never matches
 * an IPv6 block, IPv4-mapped forms included); inet_pton wants a NUL-terminated copy.
 */
static int cidr_test(const struct matcher *m, const struct sv *s)
{
    char tmp[ADDR_TEXT_MAX];
    unsigned char a[16];
    struct cur c;
    size_t n = 0;
    int b;

    cur_init(&c, s);
    while ((b = cur_get(s, &c)) >= 0) {
        if (n + 1 >= sizeof(tmp) || b == 0)
            return 0;
        tmp[n++] = (char)b;
    }
    tmp[n] = '\0';
    if (inet_pton(m->v6 ? AF_INET6 : AF_INET, tmp, a) != 1)
        return 0;
    return bits_eq(a, m->addr, m->bits);
}

/*
 * One alternative against one scalar. Types never convert: the string "5" is not the number 5
 * for any operator. Number equality (M_NUM) compares the texts, as EventBridge documents.
 * anything-but is "a scalar equal to none of these"; with a string operator inside it is "a
 * string passing none of these", so it never matches a number, a boolean or null.
 */
static int m_test(const struct matcher *m, const struct val *v)
{
    switch (m->op) {
    case M_STR:
        return v->type == V_STR && sv_eq(&v->s, m->s, m->n, 0);
    case M_NUM:
        return v->type == V_NUM && sv_rawlen(&v->s) == m->n && memcmp(v->s.p, m->s, m->n) == 0;
    case M_TRUE:
        return v->type == V_TRUE;
    case M_FALSE:
        return v->type == V_FALSE;
    case M_NULL:
        return v->type == V_NULL;
    case M_PREFIX:
        return v->type == V_STR && sv_prefix(&v->s, m->s, m->n, 0);
    case M_SUFFIX:
        return v->type == V_STR && sv_suffix(&v->s, m->s, m->n, 0);
    case M_EIC:
        return v->type == V_STR && sv_eq(&v->s, m->s, m->n, 1);
    case M_PREFIX_EIC:
        return v->type == V_STR && sv_prefix(&v->s, m->s, m->n, 1);
    case M_SUFFIX_EIC:
        return v->type == V_STR && sv_suffix(&v->s, m->s, m->n, 1);
    case M_WILDCARD:
        return v->type == V_STR && sv_wildcard(&v->s, m);
    case M_NUMERIC:
        return v->type == V_NUM && num_test(m, &v->s);
    case M_CIDR:
        return v->type == V_STR && cidr_test(m, &v->s);
    case M_ANYBUT:
        if (m->strings_only && v->type != V_STR)
            return 0;
        for (size_t i = 0; i < m->nsub; i++) {
            if (m_test(&m->sub[i], v))
                return 0;
        }
        return 1;
    }
    return 0;
}

/* Any alternative of LF (exists aside: that is a property of the field, not of a value). */
static int leaf_test(const struct leaf *lf, const struct val *v)
{
    for (size_t i = 0; i < lf->n; i++) {
        if (m_test(&lf->m[i], v))
            return 1;
    }
    return 0;
}

/* ---- matching ---------------------------------------------------------------------------- */

enum { D_UNKNOWN, D_ABSENT, D_JSON, D_TEXT, D_BINARY };

/* One filter_match() call. */
struct mctx {
    const struct filter *f;
    const char *data;
    size_t dlen;
    int dclass; /* D_*, worked out on first use */
    unsigned char st[MAX_SLOTS];
};

/* RFC 3629 UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF. */
static int utf8_valid(const unsigned char *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned char c = p[i];
        uint32_t cp;
        size_t k;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            k = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 4;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i < k)
            return 0;
        for (size_t j = 1; j < k; j++) {
            if ((p[i + j] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i + j] & 0x3f);
        }
        if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k;
    }
    return 1;
}

/* The payload's format (section 6.5), worked out once per filter_match() call. */
static int payload_class(struct mctx *mx)
{
    if (mx->dclass != D_UNKNOWN)
        return mx->dclass;
    if (mx->data == NULL)
        mx->dclass = D_ABSENT;
    else if (jsoncheck(mx->data, mx->dlen))
        mx->dclass = D_JSON;
    else if (utf8_valid((const unsigned char *)mx->data, mx->dlen))
        mx->dclass = D_TEXT;
    else
        mx->dclass = D_BINARY;
    return mx->dclass;
}

/*
 * SC at a value: does it satisfy LF? 1, 0, or -1 (malformed). SC moves past the value.
 * The field's scalars are the value itself or, for an array, its elements with nested arrays
 * flattened and objects left out; exists asks whether there is at least one.
 */
static int leaf_value(const struct leaf *lf, struct scan *sc)
{
    struct arr a = {0};
    int matched = 0, saw = 0, r, c = peekc(sc);
    struct val v;

    if (c == '{') {
        /* An object holds no scalar here: for this list the field is absent. */
        if (skip_value(sc) < 0)
            return -1;
    } else if (c != '[') {
        if (scan_scalar(sc, &v) < 0)
            return -1;
        saw = 1;
        matched = leaf_test(lf, &v);
    } else {
        while ((r = arr_next(sc, &a)) == 1) {
            if (peekc(sc) == '{') {
                if (skip_value(sc) < 0)
                    return -1;
                continue;
            }
            if (scan_scalar(sc, &v) < 0)
                return -1;
            saw = 1;
            if (!matched)
                matched = leaf_test(lf, &v);
        }
        if (r < 0)
            return -1;
    }
    return matched || (saw ? lf->exists_true : lf->exists_false);
}

static int node_value(struct mctx *mx, const struct node *nd, struct scan *sc);

static int key_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn)
        return an < bn ? -1 : 1;
    return memcmp(a, b, an);
}

/* The range [*LO, *HI) of ND's key table whose key is K. */
static void key_find(const struct node *nd, const struct sv *k, size_t *lo, size_t *hi)
{
    size_t l = 0, h = nd->nkeys;

    if (!k->esc) {
        size_t n = sv_rawlen(k);

        while (l < h) {
            size_t mid = l + (h - l) / 2;

            if (key_cmp(nd->keys[mid].key, nd->keys[mid].klen, k->p, n) < 0)
                l = mid + 1;
            else
                h = mid;
        }
        h = l;
        while (h < nd->nkeys && key_cmp(nd->keys[h].key, nd->keys[h].klen, k->p, n) == 0)
            h++;
    } else {
        /* A key with escapes is rare: compare it with each key, unescaping as it goes. */
        for (l = 0; l < nd->nkeys; l++) {
            if (sv_eq(k, nd->keys[l].key, nd->keys[l].klen, 0))
                break;
        }
        h = l;
        while (h < nd->nkeys &&
               key_cmp(nd->keys[h].key, nd->keys[h].klen, nd->keys[l].key, nd->keys[l].klen) == 0)
            h++;
    }
    *lo = l;
    *hi = h;
}

/*
 * SC at '{': reset ND's slots to their absent results, then fill them from the object's
 * members. 0, or -1 on malformed text. SC ends after the '}'.
 */
static int node_scan(struct mctx *mx, const struct node *nd, struct scan *sc)
{
    unsigned char *st = mx->st + nd->base;

    for (size_t i = 0; i < nd->ncl; i++)
        st[i] = nd->cl[i].absent;
    sc->p++;
    ws(sc);
    if (peekc(sc) == '}') {
        sc->p++;
        return 0;
    }
    for (;;) {
        struct sv key;
        size_t lo, hi;
        int c;

        if (peekc(sc) != '"' || scan_str(sc, &key) < 0)
            return -1;
        ws(sc);
        if (peekc(sc) != ':')
            return -1;
        sc->p++;
        ws(sc);
        key_find(nd, &key, &lo, &hi);
        if (lo == hi) {
            if (skip_value(sc) < 0)
                return -1;
        } else {
            /* Several clauses may name the key (from $or branches): each reads the value. */
            const char *v = sc->p;

            for (size_t k = lo; k < hi; k++) {
                const struct clause *cl = &nd->cl[nd->keys[k].cl];
                int r;

                sc->p = v;
                r = cl->leaf ? leaf_value(cl->leaf, sc) : node_value(mx, cl->node, sc);
                if (r < 0)
                    return -1;
                st[nd->keys[k].cl] = (unsigned char)r;
            }
        }
        ws(sc);
        c = peekc(sc);
        if (c == ',') {
            sc->p++;
            ws(sc);
            continue;
        }
        if (c != '}')
            return -1;
        sc->p++;
        return 0;
    }
}

/*
 * SC at a value that nested pattern ND is matched against: an object is matched, an array
 * matches when an element does, a scalar is an object without members. 1, 0 or -1.
 */
static int node_value(struct mctx *mx, const struct node *nd, struct scan *sc)
{
    struct arr a = {0};
    int any = 0, res = 0, r, c = peekc(sc);
    struct val v;

    if (c == '{') {
        if (node_scan(mx, nd, sc) < 0)
            return -1;
        return eval_group(&nd->root, mx->st + nd->base);
    }
    if (c != '[')
        return scan_scalar(sc, &v) < 0 ? -1 : nd->absent;
    while ((r = arr_next(sc, &a)) == 1) {
        any = 1;
        if (res) {
            if (skip_value(sc) < 0)
                return -1;
        } else if (peekc(sc) == '{') {
            if (node_scan(mx, nd, sc) < 0)
                return -1;
            res = eval_group(&nd->root, mx->st + nd->base);
        } else {
            if (scan_scalar(sc, &v) < 0)
                return -1;
            res = nd->absent;
        }
    }
    if (r < 0)
        return -1;
    return any ? res : nd->absent;
}

/*
 * A top-level clause on the payload (section 6.5; filter.h has the summary).
 *
 * Validating the payload costs as much as matching it, so the match is tried first, on the
 * assumption that the format fits, and the payload is classified only when the answer depends
 * on it. For a JSON pattern the result is "JSON and matches" under data_must_match=1 and
 * "matches or not JSON" under 0: a miss settles the first, a hit the second. (The scanner
 * accepts every valid document, so a scan error means "not JSON".) A plain-string pattern is
 * the same with "text" for "JSON".
 */
static int data_clause(struct mctx *mx, const struct clause *cl)
{
    int must = mx->f->must, hit, fits;

    if (mx->data == NULL)
        return cl->absent;
    if (cl->leaf != NULL && cl->leaf->n == 0)
        return cl->leaf->exists_true; /* only exists: is there a payload? */
    if (cl->node != NULL) {
        struct scan sc = {mx->data, mx->data + mx->dlen};

        ws(&sc);
        hit = node_value(mx, cl->node, &sc) > 0;
    } else {
        struct val v = {V_STR, {mx->data, mx->data + mx->dlen, 0}};

        hit = leaf_test(cl->leaf, &v) || cl->leaf->exists_true;
    }
    if (hit != must)
        return hit;
    fits = payload_class(mx) == (cl->node != NULL ? D_JSON : D_TEXT);
    return must ? fits : !fits;
}

/*
 * Fill the slots of PT's root from REC and the payload. 0, or -1 when REC is not an object.
 * *OBJ gets REC's opening brace (NULL for an empty record).
 */
static int pattern_slots(struct mctx *mx, const struct pattern *pt, const char *rec, size_t rec_len,
                         const char **obj)
{
    const struct node *nd = pt->root;
    unsigned char *st = mx->st + nd->base;

    *obj = NULL;
    if (rec == NULL || rec_len == 0) {
        for (size_t i = 0; i < nd->ncl; i++)
            st[i] = nd->cl[i].absent;
    } else {
        struct scan sc = {rec, rec + rec_len};

        ws(&sc);
        if (peekc(&sc) != '{')
            return -1;
        *obj = sc.p;
        if (node_scan(mx, nd, &sc) < 0)
            return -1;
    }
    for (size_t i = 0; i < nd->ndata; i++)
        st[nd->data[i]] = (unsigned char)data_clause(mx, &nd->cl[nd->data[i]]);
    return 0;
}

static void mctx_init(struct mctx *mx, const struct filter *f, const char *data, size_t dlen)
{
    mx->f = f;
    mx->data = data;
    mx->dlen = data != NULL ? dlen : 0;
    mx->dclass = D_UNKNOWN;
}

int filter_match(const struct filter *f, const char *rec, size_t rec_len, const char *data,
                 size_t data_len)
{
    struct mctx mx;

    if (f->n == 0)
        return 1;
    mctx_init(&mx, f, data, data_len);
    for (size_t i = 0; i < f->n; i++) {
        const struct node *nd = f->pat[i].root;
        const char *obj;

        if (pattern_slots(&mx, &f->pat[i], rec, rec_len, &obj) < 0)
            continue;
        if (eval_group(&nd->root, mx.st + nd->base))
            return 1;
    }
    return 0;
}

size_t filter_count(const struct filter *f)
{
    return f->n;
}

/* ---- explaining -------------------------------------------------------------------------- */

/*
 * Append [P, END) without the blanks outside strings. With MAX, stop at the first character
 * boundary past MAX bytes and append "...".
 */
static void compact(struct buf *b, const char *p, const char *end, size_t max)
{
    size_t out = 0;
    int in_str = 0;

    for (; p < end; p++) {
        unsigned char c = (unsigned char)*p;

        if (max > 0 && out >= max && (c & 0xc0) != 0x80) {
            buf_puts(b, "...");
            return;
        }
        if (in_str) {
            if (c == '\\' && p + 1 < end) {
                buf_append(b, p, 2);
                out += 2;
                p++;
                continue;
            }
            if (c == '"')
                in_str = 0;
        } else if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
            continue;
        } else if (c == '"') {
            in_str = 1;
        }
        buf_append(b, p, 1);
        out++;
    }
}

/* Append the value at V (shortened). */
static void show_value(struct buf *b, const char *v, const char *end)
{
    struct scan sc = {v, end};

    if (skip_value(&sc) < 0)
        sc.p = end;
    compact(b, v, sc.p, EXPLAIN_VALUE_MAX);
}

/* The value of the last member named KEY in the object at OBJ (NULL: no object), or NULL. */
static const char *member_find(const char *obj, const char *end, const char *key, size_t klen)
{
    struct scan sc = {obj, end};
    const char *found = NULL;

    if (obj == NULL)
        return NULL;
    sc.p++;
    ws(&sc);
    if (peekc(&sc) == '}')
        return NULL;
    for (;;) {
        struct sv k;

        if (peekc(&sc) != '"' || scan_str(&sc, &k) < 0)
            return found;
        ws(&sc);
        if (peekc(&sc) != ':')
            return found;
        sc.p++;
        ws(&sc);
        if (sv_eq(&k, key, klen, 0))
            found = sc.p;
        if (skip_value(&sc) < 0)
            return found;
        ws(&sc);
        if (peekc(&sc) != ',')
            return found;
        sc.p++;
        ws(&sc);
    }
}

static void explain_group(struct mctx *mx, struct buf *b, const struct node *nd,
                          const struct group *g, const char *obj, const char *end);

static void show_leaf(struct buf *b, const struct leaf *lf)
{
    buf_printf(b, " %s %s", lf->all_exact ? "is not one of" : "does not match", lf->src);
}

/* Clause CL failed on the value at V. */
static void explain_value(struct mctx *mx, struct buf *b, const struct clause *cl, const char *v,
                          const char *end)
{
    struct scan sc = {v, end};

    if (cl->node != NULL && *v == '{') {
        /* The failing clause inside names its own full path. */
        if (node_scan(mx, cl->node, &sc) < 0)
            buf_printf(b, "%s: malformed JSON", cl->path);
        else
            explain_group(mx, b, cl->node, &cl->node->root, v, end);
        return;
    }
    buf_printf(b, "%s: ", cl->path);
    if (cl->leaf != NULL) {
        show_value(b, v, end);
        show_leaf(b, cl->leaf);
        return;
    }
    if (*v == '[') {
        buf_puts(b, "no element of ");
        show_value(b, v, end);
        buf_puts(b, " matches");
        return;
    }
    show_value(b, v, end);
    buf_puts(b, " is not an object");
}

static void explain_data(struct mctx *mx, struct buf *b, const struct clause *cl)
{
    int dc = payload_class(mx);
    const char *dk = cl->path;

    if (dc == D_ABSENT) {
        buf_printf(b, "%s: missing (the record has no payload)", dk);
    } else if (cl->leaf != NULL && cl->leaf->n == 0) {
        buf_printf(b, "%s: there is a payload but the pattern wants none", dk);
    } else if (dc == D_BINARY) {
        buf_printf(b, "%s: the payload is not valid UTF-8", dk);
    } else if (dc == D_JSON && cl->leaf != NULL) {
        buf_printf(b, "%s: the payload is JSON but the pattern expects a plain string", dk);
    } else if (dc == D_TEXT && cl->node != NULL) {
        buf_printf(b, "%s: the payload is not JSON but the pattern expects JSON", dk);
    } else if (dc == D_TEXT) {
        size_t n = mx->dlen;
        int cut = 0;

        if (n > EXPLAIN_VALUE_MAX) {
            n = EXPLAIN_VALUE_MAX;
            while (n > 0 && ((unsigned char)mx->data[n] & 0xc0) == 0x80)
                n--;
            cut = 1;
        }
        buf_printf(b, "%s: \"", dk);
        buf_json_escape(b, mx->data, n);
        buf_puts(b, cut ? "\"..." : "\"");
        show_leaf(b, cl->leaf);
    } else {
        struct scan sc = {mx->data, mx->data + mx->dlen};

        ws(&sc);
        explain_value(mx, b, cl, sc.p, sc.end);
    }
}

static void explain_clause(struct mctx *mx, struct buf *b, const struct clause *cl, const char *obj,
                           const char *end)
{
    const char *v;

    if (cl->is_data) {
        explain_data(mx, b, cl);
        return;
    }
    v = member_find(obj, end, cl->key, cl->klen);
    if (v == NULL) {
        buf_printf(b, "%s: missing", cl->path);
        return;
    }
    explain_value(mx, b, cl, v, end);
}

/* G failed on the object at OBJ, whose results are in ND's slots: say why, for its first item. */
static void explain_group(struct mctx *mx, struct buf *b, const struct node *nd,
                          const struct group *g, const char *obj, const char *end)
{
    const unsigned char *st = mx->st + nd->base;

    for (size_t i = 0; i < g->n; i++) {
        const struct item *it = &g->it[i];
        size_t k;

        if (it->nbr == 0) {
            if (st[it->cl])
                continue;
            explain_clause(mx, b, &nd->cl[it->cl], obj, end);
            return;
        }
        for (k = 0; k < it->nbr; k++) {
            if (eval_group(&it->br[k], st))
                break;
        }
        if (k < it->nbr)
            continue;
        buf_printf(b, "$or: none of %zu branches matches; branch 1: ", it->nbr);
        explain_group(mx, b, nd, &it->br[0], obj, end);
        return;
    }
    buf_puts(b, "no clause failed");
}

int filter_explain(const struct filter *f, const char *rec, size_t rec_len, const char *data,
                   size_t data_len, struct buf *why)
{
    struct mctx mx;

    if (filter_match(f, rec, rec_len, data, data_len))
        return 1;
    if (why == NULL)
        return 0;
    mctx_init(&mx, f, data, data_len);
    for (size_t i = 0; i < f->n; i++) {
        const struct node *nd = f->pat[i].root;
        const char *obj;

        buf_printf(why, "pattern %zu: ", i + 1);
        if (pattern_slots(&mx, &f->pat[i], rec, rec_len, &obj) < 0)
            buf_puts(why, "the record is not a JSON object");
        else
            explain_group(&mx, why, nd, &nd->root, obj, obj != NULL ? rec + rec_len : NULL);
        buf_puts(why, "\n");
    }
    return 0;
}

/* ---- compiling --------------------------------------------------------------------------- */

/* One pattern being compiled. */
struct cc {
    const char *text; /* borrowed: the pattern */
    size_t len;
    const char *dkey; /* borrowed: the data key, or NULL */
    size_t dklen;
    char why[256];
    size_t off;
    int failed;
};

static int fail_at(struct cc *cc, const char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Record the first error, at byte AT of the text. Returns -1. */
static int fail_at(struct cc *cc, const char *at, const char *fmt, ...)
{
    va_list ap;

    if (cc->failed)
        return -1;
    va_start(ap, fmt);
    vsnprintf(cc->why, sizeof(cc->why), fmt, ap);
    va_end(ap);
    cc->off = (size_t)(at - cc->text);
    cc->failed = 1;
    return -1;
}

/*
 * P (N of *CAP elements of SIZE bytes used) with room for one more: P itself, a bigger block,
 * or NULL (P is untouched then).
 */
static void *grow(void *p, size_t n, size_t *cap, size_t size)
{
    size_t nc;
    void *q;

    if (n < *cap)
        return p;
    nc = *cap ? *cap * 2 : 4;
    q = realloc(p, nc * size);
    if (q == NULL)
        return NULL;
    *cap = nc;
    return q;
}

static inline const char *text_end(const struct cc *cc)
{
    return cc->text + cc->len;
}

/* The unescaped bytes of S as a new NUL-terminated string of *N bytes, or NULL. */
static char *sv_dup(const struct sv *s, size_t *n)
{
    struct cur c;
    size_t len, i = 0;
    char *out;
    int b;

    cur_init(&c, s);
    len = cur_left(s, c);
    out = malloc(len + 1);
    if (out == NULL)
        return NULL;
    while ((b = cur_get(s, &c)) >= 0)
        out[i++] = (char)b;
    out[i] = '\0';
    *n = i;
    return out;
}

/* The string at V (an opening quote), unescaped, as a new string. 0, or -1 (failed). */
static int str_at(struct cc *cc, const char *v, char **s, size_t *n)
{
    struct scan sc = {v, text_end(cc)};
    struct sv t;

    if (scan_str(&sc, &t) < 0)
        return fail_at(cc, v, "malformed string");
    *s = sv_dup(&t, n);
    if (*s == NULL)
        return fail_at(cc, v, "out of memory");
    return 0;
}

struct member {
    char *key; /* unescaped; owned */
    size_t klen;
    const char *kpos; /* the key's opening quote */
    const char *vpos; /* the value's first byte */
};

static void members_free(struct member *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(m[i].key);
    free(m);
}

/*
 * The members of the object at POS (the text is valid JSON), with duplicates resolved: the
 * last one wins, in its own place. *OUT is new (members_free). 0 or -1.
 */
static int members(struct cc *cc, const char *pos, struct member **out, size_t *nout)
{
    struct scan sc = {pos + 1, text_end(cc)};
    struct member *m = NULL;
    size_t n = 0, cap = 0, k = 0;

    ws(&sc);
    while (peekc(&sc) == '"') {
        struct sv key;
        struct member *q = grow(m, n, &cap, sizeof(*m));

        if (q == NULL)
            goto fail_nomem;
        m = q;
        m[n].kpos = sc.p;
        if (scan_str(&sc, &key) < 0)
            goto fail_syntax;
        m[n].key = sv_dup(&key, &m[n].klen);
        if (m[n].key == NULL)
            goto fail_nomem;
        n++;
        ws(&sc);
        if (peekc(&sc) != ':')
            goto fail_syntax;
        sc.p++;
        ws(&sc);
        m[n - 1].vpos = sc.p;
        if (skip_value(&sc) < 0)
            goto fail_syntax;
        ws(&sc);
        if (peekc(&sc) != ',')
            break;
        sc.p++;
        ws(&sc);
    }
    /* Quadratic, but a 4096-character object has a few hundred members at most. */
    for (size_t i = 0; i < n; i++) {
        size_t j;

        for (j = i + 1; j < n; j++) {
            if (m[j].klen == m[i].klen && memcmp(m[j].key, m[i].key, m[i].klen) == 0)
                break;
        }
        if (j < n) {
            free(m[i].key);
            continue;
        }
        m[k++] = m[i];
    }
    *out = m;
    *nout = k;
    return 0;

fail_nomem:
    members_free(m, n);
    return fail_at(cc, pos, "out of memory");
fail_syntax:
    members_free(m, n);
    return fail_at(cc, sc.p, "malformed object");
}

/* A literal (string, number, true, false, null) at V into M. 0 or -1. */
static int lit_compile(struct cc *cc, const char *v, struct matcher *m)
{
    struct scan sc = {v, text_end(cc)};
    struct val val;

    if (scan_scalar(&sc, &val) < 0)
        return fail_at(cc, v, "malformed value");
    switch (val.type) {
    case V_STR:
        m->op = M_STR;
        m->s = sv_dup(&val.s, &m->n);
        break;
    case V_NUM:
        m->op = M_NUM;
        m->n = sv_rawlen(&val.s);
        m->s = strndup(val.s.p, m->n);
        break;
    case V_TRUE:
        m->op = M_TRUE;
        return 0;
    case V_FALSE:
        m->op = M_FALSE;
        return 0;
    case V_NULL:
        m->op = M_NULL;
        return 0;
    }
    return m->s != NULL ? 0 : fail_at(cc, v, "out of memory");
}

/*
 * The wildcard text at V into M: `*` splits segments, `\*` and `\\` are literal. 0 or -1.
 */
static int wildcard_compile(struct cc *cc, const char *v, struct matcher *m, const char *path)
{
    char *s;
    size_t n, stars = 0, out = 0;
    int star_before = 0;

    if (*v != '"')
        return fail_at(cc, v, "%s: wildcard expects a string", path);
    if (str_at(cc, v, &s, &n) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        stars += s[i] == '*';
    m->op = M_WILDCARD;
    m->s = s; /* rewritten in place: the literal bytes never outrun the text */
    m->seg = calloc(stars + 1, sizeof(*m->seg));
    if (m->seg == NULL)
        return fail_at(cc, v, "out of memory");
    m->nseg = 1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\') {
            if (i + 1 == n || (s[i + 1] != '*' && s[i + 1] != '\\'))
                return fail_at(cc, v, "%s: wildcard: a backslash must come before * or \\", path);
            s[out++] = s[++i];
            m->seg[m->nseg - 1]++;
            star_before = 0;
        } else if (s[i] == '*') {
            if (star_before)
                return fail_at(cc, v, "%s: wildcard: consecutive '*' characters", path);
            m->nseg++;
            star_before = 1;
        } else {
            s[out++] = s[i];
            m->seg[m->nseg - 1]++;
            star_before = 0;
        }
    }
    m->n = out;
    return 0;
}

static int cidr_compile(struct cc *cc, const char *v, struct matcher *m, const char *path)
{
    char addr[ADDR_TEXT_MAX];
    const char *slash;
    char *s;
    size_t n, alen;
    unsigned long bits;
    int r = -1;

    if (*v != '"')
        return fail_at(cc, v, "%s: cidr expects a string", path);
    if (str_at(cc, v, &s, &n) < 0)
        return -1;
    m->op = M_CIDR;
    slash = memchr(s, '/', n);
    alen = slash != NULL ? (size_t)(slash - s) : n;
    if (alen == 0 || alen >= sizeof(addr) || memchr(s, '\0', n) != NULL)
        goto out_bad;
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    if (inet_pton(AF_INET, addr, m->addr) == 1)
        m->v6 = 0;
    else if (inet_pton(AF_INET6, addr, m->addr) == 1)
        m->v6 = 1;
    else
        goto out_bad;
    bits = m->v6 ? 128 : 32;
    if (slash != NULL) {
        const char *d = slash + 1;
        char *endp;

        if (*d < '0' || *d > '9')
            goto out_bad;
        bits = strtoul(d, &endp, 10);
        if (*endp != '\0' || bits > (m->v6 ? 128u : 32u))
            goto out_bad;
    }
    m->bits = (unsigned char)bits;
    /* Clear the host bits, so that 10.0.0.7/24 is the block 10.0.0.0/24. */
    for (unsigned i = (unsigned)bits; i < (m->v6 ? 128u : 32u); i++)
        m->addr[i / 8] &= (unsigned char)~(0x80u >> (i % 8));
    r = 0;
    goto out_free;
out_bad:
    r = fail_at(cc, v, "%s: cidr: \"%s\" is not an address block such as 10.0.0.0/24", path, s);
out_free:
    free(s);
    return r;
}

/* The number at V as a double, into *D. 0 or -1 (not a number). */
static int number_at(struct cc *cc, const char *v, double *d)
{
    struct scan sc = {v, text_end(cc)};
    struct val val;
    char tmp[NUM_TEXT_MAX];
    size_t n;

    if (scan_scalar(&sc, &val) < 0 || val.type != V_NUM)
        return -1;
    n = sv_rawlen(&val.s);
    if (n >= sizeof(tmp))
        return -1;
    memcpy(tmp, val.s.p, n);
    tmp[n] = '\0';
    *d = strtod(tmp, NULL);
    return 0;
}

/*
 * The positions of the elements of the array at V: *POS is new (free it, also after a
 * failure), *N their count. 0 or -1.
 */
static int elements(struct cc *cc, const char *v, const char ***pos, size_t *n)
{
    struct scan sc = {v + 1, text_end(cc)};
    size_t cap = 0;

    *pos = NULL;
    *n = 0;
    ws(&sc);
    if (peekc(&sc) == ']')
        return 0;
    for (;;) {
        const char **q = grow(*pos, *n, &cap, sizeof(**pos));

        if (q == NULL)
            return fail_at(cc, v, "out of memory");
        *pos = q;
        (*pos)[(*n)++] = sc.p;
        if (skip_value(&sc) < 0)
            return fail_at(cc, sc.p, "malformed list");
        ws(&sc);
        if (peekc(&sc) != ',')
            return 0;
        sc.p++;
        ws(&sc);
    }
}

/* One comparison of numeric: operator text OP, bound D, into M. 0 or -1. */
static int numeric_bound(struct cc *cc, const char *at, struct matcher *m, const char *op, double d,
                         const char *path)
{
    if (strcmp(op, "=") == 0) {
        if (m->has_lo || m->has_hi)
            return fail_at(cc, at, "%s: numeric: \"=\" cannot be combined with another comparison",
                           path);
        m->has_lo = m->has_hi = m->lo_incl = m->hi_incl = 1;
        m->lo = m->hi = d;
        return 0;
    }
    if (m->has_lo && m->has_hi)
        return fail_at(cc, at, "%s: numeric: \"=\" cannot be combined with another comparison",
                       path);
    if (strcmp(op, ">") == 0 || strcmp(op, ">=") == 0) {
        if (m->has_lo)
            return fail_at(cc, at, "%s: numeric: two lower bounds", path);
        m->has_lo = 1;
        m->lo_incl = op[1] == '=';
        m->lo = d;
        return 0;
    }
    if (strcmp(op, "<") == 0 || strcmp(op, "<=") == 0) {
        if (m->has_hi)
            return fail_at(cc, at, "%s: numeric: two upper bounds", path);
        m->has_hi = 1;
        m->hi_incl = op[1] == '=';
        m->hi = d;
        return 0;
    }
    return fail_at(cc, at, "%s: numeric: unknown operator \"%s\" (use <, <=, =, >=, >)", path, op);
}

static int numeric_compile(struct cc *cc, const char *v, struct matcher *m, const char *path)
{
    const char **el;
    size_t n;
    int r = -1;

    m->op = M_NUMERIC;
    if (*v != '[')
        return fail_at(cc, v, "%s: numeric expects a list such as [\">\", 0, \"<=\", 5]", path);
    if (elements(cc, v, &el, &n) < 0)
        goto out;
    if (n == 0) {
        fail_at(cc, v, "%s: numeric: empty list", path);
        goto out;
    }
    if (n > 4) {
        fail_at(cc, el[4], "%s: numeric: at most two comparisons", path);
        goto out;
    }
    for (size_t i = 0; i < n; i += 2) {
        char *op;
        size_t oplen;
        double d;
        int ok;

        if (*el[i] != '"') {
            fail_at(cc, el[i], "%s: numeric: expected an operator (<, <=, =, >=, >)", path);
            goto out;
        }
        if (str_at(cc, el[i], &op, &oplen) < 0)
            goto out;
        if (i + 1 >= n || number_at(cc, el[i + 1], &d) < 0) {
            fail_at(cc, i + 1 < n ? el[i + 1] : el[i],
                    "%s: numeric: expected a number after \"%s\"", path, op);
            free(op);
            goto out;
        }
        ok = numeric_bound(cc, el[i], m, op, d, path) == 0;
        free(op);
        if (!ok)
            goto out;
    }
    if (m->has_lo && m->has_hi &&
        (m->lo > m->hi || (m->lo == m->hi && !(m->lo_incl && m->hi_incl)))) {
        fail_at(cc, v, "%s: numeric: the range is empty", path);
        goto out;
    }
    r = 0;
out:
    free(el);
    return r;
}

/* A new zeroed matcher at the end of *M (*N used, *CAP room), or NULL. */
static struct matcher *push_matcher(struct matcher **m, size_t *n, size_t *cap)
{
    struct matcher *x, *q = grow(*m, *n, cap, sizeof(**m));

    if (q == NULL)
        return NULL;
    *m = q;
    x = &(*m)[(*n)++];
    memset(x, 0, sizeof(*x));
    return x;
}

/*
 * The operand V of anything-but's string operators, a string or (for equals-ignore-case and
 * wildcard, when LIST) a non-empty list of strings, into M's excluded values with OP.
 */
static int anybut_strings(struct cc *cc, const char *v, struct matcher *m, enum mop op, int list,
                          const char *name, const char *path)
{
    const char *one[1] = {v};
    const char **el = one, **pos = NULL;
    size_t n = 1, cap = 0;
    int r = -1;

    if (*v == '[' && list) {
        if (elements(cc, v, &pos, &n) < 0)
            goto out;
        if (n == 0) {
            fail_at(cc, v, "%s: anything-but: %s: empty list", path, name);
            goto out;
        }
        el = pos;
    } else if (*v != '"') {
        fail_at(cc, v, "%s: anything-but: %s expects a string%s", path, name,
                list ? " or a list of strings" : "");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        struct matcher *x;

        if (*el[i] != '"') {
            fail_at(cc, el[i], "%s: anything-but: %s: expected a string", path, name);
            goto out;
        }
        x = push_matcher(&m->sub, &m->nsub, &cap);
        if (x == NULL) {
            fail_at(cc, v, "out of memory");
            goto out;
        }
        if (op == M_WILDCARD) {
            if (wildcard_compile(cc, el[i], x, path) < 0)
                goto out;
            continue;
        }
        x->op = op;
        if (str_at(cc, el[i], &x->s, &x->n) < 0)
            goto out;
    }
    r = 0;
out:
    free(pos);
    return r;
}

static int anybut_compile(struct cc *cc, const char *v, struct matcher *m, const char *path)
{
    size_t cap = 0;
    struct member *mem;
    size_t nm;
    int r;

    m->op = M_ANYBUT;
    if (*v == '"' || *v == '-' || (*v >= '0' && *v <= '9')) {
        struct matcher *x = push_matcher(&m->sub, &m->nsub, &cap);

        if (x == NULL)
            return fail_at(cc, v, "out of memory");
        return lit_compile(cc, v, x);
    }
    if (*v == '[') {
        const char **pos;
        size_t n;

        r = elements(cc, v, &pos, &n);
        if (r == 0 && n == 0)
            r = fail_at(cc, v, "%s: anything-but: empty list", path);
        for (size_t i = 0; i < n && r == 0; i++) {
            struct matcher *x;
            char c = *pos[i];

            if (c != '"' && c != '-' && (c < '0' || c > '9')) {
                r = fail_at(cc, pos[i],
                            "%s: anything-but: a list may hold only strings and numbers", path);
            } else if ((x = push_matcher(&m->sub, &m->nsub, &cap)) == NULL) {
                r = fail_at(cc, v, "out of memory");
            } else {
                r = lit_compile(cc, pos[i], x);
            }
        }
        free(pos);
        return r;
    }
    if (*v != '{')
        return fail_at(cc, v,
                       "%s: anything-but expects a string, a number, a list of them, or "
                       "an operator object",
                       path);
    if (members(cc, v, &mem, &nm) < 0)
        return -1;
    m->strings_only = 1;
    if (nm != 1) {
        r = fail_at(cc, v,
                    "%s: anything-but: an operator object must have exactly one key (got %zu)",
                    path, nm);
    } else if (strcmp(mem[0].key, "prefix") == 0) {
        r = anybut_strings(cc, mem[0].vpos, m, M_PREFIX, 0, "prefix", path);
    } else if (strcmp(mem[0].key, "suffix") == 0) {
        r = anybut_strings(cc, mem[0].vpos, m, M_SUFFIX, 0, "suffix", path);
    } else if (strcmp(mem[0].key, "equals-ignore-case") == 0) {
        r = anybut_strings(cc, mem[0].vpos, m, M_EIC, 1, "equals-ignore-case", path);
    } else if (strcmp(mem[0].key, "wildcard") == 0) {
        r = anybut_strings(cc, mem[0].vpos, m, M_WILDCARD, 1, "wildcard", path);
    } else {
        r = fail_at(cc, mem[0].kpos,
                    "%s: anything-but: unsupported operator \"%s\" (use prefix, "
                    "suffix, equals-ignore-case or wildcard)",
                    path, mem[0].key);
    }
    members_free(mem, nm);
    return r;
}

/* prefix / suffix: a string, or {"equals-ignore-case": string}. */
static int affix_compile(struct cc *cc, const char *v, struct matcher *m, int suffix,
                         const char *path)
{
    const char *name = suffix ? "suffix" : "prefix";
    struct member *mem;
    size_t nm;
    int r;

    if (*v == '"') {
        m->op = suffix ? M_SUFFIX : M_PREFIX;
        return str_at(cc, v, &m->s, &m->n);
    }
    if (*v != '{')
        return fail_at(cc, v, "%s: %s expects a string or {\"equals-ignore-case\": string}", path,
                       name);
    if (members(cc, v, &mem, &nm) < 0)
        return -1;
    if (nm != 1 || strcmp(mem[0].key, "equals-ignore-case") != 0 || *mem[0].vpos != '"') {
        r = fail_at(cc, v, "%s: %s expects a string or {\"equals-ignore-case\": string}", path,
                    name);
    } else {
        m->op = suffix ? M_SUFFIX_EIC : M_PREFIX_EIC;
        r = str_at(cc, mem[0].vpos, &m->s, &m->n);
    }
    members_free(mem, nm);
    return r;
}

/* An operator object at V, one alternative of LF. */
static int op_compile(struct cc *cc, const char *v, struct leaf *lf, size_t *cap, const char *path)
{
    struct member *mem;
    size_t nm;
    const char *op, *arg;
    struct matcher *m;
    int r = -1;

    if (members(cc, v, &mem, &nm) < 0)
        return -1;
    if (nm != 1) {
        r = fail_at(cc, v, "%s: an operator object must have exactly one key (got %zu)", path, nm);
        goto out;
    }
    op = mem[0].key;
    arg = mem[0].vpos;
    if (strcmp(op, "exists") == 0) {
        r = 0;
        if (*arg == 't')
            lf->exists_true = 1;
        else if (*arg == 'f')
            lf->exists_false = 1;
        else
            r = fail_at(cc, arg, "%s: exists expects true or false", path);
        goto out;
    }
    m = push_matcher(&lf->m, &lf->n, cap);
    if (m == NULL) {
        r = fail_at(cc, v, "out of memory");
        goto out;
    }
    if (strcmp(op, "prefix") == 0) {
        r = affix_compile(cc, arg, m, 0, path);
    } else if (strcmp(op, "suffix") == 0) {
        r = affix_compile(cc, arg, m, 1, path);
    } else if (strcmp(op, "equals-ignore-case") == 0) {
        m->op = M_EIC;
        r = *arg == '"' ? str_at(cc, arg, &m->s, &m->n)
                        : fail_at(cc, arg, "%s: equals-ignore-case expects a string", path);
    } else if (strcmp(op, "numeric") == 0) {
        r = numeric_compile(cc, arg, m, path);
    } else if (strcmp(op, "anything-but") == 0) {
        r = anybut_compile(cc, arg, m, path);
    } else if (strcmp(op, "wildcard") == 0) {
        r = wildcard_compile(cc, arg, m, path);
    } else if (strcmp(op, "cidr") == 0) {
        r = cidr_compile(cc, arg, m, path);
    } else {
        m->op = M_NULL; /* anything freeable */
        r = fail_at(cc, mem[0].kpos, "%s: unknown operator \"%s\"", path, op);
    }
out:
    members_free(mem, nm);
    return r;
}

/*
 * The list at V: a new leaf into *OUT (freed by the caller, also on failure). {"exists": ...}
 * alternatives become the two flags; the others become matchers, OR-ed in list order.
 */
static int leaf_compile(struct cc *cc, const char *v, const char *path, struct leaf **out)
{
    struct scan sc = {v + 1, text_end(cc)};
    struct leaf *lf = calloc(1, sizeof(*lf));
    struct buf src = {0};
    size_t cap = 0;

    *out = lf;
    if (lf == NULL)
        return fail_at(cc, v, "out of memory");
    lf->all_exact = 1;
    ws(&sc);
    if (peekc(&sc) == ']')
        return fail_at(cc, v, "%s: empty list (a list needs at least one value)", path);
    for (;;) {
        const char *e = sc.p;

        if (*e == '[')
            return fail_at(cc, e, "%s: a list of values cannot hold a list", path);
        if (*e == '{') {
            lf->all_exact = 0;
            if (op_compile(cc, e, lf, &cap, path) < 0)
                return -1;
        } else {
            struct matcher *m = push_matcher(&lf->m, &lf->n, &cap);

            if (m == NULL)
                return fail_at(cc, e, "out of memory");
            if (lit_compile(cc, e, m) < 0)
                return -1;
        }
        if (skip_value(&sc) < 0)
            return fail_at(cc, e, "malformed value");
        ws(&sc);
        if (peekc(&sc) != ',')
            break;
        sc.p++;
        ws(&sc);
    }
    compact(&src, v, sc.p + 1, 0);
    lf->src = buf_take(&src, NULL);
    if (lf->src == NULL)
        return fail_at(cc, v, "out of memory");
    return 0;
}

static int group_fill(struct cc *cc, struct node *nd, struct group *g, const char *obj, int depth,
                      const char *path, int top);

static int node_compile(struct cc *cc, const char *obj, int depth, const char *path, int top,
                        struct node **out);

/*
 * Member M of an object of ND (the node's own object or one of its $or branches): a new clause
 * of ND. At the top level, the member named like the data key is a payload clause.
 */
static int clause_compile(struct cc *cc, struct node *nd, const struct member *m, int depth,
                          const char *path, int top, size_t *ci)
{
    struct clause *cl;
    size_t plen = path != NULL ? strlen(path) + 1 : 0;
    const char *v = m->vpos;
    int r;

    cl = grow(nd->cl, nd->ncl, &nd->capcl, sizeof(*nd->cl));
    if (cl == NULL)
        return fail_at(cc, m->kpos, "out of memory");
    nd->cl = cl;
    *ci = nd->ncl;
    cl = &nd->cl[nd->ncl++];
    memset(cl, 0, sizeof(*cl));
    cl->key = malloc(m->klen + 1);
    cl->path = malloc(plen + m->klen + 1);
    if (cl->key == NULL || cl->path == NULL)
        return fail_at(cc, m->kpos, "out of memory");
    memcpy(cl->key, m->key, m->klen + 1);
    cl->klen = m->klen;
    if (path != NULL) {
        memcpy(cl->path, path, plen - 1);
        cl->path[plen - 1] = '.';
    }
    memcpy(cl->path + plen, m->key, m->klen + 1);
    cl->is_data =
        top && cc->dkey != NULL && m->klen == cc->dklen && memcmp(m->key, cc->dkey, m->klen) == 0;
    if (*v == '[') {
        r = leaf_compile(cc, v, cl->path, &cl->leaf);
        if (r == 0)
            cl->absent = cl->leaf->exists_false;
        return r;
    }
    if (*v == '{') {
        r = node_compile(cc, v, depth + 1, cl->path, 0, &cl->node);
        if (r == 0)
            cl->absent = cl->node->absent;
        return r;
    }
    return fail_at(cc, v, "%s: the value must be a list (such as [\"x\"]) or an object", cl->path);
}

/* $or at V: a list of pattern objects, each a group of ND. */
static int or_compile(struct cc *cc, struct node *nd, struct item *it, const char *v, int depth,
                      const char *path, int top)
{
    const char **pos;
    size_t n;
    int r;

    if (*v != '[')
        return fail_at(cc, v, "$or expects a list of pattern objects");
    r = elements(cc, v, &pos, &n);
    if (r == 0 && n == 0)
        r = fail_at(cc, v, "$or: empty list");
    for (size_t i = 0; i < n && r == 0; i++) {
        if (*pos[i] != '{')
            r = fail_at(cc, pos[i], "$or: each element must be a pattern object");
    }
    if (r == 0) {
        it->br = calloc(n, sizeof(*it->br));
        if (it->br == NULL)
            r = fail_at(cc, v, "out of memory");
        else
            it->nbr = n;
    }
    for (size_t i = 0; i < n && r == 0; i++)
        r = group_fill(cc, nd, &it->br[i], pos[i], depth + 2, path, top);
    free(pos);
    return r;
}

/* The object at OBJ into group G of ND (its own clauses, or one $or branch). */
static int group_fill(struct cc *cc, struct node *nd, struct group *g, const char *obj, int depth,
                      const char *path, int top)
{
    struct member *m;
    size_t n;
    int r = 0;

    if (members(cc, obj, &m, &n) < 0)
        return -1;
    if (n == 0)
        r = fail_at(cc, obj, "%s%sempty object", path ? path : "", path ? ": " : "");
    for (size_t i = 0; i < n && r == 0; i++) {
        struct item *it = grow(g->it, g->n, &g->cap, sizeof(*g->it));

        if (it == NULL) {
            r = fail_at(cc, m[i].kpos, "out of memory");
            break;
        }
        g->it = it;
        it = &g->it[g->n++];
        memset(it, 0, sizeof(*it));
        if (m[i].klen == 3 && memcmp(m[i].key, "$or", 3) == 0)
            r = or_compile(cc, nd, it, m[i].vpos, depth, path, top);
        else
            r = clause_compile(cc, nd, &m[i], depth, path, top, &it->cl);
    }
    members_free(m, n);
    return r;
}

static int keyent_cmp(const void *a, const void *b)
{
    const struct keyent *x = a, *y = b;
    int c = key_cmp(x->key, x->klen, y->key, y->klen);

    if (c != 0)
        return c;
    return x->cl < y->cl ? -1 : x->cl > y->cl;
}

/*
 * The object at OBJ: a new node into *OUT (freed by the caller, also on failure). Its key
 * table leaves out the payload clauses, so the record's member of that name is skipped, and
 * its absent result (the pattern against no object) is worked out here once.
 */
static int node_compile(struct cc *cc, const char *obj, int depth, const char *path, int top,
                        struct node **out)
{
    struct node *nd = calloc(1, sizeof(*nd));
    unsigned char *tmp;

    *out = nd;
    if (nd == NULL)
        return fail_at(cc, obj, "out of memory");
    if (group_fill(cc, nd, &nd->root, obj, depth, path, top) < 0)
        return -1;
    nd->keys = malloc(nd->ncl * sizeof(*nd->keys));
    nd->data = malloc(nd->ncl * sizeof(*nd->data));
    tmp = malloc(nd->ncl);
    if (nd->keys == NULL || nd->data == NULL || tmp == NULL) {
        free(tmp);
        return fail_at(cc, obj, "out of memory");
    }
    for (size_t i = 0; i < nd->ncl; i++) {
        const struct clause *cl = &nd->cl[i];

        if (cl->is_data) {
            nd->data[nd->ndata++] = i;
        } else {
            nd->keys[nd->nkeys].key = cl->key;
            nd->keys[nd->nkeys].klen = cl->klen;
            nd->keys[nd->nkeys].cl = i;
            nd->nkeys++;
        }
        tmp[i] = cl->absent;
    }
    qsort(nd->keys, nd->nkeys, sizeof(*nd->keys), keyent_cmp);
    nd->absent = (unsigned char)eval_group(&nd->root, tmp);
    free(tmp);
    return 0;
}

/*
 * Give each node a contiguous range of slots, in tree order. Ranges never overlap, so a nested
 * node can be evaluated (once per array element) while its parent's results wait in theirs.
 */
static void slots_assign(struct node *nd, size_t *next)
{
    nd->base = *next;
    *next += nd->ncl;
    for (size_t i = 0; i < nd->ncl; i++) {
        if (nd->cl[i].node != NULL)
            slots_assign(nd->cl[i].node, next);
    }
}

/*
 * Where the text nests deeper than MAX_DEPTH, or NULL. Checked before anything else parses the
 * text, so the recursion of the compiler and of the matcher is bounded by it.
 */
static const char *too_deep(const char *s, size_t n)
{
    size_t depth = 0;

    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (c == '"') {
            for (i++; i < n && s[i] != '"'; i++) {
                if (s[i] == '\\')
                    i++;
            }
        } else if (c == '{' || c == '[') {
            if (++depth > MAX_DEPTH)
                return s + i;
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        }
    }
    return NULL;
}

/* CC's text into PT->root (freed by the caller, also on failure). 0 or -1 with CC's reason. */
static int pattern_compile(struct cc *cc, struct pattern *pt)
{
    struct scan sc = {cc->text, text_end(cc)};
    size_t chars = 0, slots = 0;
    const char *deep;
    json_error_t je;
    json_t *j;
    int is_obj;

    for (size_t i = 0; i < cc->len; i++) {
        if (((unsigned char)cc->text[i] & 0xc0) != 0x80 && ++chars > FILTER_PATTERN_MAX)
            return fail_at(cc, cc->text + i, "the pattern is longer than %d characters",
                           FILTER_PATTERN_MAX);
    }
    deep = too_deep(cc->text, cc->len);
    if (deep != NULL)
        return fail_at(cc, deep, "nesting deeper than %d levels", MAX_DEPTH);
    /* jansson only judges the syntax; the tree is built from the text (see the top). */
    j = json_loadb(cc->text, cc->len, JSON_DECODE_ANY, &je);
    if (j == NULL) {
        size_t at = je.position > 0 ? (size_t)je.position : 0;

        return fail_at(cc, cc->text + (at < cc->len ? at : cc->len), "not valid JSON: %s", je.text);
    }
    is_obj = json_is_object(j);
    json_decref(j);
    ws(&sc);
    if (!is_obj)
        return fail_at(cc, sc.p, "a pattern must be a JSON object");
    if (node_compile(cc, sc.p, 1, NULL, 1, &pt->root) < 0)
        return -1;
    slots_assign(pt->root, &slots);
    if (slots > MAX_SLOTS)
        return fail_at(cc, sc.p, "too many clauses (%zu; at most %d)", slots, MAX_SLOTS);
    return 0;
}

static void cc_init(struct cc *cc, const char *text, size_t len, const struct filter *f)
{
    memset(cc, 0, sizeof(*cc));
    cc->text = text != NULL ? text : "";
    cc->len = text != NULL ? len : 0;
    cc->dkey = f->data_key;
    cc->dklen = f->data_key != NULL ? strlen(f->data_key) : 0;
}

static struct filter *filter_new(const struct filter_opts *opts)
{
    struct filter *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return NULL;
    if (opts != NULL && opts->data_key != NULL) {
        f->data_key = strdup(opts->data_key);
        if (f->data_key == NULL) {
            free(f);
            return NULL;
        }
    }
    f->must = opts != NULL && opts->data_must_match;
    return f;
}

struct filter *filter_compile(const char *const *patterns, const size_t *lens, size_t n,
                              const struct filter_opts *opts, struct sy_error *err)
{
    struct filter *f;

    if (n > FILTER_MAX_PATTERNS) {
        sy_error_set(err, "too many patterns (%zu; at most %d)", n, FILTER_MAX_PATTERNS);
        return NULL;
    }
    if (n > 0 && (patterns == NULL || lens == NULL)) {
        sy_error_set(err, "no pattern texts");
        return NULL;
    }
    f = filter_new(opts);
    if (f == NULL) {
        sy_error_set(err, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        struct cc cc;

        cc_init(&cc, patterns[i], lens[i], f);
        f->n = i + 1; /* so that filter_destroy frees a half-built pattern */
        if (pattern_compile(&cc, &f->pat[i]) < 0) {
            sy_error_set(err, "pattern %zu: %s (at offset %zu)", i + 1, cc.why, cc.off);
            filter_destroy(f);
            return NULL;
        }
    }
    return f;
}

int filter_check(const char *pattern, size_t len, const struct filter_opts *opts, char *why,
                 size_t whysz)
{
    struct filter *f = filter_new(opts);
    struct cc cc;
    int r = 0;

    if (f == NULL) {
        if (whysz > 0)
            snprintf(why, whysz, "out of memory");
        return -1;
    }
    cc_init(&cc, pattern, len, f);
    f->n = 1;
    if (pattern_compile(&cc, &f->pat[0]) < 0) {
        if (whysz > 0)
            snprintf(why, whysz, "%s (at offset %zu)", cc.why, cc.off);
        r = -1;
    }
    filter_destroy(f);
    return r;
}

void filter_destroy(struct filter *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->n; i++)
        node_free(f->pat[i].root);
    free(f->data_key);
    free(f);
}
