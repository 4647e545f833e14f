-- daily_quality: quarantined and duplicate rows per day, dataset and error kind, with the run's quality results.
-- grain: dt, run_id, dataset, issue ('quarantine' | 'duplicate'), error_kind ('exact_duplicate' for duplicates)
-- columns: dt, run_id, dataset, issue, error_kind, rows, written_rows (rows of the dataset written for that dt),
--          has_quality_results, quality_expectations, quality_failed, failed_expectations (sorted list of the
--          expectations that failed in that run for that dataset)
-- quality results come from stg_quality_results (optional table, empty when absent) and are joined on
-- run_id and dataset.
create or replace view daily_quality as
with issues as (
    select dt, run_id, dataset, 'quarantine' as issue, error_kind, count(*) as rows
    from stg_quarantine
    group by dt, run_id, dataset, error_kind
    union all
    select dt, run_id, dataset, 'duplicate' as issue, 'exact_duplicate' as error_kind, count(*) as rows
    from stg_duplicates
    group by dt, run_id, dataset
),
written as (
    select dt, 'events' as dataset, count(*) as written_rows from stg_events group by dt
    union all
    select dt, 'feedback' as dataset, count(*) as written_rows from stg_feedback group by dt
),
quality as (
    select
        cast(run_id as varchar) as run_id,
        dataset,
        count(*) as quality_expectations,
        count(*) filter (where not success) as quality_failed,
        list_sort(list(distinct expectation) filter (where not success)) as failed_expectations
    from stg_quality_results
    group by all
)
select
    i.dt,
    i.run_id,
    i.dataset,
    i.issue,
    i.error_kind,
    i.rows,
    coalesce(w.written_rows, 0) as written_rows,
    q.run_id is not null as has_quality_results,
    q.quality_expectations,
    q.quality_failed,
    q.failed_expectations
from issues as i
left join written as w on w.dt = i.dt and w.dataset = i.dataset
left join quality as q on q.run_id = i.run_id and q.dataset = i.dataset
order by i.dt, i.dataset, i.issue, i.error_kind, i.run_id;
