"""motpipe on Beam's DaskRunner: the runner options (pure functions), the local cluster's lifecycle, the Beam
features the pipeline relies on, measured on a 2-worker distributed.LocalCluster (separate worker processes),
and the full pipeline's output on that cluster compared row for row with the DirectRunner's."""
from __future__ import annotations

import json
import os
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability import prism_runner
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from distributed import Client
from typer.testing import CliRunner

from pipelines.cli import EXIT_USAGE, app
from pipelines.config import RunConfig
from pipelines.pipeline import run
from pipelines.runners import (
    DASK_RUNNER,
    RunnerOptionsError,
    beam_runner_args,
    check_runner_options,
    dask_args,
    without_type_inference,
    is_dask,
    local_cluster,
    local_runner,
    runner_options,
)
from pipelines.standby import direct_worker_args

FIXTURES = Path(__file__).parent / "fixtures"
SUMMARY_COUNTS = ("events", "feedback", "published", "partitions")


@pytest.fixture(scope="module")
def cluster():
    """One 2-worker local cluster (two worker processes) for the whole module; yields its scheduler address."""
    with local_cluster(2) as address:
        yield address


def worker_pids(address: str) -> set[int]:
    with Client(address, set_as_default=False) as client:
        return set(client.run(os.getpid).values())


def is_reachable(address: str) -> bool:
    try:
        with Client(address, timeout=2, set_as_default=False):
            return True
    except OSError:
        return False


# --- options: pure functions ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["dask", "Dask", "DaskRunner", DASK_RUNNER])
def test_dask_is_recognised_by_short_name_class_name_and_path(name):
    assert is_dask(name)


@pytest.mark.parametrize("name", [None, "DirectRunner", "PortableRunner", "DataflowRunner"])
def test_other_runners_are_not_dask(name):
    assert not is_dask(name)


@pytest.mark.parametrize("runner, address, workers, args, message", [
    (None, "tcp://s:8786", None, [], "--dask-address needs --runner dask"),
    ("DirectRunner", None, 2, [], "--dask-workers needs --runner dask"),
    (None, "tcp://s:8786", 2, [], "--dask-address and --dask-workers need --runner dask"),
    ("dask", "tcp://s:8786", 2, [], "not both"),
    ("dask", None, 0, [], "at least 1"),
    ("dask", " ", None, [], "is empty"),
    ("dask", None, None, ["--dask_client_address=tcp://s:8786"], "with --dask-address, not"),
])
def test_contradicting_runner_options_are_refused(runner, address, workers, args, message):
    with pytest.raises(RunnerOptionsError, match=message):
        check_runner_options(runner, address, workers, args)


@pytest.mark.parametrize("runner, address, workers", [
    (None, None, None), ("PortableRunner", None, None), ("dask", None, None), ("dask", None, 3),
    ("dask", "tcp://s:8786", None),
])
def test_consistent_runner_options_pass(runner, address, workers):
    check_runner_options(runner, address, workers, ["--dask_npartitions=4"])


def test_other_runners_get_their_name_before_the_users_beam_arguments():
    assert beam_runner_args(None, ["--direct_num_workers=2"]) == ["--direct_num_workers=2"]
    assert beam_runner_args("PortableRunner", ["--job_endpoint=embed"]) == ["--runner=PortableRunner", "--job_endpoint=embed"]


def test_direct_runner_gets_a_worker_process_per_cpu_for_inputs_of_8_mib_and_more():
    parallel = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    assert direct_worker_args([], 8 * 2**20, cpus=2) == parallel
    assert direct_worker_args(["--save_main_session"], 8 * 2**20, cpus=2) == ["--save_main_session", *parallel]
    assert direct_worker_args([], 8 * 2**20 - 1, cpus=2) == []  # small input: one process starts faster
    assert direct_worker_args([], 2**30, cpus=1) == []
    for chosen in (["--direct_num_workers=4"], ["--direct_running_mode=in_memory"], ["--runner=PortableRunner"]):
        assert direct_worker_args(chosen, 2**30, cpus=2) == chosen  # the user's choice stands


