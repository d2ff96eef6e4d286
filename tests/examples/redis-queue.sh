#!/usr/bin/env bash
# examples/redis-queue end to end, as its config's header drives it: a redis-server started the
# way it says (on a free loopback port, REDIS_PORT), three jobs LPUSHed: one processed, one
# reported as failed (partial batch response) until max_receive_count sends it to the dead
# letter list, one filtered out.
source "$(dirname "$0")/lib.sh"
copy_example redis-queue

redis_up() { redis-cli -p "$REDIS_PORT" ping | grep -q PONG; }
for attempt in 1 2 3; do   # a free port may be taken between free_port and the bind: try again
    REDIS_PORT="$(free_port)"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$WORK" >"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    for _ in $(seq 1 50); do
        redis_up 2>/dev/null && break
        kill -0 "$REDIS_PID" 2>/dev/null || break
        sleep 0.1
    done
    redis_up 2>/dev/null && break
    [ "$attempt" -lt 3 ] || { cat "$WORK/redis.log" >&2; fail "redis-server did not start"; }
done
export REDIS_PORT
R() { redis-cli -p "$REDIS_PORT" "$@"; }

start_broker
R LPUSH orders '{"type": "order", "id": 1, "amount": 20}' >/dev/null
R LPUSH orders '{"type": "order", "id": 2, "amount": -5}' >/dev/null
R LPUSH orders '{"type": "ping"}' >/dev/null

LOGF="$EX/.switchyard/logs/orders.log"
wait_for 30 "order 1 processed (the handler's log)" grep -q 'order 1: 20 processed' "$LOGF"
dead_one() { [ "$(R LLEN orders-dead)" = 1 ]; }
wait_for 30 "order 2 in the dead letter list orders-dead" dead_one
R LRANGE orders-dead 0 -1 >"$WORK/dead.txt"
grep -q '"body":{"type":"order","id":2' "$WORK/dead.txt" || fail "the dead letter is not order 2: $(cat "$WORK/dead.txt")"
ran_3_times() { [ "$(grep -c 'order 2: negative amount' "$LOGF")" = 3 ]; }
wait_for 5 "order 2's three runs in the handler's log" ran_3_times   # the log may lag a little
grep -q ping "$LOGF" && fail "the ping job reached the handler (not filtered)"
M='{mapping="orders",function="orders"}'
filtered_one() { [ "$(metric "switchyard_mapping_records_filtered_total$M")" = 1 ]; }
wait_for 10 "one record filtered" filtered_one
[ "$(R LLEN orders)" = 0 ] || fail "jobs left in the orders list"
"$SY_BIN" mappings --endpoint "$ENDPOINT"
stop_broker
echo "examples/redis-queue: OK"
