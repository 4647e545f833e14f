"""The `motpipe` command line: parsing and printing only; the work is in pipelines.pipeline.

Exit codes: 0 success; 1 the pipeline failed; 2 bad usage or settings; 3 an input cannot be read;
4 the counts of a run do not reconcile; 5 only warn-level quality checks failed; 6 an error-level
quality check failed; 7 another run holds the output directory's lock.
"""
from __future__ import annotations

import gc
import importlib
import json
import logging
import sys
from contextlib import contextmanager
import threading
import time
from datetime import date
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from pipelines.config import IDENTITY_KEY_ENV, PSEUDONYMIZE_KEY_ENV, RunConfig
from pipelines.playbook import list_playbooks, load_playbook

EXIT_FAILED, EXIT_USAGE, EXIT_INPUT, EXIT_RECONCILIATION = 1, 2, 3, 4
EXIT_QUALITY_WARN, EXIT_QUALITY_ERROR = 5, 6
EXIT_LOCKED = 7
RUNNER_HELP = ("Beam runner: dask (Beam's DaskRunner; a local cluster unless --dask-address is given), "
               "DirectRunner (the default), PortableRunner, DataflowRunner, FlinkRunner, SparkRunner, ...")
THRESHOLD_HELP = "Override a quality setting of pipelines/quality/thresholds.yaml, e.g. unmapped_touchpoint_share=0.1 (repeatable)."

app = typer.Typer(help="motpipe: Moments-of-Truth customer-journey pipeline (Apache Beam -> Parquet -> DuckDB).",
                  no_args_is_help=True, add_completion=False)
console = Console()
err = Console(stderr=True)


