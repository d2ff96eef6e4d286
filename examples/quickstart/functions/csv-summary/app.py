"""Quickstart file-drop handler: an ordinary S3 notification handler, unchanged.

For each ObjectCreated record it reads the CSV the record names and summarises it: rows, columns,
and for every numeric column its sum, min, max and mean. The summary is the function's result
and is also written to $OUT_DIR/<key>.json (a mapping, like Lambda's event source mappings, has
no on_success destination: what a handler wants to keep it writes itself).

A file it cannot summarise (a row whose field count differs from the header's, no header, not
UTF-8) raises: the mapping retries it, then the broker moves it to failed/ and writes the
on-failure record.

It finds the file through switchyard's extension `record["switchyard"]["path"]`; S3 code that
rebuilds the path from the bucket and the URL-decoded key works too.
"""
import csv
import json
import os
import urllib.parse

OUT_DIR = os.environ.get("OUT_DIR", "out")


class BadCsv(Exception):
    pass


def summarise(f, key):
    reader = csv.reader(f)
    header = next(reader, None)
    if not header:
        raise BadCsv("%s: empty file, no header row" % key)
    numeric = {c: True for c in header}
    sums = {c: 0.0 for c in header}
    mins, maxs = {}, {}
    rows = 0
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise BadCsv("%s line %d: %d fields, the header has %d" % (key, line, len(row), len(header)))
        rows += 1
        for col, cell in zip(header, row):
            if not numeric[col]:
                continue
            try:
                v = float(cell)
            except ValueError:
                numeric[col] = False
                continue
            sums[col] += v
            mins[col] = min(mins.get(col, v), v)
            maxs[col] = max(maxs.get(col, v), v)
    stats = {c: {"sum": round(sums[c], 6), "min": mins[c], "max": maxs[c],
                 "mean": round(sums[c] / rows, 6)}
             for c in header if numeric[c] and rows}
    return {"key": key, "rows": rows, "columns": header, "numeric": stats}


def handler(event, context):
    results = []
    for record in event["Records"]:
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        with open(record["switchyard"]["path"], newline="", encoding="utf-8") as f:
            summary = summarise(f, key)
        summary["eTag"] = record["s3"]["object"]["eTag"]
        summary["requestId"] = context.aws_request_id
        os.makedirs(OUT_DIR, exist_ok=True)
        name = key.replace("/", "_") + ".json"
        tmp = os.path.join(OUT_DIR, "." + name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(summary, f, indent=1)
        os.replace(tmp, os.path.join(OUT_DIR, name))   # readers never see a half-written file
        print("%s: %d rows, %d columns, numeric: %s" % (
            key, summary["rows"], len(summary["columns"]), ", ".join(summary["numeric"]) or "none"))
        results.append(summary)
    return {"summaries": results}
