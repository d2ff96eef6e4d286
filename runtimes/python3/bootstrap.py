"""switchyard Python runtime: the AWS Lambda Runtime API client loop for Python handlers.

Started by the broker (dispatcher/env.c) as `python3 -u runtimes/python3/bootstrap.py` with the
working directory set to the function's code directory and the Lambda environment variables set
(_HANDLER, LAMBDA_TASK_ROOT, AWS_LAMBDA_RUNTIME_API, AWS_LAMBDA_FUNCTION_NAME, ...).

Standard library only. Behaviour follows AWS's Python runtime interface client (awslambdaric):

- handler `module.function` (also `pkg.mod.function` and `dir/mod.function`), imported once at
  INIT with LAMBDA_TASK_ROOT first on sys.path;
- INIT failures are posted to /runtime/init/error (Runtime.ImportModuleError,
  Runtime.UserCodeSyntaxError, Runtime.HandlerNotFound, Runtime.MalformedHandlerName, or the
  exception class name for anything else the module raised) and the process exits with status 1;
- each event is JSON-decoded and passed with a context object; the result is JSON-encoded
  (Runtime.MarshalError when it cannot be); an exception is posted as
  {errorMessage, errorType, requestId, stackTrace} and logged as `[ERROR] Type: message`.
"""

import decimal
import http.client
import importlib
import json
import logging
import os
import sys
import time
import traceback

API_PREFIX = "/2018-06-01/runtime"
_THIS_FILE = os.path.abspath(__file__)


# ---- Runtime API client ------------------------------------------------------------------------


