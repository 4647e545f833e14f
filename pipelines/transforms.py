"""Beam PTransforms of motpipe. Elements are `(key, segment)` pairs of spill files (pipelines/spill.py):
rows travel as Arrow files in the run's work directory, Beam groups only (path, batch indices) segments.

Pipeline shape (see pipelines/pipeline.py); the key of each shuffle in brackets:
    ReadAndValidate (input file) -> Deduplicate [dataset, hash of the record id]
    -> StitchVisits [hash of visit_id, else customer_id]; IdentityGraph (pipelines/identity/stages.py)
    -> AssignPersons [customer node bucket] -> LinkFeedback [person bucket] -> WritePartitions [table, dt]
Redaction and tagging happen where each table's rows are final (after assigning persons, after linking).
Quarantined and duplicate rows go straight to WritePartitions from the step that found them.

Every step has one output (no tagged outputs) and keeps its counts in count files, not in Beam
metrics, so the same pipeline runs on the DirectRunner and on runners without them (DaskRunner).
"""
from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import functools
import gc
import sys
import typing
from collections import Counter

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.config import UNDATED, RunConfig
from pipelines.dedup import deduplicate, node_buckets, run_starts, split_by_bucket, split_by_ids
from pipelines.identity.identifiers import customer_nodes, nodes_of, person_ids, row_links
from pipelines.ingest.formats import FilePart, ReadTally
from pipelines.ingest.reader import read_validated
from pipelines.ingest.sources.reader import read_source
from pipelines.output import QUARANTINE_ORDER, local_dates, write_partition
from pipelines.pii import Redaction, mask_column
from pipelines.playbook import Playbook, load_playbook
from pipelines.spill import MERGE_BATCH_ROWS, SpillWriter, merge_sorted, read_spills, write_counts
from pipelines.storage import use_filesystem_options
from pipelines.stitch import link_feedback, stitch_visits, visit_ends, with_visit_ends
from pipelines.tagging.tagger import shared_tagger
from pipelines.ingest.validate import ID_FIELDS, TIME_FIELDS
from schemas.tables import SCHEMA_VERSION, table_schema

TEXT_COLUMNS = {"events": ["text", "attributes"], "feedback": ["comment"]}
# Identifier columns: a value in which PII is found is replaced whole by its keyed hash (README, Redact PII)
IDENTIFIER_COLUMNS = {"events": ["event_id", "visit_id", "staff_id", "location_id", "touchpoint"],
                      "feedback": ["feedback_id", "visit_id", "touchpoint"]}
RECORD_IDENTIFIERS = frozenset({"customer_id", *IDENTIFIER_COLUMNS["events"], *IDENTIFIER_COLUMNS["feedback"]})
PERSON_COLUMNS = ("person_id", "person_node")  # person_node: the anchor node, whose bucket links the person's rows
EMPTY_VISITS = pa.schema([("person_id", pa.string()), ("person_node", pa.int64()), ("visit_id", pa.string()),
                          ("ended_at", pa.timestamp("us", tz="UTC"))])
EMPTY_PERSONS = pa.schema([("node", pa.int64()), ("person_id", pa.string())])

# Stages a spill file is addressed to: the first part of its key.
DEDUP, STITCH, LINK_FEEDBACK, LINK_VISITS, WRITE = "dedup", "stitch", "link_feedback", "link_visits", "write"
ASSIGN_EVENTS, ASSIGN_FEEDBACK = "assign_events", "assign_feedback"
# the identity graph's stages (pipelines/identity/stages.py) that rows are sent to from here
IDENTITY_GUARD, ASSIGN_PERSONS, DATES = "identity_guard", "assign_persons", "dates"
SORT_KEYS = {  # row order inside a partition: the same input always gives the same bytes
    "events": ["occurred_at", "event_id"],
    "feedback": ["submitted_at", "feedback_id"],
    "quarantine": QUARANTINE_ORDER,
    "quarantine_raw": QUARANTINE_ORDER,
    "duplicates": ["dataset", "source_file", "line_no"],
    "identity_links": ["identifier_type", "identifier_hash", "customer_hash"],
    "identity_map": ["identifier_type", "identifier_hash"],
    "identity_conflicts": ["kind", "identifier_type", "identifier_hash", "person_id"],
}
RESTRICTED_TABLES = ("quarantine_raw",)  # written to the restricted staging directory
COPIES = ("quarantine_raw",)  # copies of another table: their rows outside the window are not counted again


