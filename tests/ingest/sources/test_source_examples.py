"""The example source files on the real raw exports in ../shared, compared with the logs already converted to the
input contract; and a full run that reads a source and a contract file together."""
from __future__ import annotations

import gzip
import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.ingest.contract import DEFAULT_CHANNELS
from pipelines.ingest.sources.reader import read_source
from pipelines.ingest.sources.spec import load_source

ROOT = Path(__file__).resolve().parents[3]
EVENTS = ROOT.parent / "shared" / "data" / "events"
needs_shared = pytest.mark.skipif(not (EVENTS / "raw").is_dir(), reason=f"the real raw exports are not in {EVENTS / 'raw'}")
COMPARED = ("occurred_at", "customer_id", "visit_id", "channel", "touchpoint", "staff_id", "location_id")


def mapped(example: str) -> tuple[list[dict], Counter]:
    source = load_source(str(ROOT / "examples" / "sources" / example))
    path = str(EVENTS / "raw" / Path(source.paths[0]).name)
    rows, counts = [], Counter()
    for valid, rejected, c in read_source(path, source, frozenset(DEFAULT_CHANNELS), timezone.utc, 200_000, "2026-01-01"):
        assert rejected.num_rows == 0
        rows += valid.select(["event_id", *COMPARED, "line_no"]).to_pylist()
        counts += c
    return rows, counts


def converted(name: str) -> list[dict]:
    with gzip.open(EVENTS / name, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def compared(rows: list[dict], reference: list[dict]) -> tuple[Counter, Counter]:
    """The rows' compared fields and the converted log's, as multisets (the converted log sorted three updates of
    one incident by time)."""
    def key(row: dict, parse: bool) -> tuple:
        return tuple(datetime.fromisoformat(row[f]).astimezone(timezone.utc) if parse and f == "occurred_at" else row[f]
                     for f in COMPARED)
    return Counter(key(r, False) for r in rows), Counter(key(r, True) for r in reference)


@needs_shared
def test_wabo_receipt_source_gives_the_converted_log():
    rows, counts = mapped("wabo_receipt.yaml")
    assert counts == Counter({"rows_in": 8577, "rows_with_moments": 8577, "events_out": 8577})
    assert len({r["visit_id"] for r in rows}) == 1434
    reference = converted("wabo_receipt.jsonl.gz")
    assert [r["event_id"] for r in rows] == [r["event_id"] for r in reference]
    mine, theirs = compared(rows, reference)
    assert mine == theirs


@needs_shared
def test_servicenow_incident_source_gives_the_converted_log():
    rows, counts = mapped("servicenow_incident.yaml")
    assert counts == Counter({"rows_in": 119998, "rows_with_moments": 119998, "events_out": 119998})
    assert len({r["visit_id"] for r in rows}) == 20769 and len({r["event_id"] for r in rows}) == 119998
    assert [r["line_no"] for r in rows[:3]] == [2, 3, 4]
    reference = converted("servicenow_incident.jsonl.gz")
    mine, theirs = compared(rows, reference)
    assert mine == theirs


def test_a_run_reads_a_source_and_a_contract_file_together(tmp_path):
    fixtures = ROOT / "tests" / "fixtures"
    result = CliRunner().invoke(app, [
        "run", "--source", f"{fixtures / 'sources' / 'calls.yaml'}={fixtures / 'sources' / 'calls.tsv'}",
        "-t", str(fixtures / "events_a.jsonl"), "--out", str(tmp_path / "out"), "--no-check", "--run-id", "mixed"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "_runs" / "mixed.json").read_text())
    assert summary["sources"] == [{
        "name": "calls", "dataset": "events", "rows_in": 5, "rows_with_moments": 3, "rows_without_moments": 0,
        "events_out": 9, "quarantine_rows": 2, "quarantine_by_kind": {"bad_timestamp": 1, "unparseable_line": 1},
        "reconciled": True}]
    assert summary["events"]["reconciled"] and summary["events"]["input_rows"] == 9 + 2 + 12
    assert "source calls: 5 rows in -> 9 events from 3 rows" in " ".join(result.output.split())


def test_identifiers_a_source_maps_link_two_customer_ids_into_one_person(tmp_path):
    """A card number on the branch system's rows and on the app's: one person behind c1 and c2, not c3."""
    export = tmp_path / "visits.csv"
    export.write_text("ticket,at,customer,card,step\n"
                      "T1,2026-10-01 09:00:00,c1,K-100,greeting\n"
                      "T2,2026-10-01 12:00:00,c2,K-100,farewell\n"
                      "T3,2026-10-01 13:00:00,c3,,greeting\n", encoding="utf-8")
    source = tmp_path / "visits.yaml"
    source.write_text("version: 1\ndataset: events\nformat: {type: csv}\nfields:\n  event_id: ticket\n"
                      "  occurred_at: {column: at, format: '%Y-%m-%d %H:%M:%S'}\n  customer_id: customer\n"
                      "  channel: {value: branch}\n  touchpoint: step\nidentifiers:\n  card_number: card\n",
                      encoding="utf-8")
    result = CliRunner().invoke(app, ["run", "--source", f"{source}={export}", "--out", str(tmp_path / "out"),
                                      "--no-check", "--run-id", "ids"])
    assert result.exit_code == 0, result.output
    persons = dict(duckdb.sql(f"select customer_id, person_id from read_parquet('{tmp_path / 'out'}/events/*/*.parquet') "
                              "order by customer_id").fetchall())
    assert sorted(persons) == ["c1", "c2", "c3"]
    assert persons["c1"] == persons["c2"] != persons["c3"]