def _fail(code: int, message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _print_summary(summary: dict) -> None:
    table = Table(title=f"run {summary['run_id']}", title_justify="left")
    windowed = summary["window"] is not None
    columns = ["dataset", "input rows", "written", "duplicates", "quarantined"] + ["outside window"] * windowed
    for column in [*columns, "reconciled"]:
        table.add_column(column, justify="left" if column == "dataset" else "right")
    keys = ["input_rows", "output_rows", "duplicate_rows", "quarantine_rows"] + ["outside_window_rows"] * windowed
    for dataset in ("events", "feedback"):
        s = summary[dataset]
        table.add_row(dataset, *(f"{s[k]:,}" for k in keys), "yes" if s["reconciled"] else "[red]NO[/]")
    console.print(table)
    if windowed:
        partitions = summary["window"]["partitions"]
        console.print(f"window: {summary['window']['start']} .. {summary['window']['end']}, "
                      f"rebuilt partitions {partitions[0]} .. {partitions[-1]}")
    console.print("partition files: " + ", ".join(f"{k} {v:,}" for k, v in summary["published"].items()))
    events, feedback = summary["events"], summary["feedback"]
    console.print(f"visits: {events['visits']:,}   unmapped touchpoint rows: {events['unmapped_touchpoint_rows']:,}   "
                  f"untagged events: {events['untagged_rows']:,}   PII spans masked: "
                  f"{events['pii_masked'] + feedback['pii_masked']:,}")
    if feedback["link"]:
        console.print("feedback links: " + ", ".join(f"{k} {v:,}" for k, v in feedback["link"].items()))
    for s in summary["sources"]:
        kinds = ", ".join(f"{k} {v:,}" for k, v in s["quarantine_by_kind"].items()) or "none"
        console.print(f"source {s['name']}: {s['rows_in']:,} rows in -> {s[s['dataset'] + '_out']:,} {s['dataset']} from "
                      f"{s['rows_with_moments']:,} rows, {s['rows_without_moments']:,} rows without a moment, "
                      f"{s['quarantine_rows']:,} rows quarantined ({kinds}); "
                      f"{'reconciled' if s['reconciled'] else '[red]NOT reconciled[/]'}", highlight=False, soft_wrap=True)
    for dataset in ("events", "feedback"):
        if summary[dataset]["quarantine_by_kind"]:
            kinds = ", ".join(f"{k} {v:,}" for k, v in summary[dataset]["quarantine_by_kind"].items())
            console.print(f"quarantined {dataset}: {kinds}")
    console.print("outputs:")
    for name, path in summary["outputs"].items():
        console.print(f"  {name:<28} {path}", soft_wrap=True, highlight=False)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    out: Annotated[str, typer.Option(help="Output directory (local or any Beam filesystem).")],
    touchpoints: Annotated[Optional[list[str]], typer.Option("--touchpoints", "-t", help="Touchpoint event file or glob "
                           "in the input contract (repeatable).")] = None,
    source: Annotated[Optional[list[str]], typer.Option("--source", "-s", help="A source file describing a native "
                      "export, FILE.yaml[=GLOB] (the glob replaces the file's paths; repeatable; docs/sources.md).")] = None,
    feedback: Annotated[Optional[list[str]], typer.Option("--feedback", "-f", help="Feedback file or glob (repeatable).")] = None,
    playbook: Annotated[str, typer.Option(help="Built-in playbook name or a YAML/JSON file.")] = "bank_branch",
    gap_minutes: Annotated[float, typer.Option(help="Inactivity gap that starts a new visit.")] = 30.0,
    timezone: Annotated[str, typer.Option(help="Zone of naive timestamps and of the dt partitions.")] = "UTC",
    link_window_days: Annotated[float, typer.Option(help="How long after a visit feedback still links to it.")] = 7.0,
    pseudonymize_key: Annotated[Optional[str], typer.Option(envvar=PSEUDONYMIZE_KEY_ENV, show_envvar=True,
                                help="Key for a keyed hash of customer_id (ids are kept when unset).")] = None,
    identity_key: Annotated[Optional[str], typer.Option(envvar=IDENTITY_KEY_ENV, show_envvar=True,
                                                        help="Key of the identity graph's hashes [default: the "
                                                        "pseudonymize key, else the output's own secret key].")] = None,
    restricted_out: Annotated[Optional[str], typer.Option(help="Where unmasked quarantined rows go [default: OUT/_restricted].")] = None,
    run_id: Annotated[Optional[str], typer.Option(help="Run id [default: window + hash of inputs and settings].")] = None,
    date_: Annotated[Optional[str], typer.Option("--date", help="Process one day (YYYY-MM-DD, local date).")] = None,
    start: Annotated[Optional[str], typer.Option(help="First day of a backfill window (YYYY-MM-DD).")] = None,
    end: Annotated[Optional[str], typer.Option(help="Last day of a backfill window (YYYY-MM-DD).")] = None,
    lookback_days: Annotated[int, typer.Option(help="Days before the window that are rebuilt too (late data).")] = 3,
    buckets: Annotated[Optional[int], typer.Option(help="Hash buckets of the shuffles [default: the square root of "
                       "the input's size in MiB, at least 16].")] = None,
    no_check: Annotated[bool, typer.Option("--no-check", help="Skip the quality checkpoint after the run.")] = False,
    allow_unlocked: Annotated[bool, typer.Option("--allow-unlocked", help="Run on an output that cannot be locked "
                              "(gs://, azfs://, hdfs://: no atomic create), when the scheduler runs one job per "
                              "output; local, POSIX and s3:// outputs are always locked.")] = False,
    threshold: Annotated[Optional[list[str]], typer.Option("--threshold", "-T", help=THRESHOLD_HELP)] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Beam's log.")] = False,
    progress: Annotated[str, typer.Option(help="auto (a line updated in place on a terminal, nothing elsewhere), "
                        "rich, json (one JSON object per line on stderr, for schedulers) or none.")] = "auto",
    runner: Annotated[Optional[str], typer.Option(help=RUNNER_HELP)] = None,
    dask_address: Annotated[Optional[str], typer.Option(help="With --runner dask: scheduler of an existing Dask cluster, "
                            "e.g. tcp://scheduler:8786 (its workers must see --out and the inputs).")] = None,
    dask_workers: Annotated[Optional[int], typer.Option(help="With --runner dask and no --dask-address: worker processes "
                            "of the local cluster started for this run (default: the number of CPUs).")] = None,
) -> None:
    """Run the pipeline, then the quality checkpoint. Arguments it does not know (e.g. --job_endpoint=...) go to Beam."""
    logging.getLogger().setLevel(logging.INFO if verbose else logging.ERROR)
    logging.getLogger("apache_beam").setLevel(logging.INFO if verbose else logging.CRITICAL)  # failures are reported below
    sources = _sources(source or [])
    settings = dict(touchpoints=touchpoints or [], feedback=feedback or [], sources=sources, out=out, playbook=playbook,
                    gap_minutes=gap_minutes,
                    timezone=timezone, link_window_days=link_window_days, pseudonymize_key=pseudonymize_key,
                    identity_key=identity_key,
                    restricted_out=restricted_out, buckets=buckets, lookback_days=lookback_days,
                    allow_unlocked=allow_unlocked,
                    start=date_ or start, end=date_ or end)
    if date_ and (start or end):
        _fail(EXIT_USAGE, "use either --date or --start/--end")
    if run_id is not None:
        settings["run_id"] = run_id
    try:
        config = RunConfig(**settings)
        load_playbook(playbook)
    except ValidationError as error:
        _fail(EXIT_USAGE, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()))
    except (ValueError, FileNotFoundError) as error:
        _fail(EXIT_USAGE, str(error))
    from pipelines.standby import StandbyWorkers, planned_workers

    patterns = [*config.touchpoints, *config.feedback, *(path for spec in sources for path in spec.paths)]
    standby = StandbyWorkers(planned_workers(runner, ctx.args, patterns), playbook)  # they start while Beam is imported
    from pipelines.ingest.formats import InputError
    from pipelines.pipeline import ReconciliationError
    from pipelines.pipeline import run as run_pipeline
    from pipelines.beam_args import stray_arguments, unknown_beam_options
    from pipelines.runners import RunnerOptionsError, check_runner_options, runner_options
    from pipelines.lock import LockedError, UnlockableOutputError, lockable

    logging.getLogger("distributed").setLevel(logging.INFO if verbose else logging.ERROR)  # set on import of distributed
    try:
        check_runner_options(runner, dask_address, dask_workers, ctx.args)
    except RunnerOptionsError as error:
        _fail(EXIT_USAGE, str(error))
    stray = stray_arguments(ctx.args)
    if stray:
        _fail(EXIT_USAGE, f"unexpected argument{'s' * (len(stray) > 1)} {' '.join(stray)}: each -t/-f takes one path or "
                          "glob; quote globs (-t 'in/*.jsonl') or repeat the option (-t a.jsonl -t b.jsonl)")
    quality = None if no_check else _quality_settings(playbook, threshold or [])
    for unknown in unknown_beam_options(ctx.args):
        err.print(f"[yellow]warning:[/] {unknown} is neither a motpipe nor a Beam option; it is ignored", highlight=False)
    if allow_unlocked and not lockable(config.out):
        err.print(f"[yellow]warning:[/] --allow-unlocked: {config.out} is not locked; a second run on it meanwhile "
                  "would not be refused", highlight=False)
    if progress not in PROGRESS_CHOICES:
        _fail(EXIT_USAGE, f"--progress must be one of {', '.join(PROGRESS_CHOICES)}, not {progress!r}")
    importing = _import_checkpoint_meanwhile() if quality is not None else None
    try:
        with _progress_reporter(progress_mode(progress, err.is_terminal), f"running pipeline ({config.playbook}) on "
                                f"{config.out}") as report, \
                runner_options(runner, dask_address, dask_workers, ctx.args) as beam_args:
            summary = run_pipeline(config, beam_args, report, standby)
    except InputError as error:
        _fail(EXIT_INPUT, str(error))
    except ReconciliationError as error:
        _fail(EXIT_RECONCILIATION, str(error))
    except LockedError as error:
        _fail(EXIT_LOCKED, str(error))
    except UnlockableOutputError as error:
        _fail(EXIT_USAGE, str(error))
    except Exception as error:  # a Beam failure: show its last line, the full trace with --verbose
        if verbose:
            raise
        message = str(error).strip().splitlines()
        _fail(EXIT_FAILED, f"pipeline failed: {message[-1] if message else type(error).__name__} (rerun with -v for details)")
    finally:
        standby.close()
        if importing is not None:  # exiting while it imports an extension module can abort the interpreter (SIGABRT)
            importing.join()
    _print_summary(summary)
    if quality is None:
        err.print(f"[yellow]warning:[/] --no-check: the quality checkpoint did not run (nor its scan for unmasked PII); "
                  f"run `motpipe check --out {config.out}` before analysts read these tables", highlight=False)
        return
    _checkpoint(config.out, quality, summary["run_id"], summary["outputs"]["run record"])


