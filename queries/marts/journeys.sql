-- journeys: one row per visit (customer journey), with its first and last moment of truth and linked feedback.
-- grain: visit_id
-- columns: visit_id, customer_id (of the first moment), person_id (current person of the first moment), customer_count, first_channel, channels (sorted distinct
--          list), channel_count, started_at, ended_at, duration_s (last minus first occurred_at), dt (local date
--          of the first moment), moments, first_touchpoint, first_mot_step, first_mot_step_name, first_polarity,
--          last_touchpoint, last_mot_step, last_mot_step_name, last_polarity, steps_reached (sorted distinct MOT
--          steps), steps_reached_count, completed_all_steps (all five MOT steps occurred), outcome (the last
--          non-null outcome in the visit), is_resolved, has_feedback, feedback_count, feedback_ids, csat, nps, ces
-- order of moments: position_in_visit (occurred_at, event_id), as stitched by the pipeline.
create or replace view journeys as
with moments as (
    select * from int_moments
),
per_visit as (
    select
        visit_id,
        arg_min(customer_id, position_in_visit) as customer_id,
        arg_min(person_id, position_in_visit) as person_id,
        count(distinct customer_id) as customer_count,
        arg_min(channel, position_in_visit) as first_channel,
        list_sort(list(distinct channel) filter (where channel is not null)) as channels,
        min(occurred_at) as started_at,
        max(occurred_at) as ended_at,
        arg_min(dt, position_in_visit) as dt,
        count(*) as moments,
        arg_min(touchpoint, position_in_visit) as first_touchpoint,
        arg_min(mot_step, position_in_visit) as first_mot_step,
        arg_min(mot_step_name, position_in_visit) as first_mot_step_name,
        arg_min(polarity, position_in_visit) as first_polarity,
        arg_max(touchpoint, position_in_visit) as last_touchpoint,
        arg_max(mot_step, position_in_visit) as last_mot_step,
        arg_max(mot_step_name, position_in_visit) as last_mot_step_name,
        arg_max(polarity, position_in_visit) as last_polarity,
        list_sort(list(distinct mot_step) filter (where mot_step is not null)) as steps_reached,
        arg_max(outcome, position_in_visit) filter (where outcome is not null) as outcome
    from moments
    group by visit_id
)
select
    v.visit_id,
    v.customer_id,
    v.person_id,
    v.customer_count,
    v.first_channel,
    v.channels,
    len(v.channels) as channel_count,
    v.started_at,
    v.ended_at,
    epoch(v.ended_at) - epoch(v.started_at) as duration_s,
    v.dt,
    v.moments,
    v.first_touchpoint,
    v.first_mot_step,
    v.first_mot_step_name,
    v.first_polarity,
    v.last_touchpoint,
    v.last_mot_step,
    v.last_mot_step_name,
    v.last_polarity,
    v.steps_reached,
    len(v.steps_reached) as steps_reached_count,
    list_has_all(v.steps_reached, [1, 2, 3, 4, 5]) as completed_all_steps,
    v.outcome,
    v.outcome = 'resolved' as is_resolved,
    f.visit_id is not null as has_feedback,
    coalesce(f.feedback_count, 0) as feedback_count,
    f.feedback_ids,
    f.csat,
    f.nps,
    f.ces
from per_visit as v
left join int_visit_feedback as f on f.visit_id = v.visit_id;
