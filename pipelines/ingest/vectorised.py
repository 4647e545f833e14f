"""Vectorised fast path of `reader.read_validated`: whole blocks of rows parsed and checked with Arrow.

Both formats are read in blocks of whole lines split with numpy (`split_lines`), and only the lines that a
format-specific test marks simple are parsed by Arrow. JSON Lines: `{...}` lines are parsed by `pyarrow.json` with an
explicit schema (strings, float64 numbers, the object field as an empty struct); a line whose types differ fails the
parse, is reported by row and is left out (the parse goes on around it). CSV: lines that are one whole record of the
header's width in a form where `pyarrow.csv` and Python's csv module give the same cells (an RE2 match: plain or
quoted cells, `""` escapes, no line break, CR or NUL inside, not all blank, no leading byte-order mark) are read by
`pyarrow.csv` as strings; feedback's `rating.*` columns are folded column-wise into the ratings and SERVQUAL columns.
On the typed columns `check` computes, with `pyarrow.compute`, a conservative "certainly valid" mask and the
contract columns: a row is certainly valid only when every field has a plain form on which Arrow gives exactly what
the reference reader + `pipelines.ingest.validate` give (strings, finite non-negative numbers,
`YYYY-MM-DD[T ]HH:MM:SS[.ffffff][Z|±HH:MM]` timestamps, ASCII channel and outcome). Lines that Arrow might read
differently from Python (the file's first line, not UTF-8, NaN/Inf spellings, several JSON values on a line, CSV
lines outside the pattern) never count as parsed. Every other row is left to the per-row Python reference path,
which gives its exact rejection or its exact clean row; `reader` merges both in line order.

Feedback ratings are folded column-wise in numpy (`_fold_ratings`) for both formats: CSV `rating.*` columns
(`_csv_ratings`) and JSON Lines ratings objects of the plain form, parsed by `pyarrow.json` with a typed schema
(`_json_ratings`); a ratings object in any other form is left to the reference path. Events' `attributes`, the
`identifiers` object of both datasets (found in a JSON line by `_identifier_members`, folded from CSV
`identifier.<type>` cells by `_csv_identifiers`), CSV numbers and naive timestamps outside UTC are finished in
Python, once per distinct value, with the reference functions themselves.
"""
from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import pyarrow.json as pj

from pipelines.ingest.contract import DIMENSIONS, OUTCOMES, RATING_RANGE, SCORE_RANGES, SERVQUAL_ITEMS
from pipelines.ingest.validate import normalised_identifiers, parse_timestamp

# The characters Python's str.strip() removes (str.isspace()); tests/ingest/test_vectorised.py checks the list.
WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + \
    "\u2028\u2029\u202f\u205f\u3000"

_TIMESTAMP = (r"^(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})[T ](?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})"
              r"(?:\.(?P<f>\d{1,6}))?(?P<z>Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)?$")
_NULL = pa.scalar(None, pa.string())


@dataclass(frozen=True)
class Spec:
    """How each contract field of a dataset is checked: the roles of `pipelines.ingest.validate`."""

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
        return [self.timestamp, *self.required, *coded, *self.optional, self.text, *self.numbers, *self.scores, self.obj,
                IDENTIFIERS]

    @property
    def json_schema(self) -> pa.Schema:
        """The explicit `pyarrow.json` schema: numbers float64, the objects empty structs (the object field's text
        is taken from the line), everything else string."""
        numeric = {*self.numbers, *self.scores}
        return pa.schema([(f, pa.float64() if f in numeric else pa.struct([]) if f in (self.obj, IDENTIFIERS)
                           else pa.string()) for f in self.fields])


# The identifiers object: JSON text in the cells of every front end, normalised by `canonical_identifiers`.
IDENTIFIERS, IDENTIFIER_PREFIX = "identifiers", "identifier."


SPECS = {
    "events": Spec("occurred_at", ("event_id", "customer_id", "touchpoint"), ("visit_id", "staff_id", "location_id"),
                   "text", ("duration_s", "wait_s"), {}, "attributes", channel_required=True, outcome=True),
    "feedback": Spec("submitted_at", ("feedback_id", "customer_id"), ("visit_id", "touchpoint"), "comment", (),
                     SCORE_RANGES, "ratings", channel_required=False, outcome=False),
}


