"""`motpipe sources draft`: look at an export and write a source file for the user to finish.

It recognises the encoding (byte-order marks, UTF-8, else GB18030, else Latin-1), the format by the file name, a
CSV file's delimiter and header (Python's csv.Sniffer), null markers, and per column whether it holds timestamps
(ISO 8601, epoch seconds or milliseconds, or one of `TIME_FORMATS`), numbers or text; it guesses the contract fields
from the column names and leaves a TODO where it cannot.

    >>> print(draft_source("export.csv"))   # doctest: +SKIP
"""
from __future__ import annotations

import codecs
import csv
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml

from pipelines.ingest.sources.native import read_bytes, read_native
from pipelines.ingest.sources.spec import CsvFormat, JsonlFormat, ParquetFormat, XesFormat

SAMPLE_ROWS = 1000
NULL_MARKERS = ("?", "NA", "N/A", "n/a", "-", "null", "NULL", "None", "#N/A")
TIME_FORMATS = ("%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%Y/%m/%d %H:%M",
                "%Y/%m/%d %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S", "%Y%m%d%H%M%S", "%d-%m-%Y %H:%M",
                "%Y-%m-%d", "%d/%m/%Y", "%d.%m.%Y", "%H:%M:%S", "%H:%M")
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")
# contract field -> column names (lower-cased, without punctuation) that usually hold it, most likely first
GUESSES = {
    "event_id": ["event_id", "eventid", "id", "concept:instance", "task_id", "row_id"],
    "feedback_id": ["feedback_id", "response_id", "resp_id", "responseid", "id"],
    "customer_id": ["customer_id", "customer", "caller_id", "caller", "client_id", "client", "case:concept:name",
                    "user_id", "member_id", "客户号", "客户"],
    "visit_id": ["visit_id", "session_id", "case_id", "number", "ticket_id", "call_id", "case:concept:name"],
    "touchpoint": ["touchpoint", "activity", "concept:name", "step", "event", "state", "incident_state", "status",
                   "业务类型"],
    "channel": ["channel", "contact_type", "case:channel", "source", "渠道"],
    "staff_id": ["staff_id", "agent", "agent_id", "org:resource", "assigned_to", "resource", "employee", "柜员"],
    "location_id": ["location_id", "location", "branch", "store", "site", "网点"],
    "text": ["text", "notes", "note", "remark", "comment", "备注"],
    "comment": ["comment", "comments", "feedback", "remark", "verbatim"],
    "csat": ["csat", "satisfaction", "overall"],
    "nps": ["nps", "recommend", "likelihood_to_recommend"],
    "ces": ["ces", "effort"],
}


@dataclass(frozen=True)
class Column:
    """What a column holds: `timestamp` (with its format), `number` or `text`, and a few example values."""

    name: str
    kind: str
    time_format: str | None
    examples: list[str]
    codes: list[str]  # its distinct values when it has at most 30, else []


def sniff_encoding(data: bytes) -> str:
    """`utf-8-sig`/`utf-16` by a byte-order mark, else `utf-8` if it decodes, else `gb18030` if that does, else latin-1."""
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    for encoding in ("utf-8", "gb18030"):
        try:
            data.decode(encoding)
            return encoding
        except UnicodeDecodeError:
            continue
    return "latin-1"


def sniff_format(path: str, data: bytes):
    """The format of a file: by its name (.jsonl/.json/.ndjson, .parquet, .xes), else CSV with a sniffed dialect."""
    name = path.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return JsonlFormat(type="jsonl", encoding=sniff_encoding(data))
    if name.endswith(".parquet"):
        return ParquetFormat(type="parquet")
    if name.endswith(".xes"):
        return XesFormat(type="xes")
    encoding = sniff_encoding(data)
    text = data[:64 << 10].decode(encoding, errors="ignore").lstrip("\ufeff")
    sample = "\n".join(text.splitlines()[:50])
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    try:
        header = csv.Sniffer().has_header(sample)
    except csv.Error:
        header = True
    return CsvFormat(type="csv", delimiter=delimiter, encoding=encoding, header=header,
                     columns=None if header else [f"column_{i + 1}" for i in range(len(sample.splitlines()[0].split(delimiter)))])


def time_format(values: list[str]) -> str | None:
    """The timestamp format every value matches: iso, epoch_s, epoch_ms or one of TIME_FORMATS; None if none does."""
    if values and all(_ISO.match(v) for v in values):
        return "iso"
    if values and all(v.isdigit() for v in values):
        numbers = [int(v) for v in values]
        if all(946_684_800 <= n <= 4_102_444_800 for n in numbers):  # 2000 .. 2100
            return "epoch_s"
        if all(946_684_800_000 <= n <= 4_102_444_800_000 for n in numbers):
            return "epoch_ms"
        return None
    for candidate in TIME_FORMATS:
        try:
            for value in values:
                datetime.strptime(value, candidate)
        except ValueError:
            continue
        return candidate if values else None
    return None


