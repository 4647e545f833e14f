"""The scheduler examples: the Airflow DAG and the cron line must call motpipe commands that exist.

When Airflow is installed the DAG is loaded with Airflow's own DagBag. Otherwise (the default: Airflow is
not a motpipe dependency) the lighter check documented in docs/deploy.md runs: the DAG file is executed
against stand-in airflow modules that record the tasks, and every motpipe command line in it, rendered
for a date, is parsed by motpipe's own CLI (option names and types), without running it.
"""
from __future__ import annotations

import importlib.util
import re
import shlex
import sys
import types
from pathlib import Path

import pytest
import typer

from pipelines.cli import app
from pipelines.beam_args import unknown_beam_options

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DAG_FILE = EXAMPLES / "airflow" / "motpipe_daily.py"


def parse_motpipe(command_line: str) -> str:
    """Parse `... motpipe <command> args` with the CLI (no execution); return the command name."""
    words = shlex.split(command_line.split(";")[0].split(">>")[0])
    words = words[next(i for i, w in enumerate(words) if w.endswith("motpipe")) + 1:]
    name, *arguments = words
    commands = typer.main.get_command(app).commands
    assert name in commands, f"motpipe has no command {name!r}"
    context = commands[name].make_context(name, arguments)  # raises on unknown options or bad values
    assert unknown_beam_options(context.args) == [], "options that `motpipe run` would pass on to Beam"
    return name


class _Task:
    def __init__(self, task_id, **kwargs):
        self.task_id, self.kwargs, self.downstream = task_id, kwargs, []
        _Task.registry[task_id] = self

    def __rshift__(self, other):
        for task in other if isinstance(other, list) else [other]:
            self.downstream.append(task.task_id)
        return other


def _stub_airflow(monkeypatch):
    _Task.registry = {}

    class DAG:
        def __init__(self, dag_id, **kwargs):
            self.dag_id, self.kwargs = dag_id, kwargs

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    modules = {"airflow": {"DAG": DAG}, "airflow.operators": {}, "airflow.operators.bash": {"BashOperator": _Task},
               "airflow.operators.empty": {"EmptyOperator": _Task}, "airflow.operators.python": {"BranchPythonOperator": _Task}}
    for name, attributes in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        monkeypatch.setitem(sys.modules, name, module)


def render(template: str) -> str:
    return re.sub(r"\{\{\s*var\.value\.(\w+)\s*\}\}", r"/srv/\1", template).replace("{{ ds }}", "2026-10-02")


def test_airflow_dag_loads_and_calls_existing_commands(monkeypatch):
    if importlib.util.find_spec("airflow") is not None:  # the real check where Airflow is installed
        from airflow.models import DagBag

        bag = DagBag(dag_folder=str(DAG_FILE), include_examples=False)
        assert bag.import_errors == {} and "motpipe_daily" in bag.dags
        return
    _stub_airflow(monkeypatch)
    spec = importlib.util.spec_from_file_location("motpipe_daily", DAG_FILE)
    dag_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dag_module)
    tasks = _Task.registry
    assert tasks["run"].downstream == ["check"] and tasks["check"].downstream == ["branch_on_quality"]
    assert tasks["branch_on_quality"].downstream == ["quality_passed", "quality_warnings", "quality_failed"]
    assert parse_motpipe(render(tasks["run"].kwargs["bash_command"])) == "run"
    assert parse_motpipe(render(tasks["check"].kwargs["bash_command"])) == "check"

    class TaskInstance:
        def __init__(self, stdout):
            self.stdout = stdout

        def xcom_pull(self, task_ids):
            return self.stdout

    branches = {code: dag_module.choose_branch(TaskInstance(f"report line\n{code}\n")) for code in ("0", "5", "6", "1")}
    assert branches == {"0": "quality_passed", "5": "quality_warnings", "6": "quality_failed", "1": "quality_failed"}


def test_cron_line_calls_an_existing_command():
    lines = [line for line in (EXAMPLES / "cron" / "motpipe.cron").read_text().splitlines()
             if line and not line.startswith("#") and "=" not in line.split()[0]]
    assert len(lines) == 1
    fields = lines[0].split(None, 5)
    assert len(fields) == 6 and all(re.fullmatch(r"[\d*,/-]+", f) for f in fields[:5])
    command = fields[5].replace('"$(date -d yesterday +\\%F)"', "2026-10-02").replace("$MOTPIPE_HOME", "/opt/motpipe")
    assert parse_motpipe(command.split("&&", 1)[1]) == "run"
