"""Beam PTransforms of motpipe. Every element is a pyarrow Table (a batch of rows), never a row:
the shuffles move a few large batches keyed by hash bucket or partition date.

Pipeline shape (see pipelines/pipeline.py):
    ReadAndValidate -> Deduplicate -> StitchVisits -> LinkFeedback -> Enrich (redact, tag, finalise)
    -> WritePartitioned
"""
from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from pipelines import arrow_pickle  # noqa: F401  (registers the IPC pickling of Arrow tables)
from pipelines.config import RunConfig
from pipelines.contract import MOT_STEPS
from pipelines.dedup import deduplicate, split_by_bucket
from pipelines.ingest import read_validated
from pipelines.io import local_dates, write_partition
from pipelines.pii import mask_column, pseudonymize_column
from pipelines.playbook import load_playbook
from pipelines.stitch import link_feedback, stitch_visits, visit_ends
from pipelines.tagging import Tagger
from pipelines.validate import ID_FIELDS, TIME_FIELDS
from schemas.tables import SCHEMA_VERSION, table_schema

NAMESPACE = "motpipe"
TEXT_COLUMNS = {"events": ["text", "attributes"], "feedback": ["comment"]}


def count(name: str, value: int) -> None:
    if value:
        Metrics.counter(NAMESPACE, name).inc(int(value))


def concat(tables) -> pa.Table | None:
    tables = [t for t in tables if t.num_rows]
    return pa.concat_tables(tables) if tables else None


# --- read and validate ------------------------------------------------------------------------
class _ReadFile(beam.DoFn):
    def __init__(self, dataset: str, config: RunConfig, channels: frozenset[str]):
        self.dataset, self.config, self.channels = dataset, config, channels

    def process(self, path: str):
        for valid, rejected in read_validated(
            path, self.dataset, self.channels, self.config.tz, self.config.batch_rows, self.config.fallback_date
        ):
            count(f"{self.dataset}.input_rows", valid.num_rows + rejected.num_rows)
            if valid.num_rows:
                yield valid
            if rejected.num_rows:
                yield beam.pvalue.TaggedOutput("rejected", rejected)


class ReadAndValidate(beam.PTransform):
    """Input files -> batches of valid rows (main output) and of rejected rows (`rejected`)."""

    def __init__(self, dataset: str, paths: list[str], config: RunConfig, channels: frozenset[str]):
        super().__init__()
        self.dataset, self.paths, self.config, self.channels = dataset, paths, config, channels

    def expand(self, pbegin):
        return (
            pbegin
            | "List files" >> beam.Create(self.paths)
            | "Spread files" >> beam.Reshuffle()
            | "Parse and validate" >> beam.ParDo(_ReadFile(self.dataset, self.config, self.channels)).with_outputs("rejected", main="valid")
        )


# --- deduplicate ----------------------------------------------------------------------------------
class _DeduplicateBucket(beam.DoFn):
    def __init__(self, dataset: str, timezone: str):
        self.dataset, self.timezone = dataset, timezone

    def process(self, keyed):
        _, tables = keyed
        result = deduplicate(concat(tables), self.dataset, self.timezone)
        yield result.unique
        if result.duplicates.num_rows:
            yield beam.pvalue.TaggedOutput("duplicates", result.duplicates)
        if result.conflicts.num_rows:
            yield beam.pvalue.TaggedOutput("conflicts", result.conflicts)


class Deduplicate(beam.PTransform):
    """Valid batches -> unique rows (main), exact `duplicates`, conflicting duplicates (`conflicts`)."""

    def __init__(self, dataset: str, config: RunConfig):
        super().__init__()
        self.dataset, self.config = dataset, config

    def expand(self, valid):
        return (
            valid
            | "Bucket by id" >> beam.FlatMap(split_by_bucket, ID_FIELDS[self.dataset], self.config.buckets)
            | "Group id buckets" >> beam.GroupByKey()
            | "Keep one per id" >> beam.ParDo(_DeduplicateBucket(self.dataset, self.config.timezone)).with_outputs(
                "duplicates", "conflicts", main="unique"
            )
        )


# --- stitch visits and link feedback -------------------------------------------------------------
EMPTY_VISITS = pa.schema([("customer_id", pa.string()), ("visit_id", pa.string()), ("ended_at", pa.timestamp("us", tz="UTC"))])


class _StitchBucket(beam.DoFn):
    def __init__(self, gap_s: float):
        self.gap_s = gap_s

    def process(self, keyed):
        _, tables = keyed
        events = stitch_visits(concat(tables), self.gap_s)
        count("events.visits", pc.sum(events.column("is_first_moment").cast(pa.int64())).as_py())
        yield events
        yield beam.pvalue.TaggedOutput("visits", visit_ends(events))


