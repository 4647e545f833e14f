"""Source mappings read end to end (`read_source`): each capability on a small fixture, with the exact rows."""
from __future__ import annotations

import gzip
import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.ingest.contract import DEFAULT_CHANNELS
from pipelines.ingest.formats import InputError
from pipelines.ingest.sources.reader import read_source
from pipelines.ingest.sources.spec import SourceError, load_source, parse_source

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sources"
CHANNELS = frozenset(DEFAULT_CHANNELS)
UTC = timezone.utc


def read(source, path=None) -> tuple[list[dict], list[dict], Counter]:
    """(valid rows, rejected rows, counts) of a source's file, without lineage file names and empty values."""
    valid, rejected, counts = [], [], Counter()
    for v, r, c in read_source(str(path or source.paths[0]), source, CHANNELS, UTC, 3, "2026-01-01"):
        valid += v.to_pylist()
        rejected += r.to_pylist()
        counts += c
    strip = lambda row: {k: v for k, v in row.items() if v not in (None, []) and k != "source_file"}  # noqa: E731
    return [strip(r) for r in valid], [strip(r) for r in rejected], counts


def fixture(name: str):
    return load_source(str(FIXTURES / f"{name}.yaml"), [str(FIXTURES / Path(load_source(str(FIXTURES / f"{name}.yaml")).paths[0]).name)])


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_gbk_csv_with_chinese_headers_value_maps_units_and_an_unmapped_code():
    valid, rejected, counts = read(fixture("branch_gbk"))
    assert valid == [
        {"event_id": "B001", "occurred_at": at("2026-10-01T01:05:00+00:00"), "customer_id": "C9001", "channel": "branch",
         "touchpoint": "greeting", "staff_id": "T01", "wait_s": 180.0, "line_no": 2},
        {"event_id": "B002", "occurred_at": at("2026-10-01T01:20:00+00:00"), "customer_id": "C9001", "channel": "branch",
         "touchpoint": "counter_service", "staff_id": "T01", "wait_s": 750.0, "text": "首次开户", "line_no": 3},
        {"event_id": "B003", "occurred_at": at("2026-10-01T02:00:00+00:00"), "customer_id": "C9002", "channel": "app",
         "touchpoint": "complaint", "text": "等了很久", "line_no": 4},  # NA minutes: null
    ]
    assert [(r.get("record_id"), r["error_kind"], r.get("error_field"), r["error_message"], r["line_no"], r["dt"]) for r in rejected] == [
        ("B004", "unmapped_value", "渠道", "channel: 渠道 value '电话' is not in the map", 5, "2026-10-01")]
    assert json.loads(rejected[0]["raw_record"])["渠道"] == "电话"
    assert counts == Counter({"rows_in": 4, "rows_with_moments": 3, "events_out": 3, "quarantine.unmapped_value": 1})


