"""Vectorised fast path of `ingest.read_validated`: whole blocks of rows parsed and checked with Arrow.

JSON Lines blocks are parsed by `pyarrow.json` with an explicit schema (strings, float64 numbers, the
object field as an empty struct); a line whose types differ fails the parse, is reported by row and is
left out (the parse goes on around it). CSV rows come from Python's csv module. On the typed columns
`check` computes, with `pyarrow.compute`, a conservative "certainly valid" mask and the contract columns:
a row is certainly valid only when every field has a plain form on which Arrow gives exactly what
`json.loads` + `pipelines.validate` give (strings, finite non-negative numbers,
`YYYY-MM-DD[T ]HH:MM:SS[.ffffff][Z|±HH:MM]` timestamps, ASCII channel and outcome). Lines that Arrow's
JSON reader might read differently from Python's (not `{...}`, the file's first line, not UTF-8, NaN/Inf
spellings, several values on a line) never count as parsed. Every other row is left to the per-row
Python reference path, which gives its exact rejection or its exact clean row; `ingest` merges both in
line order.

Objects (`attributes`, feedback `ratings`), CSV numbers and naive timestamps outside UTC are finished in
Python, once per distinct value, with the reference functions themselves.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from pipelines.contract import DIMENSIONS, OUTCOMES, SCORE_RANGES
from pipelines.io import CsvRow, unflatten_csv_row
from pipelines.validate import Rejection, check_ratings, parse_timestamp, servqual_by_dimension

# The characters Python's str.strip() removes (str.isspace()); tests/test_ingest_fast.py checks the list.
WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + \
    "\u2028\u2029\u202f\u205f\u3000"

_TIMESTAMP = (r"^(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})[T ](?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})"
              r"(?:\.(?P<f>\d{1,6}))?(?P<z>Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)?$")
_NULL = pa.scalar(None, pa.string())


@dataclass(frozen=True)
class Spec:
    """How each contract field of a dataset is checked: the roles of `pipelines.validate`."""

    timestamp: str
    required: tuple[str, ...]  # required strings besides the timestamp and channel
    optional: tuple[str, ...]  # optional strings (stripped, blank -> null)
    text: str  # free text: kept unstripped unless blank
    numbers: tuple[str, ...]  # non-negative floats
    scores: dict[str, tuple[int, int]]  # integers in a range
    obj: str  # the one object field: events' attributes, feedback's ratings
    channel_required: bool
    outcome: bool

    @property
    def fields(self) -> list[str]:
        """Every contract field the checks read."""
        coded = ["channel", "outcome"] if self.outcome else ["channel"]
        return [self.timestamp, *self.required, *coded, *self.optional, self.text, *self.numbers, *self.scores, self.obj]

    @property
    def json_schema(self) -> pa.Schema:
        """The explicit `pyarrow.json` schema: numbers float64, the object an empty struct (its text is taken
        from the line), everything else string."""
        numeric = {*self.numbers, *self.scores}
        return pa.schema([(f, pa.float64() if f in numeric else pa.struct([]) if f == self.obj else pa.string())
                          for f in self.fields])


SPECS = {
    "events": Spec("occurred_at", ("event_id", "customer_id", "touchpoint"), ("visit_id", "staff_id", "location_id"),
                   "text", ("duration_s", "wait_s"), {}, "attributes", channel_required=True, outcome=True),
    "feedback": Spec("submitted_at", ("feedback_id", "customer_id"), ("visit_id", "touchpoint"), "comment", (),
                     SCORE_RANGES, "ratings", channel_required=False, outcome=False),
}


@dataclass
class Cells:
    """Rows of a block as typed cells: strings, float64 numbers, the object field as JSON text (null when
    absent or null); `ok` is False for rows whose cells do not all have those types."""

    ok: np.ndarray
    columns: dict[str, pa.Array]


def _mask(condition: pa.Array) -> np.ndarray:
    """A boolean Arrow array as numpy, null as False."""
    return pc.fill_null(condition, False).to_numpy(zero_copy_only=False)


# --- the checks, on typed cells ---------------------------------------------------------------------------------

def stripped(values: pa.Array) -> pa.Array:
    """Python's `str.strip()`, a blank result as null."""
    trimmed = pc.utf8_trim(values, WHITESPACE)
    return pc.if_else(pc.equal(pc.binary_length(trimmed), 0), _NULL, trimmed)