class RuntimeAPIClient:
    """One persistent keep-alive HTTP/1.1 connection to the Runtime API (no client timeout:
    `next` is a long poll that may be held for as long as the environment stays idle)."""

    def __init__(self, address):
        host, sep, port = address.rpartition(":")
        if not sep:
            host, port = address, "9001"
        self.host = host.strip("[]") or "127.0.0.1"
        self.port = int(port)
        self.conn = None

    def _drop(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        """Returns (status, headers, body bytes). Retries once on a fresh connection when the
        kept-alive one turns out to be dead; raises OSError/HTTPException after that."""
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    self._drop()
                return resp.status, resp.headers, data
            except (OSError, http.client.HTTPException):
                self._drop()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def next(self):
        return self.request("GET", API_PREFIX + "/invocation/next")

    def post_response(self, request_id, body):
        return self.request(
            "POST",
            f"{API_PREFIX}/invocation/{request_id}/response",
            body=body,
            headers={"Content-Type": "application/json"},
        )

    def post_error(self, request_id, error, error_type_header):
        return self.request(
            "POST",
            f"{API_PREFIX}/invocation/{request_id}/error",
            body=_error_body(error),
            headers={
                "Content-Type": "application/json",
                "Lambda-Runtime-Function-Error-Type": error_type_header,
            },
        )

    def post_init_error(self, error):
        return self.request(
            "POST",
            API_PREFIX + "/init/error",
            body=_error_body(error),
            headers={
                "Content-Type": "application/json",
                "Lambda-Runtime-Function-Error-Type": error["errorType"],
            },
        )


def _error_body(error):
    return json.dumps(error, default=str).encode("utf-8")


# ---- errors ------------------------------------------------------------------------------------


class FaultError(Exception):
    """A runtime-detected failure with a Lambda error type (Runtime.*)."""

    def __init__(self, error_type, message, trace=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace or []


def _user_frames(tb):
    """Formatted stack frames of TB without the runtime's own frames."""
    frames = [f for f in traceback.extract_tb(tb) if os.path.abspath(f.filename) != _THIS_FILE]
    return traceback.format_list(frames)


def _error_from_exception(exc, request_id=None):
    error = {"errorMessage": str(exc), "errorType": type(exc).__name__}
    if request_id is not None:
        error["requestId"] = request_id
    error["stackTrace"] = _user_frames(exc.__traceback__)
    return error


def _error_from_fault(fault, request_id=None):
    error = {"errorMessage": fault.message, "errorType": fault.error_type}
    if request_id is not None:
        error["requestId"] = request_id
    error["stackTrace"] = list(fault.trace)
    return error


def _log_error(error):
    """Print an error the way Lambda's Python runtime logs it: `[ERROR] Type: message`, then
    the traceback."""
    lines = [f"[ERROR] {error['errorType']}: {error['errorMessage']}"]
    trace = error.get("stackTrace") or []
    if trace:
        lines.append("Traceback (most recent call last):")
        lines.extend(str(t).rstrip("\n") for t in trace)
    try:
        sys.stderr.write("\n".join(lines) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


# ---- handler loading ---------------------------------------------------------------------------


def load_handler(spec):
    try:
        modname, fname = spec.rsplit(".", 1)
    except ValueError as e:
        raise FaultError("Runtime.MalformedHandlerName", f"Bad handler '{spec}': {e}") from None
    if not modname or not fname:
        raise FaultError("Runtime.MalformedHandlerName", f"Bad handler '{spec}'")
    modname = modname.replace("/", ".").strip(".")
    if modname.split(".")[0] in sys.builtin_module_names:
        raise FaultError(
            "Runtime.BuiltInModuleConflict",
            f"Cannot use built-in module {modname} as a handler module",
        )
    try:
        module = importlib.import_module(modname)
    except ImportError as e:
        raise FaultError(
            "Runtime.ImportModuleError",
            f"Unable to import module '{modname}': {e}",
            _user_frames(e.__traceback__),
        ) from None
    except SyntaxError as e:
        trace = [f'  File "{e.filename}" Line {e.lineno}\n    {(e.text or "").strip()}\n']
        raise FaultError(
            "Runtime.UserCodeSyntaxError",
            f"Syntax error in module '{modname}': {e}",
            trace,
        ) from None
    try:
        handler = getattr(module, fname)
    except AttributeError:
        raise FaultError(
            "Runtime.HandlerNotFound", f"Handler '{fname}' missing on module '{modname}'"
        ) from None
    if not callable(handler):
        raise FaultError(
            "Runtime.HandlerNotFound", f"Handler '{fname}' on module '{modname}' is not callable"
        )
    return handler


# ---- context -----------------------------------------------------------------------------------


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, data=None):
        data = data if isinstance(data, dict) else {}
        self.cognito_identity_id = data.get("cognitoIdentityId")
        self.cognito_identity_pool_id = data.get("cognitoIdentityPoolId")

    def __repr__(self):
        return (
            f"CognitoIdentity([cognito_identity_id={self.cognito_identity_id},"
            f"cognito_identity_pool_id={self.cognito_identity_pool_id}])"
        )


class Client:
    __slots__ = (
        "installation_id",
        "app_title",
        "app_version_name",
        "app_version_code",
        "app_package_name",
    )

    def __init__(self, data):
        self.installation_id = data.get("installation_id")
        self.app_title = data.get("app_title")
        self.app_version_name = data.get("app_version_name")
        self.app_version_code = data.get("app_version_code")
        self.app_package_name = data.get("app_package_name")

    def __repr__(self):
        return (
            f"Client([installation_id={self.installation_id},app_title={self.app_title},"
            f"app_version_name={self.app_version_name},app_version_code={self.app_version_code},"
            f"app_package_name={self.app_package_name}])"
        )


class ClientContext:
    __slots__ = ("custom", "env", "client")

    def __init__(self, data):
        self.custom = data.get("custom")
        self.env = data.get("env")
        client = data.get("client")
        self.client = Client(client) if isinstance(client, dict) else None

    def __repr__(self):
        return f"ClientContext([custom={self.custom},env={self.env},client={self.client}])"


def _json_header(value):
    if not value:
        return None
    try:
        doc = json.loads(value)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


class LambdaContext:
    """The `context` argument, with the attributes and methods of Lambda's Python context."""

    def __init__(self, request_id, deadline_ms, invoked_function_arn, identity, client_context):
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        try:
            self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", ""))
        except ValueError:
            self.memory_limit_in_mb = None
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.identity = CognitoIdentity(identity)
        self.client_context = ClientContext(client_context) if client_context else None
        self.tenant_id = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def log(self, msg):
        sys.stdout.write(str(msg))
        sys.stdout.flush()

    def __repr__(self):
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},"
            f"log_group_name={self.log_group_name},log_stream_name={self.log_stream_name},"
            f"function_name={self.function_name},memory_limit_in_mb={self.memory_limit_in_mb},"
            f"function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn},"
            f"client_context={self.client_context},identity={self.identity}])"
        )


# ---- logging -----------------------------------------------------------------------------------


