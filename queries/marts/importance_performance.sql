-- importance_performance: importance-performance analysis (Martilla & James) of the five PZB dimensions.
-- grain: importance_method ('correlation' | 'weights' | 'drivers'), dimension
-- columns: importance_method, dimension, pzb_rank, importance, performance, importance_threshold,
--          performance_threshold, quadrant, responses, responses_with_csat
-- importance: 'correlation' = Pearson correlation of the dimension's perception with csat over the responses that
--             have both (null with fewer than 3 such responses); 'weights' = the weight from int_servqual_weights;
--             'drivers' (only with `motpipe views --importance drivers`) = the dimension's relative share of the
--             explained variance of csat in key_drivers (Shapley decomposition of R²).
-- performance: mean perception of the dimension. Thresholds: the mean importance and the mean performance over
--             the dimensions of the method (data-centred crosshair); a value equal to its threshold counts as high.
-- quadrant: high importance + low performance = 'concentrate here'; high + high = 'keep up the good work';
--           low + low = 'low priority'; low importance + high performance = 'possible overkill'.
create or replace view importance_performance as
with responses as (
    select * from int_servqual_responses
),
per_dimension as (
    select
        dimension,
        count(*) as responses,
        count(csat) as responses_with_csat,
        avg(perception) as performance,
        case when count(csat) >= 3 then corr(perception, csat) end as correlation
    from responses
    group by dimension
),
by_method as (
    select 'correlation' as importance_method, w.dimension, w.pzb_rank, d.correlation as importance,
           d.performance, d.responses, d.responses_with_csat
    from int_servqual_weights as w
    left join per_dimension as d on d.dimension = w.dimension
    union all
    select 'weights' as importance_method, w.dimension, w.pzb_rank, w.weight as importance,
           d.performance, d.responses, d.responses_with_csat
    from int_servqual_weights as w
    left join per_dimension as d on d.dimension = w.dimension
    union all
    select 'drivers' as importance_method, w.dimension, w.pzb_rank, k.relative_share as importance,
           d.performance, d.responses, d.responses_with_csat
    from int_servqual_weights as w
    left join per_dimension as d on d.dimension = w.dimension
    left join key_drivers as k on k.dimension = w.dimension and k.outcome = 'csat'
    where getvariable('motpipe_drivers_importance')
),
thresholds as (
    select
        *,
        avg(importance) over (partition by importance_method) as importance_threshold,
        avg(performance) over (partition by importance_method) as performance_threshold
    from by_method
)
select
    importance_method,
    dimension,
    pzb_rank,
    importance,
    performance,
    importance_threshold,
    performance_threshold,
    case
        when importance is null or performance is null then null
        when importance >= importance_threshold and performance < performance_threshold then 'concentrate here'
        when importance >= importance_threshold then 'keep up the good work'
        when performance < performance_threshold then 'low priority'
        else 'possible overkill'
    end as quadrant,
    coalesce(responses, 0) as responses,
    coalesce(responses_with_csat, 0) as responses_with_csat
from thresholds
order by importance_method, pzb_rank;
