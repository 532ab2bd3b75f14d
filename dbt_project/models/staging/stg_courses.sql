-- One row per course (current state); prices and durations as exact numerics.
select
    cast(course_id as {{ dbt.type_bigint() }})                      as course_id,
    upper(trim(code))                                               as course_code,
    trim(title)                                                     as course_title,
    lower(trim(category))                                           as category,
    level                                                           as course_level,
    cast(price as {{ dbt.type_numeric() }})                         as price,
    cast(duration_hours as {{ dbt.type_numeric() }})                as duration_hours,
    is_published,
    {{ dbt.safe_cast('created_at', corisync.type_instant()) }}      as created_at,
    {{ dbt.safe_cast('updated_at', corisync.type_instant()) }}      as updated_at
from {{ source('raw_cdc', 'courses') }}
