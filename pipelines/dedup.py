"""Hash bucketing of Arrow batches and deduplication by record id inside one bucket.

Rule: among rows sharing an id, the earliest by (source_file, line_no) is kept. A later row with
the same content is an exact duplicate; one with different content is a conflicting duplicate and
goes to quarantine, naming the kept row and the fields that differ.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.ingest.contract import ErrorKind
from pipelines.ingest.reader import REJECTED_SCHEMA, record_json
from pipelines.output import local_dates
from pipelines.ingest.validate import ID_FIELDS, TIME_FIELDS


_FNV_OFFSET, _FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)
_MIX = (np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))


def key_hashes(keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """uint64 hash of each string: 64-bit FNV-1a of its UTF-8 bytes, finished with murmur3's fmix64 so that every
    bit, the low ones too, depends on every byte. A null hashes like "". Vectorised over the Arrow offsets and data
    buffers: one numpy step per byte position, over the keys at least that long; the same in every process and run.
    """
    keys = (keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys).cast(pa.large_string())
    if keys.null_count:
        keys = pc.fill_null(keys, "")
    _, offsets, data = keys.buffers()
    offsets = np.frombuffer(offsets, np.int64)[keys.offset:keys.offset + len(keys) + 1]
    data = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    longest_first = np.argsort(-lengths, kind="stable")
    starts, lengths = offsets[:-1][longest_first], lengths[longest_first]
    longer_than = np.searchsorted(-lengths, -np.arange(lengths[0] if len(lengths) else 0))  # keys > position: a prefix
    hashes = np.full(len(keys), _FNV_OFFSET, np.uint64)
    for position, active in enumerate(longer_than):
        hashes[:active] ^= data[starts[:active] + position]
        hashes[:active] *= _FNV_PRIME
    for multiplier in _MIX:
        hashes ^= hashes >> np.uint64(33)
        hashes *= multiplier
    hashes ^= hashes >> np.uint64(33)
    result = np.empty_like(hashes)
    result[longest_first] = hashes
    return result


def key_buckets(keys: pa.Array | pa.ChunkedArray, buckets: int) -> np.ndarray:
    """Stable bucket (0 .. buckets - 1) of each key: `key_hashes` modulo `buckets`."""
    return (key_hashes(keys) % np.uint64(buckets)).astype(np.int64)


def bucket_of(key: str, buckets: int) -> int:
    """The bucket of one key, as `split_by_bucket` computes it."""
    return int(key_buckets(pa.array([key], pa.string()), buckets)[0])


def split_by_bucket(table: pa.Table, key_columns: str | list[str], buckets: int) -> list[tuple[int, pa.Table]]:
    """[(bucket, rows of that bucket in input order)] for the buckets present in `table`: one take, then slices.

    The key is a column, or the first non-null of several columns (e.g. visit_id, else customer_id).
    """
    if table.num_rows == 0:
        return []
    names = [key_columns] if isinstance(key_columns, str) else key_columns
    keys = pc.coalesce(*(table.column(name) for name in names)) if len(names) > 1 else table.column(names[0])
    return split_by_ids(table, key_buckets(keys, buckets))


def node_buckets(nodes: np.ndarray, buckets: int) -> np.ndarray:
    """Bucket of each identity graph node (a 64-bit hash already: its value modulo `buckets`)."""
    return (nodes.astype(np.int64).view(np.uint64) % np.uint64(buckets)).astype(np.int64)


def split_by_ids(table: pa.Table, ids: np.ndarray) -> list[tuple[int, pa.Table]]:
    """[(bucket, rows of that bucket in input order)] for given bucket ids of the rows."""
    if table.num_rows == 0:
        return []
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    ends = np.r_[starts[1:], len(order)]
    rows = table.take(order)
    return [(int(sorted_ids[s]), rows.slice(s, e - s)) for s, e in zip(starts, ends)]


@dataclass
class Deduplicated:
    unique: pa.Table  # one row per id
    duplicates: pa.Table  # exact repeats: dataset, record_id, kept_source_file, kept_line_no, source_file, line_no
    conflicts: pa.Table  # quarantine rows (REJECTED_SCHEMA)


LINEAGE = ("source_file", "line_no")


def _differing_fields(kept: dict, other: dict) -> list[str]:
    return sorted(k for k in kept if k not in LINEAGE and kept[k] != other[k])


def _same_values(repeated: list[dict], kept: list[dict]) -> np.ndarray:
    """For each repeated row (a dict), whether all its validated values equal those of its id's kept row.

    Only repeated rows are compared (a few percent of the input), so plain Python equality of the rows,
    nested ratings included, is cheap; validation already normalised them (types, case, time zone).
    """
    return np.array([_differing_fields(a, b) == [] for a, b in zip(kept, repeated)], dtype=bool)


def run_starts(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Whether each value differs from the one before it (the first always does; nulls equal each other): where
    the runs of equal values of a sorted column start."""
    starts = np.ones(len(values), dtype=bool)
    if len(values) > 1:
        current, previous = values.slice(1), values.slice(0, len(values) - 1)
        differs = pc.fill_null(pc.not_equal(current, previous), pc.not_equal(pc.is_null(current), pc.is_null(previous)))
        starts[1:] = differs.to_numpy(zero_copy_only=False)
    return starts


