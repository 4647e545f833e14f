"""Build the DuckDB journey views from `queries/` and query them.

`build_views(out, db)` creates (or replaces) one DuckDB object per SQL file in `queries/`, layer by layer
(staging -> intermediate -> marts) and, within a layer, in dependency order. Staging objects are views over the
Hive-partitioned Parquet tables; by default the intermediate and mart layers are *materialised* as tables
(`materialize=False` keeps them as views), so every analyst query answers fast on millions of events. An output
on another filesystem (s3://, gs://, ...) is read through Beam's (storage.duckdb_filesystem) and its staging
layer is copied into tables too, so the database file answers without the store.
The build runs in one transaction: re-running it replaces every object and leaves nothing half built.

The SQL files are parameterised with DuckDB variables (`getvariable('motpipe_out')`, `getvariable('motpipe_weights')`)
so they can be `.read` in any DuckDB session. A database file must work in a new session without setting them,
so the build substitutes each `getvariable('name')` with its value as a SQL literal and records the settings in
the one-row-per-key table `motpipe_settings`.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Optional

import duckdb
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from pipelines.analysis.drivers import OUTCOMES, driver_rows
from pipelines.playbook import Playbook
from pipelines.output import has_partitions
from pipelines.storage import is_remote, reach_through_beam
from schemas.tables import table_schema


QUERIES_DIR = Path(__file__).resolve().parent.parent / "queries"
LAYERS = ("staging", "intermediate", "marts")
MATERIALIZED_LAYERS = ("intermediate", "marts")
DIMENSIONS = ("reliability", "responsiveness", "assurance", "empathy", "tangibles")
DEFAULT_WEIGHTS = {"reliability": 0.30, "responsiveness": 0.25, "assurance": 0.20, "empathy": 0.15, "tangibles": 0.10}
DEFAULT_DB_NAME = "motpipe.duckdb"
SETTINGS_TABLE = "motpipe_settings"
KEY_DRIVERS = "key_drivers"  # built in Python between the staging and intermediate layers
DRIVER_SEED = 7
KEY_DRIVERS_SCHEMA = pa.schema([
    ("outcome", pa.string()), ("dimension", pa.string()), ("rank", pa.int32()), ("share", pa.float64()),
    ("relative_share", pa.float64()), ("share_low", pa.float64()), ("share_high", pa.float64()),
    ("standardized_coefficient", pa.float64()), ("r2", pa.float64()), ("responses_used", pa.int64()),
    ("responses_left_out", pa.int64()), ("resamples", pa.int32()), ("seed", pa.int32()),
])

# stg_quality_results when OUT/quality_results/ holds no file yet: the same columns, no rows.
QUALITY_RESULTS_EMPTY = """\
create or replace view stg_quality_results as
select
    cast(null as varchar) as run_id,
    cast(null as timestamptz) as checked_at,
    cast(null as varchar) as dataset,
    cast(null as varchar) as expectation,
    cast(null as varchar) as expectation_type,
    cast(null as varchar) as "column",
    cast(null as varchar) as severity,
    cast(null as boolean) as success,
    cast(null as varchar) as observed_value,
    cast(null as bigint) as element_count,
    cast(null as bigint) as unexpected_count,
    cast(null as boolean) as sampled
where false;
"""

TABLE_VIEWS = {"stg_events": "events", "stg_feedback": "feedback", "stg_quarantine": "quarantine",
               "stg_duplicates": "duplicates", "stg_identity_map": "identity_map",
               "stg_identity_conflicts": "identity_conflicts"}  # staging view -> the pipeline table it reads
DEFAULT_JOURNEY_GAP_DAYS = 7.0  # person journeys: visits at most this far apart form one journey

_CREATE = re.compile(r"create\s+or\s+replace\s+view\s+([a-z_][a-z0-9_]*)\s+as", re.IGNORECASE)
_VARIABLE = re.compile(r"getvariable\(\s*'([a-z_][a-z0-9_]*)'\s*\)", re.IGNORECASE)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class SqlView:
    name: str
    layer: str
    path: Path
    sql: str

    @property
    def header(self) -> str:
        """The leading comment block (grain and columns)."""
        lines = []
        for line in self.sql.splitlines():
            if not line.startswith("--"):
                break
            lines.append(line[2:].strip())
        return "\n".join(lines)


@dataclass(frozen=True)
class BuiltObject:
    name: str
    layer: str
    kind: str  # view | table
    rows: Optional[int]  # tables only
    seconds: float


def sql_literal(value: object) -> str:
    """A Python value as a DuckDB SQL literal (str, number, dict of str -> number as a MAP)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(float(value)) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, dict):
        if not value:
            return "cast(map {} as map(varchar, double))"
        items = ", ".join(f"{sql_literal(str(k))}: {sql_literal(float(v))}" for k, v in value.items())
        return f"cast(map {{{items}}} as map(varchar, double))"
    raise TypeError(f"no SQL literal for {type(value).__name__}")


