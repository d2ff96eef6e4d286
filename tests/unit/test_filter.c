/*
 * tests/unit/test_filter.c - Lambda's filter patterns (mappings/filter.c): every operator
 * both ways, arrays, nesting, $or, escapes, the JSON / non-JSON payload tables for both rules,
 * refused patterns and their messages, the explanations, a randomized cross-check of the
 * scanner against a plain matcher over jansson's DOM written here, random damage to records,
 * and that filter_match does not allocate.
 *
 * Patterns and records are written with ' for " (see q()) to keep them readable.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <jansson.h>

#include "core/buf.h"
#include "core/errors.h"
#include "mappings/filter.h"

/* ---- counting allocations ---------------------------------------------------------------- */

static volatile int counting;
static volatile unsigned long n_allocs;

#if defined(__SANITIZE_ADDRESS__)
/* ASan owns malloc; it calls this hook for every allocation. */
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                              void (*free_hook)(const volatile void *));

static void on_malloc(const volatile void *p, size_t n)
{
    if (counting)
        n_allocs++;
}

static void on_free(const volatile void *p)
{
}

static void count_init(void)
{
    __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
}
#else
/* Everything in this process allocates through these, filter.c included. */
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);

void *malloc(size_t n)
{
    if (counting)
        n_allocs++;
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    if (counting)
        n_allocs++;
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    if (counting)
        n_allocs++;
    return __libc_realloc(p, n);
}

static void count_init(void)
{
}
#endif

/* ---- helpers ----------------------------------------------------------------------------- */

/* S with every ' turned into " (one of eight rotating buffers). */
static const char *q(const char *s)
{
    static char bufs[8][8192];
    static unsigned next;
    char *b = bufs[next++ % 8];
    size_t i;

    for (i = 0; s[i] != '\0' && i + 1 < sizeof(bufs[0]); i++)
        b[i] = s[i] == '\'' ? '"' : s[i];
    b[i] = '\0';
    return b;
}

static struct filter *comp(const char *pat, const char *dk, int must)
{
    struct filter_opts o = {dk, must};
    struct sy_error err = {{0}};
    size_t len = strlen(pat);
    struct filter *f = filter_compile(&pat, &len, 1, &o, &err);

    if (f == NULL)
        fail_msg("pattern refused: %s: %s", pat, err.msg);
    return f;
}

/* Match and explain REC/DATA against F; both must agree. */
static int run(const struct filter *f, const char *rec, const char *data, size_t dlen)
{
    struct buf why = {0};
    size_t rlen = rec != NULL ? strlen(rec) : 0;
    int r = filter_match(f, rec, rlen, data, dlen);
    int e = filter_explain(f, rec, rlen, data, dlen, &why);

    if (r != e)
        fail_msg("filter_match says %d, filter_explain %d (%s)", r, e, why.data);
    if (r == 0 && (why.data == NULL || strncmp(why.data, "pattern 1: ", 11) != 0))
        fail_msg("no explanation for a non-match of %s", rec);
    if (r == 1 && why.len != 0)
        fail_msg("an explanation for a match: %s", why.data);
    buf_free(&why);
    return r;
}

/* PAT (q-quoted) against record REC (q-quoted), no data key. */
static int m(const char *pat, const char *rec)
{
    struct filter *f = comp(q(pat), NULL, 0);
    int r = run(f, q(rec), NULL, 0);

    filter_destroy(f);
    return r;
}

#define YES(p, r)                                                                                  \
    do {                                                                                           \
        if (!m(p, r))                                                                              \
            fail_msg("expected a match: %s with %s", p, r);                                        \
    } while (0)
#define NO(p, r)                                                                                   \
    do {                                                                                           \
        if (m(p, r))                                                                               \
            fail_msg("expected no match: %s with %s", p, r);                                       \
    } while (0)

/* PAT against REC and payload DATA (raw bytes, NULL: none) under data key "body". */
static int md(const char *pat, int must, const char *rec, const char *data, size_t dlen)
{
    struct filter *f = comp(q(pat), "body", must);
    int r = run(f, rec != NULL ? q(rec) : NULL, data, dlen);

    filter_destroy(f);
    return r;
}

#define DATA(s) (s), strlen(s)
#define NODATA NULL, 0

/* PAT must be refused with a reason containing WANT, at offset OFF (-1: any). */
static void bad(const char *pat, const char *want, long off)
{
    char why[512];
    const char *p = q(pat);

    if (filter_check(p, strlen(p), NULL, why, sizeof(why)) == 0)
        fail_msg("accepted: %s", p);
    if (strstr(why, want) == NULL)
        fail_msg("pattern %s: got \"%s\", wanted \"%s\"", p, why, want);
    if (off >= 0) {
        char tail[64];

        snprintf(tail, sizeof(tail), "(at offset %ld)", off);
        if (strstr(why, tail) == NULL)
            fail_msg("pattern %s: got \"%s\", wanted %s", p, why, tail);
    }
}

/* The explanation of REC/DATA against PAT (under data key "body", rule MUST), into OUT. */
static void explain(const char *pat, int must, const char *rec, const char *data, size_t dlen,
                    char *out, size_t outsz)
{
    struct filter *f = comp(q(pat), "body", must);
    struct buf why = {0};
    const char *r = rec != NULL ? q(rec) : NULL;

    assert_int_equal(filter_explain(f, r, r != NULL ? strlen(r) : 0, data, dlen, &why), 0);
    snprintf(out, outsz, "%s", why.data != NULL ? why.data : "");
    buf_free(&why);
    filter_destroy(f);
}

/* ---- the operators ----------------------------------------------------------------------- */

static void test_exact(void **state)
{
    YES("{'a':['x']}", "{'a':'x'}");
    NO("{'a':['x']}", "{'a':'X'}");
    NO("{'a':['x']}", "{'a':'xy'}");
    NO("{'a':['xy']}", "{'a':'x'}");
    NO("{'a':['x']}", "{}");
    NO("{'a':['x']}", "{'b':'x'}");
    YES("{'a':['x']}", " {\n 'b' : [1, {'c': 'x'}] ,\t'a' :\t'x' } ");
    /* Numbers compare by their text; numeric compares values. */
    YES("{'a':[300]}", "{'a':300}");
    NO("{'a':[300]}", "{'a':300.0}");
    NO("{'a':[300]}", "{'a':3e2}");
    YES("{'a':[3.0e2]}", "{'a':3.0e2}");
    YES("{'a':[-1.5]}", "{'a':-1.5}");
    NO("{'a':[300]}", "{'a':'300'}");
    NO("{'a':['300']}", "{'a':300}");
    NO("{'a':[30]}", "{'a':300}");
    /* Booleans and null. */
    YES("{'a':[true]}", "{'a':true}");
    NO("{'a':[true]}", "{'a':false}");
    NO("{'a':[true]}", "{'a':'true'}");
    YES("{'a':[false]}", "{'a':false}");
    YES("{'a':[null]}", "{'a':null}");
    NO("{'a':[null]}", "{}");
    NO("{'a':[null]}", "{'a':'null'}");
    /* The empty string. */
    YES("{'a':['']}", "{'a':''}");
    NO("{'a':['']}", "{'a':' '}");
    NO("{'a':['']}", "{'a':null}");
    /* Or-lists and the AND of keys. */
    YES("{'p':['Credit','Debit']}", "{'p':'Debit'}");
    NO("{'p':['Credit','Debit']}", "{'p':'Cash'}");
    YES("{'p':['Credit', 5, null]}", "{'p':null}");
    YES("{'a':['x'],'b':[1]}", "{'b':1,'a':'x','c':0}");
    NO("{'a':['x'],'b':[1]}", "{'a':'x'}");
    NO("{'a':['x'],'b':[1]}", "{'a':'x','b':2}");
    /* UTF-8 and escapes meet. */
    YES("{'a':['\xc3\xa9']}", "{'a':'\\u00e9'}");
    YES("{'a':['\\u00e9']}", "{'a':'\xc3\xa9'}");
}

static void test_exists(void **state)
{
    YES("{'a':[{'exists':true}]}", "{'a':1}");
    YES("{'a':[{'exists':true}]}", "{'a':null}");
    YES("{'a':[{'exists':true}]}", "{'a':''}");
    YES("{'a':[{'exists':true}]}", "{'a':[1]}");
    NO("{'a':[{'exists':true}]}", "{}");
    NO("{'a':[{'exists':true}]}", "{'b':1}");
    /* Leaf nodes only: an intermediate object or an empty array is not a value. */
    NO("{'a':[{'exists':true}]}", "{'a':{'b':1}}");
    NO("{'a':[{'exists':true}]}", "{'a':[]}");
    NO("{'a':[{'exists':true}]}", "{'a':[{'b':1}]}");
    YES("{'a':[{'exists':false}]}", "{}");
    YES("{'a':[{'exists':false}]}", "{'a':{'b':1}}");
    NO("{'a':[{'exists':false}]}", "{'a':1}");
    NO("{'a':[{'exists':false}]}", "{'a':null}");
    YES("{'a':[{'exists':false}],'b':['x']}", "{'b':'x'}");
    NO("{'a':[{'exists':false}],'b':['x']}", "{'b':'x','a':0}");
    /* Nested: an absent parent means an absent field. */
    YES("{'a':{'b':[{'exists':false}]}}", "{}");
    YES("{'a':{'b':[{'exists':false}]}}", "{'a':5}");
    YES("{'a':{'b':[{'exists':false}]}}", "{'a':{'c':0}}");
    NO("{'a':{'b':[{'exists':false}]}}", "{'a':{'b':0}}");
    NO("{'a':{'b':[{'exists':true}]}}", "{'a':5}");
    YES("{'a':{'b':[{'exists':true}]}}", "{'a':{'b':0}}");
    /* exists next to values. */
    YES("{'a':['x',{'exists':false}]}", "{}");
    YES("{'a':['x',{'exists':false}]}", "{'a':'x'}");
    NO("{'a':['x',{'exists':false}]}", "{'a':'y'}");
}

