"""Read one file of a source: native rows -> mapped moments -> validated events (or feedback) and quarantine rows.

Counts reconcile per source row: a row becomes its moments' events (k >= 0: a moment with an empty timestamp
makes none), or, if a cell cannot be read or mapped or one of its moments breaks the contract, one quarantine
row with the first failure. Moments are checked vectorised (`vectorised.check`); only those not certainly valid
take the per-row reference path of `pipelines.ingest.validate`.

    >>> for valid, rejected, counts in read_source(path, source, channels, UTC, 50_000, "2026-10-01"): ...  # doctest: +SKIP
"""
from __future__ import annotations

import bisect
import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa

from pipelines.ingest.contract import ErrorKind
from pipelines.ingest.formats import InputError, ReadTally
from pipelines.ingest.reader import REJECTED_SCHEMA, VALID_SCHEMAS
from pipelines.ingest.sources.mapping import MappedMoment, MissingColumns, check_columns, map_rows
from pipelines.ingest.sources.native import read_native
from pipelines.ingest.sources.spec import ID_FIELDS, TIME_FIELDS, Source
from pipelines.ingest.validate import VALIDATORS, Rejection, parse_timestamp
from pipelines.ingest.vectorised import Cells, check

_LINEAGE = ("source_file", "line_no")


def read_source(path: str, source: Source, channels, run_tz: tzinfo, batch_rows: int,
                fallback_dt: str, tally: ReadTally | None = None) -> Iterator[tuple[pa.Table, pa.Table, Counter]]:
    """(valid rows, rejected rows, counts) per `batch_rows` source rows of one file. Counts:
    `rows_in`, `rows_with_moments` (rows that made at least one event), `events_out`, `rows_without_moments`,
    `quarantine.<kind>`. `tally` gets the bytes read from the file."""
    native = read_native(path, source.format, tally)
    if source.format.type in ("csv", "parquet"):
        try:
            check_columns(source, native.table.column_names)
        except MissingColumns as err:
            raise InputError(f"{path} (source {source.name}): {err}") from None
    else:  # JSON Lines and XES have no header: a key no row has is null
        native.table = _with_columns(native.table, source.columns())
    reading = _SourceBatch(path, source, channels, ZoneInfo(source.timezone), run_tz, fallback_dt)
    bad_lines, taken = [b.line_no for b in native.bad], 0  # sorted
    for start in range(0, max(native.table.num_rows, 1), batch_rows):
        table, line_nos = native.table.slice(start, batch_rows), native.line_nos[start:start + batch_rows]
        last = start + batch_rows >= native.table.num_rows
        end = len(bad_lines) if last else bisect.bisect_right(bad_lines, int(line_nos[-1]))
        batch_bad, taken = native.bad[taken:end], end
        if table.num_rows or batch_bad:
            yield reading.read(table, line_nos, batch_bad)


def _with_columns(table: pa.Table, names: list[str]) -> pa.Table:
    for name in names:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
    return table


