# Test handlers for the shell runtime (tests/integration/test_invoke.c, `code: @HANDLERS@/shell`).
#
# `handler: handler.echo` is the function `echo` of this file: the runtime sources it and calls
# the function with the event JSON as $1 (and on stdin); what it prints on stdout is the response.
#
# Sourcing this file shadows bash's builtin `echo`, in the runtime's own shell too, so `echo`
# behaves as the builtin does (without ever interpreting backslashes: the event's "\u00e9" and
# "\"" must survive even under `shopt -s xpg_echo`). Called with the event as $1 it prints the
# event and a newline: JSON allows the trailing whitespace, and $(...) drops it anyway.

echo() {
    case "${1-}" in
    -*) builtin echo "$@" ;; # -n, -e, -E...: leave option handling to the builtin
    *)
        local IFS=' '
        printf '%s\n' "$*"
        ;;
    esac
}
