/*
 * broker/cli.h - the `switchyard` command line: run, validate, invoke, status, dlq, --help,
 * --version.
 */
#ifndef SY_CLI_H
#define SY_CLI_H

/*
 * Run the command in ARGV (ARGV[0] is the program name) and return the process exit status:
 * 0 success, 1 failure (a one-line reason on stderr), 2 usage error. `run` blocks until the
 * broker has stopped. Writes to stdout/stderr; call once per process.
 */
int cli_main(int argc, char **argv);

#endif