def test_beam_type_inference_is_off_unless_the_arguments_choose():
    assert without_type_inference([]) == ["--no_pipeline_type_check"]
    assert without_type_inference(["--direct_num_workers=2"]) == ["--direct_num_workers=2", "--no_pipeline_type_check"]
    for chosen in (["--pipeline_type_check"], ["--no_pipeline_type_check"], ["--save_main_session", "--pipeline_type_check"]):
        assert without_type_inference(chosen) == chosen


@pytest.mark.parametrize("chosen", [[], ["--runner=DirectRunner"], ["--runner=direct"], ["--runner=SwitchingDirectRunner"]])
def test_the_default_and_the_direct_runner_are_beams_fn_api_runner_with_the_pipeline_options(chosen):
    runner = local_runner(PipelineOptions([*chosen, "--direct_running_mode=multi_processing", "--direct_num_workers=2"]))
    assert isinstance(runner, FnApiRunner)
    given = runner._provision_info.provision_info.pipeline_options  # what its worker processes ask for
    assert given["beam:option:direct_running_mode:v1"] == "multi_processing"
    assert int(given["beam:option:direct_num_workers:v1"]) == 2


@pytest.mark.parametrize("name", ["PortableRunner", "PrismRunner", DASK_RUNNER, "FnApiRunner"])
def test_any_other_runner_is_left_to_beam(name):
    assert local_runner(PipelineOptions([f"--runner={name}"])) is None


def test_a_run_on_the_default_runner_never_tries_the_prism_runner(tmp_path, monkeypatch):
    """Beam's DirectRunner tries Prism first (and on failure falls back to the FnApiRunner, so the run itself
    would pass either way): every attempt is recorded here."""
    tried = []

    def record(self, pipeline, options):
        tried.append(pipeline)
        raise RuntimeError("Prism is not to be tried")

    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", record)
    summary = run(fixture_config(tmp_path / "out", "no-prism"))
    assert summary["events"]["reconciled"] and summary["events"]["output_rows"] > 0
    assert tried == []


def test_dask_arguments_name_the_runner_scheduler_and_partitions():
    args = dask_args("tcp://s:8786", 4, ["--dask_connection_timeout=5"])
    assert args == [f"--runner={DASK_RUNNER}", "--dask_client_address=tcp://s:8786", "--dask_npartitions=4",
                    "--dask_connection_timeout=5"]
    options = PipelineOptions(args).get_all_options()
    assert (options["runner"], options["address"], options["npartitions"], options["timeout"]) == (
        DASK_RUNNER, "tcp://s:8786", 4, 5)


@pytest.mark.parametrize("own", ["--dask_npartitions=16", "--dask_partition_size=100"])
def test_the_users_own_partitioning_is_kept(own):
    assert dask_args("tcp://s:8786", 4, [own]) == [f"--runner={DASK_RUNNER}", "--dask_client_address=tcp://s:8786", own]


def test_non_dask_runner_options_pass_through_the_context_manager():
    with runner_options("PortableRunner", None, None, ["--job_endpoint=embed"]) as args:
        assert args == ["--runner=PortableRunner", "--job_endpoint=embed"]


@pytest.mark.parametrize("extra", [["--dask-workers", "2"], ["--runner", "dask", "--dask-workers", "0"],
                                   ["--runner", "dask", "--dask-workers", "2", "--dask-address", "tcp://s:8786"]])
def test_cli_refuses_bad_dask_options_with_the_usage_exit_code(tmp_path, extra):
    result = CliRunner().invoke(app, ["run", "--no-check", "-t", str(FIXTURES / "events_a.jsonl"),
                                      "--out", str(tmp_path), *extra])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "error:" in result.output and not (tmp_path / "_runs").exists()


# --- the local cluster's lifecycle ----------------------------------------------------------------------
def test_local_cluster_is_closed_after_the_run_also_on_error():
    with pytest.raises(RuntimeError, match="the run failed"):
        with runner_options("dask", None, 1, []) as args:
            address = dict(arg[2:].split("=", 1) for arg in args)["dask_client_address"]
            assert worker_pids(address) and "--dask_npartitions=1" in args
            raise RuntimeError("the run failed")
    assert not is_reachable(address)


def test_an_existing_cluster_is_used_and_left_running(cluster):
    with runner_options("dask", cluster, None, []) as args:
        assert args[:3] == [f"--runner={DASK_RUNNER}", f"--dask_client_address={cluster}", "--dask_npartitions=2"]
    assert is_reachable(cluster)


