#!/usr/bin/env python3
"""Unit tests of the language runtimes in runtimes/ (Python, Node.js, shell).

Each test starts an in-process fake of the Lambda Runtime API (the broker's side, as in
dispatcher/rtapi.c), runs one bootstrap as a subprocess against it with a handler written into a
temporary code directory, queues invocations and checks what the runtime posts back.

Standard library only. Node and shell tests are skipped when `node` / `curl` are missing.
Run: python3 tests/runtimes/test_bootstraps.py -v
"""

import collections
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
import uuid

SOURCE_DIR = os.environ.get("SY_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
)
RUNTIMES = os.path.join(SOURCE_DIR, "runtimes")
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
NODE = shutil.which("node")
BASH = shutil.which("bash") or "/bin/bash"
CURL = shutil.which("curl")

PREFIX = "/2018-06-01/runtime"
FUNCTION_NAME = "fn-under-test"
MEMORY = 256
ARN = f"arn:aws:lambda:us-east-1:000000000000:function:{FUNCTION_NAME}"
WAIT_S = 10  # bound of every single wait in these tests


# ---- fake Runtime API ----------------------------------------------------------------------------


class FakeRuntimeAPI:
    """A Runtime API endpoint: serves queued invocations on `next` (holding the request until
    one exists), records every request and every posted result."""

    def __init__(self):
        self.cond = threading.Condition()
        self.queue = collections.deque()
        self.requests = []  # dicts: method, path, headers, body, client
        self.results = {}  # request id -> {"kind": "response"|"error", "body", "headers"}
        self.init_errors = []  # {"body", "headers"}
        self.delivered = set()
        self.closed = False
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def _body(self):
                n = int(self.headers.get("Content-Length") or 0)
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(n) if n else b""

            def _reply(self, status, obj, headers=None):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _record(self, body):
                rec = {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers.items()),
                    "body": body,
                    "client": self.client_address,
                }
                with api.cond:
                    api.requests.append(rec)
                    api.cond.notify_all()
                return rec

            def do_GET(self):
                self._record(b"")
                if self.path != PREFIX + "/invocation/next":
                    self._reply(404, {"errorType": "NotFound", "errorMessage": "Unknown path"})
                    return
                with api.cond:
                    while not api.queue and not api.closed:
                        api.cond.wait(0.5)
                    if api.closed:
                        self.close_connection = True
                        return
                    inv = api.queue.popleft()
                    api.delivered.add(inv["id"])
                data = inv["body"]
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in inv["headers"].items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self._body()
                self._record(body)
                if self.path == PREFIX + "/init/error":
                    with api.cond:
                        api.init_errors.append({"body": body, "headers": dict(self.headers.items())})
                        api.cond.notify_all()
                    self._reply(202, {"status": "OK"})
                    return
                rest = self.path[len(PREFIX + "/invocation/"):] if self.path.startswith(
                    PREFIX + "/invocation/") else ""
                rid, _, kind = rest.partition("/")
                if kind not in ("response", "error"):
                    self._reply(404, {"errorType": "NotFound", "errorMessage": "Unknown path"})
                    return
                with api.cond:
                    if rid not in api.delivered:
                        status = 400
                    elif rid in api.results:
                        status = 403
                    else:
                        status = 202
                        api.results[rid] = {
                            "kind": kind,
                            "body": body,
                            "headers": dict(self.headers.items()),
                        }
                        api.cond.notify_all()
                if status == 202:
                    self._reply(202, {"status": "OK"})
                elif status == 400:
                    self._reply(400, {"errorType": "InvalidRequestID", "errorMessage": "Invalid request ID"})
                else:
                    self._reply(403, {"errorType": "InvalidStateTransition", "errorMessage": "again"})

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                # A runtime killed at the end of a test resets its kept-alive connection.
                if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
                    super().handle_error(request, client_address)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1})
        self.thread.daemon = True
        self.thread.start()

    def enqueue(self, event, raw=None, deadline_ms=None, headers=None, request_id=None):
        rid = request_id or str(uuid.uuid4())
        body = raw if raw is not None else json.dumps(event).encode()
        hdrs = {
            "Lambda-Runtime-Aws-Request-Id": rid,
            "Lambda-Runtime-Deadline-Ms": str(deadline_ms or int(time.time() * 1000) + 30_000),
            "Lambda-Runtime-Invoked-Function-Arn": ARN,
            "Lambda-Runtime-Trace-Id": f"Root=1-00000000-{rid[:24].replace('-', '0')};Sampled=0",
        }
        hdrs.update(headers or {})
        with self.cond:
            self.queue.append({"id": rid, "body": body, "headers": hdrs})
            self.cond.notify_all()
        return rid

    def wait_result(self, rid, timeout=WAIT_S):
        end = time.monotonic() + timeout
        with self.cond:
            while rid not in self.results:
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no result for {rid} within {timeout} s")
                self.cond.wait(left)
            return self.results[rid]

    def wait_init_error(self, timeout=WAIT_S):
        end = time.monotonic() + timeout
        with self.cond:
            while not self.init_errors:
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no init error within {timeout} s")
                self.cond.wait(left)
            return self.init_errors[0]

    def wait_next_polls(self, n, timeout=WAIT_S):
        """Wait until `next` was requested at least N times."""
        end = time.monotonic() + timeout
        with self.cond:
            while sum(1 for r in self.requests if r["path"].endswith("/invocation/next")) < n:
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"fewer than {n} next requests within {timeout} s")
                self.cond.wait(left)

    def close(self):
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()


