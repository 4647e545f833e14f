-- stg_identity_map: the newest identity_map snapshot: the current person of every identifier (keyed hashes only).
-- grain: identifier_type, identifier_hash
-- columns: the `identity_map` table (schemas/tables.py IDENTITY_MAP): identifier_type, identifier_hash, person_id,
--          first_seen, changed_on, run_id, schema_version, plus dt (the day of the snapshot).
-- needs: `set variable motpipe_out = '<the --out directory>';` (an empty view when no run has written a snapshot)
create or replace view stg_identity_map as
with snapshots as (
    select * from read_parquet(getvariable('motpipe_out') || '/identity_map/*/*.parquet', hive_partitioning = true)
)
select * from snapshots
where dt = (select max(dt) from snapshots);
