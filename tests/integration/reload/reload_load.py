#!/usr/bin/env python3
"""Reloads under load (run by tests/integration/test_reload.c and bench/reload_bench.py's
source of truth for the rule): 8 clients invoke `loaded` without pause while the config file is
rewritten and reloaded RELOADS times, each time with a new TAG for `loaded`. Every request must
be answered 200 without a function error, and after each reload the new TAG must show up.

Usage: reload_load.py ENDPOINT CONFIG [RELOADS]   (CONFIG holds the line `TAG: '0'`)
Prints `requests=N failed=0 reloads=R reload_ms=[...]` and exits 0, or 1 with the failures."""
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request

ENDPOINT, CONFIG = sys.argv[1], sys.argv[2]
RELOADS = int(sys.argv[3]) if len(sys.argv) > 3 else 5
TEMPLATE = open(CONFIG).read()
assert "TAG: '0'" in TEMPLATE, "the config needs a line TAG: '0'"


def post(path, body, timeout=30):
    req = urllib.request.Request(ENDPOINT + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def invoke():
    return post("/2015-03-31/functions/loaded/invocations", {})


lock = threading.Lock()
stop = threading.Event()
stats = {"ok": 0, "failed": []}


def worker():
    while not stop.is_set():
        try:
            status, headers, body = invoke()
        except Exception as e:  # a refused or dropped connection is a failure too
            status, headers, body = -1, {}, repr(e).encode()
        with lock:
            if status == 200 and "X-Amz-Function-Error" not in headers:
                stats["ok"] += 1
            else:
                stats["failed"].append((status, body[:300]))


def tag_now():
    status, _, body = invoke()
    if status != 200:
        return None
    return json.loads(body)["env"].get("TAG")


threads = [threading.Thread(target=worker) for _ in range(8)]
for t in threads:
    t.start()
reload_ms = []
try:
    time.sleep(0.3)
    for i in range(1, RELOADS + 1):
        tmp = CONFIG + ".tmp"
        with open(tmp, "w") as f:
            f.write(TEMPLATE.replace("TAG: '0'", "TAG: '%d'" % i))
        os.rename(tmp, CONFIG)
        t0 = time.monotonic()
        status, _, body = post("/switchyard/v1/reload", {})
        reload_ms.append(round((time.monotonic() - t0) * 1000, 1))
        report = json.loads(body)
        assert status == 200 and report["ok"], (status, report)
        assert report["functions"]["updated"] == ["loaded"], report
        deadline = time.monotonic() + 15
        while tag_now() != str(i):
            assert time.monotonic() < deadline, "TAG %d never showed up" % i
            time.sleep(0.02)
        time.sleep(0.2)
finally:
    stop.set()
    for t in threads:
        t.join(60)
print("requests=%d failed=%d reloads=%d reload_ms=%s" % (stats["ok"], len(stats["failed"]),
                                                         RELOADS, reload_ms))
if stats["failed"]:
    print("failures:", stats["failed"][:10])
    sys.exit(1)
