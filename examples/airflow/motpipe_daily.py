"""Apache Airflow DAG: run motpipe for yesterday every night, then the quality checkpoint, and branch
on its exit code (0 passed, 5 only warnings failed, 6 an error-level check failed).

Copy to your DAGs folder and set the Airflow Variables `motpipe_home`, `motpipe_inputs`, `motpipe_out`.
Airflow's `ds` is the logical date (the day being processed); late data of the previous
`--lookback-days` (3) days is rebuilt by every run, so a late file is picked up the next night.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator
from airflow.operators.empty import EmptyOperator
from airflow.operators.python import BranchPythonOperator

MOTPIPE = "{{ var.value.motpipe_home }}/.venv/bin/motpipe"
OUT = "{{ var.value.motpipe_out }}"
INPUTS = "{{ var.value.motpipe_inputs }}"

RUN = f"{MOTPIPE} run --date {{{{ ds }}}} -t '{INPUTS}/touchpoints/*' -f '{INPUTS}/feedback/*' --out {OUT} --no-check"
# the checkpoint's exit code is the last line of stdout, pushed to XCom; the task itself never fails on 5/6
CHECK = f"{MOTPIPE} check --out {OUT}; echo $?"
QUALITY_BRANCH = {"0": "quality_passed", "5": "quality_warnings"}


def choose_branch(ti) -> str:
    """Task to follow for the checkpoint's exit code; anything but 0 or 5 is an error-level failure."""
    code = (ti.xcom_pull(task_ids="check") or "").strip().splitlines()[-1:] or ["?"]
    return QUALITY_BRANCH.get(code[0], "quality_failed")


with DAG(
    dag_id="motpipe_daily",
    start_date=datetime(2026, 10, 1),
    schedule="15 2 * * *",  # 02:15 every night, for the previous day
    catchup=True,  # backfills run day by day, oldest first
    max_active_runs=1,  # one writer per output directory (motpipe also holds a lock)
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    tags=["motpipe"],
) as dag:
    run = BashOperator(task_id="run", bash_command=RUN)
    check = BashOperator(task_id="check", bash_command=CHECK, do_xcom_push=True)
    branch = BranchPythonOperator(task_id="branch_on_quality", python_callable=choose_branch)
    passed = EmptyOperator(task_id="quality_passed")
    warnings = BashOperator(task_id="quality_warnings", bash_command=f"echo 'motpipe quality warnings for {{{{ ds }}}}: see {OUT}/_quality'")
    failed = BashOperator(task_id="quality_failed", bash_command=f"echo 'motpipe quality errors for {{{{ ds }}}}' >&2; exit 1")
    run >> check >> branch >> [passed, warnings, failed]
