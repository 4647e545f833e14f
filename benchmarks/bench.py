"""Benchmark `motpipe run` against a DuckDB SQL baseline on the same generated files.

    python -m benchmarks.bench --events 1000000                    # make bench N=1000000
    python -m benchmarks.bench --events 200000 --shapes production --runs motpipe-check,baseline --keep

For each of `--shapes` (`motpipe sample --shape`: `mixed`, the generator's several files and formats, mostly
gzip; `production`, one big uncompressed JSON Lines file per dataset with 1.5% faulty lines spread evenly),
generates N touchpoint events and N/10 feedback rows into a work directory, then runs each of `--runs` as a
subprocess and records its wall time, events per second (input event rows / wall s) and peak resident memory of
the whole process tree (VmRSS summed over the process and its descendants, sampled from /proc every 0.2 s). Runs:

  motpipe-check    motpipe run, the default: the pipeline and its Great Expectations checkpoint (the headline)
  motpipe          motpipe run --no-check (the pipeline only; DirectRunner)
  motpipe-dask     motpipe run --no-check --runner dask (a local Dask cluster of one worker process per CPU)
  baseline         benchmarks/baseline.sql rendered from the playbook and executed by DuckDB (events only)

Writes benchmarks/results/<date>-<N>[-<shape>].json (no suffix for `mixed`) and benchmarks/results/latest.md
(every shape of this invocation) and prints the tables. Exits 1 if motpipe and the baseline disagree on the
events written or the event rows quarantined (or a run fails).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: .venv/bin/python benchmarks/bench.py
    sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
RUNS = ("motpipe-check", "motpipe", "motpipe-dask", "baseline")
RUN_OPTIONS = {"motpipe": ["--no-check"], "motpipe-check": [], "motpipe-dask": ["--no-check", "--runner", "dask"]}
SHAPES = ("mixed", "production")
CHECKPOINT_TIME = re.compile(r"checks passed in ([0-9.]+) s")  # the checkpoint's line in `motpipe run`'s output
SAMPLE_INTERVAL_S = 0.2


# --- memory of a process tree ---------------------------------------------------------------------
def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])  # fields after "(comm)": state ppid ...
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def tree_rss_bytes(root: int) -> int:
    """VmRSS summed over `root` and all its descendants (0 for processes that are gone)."""
    tree, total, stack = _children(), 0, [root]
    while stack:
        pid = stack.pop()
        stack += tree.get(pid, [])
        try:
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:  # the process ended between listing and reading: it holds no memory any more
            continue
    return total


def measure(cmd: list[str], log: Path, env: dict | None = None) -> dict:
    """Run `cmd`, sampling its process tree's RSS; wall time, CPU time (user + system of the process and the
    descendants it waited for, from wait4: less sensitive than wall time to other jobs on the machine), peak RSS
    and exit code."""
    with open(log, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        peak = 0
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, tree_rss_bytes(proc.pid))
                stop.wait(SAMPLE_INTERVAL_S)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        code = proc.returncode = os.waitstatus_to_exitcode(status)
        stop.set()
        sampler.join()
    return {"command": " ".join(cmd), "wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(peak / 2**20, 1), "exit_code": code, "log": str(log)}


# --- counts ------------------------------------------------------------------------------------------
def motpipe_counts(out: Path) -> dict:
    summaries = sorted((out / "_runs").glob("*.json"))
    if not summaries:
        return {}
    s = json.loads(summaries[-1].read_text(encoding="utf-8"))
    ev = s["events"]
    return {"input_rows": ev["input_rows"], "events_written": ev["output_rows"], "quarantined": ev["quarantine_rows"],
            "duplicates": ev["duplicate_rows"], "quarantine_by_kind": ev["quarantine_by_kind"],
            "feedback_written": s["feedback"]["output_rows"], "visits": ev["visits"]}


def _parquet(root: Path, table: str, where: str = "") -> str:
    return f"(SELECT * FROM read_parquet('{root}/{table}/*/*.parquet', hive_partitioning = true) {where})"


def baseline_counts(out: Path) -> dict:
    import duckdb

    con = duckdb.connect()
    count = lambda table: con.execute(f"SELECT count(*) FROM {_parquet(out, table)}").fetchone()[0]  # noqa: E731
    by_kind = dict(con.execute(f"SELECT error_kind, count(*) FROM {_parquet(out, 'quarantine')} GROUP BY 1 ORDER BY 1").fetchall())
    written, quarantined, duplicates = count("events"), count("quarantine"), count("duplicates")
    return {"input_rows": written + quarantined + duplicates, "events_written": written, "quarantined": quarantined,
            "duplicates": duplicates, "quarantine_by_kind": by_kind}


def agreement(motpipe_out: Path, baseline_out: Path) -> dict:
    """Row-level agreement of the two outputs: the same quarantined (file, line, kind, field), the same exact
    duplicates, the same written (event_id, file, line, dt); and the share of events with the same tags."""
    import duckdb

    con = duckdb.connect()
    m = lambda t: _parquet(motpipe_out, t, "WHERE dataset = 'events'" if t != "events" else "")  # noqa: E731
    b = lambda t: _parquet(baseline_out, t)  # noqa: E731

    def differ(table: str, cols: str) -> int:
        return con.execute(f"SELECT (SELECT count(*) FROM (SELECT {cols} FROM {m(table)} EXCEPT ALL SELECT {cols} FROM {b(table)}))"
                       f" + (SELECT count(*) FROM (SELECT {cols} FROM {b(table)} EXCEPT ALL SELECT {cols} FROM {m(table)}))").fetchone()[0]

    tags = "list_sort(list_transform({}.pzb_tags, lambda t: t.dimension || ':' || t.polarity))"
    same = con.execute(
        f"SELECT avg((m.mot_step IS NOT DISTINCT FROM b.mot_step)::INT), avg((m.abc_facet IS NOT DISTINCT FROM b.abc_facet)::INT),"
        f" avg((m.polarity = b.polarity)::INT), avg(({tags.format('m')} = {tags.format('b')})::INT)"
        f" FROM {m('events')} m JOIN {b('events')} b USING (event_id)").fetchone()
    return {
        "quarantine_rows_differing": differ("quarantine", "source_file, line_no, error_kind, error_field"),
        "duplicate_rows_differing": differ("duplicates", "source_file, line_no, kept_source_file, kept_line_no"),
        "event_rows_differing": differ("events", "event_id, source_file, line_no, dt"),
        "same_mot_step": round(same[0], 4), "same_abc_facet": round(same[1], 4),
        "same_polarity": round(same[2], 4), "same_pzb_tags": round(same[3], 4),
    }


# --- the runs ----------------------------------------------------------------------------------------
def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
        dirty = [line for line in status.splitlines() if "benchmarks/results/" not in line]  # our own output
        return f"{head} dirty" if dirty else head
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict:
    mem_kb = next((int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal:")), 0)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    from importlib.metadata import version

    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_gb": round(mem_kb / 2**20, 1), "python": platform.python_version(),
            "beam": version("apache-beam"), "duckdb": version("duckdb"), "pyarrow": version("pyarrow")}


def _same_sample(manifest: Path, events: int, shape: str) -> bool:
    if not manifest.exists():
        return False
    m = json.loads(manifest.read_text())
    return m["events"]["rows"] == events and m.get("shape", "mixed") == shape


def checkpoint_seconds(log: Path) -> float | None:
    """The checkpoint's own time as `motpipe run` printed it (None if it did not run)."""
    found = CHECKPOINT_TIME.findall(log.read_text(encoding="utf-8", errors="replace"))
    return float(found[-1]) if found else None


