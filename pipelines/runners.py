"""Which Beam runner a `motpipe run` uses: the CLI's runner choice turned into Beam pipeline options, the
FnApiRunner built for the default (`local_runner`, whose worker processes may have been started beforehand:
pipelines/standby.py), and the local Dask cluster that `--runner dask` starts when
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

import functools
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.dask.dask_runner import DaskOptions  # noqa: F401  (registers the --dask_* Beam options)
from apache_beam.runners.runner import PipelineRunner

from pipelines.standby import DIRECT_RUNNER_NAMES, StandbyWorkers, default_workers

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
DASK_NAMES = {"dask", "daskrunner", DASK_RUNNER.lower()}
WORKER_MEMORY_SHARE = 0.75  # of the machine's memory, split between local workers; the rest is the driver's
CONNECT_TIMEOUT_S = 30


class RunnerOptionsError(ValueError):
    """A runner setting that cannot work (bad usage: exit code 2)."""


def is_dask(runner: str | None) -> bool:
    """True for `dask`, `DaskRunner` or the DaskRunner's full path (case-insensitive)."""
    return runner is not None and runner.lower() in DASK_NAMES


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


def is_local(options: PipelineOptions) -> bool:
    """Whether the options choose no runner or the DirectRunner (which motpipe runs as Beam's FnApiRunner)."""
    runner = options.view_as(StandardOptions).runner
    return runner is None or runner.lower() in DIRECT_RUNNER_NAMES


def local_runner(options: PipelineOptions, standby: StandbyWorkers | None = None) -> PipelineRunner | None:
    """Beam's FnApiRunner for options that choose no runner or the DirectRunner, None (Beam's own choice) for
    any other. Beam's DirectRunner first tries the Prism runner, fetching its binary from GitHub: offline that
    costs ~0.3 s of the driver's start, a loopback worker pool and an empty /tmp/beam-temp* directory left behind
    per run; online it runs the job on an engine that motpipe's tests and benchmarks never use. The FnApiRunner
    is what the DirectRunner falls back to for batch pipelines, given the same pipeline options for its workers.
    With `standby`, its worker processes are those (started before the pipeline was built).
    """
    if not is_local(options):
        return None
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner.fn_runner import ExtendedProvisionInfo, FnApiRunner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision_info = ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    if standby is None:
        return FnApiRunner(provision_info=provision_info)
    return _standby_runner_class()(standby, provision_info=provision_info)


STANDBY_URN = "motpipe:environment:standby_process:v1"  # payload: the token of a StandbyWorkers pool


def _serve_job(pool: StandbyWorkers, control_address: str, provision_info, worker_id: str | None) -> None:
    """Beam's SubprocessSdkWorker.run with the process taken from `pool`: a logging endpoint for the worker,
    its environment, and a wait for the process to end (killed if this thread is stopped first)."""
    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2_grpc, endpoints_pb2
    from apache_beam.runners.portability.local_job_service import BeamFnLoggingServicer
    from apache_beam.utils import thread_pool_executor
    from google.protobuf import json_format, text_format

    logging_server = grpc.server(thread_pool_executor.shared_unbounded_instance(),
                                 options=[("grpc.http2.max_pings_without_data", 0), ("grpc.http2.max_ping_strikes", 0)])
    logging_port = logging_server.add_insecure_port("[::]:0")
    logging_server.start()
    beam_fn_api_pb2_grpc.add_BeamFnLoggingServicer_to_server(BeamFnLoggingServicer(), logging_server)
    environment = {
        "CONTROL_API_SERVICE_DESCRIPTOR": text_format.MessageToString(endpoints_pb2.ApiServiceDescriptor(url=control_address)),
        "LOGGING_API_SERVICE_DESCRIPTOR": text_format.MessageToString(
            endpoints_pb2.ApiServiceDescriptor(url=f"localhost:{logging_port}")),
        "PIPELINE_OPTIONS": json_format.MessageToJson(provision_info.provision_info.pipeline_options),
        **({"WORKER_ID": worker_id} if worker_id else {}),
    }
    process = None
    try:
        process = pool.take(environment)
        if process.wait():
            raise RuntimeError(f"Worker subprocess exited with return code {process.returncode}")
    finally:
        if process is not None and process.poll() is None:
            process.kill()
        logging_server.stop(0)


@functools.cache
def _standby_runner_class():
    """The FnApiRunner whose subprocess workers are a StandbyWorkers pool (its worker handler registered with Beam
    under STANDBY_URN), defined at first use: Beam's runner modules load only for a local run."""
    from apache_beam.portability import python_urns
    from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner
    from apache_beam.runners.portability.fn_api_runner.worker_handlers import SubprocessSdkWorkerHandler, WorkerHandler

    @WorkerHandler.register_environment(STANDBY_URN, bytes)
    class StandbyWorkerHandler(SubprocessSdkWorkerHandler):
        def start_worker(self):
            pool = StandbyWorkers.by_token[self._worker_command_line.decode("ascii")]
            self.worker_thread = threading.Thread(name="run_worker", target=_serve_job, args=(
                pool, self.control_address, self.provision_info, self.worker_id))
            self.worker_thread.start()

    class StandbyFnApiRunner(FnApiRunner):
        def __init__(self, standby: StandbyWorkers, **kwargs):
            super().__init__(**kwargs)
            self.standby = standby

        def run_via_runner_api(self, pipeline_proto, options):
            for environment in pipeline_proto.components.environments.values():
                if environment.urn == python_urns.SUBPROCESS_SDK:
                    environment.urn, environment.payload = STANDBY_URN, self.standby.token.encode("ascii")
            return super().run_via_runner_api(pipeline_proto, options)

    return StandbyFnApiRunner


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
