"""Run bookkeeping for scheduled use: deterministic run ids and the `runs` history table (the output lock is
pipelines/lock.py).

    >>> derive_run_id("2026-10-01", inputs, settings)   # doctest: +SKIP
    '2026-10-01-3f9a1c2b7d10'
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines import __version__

RUNS_TABLE = "runs"
RUNS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("window_start", pa.date32()),
        ("window_end", pa.date32()),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("finished_at", pa.timestamp("us", tz="UTC")),
        ("status", pa.string()),  # succeeded | failed
        ("error", pa.string()),
        ("input_files", pa.list_(pa.struct([("dataset", pa.string()), ("path", pa.string()),
                                            ("size_bytes", pa.int64()), ("checksum", pa.string())]))),
        ("counts", pa.string()),  # JSON: per dataset input/output/duplicate/quarantine/outside-window rows
        ("quality", pa.string()),  # outcome of the quality checkpoint, when it ran
        ("motpipe_version", pa.string()),
    ]
)


def derive_run_id(window: str, inputs: list[dict], settings: dict) -> str:
    """`<window>-<12 hex>`: the same inputs (paths, sizes, checksums) and settings give the same id,
    so a rerun writes byte-identical rows. `window` is e.g. `2026-10-01`, `2026-10-01_2026-10-07` or `all`."""
    fingerprint = json.dumps({"inputs": inputs, "settings": settings, "version": __version__}, sort_keys=True, default=str)
    return f"{window}-{hashlib.sha256(fingerprint.encode('utf-8')).hexdigest()[:12]}"


def run_record_path(out: str, run_id: str, started_at: datetime) -> str:
    """Where one execution's row of the `runs` table lives: `out/runs/<started_at>-<run_id>.parquet`."""
    return FileSystems.join(out, RUNS_TABLE, f"{started_at.strftime('%Y%m%dT%H%M%S%fZ')}-{run_id}.parquet")


def _write_whole(path: str, table: pa.Table) -> None:
    """Write `table` to a temporary file beside `path`, then rename it: a failed write (a full disk) leaves no
    truncated `path`."""
    temporary = f"{path}.partial"
    try:
        with FileSystems.create(temporary) as handle:
            pq.write_table(table, handle)
        if FileSystems.exists(path):
            FileSystems.delete([path])
        FileSystems.rename([temporary], [path])
    except BaseException:
        if FileSystems.exists(temporary):
            FileSystems.delete([temporary])
        raise


def write_run_record(out: str, record: dict) -> str:
    """Append one execution's row to the `runs` table (or rewrite it, when the same execution updates it)."""
    path = run_record_path(out, record["run_id"], record["started_at"])
    _write_whole(path, pa.Table.from_pylist([{name: record.get(name) for name in RUNS_SCHEMA.names}], schema=RUNS_SCHEMA))
    return path


def set_quality(path: str, outcome: str) -> None:
    """Record the quality checkpoint's outcome in a run's row of the `runs` table."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        table = pq.read_table(pa.BufferReader(handle.read()), schema=RUNS_SCHEMA)
    table = table.set_column(RUNS_SCHEMA.get_field_index("quality"), "quality", pa.array([outcome], pa.string()))
    _write_whole(path, table)


def read_runs(out: str, unreadable: list[str] | None = None) -> pa.Table:
    """All run records of an output directory, oldest first. A record that cannot be read (e.g. 0 bytes, left by a
    full disk) is skipped; `unreadable` gets "path: reason" for each."""
    matched = FileSystems.match([FileSystems.join(out, RUNS_TABLE, "*.parquet")])[0].metadata_list
    tables = []
    for meta in sorted(matched, key=lambda m: m.path):
        try:
            with FileSystems.open(meta.path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
                tables.append(pq.read_table(pa.BufferReader(handle.read()), schema=RUNS_SCHEMA))
        except (OSError, pa.ArrowException) as error:
            if unreadable is not None:
                unreadable.append(f"{meta.path}: {error}")
    return pa.concat_tables(tables) if tables else RUNS_SCHEMA.empty_table()
