"""Quality checkpoint: suites, severities, exit codes, quality_results, Data Docs.

One small sample run is made per module; each test breaks one thing in a copy of its Parquet files.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipelines.cli import EXIT_QUALITY_ERROR, EXIT_QUALITY_WARN, app
from pipelines.quality.checkpoint import candidate_column, unmasked_pii
from pipelines.quality.settings import load_settings, parse_assignments
from pipelines.sample import generate_sample

runner = CliRunner()
SCRIPT = """<img src=x onerror="document.title='pwned'">"""
TABLES = ("events", "feedback", "quarantine", "duplicates")


def sample_run(root: Path, *options: str, cross_channel_share: float = 0.0) -> Path:
    """Outputs of run `qrun` on a generated sample of 1,500 events under `root` (no quality check yet)."""
    generate_sample(root / "in", 1500, seed=11, cross_channel_share=cross_channel_share)
    result = runner.invoke(app, ["run", "-t", str(root / "in" / "touchpoints" / "*"), "-f", str(root / "in" / "feedback" / "*"),
                                 "--out", str(root / "out"), "--run-id", "qrun", "--no-check", "--direct_num_workers=1",
                                 *options])
    assert result.exit_code == 0, result.output
    return root / "out"


def copied(out: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    return copy


@pytest.fixture(scope="module")
def clean_out(tmp_path_factory) -> Path:
    return sample_run(tmp_path_factory.mktemp("quality"))


@pytest.fixture
def out(clean_out, tmp_path) -> Path:
    return copied(clean_out, tmp_path)


def check(out: Path, *thresholds: str):
    args = ["check", "--out", str(out)] + [a for t in thresholds for a in ("-T", t)]
    return runner.invoke(app, args)


def results(out: Path) -> list[dict]:
    return pq.read_table(out / "quality_results" / "run_id=qrun" / "part-00000.parquet").to_pylist()


def failed(out: Path) -> set[tuple[str, str, str]]:
    return {(r["dataset"], r["expectation"], r["severity"]) for r in results(out) if not r["success"]}


def rewrite(out: Path, table: str, change) -> None:
    """Apply `change(pa.Table) -> pa.Table` to every Parquet file of `table`."""
    for path in (out / table).glob("*/*.parquet"):
        pq.write_table(change(pq.read_table(path)), path)


def set_column(table: pa.Table, name: str, values: list) -> pa.Table:
    field = table.schema.field(name).with_nullable(True)
    return table.set_column(table.schema.get_field_index(name), field, pa.array(values, field.type))


def first_row(name: str, value):
    """A change that sets `name` of a file's first row to `value`."""
    def change(table: pa.Table) -> pa.Table:
        return set_column(table, name, [value] + table.column(name).to_pylist()[1:])
    return change


def every_row(name: str, value):
    def change(table: pa.Table) -> pa.Table:
        return set_column(table, name, [value] * table.num_rows)
    return change


def duplicate_first_row(table: pa.Table) -> pa.Table:
    return pa.concat_tables([table, table.slice(0, 1)])


def drop_first_row(table: pa.Table) -> pa.Table:
    return table.slice(1)


def first_rating(field: str, value: float):
    def change(table: pa.Table) -> pa.Table:
        ratings = table.column("ratings").to_pylist()
        row = next(i for i, r in enumerate(ratings) if r)
        ratings[row][0][field] = value
        return set_column(table, "ratings", ratings)
    return change


def test_clean_run_passes_every_check(out):
    result = check(out)
    assert result.exit_code == 0, result.output
    rows = results(out)
    assert {r["dataset"] for r in rows} == {"events", "feedback", "quarantine", "identity_map", "identity_links",
                                            "identity_conflicts", "run_summary"}
    assert len(rows) == 89 and all(r["success"] for r in rows)
    assert "89/89 checks passed" in result.output
    unique = next(r for r in rows if r["expectation"] == "event_id unique")
    assert (unique["observed_value"], unique["severity"], unique["sampled"]) == ("0", "error", False)


