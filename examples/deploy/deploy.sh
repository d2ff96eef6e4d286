#!/usr/bin/env bash
# examples/deploy/deploy.sh - deploy examples/deploy/function to a running switchyard broker the
# way a CI job deploys to AWS Lambda, with the stock AWS CLI and nothing else:
#
#   1. zip the code;
#   2. create the function (first run) or update its code (later runs), and wait until the
#      update is done (the CLI's own waiters);
#   3. publish an immutable version;
#   4. point the alias `live` at it (created on the first run);
#   5. invoke `live` and print what answered.
#
# Start a broker first, e.g. the quickstart:   switchyard run examples/quickstart/switchyard.yaml
# then run:                                    examples/deploy/deploy.sh [RELEASE]
#
# ENDPOINT (default: the quickstart's, read from examples/quickstart/.switchyard/broker.json),
# FUNCTION (default: greeter) and SWITCHYARD_TOKEN (the broker's auth_token, if it has one) are
# read from the environment. Run it twice with two RELEASE names to see versions and the alias
# move; `aws lambda invoke --qualifier 1 ...` still runs the first one.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
AWS="${AWS:-/usr/bin/aws}"      # Debian's CLI (another `aws` may come first on PATH)
FUNCTION="${FUNCTION:-greeter}"
RELEASE="${1:-$(date +%Y%m%d-%H%M%S)}"
if [ -z "${ENDPOINT:-}" ]; then
    STATE="$HERE/../quickstart/.switchyard/broker.json"
    [ -f "$STATE" ] || { echo "no ENDPOINT and no running quickstart ($STATE)" >&2; exit 1; }
    ENDPOINT="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["endpoint"])' "$STATE")"
fi
# The CLI signs every request; the broker takes the access key id as its token (any value when
# it has none) and ignores the signature.
export AWS_ACCESS_KEY_ID="${SWITCHYARD_TOKEN:-local}" AWS_SECRET_ACCESS_KEY=unused
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" AWS_PAGER=""
lam() { "$AWS" lambda --endpoint-url "$ENDPOINT" --output json "$@"; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
(cd "$HERE/function" && python3 -m zipfile -c "$WORK/function.zip" app.py)
echo "package: $WORK/function.zip ($(stat -c %s "$WORK/function.zip") bytes)"

if lam get-function --function-name "$FUNCTION" >/dev/null 2>&1; then
    lam update-function-code --function-name "$FUNCTION" \
        --zip-file "fileb://$WORK/function.zip" >/dev/null
    lam wait function-updated-v2 --function-name "$FUNCTION"
    lam update-function-configuration --function-name "$FUNCTION" \
        --environment "Variables={GREETING=Hello,RELEASE=$RELEASE}" >/dev/null
    lam wait function-updated-v2 --function-name "$FUNCTION"
    echo "updated $FUNCTION"
else
    lam create-function --function-name "$FUNCTION" --runtime python3.12 \
        --role arn:aws:iam::000000000000:role/switchyard --handler app.handler \
        --environment "Variables={GREETING=Hello,RELEASE=$RELEASE}" \
        --zip-file "fileb://$WORK/function.zip" >/dev/null
    lam wait function-active-v2 --function-name "$FUNCTION"
    echo "created $FUNCTION"
fi

VERSION="$(lam publish-version --function-name "$FUNCTION" --description "$RELEASE" \
    --query Version --output text)"
echo "published version $VERSION"
if lam get-alias --function-name "$FUNCTION" --name live >/dev/null 2>&1; then
    lam update-alias --function-name "$FUNCTION" --name live --function-version "$VERSION" >/dev/null
else
    lam create-alias --function-name "$FUNCTION" --name live --function-version "$VERSION" >/dev/null
fi
echo "alias live -> version $VERSION"

lam invoke --function-name "$FUNCTION" --qualifier live --cli-binary-format raw-in-base64-out \
    --payload '{"name": "deploy"}' "$WORK/out.json" >"$WORK/meta.json"
echo "invoke $FUNCTION:live -> executed version $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ExecutedVersion"])' "$WORK/meta.json"):"
cat "$WORK/out.json"
echo
