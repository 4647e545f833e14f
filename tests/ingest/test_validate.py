"""Validation against input contract v1: clean values, every rejection kind and the first-failure order."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from pipelines.ingest.contract import DEFAULT_CHANNELS, ErrorKind
from pipelines.ingest.reader import record_json
from pipelines.ingest.formats import unflatten_csv_row
from pipelines.ingest.validate import (
    Rejection,
    ValueAndMeasures,
    parse_ratings,
    parse_timestamp,
    servqual_by_dimension,
    validate_event,
    validate_feedback,
)

UTC = timezone.utc
SHANGHAI = ZoneInfo("Asia/Shanghai")
CHANNELS = frozenset(DEFAULT_CHANNELS)
DROP = object()  # marks a field to remove from the base row

NO_SERVQUAL = {f"{d}_{m}": None for d in ("reliability", "responsiveness", "assurance", "empathy", "tangibles")
               for m in ("expectation", "perception", "gap")}


def event(**fields) -> dict:
    row = {"event_id": "e1", "occurred_at": "2026-10-01T09:00:00+08:00", "customer_id": "c1", "channel": "branch",
           "touchpoint": "greeting"}
    row.update(fields)
    return {k: v for k, v in row.items() if v is not DROP}


def feedback(**fields) -> dict:
    row = {"feedback_id": "f1", "submitted_at": "2026-10-01T12:00:00Z", "customer_id": "c1", "csat": 4}
    row.update(fields)
    return {k: v for k, v in row.items() if v is not DROP}


def check_event(record: dict, tz=UTC, channels=CHANNELS) -> dict:
    clean = validate_event(record, channels, tz)
    assert not isinstance(clean, Rejection), clean
    return clean


def check_feedback(record: dict, tz=UTC, channels=CHANNELS) -> dict:
    clean = validate_feedback(record, channels, tz)
    assert not isinstance(clean, Rejection), clean
    return clean


def rejection(validate, record: dict, tz=UTC, channels=CHANNELS) -> tuple[str, str | None]:
    outcome = validate(record, channels, tz)
    assert isinstance(outcome, Rejection), outcome
    assert isinstance(outcome.kind, ErrorKind)
    return outcome.kind.value, outcome.field


# --- clean rows ------------------------------------------------------------------------------


def test_minimal_event():
    assert check_event(event()) == {
        "event_id": "e1", "customer_id": "c1", "touchpoint": "greeting", "visit_id": None, "staff_id": None,
        "location_id": None, "outcome": None, "text": None, "duration_s": None, "wait_s": None, "attributes": None,
        "identifiers": None,
        "occurred_at": datetime(2026, 10, 1, 1, 0, tzinfo=UTC), "channel": "branch",
    }


def test_full_event_is_typed_trimmed_and_lower_cased():
    record = event(event_id=" e1 ", customer_id="c1 ", channel=" Branch ", touchpoint="greeting", visit_id="v1",
                   staff_id="s1", location_id="l1", duration_s=120, wait_s=30.5, text="  Hello, 您好 ",
                   outcome="Resolved", attributes={"b": "x", "a": 1, "中": "文"})
    assert check_event(record) == {
        "event_id": "e1", "customer_id": "c1", "touchpoint": "greeting", "visit_id": "v1", "staff_id": "s1",
        "location_id": "l1", "outcome": "resolved", "text": "  Hello, 您好 ", "duration_s": 120.0, "wait_s": 30.5,
        "attributes": '{"a": 1, "b": "x", "中": "文"}', "identifiers": None,
        "occurred_at": datetime(2026, 10, 1, 1, 0, tzinfo=UTC), "channel": "branch",
    }


def test_blank_optional_strings_become_null():
    clean = check_event(event(visit_id="  ", staff_id="", text="   ", outcome="", wait_s="", duration_s=" "))
    assert [clean[f] for f in ("visit_id", "staff_id", "text", "outcome", "wait_s", "duration_s")] == [None] * 6


@pytest.mark.parametrize("channel", ["BRANCH", "Branch", " branch\t", "branch"])
def test_channel_is_lower_cased(channel):
    assert check_event(event(channel=channel))["channel"] == "branch"


def test_playbook_channel_set_is_used():
    assert check_event(event(channel="Drive-Thru"), channels={"drive-thru"})["channel"] == "drive-thru"
    assert rejection(validate_event, event(channel="phone"), channels={"drive-thru"}) == ("unknown_channel", "channel")


def test_numeric_strings_are_accepted_as_from_csv():
    clean = check_event(event(wait_s="30", duration_s=" 12.5 "))
    assert (clean["wait_s"], clean["duration_s"]) == (30.0, 12.5)
    clean = check_feedback(feedback(csat="4", nps="10", ces="2.0"))
    assert (clean["csat"], clean["nps"], clean["ces"]) == (4, 10, 2)
    assert all(type(clean[f]) is int for f in ("csat", "nps", "ces"))


def test_full_feedback():
    record = feedback(feedback_id=" f1", visit_id="v9", touchpoint="checkout", channel="Web", csat=5, nps=9.0, ces="3",
                      comment=" 很好 ", ratings={"Q6": {"expectation": 6, "perception": 4}, "Q5": {"expectation": 7,
                                                 "perception": 5}, "empathy": 6})
    assert check_feedback(record) == {
        "feedback_id": "f1", "customer_id": "c1", "visit_id": "v9", "touchpoint": "checkout", "channel": "web",
        "comment": " 很好 ", "submitted_at": datetime(2026, 10, 1, 12, 0, tzinfo=UTC), "csat": 5, "nps": 9, "ces": 3,
        "ratings": [
            {"item": "Q5", "dimension": "reliability", "expectation": 7.0, "perception": 5.0},
            {"item": "Q6", "dimension": "reliability", "expectation": 6.0, "perception": 4.0},
            {"item": "empathy", "dimension": "empathy", "expectation": None, "perception": 6.0},
        ],
        **NO_SERVQUAL, "identifiers": None,
        "reliability_expectation": 6.5, "reliability_perception": 4.5, "reliability_gap": -2.0,
        "empathy_perception": 6.0,
    }


def test_feedback_without_optional_fields():
    assert check_feedback(feedback()) == {
        "feedback_id": "f1", "customer_id": "c1", "visit_id": None, "touchpoint": None, "channel": None,
        "comment": None, "submitted_at": datetime(2026, 10, 1, 12, 0, tzinfo=UTC), "csat": 4, "nps": None,
        "ces": None, "ratings": [], **NO_SERVQUAL, "identifiers": None,
    }


@pytest.mark.parametrize(
    "signal",
    [{"csat": 1}, {"nps": 0}, {"ces": 7}, {"comment": "ok"}, {"ratings": {"Q1": 5}}, {"nps": "0"}],
    ids=["csat", "nps-zero", "ces", "comment", "ratings", "nps-zero-text"],
)
def test_one_signal_is_enough(signal):
    check_feedback(feedback(**{"csat": DROP, **signal}))


# --- timestamps ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tz", "expected"),
    [
        ("2026-10-01T09:00:00+08:00", UTC, datetime(2026, 10, 1, 1, 0)),
        ("2026-10-01T09:00:00-05:30", SHANGHAI, datetime(2026, 10, 1, 14, 30)),
        ("2026-10-01T09:00:00Z", SHANGHAI, datetime(2026, 10, 1, 9, 0)),
        ("2026-10-01T09:00:00.123456Z", UTC, datetime(2026, 10, 1, 9, 0, 0, 123456)),
        ("2026-10-01T09:00:00.5+01:00", UTC, datetime(2026, 10, 1, 8, 0, 0, 500000)),
        ("2026-10-01 09:00:00Z", UTC, datetime(2026, 10, 1, 9, 0)),
        ("2026-10-01 09:00", UTC, datetime(2026, 10, 1, 9, 0)),
        ("2026-10-01T09:00:00", SHANGHAI, datetime(2026, 10, 1, 1, 0)),
        ("2026-10-01 07:30", SHANGHAI, datetime(2026, 9, 30, 23, 30)),  # naive local morning = previous UTC day
        ("2026-07-01T12:00:00", ZoneInfo("America/New_York"), datetime(2026, 7, 1, 16, 0)),  # EDT
        ("2026-01-15T12:00:00", ZoneInfo("America/New_York"), datetime(2026, 1, 15, 17, 0)),  # EST
        ("  2026-10-01T09:00:00Z\n", UTC, datetime(2026, 10, 1, 9, 0)),
        ("2026-10-01", UTC, datetime(2026, 10, 1, 0, 0)),
    ],
)
def test_parse_timestamp_to_utc(text, tz, expected):
    parsed = parse_timestamp(text, tz)
    assert parsed == expected.replace(tzinfo=UTC)
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    ["yesterday", "2026-13-01T10:00:00", "2026-02-30 10:00", "2026/10/01 10:00", "01.10.2026 10:00", "20261001T100000",
     "2026-10-01T25:00:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"],
)
def test_parse_timestamp_rejects(text):
    with pytest.raises(ValueError):
        parse_timestamp(text, UTC)


def test_naive_event_time_read_in_default_zone():
    assert check_event(event(occurred_at="2026-10-01 08:15:30.25"), tz=SHANGHAI)["occurred_at"] == datetime(
        2026, 10, 1, 0, 15, 30, 250000, tzinfo=UTC)
    assert check_feedback(feedback(submitted_at="2026-10-02T00:30:00"), tz=SHANGHAI)["submitted_at"] == datetime(
        2026, 10, 1, 16, 30, tzinfo=UTC)


# --- rejections ------------------------------------------------------------------------------

EVENT_REQUIRED = ["event_id", "occurred_at", "customer_id", "channel", "touchpoint"]
FEEDBACK_REQUIRED = ["feedback_id", "submitted_at", "customer_id"]
EMPTY_VALUES = [DROP, None, "", "   "]
EMPTY_IDS = ["absent", "null", "empty", "blank"]


@pytest.mark.parametrize("value", EMPTY_VALUES, ids=EMPTY_IDS)
@pytest.mark.parametrize("field", EVENT_REQUIRED)
def test_event_missing_required_field(field, value):
    outcome = validate_event(event(**{field: value}), CHANNELS, UTC)
    assert outcome == Rejection(ErrorKind.MISSING_REQUIRED_FIELD, field, f"required field {field} is missing or empty")


@pytest.mark.parametrize("value", EMPTY_VALUES, ids=EMPTY_IDS)
@pytest.mark.parametrize("field", FEEDBACK_REQUIRED)
def test_feedback_missing_required_field(field, value):
    assert rejection(validate_feedback, feedback(**{field: value})) == ("missing_required_field", field)


@pytest.mark.parametrize("value", [5, 1.5, True, ["x"], {"a": 1}], ids=["int", "float", "bool", "list", "object"])
@pytest.mark.parametrize(
    "field", ["event_id", "customer_id", "channel", "touchpoint", "visit_id", "staff_id", "location_id", "outcome", "text"]
)
def test_event_string_field_wrong_type(field, value):
    assert rejection(validate_event, event(**{field: value})) == ("wrong_type", field)


@pytest.mark.parametrize("value", [5, True, ["x"]], ids=["int", "bool", "list"])
@pytest.mark.parametrize("field", ["feedback_id", "customer_id", "visit_id", "touchpoint", "channel", "comment"])
def test_feedback_string_field_wrong_type(field, value):
    assert rejection(validate_feedback, feedback(**{field: value})) == ("wrong_type", field)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"wait_s": "abc"}, "wait_s"),
        ({"wait_s": True}, "wait_s"),
        ({"wait_s": False}, "wait_s"),
        ({"wait_s": [1]}, "wait_s"),
        ({"wait_s": {"s": 1}}, "wait_s"),
        ({"duration_s": "12 min"}, "duration_s"),
        ({"attributes": "not an object"}, "attributes"),
        ({"attributes": [1, 2]}, "attributes"),
        ({"attributes": 5}, "attributes"),
    ],
)
def test_event_wrong_type(fields, field):
    assert rejection(validate_event, event(**fields)) == ("wrong_type", field)


def test_wrong_type_messages():
    assert validate_event(event(wait_s="abc"), CHANNELS, UTC).message == "wait_s must be a number, got 'abc'"
    assert validate_event(event(wait_s=True), CHANNELS, UTC).message == "wait_s must be a number, got bool True"
    assert validate_event(event(customer_id=7), CHANNELS, UTC).message == "customer_id must be a string, got int 7"
    assert validate_event(event(attributes=[1]), CHANNELS, UTC).message == "attributes must be an object, got list"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"csat": "abc"}, "csat"),
        ({"csat": True}, "csat"),
        ({"nps": [9]}, "nps"),
        ({"ces": {"v": 2}}, "ces"),
        ({"ratings": "Q5=6"}, "ratings"),
        ({"ratings": [6, 7]}, "ratings"),
        ({"ratings": 6}, "ratings"),
        ({"ratings": {"Q5": "good"}}, "ratings.Q5.perception"),
        ({"ratings": {"Q5": True}}, "ratings.Q5.perception"),
        ({"ratings": {"Q5": {"expectation": "high", "perception": 5}}}, "ratings.Q5.expectation"),
        ({"ratings": {"Q5": {"expectation": 6}}}, "ratings.Q5"),
        ({"ratings": {"Q5": {"perception": 5, "importance": 3}}}, "ratings.Q5"),
    ],
)
def test_feedback_wrong_type(fields, field):
    assert rejection(validate_feedback, feedback(**fields)) == ("wrong_type", field)


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01T10:00:00", "2026-02-30 10:00", "10:00", "2026-10-01X"])
def test_bad_timestamp(value):
    outcome = validate_event(event(occurred_at=value), CHANNELS, UTC)
    assert outcome == Rejection(ErrorKind.BAD_TIMESTAMP, "occurred_at", f"occurred_at {value!r} is not an ISO 8601 timestamp")
    assert rejection(validate_feedback, feedback(submitted_at=value)) == ("bad_timestamp", "submitted_at")


def test_timestamp_outside_the_representable_range_is_bad_timestamp():
    assert rejection(validate_event, event(occurred_at="0001-01-01T00:00:00+01:00")) == ("bad_timestamp", "occurred_at")
    assert rejection(validate_event, event(occurred_at="0001-01-01T05:00:00"), tz=SHANGHAI) == ("bad_timestamp", "occurred_at")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"wait_s": -1}, "wait_s"),
        ({"wait_s": "-0.5"}, "wait_s"),
        ({"duration_s": -0.001}, "duration_s"),
        ({"wait_s": float("nan")}, "wait_s"),
        ({"duration_s": float("inf")}, "duration_s"),
        ({"wait_s": "inf"}, "wait_s"),
        ({"wait_s": 10**400}, "wait_s"),  # beyond the float range
    ],
)
def test_event_out_of_range(fields, field):
    assert rejection(validate_event, event(**fields)) == ("out_of_range", field)


def test_zero_wait_and_duration_are_in_range():
    clean = check_event(event(wait_s=0, duration_s="0"))
    assert (clean["wait_s"], clean["duration_s"]) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"csat": 0}, "csat"),
        ({"csat": 6}, "csat"),
        ({"csat": 4.5}, "csat"),
        ({"csat": "4.5"}, "csat"),
        ({"nps": 11}, "nps"),
        ({"nps": -1}, "nps"),
        ({"ces": 8}, "ces"),
        ({"ces": 0}, "ces"),
        ({"ratings": {"Q5": 0}}, "ratings.Q5.perception"),
        ({"ratings": {"Q5": 8}}, "ratings.Q5.perception"),
        ({"ratings": {"empathy": 7.5}}, "ratings.empathy.perception"),
        ({"ratings": {"Q5": {"expectation": 8, "perception": 5}}}, "ratings.Q5.expectation"),
        ({"ratings": {"Q5": {"expectation": 7, "perception": 0}}}, "ratings.Q5.perception"),
        ({"ratings": {"Q23": 5}}, "ratings.Q23"),
        ({"ratings": {"Q0": 5}}, "ratings.Q0"),
        ({"ratings": {"speed": 5}}, "ratings.speed"),
    ],
)
def test_feedback_out_of_range(fields, field):
    assert rejection(validate_feedback, feedback(**fields)) == ("out_of_range", field)


def test_out_of_range_messages():
    assert validate_feedback(feedback(csat=6), CHANNELS, UTC).message == "csat must be an integer in 1..5, got 6"
    assert validate_feedback(feedback(csat=4.5), CHANNELS, UTC).message == "csat must be an integer in 1..5, got 4.5"
    assert validate_event(event(wait_s=-1), CHANNELS, UTC).message == "wait_s must be a number in 0..inf, got -1"
    assert validate_feedback(feedback(ratings={"Q23": 5}), CHANNELS, UTC).message == (
        "rating key 'Q23' is neither a SERVQUAL dimension nor Q1..Q22")


@pytest.mark.parametrize(("low", "high", "field"), [(1, 5, "csat"), (0, 10, "nps"), (1, 7, "ces")])
def test_score_bounds_are_inclusive(low, high, field):
    assert check_feedback(feedback(**{"csat": DROP, field: low}))[field] == low
    assert check_feedback(feedback(**{"csat": DROP, field: high}))[field] == high


@pytest.mark.parametrize("channel", ["carrier-pigeon", "Fax", "branch office"])
def test_unknown_channel(channel):
    outcome = validate_event(event(channel=channel), CHANNELS, UTC)
    assert (outcome.kind, outcome.field) == (ErrorKind.UNKNOWN_CHANNEL, "channel")
    assert outcome.message.startswith(f"channel {channel.lower()!r} is not one of airport, app, branch, chat, ")
    assert rejection(validate_feedback, feedback(channel=channel)) == ("unknown_channel", "channel")


def test_unknown_outcome():
    outcome = validate_event(event(outcome="Lost"), CHANNELS, UTC)
    assert outcome == Rejection(ErrorKind.UNKNOWN_OUTCOME, "outcome",
                                "outcome 'lost' is not one of resolved, unresolved, escalated, abandoned")


@pytest.mark.parametrize("outcome", ["resolved", "UNRESOLVED", " Escalated ", "abandoned"])
def test_known_outcomes(outcome):
    assert check_event(event(outcome=outcome))["outcome"] == outcome.strip().lower()


@pytest.mark.parametrize(
    "fields",
    [{}, {"comment": "   "}, {"comment": ""}, {"ratings": {}}, {"csat": None, "nps": "", "ces": " "},
     {"touchpoint": "checkout", "channel": "web", "visit_id": "v1"}],
    ids=["nothing", "blank-comment", "empty-comment", "empty-ratings", "null-scores", "context-only"],
)
def test_no_feedback_signal(fields):
    outcome = validate_feedback(feedback(**{"csat": DROP, **fields}), CHANNELS, UTC)
    assert outcome == Rejection(ErrorKind.NO_FEEDBACK_SIGNAL, None, "feedback has none of csat, nps, ces, ratings, comment")


# --- first failure wins ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"event_id": DROP, "customer_id": DROP}, ("missing_required_field", "event_id")),
        ({"touchpoint": "", "occurred_at": None}, ("missing_required_field", "occurred_at")),
        ({"event_id": 5, "customer_id": DROP}, ("missing_required_field", "customer_id")),
        ({"customer_id": 5, "touchpoint": 6}, ("wrong_type", "customer_id")),
        ({"event_id": 5, "occurred_at": "yesterday"}, ("wrong_type", "event_id")),
        ({"wait_s": "abc", "occurred_at": "yesterday"}, ("wrong_type", "wait_s")),
        ({"attributes": [1], "occurred_at": "yesterday"}, ("wrong_type", "attributes")),
        ({"occurred_at": "yesterday", "wait_s": -1}, ("bad_timestamp", "occurred_at")),
        ({"occurred_at": "yesterday", "channel": "fax"}, ("bad_timestamp", "occurred_at")),
        ({"duration_s": -1, "wait_s": -1}, ("out_of_range", "duration_s")),
        ({"wait_s": -1, "channel": "fax"}, ("out_of_range", "wait_s")),
        ({"channel": "fax", "outcome": "lost"}, ("unknown_channel", "channel")),
    ],
)
def test_event_first_failure_is_reported(fields, expected):
    assert rejection(validate_event, event(**fields)) == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"feedback_id": None, "csat": "x"}, ("missing_required_field", "feedback_id")),
        ({"comment": 5, "csat": 9}, ("wrong_type", "comment")),
        ({"csat": "x", "submitted_at": "yesterday"}, ("wrong_type", "csat")),
        ({"channel": 5, "submitted_at": "yesterday"}, ("wrong_type", "channel")),
        ({"ratings": [], "csat": 9}, ("wrong_type", "ratings")),
        ({"submitted_at": "yesterday", "csat": 9}, ("bad_timestamp", "submitted_at")),
        ({"csat": 9, "channel": "fax"}, ("out_of_range", "csat")),
        ({"csat": 9, "nps": 11}, ("out_of_range", "csat")),
        ({"ratings": {"Q23": 5}, "channel": "fax"}, ("out_of_range", "ratings.Q23")),
        ({"csat": DROP, "channel": "fax"}, ("unknown_channel", "channel")),
    ],
)
def test_feedback_first_failure_is_reported(fields, expected):
    assert rejection(validate_feedback, feedback(**fields)) == expected


# --- SERVQUAL ratings ------------------------------------------------------------------------


def test_parse_ratings_items_sorted_by_key():
    assert parse_ratings({"Q6": {"perception": "4"}, "q7": 3, "empathy": {"expectation": None, "perception": 6},
                          "Q10": {"expectation": "7", "perception": "6"}, "Q5": {"expectation": 7, "perception": 5}}) == [
        {"item": "Q10", "dimension": "responsiveness", "expectation": 7.0, "perception": 6.0},
        {"item": "Q5", "dimension": "reliability", "expectation": 7.0, "perception": 5.0},
        {"item": "Q6", "dimension": "reliability", "expectation": None, "perception": 4.0},
        {"item": "empathy", "dimension": "empathy", "expectation": None, "perception": 6.0},
        {"item": "q7", "dimension": "reliability", "expectation": None, "perception": 3.0},
    ]


@pytest.mark.parametrize(
    ("item", "dimension"),
    [("Q1", "tangibles"), ("Q4", "tangibles"), ("Q5", "reliability"), ("Q9", "reliability"), ("Q10", "responsiveness"),
     ("Q13", "responsiveness"), ("Q14", "assurance"), ("Q17", "assurance"), ("Q18", "empathy"), ("Q22", "empathy"),
     ("tangibles", "tangibles"), ("assurance", "assurance"), ("Empathy", "empathy"), ("q7", "reliability")],
)
def test_rating_item_dimension(item, dimension):
    assert parse_ratings({item: 4})[0]["dimension"] == dimension


@pytest.mark.parametrize("columns", [("rating.Q5", "rating.Q5.perception"), ("rating.Q5.expectation", "rating.Q5")])
def test_csv_rating_value_and_measures_is_wrong_type(columns):
    """A CSV row with both `rating.Q5` and `rating.Q5.<measure>` filled (either order): a wrongly typed ratings
    object, reported before the items (an unknown key sorted first does not hide it)."""
    fields = unflatten_csv_row({"feedback_id": "f1", "submitted_at": "2026-10-01T12:00:00Z", "customer_id": "c1",
                                "rating.Q23": "5", columns[0]: "6", columns[1]: "7"})
    assert isinstance(fields["ratings"]["Q5"], ValueAndMeasures)
    assert validate_feedback(fields, CHANNELS, UTC) == Rejection(
        ErrorKind.WRONG_TYPE, "ratings", "ratings.Q5: both a value and measures")


def test_rating_without_perception_is_missing():
    outcome = validate_feedback(feedback(ratings={"Q5": {"expectation": 6, "perception": None}}), CHANNELS, UTC)
    assert (outcome.kind, outcome.field) == (ErrorKind.MISSING_REQUIRED_FIELD, "ratings.Q5.perception")


def test_servqual_two_items_of_one_dimension_are_averaged():
    columns = servqual_by_dimension(parse_ratings({"Q5": {"expectation": 7, "perception": 5},
                                                   "Q6": {"expectation": 6, "perception": 6}}))
    assert columns == {**NO_SERVQUAL, "reliability_expectation": 6.5, "reliability_perception": 5.5,
                       "reliability_gap": -1.0}


def test_servqual_bare_number_is_perception_only():
    columns = servqual_by_dimension(parse_ratings({"empathy": 6, "Q1": 3, "Q2": 4}))
    assert columns == {**NO_SERVQUAL, "empathy_perception": 6.0, "tangibles_perception": 3.5}


def test_servqual_all_dimensions():
    columns = servqual_by_dimension(parse_ratings({
        "Q1": {"expectation": 5, "perception": 6},  # tangibles +1
        "Q5": {"expectation": 7, "perception": 4},  # reliability -3
        "Q10": {"expectation": 6, "perception": 6},  # responsiveness 0
        "Q14": {"expectation": 6.5, "perception": 5},  # assurance -1.5
        "Q18": {"expectation": 4, "perception": 7},  # empathy +3
    }))
    assert columns == {
        "reliability_expectation": 7.0, "reliability_perception": 4.0, "reliability_gap": -3.0,
        "responsiveness_expectation": 6.0, "responsiveness_perception": 6.0, "responsiveness_gap": 0.0,
        "assurance_expectation": 6.5, "assurance_perception": 5.0, "assurance_gap": -1.5,
        "empathy_expectation": 4.0, "empathy_perception": 7.0, "empathy_gap": 3.0,
        "tangibles_expectation": 5.0, "tangibles_perception": 6.0, "tangibles_gap": 1.0,
    }


def test_servqual_no_items():
    assert servqual_by_dimension([]) == NO_SERVQUAL


# --- record_json: a validated row written back as contract JSON ------------------------------


def test_record_json_round_trips_an_event():
    clean = check_event(event(event_id="e9", occurred_at="2026-10-01 08:00:00.5", channel="Phone", visit_id="v1",
                              duration_s="90", wait_s=0, text="您好 hello", outcome="Escalated",
                              attributes={"z": [1, 2], "a": {"b": None}}), tz=SHANGHAI)
    row = {**clean, "source_file": "a.jsonl", "line_no": 3}
    text = record_json(row)
    assert json.loads(text) == {
        "event_id": "e9", "customer_id": "c1", "touchpoint": "greeting", "visit_id": "v1", "outcome": "escalated",
        "text": "您好 hello", "duration_s": 90.0, "wait_s": 0.0, "attributes": {"a": {"b": None}, "z": [1, 2]},
        "occurred_at": "2026-10-01T00:00:00.500000+00:00", "channel": "phone",
    }
    assert "您好" in text  # not \\u-escaped
    assert validate_event(json.loads(text), CHANNELS, ZoneInfo("America/New_York")) == clean


def test_record_json_round_trips_feedback():
    clean = check_feedback(feedback(submitted_at="2026-10-01T20:00:00+08:00", nps=0, ces=2, comment="slow",
                                    ratings={"Q5": {"expectation": 7, "perception": 5}, "empathy": 6}))
    text = record_json({**clean, "source_file": "f.csv", "line_no": 2})
    assert json.loads(text) == {
        "feedback_id": "f1", "customer_id": "c1", "comment": "slow", "submitted_at": "2026-10-01T12:00:00+00:00",
        "csat": 4, "nps": 0, "ces": 2,
        "ratings": {"Q5": {"expectation": 7.0, "perception": 5.0}, "empathy": {"expectation": None, "perception": 6.0}},
    }
    assert validate_feedback(json.loads(text), CHANNELS, UTC) == clean


def test_record_json_without_ratings_omits_them():
    clean = check_feedback(feedback())
    assert json.loads(record_json(clean)) == {"feedback_id": "f1", "customer_id": "c1",
                                              "submitted_at": "2026-10-01T12:00:00+00:00", "csat": 4}
    assert validate_feedback(json.loads(record_json(clean)), CHANNELS, UTC) == clean


def test_utc_offset_and_naive_zone_agree():
    a = check_event(event(occurred_at="2026-10-01T09:00:00+08:00"))
    b = check_event(event(occurred_at="2026-10-01T09:00:00"), tz=SHANGHAI)
    c = check_event(event(occurred_at="2026-10-01T01:00:00Z"), tz=ZoneInfo("Europe/Berlin"))
    assert a == b == c
    assert a["occurred_at"].utcoffset() == timedelta(0)


# --- identifiers (issue 18) --------------------------------------------------------------------------------------
def test_identifiers_are_kept_as_sorted_json_with_types_lower_cased_and_blank_values_dropped():
    clean = check_event(event(identifiers={"Phone": " +86 137 0629 0800 ", "device_id": "d-7781", "email": " ",
                                           "account_id": None}))
    assert clean["identifiers"] == '{"device_id": "d-7781", "phone": "+86 137 0629 0800"}'
    assert check_feedback(feedback(identifiers={"email": "a@b.cn"}))["identifiers"] == '{"email": "a@b.cn"}'
    assert check_event(event(identifiers={"phone": ""}))["identifiers"] is None


@pytest.mark.parametrize("identifiers, kind, field", [
    ("d-7781", "wrong_type", "identifiers"),
    ({"phone": 13706290800}, "wrong_type", "identifiers.phone"),
    ({"phone": ["a"]}, "wrong_type", "identifiers.phone"),
    ({"customer_id": "c9"}, "out_of_range", "identifiers.customer_id"),
    ({"mobile phone": "1"}, "out_of_range", "identifiers.mobile phone"),
    ({"phone": "1", "PHONE": "2"}, "out_of_range", "identifiers.PHONE"),
])
def test_malformed_identifiers_are_rejected(identifiers, kind, field):
    assert rejection(validate_event, event(identifiers=identifiers)) == (kind, field)
    assert rejection(validate_feedback, feedback(identifiers=identifiers)) == (kind, field)


def test_a_bad_timestamp_comes_before_an_identifier_type_out_of_range():
    assert rejection(validate_event, event(identifiers={"customer_id": "x"}, occurred_at="yesterday")) == (
        "bad_timestamp", "occurred_at")
