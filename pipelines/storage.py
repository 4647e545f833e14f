"""Where a run's files live: Beam's filesystem options for the driver and the workers, and directory trees that
behave the same on a local disk and on an object store (which has no directories, only keys with a prefix).

    >>> options = filesystem_options(["--s3_endpoint_url=http://127.0.0.1:9000", "--runner=DirectRunner"])
    >>> options
    {'s3_endpoint_url': 'http://127.0.0.1:9000'}
    >>> use_filesystem_options(options)   # FileSystems calls of this process now reach that endpoint

Beam hands its pipeline options to the filesystems only inside a pipeline (and on workers that Beam starts
itself); the driver's own calls (matching the inputs, publishing, the lock) and the DaskRunner's workers get
them here.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import threading
from pathlib import Path

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (
    AzureOptions,
    GoogleCloudOptions,
    HadoopFileSystemOptions,
    PipelineOptions,
    S3Options,
)

FILESYSTEM_VIEWS = (S3Options, GoogleCloudOptions, AzureOptions, HadoopFileSystemOptions)


def _option_names(view: type[PipelineOptions]) -> set[str]:
    parser = argparse.ArgumentParser()
    view._add_argparse_args(parser)
    return {action.dest for action in parser._actions if action.dest != "help"}


FILESYSTEM_OPTION_NAMES = frozenset().union(*map(_option_names, FILESYSTEM_VIEWS))


def is_remote(path: str) -> bool:
    """A path of a filesystem other than the local one (`s3://`, `gs://`, ...)."""
    return FileSystems.get_scheme(path) not in (None, "file")


OBJECT_STORES = ("s3", "gs", "azfs")  # an object appears whole when its upload completes; no directories, no rename


def is_object_store(path: str) -> bool:
    return FileSystems.get_scheme(path) in OBJECT_STORES


def filesystem_options(beam_args: list[str]) -> dict:
    """The options among `beam_args` that configure a filesystem (S3, GCS, Azure, HDFS), as a dict."""
    given = PipelineOptions(beam_args).get_all_options(drop_default=True)
    return {name: value for name, value in given.items() if name in FILESYSTEM_OPTION_NAMES}


_options: dict | None = None  # this process's filesystem options, as last set by use_filesystem_options


def use_filesystem_options(options: dict) -> None:
    """Make this process's FileSystems calls use `options` (see filesystem_options). Setting the options this
    process already uses keeps their object, and so the S3 client shared under it (every DoFn setup calls this)."""
    global _options
    if options == _options:
        return
    _options = dict(options)
    FileSystems.set_options(PipelineOptions.from_dictionary(options))
    _share_s3_clients()


def s3_client():
    """A boto3 S3 client with this process's S3 options, built as Beam's S3 filesystem builds its own (for
    what Beam's filesystem API cannot do: conditional puts)."""
    from apache_beam.io.aws.clients.s3 import boto3_client

    _share_s3_clients()
    return boto3_client.Client(options=PipelineOptions.from_dictionary(_options or {})).client


def delete_tree(path: str) -> None:
    """Delete the directory `path` and everything under it, if there is anything: on an object store, every
    object whose key starts with `path/`."""
    if not is_remote(path):
        if FileSystems.exists(path):
            FileSystems.delete([path])
        return
    found = list_tree(path)
    if found:
        FileSystems.delete(found)


def list_tree(path: str) -> list[str]:
    """Every file under the directory `path`, sorted."""
    return sorted(m.path for m in FileSystems.match([FileSystems.join(path, "**")])[0].metadata_list
                  if not m.path.endswith("/"))


def download_tree(remote: str, local: Path) -> None:
    """Copy every file under the directory `remote` to the same relative path under `local`."""
    prefix = remote.rstrip("/") + "/"
    for path in list_tree(remote):
        target = local / path[len(prefix):]
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as source:
            target.write_bytes(source.read())


def file_digests(local: Path) -> dict[str, str]:
    """sha256 of every file under `local`, by its path relative to `local`."""
    return {p.relative_to(local).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(local.rglob("*")) if p.is_file()}


def upload_tree(local: Path, remote: str, unchanged: dict[str, str] | None = None) -> None:
    """Copy every file under the local directory `local` to the same relative path under `remote`, except
    those whose digest is the one in `unchanged` (file_digests of what was downloaded)."""
    unchanged = unchanged or {}
    for name, digest in file_digests(local).items():
        if unchanged.get(name) == digest:
            continue
        path = local / name
        with FileSystems.create(FileSystems.join(remote, *name.split("/")),
                                compression_type=CompressionTypes.UNCOMPRESSED) as target:
            target.write(path.read_bytes())


# --- one boto3 client per process and settings for Beam's S3 filesystem ------------------------------------
_SHARE_LOCK = threading.Lock()


def _share_s3_clients() -> None:
    """Beam's S3 filesystem builds a new boto3 session and client for every call (about 0.25 s each here: a
    fixture run on a local S3 server took 148 s, 14 s with shared clients). Make Beam's S3 client wrapper reuse
    one boto3 client per set of S3 options in this process (boto3 clients are thread-safe). No-op without
    Beam's AWS extra."""
    try:
        from apache_beam.io.aws.clients.s3 import boto3_client
    except ImportError:
        return
    with _SHARE_LOCK:
        if not issubclass(boto3_client.Client, SharedBoto3Client):
            boto3_client.Client = type("SharedClient", (SharedBoto3Client, boto3_client.Client), {})


class SharedBoto3Client:
    """Mixed into Beam's `boto3_client.Client`: the boto3 client comes from a cache keyed by the options object
    (FileSystems hands the same one to every call; reading its values costs more than a call); everything else
    (the per-object download state) stays per instance, as Beam builds it."""

    _clients: dict[int, tuple] = {}  # id(options) -> (options, boto3 client); the options kept so the id stays theirs

    def __init__(self, options):
        cached = self._clients.get(id(options))
        if cached is None or cached[0] is not options:
            super().__init__(options)
            self._clients[id(options)] = (options, self.client)
            return
        self.client = cached[1]
        self._download_request, self._download_stream, self._download_pos = None, None, 0


# --- DuckDB reads through Beam's filesystems -----------------------------------------------------------------
KEPT_FILE_BYTES = 16 << 20  # files up to this size are read once per checkpoint and kept in memory


def reach_through_beam(con, path: str) -> None:
    """Let the DuckDB connection `con` read the files of `path`'s filesystem, when it is not the local one, through
    Beam's (duckdb_filesystem)."""
    if is_remote(path):
        con.register_filesystem(duckdb_filesystem(FileSystems.get_scheme(path)))


def duckdb_filesystem(scheme: str):
    """A read-only fsspec filesystem for `scheme` over Beam's FileSystems (with this process's options), for
    DuckDB's `register_filesystem`: DuckDB then reads `scheme://` files as Beam reaches them (its own httpfs
    extension is not installable from a package registry)."""
    from fsspec import AbstractFileSystem

    class BeamFileSystem(AbstractFileSystem):
        """Listings and file details are kept for the filesystem's life (one checkpoint: the files do not
        change meanwhile): DuckDB asks for them again for every query."""

        protocol = (scheme,)
        cachable = False

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.files: dict[str, dict] = {}  # url -> {"size", "mtime"} of every file listed so far
            self.listed: dict[str, list[dict]] = {}  # directory url -> its entries
            self.kept: dict[str, bytes] = {}  # url -> content of the small files read so far

        def _url(self, path: str) -> str:
            return path if "://" in path else f"{scheme}://{path}"

        def ls(self, path, detail=True, **kwargs):
            url = self._url(path).rstrip("/")
            if url not in self.listed:
                entries: dict[str, dict] = {}
                for meta in FileSystems.match([f"{url}/**"])[0].metadata_list:
                    self.files[meta.path] = {"size": meta.size_in_bytes, "mtime": meta.last_updated_in_seconds}
                    name, _, rest = meta.path[len(url) + 1:].partition("/")
                    entry = {"name": self._strip_protocol(f"{url}/{name}"), "type": "directory" if rest else "file",
                             "size": 0 if rest else meta.size_in_bytes}
                    entries.setdefault(entry["name"], entry)
                self.listed[url] = list(entries.values())
            return self.listed[url] if detail else [entry["name"] for entry in self.listed[url]]

        def _file(self, url: str) -> dict | None:
            if url not in self.files:
                found = [m for m in FileSystems.match([url])[0].metadata_list if m.path == url]
                if not found:
                    return None
                self.files[url] = {"size": found[0].size_in_bytes, "mtime": found[0].last_updated_in_seconds}
            return self.files[url]

        def info(self, path, **kwargs):
            url = self._url(path)
            found = self._file(url)
            if found is not None:
                return {"name": self._strip_protocol(url), "type": "file", "size": found["size"]}
            if self.ls(path):
                return {"name": self._strip_protocol(url), "type": "directory", "size": 0}
            raise FileNotFoundError(url)

        def modified(self, path):
            from datetime import datetime, timezone

            found = self._file(self._url(path))
            if found is None:
                raise FileNotFoundError(self._url(path))
            return datetime.fromtimestamp(found["mtime"], timezone.utc)

        def _open(self, path, mode="rb", **kwargs):
            """A file of up to KEPT_FILE_BYTES is read once and kept (DuckDB opens it again for every query;
            each open is a request of its own); a larger one is streamed by Beam every time."""
            url = self._url(path)
            if mode != "rb":
                raise PermissionError(f"{url}: DuckDB reads through Beam's filesystems, it does not write")
            if url in self.kept:
                return io.BytesIO(self.kept[url])
            handle = FileSystems.open(url, compression_type=CompressionTypes.UNCOMPRESSED)
            size = (self._file(url) or {}).get("size")
            if size is None or size > KEPT_FILE_BYTES:
                return handle
            with handle:
                self.kept[url] = handle.read()
            return io.BytesIO(self.kept[url])

    return BeamFileSystem()
