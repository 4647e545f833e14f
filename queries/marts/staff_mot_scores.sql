-- staff_mot_scores: supervision score sheet (MOT服务评分表) per staff member, location and week.
-- grain: staff_id, location_id, week_start (Monday of the ISO week of dt, the local date)
-- columns: staff_id, location_id, week_start, moments (handled), journeys, positive_moments, negative_moments,
--          positive_share, step_1_positive_share .. step_5_positive_share (positive moments / moments of that MOT
--          step; null when the member handled none), avg_wait_s, feedback_linked (feedback responses linked to the
--          journeys the member took part in that week), avg_csat (mean csat of those journeys)
-- moments without a staff_id are left out.
create or replace view staff_mot_scores as
with moments as (
    select *, date_trunc('week', dt) as week_start
    from int_moments
    where staff_id is not null
),
per_member as (
    select
        staff_id,
        location_id,
        week_start,
        count(*) as moments,
        count(distinct visit_id) as journeys,
        count(*) filter (where polarity = 'positive') as positive_moments,
        count(*) filter (where polarity = 'negative') as negative_moments,
        count(*) filter (where polarity = 'positive') / count(*) as positive_share,
        count(*) filter (where mot_step = 1 and polarity = 'positive') / nullif(count(*) filter (where mot_step = 1), 0)
            as step_1_positive_share,
        count(*) filter (where mot_step = 2 and polarity = 'positive') / nullif(count(*) filter (where mot_step = 2), 0)
            as step_2_positive_share,
        count(*) filter (where mot_step = 3 and polarity = 'positive') / nullif(count(*) filter (where mot_step = 3), 0)
            as step_3_positive_share,
        count(*) filter (where mot_step = 4 and polarity = 'positive') / nullif(count(*) filter (where mot_step = 4), 0)
            as step_4_positive_share,
        count(*) filter (where mot_step = 5 and polarity = 'positive') / nullif(count(*) filter (where mot_step = 5), 0)
            as step_5_positive_share,
        avg(wait_s) as avg_wait_s
    from moments
    group by staff_id, location_id, week_start
),
member_visits as (
    select distinct staff_id, location_id, week_start, visit_id
    from moments
),
member_feedback as (
    select
        m.staff_id,
        m.location_id,
        m.week_start,
        cast(coalesce(sum(f.feedback_count), 0) as bigint) as feedback_linked,
        avg(f.csat) as avg_csat
    from member_visits as m
    left join int_visit_feedback as f on f.visit_id = m.visit_id
    group by m.staff_id, m.location_id, m.week_start
)
select
    p.staff_id,
    p.location_id,
    cast(p.week_start as date) as week_start,
    p.moments,
    p.journeys,
    p.positive_moments,
    p.negative_moments,
    p.positive_share,
    p.step_1_positive_share,
    p.step_2_positive_share,
    p.step_3_positive_share,
    p.step_4_positive_share,
    p.step_5_positive_share,
    p.avg_wait_s,
    f.feedback_linked,
    f.avg_csat
from per_member as p
join member_feedback as f
    on f.staff_id = p.staff_id
    and f.location_id is not distinct from p.location_id
    and f.week_start = p.week_start
order by p.staff_id, p.location_id, p.week_start;
