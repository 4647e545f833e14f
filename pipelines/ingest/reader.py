"""Read one input file into Arrow batches of validated rows plus a batch of quarantine rows.

    >>> batches = read_validated(path, "events", channels, UTC, batch_rows=50_000)   # doctest: +SKIP
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo
from itertools import chain, islice

import numpy as np
import pyarrow as pa

from pipelines.ingest import vectorised
from pipelines.ingest.contract import DIMENSIONS, ErrorKind
from pipelines.ingest.formats import (WHOLE_FILE, CsvRow, FilePart, RawRecord, ReadTally, block_lines, csv_header, csv_line,
                                      csv_record, csv_rows, input_format, jsonl_record, read_csv_rows, read_line_blocks, read_records)
from pipelines.ingest.validate import ID_FIELDS, TIME_FIELDS, VALIDATORS, Rejection, parse_timestamp
from schemas.tables import EVENTS, FEEDBACK, QUARANTINE_RAW

_LINEAGE = [("source_file", pa.string()), ("line_no", pa.int64())]
_EVENT_FIELDS = ["event_id", "occurred_at", "customer_id", "visit_id", "channel", "touchpoint", "staff_id",
                 "location_id", "duration_s", "wait_s", "text", "outcome", "attributes", "identifiers"]
_FEEDBACK_FIELDS = ["feedback_id", "submitted_at", "customer_id", "visit_id", "touchpoint", "channel", "csat", "nps",
                    "ces", "comment", "ratings", "identifiers",
                    *[f"{d}_{m}" for d in DIMENSIONS for m in ("expectation", "perception", "gap")]]
_IDENTIFIERS = pa.field("identifiers", pa.string())  # JSON object type -> value, raw: the identity graph hashes them


def _schema(source: pa.Schema, names: list[str]) -> pa.Schema:
    return pa.schema([_IDENTIFIERS if n == "identifiers" else pa.field(n, source.field(n).type) for n in names]
                     + [pa.field(n, t) for n, t in _LINEAGE])


# Validated rows between the read and the writers: contract columns (visit_id still optional) + lineage.
VALID_SCHEMAS = {"events": _schema(EVENTS, _EVENT_FIELDS), "feedback": _schema(FEEDBACK, _FEEDBACK_FIELDS)}
# Quarantine rows before masking: the restricted raw schema plus the error details and the partition date.
REJECTED_SCHEMA = pa.schema(
    [f for f in QUARANTINE_RAW if f.name not in ("run_id", "schema_version")]
    + [pa.field("error_field", pa.string()), pa.field("error_message", pa.string()), pa.field("dt", pa.string())]
)


def _record_id(record: RawRecord, dataset: str) -> str | None:
    value = record.fields.get(ID_FIELDS[dataset]) if record.fields else None
    return value.strip() or None if isinstance(value, str) else None


def _record_date(record: RawRecord, dataset: str, default_tz: tzinfo, fallback_dt: str) -> str:
    """Partition date of a rejected row: its own timestamp's local date when readable, else the run date."""
    value = record.fields.get(TIME_FIELDS[dataset]) if record.fields else None
    try:
        return parse_timestamp(value, default_tz).astimezone(default_tz).date().isoformat()
    except (ValueError, TypeError, AttributeError, OverflowError):
        return fallback_dt


def rejected_row(record: RawRecord, dataset: str, source_file: str, rejection: Rejection, dt: str) -> dict:
    return {
        "dataset": dataset,
        "record_id": _record_id(record, dataset),
        "error_kind": rejection.kind.value,
        "raw_record": record.raw,
        "source_file": source_file,
        "line_no": record.line_no,
        "error_field": rejection.field,
        "error_message": rejection.message,
        "dt": dt,
    }


def _outcome(record: RawRecord, dataset: str, path: str, channels, default_tz: tzinfo,
             fallback_dt: str) -> tuple[dict | None, dict | None]:
    """The per-row reference path: (clean row with lineage, None) or (None, quarantine row)."""
    if record.fields is None:
        outcome: dict | Rejection = Rejection(ErrorKind.UNPARSEABLE_LINE, None, record.parse_error)
    else:
        outcome = VALIDATORS[dataset](record.fields, channels, default_tz)
    if isinstance(outcome, Rejection):
        return None, rejected_row(record, dataset, path, outcome, _record_date(record, dataset, default_tz, fallback_dt))
    outcome["source_file"] = path
    outcome["line_no"] = record.line_no
    return outcome, None


