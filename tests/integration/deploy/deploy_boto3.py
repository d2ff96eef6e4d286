#!/usr/bin/env python3
"""The write API through Debian's boto3, against a running broker (tests/integration/test_deploy.c
starts it and runs this script). Usage: deploy_boto3.py ENDPOINT TOKEN WORKDIR

Each check prints `ok: ...`; the first failure raises (exit status 1 with a traceback). Zips are
built here with the standard zipfile module, so the archives' entries (modes, symlinks, `..`)
are exactly what each check needs."""
import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile

import boto3
import botocore.config
import botocore.exceptions

ENDPOINT, TOKEN, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
ROLE = "arn:aws:iam::000000000000:role/test"

lam = boto3.client(
    "lambda",
    endpoint_url=ENDPOINT,
    region_name="us-east-1",
    aws_access_key_id=TOKEN,
    aws_secret_access_key="x",
    config=botocore.config.Config(retries={"max_attempts": 0}, read_timeout=60,
                                  connect_timeout=10),
)


def ok(what):
    print("ok:", what, flush=True)


def handler_src(tag):
    return (
        "import json, os, time\n"
        "def handler(event, context):\n"
        "    if event.get('sleep'):\n"
        "        time.sleep(event['sleep'])\n"
        "    return {'tag': %r, 'version': context.function_version,\n"
        "            'env_version': os.environ.get('AWS_LAMBDA_FUNCTION_VERSION'),\n"
        "            'arn': context.invoked_function_arn}\n" % tag
    )


