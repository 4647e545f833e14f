"""A source's field mapping, vectorised: native string columns -> contract columns of each moment, with the first
mapping error of each row (the source column and value that failed).

Strings, templates, maps, case and slugs are Arrow compute over whole columns; timestamps in a strptime or epoch
format, numbers with units and derived ids are computed in Python once per distinct value and spread back.

    >>> moments = map_rows(source, table)   # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.ingest.contract import ErrorKind
from pipelines.ingest.sources.spec import ID_FIELDS, NUMBER_FIELDS, TIME_FIELDS, UNITS, FieldSpec, Source
from pipelines.ingest.vectorised import SPECS, _fold_ratings

UTC = timezone.utc
_NULL = pa.scalar(None, pa.string())
_KEPT_AS_IS = ("text", "comment")  # free text: not stripped


class MissingColumns(ValueError):
    """Columns the source file names that the data file does not have."""


@dataclass
class Errors:
    """The first mapping error of each row: kind, field (the source column) and message; None where there is none."""

    kind: np.ndarray
    field: np.ndarray
    message: np.ndarray

    @classmethod
    def none(cls, n: int) -> "Errors":
        return cls(np.full(n, None, object), np.full(n, None, object), np.full(n, None, object))

    @property
    def any(self) -> np.ndarray:
        return np.array([k is not None for k in self.kind], bool)

    def add(self, failed: np.ndarray, kind: ErrorKind, column: str, message: Callable[[int], str]) -> None:
        """Rows in `failed` without an earlier error get this one; `message(row)` is called for those rows only."""
        for row in np.flatnonzero(failed & np.equal(self.kind, None)):
            self.kind[row], self.field[row], self.message[row] = kind.value, column, message(row)


@dataclass
class MappedMoment:
    """One moment of every row: contract columns (strings, float64 numbers, attributes JSON text, folded ratings),
    whether the row has this moment (its timestamp is not empty, or the source has one moment) and mapping errors."""

    name: str | None
    columns: dict[str, pa.Array]
    ratings: dict[str, pa.Array] | None
    ratings_ok: np.ndarray
    rating_values: dict[str, dict[str, np.ndarray]]  # item -> measure -> values (NaN: absent), for the reference path
    present: np.ndarray
    errors: Errors


def _mask(condition) -> np.ndarray:
    return pc.fill_null(condition, False).to_numpy(zero_copy_only=False)


def _per_distinct(values: pa.Array, function: Callable, out_type: pa.DataType) -> pa.Array:
    distinct = pc.unique(values).drop_null()
    mapped = pa.array([function(v) for v in distinct.to_pylist()], out_type)
    return mapped.take(pc.index_in(values, distinct))


@dataclass
class _Columns:
    """The native table's columns, null markers applied."""

    table: pa.Table
    source: Source
    cache: dict = dataclass_field(default_factory=dict)

    def cell(self, column: str, spec: FieldSpec, field: str) -> pa.Array:
        markers = tuple(spec.null_values if spec.null_values is not None else self.source.null_values)
        key = (column, markers, field in _KEPT_AS_IS)
        if key not in self.cache:
            values = self.table.column(column).combine_chunks()
            trimmed = pc.utf8_trim_whitespace(values)
            kept = values if field in _KEPT_AS_IS else trimmed
            null = pc.equal(pc.binary_length(trimmed), 0) if markers == ("",) else \
                pc.is_in(trimmed, pa.array(markers, pa.string()))
            self.cache[key] = pc.if_else(null, _NULL, kept)
        return self.cache[key]


