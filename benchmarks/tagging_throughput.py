"""Throughput of the tagging step with and without the learned layer, measured inside one run (docs/tagging.md).

`motpipe sample` writes `--events` touchpoint rows (and their feedback); the valid rows are read once with
`pipelines.ingest.reader.read_validated` into Arrow batches; then, `--repeats` times and alternating, a fresh
`Tagger` of the playbook with the learned layer off (the rules alone, as before) and on (every dimension model
of the package) tags every events batch (`tag_events`) and every feedback batch (`tag_feedback`). The best time
of each is kept (the machine is shared); the result is written as JSON.

    .venv/bin/python -m benchmarks.tagging_throughput --events 1000000 --out benchmarks/results/tagging-throughput.json
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from pipelines.playbook import ModelSettings, load_playbook
from pipelines.sample import generate_sample
from pipelines.tagging import Tagger
from pipelines.tagging.learned import load_models


def _batches(directory: Path, dataset: str, playbook) -> list:
    from pipelines.ingest.reader import read_validated

    folder = "touchpoints" if dataset == "events" else "feedback"
    return [valid for path in sorted((directory / folder).iterdir())
            for valid, _ in read_validated(str(path), dataset, playbook.allowed_channels, ZoneInfo("UTC"), 50_000,
                                           "2026-10-01")]


def _time(playbook, events: list, feedback: list) -> dict:
    start = time.perf_counter()
    tagger = Tagger(playbook)
    setup = time.perf_counter() - start
    start = time.perf_counter()
    for batch in events:
        tagger.tag_events(batch)
    tagged_events = time.perf_counter() - start
    start = time.perf_counter()
    for batch in feedback:
        tagger.tag_feedback(batch)
    return {"setup_s": round(setup, 3), "events_s": round(tagged_events, 3),
            "feedback_s": round(time.perf_counter() - start, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--playbook", default="bank_branch")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    book = load_playbook(args.playbook)
    rules_only = book.model_copy(update={"model": ModelSettings()})
    on = book.model.model_copy(update={"dimensions": book.model.dimensions.model_copy(update={"enabled": True})})
    with_model = book.model_copy(update={"model": on})
    models = sorted(load_models(with_model, "dimensions"))
    with tempfile.TemporaryDirectory() as tmp:
        generate_sample(Path(tmp), args.events, playbook=args.playbook)
        events, feedback = _batches(Path(tmp), "events", book), _batches(Path(tmp), "feedback", book)
    runs: dict[str, list] = {"rules": [], "rules+model": []}
    for _ in range(args.repeats):
        runs["rules"].append(_time(rules_only, events, feedback))
        runs["rules+model"].append(_time(with_model, events, feedback))
    best = {k: min(v, key=lambda r: r["events_s"] + r["feedback_s"]) for k, v in runs.items()}
    rows = sum(b.num_rows for b in events)
    result = {
        "events_generated": args.events, "event_rows_tagged": rows, "feedback_rows_tagged": sum(b.num_rows for b in feedback),
        "playbook": book.ref, "models": models, "repeats": runs, "best": best,
        "events_rows_per_s": {k: round(rows / v["events_s"]) for k, v in best.items()},
        "slowdown_events": round(best["rules+model"]["events_s"] / best["rules"]["events_s"], 3),
        "slowdown_feedback": round(best["rules+model"]["feedback_s"] / best["rules"]["feedback_s"], 3),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
