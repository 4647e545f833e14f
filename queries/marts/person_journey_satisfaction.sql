-- person_journey_satisfaction: journey_satisfaction at the person grain: the satisfaction of a whole cross-channel
--                              journey (person_journeys) by several aggregators side by side.
-- grain: person_journey_id
-- columns: person_journey_id, person_id, journey_no, started_at, ended_at, dt, visits, moments, channels,
--          channel_switches, mean_score, peak_score, peak_end_score ((peak_score + last_score) / 2), min_score,
--          last_score (of the journey's last moment), positive_moments, negative_moments, outcome, is_resolved,
--          feedback_count, csat, nps, ces
-- moment score, most intense moment and the order of a person journey's moments: see int_journey_scores.
create or replace view person_journey_satisfaction as
with scored as (
    select * from int_journey_scores where grain = 'person_journey'
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
    s.* exclude (grain, journey_key),
    j.outcome,
    j.is_resolved,
    j.feedback_count,
    j.csat,
    j.nps,
    j.ces
from person_journeys as j
join scored as s on s.journey_key = j.person_journey_id;