def _import_checkpoint_meanwhile() -> threading.Thread:
    """Import the checkpoint (Great Expectations and its dependencies: ~3 s of CPU) in a thread while the pipeline's
    workers run, so that `_checkpoint` finds it loaded; the caller joins the thread before the process exits."""
    thread = threading.Thread(target=importlib.import_module, args=("pipelines.quality.checkpoint",), daemon=True,
                              name="import-checkpoint")
    thread.start()
    return thread


def _sources(arguments: list[str]) -> list:
    """The sources of `--source FILE.yaml[=GLOB]` (exit 2 naming the file, key and line of an error)."""
    from pipelines.ingest.sources.spec import SourceError, source_argument

    try:
        return [source_argument(argument) for argument in arguments]
    except SourceError as error:
        _fail(EXIT_USAGE, str(error))


PROGRESS_CHOICES = ("auto", "rich", "json", "none")


def progress_mode(choice: str, terminal: bool) -> str | None:
    """How progress is shown: `rich`, `json` or None (quiet); `auto` is rich on a terminal, quiet elsewhere (cron,
    Airflow)."""
    if choice == "auto":
        return "rich" if terminal else None
    return None if choice == "none" else choice


@contextmanager
def _progress_reporter(mode: str | None, title: str):
    """A function that shows one progress snapshot the way `mode` says (None: nothing is shown)."""
    from pipelines.progress import json_line, render

    if mode == "json":
        yield lambda progress: print(json_line(progress), file=sys.stderr, flush=True)
    elif mode == "rich":
        with err.status(f"{title} ...") as status:
            yield lambda progress: status.update(f"{title}: {render(progress)}")
    else:
        yield None


def _quality_settings(playbook: str, thresholds: list[str]):
    """Quality settings: defaults < the playbook's `quality:` section < --threshold (exit 2 if invalid)."""
    from pipelines.quality.settings import load_settings

    try:
        loaded = load_playbook(playbook)
        return load_settings(loaded.quality, thresholds, loaded.phone_regions)
    except (ValueError, FileNotFoundError) as error:
        _fail(EXIT_USAGE, str(error))


def _checkpoint(out: str, settings, run_id: str | None, run_record: str | None = None) -> None:
    """Run the quality checkpoint, print where results are and the failed checks, note the outcome in the
    run's row of the `runs` table; exit 5 or 6 on failures."""
    started = time.perf_counter()
    from pipelines.quality.checkpoint import CheckError, UnreadableOutputError, run_checkpoint
    from pipelines.runs import set_quality

    try:
        with console.status("running quality checks ..."):
            report = run_checkpoint(out, settings, run_id)
    except UnreadableOutputError as error:
        _fail(EXIT_FAILED, str(error))
    except CheckError as error:
        _fail(EXIT_USAGE, str(error))
    console.print(f"quality: {len(report.results) - len(report.failures)}/{len(report.results)} checks passed in "
                  f"{time.perf_counter() - started:.1f} s for run {report.run_id}; results {report.results_path}; Data Docs {report.docs_index}",
                  soft_wrap=True, highlight=False)
    if run_record:
        passed = len(report.results) - len(report.failures)
        set_quality(run_record, f"{report.worst_failure or 'passed'}: {passed}/{len(report.results)} checks passed")
    if not report.failures:
        return
    table = Table("dataset", "check", "severity", "observed", "unexpected", title="failed quality checks", title_justify="left")
    for failure in report.failures:
        table.add_row(failure.dataset, failure.expectation, failure.severity, (failure.observed_value or "")[:60],
                      "" if failure.unexpected_count is None else f"{failure.unexpected_count:,}")
    console.print(table)
    raise typer.Exit(EXIT_QUALITY_ERROR if report.worst_failure == "error" else EXIT_QUALITY_WARN)


def _use_filesystem_arguments(ctx: typer.Context) -> None:
    """Give this process's filesystem calls the command's extra arguments, which must all be Beam filesystem
    options (e.g. --s3_endpoint_url=...): anything else is a usage error."""
    from pipelines.beam_args import non_filesystem_arguments
    from pipelines.storage import filesystem_options, use_filesystem_options

    others = non_filesystem_arguments(ctx.args)
    if others:
        _fail(EXIT_USAGE, f"motpipe {ctx.command.name} takes no {' '.join(others)}: its options are listed by "
                          f"`motpipe {ctx.command.name} --help`, other arguments must be Beam filesystem options "
                          "(e.g. --s3_endpoint_url=...)")
    use_filesystem_options(filesystem_options(ctx.args))


