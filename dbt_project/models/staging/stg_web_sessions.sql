-- Sessions with the visitor's current identity: Spark stitches sessions when it computes them; a visitor
-- who logs in later is stitched here too, without recomputing old sessions.
select
    s.session_id,
    s.anonymous_id,
    coalesce(i.user_id, cast(s.user_id as {{ dbt.type_bigint() }})) as user_id,
    s.session_start,
    s.session_end,
    s.session_date,
    s.event_count,
    s.page_count,
    s.entry_page,
    s.exit_page,
    s.duration_s
from {{ source('web', 'web_sessions') }} as s
left join {{ ref('stg_web_identities') }} as i
    on s.anonymous_id = i.anonymous_id