# ---- test base -----------------------------------------------------------------------------------


class RuntimeTest(unittest.TestCase):
    lang = None  # "python3" | "node" | "shell"

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sy-rt-test-")
        self.code = os.path.join(self.tmp, "code")
        os.mkdir(self.code)
        self.api = FakeRuntimeAPI()
        self.proc = None
        self.addCleanup(self._cleanup)

    def _cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            for f in (self._out, self._err):
                f.close()
        self.api.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write(self, rel, text):
        path = os.path.join(self.code, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text).lstrip("\n"))
        return path

    def start(self, handler, env=None):
        if self.lang == "python3":
            argv = [PYTHON, "-u", os.path.join(RUNTIMES, "python3", "bootstrap.py")]
        elif self.lang == "node":
            argv = [NODE, os.path.join(RUNTIMES, "node", "bootstrap.js")]
        else:
            argv = [BASH, os.path.join(RUNTIMES, "shell", "bootstrap.sh")]
        penv = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            "TMPDIR": self.tmp,
            "AWS_LAMBDA_RUNTIME_API": self.api.address,
            "_HANDLER": handler,
            "LAMBDA_TASK_ROOT": self.code,
            "LAMBDA_RUNTIME_DIR": os.path.join(RUNTIMES, self.lang),
            "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(MEMORY),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{FUNCTION_NAME}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2025/01/01/[$LATEST]0123456789abcdef0123456789abcdef",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        penv.update(env or {})
        self._out = open(os.path.join(self.tmp, "stdout"), "w+b")
        self._err = open(os.path.join(self.tmp, "stderr"), "w+b")
        self.proc = subprocess.Popen(
            argv,
            cwd=self.code,
            env=penv,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            start_new_session=True,
        )
        return self.proc

    def stdout(self):
        with open(os.path.join(self.tmp, "stdout"), "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr(self):
        with open(os.path.join(self.tmp, "stderr"), "rb") as f:
            return f.read().decode("utf-8", "replace")

    def invoke(self, event, **kw):
        rid = self.api.enqueue(event, **kw)
        res = self.api.wait_result(rid)
        return rid, res

    def ok(self, event, **kw):
        rid, res = self.invoke(event, **kw)
        self.assertEqual(res["kind"], "response", f"expected a response, got {res} / {self.stderr()}")
        return json.loads(res["body"])

    def error(self, event, **kw):
        rid, res = self.invoke(event, **kw)
        self.assertEqual(res["kind"], "error", f"expected an error, got {res}")
        return json.loads(res["body"]), res["headers"]

    def wait_exit(self, timeout=WAIT_S):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.fail(f"the runtime did not exit within {timeout} s")

    def expect_init_error(self, handler, etype):
        self.start(handler)
        err = self.api.wait_init_error()
        doc = json.loads(err["body"])
        self.assertEqual(doc["errorType"], etype, doc)
        self.assertIsInstance(doc.get("errorMessage"), str)
        self.assertEqual(err["headers"].get("Lambda-Runtime-Function-Error-Type"), etype)
        self.assertNotEqual(self.wait_exit(), 0)
        self.assertEqual(self.api.results, {})
        return doc

    def restart(self, handler, env=None):
        """Stop the runtime and start another one against a fresh fake API (a killed runtime's
        held `next` must not take the new process's invocations)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
            self._out.close()
            self._err.close()
            self.proc = None
        self.api.close()
        self.api = FakeRuntimeAPI()
        return self.start(handler, env)

    def connections(self):
        return {r["client"] for r in self.api.requests}


# ---- Python --------------------------------------------------------------------------------------


class PythonRuntimeTest(RuntimeTest):
    lang = "python3"

    def write_app(self):
        self.write(
            "app.py",
            """
            import json
            import logging
            import os

            logger = logging.getLogger()
            logger.setLevel(logging.INFO)

            def echo(event, context):
                return event

            def ctx(event, context):
                return {
                    "function_name": context.function_name,
                    "function_version": context.function_version,
                    "invoked_function_arn": context.invoked_function_arn,
                    "memory_limit_in_mb": context.memory_limit_in_mb,
                    "aws_request_id": context.aws_request_id,
                    "log_group_name": context.log_group_name,
                    "log_stream_name": context.log_stream_name,
                    "remaining": context.get_remaining_time_in_millis(),
                    "trace": os.environ.get("_X_AMZN_TRACE_ID"),
                    "identity_id": context.identity.cognito_identity_id if context.identity else None,
                    "client_custom": context.client_context.custom if context.client_context else None,
                    "client_app": (context.client_context.client.app_title
                                   if context.client_context and context.client_context.client else None),
                    "cwd": os.getcwd(),
                }

            def boom(event, context):
                raise ValueError("boom: " + str(event.get("message")))

            def unserializable(event, context):
                return {"s": {1, 2}}

            def nothing(event, context):
                return None

            def chatty(event, context):
                print("printed line", event["n"])
                logging.getLogger("x").info("logged line %s", event["n"])
                return "done"
            """,
        )

    def test_echo_round_trip_keep_alive(self):
        self.write_app()
        self.start("app.echo")
        for ev in ({"a": 1, "b": [1, 2, "x"], "u": "é"}, "just a string", 42, [1, None], None):
            self.assertEqual(self.ok(ev), ev)
        self.assertEqual(len(self.connections()), 1, "expected one kept-alive connection")
        self.assertIsNone(self.proc.poll())

    def test_context(self):
        self.write_app()
        self.start("app.ctx")
        deadline = int(time.time() * 1000) + 20_000
        headers = {
            "Lambda-Runtime-Client-Context": json.dumps(
                {"client": {"app_title": "demo"}, "custom": {"k": "v"}, "env": {}}
            ),
            "Lambda-Runtime-Cognito-Identity": json.dumps(
                {"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}
            ),
        }
        rid = self.api.enqueue({}, deadline_ms=deadline, headers=headers)
        res = self.api.wait_result(rid)
        doc = json.loads(res["body"])
        self.assertEqual(doc["function_name"], FUNCTION_NAME)
        self.assertEqual(doc["function_version"], "$LATEST")
        self.assertEqual(doc["invoked_function_arn"], ARN)
        self.assertEqual(doc["memory_limit_in_mb"], MEMORY)
        self.assertEqual(doc["aws_request_id"], rid)
        self.assertEqual(doc["log_group_name"], f"/aws/lambda/{FUNCTION_NAME}")
        self.assertTrue(doc["log_stream_name"].startswith("2025/01/01/[$LATEST]"))
        self.assertGreater(doc["remaining"], 0)
        self.assertLessEqual(doc["remaining"], 20_000)
        self.assertTrue(doc["trace"].startswith("Root=1-"))
        self.assertEqual(doc["identity_id"], "id-1")
        self.assertEqual(doc["client_custom"], {"k": "v"})
        self.assertEqual(doc["client_app"], "demo")
        self.assertEqual(os.path.realpath(doc["cwd"]), os.path.realpath(self.code))
        # Without the optional headers: no client context, identity fields None.
        doc = self.ok({})
        self.assertIsNone(doc["client_custom"])
        self.assertIsNone(doc["identity_id"])

    def test_error_shape(self):
        self.write_app()
        self.start("app.boom")
        err, headers = self.error({"message": "from test"})
        self.assertEqual(err["errorType"], "ValueError")
        self.assertEqual(err["errorMessage"], "boom: from test")
        self.assertIn("requestId", err)
        self.assertIsInstance(err["stackTrace"], list)
        self.assertTrue(err["stackTrace"])
        self.assertTrue(all(isinstance(x, str) for x in err["stackTrace"]))
        self.assertIn("app.py", "".join(err["stackTrace"]))
        self.assertNotIn("bootstrap.py", "".join(err["stackTrace"]))
        self.assertEqual(headers.get("Lambda-Runtime-Function-Error-Type"), "Unhandled")
        self.assertIn("[ERROR] ValueError: boom: from test", self.stderr())
        self.assertIn("Traceback (most recent call last):", self.stderr())
        # The environment survives an error.
        err, _ = self.error({"message": "again"})
        self.assertEqual(err["errorMessage"], "boom: again")

    def test_marshal_error_and_none(self):
        self.write_app()
        self.start("app.unserializable")
        err, headers = self.error({})
        self.assertEqual(err["errorType"], "Runtime.MarshalError")
        self.assertIn("Unable to marshal response", err["errorMessage"])

    def test_none_is_null(self):
        self.write_app()
        self.start("app.nothing")
        rid, res = self.invoke({})
        self.assertEqual(res["kind"], "response")
        self.assertEqual(res["body"], b"null")

    def test_print_and_logging(self):
        self.write_app()
        self.start("app.chatty")
        self.assertEqual(self.ok({"n": 7}), "done")
        out = self.stdout()
        self.assertIn("printed line 7\n", out)
        self.assertIn("[INFO]\tlogged line 7", out)

    def test_dotted_package_handler(self):
        self.write("pkg/__init__.py", "")
        self.write("pkg/sub/__init__.py", "")
        self.write("pkg/sub/mod.py", "def fn(event, context):\n    return {'pkg': event}\n")
        self.start("pkg.sub.mod.fn")
        self.assertEqual(self.ok([1]), {"pkg": [1]})

    def test_slash_handler(self):
        self.write("src/app.py", "def fn(event, context):\n    return 'slash'\n")
        self.start("src/app.fn")
        self.assertEqual(self.ok({}), "slash")

    def test_init_import_error(self):
        doc = self.expect_init_error("nosuchmodule.handler", "Runtime.ImportModuleError")
        self.assertIn("nosuchmodule", doc["errorMessage"])

    def test_init_import_error_of_dependency(self):
        self.write("app.py", "import not_installed_dep\n\ndef handler(e, c):\n    return 1\n")
        self.expect_init_error("app.handler", "Runtime.ImportModuleError")

    def test_init_handler_not_found(self):
        self.write_app()
        doc = self.expect_init_error("app.no_such_handler", "Runtime.HandlerNotFound")
        self.assertIn("no_such_handler", doc["errorMessage"])

    def test_init_syntax_error(self):
        self.write("app.py", "def handler(event, context)\n    return 1\n")
        doc = self.expect_init_error("app.handler", "Runtime.UserCodeSyntaxError")
        self.assertIn("Syntax error in module 'app'", doc["errorMessage"])

    def test_init_exception_in_module(self):
        self.write("app.py", "raise RuntimeError('init failed')\n")
        doc = self.expect_init_error("app.handler", "RuntimeError")
        self.assertEqual(doc["errorMessage"], "init failed")

    def test_init_malformed_handler(self):
        self.write_app()
        self.expect_init_error("nodot", "Runtime.MalformedHandlerName")


# ---- Node.js -------------------------------------------------------------------------------------


@unittest.skipUnless(NODE, "node is not installed")
class NodeRuntimeTest(RuntimeTest):
    lang = "node"

    def write_app(self):
        self.write(
            "app.js",
            """
            exports.echo = async (event) => event;

            exports.ctx = async (event, context) => ({
              functionName: context.functionName,
              functionVersion: context.functionVersion,
              invokedFunctionArn: context.invokedFunctionArn,
              memoryLimitInMB: context.memoryLimitInMB,
              awsRequestId: context.awsRequestId,
              logGroupName: context.logGroupName,
              logStreamName: context.logStreamName,
              remaining: context.getRemainingTimeInMillis(),
              trace: process.env._X_AMZN_TRACE_ID,
              identity: context.identity,
              clientContext: context.clientContext,
              waits: context.callbackWaitsForEmptyEventLoop,
            });

            exports.boom = async (event) => { throw new TypeError('boom: ' + event.message); };
            exports.throwString = async () => { throw 'plain string'; };
            exports.throwObject = () => { throw { code: 42 }; };

            exports.callback = (event, context, callback) => {
              setTimeout(() => callback(null, { cb: event }), 5);
            };
            exports.callbackError = (event, context, callback) => {
              callback(new Error('cb failed'));
            };
            exports.succeed = (event, context) => { context.succeed({ via: 'succeed' }); };
            exports.fail = (event, context) => { context.fail(new RangeError('via fail')); };
            exports.done = (event, context) => { context.done(null, 'via done'); };
            exports.syncNoCallback = (event) => { setTimeout(() => {}, 10); return 'ignored'; };
            exports.nested = { deeper: { fn: async () => 'nested' } };
            exports.notAFunction = 42;

            exports.uncaught = async () => {
              setTimeout(() => { throw new Error('uncaught later'); }, 5);
              return new Promise(() => {});
            };
            exports.rejection = async () => {
              Promise.reject(new Error('nobody catches me'));
              return new Promise((resolve) => setTimeout(resolve, 2000));
            };
            exports.circular = async () => { const o = {}; o.self = o; return o; };
            exports.chatty = async (event) => { console.log('logged', event.n); console.error('warned', event.n); return 'done'; };
            """,
        )

    def test_echo_round_trip_keep_alive(self):
        self.write_app()
        self.start("app.echo")
        for ev in ({"a": 1, "b": [1, 2, "x"], "u": "é"}, "just a string", 42, [1, None], None):
            self.assertEqual(self.ok(ev), ev)
        self.assertEqual(len(self.connections()), 1, "expected one kept-alive connection")
        self.assertIsNone(self.proc.poll())

    def test_context(self):
        self.write_app()
        self.start("app.ctx")
        headers = {
            "Lambda-Runtime-Client-Context": json.dumps({"custom": {"k": "v"}}),
            "Lambda-Runtime-Cognito-Identity": json.dumps({"cognitoIdentityId": "id-1"}),
        }
        rid = self.api.enqueue({}, deadline_ms=int(time.time() * 1000) + 20_000, headers=headers)
        doc = json.loads(self.api.wait_result(rid)["body"])
        self.assertEqual(doc["functionName"], FUNCTION_NAME)
        self.assertEqual(doc["functionVersion"], "$LATEST")
        self.assertEqual(doc["invokedFunctionArn"], ARN)
        self.assertEqual(doc["memoryLimitInMB"], str(MEMORY))
        self.assertEqual(doc["awsRequestId"], rid)
        self.assertEqual(doc["logGroupName"], f"/aws/lambda/{FUNCTION_NAME}")
        self.assertTrue(doc["logStreamName"].startswith("2025/01/01/"))
        self.assertGreater(doc["remaining"], 0)
        self.assertLessEqual(doc["remaining"], 20_000)
        self.assertTrue(doc["trace"].startswith("Root=1-"))
        self.assertEqual(doc["identity"], {"cognitoIdentityId": "id-1"})
        self.assertEqual(doc["clientContext"], {"custom": {"k": "v"}})
        self.assertIs(doc["waits"], True)
        doc = self.ok({})
        self.assertNotIn("clientContext", doc)  # undefined when the header is absent

    def test_error_shape(self):
        self.write_app()
        self.start("app.boom")
        err, headers = self.error({"message": "from test"})
        self.assertEqual(err["errorType"], "TypeError")
        self.assertEqual(err["errorMessage"], "boom: from test")
        self.assertIsInstance(err["trace"], list)
        self.assertEqual(err["trace"][0], "TypeError: boom: from test")
        self.assertTrue(any("app.js" in line for line in err["trace"]))
        self.assertEqual(headers.get("Lambda-Runtime-Function-Error-Type"), "Unhandled")
        self.assertIn("Invoke Error", self.stderr())
        err, _ = self.error({"message": "again"})
        self.assertEqual(err["errorMessage"], "boom: again")

    def test_non_error_throws(self):
        self.write_app()
        self.start("app.throwString")
        err, _ = self.error({})
        self.assertEqual((err["errorType"], err["errorMessage"]), ("string", "plain string"))
        self.restart("app.throwObject")
        err, _ = self.error({})
        self.assertEqual(err["errorType"], "object")
        self.assertEqual(json.loads(err["errorMessage"]), {"code": 42})

    def test_callback_styles(self):
        self.write_app()
        cases = [
            ("app.callback", {"x": 1}, ("response", {"cb": {"x": 1}})),
            ("app.succeed", {}, ("response", {"via": "succeed"})),
            ("app.done", {}, ("response", "via done")),
            ("app.syncNoCallback", {}, ("response", None)),
            ("app.nested.deeper.fn", {}, ("response", "nested")),
            ("app.callbackError", {}, ("error", "cb failed")),
            ("app.fail", {}, ("error", "via fail")),
        ]
        for handler, event, (kind, want) in cases:
            with self.subTest(handler=handler):
                self.restart(handler)
                rid, res = self.invoke(event)
                self.assertEqual(res["kind"], kind, res)
                doc = json.loads(res["body"])
                if kind == "response":
                    self.assertEqual(doc, want)
                else:
                    self.assertEqual(doc["errorMessage"], want)

    def test_esm_mjs(self):
        self.write("esm.mjs", "export const handler = async (event, context) => ({ esm: event, id: context.awsRequestId });\n")
        self.start("esm.handler")
        rid, res = self.invoke({"k": 1})
        self.assertEqual(json.loads(res["body"]), {"esm": {"k": 1}, "id": rid})

    def test_esm_js_type_module(self):
        self.write("package.json", '{"type": "module"}\n')
        self.write("index.js", "const wait = await Promise.resolve('tla');\nexport async function handler(e) { return [wait, e]; }\n")
        self.start("index.handler")
        self.assertEqual(self.ok(5), ["tla", 5])

    def test_cjs_and_subdir(self):
        self.write("lib/thing.cjs", "module.exports.go = async () => 'cjs';\n")
        self.start("lib/thing.go")
        self.assertEqual(self.ok({}), "cjs")

    def test_uncaught_exception_reports_and_exits(self):
        self.write_app()
        self.start("app.uncaught")
        err, _ = self.error({})
        self.assertEqual(err["errorType"], "Error")
        self.assertEqual(err["errorMessage"], "uncaught later")
        self.assertEqual(self.wait_exit(), 1)

    def test_unhandled_rejection_reports_and_exits(self):
        self.write_app()
        self.start("app.rejection")
        err, _ = self.error({})
        self.assertEqual(err["errorType"], "Runtime.UnhandledPromiseRejection")
        self.assertIn("nobody catches me", err["errorMessage"])
        self.assertEqual(self.wait_exit(), 1)

    def test_marshal_error(self):
        self.write_app()
        self.start("app.circular")
        err, _ = self.error({})
        self.assertEqual(err["errorType"], "Runtime.MarshalError")

    def test_console_output(self):
        self.write_app()
        self.start("app.chatty")
        self.assertEqual(self.ok({"n": 3}), "done")
        self.assertIn("logged 3\n", self.stdout())
        self.assertIn("warned 3\n", self.stderr())

    def test_init_import_error(self):
        doc = self.expect_init_error("nosuchmodule.handler", "Runtime.ImportModuleError")
        self.assertIn("nosuchmodule", doc["errorMessage"])

    def test_init_handler_not_found(self):
        self.write_app()
        doc = self.expect_init_error("app.no_such_handler", "Runtime.HandlerNotFound")
        self.assertIn("app.no_such_handler is undefined or not exported", doc["errorMessage"])

    def test_init_handler_not_a_function(self):
        self.write_app()
        self.expect_init_error("app.notAFunction", "Runtime.HandlerNotFound")

    def test_init_syntax_error(self):
        self.write("app.js", "exports.handler = async (event => {\n")
        self.expect_init_error("app.handler", "Runtime.UserCodeSyntaxError")

    def test_init_syntax_error_esm(self):
        self.write("app.mjs", "export const handler = async (event => {\n")
        self.expect_init_error("app.handler", "Runtime.UserCodeSyntaxError")

    def test_init_exception_in_module(self):
        self.write("app.js", "throw new RangeError('init failed');\n")
        doc = self.expect_init_error("app.handler", "RangeError")
        self.assertEqual(doc["errorMessage"], "init failed")


# ---- shell ---------------------------------------------------------------------------------------


@unittest.skipUnless(CURL, "curl is not installed")
class ShellRuntimeTest(RuntimeTest):
    lang = "shell"

    def write_fn(self, name="function.sh"):
        self.write(
            name,
            r"""
            # sourced once at INIT
            GREETING=hello
            set -euo pipefail

            handler() {
              local event=$1
              echo "log line for $LAMBDA_RUNTIME_AWS_REQUEST_ID" >&2
              printf '{"event":%s,"stdin":%s,"id":"%s","deadline":%s,"greeting":"%s","trace":"%s"}' \
                "$event" "$(cat)" "$LAMBDA_RUNTIME_AWS_REQUEST_ID" "$LAMBDA_RUNTIME_DEADLINE_MS" \
                "$GREETING" "${_X_AMZN_TRACE_ID:-}"
            }

            fails() {
              echo "first problem" >&2
              echo 'the "real" problem' >&2
              return 3
            }

            silent_fail() {
              exit 4
            }

            raw() {
              printf 'not json\n'
            }

            unset_var() {
              echo "$NOT_SET_ANYWHERE"
            }

            background() {
              # a leftover process that keeps the handler's stderr (and stdout) open
              ( sleep 0.5; echo "late line" >&2; echo "late stdout" ) &
              echo "early line" >&2
              printf '"bg"'
            }
            """,
        )

    def test_success(self):
        self.write_fn()
        self.start("function.handler")
        deadline = int(time.time() * 1000) + 15_000
        rid, res = self.invoke({"a": [1, "two"]}, deadline_ms=deadline)
        self.assertEqual(res["kind"], "response", self.stderr())
        doc = json.loads(res["body"])
        self.assertEqual(doc["event"], {"a": [1, "two"]})
        self.assertEqual(doc["stdin"], {"a": [1, "two"]})
        self.assertEqual(doc["id"], rid)
        self.assertEqual(doc["deadline"], deadline)
        self.assertEqual(doc["greeting"], "hello")
        self.assertTrue(doc["trace"].startswith("Root=1-"))
        self.assertIn(f"log line for {rid}", self.stderr())
        # a second invoke on the same process
        rid2, res2 = self.invoke("second")
        self.assertEqual(json.loads(res2["body"])["id"], rid2)
        self.assertIsNone(self.proc.poll())

    def test_body_sent_as_is(self):
        self.write_fn()
        self.start("function.raw")
        rid, res = self.invoke({})
        self.assertEqual(res["kind"], "response")
        self.assertEqual(res["body"], b"not json\n")

    def test_failure(self):
        self.write_fn()
        self.start("function.fails")
        err, headers = self.error({})
        self.assertEqual(err["errorType"], "Runtime.HandlerError")
        self.assertEqual(err["errorMessage"], 'the "real" problem')
        self.assertEqual(err["stackTrace"], ["first problem", 'the "real" problem'])
        self.assertEqual(headers.get("Lambda-Runtime-Function-Error-Type"), "Runtime.HandlerError")
        self.assertIn("first problem", self.stderr())
        # the runtime keeps serving
        err, _ = self.error({})
        self.assertEqual(err["errorMessage"], 'the "real" problem')

    def test_failure_without_stderr(self):
        self.write_fn()
        self.start("function.silent_fail")
        err, _ = self.error({})
        self.assertEqual(err["errorMessage"], "exit status 4")
        self.assertIsNone(self.proc.poll())

    def test_user_shell_options_apply_to_function(self):
        self.write_fn()
        self.start("function.unset_var")  # set -u from the file makes this fail
        err, _ = self.error({})
        self.assertIn("NOT_SET_ANYWHERE", err["errorMessage"])

    def test_background_process_does_not_block(self):
        self.write_fn()
        self.start("function.background")
        t0 = time.monotonic()
        self.assertEqual(self.ok({}), "bg")
        self.assertLess(time.monotonic() - t0, 1.5)
        time.sleep(0.6)  # the leftover writes to its (old) stdout/stderr now
        self.assertEqual(self.ok({}), "bg")
        self.assertIn("early line", self.stderr())
        self.assertIn("late line", self.stderr())

    def test_file_without_extension(self):
        self.write_fn("plainfile")
        self.start("plainfile.handler")
        self.assertEqual(self.ok({"x": 1})["event"], {"x": 1})

    def test_init_import_error(self):
        self.expect_init_error("nosuchfile.handler", "Runtime.ImportModuleError")

    def test_init_handler_not_found(self):
        self.write_fn()
        self.expect_init_error("function.no_such_function", "Runtime.HandlerNotFound")

    def test_init_syntax_error(self):
        self.write("function.sh", "handler() {\n  if true; then echo x\n}\n")
        self.expect_init_error("function.handler", "Runtime.UserCodeSyntaxError")

    def test_temp_dir_cleaned(self):
        self.write_fn()
        self.start("function.handler")
        self.ok({})
        self.assertTrue(any(n.startswith("sy-shell-rt.") for n in os.listdir(self.tmp)))
        # SIGTERM to bash alone (not its group) while it waits in `next`: it must still exit
        # promptly and clean up.
        self.api.wait_next_polls(2)
        time.sleep(0.2)
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.wait_exit(), 143)
        self.assertLess(time.monotonic() - t0, 2)
        self.assertFalse(any(n.startswith("sy-shell-rt.") for n in os.listdir(self.tmp)))


if __name__ == "__main__":
    unittest.main()
