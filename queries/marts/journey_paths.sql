-- journey_paths: the ordered paths journeys take, through MOT steps and through touchpoints, most common first.
-- grain: path_type ('mot_step' | 'touchpoint'), path
-- columns: path_type, path (e.g. '1 > 2 > 3 > 4' or 'greeting > needs_inquiry > farewell'), path_length (steps or
--          touchpoints in the path), journeys, share (of all journeys), path_rank (1 = most common; ties by path),
--          completed_all_steps_share, avg_mean_score (journey_satisfaction.mean_score), avg_csat
-- mot_step paths keep the order of the moments, skip moments without a step and collapse consecutive repeats
-- (1,1,2,3,3 -> '1 > 2 > 3'); '(none)' when no moment has a step. touchpoint paths list every moment's
-- touchpoint in order, repeats included.
create or replace view journey_paths as
with moments as (
    select * from int_moments
),
per_visit as (
    select
        visit_id,
        list(mot_step order by position_in_visit) filter (where mot_step is not null) as steps,
        list(coalesce(touchpoint, '?') order by position_in_visit) as touchpoints
    from moments
    group by visit_id
),
paths as (
    select
        visit_id,
        list_filter(coalesce(steps, []), lambda s, i: i = 1 or s <> steps[i - 1]) as step_path,
        touchpoints
    from per_visit
),
keyed as (
    select 'mot_step' as path_type, visit_id,
           coalesce(nullif(array_to_string(step_path, ' > '), ''), '(none)') as path, len(step_path) as path_length
    from paths
    union all
    select 'touchpoint' as path_type, visit_id, array_to_string(touchpoints, ' > ') as path,
           len(touchpoints) as path_length
    from paths
),
all_journeys as (
    select count(*) as n from journeys
),
grouped as (
    select
        k.path_type,
        k.path,
        any_value(k.path_length) as path_length,
        count(*) as journeys,
        avg(case when j.completed_all_steps then 1.0 else 0.0 end) as completed_all_steps_share,
        avg(s.mean_score) as avg_mean_score,
        avg(j.csat) as avg_csat
    from keyed as k
    join journeys as j on j.visit_id = k.visit_id
    join journey_satisfaction as s on s.visit_id = k.visit_id
    group by k.path_type, k.path
)
select
    g.path_type,
    g.path,
    g.path_length,
    g.journeys,
    g.journeys / a.n as share,
    row_number() over (partition by g.path_type order by g.journeys desc, g.path) as path_rank,
    g.completed_all_steps_share,
    g.avg_mean_score,
    g.avg_csat
from grouped as g
cross join all_journeys as a
order by g.path_type, path_rank;