def read_validated_reference(
    path: str, dataset: str, channels, default_tz: tzinfo, batch_rows: int, fallback_dt: str
) -> Iterator[tuple[pa.Table, pa.Table]]:
    """`read_validated` one row at a time in Python: the reference that the fast path is tested against."""
    valid: list[dict] = []
    rejected: list[dict] = []
    for record in read_records(path):
        clean, bad = _outcome(record, dataset, path, channels, default_tz, fallback_dt)
        if clean is not None:
            valid.append(clean)
        else:
            rejected.append(bad)
        if len(valid) + len(rejected) >= batch_rows:
            yield _tables(dataset, valid, rejected)
            valid, rejected = [], []
    if valid or rejected:
        yield _tables(dataset, valid, rejected)


def read_validated(
    path: str, dataset: str, channels, default_tz: tzinfo, batch_rows: int, fallback_dt: str,
    part: FilePart = WHOLE_FILE, tally: ReadTally | None = None,
) -> Iterator[tuple[pa.Table, pa.Table]]:
    """Yield (valid rows, rejected rows) Arrow tables of `batch_rows` input rows each (the last one fewer),
    in line order; equal to `read_validated_reference`'s. Blocks of rows are checked vectorised
    (`pipelines.ingest.vectorised`); only rows that are not certainly valid go through the per-row reference path.
    `part`: one part of a JSON Lines file (`formats.file_parts`); its rows are those of the whole file's read.
    `tally` gets the bytes and lines read and the lines that start no row (`formats.ReadTally`)."""
    reader = _Reader(path, dataset, channels, default_tz, fallback_dt, tally or ReadTally())
    blocks = reader.jsonl_blocks(part) if input_format(path) == "jsonl" else reader.csv_blocks()
    yield from _rebatch(blocks, batch_rows)


@dataclass
class _Reader:
    """One input file read in blocks: each block -> (valid, rejected, line numbers of its rows)."""

    path: str
    dataset: str
    channels: frozenset[str]
    default_tz: tzinfo
    fallback_dt: str
    tally: ReadTally

    def jsonl_blocks(self, part: FilePart) -> Iterator[tuple[pa.Table, pa.Table, np.ndarray]]:
        next_line_no = part.first_line_no
        for index, data in enumerate(read_line_blocks(self.path, part=part, tally=self.tally)):
            if not part.reads(index):
                next_line_no += vectorised.line_count(data)
                continue
            block = vectorised.split_lines(data, next_line_no)
            next_line_no += len(block.lines)
            self.tally.other_lines += len(block.lines) - int(block.rows.sum())  # blank lines
            positions, fast = vectorised.check_lines(
                self.dataset, block, self.channels, self.default_tz, VALID_SCHEMAS[self.dataset])
            slow = np.setdiff1d(np.flatnonzero(block.rows), positions, assume_unique=True)
            records = (jsonl_record(block.first_line_no + i, block.lines[i].as_py()) for i in slow)
            yield (*self._merge(fast, block.first_line_no + positions, records),
                   block.first_line_no + np.flatnonzero(block.rows))

    def csv_blocks(self, block_rows: int = 50_000) -> Iterator[tuple[pa.Table, pa.Table, np.ndarray]]:
        """Blocks of whole lines: the lines that are certainly one record (`vectorised.simple_csv`) are read by
        `pyarrow.csv` and checked vectorised, every other line is read alone by Python's csv module and its row goes
        through the reference path. From a line that leaves a quoted cell open (a record spanning lines) to the end
        of the file, the rows are read by Python's csv module (`csv_rows`) and all take the reference path."""
        blocks = read_line_blocks(self.path, tally=self.tally)
        first = next(blocks, b"")
        if not first:
            return
        head, whole = csv_line(first[:first.find(b"\n") + 1 or len(first)], 1)
        if not whole or head.error:  # the header spans lines, or is no CSV (e.g. lines that end in CR alone)
            yield from self._csv_rows(*read_csv_rows(block_lines(chain([first], blocks)), self.tally), block_rows)
            return
        header = csv_header(head.cells)
        simple, next_line_no = vectorised.simple_csv(len(header)), 1
        for data in chain([first], blocks):
            block = vectorised.split_lines(data, next_line_no, simple)
            next_line_no += len(block.lines)
            rows, cut = {}, len(block.lines)  # position -> row of the other lines, up to one that leaves a quote open
            for position in np.flatnonzero(~block.simple)[1 if block.first_line_no == 1 else 0:]:  # not the header
                row, whole = csv_line(block.line(position), block.first_line_no + position)
                if not whole:
                    cut = position
                    break
                if not row.blank:
                    rows[position] = row
            block.simple[cut:] = False
            positions, fast = vectorised.check_csv(
                self.dataset, header, block, self.channels, self.default_tz, VALID_SCHEMAS[self.dataset])
            for position in np.setdiff1d(np.flatnonzero(block.simple), positions, assume_unique=True):
                rows[position] = csv_line(block.line(position), block.first_line_no + position)[0]
            slow = np.array(sorted(rows), np.int64)
            self.tally.other_lines += int(cut) - len(positions) - len(slow)  # the header, blank lines
            yield (*self._merge(fast, block.first_line_no + positions, (csv_record(header, rows[p]) for p in slow)),
                   block.first_line_no + np.union1d(positions, slow))
            if cut < len(block.lines):
                tail = block_lines(chain([data[block.offsets[cut]:]], blocks))
                yield from self._csv_rows(header, csv_rows(tail, block.first_line_no + cut, self.tally), block_rows)
                return

    def _csv_rows(self, header: list[str], rows: Iterator[CsvRow],
                  block_rows: int) -> Iterator[tuple[pa.Table, pa.Table, np.ndarray]]:
        """CSV rows read by Python's csv module, all through the reference path, `block_rows` at a time."""
        no_rows = VALID_SCHEMAS[self.dataset].empty_table().drop_columns([name for name, _ in _LINEAGE])
        while block := list(islice(rows, block_rows)):
            line_nos = np.array([row.line_no for row in block], np.int64)
            yield *self._merge(no_rows, line_nos[:0], (csv_record(header, row) for row in block)), line_nos

    def _merge(self, fast: pa.Table, fast_lines: np.ndarray, slow: Iterator[RawRecord]) -> tuple[pa.Table, pa.Table]:
        """The fast rows plus the reference path's outcome of the other rows: (valid, rejected) in line order."""
        outcomes = [_outcome(r, self.dataset, self.path, self.channels, self.default_tz, self.fallback_dt) for r in slow]
        slow_valid, rejected = _tables(self.dataset, [v for v, _ in outcomes if v], [r for _, r in outcomes if r])
        lineage = {"source_file": pa.array([self.path] * fast.num_rows, pa.string()), "line_no": pa.array(fast_lines)}
        fast = pa.Table.from_arrays([*fast.columns, *lineage.values()], schema=VALID_SCHEMAS[self.dataset])
        return pa.concat_tables([fast, slow_valid]).sort_by("line_no"), rejected