def _origin(spec: FieldSpec, columns: _Columns, field: str, n: int) -> pa.Array:
    """The field's text before maps and formats."""
    if spec.column is not None:
        value = columns.cell(spec.column, spec, field)
        return pc.coalesce(value, columns.cell(spec.fallback, spec, field)) if spec.fallback else value
    if spec.value is not None:
        return pa.repeat(pa.scalar(str(spec.value), pa.string()), n)
    if spec.template is not None:
        parts = []
        for text, name in spec.template_parts:
            if text:
                parts.append(pa.repeat(pa.scalar(text, pa.string()), n))
            if name:
                parts.append(columns.cell(name, spec, field))
        return pc.binary_join_element_wise(*parts, "", null_handling="emit_null") if len(parts) > 1 else parts[0]
    if spec.hash is not None:
        joined = pc.binary_join_element_wise(*(columns.cell(c, spec, field) for c in spec.hash), "\x1f",
                                             null_handling="replace", null_replacement="")
        return _per_distinct(joined, lambda t: spec.prefix + hashlib.sha256(t.encode("utf-8")).hexdigest()[:20],
                             pa.string())
    parts = [columns.cell(spec.date, spec, field)] + ([columns.cell(spec.time, spec, field)] if spec.time else [])
    return pc.binary_join_element_wise(*parts, " ", null_handling="emit_null") if len(parts) > 1 else parts[0]


def _mapped(values: pa.Array, spec: FieldSpec, field: str, errors: Errors) -> pa.Array:
    """Codes -> values by `map` (a code not in it: `default`, else unmapped_value), then `case` and `slug`."""
    if spec.map is not None:
        codes = pa.array(list(spec.map), pa.string())
        targets = pa.array([None if v is None else str(v) for v in spec.map.values()], pa.string())
        index = pc.index_in(values, codes)
        unmapped = _mask(pc.and_(pc.is_valid(values), pc.is_null(index)))
        source_values = values
        values = targets.take(index)
        if spec.default is not None:
            values = pc.if_else(unmapped, pa.scalar(spec.default, pa.string()), values)
        else:
            column = spec.column or ",".join(spec.columns)
            errors.add(unmapped, ErrorKind.UNMAPPED_VALUE, column,
                       lambda row: f"{field}: {column} value {source_values[row].as_py()!r} is not in the map")
    if spec.case == "lower":
        values = pc.utf8_lower(values)
    elif spec.case == "upper":
        values = pc.utf8_upper(values)
    if spec.slug:
        values = pc.utf8_trim(pc.replace_substring_regex(pc.utf8_lower(values), r"[^\p{L}\p{N}]+", "_"), "_")
    return values


UTC_US = pa.timestamp("us", "UTC")


