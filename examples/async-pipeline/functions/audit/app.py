"""The on_success destination of `orders`: receives Lambda's destination record as its event
and writes it to $AUDIT_DIR (relative to this function's code dir)."""
import json
import os


def handler(event, context):
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                       os.environ.get("AUDIT_DIR", "out/audit"))
    os.makedirs(out, exist_ok=True)
    request_id = event["requestContext"]["requestId"]
    with open(os.path.join(out, request_id + ".json"), "w") as f:
        json.dump(event, f, indent=2)
    return {"audited": request_id}
