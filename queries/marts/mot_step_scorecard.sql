-- mot_step_scorecard: how each MOT step, and each playbook touchpoint, performs.
-- grain: level ('mot_step' | 'touchpoint'), mot_step, touchpoint (null on mot_step rows)
-- columns: level, mot_step, mot_step_name, touchpoint, moments (volume), journeys (visits in which it occurred),
--          positive_share, negative_share (of its moments), avg_wait_s (moments with a wait), avg_csat (mean csat
--          of the journeys in which it occurred, each journey once, journeys with feedback only),
--          last_moment_journeys (journeys whose last moment it was), last_moment_share (of all journeys),
--          last_moment_share_when_present (of the journeys in which it occurred)
-- mot_step rows count every moment with a MOT step (from the touchpoint map or from text cues); touchpoint rows
-- count only moments whose step came from the playbook's touchpoint map. Moments without a step are left out.
create or replace view mot_step_scorecard as
with moments as (
    select * from int_moments
),
keyed as (
    select 'mot_step' as level, mot_step, mot_step_name, cast(null as varchar) as touchpoint,
           visit_id, polarity, wait_s, is_last_moment
    from moments
    where mot_step is not null
    union all
    select 'touchpoint' as level, mot_step, mot_step_name, touchpoint,
           visit_id, polarity, wait_s, is_last_moment
    from moments
    where is_playbook_touchpoint
),
per_key as (
    select
        level,
        mot_step,
        any_value(mot_step_name) as mot_step_name,
        touchpoint,
        count(*) as moments,
        count(distinct visit_id) as journeys,
        count(*) filter (where polarity = 'positive') / count(*) as positive_share,
        count(*) filter (where polarity = 'negative') / count(*) as negative_share,
        avg(wait_s) as avg_wait_s,
        count(distinct visit_id) filter (where is_last_moment) as last_moment_journeys
    from keyed
    group by level, mot_step, touchpoint
),
key_visits as (
    select distinct level, mot_step, touchpoint, visit_id
    from keyed
),
key_csat as (
    select k.level, k.mot_step, k.touchpoint, avg(j.csat) as avg_csat
    from key_visits as k
    join journeys as j on j.visit_id = k.visit_id
    group by k.level, k.mot_step, k.touchpoint
),
all_journeys as (
    select count(*) as n from journeys
)
select
    p.level,
    p.mot_step,
    p.mot_step_name,
    p.touchpoint,
    p.moments,
    p.journeys,
    p.positive_share,
    p.negative_share,
    p.avg_wait_s,
    c.avg_csat,
    p.last_moment_journeys,
    p.last_moment_journeys / a.n as last_moment_share,
    p.last_moment_journeys / p.journeys as last_moment_share_when_present
from per_key as p
cross join all_journeys as a
left join key_csat as c
    on c.level = p.level and c.mot_step = p.mot_step and c.touchpoint is not distinct from p.touchpoint
order by p.level, p.mot_step, p.touchpoint;
