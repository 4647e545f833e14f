"""The Beam PTransforms on small inputs, with TestPipeline and assert_that/equal_to.

Transforms exchange (key, segment) pairs of spill files; `rows_of` reads the rows behind them.
"""
from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.config import RunConfig
from pipelines.ingest.contract import DEFAULT_CHANNELS
from pipelines.dedup import node_buckets, split_by_bucket, split_by_ids
from pipelines.identity.identifiers import customer_nodes, person_ids
from pipelines.ingest.reader import VALID_SCHEMAS
from pipelines.ingest.formats import file_parts
from pipelines.spill import SpillWriter, read_counts, read_spills, write_counts
from pipelines.transforms import (
    DEDUP,
    WRITE,
    AssignPersons,
    Deduplicate,
    LinkFeedback,
    ReadAndValidate,
    Route,
    SpillKeyed,
    StitchVisits,
    WritePartitions,
    finalise,
    split_by_date,
    with_customer_nodes,
)

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2026, 10, 1, 1, 0, tzinfo=timezone.utc)
CONFIG = RunConfig(touchpoints=["unused"], out="unused", buckets=3, run_id="r1", identity_key="test-identity-key")


@pytest.fixture
def work(tmp_path):
    return str(tmp_path / "work")


def rows_of(stage, *columns):
    """Spills addressed to `stage` -> (key, *columns) tuples of the rows in them."""
    def rows(spill):
        key, segment = spill
        return [(key, *(row[c] for c in columns)) for row in read_spills([segment]).to_pylist()]

    return f"{stage} rows of {', '.join(columns)}" >> (Route(stage) | beam.FlatMap(rows))


def event(event_id, minutes, customer="c1", visit_id=None, text=None, line_no=1, source="a.jsonl"):
    clean = {"event_id": event_id, "occurred_at": T0 + timedelta(minutes=minutes), "customer_id": customer,
             "visit_id": visit_id, "channel": "branch", "touchpoint": "greeting", "text": text}
    return {**clean, "source_file": source, "line_no": line_no}


def spills(root, key, *tables, batch_rows=None):
    """Spill files for `key`, one per table, as the upstream step would have written them."""
    written = []
    for index, table in enumerate(tables):
        writer = SpillWriter(root)
        writer.write(key, "-".join(map(str, (*key, index))), table, batch_rows)
        written += writer.close()
    return written


def events_table(*rows):
    return pa.Table.from_pylist(list(rows), schema=VALID_SCHEMAS["events"])


def test_spill_files_round_trip_and_counts_add_up(work):
    writer = SpillWriter(work)
    writer.write(("dedup", "events", 2), "f1", events_table(event("e1", 0)))
    writer.write(("dedup", "events", 2), "f1", events_table(event("e2", 1)))
    writer.write(("dedup", "events", 5), "f1", events_table())  # no rows: no file
    writer.write(("dedup", "events", 3), "f1", events_table(event("e3", 2)))
    written = dict(writer.close())
    assert list(written) == [("dedup", "events", 2), ("dedup", "events", 3)]
    path = written["dedup", "events", 2][0]
    assert path.endswith("/dedup/events/f1.arrow") and written["dedup", "events", 3][0] == path  # one file per stream
    assert written["dedup", "events", 2][1] == (0, 1) and written["dedup", "events", 3][1] == (2,)
    assert read_spills([written["dedup", "events", 2]]).column("event_id").to_pylist() == ["e1", "e2"]
    assert read_spills([written["dedup", "events", 3]]).column("event_id").to_pylist() == ["e3"]
    assert not list(Path(work).rglob("*.tmp"))
    assert read_spills([]) is None

    write_counts(work, "a", Counter({"x": 2, "y": 0}))
    write_counts(work, "b", Counter({"x": 3, "z": 1}))
    write_counts(work, "a", Counter({"x": 2}))  # a retried step replaces its own file
    assert read_counts(work) == {"x": 5, "z": 1}


