"""The run's work directory: Arrow spill files that carry rows between Beam stages, and count files.

Beam moves only `(key, path)` pairs; the rows themselves go through files, as in the shuffle of
Spark or Dataflow. So memory stays bounded by one group (a hash bucket, a partition), whatever the
runner keeps of a shuffle, and every stage can run on any Beam runner whose workers see the work
directory (a local path on one machine, or a bucket / shared filesystem on a cluster).

Every file name is derived from what produced it (stage, key, producer), so a retried or repeated
step rewrites the same files with the same bytes, and a file appears whole or not at all (written
under a temporary name, then renamed).

    >>> writer = SpillWriter("/tmp/work")                                    # doctest: +SKIP
    >>> writer.write(("dedup", "events", 3), "f00001", table)                # doctest: +SKIP
    >>> writer.close()                                                       # doctest: +SKIP
    [(('dedup', 'events', 3), '/tmp/work/dedup/events/3/f00001.arrow')]
"""
from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator

import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")
COUNTS_DIR = "_counts"
SPILL_BATCH_ROWS = 1024  # record batches of a spill file: the unit that merge_sorted holds per file


def _create(path: str):
    return FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)


def _commit(temporary: str, final: str) -> None:
    """Move a finished file to its final name (replacing an earlier attempt's file of the same name)."""
    if FileSystems.exists(final):
        FileSystems.delete([final])
    FileSystems.rename([temporary], [final])


class SpillWriter:
    """Appends Arrow tables to one spill file per key; `close()` commits them and returns (key, path) pairs.

    A key is a tuple whose parts name the directory, e.g. ("dedup", "events", 3) -> `<root>/dedup/events/3/`.
    """

    def __init__(self, root: str):
        self.root = root
        self._open: dict[tuple, tuple[str, str, object, pa.ipc.RecordBatchStreamWriter]] = {}

    def write(self, key: tuple, name: str, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if key not in self._open:
            final = FileSystems.join(self.root, *map(str, key), f"{name}.arrow")
            temporary = f"{final}.{uuid.uuid4().hex}.tmp"
            handle = _create(temporary)
            self._open[key] = (final, temporary, handle, pa.ipc.new_stream(handle, table.schema, options=_OPTIONS))
        self._open[key][3].write_table(table, max_chunksize=SPILL_BATCH_ROWS)

    def close(self) -> list[tuple[tuple, str]]:
        written = []
        for key, (final, temporary, handle, writer) in self._open.items():
            writer.close()
            handle.close()
            _commit(temporary, final)
            written.append((key, final))
        self._open.clear()
        return written


def read_spills(paths) -> pa.Table | None:
    """All rows of the given spill files, in the order of their sorted paths; None if there are none."""
    tables = []
    for path in sorted(paths):
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            tables.append(pa.ipc.open_stream(handle.read()).read_all())
    tables = [t for t in tables if t.num_rows]
    return pa.concat_tables(tables) if tables else None


def _batches(path: str) -> Iterator[pa.RecordBatch]:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        yield from pa.ipc.open_stream(handle)


def _not_after(batch: pa.RecordBatch, keys: list[str], cutoff: tuple) -> int:
    """How many leading rows of a batch sorted by `keys` are <= `cutoff`: a binary search over its rows."""
    columns = [batch.column(k) for k in keys]
    low, high = 0, batch.num_rows
    while low < high:
        middle = (low + high) // 2
        if tuple(column[middle].as_py() for column in columns) <= cutoff:
            low = middle + 1
        else:
            high = middle
    return low


def merge_sorted(paths, keys: list[str]) -> Iterator[pa.Table]:
    """The rows of spill files that are each sorted by `keys`, as tables in global `keys` order (no nulls in
    keys). Holds one record batch per file at a time, so memory does not grow with the files' size.

    Each round takes, from every file's current batch, the rows up to the smallest last key among those
    batches: no row still unread can come before them, so sorting just these rows gives the next rows.
    """
    readers = {path: _batches(path) for path in sorted(paths)}
    current = {path: batch for path, reader in readers.items() if (batch := next(reader, None)) is not None}
    while current:
        last = {path: tuple(batch.column(k)[batch.num_rows - 1].as_py() for k in keys) for path, batch in current.items()}
        cutoff = min(last.values())
        pieces = []
        for path, batch in list(current.items()):
            taken = batch.num_rows if last[path] == cutoff else _not_after(batch, keys, cutoff)
            pieces.append(batch.slice(0, taken))
            rest = batch.slice(taken)
            if rest.num_rows == 0:
                rest = next((b for b in readers[path] if b.num_rows), None)
            if rest is None:
                del current[path]
            else:
                current[path] = rest
        yield pa.Table.from_batches([b for b in pieces if b.num_rows]).sort_by([(k, "ascending") for k in keys])


def write_counts(root: str, name: str, counts: Counter) -> None:
    """Store one step's counts as `<root>/_counts/<name>.json` (a retried step overwrites its own file)."""
    final = FileSystems.join(root, COUNTS_DIR, f"{name}.json")
    temporary = f"{final}.{uuid.uuid4().hex}.tmp"
    with _create(temporary) as handle:
        handle.write(json.dumps({k: int(v) for k, v in sorted(counts.items()) if v}).encode("utf-8"))
    _commit(temporary, final)


def read_counts(root: str) -> dict[str, int]:
    """The sum of every count file under `<root>/_counts/`."""
    totals: Counter = Counter()
    pattern = FileSystems.join(root, COUNTS_DIR, "*.json")
    for meta in FileSystems.match([pattern])[0].metadata_list:
        with FileSystems.open(meta.path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            totals.update(json.loads(handle.read()))
    return dict(totals)
