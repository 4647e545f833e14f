"""The vectorised read_validated equals the per-row reference path exactly (same batches, rows, values, schemas)."""
from __future__ import annotations

import csv
import functools
import gzip
import json
import sys
from datetime import timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pipelines.ingest import formats, reader
from pipelines.ingest.contract import DEFAULT_CHANNELS
from pipelines.ingest.vectorised import WHITESPACE, check_csv, check_lines, read_csv_lines, simple_csv, split_lines
from pipelines.ingest.reader import read_validated, read_validated_reference
from pipelines.sample import generate_sample

CHANNELS = frozenset(DEFAULT_CHANNELS)
ZONES = [timezone.utc, ZoneInfo("Asia/Shanghai"), ZoneInfo("America/New_York")]


def assert_same(path: Path, dataset: str, batch_rows: int, tz) -> None:
    args = (str(path), dataset, CHANNELS, tz, batch_rows, "2026-11-23")
    fast, reference = list(read_validated(*args)), list(read_validated_reference(*args))
    assert len(fast) == len(reference)
    for (valid, rejected), (ref_valid, ref_rejected) in zip(fast, reference):
        assert valid.schema == ref_valid.schema and rejected.schema == ref_rejected.schema
        assert valid.to_pylist() == ref_valid.to_pylist()
        assert rejected.to_pylist() == ref_rejected.to_pylist()
        assert valid.equals(ref_valid) and rejected.equals(ref_rejected)


