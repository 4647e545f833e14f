"""Progress of a run from its count files: the plain functions, the JSON lines for schedulers, quiet without a
terminal."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app, progress_mode
from pipelines.progress import Progress, json_line, progress_of, render

FIXTURES = Path(__file__).parent / "fixtures"
SIZES = {("events", 0): 3 << 20, ("events", 1): 1 << 20, ("feedback", 0): 4 << 20}


def test_nothing_read_yet():
    progress = progress_of({}, SIZES, parts=3, buckets=16, elapsed_s=1.0)
    assert (progress.stage, progress.files_done, progress.rows_read, progress.bytes_done) == ("read", 0, 0, 0)
    assert progress.remaining_s is None
    assert render(progress) == ("read: 0/3 files, 0 rows, 0.0 of 8.0 MiB (0%) | buckets stitched 0/16 | "
                                "partitions written 0 | 1 s elapsed")


def test_rows_and_bytes_of_the_files_read_to_the_end():
    counts = {"read-events-00000-0000": {"events.input_rows": 900}, "read-feedback-00000-0000": {"feedback.input_rows": 50}}
    progress = progress_of(counts, SIZES, parts=3, buckets=16, elapsed_s=30.0)
    assert (progress.stage, progress.files_done, progress.rows_read, progress.bytes_done) == ("read", 2, 950, 7 << 20)
    assert progress.fraction == pytest.approx(7 / 16)  # read 7/8, stitched 0/16: equal weights
    assert progress.remaining_s == pytest.approx(30 * (9 / 16) / (7 / 16))


def test_a_file_read_in_parts_counts_its_bytes_once_and_every_part_as_a_step():
    counts = {f"read-events-00000-000{n}": {"events.input_rows": 10} for n in range(2)}
    progress = progress_of(counts, SIZES, parts=4, buckets=4, elapsed_s=5.0)
    assert (progress.files_done, progress.files, progress.bytes_done, progress.rows_read) == (2, 4, 3 << 20, 20)


def test_stages_follow_the_count_files():
    read = {f"read-events-0000{i}-0000": {} for i in range(2)} | {"read-feedback-00000-0000": {}}
    stitching = progress_of(read | {"stitch-0003": {"events.visits": 4}}, SIZES, parts=3, buckets=4, elapsed_s=9.0)
    assert (stitching.stage, stitching.buckets_done) == ("stitch", 1)
    writing = progress_of(read | {"stitch-0003": {}, "write-events-2026-10-01": {}}, SIZES, parts=3, buckets=4, elapsed_s=9.0)
    assert (writing.stage, writing.partitions_written) == ("write", 1)


def test_a_json_line_has_every_field_the_share_done_and_the_estimate():
    progress = Progress("stitch", 3, 3, 28, 8 << 20, 8 << 20, 2, 4, 0, 10.0)
    assert json.loads(json_line(progress)) == {
        "stage": "stitch", "files_done": 3, "files": 3, "rows_read": 28, "bytes_done": 8 << 20, "bytes_total": 8 << 20,
        "buckets_done": 2, "buckets": 4, "partitions_written": 0, "elapsed_s": 10.0, "fraction": 0.75,
        "remaining_s": 3.3}


@pytest.mark.parametrize("choice, terminal, mode", [
    ("auto", True, "rich"), ("auto", False, None), ("rich", False, "rich"), ("json", False, "json"),
    ("json", True, "json"), ("none", True, None)])
def test_progress_is_shown_on_a_terminal_and_quiet_elsewhere_unless_asked(choice, terminal, mode):
    assert progress_mode(choice, terminal) == mode


def fixture_run(tmp_path: Path, *extra: str):
    return CliRunner().invoke(app, [
        "run", "-t", str(FIXTURES / "events_*"), "-f", str(FIXTURES / "feedback.jsonl"), "--out", str(tmp_path),
        "--no-check", "--buckets", "4", *extra])


def test_progress_json_lines_end_with_the_whole_input_read(tmp_path):
    result = fixture_run(tmp_path, "--progress", "json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    final = lines[-1]
    size = sum(p.stat().st_size for p in FIXTURES.iterdir() if p.is_file())
    assert (final["stage"], final["files_done"], final["files"], final["rows_read"]) == ("done", 3, 3, 28)
    assert final["bytes_done"] == final["bytes_total"] == size and final["buckets"] == 4
    assert final["fraction"] == 1 and final["remaining_s"] == 0
    assert all(line["rows_read"] <= 28 for line in lines)


def test_no_progress_is_printed_when_not_on_a_terminal(tmp_path):
    result = fixture_run(tmp_path)
    assert result.exit_code == 0, result.output
    assert "{" not in result.stderr and "rows" not in result.stderr and "elapsed" not in result.output