FUTURE = datetime.now(timezone.utc) + timedelta(days=400)
BREAKS = {
    "null customer_id": ("events", first_row("customer_id", None), {("events", "customer_id not null", "error")}),
    "null person_id": ("events", first_row("person_id", None), {("events", "person_id not null", "error")}),
    "a customer_id in two persons": ("events", first_row("person_id", "p_0000000000000000"),
                                     {("events", "one person_id per customer_id", "error")}),
    "null feedback person_id": ("feedback", first_row("person_id", None), {("feedback", "person_id not null", "error")}),
    "duplicate event_id": ("events", duplicate_first_row,
                           {("events", "event_id unique", "error"),
                            ("run_summary", "input = output + duplicates + quarantine + outside window", "error"),
                            ("run_summary", "output rows in tables = run summary", "error")}),
    "future timestamp": ("events", first_row("occurred_at", FUTURE), {("events", "occurred_at not in the future", "error")}),
    "mot_step 9": ("events", first_row("mot_step", 9), {("events", "mot_step in 1..5 or null", "error"),
                                                        ("events", "mot_step is one of mot_steps", "error")}),
    "primary step not performed": ("events", first_row("mot_steps", []),
                                   {("events", "mot_step is one of mot_steps", "error")}),
    "unknown PZB dimension": ("events", first_row("pzb_tags", [{"dimension": "speed", "polarity": "negative"}]),
                              {("events", "PZB dimension in allowed set", "error")}),
    "negative wait_s": ("events", first_row("wait_s", -1.0), {("events", "wait_s >= 0", "error")}),
    "negative duration_s": ("events", first_row("duration_s", -5.0), {("events", "duration_s >= 0", "error")}),
    "phone in text": ("events", first_row("text", "请拨打13812345678联系我"),
                      {("events", "no unmasked PII in text columns", "error")}),
    "e-mail in comment": ("feedback", first_row("comment", "write to li.lei@example.com"),
                          {("feedback", "no unmasked PII in text columns", "error")}),
    "csat 6": ("feedback", first_row("csat", 6), {("feedback", "csat in 1..5", "error")}),
    "nps 11": ("feedback", first_row("nps", 11), {("feedback", "nps in 0..10", "error")}),
    "ces 0": ("feedback", first_row("ces", 0), {("feedback", "ces in 1..7", "error")}),
    "SERVQUAL perception 8": ("feedback", first_rating("perception", 8.0),
                              {("feedback", "SERVQUAL rating perception in 1..7", "error")}),
    "empathy_perception 0": ("feedback", first_row("empathy_perception", 0.0),
                             {("feedback", "empathy_perception in 1..7", "error")}),
    "duplicate feedback_id": ("feedback", duplicate_first_row,
                              {("feedback", "feedback_id unique", "error"),
                               ("run_summary", "input = output + duplicates + quarantine + outside window", "error"),
                               ("run_summary", "output rows in tables = run summary", "error")}),
    "unknown error_kind": ("quarantine", first_row("error_kind", "weird"),
                           {("quarantine", "error_kind is a known kind", "error")}),
    "lost duplicate row": ("duplicates", drop_first_row,
                           {("run_summary", "input = output + duplicates + quarantine + outside window", "error"),
                            ("run_summary", "duplicate rows in tables = run summary", "error")}),
    "all touchpoints unmapped": ("events", every_row("mot_step_source", None),
                                 {("events", "unmapped touchpoint share <= 0.05", "warn")}),
    "no feedback linked": ("feedback", every_row("visit_id", None),
                           {("feedback", "feedback linked share >= 0.8", "warn")}),
}


@pytest.mark.parametrize("case", BREAKS, ids=list(BREAKS))
def test_each_broken_check_fails_alone_with_its_severity_and_exit_code(out, case):
    table, change, expected = BREAKS[case]
    rewrite(out, table, change)
    result = check(out)
    assert failed(out) == expected, result.output
    worst = "error" if any(s == "error" for _, _, s in expected) else "warn"
    assert result.exit_code == (EXIT_QUALITY_ERROR if worst == "error" else EXIT_QUALITY_WARN)
    assert "failed quality checks" in result.output