def _number(value: str) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False


def describe_columns(table, nulls: list[str]) -> list[Column]:
    """Each column's kind from the first SAMPLE_ROWS rows (empty cells and null markers left out)."""
    columns = []
    for name in table.column_names:
        values = [v.strip() for v in table.column(name).slice(0, SAMPLE_ROWS).to_pylist() if v is not None]
        values = [v for v in values if v and v not in nulls]
        found = time_format(values)
        kind = "timestamp" if found else "number" if values and all(map(_number, values)) else "text"
        distinct = list(dict.fromkeys(values))
        columns.append(Column(name, kind, found, distinct[:3], distinct if len(distinct) <= 30 else []))
    return columns


def _null_markers(table) -> list[str]:
    """The cells that look like missing-value markers (on at least 1% of the sampled cells of some column)."""
    found = {""}
    for name in table.column_names:
        values = [v.strip() for v in table.column(name).slice(0, SAMPLE_ROWS).to_pylist() if v is not None]
        for marker in NULL_MARKERS:
            if values and values.count(marker) >= max(1, len(values) // 100):
                found.add(marker)
    return sorted(found)


def _guess(field: str, columns: list[Column], taken: set[str]) -> str | None:
    names = {re.sub(r"[\s.\-]+", "_", c.name.strip().lower()): c.name for c in columns}
    for candidate in GUESSES.get(field, []):
        if candidate in names and (names[candidate] not in taken or field == "visit_id"):
            return names[candidate]
    return None


def draft_source(path: str, dataset: str = "events") -> str:
    """A draft source file (YAML text with comments) for the export at `path`."""
    data = read_bytes(path)
    fmt = sniff_format(path, data)
    native = read_native(path, fmt)
    nulls = _null_markers(native.table)
    columns = describe_columns(native.table, nulls)
    by_name = {c.name: c for c in columns}
    fields: dict[str, object] = {}
    taken: set[str] = set()
    time_field = "occurred_at" if dataset == "events" else "submitted_at"
    stamps = [c for c in columns if c.kind == "timestamp"]
    if stamps:
        ranked = [c for pattern in ("timestamp", "updated", "time", "date", "at$") for c in stamps
                  if re.search(pattern, c.name.lower())]
        stamp = (ranked or stamps)[0]
        fields[time_field] = stamp.name if stamp.time_format == "iso" else {"column": stamp.name, "format": stamp.time_format}
        taken.add(stamp.name)
    wanted = (["event_id", "customer_id", "visit_id", "channel", "touchpoint", "staff_id", "location_id", "text"]
              if dataset == "events" else ["feedback_id", "customer_id", "visit_id", "csat", "nps", "ces", "comment"])
    for field in wanted:
        column = _guess(field, columns, taken)
        if column is not None:
            taken.add(column)
            values = by_name[column]
            if field == "channel" and values.codes:
                fields[field] = {"column": column, "map": {v: "TODO" for v in values.codes}}
            elif field == "touchpoint":
                fields[field] = {"column": column, "slug": True}
            else:
                fields[field] = column
    id_field = "event_id" if dataset == "events" else "feedback_id"
    if id_field not in fields:
        fields[id_field] = {"hash": [c.name for c in columns[:3]]}
    draft = {"version": 1, "dataset": dataset, "paths": [path],
             "format": fmt.model_dump(exclude_defaults=True, exclude_none=True) | {"type": fmt.type},
             "timezone": "UTC", "null_values": nulls, "fields": fields}
    if dataset == "events":
        draft["attributes"] = "rest"
    missing = [f for f in (["event_id", "occurred_at", "customer_id", "channel", "touchpoint"] if dataset == "events"
                           else ["feedback_id", "submitted_at", "customer_id"]) if f not in fields]
    lines = [f"# Draft source file for {path} (motpipe sources draft): check every field, then run",
             "#   motpipe sources check THIS.yaml --rows 10",
             "# Columns found (kind, examples):"]
    lines += [f"#   {c.name}: {c.kind}{' ' + c.time_format if c.time_format else ''}; {', '.join(map(repr, c.examples))}"
              for c in columns]
    if missing:
        lines.append(f"# TODO: give {', '.join(missing)} (a column, a constant `{{value: ...}}`, a template, ...)")
    if "channel" in fields and isinstance(fields["channel"], dict):
        lines.append("# TODO: map each channel code to one of the contract's channels (branch, phone, web, ...)")
    text = yaml.safe_dump(draft, allow_unicode=True, sort_keys=False, width=120)
    return "\n".join(lines) + "\n" + text


def draft_path(path: str) -> str:
    """Where `sources draft` writes by default: beside the working directory, named after the export."""
    name = Path(path).name
    for suffix in (".gz", ".csv", ".tsv", ".txt", ".jsonl", ".json", ".ndjson", ".parquet", ".xes"):
        name = name.removesuffix(suffix)
    return f"{name}.source.yaml"
