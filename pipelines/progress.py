"""Progress of a running pipeline, read from the count files its steps write into the work directory
(pipelines/spill.py: `_counts/read-<dataset>-<file>-<part>.json`, `stitch-<bucket>`, `link-<bucket>`,
`write-<table>-<dt>`), so it works on every runner and filesystem: nothing is sent from the workers.

    >>> progress = Progress(stage="read", files_done=1, files=2, rows_read=1200, bytes_done=10 << 20,
    ...                     bytes_total=40 << 20, buckets_done=0, buckets=16, partitions_written=0, elapsed_s=12.0)
    >>> render(progress)
    'read: 1/2 files, 1,200 rows, 10.0 of 40.0 MiB (25%) | buckets stitched 0/16 | partitions written 0 | 12 s elapsed, about 84 s left'

`render` is the line a person sees (rich, updated in place), `json_line` the line a scheduler reads; neither
is printed when stderr is not a terminal unless `--progress json` asks for it.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.spill import COUNTS_DIR

POLL_S = 2.0
STAGES = ("read", "stitch", "write")  # what the count files can tell apart (dedup and link write none per bucket)


@dataclass(frozen=True)
class Progress:
    stage: str  # read | stitch | write | done
    files_done: int  # input file parts read to the end
    files: int
    rows_read: int
    bytes_done: int  # bytes of the input files read to the end
    bytes_total: int
    buckets_done: int  # stitch buckets finished
    buckets: int
    partitions_written: int
    elapsed_s: float

    @property
    def fraction(self) -> float:
        """A rough share of the work done: reading (by bytes) and stitching (by buckets) weigh equally."""
        read = self.bytes_done / self.bytes_total if self.bytes_total else 1.0
        stitch = self.buckets_done / self.buckets if self.buckets else 1.0
        return 1.0 if self.stage == "done" else (read + stitch) / 2

    @property
    def remaining_s(self) -> float | None:
        """Time left if the rest goes as fast as what is done (None until something is)."""
        done = self.fraction
        return None if done <= 0 else self.elapsed_s * (1 - done) / done


def progress_of(names: dict[str, dict], sizes: dict[tuple[str, int], int], parts: int, buckets: int,
                elapsed_s: float) -> Progress:
    """The progress told by count files (name without .json -> counts). `sizes`: (dataset, file index) -> bytes
    of each input file; `parts`: how many read steps the run has (a file read in parts has one per part)."""
    read = {name: counts for name, counts in names.items() if name.startswith("read-")}
    finished_files: dict[tuple[str, int], int] = {}
    for name in read:
        _, dataset, index, _part = name.rsplit("-", 3)
        finished_files[(dataset, int(index))] = finished_files.get((dataset, int(index)), 0) + 1
    bytes_done = sum(sizes[key] for key in finished_files if key in sizes)
    rows = sum(n for counts in read.values() for key, n in counts.items() if key.endswith(".input_rows"))
    stitched = sum(name.startswith("stitch-") for name in names)
    written = sum(name.startswith("write-") for name in names)
    stage = "write" if written else "stitch" if len(read) >= parts else "read"
    return Progress(stage, len(read), parts, rows, min(bytes_done, sum(sizes.values())), sum(sizes.values()),
                    stitched, buckets, written, elapsed_s)


def _size(n: int) -> str:
    return f"{n / 2**20:,.1f}"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def render(progress: Progress) -> str:
    """One line for a person."""
    share = f" ({progress.bytes_done / progress.bytes_total:.0%})" if progress.bytes_total else ""
    left = progress.remaining_s
    estimate = "" if left is None else f", about {_duration(left)} left"
    return (f"{progress.stage}: {progress.files_done}/{progress.files} files, {progress.rows_read:,} rows, "
            f"{_size(progress.bytes_done)} of {_size(progress.bytes_total)} MiB{share} | buckets stitched "
            f"{progress.buckets_done}/{progress.buckets} | partitions written {progress.partitions_written} | "
            f"{_duration(progress.elapsed_s)} elapsed{estimate}")


def json_line(progress: Progress) -> str:
    """One JSON object for a scheduler: every field, the share done and the estimate (seconds, or null)."""
    left = progress.remaining_s
    return json.dumps(asdict(progress) | {"elapsed_s": round(progress.elapsed_s, 1), "fraction": round(progress.fraction, 4),
                                          "remaining_s": None if left is None else round(left, 1)}, sort_keys=True)


class CountFiles:
    """The count files of a work directory, each read once (a step's file is final when it appears)."""

    def __init__(self, work: str):
        self.pattern = FileSystems.join(work, COUNTS_DIR, "*.json")
        self.read: dict[str, dict] = {}

    def poll(self) -> dict[str, dict]:
        for meta in FileSystems.match([self.pattern])[0].metadata_list:
            name = meta.path.rsplit("/", 1)[1].removesuffix(".json")
            if name not in self.read:
                with FileSystems.open(meta.path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
                    self.read[name] = json.loads(handle.read())
        return self.read


@contextmanager
def watching(work: str, sizes: dict[tuple[str, int], int], parts: int, buckets: int,
             report: Callable[[Progress], None] | None, poll_s: float = POLL_S) -> Iterator[None]:
    """Call `report` with the run's progress every `poll_s` while the block runs, and once when it ends."""
    if report is None:
        yield
        return
    started, stop, counts = time.monotonic(), threading.Event(), CountFiles(work)

    def snapshot() -> Progress:
        return progress_of(counts.poll(), sizes, parts, buckets, time.monotonic() - started)

    def loop() -> None:
        while not stop.wait(poll_s):
            try:
                report(snapshot())
            except OSError:  # the work directory not there yet, or a listing that failed: next time
                continue

    thread = threading.Thread(target=loop, name="motpipe-progress", daemon=True)
    thread.start()
    try:
        yield
        try:
            final = snapshot()
        except OSError:  # progress is only shown: a listing that failed does not fail the run
            return
        report(Progress(**{**asdict(final), "stage": "done"}))
    finally:
        stop.set()
        thread.join()
