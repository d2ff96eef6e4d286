/*
 * config/cfg_load.c - switchyard.yaml -> `struct cfg` (see config.h).
 *
 * The file is read whole, parsed by libyaml into a node tree (yaml_parser_load), and walked
 * once. Each mapping is described by a small `struct cfg_field` table (key, kind, target
 * offset, bounds, default); one routine walks a mapping against its table, so that unknown
 * keys (with a "did you mean" suggestion), duplicate keys and keys that are not scalars are
 * handled the same way everywhere. Plain integers and strings are stored straight from the
 * table; keys with their own syntax (listen, runtime, destinations, ...) are parsed by the
 * section code, and rules that span fields (handler vs runtime, reserved vs provisioned
 * concurrency, function: destinations) run once every value is known.
 *
 * Errors are never fatal to the walk: each problem is recorded with the line and column of the
 * node it concerns, the walk goes on, and at the end the messages are sorted into file order.
 * The result is either a complete config and no errors, or NULL and every error found.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "core/errors.h"
#include "core/buf.h"

/* Paths in messages are cut at this length; they only serve to name the key. */
#define KEYPATH_MAX 512

/* Lambda's limit on the environment of one function: names plus values. */
#define ENV_MAX_BYTES 4096

/* ---------------------------------------------------------------------------------------------
 * Loader state and error collection
 * ------------------------------------------------------------------------------------------- */

/* One recorded problem: where it is (for sorting) and the finished message. */
struct ld_err {
    size_t line, col; /* 1-based */
    size_t seq;       /* recording order, to keep ties stable */
    char *msg;
};

/* Everything one cfg_load() call works with. */
struct ld {
    const char *file; /* the path as given, for messages; borrowed */
    yaml_document_t doc;
    struct cfg *cfg; /* being built */
    struct ld_err *errs;
    size_t n_errs, cap_errs;
    bool oom; /* an allocation failed somewhere: the result is unusable */
    /* Names under functions: that are valid, for `function:NAME` destinations. */
    const char **fn_names;
    size_t n_fn_names;
    int max_conc_valid; /* broker.max_concurrency parsed without error */
    const struct cfg_schema *schema; /* borrowed; may be NULL */
    bool no_function_dest; /* function:NAME is refused (mappings and their sources) */
    bool any_function; /* cfg_mapping_parse(): a mapping's function need not be declared */
    long reserved_sum;  /* running sum of reserved_concurrency, in file order */
};

static char *ld_strdup(struct ld *ld, const char *s)
{
    char *d = strdup(s);

    if (d == NULL)
        ld->oom = true;
    return d;
}

/*
 * Record "FILE:LINE:COL: PATH: REASON" for a problem at MARK (0-based, as libyaml keeps them).
 * PATH may be NULL for problems with the document itself.
 */
static void ld_err_at(struct ld *ld, yaml_mark_t mark, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void ld_err_at(struct ld *ld, yaml_mark_t mark, const char *path, const char *fmt, ...)
{
    struct buf b = {0};
    va_list ap;
    char reason[1024];
    struct ld_err *e;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (ld->n_errs == ld->cap_errs) {
        size_t cap = ld->cap_errs ? ld->cap_errs * 2 : 16;
        struct ld_err *n = realloc(ld->errs, cap * sizeof(*n));

        if (n == NULL)
            goto out_oom;
        ld->errs = n;
        ld->cap_errs = cap;
    }
    if (buf_printf(&b, "%s:%zu:%zu: %s: %s", ld->file, (size_t)mark.line + 1,
                   (size_t)mark.column + 1, path != NULL ? path : "(document)", reason) != 0)
        goto out_oom;
    e = &ld->errs[ld->n_errs];
    e->line = (size_t)mark.line + 1;
    e->col = (size_t)mark.column + 1;
    e->seq = ld->n_errs;
    e->msg = buf_take(&b, NULL);
    ld->n_errs++;
    return;

out_oom:
    buf_free(&b);
    ld->oom = true;
}

static void ld_err(struct ld *ld, const yaml_node_t *node, const char *path, const char *reason)
{
    ld_err_at(ld, node->start_mark, path, "%s", reason);
}

static int ld_err_cmp(const void *a, const void *b)
{
    const struct ld_err *x = a, *y = b;

    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->col != y->col)
        return x->col < y->col ? -1 : 1;
    return x->seq < y->seq ? -1 : (x->seq > y->seq);
}

/*
 * Sort the recorded errors into file order and move them into ERRS. The same node reached
 * twice (a YAML alias) would report the same problem twice: identical neighbours are dropped.
 */
static void ld_errs_flush(struct ld *ld, struct cfg_errors *errs)
{
    char **msgs;

    if (ld->n_errs > 1)
        qsort(ld->errs, ld->n_errs, sizeof(*ld->errs), ld_err_cmp);
    msgs = realloc(errs->msgs, (errs->n + ld->n_errs + 1) * sizeof(*msgs));
    if (msgs == NULL) {
        for (size_t i = 0; i < ld->n_errs; i++)
            free(ld->errs[i].msg);
        ld->n_errs = 0;
        return;
    }
    errs->msgs = msgs;
    for (size_t i = 0; i < ld->n_errs; i++) {
        if (errs->n > 0 && i > 0 && strcmp(errs->msgs[errs->n - 1], ld->errs[i].msg) == 0) {
            free(ld->errs[i].msg);
            continue;
        }
        errs->msgs[errs->n++] = ld->errs[i].msg;
    }
    ld->n_errs = 0;
}

/* Add a message with no position (out of memory); best effort. */
static void errs_add_plain(struct cfg_errors *errs, const char *file, const char *reason)
{
    struct buf b = {0};
    char **msgs = realloc(errs->msgs, (errs->n + 1) * sizeof(*msgs));

    if (msgs == NULL)
        return;
    errs->msgs = msgs;
    if (buf_printf(&b, "%s:1:1: (document): %s", file, reason) != 0) {
        buf_free(&b);
        return;
    }
    errs->msgs[errs->n++] = buf_take(&b, NULL);
}

/* ---------------------------------------------------------------------------------------------
 * Small helpers: key paths, node kinds, text checks, edit distance
 * ------------------------------------------------------------------------------------------- */

/* "PARENT.KEY" (or "KEY" at the top) into OUT[KEYPATH_MAX]; cut, ending in "...", if too long. */
static void keypath(char *out, const char *parent, const char *key)
{
    int n;

    if (parent == NULL || parent[0] == '\0')
        n = snprintf(out, KEYPATH_MAX, "%s", key);
    else
        n = snprintf(out, KEYPATH_MAX, "%s.%s", parent, key);
    if (n >= KEYPATH_MAX)
        memcpy(out + KEYPATH_MAX - 4, "...", 4);
}

static const char *node_kind(const yaml_node_t *node)
{
    switch (node->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    default:
        return "a scalar";
    }
}

static const char *scalar_text(const yaml_node_t *node)
{
    return (const char *)node->data.scalar.value;
}

/* A plain `~`, `null` or nothing: YAML's null, which we read as "key not given". */
static bool node_is_null(const yaml_node_t *node)
{
    const char *s;

    if (node == NULL)
        return true;
    if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    s = scalar_text(node);
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

static bool is_ident_start(int c)
{
    return isalpha((unsigned char)c) || c == '_';
}

static bool is_ident_char(int c)
{
    return isalnum((unsigned char)c) || c == '_';
}

/* [A-Za-z_][A-Za-z0-9_]* */
static bool is_ident(const char *s)
{
    if (!is_ident_start(s[0]))
        return false;
    for (s++; *s != '\0'; s++)
        if (!is_ident_char(*s))
            return false;
    return true;
}

/* Lambda's function-name rule: 1..64 of [A-Za-z0-9_-]. */
static bool is_function_name(const char *s)
{
    size_t n = strlen(s);

    if (n < 1 || n > 64)
        return false;
    for (; *s != '\0'; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
            return false;
    return true;
}

/* Case-insensitive Levenshtein distance; keys are short, longer ones count as "far". */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[65];

    if (la > 64 || lb > 64)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];

        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            size_t best = diag + cost;

            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* ---------------------------------------------------------------------------------------------
 * Interpolation: ${VAR}, ${VAR:-default}, $$
 * ------------------------------------------------------------------------------------------- */

/*
 * Expand IN (the text of NODE at PATH) into *OUT (returns new). `${NAME}` is the value of the
 * environment variable NAME, which must be set (it may be empty); `${NAME:-default}` is its
 * value when set and non-empty, else the literal default (no nesting); `$$` is one `$`; any other
 * `$` is itself. Returns 0, or -1 after recording the problem.
 */
static int interpolate(struct ld *ld, const yaml_node_t *node, const char *path, const char *in,
                       char **out)
{
    struct buf b = {0};
    const char *p = in;

    *out = NULL;
    while (*p != '\0') {
        const char *dollar = strchr(p, '$');
        const char *name, *close, *after, *val;
        size_t nlen;

        if (dollar == NULL) {
            if (buf_puts(&b, p) != 0)
                goto out_oom;
            break;
        }
        if (buf_append(&b, p, (size_t)(dollar - p)) != 0)
            goto out_oom;
        if (dollar[1] != '{') {
            /* `$$` is an escaped `$`; a `$` before anything else stays as it is. */
            if (buf_append(&b, "$", 1) != 0)
                goto out_oom;
            p = dollar + (dollar[1] == '$' ? 2 : 1);
            continue;
        }
        name = dollar + 2;
        close = strchr(name, '}');
        if (close == NULL) {
            ld_err_at(ld, node->start_mark, path, "unterminated '${' in '%s' (missing '}')", in);
            goto out_fail;
        }
        for (nlen = 0; is_ident_char(name[nlen]); nlen++)
            ;
        after = name + nlen;
        if (nlen == 0 || !is_ident_start(name[0]) ||
            (after != close && !(after[0] == ':' && after[1] == '-'))) {
            ld_err_at(ld, node->start_mark, path,
                      "malformed '%.*s' in '%s': use ${NAME} or ${NAME:-default}",
                      (int)(close - dollar + 1), dollar, in);
            goto out_fail;
        }
        {
            char vname[256];

            snprintf(vname, sizeof(vname), "%.*s", (int)nlen, name);
            val = getenv(vname);
            if (after == close) {
                if (val == NULL) {
                    ld_err_at(ld, node->start_mark, path,
                              "environment variable '%s' is not set (use ${%s:-default} to "
                              "give a default)",
                              vname, vname);
                    goto out_fail;
                }
            } else if (val == NULL || val[0] == '\0') {
                const char *def = after + 2;

                if (buf_append(&b, def, (size_t)(close - def)) != 0)
                    goto out_oom;
                val = NULL;
            }
        }
        if (val != NULL && buf_puts(&b, val) != 0)
            goto out_oom;
        p = close + 1;
    }
    if (b.data == NULL && buf_append(&b, "", 0) != 0)
        goto out_oom;
    *out = buf_take(&b, NULL);
    return 0;

out_oom:
    ld->oom = true;
out_fail:
    buf_free(&b);
    return -1;
}

/*
 * The interpolated text of a scalar value. Returns 0 and *OUT (new), 1 when NODE is null
 * (*OUT NULL: treat as not given), or -1 after recording the problem (not a scalar, bad ${}).
 * WHAT names the expected type in the message ("a string").
 */
static int scalar_as(struct ld *ld, const yaml_node_t *node, const char *path, const char *what,
                     char **out)
{
    *out = NULL;
    if (node_is_null(node))
        return 1;
    if (node->type != YAML_SCALAR_NODE) {
        ld_err_at(ld, node->start_mark, path, "must be %s (got %s)", what, node_kind(node));
        return -1;
    }
    return interpolate(ld, node, path, scalar_text(node), out);
}

static int scalar_value(struct ld *ld, const yaml_node_t *node, const char *path, char **out)
{
    return scalar_as(ld, node, path, "a string", out);
}

/* ---------------------------------------------------------------------------------------------
 * Field tables and the mapping walker
 * ------------------------------------------------------------------------------------------- */

/*
 * The field tables (struct cfg_field, config/cfg_field.h) serve both the sections of this file
 * and the ones declared elsewhere (source adapters). They are also the checklist of
 * docs/config-reference.md; keep the two in step. FLD_INT/FLD_STR are the short forms for the
 * tables of this file; CFG_CUSTOM keys are parsed by the section code here.
 */
#define FLD_INT(k, type, member, d, lo, hi) CFG_INT(k, type, member, d, lo, hi, 0, NULL)
#define FLD_STR(k, type, member, d) CFG_STR(k, type, member, d, 0, NULL)
#define CFG_CUSTOM(k)                                                                              \
    {                                                                                              \
        .key = (k), .kind = CFG_FK_CUSTOM                                                          \
    }

/* The suggestion part of "unknown key" for KEY among FIELDS. */
static void unknown_key(struct ld *ld, const yaml_node_t *knode, const char *path,
                        const struct cfg_field *fields, size_t n)
{
    const char *key = scalar_text(knode);
    const struct cfg_field *best = NULL, *prefix = NULL;
    size_t best_d = SIZE_MAX, n_prefix = 0, klen = strlen(key);
    struct buf b = {0};

    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(key, fields[i].key);

        if (d < best_d) {
            best_d = d;
            best = &fields[i];
        }
        if (klen >= 3 && strncasecmp(fields[i].key, key, klen) == 0) {
            prefix = &fields[i];
            n_prefix++;
        }
    }
    /* Close in spelling, or the start of exactly one key (`memory` for `memory_mb`). */
    if (best != NULL && (best_d <= 2 || (klen >= 6 && best_d <= 3))) {
        ld_err_at(ld, knode->start_mark, path, "unknown key; did you mean '%s'?", best->key);
        return;
    }
    if (n_prefix == 1) {
        ld_err_at(ld, knode->start_mark, path, "unknown key; did you mean '%s'?", prefix->key);
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (buf_printf(&b, "%s%s", i ? ", " : "", fields[i].key) != 0)
            ld->oom = true;
    ld_err_at(ld, knode->start_mark, path, "unknown key; valid keys are: %s",
              b.data != NULL ? b.data : "");
    buf_free(&b);
}

/*
 * Walk the mapping NODE (at PATH; PKEY is the node of its own key, or NULL at the top) against
 * FIELDS: report unknown, duplicate and non-scalar keys, and leave in VALS[i] (and KEYS[i]) the
 * value (and key) node of FIELDS[i], NULL when absent. A null NODE is an empty mapping.
 * Returns 0, or -1 if NODE is not a mapping (reported).
 */
static int map_collect(struct ld *ld, yaml_node_t *node, const char *path,
                       const struct cfg_field *fields, size_t n, yaml_node_t **vals,
                       yaml_node_t **keys)
{
    for (size_t i = 0; i < n; i++) {
        vals[i] = NULL;
        if (keys != NULL)
            keys[i] = NULL;
    }
    if (node_is_null(node))
        return 0;
    if (node->type != YAML_MAPPING_NODE) {
        ld_err_at(ld, node->start_mark, path, "must be a mapping (got %s)", node_kind(node));
        return -1;
    }
    for (yaml_node_pair_t *pr = node->data.mapping.pairs.start; pr < node->data.mapping.pairs.top;
         pr++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, pr->key);
        yaml_node_t *v = yaml_document_get_node(&ld->doc, pr->value);
        char kp[KEYPATH_MAX];
        size_t i;

        if (k->type != YAML_SCALAR_NODE) {
            ld_err_at(ld, k->start_mark, path, "keys must be scalars (got %s)", node_kind(k));
            continue;
        }
        keypath(kp, path, scalar_text(k));
        for (i = 0; i < n; i++)
            if (strcmp(fields[i].key, scalar_text(k)) == 0)
                break;
        if (i == n) {
            unknown_key(ld, k, kp, fields, n);
            continue;
        }
        if (vals[i] != NULL || (keys != NULL && keys[i] != NULL)) {
            yaml_node_t *first = NULL;

            /* Find the first occurrence again for its position. */
            for (yaml_node_pair_t *q = node->data.mapping.pairs.start; q < pr; q++) {
                yaml_node_t *qk = yaml_document_get_node(&ld->doc, q->key);

                if (qk->type == YAML_SCALAR_NODE && strcmp(scalar_text(qk), fields[i].key) == 0) {
                    first = qk;
                    break;
                }
            }
            ld_err_at(ld, k->start_mark, kp, "duplicate key (first given at line %zu)",
                      first != NULL ? (size_t)first->start_mark.line + 1 : (size_t)0);
            continue;
        }
        vals[i] = v;
        if (keys != NULL)
            keys[i] = k;
    }
    return 0;
}

