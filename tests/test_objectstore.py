"""motpipe with every path on an S3-compatible object store (the `object_store` fixture: moto's server on a
loopback port), reached through Beam's S3 filesystem and its options, compared with the same run on local disk."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from typer.testing import CliRunner

from pipelines import output
from pipelines.beam_args import non_filesystem_arguments

from pipelines.cli import EXIT_LOCKED, EXIT_QUALITY_ERROR, EXIT_QUALITY_WARN, app
from pipelines.config import RunConfig
from pipelines.ingest.formats import match_inputs
from pipelines.lock import LEASE_S, LOCK_FILE, holder_record
from pipelines.output import partition_file, publish, write_partition
from pipelines.storage import delete_tree, filesystem_options, is_remote, list_tree, use_filesystem_options

FIXTURES = Path(__file__).parent / "fixtures"
INPUTS = ("events_a.jsonl", "events_b.csv", "feedback.jsonl")
SETTINGS = ["--run-id", "store-run", "--timezone", "Asia/Shanghai", "--buckets", "4", "--identity-key", "test-identity-key"]


def upload_inputs(store) -> str:
    landing = store.bucket("landing")
    for name in INPUTS:
        store.upload(FIXTURES / name, f"{landing}/in/{name}")
    return landing


@pytest.fixture(scope="module")
def cloud_run(object_store, tmp_path_factory):
    """The fixture run by `motpipe run` with inputs, --out and --restricted-out (so the work directory too) in
    three buckets, on an output whose lock a crashed run left an hour ago; returns (the store, its paths, the
    CLI result, a local copy of the outputs)."""
    landing, tables, restricted = upload_inputs(object_store), object_store.bucket("tables"), object_store.bucket("restricted")
    paths = {"landing": landing, "out": f"{tables}/motpipe", "restricted": f"{restricted}/motpipe"}
    crashed = holder_record("crashed-run", LEASE_S, datetime.now(timezone.utc) - timedelta(hours=1)) | {"host": "gone"}
    object_store.put(f"{paths['out']}/{LOCK_FILE}", json.dumps(crashed).encode())
    result = CliRunner().invoke(app, ["run", "-t", f"{landing}/in/events_*", "-f", f"{landing}/in/feedback.jsonl",
                                      "--out", paths["out"], "--restricted-out", paths["restricted"],
                                      *SETTINGS, *object_store.beam_args])
    copy = tmp_path_factory.mktemp("cloud-copy")
    object_store.download(paths["out"], copy)
    keyed = RunConfig(touchpoints=["-"], out=paths["out"], restricted_out=paths["restricted"]).restricted_dir
    object_store.download(keyed, copy / "_restricted")  # this output's own directory of the shared restricted store
    return object_store, paths, result, copy


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    result = CliRunner().invoke(app, ["run", "-t", str(FIXTURES / "events_*"), "-f", str(FIXTURES / "feedback.jsonl"),
                                      "--out", str(out), *SETTINGS])
    assert result.exit_code in (0, EXIT_QUALITY_WARN, EXIT_QUALITY_ERROR), result.output
    return out, result


# --- the run ----------------------------------------------------------------------------------------------
def test_run_on_the_object_store_succeeds_as_the_local_run(cloud_run, local_run):
    _, _, result, copy = cloud_run
    assert result.exit_code == local_run[1].exit_code, result.output
    summary = json.loads((copy / "_runs" / "store-run.json").read_text())
    assert summary["events"]["reconciled"] and summary["feedback"]["reconciled"]
    assert (summary["events"]["input_rows"], summary["events"]["output_rows"]) == (20, 9)


def test_the_crashed_runs_lock_was_taken_over_and_released(cloud_run):
    store, paths, _, copy = cloud_run
    assert (copy / "_runs" / "store-run.json").is_file() and LOCK_FILE not in store.keys(paths["out"])


def test_a_second_run_is_refused_with_exit_7_while_a_live_lease_holds_the_output(object_store):
    landing, out = upload_inputs(object_store), f"{object_store.bucket('held')}/motpipe"
    holder = holder_record("running", LEASE_S, datetime.now(timezone.utc)) | {"host": "worker-7"}
    object_store.put(f"{out}/{LOCK_FILE}", json.dumps(holder).encode())
    result = CliRunner().invoke(app, ["run", "-t", f"{landing}/in/events_a.jsonl", "--out", out, "--no-check",
                                      *object_store.beam_args])
    assert result.exit_code == EXIT_LOCKED, result.output
    assert "locked by run running" in result.output and "worker-7" in result.output
    assert object_store.keys(out) == [LOCK_FILE]  # nothing written, the holder's lock left alone


def test_every_table_equals_the_local_runs(cloud_run, local_run, published_rows, relocated):
    _, paths, _, copy = cloud_run
    expected = published_rows(local_run[0])
    got = relocated(published_rows(copy), f"{paths['landing']}/in/", f"{FIXTURES}/")
    assert {Path(name).parts[0] for name in expected} == {"events", "feedback", "quarantine", "duplicates", "_restricted"}
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert got[name] == expected[name], name


def test_summary_counts_equal_the_local_runs_and_inputs_carry_the_stores_checksums(cloud_run, local_run):
    copy = cloud_run[3]
    cloud, local = (json.loads((out / "_runs" / "store-run.json").read_text()) for out in (copy, local_run[0]))
    for key in ("events", "feedback", "published", "partitions"):
        assert cloud[key] == local[key], key
    inputs = cloud["inputs"]["events"] + cloud["inputs"]["feedback"]
    assert [f["path"].rsplit("/", 1)[1] for f in inputs] == list(INPUTS)
    assert all(f["checksum"].startswith("s3:") for f in inputs)


def test_the_restricted_bucket_holds_the_raw_quarantine_and_nothing_of_the_run_is_left_behind(cloud_run):
    store, paths, _, _ = cloud_run
    keyed = RunConfig(touchpoints=["-"], out=paths["out"], restricted_out=paths["restricted"]).restricted_dir
    restricted = store.keys(paths["restricted"])
    assert restricted and all(f"{paths['restricted']}/{key}".startswith(f"{keyed}/quarantine_raw/dt=")
                              or f"{paths['restricted']}/{key}" == f"{keyed}/_keys/identifiers.key"
                              for key in restricted)  # no _staging, no _work; the output's identifier key
    public = store.keys(paths["out"])
    assert {key.split("/")[0] for key in public} == {"events", "feedback", "quarantine", "duplicates", "runs", "_runs",
                                                     "quality_results", "_quality"}
    assert store.keys(paths["landing"]) == [f"in/{name}" for name in INPUTS]  # inputs untouched


# --- the quality checkpoint on the object store ---------------------------------------------------------------
def quality_results(out: Path) -> list[dict]:
    return pq.read_table(out / "quality_results" / "run_id=store-run" / "part-00000.parquet").drop_columns(["checked_at"]).to_pylist()


def test_the_quality_checkpoint_ran_on_the_stores_outputs_with_the_local_runs_results(cloud_run, local_run):
    _, paths, result, copy = cloud_run
    assert "quality:" in result.output and f"Data Docs {paths['out']}/_quality/data_docs/index.html" in result.output
    results = quality_results(copy)
    assert len(results) > 50 and results == quality_results(local_run[0])
    assert (copy / "_quality" / "data_docs" / "index.html").is_file()
    run_row = pq.read_table(copy / "runs").to_pylist()[0]
    assert run_row["quality"] == pq.read_table(local_run[0] / "runs").to_pylist()[0]["quality"]


def test_motpipe_check_reads_the_outputs_on_the_store(cloud_run, local_run):
    store, paths, result, _ = cloud_run
    check = CliRunner().invoke(app, ["check", "--out", paths["out"], *store.beam_args])
    assert check.exit_code == result.exit_code, check.output
    assert "checks passed" in check.output and "for run store-run" in check.output


# --- the views and the report of an output on the store ------------------------------------------------------
def view_rows(db: Path) -> dict[str, list]:
    """Every object the build recorded, its rows as text in a stable order, without the check's own time."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        objects = con.execute("select value from motpipe_settings where key = 'objects'").fetchall()[0][0].split(",")
        tables = {name: con.sql(f"select * from {name}").to_arrow_table() for name in objects}
        return {name: sorted(map(repr, table.drop_columns([c for c in table.column_names if c == "checked_at"]).to_pylist()))
                for name, table in tables.items()}
    finally:
        con.close()


