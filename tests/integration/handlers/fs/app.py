"""Handlers of the file-drop source tests (tests/integration/test_esm_fs.c).

Each record is written to OUT/<name>/<key>.<n> (the key with '/' as '%2F'; n counts the
deliveries of that key) holding the record's JSON plus what the handler found on disk:
"read_md5" (the MD5 of the file it opened at switchyard.path) and "read_ok" (whether that
matches the record's eTag). OUT comes from the function's environment.
"""
import base64
import hashlib
import json
import os

OUT = os.environ.get("OUT", "/tmp")


def _path(rec):
    sy = rec.get("switchyard", {})
    if "path" in sy:
        return os.fsencode(sy["path"])
    return base64.b64decode(sy["pathBase64"])


def _record(name, rec, extra):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    key = rec["s3"]["object"]["key"].replace("/", "%2F")
    n = 1
    while os.path.exists(os.path.join(d, "%s.%d" % (key, n))):
        n += 1
    path = os.path.join(d, "%s.%d" % (key, n))
    tmp = path + ".tmp"
    out = dict(rec)
    out.update(extra)
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.replace(tmp, path)


def _read(rec):
    with open(_path(rec), "rb") as f:
        data = f.read()
    md5 = hashlib.md5(data).hexdigest()
    return data, {"read_md5": md5, "read_ok": md5 == rec["s3"]["object"]["eTag"]}


def record(event, context):
    """Reads every file it is given and records it."""
    for rec in event["Records"]:
        _, extra = _read(rec)
        _record("record", rec, extra)
    return None


def poison(event, context):
    """Fails the whole batch when a file holds the word poison; records the others."""
    seen = []
    for rec in event["Records"]:
        data, extra = _read(rec)
        if b"poison" in data:
            raise RuntimeError("poison file " + rec["s3"]["object"]["key"])
        seen.append((rec, extra))
    for rec, extra in seen:
        _record("poison", rec, extra)
    return None