# --- Beam on the 2-worker cluster: what the pipeline relies on --------------------------------------------
class WriteGroup(beam.DoFn):
    """Writes one JSON file per key (its sorted values, the writer's pid and its setup() count)."""

    def __init__(self, directory: str):
        self.directory = directory

    def setup(self):
        self.setups = getattr(self, "setups", 0) + 1

    def process(self, keyed):
        key, values = keyed
        record = {"values": sorted(values), "pid": os.getpid(), "setups": self.setups}
        Path(self.directory, f"{key}.json").write_text(json.dumps(record))
        yield key


def written(directory: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}


def run_on(address: str, build) -> None:
    with runner_options("dask", address, None, []) as args, beam.Pipeline(options=PipelineOptions(args)) as p:
        build(p)


def test_groupbykey_and_a_file_writing_dofn_run_in_the_worker_processes(cluster, tmp_path):
    run_on(cluster, lambda p: p | beam.Create(range(40)) | beam.Map(lambda x: (f"k{x % 4}", x))
           | beam.GroupByKey() | beam.ParDo(WriteGroup(str(tmp_path))))
    files = written(tmp_path)
    assert {k: f["values"] for k, f in files.items()} == {f"k{r}": list(range(r, 40, 4)) for r in range(4)}
    pids = {f["pid"] for f in files.values()}
    assert pids <= worker_pids(cluster) and os.getpid() not in pids


def test_create_with_many_elements_loses_and_repeats_nothing(cluster, tmp_path):
    run_on(cluster, lambda p: p | beam.Create(range(5000)) | beam.Map(lambda x: ("all", x)) | beam.GroupByKey()
           | beam.ParDo(WriteGroup(str(tmp_path))))
    assert written(tmp_path)["all"]["values"] == list(range(5000))


def test_flatten_and_cogroupbykey(cluster, tmp_path):
    def build(p):
        left = p | "Left" >> beam.Create([("a", 1), ("b", 2)])
        right = p | "Right" >> beam.Create([("a", 3), ("c", 4)])
        flat = (left, right) | beam.Flatten() | beam.Map(lambda kv: ("flat", kv[1]))
        joined = {"l": left, "r": right} | beam.CoGroupByKey() | beam.Map(
            lambda kv: ("cogbk", f"{kv[0]}:{sorted(kv[1]['l'])}:{sorted(kv[1]['r'])}"))
        (flat, joined) | "Both" >> beam.Flatten() | beam.GroupByKey() | beam.ParDo(WriteGroup(str(tmp_path)))

    run_on(cluster, build)
    files = written(tmp_path)
    assert files["flat"]["values"] == [1, 2, 3, 4]
    assert files["cogbk"]["values"] == ["a:[1]:[3]", "b:[2]:[]", "c:[]:[4]"]


def test_reshuffle_and_side_inputs(cluster, tmp_path):
    def build(p):
        offset = p | "Offset" >> beam.Create([100])
        extra = p | "Extra" >> beam.Create([1, 2])
        (p | beam.Create([("k", 1), ("k", 2)]) | beam.Reshuffle()
         | beam.Map(lambda kv, o, e: (kv[0], kv[1] + o + sum(e)), o=beam.pvalue.AsSingleton(offset),
                    e=beam.pvalue.AsList(extra))
         | beam.GroupByKey() | beam.ParDo(WriteGroup(str(tmp_path))))

    run_on(cluster, build)
    assert written(tmp_path)["k"]["values"] == [104, 105]


def test_setup_runs_before_process_in_every_bundle(cluster, tmp_path):
    run_on(cluster, lambda p: p | beam.Create([(f"k{i}", i) for i in range(300)]) | beam.GroupByKey()
           | beam.ParDo(WriteGroup(str(tmp_path))))
    files = written(tmp_path)
    assert len(files) == 300 and all(f["setups"] >= 1 for f in files.values())


def test_a_worker_error_fails_the_run(cluster):
    def fail(x):
        raise ValueError(f"bad element {x}")

    with pytest.raises(ValueError, match="bad element 1"):
        run_on(cluster, lambda p: p | beam.Create([1]) | beam.Map(fail))