# --- row-level steps (plain functions on Arrow tables) ---------------------------------------------
def redaction(config: RunConfig, playbook: Playbook) -> Redaction:
    """The run's masking: the playbook's phone regions, the customer_id and identifier keys of the config."""
    return Redaction(playbook.phone_regions, config.key_bytes, config.identifier_key_bytes)


def mask_identifier_columns(table: pa.Table, columns: list[str], how: Redaction) -> pa.Table:
    """Identifiers in which PII is found replaced by their keyed hash, in each of `columns`."""
    for column in columns:
        table = table.set_column(table.schema.get_field_index(column), column, how.identifiers(table.column(column))[0])
    return table


def redact(table: pa.Table, text_columns: list[str], identifier_columns: list[str], how: Redaction) -> pa.Table:
    """Mask PII in the text columns (count in `pii_masked`), replace identifiers that hold PII by their keyed hash,
    and pseudonymise customer_id with the customer key (without one it is an identifier like the others)."""
    masked_total = np.zeros(table.num_rows, dtype=np.int32)
    for column in text_columns:
        masked, counts = mask_column(table.column(column), how.phone_regions)
        table = table.set_column(table.schema.get_field_index(column), column, masked)
        masked_total += counts.to_numpy()
    table = mask_identifier_columns(table, identifier_columns, how)
    if "customer_id" in table.column_names:
        index = table.schema.get_field_index("customer_id")
        table = table.set_column(index, "customer_id", how.customer_ids(table.column("customer_id")))
    return table.append_column("pii_masked", pa.array(masked_total))


def finalise(table: pa.Table, name: str, config: RunConfig, date_column: str, extra: dict | None = None) -> pa.Table:
    """Add run columns and `dt`, then select and cast to the versioned schema of table `name`."""
    columns = {"run_id": config.run_id, "schema_version": SCHEMA_VERSION, **(extra or {})}
    for column, value in columns.items():
        table = table.append_column(column, pa.repeat(pa.scalar(value, pa.string()), table.num_rows))
    schema = table_schema(name)
    conformed = pa.table([table.column(f.name).cast(f.type) for f in schema], schema=schema)
    dt = table.column("dt") if date_column == "dt" else local_dates(table.column(date_column), config.timezone)
    return conformed.append_column("dt", dt)


def quarantine_tables(rejected: pa.Table, config: RunConfig, how: Redaction) -> tuple[pa.Table, pa.Table]:
    """(analyst-facing quarantine with the record id, message and raw record masked, restricted unmasked copy
    for replay)."""
    masked = redact(rejected, ["error_message"], ["record_id"], how).drop_columns(["pii_masked"])
    index = masked.schema.get_field_index("raw_record")
    masked = masked.set_column(index, "raw_record", how.records(rejected.column("raw_record"), RECORD_IDENTIFIERS))
    return finalise(masked, "quarantine", config, "dt"), finalise(rejected, "quarantine_raw", config, "dt")


def split_by_date(table: pa.Table, sort_keys: list[str] = ()) -> list[tuple[str, pa.Table]]:
    """[(dt, its rows without the dt column, sorted by `sort_keys`)]: one sort, then slices (of a copy in that
    order, unless the rows are in it already)."""
    order = pc.sort_indices(table, [(c, "ascending") for c in ("dt", *sort_keys)])
    rows, dates = table.drop_columns(["dt"]), table.column("dt")
    if not np.array_equal(order.to_numpy(), np.arange(table.num_rows)):  # else already in order: no copy
        rows, dates = rows.take(order), dates.take(order)
    starts = np.flatnonzero(run_starts(dates))
    ends = np.r_[starts[1:], table.num_rows]
    return [(dates[start].as_py(), rows.slice(start, end - start)) for start, end in zip(starts, ends)]


