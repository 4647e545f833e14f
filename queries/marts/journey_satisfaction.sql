-- journey_satisfaction: journey-level satisfaction per visit by several aggregators side by side.
-- grain: visit_id
-- columns: visit_id, customer_id, started_at, dt, moments, mean_score (mean of moment scores), peak_score (score of
--          the most intense moment), peak_end_score ((peak_score + last_score) / 2), min_score, last_score,
--          positive_moments, negative_moments, outcome, has_feedback, csat, nps, ces (means of linked feedback)
-- moment score: +1 positive, -1 negative, 0 neutral or untagged. Most intense moment: the largest |score|,
-- ties go to the latest moment (highest position_in_visit).
create or replace view journey_satisfaction as
with moments as (
    select * from int_moments
),
scored as (
    select
        visit_id,
        avg(moment_score) as mean_score,
        arg_max(moment_score, {'intensity': abs(moment_score), 'position': position_in_visit}) as peak_score,
        min(moment_score) as min_score,
        arg_max(moment_score, position_in_visit) as last_score,
        count(*) filter (where moment_score > 0) as positive_moments,
        count(*) filter (where moment_score < 0) as negative_moments
    from moments
    group by visit_id
)
select
    j.visit_id,
    j.customer_id,
    j.started_at,
    j.dt,
    j.moments,
    s.mean_score,
    s.peak_score,
    (s.peak_score + s.last_score) / 2.0 as peak_end_score,
    s.min_score,
    s.last_score,
    s.positive_moments,
    s.negative_moments,
    j.outcome,
    j.has_feedback,
    j.csat,
    j.nps,
    j.ces
from journeys as j
join scored as s on s.visit_id = j.visit_id;
