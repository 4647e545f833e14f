-- int_moments: one row per moment of truth (event), with its numeric moment score.
-- grain: event_id
-- columns: event_id, visit_id, customer_id, person_id (the current person, through int_person_resolution),
--          occurred_at, dt, position_in_visit, moments_in_visit,
--          is_first_moment, is_last_moment, channel, touchpoint, is_playbook_touchpoint, staff_id, location_id,
--          wait_s, duration_s, text, outcome, mot_step, mot_step_name, mot_steps, polarity, moment_score, evidence
-- mot_steps: every step the moment performs (mot_step is the primary one), from schema 1.1 on.
-- moment_score: +1 positive, -1 negative, 0 neutral or untagged (null polarity).
-- is_playbook_touchpoint: the step came from the playbook's touchpoint map (mot_step_source = 'touchpoint').
create or replace view int_moments as
with events as (
    select * from stg_events
),
resolution as (
    select * from int_person_resolution
)
select
    event_id,
    visit_id,
    customer_id,
    coalesce(r.current_person_id, e.person_id, 'c:' || customer_id) as person_id,  -- 'c:': a row of schema 1.0
    occurred_at,
    dt,
    position_in_visit,
    moments_in_visit,
    is_first_moment,
    is_last_moment,
    channel,
    touchpoint,
    coalesce(mot_step_source = 'touchpoint', false) as is_playbook_touchpoint,
    staff_id,
    location_id,
    wait_s,
    duration_s,
    text,
    outcome,
    cast(mot_step as integer) as mot_step,
    mot_step_name,
    mot_steps,
    polarity,
    case polarity when 'positive' then 1 when 'negative' then -1 else 0 end as moment_score,
    evidence
from events as e
left join resolution as r on r.written_person_id = e.person_id;
