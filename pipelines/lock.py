"""The output lock: at most one run writes an output at a time, on a local disk and on S3.

    >>> with output_lock("s3://acme-motpipe/tables", "2026-10-01-3f9a1c2b7d10") as lock:   # doctest: +SKIP
    ...     ...            # a second run on the same output meanwhile fails with LockedError naming this holder
    ...     lock.check()   # before publishing: raises LockLostError if the lease was lost

`OUT/_lock.json` names the holder (run id, host, pid, since) and the end of its lease. It is created with an
atomic create-if-absent: a hard link to a written file on a local or POSIX disk, a conditional put (`If-None-Match: *`) on S3, which
fails when the object exists. The holder renews the lease every quarter of it (a conditional put on the lock's
ETag, so it never overwrites a lock another run took over); a lock whose lease ended (the holder crashed, was
killed or lost its network) or whose process is gone on this host is taken over, again by a conditional put
on the ETag it was read with, so of two runs taking over one lock only one wins. Other object stores (gs://,
azfs://) and HDFS have no conditional write in Beam's filesystem API: a run there is refused (UnlockableOutputError)
unless its caller waives the lock (`motpipe run --allow-unlocked`: the scheduler runs one job per output).
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from apache_beam.io.filesystems import FileSystems

from pipelines.storage import is_remote, s3_client

LOCK_FILE = "_lock.json"
LEASE_S = 600.0  # a holder that stops renewing loses the lock this long after its last renewal
LOG = logging.getLogger(__name__)


class LockedError(RuntimeError):
    """Another run holds the output."""


class LockLostError(LockedError):
    """This run's lease ended and another run took the lock over: it must not publish."""


class UnlockableOutputError(ValueError):
    """The output's filesystem has no atomic create, so it cannot be locked, and the lock was not waived."""


def holder_record(run_id: str, lease_s: float, now: datetime) -> dict:
    return {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(),
            "since": now.isoformat(timespec="seconds"),
            "expires": (now + timedelta(seconds=lease_s)).isoformat(timespec="seconds")}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(record: dict, now: datetime, host: str) -> bool:
    """Whether a lock can be taken over: its lease ended, or its process is gone on this host. A lock that
    cannot be read (None) is stale; one without a lease (written before leases) only by its process."""
    if record is None:
        return True
    expires = record.get("expires")
    if expires and datetime.fromisoformat(expires) <= now:
        return True
    return record.get("host") == host and not _pid_alive(int(record.get("pid", -1)))


def _decoded(data: bytes | None) -> dict | None:
    try:
        record = json.loads(data) if data else None
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


# --- where the lock lives: a create-if-absent and a compare-and-swap on one file or object --------------------
class LocalLockFile:
    """The lock as a local file; its version is its content. It appears whole (written under a temporary name,
    then hard-linked to its name, which fails if that exists), so a reader never takes a half-written lock for a
    stale one. A takeover compares the content and then renames: two runs taking over the same stale lock in the
    same instant could both proceed here (on S3 the conditional put makes it atomic)."""

    def __init__(self, path: str):
        self.path = path

    def _written(self, data: bytes) -> str:
        temporary = f"{self.path}.{uuid.uuid4().hex}.tmp"
        with open(temporary, "wb") as handle:
            handle.write(data)
        return temporary

    def create(self, data: bytes) -> bytes | None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        temporary = self._written(data)
        try:
            os.link(temporary, self.path)
        except FileExistsError:
            return None
        finally:
            os.remove(temporary)
        return data

    def read(self) -> tuple[bytes | None, bytes | None]:
        try:
            with open(self.path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return None, None
        return data, data

    def replace(self, version: bytes, data: bytes) -> bytes | None:
        if self.read()[1] != version:
            return None
        os.replace(self._written(data), self.path)
        return data

    def delete(self, version: bytes) -> None:
        if self.read()[1] == version:
            os.remove(self.path)


class S3LockObject:
    """The lock as an S3 object, written with conditional puts; its version is its ETag."""

    def __init__(self, path: str):
        self.bucket, _, self.key = path.removeprefix("s3://").partition("/")
        self.client = s3_client()

    @staticmethod
    def _refused(error) -> bool:
        """412: the condition failed; 409: a concurrent conditional write to the key won."""
        return error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412)

    def _put(self, data: bytes, **condition) -> str | None:
        try:
            return self.client.put_object(Bucket=self.bucket, Key=self.key, Body=data, **condition)["ETag"]
        except self.client.exceptions.ClientError as error:
            if self._refused(error):
                return None
            raise

    def create(self, data: bytes) -> str | None:
        return self._put(data, IfNoneMatch="*")

    def read(self) -> tuple[bytes | None, str | None]:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except self.client.exceptions.NoSuchKey:
            return None, None
        return response["Body"].read(), response["ETag"]

    def replace(self, version: str, data: bytes) -> str | None:
        return self._put(data, IfMatch=version)

    def delete(self, version: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=version)
        except self.client.exceptions.ClientError as error:
            if not self._refused(error):
                raise


