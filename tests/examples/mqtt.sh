#!/usr/bin/env bash
# examples/mqtt end to end, as its README drives it: mosquitto started the way it says (on a
# free loopback port, MQTT_PORT), three readings published with mosquitto_pub at QoS 1: one
# kept, one an alert, one not a reading (reported failed, retried, then its on-failure record
# in out/failures/); then a reading published while the broker is stopped, delivered after its
# restart (the persistent session).
source "$(dirname "$0")/lib.sh"
command -v mosquitto >/dev/null || fail "mosquitto is not installed (scripts/install-deps.sh)"
command -v mosquitto_pub >/dev/null || fail "mosquitto_pub is not installed (mosquitto-clients)"
copy_example mqtt

mqtt_up() { python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$MQTT_PORT"; }
for attempt in 1 2 3; do   # a free port may be taken between free_port and the bind: try again
    MQTT_PORT="$(free_port)"
    mosquitto -p "$MQTT_PORT" >"$WORK/mosquitto.log" 2>&1 &
    MQTT_PID=$!
    PIDS+=("$MQTT_PID")
    for _ in $(seq 1 50); do
        mqtt_up 2>/dev/null && break
        kill -0 "$MQTT_PID" 2>/dev/null || break
        sleep 0.1
    done
    mqtt_up 2>/dev/null && break
    [ "$attempt" -lt 3 ] || { cat "$WORK/mosquitto.log" >&2; fail "mosquitto did not start"; }
done
export MQTT_PORT
# The example's config takes the port from MQTT_PORT (default 1883).
pub() { timeout 10 mosquitto_pub -p "$MQTT_PORT" -q 1 -t "$1" -m "$2" || fail "mosquitto_pub to $1"; }

start_broker
subscribed() {   # the source is connected and subscribed once the mapping says so
    "$SY_BIN" mappings --endpoint "$ENDPOINT" | grep -q 'mqtt: running'
}
wait_for 20 "the MQTT source running (connected, subscribed)" subscribed
pub sensors/kitchen/temp '{"c": 21.5}'
pub sensors/boiler/temp '{"c": 74}'
pub sensors/attic/temp 'not json'

OUT="$EX/out"
wait_for 30 "out/kitchen.jsonl" test -f "$OUT/kitchen.jsonl"
wait_for 30 "the boiler's alert in out/alerts.jsonl" grep -q '"device": "boiler"' "$OUT/alerts.jsonl"
grep -q '"c": 21.5' "$OUT/kitchen.jsonl" || fail "out/kitchen.jsonl lacks the reading"
grep -q kitchen "$OUT/alerts.jsonl" && fail "the kitchen's 21.5 C raised an alert"
wait_for 30 "the on-failure record of the attic's payload (out/failures/)" one_file "$OUT/failures/*.json"
python3 - "$(first_file "$OUT/failures/*.json")" <<'PY' || fail "the on-failure record is wrong: $(cat "$(first_file "$OUT/failures/*.json")")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["requestContext"]["condition"] == "RetryAttemptsExhausted", r
assert r["requestContext"]["approximateInvokeCount"] == 3, r
assert "MQTTBatchInfo" in r, r
PY
[ ! -e "$OUT/attic.jsonl" ] || fail "the attic's bad payload was kept as a reading"
"$SY_BIN" mappings --endpoint "$ENDPOINT"

# The persistent session: a reading published while the broker is stopped comes after its start.
stop_broker
pub sensors/garage/temp '{"c": 30}'
start_broker
wait_for 30 "out/garage.jsonl (published while the broker was stopped)" test -f "$OUT/garage.jsonl"
[ "$(wc -l <"$OUT/kitchen.jsonl")" = 1 ] || fail "the kitchen's reading was delivered twice"
stop_broker
echo "examples/mqtt: OK"