def _first_of_id(table: pa.Table, id_column: str) -> tuple[np.ndarray, np.ndarray]:
    """(row order by (id, source_file, line_no), whether each row in that order is the first of its id)."""
    order = pc.sort_indices(table, [(id_column, "ascending"), ("source_file", "ascending"), ("line_no", "ascending")])
    return order.to_numpy(), run_starts(table.column(id_column).take(order))


def _conflict(dataset: str, id_column: str, loser: dict, kept: dict, loser_date: str) -> dict:
    """The quarantine row of a conflicting duplicate `loser` of the kept row `kept`."""
    fields = ", ".join(_differing_fields(kept, loser))
    return {
        "dataset": dataset,
        "record_id": loser[id_column],
        "error_kind": ErrorKind.CONFLICTING_DUPLICATE.value,
        "raw_record": record_json(loser),
        "source_file": loser["source_file"],
        "line_no": loser["line_no"],
        "error_field": id_column,
        "error_message": f"{id_column} {loser[id_column]!r} was kept from {kept['source_file']}:{kept['line_no']}; "
        f"this row differs in {fields}",
        "dt": loser_date,
    }


def deduplicate(table: pa.Table, dataset: str, timezone: str) -> Deduplicated:
    """Split one bucket's rows into unique rows (sorted by id), exact duplicates and conflicting duplicates.

    Duplicates and quarantined losers are partitioned by the local date (in `timezone`) of their own timestamp.
    Only the repeated rows and their kept rows are read into Python.
    """
    id_column = ID_FIELDS[dataset]
    order, first = _first_of_id(table, id_column)
    winner = order[np.flatnonzero(first)[np.cumsum(first) - 1]]  # per row in `order`: its id's kept row
    repeated_rows, kept_rows = order[~first], winner[~first]
    repeated = table.take(repeated_rows).to_pylist()
    kept = table.take(kept_rows).to_pylist()
    exact = _same_values(repeated, kept)

    exact_rows = table.select([id_column, *LINEAGE, TIME_FIELDS[dataset]]).take(repeated_rows[exact])
    kept_lineage = table.select(list(LINEAGE)).take(kept_rows[exact])
    duplicates = pa.table(
        {
            "dataset": pa.repeat(dataset, exact_rows.num_rows),
            "record_id": exact_rows.column(id_column),
            "kept_source_file": kept_lineage.column("source_file"),
            "kept_line_no": kept_lineage.column("line_no"),
            "source_file": exact_rows.column("source_file"),
            "line_no": exact_rows.column("line_no"),
            "dt": local_dates(exact_rows.column(TIME_FIELDS[dataset]), timezone),
        }
    )
    losers = np.flatnonzero(~exact)
    loser_dates = local_dates(table.column(TIME_FIELDS[dataset]).take(repeated_rows[losers]), timezone).to_pylist()
    conflicts = [_conflict(dataset, id_column, repeated[i], kept[i], date) for i, date in zip(losers, loser_dates)]
    return Deduplicated(table.take(order[first]), duplicates, pa.Table.from_pylist(conflicts, schema=REJECTED_SCHEMA))
