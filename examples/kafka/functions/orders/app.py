"""Kafka orders handler: Lambda's self-managed Kafka event, unchanged.

Each record's value is base64; this handler decodes it, prints it, and reports the records it
cannot process with Kafka's partial batch response ({"partition": "orders-0", "offset": N}),
so that the named record and the ones after it in its partition are retried, in order.
"""
import base64
import json


def handler(event, context):
    failures = []
    for tp, records in event["records"].items():
        for rec in records:
            value = base64.b64decode(rec["value"]) if "value" in rec else None
            try:
                order = json.loads(value) if value is not None else None
            except ValueError:
                order = None
            print("%s offset %d: %s" % (tp, rec["offset"], order if order is not None else value))
            if isinstance(order, dict) and order.get("amount", 0) < 0:
                failures.append({"itemIdentifier": {"partition": tp, "offset": rec["offset"]}})
                break  # the rest of this partition is retried after it
    return {"batchItemFailures": failures}
