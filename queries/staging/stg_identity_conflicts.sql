-- stg_identity_conflicts: why customer ids were not merged, from the newest identity_conflicts snapshot.
-- grain: kind, identifier_type, identifier_hash, person_id
-- columns: the `identity_conflicts` table (schemas/tables.py IDENTITY_CONFLICTS): kind (shared_identifier |
--          person_cap), identifier_type, identifier_hash, person_id, customers, identifiers, limit, run_id,
--          schema_version, plus dt (the day of the snapshot).
-- needs: `set variable motpipe_out = '<the --out directory>';` (an empty view when no run has written a snapshot)
create or replace view stg_identity_conflicts as
with snapshots as (
    select * from read_parquet(getvariable('motpipe_out') || '/identity_conflicts/*/*.parquet', hive_partitioning = true)
)
select * from snapshots
where dt = (select max(dt) from snapshots);
