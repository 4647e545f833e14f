-- moment_attribution: which touchpoints, MOT steps and staff carry the visits' score deviations, model by model.
-- grain: outcome (csat | nps | ces), level (touchpoint | mot_step | staff), key
-- columns: outcome, level, key (touchpoint code, MOT step name or staff_id; null = moments without one), visits
--          (scored visits with such a moment), moments, avg_visit_deviation (mean deviation of those visits),
--          first_moment, last_moment, linear, u_shaped, time_decay (sum of the deviation the model gives these
--          moments; see int_moment_attribution for the models)
-- reading it: per outcome and level, each model's column sums to the total deviation of the scored visits, which
--             is 0 (deviations are from the mean): negative keys are where the score is lost. A csat or nps
--             deviation below 0 is bad; for ces (effort) above 0 is bad.
create or replace view moment_attribution as
with attributed as (
    select * from int_moment_attribution
),
keyed as (
    select *, 'touchpoint' as level, touchpoint as key from attributed
    union all
    select *, 'mot_step', mot_step_name from attributed
    union all
    select *, 'staff', staff_id from attributed
),
visit_deviation as (
    select outcome, level, key, visit_id, any_value(deviation) as deviation
    from keyed
    group by all
),
per_key as (
    select
        outcome,
        level,
        key,
        count(*) as moments,
        sum(first_moment) as first_moment,
        sum(last_moment) as last_moment,
        sum(linear) as linear,
        sum(u_shaped) as u_shaped,
        sum(time_decay) as time_decay
    from keyed
    group by all
),
per_key_visits as (
    select outcome, level, key, count(*) as visits, avg(deviation) as avg_visit_deviation
    from visit_deviation
    group by all
)
select
    k.outcome,
    k.level,
    k.key,
    v.visits,
    k.moments,
    v.avg_visit_deviation,
    k.first_moment,
    k.last_moment,
    k.linear,
    k.u_shaped,
    k.time_decay
from per_key as k
join per_key_visits as v
    on v.outcome = k.outcome and v.level = k.level and v.key is not distinct from k.key
order by k.outcome, k.level, k.linear, k.key;
