"""Test handlers for the python3 runtime (tests/integration/test_*.c, `code: @HANDLERS@/python`).

Ordinary Lambda handlers, stdlib only, none of them reads `context`, so they test the runtime's
event and response path and nothing else. Each docstring says what the tests rely on.
"""
import os
import sys
import time


class HandlerError(Exception):
    """What raise_error raises: the errorType the caller sees is this class's name."""


def echo(event, context):
    """Return the event unchanged: the response body is the event re-serialised (a JSON string
    of plain ASCII, like test_limits' 6 MiB payload, comes back byte for byte)."""
    return event


def env(event, context):
    """{"env": {...}}: the whole process environment, for the tests of what a function sees."""
    return {"env": dict(os.environ)}


def pid(event, context):
    """{"pid": N}: the environment's process id, for warm reuse and process-lifetime checks."""
    return {"pid": os.getpid()}


def log(event, context):
    """Print event["message"] on stdout and stderr (one line each), then return it: the line must
    reach the X-Amz-Log-Type: Tail tail and the function log."""
    message = str(event.get("message", "hello from app.log"))
    print(message, flush=True)
    print("stderr: " + message, file=sys.stderr, flush=True)
    return {"logged": message}


def sleep(event, context):
    """Sleep event["seconds"] (default 0) and return {"pid": N, "slept": seconds}; test_errors
    uses 0 for a quick answer and 5 to outlive a 1 s timeout."""
    seconds = float(event.get("seconds", 0))
    if seconds > 0:
        time.sleep(seconds)
    return {"pid": os.getpid(), "slept": seconds}


def crash(event, context):
    """The runtime process exits mid-invocation (exit status 1, no response posted): the broker
    must report Runtime.ExitError. os._exit skips every handler the runtime might install."""
    print("crashing on purpose", flush=True)
    os._exit(1)


def _fail(message):
    raise HandlerError(message)


def raise_error(event, context):
    """Raise HandlerError(event["message"]) one call deep, so the stack trace has the handler's
    frames however many of the runtime's own frames the runtime strips."""
    message = "boom"
    if isinstance(event, dict) and "message" in event:
        message = str(event["message"])
    _fail(message)


def big(event, context):
    """A response of exactly event["bytes"] bytes once serialised: a JSON string of 'b's
    (bytes - 2 of them plus the two quotes)."""
    n = int(event["bytes"])
    return "b" * max(n - 2, 0)
