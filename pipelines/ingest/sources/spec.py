"""The source file: how a native export is read and how each contract field is made from its columns.

A source file is YAML, validated here with pydantic; an error names the file, the key and its line:

    >>> source = load_source("examples/sources/wabo_receipt.yaml")   # doctest: +SKIP
    >>> source.dataset, source.format.type   # doctest: +SKIP
    ('events', 'csv')

`docs/sources.md` is the reference; every key is a field of the models below.
"""
from __future__ import annotations

import codecs
import re
import string
from pathlib import Path
from typing import Annotated, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from pipelines.ingest.contract import (DIMENSIONS, EVENT_FIELDS, FEEDBACK_FIELDS, IDENTIFIER_TYPE_PATTERN,
                                      SERVQUAL_ITEMS)

SOURCE_VERSION = 1
TIME_FIELDS = {"events": "occurred_at", "feedback": "submitted_at"}
ID_FIELDS = {"events": "event_id", "feedback": "feedback_id"}
NUMBER_FIELDS = ("duration_s", "wait_s", "csat", "nps", "ces")
UNITS = {"s": 1.0, "ms": 0.001, "min": 60.0, "h": 3600.0, "hms": None}  # hms: H:MM:SS text
TIME_FORMATS = ("iso", "epoch_s", "epoch_ms")  # or any strptime format


class SourceError(ValueError):
    """A source file that is not valid: the message names the file, the key and the line."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def known_timezone(value: str) -> str:
    """`value` if it names an IANA time zone, else a ValueError saying what to give."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as UTC or Asia/Shanghai)") from None
    return value


def _known_encoding(value: str) -> str:
    try:
        codecs.lookup(value)
    except LookupError:
        raise ValueError(f"unknown encoding {value!r} (e.g. utf-8, utf-8-sig, gbk, gb18030, utf-16)") from None
    return value


class CsvFormat(_Model):
    """Delimited text: any one-character delimiter, a header row or given column names, rows to skip."""

    type: Literal["csv"]
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quote: str | None = Field(default='"', min_length=1, max_length=1)  # None: no quoting
    header: bool = True  # False: the names are `columns`
    columns: list[str] | None = None
    skip_rows: int = Field(default=0, ge=0)  # rows before the header (or before the data without a header)
    skip_rows_after_header: int = Field(default=0, ge=0)  # e.g. the question text rows of a survey export
    encoding: str = "utf-8"

    _encoding = field_validator("encoding")(lambda cls, v: _known_encoding(v))

    @model_validator(mode="after")
    def _names(self) -> "CsvFormat":
        if not self.header and not self.columns:
            raise ValueError("without a header row give the column names in `columns`")
        return self


class JsonlFormat(_Model):
    """JSON Lines: one object a line; nested values are kept as JSON text."""

    type: Literal["jsonl"]
    encoding: str = "utf-8"

    _encoding = field_validator("encoding")(lambda cls, v: _known_encoding(v))


class ParquetFormat(_Model):
    type: Literal["parquet"]


class XesFormat(_Model):
    """An XES event log (IEEE 1849), gzip or not: one row per event; trace attributes as columns `case:<key>`."""

    type: Literal["xes"]


Format = Annotated[Union[CsvFormat, JsonlFormat, ParquetFormat, XesFormat], Field(discriminator="type")]


