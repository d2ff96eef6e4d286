"""An SQS handler, unchanged: it gets Lambda's SQS event and reports the orders it could not
process with a partial batch response, so only those come back."""
import json


def handler(event, context):
    failures = []
    for record in event["Records"]:
        order = json.loads(record["body"])
        if order.get("amount", 0) < 0:
            print("order %s: negative amount, reported as failed" % order.get("id"))
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        print("order %s: %s processed (receive count %s)" % (
            order.get("id"), order.get("amount"),
            record["attributes"]["ApproximateReceiveCount"]))
    return {"batchItemFailures": failures}