def _setup_stdio_and_logging():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):
            pass
    # Like Lambda: the root logger has a handler, so logging.info() & co. reach the log once
    # the level allows it (default WARNING; AWS_LAMBDA_LOG_LEVEL overrides). The broker adds the
    # timestamp and request id to every captured line, so the record carries only the level.
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("[%(levelname)s]\t%(message)s"))
    root.addHandler(handler)
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    if level in ("TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL", "CRITICAL"):
        level = {"TRACE": "DEBUG", "WARN": "WARNING", "FATAL": "CRITICAL"}.get(level, level)
        root.setLevel(level)


# ---- main loop ---------------------------------------------------------------------------------


def _to_json(obj):
    def default(o):
        if isinstance(o, decimal.Decimal):
            return float(o)
        raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")

    return json.dumps(obj, default=default)


def _fatal(msg, code=1):
    sys.stderr.write(f"[ERROR] switchyard python runtime: {msg}\n")
    sys.stderr.flush()
    sys.exit(code)


def handle_one(client, handler):
    status, headers, body = client.next()
    if status != 200:
        _fatal(f"GET invocation/next answered {status}: {body[:200]!r}")
    request_id = headers.get("Lambda-Runtime-Aws-Request-Id")
    if not request_id:
        _fatal("invocation/next response without Lambda-Runtime-Aws-Request-Id")
    try:
        deadline_ms = int(headers.get("Lambda-Runtime-Deadline-Ms") or 0)
    except ValueError:
        deadline_ms = 0
    if deadline_ms <= 0:
        deadline_ms = int(time.time() * 1000) + 900_000
    trace_id = headers.get("Lambda-Runtime-Trace-Id")
    if trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)

    context = LambdaContext(
        request_id,
        deadline_ms,
        headers.get("Lambda-Runtime-Invoked-Function-Arn"),
        _json_header(headers.get("Lambda-Runtime-Cognito-Identity")),
        _json_header(headers.get("Lambda-Runtime-Client-Context")),
    )

    error = None
    error_header = "Unhandled"
    payload = None
    try:
        event = json.loads(body) if body else None
    except ValueError as e:
        error = _error_from_fault(
            FaultError("Runtime.UnmarshalError", f"Unable to unmarshal input: {e}"), request_id
        )
        error_header = "Runtime.UnmarshalError"
    else:
        try:
            result = handler(event, context)
        except Exception as e:  # noqa: BLE001 - every handler exception is reported
            error = _error_from_exception(e, request_id)
        else:
            try:
                payload = _to_json(result).encode("utf-8")
            except (TypeError, ValueError, OverflowError, RecursionError) as e:
                error = _error_from_fault(
                    FaultError("Runtime.MarshalError", f"Unable to marshal response: {e}"),
                    request_id,
                )
                error_header = "Runtime.MarshalError"

    if error is not None:
        _log_error(error)
        status, _, rbody = client.post_error(request_id, error, error_header)
    else:
        status, _, rbody = client.post_response(request_id, payload)
    if status == 413:
        sys.stderr.write(
            f"[ERROR] response for {request_id} was rejected as too large: {rbody[:200]!r}\n"
        )
    elif status != 202:
        sys.stderr.write(f"[WARNING] Runtime API answered {status} for {request_id}: {rbody[:200]!r}\n")


def main():
    _setup_stdio_and_logging()
    address = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if not address:
        _fatal("AWS_LAMBDA_RUNTIME_API is not set")
    client = RuntimeAPIClient(address)

    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    # The runtime's own directory must not shadow user modules (sys.path[0] is this script's
    # directory): the task root replaces it, the working directory (normally the same) follows.
    if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(_THIS_FILE):
        sys.path.pop(0)
    for p in (os.getcwd(), task_root):
        if p in sys.path:
            sys.path.remove(p)
        sys.path.insert(0, p)

    try:
        handler = load_handler(os.environ.get("_HANDLER", ""))
    except FaultError as f:
        error = _error_from_fault(f)
    except Exception as e:  # noqa: BLE001 - the module raised while being imported
        error = _error_from_exception(e)
    else:
        error = None
    if error is not None:
        _log_error(error)
        try:
            client.post_init_error(error)
        except (OSError, http.client.HTTPException) as e:
            sys.stderr.write(f"[ERROR] cannot report the init error: {e}\n")
        sys.exit(1)

    while True:
        try:
            handle_one(client, handler)
        except (OSError, http.client.HTTPException) as e:
            _fatal(f"lost the Runtime API at {address}: {e}")


if __name__ == "__main__":
    main()
