-- person_journeys: one row per person journey: a person's visits, across channels and customer ids, in time order,
--                  each starting at most the journey gap after the end of the ones before it.
-- grain: person_journey_id
-- columns: person_journey_id (person_id || '/' || journey_no), person_id, journey_no (1, 2, ... per person),
--          started_at (first moment of the whole journey), ended_at (last moment), duration_s, dt (local date of the
--          first moment), visits, visit_ids (in order), customer_ids (sorted distinct), customer_count, moments,
--          first_channel, first_touchpoint, first_mot_step_name, first_polarity, last_channel, last_touchpoint,
--          last_mot_step_name, last_polarity, channels (channel of each moment in order, consecutive repeats
--          collapsed: app > phone > branch), channel_count (distinct), channel_switches (moments whose channel
--          differs from the moment before), outcome (last non-null), is_resolved, feedback_count, csat, nps, ces
--          (means over the feedback linked to its visits)
-- journey gap: see int_person_visits (default 7 days: `motpipe views --journey-gap-days N`).
-- order of moments: occurred_at, then visit order, then position_in_visit.
create or replace view person_journeys as
with numbered as (
    select * from int_person_visits
),
moments as (
    select m.* exclude (person_id), n.person_id, n.journey_no, n.visit_order, n.person_journey_id
    from int_moments as m
    join numbered as n on n.visit_id = m.visit_id
),
switches as (
    select
        *,
        lag(channel) over (partition by person_id, journey_no
                           order by occurred_at, visit_order, position_in_visit) as previous_channel
    from moments
),
per_journey as (
    select
        person_id,
        journey_no,
        min(occurred_at) as started_at,
        max(occurred_at) as ended_at,
        arg_min(dt, {'at': occurred_at, 'visit': visit_order, 'position': position_in_visit}) as dt,
        count(distinct visit_id) as visits,
        list_sort(list(distinct customer_id)) as customer_ids,
        count(*) as moments,
        arg_min(channel, {'at': occurred_at, 'visit': visit_order, 'position': position_in_visit}) as first_channel,
        arg_min(touchpoint, {'at': occurred_at, 'visit': visit_order, 'position': position_in_visit}) as first_touchpoint,
        arg_min(mot_step_name, {'at': occurred_at, 'visit': visit_order, 'position': position_in_visit}) as first_mot_step_name,
        arg_min(polarity, {'at': occurred_at, 'visit': visit_order, 'position': position_in_visit}) as first_polarity,
        arg_max(channel, {'at': occurred_at, 'visit': visit_order, 'position': position_in_visit}) as last_channel,
        arg_max(touchpoint, {'at': occurred_at, 'visit': visit_order, 'position': position_in_visit}) as last_touchpoint,
        arg_max(mot_step_name, {'at': occurred_at, 'visit': visit_order, 'position': position_in_visit}) as last_mot_step_name,
        arg_max(polarity, {'at': occurred_at, 'visit': visit_order, 'position': position_in_visit}) as last_polarity,
        list(channel order by occurred_at, visit_order, position_in_visit)
            filter (where previous_channel is null or channel <> previous_channel) as channels,
        count(distinct channel) as channel_count,
        count(*) filter (where previous_channel is not null and channel <> previous_channel) as channel_switches,
        arg_max(outcome, {'at': occurred_at, 'visit': visit_order, 'position': position_in_visit})
            filter (where outcome is not null) as outcome
    from switches
    group by person_id, journey_no
),
journey_visits as (
    select person_id, journey_no, list(visit_id order by visit_order) as visit_ids
    from numbered
    group by person_id, journey_no
),
journey_feedback as (
    select n.person_id, n.journey_no, count(*) as feedback_count, avg(f.csat) as csat, avg(f.nps) as nps,
           avg(f.ces) as ces
    from stg_feedback as f
    join numbered as n on n.visit_id = f.visit_id
    group by n.person_id, n.journey_no
)
select
    j.person_id || '/' || j.journey_no as person_journey_id,
    j.person_id,
    j.journey_no,
    j.started_at,
    j.ended_at,
    epoch(j.ended_at) - epoch(j.started_at) as duration_s,
    j.dt,
    j.visits,
    v.visit_ids,
    j.customer_ids,
    len(j.customer_ids) as customer_count,
    j.moments,
    j.first_channel,
    j.first_touchpoint,
    j.first_mot_step_name,
    j.first_polarity,
    j.last_channel,
    j.last_touchpoint,
    j.last_mot_step_name,
    j.last_polarity,
    j.channels,
    j.channel_count,
    j.channel_switches,
    j.outcome,
    j.outcome = 'resolved' as is_resolved,
    coalesce(f.feedback_count, 0) as feedback_count,
    f.csat,
    f.nps,
    f.ces
from per_journey as j
join journey_visits as v on v.person_id = j.person_id and v.journey_no = j.journey_no
left join journey_feedback as f on f.person_id = j.person_id and f.journey_no = j.journey_no;
