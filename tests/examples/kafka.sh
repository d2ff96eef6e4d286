#!/usr/bin/env bash
# examples/kafka end to end, as its config's header drives it: the Kafka-protocol mock
# (SY_KAFKA_MOCK, build/tests/kafka_mock/sy-kafka-mock) with topics orders:3 and
# orders-failed:1, three messages produced with kcat: one processed, one reported failed
# (partial batch response) and retried until it goes to the orders-failed topic, one filtered.
source "$(dirname "$0")/lib.sh"
: "${SY_KAFKA_MOCK:?SY_KAFKA_MOCK must name build/tests/kafka_mock/sy-kafka-mock}"
command -v kcat >/dev/null || fail "kcat is not installed (scripts/install-deps.sh)"
copy_example kafka

"$SY_KAFKA_MOCK" --topic orders:3 --topic orders-failed:1 \
    --bootstrap-file "$WORK/kafka.bootstrap" </dev/null >"$WORK/kafka.out" 2>"$WORK/kafka.log" &
PIDS+=("$!")
wait_for 10 "the mock's bootstrap file" test -s "$WORK/kafka.bootstrap"
KAFKA_BOOTSTRAP="$(sed -n 's/^bootstrap=//p' "$WORK/kafka.bootstrap")"
export KAFKA_BOOTSTRAP

start_broker
produce() { echo "$1" | timeout 10 kcat -P -b "$KAFKA_BOOTSTRAP" -t orders -k "$2"; }
# One key for all three: one partition, so their order (and the retry's) is the topic's.
produce '{"type": "order", "id": 1, "amount": 20}' k || fail "kcat could not produce"
produce '{"type": "order", "id": 2, "amount": -5}' k || fail "kcat could not produce"
produce '{"type": "ping"}' k || fail "kcat could not produce"

LOGF="$EX/.switchyard/logs/orders.log"
wait_for 40 "order 1 in the handler's log" grep -q "'id': 1, 'amount': 20" "$LOGF"
failed_msg() {
    timeout 10 kcat -C -b "$KAFKA_BOOTSTRAP" -t orders-failed -e -q >"$WORK/failed.txt" 2>/dev/null &&
        [ -s "$WORK/failed.txt" ]
}
wait_for 40 "the on-failure record on topic orders-failed" failed_msg
python3 - "$WORK/failed.txt" <<'PY' || fail "the on-failure record is wrong: $(cat "$WORK/failed.txt")"
import base64, json, sys
r = json.loads(open(sys.argv[1]).readline())
assert r["requestContext"]["condition"] == "RetryAttemptsExhausted", r
assert r["requestContext"]["approximateInvokeCount"] == 3, r
assert r["KafkaBatchInfo"]["recordInfo"]["offset"] == "1", r
recs = [x for part in r["payload"]["records"].values() for x in part]
assert len(recs) == 1 and json.loads(base64.b64decode(recs[0]["value"]))["id"] == 2, r
PY
grep -q "'type': 'ping'" "$LOGF" && fail "the ping message reached the handler (not filtered)"
"$SY_BIN" mappings --endpoint "$ENDPOINT"
stop_broker
echo "examples/kafka: OK"