/*
 * Parse the integer text S of NODE at PATH into *OUT, in MIN..MAX. Integers are plain decimal
 * (an optional sign, then digits): "12x", "1.5", "true" and "0x10" are refused. RANGE, when not
 * NULL, replaces "MIN..MAX" in the message (to say where a bound comes from). Returns 0 or -1
 * (reported).
 */
static int parse_int_text(struct ld *ld, const yaml_node_t *node, const char *path, const char *s,
                          long min, long max, const char *range, int *out)
{
    const char *d = s;
    char *end;
    long long v;

    if (*d == '+' || *d == '-')
        d++;
    if (*d == '\0' || strspn(d, "0123456789") != strlen(d)) {
        ld_err_at(ld, node->start_mark, path, "must be an integer (got '%s')", s);
        return -1;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno == ERANGE || v < min || v > max) {
        if (range != NULL)
            ld_err_at(ld, node->start_mark, path, "must be %s (got %s)", range, s);
        else
            ld_err_at(ld, node->start_mark, path, "must be %ld..%ld (got %s)", min, max, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* An integer value: NODE must be a scalar. Null keeps the default. Returns 0 or -1. */
static int node_int(struct ld *ld, const yaml_node_t *node, const char *path, long min, long max,
                    const char *range, int *out)
{
    char *s;
    int rc = scalar_as(ld, node, path, "an integer", &s);

    if (rc != 0)
        return rc > 0 ? 0 : -1;
    rc = parse_int_text(ld, node, path, s, min, max, range, out);
    free(s);
    return rc;
}

/* Apply defaults of FIELDS to OBJ (strings are duplicated). */
static void fields_default(struct ld *ld, const struct cfg_field *fields, size_t n, void *obj)
{
    for (size_t i = 0; i < n; i++) {
        const struct cfg_field *f = &fields[i];

        if (f->kind == CFG_FK_INT || f->kind == CFG_FK_BOOL || f->kind == CFG_FK_ENUM)
            *(int *)((char *)obj + f->off) = f->def;
        else if (f->kind == CFG_FK_STR && f->def_str != NULL)
            *(char **)((char *)obj + f->off) = ld_strdup(ld, f->def_str);
    }
}

static char *destination(struct ld *ld, const yaml_node_t *node, const char *path, const char *u);

/* A boolean scalar: true/false, yes/no, on/off (any case). Null keeps the default. 0 or -1. */
static int node_bool(struct ld *ld, const yaml_node_t *node, const char *path, int *out)
{
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    char *s;
    int rc = scalar_as(ld, node, path, "true or false", &s);

    if (rc != 0)
        return rc > 0 ? 0 : -1;
    rc = -1;
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            rc = 0;
        } else if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            rc = 0;
        }
    }
    if (rc != 0)
        ld_err_at(ld, node->start_mark, path, "must be true or false (got '%s')", s);
    free(s);
    return rc;
}

/* One string or a list of strings into LIST (replacing what it held). 0 or -1 (reported). */
static int node_strlist(struct ld *ld, yaml_node_t *node, const char *path, struct cfg_strlist *list)
{
    size_t n;
    char kp[KEYPATH_MAX + 24];

    for (size_t i = 0; i < list->n; i++)
        free(list->v[i]);
    sy_free(&list->v);
    list->n = 0;
    if (node_is_null(node))
        return 0;
    if (node->type == YAML_MAPPING_NODE) {
        ld_err_at(ld, node->start_mark, path, "must be a string or a list of strings (got %s)",
                  node_kind(node));
        return -1;
    }
    n = node->type == YAML_SEQUENCE_NODE
            ? (size_t)(node->data.sequence.items.top - node->data.sequence.items.start)
            : 1;
    if (n == 0)
        return 0;
    list->v = calloc(n, sizeof(*list->v));
    if (list->v == NULL) {
        ld->oom = true;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = node->type == YAML_SEQUENCE_NODE
                                ? yaml_document_get_node(&ld->doc,
                                                         node->data.sequence.items.start[i])
                                : node;
        char *v;

        snprintf(kp, sizeof(kp), "%s[%zu]", path, i);
        if (node_is_null(item) || item->type != YAML_SCALAR_NODE) {
            ld_err_at(ld, item->start_mark, kp, "must be a string (got %s)",
                      node_is_null(item) ? "null" : node_kind(item));
            return -1;
        }
        if (scalar_value(ld, item, kp, &v) != 0)
            return -1;
        list->v[list->n++] = v;
    }
    return 0;
}

/* A mapping of names to scalars (numbers and booleans as their text), `${VAR}` interpolated. */
static int node_strmap(struct ld *ld, yaml_node_t *node, const char *path, struct cfg_strmap *map)
{
    size_t cap;
    char kp[KEYPATH_MAX];

    for (size_t i = 0; i < map->n; i++) {
        free(map->keys[i]);
        free(map->vals[i]);
    }
    sy_free(&map->keys);
    sy_free(&map->vals);
    map->n = 0;
    if (node_is_null(node))
        return 0;
    if (node->type != YAML_MAPPING_NODE) {
        ld_err_at(ld, node->start_mark, path, "must be a mapping of name: value (got %s)",
                  node_kind(node));
        return -1;
    }
    cap = (size_t)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
    if (cap == 0)
        return 0;
    map->keys = calloc(cap, sizeof(*map->keys));
    map->vals = calloc(cap, sizeof(*map->vals));
    if (map->keys == NULL || map->vals == NULL) {
        ld->oom = true;
        return -1;
    }
    for (yaml_node_pair_t *pr = node->data.mapping.pairs.start; pr < node->data.mapping.pairs.top;
         pr++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, pr->key);
        yaml_node_t *v = yaml_document_get_node(&ld->doc, pr->value);
        char *name, *value = NULL;

        if (k->type != YAML_SCALAR_NODE) {
            ld_err_at(ld, k->start_mark, path, "keys must be scalars (got %s)", node_kind(k));
            return -1;
        }
        keypath(kp, path, scalar_text(k));
        for (size_t i = 0; i < map->n; i++)
            if (strcmp(map->keys[i], scalar_text(k)) == 0) {
                ld_err(ld, k, kp, "duplicate key");
                return -1;
            }
        if (node_is_null(v) || v->type != YAML_SCALAR_NODE) {
            ld_err_at(ld, v->start_mark, kp, "must be a string, number or boolean (got %s)",
                      node_is_null(v) ? "null" : node_kind(v));
            return -1;
        }
        if (scalar_value(ld, v, kp, &value) != 0)
            return -1;
        name = ld_strdup(ld, scalar_text(k));
        if (name == NULL) {
            free(value);
            return -1;
        }
        map->keys[map->n] = name;
        map->vals[map->n++] = value;
    }
    return 0;
}

static int node_enum(struct ld *ld, const yaml_node_t *node, const char *path,
                     const char *const *names, size_t n, const char *value);

/*
 * Store the values of FIELDS given in VALS (from map_collect) in OBJ; CFG_FK_CUSTOM keys are
 * left to the caller. Returns a mask with bit i set when FIELDS[i] was given but refused (and
 * reported).
 */
static unsigned fields_apply(struct ld *ld, const char *path, const struct cfg_field *fields,
                             size_t n, yaml_node_t **vals, void *obj)
{
    unsigned failed = 0;

    for (size_t i = 0; i < n; i++) {
        const struct cfg_field *f = &fields[i];
        void *at = (char *)obj + f->off;
        char kp[KEYPATH_MAX];
        char *s;
        int rc = 0;

        if (vals[i] == NULL)
            continue;
        keypath(kp, path, f->key);
        switch (f->kind) {
        case CFG_FK_INT:
            rc = node_int(ld, vals[i], kp, f->min, f->max, NULL, (int *)at);
            break;
        case CFG_FK_BOOL:
            rc = node_bool(ld, vals[i], kp, (int *)at);
            break;
        case CFG_FK_STR:
        case CFG_FK_ENUM:
        case CFG_FK_DEST:
            rc = scalar_value(ld, vals[i], kp, &s);
            if (rc > 0) {
                rc = 0;
                break;
            }
            if (rc < 0)
                break;
            if (f->kind == CFG_FK_STR) {
                free(*(char **)at);
                *(char **)at = s;
                break;
            }
            if (f->kind == CFG_FK_ENUM) {
                size_t nn = 0;
                int v;

                while (f->names[nn] != NULL)
                    nn++;
                v = node_enum(ld, vals[i], kp, f->names, nn, s);
                if (v >= 0)
                    *(int *)at = v;
                rc = v >= 0 ? 0 : -1;
            } else {
                char *d = destination(ld, vals[i], kp, s);

                free(*(char **)at);
                *(char **)at = d;
                rc = d != NULL ? 0 : -1;
            }
            free(s);
            break;
        case CFG_FK_STRLIST:
            rc = node_strlist(ld, vals[i], kp, (struct cfg_strlist *)at);
            break;
        case CFG_FK_STRMAP:
            rc = node_strmap(ld, vals[i], kp, (struct cfg_strmap *)at);
            break;
        case CFG_FK_CUSTOM:
            break;
        }
        if (rc < 0)
            failed |= 1u << i;
    }
    return failed;
}

