"""Vectorised fast path of `ingest.read_validated`: whole blocks of rows parsed and checked with DuckDB.

For a block of input rows it computes a conservative "certainly valid" mask and, for those rows only, the
typed contract columns. A row is certainly valid only when every field has a plain form on which DuckDB's
JSON reader and SQL give exactly what `json.loads` + `pipelines.validate` give (strings, plain decimal
numbers, `YYYY-MM-DD[T ]HH:MM:SS[.ffffff][Z|±HH:MM]` timestamps, ASCII channel and outcome, no duplicate
keys, no token Python's JSON reader refuses). Every other row is left to the per-row Python reference
path (`fallback`), which gives its exact rejection or its exact clean row; `ingest` merges both in line order.

Objects (`attributes`, feedback `ratings`) and naive timestamps outside UTC are finished in Python, once
per distinct value, with the reference functions themselves.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.contract import DIMENSIONS, OUTCOMES, SCORE_RANGES
from pipelines.io import CsvRow, unflatten_csv_row
from pipelines.validate import Rejection, check_ratings, parse_timestamp, servqual_by_dimension

# The characters Python's str.strip() removes (str.isspace()); tests/test_ingest_fast.py checks the list.
WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + \
    "\u2028\u2029\u202f\u205f\u3000"
# DuckDB threads per reading process: two Beam workers may read at once on a 2-core machine.
THREADS = int(os.environ.get("MOTPIPE_READ_THREADS", "1"))

_NUMBER = r"(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?"  # no sign: negative values and -0 are left to Python
_TIMESTAMP = r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?(Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)?"
# JSON that DuckDB reads and Python does not: trailing commas, and NaN/Infinity spellings (Python's own
# NaN/Infinity are caught as well, harmlessly: those rows take the reference path)
_LENIENT_JSON = r",\s*[\]}]|[:,\[]\s*-?[nNiI][aAnN]"


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


SPECS = {
    "events": Spec("occurred_at", ("event_id", "customer_id", "touchpoint"), ("visit_id", "staff_id", "location_id"),
                   "text", ("duration_s", "wait_s"), {}, "attributes", channel_required=True, outcome=True),
    "feedback": Spec("submitted_at", ("feedback_id", "customer_id"), ("visit_id", "touchpoint"), "comment", (),
                     SCORE_RANGES, "ratings", channel_required=False, outcome=False),
}


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _in_list(values) -> str:
    return "(" + ", ".join(_lit(v) for v in sorted(values)) + ")"


def connect() -> duckdb.DuckDBPyConnection:
    """An in-process DuckDB connection with the helper macros (Python's strip, ASCII test)."""
    con = duckdb.connect(config={"threads": THREADS})
    con.execute(f"""
        CREATE MACRO pystrip(s) AS CASE WHEN ord(s[1]) BETWEEN 33 AND 126 AND ord(s[-1]) BETWEEN 33 AND 126 THEN s
                                        ELSE nullif(trim(s, {_lit(WHITESPACE)}), '') END;
        CREATE MACRO is_ascii(s) AS strlen(s) = length(s);
        CREATE MACRO is_plain_number(k, s) AS k IN ('n', 's') AND regexp_full_match(s, {_lit(_NUMBER)});
    """)
    return con


# --- the checks, on cells: k_<field> (s string, n number, o object, x other, NULL absent/null), v_<field> ---------

def _string_checks(spec: Spec, channels) -> tuple[list[str], list[str]]:
    """SQL conditions and output columns of the string fields."""
    ok, out = [], []
    for field in spec.required:
        ok.append(f"k_{field} = 's' AND p_{field} IS NOT NULL")
        out.append(f"p_{field} AS {field}")
    for field in spec.optional:
        ok.append(f"(k_{field} IS NULL OR k_{field} = 's')")
        out.append(f"p_{field} AS {field}")
    coded = [("channel", _in_list(channels), spec.channel_required)] + \
            ([("outcome", _in_list(OUTCOMES), False)] if spec.outcome else [])
    for field, allowed, required in coded:
        value = f"p_{field}"
        known = f"is_ascii({value}) AND lower({value}) IN {allowed}"
        ok.append(f"k_{field} = 's' AND {known}" if required else
                  f"(k_{field} IS NULL OR (k_{field} = 's' AND ({value} IS NULL OR {known})))")
        out.append(f"lower({value}) AS {field}")
    ok.append(f"(k_{spec.text} IS NULL OR k_{spec.text} = 's')")
    out.append(f"CASE WHEN pystrip(v_{spec.text}) IS NOT NULL THEN v_{spec.text} END AS {spec.text}")
    return ok, out


def _number_checks(spec: Spec) -> tuple[list[str], list[str]]:
    """Non-negative numbers (float) and scores (integer in range); a blank string is null."""
    ok, out = [], []
    for field in spec.numbers:
        value = f"TRY_CAST(p_{field} AS DOUBLE)"
        absent = f"(k_{field} IS NULL OR (k_{field} = 's' AND p_{field} IS NULL))"
        ok.append(f"({absent} OR (is_plain_number(k_{field}, p_{field}) AND isfinite({value})))")
        out.append(f"CASE WHEN NOT {absent} THEN {value} END AS {field}")
    for field, (low, high) in spec.scores.items():
        value = f"TRY_CAST(p_{field} AS INTEGER)"
        absent = f"(k_{field} IS NULL OR (k_{field} = 's' AND p_{field} IS NULL))"
        ok.append(f"({absent} OR (k_{field} IN ('n', 's') AND regexp_full_match(p_{field}, '[0-9]{{1,3}}') "
                  f"AND {value} BETWEEN {low} AND {high}))")
        out.append(f"CASE WHEN NOT {absent} THEN {value}::TINYINT END AS {field}")
    return ok, out


def _timestamp_checks(spec: Spec, utc_default: bool) -> tuple[list[str], list[str], str]:
    """The timestamp as UTC microseconds (conditions, outputs, the regexp parts); naive ones outside UTC are
    left as text for Python (`finish`)."""
    field = spec.timestamp
    parts = f"regexp_extract(p_{field}, {_lit('^' + _TIMESTAMP + '$')}, ['d', 't', 'f', 'z'])"
    naive = "ts.z = ''"
    local_us = ("epoch_us(try_strptime(ts.d || ' ' || ts.t, '%Y-%m-%d %H:%M:%S')) "
                "+ CASE WHEN ts.f = '' THEN 0 ELSE rpad(ts.f, 6, '0')::BIGINT END")
    offset_s = ("CASE WHEN ts.z IN ('', 'Z') THEN 0 ELSE (CASE WHEN ts.z[1] = '-' THEN -1 ELSE 1 END) "
                "* (ts.z[2:3]::BIGINT * 3600 + ts.z[5:6]::BIGINT * 60) END")
    in_range = "ts.d[1:4] BETWEEN '1000' AND '9998'"  # no overflow at either end of Python's range
    aware = "TRUE" if utc_default else f"NOT {naive}"
    ok = [f"k_{field} = 's' AND ts.d <> '' AND {in_range} AND ({local_us}) IS NOT NULL"]
    out = [f"CASE WHEN {aware} THEN {local_us} - ({offset_s}) * 1000000 END AS {field}",
           f"CASE WHEN NOT ({aware}) THEN p_{field} END AS naive_{field}"]
    return ok, out, parts


def check_sql(spec: Spec, cells: str, channels, utc_default: bool) -> str:
    """SELECT over relation `cells`: idx, ok and the typed output columns (for rows where ok)."""
    string_ok, string_out = _string_checks(spec, channels)
    number_ok, number_out = _number_checks(spec)
    ts_ok, ts_out, ts_parts = _timestamp_checks(spec, utc_default)
    obj_ok = [f"(k_{spec.obj} IS NULL OR k_{spec.obj} = 'o')"]
    conditions = " AND ".join(f"({c})" for c in string_ok + number_ok + ts_ok + obj_ok)
    columns = ", ".join(string_out + number_out + ts_out + [f"v_{spec.obj} AS {spec.obj}"])
    stripped = ", ".join(f"pystrip(v_{f}) AS p_{f}" for f in spec.fields if f not in (spec.text, spec.obj))
    return f"""
        SELECT idx, coalesce({conditions}, false) AS ok, {columns}
        FROM (SELECT *, {ts_parts} AS ts FROM (SELECT *, {stripped} FROM {cells}))
    """


# --- front ends: JSON Lines blocks and CSV rows -> cells -------------------------------------------------------

def jsonl_cells_sql(spec: Spec, lines: str) -> str:
    """Relation `lines(idx, line)` -> cells; lines DuckDB cannot safely read the way Python does get no cells."""
    fields = spec.fields
    struct = json.dumps({f: "JSON" for f in fields})
    kinds = ", ".join(
        f"CASE WHEN r_{f} IS NOT NULL THEN CASE r_{f}[1] WHEN '\"' THEN 's' WHEN '{{' THEN 'o' WHEN '[' THEN 'x' "
        f"WHEN 't' THEN 'x' WHEN 'f' THEN 'x' ELSE 'n' END END AS k_{f}" for f in fields)  # JSON null is SQL NULL
    values = ", ".join(
        f"CASE WHEN r_{f}[1] <> '\"' THEN r_{f} WHEN contains(r_{f}, '\\') THEN r_{f}::JSON ->> '$' "
        f"ELSE r_{f}[2:-2] END AS v_{f}" for f in fields)
    texts = ", ".join(f"j.{f}::VARCHAR AS r_{f}" for f in fields)
    return f"""
        SELECT idx, {kinds}, {values}
        FROM (SELECT idx, {texts}
              FROM (SELECT idx, json_transform(line, {_lit(struct)}) AS j
                    FROM (SELECT idx, line, json_keys(line) AS keys FROM {lines}
                          WHERE prefix(line, '{{') AND suffix(line, '}}') AND json_valid(line)
                            AND NOT regexp_matches(line, {_lit(_LENIENT_JSON)}))
                    WHERE len(keys) = len(list_distinct(keys))))
    """


def csv_cells(spec: Spec, header: list[str], rows: list[CsvRow]) -> pa.Table:
    """CSV rows (all of the header's width, valid UTF-8) -> cells: a non-blank cell is a string, `attributes`
    an object candidate; feedback's `rating.*` columns become one ratings object per row (JSON text)."""
    column_of = {name: i for i, name in enumerate(header)}  # a repeated name: the last column wins, as dict(zip())
    columns = list(zip(*(row.cells for row in rows)))
    table = {"idx": pa.array(np.arange(len(rows)))}
    for field in spec.fields:
        if field == "ratings":
            kinds, values = _csv_ratings(header, rows)
        else:
            values = _csv_column(columns[column_of[field]]) if field in column_of else pa.nulls(len(rows), pa.string())
            kinds = pc.if_else(pc.is_null(values), pa.scalar(None, pa.string()), "o" if field == spec.obj else "s")
        table[f"k_{field}"], table[f"v_{field}"] = kinds, values
    return pa.table(table)


def _csv_column(cells: tuple[str, ...]) -> pa.Array:
    """A CSV column as strings, blank cells (Python's strip) as null."""
    values = pa.array(cells, pa.string())
    blank = pc.equal(pc.utf8_length(pc.utf8_trim(values, WHITESPACE)), 0)
    return pc.if_else(blank, pa.scalar(None, pa.string()), values)


def _csv_ratings(header: list[str], rows: list[CsvRow]) -> tuple[pa.Array, pa.Array]:
    """Kinds and JSON texts of each feedback CSV row's ratings, folded by `unflatten_csv_row` as the reference
    does (a plain `ratings` column stays text, which the reference rejects)."""
    positions = [i for i, name in enumerate(header) if name.startswith("rating.") or name == "ratings"]
    names = [header[i] for i in positions]
    kinds, texts = [], []
    for row in rows:
        ratings = unflatten_csv_row(dict(zip(names, (row.cells[i] for i in positions)))).get("ratings")
        kinds.append(None if ratings is None else "o" if isinstance(ratings, dict) else "x")
        texts.append(json.dumps(ratings) if isinstance(ratings, dict) else ratings)
    return pa.array(kinds, pa.string()), pa.array(texts, pa.string())


# --- finishing in Python, once per distinct value --------------------------------------------------------------

def _per_distinct(values: pa.Array, function: Callable, out_type: pa.DataType) -> pa.Array:
    """`function(value)` for each distinct non-null value, spread back over the array (null stays null)."""
    distinct = pc.unique(values).drop_null()
    mapped = pa.array([function(v) for v in distinct.to_pylist()], out_type)
    return mapped.take(pc.index_in(values, distinct))


def canonical_object(text: str) -> str | None:
    """The JSON object `text` as validate.py stores it (keys sorted), None when it is not an object."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    canonical = json.dumps(value, ensure_ascii=False, sort_keys=True)
    try:
        canonical.encode("utf-8")  # a lone surrogate: left to the reference path
    except UnicodeEncodeError:
        return None
    return canonical


def _utc_micros(text: str, default_tz: tzinfo) -> int | None:
    """A naive timestamp read in `default_tz` by the reference parser, as UTC microseconds."""
    try:
        return (parse_timestamp(text, default_tz) - _EPOCH) // timedelta(microseconds=1)
    except (ValueError, OverflowError):
        return None


def is_utc(default_tz: tzinfo) -> bool:
    """Whether naive timestamps are read as UTC (then SQL converts them too)."""
    return default_tz is timezone.utc or getattr(default_tz, "key", None) in ("UTC", "Etc/UTC")


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SERVQUAL = [f"{d}_{m}" for d in DIMENSIONS for m in ("expectation", "perception", "gap")]
_NO_RATINGS = {"ratings": [], **servqual_by_dimension([])}


def _ratings(text: str) -> dict | None:
    """A ratings object (JSON text) -> `ratings` items and the SERVQUAL columns; None when it is rejected."""
    ratings = json.loads(text)
    if not ratings:
        return _NO_RATINGS
    items = check_ratings(ratings)
    return None if isinstance(items, Rejection) else {"ratings": items, **servqual_by_dimension(items)}


def _finish_ratings(columns: dict, ok: pa.Array, schema: pa.Schema) -> pa.Array:
    """Feedback: ratings items, SERVQUAL columns and "at least one signal"; returns the narrowed mask."""
    texts = columns["ratings"].to_pylist()
    parsed = [_ratings(t) if t is not None and keep else _NO_RATINGS for t, keep in zip(texts, ok.to_pylist())]
    for name in ["ratings", *_SERVQUAL]:
        columns[name] = pa.array([(r or _NO_RATINGS)[name] for r in parsed], schema.field(name).type)
    signal = pc.greater(pc.list_value_length(columns["ratings"]), 0)
    for name in ("csat", "nps", "ces", "comment"):
        signal = pc.or_(signal, pc.is_valid(columns[name]))
    return pc.and_(pc.and_(ok, pa.array([r is not None for r in parsed])), signal)


def _finish(spec: Spec, checked: pa.Table, default_tz: tzinfo, schema: pa.Schema) -> tuple[pa.Array, dict]:
    """Naive timestamps outside UTC, the object field and (feedback) the signal check, in Python:
    the final mask and the typed columns."""
    columns = {name: checked.column(name).combine_chunks() for name in checked.column_names}
    ok = columns.pop("ok")
    ts = spec.timestamp
    naive = columns.pop(f"naive_{ts}")
    if naive.null_count < len(naive):
        local = _per_distinct(naive, lambda text: _utc_micros(text, default_tz), pa.int64())
        columns[ts] = pc.coalesce(columns[ts], local)
        ok = pc.and_(ok, pc.or_(pc.is_null(naive), pc.is_valid(local)))
    columns[ts] = columns[ts].cast(pa.timestamp("us")).cast(schema.field(ts).type)
    if spec.obj == "attributes":
        canonical = _per_distinct(columns["attributes"], canonical_object, pa.string())
        ok = pc.and_(ok, pc.or_(pc.is_null(columns["attributes"]), pc.is_valid(canonical)))
        columns["attributes"] = canonical
    else:
        ok = _finish_ratings(columns, ok, schema)
    return ok, columns


def _check(con, dataset: str, cells: str, channels, default_tz: tzinfo, schema: pa.Schema) -> tuple[np.ndarray, pa.Table]:
    """Run the checks on relation `cells`: the `idx` of the certainly valid rows and their contract columns."""
    spec = SPECS[dataset]
    checked = con.sql(check_sql(spec, cells, channels, is_utc(default_tz))).to_arrow_table()
    ok, columns = _finish(spec, checked, default_tz, schema)
    names = [f.name for f in schema if f.name in columns]
    table = pa.table({n: columns[n] for n in names}, schema=pa.schema([schema.field(n) for n in names])).filter(ok)
    return columns["idx"].filter(ok).to_numpy(), table


def check_lines(con, dataset: str, block: LineBlock, channels, default_tz: tzinfo,
                schema: pa.Schema) -> tuple[np.ndarray, pa.Table]:
    """The block's certainly valid rows: their positions in the block and their contract columns."""
    positions = np.flatnonzero(block.simple)
    con.register("lines", pa.table({"idx": positions, "line": block.text.take(positions)}))
    try:
        return _check(con, dataset, f"({jsonl_cells_sql(SPECS[dataset], 'lines')})", channels, default_tz, schema)
    finally:
        con.unregister("lines")


def check_csv(con, dataset: str, header: list[str], rows: list[CsvRow], channels, default_tz: tzinfo,
              schema: pa.Schema) -> tuple[np.ndarray, pa.Table]:
    """The certainly valid ones of CSV rows that fit the header and are UTF-8: positions and contract columns."""
    con.register("cells", csv_cells(SPECS[dataset], header, rows))
    try:
        return _check(con, dataset, "cells", channels, default_tz, schema)
    finally:
        con.unregister("cells")


# --- splitting JSON Lines blocks ----------------------------------------------------------------------------

@dataclass
class LineBlock:
    """The physical lines of a block of a JSON Lines file."""

    first_line_no: int
    lines: pa.Array  # large_binary, each line with its line break, as `readline` returns it
    text: pa.Array  # the line decoded, trailing CR/LF removed; "" where the bytes are not UTF-8
    rows: np.ndarray  # bool: the line is a row (not blank; invalid UTF-8 counts as a row)
    simple: np.ndarray  # bool: a row the fast path may try (valid UTF-8, not the file's first line)


def split_lines(block: bytes, first_line_no: int) -> LineBlock:
    """Split a block of whole lines without a Python loop; a block not ending in a line break ends the file."""
    breaks = np.flatnonzero(np.frombuffer(block, np.uint8) == 10) + 1
    if not block.endswith(b"\n"):
        breaks = np.append(breaks, len(block))
    offsets = np.concatenate([[0], breaks]).astype(np.int64)
    lines = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(breaks), [None, pa.py_buffer(offsets),
                                                                               pa.py_buffer(block)])
    bad = np.zeros(len(lines), bool)
    bad[_not_utf8(lines)] = True
    text = pc.if_else(pa.array(bad), b"", lines).cast(pa.large_string())
    blank = pc.equal(pc.utf8_length(pc.utf8_trim(text, " \t\n\r\x0b\x0c")), 0).to_numpy(zero_copy_only=False)
    rows = ~blank | bad
    simple = rows & ~bad
    if first_line_no == 1 and len(simple):
        simple[0] = False  # a byte-order mark is allowed there: the reference path reads it
    return LineBlock(first_line_no, lines, pc.utf8_rtrim(text, "\r\n"), rows, simple)


def _not_utf8(lines: pa.Array, start: int = 0) -> list[int]:
    """Positions of the lines that are not valid UTF-8, found by bisecting the block (they are rare)."""
    try:
        lines.cast(pa.large_string())
        return []
    except pa.ArrowInvalid:
        if len(lines) == 1:
            return [start]
        half = len(lines) // 2
        return _not_utf8(lines.slice(0, half), start) + _not_utf8(lines.slice(half), start + half)