class _SourceBatch:
    """Map, check and reconcile the rows of one batch of a source file."""

    def __init__(self, path: str, source: Source, channels, source_tz: ZoneInfo, run_tz: tzinfo, fallback_dt: str):
        self.path, self.source, self.channels = path, source, channels
        self.source_tz, self.run_tz, self.fallback_dt = source_tz, run_tz, fallback_dt
        self.dataset = source.dataset
        self.schema = VALID_SCHEMAS[self.dataset]

    def read(self, table: pa.Table, line_nos: np.ndarray, bad) -> tuple[pa.Table, pa.Table, Counter]:
        n = table.num_rows
        moments = map_rows(self.source, table, self.schema.field("ratings").type if self.dataset == "feedback" else None)
        failure: list[tuple | None] = [None] * n  # the row's first failure: (kind, field, message, moment)
        valid_parts = []
        for index, moment in enumerate(moments):
            fast, slow_rows, slow_outcomes = self._check(moment)
            for row in np.flatnonzero(moment.present & (moment.errors.any)):
                if failure[row] is None:
                    failure[row] = (moment.errors.kind[row], moment.errors.field[row], moment.errors.message[row], moment)
            for row, outcome in zip(slow_rows, slow_outcomes):
                if isinstance(outcome, Rejection) and failure[row] is None:
                    failure[row] = (outcome.kind.value, outcome.field, outcome.message, moment)
            valid_parts.append((index, fast, [(row, o) for row, o in zip(slow_rows, slow_outcomes)
                                              if not isinstance(o, Rejection)]))
        failed = np.array([f is not None for f in failure], bool)
        valid, events_per_row = self._valid(valid_parts, failed, line_nos)
        raws = _raw_rows(table, failed)
        rejected = [self._rejected(failure[row][3], row, raws[row], line_nos[row], *failure[row][:3])
                    for row in np.flatnonzero(failed)]
        rejected += [self._rejected(None, None, b.raw, b.line_no, ErrorKind.UNPARSEABLE_LINE.value, None, b.reason)
                     for b in bad]
        rejected_table = pa.Table.from_pylist(sorted(rejected, key=lambda r: r["line_no"]), schema=REJECTED_SCHEMA)
        counts = Counter({"rows_in": n + len(bad), "rows_with_moments": int((events_per_row > 0).sum()),
                          "rows_without_moments": int(((events_per_row == 0) & ~failed).sum()),
                          "events_out": valid.num_rows})
        for kind in rejected_table.column("error_kind").to_pylist():
            counts[f"quarantine.{kind}"] += 1
        return valid, rejected_table, counts

    def _check(self, moment: MappedMoment) -> tuple[tuple[np.ndarray, pa.Table], np.ndarray, list]:
        """The moment's certainly valid rows (positions, contract columns) and the outcome of the others that
        are present and mapped, by the reference validation."""
        candidates = moment.present & ~moment.errors.any
        columns = dict(moment.columns)
        if "attributes" in columns:  # mapped in the canonical form already
            columns["attributes"] = pa.nulls(len(candidates), pa.string())
        cells = Cells(candidates & moment.ratings_ok, columns, moment.ratings)
        positions, table = check(self.dataset, cells, self.channels, self.source_tz, self.schema)
        if "attributes" in columns:
            table = table.set_column(table.schema.get_field_index("attributes"), "attributes",
                                     moment.columns["attributes"].take(pa.array(positions)))
        slow = np.setdiff1d(np.flatnonzero(candidates), positions, assume_unique=True)
        validate = VALIDATORS[self.dataset]
        outcomes = [validate(record, self.channels, self.source_tz) for record in self._records(moment, slow)]
        return (positions, table), slow, outcomes

    def _records(self, moment: MappedMoment, rows: np.ndarray) -> list[dict]:
        """Contract records (as the reference reader gives them) of some rows of a moment."""
        if not len(rows):
            return []
        index = pa.array(rows)
        names = [name for name in moment.columns if name not in ("ratings", "attributes", "identifiers")]
        picked = {name: moment.columns[name].take(index).to_pylist() for name in names}
        objects = {name: moment.columns[name].take(index).to_pylist()
                   for name in ("attributes", "identifiers") if name in moment.columns}  # JSON object texts
        records = []
        for i, row in enumerate(rows):
            record = {name: value.isoformat() if isinstance(value, datetime) else value
                      for name, value in ((name, picked[name][i]) for name in names)}
            record |= {name: json.loads(texts[i]) for name, texts in objects.items() if texts[i] is not None}
            if self.dataset == "feedback":
                ratings = {}
                for key, measures in moment.rating_values.items():
                    item = {m: float(v[row]) for m, v in measures.items() if not np.isnan(v[row])}
                    if item:
                        ratings[key] = item
                record["ratings"] = ratings or None
            records.append({k: v for k, v in record.items() if v is not None})
        return records

    def _valid(self, parts, failed: np.ndarray, line_nos: np.ndarray) -> tuple[pa.Table, np.ndarray]:
        """The events of the rows without a failure, in (line, moment) order, and how many each row made."""
        tables, order, per_row = [], [], np.zeros(len(failed), np.int64)
        for index, (positions, fast), slow in parts:
            keep = ~failed[positions]
            fast = fast.filter(pa.array(keep))
            rows = positions[keep]
            slow = [(row, clean) for row, clean in slow if not failed[row]]
            slow_table = pa.Table.from_pylist([clean for _, clean in slow],
                                              schema=pa.schema([f for f in self.schema if f.name not in _LINEAGE]))
            for part, part_rows in ((fast, rows), (slow_table, np.array([r for r, _ in slow], np.int64))):
                columns = [part.column(f.name) if f.name in part.column_names else pa.nulls(part.num_rows, f.type)
                           for f in self.schema if f.name not in _LINEAGE]
                lineage = [pa.repeat(pa.scalar(self.path, pa.string()), part.num_rows), pa.array(line_nos[part_rows], pa.int64())]
                tables.append(pa.Table.from_arrays([*columns, *lineage], schema=self.schema))
                order.append(part_rows * len(parts) + index)
                np.add.at(per_row, part_rows, 1)
        valid = pa.concat_tables(tables) if tables else self.schema.empty_table()
        order = np.concatenate(order) if order else np.empty(0, np.int64)
        if np.all(order[1:] > order[:-1]):  # in order already (one moment, no row on the reference path)
            return valid, per_row
        return valid.take(pa.array(np.argsort(order, kind="stable"))), per_row

    def _rejected(self, moment: MappedMoment | None, row: int | None, raw: str, line_no: int, kind: str,
                  field: str | None, message: str) -> dict:
        """A quarantine row: the record id and partition date from the failing moment's mapped values, if any."""
        record_id, timestamp = None, None
        if moment is not None:
            record_id = moment.columns[ID_FIELDS[self.dataset]][row].as_py() if ID_FIELDS[self.dataset] in moment.columns else None
            timestamp = moment.columns[TIME_FIELDS[self.dataset]][row].as_py()
        return {"dataset": self.dataset, "record_id": record_id, "error_kind": kind, "raw_record": raw,
                "source_file": self.path, "line_no": int(line_no), "error_field": field,
                "error_message": message if moment is None or moment.name is None else f"moment {moment.name}: {message}",
                "dt": record_date(timestamp, self.source_tz, self.run_tz, self.fallback_dt)}


def _raw_rows(table: pa.Table, rows: np.ndarray) -> dict[int, str]:
    """The source rows (as JSON objects of their cells) of the rows marked in `rows`."""
    positions = np.flatnonzero(rows)
    if not len(positions):
        return {}
    picked = table.take(pa.array(positions)).to_pylist()
    return {int(p): json.dumps(row, ensure_ascii=False) for p, row in zip(positions, picked)}


def record_date(timestamp: str | datetime | None, source_tz: tzinfo, run_tz: tzinfo, fallback_dt: str) -> str:
    """Partition date of a rejected row: its mapped timestamp's local date in the run's zone, else the run date."""
    try:
        return (timestamp if isinstance(timestamp, datetime) else parse_timestamp(timestamp, source_tz)).astimezone(run_tz).date().isoformat()
    except (ValueError, TypeError, AttributeError, OverflowError):
        return fallback_dt
