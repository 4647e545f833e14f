"""Native exports read as they are: CSV of any dialect, JSON Lines, Parquet and XES, in any encoding Python knows.

Each file becomes one `NativeTable`: its rows as string columns (a cell that is absent is null), the physical line
of each row, and the rows that could not be read (a bad encoding, a wrong number of cells, invalid JSON), each
with its line and reason, so that every source row is accounted for.

    >>> native = read_native("export.csv", CsvFormat(type="csv", delimiter=";"))   # doctest: +SKIP
"""
from __future__ import annotations

import codecs
import csv
import gzip
import json
import threading
import xml.parsers.expat
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import pyarrow.parquet as pq

from pipelines.ingest.formats import InputError, ReadTally, _read_guarded
from pipelines.ingest.sources.spec import CsvFormat, JsonlFormat, ParquetFormat, XesFormat


@dataclass(frozen=True)
class BadRow:
    """A source row that could not be read: its line, its text (as far as it could be decoded) and why."""

    line_no: int
    raw: str
    reason: str


@dataclass
class NativeTable:
    """The rows of one native file: string columns, the line of each row, and the rows that could not be read."""

    table: pa.Table
    line_nos: np.ndarray
    bad: list[BadRow] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Source rows: those read and those that could not be."""
        return self.table.num_rows + len(self.bad)


def read_bytes(path: str, tally: ReadTally | None = None) -> bytes:
    """The whole decompressed file (compression by its suffix, as for contract inputs); `tally` gets the bytes
    read (as stored) once the file was read to its end."""
    return b"".join(_read_guarded(path, lambda handle: handle.read(8 << 20), tally=tally))


# --- encodings -------------------------------------------------------------------------------------------------

_DECODE_ERRORS = threading.local()


def _record_error(err: UnicodeDecodeError):
    _DECODE_ERRORS.positions.append(err.start)
    return "\ufffd", err.end


codecs.register_error("motpipe-record", _record_error)


def _ascii_compatible(encoding: str) -> bool:
    """Whether a line break is the byte 0x0A and never part of another character (UTF-8, GBK, GB18030, Latin-1 ...)."""
    return "a\nb".encode(encoding).endswith(b"a\nb") and not codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))


def decode(data: bytes, encoding: str, path: str) -> tuple[str, dict[int, str]]:
    """The text of a file and {line number: reason} of its lines that are not valid in `encoding` (their bad bytes
    replaced by U+FFFD, so that they can be shown in quarantine but are never mapped as data). A UTF-8 byte-order
    mark is dropped; UTF-16 needs its byte-order mark, and a UTF-16 file that does not decode is an InputError."""
    declared = encoding
    if codecs.lookup(encoding).name == "utf-8":
        encoding = "utf-8-sig"
    if not _ascii_compatible(declared):
        try:
            return data.decode(encoding), {}
        except UnicodeDecodeError as err:
            raise InputError(f"{path}: not {declared} at byte {err.start}: {err.reason}") from None
    _DECODE_ERRORS.positions = []
    text = data.decode(encoding, errors="motpipe-record")
    positions = _DECODE_ERRORS.positions
    if not positions:
        return text, {}
    breaks = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    lines = np.searchsorted(breaks, positions) + 1  # 1-based line of each bad byte
    return text, {int(line): f"not {declared}" for line in lines}


def utf8_bytes(data: bytes, encoding: str, path: str) -> tuple[bytes, dict[int, str]]:
    """`decode` as UTF-8 bytes (without a byte-order mark): a valid UTF-8 file as it is, anything else transcoded."""
    if codecs.lookup(encoding).name == "utf-8":
        body = data[len(codecs.BOM_UTF8):] if data.startswith(codecs.BOM_UTF8) else data
        try:
            body.decode("utf-8")
            return body, {}
        except UnicodeDecodeError:
            pass
    text, not_decoded = decode(data, encoding, path)
    return text.encode("utf-8", errors="surrogatepass"), not_decoded


# --- CSV ---------------------------------------------------------------------------------------------------------

def _blank_lines(data: bytes) -> np.ndarray:
    """Whether each physical line is empty or only a CR (pyarrow skips those; a line of spaces is not empty)."""
    array = np.frombuffer(data, np.uint8)
    breaks = np.flatnonzero(array == 10)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.append(breaks, len(array))
    length = ends - starts
    return (length == 0) | ((length == 1) & (array[np.minimum(starts, len(array) - 1)] == 13)) if len(array) else \
        np.ones(1, bool)


def _start_lines(data: bytes, records: int, extra: np.ndarray) -> np.ndarray:
    """The physical line where each of `records` records starts, given the line breaks inside each (`extra`)."""
    blank = _blank_lines(data)
    non_blank = np.flatnonzero(~blank) + 1
    if not extra.any():
        return non_blank[:records]
    starts, line = np.empty(records, np.int64), 1
    for record in range(records):
        while line <= len(blank) and blank[line - 1]:
            line += 1
        starts[record] = line
        line += 1 + int(extra[record])
    return starts


def _header(data: bytes, fmt: CsvFormat) -> list[str]:
    """The column names: `columns`, or the header row (after `skip_rows` rows) read with the file's dialect."""
    if not fmt.header:
        return list(fmt.columns)
    head = [line.decode("utf-8") for line in data.split(b"\n", fmt.skip_rows + 100)[:fmt.skip_rows + 100]]
    lines = (line + "\n" for line in head if line.strip("\r"))
    dialect = {"delimiter": fmt.delimiter, "quotechar": fmt.quote or '"', "quoting": csv.QUOTE_MINIMAL if fmt.quote else csv.QUOTE_NONE}
    reader = csv.reader(lines, **dialect)
    for _ in range(fmt.skip_rows):
        next(reader, None)
    names = [name.strip() for name in next(reader, [])]
    return fmt.columns or names


