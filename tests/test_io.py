"""Reading inputs (JSONL / CSV / gzip), partitioned Parquet writing, and read_validated (ingest)."""
from __future__ import annotations

import functools
import gzip
import json
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.contract import DEFAULT_CHANNELS
from pipelines.dedup import deduplicate
from pipelines.ingest import REJECTED_SCHEMA, VALID_SCHEMAS, read_validated
from pipelines.io import (
    WHOLE_FILE,
    FilePart,
    InputError,
    InputFile,
    RawRecord,
    file_parts,
    input_format,
    local_dates,
    match_inputs,
    publish,
    read_line_blocks,
    read_records,
    unflatten_csv_row,
    write_partition,
)
from pipelines.contract import ErrorKind
from pipelines.validate import Rejection, ValueAndMeasures, validate_event, validate_feedback

UTC = timezone.utc
SHANGHAI = ZoneInfo("Asia/Shanghai")
CHANNELS = frozenset(DEFAULT_CHANNELS)


def write(path: Path, text: str | bytes) -> str:
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return str(path)


def jsonl(*rows: dict | str) -> str:
    """JSON Lines text; a str row is written as is (blank lines, broken JSON)."""
    return "".join((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n" for row in rows)


def ev(event_id: str, occurred_at: str = "2026-10-01T09:00:00+08:00", **fields) -> dict:
    return {"event_id": event_id, "occurred_at": occurred_at, "customer_id": "c1", "channel": "branch",
            "touchpoint": "greeting", **fields}


# --- input_format / match_inputs -------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a.jsonl", "jsonl"), ("a.json", "jsonl"), ("a.ndjson", "jsonl"), ("a.csv", "csv"),
        ("a.jsonl.gz", "jsonl"), ("a.json.gz", "jsonl"), ("a.ndjson.gz", "jsonl"), ("a.csv.gz", "csv"),
        ("A.CSV.GZ", "csv"), ("a.jsonl.gzip", "jsonl"), ("a.csv.bz2", "csv"), ("a.jsonl.zst", "jsonl"),
        ("gs://bucket/events/2026/a.ndjson.gz", "jsonl"), ("/data/x.y/b.csv", "csv"),
    ],
)
def test_input_format(path, expected):
    assert input_format(path) == expected


@pytest.mark.parametrize("path", ["a.txt", "a.parquet", "a.csv.tar", "a.jsonl.gz.bak", "a", "a.gz", "csv"])
def test_input_format_unknown(path):
    with pytest.raises(InputError, match="unknown input format") as err:
        input_format(path)
    assert str(err.value).startswith(f"{path}: ")


def test_match_inputs_glob_sorted_with_sizes(tmp_path):
    write(tmp_path / "b.jsonl", "{}\n")
    write(tmp_path / "a.jsonl", '{"x": 1}\n')
    write(tmp_path / "c.csv.gz", gzip.compress(b"h\n1\n"))
    write(tmp_path / "notes.txt", "ignored")
    files = match_inputs([str(tmp_path / "*.jsonl")])
    assert files == [InputFile(str(tmp_path / "a.jsonl"), 9), InputFile(str(tmp_path / "b.jsonl"), 3)]


def test_match_inputs_several_patterns_deduplicated(tmp_path):
    for name in ("b.jsonl", "a.csv", "c.jsonl.gz"):
        write(tmp_path / name, "x\n")
    files = match_inputs([str(tmp_path / "*.jsonl"), str(tmp_path / "b.jsonl"), str(tmp_path / "*.csv"),
                          str(tmp_path / "c.*")])
    assert [Path(f.path).name for f in files] == ["a.csv", "b.jsonl", "c.jsonl.gz"]
    assert [f.size_bytes for f in files] == [2, 2, 2]


def test_match_inputs_no_match(tmp_path):
    write(tmp_path / "a.jsonl", "{}\n")
    pattern = str(tmp_path / "*.csv")
    with pytest.raises(InputError) as err:
        match_inputs([str(tmp_path / "a.jsonl"), pattern])
    assert str(err.value) == f"no input file matches {pattern}"


def test_match_inputs_missing_literal_path(tmp_path):
    with pytest.raises(InputError, match="no input file matches .*missing.jsonl"):
        match_inputs([str(tmp_path / "missing.jsonl")])


def test_match_inputs_unknown_format(tmp_path):
    write(tmp_path / "a.txt", "x")
    with pytest.raises(InputError, match="a.txt: unknown input format"):
        match_inputs([str(tmp_path / "*")])


