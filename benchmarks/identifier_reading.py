"""Reading rows that carry identifiers: the vectorised reader vs the per-row reference reader, in one process.

    .venv/bin/python -m benchmarks.identifier_reading --rows 300000 --repeats 3

Generates N events of the production shape with `motpipe sample --cross-channel-share 1.0` (seed 7), then writes
the same rows four times: JSON Lines and CSV, each once with no identifiers and once with an `identifiers` object
(CSV: `identifier.device_id`, `identifier.phone` columns) on every row (a device id and a phone number per
customer). Each file is read with `reader.read_validated` (what a run uses) and `reader.read_validated_reference`
(the per-row path, which every row with identifiers took before the vectorised reader learnt them), alternating;
the best time of each, the ratios, and the number of valid rows (equal on both paths) are reported.
Results: benchmarks/results/identifier-reading-<N>.json.
"""
from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from datetime import timezone
from pathlib import Path

from benchmarks.bench import git_commit
from pipelines.ingest.contract import DEFAULT_CHANNELS
from pipelines.ingest.reader import read_validated, read_validated_reference
from pipelines.sample import generate_sample

CSV_FIELDS = ["event_id", "occurred_at", "customer_id", "visit_id", "channel", "touchpoint", "staff_id", "location_id",
              "duration_s", "wait_s", "text", "outcome"]
IDENTIFIER_TYPES = ["device_id", "phone"]


def with_identifiers(row: dict) -> dict:
    """The row with a device id and a phone number derived from its customer (rows that are not objects as they are)."""
    number = sum(map(ord, str(row.get("customer_id"))))
    return {**row, "identifiers": {"device_id": f"d-{number % 50_000:05d}", "phone": f"+86 137 {number % 9_000:04d} 0800"}}


def write_inputs(directory: Path, rows: int) -> dict[str, Path]:
    """The four files (see the module's docstring) from one generated sample; bad lines are kept as they are."""
    generate_sample(directory / "sample", rows, shape="production", cross_channel_share=1.0)
    decoded = []
    for line in (directory / "sample" / "touchpoints" / "events.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            value = line
        decoded.append(value if isinstance(value, dict) else line)
    plain = [{k: v for k, v in r.items() if k != "identifiers"} if isinstance(r, dict) else r for r in decoded]
    paths = {}
    for name, records in (("none", plain), ("every row", [with_identifiers(r) if isinstance(r, dict) else r
                                                          for r in plain])):
        jsonl = directory / f"{name.replace(' ', '_')}.jsonl"
        jsonl.write_text("".join((json.dumps(r, ensure_ascii=False) if isinstance(r, dict) else r) + "\n"
                                 for r in records), encoding="utf-8")
        table = directory / f"{name.replace(' ', '_')}.csv"
        ids = [f"identifier.{t}" for t in IDENTIFIER_TYPES] if name == "every row" else []
        with table.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_FIELDS + ids)
            for r in (r for r in records if isinstance(r, dict)):
                writer.writerow([r.get(f, "") for f in CSV_FIELDS] + [r["identifiers"][t] for t in IDENTIFIER_TYPES if ids])
        paths[f"jsonl, {name}"], paths[f"csv, {name}"] = jsonl, table
    return paths


def read(read_function, path: Path) -> int:
    return sum(v.num_rows for v, _ in read_function(str(path), "events", frozenset(DEFAULT_CHANNELS), timezone.utc,
                                                    50_000, "2026-10-01"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", default="benchmarks/results")
    args = parser.parse_args(argv)
    paths_of = {"vectorised": read_validated, "reference": read_validated_reference}
    times: dict[str, dict[str, list[float]]] = {}
    valid: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_inputs(Path(tmp), args.rows)
        for _ in range(args.repeats):
            for name, path in paths.items():
                for reader_name, read_function in paths_of.items():
                    began = time.perf_counter()
                    valid.setdefault(name, {})[reader_name] = read(read_function, path)
                    times.setdefault(name, {}).setdefault(reader_name, []).append(time.perf_counter() - began)
    if any(len(set(counts.values())) != 1 for counts in valid.values()):
        print(f"valid rows differ between the readers: {valid}")
        return 1
    best = {name: {r: min(t) for r, t in by_reader.items()} for name, by_reader in times.items()}
    commit = git_commit()
    result = {"rows": args.rows, "repeats": args.repeats, "commit": commit, "seconds": times, "best": best,
              "valid_rows": {name: counts["vectorised"] for name, counts in valid.items()}}
    Path(args.results).mkdir(parents=True, exist_ok=True)
    Path(args.results, f"identifier-reading-{args.rows}.json").write_text(json.dumps(result, indent=2) + "\n",
                                                                          encoding="utf-8")
    for name, by_reader in best.items():
        print(f"{name:<20} vectorised {by_reader['vectorised']:6.2f} s ({args.rows / by_reader['vectorised']:>9,.0f} "
              f"rows/s)   reference {by_reader['reference']:6.2f} s   {by_reader['reference'] / by_reader['vectorised']:.1f}x")
    for fmt in ("jsonl", "csv"):
        print(f"{fmt}: identifiers on every row cost {best[f'{fmt}, every row']['vectorised'] / best[f'{fmt}, none']['vectorised']:.2f}x "
              f"the read of the same rows without them (best of {args.repeats}, commit {commit})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
