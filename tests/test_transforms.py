"""The Beam PTransforms on small inputs, with TestPipeline and assert_that/equal_to."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.config import RunConfig
from pipelines.contract import DEFAULT_CHANNELS
from pipelines.ingest import VALID_SCHEMAS
from pipelines.transforms import Deduplicate, LinkFeedback, ReadAndValidate, StitchVisits

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2026, 10, 1, 1, 0, tzinfo=timezone.utc)
CONFIG = RunConfig(touchpoints=["unused"], out="unused", buckets=3)


def rows_of(*columns):
    """A Map turning each Arrow batch into tuples of the given columns (FlatMap over its rows)."""
    return f"rows of {', '.join(columns)}" >> beam.FlatMap(
        lambda table: [tuple(row[c] for c in columns) for row in table.to_pylist()]
    )


def event(event_id, minutes, customer="c1", visit_id=None, text=None, line_no=1, source="a.jsonl"):
    clean = {"event_id": event_id, "occurred_at": T0 + timedelta(minutes=minutes), "customer_id": customer,
             "visit_id": visit_id, "channel": "branch", "touchpoint": "greeting", "text": text}
    return {**clean, "source_file": source, "line_no": line_no}


def events_table(*rows):
    return pa.Table.from_pylist(list(rows), schema=VALID_SCHEMAS["events"])


def test_read_and_validate_splits_valid_and_rejected_rows():
    with test_pipeline.TestPipeline() as p:
        read = p | ReadAndValidate("events", [str(FIXTURES / "events_a.jsonl")], CONFIG, frozenset(DEFAULT_CHANNELS))
        assert_that(read.valid | rows_of("event_id", "line_no"), equal_to(
            [("e01", 1), ("e02", 2), ("e03", 3), ("e04", 5), ("e05", 6), ("e06", 7), ("e07", 8)]), label="valid")
        assert_that(read.rejected | rows_of("line_no", "error_kind"), equal_to(
            [(9, "bad_timestamp"), (10, "unknown_channel"), (11, "wrong_type"), (12, "unparseable_line"),
             (13, "unparseable_line")]), label="rejected")


def test_deduplicate_keeps_the_earliest_row_across_batches():
    first = events_table(event("e1", 0, line_no=5), event("e2", 1, line_no=6))
    later = events_table(event("e1", 0, line_no=9), event("e2", 1, text="changed", line_no=10), event("e3", 2, line_no=11))
    with test_pipeline.TestPipeline() as p:
        result = p | beam.Create([later, first]) | Deduplicate("events", CONFIG)
        assert_that(result.unique | rows_of("event_id", "line_no"), equal_to([("e1", 5), ("e2", 6), ("e3", 11)]), label="unique")
        assert_that(result.duplicates | rows_of("record_id", "kept_line_no", "line_no"), equal_to([("e1", 5, 9)]), label="dups")
        assert_that(result.conflicts | rows_of("record_id", "error_kind", "line_no"),
                    equal_to([("e2", "conflicting_duplicate", 10)]), label="conflicts")


def test_stitch_visits_and_link_feedback():
    events = events_table(
        event("e1", 0), event("e2", 30), event("e3", 61),  # c1: gap of 31 min splits e3 off
        event("e4", 0, customer="c2", visit_id="V1"), event("e5", 300, customer="c3", visit_id="V1"),
    )
    feedback = pa.Table.from_pylist(
        [{"feedback_id": "f1", "submitted_at": T0 + timedelta(minutes=40), "customer_id": "c1", "csat": 4},
         {"feedback_id": "f2", "submitted_at": T0 + timedelta(minutes=10), "customer_id": "c1", "csat": 4},
         {"feedback_id": "f3", "submitted_at": T0 + timedelta(days=1), "customer_id": "c2", "visit_id": "V1", "csat": 5}],
        schema=VALID_SCHEMAS["feedback"],
    )
    with test_pipeline.TestPipeline() as p:
        stitched = p | "events" >> beam.Create([events]) | StitchVisits(CONFIG)
        linked = {"visits": stitched.visits, "feedback": p | "feedback" >> beam.Create([feedback])} | LinkFeedback(CONFIG)
        assert_that(stitched.events | rows_of("event_id", "position_in_visit", "moments_in_visit", "visit_id_source"),
                    equal_to([("e1", 1, 2, "gap"), ("e2", 2, 2, "gap"), ("e3", 1, 1, "gap"),
                              ("e4", 1, 2, "input"), ("e5", 2, 2, "input")]), label="events")
        # a visit whose customer changes midway (V1: c2 then c3) stays one visit, ending for both customers
        end = T0 + timedelta(minutes=300)
        assert_that(stitched.visits | rows_of("customer_id", "visit_id", "ended_at"),
                    lambda got: _visit_ends_are(got, [("c1", T0 + timedelta(minutes=30)), ("c1", T0 + timedelta(minutes=61)),
                                                      ("c2", "V1", end), ("c3", "V1", end)]), label="visits")
        assert_that(linked | rows_of("feedback_id", "link_method"),
                    equal_to([("f1", "latest_visit"), ("f2", "unlinked"), ("f3", "visit_id")]), label="linked")


def _visit_ends_are(got, expected):
    """Stitched visit ids are hashes: compare them by prefix, the given ones exactly."""
    normalised = sorted(((c, v, e) if v == "V1" else (c, e) for c, v, e in got), key=str)
    assert normalised == sorted(expected, key=str) and all(v.startswith("v-") for _, v, _ in got if v != "V1"), got


def test_arrow_tables_pickle_only_the_rows_in_view():
    import pickle

    from pipelines import arrow_pickle  # noqa: F401  (imported by transforms too)

    big = pa.table({"text": ["x" * 1000] * 10_000})
    one_row = big.slice(5, 1)
    restored = pickle.loads(pickle.dumps(one_row))
    assert restored.equals(one_row)
    assert len(pickle.dumps(one_row)) < 5_000  # pyarrow's own pickling would write the parent's 10 MB