def lockable(out: str) -> bool:
    """Whether output `out` is on a filesystem with an atomic create: a local or POSIX disk, or S3."""
    return not is_remote(out) or FileSystems.get_scheme(out) == "s3"


def lock_store(out: str) -> LocalLockFile | S3LockObject | None:
    """Where the lock of output `out` lives; None where no atomic create is available (gs://, azfs://, hdfs://)."""
    if not lockable(out):
        return None
    return S3LockObject(FileSystems.join(out, LOCK_FILE)) if is_remote(out) else LocalLockFile(os.path.join(out, LOCK_FILE))


# --- holding it ------------------------------------------------------------------------------------------------
class OutputLock:
    """A held lock: renewed by a background thread until released."""

    def __init__(self, store, run_id: str, lease_s: float):
        self.store, self.run_id, self.lease_s = store, run_id, lease_s
        self.version = None
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, out: str) -> None:
        while True:
            now = datetime.now(timezone.utc)
            data = json.dumps(holder_record(self.run_id, self.lease_s, now)).encode("utf-8")
            self.version = self.store.create(data)
            if self.version is not None:
                break
            existing, version = self.store.read()
            if version is None:
                continue  # released meanwhile: try again
            current = _decoded(existing)
            if is_stale(current, now, socket.gethostname()):
                LOG.warning("taking over the stale lock of %s: %s", out, existing)
                self.version = self.store.replace(version, data)
                if self.version is not None:
                    break
                continue  # another run took it over first
            current = current or {}
            raise LockedError(
                f"{out} is locked by run {current.get('run_id')} (pid {current.get('pid')} on {current.get('host')} "
                f"since {current.get('since')}, lease until {current.get('expires')}); if that run is dead, remove "
                f"{FileSystems.join(out, LOCK_FILE)} or wait for its lease to end")
        self._thread = threading.Thread(target=self._renew_until_released, name="motpipe-lock", daemon=True)
        self._thread.start()

    def renew(self) -> None:
        """Extend the lease; a lock that another run took over meanwhile is lost, not overwritten."""
        data = json.dumps(holder_record(self.run_id, self.lease_s, datetime.now(timezone.utc))).encode("utf-8")
        version = self.store.replace(self.version, data)
        if version is None:
            self.lost = f"the lease of run {self.run_id} ended and another run took the lock over"
        else:
            self.version = version

    def _renew_until_released(self) -> None:
        while not self.lost and not self._stop.wait(self.lease_s / 4):
            try:
                self.renew()
            except Exception as error:  # a network error: retry at the next renewal, the lease still runs
                LOG.warning("could not renew the output lock: %s", error)

    def check(self) -> None:
        """Raise LockLostError if the lock was lost (call it before publishing)."""
        if self.lost:
            raise LockLostError(f"{self.lost}; nothing was published")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if not self.lost:
            self.store.delete(self.version)


class _NoLock:
    """Stands in where the output's filesystem has no atomic create and the lock was waived."""

    def check(self) -> None:
        pass


def require_lockable(out: str, allow_unlocked: bool) -> None:
    """Raise UnlockableOutputError when output `out` cannot be locked and the lock was not waived."""
    if not allow_unlocked and not lockable(out):
        raise UnlockableOutputError(
            f"{out} cannot be locked: Beam's {FileSystems.get_scheme(out)}:// filesystem has no atomic create, so a "
            "second run on this output would not be refused; if your scheduler runs one job per output, pass "
            "--allow-unlocked")


@contextmanager
def output_lock(out: str, run_id: str, lease_s: float = LEASE_S, allow_unlocked: bool = False):
    """Hold the lock of output `out` for the block; raises LockedError when another run holds it, and
    UnlockableOutputError when `out` cannot be locked unless `allow_unlocked` waives the lock."""
    require_lockable(out, allow_unlocked)
    store = lock_store(out)
    if store is None:
        LOG.warning("%s has no atomic create: the output lock is waived (--allow-unlocked)", out)
        yield _NoLock()
        return
    lock = OutputLock(store, run_id, lease_s)
    lock.acquire(out)
    try:
        yield lock
    finally:
        lock.release()
