select
    day,
    page_path,
    cast(course_id as {{ dbt.type_bigint() }}) as course_id,
    page_views,
    visitors,
    sessions
from {{ source('web', 'web_page_daily') }}
