"""Issue 16 (a, b, d): PII in identifier columns, in escaped quarantined lines and under pseudonymisation never
reaches the analyst-facing tables, the tables still join, and the quality checkpoint passes on them."""
from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from pipelines.config import RunConfig
from pipelines.pii import pseudonymize
from pipelines.pipeline import IDENTIFIER_KEY_FILE, run
from pipelines.quality.checkpoint import run_checkpoint
from pipelines.quality.settings import load_settings
from pipelines.stitch import stitched_visit_id

PHONE, CUSTOMER_PHONE, STAFF_PHONE = "13812345678", "13987654321", "13700001111"
KEY = "issue-16-key"
PUBLIC = ("events", "feedback", "quarantine", "duplicates")


def event(event_id: str, minute: int, **fields) -> dict:
    return {"event_id": event_id, "occurred_at": f"2026-10-01T09:{minute:02d}:00+08:00", "customer_id": CUSTOMER_PHONE,
            "visit_id": f"visit {PHONE}", "channel": "branch", "touchpoint": "greeting", "text": "ok", **fields}


EVENTS = [
    event(f"e-{PHONE}", 0, staff_id=f"staff tel {STAFF_PHONE}", location_id="branch 010-62345678"),
    event("e2", 5, touchpoint=f"callback {PHONE}"),
    event("e3", 10, customer_id="cust-3", visit_id=None, text="我的邮箱 用户@例子.公司"),
]
ESCAPED = "\\u5f20\\u4e09 " + "".join(f"\\u{0xff10 + int(d):04x}" for d in "13706290800")  # 张三 + full-width digits


def lines() -> list[str]:
    out = [json.dumps(e, ensure_ascii=False) for e in EVENTS]
    out.append(out[0])  # exact repeat: duplicates.record_id is the hashed id of the kept event
    out.append(json.dumps({**EVENTS[2], "text": "changed"}))  # conflicting duplicate of e3 (customer cust-3)
    out.append('{"event_id": "q1", "occurred_at": "yesterday", "customer_id": "cust-9", "channel": "branch", '
               f'"touchpoint": "greeting", "text": "{ESCAPED}"}}')  # valid JSON, bad timestamp, escaped PII
    out.append(f'{{"event_id": "q2", "customer_id": "cust-8", "text": "{ESCAPED}"')  # unparseable, escaped PII
    return out


FEEDBACK = [{"feedback_id": "f-ann@example.com", "submitted_at": "2026-10-01T10:00:00+08:00",
             "customer_id": CUSTOMER_PHONE, "visit_id": f"visit {PHONE}", "csat": 4, "comment": "fine"}]
SECRETS = (PHONE, CUSTOMER_PHONE, STAFF_PHONE, "62345678", "ann@example.com", "用户@例子", "13706290800",
           "".join(chr(0xff10 + int(d)) for d in "13706290800"), "5f20", "uff11")


def write_inputs(root: Path) -> tuple[Path, Path]:
    events, feedback = root / "events.jsonl", root / "feedback.jsonl"
    events.write_text("\n".join(lines()) + "\n", encoding="utf-8")
    feedback.write_text("\n".join(json.dumps(f) for f in FEEDBACK) + "\n", encoding="utf-8")
    return events, feedback


def run_on(root: Path, run_id: str, key: str | None = None) -> Path:
    events, feedback = write_inputs(root)
    out = root / "out"
    run(RunConfig(touchpoints=[str(events)], feedback=[str(feedback)], out=str(out), run_id=run_id, buckets=2,
                  timezone="Asia/Shanghai", pseudonymize_key=key))
    return out


def table(out: Path, name: str) -> list[dict]:
    con = duckdb.connect()
    rel = con.sql(f"select * from read_parquet('{out}/{name}/*/*.parquet', hive_partitioning = true)")
    return [dict(zip(rel.columns, row)) for row in rel.fetchall()]


def everything(out: Path) -> str:
    return json.dumps([table(out, name) for name in PUBLIC], default=str, ensure_ascii=False)


@pytest.fixture(scope="module", params=[None, KEY], ids=["no key", "pseudonymize key"])
def published(request, tmp_path_factory):
    out = run_on(tmp_path_factory.mktemp("pii"), "pii-run", request.param)
    return out, request.param