def _coded(values: pa.Array, allowed, required: bool) -> tuple[np.ndarray, pa.Array]:
    """A channel or outcome: stripped, lower-cased ASCII in `allowed` (or absent when not required)."""
    value = stripped(values)
    lowered = pc.ascii_lower(value)
    known = _mask(pc.and_(pc.string_is_ascii(value), pc.is_in(lowered, pa.array(sorted(allowed), pa.string()))))
    return (known if required else known | _mask(pc.is_null(value))), lowered


def _strings(spec: Spec, columns: dict, channels) -> tuple[list[np.ndarray], dict]:
    """Conditions and output columns of the string fields."""
    ok, out = [], {}
    for field in spec.required:
        out[field] = stripped(columns[field])
        ok.append(_mask(pc.is_valid(out[field])))
    for field in spec.optional:
        out[field] = stripped(columns[field])
    coded = [("channel", channels, spec.channel_required)] + ([("outcome", OUTCOMES, False)] if spec.outcome else [])
    for field, allowed, required in coded:
        known, out[field] = _coded(columns[field], allowed, required)
        ok.append(known)
    text = columns[spec.text]
    out[spec.text] = pc.if_else(pc.is_valid(stripped(text)), text, _NULL)
    return ok, out


def _non_negative(values: pa.Array) -> np.ndarray:
    """Null, or finite without a sign bit (-0.0 and negatives are left to Python: JSON's -0 is the integer 0)."""
    numbers = values.to_numpy(zero_copy_only=False)
    return _mask(pc.is_null(values)) | (np.isfinite(numbers) & ~np.signbit(numbers))


def _numbers(spec: Spec, columns: dict) -> tuple[list[np.ndarray], dict]:
    """Non-negative numbers (float) and scores (integer in range)."""
    ok, out = [], {}
    for field in spec.numbers:
        out[field] = columns[field]
        ok.append(_non_negative(columns[field]))
    for field, (low, high) in spec.scores.items():
        value = columns[field]
        whole = pc.and_(pc.equal(pc.floor(value), value), pc.and_(pc.greater_equal(value, low), pc.less_equal(value, high)))
        ok.append(_non_negative(value) & (_mask(whole) | _mask(pc.is_null(value))))
        out[field] = pc.if_else(whole, value, pa.scalar(None, pa.float64())).cast(pa.int8())
    return ok, out


def _utc_micros(text: str, default_tz: tzinfo) -> int | None:
    """A naive timestamp read in `default_tz` by the reference parser, as UTC microseconds."""
    try:
        return (parse_timestamp(text, default_tz) - _EPOCH) // timedelta(microseconds=1)
    except (ValueError, OverflowError):
        return None


def is_utc(default_tz: tzinfo) -> bool:
    """Whether naive timestamps are read as UTC (then they are converted vectorised too)."""
    return default_tz is timezone.utc or getattr(default_tz, "key", None) in ("UTC", "Etc/UTC")


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _parts(text: pa.Array) -> tuple[np.ndarray, dict[str, np.ndarray], pa.Array]:
    """The plain timestamps among `text`: matched mask, the integer parts (y, mo, d, h, mi, s, f = microseconds,
    z = offset seconds) and the zone text ('' when naive)."""
    parts = pc.extract_regex(text, _TIMESTAMP)
    matched = _mask(pc.is_valid(parts))
    ints = {name: pc.struct_field(parts, name).cast(pa.int64()).fill_null(1).to_numpy()
            for name in ("y", "mo", "d", "h", "mi", "s")}
    ints["f"] = pc.utf8_rpad(pc.struct_field(parts, "f"), width=6, padding="0").cast(pa.int64()).fill_null(0).to_numpy()
    zone_text = pc.struct_field(parts, "z")
    zone = pc.if_else(pc.equal(pc.binary_length(zone_text), 6), zone_text, "+00:00")
    minutes = pc.add(pc.multiply(pc.utf8_slice_codeunits(zone, 1, 3).cast(pa.int64()), 60),
                     pc.utf8_slice_codeunits(zone, 4, 6).cast(pa.int64())).to_numpy(zero_copy_only=False)
    ints["z"] = np.where(_mask(pc.starts_with(zone, "-")), -60, 60) * minutes
    return matched, ints, zone_text