static void test_prefix_suffix_case(void **state)
{
    YES("{'r':[{'prefix':'us-'}]}", "{'r':'us-east-1'}");
    NO("{'r':[{'prefix':'us-'}]}", "{'r':'eu-west-1'}");
    NO("{'r':[{'prefix':'us-'}]}", "{'r':'US-east-1'}");
    NO("{'r':[{'prefix':'us-'}]}", "{'r':'us'}");
    NO("{'r':[{'prefix':'us-'}]}", "{'r':5}");
    YES("{'r':[{'prefix':''}]}", "{'r':''}");
    NO("{'r':[{'prefix':''}]}", "{'r':null}");
    YES("{'f':[{'suffix':'.png'}]}", "{'f':'a.png'}");
    YES("{'f':[{'suffix':'.png'}]}", "{'f':'.png'}");
    NO("{'f':[{'suffix':'.png'}]}", "{'f':'a.PNG'}");
    NO("{'f':[{'suffix':'.png'}]}", "{'f':'png'}");
    YES("{'n':[{'equals-ignore-case':'alice'}]}", "{'n':'ALICE'}");
    YES("{'n':[{'equals-ignore-case':'alice'}]}", "{'n':'aLiCe'}");
    NO("{'n':[{'equals-ignore-case':'alice'}]}", "{'n':'alice2'}");
    NO("{'n':[{'equals-ignore-case':'alice'}]}", "{'n':'alic'}");
    NO("{'n':[{'equals-ignore-case':'1'}]}", "{'n':1}");
    /* Only ASCII letters fold. */
    NO("{'n':[{'equals-ignore-case':'\xc3\xa9'}]}", "{'n':'\xc3\x89'}");
    YES("{'r':[{'prefix':{'equals-ignore-case':'US-'}}]}", "{'r':'us-east'}");
    YES("{'r':[{'prefix':{'equals-ignore-case':'US-'}}]}", "{'r':'Us-east'}");
    NO("{'r':[{'prefix':{'equals-ignore-case':'US-'}}]}", "{'r':'eu-west'}");
    YES("{'f':[{'suffix':{'equals-ignore-case':'.PNG'}}]}", "{'f':'x.png'}");
    NO("{'f':[{'suffix':{'equals-ignore-case':'.PNG'}}]}", "{'f':'x.pnj'}");
}

static void test_anything_but(void **state)
{
    YES("{'w':[{'anything-but':'Raining'}]}", "{'w':'Sunny'}");
    NO("{'w':[{'anything-but':'Raining'}]}", "{'w':'Raining'}");
    NO("{'w':[{'anything-but':'Raining'}]}", "{}");
    YES("{'w':[{'anything-but':'Raining'}]}", "{'w':5}");
    YES("{'w':[{'anything-but':'Raining'}]}", "{'w':null}");
    NO("{'w':[{'anything-but':['Raining','Snowing']}]}", "{'w':'Snowing'}");
    YES("{'w':[{'anything-but':['Raining','Snowing']}]}", "{'w':'Sunny'}");
    YES("{'p':[{'anything-but':[100, 200]}]}", "{'p':150}");
    NO("{'p':[{'anything-but':[100, 200]}]}", "{'p':100}");
    YES("{'p':[{'anything-but':[100, 200]}]}", "{'p':100.0}"); /* by the text */
    YES("{'p':[{'anything-but':[100, 200]}]}", "{'p':'100'}");
    NO("{'p':[{'anything-but':100}]}", "{'p':100}");
    NO("{'p':[{'anything-but':['x', 1]}]}", "{'p':1}");
    YES("{'r':[{'anything-but':{'prefix':'us-'}}]}", "{'r':'eu-west'}");
    NO("{'r':[{'anything-but':{'prefix':'us-'}}]}", "{'r':'us-east'}");
    NO("{'r':[{'anything-but':{'prefix':'us-'}}]}", "{'r':5}"); /* strings only */
    YES("{'f':[{'anything-but':{'suffix':'.png'}}]}", "{'f':'a.jpg'}");
    NO("{'f':[{'anything-but':{'suffix':'.png'}}]}", "{'f':'a.png'}");
    NO("{'n':[{'anything-but':{'equals-ignore-case':'bob'}}]}", "{'n':'BOB'}");
    YES("{'n':[{'anything-but':{'equals-ignore-case':'bob'}}]}", "{'n':'alice'}");
    NO("{'n':[{'anything-but':{'equals-ignore-case':['bob','eve']}}]}", "{'n':'Eve'}");
    YES("{'n':[{'anything-but':{'equals-ignore-case':['bob','eve']}}]}", "{'n':'Al'}");
    NO("{'f':[{'anything-but':{'wildcard':'*/lib/*'}}]}", "{'f':'/usr/lib/x'}");
    YES("{'f':[{'anything-but':{'wildcard':'*/lib/*'}}]}", "{'f':'/usr/bin/x'}");
    NO("{'f':[{'anything-but':{'wildcard':['*.a','*.b']}}]}", "{'f':'x.b'}");
    /* Arrays: any element that is not excluded. */
    YES("{'w':[{'anything-but':['a']}]}", "{'w':['a','b']}");
    NO("{'w':[{'anything-but':['a']}]}", "{'w':['a','a']}");
    NO("{'w':[{'anything-but':['a']}]}", "{'w':[]}");
}

static void test_numeric(void **state)
{
    const char *eq = "{'p':[{'numeric':['=',100]}]}";
    const char *range = "{'p':[{'numeric':['>',10,'<=',20]}]}";

    YES(eq, "{'p':100}");
    YES(eq, "{'p':100.0}");
    YES(eq, "{'p':1e2}");
    YES(eq, "{'p':1.00E+2}");
    NO(eq, "{'p':'100'}");
    NO(eq, "{'p':101}");
    NO(eq, "{}");
    NO(range, "{'p':10}");
    YES(range, "{'p':10.5}");
    YES(range, "{'p':20}");
    YES(range, "{'p':1.5e1}");
    NO(range, "{'p':20.1}");
    NO(range, "{'p':-5}");
    YES(range, "{'p':[1, 15]}");
    YES("{'p':[{'numeric':['>=',0]}]}", "{'p':0}");
    YES("{'p':[{'numeric':['>=',0]}]}", "{'p':-0}");
    NO("{'p':[{'numeric':['>=',0]}]}", "{'p':-0.001}");
    YES("{'p':[{'numeric':['<',0]}]}", "{'p':-1}");
    NO("{'p':[{'numeric':['<',0]}]}", "{'p':0}");
    YES("{'p':[{'numeric':['<=',0]}]}", "{'p':0}");
    YES("{'p':[{'numeric':['<',5,'>',1]}]}", "{'p':3}");
    YES("{'p':[{'numeric':['>',-1e3,'<',-5]}]}", "{'p':-10}");
    NO("{'p':[{'numeric':['>',-1e3,'<',-5]}]}", "{'p':-5}");
    YES("{'p':[{'numeric':['>',1e9]}]}", "{'p':12345678901234}");
    NO("{'p':[{'numeric':['>',0]}]}", "{'p':true}");
    NO("{'p':[{'numeric':['>',0]}]}", "{'p':null}");
}

static void test_wildcard(void **state)
{
    YES("{'f':[{'wildcard':'*'}]}", "{'f':'anything'}");
    YES("{'f':[{'wildcard':'*'}]}", "{'f':''}");
    NO("{'f':[{'wildcard':'*'}]}", "{'f':5}");
    YES("{'f':[{'wildcard':'dir/*.png'}]}", "{'f':'dir/a.png'}");
    YES("{'f':[{'wildcard':'dir/*.png'}]}", "{'f':'dir/.png'}");
    NO("{'f':[{'wildcard':'dir/*.png'}]}", "{'f':'dir/a.jpg'}");
    NO("{'f':[{'wildcard':'dir/*.png'}]}", "{'f':'xdir/a.png'}");
    YES("{'f':[{'wildcard':'a*b*c'}]}", "{'f':'abc'}");
    YES("{'f':[{'wildcard':'a*b*c'}]}", "{'f':'aXbYc'}");
    YES("{'f':[{'wildcard':'a*b*c'}]}", "{'f':'abbcbc'}");
    NO("{'f':[{'wildcard':'a*b*c'}]}", "{'f':'acb'}");
    NO("{'f':[{'wildcard':'a*b*c'}]}", "{'f':'ab'}");
    YES("{'f':[{'wildcard':'*aab'}]}", "{'f':'aaab'}");
    YES("{'f':[{'wildcard':'*ab*ab'}]}", "{'f':'abab'}");
    YES("{'f':[{'wildcard':'*ab*ab'}]}", "{'f':'abaab'}");
    NO("{'f':[{'wildcard':'*ab*ab'}]}", "{'f':'aba'}");
    NO("{'f':[{'wildcard':'ab*ba'}]}", "{'f':'aba'}");
    YES("{'f':[{'wildcard':'exact'}]}", "{'f':'exact'}");
    NO("{'f':[{'wildcard':'exact'}]}", "{'f':'exactly'}");
    /* \* is a literal star, \\ a backslash (doubled again in JSON). */
    YES("{'f':[{'wildcard':'a\\\\*b'}]}", "{'f':'a*b'}");
    NO("{'f':[{'wildcard':'a\\\\*b'}]}", "{'f':'axb'}");
    YES("{'f':[{'wildcard':'a\\\\\\\\*'}]}", "{'f':'a\\\\bc'}");
    /* Through escapes in the record. */
    YES("{'f':[{'wildcard':'*\xc3\xa9*'}]}", "{'f':'caf\\u00e9!'}");
    YES("{'f':[{'wildcard':'*\\\"*'}]}", "{'f':'say \\u0022hi'}");
    NO("{'f':[{'wildcard':'*\xc3\xa9*'}]}", "{'f':'cafe'}");
}

static void test_cidr(void **state)
{
    YES("{'ip':[{'cidr':'10.0.0.0/24'}]}", "{'ip':'10.0.0.5'}");
    NO("{'ip':[{'cidr':'10.0.0.0/24'}]}", "{'ip':'10.0.1.5'}");
    NO("{'ip':[{'cidr':'10.0.0.0/24'}]}", "{'ip':'10.0.0'}");
    NO("{'ip':[{'cidr':'10.0.0.0/24'}]}", "{'ip':'10.0.0.5/24'}");
    NO("{'ip':[{'cidr':'10.0.0.0/24'}]}", "{'ip':167772165}");
    YES("{'ip':[{'cidr':'10.0.0.7/24'}]}", "{'ip':'10.0.0.200'}");
    YES("{'ip':[{'cidr':'10.0.0.0/25'}]}", "{'ip':'10.0.0.127'}");
    NO("{'ip':[{'cidr':'10.0.0.0/25'}]}", "{'ip':'10.0.0.128'}");
    YES("{'ip':[{'cidr':'0.0.0.0/0'}]}", "{'ip':'8.8.8.8'}");
    YES("{'ip':[{'cidr':'192.168.1.1'}]}", "{'ip':'192.168.1.1'}");
    NO("{'ip':[{'cidr':'192.168.1.1'}]}", "{'ip':'192.168.1.2'}");
    YES("{'ip':[{'cidr':'2001:db8::/32'}]}", "{'ip':'2001:db8:1::1'}");
    NO("{'ip':[{'cidr':'2001:db8::/32'}]}", "{'ip':'2001:db9::1'}");
    NO("{'ip':[{'cidr':'2001:db8::/32'}]}", "{'ip':'10.0.0.5'}");
    NO("{'ip':[{'cidr':'10.0.0.0/8'}]}", "{'ip':'::ffff:10.0.0.1'}");
}

