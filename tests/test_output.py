"""Writing partition files and publishing them."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.output import local_dates, publish, write_partition

UTC = timezone.utc


# --- write_partition / local_dates -----------------------------------------------------------


def test_write_partition_writes_one_file_with_bounded_row_groups(tmp_path):
    table = pa.table({"id": ["a", "b", "c", "d", "e"], "n": [1, 2, 3, 4, 5]})
    written = write_partition(str(tmp_path), "events", "2026-10-01", [table.slice(0, 3), table.slice(3)], row_group_rows=2)
    assert written == str(tmp_path / "events" / "dt=2026-10-01" / "part-00000.parquet")
    meta = pq.ParquetFile(written).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [2, 2, 1]
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert pq.read_table(written).to_pydict() == table.to_pydict()


def test_write_partition_empty_table_writes_one_empty_file(tmp_path):
    schema = pa.schema([("id", pa.string()), ("at", pa.timestamp("us", tz="UTC"))])
    written = write_partition(str(tmp_path), "t", "2026-10-01", [schema.empty_table()], 10)
    result = pq.read_table(written)
    assert result.num_rows == 0 and result.schema == schema


def staged(root: Path, **partitions: list[int]) -> None:
    for dt, values in partitions.items():
        write_partition(str(root), "t", dt.replace("_", "-"), [pa.table({"n": values})], 10)


def published(out: Path) -> dict[str, list[int]]:
    return {p.parent.name: pq.read_table(p).column("n").to_pylist() for p in sorted((out / "t").glob("dt=*/*.parquet"))}


def test_publish_replaces_changed_partitions_and_keeps_identical_ones(tmp_path):
    out, staging = tmp_path / "out", tmp_path / "out" / "_staging" / "r1"
    staged(staging, d2026_10_01=[1], d2026_10_02=[2])
    first = publish(str(staging), str(out), ["t"], None)
    assert [Path(p).parent.name for p in first.replaced] == ["dt=d2026-10-01", "dt=d2026-10-02"]
    assert not staging.exists()
    untouched = out / "t" / "dt=d2026-10-01" / "part-00000.parquet"
    mtime = untouched.stat().st_mtime_ns
    staged(staging, d2026_10_01=[1], d2026_10_02=[2, 3])
    second = publish(str(staging), str(out), ["t"], None)
    assert ([Path(p).parent.name for p in second.replaced], [Path(p).parent.name for p in second.unchanged]) == (
        ["dt=d2026-10-02"], ["dt=d2026-10-01"])
    assert untouched.stat().st_mtime_ns == mtime
    assert published(out) == {"dt=d2026-10-01": [1], "dt=d2026-10-02": [2, 3]}


def test_publish_removes_emptied_partitions_of_the_window_only(tmp_path):
    out, staging = tmp_path / "out", tmp_path / "stage"
    staged(staging, **{"2026-10-01": [1], "2026-10-02": [2], "2026-10-03": [3]})
    publish(str(staging), str(out), ["t"], None)
    staged(staging, **{"2026-10-02": [20]})
    result = publish(str(staging), str(out), ["t"], ["2026-10-02", "2026-10-03"])
    assert [Path(p).parent.name for p in result.removed] == ["dt=2026-10-03"]
    assert published(out) == {"dt=2026-10-01": [1], "dt=2026-10-02": [20]}


def ts(*values: str) -> pa.Array:
    return pa.array([datetime.fromisoformat(v) for v in values], pa.timestamp("us", tz="UTC"))


def test_local_dates_across_midnight():
    stamps = ts("2026-09-30T15:59:59.999999+00:00", "2026-09-30T16:00:00+00:00", "2026-10-01T15:59:59+00:00",
                "2026-10-01T23:30:00+00:00")
    assert local_dates(stamps, "Asia/Shanghai").to_pylist() == ["2026-09-30", "2026-10-01", "2026-10-01", "2026-10-02"]
    assert local_dates(stamps, "UTC").to_pylist() == ["2026-09-30", "2026-09-30", "2026-10-01", "2026-10-01"]
    assert local_dates(stamps, "America/Los_Angeles").to_pylist() == [
        "2026-09-30", "2026-09-30", "2026-10-01", "2026-10-01"]
    assert local_dates(ts("2026-10-01T06:59:59+00:00", "2026-10-01T07:00:00+00:00"), "America/Los_Angeles").to_pylist() == [
        "2026-09-30", "2026-10-01"]


def test_local_dates_chunked():
    chunked = pa.chunked_array([ts("2026-09-30T16:00:00+00:00"), ts("2026-09-30T15:00:00+00:00")])
    assert local_dates(chunked, "Asia/Shanghai").to_pylist() == ["2026-10-01", "2026-09-30"]


def test_publish_keeps_a_partition_whose_rows_differ_only_in_run_id(tmp_path):
    out, staging = tmp_path / "out", tmp_path / "stage"
    write_partition(str(staging), "t", "2026-10-01", [pa.table({"n": [1], "run_id": ["r1"]})], 10)
    publish(str(staging), str(out), ["t"], None)
    write_partition(str(staging), "t", "2026-10-01", [pa.table({"n": [1], "run_id": ["r2"]})], 10)
    assert [Path(p).parent.name for p in publish(str(staging), str(out), ["t"], None).unchanged] == ["dt=2026-10-01"]
    assert pq.read_table(out / "t" / "dt=2026-10-01" / "part-00000.parquet").column("run_id").to_pylist() == ["r1"]
    write_partition(str(staging), "t", "2026-10-01", [pa.table({"n": [2], "run_id": ["r3"]})], 10)
    assert len(publish(str(staging), str(out), ["t"], None).replaced) == 1


def test_local_dates_before_1970_and_at_a_half_hour_offset():
    stamps = pa.array([datetime(1969, 12, 31, 23, 59, tzinfo=timezone.utc), datetime(2026, 10, 3, 13, 29, tzinfo=timezone.utc),
                       datetime(2026, 10, 3, 13, 31, tzinfo=timezone.utc)], pa.timestamp("us", tz="UTC"))
    assert local_dates(stamps, "UTC").to_pylist() == ["1969-12-31", "2026-10-03", "2026-10-03"]
    # Lord Howe Island: UTC+10:30 until its half-hour daylight saving starts on 2026-10-04
    assert local_dates(stamps, "Australia/Lord_Howe").to_pylist() == ["1970-01-01", "2026-10-03", "2026-10-04"]