@pytest.mark.parametrize("part_bytes", [2**20, 400], ids=["whole", "in parts"])
def test_read_and_validate_splits_valid_and_rejected_rows(work, part_bytes):
    path = str(FIXTURES / "events_a.jsonl")
    files = [("events", 0, path, part, None) for part in file_parts(path, part_bytes)]
    with test_pipeline.TestPipeline() as p:
        read = p | beam.Create(files) | ReadAndValidate(CONFIG, work, frozenset(DEFAULT_CHANNELS))
        assert_that(read | rows_of(DEDUP, "event_id", "line_no") | beam.Map(lambda r: r[1:]), equal_to(
            [("e01", 1), ("e02", 2), ("e03", 3), ("e04", 5), ("e05", 6), ("e06", 7), ("e07", 8)]), label="valid")
        quarantined = read | rows_of(WRITE, "line_no", "error_kind") | beam.Map(lambda r: (r[0][0], *r[1:]))
        assert_that(quarantined, equal_to(
            [(table, line, kind) for table in ("quarantine", "quarantine_raw") for line, kind in
             [(9, "bad_timestamp"), (10, "unknown_channel"), (11, "wrong_type"), (12, "unparseable_line"),
              (13, "unparseable_line")]]), label="rejected")
    size = Path(path).stat().st_size  # 13 lines, line 4 blank: each part counts its own bytes and lines
    assert read_counts(work) == {"events.input_rows": 12, "events.lines_accounted": 13, "events.lines_read": 13,
                                 "events.bytes_read": size}


def test_deduplicate_keeps_the_earliest_row_across_files(work):
    first = events_table(event("e1", 0, line_no=5), event("e2", 1, line_no=6))
    later = events_table(event("e1", 0, line_no=9), event("e2", 1, text="changed", line_no=10), event("e3", 2, line_no=11))
    with test_pipeline.TestPipeline() as p:
        result = p | beam.Create(spills(work, (DEDUP, "events", 0), later, first)) | Deduplicate(CONFIG, work)
        assert_that(result | rows_of("stitch", "event_id", "line_no") | beam.Map(lambda r: r[1:]),
                    equal_to([("e1", 5), ("e2", 6), ("e3", 11)]), label="unique")
        assert_that(result | rows_of(WRITE, "record_id", "line_no"),
                    equal_to([(("duplicates", "2026-10-01"), "e1", 9), (("quarantine", "2026-10-01"), "e2", 10),
                              (("quarantine_raw", "2026-10-01"), "e2", 10)]), label="duplicates and conflicts")


def test_stitch_visits_assign_persons_and_link_feedback(work):
    events = with_customer_nodes(events_table(
        event("e1", 0), event("e2", 30), event("e3", 61),  # c1: gap of 31 min splits e3 off
        event("e4", 0, customer="c2", visit_id="V1"), event("e5", 300, customer="c3", visit_id="V1"),
    ), CONFIG)
    feedback = with_customer_nodes(pa.Table.from_pylist(
        [{"feedback_id": "f1", "submitted_at": T0 + timedelta(minutes=40), "customer_id": "c1", "csat": 4},
         {"feedback_id": "f2", "submitted_at": T0 + timedelta(minutes=10), "customer_id": "c1", "csat": 4},
         {"feedback_id": "f3", "submitted_at": T0 + timedelta(days=1), "customer_id": "c2", "visit_id": "V1", "csat": 5}],
        schema=VALID_SCHEMAS["feedback"],
    ), CONFIG)
    person = dict(zip(["c1", "c2", "c3"], person_ids(customer_nodes(pa.array(["c1", "c2", "c3"]),
                                                                     CONFIG.identity_key_bytes)).to_pylist()))
    with test_pipeline.TestPipeline() as p:
        stitched = p | "events" >> beam.Create(spills(work, ("stitch", 0), events)) | StitchVisits(CONFIG, work)
        nodes = node_buckets(feedback.column("customer_node").to_numpy(), CONFIG.buckets)
        feedback_spills = [spill for bucket, part in split_by_ids(feedback, nodes)
                           for spill in spills(work, ("assign_feedback", bucket), part)]  # as Deduplicate spills them
        persons = p | "no linked customers" >> beam.Create([]).with_output_types(SpillKeyed)
        assigned = ({"events": stitched, "feedback": p | "feedback" >> beam.Create(feedback_spills), "persons": persons}
                    | AssignPersons(CONFIG, work))
        linked = {"visits": assigned, "feedback": assigned} | LinkFeedback(CONFIG, work)
        assert_that(assigned | rows_of(WRITE, "event_id", "position_in_visit", "moments_in_visit", "visit_id_source",
                                       "person_id"),
                    equal_to([(("events", "2026-10-01"), *row) for row in
                              [("e1", 1, 2, "gap", person["c1"]), ("e2", 2, 2, "gap", person["c1"]),
                               ("e3", 1, 1, "gap", person["c1"]), ("e4", 1, 2, "input", person["c2"]),
                               ("e5", 2, 2, "input", person["c3"])]]), label="events")
        # a visit whose customer changes midway (V1: c2 then c3) stays one visit, ending for both persons
        end = T0 + timedelta(minutes=300)
        assert_that(assigned | rows_of("link_visits", "person_id", "visit_id", "ended_at") | beam.Map(lambda r: r[1:]),
                    lambda got: _visit_ends_are(got, [(person["c1"], T0 + timedelta(minutes=30)),
                                                      (person["c1"], T0 + timedelta(minutes=61)),
                                                      (person["c2"], "V1", end), (person["c3"], "V1", end)]),
                    label="visits")
        assert_that(linked | rows_of(WRITE, "feedback_id", "link_method", "person_id") | beam.Map(lambda r: r[1:]),
                    equal_to([("f1", "latest_visit", person["c1"]), ("f2", "unlinked", person["c1"]),
                              ("f3", "visit_id", person["c2"])]), label="linked")
    assert read_counts(work) == {"events.visits": 3, "feedback.link.latest_visit": 1,
                                 "feedback.link.unlinked": 1, "feedback.link.visit_id": 1}


