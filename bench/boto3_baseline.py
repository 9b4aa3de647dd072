#!/usr/bin/python3
"""The Python r2d1 0.2.2's approach, as a baseline: boto3 `upload_file` / `download_file` of one file
after another (boto3's default TransferConfig: multipart above 8 MiB, 10 threads within a file).

    boto3_baseline.py upload SRC_DIR PREFIX
    boto3_baseline.py download PREFIX DEST_DIR

Endpoint, bucket and keys come from BENCH_ENDPOINT, BENCH_BUCKET, BENCH_ACCESS_KEY, BENCH_SECRET_KEY.
Path-style addressing. Run with Debian's /usr/bin/python3 (python3-boto3).
"""
import os
import sys

import boto3
from botocore.config import Config


def client():
    return boto3.client(
        "s3",
        endpoint_url=os.environ["BENCH_ENDPOINT"],
        aws_access_key_id=os.environ["BENCH_ACCESS_KEY"],
        aws_secret_access_key=os.environ["BENCH_SECRET_KEY"],
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )


def upload(src, prefix):
    s3, bucket = client(), os.environ["BENCH_BUCKET"]
    for root, _dirs, files in os.walk(src):
        for name in sorted(files):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, src).replace(os.sep, "/")
            s3.upload_file(path, bucket, prefix.rstrip("/") + "/" + rel)


def download(prefix, dest):
    s3, bucket = client(), os.environ["BENCH_BUCKET"]
    prefix = prefix.rstrip("/") + "/"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            path = os.path.join(dest, obj["Key"][len(prefix):])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            s3.download_file(bucket, obj["Key"], path)


if __name__ == "__main__":
    verb, a, b = sys.argv[1:4]
    upload(a, b) if verb == "upload" else download(a, b)
