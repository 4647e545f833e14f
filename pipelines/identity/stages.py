"""Beam steps of the identity graph (docs/identity.md). Like pipelines/transforms.py, rows travel in spill files and
Beam groups only (key, segment) pairs; the work of each group is a function of pipelines/identity/graph.py.

    links of deduplicated rows + prior days' links -> Guard [identifier node bucket]
    -> rounds x (LargeStar [node bucket] -> SmallStar [larger node bucket]) -> Settle [node bucket]
    -> Finish [one group: the edges of unsettled nodes only] -> Resolve (side input: Finish's result)
    -> Persons [component bucket] -> Map [node bucket, with the previous identity_map snapshot]
Out: identity_links (per day), identity_map and identity_conflicts (snapshots at the run's last day), and per
customer node bucket the person of each linked customer id (AssignPersons in pipelines/transforms.py).
"""
from __future__ import annotations

from collections import Counter

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.config import RunConfig
from pipelines.dedup import node_buckets, split_by_ids
from pipelines.identity.graph import (both_ways, downward, finish, guard, large_star, persons,
                                      resolve, settle, small_star)
from pipelines.identity.identifiers import LINK_SCHEMA, hash_of, nodes_of
from pipelines.identity.settings import CUSTOMER_TYPE
from pipelines.output import PART_FILE
from pipelines.playbook import load_playbook
from pipelines.spill import MERGE_BATCH_ROWS, SpillWriter, read_spills, write_counts
from pipelines.storage import use_filesystem_options
from pipelines.transforms import (ASSIGN_PERSONS, DATES, SORT_KEYS, WRITE, Route, exit_without_final_collections, finalise,
                                  release_memory)
from pipelines.transforms import IDENTITY_GUARD as GUARD

SETTLE_EDGES, SETTLE_NODES, FINISH, FINISHED, RESOLVE, PERSONS = (
    "identity_settle_edges", "identity_settle_nodes", "identity_finish", "identity_finished", "identity_resolve",
    "identity_persons")
MAP_CURRENT, MAP_PREVIOUS = "identity_map_current", "identity_map_previous"
IDENTITY_TABLES = ("identity_links", "identity_map", "identity_conflicts")
GUARD_SCHEMA = LINK_SCHEMA.append(pa.field("current", pa.bool_()))  # current: a link of this run's rows


def star_stage(kind: str, round_no: int) -> str:
    return f"identity_{kind}_{round_no}"


def spill_by_node(writer: SpillWriter, name: str, table: pa.Table, column: str, stage: str, buckets: int) -> None:
    """Rows by the bucket of their node in `column`, addressed to (stage, bucket)."""
    for bucket, part in split_by_ids(table, node_buckets(table.column(column).to_numpy(), buckets)):
        writer.write((stage, bucket), name, part)


def spill_edges(writer: SpillWriter, name: str, a: np.ndarray, b: np.ndarray, stage: str, buckets: int) -> None:
    """Undirected edges oriented as the next stage reads them: a small-star gets (larger, smaller), any other
    step every node's neighbours (both ways); bucketed by the first node."""
    u, v = downward(a, b) if "_small_" in stage else both_ways(a, b)
    spill_by_node(writer, name, pa.table({"u": u, "v": v}), "u", stage, buckets)


def _edges(segments) -> tuple[np.ndarray, np.ndarray]:
    table = read_spills(segments)
    return (table.column("u").to_numpy(), table.column("v").to_numpy()) if table else (np.zeros(0, np.int64),) * 2


def prior_inputs(config: RunConfig) -> list[tuple[str, str]]:
    """("links", path) of every published identity_links partition outside a windowed run's window (the graph of a
    daily run is the whole history's), and ("map", path) of the newest identity_map snapshot up to its end (for
    `changed_on`). A run without a window builds its graph from its own rows only."""
    def partitions(table: str) -> list[tuple[str, str]]:
        pattern = FileSystems.join(config.out, table, "dt=*", PART_FILE)
        found = FileSystems.match([pattern])[0].metadata_list
        return sorted((meta.path.rsplit("dt=", 1)[1].split("/", 1)[0], meta.path) for meta in found)

    if config.window_dates is None:
        return []
    window = set(config.window_dates)
    links = [("links", path) for dt, path in partitions("identity_links") if dt not in window]
    maps = [path for dt, path in partitions("identity_map") if dt <= str(config.end)]
    return links + [("map", path) for path in maps[-1:]]