@pytest.fixture(scope="module")
def cloud_views(cloud_run, local_run, tmp_path_factory):
    """`motpipe views` on the store's output into a local --db, and on the local run's output."""
    store, paths, _, _ = cloud_run
    built = tmp_path_factory.mktemp("views")
    result = CliRunner().invoke(app, ["views", "--out", paths["out"], "--db", str(built / "cloud.duckdb"), *store.beam_args])
    local = CliRunner().invoke(app, ["views", "--out", str(local_run[0]), "--db", str(built / "local.duckdb")])
    assert local.exit_code == 0, local.output
    return result, built / "cloud.duckdb", built / "local.duckdb"


def test_the_views_of_the_stores_output_equal_the_local_runs(cloud_run, local_run, cloud_views):
    result, cloud_db, local_db = cloud_views
    assert result.exit_code == 0, result.output
    landing = cloud_run[1]["landing"]
    cloud = {name: [row.replace(f"{landing}/in/", f"{FIXTURES}/") for row in rows] for name, rows in view_rows(cloud_db).items()}
    local = view_rows(local_db)
    assert sorted(cloud) == sorted(local) and len(cloud["stg_events"]) == 9 and len(cloud["journeys"]) > 0
    for name in local:
        assert sorted(cloud[name]) == sorted(local[name]), name


