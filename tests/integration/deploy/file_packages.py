#!/usr/bin/env python3
"""Packages for the file's `code: x.zip` and `layers:` (tests/integration/test_deploy.c,
test_file_zip_layers). Usage: file_packages.py DIR

Writes into DIR:
  fn.zip       app.py, whose handler imports `shared` (only in layer-dir), `over` (in both
               layers: layer.zip, listed later, must win) and `sitepkg` (layer.zip's
               python/lib/python3.X/site-packages, X the local python's minor), and runs
               `filetool` from layer-dir's bin/ on PATH;
  layer-dir/   python/shared.py, python/over.py, bin/filetool;
  layer.zip    python/over.py, python/lib/python3.X/site-packages/sitepkg.py;
  noboot.zip   a README: a provided function's code whose bootstrap comes from a layer;
  slip.zip     an entry '../evil.py': the broker must refuse to start with it;
  info.json    {"fn": {"sha256": base64, "size": n}, "layer": {"size": n}}.
Zips are built with zipfile so that their entries are exactly these."""
import base64
import hashlib
import json
import os
import sys
import zipfile

DIR = sys.argv[1]
PYV = "python%d.%d" % sys.version_info[:2]

APP = """import os, subprocess
import shared, over, sitepkg

def handler(event, context):
    return {"shared": shared.WHERE, "over": over.WHO, "sitepkg": sitepkg.WHERE,
            "tool": subprocess.check_output(["filetool"]).decode().strip(),
            "task_root": os.environ.get("LAMBDA_TASK_ROOT")}
"""


def make_zip(path, files):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, (data, mode) in files.items():
            zi = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            zi.external_attr = (mode & 0xFFFF) << 16
            zi.create_system = 3
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
    with open(path, "rb") as f:
        return f.read()


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


os.makedirs(DIR, exist_ok=True)
fn = make_zip(os.path.join(DIR, "fn.zip"), {"app.py": (APP, 0o100644)})
write(os.path.join(DIR, "layer-dir/python/shared.py"), "WHERE = 'layer-dir'\n")
write(os.path.join(DIR, "layer-dir/python/over.py"), "WHO = 'layer-dir'\n")
write(os.path.join(DIR, "layer-dir/bin/filetool"), "#!/bin/sh\necho filetool-ran\n", 0o755)
layer = make_zip(os.path.join(DIR, "layer.zip"), {
    "python/over.py": ("WHO = 'layer.zip'\n", 0o100644),
    "python/lib/%s/site-packages/sitepkg.py" % PYV: ("WHERE = 'site-packages'\n", 0o100644),
})
make_zip(os.path.join(DIR, "noboot.zip"), {"README": ("no bootstrap here\n", 0o100644)})
make_zip(os.path.join(DIR, "slip.zip"), {"../evil.py": ("x = 1\n", 0o100644),
                                         "app.py": (APP, 0o100644)})
with open(os.path.join(DIR, "info.json"), "w") as f:
    json.dump({"fn": {"sha256": base64.b64encode(hashlib.sha256(fn).digest()).decode(),
                      "size": len(fn)},
               "layer": {"size": len(layer)}}, f)
print("packages in", DIR)
