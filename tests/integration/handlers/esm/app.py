"""Handlers of the event-source-mapping tests (tests/integration/test_esm_redis.c).

Every handler records each record it is given as a file OUT/<name>/<messageId>.<n> holding the
record's JSON (n counts the deliveries of that message), so the test can count deliveries,
duplicates and look at the event's shape. OUT comes from the function's environment.
"""
import json
import os
import time

OUT = os.environ.get("OUT", "/tmp")


def _record(name, rec):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    n = 1
    while os.path.exists(os.path.join(d, "%s.%d" % (rec["messageId"], n))):
        n += 1
    path = os.path.join(d, "%s.%d" % (rec["messageId"], n))
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(rec, f)
    os.replace(tmp, path)
    return n


def record(event, context):
    """Records every record; the body may ask for a pause ({"sleep": seconds})."""
    for rec in event["Records"]:
        try:
            body = json.loads(rec["body"])
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("sleep"):
            time.sleep(float(body["sleep"]))
        _record("record", rec)
    return {}


def partial(event, context):
    """Reports the records whose body has "fail" as failed the first time they are seen."""
    failures = []
    for rec in event["Records"]:
        n = _record("partial", rec)
        body = json.loads(rec["body"])
        if body.get("fail") and n == 1:
            failures.append({"itemIdentifier": rec["messageId"]})
    return {"batchItemFailures": failures}


def poison(event, context):
    """Fails the whole batch when a record's body holds "poison"; records the others."""
    for rec in event["Records"]:
        if "poison" in rec["body"]:
            raise RuntimeError("poison record " + rec["messageId"])
    for rec in event["Records"]:
        _record("poison", rec)
    return None


def garbage(event, context):
    """Answers something that is not a partial batch response at all."""
    for rec in event["Records"]:
        _record("garbage", rec)
    return {"batchItemFailures": "not a list"}
