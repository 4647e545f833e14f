"""Input files: formats, matching, line blocks and parts, JSON Lines and CSV records."""
from __future__ import annotations

import bz2
import functools
import gzip
import json
import zlib
from datetime import timezone
from pathlib import Path

from apache_beam.io.filesystems import FileSystems
import pyarrow as pa
import pytest
import zstandard

from pipelines.ingest import formats
from pipelines.ingest.contract import DEFAULT_CHANNELS
from pipelines.ingest.reader import read_validated
from pipelines.ingest.formats import (
    WHOLE_FILE,
    FilePart,
    InputError,
    InputFile,
    RawRecord,
    file_parts,
    input_format,
    match_inputs,
    read_line_blocks,
    read_records,
    unflatten_csv_row,
)
from pipelines.ingest.contract import ErrorKind
from pipelines.ingest.validate import Rejection, ValueAndMeasures, validate_event, validate_feedback

UTC = timezone.utc
CHANNELS = frozenset(DEFAULT_CHANNELS)


def write(path: Path, text: str | bytes) -> str:
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return str(path)


def jsonl(*rows: dict | str) -> str:
    """JSON Lines text; a str row is written as is (blank lines, broken JSON)."""
    return "".join((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n" for row in rows)


# 2,000 rows of varied values: compressed, still long enough to cut in half
ROWS_2000 = jsonl(*({"event_id": f"e{i}", "n": i * 7919 % 1000} for i in range(2000)))


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
    data = gzip.compress(ROWS_2000.encode())
    path = write(tmp_path / "cut.jsonl.gz", data[: len(data) // 2])
    with pytest.raises(InputError, match="cannot read"):
        list(read_records(path))


COMPRESSORS = {".gz": gzip.compress, ".bz2": bz2.compress, ".zst": zstandard.ZstdCompressor().compress,
               ".deflate": zlib.compress}  # .deflate: the zlib format, as Beam writes it


@pytest.mark.parametrize("suffix", COMPRESSORS)
def test_every_compressed_format_is_read_whole_and_cut_in_half_raises(tmp_path, suffix):
    data = COMPRESSORS[suffix](ROWS_2000.encode())
    whole = list(read_records(write(tmp_path / f"whole.jsonl{suffix}", data)))
    assert [r.fields["event_id"] for r in whole] == [f"e{i}" for i in range(2000)]
    cut = write(tmp_path / f"cut.jsonl{suffix}", data[: len(data) // 2])
    with pytest.raises(InputError, match=f"^cannot read .*cut.jsonl{suffix}: "):
        list(read_records(cut))


@pytest.mark.parametrize("suffix", ["", *COMPRESSORS])
def test_every_file_opened_is_closed_when_read_whole_when_cut_and_when_left_early(tmp_path, monkeypatch, suffix):
    opened = []

    def recording_open(path, **options):
        opened.append(FileSystems.open(path, **options))
        return opened[-1]

    monkeypatch.setattr(formats, "FileSystems", type("Recording", (), {"open": staticmethod(recording_open)}))
    data = COMPRESSORS[suffix](ROWS_2000.encode()) if suffix else ROWS_2000.encode()
    assert len(list(read_records(write(tmp_path / f"whole.jsonl{suffix}", data)))) == 2000
    records = read_records(write(tmp_path / f"early.jsonl{suffix}", data))
    assert next(records).fields["event_id"] == "e0"
    records.close()
    if suffix:  # a cut compressed file raises while it is read
        with pytest.raises(InputError, match="^cannot read "):
            list(read_records(write(tmp_path / f"cut.jsonl{suffix}", data[: len(data) // 2])))
    assert len(opened) == (3 if suffix else 2) and all(f.closed for f in opened)


def test_concatenated_zstd_frames_are_read_one_after_the_other(tmp_path):
    compress = zstandard.ZstdCompressor().compress
    path = write(tmp_path / "two.jsonl.zst", compress(jsonl({"event_id": "e1"}).encode()) + compress(jsonl({"event_id": "e2"}).encode()))
    assert [r.fields["event_id"] for r in read_records(path)] == ["e1", "e2"]


def test_empty_compressed_file_has_no_rows(tmp_path):
    assert list(read_records(write(tmp_path / "empty.jsonl.bz2", b""))) == []


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


def test_file_parts_are_of_about_equal_size(tmp_path):
    """Not a full part after full parts and a short rest: 30 lines with a part size of 12 lines are 3 parts of 10."""
    lines = [_event_line(i) for i in range(30)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode())
    width = len(lines[0]) + 1
    assert file_parts(str(path), 12 * width) == [FilePart(0, 0, 10 * width, 1), FilePart(1, 10 * width, 20 * width, 11),
                                                 FilePart(2, 20 * width, None, 21)]


@pytest.mark.parametrize("part_bytes", [300, 4096, 50_000])
def test_file_parts_of_uneven_lines_start_on_a_line_with_its_number(tmp_path, part_bytes):
    """Lines longer than a read block (no line break in it), CRLF line ends and no line break at the end: every part
    starts right after a line break, on the first line at or after one of the even cuts size * k / ceil(size /
    part_bytes), its first line number is its own, and the parts cover the file."""
    sizes = [5, 70, 12_000, 3, 40_000, 900, 2, 16_500] * 3
    lines = [json.dumps({"x": "a" * n}).encode() for n in sizes]
    data = b"".join(line + (b"\r\n" if i % 3 else b"\n") for i, line in enumerate(lines)) + b'{"last": 1}'
    path = tmp_path / "events.jsonl"
    path.write_bytes(data)
    parts = file_parts(str(path), part_bytes)
    assert len(parts) > 2 and parts[0].start == 0 and parts[-1].end is None
    count = -(-len(data) // part_bytes)
    line_starts = [0] + [i + 1 for i in range(len(data)) if data[i] == 10]
    cuts = {min(s for s in line_starts if s >= len(data) * k // count) for k in range(1, count)}
    assert [part.start for part in parts[1:]] == sorted(cuts - {len(data)})
    for part, following in zip(parts, parts[1:]):
        assert part.end == following.start and data[following.start - 1:following.start] == b"\n"
    for part in parts:
        assert part.first_line_no == data[:part.start].count(b"\n") + 1
    read = [line for part in parts for line in b"".join(read_line_blocks(str(path), 1024, part)).splitlines()]
    assert read == [*lines, b'{"last": 1}']


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
    from pipelines.ingest import reader

    monkeypatch.setattr(reader, "read_line_blocks", functools.partial(read_line_blocks, block_bytes=300))
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