def run_benchmark(events: int, runs: list[str], work: Path, playbook: str, reuse_input: bool = False,
                  shape: str = "mixed") -> dict:
    bin_dir = Path(sys.executable).parent
    motpipe = str(bin_dir / "motpipe") if (bin_dir / "motpipe").exists() else "motpipe"
    data = work / ("input" if shape == "mixed" else f"input-{shape}")
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "events": events, "shape": shape,
              "feedback": round(events * 0.1), "playbook": playbook, "commit": git_commit(), "machine": machine(),
              "runs": {}}
    if reuse_input and _same_sample(data / "manifest.json", events, shape):
        print(f"reusing the {events:,} events + feedback rows in {data}", flush=True)
        result["generate_s"] = None  # generated by an earlier `motpipe sample` (the same seed gives the same files)
    else:
        print(f"generating {events:,} events + {round(events * 0.1):,} feedback rows ({shape}) into {data} ...", flush=True)
        shutil.rmtree(data, ignore_errors=True)
        started = time.perf_counter()
        subprocess.run([motpipe, "sample", "--events", str(events), "--out", str(data), "--playbook", playbook,
                        "--shape", shape], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
        result["generate_s"] = round(time.perf_counter() - started, 1)
    result["input_bytes"] = sum(f.stat().st_size for f in data.rglob("*") if f.is_file() and f.name != "manifest.json")
    touchpoints, feedback = str(data / "touchpoints" / "*"), str(data / "feedback" / "*")

    for name in runs:
        out = work / f"out-{name}" if shape == "mixed" else work / shape / f"out-{name}"
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(out, ignore_errors=True)
        if name.startswith("motpipe"):
            cmd = [motpipe, "run", "-t", touchpoints, "-f", feedback, "--out", str(out), "--playbook", playbook,
                   *RUN_OPTIONS[name]]
        elif name == "baseline":
            from benchmarks.baseline import render

            out.mkdir(parents=True)
            sql = work / "baseline.sql"
            sql.write_text(render([touchpoints], str(out), playbook), encoding="utf-8")
            cmd = [sys.executable, "-m", "benchmarks.baseline", "run", str(sql)]
        else:
            raise SystemExit(f"unknown run {name!r}; choose from {', '.join(RUNS)}")
        print(f"running {name}: {' '.join(cmd)}", flush=True)
        figures = measure(cmd, out.parent / f"{name}.log")
        # motpipe-check exits 5/6 when quality checks fail: the data is published, the timing holds
        ok = figures["exit_code"] == 0 or (name == "motpipe-check" and figures["exit_code"] in (5, 6))
        figures["events_per_s"] = round(events / figures["wall_s"]) if figures["wall_s"] else None
        figures["counts"] = (baseline_counts(out) if name == "baseline" else motpipe_counts(out)) if ok else {}
        figures["ok"] = ok
        if name == "motpipe-check":
            figures["checkpoint_s"] = checkpoint_seconds(Path(figures["log"]))
        result["runs"][name] = figures
        print(f"  {figures['wall_s']:.1f} s, {figures['events_per_s']:,} events/s, peak {figures['peak_rss_mb']:,.0f} MB,"
              f" exit {figures['exit_code']}", flush=True)

    base = result["runs"].get("baseline")
    compared = [name for name in ("motpipe-check", "motpipe") if result["runs"].get(name, {}).get("ok")]
    if base and base["ok"] and compared:
        for name in compared:  # the headline: the default run (with its checkpoint) when it ran
            result.setdefault("ratio_wall", round(result["runs"][name]["wall_s"] / base["wall_s"], 2))
            result.setdefault("ratio_peak_rss", round(result["runs"][name]["peak_rss_mb"] / base["peak_rss_mb"], 2)
                              if base["peak_rss_mb"] else None)
        result["ratio_wall_by_run"] = {name: round(result["runs"][name]["wall_s"] / base["wall_s"], 2) for name in compared}
        result["ratio_cpu_by_run"] = {name: round(result["runs"][name]["cpu_s"] / base["cpu_s"], 2) for name in compared
                                      if base["cpu_s"]}
        result["compared_run"] = compared[0]
        mc, bc = result["runs"][compared[0]]["counts"], base["counts"]
        result["counts_agree"] = mc["events_written"] == bc["events_written"] and mc["quarantined"] == bc["quarantined"]
        out_dir = (lambda n: work / f"out-{n}") if shape == "mixed" else (lambda n: work / shape / f"out-{n}")
        result["agreement"] = agreement(out_dir(compared[0]), out_dir("baseline"))
    return result


# --- report ------------------------------------------------------------------------------------------
COLUMNS = ("run", "wall s", "cpu s", "checkpoint s", "events/s", "peak RSS MB", "events written", "quarantined",
           "duplicates", "exit")
SHAPE_NOTES = {"mixed": "the generator's mixed shape: JSONL + gzip JSONL + gzip CSV events, gzip JSONL + CSV feedback",
               "production": "production shape: one uncompressed JSON Lines file per dataset, 1.5% faulty lines spread "
                             "evenly, 0.5% exact duplicates"}


def table_rows(result: dict) -> list[list[str]]:
    rows = []
    for name, r in result["runs"].items():
        c = r.get("counts") or {}
        checkpoint = r.get("checkpoint_s")
        rows.append([name, f"{r['wall_s']:.1f}", f"{r['cpu_s']:.1f}" if "cpu_s" in r else "-",
                     "-" if checkpoint is None else f"{checkpoint:.1f}",
                     f"{r['events_per_s']:,}", f"{r['peak_rss_mb']:,.0f}",
                     f"{c['events_written']:,}" if c else "-", f"{c['quarantined']:,}" if c else "-",
                     f"{c['duplicates']:,}" if c else "-", str(r["exit_code"])])
    return rows


def title(result: dict) -> str:
    return f"{result['events']:,} events, {result.get('shape', 'mixed')} shape"


def notes(result: dict) -> list[str]:
    shape = result.get("shape", "mixed")
    lines = [f"{result['events']:,} events + {result['feedback']:,} feedback rows ({result['input_bytes'] / 2**20:,.0f} MB of "
             f"input; {SHAPE_NOTES[shape]}), playbook {result['playbook']}, commit {result['commit']}, {result['date']}",
             "machine: {cpus} CPUs ({cpu}), {memory_gb} GB RAM; Python {python}, Beam {beam}, DuckDB {duckdb}, "
             "pyarrow {pyarrow}".format(**result["machine"])]
    check = result["runs"].get("motpipe-check", {})
    if check.get("checkpoint_s") is not None:
        lines.append(f"motpipe-check: the quality checkpoint took {check['checkpoint_s']:.1f} s of its {check['wall_s']:.1f} s "
                     f"({check['checkpoint_s'] / check['wall_s']:.0%})")
    if "ratio_wall" in result:
        by_run = ", ".join(f"{name} {ratio}x" for name, ratio in result["ratio_wall_by_run"].items())
        cpu = ", ".join(f"{name} {ratio}x" for name, ratio in result.get("ratio_cpu_by_run", {}).items())
        lines.append(f"motpipe / baseline: wall time {by_run}; CPU time {cpu}; peak RSS {result['ratio_peak_rss']}x; "
                     f"events written and quarantined {'agree' if result['counts_agree'] else 'DIFFER'}")
        a = result["agreement"]
        lines.append(f"row-level: {a['quarantine_rows_differing']} quarantine rows, {a['duplicate_rows_differing']} duplicate "
                     f"rows, {a['event_rows_differing']} event rows differ (file, line, kind / dt); same tags: "
                     f"mot_step {a['same_mot_step']:.1%}, abc_facet {a['same_abc_facet']:.1%}, polarity "
                     f"{a['same_polarity']:.1%}, pzb_tags {a['same_pzb_tags']:.1%}")
    lines.append("motpipe also processes the feedback rows; the baseline reads events only (docs/performance.md)")
    return lines


def markdown(result: dict) -> str:
    out = [f"# Benchmark: {title(result)}", "", "| " + " | ".join(COLUMNS) + " |",
           "|" + "|".join("---" if c == "run" else "---:" for c in COLUMNS) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in table_rows(result)]
    out += [""] + [f"- {line}" for line in notes(result)]
    out += ["", "Produced by `make bench N=...` (benchmarks/bench.py); method and profile: docs/performance.md.", ""]
    return "\n".join(out)


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"motpipe benchmark, {title(result)}", title_justify="left")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "run" else "right")
    for row in table_rows(result):
        table.add_row(*row)
    console = Console(width=None if sys.stdout.isatty() else 130)
    console.print(table)
    for line in notes(result):
        console.print(line, highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, required=True, help="touchpoint events to generate (feedback: N/10)")
    parser.add_argument("--runs", default="motpipe-check,motpipe,baseline", help=f"comma-separated, from {', '.join(RUNS)}")
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated input shapes, from {', '.join(SHAPES)}")
    parser.add_argument("--playbook", default="bank_branch")
    parser.add_argument("--work", help="work directory (default: a new temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (inputs, outputs, logs)")
    parser.add_argument("--reuse-input", action="store_true",
                        help="with --work: use WORK/input when it holds a sample of N events (skips generating it)")
    parser.add_argument("--results", default=str(RESULTS), help="where to write <date>-<N>.json and latest.md")
    args = parser.parse_args(argv)
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    unknown = [r for r in runs if r not in RUNS]
    if unknown:
        parser.error(f"unknown run(s) {', '.join(unknown)}; choose from {', '.join(RUNS)}")
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    if not shapes or any(s not in SHAPES for s in shapes):
        parser.error(f"--shapes {args.shapes!r}: choose from {', '.join(SHAPES)}")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="motpipe-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        measured = [run_benchmark(args.events, runs, work, args.playbook, args.reuse_input, shape) for shape in shapes]
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    code = 0
    for result in measured:
        result["work"] = str(work) if args.keep else None
        suffix = "" if result["shape"] == "mixed" else f"-{result['shape']}"
        path = results / f"{result['date'][:10]}-{args.events}{suffix}.json"
        path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print_table(result)
        print(f"wrote {path}")
        code = max(code, verdict(result, work if args.keep else None))
    (results / "latest.md").write_text("\n".join(markdown(result) for result in measured), encoding="utf-8")
    print(f"wrote {results / 'latest.md'}")
    return code


def verdict(result: dict, work: Path | None) -> int:
    """1 (and why on stderr) if a run failed or motpipe and the baseline disagree, else 0."""
    failed = [name for name, r in result["runs"].items() if not r["ok"]]
    if failed:
        print(f"FAILED ({title(result)}): {', '.join(failed)} exited with an error (see the logs"
              f"{' in ' + str(work) if work else ''})", file=sys.stderr)
        return 1
    if result.get("counts_agree") is False:
        m = result["runs"][result["compared_run"]]["counts"]
        b = result["runs"]["baseline"]["counts"]
        print(f"FAILED ({title(result)}): motpipe and the baseline disagree: events written {m['events_written']:,} vs "
              f"{b['events_written']:,}, quarantined {m['quarantined']:,} vs {b['quarantined']:,}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
