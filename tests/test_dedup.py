"""Hash bucketing and deduplication by record id (earliest (source_file, line_no) wins)."""
from __future__ import annotations

import json
import random
from collections import Counter
from datetime import timezone

import pyarrow as pa
import pytest

from pipelines.ingest.contract import DEFAULT_CHANNELS
from pipelines.dedup import bucket_of, deduplicate, key_buckets, key_hashes, run_starts, split_by_bucket
from pipelines.ingest.reader import REJECTED_SCHEMA, VALID_SCHEMAS
from pipelines.ingest.validate import Rejection, validate_event, validate_feedback

UTC = timezone.utc
CHANNELS = frozenset(DEFAULT_CHANNELS)


def event_row(event_id: str, source_file: str, line_no: int, **fields) -> dict:
    """A validated event row as read_validated produces it."""
    record = {"event_id": event_id, "occurred_at": "2026-10-01T09:00:00+08:00", "customer_id": "c1",
              "channel": "branch", "touchpoint": "greeting", **fields}
    clean = validate_event(record, CHANNELS, UTC)
    assert not isinstance(clean, Rejection), clean
    return {**clean, "source_file": source_file, "line_no": line_no}


def feedback_row(feedback_id: str, source_file: str, line_no: int, **fields) -> dict:
    record = {"feedback_id": feedback_id, "submitted_at": "2026-10-01T12:00:00Z", "customer_id": "c1", "csat": 4,
              **fields}
    clean = validate_feedback(record, CHANNELS, UTC)
    assert not isinstance(clean, Rejection), clean
    return {**clean, "source_file": source_file, "line_no": line_no}


def events(*rows: dict) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=VALID_SCHEMAS["events"])


def locations(table: pa.Table) -> list[tuple]:
    return list(zip(*(table.column(c).to_pylist() for c in ("event_id", "source_file", "line_no"))))


# --- bucketing -------------------------------------------------------------------------------


def fnv1a_fmix64(key: str) -> int:
    """Reference of key_hashes, one byte at a time: 64-bit FNV-1a, then murmur3's fmix64."""
    mask = 2**64 - 1
    h = 0xCBF29CE484222325
    for byte in key.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & mask
    for multiplier in (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53):
        h ^= h >> 33
        h = (h * multiplier) & mask
    return h ^ (h >> 33)


def test_bucket_of_is_pinned():
    assert bucket_of("e1", 16) == 7
    assert bucket_of("evt-0001", 16) == 11
    assert bucket_of("客户-1", 1000) == 93
    assert bucket_of("c1", 4096) == 131
    assert bucket_of("anything", 1) == 0
    assert bucket_of("e1", 16) == fnv1a_fmix64("e1") % 16


def test_key_hashes_pinned_and_equal_to_the_reference():
    assert key_hashes(pa.array(["e1", "", "客户-1"])).tolist() == [
        5776248991027667079, 17280346270528514342, 10746022790790526093]
    shuffler = random.Random(11)
    keys = ["".join(shuffler.choice("ab客-09") for _ in range(shuffler.randint(0, 40))) for _ in range(500)]
    assert key_hashes(pa.array(keys)).tolist() == [fnv1a_fmix64(k) for k in keys]
    # slices, chunked arrays, large_string and dictionary-free input give the same hashes
    assert key_hashes(pa.array(keys).slice(17, 50)).tolist() == [fnv1a_fmix64(k) for k in keys[17:67]]
    assert key_hashes(pa.chunked_array([keys[:3], keys[3:]])).tolist() == [fnv1a_fmix64(k) for k in keys]
    assert key_hashes(pa.array(keys, pa.large_string())).tolist() == [fnv1a_fmix64(k) for k in keys]


def test_key_hashes_nulls_and_empty():
    assert key_hashes(pa.array([None, "", "x", None], pa.string())).tolist() == [
        fnv1a_fmix64(""), fnv1a_fmix64(""), fnv1a_fmix64("x"), fnv1a_fmix64("")]
    assert key_hashes(pa.array([], pa.string())).tolist() == []
    assert key_hashes(pa.array(["", ""], pa.string())).tolist() == [fnv1a_fmix64("")] * 2


def test_key_buckets_equal_keys_equal_buckets():
    keys = pa.array([f"k{i % 7}" for i in range(70)])
    buckets = key_buckets(keys, 13)
    for i in range(70):
        assert buckets[i] == buckets[i % 7] == bucket_of(f"k{i % 7}", 13)


@pytest.mark.parametrize("buckets", [1, 2, 7, 16, 4096])
def test_bucket_of_in_range(buckets):
    seen = {bucket_of(f"key-{i}", buckets) for i in range(2000)}
    assert seen <= set(range(buckets))
    if buckets <= 16:
        assert seen == set(range(buckets))  # 2000 keys reach every small bucket


