#!/usr/bin/env bash
# examples/file-drop end to end, as its README drives it: a CSV written in place (Put), one
# written under an ignored name and renamed in (Copy), one in a subdirectory (recursive), a
# non-CSV (suffix rule: never taken) and a bad one; then the summaries in out/, the files in
# done/, the bad one in failed/ with its on-failure record in out/failures/.
source "$(dirname "$0")/lib.sh"
copy_example file-drop
start_broker
IN="$EX/inbox"

printf 'city,amount\nParis,20\nLyon,5\nParis,1.5\n' >"$IN/sales.csv"
printf 'city,amount\nNice,7\n' >"$IN/.more.part"
mv "$IN/.more.part" "$IN/more.csv"
mkdir "$IN/2026"
printf 'city,amount\nLille,2\n' >"$IN/2026/q1 sales.csv"
printf 'not a csv\n' >"$IN/notes.txt"
printf 'city,amount\nParis,lots\n' >"$IN/bad.csv"

wait_for 30 "out/sales.csv.summary.json" test -f "$EX/out/sales.csv.summary.json"
wait_for 30 "out/more.csv.summary.json" test -f "$EX/out/more.csv.summary.json"
wait_for 30 "out/2026_q1 sales.csv.summary.json" test -f "$EX/out/2026_q1 sales.csv.summary.json"
wait_for 10 "done/sales.csv, done/more.csv, done/2026/q1 sales.csv" \
    test -f "$EX/done/sales.csv" -a -f "$EX/done/more.csv" -a -f "$EX/done/2026/q1 sales.csv"
python3 - "$EX/out" <<'PY' || fail "the summaries are wrong"
import json, os, sys
out = sys.argv[1]
s = json.load(open(os.path.join(out, "sales.csv.summary.json")))
assert s["key"] == "sales.csv" and s["bucket"] == "inbox", s
assert s["totals"] == {"Paris": 21.5, "Lyon": 5.0}, s
assert len(s["eTag"]) == 32, s
m = json.load(open(os.path.join(out, "more.csv.summary.json")))
assert m["totals"] == {"Nice": 7.0}, m
q = json.load(open(os.path.join(out, "2026_q1 sales.csv.summary.json")))
assert q["key"] == "2026/q1 sales.csv" and q["totals"] == {"Lille": 2.0}, q
PY
LOGF="$EX/.switchyard/logs/csv-summary.log"
grep -q 'sales.csv: 2 cities' "$LOGF" || fail "the handler's line for sales.csv is not in its log"

wait_for 30 "failed/bad.csv" test -f "$EX/failed/bad.csv"
wait_for 10 "the on-failure record in out/failures/" one_file "$EX/out/failures/*.json"
python3 - "$(first_file "$EX/out/failures/*.json")" <<'PY' || fail "the on-failure record is wrong"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["requestContext"]["condition"] == "RetryAttemptsExhausted", r
assert r["requestContext"]["approximateInvokeCount"] == 3, r
assert r["responseContext"]["errorType"] == "ValueError", r
assert r["FileBatchInfo"]["keys"] == ["bad.csv"], r
PY
[ ! -e "$IN/bad.csv" ] || fail "bad.csv is still in inbox/"
[ -f "$IN/notes.txt" ] || fail "notes.txt (not .csv) was taken"
[ "$(metric 'switchyard_mapping_records_delivered_total{mapping="uploads",function="csv-summary"}')" = 3 ] ||
    fail "records delivered is not 3"
[ "$(metric 'switchyard_mapping_records_failed_total{mapping="uploads",function="csv-summary"}')" = 1 ] ||
    fail "records failed is not 1"
"$SY_BIN" mappings --endpoint "$ENDPOINT"

# Catch-up: a file dropped while the broker is down is delivered at the next start.
stop_broker
printf 'city,amount\nNantes,3\n' >"$IN/late.csv"
start_broker
wait_for 30 "out/late.csv.summary.json (catch-up after a restart)" test -f "$EX/out/late.csv.summary.json"
wait_for 10 "done/late.csv" test -f "$EX/done/late.csv"
stop_broker
echo "examples/file-drop: OK"