def make_zip(files):
    """files: name -> (bytes or str, mode) ; a mode with S_IFLNK makes a symlink."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, (data, mode) in files.items():
            zi = zipfile.ZipInfo(name)
            zi.external_attr = (mode & 0xFFFF) << 16
            zi.create_system = 3
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
    return buf.getvalue()


def code_zip(tag):
    return make_zip({"app.py": (handler_src(tag), 0o100644)})


def invoke(name, payload=None, qualifier=None, tail=False):
    kw = {"FunctionName": name, "Payload": json.dumps(payload or {}).encode()}
    if qualifier:
        kw["Qualifier"] = qualifier
    if tail:
        kw["LogType"] = "Tail"
    r = lam.invoke(**kw)
    body = json.loads(r["Payload"].read())
    assert "FunctionError" not in r, (r, body)
    return r, body


def expect_error(code, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except botocore.exceptions.ClientError as e:
        got = e.response["Error"]["Code"]
        assert got == code, "expected %s, got %s: %s" % (code, got, e.response["Error"])
        return e
    raise AssertionError("expected %s, the call succeeded" % code)


def create(name, zipbytes, **kw):
    return lam.create_function(FunctionName=name, Runtime=kw.pop("Runtime", "python3.11"),
                               Role=ROLE, Handler=kw.pop("Handler", "app.handler"),
                               Code={"ZipFile": zipbytes}, **kw)


# ---- versions and weighted aliases -------------------------------------------------------------
z1 = code_zip("one")
c = create("weights", z1, Timeout=10)
assert c["CodeSha256"] == base64.b64encode(hashlib.sha256(z1).digest()).decode(), c
assert c["CodeSize"] == len(z1) and c["Version"] == "$LATEST", c
ok("CreateFunction answers CodeSha256/CodeSize of the zip")
v1 = lam.publish_version(FunctionName="weights")
assert v1["Version"] == "1", v1
again = lam.publish_version(FunctionName="weights")
assert again["Version"] == "1", again
ok("PublishVersion without a change returns the same version")
lam.update_function_code(FunctionName="weights", ZipFile=code_zip("two"))
v2 = lam.publish_version(FunctionName="weights", Description="second")
assert v2["Version"] == "2" and v2["Description"] == "second", v2
vers = [v["Version"] for v in lam.list_versions_by_function(FunctionName="weights")["Versions"]]
assert vers == ["$LATEST", "1", "2"], vers
allv = [(f["FunctionName"], f["Version"]) for f in
        lam.list_functions(FunctionVersion="ALL")["Functions"]]
assert ("weights", "1") in allv and ("weights", "2") in allv and ("weights", "$LATEST") in allv, allv
assert all(f["Version"] == "$LATEST" for f in lam.list_functions()["Functions"])
ok("ListVersionsByFunction, ListFunctions with FunctionVersion=ALL")

r, b = invoke("weights", qualifier="1")
assert b["tag"] == "one" and b["version"] == "1" and b["env_version"] == "1", b
assert r["ExecutedVersion"] == "1", r
assert b["arn"].endswith(":function:weights:1"), b
r, b = invoke("weights", qualifier="2")
assert b["tag"] == "two" and r["ExecutedVersion"] == "2", (r, b)
ok("qualified invokes run their version's code, ExecutedVersion and function_version say which")

al = lam.create_alias(FunctionName="weights", Name="live", FunctionVersion="1",
                      RoutingConfig={"AdditionalVersionWeights": {"2": 0.3}})
assert al["FunctionVersion"] == "1" and al["AliasArn"].endswith(":weights:live"), al
expect_error("ResourceConflictException", lam.create_alias, FunctionName="weights", Name="live",
             FunctionVersion="1")
expect_error("ResourceNotFoundException", lam.create_alias, FunctionName="weights", Name="x",
             FunctionVersion="9")
counts = {"1": 0, "2": 0}
for _ in range(1000):
    r, b = invoke("weights", qualifier="live")
    counts[r["ExecutedVersion"]] += 1
    assert b["arn"].endswith(":weights:live"), b
share = counts["2"] / 1000.0
assert 0.25 <= share <= 0.35, counts
ok("alias with weights: %s over 1000 invokes" % counts)
upd = lam.update_alias(FunctionName="weights", Name="live", FunctionVersion="2",
                       RoutingConfig={"AdditionalVersionWeights": {}})
assert upd["FunctionVersion"] == "2", upd
r, b = invoke("weights", qualifier="live")
assert r["ExecutedVersion"] == "2", r
expect_error("PreconditionFailedException", lam.update_alias, FunctionName="weights",
             Name="live", FunctionVersion="1", RevisionId="00000000-0000-0000-0000-000000000000")
names = [a["Name"] for a in lam.list_aliases(FunctionName="weights")["Aliases"]]
assert names == ["live"], names
assert lam.get_alias(FunctionName="weights", Name="live")["FunctionVersion"] == "2"
ok("UpdateAlias, RevisionId check, ListAliases, GetAlias")
expect_error("ResourceConflictException", lam.delete_function, FunctionName="weights",
             Qualifier="2")
ok("a version an alias points at cannot be deleted")

# ---- provisioned concurrency on an alias ---------------------------------------------------------
expect_error("InvalidParameterValueException", lam.put_provisioned_concurrency_config,
             FunctionName="weights", Qualifier="$LATEST", ProvisionedConcurrentExecutions=1)
lam.create_alias(FunctionName="weights", Name="warm", FunctionVersion="1")
p = lam.put_provisioned_concurrency_config(FunctionName="weights", Qualifier="warm",
                                           ProvisionedConcurrentExecutions=1)
assert p["RequestedProvisionedConcurrentExecutions"] == 1, p
assert p["Status"] in ("IN_PROGRESS", "READY"), p
deadline = time.time() + 30
while time.time() < deadline:
    g = lam.get_provisioned_concurrency_config(FunctionName="weights", Qualifier="warm")
    if g["Status"] == "READY":
        break
    time.sleep(0.05)
assert g["Status"] == "READY" and g["AvailableProvisionedConcurrentExecutions"] == 1, g
r = lam.invoke(FunctionName="weights", Qualifier="warm", LogType="Tail", Payload=b"{}")
tail = base64.b64decode(r["LogResult"]).decode()
assert "Init Duration" not in tail, tail
ok("provisioned concurrency on an alias: READY, and its first invoke has no cold start")
lam.delete_provisioned_concurrency_config(FunctionName="weights", Qualifier="warm")
expect_error("ProvisionedConcurrencyConfigNotFoundException",
             lam.get_provisioned_concurrency_config, FunctionName="weights", Qualifier="warm")
ok("DeleteProvisionedConcurrencyConfig")

# ---- reserved concurrency ------------------------------------------------------------------------
assert lam.put_function_concurrency(FunctionName="weights",
                                    ReservedConcurrentExecutions=5)[
    "ReservedConcurrentExecutions"] == 5
assert lam.get_function(FunctionName="weights")["Concurrency"][
    "ReservedConcurrentExecutions"] == 5
lam.delete_function_concurrency(FunctionName="weights")
assert "Concurrency" not in lam.get_function(FunctionName="weights")
ok("Put/DeleteFunctionConcurrency")

# ---- an update while a slow invocation runs -------------------------------------------------------
create("slow", code_zip("old"), Timeout=20)
invoke("slow")  # warm
result = {}


def slow_call():
    result["r"] = invoke("slow", {"sleep": 2})


th = threading.Thread(target=slow_call)
th.start()
time.sleep(0.5)  # the slow invocation is running on the old code
t0 = time.time()
lam.update_function_code(FunctionName="slow", ZipFile=code_zip("new"))
_, b = invoke("slow")
assert b["tag"] == "new", b
assert time.time() - t0 < 1.5, "the update waited for the running invocation"
th.join(30)
assert result["r"][1]["tag"] == "old", result
ok("UpdateFunctionCode during a slow invocation: it answers from the old code, the next runs "
   "the new")

# ---- configuration, states, errors ---------------------------------------------------------------
cfg = lam.update_function_configuration(FunctionName="slow", MemorySize=256,
                                        Environment={"Variables": {"A": "1"}})
assert cfg["MemorySize"] == 256 and cfg["Environment"]["Variables"] == {"A": "1"}, cfg
g = lam.get_function(FunctionName="slow")["Configuration"]
assert g["State"] == "Active" and g["LastUpdateStatus"] == "Successful", g
assert g["Runtime"] == "python3.11", g
expect_error("PreconditionFailedException", lam.update_function_configuration,
             FunctionName="slow", Timeout=5, RevisionId="nope")
expect_error("InvalidParameterValueException", lam.update_function_configuration,
             FunctionName="slow", Environment={"Variables": {"AWS_REGION": "x"}})
expect_error("ResourceConflictException", create, "slow", code_zip("x"))
expect_error("InvalidParameterValueException", create, "badrt", code_zip("x"),
             Runtime="python2.7")
expect_error("InvalidParameterValueException", lam.update_function_code, FunctionName="echo-py",
             ZipFile=code_zip("x"))
ok("UpdateFunctionConfiguration, RevisionId, reserved variables, name in use, unknown "
   "runtime, the file's function refused")

# ---- archives that are refused -------------------------------------------------------------------
bad = {
    "zip-slip": make_zip({"../evil.py": ("x", 0o100644), "app.py": (handler_src("x"), 0o100644)}),
    "absolute": make_zip({"/tmp/evil.py": ("x", 0o100644)}),
    "link-out": make_zip({"app.py": (handler_src("x"), 0o100644),
                          "leak": ("/etc/passwd", 0o120777)}),
    "corrupt": code_zip("x")[:-30] + b"garbage-garbage-garbage-garbage",
    "not-zip": b"this is not a zip at all",
    "bomb": make_zip({"zeros": (b"\0" * (64 << 20), 0o100644)}),
}
for what, data in bad.items():
    e = expect_error("InvalidParameterValueException", create, "bad-" + what, data)
    msg = e.response["Error"].get("Message", "") or e.response["Error"].get("message", "")
    assert msg, e.response
    expect_error("ResourceNotFoundException", lam.get_function, FunctionName="bad-" + what)
for root, dirs, files in os.walk(WORK):
    assert "evil.py" not in files and "leak" not in files, (root, files)
ok("zip-slip, absolute paths, a symlink out, corrupt and non-zip archives and a zip bomb are "
   "refused")

# ---- a handler missing from the package fails at init, not at upload -------------------------------
create("nohandler", code_zip("x"), Handler="missing.handler")
r = lam.invoke(FunctionName="nohandler", Payload=b"{}")
body = json.loads(r["Payload"].read())
assert r.get("FunctionError") == "Unhandled", (r, body)
assert body["errorType"] == "Runtime.ImportModuleError", body
ok("a missing handler module is Runtime.ImportModuleError at init")

# ---- event invoke config ----------------------------------------------------------------------
fail_src = "def handler(event, context):\n    raise ValueError('always fails')\n"
create("failer", make_zip({"app.py": (fail_src, 0o100644)}))
out_dir = os.path.join(WORK, "eic-failures")
e = lam.put_function_event_invoke_config(
    FunctionName="failer", MaximumRetryAttempts=0, MaximumEventAgeInSeconds=600,
    DestinationConfig={"OnFailure": {"Destination": "file:" + out_dir}})
assert e["MaximumRetryAttempts"] == 0 and e["FunctionArn"].endswith(":failer:$LATEST"), e
g = lam.get_function_event_invoke_config(FunctionName="failer")
assert g["MaximumEventAgeInSeconds"] == 600, g
u = lam.update_function_event_invoke_config(FunctionName="failer", MaximumEventAgeInSeconds=900)
assert u["MaximumEventAgeInSeconds"] == 900 and u["MaximumRetryAttempts"] == 0, u
assert len(lam.list_function_event_invoke_configs(FunctionName="failer")[
    "FunctionEventInvokeConfigs"]) == 1
expect_error("InvalidParameterValueException", lam.put_function_event_invoke_config,
             FunctionName="failer",
             DestinationConfig={"OnFailure": {"Destination": "arn:aws:sqs:us-east-1:1:q"}})
r = lam.invoke(FunctionName="failer", InvocationType="Event", Payload=b'{"n": 1}')
assert r["StatusCode"] == 202, r
deadline = time.time() + 20
while time.time() < deadline and not (os.path.isdir(out_dir) and os.listdir(out_dir)):
    time.sleep(0.05)
assert os.path.isdir(out_dir) and os.listdir(out_dir), "no on-failure record"
rec = json.load(open(os.path.join(out_dir, sorted(os.listdir(out_dir))[0])))
assert rec["requestContext"]["condition"] == "RetriesExhausted", rec
assert rec["requestContext"]["approximateInvokeCount"] == 1, rec
lam.delete_function_event_invoke_config(FunctionName="failer")
expect_error("ResourceNotFoundException", lam.get_function_event_invoke_config,
             FunctionName="failer")
ok("Put/Get/Update/List/DeleteFunctionEventInvokeConfig, and its policy and destination apply "
   "to Event invokes")

rec_dir = os.path.join(WORK, "recorded")
rec_src = ("import json, os, uuid\n"
           "def handler(event, context):\n"
           "    d = os.environ['REC_DIR']\n"
           "    os.makedirs(d, exist_ok=True)\n"
           "    p = os.path.join(d, str(uuid.uuid4()) + '.json')\n"
           "    open(p + '.tmp', 'w').write(json.dumps({'event': event,\n"
           "                                           'version': context.function_version}))\n"
           "    os.rename(p + '.tmp', p)\n"
           "    return {}\n")
create("recorder", make_zip({"app.py": (rec_src, 0o100644)}),
       Environment={"Variables": {"REC_DIR": rec_dir}})
lam.publish_version(FunctionName="recorder")
lam.create_alias(FunctionName="recorder", Name="rec", FunctionVersion="1")
create("okfn", code_zip("ok"))
lam.put_function_event_invoke_config(
    FunctionName="okfn",
    DestinationConfig={"OnSuccess": {
        "Destination": "arn:aws:lambda:us-east-1:000000000000:function:recorder:rec"}})
lam.invoke(FunctionName="okfn", InvocationType="Event", Payload=b'{"hello": 1}')
deadline = time.time() + 20
while time.time() < deadline and not (os.path.isdir(rec_dir) and
                                      [f for f in os.listdir(rec_dir) if f.endswith(".json")]):
    time.sleep(0.05)
files = [f for f in os.listdir(rec_dir) if f.endswith(".json")] if os.path.isdir(rec_dir) else []
assert files, "the on-success destination (an alias) was never invoked"
got = json.load(open(os.path.join(rec_dir, files[0])))
assert got["version"] == "1", got
assert got["event"]["requestContext"]["condition"] == "Success", got
assert got["event"]["requestPayload"] == {"hello": 1}, got
ok("an on-success destination naming an alias runs the alias's version")

# ---- an event source mapping to an alias follows the alias ----------------------------------------
drop_dir = os.path.join(WORK, "drop-to-alias")
os.makedirs(drop_dir)
lam.update_function_configuration(FunctionName="recorder",
                                  Environment={"Variables": {"REC_DIR": rec_dir, "GEN": "2"}})
assert lam.publish_version(FunctionName="recorder")["Version"] == "2"
m = lam.create_event_source_mapping(EventSourceArn="file:" + drop_dir,
                                    FunctionName="recorder:rec", BatchSize=1)
assert m["FunctionArn"].endswith(":function:recorder:rec"), m


def drop_and_version(name):
    before = set(f for f in os.listdir(rec_dir) if f.endswith(".json"))
    with open(os.path.join(drop_dir, "." + name), "w") as f:
        f.write("{}")
    os.rename(os.path.join(drop_dir, "." + name), os.path.join(drop_dir, name))
    deadline = time.time() + 20
    while time.time() < deadline:
        for f in set(os.listdir(rec_dir)) - before:
            if f.endswith(".json"):
                rec = json.load(open(os.path.join(rec_dir, f)))
                if "Records" in rec["event"]:
                    return rec["version"]
        time.sleep(0.05)
    raise AssertionError("the mapping never invoked recorder:rec for " + name)


assert drop_and_version("one.json") == "1"
lam.update_alias(FunctionName="recorder", Name="rec", FunctionVersion="2")
assert drop_and_version("two.json") == "2"
lam.delete_event_source_mapping(UUID=m["UUID"])
ok("a mapping created for recorder:rec runs the alias's version, and follows an alias update")
# ---- layers ---------------------------------------------------------------------------------------
PYV = "python%d.%d" % sys.version_info[:2]  # the local python: the broker's too


def b64sha(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def publish(name, files, **kw):
    data = make_zip(files)
    r = lam.publish_layer_version(LayerName=name, Content={"ZipFile": data}, **kw)
    assert r["Content"]["CodeSha256"] == b64sha(data), r
    assert r["Content"]["CodeSize"] == len(data), r
    return r, data


def cold(name):
    """A new configuration, so that the next invoke starts a new environment."""
    lam.update_function_configuration(FunctionName=name,
                                      Environment={"Variables": {"COLD": str(time.time())}})


pylib, pylib_zip = publish("pylib", {
    "python/lib/%s/site-packages/mylib.py" % PYV: ("WHERE = 'site-packages'\n", 0o100644),
    "python/mylib2.py": ("WHERE = 'python'\n", 0o100644),
}, Description="python libs", CompatibleRuntimes=["python3.11", "python3.12"],
    CompatibleArchitectures=["x86_64", "arm64"], LicenseInfo="MIT")
assert pylib["Version"] == 1, pylib
assert pylib["LayerArn"] == "arn:aws:lambda:us-east-1:000000000000:layer:pylib", pylib
assert pylib["LayerVersionArn"] == pylib["LayerArn"] + ":1", pylib
assert pylib["Description"] == "python libs" and pylib["LicenseInfo"] == "MIT", pylib
assert pylib["CompatibleRuntimes"] == ["python3.11", "python3.12"], pylib
assert pylib["CreatedDate"].endswith("+0000"), pylib
ok("PublishLayerVersion: version 1, ARNs, CodeSha256/CodeSize of the zip")

c = create("uses-pylib", make_zip({"app.py": (
    "import mylib, mylib2\n"
    "def handler(event, context):\n"
    "    return {'tag': 'pylib', 'a': mylib.WHERE, 'b': mylib2.WHERE}\n", 0o100644)}),
    Layers=[pylib["LayerVersionArn"]])
assert c["Layers"] == [{"Arn": pylib["LayerVersionArn"], "CodeSize": len(pylib_zip)}], c
_, b = invoke("uses-pylib")
assert b == {"tag": "pylib", "a": "site-packages", "b": "python"}, b
g = lam.get_function_configuration(FunctionName="uses-pylib")
assert g["Layers"] == c["Layers"], g
ok("a Python layer: python/lib/%s/site-packages and python/ are on the path; "
   "FunctionConfiguration.Layers" % PYV)

tool, _ = publish("tools", {"bin/layertool": ("#!/bin/sh\necho tool-ran \"$@\"\n", 0o100755)})
first, _ = publish("first", {"python/over.py": ("WHO = 'first'\n", 0o100644),
                             "python/onlyfirst.py": ("X = 1\n", 0o100644)})
second, _ = publish("second", {"python/over.py": ("WHO = 'second'\n", 0o100644)})
create("uses-order", make_zip({"app.py": (
    "import subprocess, over, onlyfirst\n"
    "def handler(event, context):\n"
    "    return {'over': over.WHO, 'tool': subprocess.check_output(['layertool', 'x'])"
    ".decode().strip()}\n", 0o100644)}),
    Layers=[tool["LayerVersionArn"], first["LayerVersionArn"], second["LayerVersionArn"]])
_, b = invoke("uses-order")
assert b == {"over": "second", "tool": "tool-ran x"}, b
ok("bin/ of a layer is on PATH; a later layer overwrites a file of an earlier one")
u = lam.update_function_configuration(
    FunctionName="uses-order",
    Layers=[tool["LayerVersionArn"], second["LayerVersionArn"], first["LayerVersionArn"]])
assert [l["Arn"] for l in u["Layers"]] == [tool["LayerVersionArn"], second["LayerVersionArn"],
                                            first["LayerVersionArn"]], u
_, b = invoke("uses-order")
assert b["over"] == "first", b
ok("UpdateFunctionConfiguration with Layers in another order: the new last one wins")

node = shutil.which("node")
if node is not None:
    major = int(subprocess.check_output([node, "--version"]).decode().strip().lstrip("v")
                .split(".")[0])
    nrt = "nodejs%d.x" % major if major in (18, 20, 22) else "nodejs18.x"
    nodemod, _ = publish("nodemod", {
        "nodejs/node_modules/mymod/index.js": ("module.exports = {who: 'mymod'};\n", 0o100644)},
        CompatibleRuntimes=[nrt])
    create("uses-nodemod", make_zip({"index.js": (
        "const m = require('mymod');\n"
        "exports.handler = async () => ({who: m.who});\n", 0o100644)}),
        Runtime=nrt, Handler="index.handler", Layers=[nodemod["LayerVersionArn"]])
    _, b = invoke("uses-nodemod")
    assert b == {"who": "mymod"}, b
    ok("a Node layer: nodejs/node_modules is on NODE_PATH (%s)" % nrt)
else:
    ok("no node here: the Node layer is not tried")

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "..", "..", "handlers", "provided", "bootstrap")) as f:
    bootstrap = f.read()
rt, _ = publish("bash-runtime", {"bootstrap": (bootstrap, 0o100755)},
                CompatibleRuntimes=["provided.al2023"])
create("custom-rt", make_zip({"README": ("the runtime is a layer\n", 0o100644)}),
       Runtime="provided.al2023", Handler="echo", Layers=[rt["LayerVersionArn"]])
_, b = invoke("custom-rt", {"through": "a layer's bootstrap"})
assert b == {"through": "a layer's bootstrap"}, b
ok("a provided function whose bootstrap comes from a layer")

pylib2, _ = publish("pylib", {"python/mylib2.py": ("WHERE = 'v2'\n", 0o100644)},
                    CompatibleRuntimes=["python3.12"])
assert pylib2["Version"] == 2, pylib2
names = {l["LayerName"]: l for l in lam.list_layers()["Layers"]}
assert {"pylib", "tools", "first", "second", "bash-runtime"} <= set(names), names
assert names["pylib"]["LatestMatchingVersion"]["Version"] == 2, names["pylib"]
assert names["pylib"]["LayerArn"] == pylib["LayerArn"], names["pylib"]
only = lam.list_layers(CompatibleRuntime="python3.11")["Layers"]
assert [l["LatestMatchingVersion"]["Version"] for l in only if l["LayerName"] == "pylib"] == [1], \
    only
vers = [v["Version"] for v in lam.list_layer_versions(LayerName="pylib")["LayerVersions"]]
assert vers == [2, 1], vers
page = lam.list_layer_versions(LayerName="pylib", MaxItems=1)
assert [v["Version"] for v in page["LayerVersions"]] == [2] and page["NextMarker"], page
page = lam.list_layer_versions(LayerName="pylib", MaxItems=1, Marker=page["NextMarker"])
assert [v["Version"] for v in page["LayerVersions"]] == [1] and "NextMarker" not in page, page
gl = lam.get_layer_version(LayerName="pylib", VersionNumber=1)
assert gl["LayerVersionArn"] == pylib["LayerVersionArn"], gl
assert gl["Content"]["CodeSha256"] == pylib["Content"]["CodeSha256"], gl
assert gl["CompatibleArchitectures"] == ["x86_64", "arm64"], gl
ga = lam.get_layer_version_by_arn(Arn=pylib2["LayerVersionArn"])
assert ga["Version"] == 2 and ga["Description"] == "", ga
expect_error("ResourceNotFoundException", lam.get_layer_version, LayerName="pylib",
             VersionNumber=9)
expect_error("ResourceNotFoundException", lam.get_layer_version, LayerName="nope",
             VersionNumber=1)
assert lam.list_layer_versions(LayerName="nope")["LayerVersions"] == []
ok("ListLayers (with CompatibleRuntime), ListLayerVersions (newest first, paged), "
   "GetLayerVersion, GetLayerVersionByArn")

lam.delete_layer_version(LayerName="pylib", VersionNumber=1)
lam.delete_layer_version(LayerName="pylib", VersionNumber=1)  # again: still 204
lam.delete_layer_version(LayerName="pylib", VersionNumber=2)
expect_error("ResourceNotFoundException", lam.get_layer_version, LayerName="pylib",
             VersionNumber=1)
assert lam.list_layer_versions(LayerName="pylib")["LayerVersions"] == []
assert "pylib" not in [l["LayerName"] for l in lam.list_layers()["Layers"]]
cold("uses-pylib")
_, b = invoke("uses-pylib")
assert b["a"] == "site-packages", b
assert lam.get_function(FunctionName="uses-pylib")["Configuration"]["Layers"][0]["CodeSize"] \
    == len(pylib_zip)
expect_error("InvalidParameterValueException", lam.update_function_configuration,
             FunctionName="uses-order", Layers=[pylib["LayerVersionArn"]])
pylib3, _ = publish("pylib", {"python/mylib2.py": ("WHERE = 'v3'\n", 0o100644)})
assert pylib3["Version"] == 3, pylib3
ok("DeleteLayerVersion: gone from the lists, its functions keep running (a cold start too), "
   "it cannot be added again, and its number is not given again")

six = [publish("six-%d" % i, {"f%d.txt" % i: ("%d\n" % i, 0o100644)})[0]["LayerVersionArn"]
       for i in range(6)]
expect_error("InvalidParameterValueException", create, "six-layers", code_zip("x"),
             Layers=six)
expect_error("ResourceNotFoundException", lam.get_function, FunctionName="six-layers")
five = create("five-layers", code_zip("five"), Layers=six[:5])
assert len(five["Layers"]) == 5, five
expect_error("InvalidParameterValueException", lam.update_function_configuration,
             FunctionName="five-layers", Layers=six)
expect_error("InvalidParameterValueException", create, "twice", code_zip("x"),
             Layers=[tool["LayerVersionArn"], tool["LayerVersionArn"]])
pylib4, _ = publish("pylib", {"python/mylib2.py": ("WHERE = 'v4'\n", 0o100644)})
expect_error("InvalidParameterValueException", create, "two-versions", code_zip("x"),
             Layers=[pylib3["LayerVersionArn"], pylib4["LayerVersionArn"]])
expect_error("InvalidParameterValueException", create, "unknown-layer", code_zip("x"),
             Layers=["arn:aws:lambda:us-east-1:000000000000:layer:nope:1"])
expect_error("ValidationException", create, "bad-arn", code_zip("x"), Layers=["not-an-arn"])
for name in ("twice", "two-versions", "unknown-layer", "bad-arn"):
    expect_error("ResourceNotFoundException", lam.get_function, FunctionName=name)
r = lam.update_function_configuration(FunctionName="five-layers", Layers=[])
assert "Layers" not in r, r
_, b = invoke("five-layers")
assert b["tag"] == "five", b
ok("6 layers, the same layer twice, two versions of one layer, an unknown and a malformed ARN "
   "are refused; Layers: [] takes them away")

# ---- delete ---------------------------------------------------------------------------------------
lam.delete_function(FunctionName="nohandler")
expect_error("ResourceNotFoundException", lam.get_function, FunctionName="nohandler")
expect_error("ResourceNotFoundException", lam.invoke, FunctionName="nohandler", Payload=b"{}")
ok("DeleteFunction")
names = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
assert "weights" in names and "slow" in names and "echo-py" in names, names
ok("ListFunctions shows the file's and the API's functions")
print("all ok")
