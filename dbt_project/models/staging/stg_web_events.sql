-- One row per web event (already deduplicated by event_id in the lake); user_id is the event's own
-- (null before login), known_user_id the visitor's stitched identity (stg_web_identities).
select
    e.event_id,
    e.event_type,
    e.anonymous_id,
    cast(e.user_id as {{ dbt.type_bigint() }})                       as user_id,
    i.user_id                                                       as known_user_id,
    e.session_id,
    e.occurred_at,
    e.received_at,
    e.event_date,
    e.page_path,
    cast(e.course_id as {{ dbt.type_bigint() }})                     as course_id,
    e.is_late
from {{ source('web', 'web_events') }} as e
left join {{ ref('stg_web_identities') }} as i
    on e.anonymous_id = i.anonymous_id
