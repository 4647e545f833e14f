-- servqual_gaps: SERVQUAL expectation, perception and gap per PZB dimension, with the overall scores.
-- grain: dimension
-- columns: dimension, pzb_rank, responses (feedback rows rating the dimension), mean_expectation, mean_perception,
--          gap (mean_perception - mean_expectation), weight (int_servqual_weights), weighted_gap (weight * gap),
--          weighted_servqual_score (sum of weighted_gap over the dimensions), unweighted_servqual_score (mean gap),
--          servperf_score (unweighted mean of the dimensions' mean perception),
--          weighted_servperf_score (sum of weight * mean_perception); the four scores repeat on every row.
-- dimensions without any rating have null means and are left out of the overall scores.
create or replace view servqual_gaps as
with responses as (
    select * from int_servqual_responses
),
per_dimension as (
    select
        dimension,
        count(*) as responses,
        avg(expectation) as mean_expectation,
        avg(perception) as mean_perception
    from responses
    group by dimension
),
joined as (
    select
        w.dimension,
        w.pzb_rank,
        coalesce(d.responses, 0) as responses,
        d.mean_expectation,
        d.mean_perception,
        d.mean_perception - d.mean_expectation as gap,
        w.weight
    from int_servqual_weights as w
    left join per_dimension as d on d.dimension = w.dimension
)
select
    dimension,
    pzb_rank,
    responses,
    mean_expectation,
    mean_perception,
    gap,
    weight,
    weight * gap as weighted_gap,
    sum(weight * gap) over () as weighted_servqual_score,
    avg(gap) over () as unweighted_servqual_score,
    avg(mean_perception) over () as servperf_score,
    sum(weight * mean_perception) over () as weighted_servperf_score
from joined
order by pzb_rank;
