"""The quality checkpoint: validate one run's written tables with the suites, store and publish the results.

    >>> report = run_checkpoint("out", load_settings())     # doctest: +SKIP
    >>> report.worst_failure                                  # doctest: +SKIP
    'warn'

DuckDB reads the rows the run published from the Parquet tables and computes, in one aggregate query
per source, the metrics Great Expectations asks for (`pipelines/quality/metrics.py`); GE evaluates
them (`Expectation.metrics_validate`: its own success rules and result format) and renders Data Docs.
GE's SQL engine on DuckDB fails on every expectation in GE 1.24, and its pandas engine would need a
second pass over every row in Python objects. PII is looked for by `find_pii` only in the texts that
match `PREFILTER` in SQL, streamed in batches of `batch_rows`. Checks never change data.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import duckdb  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from apache_beam.io.filesystem import CompressionTypes  # noqa: E402
from apache_beam.io.filesystems import FileSystems  # noqa: E402
from great_expectations import __version__ as gx_version  # noqa: E402
from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult  # noqa: E402

from pipelines.config import UNDATED, safe_run_id  # noqa: E402
from pipelines.ingest.contract import DATASETS  # noqa: E402
from pipelines.pii import DEFAULT_PHONE_REGIONS, HASHED_ID, JSON_ESCAPE, PREFILTER, decode_escapes, find_pii  # noqa: E402
from pipelines.quality.docs import open_context, publish  # noqa: E402
from pipelines.quality.metrics import compute_metrics  # noqa: E402
from pipelines.quality.settings import QualitySettings  # noqa: E402
from pipelines.quality.suites import ERROR, GX_SEVERITY, UNMASKED_PII, Source, SuiteSpec, Window, build_suites  # noqa: E402
from pipelines.output import has_partitions, table_files  # noqa: E402
from pipelines.storage import delete_tree, download_tree, file_digests, is_remote, reach_through_beam, upload_tree  # noqa: E402
from schemas.tables import table_schema  # noqa: E402

TABLES = ("events", "feedback", "quarantine", "duplicates", "identity_links", "identity_map", "identity_conflicts")
SAMPLED_TABLES = ("events", "feedback", "quarantine")  # the ones row checks read
SEVERITY = {gx: ours for ours, gx in GX_SEVERITY.items()}
CHECK_MEMORY = "1GB"  # DuckDB's limit for the checks; distinct ids beyond it spill to OUT/_quality/duckdb_tmp
RESULTS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("checked_at", pa.timestamp("us", tz="UTC")), ("dataset", pa.string()),
    ("expectation", pa.string()), ("expectation_type", pa.string()), ("column", pa.string()),
    ("severity", pa.string()), ("success", pa.bool_()), ("observed_value", pa.string()),
    ("element_count", pa.int64()), ("unexpected_count", pa.int64()), ("sampled", pa.bool_()),
])


class CheckError(Exception):
    """The outputs cannot be checked (no run summary, unknown run id)."""


class UnreadableOutputError(CheckError):
    """A published file cannot be read (e.g. a corrupted partition): rerun the run that wrote it."""


@dataclass(frozen=True)
class CheckResult:
    dataset: str
    expectation: str  # meta.check, e.g. "event_id unique"
    expectation_type: str
    column: str | None
    severity: str  # error | warn
    success: bool
    observed_value: str | None  # JSON: the observed value, or up to 5 unexpected values
    element_count: int | None
    unexpected_count: int | None
    sampled: bool


@dataclass(frozen=True)
class CheckReport:
    run_id: str
    checked_at: datetime
    results: list[CheckResult]
    results_path: str
    docs_index: str  # a local path or a URL of the output's filesystem

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success]

    @property
    def worst_failure(self) -> str | None:
        """`error` if an error-level check failed, else `warn` if a warn-level one did, else None."""
        severities = {r.severity for r in self.failures}
        return ERROR if ERROR in severities else next(iter(severities), None)


def _read_json(path: str) -> dict:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        return json.loads(handle.read())


def read_summary(out: str | Path, run_id: str | None = None) -> dict:
    """The run summary of `run_id`, or of the latest run (by start time) under `out` (any Beam filesystem)."""
    runs = FileSystems.join(str(out), "_runs")
    if run_id:
        try:
            safe_run_id(run_id)
        except ValueError as error:
            raise CheckError(str(error)) from None
        path = FileSystems.join(runs, f"{run_id}.json")
        if not FileSystems.exists(path):
            raise CheckError(f"no run summary {path}")
        return _read_json(path)
    summaries = [_read_json(m.path) for m in FileSystems.match([FileSystems.join(runs, "*.json")])[0].metadata_list]
    if not summaries:
        raise CheckError(f"no run summary under {runs}: is {out} a motpipe output directory?")
    return max(summaries, key=lambda s: s["started_at"])


def sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _rows_of_run(table: str, summary: dict) -> str:
    """SQL condition for the rows a run published: the partitions it wrote (a rerun leaves partitions whose rows
    did not change as they were, with the run_id of the run that first wrote them); older summaries: its run_id."""
    if table in summary.get("partitions", {}):
        dates = ", ".join(f"'{dt}'" for dt in summary["partitions"][table] if dt != UNDATED) or "null"
        if UNDATED not in summary["partitions"][table]:
            return f"cast(dt as varchar) in ({dates})"
        # the undated partition holds the rows of every run's files: this run's are those of its inputs
        sources = ", ".join(sql_text(f["path"]) for files in summary["inputs"].values() for f in files) or "null"
        return f"(cast(dt as varchar) in ({dates}) or (dt is null and source_file in ({sources})))"
    return f"run_id = {sql_text(summary['run_id'])}"


def open_run(out: str, summary: dict, settings: QualitySettings, quality_dir: Path) -> duckdb.DuckDBPyConnection:
    """DuckDB views of this run's rows: the tables, `*_checked` (all or sampled rows) and `summary`. Outputs on
    another filesystem (s3://, gs://, ...) are read through Beam's (storage.duckdb_filesystem); DuckDB spills
    to `quality_dir/duckdb_tmp`."""
    con = duckdb.connect(config={"memory_limit": CHECK_MEMORY, "temp_directory": str(quality_dir / "duckdb_tmp")})
    con.execute("set TimeZone = 'UTC'")
    reach_through_beam(con, out)
    for name in TABLES:
        if has_partitions(out, name):
            con.execute(f"create view {name} as select * from read_parquet('{table_files(out, name)}', "
                        f"hive_partitioning = true, union_by_name = true) where {_rows_of_run(name, summary)}")
        else:
            con.register(name, table_schema(name).empty_table())
    for name in SAMPLED_TABLES:
        rows = con.execute(f"select count(*) from {name}").fetchone()[0]
        sample = settings.row_checks_max_rows and rows > settings.row_checks_max_rows
        clause = f" using sample reservoir({settings.row_checks_max_rows} rows) repeatable (7)" if sample else ""
        con.execute(f"create view {name}_checked as select * from {name}{clause}")
    counts = pa.table({
        "dataset": list(DATASETS),
        **{key: [summary[d][key] for d in DATASETS] for key in ("input_rows", "output_rows", "duplicate_rows", "quarantine_rows")},
        "outside_window_rows": [summary[d].get("outside_window_rows", 0) for d in DATASETS],
        **{key: [summary[d].get("read", {}).get(key, 0) for d in DATASETS]  # earlier summaries have none: 0 = 0
           for key in ("lines_read", "lines_accounted", "bytes_read", "input_bytes")},
    })
    con.register("summary", counts)
    return con


def sampled_tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Tables whose row checks see a sample."""
    return {name for name in SAMPLED_TABLES
            if con.execute(f"select count(*) from {name}_checked").fetchone()[0]
            < con.execute(f"select count(*) from {name}").fetchone()[0]}


def run_window(con: duckdb.DuckDBPyConnection, settings: QualitySettings, now: datetime) -> Window:
    """The window from the settings, else the min/max timestamps of the run's events and feedback."""
    low, high = con.execute(
        "select min(t), max(t) from (select occurred_at as t from events union all select submitted_at from feedback)"
    ).fetchone()
    return Window(settings.window_start or low or now, settings.window_end or high or now, now)


def candidate_column(column: str) -> str:
    return f"pii_candidate:{column}"


def pii_candidates(source: Source) -> str:
    """The source's rows where PREFILTER (or a JSON escape, which may hide a match) matches a text column: per text
    column its value where it matches. motpipe's own hashes (HASHED_ID: pseudonyms, stitched visit ids) are not
    candidates: their digit runs can look like numbers."""
    pattern, hashed = f"{PREFILTER}|{JSON_ESCAPE}".replace("'", "''"), HASHED_ID.replace("'", "''")
    matches = {c: f"""(regexp_matches("{c}", '{pattern}') and not regexp_full_match("{c}", '{hashed}'))"""
               for c in source.pii_columns}
    candidates = ", ".join(f'case when {m} then "{c}" end as "{candidate_column(c)}"' for c, m in matches.items())
    return f"select {candidates} from ({source.sql}) as source where {' or '.join(matches.values())}"


def unmasked_pii(batch: pa.RecordBatch, columns: tuple[str, ...],
                 phone_regions: tuple[str, ...] = DEFAULT_PHONE_REGIONS) -> pa.Array:
    """Per row, `column:kind` of each PII kind `find_pii` finds in a candidate text (phone numbers in the national
    formats of `phone_regions`, the same regions redaction masks), comma-separated, or null. `find_pii` runs once
    per distinct text of a column (error messages and raw records repeat)."""
    found: dict[int, list[str]] = {}
    for column in columns:
        values = batch.column(candidate_column(column)).dictionary_encode()
        kinds = [sorted({span.kind for span in find_pii(decode_escapes(text), phone_regions)}) for text in values.dictionary.to_pylist()]
        for row, index in zip(pc.indices_nonzero(pc.is_valid(values)).to_pylist(),
                              pc.drop_null(values.indices).to_pylist()):
            found.setdefault(row, []).extend(f"{column}:{kind}" for kind in kinds[index])
    flags = [",".join(found.get(row, [])) or None for row in range(batch.num_rows)]
    return pa.array(flags, pa.string())


def pii_flags(con: duckdb.DuckDBPyConnection, source: Source, settings: QualitySettings) -> list[str]:
    """The non-null `unmasked_pii` values of the source's rows, in row order (candidates streamed in batches)."""
    flags: list[str] = []
    for batch in con.execute(pii_candidates(source)).to_arrow_reader(settings.batch_rows):
        flags += [flag for flag in unmasked_pii(batch, source.pii_columns, settings.phone_regions).to_pylist() if flag]
    return flags


def _check_name(result: ExpectationValidationResult) -> str:
    return result.expectation_config.meta["check"]


def validate_source(con: duckdb.DuckDBPyConnection, source: Source,
                    settings: QualitySettings) -> list[ExpectationValidationResult]:
    """GE's results of the source's expectations, evaluated on metrics computed by DuckDB over all its rows."""
    sparse = {UNMASKED_PII: pii_flags(con, source, settings)} if source.pii_columns else {}
    metrics = compute_metrics(con, source.sql, source.expectations, sparse)
    return [expectation.metrics_validate(metrics) for expectation in source.expectations]


def batch_meta(asset_name: str, sql: str, loaded_at: datetime) -> dict:
    """The suite result's `meta` as GE's validator writes it, for a batch that is a DuckDB query."""
    return {
        "great_expectations_version": gx_version,
        "batch_spec": {"batch_data": "DuckDB query", "query": sql},
        "batch_markers": {"ge_load_time": loaded_at.strftime("%Y%m%dT%H%M%S.%fZ")},
        "active_batch_definition": {"datasource_name": "motpipe", "data_connector_name": "duckdb",
                                    "data_asset_name": asset_name, "batch_identifiers": {}},
    }


def observed(result: ExpectationValidationResult) -> str | None:
    """The observed value, else the first unexpected values, as JSON."""
    value = result.result.get("observed_value", result.result.get("partial_unexpected_list", [])[:5] or None)
    return None if value is None else json.dumps(value, default=_plain, ensure_ascii=False)


def _plain(value):
    """numpy scalars as Python numbers, anything else (timestamps) as text."""
    return value.item() if hasattr(value, "item") else str(value)


def to_check_result(dataset: str, result: ExpectationValidationResult, sampled: bool) -> CheckResult:
    config = result.expectation_config
    kwargs = config.kwargs
    return CheckResult(
        dataset=dataset, expectation=_check_name(result), expectation_type=config.type,
        column=kwargs.get("column") or (f"{kwargs['column_A']},{kwargs['column_B']}" if "column_A" in kwargs else None),
        severity=SEVERITY[config.severity], success=bool(result.success), observed_value=observed(result),
        element_count=result.result.get("element_count"), unexpected_count=result.result.get("unexpected_count"),
        sampled=sampled,
    )


def validate_suite(con, spec: SuiteSpec, settings: QualitySettings, sampled: set[str], now: datetime):
    """GE suite result of one dataset, and its CheckResults."""
    results, checks = [], []
    first_source, first = next(iter(spec.sources.items()))
    meta = batch_meta(f"{spec.name}.{first_source}", first.sql, now)
    for source in spec.sources.values():
        source_results = validate_source(con, source, settings)
        is_sampled = source.streamed and spec.name in sampled
        results += source_results
        checks += [to_check_result(spec.name, r, is_sampled) for r in source_results]
    passed = sum(r.success for r in results)
    suite_result = ExpectationSuiteValidationResult(
        success=passed == len(results), results=results, suite_name=spec.name, meta=meta,
        statistics={"evaluated_expectations": len(results), "successful_expectations": passed,
                    "unsuccessful_expectations": len(results) - passed,
                    "success_percent": 100 * passed / len(results) if results else None},
    )
    return suite_result, checks


def write_results(out: str, run_id: str, checked_at: datetime, checks: list[CheckResult]) -> str:
    """`OUT/quality_results/run_id=<id>/part-00000.parquet`: a rerun of the run id replaces it."""
    path = FileSystems.join(out, "quality_results", f"run_id={run_id}", "part-00000.parquet")
    rows = [{"run_id": run_id, "checked_at": checked_at, **vars(c)} for c in checks]
    with FileSystems.create(path) as handle:
        pq.write_table(pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA), handle)
    return path