FILESYSTEM_ARGUMENTS = {"allow_extra_args": True, "ignore_unknown_options": True}  # commands that read an output


@app.command(context_settings=FILESYSTEM_ARGUMENTS)
def check(
    ctx: typer.Context,
    out: Annotated[str, typer.Option(help="Output directory of `motpipe run` (local or any Beam filesystem; "
                                          "give its Beam filesystem options after the motpipe options).")],
    run_id: Annotated[Optional[str], typer.Option(help="Run to check [default: the latest run in OUT/_runs].")] = None,
    playbook: Annotated[Optional[str], typer.Option(help="Playbook whose `quality:` section applies [default: the run's].")] = None,
    threshold: Annotated[Optional[list[str]], typer.Option("--threshold", "-T", help=THRESHOLD_HELP)] = None,
) -> None:
    """Run the quality checkpoint on existing outputs (exit 0 passed, 5 warnings only, 6 errors). Arguments it
    does not know are Beam filesystem options (e.g. --s3_endpoint_url=...)."""
    from pipelines.quality.checkpoint import CheckError, read_summary

    _use_filesystem_arguments(ctx)
    try:
        summary = read_summary(out, run_id)
    except CheckError as error:
        _fail(EXIT_USAGE, str(error))
    settings = _quality_settings(playbook or summary["settings"]["playbook"], threshold or [])
    recorded = summary["outputs"].get("run record")  # an absolute path when written: find it under --out
    _checkpoint(out, settings, summary["run_id"], recorded and f"{out.rstrip('/')}/runs/{recorded.rsplit('/', 1)[-1]}")


@app.command()
def sample(
    out: Annotated[Path, typer.Option(help="Directory for touchpoints/, feedback/ and manifest.json.")],
    events: Annotated[int, typer.Option(min=1, help="Touchpoint rows to write, bad rows and duplicates included.")] = 5000,
    playbook: Annotated[str, typer.Option(help="Playbook whose touchpoints the journeys follow.")] = "bank_branch",
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bytes).")] = 7,
    feedback_ratio: Annotated[float, typer.Option(min=0, help="Feedback rows per touchpoint row.")] = 0.1,
    shape: Annotated[str, typer.Option(help="mixed: several files and formats, mostly gzip, every kind of bad row; "
                                            "production: one big JSON Lines file per dataset.")] = "mixed",
    bad_share: Annotated[Optional[float], typer.Option(min=0, max=0.5, help="Share of injected bad rows "
                                                       "[default: the shape's, 0.02 / 0.015].")] = None,
    duplicate_share: Annotated[Optional[float], typer.Option(min=0, max=0.5, help="Share of injected duplicates "
                                                             "[default: the shape's, 0.02 / 0.005].")] = None,
    start: Annotated[str, typer.Option(help="First day of the generated visits (YYYY-MM-DD).")] = "2026-10-01",
    days: Annotated[int, typer.Option(min=1, help="Number of days the visits span.")] = 7,
    cross_channel_share: Annotated[float, typer.Option(min=0, max=1, help="Share of customers that are persons seen "
                                                       "by 2-3 channel systems, linked by identifiers (truth in "
                                                       "identity_truth.csv).")] = 0.0,
) -> None:
    """Generate realistic sample inputs with a known share of bad rows and duplicates."""
    from pipelines.sample import SHAPES, generate_sample

    try:
        first_day = date.fromisoformat(start)
    except ValueError:
        _fail(EXIT_USAGE, f"--start {start!r} is not a date (YYYY-MM-DD)")
    if shape not in SHAPES:
        _fail(EXIT_USAGE, f"--shape {shape!r} is not one of {', '.join(SHAPES)}")
    manifest = generate_sample(out, events, playbook=playbook, seed=seed, feedback_ratio=feedback_ratio,
                               bad_share=bad_share, duplicate_share=duplicate_share, start=first_day, days=days,
                               shape=shape, cross_channel_share=cross_channel_share)
    for dataset in ("events", "feedback"):
        m = manifest[dataset]
        console.print(f"{dataset}: {m['rows']:,} rows = {m['good_rows']:,} good + {m['exact_duplicates']:,} exact duplicates "
                      f"+ {sum(m['quarantine'].values()):,} to quarantine")
    console.print(f"wrote {out}/touchpoints/, {out}/feedback/ and {out}/manifest.json")
    console.print(f"next: motpipe run -t '{out}/touchpoints/*' -f '{out}/feedback/*' --playbook {playbook} --out OUT_DIR")


@app.command()
def runs(out: Annotated[str, typer.Option(help="Output directory of the runs.")]) -> None:
    """List the run history of an output directory (the `runs` table), oldest first."""
    from pipelines.runs import read_runs

    unreadable: list[str] = []
    history = read_runs(out, unreadable).to_pylist()
    for record in unreadable:
        err.print(f"[yellow]warning:[/] skipped an unreadable run record {record}", highlight=False, soft_wrap=True)
    if not history:
        _fail(EXIT_USAGE, f"no runs recorded under {out}")
    table = Table("run_id", "window", "started_at", "took", "status", "events in/out/dup/quar", "quality")
    for run in history:
        counts = json.loads(run["counts"]) if run["counts"] else {}
        events = counts.get("events", {})
        window = f"{run['window_start']}..{run['window_end']}" if run["window_start"] else "all"
        took = f"{(run['finished_at'] - run['started_at']).total_seconds():.1f}s" if run["finished_at"] else ""
        figures = "/".join(f"{events.get(k, 0):,}" for k in ("input_rows", "output_rows", "duplicate_rows", "quarantine_rows"))
        status = run["status"] if run["status"] == "succeeded" else f"[red]{run['status']}[/]: {run['error'] or ''}"
        table.add_row(run["run_id"], window, run["started_at"].isoformat(timespec="seconds"), took, status,
                      figures if events else "", run["quality"] or "")
    console.print(table)