class StitchVisits(beam.PTransform):
    """Unique events -> events with visit_id and position (main) and `visits` (visit_ends rows).

    Rows are keyed by a hash bucket of visit_id, or of customer_id when the event has no visit_id,
    so every visit, even one whose customer_id changes midway, is complete inside one group.
    """

    def __init__(self, config: RunConfig):
        super().__init__()
        self.config = config

    def expand(self, events):
        return (
            events
            | "Bucket by visit or customer" >> beam.FlatMap(split_by_bucket, ["visit_id", "customer_id"], self.config.buckets)
            | "Group visit buckets" >> beam.GroupByKey()
            | "Stitch" >> beam.ParDo(_StitchBucket(self.config.gap_minutes * 60)).with_outputs("visits", main="events")
        )


class _LinkBucket(beam.DoFn):
    def __init__(self, window_s: float):
        self.window_s = window_s

    def process(self, keyed):
        _, grouped = keyed
        feedback = concat(grouped["feedback"])
        if feedback is None:
            return
        visits = concat(grouped["visits"]) or EMPTY_VISITS.empty_table()
        linked = link_feedback(feedback, visits, self.window_s)
        for method, n in zip(*pc.value_counts(linked.column("link_method")).flatten()):
            count(f"feedback.link.{method}", n.as_py())
        yield linked


class LinkFeedback(beam.PTransform):
    """{visits, feedback} -> feedback with visit_id and link_method; keyed by a hash bucket of customer_id."""

    def __init__(self, config: RunConfig):
        super().__init__()
        self.config = config

    def expand(self, inputs):
        keyed = {
            name: pcoll | f"Bucket {name} by customer" >> beam.FlatMap(split_by_bucket, "customer_id", self.config.buckets)
            for name, pcoll in inputs.items()
        }
        return (
            keyed
            | "Group customer buckets" >> beam.CoGroupByKey()
            | "Link" >> beam.ParDo(_LinkBucket(self.config.link_window_days * 86400))
        )


# --- redact, tag, finalise ------------------------------------------------------------------------
def redact(table: pa.Table, text_columns: list[str], key: bytes | None) -> pa.Table:
    """Mask PII in the text columns (count in `pii_masked`) and pseudonymise customer_id when a key is set."""
    masked_total = pa.array([0] * table.num_rows, pa.int32())
    for column in text_columns:
        masked, counts = mask_column(table.column(column))
        table = table.set_column(table.schema.get_field_index(column), column, masked)
        masked_total = pc.add(masked_total, counts)
    if key is not None and "customer_id" in table.column_names:
        index = table.schema.get_field_index("customer_id")
        table = table.set_column(index, "customer_id", pseudonymize_column(table.column("customer_id"), key))
    return table.append_column("pii_masked", masked_total.cast(pa.int32()))


def finalise(table: pa.Table, name: str, config: RunConfig, date_column: str, extra: dict | None = None) -> pa.Table:
    """Add run columns and `dt`, then select and cast to the versioned schema of table `name`."""
    columns = {"run_id": config.run_id, "schema_version": SCHEMA_VERSION, **(extra or {})}
    for column, value in columns.items():
        table = table.append_column(column, pa.array([value] * table.num_rows, pa.string()))
    schema = table_schema(name)
    conformed = pa.table([table.column(f.name).cast(f.type) for f in schema], schema=schema)
    dt = table.column("dt") if date_column == "dt" else local_dates(table.column(date_column), config.timezone)
    return conformed.append_column("dt", dt)


class _Tag(beam.DoFn):
    """Redact then tag one dataset's batches; the playbook is compiled once per worker."""

    def __init__(self, dataset: str, config: RunConfig):
        self.dataset, self.config = dataset, config

    def setup(self):
        self.playbook = load_playbook(self.config.playbook)
        self.tagger = Tagger(self.playbook)
        self.mapped = frozenset(code for code, rule in self.playbook.touchpoints.items() if rule.mot_step)

    def process(self, table: pa.Table):
        table = redact(table, TEXT_COLUMNS[self.dataset], self.config.key_bytes)
        count(f"{self.dataset}.pii_masked", pc.sum(table.column("pii_masked")).as_py() or 0)
        if self.dataset == "events":
            tags = self.tagger.tag_events(table)
            unmapped = pc.invert(pc.is_in(table.column("touchpoint"), pa.array(sorted(self.mapped), pa.string())))
            count("events.unmapped_touchpoint", pc.sum(unmapped.cast(pa.int64())).as_py() or 0)
            untagged = pc.and_(pc.is_null(tags["mot_step"]), pc.equal(pc.list_value_length(tags["pzb_tags"]), 0))
            count("events.untagged", pc.sum(untagged.cast(pa.int64())).as_py() or 0)
        else:
            tags = self.tagger.tag_feedback(table)
        for column, values in tags.items():
            table = table.append_column(column, values)
        yield finalise(table, self.dataset, self.config, TIME_FIELDS[self.dataset], {"playbook": self.playbook.ref})