def test_tsv_row_with_several_moments_date_and_time_columns_and_seconds_between_columns():
    valid, rejected, counts = read(fixture("calls"))
    berlin = lambda t: at(f"2026-10-01T{t}+02:00")  # noqa: E731
    assert [(r["event_id"], r["occurred_at"], r["touchpoint"], r.get("wait_s"), r.get("duration_s"), r.get("staff_id"),
             r["line_no"]) for r in valid] == [
        ("K1-ivr", berlin("09:00:00"), "ivr_menu", None, None, None, 2),
        ("K1-queue", berlin("09:01:10"), "queue_ticket", 150.0, None, None, 2),
        ("K1-answer", berlin("09:03:40"), "counter_service", None, 380.0, "A7", 2),
        ("K1-end", berlin("09:10:00"), "farewell", None, None, "A7", 2),
        ("K2-ivr", berlin("09:30:00"), "ivr_menu", None, None, None, 3),  # no queue time: no queue moment
        ("K2-answer", berlin("09:30:20"), "counter_service", None, 300.0, "A8", 3),
        ("K2-end", berlin("09:35:20"), "farewell", None, None, "A8", 3),
        ("K3-ivr", berlin("10:00:00"), "ivr_menu", None, None, None, 4),  # abandoned in the queue
        ("K3-queue", berlin("10:00:30"), "queue_ticket", None, None, None, 4),
    ]
    assert {r["visit_id"] for r in valid} == {"K1", "K2", "K3"} and {r["channel"] for r in valid} == {"phone"}
    assert [(r.get("record_id"), r["error_kind"], r.get("error_field"), r["error_message"], r["line_no"]) for r in rejected] == [
        ("K4-ivr", "bad_timestamp", "call_date,ivr_at",
         "moment ivr: occurred_at: call_date,ivr_at value '01.10.2026 25:00:00' does not match '%d.%m.%Y %H:%M:%S'", 5),
        (None, "unparseable_line", None, "4 cells where the header has 8", 6),  # a row with fewer cells
    ]
    # every source row: its events (4 + 3 + 2), or one quarantine row (K4 with three good moments, K5)
    assert counts == Counter({"rows_in": 5, "rows_with_moments": 3, "events_out": 9, "quarantine.bad_timestamp": 1,
                              "quarantine.unparseable_line": 1})


def test_survey_with_three_header_rows_scores_by_label_and_servqual_ratings():
    valid, rejected, counts = read(fixture("survey"))
    assert [(r["feedback_id"], r["submitted_at"], r.get("csat"), r.get("nps"), r.get("comment"), r["ratings"], r["line_no"])
            for r in valid] == [
        ("R1", at("2026-10-01T04:00:00+00:00"), 5, 9, "Quick and friendly",
         [{"item": "Q1", "dimension": "tangibles", "expectation": 6.0, "perception": 5.0},
          {"item": "Q5", "dimension": "reliability", "expectation": 7.0, "perception": 4.0},
          {"item": "empathy", "dimension": "empathy", "expectation": None, "perception": 6.0}], 4),
        ("R2", at("2026-10-01T05:00:00+00:00"), None, 3, "Waited too long, nobody called back",
         [{"item": "Q5", "dimension": "reliability", "expectation": 6.0, "perception": 2.0}], 5),
    ]
    assert valid[0]["reliability_gap"] == -3.0 and valid[0]["tangibles_gap"] == -1.0
    assert [(r.get("record_id"), r["error_kind"], r.get("error_field"), r["line_no"]) for r in rejected] == [
        ("R3", "wrong_type", "ratings.Q1", 6),  # an expectation without a perception
        ("R4", "unmapped_value", "overall", 7),  # "Meh" is not a csat label
    ]
    assert counts["rows_in"] == 4 and counts["events_out"] == 2


def test_xes_event_log_with_trace_attributes_and_a_derived_id():
    valid, rejected, counts = read(fixture("permits"))
    assert [(r["customer_id"], r["channel"], r["touchpoint"], r.get("staff_id"), r["occurred_at"], r["line_no"])
            for r in valid] == [
        ("case-1", "web", "confirmation_of_receipt", "Resource21", at("2011-10-11T13:45:40.276+02:00"), 8),
        ("case-1", "web", "t02_check_confirmation_of_receipt", None, at("2011-10-12T08:26:25.398+02:00"), 13),
        ("case-2", "branch", "confirmation_of_receipt", "Resource03", at("2011-11-02T09:00:00+01:00"), 22),
    ]
    ids = [r["event_id"] for r in valid]
    assert len(set(ids)) == 3 and all(i.startswith("ev-") and len(i) == 23 for i in ids)
    assert ids == [r["event_id"] for r in read(fixture("permits"))[0]]  # stable
    assert rejected == [] and counts["rows_in"] == 3


def test_gzip_xes_reads_as_the_plain_file(tmp_path):
    path = tmp_path / "permits.xes.gz"
    path.write_bytes(gzip.compress((FIXTURES / "permits.xes").read_bytes()))
    assert read(fixture("permits"), path)[0] == read(fixture("permits"))[0]


