-- int_person_visits: every visit with its person journey: a person's visits in time order, each starting at most
--                    the journey gap after the latest end of the person's visits before it, form one journey.
-- grain: visit_id
-- columns: visit_id, person_id (current person of the visit's first moment), started_at, ended_at, journey_no
--          (1, 2, ... per person), person_journey_id (person_id || '/' || journey_no), visit_order (per person)
-- journey gap: getvariable('motpipe_journey_gap_days') days (default 7: `motpipe views --journey-gap-days N`).
create or replace view int_person_visits as
with visits as (
    select
        visit_id,
        arg_min(person_id, position_in_visit) as person_id,
        min(occurred_at) as started_at,
        max(occurred_at) as ended_at
    from int_moments
    group by visit_id
),
gaps as (
    select
        *,
        max(ended_at) over (partition by person_id order by started_at, ended_at, visit_id
                            rows between unbounded preceding and 1 preceding) as previous_end,
        row_number() over (partition by person_id order by started_at, ended_at, visit_id) as visit_order
    from visits
),
numbered as (
    select
        *,
        sum(case when previous_end is null
                   or epoch(started_at) - epoch(previous_end) > getvariable('motpipe_journey_gap_days') * 86400
                 then 1 else 0 end)
            over (partition by person_id order by visit_order rows unbounded preceding) as journey_no
    from gaps
)
select
    visit_id,
    person_id,
    started_at,
    ended_at,
    cast(journey_no as integer) as journey_no,
    person_id || '/' || cast(journey_no as integer) as person_journey_id,
    cast(visit_order as integer) as visit_order
from numbered;