def parse_weights(text: Optional[str]) -> dict[str, float]:
    """`reliability=0.4,tangibles=0.05` -> {'reliability': 0.4, 'tangibles': 0.05}; a missing dimension keeps its default.

    Raises ValueError on an unknown dimension, a non-number, a negative weight or weights that sum to 0.
    """
    weights = dict(DEFAULT_WEIGHTS)
    if not text:
        return weights
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, number = part.partition("=")
        name = name.strip().lower()
        if not sep or name not in DIMENSIONS:
            raise ValueError(f"--weights: {part.strip()!r} is not DIMENSION=NUMBER with DIMENSION one of {', '.join(DIMENSIONS)}")
        try:
            value = float(number)
        except ValueError:
            raise ValueError(f"--weights: {number.strip()!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"--weights: the weight of {name} must be a finite number >= 0, not {number.strip()!r}")
        weights[name] = value
    if sum(weights.values()) <= 0:
        raise ValueError("--weights: the weights must not all be 0")
    return weights


def load_views(queries_dir: Path = QUERIES_DIR) -> list[SqlView]:
    """Every `queries/<layer>/*.sql` in build order: layer by layer, dependencies first within a layer."""
    ordered: list[SqlView] = []
    for layer in LAYERS:
        views = []
        for path in sorted((Path(queries_dir) / layer).glob("*.sql")):
            sql = path.read_text(encoding="utf-8")
            match = _CREATE.search(sql)
            if not match:
                raise ValueError(f"{path}: no 'create or replace view NAME as'")
            if match.group(1) != path.stem:
                raise ValueError(f"{path}: creates {match.group(1)}, expected {path.stem} (one view per file)")
            views.append(SqlView(path.stem, layer, path, sql))
        ordered.extend(_dependency_order(views))
    return ordered


def _dependency_order(views: list[SqlView]) -> list[SqlView]:
    names = {v.name for v in views}
    deps = {v.name: {n for n in names - {v.name} if re.search(rf"\b{n}\b", _strip_comments(v.sql))} for v in views}
    done: list[SqlView] = []
    remaining = {v.name: v for v in views}
    while remaining:
        ready = [v for n, v in sorted(remaining.items()) if deps[n] <= {d.name for d in done}]
        if not ready:
            raise ValueError(f"circular references between {', '.join(sorted(remaining))}")
        for v in ready:
            done.append(v)
            del remaining[v.name]
    return done


def _strip_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())


def render(view: SqlView, params: dict[str, object], materialize: bool) -> str:
    """The SQL to run for `view`: variables replaced by literals, `view` -> `table` when materialised."""
    def substitute(match: re.Match) -> str:
        name = match.group(1).lower()
        if name not in params:
            raise ValueError(f"{view.path}: unknown variable {name!r}")
        return sql_literal(params[name])

    sql = _VARIABLE.sub(substitute, view.sql)
    if materialize:
        sql = _CREATE.sub(lambda m: f"create or replace table {m.group(1)} as", sql, count=1)
    return sql


def default_db(out: str) -> str:
    """OUT/motpipe.duckdb; an output on another filesystem (s3://, ...) has no default: DuckDB writes its file on
    a local disk."""
    if is_remote(out):
        raise ValueError(f"{out} is not on a local disk: give --db, a local DuckDB file to build (the staging tables "
                         "are copied into it, so it needs no access to the store afterwards)")
    return str(Path(out) / DEFAULT_DB_NAME)


def _check_output(out: str) -> None:
    """A FileNotFoundError unless `out` holds the events table of a run (or, on an object store, which has no
    directories, a partition of it or a run summary)."""
    if is_remote(out):
        found = has_partitions(out, "events") or bool(FileSystems.match([FileSystems.join(out, "_runs", "*.json")])[0].metadata_list)
    else:
        found = (Path(out) / "events").is_dir()
    if not found:
        raise FileNotFoundError(f"{out}/events does not exist: is {out} the --out directory of a motpipe run?")


