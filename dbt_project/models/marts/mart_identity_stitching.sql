-- Share of anonymous visitors stitched to a known tc4a user, per day (UTC) of activity.
select
    event_date                                                      as day,
    count(distinct anonymous_id)                                    as visitors,
    count(distinct case when known_user_id is not null then anonymous_id end) as stitched_visitors,
    cast(count(distinct case when known_user_id is not null then anonymous_id end) as {{ dbt.type_float() }})
        / count(distinct anonymous_id)                              as stitch_rate
from {{ ref('stg_web_events') }}
group by 1
