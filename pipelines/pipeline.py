"""Construction and execution of the motpipe batch pipeline, and the run summary.

    >>> summary = run(RunConfig(touchpoints=["data/events/*.jsonl.gz"], out="out"))   # doctest: +SKIP
    >>> summary["events"]["reconciled"]                                               # doctest: +SKIP
    True
"""
from __future__ import annotations

import hashlib
import json
import math
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import __version__
from pipelines.config import IDENTIFIER_KEY_FILE, RunConfig
from pipelines.ingest.contract import DATASETS
from pipelines.ingest.formats import WHOLE_FILE, InputFile, estimated_bytes, file_checksum, file_parts, match_inputs
from pipelines.lock import output_lock, require_lockable
from pipelines.output import publish
from pipelines.playbook import VIEW_ONLY_SETTINGS, load_playbook
from pipelines.progress import Progress, watching
from pipelines.runners import local_runner, without_type_inference
from pipelines.standby import StandbyWorkers, default_workers, direct_worker_args
from pipelines.runs import derive_run_id, run_record_path, write_run_record
from pipelines.spill import read_counts
from pipelines.identity.stages import IDENTITY_TABLES, IdentityGraph, prior_inputs
from pipelines.storage import delete_tree, filesystem_options, use_filesystem_options
from pipelines.transforms import (AssignPersons, Deduplicate, LinkFeedback, ReadAndValidate, StitchVisits,
                                  WritePartitions)

PUBLIC_TABLES = ("events", "feedback", "quarantine", "duplicates", *IDENTITY_TABLES)
COUNT_BY = {"quarantine": ["dataset", "error_kind"], "duplicates": ["dataset"]}


class ReconciliationError(RuntimeError):
    """Input rows != output + duplicates + quarantine: a bug, never a data problem."""


def build_pipeline(p: beam.Pipeline, config: RunConfig, inputs: dict[str, list[InputFile]], roots: dict[str, str],
                   work: str) -> int:
    """Read, validate, dedup, stitch, link, redact, tag and write every table into the staging directories;
    returns the number of read steps (input files, or their parts).

    `roots`: the public and restricted staging directories; `work`: the directory of spill and count files.
    """
    playbook = load_playbook(config.playbook)
    parts = [(estimated_bytes(f, part), (dataset, index, f.path, part, f.source)) for dataset in DATASETS
             for index, f in enumerate(inputs[dataset]) for part in f.parts]
    files = in_turns([read for _, read in parts], [size for size, _ in parts], default_workers())
    read = p | "List files" >> beam.Create(files) | "Read" >> ReadAndValidate(config, work, playbook.allowed_channels)
    deduplicated = read | "Deduplicate" >> Deduplicate(config, work)
    identities = deduplicated | "Identity graph" >> IdentityGraph(config, work, prior_inputs(config), playbook.identity.rounds)
    stitched = deduplicated | "Stitch visits" >> StitchVisits(config, work)
    assigned = {"events": stitched, "feedback": deduplicated, "persons": identities} | "Assign persons" >> AssignPersons(config, work)
    linked = {"feedback": assigned, "visits": assigned} | "Link feedback" >> LinkFeedback(config, work)
    (
        (read, deduplicated, identities, assigned, linked)
        | "All spills" >> beam.Flatten()
        | "Write" >> WritePartitions(config, work, roots, COUNT_BY)
    )
    return len(files)