def _timestamps(spec: Spec, columns: dict, default_tz: tzinfo, out_type: pa.DataType) -> tuple[np.ndarray, pa.Array]:
    """The timestamp as UTC (condition, output); naive ones outside UTC are read by `_utc_micros`."""
    text = stripped(columns[spec.timestamp])
    matched, p, zone = _parts(text)
    months = (p["y"] - 1970) * 12 + p["mo"] - 1
    first_day = months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    month_days = (months + 1).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64) - first_day
    ok = matched & (p["y"] >= 1000) & (p["y"] <= 9998) & (p["mo"] >= 1) & (p["mo"] <= 12) & (p["d"] >= 1) & \
        (p["d"] <= month_days) & (p["h"] <= 23) & (p["mi"] <= 59) & (p["s"] <= 59)  # no overflow at either end
    seconds = (first_day + p["d"] - 1) * 86400 + p["h"] * 3600 + p["mi"] * 60 + p["s"] - p["z"]
    micros = np.where(ok, seconds * 1_000_000 + p["f"], 0)
    if not is_utc(default_tz):
        naive = ok & _mask(pc.equal(zone, ""))
        local = _per_distinct(pc.if_else(naive, text, _NULL), lambda t: _utc_micros(t, default_tz), pa.int64())
        micros = np.where(naive, local.fill_null(0).to_numpy(), micros)
        ok &= ~naive | _mask(pc.is_valid(local))
    return ok, pa.array(micros, pa.int64()).cast(pa.timestamp("us")).cast(out_type)


# --- objects, CSV numbers and naive timestamps in Python, once per distinct value ---------------------------------

def _per_distinct(values: pa.Array, function: Callable, out_type: pa.DataType) -> pa.Array:
    """`function(value)` for each distinct non-null value, spread back over the array (null stays null)."""
    distinct = pc.unique(values).drop_null()
    mapped = pa.array([function(v) for v in distinct.to_pylist()], out_type)
    return mapped.take(pc.index_in(values, distinct))