def parse_time(text: str, time_format: str, tz: ZoneInfo) -> datetime | None:
    """A timestamp in `time_format` (strptime, epoch_s, epoch_ms) as an aware UTC datetime; None if it does not
    match (a naive result is in `tz`).

    >>> parse_time("29/2/2016 01:16", "%d/%m/%Y %H:%M", ZoneInfo("Asia/Shanghai")).isoformat()
    '2016-02-28T17:16:00+00:00'
    """
    try:
        if time_format in ("epoch_s", "epoch_ms"):
            seconds = float(text) / (1000 if time_format == "epoch_ms" else 1)
            return datetime.fromtimestamp(seconds, UTC)
        parsed = datetime.strptime(text, time_format)
    except (ValueError, OverflowError, OSError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        return None


# strptime directives whose numbers the fast path checks: directive -> (regex, the Arrow component it must equal)
_DIRECTIVES = {"d": (r"\d{1,2}", "day"), "m": (r"\d{1,2}", "month"), "Y": (r"\d{4}", "year"),
               "H": (r"\d{1,2}", "hour"), "M": (r"\d{1,2}", "minute"), "S": (r"\d{1,2}", "second")}


def _format_pattern(time_format: str) -> tuple[str, list[str]] | None:
    """A regex of `time_format` capturing each number and the components they are, or None when the format has
    other directives than %d %m %Y %H %M %S (those values are all parsed by Python)."""
    pattern, components, i = "^", [], 0
    while i < len(time_format):
        char = time_format[i]
        if char == "%" and i + 1 < len(time_format):
            directive = time_format[i + 1]
            if directive == "%":
                pattern += "%"
            elif directive in _DIRECTIVES:
                regex, component = _DIRECTIVES[directive]
                pattern += f"(?P<g{len(components)}>{regex})"
                components.append(component)
            else:
                return None
            i += 2
            continue
        pattern += re.escape(char)
        i += 1
    return pattern + "$", components


def strptime_column(values: pa.Array, time_format: str, tz: ZoneInfo) -> pa.Array:
    """`parse_time` over a column, as UTC timestamps: Arrow's strptime where every number of the text is the one
    Arrow read (Arrow rolls 31/2 over into March; such values, and formats with other directives than
    %d %m %Y %H %M %S, go to Python's strptime once per distinct value)."""
    found = _format_pattern(time_format)
    same = np.zeros(len(values), bool)
    fast = pa.nulls(len(values), UTC_US)
    if found is not None:
        pattern, components = found
        arrow = pc.strptime(values, format=time_format, unit="us", error_is_null=True)
        numbers = pc.extract_regex(values, pattern)
        same = _mask(pc.is_valid(arrow)) & _mask(pc.is_valid(numbers))
        for index, component in enumerate(components):
            written = pc.struct_field(numbers, index).cast(pa.int64())
            same &= _mask(pc.equal(written, getattr(pc, component)(arrow)))
        if same.any():
            fast = pc.assume_timezone(arrow, tz.key, ambiguous="earliest", nonexistent="earliest").cast(UTC_US)
    slow = _per_distinct(pc.if_else(same, _NULL, values), lambda t: parse_time(t, time_format, tz), UTC_US)
    return pc.if_else(same, fast, slow)


def _timestamp(values: pa.Array, spec: FieldSpec, tz: ZoneInfo, field: str, errors: Errors) -> pa.Array:
    """ISO text is left to the contract's check (naive values read in the source's time zone); other formats are
    parsed here into UTC timestamps, a value that does not match is a bad_timestamp naming the column."""
    if spec.format == "iso":
        return values
    if spec.format in ("epoch_s", "epoch_ms"):
        parsed = _per_distinct(values, lambda t: parse_time(t, spec.format, tz), UTC_US)
    else:
        parsed = strptime_column(values, spec.format, tz)
    column = ",".join(spec.columns)
    errors.add(_mask(pc.and_(pc.is_valid(values), pc.is_null(parsed))), ErrorKind.BAD_TIMESTAMP, column,
               lambda row: f"{field}: {column} value {values[row].as_py()!r} does not match {spec.format!r}")
    return parsed


def _seconds(text: str, unit: str | None) -> float | None:
    """A number in `unit` as seconds (hms: `H:MM:SS` or `MM:SS`); None if it is not one."""
    try:
        if unit == "hms":
            parts = [float(p) for p in text.split(":")]
            if not 2 <= len(parts) <= 3:
                return None
            return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
        number = float(text) * (UNITS[unit] if unit else 1.0)
    except ValueError:
        return None
    return number if math.isfinite(number) or math.isinf(number) else None


def _number(values: pa.Array, spec: FieldSpec, columns: _Columns, tz: ZoneInfo, field: str,
            errors: Errors) -> pa.Array:
    """A number field as float64: a numeric text (in `unit`), or seconds between two timestamp columns."""
    if spec.between is not None:
        first, second = (_per_distinct(columns.cell(c, spec, field), lambda t: _epoch(t, spec.format, tz), pa.float64())
                         for c in spec.between)
        for column, parsed in zip(spec.between, (first, second)):
            raw = columns.cell(column, spec, field)
            errors.add(_mask(pc.and_(pc.is_valid(raw), pc.is_null(parsed))), ErrorKind.BAD_TIMESTAMP, column,
                       lambda row, raw=raw, column=column: f"{field}: {column} value {raw[row].as_py()!r} does not match {spec.format!r}")
        return pc.subtract(second, first)
    number = _per_distinct(values, lambda t: _seconds(t, spec.unit), pa.float64())
    column = spec.column or ",".join(spec.columns)
    errors.add(_mask(pc.and_(pc.is_valid(values), pc.is_null(number))), ErrorKind.WRONG_TYPE, column,
               lambda row: f"{field}: {column} value {values[row].as_py()!r} is not a number"
               + (f" in {spec.unit}" if spec.unit else ""))
    return number


def _epoch(text: str, time_format: str, tz: ZoneInfo) -> float | None:
    """A timestamp (ISO or `time_format`) as seconds since 1970."""
    if time_format != "iso":
        parsed = parse_time(text, time_format, tz)
        return None if parsed is None else parsed.timestamp()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)).timestamp()