/* Index of VALUE in NAMES[N], or -1; on -1 the problem is reported. */
static int node_enum(struct ld *ld, const yaml_node_t *node, const char *path,
                     const char *const *names, size_t n, const char *value)
{
    struct buf b = {0};

    for (size_t i = 0; i < n; i++)
        if (strcmp(value, names[i]) == 0)
            return (int)i;
    for (size_t i = 0; i < n; i++)
        if (buf_printf(&b, "%s%s", i == 0 ? "" : (i + 1 == n ? " or " : ", "), names[i]) != 0)
            ld->oom = true;
    ld_err_at(ld, node->start_mark, path, "must be one of %s (got '%s')",
              b.data != NULL ? b.data : "", value);
    buf_free(&b);
    return -1;
}

/* ---------------------------------------------------------------------------------------------
 * Paths, hosts, ports and URIs
 * ------------------------------------------------------------------------------------------- */

/*
 * P made absolute against BASE (absolute) and cleaned lexically: no `.` or empty segments,
 * `..` removes the segment before it (as Go's filepath.Clean). Returns new or NULL (no memory).
 */
static char *path_resolve(const char *base, const char *p)
{
    size_t n = strlen(base) + strlen(p) + 3;
    char *joined = malloc(n), *out = malloc(n);
    size_t olen = 0;
    char *seg, *save = NULL;

    if (joined == NULL || out == NULL) {
        free(joined);
        free(out);
        return NULL;
    }
    if (p[0] == '/')
        snprintf(joined, n, "%s", p);
    else
        snprintf(joined, n, "%s/%s", base, p);
    for (seg = strtok_r(joined, "/", &save); seg != NULL; seg = strtok_r(NULL, "/", &save)) {
        if (strcmp(seg, ".") == 0)
            continue;
        if (strcmp(seg, "..") == 0) {
            while (olen > 0 && out[olen - 1] != '/')
                olen--;
            if (olen > 0)
                olen--; /* the '/' before the removed segment */
            continue;
        }
        out[olen++] = '/';
        memcpy(out + olen, seg, strlen(seg));
        olen += strlen(seg);
    }
    if (olen == 0)
        out[olen++] = '/';
    out[olen] = '\0';
    free(joined);
    return out;
}

/* A host name or IPv4 literal: letters, digits, `.`, `-`, `_`. */
static bool is_host_name(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '-' && s[i] != '_')
            return false;
    return true;
}

/*
 * Split S[0..N) as HOST:PORT (HOST may be `[IPv6]`), PORT in PORT_MIN..65535. With PORT_OPTIONAL
 * a missing `:PORT` gives *PORT = -1. On success returns NULL and, if HOST_OUT is not NULL, a
 * new *HOST_OUT without brackets; else returns the reason (static text).
 */
static const char *parse_hostport(const char *s, size_t n, int port_min, bool port_optional,
                                  char **host_out, int *port_out)
{
    const char *host, *colon = NULL;
    size_t hlen;
    long port = -1;

    if (host_out != NULL)
        *host_out = NULL;
    if (n > 0 && s[0] == '[') {
        const char *rb = memchr(s, ']', n);
        char v6[INET6_ADDRSTRLEN + 1];
        struct in6_addr a6;

        if (rb == NULL)
            return "missing ']' after an IPv6 address";
        host = s + 1;
        hlen = (size_t)(rb - host);
        if (hlen == 0 || hlen >= sizeof(v6))
            return "bad IPv6 address";
        memcpy(v6, host, hlen);
        v6[hlen] = '\0';
        if (inet_pton(AF_INET6, v6, &a6) != 1)
            return "bad IPv6 address";
        if (rb + 1 < s + n && rb[1] != ':')
            return "expected ':PORT' after ']'";
        if (rb + 1 < s + n)
            colon = rb + 1;
    } else {
        const char *first = memchr(s, ':', n);

        colon = first;
        if (first != NULL && memchr(first + 1, ':', (size_t)(s + n - first - 1)) != NULL)
            return "an IPv6 address must be in brackets, as in [::1]:9001";
        host = s;
        hlen = colon != NULL ? (size_t)(colon - s) : n;
        if (hlen == 0)
            return "the host is empty";
        if (!is_host_name(host, hlen))
            return "bad host name";
    }
    if (colon == NULL) {
        if (!port_optional)
            return "expected HOST:PORT";
    } else {
        const char *pd = colon + 1;
        size_t plen = (size_t)(s + n - pd);

        if (plen == 0 || plen > 5 || strspn(pd, "0123456789") < plen)
            return "the port must be a number";
        port = 0;
        for (size_t i = 0; i < plen; i++)
            port = port * 10 + (pd[i] - '0');
        if (port < port_min || port > 65535)
            return port_min == 0 ? "the port must be 0..65535" : "the port must be 1..65535";
    }
    if (host_out != NULL) {
        *host_out = strndup(host, hlen);
        if (*host_out == NULL)
            return "out of memory";
    }
    if (port_out != NULL)
        *port_out = (int)port;
    return NULL;
}

/* 127.0.0.0/8, ::1 (also as ::ffff:127.x.x.x) or `localhost`. */
static bool host_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (strcasecmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&a6))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
    }
    return false;
}

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Is NAME among the valid names under functions:? */
static bool fn_declared(const struct ld *ld, const char *name)
{
    for (size_t i = 0; i < ld->n_fn_names; i++)
        if (strcmp(ld->fn_names[i], name) == 0)
            return true;
    return false;
}

int cfg_destination_check(const char *u, const char *base_dir, char **out, const char **why_out)
{
    const char *why = NULL;

    *out = NULL;
    *why_out = NULL;
    if (has_prefix(u, "function:")) {
        const char *name = u + strlen("function:");
        size_t nlen = strcspn(name, ":");
        char fname[80];

        snprintf(fname, sizeof(fname), "%.*s", (int)(nlen < 70 ? nlen : 70), name);
        if (nlen > 64 || !is_function_name(fname))
            why = "the function name must be 1..64 characters of A-Z, a-z, 0-9, '_' and '-'";
    } else if (has_prefix(u, "file:")) {
        const char *dir = u + strlen("file:");
        char *abs;
        size_t n;

        if (dir[0] == '\0') {
            why = "expected file:DIR";
        } else {
            abs = path_resolve(base_dir, dir);
            if (abs == NULL)
                return SY_ENOMEM;
            n = strlen(abs) + sizeof("file:");
            *out = malloc(n);
            if (*out != NULL)
                snprintf(*out, n, "file:%s", abs);
            free(abs);
            return *out != NULL ? 0 : SY_ENOMEM;
        }
    } else if (has_prefix(u, "redis://")) {
        const char *a = u + strlen("redis://"), *slash = strchr(a, '/');

        why = "expected redis://HOST:PORT/list/KEY or redis://HOST:PORT/stream/KEY";
        if (slash != NULL) {
            const char *hp = parse_hostport(a, (size_t)(slash - a), 1, false, NULL, NULL);

            if (hp != NULL)
                why = hp;
            else if ((has_prefix(slash, "/list/") && slash[6] != '\0') ||
                     (has_prefix(slash, "/stream/") && slash[8] != '\0'))
                why = NULL;
        }
    } else if (has_prefix(u, "kafka://")) {
        const char *a = u + strlen("kafka://"), *slash = strchr(a, '/');

        if (slash == NULL || slash == a) {
            why = "expected kafka://HOST:PORT[,HOST:PORT...]/TOPIC";
        } else {
            const char *topic = slash + 1;

            for (const char *h = a;;) {
                const char *comma = memchr(h, ',', (size_t)(slash - h));
                const char *end = comma != NULL ? comma : slash;

                why = parse_hostport(h, (size_t)(end - h), 1, false, NULL, NULL);
                if (why != NULL || comma == NULL)
                    break;
                h = comma + 1;
            }
            if (why == NULL && (topic[0] == '\0' || strlen(topic) > 249 ||
                                strspn(topic, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                              "0123456789._-") != strlen(topic)))
                why = "the topic must be 1..249 characters of A-Z, a-z, 0-9, '.', '_' and '-'";
        }
    } else if (has_prefix(u, "mqtt://")) {
        const char *a = u + strlen("mqtt://"), *slash = strchr(a, '/');

        if (slash == NULL) {
            why = "expected mqtt://HOST:PORT/TOPIC";
        } else {
            why = parse_hostport(a, (size_t)(slash - a), 1, false, NULL, NULL);
            if (why == NULL && slash[1] == '\0')
                why = "the topic is empty";
            else if (why == NULL && strpbrk(slash + 1, "+#") != NULL)
                why = "a topic to publish to cannot hold the wildcards '+' or '#'";
        }
    } else if (has_prefix(u, "http://") || has_prefix(u, "https://")) {
        const char *a = strstr(u, "//") + 2;
        size_t alen = strcspn(a, "/?#");

        why = parse_hostport(a, alen, 1, true, NULL, NULL);
    } else {
        why = "expected function:NAME, file:DIR, redis://HOST:PORT/list/KEY, "
              "redis://HOST:PORT/stream/KEY, kafka://HOST:PORT/TOPIC, mqtt://HOST:PORT/TOPIC "
              "or an http(s):// URL";
    }
    if (why != NULL) {
        *why_out = why;
        return SY_EINVAL;
    }
    *out = strdup(u);
    return *out != NULL ? 0 : SY_ENOMEM;
}

/*
 * Check the destination URI U (of NODE at PATH). Returns the value to keep (new; `file:` paths
 * are made absolute) or NULL after recording the problem.
 */
static char *destination(struct ld *ld, const yaml_node_t *node, const char *path, const char *u)
{
    const char *why = NULL;
    char *out = NULL;
    int rc;

    if (has_prefix(u, "function:")) {
        const char *name = u + strlen("function:");

        if (ld->no_function_dest) {
            why = "function: destinations are for asynchronous invocation only; a mapping writes "
                  "to file:, redis://, kafka://, mqtt:// or http(s):// destinations";
        } else if (is_function_name(name) && !fn_declared(ld, name)) {
            ld_err_at(ld, node->start_mark, path,
                      "invalid destination '%s': no function '%s' is declared under functions", u,
                      name);
            return NULL;
        } else if (!is_function_name(name)) {
            why = "the function name must be 1..64 characters of A-Z, a-z, 0-9, '_' and '-'";
        }
        if (why != NULL) {
            ld_err_at(ld, node->start_mark, path, "invalid destination '%s': %s", u, why);
            return NULL;
        }
    }
    rc = cfg_destination_check(u, ld->cfg->base_dir, &out, &why);
    if (rc == SY_ENOMEM) {
        ld->oom = true;
        return NULL;
    }
    if (rc != 0) {
        ld_err_at(ld, node->start_mark, path, "invalid destination '%s': %s", u, why);
        return NULL;
    }
    return out;
}

/* ---------------------------------------------------------------------------------------------
 * broker:
 * ------------------------------------------------------------------------------------------- */

enum {
    BR_LISTEN,
    BR_DATA_DIR,
    BR_MAX_CONCURRENCY,
    BR_AUTH_TOKEN,
    BR_ASYNC_QUEUE,
    BR_DURABILITY,
    BR_LOG_LEVEL,
    BR_SHUTDOWN_GRACE_MS,
    BR_REGION,
    BR_ACCOUNT_ID,
    BR_DEAD_LETTERS,
    BR_ASYNC_MAX_HELD,
    BR_STRICT_RUNTIMES,
    BR__N
};

static const struct cfg_field broker_fields[BR__N] = {
    [BR_LISTEN] = CFG_CUSTOM("listen"),
    [BR_DATA_DIR] = CFG_CUSTOM("data_dir"),
    [BR_MAX_CONCURRENCY] =
        FLD_INT("max_concurrency", struct cfg_broker, max_concurrency, 100, 1, 100000),
    [BR_AUTH_TOKEN] = FLD_STR("auth_token", struct cfg_broker, auth_token, NULL),
    [BR_ASYNC_QUEUE] = CFG_CUSTOM("async_queue"),
    [BR_DURABILITY] = CFG_CUSTOM("durability"),
    [BR_LOG_LEVEL] = CFG_CUSTOM("log_level"),
    [BR_SHUTDOWN_GRACE_MS] =
        FLD_INT("shutdown_grace_ms", struct cfg_broker, shutdown_grace_ms, 2000, 0, 60000),
    [BR_REGION] = FLD_STR("region", struct cfg_broker, region, "us-east-1"),
    [BR_ACCOUNT_ID] = FLD_STR("account_id", struct cfg_broker, account_id, "000000000000"),
    [BR_DEAD_LETTERS] = CFG_CUSTOM("dead_letters"),
    [BR_ASYNC_MAX_HELD] =
        FLD_INT("async_max_held", struct cfg_broker, async_max_held, 10000, 100, 10000000),
    [BR_STRICT_RUNTIMES] =
        CFG_BOOL("strict_runtimes", struct cfg_broker, strict_runtimes, 0, 0, NULL),
};

