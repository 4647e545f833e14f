-- at_risk_customers: customers to follow up, because the last moment of their latest journey was negative or
--                    that journey did not end resolved, with the evidence.
-- grain: customer_id
-- columns: customer_id, journeys (all of the customer's journeys), latest_visit_id, started_at, ended_at,
--          last_touchpoint, last_mot_step_name, last_polarity, outcome, last_moment_negative, ended_unresolved,
--          risk_reason ('last_moment_negative', 'ended_unresolved' or both joined by ' + '), evidence_text (the last
--          moment's masked text), evidence (the last moment's negative tags: 'rule "span"' joined by '; ', null when none),
--          feedback_comment (latest comment linked to the latest journey), csat
-- latest journey: the customer's journey (journeys.customer_id) with the latest started_at (then ended_at,
-- visit_id). Not resolved: outcome 'unresolved', 'abandoned' or 'escalated' (null outcome = unknown, not at risk).
create or replace view at_risk_customers as
with ranked as (
    select
        *,
        count(*) over (partition by customer_id) as customer_journeys,
        row_number() over (partition by customer_id order by started_at desc, ended_at desc, visit_id desc) as recency
    from journeys
),
latest as (
    select * from ranked where recency = 1
),
flagged as (
    select
        l.*,
        coalesce(l.last_polarity = 'negative', false) as last_moment_negative,
        coalesce(l.outcome in ('unresolved', 'abandoned', 'escalated'), false) as ended_unresolved
    from latest as l
)
select
    f.customer_id,
    f.customer_journeys as journeys,
    f.visit_id as latest_visit_id,
    f.started_at,
    f.ended_at,
    f.last_touchpoint,
    f.last_mot_step_name,
    f.last_polarity,
    f.outcome,
    f.last_moment_negative,
    f.ended_unresolved,
    concat_ws(' + ',
        case when f.last_moment_negative then 'last_moment_negative' end,
        case when f.ended_unresolved then 'ended_unresolved' end) as risk_reason,
    m.text as evidence_text,
    m.negative_evidence as evidence,
    vf.latest_comment as feedback_comment,
    f.csat
from flagged as f
left join int_last_moments as m on m.visit_id = f.visit_id
left join int_visit_feedback as vf on vf.visit_id = f.visit_id
where f.last_moment_negative or f.ended_unresolved
order by f.ended_at desc, f.customer_id;
