-- int_visit_feedback: linked feedback rolled up to the visit it is linked to.
-- grain: visit_id (only visits with at least one linked feedback)
-- columns: visit_id, feedback_count, feedback_ids (sorted list), csat, nps, ces (means over the linked
--          responses that answered them), latest_feedback_at, latest_comment (comment of the latest response)
create or replace view int_visit_feedback as
with feedback as (
    select * from stg_feedback
    where visit_id is not null
)
select
    visit_id,
    count(*) as feedback_count,
    list_sort(list(feedback_id)) as feedback_ids,
    avg(csat) as csat,
    avg(nps) as nps,
    avg(ces) as ces,
    max(submitted_at) as latest_feedback_at,
    arg_max(comment, {'at': submitted_at, 'id': feedback_id}) as latest_comment
from feedback
group by visit_id;
