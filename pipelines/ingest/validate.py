"""Validation of input rows against contract v1: each row becomes a clean record or a Rejection.

Checks run in a fixed order and the first failure is the row's reason: unparseable line ->
missing required field -> wrong type -> bad timestamp -> out-of-range value -> unknown channel ->
unknown outcome -> (feedback) no score or comment.

    >>> validate_event({"event_id": "e1", "occurred_at": "2026-10-01T09:00:00+08:00",
    ...     "customer_id": "c1", "channel": "Branch", "touchpoint": "greeting"}, {"branch"}, UTC)["channel"]
    'branch'
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo

from pipelines.ingest.contract import (
    DIMENSIONS,
    EVENT_REQUIRED,
    FEEDBACK_REQUIRED,
    FEEDBACK_SIGNALS,
    IDENTIFIER_TYPE_PATTERN,
    OUTCOMES,
    RATING_RANGE,
    SCORE_RANGES,
    SERVQUAL_ITEMS,
    ErrorKind,
)

UTC = timezone.utc


@dataclass(frozen=True)
class Rejection:
    kind: ErrorKind
    field: str | None
    message: str


class _Reject(Exception):
    def __init__(self, kind: ErrorKind, field: str | None, message: str):
        super().__init__(message)
        self.rejection = Rejection(kind, field, message)


def parse_timestamp(value: str, default_tz: tzinfo) -> datetime:
    """ISO 8601 / RFC 3339 text to an aware UTC datetime; a naive value is read in `default_tz`.

    >>> parse_timestamp("2026-10-01T09:00:00+08:00", UTC).isoformat()
    '2026-10-01T01:00:00+00:00'
    """
    text = value.strip()
    if len(text) < 10 or not text[:4].isdigit() or text[4] != "-":
        raise ValueError(f"{value!r} is not an ISO 8601 timestamp")
    parsed = datetime.fromisoformat(text)  # Python 3.11 reads 'Z', offsets, fractions, ' ' or 'T'
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=default_tz)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 lies before year 1 in UTC
        raise ValueError(f"{value!r} is out of the representable range") from None


def _present(value: object) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _string(record: dict, field: str) -> str | None:
    value = record.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Reject(ErrorKind.WRONG_TYPE, field, f"{field} must be a string, got {type(value).__name__} {value!r}")
    return value.strip() or None


def _number(record: dict, field: str) -> float | None:
    value = record.get(field)
    if not _present(value):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _Reject(ErrorKind.WRONG_TYPE, field, f"{field} must be a number, got {type(value).__name__} {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise _Reject(ErrorKind.WRONG_TYPE, field, f"{field} must be a number, got {value!r}") from None
    except OverflowError:  # an integer beyond the float range
        number = math.inf
    if not math.isfinite(number):
        raise _Reject(ErrorKind.OUT_OF_RANGE, field, f"{field} must be finite, got {value!r}")
    return number


def _object(record: dict, field: str) -> dict | None:
    value = record.get(field)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Reject(ErrorKind.WRONG_TYPE, field, f"{field} must be an object, got {type(value).__name__}")
    return value


# Timestamps a row may carry: one day inside Python's years 1..9999 at both ends, so that the local date (the `dt`
# partition) stays a 4-digit year in every time zone (9999-12-31T23:59:59Z is 10000-01-01 in Amsterdam).
MIN_TIMESTAMP = datetime(1, 1, 2, tzinfo=UTC)
MAX_TIMESTAMP = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)


def _identifier_values(record: dict) -> dict[str, str] | None:
    """The `identifiers` object's entries with string values (blank ones left out); wrong_type otherwise."""
    identifiers = _object(record, "identifiers")
    if identifiers is None:
        return None
    values = {}
    for key, value in identifiers.items():
        if value is None:
            continue
        if not isinstance(value, str):
            raise _Reject(ErrorKind.WRONG_TYPE, f"identifiers.{key}",
                          f"identifier {key} must be a string, got {type(value).__name__} {value!r}")
        if value.strip():
            values[key] = value.strip()
    return values


def _identifiers(values: dict[str, str] | None) -> str | None:
    """The identifiers as JSON text (types lower-cased, sorted), None when there are none; out_of_range for a type
    that is not a lower-case name, `customer_id` (the row's own field) or a type given twice."""
    if not values:
        return None
    types: dict[str, str] = {}
    for key, value in values.items():
        name = key.strip().lower()
        if not re.fullmatch(IDENTIFIER_TYPE_PATTERN, name) or name == "customer_id":
            raise _Reject(ErrorKind.OUT_OF_RANGE, f"identifiers.{key}", f"identifier type {key!r} must be a lower-case "
                          f"name ({IDENTIFIER_TYPE_PATTERN}) other than customer_id")
        if name in types:
            raise _Reject(ErrorKind.OUT_OF_RANGE, f"identifiers.{key}", f"identifier type {name!r} is given twice")
        types[name] = value
    return json.dumps(types, ensure_ascii=False, sort_keys=True)


