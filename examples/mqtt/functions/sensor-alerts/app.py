"""examples/mqtt: one reading per MQTT message on sensors/<device>/temp.

The payload is JSON like {"c": 21.5}. Each reading is appended to OUT_DIR/<device>.jsonl; a
reading above LIMIT_C also goes to OUT_DIR/alerts.jsonl. A payload that is not such JSON is
reported as failed (batchItemFailures by messageId): the mapping retries it, then writes its
on-failure record (with MQTTBatchInfo) to out/failures/.
"""
import base64
import json
import os

OUT_DIR = os.environ.get("OUT_DIR", "out")
LIMIT_C = float(os.environ.get("LIMIT_C", "60"))


def _append(name, obj):
    os.makedirs(OUT_DIR, exist_ok=True)
    with open(os.path.join(OUT_DIR, name), "a") as f:
        f.write(json.dumps(obj) + "\n")


def handler(event, context):
    failures = []
    for rec in event["Records"]:
        device = rec["topic"].split("/")[1]
        try:
            reading = json.loads(base64.b64decode(rec["payload"]))
            c = float(reading["c"])
        except (ValueError, KeyError, TypeError):
            print("bad payload on %s (messageId %s)" % (rec["topic"], rec["messageId"]))
            failures.append({"itemIdentifier": rec["messageId"]})
            continue
        row = {"device": device, "c": c, "at": rec["timestamp"], "messageId": rec["messageId"]}
        _append(device + ".jsonl", row)
        if c > LIMIT_C:
            print("ALERT %s: %.1f C" % (device, c))
            _append("alerts.jsonl", row)
    print("%d reading(s), %d failed" % (len(event["Records"]), len(failures)))
    return {"batchItemFailures": failures}
