"""A full pipeline run on the hand-written fixture in tests/fixtures, checked row by row in DuckDB."""
from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from pipelines.config import RunConfig
from pipelines.ingest.formats import WHOLE_FILE, file_checksum, file_parts
from pipelines.pipeline import MIN_PART_BYTES, auto_buckets, in_turns, part_size, prepare, run
from pipelines.runs import read_runs
from schemas.tables import SCHEMA_VERSION, TABLES

FIXTURES = Path(__file__).parent / "fixtures"

def fixture_config(out: Path, **settings) -> RunConfig:
    """The fixtures' run into `out`; one identity key, so outputs compare (docs/identity.md rule 3)."""
    return RunConfig(
        touchpoints=[str(FIXTURES / "events_*")], feedback=[str(FIXTURES / "feedback.jsonl")], out=str(out),
        timezone="Asia/Shanghai", run_id="test-run", buckets=4, identity_key="test-identity-key", **settings,
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return out, run(fixture_config(out))


def rows(out: Path, table: str, sql: str = "select * from t") -> list[tuple]:
    con = duckdb.connect()
    con.execute(f"create view t as select * from read_parquet('{out}/{table}/*/*.parquet', hive_partitioning = true)")
    return con.execute(sql).fetchall()


def test_counts_reconcile_exactly(finished):
    _, summary = finished
    events, feedback = summary["events"], summary["feedback"]
    assert (events["input_rows"], events["output_rows"], events["duplicate_rows"], events["quarantine_rows"]) == (20, 9, 1, 10)
    assert events["quarantine_by_kind"] == {
        "bad_timestamp": 1, "conflicting_duplicate": 1, "missing_required_field": 1, "out_of_range": 1,
        "unknown_channel": 1, "unknown_outcome": 1, "unparseable_line": 3, "wrong_type": 1,
    }
    assert (feedback["input_rows"], feedback["output_rows"], feedback["duplicate_rows"], feedback["quarantine_rows"]) == (8, 5, 1, 2)
    assert feedback["quarantine_by_kind"] == {"no_feedback_signal": 1, "out_of_range": 1}
    assert events["reconciled"] and feedback["reconciled"]
    assert events["visits"] == 5
    assert events["unmapped_touchpoint_rows"] == 1
    assert feedback["link"] == {"latest_visit": 1, "unlinked": 2, "visit_id": 1, "visit_id_unmatched": 1}


def test_summary_json_is_written(finished):
    out, summary = finished
    written = json.loads((out / "_runs" / "test-run.json").read_text())
    assert written["events"] == summary["events"]
    assert [Path(f["path"]).name for f in written["inputs"]["events"]] == ["events_a.jsonl", "events_b.csv"]


def test_visits_are_stitched(finished):
    out, _ = finished
    got = rows(out, "events", "select event_id, visit_id_source, position_in_visit, moments_in_visit, is_first_moment, "
                             "is_last_moment, cast(dt as varchar) from t order by event_id")
    assert [r[1:] for r in got] == [
        ("gap", 1, 3, True, False, "2026-10-01"),  # e01 09:00
        ("gap", 2, 3, False, False, "2026-10-01"),  # e02 09:20
        ("gap", 3, 3, False, True, "2026-10-01"),  # e03 09:50: exactly 30 min later stays in the visit
        ("input", 1, 2, True, False, "2026-10-01"),  # e04 23:50 local, V-77
        ("input", 2, 2, False, True, "2026-10-02"),  # e05 00:10 next day, same visit
        ("gap", 1, 1, True, True, "2026-10-01"),  # e06: 31 minutes before e07 -> own visit
        ("gap", 1, 1, True, True, "2026-10-01"),  # e07
        ("gap", 1, 2, True, False, "2026-10-02"),  # e08 (naive CSV time read in Asia/Shanghai)
        ("gap", 2, 2, False, True, "2026-10-02"),  # e10
    ]
    visit_of = {r[0]: r for r in rows(out, "events", "select event_id, visit_id from t")}
    assert visit_of["e01"][1] == visit_of["e03"][1] != visit_of["e08"][1]
    assert visit_of["e04"][1] == visit_of["e05"][1] == "V-77"


def test_no_pii_reaches_analyst_tables(finished):
    out, summary = finished
    text = {r[0]: r[1:] for r in rows(out, "events", "select event_id, text, attributes, pii_masked from t")}
    assert text["e02"] == ("排队太久了，请拨打[PHONE]联系我", None, 1)
    assert text["e04"] == ("The staff were rude, email me at [EMAIL]", None, 1)
    assert text["e05"] == (None, '{"agent_phone": "[PHONE]", "queue": "A023"}', 1)
    comments = dict(rows(out, "feedback", "select feedback_id, comment from t"))
    assert comments["f4"] == "call me on [PHONE]"
    assert summary["events"]["pii_masked"] == 3 and summary["feedback"]["pii_masked"] == 1
    everything = " ".join(
        str(r) for table in ("events", "feedback", "quarantine", "duplicates") for r in rows(out, table)
    )
    for secret in ("13812345678", "ann.lee@example.com", "13912345678", "7946 0958"):
        assert secret not in everything


def test_quarantine_keeps_lineage_and_restricted_raw_copy(finished):
    out, _ = finished
    got = rows(out, "quarantine", "select dataset, record_id, error_kind, error_field, regexp_replace(source_file, '.*/', ''), "
                                  "line_no from t order by dataset, source_file, line_no")
    assert got == [
        ("events", "bad1", "bad_timestamp", "occurred_at", "events_a.jsonl", 9),
        ("events", "bad2", "unknown_channel", "channel", "events_a.jsonl", 10),
        ("events", "bad3", "wrong_type", "customer_id", "events_a.jsonl", 11),
        ("events", None, "unparseable_line", None, "events_a.jsonl", 12),
        ("events", None, "unparseable_line", None, "events_a.jsonl", 13),
        ("events", "e09", "out_of_range", "wait_s", "events_b.csv", 3),
        ("events", "e02", "conflicting_duplicate", "event_id", "events_b.csv", 7),
        ("events", "e11", "unknown_outcome", "outcome", "events_b.csv", 8),
        ("events", "e12", "missing_required_field", "customer_id", "events_b.csv", 9),
        ("events", None, "unparseable_line", None, "events_b.csv", 10),
        ("feedback", "f6", "no_feedback_signal", None, "feedback.jsonl", 6),
        ("feedback", "f7", "out_of_range", "csat", "feedback.jsonl", 7),
    ]
    (message,) = rows(out, "quarantine", "select error_message from t where error_kind = 'conflicting_duplicate'")[0]
    assert message.endswith("events_a.jsonl:2; this row differs in text")
    raw = rows(out.joinpath("_restricted"), "quarantine_raw", "select line_no, raw_record from t where record_id = 'bad1'")
    assert raw == [(9, '{"event_id": "bad1", "occurred_at": "yesterday", "customer_id": "c9", "channel": "branch", "touchpoint": "greeting"}')]


def test_duplicates_name_the_kept_row(finished):
    out, _ = finished
    got = rows(out, "duplicates", "select dataset, record_id, regexp_replace(kept_source_file, '.*/', ''), kept_line_no, line_no from t order by 1")
    assert got == [("events", "e01", "events_a.jsonl", 1, 6), ("feedback", "f2", "feedback.jsonl", 2, 8)]


def test_feedback_links_and_servqual(finished):
    out, _ = finished
    got = rows(out, "feedback", "select feedback_id, visit_id is not null, link_method, reliability_expectation, "
                                "reliability_perception, reliability_gap, empathy_perception, empathy_gap from t order by 1")
    assert got == [
        ("f1", True, "latest_visit", 6.5, 4.5, -2.0, 6.0, None),
        ("f2", True, "visit_id", None, None, None, None, None),
        ("f3", False, "unlinked", None, None, None, None, None),
        ("f4", False, "unlinked", None, None, None, None, None),
        ("f5", True, "visit_id_unmatched", None, None, None, None, None),
    ]
    (f1_visit,) = rows(out, "feedback", "select visit_id from t where feedback_id = 'f1'")[0]
    (e01_visit,) = rows(out, "events", "select visit_id from t where event_id = 'e01'")[0]
    assert f1_visit == e01_visit


def test_tags_come_from_the_playbook_and_text(finished):
    out, _ = finished
    got = {r[0]: r[1:] for r in rows(out, "events", "select event_id, mot_step, mot_step_name, mot_step_source, playbook from t")}
    assert got["e01"] == (1, "set_the_tone", "touchpoint", "bank_branch@1.0.0")
    assert got["e05"] == (5, "follow_up", "touchpoint", "bank_branch@1.0.0")
    assert got["e06"] == (5, "follow_up", "text", "bank_branch@1.0.0")  # unmapped hallway_chat, "we'll call you back"
    steps = dict(rows(out, "events", "select event_id, mot_steps from t where event_id in ('e01', 'e06')"))
    assert steps == {"e01": [1], "e06": [5]}  # every step performed; mot_step is the primary one
    (tags,) = rows(out, "events", "select pzb_tags from t where event_id = 'e02'")[0]
    assert {"dimension": "responsiveness", "polarity": "negative"} in tags


def test_every_table_has_its_versioned_schema(finished):
    out, _ = finished
    for table in ("events", "feedback", "quarantine", "duplicates"):
        path = next((out / table).glob("dt=*/part-00000.parquet"))
        schema = pq.read_schema(path)
        assert schema.remove_metadata().equals(TABLES[table].remove_metadata()), table
        assert schema.metadata[b"motpipe.schema_version"] == SCHEMA_VERSION.encode()
    assert rows(out, "events", "select distinct run_id, schema_version from t") == [("test-run", SCHEMA_VERSION)]


def test_rerun_changes_nothing_and_is_recorded(finished):
    out, summary = finished
    tables = ("events", "feedback", "quarantine", "duplicates", "_restricted")
    before = {p: p.read_bytes() for t in tables for p in (out / t).rglob("*.parquet")}
    again = run(fixture_config(out))
    assert {p: p.read_bytes() for t in tables for p in (out / t).rglob("*.parquet")} == before
    assert again["published"] == {"replaced": 0, "unchanged": len(before), "removed": 0}
    assert again["events"] == summary["events"]
    assert not list((out / "_staging").iterdir()) and not (out / "_lock.json").exists()
    history = read_runs(str(out)).to_pylist()
    assert [(r["run_id"], r["status"], r["error"]) for r in history] == [("test-run", "succeeded", None)] * 2
    assert json.loads(history[1]["counts"])["events"]["output_rows"] == 9
    assert [Path(f["path"]).name for f in history[1]["input_files"]] == ["events_a.jsonl", "events_b.csv", "feedback.jsonl"]
    assert all(f["checksum"].startswith("sha256:") for f in history[1]["input_files"])


def test_a_jsonl_file_read_in_parts_gives_the_same_tables(finished, tmp_path, published_rows):
    out, summary = finished
    config = fixture_config(tmp_path, part_bytes=400)
    assert len(file_parts(str(FIXTURES / "events_a.jsonl"), 400)) == 5  # 1,876 bytes
    parts = run(config)
    assert published_rows(tmp_path) == published_rows(out)
    assert (parts["events"], parts["feedback"]) == (summary["events"], summary["feedback"])


def test_read_steps_are_dealt_out_so_each_worker_gets_a_like_share():
    """Worker i mod n takes step i: the largest first, every other round reversed."""
    sizes = [75, 75, 75, 44, 42]  # the parts of a big file and a smaller file: in this order, 192 against 119
    order = in_turns(list(range(5)), sizes, 2)
    assert order == [0, 1, 3, 2, 4]
    assert [sum(sizes[i] for i in order[worker::2]) for worker in (0, 1)] == [161, 150]
    assert in_turns(["a", "b", "c"], [1, 2, 3], 1) == ["c", "b", "a"]
    assert in_turns([], [], 2) == []


def test_part_size_gives_each_worker_several_parts_of_a_small_input():
    assert part_size(300 << 20, 64 << 20, 2) == (300 << 20) // 8  # 4 parts per worker
    assert part_size(300 << 20, 64 << 20, 1) == 64 << 20  # never above the configured size
    assert part_size(50 << 20, 64 << 20, 2) == MIN_PART_BYTES  # nor below 16 MiB
    assert part_size(50 << 20, 400, 2) == 400  # unless the configured size is


def test_prepare_gives_each_input_its_checksum_and_parts(tmp_path):
    """Checksums are taken in threads while the parts are found: each file gets its own of both."""
    config, inputs = prepare(fixture_config(tmp_path, part_bytes=400))
    files = {Path(f.path).name: f for fs in inputs.values() for f in fs}
    assert sorted(files) == ["events_a.jsonl", "events_b.csv", "feedback.jsonl"]
    for f in files.values():
        assert f.checksum == file_checksum(f.path) and f.checksum.startswith("sha256:")
        assert list(f.parts) == file_parts(f.path, 400)
    assert len(files["events_a.jsonl"].parts) == 5 and files["events_b.csv"].parts == (WHOLE_FILE,)  # CSV: whole


@pytest.mark.parametrize(("size_mib", "buckets"), [(0, 16), (256, 16), (257, 17), (3000, 55), (9000, 95),
                                                   (2**20, 1024), (2**21, 1024)])
def test_buckets_grow_with_the_square_root_of_the_input(size_mib, buckets):
    assert auto_buckets(size_mib * 2**20) == buckets
