"""Hostile and careless input (issue 16): each test feeds exactly the input that once broke a run or a command,
and checks the clear error or the typed outcome that replaced it."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipelines.cli import EXIT_FAILED, EXIT_INPUT, EXIT_RECONCILIATION, EXIT_USAGE, app
from pipelines.config import RunConfig
from pipelines.beam_args import stray_arguments
from pipelines.pipeline import remove_stale_staging, run

runner = CliRunner()


def event(event_id: str, at: str, customer: str = "c1", **fields) -> dict:
    return {"event_id": event_id, "occurred_at": at, "customer_id": customer, "channel": "branch",
            "touchpoint": "greeting", **fields}


def write_lines(path: Path, *rows: dict | str) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def events_file(directory: Path, name: str = "events.jsonl") -> str:
    """Three good events, one bad row (no customer), no duplicates."""
    directory.mkdir(parents=True, exist_ok=True)
    return write_lines(directory / name, event("a1", "2026-10-01T09:00:00Z"), event("a2", "2026-10-01T09:10:00Z"),
                       event("b1", "2026-10-02T10:00:00Z", customer="c2"),
                       '{"event_id": "x1", "occurred_at": "2026-10-02T11:00:00Z", "channel": "branch"}')


def cli_run(*args: str):
    return runner.invoke(app, ["run", "--no-check", "--direct_num_workers=1", *args])


def rows_of(directory: Path, sql: str = "select * from t") -> list[tuple]:
    con = duckdb.connect()
    con.execute(f"create view t as select * from read_parquet('{directory}/*/*.parquet', hive_partitioning = true)")
    return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """The output of one clean run (3 events written, 1 quarantined, no duplicates)."""
    root = tmp_path_factory.mktemp("finished")
    result = cli_run("-t", events_file(root / "in"), "--out", str(root / "out"), "--run-id", "clean")
    assert result.exit_code == 0, result.output
    return root / "out"


@pytest.fixture
def out(finished, tmp_path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(finished, copy)
    return copy


# --- run ids are names, never paths -------------------------------------------------------------------------

@pytest.mark.parametrize("run_id", ["{victim}", "../../../v", "a/b", "..", "<img src=x onerror=alert(1)>", ""])
def test_run_id_that_is_a_path_or_markup_is_a_usage_error_and_deletes_nothing(tmp_path, run_id):
    victim = tmp_path / "victim"
    (victim / "_staging").mkdir(parents=True)
    (victim / "keep.txt").write_text("mine")
    result = cli_run("-t", events_file(tmp_path / "in"), "--out", str(tmp_path / "o" / "out"),
                     "--run-id", run_id.format(victim=victim))
    assert result.exit_code == EXIT_USAGE, result.output
    assert "run id" in result.output
    assert (victim / "keep.txt").read_text() == "mine" and (victim / "_staging").is_dir()
    assert not (tmp_path / "o").exists()  # nothing written, no summary outside --out


def test_check_refuses_a_run_id_that_is_a_path(out):
    result = runner.invoke(app, ["check", "--out", str(out), "--run-id", "../../etc/passwd"])
    assert result.exit_code == EXIT_USAGE and "run id" in result.output


# --- unquoted shell globs --------------------------------------------------------------------------------------

def test_unquoted_glob_expanded_by_the_shell_is_a_usage_error_naming_the_extra_files(tmp_path):
    first, second = events_file(tmp_path / "in", "a.jsonl"), events_file(tmp_path / "in", "b.jsonl")
    feedback = write_lines(tmp_path / "in" / "f1.jsonl", {"feedback_id": "f1"})
    result = cli_run("-t", first, second, "-f", feedback, str(tmp_path / "in" / "f2.jsonl"), "--out", str(tmp_path / "out"))
    assert result.exit_code == EXIT_USAGE
    assert f"{second} {tmp_path / 'in' / 'f2.jsonl'}" in result.output and "quote globs" in result.output
    assert not (tmp_path / "out").exists()


def test_stray_arguments_are_bare_words_that_no_option_takes():
    args = ["in/2.jsonl", "--direct_num_workers=1", "--job_endpoint", "embed", "--unknown_flag", "its_value",
            "--environment_type=LOOPBACK", "in/3.jsonl"]
    assert stray_arguments(args) == ["in/2.jsonl", "in/3.jsonl"]


# --- restricted outputs shared by several outputs ------------------------------------------------------------

def test_shared_restricted_out_keeps_the_raw_rows_of_each_output(tmp_path):
    source = events_file(tmp_path / "in")
    for name in ("one", "two"):
        run(RunConfig(touchpoints=[source], out=str(tmp_path / name), restricted_out=str(tmp_path / "restricted"),
                      run_id="same", buckets=2))
    keyed = sorted(p.name for p in (tmp_path / "restricted").iterdir())
    assert len(keyed) == 2 and keyed[0].startswith("one-") and keyed[1].startswith("two-")
    for directory in keyed:
        raw = rows_of(tmp_path / "restricted" / directory / "quarantine_raw", "select record_id, source_file from t")
        assert raw == [("x1", source)]
    assert json.loads((tmp_path / "two" / "_runs" / "same.json").read_text())["outputs"][
        "quarantine_raw (restricted)"] == f"{tmp_path / 'restricted' / keyed[1]}/quarantine_raw"


# --- fault leftovers -------------------------------------------------------------------------------------------

def test_stale_staging_of_a_killed_run_is_removed_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    killed = out / "_restricted" / "_staging" / "killed-run" / "_work"
    recent = out / "_restricted" / "_staging" / "recent-run"
    for directory in (killed, recent, out / "_staging" / "killed-run" / "events"):
        directory.mkdir(parents=True)
        (directory / "spill.arrow").write_bytes(b"unredacted rows")
    two_hours_ago = time.time() - 7200
    for path in (killed / "spill.arrow", out / "_staging" / "killed-run" / "events" / "spill.arrow"):
        os.utime(path, (two_hours_ago, two_hours_ago))
    run(RunConfig(touchpoints=[events_file(tmp_path / "in")], out=str(out), run_id="next", buckets=2))
    assert not (out / "_restricted" / "_staging" / "killed-run").exists()
    assert not (out / "_staging" / "killed-run").exists()
    assert (recent / "spill.arrow").exists()  # younger than an hour: may belong to a live run elsewhere


def test_remove_stale_staging_keeps_the_current_run_and_young_directories(tmp_path):
    for run_id in ("current", "old", "young"):
        (tmp_path / "_staging" / run_id).mkdir(parents=True)
        (tmp_path / "_staging" / run_id / "f").write_bytes(b"x")
    now = time.time()
    for run_id in ("current", "old"):
        os.utime(tmp_path / "_staging" / run_id / "f", (now - 4000, now - 4000))
    assert remove_stale_staging(str(tmp_path), "current", now) == [str(tmp_path / "_staging" / "old")]
    assert sorted(p.name for p in (tmp_path / "_staging").iterdir()) == ["current", "young"]


def test_zero_byte_run_record_is_skipped_with_a_warning(out):
    (out / "runs" / "20261001T000000000000Z-diskfull.parquet").write_bytes(b"")
    result = runner.invoke(app, ["runs", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "skipped an unreadable run record" in result.output and "diskfull" in result.output
    assert "clean" in result.output and "succeeded" in result.output


def test_check_on_a_corrupted_partition_is_a_clear_error(out):
    partition = next((out / "events").glob("*/*.parquet"))
    partition.write_bytes(partition.read_bytes()[:100])
    result = runner.invoke(app, ["check", "--out", str(out)])
    assert result.exit_code == EXIT_FAILED
    assert "cannot read the published tables" in result.output and partition.parent.name in result.output
    assert isinstance(result.exception, SystemExit)  # no traceback


def test_check_on_a_moved_output_directory(out, tmp_path):
    moved = tmp_path / "moved"
    out.rename(moved)
    result = runner.invoke(app, ["check", "--out", str(moved), "-T", "quarantine_share=0.5"])
    assert result.exit_code == 0, result.output
    [record] = pq.read_table(next((moved / "runs").glob("*.parquet"))).to_pylist()
    assert record["quality"] == "passed: 89/89 checks passed"


# --- views, report and query -----------------------------------------------------------------------------------

def test_views_and_report_on_an_output_without_duplicates(out):
    assert not (out / "duplicates").exists()
    result = runner.invoke(app, ["views", "--out", str(out)])
    assert result.exit_code == 0, result.output
    db = str(out / "motpipe.duckdb")
    con = duckdb.connect(db, read_only=True)
    assert con.execute("select count(*) from stg_duplicates").fetchone() == (0,)
    assert con.execute("select count(*) from stg_events").fetchone() == (3,)
    assert {r[0]: r[1] for r in con.execute("describe stg_duplicates").fetchall()}["kept_line_no"] == "BIGINT"
    con.close()
    assert runner.invoke(app, ["report", "--out", str(out)]).exit_code == 0
    assert (out / "report.html").stat().st_size > 10_000


@pytest.fixture
def db(out) -> str:
    assert runner.invoke(app, ["views", "--out", str(out)]).exit_code == 0
    return str(out / "motpipe.duckdb")


def query(db: str, *args: str):
    return runner.invoke(app, ["query", "--db", db, *args])


def test_query_writes_no_file_and_reads_no_restricted_row_by_default(db, out, tmp_path):
    written = tmp_path / "copied.csv"
    result = query(db, f"copy (select * from stg_events) to '{written}'")
    assert result.exit_code == EXIT_USAGE and "one SELECT statement" in result.output and not written.exists()
    restricted = f"select raw_record from read_parquet('{out}/_restricted/quarantine_raw/*/*.parquet')"
    result = query(db, restricted)
    assert result.exit_code == EXIT_USAGE and "disabled by configuration" in result.output
    for sql in ("set enable_external_access = true", "attach 'other.duckdb'", "select 1; select 2",
                "select * from read_text('/etc/passwd')", f"select * from glob('{out}/events/../*')"):
        assert query(db, sql).exit_code == EXIT_USAGE, sql
    assert "3 rows" in query(db, "select event_id, customer_id from stg_events").output
    exported = tmp_path / "events.csv"
    assert query(db, "stg_events", "-o", str(exported)).exit_code == 0 and len(exported.read_text().splitlines()) == 4


def test_query_unrestricted_is_the_full_duckdb(db, out):
    result = query(db, "--unrestricted", f"select record_id from read_parquet('{out}/_restricted/quarantine_raw/*/*.parquet')")
    assert result.exit_code == 0 and "x1" in result.output


# --- smaller usage errors -------------------------------------------------------------------------------------

def test_python_object_playbook_is_a_clear_usage_error(tmp_path):
    playbook = tmp_path / "evil.yaml"
    playbook.write_text("name: evil\ntouchpoints: !!python/object/apply:os.system ['touch pwned']\n")
    result = cli_run("-t", events_file(tmp_path / "in"), "--out", str(tmp_path / "out"), "--playbook", str(playbook))
    assert result.exit_code == EXIT_USAGE and isinstance(result.exception, SystemExit)
    assert "not a valid playbook" in result.output and "line 2" in result.output
    assert not Path("pwned").exists() and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("args, message", [
    (["--date", "0001-01-01"], "outside the supported days"),
    (["--date", "9999-12-31"], "outside the supported days"),
    (["--date", "2026-10-01", "--lookback-days", "1000000"], "reach before"),
])
def test_unrepresentable_window_is_a_usage_error(tmp_path, args, message):
    result = cli_run("-t", events_file(tmp_path / "in"), "--out", str(tmp_path / "out"), *args)
    assert result.exit_code == EXIT_USAGE and message in result.output, result.output


@pytest.mark.parametrize("weight", ["inf", "-inf", "nan", "1e999"])
def test_non_finite_weight_is_a_usage_error(out, weight):
    result = runner.invoke(app, ["views", "--out", str(out), "--weights", f"reliability={weight}"])
    assert result.exit_code == EXIT_USAGE and "finite number" in result.output


# --- rows that once stopped the whole run, and other read defects ----------------------------------------------
CSV_HEADER = "event_id,occurred_at,customer_id,channel,touchpoint,text\n"


def csv_row(event_id: str, text: str = "hi") -> str:
    return f"{event_id},2026-10-01T09:00:00Z,c1,branch,greeting,{text}\n"


def hostile_inputs(directory: Path) -> dict[str, str]:
    """One file per kind of hostile input, each with good rows around the bad ones."""
    directory.mkdir(parents=True, exist_ok=True)
    good = json.dumps(event("j1", "2026-10-01T09:00:00Z"))
    files = {
        "json.jsonl": "\n".join([
            good,
            json.dumps(event("j2", "2026-10-01T09:01:00Z", text="X")).replace('"X"', '"\\ud800"'),  # lone surrogate
            json.dumps(event("j3", "2026-10-01T09:02:00Z", attributes={"a": 1})).replace('{"a": 1}', "[" * 1000 + "]" * 1000),
            json.dumps(event("j4", "9999-12-31T23:59:59Z")),  # 10000-01-01 in Amsterdam
            json.dumps(event("j5", "2026-10-01T09:03:00Z", text="x" * (2 << 20))),  # over the maximum line size
            json.dumps(event("j6", "2026-10-01T09:04:00Z", text="\ud83d\ude00 fine")),
        ]) + "\n",
        "cells.csv": "\ufeff event_id , occurred_at,customer_id ,channel,touchpoint,text\n"  # BOM and spaces
                     + csv_row("c1") + csv_row("c2", "a\rb") + csv_row("c3", "x" * 140_000) + csv_row("c4"),
        "cr_only.csv": (CSV_HEADER + csv_row("r1") + csv_row("r2")).replace("\n", "\r"),
        "open_quote.csv": CSV_HEADER + csv_row("q1") + csv_row("q2", '"never closed') + csv_row("q3") + "\n" + csv_row("q4"),
    }
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8", newline="")
    return {name: str(directory / name) for name in files}


HOSTILE_QUARANTINE = {  # (file, line) -> (error_kind, a part of the message)
    ("json.jsonl", 2): ("unparseable_line", "lone surrogate"),
    ("json.jsonl", 3): ("unparseable_line", "nested too deeply"),
    ("json.jsonl", 4): ("out_of_range", "supported range"),
    ("json.jsonl", 5): ("unparseable_line", "longer than the maximum line size (1,048,576 bytes)"),
    ("cells.csv", 3): ("unparseable_line", "carriage return in an unquoted cell"),
    ("cells.csv", 4): ("unparseable_line", "field larger than field limit (131072)"),
    ("cr_only.csv", 1): ("unparseable_line", "lines that end in CR alone"),
    ("open_quote.csv", 3): ("unparseable_line", "quoted cell opened on line 3 is not closed"),
    ("open_quote.csv", 4): ("unparseable_line", "quoted cell opened on line 3 is not closed"),
    ("open_quote.csv", 6): ("unparseable_line", "quoted cell opened on line 3 is not closed"),
}


def test_hostile_rows_are_typed_quarantine_rows_and_the_run_reconciles(tmp_path):
    files = hostile_inputs(tmp_path / "in")
    out = tmp_path / "out"
    result = cli_run(*[a for path in files.values() for a in ("-t", path)], "--out", str(out), "--run-id", "hostile",
                     "--timezone", "Europe/Amsterdam")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "_runs" / "hostile.json").read_text())
    assert summary["events"]["reconciled"] and summary["events"]["input_rows"] == 15
    lines = sum(Path(p).read_bytes().count(b"\n") + (not Path(p).read_bytes().endswith(b"\n")) for p in files.values())
    assert summary["events"]["read"] == {"bytes_read": sum(Path(p).stat().st_size for p in files.values()),
                                         "input_bytes": sum(Path(p).stat().st_size for p in files.values()),
                                         "lines_read": lines, "lines_accounted": lines}
    written = {r[0] for r in rows_of(out / "events", "select event_id from t")}
    assert written == {"j1", "j6", "c1", "c4", "q1"}
    quarantined = rows_of(out / "quarantine", "select source_file, line_no, error_kind, error_message from t")
    by_line = {(Path(f).name, n): (kind, message) for f, n, kind, message in quarantined}
    assert by_line.keys() == HOSTILE_QUARANTINE.keys()
    for key, (kind, part) in HOSTILE_QUARANTINE.items():
        assert by_line[key][0] == kind and part in by_line[key][1], (key, by_line[key])


def test_a_row_lost_after_parsing_is_seen_by_the_line_count_and_nothing_is_published(tmp_path, monkeypatch):
    """The row counts start after parsing, so a reader that drops a row still adds up; the lines read do not."""
    from pipelines import transforms

    def losing(*args, **kwargs):
        for valid, rejected in transforms_read(*args, **kwargs):
            yield valid.slice(1), rejected

    transforms_read = transforms.read_validated
    monkeypatch.setattr(transforms, "read_validated", losing)
    out = tmp_path / "out"
    result = cli_run("-t", events_file(tmp_path / "in"), "--out", str(out), "--run-id", "lossy")
    assert result.exit_code == EXIT_RECONCILIATION, result.output
    assert "events: 4 lines read != 3 lines that rows" in result.output and "nothing was published" in result.output
    assert not (out / "events").exists()


def test_a_source_file_not_read_to_its_end_is_seen_by_the_byte_count(tmp_path, monkeypatch):
    """A native export's bytes reconcile too: every byte of a source file is read, or the run stops."""
    from pipelines.ingest.formats import _read_guarded
    from pipelines.ingest.sources import native

    calls = Path(__file__).parent / "fixtures" / "sources"
    source = f"{calls / 'calls.yaml'}={calls / 'calls.tsv'}"
    result = cli_run("--source", source, "--out", str(tmp_path / "whole"), "--run-id", "whole", "--no-check")
    assert result.exit_code == 0, result.output
    read = json.loads((tmp_path / "whole" / "_runs" / "whole.json").read_text())["events"]["read"]
    size = (calls / "calls.tsv").stat().st_size
    assert (read["bytes_read"], read["input_bytes"], read["lines_read"]) == (size, size, 0)

    def first_chunk_only(path, tally=None):  # the whole small file, but the read never reaches its end
        return next(_read_guarded(path, lambda handle: handle.read(1 << 20), tally=tally))

    monkeypatch.setattr(native, "read_bytes", first_chunk_only)
    result = cli_run("--source", source, "--out", str(tmp_path / "cut"), "--run-id", "cut")
    assert result.exit_code == EXIT_RECONCILIATION, result.output
    assert f"events: 0 bytes read of {size:,} bytes of input files" in result.output
    assert not (tmp_path / "cut" / "events").exists()