static const char *const dead_letters_names[] = {"keep", "off"};

static const char *const durability_names[] = {"crash", "fsync"};
static const char *const log_level_names[] = {"error", "warn", "info", "debug"};

/* Replace *SLOT with V (takes V). */
static void set_str(char **slot, char *v)
{
    free(*slot);
    *slot = v;
}

static void broker_listen(struct ld *ld, struct cfg_broker *br, yaml_node_t *node, const char *path)
{
    char *s, *host = NULL;
    const char *why;
    int port = 0;

    if (scalar_value(ld, node, path, &s) != 0)
        return;
    why = parse_hostport(s, strlen(s), 0, false, &host, &port);
    if (why != NULL) {
        ld_err_at(ld, node->start_mark, path, "must be HOST:PORT (got '%s'): %s", s, why);
        free(s);
        return;
    }
    set_str(&br->listen, s);
    set_str(&br->listen_host, host);
    br->listen_port = port;
}

static void broker_async_queue(struct ld *ld, struct cfg_broker *br, yaml_node_t *node,
                               const char *path)
{
    const char *a, *slash, *why = NULL;
    char *s;

    if (scalar_value(ld, node, path, &s) != 0)
        return;
    if (strcmp(s, "sqlite") == 0) {
        set_str(&br->async_queue, s);
        return;
    }
    if (!has_prefix(s, "redis://")) {
        ld_err_at(ld, node->start_mark, path, "must be sqlite or redis://HOST:PORT/KEY (got '%s')",
                  s);
        free(s);
        return;
    }
    a = s + strlen("redis://");
    slash = strchr(a, '/');
    if (slash == NULL || slash[1] == '\0')
        why = "the KEY after HOST:PORT/ is missing";
    else
        why = parse_hostport(a, (size_t)(slash - a), 1, false, NULL, NULL);
    if (why != NULL) {
        ld_err_at(ld, node->start_mark, path,
                  "must be sqlite or redis://HOST:PORT/KEY (got '%s'): %s", s, why);
        free(s);
        return;
    }
    set_str(&br->async_queue, s);
}

/*
 * broker: (NODE may be NULL). Defaults first, then the given values; the listen/auth_token rule
 * is checked last, when both are known.
 */
static void parse_broker(struct ld *ld, yaml_node_t *knode, yaml_node_t *node)
{
    struct cfg_broker *br = &ld->cfg->broker;
    yaml_node_t *vals[BR__N];
    char kp[KEYPATH_MAX];
    char *s;
    int idx;

    fields_default(ld, broker_fields, BR__N, br);
    br->listen = ld_strdup(ld, "127.0.0.1:9001");
    br->listen_host = ld_strdup(ld, "127.0.0.1");
    br->listen_port = 9001;
    br->data_dir = path_resolve(ld->cfg->base_dir, ".switchyard");
    if (br->data_dir == NULL)
        ld->oom = true;
    br->async_queue = ld_strdup(ld, "sqlite");
    br->durability = CFG_DURABILITY_CRASH;
    br->keep_dead_letters = 1;
    br->log_level = ld_strdup(ld, "info");
    ld->max_conc_valid = 1;

    if (node == NULL || map_collect(ld, node, "broker", broker_fields, BR__N, vals, NULL) != 0)
        return;
    if (fields_apply(ld, "broker", broker_fields, BR__N, vals, br) & (1u << BR_MAX_CONCURRENCY))
        ld->max_conc_valid = 0;

    if (vals[BR_LISTEN] != NULL) {
        keypath(kp, "broker", "listen");
        broker_listen(ld, br, vals[BR_LISTEN], kp);
    }
    if (vals[BR_DATA_DIR] != NULL) {
        keypath(kp, "broker", "data_dir");
        if (scalar_value(ld, vals[BR_DATA_DIR], kp, &s) == 0) {
            if (s[0] == '\0') {
                ld_err(ld, vals[BR_DATA_DIR], kp, "must not be empty");
            } else {
                char *abs = path_resolve(ld->cfg->base_dir, s);

                if (abs == NULL)
                    ld->oom = true;
                else
                    set_str(&br->data_dir, abs);
            }
            free(s);
        }
    }
    if (vals[BR_ASYNC_QUEUE] != NULL) {
        keypath(kp, "broker", "async_queue");
        broker_async_queue(ld, br, vals[BR_ASYNC_QUEUE], kp);
    }
    if (vals[BR_DURABILITY] != NULL) {
        keypath(kp, "broker", "durability");
        if (scalar_value(ld, vals[BR_DURABILITY], kp, &s) == 0) {
            idx = node_enum(ld, vals[BR_DURABILITY], kp, durability_names, 2, s);
            if (idx >= 0)
                br->durability = idx == 0 ? CFG_DURABILITY_CRASH : CFG_DURABILITY_FSYNC;
            free(s);
        }
    }
    if (vals[BR_DEAD_LETTERS] != NULL) {
        keypath(kp, "broker", "dead_letters");
        if (scalar_value(ld, vals[BR_DEAD_LETTERS], kp, &s) == 0) {
            idx = node_enum(ld, vals[BR_DEAD_LETTERS], kp, dead_letters_names, 2, s);
            if (idx >= 0)
                br->keep_dead_letters = idx == 0;
            free(s);
        }
    }
    if (vals[BR_LOG_LEVEL] != NULL) {
        keypath(kp, "broker", "log_level");
        if (scalar_value(ld, vals[BR_LOG_LEVEL], kp, &s) == 0) {
            if (node_enum(ld, vals[BR_LOG_LEVEL], kp, log_level_names, 4, s) >= 0) {
                set_str(&br->log_level, s);
                s = NULL;
            }
            free(s);
        }
    }
    /* An empty token (`${SWITCHYARD_TOKEN:-}`) means no token. */
    if (br->auth_token != NULL && br->auth_token[0] == '\0')
        sy_free(&br->auth_token);
    if (vals[BR_REGION] != NULL && br->region != NULL) {
        const char *r = br->region;

        keypath(kp, "broker", "region");
        if (r[0] == '\0' || strlen(r) > 32 ||
            strspn(r, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(r))
            ld_err_at(ld, vals[BR_REGION]->start_mark, kp,
                      "must be a region name of a-z, 0-9 and '-', as in us-east-1 (got '%s')", r);
    }
    if (vals[BR_ACCOUNT_ID] != NULL && br->account_id != NULL) {
        const char *a = br->account_id;

        keypath(kp, "broker", "account_id");
        if (strlen(a) != 12 || strspn(a, "0123456789") != 12)
            ld_err_at(ld, vals[BR_ACCOUNT_ID]->start_mark, kp,
                      "must be exactly 12 digits (got '%s')", a);
    }
    if (br->auth_token == NULL && br->listen_host != NULL && !host_is_loopback(br->listen_host)) {
        yaml_node_t *at = vals[BR_LISTEN] != NULL ? vals[BR_LISTEN] : knode;

        keypath(kp, "broker", "listen");
        ld_err(ld, at, kp, "refusing to listen on a non-loopback address without auth_token");
    }
}

/* ---------------------------------------------------------------------------------------------
 * functions.NAME:
 * ------------------------------------------------------------------------------------------- */

enum {
    FN_RUNTIME,
    FN_HANDLER,
    FN_CODE,
    FN_LAYERS,
    FN_MEMORY_MB,
    FN_TIMEOUT_S,
    FN_INIT_TIMEOUT_S,
    FN_ENVIRONMENT,
    FN_RESERVED_CONCURRENCY,
    FN_PROVISIONED_CONCURRENCY,
    FN_MAX_IDLE_S,
    FN_ASYNC,
    FN__N
};

static const struct cfg_field function_fields[FN__N] = {
    [FN_RUNTIME] = CFG_CUSTOM("runtime"),
    [FN_HANDLER] = FLD_STR("handler", struct cfg_function, handler, NULL),
    [FN_CODE] = CFG_CUSTOM("code"),
    [FN_LAYERS] = CFG_CUSTOM("layers"),
    [FN_MEMORY_MB] = FLD_INT("memory_mb", struct cfg_function, memory_mb, 128, 128, 10240),
    [FN_TIMEOUT_S] = FLD_INT("timeout_s", struct cfg_function, timeout_s, 3, 1, 900),
    [FN_INIT_TIMEOUT_S] =
        FLD_INT("init_timeout_s", struct cfg_function, init_timeout_s, 10, 1, 900),
    [FN_ENVIRONMENT] = CFG_CUSTOM("environment"),
    [FN_RESERVED_CONCURRENCY] = CFG_CUSTOM("reserved_concurrency"),
    [FN_PROVISIONED_CONCURRENCY] = CFG_CUSTOM("provisioned_concurrency"),
    [FN_MAX_IDLE_S] = FLD_INT("max_idle_s", struct cfg_function, max_idle_s, 300, 1, 86400),
    [FN_ASYNC] = CFG_CUSTOM("async"),
};

enum {
    AS_MAXIMUM_RETRY_ATTEMPTS,
    AS_MAXIMUM_EVENT_AGE_S,
    AS_RETRY_DELAYS_S,
    AS_ON_SUCCESS,
    AS_ON_FAILURE,
    AS_DEAD_LETTER,
    AS_MAXIMUM_CONCURRENCY,
    AS__N
};

static const struct cfg_field async_fields[AS__N] = {
    [AS_MAXIMUM_RETRY_ATTEMPTS] =
        FLD_INT("maximum_retry_attempts", struct cfg_async, maximum_retry_attempts, 2, 0, 2),
    [AS_MAXIMUM_EVENT_AGE_S] =
        FLD_INT("maximum_event_age_s", struct cfg_async, maximum_event_age_s, 21600, 60, 21600),
    [AS_RETRY_DELAYS_S] = CFG_CUSTOM("retry_delays_s"),
    [AS_ON_SUCCESS] = CFG_CUSTOM("on_success"),
    [AS_ON_FAILURE] = CFG_CUSTOM("on_failure"),
    [AS_DEAD_LETTER] = CFG_CUSTOM("dead_letter"),
    [AS_MAXIMUM_CONCURRENCY] =
        FLD_INT("maximum_concurrency", struct cfg_async, maximum_concurrency, 0, 0, 100000),
};

/*
 * Every accepted `runtime:` identifier: ID, its family, and the interpreter version it asks for
 * (0/0: any). The plain names come first, then Lambda's identifiers that switchyard can serve
 * (the python3.x and nodejsNN.x still listed by Lambda, and the custom-runtime ones, which need
 * no interpreter). One list, so that the parser and the message of an unknown value agree.
 */
#define CFG_RUNTIME_IDS(X)                                                                         \
    X("python3", CFG_RUNTIME_PYTHON3, 0, 0)                                                        \
    X("node", CFG_RUNTIME_NODE, 0, 0)                                                              \
    X("shell", CFG_RUNTIME_SHELL, 0, 0)                                                            \
    X("provided", CFG_RUNTIME_PROVIDED, 0, 0)                                                      \
    X("python3.9", CFG_RUNTIME_PYTHON3, 3, 9)                                                      \
    X("python3.10", CFG_RUNTIME_PYTHON3, 3, 10)                                                    \
    X("python3.11", CFG_RUNTIME_PYTHON3, 3, 11)                                                    \
    X("python3.12", CFG_RUNTIME_PYTHON3, 3, 12)                                                    \
    X("python3.13", CFG_RUNTIME_PYTHON3, 3, 13)                                                    \
    X("nodejs18.x", CFG_RUNTIME_NODE, 18, 0)                                                       \
    X("nodejs20.x", CFG_RUNTIME_NODE, 20, 0)                                                       \
    X("nodejs22.x", CFG_RUNTIME_NODE, 22, 0)                                                       \
    X("provided.al2", CFG_RUNTIME_PROVIDED, 0, 0)                                                  \
    X("provided.al2023", CFG_RUNTIME_PROVIDED, 0, 0)

struct runtime_id {
    const char *id;
    enum cfg_runtime rt;
    int major, minor;
};

#define RUNTIME_ID_ENTRY(id, rt, major, minor) {id, rt, major, minor},
static const struct runtime_id runtime_ids[] = {CFG_RUNTIME_IDS(RUNTIME_ID_ENTRY)};
#undef RUNTIME_ID_ENTRY

/* ", python3, node, ..." as one literal; cfg_runtime_accepted() skips the leading ", ". */
#define RUNTIME_ID_TEXT(id, rt, major, minor) ", " id
static const char runtime_ids_text[] = CFG_RUNTIME_IDS(RUNTIME_ID_TEXT);
#undef RUNTIME_ID_TEXT


/*
 * `module.function` (python3, node) or `file.function` (shell): a path-like module of
 * [A-Za-z0-9_./@-] not starting with '/', a '.', then an identifier ('$' allowed for node).
 */
static bool handler_ok(const char *h, enum cfg_runtime rt)
{
    const char *dot = strrchr(h, '.');
    const char *fn;

    if (dot == NULL || dot == h || h[0] == '/')
        return false;
    if (strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./@-") <
        (size_t)(dot - h))
        return false;
    fn = dot + 1;
    if (!is_ident_start(*fn) && !(rt == CFG_RUNTIME_NODE && *fn == '$'))
        return false;
    for (fn++; *fn != '\0'; fn++)
        if (!is_ident_char(*fn) && !(rt == CFG_RUNTIME_NODE && *fn == '$'))
            return false;
    return true;
}

/* functions.NAME.environment: a mapping of NAME to scalar, in file order. */
static void parse_environment(struct ld *ld, struct cfg_function *fn, yaml_node_t *node,
                              const char *path)
{
    size_t total = 0, cap;

    if (node_is_null(node))
        return;
    if (node->type != YAML_MAPPING_NODE) {
        ld_err_at(ld, node->start_mark, path, "must be a mapping of NAME: value (got %s)",
                  node_kind(node));
        return;
    }
    cap = (size_t)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
    if (cap == 0)
        return;
    fn->environment = calloc(cap, sizeof(*fn->environment));
    if (fn->environment == NULL) {
        ld->oom = true;
        return;
    }
    for (yaml_node_pair_t *pr = node->data.mapping.pairs.start; pr < node->data.mapping.pairs.top;
         pr++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, pr->key);
        yaml_node_t *v = yaml_document_get_node(&ld->doc, pr->value);
        char kp[KEYPATH_MAX];
        const char *name;
        char *value = NULL;
        bool bad = false;

        if (k->type != YAML_SCALAR_NODE) {
            ld_err_at(ld, k->start_mark, path, "keys must be scalars (got %s)", node_kind(k));
            continue;
        }
        name = scalar_text(k);
        keypath(kp, path, name);
        if (!is_ident(name)) {
            ld_err(ld, k, kp, "invalid variable name: must match [A-Za-z_][A-Za-z0-9_]*");
            bad = true;
        } else {
            if (cfg_env_reserved(name)) {
                ld_err(ld, k, kp, "is reserved by the Lambda runtime and cannot be set");
                bad = true;
            }
        }
        if (!bad) {
            for (size_t i = 0; i < fn->n_environment; i++)
                if (strcmp(fn->environment[i].name, name) == 0) {
                    ld_err(ld, k, kp, "duplicate key");
                    bad = true;
                    break;
                }
        }
        if (node_is_null(v)) {
            value = ld_strdup(ld, "");
        } else if (v->type != YAML_SCALAR_NODE) {
            ld_err_at(ld, v->start_mark, kp, "must be a string, number or boolean (got %s)",
                      node_kind(v));
            bad = true;
        } else if (interpolate(ld, v, kp, scalar_text(v), &value) != 0) {
            bad = true;
        }
        if (bad || value == NULL) {
            free(value);
            continue;
        }
        total += strlen(name) + strlen(value);
        fn->environment[fn->n_environment].name = ld_strdup(ld, name);
        fn->environment[fn->n_environment].value = value;
        fn->n_environment++;
    }
    if (total > ENV_MAX_BYTES)
        ld_err_at(ld, node->start_mark, path,
                  "names and values add up to %zu bytes, more than Lambda's 4 KB limit (%d)", total,
                  ENV_MAX_BYTES);
}

