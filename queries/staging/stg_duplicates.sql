-- stg_duplicates: one row per exact repeat of an event or feedback row, with the row that was kept.
-- grain: run_id, dataset, source_file, line_no
-- columns: the `duplicates` table (schemas/tables.py DUPLICATES) plus dt.
-- needs: `set variable motpipe_out = '<the --out directory>';`
create or replace view stg_duplicates as
with source as (
    select * from read_parquet(getvariable('motpipe_out') || '/duplicates/*/*.parquet', hive_partitioning = true)
)
select * from source;