@app.command()
def playbooks() -> None:
    """List the built-in playbooks."""
    table = Table("name", "version", "touchpoints", "description")
    for book in list_playbooks():
        table.add_row(book.name, book.version, str(len(book.touchpoints)), book.description)
    console.print(table)


DB_HELP = "DuckDB file of the views [default: OUT/motpipe.duckdb; an OUT on another filesystem needs a local --db"


@app.command(context_settings=FILESYSTEM_ARGUMENTS)
def views(
    ctx: typer.Context,
    out: Annotated[str, typer.Option(help="Output directory of a run (holds events/, feedback/, ...; local or any Beam "
                                          "filesystem, whose options follow the motpipe options).")],
    db: Annotated[Optional[str], typer.Option(help=f"{DB_HELP}].")] = None,
    weights: Annotated[Optional[str], typer.Option(help="SERVQUAL importance weights, e.g. reliability=0.4,tangibles=0.05 "
                                                   "(others keep 0.30/0.25/0.20/0.15/0.10; normalised to sum 1).")] = None,
    materialize: Annotated[bool, typer.Option(help="Materialise the intermediate and mart layers as tables.")] = True,
    timings: Annotated[bool, typer.Option(help="Then time every view (best of 3, full result into Arrow).")] = False,
    playbook: Annotated[Optional[str], typer.Option(help="Playbook whose follow_up and attribution settings the views use "
                                                    "[default: the built-in defaults].")] = None,
    importance: Annotated[list[str], typer.Option(help="Extra importance method for importance_performance: drivers "
                                                  "(the key-driver shares of csat).")] = [],
    journey_gap_days: Annotated[float, typer.Option(help="Person journeys: a person's visits at most this many days "
                                                    "apart form one journey.")] = 7.0,
) -> None:
    """Build (or rebuild) the DuckDB journey views from queries/ over the Parquet tables of OUT. Arguments it does
    not know are Beam filesystem options (e.g. --s3_endpoint_url=...)."""
    from pipelines.views import build_views, default_db, parse_weights, time_views

    _use_filesystem_arguments(ctx)
    try:
        target = db or default_db(out)
        chosen = parse_weights(weights)
        unknown = set(importance) - {"drivers"}
        if unknown:
            raise ValueError(f"--importance: {', '.join(sorted(unknown))} is not a method (use: drivers)")
        book = load_playbook(playbook) if playbook else None
        built = build_views(out, target, weights=chosen, materialize=materialize, playbook=book,
                            drivers_importance="drivers" in importance,
                            journey_gap_days=journey_gap_days)
    except (ValueError, FileNotFoundError) as error:
        _fail(EXIT_USAGE, str(error))
    except RuntimeError as error:
        _fail(EXIT_FAILED, str(error))
    table = Table("layer", "name", "kind", "rows", "build s", title=f"{target}", title_justify="left")
    for b in built:
        table.add_row(b.layer, b.name, b.kind, "" if b.rows is None else f"{b.rows:,}", f"{b.seconds:.2f}")
    console.print(table)
    if timings:
        timed = Table("name", "kind", "rows", "full result s", "count(*) s", title="query times (best of 3)", title_justify="left")
        for t in time_views(target):
            timed.add_row(t["name"], t["kind"], f"{t['rows']:,}", f"{t['full_result_s']:.3f}", f"{t['count_s']:.3f}")
        console.print(timed)
    console.print(f"next: motpipe query --db {target} journeys", soft_wrap=True, highlight=False)


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="SQL, or the name of a view (select * from it).")],
    db: Annotated[str, typer.Option(help="DuckDB file built by `motpipe views`.")],
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Write the result to a .csv, .parquet or .jsonl file.")] = None,
    format: Annotated[Optional[str], typer.Option("--format", help="csv, parquet or jsonl [default: from the --output extension].")] = None,
    limit: Annotated[int, typer.Option(help="Rows to print (the file gets all).")] = 50,
    unrestricted: Annotated[bool, typer.Option("--unrestricted", help="The full DuckDB (data engineers): any statement, "
                            "any file, _restricted/ included. Without it, one SELECT over the public tables.")] = False,
) -> None:
    """Query the journey views: print a table, or write CSV/Parquet/JSON Lines with --output.

    By default (analyst mode) the query is one SELECT statement that can read only the public tables of the
    output directory and write no file but --output; --unrestricted lifts both limits."""
    result = _result_or_export(db, sql, output, format, limit, "rows", unrestricted)
    if result is None:
        return
    columns, rows, total = result
    table = Table(*columns, caption=f"{total:,} rows" + (f" (first {len(rows):,} shown)" if total > len(rows) else ""))
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    console.print(table)


def _result_or_export(db: str, sql: str, output: Optional[str], fmt: Optional[str], limit: int, noun: str,
                      unrestricted: bool = False):
    """Write the result of `sql` to `output` and return None, or return (columns, first `limit` rows, total rows);
    a bad query, file name or database exits with code 2. Analyst mode unless `unrestricted` (views.connect_analyst)."""
    import duckdb

    from pipelines.views import export_query, run_query

    try:
        if output:
            written = export_query(db, sql, output, fmt, unrestricted)
            console.print(f"wrote {written:,} {noun} to {output}", soft_wrap=True, highlight=False)
            return None
        return run_query(db, sql, limit=limit, unrestricted=unrestricted)
    except (ValueError, FileNotFoundError) as error:
        _fail(EXIT_USAGE, str(error))
    except duckdb.Error as error:
        _fail(EXIT_USAGE, str(error).strip().splitlines()[0])


def _cell(value: object, float_format: str = ".6g") -> str:
    return "" if value is None else format(value, float_format) if isinstance(value, float) else str(value)


