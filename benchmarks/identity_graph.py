"""Benchmark of the identity graph step (pipelines/identity/stages.py IdentityGraph) at N events.

    .venv/bin/python -m benchmarks.identity_graph --events 10000000            # results/identity-<date>-<N>.json

The input is what the Deduplicate step hands the graph for N events with several identifiers each, generated with
numpy (the read, validation and hashing of the events are benchmarked by benchmarks/bench.py, not here): persons of 1-3
customer ids (one per channel system, weights 5:3:2), 5 events per customer id, every event naming 3 identifiers (the
person's phone, the person's account number, the customer id's own device), and 1% of the customer ids also showing
one of the shared lobby tablets (40 customer ids each, so every one must be refused). So the graph gets 3 links per event (about 3.03 N link rows, duplicates included, as
the dedup buckets emit them). The graph runs in a subprocess on the DirectRunner (2 worker processes, as `motpipe run`)
and writes identity_links, identity_map and identity_conflicts; the table gives its wall time and the peak resident
memory of its process tree (sampled every 0.2 s). Afterwards the persons in identity_map are checked against the
generator's truth: every person's customer ids share one person_id, no two persons share one, every tablet is
reported as shared.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.bench import git_commit, machine, measure
from pipelines.dedup import node_buckets, split_by_ids
from pipelines.identity.identifiers import LINK_SCHEMA, nodes_of
from pipelines.pipeline import auto_buckets
from pipelines.spill import SpillWriter

EVENTS_PER_CUSTOMER = 5
CUSTOMERS_PER_TABLET = 40  # a shared tablet is seen with dozens of customer ids (max_customers of device_id: 5)
CHUNK_CUSTOMERS = 200_000
EVENT_BYTES = 300  # input bytes per event of the production shape (`motpipe sample --shape production`)
DAY = "2026-10-01"
RESULTS = Path(__file__).parent / "results"


def truth(events: int, seed: int = 18) -> dict[str, np.ndarray]:
    """Customer nodes, each one's person, phone, account and device nodes, and its tablet (-1: none)."""
    rng = np.random.default_rng(seed)
    customers = max(1, events // EVENTS_PER_CUSTOMER)
    sizes = rng.choice([1, 2, 3], size=customers, p=[0.5, 0.3, 0.2])
    person = np.repeat(np.arange(customers), sizes)[:customers]  # customer -> person (persons of 1-3 customer ids)
    persons = int(person.max()) + 1
    has_tablet = rng.random(customers) < 0.01
    tablets = max(1, int(has_tablet.sum()) // CUSTOMERS_PER_TABLET)
    nodes = rng.integers(-2**63, 2**63 - 1, size=2 * customers + 2 * persons + tablets, dtype=np.int64)
    customer, phone, account, device, tablet = np.split(nodes, np.cumsum([customers, persons, persons, customers]))
    return {"customer": customer, "person": person, "phone": phone[person], "account": account[person],
            "device": device, "tablet": np.where(has_tablet, rng.integers(0, tablets, customers), -1),
            "tablet_nodes": tablet}


def write_links(data: dict[str, np.ndarray], work: Path, buckets: int) -> tuple[list, int]:
    """Link rows of every event (EVENTS_PER_CUSTOMER per customer id), spilled by identifier bucket to the graph's
    Guard stage as the Deduplicate step does; returns the (key, segment) pairs and the number of link rows."""
    pairs, rows = [], 0
    for start in range(0, len(data["customer"]), CHUNK_CUSTOMERS):
        part = slice(start, start + CHUNK_CUSTOMERS)
        customer = np.repeat(data["customer"][part], EVENTS_PER_CUSTOMER)
        columns = [("phone", np.repeat(data["phone"][part], EVENTS_PER_CUSTOMER)),
                   ("account_id", np.repeat(data["account"][part], EVENTS_PER_CUSTOMER)),
                   ("device_id", np.repeat(data["device"][part], EVENTS_PER_CUSTOMER))]
        tablet = data["tablet"][part]
        shown = np.flatnonzero(tablet >= 0)
        tables = [pa.table({"customer_node": customer, "node": nodes, "identifier_type": pa.repeat(kind, len(nodes)),
                            "dt": pa.repeat(DAY, len(nodes)), "current": pa.repeat(True, len(nodes))})
                  for kind, nodes in columns]
        tables.append(pa.table({"customer_node": data["customer"][part][shown],
                                "node": data["tablet_nodes"][tablet[shown]],
                                "identifier_type": pa.repeat("device_id", len(shown)),
                                "dt": pa.repeat(DAY, len(shown)), "current": pa.repeat(True, len(shown))}))
        links = pa.concat_tables(tables).cast(LINK_SCHEMA.append(pa.field("current", pa.bool_())))
        rows += links.num_rows
        writer = SpillWriter(str(work))
        for bucket, rows_of_bucket in split_by_ids(links, node_buckets(links.column("node").to_numpy(), buckets)):
            writer.write(("identity_guard", bucket), f"bench-{start:09d}", rows_of_bucket)
        pairs += writer.close()
    return pairs, rows


def run_graph(work: Path, out: Path, buckets: int) -> None:
    """The graph step alone, as `motpipe run` builds it (child process of the benchmark)."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.config import RunConfig
    from pipelines.identity.stages import IdentityGraph
    from pipelines.playbook import load_playbook
    from pipelines.runners import local_runner
    from pipelines.standby import direct_worker_args
    from pipelines.transforms import WritePartitions

    pairs = [(tuple(key), (path, tuple(indices))) for key, (path, indices) in json.loads((work / "pairs.json").read_text())]
    config = RunConfig(touchpoints=["unused"], out=str(out), start=DAY, end=DAY, lookback_days=0, buckets=buckets,
                       run_id="bench-identity")
    roots = {"public": str(out), "restricted": str(out / "_restricted")}
    options = PipelineOptions(direct_worker_args([], 1 << 30))
    with beam.Pipeline(runner=local_runner(options), options=options) as p:
        (p | "Spills" >> beam.Create(pairs)
         | "Identity graph" >> IdentityGraph(config, str(work), [], load_playbook(config.playbook).identity.rounds)
         | "Write" >> WritePartitions(config, str(work), roots, {}))


def check(data: dict[str, np.ndarray], out: Path) -> dict:
    """Persons in the written identity_map against the generator's truth."""
    snapshot = pq.read_table(out / "identity_map" / f"dt={DAY}" / "part-00000.parquet",
                             columns=["identifier_type", "identifier_hash", "person_id"])
    customers = snapshot.filter(pa.compute.equal(snapshot.column("identifier_type"), "customer_id"))
    node = nodes_of(customers.column("identifier_hash"))
    person_id = customers.column("person_id").to_numpy(zero_copy_only=False)
    order = np.argsort(data["customer"])
    index = order[np.searchsorted(data["customer"], node, sorter=order)]
    assert np.array_equal(data["customer"][index], node)
    true_person = data["person"][index]
    pairs = np.unique(np.stack([true_person, np.unique(person_id, return_inverse=True)[1]]), axis=1)
    conflicts = pq.read_table(out / "identity_conflicts" / f"dt={DAY}" / "part-00000.parquet")
    return {"customer_ids_mapped": len(node), "customer_ids": len(data["customer"]),
            "persons_true": int(data["person"].max()) + 1, "persons_found": len(set(person_id)),
            "wrong_assignments": int(pairs.shape[1] - len(np.unique(pairs[0]))) + int(pairs.shape[1] - len(np.unique(pairs[1]))),
            "shared_identifiers_reported": conflicts.num_rows,
            "tablets": int(len(np.unique(data["tablet"][data["tablet"] >= 0])))}


def unsettled_by_rounds(data: dict[str, np.ndarray], most: int = 4) -> dict[int, int]:
    """Edges that `settle` leaves to the one Finish group after 0..`most` rounds, on the benchmark graph (one
    process, the same functions as the pipeline's stages; duplicate links removed first)."""
    from pipelines.identity.graph import both_ways, downward, large_star, settle, small_star
    a = np.r_[data["customer"], data["customer"], data["customer"]]
    b = np.r_[data["phone"], data["account"], data["device"]]  # the tablets are refused by the guard
    left = {}
    for rounds in range(most + 1):
        u, v = a, b
        for _ in range(rounds):
            u, v = large_star(*both_ways(u, v))
            u, v = small_star(*downward(u, v))
        left[rounds] = len(settle(*both_ways(u, v))[2][0])
    return left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--buckets", type=int, help="hash buckets [default: as motpipe run for that many events]")
    parser.add_argument("--work", type=Path, help="working directory [default: a temporary one, deleted]")
    parser.add_argument("--rounds-only", action="store_true",
                        help="only count the edges left unsettled after 0-4 rounds (in this process, no Beam)")
    parser.add_argument("--run-graph", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.run_graph:
        run_graph(args.run_graph / "work", args.run_graph / "out", args.buckets)
        return 0
    if args.rounds_only:
        print(json.dumps({"events": args.events, "unsettled_edges_after_rounds": unsettled_by_rounds(truth(args.events))}))
        return 0
    buckets = args.buckets or auto_buckets(args.events * EVENT_BYTES)  # as a run of that many events would choose
    root = args.work or Path(tempfile.mkdtemp(prefix="motpipe-identity-bench-"))
    try:
        (root / "work").mkdir(parents=True, exist_ok=True)
        data = truth(args.events)
        pairs, link_rows = write_links(data, root / "work", buckets)
        (root / "work" / "pairs.json").write_text(json.dumps(pairs))
        print(f"{args.events:,} events: {link_rows:,} link rows, {len(data['customer']):,} customer ids, "
              f"{buckets} buckets; running the graph step ...", flush=True)
        figures = measure([sys.executable, "-m", "benchmarks.identity_graph", "--run-graph", str(root),
                           "--buckets", str(buckets)], root / "graph.log")
        if figures["exit_code"]:
            print((root / "graph.log").read_text()[-3000:])
            return 1
        result = {"date": date.today().isoformat(), "commit": git_commit(), "machine": machine(),
                  "events": args.events, "link_rows": link_rows, "buckets": buckets, "graph": figures,
                  "check": check(data, root / "out"),
                  "unsettled_edges": _count(root / "work", "identity.unsettled_edges")}
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"identity-{result['date']}-{args.events}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        print(f"-> {path}")
        return 0 if result["check"]["wrong_assignments"] == 0 else 1
    finally:
        if args.work is None:
            shutil.rmtree(root, ignore_errors=True)


def _count(work: Path, name: str) -> int:
    from pipelines.spill import read_counts
    return read_counts(str(work)).get(name, 0)


if __name__ == "__main__":
    sys.exit(main())
