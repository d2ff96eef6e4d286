"""Test handler (test_errors.c, initfail-py): INIT fails importing this module.

The import of a module that does not exist raises ModuleNotFoundError (an ImportError), which the
python3 runtime must report through /init/error as Runtime.ImportModuleError, as Lambda does
("Unable to import module 'app': No module named ...").
"""
import switchyard_test_no_such_module  # noqa: F401  (missing on purpose)


def handler(event, context):
    return event
