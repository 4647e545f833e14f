"""Which Beam runner a `motpipe run` uses: the CLI's runner choice turned into Beam pipeline options, the
FnApiRunner built for the default (`local_runner`), and the local Dask cluster that `--runner dask` starts when
no cluster address is given.

    >>> with runner_options("dask", None, 2, []) as beam_args:   # doctest: +SKIP
    ...     summary = run(config, beam_args)                      # a 2-worker LocalCluster, closed afterwards

Beam's DaskRunner (apache_beam.runners.dask.dask_runner) only knows a runner by its full module path, reads
the scheduler from `--dask_client_address`, and cuts every `Create` into `--dask_npartitions` partitions; the
partitions of a `Create` are also the partitions of every shuffle after it, so without that option a pipeline
that starts from a few file names runs in one task on one worker. It opens a client per run and never closes
it; the clients are closed here when the run ends.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.dask.dask_runner import DaskOptions  # noqa: F401  (registers the --dask_* Beam options)
from apache_beam.runners.runner import PipelineRunner

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
DASK_NAMES = {"dask", "daskrunner", DASK_RUNNER.lower()}
WORKER_MEMORY_SHARE = 0.75  # of the machine's memory, split between local workers; the rest is the driver's
CONNECT_TIMEOUT_S = 30


class RunnerOptionsError(ValueError):
    """A runner setting that cannot work (bad usage: exit code 2)."""


def is_dask(runner: str | None) -> bool:
    """True for `dask`, `DaskRunner` or the DaskRunner's full path (case-insensitive)."""
    return runner is not None and runner.lower() in DASK_NAMES


def default_workers() -> int:
    """Worker processes of a local cluster when --dask-workers is not given: the CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_runner_options(runner: str | None, dask_address: str | None, dask_workers: int | None,
                         beam_args: list[str]) -> None:
    """Raise RunnerOptionsError when the runner settings contradict each other."""
    if not is_dask(runner):
        given = [name for name, value in (("--dask-address", dask_address), ("--dask-workers", dask_workers))
                 if value is not None]
        if given:
            raise RunnerOptionsError(f"{' and '.join(given)} {'need' if len(given) > 1 else 'needs'} --runner dask")
        return
    if dask_address is not None and dask_workers is not None:
        raise RunnerOptionsError("give either --dask-address (an existing cluster) or --dask-workers (a local one), not both")
    if dask_workers is not None and dask_workers < 1:
        raise RunnerOptionsError(f"--dask-workers must be at least 1, not {dask_workers}")
    if dask_address is not None and not dask_address.strip():
        raise RunnerOptionsError("--dask-address is empty (expected e.g. tcp://scheduler:8786)")
    if any(arg.startswith("--dask_client_address") for arg in beam_args):
        raise RunnerOptionsError("give the scheduler with --dask-address, not --dask_client_address")


def beam_runner_args(runner: str | None, beam_args: list[str]) -> list[str]:
    """Beam arguments for a runner other than Dask: `--runner=NAME` (when given) before the user's own."""
    return [f"--runner={runner}", *beam_args] if runner else list(beam_args)


PARALLEL_INPUT_BYTES = 8 * 2**20  # below this, starting worker processes costs more than they save
DIRECT_OPTIONS = ("--direct_running_mode", "--direct_num_workers", "--runner")


def direct_worker_args(beam_args: list[str], input_bytes: int, cpus: int | None = None) -> list[str]:
    """The DirectRunner with one worker process per CPU (`multi_processing`) for inputs of 8 MiB and more,
    unless the arguments choose a runner or a direct running mode themselves; otherwise the arguments as given.
    Rows travel as spill files, so the processes exchange only file paths.

    >>> direct_worker_args([], 100 * 2**20, cpus=2)
    ['--direct_running_mode=multi_processing', '--direct_num_workers=2']
    """
    cpus = cpus or default_workers()
    if cpus < 2 or input_bytes < PARALLEL_INPUT_BYTES or any(arg.startswith(DIRECT_OPTIONS) for arg in beam_args):
        return list(beam_args)
    return [*beam_args, "--direct_running_mode=multi_processing", f"--direct_num_workers={cpus}"]


TYPE_CHECK_OPTIONS = ("--pipeline_type_check", "--no_pipeline_type_check")


