#!/usr/bin/env python3
"""bench/deploy_bench.py - deploy and reload latency of switchyard (see bench/README.md,
section deploy_bench).

Rows (each with n, p50 and p99), against baselines measured in the same run:
  1. CreateFunction (python3.11, tiny zip) -> first 200 invoke answer, beside the runtime's own
     start-up (python3 bootstrap.py spawned by the bench until its first GET .../next) plus a
     warm invoke, and beside a plain cold invoke of a function declared in the YAML;
  2. UpdateFunctionCode of a 1 MB zip -> first invoke answered by the new code, beside the same
     baseline (target: p50 <= 50 ms plus the runtime's start-up);
  3. reload with 100 functions: all changed (POST -> answer, POST -> all 100 answered by their
     new configuration) and nothing changed, beside 100 first invokes on a fresh broker;
  4. 5 reloads under load at concurrency 8: requests, failures (must be 0), requests/s during
     vs outside the reload windows.

Plain HTTP/1.1 (http.client, keep-alive), no boto3. Every wait is bounded. The report
(markdown) goes to stdout, progress to stderr. The work dir (/tmp/sy-bench-deploy-XXXXXX) is
removed at the end unless --keep; it is kept on failure, with the broker logs' tails on stderr.
"""
import argparse
import base64
import ctypes
import http.client
import io
import json
import math
import multiprocessing
import os
import platform
import queue
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROLE = "arn:aws:iam::000000000000:role/bench"
HTTP_TIMEOUT_S = 15.0  # per socket operation
READY_TIMEOUT_S = 15.0  # the broker's ready line
STOP_TIMEOUT_S = 10.0  # the broker's exit after SIGTERM
WAIT_TIMEOUT_S = 15.0  # any other wait (new code showing up, all clients switched, ...)
BINARY_WAIT_S = 120.0  # the broker binary missing while someone rebuilds it
CONC = 8
N_FUNCS = 100

T_START = time.monotonic()


class BenchError(Exception):
    pass


def log(msg):
    print("deploy_bench: " + msg, file=sys.stderr, flush=True)


def now():
    return time.perf_counter()


# ---- statistics --------------------------------------------------------------------------------


def pct(xs, p):
    """Nearest-rank percentile (p in 0..1): the p99 of fewer than 100 samples is their max."""
    if not xs:
        return math.nan
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(math.ceil(p * len(s))) - 1))
    return s[k]


def p50(xs):
    return statistics.median(xs) if xs else math.nan


def p99(xs):
    return pct(xs, 0.99)


def fmt(v, d=1):
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else "%.*f" % (d, v)


# ---- HTTP --------------------------------------------------------------------------------------