static void test_or(void **state)
{
    const char *two = "{'$or':[{'l':['NY']},{'d':['Mon']}]}";
    const char *and = "{'t':['x'],'$or':[{'a':[1]},{'b':[2]}]}";

    YES(two, "{'l':'NY'}");
    YES(two, "{'d':'Mon','l':'LA'}");
    NO(two, "{'l':'LA','d':'Tue'}");
    NO(two, "{}");
    YES(and, "{'t':'x','b':2}");
    NO(and, "{'b':2}");
    NO(and, "{'t':'x'}");
    YES("{'$or':[{'a':[1]},{'$or':[{'b':[2]},{'c':[3]}]}]}", "{'c':3}");
    NO("{'$or':[{'a':[1]},{'$or':[{'b':[2]},{'c':[3]}]}]}", "{'d':4}");
    YES("{'$or':[{'a':[1]},{'a':[2]}]}", "{'a':2}");
    YES("{'$or':[{'a':[1]},{'a':[2]}]}", "{'a':1}");
    NO("{'$or':[{'a':[1]},{'a':[2]}]}", "{'a':3}");
    YES("{'a':[{'numeric':['>',0]}],'$or':[{'a':[5]},{'a':[7]}]}", "{'a':7}");
    NO("{'a':[{'numeric':['>',0]}],'$or':[{'a':[5]},{'a':[7]}]}", "{'a':6}");
    YES("{'x':{'$or':[{'a':[1]},{'b':[1]}]}}", "{'x':{'b':1}}");
    NO("{'x':{'$or':[{'a':[1]},{'b':[1]}]}}", "{'x':{'c':1}}");
    NO("{'x':{'$or':[{'a':[1]},{'b':[1]}]}}", "{'x':5}");
    YES("{'$or':[{'x':{'y':[1]}},{'z':[1]}]}", "{'x':{'y':1}}");
    YES("{'$or':[{'x':{'y':[1]}},{'z':[1]}]}", "{'z':1,'x':{'y':2}}");
    NO("{'$or':[{'x':{'y':[1]}},{'z':[1]}]}", "{'z':2,'x':{'y':2}}");
    YES("{'$or':[{'a':[1],'b':[1]},{'c':[1]}]}", "{'a':1,'b':1}");
    NO("{'$or':[{'a':[1],'b':[1]},{'c':[1]}]}", "{'a':1}");
    YES("{'$or':[{'a':[{'exists':false}]},{'b':[1]}]}", "{}");
}

static void test_nesting_arrays(void **state)
{
    const char *deep = "{'a':{'b':{'c':['x']}}}";
    const char *items = "{'items':{'id':[1],'ok':[true]}}";

    YES(deep, "{'a':{'b':{'c':'x'}}}");
    NO(deep, "{'a':{'b':{'c':'y'}}}");
    NO(deep, "{'a':{'b':'x'}}");
    NO(deep, "{'a':'x'}");
    NO(deep, "{'a':{'c':'x'}}");
    YES("{'t':['x']}", "{'t':['a','x']}");
    NO("{'t':['x']}", "{'t':['a']}");
    NO("{'t':['x']}", "{'t':[]}");
    YES("{'t':['x']}", "{'t':[['a'],[['x']]]}");
    YES("{'t':['x']}", "{'t':[{'q':1},'x']}");
    NO("{'t':['x']}", "{'t':{'q':'x'}}");
    YES("{'items':{'id':[2]}}", "{'items':[{'id':1},{'id':2}]}");
    NO("{'items':{'id':[2]}}", "{'items':[{'id':1}]}");
    YES("{'items':{'id':[2]}}", "{'items':[[{'id':2}]]}");
    NO("{'items':{'id':[2]}}", "{'items':[]}");
    /* All keys of a nested pattern from the same element. */
    NO(items, "{'items':[{'id':1,'ok':false},{'id':2,'ok':true}]}");
    YES(items, "{'items':[{'id':2,'ok':false},{'ok':true,'id':1}]}");
    YES("{'o':{'x':[{'exists':false}]}}", "{'o':[{'x':1},{'y':1}]}");
    NO("{'o':{'x':[{'exists':false}]}}", "{'o':[{'x':1}]}");
    /* Skipped values that look like structure. */
    YES("{'a':['x']}", "{'z':{'deep':[1,[2,{'q':'}\\']\\\\'}]],'e':[]},'a':'x','y':[[[]]]}");
    YES("{'a':{'b':['x']}}", "{'a':{'n':{'m':{'k':[{}]}},'b':'x'}}");
}

static void test_duplicates(void **state)
{
    YES("{'a':['x'],'a':['y']}", "{'a':'y'}");
    NO("{'a':['x'],'a':['y']}", "{'a':'x'}");
    YES("{'a':[{'prefix':'x','prefix':'y'}]}", "{'a':'yz'}");
    NO("{'a':[{'prefix':'x','prefix':'y'}]}", "{'a':'xz'}");
    YES("{'$or':[{'a':[1]}],'$or':[{'b':[1]}]}", "{'b':1}");
    NO("{'$or':[{'a':[1]}],'$or':[{'b':[1]}]}", "{'a':1}");
    YES("{'a':['y']}", "{'a':'x','a':'y'}");
    NO("{'a':['x']}", "{'a':'x','a':'y'}");
    YES("{'o':{'b':[2]}}", "{'o':{'b':1},'o':{'b':2}}");
    NO("{'o':{'b':[1]}}", "{'o':{'b':1},'o':{'b':2}}");
    NO("{'a':[{'exists':false}]}", "{'a':1,'a':{'x':1},'a':2}");
}

static void test_escapes(void **state)
{
    YES("{'a':['say \\'hi\\'']}", "{'a':'say \\'hi\\''}");
    YES("{'a':['say \\'hi\\'']}", "{'a':'say \\u0022hi\\u0022'}");
    YES("{'a':['a\\\\b']}", "{'a':'a\\u005cb'}");
    YES("{'a':['a\\\\b']}", "{'a':'a\\\\b'}");
    NO("{'a':['a\\\\b']}", "{'a':'ab'}");
    YES("{'a':['a/b']}", "{'a':'a\\/b'}");
    YES("{'a':['l1\\nl2\\t']}", "{'a':'l1\\u000al2\\u0009'}");
    YES("{'a':['\xf0\x9f\x98\x80']}", "{'a':'\\ud83d\\ude00'}");
    YES("{'a':['\\ud83d\\ude00']}", "{'a':'\xf0\x9f\x98\x80'}");
    YES("{'a':['x\\ud83d\\ude00y']}", "{'a':'x\\uD83D\\uDE00y'}");
    YES("{'a':[{'prefix':'\\'q'}]}", "{'a':'\\u0022quoted'}");
    YES("{'a':[{'suffix':'\xc3\xa9'}]}", "{'a':'caf\\u00e9'}");
    NO("{'a':[{'suffix':'\xc3\xa9'}]}", "{'a':'cafe'}");
    YES("{'a':[{'suffix':'\\\\'}]}", "{'a':'c:\\\\'}");
    YES("{'a':[{'equals-ignore-case':'ABC'}]}", "{'a':'\\u0061bc'}");
    YES("{'a':[{'prefix':{'equals-ignore-case':'AB'}}]}", "{'a':'\\u0061bc'}");
    YES("{'a':[{'suffix':{'equals-ignore-case':'BC'}}]}", "{'a':'\\u0061b\\u0063'}");
    NO("{'a':['ab']}", "{'a':'\\u0061'}");
    NO("{'a':['a']}", "{'a':'\\u0061b'}");
    NO("{'a':['\\u00e9']}", "{'a':'\\u00e9\\u00e9'}");
    YES("{'a':[{'anything-but':'x'}]}", "{'a':'\\u0078y'}");
    NO("{'a':[{'anything-but':'x'}]}", "{'a':'\\u0078'}");
    YES("{'a':[{'cidr':'10.0.0.0/8'}]}", "{'a':'10.0.0.\\u0031'}");
    /* Keys with escapes, in the record and in the pattern. */
    YES("{'a':['x']}", "{'\\u0061':'x'}");
    YES("{'\\u00e9':['x']}", "{'\xc3\xa9':'x'}");
    YES("{'\xc3\xa9':['x']}", "{'\\u00e9':'x'}");
    YES("{'k\\'q':['x']}", "{'k\\u0022q':'x'}");
    NO("{'a':['x']}", "{'\\u0061b':'x'}");
    YES("{'$or':[{'a':[1]},{'b':[2]}]}", "{'\\u0062':2}");
    /* Malformed escapes in a record never read outside it. */
    NO("{'a':['x']}", "{'a':'\\ud800x'}");
    NO("{'a':['x']}", "{'a':'\\u12'}");
    NO("{'a':[{'suffix':'x'}]}", "{'a':'\\udc00'}");
}

/* ---- the payload, section 6.5 ------------------------------------------------------------ */

#define P_PLAIN "{'body':['hello']}"
#define P_JSON "{'body':{'s':['ok']}}"
#define P_NONE "{'id':['1']}"
#define P_BOTH "{'id':['1'],'body':{'s':['ok']}}"
#define P_PLAIN_META "{'id':['1'],'body':['hello']}"
#define R1 "{'id':'1','body':'ignored'}"
#define R2 "{'id':'2','body':'ignored'}"
#define BIN "\xff\xfehello"
#define JOK "{\"s\":\"ok\"}"
#define JNO "{\"s\":\"no\"}"

static void test_payload_sqs_rule(void **state)
{
    /* Plain string payload. */
    assert_true(md(P_PLAIN, 1, R1, DATA("hello")));
    assert_false(md(P_PLAIN, 1, R1, DATA("bye")));
    assert_true(md(P_NONE, 1, R1, DATA("hello")));
    assert_false(md(P_NONE, 1, R2, DATA("hello")));
    assert_false(md(P_JSON, 1, R1, DATA("hello"))); /* dropped */
    assert_false(md(P_BOTH, 1, R1, DATA("hello")));
    /* JSON payload. */
    assert_false(md(P_PLAIN, 1, R1, DATA(JOK))); /* dropped */
    assert_false(md(P_PLAIN_META, 1, R1, DATA(JOK)));
    assert_true(md(P_NONE, 1, R1, DATA(JOK)));
    assert_true(md(P_JSON, 1, R1, DATA(JOK)));
    assert_false(md(P_JSON, 1, R1, DATA(JNO)));
    assert_true(md(P_BOTH, 1, R1, DATA(JOK)));
    assert_false(md(P_BOTH, 1, R2, DATA(JOK)));
    /* Not UTF-8, and no payload at all. */
    assert_false(md(P_PLAIN, 1, R1, DATA(BIN)));
    assert_false(md(P_JSON, 1, R1, DATA(BIN)));
    assert_true(md(P_NONE, 1, R1, DATA(BIN)));
    assert_false(md(P_PLAIN, 1, R1, NODATA));
    assert_false(md(P_JSON, 1, R1, NODATA));
    assert_true(md(P_NONE, 1, R1, NODATA));
}

