# A handler for the config tests: only its directory matters to them.
handle() {
    cat
}
