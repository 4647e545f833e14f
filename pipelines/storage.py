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
import threading

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


_options: dict = {}  # this process's filesystem options, as last set by use_filesystem_options


def use_filesystem_options(options: dict) -> None:
    """Make this process's FileSystems calls use `options` (see filesystem_options)."""
    global _options
    _options = dict(options)
    FileSystems.set_options(PipelineOptions.from_dictionary(options))
    _share_s3_clients()


def s3_client():
    """A boto3 S3 client with this process's S3 options, built as Beam's S3 filesystem builds its own (for
    what Beam's filesystem API cannot do: conditional puts)."""
    from apache_beam.io.aws.clients.s3 import boto3_client

    _share_s3_clients()
    return boto3_client.Client(options=PipelineOptions.from_dictionary(_options)).client


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
    """Mixed into Beam's `boto3_client.Client`: the boto3 client comes from a cache keyed by the S3 options;
    everything else (the per-object download state) stays per instance, as Beam builds it."""

    _clients: dict[tuple, object] = {}

    def __init__(self, options):
        key = _s3_settings(options)
        shared = self._clients.get(key)
        if shared is None:
            super().__init__(options)
            self._clients[key] = self.client
            return
        self.client = shared
        self._download_request, self._download_stream, self._download_pos = None, None, 0


S3_OPTION_NAMES = tuple(sorted(_option_names(S3Options)))


def _s3_settings(options) -> tuple:
    """The S3 options' values, from PipelineOptions or the plain dict Beam's runtime options are."""
    if isinstance(options, PipelineOptions):
        options = options.get_all_options()
    return tuple(repr(options.get(name)) for name in S3_OPTION_NAMES)
