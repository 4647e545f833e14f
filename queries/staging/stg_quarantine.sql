-- stg_quarantine: one row per rejected input row (PII-masked raw record, error kind and reason).
-- grain: run_id, dataset, source_file, line_no
-- columns: the `quarantine` table (schemas/tables.py QUARANTINE) plus dt.
-- needs: `set variable motpipe_out = '<the --out directory>';`
create or replace view stg_quarantine as
with source as (
    select * from read_parquet(getvariable('motpipe_out') || '/quarantine/*/*.parquet', hive_partitioning = true)
)
select * from source;