static void test_payload_kafka_rule(void **state)
{
    assert_true(md(P_PLAIN, 0, R1, DATA("hello")));
    assert_false(md(P_PLAIN, 0, R1, DATA("bye")));
    assert_true(md(P_JSON, 0, R1, DATA("hello"))); /* the data part is ignored */
    assert_true(md(P_BOTH, 0, R1, DATA("hello")));
    assert_false(md(P_BOTH, 0, R2, DATA("hello")));
    assert_true(md(P_PLAIN, 0, R1, DATA(JOK)));
    assert_true(md(P_PLAIN_META, 0, R1, DATA(JOK)));
    assert_false(md(P_PLAIN_META, 0, R2, DATA(JOK)));
    assert_true(md(P_JSON, 0, R1, DATA(JOK)));
    assert_false(md(P_JSON, 0, R1, DATA(JNO))); /* same format: filtered normally */
    assert_true(md(P_PLAIN, 0, R1, DATA(BIN)));
    assert_true(md(P_JSON, 0, R1, DATA(BIN)));
    assert_false(md(P_PLAIN_META, 0, R2, DATA(BIN)));
    assert_true(md(P_NONE, 0, R1, DATA(BIN)));
    assert_false(md(P_NONE, 0, R2, DATA(JOK)));
    assert_false(md(P_PLAIN, 0, R1, NODATA)); /* no payload: an absent field */
}

static void test_payload_details(void **state)
{
    /* The record's own member under the data key is ignored. */
    assert_false(md(P_PLAIN, 1, "{'body':'hello'}", NODATA));
    assert_false(md(P_JSON, 1, "{'body':{'s':'ok'}}", DATA(JNO)));
    assert_true(md(P_JSON, 1, "{'body':{'s':'no'}}", DATA(JOK)));
    assert_true(md(P_JSON, 1, NULL, DATA(JOK)));
    /* Payload shapes. */
    assert_true(md(P_JSON, 1, NULL, DATA("  {\"s\" : \"ok\"}\n")));
    assert_true(md(P_JSON, 1, NULL, DATA("[{\"s\":\"no\"},{\"s\":\"ok\"}]")));
    assert_false(md(P_JSON, 1, NULL, DATA("42")));
    assert_true(md("{'body':{'s':[{'exists':false}]}}", 1, NULL, DATA("42")));
    assert_false(md(P_PLAIN, 1, NULL, DATA("\"hello\"")));    /* JSON, though a string */
    assert_false(md(P_JSON, 1, NULL, DATA("{\"s\":\"ok\""))); /* broken JSON is text */
    assert_true(md("{'body':[{'prefix':'{'}]}", 1, NULL, DATA("{\"s\":\"ok\"")));
    /* Invalid JSON that a loose scan would match: the payload is text, whatever it looks like. */
    assert_false(md(P_JSON, 1, NULL, DATA("{\"s\":\"ok\"} x")));
    assert_false(md(P_JSON, 1, NULL, DATA("{\"s\":\"ok\",\"t\":[1,]}")));
    assert_false(md(P_JSON, 1, NULL, DATA("{\"s\":\"ok\",\"t\":\"\\q\"}")));
    assert_false(md(P_JSON, 1, NULL, DATA("{\"s\":\"ok\",\"t\":\"\xff\"}")));
    assert_true(md(P_JSON, 0, NULL, DATA("{\"s\":\"no\",\"t\":[1,]}"))); /* ignored */
    assert_false(md(P_JSON, 0, NULL, DATA("{\"s\":\"no\",\"t\":[1]}")));
    assert_true(md("{'body':['{\\'s\\':1}']}", 0, NULL, DATA("{\"s\":1}"))); /* ignored */
    assert_false(md("{'body':['{\\'s\\':1}']}", 1, NULL, DATA("{\"s\":1}")));
    assert_true(md("{'body':['{\\'s\\':1']}", 1, NULL, DATA("{\"s\":1")));
    assert_true(md("{'body':[{'prefix':'ERR'}]}", 1, NULL, DATA("ERROR: disk full")));
    assert_true(md("{'body':['say \\'hi\\' \\\\ ok']}", 1, NULL, DATA("say \"hi\" \\ ok")));
    assert_true(md("{'body':['']}", 1, NULL, DATA("")));
    assert_true(md("{'body':[{'wildcard':'*disk*'}]}", 1, NULL, DATA("ERROR: disk full")));
    assert_true(md("{'body':[{'anything-but':'x'}]}", 1, NULL, DATA("y")));
    assert_false(md("{'body':[{'numeric':['>',1]}]}", 1, NULL, DATA("5 apples")));
    assert_false(md("{'body':[{'numeric':['>',1]}]}", 1, NULL, DATA("5")));
    assert_true(md("{'body':{'n':[{'numeric':['>',1]}]}}", 1, NULL, DATA("{\"n\":5}")));
    /* exists on the data key asks whether there is a payload, in any format. */
    assert_true(md("{'body':[{'exists':true}]}", 1, NULL, DATA(JOK)));
    assert_true(md("{'body':[{'exists':true}]}", 1, NULL, DATA("text")));
    assert_true(md("{'body':[{'exists':true}]}", 1, NULL, DATA(BIN)));
    assert_false(md("{'body':[{'exists':true}]}", 1, NULL, NODATA));
    assert_true(md("{'body':[{'exists':false}]}", 1, NULL, NODATA));
    assert_false(md("{'body':[{'exists':false}]}", 1, NULL, DATA("text")));
    /* The data key inside top-level $or branches, not below the top. */
    assert_true(md("{'$or':[{'body':{'s':['ok']}},{'id':['1']}]}", 1, R1, DATA("text")));
    assert_false(md("{'$or':[{'body':{'s':['ok']}},{'id':['1']}]}", 1, R2, DATA("text")));
    assert_true(md("{'$or':[{'body':{'s':['ok']}},{'id':['1']}]}", 1, R2, DATA(JOK)));
    assert_true(md("{'x':{'body':['q']}}", 1, "{'x':{'body':'q'}}", DATA("text")));
    /* Without a data key the record's member is matched and the payload ignored. */
    {
        struct filter *f = comp(q("{'body':['x']}"), NULL, 1);

        assert_int_equal(run(f, q("{'body':'x'}"), DATA("y")), 1);
        assert_int_equal(run(f, q("{'body':'y'}"), DATA("x")), 0);
        filter_destroy(f);
    }
    /* Another data key. */
    {
        struct filter *f = comp(q("{'value':{'a':[1]},'key':['k']}"), "value", 0);

        assert_int_equal(run(f, q("{'key':'k'}"), DATA("{\"a\":1}")), 1);
        assert_int_equal(run(f, q("{'key':'k'}"), DATA("{\"a\":2}")), 0);
        assert_int_equal(run(f, q("{'key':'k'}"), DATA("plain")), 1);
        assert_int_equal(run(f, q("{'key':'j'}"), DATA("plain")), 0);
        filter_destroy(f);
    }
}

/* ---- refused patterns -------------------------------------------------------------------- */

static void test_invalid(void **state)
{
    bad("'simple string'", "a pattern must be a JSON object", 0);
    bad("null", "a pattern must be a JSON object", 0);
    bad("  [1]", "a pattern must be a JSON object", 2);
    bad("", "not valid JSON", 0);
    bad("{'a': ['x']", "not valid JSON", -1);
    bad("{'a': ['x'],}", "not valid JSON", -1);
    bad("{'a': [1e400]}", "not valid JSON", -1);
    bad("{}", "empty object", 0);
    bad("{'a': {}}", "a: empty object", 6);
    bad("{'eventSource': 'aws:sqs'}", "eventSource: the value must be a list", 16);
    bad("{'eventSource': 5}", "eventSource: the value must be a list", 16);
    bad("{'eventSource': []}", "eventSource: empty list", 16);
    bad("{'a': {'b': [ ]}}", "a.b: empty list", 12);
    bad("{'a': [['x']]}", "a: a list of values cannot hold a list", 7);
    bad("{'a': [{'prefx': 'x'}]}", "a: unknown operator \"prefx\"", 8);
    bad("{'a': [{'prefix': 'x', 'suffix': 'y'}]}", "exactly one key (got 2)", 7);
    bad("{'a': [{}]}", "exactly one key (got 0)", 7);
    bad("{'a': [{'exists': 'yes'}]}", "a: exists expects true or false", 18);
    bad("{'a': [{'exists': [true]}]}", "exists expects true or false", -1);
    bad("{'a': [{'prefix': 5}]}", "a: prefix expects a string", 18);
    bad("{'a': [{'suffix': ['x']}]}", "a: suffix expects a string", 18);
    bad("{'a': [{'prefix': {'equals-ignore-case': 5}}]}", "prefix expects a string", 18);
    bad("{'a': [{'prefix': {'anything-but': 'x'}}]}", "prefix expects a string", 18);
    bad("{'a': [{'equals-ignore-case': ['x']}]}", "equals-ignore-case expects a string", -1);
    bad("{'a': [{'numeric': 5}]}", "numeric expects a list", 19);
    bad("{'a': [{'numeric': []}]}", "numeric: empty list", 19);
    bad("{'a': [{'numeric': ['>']}]}", "numeric: expected a number after \">\"", 20);
    bad("{'a': [{'numeric': ['>', '5']}]}", "numeric: expected a number after \">\"", 25);
    bad("{'a': [{'numeric': [1, '>']}]}", "numeric: expected an operator", 20);
    bad("{'a': [{'numeric': ['~', 1]}]}", "numeric: unknown operator \"~\"", 20);
    bad("{'a': [{'numeric': ['>', 1, '>', 2]}]}", "numeric: two lower bounds", 28);
    bad("{'a': [{'numeric': ['<', 1, '<=', 2]}]}", "numeric: two upper bounds", 28);
    bad("{'a': [{'numeric': ['=', 1, '<', 2]}]}", "cannot be combined", 28);
    bad("{'a': [{'numeric': ['>', 1, '=', 2]}]}", "cannot be combined", 28);
    bad("{'a': [{'numeric': ['>', 5, '<', 1]}]}", "numeric: the range is empty", 19);
    bad("{'a': [{'numeric': ['>', 5, '<', 5]}]}", "numeric: the range is empty", 19);
    bad("{'a': [{'numeric': ['>', 1, '<', 9, '>', 0]}]}", "at most two comparisons", 36);
    bad("{'a': [{'anything-but': []}]}", "anything-but: empty list", 24);
    bad("{'a': [{'anything-but': [true]}]}", "may hold only strings and numbers", 25);
    bad("{'a': [{'anything-but': null}]}", "anything-but expects", 24);
    bad("{'a': [{'anything-but': {'numeric': ['>', 1]}}]}", "unsupported operator \"numeric\"", 25);
    bad("{'a': [{'anything-but': {'prefix': ['x']}}]}", "prefix expects a string", -1);
    bad("{'a': [{'anything-but': {'equals-ignore-case': []}}]}", "empty list", -1);
    bad("{'a': [{'anything-but': {}}]}", "exactly one key (got 0)", -1);
    bad("{'a': [{'wildcard': 'a**b'}]}", "a: wildcard: consecutive '*' characters", 20);
    bad("{'a': [{'wildcard': 'a\\\\b'}]}", "a backslash must come before", 20);
    bad("{'a': [{'wildcard': 5}]}", "wildcard expects a string", 20);
    bad("{'a': [{'cidr': '10.0.0.0/33'}]}", "cidr: \"10.0.0.0/33\" is not an address block", 16);
    bad("{'a': [{'cidr': 'banana'}]}", "is not an address block", 16);
    bad("{'a': [{'cidr': '10.0.0.0/'}]}", "is not an address block", 16);
    bad("{'a': [{'cidr': '::1/129'}]}", "is not an address block", 16);
    bad("{'$or': {'a': [1]}}", "$or expects a list of pattern objects", 8);
    bad("{'$or': []}", "$or: empty list", 8);
    bad("{'$or': [{'a': [1]}, 1]}", "$or: each element must be a pattern object", 21);
    bad("{'$or': [{}]}", "empty object", 9);
    bad("{'$or': [{'$or': 'x'}]}", "$or expects a list", 17);
    bad("{'x': {'$or': [{'a': []}]}}", "x.a: empty list", 21);
}

