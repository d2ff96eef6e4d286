#!/usr/bin/env bash
# switchyard shell runtime: the AWS Lambda Runtime API client loop for bash handlers.
#
# Started by the broker (dispatcher/env.c) as `bash runtimes/shell/bootstrap.sh` with the working
# directory set to the function's code directory and the Lambda environment variables set
# (_HANDLER, LAMBDA_TASK_ROOT, AWS_LAMBDA_RUNTIME_API, ...). Needs bash >= 4.3 and curl.
#
# Handler `file.function`: $LAMBDA_TASK_ROOT/file.sh (or `file` when that exists and file.sh
# does not) is sourced once at INIT, and `function` must then be a shell function. Per invoke
# the function runs in a subshell with the event as "$1" and on stdin; what it writes to stdout
# is the response body, sent as-is. Its stderr is the function's log (it reaches the broker and
# is also kept to describe a failure). A non-zero exit status is reported as an error of type
# Runtime.HandlerError whose message is the last non-empty stderr line (or "exit status N").
#
# Per invoke the function sees these variables (named after the Runtime API headers):
#   LAMBDA_RUNTIME_AWS_REQUEST_ID, LAMBDA_RUNTIME_DEADLINE_MS, LAMBDA_RUNTIME_INVOKED_FUNCTION_ARN,
#   LAMBDA_RUNTIME_TRACE_ID (also exported as _X_AMZN_TRACE_ID), LAMBDA_RUNTIME_CLIENT_CONTEXT,
#   LAMBDA_RUNTIME_COGNITO_IDENTITY.
#
# Every name of the runtime starts with __sy_ / __SY_ so that sourced user code does not clash.

__SY_API="http://${AWS_LAMBDA_RUNTIME_API:?AWS_LAMBDA_RUNTIME_API is not set}/2018-06-01/runtime"
__SY_ROOT="${LAMBDA_TASK_ROOT:-$PWD}"
__SY_HANDLER="${_HANDLER:-}"
__SY_TMP="$(mktemp -d "${TMPDIR:-/tmp}/sy-shell-rt.XXXXXX")" || {
    echo "switchyard shell runtime: cannot create a temporary directory" >&2
    exit 1
}
__SY_CHILD=""
__sy_cleanup() { rm -rf -- "$__SY_TMP"; }
# Long waits (curl on `next`, the handler) run in the background under `wait`, which a trapped
# signal interrupts at once; the trap takes that child down too.
__sy_on_signal() {
    [[ -n $__SY_CHILD ]] && kill "$__SY_CHILD" 2>/dev/null
    exit "$1"
}
trap __sy_cleanup EXIT
trap '__sy_on_signal 143' TERM
trap '__sy_on_signal 130' INT