def json_object(text: str) -> dict | None:
    """`text` as Python's JSON reader reads it when it is exactly one object, else None."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


_CANONICAL = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode


def canonical_object(text: str) -> str | None:
    """The JSON object `text` as validate.py stores it (keys sorted), None when it is not an object."""
    value = json_object(text)
    if value is None:
        return None
    canonical = _CANONICAL(value)
    try:
        canonical.encode("utf-8")  # a lone surrogate: left to the reference path
    except UnicodeEncodeError:
        return None
    return canonical


_SERVQUAL = [f"{d}_{m}" for d in DIMENSIONS for m in ("expectation", "perception", "gap")]
_NO_RATINGS = {"ratings": [], **servqual_by_dimension([])}


def _ratings(text: str) -> dict | None:
    """A ratings object (JSON text) -> `ratings` items and the SERVQUAL columns; None when it is rejected."""
    ratings = json_object(text)
    if ratings is None:
        return None
    if not ratings:
        return _NO_RATINGS
    items = check_ratings(ratings)
    return None if isinstance(items, Rejection) else {"ratings": items, **servqual_by_dimension(items)}


def _finish_ratings(texts: pa.Array, out: dict, ok: np.ndarray, schema: pa.Schema) -> np.ndarray:
    """Feedback: ratings items, SERVQUAL columns and "at least one signal"; returns the narrowed mask."""
    parsed = [_ratings(t) if t is not None and keep else _NO_RATINGS for t, keep in zip(texts.to_pylist(), ok)]
    for name in ["ratings", *_SERVQUAL]:
        out[name] = pa.array([(r or _NO_RATINGS)[name] for r in parsed], schema.field(name).type)
    signal = pc.greater(pc.list_value_length(out["ratings"]), 0)
    for name in ("csat", "nps", "ces", "comment"):
        signal = pc.or_(signal, pc.is_valid(out[name]))
    return ok & np.array([r is not None for r in parsed], bool) & _mask(signal)


def check(dataset: str, cells: Cells, channels, default_tz: tzinfo, schema: pa.Schema) -> tuple[np.ndarray, pa.Table]:
    """The certainly valid rows of `cells`: their positions and their contract columns (types of `schema`)."""
    spec = SPECS[dataset]
    string_ok, out = _strings(spec, cells.columns, channels)
    number_ok, numbers = _numbers(spec, cells.columns)
    ts_ok, out[spec.timestamp] = _timestamps(spec, cells.columns, default_tz, schema.field(spec.timestamp).type)
    out.update(numbers)
    ok = np.logical_and.reduce([cells.ok, ts_ok, *string_ok, *number_ok])
    texts = cells.columns[spec.obj]
    if spec.obj == "attributes":
        out["attributes"] = _per_distinct(texts, canonical_object, pa.string())
        ok &= _mask(pc.or_(pc.is_null(texts), pc.is_valid(out["attributes"])))
    else:
        ok = _finish_ratings(texts, out, ok, schema)
    names = [f.name for f in schema if f.name in out]
    table = pa.table([out[n] for n in names], schema=pa.schema([schema.field(n) for n in names])).filter(ok)
    return np.flatnonzero(ok), table


# --- front ends: JSON Lines blocks and CSV rows -> cells ------------------------------------------------------

@dataclass
class LineBlock:
    """The physical lines of a block of a JSON Lines file."""

    first_line_no: int
    data: bytes
    offsets: np.ndarray  # where each line starts, then the block's end
    lines: pa.Array  # large_binary, each line with its line break, as `readline` returns it
    rows: np.ndarray  # bool: the line is a row (not blank; invalid UTF-8 counts as a row)
    simple: np.ndarray  # bool: a row the fast path may try (see `split_lines`)


def split_lines(data: bytes, first_line_no: int) -> LineBlock:
    """Split a block of whole lines without a Python loop over them; a block not ending in a line break ends the
    file. A simple line is `{...}` (then a line break, maybe after CR), valid UTF-8, without the letters `NaN` or
    `Inf` (Arrow reads Inf and -NaN, Python does not) and not the file's first line (a byte-order mark is
    allowed there)."""
    array = np.frombuffer(data, np.uint8)
    breaks = np.flatnonzero(array == 10)
    ends = breaks if data.endswith(b"\n") else np.append(breaks, len(data))
    starts = np.concatenate([[0], breaks + 1])[:len(ends)].astype(np.int64)
    last = ends - 1 - (array[ends - 1] == 13)
    simple = (last > starts) & (array[starts] == ord("{")) & (array[last] == ord("}"))
    offsets = np.append(starts, len(data))
    lines = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(starts), [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    for position in _not_utf8(data, starts) + _lenient_tokens(array, starts):
        simple[position] = False
    if first_line_no == 1 and len(simple):
        simple[0] = False
    rows = simple.copy()
    for position in np.flatnonzero(~simple):
        rows[position] = bool(data[offsets[position]:offsets[position + 1]].strip())
    return LineBlock(first_line_no, data, offsets, lines, rows, simple)


def _line_of(starts: np.ndarray, offset: int) -> int:
    return int(np.searchsorted(starts, offset, side="right")) - 1


def _not_utf8(data: bytes, starts: np.ndarray) -> list[int]:
    """Positions of the lines that are not valid UTF-8 (rare: one decoding of the block when there are none)."""
    bad, view, offset = [], memoryview(data), 0
    while True:
        try:
            str(view[offset:], "utf-8")
            return bad
        except UnicodeDecodeError as err:
            bad.append(_line_of(starts, offset + err.start))
            if bad[-1] + 1 == len(starts):
                return bad
            offset = int(starts[bad[-1] + 1])


def _lenient_tokens(array: np.ndarray, starts: np.ndarray) -> list[int]:
    """Positions of the lines containing `Inf` or `NaN` anywhere (Arrow reads Inf, -Inf and -NaN, Python does not)."""
    first = np.flatnonzero((array[:-2] == ord("I")) | (array[:-2] == ord("N")))
    found = ((array[first] == ord("I")) & (array[first + 1] == ord("n")) & (array[first + 2] == ord("f"))) | \
            ((array[first] == ord("N")) & (array[first + 1] == ord("a")) & (array[first + 2] == ord("N")))
    return list(np.searchsorted(starts, first[found], side="right") - 1)


_ERROR_ROW = re.compile(r" in row (\d+)")


def parse_lines(spec: Spec, block: LineBlock, block_bytes: int = 64 << 10) -> tuple[np.ndarray, pa.Table]:
    """The simple lines of `block` that `pyarrow.json` reads with `spec.json_schema`: their positions and rows.
    The lines are parsed in place, every other line blanked (pyarrow skips blank lines), in Arrow blocks of
    `block_bytes` (or the longest line) so that a failing line costs at most one block parsed twice."""
    longest = int(np.diff(block.offsets).max(initial=0))
    parser = _LineParser(np.frombuffer(block.data, np.uint8).copy(), block.offsets,
                         pj.ParseOptions(explicit_schema=spec.json_schema, unexpected_field_behavior="ignore"),
                         pj.ReadOptions(use_threads=False, block_size=max(block_bytes, longest + 1)))
    for position in np.flatnonzero(~block.simple):
        parser.blank(position)
    batches, failed = parser.parse(np.flatnonzero(block.simple))
    parsed = np.setdiff1d(np.flatnonzero(block.simple), failed, assume_unique=True)
    return parsed, pa.Table.from_batches(batches, spec.json_schema)


@dataclass
class _LineParser:
    """`pyarrow.json` over ranges of the lines of a block; a line that fails is blanked and parsed around."""

    buffer: np.ndarray  # the block, writable
    offsets: np.ndarray  # where each line starts, then the block's end
    parse_options: pj.ParseOptions
    read_options: pj.ReadOptions

    def parse(self, lines: np.ndarray) -> tuple[list[pa.RecordBatch], list[int]]:
        """Batches of the rows of `lines` (ascending, not blank) that parse, in order, and the lines that do not.
        Arrow stops at the first row whose types differ and reports it: that line is blanked, the lines before it
        in its Arrow block parsed again and the parse goes on after it (an error naming no row blames the first
        line not read). Rows are lines only if no line holds two JSON values: when the count differs, the range
        is parsed again in halves."""
        batches, failed, rest = [], [], lines
        while len(rest):
            read, row = self._stream(rest, batches)
            if row is None and read >= len(rest):
                break
            bad = min(read if row is None else row, len(rest) - 1)
            self.blank(int(rest[bad]))
            failed.append(int(rest[bad]))
            head_batches, head_failed = self.parse(rest[min(read, bad):bad])
            batches += head_batches
            failed += head_failed
            rest = rest[bad + 1:]
        if sum(b.num_rows for b in batches) == len(lines) - len(failed):
            return batches, failed
        if len(lines) == 1:
            self.blank(int(lines[0]))
            return [], [int(lines[0])]
        live = np.setdiff1d(lines, failed, assume_unique=True)
        halves = [self.parse(half) for half in (live[:len(live) // 2], live[len(live) // 2:])]
        return [b for bs, _ in halves for b in bs], failed + [f for _, fs in halves for f in fs]

    def _stream(self, lines: np.ndarray, batches: list[pa.RecordBatch]) -> tuple[int, int | None]:
        """Parse `lines`, appending the batch of each Arrow block that parses: (rows read, the failing row when an
        error reports one)."""
        data = pa.py_buffer(self.buffer[self.offsets[lines[0]]:self.offsets[lines[-1] + 1]])
        read = 0
        try:
            for batch in pj.open_json(data, read_options=self.read_options, parse_options=self.parse_options):
                batches.append(batch)
                read += batch.num_rows
        except pa.ArrowInvalid as err:
            reported = _ERROR_ROW.search(str(err))
            return read, read + int(reported.group(1)) if reported else None
        return read, None

    def blank(self, line: int) -> None:
        """Overwrite a line with spaces, its line break kept."""
        start, end = self.offsets[line], self.offsets[line + 1]
        self.buffer[start:end - (self.buffer[end - 1] == 10)] = 32


def jsonl_cells(spec: Spec, block: LineBlock, parsed: np.ndarray, table: pa.Table) -> Cells:
    """The parsed rows of a block as cells; the object field's text is cut from the line after the last
    `"<field>":` that follows `{` or `,` (a real key) up to the line's closing brace. That is the field's value
    when it is the line's last member; any other cut holds more than one value and `json_object` refuses it."""
    columns = {f: table.column(f).combine_chunks() for f in spec.fields if f != spec.obj}
    present = pc.is_valid(table.column(spec.obj))
    lines = block.lines.take(parsed).view(pa.large_string())
    parts = pc.split_pattern(lines, f'"{spec.obj}":', max_splits=1, reverse=True)
    first = parts.offsets.to_numpy()[:-1]
    split = np.diff(parts.offsets.to_numpy()) == 2
    before, value = parts.flatten().take(first), parts.flatten().take(first + split)
    value = pc.utf8_rtrim(value, " \t\r\n")
    cut = split & _mask(pc.or_(pc.ends_with(before, ","), pc.ends_with(before, "{"))) & _mask(pc.ends_with(value, "}"))
    columns[spec.obj] = pc.if_else(pc.and_(present, cut), pc.utf8_slice_codeunits(value, 0, -1), _NULL)
    return Cells(_mask(pc.invert(present)) | cut, columns)