def _attributes(columns: _Columns, used: set[str], source: Source) -> pa.Array:
    """Leftover (or listed) columns as one JSON object text per row, null cells left out, null when none: in the
    canonical form of the contract (keys sorted, `json.dumps` separators), so it needs no further check."""
    names = [c for c in columns.table.column_names if c not in used] if source.attributes == "rest" else \
        [] if source.attributes == "none" else list(source.attributes)
    return _json_object({name: columns.cell(name, FieldSpec(column=name), name) for name in names},
                        columns.table.num_rows)


def _json_object(values: dict[str, pa.Array], n: int) -> pa.Array:
    """One JSON object text per row from named columns (keys sorted, `json.dumps` separators, null cells left
    out), null for a row with none."""
    members = []
    for name in sorted(values):
        encoded = _per_distinct(values[name], lambda v: json.dumps(v, ensure_ascii=False), pa.string())
        members.append(pc.binary_join_element_wise(json.dumps(name, ensure_ascii=False) + ": ", encoded, "",
                                                   null_handling="emit_null"))
    if not members:
        return pa.nulls(n, pa.string())
    none = np.logical_and.reduce([~_mask(pc.is_valid(member)) for member in members])
    # "skip" drops a row whose members are all null (pyarrow 25): give such rows an empty first member
    first = pc.if_else(none, pa.scalar("", pa.string()), members[0])
    body = pc.binary_join_element_wise(first, *members[1:], ", ", null_handling="skip")
    return pc.if_else(none, _NULL, pc.binary_join_element_wise("{", body, "}", "", null_handling="emit_null"))


def _identifiers(source: Source, columns: _Columns, tz: ZoneInfo, errors: Errors, n: int) -> pa.Array:
    """The mapped identifiers as one JSON object text per row (type -> value, null cells left out), null when
    none; the reference validation normalises and checks them (rows with identifiers take that path)."""
    return _json_object({name: _field(f"identifiers.{name}", spec, columns, tz, errors, n)
                         for name, spec in (source.identifiers or {}).items()}, n)


def check_columns(source: Source, names: list[str]) -> None:
    """Raise MissingColumns naming each column the source file reads that `names` (the data's) lacks, and its key."""
    missing = []
    keys = [(f"fields.{field}", spec) for field, spec in source.fields.items()]
    keys += [(f"moments.{m.name}.{field}", spec) for m in source.moments or () for field, spec in m.fields.items()]
    keys += [(f"identifiers.{name}", spec) for name, spec in (source.identifiers or {}).items()]
    for key, spec in keys:
        missing += [f"{column!r} ({key})" for column in spec.columns if column not in names]
    for item, rating in (source.ratings or {}).items():
        missing += [f"{c!r} (ratings.{item})" for c in (rating.perception, rating.expectation) if c and c not in names]
    if isinstance(source.attributes, list):
        missing += [f"{c!r} (attributes)" for c in source.attributes if c not in names]
    if missing:
        raise MissingColumns(f"not in the data: {', '.join(missing)}; its columns are {', '.join(names[:40])}")