def true_count(mask: pa.Array | pa.ChunkedArray) -> int:
    return pc.sum(mask.cast(pa.int64())).as_py() or 0


def counts_by(table: pa.Table, columns: list[str]) -> list[tuple[tuple, int]]:
    """[(values of `columns`, number of rows)] for each group of rows."""
    rows = table.group_by(columns).aggregate([([], "count_all")]).to_pylist()
    return [(tuple(row[c] for c in columns), row["count_all"]) for row in rows]


def written_counts(table: pa.Table, name: str, count_by: list[str]) -> Counter:
    """`<name>.rows_written`, or `<name>.<value>[.<value>]` per group of the `count_by` columns."""
    if not count_by:
        return Counter({f"{name}.rows_written": table.num_rows})
    return Counter({".".join([name, *map(str, values)]): n for values, n in counts_by(table, count_by)})


def outside_window_counts(table: pa.Table, name: str) -> Counter:
    """`<dataset>.outside_window`: by the `dataset` column where the table has one, else under `name`."""
    if "dataset" in table.column_names:
        return Counter({f"{dataset}.outside_window": n for (dataset,), n in counts_by(table, ["dataset"])})
    return Counter({f"{name}.outside_window": table.num_rows})


class Enricher:
    """Redact, tag and finalise one dataset's rows with the playbook compiled at construction (build it in a
    DoFn's setup, once per worker)."""

    def __init__(self, dataset: str, config: RunConfig):
        self.dataset, self.config = dataset, config
        self.playbook = load_playbook(config.playbook)
        self.tagger = shared_tagger(self.playbook)
        self.redaction = redaction(config, self.playbook)
        self.mapped = pa.array(sorted(code for code, rule in self.playbook.touchpoints.items() if rule.mot_step), pa.string())

    def __call__(self, table: pa.Table, counts: Counter) -> pa.Table:
        """The finished rows, sorted by the dataset's SORT_KEYS (time, id) before the tag columns are made, so
        they are in partition order already when split_by_date cuts them up."""
        table = redact(table, TEXT_COLUMNS[self.dataset], IDENTIFIER_COLUMNS[self.dataset], self.redaction)
        table = table.sort_by([(c, "ascending") for c in SORT_KEYS[self.dataset]])  # by the ids as published
        counts[f"{self.dataset}.pii_masked"] += pc.sum(table.column("pii_masked")).as_py() or 0
        if self.dataset == "events":
            tags = self.tagger.tag_events(table)
            counts["events.unmapped_touchpoint"] += true_count(pc.invert(pc.is_in(table.column("touchpoint"), self.mapped)))
            counts["events.untagged"] += true_count(
                pc.and_(pc.is_null(tags["mot_step"]), pc.equal(pc.list_value_length(tags["pzb_tags"]), 0)))
        else:
            tags = self.tagger.tag_feedback(table)
        for column, values in tags.items():
            table = table.append_column(column, values)
        return finalise(table, self.dataset, self.config, TIME_FIELDS[self.dataset], {"playbook": self.playbook.ref})


# --- DoFns: one group in, spill files out ----------------------------------------------------------
_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if sys.platform.startswith("linux") else None