def normalised_identifiers(value: object) -> tuple[bool, str | None]:
    """Whether validation accepts `value` as a row's decoded `identifiers` and, if so, the text the clean row
    stores (None when it names none)."""
    try:
        return True, _identifiers(_identifier_values({"identifiers": value}))
    except _Reject:
        return False, None


def _timestamp(record: dict, field: str, default_tz: tzinfo) -> datetime:
    try:
        value = parse_timestamp(record[field], default_tz)
    except ValueError:
        raise _Reject(ErrorKind.BAD_TIMESTAMP, field, f"{field} {record[field]!r} is not an ISO 8601 timestamp") from None
    if not MIN_TIMESTAMP <= value <= MAX_TIMESTAMP:
        raise _Reject(ErrorKind.OUT_OF_RANGE, field, f"{field} {record[field]!r} is outside "
                      f"{MIN_TIMESTAMP.date()} .. {MAX_TIMESTAMP.date()}T23:59:59Z, the supported range")
    return value


def _require(record: dict, fields: tuple[str, ...]) -> None:
    for field in fields:
        if not _present(record.get(field)):
            raise _Reject(ErrorKind.MISSING_REQUIRED_FIELD, field, f"required field {field} is missing or empty")
    for field in fields:
        _string(record, field)


def _in_range(field: str, value: float | None, low: float, high: float, integer: bool = False) -> None:
    if value is None:
        return
    if not low <= value <= high or (integer and value != int(value)):
        kind = "an integer" if integer else "a number"
        raise _Reject(ErrorKind.OUT_OF_RANGE, field, f"{field} must be {kind} in {low:g}..{high:g}, got {value:g}")


def _channel(record: dict, channels: frozenset[str] | set[str], required: bool) -> str | None:
    channel = _string(record, "channel")
    if channel is None and not required:
        return None
    channel = channel.lower()
    if channel not in channels:
        raise _Reject(ErrorKind.UNKNOWN_CHANNEL, "channel", f"channel {channel!r} is not one of {', '.join(sorted(channels))}")
    return channel


def _event(record: dict, channels, default_tz: tzinfo) -> dict:
    _require(record, EVENT_REQUIRED)
    clean = {field: _string(record, field) for field in ("event_id", "customer_id", "touchpoint", "visit_id", "staff_id", "location_id", "outcome")}
    text = record.get("text")
    if text is not None and not isinstance(text, str):
        raise _Reject(ErrorKind.WRONG_TYPE, "text", f"text must be a string, got {type(text).__name__}")
    clean["text"] = text if _present(text) else None
    clean["duration_s"] = _number(record, "duration_s")
    clean["wait_s"] = _number(record, "wait_s")
    attributes = _object(record, "attributes")
    clean["attributes"] = json.dumps(attributes, ensure_ascii=False, sort_keys=True) if attributes is not None else None
    identifiers = _identifier_values(record)
    clean["occurred_at"] = _timestamp(record, "occurred_at", default_tz)
    for field in ("duration_s", "wait_s"):
        _in_range(field, clean[field], 0, math.inf)
    clean["identifiers"] = _identifiers(identifiers)
    clean["channel"] = _channel(record, channels, required=True)
    if clean["outcome"] is not None:
        clean["outcome"] = clean["outcome"].lower()
        if clean["outcome"] not in OUTCOMES:
            raise _Reject(ErrorKind.UNKNOWN_OUTCOME, "outcome", f"outcome {clean['outcome']!r} is not one of {', '.join(OUTCOMES)}")
    return clean


def _rating_value(key: str, measure: str, value: object) -> float:
    number = _number({f"ratings.{key}.{measure}": value}, f"ratings.{key}.{measure}")
    _in_range(f"ratings.{key}.{measure}", number, *RATING_RANGE)
    return number


@dataclass(frozen=True)
class ValueAndMeasures:
    """A CSV rating key filled both as a plain `rating.<key>` cell and as `rating.<key>.<measure>` cells
    (`formats.unflatten_csv_row`): the ratings object is wrongly typed and `parse_ratings` rejects it."""

    value: str
    measures: dict


