"""The vectorised read_validated equals the per-row reference path exactly (same batches, rows, values, schemas)."""
from __future__ import annotations

import gzip
import json
import sys
from datetime import timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pipelines.contract import DEFAULT_CHANNELS
from pipelines.fastparse import WHITESPACE
from pipelines.ingest import read_validated, read_validated_reference
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


def test_lone_surrogate_fails_alike(tmp_path):
    """A lone UTF-16 surrogate escape (valid for json.loads, not encodable) fails both paths the same way."""
    path = write_lines(tmp_path / "s.jsonl", [json.dumps(ev())[:-1] + ', "text": "a \\ud800 b"}'], invalid_utf8=False)
    for read in (read_validated, read_validated_reference):
        with pytest.raises(UnicodeEncodeError):
            list(read(str(path), "events", CHANNELS, timezone.utc, 10, "2026-11-23"))


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
