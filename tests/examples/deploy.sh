#!/usr/bin/env bash
# examples/deploy end to end: its deploy script, run twice against a broker started from the
# quickstart, creates the function, publishes versions 1 and 2 and moves the alias; version 1
# still answers with its own release afterwards, and all of it survives a restart.
source "$(dirname "$0")/lib.sh"
copy_example quickstart
start_broker
export ENDPOINT
AWS=/usr/bin/aws
[ -x "$AWS" ] || fail "Debian's AWS CLI (/usr/bin/aws) is not installed"
FUNCTION=greeter bash "$SRC/examples/deploy/deploy.sh" first | tee "$WORK/first.txt"
grep -q 'published version 1' "$WORK/first.txt" || fail "the first run did not publish version 1"
grep -q '"release": "first"' "$WORK/first.txt" || fail "live did not answer with release first"
FUNCTION=greeter bash "$SRC/examples/deploy/deploy.sh" second | tee "$WORK/second.txt"
grep -q 'published version 2' "$WORK/second.txt" || fail "the second run did not publish version 2"
grep -q '"release": "second"' "$WORK/second.txt" || fail "live did not move to release second"
export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=unused AWS_DEFAULT_REGION=us-east-1 AWS_PAGER=""
check_v1() {
    "$AWS" lambda --endpoint-url "$ENDPOINT" invoke --function-name greeter --qualifier 1 \
        --cli-binary-format raw-in-base64-out --payload "{}" \
        "$WORK/v1.json" >/dev/null || fail "invoke greeter:1"
    grep -q "\"release\": \"first\"" "$WORK/v1.json" || fail "greeter:1 does not run release first: $(cat "$WORK/v1.json")"
}
check_v1
stop_broker
start_broker
check_v1
stop_broker
echo "examples/deploy: OK"