def parse_ratings(ratings: dict) -> list[dict]:
    """SERVQUAL ratings object to items `{item, dimension, expectation, perception}`, sorted by item.

    >>> parse_ratings({"Q5": {"expectation": 7, "perception": 5}, "empathy": 6})[0]
    {'item': 'Q5', 'dimension': 'reliability', 'expectation': 7.0, 'perception': 5.0}
    """
    for key in sorted(ratings):  # the object's shape before its items
        if isinstance(ratings[key], ValueAndMeasures):
            raise _Reject(ErrorKind.WRONG_TYPE, "ratings", f"ratings.{key}: both a value and measures")
    items = []
    for key in sorted(ratings):
        dimension = key.lower() if key.lower() in DIMENSIONS else SERVQUAL_ITEMS.get(key.upper())
        if dimension is None:
            raise _Reject(ErrorKind.OUT_OF_RANGE, f"ratings.{key}", f"rating key {key!r} is neither a SERVQUAL dimension nor Q1..Q22")
        value = ratings[key]
        if isinstance(value, dict):
            unknown = set(value) - {"expectation", "perception"}
            if unknown or "perception" not in value:
                raise _Reject(ErrorKind.WRONG_TYPE, f"ratings.{key}", f"rating {key} must have a perception and optionally an expectation, got keys {sorted(value)}")
            expectation = _rating_value(key, "expectation", value["expectation"]) if _present(value.get("expectation")) else None
            perception = _rating_value(key, "perception", value["perception"])
        else:
            expectation, perception = None, _rating_value(key, "perception", value)
        if perception is None:
            raise _Reject(ErrorKind.MISSING_REQUIRED_FIELD, f"ratings.{key}.perception", f"rating {key} has no perception")
        items.append({"item": key, "dimension": dimension, "expectation": expectation, "perception": perception})
    return items


def servqual_by_dimension(items: list[dict]) -> dict[str, float | None]:
    """Per dimension: mean expectation, mean perception and gap = perception - expectation (None when unrated)."""
    columns: dict[str, float | None] = {}
    for dimension in DIMENSIONS:
        rated = [item for item in items if item["dimension"] == dimension]
        perceptions = [item["perception"] for item in rated]
        expectations = [item["expectation"] for item in rated if item["expectation"] is not None]
        perception = sum(perceptions) / len(perceptions) if perceptions else None
        expectation = sum(expectations) / len(expectations) if expectations else None
        columns[f"{dimension}_expectation"] = expectation
        columns[f"{dimension}_perception"] = perception
        columns[f"{dimension}_gap"] = perception - expectation if perception is not None and expectation is not None else None
    return columns


def _feedback(record: dict, channels, default_tz: tzinfo) -> dict:
    _require(record, FEEDBACK_REQUIRED)
    clean = {field: _string(record, field) for field in ("feedback_id", "customer_id", "visit_id", "touchpoint", "channel")}
    comment = record.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise _Reject(ErrorKind.WRONG_TYPE, "comment", f"comment must be a string, got {type(comment).__name__}")
    clean["comment"] = comment if _present(comment) else None
    scores = {field: _number(record, field) for field in SCORE_RANGES}
    ratings = _object(record, "ratings")
    identifiers = _identifier_values(record)
    clean["submitted_at"] = _timestamp(record, "submitted_at", default_tz)
    clean["identifiers"] = _identifiers(identifiers)
    for field, (low, high) in SCORE_RANGES.items():
        _in_range(field, scores[field], low, high, integer=True)
        clean[field] = int(scores[field]) if scores[field] is not None else None
    clean["ratings"] = parse_ratings(ratings) if ratings else []
    clean.update(servqual_by_dimension(clean["ratings"]))
    clean["channel"] = _channel(record, channels, required=False)
    signals = {**clean, "ratings": clean["ratings"] or None}
    if not any(signals[field] is not None for field in FEEDBACK_SIGNALS):
        raise _Reject(ErrorKind.NO_FEEDBACK_SIGNAL, None, "feedback has none of csat, nps, ces, ratings, comment")
    return clean


def validate_event(record: dict, channels, default_tz: tzinfo) -> dict | Rejection:
    """A clean event (contract fields, typed; `occurred_at` in UTC) or the Rejection of the first failed check."""
    try:
        return _event(record, channels, default_tz)
    except _Reject as err:
        return err.rejection


def validate_feedback(record: dict, channels, default_tz: tzinfo) -> dict | Rejection:
    """A clean feedback row (scores, SERVQUAL items and per-dimension columns) or its Rejection."""
    try:
        return _feedback(record, channels, default_tz)
    except _Reject as err:
        return err.rejection


VALIDATORS = {"events": validate_event, "feedback": validate_feedback}
ID_FIELDS = {"events": "event_id", "feedback": "feedback_id"}
TIME_FIELDS = {"events": "occurred_at", "feedback": "submitted_at"}
