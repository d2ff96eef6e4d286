#!/usr/bin/env bash
# examples/async-pipeline end to end, as its config's header drives it: an order that succeeds
# (its on_success record invokes `audit`, which writes it to out/audit/), and one that fails 3
# times 2 s and 4 s apart (its on_failure record in out/failed/, its dead letter in
# out/dead-letters/, and kept for `switchyard dlq`).
source "$(dirname "$0")/lib.sh"
copy_example async-pipeline
start_broker

OK_ID="$("$SY_BIN" invoke orders --endpoint "$ENDPOINT" --async --payload '{"order": 1, "amount": 20}')" ||
    fail "invoke --async (order 1)"
BAD_ID="$("$SY_BIN" invoke orders --endpoint "$ENDPOINT" --async --payload '{"order": 2, "amount": -5}')" ||
    fail "invoke --async (order 2)"
echo "queued: $OK_ID (order 1), $BAD_ID (order 2)"

wait_for 30 "order 1's on_success record written by audit (out/audit/$OK_ID.json)" \
    test -f "$EX/out/audit/$OK_ID.json"
python3 - "$EX/out/audit/$OK_ID.json" <<'PY' || fail "order 1's on_success record is wrong"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["requestContext"]["condition"] == "Success", r
assert r["responsePayload"]["status"] == "accepted" and r["requestPayload"]["order"] == 1, r
PY
wait_for 40 "order 2's on_failure record (out/failed/)" one_file "$EX/out/failed/*$BAD_ID*.json"
wait_for 10 "order 2's dead letter (out/dead-letters/)" one_file "$EX/out/dead-letters/*.json"
python3 - "$(first_file "$EX/out/failed/*$BAD_ID*.json")" "$(first_file "$EX/out/dead-letters/*.json")" <<'PY' ||
import json, sys
f = json.load(open(sys.argv[1]))
assert f["requestContext"]["condition"] == "RetriesExhausted", f
assert f["requestContext"]["approximateInvokeCount"] == 3, f
assert f["responsePayload"]["errorType"] == "InvalidOrder", f
d = json.load(open(sys.argv[2]))
assert d["body"] == {"order": 2, "amount": -5}, d
PY
    fail "order 2's failure records are wrong"
"$SY_BIN" dlq list --endpoint "$ENDPOINT" | tee "$WORK/dlq.txt"
grep -q RetriesExhausted "$WORK/dlq.txt" || fail "dlq list does not show order 2"
stop_broker
echo "examples/async-pipeline: OK"