def without_type_inference(beam_args: list[str]) -> list[str]:
    """`--no_pipeline_type_check` after the arguments unless they choose either way. Beam's construction-time type
    inference disassembles every DoFn's bytecode (~0.4 s of the driver's start for motpipe's ~180 transforms, while
    the workers wait); motpipe's elements are file paths and spill segments, whose coders need no inferred types.

    >>> without_type_inference(["--save_main_session"])
    ['--save_main_session', '--no_pipeline_type_check']
    """
    if any(arg.split("=", 1)[0] in TYPE_CHECK_OPTIONS for arg in beam_args):
        return list(beam_args)
    return [*beam_args, "--no_pipeline_type_check"]


DIRECT_RUNNER_NAMES = {"direct", "directrunner", "switchingdirectrunner"}


def local_runner(options: PipelineOptions) -> PipelineRunner | None:
    """Beam's FnApiRunner for options that choose no runner or the DirectRunner, None (Beam's own choice) for
    any other. Beam's DirectRunner first tries the Prism runner, fetching its binary from GitHub: offline that
    costs ~0.3 s of the driver's start, a loopback worker pool and an empty /tmp/beam-temp* directory left behind
    per run; online it runs the job on an engine that motpipe's tests and benchmarks never use. The FnApiRunner
    is what the DirectRunner falls back to for batch pipelines, given the same pipeline options for its workers.
    """
    runner = options.view_as(StandardOptions).runner
    if runner is not None and runner.lower() not in DIRECT_RUNNER_NAMES:
        return None
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner.fn_runner import ExtendedProvisionInfo, FnApiRunner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    return FnApiRunner(provision_info=ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))


def dask_args(address: str, partitions: int, beam_args: list[str]) -> list[str]:
    """Beam arguments that submit to the Dask scheduler at `address`, with `partitions` partitions per
    Create unless the user's own arguments set --dask_npartitions or --dask_partition_size."""
    args = [f"--runner={DASK_RUNNER}", f"--dask_client_address={address}"]
    if not any(arg.startswith(("--dask_npartitions", "--dask_partition_size")) for arg in beam_args):
        args.append(f"--dask_npartitions={partitions}")
    return [*args, *beam_args]


@contextmanager
def local_cluster(workers: int) -> Iterator[str]:
    """A distributed.LocalCluster of `workers` single-threaded worker processes on this machine; yields the
    scheduler address and closes the cluster when the block ends, also on error. No dashboard: the scheduler's
    HTTP endpoint (which distributed always starts) takes a free loopback port instead of 8787. The workers log
    at the level of this process's root logger (the CLI's ERROR, or INFO with -v)."""
    from distributed import LocalCluster
    from distributed.system import MEMORY_LIMIT

    level = logging.getLogger().getEffectiveLevel()
    cluster = LocalCluster(n_workers=workers, processes=True, threads_per_worker=1, host="127.0.0.1",
                           dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                           memory_limit=int(MEMORY_LIMIT * WORKER_MEMORY_SHARE / workers), silence_logs=level,
                           preload=[f"import logging; logging.getLogger().setLevel({level})"])
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def cluster_threads(address: str) -> int:
    """Worker threads of the Dask cluster at `address` (raises OSError when it cannot be reached)."""
    from distributed import Client

    with Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False) as client:
        return max(1, sum(client.nthreads().values()))


def close_clients(address: str) -> None:
    """Close the clients the DaskRunner left connected to the scheduler at `address` (the cluster keeps running)."""
    from distributed import default_client
    from distributed.comm import resolve_address

    target = resolve_address(address)
    while True:
        try:
            client = default_client()
        except ValueError:  # no client left
            return
        if resolve_address(client.scheduler.address) != target:
            return
        client.close()


@contextmanager
def runner_options(runner: str | None, dask_address: str | None, dask_workers: int | None,
                   beam_args: list[str]) -> Iterator[list[str]]:
    """The Beam arguments of a run on `runner`. For Dask: on the cluster at `dask_address`, or else on a local
    cluster of `dask_workers` processes that lives as long as the block. Raises RunnerOptionsError first."""
    check_runner_options(runner, dask_address, dask_workers, beam_args)
    if not is_dask(runner):
        yield beam_runner_args(runner, beam_args)
        return
    if dask_address is not None:
        threads = cluster_threads(dask_address)
        try:
            yield dask_args(dask_address, threads, beam_args)
        finally:
            close_clients(dask_address)
        return
    workers = dask_workers or default_workers()
    with local_cluster(workers) as address:
        try:
            yield dask_args(address, workers, beam_args)
        finally:
            close_clients(address)