EVENTS_YAML = """
dataset: events
paths: [unused]
format: {format}
fields:
  event_id: {{template: "{{num}}-{{seq}}"}}
  occurred_at: {{column: ts, format: epoch_ms}}
  customer_id: cust
  channel: {{value: web}}
  touchpoint: {{column: step, case: lower}}
"""


def test_jsonl_source_with_a_template_id_and_epoch_milliseconds(tmp_path):
    path = tmp_path / "export.jsonl"
    path.write_text('{"num": "A1", "seq": 1, "ts": 1790000000000, "cust": "c1", "step": "Greeting", "extra": {"k": 1}}\n'
                    '\n[1, 2]\n{"num": "A1", "seq": 2, "ts": "soon", "cust": "c1", "step": "Checkout"}\n', encoding="utf-8")
    source = parse_source(EVENTS_YAML.format(format="{type: jsonl}"), "export.yaml")
    valid, rejected, counts = read(source, path)
    assert valid == [{"event_id": "A1-1", "occurred_at": datetime.fromtimestamp(1790000000, UTC), "customer_id": "c1",
                      "channel": "web", "touchpoint": "greeting", "attributes": '{"extra": "{\\"k\\": 1}"}', "line_no": 1}]
    assert [(r["error_kind"], r["line_no"], r.get("error_field")) for r in rejected] == [
        ("unparseable_line", 3, None), ("bad_timestamp", 4, "ts")]
    assert counts["rows_in"] == 3


def test_parquet_source(tmp_path):
    path = tmp_path / "export.parquet"
    pq.write_table(pa.table({"num": ["P1"], "seq": [7], "ts": [1790000000000], "cust": ["c9"], "step": ["CHECKOUT"]}), path)
    source = parse_source(EVENTS_YAML.format(format="{type: parquet}"), "export.yaml")
    valid, rejected, _ = read(source, path)
    assert [(r["event_id"], r["touchpoint"], r["line_no"]) for r in valid] == [("P1-7", "checkout", 1)] and rejected == []


