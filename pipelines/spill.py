"""The run's work directory: Arrow spill files that carry rows between Beam stages, and count files.

Beam moves only `(key, segment)` pairs; the rows themselves go through files, as in the shuffle of Spark or
Dataflow. So memory stays bounded by one group (a hash bucket, a partition), whatever the runner keeps of a
shuffle, and every stage can run on any Beam runner whose workers see the work directory (a local path on one
machine, or a bucket / shared filesystem on a cluster).

Like Spark's sort-based shuffle, a producer writes ONE file per stream (what it sends to one stage), with the
rows of all its keys as record batches, and hands out per key a segment: (path, indices of that key's batches).
So the number of files grows with the number of producers, not with producers x consumers (at 10M events
and 130 buckets: hundreds of files instead of ~50,000 small ones).

Every file name is derived from what produced it, so a retried or repeated step rewrites the same files with
the same bytes, and a file appears whole or not at all (written under a temporary name, then renamed).

    >>> writer = SpillWriter("/tmp/work")                                    # doctest: +SKIP
    >>> writer.write(("dedup", "events", 3), "read-events-00001", table)     # doctest: +SKIP
    >>> writer.close()                                                       # doctest: +SKIP
    [(('dedup', 'events', 3), ('/tmp/work/dedup/events/read-events-00001.arrow', (0,)))]
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


Segment = tuple  # (path of an Arrow IPC file, indices of the record batches that belong to one key)


class SpillWriter:
    """Appends Arrow tables to one IPC file per stream (a key without its last part: ("dedup", "events", 3) ->
    `<root>/dedup/events/<name>.arrow`); `close()` commits the files and returns (key, segment) pairs."""

    def __init__(self, root: str):
        self.root = root
        self._files: dict[tuple, list] = {}  # stream -> [final path, temporary path, handle, IPC writer, batches]
        self._segments: dict[tuple, list[int]] = {}

    def write(self, key: tuple, name: str, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        stream = key[:-1]
        if stream not in self._files:
            final = FileSystems.join(self.root, *map(str, stream), f"{name}.arrow")
            temporary = f"{final}.{uuid.uuid4().hex}.tmp"
            handle = _create(temporary)
            self._files[stream] = [final, temporary, handle, pa.ipc.new_file(handle, table.schema, options=_OPTIONS), 0]
        entry = self._files[stream]
        for batch in table.to_batches(max_chunksize=SPILL_BATCH_ROWS):
            entry[3].write_batch(batch)
            self._segments.setdefault(key, []).append(entry[4])
            entry[4] += 1

    def close(self) -> list[tuple[tuple, Segment]]:
        for final, temporary, handle, writer, _ in self._files.values():
            writer.close()
            handle.close()
            _commit(temporary, final)
        written = [(key, (self._files[key[:-1]][0], tuple(indices))) for key, indices in self._segments.items()]
        self._files.clear()
        self._segments.clear()
        return written


def _batches(segment: Segment) -> Iterator[pa.RecordBatch]:
    path, indices = segment
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        reader = pa.ipc.open_file(handle)
        for index in indices:
            yield reader.get_batch(index)


def read_spills(segments) -> pa.Table | None:
    """All rows of the given segments, in the order of their sorted paths; None if there are none."""
    batches = [batch for segment in sorted(segments) for batch in _batches(segment) if batch.num_rows]
    return pa.Table.from_batches(batches) if batches else None


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


def merge_sorted(segments, keys: list[str]) -> Iterator[pa.Table]:
    """The rows of segments that are each sorted by `keys`, as tables in global `keys` order (no nulls in
    keys). Holds one record batch per segment at a time, so memory does not grow with the segments' size.

    Each round takes, from every segment's current batch, the rows up to the smallest last key among those
    batches: no row still unread can come before them, so sorting just these rows gives the next rows.
    """
    readers = {segment: _batches(segment) for segment in sorted(segments)}
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