@pytest.mark.parametrize(("count", "expectation"), [
    ("lines_read", "lines read = lines of rows + blank, header and further lines"),
    ("bytes_read", "bytes read = bytes of the input files"),
])
def test_a_run_summary_whose_physical_counts_differ_fails_its_check(out, count, expectation):
    path = out / "_runs" / "qrun.json"
    summary = json.loads(path.read_text())
    assert summary["events"]["read"][count] > 0
    summary["events"]["read"][count] -= 1
    path.write_text(json.dumps(summary))
    result = check(out)
    assert failed(out) == {("run_summary", expectation, "error")}, result.output
    assert result.exit_code == EXIT_QUALITY_ERROR


def test_untagged_share_is_a_warning(out):
    rewrite(out, "events", lambda t: every_row("pzb_tags", [])(every_row("mot_step", None)(t)))
    result = check(out, "unmapped_touchpoint_share=1")
    assert failed(out) == {("events", "untagged event share <= 0.05", "warn")}
    assert result.exit_code == EXIT_QUALITY_WARN
    share = next(r for r in results(out) if r["expectation"] == "untagged event share <= 0.05")
    assert float(share["observed_value"]) > 0.05


def test_thresholds_from_the_command_line(out):
    result = check(out, "quarantine_share=0")
    assert failed(out) == {("quarantine", "quarantined share <= 0.0", "warn")}
    assert result.exit_code == EXIT_QUALITY_WARN


def test_window_passed_by_the_caller(out):
    result = check(out, "window_start=2030-01-01", "window_end=2030-01-31")
    assert failed(out) == {("events", "occurred_at inside the run's window", "warn"),
                           ("feedback", "submitted_at inside the run's window", "warn")}
    assert result.exit_code == EXIT_QUALITY_WARN
    inside = next(r for r in results(out) if r["expectation"] == "occurred_at inside the run's window")
    assert inside["unexpected_count"] == inside["element_count"] > 0


def test_failing_checks_never_delete_rows(out):
    rewrite(out, "events", first_row("mot_step", 9))
    before = {t: duckdb.sql(f"select count(*) from '{out}/{t}/*/*.parquet'").fetchall()[0][0] for t in TABLES}
    assert check(out).exit_code == EXIT_QUALITY_ERROR
    after = {t: duckdb.sql(f"select count(*) from '{out}/{t}/*/*.parquet'").fetchall()[0][0] for t in TABLES}
    assert after == before


def test_rerun_of_a_run_id_replaces_its_quality_results(out):
    check(out)
    check(out)
    files = list((out / "quality_results").glob("*/*.parquet"))
    assert [f.parent.name for f in files] == ["run_id=qrun"]
    rows = duckdb.sql(f"select run_id, count(*) from read_parquet('{out}/quality_results/*/*.parquet') group by all").fetchall()
    assert rows == [("qrun", 89)]


@pytest.fixture(scope="module")
def identity_clean_out(tmp_path_factory) -> Path:
    """A run whose persons are linked across channels, with a lobby tablet shared by more than 2 customers and
    persons over a cap of 3 identifiers: both kinds of identity conflict."""
    root = tmp_path_factory.mktemp("identity_quality")
    playbook = root / "capped.yaml"
    playbook.write_text('name: capped\nversion: "1.0.0"\nextends: bank_branch\n'
                        'identity: {max_identifiers: 3, types: {device_id: {max_customers: 2}}}\n')
    return sample_run(root, "--playbook", str(playbook), "--identity-key", "k", cross_channel_share=0.3)


@pytest.fixture
def identity_out(identity_clean_out, tmp_path) -> Path:
    return copied(identity_clean_out, tmp_path)


def check_identity(out: Path):
    """`check`, with the feedback linked share the cap leaves (0.66: a capped person's survey system keeps its own
    person, so its feedback finds no visit)."""
    return check(out, "feedback_linked_share=0.6")