def _ratings(columns: _Columns, source: Source, errors: Errors, ratings_type: pa.DataType):
    """Rating columns -> (folded items and SERVQUAL columns, rows certainly in range, values per item)."""
    n = columns.table.num_rows
    keys = sorted(source.ratings or {})
    rated = np.zeros((n, len(keys)), bool)
    expectation, perception = np.full((n, len(keys)), np.nan), np.full((n, len(keys)), np.nan)
    values: dict[str, dict[str, np.ndarray]] = {}
    for j, key in enumerate(keys):
        rating = source.ratings[key]
        values[key] = {}
        for measure, column, target in (("perception", rating.perception, perception),
                                        ("expectation", rating.expectation, expectation)):
            if column is None:
                continue
            spec = FieldSpec(column=column)
            number = _number(columns.cell(column, spec, f"ratings.{key}"), spec, columns, ZoneInfo("UTC"),
                             f"ratings.{key}.{measure}", errors)
            target[:, j] = number.fill_null(np.nan).to_numpy(zero_copy_only=False)
            values[key][measure] = target[:, j]
        rated[:, j] = ~np.isnan(perception[:, j]) | ~np.isnan(expectation[:, j])
    ok = ~(rated & np.isnan(perception)).any(axis=1)  # an expectation without a perception: the reference path
    ok, folded = _fold_ratings(keys, rated, expectation, perception, ok, ratings_type)
    return folded, ok, values


def map_rows(source: Source, table: pa.Table, ratings_type: pa.DataType | None = None) -> list[MappedMoment]:
    """Every moment of every row of `table` (the source's native columns) as contract columns."""
    n = table.num_rows
    columns = _Columns(table, source)
    tz = ZoneInfo(source.timezone)
    spec = SPECS[source.dataset]
    time_field, id_field = TIME_FIELDS[source.dataset], ID_FIELDS[source.dataset]
    base_errors = Errors.none(n)
    base = {field: _field(field, s, columns, tz, base_errors, n) for field, s in source.fields.items()}
    extra: dict[str, pa.Array] = {"identifiers": _identifiers(source, columns, tz, base_errors, n)}
    if source.dataset == "events":
        extra["attributes"] = _attributes(columns, set(source.columns()), source)
    ratings, ratings_ok, rating_values = None, np.ones(n, bool), {}
    if source.dataset == "feedback":
        ratings, ratings_ok, rating_values = _ratings(columns, source, base_errors, ratings_type)
    moments = []
    for moment in source.moments or [None]:
        errors = Errors(base_errors.kind.copy(), base_errors.field.copy(), base_errors.message.copy())
        values = dict(base)
        if moment is not None:
            values |= {field: _field(field, s, columns, tz, errors, n) for field, s in moment.fields.items()}
            if id_field not in moment.fields and id_field in values:
                values[id_field] = pc.binary_join_element_wise(values[id_field], moment.name, "-", null_handling="emit_null")
        present = np.ones(n, bool)
        if moment is not None:  # a moment whose timestamp cells are empty did not happen
            time_spec = moment.fields[time_field]
            present = _mask(pc.is_valid(_origin(time_spec, columns, time_field, n)))
        out = {}
        for field in spec.fields:
            numeric = field in NUMBER_FIELDS
            out[field] = values.get(field, extra.get(field, pa.nulls(n, pa.float64() if numeric else pa.string())))
        moments.append(MappedMoment(moment.name if moment else None, out, ratings, ratings_ok, rating_values, present, errors))
    return moments


def _field(field: str, spec: FieldSpec, columns: _Columns, tz: ZoneInfo, errors: Errors, n: int) -> pa.Array:
    values = _origin(spec, columns, field, n) if spec.between is None else pa.nulls(n, pa.string())
    values = _mapped(values, spec, field, errors)
    if field in TIME_FIELDS.values():
        return _timestamp(values, spec, tz, field, errors)
    if field in NUMBER_FIELDS:
        return _number(values, spec, columns, tz, field, errors)
    return values
