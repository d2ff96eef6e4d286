# tests/examples/lib.sh - sourced by the end-to-end example tests (tests/examples/NAME.sh), which
# ctest runs with SY_BIN (the switchyard binary) and SY_SOURCE_DIR (the repository) set.
#
# Each test copies examples/NAME to a temp dir of its own (so runs never share a data_dir and
# never leave files in the tree), starts the servers the example's README names on free
# loopback ports, then the broker, drives the example and checks what comes out. Every wait is
# bounded (wait_for); every process it starts is stopped by its PID (SIGTERM, then SIGKILL after
# 10 s), and the temp dir removed, on any exit.
set -euo pipefail

: "${SY_BIN:?SY_BIN must name the switchyard binary}"
SRC="${SY_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sy-example.XXXXXX")"
PIDS=()          # every process started here, stopped in reverse order at exit
BROKER_PID=""
BROKER_LOG=""     # the log of the last start (start_broker)
EX=""            # the example's copy
ENDPOINT=""

stop_pid() {   # stop_pid PID: SIGTERM, wait (bounded, 10 s), then SIGKILL; returns its status
    local pid="$1" rc=0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "process $pid did not stop within 10 s of SIGTERM: killed" >&2
        kill -KILL "$pid" 2>/dev/null || true
        rc=1
    fi
    wait "$pid" 2>/dev/null || rc=$?
    return $rc
}

ex_cleanup() {
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${PIDS[$i]}" || true
    done
    if [ -n "${SY_KEEP:-}" ]; then echo "kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap ex_cleanup EXIT
# A command that fails outside the checks (set -e) says which one, rather than exiting silently.
trap 'echo "FAILED: ${BASH_SOURCE[0]}:$LINENO: \`$BASH_COMMAND\` exited $?" >&2' ERR

fail() {
    echo "FAILED: $*" >&2
    if [ -n "$BROKER_LOG" ] && [ -f "$BROKER_LOG" ]; then
        echo "--- broker log (last 40 lines)" >&2
        tail -n 40 "$BROKER_LOG" >&2
    fi
    if [ -n "$EX" ]; then
        for f in "$EX"/.switchyard/logs/*.log; do
            [ -f "$f" ] || continue
            echo "--- $(basename "$f") (last 15 lines)" >&2
            tail -n 15 "$f" >&2
        done
    fi
    exit 1
}

# wait_for SECONDS WHAT CMD...: poll CMD every 0.1 s until it succeeds; fail after SECONDS.
wait_for() {
    local secs="$1" what="$2" n
    shift 2
    n=$((secs * 10))
    while ! "$@" >/dev/null 2>&1; do
        n=$((n - 1))
        [ "$n" -gt 0 ] || fail "$what: not within $secs s"
        if [ -n "$BROKER_PID" ] && ! kill -0 "$BROKER_PID" 2>/dev/null; then
            fail "$what: the broker exited"
        fi
        sleep 0.1
    done
}

one_file() { compgen -G "$1" >/dev/null; }
first_file() { compgen -G "$1" | head -1; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# copy_example NAME: a fresh copy of examples/NAME (without any state of earlier runs) in $EX.
copy_example() {
    EX="$WORK/$1"
    mkdir -p "$EX"
    (cd "$SRC/examples/$1" && tar --exclude=.switchyard --exclude=out --exclude=__pycache__ \
        --exclude=done --exclude=failed --exclude=processed -cf - .) | tar -C "$EX" -xf -
}

# start_broker: validate and run $EX/switchyard.yaml; waits for the ready line, sets ENDPOINT.
start_broker() {
    "$SY_BIN" validate "$EX/switchyard.yaml" || fail "switchyard validate"
    # A new log per start, made before the fork: the child's `2>` could truncate an old one
    # after the wait below already read its ready line.
    BROKER_STARTS=$((${BROKER_STARTS:-0} + 1))
    BROKER_LOG="$WORK/broker.$BROKER_STARTS.log"
    : >"$BROKER_LOG"
    "$SY_BIN" run "$EX/switchyard.yaml" 2>>"$BROKER_LOG" &
    BROKER_PID=$!
    PIDS+=("$BROKER_PID")
    wait_for 20 "the broker's ready line" grep -q "ready: control API on http://" "$BROKER_LOG"
    ENDPOINT="$(sed -n '/ready: control API on http:/{s/.*ready: control API on \(http:\/\/[^ ]*\).*/\1/p;q}' "$BROKER_LOG")"
    [ -n "$ENDPOINT" ] || fail "no endpoint in the broker's ready line"
    echo "broker ready at $ENDPOINT"
}

# stop_broker: SIGTERM, and it must exit 0 (a clean drain) within 10 s.
stop_broker() {
    local pid="$BROKER_PID"
    BROKER_PID=""
    stop_pid "$pid" || fail "the broker did not stop cleanly on SIGTERM"
    PIDS=("${PIDS[@]/$pid/}")
}

# metric NAME_AND_LABELS: the value of one /metrics series ("" when absent).
metric() {
    curl -sS --max-time 5 "$ENDPOINT/metrics" | awk -v k="$1" '$1 == k {print $2}'
}