def test_identity_tables_of_a_cross_channel_run_pass_their_checks(identity_out):
    kinds = duckdb.sql(f"select kind, count(*) from '{identity_out}/identity_conflicts/*/*.parquet' group by all").fetchall()
    assert {k for k, _ in kinds} == {"shared_identifier", "person_cap"}
    result = check_identity(identity_out)
    assert result.exit_code == 0, result.output
    identity = [r for r in results(identity_out) if r["dataset"].startswith("identity_")]
    assert len(identity) == 25 and all(r["success"] for r in identity)
    hashes = next(r for r in identity if (r["dataset"], r["expectation"]) == ("identity_map", "identifier_hash is a keyed hash"))
    assert hashes["element_count"] > 100 and hashes["unexpected_count"] == 0


def identity_row(values: dict, where=lambda row: row["identifier_type"] != "customer_id"):
    """A change that sets `values` in the first row matching `where` (by default not a customer id: not a
    person's anchor)."""
    def change(table: pa.Table) -> pa.Table:
        rows = table.to_pylist()
        next(r for r in rows if where(r)).update(values)
        return pa.Table.from_pylist(rows, schema=table.schema)
    return change


def duplicate_identity_row(table: pa.Table) -> pa.Table:
    rows = table.to_pylist()
    return pa.Table.from_pylist(rows + [next(r for r in rows if r["identifier_type"] != "customer_id")], schema=table.schema)


IDENTITY_BREAKS = {
    "a raw phone in identity_map": ("identity_map", identity_row({"identifier_hash": "+8613712345678"}),
                                    "identifier_hash is a keyed hash"),
    "a raw customer id in identity_links": ("identity_links", identity_row({"customer_hash": "c00042"}, lambda r: True),
                                            "customer_hash is a keyed hash"),
    "a raw device id in identity_conflicts": ("identity_conflicts", identity_row(
        {"identifier_hash": "lobby-tablet-01"}, lambda r: r["kind"] == "shared_identifier"), "identifier_hash is a keyed hash"),
    "an upper-case identifier type": ("identity_map", identity_row({"identifier_type": "Phone"}),
                                      "identifier_type is a lower-case name"),
    "a person id that is not a hash": ("identity_map", identity_row({"person_id": "c00042"}),
                                       ("person_id is p_ + a keyed hash",
                                        "every person is anchored at one of its customer ids")),
    "an identifier mapped twice": ("identity_map", duplicate_identity_row, "one person per identifier"),
    "a person without its anchor": ("identity_map", identity_row({"person_id": "p_" + "0" * 16}),
                                    "every person is anchored at one of its customer ids"),
    "a null identifier type": ("identity_links", first_row("identifier_type", None), "identifier_type not null"),
    "a conflict within its limit": ("identity_conflicts", every_row("limit", 1000), "every conflict is over its limit"),
    "an unknown conflict kind": ("identity_conflicts", first_row("kind", "merged"), "kind is shared_identifier or person_cap"),
}


@pytest.mark.parametrize("case", IDENTITY_BREAKS, ids=list(IDENTITY_BREAKS))
def test_each_broken_identity_check_fails_alone(identity_out, case):
    table, change, expectations = IDENTITY_BREAKS[case]
    rewrite(identity_out, table, change)
    result = check_identity(identity_out)
    expectations = (expectations,) if isinstance(expectations, str) else expectations
    assert failed(identity_out) == {(table, e, "error") for e in expectations}, result.output
    assert result.exit_code == EXIT_QUALITY_ERROR


def test_a_shared_identifier_that_links_someone_fails(identity_out):
    shared = duckdb.sql(f"select identifier_type, identifier_hash from '{identity_out}/identity_conflicts/*/*.parquet'"
                        " where kind = 'shared_identifier'").fetchall()[0]
    rewrite(identity_out, "identity_map", identity_row({"identifier_type": shared[0], "identifier_hash": shared[1]}))
    result = check_identity(identity_out)
    assert failed(identity_out) == {("identity_conflicts", "a shared identifier links nobody", "error")}, result.output


