"""Throughput of the tagging step with and without the learned layer, measured inside one run (docs/tagging.md).

`motpipe sample` writes `--events` touchpoint rows (and their feedback); the valid rows are read once with
`pipelines.ingest.reader.read_validated` into Arrow batches; then, `--repeats` times and alternating, a fresh
`Tagger` of the playbook with the learned layer off (the rules alone, as before) and on (every dimension model
of the package) tags every events batch (`tag_events`) and every feedback batch (`tag_feedback`). The best time
of each is kept; times are CPU seconds of the process (the machine is shared: wall times are recorded too,
but another job's load moves them by tens of percent); the result is written as JSON.

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
    """CPU seconds of this process (what the tagging costs, whatever else runs on the machine) and wall seconds."""
    out, clocks = {}, (("cpu", time.process_time), ("wall", time.perf_counter))
    marks = {name: clock() for name, clock in clocks}

    def lap(step: str) -> None:
        for name, clock in clocks:
            now = clock()
            out[f"{step}_{name}_s"] = round(now - marks[name], 3)
            marks[name] = now

    tagger = Tagger(playbook)
    lap("setup")
    for batch in events:
        tagger.tag_events(batch)
    lap("events")
    for batch in feedback:
        tagger.tag_feedback(batch)
    lap("feedback")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--playbook", default="bank_branch")
    parser.add_argument("--repeats", type=int, default=3)
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
    best = {k: min(v, key=lambda r: r["events_cpu_s"] + r["feedback_cpu_s"]) for k, v in runs.items()}
    rows = sum(b.num_rows for b in events)
    result = {
        "events_generated": args.events, "event_rows_tagged": rows, "feedback_rows_tagged": sum(b.num_rows for b in feedback),
        "playbook": book.ref, "models": models, "repeats": runs, "best_by_cpu": best,
        "events_rows_per_cpu_s": {k: round(rows / v["events_cpu_s"]) for k, v in best.items()},
        "slowdown_events_cpu": round(best["rules+model"]["events_cpu_s"] / best["rules"]["events_cpu_s"], 3),
        "slowdown_feedback_cpu": round(best["rules+model"]["feedback_cpu_s"] / best["rules"]["feedback_cpu_s"], 3),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