# --- read_records: JSON Lines ----------------------------------------------------------------


def test_read_jsonl(tmp_path):
    path = write(tmp_path / "e.jsonl", b"".join([
        b'{"event_id": "e1"}\n',
        b"\n",
        b"   \t\n",
        b'{"event_id":"e2","n":1.5}\r\n',
        b"not json\n",
        b"[1, 2]\n",
        b'{"event_id": "caf\xe9"}\n',
        b"42\n",
        '{"text": "您好"}'.encode(),  # no final newline
    ]))
    assert list(read_records(path)) == [
        RawRecord(1, '{"event_id": "e1"}', {"event_id": "e1"}),
        RawRecord(4, '{"event_id":"e2","n":1.5}', {"event_id": "e2", "n": 1.5}),
        RawRecord(5, "not json", None, "invalid JSON: Expecting value: line 1 column 1 (char 0)"),
        RawRecord(6, "[1, 2]", None, "a JSON list is not an object"),
        RawRecord(7, '{"event_id": "caf\ufffd"}', None, "not UTF-8: invalid continuation byte"),
        RawRecord(8, "42", None, "a JSON int is not an object"),
        RawRecord(9, '{"text": "您好"}', {"text": "您好"}),
    ]


def test_read_empty_jsonl(tmp_path):
    assert list(read_records(write(tmp_path / "e.jsonl", ""))) == []
    assert list(read_records(write(tmp_path / "f.jsonl", "\n\n"))) == []