@app.command(context_settings=FILESYSTEM_ARGUMENTS)
def cases(
    ctx: typer.Context,
    out: Annotated[str, typer.Option(help="Output directory of a run.")],
    db: Annotated[Optional[str], typer.Option(help=f"{DB_HELP}; built when missing].")] = None,
    status: Annotated[str, typer.Option(help="open, closed or all.")] = "open",
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Write the cases to a .csv, .jsonl or .parquet file "
                                                  "(e.g. for a CRM import).")] = None,
    limit: Annotated[int, typer.Option(help="Cases to print (the file gets all).")] = 50,
) -> None:
    """The follow-up queue (MOT step 5): one case per at-risk visit, most urgent first (view follow_up_cases)."""
    from pipelines.views import build_views, cases_query, default_db

    _use_filesystem_arguments(ctx)
    try:
        target = db or default_db(out)
        sql = cases_query(status)
        if not Path(target).exists():
            console.print(f"building the views in {target} ...", soft_wrap=True, highlight=False)
            build_views(out, target)
    except (ValueError, FileNotFoundError) as error:
        _fail(EXIT_USAGE, str(error))
    result = _result_or_export(target, sql, output, None, limit, f"{status} cases")
    if result is None:
        return
    columns, rows, total = result
    shown = ("case_id", "priority", "reason", "customer_id", "due_at", "age_hours", "sla_breached", "evidence_text")
    table = Table(*shown, caption=f"{total:,} {status} cases" + (f" (first {len(rows):,} shown)" if total > len(rows) else ""))
    for row in rows:
        record = dict(zip(columns, row))
        table.add_row(*(_cell(record[c], ".1f") for c in shown))
    console.print(table)


@app.command(context_settings=FILESYSTEM_ARGUMENTS)
def report(
    ctx: typer.Context,
    out: Annotated[str, typer.Option(help="Output directory of a run.")],
    db: Annotated[Optional[str], typer.Option(help=f"{DB_HELP}; built when missing].")] = None,
    html: Annotated[Optional[str], typer.Option(help="Report file, local or on a Beam filesystem [default: OUT/report.html].")] = None,
) -> None:
    """Write a static, self-contained HTML report (charts work offline). Arguments it does not know are Beam
    filesystem options (e.g. --s3_endpoint_url=...)."""
    from apache_beam.io.filesystems import FileSystems

    from pipelines.report import build_report
    from pipelines.views import build_views, default_db

    _use_filesystem_arguments(ctx)
    try:
        target = db or default_db(out)
        if not Path(target).exists():
            console.print(f"building the views in {target} ...", soft_wrap=True, highlight=False)
            build_views(out, target)
        result = build_report(target, html or FileSystems.join(out.rstrip("/"), "report.html"))
    except (ValueError, FileNotFoundError, ImportError) as error:
        _fail(EXIT_USAGE, str(error))
    console.print(f"wrote {result['path']} ({result['bytes'] / 1e6:.1f} MB, {len(result['charts'])} charts)",
                  soft_wrap=True, highlight=False)


@app.command("eval-tagging")
def eval_tagging(
    gold: Annotated[list[Path], typer.Option("--gold", "-g", help="Gold JSON Lines file (repeatable): "
                    '{"id", "lang", "text", "labels": [{"dimension", "polarity"}]} and/or "mot_step".')],
    playbook: Annotated[str, typer.Option(help="Built-in playbook name or a YAML/JSON file.")] = "base",
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the report as JSON to this file.")] = None,
    top: Annotated[int, typer.Option(min=0, help="How many frequent false positives/negatives to show.")] = 10,
    half: Annotated[str, typer.Option(help="Score only one half of each file: tuning or held-out (by sha256 of "
                                           "the id, docs/tagging.md), or all.")] = "all",
    rules_only: Annotated[bool, typer.Option(help="Switch the learned layer off (the rules alone).")] = False,
    certain_only: Annotated[bool, typer.Option(help='Leave out gold records marked "uncertain".')] = False,
    split: Annotated[str, typer.Option(help="all, or dev / held-out: only the records of the groups outside / inside "
                                            "the held-out set (whole groups in sha256 order, 25 % of the records).")] = "all",
    group_by: Annotated[str, typer.Option(help="Record field naming the group of --split.")] = "company",
    events: Annotated[Optional[str], typer.Option(help="Score the MOT steps of this `motpipe run` output's events "
                                                       "(gold id = event_id) instead of tagging the gold texts.")] = None,
    pseudonymize_key: Annotated[Optional[str], typer.Option(envvar=PSEUDONYMIZE_KEY_ENV, show_envvar=True,
                                help="With --events: the --pseudonymize-key of that run, which hashed ids holding "
                                     "PII with it.")] = None,
) -> None:
    """Precision, recall and F1 of the tagger on labelled text (PZB dimensions, polarity, MOT steps), per
    language and per source."""
    from pipelines.tagging import Tagger
    from pipelines.tagging.evaluate import evaluate, events_report, read_gold, select, split_half

    try:
        records = select(split_half(read_gold(gold), half), certain_only, split, group_by)
        if events is not None:
            report = events_report(events, records, pseudonymize_key)
            _print_mot(report["mot"])
            return _write_report(report, json_out)
        book = load_playbook(playbook)
        tagger = Tagger(book.model_copy(update={"model": type(book.model)()}) if rules_only else book)
    except (ValueError, FileNotFoundError, OSError) as error:
        _fail(EXIT_USAGE, str(error))
    report = evaluate(tagger, records, top=top)
    report["playbook"], report["half"], report["learned_layer"] = tagger.playbook.ref, half, not rules_only
    for lang, res in report["languages"].items():
        for title, key in (("PZB dimension", "dimension"), ("PZB dimension+polarity", "dimension_polarity"),
                           ("MOT step (primary)", "mot_step"), ("MOT steps (all performed)", "mot_steps")):
            if key not in res:
                continue
            table = Table(title=f"{lang}: {title} ({res['records']:,} records, playbook {tagger.playbook.ref})",
                          title_justify="left")
            for column in ("class", "tp", "fp", "fn", "precision", "recall", "F1"):
                table.add_column(column, justify="left" if column == "class" else "right")
            rows = list(res[key]["per_class"].items()) + [("micro", res[key]["micro"])]
            for name, s in rows:
                table.add_row(name, str(s["tp"]), str(s["fp"]), str(s["fn"]), f"{s['precision']:.3f}",
                              f"{s['recall']:.3f}", f"{s['f1']:.3f}")
            table.add_row("macro", "", "", "", "", "", f"{res[key]['macro_f1']:.3f}")
            console.print(table)
        for kind in ("false_positives", "false_negatives"):
            if res[kind]:
                console.print(f"{lang}: most frequent {kind.replace('_', ' ')}")
                for item in res[kind]:
                    example = item.get("example") or {}
                    console.print(f"  {item['count']:>4}  {item['dimension']}  {item.get('rule', '')}  "
                                  f"e.g. {example.get('id')}: {example.get('text', '')[:80]!r}", soft_wrap=True,
                                  highlight=False, markup=False)
    for source, langs in report.get("sources", {}).items():
        for lang, res in langs.items():
            if "dimension" in res:
                per = ", ".join(f"{k} {v['f1']:.3f}" for k, v in res["dimension"]["per_class"].items())
                console.print(f"{source} ({lang}, {res['pzb_records']:,}): dimension macro-F1 "
                              f"{res['dimension']['macro_f1']:.3f}, micro {res['dimension']['micro']['f1']:.3f} ({per})",
                              highlight=False)
    if "mot" in report:
        _print_mot(report["mot"])
    _write_report(report, json_out)


