"""Quickstart handler: an ordinary AWS Lambda Python handler, unchanged."""
import logging
import os

logger = logging.getLogger()
logger.setLevel(logging.INFO)


def handler(event, context):
    name = event.get("name", "world") if isinstance(event, dict) else "world"
    logger.info("greeting %s", name)
    return {
        "message": f"{os.environ.get('GREETING', 'Hello')}, {name}!",
        "request_id": context.aws_request_id,
        "function": context.function_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
