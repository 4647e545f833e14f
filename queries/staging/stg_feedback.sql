-- stg_feedback: one row per post-visit feedback that passed validation and dedup.
-- grain: feedback_id
-- columns: the `feedback` table (schemas/tables.py FEEDBACK) plus dt, the local date partition.
-- needs: `set variable motpipe_out = '<the --out directory>';`
create or replace view stg_feedback as
with source as (
    select * from read_parquet(getvariable('motpipe_out') || '/feedback/*/*.parquet', hive_partitioning = true,
                      union_by_name = true)  -- partitions of schema 1.0 have no person_id
)
select * from source;