class Enrich(beam.PTransform):
    """Stitched rows -> analyst-facing rows: PII masked, tagged, in the table's schema, with `dt`."""

    def __init__(self, dataset: str, config: RunConfig):
        super().__init__()
        self.dataset, self.config = dataset, config

    def expand(self, pcoll):
        return pcoll | "Redact and tag" >> beam.ParDo(_Tag(self.dataset, self.config))


def quarantine_tables(rejected: pa.Table, config: RunConfig) -> tuple[pa.Table, pa.Table]:
    """(analyst-facing quarantine with the raw record masked, restricted unmasked copy for replay)."""
    masked = redact(rejected, ["raw_record", "error_message"], None).drop_columns(["pii_masked"])
    return finalise(masked, "quarantine", config, "dt"), finalise(rejected, "quarantine_raw", config, "dt")


# --- write --------------------------------------------------------------------------------------
def count_rows(table: pa.Table, name: str, count_by: list[str]) -> pa.Table:
    """Count rows into metrics `<name>.rows_written`, or `<name>.<value>[.<value>]` per `count_by` group."""
    if not count_by:
        count(f"{name}.rows_written", table.num_rows)
        return table
    for row in table.group_by(count_by).aggregate([([], "count_all")]).to_pylist():
        count(".".join([name, *(str(row[c]) for c in count_by)]), row["count_all"])
    return table


def keep_window(table: pa.Table, name: str, window_dates: list[str] | None, count_outside: bool) -> list[pa.Table]:
    """Rows whose `dt` is in the run's window (all rows without a window). With `count_outside`, the
    others are counted in `<dataset>.outside_window`, by the `dataset` column where the table has one,
    else under `name`."""
    if window_dates is None:
        return [table]
    inside = pc.is_in(table.column("dt"), pa.array(window_dates, pa.string()))
    outside = table.filter(pc.invert(inside))
    if outside.num_rows and count_outside:
        if "dataset" in outside.column_names:
            for row in outside.group_by("dataset").aggregate([([], "count_all")]).to_pylist():
                count(f"{row['dataset']}.outside_window", row["count_all"])
        else:
            count(f"{name}.outside_window", outside.num_rows)
    kept = table.filter(inside)
    return [kept] if kept.num_rows else []


def split_by_date(table: pa.Table) -> list[tuple[str, pa.Table]]:
    dates = table.column("dt")
    return [(dt, table.filter(pc.equal(dates, dt)).drop_columns(["dt"])) for dt in pc.unique(dates).to_pylist()]


class _WriteDate(beam.DoFn):
    def __init__(self, root: str, name: str, sort_by: list[str], row_group_rows: int):
        self.root, self.name, self.sort_by, self.row_group_rows = root, name, sort_by, row_group_rows

    def process(self, keyed):
        dt, tables = keyed
        table = pa.concat_tables(tables).sort_by([(c, "ascending") for c in self.sort_by])
        write_partition(self.root, self.name, dt, table, self.row_group_rows)
        count(f"{self.name}.files_written", 1)
        yield self.name, dt, table.num_rows


class WritePartitioned(beam.PTransform):
    """Batches with a `dt` column -> one Parquet file per partition, `root/<name>/dt=<dt>/part-00000.parquet`.

    `root` is the run's staging directory; pipeline.publish moves the files into place afterwards.
    Rows outside the run's window are dropped (and counted, unless the table is a copy of another
    one, like quarantine_raw). Rows are sorted by `sort_by` inside a partition, so the same input
    always gives the same bytes.
    """

    def __init__(self, root: str, name: str, sort_by: list[str], config: RunConfig, count_by: list[str] = (),
                 is_copy: bool = False):
        super().__init__()
        self.root, self.name, self.sort_by, self.config = root, name, sort_by, config
        self.count_by, self.is_copy = list(count_by), is_copy

    def expand(self, pcoll):
        return (
            pcoll
            | "Keep window" >> beam.FlatMap(keep_window, self.name, self.config.window_dates, not self.is_copy)
            | "Count rows" >> beam.Map(count_rows, self.name, self.count_by)
            | "Split by date" >> beam.FlatMap(split_by_date)
            | "Group by date" >> beam.GroupByKey()
            | "Write partition" >> beam.ParDo(_WriteDate(self.root, self.name, self.sort_by, self.config.row_group_rows))
        )