def test_semicolon_csv_without_header_quoted_cells_and_utf8_bom(tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes("\ufeffA1;1;1790000000000;c1;\"Greet;ing\"\nA1;2;1790000060000;c1;Checkout\n".encode("utf-8"))
    yaml_text = EVENTS_YAML.format(format="{type: csv, delimiter: ';', header: false, columns: [num, seq, ts, cust, step]}")
    valid, rejected, _ = read(parse_source(yaml_text, "export.yaml"), path)
    assert [(r["event_id"], r["touchpoint"], r["line_no"]) for r in valid] == [("A1-1", "greet;ing", 1), ("A1-2", "checkout", 2)]


def test_utf16_with_bom(tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes("num,seq,ts,cust,step\nA1,1,1790000000000,客户1,Greeting\n".encode("utf-16"))
    valid, _, _ = read(parse_source(EVENTS_YAML.format(format="{type: csv, encoding: utf-16}"), "export.yaml"), path)
    assert [(r["event_id"], r["customer_id"]) for r in valid] == [("A1-1", "客户1")]


def test_a_wrong_encoding_quarantines_each_bad_row_never_mojibake(tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes("num,seq,ts,cust,step\nA1,1,1790000000000,c1,Greeting\n".encode("utf-8")
                     + "A1,2,1790000060000,客户,Checkout\n".encode("gbk"))  # declared UTF-8, one line GBK
    valid, rejected, counts = read(parse_source(EVENTS_YAML.format(format="{type: csv}"), "export.yaml"), path)
    assert [r["event_id"] for r in valid] == ["A1-1"]
    assert [(r["error_kind"], r["line_no"], r["error_message"]) for r in rejected] == [("unparseable_line", 3, "not utf-8")]
    assert counts == Counter({"rows_in": 2, "rows_with_moments": 1, "events_out": 1, "quarantine.unparseable_line": 1})


def test_a_column_named_in_the_source_file_but_missing_from_the_header_stops_the_read(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("num,seq,timestamp,cust,step\nA1,1,1790000000000,c1,Greeting\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"not in the data: 'ts' \(fields.occurred_at\); its columns are num, seq, timestamp"):
        read(parse_source(EVENTS_YAML.format(format="{type: csv}"), "export.yaml"), path)


def test_a_contract_violation_after_mapping_is_the_rows_quarantine_reason(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("num,seq,ts,cust,step\nA1,1,1790000000000,,Greeting\nA1,2,1790000000000,c2,   \n", encoding="utf-8")
    _, rejected, _ = read(parse_source(EVENTS_YAML.format(format="{type: csv}"), "export.yaml"), path)
    assert [(r.get("record_id"), r["error_kind"], r.get("error_field")) for r in rejected] == [
        ("A1-1", "missing_required_field", "customer_id"), ("A1-2", "missing_required_field", "touchpoint")]


def test_a_quoted_cell_with_line_breaks_and_blank_lines_keep_the_line_numbers(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text('num,seq,ts,cust,step\r\nA1,1,1790000000000,c1,"Greet\r\n\r\ning"\r\n\r\n,,,,\r\n'
                    "A1,2,1790000060000,c1,Checkout\r\nA1,3\r\n", encoding="utf-8")
    valid, rejected, counts = read(parse_source(EVENTS_YAML.format(format="{type: csv}"), "export.yaml"), path)
    assert [(r["event_id"], r["line_no"]) for r in valid] == [("A1-1", 2), ("A1-2", 7)]
    assert [(r["error_kind"], r["line_no"]) for r in rejected] == [("unparseable_line", 8)]
    assert counts["rows_in"] == 3  # the blank line and the row of empty cells are not rows


IDENTIFIERS_YAML = EVENTS_YAML + """identifiers:
  card: card
  device_id: {{column: device, case: lower}}
  phone: phone
"""


def test_identifiers_mapped_from_columns_blank_cells_left_out_and_not_in_attributes(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("num,seq,ts,cust,step,card,device,phone,note,memo\n"
                    "A1,1,1790000000000,c1,Greeting,6222-01,D-77,,hi,\n"
                    "A1,2,1790000060000,c2,Checkout,,,,,\n"  # no identifier, no attribute: both null
                    "A1,3,1790000120000,c3,Checkout,6222-01,, 13800000001 ,,m\n", encoding="utf-8")
    valid, rejected, counts = read(parse_source(IDENTIFIERS_YAML.format(format="{type: csv}"), "export.yaml"), path)
    assert rejected == [] and counts["events_out"] == 3
    assert [(r["customer_id"], r.get("identifiers"), r.get("attributes")) for r in valid] == [
        ("c1", '{"card": "6222-01", "device_id": "d-77"}', '{"note": "hi"}'),
        ("c2", None, None),
        ("c3", '{"card": "6222-01", "phone": "13800000001"}', '{"memo": "m"}'),  # stripped as validation does
    ]


def test_an_identifier_type_that_is_not_a_lower_case_name_or_is_customer_id_stops_the_source_file():
    for name in ("Card", "customer_id", "2fa"):
        text = EVENTS_YAML.format(format="{type: csv}") + f"identifiers:\n  {name}: card\n"
        with pytest.raises(SourceError, match=f"identifier type '{name}' must be a lower-case name"):
            parse_source(text, "export.yaml")


def test_an_identifier_column_missing_from_the_header_stops_the_read(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("num,seq,ts,cust,step\nA1,1,1790000000000,c1,Greeting\n", encoding="utf-8")
    text = EVENTS_YAML.format(format="{type: csv}") + "identifiers:\n  card: card_no\n"
    with pytest.raises(InputError, match=r"not in the data: 'card_no' \(identifiers.card\)"):
        read(parse_source(text, "export.yaml"), path)