@contextmanager
def quality_directory(out: str) -> Iterator[Path]:
    """`OUT/_quality` (GE's context and Data Docs) as a local directory: itself, or for an output on another
    filesystem a local copy of it that is written back when the block ends."""
    if not is_remote(out):
        yield Path(out) / "_quality"
        return
    remote = FileSystems.join(out, "_quality")
    with tempfile.TemporaryDirectory(prefix="motpipe-quality-") as local:
        download_tree(remote, Path(local))
        downloaded = file_digests(Path(local))
        yield Path(local)
        delete_tree(str(Path(local) / "duckdb_tmp"))
        upload_tree(Path(local), remote, unchanged=downloaded)


def validate_run(out: str, summary: dict, settings: QualitySettings, now: datetime, quality_dir: Path):
    """The suites of a run, their GE validation results by suite name and the CheckResults."""
    con = open_run(out, summary, settings, quality_dir)
    suites = build_suites(settings, run_window(con, settings, now))
    sampled = sampled_tables(con)
    validations, checks = {}, []
    for spec in suites:
        validations[spec.name], suite_checks = validate_suite(con, spec, settings, sampled, now)
        checks += suite_checks
    return suites, validations, checks


def run_checkpoint(out: str | Path, settings: QualitySettings, run_id: str | None = None,
                   now: datetime | None = None) -> CheckReport:
    """Validate a run's tables (the latest run by default), write `quality_results` and Data Docs (`out` may
    be on any Beam filesystem). Raises CheckError (UnreadableOutputError when a published file cannot be read)."""
    out = str(out)
    now = now or datetime.now(timezone.utc)
    summary = read_summary(out, run_id)
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    with quality_directory(out) as quality_dir, warnings.catch_warnings():
        context = open_context(quality_dir)
        warnings.simplefilter("ignore")
        try:
            suites, validations, checks = validate_run(out, summary, settings, now, quality_dir)
        except (duckdb.IOException, duckdb.InvalidInputException) as error:  # e.g. a partition that is not Parquet
            message = str(error).strip().splitlines()[0]
            raise UnreadableOutputError(f"cannot read the published tables of {out}: {message}; rerun the run that "
                                        "wrote that partition to rewrite it") from None
        docs_index = publish(context, [s.expectation_suite() for s in suites], validations, summary["run_id"], now)
    if is_remote(out):
        docs_index = FileSystems.join(out, "_quality", docs_index.resolve().relative_to(quality_dir.resolve()).as_posix())
    results_path = write_results(out, summary["run_id"], now, checks)
    return CheckReport(summary["run_id"], now, checks, results_path, str(docs_index))
