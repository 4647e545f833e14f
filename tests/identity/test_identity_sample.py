"""`motpipe sample --cross-channel-share`: persons across channel systems with known truth, recovered by a run."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq

from pipelines.config import RunConfig
from pipelines.pipeline import run
from pipelines.sample import generate_sample


def test_a_run_recovers_exactly_the_sampled_persons(tmp_path):
    manifest = generate_sample(tmp_path / "input", 3000, cross_channel_share=0.3, seed=11)
    identity = manifest["identity"]
    assert identity["cross_channel_persons"] > 50 and identity["shared_device_customers"] > 5  # the tablet is shared
    run(RunConfig(touchpoints=[str(tmp_path / "input" / "touchpoints" / "*")],
                  feedback=[str(tmp_path / "input" / "feedback" / "*")], out=str(tmp_path / "out")))
    persons: dict[str, set[str]] = {}
    for table in ("events", "feedback"):
        for path in (tmp_path / "out" / table).rglob("*.parquet"):
            for row in pq.read_table(path, columns=["customer_id", "person_id"]).to_pylist():
                persons.setdefault(row["person_id"], set()).add(row["customer_id"])
    with open(tmp_path / "input" / "identity_truth.csv", encoding="utf-8") as handle:
        truth: dict[str, set[str]] = {}
        for row in csv.DictReader(handle):
            truth.setdefault(row["person"], set()).add(row["customer_id"])
    found = {frozenset(group) for group in persons.values() if len(group) > 1}
    expected = {frozenset(group) for group in truth.values() if len(group) > 1}
    assert found == expected
    conflicts = [r for p in (tmp_path / "out" / "identity_conflicts").rglob("*.parquet") for r in pq.read_table(p).to_pylist()]
    assert [(c["kind"], c["identifier_type"], c["customers"]) for c in conflicts] == [
        ("shared_identifier", "device_id", identity["shared_device_customers"])]
    summary = json.loads(next((tmp_path / "out" / "_runs").glob("*.json")).read_text())
    assert summary["events"]["reconciled"] and summary["feedback"]["reconciled"]


def test_without_a_cross_channel_share_the_sample_has_no_identifiers(tmp_path):
    manifest = generate_sample(tmp_path, 500)
    assert "identity" not in manifest and not (tmp_path / "identity_truth.csv").exists()
    assert "identifier" not in (tmp_path / "touchpoints" / "part-00001.jsonl").read_text()
