"""Sum a py-spy profile of `motpipe run` by pipeline stage.

    .venv/bin/py-spy record --subprocesses --rate 50 --format raw -o profile.txt -- \\
        .venv/bin/motpipe run -t 'IN/touchpoints/*' -f 'IN/feedback/*' --out OUT --no-check
    .venv/bin/python -m benchmarks.profile_stages profile.txt

Each sampled stack is given to the innermost frame that names a stage (checked from the leaf up), so time spent
in json, pyarrow or hashlib under `read_validated` counts as reading. Stacks with no motpipe stage are Beam's own
work (the DirectRunner's data channels and grouping buffers, i.e. the shuffles), imports, or other.
"""
from __future__ import annotations

import sys
from collections import Counter

STAGES = [
    ("quality checkpoint", ["pipelines/quality/"]),
    ("read + parse + validate", ["read_validated (pipelines/ingest/reader.py", "_read_jsonl", "_read_csv",
                                 "(pipelines/ingest/validate.py", "(pipelines/ingest/vectorised.py",
                                 "content_hash"]),
    ("dedup", ["deduplicate (pipelines/dedup.py"]),
    ("bucketing for the shuffles (split_by_bucket)", ["split_by_bucket"]),
    ("stitch visits + link feedback", ["(pipelines/stitch.py"]),
    ("redact PII", ["redact (pipelines/transforms.py", "(pipelines/pii.py"]),
    ("tag", ["(pipelines/tagging/"]),
    ("finalise (schema cast, dt)", ["finalise (pipelines/transforms.py"]),
    ("write Parquet (window, split by date, sort, write)", ["_WriteDate", "write_partition", "split_by_date", "keep_window",
                                                           "count_rows"]),
    ("publish + run record", ["publish (pipelines/output.py", "write_run_record"]),
    ("prepare (input checksums, run id)", ["prepare (pipelines/pipeline.py"]),
    ("Beam coders / pickling", ["apache_beam/coders/", "pickle", "Pickler", "dill"]),
]


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, markers in STAGES:
            if any(marker in frame for marker in markers):
                return name
    if any("_find_and_load" in f for f in frames):
        return "imports / startup"
    if any("apache_beam" in f for f in frames):
        return "Beam runner: data channels, grouping buffers (shuffles)"
    return "other (threads, interpreter)"


def summarise(path: str) -> list[tuple[str, int, float]]:
    totals: Counter[str] = Counter()
    for line in open(path, encoding="utf-8"):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack:
            totals[stage_of(stack.split(";"))] += int(count)
    n = sum(totals.values()) or 1
    return [(name, count, count / n) for name, count in totals.most_common()]


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    rows = summarise(args[0])
    for name, count, share in rows:
        print(f"{share:6.1%}  {count:7,d}  {name}")
    print(f"{sum(c for _, c, _ in rows):,} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