def test_directory_named_like_an_input_file_exits_3(tmp_path):
    (tmp_path / "x.jsonl").mkdir()
    result = cli_run("-t", str(tmp_path / "x.jsonl"), "--out", str(tmp_path / "out"))
    assert result.exit_code == EXIT_INPUT and "is a directory" in result.output


def test_a_file_name_with_glob_characters_is_read_as_that_file(tmp_path):
    source = events_file(tmp_path / "in", "export[1].jsonl")
    result = cli_run("-t", source, "--out", str(tmp_path / "out"), "--run-id", "literal")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "_runs" / "literal.json").read_text())
    assert [f["path"] for f in summary["inputs"]["events"]] == [source] and summary["events"]["output_rows"] == 3


@pytest.mark.parametrize("suffix", [".bz2", ".zst", ".deflate"])
def test_compressed_input_cut_in_half_exits_3(tmp_path, suffix):
    import bz2
    import zlib

    import zstandard

    compress = {".bz2": bz2.compress, ".zst": zstandard.ZstdCompressor().compress, ".deflate": zlib.compress}[suffix]
    rows = [json.dumps(event(f"e{i}", "2026-10-01T09:00:00Z", text=f"note {i * 7919 % 10_000}")) for i in range(2000)]
    data = compress(("\n".join(rows) + "\n").encode())
    path = tmp_path / f"events.jsonl{suffix}"
    path.write_bytes(data[: len(data) // 2])
    result = cli_run("-t", str(path), "--out", str(tmp_path / "out"))
    assert result.exit_code == EXIT_INPUT and f"cannot read {path}" in result.output
    assert not (tmp_path / "out" / "events").exists()


# --- quarantined rows without a date, corrupted partitions -----------------------------------------------------

def test_undated_quarantine_rows_are_replaced_by_every_run_that_reads_their_file(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    daily = write_lines(inputs / "daily.jsonl", event("a1", "2026-10-01T09:00:00Z"),
                        event("u1", "yesterday"), "not json")
    out = tmp_path / "out"
    for window in (["--date", "2026-10-01"], ["--date", "2026-10-09"], []):  # three runs over the same file
        assert cli_run("-t", daily, "--out", str(out), *window).exit_code == 0
    other = write_lines(inputs / "other.jsonl", event("u2", "13:00"))
    assert cli_run("-t", other, "--out", str(out), "--date", "2026-10-02").exit_code == 0
    undated = "select source_file, line_no, error_kind from t where dt is null order by all"
    expected = [(daily, 2, "bad_timestamp"), (daily, 3, "unparseable_line"), (other, 1, "bad_timestamp")]
    assert rows_of(out / "quarantine", undated) == expected  # one copy of each
    assert rows_of(out / "_restricted" / "quarantine_raw", undated) == expected
    assert sorted(p.parent.name for p in (out / "quarantine").glob("*/*.parquet")) == ["dt=__HIVE_DEFAULT_PARTITION__"]
    write_lines(inputs / "daily.jsonl", event("a1", "2026-10-01T09:00:00Z"))  # the file fixed upstream
    assert cli_run("-t", daily, "--out", str(out)).exit_code == 0
    assert rows_of(out / "quarantine", undated) == [(other, 1, "bad_timestamp")]
    check = runner.invoke(app, ["check", "--out", str(out), "-T", "quarantine_share=1"])
    assert check.exit_code == 0, check.output


def test_a_corrupted_published_partition_is_rewritten_by_the_rerun(tmp_path):
    source = events_file(tmp_path / "in")
    out = tmp_path / "out"
    assert cli_run("-t", source, "--out", str(out), "--run-id", "r").exit_code == 0
    partition = out / "events" / "dt=2026-10-01" / "part-00000.parquet"
    good = pq.read_table(partition).drop_columns(["run_id"])
    partition.write_bytes(partition.read_bytes()[:50])
    result = cli_run("-t", source, "--out", str(out), "--run-id", "r")
    assert result.exit_code == 0, result.output
    assert pq.read_table(partition).drop_columns(["run_id"]).equals(good)
