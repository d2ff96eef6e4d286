# A handler for the config tests: only its directory matters to them.
def handler(event, context):
    return event
