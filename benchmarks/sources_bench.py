"""A mapped native CSV source vs the same rows in contract form: read + validate time, in one process.

    .venv/bin/python -m benchmarks.sources_bench --rows 200000 --repeats 3

Writes N events twice into a temporary directory: as a contract CSV (`event_id,occurred_at,...`, ISO timestamps) and
as a native export of the same rows (semicolon-delimited, other column names, day-first timestamps without a zone,
channel codes that need a value map, waits in minutes, a template id from two columns, two leftover columns into
`attributes`). Then reads each with what `motpipe run` uses per file (`reader.read_validated` for the contract file,
`sources.reader.read_source` with a source file for the native one), alternating, and reports the best time of each
and the ratio. Both must give the same number of valid rows. Results: benchmarks/results/sources-<N>.json.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pipelines.ingest.contract import DEFAULT_CHANNELS
from pipelines.ingest.reader import read_validated
from pipelines.ingest.sources.reader import read_source
from pipelines.ingest.sources.spec import parse_source

CHANNELS = {"branch": "FIL", "phone": "TEL", "app": "APP", "web": "WEB"}
TOUCHPOINTS = ["greeting", "queue_ticket", "counter_service", "checkout", "complaint", "callback"]
SOURCE = """
dataset: events
paths: [unused]
format: {type: csv, delimiter: ";"}
timezone: UTC
fields:
  event_id: {template: "{ticket}-{seq}"}
  occurred_at: {column: when, format: "%d/%m/%Y %H:%M:%S"}
  customer_id: client
  visit_id: ticket
  channel: {column: canal, map: {FIL: branch, TEL: phone, APP: app, WEB: web}}
  touchpoint: step
  staff_id: agent
  wait_s: {column: wait_min, unit: min}
attributes: rest
"""


def write_inputs(directory: Path, rows: int, seed: int = 7) -> tuple[Path, Path]:
    rng = random.Random(seed)
    start = datetime(2026, 10, 1, tzinfo=timezone.utc)
    contract = ["event_id,occurred_at,customer_id,visit_id,channel,touchpoint,staff_id,wait_s,attributes"]
    native = ["ticket;seq;when;client;canal;step;agent;wait_min;branch_code;queue"]
    for i in range(rows):
        at = start + timedelta(seconds=rng.randrange(7 * 86400))
        ticket, seq, client = f"T{i // 4:07d}", i % 4, f"C{rng.randrange(rows // 8 + 1):06d}"
        channel, step, agent = rng.choice(list(CHANNELS)), rng.choice(TOUCHPOINTS), f"S{rng.randrange(200):03d}"
        wait, branch, queue = rng.randrange(0, 600) / 10, f"B{rng.randrange(50):02d}", rng.choice(["A", "B", "VIP"])
        attributes = json.dumps({"branch_code": branch, "queue": queue}).replace('"', '""')
        contract.append(f'{ticket}-{seq},{at.isoformat()},{client},{ticket},{channel},{step},{agent},{wait * 60:g},"{attributes}"')
        native.append(f"{ticket};{seq};{at:%d/%m/%Y %H:%M:%S};{client};{CHANNELS[channel]};{step};{agent};{wait:g};{branch};{queue}")
    paths = directory / "contract.csv", directory / "native.csv"
    for path, lines in zip(paths, (contract, native)):
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths


def read_contract(path: Path) -> int:
    return sum(v.num_rows for v, _ in read_validated(str(path), "events", frozenset(DEFAULT_CHANNELS), timezone.utc,
                                                     50_000, "2026-10-01"))


def read_mapped(path: Path) -> int:
    source = parse_source(SOURCE, "native.yaml")
    return sum(v.num_rows for v, _, _ in read_source(str(path), source, frozenset(DEFAULT_CHANNELS), timezone.utc,
                                                     50_000, "2026-10-01"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", default="benchmarks/results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        contract, native = write_inputs(Path(tmp), args.rows)
        times = {"contract": [], "mapped": []}
        counts = {}
        for _ in range(args.repeats):
            for name, read, path in (("contract", read_contract, contract), ("mapped", read_mapped, native)):
                began = time.perf_counter()
                counts[name] = read(path)
                times[name].append(time.perf_counter() - began)
    if counts["contract"] != counts["mapped"] or counts["mapped"] != args.rows:
        print(f"row counts differ: {counts}")
        return 1
    best = {name: min(values) for name, values in times.items()}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {"rows": args.rows, "repeats": args.repeats, "commit": commit, "seconds": times, "best": best,
              "ratio_mapped_to_contract": best["mapped"] / best["contract"], "valid_rows": counts}
    Path(args.results).mkdir(parents=True, exist_ok=True)
    Path(args.results, f"sources-{args.rows}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{args.rows:,} rows: contract CSV {best['contract']:.2f} s ({args.rows / best['contract']:,.0f} rows/s), "
          f"mapped native CSV {best['mapped']:.2f} s ({args.rows / best['mapped']:,.0f} rows/s): "
          f"{result['ratio_mapped_to_contract']:.2f}x (best of {args.repeats}, commit {commit})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
