"""Throughput of PII redaction (`mask_column`) now vs at another git revision, in one process.

    .venv/bin/python -m benchmarks.pii_redaction --rows 100000 --against main

Columns: `text` and `attributes` (as JSON), and the identifier columns (masked since issue 16, so timed
without a comparison) of a generated sample (`motpipe sample`, 60 % of events have
a text, about 1 in 8 of those with a phone, e-mail, ID or card number), and, where ../shared is present,
real texts (the en_train and threads texts, cycled to the same number of rows). Each timing is the best of
`--repeat` runs, the two versions interleaved so that machine noise hits both alike.
"""
from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from itertools import cycle, islice
from pathlib import Path

import pyarrow as pa

from pipelines import pii
from pipelines.transforms import IDENTIFIER_COLUMNS
from pipelines.sample import generate_sample

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def module_at(revision: str):
    """pipelines/pii.py as it was at `revision`, imported as a separate module."""
    source = subprocess.run(["git", "show", f"{revision}:pipelines/pii.py"], check=True, capture_output=True,
                            text=True, cwd=Path(__file__).resolve().parents[1]).stdout
    path = Path(tempfile.mkdtemp()) / "pii_at_revision.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("pii_at_revision", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def sample_columns(rows: int) -> dict[str, pa.Array]:
    with tempfile.TemporaryDirectory() as out:
        generate_sample(Path(out), rows, feedback_ratio=0.0)
        records = []
        for name in ("touchpoints/part-00000.jsonl.gz", "touchpoints/part-00001.jsonl"):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(Path(out) / name, "rt", encoding="utf-8") as f:
                for line in f:
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError:
                        continue
    records = [r for r in records if isinstance(r, dict)]
    records = list(islice(cycle(records), rows))
    attributes = [json.dumps(r.get("attributes"), ensure_ascii=False) if r.get("attributes") else None for r in records]
    ids = {c: pa.array([r.get(c) if isinstance(r.get(c), str) else None for r in records], pa.string())
           for c in dict.fromkeys([*IDENTIFIER_COLUMNS["events"], "customer_id"])}
    return {"sample text": pa.array([r.get("text") if isinstance(r.get("text"), str) else None for r in records]),
            "sample attributes": pa.array(attributes, pa.string())}, ids


def real_texts(rows: int) -> pa.Array | None:
    files = [SHARED / "text" / "en_train.jsonl", SHARED / "dialogues" / "threads.jsonl"]
    if not all(f.is_file() for f in files):
        return None
    texts = [json.loads(line)["text"] for f in files for line in f.open(encoding="utf-8")]
    return pa.array(list(islice(cycle([t for t in texts if t]), rows)))


def best_of(function, values, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function(values)
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--against", default="main", help="git revision to compare with")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    old = module_at(args.against)
    columns, ids = sample_columns(args.rows)
    real = real_texts(args.rows)
    if real is not None:
        columns["real texts (en_train, threads)"] = real
    print(f"{args.rows:,} rows; best of {args.repeat}; seconds now vs {args.against}")
    for name, values in columns.items():
        now_s = then_s = float("inf")
        for _ in range(args.repeat):
            then_s = min(then_s, best_of(old.mask_column, values, 1))
            now_s = min(now_s, best_of(pii.mask_column, values, 1))
        print(f"{name:32s} now {now_s:6.2f} s   {args.against} {then_s:6.2f} s   ratio {now_s / then_s:5.2f}x")
    redaction = pii.Redaction(identifier_key=b"k")
    seconds = min(best_of(lambda _: [redaction.identifiers(v) for v in ids.values()], None, 1) for _ in range(args.repeat))
    print(f"{'sample identifier columns':32s} now {seconds:6.2f} s   (new step: {', '.join(ids)}; "
          f"customer_id too without a key)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