class _IdentityStep(beam.DoFn):
    """A step with the run's config, work directory and identity settings (read in setup)."""

    def __init__(self, config: RunConfig, work: str):
        self.config, self.work = config, work

    def setup(self):
        use_filesystem_options(self.config.filesystem_options)
        exit_without_final_collections()
        self.settings = load_playbook(self.config.playbook).identity

    def write(self, writer: SpillWriter, name: str, table: pa.Table, table_name: str, dt: str) -> None:
        """Rows of identity table `table_name` for partition `dt`, sorted, addressed to WritePartitions."""
        if table.num_rows:
            dated = table.append_column("dt", pa.repeat(pa.scalar(dt), table.num_rows))
            rows = finalise(dated, table_name, self.config, "dt").drop_columns(["dt"])
            writer.write((WRITE, table_name, dt), name, rows.sort_by([(k, "ascending") for k in SORT_KEYS[table_name]]),
                         MERGE_BATCH_ROWS)

    def process(self, element, *side):
        writer = SpillWriter(self.work)
        self.step(element, writer, *side)
        yield from writer.close()
        release_memory()


class _ReadPrior(_IdentityStep):
    """A published identity_links partition -> its links, to Guard; the previous identity_map -> to Map."""

    def step(self, element, writer: SpillWriter):
        kind, path = element
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            table = pq.read_table(handle)
        dt = path.rsplit("dt=", 1)[1].split("/", 1)[0]
        name = f"prior-{kind}-{dt}"
        if kind == "links":
            links = pa.table({"customer_node": nodes_of(table.column("customer_hash")),
                              "node": nodes_of(table.column("identifier_hash")),
                              "identifier_type": table.column("identifier_type"),
                              "dt": pa.repeat(pa.scalar(dt), table.num_rows),
                              "current": pa.repeat(pa.scalar(False), table.num_rows)}, schema=GUARD_SCHEMA)
            spill_by_node(writer, name, links, "node", GUARD, self.config.buckets)
        else:
            previous = pa.table({"node": nodes_of(table.column("identifier_hash")), "person_id": table.column("person_id"),
                                 "changed_on": table.column("changed_on")})
            spill_by_node(writer, name, previous, "node", MAP_PREVIOUS, self.config.buckets)


def _first_stage(rounds: int) -> str:
    return star_stage("large", 0) if rounds else SETTLE_EDGES


class _Guard(_IdentityStep):
    """One bucket of identifier nodes: this run's links to identity_links; links that may link to the first
    round, nodes to Settle, shared identifiers to identity_conflicts."""

    def step(self, keyed, writer: SpillWriter, as_of: str):
        (bucket,), segments = keyed
        name, counts = f"guard-{bucket:04d}", Counter()
        links = read_spills(segments)
        current = links.filter(links.column("current")).group_by(
            ["identifier_type", "node", "customer_node", "dt"], use_threads=False).aggregate([])
        for dt in sorted(set(current.column("dt").to_pylist())):
            day = current.filter(pc.equal(current.column("dt"), dt))
            self.write(writer, name, pa.table({"identifier_type": day.column("identifier_type"),
                                               "identifier_hash": hash_of(day.column("node").to_numpy()),
                                               "customer_hash": hash_of(day.column("customer_node").to_numpy())}),
                       "identity_links", dt)
        edges, nodes, conflicts = guard(links.drop_columns(["current"]), self.settings)
        counts["identity.shared_identifiers"] += conflicts.num_rows
        spill_edges(writer, name, edges.column("customer_node").to_numpy(), edges.column("node").to_numpy(),
                    _first_stage(self.settings.rounds), self.config.buckets)
        spill_by_node(writer, name, nodes, "node", SETTLE_NODES, self.config.buckets)
        self.write(writer, name, conflicts, "identity_conflicts", as_of)
        write_counts(self.work, name, counts)


