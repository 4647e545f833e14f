"""Local worker processes: how many a run starts, and starting them before the driver needs them.

A local run of 8 MiB of input and more gets one Beam worker process per CPU (`direct_worker_args`). Each one,
started by Beam when the job starts, first spends ~4-5 s of CPU importing Beam's worker and motpipe's steps and
building the playbook's tagger (jieba's dictionary, the lexicon, the models), while the other CPU does the same:
the job's first seconds are its workers' start. Meanwhile, before the job, the driver spends ~3-4 s importing
Beam and checksumming the inputs on about one CPU. `StandbyWorkers` starts the worker processes as the CLI starts
(`python -m pipelines.standby PLAYBOOK`), so their start runs on the CPU the driver leaves idle; each then waits
on its stdin for the endpoints of the job it serves (`runners.local_runner(options, standby)` hands them over).

This module imports nothing of Beam: the CLI decides and starts the processes before Beam is imported.

    >>> direct_worker_args([], 100 * 2**20, cpus=2)
    ['--direct_running_mode=multi_processing', '--direct_num_workers=2']
"""
from __future__ import annotations

import atexit
import glob
import json
import os
import subprocess
import sys
import uuid
from typing import ClassVar

PARALLEL_INPUT_BYTES = 8 * 2**20  # below this, starting worker processes costs more than they save
DIRECT_OPTIONS = ("--direct_running_mode", "--direct_num_workers", "--runner")
DIRECT_RUNNER_NAMES = {"direct", "directrunner", "switchingdirectrunner"}


def default_workers() -> int:
    """Worker processes of a local cluster when --dask-workers is not given: the CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def direct_worker_args(beam_args: list[str], input_bytes: int, cpus: int | None = None) -> list[str]:
    """The DirectRunner with one worker process per CPU (`multi_processing`) for inputs of 8 MiB and more,
    unless the arguments choose a runner or a direct running mode themselves; otherwise the arguments as given.
    Rows travel as spill files, so the processes exchange only file paths."""
    cpus = cpus or default_workers()
    if cpus < 2 or input_bytes < PARALLEL_INPUT_BYTES or any(arg.startswith(DIRECT_OPTIONS) for arg in beam_args):
        return list(beam_args)
    return [*beam_args, "--direct_running_mode=multi_processing", f"--direct_num_workers={cpus}"]


def local_bytes(patterns: list[str]) -> int | None:
    """The bytes of the local files the patterns match (as `match_inputs` matches them: an existing file is
    itself, whatever its name); None when one is not a local path (e.g. gs://...)."""
    if any("://" in pattern for pattern in patterns):
        return None
    files = {path for pattern in patterns for path in ([pattern] if os.path.isfile(pattern) else glob.glob(pattern))}
    return sum(os.path.getsize(path) for path in files if os.path.isfile(path))


def planned_workers(runner: str | None, beam_args: list[str], patterns: list[str], cpus: int | None = None) -> int:
    """The worker processes `direct_worker_args` will give a run on `runner` (None: the default) with these Beam
    arguments on the inputs `patterns` match; 0 when it gives none, or when the input size is not known here."""
    if runner is not None:
        return 0
    size = local_bytes(patterns)
    if size is None:
        return 0
    added = direct_worker_args(beam_args, size, cpus)[len(beam_args):]
    return int(added[-1].split("=", 1)[1]) if added else 0


class StandbyWorkers:
    """`count` worker processes started now, each preloading for `playbook`; `take` gives one its job's
    environment (starting a new one when none is left), `close` ends those no job took (also at the driver's
    exit: a usage error found after they started ends them too). A context manager."""

    by_token: ClassVar[dict[str, StandbyWorkers]] = {}  # how Beam's worker handlers find the pool of their run

    def __init__(self, count: int, playbook: str):
        self.count, self.playbook, self.token = count, playbook, uuid.uuid4().hex
        self.waiting = [self._start() for _ in range(count)]
        self.taken = 0  # processes given a job, started here or later
        StandbyWorkers.by_token[self.token] = self
        atexit.register(self.close)

    def _start(self) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "pipelines.standby", self.playbook], stdin=subprocess.PIPE)

    def take(self, environment: dict[str, str]) -> subprocess.Popen:
        """A worker process that has been given `environment` (Beam's worker environment) on its stdin."""
        process = self.waiting.pop(0) if self.waiting else self._start()
        self.taken += 1
        try:
            process.stdin.write(json.dumps(environment).encode("utf-8") + b"\n")
            process.stdin.close()
        except BrokenPipeError:
            raise RuntimeError(f"a standby Beam worker exited with code {process.wait()} before its job") from None
        return process

    def close(self) -> None:
        """End the processes no job took (they hold nothing but what they preloaded)."""
        for process in self.waiting:
            process.kill()
            process.wait()
            process.stdin.close()
        self.waiting = []
        StandbyWorkers.by_token.pop(self.token, None)

    def serves(self, beam_args: list[str]) -> bool:
        """Whether these are the workers of a run with these Beam arguments (as `direct_worker_args` gave them)."""
        return bool(self.count) and beam_args[-2:] == ["--direct_running_mode=multi_processing",
                                                         f"--direct_num_workers={self.count}"]

    def __enter__(self) -> StandbyWorkers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def preload(playbook: str) -> None:
    """Import what a worker runs and build the tagger its steps share (`shared_tagger`), so their setup finds it."""
    import apache_beam.runners.worker.sdk_worker_main  # noqa: F401
    import pipelines.identity.stages  # noqa: F401
    import pipelines.transforms  # noqa: F401
    from pipelines.playbook import load_playbook
    from pipelines.tagging.tagger import shared_tagger

    shared_tagger(load_playbook(playbook))


def main(argv: list[str]) -> int:
    """A standby worker: preload, read the job's environment (one JSON line; none: exit 0), run Beam's SDK harness."""
    if len(argv) != 2:
        print("usage: python -m pipelines.standby PLAYBOOK  (then the job's worker environment as JSON on stdin)",
              file=sys.stderr)
        return 2
    preload(argv[1])
    line = sys.stdin.readline()
    if not line.strip():
        return 0
    os.environ.update(json.loads(line))
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(argv[:1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
