#!/usr/bin/env bash
# The quickstart: install packages, build, then run the broker on examples/quickstart (embedded
# defaults, no external server) and show what it does:
#   1. a file drop: a good CSV and a bad one dropped into inbox/; the good one is summarised by a
#      Python S3 handler (summary in out/summaries/) and moved to processed/; the bad one is
#      retried, moved to failed/, and its on-failure record written to out/failures/;
#   2. sync invokes of a Python and a Node function (CLI, curl on the Lambda Invoke API);
#   3. an async invoke, whose result the on_success destination writes to out/async-results/;
# then stops the broker with SIGTERM and prints the commands to try it by hand.
#
# It runs on a fresh copy of examples/quickstart in a temp dir (removed at the end; set
# SY_QS_KEEP=1 to keep it). SY_BIN=/path/to/switchyard uses that binary and skips the package
# install and the build (CI does this). Every wait is bounded: exit 0 when everything happened,
# else non-zero with what did not happen and the end of the broker's log.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

if [ -n "${SY_BIN:-}" ]; then
    SY="$SY_BIN"
else
    echo "installing packages and building (scripts/install-deps.sh, cmake) ..."
    bash scripts/install-deps.sh >/dev/null
    cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target switchyard >/dev/null
    SY="$ROOT/build/broker/switchyard"
fi
[ -x "$SY" ] || { echo "quickstart: no switchyard binary at $SY" >&2; exit 1; }

# A fresh copy of the example: earlier runs leave nothing behind that this one could mistake
# for its own results, and several runs (CI) never share a data_dir.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-quickstart.XXXXXX")"
QS="$WORK/quickstart"
mkdir -p "$QS/inbox"
cp -r "$ROOT/examples/quickstart/switchyard.yaml" "$ROOT/examples/quickstart/functions" "$QS/"
find "$QS/functions" -name __pycache__ -prune -exec rm -rf {} +
CONFIG="$QS/switchyard.yaml"
LOG="$WORK/broker.log"
PID=""