static void test_limits(void **state)
{
    char *p = malloc(2 * FILTER_PATTERN_MAX + 64);
    char why[512];
    size_t n;

    assert_non_null(p);
    /* 33 levels of objects: refused at the 33rd. */
    n = 0;
    for (int i = 0; i < 33; i++)
        n += (size_t)sprintf(p + n, "{\"k\":");
    n += (size_t)sprintf(p + n, "[1]");
    for (int i = 0; i < 33; i++)
        p[n++] = '}';
    p[n] = '\0';
    assert_int_equal(filter_check(p, n, NULL, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "nesting deeper than 32 levels (at offset 160)"));
    /* 31 objects and the list: 32 levels, accepted and matching. */
    n = 0;
    for (int i = 0; i < 31; i++)
        n += (size_t)sprintf(p + n, "{\"k\":");
    n += (size_t)sprintf(p + n, "[1]");
    for (int i = 0; i < 31; i++)
        p[n++] = '}';
    p[n] = '\0';
    assert_int_equal(filter_check(p, n, NULL, why, sizeof(why)), 0);
    {
        struct filter *f = comp(p, NULL, 0);
        char rec[512];
        size_t r = 0;

        for (int i = 0; i < 31; i++)
            r += (size_t)sprintf(rec + r, "{\"k\":");
        r += (size_t)sprintf(rec + r, "1");
        for (int i = 0; i < 31; i++)
            rec[r++] = '}';
        assert_int_equal(filter_match(f, rec, r, NULL, 0), 1);
        rec[31 * 5] = '2';
        assert_int_equal(filter_match(f, rec, r, NULL, 0), 0);
        filter_destroy(f);
    }
    /* FILTER_PATTERN_MAX characters: exactly at the limit is fine, one more is not. */
    n = (size_t)sprintf(p, "{\"a\":[\"");
    while (n < FILTER_PATTERN_MAX - 3)
        p[n++] = 'x';
    n += (size_t)sprintf(p + n, "\"]}");
    assert_int_equal(n, FILTER_PATTERN_MAX);
    assert_int_equal(filter_check(p, n, NULL, why, sizeof(why)), 0);
    memmove(p + 8, p + 7, n - 7 + 1);
    p[7] = 'x';
    assert_int_equal(filter_check(p, n + 1, NULL, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "longer than 4096 characters (at offset 4096)"));
    /* Characters, not bytes: 4000 two-byte characters are fine. */
    n = (size_t)sprintf(p, "{\"a\":[\"");
    for (int i = 0; i < 4000; i++) {
        p[n++] = '\xc3';
        p[n++] = '\xa9';
    }
    n += (size_t)sprintf(p + n, "\"]}");
    assert_int_equal(filter_check(p, n, NULL, why, sizeof(why)), 0);
    /* The most clauses 4096 characters hold. */
    n = (size_t)sprintf(p, "{");
    for (int i = 0; n < FILTER_PATTERN_MAX - 16; i++)
        n += (size_t)sprintf(p + n, "%s\"%x\":[1]", i ? "," : "", i);
    p[n++] = '}';
    p[n] = '\0';
    {
        struct filter *f = comp(p, NULL, 0);

        assert_int_equal(filter_match(f, "{\"0\":1}", 7, NULL, 0), 0);
        filter_destroy(f);
    }
    free(p);
}

static void test_compile_api(void **state)
{
    const char *pats[FILTER_MAX_PATTERNS + 1];
    size_t lens[FILTER_MAX_PATTERNS + 1];
    struct sy_error err = {{0}};
    struct filter *f;
    char why[64];

    for (int i = 0; i <= FILTER_MAX_PATTERNS; i++) {
        pats[i] = "{\"a\":[1]}";
        lens[i] = strlen(pats[i]);
    }
    assert_null(filter_compile(pats, lens, FILTER_MAX_PATTERNS + 1, NULL, &err));
    assert_string_equal(err.msg, "too many patterns (11; at most 10)");
    f = filter_compile(pats, lens, FILTER_MAX_PATTERNS, NULL, &err);
    assert_non_null(f);
    assert_int_equal(filter_count(f), FILTER_MAX_PATTERNS);
    filter_destroy(f);
    /* The message names the pattern, from 1. */
    pats[1] = "{\"a\": \"x\"}";
    lens[1] = strlen(pats[1]);
    assert_null(filter_compile(pats, lens, 3, NULL, &err));
    assert_string_equal(err.msg, "pattern 2: a: the value must be a list (such as [\"x\"]) or an "
                                 "object (at offset 6)");
    assert_null(filter_compile(pats, lens, 3, NULL, NULL));
    /* No patterns: everything matches. */
    f = filter_compile(NULL, NULL, 0, NULL, &err);
    assert_non_null(f);
    assert_int_equal(filter_count(f), 0);
    assert_int_equal(filter_match(f, "{}", 2, NULL, 0), 1);
    assert_int_equal(filter_match(f, NULL, 0, "x", 1), 1);
    assert_int_equal(filter_explain(f, NULL, 0, NULL, 0, NULL), 1);
    filter_destroy(f);
    filter_destroy(NULL);
    /* OR of patterns; the lengths are honoured (no NUL needed). */
    pats[0] = "{\"a\":[1]}XXXX";
    lens[0] = 9;
    pats[1] = "{\"b\":[2]}";
    lens[1] = 9;
    f = filter_compile(pats, lens, 2, NULL, &err);
    assert_non_null(f);
    assert_int_equal(filter_match(f, "{\"b\":2}", 7, NULL, 0), 1);
    assert_int_equal(filter_match(f, "{\"a\":1}", 7, NULL, 0), 1);
    assert_int_equal(filter_match(f, "{\"a\":2}", 7, NULL, 0), 0);
    /* The record is an object or nothing. */
    assert_int_equal(filter_match(f, "[{\"a\":1}]", 9, NULL, 0), 0);
    assert_int_equal(filter_match(f, "{\"a\":1", 6, NULL, 0), 0);
    assert_int_equal(filter_match(f, "", 0, NULL, 0), 0);
    filter_destroy(f);
    assert_int_equal(filter_check("{\"a\":[1]}", 9, NULL, why, sizeof(why)), 0);
    assert_int_equal(filter_check("{\"a\":1}", 7, NULL, why, 8), -1);
    assert_string_equal(why, "a: the ");
    assert_int_equal(filter_check("{\"a\":1}", 7, NULL, NULL, 0), -1);
}

/* ---- explanations ------------------------------------------------------------------------ */