class FieldSpec(_Model):
    """How one contract field is made. Exactly one of: `column`, `value`, `template`, `hash`, `date` (+ `time`),
    `between`. Then, in order: null markers, `map` (codes -> values), `case`, `slug`; timestamps by `format`,
    numbers by `unit`. A plain string in YAML is a `column`."""

    column: str | None = None
    fallback: str | None = None  # with `column`: this column where that one is null
    value: str | float | int | None = None
    template: str | None = None  # "{number}-{sys_mod_count}"
    hash: list[str] | None = None  # stable id: hash of these columns' values
    prefix: str = ""  # before a hashed id
    date: str | None = None  # a date column, with `time` a time column: joined by a space before `format`
    time: str | None = None
    between: list[str] | None = Field(default=None, min_length=2, max_length=2)  # seconds from the 1st to the 2nd
    format: str = "iso"  # timestamps: iso, epoch_s, epoch_ms or a strptime format
    unit: str | None = None  # numbers: s, ms, min, h, or hms (H:MM:SS text)
    null_values: list[str] | None = None  # replaces the source's markers for this field
    map: dict[str, str | float | int | None] | None = None  # source code -> value; a code not in it: unmapped_value

    @field_validator("map", mode="before")
    @classmethod
    def _codes_as_text(cls, value: object) -> object:
        """YAML reads `1: web` with an integer code; cells are text."""
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value

    default: str | None = None  # for a code not in `map` instead of unmapped_value
    case: Literal["lower", "upper"] | None = None
    slug: bool = False  # lower-case, every run of other characters than letters and digits -> "_"

    @model_validator(mode="after")
    def _one_origin(self) -> "FieldSpec":
        origins = [name for name in ("column", "value", "template", "hash", "date", "between")
                   if getattr(self, name) is not None]
        if len(origins) != 1:
            raise ValueError(f"give exactly one of column, value, template, hash, date, between (got {origins or 'none'})")
        if self.fallback is not None and self.column is None:
            raise ValueError("`fallback` needs `column`")
        if self.time is not None and self.date is None:
            raise ValueError("`time` needs `date`")
        if self.unit is not None and self.unit not in UNITS:
            raise ValueError(f"unknown unit {self.unit!r} (one of {', '.join(UNITS)})")
        if self.template is not None:
            try:
                names = [name for _, name, _, _ in string.Formatter().parse(self.template) if name is not None]
            except ValueError as err:
                raise ValueError(f"template {self.template!r}: {err}") from None
            if not names or any(not name for name in names):
                raise ValueError(f"template {self.template!r} must name columns in braces, e.g. '{{number}}-{{sys_mod_count}}'")
        return self

    @property
    def template_parts(self) -> list[tuple[str, str | None]]:
        """The template as (literal text, column or None) pairs."""
        return [(text, name) for text, name, _, _ in string.Formatter().parse(self.template)]

    @property
    def columns(self) -> list[str]:
        """The source columns this field reads."""
        if self.column is not None:
            return [self.column] + ([self.fallback] if self.fallback else [])
        if self.template is not None:
            return [name for _, name in self.template_parts if name]
        return [c for c in (self.hash or self.between or [self.date, self.time]) if c is not None]


def _columns_as_specs(value: object) -> object:
    """YAML shorthand: a field given as a plain string is that column."""
    if isinstance(value, dict):
        return {k: {"column": v} if isinstance(v, str) else v for k, v in value.items()}
    return value


class RatingSpec(_Model):
    """A rating item (Q1..Q22 or a dimension): its perception column and optionally its expectation column."""

    perception: str
    expectation: str | None = None