@dataclass
class Cells:
    """Rows of a block as typed cells: strings, float64 numbers, the object field as JSON text (null when
    absent or null); `ok` is False for rows whose cells do not all have those types. Feedback ratings folded by
    the front end (CSV) come as their output columns in `ratings` instead."""

    ok: np.ndarray
    columns: dict[str, pa.Array]
    ratings: dict[str, pa.Array] | None = None


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
    """The timestamp as UTC (condition, output); naive ones outside UTC are read by `_utc_micros`. A column that
    is a timestamp already (a source's mapped time) is valid where it is not null."""
    if pa.types.is_timestamp(columns[spec.timestamp].type):
        return _mask(pc.is_valid(columns[spec.timestamp])), columns[spec.timestamp].cast(out_type)
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


def _utf8(text: str) -> str | None:
    """`text`, or None when it holds a lone surrogate (no UTF-8: left to the reference path)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return text


def canonical_object(text: str) -> str | None:
    """The JSON object `text` as validate.py stores it (keys sorted), None when it is not an object."""
    value = json_object(text)
    return None if value is None else _utf8(_CANONICAL(value))


def canonical_identifiers(text: str) -> str | None:
    """The identifiers object `text` as validate.py stores it, '' when it names none; None when it is not an object
    that validation accepts (the reference path gives its rejection)."""
    value = json_object(text)
    valid, canonical = normalised_identifiers(value) if value is not None else (False, None)
    return _utf8(canonical or "") if valid else None


# The plain JSON form of a ratings object, read by `pyarrow.json` (`_json_ratings`): canonical keys (Q1..Q22 and the
# dimensions, as written in the contract) each with a number or an object of an expectation and/or perception number;
# JSON whitespace but CR (Arrow ends a line at a bare CR), no strings, nulls, escapes or other keys.
_RATING_KEYS = sorted([*SERVQUAL_ITEMS, *DIMENSIONS])  # in `parse_ratings`' order (sorted keys)
_RATINGS_SCHEMA = pa.schema([(key, pa.struct([("expectation", pa.float64()), ("perception", pa.float64())]))
                             for key in _RATING_KEYS])
_WS = "[ \t]*"
_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_RATING_KEY = '"(?:' + "|".join(_RATING_KEYS) + ')"'
_MEASURE = rf'"(?:expectation|perception)"{_WS}:{_WS}{_NUMBER}'
_MEMBER = rf"{_RATING_KEY}{_WS}:{_WS}(?:{_NUMBER}|\{{{_WS}(?:{_MEASURE}(?:{_WS},{_WS}{_MEASURE})?)?{_WS}\}})"
_PLAIN_RATINGS = rf"^{_WS}\{{{_WS}(?:{_MEMBER}(?:{_WS},{_WS}{_MEMBER})*)?{_WS}\}}{_WS}$"
_BARE_RATING = rf"({_RATING_KEY}{_WS}:{_WS})({_NUMBER})"  # a top-level number: its perception


def _parse_ratings(texts: pa.Array) -> tuple[np.ndarray, pa.Table]:
    """Ratings objects of the plain form (`_PLAIN_RATINGS`), bare numbers already made `{"perception": n}`, parsed
    by `pyarrow.json` with `_RATINGS_SCHEMA`, one text a line: the positions of the texts that parse and their rows.
    A text that fails (a key or measure given twice, a number beyond float64) is left out, as in `parse_lines`."""
    lines = pc.binary_join_element_wise(texts.cast(pa.large_string()), pa.scalar("", pa.large_string()),
                                        pa.scalar("\n", pa.large_string()))  # each text + "\n"
    _, offsets, data = lines.buffers()
    offsets = np.frombuffer(offsets, np.int64)[lines.offset:lines.offset + len(lines) + 1]
    buffer = np.frombuffer(data, np.uint8)[offsets[0]:offsets[-1]].copy()
    offsets = offsets - offsets[0]
    parser = _LineParser(buffer, offsets,
                         pj.ParseOptions(explicit_schema=_RATINGS_SCHEMA, unexpected_field_behavior="error"),
                         pj.ReadOptions(use_threads=False, block_size=max(64 << 10, int(np.diff(offsets).max()) + 1)))
    batches, failed = parser.parse(np.arange(len(texts)))
    parsed = np.setdiff1d(np.arange(len(texts)), failed, assume_unique=True)
    return parsed, pa.Table.from_batches(batches, _RATINGS_SCHEMA)


def _json_ratings(texts: pa.Array, ok: np.ndarray, ratings_type: pa.DataType) -> tuple[np.ndarray, dict[str, pa.Array]]:
    """Ratings objects (JSON text, null when absent or null) of the rows still `ok` -> the narrowed mask, the
    `ratings` items and SERVQUAL columns. Objects of the plain form (`_PLAIN_RATINGS`) are parsed by `pyarrow.json`
    (`_parse_ratings`) and folded column-wise (`_fold_ratings`); any other object is left to the reference path."""
    texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    n = len(texts)
    absent = _mask(pc.is_null(texts))
    tried = ok & ~absent & _mask(pc.match_substring_regex(texts, _PLAIN_RATINGS))
    ok = ok & (absent | tried)
    rated = np.zeros((n, len(_RATING_KEYS)), bool)
    expectation, perception = np.full(rated.shape, np.nan), np.full(rated.shape, np.nan)
    positions = np.flatnonzero(tried)
    if len(positions):
        bare_as_measured = pc.replace_substring_regex(texts.filter(pa.array(tried)), _BARE_RATING, r'\1{"perception":\2}')
        parsed, table = _parse_ratings(bare_as_measured)
        ok[np.setdiff1d(positions, positions[parsed], assume_unique=True)] = False
        rows = positions[parsed]
        for j, key in enumerate(_RATING_KEYS):
            measures = table.column(key).combine_chunks()
            rated[rows, j] = _mask(pc.is_valid(measures))
            expectation[rows, j] = pc.struct_field(measures, "expectation").fill_null(np.nan).to_numpy()
            perception[rows, j] = pc.struct_field(measures, "perception").fill_null(np.nan).to_numpy()
    return _fold_ratings(_RATING_KEYS, rated, expectation, perception, ok, ratings_type)


def _finish_ratings(cells: Cells, out: dict, ok: np.ndarray, schema: pa.Schema) -> np.ndarray:
    """Feedback: ratings items, SERVQUAL columns and "at least one signal"; returns the narrowed mask."""
    if cells.ratings is None:
        ok, ratings = _json_ratings(cells.columns["ratings"], ok, schema.field("ratings").type)
    else:
        ratings = cells.ratings
    out.update(ratings)
    signal = pc.greater(pc.list_value_length(out["ratings"]), 0)
    for name in ("csat", "nps", "ces", "comment"):
        signal = pc.or_(signal, pc.is_valid(out[name]))
    return ok & _mask(signal)


def check(dataset: str, cells: Cells, channels, default_tz: tzinfo, schema: pa.Schema) -> tuple[np.ndarray, pa.Table]:
    """The certainly valid rows of `cells`: their positions and their contract columns (types of `schema`)."""
    spec = SPECS[dataset]
    string_ok, out = _strings(spec, cells.columns, channels)
    number_ok, numbers = _numbers(spec, cells.columns)
    ts_ok, out[spec.timestamp] = _timestamps(spec, cells.columns, default_tz, schema.field(spec.timestamp).type)
    out.update(numbers)
    ok = np.logical_and.reduce([cells.ok, ts_ok, *string_ok, *number_ok])
    carried = cells.columns.get(IDENTIFIERS)  # None: a front end that never maps identifiers
    if carried is None:
        out[IDENTIFIERS] = pa.nulls(len(ok), pa.string())
    else:
        canonical = _per_distinct(carried, canonical_identifiers, pa.string())
        ok &= _mask(pc.or_(pc.is_null(carried), pc.is_valid(canonical)))
        out[IDENTIFIERS] = pc.if_else(pc.equal(canonical, ""), _NULL, canonical)
    if spec.obj == "attributes":
        texts = cells.columns["attributes"]
        out["attributes"] = _per_distinct(texts, canonical_object, pa.string())
        ok &= _mask(pc.or_(pc.is_null(texts), pc.is_valid(out["attributes"])))
    else:
        ok = _finish_ratings(cells, out, ok, schema)
    names = [f.name for f in schema if f.name in out]
    table = pa.table([out[n] for n in names], schema=pa.schema([schema.field(n) for n in names])).filter(ok)
    return np.flatnonzero(ok), table


# --- front ends: JSON Lines blocks and CSV rows -> cells ------------------------------------------------------

@dataclass
class LineBlock:
    """The physical lines of a block of a JSON Lines or CSV file."""

    first_line_no: int
    data: bytes
    offsets: np.ndarray  # where each line starts, then the block's end
    lines: pa.Array  # large_binary, each line with its line break, as `readline` returns it
    rows: np.ndarray  # bool: the line is not blank (JSON Lines: a row; invalid UTF-8 counts as a row)
    simple: np.ndarray  # bool: a row the fast path may try (see `split_lines`)

    def line(self, position: int) -> bytes:
        return self.data[self.offsets[position]:self.offsets[position + 1]]


def simple_json(array: np.ndarray, lines: pa.Array, starts: np.ndarray, last: np.ndarray) -> np.ndarray:
    """The JSON Lines that the fast path may try: `{...}` (then a line break, maybe after CR) without the letters
    `NaN` or `Inf` (Arrow reads Inf and -NaN, Python does not)."""
    simple = (last > starts) & (array[starts] == ord("{")) & (array[last] == ord("}"))
    simple[_lenient_tokens(array, starts)] = False
    return simple


def line_count(data: bytes) -> int:
    """How many lines `split_lines` finds in a block (a block not ending in a line break ends the file)."""
    return data.count(b"\n") + (not data.endswith(b"\n"))


def split_lines(data: bytes, first_line_no: int, simple: Callable[..., np.ndarray] = simple_json) -> LineBlock:
    """Split a block of whole lines without a Python loop over them; a block not ending in a line break ends the
    file. The lines the fast path may try are those that `simple(array, lines, starts, last)` marks (`simple_json`,
    `simple_csv`), that are valid UTF-8 and that are not the file's first line (a byte-order mark is allowed there,
    a CSV file's header)."""
    array = np.frombuffer(data, np.uint8)
    breaks = np.flatnonzero(array == 10)
    ends = breaks if data.endswith(b"\n") else np.append(breaks, len(data))
    starts = np.concatenate([[0], breaks + 1])[:len(ends)].astype(np.int64)
    last = ends - 1 - (array[ends - 1] == 13)
    offsets = np.append(starts, len(data))
    lines = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(starts), [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    simple = simple(array, lines, starts, last)
    simple[_not_utf8(data, starts)] = False
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


def _lenient_tokens(array: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Positions of the lines containing `Inf` or `NaN` anywhere (Arrow reads Inf, -Inf and -NaN, Python does not)."""
    first = np.flatnonzero((array[:-2] == ord("I")) | (array[:-2] == ord("N")))
    found = ((array[first] == ord("I")) & (array[first + 1] == ord("n")) & (array[first + 2] == ord("f"))) | \
            ((array[first] == ord("N")) & (array[first + 1] == ord("a")) & (array[first + 2] == ord("N")))
    return np.searchsorted(starts, first[found], side="right") - 1


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


# The top-level identifiers member of a line, when the fast path can find it by its text: the only `"identifiers"`
# of the line, a flat object (no brace anywhere inside), and no escaped ASCII character anywhere in the line (a key
# spelled with escapes, `"identifi\u0065rs"`, could be the real one).
_IDENTIFIERS_KEY, _FLAT_OBJECT = rf'{_WS}"{IDENTIFIERS}"{_WS}:{_WS}', r"\{[^{}]*\}"
_IDENTIFIERS_MEMBER = rf"[{{,]{_IDENTIFIERS_KEY}(?P<object>{_FLAT_OBJECT})"
_ASCII_ESCAPE = r"\\u00[0-7]"


def jsonl_cells(spec: Spec, block: LineBlock, parsed: np.ndarray, table: pa.Table) -> Cells:
    """The parsed rows of a block as cells; the object field's text is cut from the line after the last
    `"<field>":` that follows `{` or `,` (a real key; spaces and tabs between allowed) up to the line's closing brace. That is the field's value
    when it is the line's last member; any other cut holds more than one value and `json_object` refuses it.
    The identifiers object is found by `_identifier_members` and taken out of the line before that cut."""
    columns = {f: table.column(f).combine_chunks() for f in spec.fields if f not in (spec.obj, IDENTIFIERS)}
    present = pc.is_valid(table.column(spec.obj))
    lines = block.lines.take(parsed).view(pa.large_string())
    carried, found, columns[IDENTIFIERS], lines = _identifier_members(lines, table.column(IDENTIFIERS))
    parts = pc.split_pattern(lines, f'"{spec.obj}":', max_splits=1, reverse=True)
    first = parts.offsets.to_numpy()[:-1]
    split = np.diff(parts.offsets.to_numpy()) == 2
    before, value = parts.flatten().take(first), parts.flatten().take(first + split)
    value = pc.utf8_rtrim(value, " \t\r\n")
    before = pc.utf8_rtrim(before, " \t")  # `, "<field>":` as json.dumps writes it
    cut = split & _mask(pc.or_(pc.ends_with(before, ","), pc.ends_with(before, "{"))) & _mask(pc.ends_with(value, "}"))
    columns[spec.obj] = pc.if_else(pc.and_(present, cut), pc.utf8_slice_codeunits(value, 0, -1), _NULL)
    return Cells((_mask(pc.invert(present)) | cut) & (~carried | found), columns)


def _identifier_members(lines: pa.Array, parsed: pa.Array) -> tuple[np.ndarray, np.ndarray, pa.Array, pa.Array]:
    """Of the lines whose parse has an identifiers object (`parsed` valid): which they are, those whose member
    `_IDENTIFIERS_MEMBER` finds (the others are left to the reference path), its object's text, and the lines
    with a found member that is not the first one taken out (so that the object field can be the last member)."""
    carried = _mask(pc.is_valid(parsed))
    if not carried.any():
        return carried, carried, pa.nulls(len(lines), pa.string()), lines
    member = pc.struct_field(pc.extract_regex(lines, _IDENTIFIERS_MEMBER), "object")
    found = carried & _mask(pc.is_valid(member)) & _mask(pc.equal(pc.count_substring(lines, f'"{IDENTIFIERS}"'), 1)) \
        & ~_mask(pc.match_substring_regex(lines, _ASCII_ESCAPE))
    taken_out = pc.replace_substring_regex(lines, f",{_IDENTIFIERS_KEY}{_FLAT_OBJECT}", "")
    return (carried, found, pc.if_else(pa.array(found), member, _NULL).cast(pa.string()),
            pc.if_else(pa.array(found), taken_out, lines))


# One CSV cell in a form that Python's csv module (default dialect) and pyarrow.csv read alike: unquoted without
# quotes, commas and line breaks, or quoted with `""` escapes and no line break (pyarrow ends a line at a bare CR)
# and no NUL (pyarrow.csv misreads a quoted NUL at some block boundaries).
_CSV_CELL = r'(?:[^",\r\n\x00]*|"(?:[^"\r\n\x00]|"")*")'
_SOLID = r'[^",\t-\r\x1c-\x20\x80-\xff]'  # a byte that is certainly part of a non-blank cell


def simple_csv(width: int) -> Callable[..., np.ndarray]:
    """The CSV lines that the fast path may try (see `split_lines`): one whole record of `width` cells of the forms
    `_CSV_CELL` (an RE2 match), then a line break (maybe after CR); with a byte that belongs to a non-blank cell
    (so the row is not all blank), no leading byte-order mark (pyarrow drops it at the start of its input) and not
    longer than the csv module's field size limit (Python raises on longer cells)."""
    pattern = rf"^{_CSV_CELL}(?:,{_CSV_CELL}){{{width - 1}}}\r?\n?$"

    def simple(array: np.ndarray, lines: pa.Array, starts: np.ndarray, last: np.ndarray) -> np.ndarray:
        if not 0 < width <= 1000:  # RE2 repeats at most 1,000 times
            return np.zeros(len(starts), bool)
        whole = pc.and_(pc.match_substring_regex(lines, pattern), pc.match_substring_regex(lines, _SOLID))
        short = pc.less_equal(pc.binary_length(lines), csv.field_size_limit())
        return _mask(pc.and_(pc.and_(whole, short), pc.invert(pc.starts_with(lines, "\ufeff"))))

    return simple


def read_csv_lines(block: LineBlock, width: int, columns: list[int]) -> pa.Table:
    """The simple lines of `block` (see `simple_csv`) read by `pyarrow.csv`: the given columns (named by their
    position) as strings, one row per line."""
    names = [str(i) for i in range(width)]
    if not block.simple.any():
        return pa.table({names[i]: pa.array([], pa.string()) for i in columns})
    lines = block.lines.filter(pa.array(block.simple))
    _, offsets, data = lines.buffers()
    start, end = np.frombuffer(offsets, np.int64)[[lines.offset, lines.offset + len(lines)]]
    longest = int(np.diff(block.offsets)[block.simple].max())
    read = [names[i] for i in columns or [0]]  # no columns would be every column
    table = pv.read_csv(
        pa.BufferReader(data.slice(start, end - start)),
        read_options=pv.ReadOptions(column_names=names, use_threads=False, block_size=max(1 << 20, longest + 1)),
        parse_options=pv.ParseOptions(newlines_in_values=False),
        convert_options=pv.ConvertOptions(
            include_columns=read, column_types=dict.fromkeys(read, pa.string()),
            strings_can_be_null=False, null_values=[], check_utf8=False))
    if table.num_rows != len(lines):
        raise AssertionError(f"pyarrow.csv read {table.num_rows} rows from {len(lines)} lines")
    return table


def csv_cells(spec: Spec, header: list[str], block: LineBlock, schema: pa.Schema) -> Cells:
    """The simple lines of a CSV block as cells: strings as read, number cells read by Python's `float` (once per
    distinct text, blank -> null), `attributes` blank -> null; feedback's `rating.*` columns folded into the
    ratings and SERVQUAL columns (`_csv_ratings`)."""
    column_of = {name: i for i, name in enumerate(header)}  # a repeated name: the last column wins, as dict(zip())
    numeric = {*spec.numbers, *spec.scores}
    ratings = [i for name, i in column_of.items() if name.startswith("rating.") or name == "ratings"] \
        if spec.obj == "ratings" else []
    typed = {name[len(IDENTIFIER_PREFIX):]: i for name, i in column_of.items() if name.startswith(IDENTIFIER_PREFIX)}
    table = read_csv_lines(block, len(header), sorted({*(column_of[f] for f in spec.fields if f in column_of), *ratings,
                                                        *typed.values()}))
    n = table.num_rows

    def cell(i: int) -> pa.Array:
        return table.column(str(i)).combine_chunks()

    # an `identifiers` column beside `identifier.<type>` ones: left to the reference path
    ok, columns = np.full(n, not (typed and IDENTIFIERS in column_of)), {}
    for field in spec.fields:
        if field == "ratings":
            continue  # folded by `_csv_ratings`
        if field == IDENTIFIERS and typed:
            columns[field] = _csv_identifiers({kind: cell(i) for kind, i in typed.items()})
        elif field not in column_of:
            columns[field] = pa.nulls(n, pa.float64() if field in numeric else pa.string())
        elif field in numeric:
            blank, columns[field] = _csv_numbers(cell(column_of[field]))
            ok &= blank | _mask(pc.is_valid(columns[field]))
        elif field in ("attributes", IDENTIFIERS):
            values = cell(column_of[field])
            columns[field] = pc.if_else(pc.equal(pc.binary_length(pc.utf8_trim(values, WHITESPACE)), 0), _NULL, values)
        else:
            columns[field] = cell(column_of[field])  # `check` strips them (blank -> null)
    if spec.obj != "ratings":
        return Cells(ok, columns)
    ratings_ok, folded = _csv_ratings(column_of, lambda i: _csv_numbers(cell(i)), n, schema.field("ratings").type)
    return Cells(ok & ratings_ok, columns, folded)


def _csv_identifiers(cells: dict[str, pa.Array]) -> pa.Array:
    """`identifier.<type>` cells (type -> column) folded as `unflatten_csv_row` folds them: per row, the JSON object
    text of its non-blank cells, null when all are blank."""
    kinds, columns = list(cells), [column.to_pylist() for column in cells.values()]
    objects = ({kind: value for kind, value in zip(kinds, row) if value.strip()} for row in zip(*columns))
    return pa.array([json.dumps(found) if found else None for found in objects], pa.string())


def _float(text: str) -> float | None:
    """`float(text)` as validate.py reads a number cell, None when it is not a number."""
    try:
        return float(text)
    except ValueError:
        return None


def _csv_numbers(values: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Number cells: whether each is blank (Python's strip) and its `float` (null when blank or not a number),
    computed once per distinct text."""
    encoded = pc.dictionary_encode(values)
    texts = encoded.dictionary.to_pylist()
    indices = encoded.indices.to_numpy()
    blank = np.array([not t.strip() for t in texts], bool)[indices]
    return blank, pa.array([_float(t) if t.strip() else None for t in texts], pa.float64()).take(encoded.indices)


def _dimension(key: str) -> str | None:
    """The SERVQUAL dimension of a rating key, as `validate.parse_ratings` finds it."""
    return key.lower() if key.lower() in DIMENSIONS else SERVQUAL_ITEMS.get(key.upper())


def _csv_ratings(column_of: dict[str, int], numbers: Callable[[int], tuple[np.ndarray, pa.Array]], n: int,
                 ratings_type: pa.DataType) -> tuple[np.ndarray, dict[str, pa.Array]]:
    """Feedback's `rating.<key>[.<measure>]` cells folded column-wise as `unflatten_csv_row` + `parse_ratings` +
    `servqual_by_dimension` do (`_fold_ratings`): whether each row's ratings are certainly valid, and the `ratings`
    items (sorted by key) and SERVQUAL columns. Left to the reference path: a non-blank cell of an unknown key or
    measure or that is not a number (or not in the rating range, `_fold_ratings`); a key with an expectation but no
    perception, or with both a plain and a measured cell (rejected as wrong_type); a key with two plain columns
    (`rating.Q1`, `rating.Q1.`); a non-blank plain `ratings` column without any rating cell (the reference rejects
    the text)."""
    by_key: dict[str, dict[str, list[int]]] = {}
    for name, i in column_of.items():
        if name.startswith("rating."):
            key, _, measure = name[len("rating."):].partition(".")
            by_key.setdefault(key, {}).setdefault(measure, []).append(i)
    keys = sorted(k for k in by_key if _dimension(k))
    ok, any_rating = np.ones(n, bool), np.zeros(n, bool)
    rated = np.zeros((n, len(keys)), bool)
    perception, expectation = np.full((n, len(keys)), np.nan), np.full((n, len(keys)), np.nan)
    for key, measures in by_key.items():
        cells = {m: [numbers(i) for i in columns] for m, columns in measures.items()}
        present = {m: np.logical_or.reduce([~blank for blank, _ in c]) for m, c in cells.items()}
        anywhere = np.logical_or.reduce(list(present.values()))
        any_rating |= anywhere
        if key not in keys or any(len(c) > 1 for c in cells.values()):
            ok &= ~anywhere
            continue
        value = {m: c[0][1].fill_null(np.nan).to_numpy() for m, c in cells.items()}
        for m in cells:  # an unknown measure must be blank, a known one a number
            ok &= ~present[m] | (~np.isnan(value[m]) if m in ("", "expectation", "perception") else False)
        none = np.zeros(n, bool)
        plain, measured = present.get("", none), present.get("expectation", none) | present.get("perception", none)
        ok &= ~(plain & measured) & ~(measured & ~present.get("perception", none))
        j = keys.index(key)
        rated[:, j] = plain | measured
        perception[:, j] = np.where(plain, value.get("", np.nan), value.get("perception", np.nan))
        expectation[:, j] = np.where(measured, value.get("expectation", np.nan), np.nan)
    if "ratings" in column_of:
        ok &= numbers(column_of["ratings"])[0] | any_rating
    return _fold_ratings(keys, rated, expectation, perception, ok, ratings_type)


def _fold_ratings(keys: list[str], rated: np.ndarray, expectation: np.ndarray, perception: np.ndarray, ok: np.ndarray,
                  ratings_type: pa.DataType) -> tuple[np.ndarray, dict[str, pa.Array]]:
    """Ratings given column-wise (one column per key, `keys` sorted; `rated` rows x keys, the measures as floats,
    NaN when absent) -> `parse_ratings` + `servqual_by_dimension` for the CSV and JSON Lines paths: the mask `ok`
    narrowed to rows whose every rated item has a perception in the rating range and an expectation absent or in
    range, and the `ratings` items (in key order) and SERVQUAL columns (means summed in key order, as Python does,
    so the floats are equal)."""
    n = len(ok)
    low, high = RATING_RANGE
    outside = [rated & ~((values >= low) & (values <= high)) for values in (perception, expectation)]
    ok = ok & ~outside[0].any(axis=1) & ~(outside[1] & ~np.isnan(expectation)).any(axis=1)
    rated = rated & ok[:, None]
    row, item = np.nonzero(rated)  # row-major: each row's items in key order
    offsets = np.concatenate([[0], np.cumsum(rated.sum(axis=1))]).astype(np.int32)
    has_expectation = ~np.isnan(expectation[row, item])
    items = pa.StructArray.from_arrays(
        [pa.array(keys, pa.string()).take(item), pa.array([_dimension(k) for k in keys], pa.string()).take(item),
         pa.array(expectation[row, item], pa.float64(), mask=~has_expectation),
         pa.array(perception[row, item], pa.float64())],
        fields=list(ratings_type.value_type))
    out = {"ratings": pa.ListArray.from_arrays(pa.array(offsets), items, type=ratings_type)}
    for dimension in DIMENSIONS:
        sums, counts = [np.zeros(n), np.zeros(n)], [np.zeros(n, np.int64), np.zeros(n, np.int64)]
        for j in (j for j, k in enumerate(keys) if _dimension(k) == dimension):  # summed in key order, as Python does
            for measure, values, has in ((0, expectation[:, j], rated[:, j] & ~np.isnan(expectation[:, j])),
                                         (1, perception[:, j], rated[:, j])):
                sums[measure] = sums[measure] + np.where(has, values, 0.0)
                counts[measure] += has
        means = [pa.array(s / np.maximum(c, 1), pa.float64(), mask=c == 0) for s, c in zip(sums, counts)]
        out[f"{dimension}_expectation"], out[f"{dimension}_perception"] = means
        out[f"{dimension}_gap"] = pc.subtract(means[1], means[0])
    return ok, out


def check_lines(dataset: str, block: LineBlock, channels, default_tz: tzinfo,
                schema: pa.Schema) -> tuple[np.ndarray, pa.Table]:
    """The block's certainly valid rows: their positions in the block and their contract columns."""
    spec = SPECS[dataset]
    parsed, table = parse_lines(spec, block)
    positions, valid = check(dataset, jsonl_cells(spec, block, parsed, table), channels, default_tz, schema)
    return parsed[positions], valid


def check_csv(dataset: str, header: list[str], block: LineBlock, channels, default_tz: tzinfo,
              schema: pa.Schema) -> tuple[np.ndarray, pa.Table]:
    """The certainly valid rows among the simple lines of a CSV block: their positions and contract columns."""
    positions, valid = check(dataset, csv_cells(SPECS[dataset], header, block, schema), channels, default_tz, schema)
    return np.flatnonzero(block.simple)[positions], valid
