"""The function examples/deploy/deploy.sh ships: it says who it is and which version ran."""
import os


def handler(event, context):
    event = event or {}
    return {
        "message": "%s, %s!" % (os.environ.get("GREETING", "Hello"), event.get("name", "world")),
        "function": context.function_name,
        "version": context.function_version,
        "release": os.environ.get("RELEASE", "unreleased"),
    }