class Moment(_Model):
    """One of several moments in a source row: its name (the event id's suffix) and the fields it sets
    (at least its timestamp); the source's other fields apply to every moment."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    fields: dict[str, FieldSpec]

    _shorthand = field_validator("fields", mode="before")(lambda cls, v: _columns_as_specs(v))


def _known_fields(fields: dict, dataset: str) -> dict:
    allowed = set(EVENT_FIELDS if dataset == "events" else FEEDBACK_FIELDS) - {"attributes", "ratings", "identifiers"}
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise ValueError(f"not a field of {dataset}: {', '.join(unknown)} (fields: {', '.join(sorted(allowed))})")
    return fields


class Source(_Model):
    """A native export described for motpipe."""

    version: Literal[1] = SOURCE_VERSION
    name: str | None = None  # default: the source file's name without .yaml
    dataset: Literal["events", "feedback"]
    paths: list[str] = Field(default_factory=list)  # globs, local or any Beam filesystem
    format: Format
    timezone: str = "UTC"  # naive timestamps are read in it
    null_values: list[str] = Field(default_factory=lambda: [""])  # cells (stripped) that are null
    fields: dict[str, FieldSpec]
    moments: list[Moment] | None = None  # events: one event per moment with a timestamp
    ratings: dict[str, RatingSpec] | None = None  # feedback: item -> columns (a string: the perception column)
    attributes: Literal["rest", "none"] | list[str] = "rest"  # events: leftover columns (rest), none, or these
    identifiers: dict[str, FieldSpec] | None = None  # identifier type -> how its value is made (every moment)

    _shorthand = field_validator("fields", "identifiers", mode="before")(lambda cls, v: _columns_as_specs(v))

    @field_validator("identifiers")
    @classmethod
    def _identifier_types(cls, value: dict | None) -> dict | None:
        for name in value or {}:
            if not re.fullmatch(IDENTIFIER_TYPE_PATTERN, name) or name == "customer_id":
                raise ValueError(f"identifier type {name!r} must be a lower-case name ({IDENTIFIER_TYPE_PATTERN}) "
                                 "other than customer_id (the row's own field)")
        return value

    @field_validator("fields")
    @classmethod
    def _contract_fields(cls, value: dict, info: ValidationInfo) -> dict:
        return _known_fields(value, info.data.get("dataset", "events"))

    @field_validator("ratings", mode="before")
    @classmethod
    def _perception_shorthand(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: {"perception": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    _timezone = field_validator("timezone")(lambda cls, v: known_timezone(v))

    @model_validator(mode="after")
    def _fields(self) -> "Source":
        for moment in self.moments or ():
            _known_fields(moment.fields, self.dataset)
        if self.dataset == "feedback" and self.moments:
            raise ValueError("moments are for events sources")
        if self.dataset == "events" and self.ratings:
            raise ValueError("ratings are for feedback sources")
        for key in self.ratings or {}:
            if key not in SERVQUAL_ITEMS and key not in DIMENSIONS:
                raise ValueError(f"rating item {key!r} is neither Q1..Q22 nor a SERVQUAL dimension")
        time_field = TIME_FIELDS[self.dataset]
        for moment in self.moments or ():
            if time_field not in moment.fields:
                raise ValueError(f"moment {moment.name!r} has no {time_field}")
        if len({m.name for m in self.moments or ()}) != len(self.moments or ()):
            raise ValueError("moment names must differ")
        if not self.moments and time_field not in self.fields:
            raise ValueError(f"no {time_field} in fields")
        return self

    def columns(self) -> list[str]:
        """Every source column the mapping reads (not the leftover attributes)."""
        specs = [*self.fields.values(), *(s for m in self.moments or () for s in m.fields.values()),
                 *(self.identifiers or {}).values()]
        names = [c for spec in specs for c in spec.columns]
        names += [c for r in (self.ratings or {}).values() for c in (r.perception, r.expectation) if c]
        if isinstance(self.attributes, list):
            names += self.attributes
        return list(dict.fromkeys(names))

    def with_paths(self, paths: list[str]) -> "Source":
        return self.model_copy(update={"paths": paths})


# --- loading, with errors that name the file, the key and the line -----------------------------------------------

def _lines_of(node: yaml.Node, path: tuple = ()) -> dict[tuple, int]:
    """Key path -> 1-based line of every mapping key and sequence item in a composed YAML document."""
    lines = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            lines |= _lines_of(value, (*path, key.value))
            lines[(*path, key.value)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines |= _lines_of(item, (*path, i))
    return lines


def _located(location: tuple, lines: dict[tuple, int]) -> tuple[str, int]:
    """The error's key path (pydantic's union tags left out) and the line of its deepest part in the file."""
    path = tuple(part for part in location if not (isinstance(part, str) and part in ("csv", "jsonl", "parquet", "xes")))
    for depth in range(len(path), -1, -1):
        if path[:depth] in lines:
            return ".".join(map(str, path)) or "(top level)", lines[path[:depth]]
    return ".".join(map(str, path)), 1


def parse_source(text: str, origin: str) -> Source:
    """A source from YAML text; `origin` names it in errors (and gives its default name)."""
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise SourceError(f"{origin}{where}: not valid YAML: {getattr(err, 'problem', err)}") from None
    if not isinstance(data, dict):
        raise SourceError(f"{origin}:1: a source file is a YAML mapping (dataset, paths, format, fields)")
    data.setdefault("name", Path(origin).name.removesuffix(".yaml").removesuffix(".yml"))
    try:
        return Source.model_validate(data)
    except ValidationError as err:
        lines = _lines_of(node)
        messages, seen = [], set()
        for error in err.errors():
            key, line = _located(error["loc"], lines)
            message = f"{origin}:{line}: {key}: {error['msg'].removeprefix('Value error, ')}"
            if message not in seen:
                seen.add(message)
                messages.append(message)
        raise SourceError("\n".join(messages)) from None


def load_source(path: str, paths: list[str] | None = None) -> Source:
    """Read and validate a source file; `paths` (the CLI's `=GLOB`) replace the file's `paths`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise SourceError(f"cannot read source file {path}: {err.strerror}") from None
    source = parse_source(text, path)
    if paths:
        source = source.with_paths(paths)
    if not source.paths:
        raise SourceError(f"{path}: no `paths` in the file and none given (FILE.yaml=GLOB)")
    return source


def source_argument(argument: str) -> Source:
    """`FILE.yaml[=GLOB]` of `motpipe run --source` and `motpipe sources check`."""
    file, _, glob = argument.partition("=")
    return load_source(file, [glob] if glob else None)