class _Star(_IdentityStep):
    """One round's large-star or small-star over one bucket of nodes."""

    def __init__(self, config: RunConfig, work: str, stage: str, next_stage: str):
        super().__init__(config, work)
        self.stage, self.next_stage = stage, next_stage
        self.function = small_star if "_small_" in stage else large_star

    def step(self, keyed, writer: SpillWriter):
        (bucket,), segments = keyed
        a, b = self.function(*_edges(segments))
        spill_edges(writer, f"{self.stage}-{bucket:04d}", a, b, self.next_stage, self.config.buckets)


class _Settle(_IdentityStep):
    """One bucket of nodes: each node's label (with its type and first day) to Resolve, the edges of unsettled
    nodes to Finish."""

    def step(self, keyed, writer: SpillWriter):
        (bucket,), grouped = keyed
        name = f"settle-{bucket:04d}"
        nodes, labels, (left_u, left_v) = settle(*_edges(grouped["edges"]))
        info = read_spills(grouped["nodes"]).group_by(["node", "identifier_type"], use_threads=False).aggregate(
            [("first_seen", "min")]).rename_columns(["node", "identifier_type", "first_seen"])
        labelled = info.join(pa.table({"node": nodes, "component": labels}), "node", join_type="inner")
        writer.write((RESOLVE, bucket), name, labelled.select(["node", "identifier_type", "first_seen", "component"]))
        if len(left_u):
            writer.write((FINISH, 0), name, pa.table({"u": left_u, "v": left_v}))
        write_counts(self.work, name, Counter({"identity.unsettled_edges": len(left_u)}))


class _Finish(_IdentityStep):
    """The edges of all unsettled nodes (one group) -> (node, root) of their components."""

    def step(self, keyed, writer: SpillWriter):
        _, segments = keyed
        nodes, roots = finish(*_edges(segments))
        writer.write((FINISHED, 0), "finish", pa.table({"node": nodes, "root": roots}))


class _Resolve(_IdentityStep):
    """Labels of one segment -> final components (Finish's roots applied), to Persons by component bucket."""

    def step(self, spill, writer: SpillWriter, finished: list):
        _, segment = spill
        if getattr(self, "roots_of", None) != finished:  # the side input is the same for every element: read it once
            roots = read_spills([s for _, s in finished])
            self.roots_of = finished
            self.roots = (roots.column("node").to_numpy(), roots.column("root").to_numpy()) if roots else (np.zeros(0, np.int64),) * 2
        table = read_spills([segment])
        final = resolve(table.column("component").to_numpy(), *self.roots)
        table = table.set_column(table.schema.get_field_index("component"), "component", pa.array(final))
        name = f"resolve-{segment[0].rsplit('/', 1)[1].rsplit('.', 1)[0]}-{'-'.join(map(str, segment[1]))}"[:200]
        spill_by_node(writer, name, table, "component", PERSONS, self.config.buckets)


class _Persons(_IdentityStep):
    """One bucket of whole components -> persons: map rows to Map, customer persons to AssignPersons, capped
    components to identity_conflicts."""

    def step(self, keyed, writer: SpillWriter, as_of: str):
        (bucket,), segments = keyed
        name = f"persons-{bucket:04d}"
        mapped, conflicts = persons(read_spills(segments), self.settings)
        spill_by_node(writer, name, mapped, "node", MAP_CURRENT, self.config.buckets)
        customers = mapped.filter(pc.equal(mapped.column("identifier_type"), CUSTOMER_TYPE))
        spill_by_node(writer, name, customers.select(["node", "person_id"]), "node", ASSIGN_PERSONS, self.config.buckets)
        self.write(writer, name, conflicts, "identity_conflicts", as_of)
        write_counts(self.work, name, Counter({"identity.capped_persons": conflicts.num_rows,
                                               "identity.customers_with_identifiers": customers.num_rows}))