def _rebatch(blocks: Iterator[tuple[pa.Table, pa.Table, np.ndarray]], batch_rows: int) -> Iterator[tuple[pa.Table, pa.Table]]:
    """Blocks of any size -> batches of exactly `batch_rows` input rows (the last one fewer), cut by line number."""
    valid, rejected, rows = [], [], np.empty(0, np.int64)
    for block_valid, block_rejected, block_rows in blocks:
        valid.append(block_valid)
        rejected.append(block_rejected)
        rows = np.concatenate([rows, block_rows])
        while len(rows) >= batch_rows:
            batch, (valid, rejected) = _cut(valid, rejected, rows[batch_rows - 1])
            rows = rows[batch_rows:]
            yield batch
    if len(rows):
        yield _cut(valid, rejected, rows[-1])[0]


def _cut(valid: list[pa.Table], rejected: list[pa.Table], last_line: int):
    """Split the pending tables after line `last_line`: ((valid, rejected) up to it, ([rest], [rest]))."""
    head, rest = [], []
    for pending in (pa.concat_tables(valid), pa.concat_tables(rejected)):
        end = int(np.searchsorted(pending.column("line_no").to_numpy(), last_line, side="right"))
        head.append(pending.slice(0, end).combine_chunks())
        rest.append([pending.slice(end)])
    return tuple(head), tuple(rest)


def _tables(dataset: str, valid: list[dict], rejected: list[dict]) -> tuple[pa.Table, pa.Table]:
    return (
        pa.Table.from_pylist(valid, schema=VALID_SCHEMAS[dataset]),
        pa.Table.from_pylist(rejected, schema=REJECTED_SCHEMA),
    )


def record_json(row: dict) -> str:
    """A validated row as contract JSON (for quarantined duplicate losers, replayable as input)."""
    fields = {k: v for k, v in row.items() if k not in ("source_file", "line_no")}
    for key, value in fields.items():
        if isinstance(value, datetime):
            fields[key] = value.isoformat()
    for field in ("attributes", "identifiers"):
        if fields.get(field):
            fields[field] = json.loads(fields[field])
    if "ratings" in fields:
        fields["ratings"] = {
            item["item"]: {"expectation": item["expectation"], "perception": item["perception"]}
            for item in fields["ratings"]
        } or None
        fields = {k: v for k, v in fields.items() if not k.endswith(("_expectation", "_perception", "_gap"))}
    return json.dumps({k: v for k, v in fields.items() if v is not None}, ensure_ascii=False)
