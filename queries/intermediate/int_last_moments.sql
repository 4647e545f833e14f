-- int_last_moments: the last moment of truth of each visit, with the evidence of its negative tags.
-- grain: visit_id
-- columns: visit_id, event_id, customer_id, occurred_at, touchpoint, mot_step, polarity, outcome, text (masked),
--          negative_evidence ('rule "span"' of each negative tag joined by '; ', null when none)
-- last moment: the highest position_in_visit (then event_id), as stitched by the pipeline.
create or replace view int_last_moments as
with moments as (
    select * from int_moments
),
last_moments as (
    select *
    from moments
    qualify row_number() over (partition by visit_id order by position_in_visit desc, event_id desc) = 1
)
select
    visit_id,
    event_id,
    customer_id,
    occurred_at,
    touchpoint,
    mot_step,
    polarity,
    outcome,
    text,
    nullif(array_to_string(
        list_transform(
            list_filter(evidence, lambda e: e.tag like '%:negative'),
            lambda e: e.rule || coalesce(' "' || e.span || '"', '')),
        '; '), '') as negative_evidence
from last_moments;