class _Map(_IdentityStep):
    """One bucket of nodes: identity_map rows, `changed_on` kept from the previous snapshot where the person is the
    same, else the snapshot's day."""

    def step(self, keyed, writer: SpillWriter, as_of: str):
        (bucket,), grouped = keyed
        current = read_spills(grouped["current"])
        if current is None:
            return
        previous = read_spills(grouped["previous"])
        if previous is None:
            previous = pa.table({"node": pa.array([], pa.int64()), "person_id": pa.array([], pa.string()),
                                 "changed_on": pa.array([], pa.string())})
        previous = previous.rename_columns(["node", "previous_person_id", "changed_on"])
        joined = current.join(previous, "node", join_type="left outer")
        same = pc.fill_null(pc.equal(joined.column("person_id"), joined.column("previous_person_id")), False)
        changed_on = pc.if_else(same, joined.column("changed_on"), pa.scalar(as_of))
        self.write(writer, f"map-{bucket:04d}", pa.table({
            "identifier_type": joined.column("identifier_type"), "identifier_hash": hash_of(joined.column("node").to_numpy()),
            "person_id": joined.column("person_id"), "first_seen": joined.column("first_seen"), "changed_on": changed_on}),
            "identity_map", as_of)


# --- composite -------------------------------------------------------------------------------------------------------
class IdentityGraph(beam.PTransform):
    """Spills of deduplicated rows' links (Guard) and their days (DATES) -> spills of identity tables (to
    WritePartitions) and of customer persons (to AssignPersons)."""

    def __init__(self, config: RunConfig, work: str, prior: list[tuple[str, str]], rounds: int):
        super().__init__()
        self.config, self.work, self.prior, self.rounds = config, work, prior, rounds

    def expand(self, spills):
        config, work = self.config, self.work
        prior = (spills.pipeline | "List prior identity" >> beam.Create(self.prior)
                 | "Read prior identity" >> beam.ParDo(_ReadPrior(config, work)))
        as_of = beam.pvalue.AsSingleton(
            spills | "Route dates" >> Route(DATES) | "Day of a row" >> beam.Map(lambda spill: spill[0][0])
            | "Snapshot day" >> beam.CombineGlobally(lambda days: str(config.end) if config.end else max(days, default=config.fallback_date)))
        links = (spills, prior) | "Links" >> beam.Flatten()
        guarded = links | "Route guard" >> Route(GUARD) | "Group guard" >> beam.GroupByKey() \
            | "Guard shared identifiers" >> beam.ParDo(_Guard(config, work), as_of)
        edges = guarded
        for number in range(self.rounds):
            large, small = star_stage("large", number), star_stage("small", number)
            after = star_stage("large", number + 1) if number + 1 < self.rounds else SETTLE_EDGES
            edges = (edges | f"Route {large}" >> Route(large) | f"Group {large}" >> beam.GroupByKey()
                     | f"Large star {number}" >> beam.ParDo(_Star(config, work, large, small)))
            edges = (edges | f"Route {small}" >> Route(small) | f"Group {small}" >> beam.GroupByKey()
                     | f"Small star {number}" >> beam.ParDo(_Star(config, work, small, after)))
        settled = ({"edges": edges | "Route settle edges" >> Route(SETTLE_EDGES),
                    "nodes": guarded | "Route settle nodes" >> Route(SETTLE_NODES)}
                   | "Group settle" >> beam.CoGroupByKey() | "Settle" >> beam.ParDo(_Settle(config, work)))
        finished = (settled | "Route finish" >> Route(FINISH) | "Group finish" >> beam.GroupByKey()
                    | "Finish" >> beam.ParDo(_Finish(config, work)))
        resolved = (settled | "Route resolve" >> Route(RESOLVE) | "Spread resolve" >> beam.Reshuffle()
                    | "Resolve" >> beam.ParDo(_Resolve(config, work), beam.pvalue.AsList(finished)))
        persons = (resolved | "Route persons" >> Route(PERSONS) | "Group persons" >> beam.GroupByKey()
                   | "Persons" >> beam.ParDo(_Persons(config, work), as_of))
        mapped = ({"current": persons | "Route map" >> Route(MAP_CURRENT),
                   "previous": prior | "Route previous map" >> Route(MAP_PREVIOUS)}
                  | "Group map" >> beam.CoGroupByKey() | "Map" >> beam.ParDo(_Map(config, work), as_of))
        return (guarded, persons, mapped) | "Identity spills" >> beam.Flatten()
