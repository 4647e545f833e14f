"""`motpipe sources check`: map a source's files and report the first rows and every error kind, writing nothing.

    >>> report = check_source(load_source("examples/sources/wabo_receipt.yaml"), channels, rows=5)   # doctest: +SKIP
    >>> report.counts["rows_in"], report.examples   # doctest: +SKIP
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from pipelines.ingest.formats import match_inputs
from pipelines.ingest.sources.reader import read_source
from pipelines.ingest.sources.spec import Source


@dataclass
class CheckReport:
    """What a source gives: its files, the first mapped rows, the counts (`rows_in`, `events_out`,
    `quarantine.<kind>` ...) and for each error kind its first row (file, line, field, message)."""

    files: list[str]
    rows: list[dict] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, tuple[str, int, str | None, str]] = field(default_factory=dict)


def check_source(source: Source, channels: frozenset[str], rows: int = 10, batch_rows: int = 50_000) -> CheckReport:
    """Read every file of the source as a run would (InputError when one cannot be read at all)."""
    files = [f.path for f in match_inputs(source.paths, contract=False)]
    report = CheckReport(files)
    tz = ZoneInfo(source.timezone)
    for path in files:
        for valid, rejected, counts in read_source(path, source, channels, tz, batch_rows, "1970-01-01"):
            report.counts += counts
            report.rows += valid.slice(0, max(0, rows - len(report.rows))).to_pylist()
            for row in rejected.to_pylist():
                report.examples.setdefault(row["error_kind"], (path, row["line_no"], row["error_field"], row["error_message"]))
    return report
