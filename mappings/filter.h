/*
 * mappings/filter.h - Lambda's event filtering (FilterCriteria): up to FILTER_MAX_PATTERNS
 * patterns, compiled once and matched per record on the record's raw JSON text.
 *
 * A compiled `struct filter` is immutable: filter_match() may be called on one filter from
 * several threads at once. Matching builds no DOM and never allocates; it scans the record's
 * text once per pattern, comparing escaped strings against the pattern's literals as it goes.
 *
 * The language (reference/lambda-semantics.md section 6.3). A pattern is a JSON object. Each
 * key names a field of the record; its value is either a nested object (the field must be an
 * object matching it) or a non-empty list of alternatives, OR-ed, each one of:
 *
 *   "text", 12, true, false, null   equal to that value. Strings compare byte for byte after
 *                                   unescaping (no Unicode normalisation). Numbers compare by
 *                                   their text, as EventBridge documents: 300, 300.0 and 3e2 are
 *                                   three different values (use `numeric` to compare values).
 *   {"exists": true|false}          the field holds a scalar (null included) / does not.
 *                                   A field holding only an object or an empty array counts as
 *                                   absent, so exists:true never matches an intermediate object.
 *   {"prefix": "s"}, {"suffix": "s"}, {"equals-ignore-case": "s"},
 *   {"prefix": {"equals-ignore-case": "s"}}, {"suffix": {"equals-ignore-case": "s"}}
 *                                   string tests; ignore-case folds ASCII letters only.
 *   {"anything-but": V}             a present scalar unequal to V, where V is a string, a
 *                                   number or a non-empty list of strings and numbers; or, for
 *                                   strings only, {"prefix": s}, {"suffix": s},
 *                                   {"equals-ignore-case": s or [s...]}, {"wildcard": s or [s...]}.
 *   {"numeric": [">", 0, "<=", 5]}  a number in range: one comparison, or one lower (>, >=) and
 *                                   one upper (<, <=) bound; "=" only alone. Compared as doubles
 *                                   (no +-1e9 limit). Never matches a string such as "5".
 *   {"wildcard": "img-*.png"}       extension (EventBridge, not Pipes): `*` matches any run of
 *                                   bytes; `\*` and `\\` (written "\\*" and "\\\\" in JSON) are
 *                                   a literal star and backslash; "**" is refused.
 *   {"cidr": "10.0.0.0/24"}         extension: a string holding an IPv4 (or IPv6) address inside
 *                                   the block; a block without /N is one address.
 *
 * "$or": [P1, P2, ...] (one or more non-empty objects, nesting allowed) matches when any Pi
 * matches the same object. All other keys of an object are AND-ed; keys the pattern does not
 * name are ignored. A duplicate key in a pattern object: the last one wins. A duplicate key in a
 * record: the last one wins too (as jansson reads it).
 *
 * Arrays in the record: a list of alternatives matches when any element (nested arrays
 * flattened) matches; a nested object pattern matches an array when any element does (all of
 * its keys from the same element). A scalar where the pattern has an object counts as an object
 * without fields, so only exists:false clauses can match in it.
 *
 * Refused patterns: not valid JSON, not an object, an empty object, a value that is neither a
 * list nor an object, an empty list, an array inside a list, an unknown operator, an operator
 * object with other than one key, a bad operand (numeric operators, prefix of a non-string...),
 * a bad $or, a text over FILTER_PATTERN_MAX characters, more than 32 levels of JSON nesting.
 *
 * The payload (section 6.5). With filter_opts.data_key set, the top-level clauses under that key
 * (also inside top-level $or branches) are matched against the payload, not against the
 * record's member of that name. The payload is JSON when it is one valid JSON value (UTF-8,
 * RFC 8259), text when it is other valid UTF-8, binary otherwise. A nested object under the key
 * is a JSON pattern and is matched against a JSON payload; a list is a plain-string pattern and
 * is matched against a text payload as one string. On a mismatch (JSON payload and list, text
 * payload and object, binary payload and either) data_must_match=1 fails the pattern (SQS: the
 * record is dropped unless another pattern matches) and data_must_match=0 treats the clause as
 * satisfied (Kafka, MQ: the pattern decides on metadata alone). Two exceptions: a list holding
 * only {"exists": ...} tests whether there is a payload at all, whatever its format; and a NULL
 * payload is an absent field (only exists:false matches it).
 */
