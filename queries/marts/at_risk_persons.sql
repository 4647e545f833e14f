-- at_risk_persons: at_risk_customers at the person grain: persons to follow up, because the last moment of their
--                  latest person journey (across all channels) was negative or that journey did not end resolved.
-- grain: person_id
-- columns: person_id, journeys (all of the person's journeys), latest_person_journey_id, started_at, ended_at,
--          channels, customer_ids, last_channel, last_touchpoint, last_mot_step_name, last_polarity, outcome,
--          last_moment_negative, ended_unresolved, risk_reason ('last_moment_negative', 'ended_unresolved' or both
--          joined by ' + '), csat
-- latest journey: the person's journey with the latest started_at (then ended_at, journey_no). Not resolved: outcome
-- 'unresolved', 'abandoned' or 'escalated' (null outcome = unknown, not at risk).
create or replace view at_risk_persons as
with ranked as (
    select
        *,
        count(*) over (partition by person_id) as person_journeys,
        row_number() over (partition by person_id order by started_at desc, ended_at desc, journey_no desc) as recency
    from person_journeys
),
flagged as (
    select
        *,
        coalesce(last_polarity = 'negative', false) as last_moment_negative,
        coalesce(outcome in ('unresolved', 'abandoned', 'escalated'), false) as ended_unresolved
    from ranked
    where recency = 1
)
select
    person_id,
    person_journeys as journeys,
    person_journey_id as latest_person_journey_id,
    started_at,
    ended_at,
    channels,
    customer_ids,
    last_channel,
    last_touchpoint,
    last_mot_step_name,
    last_polarity,
    outcome,
    last_moment_negative,
    ended_unresolved,
    concat_ws(' + ',
        case when last_moment_negative then 'last_moment_negative' end,
        case when ended_unresolved then 'ended_unresolved' end) as risk_reason,
    csat
from flagged
where last_moment_negative or ended_unresolved
order by ended_at desc, person_id;
