"""The command line: exit codes and what it prints."""
from __future__ import annotations

import gzip
import importlib
import json
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import EXIT_INPUT, EXIT_USAGE, app, main

FIXTURES = Path(__file__).parent / "fixtures"
runner = CliRunner()


def test_playbooks_lists_the_built_ins():
    result = runner.invoke(app, ["playbooks"])
    assert result.exit_code == 0
    for name in ("airline", "bank_branch", "retail_counter"):
        assert name in result.output
    assert "base" not in result.output.split()


def test_run_prints_counts_and_output_paths(tmp_path):
    result = runner.invoke(app, ["run", "--no-check", "-t", str(FIXTURES / "events_a.jsonl"), "--out", str(tmp_path), "--run-id", "cli-run",
                                 "--direct_num_workers=1"])
    assert result.exit_code == 0, result.output
    assert "events" in result.output and "12" in result.output
    assert f"{tmp_path}/events" in result.output
    assert "--no-check: the quality checkpoint did not run (nor its scan for unmasked PII)" in " ".join(result.output.split())
    summary = json.loads((tmp_path / "_runs" / "cli-run.json").read_text())
    assert (summary["events"]["input_rows"], summary["events"]["output_rows"], summary["events"]["quarantine_rows"]) == (12, 7, 5)


def test_main_freezes_the_objects_left_before_the_interpreter_exits(monkeypatch, capsys):
    """The exit's collections would walk every object of the process (~0.7 s after a checkpoint); also on an error."""
    frozen = []
    monkeypatch.setattr("pipelines.cli.gc.freeze", lambda: frozen.append(True))
    for argv, code in ((["motpipe", "playbooks"], 0), (["motpipe", "run", "--no-such-option"], 2)):
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as exited:
            main()
        assert exited.value.code == code
    assert frozen == [True, True]


def test_pseudonymize_key_from_environment(tmp_path):
    result = runner.invoke(app, ["run", "--no-check", "-t", str(FIXTURES / "events_a.jsonl"), "--out", str(tmp_path), "--run-id", "pseudo"],
                           env={"MOTPIPE_PSEUDONYMIZE_KEY": "secret"})
    assert result.exit_code == 0, result.output
    import duckdb

    ids = {r[0] for r in duckdb.sql(f"select customer_id from '{tmp_path}/events/*/*.parquet'").fetchall()}
    assert len(ids) == 3 and all(i.startswith("c_") and len(i) == 26 for i in ids)
    summary = json.loads((tmp_path / "_runs" / "pseudo.json").read_text())
    assert summary["settings"]["pseudonymized"] is True and "secret" not in json.dumps(summary)


def test_unmatched_input_exits_3_with_one_line(tmp_path):
    result = runner.invoke(app, ["run", "--no-check", "-t", str(tmp_path / "nothing-*.jsonl"), "--out", str(tmp_path / "out")])
    assert result.exit_code == EXIT_INPUT
    assert "no input file matches" in result.output


def test_a_failing_run_waits_for_the_checkpoint_import_before_it_exits(tmp_path, monkeypatch):
    """The checkpoint is imported in a thread while the pipeline runs; a run that fails early waits for it (an
    interpreter that exits while a thread imports an extension module can abort: SIGABRT instead of exit 3), and a
    usage error found before the pipeline starts does not start it."""
    imported, import_module = [], importlib.import_module

    def slow_import(name, package=None):
        if name != "pipelines.quality.checkpoint":
            return import_module(name, package)
        time.sleep(0.3)
        imported.append(name)

    monkeypatch.setattr("pipelines.cli.importlib.import_module", slow_import)
    missing = ["run", "-t", str(tmp_path / "nothing-*.jsonl"), "--out", str(tmp_path / "out")]
    bad_progress = runner.invoke(app, [*missing, "--progress", "plain"])
    assert bad_progress.exit_code == EXIT_USAGE and imported == []
    result = runner.invoke(app, missing)
    assert result.exit_code == EXIT_INPUT and "no input file matches" in result.output
    assert imported == ["pipelines.quality.checkpoint"]


