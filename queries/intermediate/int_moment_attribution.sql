-- int_moment_attribution: how much of its visit's score deviation each moment carries, under five models.
-- grain: event_id, outcome (moments of visits whose linked feedback answered the outcome: csat, nps or ces)
-- columns: event_id, outcome, visit_id, customer_id, occurred_at, position (1..moments), moments, touchpoint,
--          mot_step, mot_step_name, staff_id, visit_score (mean over the visit's linked responses),
--          mean_score (over all scored visits of the outcome), deviation (visit_score - mean_score),
--          weight_first_moment, weight_last_moment, weight_linear, weight_u_shaped, weight_time_decay,
--          first_moment, last_moment, linear, u_shaped, time_decay (deviation x the model's weight)
-- models (each visit's weights sum to 1, so each model's attributions sum to the visit's deviation):
--   first moment: all to the first; last moment: all to the last; linear: 1/n each;
--   U-shaped: 40 % first, 40 % last, 20 % shared by the middle moments (one moment: 100 %, two: 50/50);
--   time decay: weight 0.5 ^ (seconds before the visit's last moment / half-life), normalised per visit;
--   the half-life is the playbook's attribution.half_life_s (getvariable('motpipe_half_life_s')).
create or replace view int_moment_attribution as
with responses as (
    select * from int_visit_feedback
),
scored_visits as (
    select visit_id, 'csat' as outcome, csat as visit_score from responses where csat is not null
    union all
    select visit_id, 'nps', nps from responses where nps is not null
    union all
    select visit_id, 'ces', ces from responses where ces is not null
),
deviations as (
    select
        visit_id,
        outcome,
        visit_score,
        avg(visit_score) over (partition by outcome) as mean_score,
        visit_score - avg(visit_score) over (partition by outcome) as deviation
    from scored_visits
),
moments as (
    select
        event_id,
        visit_id,
        customer_id,
        occurred_at,
        touchpoint,
        mot_step,
        mot_step_name,
        staff_id,
        row_number() over (partition by visit_id order by position_in_visit, event_id) as position,
        count(*) over (partition by visit_id) as moments,
        max(occurred_at) over (partition by visit_id) as visit_ended_at
    from int_moments
    where visit_id in (select visit_id from scored_visits)
),
weighted as (
    select
        *,
        case when position = 1 then 1.0 else 0.0 end as weight_first_moment,
        case when position = moments then 1.0 else 0.0 end as weight_last_moment,
        1.0 / moments as weight_linear,
        case
            when moments = 1 then 1.0
            when moments = 2 then 0.5
            when position = 1 or position = moments then 0.4
            else 0.2 / (moments - 2)
        end as weight_u_shaped,
        pow(0.5, date_diff('millisecond', occurred_at, visit_ended_at) / 1000.0
                 / getvariable('motpipe_half_life_s')) as decay
    from moments
),
normalised as (
    select *, decay / sum(decay) over (partition by visit_id) as weight_time_decay
    from weighted
)
select
    m.event_id,
    d.outcome,
    m.visit_id,
    m.customer_id,
    m.occurred_at,
    m.position,
    m.moments,
    m.touchpoint,
    m.mot_step,
    m.mot_step_name,
    m.staff_id,
    d.visit_score,
    d.mean_score,
    d.deviation,
    m.weight_first_moment,
    m.weight_last_moment,
    m.weight_linear,
    m.weight_u_shaped,
    m.weight_time_decay,
    d.deviation * m.weight_first_moment as first_moment,
    d.deviation * m.weight_last_moment as last_moment,
    d.deviation * m.weight_linear as linear,
    d.deviation * m.weight_u_shaped as u_shaped,
    d.deviation * m.weight_time_decay as time_decay
from normalised as m
join deviations as d on d.visit_id = m.visit_id;