def test_whitespace_is_python_strip():
    assert WHITESPACE == "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """Generated inputs with every kind of bad row (10% of them), JSONL, gzip JSONL, gzip CSV and CSV."""
    out = tmp_path_factory.mktemp("sample")
    generate_sample(out, 3000, bad_share=0.1)
    return out


@pytest.mark.parametrize("tz", ZONES[:2], ids=str)
def test_sample_files(sample, tz):
    files = [(p, "events") for p in sorted((sample / "touchpoints").iterdir())] + \
            [(p, "feedback") for p in sorted((sample / "feedback").iterdir())]
    assert {p.name.split(".", 1)[1] for p, _ in files} >= {"jsonl", "jsonl.gz", "csv.gz", "csv"}
    for path, dataset in files:
        for batch_rows in (50_000, 97):
            assert_same(path, dataset, batch_rows, tz)


def ev(**fields) -> dict:
    base = {"event_id": "e1", "occurred_at": "2026-10-01T09:00:00+08:00", "customer_id": "c1", "channel": "branch",
            "touchpoint": "greeting"}
    return {**base, **fields}


EDGE_EVENTS = [
    ev(),
    ev(event_id="  e2\u3000", customer_id="\u00a0c2 ", touchpoint=" greeting\t", visit_id="   ", staff_id=""),
    ev(text="  ", outcome=" ", location_id=None, visit_id=None),
    ev(text="  hello  ", outcome="Resolved", channel=" BRANCH "),
    ev(channel="\u212aiosk"),  # Kelvin sign lower-cases to k
    ev(channel="branch\u0130"), ev(outcome="ESCALATED\u00a0"), ev(outcome="closed"), ev(channel="fax"),
    ev(text="您好，请问有什么可以帮您？😀", customer_id="客户-001"),
    ev(occurred_at="2026-10-01T09:00:00"), ev(occurred_at="2026-10-01 09:00"), ev(occurred_at="2026-10-01"),
    ev(occurred_at="2026-10-01T09:00:00Z"), ev(occurred_at="2026-10-01T09:00:00.5Z"),
    ev(occurred_at="2026-10-01T09:00:00.123456-05:30"), ev(occurred_at="2026-10-01T09:00:00.1234567+01:00"),
    ev(occurred_at="2026-10-01T09:00:00,5"), ev(occurred_at="2026-10-01T09:00:00+0800"),
    ev(occurred_at="2026-10-01T09:00:00+08"), ev(occurred_at="2026-10-01T09:00:00+24:00"),
    ev(occurred_at="2026-02-29T09:00:00Z"), ev(occurred_at="2024-02-29T23:59:59Z"), ev(occurred_at="2026-10-01T24:00:00"),
    ev(occurred_at="2026-10-01T09:00:60Z"), ev(occurred_at=" 2026-10-01T09:00:00Z "), ev(occurred_at="0001-01-01T00:00:00+01:00"),
    ev(occurred_at="9999-12-31T23:00:00-02:00"), ev(occurred_at="2026-03-08T02:30:00"), ev(occurred_at="2026-11-01T01:30:00"),
    ev(occurred_at="20261001T090000"), ev(occurred_at="２０２６-10-01T09:00:00"), ev(occurred_at=1790904138),
    ev(wait_s="12"), ev(wait_s=" 12.50 "), ev(wait_s="1_000"), ev(wait_s="1e3"), ev(wait_s=".5"), ev(wait_s="5."),
    ev(wait_s="+5"), ev(wait_s="-0"), ev(wait_s=-0.0), ev(wait_s=0), ev(wait_s=-1), ev(wait_s="nan"), ev(wait_s="inf"),
    ev(wait_s="１２"), ev(wait_s=True), ev(wait_s=[1]), ev(wait_s={"v": 1}), ev(wait_s="  "), ev(duration_s=10**400),
    ev(duration_s=123456789012345678901234567890), ev(duration_s=0.1 + 0.2), ev(duration_s=1e-320), ev(duration_s="1e400"),
    ev(attributes={"b": 1, "a": {"d": [1, 2.5, None, True], "c": "x"}}), ev(attributes={}), ev(attributes=[1]),
    ev(attributes="{}"), ev(attributes={"z": "é\n\"", "α": 1e100, "big": 10**30}), ev(attributes=None),
    ev(event_id=123), ev(event_id=None), ev(event_id=""), ev(customer_id=True), ev(touchpoint=["x"]),
    ev(text=5), ev(visit_id=7), ev(extra={"nested": [1, 2]}, more=None),
]

EDGE_LINES = [
    "\ufeff" + json.dumps(ev(event_id="bom")),
    *(json.dumps(e, ensure_ascii=False) for e in EDGE_EVENTS),
    *(json.dumps(e) for e in EDGE_EVENTS[:12]),  # the same with \\u escapes
    json.dumps(ev(), separators=(",", ":")) + "\r",
    "  " + json.dumps(ev(event_id="indented")) + "  ",
    "",
    "   \t",
    '{"event_id": "d1", "event_id": "d2", "occurred_at": "2026-10-01T09:00:00Z", "customer_id": "c1", '
    '"channel": "branch", "touchpoint": "greeting"}',
    '{"event_id": "d3", "event\\u005fid": "d4", "occurred_at": "2026-10-01T09:00:00Z", "customer_id": "c1", '
    '"channel": "branch", "touchpoint": "greeting"}',
    '{"event_id": "d5", "occurred_at": "2026-10-01T09:00:00Z", "customer_id": "c1", "channel": "branch", '
    '"touchpoint": "greeting", "attributes": {"k": 1, "k": 2}}',
    json.dumps(ev(event_id="n1"))[:-1] + ', "x": NaN}',
    json.dumps(ev(event_id="n2"))[:-1] + ', "x": nan}',
    json.dumps(ev(event_id="n3"))[:-1] + ', "x": Infinity}',
    json.dumps(ev(event_id="n4"))[:-1] + ', "x": -inf}',
    json.dumps(ev(event_id="n5"))[:-1] + ', "x": [1, 2, ]}',
    json.dumps(ev(event_id="n6"))[:-1] + ',}',
    json.dumps(ev(event_id="n8", text="😀")),
    json.dumps(ev(event_id="n9")) + " {}",
    json.dumps(ev(event_id="n10")) + "\ufeff",
    "\ufeff" + json.dumps(ev(event_id="bom-not-first")),
    "[1, 2]", "42", '"text"', "null", "{oops", "{}",
]


def write_lines(path: Path, lines: list[str], invalid_utf8: bool = True) -> Path:
    data = b"".join(line.encode("utf-8", "surrogatepass") + b"\n" for line in lines)
    if invalid_utf8:
        data += b'{"event_id": "caf\xe9", "occurred_at": "2026-10-01T09:00:00Z"}\r\n' + json.dumps(ev()).encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


@pytest.mark.parametrize("name", ["edge.jsonl", "edge.jsonl.gz"])
@pytest.mark.parametrize("tz", ZONES, ids=str)
def test_edge_cases_jsonl(tmp_path, name, tz):
    path = write_lines(tmp_path / name, EDGE_LINES)
    for batch_rows in (1, 7, 1000):
        assert_same(path, "events", batch_rows, tz)


def test_edge_cases_jsonl_crlf_and_blank_first_line(tmp_path):
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b"\r\n" + b"\r\n".join(json.dumps(e, ensure_ascii=False).encode() for e in EDGE_EVENTS))
    assert_same(path, "events", 5, timezone.utc)


CSV_HEADER = ["event_id", "occurred_at", "customer_id", "channel", "touchpoint", "wait_s", "text", "attributes"]


def csv_line(cells: list[str]) -> str:
    return ",".join('"' + c.replace('"', '""') + '"' if any(x in c for x in ',"\n\r') else c for c in cells)


def test_edge_cases_csv(tmp_path):
    rows = [
        ["e1", "2026-10-01T09:00:00Z", "c1", "branch", "greeting", "12", "hi, there", '{"b": 1, "a": 2}'],
        [" e2 ", "2026-10-01 09:00:00", "\u3000c2", " App ", "x", " ", "  ", ""],
        ["e3", "2026-10-01T09:00:00Z", "c1", "branch", "x", "1_000", "多行\n文本", "[1]"],
        ["e4", "2026-10-01T09:00:00Z", "c1", "fax", "x", "-1", "", "not json"],
        ["e5", "yesterday", "c1", "branch", "x", "", "", '"text"'],
        ["", "2026-10-01T09:00:00Z", "c1", "branch", "x", "", "", ""],
        ["e6", "2026-10-01T09:00:00+08:00", "c1", "branch", "x", "nan", "", '{"k": 1, "k": 2}'],
        ["e7", "2026-10-01T09:00:00Z", "c1", "branch"],
        ["e8", "2026-10-01T09:00:00Z", "c1", "branch", "x", "1", "", "{}", "extra"],
        ["", "", "", "", "", "", "", ""],
    ]
    text = "\ufeff" + csv_line(CSV_HEADER) + "\r\n" + "\r\n".join(csv_line(r) for r in rows) + "\r\n\r\n"
    data = text.encode() + b'e9,2026-10-01T09:00:00Z,c1,branch,x,1,caf\xe9,\n'
    (tmp_path / "edge.csv").write_bytes(data)
    (tmp_path / "edge.csv.gz").write_bytes(gzip.compress(data))
    for name in ("edge.csv", "edge.csv.gz"):
        for tz in ZONES:
            assert_same(tmp_path / name, "events", 4, tz)


def test_edge_cases_feedback(tmp_path):
    def fb(**fields):
        return {"feedback_id": "f1", "submitted_at": "2026-10-01T20:00:00+08:00", "customer_id": "c1", **fields}

    records = [
        fb(csat=4), fb(csat="4"), fb(csat=4.0), fb(csat=6), fb(csat=0), fb(nps=0), fb(nps=10), fb(ces="7 "),
        fb(comment="  "), fb(comment=" ok "), fb(), fb(ratings={}), fb(ratings=None), fb(channel=None, csat=1),
        fb(channel=" ", csat=1), fb(channel="Phone", csat=1), fb(channel="fax", csat=1),
        fb(ratings={"Q5": {"expectation": 7, "perception": 5}, "empathy": 6, "q6": {"perception": "4"}}),
        fb(ratings={"Q23": 5}), fb(ratings={"Q1": {"perception": 8}}), fb(ratings={"Q1": {"expectation": 5}}),
        fb(ratings={"Q1": {"perception": 5, "other": 1}}), fb(ratings=[1]), fb(ratings="x"),
        fb(submitted_at="2026-10-01T20:00:00", csat=2), fb(submitted_at="bad", csat=2),
    ]
    path = write_lines(tmp_path / "fb.jsonl", [json.dumps(r, ensure_ascii=False) for r in records], invalid_utf8=False)
    csv_path = tmp_path / "fb.csv"
    csv_path.write_text(
        "feedback_id,submitted_at,customer_id,channel,csat,nps,comment,rating.Q5.expectation,rating.Q5.perception,"
        "rating.empathy,ratings\n"
        "f1,2026-10-01 20:00,c1,,4,9,,7,5,6,\n"
        "f2,2026-10-01 20:00,c1,,,,,,,,\n"
        "f3,2026-10-01 20:00,c1,web,,,fine,,,,\n"
        "f4,2026-10-01 20:00,c1,,,,,,,,{}\n"
        "f5,2026-10-01 20:00,c1,,,,,9,,,\n"
        "f6,2026-10-01T20:00:00Z,c1,,2,x\n",
        encoding="utf-8",
    )
    for tz in ZONES:
        assert_same(path, "feedback", 5, tz)
        assert_same(csv_path, "feedback", 2, tz)


def test_lone_surrogate_is_quarantined_alike(tmp_path):
    """A lone UTF-16 surrogate escape (valid for json.loads, not encodable) is an unparseable line on both paths."""
    path = write_lines(tmp_path / "s.jsonl", [json.dumps(ev())[:-1] + ', "text": "a \\ud800 b"}'], invalid_utf8=False)
    for read in (read_validated, read_validated_reference):
        [(valid, rejected)] = read(str(path), "events", CHANNELS, timezone.utc, 10, "2026-11-23")
        assert valid.num_rows == 0
        assert rejected.select(["line_no", "error_kind"]).to_pylist() == [{"line_no": 1, "error_kind": "unparseable_line"}]


def test_typed_parse_failures(tmp_path):
    """Lines that fail pyarrow.json's typed parse, scattered over several of its blocks (consecutive ones, at a
    block's start and end, a line longer than a block, two values on a line, Arrow-only Inf/-NaN) go to the
    reference path and every other line stays in place."""
    wrong = [ev(event_id=7), ev(wait_s="12"), ev(attributes="x"), ev(duration_s=True), ev(text=["t"])]
    lines = []
    for i in range(3000):
        kind = i % 37
        if kind < len(wrong):
            lines.append(json.dumps(wrong[kind]))
        elif kind == 10:
            lines.append(json.dumps(ev(event_id=f"long{i}", attributes={"blob": "x" * 70_000})))
        elif kind == 11:
            lines.append(json.dumps(ev(event_id=f"two{i}")) + json.dumps(ev()))
        elif kind == 12:
            lines.append(json.dumps(ev(event_id=f"inf{i}"))[:-1] + ', "x": Inf}')
        elif kind == 13:
            lines.append(json.dumps(ev(event_id=f"nan{i}"))[:-1] + ', "x": -NaN}')
        else:
            lines.append(json.dumps(ev(event_id=f"e{i}", duration_s=i / 7, attributes={"n": i, "a": "x"}),
                                    separators=(",", ":")))
    path = write_lines(tmp_path / "typed.jsonl", lines, invalid_utf8=False)
    assert_same(path, "events", 1000, timezone.utc)


# --- CSV: the vectorised path's boundaries ------------------------------------------------------------------------

def read_all(path: Path, dataset: str, tz=timezone.utc) -> tuple[list[dict], list[dict]]:
    """`read_validated`'s rows of a file, after checking them against the reference (batches of 3 rows)."""
    assert_same(path, dataset, 3, tz)
    batches = list(read_validated(str(path), dataset, CHANNELS, tz, 3, "2026-11-23"))
    return ([row for valid, _ in batches for row in valid.to_pylist()],
            [row for _, rejected in batches for row in rejected.to_pylist()])


