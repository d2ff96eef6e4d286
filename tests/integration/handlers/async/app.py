"""Integration-test fixture for test_async (tests/integration/handlers/async).

Handlers record their side effects as files so the test can count them without timing guesses:

record(event): creates DIR/<n> (event {"dir": DIR, "n": N}) holding the request id, once per
    attempt (a second attempt of the same event overwrites the same file: the test counts
    distinct n, i.e. at-least-once). Returns {"n": N}.
flaky(event): appends "<time> <request id>" to DIR/attempts-<key> for each attempt, then raises
    FlakyError unless DIR/fixed exists (event {"dir": DIR, "key": K}).
"""
import os
import time


class FlakyError(Exception):
    pass


def _write(path, text):
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def record(event, context):
    _write(os.path.join(event["dir"], str(event["n"])), context.aws_request_id)
    return {"n": event["n"]}


def flaky(event, context):
    d = event["dir"]
    with open(os.path.join(d, "attempts-%s" % event["key"]), "a") as f:
        f.write("%.3f %s\n" % (time.time(), context.aws_request_id))
    if not os.path.exists(os.path.join(d, "fixed")):
        raise FlakyError("not fixed yet: %s" % event["key"])
    return {"fixed": event["key"]}


def sink(event, context):
    """Writes the whole event to $SINK_DIR/<request id>.json: the target of a function:
    destination, so the test can read the destination record it received."""
    d = os.environ["SINK_DIR"]
    os.makedirs(d, exist_ok=True)
    import json
    _write(os.path.join(d, "%s.json" % context.aws_request_id), json.dumps(event))
    return None


def slow(event, context):
    """Sleeps event["ms"], then appends the request id to DIR/<n> (event {"dir", "n", "ms"}):
    a second run of the same event would leave two lines."""
    time.sleep(event.get("ms", 100) / 1000.0)
    with open(os.path.join(event["dir"], str(event["n"])), "a") as f:
        f.write(context.aws_request_id + "\n")
    return {"n": event["n"]}
