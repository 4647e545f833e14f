"""reader.read_validated: one file -> batches of validated rows and quarantine rows."""
from __future__ import annotations

import bz2
import gzip
import json
import os
import zlib
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
import zstandard

from pipelines.ingest.contract import DEFAULT_CHANNELS
from pipelines.dedup import deduplicate
from pipelines.ingest.formats import WHOLE_FILE, FilePart, ReadTally, file_parts
from pipelines.ingest.reader import REJECTED_SCHEMA, VALID_SCHEMAS, read_validated, read_validated_reference
from pipelines.ingest.validate import validate_event, validate_feedback
from test_formats import jsonl, write  # the same file helpers as the format tests

UTC = timezone.utc
SHANGHAI = ZoneInfo("Asia/Shanghai")
CHANNELS = frozenset(DEFAULT_CHANNELS)



def ev(event_id: str, occurred_at: str = "2026-10-01T09:00:00+08:00", **fields) -> dict:
    return {"event_id": event_id, "occurred_at": occurred_at, "customer_id": "c1", "channel": "branch",
            "touchpoint": "greeting", **fields}


# --- reader.read_validated -------------------------------------------------------------------

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
         "duration_s": None, "wait_s": None, "text": None, "outcome": None, "attributes": None, "identifiers": None,
         "source_file": path, "line_no": 1},
        {"event_id": "e5", "occurred_at": datetime(2026, 10, 1, 2, 0, tzinfo=UTC), "customer_id": "c1",
         "visit_id": "v1", "channel": "branch", "touchpoint": "greeting", "staff_id": None, "location_id": None,
         "duration_s": None, "wait_s": 12.0, "text": None, "outcome": None, "attributes": None, "identifiers": None,
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
    # past the supported timestamps (its local date would be 10000-01-01): out_of_range before the channel is checked
    assert rejected.select(["error_kind", "dt"]).to_pylist() == [{"error_kind": "out_of_range", "dt": "2026-11-23"}]


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


# --- hostile rows: typed quarantine rows on the vectorised and the per-row path alike -------------------------
CSV_HEAD = "event_id,occurred_at,customer_id,channel,touchpoint,text\n"


def csv_line(event_id: str, text: str = "hi") -> str:
    return f"{event_id},2026-10-01T09:00:00Z,c1,branch,greeting,{text}\n"


HOSTILE = {  # file name -> (its text, {line: the start of the error message} of the rows it quarantines, input rows)
    "surrogate.jsonl": (jsonl(ev("e1"), json.dumps(ev("e2", text="X")).replace('"X"', '"\\udc00"'), ev("e3")),
                        {2: "invalid JSON: a lone surrogate escape"}, 3),
    "deep.jsonl": (jsonl(ev("e1"), '{"event_id": "e2", "attributes": ' + "[" * 1000 + "]" * 1000 + "}", ev("e3")),
                   {2: "invalid JSON: nested too deeply"}, 3),
    "deep_cell.csv": (CSV_HEAD.replace("text", "attributes") + csv_line("e1", '"' + '{""a"":' * 1000 + "1" + "}" * 1000 + '"'),
                      {2: "attributes must be an object"}, 1),
    "long.jsonl": (jsonl(ev("e1"), ev("e2", text="x" * (1 << 20)), ev("e3")), {2: "a line of 1,048,7"}, 3),
    "long.csv": (CSV_HEAD + csv_line("e1") + csv_line("e2", "x" * (1 << 20)) + csv_line("e3"), {3: "a line of 1,048,6"}, 3),
    "big_cell.csv": (CSV_HEAD + csv_line("e1", "x" * 131_073) + csv_line("e2"), {2: "CSV: field larger than field limit"}, 2),
    "cr_cell.csv": (CSV_HEAD + csv_line("e1", "a\rb") + csv_line("e2"), {2: "CSV: a carriage return in an unquoted cell"}, 2),
    "cr_only.csv": ((CSV_HEAD + csv_line("e1")).replace("\n", "\r"), {1: "CSV: a carriage return"}, 1),
    "open_quote.csv": (CSV_HEAD + csv_line("e1") + csv_line("e2", '"open') + csv_line("e3"),
                       {3: "CSV: the quoted cell opened on line 3", 4: "CSV: the quoted cell opened on line 3"}, 3),
    "bom_spaces.csv": ("\ufeff event_id , occurred_at ,customer_id,channel,touchpoint,text\n" + csv_line("e1"), {}, 1),
}


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("read", [read_validated, read_validated_reference])
def test_hostile_rows_become_typed_quarantine_rows(tmp_path, name, read):
    text, expected, input_rows = HOSTILE[name]
    path = write(tmp_path / name, text)
    batches = list(read(path, "events", CHANNELS, UTC, batch_rows=100, fallback_dt="2026-10-01"))
    rejected = [r for _, bad in batches for r in bad.to_pylist()]
    assert {r["line_no"]: r["error_message"][:len(expected.get(r["line_no"], ""))] for r in rejected} == expected
    assert all(r["error_kind"] in ("unparseable_line", "wrong_type") for r in rejected)
    assert sum(v.num_rows + b.num_rows for v, b in batches) == input_rows  # every row accounted for


# --- the physical counts of a read (formats.ReadTally) -------------------------------------------

def read_tally(path: str, part: FilePart = WHOLE_FILE) -> tuple[ReadTally, int]:
    """(the tally of one read of `path`, the rows it yielded)."""
    tally = ReadTally()
    batches = read_validated(path, "events", CHANNELS, UTC, 100, "2026-10-01", part, tally)
    return tally, sum(v.num_rows + b.num_rows for v, b in batches)


def physical_lines(text: str) -> int:
    return text.count("\n") + (not text.endswith("\n"))


TALLIED = {  # file name -> (its text, rows, lines that start no row)
    "blank.jsonl": (jsonl(ev("e1"), "", "   ", ev("e2"), "{oops"), 3, 2),
    "crlf_no_final_break.jsonl": (jsonl(ev("e1"), "", ev("e2")).replace("\n", "\r\n") + json.dumps(ev("e3")), 3, 1),
    "quoted_breaks.csv": (CSV_HEAD + csv_line("e1", '"two\nlines"') + "\n" + csv_line("e2", '"three\n\nlines"'), 2, 5),
    "blank_lines.csv": (CSV_HEAD + "\n" + csv_line("e1") + ",,,,,\n" + csv_line("e2"), 2, 3),
    "header_over_two_lines.csv": ('"event_id\n",occurred_at,customer_id,channel,touchpoint,text\n' + csv_line("e1"), 1, 2),
    **{f"hostile_{name}": (text, rows, physical_lines(text) - rows) for name, (text, _, rows) in HOSTILE.items()},
}


@pytest.mark.parametrize("name", TALLIED)
def test_a_read_counts_the_bytes_and_lines_of_the_file_and_the_lines_that_start_no_row(tmp_path, name):
    text, rows, other_lines = TALLIED[name]
    path = write(tmp_path / name.removeprefix("hostile_"), text)
    tally, yielded = read_tally(path)
    assert (yielded, tally.other_lines) == (rows, other_lines)
    assert (tally.bytes_read, tally.lines) == (os.path.getsize(path), physical_lines(text))


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".zst", ".deflate"])
def test_a_compressed_file_counts_its_stored_bytes_and_its_decompressed_lines(tmp_path, suffix):
    text = TALLIED["quoted_breaks.csv"][0]
    compress = {".gz": gzip.compress, ".bz2": bz2.compress, ".zst": zstandard.compress, ".deflate": zlib.compress}[suffix]
    path = write(tmp_path / f"events.csv{suffix}", compress(text.encode()))
    tally, yielded = read_tally(path)
    assert (tally.bytes_read, tally.lines, tally.other_lines, yielded) == (os.path.getsize(path), 7, 5, 2)


@pytest.mark.parametrize("compressed", [False, True])
def test_the_parts_of_a_file_count_their_own_bytes_and_lines(tmp_path, compressed):
    """Cut parts read their byte ranges; interleaved parts of a compressed file each read it all and count the
    lines of their own blocks as rows or blank lines."""
    lines = [json.dumps(ev(f"e{i}")) if i % 7 else "" for i in range(3000)]
    data = ("\n".join(lines) + "\n").encode()
    path = write(tmp_path / ("events.jsonl.gz" if compressed else "events.jsonl"), gzip.compress(data) if compressed else data)
    parts = file_parts(path, 16 << 10)
    assert len(parts) == 4 if compressed else len(parts) > 5  # the cases under test
    tallies = [read_tally(path, part) for part in parts]
    assert sum(rows + tally.other_lines for tally, rows in tallies) == 3000
    assert sum(rows for _, rows in tallies) == 3000 - 429
    if compressed:
        assert {tally.bytes_read for tally, _ in tallies} == {os.path.getsize(path)}
        assert {tally.lines for tally, _ in tallies} == {3000}
    else:
        assert sum(tally.bytes_read for tally, _ in tallies) == len(data)
        assert sum(tally.lines for tally, _ in tallies) == 3000