def fast_line_nos(path: Path, dataset: str) -> list[int]:
    """The lines of a one-block CSV file whose rows the vectorised path takes as certainly valid."""
    data = path.read_bytes()
    header = formats.csv_header(formats.csv_line(data[:data.index(b"\n") + 1], 1)[0].cells)
    block = split_lines(data, 1, simple_csv(len(header)))
    positions, _ = check_csv(dataset, header, block, CHANNELS, timezone.utc, reader.VALID_SCHEMAS[dataset])
    return [int(p) + 1 for p in positions]


@pytest.mark.parametrize("line, simple", [
    (b'e1,"a, ""b""",c\n', True), (b'e1,,\r\n', True), (b'"","",x', True), (b'e1,b,c\r', True),
    (b'e1,b\n', False), (b'e1,b,c,d\n', False),  # too few / too many cells
    (b'e1,a"b,c\n', False), (b'e1,"a"b,c\n', False), (b'e1, "a",c\n', False),  # quotes Python reads leniently
    (b'e1,"open,c\n', False), (b'e1,"a\rb",c\n', False), (b'e1,"a\x00",c\n', False),
    (b',,\n', False), (b'" ",\t,\xe3\x80\x80\n', False), (b'",",,\n', False),  # (maybe) all blank: Python decides
    (b'\xef\xbb\xbfe1,b,c\n', False), (b'e1,caf\xe9,c\n', False),
])
def test_simple_csv_lines(line, simple):
    """Which lines the CSV fast path reads with pyarrow.csv; those it does read give Python's cells."""
    block = split_lines(b"h\n" + line, 1, simple_csv(3))
    assert list(block.simple) == [False, simple]
    if simple:
        table = read_csv_lines(block, 3, [0, 1, 2])
        assert [table.column(str(i))[0].as_py() for i in range(3)] == next(csv.reader([line.decode()]))


