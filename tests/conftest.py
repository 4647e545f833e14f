"""Fixtures shared by the test modules."""
from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

PUBLISHED = ("events", "feedback", "quarantine", "duplicates", "_restricted/quarantine_raw")


def _published_rows(out: Path) -> dict[str, list[dict]]:
    return {str(p.relative_to(out)): pq.read_table(p).drop_columns(["run_id"]).to_pylist()
            for table in PUBLISHED for p in sorted((out / table).rglob("*.parquet"))}


@pytest.fixture
def published_rows():
    """`published_rows(out)`: rows of every published partition file under `out`, in file order, without
    run_id (the one per-run column), by file path relative to `out`."""
    return _published_rows
