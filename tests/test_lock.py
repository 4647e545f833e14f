"""The output lock on a local disk and on S3 (the `object_store` fixture): one holder at a time, a lease that the
holder renews, and a crashed holder's lock taken over once its lease ended."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone

import pytest

from pipelines.lock import (LOCK_FILE, LocalLockFile, LockedError, LockLostError, UnlockableOutputError, holder_record,
                            is_stale, lock_store, output_lock)
from pipelines.storage import filesystem_options, use_filesystem_options

NOW = datetime(2026, 10, 1, 12, 0, tzinfo=timezone.utc)
HOST = socket.gethostname()


@pytest.fixture
def s3_out(object_store):
    """An output prefix on the local S3 server, with this process's filesystems pointed at it."""
    use_filesystem_options(filesystem_options(object_store.beam_args))
    yield f"{object_store.bucket('locked')}/motpipe"
    use_filesystem_options({})


@pytest.fixture(params=["local", "s3"])
def out(request, tmp_path):
    return str(tmp_path / "out") if request.param == "local" else request.getfixturevalue("s3_out")


def lock_text(out: str) -> dict | None:
    data, _ = lock_store(out).read()
    return json.loads(data) if data else None


def place_lock(out: str, record: dict) -> None:
    assert lock_store(out).create(json.dumps(record).encode()) is not None


def dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)


# --- staleness: a plain function -----------------------------------------------------------------------------
def test_a_lock_is_stale_when_its_lease_ended_or_its_process_is_gone_on_this_host():
    live = holder_record("r", 600, NOW)
    assert not is_stale(live, NOW + timedelta(seconds=599), HOST)
    assert is_stale(live, NOW + timedelta(seconds=600), HOST)
    assert is_stale(live | {"pid": dead_pid()}, NOW, HOST)
    assert not is_stale(live | {"pid": dead_pid()}, NOW, "another-host")  # a pid of another host says nothing
    assert not is_stale({"run_id": "old", "host": HOST, "pid": os.getpid()}, NOW, HOST)  # no lease: by its pid only
    assert is_stale(None, NOW, HOST)  # unreadable


def test_the_holder_record_names_the_run_host_pid_and_lease():
    assert holder_record("r1", 90, NOW) == {"run_id": "r1", "host": HOST, "pid": os.getpid(),
                                            "since": "2026-10-01T12:00:00+00:00", "expires": "2026-10-01T12:01:30+00:00"}


# --- on a local disk and on S3 ----------------------------------------------------------------------------------
def test_a_second_run_is_refused_while_the_first_holds_the_lock(out):
    with output_lock(out, "first"):
        held = lock_text(out)
        assert (held["run_id"], held["host"], held["pid"]) == ("first", HOST, os.getpid())
        with pytest.raises(LockedError, match=r"locked by run first \(pid \d+ on .* lease until 20"):
            with output_lock(out, "second"):
                pass
    assert lock_text(out) is None  # released
    with output_lock(out, "third"):
        assert lock_text(out)["run_id"] == "third"


def test_a_crashed_holders_lock_is_taken_over_when_its_lease_ended(out):
    place_lock(out, holder_record("crashed", 600, datetime.now(timezone.utc) - timedelta(hours=1)) | {"host": "gone"})
    with output_lock(out, "next"):
        assert lock_text(out)["run_id"] == "next"
    assert lock_text(out) is None


def test_a_live_lease_of_another_host_is_respected(out):
    place_lock(out, holder_record("elsewhere", 600, datetime.now(timezone.utc)) | {"host": "other", "pid": dead_pid()})
    with pytest.raises(LockedError, match="locked by run elsewhere"):
        with output_lock(out, "next"):
            pass
    assert lock_text(out)["run_id"] == "elsewhere"  # left as it was


def test_the_holder_renews_its_lease(out):
    with output_lock(out, "long", lease_s=600) as lock:
        before = lock_text(out)["expires"]
        lock.renew()
        assert lock_text(out)["expires"] >= before and lock_text(out)["run_id"] == "long"
        lock.check()


def test_a_lease_taken_over_by_another_run_is_lost_not_overwritten(out):
    with output_lock(out, "slow", lease_s=600) as lock:
        data, version = lock_store(out).read()
        taken = json.dumps(holder_record("taker", 600, datetime.now(timezone.utc))).encode()
        assert lock_store(out).replace(version, taken) is not None  # what a run does with an ended lease
        lock.renew()
        assert lock_text(out)["run_id"] == "taker"
        with pytest.raises(LockLostError, match="another run took the lock over; nothing was published"):
            lock.check()
    assert lock_text(out)["run_id"] == "taker"  # the loser does not delete the taker's lock


def test_of_runs_racing_for_a_free_lock_exactly_one_wins(out):
    barrier, outcomes = threading.Barrier(4), []

    def attempt(name: str) -> None:
        barrier.wait()
        try:
            with output_lock(out, name):
                outcomes.append("held")
                barrier.wait()  # hold it until every other attempt has been refused or has won
        except LockedError:
            outcomes.append("refused")
            barrier.wait()
        except threading.BrokenBarrierError:
            outcomes.append("broken")

    threads = [threading.Thread(target=attempt, args=(f"r{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["held", "refused", "refused", "refused"]


def test_the_local_lock_is_created_exclusively(tmp_path):
    store = LocalLockFile(str(tmp_path / LOCK_FILE))
    assert store.create(b"a") == b"a" and store.create(b"b") is None
    assert store.replace(b"not-the-version", b"c") is None and store.read() == (b"a", b"a")


@pytest.mark.parametrize("out", ["gs://bucket/out", "azfs://account/container/out", "hdfs://namenode/out"])
def test_an_output_that_cannot_be_locked_is_refused_unless_the_lock_is_waived(out):
    assert lock_store(out) is None
    with pytest.raises(UnlockableOutputError, match=rf"^{out} cannot be locked: .* pass --allow-unlocked$"):
        with output_lock(out, "r"):
            pytest.fail("the block ran without the lock")
    with output_lock(out, "r", allow_unlocked=True) as lock:
        lock.check()