static void test_explain(void **state)
{
    char out[1024];

    explain("{'body':{'status':['ERROR']}}", 1, NULL, DATA("{\"status\":\"DONE\"}"), out,
            sizeof(out));
    assert_string_equal(out, "pattern 1: body.status: \"DONE\" is not one of [\"ERROR\"]\n");
    explain("{'body':{'status':['ERROR']}}", 1, NULL, DATA("DONE"), out, sizeof(out));
    assert_string_equal(out, "pattern 1: body: the payload is not JSON but the pattern expects "
                             "JSON\n");
    explain("{'body':['DONE']}", 1, NULL, DATA(JOK), out, sizeof(out));
    assert_string_equal(out, "pattern 1: body: the payload is JSON but the pattern expects a "
                             "plain string\n");
    explain("{'body':['DONE']}", 1, NULL, DATA(BIN), out, sizeof(out));
    assert_string_equal(out, "pattern 1: body: the payload is not valid UTF-8\n");
    explain("{'body':['DONE']}", 1, NULL, NODATA, out, sizeof(out));
    assert_string_equal(out, "pattern 1: body: missing (the record has no payload)\n");
    explain("{'body':['hello']}", 1, NULL, DATA("bye \"x\""), out, sizeof(out));
    assert_string_equal(out, "pattern 1: body: \"bye \\\"x\\\"\" is not one of [\"hello\"]\n");
    explain("{'body':[{'exists':false}]}", 1, NULL, DATA("x"), out, sizeof(out));
    assert_string_equal(out, "pattern 1: body: there is a payload but the pattern wants none\n");
    explain("{'a':['x']}", 1, "{}", NODATA, out, sizeof(out));
    assert_string_equal(out, "pattern 1: a: missing\n");
    explain("{ 'a' : [ 'x' , { 'prefix' : 'y' } ] }", 1, "{'a':  'zz'}", NODATA, out, sizeof(out));
    assert_string_equal(out, "pattern 1: a: \"zz\" does not match [\"x\",{\"prefix\":\"y\"}]\n");
    explain("{'a':['x'],'b':{'c':[{'numeric':['>',1]}]}}", 1, "{'a':'x','b':{'c':[0, 1]}}", NODATA,
            out, sizeof(out));
    assert_string_equal(out, "pattern 1: b.c: [0,1] does not match [{\"numeric\":[\">\",1]}]\n");
    explain("{'items':{'id':[2]}}", 1, "{'items':[{'id':1}]}", NODATA, out, sizeof(out));
    assert_string_equal(out, "pattern 1: items: no element of [{\"id\":1}] matches\n");
    explain("{'o':{'b':[1]}}", 1, "{'o':5}", NODATA, out, sizeof(out));
    assert_string_equal(out, "pattern 1: o: 5 is not an object\n");
    explain("{'$or':[{'a':[1]},{'b':[2]}]}", 1, "{'b':3}", NODATA, out, sizeof(out));
    assert_string_equal(out, "pattern 1: $or: none of 2 branches matches; branch 1: a: missing\n");
    explain("{'x':{'$or':[{'a':[1]},{'b':[2]}]}}", 1, "{'x':{'a':2}}", NODATA, out, sizeof(out));
    assert_string_equal(out, "pattern 1: $or: none of 2 branches matches; branch 1: x.a: 2 is not "
                             "one of [1]\n");
    explain("{'a':['x']}", 1,
            "{'a':'0123456789012345678901234567890123456789012345678901234567"
            "890123456789012345678901234567890123456789'}",
            NODATA, out, sizeof(out));
    /* 80 bytes of the value, its opening quote included. */
    assert_string_equal(out, "pattern 1: a: \"0123456789012345678901234567890123456789012345678901"
                             "234567890123456789012345678... is not one of [\"x\"]\n");
    explain("{'a':['x']}", 1, "[1]", NODATA, out, sizeof(out));
    assert_string_equal(out, "pattern 1: the record is not a JSON object\n");
    /* One line per pattern. */
    {
        const char *pats[2] = {q("{'a':[1]}"), q("{'b':[{'prefix':'x'}]}")};
        size_t lens[2] = {strlen(pats[0]), strlen(pats[1])};
        struct filter *f = filter_compile(pats, lens, 2, NULL, NULL);
        struct buf why = {0};

        assert_non_null(f);
        assert_int_equal(filter_explain(f, q("{'a':2,'b':'y'}"), 15, NULL, 0, &why), 0);
        assert_string_equal(why.data, "pattern 1: a: 2 is not one of [1]\n"
                                      "pattern 2: b: \"y\" does not match [{\"prefix\":\"x\"}]\n");
        assert_int_equal(filter_explain(f, q("{'a':1}"), 7, NULL, 0, &why), 1);
        assert_int_equal(filter_explain(f, q("{'a':3}"), 7, NULL, 0, NULL), 0);
        buf_free(&why);
        filter_destroy(f);
    }
}

/* ---- the reference: the same language over jansson's DOM --------------------------------- */

struct ref {
    const char *dk;
    int must;
    const char *data;
    size_t dlen;
};

#define REF_MAX 512

/* The values of V with nested arrays flattened (V itself when not an array). */
static void flatten(json_t *v, json_t **out, size_t *n)
{
    if (!json_is_array(v)) {
        assert_true(*n < REF_MAX);
        out[(*n)++] = v;
        return;
    }
    for (size_t i = 0; i < json_array_size(v); i++)
        flatten(json_array_get(v, i), out, n);
}

/* A number's text as jansson prints it (the generated texts are all in that form). */
static int num_eq(json_t *a, json_t *b)
{
    char *x = json_dumps(a, JSON_ENCODE_ANY), *y = json_dumps(b, JSON_ENCODE_ANY);
    int r = strcmp(x, y) == 0;

    free(x);
    free(y);
    return r;
}

static int lit_eq(json_t *lit, json_t *v)
{
    if (json_is_string(lit))
        return json_is_string(v) && json_string_length(v) == json_string_length(lit) &&
               memcmp(json_string_value(v), json_string_value(lit), json_string_length(v)) == 0;
    if (json_is_number(lit))
        return json_is_number(v) && num_eq(lit, v);
    return json_typeof(lit) == json_typeof(v);
}

static int fold_eq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int x = a[i] >= 'A' && a[i] <= 'Z' ? a[i] + 32 : a[i];
        int y = b[i] >= 'A' && b[i] <= 'Z' ? b[i] + 32 : b[i];

        if (x != y)
            return 0;
    }
    return 1;
}

static int ref_glob(const char *p, size_t pn, const char *s, size_t sn)
{
    char c;
    size_t adv = 1;

    if (pn == 0)
        return sn == 0;
    if (p[0] == '*') {
        for (size_t k = 0; k <= sn; k++) {
            if (ref_glob(p + 1, pn - 1, s + k, sn - k))
                return 1;
        }
        return 0;
    }
    c = p[0];
    if (c == '\\' && pn > 1) {
        c = p[1];
        adv = 2;
    }
    return sn > 0 && s[0] == c && ref_glob(p + adv, pn - adv, s + 1, sn - 1);
}

static int ref_cidr(const char *block, const char *addr)
{
    char a[64];
    unsigned char x[16], y[16];
    const char *slash = strchr(block, '/');
    int v6 = strchr(block, ':') != NULL;
    int bits = slash != NULL ? atoi(slash + 1) : (v6 ? 128 : 32);

    snprintf(a, sizeof(a), "%.*s", (int)(slash != NULL ? slash - block : (long)strlen(block)),
             block);
    if (inet_pton(v6 ? AF_INET6 : AF_INET, a, x) != 1 ||
        inet_pton(v6 ? AF_INET6 : AF_INET, addr, y) != 1)
        return 0;
    for (int i = 0; i < bits; i++) {
        if (((x[i / 8] ^ y[i / 8]) >> (7 - i % 8)) & 1)
            return 0;
    }
    return 1;
}

/* A string test OP with operand ARG on the string V. */
static int str_test(const char *op, json_t *arg, json_t *v)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    int fold = 0;
    const char *t;
    size_t tn;

    if (!json_is_string(v))
        return 0;
    if (json_is_object(arg)) {
        arg = json_object_get(arg, "equals-ignore-case");
        fold = 1;
    }
    t = json_string_value(arg);
    tn = json_string_length(arg);
    if (strcmp(op, "prefix") == 0)
        return n >= tn && fold_eq(s, t, tn) && (fold || memcmp(s, t, tn) == 0);
    if (strcmp(op, "suffix") == 0)
        return n >= tn && fold_eq(s + n - tn, t, tn) && (fold || memcmp(s + n - tn, t, tn) == 0);
    if (strcmp(op, "equals-ignore-case") == 0)
        return n == tn && fold_eq(s, t, tn);
    if (strcmp(op, "wildcard") == 0)
        return ref_glob(t, tn, s, n);
    if (strcmp(op, "cidr") == 0)
        return strlen(s) == n && ref_cidr(t, s);
    fail_msg("reference: unknown string test %s", op);
    return 0;
}

static int ref_alt(json_t *alt, json_t *v)
{
    const char *op;
    json_t *arg;

    if (!json_is_object(alt))
        return lit_eq(alt, v);
    op = json_object_iter_key(json_object_iter(alt));
    arg = json_object_iter_value(json_object_iter(alt));
    if (strcmp(op, "numeric") == 0) {
        double d;

        if (!json_is_number(v))
            return 0;
        d = json_number_value(v);
        for (size_t i = 0; i + 1 < json_array_size(arg); i += 2) {
            const char *o = json_string_value(json_array_get(arg, i));
            double b = json_number_value(json_array_get(arg, i + 1));

            if ((strcmp(o, "<") == 0 && !(d < b)) || (strcmp(o, "<=") == 0 && !(d <= b)) ||
                (strcmp(o, "=") == 0 && !(d == b)) || (strcmp(o, ">=") == 0 && !(d >= b)) ||
                (strcmp(o, ">") == 0 && !(d > b)))
                return 0;
        }
        return 1;
    }
    if (strcmp(op, "anything-but") == 0) {
        if (json_is_object(arg)) {
            const char *inner = json_object_iter_key(json_object_iter(arg));
            json_t *val = json_object_iter_value(json_object_iter(arg));

            if (!json_is_string(v))
                return 0;
            if (!json_is_array(val))
                return !str_test(inner, val, v);
            for (size_t i = 0; i < json_array_size(val); i++) {
                if (str_test(inner, json_array_get(val, i), v))
                    return 0;
            }
            return 1;
        }
        if (!json_is_array(arg))
            return !lit_eq(arg, v);
        for (size_t i = 0; i < json_array_size(arg); i++) {
            if (lit_eq(json_array_get(arg, i), v))
                return 0;
        }
        return 1;
    }
    return str_test(op, arg, v);
}

/* The list LIST against the member value V (NULL: absent). */
static int ref_leaf(json_t *list, json_t *v)
{
    json_t *vals[REF_MAX];
    size_t n = 0, nleaf = 0;
    int et = 0, ef = 0;

    if (v != NULL)
        flatten(v, vals, &n);
    for (size_t k = 0; k < n; k++) {
        if (!json_is_object(vals[k]))
            vals[nleaf++] = vals[k];
    }
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *alt = json_array_get(list, i);
        json_t *ex = json_is_object(alt) ? json_object_get(alt, "exists") : NULL;

        if (ex != NULL) {
            if (json_is_true(ex))
                et = 1;
            else
                ef = 1;
            continue;
        }
        for (size_t k = 0; k < nleaf; k++) {
            if (ref_alt(alt, vals[k]))
                return 1;
        }
    }
    return nleaf > 0 ? et : ef;
}

static int ref_obj(const struct ref *rf, json_t *pat, json_t *obj, int top);

/* The nested pattern PAT against the member value V (NULL: absent). */
static int ref_nested(const struct ref *rf, json_t *pat, json_t *v)
{
    json_t *vals[REF_MAX];
    size_t n = 0;

    if (v == NULL || !json_is_array(v))
        return ref_obj(rf, pat, json_is_object(v) ? v : NULL, 0);
    flatten(v, vals, &n);
    if (n == 0)
        return ref_obj(rf, pat, NULL, 0);
    for (size_t i = 0; i < n; i++) {
        if (ref_obj(rf, pat, json_is_object(vals[i]) ? vals[i] : NULL, 0))
            return 1;
    }
    return 0;
}

