/*
 * broker/cli_filter.h - the body of `switchyard filter test`: check records read from stdin
 * against filter patterns (mappings/filter.h) and say which match, and why the others do not.
 */
#ifndef SY_CLI_FILTER_H
#define SY_CLI_FILTER_H

#include <stddef.h>

/*
 * `switchyard filter test [--pattern JSON]... [--data-key KEY] [--metadata]`.
 *
 * ARGV[0] is the subcommand word ("test"); the options start at ARGV[1], as `--opt value` or
 * `--opt=value`, and `--` ends them. Every --pattern is one pattern; when there is none, the
 * PATTERNS_FROM_CONFIG (N_FROM_CONFIG NUL-terminated pattern texts, borrowed for the call; NULL
 * when N_FROM_CONFIG is 0) are used, and with neither every record matches. DATA_KEY (borrowed;
 * --data-key replaces it) names the payload member and DATA_MUST_MATCH is the payload rule of
 * filter_opts.
 *
 * Reads stdin line by line (a trailing "\r" is dropped). By default a line is one record's
 * payload, its raw bytes (JSON, text or not UTF-8 at all), with no metadata. With --metadata a
 * line is a whole record, a JSON object whose DATA_KEY member holds the payload: a string is the
 * payload's text, another value (an object...) is the payload as JSON, null or no member means
 * no payload; blank lines are skipped. Without any data key there is no payload and a line is
 * always a whole record.
 *
 * Prints on stdout one line per record, `match` or `no match`, the latter followed by
 * filter_explain()'s lines indented by two spaces; a --metadata line that is not a JSON object
 * prints `error: line N: ...` instead. Returns the exit status: 0 when every record was
 * processed (matching or not), 1 for an invalid pattern (the reason on stderr) or a record that
 * could not be read, 2 for a usage error (on stderr).
 */
int cli_filter_test(int argc, char **argv, const char *const *patterns_from_config,
                    size_t n_from_config, const char *data_key, int data_must_match);

#endif