# JSON string literal (with quotes) of $1, on stdout, without a trailing newline.
__sy_json_str() {
    local s=$1 i c
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\r'/\\r}
    s=${s//$'\t'/\\t}
    s=${s//$'\b'/\\b}
    s=${s//$'\f'/\\f}
    if [[ $s == *[$'\x01'-$'\x1f']* ]]; then
        for ((i = 1; i < 32; i++)); do
            # shellcheck disable=SC2059 # the format is the escape itself
            printf -v c "\\x$(printf '%02x' "$i")"
            s=${s//"$c"/$(printf '\\u%04x' "$i")}
        done
    fi
    printf '"%s"' "$s"
}

# Error body {errorMessage, errorType, stackTrace} for type $1, message $2, trace lines $3...
__sy_error_json() {
    local type=$1 msg=$2 sep="" line
    shift 2
    printf '{"errorMessage":%s,"errorType":%s,"stackTrace":[' "$(__sy_json_str "$msg")" "$(__sy_json_str "$type")"
    for line in "$@"; do
        printf '%s%s' "$sep" "$(__sy_json_str "$line")"
        sep=,
    done
    printf ']}'
}

# POST file $2 to path $1 with the error-type header $3 (optional). Prints the HTTP status.
__sy_post() {
    local args=(-sS -o /dev/null -w '%{http_code}' -X POST -H 'Expect:' -H 'Content-Type: application/json')
    [[ -n ${3:-} ]] && args+=(-H "Lambda-Runtime-Function-Error-Type: $3")
    curl "${args[@]}" --data-binary "@$2" "$__SY_API$1"
}

__sy_init_error() {
    local type=$1 msg=$2
    shift 2
    printf '[ERROR] %s: %s\n' "$type" "$msg" >&2
    __sy_error_json "$type" "$msg" "$@" >"$__SY_TMP/init_error"
    __sy_post /init/error "$__SY_TMP/init_error" "$type" >/dev/null
    exit 1
}

# ---- INIT --------------------------------------------------------------------------------------

if [[ $__SY_HANDLER != *.* || $__SY_HANDLER == .* || $__SY_HANDLER == *. ]]; then
    __sy_init_error Runtime.MalformedHandlerName "Bad handler '$__SY_HANDLER': expected file.function"
fi
__SY_FILE_PART=${__SY_HANDLER%.*}
__SY_FUNC=${__SY_HANDLER##*.}
if [[ -f "$__SY_ROOT/$__SY_FILE_PART.sh" ]]; then
    __SY_FILE="$__SY_ROOT/$__SY_FILE_PART.sh"
elif [[ -f "$__SY_ROOT/$__SY_FILE_PART" ]]; then
    __SY_FILE="$__SY_ROOT/$__SY_FILE_PART"
else
    __sy_init_error Runtime.ImportModuleError \
        "Unable to import module '$__SY_FILE_PART': no file $__SY_FILE_PART.sh or $__SY_FILE_PART in $__SY_ROOT"
fi
if ! bash -n "$__SY_FILE" 2>"$__SY_TMP/syntax"; then
    mapfile -t __SY_LINES <"$__SY_TMP/syntax"
    cat "$__SY_TMP/syntax" >&2
    __sy_init_error Runtime.UserCodeSyntaxError \
        "Syntax error in module '$__SY_FILE_PART': ${__SY_LINES[0]:-bash -n failed}" "${__SY_LINES[@]}"
fi

# The user's file may change shell options (set -euo pipefail is common): remember what it sets
# for its function, and restore the runtime's own afterwards.
__SY_OWN_OPTS=$(set +o)
__SY_OWN_SHOPT=$(shopt -p)
# shellcheck disable=SC1090
source "$__SY_FILE" </dev/null
__SY_USER_OPTS=$(set +o)
__SY_USER_SHOPT=$(shopt -p)
eval "$__SY_OWN_OPTS"
eval "$__SY_OWN_SHOPT"
trap __sy_cleanup EXIT
trap '__sy_on_signal 143' TERM
trap '__sy_on_signal 130' INT

if ! declare -F -- "$__SY_FUNC" >/dev/null; then
    __sy_init_error Runtime.HandlerNotFound "Handler '$__SY_FUNC' missing on module '$__SY_FILE_PART'"
fi

# ---- invoke loop -------------------------------------------------------------------------------

# A FIFO nobody writes to: `read -t` on it is a sleep without forking.
mkfifo "$__SY_TMP/sleep"
exec {__SY_SLEEP_FD}<>"$__SY_TMP/sleep"
__SY_FIFO=""
__SY_FIFO_N=0

# Set the LAMBDA_RUNTIME_* variables from the headers curl saved in file $1 (one pass, no fork).
__sy_read_headers() {
    local line key value
    LAMBDA_RUNTIME_AWS_REQUEST_ID="" LAMBDA_RUNTIME_DEADLINE_MS="" LAMBDA_RUNTIME_INVOKED_FUNCTION_ARN=""
    LAMBDA_RUNTIME_TRACE_ID="" LAMBDA_RUNTIME_CLIENT_CONTEXT="" LAMBDA_RUNTIME_COGNITO_IDENTITY=""
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%$'\r'}
        [[ $line == *:* ]] || continue
        key=${line%%:*}
        value=${line#*:}
        value=${value#"${value%%[![:space:]]*}"}
        case ${key,,} in
        lambda-runtime-aws-request-id) LAMBDA_RUNTIME_AWS_REQUEST_ID=$value ;;
        lambda-runtime-deadline-ms) LAMBDA_RUNTIME_DEADLINE_MS=$value ;;
        lambda-runtime-invoked-function-arn) LAMBDA_RUNTIME_INVOKED_FUNCTION_ARN=$value ;;
        lambda-runtime-trace-id) LAMBDA_RUNTIME_TRACE_ID=$value ;;
        lambda-runtime-client-context) LAMBDA_RUNTIME_CLIENT_CONTEXT=$value ;;
        lambda-runtime-cognito-identity) LAMBDA_RUNTIME_COGNITO_IDENTITY=$value ;;
        esac
    done <"$1"
}

__sy_run() {
    local event=""
    trap - EXIT TERM INT
    IFS= read -r -d '' event <"$__SY_TMP/event"
    eval "$__SY_USER_OPTS"
    eval "$__SY_USER_SHOPT"
    "$__SY_FUNC" "$event"
}

