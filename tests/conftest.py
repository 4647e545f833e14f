"""Fixtures shared by the test modules."""
from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

PUBLISHED = ("events", "feedback", "quarantine", "duplicates", "identity_links", "identity_map", "identity_conflicts",
             "_restricted/quarantine_raw")


def _published_rows(out: Path) -> dict[str, list[dict]]:
    return {str(p.relative_to(out)): pq.read_table(p).drop_columns(["run_id"]).to_pylist()
            for table in PUBLISHED for p in sorted((out / table).rglob("*.parquet"))}


@pytest.fixture
def published_rows():
    """`published_rows(out)`: rows of every published partition file under `out`, in file order, without
    run_id (the one per-run column), by file path relative to `out`."""
    return _published_rows


def _relocated(tables: dict[str, list[dict]], old: str, new: str) -> dict[str, list[dict]]:
    return {name: [{k: v.replace(old, new) if isinstance(v, str) else v for k, v in row.items()} for row in rows]
            for name, rows in tables.items()}


@pytest.fixture
def relocated():
    """`relocated(published_rows(out), old, new)`: the rows with the input directory `old` replaced by `new`
    wherever a text names it (source_file, kept_source_file, the message of a conflicting duplicate)."""
    return _relocated


class ObjectStore:
    """An S3-compatible server on a free loopback port (moto's server mode, in a thread of the test process),
    with the Beam options that reach it and a boto3 client for the tests' own uploads and listings."""

    REGION, KEY, SECRET = "us-east-1", "motpipe-test", "motpipe-test-secret"

    def __init__(self, endpoint: str):
        import boto3

        self.endpoint = endpoint
        self.beam_args = [f"--s3_endpoint_url={endpoint}", f"--s3_access_key_id={self.KEY}",
                          f"--s3_secret_access_key={self.SECRET}", f"--s3_region_name={self.REGION}"]
        self.client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=self.KEY,
                                   aws_secret_access_key=self.SECRET, region_name=self.REGION)
        self._buckets = 0

    def bucket(self, prefix: str = "motpipe") -> str:
        """A new empty bucket: `s3://<prefix>-<n>`."""
        self._buckets += 1
        name = f"{prefix}-{self._buckets}"
        self.client.create_bucket(Bucket=name)
        return f"s3://{name}"

    @staticmethod
    def _split(url: str) -> tuple[str, str]:
        bucket, _, key = url.removeprefix("s3://").partition("/")
        return bucket, key

    def upload(self, local: Path, url: str) -> str:
        self.client.upload_file(str(local), *self._split(url))
        return url

    def put(self, url: str, data: bytes) -> str:
        bucket, key = self._split(url)
        self.client.put_object(Bucket=bucket, Key=key, Body=data)
        return url

    def keys(self, url: str) -> list[str]:
        """Keys under `url` (a bucket or a prefix), relative to it, sorted."""
        bucket, prefix = self._split(url)
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"][len(prefix):] for page in pages for o in page.get("Contents", []))

    def download(self, url: str, local: Path) -> Path:
        """Copy every object under `url` to the same relative path under `local`."""
        bucket, prefix = self._split(url)
        for key in self.keys(url):
            target = local / key
            target.parent.mkdir(parents=True, exist_ok=True)
            self.client.download_file(bucket, f"{prefix.rstrip('/')}/{key}" if prefix else key, str(target))
        return local


def _serve_s3(connection) -> None:
    """Child process: moto's S3-compatible server on a free loopback port; sends the port, serves until killed."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    connection.send(server.get_host_and_port())
    try:
        connection.recv()  # blocks until the parent closes its end of the pipe (or dies)
    except EOFError:
        server.stop()


@pytest.fixture(scope="session")
def object_store():
    """One local S3 server for the whole session, in its own process (so it does not share the GIL with the
    pipeline under test), on loopback only, ended with the session; each test takes its own buckets with
    `object_store.bucket()`."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    server = context.Process(target=_serve_s3, args=(child,), daemon=True)
    server.start()
    child.close()  # the child's end lives in the child only: closing ours is what tells it to stop
    try:
        if not parent.poll(60):
            raise RuntimeError("the local S3 server did not start within 60 s")
        host, port = parent.recv()
        yield ObjectStore(f"http://{host}:{port}")
    finally:
        parent.close()
        server.join(10)
        if server.is_alive():
            server.terminate()
            server.join()