/* functions.NAME.async.retry_delays_s: a list of 0..21600. */
static void parse_retry_delays(struct ld *ld, struct cfg_async *as, yaml_node_t *node,
                               const char *path)
{
    size_t n;
    int *delays;
    size_t n_ok = 0;
    bool bad = false;

    if (node_is_null(node))
        return;
    if (node->type != YAML_SEQUENCE_NODE) {
        ld_err_at(ld, node->start_mark, path, "must be a list of integers (got %s)",
                  node_kind(node));
        return;
    }
    n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    if (n == 0) {
        ld_err(ld, node, path, "must hold at least one delay");
        return;
    }
    delays = calloc(n, sizeof(*delays));
    if (delays == NULL) {
        ld->oom = true;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *it = yaml_document_get_node(&ld->doc, node->data.sequence.items.start[i]);
        char kp[KEYPATH_MAX];

        if (snprintf(kp, sizeof(kp), "%s[%zu]", path, i) >= (int)sizeof(kp))
            memcpy(kp + sizeof(kp) - 4, "...", 4);
        if (node_is_null(it)) {
            ld_err(ld, it, kp, "must be an integer (got null)");
            bad = true;
        } else if (node_int(ld, it, kp, 0, 21600, NULL, &delays[n_ok]) != 0) {
            bad = true;
        } else {
            n_ok++;
        }
    }
    if (bad) {
        free(delays);
        return;
    }
    free(as->retry_delays_s);
    as->retry_delays_s = delays;
    as->n_retry_delays = n_ok;
}

/* functions.NAME.async: */
static void parse_async(struct ld *ld, struct cfg_async *as, yaml_node_t *node, const char *path)
{
    yaml_node_t *vals[AS__N];
    char kp[KEYPATH_MAX];
    char **dests[AS__N] = {
        [AS_ON_SUCCESS] = &as->on_success,
        [AS_ON_FAILURE] = &as->on_failure,
        [AS_DEAD_LETTER] = &as->dead_letter,
    };

    fields_default(ld, async_fields, AS__N, as);
    as->retry_delays_s = malloc(2 * sizeof(*as->retry_delays_s));
    if (as->retry_delays_s == NULL) {
        ld->oom = true;
    } else {
        as->retry_delays_s[0] = 60;
        as->retry_delays_s[1] = 120;
        as->n_retry_delays = 2;
    }
    if (node == NULL || map_collect(ld, node, path, async_fields, AS__N, vals, NULL) != 0)
        return;
    fields_apply(ld, path, async_fields, AS__N, vals, as);
    if (vals[AS_RETRY_DELAYS_S] != NULL) {
        keypath(kp, path, "retry_delays_s");
        parse_retry_delays(ld, as, vals[AS_RETRY_DELAYS_S], kp);
    }
    for (int i = AS_ON_SUCCESS; i <= AS_DEAD_LETTER; i++) {
        char *s;

        if (vals[i] == NULL)
            continue;
        keypath(kp, path, async_fields[i].key);
        if (scalar_value(ld, vals[i], kp, &s) != 0)
            continue;
        *dests[i] = destination(ld, vals[i], kp, s);
        free(s);
    }
}

/* 1 when NAME ends in ".zip" (any case, as zip tools write both). */
static bool name_is_zip(const char *name)
{
    size_t n = strlen(name);

    return n > 4 && strcasecmp(name + n - 4, ".zip") == 0;
}

/*
 * A package path (functions.NAME.code, functions.NAME.layers[i]): an existing directory or a
 * regular file named *.zip, made absolute. Returns new, or NULL after reporting; *RAW (new)
 * keeps the text as written, for messages; *IS_ZIP says which it is. The zip itself is opened
 * only by deploy_prepare_file(): loading a config stays cheap and never unpacks.
 */
static char *package_path(struct ld *ld, yaml_node_t *node, const char *path, char **raw,
                          bool *is_zip)
{
    struct stat st;
    char *s, *abs;

    if (scalar_value(ld, node, path, &s) != 0)
        return NULL;
    if (s[0] == '\0') {
        ld_err(ld, node, path, "must not be empty");
        free(s);
        return NULL;
    }
    abs = path_resolve(ld->cfg->base_dir, s);
    if (abs == NULL) {
        ld->oom = true;
        free(s);
        return NULL;
    }
    if (stat(abs, &st) != 0) {
        if (name_is_zip(s))
            ld_err_at(ld, node->start_mark, path, "file '%s' does not exist", s);
        else
            ld_err_at(ld, node->start_mark, path, "directory '%s' does not exist", s);
    } else if (S_ISDIR(st.st_mode)) {
        *is_zip = false;
        *raw = s;
        return abs;
    } else if (S_ISREG(st.st_mode) && name_is_zip(s)) {
        *is_zip = true;
        *raw = s;
        return abs;
    } else {
        ld_err_at(ld, node->start_mark, path, "'%s' is neither a directory nor a .zip file", s);
    }
    free(abs);
    free(s);
    return NULL;
}

/* functions.NAME.code: see package_path(). */
static void parse_code(struct ld *ld, struct cfg_function *fn, yaml_node_t *node, const char *path,
                       char **raw, bool *is_zip)
{
    fn->code = package_path(ld, node, path, raw, is_zip);
}

/*
 * functions.NAME.layers: a list of at most CFG_LAYERS_MAX package paths, none twice (the same
 * file reached by two spellings, through a symlink too, is the same layer).
 */
static void parse_layers(struct ld *ld, struct cfg_function *fn, yaml_node_t *node,
                         const char *path)
{
    size_t n;
    char *real[CFG_LAYERS_MAX] = {0};

    if (node_is_null(node))
        return;
    if (node->type != YAML_SEQUENCE_NODE) {
        ld_err_at(ld, node->start_mark, path,
                  "must be a list of directories or .zip files (got %s)", node_kind(node));
        return;
    }
    n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    if (n > CFG_LAYERS_MAX) {
        ld_err_at(ld, node->start_mark, path, "has %zu layers; Lambda allows at most %d", n,
                  CFG_LAYERS_MAX);
        return;
    }
    if (n == 0)
        return;
    fn->layers = calloc(n, sizeof(*fn->layers));
    if (fn->layers == NULL) {
        ld->oom = true;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *it = yaml_document_get_node(&ld->doc, node->data.sequence.items.start[i]);
        char kp[KEYPATH_MAX], *raw = NULL, *abs;
        bool is_zip = false, dup = false;

        if (snprintf(kp, sizeof(kp), "%s[%zu]", path, i) >= (int)sizeof(kp))
            memcpy(kp + sizeof(kp) - 4, "...", 4);
        abs = package_path(ld, it, kp, &raw, &is_zip);
        if (abs == NULL)
            continue;
        real[fn->n_layers] = realpath(abs, NULL);
        for (size_t j = 0; j < fn->n_layers && real[fn->n_layers] != NULL; j++) {
            if (real[j] != NULL && strcmp(real[j], real[fn->n_layers]) == 0) {
                ld_err_at(ld, it->start_mark, kp, "'%s' is listed twice (also layers[%zu])",
                          raw, j);
                dup = true;
                break;
            }
        }
        free(raw);
        if (dup) {
            free(real[fn->n_layers]);
            real[fn->n_layers] = NULL;
            free(abs);
            continue;
        }
        fn->layers[fn->n_layers++] = abs;
    }
    for (size_t i = 0; i < CFG_LAYERS_MAX; i++)
        free(real[i]);
}

/* The `bootstrap` a provided function runs: present, a file, executable. */
static void check_bootstrap(struct ld *ld, const struct cfg_function *fn, yaml_node_t *node,
                            const char *path, const char *raw)
{
    struct stat st;
    struct buf b = {0};

    if (buf_printf(&b, "%s/bootstrap", fn->code) != 0) {
        ld->oom = true;
        return;
    }
    if (stat(b.data, &st) != 0)
        ld_err_at(ld, node->start_mark, path,
                  "runtime provided needs '%s/bootstrap', which does not exist", raw);
    else if (!S_ISREG(st.st_mode))
        ld_err_at(ld, node->start_mark, path, "runtime provided needs '%s/bootstrap' to be a file",
                  raw);
    else if ((st.st_mode & 0111) == 0 || access(b.data, X_OK) != 0)
        ld_err_at(ld, node->start_mark, path,
                  "runtime provided needs '%s/bootstrap' to be executable (chmod +x)", raw);
    buf_free(&b);
}