def _trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc malloc_trim; nothing elsewhere)."""
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


def release_memory() -> None:
    """Hand the memory a step freed back to the system: pyarrow's allocator (mimalloc) and the C heap would otherwise
    keep every step's high-water mark, and a worker would hold the most it ever needed (1M events: 1,546 -> 1,359 MB
    peak for the process tree)."""
    pa.default_memory_pool().release_unused()
    _trim_heap()


@functools.cache
def exit_without_final_collections() -> None:
    """Freeze the objects left when this (worker) process exits, so the interpreter's last collections skip them:
    they walked a worker's whole heap (tagging models, jieba's dictionary), ~0.55 s per worker at 1M events, and
    the FnApiRunner stops its workers one after the other while the run waits (1.10 -> 0.11 s). Every file a step
    writes is closed when its bundle ends."""
    atexit.register(gc.freeze)


class _GroupStep(beam.DoFn):
    """A step over one input file or one group of spills: `step(element)` does the work, then `release_memory`.
    Each worker process reaches the run's filesystems with the run's options (the DaskRunner's workers get no
    pipeline options of their own)."""

    def setup(self):
        use_filesystem_options(self.config.filesystem_options)
        exit_without_final_collections()

    def process(self, element):
        yield from self.step(element)
        release_memory()


class _SpillingDoFn(_GroupStep):
    """A step that writes spill files into `work` and yields their (key, segment) pairs."""

    def __init__(self, config: RunConfig, work: str):
        self.config, self.work = config, work
        self._redaction = None

    @property
    def redaction(self) -> Redaction:
        """The run's masking, made on the worker at first use."""
        if self._redaction is None:
            self._redaction = redaction(self.config, load_playbook(self.config.playbook))
        return self._redaction

    def spill_rows(self, writer: SpillWriter, name: str, table: pa.Table, table_name: str) -> None:
        """Rows of a finished table, one segment per partition date sorted by the table's SORT_KEYS,
        addressed to WritePartitions (which merges the sorted segments)."""
        for dt, part in split_by_date(table, SORT_KEYS[table_name]):
            writer.write((WRITE, table_name, dt), name, part, MERGE_BATCH_ROWS)

    def spill_rejected(self, writer: SpillWriter, name: str, rejected: pa.Table) -> None:
        if rejected.num_rows:
            tables = quarantine_tables(rejected, self.config, self.redaction)
            for table_name, table in zip(("quarantine", "quarantine_raw"), tables):
                self.spill_rows(writer, name, table, table_name)

    def spill_buckets(self, writer: SpillWriter, name: str, table: pa.Table, key: tuple, key_columns) -> None:
        """Rows by hash bucket of `key_columns`, addressed to (*key, bucket)."""
        for bucket, part in split_by_bucket(table, key_columns, self.config.buckets):
            writer.write((*key, bucket), name, part)

    def spill_by_node(self, writer: SpillWriter, name: str, table: pa.Table, column: str, stage: str) -> None:
        """Rows by the bucket of the identity graph node in `column`, addressed to (stage, bucket)."""
        for bucket, part in split_by_ids(table, node_buckets(table.column(column).to_numpy(), self.config.buckets)):
            writer.write((stage, bucket), name, part)


class _ReadFile(_SpillingDoFn):
    def __init__(self, config: RunConfig, work: str, channels: frozenset[str]):
        super().__init__(config, work)
        self.channels = channels

    def step(self, element):
        dataset, index, path, part, source = element
        name, writer, counts = f"read-{dataset}-{index:05d}-{part.number:04d}", SpillWriter(self.work), Counter()
        tally = ReadTally()
        for valid, rejected in self.batches(path, dataset, part, source, counts, tally):
            counts[f"{dataset}.input_rows"] += valid.num_rows + rejected.num_rows
            self.spill_buckets(writer, name, valid, (DEDUP, dataset), ID_FIELDS[dataset])
            self.spill_rejected(writer, name, rejected)
        counts.update(physical_counts(dataset, part, tally, counts[f"{dataset}.input_rows"], source is None))
        write_counts(self.work, name, counts)
        yield from writer.close()

    def batches(self, path: str, dataset: str, part, source: int | None, counts: Counter, tally: ReadTally):
        """(valid, rejected) tables of a contract file, or of a source's file (adding its `source.<i>.` counts)."""
        config = self.config
        if source is None:
            yield from read_validated(path, dataset, self.channels, config.tz, config.batch_rows, config.fallback_date,
                                      part, tally)
            return
        for valid, rejected, source_counts in read_source(path, config.sources[source], self.channels, config.tz,
                                                          config.batch_rows, config.fallback_date, tally):
            counts.update({f"source.{source}.{key}": n for key, n in source_counts.items()})
            yield valid, rejected