def empty_view(con: duckdb.DuckDBPyConnection, name: str, table: str) -> str:
    """`create or replace view NAME` as the typed, empty relation of pipeline table `table` (schemas/tables.py)
    plus its `dt` partition column: what the staging view reads when the table has no partition (e.g. a run
    without duplicates)."""
    con.register("motpipe_empty_table", table_schema(table).empty_table())
    try:
        types = con.execute("select column_name, column_type from (describe select * from motpipe_empty_table)").fetchall()
    finally:
        con.unregister("motpipe_empty_table")
    columns = [f'cast(null as {column_type}) as "{column}"' for column, column_type in types]
    return f"create or replace view {name} as\nselect {', '.join([*columns, 'cast(null as date) as dt'])}\nwhere false;\n"


def _existing_kind(con: duckdb.DuckDBPyConnection, name: str) -> Optional[str]:
    rows = con.execute(
        "select 'view' from duckdb_views() where view_name = ? and schema_name = 'main' and not internal "
        "union all select 'table' from duckdb_tables() where table_name = ? and schema_name = 'main'",
        [name, name],
    ).fetchall()
    return rows[0][0] if rows else None


def build_views(
    out: str,
    db: Optional[str] = None,
    weights: Optional[dict[str, float]] = None,
    materialize: bool = True,
    queries_dir: Path = QUERIES_DIR,
    playbook: Optional[Playbook] = None,
    drivers_importance: bool = False,
    driver_resamples: int = 200,
    journey_gap_days: float = DEFAULT_JOURNEY_GAP_DAYS,
) -> list[BuiltObject]:
    """Create or replace every view of `queries/` in the DuckDB file `db` (default OUT/motpipe.duckdb; required,
    and local, for an OUT on another filesystem, whose staging layer is then copied into tables).

    Between the staging and the intermediate layer the `key_drivers` table is computed in Python
    (pipelines.analysis.drivers). `playbook` gives the follow-up and attribution settings (default: the built-in
    defaults); `drivers_importance` adds the 'drivers' method to importance_performance.
    Idempotent: objects are replaced, a view that was a table (or the reverse) is dropped first, and the whole
    build is one transaction. Returns what was built, in build order.
    """
    remote = is_remote(out)
    out = out.rstrip("/") if remote else str(Path(out).resolve())
    _check_output(out)
    db = db or default_db(out)
    weights = dict(weights) if weights is not None else dict(DEFAULT_WEIGHTS)
    if not journey_gap_days >= 0:
        raise ValueError(f"the journey gap must be >= 0 days, got {journey_gap_days}")
    analytics = playbook or Playbook(name="defaults", version="0")
    params: dict[str, object] = {"motpipe_out": out, "motpipe_weights": weights,
                                 "motpipe_follow_up": analytics.follow_up.as_settings(),
                                 "motpipe_half_life_s": analytics.attribution.half_life_s,
                                 "motpipe_drivers_importance": drivers_importance,
                                 "motpipe_journey_gap_days": float(journey_gap_days)}
    views = load_views(queries_dir)
    quality_present = has_partitions(out, "quality_results")
    empty_tables = [t for t in TABLE_VIEWS.values() if not has_partitions(out, t)]
    Path(db).parent.mkdir(parents=True, exist_ok=True)
    built: list[BuiltObject] = []
    con = duckdb.connect(db)
    try:
        reach_through_beam(con, out)
        con.execute("begin transaction").fetchall()
        for view in views:
            if view.layer != "staging" and not any(b.name == KEY_DRIVERS for b in built):
                built.append(_build_key_drivers(con, driver_resamples))
            if view.name == "stg_quality_results" and not quality_present:
                sql, as_table = QUALITY_RESULTS_EMPTY, False
            elif TABLE_VIEWS.get(view.name) in empty_tables:
                sql, as_table = empty_view(con, view.name, TABLE_VIEWS[view.name]), False
            else:
                as_table = (materialize and view.layer in MATERIALIZED_LAYERS) or (remote and view.layer == "staging")
                sql = render(view, params, as_table)
            kind = "table" if as_table else "view"
            existing = _existing_kind(con, view.name)
            if existing and existing != kind:
                con.execute(f"drop {existing} {view.name}").fetchall()
            started = time.perf_counter()
            try:
                con.execute(sql).fetchall()
            except duckdb.Error as error:
                raise RuntimeError(f"{view.path.relative_to(queries_dir.parent) if view.path.is_relative_to(queries_dir.parent) else view.path}: {error}") from error
            rows = con.execute(f"select count(*) from {view.name}").fetchall()[0][0] if as_table else None
            built.append(BuiltObject(view.name, view.layer, kind, rows, time.perf_counter() - started))
        settings = {
            "out_dir": out,
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "weights": json.dumps(weights),
            "follow_up": json.dumps(analytics.follow_up.as_settings()),
            "attribution_half_life_s": str(analytics.attribution.half_life_s),
            "drivers_importance": str(drivers_importance).lower(),
            "driver_resamples": str(driver_resamples),
            "journey_gap_days": str(float(journey_gap_days)),
            "materialized_layers": ",".join((("staging",) if remote else ()) + (MATERIALIZED_LAYERS if materialize else ())),
            "quality_results": "present" if quality_present else "absent",
            "empty_tables": ",".join(empty_tables),
            "objects": ",".join(b.name for b in built),
        }
        con.execute(f"create or replace table {SETTINGS_TABLE} (key varchar primary key, value varchar)").fetchall()
        con.executemany(f"insert into {SETTINGS_TABLE} values (?, ?)", list(settings.items()))
        con.execute("commit").fetchall()
    except BaseException:
        try:
            con.execute("rollback").fetchall()
        except duckdb.Error:  # no open transaction to roll back: the original error below is what matters
            pass
        raise
    finally:
        con.close()
    return built