#ifndef SY_FILTER_H
#define SY_FILTER_H

#include <stddef.h>

struct sy_error;
struct buf;

struct filter; /* up to FILTER_MAX_PATTERNS (10) patterns, OR-ed */
#define FILTER_MAX_PATTERNS 10
#define FILTER_PATTERN_MAX 4096 /* Lambda's limit on one pattern's text */

struct filter_opts {
    /*
     * The record key whose value is the payload, e.g. "body" (SQS/Redis), "value" (Kafka),
     * "payload" (MQTT); NULL = none. Borrowed by filter_compile (copied).
     */
    const char *data_key;
    /*
     * 1: SQS rule (a JSON/non-JSON mismatch between the payload and the pattern's data part
     * DROPS the record); 0: Kafka/MQ rule (the mismatch only ignores the data part of the
     * pattern; the record can still match on metadata). See §6.5.
     */
    int data_must_match;
};

/*
 * Compile. PATTERNS[i] is LENS[i] bytes of JSON text. Returns new (filter_destroy) or NULL with
 * ERR filled: "pattern 2: <reason> (at offset N)". n==0 gives a filter that matches everything.
 *
 * Patterns are numbered from 1 in messages; N is a byte offset into that pattern's text. More
 * than FILTER_MAX_PATTERNS patterns is an error, as is running out of memory. OPTS may be NULL
 * (no data key). The filter borrows nothing: the pattern texts, OPTS and its data_key may be
 * freed once this returns. ERR may be NULL.
 */
struct filter *filter_compile(const char *const *patterns, const size_t *lens, size_t n,
                              const struct filter_opts *opts, struct sy_error *err);

/*
 * Check one pattern (for config validation): 0, or -1 with WHY filled. WHY reads
 * "<reason> (at offset N)" and is truncated to WHYSZ bytes (NUL included); WHY may be NULL when
 * WHYSZ is 0. OPTS may be NULL. Allocates and frees a compiled copy; nothing is kept.
 */
int filter_check(const char *pattern, size_t len, const struct filter_opts *opts, char *why,
                 size_t whysz);

/*
 * 1 if the record matches any pattern, else 0. REC is the record's JSON object as the function
 * sees it (metadata keys, e.g. messageId, attributes; its data_key member holds the payload as a
 * JSON string, or base64, whatever — IGNORE the data_key member of REC). DATA (DATA_LEN bytes,
 * may be NULL) is the raw payload: if it is valid UTF-8 JSON it is matched as JSON under
 * data_key, otherwise as a plain string (or, if not valid UTF-8, per the rules of §6.5). Never
 * allocates.
 *
 * F must not be NULL. REC may be NULL (or REC_LEN 0): a record without metadata, i.e. {}. REC
 * must be one JSON object: it is scanned, not validated, so malformed text gives 0 or an
 * arbitrary answer but never a read outside REC_LEN bytes. DATA is validated (it comes from
 * outside); it is ignored when the filter has no data key. Both are borrowed for the call only.
 * Uses a little over 1 KB of stack (plus a small frame per nesting level of the pattern);
 * thread-safe on a shared filter.
 */
int filter_match(const struct filter *f, const char *rec, size_t rec_len, const char *data,
                 size_t data_len);

/*
 * As filter_match, and when it returns 0, appends to WHY (if not NULL) one line per pattern
 * naming the first clause that failed, e.g. `pattern 1: body.status: "DONE" is not one of
 * ["ERROR"]` or `pattern 1: body: the payload is not JSON but the pattern expects JSON`. May
 * allocate (CLI/debug path).
 *
 * Each line ends in '\n'. Nothing is appended when the result is 1. Record values in the lines
 * are shortened to about 80 bytes. Running out of memory for WHY only shortens the text.
 */
int filter_explain(const struct filter *f, const char *rec, size_t rec_len, const char *data,
                   size_t data_len, struct buf *why);

/* The number of patterns F holds (0: F matches every record). */
size_t filter_count(const struct filter *f);

void filter_destroy(struct filter *f); /* NULL is a no-op */

#endif