def _print_mot(mot: dict) -> None:
    """The MOT-step summary per source and language, and the confusion table of all records."""
    summary = Table(title="MOT steps per source and language", title_justify="left")
    for column in ("group", "records", "primary in gold", "primary macro-F1", "steps macro-F1", "steps micro-F1"):
        summary.add_column(column, justify="left" if column == "group" else "right")
    for group, res in [("all", mot["all"])] + [(f"{key[3:]}={k}", v) for key in ("by_source", "by_lang")
                                               for k, v in mot[key].items()]:
        summary.add_row(group, f"{res['records']:,}", f"{res['primary_in_gold']:.3f}", f"{res['mot_step']['macro_f1']:.3f}",
                        f"{res['mot_steps']['macro_f1']:.3f}", f"{res['mot_steps']['micro']['f1']:.3f}")
    console.print(summary)
    confusion = Table(title="MOT step confusion: gold step (rows) x predicted primary step", title_justify="left")
    columns = list(next(iter(mot["all"]["mot_step_confusion"].values())))
    for column in ("gold", *columns):
        confusion.add_column(column, justify="right")
    for gold_step, row in mot["all"]["mot_step_confusion"].items():
        confusion.add_row(gold_step, *(str(row[c]) for c in columns))
    console.print(confusion)


def _write_report(report: dict, json_out: Path | None) -> None:
    if json_out is not None:
        json_out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        console.print(f"wrote {json_out}")


