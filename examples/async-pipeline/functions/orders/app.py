"""Processes an order; a negative amount is an error (retried, then sent to on_failure)."""


class InvalidOrder(Exception):
    pass


def handler(event, context):
    if event.get("amount", 0) < 0:
        raise InvalidOrder("order %s: negative amount %s" % (event.get("order"), event["amount"]))
    return {"order": event.get("order"), "status": "accepted", "request_id": context.aws_request_id}