def key_table(keys: list[str | None], customers: list[str] | None = None) -> pa.Table:
    customers = customers or [f"c{i % 3}" for i in range(len(keys))]
    return pa.table({"n": list(range(len(keys))), "visit_id": pa.array(keys, pa.string()), "customer_id": customers})


def test_split_by_bucket_partitions_all_rows():
    table = key_table([f"v{i % 13}" for i in range(60)])
    parts = split_by_bucket(table, "visit_id", 5)
    assert [b for b, _ in parts] == sorted({bucket_of(f"v{i}", 5) for i in range(13)})
    assert sum(part.num_rows for _, part in parts) == 60
    assert sorted(n for _, part in parts for n in part.column("n").to_pylist()) == list(range(60))
    for bucket, part in parts:
        assert part.schema == table.schema
        assert {bucket_of(k, 5) for k in part.column("visit_id").to_pylist()} == {bucket}
        assert part.column("n").to_pylist() == sorted(part.column("n").to_pylist())  # input order kept


def test_split_by_bucket_single_column_list_equals_name():
    table = key_table([f"v{i}" for i in range(20)])
    by_name = split_by_bucket(table, "visit_id", 4)
    by_list = split_by_bucket(table, ["visit_id"], 4)
    assert [(b, t.to_pylist()) for b, t in by_name] == [(b, t.to_pylist()) for b, t in by_list]


def test_split_by_bucket_coalesce_visit_then_customer():
    table = key_table(["v1", None, "v2", None, "v1"], customers=["c1", "c1", "c2", "c3", "c9"])
    parts = dict(split_by_bucket(table, ["visit_id", "customer_id"], 1000))
    expected: dict[int, list[int]] = {}
    for n, key in enumerate(["v1", "c1", "v2", "c3", "v1"]):
        expected.setdefault(bucket_of(key, 1000), []).append(n)
    assert {b: t.column("n").to_pylist() for b, t in parts.items()} == expected


def test_split_by_bucket_single_bucket_and_empty():
    table = key_table(["a", "b", "c"])
    assert [(b, t.to_pylist()) for b, t in split_by_bucket(table, "visit_id", 1)] == [(0, table.to_pylist())]
    assert split_by_bucket(table.slice(0, 0), "visit_id", 8) == []


def test_split_by_bucket_buckets_are_those_of_the_coalesced_keys():
    table = key_table([None, "v1", None, "v2"] * 10, customers=[f"c{i}" for i in range(40)])
    keys = [v if v is not None else c for v, c in zip(table.column("visit_id").to_pylist(),
                                                    table.column("customer_id").to_pylist())]
    buckets = key_buckets(pa.array(keys), 7)
    for bucket, part in split_by_bucket(table, ["visit_id", "customer_id"], 7):
        assert part.column("n").to_pylist() == [n for n in range(40) if buckets[n] == bucket]


def test_run_starts():
    assert run_starts(pa.array(["a", "a", "b", "b", "b", "a"])).tolist() == [True, False, True, False, False, True]
    assert run_starts(pa.array([None, None, "a", None], pa.string())).tolist() == [True, False, True, True]
    assert run_starts(pa.chunked_array([["x", "x"], ["x", "y"], ["y"]])).tolist() == [True, False, False, True, False]
    assert run_starts(pa.array([], pa.string())).tolist() == []
    assert run_starts(pa.array([3])).tolist() == [True]


# --- deduplicate -----------------------------------------------------------------------------


def test_no_duplicates():
    table = events(event_row("e2", "a.jsonl", 2), event_row("e1", "a.jsonl", 1))
    result = deduplicate(table, "events", "UTC")
    assert locations(result.unique) == [("e1", "a.jsonl", 1), ("e2", "a.jsonl", 2)]
    assert result.unique.schema == VALID_SCHEMAS["events"]
    assert result.duplicates.num_rows == 0
    assert result.conflicts.num_rows == 0 and result.conflicts.schema == REJECTED_SCHEMA


def test_exact_repeats_go_to_duplicates():
    table = events(event_row("e1", "b.jsonl", 3), event_row("e1", "a.jsonl", 10), event_row("e1", "a.jsonl", 9),
                   event_row("e2", "a.jsonl", 1))
    result = deduplicate(table, "events", "UTC")
    assert locations(result.unique) == [("e1", "a.jsonl", 9), ("e2", "a.jsonl", 1)]  # line 9 before 10: numeric
    assert result.duplicates.to_pylist() == [
        {"dataset": "events", "record_id": "e1", "kept_source_file": "a.jsonl", "kept_line_no": 9,
         "source_file": "a.jsonl", "line_no": 10, "dt": "2026-10-01"},
        {"dataset": "events", "record_id": "e1", "kept_source_file": "a.jsonl", "kept_line_no": 9,
         "source_file": "b.jsonl", "line_no": 3, "dt": "2026-10-01"},
    ]
    assert result.duplicates.schema == pa.schema([
        ("dataset", pa.string()), ("record_id", pa.string()), ("kept_source_file", pa.string()),
        ("kept_line_no", pa.int64()), ("source_file", pa.string()), ("line_no", pa.int64()), ("dt", pa.string())])
    assert result.conflicts.num_rows == 0


