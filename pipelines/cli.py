"""The `motpipe` command line: parsing and printing only; the work is in pipelines.pipeline.

Exit codes: 0 success; 1 the pipeline failed; 2 bad usage or settings; 3 an input cannot be read;
4 the counts of a run do not reconcile; 7 another run holds the output directory's lock.
"""
from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from pipelines.config import PSEUDONYMIZE_KEY_ENV, RunConfig
from pipelines.playbook import list_playbooks, load_playbook

EXIT_FAILED, EXIT_USAGE, EXIT_INPUT, EXIT_RECONCILIATION = 1, 2, 3, 4
EXIT_LOCKED = 7

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
    touchpoints: Annotated[list[str], typer.Option("--touchpoints", "-t", help="Touchpoint event file or glob (repeatable).")],
    out: Annotated[str, typer.Option(help="Output directory (local or any Beam filesystem).")],
    feedback: Annotated[Optional[list[str]], typer.Option("--feedback", "-f", help="Feedback file or glob (repeatable).")] = None,
    playbook: Annotated[str, typer.Option(help="Built-in playbook name or a YAML/JSON file.")] = "bank_branch",
    gap_minutes: Annotated[float, typer.Option(help="Inactivity gap that starts a new visit.")] = 30.0,
    timezone: Annotated[str, typer.Option(help="Zone of naive timestamps and of the dt partitions.")] = "UTC",
    link_window_days: Annotated[float, typer.Option(help="How long after a visit feedback still links to it.")] = 7.0,
    pseudonymize_key: Annotated[Optional[str], typer.Option(envvar=PSEUDONYMIZE_KEY_ENV, show_envvar=True,
                                help="Key for a keyed hash of customer_id (ids are kept when unset).")] = None,
    restricted_out: Annotated[Optional[str], typer.Option(help="Where unmasked quarantined rows go [default: OUT/_restricted].")] = None,
    run_id: Annotated[Optional[str], typer.Option(help="Run id [default: window + hash of inputs and settings].")] = None,
    date_: Annotated[Optional[str], typer.Option("--date", help="Process one day (YYYY-MM-DD, local date).")] = None,
    start: Annotated[Optional[str], typer.Option(help="First day of a backfill window (YYYY-MM-DD).")] = None,
    end: Annotated[Optional[str], typer.Option(help="Last day of a backfill window (YYYY-MM-DD).")] = None,
    lookback_days: Annotated[int, typer.Option(help="Days before the window that are rebuilt too (late data).")] = 3,
    buckets: Annotated[int, typer.Option(help="Hash buckets of the dedup and stitching shuffles.")] = 16,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Beam's log.")] = False,
) -> None:
    """Run the pipeline. Arguments it does not know (e.g. --runner=...) go to Beam."""
    logging.getLogger().setLevel(logging.INFO if verbose else logging.ERROR)
    logging.getLogger("apache_beam").setLevel(logging.INFO if verbose else logging.CRITICAL)  # failures are reported below
    from pipelines.io import InputError
    from pipelines.pipeline import ReconciliationError
    from pipelines.pipeline import run as run_pipeline
    from pipelines.runs import LockedError

    settings = dict(touchpoints=touchpoints, feedback=feedback or [], out=out, playbook=playbook, gap_minutes=gap_minutes,
                    timezone=timezone, link_window_days=link_window_days, pseudonymize_key=pseudonymize_key,
                    restricted_out=restricted_out, buckets=buckets, lookback_days=lookback_days,
                    start=date_ or start, end=date_ or end)
    if date_ and (start or end):
        _fail(EXIT_USAGE, "use either --date or --start/--end")
    if run_id:
        settings["run_id"] = run_id
    try:
        config = RunConfig(**settings)
        load_playbook(playbook)
    except ValidationError as error:
        _fail(EXIT_USAGE, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()))
    except (ValueError, FileNotFoundError) as error:
        _fail(EXIT_USAGE, str(error))
    try:
        with console.status(f"running pipeline ({config.playbook}) on {config.out} ..."):
            summary = run_pipeline(config, ctx.args)
    except InputError as error:
        _fail(EXIT_INPUT, str(error))
    except ReconciliationError as error:
        _fail(EXIT_RECONCILIATION, str(error))
    except LockedError as error:
        _fail(EXIT_LOCKED, str(error))
    except Exception as error:  # a Beam failure: show its last line, the full trace with --verbose
        if verbose:
            raise
        message = str(error).strip().splitlines()
        _fail(EXIT_FAILED, f"pipeline failed: {message[-1] if message else type(error).__name__} (rerun with -v for details)")
    _print_summary(summary)


@app.command()
def sample(
    out: Annotated[Path, typer.Option(help="Directory for touchpoints/, feedback/ and manifest.json.")],
    events: Annotated[int, typer.Option(min=1, help="Touchpoint rows to write, bad rows and duplicates included.")] = 5000,
    playbook: Annotated[str, typer.Option(help="Playbook whose touchpoints the journeys follow.")] = "bank_branch",
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bytes).")] = 7,
    feedback_ratio: Annotated[float, typer.Option(min=0, help="Feedback rows per touchpoint row.")] = 0.1,
    bad_share: Annotated[float, typer.Option(min=0, max=0.5, help="Share of injected bad rows.")] = 0.02,
    duplicate_share: Annotated[float, typer.Option(min=0, max=0.5, help="Share of injected duplicates.")] = 0.02,
    start: Annotated[str, typer.Option(help="First day of the generated visits (YYYY-MM-DD).")] = "2026-10-01",
    days: Annotated[int, typer.Option(min=1, help="Number of days the visits span.")] = 7,
) -> None:
    """Generate realistic sample inputs with a known share of bad rows and duplicates."""
    from pipelines.sample import generate_sample

    try:
        first_day = date.fromisoformat(start)
    except ValueError:
        _fail(EXIT_USAGE, f"--start {start!r} is not a date (YYYY-MM-DD)")
    manifest = generate_sample(out, events, playbook=playbook, seed=seed, feedback_ratio=feedback_ratio,
                               bad_share=bad_share, duplicate_share=duplicate_share, start=first_day, days=days)
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

    history = read_runs(out).to_pylist()
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


def main() -> None:
    app()
