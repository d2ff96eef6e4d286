"""Handlers of the Kafka event-source-mapping tests (tests/integration/test_esm_kafka.c).

Every handler records each record it is given as a file OUT/<name>/<topic-partition>@<offset>.<n>
holding the record's JSON (n counts the deliveries of that record), and appends
"<topic-partition> <offset>" to OUT/<name>.order in the order it saw them, so the test can count
deliveries and duplicates, check the order within each partition and look at the event's shape.
OUT comes from the function's environment.
"""
import base64
import json
import os
import time

OUT = os.environ.get("OUT", "/tmp")


def _record(name, tp, rec):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    rid = "%s@%d" % (tp, rec["offset"])
    n = 1
    while os.path.exists(os.path.join(d, "%s.%d" % (rid, n))):
        n += 1
    path = os.path.join(d, "%s.%d" % (rid, n))
    with open(path + ".tmp", "w") as f:
        json.dump(rec, f)
    os.replace(path + ".tmp", path)
    with open(os.path.join(OUT, name + ".order"), "a") as f:
        f.write("%s %d\n" % (tp, rec["offset"]))
    return n


def _value(rec):
    if "value" not in rec:
        return None
    try:
        return json.loads(base64.b64decode(rec["value"]))
    except ValueError:
        return None


def _check_event(event):
    assert event["eventSource"] == "SelfManagedKafka", event
    assert isinstance(event["bootstrapServers"], str)
    for tp, recs in event["records"].items():
        assert recs, tp
        offsets = [r["offset"] for r in recs]
        assert offsets == sorted(offsets), (tp, offsets)


def record(event, context):
    """Records every record; a value {"sleep": seconds} pauses first."""
    _check_event(event)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "events.log"), "a") as f:
        f.write(json.dumps({"partitions": sorted(event["records"])}) + "\n")
    for tp, recs in event["records"].items():
        for rec in recs:
            v = _value(rec)
            if isinstance(v, dict) and v.get("sleep"):
                time.sleep(float(v["sleep"]))
            _record(os.environ.get("NAME", "record"), tp, rec)
    return {}


def partial(event, context):
    """Reports the first record whose value has "fail" as failed, the first time it is seen."""
    _check_event(event)
    failures = []
    for tp, recs in event["records"].items():
        for rec in recs:
            n = _record("partial", tp, rec)
            v = _value(rec)
            if isinstance(v, dict) and v.get("fail") and n == 1 and not failures:
                failures.append({"itemIdentifier": {"partition": tp, "offset": rec["offset"]}})
    return {"batchItemFailures": failures}


def poison(event, context):
    """Fails the whole batch when a record's value holds "poison"; records the others."""
    _check_event(event)
    for tp, recs in event["records"].items():
        for rec in recs:
            v = _value(rec)
            if isinstance(v, dict) and v.get("poison"):
                raise RuntimeError("poison record %s@%d" % (tp, rec["offset"]))
    for tp, recs in event["records"].items():
        for rec in recs:
            _record("poison", tp, rec)
    return None