def csv_cells(spec: Spec, header: list[str], rows: list[CsvRow]) -> Cells:
    """CSV rows (all of the header's width, valid UTF-8) -> cells: a non-blank cell is a string, a number cell
    read by Python's `float` (once per distinct text); feedback's `rating.*` columns become one ratings object
    per row (JSON text)."""
    column_of = {name: i for i, name in enumerate(header)}  # a repeated name: the last column wins, as dict(zip())
    ok, cells = np.ones(len(rows), bool), {}
    for field in spec.fields:
        if field == "ratings":
            is_object, cells[field] = _csv_ratings(header, rows)
            ok &= is_object
            continue
        values = _csv_column([row.cells[column_of[field]] for row in rows]) if field in column_of else \
            pa.nulls(len(rows), pa.string())
        if field in spec.numbers or field in spec.scores:
            numbers = _per_distinct(values, _float, pa.float64())
            ok &= _mask(pc.or_(pc.is_null(values), pc.is_valid(numbers)))
            values = numbers
        cells[field] = values
    return Cells(ok, cells)


def _float(text: str) -> float | None:
    """`float(text)` as validate.py reads a number cell, None when it is not a number."""
    try:
        return float(text)
    except ValueError:
        return None


def _csv_column(cells: list[str]) -> pa.Array:
    """A CSV column as strings, blank cells (Python's strip) as null."""
    values = pa.array(cells, pa.string())
    blank = pc.equal(pc.utf8_length(pc.utf8_trim(values, WHITESPACE)), 0)
    return pc.if_else(blank, _NULL, values)