/* One function: KNODE is its name, NODE its body. */
static void parse_function(struct ld *ld, struct cfg_function *fn, yaml_node_t *knode,
                           yaml_node_t *node)
{
    char path[KEYPATH_MAX], kp[KEYPATH_MAX], range[96];
    yaml_node_t *vals[FN__N];
    char *s, *code_raw = NULL;
    bool code_zip = false;
    unsigned failed;
    int runtime = -1;
    int max_conc = ld->cfg->broker.max_concurrency;

    keypath(path, "functions", scalar_text(knode));
    fn->name = ld_strdup(ld, scalar_text(knode));
    fn->line = (int)knode->start_mark.line + 1;
    fn->reserved_concurrency = -1;
    fields_default(ld, function_fields, FN__N, fn);
    if (!ld->max_conc_valid)
        max_conc = 100000; /* already reported; check against the hard limit only */

    if (map_collect(ld, node, path, function_fields, FN__N, vals, NULL) != 0) {
        parse_async(ld, &fn->async, NULL, NULL);
        return;
    }
    failed = fields_apply(ld, path, function_fields, FN__N, vals, fn);

    keypath(kp, path, "runtime");
    if (vals[FN_RUNTIME] == NULL || node_is_null(vals[FN_RUNTIME])) {
        ld_err_at(ld, knode->start_mark, kp, "is required (one of %s)", cfg_runtime_accepted());
    } else if (scalar_value(ld, vals[FN_RUNTIME], kp, &s) == 0) {
        enum cfg_runtime rt;

        if (cfg_runtime_parse(s, &rt, &fn->runtime_major, &fn->runtime_minor) == 0) {
            runtime = (int)rt;
            fn->runtime = rt;
            fn->runtime_id = s;
            s = NULL;
        } else {
            ld_err_at(ld, vals[FN_RUNTIME]->start_mark, kp, "must be one of %s (got '%s')",
                      cfg_runtime_accepted(), s);
        }
        free(s);
    }

    keypath(kp, path, "handler");
    if (runtime >= 0 && fn->runtime != CFG_RUNTIME_PROVIDED && !(failed & (1u << FN_HANDLER))) {
        const char *form = fn->runtime == CFG_RUNTIME_SHELL ? "file.function" : "module.function";

        if (fn->handler == NULL || fn->handler[0] == '\0') {
            /* Point at the empty value if there is one, else at the function. */
            const yaml_node_t *at = fn->handler != NULL ? vals[FN_HANDLER] : knode;

            ld_err_at(ld, at->start_mark, kp, "is required for runtime %s (%s)", fn->runtime_id,
                      form);
        } else if (!handler_ok(fn->handler, fn->runtime)) {
            ld_err_at(ld, vals[FN_HANDLER]->start_mark, kp, "must be %s (got '%s')", form,
                      fn->handler);
        }
    }
    if (fn->handler != NULL && fn->handler[0] == '\0')
        sy_free(&fn->handler);

    if (vals[FN_LAYERS] != NULL) {
        keypath(kp, path, "layers");
        parse_layers(ld, fn, vals[FN_LAYERS], kp);
    }

    keypath(kp, path, "code");
    if (vals[FN_CODE] == NULL || node_is_null(vals[FN_CODE])) {
        ld_err(ld, knode, kp,
               "is required (the directory or .zip file holding the function's code)");
    } else {
        parse_code(ld, fn, vals[FN_CODE], kp, &code_raw, &code_zip);
        /*
         * A bootstrap inside a zip, or in a layer, is only known once they are unpacked and
         * merged: deploy_prepare_file() checks those. What the file alone decides is checked
         * here, with the file's line.
         */
        if (fn->code != NULL && runtime >= 0 && fn->runtime == CFG_RUNTIME_PROVIDED &&
            !code_zip && fn->n_layers == 0)
            check_bootstrap(ld, fn, vals[FN_CODE], kp, code_raw);
    }
    free(code_raw);

    if (vals[FN_ENVIRONMENT] != NULL) {
        keypath(kp, path, "environment");
        parse_environment(ld, fn, vals[FN_ENVIRONMENT], kp);
    }

    if (vals[FN_RESERVED_CONCURRENCY] != NULL) {
        keypath(kp, path, "reserved_concurrency");
        snprintf(range, sizeof(range), "0..%d (broker.max_concurrency), or -1 for none", max_conc);
        if (node_int(ld, vals[FN_RESERVED_CONCURRENCY], kp, -1, max_conc, range,
                     &fn->reserved_concurrency) == 0 &&
            fn->reserved_concurrency > 0) {
            /* Reservations come out of the broker-wide pool: they cannot add up past it. */
            ld->reserved_sum += fn->reserved_concurrency;
            if (ld->max_conc_valid && ld->reserved_sum > max_conc)
                ld_err_at(ld, vals[FN_RESERVED_CONCURRENCY]->start_mark, kp,
                          "the reservations of the functions so far add up to %ld, more than "
                          "broker.max_concurrency (%d)",
                          ld->reserved_sum, max_conc);
        }
    }
    if (vals[FN_PROVISIONED_CONCURRENCY] != NULL) {
        int hi = fn->reserved_concurrency >= 0 ? fn->reserved_concurrency : max_conc;

        keypath(kp, path, "provisioned_concurrency");
        snprintf(range, sizeof(range), "0..%d (%s)", hi,
                 fn->reserved_concurrency >= 0 ? "reserved_concurrency" : "broker.max_concurrency");
        node_int(ld, vals[FN_PROVISIONED_CONCURRENCY], kp, 0, hi, range,
                 &fn->provisioned_concurrency);
    }

    keypath(kp, path, "async");
    parse_async(ld, &fn->async, vals[FN_ASYNC], kp);
}

