"""Worker processes started before the job (pipelines/standby.py): how many a run plans, their lifecycle, and a
run on them, whose tables equal those of the same run on the workers Beam starts itself."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.config import RunConfig
from pipelines.pipeline import run
from pipelines.standby import PARALLEL_INPUT_BYTES, StandbyWorkers, local_bytes, planned_workers

FIXTURES = Path(__file__).parent / "fixtures"
PARALLEL = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


@pytest.fixture
def big_input(tmp_path) -> Path:
    """A sparse file of exactly PARALLEL_INPUT_BYTES (its size is all planned_workers reads)."""
    path = tmp_path / "events[1].jsonl"  # glob characters: the file itself, as match_inputs takes it
    with open(path, "wb") as handle:
        handle.truncate(PARALLEL_INPUT_BYTES)
    return path


def test_a_local_input_of_8_mib_plans_a_worker_per_cpu_unless_the_arguments_choose(big_input, tmp_path):
    assert local_bytes([str(big_input), str(big_input)]) == PARALLEL_INPUT_BYTES  # counted once
    assert planned_workers(None, [], [str(big_input)], cpus=2) == 2
    assert planned_workers(None, ["--save_main_session"], [str(big_input)], cpus=3) == 3
    assert planned_workers("DirectRunner", [], [str(big_input)], cpus=2) == 0  # a runner given: in-memory, as before
    assert planned_workers(None, ["--direct_num_workers=4"], [str(big_input)], cpus=2) == 0  # left to Beam
    assert planned_workers(None, [], [str(big_input)], cpus=1) == 0
    small = tmp_path / "small.jsonl"
    small.write_text("{}\n")
    assert planned_workers(None, [], [str(small)], cpus=2) == 0
    assert planned_workers(None, [], [str(big_input), "gs://bucket/events/*"], cpus=2) == 0  # size not known here
    assert local_bytes([str(tmp_path / "nothing-*")]) == 0


def test_a_pool_serves_only_the_workers_its_arguments_give():
    with StandbyWorkers(0, "bank_branch") as none:
        assert not none.serves(PARALLEL) and not none.serves([])
    with StandbyWorkers(2, "bank_branch") as pool:
        assert pool.serves(["--save_main_session", *PARALLEL])
        assert not pool.serves(["--direct_running_mode=multi_processing", "--direct_num_workers=3"])
        assert not pool.serves([])


def test_closing_ends_the_processes_no_job_took():
    pool = StandbyWorkers(2, "bank_branch")
    processes = list(pool.waiting)
    assert StandbyWorkers.by_token[pool.token] is pool
    pool.close()
    assert [p.returncode for p in processes] == [-9, -9] and pool.waiting == []
    assert pool.token not in StandbyWorkers.by_token
    pool.close()  # again (at exit): nothing left to end


def test_a_standby_worker_exits_on_an_empty_stdin_and_explains_its_usage():
    usage = subprocess.run([sys.executable, "-m", "pipelines.standby"], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage: python -m pipelines.standby PLAYBOOK" in usage.stderr
    ended = subprocess.run([sys.executable, "-m", "pipelines.standby", "bank_branch"], input="", capture_output=True,
                           text=True, timeout=120)
    assert ended.returncode == 0 and "Traceback" not in ended.stderr


def config(out: Path, run_id: str) -> RunConfig:
    return RunConfig(touchpoints=[str(FIXTURES / "events_*"), str(FIXTURES / "identity" / "events*")],
                     feedback=[str(FIXTURES / "feedback.jsonl"), str(FIXTURES / "identity" / "feedback.jsonl")],
                     out=str(out), timezone="Asia/Shanghai", run_id=run_id, buckets=2, identity_key="test-identity-key")


class CountingPool(StandbyWorkers):
    """A pool that counts the processes it starts."""

    def _start(self):
        self.started = getattr(self, "started", 0) + 1
        return super()._start()


def test_a_run_on_standby_workers_equals_a_run_on_the_workers_beam_starts(tmp_path, published_rows):
    """The fixtures are smaller than 8 MiB, so the two workers are asked for; both runs have them."""
    beams = run(config(tmp_path / "beam", "beam-workers"), PARALLEL)
    with CountingPool(2, "bank_branch") as pool:
        standby = run(config(tmp_path / "standby", "standby-workers"), PARALLEL, standby=pool)
        assert (pool.taken, pool.started, pool.waiting) == (2, 2, [])  # the job's two workers: the two started first
    assert standby["events"]["reconciled"] and standby["events"]["output_rows"] == beams["events"]["output_rows"] > 0
    expected = published_rows(tmp_path / "beam")
    assert len(expected) > 5 and published_rows(tmp_path / "standby") == expected


def test_a_pool_planned_for_other_workers_is_ended_and_beam_starts_its_own(tmp_path):
    with StandbyWorkers(3, "bank_branch") as pool:
        processes = list(pool.waiting)
        summary = run(config(tmp_path / "out", "other-workers"), PARALLEL, standby=pool)
        assert pool.taken == 0 and pool.waiting == [] and [p.returncode for p in processes] == [-9, -9, -9]
    assert summary["events"]["reconciled"] and summary["events"]["output_rows"] > 0
