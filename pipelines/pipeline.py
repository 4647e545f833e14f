"""Construction and execution of the motpipe batch pipeline, and the run summary.

    >>> summary = run(RunConfig(touchpoints=["data/events/*.jsonl.gz"], out="out"))   # doctest: +SKIP
    >>> summary["events"]["reconciled"]                                               # doctest: +SKIP
    True
"""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import replace
from datetime import datetime, timezone
from operator import itemgetter

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import __version__
from pipelines.config import RunConfig
from pipelines.contract import DATASETS
from pipelines.io import InputFile, file_checksum, match_inputs, publish
from pipelines.playbook import load_playbook
from pipelines.runs import derive_run_id, output_lock, run_record_path, write_run_record
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

PUBLIC_TABLES = ("events", "feedback", "quarantine", "duplicates")
SORT_KEYS = {
    "events": ["occurred_at", "event_id"],
    "feedback": ["submitted_at", "feedback_id"],
    "quarantine": ["dataset", "source_file", "line_no"],
    "quarantine_raw": ["dataset", "source_file", "line_no"],
    "duplicates": ["dataset", "source_file", "line_no"],
}


class ReconciliationError(RuntimeError):
    """Input rows != output + duplicates + quarantine: a bug, never a data problem."""


def build_pipeline(
    p: beam.Pipeline, config: RunConfig, inputs: dict[str, list[InputFile]], staging: str, restricted_staging: str
) -> None:
    """Read, validate, dedup, stitch, link, redact, tag and write every table into the staging directories."""
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
        pcoll | f"Write {name}" >> WritePartitioned(staging, name, SORT_KEYS[name], config, count_by.get(name, ()))
    restricted | "Write quarantine_raw" >> WritePartitioned(
        restricted_staging, "quarantine_raw", SORT_KEYS["quarantine_raw"], config, is_copy=True
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
        "window": {"start": str(config.start), "end": str(config.end), "partitions": config.window_dates}
        if config.start else None,
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "settings": config.model_dump(mode="json", exclude={"pseudonymize_key", "touchpoints", "feedback"})
        | {"pseudonymized": config.pseudonymize_key is not None},
        "inputs": {d: [{"path": f.path, "size_bytes": f.size_bytes, "checksum": f.checksum} for f in inputs[d]]
                   for d in DATASETS},
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
            "outside_window_rows": counts.get(f"{dataset}.outside_window", 0),
            "pii_masked": counts.get(f"{dataset}.pii_masked", 0),
        }
        accounted = ("output_rows", "duplicate_rows", "quarantine_rows", "outside_window_rows")
        stats["reconciled"] = stats["input_rows"] == sum(stats[key] for key in accounted)
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
        **{name: f"{out}/{name}" for name in PUBLIC_TABLES},
        "quarantine_raw (restricted)": f"{config.restricted_dir}/quarantine_raw",
        "runs": f"{out}/runs",
        "run record": run_record_path(out, config.run_id, started_at),
        "summary": f"{out}/_runs/{config.run_id}.json",
    }
    return summary


def unknown_beam_options(beam_args: list[str]) -> list[str]:
    """Arguments that no registered Beam pipeline option takes (Beam itself would drop them silently)."""
    options = PipelineOptions(beam_args)
    known = options.get_all_options()
    return sorted(f"--{name}" for name in options.get_all_options(retain_unknown_options=True) if name not in known)


def _window_label(config: RunConfig) -> str:
    if config.start is None:
        return "all"
    return str(config.start) if config.start == config.end else f"{config.start}_{config.end}"


def prepare(config: RunConfig) -> tuple[RunConfig, dict[str, list[InputFile]]]:
    """Match and checksum the inputs, and give the config its run id (derived when not set).

    Raises InputError when an input pattern matches nothing or a file cannot be read.
    """
    matched = {"events": match_inputs(config.touchpoints), "feedback": match_inputs(config.feedback) if config.feedback else []}
    inputs = {d: [replace(f, checksum=file_checksum(f.path)) for f in files] for d, files in matched.items()}
    if config.run_id is None:
        described = [{"dataset": d, "path": f.path, "size_bytes": f.size_bytes, "checksum": f.checksum}
                     for d in DATASETS for f in inputs[d]]
        settings = config.model_dump(exclude={"run_id", "pseudonymize_key", "touchpoints", "feedback", "out", "restricted_out"})
        settings["playbook"] = load_playbook(config.playbook).model_dump()
        settings["key"] = hashlib.sha256(config.key_bytes).hexdigest() if config.key_bytes else None
        config = config.model_copy(update={"run_id": derive_run_id(_window_label(config), described, settings)})
    return config, inputs


def _staging(root: str, run_id: str) -> str:
    return FileSystems.join(root, "_staging", run_id)


def run(config: RunConfig, beam_args: list[str] | None = None) -> dict:
    """Run the pipeline under the output lock, publish its partitions, record the run; return the summary.

    Outputs are written to a staging directory and published partition by partition only when the
    counts reconcile, so a failed or killed run leaves the published tables as they were.
    Raises InputError, LockedError, ReconciliationError, or the pipeline's own error.
    """
    started_at = datetime.now(timezone.utc)
    config, inputs = prepare(config)
    stagings = {config.out: _staging(config.out, config.run_id),
                config.restricted_dir: _staging(config.restricted_dir, config.run_id)}
    record = {"run_id": config.run_id, "window_start": config.start, "window_end": config.end, "started_at": started_at,
              "status": "failed", "motpipe_version": __version__,
              "input_files": [{"dataset": d, "path": f.path, "size_bytes": f.size_bytes, "checksum": f.checksum}
                              for d in DATASETS for f in inputs[d]]}
    with output_lock(config.out, config.run_id):
        try:
            stale = [path for path in stagings.values() if FileSystems.exists(path)]
            if stale:
                FileSystems.delete(stale)  # left by a killed attempt of this run: never publish it
            with beam.Pipeline(options=PipelineOptions(beam_args or [])) as p:
                build_pipeline(p, config, inputs, stagings[config.out], stagings[config.restricted_dir])
            summary = summarise(config, inputs, counters(p.result), started_at)
            record["counts"] = json.dumps({d: summary[d] for d in DATASETS}, sort_keys=True)
            unreconciled = [d for d in DATASETS if not summary[d]["reconciled"]]
            if unreconciled:
                raise ReconciliationError(
                    f"counts do not reconcile for {', '.join(unreconciled)}: {record['counts']}; nothing was published"
                )
            published = publish(stagings[config.out], config.out, list(PUBLIC_TABLES), config.window_dates)
            restricted = publish(stagings[config.restricted_dir], config.restricted_dir, ["quarantine_raw"], config.window_dates)
            summary["published"] = {name: len(getattr(published, name)) + len(getattr(restricted, name))
                                    for name in ("replaced", "unchanged", "removed")}
            summary["partitions"] = {table: published.partitions.get(table, []) for table in PUBLIC_TABLES}
            with FileSystems.create(summary["outputs"]["summary"]) as handle:
                handle.write(json.dumps(summary, indent=2, ensure_ascii=False).encode("utf-8"))
            record["status"] = "succeeded"
            return summary
        except Exception as error:
            record["error"] = f"{type(error).__name__}: {error}"
            raise
        finally:
            record["finished_at"] = datetime.now(timezone.utc)
            write_run_record(config.out, record)