def physical_counts(dataset: str, part: FilePart, tally: ReadTally, rows: int, contract: bool = True) -> dict[str, int]:
    """The physical counts of one read of a file: the bytes read from it (`FilePart.counts_the_file`) and, of a
    contract file, the lines read and the lines that its rows and the lines starting none account for (a source's
    native export has no line per row: its rows reconcile by the source's own counts)."""
    counts = {f"{dataset}.bytes_read": tally.bytes_read} if part.counts_the_file else {}
    if contract:
        counts[f"{dataset}.lines_accounted"] = rows + tally.other_lines
        if part.counts_the_file:
            counts[f"{dataset}.lines_read"] = tally.lines
    return counts


class _DeduplicateBucket(_SpillingDoFn):
    def setup(self):
        super().setup()
        self.identity = load_playbook(self.config.playbook).identity

    def step(self, keyed):
        (dataset, bucket), segments = keyed
        name, writer, counts = f"dedup-{dataset}-{bucket:04d}", SpillWriter(self.work), Counter()
        result = deduplicate(read_spills(segments), dataset, self.config.timezone)
        unique = with_customer_nodes(result.unique, self.config)
        days = self.spill_links(writer, name, unique, dataset, counts)
        if dataset == "events":
            self.spill_buckets(writer, name, unique, (STITCH,), ["visit_id", "customer_id"])
        else:
            self.spill_by_node(writer, name, unique, "customer_node", ASSIGN_FEEDBACK)
        if result.duplicates.num_rows:
            duplicates = mask_identifier_columns(result.duplicates, ["record_id"], self.redaction)
            self.spill_rows(writer, name, finalise(duplicates, "duplicates", self.config, "dt"), "duplicates")
        self.spill_rejected(writer, name, result.conflicts)
        write_counts(self.work, name, counts)
        yield from writer.close()
        yield from (((DATES, dt), ("", ())) for dt in days)  # the day of a row, for the identity snapshot's day

    def spill_links(self, writer: SpillWriter, name: str, unique: pa.Table, dataset: str, counts: Counter) -> list[str]:
        """The identifier links of the rows inside the window to the identity graph; returns the rows' days."""
        dated = unique.append_column("dt", local_dates(unique.column(TIME_FIELDS[dataset]), self.config.timezone))
        if self.config.window_dates is not None:
            dated = dated.filter(pc.is_in(dated.column("dt"), pa.array(self.config.window_dates, pa.string())))
        links = row_links(dated, self.identity, self.config.identity_key_bytes, counts)
        links = links.append_column("current", pa.repeat(pa.scalar(True), links.num_rows))
        self.spill_by_node(writer, name, links, "node", IDENTITY_GUARD)
        return pc.unique(dated.column("dt")).to_pylist()


def with_customer_nodes(table: pa.Table, config: RunConfig) -> pa.Table:
    """`table` with `customer_node`: the identity graph node of each row's customer_id."""
    return table.append_column("customer_node", pa.array(customer_nodes(table.column("customer_id"), config.identity_key_bytes)))


class _StitchBucket(_SpillingDoFn):
    def step(self, keyed):
        (bucket,), segments = keyed
        name, writer, counts = f"stitch-{bucket:04d}", SpillWriter(self.work), Counter()
        events = with_visit_ends(stitch_visits(read_spills(segments), self.config.gap_minutes * 60, self.config.key_bytes))
        counts["events.visits"] += true_count(events.column("is_first_moment"))
        self.spill_by_node(writer, name, events, "customer_node", ASSIGN_EVENTS)  # a visit's rows may part here
        write_counts(self.work, name, counts)
        yield from writer.close()


def with_persons(table: pa.Table, persons: pa.Table) -> pa.Table:
    """`table` with person_id and person_node: the person of each row's customer node (from the identity graph), or
    for a customer id that links to nothing, a person of its own."""
    found = persons.join(pa.table({"node": table.column("customer_node")}).append_column(
        "row", pa.array(np.arange(table.num_rows))), "node", join_type="inner")
    person = np.empty(table.num_rows, dtype=object)
    own = table.column("customer_node").to_numpy()
    ids = person_ids(own).to_numpy(zero_copy_only=False)
    rows = found.column("row").to_numpy()
    ids[rows] = found.column("person_id").to_numpy(zero_copy_only=False)
    anchors = own.copy()
    anchors[rows] = nodes_of_person_ids(found.column("person_id"))
    return table.append_column("person_id", pa.array(ids, pa.string())).append_column("person_node", pa.array(anchors))