def read_csv(path: str, fmt: CsvFormat, tally: ReadTally | None = None) -> NativeTable:
    """A delimited file by `pyarrow.csv`: every column a string, cells with line breaks allowed; a record with
    another number of cells than the header is a bad row, a record whose cells are all blank is not a row."""
    data, not_decoded = utf8_bytes(read_bytes(path, tally), fmt.encoding, path)
    names = _header(data, fmt)
    if not names:
        return NativeTable(pa.table({}), np.empty(0, np.int64))
    header_records = fmt.skip_rows + (1 if fmt.header else 0) + fmt.skip_rows_after_header
    invalid: list[tuple[int, str, str]] = []  # (record number, text, reason)

    def on_invalid(row) -> str:
        if row.text.strip():
            invalid.append((row.number, row.text, f"{row.actual_columns} cells where the header has {row.expected_columns}"))
        return "skip"

    unique = [f"{i}" for i in range(len(names))]  # positions: a repeated header name stays two columns
    try:
        table = pv.read_csv(
            pa.py_buffer(data),
            read_options=pv.ReadOptions(column_names=unique, skip_rows=header_records, use_threads=False),
            parse_options=pv.ParseOptions(delimiter=fmt.delimiter, quote_char=fmt.quote or False,
                                          newlines_in_values=True, invalid_row_handler=on_invalid),
            convert_options=pv.ConvertOptions(column_types=dict.fromkeys(unique, pa.string()),
                                              strings_can_be_null=False, null_values=[]))
    except pa.ArrowInvalid as err:
        raise InputError(f"{path}: cannot read as CSV: {err}") from None
    table = pa.table(table.columns, names=names) if len(set(names)) == len(names) else \
        pa.table(table.columns, names=_deduplicated(names))
    invalid_numbers = {number for number, _, _ in invalid}
    total = table.num_rows + len(invalid) + header_records
    records = np.arange(1, total + 1)
    valid_records = np.setdiff1d(records[header_records:], np.array(sorted(invalid_numbers), np.int64))
    extra = np.zeros(total, np.int64)
    if table.num_columns and fmt.quote and fmt.quote.encode() in data:  # line breaks inside quoted cells
        breaks = np.sum([pc.count_substring(column, "\n").to_numpy(zero_copy_only=False) for column in table.columns], axis=0)
        extra[valid_records - 1] = breaks
    for number, row_text, _ in invalid:
        extra[number - 1] = row_text.count("\n")
    starts = _start_lines(data, total, extra)
    line_nos, spans = starts[valid_records - 1], extra[valid_records - 1]
    bad = [BadRow(int(starts[number - 1]), row_text, reason) for number, row_text, reason in invalid]
    keep = ~_blank_rows(table)
    if not_decoded:  # rows holding a line that is not in the encoding: bad rows, never data
        lines = np.array(sorted(not_decoded), np.int64)
        hit = keep & (np.searchsorted(lines, line_nos + spans, side="right") > np.searchsorted(lines, line_nos))
        for i, row in zip(np.flatnonzero(hit), table.filter(pa.array(hit)).to_pylist()):
            line = lines[np.searchsorted(lines, line_nos[i])]
            bad.append(BadRow(int(line_nos[i]), json.dumps(row, ensure_ascii=False), not_decoded[int(line)]))
        keep &= ~hit
    return NativeTable(table.filter(pa.array(keep)), line_nos[keep], sorted(bad, key=lambda b: b.line_no))


def _deduplicated(names: list[str]) -> list[str]:
    """Repeated column names made unique: the second `x` becomes `x.2`."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}.{seen[name]}")
    return out


def _blank_rows(table: pa.Table) -> np.ndarray:
    """Rows whose every cell is blank are not rows (a spreadsheet's empty lines `,,,`)."""
    if not table.num_rows or not table.num_columns:
        return np.zeros(table.num_rows, bool)
    short = np.logical_and.reduce([pc.binary_length(c).to_numpy(zero_copy_only=False) <= 4 for c in table.columns])
    if not short.any():  # only rows of short cells can be all blank
        return short
    candidates = table.filter(pa.array(short))
    blank = np.logical_and.reduce([_mask(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(c)), 0))
                                   for c in candidates.columns])
    short[short] = blank
    return short


