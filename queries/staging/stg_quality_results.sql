-- stg_quality_results: one row per data-quality expectation evaluated on one dataset in one run.
-- grain: run_id, dataset, expectation
-- columns: the `quality_results` table as written by the data-quality check (pipelines/quality/checkpoint.py
--          RESULTS_SCHEMA: run_id, checked_at, dataset, expectation, expectation_type, column, severity, success,
--          observed_value, element_count, unexpected_count, sampled).
-- needs: `set variable motpipe_out = '<the --out directory>';`
-- note: the table is optional. When OUT/quality_results/ holds no file, `motpipe views` creates this view
--       as an empty, typed relation instead (pipelines/views.py, QUALITY_RESULTS_EMPTY); re-run
--       `motpipe views` after the first quality check to pick the files up.
create or replace view stg_quality_results as
with source as (
    select * from read_parquet(getvariable('motpipe_out') || '/quality_results/*/*.parquet',
                               hive_partitioning = true, union_by_name = true)
)
select * from source;