def test_no_detected_pii_value_is_published(published):
    out, _ = published
    text = everything(out)
    assert [s for s in SECRETS if s in text] == []


def identifier_hash(out: Path, key: str | None):
    """The hash the run gives identifiers holding PII: keyed with --pseudonymize-key, else with the output's key."""
    id_key = key.encode() if key else bytes.fromhex(out.joinpath("_restricted", *IDENTIFIER_KEY_FILE).read_text())
    return lambda value: pseudonymize(value, id_key, "p_")


def customer(key: str | None, value: str, hashed) -> str:
    return pseudonymize(value, key.encode()) if key else hashed(value)


def test_identifiers_holding_pii_become_one_keyed_hash_everywhere(published):
    out, key = published
    h = identifier_hash(out, key)
    events = {e["event_id"]: e for e in table(out, "events")}
    assert sorted(events) == sorted([h(f"e-{PHONE}"), "e2", "e3"])
    first, second, third = events[h(f"e-{PHONE}")], events["e2"], events["e3"]
    assert (first["visit_id"], first["staff_id"], first["location_id"]) == (
        h(f"visit {PHONE}"), h(f"staff tel {STAFF_PHONE}"), h("branch 010-62345678"))
    assert first["customer_id"] == second["customer_id"] == customer(key, CUSTOMER_PHONE, h)
    assert (second["touchpoint"], second["visit_id"]) == (h(f"callback {PHONE}"), first["visit_id"])
    assert third["customer_id"] == (pseudonymize("cust-3", key.encode()) if key else "cust-3")
    assert third["text"] == "我的邮箱 [EMAIL]"
    assert third["visit_id"] == stitched_visit_id("cust-3", "e3", key.encode() if key else None)  # keyed with a key
    (feedback,) = table(out, "feedback")
    assert feedback["feedback_id"] == h("f-ann@example.com")
    assert (feedback["visit_id"], feedback["link_method"], feedback["customer_id"]) == (
        first["visit_id"], "visit_id", first["customer_id"])  # still joins to its visit
    assert [d["record_id"] for d in table(out, "duplicates")] == [h(f"e-{PHONE}")]


def test_quarantined_records_are_decoded_masked_and_pseudonymised(published):
    out, key = published
    quarantine = {q["line_no"]: q for q in table(out, "quarantine")}
    events = {e["event_id"]: e for e in table(out, "events")}
    conflict = quarantine[5]
    assert (conflict["error_kind"], conflict["record_id"]) == ("conflicting_duplicate", "e3")
    # joining the conflict to its event by id reveals nothing: both carry the same (pseudonymised) customer
    assert json.loads(conflict["raw_record"])["customer_id"] == events["e3"]["customer_id"]
    escaped = json.loads(quarantine[6]["raw_record"])
    assert (escaped["text"], escaped["customer_id"]) == ("张三 [PHONE]", customer(key, "cust-9", lambda v: v))
    truncated = quarantine[7]
    assert truncated["error_kind"] == "unparseable_line"
    assert truncated["raw_record"] == (f'{{"event_id": "q2", "customer_id": "{customer(key, "cust-8", lambda v: v)}", '
                                       '"text": "张三 [PHONE]"')
    restricted = {q["line_no"]: q["raw_record"] for q in table(out / "_restricted", "quarantine_raw")}
    assert restricted[7] == lines()[6]  # the restricted copy keeps the line as it came, for replay


def test_quality_checkpoint_passes_on_the_masked_tables(published):
    out, _ = published
    report = run_checkpoint(out, load_settings())
    assert [(r.dataset, r.expectation) for r in report.failures if r.severity == "error"] == []


def test_reruns_hash_identifiers_with_the_same_output_key(tmp_path):
    out = run_on(tmp_path, "first")
    first = {e["event_id"] for e in table(out, "events")}
    key = out.joinpath("_restricted", *IDENTIFIER_KEY_FILE).read_text()
    second = {e["event_id"] for e in table(run_on(tmp_path, "second"), "events")}
    assert first == second and len(first) == 3
    summaries = " ".join(p.read_text() for p in (out / "_runs").glob("*.json"))
    assert len(key) == 64 and key not in summaries and "identifier_key" not in summaries
