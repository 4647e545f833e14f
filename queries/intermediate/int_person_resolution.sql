-- int_person_resolution: the current person of every person id that a run may have written to events or feedback.
-- grain: written_person_id
-- columns: written_person_id, current_person_id
-- A person id is `p_` + the hash of its anchor customer id, and the newest identity_map snapshot holds that customer
-- id's current person, so an old partition's person id resolves in one step, however many merges happened since.
-- A person id without a row here (a customer id that never linked) is its own current person.
create or replace view int_person_resolution as
with map as (
    select * from stg_identity_map
)
select
    'p_' || identifier_hash as written_person_id,
    person_id as current_person_id
from map
where identifier_type = 'customer_id';
