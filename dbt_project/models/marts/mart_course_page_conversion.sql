-- Course-page views -> enrollments, per course and ISO week (Monday, UTC) of the view. A viewer converts
-- when the (stitched) user enrolled in that course within 7 days after their first view of the week.
with views as (
    select
        course_id,
        {{ corisync.iso_week_start('occurred_at') }}                as week_start,
        anonymous_id,
        known_user_id,
        min(occurred_at)                                           as first_view_at,
        count(*)                                                   as views
    from {{ ref('stg_web_events') }}
    where event_type = 'course_page_view' and course_id is not null
    group by 1, 2, 3, 4
),

converted as (
    select distinct v.course_id, v.week_start, v.anonymous_id
    from views as v
    inner join {{ ref('stg_enrollments') }} as e
        on e.user_id = v.known_user_id
        and e.course_id = v.course_id
        and e.enrolled_at >= v.first_view_at
        and e.enrolled_at < {{ dbt.dateadd('day', 7, 'v.first_view_at') }}
)

select
    {{ dbt.concat(["cast(v.course_id as " ~ dbt.type_string() ~ ")", "'|'",
                   "cast(v.week_start as " ~ dbt.type_string() ~ ")"]) }} as conversion_id,
    v.course_id,
    v.week_start,
    sum(v.views)                                                    as course_page_views,
    count(distinct v.anonymous_id)                                  as viewers,
    count(distinct v.known_user_id)                                 as known_viewers,
    count(distinct c.anonymous_id)                                  as converted_viewers,
    case when count(distinct v.anonymous_id) > 0
        then cast(count(distinct c.anonymous_id) as {{ dbt.type_float() }}) / count(distinct v.anonymous_id)
    end                                                             as conversion_rate
from views as v
left join converted as c
    on v.course_id = c.course_id and v.week_start = c.week_start and v.anonymous_id = c.anonymous_id
group by 1, 2, 3