def _build_key_drivers(con: duckdb.DuckDBPyConnection, resamples: int) -> BuiltObject:
    """The key_drivers table: Shapley shares of R² of csat, nps and ces on the five perceptions (stg_feedback)."""
    started = time.perf_counter()
    columns = ", ".join(f"cast({d}_perception as double) as {d}" for d in DIMENSIONS)
    feedback = con.execute(f"select {columns}, cast(csat as double) as csat, cast(nps as double) as nps, "
                           f"cast(ces as double) as ces from stg_feedback").fetchnumpy()
    def as_floats(name: str) -> np.ndarray:
        return np.ma.filled(np.ma.asarray(feedback[name], dtype=float), np.nan)
    rows = driver_rows({d: as_floats(d) for d in DIMENSIONS}, {o: as_floats(o) for o in OUTCOMES},
                       resamples=resamples, seed=DRIVER_SEED)
    table = pa.Table.from_pylist(rows, schema=KEY_DRIVERS_SCHEMA)
    kind = _existing_kind(con, KEY_DRIVERS)
    if kind == "view":
        con.execute(f"drop view {KEY_DRIVERS}").fetchall()
    con.register("key_drivers_rows", table)
    con.execute(f"create or replace table {KEY_DRIVERS} as select * from key_drivers_rows").fetchall()
    con.unregister("key_drivers_rows")
    return BuiltObject(KEY_DRIVERS, "marts", "table", len(rows), time.perf_counter() - started)