def test_an_output_that_cannot_be_locked_exits_2_before_reading_the_inputs(tmp_path):
    """gs:// has no atomic create: the run is refused up front (the missing input is not even looked at); with
    --allow-unlocked it goes on, warns, and here stops at the input, which does not exist."""
    arguments = ["run", "--no-check", "-t", str(tmp_path / "nothing.jsonl"), "--out", "gs://bucket/out"]
    refused = runner.invoke(app, arguments)
    assert refused.exit_code == EXIT_USAGE
    assert "gs://bucket/out cannot be locked: Beam's gs:// filesystem has no atomic create" in " ".join(refused.output.split())
    waived = runner.invoke(app, arguments + ["--allow-unlocked"])
    assert waived.exit_code == EXIT_INPUT and "no input file matches" in waived.output
    assert "--allow-unlocked: gs://bucket/out is not locked" in " ".join(waived.output.split())


def test_unknown_input_format_exits_3(tmp_path):
    (tmp_path / "events.parquet").write_bytes(b"x")
    result = runner.invoke(app, ["run", "--no-check", "-t", str(tmp_path / "events.parquet"), "--out", str(tmp_path / "out")])
    assert result.exit_code == EXIT_INPUT
    assert "unknown input format" in result.output


def test_truncated_gzip_fails_the_run_instead_of_losing_rows(tmp_path):
    whole = gzip.compress((FIXTURES / "events_a.jsonl").read_bytes())
    (tmp_path / "events.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    result = runner.invoke(app, ["run", "--no-check", "-t", str(tmp_path / "events.jsonl.gz"), "--out", str(tmp_path / "out")])
    assert result.exit_code == EXIT_INPUT
    assert f"cannot read {tmp_path / 'events.jsonl.gz'}" in result.output


def test_bad_settings_exit_2(tmp_path):
    args = ["run", "--no-check", "-t", str(FIXTURES / "events_a.jsonl"), "--out", str(tmp_path)]
    zone = runner.invoke(app, [*args, "--timezone", "Mars/Olympus"])
    assert zone.exit_code == EXIT_USAGE and "unknown time zone" in zone.output
    book = runner.invoke(app, [*args, "--playbook", "casino"])
    assert book.exit_code == EXIT_USAGE and "unknown playbook 'casino'" in book.output
    gap = runner.invoke(app, [*args, "--gap-minutes", "0"])
    assert gap.exit_code == EXIT_USAGE and "gap_minutes" in gap.output


def test_sample_writes_inputs_and_says_how_to_run_them(tmp_path):
    result = runner.invoke(app, ["sample", "--events", "500", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["events"]["rows"] == 500
    assert f"events: 500 rows = {manifest['events']['good_rows']} good" in result.output
    assert "motpipe run -t" in result.output
    bad_start = runner.invoke(app, ["sample", "--events", "500", "--out", str(tmp_path), "--start", "tomorrow"])
    assert bad_start.exit_code == EXIT_USAGE


def test_unknown_options_are_reported_not_silently_dropped(tmp_path):
    result = runner.invoke(app, ["run", "--no-check", "-t", str(FIXTURES / "events_a.jsonl"), "--out", str(tmp_path), "--no-chek"])
    assert result.exit_code == 0
    assert "--no_chek is neither a motpipe nor a Beam option" in result.output


def test_quality_outcome_is_recorded_in_the_runs_table(tmp_path):
    from pipelines.runs import read_runs

    result = runner.invoke(app, ["run", "-t", str(FIXTURES / "events_a.jsonl"), "--out", str(tmp_path), "--run-id", "q1"])
    assert result.exit_code == 5, result.output  # 5 of 12 rows quarantined: above the warn threshold
    (record,) = read_runs(str(tmp_path)).to_pylist()
    assert record["status"] == "succeeded" and record["quality"].startswith("warn: ")
    listing = runner.invoke(app, ["runs", "--out", str(tmp_path)])
    assert listing.exit_code == 0 and "q1" in listing.output and "warn" in listing.output
