-- GA4's sessions, page views and users per property, day and page (custom report course_pages), one row per
-- (property_id, day, page_path): a day GA4 reported again (the incremental sync re-reads its last days, and
-- GA4 revises recent figures) keeps the most recently extracted row. The date arrives as 'yyyymmdd' or
-- 'yyyy-mm-dd' depending on the connector's version; course_slug as the platform's course pages have it.
{%- set columns = {
    'property_id': dbt.type_string(), 'date': dbt.type_string(), 'pagePath': dbt.type_string(),
    'sessions': dbt.type_bigint(), 'screenPageViews': dbt.type_bigint(), 'totalUsers': dbt.type_bigint(),
} %}

with report as (
    select
        _airbyte_raw_id,
        _airbyte_extracted_at,
        trim(property_id)                                           as property_id,
        {{ corisync.ga4_date('date_text') }}                        as day,
        page_path,
        sessions,
        page_views,
        users
    from {{ corisync.airbyte_stream(source('airbyte', 'ga4_course_pages'), columns,
                                     rename={'date': 'date_text', 'pagePath': 'page_path',
                                             'screenPageViews': 'page_views', 'totalUsers': 'users'}) }} as r
),

latest as (
    select
        *,
        row_number() over (
            partition by property_id, day, page_path
            order by _airbyte_extracted_at desc, _airbyte_raw_id desc
        )                                                           as rn
    from report
)

select
    {{ dbt.concat(["property_id", "'|'", "cast(day as " ~ dbt.type_string() ~ ")", "'|'", "page_path"]) }}
                                                                    as ga4_page_day_id,
    property_id,
    day,
    page_path,
    {{ corisync.course_slug('page_path') }}                         as course_slug,
    sessions,
    page_views,
    users,
    _airbyte_extracted_at                                           as extracted_at
from latest
where rn = 1
