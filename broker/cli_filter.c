/*
 * broker/cli_filter.c - `switchyard filter test`: records from stdin against filter patterns,
 * one verdict per record on stdout. See cli_filter.h for the arguments and the formats.
 */
#include "cli_filter.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/errors.h"
#include "mappings/filter.h"

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2

static const char usage_text[] =
    "usage: switchyard filter test [--pattern JSON]... [--data-key KEY] [--metadata]\n"
    "  reads records from stdin, one per line (the payload; with --metadata the whole record\n"
    "  as a JSON object whose KEY member holds the payload), and prints `match` or\n"
    "  `no match` with the reasons for each\n";

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
    va_list ap;

    fputs("switchyard: filter test: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

struct opts {
    const char **patterns; /* borrowed from argv; owned array */
    size_t n_patterns;
    const char *data_key;
    int metadata;
};

/* ARGV[1..ARGC) into O; *HELP is set for --help. 0, or EXIT_USAGE (message printed). */
static int parse_args(int argc, char **argv, struct opts *o, int *help)
{
    *help = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *eq = strchr(a, '=');
        size_t nlen = eq != NULL ? (size_t)(eq - a) : strlen(a);
        const char *value = NULL;

        if (strcmp(a, "--") == 0) {
            if (i + 1 < argc) {
                say("unexpected argument '%s'", argv[i + 1]);
                return EXIT_USAGE;
            }
            break;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *help = 1;
            return 0;
        }
        if (strcmp(a, "--metadata") == 0) {
            o->metadata = 1;
            continue;
        }
        if ((nlen == 9 && strncmp(a, "--pattern", 9) == 0) ||
            (nlen == 10 && strncmp(a, "--data-key", 10) == 0)) {
            if (eq != NULL) {
                value = eq + 1;
            } else if (i + 1 < argc) {
                value = argv[++i];
            } else {
                say("option %.*s needs a value", (int)nlen, a);
                return EXIT_USAGE;
            }
            if (nlen == 9)
                o->patterns[o->n_patterns++] = value;
            else
                o->data_key = value;
            continue;
        }
        if (a[0] == '-')
            say("unknown option '%.*s' (see switchyard --help)", (int)nlen, a);
        else
            say("unexpected argument '%s'", a);
        return EXIT_USAGE;
    }
    return 0;
}

/*
 * A --metadata line: the payload from member KEY of the record REC (a JSON object). *DATA is
 * NULL (no payload), or new in *OWNED. 0, or -1 with WHY filled.
 */
static int record_payload(const char *rec, size_t len, const char *key, char **owned,
                          const char **data, size_t *dlen, char *why, size_t whysz)
{
    json_error_t je;
    json_t *j = json_loadb(rec, len, 0, &je);
    json_t *v;
    int r = 0;

    *owned = NULL;
    *data = NULL;
    *dlen = 0;
    if (j == NULL || !json_is_object(j)) {
        if (j == NULL)
            snprintf(why, whysz, "not JSON: %s (at offset %d)", je.text, je.position);
        else
            snprintf(why, whysz, "the record is not a JSON object");
        json_decref(j);
        return -1;
    }
    v = key != NULL ? json_object_get(j, key) : NULL;
    if (v == NULL || json_is_null(v))
        goto out;
    if (json_is_string(v)) {
        *dlen = json_string_length(v);
        *owned = malloc(*dlen + 1);
        if (*owned != NULL)
            memcpy(*owned, json_string_value(v), *dlen + 1);
    } else {
        *owned = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        *dlen = *owned != NULL ? strlen(*owned) : 0;
    }
    if (*owned == NULL) {
        snprintf(why, whysz, "out of memory");
        r = -1;
    }
    *data = *owned;
out:
    json_decref(j); /* new reference from json_loadb; V was borrowed from it */
    return r;
}

/* Print B's lines indented by two spaces. */
static void print_indented(const struct buf *b)
{
    const char *p = b->data, *end = b->data + b->len;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);

        printf("  %.*s\n", (int)n, p);
        p += n + (nl != NULL);
    }
}

int cli_filter_test(int argc, char **argv, const char *const *patterns_from_config,
                    size_t n_from_config, const char *data_key, int data_must_match)
{
    struct opts o = {0};
    const char *const *texts;
    struct filter_opts fo;
    struct filter *f = NULL;
    struct sy_error err;
    size_t *lens = NULL, n, lineno = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int help, rc = EXIT_FAIL, whole;

    o.data_key = data_key;
    o.patterns = calloc((size_t)(argc > 0 ? argc : 1), sizeof(*o.patterns));
    if (o.patterns == NULL) {
        say("out of memory");
        return EXIT_FAIL;
    }
    rc = parse_args(argc, argv, &o, &help);
    if (rc != 0)
        goto out;
    if (help) {
        fputs(usage_text, stdout);
        rc = EXIT_OK;
        goto out;
    }
    rc = EXIT_FAIL;
    if (o.n_patterns > 0) {
        texts = o.patterns;
        n = o.n_patterns;
    } else {
        texts = patterns_from_config;
        n = patterns_from_config != NULL ? n_from_config : 0;
    }
    if (n > FILTER_MAX_PATTERNS) {
        say("too many patterns (%zu; at most %d)", n, FILTER_MAX_PATTERNS);
        goto out;
    }
    lens = calloc(n > 0 ? n : 1, sizeof(*lens));
    if (lens == NULL) {
        say("out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        lens[i] = strlen(texts[i]);
    fo.data_key = o.data_key;
    fo.data_must_match = data_must_match;
    f = filter_compile(texts, lens, n, &fo, &err);
    if (f == NULL) {
        say("%s", err.msg);
        goto out;
    }

    /* Without a data key there is no payload, so every line is a whole record. */
    whole = o.metadata || o.data_key == NULL;
    rc = EXIT_OK;
    while ((got = getline(&line, &cap, stdin)) >= 0) {
        size_t len = (size_t)got;
        const char *data = NULL, *rec = NULL;
        size_t dlen = 0, rlen = 0;
        char *owned = NULL;
        struct buf why = {0};
        char msg[300];

        lineno++;
        if (len > 0 && line[len - 1] == '\n')
            len--;
        if (len > 0 && line[len - 1] == '\r')
            len--;
        if (whole) {
            if (strspn(line, " \t") == len && memchr(line, '\0', len) == NULL)
                continue; /* a blank line */
            if (record_payload(line, len, o.data_key, &owned, &data, &dlen, msg, sizeof(msg)) < 0) {
                printf("error: line %zu: %s\n", lineno, msg);
                rc = EXIT_FAIL;
                continue;
            }
            rec = line;
            rlen = len;
        } else {
            data = line;
            dlen = len;
        }
        if (filter_explain(f, rec, rlen, data, dlen, &why)) {
            puts("match");
        } else {
            puts("no match");
            print_indented(&why);
        }
        buf_free(&why);
        free(owned);
    }
    if (ferror(stdin)) {
        say("reading stdin failed");
        rc = EXIT_FAIL;
    }
    if (fflush(stdout) != 0)
        rc = EXIT_FAIL;
out:
    filter_destroy(f);
    free(line);
    free(lens);
    free(o.patterns);
    return rc;
}
