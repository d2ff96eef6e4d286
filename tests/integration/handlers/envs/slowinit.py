"""Sleeps at import time: longer than the function's init_timeout_s."""
import time

time.sleep(30)


def handler(event, context):
    return {}
