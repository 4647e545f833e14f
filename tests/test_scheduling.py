"""Scheduled operation: windows, idempotent reruns, late data, crash safety, the lock, the portable runner."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from pipelines import output
from pipelines import transforms
from pipelines.config import RunConfig
from pipelines.output import PART_FILE
from pipelines.pipeline import run
from pipelines.lock import LOCK_FILE, LockedError
from pipelines.runs import read_runs

PUBLISHED = ("events", "feedback", "quarantine", "duplicates", "_restricted/quarantine_raw")


def event(event_id: str, at: str, customer: str = "c1", **fields) -> dict:
    return {"event_id": event_id, "occurred_at": at, "customer_id": customer, "channel": "branch",
            "touchpoint": "greeting", **fields}


def write_events(path: Path, *rows: dict | str) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def inputs(tmp_path):
    """Three days of events, a visit crossing midnight between 10-01 and 10-02, one bad row."""
    directory = tmp_path / "in"
    directory.mkdir()
    write_events(
        directory / "day1.jsonl",
        event("a1", "2026-10-01T09:00:00Z"), event("a2", "2026-10-01T23:50:00Z", customer="c2"),
        event("b1", "2026-10-02T00:10:00Z", customer="c2"), event("b2", "2026-10-02T12:00:00Z"),
        event("c1", "2026-10-03T08:00:00Z"), '{"event_id": "x", "occurred_at": "2026-10-03T09:00:00Z"}',
    )
    return directory


def config(inputs: Path, out: Path, **settings) -> RunConfig:
    """A run of `inputs` into `out`; one identity key, so outputs compare (docs/identity.md rule 3)."""
    return RunConfig(touchpoints=[str(inputs / "*.jsonl")], out=str(out), buckets=2,
                     **{"identity_key": "test-identity-key"} | settings)


def snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for t in PUBLISHED for p in sorted((out / t).rglob("*.parquet"))}


def rows(out: Path) -> dict[str, list[dict]]:
    """Published rows per partition file, without run_id (rows kept from an earlier run keep its id)."""
    return {str(p.relative_to(out)): pq.read_table(p).drop_columns(["run_id"]).to_pylist()
            for t in PUBLISHED for p in sorted((out / t).rglob("*.parquet"))}


def events_of(out: Path) -> list[tuple]:
    return duckdb.sql(f"select event_id, visit_id, position_in_visit, cast(dt as varchar) from "
                      f"read_parquet('{out}/events/*/*.parquet', hive_partitioning = true) order by 1").fetchall()


def test_window_writes_only_its_partitions_and_reconciles(inputs, tmp_path):
    summary = run(config(inputs, tmp_path / "out", start="2026-10-02", end="2026-10-02", lookback_days=0))
    assert summary["window"]["partitions"] == ["2026-10-02"]
    events = summary["events"]
    assert (events["input_rows"], events["output_rows"], events["quarantine_rows"], events["outside_window_rows"]) == (6, 2, 0, 4)
    assert events["reconciled"]
    assert sorted(p.parent.name for p in (tmp_path / "out" / "events").rglob("*.parquet")) == ["dt=2026-10-02"]
    assert summary["run_id"].startswith("2026-10-02-")


def test_identical_reruns_give_identical_bytes_and_run_ids(inputs, tmp_path):
    first = run(config(inputs, tmp_path / "out", start="2026-10-03", end="2026-10-03"))
    before = snapshot(tmp_path / "out")
    second = run(config(inputs, tmp_path / "out", start="2026-10-03", end="2026-10-03"))
    assert snapshot(tmp_path / "out") == before and len(before) == 5
    assert first["run_id"] == second["run_id"]
    assert second["published"] == {"replaced": 0, "unchanged": 5, "removed": 0}
    assert [r["status"] for r in read_runs(str(tmp_path / "out")).to_pylist()] == ["succeeded", "succeeded"]


def test_visit_across_midnight_is_stitched_whole_across_daily_runs(inputs, tmp_path):
    out = tmp_path / "out"
    run(config(inputs, out, start="2026-10-01", end="2026-10-01", lookback_days=0))
    run(config(inputs, out, start="2026-10-02", end="2026-10-02", lookback_days=0))
    rows = {r[0]: r[1:] for r in events_of(out)}
    assert rows["a2"][0] == rows["b1"][0]  # one visit: c2 at 23:50 and 00:10
    assert (rows["a2"][1:], rows["b1"][1:]) == ((1, "2026-10-01"), (2, "2026-10-02"))


def test_late_event_rebuilds_only_its_partition(inputs, tmp_path):
    out = tmp_path / "out"
    run(config(inputs, out, start="2026-10-03", end="2026-10-03"))
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "events").rglob("*.parquet")}
    write_events(inputs / "late.jsonl", event("late", "2026-10-01T15:00:00Z", customer="c9"))
    summary = run(config(inputs, out, start="2026-10-03", end="2026-10-03"))
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "events").rglob("*.parquet")}
    changed = sorted(p.parent.name for p in after if after[p] != before.get(p))
    assert changed == ["dt=2026-10-01"]
    assert summary["published"]["replaced"] == 1
    assert "late" in [r[0] for r in events_of(out)]


def test_killed_write_leaves_published_state_and_rerun_completes(inputs, tmp_path, monkeypatch):
    out, clean = tmp_path / "out", tmp_path / "clean"
    run(config(inputs, out, start="2026-10-03", end="2026-10-03"))
    before = snapshot(out)
    write_events(inputs / "more.jsonl", event("new", "2026-10-02T10:00:00Z", customer="c7"))
    real_write, calls = output.write_partition, []

    def failing_write(*args, **kwargs):
        calls.append(args[1:3])
        if len(calls) == 3:
            raise OSError("disk full (injected)")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(transforms, "write_partition", failing_write)
    with pytest.raises(Exception, match="disk full"):
        run(config(inputs, out, start="2026-10-03", end="2026-10-03"))
    assert snapshot(out) == before
    assert not (out / LOCK_FILE).exists()
    assert read_runs(str(out)).column("status").to_pylist() == ["succeeded", "failed"]

    monkeypatch.setattr(transforms, "write_partition", real_write)
    run(config(inputs, out, start="2026-10-03", end="2026-10-03"))
    run(config(inputs, clean, start="2026-10-03", end="2026-10-03"))
    assert rows(out) == rows(clean)
    assert "new" in [r[0] for r in events_of(out)]


def test_crash_between_partition_renames_is_completed_by_the_rerun(inputs, tmp_path, monkeypatch):
    out, clean = tmp_path / "out", tmp_path / "clean"
    run(config(inputs, out, start="2026-10-03", end="2026-10-03"))
    write_events(inputs / "more.jsonl", event("n1", "2026-10-01T10:00:00Z", customer="c7"),
                 event("n2", "2026-10-02T10:00:00Z", customer="c8"))
    real_rename, renames = output.FileSystems.rename, []

    def crash_on_second(sources, destinations):
        if not destinations[0].endswith(PART_FILE):  # spill files between stages: not a publication
            return real_rename(sources, destinations)
        renames.append(destinations)
        if len(renames) == 2:
            raise OSError("killed (injected)")
        return real_rename(sources, destinations)

    monkeypatch.setattr(output.FileSystems, "rename", crash_on_second)
    with pytest.raises(OSError, match="killed"):
        run(config(inputs, out, start="2026-10-03", end="2026-10-03"))
    ids = [r[0] for r in events_of(out)]
    assert ids.count("n1") + ids.count("n2") == 1  # one partition new, the other still old, both readable
    monkeypatch.setattr(output.FileSystems, "rename", real_rename)
    run(config(inputs, out, start="2026-10-03", end="2026-10-03"))
    run(config(inputs, clean, start="2026-10-03", end="2026-10-03"))
    assert rows(out) == rows(clean)


def test_lock_refuses_a_concurrent_run_and_takes_over_a_dead_one(inputs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    lock = out / LOCK_FILE
    lock.write_text(json.dumps({"run_id": "other-run", "host": os.uname().nodename, "pid": os.getpid(), "since": "x"}))
    with pytest.raises(LockedError, match=r"locked by run other-run \(pid \d+ on "):
        run(config(inputs, out))
    assert not (out / "events").exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(json.dumps({"run_id": "crashed", "host": os.uname().nodename, "pid": int(dead.stdout), "since": "x"}))
    assert run(config(inputs, out))["events"]["output_rows"] == 5
    assert not lock.exists()


def test_portable_runner_output_equals_direct_runner(inputs, tmp_path):
    direct = run(config(inputs, tmp_path / "direct", run_id="same"))
    portable = run(config(inputs, tmp_path / "portable", run_id="same"),
                   ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"])
    assert snapshot(tmp_path / "portable") == snapshot(tmp_path / "direct")
    assert portable["events"] == direct["events"]


def test_quality_checkpoint_reconciles_a_rerun_that_kept_partitions(inputs, tmp_path):
    from pipelines.quality.checkpoint import run_checkpoint
    from pipelines.quality.settings import load_settings

    out = tmp_path / "out"
    run(config(inputs, out, start="2026-10-03", end="2026-10-03"))
    write_events(inputs / "late.jsonl", event("late", "2026-10-01T15:00:00Z", customer="c9"))
    summary = run(config(inputs, out, start="2026-10-03", end="2026-10-03"))
    assert summary["published"]["unchanged"] > 0  # partitions still carrying the first run's run_id
    report = run_checkpoint(out, load_settings(), summary["run_id"])
    by_check = {r.expectation: r for r in report.results if r.dataset == "run_summary"}
    assert by_check["input = output + duplicates + quarantine + outside window"].success
    assert by_check["output rows in tables = run summary"].success