def connect(db: str, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    if not Path(db).exists():
        raise FileNotFoundError(f"{db} does not exist: build it with `motpipe views --out OUT --db {db}`")
    return duckdb.connect(db, read_only=read_only)


def as_sql(query_or_view: str) -> str:
    """A bare view name becomes `select * from NAME`; anything else is taken as SQL."""
    text = query_or_view.strip().rstrip(";").strip()
    return f"select * from {text}" if _IDENTIFIER.match(text) else text


def settings(db: str) -> dict[str, str]:
    con = connect(db)
    try:
        return dict(con.execute(f"select key, value from {SETTINGS_TABLE}").fetchall())
    finally:
        con.close()


PUBLIC_DIRECTORIES = ("events", "feedback", "quarantine", "duplicates", "quality_results",  # what analysts may read
                      "identity_links", "identity_map", "identity_conflicts")  # keyed hashes only


def connect_analyst(db: str, writable: Optional[str] = None) -> duckdb.DuckDBPyConnection:
    """A read-only connection that reads no file but the public tables of the database's output directory (not
    `_restricted/`, not `/etc/passwd`) and writes no file but `writable`; its settings are locked, so SQL cannot
    lift this (DuckDB's `enable_external_access = false` with `allowed_directories`)."""
    out = settings(db)["out_dir"].rstrip("/")
    con = connect(db)
    try:
        con.execute("set allowed_directories = ?", [[f"{out}/{name}/" for name in PUBLIC_DIRECTORIES]]).fetchall()
        if writable:
            con.execute("set allowed_paths = ?", [[os.path.abspath(writable)]]).fetchall()
        con.execute("set enable_external_access = false").fetchall()
        con.execute("set lock_configuration = true").fetchall()
    except BaseException:
        con.close()
        raise
    return con


def analyst_select(query_or_view: str) -> str:
    """The SQL of a view name or of one SELECT statement (with, from, describe and summarize included); anything
    else (copy, attach, set, create, pragma, several statements) is a ValueError in analyst mode."""
    sql = as_sql(query_or_view)
    statements = duckdb.extract_statements(sql)
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        kinds = ", ".join(str(s.type).rsplit(".", 1)[-1] for s in statements) or "nothing"
        raise ValueError(f"motpipe query runs one SELECT statement (got: {kinds}); COPY, ATTACH and the like need "
                         "--unrestricted (data engineers: the full DuckDB, which can read _restricted/ and write files)")
    return sql


def _query_connection(db: str, query_or_view: str, unrestricted: bool, writable: Optional[str] = None):
    if unrestricted:
        return connect(db), as_sql(query_or_view)
    return connect_analyst(db, writable), analyst_select(query_or_view)


def run_query(db: str, query_or_view: str, limit: Optional[int] = None, unrestricted: bool = False):
    """Run a query (or `select * from VIEW`) against the database file; returns (columns, rows, total_rows).
    Analyst mode (the default) runs one SELECT that sees only the public tables (connect_analyst)."""
    con, sql = _query_connection(db, query_or_view, unrestricted)
    try:
        table = con.sql(sql).to_arrow_table()
    finally:
        con.close()
    rows = table.slice(0, limit).to_pylist() if limit is not None else table.to_pylist()
    return table.column_names, [tuple(r.values()) for r in rows], table.num_rows


EXPORT_FORMATS = {"csv": "format csv, header true", "parquet": "format parquet", "jsonl": "format json"}


def export_query(db: str, query_or_view: str, path: str, fmt: Optional[str] = None, unrestricted: bool = False) -> int:
    """Write the result to CSV, Parquet or JSON Lines (format from `fmt` or the file extension); returns the row count.
    In analyst mode the file written is `path` alone."""
    fmt = (fmt or Path(path).suffix.lstrip(".")).lower()
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"cannot tell the format of {path!r}: use a .csv, .parquet or .jsonl file name "
                         "or --format csv|parquet|jsonl")
    con, sql = _query_connection(db, query_or_view, unrestricted, writable=path)
    try:
        con.execute(f"copy ({sql}) to {sql_literal(str(path))} ({EXPORT_FORMATS[fmt]})").fetchall()
        return con.execute(f"select count(*) from ({sql})").fetchall()[0][0]
    finally:
        con.close()


CASE_STATUSES = ("open", "closed", "all")


def cases_query(status: str) -> str:
    """The follow_up_cases rows of a status ('open', 'closed' or 'all'), most urgent first: priority, then due_at."""
    if status not in CASE_STATUSES:
        raise ValueError(f"--status: {status!r} is not one of {', '.join(CASE_STATUSES)}")
    where = "" if status == "all" else f" where status = {sql_literal(status)}"
    return (f"select * from follow_up_cases{where} order by case priority when 'high' then 1 when 'medium' then 2 "
            "else 3 end, due_at, case_id")


def time_views(db: str, names: Optional[Iterable[str]] = None, repeat: int = 3) -> list[dict]:
    """Best-of-`repeat` wall time to compute each object's full result (all rows and columns, into Arrow).

    A fresh read-only connection is used, as an analyst's `motpipe query` would.
    """
    con = connect(db)
    try:
        if names is None:
            names = [r[0] for r in con.execute(f"select value from {SETTINGS_TABLE} where key = 'objects'").fetchall()][0].split(",")
        results = []
        for name in names:
            kind = _existing_kind(con, name)
            best_full, best_count, rows = float("inf"), float("inf"), 0
            for _ in range(repeat):
                started = time.perf_counter()
                rows = con.sql(f"select * from {name}").to_arrow_table().num_rows
                best_full = min(best_full, time.perf_counter() - started)
                started = time.perf_counter()
                con.execute(f"select count(*) from {name}").fetchall()
                best_count = min(best_count, time.perf_counter() - started)
            results.append({"name": name, "kind": kind, "rows": rows, "full_result_s": best_full, "count_s": best_count})
        return results
    finally:
        con.close()