def test_the_views_database_of_a_stores_output_holds_its_staging_tables_and_needs_no_store(cloud_run, cloud_views):
    _, cloud_db, _ = cloud_views
    con = duckdb.connect(str(cloud_db), read_only=True)
    try:
        kinds = dict(con.execute("select table_name, 'table' from duckdb_tables() where table_name like 'stg_%' "
                                 "union all select view_name, 'view' from duckdb_views() where view_name like 'stg_%'").fetchall())
        recorded = dict(con.execute("select key, value from motpipe_settings").fetchall())
    finally:
        con.close()
    assert kinds["stg_events"] == kinds["stg_feedback"] == kinds["stg_quality_results"] == "table"
    assert kinds["stg_identity_map"] == "view"  # the run has no identity table: an empty view, no file behind it
    assert recorded["out_dir"] == cloud_run[1]["out"] and recorded["materialized_layers"] == "staging,intermediate,marts"
    query = CliRunner().invoke(app, ["query", "--db", str(cloud_db), "select count(*) as n from stg_events"])  # no options
    assert query.exit_code == 0 and " 9 " in query.output, query.output


def test_motpipe_report_reads_the_local_database_and_writes_the_report_onto_the_store(cloud_run, cloud_views):
    store, paths, _, _ = cloud_run
    reports = store.bucket("reports")
    result = CliRunner().invoke(app, ["report", "--out", paths["out"], "--db", str(cloud_views[1]),
                                      "--html", f"{reports}/motpipe/report.html", *store.beam_args])
    assert result.exit_code == 0, result.output
    assert f"wrote {reports}/motpipe/report.html" in result.output and "10 charts" in result.output
    assert store.keys(reports) == ["motpipe/report.html"]
    page = store.client.get_object(Bucket=reports[len("s3://"):], Key="motpipe/report.html")["Body"].read().decode()
    assert page.startswith("<!DOCTYPE html>") and f"data: {paths['out']}" in page


@pytest.mark.parametrize("command", ["views", "report", "cases"])
def test_an_output_on_the_store_needs_a_local_db(cloud_run, command):
    store, paths, _, _ = cloud_run
    result = CliRunner().invoke(app, [command, "--out", paths["out"], *store.beam_args])
    assert result.exit_code == 2, result.output
    assert f"{paths['out']} is not on a local disk: give --db" in result.output


