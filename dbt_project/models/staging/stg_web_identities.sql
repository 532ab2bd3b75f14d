-- The tc4a user behind each anonymous visitor: the user_id of the visitor's most recent event that carries
-- one (visitors who never logged in have no row).
select anonymous_id, user_id
from (
    select
        anonymous_id,
        cast(user_id as {{ dbt.type_bigint() }}) as user_id,
        row_number() over (partition by anonymous_id order by occurred_at desc, event_id desc) as rn
    from {{ source('web', 'web_events') }}
    where user_id is not null
) as latest
where rn = 1
