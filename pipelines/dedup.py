"""Hash bucketing of Arrow batches and deduplication by record id inside one bucket.

Rule: among rows sharing an id, the earliest by (source_file, line_no) is kept. A later row with
the same content is an exact duplicate; one with different content is a conflicting duplicate and
goes to quarantine, naming the kept row and the fields that differ.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.contract import ErrorKind
from pipelines.ingest import REJECTED_SCHEMA, record_json
from pipelines.io import local_dates
from pipelines.validate import ID_FIELDS, TIME_FIELDS


def bucket_of(key: str, buckets: int) -> int:
    """Stable bucket of a key (same in every process, unlike hash())."""
    return zlib.crc32(key.encode("utf-8")) % buckets


def split_by_bucket(table: pa.Table, key_columns: str | list[str], buckets: int) -> list[tuple[int, pa.Table]]:
    """[(bucket, rows of that bucket)] for the buckets present in `table`.

    The key is a column, or the first non-null of several columns (e.g. visit_id, else customer_id).
    """
    if table.num_rows == 0:
        return []
    names = [key_columns] if isinstance(key_columns, str) else key_columns
    keys = pc.coalesce(*(table.column(name) for name in names)) if len(names) > 1 else table.column(names[0])
    ids = np.fromiter((bucket_of(k, buckets) for k in keys.to_pylist()), np.int32, table.num_rows)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    ends = np.r_[starts[1:], len(order)]
    return [(int(sorted_ids[s]), table.take(pa.array(order[s:e]))) for s, e in zip(starts, ends)]


@dataclass
class Deduplicated:
    unique: pa.Table  # one row per id
    duplicates: pa.Table  # exact repeats: dataset, record_id, kept_source_file, kept_line_no, source_file, line_no
    conflicts: pa.Table  # quarantine rows (REJECTED_SCHEMA)


LINEAGE = ("source_file", "line_no")


def _differing_fields(kept: dict, other: dict) -> list[str]:
    return sorted(k for k in kept if k not in LINEAGE and kept[k] != other[k])


def _same_values(table: pa.Table, rows: np.ndarray, winners: np.ndarray) -> np.ndarray:
    """For each repeated row, whether all its validated values equal those of its id's kept row.

    Only repeated rows are compared (a few percent of the input), so plain Python equality of the rows,
    nested ratings included, is cheap; validation already normalised them (types, case, time zone).
    """
    values = table.drop_columns(list(LINEAGE))
    repeated = values.take(pa.array(rows)).to_pylist()
    kept = values.take(pa.array(winners)).to_pylist()
    return np.array([a == b for a, b in zip(repeated, kept)], dtype=bool)


def deduplicate(table: pa.Table, dataset: str, timezone: str) -> Deduplicated:
    """Split one bucket's rows into unique rows, exact duplicates and conflicting duplicates.

    Duplicates and quarantined losers are partitioned by the local date (in `timezone`) of their own timestamp.
    """
    id_column = ID_FIELDS[dataset]
    table = table.sort_by([(id_column, "ascending"), ("source_file", "ascending"), ("line_no", "ascending")])
    ids = table.column(id_column).to_numpy(zero_copy_only=False)
    first = np.r_[True, ids[1:] != ids[:-1]] if len(ids) else np.zeros(0, bool)
    winner = np.flatnonzero(first)[np.cumsum(first) - 1]
    repeated = np.flatnonzero(~first)
    exact = np.zeros(len(ids), dtype=bool)
    exact[repeated] = _same_values(table, repeated, winner[repeated])
    conflict = ~first & ~exact

    kept_source = pc.take(table.column("source_file"), pa.array(winner[exact]))
    kept_line = pc.take(table.column("line_no"), pa.array(winner[exact]))
    exact_rows = table.filter(pa.array(exact))
    duplicates = pa.table(
        {
            "dataset": pa.array([dataset] * exact_rows.num_rows, pa.string()),
            "record_id": exact_rows.column(id_column),
            "kept_source_file": kept_source,
            "kept_line_no": kept_line,
            "source_file": exact_rows.column("source_file"),
            "line_no": exact_rows.column("line_no"),
            "dt": local_dates(exact_rows.column(TIME_FIELDS[dataset]), timezone),
        }
    )
    conflicts = []
    losers = np.flatnonzero(conflict)
    loser_dates = local_dates(table.column(TIME_FIELDS[dataset]).take(pa.array(losers)), timezone).to_pylist()
    for index, loser_date in zip(losers, loser_dates):
        loser = table.slice(int(index), 1).to_pylist()[0]
        kept = table.slice(int(winner[index]), 1).to_pylist()[0]
        fields = ", ".join(_differing_fields(kept, loser))
        conflicts.append(
            {
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
        )
    return Deduplicated(table.filter(pa.array(first)), duplicates, pa.Table.from_pylist(conflicts, schema=REJECTED_SCHEMA))
