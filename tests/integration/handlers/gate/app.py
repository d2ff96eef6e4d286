"""Integration-test fixture (tests/integration/handlers/gate): a handler that holds its
invocation until the test releases it, so that tests can keep an invocation in flight for
exactly as long as they need (concurrency limits, SIGTERM drain) without timing guesses.

Event: {"started": PATH, "release": PATH, "max_s": N}. Creates `started` (when given) once the
invocation runs, holding the process id (test_lifecycle reads it), then waits until `release`
exists (polling every 10 ms, at most max_s seconds, default 20) and returns
{"released": bool, "pid": pid}.
"""
import os
import time


def wait(event, context):
    started = event.get("started")
    if started:
        # Written aside and renamed: the test reads the pid as soon as the file exists, so the
        # file must never be seen empty.
        tmp = "%s.%d.tmp" % (started, os.getpid())
        with open(tmp, "w") as f:
            f.write(str(os.getpid()))
        os.replace(tmp, started)
    release = event["release"]
    limit = time.monotonic() + float(event.get("max_s", 20))
    while not os.path.exists(release):
        if time.monotonic() > limit:
            return {"released": False, "pid": os.getpid()}
        time.sleep(0.01)
    return {"released": True, "pid": os.getpid()}
