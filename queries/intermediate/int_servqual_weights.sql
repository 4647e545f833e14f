-- int_servqual_weights: importance weight of each SERVQUAL dimension, normalised to sum to 1.
-- grain: dimension
-- columns: dimension, pzb_rank (1 = most important in PZB's order), raw_weight, weight
-- weights: default 0.30 / 0.25 / 0.20 / 0.15 / 0.10 for reliability, responsiveness, assurance, empathy,
--          tangibles (PZB importance order). Override any of them with
--          `set variable motpipe_weights = map {'reliability': 0.4, 'tangibles': 0.05};`
--          (`motpipe views --weights reliability=0.4,tangibles=0.05` does this); missing dimensions keep
--          their default, then all weights are divided by their sum.
create or replace view int_servqual_weights as
with defaults as (
    select * from (values
        ('reliability', 1, 0.30),
        ('responsiveness', 2, 0.25),
        ('assurance', 3, 0.20),
        ('empathy', 4, 0.15),
        ('tangibles', 5, 0.10)
    ) as t(dimension, pzb_rank, default_weight)
),
chosen as (
    select
        dimension,
        pzb_rank,
        cast(coalesce(getvariable('motpipe_weights')[dimension], default_weight) as double) as raw_weight
    from defaults
)
select
    dimension,
    pzb_rank,
    raw_weight,
    raw_weight / sum(raw_weight) over () as weight
from chosen;
