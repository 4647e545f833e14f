-- follow_up_cases: the follow-up queue (MOT step 5, 完善跟进): every at-risk visit becomes one case, closed by a
--                  later follow-up moment of the same customer.
-- grain: case_id (one per at-risk visit; case_id = 'case-' || the first 16 hex digits of md5(visit_id), so the
--        same visit has the same case in every rerun and backfill)
-- columns: case_id, visit_id, customer_id, status ('open' | 'closed'), priority ('high' | 'medium' | 'low'),
--          reason ('last_moment_negative', 'ended_unresolved', 'ended_escalated', 'low_score', joined by ' + '),
--          opened_at, due_at, closed_at, closed_by_event_id, closed_by_touchpoint, as_of, age_hours, sla_breached,
--          started_at, ended_at, channels, last_touchpoint, last_mot_step_name, last_polarity, outcome, csat, nps,
--          ces, evidence_text (the last moment's masked text), evidence (its negative tags), feedback_comment
-- at risk: the visit's last moment is negative; or its outcome is unresolved, abandoned or escalated; or a linked
--          response scored low (csat <= follow_up.low_csat, nps <= low_nps, ces >= high_ces of the playbook).
-- opened_at: the visit's end when a moment made it at risk, else the latest linked response (the low score).
-- priority: points low_score 2, ended_unresolved 2 (escalated 3), last_moment_negative 1; >= 3 high, 2 medium,
--           1 low. due_at = opened_at + the playbook's follow_up.due_hours of the priority.
-- closed: the customer's first later moment (occurred_at > opened_at) that is a follow-up (MOT step 5) or has
--         outcome 'resolved'. as_of: the latest occurred_at or submitted_at in the data (so reruns are identical);
--         age_hours: opened_at to closed_at (closed) or to as_of (open); sla_breached: closed after due_at, or
--         still open at as_of past due_at.
create or replace view follow_up_cases as
with visits as (
    select * from journeys
),
as_of as (
    select greatest(
        (select max(occurred_at) from int_moments),
        (select max(latest_feedback_at) from int_visit_feedback)) as as_of
),
flagged as (
    select
        v.*,
        vf.latest_feedback_at,
        vf.latest_comment,
        coalesce(v.last_polarity = 'negative', false) as last_moment_negative,
        coalesce(v.outcome in ('unresolved', 'abandoned', 'escalated'), false) as ended_unresolved,
        coalesce(v.outcome = 'escalated', false) as ended_escalated,
        coalesce(v.csat <= getvariable('motpipe_follow_up')['low_csat'], false)
            or coalesce(v.nps <= getvariable('motpipe_follow_up')['low_nps'], false)
            or coalesce(v.ces >= getvariable('motpipe_follow_up')['high_ces'], false) as low_score
    from visits as v
    left join int_visit_feedback as vf on vf.visit_id = v.visit_id
),
at_risk as (
    select
        *,
        case when last_moment_negative or ended_unresolved then ended_at else latest_feedback_at end as opened_at,
        (case when low_score then 2 else 0 end)
            + (case when ended_escalated then 3 when ended_unresolved then 2 else 0 end)
            + (case when last_moment_negative then 1 else 0 end) as risk_points
    from flagged
    where last_moment_negative or ended_unresolved or low_score
),
prioritised as (
    select
        *,
        case when risk_points >= 3 then 'high' when risk_points = 2 then 'medium' else 'low' end as priority
    from at_risk
),
closing as (
    select
        c.visit_id,
        arg_min(m.event_id, (m.occurred_at, m.event_id)) as closed_by_event_id,
        arg_min(m.touchpoint, (m.occurred_at, m.event_id)) as closed_by_touchpoint,
        min(m.occurred_at) as closed_at
    from prioritised as c
    join int_moments as m
        on m.customer_id = c.customer_id
        and m.occurred_at > c.opened_at
        and (m.mot_step = 5 or m.outcome = 'resolved')
    group by c.visit_id
),
cases as (
    select
        'case-' || md5(p.visit_id)[1:16] as case_id,
        p.*,
        p.opened_at + to_milliseconds(cast(
            round(getvariable('motpipe_follow_up')['due_hours_' || p.priority] * 3600000) as bigint)) as due_at,
        k.closed_at,
        k.closed_by_event_id,
        k.closed_by_touchpoint,
        a.as_of
    from prioritised as p
    cross join as_of as a
    left join closing as k on k.visit_id = p.visit_id
)
select
    c.case_id,
    c.visit_id,
    c.customer_id,
    case when c.closed_at is null then 'open' else 'closed' end as status,
    c.priority,
    concat_ws(' + ',
        case when c.last_moment_negative then 'last_moment_negative' end,
        case when c.ended_escalated then 'ended_escalated' when c.ended_unresolved then 'ended_unresolved' end,
        case when c.low_score then 'low_score' end) as reason,
    c.opened_at,
    c.due_at,
    c.closed_at,
    c.closed_by_event_id,
    c.closed_by_touchpoint,
    c.as_of,
    date_diff('second', c.opened_at, coalesce(c.closed_at, c.as_of)) / 3600.0 as age_hours,
    coalesce(c.closed_at, c.as_of) > c.due_at as sla_breached,
    c.started_at,
    c.ended_at,
    c.channels,
    c.last_touchpoint,
    c.last_mot_step_name,
    c.last_polarity,
    c.outcome,
    c.csat,
    c.nps,
    c.ces,
    m.text as evidence_text,
    m.negative_evidence as evidence,
    c.latest_comment as feedback_comment
from cases as c
left join int_last_moments as m on m.visit_id = c.visit_id
order by c.opened_at, c.case_id;
