"""An S3 notification handler, unchanged: for each ObjectCreated record it reads the CSV the
record names, sums its `amount` column per `city`, and writes the summary next to the others.

It finds the file the S3 way (bucket + URL-decoded key, the bucket mapped to a local directory)
or, simpler, through switchyard's extension `record["switchyard"]["path"]`.
"""
import csv
import json
import os
import urllib.parse

OUT_DIR = os.environ.get("OUT_DIR", "out")


def handler(event, context):
    for record in event["Records"]:
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        path = record["switchyard"]["path"]
        totals = {}
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                # A bad amount raises: the mapping retries, then moves the file to failed/.
                totals[row["city"]] = totals.get(row["city"], 0) + float(row["amount"])
        summary = {"key": key, "bucket": record["s3"]["bucket"]["name"],
                   "eTag": record["s3"]["object"]["eTag"], "totals": totals}
        os.makedirs(OUT_DIR, exist_ok=True)
        name = key.replace("/", "_") + ".summary.json"
        tmp = os.path.join(OUT_DIR, "." + name)
        with open(tmp, "w") as f:
            json.dump(summary, f, indent=1)
        os.replace(tmp, os.path.join(OUT_DIR, name))
        print("%s: %d cities, %s" % (key, len(totals), totals))