stop_broker() {   # SIGTERM, then (bounded: 15 s) wait for it; SIGKILL if it did not stop
    [ -n "$PID" ] || return 0
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 1 150); do
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$PID" 2>/dev/null; then
        echo "quickstart: the broker did not stop within 15 s of SIGTERM; killing it" >&2
        kill -KILL "$PID" 2>/dev/null || true
    fi
    local rc=0
    wait "$PID" 2>/dev/null || rc=$?
    PID=""
    return $rc
}
cleanup() {
    stop_broker || true
    if [ -n "${SY_QS_KEEP:-}" ]; then echo "kept: $QS"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
# A command that fails outside the checks below (set -e) says which one.
trap 'echo "quickstart FAILED: line $LINENO: \`$BASH_COMMAND\` exited $?" >&2' ERR

fail() {   # fail MESSAGE: say what did not happen, show the end of the logs, exit 1
    echo >&2
    echo "quickstart FAILED: $*" >&2
    echo "--- last lines of the broker's log ($LOG)" >&2
    tail -n 30 "$LOG" >&2 || true
    for f in "$QS"/.switchyard/logs/*.log; do
        [ -f "$f" ] || continue
        echo "--- last lines of $(basename "$f")" >&2
        tail -n 10 "$f" >&2
    done
    exit 1
}

# wait_for SECONDS WHAT CMD...: poll CMD every 0.1 s until it succeeds; fail after SECONDS.
wait_for() {
    local secs="$1" what="$2"
    shift 2
    local n=$((secs * 10))
    while ! "$@" >/dev/null 2>&1; do
        n=$((n - 1))
        [ $n -gt 0 ] || fail "$what did not happen within $secs s"
        if [ -n "$PID" ] && ! kill -0 "$PID" 2>/dev/null; then fail "the broker exited"; fi
        sleep 0.1
    done
}
one_file() { compgen -G "$1" >/dev/null; }           # a glob matches at least one file
first_file() { compgen -G "$1" | head -1; }
show_json() { python3 -m json.tool "$1" 2>/dev/null || cat "$1"; }
elapsed() { echo "$(( $(date +%s%N) / 1000000 - $1 )) ms"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

"$SY" validate "$CONFIG"
: >"$LOG"
"$SY" run "$CONFIG" 2>>"$LOG" &
PID=$!
wait_for 20 "the broker's ready line" grep -q "ready: control API on http://" "$LOG"
ENDPOINT="$(sed -n '/ready: control API on http:/{s/.*ready: control API on \(http:\/\/[^ ]*\).*/\1/p;q}' "$LOG")"
[ -n "$ENDPOINT" ] || fail "no endpoint in the broker's ready line"
echo "broker ready at $ENDPOINT (a copy of examples/quickstart in $QS)"

echo
echo "=== 1. File drop: inbox/ -> S3 ObjectCreated records -> csv-summary (Python)"
# A good CSV, written under a temporary name and renamed in (delivered once, as sales.csv) ...
cat >"$QS/inbox/.sales.csv.part" <<'CSV'
region,product,units,price
north,widget,12,2.50
south,widget,7,2.50
north,gadget,3,10.00
east,gadget,5,9.50
CSV
mv "$QS/inbox/.sales.csv.part" "$QS/inbox/sales.csv"
# ... and a bad one, written in place: its third line has one field too many.
printf 'region,units\nwest,4\nwest,5,oops\n' >"$QS/inbox/orders.csv"
T0="$(now_ms)"
echo "dropped inbox/sales.csv (good) and inbox/orders.csv (line 3 has 3 fields, the header 2)"

wait_for 30 "the summary of sales.csv (out/summaries/sales.csv.json)" \
    test -f "$QS/out/summaries/sales.csv.json"
wait_for 10 "the move of sales.csv to processed/ (the fs source's on_success)" \
    test -f "$QS/processed/sales.csv"
echo
echo "--- sales.csv: summarised in $(elapsed "$T0"); the handler's result, out/summaries/sales.csv.json:"
python3 - "$QS/out/summaries/sales.csv.json" <<'PY' || cat "$QS/out/summaries/sales.csv.json"
import json, sys
s = json.load(open(sys.argv[1]))
print("  %d rows, columns %s" % (s["rows"], ", ".join(s["columns"])))
for col, st in s["numeric"].items():
    print("  %-8s sum %-8g min %-8g max %-8g mean %g" % (col, st["sum"], st["min"], st["max"], st["mean"]))
PY
echo "sales.csv was moved to processed/sales.csv (source fs: on_success: move:./processed)"

wait_for 30 "the on-failure record of orders.csv (out/failures/*.json)" one_file "$QS/out/failures/*.json"
wait_for 10 "the move of orders.csv to failed/ (the fs source's on_failure)" \
    test -f "$QS/failed/orders.csv"
[ -e "$QS/inbox/orders.csv" ] && fail "orders.csv is still in inbox/ after its move to failed/"
echo
echo "--- orders.csv: failed 3 times (maximum_retry_attempts: 2), gave up after $(elapsed "$T0");"
echo "moved to failed/orders.csv (on_failure: move:./failed); its on-failure record, $(first_file "$QS/out/failures/*.json" | sed "s|$QS/||"):"
show_json "$(first_file "$QS/out/failures/*.json")"
echo "--- the handler's log (.switchyard/logs/csv-summary.log), its own lines and errors:"
grep -E 'rows,|\[ERROR\]' "$QS/.switchyard/logs/csv-summary.log" | cut -c1-160 || true

echo
echo "=== 2. Sync invokes"
echo "--- switchyard invoke hello-python"
"$SY" invoke hello-python --endpoint "$ENDPOINT" --payload '{"name": "switchyard"}' || fail "the sync invoke of hello-python"
echo
echo "--- switchyard invoke hello-node --log-tail"
"$SY" invoke hello-node --endpoint "$ENDPOINT" --payload '{"name": "node"}' --log-tail || fail "the sync invoke of hello-node"
echo
echo "--- the Lambda Invoke API with curl"
curl -sS -D - -X POST "$ENDPOINT/2015-03-31/functions/hello-python/invocations" \
    -d '{"name": "curl"}' || fail "the Invoke API call with curl"
echo

echo
echo "=== 3. Async invoke: 202 once durably queued, the result to the on_success destination"
echo "--- switchyard invoke hello-python --async (prints the request id)"
"$SY" invoke hello-python --endpoint "$ENDPOINT" --async --payload '{"name": "async"}' || fail "the async invoke of hello-python"
wait_for 15 "the async invoke's on_success record (out/async-results/*.json)" \
    one_file "$QS/out/async-results/*.json"
echo "--- its on_success record (file:./out/async-results), $(first_file "$QS/out/async-results/*.json" | sed "s|$QS/||"):"
show_json "$(first_file "$QS/out/async-results/*.json")"

echo
echo "=== status and mappings"
"$SY" status --endpoint "$ENDPOINT" || fail "switchyard status"
"$SY" mappings --endpoint "$ENDPOINT" || fail "switchyard mappings"

stop_broker || fail "the broker did not stop cleanly on SIGTERM (exit status $?)"
echo
echo "broker stopped cleanly; everything above happened."
cat <<EOF

Try it by hand, from $ROOT:
  build/broker/switchyard run examples/quickstart/switchyard.yaml      # foreground; Ctrl-C stops
In another shell:
  printf 'item,qty,price\nbolt,10,0.25\nnut,4,0.10\n' > examples/quickstart/inbox/parts.csv
  cat examples/quickstart/out/summaries/parts.csv.json                 # the summary
  ls examples/quickstart/processed examples/quickstart/failed
  printf 'a,b\n1,2,3\n' > examples/quickstart/inbox/bad.csv            # retried, then failed/
  cat examples/quickstart/out/failures/*.json                          # its on-failure record
  tail -f examples/quickstart/.switchyard/logs/csv-summary.log         # watch the handler run
  build/broker/switchyard mappings --config examples/quickstart/switchyard.yaml
  build/broker/switchyard invoke hello-python --config examples/quickstart/switchyard.yaml --async --payload '{}'
  cat examples/quickstart/out/async-results/*.json                     # the on_success record
To start over: rm -rf examples/quickstart/{.switchyard,out,processed,failed}
EOF