def test_csv_quoting_counts_and_encodings(tmp_path):
    """Quoted cells with commas and escapes, wrong cell counts, quotes Python reads leniently, blank and all-blank
    rows, CRLF, byte-order marks, CR and NUL in quoted cells, a line that is not UTF-8, a repeated header name."""
    good = "2026-10-01T09:00:00Z,c1,branch,greeting"
    lines = [
        "\ufeffevent_id,occurred_at,customer_id,channel,touchpoint,text,text",  # BOM; `text` twice: the last wins
        f'e1,{good},"first, ""quoted""","hi, ""you"""',
        f"e2,{good},x,y,z",  # too many cells
        f"e3,{good}",  # too few
        f'e4,{good},x,a"b',  # a stray quote in an unquoted cell
        f'e5,{good},x,"a"b',  # text after a closing quote
        f'e6,{good},x, "a"',  # a quote after a blank
        "",
        ",,,,,,",  # every cell blank: no row
        ' , ,"",\t,"  ",,',
        '",",,,,,,',  # one comma in a quoted cell: a row
        f"\ufeffe7,{good},x,y",  # a byte-order mark after line 1
        f'e8,{good},x,"a\rb"',
        f'e9,{good},x,"nul\x00"',
        f"e10,{good},x,y",
    ]
    data = "\r\n".join(lines).encode() + b"\r\ne11,2026-10-01T09:00:00Z,c1,branch,greeting,x,caf\xe9\r\n" + \
        f"e12,{good},x,last".encode()
    (tmp_path / "q.csv").write_bytes(data)
    valid, rejected = read_all(tmp_path / "q.csv", "events")
    assert [(r["event_id"], r["line_no"], r["text"]) for r in valid] == [
        ("e1", 2, 'hi, "you"'), ("e4", 5, 'a"b'), ("e5", 6, "ab"), ("e6", 7, ' "a"'), ("\ufeffe7", 12, "y"),
        ("e8", 13, "a\rb"), ("e9", 14, "nul\x00"), ("e10", 15, "y"), ("e12", 17, "last")]
    assert [(r["line_no"], r["error_kind"], r["error_message"]) for r in rejected] == [
        (3, "unparseable_line", "8 fields where the header has 7"),
        (4, "unparseable_line", "5 fields where the header has 7"),
        (11, "missing_required_field", "required field occurred_at is missing or empty"),
        (16, "unparseable_line", "not UTF-8: invalid continuation byte")]
    assert fast_line_nos(tmp_path / "q.csv", "events") == [2, 15, 17]


def test_csv_quoted_line_break_mid_file(tmp_path, monkeypatch):
    """A quoted cell spanning lines: the rows before it and after it keep their physical line numbers, whatever
    the blocks (the rest of the file from that line is read by Python's csv module)."""
    header = "event_id,occurred_at,customer_id,channel,touchpoint,text"
    rows = [f"e{i},2026-10-01T09:00:00Z,c1,branch,greeting,t{i}" for i in range(1, 40)]
    rows[19] = 'e20,2026-10-01T09:00:00Z,c1,branch,greeting,"two\nlines, ""quoted"""'
    rows[25] = 'e26,2026-10-01T09:00:00Z,c1,branch,greeting,"three\r\n\r\nlines"'
    rows[30] = "e31,2026-10-01T09:00:00Z,c1,branch"  # too few cells, after the multi-line cells
    path = tmp_path / "multi.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8", newline="")
    for block_bytes in (8 << 20, 100, 1):
        monkeypatch.setattr(reader, "read_line_blocks", functools.partial(formats.read_line_blocks, block_bytes=block_bytes))
        valid, rejected = read_all(path, "events")
        lines = {r["event_id"]: r["line_no"] for r in valid}
        assert (lines["e1"], lines["e19"], lines["e20"], lines["e21"], lines["e26"], lines["e27"], lines["e39"]) == \
            (2, 20, 21, 23, 28, 31, 43)
        assert next(r["text"] for r in valid if r["event_id"] == "e20") == 'two\nlines, "quoted"'
        assert [(r["line_no"], r["error_message"]) for r in rejected] == [(35, "4 fields where the header has 6")]


def test_csv_small_blocks(sample, tmp_path, monkeypatch):
    """Blocks that end anywhere (each block holds whole lines): the same rows as the reference."""
    gz = sample / "touchpoints" / "part-00002.csv.gz"
    path = tmp_path / "events.csv"
    path.write_bytes(gzip.decompress(gz.read_bytes())[:60_000])
    for block_bytes in (1, 333, 4096):
        monkeypatch.setattr(reader, "read_line_blocks", functools.partial(formats.read_line_blocks, block_bytes=block_bytes))
        assert_same(path, "events", 50, timezone.utc)