while true; do
    : >"$__SY_TMP/headers"
    curl -sS -D "$__SY_TMP/headers" -o "$__SY_TMP/event" -w '%{http_code}' \
        "$__SY_API/invocation/next" >"$__SY_TMP/status" </dev/null &
    __SY_CHILD=$!
    wait "$__SY_CHILD" || {
        echo "switchyard shell runtime: lost the Runtime API at $AWS_LAMBDA_RUNTIME_API" >&2
        exit 1
    }
    __SY_CHILD=""
    __SY_STATUS=""
    read -r __SY_STATUS <"$__SY_TMP/status"
    if [[ $__SY_STATUS != 200 ]]; then
        echo "switchyard shell runtime: GET invocation/next answered $__SY_STATUS" >&2
        exit 1
    fi
    __sy_read_headers "$__SY_TMP/headers"
    __SY_ID=$LAMBDA_RUNTIME_AWS_REQUEST_ID
    if [[ -z $__SY_ID ]]; then
        echo "switchyard shell runtime: invocation/next response without a request id" >&2
        exit 1
    fi
    export LAMBDA_RUNTIME_AWS_REQUEST_ID LAMBDA_RUNTIME_DEADLINE_MS LAMBDA_RUNTIME_INVOKED_FUNCTION_ARN \
        LAMBDA_RUNTIME_TRACE_ID LAMBDA_RUNTIME_CLIENT_CONTEXT LAMBDA_RUNTIME_COGNITO_IDENTITY
    if [[ -n $LAMBDA_RUNTIME_TRACE_ID ]]; then
        export _X_AMZN_TRACE_ID=$LAMBDA_RUNTIME_TRACE_ID
    else
        unset _X_AMZN_TRACE_ID
    fi

    # stderr goes through tee: to the broker (live) and to a file (for the error message).
    # The FIFO is reused unless an earlier tee still holds it (see below).
    if [[ ! -p $__SY_FIFO ]]; then
        __SY_FIFO="$__SY_TMP/errfifo.$((++__SY_FIFO_N))"
        mkfifo "$__SY_FIFO"
    fi
    # A fresh response file: a process left over from an earlier invoke may still write to the
    # old one.
    rm -f "$__SY_TMP/out"
    tee "$__SY_TMP/stderr" <"$__SY_FIFO" >&2 &
    __SY_TEE=$!
    (__sy_run) <"$__SY_TMP/event" >"$__SY_TMP/out" 2>"$__SY_FIFO" &
    __SY_CHILD=$!
    wait "$__SY_CHILD"
    __SY_RC=$?
    __SY_CHILD=""
    # tee ends when the last writer closes the FIFO. A background process the handler left
    # behind may keep it open: then stop waiting after 250 ms and leave that tee forwarding its
    # output (it holds the old FIFO; the next invoke makes a new one).
    for ((__sy_i = 0; __sy_i < 125; __sy_i++)); do
        kill -0 "$__SY_TEE" 2>/dev/null || break
        read -r -t 0.002 -u "$__SY_SLEEP_FD" __SY_NOTHING
    done
    if kill -0 "$__SY_TEE" 2>/dev/null; then
        # Leave the FIFO and the stderr file to the lingering tee; the next invoke makes new ones.
        rm -f "$__SY_FIFO" "$__SY_TMP/stderr"
    fi

    if ((__SY_RC == 0)); then
        __SY_STATUS=$(__sy_post "/invocation/$__SY_ID/response" "$__SY_TMP/out")
    else
        __SY_MSG=""
        mapfile -t __SY_LINES <"$__SY_TMP/stderr"
        for ((__sy_i = ${#__SY_LINES[@]} - 1; __sy_i >= 0; __sy_i--)); do
            __SY_LINE=${__SY_LINES[__sy_i]%$'\r'}
            if [[ $__SY_LINE == *[![:space:]]* ]]; then
                __SY_MSG=$__SY_LINE
                break
            fi
        done
        [[ -n $__SY_MSG ]] || __SY_MSG="exit status $__SY_RC"
        # The stack trace: the last (at most 20) lines of stderr.
        __SY_FROM=$((${#__SY_LINES[@]} > 20 ? ${#__SY_LINES[@]} - 20 : 0))
        __sy_error_json Runtime.HandlerError "$__SY_MSG" "${__SY_LINES[@]:__SY_FROM}" >"$__SY_TMP/error"
        printf '[ERROR] Runtime.HandlerError: %s (exit status %d)\n' "$__SY_MSG" "$__SY_RC" >&2
        __SY_STATUS=$(__sy_post "/invocation/$__SY_ID/error" "$__SY_TMP/error" Runtime.HandlerError)
    fi
    case $__SY_STATUS in
    202) ;;
    413) echo "switchyard shell runtime: response for $__SY_ID was rejected as too large" >&2 ;;
    000) echo "switchyard shell runtime: lost the Runtime API at $AWS_LAMBDA_RUNTIME_API" >&2; exit 1 ;;
    *) echo "switchyard shell runtime: Runtime API answered $__SY_STATUS for $__SY_ID" >&2 ;;
    esac
done
