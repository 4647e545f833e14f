-- int_journey_scores: the moment-score aggregates of every journey, at both grains: a visit (grain 'visit',
--                     journey_key = visit_id) and a person journey across channels (grain 'person_journey',
--                     journey_key = person_journey_id).
-- grain: grain, journey_key
-- columns: grain, journey_key, mean_score, peak_score (score of the most intense moment), peak_end_score
--          ((peak_score + last_score) / 2), min_score, last_score, positive_moments, negative_moments
-- moment score: +1 positive, -1 negative, 0 neutral or untagged. Most intense moment: the largest |score|, ties go to
-- the latest moment. Order: position_in_visit in a visit; occurred_at, visit order, position_in_visit in a person
-- journey (so its last moment is the last of the whole journey, whatever its channel).
create or replace view int_journey_scores as
with moments as (
    select 'visit' as grain, visit_id as journey_key, moment_score, position_in_visit as position
    from int_moments
    union all
    select
        'person_journey' as grain,
        n.person_journey_id as journey_key,
        m.moment_score,
        row_number() over (partition by n.person_journey_id
                           order by m.occurred_at, n.visit_order, m.position_in_visit) as position
    from int_moments as m
    join int_person_visits as n on n.visit_id = m.visit_id
),
aggregated as (
    select
        grain,
        journey_key,
        avg(moment_score) as mean_score,
        arg_max(moment_score, {'intensity': abs(moment_score), 'position': position}) as peak_score,
        min(moment_score) as min_score,
        arg_max(moment_score, position) as last_score,
        count(*) filter (where moment_score > 0) as positive_moments,
        count(*) filter (where moment_score < 0) as negative_moments
    from moments
    group by grain, journey_key
)
select
    grain,
    journey_key,
    mean_score,
    peak_score,
    (peak_score + last_score) / 2.0 as peak_end_score,
    min_score,
    last_score,
    positive_moments,
    negative_moments
from aggregated;