static int ref_data(const struct ref *rf, json_t *pv)
{
    json_t *doc, *str;
    int only_exists = json_is_array(pv), et = 0, r;

    if (rf->data == NULL)
        return json_is_array(pv) ? ref_leaf(pv, NULL) : ref_nested(rf, pv, NULL);
    for (size_t i = 0; i < json_array_size(pv); i++) {
        json_t *e = json_array_get(pv, i);
        json_t *ex = json_is_object(e) ? json_object_get(e, "exists") : NULL;

        if (ex == NULL)
            only_exists = 0;
        else if (json_is_true(ex))
            et = 1;
    }
    if (only_exists)
        return et;
    doc = json_loadb(rf->data, rf->dlen, JSON_DECODE_ANY, NULL);
    str = doc == NULL ? json_stringn(rf->data, rf->dlen) : NULL; /* NULL: not UTF-8 */
    if (doc != NULL && json_is_object(pv))
        r = ref_nested(rf, pv, doc);
    else if (str != NULL && json_is_array(pv))
        r = ref_leaf(pv, str);
    else
        r = !rf->must;
    json_decref(doc);
    json_decref(str);
    return r;
}

static int ref_obj(const struct ref *rf, json_t *pat, json_t *obj, int top)
{
    for (void *it = json_object_iter(pat); it != NULL; it = json_object_iter_next(pat, it)) {
        const char *key = json_object_iter_key(it);
        json_t *pv = json_object_iter_value(it);
        int ok = 0;

        if (strcmp(key, "$or") == 0) {
            for (size_t i = 0; i < json_array_size(pv); i++) {
                if (ref_obj(rf, json_array_get(pv, i), obj, top))
                    ok = 1;
            }
        } else if (top && rf->dk != NULL && strcmp(key, rf->dk) == 0) {
            ok = ref_data(rf, pv);
        } else {
            json_t *sub = obj != NULL ? json_object_get(obj, key) : NULL;

            ok = json_is_array(pv) ? ref_leaf(pv, sub) : ref_nested(rf, pv, sub);
        }
        if (!ok)
            return 0;
    }
    return 1;
}

/* ---- random patterns and records --------------------------------------------------------- */

static unsigned rnd(unsigned *s, unsigned n)
{
    return (unsigned)rand_r(s) % n;
}

/* Code point at P (valid UTF-8), its length in *LEN. */
static unsigned long cp_at(const unsigned char *p, size_t *len)
{
    if (p[0] < 0x80) {
        *len = 1;
        return p[0];
    }
    if (p[0] < 0xe0) {
        *len = 2;
        return ((p[0] & 0x1ful) << 6) | (p[1] & 0x3f);
    }
    if (p[0] < 0xf0) {
        *len = 3;
        return ((p[0] & 0x0ful) << 12) | ((p[1] & 0x3ful) << 6) | (p[2] & 0x3f);
    }
    *len = 4;
    return ((p[0] & 0x07ul) << 18) | ((p[1] & 0x3ful) << 12) | ((p[2] & 0x3ful) << 6) |
           (p[3] & 0x3f);
}