def test_repeat_written_differently_is_exact():
    table = events(event_row("e1", "a.jsonl", 1, wait_s=30, channel="branch"),
                   event_row("e1", "a.csv", 5, wait_s="30", channel="BRANCH", occurred_at="2026-10-01T01:00:00Z"))
    result = deduplicate(table, "events", "UTC")
    assert locations(result.unique) == [("e1", "a.csv", 5)]  # "a.csv" < "a.jsonl"
    assert result.duplicates.select(["kept_source_file", "kept_line_no", "source_file", "line_no"]).to_pylist() == [
        {"kept_source_file": "a.csv", "kept_line_no": 5, "source_file": "a.jsonl", "line_no": 1}]


def test_conflicting_duplicate_goes_to_quarantine():
    table = events(event_row("e2", "a.jsonl", 7, touchpoint="farewell", wait_s=30),
                   event_row("e2", "a.jsonl", 5))
    result = deduplicate(table, "events", "Asia/Shanghai")
    assert locations(result.unique) == [("e2", "a.jsonl", 5)]
    assert result.duplicates.num_rows == 0
    [conflict] = result.conflicts.to_pylist()
    raw = json.loads(conflict.pop("raw_record"))
    assert conflict == {
        "dataset": "events", "record_id": "e2", "error_kind": "conflicting_duplicate", "source_file": "a.jsonl",
        "line_no": 7, "error_field": "event_id",
        "error_message": "event_id 'e2' was kept from a.jsonl:5; this row differs in touchpoint, wait_s",
        "dt": "2026-10-01",
    }
    assert raw == {"event_id": "e2", "customer_id": "c1", "touchpoint": "farewell", "wait_s": 30.0,
                   "occurred_at": "2026-10-01T01:00:00+00:00", "channel": "branch"}


def test_three_copies_exact_and_conflicting():
    table = events(event_row("e3", "b.jsonl", 1, text="changed"), event_row("e3", "a.jsonl", 4),
                   event_row("e3", "a.jsonl", 1))
    result = deduplicate(table, "events", "UTC")
    assert locations(result.unique) == [("e3", "a.jsonl", 1)]
    assert result.duplicates.select(["record_id", "kept_source_file", "kept_line_no", "source_file", "line_no"]
                                    ).to_pylist() == [
        {"record_id": "e3", "kept_source_file": "a.jsonl", "kept_line_no": 1, "source_file": "a.jsonl", "line_no": 4}]
    assert result.conflicts.select(["record_id", "source_file", "line_no", "error_message"]).to_pylist() == [
        {"record_id": "e3", "source_file": "b.jsonl", "line_no": 1,
         "error_message": "event_id 'e3' was kept from a.jsonl:1; this row differs in text"}]


def test_conflicts_compare_with_the_winner_not_the_previous_row():
    table = events(event_row("e4", "a.jsonl", 1), event_row("e4", "a.jsonl", 2, wait_s=5),
                   event_row("e4", "a.jsonl", 3, wait_s=5))
    result = deduplicate(table, "events", "UTC")
    assert result.duplicates.num_rows == 0
    assert result.conflicts.column("line_no").to_pylist() == [2, 3]
    assert set(result.conflicts.column("error_message").to_pylist()) == {
        "event_id 'e4' was kept from a.jsonl:1; this row differs in wait_s"}


def test_winner_is_earliest_whatever_the_arrival_order():
    rows = [event_row("e1", "b.jsonl", 1), event_row("e1", "a.jsonl", 20, staff_id="s9"),
            event_row("e1", "a.jsonl", 3), event_row("e2", "c.jsonl", 2), event_row("e2", "c.jsonl", 1, text="hi"),
            event_row("e3", "a.jsonl", 8)]
    expected = deduplicate(events(*rows), "events", "UTC")
    assert locations(expected.unique) == [("e1", "a.jsonl", 3), ("e2", "c.jsonl", 1), ("e3", "a.jsonl", 8)]
    assert expected.duplicates.select(["record_id", "source_file", "line_no"]).to_pylist() == [
        {"record_id": "e1", "source_file": "b.jsonl", "line_no": 1}]
    assert expected.conflicts.select(["record_id", "source_file", "line_no", "error_message"]).to_pylist() == [
        {"record_id": "e1", "source_file": "a.jsonl", "line_no": 20,
         "error_message": "event_id 'e1' was kept from a.jsonl:3; this row differs in staff_id"},
        {"record_id": "e2", "source_file": "c.jsonl", "line_no": 2,
         "error_message": "event_id 'e2' was kept from c.jsonl:1; this row differs in text"},
    ]
    shuffler = random.Random(7)
    for _ in range(5):
        shuffled = rows[:]
        shuffler.shuffle(shuffled)
        result = deduplicate(events(*shuffled), "events", "UTC")
        assert result.unique.to_pylist() == expected.unique.to_pylist()
        assert result.duplicates.to_pylist() == expected.duplicates.to_pylist()
        assert result.conflicts.to_pylist() == expected.conflicts.to_pylist()