@app.command("train-tagger")
def train_tagger(
    gold: Annotated[list[Path], typer.Option("--gold", "-g", help="Gold JSON Lines file to train on (repeatable).")],
    task: Annotated[str, typer.Option(help="What to learn: dimensions (PZB, from \"labels\") or mot_steps (from "
                                           "\"mot_steps\" / \"mot_step\").")] = "dimensions",
    lang: Annotated[Optional[list[str]], typer.Option(help="Language(s) to train (default: every one in the files).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Parent directory of the model folders (default: the package's "
                                                     "pipelines/tagging/models, what the tagger loads).")] = None,
    playbook: Annotated[str, typer.Option(help="Playbook whose rules give the rule features.")] = "base",
    licence: Annotated[Optional[list[str]], typer.Option(help="SOURCE=LICENCE for a source of your own (repeatable); "
                                                              "it is then taken as allowed in a shipped model.")] = None,
    allow_noncommercial: Annotated[bool, typer.Option(help="Allow non-commercial sources; the model is marked "
                                                           "non-shippable and must go to --out outside the package.")] = False,
    group_by: Annotated[str, typer.Option(help="Record field that groups the cross-validation folds.")] = "source",
    cv: Annotated[bool, typer.Option(help="Run the grouped cross-validation first.")] = True,
    split: Annotated[str, typer.Option(help="all, or dev: train without each file's held-out groups of --group-by "
                                            "(as eval-tagging --split).")] = "all",
    seed: Annotated[int, typer.Option(help="Random seed of the solver.")] = 0,
    c: Annotated[float, typer.Option(help="Inverse L2 regularisation strength.")] = 1.0,
    min_df: Annotated[int, typer.Option(help="Minimum number of training texts per feature.")] = 2,
    on: Annotated[Optional[str], typer.Option("--date", help="Date written on the model card (default: today, UTC).")] = None,
) -> None:
    """Train the learned tagging layer from gold JSON Lines; writes the model and its card (CARD.md, card.json)."""
    from datetime import datetime, timezone

    from pipelines.tagging import Tagger
    from pipelines.tagging.linear import Settings
    from pipelines.tagging.training import TASKS, train_and_write

    if task not in TASKS:
        _fail(EXIT_USAGE, f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    declared = {}
    for item in licence or []:
        source, sep, text = item.partition("=")
        if not sep or not source or not text:
            _fail(EXIT_USAGE, f"--licence wants SOURCE=LICENCE, got {item!r}")
        declared[source] = text
    try:
        command = " ".join(["motpipe train-tagger", f"--task {task}", *(f"--gold {g.name}" for g in gold),
                            f"--group-by {group_by}", f"--split {split}", f"--playbook {playbook}"])
        cards = train_and_write(task, gold, lang, Tagger(load_playbook(playbook)),
                                Settings(c=c, min_df=min_df, seed=seed), out,
                                on or datetime.now(timezone.utc).date().isoformat(), declared, allow_noncommercial,
                                group_by, cv, command=command, split=split)
    except (ValueError, FileNotFoundError, OSError) as error:
        _fail(EXIT_USAGE, str(error))
    for card in cards:
        console.print(f"{card['path']}: {card['features']:,} features, labels {', '.join(card['labels'])}, "
                      f"shippable {'yes' if card['shippable'] else 'NO'}", highlight=False)
        folds = card["cross_validation"]
        for group, res in {**folds.get("groups", {}), **({"all folds": folds["pooled"]} if "pooled" in folds else {})}.items():
            console.print(f"  left out {group}: macro-F1 model {res['model']['macro_f1']}, rules {res['rules']['macro_f1']}, "
                          f"rules+model {res['rules+model']['macro_f1'] if 'rules+model' in res else '-'}", highlight=False)
        if folds.get("note"):
            console.print(f"  cross-validation: {folds['note']}", highlight=False)
        for subset, res in folds.get("pooled_rules_and_model", {}).items():
            console.print(f"  rules + model, left-out groups pooled ({subset}, {res['records']:,}): primary step in gold "
                          f"{res['primary_in_gold']}, steps macro-F1 {res['mot_steps']['macro_f1']}, primary macro-F1 "
                          f"{res['mot_step']['macro_f1']}", highlight=False)
    console.print(f"wrote {', '.join(c['path'] for c in cards)} under {out or 'the package models'}")


sources_app = typer.Typer(help="Source files: describe a native export so that `motpipe run --source` reads it "
                          "(docs/sources.md).", no_args_is_help=True)
app.add_typer(sources_app, name="sources")


@sources_app.command("check")
def sources_check(
    source: Annotated[str, typer.Argument(help="FILE.yaml[=GLOB]: the source file (the glob replaces its paths).")],
    rows: Annotated[int, typer.Option(help="Mapped rows to print.")] = 10,
    playbook: Annotated[str, typer.Option(help="Playbook whose channels are allowed.")] = "bank_branch",
) -> None:
    """Map the source's files, print the first mapped rows and every error kind found; write nothing.
    Exit 0 when no row is quarantined, 1 when some are."""
    from pipelines.ingest.formats import InputError
    from pipelines.ingest.sources.preview import check_source

    (spec,) = _sources([source])
    try:
        channels = load_playbook(playbook).allowed_channels
        report = check_source(spec, channels, rows)
    except (ValueError, FileNotFoundError) as error:
        _fail(EXIT_USAGE, str(error))
    except InputError as error:
        _fail(EXIT_INPUT, str(error))
    console.print(f"source {spec.name} ({spec.dataset}): {len(report.files)} file(s): {', '.join(report.files)}",
                  soft_wrap=True, highlight=False)
    if report.rows:
        names = [n for n in report.rows[0] if n != "source_file" and any(r[n] not in (None, []) for r in report.rows)]
        table = Table(*names, title=f"first {len(report.rows)} mapped rows", title_justify="left")
        for row in report.rows:
            table.add_row(*("" if row[n] in (None, []) else str(row[n])[:40] for n in names))
        console.print(table)
    c = report.counts
    console.print(f"rows in {c['rows_in']:,}; rows with moments {c['rows_with_moments']:,} -> {c['events_out']:,} {spec.dataset}; "
                  f"rows without moments {c['rows_without_moments']:,}", highlight=False)
    kinds = {k.split(".", 1)[1]: n for k, n in sorted(c.items()) if k.startswith("quarantine.")}
    if not kinds:
        console.print("no row quarantined")
        return
    table = Table("error kind", "rows", "first at", "field", "message", title="quarantined rows", title_justify="left")
    for kind, n in kinds.items():
        path, line, field, message = report.examples[kind]
        table.add_row(kind, f"{n:,}", f"{Path(path).name}:{line}", field or "", message)
    console.print(table)
    raise typer.Exit(1)


@sources_app.command("draft")
def sources_draft(
    path: Annotated[str, typer.Argument(help="An export to look at (CSV of any dialect, JSON Lines, Parquet, XES).")],
    out: Annotated[Optional[str], typer.Option(help="Where to write the draft [default: <name>.source.yaml].")] = None,
    dataset: Annotated[str, typer.Option(help="events or feedback.")] = "events",
) -> None:
    """Sniff the encoding, delimiter, header, column types and timestamp formats; write a draft source file."""
    from pipelines.ingest.formats import InputError
    from pipelines.ingest.sources.draft import draft_path, draft_source

    if dataset not in ("events", "feedback"):
        _fail(EXIT_USAGE, f"--dataset is events or feedback, not {dataset!r}")
    try:
        text = draft_source(path, dataset)
    except InputError as error:
        _fail(EXIT_INPUT, str(error))
    target = Path(out or draft_path(path))
    if target.exists() and out is None:
        _fail(EXIT_USAGE, f"{target} exists; give --out to write elsewhere")
    target.write_text(text, encoding="utf-8")
    console.print(f"wrote {target}: finish the TODOs, then `motpipe sources check {target}`", highlight=False)


def main() -> None:
    try:
        app()
    finally:
        # Exiting, the interpreter's collections walk every object left (Great Expectations, pandas, scipy after a
        # checkpoint: ~0.7 s); frozen objects are skipped. Every output is closed by now.
        gc.freeze()
