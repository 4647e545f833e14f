-- mot_funnel: funnel of journeys through the MOT five steps, with drop-off.
-- grain: mot_step (1..5)
-- columns: mot_step, mot_step_name, journeys_with_step (journeys with a moment at this step), journeys_reached
--          (journeys with moments at every step from 1 to this one, in any order), share_of_journeys
--          (journeys_reached / all journeys), conversion_from_previous (journeys_reached / the previous step's
--          journeys_reached; for step 1, / all journeys), drop_off (previous journeys_reached - journeys_reached;
--          for step 1, all journeys - journeys_reached), drop_off_share (drop_off / previous)
create or replace view mot_funnel as
with steps as (
    select * from (values
        (1, 'set_the_tone'), (2, 'diagnose'), (3, 'resolve'), (4, 'review'), (5, 'follow_up')
    ) as t(mot_step, mot_step_name)
),
journey_steps as (
    select visit_id, steps_reached from journeys
),
per_step as (
    select
        s.mot_step,
        s.mot_step_name,
        count(*) filter (where list_contains(j.steps_reached, s.mot_step)) as journeys_with_step,
        count(*) filter (where list_has_all(j.steps_reached, range(1, s.mot_step + 1))) as journeys_reached,
        count(*) as all_journeys
    from steps as s
    cross join journey_steps as j
    group by s.mot_step, s.mot_step_name
),
with_previous as (
    select
        *,
        coalesce(lag(journeys_reached) over (order by mot_step), all_journeys) as previous_reached
    from per_step
)
select
    mot_step,
    mot_step_name,
    journeys_with_step,
    journeys_reached,
    journeys_reached / nullif(all_journeys, 0) as share_of_journeys,
    journeys_reached / nullif(previous_reached, 0) as conversion_from_previous,
    previous_reached - journeys_reached as drop_off,
    (previous_reached - journeys_reached) / nullif(previous_reached, 0) as drop_off_share
from with_previous
order by mot_step;