def _csv_ratings(header: list[str], rows: list[CsvRow]) -> tuple[np.ndarray, pa.Array]:
    """Whether each feedback CSV row's ratings are absent or an object, and the objects as JSON text, folded by
    `unflatten_csv_row` as the reference does (a plain `ratings` column stays text, which the reference rejects)."""
    positions = [i for i, name in enumerate(header) if name.startswith("rating.") or name == "ratings"]
    names = [header[i] for i in positions]
    ratings = [unflatten_csv_row(dict(zip(names, (row.cells[i] for i in positions)))).get("ratings") for row in rows]
    is_object = np.array([r is None or isinstance(r, dict) for r in ratings], bool)
    return is_object, pa.array([json.dumps(r) if isinstance(r, dict) else None for r in ratings], pa.string())


def check_lines(dataset: str, block: LineBlock, channels, default_tz: tzinfo,
                schema: pa.Schema) -> tuple[np.ndarray, pa.Table]:
    """The block's certainly valid rows: their positions in the block and their contract columns."""
    spec = SPECS[dataset]
    parsed, table = parse_lines(spec, block)
    positions, valid = check(dataset, jsonl_cells(spec, block, parsed, table), channels, default_tz, schema)
    return parsed[positions], valid


def check_csv(dataset: str, header: list[str], rows: list[CsvRow], channels, default_tz: tzinfo,
              schema: pa.Schema) -> tuple[np.ndarray, pa.Table]:
    """The certainly valid ones of CSV rows that fit the header and are UTF-8: positions and contract columns."""
    return check(dataset, csv_cells(SPECS[dataset], header, rows), channels, default_tz, schema)