def test_duplicate_dates_are_their_own_local_dates():
    rows = [event_row("e1", "a.jsonl", 1, occurred_at="2026-10-01T23:30:00Z"),
            event_row("e1", "a.jsonl", 2, occurred_at="2026-10-01T23:30:00Z"),
            event_row("e2", "a.jsonl", 3, occurred_at="2026-10-01T15:59:59Z"),
            event_row("e2", "a.jsonl", 4, occurred_at="2026-10-01T16:00:00Z")]
    shanghai = deduplicate(events(*rows), "events", "Asia/Shanghai")
    assert shanghai.duplicates.select(["record_id", "dt"]).to_pylist() == [{"record_id": "e1", "dt": "2026-10-02"}]
    # the loser's own timestamp (16:00Z = 00:00 next day in Shanghai), not the winner's
    assert shanghai.conflicts.select(["record_id", "dt", "error_message"]).to_pylist() == [
        {"record_id": "e2", "dt": "2026-10-02",
         "error_message": "event_id 'e2' was kept from a.jsonl:3; this row differs in occurred_at"}]
    utc = deduplicate(events(*rows), "events", "UTC")
    assert utc.duplicates.column("dt").to_pylist() == ["2026-10-01"]
    assert utc.conflicts.column("dt").to_pylist() == ["2026-10-01"]


def test_deduplicate_feedback():
    table = pa.Table.from_pylist([
        feedback_row("f1", "fb.jsonl", 2, csat=5, ratings={"Q5": {"expectation": 7, "perception": 4}}),
        feedback_row("f1", "fb.jsonl", 1, ratings={"Q5": {"expectation": 7, "perception": 5}}),
        feedback_row("f1", "fb.jsonl", 3, ratings={"Q5": {"expectation": "7", "perception": "5"}}, csat="4"),
    ], schema=VALID_SCHEMAS["feedback"])
    result = deduplicate(table, "feedback", "UTC")
    assert result.unique.select(["feedback_id", "line_no"]).to_pylist() == [{"feedback_id": "f1", "line_no": 1}]
    assert result.duplicates.select(["dataset", "record_id", "line_no", "kept_line_no", "dt"]).to_pylist() == [
        {"dataset": "feedback", "record_id": "f1", "line_no": 3, "kept_line_no": 1, "dt": "2026-10-01"}]
    [conflict] = result.conflicts.to_pylist()
    assert (conflict["dataset"], conflict["error_field"], conflict["line_no"]) == ("feedback", "feedback_id", 2)
    assert conflict["error_message"] == (
        "feedback_id 'f1' was kept from fb.jsonl:1; this row differs in csat, ratings, reliability_gap, "
        "reliability_perception")
    assert json.loads(conflict["raw_record"]) == {
        "feedback_id": "f1", "customer_id": "c1", "submitted_at": "2026-10-01T12:00:00+00:00", "csat": 5,
        "ratings": {"Q5": {"expectation": 7.0, "perception": 4.0}}}


def test_deduplicate_empty():
    result = deduplicate(events(), "events", "UTC")
    assert result.unique.num_rows == 0 and result.unique.schema == VALID_SCHEMAS["events"]
    assert result.duplicates.num_rows == 0
    assert result.duplicates.column_names == ["dataset", "record_id", "kept_source_file", "kept_line_no",
                                              "source_file", "line_no", "dt"]
    assert result.conflicts.num_rows == 0 and result.conflicts.schema == REJECTED_SCHEMA


def test_split_then_deduplicate_finds_every_duplicate():
    rows = [event_row(f"e{i % 10}", f"f{i % 3}.jsonl", i) for i in range(40)]
    unique, duplicates = [], Counter()
    for _, part in split_by_bucket(events(*rows), "event_id", 4):
        result = deduplicate(part, "events", "UTC")
        unique += result.unique.column("event_id").to_pylist()
        duplicates.update(result.duplicates.column("record_id").to_pylist())
        assert result.conflicts.num_rows == 0
    assert sorted(unique) == [f"e{i}" for i in range(10)]
    assert duplicates == Counter({f"e{i}": 3 for i in range(10)})