def summarise(config: RunConfig, inputs: dict[str, list[InputFile]], counts: dict[str, int], started_at: datetime) -> dict:
    """The run summary: inputs, counts per dataset with the reconciliation, and where the outputs are."""
    summary = {
        "run_id": config.run_id,
        "window": {"start": str(config.start), "end": str(config.end), "partitions": config.window_dates}
        if config.start else None,
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "settings": config.model_dump(mode="json", exclude={"pseudonymize_key", "identity_key", "touchpoints", "feedback"})
        | {"pseudonymized": config.pseudonymize_key is not None},
        "inputs": {d: [{"path": f.path, "size_bytes": f.size_bytes, "checksum": f.checksum}
                       | ({"source": config.sources[f.source].name} if f.source is not None else {}) for f in inputs[d]]
                   for d in DATASETS},
        "sources": [source_summary(i, source, counts) for i, source in enumerate(config.sources)],
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
        stats["read"] = {
            "bytes_read": counts.get(f"{dataset}.bytes_read", 0),
            "input_bytes": sum(f.size_bytes for f in inputs[dataset]),
            "lines_read": counts.get(f"{dataset}.lines_read", 0),
            "lines_accounted": counts.get(f"{dataset}.lines_accounted", 0),
        }
        stats["unreconciled"] = unreconciled(stats)
        stats["reconciled"] = not stats["unreconciled"]
        summary[dataset] = stats
    summary["events"] |= {
        "visits": counts.get("events.visits", 0),
        "unmapped_touchpoint_rows": counts.get("events.unmapped_touchpoint", 0),
        "untagged_rows": counts.get("events.untagged", 0),
    }
    summary["identity"] = {name.split(".", 1)[1]: n for name, n in sorted(counts.items()) if name.startswith("identity.")}
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


def unreconciled(stats: dict) -> list[str]:
    """What does not add up in one dataset's counts: the rows, and apart from parsing, the bytes of every input
    file (contract and source files) and the contract files' lines (every line read starts a row or is a blank,
    header or further line of a row)."""
    accounted = ("output_rows", "duplicate_rows", "quarantine_rows", "outside_window_rows")
    read, problems = stats["read"], []
    if stats["input_rows"] != sum(stats[key] for key in accounted):
        problems.append(f"{stats['input_rows']:,} input rows != " + " + ".join(f"{stats[k]:,} {k}" for k in accounted))
    if read["bytes_read"] != read["input_bytes"]:
        problems.append(f"{read['bytes_read']:,} bytes read of {read['input_bytes']:,} bytes of input files")
    if read["lines_read"] != read["lines_accounted"]:
        problems.append(f"{read['lines_read']:,} lines read != {read['lines_accounted']:,} lines that rows, blank "
                        "lines, headers and further lines of rows account for")
    return problems


def source_summary(index: int, source, counts: dict[str, int]) -> dict:
    """Per source: rows in, rows that made events (and how many), rows that made none, rows quarantined by kind."""
    prefix = f"source.{index}."
    by_kind = {name[len(prefix) + len("quarantine."):]: n for name, n in sorted(counts.items())
               if name.startswith(prefix + "quarantine.")}
    stats = {"name": source.name, "dataset": source.dataset, "rows_in": counts.get(prefix + "rows_in", 0),
             "rows_with_moments": counts.get(prefix + "rows_with_moments", 0),
             "rows_without_moments": counts.get(prefix + "rows_without_moments", 0),
             f"{source.dataset}_out": counts.get(prefix + "events_out", 0),
             "quarantine_rows": sum(by_kind.values()), "quarantine_by_kind": by_kind}
    stats["reconciled"] = stats["rows_in"] == stats["rows_with_moments"] + stats["rows_without_moments"] + stats["quarantine_rows"]
    return stats


def _window_label(config: RunConfig) -> str:
    if config.start is None:
        return "all"
    return str(config.start) if config.start == config.end else f"{config.start}_{config.end}"


MIN_BUCKETS, MAX_BUCKETS = 16, 1024


def input_bytes(inputs: dict[str, list[InputFile]]) -> int:
    return sum(f.size_bytes for files in inputs.values() for f in files)


def auto_buckets(input_bytes: int) -> int:
    """Hash buckets for an input of this size: the square root of its size in MiB, at least 16, at most 1024.

    Both costs of a shuffle then grow as the square root of the input: the rows of one bucket (what a dedup or
    stitching step holds in memory) and the segments each consumer opens, one per producer, so that the
    producers x consumers segments of a stage grow linearly (one bucket per 10 MiB made them grow with the
    square of the input: at 10M events, 298 buckets and ~89,000 segments per stage; docs/performance.md).

    >>> auto_buckets(128 * 2**20), auto_buckets(3000 * 2**20), auto_buckets(9000 * 2**20)
    (16, 55, 95)
    """
    return max(MIN_BUCKETS, min(MAX_BUCKETS, math.ceil(math.sqrt(input_bytes / 2**20))))


def in_turns(items: list, sizes: list[int], workers: int) -> list:
    """`items` in the order that shares their sizes out evenly when worker i mod `workers` takes item i (how the
    DirectRunner deals the elements of a `Create` out to its processes, in the order its Reshuffle keeps): the
    largest first, every other round of `workers` reversed, so the worker that took a round's largest takes the
    next round's smallest.

    >>> in_turns(["a", "b", "c", "d", "e"], [10, 40, 30, 20, 50], 2)
    ['e', 'b', 'd', 'c', 'a']
    """
    ranked = sorted(range(len(items)), key=lambda i: -sizes[i])
    rounds = [ranked[start:start + workers] for start in range(0, len(ranked), workers)]
    return [items[i] for number, turn in enumerate(rounds) for i in (reversed(turn) if number % 2 else turn)]


PARTS_PER_WORKER = 4  # a big file read in at least this many parts per worker: the last parts even out the load
MIN_PART_BYTES = 16 << 20


def part_size(input_bytes: int, part_bytes: int, workers: int) -> int:
    """The size of the parts files are cut into: `part_bytes`, or less, so that the whole input gives each worker
    PARTS_PER_WORKER parts, but not less than MIN_PART_BYTES (unless `part_bytes` is).

    >>> part_size(300 << 20, 64 << 20, 2) >> 20, part_size(3000 << 20, 64 << 20, 2) >> 20, part_size(40 << 20, 64 << 20, 2) >> 20
    (37, 64, 16)
    """
    return min(part_bytes, max(MIN_PART_BYTES, -(-input_bytes // (workers * PARTS_PER_WORKER))))


CHECKSUM_THREADS = 4


def _checksummed_and_parted(matched: dict[str, list[InputFile]], part_bytes: int) -> dict[str, list[InputFile]]:
    """The input files with their checksums and the parts they are read in. Both read every byte: the checksums
    are taken in threads (hashing gives up the GIL) while this thread finds the parts' line boundaries, so a big
    file costs about one read before the workers start, not two (docs/performance.md)."""
    with ThreadPoolExecutor(CHECKSUM_THREADS, thread_name_prefix="checksum") as pool:
        checksums = {f.path: pool.submit(file_checksum, f.path) for files in matched.values() for f in files}
        return {d: [replace(f, parts=tuple(file_parts(f.path, part_bytes) if f.source is None else [WHOLE_FILE]),
                            checksum=checksums[f.path].result()) for f in files] for d, files in matched.items()}


def prepare(config: RunConfig) -> tuple[RunConfig, dict[str, list[InputFile]]]:
    """Match the inputs, checksum them and find their parts; give the config its buckets and run id (derived when not
    set).

    Raises InputError when an input pattern matches nothing or a file cannot be read.
    """
    matched = {"events": match_inputs(config.touchpoints) if config.touchpoints else [],
               "feedback": match_inputs(config.feedback) if config.feedback else []}
    for index, source in enumerate(config.sources):
        matched[source.dataset] += [replace(f, source=index) for f in match_inputs(source.paths, contract=False)]
    inputs = _checksummed_and_parted(matched, part_size(input_bytes(matched), config.part_bytes, default_workers()))
    if config.buckets is None:
        config = config.model_copy(update={"buckets": auto_buckets(input_bytes(inputs))})
    if config.run_id is None:
        described = [{"dataset": d, "path": f.path, "size_bytes": f.size_bytes, "checksum": f.checksum, "source": f.source}
                     for d in DATASETS for f in inputs[d]]
        settings = config.model_dump(exclude={"run_id", "pseudonymize_key", "identity_key", "touchpoints", "feedback", "out",
                                              "restricted_out", "part_bytes", "allow_unlocked"})  # these change no output
        settings["playbook"] = load_playbook(config.playbook).model_dump(exclude=VIEW_ONLY_SETTINGS)
        settings["key"] = hashlib.sha256(config.key_bytes).hexdigest() if config.key_bytes else None
        identity_key = config.configured_identity_key  # None: the output's own key, one per output
        settings["identity_key"] = hashlib.sha256(identity_key).hexdigest() if identity_key else None
        config = config.model_copy(update={"run_id": derive_run_id(_window_label(config), described, settings)})
    return config, inputs


WORK_DIR = "_work"
def read_identifier_key(restricted: str) -> str | None:
    """The identifier key (hex) of the output whose restricted directory is `restricted`; None when it has none."""
    path = FileSystems.join(restricted, *IDENTIFIER_KEY_FILE)
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as handle:
        return handle.read().decode("ascii").strip()


def with_identifier_key(config: RunConfig) -> RunConfig:
    """The config with the output's identifier key (hex, in _keys/identifiers.key of its restricted directory,
    made with 32 random bytes on first use, so the hashed identifiers of every run of this output agree). Not
    needed, and not made, with a pseudonymisation key, which hashes identifiers too. Call it under the lock."""
    if config.key_bytes:
        return config
    key = read_identifier_key(config.restricted_dir)
    if key is None:
        key = secrets.token_hex(32)
        with FileSystems.create(FileSystems.join(config.restricted_dir, *IDENTIFIER_KEY_FILE)) as handle:
            handle.write(key.encode("ascii"))
    return config.model_copy(update={"identifier_key": key})


STALE_STAGING_S = 3600  # another run's staging left this long unchanged is from a killed run


def _staging(root: str, run_id: str) -> str:
    return FileSystems.join(root, "_staging", run_id)


def remove_stale_staging(root: str, current_run: str, now: float, max_age_s: float = STALE_STAGING_S) -> list[str]:
    """Delete the staging directories under `root/_staging/` of other runs whose newest file is older than
    `max_age_s`: left by killed runs (the caller holds the output's lock), they may hold unredacted spill files.
    Returns the directories removed."""
    prefix = FileSystems.join(root, "_staging", "")
    newest: dict[str, float] = {}
    for meta in FileSystems.match([prefix + "**"])[0].metadata_list:
        run = meta.path[len(prefix):].split("/", 1)[0]
        newest[run] = max(newest.get(run, 0.0), meta.last_updated_in_seconds)
    stale = sorted(prefix + run for run, updated in newest.items() if run != current_run and now - updated > max_age_s)
    for directory in stale:
        delete_tree(directory)
    return stale


def run(config: RunConfig, beam_args: list[str] | None = None,
        progress: Callable[[Progress], None] | None = None, standby: StandbyWorkers | None = None) -> dict:
    """Run the pipeline under the output lock, publish its partitions, record the run; return the summary.
    `progress` is called with the pipeline's progress every few seconds while it runs (pipelines/progress.py).
    `standby`: worker processes started beforehand for this run (pipelines/standby.py), used when they are the
    workers this run gets, else ended.

    Outputs are written to a staging directory and published partition by partition only when the
    counts reconcile, so a failed or killed run leaves the published tables as they were.
    Raises InputError, LockedError, UnlockableOutputError, ReconciliationError, or the pipeline's own error.
    """
    require_lockable(config.out, config.allow_unlocked)  # before the inputs are matched and checksummed
    started_at = datetime.now(timezone.utc)
    beam_args = beam_args or []
    config = config.model_copy(update={"filesystem_options": filesystem_options(beam_args)})
    use_filesystem_options(config.filesystem_options)  # the driver's own calls: inputs, lock, publishing
    config, inputs = prepare(config)
    roots = {"public": _staging(config.out, config.run_id), "restricted": _staging(config.restricted_dir, config.run_id)}
    work = FileSystems.join(roots["restricted"], WORK_DIR)  # unredacted rows between stages: kept apart with the raw quarantine
    record = {"run_id": config.run_id, "window_start": config.start, "window_end": config.end, "started_at": started_at,
              "status": "failed", "motpipe_version": __version__,
              "input_files": [{"dataset": d, "path": f.path, "size_bytes": f.size_bytes, "checksum": f.checksum}
                              for d in DATASETS for f in inputs[d]]}
    with output_lock(config.out, config.run_id, allow_unlocked=config.allow_unlocked) as lock:
        config = with_identifier_key(config)
        try:
            for root in roots.values():
                delete_tree(root)  # left by a killed attempt of this run: never publish it
            for root in (config.out, config.restricted_dir):
                remove_stale_staging(root, config.run_id, started_at.timestamp())
            args = direct_worker_args(beam_args, input_bytes(inputs))
            if standby is not None and not standby.serves(args):
                standby.close()  # planned for other workers than these arguments give: Beam starts its own
                standby = None
            options = PipelineOptions(without_type_inference(args))
            p = beam.Pipeline(runner=local_runner(options, standby), options=options)
            steps = build_pipeline(p, config, inputs, roots, work)
            sizes = {(d, index): f.size_bytes for d in DATASETS for index, f in enumerate(inputs[d])}
            with watching(work, sizes, steps, config.buckets, progress):
                p.run().wait_until_finish()
            summary = summarise(config, inputs, read_counts(work), started_at)
            record["counts"] = json.dumps({d: summary[d] for d in DATASETS}, sort_keys=True)
            problems = [f"{d}: {problem}" for d in DATASETS for problem in summary[d]["unreconciled"]]
            if problems:
                raise ReconciliationError(f"counts do not reconcile ({'; '.join(problems)}); nothing was published")
            lock.check()  # a run whose lease ended and was taken over publishes nothing
            sources = {f.path for files in inputs.values() for f in files}
            published = publish(roots["public"], config.out, list(PUBLIC_TABLES), config.window_dates, sources,
                                config.row_group_rows)
            restricted = publish(roots["restricted"], config.restricted_dir, ["quarantine_raw"], config.window_dates,
                                 sources, config.row_group_rows)
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
            delete_tree(work)
            record["finished_at"] = datetime.now(timezone.utc)
            write_run_record(config.out, record)