def test_a_views_output_that_holds_no_run_is_refused(object_store, tmp_path):
    empty = f"{object_store.bucket('empty')}/out"
    result = CliRunner().invoke(app, ["views", "--out", empty, "--db", str(tmp_path / "v.duckdb"), *object_store.beam_args])
    assert result.exit_code == 2 and f"{empty}/events does not exist" in result.output, result.output
    assert not (tmp_path / "v.duckdb").exists()


# --- the driver's filesystem calls get the options ------------------------------------------------------------
def test_only_filesystem_options_are_kept_for_the_driver_and_workers():
    assert filesystem_options(["--s3_endpoint_url=http://127.0.0.1:1", "--s3_disable_ssl", "--runner=DirectRunner",
                               "--direct_num_workers=2"]) == {"s3_endpoint_url": "http://127.0.0.1:1", "s3_disable_ssl": True}
    assert filesystem_options([]) == {}


def test_the_other_arguments_of_a_command_that_reads_an_output_are_told_apart():
    assert non_filesystem_arguments(["--s3_endpoint_url=http://127.0.0.1:1", "--s3_disable_ssl", "--runner=DirectRunner",
                                     "--wieghts", "reliability=1", "stray"]) == ["--runner", "--wieghts", "stray"]
    assert non_filesystem_arguments(["--s3_region_name", "eu-west-1"]) == []


@pytest.mark.parametrize("command", ["views", "report", "cases", "check"])
def test_a_command_that_reads_an_output_refuses_what_is_no_filesystem_option(command, tmp_path):
    result = CliRunner().invoke(app, [command, "--out", str(tmp_path), "--wieghts", "reliability=1"])
    assert result.exit_code == 2, result.output
    assert f"motpipe {command} takes no --wieghts" in result.output


def test_the_options_never_reach_the_run_id_or_the_summary_settings():
    config = RunConfig(touchpoints=["x.jsonl"], out="o", filesystem_options={"s3_secret_access_key": "secret"})
    assert "filesystem_options" not in config.model_dump() and "secret" not in repr(config)


def test_setting_the_same_filesystem_options_again_keeps_one_s3_client(object_store):
    """Every DoFn setup sets the options: the same ones keep their object, so Beam's S3 calls share one boto3
    client (a new one costs ~0.25 s: the Dask run on the store took 90 s instead of 56 s)."""
    from apache_beam.io.aws.clients.s3.boto3_client import Client

    options = filesystem_options(object_store.beam_args)
    try:
        use_filesystem_options(options)
        first = FileSystems._pipeline_options
        use_filesystem_options(dict(options))
        assert FileSystems._pipeline_options is first
        assert Client(FileSystems._pipeline_options).client is Client(first).client
        use_filesystem_options({})
        assert FileSystems._pipeline_options is not first
    finally:
        use_filesystem_options({})


def test_inputs_on_the_store_are_matched_once_the_options_are_set(object_store):
    landing = upload_inputs(object_store)
    use_filesystem_options(filesystem_options(object_store.beam_args))
    try:
        matched = match_inputs([f"{landing}/in/events_*"])
    finally:
        use_filesystem_options({})
    assert [(f.path, f.size_bytes) for f in matched] == [
        (f"{landing}/in/{name}", (FIXTURES / name).stat().st_size) for name in INPUTS[:2]]


def test_delete_tree_removes_every_object_under_a_prefix_and_nothing_beside_it(object_store):
    bucket = object_store.bucket()
    for key in ("run/a.json", "run/x/b.arrow", "run-other/c.json", "keep.json"):
        object_store.upload(FIXTURES / "feedback.jsonl", f"{bucket}/{key}")
    use_filesystem_options(filesystem_options(object_store.beam_args))
    try:
        assert list_tree(f"{bucket}/run") == [f"{bucket}/run/a.json", f"{bucket}/run/x/b.arrow"]
        delete_tree(f"{bucket}/run")
        delete_tree(f"{bucket}/nothing-here")  # no error
    finally:
        use_filesystem_options({})
    assert object_store.keys(bucket) == ["keep.json", "run-other/c.json"]


