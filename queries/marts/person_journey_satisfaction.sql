-- person_journey_satisfaction: journey_satisfaction at the person grain: the satisfaction of a whole cross-channel
--                              journey (person_journeys) by several aggregators side by side.
-- grain: person_journey_id
-- columns: person_journey_id, person_id, journey_no, started_at, ended_at, dt, visits, moments, channels,
--          channel_switches, mean_score, peak_score, peak_end_score ((peak_score + last_score) / 2), min_score,
--          last_score (of the journey's last moment), positive_moments, negative_moments, outcome, is_resolved,
--          feedback_count, csat, nps, ces
-- moment score and the most intense moment as in journey_satisfaction; moments in journey order (occurred_at, visit
-- order, position_in_visit), so "last" is the last moment of the whole journey, whatever its channel.
create or replace view person_journey_satisfaction as
with moments as (
    select m.moment_score, n.person_journey_id,
           row_number() over (partition by n.person_journey_id
                              order by m.occurred_at, n.visit_order, m.position_in_visit) as journey_position
    from int_moments as m
    join int_person_visits as n on n.visit_id = m.visit_id
),
scored as (
    select
        person_journey_id,
        avg(moment_score) as mean_score,
        arg_max(moment_score, {'intensity': abs(moment_score), 'position': journey_position}) as peak_score,
        min(moment_score) as min_score,
        arg_max(moment_score, journey_position) as last_score,
        count(*) filter (where moment_score > 0) as positive_moments,
        count(*) filter (where moment_score < 0) as negative_moments
    from moments
    group by person_journey_id
)
select
    j.person_journey_id,
    j.person_id,
    j.journey_no,
    j.started_at,
    j.ended_at,
    j.dt,
    j.visits,
    j.moments,
    j.channels,
    j.channel_switches,
    s.mean_score,
    s.peak_score,
    (s.peak_score + s.last_score) / 2.0 as peak_end_score,
    s.min_score,
    s.last_score,
    s.positive_moments,
    s.negative_moments,
    j.outcome,
    j.is_resolved,
    j.feedback_count,
    j.csat,
    j.nps,
    j.ces
from person_journeys as j
join scored as s on s.person_journey_id = j.person_journey_id;