def test_csv_header_only_empty_and_multiline_header(tmp_path):
    """Files without rows, a blank header, a header without contract fields, a header spanning lines."""
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "header.csv").write_bytes(b"event_id,occurred_at\r\n")
    (tmp_path / "blank_header.csv").write_bytes(b"\ne1,2026-10-01T09:00:00Z\n")
    (tmp_path / "other_header.csv").write_bytes(b"a,b\n1,x\n2,2026-10-01T09:00:00Z\n")
    (tmp_path / "multi_header.csv").write_bytes(
        b'event_id,"occurred\nat",customer_id,channel,touchpoint\ne1,2026-10-01T09:00:00Z,c1,branch,greeting\n')
    for name in ("empty.csv", "header.csv", "blank_header.csv", "other_header.csv", "multi_header.csv"):
        assert_same(tmp_path / name, "events", 10, timezone.utc)
    assert read_all(tmp_path / "multi_header.csv", "events")[1][0]["line_no"] == 3


FEEDBACK_HEADER = ("feedback_id,submitted_at,customer_id,csat,comment,rating.Q5,rating.Q5.expectation,"
                   "rating.Q5.perception,rating.Q6.perception,rating.reliability,rating.empathy.expectation,"
                   "rating.empathy.perception,rating.Q1.perception")


