"""Integration-test fixture for test_lambda_runtimes (tests/integration/handlers/runtimes).

handler: what the function is told about its runtime and what actually runs it:
{"exec_env": AWS_EXECUTION_ENV or null, "version": [major, minor] of this Python}.
"""
import os
import sys


def handler(event, context):
    return {
        "exec_env": os.environ.get("AWS_EXECUTION_ENV"),
        "version": [sys.version_info[0], sys.version_info[1]],
    }