class Client:
    """One keep-alive HTTP/1.1 connection; reconnects (once per request) when the kept-alive
    connection turns out to be closed."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method, path, body=b"", headers=None, retry=True):
        h = {"Content-Type": "application/json"}
        if headers:
            h.update(headers)
        for attempt in (0, 1):
            fresh = self.conn is None
            if fresh:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                       timeout=HTTP_TIMEOUT_S)
            try:
                self.conn.request(method, path, body=body, headers=h)
                r = self.conn.getresponse()
                data = r.read()
                if r.will_close:
                    self.close()
                return r.status, {k.lower(): v for k, v in r.getheaders()}, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if fresh or attempt or not retry:
                    raise
        raise AssertionError("unreachable")

    def invoke(self, name, payload=b"{}", tail=False):
        hdr = {"X-Amz-Log-Type": "Tail"} if tail else None
        return self.request("POST", "/2015-03-31/functions/%s/invocations" % name, payload, hdr)

    def reload(self):
        st, _, body = self.request("POST", "/switchyard/v1/reload", b"{}")
        try:
            rep = json.loads(body)
        except ValueError:
            raise BenchError("reload answered %d, not JSON: %r" % (st, body[:300]))
        if st != 200 or not rep.get("ok"):
            raise BenchError("reload answered %d: %s" % (st, json.dumps(rep)[:600]))
        return rep

    def healthz(self):
        st, _, body = self.request("GET", "/healthz")
        if st != 200:
            raise BenchError("/healthz answered %d" % st)
        return json.loads(body)


def init_duration_ms(headers):
    tail = headers.get("x-amz-log-result")
    if not tail:
        return math.nan
    m = re.search(r"Init Duration: ([0-9.]+) ms", base64.b64decode(tail).decode("utf-8", "replace"))
    return float(m.group(1)) if m else math.nan


def check_ok(what, st, headers, body):
    if st != 200 or "x-amz-function-error" in headers:
        raise BenchError("%s: answered %d %s: %r" % (what, st, headers.get("x-amz-function-error",
                                                                           ""), body[:400]))
    return json.loads(body)


# ---- the work dir, the broker ------------------------------------------------------------------


def write_file(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.rename(tmp, path)  # a reload never reads half a file


def _pdeathsig():
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Broker:
    all = []

    def __init__(self, binary, workdir, tag):
        self.binary = binary
        self.dir = os.path.join(workdir, tag)
        os.makedirs(self.dir, exist_ok=True)
        self.config = os.path.join(self.dir, "switchyard.yaml")
        self.log_path = os.path.join(self.dir, "broker.log")
        self.tag = tag
        self.proc = None
        self.port = None
        Broker.all.append(self)

    def write_config(self, functions_yaml, max_concurrency=1000):
        write_file(self.config,
                   "# written by bench/deploy_bench.py\n"
                   "broker:\n"
                   "  listen: 127.0.0.1:0\n"
                   "  data_dir: ./data\n"
                   "  max_concurrency: %d\n"
                   "  log_level: info\n"
                   "  shutdown_grace_ms: 1000\n"
                   "functions:\n%s" % (max_concurrency, functions_yaml))

    def start(self):
        logf = open(self.log_path, "ab")
        start_off = logf.tell()
        self.proc = subprocess.Popen([self.binary, "run", self.config], cwd=self.dir,
                                     stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                     preexec_fn=_pdeathsig)
        logf.close()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            with open(self.log_path, "rb") as f:
                f.seek(start_off)
                text = f.read().decode("utf-8", "replace")
            m = re.search(r"ready: control API on http://([^\s:]+|\[[^\]]+\]):(\d+)", text)
            if m:
                self.port = int(m.group(2))
                return self
            if self.proc.poll() is not None:
                raise BenchError("broker %s exited (%d) before its ready line" %
                                 (self.tag, self.proc.returncode))
            if time.monotonic() > deadline:
                raise BenchError("no ready line from broker %s within %.0f s" %
                                 (self.tag, READY_TIMEOUT_S))
            time.sleep(0.01)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log("broker %s did not exit within %.0f s of SIGTERM; killing it" %
                (self.tag, STOP_TIMEOUT_S))
            self.proc.kill()
            self.proc.wait(5)

    def log_lines(self, pattern):
        try:
            with open(self.log_path, errors="replace") as f:
                return [line.rstrip("\n") for line in f if re.search(pattern, line)]
        except OSError:
            return []


# ---- code ---------------------------------------------------------------------------------------


def handler_src(tag):
    # Returns its code's TAG, the TAG of its environment (reload rows) and what the start-up
    # alone needs to start the runtime exactly as the broker does.
    return ("import os, sys\n"
            "TAG = %r\n"
            "def handler(event, context):\n"
            "    if isinstance(event, dict) and event.get('describe'):\n"
            "        return {'argv': sys.orig_argv, 'env': dict(os.environ), 'cwd': os.getcwd()}\n"
            "    return {'tag': TAG, 'env_tag': os.environ.get('TAG')}\n" % tag)


def make_zip(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            zi = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            zi.external_attr = 0o100644 << 16
            zi.create_system = 3
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
    return buf.getvalue()


def b64(data):
    return base64.b64encode(data).decode()


# ---- the runtime's own start-up ----------------------------------------------------------------


class StartupAlone:
    """Spawns the Python runtime as the broker does (same argv, same environment, cwd a fresh
    code dir) with AWS_LAMBDA_RUNTIME_API pointing at a socket of the bench, and times it until
    its first GET .../invocation/next has arrived; then kills it."""

    def __init__(self, describe, workdir):
        self.argv = describe["argv"]
        self.env = dict(describe["env"])
        self.env.pop("_X_AMZN_TRACE_ID", None)
        self.dir = os.path.join(workdir, "startup-alone")
        self.n = 0

    def measure(self):
        """Milliseconds from spawn until the first GET .../next is read."""
        return self.measure_many(1)

    def measure_many(self, n):
        """N runtimes spawned back to back: ms from the first spawn until all N have sent their
        first GET .../next."""
        socks, procs, conns = [], [], []
        try:
            envs = []
            for _ in range(n):
                self.n += 1
                code = os.path.join(self.dir, "s-%d" % self.n)  # fresh: no __pycache__
                write_file(os.path.join(code, "app.py"), handler_src("startup-%d" % self.n))
                # A listening socket of its own per runtime: the runtime retries on a fresh
                # connection when the bench closes the first one, and that connection must
                # not be the next sample's.
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", 0))
                sock.listen(4)
                sock.settimeout(WAIT_TIMEOUT_S)
                envs.append((code, dict(self.env, LAMBDA_TASK_ROOT=code,
                                        LD_LIBRARY_PATH="%s:%s/lib:/opt/lib" % (code, code),
                                        AWS_LAMBDA_RUNTIME_API="127.0.0.1:%d" %
                                        sock.getsockname()[1])))
            t0 = now()
            for code, env in envs:
                procs.append(subprocess.Popen(self.argv, cwd=code, env=env,
                                              stdin=subprocess.DEVNULL,
                                              stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL))
            t1 = t0
            for sock in socks:
                conn, _ = sock.accept()
                conns.append(conn)
                conn.settimeout(WAIT_TIMEOUT_S)
                buf = b""
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(4096)
                    if not chunk:
                        raise BenchError("the runtime closed its connection before GET next")
                    buf += chunk
                t1 = max(t1, now())
                if b"/runtime/invocation/next" not in buf.split(b"\r\n", 1)[0]:
                    raise BenchError("the runtime alone sent %r first" % buf[:200])
        except socket.timeout:
            raise BenchError("the runtime alone sent no GET next within %.0f s" % WAIT_TIMEOUT_S)
        finally:
            for p in procs:
                p.kill()
            for p in procs:
                p.wait(5)
            for x in conns + socks:
                x.close()
        return (t1 - t0) * 1000.0


# ---- rows 1 and 2: CreateFunction, UpdateFunctionCode ------------------------------------------


def bench_create_update(o, binary, workdir, R):
    b = Broker(binary, workdir, "deploy")
    fy = ["  warm: {runtime: python3, handler: app.handler, code: ./code/warm, timeout_s: 10}\n"]
    write_file(os.path.join(b.dir, "code/warm/app.py"), handler_src("warm"))
    for i in range(o.functions):
        write_file(os.path.join(b.dir, "code/cold-%d/app.py" % i), handler_src("cold-%d" % i))
        fy.append("  cold-%d: {runtime: python3, handler: app.handler, code: ./code/cold-%d, "
                  "timeout_s: 10}\n" % (i, i))
    b.write_config("".join(fy))
    b.start()
    log("broker 'deploy' on port %d" % b.port)
    c = Client(b.port)

    # Warm-up, and what the start-up alone needs (argv, environment) from a real environment.
    st, h, body = c.invoke("warm", b'{"describe": true}')
    desc = check_ok("warm invoke", st, h, body)
    R["runtime_argv"] = " ".join(desc["argv"])
    alone = StartupAlone(desc, workdir)
    for _ in range(3):
        alone.measure()
    warm = []
    for i in range(o.warm + 50):
        t0 = now()
        st, h, body = c.invoke("warm")
        t1 = now()
        check_ok("warm invoke", st, h, body)
        if i >= 50:
            warm.append((t1 - t0) * 1000.0)
    R["warm"] = warm
    w50 = p50(warm)
    # One CreateFunction + invoke not measured (the first write opens state.db, ...).
    z = make_zip({"app.py": handler_src("c-warmup")})
    st, _, body = c.request("POST", "/2015-03-31/functions", json.dumps(
        {"FunctionName": "api-warmup", "Runtime": "python3.11", "Role": ROLE,
         "Handler": "app.handler", "Timeout": 10, "Code": {"ZipFile": b64(z)}}).encode())
    if st != 201:
        raise BenchError("CreateFunction api-warmup answered %d: %r" % (st, body[:400]))
    check_ok("api-warmup", *c.invoke("api-warmup"))

    # Row 1: per sample, in a rotating order: S (start-up alone), D (cold invoke of cold-i,
    # declared in the file), T (CreateFunction api-i, then invoke until the first 200).
    S, D, T, TW, TI, D_init, T_init = [], [], [], [], [], [], []
    retries = 0
    bodies = []
    for i in range(o.functions):
        z = make_zip({"app.py": handler_src("c-%d" % i)})
        bodies.append(json.dumps({"FunctionName": "api-%d" % i, "Runtime": "python3.11",
                                  "Role": ROLE, "Handler": "app.handler", "Timeout": 10,
                                  "Code": {"ZipFile": b64(z)}}).encode())
    R["create_zip_bytes"] = len(z)

    def s_alone(i):
        S.append(alone.measure())

    def d_cold(i):
        t0 = now()
        st, h, body = c.invoke("cold-%d" % i, tail=True)
        t1 = now()
        if check_ok("cold-%d" % i, st, h, body)["tag"] != "cold-%d" % i:
            raise BenchError("cold-%d answered %r" % (i, body))
        D.append((t1 - t0) * 1000.0)
        D_init.append(init_duration_ms(h))

    def t_create(i):
        nonlocal retries
        name = "api-%d" % i
        t0 = now()
        st, _, body = c.request("POST", "/2015-03-31/functions", bodies[i])
        tw = now()
        if st != 201:
            raise BenchError("CreateFunction %s answered %d: %r" % (name, st, body[:400]))
        deadline = time.monotonic() + WAIT_TIMEOUT_S
        while True:
            st, h, body = c.invoke(name, tail=True)
            if st == 200 and "x-amz-function-error" not in h:
                break
            retries += 1
            if time.monotonic() > deadline:
                raise BenchError("%s: no 200 within %.0f s (last %d %r)" %
                                 (name, WAIT_TIMEOUT_S, st, body[:300]))
            time.sleep(0.001)
        t1 = now()
        if json.loads(body)["tag"] != "c-%d" % i:
            raise BenchError("%s answered %r" % (name, body))
        T.append((t1 - t0) * 1000.0)
        TW.append((tw - t0) * 1000.0)
        TI.append((t1 - tw) * 1000.0)
        T_init.append(init_duration_ms(h))

    log("row 1: %d × (start-up alone, declared cold invoke, CreateFunction → invoke)" %
        o.functions)
    steps = [s_alone, d_cold, t_create]
    for i in range(o.functions):
        k = i % 3
        for f in steps[k:] + steps[:k]:
            f(i)
            time.sleep(o.pause)
    R.update(create_S=S, create_D=D, create_T=T, create_TW=TW, create_TI=TI,
             create_D_init=D_init, create_T_init=T_init, create_retries=retries)
    R["create_dT"] = [t - (s + w50) for t, s in zip(T, S)]
    R["create_dD"] = [d - (s + w50) for d, s in zip(D, S)]
    R["create_TvsD"] = [t - d for t, d in zip(T, D)]

    # Row 2: UpdateFunctionCode of 1 MB zips (incompressible random content + app.py), each
    # one new (a zip uploaded before would be the same package tree, already unpacked).
    z = make_zip({"app.py": handler_src("u-0")})
    st, _, body = c.request("POST", "/2015-03-31/functions", json.dumps(
        {"FunctionName": "upd", "Runtime": "python3.11", "Role": ROLE, "Handler": "app.handler",
         "Timeout": 10, "Code": {"ZipFile": b64(z)}}).encode())
    if st != 201:
        raise BenchError("CreateFunction upd answered %d: %r" % (st, body[:400]))
    check_ok("upd", *c.invoke("upd"))
    log("row 2: building %d zips of %d KB" % (o.updates + 1, o.zip_kb))
    ubodies = []
    for j in range(o.updates + 1):
        z = make_zip({"app.py": handler_src("u-%d" % (j + 1)),
                      "blob.bin": os.urandom(o.zip_kb * 1024)})
        ubodies.append(json.dumps({"ZipFile": b64(z)}).encode())
    R["update_zip_bytes"] = len(z)
    R["update_body_bytes"] = len(ubodies[-1])
    US, UT, UW, UI, U_init = [], [], [], [], []
    stale = 0

    def u_update(j):
        nonlocal stale
        want = "u-%d" % (j + 1)
        t0 = now()
        st, _, body = c.request("PUT", "/2015-03-31/functions/upd/code", ubodies[j])
        tw = now()
        if st != 200:
            raise BenchError("UpdateFunctionCode #%d answered %d: %r" % (j, st, body[:400]))
        deadline = time.monotonic() + WAIT_TIMEOUT_S
        while True:
            st, h, body = c.invoke("upd", tail=True)
            if st == 200 and "x-amz-function-error" not in h and json.loads(body)["tag"] == want:
                break
            stale += 1
            if time.monotonic() > deadline:
                raise BenchError("update #%d: the new code did not answer within %.0f s "
                                 "(last %d %r)" % (j, WAIT_TIMEOUT_S, st, body[:300]))
            time.sleep(0.001)
        t1 = now()
        return (t1 - t0) * 1000.0, (tw - t0) * 1000.0, (t1 - tw) * 1000.0, init_duration_ms(h)

    u_update(o.updates)  # one not measured: the first 1 MB body, allocations grow, ...
    # ... and it left tag u-(updates+1); the measured ones set u-1 .. u-updates.
    log("row 2: %d × (start-up alone, UpdateFunctionCode → new code answers)" % o.updates)
    for j in range(o.updates):
        if j % 2 == 0:
            US.append(alone.measure())
            time.sleep(o.pause)
        t, tw, ti, ini = u_update(j)
        UT.append(t)
        UW.append(tw)
        UI.append(ti)
        U_init.append(ini)
        time.sleep(o.pause)
        if j % 2 == 1:
            US.append(alone.measure())
            time.sleep(o.pause)
    R.update(update_S=US, update_T=UT, update_TW=UW, update_TI=UI, update_init=U_init,
             update_stale=stale)
    R["update_dT"] = [t - (s + w50) for t, s in zip(UT, US)]
    R["update_minus_init"] = [t - i for t, i in zip(UT, U_init)]
    hz = c.healthz()
    R["deploy_errors"] = hz.get("errors")
    c.close()
    b.stop()
    return alone


# ---- row 3: reload with 100 functions ----------------------------------------------------------


def reload_functions_yaml(tag, extra=""):
    return extra + "".join(
        "  f-%03d:\n    runtime: python3\n    handler: app.handler\n    code: ./fns/f-%03d\n"
        "    timeout_s: 10\n    environment: {TAG: '%s'}\n" % (i, i, tag)
        for i in range(N_FUNCS))


def invoke_all(port, names, want_tag, stale_counter=None):
    """Invoke every function in NAMES at concurrency 8 until each has answered with env_tag
    WANT_TAG; returns the wall time in ms from the call to the last such answer."""
    q = queue.Queue()
    for n in names:
        q.put(n)
    errors, stale = [], [0]
    lock = threading.Lock()
    deadline = time.monotonic() + 120.0

    def worker():
        c = Client(port)
        try:
            while not errors:
                try:
                    name = q.get_nowait()
                except queue.Empty:
                    return
                while True:
                    st, h, body = c.invoke(name)
                    if st == 200 and "x-amz-function-error" not in h:
                        if json.loads(body)["env_tag"] == want_tag:
                            break
                        with lock:
                            stale[0] += 1
                    else:
                        raise BenchError("%s answered %d: %r" % (name, st, body[:300]))
                    if time.monotonic() > deadline:
                        raise BenchError("%s: TAG %s never showed up" % (name, want_tag))
                    time.sleep(0.002)
        except Exception as e:  # noqa: BLE001 - reported by the caller
            errors.append(e)
        finally:
            c.close()

    t0 = now()
    ths = [threading.Thread(target=worker) for _ in range(CONC)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(150)
    t1 = now()
    if errors:
        raise errors[0]
    if any(t.is_alive() for t in ths):
        raise BenchError("invoke_all: a client is stuck")
    if stale_counter is not None:
        stale_counter.append(stale[0])
    return (t1 - t0) * 1000.0


def bench_reload(o, binary, workdir, R):
    names = ["f-%03d" % i for i in range(N_FUNCS)]
    A0, B, A, N, U, WARM_AFTER = [], [], [], [], [], []
    stale, cold_after_unchanged = [], []
    for r in range(o.rounds):
        b = Broker(binary, workdir, "reload-%d" % r)
        for i in range(N_FUNCS):
            write_file(os.path.join(b.dir, "fns/f-%03d/app.py" % i), handler_src("f-%03d" % i))
        b.write_config(reload_functions_yaml("r%d-0" % r))
        b.start()
        log("row 3, round %d/%d: broker on port %d" % (r + 1, o.rounds, b.port))
        c = Client(b.port)
        # All 100 changed while none of them has an environment: the reload's own work.
        b.write_config(reload_functions_yaml("r%d-a" % r))
        t0 = now()
        rep = c.reload()
        t1 = now()
        if sorted(rep["functions"]["updated"]) != names:
            raise BenchError("reload updated %s" % rep["functions"])
        A0.append((t1 - t0) * 1000.0)
        # [B]: 100 first invokes (cold starts) at c=8 on the fresh broker.
        B.append(invoke_all(b.port, names, "r%d-a" % r))
        time.sleep(0.5)
        # All 100 changed (their TAG): POST -> answer, POST -> all 100 answered with it.
        b.write_config(reload_functions_yaml("r%d-b" % r))
        t0 = now()
        rep = c.reload()
        t1 = now()
        if sorted(rep["functions"]["updated"]) != names:
            raise BenchError("reload updated %s" % rep["functions"])
        n_ms = invoke_all(b.port, names, "r%d-b" % r, stale)
        A.append((t1 - t0) * 1000.0)
        N.append((t1 - t0) * 1000.0 + n_ms)
        time.sleep(0.5)
        # Nothing changed: K reloads; then all 100 again: warm, no cold start.
        h0 = c.healthz()
        for _ in range(o.unchanged):
            t0 = now()
            rep = c.reload()
            t1 = now()
            if rep["functions"]["updated"] or len(rep["functions"]["unchanged"]) != N_FUNCS:
                raise BenchError("unchanged reload reported %s" % rep["functions"])
            U.append((t1 - t0) * 1000.0)
            time.sleep(0.05)
        WARM_AFTER.append(invoke_all(b.port, names, "r%d-b" % r))
        h1 = c.healthz()
        cold_after_unchanged.append(h1["cold_starts"] - h0["cold_starts"])
        c.close()
        b.stop()
        shutil.rmtree(os.path.join(b.dir, "data"), ignore_errors=True)
    R.update(reload_A0=A0, reload_B=B, reload_A=A, reload_N=N, reload_U=U,
             reload_warm_after=WARM_AFTER,
             reload_stale=sum(stale), reload_cold_after_unchanged=cold_after_unchanged)
    R["reload_dN"] = [n - b for n, b in zip(N, B)]


# ---- row 4: reloads under load at concurrency 8 ------------------------------------------------


def load_client(idx, port, stop, seen, out):
    """A client process: invoke `loaded` without pause until STOP; record per request
    (t_send, t_done, ok, tag) in CLOCK_MONOTONIC seconds; publish the last TAG seen in SEEN."""
    _pdeathsig()  # never outlive the bench
    recs = []
    c = Client(port)
    fails = []
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            st, h, body = c.request("POST", "/2015-03-31/functions/loaded/invocations", b"{}",
                                    retry=False)
            ok = st == 200 and "x-amz-function-error" not in h
            tag = int(json.loads(body)["env_tag"]) if ok else -1
            if not ok and len(fails) < 10:
                fails.append("%d %r" % (st, body[:200]))
        except Exception as e:  # noqa: BLE001 - a dropped or refused connection is a failure
            ok, tag = False, -1
            if len(fails) < 10:
                fails.append(repr(e))
            c.close()
        t1 = time.monotonic()
        recs.append((t0, t1, ok, tag))
        if ok:
            seen[idx] = tag
    c.close()
    out.put((idx, recs, fails))


def burst(port, name):
    """CONC threads invoke NAME at the same moment; ms until the last one is answered."""
    bar = threading.Barrier(CONC + 1)
    errors, done = [], []

    def one():
        c = Client(port)
        try:
            bar.wait(WAIT_TIMEOUT_S)
            check_ok(name, *c.invoke(name))
            done.append(now())
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            c.close()

    ths = [threading.Thread(target=one) for _ in range(CONC)]
    for t in ths:
        t.start()
    bar.wait(WAIT_TIMEOUT_S)
    t0 = now()
    for t in ths:
        t.join(WAIT_TIMEOUT_S * 2)
    if errors or len(done) != CONC:
        raise BenchError("burst %s: %s" % (name, errors[:1] or "a client is stuck"))
    return (max(done) - t0) * 1000.0


def bench_load(o, binary, workdir, R, alone):
    b = Broker(binary, workdir, "load")
    write_file(os.path.join(b.dir, "fns/loaded/app.py"), handler_src("loaded"))
    for i in range(N_FUNCS):
        write_file(os.path.join(b.dir, "fns/f-%03d/app.py" % i), handler_src("f-%03d" % i))

    bursts = "".join("  burst-%d: {runtime: python3, handler: app.handler, code: ./fns/loaded, "
                     "timeout_s: 10}\n" % k for k in range(o.reloads))

    def cfg(tag):
        return reload_functions_yaml("x", "  loaded:\n    runtime: python3\n"
                                          "    handler: app.handler\n    code: ./fns/loaded\n"
                                          "    timeout_s: 10\n    environment: {TAG: '%d'}\n"
                                          % tag + bursts)

    b.write_config(cfg(0))
    b.start()
    log("row 4: broker on port %d; %d clients, %d reloads" % (b.port, CONC, o.reloads))
    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()
    seen = ctx.Array("i", [-1] * CONC, lock=False)
    out = ctx.Queue()
    # Warm-up: 8 concurrent clients for a moment (8 warm environments), not recorded.
    wstop = ctx.Event()
    wout = ctx.Queue()
    ws = [ctx.Process(target=load_client, args=(k, b.port, wstop, seen, wout), daemon=True)
          for k in range(CONC)]
    for p in ws:
        p.start()
    time.sleep(1.0)
    wstop.set()
    for _ in ws:
        wout.get(timeout=30)
    for p in ws:
        p.join(10)
    # [K]: 8 simultaneous first invokes of a function that has no environment (burst-k, one
    # per reload), timed until the last answer: what a reload window cannot be shorter than.
    # [P8]: 8 runtimes started at once by the bench alone, next to each K.
    K, P8 = [], []
    for k in range(o.reloads):
        if k % 2:
            P8.append(alone.measure_many(CONC))
            time.sleep(0.3)
        K.append(burst(b.port, "burst-%d" % k))
        time.sleep(0.3)
        if k % 2 == 0:
            P8.append(alone.measure_many(CONC))
            time.sleep(0.3)
    c = Client(b.port)
    h0 = c.healthz()

    procs = [ctx.Process(target=load_client, args=(k, b.port, stop, seen, out), daemon=True)
             for k in range(CONC)]
    t_begin = time.monotonic()
    for p in procs:
        p.start()
    reloads = []  # (t_post, t_answer, tag)
    try:
        time.sleep(o.gap)
        for i in range(1, o.reloads + 1):
            b.write_config(cfg(i))
            t0 = time.monotonic()
            rep = c.reload()
            t1 = time.monotonic()
            if rep["functions"]["updated"] != ["loaded"]:
                raise BenchError("reload under load reported %s" % rep["functions"])
            reloads.append((t0, t1, i))
            deadline = time.monotonic() + WAIT_TIMEOUT_S
            while min(seen) < i:
                if time.monotonic() > deadline:
                    raise BenchError("TAG %d did not reach every client within %.0f s" %
                                     (i, WAIT_TIMEOUT_S))
                if not b.alive():
                    raise BenchError("the broker exited under load")
                time.sleep(0.002)
            time.sleep(o.gap)
    finally:
        stop.set()
        results = []
        try:
            for _ in procs:
                results.append(out.get(timeout=30))
        except queue.Empty:
            pass
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)
    t_end = max(r[1] for _, recs, _ in results for r in recs) if results else time.monotonic()
    if len(results) != CONC:
        raise BenchError("only %d of %d load clients reported" % (len(results), CONC))
    h1 = c.healthz()
    c.close()
    b.stop()

    recs = [r for _, rr, _ in results for r in rr]
    fails = [f for _, _, ff in results for f in ff]
    # Window i: from POST reload until every client has had an answer from the new
    # configuration (the last client's first answer with TAG >= i).
    windows = []
    for (t0, t1, i) in reloads:
        ends = []
        for _, rr, _ in results:
            first = next((r[1] for r in rr if r[3] >= i and r[1] >= t0), None)
            if first is None:
                raise BenchError("a client never saw TAG %d" % i)
            ends.append(first)
        windows.append((t0, max(ends), t1, i))
    in_win = lambda t: any(w0 <= t <= w1 for (w0, w1, _, _) in windows)  # noqa: E731
    dur_win = sum(w1 - w0 for (w0, w1, _, _) in windows)
    dur_all = t_end - t_begin
    lat_in = [(r[1] - r[0]) * 1000.0 for r in recs if in_win(r[1])]
    lat_out = [(r[1] - r[0]) * 1000.0 for r in recs if not in_win(r[1])]
    # Requests sent after a reload was answered must be answered by that configuration (or a
    # newer one).
    stale = 0
    for r in recs:
        if r[2]:
            need = max([i for (_, _, ta, i) in windows if ta < r[0]], default=0)
            stale += r[3] < need
    R.update(load_requests=len(recs), load_failed=sum(1 for r in recs if not r[2]),
             load_fail_samples=fails, load_in=lat_in, load_out=lat_out,
             load_rps_in=len(lat_in) / dur_win if dur_win > 0 else math.nan,
             load_rps_out=len(lat_out) / (dur_all - dur_win),
             load_windows=[(w1 - w0) * 1000.0 for (w0, w1, _, _) in windows], load_K=K,
             load_P8=P8,
             load_reload_ms=[(ta - w0) * 1000.0 for (w0, _, ta, _) in windows],
             load_stale=stale, load_secs=dur_all, load_win_secs=dur_win,
             load_cold=h1["cold_starts"] - h0["cold_starts"],
             load_errors=h1["errors"] - h0["errors"])


# ---- the report --------------------------------------------------------------------------------


def print_report(o, R, binary):
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    la = os.getloadavg()
    u = platform.uname()
    print("# switchyard deploy benchmark\n")
    print("- machine: %d CPUs (nproc), %s; kernel %s %s %s; load %.2f %.2f %.2f at start" %
          (os.cpu_count(), cpu, u.system, u.release, u.machine, *R["load_avg"]))
    print("- broker: %s (copied into the work dir); runtime: `%s`" % (binary, R["runtime_argv"]))
    print("- %d CreateFunction samples (zip %d bytes), %d UpdateFunctionCode samples (zip %d "
          "bytes, request body %d bytes), %d reload rounds × 100 functions (+%d unchanged "
          "reloads each), %d reloads under load at c=%d%s\n" %
          (o.functions, R["create_zip_bytes"], o.updates, R["update_zip_bytes"],
           R["update_body_bytes"], o.rounds, o.unchanged, o.reloads, CONC,
           " (--quick)" if o.quick else ""))

    head = ["row", "n", "p50 ms", "p99 ms", "req/s", "baseline", "Δp50 ms", "Δp99 ms",
            "target", "met?"]
    rows = []

    def row(name, xs, base="—", d=None, rps="—", target="—", met="—", dec=1, n=None):
        rows.append([name, str(len(xs) if n is None else n), fmt(p50(xs), dec), fmt(p99(xs), dec),
                     rps, base, fmt(p50(d), dec) if d else "—", fmt(p99(d), dec) if d else "—",
                     target, met])

    S_all = R["create_S"] + R["update_S"]
    row("[S] python runtime start-up alone (spawn → first GET next)", S_all,
        target="(the runtime's own start-up)")
    row("[W] warm invoke, c=1", R["warm"], dec=2, target="(added to S)")
    row("[D] cold invoke, function declared in the YAML", R["create_D"], "S + W", R["create_dD"],
        target="(info)")
    row("CreateFunction (tiny zip) → first 200 invoke", R["create_T"], "S + W", R["create_dT"],
        target="(info)")
    d50 = p50(R["update_dT"])
    row("UpdateFunctionCode (1 MB zip) → first answer from the new code", R["update_T"], "S + W",
        R["update_dT"], target="Δp50 ≤ 50 ms", met="yes" if d50 <= 50.0 else "**no**")
    row("[B] 100 functions: first invoke of each, c=8, fresh broker", R["reload_B"], dec=0)
    row("reload, 100 changed, no environment: POST → answer", R["reload_A0"], target="(info)")
    row("reload, 100 changed, 100 warm: POST → answer", R["reload_A"], target="(info)")
    row("reload, 100 changed, 100 warm: POST → all 100 answered by the new config (c=8)",
        R["reload_N"],
        "B", R["reload_dN"], dec=0, target="(info)")
    row("reload, 100 unchanged: POST → answer", R["reload_U"], target="(info)")
    row("[O] load c=8, outside reload windows: request latency", R["load_out"], dec=2,
        rps="%.0f" % R["load_rps_out"], target="(the floor)")
    row("load c=8, during reload windows: request latency", R["load_in"], "O",
        dec=2, rps="%.0f (%.2f×)" % (R["load_rps_in"], R["load_rps_in"] / R["load_rps_out"]),
        target="(info)")
    row("reload under load: POST → answer", R["load_reload_ms"], target="(info)")
    row("[P8] 8 python runtimes started at once alone (→ all 8 GET next)", R["load_P8"],
        target="(the runtimes' own start-up)")
    row("[K] 8 simultaneous first invokes of a function without environment", R["load_K"],
        "P8", [k - p for k, p in zip(R["load_K"], R["load_P8"])], target="(info)")
    row("reload window: POST → every client answered by the new config", R["load_windows"],
        "K", [w - k for w, k in zip(R["load_windows"], R["load_K"])], target="(info)")
    rows.append(["failed requests during %d reloads under load, c=8" % o.reloads,
                 str(R["load_requests"]), "—", "—", "—", "—", "—", "—",
                 "0 failed (got %d)" % R["load_failed"],
                 "yes" if R["load_failed"] == 0 else "**no**"])

    w = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]

    def line(cells):
        print("| " + " | ".join(c + " " * (w[i] - len(c)) for i, c in enumerate(cells)) + " |")

    line(head)
    print("|" + "|".join("-" * (w[i] + 1) + (":" if 1 <= i <= 4 or 6 <= i <= 7 else "-")
                         for i in range(len(head))) + "|")
    for r in rows:
        line(r)

    w50 = p50(R["warm"])
    print()
    print("- p50 is the median; p99 is nearest-rank, so with fewer than 100 samples it is the "
          "largest one. Δ columns: p50 / p99 of the per-sample differences against the baseline "
          "measured next to each sample (S just before or after it, W = %.2f ms, the warm "
          "p50), so they need not equal the difference of the p50/p99 columns." % w50)
    print("- CreateFunction: the write answered (201) in p50 %s / p99 %s ms, the invoke after it "
          "took p50 %s / p99 %s ms; broker-reported Init Duration p50 %s ms (declared: %s ms; "
          "compare with S p50 %s ms: the broker's spawn cost); CreateFunction → 200 minus the "
          "declared cold invoke [D], per sample: p50 %s / p99 %s ms; invokes answered other "
          "than 200 before the first 200: %d (want 0)." %
          (fmt(p50(R["create_TW"])), fmt(p99(R["create_TW"])), fmt(p50(R["create_TI"])),
           fmt(p99(R["create_TI"])), fmt(p50(R["create_T_init"])), fmt(p50(R["create_D_init"])),
           fmt(p50(S_all)), fmt(p50(R["create_TvsD"])), fmt(p99(R["create_TvsD"])),
           R["create_retries"]))
    print("- UpdateFunctionCode: the write answered (200) in p50 %s / p99 %s ms (upload, base64 "
          "decode, unzip, SHA-256, state.db), the invoke after it took p50 %s / p99 %s ms "
          "(Init Duration p50 %s ms); update → new answer minus that invoke's Init Duration: "
          "p50 %s / p99 %s ms; answers from the old code after the update was answered: %d "
          "(want 0)." %
          (fmt(p50(R["update_TW"])), fmt(p99(R["update_TW"])), fmt(p50(R["update_TI"])),
           fmt(p99(R["update_TI"])), fmt(p50(R["update_init"])),
           fmt(p50(R["update_minus_init"])), fmt(p99(R["update_minus_init"])),
           R["update_stale"]))
    print("- Reload, 100 functions (each its own code dir, all 100 warm when the changed reload "
          "is posted): answers from the old configuration after the reload answered: %d (want "
          "0); after the %d unchanged reloads of each round all 100 answered warm in p50 %s ms "
          "at c=8, cold starts then: %s (want 0 each)." %
          (R["reload_stale"], o.unchanged, fmt(p50(R["reload_warm_after"]), 0),
           R["reload_cold_after_unchanged"]))
    print("- Under load: `loaded`, 100 idle functions and the K functions in the file, each "
          "reload changes `loaded`'s TAG; %d requests in %.1f s, %.2f s of it inside the %d reload windows; "
          "cold starts %d (8 warm environments before, 8 new per reload), /healthz errors %d; "
          "requests sent after a reload was answered but answered by the older config: %d "
          "(want 0)." %
          (R["load_requests"], R["load_secs"], R["load_win_secs"], o.reloads, R["load_cold"],
           R["load_errors"], R["load_stale"]))
    if R["load_fail_samples"]:
        print("- failures (first ones): %s" % "; ".join(R["load_fail_samples"][:5]))
    print("- Total bench time %.1f s; load %.2f %.2f %.2f at the end." %
          ((time.monotonic() - T_START,) + os.getloadavg()))


# ---- main --------------------------------------------------------------------------------------


def get_binary(path, workdir):
    deadline = time.monotonic() + BINARY_WAIT_S
    while True:
        try:
            if os.access(path, os.X_OK):
                dst = os.path.join(workdir, "switchyard")
                shutil.copy2(path, dst)
                r = subprocess.run([dst, "--help"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, timeout=10)
                if r.returncode in (0, 1, 2):
                    return dst
        except (OSError, subprocess.SubprocessError):
            pass
        if time.monotonic() > deadline:
            raise BenchError("broker binary %s missing or not runnable for %.0f s" %
                             (path, BINARY_WAIT_S))
        log("broker binary %s not usable yet (being rebuilt?); retrying" % path)
        time.sleep(2)


def parse_args():
    ap = argparse.ArgumentParser(description="switchyard deploy/reload benchmark "
                                             "(bench/README.md)")
    default_broker = os.environ.get("SY_BENCH_BROKER",
                                    os.path.join(ROOT, "build/broker/switchyard"))
    ap.add_argument("--broker", default=default_broker,
                    help="switchyard binary (env SY_BENCH_BROKER; default %(default)s)")
    ap.add_argument("--functions", type=int, default=None,
                    help="CreateFunction samples (default 20; --quick 5)")
    ap.add_argument("--updates", type=int, default=None,
                    help="UpdateFunctionCode samples (default 20; --quick 5)")
    ap.add_argument("--zip-kb", type=int, default=1024, help="update zip's random blob in KB")
    ap.add_argument("--rounds", type=int, default=None,
                    help="reload rounds, a fresh broker with 100 functions each "
                         "(default 5; --quick 1)")
    ap.add_argument("--unchanged", type=int, default=None,
                    help="unchanged reloads per round (default 10; --quick 5)")
    ap.add_argument("--reloads", type=int, default=5, help="reloads under load (default 5)")
    ap.add_argument("--gap", type=float, default=None,
                    help="seconds of load before, between and after the reloads (default 1.0; "
                         "--quick 0.5)")
    ap.add_argument("--pause", type=float, default=0.05,
                    help="seconds between samples of rows 1 and 2 (default 0.05)")
    ap.add_argument("--warm", type=int, default=200, help="warm invokes for W (default 200)")
    ap.add_argument("--quick", action="store_true", help="a fast run: fewer samples")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    o = ap.parse_args()

    def dflt(name, full, quick, lo, hi):
        v = getattr(o, name)
        if v is None:
            v = quick if o.quick else full
        if not lo <= v <= hi:
            ap.error("--%s must be in %s..%s" % (name.replace("_", "-"), lo, hi))
        setattr(o, name, v)

    dflt("functions", 20, 5, 1, 1000)
    dflt("updates", 20, 5, 1, 1000)
    dflt("rounds", 5, 1, 1, 50)
    dflt("unchanged", 10, 5, 1, 1000)
    dflt("gap", 1.0, 0.5, 0.1, 60.0)
    if not 1 <= o.reloads <= 100 or not 1 <= o.zip_kb <= 40 * 1024:
        ap.error("--reloads must be in 1..100 and --zip-kb in 1..40960")
    return o


def main():
    o = parse_args()
    R = {"load_avg": os.getloadavg()}
    workdir = tempfile.mkdtemp(prefix="sy-bench-deploy-", dir="/tmp")
    log("work dir %s" % workdir)
    failed = True
    try:
        binary = get_binary(o.broker, workdir)
        alone = bench_create_update(o, binary, workdir, R)
        bench_reload(o, binary, workdir, R)
        bench_load(o, binary, workdir, R, alone)
        for b in Broker.all:
            b.stop()
        print_report(o, R, o.broker)
        failed = False
    except BaseException as e:
        print("deploy_bench: FAILED: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        for b in Broker.all:
            try:
                with open(b.log_path, errors="replace") as f:
                    tail = f.readlines()[-40:]
                print("---- %s (last %d lines) ----\n%s" % (b.log_path, len(tail), "".join(tail)),
                      file=sys.stderr)
            except OSError:
                pass
        if not isinstance(e, BenchError):
            raise
    finally:
        for b in Broker.all:
            try:
                b.stop()
            except Exception:  # noqa: BLE001
                if b.proc is not None and b.proc.poll() is None:
                    b.proc.kill()
        if failed:
            print("deploy_bench: work dir kept: %s" % workdir, file=sys.stderr)
        elif o.keep:
            print("- Work dir kept: %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