def _visit_ends_are(got, expected):
    """Stitched visit ids are hashes: compare them by prefix, the given ones exactly."""
    normalised = sorted(((c, v, e) if v == "V1" else (c, e) for c, v, e in got), key=str)
    assert normalised == sorted(expected, key=str) and all(v.startswith("v-") for _, v, _ in got if v != "V1"), got


def test_write_partitions_merges_sorted_spills_writes_the_window_and_counts_the_rest(tmp_path, work):
    config = CONFIG.model_copy(update={"start": datetime(2026, 10, 2).date(), "end": datetime(2026, 10, 2).date(),
                                       "lookback_days": 0, "row_group_rows": 2})

    def duplicates(*rows):  # (record_id, line_no, dt) -> finished duplicates rows, sorted as producers spill them
        table = pa.table({"dataset": ["events"] * len(rows), "record_id": [r[0] for r in rows],
                          "kept_source_file": ["a"] * len(rows), "kept_line_no": [1] * len(rows),
                          "source_file": ["b"] * len(rows), "line_no": [r[1] for r in rows], "dt": [r[2] for r in rows]})
        return finalise(table, "duplicates", config, "dt").drop_columns(["dt"]).sort_by("line_no")

    inputs = (spills(work, (WRITE, "duplicates", "2026-10-02"), duplicates(("d1", 1, "2026-10-02"), ("d3", 3, "2026-10-02"),
                                                                           ("d5", 5, "2026-10-02")),
                     duplicates(("d2", 2, "2026-10-02"), ("d4", 4, "2026-10-02")))
              + spills(work, (WRITE, "duplicates", "2026-10-01"), duplicates(("d0", 9, "2026-10-01"))))
    roots = {"public": str(tmp_path / "public"), "restricted": str(tmp_path / "restricted")}
    with test_pipeline.TestPipeline() as p:
        written = p | beam.Create(inputs) | WritePartitions(config, work, roots, {"duplicates": ["dataset"]})
        assert_that(written, equal_to([("duplicates", "2026-10-02")]))
    parquet = pq.ParquetFile(tmp_path / "public" / "duplicates" / "dt=2026-10-02" / "part-00000.parquet")
    assert parquet.read().column("record_id").to_pylist() == ["d1", "d2", "d3", "d4", "d5"]  # merged by line_no
    assert [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)] == [2, 2, 1]
    assert not (tmp_path / "public" / "duplicates" / "dt=2026-10-01").exists()
    assert read_counts(work) == {"duplicates.events": 5, "events.outside_window": 1}