@pytest.mark.parametrize("name", ["e.jsonl.gz", "e.ndjson.gz", "e.JSONL.GZ", "e.jsonl.gzip"])
def test_read_gzip_jsonl(tmp_path, name):
    path = tmp_path / name
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(jsonl({"event_id": "e1"}, "", {"event_id": "e2", "text": "久等了"}, "{broken"))
    assert list(read_records(str(path))) == [
        RawRecord(1, '{"event_id": "e1"}', {"event_id": "e1"}),
        RawRecord(3, '{"event_id": "e2", "text": "久等了"}', {"event_id": "e2", "text": "久等了"}),
        RawRecord(4, "{broken", None,
                  "invalid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    ]


def test_corrupt_gzip_raises_when_read(tmp_path):
    path = write(tmp_path / "bad.jsonl.gz", b"this is not gzip data\n")
    records = read_records(path)  # lazily: the error comes while reading
    with pytest.raises(InputError, match="^cannot read .*bad.jsonl.gz: "):
        list(records)


def test_truncated_gzip_raises(tmp_path):
    data = gzip.compress(jsonl(*({"event_id": f"e{i}", "n": i * 7919 % 1000} for i in range(2000))).encode())
    path = write(tmp_path / "cut.jsonl.gz", data[: len(data) // 2])
    with pytest.raises(InputError, match="cannot read"):
        list(read_records(path))


def test_missing_file_raises(tmp_path):
    with pytest.raises(InputError, match="^cannot open .*gone.jsonl"):
        list(read_records(str(tmp_path / "gone.jsonl")))


# --- read_records: CSV -----------------------------------------------------------------------

EVENTS_CSV = (
    "event_id, occurred_at ,customer_id,channel,touchpoint,text,wait_s,attributes\n"
    'e1,2026-10-01T09:00:00Z,c1,branch,greeting,"Hello, world",30,"{""k"": 1}"\n'
    'e2,2026-10-01T09:05:00Z,c1,branch,diagnose,"line one\n'
    'line two",,\n'
    "\n"
    "e3,2026-10-01T09:10:00Z,c1,branch\n"
    "e4,2026-10-01T09:15:00Z,c1,Branch,resolve,  ,5,not json\n"
    ",,,,,,,\n"
    "e5,2026-10-01T09:20:00Z,c1,app,checkout,,,[1]\n"
)


def test_byte_order_mark_is_not_part_of_the_first_field(tmp_path):
    bom = "\ufeff"
    csv_rows = list(read_records(write(tmp_path / "e.csv", f"{bom}event_id,customer_id\ne1,c1\n")))
    jsonl_rows = list(read_records(write(tmp_path / "e.jsonl", f'{bom}{{"event_id": "e1"}}\n')))
    assert csv_rows[0].fields == {"event_id": "e1", "customer_id": "c1"}
    assert jsonl_rows[0].fields == {"event_id": "e1"}


def test_read_csv(tmp_path):
    records = list(read_records(write(tmp_path / "e.csv", EVENTS_CSV)))
    header = ["event_id", "occurred_at", "customer_id", "channel", "touchpoint", "text", "wait_s", "attributes"]
    e1_cells = ["e1", "2026-10-01T09:00:00Z", "c1", "branch", "greeting", "Hello, world", "30", '{"k": 1}']
    e2_cells = ["e2", "2026-10-01T09:05:00Z", "c1", "branch", "diagnose", "line one\nline two", "", ""]
    e4_cells = ["e4", "2026-10-01T09:15:00Z", "c1", "Branch", "resolve", "  ", "5", "not json"]
    e5_cells = ["e5", "2026-10-01T09:20:00Z", "c1", "app", "checkout", "", "", "[1]"]
    assert [r.line_no for r in records] == [2, 3, 6, 7, 9]
    assert records[0] == RawRecord(2, json.dumps(dict(zip(header, e1_cells)), ensure_ascii=False), {
        "event_id": "e1", "occurred_at": "2026-10-01T09:00:00Z", "customer_id": "c1", "channel": "branch",
        "touchpoint": "greeting", "text": "Hello, world", "wait_s": "30", "attributes": {"k": 1}})
    assert records[1] == RawRecord(3, json.dumps(dict(zip(header, e2_cells)), ensure_ascii=False), {
        "event_id": "e2", "occurred_at": "2026-10-01T09:05:00Z", "customer_id": "c1", "channel": "branch",
        "touchpoint": "diagnose", "text": "line one\nline two", "wait_s": None, "attributes": None})
    assert records[2] == RawRecord(6, '["e3", "2026-10-01T09:10:00Z", "c1", "branch"]', None,
                                   "4 fields where the header has 8")
    assert records[3] == RawRecord(7, json.dumps(dict(zip(header, e4_cells))), {
        "event_id": "e4", "occurred_at": "2026-10-01T09:15:00Z", "customer_id": "c1", "channel": "Branch",
        "touchpoint": "resolve", "text": None, "wait_s": "5", "attributes": "not json"})
    assert records[4].fields["attributes"] == [1]
    # CSV values then validate like JSON ones: attributes text that is no object is a wrong_type
    assert validate_event(records[0].fields, CHANNELS, UTC)["attributes"] == '{"k": 1}'
    assert validate_event(records[3].fields, CHANNELS, UTC).kind.value == "wrong_type"
    assert validate_event(records[4].fields, CHANNELS, UTC).field == "attributes"


def test_read_csv_crlf_and_too_many_fields(tmp_path):
    path = write(tmp_path / "f.csv", "a,b\r\n1,2\r\n\r\n3,4,5\r\n\"x\r\ny\",6\r\n7,8")
    assert list(read_records(path)) == [
        RawRecord(2, '{"a": "1", "b": "2"}', {"a": "1", "b": "2"}),
        RawRecord(4, '["3", "4", "5"]', None, "3 fields where the header has 2"),
        RawRecord(5, '{"a": "x\\r\\ny", "b": "6"}', {"a": "x\r\ny", "b": "6"}),
        RawRecord(7, '{"a": "7", "b": "8"}', {"a": "7", "b": "8"}),
    ]


def test_read_csv_not_utf8_is_unparseable(tmp_path):
    path = write(tmp_path / "f.csv", b'a,b\n1,caf\xe9\n"multi\nline \xff",2\n3,ok\n')
    assert list(read_records(path)) == [
        RawRecord(2, '{"a": "1", "b": "caf\ufffd"}', None, "not UTF-8: invalid continuation byte"),
        RawRecord(3, '{"a": "multi\\nline \ufffd", "b": "2"}', None, "not UTF-8: invalid start byte"),
        RawRecord(5, '{"a": "3", "b": "ok"}', {"a": "3", "b": "ok"}),
    ]


def test_read_csv_header_only_or_empty(tmp_path):
    assert list(read_records(write(tmp_path / "h.csv", "a,b\n"))) == []
    assert list(read_records(write(tmp_path / "e.csv", ""))) == []


def test_read_gzip_csv(tmp_path):
    path = write(tmp_path / "e.csv.gz", gzip.compress("a,b\n1,\"两\n行\"\n2,x\n".encode()))
    assert list(read_records(path)) == [
        RawRecord(2, '{"a": "1", "b": "两\\n行"}', {"a": "1", "b": "两\n行"}),
        RawRecord(4, '{"a": "2", "b": "x"}', {"a": "2", "b": "x"}),
    ]


def test_read_csv_ratings_columns(tmp_path):
    path = write(tmp_path / "fb.csv", (
        "feedback_id,submitted_at,customer_id,csat,rating.Q5.expectation,rating.Q5.perception,rating.empathy,"
        "rating.Q6.perception,comment\n"
        "f1,2026-10-01T12:00:00Z,c1,4,7,5,6,,Nice\n"
        "f2,2026-10-01T12:00:00Z,c2,,,,,,\n"
    ))
    first, second = read_records(path)
    assert first.fields == {"feedback_id": "f1", "submitted_at": "2026-10-01T12:00:00Z", "customer_id": "c1",
                            "csat": "4", "comment": "Nice",
                            "ratings": {"Q5": {"expectation": "7", "perception": "5"}, "empathy": "6"}}
    assert second.fields == {"feedback_id": "f2", "submitted_at": "2026-10-01T12:00:00Z", "customer_id": "c2",
                             "csat": None, "comment": None}
    clean = validate_feedback(first.fields, CHANNELS, UTC)
    assert (clean["csat"], clean["reliability_gap"], clean["empathy_perception"]) == (4, -2.0, 6.0)
    assert validate_feedback(second.fields, CHANNELS, UTC).kind.value == "no_feedback_signal"


def test_unflatten_csv_row():
    assert unflatten_csv_row({"csat": "4", "rating.Q1.perception": "6", "rating.Q1.expectation": " ",
                              "rating.empathy": "5", "comment": "", "attributes": '{"a": [1]}', "text": " x "}) == {
        "csat": "4", "ratings": {"Q1": {"perception": "6"}, "empathy": "5"}, "comment": None,
        "attributes": {"a": [1]}, "text": " x "}


@pytest.mark.parametrize("row", [{"rating.Q5": "5", "rating.Q5.perception": "6", "rating.Q1": "4"},
                                 {"rating.Q5.perception": "6", "rating.Q1": "4", "rating.Q5": "5"}])
def test_unflatten_csv_row_value_and_measures(row):
    """A key filled both plain and with measures (either column order) is kept as such and rejected by
    validation as a wrongly typed ratings object, instead of failing the read."""
    fields = unflatten_csv_row({"feedback_id": "f1", "submitted_at": "2026-10-01T12:00:00Z", "customer_id": "c1", **row})
    assert fields["ratings"] == {"Q5": ValueAndMeasures("5", {"perception": "6"}), "Q1": "4"}
    assert validate_feedback(fields, CHANNELS, UTC) == Rejection(
        ErrorKind.WRONG_TYPE, "ratings", "ratings.Q5: both a value and measures")
    blank = unflatten_csv_row({**row, "rating.Q5": " "})
    assert blank["ratings"] == {"Q5": {"perception": "6"}, "Q1": "4"}


# --- write_partition / local_dates -----------------------------------------------------------


def test_write_partition_writes_one_file_with_bounded_row_groups(tmp_path):
    table = pa.table({"id": ["a", "b", "c", "d", "e"], "n": [1, 2, 3, 4, 5]})
    written = write_partition(str(tmp_path), "events", "2026-10-01", [table.slice(0, 3), table.slice(3)], row_group_rows=2)
    assert written == str(tmp_path / "events" / "dt=2026-10-01" / "part-00000.parquet")
    meta = pq.ParquetFile(written).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [2, 2, 1]
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert pq.read_table(written).to_pydict() == table.to_pydict()


def test_write_partition_empty_table_writes_one_empty_file(tmp_path):
    schema = pa.schema([("id", pa.string()), ("at", pa.timestamp("us", tz="UTC"))])
    written = write_partition(str(tmp_path), "t", "2026-10-01", [schema.empty_table()], 10)
    result = pq.read_table(written)
    assert result.num_rows == 0 and result.schema == schema


def staged(root: Path, **partitions: list[int]) -> None:
    for dt, values in partitions.items():
        write_partition(str(root), "t", dt.replace("_", "-"), [pa.table({"n": values})], 10)


def published(out: Path) -> dict[str, list[int]]:
    return {p.parent.name: pq.read_table(p).column("n").to_pylist() for p in sorted((out / "t").glob("dt=*/*.parquet"))}


def test_publish_replaces_changed_partitions_and_keeps_identical_ones(tmp_path):
    out, staging = tmp_path / "out", tmp_path / "out" / "_staging" / "r1"
    staged(staging, d2026_10_01=[1], d2026_10_02=[2])
    first = publish(str(staging), str(out), ["t"], None)
    assert [Path(p).parent.name for p in first.replaced] == ["dt=d2026-10-01", "dt=d2026-10-02"]
    assert not staging.exists()
    untouched = out / "t" / "dt=d2026-10-01" / "part-00000.parquet"
    mtime = untouched.stat().st_mtime_ns
    staged(staging, d2026_10_01=[1], d2026_10_02=[2, 3])
    second = publish(str(staging), str(out), ["t"], None)
    assert ([Path(p).parent.name for p in second.replaced], [Path(p).parent.name for p in second.unchanged]) == (
        ["dt=d2026-10-02"], ["dt=d2026-10-01"])
    assert untouched.stat().st_mtime_ns == mtime
    assert published(out) == {"dt=d2026-10-01": [1], "dt=d2026-10-02": [2, 3]}


def test_publish_removes_emptied_partitions_of_the_window_only(tmp_path):
    out, staging = tmp_path / "out", tmp_path / "stage"
    staged(staging, **{"2026-10-01": [1], "2026-10-02": [2], "2026-10-03": [3]})
    publish(str(staging), str(out), ["t"], None)
    staged(staging, **{"2026-10-02": [20]})
    result = publish(str(staging), str(out), ["t"], ["2026-10-02", "2026-10-03"])
    assert [Path(p).parent.name for p in result.removed] == ["dt=2026-10-03"]
    assert published(out) == {"dt=2026-10-01": [1], "dt=2026-10-02": [20]}


def ts(*values: str) -> pa.Array:
    return pa.array([datetime.fromisoformat(v) for v in values], pa.timestamp("us", tz="UTC"))


def test_local_dates_across_midnight():
    stamps = ts("2026-09-30T15:59:59.999999+00:00", "2026-09-30T16:00:00+00:00", "2026-10-01T15:59:59+00:00",
                "2026-10-01T23:30:00+00:00")
    assert local_dates(stamps, "Asia/Shanghai").to_pylist() == ["2026-09-30", "2026-10-01", "2026-10-01", "2026-10-02"]
    assert local_dates(stamps, "UTC").to_pylist() == ["2026-09-30", "2026-09-30", "2026-10-01", "2026-10-01"]
    assert local_dates(stamps, "America/Los_Angeles").to_pylist() == [
        "2026-09-30", "2026-09-30", "2026-10-01", "2026-10-01"]
    assert local_dates(ts("2026-10-01T06:59:59+00:00", "2026-10-01T07:00:00+00:00"), "America/Los_Angeles").to_pylist() == [
        "2026-09-30", "2026-10-01"]


def test_local_dates_chunked():
    chunked = pa.chunked_array([ts("2026-09-30T16:00:00+00:00"), ts("2026-09-30T15:00:00+00:00")])
    assert local_dates(chunked, "Asia/Shanghai").to_pylist() == ["2026-10-01", "2026-09-30"]


# --- ingest.read_validated -------------------------------------------------------------------

MIXED = [
    ev("e1"),                                                                 # 1 valid
    "",                                                                       # 2 blank
    ev("e2", "2026-10-01T23:30:00Z", customer_id=None),                       # 3 missing customer_id, dt local
    "{oops",                                                                  # 4 unparseable
    ev("e4", "yesterday"),                                                    # 5 bad timestamp -> fallback dt
    ev("e5", "2026-10-01T10:00:00", visit_id="v1", wait_s="12"),              # 6 valid, naive in Shanghai
    ev("  e6 ", "2026-10-01T07:00:00", channel="fax"),                        # 7 unknown channel
    ev(123, "2026-09-30T15:00:00Z"),                                          # 8 wrong type, no record id
]


def validated_clean(record: dict) -> dict:
    return validate_event(record, CHANNELS, SHANGHAI)


def test_read_validated_mixed(tmp_path):
    path = write(tmp_path / "events.jsonl", jsonl(*MIXED))
    batches = list(read_validated(path, "events", CHANNELS, SHANGHAI, batch_rows=100, fallback_dt="2026-11-23"))
    assert len(batches) == 1
    valid, rejected = batches[0]
    assert valid.schema == VALID_SCHEMAS["events"]
    assert rejected.schema == REJECTED_SCHEMA
    e1, e5 = validated_clean(MIXED[0]), validated_clean(MIXED[5])
    assert valid.to_pylist() == [
        {"event_id": "e1", "occurred_at": datetime(2026, 10, 1, 1, 0, tzinfo=UTC), "customer_id": "c1",
         "visit_id": None, "channel": "branch", "touchpoint": "greeting", "staff_id": None, "location_id": None,
         "duration_s": None, "wait_s": None, "text": None, "outcome": None, "attributes": None,
         "source_file": path, "line_no": 1},
        {"event_id": "e5", "occurred_at": datetime(2026, 10, 1, 2, 0, tzinfo=UTC), "customer_id": "c1",
         "visit_id": "v1", "channel": "branch", "touchpoint": "greeting", "staff_id": None, "location_id": None,
         "duration_s": None, "wait_s": 12.0, "text": None, "outcome": None, "attributes": None,
         "source_file": path, "line_no": 6},
    ]
    lines = jsonl(*MIXED).split("\n")

    def rejected_row(line_no, record_id, kind, field, message, dt):
        return {"dataset": "events", "record_id": record_id, "error_kind": kind, "raw_record": lines[line_no - 1],
                "source_file": path, "line_no": line_no, "error_field": field, "error_message": message, "dt": dt}

    assert rejected.to_pylist() == [
        rejected_row(3, "e2", "missing_required_field", "customer_id", "required field customer_id is missing or empty",
                     "2026-10-02"),
        rejected_row(4, None, "unparseable_line", None,
                     "invalid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
                     "2026-11-23"),
        rejected_row(5, "e4", "bad_timestamp", "occurred_at", "occurred_at 'yesterday' is not an ISO 8601 timestamp",
                     "2026-11-23"),
        rejected_row(7, "e6", "unknown_channel", "channel",
                     "channel 'fax' is not one of airport, app, branch, chat, email, kiosk, onboard, other, phone, "
                     "store, web", "2026-10-01"),
        rejected_row(8, None, "wrong_type", "event_id", "event_id must be a string, got int 123", "2026-09-30"),
    ]


def test_read_validated_batches(tmp_path):
    path = write(tmp_path / "events.jsonl", jsonl(*MIXED))
    batches = list(read_validated(path, "events", CHANNELS, SHANGHAI, batch_rows=3, fallback_dt="2026-11-23"))
    # 7 input rows (the blank line is none) -> 3 + 3 + 1
    assert [(v.column("line_no").to_pylist(), r.column("line_no").to_pylist()) for v, r in batches] == [
        ([1], [3, 4]), ([6], [5, 7]), ([], [8])]
    assert all(v.schema == VALID_SCHEMAS["events"] and r.schema == REJECTED_SCHEMA for v, r in batches)


def test_read_validated_empty_file_yields_nothing(tmp_path):
    path = write(tmp_path / "events.jsonl", "\n")
    assert list(read_validated(path, "events", CHANNELS, UTC, batch_rows=10, fallback_dt="2026-11-23")) == []


def test_read_validated_timestamp_out_of_range_uses_fallback(tmp_path):
    path = write(tmp_path / "events.jsonl", jsonl(ev("e1", "9999-12-31T23:00:00Z", channel="fax")))
    [(valid, rejected)] = read_validated(path, "events", CHANNELS, SHANGHAI, batch_rows=10, fallback_dt="2026-11-23")
    assert valid.num_rows == 0
    assert rejected.select(["error_kind", "dt"]).to_pylist() == [{"error_kind": "unknown_channel", "dt": "2026-11-23"}]


def test_read_validated_feedback_csv(tmp_path):
    path = write(tmp_path / "fb.csv", (
        "feedback_id,submitted_at,customer_id,csat,nps,rating.Q5.expectation,rating.Q5.perception,rating.Q6,comment\n"
        "f1,2026-10-01 20:00,c1,4,9,7,5,6,\n"
        "f2,2026-10-01 20:00,c1,,,,,,\n"
        "f3,2026-10-01 20:00,c1,2,x\n"
    ))
    [(valid, rejected)] = read_validated(path, "feedback", CHANNELS, SHANGHAI, batch_rows=10, fallback_dt="2026-11-23")
    assert valid.schema == VALID_SCHEMAS["feedback"]
    [row] = valid.to_pylist()
    assert row["submitted_at"] == datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
    assert (row["csat"], row["nps"], row["ces"], row["comment"]) == (4, 9, None, None)
    assert row["ratings"] == [
        {"item": "Q5", "dimension": "reliability", "expectation": 7.0, "perception": 5.0},
        {"item": "Q6", "dimension": "reliability", "expectation": None, "perception": 6.0},
    ]
    assert (row["reliability_expectation"], row["reliability_perception"], row["reliability_gap"]) == (7.0, 5.5, -1.5)
    assert (row["source_file"], row["line_no"]) == (path, 2)
    assert rejected.select(["record_id", "error_kind", "line_no", "raw_record", "dt"]).to_pylist() == [
        {"record_id": "f2", "error_kind": "no_feedback_signal", "line_no": 3, "dt": "2026-10-01",
         "raw_record": '{"feedback_id": "f2", "submitted_at": "2026-10-01 20:00", "customer_id": "c1", "csat": "", '
                       '"nps": "", "rating.Q5.expectation": "", "rating.Q5.perception": "", "rating.Q6": "", '
                       '"comment": ""}'},
        {"record_id": None, "error_kind": "unparseable_line", "line_no": 4, "dt": "2026-11-23",
         "raw_record": '["f3", "2026-10-01 20:00", "c1", "2", "x"]'},
    ]


# --- exact repeats are recognised by their validated values -------------------------------------


def test_exact_repeat_however_the_line_was_written(tmp_path):
    path = write(tmp_path / "events.jsonl", "".join([
        '{"event_id": "e1", "occurred_at": "2026-10-01T09:00:00+08:00", "customer_id": "c1", "channel": "branch", '
        '"touchpoint": "greeting", "wait_s": 30, "attributes": {"a": 1, "b": 2}}\n',
        '{ "attributes":{"b":2,"a":1},"wait_s":"30.0","touchpoint":" greeting","channel":"Branch",'
        '"customer_id":"c1","occurred_at":"2026-10-01T01:00:00Z","event_id":"e1"}\n',
        '{"event_id": "e1", "occurred_at": "2026-10-01T09:00:00+08:00", "customer_id": "c1", "channel": "branch", '
        '"touchpoint": "farewell", "wait_s": 30, "attributes": {"a": 1, "b": 2}}\n',
        '{"event_id": "e1", "occurred_at": "2026-10-01T09:00:00+08:00", "customer_id": "c1", "channel": "branch", '
        '"touchpoint": "greeting", "wait_s": 30, "attributes": {"a": 1, "b": 3}}\n',
    ]))
    [(valid, rejected)] = read_validated(path, "events", CHANNELS, UTC, batch_rows=10, fallback_dt="2026-11-23")
    assert rejected.num_rows == 0
    result = deduplicate(valid, "events", "UTC")
    assert result.duplicates.column("line_no").to_pylist() == [2]
    assert result.conflicts.column("line_no").to_pylist() == [3, 4]
    assert [m.split("differs in ")[1] for m in result.conflicts.column("error_message").to_pylist()] == [
        "touchpoint", "attributes"]


def test_validated_feedback_equal_however_written():
    raw = {"feedback_id": "f1", "submitted_at": "2026-10-01T12:00:00Z", "customer_id": "c1", "csat": 4,
           "ratings": {"Q5": {"perception": 5, "expectation": 7}}}
    rewritten = {"ratings": {"Q5": {"expectation": "7", "perception": "5.0"}}, "csat": "4", "customer_id": "c1",
                 "submitted_at": "2026-10-01 20:00:00+08:00", "feedback_id": "f1"}
    changed = {**raw, "ratings": {"Q5": {"perception": 6, "expectation": 7}}}
    a, b, c = (validate_feedback(r, CHANNELS, UTC) for r in (raw, rewritten, changed))
    assert a == b
    assert a != c


def test_publish_keeps_a_partition_whose_rows_differ_only_in_run_id(tmp_path):
    out, staging = tmp_path / "out", tmp_path / "stage"
    write_partition(str(staging), "t", "2026-10-01", [pa.table({"n": [1], "run_id": ["r1"]})], 10)
    publish(str(staging), str(out), ["t"], None)
    write_partition(str(staging), "t", "2026-10-01", [pa.table({"n": [1], "run_id": ["r2"]})], 10)
    assert [Path(p).parent.name for p in publish(str(staging), str(out), ["t"], None).unchanged] == ["dt=2026-10-01"]
    assert pq.read_table(out / "t" / "dt=2026-10-01" / "part-00000.parquet").column("run_id").to_pylist() == ["r1"]
    write_partition(str(staging), "t", "2026-10-01", [pa.table({"n": [2], "run_id": ["r3"]})], 10)
    assert len(publish(str(staging), str(out), ["t"], None).replaced) == 1


def _event_line(i: int) -> str:
    return json.dumps({"event_id": f"e{i:03d}", "customer_id": "c1", "occurred_at": f"2026-10-01T09:{i % 60:02d}:00Z",
                       "channel": "branch", "touchpoint": "greeting"})


def test_file_parts_cut_a_large_jsonl_file_on_lines_with_their_numbers(tmp_path):
    lines = [_event_line(i) for i in range(30)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode())
    width = len(lines[0]) + 1  # every line has the same length here
    parts = file_parts(str(path), 10 * width)
    assert parts == [FilePart(0, 0, 10 * width, 1), FilePart(1, 10 * width, 20 * width, 11), FilePart(2, 20 * width, None, 21)]
    read = [part_line for part in parts for part_line in b"".join(read_line_blocks(str(path), 64, part)).splitlines()]
    assert read == [line.encode() for line in lines]
    assert file_parts(str(path), path.stat().st_size) == [WHOLE_FILE]  # not larger than a part


@pytest.mark.parametrize("name", ["events.csv.gz", "events.csv"])
def test_file_parts_leave_csv_files_whole(tmp_path, name):
    data = b"a,b\n" + b"1,2\n" * 1000
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    assert file_parts(str(path), 100) == [WHOLE_FILE]


def test_file_parts_of_a_compressed_jsonl_file_interleave_its_blocks(tmp_path):
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(gzip.compress(b"".join(_event_line(i).encode() + b"\n" for i in range(3000))))
    size = path.stat().st_size  # decompressed size estimated as 8x
    assert file_parts(str(path), size * 8) == [WHOLE_FILE]
    assert file_parts(str(path), size * 4) == [FilePart(0, every=2), FilePart(1, every=2)]
    assert file_parts(str(path), 1) == [FilePart(n, every=4) for n in range(4)]  # at most 4: each decompresses all
    assert [n for n in range(9) if FilePart(1, every=4).reads(n)] == [1, 5]


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_reading_a_file_in_parts_gives_the_rows_of_reading_it_whole(tmp_path, monkeypatch, name):
    """Bad lines, blank lines, CRLF and a BOM stay as they are in a whole read, with the same line numbers; a
    compressed file's parts read every 4th block of 300 bytes of lines."""
    from pipelines import ingest

    monkeypatch.setattr(ingest, "read_line_blocks", functools.partial(read_line_blocks, block_bytes=300))
    lines = ["\ufeff" + _event_line(0), *(_event_line(i) for i in range(1, 40)), "{not json", "", "[1, 2]", "  ",
             _event_line(1).replace('"branch"', '"telepathy"'), *(_event_line(i) + "\r" for i in range(40, 70))]
    data = ("\n".join(lines) + "\n").encode()
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    parts = file_parts(str(path), 700)
    assert len(parts) > 3

    def read(part=WHOLE_FILE):
        batches = list(read_validated(str(path), "events", DEFAULT_CHANNELS, timezone.utc, 1000, "2026-11-23", part))
        return [pa.concat_tables([batch[i] for batch in batches]) for i in (0, 1)]

    whole = read()
    in_parts = [read(part) for part in parts]
    for i in (0, 1):  # the parts' rows, in line order, are the whole read's
        assert pa.concat_tables([tables[i] for tables in in_parts]).sort_by("line_no").equals(whole[i])
    assert all(tables[0].num_rows for tables in in_parts)  # every part read some rows
    assert whole[0].num_rows == 70 and sorted(whole[1].column("line_no").to_pylist()) == [41, 43, 45]


def test_local_dates_before_1970_and_at_a_half_hour_offset():
    stamps = pa.array([datetime(1969, 12, 31, 23, 59, tzinfo=timezone.utc), datetime(2026, 10, 3, 13, 29, tzinfo=timezone.utc),
                       datetime(2026, 10, 3, 13, 31, tzinfo=timezone.utc)], pa.timestamp("us", tz="UTC"))
    assert local_dates(stamps, "UTC").to_pylist() == ["1969-12-31", "2026-10-03", "2026-10-03"]
    # Lord Howe Island: UTC+10:30 until its half-hour daylight saving starts on 2026-10-04
    assert local_dates(stamps, "Australia/Lord_Howe").to_pylist() == ["1970-01-01", "2026-10-03", "2026-10-04"]
