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
the same bytes, and a file appears whole or not at all (written under a temporary name, then renamed; on an
object store, where an upload appears whole when it completes, straight under its name).

    >>> writer = SpillWriter("/tmp/work")                                    # doctest: +SKIP
    >>> writer.write(("dedup", "events", 3), "read-events-00001-0000", table)     # doctest: +SKIP
    >>> writer.close()                                                       # doctest: +SKIP
    [(('dedup', 'events', 3), ('/tmp/work/dedup/events/read-events-00001-0000.arrow', (0,)))]
"""
from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.storage import is_object_store

_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")
COUNTS_DIR = "_counts"
MERGE_BATCH_ROWS = 1024  # rows per record batch of a segment that merge_sorted reads (it holds one batch per segment)


def _create(path: str):
    return FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)


def _temporary(final: str) -> str:
    """Where a file is written before it is committed under `final`: `final` itself on an object store."""
    return final if is_object_store(final) else f"{final}.{uuid.uuid4().hex}.tmp"


def _commit(temporary: str, final: str) -> None:
    """Move a finished file to its final name (replacing an earlier attempt's file of the same name)."""
    if temporary == final:
        return
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

    def write(self, key: tuple, name: str, table: pa.Table, batch_rows: int | None = None) -> None:
        """Append `table` as the segment of `key`: in record batches of `batch_rows` rows for a segment that
        merge_sorted reads batch by batch (MERGE_BATCH_ROWS), else as the table's own chunks, for a segment that
        read_spills reads whole (one batch per bucket: ~40% less CPU to write and read than 1,024-row batches)."""
        if table.num_rows == 0:
            return
        stream = key[:-1]
        if stream not in self._files:
            final = FileSystems.join(self.root, *map(str, stream), f"{name}.arrow")
            temporary = _temporary(final)
            handle = _create(temporary)
            self._files[stream] = [final, temporary, handle, pa.ipc.new_file(handle, table.schema, options=_OPTIONS), 0]
        entry = self._files[stream]
        for batch in table.to_batches(max_chunksize=batch_rows):
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


class _SegmentReader:
    """Random access to the rows of one segment: its batches' row offsets, and rows [first, last] read batch by
    batch (the last batch read is kept, since consecutive chunks share their boundary batch)."""

    def __init__(self, segment: Segment, keys: list[str]):
        path, self.indices = segment
        self.handle = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
        self.reader = pa.ipc.open_file(self.handle)
        fields = [self.reader.schema.get_field_index(k) for k in keys]
        key_reader = pa.ipc.open_file(self.handle, options=pa.ipc.IpcReadOptions(included_fields=fields))
        self.keys = [key_reader.get_batch(i) for i in self.indices]  # only the key columns are read here
        self.starts = np.cumsum([0] + [b.num_rows for b in self.keys])
        self.cached: tuple[int, pa.RecordBatch] | None = None

    def key_table(self) -> pa.Table:
        """The segment's key columns (handed over once: the reader keeps no copy)."""
        keys, self.keys = self.keys, None
        return pa.Table.from_batches(keys)

    def _batch(self, position: int) -> pa.RecordBatch:
        if self.cached is None or self.cached[0] != position:
            self.cached = (position, self.reader.get_batch(self.indices[position]))
        return self.cached[1]

    def rows(self, first: int, last: int) -> pa.Table:
        """Rows first..last (inclusive) of the segment."""
        low, high = (int(np.searchsorted(self.starts, row, side="right")) - 1 for row in (first, last))
        batches = [self._batch(position) for position in range(low, high + 1)]
        return pa.Table.from_batches(batches).slice(first - self.starts[low], last - first + 1)

    def close(self) -> None:
        self.handle.close()


def merge_sorted(segments, keys: list[str], chunk_rows: int = 16_384) -> Iterator[pa.Table]:
    """The rows of segments that are each sorted by `keys`, in global `keys` order (ties: sorted segment
    order, then row order), as tables of `chunk_rows` rows (the last one fewer).

    Two passes, both vectorised: the key columns of every segment (only those are read) are sorted once,
    giving each output row its (segment, row); then each chunk's rows are read from the segments, where they
    are one contiguous range per segment, and put in order with one take. Memory: the partition's keys plus
    one chunk, not the partition's rows.
    """
    readers = [_SegmentReader(segment, keys) for segment in sorted(segments)]
    try:
        segment_of, row_of = _global_order(readers, keys)
        for start in range(0, len(segment_of), chunk_rows):
            yield _gather(readers, segment_of[start:start + chunk_rows], row_of[start:start + chunk_rows])
    finally:
        for reader in readers:
            reader.close()


def _global_order(readers: list[_SegmentReader], keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(segment number, row in that segment) of every row, in merged order: one sort of all key columns."""
    parts = [(number, reader.key_table()) for number, reader in enumerate(readers) if reader.starts[-1]]
    if not parts:
        return np.empty(0, np.int32), np.empty(0, np.int64)
    keyed = pa.concat_tables([
        table.append_column("_segment", pa.array(np.full(table.num_rows, number, np.int32)))
             .append_column("_row", pa.array(np.arange(table.num_rows, dtype=np.int64)))
        for number, table in parts
    ])
    order = pc.sort_indices(keyed, [(k, "ascending") for k in (*keys, "_segment", "_row")])
    return keyed.column("_segment").take(order).to_numpy(), keyed.column("_row").take(order).to_numpy()


def _gather(readers: list[_SegmentReader], segment_of: np.ndarray, row_of: np.ndarray) -> pa.Table:
    """The rows (segment_of[i], row_of[i]) in that order; each segment's rows here are one increasing range."""
    present = np.unique(segment_of)
    first = np.full(len(readers), np.iinfo(np.int64).max)
    last = np.full(len(readers), -1)
    np.minimum.at(first, segment_of, row_of)
    np.maximum.at(last, segment_of, row_of)
    pieces = [readers[n].rows(int(first[n]), int(last[n])) for n in present]
    base = np.zeros(len(readers), np.int64)
    base[present] = np.cumsum([0] + [piece.num_rows for piece in pieces[:-1]])
    return pa.concat_tables(pieces).take(pa.array(base[segment_of] + row_of - first[segment_of]))


def write_counts(root: str, name: str, counts: Counter) -> None:
    """Store one step's counts as `<root>/_counts/<name>.json` (a retried step overwrites its own file)."""
    final = FileSystems.join(root, COUNTS_DIR, f"{name}.json")
    temporary = _temporary(final)
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
