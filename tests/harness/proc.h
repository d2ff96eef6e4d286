/*
 * tests/harness/proc.h - child processes for the integration tests: spawning a long-running
 * server (the broker) with its output in a file, running a command to completion with captured
 * stdout/stderr and a deadline (the switchyard CLI, the AWS CLI), and finding processes the
 * server under test left behind.
 *
 * The test process makes itself a child subreaper (h_proc_init), so an environment orphaned by
 * a broker that died is re-parented to the test and can be found and killed at teardown. Every
 * spawned child gets PR_SET_PDEATHSIG(SIGKILL), so a test killed by ctest's timeout does not
 * leave a broker running. Spawn from the main thread only (the death signal follows the thread
 * that forked).
 */
#ifndef SY_HARNESS_PROC_H
#define SY_HARNESS_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Make this process a child subreaper and ignore SIGPIPE. Idempotent; call before spawning. */
void h_proc_init(void);

/* A spawned child. */
struct h_proc {
    pid_t pid;   /* 0 when nothing was spawned */
    bool reaped; /* waitpid() collected it; status is valid */
    int status;  /* raw wait status */
};

/*
 * Start ARGV (argv[0] looked up in PATH) with stdin from /dev/null and stdout + stderr appended
 * to OUT_PATH, in directory CWD (NULL: ours). ENV (NULL-terminated, may be NULL) edits a copy of
 * our environment: "NAME=VALUE" sets, "NAME" alone removes. The child runs in a process group
 * of its own. Returns 0 (P filled) or -1 when fork/exec failed (exec errors reach the caller
 * through a close-on-exec pipe).
 */
int h_proc_spawn(struct h_proc *p, char *const argv[], const char *const env[], const char *cwd,
                 const char *out_path);

/*
 * As h_proc_spawn(), but the child's stdin and stdout are pipes to us: *TO_CHILD gets the write
 * end of its stdin and *FROM_CHILD the read end of its stdout (both blocking and close-on-exec;
 * the caller closes them), and its stderr is appended to ERR_PATH. For servers driven by line
 * commands (sy-kafka-mock). Returns 0, or -1 with both set to -1.
 */
int h_proc_spawn_piped(struct h_proc *p, char *const argv[], const char *const env[],
                       const char *cwd, const char *err_path, int *to_child, int *from_child);

/*
 * Wait up to TIMEOUT_MS for P to exit. Returns 0 when it has exited (P->status valid), -1 when
 * it is still running at the deadline.
 */
int h_proc_wait(struct h_proc *p, int timeout_ms);

/*
 * Send SIG to P, wait up to GRACE_MS, then SIGKILL it and wait. Returns 0 when it exited within
 * the grace period, 1 when it needed SIGKILL, -1 if it was not running. No-op on a reaped or
 * never-spawned P (returns 0).
 */
int h_proc_stop(struct h_proc *p, int sig, int grace_ms);

/* Exit code of a reaped P, 128+N when killed by signal N, -1 when not reaped. */
int h_proc_exit_code(const struct h_proc *p);

/* True when PID exists and is not a zombie. */
bool h_pid_alive(pid_t pid);

/*
 * Strays: children of this process other than the ones in KEEP (N_KEEP entries, may be NULL)
 * and the ones h_proc_spawn() started that were not reaped yet, i.e. processes adopted as
 * subreaper (environments of a broker that exited). Waits up to GRACE_MS for live strays to
 * exit by themselves, then kills (SIGKILL, the pid and its process group) and reaps the rest.
 * Zombies are reaped and not counted. Returns how many live strays had to be killed; each is
 * printed on stderr. Main thread only.
 */
int h_proc_kill_strays(const pid_t *keep, size_t n_keep, int grace_ms);

/* The outcome of h_proc_run(). */
struct h_run {
    int code;       /* exit code; 128+N when killed by signal N; -1 on timeout or spawn failure */
    bool timed_out; /* the deadline passed and the process group was killed */
    char *out;      /* stdout, NUL-terminated (never NULL after h_proc_run) */
    size_t out_len;
    char *err; /* stderr, NUL-terminated (never NULL after h_proc_run) */
    size_t err_len;
};

/*
 * Run ARGV to completion with ENV (as for h_proc_spawn) in CWD (NULL: ours), stdin from
 * /dev/null, capturing stdout and stderr. After TIMEOUT_MS the process group is SIGKILLed.
 * Returns R->code. Always fills R; free it with h_run_free(). Main thread only.
 */
int h_proc_run(char *const argv[], const char *const env[], const char *cwd, int timeout_ms,
               struct h_run *r);

/* Free what h_proc_run() allocated in R. */
void h_run_free(struct h_run *r);

#endif
