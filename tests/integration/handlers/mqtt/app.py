"""Handlers of the MQTT source tests (tests/integration/test_esm_mqtt.c).

Each record is written to OUT/<name>/<key>.<n> holding the record's JSON plus "event" (the
event's top-level members other than Records) and "decoded" (the payload decoded from base64
as text). The key is the payload's "k" member when the payload is a JSON object, else the
payload itself (test payloads are short and file-name safe); n counts the deliveries of that
key, so the test can count duplicates across broker restarts (which give a message a new
messageId when the MQTT server sends it again). OUT comes from the function's environment.
"""
import base64
import json
import os

OUT = os.environ.get("OUT", "/tmp")


def _key(text):
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and "k" in body:
        return str(body["k"])
    return text


def _record(event, rec):
    d = OUT
    os.makedirs(d, exist_ok=True)
    text = base64.b64decode(rec["payload"]).decode("utf-8", "replace")
    key = _key(text)
    n = 1
    while os.path.exists(os.path.join(d, "%s.%d" % (key, n))):
        n += 1
    path = os.path.join(d, "%s.%d" % (key, n))
    out = dict(rec)
    out["event"] = {k: v for k, v in event.items() if k != "Records"}
    out["decoded"] = text
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.replace(tmp, path)


def record(event, context):
    """Records every record of the batch."""
    for rec in event["Records"]:
        _record(event, rec)
    return {}
