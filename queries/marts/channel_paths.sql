-- channel_paths: the channel sequences of person journeys (app > phone > branch), most common first, with their
--                satisfaction.
-- grain: channel_path
-- columns: channel_path (channels joined by ' > ', consecutive repeats collapsed), channels, path_length, journeys,
--          journey_share (of all person journeys), persons, avg_channel_switches, avg_mean_score, avg_peak_end_score,
--          resolved_share (of journeys with an outcome), journeys_with_csat, avg_csat, avg_nps
create or replace view channel_paths as
with journeys as (
    select * from person_journey_satisfaction
)
select
    array_to_string(channels, ' > ') as channel_path,
    channels,
    len(channels) as path_length,
    count(*) as journeys,
    count(*) / sum(count(*)) over () as journey_share,
    count(distinct person_id) as persons,
    avg(channel_switches) as avg_channel_switches,
    avg(mean_score) as avg_mean_score,
    avg(peak_end_score) as avg_peak_end_score,
    avg(case when is_resolved then 1.0 when outcome is not null then 0.0 end) as resolved_share,
    count(csat) as journeys_with_csat,
    avg(csat) as avg_csat,
    avg(nps) as avg_nps
from journeys
group by channels
order by journeys desc, channel_path;