def nodes_of_person_ids(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The anchor node of each person id (`p_` + its hash)."""
    return nodes_of(pc.utf8_slice_codeunits(ids, 2))


class _AssignBucket(_SpillingDoFn):
    """One bucket of customer nodes: the person of every event and feedback row; events finished (redacted, tagged),
    their visit ends and the feedback sent on to LinkFeedback by person bucket."""

    def setup(self):
        super().setup()
        self.enrich = Enricher("events", self.config)

    def step(self, keyed):
        (bucket,), grouped = keyed
        name, writer, counts = f"assign-{bucket:04d}", SpillWriter(self.work), Counter()
        persons = read_spills(grouped["persons"]) or EMPTY_PERSONS.empty_table()
        events = read_spills(grouped["events"])
        if events is not None:
            events = with_persons(events, persons)
            self.spill_by_node(writer, name, visit_ends(events, PERSON_COLUMNS), "person_node", LINK_VISITS)
            self.spill_rows(writer, name, self.enrich(events, counts), "events")
        feedback = read_spills(grouped["feedback"])
        if feedback is not None:
            self.spill_by_node(writer, name, with_persons(feedback, persons), "person_node", LINK_FEEDBACK)
        write_counts(self.work, name, counts)
        yield from writer.close()


class _LinkBucket(_SpillingDoFn):
    def setup(self):
        super().setup()
        self.enrich = Enricher("feedback", self.config)

    def step(self, keyed):
        (bucket,), grouped = keyed
        feedback = read_spills(grouped["feedback"])
        if feedback is None:
            return
        name, writer, counts = f"link-{bucket:04d}", SpillWriter(self.work), Counter()
        visits = read_spills(grouped["visits"]) or EMPTY_VISITS.empty_table()
        linked = link_feedback(feedback, visits, self.config.link_window_days * 86400, by="person_id")
        for method, n in zip(*pc.value_counts(linked.column("link_method")).flatten()):
            counts[f"feedback.link.{method}"] += n.as_py()
        self.spill_rows(writer, name, self.enrich(linked, counts), "feedback")
        write_counts(self.work, name, counts)
        yield from writer.close()


class _WritePartition(_GroupStep):
    """Merge one partition's sorted spills into one Parquet file; rows outside the window are only counted."""

    def __init__(self, config: RunConfig, work: str, roots: dict[str, str], count_by: dict[str, list[str]]):
        self.config, self.work, self.roots, self.count_by = config, work, roots, count_by

    def step(self, keyed):
        (name, dt), segments = keyed
        chunks = merge_sorted(segments, SORT_KEYS[name])
        window = self.config.window_dates
        counts = Counter()
        if window is not None and dt not in window and dt != UNDATED:  # undated rows: in every window
            if name not in COPIES:
                for chunk in chunks:
                    counts += outside_window_counts(chunk, name)
        else:
            root = self.roots["restricted" if name in RESTRICTED_TABLES else "public"]
            write_partition(root, name, dt, self.counted(chunks, name, counts), self.config.row_group_rows)
            yield name, dt
        write_counts(self.work, f"write-{name}-{dt}", counts)

    def counted(self, chunks, name: str, counts: Counter):
        """The chunks, unchanged, adding their rows to `counts` (by the table's `count_by` columns)."""
        for chunk in chunks:
            counts.update(written_counts(chunk, name, self.count_by.get(name, [])))
            yield chunk


# --- composite transforms ---------------------------------------------------------------------------
SpillKeyed = typing.Tuple[typing.Tuple, typing.Tuple]  # a key of mixed parts: never let Beam infer a coder from one part


class Route(beam.PTransform):
    """(key, segment) pairs addressed to `stage` (the key's first part), with that part removed from the key."""

    def __init__(self, stage: str):
        super().__init__()
        self.stage = stage

    def expand(self, spills):
        stage = self.stage
        return (
            spills
            | f"Keep {stage}" >> beam.Filter(lambda spill: spill[0][0] == stage)
            | f"Key by {stage} key" >> beam.Map(lambda spill: (spill[0][1:], spill[1])).with_output_types(SpillKeyed)
        )


class ReadAndValidate(beam.PTransform):
    """(dataset, file index, path, formats.FilePart, source index or None) of the input files -> spills of valid rows by id bucket and of
    rejected rows."""

    def __init__(self, config: RunConfig, work: str, channels: frozenset[str]):
        super().__init__()
        self.config, self.work, self.channels = config, work, channels

    def expand(self, files):
        return (
            files
            | "Spread files" >> beam.Reshuffle()
            | "Parse and validate" >> beam.ParDo(_ReadFile(self.config, self.work, self.channels))
        )


class GroupSpills(beam.PTransform):
    """Spills addressed to `stage`, grouped by their key; each (key, segments) group goes to `step` (a DoFn)."""

    def __init__(self, stage: str, step: beam.DoFn):
        super().__init__()
        self.stage, self.step = stage, step

    def expand(self, spills):
        return (
            spills
            | f"Route to {self.stage}" >> Route(self.stage)
            | f"Group {self.stage} keys" >> beam.GroupByKey()
            | f"Process {self.stage} groups" >> beam.ParDo(self.step)
        )


class Deduplicate(GroupSpills):
    """Spills -> unique rows (by stitch or link bucket), exact duplicates and conflicting duplicates."""

    def __init__(self, config: RunConfig, work: str):
        super().__init__(DEDUP, _DeduplicateBucket(config, work))


class StitchVisits(GroupSpills):
    """Spills of unique events -> stitched events by customer node bucket (to AssignPersons).

    Events are keyed by a hash bucket of visit_id, or of customer_id when the event has no visit_id,
    so every visit, even one whose customer_id changes midway, is complete inside one group.
    """

    def __init__(self, config: RunConfig, work: str):
        super().__init__(STITCH, _StitchBucket(config, work))


class AssignPersons(beam.PTransform):
    """{events, feedback, persons: spills} by customer node bucket -> finished events by date; visit ends and
    feedback rows, with their person, by person bucket (to LinkFeedback)."""

    def __init__(self, config: RunConfig, work: str):
        super().__init__()
        self.config, self.work = config, work

    def expand(self, inputs):
        return (
            {"events": inputs["events"] | "Route events" >> Route(ASSIGN_EVENTS),
             "feedback": inputs["feedback"] | "Route feedback" >> Route(ASSIGN_FEEDBACK),
             "persons": inputs["persons"] | "Route persons" >> Route(ASSIGN_PERSONS)}
            | "Group customer node buckets" >> beam.CoGroupByKey()
            | "Assign, redact and tag events" >> beam.ParDo(_AssignBucket(self.config, self.work))
        )


class LinkFeedback(beam.PTransform):
    """{feedback: spills, visits: spills} -> finished feedback rows by date, linked to visits by person bucket."""

    def __init__(self, config: RunConfig, work: str):
        super().__init__()
        self.config, self.work = config, work

    def expand(self, inputs):
        return (
            {"feedback": inputs["feedback"] | "Route feedback" >> Route(LINK_FEEDBACK),
             "visits": inputs["visits"] | "Route visits" >> Route(LINK_VISITS)}
            | "Group person buckets" >> beam.CoGroupByKey()
            | "Link, redact and tag" >> beam.ParDo(_LinkBucket(self.config, self.work))
        )


class WritePartitions(GroupSpills):
    """Spills of finished rows -> one sorted Parquet file per (table, dt): `root/<table>/dt=<dt>/part-00000.parquet`.

    `roots` holds the run's staging directories ("public", "restricted"); pipeline.publish moves the
    files into place afterwards. Every producer spills its rows of a partition sorted by the table's
    SORT_KEYS; the writer merges those files, holding one small batch per file, so a partition of any size
    is written in bounded memory and the same input always gives the same bytes. Rows outside the run's
    window are only counted. Yields the (table, dt) partitions written.
    """

    def __init__(self, config: RunConfig, work: str, roots: dict[str, str], count_by: dict[str, list[str]]):
        super().__init__(WRITE, _WritePartition(config, work, roots, count_by))