def test_feedback_csv_ratings(tmp_path):
    """rating.* columns folded column-wise exactly as unflatten_csv_row + parse_ratings + servqual_by_dimension."""
    rows = [
        "f1,2026-10-01 20:00:00,c1,,,,6.5,5.5,4,1.1,,7,2",  # items Q1, Q5 (dict), Q6, empathy, reliability (plain)
        "f2,2026-10-01 20:00:00,c1,4,,, , ,,,,,",  # blank ratings: csat only
        "f3,2026-10-01 20:00:00,c1,,,5,,,,,,,",  # plain Q5
        "f4,2026-10-01 20:00:00,c1,,,,6,,,,,,",  # expectation without perception
        "f5,2026-10-01 20:00:00,c1,,,,,x,,,,,",  # not a number
        "f6,2026-10-01 20:00:00,c1,,,,,8,,,,,",  # out of range
        "f7,2026-10-01 20:00:00,c1,,,, 2 ,3.25,,2.2,5,3.3,",  # spaces around a number
        "f8,2026-10-01 20:00:00,c1,,,,,,,,,,",  # no signal
        "f9,2026-10-01 20:00:00,c1,,fine,,,,,,,,",  # a comment only
        "f10,2026-10-01 20:00:00,c1,,,,,nan,,,,,",
    ]
    path = tmp_path / "fb.csv"
    path.write_text(FEEDBACK_HEADER + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    valid, rejected = read_all(path, "feedback")
    by_id = {r["feedback_id"]: r for r in valid}
    assert sorted(by_id) == ["f1", "f2", "f3", "f7", "f9"]
    assert [(i["item"], i["expectation"], i["perception"]) for i in by_id["f1"]["ratings"]] == [
        ("Q1", None, 2.0), ("Q5", 6.5, 5.5), ("Q6", None, 4.0), ("empathy", None, 7.0), ("reliability", None, 1.1)]
    assert by_id["f1"]["reliability_perception"] == (5.5 + 4.0 + 1.1) / 3 and by_id["f1"]["reliability_gap"] == \
        (5.5 + 4.0 + 1.1) / 3 - 6.5
    assert by_id["f7"]["empathy_gap"] == 3.3 - 5.0 and by_id["f2"]["ratings"] == []
    assert [(r["record_id"], r["error_kind"], r["error_field"]) for r in rejected] == [
        ("f4", "wrong_type", "ratings.Q5"), ("f5", "wrong_type", "ratings.Q5.perception"),
        ("f6", "out_of_range", "ratings.Q5.perception"), ("f8", "no_feedback_signal", None),
        ("f10", "out_of_range", "ratings.Q5.perception")]
    assert fast_line_nos(path, "feedback") == [2, 3, 4, 8, 10]


@pytest.mark.parametrize("header, cells", [
    ("rating.Q23", "5"), ("rating.Q5.other", "5"), ("rating.q5.perception", "5"), ("rating.Empathy", "5"),
    ("ratings", "{}"), ("rating.Q5,rating.Q5.", "5,6"), ("rating.Q5,rating.Q5.", ",6"), ("rating.Q5,ratings", "5,x"),
    ("rating.,rating.Q5", "5,"), ("rating.Q5,rating.Q5", "5,6"), ("rating.Q5.perception,rating.Q5", ",5"),
])
def test_feedback_csv_rating_headers(tmp_path, header, cells):
    """Unusual rating columns: unknown keys and measures, keys in other cases, a `ratings` text column, two
    columns for the same rating, repeated names."""
    path = tmp_path / "fb.csv"
    path.write_text(f"feedback_id,submitted_at,customer_id,{header}\nf1,2026-10-01 20:00:00,c1,{cells}\n"
                    f"f2,2026-10-01 20:00:00,c1,{','.join('' for _ in cells.split(','))}\n", encoding="utf-8")
    assert_same(path, "feedback", 10, timezone.utc)


@pytest.mark.parametrize("columns", ["rating.Q5,rating.Q5.perception", "rating.Q5.perception,rating.Q5"])
def test_feedback_csv_plain_and_measured_rating_rejected_alike(tmp_path, columns):
    """`rating.Q5` and `rating.Q5.perception` both filled (either column order): a wrong_type rejection of the
    row (the fast path leaves it to the reference path) and the rest of the file is read."""
    path = tmp_path / "fb.csv"
    path.write_text(f"feedback_id,submitted_at,customer_id,{columns},rating.Q1\n"
                    "f1,2026-10-01 20:00:00,c1,5,6,4\n"
                    "f2,2026-10-01 20:00:00,c1,,6,4\n"
                    "f3,2026-10-01 20:00:00,c1,5,,\n", encoding="utf-8")
    valid, rejected = read_all(path, "feedback")
    assert [r["feedback_id"] for r in valid] == ["f2", "f3"]
    assert [(r["record_id"], r["line_no"], r["error_kind"], r["error_field"], r["error_message"]) for r in rejected] == [
        ("f1", 2, "wrong_type", "ratings", "ratings.Q5: both a value and measures")]
    assert fast_line_nos(path, "feedback") == [3, 4]


def fast_jsonl_line_nos(path: Path, dataset: str) -> list[int]:
    """The lines of a one-block JSON Lines file whose rows the vectorised path takes as certainly valid."""
    block = split_lines(path.read_bytes(), 1)
    positions, _ = check_lines(dataset, block, CHANNELS, timezone.utc, reader.VALID_SCHEMAS[dataset])
    return [int(p) + 1 for p in positions]


ALL_KEYS = {**{f"Q{i}": {"expectation": 1 + i % 7, "perception": 1 + (i * 3) % 7} for i in range(1, 23)},
            "reliability": 2.5, "responsiveness": {"perception": 7}, "assurance": 1, "empathy": 6.75, "tangibles": 4}

# (ratings as JSON text, csat, whether the row takes the fast path)
JSONL_RATINGS = [
    ('{"Q1": 5, "empathy": 7}', 3, True),  # plain numbers
    ('{"Q5": {"expectation": 7, "perception": 5}, "Q6": {"perception": 4, "expectation": 6}}', 3, True),  # measures
    ('{"Q5": 1, "Q6": {"expectation": 7, "perception": 2}, "Q7": {"perception": 6}, "reliability": 3}', None, True),
    (json.dumps(ALL_KEYS), None, True),  # every key, SERVQUAL means of several items
    ('{"Q1": 5.5, "Q2": {"expectation": 6.25, "perception": 1e0}, "Q3": 7.0, "Q4": 0.1e1}', 3, True),  # non-integers
    ('{ "Q1" :5 ,"Q2":{ "perception" : 6 , "expectation":7} }', 3, True),  # spacing
    ('\t{"Q1":\t5}\t', 3, True),
    ("{}", 3, True), ("null", 3, True), ("{}", None, False), ("null", None, False),  # empty, null: no signal
    ('{"Q1": {"expectation": 5}}', 3, False), ('{"Q1": {}}', 3, False),  # missing perception
    ('{"Q1": {"expectation": 5, "perception": null}}', 3, False), ('{"Q1": null}', 3, False),
    ('{"Q1": {"expectation": null, "perception": 5}}', 3, False),  # valid, but not the plain form
    ('{"Q1": 8}', 3, False), ('{"Q1": 0}', 3, False), ('{"Q1": -0}', 3, False), ('{"Q1": 1e400}', 3, False),
    ('{"Q1": {"expectation": 8, "perception": 5}}', 3, False), ('{"Q1": {"expectation": 5, "perception": 0.5}}', 3, False),
    ('{"Q1": "5"}', 3, False), ('{"Q1": {"perception": " 6 "}}', 3, False),  # numbers as text: valid
    ('{"Q1": true}', 3, False), ('{"Q1": [5]}', 3, False), ('{"Q1": {"perception": {"v": 5}}}', 3, False),
    ('{"Q1": {"perception": [5]}}', 3, False), ('{"Q1": "good"}', 3, False),  # nested wrong types
    ('{"Q23": 5}', 3, False), ('{"q6": 4}', 3, False), ('{"Empathy": 5}', 3, False), ('{"speed": {"perception": 5}}', 3, False),
    ('{"Q1": {"perception": 5, "importance": 3}}', 3, False),  # unknown keys and measures
    ('{"Q1": 5, "Q1": 6}', 3, False), ('{"Q1": {"perception": 5, "perception": 6}}', 3, False),  # duplicates
    ('{"Q\\u0031": 5}', 3, False), ('{"Q1": {"perc\\u0065ption": 5}}', 3, False),  # escapes
    ('{"Q1":\r5}', 3, False),  # CR: Arrow would end the line there
    ('"x"', 3, False), ("[1]", 3, False), ("5", 3, False),
]


def test_feedback_jsonl_ratings(tmp_path):
    """JSON Lines ratings objects: the plain form is parsed by pyarrow.json and folded column-wise exactly as
    parse_ratings + servqual_by_dimension; every other form goes to the reference path."""
    lines = [json.dumps({"feedback_id": "f0", "submitted_at": "2026-10-01T20:00:00Z", "customer_id": "c0", "csat": 1})]
    for i, (ratings, csat, _) in enumerate(JSONL_RATINGS, start=1):
        head = json.dumps({"feedback_id": f"f{i}", "submitted_at": "2026-10-01T20:00:00Z", "customer_id": "c1",
                           **({"csat": csat} if csat else {})})
        lines.append(f'{head[:-1]}, "ratings": {ratings}}}')
    lines.append('{"feedback_id": "last", "submitted_at": "2026-10-01T20:00:00Z", "customer_id": "c1", '
                 '"ratings": {"Q1": 5}, "csat": 3}')  # ratings not the last member
    path = write_lines(tmp_path / "fb.jsonl", lines, invalid_utf8=False)
    valid, rejected = read_all(path, "feedback")
    assert fast_jsonl_line_nos(path, "feedback") == [i + 2 for i, (_, _, fast) in enumerate(JSONL_RATINGS) if fast]
    by_id = {r["feedback_id"]: r for r in valid}
    assert [(i["item"], i["expectation"], i["perception"]) for i in by_id["f3"]["ratings"]] == [
        ("Q5", None, 1.0), ("Q6", 7.0, 2.0), ("Q7", None, 6.0), ("reliability", None, 3.0)]
    assert by_id["f3"]["reliability_perception"] == (1.0 + 2.0 + 6.0 + 3.0) / 4 and by_id["f3"]["reliability_gap"] == \
        (1.0 + 2.0 + 6.0 + 3.0) / 4 - 7.0
    assert len(by_id["f4"]["ratings"]) == 27 and by_id["f8"]["ratings"] == [] and by_id["f9"]["ratings"] == []
    reference_valid = {"f16", "f23", "f24", "f31", "f32", "f35", "f36", "f37", "f38", "f39", "last"}
    assert set(by_id) == {"f0", *(f"f{i}" for i in (1, 2, 3, 4, 5, 6, 7, 8, 9))} | reference_valid
    assert [i["perception"] for i in by_id["f35"]["ratings"]] == [6.0]  # a key given twice: the last one
    assert len(rejected) == len(JSONL_RATINGS) - 9 - len(reference_valid) + 1


def test_feedback_jsonl_ratings_parse_failures(tmp_path):
    """Ratings texts that fail pyarrow.json's typed parse (a key given twice, a number beyond float64), scattered
    over several of its 64 KB blocks, go to the reference path; every other row stays fast."""
    lines = [json.dumps({"feedback_id": "f0", "submitted_at": "2026-10-01T20:00:00Z", "customer_id": "c0", "csat": 1})]
    for i in range(1, 3000):
        ratings = {f"Q{q}": {"expectation": 1 + (i + q) % 7, "perception": 1 + (i * q) % 7} for q in range(1, 23)}
        text = json.dumps(ratings)
        if i % 41 == 0:
            text = text[:-1] + ', "Q1": 3}'
        elif i % 43 == 0:
            text = text[:-1] + ', "empathy": 1e400}'
        elif i % 47 == 0:
            text = '{"Q1": {"perception": 2, "perception": 3}}'
        lines.append(json.dumps({"feedback_id": f"f{i}", "submitted_at": "2026-10-01T20:00:00Z", "customer_id": "c1"})[:-1]
                     + f', "ratings": {text}}}')
    path = write_lines(tmp_path / "many.jsonl", lines, invalid_utf8=False)
    assert_same(path, "feedback", 1000, timezone.utc)
    slow = {i for i in range(1, 3000) if i % 41 == 0 or i % 43 == 0 or i % 47 == 0}
    assert fast_jsonl_line_nos(path, "feedback") == [i + 1 for i in range(1, 3000) if i not in slow]


def test_csv_long_cells(tmp_path):
    """A cell longer than the csv module's field size limit, and a line over the maximum line size, are unparseable
    lines on both paths alike; with a higher limit, a long cell within the line size is read whole."""
    path = tmp_path / "long.csv"
    path.write_text("event_id,occurred_at,customer_id,channel,touchpoint,text\n"
                    f"e1,2026-10-01T09:00:00Z,c1,branch,greeting,{'x' * 200_000}\n"
                    f"e2,2026-10-01T09:00:00Z,c1,branch,greeting,{'x' * (2 << 20)}\n"
                    "e3,2026-10-01T09:00:00Z,c1,branch,greeting,y\n", encoding="utf-8")
    for read in (read_validated, read_validated_reference):
        [(valid, rejected)] = read(str(path), "events", CHANNELS, timezone.utc, 10, "2026-11-23")
        assert valid.column("line_no").to_pylist() == [4]
        assert [(r["line_no"], r["error_kind"], r["error_message"][:24]) for r in rejected.to_pylist()] == [
            (2, "unparseable_line", "CSV: field larger than f"), (3, "unparseable_line", "a line of 2,097,196 byte")]
    limit = csv.field_size_limit(4 << 20)
    try:
        valid, _ = read_all(path, "events")
        assert [len(r["text"]) for r in valid] == [200_000, 1]
        assert 2 in fast_line_nos(path, "events")  # the long cell by the vectorised path
    finally:
        csv.field_size_limit(limit)


# --- identifiers (issue 18): the fast path normalises them as validate.py does ---------------------------------------
# (identifiers, attributes, whether the row takes the fast path)
JSONL_IDENTIFIERS = [
    ({"device_id": "d-7781", "Phone": " +86 137 0629 0800 "}, None, True),  # type lower-cased, value stripped
    ({"email": " ", "card": None}, None, True),  # blank and null values dropped: no identifiers
    ({}, {"b": 1, "a": [1, 2]}, True),  # with attributes before or after it: both objects read
    ({"账号": "6222-01"}, None, False), ({"customer_id": "c9"}, None, False),  # types the contract refuses
    ({"phone": "1", "PHONE": "2"}, None, False), ({"phone": 13706290800}, None, False),  # twice; not a string
    ({"phone": "a \ud800 b"}, None, False),  # a lone surrogate
    ("d-7781", None, False), ([1], None, False),  # not an object
]


def identifier_lines() -> list[str]:
    lines = []
    for i, (identifiers, attributes, _) in enumerate(JSONL_IDENTIFIERS):
        row = ev(event_id=f"i{i}", identifiers=identifiers)
        if attributes is not None:
            row = {**row, "attributes": attributes}  # after identifiers
            lines.append(json.dumps({**ev(event_id=f"a{i}"), "attributes": attributes, "identifiers": identifiers}))
            lines.append(json.dumps({"attributes": attributes, **ev(event_id=f"b{i}", identifiers=identifiers)}))
        lines.append(json.dumps(row, ensure_ascii=False) if i != 7 else json.dumps(row))
    return lines


def test_jsonl_identifiers(tmp_path):
    """Rows with identifiers take the vectorised path (issue 18: they used to go row by row) and give exactly the
    reference path's rows and rejections; `identifiers` null (or absent) costs nothing."""
    lines = identifier_lines() + [json.dumps(ev(event_id="null", identifiers=None)), json.dumps(ev(event_id="plain"))]
    path = write_lines(tmp_path / "ids.jsonl", ["{}"] + lines, invalid_utf8=False)  # the first line never counts
    valid, rejected = read_all(path, "events")
    assert {r["event_id"]: r["identifiers"] for r in valid} == {
        "i0": '{"device_id": "d-7781", "phone": "+86 137 0629 0800"}', "i1": None, "a2": None, "b2": None, "i2": None,
        "null": None, "plain": None}
    assert {r["event_id"]: r["attributes"] for r in valid if r["attributes"]} == {
        "a2": '{"a": [1, 2], "b": 1}', "b2": '{"a": [1, 2], "b": 1}', "i2": '{"a": [1, 2], "b": 1}'}
    assert sorted((r["record_id"], r["error_kind"], r["error_field"]) for r in rejected if r["record_id"]) == [
        ("i3", "out_of_range", "identifiers.账号"), ("i4", "out_of_range", "identifiers.customer_id"),
        ("i5", "out_of_range", "identifiers.PHONE"), ("i6", "wrong_type", "identifiers.phone"),
        ("i8", "wrong_type", "identifiers"), ("i9", "wrong_type", "identifiers")]
    assert [r["error_kind"] for r in rejected if not r["record_id"]] == ["missing_required_field", "unparseable_line"]
    fast = {json.loads(lines[n - 2])["event_id"] for n in fast_jsonl_line_nos(path, "events")}
    assert fast == {"i0", "i1", "a2", "i2", "null", "plain"}  # b2: its attributes are not the last member


def test_csv_identifier_columns(tmp_path):
    """`identifier.<type>` columns are folded on the vectorised path as `unflatten_csv_row` folds them."""
    path = tmp_path / "ids.csv"
    path.write_text("event_id,occurred_at,customer_id,channel,touchpoint,identifier.device_id,identifier.Phone\n"
                    "e1,2026-10-01T09:00:00Z,c1,app,login,d-7781, +86 137 0629 0800 \n"
                    "e2,2026-10-01T09:05:00Z,c1,app,login,,\n"
                    "e3,2026-10-01T09:06:00Z,c1,app,login,d-2,\n", encoding="utf-8")
    valid, rejected = read_all(path, "events")
    assert [(r["event_id"], r["identifiers"]) for r in valid] == [
        ("e1", '{"device_id": "d-7781", "phone": "+86 137 0629 0800"}'), ("e2", None), ("e3", '{"device_id": "d-2"}')]
    assert rejected == [] and fast_line_nos(path, "events") == [2, 3, 4]


@pytest.mark.parametrize("header, cells, fast", [
    ("identifier.phone,identifier.PHONE", "1,2", False),  # one type twice: rejected by the reference
    ("identifier.phone,identifiers", '1,"{""email"": ""a@b.c""}"', False),  # both forms: the reference decides
    ("identifiers", '"{""Email"": ""a@b.c""}"', True), ("identifiers", " ", True),
])
def test_csv_identifier_headers(tmp_path, header, cells, fast):
    path = tmp_path / "ids.csv"
    path.write_text(f"event_id,occurred_at,customer_id,channel,touchpoint,{header}\n"
                    f"e1,2026-10-01T09:00:00Z,c1,app,login,{cells}\n", encoding="utf-8")
    read_all(path, "events")
    assert fast_line_nos(path, "events") == ([2] if fast else [])


def test_jsonl_identifiers_the_fast_path_cannot_find_go_to_the_reference_path(tmp_path):
    """The identifiers object is found by its text only where that is certain; every other form is read row by
    row, with the reference path's outcome."""
    base = json.dumps(ev(event_id="x"))[:-1]
    lines = [
        "{}",
        base.replace('"x"', '"first"').replace('{', '{"identifiers": {"device_id": "d-1"}, ', 1)
        + ', "attributes": {"a": 1}}',  # the first member; attributes last: fast
        base.replace('"x"', '"escaped"') + ', "identifi\\u0065rs": {"device_id": "d-2"}, '
        '"attributes": {"identifiers": {"device_id": "nested"}}}',  # the real key is escaped, a nested one is not
        base.replace('"x"', '"brace"') + ', "identifiers": {"device_id": "d-}3"}}',  # a brace inside a value
        base.replace('"x"', '"twice"') + ', "identifiers": {"device_id": "d-4"}, "identifiers": {"device_id": "d-5"}}',
        base.replace('"x"', '"value"').replace('"greeting"', '"identifiers"') + ', "identifiers": {"device_id": "d-6"}}',
        base.replace('"x"', '"escaped-value"') + ', "identifiers": {"device_id": "d-\\u0037"}}',  # \\u0037 is "7"
        base.replace('"x"', '"cr"') + ', "identifiers":\r{"device_id": "d-8"}}',
    ]
    path = write_lines(tmp_path / "ids.jsonl", lines, invalid_utf8=False)
    valid, rejected = read_all(path, "events")
    assert {r["event_id"]: r["identifiers"] for r in valid} == {
        "first": '{"device_id": "d-1"}', "escaped": '{"device_id": "d-2"}', "brace": '{"device_id": "d-}3"}',
        "twice": '{"device_id": "d-5"}', "value": '{"device_id": "d-6"}', "escaped-value": '{"device_id": "d-7"}',
        "cr": '{"device_id": "d-8"}'}
    fast = {json.loads(lines[n - 1])["event_id"] for n in fast_jsonl_line_nos(path, "events")}
    assert fast == {"first"}
