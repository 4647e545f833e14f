-- stg_events: one row per touchpoint event (moment of truth) that passed validation and dedup.
-- grain: event_id
-- columns: the `events` table (schemas/tables.py EVENTS) plus dt, the local date partition; files of an older
--          schema version read with nulls in the columns they lack (union_by_name).
-- needs: `set variable motpipe_out = '<the --out directory>';`
create or replace view stg_events as
with source as (
    select * from read_parquet(getvariable('motpipe_out') || '/events/*/*.parquet', hive_partitioning = true, union_by_name = true)
)
select * from source;
