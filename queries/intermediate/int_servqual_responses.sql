-- int_servqual_responses: the five SERVQUAL dimensions of each feedback response, unpivoted.
-- grain: feedback_id, dimension (only responses that rated the dimension: expectation and perception both set)
-- columns: feedback_id, visit_id, submitted_at, dimension, expectation, perception, gap (perception - expectation),
--          csat
create or replace view int_servqual_responses as
with feedback as (
    select * from stg_feedback
),
unpivoted as (
    select feedback_id, visit_id, submitted_at, csat, 'reliability' as dimension,
           reliability_expectation as expectation, reliability_perception as perception from feedback
    union all
    select feedback_id, visit_id, submitted_at, csat, 'responsiveness',
           responsiveness_expectation, responsiveness_perception from feedback
    union all
    select feedback_id, visit_id, submitted_at, csat, 'assurance',
           assurance_expectation, assurance_perception from feedback
    union all
    select feedback_id, visit_id, submitted_at, csat, 'empathy',
           empathy_expectation, empathy_perception from feedback
    union all
    select feedback_id, visit_id, submitted_at, csat, 'tangibles',
           tangibles_expectation, tangibles_perception from feedback
)
select
    feedback_id,
    visit_id,
    submitted_at,
    dimension,
    expectation,
    perception,
    perception - expectation as gap,
    csat
from unpivoted
where expectation is not null and perception is not null;
