"""Test handler (test_errors.c, syntax-py): this module does not compile.

The missing colon below is on purpose: importing it raises SyntaxError, which the python3 runtime
must report through /init/error as Runtime.UserCodeSyntaxError.
"""


def handler(event, context)
    return event