def _mask(condition) -> np.ndarray:
    return pc.fill_null(condition, False).to_numpy(zero_copy_only=False)


# --- JSON Lines ------------------------------------------------------------------------------------------------

def _cell(value: object) -> str | None:
    """A JSON value as a cell: strings as they are, null as null, anything else as its JSON text."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def read_jsonl(path: str, fmt: JsonlFormat, tally: ReadTally | None = None) -> NativeTable:
    """One object a line (any keys); a line that is not a JSON object, or not in the encoding, is a bad row."""
    text, not_decoded = decode(read_bytes(path, tally), fmt.encoding, path)
    rows, line_nos, bad = [], [], []
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        if line_no in not_decoded:
            bad.append(BadRow(line_no, line.rstrip("\r"), not_decoded[line_no]))
            continue
        try:
            value = json.loads(line)
        except ValueError as err:
            bad.append(BadRow(line_no, line.rstrip("\r"), f"invalid JSON: {err}"))
            continue
        if not isinstance(value, dict):
            bad.append(BadRow(line_no, line.rstrip("\r"), f"a JSON {type(value).__name__} is not an object"))
            continue
        rows.append({key: _cell(v) for key, v in value.items()})
        line_nos.append(line_no)
    return NativeTable(_string_table(rows), np.array(line_nos, np.int64), bad)


def _string_table(rows: list[dict]) -> pa.Table:
    names = list(dict.fromkeys(key for row in rows for key in row))
    return pa.table({name: pa.array([row.get(name) for row in rows], pa.string()) for name in names})


# --- Parquet -----------------------------------------------------------------------------------------------------

def read_parquet(path: str, fmt: ParquetFormat, tally: ReadTally | None = None) -> NativeTable:
    """Every column as text (timestamps as ISO 8601, nested values as JSON); a row's line is its position + 1."""
    try:
        table = pq.read_table(pa.BufferReader(read_bytes(path, tally)))
    except (OSError, pa.ArrowException) as err:
        raise InputError(f"{path}: cannot read as Parquet: {err}") from None
    columns = {}
    for name, column in zip(table.column_names, table.columns):
        if pa.types.is_timestamp(column.type):
            columns[name] = pc.strftime(column, "%Y-%m-%dT%H:%M:%S" + ("%z" if column.type.tz else ""))
        elif pa.types.is_nested(column.type):
            columns[name] = pa.array([_cell(v) for v in column.to_pylist()], pa.string())
        else:
            columns[name] = column.cast(pa.string())
    return NativeTable(pa.table(columns), np.arange(1, table.num_rows + 1, dtype=np.int64))


# --- XES ---------------------------------------------------------------------------------------------------------

_XES_VALUES = ("string", "date", "int", "float", "boolean", "id")


def read_xes(path: str, fmt: XesFormat, tally: ReadTally | None = None) -> NativeTable:
    """An XES log streamed by expat: one row per `<event>`, its attributes as columns and its trace's as
    `case:<key>` (the pm4py convention); the row's line is that of its `<event>` tag. Nested attributes
    (lists, containers) are left out; trace attributes count for the events after them (XES writes them first)."""
    rows, line_nos = [], []
    trace: dict[str, str] = {}
    stack: list[str] = []
    event: dict[str, str] | None = None
    parser = xml.parsers.expat.ParserCreate()

    def start(tag: str, attributes: dict) -> None:
        nonlocal event
        parent = stack[-1] if stack else None
        stack.append(tag)
        if tag == "trace":
            trace.clear()
        elif tag == "event" and parent == "trace":
            event = {}
            line_nos.append(parser.CurrentLineNumber)
        elif tag in _XES_VALUES and "key" in attributes and parent in ("trace", "event"):
            target = event if parent == "event" else trace
            key = attributes["key"] if parent == "event" else f"case:{attributes['key']}"
            target[key] = attributes.get("value")

    def end(tag: str) -> None:
        nonlocal event
        stack.pop()
        if tag == "event" and event is not None:
            rows.append({**trace, **event})
            event = None

    parser.StartElementHandler, parser.EndElementHandler = start, end
    data = read_bytes(path, tally)
    if data[:2] == b"\x1f\x8b":  # gzip without a .gz name
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise InputError(f"cannot read {path}: {err}") from None
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as err:
        raise InputError(f"{path}: not a well-formed XES file: {err}") from None
    return NativeTable(_string_table(rows), np.array(line_nos[:len(rows)], np.int64))


READERS = {"csv": read_csv, "jsonl": read_jsonl, "parquet": read_parquet, "xes": read_xes}


def read_native(path: str, fmt, tally: ReadTally | None = None) -> NativeTable:
    """The rows of one file of a source, by its format; `tally` gets the bytes read (`read_bytes`)."""
    return READERS[fmt.type](path, fmt, tally)