def test_delete_tree_on_a_local_directory(tmp_path):
    (tmp_path / "run" / "x").mkdir(parents=True)
    (tmp_path / "run" / "x" / "a.arrow").write_bytes(b"a")
    (tmp_path / "keep").write_bytes(b"k")
    delete_tree(str(tmp_path / "run"))
    delete_tree(str(tmp_path / "missing"))
    assert [p.name for p in tmp_path.iterdir()] == ["keep"]


@pytest.mark.parametrize("path, remote", [("s3://b/k", True), ("gs://b/k", True), ("/data/out", False),
                                          ("out", False), ("file:///data/out", False)])
def test_remote_paths_are_told_by_their_scheme(path, remote):
    assert is_remote(path) is remote


def test_beams_s3_client_wrapper_shares_one_boto3_client_per_options_object(object_store):
    from apache_beam.io.aws.clients.s3 import boto3_client
    from apache_beam.options.pipeline_options import PipelineOptions

    use_filesystem_options({})
    options = PipelineOptions(object_store.beam_args)
    first, second = (boto3_client.Client(options=options) for _ in range(2))
    other = boto3_client.Client(options=PipelineOptions([*object_store.beam_args[:-1], "--s3_region_name=eu-west-1"]))
    assert first.client is second.client and other.client is not first.client
    assert other.client.meta.region_name == "eu-west-1" and first.client.meta.region_name == object_store.REGION
    assert first is not second  # each wrapper keeps its own download state


# --- publishing on an object store: no directory rename, one object per partition ------------------------------
def partition_rows(path: str) -> list[dict]:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        return pq.read_table(pa.BufferReader(handle.read())).to_pylist()


def test_a_crash_between_two_partition_copies_leaves_each_partition_whole_and_the_rerun_completes(object_store, monkeypatch):
    """Publishing a partition on S3 is one object copy (Beam's rename: copy, then delete the staged object),
    and a copy is atomic: a reader sees the old object or the new one. A crash between two copies leaves the
    first partition new and the second old, each whole; the staged rest stays until the rerun publishes it."""
    out = f"{object_store.bucket('publish')}/out"
    staging, dates = f"{out}/_staging/second-run", ["2026-10-01", "2026-10-02"]
    use_filesystem_options(filesystem_options(object_store.beam_args))
    try:
        for dt in dates:
            write_partition(out, "events", dt, [pa.table({"event_id": [f"old-{dt}"]})], 10)
            write_partition(staging, "events", dt, [pa.table({"event_id": [f"new-{dt}"], "extra": [1]})], 10)
        real_rename, copies = output.FileSystems.rename, []

        def killed_after_the_first(sources, destinations):
            copies.append(destinations)
            if len(copies) == 2:
                raise OSError("killed (injected)")
            return real_rename(sources, destinations)

        monkeypatch.setattr(output.FileSystems, "rename", killed_after_the_first)
        with pytest.raises(OSError, match="killed"):
            publish(staging, out, ["events"], None)
        first, second = (partition_file(out, "events", dt) for dt in dates)
        assert partition_rows(first) == [{"event_id": "new-2026-10-01", "extra": 1}]  # whole and new
        assert partition_rows(second) == [{"event_id": "old-2026-10-02"}]  # whole and old
        assert object_store.keys(staging) == ["events/dt=2026-10-02/part-00000.parquet"]  # the rest, still staged
        monkeypatch.setattr(output.FileSystems, "rename", real_rename)
        published = publish(staging, out, ["events"], None)  # the rest, as the rerun (which restages both) would
        assert [partition_rows(p) for p in (first, second)] == [[{"event_id": f"new-{dt}", "extra": 1}] for dt in dates]
    finally:
        use_filesystem_options({})
    assert published.replaced == [second] and object_store.keys(staging) == []
