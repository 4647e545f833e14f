-- journey_satisfaction: journey-level satisfaction per visit by several aggregators side by side.
-- grain: visit_id
-- columns: visit_id, customer_id, started_at, dt, moments, mean_score (mean of moment scores), peak_score (score of
--          the most intense moment), peak_end_score ((peak_score + last_score) / 2), min_score, last_score,
--          positive_moments, negative_moments, outcome, has_feedback, csat, nps, ces (means of linked feedback)
-- moment score, most intense moment: see int_journey_scores (ties go to the latest moment).
create or replace view journey_satisfaction as
with scored as (
    select * from int_journey_scores where grain = 'visit'
)
select
    j.visit_id,
    j.customer_id,
    j.started_at,
    j.dt,
    j.moments,
    s.* exclude (grain, journey_key),
    j.outcome,
    j.has_feedback,
    j.csat,
    j.nps,
    j.ces
from journeys as j
join scored as s on s.journey_key = j.visit_id;
