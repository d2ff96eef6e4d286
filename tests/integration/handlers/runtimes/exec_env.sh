# Integration-test fixture for test_lambda_runtimes (tests/integration/handlers/runtimes), for the
# shell runtime.
#
# handler exec_env.show: {"exec_env": AWS_EXECUTION_ENV or null}.
show() {
    if [[ -v AWS_EXECUTION_ENV ]]; then
        printf '{"exec_env": "%s"}\n' "${AWS_EXECUTION_ENV//[\"\\]/}"
    else
        printf '{"exec_env": null}\n'
    fi
}
