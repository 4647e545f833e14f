"""Writing the output tables: one Parquet file per Hive partition, staged, then published by atomic renames.

    >>> write_partition(staging, "events", "2026-10-01", [table], row_group_rows=65_536)   # doctest: +SKIP
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.config import UNDATED
from pipelines.ingest.formats import file_digest
from pipelines.storage import delete_tree


PART_FILE = "part-00000.parquet"  # one file per partition, so that publishing it is one atomic rename


def partition_file(root: str, table: str, dt: str) -> str:
    return FileSystems.join(root, table, f"dt={dt}", PART_FILE)


def table_files(root: str, table: str) -> str:
    """The glob of every partition file of `table` under `root` (Hive partitions: `dt=...`, `run_id=...`)."""
    return FileSystems.join(root, table, "*", "*.parquet")


def has_partitions(root: str, table: str) -> bool:
    return bool(FileSystems.match([table_files(root, table)])[0].metadata_list)


def write_partition(root: str, table_name: str, dt: str, chunks: Iterable[pa.Table], row_group_rows: int) -> str:
    """Write one Hive partition as the single file `root/table_name/dt=<dt>/part-00000.parquet` from tables
    already in the partition's row order (an iterable, so a partition need not fit in memory), in row groups
    of `row_group_rows`. No rows (but a first, empty table): a valid file without row groups."""
    path = partition_file(root, table_name, dt)
    chunks = iter(chunks)
    first = next(chunks)
    with FileSystems.create(path) as handle, pq.ParquetWriter(handle, first.schema, compression="zstd") as writer:
        for rows in _row_groups(itertools.chain([first], chunks), row_group_rows):
            writer.write_table(rows, row_group_size=row_group_rows)
            pa.default_memory_pool().release_unused()  # a written row group's buffers go back to the system
    return path


def _row_groups(chunks: Iterable[pa.Table], size: int) -> Iterator[pa.Table]:
    """Tables of exactly `size` rows (the last one fewer) from tables of any size, in order."""
    pending, rows = [], 0
    for chunk in chunks:
        pending.append(chunk)
        rows += chunk.num_rows
        while rows >= size:
            table = pa.concat_tables(pending)
            yield table.slice(0, size)
            pending, rows = [table.slice(size)], table.num_rows - size
    if rows:
        yield pa.concat_tables(pending)


def _read_parquet(path: str) -> pa.Table:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        return pq.read_table(pa.BufferReader(handle.read()))


def same_rows(staged: str, published: str) -> bool:
    """Whether two partition files hold the same rows, apart from the run that wrote them (`run_id`). A published
    file that is not Parquet (any more: corrupted, cut by a full disk) holds no rows: it is replaced."""
    if file_digest(staged) == file_digest(published):
        return True
    try:
        old = _read_parquet(published)
    except (OSError, pa.ArrowException):
        return False
    new = _read_parquet(staged)
    drop = [c for c in ("run_id",) if c in old.column_names and c in new.column_names]
    return old.drop_columns(drop).equals(new.drop_columns(drop))


@dataclass
class Published:
    replaced: list[str]  # partition files moved into place
    unchanged: list[str]  # same rows as the published file (run_id aside): the published file stays
    removed: list[str]  # partitions of the window that no longer have rows
    partitions: dict[str, list[str]]  # table -> the `dt` values this run wrote (replaced or unchanged)


QUARANTINE_ORDER = ["dataset", "source_file", "line_no"]  # row order of the quarantine tables' partitions
UNDATED_TABLES = ("quarantine", "quarantine_raw")  # the tables with an undated partition


def merge_undated(staging: str, out: str, table: str, sources: set[str], row_group_rows: int) -> None:
    """Stage the undated partition of `table` (rows without a readable date, from any run) as the published one's
    rows of files other than `sources` (this run's inputs) plus this run's: the rows of a file are replaced by
    each run that reads it, never copied. Nothing staged when no row is left."""
    staged, final = partition_file(staging, table, UNDATED), partition_file(out, table, UNDATED)
    parts = [_read_parquet(staged)] if FileSystems.exists(staged) else []
    if FileSystems.exists(final):
        try:
            published = _read_parquet(final)
        except (OSError, pa.ArrowException):  # not Parquet any more: its rows are lost, this run's replace it
            published = None
        if published is not None:
            others = pc.invert(pc.is_in(published.column("source_file"), pa.array(sorted(sources), pa.string())))
            parts.append(published.filter(others).cast(parts[0].schema) if parts else published.filter(others))
    rows = pa.concat_tables(parts).sort_by([(c, "ascending") for c in QUARANTINE_ORDER]) if parts else None
    if rows is not None and rows.num_rows:
        write_partition(staging, table, UNDATED, [rows], row_group_rows)
    elif FileSystems.exists(staged):
        FileSystems.delete([staged])


def publish(staging: str, out: str, tables: list[str], window_dates: list[str] | None,
            undated_sources: set[str] = frozenset(), row_group_rows: int = 65_536) -> Published:
    """Move staged partition files into `out`, one atomic rename per partition, then drop the staging tree.

    A partition whose rows equal the published ones (apart from `run_id`) is left untouched, so a
    rerun rewrites only the partitions whose data changed. With a window, its
    partitions that got no rows in this run are removed. The undated partition of the quarantine tables keeps the
    rows of files this run did not read (`merge_undated`, `undated_sources`: the run's inputs). A crash between two
    renames leaves every partition either old or new, never half-written; rerunning completes the publication.
    """
    result = Published([], [], [], {})
    for table in tables:
        if table in UNDATED_TABLES:
            merge_undated(staging, out, table, undated_sources, row_group_rows)
        staged = FileSystems.match([FileSystems.join(staging, table, "dt=*", PART_FILE)])[0].metadata_list
        staged_dates = set()
        for meta in sorted(staged, key=lambda m: m.path):
            dt = meta.path.rsplit("dt=", 1)[1].split("/", 1)[0]
            staged_dates.add(dt)
            result.partitions.setdefault(table, []).append(dt)
            final = partition_file(out, table, dt)
            if FileSystems.exists(final) and same_rows(meta.path, final):
                result.unchanged.append(final)
                continue
            directory = final.rsplit("/", 1)[0]
            if not FileSystems.exists(directory):
                FileSystems.mkdirs(directory)
            FileSystems.rename([meta.path], [final])
            result.replaced.append(final)
        replaced_dates = set(window_dates or ()) | ({UNDATED} if table in UNDATED_TABLES else set())
        for dt in sorted(replaced_dates - staged_dates):
            final = partition_file(out, table, dt)
            if FileSystems.exists(final):
                FileSystems.delete([final])
                result.removed.append(final)
    delete_tree(staging)
    return result


def local_dates(timestamps: pa.Array | pa.ChunkedArray, timezone: str) -> pa.Array:
    """`YYYY-MM-DD` partition values: the local date of each UTC timestamp in `timezone` (Arrow casts a zoned
    timestamp to its local date; 10x faster than strftime, the same strings)."""
    return timestamps.cast(pa.timestamp("us", tz=timezone)).cast(pa.date32()).cast(pa.string())