def test_check_without_outputs_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["check", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "no run summary" in result.output


def test_run_command_runs_the_checkpoint_and_exits_5_on_warnings(tmp_path):
    fixtures = Path(__file__).parents[1] / "fixtures"
    result = runner.invoke(app, ["run", "-t", str(fixtures / "events_a.jsonl"), "--out", str(tmp_path), "--run-id", "fx",
                                 "-T", "quarantine_share=0.5", "--direct_num_workers=1"])
    assert result.exit_code == EXIT_QUALITY_WARN, result.output
    rows = pq.read_table(tmp_path / "quality_results" / "run_id=fx" / "part-00000.parquet").to_pylist()
    assert [(r["expectation"], r["observed_value"]) for r in rows if not r["success"]] == [
        ("unmapped touchpoint share <= 0.05", str(1 / 7))]
    assert (tmp_path / "_quality" / "data_docs" / "index.html").is_file()


def test_settings_precedence_defaults_playbook_command_line():
    assert load_settings().unmapped_touchpoint_share == 0.05
    settings = load_settings({"unmapped_touchpoint_share": 0.2, "quarantine_share": 0.3}, ["quarantine_share=0.4"])
    assert (settings.unmapped_touchpoint_share, settings.quarantine_share) == (0.2, 0.4)
    assert load_settings({}, ["window_start=2026-10-01"]).window_start == datetime(2026, 10, 1, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="not NAME=VALUE"):
        parse_assignments(["quarantine_share"])
    with pytest.raises(ValueError):
        load_settings({}, ["quarantine_share=2"])


def test_unmasked_pii_names_column_and_kind_only():
    batch = pa.RecordBatch.from_pydict({candidate_column("text"): ["call 13812345678 or a@b.cn", None, "order 12345"]})
    assert unmasked_pii(batch, ("text",)).to_pylist() == ["text:email,text:phone", None, None]


def test_the_unmasked_pii_scan_knows_the_phone_regions_it_is_given():
    batch = pa.RecordBatch.from_pydict({candidate_column("text"): ["bel me op 020 123 4567", "order 2026100112"]})
    assert unmasked_pii(batch, ("text",)).to_pylist() == [None, None]  # a Dutch number: not a default region
    assert unmasked_pii(batch, ("text",), ("US", "NL")).to_pylist() == ["text:phone", None]
    assert load_settings({}, [], ("CN", "NL")).phone_regions == ("CN", "NL")


def test_check_scans_for_the_national_numbers_of_the_playbooks_regions(out, tmp_path):
    """A playbook's `pii.phone_regions` reach the checkpoint: its Dutch number is unmasked PII, the defaults' not."""
    rewrite(out, "events", first_row("text", "bel me op 020 123 4567"))
    assert check(out).exit_code == 0
    dutch = tmp_path / "nl.yaml"
    dutch.write_text("name: nl\nversion: '1'\nextends: base\npii:\n  phone_regions: [NL]\n", encoding="utf-8")
    result = runner.invoke(app, ["check", "--out", str(out), "--playbook", str(dutch)])
    assert result.exit_code == EXIT_QUALITY_ERROR, result.output
    assert failed(out) == {("events", "no unmasked PII in text columns", "error")}


def test_duckdb_metrics_give_the_results_of_ge_pandas_engine():
    """Every expectation type of the suites, on the same rows: GE evaluating DuckDB's metrics == GE's pandas engine."""
    import great_expectations as gx
    import great_expectations.expectations as gxe
    import pandas as pd
    from great_expectations.core import ExpectationSuite

    from pipelines.quality.metrics import compute_metrics
    from pipelines.quality.suites import KEYED_HASH, WARN, at_most, between, expect, matching, not_null

    at = [datetime(2026, 10, d, 9, tzinfo=timezone.utc) for d in (1, 2, 3, 4, 5, 6)]
    frame = pd.DataFrame({
        "x": [1.0, None, -2.0, 7.0, 3.0, 5.0], "n": [0, 1, 2, 3, 4, 5],
        "s": ["empathy", "speed", None, "tangibles", "speed", "empathy"],
        "t": at, "flag": [None, None, "text:phone", None, None, "text:email"],
        "a": [1.0, 2.0, None, None, 4.0, 6.0], "b": [1.0, 3.0, None, 5.0, 4.0, 6.0],
        "h": ["0123456789abcdef", "+8613712345678", None, "0123456789ABCDEF", "fedcba9876543210", "x0123456789abcdef"],
    })
    expectations = [
        *not_null("x", "s", "n"),
        between("x", 0, 5), between("x", 0, None, check="x >= 0"), between("n", 0, 0, check="n = 0"),
        between("t", None, at[3], check="t not after"), between("t", at[1], at[4], WARN, check="t inside"),
        expect(gxe.ExpectColumnValuesToBeInSet, "s in set", "error", column="s", value_set=["empathy", "tangibles"]),
        expect(gxe.ExpectColumnValuesToBeNull, "flag null", "error", column="flag"),
        at_most("x", 5, WARN, "max x <= 5"), at_most("n", 5, WARN, "max n <= 5"),
        expect(gxe.ExpectColumnMinToBeBetween, "min x >= 0", WARN, column="x", min_value=0),
        expect(gxe.ExpectColumnPairValuesToBeEqual, "a = b", "error", column_A="a", column_B="b"),
        matching("h", KEYED_HASH, "h is a keyed hash"),
    ]
    asset = gx.get_context(mode="ephemeral").data_sources.add_pandas("p").add_dataframe_asset("frame")
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": frame})
    by_pandas = {r.expectation_config.meta["check"]: r for r in batch.validate(ExpectationSuite(name="s", expectations=expectations)).results}

    con = duckdb.connect()
    con.register("frame", pa.Table.from_pandas(frame))
    metrics = compute_metrics(con, "select * from frame", expectations)
    by_duckdb = {e.meta["check"]: e.metrics_validate(metrics) for e in expectations}

    assert set(by_duckdb) == set(by_pandas)
    assert {c for c, r in by_duckdb.items() if not r.success} == {
        "x not null", "s not null", "x in 0..5", "x >= 0", "n = 0", "t not after", "t inside", "s in set", "flag null",
        "max x <= 5", "min x >= 0", "a = b", "h is a keyed hash"}
    for check, ours in by_duckdb.items():
        theirs = by_pandas[check]
        assert ours.success == theirs.success, check
        for key in ("element_count", "unexpected_count", "missing_count", "observed_value"):
            assert ours.result.get(key) == theirs.result.get(key), (check, key)
        assert len(ours.result.get("partial_unexpected_list", [])) == len(theirs.result.get("partial_unexpected_list", []))
    assert by_duckdb["x in 0..5"].result["partial_unexpected_list"] == [-2.0, 7.0]
    assert by_duckdb["s in set"].result["partial_unexpected_list"] == ["speed", "speed"]
    assert by_duckdb["a = b"].result["unexpected_count"] == 2  # (2, 3) and (None, 5); (None, None) is ignored
    assert by_duckdb["h is a keyed hash"].result["partial_unexpected_list"] == [
        "+8613712345678", "0123456789ABCDEF", "x0123456789abcdef"]


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Debian's chromium is not installed (`make test` installs it where it can: apt-get install -y chromium)")
def test_data_docs_open_offline_in_headless_chromium(out, tmp_path):
    chromium = shutil.which("chromium")
    rewrite(out, "quarantine", first_row("error_kind", SCRIPT))  # shown as an unexpected value of a failed check
    check(out, "quarantine_share=0")
    index = out / "_quality" / "data_docs" / "index.html"
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=5000"]
    dom = subprocess.run([*flags, "--dump-dom", index.as_uri()], capture_output=True, text=True, timeout=120).stdout
    for suite in ("events", "feedback", "quarantine", "run_summary"):
        assert f">{suite}</td>" in dom  # validation results and expectation suites tables
    assert "qrun" in dom and "ge-failed-icon" in dom and "ge-success-icon" in dom  # rows rendered by bootstrap-table
    assert "https://" not in "".join(line for line in dom.splitlines() if "<script" in line or "stylesheet" in line)
    page = next((out / "_quality" / "data_docs" / "validations" / "quarantine").rglob("*.html"))
    detail = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert "quarantine_share" in detail and "Failed" in detail
    assert "<title>pwned</title>" not in detail  # the handler did not run
    assert '<img src="x"' not in detail and "&lt;img src=x onerror=" in detail  # shown as text, not markup
    shot = tmp_path / "index.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,900", index.as_uri()], capture_output=True, timeout=120)
    assert shot.stat().st_size > 10_000
