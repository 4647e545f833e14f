"""Read one input file into Arrow batches of validated rows plus a batch of quarantine rows.

    >>> batches = read_validated(path, "events", channels, UTC, batch_rows=50_000)   # doctest: +SKIP
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, tzinfo

import pyarrow as pa

from pipelines.contract import DIMENSIONS, ErrorKind
from pipelines.io import RawRecord, read_records
from pipelines.validate import ID_FIELDS, TIME_FIELDS, VALIDATORS, Rejection, parse_timestamp
from schemas.tables import EVENTS, FEEDBACK, QUARANTINE_RAW

_LINEAGE = [("source_file", pa.string()), ("line_no", pa.int64())]
_EVENT_FIELDS = ["event_id", "occurred_at", "customer_id", "visit_id", "channel", "touchpoint", "staff_id",
                 "location_id", "duration_s", "wait_s", "text", "outcome", "attributes"]
_FEEDBACK_FIELDS = ["feedback_id", "submitted_at", "customer_id", "visit_id", "touchpoint", "channel", "csat", "nps",
                    "ces", "comment", "ratings",
                    *[f"{d}_{m}" for d in DIMENSIONS for m in ("expectation", "perception", "gap")]]


def _schema(source: pa.Schema, names: list[str]) -> pa.Schema:
    return pa.schema([pa.field(n, source.field(n).type) for n in names] + [pa.field(n, t) for n, t in _LINEAGE])


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


def read_validated(
    path: str, dataset: str, channels, default_tz: tzinfo, batch_rows: int, fallback_dt: str
) -> Iterator[tuple[pa.Table, pa.Table]]:
    """Yield (valid rows, rejected rows) Arrow tables of at most `batch_rows` input rows each."""
    validate = VALIDATORS[dataset]
    valid: list[dict] = []
    rejected: list[dict] = []
    for record in read_records(path):
        if record.fields is None:
            outcome: dict | Rejection = Rejection(ErrorKind.UNPARSEABLE_LINE, None, record.parse_error)
        else:
            outcome = validate(record.fields, channels, default_tz)
        if isinstance(outcome, Rejection):
            rejected.append(rejected_row(record, dataset, path, outcome, _record_date(record, dataset, default_tz, fallback_dt)))
        else:
            outcome["source_file"] = path
            outcome["line_no"] = record.line_no
            valid.append(outcome)
        if len(valid) + len(rejected) >= batch_rows:
            yield _tables(dataset, valid, rejected)
            valid, rejected = [], []
    if valid or rejected:
        yield _tables(dataset, valid, rejected)


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
    if fields.get("attributes"):
        fields["attributes"] = json.loads(fields["attributes"])
    if "ratings" in fields:
        fields["ratings"] = {
            item["item"]: {"expectation": item["expectation"], "perception": item["perception"]}
            for item in fields["ratings"]
        } or None
        fields = {k: v for k, v in fields.items() if not k.endswith(("_expectation", "_perception", "_gap"))}
    return json.dumps({k: v for k, v in fields.items() if v is not None}, ensure_ascii=False)