/* S as a JSON string, each character written raw or escaped at random. */
static void put_str(struct buf *b, unsigned *sd, const char *s)
{
    buf_puts(b, "\"");
    for (size_t i = 0; s[i] != '\0';) {
        size_t len;
        unsigned long cp = cp_at((const unsigned char *)s + i, &len);
        int esc = rnd(sd, 4) == 0;

        if (cp == '"' || cp == '\\') {
            if (esc)
                buf_printf(b, "\\u%04lx", cp);
            else
                buf_printf(b, "\\%c", (int)cp);
        } else if (cp == '\t') {
            buf_puts(b, esc ? "\\u0009" : "\\t");
        } else if (cp == '/' && esc) {
            buf_puts(b, "\\/");
        } else if (!esc) {
            buf_append(b, s + i, len);
        } else if (cp < 0x10000) {
            buf_printf(b, rnd(sd, 2) ? "\\u%04lx" : "\\u%04lX", cp);
        } else {
            cp -= 0x10000;
            buf_printf(b, "\\u%04lx\\u%04lx", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
        }
        i += len;
    }
    buf_puts(b, "\"");
}

static const char *const g_keys[] = {"a", "b", "c", "\xc3\xa9", "body"};
static const char *const g_strs[] = {
    "x",
    "X",
    "xy",
    "",
    "us-east-1",
    "US-EAST-1",
    "file.png",
    "a\"b",
    "tab\there",
    "\xc3\xa9",
    "\xf0\x9f\x98\x80",
    "10.0.0.5",
    "192.168.1.1",
    "2001:db8::1",
    "a*b",
    "a\\b",
    "a/b",
    "hello",
};
static const char *const g_nums[] = {"0", "1", "2", "10", "-3", "2.5", "100", "-0.5"};

#define PICK(arr, sd) (arr)[rnd((sd), sizeof(arr) / sizeof((arr)[0]))]

static void gen_value(struct buf *b, unsigned *sd, int depth)
{
    unsigned k = rnd(sd, depth < 3 ? 10 : 7);

    switch (k) {
    case 0:
    case 1:
    case 2:
        put_str(b, sd, PICK(g_strs, sd));
        break;
    case 3:
    case 4:
        buf_puts(b, PICK(g_nums, sd));
        break;
    case 5:
        buf_puts(b, rnd(sd, 2) ? "true" : "false");
        break;
    case 6:
        buf_puts(b, "null");
        break;
    case 7:
    case 8: {
        unsigned n = rnd(sd, 4);

        buf_puts(b, "{");
        for (unsigned i = 0; i < n; i++) {
            buf_puts(b, i ? ", " : "");
            put_str(b, sd, PICK(g_keys, sd));
            buf_puts(b, rnd(sd, 2) ? ":" : " : ");
            gen_value(b, sd, depth + 1);
        }
        buf_puts(b, "}");
        break;
    }
    default: {
        unsigned n = rnd(sd, 4);

        buf_puts(b, "[");
        for (unsigned i = 0; i < n; i++) {
            buf_puts(b, i ? "," : "");
            gen_value(b, sd, depth + 1);
        }
        buf_puts(b, "]");
        break;
    }
    }
}

static void gen_record(struct buf *b, unsigned *sd)
{
    unsigned n = rnd(sd, 6);

    buf_puts(b, rnd(sd, 2) ? "{" : " {\n  ");
    for (unsigned i = 0; i < n; i++) {
        buf_puts(b, i ? ",\n " : "");
        put_str(b, sd, PICK(g_keys, sd));
        buf_puts(b, ":");
        gen_value(b, sd, 1);
    }
    buf_puts(b, "}");
}

static const char *const g_prefixes[] = {
    "", "x", "us-", "US-", "a", "\xc3\xa9", "\xf0\x9f\x98\x80", "10.", "fi"};
static const char *const g_suffixes[] = {".png", "PNG", "y", "b", "-1", "\xf0\x9f\x98\x80", ""};
static const char *const g_wild[] = {"*", "x*",  "*.png", "us-*-1",     "a\\\\*b", "*\xc3\xa9*",
                                     "",  "x*y", "*a*b*", "a\\\\\\\\b", "*-*"};
static const char *const g_cidr[] = {"10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32", "10.0.0.5",
                                     "0.0.0.0/0"};
static const char *const g_numeric[] = {
    "[\"=\", 10]",
    "[\">\", 0]",
    "[\">=\", 2.5, \"<\", 100]",
    "[\"<=\", -0.5]",
    "[\"<\", 2, \">\", -3]",
    "[\">\", 1, \"<=\", 1e2]",
};

/* A string or number literal. */
static void gen_lit(struct buf *b, unsigned *sd)
{
    if (rnd(sd, 3))
        put_str(b, sd, PICK(g_strs, sd));
    else
        buf_puts(b, PICK(g_nums, sd));
}

static void gen_alt(struct buf *b, unsigned *sd)
{
    switch (rnd(sd, 16)) {
    case 0:
    case 1:
    case 2:
        gen_lit(b, sd);
        break;
    case 3:
        buf_puts(b, PICK(((const char *const[]){"true", "false", "null"}), sd));
        break;
    case 4:
        buf_puts(b, rnd(sd, 2) ? "{\"exists\": true}" : "{\"exists\":false}");
        break;
    case 5:
    case 6: {
        int suffix = rnd(sd, 2);

        buf_printf(b, "{\"%s\":", suffix ? "suffix" : "prefix");
        if (rnd(sd, 3) == 0) {
            buf_puts(b, "{\"equals-ignore-case\":");
            put_str(b, sd, suffix ? PICK(g_suffixes, sd) : PICK(g_prefixes, sd));
            buf_puts(b, "}");
        } else {
            put_str(b, sd, suffix ? PICK(g_suffixes, sd) : PICK(g_prefixes, sd));
        }
        buf_puts(b, "}");
        break;
    }
    case 7:
        buf_puts(b, "{\"equals-ignore-case\":");
        put_str(b, sd, PICK(g_strs, sd));
        buf_puts(b, "}");
        break;
    case 8:
        buf_printf(b, "{\"numeric\":%s}", PICK(g_numeric, sd));
        break;
    case 9:
        buf_printf(b, "{\"wildcard\":\"%s\"}", PICK(g_wild, sd));
        break;
    case 10:
        buf_printf(b, "{\"cidr\":\"%s\"}", PICK(g_cidr, sd));
        break;
    case 11:
        buf_puts(b, "{\"anything-but\":");
        gen_lit(b, sd);
        buf_puts(b, "}");
        break;
    case 12: {
        unsigned n = 1 + rnd(sd, 3);

        buf_puts(b, "{\"anything-but\":[");
        for (unsigned i = 0; i < n; i++) {
            buf_puts(b, i ? "," : "");
            gen_lit(b, sd);
        }
        buf_puts(b, "]}");
        break;
    }
    case 13: {
        int suffix = rnd(sd, 2);

        buf_printf(b, "{\"anything-but\":{\"%s\":", suffix ? "suffix" : "prefix");
        put_str(b, sd, suffix ? PICK(g_suffixes, sd) : PICK(g_prefixes, sd));
        buf_puts(b, "}}");
        break;
    }
    case 14:
        buf_puts(b, "{\"anything-but\":{\"equals-ignore-case\":");
        if (rnd(sd, 2)) {
            put_str(b, sd, PICK(g_strs, sd));
        } else {
            buf_puts(b, "[");
            put_str(b, sd, PICK(g_strs, sd));
            buf_puts(b, ",");
            put_str(b, sd, PICK(g_strs, sd));
            buf_puts(b, "]");
        }
        buf_puts(b, "}}");
        break;
    default:
        buf_printf(b, "{\"anything-but\":{\"wildcard\":\"%s\"}}", PICK(g_wild, sd));
        break;
    }
}

static void gen_pattern(struct buf *b, unsigned *sd, int depth)
{
    unsigned n = 1 + rnd(sd, 3);

    buf_puts(b, "{");
    for (unsigned i = 0; i < n; i++) {
        unsigned kind = rnd(sd, depth < 3 ? 10 : 6);

        buf_puts(b, i ? ", " : "");
        if (kind >= 8) {
            unsigned nb = 1 + rnd(sd, 3);

            buf_puts(b, "\"$or\": [");
            for (unsigned k = 0; k < nb; k++) {
                buf_puts(b, k ? "," : "");
                gen_pattern(b, sd, depth + 1);
            }
            buf_puts(b, "]");
            continue;
        }
        put_str(b, sd, PICK(g_keys, sd));
        buf_puts(b, ":");
        if (kind >= 6) {
            gen_pattern(b, sd, depth + 1);
        } else {
            unsigned na = 1 + rnd(sd, 3);

            buf_puts(b, "[");
            for (unsigned k = 0; k < na; k++) {
                buf_puts(b, k ? ", " : "");
                gen_alt(b, sd);
            }
            buf_puts(b, "]");
        }
    }
    buf_puts(b, "}");
}

/* A payload: none, JSON of several shapes, text, or bytes that are not UTF-8. */
static void gen_payload(struct buf *b, unsigned *sd, int *present)
{
    *present = 1;
    switch (rnd(sd, 8)) {
    case 0:
        *present = 0;
        break;
    case 1:
    case 2:
        gen_record(b, sd);
        break;
    case 3:
        buf_puts(b, PICK(g_strs, sd));
        break;
    case 4:
        buf_puts(b, PICK(((const char *const[]){"42", "\"x\"", "[]", "null", "  true "}), sd));
        break;
    case 5:
        buf_puts(b, "[");
        gen_record(b, sd);
        buf_puts(b, ",");
        gen_value(b, sd, 2);
        buf_puts(b, "]");
        break;
    case 6:
        buf_puts(b, "\xff\xfe x");
        break;
    default:
        buf_puts(b, "{\"a\": \"x\"");
        break;
    }
}

static int ref_match(json_t *const *pats, size_t n, const struct ref *rf, const char *rec)
{
    json_t *r = json_loads(rec, 0, NULL);
    int m = 0;

    if (r == NULL)
        fail_msg("generated record is not JSON: %s", rec);
    for (size_t i = 0; i < n && !m; i++)
        m = ref_obj(rf, pats[i], r, 1);
    json_decref(r);
    return m;
}

static void test_random_crosscheck(void **state)
{
    unsigned sd = 20240611;
    unsigned long total = 0, matched = 0;

    for (int it = 0; it < 3000; it++) {
        struct buf pt[2] = {{0}, {0}};
        const char *texts[2];
        size_t lens[2];
        json_t *doms[2];
        size_t np = 1 + (rnd(&sd, 4) == 0);
        struct filter *f[2];
        struct sy_error err;

        for (size_t i = 0; i < np; i++) {
            gen_pattern(&pt[i], &sd, 1);
            texts[i] = pt[i].data;
            lens[i] = pt[i].len;
            doms[i] = json_loads(pt[i].data, 0, NULL);
            if (doms[i] == NULL)
                fail_msg("generated pattern is not JSON: %s", pt[i].data);
        }
        for (int must = 0; must < 2; must++) {
            struct filter_opts o = {"body", must};

            f[must] = filter_compile(texts, lens, np, &o, &err);
            if (f[must] == NULL)
                fail_msg("generated pattern refused: %s: %s", texts[0], err.msg);
        }
        for (int r = 0; r < 20; r++) {
            struct buf rec = {0}, data = {0};
            int present;

            gen_record(&rec, &sd);
            gen_payload(&data, &sd, &present);
            for (int must = 0; must < 2; must++) {
                struct ref rf = {"body", must, present ? (data.data ? data.data : "") : NULL,
                                 data.len};
                int want = ref_match(doms, np, &rf, rec.data);
                int got = filter_match(f[must], rec.data, rec.len, rf.data, rf.dlen);
                struct buf why = {0};

                if (got != want)
                    fail_msg("scanner %d, reference %d (must=%d)\npattern: %s\npattern 2: %s\n"
                             "record: %s\npayload: %s",
                             got, want, must, texts[0], np > 1 ? texts[1] : "-", rec.data,
                             rf.data ? rf.data : "(none)");
                if (filter_explain(f[must], rec.data, rec.len, rf.data, rf.dlen, &why) != got)
                    fail_msg("filter_explain disagrees on %s", rec.data);
                if (!got) {
                    size_t lines = 0;

                    for (size_t k = 0; k < why.len; k++)
                        lines += why.data[k] == '\n';
                    assert_int_equal(lines, np);
                }
                buf_free(&why);
                total++;
                matched += (unsigned long)got;
            }
            buf_free(&rec);
            buf_free(&data);
        }
        for (size_t i = 0; i < np; i++) {
            json_decref(doms[i]);
            buf_free(&pt[i]);
        }
        filter_destroy(f[0]);
        filter_destroy(f[1]);
    }
    /* Both outcomes must be well represented for the comparison to mean anything. */
    print_message("cross-checked %lu matches, %lu positive\n", total, matched);
    assert_true(matched > total / 20);
    assert_true(matched < total - total / 20);
}

/* Damaged records: any answer, but inside the bounds (ASan builds check that). */
static void test_damaged_records(void **state)
{
    static const char junk[] = "{}[],:\"\\ u0123456789abcdefe.-+tnrl\xc3\xa9\xff";
    unsigned sd = 777;

    for (int it = 0; it < 300; it++) {
        struct buf pt = {0}, rec = {0};
        struct filter_opts o = {"body", (int)rnd(&sd, 2)};
        const char *text;
        size_t len;
        struct filter *f;

        gen_pattern(&pt, &sd, 1);
        text = pt.data;
        len = pt.len;
        f = filter_compile(&text, &len, 1, &o, NULL);
        assert_non_null(f);
        gen_record(&rec, &sd);
        for (int k = 0; k < 40; k++) {
            size_t n = rec.len;
            char *copy = malloc(n + 1);
            struct buf why = {0};

            memcpy(copy, rec.data, n);
            for (int e = 0; e < 3 && n > 0; e++)
                copy[rnd(&sd, (unsigned)n)] = junk[rnd(&sd, sizeof(junk) - 1)];
            if (rnd(&sd, 3) == 0)
                n = rnd(&sd, (unsigned)n + 1);
            /* Exactly N bytes, nothing after them, so a read past the end is caught. */
            copy = realloc(copy, n > 0 ? n : 1);
            (void)filter_match(f, copy, n, copy, n);
            (void)filter_explain(f, copy, n, copy, n, &why);
            buf_free(&why);
            free(copy);
        }
        filter_destroy(f);
        buf_free(&pt);
        buf_free(&rec);
    }
}

/* ---- matching never allocates ------------------------------------------------------------ */

static void test_no_alloc(void **state)
{
    static const char *const pats[] = {
        "{'a':['x', 300, true, null, {'exists':false}], 'b':{'c':[{'prefix':'us-'}]}}",
        "{'a':[{'suffix':{'equals-ignore-case':'.PNG'}}, {'equals-ignore-case':'X'}]}",
        "{'a':[{'anything-but':['x', 1]}, {'anything-but':{'wildcard':'*q*'}}], 'n':[{'numeric':"
        "['>', 1, '<=', 100]}]}",
        "{'$or':[{'ip':[{'cidr':'10.0.0.0/8'}]},{'$or':[{'w':[{'wildcard':'a*\\u00e9*z'}]}]}]}",
        "{'body':{'s':['ok'], 'items':{'id':[2]}}, 'id':[{'prefix':{'equals-ignore-case':'M'}}]}",
        "{'body':[{'prefix':'ERR'}, {'anything-but':{'suffix':'!'}}]}",
    };
    static const char *const recs[] = {
        "{'a':'\\u0078','b':{'c':'us-\\u00e9\\ud83d\\ude00'},'z':[1,{'q':[2,'}']}]}",
        "{'a':['file.png', 'X'], 'n':[0, 1.5e1], 'ip':'10.1.2.3', 'w':'abc\\u00e9xyz'}",
        "{'\\u0061':'q', 'id':'m-1', 'body':'ignored', 'ip':'\\u0031\\u0030.0.0.1'}",
        "{}",
    };
    static const char *const datas[] = {
        "{\"s\":\"ok\",\"items\":[{\"id\":1},{\"id\":2}]}",
        "ERROR: disk",
        "\xff\xfe",
        "[1,2",
    };
    const char *texts[sizeof(pats) / sizeof(pats[0])];
    size_t lens[sizeof(pats) / sizeof(pats[0])];
    char recbuf[4][512];
    struct filter_opts o = {"body", 1};
    struct filter *f;
    unsigned long hits = 0;

    for (size_t i = 0; i < sizeof(pats) / sizeof(pats[0]); i++) {
        texts[i] = strdup(q(pats[i]));
        lens[i] = strlen(texts[i]);
    }
    for (size_t i = 0; i < 4; i++)
        snprintf(recbuf[i], sizeof(recbuf[i]), "%s", q(recs[i]));
    f = filter_compile(texts, lens, sizeof(pats) / sizeof(pats[0]), &o, NULL);
    assert_non_null(f);
    count_init();
    n_allocs = 0;
    counting = 1;
    for (int k = 0; k < 200; k++) {
        for (size_t r = 0; r < 4; r++) {
            for (size_t d = 0; d < 4; d++)
                hits += (unsigned long)filter_match(f, recbuf[r], strlen(recbuf[r]), datas[d],
                                                    strlen(datas[d]));
            hits += (unsigned long)filter_match(f, recbuf[r], strlen(recbuf[r]), NULL, 0);
        }
    }
    counting = 0;
    assert_int_equal(n_allocs, 0);
    assert_true(hits > 0);
    /* The counter itself works. */
    {
        void *volatile probe; /* volatile: the compiler may not drop the pair */

        counting = 1;
        probe = malloc(16);
        counting = 0;
        free(probe);
    }
    assert_int_equal(n_allocs, 1);
    filter_destroy(f);
    for (size_t i = 0; i < sizeof(pats) / sizeof(pats[0]); i++)
        free((void *)texts[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact),
        cmocka_unit_test(test_exists),
        cmocka_unit_test(test_prefix_suffix_case),
        cmocka_unit_test(test_anything_but),
        cmocka_unit_test(test_numeric),
        cmocka_unit_test(test_wildcard),
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_or),
        cmocka_unit_test(test_nesting_arrays),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_payload_sqs_rule),
        cmocka_unit_test(test_payload_kafka_rule),
        cmocka_unit_test(test_payload_details),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_compile_api),
        cmocka_unit_test(test_explain),
        cmocka_unit_test(test_random_crosscheck),
        cmocka_unit_test(test_damaged_records),
        cmocka_unit_test(test_no_alloc),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