def test_merge_sorted_interleaves_files_on_compound_keys(work):
    from pipelines import spill

    runs = [pa.table({"t": [1, 1, 2, 5], "id": ["a", "c", "a", "a"]}), pa.table({"t": [1, 1, 3], "id": ["b", "d", "a"]}),
            pa.table({"t": [0, 9], "id": ["z", "z"]})]
    segments = [segment for i, run in enumerate(runs) for _, segment in spills(work, ("m", i), run, batch_rows=2)]
    chunks = list(spill.merge_sorted(segments, ["t", "id"], chunk_rows=4))
    assert [chunk.num_rows for chunk in chunks] == [4, 4, 1]
    merged = pa.concat_tables(chunks)
    assert list(zip(merged.column("t").to_pylist(), merged.column("id").to_pylist())) == [
        (0, "z"), (1, "a"), (1, "b"), (1, "c"), (1, "d"), (2, "a"), (3, "a"), (5, "a"), (9, "z")]


def test_merge_sorted_breaks_ties_by_segment_then_row(work):
    from pipelines import spill

    runs = [pa.table({"k": [1, 1, 2], "source": ["b0", "b1", "b2"]}), pa.table({"k": [1, 2, 2], "source": ["a0", "a1", "a2"]})]
    segments = [segment for name, run in zip(("b", "a"), runs) for _, segment in spills(work, ("m", name), run, batch_rows=2)]
    merged = pa.concat_tables(spill.merge_sorted(segments, ["k"], chunk_rows=2))
    # segments sorted by path: the "a" spill first
    assert merged.column("source").to_pylist() == ["a0", "b0", "b1", "a1", "a2", "b2"]
    assert list(spill.merge_sorted([], ["k"])) == []


def test_segments_read_whole_are_one_batch_and_merged_ones_come_in_merge_batches(work):
    from pipelines import spill
    from pipelines.transforms import _SpillingDoFn

    rows = pa.table({"occurred_at": [datetime(2026, 10, 1, 9, tzinfo=timezone.utc)] * 2500,
                     "event_id": [f"e{i:04d}" for i in range(2500)], "dt": ["2026-10-01"] * 2500})
    writer = SpillWriter(work)
    writer.write((DEDUP, "events", 0), "bucketed", rows)
    step = _SpillingDoFn(RunConfig(touchpoints=["x"], out="y"), work)
    step.spill_rows(writer, "finished", rows, "events")
    segments = dict(writer.close())
    assert segments[(DEDUP, "events", 0)][1] == (0,)  # read whole by read_spills: the table's one chunk
    assert len(segments[(WRITE, "events", "2026-10-01")][1]) == 3  # 1,024 + 1,024 + 452 rows for merge_sorted
    assert spill.MERGE_BATCH_ROWS == 1024
    assert read_spills([segments[(DEDUP, "events", 0)]]).equals(rows)


EXITING_WORKER = """
import atexit, gc, sys
from pipelines.transforms import _GroupStep
from pipelines.config import RunConfig


class Node:
    def __del__(self):
        print("collected at exit")


class Step(_GroupStep):
    config = RunConfig(touchpoints=["unused"], out="unused")


gc.disable()  # nothing is collected before the exit
node = Node(); node.itself = node; del node  # cyclic garbage: only a collection frees it
if sys.argv[1] == "setup":
    before = atexit._ncallbacks()
    Step().setup(); Step().setup()
    print("registered", atexit._ncallbacks() - before)
"""


@pytest.mark.parametrize("setup, expected", [("none", "collected at exit"), ("setup", "registered 1")])
def test_a_worker_whose_steps_were_set_up_exits_without_walking_its_heap(setup, expected):
    """After a step's setup the objects left at exit are frozen (once per process, whatever the steps): the
    interpreter's last collection does not reach them, so the cyclic garbage's finaliser does not run."""
    done = subprocess.run([sys.executable, "-c", EXITING_WORKER, setup], capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent, check=True)
    assert done.stdout.strip() == expected
