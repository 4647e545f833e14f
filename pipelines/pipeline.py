"""Construction and execution of the motpipe batch pipeline, and the run summary.

    >>> summary = run(RunConfig(touchpoints=["data/events/*.jsonl.gz"], out="out"))   # doctest: +SKIP
    >>> summary["events"]["reconciled"]                                               # doctest: +SKIP
    True
"""
from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone
from operator import itemgetter

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.config import RunConfig
from pipelines.contract import DATASETS
from pipelines.io import InputFile, match_inputs
from pipelines.playbook import load_playbook
from pipelines.transforms import (
    NAMESPACE,
    Deduplicate,
    Enrich,
    ReadAndValidate,
    LinkFeedback,
    StitchVisits,
    WritePartitioned,
    finalise,
    quarantine_tables,
)

SORT_KEYS = {
    "events": ["occurred_at", "event_id"],
    "feedback": ["submitted_at", "feedback_id"],
    "quarantine": ["dataset", "source_file", "line_no"],
    "quarantine_raw": ["dataset", "source_file", "line_no"],
    "duplicates": ["dataset", "source_file", "line_no"],
}


class ReconciliationError(RuntimeError):
    """Input rows != output + duplicates + quarantine: a bug, never a data problem."""


def build_pipeline(p: beam.Pipeline, config: RunConfig, inputs: dict[str, list[InputFile]]) -> None:
    channels = load_playbook(config.playbook).allowed_channels
    unique, rejected, duplicates = {}, [], []
    for dataset in DATASETS:
        paths = [f.path for f in inputs[dataset]]
        if not paths:
            unique[dataset] = p | f"No {dataset}" >> beam.Create([])
            continue
        read = p | f"Read {dataset}" >> ReadAndValidate(dataset, paths, config, channels)
        deduplicated = read.valid | f"Deduplicate {dataset}" >> Deduplicate(dataset, config)
        unique[dataset] = deduplicated.unique
        rejected += [read.rejected, deduplicated.conflicts]
        duplicates.append(deduplicated.duplicates)

    stitched = unique["events"] | "Stitch visits" >> StitchVisits(config)
    linked = {"visits": stitched.visits, "feedback": unique["feedback"]} | "Link feedback" >> LinkFeedback(config)
    tables = {
        "events": stitched.events | "Enrich events" >> Enrich("events", config),
        "feedback": linked | "Enrich feedback" >> Enrich("feedback", config),
    }
    quarantine = (
        rejected | "All rejected" >> beam.Flatten() | "Mask quarantine" >> beam.Map(quarantine_tables, config)
    )
    tables["quarantine"] = quarantine | "Analyst quarantine" >> beam.Map(itemgetter(0))
    restricted = quarantine | "Restricted quarantine" >> beam.Map(itemgetter(1))
    tables["duplicates"] = (
        duplicates
        | "All duplicates" >> beam.Flatten()
        | "Finalise duplicates" >> beam.Map(finalise, "duplicates", config, "dt")
    )
    count_by = {"quarantine": ["dataset", "error_kind"], "duplicates": ["dataset"]}
    for name, pcoll in tables.items():
        pcoll | f"Write {name}" >> WritePartitioned(config.out, name, SORT_KEYS[name], config, count_by.get(name, ()))
    restricted | "Write quarantine_raw" >> WritePartitioned(
        config.restricted_dir, "quarantine_raw", SORT_KEYS["quarantine_raw"], config
    )


def counters(result) -> dict[str, int]:
    """All motpipe counters of a finished run, summed over steps (committed values where the runner has them)."""
    totals: dict[str, int] = defaultdict(int)
    for metric in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        value = metric.committed if metric.committed is not None else metric.attempted
        totals[metric.key.metric.name] += value or 0
    return dict(totals)


def summarise(config: RunConfig, inputs: dict[str, list[InputFile]], counts: dict[str, int], started_at: datetime) -> dict:
    """The run summary: inputs, counts per dataset with the reconciliation, and where the outputs are."""
    summary = {
        "run_id": config.run_id,
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "settings": config.model_dump(exclude={"pseudonymize_key", "touchpoints", "feedback"})
        | {"pseudonymized": config.pseudonymize_key is not None},
        "inputs": {d: [{"path": f.path, "size_bytes": f.size_bytes} for f in inputs[d]] for d in DATASETS},
    }
    for dataset in DATASETS:
        by_kind = {
            name.split(".", 2)[2]: n for name, n in sorted(counts.items()) if name.startswith(f"quarantine.{dataset}.")
        }
        stats = {
            "input_rows": counts.get(f"{dataset}.input_rows", 0),
            "output_rows": counts.get(f"{dataset}.rows_written", 0),
            "duplicate_rows": counts.get(f"duplicates.{dataset}", 0),
            "quarantine_rows": sum(by_kind.values()),
            "quarantine_by_kind": by_kind,
            "pii_masked": counts.get(f"{dataset}.pii_masked", 0),
        }
        stats["reconciled"] = stats["input_rows"] == stats["output_rows"] + stats["duplicate_rows"] + stats["quarantine_rows"]
        summary[dataset] = stats
    summary["events"] |= {
        "visits": counts.get("events.visits", 0),
        "unmapped_touchpoint_rows": counts.get("events.unmapped_touchpoint", 0),
        "untagged_rows": counts.get("events.untagged", 0),
    }
    summary["feedback"]["link"] = {
        name.rsplit(".", 1)[1]: n for name, n in sorted(counts.items()) if name.startswith("feedback.link.")
    }
    out = config.out.rstrip("/")
    summary["outputs"] = {
        **{name: f"{out}/{name}" for name in ("events", "feedback", "quarantine", "duplicates")},
        "quarantine_raw (restricted)": f"{config.restricted_dir}/quarantine_raw",
        "summary": f"{out}/_runs/{config.run_id}.json",
    }
    return summary


def run(config: RunConfig, beam_args: list[str] | None = None) -> dict:
    """Run the pipeline to completion, write the summary JSON and return it.

    Raises InputError for inputs that cannot be read, ReconciliationError if counts don't add up.
    """
    started_at = datetime.now(timezone.utc)
    inputs = {"events": match_inputs(config.touchpoints), "feedback": match_inputs(config.feedback) if config.feedback else []}
    options = PipelineOptions(beam_args or [])
    with beam.Pipeline(options=options) as p:
        build_pipeline(p, config, inputs)
    summary = summarise(config, inputs, counters(p.result), started_at)
    with FileSystems.create(summary["outputs"]["summary"]) as handle:
        handle.write(json.dumps(summary, indent=2, ensure_ascii=False).encode("utf-8"))
    unreconciled = [d for d in DATASETS if not summary[d]["reconciled"]]
    if unreconciled:
        raise ReconciliationError(f"counts do not reconcile for {', '.join(unreconciled)}; see {summary['outputs']['summary']}")
    return summary