# --- the full pipeline: Dask output == DirectRunner output ---------------------------------------------
def fixture_config(out: Path, run_id: str) -> RunConfig:
    """The hand-written fixtures of tests/test_pipeline.py (bad rows of every kind, exact and conflicting duplicates)
    and tests/identity (persons across channels, a shared device, a capped person)."""
    return RunConfig(touchpoints=[str(FIXTURES / "events_*"), str(FIXTURES / "identity" / "events*")],
                     feedback=[str(FIXTURES / "feedback.jsonl"), str(FIXTURES / "identity" / "feedback.jsonl")],
                     out=str(out), timezone="Asia/Shanghai", run_id=run_id, buckets=2,
                     identity_key="test-identity-key")  # one key: the outputs are compared


def assert_same_outputs(got: dict, expected: dict) -> None:
    assert {Path(name).parts[0] for name in expected} >= {"events", "feedback", "quarantine", "duplicates", "_restricted",
                                                          "identity_links", "identity_map", "identity_conflicts"}
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert got[name] == expected[name], name


def test_full_pipeline_on_dask_equals_direct_runner(cluster, tmp_path, published_rows, object_store, relocated):
    """With every path (inputs, --out, --restricted-out, so the work directory) on the S3 server: the workers get
    no local path of the run at all (the strictest case; a run on the cluster with local paths:
    test_cli_runs_on_the_dask_cluster_it_is_given)."""
    direct = run(fixture_config(tmp_path / "direct", "direct-run"))
    expected = published_rows(tmp_path / "direct")

    landing, out, restricted = (object_store.bucket(name) for name in ("dask-landing", "dask-out", "dask-restricted"))
    for name in ("events_a.jsonl", "events_b.csv", "feedback.jsonl", "identity/events.jsonl", "identity/events_day2.csv",
                 "identity/feedback.jsonl"):
        object_store.upload(FIXTURES / name, f"{landing}/{name}")
    config = RunConfig(touchpoints=[f"{landing}/events_*", f"{landing}/identity/events*"],
                       feedback=[f"{landing}/feedback.jsonl", f"{landing}/identity/feedback.jsonl"], out=out,
                       restricted_out=restricted, timezone="Asia/Shanghai", run_id="dask-s3-run", buckets=2,
                       identity_key="test-identity-key")
    with runner_options("dask", cluster, None, object_store.beam_args) as args:
        on_store = run(config, args)
    object_store.download(out, tmp_path / "store")
    object_store.download(config.restricted_dir, tmp_path / "store" / "_restricted")
    assert_same_outputs(relocated(published_rows(tmp_path / "store"), f"{landing}/", f"{FIXTURES}/"), expected)
    assert {k: on_store[k] for k in SUMMARY_COUNTS} == {k: direct[k] for k in SUMMARY_COUNTS}
    assert on_store["events"]["reconciled"] and on_store["feedback"]["reconciled"]
    kept = {key.split("/")[1] for key in object_store.keys(restricted)}  # under the output's own directory
    assert kept == {"quarantine_raw", "_keys"}  # the raw quarantine and the identifier key: the work dir is gone


def test_cli_runs_on_the_dask_cluster_it_is_given(cluster, tmp_path, published_rows):
    """With local paths, which the workers share; the tables equal the DirectRunner's."""
    def motpipe_run(out: Path, *runner: str):
        result = CliRunner().invoke(app, ["run", "--no-check", "-t", str(FIXTURES / "events_*"), "-f",
                                          str(FIXTURES / "feedback.jsonl"), "--out", str(out), "--run-id", "cli-dask",
                                          "--timezone", "Asia/Shanghai", "--identity-key", "test-identity-key", *runner])
        assert result.exit_code == 0, result.output

    motpipe_run(tmp_path / "dask", "--runner", "dask", "--dask-address", cluster)
    motpipe_run(tmp_path / "direct")
    summary = json.loads((tmp_path / "dask" / "_runs" / "cli-dask.json").read_text())
    assert summary["events"]["reconciled"] and summary["events"]["output_rows"] == 9
    expected = published_rows(tmp_path / "direct")
    assert len(expected) > 5 and published_rows(tmp_path / "dask") == expected
