#!/usr/bin/env bash
# The quickstart: install packages, build, start the broker on examples/quickstart (embedded
# defaults, no external server), invoke its Python and Node functions through the Lambda
# Invoke API and the CLI, then stop the broker with SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

bash scripts/install-deps.sh >/dev/null
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target switchyard >/dev/null
SY="$ROOT/build/broker/switchyard"
CONFIG="$ROOT/examples/quickstart/switchyard.yaml"

"$SY" validate "$CONFIG"

LOG="$(mktemp)"
"$SY" run "$CONFIG" 2>"$LOG" &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -f "$LOG"' EXIT

# Wait (bounded) for the ready line, then take the endpoint from it.
for _ in $(seq 1 100); do
    if grep -q "ready: control API on" "$LOG"; then break; fi
    if ! kill -0 $PID 2>/dev/null; then cat "$LOG"; echo "broker exited"; exit 1; fi
    sleep 0.1
done
ENDPOINT="$(grep -o 'ready: control API on http://[^ ]*' "$LOG" | head -1 | sed 's/.* on //')"
echo "broker ready at $ENDPOINT"

echo "--- switchyard invoke hello-python"
"$SY" invoke hello-python --endpoint "$ENDPOINT" --payload '{"name": "switchyard"}'
echo
echo "--- switchyard invoke hello-node --log-tail"
"$SY" invoke hello-node --endpoint "$ENDPOINT" --payload '{"name": "node"}' --log-tail
echo
echo "--- the Lambda Invoke API with curl"
curl -sS -D - -X POST "$ENDPOINT/2015-03-31/functions/hello-python/invocations" \
    -d '{"name": "curl"}'
echo
echo "--- switchyard invoke hello-python --async (202 once durably queued; prints the request id)"
"$SY" invoke hello-python --endpoint "$ENDPOINT" --async --payload '{"name": "async"}'
for _ in $(seq 1 100); do   # wait (bounded, 10 s) until the queued event has run
    if curl -sS "$ENDPOINT/healthz" | grep -q '"succeeded":1'; then break; fi
    sleep 0.1
done
echo
echo "--- status"
"$SY" status --endpoint "$ENDPOINT"

kill -TERM $PID
wait $PID
trap - EXIT
rm -f "$LOG"
echo "broker stopped cleanly"