/* functions: a mapping of NAME to function, in file order. */
static void parse_functions(struct ld *ld, yaml_node_t *node)
{
    struct cfg *cfg = ld->cfg;
    size_t n;

    if (node_is_null(node))
        return;
    if (node->type != YAML_MAPPING_NODE) {
        ld_err_at(ld, node->start_mark, "functions",
                  "must be a mapping of function name to function (got %s)", node_kind(node));
        return;
    }
    n = (size_t)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
    if (n == 0)
        return;
    cfg->functions = calloc(n, sizeof(*cfg->functions));
    ld->fn_names = calloc(n, sizeof(*ld->fn_names));
    if (cfg->functions == NULL || ld->fn_names == NULL) {
        ld->oom = true;
        return;
    }
    /* First the names, so that a destination may name a function declared further down. */
    for (size_t i = 0; i < n; i++) {
        yaml_node_pair_t *pr = &node->data.mapping.pairs.start[i];
        yaml_node_t *k = yaml_document_get_node(&ld->doc, pr->key);

        if (k->type == YAML_SCALAR_NODE && is_function_name(scalar_text(k)) &&
            !fn_declared(ld, scalar_text(k)))
            ld->fn_names[ld->n_fn_names++] = scalar_text(k);
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_pair_t *pr = &node->data.mapping.pairs.start[i];
        yaml_node_t *k = yaml_document_get_node(&ld->doc, pr->key);
        yaml_node_t *v = yaml_document_get_node(&ld->doc, pr->value);
        char kp[KEYPATH_MAX];
        bool dup = false;

        if (k->type != YAML_SCALAR_NODE) {
            ld_err_at(ld, k->start_mark, "functions", "keys must be scalars (got %s)",
                      node_kind(k));
            continue;
        }
        keypath(kp, "functions", scalar_text(k));
        for (size_t j = 0; j < cfg->n_functions; j++)
            if (strcmp(cfg->functions[j].name, scalar_text(k)) == 0) {
                ld_err_at(ld, k->start_mark, kp, "duplicate function (first declared at line %d)",
                          cfg->functions[j].line);
                dup = true;
                break;
            }
        if (dup)
            continue;
        if (!is_function_name(scalar_text(k)))
            ld_err(ld, k, kp,
                   "invalid function name: must be 1..64 characters of A-Z, a-z, 0-9, '_' and '-'");
        parse_function(ld, &cfg->functions[cfg->n_functions++], k, v);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Sections declared outside config/ (struct cfg_section) and cfg_check
 * ------------------------------------------------------------------------------------------- */

#define SECTION_FIELDS_MAX 32 /* fields_apply()'s mask */

struct cfg_check {
    struct ld *ld;
    const struct cfg_section *sec;
    const char *path;           /* of the section */
    const yaml_node_t *at;      /* the section's node (or its key) */
    yaml_node_t *const *vals;   /* the value nodes, by field index */
};

static size_t check_field(const struct cfg_check *chk, const char *key)
{
    for (size_t i = 0; i < chk->sec->n_fields; i++)
        if (strcmp(chk->sec->fields[i].key, key) == 0)
            return i;
    return SIZE_MAX;
}

void cfg_check_error(struct cfg_check *chk, const char *key, const char *fmt, ...)
{
    char reason[1024], kp[KEYPATH_MAX];
    size_t i = key != NULL ? check_field(chk, key) : SIZE_MAX;
    const yaml_node_t *at = i != SIZE_MAX && chk->vals[i] != NULL ? chk->vals[i] : chk->at;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (key != NULL)
        keypath(kp, chk->path, key);
    else
        snprintf(kp, sizeof(kp), "%s", chk->path);
    ld_err_at(chk->ld, at->start_mark, kp, "%s", reason);
}

const char *cfg_check_base_dir(const struct cfg_check *chk)
{
    return chk->ld->cfg->base_dir;
}

int cfg_check_given(const struct cfg_check *chk, const char *key)
{
    size_t i = check_field(chk, key);

    return i != SIZE_MAX && chk->vals[i] != NULL && !node_is_null(chk->vals[i]);
}

void cfg_section_free(const struct cfg_section *sec, void *obj)
{
    if (obj == NULL)
        return;
    for (size_t i = 0; i < sec->n_fields; i++) {
        const struct cfg_field *f = &sec->fields[i];
        void *at = (char *)obj + f->off;

        if (f->kind == CFG_FK_STR || f->kind == CFG_FK_DEST) {
            free(*(char **)at);
        } else if (f->kind == CFG_FK_STRLIST) {
            struct cfg_strlist *l = at;

            for (size_t j = 0; j < l->n; j++)
                free(l->v[j]);
            free(l->v);
        } else if (f->kind == CFG_FK_STRMAP) {
            struct cfg_strmap *m = at;

            for (size_t j = 0; j < m->n; j++) {
                free(m->keys[j]);
                free(m->vals[j]);
            }
            free(m->keys);
            free(m->vals);
        }
    }
    free(obj);
}

/*
 * Parse NODE (at PATH; AT is where to point at for keys that are missing) against SEC: a new
 * object of sec->size bytes, or NULL (out of memory). Problems are reported; the object is
 * returned anyway so the caller's error path frees it like any other.
 */
static void *parse_section(struct ld *ld, const struct cfg_section *sec, yaml_node_t *node,
                           const char *path, const yaml_node_t *at)
{
    yaml_node_t *vals[SECTION_FIELDS_MAX];
    struct cfg_check chk = {.ld = ld, .sec = sec, .path = path, .at = at, .vals = vals};
    void *obj = calloc(1, sec->size);
    unsigned failed;
    bool missing = false;

    if (obj == NULL || sec->n_fields > SECTION_FIELDS_MAX) {
        ld->oom = true;
        return obj;
    }
    fields_default(ld, sec->fields, sec->n_fields, obj);
    if (map_collect(ld, node, path, sec->fields, sec->n_fields, vals, NULL) != 0)
        return obj;
    failed = fields_apply(ld, path, sec->fields, sec->n_fields, vals, obj);
    for (size_t i = 0; i < sec->n_fields; i++) {
        char kp[KEYPATH_MAX];

        if ((sec->fields[i].flags & CFG_F_REQUIRED) == 0 ||
            (vals[i] != NULL && !node_is_null(vals[i])))
            continue;
        keypath(kp, path, sec->fields[i].key);
        ld_err_at(ld, at->start_mark, kp, "is required%s%s%s",
                  sec->fields[i].doc != NULL ? " (" : "",
                  sec->fields[i].doc != NULL ? sec->fields[i].doc : "",
                  sec->fields[i].doc != NULL ? ")" : "");
        missing = true;
    }
    /* Cross-field rules only on values that are all good: no cascade of errors. */
    if (failed == 0 && !missing && sec->validate != NULL)
        sec->validate(obj, &chk);
    return obj;
}

/* ---------------------------------------------------------------------------------------------
 * mappings:
 * ------------------------------------------------------------------------------------------- */

enum {
    MP_NAME,
    MP_FUNCTION,
    MP_ENABLED,
    MP_SOURCE,
    MP_BATCH_SIZE,
    MP_MAXIMUM_BATCHING_WINDOW_MS,
    MP_FILTERS,
    MP_MAXIMUM_CONCURRENCY,
    MP_REPORT_BATCH_ITEM_FAILURES,
    MP_BISECT_BATCH_ON_FUNCTION_ERROR,
    MP_MAXIMUM_RETRY_ATTEMPTS,
    MP_MAXIMUM_RECORD_AGE_S,
    MP_ON_FAILURE,
    MP_MAX_RECORDS_IN_FLIGHT,
    MP__N
};

static const struct cfg_field mapping_fields[MP__N] = {
    [MP_NAME] = CFG_STR("name", struct cfg_mapping, name, NULL, CFG_F_REQUIRED,
                        "the mapping's name: 1..64 of A-Z, a-z, 0-9, '_' and '-'"),
    [MP_FUNCTION] = CFG_STR("function", struct cfg_mapping, function, NULL, CFG_F_REQUIRED,
                            "a function declared under functions; NAME:VERSION or NAME:ALIAS "
                            "for one of its versions or aliases"),
    [MP_ENABLED] = CFG_BOOL("enabled", struct cfg_mapping, enabled, 1, 0,
                            "poll the source (a state saved by the API wins at start)"),
    [MP_SOURCE] = CFG_CUSTOM("source"),
    [MP_BATCH_SIZE] = CFG_CUSTOM("batch_size"),
    [MP_MAXIMUM_BATCHING_WINDOW_MS] = CFG_CUSTOM("maximum_batching_window_ms"),
    [MP_FILTERS] = CFG_CUSTOM("filters"),
    [MP_MAXIMUM_CONCURRENCY] = CFG_INT("maximum_concurrency", struct cfg_mapping,
                                       maximum_concurrency, 5, 1, 1000, 0,
                                       "batches of this mapping in flight at once"),
    [MP_REPORT_BATCH_ITEM_FAILURES] =
        CFG_BOOL("report_batch_item_failures", struct cfg_mapping, report_batch_item_failures, 0,
                 0, "honour {\"batchItemFailures\": [...]} responses"),
    [MP_BISECT_BATCH_ON_FUNCTION_ERROR] =
        CFG_BOOL("bisect_batch_on_function_error", struct cfg_mapping,
                 bisect_batch_on_function_error, 0, 0, "split a failed batch in two and retry"),
    [MP_MAXIMUM_RETRY_ATTEMPTS] =
        CFG_INT("maximum_retry_attempts", struct cfg_mapping, maximum_retry_attempts, -1, -1,
                10000, 0, "retries of a failed record; -1 until it expires"),
    [MP_MAXIMUM_RECORD_AGE_S] = CFG_CUSTOM("maximum_record_age_s"),
    [MP_ON_FAILURE] = CFG_DEST("on_failure", struct cfg_mapping, on_failure, 0,
                               "destination of the on-failure records"),
    [MP_MAX_RECORDS_IN_FLIGHT] = CFG_CUSTOM("max_records_in_flight"),
};

static bool mapping_declared(const struct ld *ld, const char *name, size_t before, int *line)
{
    for (size_t i = 0; i < before; i++)
        if (ld->cfg->mappings[i].name != NULL && strcmp(ld->cfg->mappings[i].name, name) == 0) {
            *line = ld->cfg->mappings[i].line;
            return true;
        }
    return false;
}

/* mappings[I].source: exactly one KIND: {...} of the schema's kinds. */
static void parse_mapping_source(struct ld *ld, struct cfg_mapping *mp, yaml_node_t *node,
                                 const char *path, const yaml_node_t *at)
{
    const struct cfg_schema *sc = ld->schema;
    struct buf names = {0};
    yaml_node_pair_t *pr;
    yaml_node_t *k, *v;
    char kp[KEYPATH_MAX];

    for (size_t i = 0; sc != NULL && i < sc->n_sources; i++)
        if (buf_printf(&names, "%s%s", i ? ", " : "", sc->sources[i]->sec.name) != 0)
            ld->oom = true;
    if (node == NULL || node_is_null(node)) {
        ld_err(ld, at, path, names.len ? "is required (one of the source kinds)" : "is required");
        goto out;
    }
    if (node->type != YAML_MAPPING_NODE ||
        node->data.mapping.pairs.top - node->data.mapping.pairs.start != 1) {
        ld_err_at(ld, node->start_mark, path, "must be a mapping with exactly one key, the kind "
                  "of source (%s)", names.len ? names.data : "none is built in");
        goto out;
    }
    pr = node->data.mapping.pairs.start;
    k = yaml_document_get_node(&ld->doc, pr->key);
    v = yaml_document_get_node(&ld->doc, pr->value);
    if (k->type != YAML_SCALAR_NODE) {
        ld_err_at(ld, k->start_mark, path, "keys must be scalars (got %s)", node_kind(k));
        goto out;
    }
    keypath(kp, path, scalar_text(k));
    for (size_t i = 0; sc != NULL && i < sc->n_sources; i++)
        if (strcmp(sc->sources[i]->sec.name, scalar_text(k)) == 0)
            mp->source_kind = sc->sources[i];
    if (mp->source_kind == NULL) {
        ld_err_at(ld, k->start_mark, kp, "unknown kind of source; valid kinds are: %s",
                  names.len ? names.data : "(none in this build)");
        goto out;
    }
    mp->source = parse_section(ld, &mp->source_kind->sec, v, kp, k);
out:
    buf_free(&names);
}

/* mappings[I].filters: up to 10 pattern strings, each checked by the schema's filter_check. */
static void parse_mapping_filters(struct ld *ld, struct cfg_mapping *mp, yaml_node_t *node,
                                  const char *path)
{
    struct cfg_strlist l = {0};

    if (node_strlist(ld, node, path, &l) != 0) {
        for (size_t i = 0; i < l.n; i++)
            free(l.v[i]);
        free(l.v);
        return;
    }
    mp->filters = l.v;
    mp->n_filters = l.n;
    if (l.n > 10) {
        ld_err_at(ld, node->start_mark, path, "at most 10 filter patterns (got %zu)", l.n);
        return;
    }
    for (size_t i = 0; i < l.n; i++) {
        yaml_node_t *item = node->type == YAML_SEQUENCE_NODE
                                ? yaml_document_get_node(&ld->doc,
                                                         node->data.sequence.items.start[i])
                                : node;
        char kp[KEYPATH_MAX + 24], why[512];

        snprintf(kp, sizeof(kp), "%s[%zu]", path, i);
        if (strlen(l.v[i]) > 4096) {
            ld_err_at(ld, item->start_mark, kp, "a filter pattern is at most 4096 characters "
                      "(got %zu)", strlen(l.v[i]));
            continue;
        }
        if (ld->schema != NULL && ld->schema->filter_check != NULL && mp->source_kind != NULL &&
            ld->schema->filter_check(mp->source_kind, l.v[i], strlen(l.v[i]), why,
                                     sizeof(why)) != 0)
            ld_err_at(ld, item->start_mark, kp, "invalid filter pattern: %s", why);
    }
}

/*
 * mappings[I].function: NAME, or NAME:QUALIFIER for a version or an alias (Lambda's pattern:
 * $LATEST or 1..128 of A-Z, a-z, 0-9, '_' and '-'). NAME must be declared; the qualifier is only
 * checked for its form, since versions and aliases are made at run time.
 */
static void mapping_function(struct ld *ld, const yaml_node_t *node, const char *path,
                             const char *s)
{
    const char *colon = strchr(s, ':'), *q = colon != NULL ? colon + 1 : "";
    size_t qlen = strlen(q);
    char name[72];

    snprintf(name, sizeof(name), "%.*s", colon != NULL ? (int)(colon - s) : 71, s);
    if (colon != NULL && strcmp(q, "$LATEST") != 0 &&
        (qlen < 1 || qlen > 128 ||
         strspn(q, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != qlen))
        ld_err_at(ld, node->start_mark, path,
                  "invalid qualifier in '%s': a version or an alias is $LATEST or 1..128 "
                  "characters of A-Z, a-z, 0-9, '_' and '-'",
                  s);
    else if (ld->any_function && !is_function_name(name))
        ld_err_at(ld, node->start_mark, path,
                  "invalid function name '%s': 1..64 characters of A-Z, a-z, 0-9, '_' and '-'",
                  name);
    else if (!ld->any_function && !fn_declared(ld, name))
        ld_err_at(ld, node->start_mark, path, "no function '%s' is declared under functions",
                  name);
}

static void parse_mapping(struct ld *ld, size_t idx, yaml_node_t *node)
{
    struct cfg_mapping *mp = &ld->cfg->mappings[idx];
    yaml_node_t *vals[MP__N];
    char path[KEYPATH_MAX], kp[KEYPATH_MAX], range[96];
    unsigned failed;
    int line, hi;

    snprintf(path, sizeof(path), "mappings[%zu]", idx);
    mp->line = (int)node->start_mark.line + 1;
    ld->no_function_dest = true;
    fields_default(ld, mapping_fields, MP__N, mp);
    mp->batch_size = -1;
    mp->maximum_batching_window_ms = -1;
    mp->maximum_record_age_s = -1;
    mp->max_records_in_flight = -1;
    if (map_collect(ld, node, path, mapping_fields, MP__N, vals, NULL) != 0) {
        ld->no_function_dest = false;
        return;
    }
    failed = fields_apply(ld, path, mapping_fields, MP__N, vals, mp);
    if (vals[MP_NAME] == NULL || mp->name == NULL) {
        keypath(kp, path, "name");
        ld_err(ld, node, kp, "is required (a name for the mapping: 1..64 of A-Z, a-z, 0-9, '_' "
               "and '-')");
    } else if (!(failed & (1u << MP_NAME))) {
        keypath(kp, path, "name");
        if (!is_function_name(mp->name))
            ld_err(ld, vals[MP_NAME], kp,
                   "invalid mapping name: must be 1..64 characters of A-Z, a-z, 0-9, '_' and '-'");
        else if (mapping_declared(ld, mp->name, idx, &line))
            ld_err_at(ld, vals[MP_NAME]->start_mark, kp,
                      "duplicate mapping name (first declared at line %d)", line);
    }
    keypath(kp, path, "function");
    if (vals[MP_FUNCTION] == NULL || mp->function == NULL)
        ld_err(ld, node, kp, "is required (a function declared under functions)");
    else if (!(failed & (1u << MP_FUNCTION)))
        mapping_function(ld, vals[MP_FUNCTION], kp, mp->function);

    keypath(kp, path, "source");
    parse_mapping_source(ld, mp, vals[MP_SOURCE], kp, node);

    if (mp->source_kind != NULL) {
        mp->batch_size = mp->source_kind->default_batch_size;
        mp->maximum_batching_window_ms = mp->source_kind->default_window_ms;
    } else {
        mp->batch_size = 10;
        mp->maximum_batching_window_ms = 0;
    }
    if (vals[MP_BATCH_SIZE] != NULL) {
        keypath(kp, path, "batch_size");
        node_int(ld, vals[MP_BATCH_SIZE], kp, 1, 10000, NULL, &mp->batch_size);
    }
    if (vals[MP_MAXIMUM_BATCHING_WINDOW_MS] != NULL) {
        keypath(kp, path, "maximum_batching_window_ms");
        node_int(ld, vals[MP_MAXIMUM_BATCHING_WINDOW_MS], kp, 0, 300000, NULL,
                 &mp->maximum_batching_window_ms);
    }
    if (vals[MP_MAXIMUM_RECORD_AGE_S] != NULL) {
        keypath(kp, path, "maximum_record_age_s");
        if (node_int(ld, vals[MP_MAXIMUM_RECORD_AGE_S], kp, -1, 604800,
                     "-1 (no limit) or 60..604800", &mp->maximum_record_age_s) == 0 &&
            mp->maximum_record_age_s >= 0 && mp->maximum_record_age_s < 60)
            ld_err_at(ld, vals[MP_MAXIMUM_RECORD_AGE_S]->start_mark, kp,
                      "must be -1 (no limit) or 60..604800 (got %d)", mp->maximum_record_age_s);
    }
    /* The default keeps two rounds of full batches per concurrent slot. */
    hi = 1000000;
    if (vals[MP_MAX_RECORDS_IN_FLIGHT] != NULL) {
        keypath(kp, path, "max_records_in_flight");
        snprintf(range, sizeof(range), "%d..%d (batch_size..1000000)", mp->batch_size, hi);
        node_int(ld, vals[MP_MAX_RECORDS_IN_FLIGHT], kp, mp->batch_size, hi, range,
                 &mp->max_records_in_flight);
    }
    if (mp->max_records_in_flight < 0) {
        long d = (long)mp->batch_size * mp->maximum_concurrency * 2;

        mp->max_records_in_flight = (int)(d < 1000 ? 1000 : d > hi ? hi : d);
    }
    if (vals[MP_FILTERS] != NULL) {
        keypath(kp, path, "filters");
        parse_mapping_filters(ld, mp, vals[MP_FILTERS], kp);
    }
    ld->no_function_dest = false;
}

/* mappings: a list of mappings, in file order. */
static void parse_mappings(struct ld *ld, yaml_node_t *node)
{
    size_t n;

    if (node_is_null(node) ||
        (node->type == YAML_MAPPING_NODE &&
         node->data.mapping.pairs.top == node->data.mapping.pairs.start))
        return; /* `mappings: {}` reads as none, as it always did */
    if (node->type != YAML_SEQUENCE_NODE) {
        ld_err_at(ld, node->start_mark, "mappings", "must be a list of mappings (got %s)",
                  node_kind(node));
        return;
    }
    n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    if (n == 0)
        return;
    ld->cfg->mappings = calloc(n, sizeof(*ld->cfg->mappings));
    if (ld->cfg->mappings == NULL) {
        ld->oom = true;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(&ld->doc, node->data.sequence.items.start[i]);

        ld->cfg->n_mappings++;
        parse_mapping(ld, i, item);
    }
}

/* ---------------------------------------------------------------------------------------------
 * The document
 * ------------------------------------------------------------------------------------------- */

enum { TOP_BROKER, TOP_FUNCTIONS, TOP_MAPPINGS, TOP__N };

static const struct cfg_field top_fields[TOP__N] = {
    [TOP_BROKER] = CFG_CUSTOM("broker"),
    [TOP_FUNCTIONS] = CFG_CUSTOM("functions"),
    [TOP_MAPPINGS] = CFG_CUSTOM("mappings"),
};

static void parse_document(struct ld *ld)
{
    yaml_node_t *root = yaml_document_get_root_node(&ld->doc);
    yaml_node_t *vals[TOP__N], *keys[TOP__N];

    if (root == NULL || node_is_null(root)) {
        /* An empty file: every default, no function. */
        parse_broker(ld, NULL, NULL);
        return;
    }
    if (root->type != YAML_MAPPING_NODE) {
        ld_err_at(ld, root->start_mark, NULL,
                  "the top level must be a mapping of broker, functions and mappings (got %s)",
                  node_kind(root));
        parse_broker(ld, NULL, NULL);
        return;
    }
    map_collect(ld, root, NULL, top_fields, TOP__N, vals, keys);
    /* broker: first (its max_concurrency bounds the functions), wherever it is in the file. */
    parse_broker(ld, keys[TOP_BROKER], vals[TOP_BROKER]);
    if (vals[TOP_FUNCTIONS] != NULL)
        parse_functions(ld, vals[TOP_FUNCTIONS]);
    if (vals[TOP_MAPPINGS] != NULL)
        parse_mappings(ld, vals[TOP_MAPPINGS]);
}

/* Read the whole file into *DATA (new, NUL-terminated). Returns 0 or -errno. */
static int read_file(const char *path, unsigned char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct buf b = {0};
    char chunk[8192];
    size_t n;
    int rc = 0;

    *data = NULL;
    *len = 0;
    if (f == NULL)
        return -errno;
    errno = 0;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (buf_append(&b, chunk, n) != 0) {
            rc = -ENOMEM;
            goto out_close;
        }
    if (ferror(f)) {
        rc = errno != 0 ? -errno : -EIO; /* EISDIR for a directory */
        goto out_close;
    }
    if (b.data == NULL && buf_append(&b, "", 0) != 0) {
        rc = -ENOMEM;
        goto out_close;
    }
    *data = (unsigned char *)buf_take(&b, len);
out_close:
    buf_free(&b);
    fclose(f);
    return rc;
}

/* The 0-based line and column of byte OFF in DATA (reader errors carry only an offset). */
static yaml_mark_t mark_of_offset(const unsigned char *data, size_t len, size_t off)
{
    yaml_mark_t m = {0};

    for (size_t i = 0; i < off && i < len; i++) {
        if (data[i] == '\n') {
            m.line++;
            m.column = 0;
        } else if ((data[i] & 0xC0) != 0x80) {
            m.column++;
        }
    }
    return m;
}

/* Record libyaml's complaint about the syntax. */
static void syntax_error(struct ld *ld, const yaml_parser_t *p, const unsigned char *data,
                         size_t len)
{
    yaml_mark_t at = p->problem_mark;
    const char *problem = p->problem != NULL ? p->problem : "cannot parse";

    if (p->error == YAML_READER_ERROR) {
        at = mark_of_offset(data, len, p->problem_offset);
        ld_err_at(ld, at, NULL, "not valid YAML: %s", problem);
    } else if (p->context != NULL) {
        ld_err_at(ld, at, NULL, "not valid YAML: %s (%s at line %zu, column %zu)", problem,
                  p->context, (size_t)p->context_mark.line + 1, (size_t)p->context_mark.column + 1);
    } else {
        ld_err_at(ld, at, NULL, "not valid YAML: %s", problem);
    }
}

/* ---------------------------------------------------------------------------------------------
 * The API
 * ------------------------------------------------------------------------------------------- */

struct cfg *cfg_load(const char *path, const struct cfg_schema *schema, struct cfg_errors *errs)
{
    struct ld ld = {.file = path, .schema = schema};
    yaml_parser_t parser;
    unsigned char *data = NULL;
    size_t len = 0;
    char *real = NULL, *slash;
    bool doc_loaded = false;
    int rc;

    ld.cfg = calloc(1, sizeof(*ld.cfg));
    if (ld.cfg == NULL) {
        errs_add_plain(errs, path, "out of memory");
        return NULL;
    }
    rc = read_file(path, &data, &len);
    if (rc != 0) {
        ld_err_at(&ld, (yaml_mark_t){0}, NULL, "cannot read the file: %s", strerror(-rc));
        goto out;
    }
    real = realpath(path, NULL);
    if (real == NULL) {
        ld_err_at(&ld, (yaml_mark_t){0}, NULL, "cannot resolve the path: %s", strerror(errno));
        goto out;
    }
    ld.cfg->path = real;
    ld.cfg->base_dir = ld_strdup(&ld, real);
    if (ld.cfg->base_dir == NULL)
        goto out;
    slash = strrchr(ld.cfg->base_dir, '/');
    if (slash == ld.cfg->base_dir)
        slash[1] = '\0'; /* a file in / */
    else if (slash != NULL)
        *slash = '\0';

    if (!yaml_parser_initialize(&parser)) {
        ld.oom = true;
        goto out;
    }
    yaml_parser_set_input_string(&parser, data, len);
    if (!yaml_parser_load(&parser, &ld.doc)) {
        syntax_error(&ld, &parser, data, len);
    } else {
        yaml_document_t extra;

        doc_loaded = true;
        parse_document(&ld);
        /*
         * A further document (after `---`) would be silently ignored: refuse it. Empty ones (a
         * bare trailing `---`) are harmless; the stream's end loads as a document without root.
         */
        for (;;) {
            yaml_node_t *root;
            bool more;

            if (!yaml_parser_load(&parser, &extra)) {
                syntax_error(&ld, &parser, data, len);
                break;
            }
            root = yaml_document_get_root_node(&extra);
            more = root != NULL;
            if (root != NULL && !node_is_null(root)) {
                ld_err_at(&ld, extra.start_mark, NULL,
                          "only one YAML document is allowed in a config file");
                more = false;
            }
            yaml_document_delete(&extra);
            if (!more)
                break;
        }
    }
    yaml_parser_delete(&parser);

out:
    if (doc_loaded)
        yaml_document_delete(&ld.doc);
    free(ld.fn_names);
    free(data);
    if (ld.oom)
        errs_add_plain(errs, path, "out of memory");
    if (ld.n_errs > 0 || ld.oom) {
        ld_errs_flush(&ld, errs);
        for (size_t i = 0; i < ld.n_errs; i++)
            free(ld.errs[i].msg);
        free(ld.errs);
        cfg_destroy(ld.cfg);
        return NULL;
    }
    free(ld.errs);
    return ld.cfg;
}

/* Free what MP owns (not MP itself). */
static void mapping_clear(struct cfg_mapping *mp)
{
    free(mp->name);
    free(mp->function);
    if (mp->source_kind != NULL)
        cfg_section_free(&mp->source_kind->sec, mp->source);
    for (size_t j = 0; j < mp->n_filters; j++)
        free(mp->filters[j]);
    free(mp->filters);
    free(mp->on_failure);
}

void cfg_destroy(struct cfg *cfg)
{
    struct cfg_broker *br;

    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->n_functions; i++)
        cfg_function_clear(&cfg->functions[i]);
    free(cfg->functions);
    for (size_t i = 0; i < cfg->n_mappings; i++)
        mapping_clear(&cfg->mappings[i]);
    free(cfg->mappings);
    br = &cfg->broker;
    free(br->listen);
    free(br->listen_host);
    free(br->data_dir);
    free(br->auth_token);
    free(br->async_queue);
    free(br->log_level);
    free(br->region);
    free(br->account_id);
    free(cfg->path);
    free(cfg->base_dir);
    free(cfg);
}

void cfg_errors_clear(struct cfg_errors *errs)
{
    if (errs == NULL)
        return;
    for (size_t i = 0; i < errs->n; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    errs->msgs = NULL;
    errs->n = 0;
}

const struct cfg_function *cfg_function_find(const struct cfg *cfg, const char *name)
{
    if (cfg == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < cfg->n_functions; i++)
        if (strcmp(cfg->functions[i].name, name) == 0)
            return &cfg->functions[i];
    return NULL;
}

const struct cfg_mapping *cfg_mapping_find(const struct cfg *cfg, const char *name)
{
    if (cfg == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < cfg->n_mappings; i++)
        if (cfg->mappings[i].name != NULL && strcmp(cfg->mappings[i].name, name) == 0)
            return &cfg->mappings[i];
    return NULL;
}

const char *cfg_runtime_name(enum cfg_runtime rt)
{
    switch (rt) {
    case CFG_RUNTIME_PYTHON3:
        return "python3";
    case CFG_RUNTIME_NODE:
        return "node";
    case CFG_RUNTIME_SHELL:
        return "shell";
    case CFG_RUNTIME_PROVIDED:
        return "provided";
    }
    return "unknown";
}

int cfg_runtime_parse(const char *s, enum cfg_runtime *rt, int *major, int *minor)
{
    if (s == NULL)
        return -1;
    for (size_t i = 0; i < sizeof(runtime_ids) / sizeof(runtime_ids[0]); i++) {
        const struct runtime_id *r = &runtime_ids[i];

        if (strcmp(s, r->id) != 0)
            continue;
        if (rt != NULL)
            *rt = r->rt;
        if (major != NULL)
            *major = r->major;
        if (minor != NULL)
            *minor = r->minor;
        return 0;
    }
    return -1;
}

const char *cfg_runtime_accepted(void)
{
    return runtime_ids_text + 2;
}

/* ---------------------------------------------------------------------------------------------
 * One mapping alone (mappings made at run time)
 * ------------------------------------------------------------------------------------------- */

/*
 * The loader's own mapping walk over TEXT, with a config of one mapping of its own: CFG lends
 * only its base_dir, so nothing of CFG is changed and no other mapping is seen.
 */
struct cfg_mapping *cfg_mapping_parse(const struct cfg *cfg, const struct cfg_schema *schema,
                                      const char *what, const char *text, size_t len,
                                      struct cfg_errors *errs)
{
    struct cfg one = {.base_dir = cfg->base_dir, .n_mappings = 1};
    struct ld ld = {.file = what, .schema = schema, .cfg = &one, .any_function = true};
    yaml_parser_t parser;
    yaml_node_t *root;
    bool doc_loaded = false;

    one.mappings = calloc(1, sizeof(*one.mappings));
    if (one.mappings == NULL || !yaml_parser_initialize(&parser)) {
        free(one.mappings);
        errs_add_plain(errs, what, "out of memory");
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &ld.doc)) {
        syntax_error(&ld, &parser, (const unsigned char *)text, len);
    } else {
        doc_loaded = true;
        root = yaml_document_get_root_node(&ld.doc);
        if (root == NULL || root->type != YAML_MAPPING_NODE)
            ld_err_at(&ld, (yaml_mark_t){0}, "mappings[0]", "must be a mapping (got %s)",
                      root != NULL ? node_kind(root) : "nothing");
        else
            parse_mapping(&ld, 0, root);
    }
    yaml_parser_delete(&parser);
    if (doc_loaded)
        yaml_document_delete(&ld.doc);
    if (ld.oom)
        errs_add_plain(errs, what, "out of memory");
    if (ld.n_errs > 0 || ld.oom) {
        ld_errs_flush(&ld, errs);
        for (size_t i = 0; i < ld.n_errs; i++)
            free(ld.errs[i].msg);
        free(ld.errs);
        cfg_mapping_free(one.mappings);
        return NULL;
    }
    free(ld.errs);
    return one.mappings;
}

void cfg_mapping_free(struct cfg_mapping *mp)
{
    if (mp == NULL)
        return;
    mapping_clear(mp);
    free(mp);
}
